import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type pg from 'pg';
import { createPool, type RwsplitPool } from '../src/lib/pg/index.js';
import { startStack, waitFor, type Stack } from './support/stack.js';

/**
 * The in-process library (`rwsplit/pg`) as a drop-in for pg.Pool, on a real primary and two
 * replicas: pg.Pool's API, the proxy's routing (simple and extended protocol), read-your-writes
 * with replay paused, and tokens that cross between the library and the proxy.
 */
describe('rwsplit/pg: a pg.Pool that splits reads and writes in the process', () => {
  let stack: Stack;
  let pool: RwsplitPool;
  /** the same nodes at consistency bounded: no token, the balancer alone picks among replicas */
  let bounded: RwsplitPool;
  let primaryId: string;
  const nodeOf = (port: unknown): string => stack.nodeByPort.get(Number(port)) ?? `port ${String(port)}`;
  const served = (res: pg.QueryResult): string => (res as unknown as { node: string }).node;

  before(async () => {
    stack = await startStack();
    primaryId = stack.cluster.primary.id;
    pool = createPool({
      nodes: stack.cluster.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port })),
      user: 'postgres',
      database: 'postgres',
      max: 4,
      monitor: { intervalMs: 100 },
      routing: { causalWaitMs: 50 },
    });
    bounded = createPool({
      nodes: stack.cluster.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port })),
      user: 'postgres',
      database: 'postgres',
      consistency: 'bounded',
      monitor: { intervalMs: 100 },
      routing: { causalWaitMs: 20 },
    });
    await pool.query('CREATE TABLE items (id serial PRIMARY KEY, name text, port int)');
    await pool.query('CREATE SEQUENCE seq');
    await stack.cluster.waitForReplication();
  });
  after(async () => {
    await pool?.end().catch(() => undefined);
    await bounded?.end().catch(() => undefined);
    await stack?.stop();
  });

  test('a bad option is an error naming it', () => {
    const nodes = [{ host: '127.0.0.1', port: 1 }];
    assert.throws(
      () => createPool({ nodes, routing: { balanse: 'weighted' } }),
      /unknown key balanse in routing/,
    );
    assert.throws(() => createPool({ nodes, staleness: { maxLagMs: -1 } }), /staleness\.maxLagMs/);
    assert.throws(() => createPool({ nodes, failover: 'auto' as never }), /failover: mode auto/);
    assert.throws(() => createPool({ nodes, maxx: 3 } as never), /unknown option maxx/);
  });

  test('pg.Pool API: query as promise and callback, connect/release, events, counts, end', async () => {
    const p = createPool({
      nodes: stack.cluster.nodes.map((n) => ({ host: n.host, port: n.port })),
      user: 'postgres',
      database: 'postgres',
      max: 2,
    });
    const events: string[] = [];
    for (const ev of ['connect', 'acquire', 'release', 'remove']) p.on(ev, () => events.push(ev));
    const res = await p.query<{ n: number }>('SELECT $1::int + 1 AS n', [41]);
    assert.equal(res.rows[0]!.n, 42);
    assert.equal(res.rowCount, 1);
    const viaCallback = await new Promise<pg.QueryResult>((resolve, reject) =>
      p.query('SELECT 7 AS n', (err, r) => (err ? reject(err) : resolve(r!))),
    );
    assert.equal(viaCallback.rows[0]!.n, 7);
    const cbErr = await new Promise<Error | null>((resolve) =>
      p.query('SELEC oops', [], (err) => resolve(err)),
    );
    assert.equal((cbErr as Error & { code: string }).code, '42601', 'the server error reaches the callback');
    await assert.rejects(p.query({ text: 'SELECT 1/0' }), { code: '22012' });

    const client = await p.connect();
    assert.equal((await client.query('SELECT 1 AS one')).rows[0]!.one, 1);
    client.release();
    assert.throws(() => client.release(), /already been released/);
    await new Promise<void>((resolve, reject) =>
      p.connect((err, c, done) => {
        if (err) return reject(err);
        c!.query('SELECT 2 AS two', (e, r) => {
          done!();
          if (e) reject(e);
          else resolve(assert.equal(r!.rows[0]!.two, 2));
        });
      }),
    );
    assert.ok(p.totalCount >= 1, 'connections are counted');
    assert.equal(p.idleCount, p.totalCount, 'all idle between queries');
    assert.equal(p.waitingCount, 0);
    assert.ok(events.includes('connect') && events.includes('acquire') && events.includes('release'));
    await p.end();
    await waitFor('the remove events of end()', () => events.includes('remove'));
    assert.equal(p.totalCount, 0);
    await assert.rejects(p.query('SELECT 1'), /after calling end/);
  });

  for (const mode of ['simple', 'extended'] as const) {
    // pg sends a query with values as Parse/Bind/Execute (extended), without as one Query.
    const q = (sql: string, ...values: unknown[]): Promise<pg.QueryResult> =>
      mode === 'simple' ? pool.query(sql.replace(/\$1/g, `'${String(values[0])}'`)) : pool.query(sql, values);

    test(`${mode}: writes (INSERT, data-modifying CTE, nextval) on the primary, reads on replicas`, async () => {
      const insert = await q(
        'INSERT INTO items (name, port) VALUES ($1, inet_server_port()) RETURNING port',
        mode,
      );
      assert.equal(nodeOf(insert.rows[0]!.port), primaryId);
      assert.equal(served(insert), primaryId, 'the result names the node');
      const cte = await q(
        'WITH w AS (INSERT INTO items (name) VALUES ($1) RETURNING id) SELECT inet_server_port() AS port, pg_is_in_recovery() AS r FROM w',
        `${mode}-cte`,
      );
      assert.equal(nodeOf(cte.rows[0]!.port), primaryId);
      assert.equal(cte.rows[0]!.r, false);
      const seq = await q("SELECT nextval('seq') AS v, inet_server_port() AS port, $1::text AS m", mode);
      assert.equal(nodeOf(seq.rows[0]!.port), primaryId);

      await stack.cluster.waitForReplication();
      const readers = new Map<string, number>();
      for (let i = 0; i < 40; i++) {
        const r = await q('SELECT inet_server_port() AS port, pg_is_in_recovery() AS r, $1::text AS m', mode);
        assert.equal(r.rows[0]!.r, true, 'a read runs in recovery (on a replica)');
        const id = nodeOf(r.rows[0]!.port);
        assert.equal(served(r), id);
        readers.set(id, (readers.get(id) ?? 0) + 1);
      }
      // Right after a write, read-your-writes may keep to the replica known to have it until the
      // next probe; without a token the balancer spreads reads over both replicas.
      for (let i = 0; i < 20; i++) {
        const r =
          mode === 'simple'
            ? await bounded.query('SELECT 1 AS one')
            : await bounded.query('SELECT $1::int AS one', [1]);
        readers.set(served(r), (readers.get(served(r)) ?? 0) + 1);
      }
      assert.deepEqual([...readers.keys()].sort(), stack.cluster.replicas.map((n) => n.id).sort());
    });
  }

  test('connect(): per statement until a transaction; BEGIN READ ONLY on a replica; SET pins the primary', async () => {
    const c = await pool.connect();
    try {
      const port = async (): Promise<string> =>
        nodeOf((await c.query('SELECT inet_server_port() AS p')).rows[0]!.p);
      assert.notEqual(await port(), primaryId, 'autocommit read on a replica');
      await c.query('BEGIN');
      assert.equal(await port(), primaryId, 'inside the transaction: the primary');
      await c.query('INSERT INTO items (name) VALUES ($1)', ['in-tx']);
      assert.equal(c.pinnedTo, primaryId);
      await c.query('COMMIT');
      assert.equal(c.pinnedTo, null, 'the transaction ended: the connection went back');
      const seen = await c.query("SELECT count(*)::int AS n FROM items WHERE name = 'in-tx'");
      assert.equal(seen.rows[0]!.n, 1, 'the commit is read back (read-your-writes)');

      await c.query('BEGIN READ ONLY');
      assert.notEqual(await port(), primaryId, 'a read-only transaction on a replica');
      await c.query('ROLLBACK');

      await c.query('BEGIN');
      await assert.rejects(c.query('SELECT 1/0'), { code: '22012' });
      await assert.rejects(
        c.query('SELECT 1'),
        { code: '25P02' },
        'the failed transaction stays on its node',
      );
      await c.query('ROLLBACK');
      assert.equal(c.pinnedTo, null);

      await c.query("SET application_name = 'pinned'");
      assert.equal(c.pinnedTo, primaryId);
      const name = await c.query('SHOW application_name');
      assert.equal(name.rows[0]!.application_name, 'pinned', 'session state kept on its connection');
      assert.equal(await port(), primaryId);
    } finally {
      c.release();
    }
    const listener = await pool.connect();
    try {
      const got = new Promise<pg.Notification>((resolve) => listener.once('notification', resolve));
      await listener.query('LISTEN jobs');
      assert.equal(listener.pinnedTo, primaryId, 'LISTEN holds the primary');
      await pool.query("SELECT pg_notify('jobs', 'hello')");
      assert.equal((await got).payload, 'hello', 'notifications reach the client');
    } finally {
      listener.release();
    }
    const after = await pool.query('SHOW application_name');
    assert.notEqual(after.rows[0]!.application_name, 'pinned', 'the SET did not leak into the pool');
  });

  test('read-your-writes while both replicas have replay paused (simple and extended)', async () => {
    const replicas = await Promise.all(stack.cluster.replicas.map((n) => stack.direct(n.id)));
    for (const r of replicas) await r.query('SELECT pg_wal_replay_pause()');
    try {
      for (const [i, mode] of ['simple', 'extended'].entries()) {
        const name = `paused-${mode}`;
        const ins =
          mode === 'simple'
            ? await pool.query(`INSERT INTO items (name) VALUES ('${name}') RETURNING id`)
            : await pool.query('INSERT INTO items (name) VALUES ($1) RETURNING id', [name]);
        const token = (ins as unknown as { causalToken: string }).causalToken;
        assert.match(token, /^v1:default@[0-9A-F]+\/[0-9A-F]+$/);
        const read =
          mode === 'simple'
            ? await pool.query(`SELECT id FROM items WHERE name = '${name}'`)
            : await pool.query('SELECT id FROM items WHERE name = $1', [name]);
        assert.equal(read.rows.length, 1, `${mode}: the write is read back (${i})`);
        assert.equal(served(read), primaryId, 'no replica had it: the primary served');
      }

      // Tokens cross: the library's token on a proxy session, the proxy's token in the library.
      const libWrite = await pool.query("INSERT INTO items (name) VALUES ('from-lib') RETURNING id");
      const viaProxy = await stack.client();
      await viaProxy.query("SET rwsplit.consistency = 'bounded'");
      const r0 = await viaProxy.query("SELECT count(*)::int AS n FROM items WHERE name = 'from-lib'");
      assert.equal(r0.rows[0]!.n, 0, 'control: without the token the proxy reads a paused replica');
      await viaProxy.query(
        `SET rwsplit.consistency = 'bounded'; SET rwsplit.causal_token = '${(libWrite as unknown as { causalToken: string }).causalToken}'`,
      );
      const r1 = await viaProxy.query("SELECT count(*)::int AS n FROM items WHERE name = 'from-lib'");
      assert.equal(r1.rows[0]!.n, 1, 'the proxy honours the library token');

      const writer = await stack.client();
      await writer.query("INSERT INTO items (name) VALUES ('from-proxy')");
      const proxyToken = (await writer.query('SHOW rwsplit.causal_token')).rows[0]![
        'rwsplit.causal_token'
      ] as string;
      const control = await bounded.query("SELECT count(*)::int AS n FROM items WHERE name = 'from-proxy'");
      assert.equal(control.rows[0]!.n, 0, 'without the token a bounded read sees the paused replica');
      assert.notEqual(served(control), primaryId);
      const scoped = bounded.withToken(proxyToken);
      const r2 = await scoped.query("SELECT count(*)::int AS n FROM items WHERE name = 'from-proxy'");
      assert.equal(r2.rows[0]!.n, 1, 'the library honours the proxy token');
      const r3 = await bounded.query({
        text: 'SELECT count(*)::int AS n FROM items WHERE name = $1',
        values: ['from-proxy'],
        causalToken: proxyToken,
      });
      assert.equal(r3.rows[0]!.n, 1, 'a per-request token too');
    } finally {
      for (const r of replicas) await r.query('SELECT pg_wal_replay_resume()');
    }
  });

  test('write-then-read pairs with one replica paused part of the time: 0 stale reads, most reads on replicas', async () => {
    const paused = await stack.direct(stack.cluster.replicas[0]!.id);
    let stop = false;
    // Replay of one replica paused 300 ms of every 600 ms, while 8 loops write then read their own row.
    const toggler = (async () => {
      while (!stop) {
        await paused.query('SELECT pg_wal_replay_pause()');
        await new Promise((r) => setTimeout(r, 300));
        await paused.query('SELECT pg_wal_replay_resume()');
        await new Promise((r) => setTimeout(r, 300));
      }
    })();
    let stale = 0;
    let pairs = 0;
    let onReplica = 0;
    try {
      await Promise.all(
        Array.from({ length: 8 }, async (_, loop) => {
          for (let i = 0; i < 100; i++) {
            const name = `pair-${loop}-${i}`;
            const extended = i % 2 === 0;
            const ins = extended
              ? await pool.query('INSERT INTO items (name) VALUES ($1) RETURNING id', [name])
              : await pool.query(`INSERT INTO items (name) VALUES ('${name}') RETURNING id`);
            const read = extended
              ? await pool.query('SELECT id FROM items WHERE id = $1', [ins.rows[0]!.id])
              : await pool.query(`SELECT id FROM items WHERE id = ${Number(ins.rows[0]!.id)}`);
            pairs++;
            if (read.rows.length !== 1) stale++;
            if (served(read) !== primaryId) onReplica++;
          }
        }),
      );
    } finally {
      stop = true;
      await toggler;
      await paused.query('SELECT pg_wal_replay_resume()');
    }
    assert.equal(pairs, 800);
    assert.equal(stale, 0, 'no read missed its own write');
    // Seen: 88% (the rest waited causalWaitMs on the paused replica, then went to the primary).
    assert.ok(onReplica / pairs >= 0.75, `reads on replicas: ${onReplica} of ${pairs}`);
  });

  test('Drizzle (node-postgres driver) and Kysely (PostgresDialect) on the pool', async () => {
    const { drizzle } = await import('drizzle-orm/node-postgres');
    const { pgTable, serial, text, integer } = await import('drizzle-orm/pg-core');
    const { eq, sql } = await import('drizzle-orm');
    const items = pgTable('items', {
      id: serial('id').primaryKey(),
      name: text('name'),
      port: integer('port'),
    });
    const db = drizzle(pool as never);
    const [row] = await db
      .insert(items)
      .values({ name: 'drizzle', port: sql`inet_server_port()` })
      .returning();
    assert.equal(nodeOf(row!.port), primaryId);
    const got = await db.select().from(items).where(eq(items.name, 'drizzle'));
    assert.equal(got.length, 1, 'drizzle reads its insert back');
    const portRead = await db.execute(sql`SELECT inet_server_port() AS port`);
    assert.notEqual(nodeOf(portRead.rows[0]!.port), primaryId, 'a drizzle read on a replica');
    await db.transaction(async (tx) => {
      const r = await tx.execute(sql`SELECT inet_server_port() AS port`);
      assert.equal(nodeOf(r.rows[0]!.port), primaryId, 'a drizzle transaction on the primary');
      await tx.insert(items).values({ name: 'drizzle-tx' });
    });
    assert.equal((await db.select().from(items).where(eq(items.name, 'drizzle-tx'))).length, 1);

    const { Kysely, PostgresDialect, sql: ksql } = await import('kysely');
    interface Db {
      items: { id: number; name: string | null; port: number | null };
    }
    const k = new Kysely<Db>({ dialect: new PostgresDialect({ pool: pool as never }) });
    const inserted = await k
      .insertInto('items')
      .values({ id: ksql<number>`DEFAULT`, name: 'kysely', port: ksql<number>`inet_server_port()` })
      .returning(['id', 'port'])
      .executeTakeFirstOrThrow();
    assert.equal(nodeOf(inserted.port), primaryId);
    const back = await k.selectFrom('items').select('id').where('name', '=', 'kysely').execute();
    assert.deepEqual(back, [{ id: inserted.id }], 'kysely reads its insert back');
    const kRead = await ksql<{ port: number }>`SELECT inet_server_port() AS port`.execute(k);
    assert.notEqual(nodeOf(kRead.rows[0]!.port), primaryId, 'a kysely read on a replica');
    await k.transaction().execute(async (trx) => {
      const r = await ksql<{ port: number }>`SELECT inet_server_port() AS port`.execute(trx);
      assert.equal(nodeOf(r.rows[0]!.port), primaryId, 'a kysely transaction on the primary');
    });
    await waitFor('the pool to be idle', () => pool.idleCount === pool.totalCount);
  });

  test('the package exports map names the library', async () => {
    const spec = 'rwsplit/pg';
    const mod = (await import(spec)) as { createPool: unknown };
    assert.equal(mod.createPool, createPool);
  });
});
