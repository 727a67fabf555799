import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { pgBinary } from '../src/cluster/pg-binaries.js';
import { encodeCancelRequest } from '../src/pg/protocol/index.js';
import { startStack, waitFor, whereRuns, type Stack } from './support/stack.js';

/** Runs psql against the proxy (asynchronously: the proxy runs in this process). */
function psql(stack: Stack, args: string[], input?: string): Promise<{ status: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(pgBinary('psql'), [
      '-X',
      '-q',
      '-h',
      '127.0.0.1',
      '-p',
      String(stack.pgPort),
      '-U',
      'postgres',
      '-d',
      'postgres',
      ...args,
    ]);
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, out }));
    child.stdin.end(input ?? '');
  });
}

describe('protocol features through the proxy', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({ postgres: { pool: { size: 4 } } });
    const c = await stack.client();
    await c.query('CREATE TABLE kv (k int PRIMARY KEY, v text)');
    await stack.cluster.waitForReplication();
  });
  after(async () => stack?.stop());

  test('node-postgres: parameters and named prepared statements on whichever backend runs them', async () => {
    const clients = await Promise.all([stack.client(), stack.client(), stack.client()]);
    for (const [i, c] of clients.entries()) {
      await c.query({
        name: 'ins',
        text: 'INSERT INTO kv VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = $2',
        values: [i, `v${i}`],
      });
    }
    await stack.cluster.waitForReplication();
    // This test is about statements re-Parsed on whichever replica runs them: with
    // read-your-writes (the default) a session that just wrote reads only where the proxy
    // already knows its write is replayed, which until the next probe may be one replica.
    for (const c of clients) await c.query('SET rwsplit.consistency = bounded');
    const seen = new Set<string>();
    for (let round = 0; round < 10; round++) {
      for (const [i, c] of clients.entries()) {
        const r = await c.query({
          name: 'get',
          text: 'SELECT v, inet_server_port() AS port FROM kv WHERE k = $1',
          values: [i],
        });
        assert.equal(r.rows[0].v, `v${i}`);
        seen.add(stack.nodeByPort.get(Number(r.rows[0].port))!);
      }
    }
    assert.equal(
      seen.size,
      2,
      `the named statement ran on both replicas (re-Parsed where unknown): ${[...seen]}`,
    );
    // Two clients using one name for different queries do not collide.
    const [a, b] = clients;
    const ra = await a!.query({ name: 'same', text: 'SELECT 1 AS x' });
    const rb = await b!.query({ name: 'same', text: "SELECT 'two' AS y" });
    assert.deepEqual([ra.rows[0], rb.rows[0]], [{ x: 1 }, { y: 'two' }]);
  });

  test('server-side statements per backend are bounded: the oldest are closed and re-Parsed on use', async () => {
    const c = await stack.client();
    await c.query('BEGIN'); // one backend for the whole test
    for (let i = 0; i < 1100; i++) {
      const r = await c.query({ name: `s${i}`, text: `SELECT ${i}::int AS i`, values: [] });
      assert.equal(r.rows[0].i, i);
    }
    const count = await c.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_prepared_statements');
    assert.ok(count.rows[0]!.n <= 1000, `${count.rows[0]!.n} statements kept on the server`);
    assert.ok(count.rows[0]!.n >= 900, 'recent statements are kept');
    const again = await c.query({ name: 's0', text: 'SELECT 0::int AS i', values: [] });
    assert.equal(again.rows[0].i, 0, 'an evicted statement is re-Parsed transparently');
    await c.query('COMMIT');
  });

  test('an error inside a pipelined extended batch is reported and the session goes on', async () => {
    const c = await stack.client();
    await assert.rejects(
      c.query({ name: 'bad', text: 'SELECT 1/$1::int AS x', values: [0] }),
      /division by zero/,
    );
    const r = await c.query({ name: 'bad', text: 'SELECT 1/$1::int AS x', values: [1] });
    assert.equal(r.rows[0].x, 1);
    await assert.rejects(
      c.query('SELECT * FROM no_such_table'),
      (e: { code?: string }) => e.code === '42P01',
    );
    assert.equal((await c.query('SELECT 2 AS y')).rows[0].y, 2);
  });

  test('COPY FROM STDIN and COPY TO STDOUT', async () => {
    const rows = Array.from({ length: 1000 }, (_, i) => `${1000 + i}\tcopied ${i}`).join('\n') + '\n';
    const load = await psql(stack, ['-c', 'COPY kv FROM STDIN'], rows);
    assert.equal(load.status, 0, load.out);
    await stack.cluster.waitForReplication();
    const dump = await psql(stack, ['-c', 'COPY (SELECT k, v FROM kv WHERE k >= 1000 ORDER BY k) TO STDOUT']);
    assert.equal(dump.status, 0, dump.out);
    assert.equal(dump.out, rows);
  });

  test('notices and LISTEN/NOTIFY notifications reach the client', async () => {
    const c = await stack.client();
    const notices: string[] = [];
    c.on('notice', (n) => notices.push(n.message ?? ''));
    await c.query("DO $$ BEGIN RAISE NOTICE 'hello from %', 'the server'; END $$");
    assert.deepEqual(notices, ['hello from the server']);

    const listener = await stack.client();
    const got: string[] = [];
    listener.on('notification', (m) => got.push(`${m.channel}:${m.payload}`));
    await listener.query('LISTEN news');
    const sender = await stack.client();
    await sender.query("NOTIFY news, 'first'");
    await sender.query("SELECT pg_notify('news', 'second')");
    await waitFor('two notifications', () => got.length === 2);
    assert.deepEqual(got, ['news:first', 'news:second']);
    assert.equal(
      await whereRuns(stack, listener),
      stack.cluster.primary.id,
      'LISTEN pinned the session to the primary',
    );
  });

  test('CancelRequest reaches the backend that runs the query', async () => {
    const c = await stack.client();
    const { processID, secretKey } = c as unknown as { processID: number; secretKey: number };
    const slow = c.query('SELECT pg_sleep(20)');
    await new Promise((r) => setTimeout(r, 500));
    const s = net.connect({ host: '127.0.0.1', port: stack.pgPort }, () =>
      s.end(encodeCancelRequest(processID, secretKey)),
    );
    const started = Date.now();
    await assert.rejects(slow, (e: { code?: string }) => e.code === '57014');
    assert.ok(Date.now() - started < 10_000);
    assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1, 'the session survives the cancel');
  });

  test('a wrong cancel key cancels nothing', async () => {
    const c = await stack.client();
    const { processID } = c as unknown as { processID: number };
    const q = c.query('SELECT pg_sleep(1) AS done');
    const s = net.connect({ host: '127.0.0.1', port: stack.pgPort }, () =>
      s.end(encodeCancelRequest(processID, 12345)),
    );
    const r = await q;
    assert.equal(r.rowCount, 1);
  });

  test('200 clients share pools of 4 connections per node', async () => {
    const clients: pg.Client[] = await Promise.all(Array.from({ length: 200 }, () => stack.client()));
    const results = await Promise.all(clients.map((c, i) => c.query('SELECT $1::int AS i', [i])));
    results.forEach((r, i) => assert.equal(r.rows[0].i, i));
    // Counted on the servers themselves: connections of the proxy's login, per node.
    for (const n of stack.cluster.nodes) {
      const d = await stack.direct(n.id);
      const r = await d.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = 'postgres' AND application_name = '' AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
      );
      assert.ok(r.rows[0]!.n <= 4, `${n.id} has ${r.rows[0]!.n} backend connections for 200 clients`);
      await d.end();
    }
    await Promise.all(clients.map((c) => c.end()));
  });
});
