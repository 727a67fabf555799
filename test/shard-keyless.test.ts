/**
 * A sharded endpoint that ordinary applications can use without hints: session settings that
 * follow the session to every shard, schema changes on every shard (two-phase commit, or each
 * shard in turn with the refusing shard named), reference tables, keyless writes on every
 * shard, and keyless reads merged across shards. The oracle is one PostgreSQL holding all the
 * rows: the same queries there and through rwsplit over two shards must give the same answer.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { pino } from 'pino';
import { Rwsplit } from '../src/app.js';
import { pgBinary } from '../src/cluster/pg-binaries.js';
import { PgCluster } from '../src/cluster/pg-cluster.js';
import { PgShardedCluster } from '../src/cluster/pg-shards.js';
import { validateConfig } from '../src/config/load.js';
import { ShardResolver } from '../src/pg/sharding/shard-resolver.js';

const run = promisify(execFile);
const SHARDING = {
  tables: [{ table: 'items', column: 'id' }],
  referenceTables: ['countries'],
  twoPhase: { logShard: 's1', decisionTimeoutMs: 5000, recoveryIntervalMs: 300 },
};
const ROWS = 240;
const NAMES = ['alpha', 'beta', 'Beta', 'bravo', 'charlie', null, 'émile', 'zulu', 'b', 'alpha '];

type Row = unknown[];
interface Spec {
  sql: string;
  /** output columns whose order ORDER BY fixes (all of them: compared in order) */
  keyCols: number[] | 'all' | null;
}

describe('sharded endpoint without hints: settings, DDL, keyless writes and merged reads', () => {
  let cluster: PgShardedCluster;
  let oracleCluster: PgCluster;
  let app: Rwsplit;
  let resolver: ShardResolver;
  let port: number;
  const clients: pg.Client[] = [];
  const direct = new Map<string, pg.Client>();
  let oracle: pg.Client;

  const connect = async (p = port): Promise<pg.Client> => {
    const c = new pg.Client({ host: '127.0.0.1', port: p, user: 'postgres', database: 'postgres' });
    c.on('error', () => undefined);
    await c.connect();
    clients.push(c);
    return c;
  };
  /** ids that live on each shard */
  const idOn = (shard: string, skip = 0): number => {
    for (let id = 1; ; id++) if (resolver.shardForKey(String(id)) === shard && skip-- === 0) return id;
  };
  const onEveryShard = async (sql: string): Promise<unknown[]> =>
    Promise.all([...direct.values()].map(async (d) => (await d.query(sql)).rows));

  before(async () => {
    [cluster, oracleCluster] = await Promise.all([
      PgShardedCluster.start({ shards: 2, replicas: 0 }),
      PgCluster.start({ replicas: 0 }),
    ]);
    for (const p of cluster.primaries) {
      const c = new pg.Client({ connectionString: p.connectionString });
      await c.connect();
      direct.set(p.shard, c);
    }
    oracle = new pg.Client({ connectionString: oracleCluster.primary.connectionString });
    await oracle.connect();
    const config = validateConfig({
      workers: 1,
      listen: { postgres: { host: '127.0.0.1', port: 0 }, http: { host: '127.0.0.1', port: 0 } },
      postgres: {
        nodes: cluster.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port, shard: n.shard })),
        monitor: { intervalMs: 200, timeoutMs: 1000 },
        sharding: SHARDING,
      },
    });
    app = await Rwsplit.start(config, { log: pino({ level: process.env.RWSPLIT_TEST_LOG ?? 'silent' }) });
    port = app.pgAddress!.port;
    resolver = new ShardResolver(cluster.shardNames, config.postgres!.sharding!);
  });

  after(async () => {
    await Promise.allSettled(clients.map((c) => c.end()));
    for (const c of direct.values()) await c.end().catch(() => undefined);
    await oracle?.end().catch(() => undefined);
    await app?.stop();
    await Promise.allSettled([cluster?.stop(), oracleCluster?.stop()]);
  });

  test('DDL without a key runs on every shard, atomically; the refusing shard is named', async () => {
    const c = await connect();
    const ddl = [
      'CREATE TABLE items (id int PRIMARY KEY, grp int NOT NULL, name text, qty int, amount numeric(10,2))',
      'CREATE TABLE countries (code text PRIMARY KEY, name text NOT NULL)',
    ];
    for (const sql of ddl) {
      const r = await c.query(sql);
      assert.equal(r.command, 'CREATE');
      await oracle.query(sql);
    }
    for (const rows of await onEveryShard("SELECT to_regclass('items') IS NOT NULL AS t"))
      assert.deepEqual(rows, [{ t: true }]);
    // One shard already has the table: the CREATE fails there, and is rolled back on the other.
    await direct.get('s2')!.query('CREATE TABLE dup (a int)');
    await assert.rejects(c.query('CREATE TABLE dup (a int, b int)'), (err: pg.DatabaseError) => {
      assert.equal(err.code, '42P07');
      assert.match(err.message, /^shard s2: relation "dup" already exists/);
      return true;
    });
    assert.deepEqual(await onEveryShard("SELECT to_regclass('dup') IS NOT NULL AS t"), [
      [{ t: false }],
      [{ t: true }],
    ]);
    // CONCURRENTLY cannot run in a transaction block: each shard in turn, the refusing one named.
    await direct.get('s2')!.query('CREATE INDEX items_grp ON items (qty)');
    await assert.rejects(
      c.query('CREATE INDEX CONCURRENTLY items_grp ON items (grp)'),
      (err: pg.DatabaseError) => {
        assert.equal(err.code, '42P07');
        assert.match(err.message, /^shard s2: /);
        assert.match(err.detail ?? '', /ran on shard s1 already/);
        return true;
      },
    );
    await direct.get('s2')!.query('DROP INDEX items_grp');
    await c.query('DROP INDEX CONCURRENTLY IF EXISTS items_grp');
    await c.query('CREATE INDEX CONCURRENTLY items_grp ON items (grp)');
    assert.deepEqual(await onEveryShard("SELECT to_regclass('items_grp') IS NOT NULL AS t"), [
      [{ t: true }],
      [{ t: true }],
    ]);
    // In a transaction block a statement for every shard runs on every shard's part of the
    // transaction (ROLLBACK undoes it everywhere); one PostgreSQL refuses in a transaction
    // block is refused, not run on one shard.
    await c.query('BEGIN');
    await c.query('CREATE TABLE t_in_tx (a int)');
    // Each shard's part of the transaction has it; no other session sees it yet.
    for (const shard of ['s1', 's2']) {
      const r = await c.query(`/* rwsplit:shard=${shard} */ SELECT to_regclass('t_in_tx') IS NOT NULL AS t`);
      assert.deepEqual(r.rows, [{ t: true }], shard);
    }
    assert.deepEqual(await onEveryShard("SELECT to_regclass('t_in_tx') IS NOT NULL AS t"), [
      [{ t: false }],
      [{ t: false }],
    ]);
    await c.query('ROLLBACK');
    assert.deepEqual(await onEveryShard("SELECT to_regclass('t_in_tx') IS NOT NULL AS t"), [
      [{ t: false }],
      [{ t: false }],
    ]);
    await c.query('BEGIN');
    await assert.rejects(c.query('CREATE INDEX CONCURRENTLY items_grp2 ON items (grp)'), { code: '0A000' });
    await c.query('ROLLBACK');
  });

  test('rows, reference tables and keyless writes (2PC on every shard, total row counts)', async () => {
    const c = await connect();
    for (let id = 1; id <= ROWS; id++) {
      const values = [
        id,
        id % 7,
        NAMES[id % NAMES.length],
        id % 11 === 0 ? null : (id * 37) % 101,
        ((id * 13) % 997) / 4,
      ];
      const sql = 'INSERT INTO items (id, grp, name, qty, amount) VALUES ($1, $2, $3, $4, $5)';
      await c.query(sql, values);
      await oracle.query(sql, values);
    }
    const counts = (await onEveryShard('SELECT count(*)::int AS n FROM items')) as { n: number }[][];
    assert.equal(counts[0]![0]!.n + counts[1]![0]!.n, ROWS);
    assert.ok(
      counts.every((r) => r[0]!.n >= ROWS / 5),
      'at least a fifth of the rows on each shard',
    );
    for (const sql of [
      "INSERT INTO countries VALUES ('fr', 'France'), ('jp', 'Japan'), ('de', 'Germany')",
      "UPDATE countries SET name = 'Deutschland' WHERE code = 'de'",
    ]) {
      const r = await c.query(sql);
      const o = await oracle.query(sql);
      assert.equal(r.rowCount, o.rowCount, sql);
    }
    for (const rows of await onEveryShard('SELECT code, name FROM countries ORDER BY code'))
      assert.deepEqual(rows, (await oracle.query('SELECT code, name FROM countries ORDER BY code')).rows);
    // Reads of a reference table go to one shard, either gives the same rows.
    for (let i = 0; i < 4; i++)
      assert.deepEqual(
        (await c.query('SELECT name FROM countries ORDER BY code')).rows.map((r) => r.name),
        ['Deutschland', 'France', 'Japan'],
      );
    for (const sql of [
      'UPDATE items SET qty = qty + 1 WHERE grp = 3',
      'DELETE FROM items WHERE qty > 95',
      "UPDATE items SET name = upper(name) WHERE name LIKE 'b%'",
    ]) {
      const r = await c.query(sql);
      const o = await oracle.query(sql);
      assert.equal(r.rowCount, o.rowCount, sql);
      assert.ok((o.rowCount ?? 0) > 0, `${sql} changed rows`);
    }
    // The same through the extended protocol (node-postgres with parameters).
    for (const [sql, values] of [
      ['UPDATE items SET qty = qty + $1 WHERE grp = $2', [2, 4]],
      ['DELETE FROM items WHERE qty < $1', [3]],
    ] as const) {
      const r = await c.query(sql, [...values]);
      const o = await oracle.query(sql, [...values]);
      assert.equal(r.rowCount, o.rowCount, sql);
      assert.ok((o.rowCount ?? 0) > 0, `${sql} changed rows`);
    }
    // RETURNING: the rows of every shard.
    const ret = await c.query('UPDATE items SET qty = qty WHERE grp = 1 RETURNING id');
    const oret = await oracle.query('UPDATE items SET qty = qty WHERE grp = 1 RETURNING id');
    assert.deepEqual(
      ret.rows.map((r) => r.id).sort((a, b) => a - b),
      oret.rows.map((r) => r.id).sort((a, b) => a - b),
    );
    // A failing keyless write changes nothing anywhere.
    const before = await onEveryShard('SELECT sum(qty)::int AS s FROM items');
    await assert.rejects(c.query('UPDATE items SET qty = qty / (grp - 2)'), (err: pg.DatabaseError) => {
      assert.equal(err.code, '22012');
      assert.match(err.message, /^shard s\d: division by zero/);
      return true;
    });
    assert.deepEqual(await onEveryShard('SELECT sum(qty)::int AS s FROM items'), before);
    assert.equal(
      Number((await direct.get('s1')!.query('SELECT count(*) AS n FROM pg_prepared_xacts')).rows[0].n),
      0,
    );
  });

  test('session settings follow the session to every shard; SHOW answers from them; no leak to other sessions', async () => {
    const c = await connect();
    const other = await connect();
    const [a, b] = [idOn('s1'), idOn('s2')];
    const settingOn = async (
      client: pg.Client,
      name: string,
      id: number,
      extended: boolean,
    ): Promise<string> => {
      const r = extended
        ? await client.query('SELECT current_setting($1) AS v FROM items WHERE id = $2', [name, id])
        : await client.query(`SELECT current_setting('${name}') AS v FROM items WHERE id = ${id}`);
      assert.equal(r.rows.length, 1, `row ${id} exists`);
      return r.rows[0].v as string;
    };
    await c.query("SET application_name = 'app-one'");
    await c.query('SET search_path TO public, pg_catalog');
    await c.query("SET TIME ZONE 'Asia/Tokyo'");
    await c.query('SET statement_timeout = 12345');
    let checks = 0;
    for (const extended of [false, true])
      for (const id of [a, b, a, b]) {
        assert.equal(await settingOn(c, 'application_name', id, extended), 'app-one');
        assert.equal(await settingOn(c, 'TimeZone', id, extended), 'Asia/Tokyo');
        assert.equal(await settingOn(c, 'search_path', id, extended), 'public, pg_catalog');
        assert.equal(await settingOn(c, 'statement_timeout', id, extended), '12345ms');
        checks++;
      }
    assert.equal(checks, 8);
    for (let i = 0; i < 4; i++) {
      assert.equal((await c.query('SHOW application_name')).rows[0].application_name, 'app-one');
      assert.equal((await c.query('SHOW TimeZone')).rows[0].TimeZone, 'Asia/Tokyo');
    }
    for (const id of [a, b, a, b])
      assert.notEqual(await settingOn(other, 'application_name', id, false), 'app-one');
    // A value the server refuses is refused as the server does, and changes nothing.
    await assert.rejects(c.query("SET TIME ZONE 'Mars/Olympus'"), { code: '22023' });
    for (const id of [a, b]) assert.equal(await settingOn(c, 'TimeZone', id, false), 'Asia/Tokyo');
    // RESET one, then RESET ALL.
    await c.query('RESET statement_timeout');
    for (const id of [a, b]) assert.equal(await settingOn(c, 'statement_timeout', id, true), '0');
    // SET LOCAL: for the transaction only, on every shard it reaches.
    await c.query('BEGIN');
    await c.query("SET LOCAL work_mem = '7MB'");
    assert.equal(await settingOn(c, 'work_mem', a, false), '7MB');
    assert.equal(await settingOn(c, 'work_mem', b, false), '7MB');
    await c.query('COMMIT');
    for (const id of [a, b]) assert.equal(await settingOn(c, 'work_mem', id, false), '4MB');
    await c.query('RESET ALL');
    for (const id of [a, b, a, b])
      assert.notEqual(await settingOn(c, 'application_name', id, false), 'app-one');
  });

  test('psql: settings and a merged read through rwsplit match one PostgreSQL', async () => {
    const psql = pgBinary('psql');
    const args = (p: number): string[] => [
      '-X',
      '-A',
      '-h',
      '127.0.0.1',
      '-p',
      String(p),
      '-U',
      'postgres',
      '-d',
      'postgres',
      '-c',
      "SET application_name = 'from-psql'",
      '-c',
      'SHOW application_name',
      '-c',
      'SELECT grp, count(*), sum(qty), min(name), max(id) FROM items GROUP BY grp ORDER BY grp',
      '-c',
      'SELECT id, name FROM items ORDER BY name NULLS FIRST, id LIMIT 5 OFFSET 2',
    ];
    const viaRwsplit = await run(psql, args(port));
    const viaOracle = await run(psql, args(oracleCluster.primary.port));
    assert.equal(viaRwsplit.stdout, viaOracle.stdout);
    assert.match(viaRwsplit.stdout, /from-psql/);
  });

  test('differential: generated keyless reads on two shards equal one PostgreSQL holding all rows', async () => {
    const c = await connect();
    const specs = generateQueries();
    assert.ok(specs.length >= 300, `${specs.length} queries`);
    let ordered = 0;
    let extended = 0;
    const runs: { spec: Spec; q: pg.QueryArrayConfig }[] = [];
    for (const spec of specs) {
      runs.push({ spec, q: { text: spec.sql, rowMode: 'array' } });
      // The extended protocol (Parse/Bind/Execute), LIMIT and OFFSET as parameters when there are.
      const values: number[] = [];
      const text = spec.sql.replace(/\b(LIMIT|OFFSET) (\d+)/g, (_m, w: string, n: string) => {
        values.push(Number(n));
        return `${w} $${values.length}`;
      });
      runs.push({
        spec,
        q: { text, values, rowMode: 'array', queryMode: 'extended' } as pg.QueryArrayConfig,
      });
    }
    for (const { spec, q } of runs) {
      if ((q as { queryMode?: string }).queryMode === 'extended') extended++;
      const expected = await oracle.query(q);
      const got = await c.query(q).catch((err: Error) => {
        throw new Error(`${q.text}: ${err.message}`);
      });
      assert.equal(got.rowCount, expected.rowCount, spec.sql);
      assert.deepEqual(sortRows(got.rows as Row[]), sortRows(expected.rows as Row[]), spec.sql);
      if (spec.keyCols !== null) {
        const project = (rows: Row[]): Row[] =>
          spec.keyCols === 'all' ? rows : rows.map((r) => (spec.keyCols as number[]).map((i) => r[i]));
        assert.deepEqual(project(got.rows as Row[]), project(expected.rows as Row[]), `${spec.sql} (order)`);
        ordered++;
      }
    }
    assert.equal(extended, specs.length);
    assert.ok(ordered >= runs.length / 2, `${ordered} of ${runs.length} compared in order`);
  });

  test('what cannot be merged is refused with 0A000 and the reason', async () => {
    const c = await connect();
    const refused: [string, RegExp][] = [
      ['SELECT avg(qty) FROM items', /avg\(\)/],
      ['SELECT grp, avg(qty) FROM items GROUP BY grp', /avg\(\)/],
      ['SELECT count(DISTINCT grp) FROM items', /DISTINCT/],
      ['SELECT grp, count(*) FROM items GROUP BY grp HAVING count(*) > 3', /HAVING/],
      ['SELECT i.id FROM items i JOIN countries c ON true', /join/],
      ['SELECT id FROM items WHERE qty > (SELECT avg(qty) FROM items)', /subquery/],
      ['SELECT DISTINCT amount FROM items', /grouping or DISTINCT/],
      ['SELECT amount FROM items ORDER BY amount LIMIT 3', /.*/],
      ['SELECT sum(qty) + 1 FROM items', /expression over the aggregate/],
      ["SELECT string_agg(name, ',') FROM items", /string_agg/],
      ['SELECT id, row_number() OVER () FROM items', /window/],
      ['SELECT id FROM items ORDER BY qty * 2', /ORDER BY item/],
    ];
    let n = 0;
    for (const [sql, why] of refused) {
      if (sql.includes('ORDER BY amount')) {
        // numeric ordering is supported: this one must be answered, and right.
        const got = await c.query({ text: sql, rowMode: 'array' });
        const expected = await oracle.query({ text: sql, rowMode: 'array' });
        assert.deepEqual(got.rows, expected.rows);
        continue;
      }
      await assert.rejects(c.query(sql), (err: pg.DatabaseError) => {
        assert.equal(err.code, '0A000', sql);
        assert.match(err.message, why, sql);
        return true;
      });
      n++;
    }
    assert.equal(n, refused.length - 1);
    // Extended protocol: the same refusal, and the session goes on.
    await assert.rejects(c.query('SELECT avg(qty) FROM items WHERE grp = $1', [1]), { code: '0A000' });
    assert.equal((await c.query('SELECT count(*) AS n FROM items WHERE grp = $1', [1])).rows.length, 1);
  });
});

function sortRows(rows: Row[]): string[] {
  return rows.map((r) => JSON.stringify(r)).sort();
}

/** Keyless reads of `items` in many shapes; LIMIT only where ORDER BY makes the rows certain. */
function generateQueries(): Spec[] {
  const wheres = [
    '',
    'WHERE qty IS NULL',
    'WHERE grp < 3',
    "WHERE name LIKE 'b%'",
    'WHERE qty > 50',
    'WHERE id > 1000',
  ];
  const limits = ['LIMIT 5', 'LIMIT 7 OFFSET 3', 'OFFSET 200', 'LIMIT 0', 'LIMIT 1000 OFFSET 1'];
  const out: Spec[] = [];
  // Plain rows.
  const plainOrders: [string, number[] | 'all' | null, boolean][] = [
    ['', null, false],
    ['ORDER BY id', 'all', true],
    ['ORDER BY qty DESC, id', 'all', true],
    ['ORDER BY qty NULLS FIRST, id DESC', 'all', true],
    ['ORDER BY name, id', 'all', true],
    ['ORDER BY 3 DESC NULLS LAST, 1', 'all', true],
    ['ORDER BY grp', [1], false],
    ['ORDER BY name DESC', [2], false],
  ];
  for (const where of wheres)
    for (const [order, keyCols, total] of plainOrders) {
      const base = `SELECT id, grp, name, qty FROM items ${where} ${order}`.replace(/\s+/g, ' ').trim();
      out.push({ sql: base, keyCols });
      if (total) for (const limit of limits) out.push({ sql: `${base} ${limit}`, keyCols });
    }
  // Aggregates without GROUP BY.
  for (const where of wheres)
    for (const list of [
      'count(*)',
      'count(qty), sum(qty), min(qty), max(qty)',
      'min(name), max(name), sum(amount), count(name)',
      'max(amount) AS top, min(id)',
    ])
      out.push({ sql: `SELECT ${list} FROM items ${where}`.trim(), keyCols: 'all' });
  // GROUP BY.
  const groupOrders: [string, number[] | 'all' | null, boolean][] = [
    ['', null, false],
    ['ORDER BY grp', 'all', true],
    ['ORDER BY 2 DESC, grp', 'all', true],
    ['ORDER BY sum(qty) NULLS FIRST, grp', 'all', true],
  ];
  for (const where of wheres)
    for (const [order, keyCols, total] of groupOrders) {
      const base =
        `SELECT grp, count(*), sum(qty), min(name), max(qty) FROM items ${where} GROUP BY grp ${order}`
          .replace(/\s+/g, ' ')
          .trim();
      out.push({ sql: base, keyCols });
      if (total) for (const limit of limits.slice(0, 3)) out.push({ sql: `${base} ${limit}`, keyCols });
    }
  for (const where of wheres)
    out.push({
      sql: `SELECT name, count(*) AS n FROM items ${where} GROUP BY name ORDER BY name NULLS FIRST`.replace(
        /\s+/g,
        ' ',
      ),
      keyCols: 'all',
    });
  // DISTINCT.
  for (const where of wheres)
    for (const [q, keyCols] of [
      ['SELECT DISTINCT grp FROM items', null],
      ['SELECT DISTINCT grp, qty FROM items', null],
      ['SELECT DISTINCT name FROM items', null],
    ] as const) {
      const base = `${q} ${where}`.trim();
      out.push({ sql: base, keyCols });
      out.push({ sql: `${base} ORDER BY 1 DESC, ${q.includes('qty') ? '2' : '1'}`, keyCols: 'all' });
      out.push({
        sql: `${base} ORDER BY 1 NULLS FIRST${q.includes('qty') ? ', 2' : ''} LIMIT 3 OFFSET 1`,
        keyCols: 'all',
      });
    }
  return out;
}
