/**
 * `rwsplit/pg` over two shards (a primary and a replica each), with the `sharding` keys of the
 * YAML `postgres` section: rows placed by the table rule (literal and parameter, simple and
 * extended protocol) land on the shard the ring says (checked on each shard directly), reads
 * by key come back from that shard's replicas, keyless reads merge, keyless writes and schema
 * changes run on every shard by two-phase commit, and transactions from `pool.connect()` stay
 * on one shard or commit across both with the proxy's coordinator. The proxy runs over the
 * same nodes as the oracle for merged answers and refusals: the same rows, SQLSTATE and text.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { pino } from 'pino';
import { Rwsplit } from '../src/app.js';
import { PgShardedCluster } from '../src/cluster/pg-shards.js';
import { validateConfig } from '../src/config/load.js';
import { ShardResolver } from '../src/pg/sharding/shard-resolver.js';
import { createPool, type RwsplitPool } from '../src/lib/pg/index.js';
import { testWorkers, waitFor } from './support/stack.js';

const ROWS = 60;
const SHARDING = {
  tables: [
    { table: 'accounts', column: 'id' },
    { table: 'pairs', column: 'id' },
  ],
  twoPhase: { logShard: 's1', decisionTimeoutMs: 5000, recoveryIntervalMs: 500 },
};

describe('rwsplit/pg on a sharded cluster', () => {
  let cluster: PgShardedCluster;
  let pool: RwsplitPool;
  let app: Rwsplit;
  let proxy: pg.Client;
  let resolver: ShardResolver;
  const direct = new Map<string, pg.Client>();
  const replicas = new Map<string, pg.Client>();
  /** node id → shard, and which are replicas */
  const shardOf = new Map<string, string>();
  const replicaIds = new Set<string>();
  const served = (res: pg.QueryResult): string => (res as unknown as { node: string }).node;

  const idsOn = async (shard: string): Promise<number[]> =>
    (await direct.get(shard)!.query<{ id: number }>('SELECT id FROM accounts ORDER BY id')).rows.map(
      (r) => r.id,
    );
  const balanceOn = async (id: number): Promise<number | undefined> =>
    (
      await direct
        .get(resolver.shardForKey(String(id)))!
        .query<{ balance: number }>('SELECT balance FROM accounts WHERE id = $1', [id])
    ).rows[0]?.balance;
  /** an id of each shard, the n-th one */
  const idOn = (shard: string, n = 0): number => {
    for (let id = 1; ; id++) if (resolver.shardForKey(String(id)) === shard && n-- === 0) return id;
  };
  /** the error a promise rejects with (the test fails if it does not) */
  const failure = async (p: Promise<unknown>): Promise<Error & { code?: string; hint?: string }> => {
    try {
      await p;
    } catch (err) {
      return err as Error & { code?: string };
    }
    assert.fail('expected an error');
  };

  before(async () => {
    cluster = await PgShardedCluster.start({ shards: 2, replicas: 1 });
    for (const n of cluster.nodes) {
      shardOf.set(n.id, n.shard);
      const c = new pg.Client({ host: n.host, port: n.port, user: 'postgres', database: 'postgres' });
      c.on('error', () => undefined);
      await c.connect();
      if (cluster.primaries.some((p) => p.id === n.id)) direct.set(n.shard, c);
      else {
        replicas.set(n.id, c);
        replicaIds.add(n.id);
      }
    }
    const nodes = cluster.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port, shard: n.shard }));
    pool = createPool({
      nodes,
      user: 'postgres',
      database: 'postgres',
      max: 4,
      monitor: { intervalMs: 100 },
      routing: { causalWaitMs: 500 },
      sharding: SHARDING,
    });
    const config = validateConfig({
      listen: { postgres: { host: '127.0.0.1', port: 0 }, http: { host: '127.0.0.1', port: 0 } },
      postgres: { nodes, monitor: { intervalMs: 200, timeoutMs: 1000 }, sharding: SHARDING },
      ...testWorkers(),
    });
    app = await Rwsplit.start(config, { log: pino({ level: 'silent' }) });
    proxy = new pg.Client({
      host: '127.0.0.1',
      port: app.pgAddress!.port,
      user: 'postgres',
      database: 'postgres',
    });
    await proxy.connect();
    resolver = new ShardResolver(cluster.shardNames, config.postgres!.sharding!);
  });

  after(async () => {
    await proxy?.end().catch(() => undefined);
    await pool?.end().catch(() => undefined);
    await app?.stop();
    for (const c of [...direct.values(), ...replicas.values()]) await c.end().catch(() => undefined);
    await cluster?.stop();
  });

  test('the sharding option is validated by the config schema', () => {
    const nodes = cluster.nodes.map((n) => ({ host: n.host, port: n.port, shard: n.shard }));
    assert.throws(
      () => createPool({ nodes, sharding: { tables: [{ table: 'accounts' }] } }),
      /sharding\.tables\.0\.column/,
    );
    assert.throws(() => createPool({ nodes, sharding: { defaultShard: 's9' } }), /defaultShard.*s9/);
    assert.throws(() => createPool({ nodes }), /sharding/, 'two shards and no sharding key');
  });

  test('a schema change runs on every shard (two-phase commit)', async () => {
    const res = await pool.query('CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)');
    assert.equal(res.command, 'CREATE');
    for (const [shard, c] of direct) {
      const r = await c.query("SELECT to_regclass('accounts') IS NOT NULL AS present");
      assert.equal(r.rows[0].present, true, `accounts exists on ${shard}`);
    }
  });

  test('rows land on the shard the ring says (literal and $n), reads by key come back from it', async () => {
    for (let id = 1; id <= ROWS; id++) {
      const r =
        id % 2 === 0
          ? await pool.query(`INSERT INTO accounts (id, balance) VALUES (${id}, ${id * 10})`)
          : await pool.query('INSERT INTO accounts (id, balance) VALUES ($1, $2)', [id, id * 10]);
      const shard = resolver.shardForKey(String(id));
      assert.equal(shardOf.get(served(r)), shard, `insert of ${id} served on ${shard}`);
      assert.ok(!replicaIds.has(served(r)), 'a write on a primary');
    }
    let total = 0;
    for (const shard of cluster.shardNames) {
      const ids = await idsOn(shard);
      total += ids.length;
      assert.ok(ids.length > 0, `shard ${shard} holds rows`);
      for (const id of ids) assert.equal(resolver.shardForKey(String(id)), shard, `row ${id} on ${shard}`);
    }
    assert.equal(total, ROWS);
    await cluster.waitForReplication();
    let onReplica = 0;
    for (let id = 1; id <= ROWS; id++) {
      const r =
        id % 2 === 0
          ? await pool.query<{ balance: number }>(`SELECT balance FROM accounts WHERE id = ${id}`)
          : await pool.query<{ balance: number }>('SELECT balance FROM accounts WHERE id = $1', [id]);
      assert.equal(r.rows[0]?.balance, id * 10, `row ${id} read back`);
      assert.equal(shardOf.get(served(r)), resolver.shardForKey(String(id)), `read of ${id} on its shard`);
      if (replicaIds.has(served(r))) onReplica++;
    }
    // Replication was waited for: reads by key belong on replicas (the primary only if one lags).
    assert.ok(onReplica / ROWS >= 0.9, `reads on replicas: ${onReplica} of ${ROWS}`);
  });

  test('read-your-writes per shard: with replay paused, a write is read back', async () => {
    for (const c of replicas.values()) await c.query('SELECT pg_wal_replay_pause()');
    try {
      for (const shard of cluster.shardNames) {
        const id = idOn(shard, 1);
        const w = await pool.query('UPDATE accounts SET balance = $2 WHERE id = $1', [id, 7777]);
        const token = (w as unknown as { causalToken: string }).causalToken;
        assert.match(token, new RegExp(`^v1:${shard}@[0-9A-F]+/[0-9A-F]+$`), 'a token of that shard');
        const r = await pool.query<{ balance: number }>('SELECT balance FROM accounts WHERE id = $1', [id]);
        assert.equal(r.rows[0]!.balance, 7777, `write on ${shard} read back`);
        assert.equal(shardOf.get(served(r)), shard);
        await pool.query(`UPDATE accounts SET balance = ${id * 10} WHERE id = ${id}`);
      }
      assert.match(
        pool.causalToken(),
        /^v1:s[12]@[^,]+,s[12]@[^,]+$/,
        'the pool token: a position per shard',
      );
    } finally {
      for (const c of replicas.values()) await c.query('SELECT pg_wal_replay_resume()');
    }
    await cluster.waitForReplication();
  });

  test('keyless reads merge rows over both shards, as the proxy merges them', async () => {
    const cases: [string, unknown[]?][] = [
      ['SELECT count(*) AS n, sum(balance) AS total, max(id) AS top FROM accounts'],
      ['SELECT id, balance FROM accounts ORDER BY id LIMIT 5 OFFSET 2'],
      ['SELECT id FROM accounts WHERE balance > $1 ORDER BY id DESC LIMIT $2', [300, 4]],
      ['SELECT balance % 3 AS r, count(*) AS n FROM accounts GROUP BY balance % 3 ORDER BY r'],
    ];
    for (const [sql, values] of cases) {
      const viaLib = await pool.query(sql, values);
      const viaProxy = await proxy.query(sql, values);
      assert.deepEqual(viaLib.rows, viaProxy.rows, sql);
      assert.equal(viaLib.rowCount, viaProxy.rowCount, sql);
      assert.deepEqual(
        served(viaLib)
          .split(',')
          .map((n) => shardOf.get(n))
          .sort(),
        cluster.shardNames,
        `${sql}: one node of each shard`,
      );
    }
    const count = await pool.query<{ n: string }>('SELECT count(*) AS n FROM accounts');
    assert.equal(count.rows[0]!.n, String(ROWS));
    const first = await pool.query({ text: 'SELECT id FROM accounts ORDER BY id LIMIT 3', rowMode: 'array' });
    assert.deepEqual(first.rows, [[1], [2], [3]], 'rowMode array, parsed as pg parses');
    const hinted = await pool.query('/* rwsplit:all-shards */ SELECT id FROM accounts');
    assert.equal(hinted.rowCount, ROWS, 'the all-shards hint: every shard’s rows');
  });

  test('what the proxy refuses is refused with its SQLSTATE and text', async () => {
    await pool.query('CREATE TABLE notes (body text)'); // no table rule: its rows have no shard
    for (const sql of [
      'SELECT avg(balance) FROM accounts',
      'SELECT * FROM notes',
      '/* rwsplit:shard=nowhere */ SELECT 1',
      'UPDATE accounts SET balance = 0 WHERE id IN (SELECT 1)',
      'SELECT pg_advisory_lock(1)', // session state that names no shard
    ]) {
      const lib = await failure(pool.query(sql));
      const viaProxy = await failure(proxy.query(sql));
      assert.equal(lib.code, viaProxy.code, `${sql}: SQLSTATE`);
      assert.equal(lib.message, viaProxy.message, `${sql}: message`);
      assert.equal(lib.hint, viaProxy.hint, `${sql}: hint`);
      assert.match(String(lib.code), /^(0A000|22023)$/);
    }
  });

  test('a keyless write runs on every shard in one two-phase commit', async () => {
    const res = await pool.query('UPDATE accounts SET balance = balance + 1');
    assert.equal(res.rowCount, ROWS, 'the counts of both shards');
    for (const id of [idOn('s1'), idOn('s2')]) assert.equal(await balanceOn(id), id * 10 + 1);
    const again = await pool.query('UPDATE accounts SET balance = balance - $1', [1]);
    assert.equal(again.rowCount, ROWS);
    for (const id of [idOn('s1'), idOn('s2')]) assert.equal(await balanceOn(id), id * 10);
  });

  test('pool.connect(): a transaction on one shard runs there; across shards it commits by 2PC', async () => {
    const a = idOn('s1');
    const b = idOn('s2');
    const client = await pool.connect();
    try {
      // One shard: the BEGIN waits for the first statement, then all of it on that shard's primary.
      await client.query('BEGIN');
      assert.equal(client.pinnedTo, null, 'no shard before a statement names one');
      await client.query('UPDATE accounts SET balance = balance - 5 WHERE id = $1', [a]);
      const held = client.pinnedTo!;
      assert.equal(shardOf.get(held), 's1');
      assert.ok(!replicaIds.has(held));
      const inside = await client.query<{ balance: number }>(`SELECT balance FROM accounts WHERE id = ${a}`);
      assert.equal(inside.rows[0]!.balance, a * 10 - 5, 'the transaction sees its own write');
      assert.equal(served(inside), held);
      await client.query('COMMIT');
      assert.equal(client.pinnedTo, null);
      assert.equal(await balanceOn(a), a * 10 - 5);

      // Two shards, simple and extended: both commit, or (ROLLBACK) neither.
      await client.query('BEGIN');
      await client.query(`UPDATE accounts SET balance = balance + 5 WHERE id = ${a}`);
      await client.query('UPDATE accounts SET balance = balance - 5 WHERE id = $1', [b]);
      await client.query('ROLLBACK');
      assert.equal(await balanceOn(a), a * 10 - 5, 'rolled back on s1');
      assert.equal(await balanceOn(b), b * 10, 'rolled back on s2');

      await client.query('BEGIN');
      await client.query('UPDATE accounts SET balance = balance + 5 WHERE id = $1', [a]);
      await client.query(`UPDATE accounts SET balance = balance - 5 WHERE id = ${b}`);
      const commit = await client.query('COMMIT');
      assert.equal(commit.command, 'COMMIT');
      assert.equal(await balanceOn(a), a * 10, 'committed on s1');
      assert.equal(await balanceOn(b), b * 10 - 5, 'committed on s2');
      // The proxy's decision log recorded it; nothing is left prepared.
      const log = await direct
        .get('s1')!
        .query("SELECT count(*)::int AS n FROM rwsplit_2pc_log WHERE decision = 'commit'");
      assert.ok(log.rows[0].n >= 1, 'a commit decision in the log');
      for (const c of direct.values()) {
        const r = await c.query(
          "SELECT count(*)::int AS n FROM pg_prepared_xacts WHERE gid LIKE 'rwsplit:%'",
        );
        assert.equal(r.rows[0].n, 0);
      }

      // A failed statement on one shard: COMMIT rolls back both, as PostgreSQL answers it.
      await client.query('BEGIN');
      await client.query('UPDATE accounts SET balance = 0 WHERE id = $1', [a]);
      await failure(client.query(`INSERT INTO accounts (id, balance) VALUES (${b}, 0)`));
      const end = await client.query('COMMIT');
      assert.equal(end.command, 'ROLLBACK');
      assert.equal(await balanceOn(a), a * 10, 'nothing committed');
      await client.query(`UPDATE accounts SET balance = ${b * 10} WHERE id = ${b}`);
    } finally {
      client.release();
    }
    await waitFor('the pool to be idle', () => pool.idleCount === pool.totalCount);
  });

  test("a participant that refuses to prepare fails the COMMIT everywhere, with the proxy's error", async () => {
    await pool.query('CREATE TABLE pairs (id int PRIMARY KEY, v int UNIQUE DEFERRABLE INITIALLY DEFERRED)');
    const [a, a2, b] = [idOn('s1'), idOn('s1', 1), idOn('s2')];
    const attempt = async (
      q: (text: string, values?: unknown[]) => Promise<pg.QueryResult>,
    ): Promise<Error> => {
      await q('BEGIN');
      await q('INSERT INTO pairs (id, v) VALUES ($1, 1)', [a]);
      await q(`INSERT INTO pairs (id, v) VALUES (${b}, 1)`);
      // A merged read inside the transaction sees its own rows on both shards.
      const n = await q('SELECT count(*) AS n FROM pairs');
      assert.equal(n.rows[0].n, '2');
      await q('INSERT INTO pairs (id, v) VALUES ($1, 1)', [a2]); // s1's unique check waits for the commit
      const err = await failure(q('COMMIT'));
      return err;
    };
    const client = await pool.connect();
    let lib: Error & { code?: string };
    try {
      lib = await attempt((t, v) => client.query(t, v));
    } finally {
      client.release();
    }
    const viaProxy = await attempt((t, v) => proxy.query(t, v)).catch((e: Error) => e);
    assert.equal(lib.code, '23505', "the server's SQLSTATE");
    assert.equal(lib.code, (viaProxy as Error & { code?: string }).code);
    assert.equal(
      lib.message.replace(/rwsplit:[^']*/g, 'GID'),
      viaProxy.message.replace(/rwsplit:[^']*/g, 'GID'),
    );
    assert.match(lib.message, /PREPARE TRANSACTION failed on shard s1/);
    for (const c of direct.values()) {
      assert.equal((await c.query('SELECT count(*)::int AS n FROM pairs')).rows[0].n, 0, 'nothing committed');
      const r = await c.query("SELECT count(*)::int AS n FROM pg_prepared_xacts WHERE gid LIKE 'rwsplit:%'");
      assert.equal(r.rows[0].n, 0, 'nothing left prepared');
    }
  });

  test('pool.connect(): a SET holds the client on one shard, as session state', async () => {
    const client = await pool.connect();
    try {
      await client.query("SET statement_timeout = '7s'");
      const held = client.pinnedTo!;
      const shard = shardOf.get(held)!;
      assert.ok(!replicaIds.has(held), 'session state on a primary');
      const show = await client.query<{ statement_timeout: string }>('SHOW statement_timeout');
      assert.equal(show.rows[0]!.statement_timeout, '7s');
      const mine = await client.query('SELECT balance FROM accounts WHERE id = $1', [idOn(shard)]);
      assert.equal(served(mine), held);
      const other = cluster.shardNames.find((s) => s !== shard)!;
      const err = await failure(client.query('SELECT balance FROM accounts WHERE id = $1', [idOn(other)]));
      assert.equal(err.code, '0A000');
      assert.match(err.message, new RegExp(`pinned to shard ${shard} .* on shard ${other}`));
    } finally {
      client.release();
    }
    // The setting did not reach the next user of that connection.
    const after = await pool.query<{ statement_timeout: string }>(
      `/* rwsplit:shard=${cluster.shardNames[0]} */ SHOW statement_timeout`,
    );
    assert.equal(after.rows[0]!.statement_timeout, '0');
  });

  test('Drizzle and Kysely over the sharded pool: key-routed inserts and selects, a 2PC transaction', async () => {
    const { drizzle } = await import('drizzle-orm/node-postgres');
    const { pgTable, integer } = await import('drizzle-orm/pg-core');
    const { eq } = await import('drizzle-orm');
    const accounts = pgTable('accounts', {
      id: integer('id').primaryKey(),
      balance: integer('balance').notNull(),
    });
    const db = drizzle(pool as never);
    const ids = Array.from({ length: 10 }, (_, i) => 1000 + i);
    for (const id of ids) await db.insert(accounts).values({ id, balance: 1 });
    for (const id of ids) {
      assert.ok(
        (await idsOn(resolver.shardForKey(String(id)))).includes(id),
        `drizzle row ${id} on its shard`,
      );
      const got = await db.select().from(accounts).where(eq(accounts.id, id));
      assert.deepEqual(got, [{ id, balance: 1 }]);
    }
    const [x, y] = [idOn('s1', 2), idOn('s2', 2)];
    await db.transaction(async (tx) => {
      await tx.update(accounts).set({ balance: 1 }).where(eq(accounts.id, x));
      await tx.update(accounts).set({ balance: 2 }).where(eq(accounts.id, y));
    });
    assert.equal(await balanceOn(x), 1);
    assert.equal(await balanceOn(y), 2);

    const { Kysely, PostgresDialect } = await import('kysely');
    interface Db {
      accounts: { id: number; balance: number };
    }
    const k = new Kysely<Db>({ dialect: new PostgresDialect({ pool: pool as never }) });
    for (const id of [2000, 2001, 2002, 2003]) {
      await k.insertInto('accounts').values({ id, balance: 3 }).execute();
      assert.ok(
        (await idsOn(resolver.shardForKey(String(id)))).includes(id),
        `kysely row ${id} on its shard`,
      );
      const back = await k.selectFrom('accounts').selectAll().where('id', '=', id).execute();
      assert.deepEqual(back, [{ id, balance: 3 }]);
    }
    await k.transaction().execute(async (trx) => {
      await trx.updateTable('accounts').set({ balance: 4 }).where('id', '=', x).execute();
      await trx.updateTable('accounts').set({ balance: 5 }).where('id', '=', y).execute();
    });
    assert.equal(await balanceOn(x), 4);
    assert.equal(await balanceOn(y), 5);
    await waitFor('the pool to be idle', () => pool.idleCount === pool.totalCount);
  });
});
