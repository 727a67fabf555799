/**
 * The client session's states (acquiring, holding for an idle backend, gated by the proxy's own
 * work) against scripted servers: real TCP servers in the test that speak just enough of the
 * PostgreSQL protocol (trust login, then one scripted answer per simple Query), so each step's
 * order is visible on both sides. The integration tests run the same paths against PostgreSQL.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ReplayPositions } from '../../core/causal.js';
import { ReadRouter } from '../../core/read-router.js';
import { Topology, type NodeStatus } from '../../core/topology.js';
import type { NodeSpec } from '../../core/types.js';
import { BackendPool } from '../backend/backend-pool.js';
import type { BackendLogin } from '../backend/backend-connection.js';
import { Classifier } from '../classifier/classify.js';
import {
  BackendCode,
  decodeQuery,
  encodeBackendKeyData,
  encodeCommandComplete,
  encodeDataRow,
  encodeQuery,
  encodeRowDescription,
  FrameReader,
  FrontendCode,
  readyForQuery,
} from '../protocol/index.js';
import { ClientSession } from './client-session.js';
import type { PgStats, SessionContext } from './session-context.js';
import { COMMIT_POSITION_SQL, REPLAY_POSITION_SQL } from '../routing/causal-gate.js';

const TX_IDLE = 0x49;
const AUTH_OK = Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0]);
const WAL_POSITION = '0/3000060';

/** A scripted server: trust login, then each simple Query is logged and answered, optionally later. */
class ScriptedServer {
  readonly queries: string[] = [];
  /** the queries whose answers wait until release() (null: none) */
  private holdIf: ((sql: string) => boolean) | null = null;
  private held: (() => void)[] = [];
  private readonly server = net.createServer((socket) => this.serve(socket));
  port = 0;

  constructor(readonly name: string) {}

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  stop(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  /** Answers (to the queries `which` picks, by default all) wait until release(). */
  hold(which: (sql: string) => boolean = () => true): void {
    this.holdIf = which;
  }

  release(): void {
    this.holdIf = null;
    for (const send of this.held.splice(0)) send();
  }

  private serve(socket: net.Socket): void {
    socket.setNoDelay(true);
    const reader = new FrameReader({ maxFrameBytes: 1 << 20, startup: true });
    socket.on('error', () => socket.destroy());
    socket.on('data', (chunk: Buffer) =>
      reader.push(chunk, (type, frame) => {
        if (type === 0) {
          reader.startup = false;
          socket.write(Buffer.concat([AUTH_OK, encodeBackendKeyData(1, 2), readyForQuery(TX_IDLE)]));
          return;
        }
        if (type === FrontendCode.Terminate) {
          socket.end();
          return;
        }
        assert.equal(type, FrontendCode.Query, `${this.name} got a frame it has no script for`);
        const sql = decodeQuery(frame);
        this.queries.push(sql);
        const send = (): void => void socket.write(answer(this.name, sql));
        if (this.holdIf?.(sql)) this.held.push(send);
        else send();
      }),
    );
  }
}

/** One row naming the server for a read, a position for the proxy's LSN queries, a tag for a write. */
function answer(server: string, sql: string): Buffer {
  const single = (value: string): Buffer[] => [
    encodeRowDescription([{ name: 'v' }]),
    encodeDataRow([value]),
    encodeCommandComplete('SELECT 1'),
  ];
  let frames: Buffer[];
  if (sql === COMMIT_POSITION_SQL || sql === REPLAY_POSITION_SQL) frames = single(WAL_POSITION);
  else if (/^select/i.test(sql)) frames = single(`${server}: ${sql}`);
  else frames = [encodeCommandComplete('INSERT 0 1')];
  return Buffer.concat([...frames, readyForQuery(TX_IDLE)]);
}

/** What the application reads from its end of the client socket: the values of its DataRows and the tags. */
class ClientSide {
  readonly seen: string[] = [];
  private readonly reader = new FrameReader({ maxFrameBytes: 1 << 20 });
  private waiters: (() => void)[] = [];

  constructor(socket: net.Socket) {
    socket.on('data', (chunk: Buffer) =>
      this.reader.push(chunk, (type, frame) => {
        if (type === BackendCode.DataRow) this.seen.push(frame.subarray(11).toString());
        else if (type === BackendCode.CommandComplete) this.seen.push(frame.subarray(5, -1).toString());
        else if (type === BackendCode.ReadyForQuery) this.seen.push('Z');
        else if (type !== BackendCode.RowDescription) this.seen.push(String.fromCharCode(type));
        for (const w of this.waiters.splice(0)) w();
      }),
    );
  }

  /** Resolves once `count` ReadyForQuery frames arrived. */
  async readies(count: number): Promise<void> {
    while (this.seen.filter((s) => s === 'Z').length < count)
      await new Promise<void>((resolve) => this.waiters.push(resolve));
  }
}

const spec = (id: string, port: number): NodeSpec => ({
  id,
  kind: 'postgres',
  shard: 'default',
  host: '127.0.0.1',
  port,
  weight: 1,
});

const noStats: PgStats = {
  routed: () => {},
  dispatched: () => {},
  answered: () => {},
  retried: () => {},
  clientError: () => {},
  causalRead: () => {},
};

interface Harness {
  session: ClientSession;
  client: ClientSide;
  pools: Map<string, BackendPool>;
  /** the client sends one simple Query */
  send(sql: string): void;
  close(): void;
}

async function harness(
  primary: ScriptedServer,
  replica: ScriptedServer,
  consistency: SessionContext['consistency'],
  /** pools shared with other sessions of the test (one connection per node) */
  pools = new Map<string, BackendPool>(),
): Promise<Harness> {
  const topology = new Topology([spec('primary', primary.port), spec('replica', replica.port)]);
  const login: BackendLogin = { user: 'app', database: 'app', params: {} };
  const ctx: SessionContext = {
    classifier: new Classifier(),
    topology,
    readRouter: new ReadRouter(topology, {
      balance: 'round-robin',
      primaryReads: 'never',
      whenAllLagging: 'error',
    }),
    stats: noStats,
    retryReads: true,
    maxBatchBytes: 1 << 20,
    consistency,
    causalWaitMs: 1000,
    failoverBufferMs: 0,
    sharding: null,
    nativeCore: null,
    replay: new ReplayPositions(topology),
    pool(node: NodeStatus): BackendPool {
      let pool = pools.get(node.spec.id);
      if (!pool) {
        pool = new BackendPool(
          { nodeId: node.spec.id, host: node.spec.host, port: node.spec.port },
          login,
          {
            size: 1,
            queryWaitTimeoutMs: 5000,
            connectTimeoutMs: 5000,
            idleTimeoutMs: 0,
            maxFrameBytes: 1 << 20,
          },
          { onNodeFailure: () => {} },
        );
        pools.set(node.spec.id, pool);
      }
      return pool;
    },
    nodeFailed: (id, reason) => assert.fail(`no node may fail here: ${id} ${reason}`),
    sessionClosed: () => {},
    signalTarget: () => null,
  };
  // The session's client socket: the server end of a real TCP connection the test reads from.
  const listener = net.createServer();
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<net.Socket>((resolve) => listener.once('connection', resolve));
  const app = net.connect((listener.address() as net.AddressInfo).port, '127.0.0.1');
  const sessionSocket = await accepted;
  listener.close();
  const session = new ClientSession(ctx, sessionSocket, login, 1, 2);
  return {
    session,
    client: new ClientSide(app),
    pools,
    send(sql: string): void {
      session.onClientFrame(FrontendCode.Query, encodeQuery(sql));
      session.onClientChunkEnd();
    },
    close(): void {
      session.close();
      app.destroy();
      for (const pool of pools.values()) pool.close();
      pools.clear();
    },
  };
}

describe('ClientSession against scripted servers', () => {
  const primary = new ScriptedServer('primary');
  const replica = new ScriptedServer('replica');
  before(async () => {
    await primary.start();
    await replica.start();
  });
  after(async () => {
    await primary.stop();
    await replica.stop();
  });

  it('sends a read to the replica and a write to the primary, and gives both backends back', async () => {
    const h = await harness(primary, replica, 'eventual');
    primary.queries.length = 0;
    replica.queries.length = 0;
    h.send('SELECT 1');
    await h.client.readies(1);
    h.send('INSERT INTO t VALUES (1)');
    await h.client.readies(2);
    assert.deepEqual(h.client.seen, ['replica: SELECT 1', 'SELECT 1', 'Z', 'INSERT 0 1', 'Z']);
    assert.deepEqual(replica.queries, ['SELECT 1']);
    assert.deepEqual(primary.queries, ['INSERT INTO t VALUES (1)']);
    // Between transactions the session holds no backend: both went back to their pools.
    assert.equal(h.session.currentBackend, null);
    assert.equal(h.pools.get('replica')!.stats.idle, 1);
    assert.equal(h.pools.get('primary')!.stats.idle, 1);
    assert.equal(h.session.drainable(), true);
    h.close();
  });

  it('holds a write queued behind a read until the replica has answered, then sends it to the primary', async () => {
    const h = await harness(primary, replica, 'eventual');
    primary.queries.length = 0;
    replica.queries.length = 0;
    h.send('SELECT 2');
    // Lets the replica's connection open and take the read, then holds its answer.
    while (replica.queries.length === 0) await new Promise((r) => setTimeout(r, 5));
    replica.hold();
    h.send('SELECT 3');
    while (replica.queries.length < 2) await new Promise((r) => setTimeout(r, 5));
    h.send('INSERT INTO t VALUES (2)');
    // The write is held (the replica owes two answers): not sent anywhere, the session not drainable.
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(primary.queries, []);
    assert.equal(h.session.drainable(), false);
    replica.release();
    await h.client.readies(3);
    assert.deepEqual(h.client.seen, [
      'replica: SELECT 2',
      'SELECT 1',
      'Z',
      'replica: SELECT 3',
      'SELECT 1',
      'Z',
      'INSERT 0 1',
      'Z',
    ]);
    assert.deepEqual(primary.queries, ['INSERT INTO t VALUES (2)']);
    assert.equal(h.session.currentBackend, null);
    h.close();
  });

  it('read-your-writes: reads the commit position after a write, checks the replica before the next read, and shows the client only its own answers', async () => {
    const h = await harness(primary, replica, 'read-your-writes');
    primary.queries.length = 0;
    replica.queries.length = 0;
    primary.hold((sql) => sql === COMMIT_POSITION_SQL);
    h.send('INSERT INTO t VALUES (3)');
    await h.client.readies(1);
    // The client has its answer; the proxy's own query holds the session (gated) meanwhile.
    h.send('SELECT 4');
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(replica.queries, []);
    assert.equal(h.session.drainable(), false);
    primary.release();
    await h.client.readies(2);
    assert.deepEqual(h.client.seen, ['INSERT 0 1', 'Z', 'replica: SELECT 4', 'SELECT 1', 'Z']);
    assert.deepEqual(primary.queries, ['INSERT INTO t VALUES (3)', COMMIT_POSITION_SQL]);
    assert.deepEqual(replica.queries, [REPLAY_POSITION_SQL, 'SELECT 4']);
    assert.equal(h.session.currentBackend, null);
    assert.equal(h.session.drainable(), true);
    h.close();
  });

  it('waits for a busy pool (acquiring): the request goes once another session gives the connection back', async () => {
    const pools = new Map<string, BackendPool>();
    const a = await harness(primary, replica, 'eventual', pools);
    const b = await harness(primary, replica, 'eventual', pools);
    replica.queries.length = 0;
    a.send('SELECT 5');
    await a.client.readies(1);
    // The replica's pool has one connection: `a` holds it while its next answer is held.
    replica.hold();
    a.send('SELECT 6');
    while (replica.queries.length < 2) await new Promise((r) => setTimeout(r, 5));
    b.send('SELECT 7');
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(replica.queries, ['SELECT 5', 'SELECT 6']);
    assert.equal(b.session.drainable(), false, 'a session waiting for a connection is not at a boundary');
    assert.equal(pools.get('replica')!.stats.waiting, 1);
    replica.release();
    await b.client.readies(1);
    assert.deepEqual(a.client.seen, [
      'replica: SELECT 5',
      'SELECT 1',
      'Z',
      'replica: SELECT 6',
      'SELECT 1',
      'Z',
    ]);
    assert.deepEqual(b.client.seen, ['replica: SELECT 7', 'SELECT 1', 'Z']);
    assert.deepEqual(replica.queries, ['SELECT 5', 'SELECT 6', 'SELECT 7']);
    assert.equal(b.session.currentBackend, null);
    assert.equal(pools.get('replica')!.stats.active, 0);
    b.close();
    a.close();
  });
});
