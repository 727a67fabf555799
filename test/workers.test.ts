/**
 * `workers: 2`: a controller and two data-plane worker processes. Sessions are spread over
 * both (round robin, so consecutive connections land on different workers); the worker of a
 * session is told by its BackendKeyData process id (first + index, then every 2nd). Checked
 * from outside: cancel and causal tokens across workers, summed figures, kill -9 of one worker
 * under load, and a failover under write load.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { FIRST_PROCESS_ID } from '../src/pg/proxy.js';
import { nodeStates, startStack, waitFor, type Stack } from './support/stack.js';

const WORKERS = 2;

function workerOf(c: pg.Client): number {
  return ((c as unknown as { processID: number }).processID - FIRST_PROCESS_ID) % WORKERS;
}

/** A raw CancelRequest on a connection of its own, as libpq sends it. */
function sendCancel(port: number, c: pg.Client): Promise<void> {
  const { processID, secretKey } = c as unknown as { processID: number; secretKey: number };
  const frame = Buffer.alloc(16);
  frame.writeInt32BE(16, 0);
  frame.writeInt32BE(80877102, 4);
  frame.writeInt32BE(processID, 8);
  frame.writeInt32BE(secretKey, 12);
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => s.end(frame));
    s.on('close', () => resolve());
    s.on('error', reject);
  });
}

/** Writers inserting their own rows in a loop; each acknowledged id and its server port kept. */
class Writers {
  readonly acked: { id: number; port: number; writer: number }[] = [];
  readonly errors = new Map<number, string[]>();
  private running = true;
  private nextId = 1;
  private readonly loops: Promise<void>[];

  constructor(readonly clients: pg.Client[]) {
    this.loops = clients.map((c, i) => this.loop(c, i));
  }

  private async loop(c: pg.Client, i: number): Promise<void> {
    while (this.running) {
      const id = this.nextId++;
      try {
        const r = await c.query<{ port: number }>(
          'INSERT INTO w (id) VALUES ($1) RETURNING inet_server_port() AS port',
          [id],
        );
        this.acked.push({ id, port: Number(r.rows[0]!.port), writer: i });
      } catch (err) {
        const list = this.errors.get(i) ?? [];
        list.push((err as Error).message);
        this.errors.set(i, list);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}

describe('two data-plane workers', () => {
  let stack: Stack;

  before(async () => {
    stack = await startStack({
      workers: WORKERS,
      postgres: { failover: { mode: 'auto', detectMs: 600 }, pool: { size: 8 } },
    });
    const c = await stack.client();
    await c.query('CREATE TABLE w (id int PRIMARY KEY)');
    await c.query('CREATE TABLE ryw (id int PRIMARY KEY, v int NOT NULL)');
    await c.query('INSERT INTO ryw VALUES (1, 0)');
    await stack.cluster.waitForReplication();
  });
  after(async () => stack?.stop());

  test('sessions go to both workers; /api/nodes, /api/stats and /metrics sum over them', async () => {
    const clients = await Promise.all([1, 2, 3, 4].map(() => stack.client()));
    assert.deepEqual(new Set(clients.map(workerOf)), new Set([0, 1]));
    for (const c of clients) for (let i = 0; i < 5; i++) await c.query('SELECT 1');
    const before = await (await fetch(`http://127.0.0.1:${stack.httpPort}/api/stats`)).json();
    // Each worker reports its counts every 250 ms.
    await waitFor('every client counted', async () => {
      const s = (await (await fetch(`http://127.0.0.1:${stack.httpPort}/api/stats`)).json()) as {
        clients: { postgres: number };
        decisions: Record<string, number>;
      };
      return s.clients.postgres >= clients.length + 1 && (s.decisions['read'] ?? 0) >= 20;
    });
    const metrics = await (await fetch(`http://127.0.0.1:${stack.httpPort}/metrics`)).text();
    const queries = [...metrics.matchAll(/^rwsplit_pg_queries_total\{node="[^"]+"\} (\d+)$/gm)].reduce(
      (a, m) => a + Number(m[1]),
      0,
    );
    assert.ok(queries >= 20, `rwsplit_pg_queries_total sums to ${queries}, expected at least 20`);
    const up = [...metrics.matchAll(/^rwsplit_node_up\{[^}]*\} (\d+)$/gm)].map((m) => Number(m[1]));
    assert.deepEqual(up, [1, 1, 1], 'rwsplit_node_up is the controller view, not a sum over workers');
    const nodes = (await nodeStates(stack.httpPort)) as unknown as { connections: { idle: number } }[];
    const conns = nodes.reduce((a, n) => a + n.connections.idle, 0);
    assert.ok(conns >= 2, `the nodes report ${conns} backend connections of the workers`);
    const workers = (await (await fetch(`http://127.0.0.1:${stack.httpPort}/api/workers`)).json()) as {
      index: number;
      pid: number;
    }[];
    assert.deepEqual(
      workers.map((w) => w.index),
      [0, 1],
    );
    assert.ok(before, 'stats answered');
    await Promise.all(clients.map((c) => c.end()));
  });

  test('a CancelRequest reaches the query whichever worker receives it', async () => {
    for (let round = 0; round < 2; round++) {
      // Connections are dealt to the workers in turn: A and B land on different workers, the
      // cancel for B then on A's worker and the cancel for A on B's.
      const a = await stack.client();
      const b = await stack.client();
      assert.notEqual(workerOf(a), workerOf(b));
      const sleep = (c: pg.Client): Promise<string> =>
        c.query('SELECT pg_sleep(30)').then(
          () => 'finished',
          (err: Error & { code?: string }) => err.code ?? err.message,
        );
      const [ra, rb] = [sleep(a), sleep(b)];
      await new Promise((r) => setTimeout(r, 200));
      await sendCancel(stack.pgPort, b);
      await sendCancel(stack.pgPort, a);
      assert.deepEqual([await ra, await rb], ['57014', '57014'], 'both queries were cancelled');
      await Promise.all([a.end(), b.end()]);
    }
  });

  test('a causal token from a session on one worker is honoured on the other', async () => {
    const writer = await stack.client();
    const reader = await stack.client();
    assert.notEqual(workerOf(writer), workerOf(reader), 'writer and reader on different workers');
    const replica = await stack.direct('pg-replica1');
    await replica.query('SELECT pg_wal_replay_pause()');
    let stale = 0;
    const rounds = 200;
    try {
      for (let v = 1; v <= rounds; v++) {
        await writer.query('UPDATE ryw SET v = $1 WHERE id = 1', [v]);
        const token = (await writer.query<{ t: string }>('SHOW rwsplit.causal_token')).rows[0]!;
        const value = Object.values(token)[0] as string;
        await reader.query(`SET rwsplit.causal_token = '${value}'`);
        const r = await reader.query<{ v: number }>('SELECT v FROM ryw WHERE id = 1');
        if (r.rows[0]!.v < v) stale++;
      }
    } finally {
      await replica.query('SELECT pg_wal_replay_resume()');
    }
    assert.equal(stale, 0, `${stale} of ${rounds} reads with the other worker's token were stale`);
  });

  test('kill -9 of one worker under load: the other worker’s clients see no error, a replacement serves', async () => {
    const clients = await Promise.all([1, 2, 3, 4, 5, 6].map(() => stack.client()));
    const byWorker = (w: number): number[] => clients.flatMap((c, i) => (workerOf(c) === w ? [i] : []));
    assert.ok(byWorker(0).length >= 2 && byWorker(1).length >= 2, 'clients on both workers');
    const errors = new Map<number, number>();
    let done = 0;
    let running = true;
    const loops = clients.map(async (c, i) => {
      while (running) {
        try {
          await c.query('SELECT count(*) FROM w');
          done++;
        } catch {
          errors.set(i, (errors.get(i) ?? 0) + 1);
          return; // its connection is gone
        }
      }
    });
    await new Promise((r) => setTimeout(r, 300));
    const [victim] = stack.app.workers!.pids();
    process.kill(victim!, 'SIGKILL');
    await waitFor('a replacement worker', () => {
      const w = stack.app.workers!.describe();
      return w[0]!.pid !== victim && w[0]!.ready;
    });
    const after = done;
    await waitFor('load to go on after the kill', () => done > after + 50);
    running = false;
    await Promise.all(loops);
    for (const i of byWorker(1)) assert.equal(errors.get(i) ?? 0, 0, `client ${i} on the surviving worker`);
    for (const i of byWorker(0))
      assert.equal(errors.get(i), 1, `client ${i} on the killed worker lost its connection`);
    // New connections reach both workers, the replacement included.
    const fresh = await Promise.all([1, 2, 3, 4].map(() => stack.client()));
    for (const c of fresh) assert.equal((await c.query<{ n: number }>('SELECT 1 AS n')).rows[0]!.n, 1);
    assert.deepEqual(new Set(fresh.map(workerOf)), new Set([0, 1]));
    const events = (await (await fetch(`http://127.0.0.1:${stack.httpPort}/api/events`)).json()) as {
      type: string;
      detail: string;
    }[];
    const exited = events.filter((e) => e.type === 'worker-exited');
    assert.equal(exited.length, 1);
    assert.match(exited[0]!.detail, new RegExp(`pid ${victim}\\) exited \\(SIGKILL\\)`));
    await Promise.all([...clients, ...fresh].map((c) => c.end().catch(() => undefined)));
  });

  test('failover under write load: no worker writes to the fenced old primary, even once it answers again', async () => {
    const clients = await Promise.all([1, 2, 3, 4].map(() => stack.client()));
    assert.deepEqual(new Set(clients.map(workerOf)), new Set([0, 1]));
    const writers = new Writers(clients);
    await new Promise((r) => setTimeout(r, 300));
    // Frozen, not killed: when it thaws it is still a primary that would take writes, so a
    // worker that had missed the fence would have its writes acknowledged there and lost.
    stack.cluster.signalTree('pg-primary', 'SIGSTOP');
    let primary = '';
    try {
      await waitFor(
        'a new primary',
        async () => {
          const p = (await nodeStates(stack.httpPort)).find(
            (n) => (n as { role?: string }).role === 'primary' && n.state === 'up',
          );
          primary = p?.id ?? '';
          return primary !== '' && primary !== 'pg-primary';
        },
        30_000,
      );
    } finally {
      stack.cluster.signalTree('pg-primary', 'SIGCONT');
    }
    const promotedPort = stack.cluster.nodes.find((n) => n.id === primary)!.port;
    const countAt = writers.acked.length;
    await waitFor('writes on the new primary', () => writers.acked.length > countAt + 100, 30_000);
    await writers.stop();
    const direct = await stack.direct(primary);
    const ids = new Set(
      (await direct.query<{ id: number }>('SELECT id FROM w')).rows.map((r) => Number(r.id)),
    );
    const missing = writers.acked.filter((a) => !ids.has(a.id));
    assert.deepEqual(missing, [], 'every acknowledged write is on the new primary');
    // The sessions of both workers carried on, on the promoted node.
    for (let i = 0; i < clients.length; i++)
      assert.ok(
        writers.acked.some((a) => a.writer === i && a.port === promotedPort),
        `writer ${i} (worker ${workerOf(clients[i]!)}) wrote on the new primary`,
      );
  });
});
