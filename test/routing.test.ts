import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startStack, whereRuns, type Stack } from './support/stack.js';

describe('read/write routing through the proxy', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack();
    const admin = await stack.client();
    await admin.query('CREATE TABLE items (id serial PRIMARY KEY, v text)');
    await admin.query('CREATE SEQUENCE seq');
    await stack.cluster.waitForReplication();
  });
  after(async () => stack?.stop());

  test('100 autocommit reads land only on replicas, spread round-robin', async () => {
    const c = await stack.client();
    const counts = new Map<string, number>();
    for (let i = 0; i < 100; i++) {
      const node = await whereRuns(stack, c);
      counts.set(node, (counts.get(node) ?? 0) + 1);
    }
    const replicas = stack.cluster.replicas.map((r) => r.id);
    assert.deepEqual([...counts.keys()].sort(), [...replicas].sort(), `reads went to ${[...counts.keys()]}`);
    for (const r of replicas)
      assert.equal(counts.get(r), 50, `round-robin gives each replica 50, got ${counts.get(r)}`);
  });

  test('reads inside BEGIN … COMMIT land on the primary', async () => {
    const c = await stack.client();
    await c.query('BEGIN');
    for (let i = 0; i < 100; i++) assert.equal(await whereRuns(stack, c), stack.cluster.primary.id);
    await c.query('COMMIT');
  });

  test('writes, DDL, data-modifying CTEs, FOR UPDATE and nextval land on the primary', async () => {
    const c = await stack.client();
    const primary = stack.cluster.primary.id;
    const statements = [
      "INSERT INTO items (v) VALUES ('a') RETURNING inet_server_port() AS port",
      "UPDATE items SET v = 'b' RETURNING inet_server_port() AS port",
      "WITH moved AS (UPDATE items SET v = 'c' RETURNING id) SELECT inet_server_port() AS port FROM moved",
      'SELECT inet_server_port() AS port FROM items FOR UPDATE',
      "SELECT inet_server_port() AS port, nextval('seq')",
      'CREATE TABLE ddl_probe AS SELECT inet_server_port() AS port',
    ];
    for (const sql of statements.slice(0, 5)) assert.equal(await whereRuns(stack, c, sql), primary, sql);
    await c.query(statements[5]!);
    const r = await c.query<{ port: number }>('SELECT port FROM ddl_probe /* rwsplit:primary */');
    assert.equal(
      stack.nodeByPort.get(Number(r.rows[0]!.port)),
      primary,
      'CREATE TABLE AS ran on the primary',
    );
  });

  test('read-only transactions run on one replica', async () => {
    const c = await stack.client();
    const replicas = new Set(stack.cluster.replicas.map((r) => r.id));
    await c.query('BEGIN READ ONLY');
    const first = await whereRuns(stack, c);
    assert.ok(replicas.has(first), `BEGIN READ ONLY ran on ${first}`);
    for (let i = 0; i < 10; i++)
      assert.equal(await whereRuns(stack, c), first, 'same replica all transaction long');
    await c.query('COMMIT');

    await c.query('BEGIN');
    await c.query('SET TRANSACTION READ ONLY');
    const second = await whereRuns(stack, c);
    assert.ok(replicas.has(second), `BEGIN; SET TRANSACTION READ ONLY ran on ${second}`);
    assert.equal((await c.query('SHOW transaction_read_only')).rows[0].transaction_read_only, 'on');
    await c.query('COMMIT');
  });

  test('an empty deferred transaction commits without a server', async () => {
    const c = await stack.client();
    await c.query('BEGIN');
    const res = await c.query('COMMIT');
    assert.equal(res.command, 'COMMIT');
    assert.ok(
      stack.cluster.replicas.some((r) => r.id) && (await whereRuns(stack, c)) !== stack.cluster.primary.id,
    );
  });

  test('hints override the classifier', async () => {
    const c = await stack.client();
    assert.equal(
      await whereRuns(stack, c, 'SELECT inet_server_port() AS port /* rwsplit:primary */'),
      stack.cluster.primary.id,
    );
    const replicas = stack.cluster.replicas.map((r) => r.id);
    const onReplica = await whereRuns(
      stack,
      c,
      "/* rwsplit:replica */ SELECT inet_server_port() AS port, nextval('seq')",
    ).catch((e: Error) => e.message);
    // nextval on a replica fails: proof that the hint was obeyed over the classifier.
    assert.match(onReplica, /read-only transaction|recovery/);
    assert.ok(replicas.length === 2);
  });

  test('session state pins the session to the primary', async () => {
    const c = await stack.client();
    assert.notEqual(await whereRuns(stack, c), stack.cluster.primary.id);
    await c.query("SET application_name = 'pinned'");
    for (let i = 0; i < 10; i++) assert.equal(await whereRuns(stack, c), stack.cluster.primary.id);
    assert.equal((await c.query('SHOW application_name')).rows[0].application_name, 'pinned');
    const t = await stack.client();
    await t.query('CREATE TEMP TABLE scratch (x int)');
    await t.query('INSERT INTO scratch VALUES (1)');
    assert.equal((await t.query('SELECT count(*)::int AS n FROM scratch')).rows[0].n, 1);
  });

  test('/metrics reports per-node queries, routing reasons and latency histograms', async () => {
    const text = await (await fetch(`http://127.0.0.1:${stack.httpPort}/metrics`)).text();
    for (const r of stack.cluster.replicas) {
      const m = new RegExp(`rwsplit_pg_queries_total\\{node="${r.id}"\\} (\\d+)`).exec(text);
      assert.ok(m && Number(m[1]) >= 50, `queries counted for ${r.id}`);
    }
    assert.match(text, /rwsplit_pg_route_decisions_total\{reason="read"\} \d+/);
    assert.match(text, /rwsplit_pg_route_decisions_total\{reason="write"\} \d+/);
    assert.match(text, /rwsplit_pg_route_decisions_total\{reason="transaction"\} \d+/);
    assert.match(text, /rwsplit_pg_query_duration_seconds_bucket\{le="[\d.]+",node="pg-primary"\} \d+/);
    assert.match(text, /rwsplit_replication_lag_bytes\{node="pg-replica1"\} \d+/);
    assert.match(text, /rwsplit_replication_lag_observed_seconds_count\{node="pg-replica1"\} \d+/);
    const nodes = (await (await fetch(`http://127.0.0.1:${stack.httpPort}/api/nodes`)).json()) as Record<
      string,
      unknown
    >[];
    assert.equal(nodes.length, 3);
    for (const n of nodes) {
      for (const key of ['id', 'kind', 'shard', 'role', 'host', 'port', 'state', 'lagBytes', 'lagMs'])
        assert.ok(key in n, key);
      assert.equal(n.kind, 'postgres');
      assert.equal(n.state, 'up');
    }
  });

  test('a read of a row just written by another session eventually sees it (sanity of the data path)', async () => {
    const c = await stack.client();
    await c.query("INSERT INTO items (v) VALUES ('visible')");
    await stack.cluster.waitForReplication();
    const r = await c.query("SELECT count(*)::int AS n FROM items WHERE v = 'visible'");
    assert.equal(r.rows[0].n, 1);
  });
});
