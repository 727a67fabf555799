/**
 * Co-located joins on a sharded endpoint: two sharded tables joined on their shard keys
 * (`customers.id`, `orders.customer_id`) without a hint. With a key on either table the join
 * runs on that key's shard; without one it runs on every shard and the rows are merged. The
 * oracle is one PostgreSQL holding all rows: node-postgres (simple protocol, extended without
 * and with parameters), Kysely and Drizzle get the same answers there and through rwsplit over
 * two shards. A join of sharded tables not on their keys is still refused.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { pino } from 'pino';
import { Rwsplit } from '../src/app.js';
import { PgCluster } from '../src/cluster/pg-cluster.js';
import { PgShardedCluster } from '../src/cluster/pg-shards.js';
import { validateConfig } from '../src/config/load.js';
import { ShardResolver } from '../src/pg/sharding/shard-resolver.js';

const SHARDING = {
  tables: [
    { table: 'customers', column: 'id' },
    { table: 'orders', column: 'customer_id' },
  ],
  referenceTables: ['plans'],
};

const SETUP = [
  'CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, plan text NOT NULL)',
  'CREATE TABLE orders (customer_id int NOT NULL, id int NOT NULL, total int NOT NULL, PRIMARY KEY (customer_id, id))',
  'CREATE TABLE plans (code text PRIMARY KEY, price int NOT NULL)',
  "INSERT INTO plans (code, price) VALUES ('free', 0), ('pro', 20)",
];
const CUSTOMERS = 24;

type Rows = Record<string, unknown>[];
const sorted = (rows: Rows): string[] => rows.map((r) => JSON.stringify(r)).sort();

/** `sql` with `$n` written as literals (the simple protocol), and its parameters. */
interface Query {
  sql: string;
  params: unknown[];
  /** ORDER BY fixes the order: compare in order, else as multisets */
  ordered: boolean;
}
const QUERIES: Query[] = [
  // keyed: on the left table's key, on the right table's key, a LEFT JOIN with no match
  {
    sql: 'SELECT c.name, o.id, o.total FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.id = $1 ORDER BY o.id',
    params: [7],
    ordered: true,
  },
  {
    sql: 'SELECT c.name, p.price, o.total FROM orders o INNER JOIN customers AS c ON c.id = o.customer_id AND o.total > $2 JOIN plans p ON p.code = c.plan WHERE o.customer_id = $1',
    params: [9, 20],
    ordered: false,
  },
  {
    sql: 'SELECT c.id, o.total FROM customers c LEFT OUTER JOIN orders o ON o.customer_id = c.id WHERE c.id = $1',
    params: [CUSTOMERS],
    ordered: false,
  },
  // keyless: merged across shards
  {
    sql: 'SELECT c.name, o.total FROM customers c JOIN orders o ON o.customer_id = c.id WHERE o.total > $1 ORDER BY o.total DESC LIMIT 6',
    params: [30],
    ordered: true,
  },
  {
    sql: 'SELECT count(*) AS n, sum(o.total) AS s, max(o.total) AS m FROM customers c LEFT JOIN orders o ON o.customer_id = c.id WHERE c.plan = $1',
    params: ['free'],
    ordered: true,
  },
  {
    sql: 'SELECT c.id, count(o.id) AS n FROM customers c LEFT JOIN orders o ON c.id = o.customer_id AND o.id <> $1 GROUP BY c.id ORDER BY c.id',
    params: [2],
    ordered: true,
  },
];
const literal = (v: unknown): string => (typeof v === 'number' ? String(v) : `'${String(v)}'`);
const inline = (q: Query): string =>
  q.sql.replace(/\$(\d+)/g, (_, n: string) => literal(q.params[Number(n) - 1]));

describe('co-located joins of two sharded tables on their keys, without a hint', () => {
  let cluster: PgShardedCluster;
  let oracleCluster: PgCluster;
  let app: Rwsplit;
  let resolver: ShardResolver;
  let port: number;
  let oraclePort: number;
  const clients: pg.Client[] = [];

  const connect = async (p: number): Promise<pg.Client> => {
    const c = new pg.Client({ host: '127.0.0.1', port: p, user: 'postgres', database: 'postgres' });
    c.on('error', () => undefined);
    await c.connect();
    clients.push(c);
    return c;
  };

  before(async () => {
    [cluster, oracleCluster] = await Promise.all([
      PgShardedCluster.start({ shards: 2, replicas: 0 }),
      PgCluster.start({ replicas: 0 }),
    ]);
    oraclePort = oracleCluster.primary.port;
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
    for (const p of [port, oraclePort]) {
      const c = await connect(p);
      for (const sql of SETUP) await c.query(sql);
      for (let id = 1; id <= CUSTOMERS; id++) {
        await c.query('INSERT INTO customers (id, name, plan) VALUES ($1, $2, $3)', [
          id,
          `c${id}`,
          id % 3 === 0 ? 'pro' : 'free',
        ]);
        // the last customer has no orders (LEFT JOIN); totals are unique, so ORDER BY total fixes the order
        for (let n = 1; n <= (id === CUSTOMERS ? 0 : (id % 3) + 1); n++)
          await c.query(`INSERT INTO orders (customer_id, id, total) VALUES (${id}, ${n}, ${id * 7 + n})`);
      }
    }
  });

  after(async () => {
    await Promise.allSettled(clients.map((c) => c.end()));
    await app?.stop();
    await Promise.allSettled([cluster?.stop(), oracleCluster?.stop()]);
  });

  test('the rows are split across the two shards, each on its key’s shard', async () => {
    const counts: number[] = [];
    for (const p of cluster.primaries) {
      const c = new pg.Client({ connectionString: p.connectionString });
      await c.connect();
      try {
        const { rows } = await c.query<{ k: string; t: string }>(
          "SELECT id::text AS k, 'c' AS t FROM customers UNION ALL SELECT customer_id::text, 'o' FROM orders",
        );
        for (const r of rows) assert.equal(resolver.shardForKey(r.k), p.shard, `${r.t} ${r.k}`);
        counts.push(rows.length);
      } finally {
        await c.end();
      }
    }
    assert.equal(counts.length, 2);
    for (const n of counts) assert.ok(n > 0, `every shard holds rows: ${counts.join(', ')}`);
  });

  for (const mode of ['simple', 'extended', 'extended with parameters'] as const) {
    test(`${mode}: keyed and keyless co-located joins answer as one server holding all rows`, async () => {
      const run = async (c: pg.Client): Promise<unknown[]> => {
        const out: unknown[] = [];
        for (const q of QUERIES) {
          const config: pg.QueryConfig =
            mode === 'simple'
              ? { text: inline(q) }
              : mode === 'extended'
                ? ({ text: inline(q), queryMode: 'extended' } as pg.QueryConfig)
                : { text: q.sql, values: q.params };
          const r = await c.query(config);
          out.push({
            sql: q.sql,
            rows: q.ordered ? r.rows.map((row) => JSON.stringify(row)) : sorted(r.rows),
          });
        }
        return out;
      };
      const [c, o] = [await connect(port), await connect(oraclePort)];
      const oracle = await run(o);
      assert.deepEqual(await run(c), oracle);
      // the answers are not empty: the LEFT JOIN's unmatched row and the merged rows are there
      for (const answer of oracle) assert.ok((answer as { rows: unknown[] }).rows.length > 0);
    });
  }

  test('a join of the two sharded tables not on their keys is refused (0A000), not answered from part of the rows', async () => {
    const c = await connect(port);
    for (const sql of [
      'SELECT c.name, o.total FROM customers c JOIN orders o ON o.id = c.id',
      'SELECT c.name, o.total FROM customers c JOIN orders o ON o.id = c.id WHERE c.id = 7',
    ])
      await assert.rejects(c.query(sql), (e: pg.DatabaseError) => e.code === '0A000', sql);
    assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1); // the session carries on
  });

  test('Kysely and Drizzle: joins on the shard key, by key and merged', async () => {
    const { Kysely, PostgresDialect } = await import('kysely');
    const { drizzle } = await import('drizzle-orm/node-postgres');
    const { pgTable, integer, text } = await import('drizzle-orm/pg-core');
    const { eq, desc } = await import('drizzle-orm');
    interface Db {
      customers: { id: number; name: string; plan: string };
      orders: { customer_id: number; id: number; total: number };
    }
    const customers = pgTable('customers', {
      id: integer('id').primaryKey(),
      name: text('name').notNull(),
      plan: text('plan').notNull(),
    });
    const orders = pgTable('orders', {
      customerId: integer('customer_id').notNull(),
      id: integer('id').notNull(),
      total: integer('total').notNull(),
    });
    const flow = async (p: number): Promise<unknown[]> => {
      const pool = new pg.Pool({
        host: '127.0.0.1',
        port: p,
        user: 'postgres',
        database: 'postgres',
        max: 2,
      });
      const k = new Kysely<Db>({ dialect: new PostgresDialect({ pool }) });
      const out: unknown[] = [];
      try {
        for (const id of [4, 11])
          out.push(
            await k
              .selectFrom('customers')
              .innerJoin('orders', 'orders.customer_id', 'customers.id')
              .select(['customers.name', 'orders.id', 'orders.total'])
              .where('customers.id', '=', id)
              .orderBy('orders.id')
              .execute(),
          );
        out.push(
          await k
            .selectFrom('orders')
            .leftJoin('customers', 'customers.id', 'orders.customer_id')
            .select(['customers.name', 'orders.total'])
            .orderBy('orders.total', 'desc')
            .limit(5)
            .execute(),
        );
        const db = drizzle(pool);
        out.push(
          await db
            .select({ name: customers.name, total: orders.total })
            .from(customers)
            .innerJoin(orders, eq(orders.customerId, customers.id))
            .where(eq(orders.customerId, 13))
            .orderBy(orders.total),
        );
        out.push(
          await db
            .select({ name: customers.name, total: orders.total })
            .from(customers)
            .leftJoin(orders, eq(customers.id, orders.customerId))
            .orderBy(desc(orders.total))
            .limit(4),
        );
      } finally {
        await k.destroy();
      }
      return out;
    };
    const oracle = await flow(oraclePort);
    assert.deepEqual(await flow(port), oracle);
    for (const answer of oracle) assert.ok((answer as unknown[]).length > 0);
  });
});
