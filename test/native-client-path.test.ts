/**
 * The native core's client-to-server path (dataPlane native): a simple Query whose statement is
 * in the decision cache is read from the client and written to a backend by the core, literals
 * changing from one request to the next. The rows are the server's, reads run on replicas and
 * writes on the primary as through JavaScript, read-your-writes holds, transactions and errors
 * are JavaScript's, and a client that leaves while the core waits for its request is closed.
 * Skipped with the reason printed when the core is not built.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { loadNativeCore } from '../src/util/native-core.js';
import { startStack, waitFor, type Stack } from './support/stack.js';

const { core, error } = loadNativeCore();
if (!core) console.log(`# native client path not tested: ${error}`);

describe('native client-to-server path', { skip: core ? false : `native core unavailable: ${error}` }, () => {
  let stack: Stack;
  let previous: string | undefined;
  before(async () => {
    previous = process.env['RWSPLIT_DATA_PLANE'];
    process.env['RWSPLIT_DATA_PLANE'] = 'native';
    stack = await startStack(); // consistency: read-your-writes (the default)
    const admin = await stack.client();
    await admin.query('CREATE TABLE kv (k int PRIMARY KEY, v text)');
    await admin.query("INSERT INTO kv SELECT g, 'v' || g FROM generate_series(1, 500) g");
    await stack.cluster.waitForReplication();
  });
  after(async () => {
    if (previous === undefined) delete process.env['RWSPLIT_DATA_PLANE'];
    else process.env['RWSPLIT_DATA_PLANE'] = previous;
    await stack?.stop();
  });

  const nativeRequests = (): number => core!.stats()[2];
  const nodeOf = (port: number): string => stack.nodeByPort.get(Number(port)) ?? `unknown ${port}`;

  test('reads with changing literals: the server rows, on replicas, nearly all read by the core', async () => {
    const proxied = await stack.client();
    const direct = await stack.direct(stack.cluster.primary.id);
    const before = nativeRequests();
    const n = 300;
    const where = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const k = 1 + ((i * 53) % 500);
      const sql = `SELECT k, v, inet_server_port() AS port FROM kv WHERE k = ${k} OR v = 'v${k + 1}' ORDER BY k`;
      const got = await proxied.query(sql);
      const node = nodeOf(got.rows[0].port);
      where.set(node, (where.get(node) ?? 0) + 1);
      const strip = (rows: { k: number; v: string }[]): unknown => rows.map(({ k: kk, v }) => ({ kk, v }));
      assert.deepEqual(strip(got.rows), strip((await direct.query(sql)).rows));
    }
    const share = (nativeRequests() - before) / n;
    assert.ok(share >= 0.9, `share of requests the core read and sent: ${share}`);
    assert.equal(where.get(stack.cluster.primary.id) ?? 0, 0, `reads ran on ${[...where]}`);
  });

  test('writes go to the primary and the next read sees them (read-your-writes)', async () => {
    const c = await stack.client();
    const before = nativeRequests();
    const n = 100;
    for (let i = 0; i < n; i++) {
      const k = 1000 + i;
      const w = await c.query(`INSERT INTO kv VALUES (${k}, 'w${k}') RETURNING inet_server_port() AS port`);
      assert.equal(nodeOf(w.rows[0].port), stack.cluster.primary.id);
      const r = await c.query(`SELECT v FROM kv WHERE k = ${k}`);
      assert.deepEqual(r.rows, [{ v: `w${k}` }]);
    }
    // Writes are read by the core; a read right after a write may need the replica asked first.
    assert.ok(
      nativeRequests() - before >= n * 0.9,
      `requests read by the core: ${nativeRequests() - before}`,
    );
  });

  test('transactions, errors and session state are answered as the server does', async () => {
    const c = await stack.client();
    await c.query('SELECT v FROM kv WHERE k = 1');
    await assert.rejects(
      c.query('SELECT 1/0 FROM kv WHERE k = 2'),
      (e: pg.DatabaseError) => e.code === '22012',
    );
    await assert.rejects(
      c.query('SELECT 1/0 FROM kv WHERE k = 3'),
      (e: pg.DatabaseError) => e.code === '22012',
    );
    await c.query('BEGIN');
    await c.query('UPDATE kv SET v = tx WHERE k = 5'.replace('tx', "'tx'"));
    assert.deepEqual((await c.query('SELECT v FROM kv WHERE k = 5')).rows, [{ v: 'tx' }]);
    await c.query('ROLLBACK');
    assert.deepEqual((await c.query('SELECT v FROM kv WHERE k = 5')).rows, [{ v: 'v5' }]);
    // Session state pins the session: the core's cache never overrides that.
    await c.query("SET application_name = 'pinned'");
    const pinned = await c.query('SELECT v, inet_server_port() AS port FROM kv WHERE k = 6');
    assert.equal(nodeOf(pinned.rows[0].port), stack.cluster.primary.id);
    assert.equal((await c.query('SHOW application_name')).rows[0].application_name, 'pinned');
  });

  test('a client that leaves while the core waits for its request is closed', async () => {
    const openClients = async (): Promise<number> => {
      const text = await (await fetch(`http://127.0.0.1:${stack.httpPort}/metrics`)).text();
      const m = /rwsplit_client_connections\{protocol="postgres"\} (\d+)/.exec(text);
      assert.ok(m, 'the client connection gauge is in /metrics');
      return Number(m[1]);
    };
    const before = await openClients();
    const armedBefore = core!.stats()[2];
    for (let i = 0; i < 20; i++) {
      const c = new pg.Client({
        host: '127.0.0.1',
        port: stack.pgPort,
        user: 'postgres',
        database: 'postgres',
      });
      await c.connect();
      await c.query(`SELECT v FROM kv WHERE k = ${i + 1}`);
      await c.query(`SELECT v FROM kv WHERE k = ${i + 2}`);
      await c.end();
    }
    assert.ok(core!.stats()[2] - armedBefore >= 10, "the second read of most clients was the core's");
    await waitFor(
      'the sessions of the clients that left to close',
      async () => (await openClients()) === before,
    );
    const c = await stack.client();
    assert.deepEqual((await c.query('SELECT v FROM kv WHERE k = 9')).rows, [{ v: 'v9' }]);
  });
});
