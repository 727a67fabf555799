import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { pino } from 'pino';
import { Rwsplit } from '../src/app.js';
import { validateConfig } from '../src/config/load.js';
import { nodeStates, startStack, waitFor, type Stack } from './support/stack.js';

/**
 * Planned switchover under a light read + write load, through `POST /api/switchover` and
 * then through `rwsplit switchover`: no client sees an error, writes continue on the new
 * primary, the old one is fenced.
 */

const TOKEN = 'switchover-token-0123456789';
const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/rwsplit.js');

/** Two writers and two readers in loops; every error is kept. */
class LightLoad {
  readonly errors: string[] = [];
  /** server port of each acknowledged write, in order */
  readonly writePorts: number[] = [];
  reads = 0;
  private running = true;
  private readonly loops: Promise<void>[];

  constructor(writers: pg.Client[], readers: pg.Client[]) {
    this.loops = [
      ...writers.map((c, i) => this.loop(async () => this.write(c, i))),
      ...readers.map((c) => this.loop(async () => this.read(c))),
    ];
  }

  private seq = 0;

  private async write(c: pg.Client, writer: number): Promise<void> {
    const res = await c.query<{ port: number }>(
      'INSERT INTO notes (writer, seq) VALUES ($1, $2) RETURNING inet_server_port() AS port',
      [writer, this.seq++],
    );
    this.writePorts.push(Number(res.rows[0]!.port));
  }

  private async read(c: pg.Client): Promise<void> {
    await c.query('SELECT count(*) FROM notes');
    this.reads++;
  }

  private async loop(step: () => Promise<void>): Promise<void> {
    while (this.running) {
      try {
        await step();
      } catch (err) {
        this.errors.push((err as Error).message);
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}

async function post(stack: Stack, body: unknown, token = TOKEN): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`http://127.0.0.1:${stack.httpPort}/api/switchover`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

function portOf(stack: Stack, id: string): number {
  return stack.cluster.nodes.find((n) => n.id === id)!.port;
}

async function withLoad(stack: Stack, action: () => Promise<void>): Promise<LightLoad> {
  const load = new LightLoad(
    await Promise.all([stack.client(), stack.client()]),
    await Promise.all([stack.client(), stack.client()]),
  );
  await new Promise((r) => setTimeout(r, 500));
  await action();
  await new Promise((r) => setTimeout(r, 700));
  await load.stop();
  return load;
}

describe('planned switchover', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({ postgres: { failover: { mode: 'auto' } } });
    stack.app.admin.setToken(TOKEN);
    const c = await stack.client();
    await c.query('CREATE TABLE notes (writer int, seq int)');
    await stack.cluster.waitForReplication();
  });
  after(async () => stack?.stop());

  test('refuses a bad target (400), no token (401) and a second switchover at once (409)', async () => {
    const bad = await post(stack, { to: 'nope' });
    assert.equal(bad.status, 400);
    assert.match((bad.json as { message: string }).message, /no node 'nope' in shard default/);
    const self = await post(stack, { to: stack.cluster.primary.id });
    assert.equal(self.status, 400);
    assert.match((self.json as { message: string }).message, /already the primary/);
    assert.equal((await post(stack, {}, 'wrong-token-0123456789')).status, 401);
    assert.equal((await post(stack, { shard: 'elsewhere' })).status, 400);
    assert.equal(stack.app.topology.primary()?.spec.id, stack.cluster.primary.id, 'nothing changed');
  });

  test('POST /api/switchover: no client errors, writes move to the chosen replica', async () => {
    const old = stack.cluster.primary.id;
    const target = stack.cluster.replicas[1]!.id;
    let answers: { status: number; json: unknown }[] = [];
    const load = await withLoad(stack, async () => {
      // Two at once: one runs, the other is refused while it does.
      answers = await Promise.all([post(stack, { to: target }), post(stack, { to: target })]);
    });
    const ok = answers.find((a) => a.status === 200);
    assert.ok(ok, JSON.stringify(answers));
    assert.deepEqual(
      answers.map((a) => a.status).sort(),
      [200, 409],
      'the second request is refused while the first runs',
    );
    const report = ok.json as { from: string; to: string; elapsedMs: number; repointed: string[] };
    assert.equal(report.from, old);
    assert.equal(report.to, target);
    assert.deepEqual(report.repointed, [stack.cluster.replicas[0]!.id]);
    console.log(
      `switchover (API): ${report.elapsedMs} ms; ${load.writePorts.length} writes, ${load.reads} reads, ${load.errors.length} errors`,
    );
    assert.deepEqual(load.errors, [], 'no client saw an error');
    assert.equal(load.writePorts.at(-1), portOf(stack, target), 'writes run on the new primary');
    assert.equal((await nodeStates(stack.httpPort)).find((n) => n.id === old)?.state, 'fenced');
  });

  test('rwsplit switchover (CLI): the same with the most advanced replica', async () => {
    const old = stack.app.topology.primary()!.spec.id;
    const remaining = stack.cluster.replicas[0]!.id;
    await waitFor(`${remaining} streaming from ${old}`, async () => {
      const state = (await nodeStates(stack.httpPort)).find((n) => n.id === remaining)?.state;
      return state === 'up';
    });
    let out = '';
    const load = await withLoad(stack, async () => {
      const res = await promisify(execFile)(process.execPath, [
        BIN,
        'switchover',
        '--http',
        `http://127.0.0.1:${stack.httpPort}`,
        '--token',
        TOKEN,
      ]);
      out = res.stdout;
    });
    console.log(`switchover (CLI): ${out.split('\n')[0]}; ${load.errors.length} errors`);
    assert.match(out, new RegExp(`${old} -> ${remaining}`));
    assert.deepEqual(load.errors, [], 'no client saw an error');
    assert.equal(load.writePorts.at(-1), portOf(stack, remaining));
    assert.equal((await nodeStates(stack.httpPort)).find((n) => n.id === old)?.state, 'fenced');
  });

  test('failover: off pins roles to the configuration: no following, no fencing, no switchover', async () => {
    // The cluster now has its primary elsewhere (two switchovers); this second instance
    // still writes to the first configured node, as `off` promises.
    const first = stack.cluster.primary;
    const off = await Rwsplit.start(
      validateConfig({
        workers: 1,
        listen: { postgres: { host: '127.0.0.1', port: 0 }, http: { host: '127.0.0.1', port: 0 } },
        admin: { token: TOKEN },
        postgres: {
          nodes: stack.cluster.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port })),
          monitor: { intervalMs: 200, timeoutMs: 1000 },
          failover: 'off',
        },
      }),
      { log: pino({ level: 'silent' }) },
    );
    try {
      const nodes = await nodeStates(off.httpAddress!.port);
      assert.deepEqual(
        nodes.map((n) => [n.id, (n as unknown as { role: string }).role, n.state]),
        [
          [first.id, 'primary', 'up'],
          [stack.cluster.replicas[0]!.id, 'replica', 'up'],
          [stack.cluster.replicas[1]!.id, 'replica', 'up'],
        ],
      );
      const c = new pg.Client({
        host: '127.0.0.1',
        port: off.pgAddress!.port,
        user: 'postgres',
        database: 'postgres',
      });
      await c.connect();
      try {
        await c.query('BEGIN');
        const res = await c.query<{ port: number }>('SELECT inet_server_port() AS port');
        await c.query('ROLLBACK');
        assert.equal(Number(res.rows[0]!.port), first.port, 'transactions go to the first configured node');
      } finally {
        await c.end();
      }
      const res = await fetch(`http://127.0.0.1:${off.httpAddress!.port}/api/switchover`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      assert.equal(res.status, 409);
      assert.equal(((await res.json()) as { error: string }).error, 'NOT_AUTO');
    } finally {
      await off.stop();
    }
  });
});
