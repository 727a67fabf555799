import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { nodeStates, startStack, waitFor, type Stack } from './support/stack.js';

/**
 * `failover: auto` against real servers: kill -9 of the primary under a write load (async
 * and synchronous replication), and SIGSTOP of the primary for 5 s and for 300 ms. Every
 * acknowledged write is recorded with the server that acknowledged it.
 */

const FAILOVER = { mode: 'auto', detectMs: 1500, bufferMs: 5000 };

interface Ack {
  writer: number;
  seq: number;
  port: number;
  /** performance.now() (monotonic: a wall-clock step, as when the VM is paused and resumed, must not look like a wait) when the client saw the acknowledgement */
  at: number;
}

/** N clients through rwsplit, each INSERTing in a loop and recording what was acknowledged where. */
class WriteLoad {
  /** writer ids stay unique across the loads of one table */
  private static nextWriter = 0;
  /** loads still running (a failed test must not leave loops behind) */
  static readonly live = new Set<WriteLoad>();
  readonly acks: Ack[] = [];
  readonly errors: string[] = [];
  /** the longest any statement waited for its answer (a result or an error), in ms */
  longestWaitMs = 0;
  private running = true;
  private readonly loops: Promise<void>[];

  constructor(readonly clients: pg.Client[]) {
    this.loops = clients.map((c) => this.loop(c, WriteLoad.nextWriter++));
    WriteLoad.live.add(this);
  }

  private async loop(c: pg.Client, writer: number): Promise<void> {
    for (let seq = 0; this.running; seq++) {
      const sentAt = performance.now();
      try {
        const res = await c.query<{ port: number }>(
          'INSERT INTO acked (writer, seq) VALUES ($1, $2) RETURNING inet_server_port() AS port',
          [writer, seq],
        );
        this.answered(sentAt);
        this.acks.push({ writer, seq, port: Number(res.rows[0]!.port), at: performance.now() });
      } catch (err) {
        this.answered(sentAt);
        this.errors.push((err as Error).message);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  private answered(sentAt: number): void {
    this.longestWaitMs = Math.max(this.longestWaitMs, performance.now() - sentAt);
  }

  /** Stops the loops; resolves with how many clients never got an answer to their last statement. */
  async stop(): Promise<number> {
    this.running = false;
    WriteLoad.live.delete(this);
    let done = 0;
    const all = Promise.all(this.loops.map((l) => l.then(() => done++)));
    await Promise.race([all, new Promise((r) => setTimeout(r, 10_000))]);
    return this.loops.length - done;
  }

  /** Acknowledgements after `t` by the server on `port`. */
  after(t: number, port: number): Ack[] {
    return this.acks.filter((a) => a.at > t && a.port === port);
  }
}

/**
 * No statement waits longer than a write may wait for a new primary (bufferMs) plus 1 s: a
 * statement lost with its server gets an error, a write with no primary waits bufferMs at
 * most. This is the "no hang" promise, not a performance figure.
 */
function assertAnsweredInTime(load: WriteLoad): void {
  assert.ok(
    load.longestWaitMs <= FAILOVER.bufferMs + 1000,
    `every statement got its answer within failover.bufferMs + 1 s (longest wait ${Math.round(load.longestWaitMs)} ms)`,
  );
}

async function prepare(stack: Stack): Promise<void> {
  const c = await stack.client();
  await c.query('CREATE TABLE acked (writer int, seq int, PRIMARY KEY (writer, seq))');
  await stack.cluster.waitForReplication();
}

async function writers(stack: Stack, n: number): Promise<pg.Client[]> {
  return Promise.all(Array.from({ length: n }, () => stack.client()));
}

async function events(stack: Stack): Promise<{ node: string; type: string; detail: string }[]> {
  return (await (await fetch(`http://127.0.0.1:${stack.httpPort}/api/events`)).json()) as {
    node: string;
    type: string;
    detail: string;
  }[];
}

function portOf(stack: Stack, id: string): number {
  return stack.cluster.nodes.find((n) => n.id === id)!.port;
}

/** The node rwsplit writes to once the failover is over. */
async function newPrimary(stack: Stack, old: string): Promise<string> {
  let id = '';
  await waitFor('a new primary', () => {
    const p = stack.app.topology.writablePrimary('default');
    id = p && p.spec.id !== old ? p.spec.id : '';
    return id !== '';
  });
  return id;
}

/**
 * One value from a fresh direct connection to a node (fencing an old primary ends the
 * sessions already there, so a test's own connection would not survive it; a check made
 * while the fencing runs may be ended too: callers polling it treat that as "not yet").
 */
async function once(stack: Stack, id: string, sql: string): Promise<string> {
  const node = stack.cluster.nodes.find((n) => n.id === id)!;
  const c = new pg.Client({ host: node.host, port: node.port, user: 'postgres', database: 'postgres' });
  c.on('error', () => undefined);
  await c.connect();
  try {
    return await scalar(c, sql);
  } finally {
    await c.end();
  }
}

async function scalar(client: pg.Client, sql: string): Promise<string> {
  const res = await client.query<Record<string, unknown>>(sql);
  return String(Object.values(res.rows[0]!)[0]);
}

describe('SIGSTOP of the primary', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({ postgres: { failover: FAILOVER } });
    await prepare(stack);
  });
  after(async () => {
    await Promise.all([...WriteLoad.live].map((l) => l.stop()));
    await stack?.stop();
  });

  test('frozen for 300 ms (less than detectMs): no failover', async () => {
    const old = stack.cluster.primary.id;
    const load = new WriteLoad(await writers(stack, 4));
    await new Promise((r) => setTimeout(r, 500));
    stack.cluster.signalTree(old, 'SIGSTOP');
    await new Promise((r) => setTimeout(r, 300));
    stack.cluster.signalTree(old, 'SIGCONT');
    await new Promise((r) => setTimeout(r, 2 * FAILOVER.detectMs));
    const since = performance.now();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await load.stop(), 0, 'every client got an answer to each statement');
    assertAnsweredInTime(load);
    assert.deepEqual(
      (await events(stack)).filter((e) => e.type === 'failover-start'),
      [],
      'no failover started',
    );
    assert.equal(stack.app.topology.primary('default')?.spec.id, old, 'the primary is unchanged');
    assert.ok(load.after(since, portOf(stack, old)).length > 0, 'writes still go to the old primary');
  });

  test('frozen for 5 s: the old primary is fenced, never do two primaries acknowledge writes', async () => {
    const old = stack.cluster.primary.id;
    const oldPort = portOf(stack, old);
    const load = new WriteLoad(await writers(stack, 8));
    await new Promise((r) => setTimeout(r, 500));
    const stoppedAt = performance.now();
    stack.cluster.signalTree(old, 'SIGSTOP');
    await new Promise((r) => setTimeout(r, 5000));
    stack.cluster.signalTree(old, 'SIGCONT');
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal(await load.stop(), 0, 'every client got an answer to each statement');
    assertAnsweredInTime(load);

    const failedOver = (await events(stack)).some((e) => e.type === 'failover-start' && e.node === old);
    assert.ok(failedOver, `a failover of ${old} started`);
    const state = (await nodeStates(stack.httpPort)).find((n) => n.id === old)?.state;
    assert.equal(state, 'fenced', 'after the failover the old primary is fenced');
    const firstNew = load.acks.findIndex((a) => a.port !== oldPort);
    const later = firstNew < 0 ? [] : load.acks.slice(firstNew);
    assert.deepEqual(
      later.filter((a) => a.port === oldPort),
      [],
      'no write acknowledged by the old primary after the first one acknowledged by the new primary',
    );
    assert.equal(new Set(later.map((a) => a.port)).size <= 1, true, 'one new primary at most');
    assert.ok(firstNew >= 0, 'writes were acknowledged by a new primary');
    const resumed = load.acks[firstNew]!.at - stoppedAt;
    console.log(
      `SIGSTOP 5 s: first write on the new primary ${Math.round(resumed)} ms after the stop; ` +
        `${load.acks.length} writes acknowledged, ${load.errors.length} client errors, longest wait ${Math.round(load.longestWaitMs)} ms`,
    );
    // Back, still a primary on the old timeline: made read-only on the server.
    await waitFor(
      `${old} read-only on the server`,
      async () => (await once(stack, old, 'SHOW default_transaction_read_only').catch(() => '')) === 'on',
    );
  });
});

describe('kill -9 of the primary under load', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({ postgres: { failover: FAILOVER } });
    await prepare(stack);
  });
  after(async () => {
    await Promise.all([...WriteLoad.live].map((l) => l.stop()));
    await stack?.stop();
  });

  test('writes resume on the promoted replica, sessions continue, the old primary comes back fenced', async () => {
    const old = stack.cluster.primary.id;
    const clients = await writers(stack, 8);
    const load = new WriteLoad(clients);
    await new Promise((r) => setTimeout(r, 1000));
    const killedAt = performance.now();
    await stack.cluster.kill(old);
    const promoted = await newPrimary(stack, old);
    const promotedPort = portOf(stack, promoted);
    await waitFor(
      'a write acknowledged by the promoted node',
      () => load.after(killedAt, promotedPort).length > 0,
    );
    const firstWrite = Math.min(...load.after(killedAt, promotedPort).map((a) => a.at)) - killedAt;
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(await load.stop(), 0, 'every client got an answer to each statement');
    assertAnsweredInTime(load);
    console.log(
      `kill -9: first write on ${promoted} ${Math.round(firstWrite)} ms after the kill; longest wait ${Math.round(load.longestWaitMs)} ms; ${load.errors.length} client errors ` +
        `(${[...new Set(load.errors)].slice(0, 3).join(' | ')})`,
    );

    const direct = await stack.direct(promoted);
    assert.equal(await scalar(direct, 'SELECT pg_is_in_recovery()'), 'false', `${promoted} is a primary`);
    for (const [i, c] of clients.entries()) {
      const port = Number(
        await scalar(c, `INSERT INTO acked VALUES (${1000 + i}, 0) RETURNING inet_server_port()`),
      );
      assert.equal(port, promotedPort, `client ${i} keeps working, its writes on ${promoted}`);
    }

    // The other replica follows the new timeline and has every row.
    const other = stack.cluster.replicas.find((r) => r.id !== promoted)!;
    const otherDirect = await stack.direct(other.id);
    const timeline = await scalar(
      direct,
      "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int",
    );
    const rows = await scalar(direct, 'SELECT count(*) FROM acked');
    await waitFor(`${other.id} following ${promoted} with every row`, async () => {
      const tli = await scalar(otherDirect, 'SELECT received_tli FROM pg_stat_wal_receiver').catch(() => '');
      return tli === timeline && (await scalar(otherDirect, 'SELECT count(*) FROM acked')) === rows;
    });

    // The old primary restarted: back as a primary on the old timeline, fenced, harmless.
    await stack.cluster.restart(old);
    await waitFor(
      `${old} made read-only on the server`,
      async () => (await once(stack, old, 'SHOW default_transaction_read_only').catch(() => '')) === 'on',
    );
    assert.equal((await nodeStates(stack.httpPort)).find((n) => n.id === old)?.state, 'fenced');
    const c = clients[0]!;
    for (let i = 0; i < 20; i++) {
      const port = Number(
        await scalar(c, `INSERT INTO acked VALUES (2000, ${i}) RETURNING inet_server_port()`),
      );
      assert.equal(port, promotedPort, 'writes never reach the old primary');
      assert.notEqual(Number(await scalar(c, 'SELECT inet_server_port()')), portOf(stack, old), 'nor reads');
    }
    const strangers = await once(
      stack,
      old,
      "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND application_name NOT LIKE 'rwsplit-%'",
    );
    assert.equal(strangers, '0', 'no rwsplit session has a connection to the old primary');
  });
});

describe('kill -9 of the primary with synchronous replication', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({ cluster: { replication: 'sync' }, postgres: { failover: FAILOVER } });
    await prepare(stack);
  });
  after(async () => {
    await Promise.all([...WriteLoad.live].map((l) => l.stop()));
    await stack?.stop();
  });

  test('every acknowledged write is on the new primary (zero loss)', async () => {
    const old = stack.cluster.primary.id;
    const load = new WriteLoad(await writers(stack, 8));
    await new Promise((r) => setTimeout(r, 1000));
    const killedAt = performance.now();
    await stack.cluster.kill(old);
    const promoted = await newPrimary(stack, old);
    const promotedPort = portOf(stack, promoted);
    await waitFor(
      'a write acknowledged by the promoted node',
      () => load.after(killedAt, promotedPort).length > 0,
    );
    const firstWrite = Math.min(...load.after(killedAt, promotedPort).map((a) => a.at)) - killedAt;
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await load.stop(), 0, 'every client got an answer to each statement');
    assertAnsweredInTime(load);

    const direct = await stack.direct(promoted);
    const res = await direct.query<{ writer: number; seq: number }>('SELECT writer, seq FROM acked');
    const present = new Set(res.rows.map((r) => `${r.writer}/${r.seq}`));
    const lost = load.acks.filter((a) => !present.has(`${a.writer}/${a.seq}`));
    console.log(
      `kill -9, sync replication: first write on ${promoted} ${Math.round(firstWrite)} ms after the kill; ` +
        `${load.acks.length} acknowledged, ${lost.length} lost, ${load.errors.length} client errors, longest wait ${Math.round(load.longestWaitMs)} ms`,
    );
    assert.ok(
      load.acks.some((a) => a.at < killedAt),
      'writes were acknowledged before the kill',
    );
    assert.deepEqual(lost, [], 'no acknowledged write is lost');
    assert.match(
      await scalar(direct, 'SHOW synchronous_standby_names'),
      /replica/,
      'the new primary keeps commits synchronous',
    );
  });
});
