/**
 * The native forwarding core (dataPlane native): answers carried by the core are the very
 * answers the server gives (simple and extended protocol, large rows, errors handed back,
 * pipelining, a transaction), most answers of plain traffic are carried by it, and the data
 * plane in use is said in /api/nodes and /metrics. Skipped with the reason printed when the
 * core is not built (no C compiler): the JavaScript data plane then runs the whole suite.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { loadNativeCore } from '../src/util/native-core.js';
import { startStack, type Stack } from './support/stack.js';

const { core, error } = loadNativeCore();
if (!core) console.log(`# native data plane not tested: ${error}`);

describe('native forwarding core', { skip: core ? false : `native core unavailable: ${error}` }, () => {
  let stack: Stack;
  let previous: string | undefined;
  before(async () => {
    previous = process.env['RWSPLIT_DATA_PLANE'];
    process.env['RWSPLIT_DATA_PLANE'] = 'native';
    stack = await startStack();
    const admin = await stack.client();
    await admin.query('CREATE TABLE t (id int PRIMARY KEY, v text)');
    await admin.query("INSERT INTO t SELECT g, repeat('x', g % 97) FROM generate_series(1, 2000) g");
    await stack.cluster.waitForReplication();
  });
  after(async () => {
    if (previous === undefined) delete process.env['RWSPLIT_DATA_PLANE'];
    else process.env['RWSPLIT_DATA_PLANE'] = previous;
    await stack?.stop();
  });

  const engaged = (): number => core!.stats()[0];

  test('/api/nodes and /metrics say the data plane is native', async () => {
    const nodes = (await (await fetch(`http://127.0.0.1:${stack.httpPort}/api/nodes`)).json()) as {
      dataPlane: string;
    }[];
    assert.ok(nodes.length > 0);
    assert.deepEqual(new Set(nodes.map((n) => n.dataPlane)), new Set(['native']));
    const metrics = await (await fetch(`http://127.0.0.1:${stack.httpPort}/metrics`)).text();
    assert.match(metrics, /rwsplit_data_plane\{protocol="postgres",plane="native"\} 1/);
    assert.match(metrics, /rwsplit_data_plane\{protocol="postgres",plane="js"\} 0/);
  });

  test('the same rows as the server, simple and extended, and most answers carried natively', async () => {
    const proxied = await stack.client();
    const direct = await stack.direct(stack.cluster.primary.id);
    const before = engaged();
    const n = 200;
    for (let i = 0; i < n; i++) {
      const id = 1 + ((i * 37) % 2000);
      const simple = `SELECT id, v FROM t WHERE id BETWEEN ${id} AND ${id + 20} ORDER BY id`;
      assert.deepEqual((await proxied.query(simple)).rows, (await direct.query(simple)).rows);
      const ext = { text: 'SELECT id, v FROM t WHERE id >= $1 ORDER BY id LIMIT 5', values: [id] };
      assert.deepEqual((await proxied.query(ext)).rows, (await direct.query(ext)).rows);
    }
    const share = (engaged() - before) / (2 * n);
    assert.ok(share >= 0.9, `share of answers carried by the core: ${share}`);
  });

  test('a result far larger than the core buffer arrives whole (streamed through)', async () => {
    const c = await stack.client();
    const sql = "SELECT g, repeat('y', 1000) AS pad FROM generate_series(1, 3000) g";
    const r = await c.query(sql);
    assert.equal(r.rows.length, 3000);
    assert.deepEqual(r.rows[2999], { g: 3000, pad: 'y'.repeat(1000) });
    const big = await c.query("SELECT repeat('z', 300000) AS big");
    assert.equal(big.rows[0].big.length, 300000);
  });

  test('errors, DDL and a transaction are handed back and answered as the server does', async () => {
    const c = await stack.client();
    await assert.rejects(c.query('SELECT 1/0'), (e: pg.DatabaseError) => e.code === '22012');
    await assert.rejects(c.query('SELECT $1::int', ['nope']), (e: pg.DatabaseError) => e.code === '22P02');
    assert.equal((await c.query('SELECT 42 AS x')).rows[0].x, 42);
    await c.query('CREATE TABLE native_ddl (x int)');
    await c.query('BEGIN');
    await c.query('INSERT INTO native_ddl VALUES (1)');
    assert.equal((await c.query('SELECT count(*)::int AS n FROM native_ddl')).rows[0].n, 1);
    await assert.rejects(c.query('SELECT nope FROM native_ddl'), (e: pg.DatabaseError) => e.code === '42703');
    await assert.rejects(c.query('SELECT 1'), (e: pg.DatabaseError) => e.code === '25P02');
    await c.query('ROLLBACK');
    assert.equal(
      (await c.query('SELECT count(*)::int AS n FROM native_ddl /* rwsplit:primary */')).rows[0].n,
      0,
    );
  });

  test('pipelined queries of many clients get their own answers in order', async () => {
    const clients = await Promise.all(Array.from({ length: 8 }, () => stack.client()));
    await Promise.all(
      clients.map(async (c, k) => {
        const answers = await Promise.all(
          Array.from({ length: 50 }, (_, i) => c.query('SELECT $1::int AS k, $2::int AS i', [k, i])),
        );
        answers.forEach((r, i) => assert.deepEqual(r.rows[0], { k, i }));
      }),
    );
  });
});
