/**
 * A sharded endpoint as applications use it: statements that run on every shard (DDL,
 * TRUNCATE, keyless writes, merged reads) inside transactions, with two-phase commit at COMMIT
 * and a rollback on every shard; COPY FROM STDIN split by key; named prepared statements
 * without a key and SET/SHOW through the extended protocol; Drizzle and Kysely apps. The oracle
 * is one PostgreSQL: the same steps there and through rwsplit over two shards give the same
 * answers, and each row lies on the shard its key names.
 */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { pino } from 'pino';
import { Rwsplit } from '../src/app.js';
import { PgCluster } from '../src/cluster/pg-cluster.js';
import { PgShardedCluster } from '../src/cluster/pg-shards.js';
import { validateConfig } from '../src/config/load.js';
import { ShardResolver } from '../src/pg/sharding/shard-resolver.js';

const SHARDING = {
  tables: [
    { table: 'orders', column: 'customer_id' },
    { table: 'customers', column: 'id' },
    { table: 'ledger', column: 'id' },
  ],
  referenceTables: ['plans'],
  twoPhase: { logShard: 's1', decisionTimeoutMs: 5000, recoveryIntervalMs: 300 },
};

type Rows = Record<string, unknown>[];
const sorted = (rows: Rows): string[] => rows.map((r) => JSON.stringify(r)).sort();

describe('sharded endpoint for applications: transactions, COPY, prepared statements, ORMs', () => {
  let cluster: PgShardedCluster;
  let oracleCluster: PgCluster;
  let app: Rwsplit;
  let resolver: ShardResolver;
  let port: number;
  let oraclePort: number;
  const clients: pg.Client[] = [];
  const direct = new Map<string, pg.Client>();

  const connect = async (p: number): Promise<pg.Client> => {
    const c = new pg.Client({ host: '127.0.0.1', port: p, user: 'postgres', database: 'postgres' });
    c.on('error', () => undefined);
    await c.connect();
    clients.push(c);
    return c;
  };
  /** Each shard's rows of a sharded table hold only keys that belong there. */
  const assertPlaced = async (table: string, column: string): Promise<number> => {
    let total = 0;
    for (const [shard, c] of direct) {
      const { rows } = await c.query<{ k: string }>(`SELECT ${column}::text AS k FROM ${table}`);
      for (const r of rows) assert.equal(resolver.shardForKey(r.k), shard, `${table} ${column}=${r.k}`);
      total += rows.length;
    }
    return total;
  };

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
    const setup = [
      'CREATE TABLE ledger (id int PRIMARY KEY, grp int NOT NULL, amount int NOT NULL, note text)',
      'CREATE TABLE plans (code text PRIMARY KEY, price int NOT NULL)',
    ];
    const [c, o] = [await connect(port), await connect(oraclePort)];
    for (const sql of setup) {
      await c.query(sql);
      await o.query(sql);
    }
  });

  after(async () => {
    await Promise.allSettled(clients.map((c) => c.end()));
    for (const c of direct.values()) await c.end().catch(() => undefined);
    await app?.stop();
    await Promise.allSettled([cluster?.stop(), oracleCluster?.stop()]);
  });

  /** The same steps on the oracle and through rwsplit: every answer (rows, command, count, error code) alike. */
  const both = async (
    steps: (c: pg.Client) => Promise<unknown[]>,
  ): Promise<{ proxied: unknown[]; oracle: unknown[] }> => {
    const [c, o] = [await connect(port), await connect(oraclePort)];
    const proxied = await steps(c);
    const oracle = await steps(o);
    assert.deepEqual(proxied, oracle);
    return { proxied, oracle };
  };
  const outcome = async (p: Promise<pg.QueryResult>): Promise<unknown> =>
    p.then(
      (r) => ({ command: r.command, rowCount: r.rowCount, rows: sorted(r.rows) }),
      (e: pg.DatabaseError) => ({ error: e.code }),
    );

  for (const protocol of ['simple', 'extended'] as const) {
    test(`${protocol}: keyless statements inside a transaction run on every shard; ROLLBACK undoes all, COMMIT keeps all`, async () => {
      const steps = async (c: pg.Client): Promise<unknown[]> => {
        const out: unknown[] = [];
        const run = async (sql: string, values?: unknown[]): Promise<void> => {
          out.push(await outcome(protocol === 'extended' && values ? c.query(sql, values) : c.query(sql)));
        };
        const grp = (n: number): unknown[] | undefined => (protocol === 'extended' ? [n] : undefined);
        const g = (n: number): string => (protocol === 'extended' ? '$1' : String(n));
        await run('TRUNCATE ledger');
        for (let i = 1; i <= 12; i++)
          await run(`INSERT INTO ledger (id, grp, amount) VALUES (${i}, ${i % 3}, ${i * 10})`);
        await run('BEGIN');
        await run(`UPDATE ledger SET amount = amount + 1 WHERE grp = ${g(1)}`, grp(1));
        await run(`SELECT count(*) AS n, sum(amount) AS s FROM ledger WHERE grp = ${g(1)}`, grp(1));
        await run(`DELETE FROM ledger WHERE grp = ${g(2)}`, grp(2));
        await run('TRUNCATE plans');
        await run("INSERT INTO plans (code, price) VALUES ('free', 0)");
        await run('SELECT id, amount FROM ledger ORDER BY id');
        await run('ROLLBACK');
        await run('SELECT id, grp, amount FROM ledger ORDER BY id');
        await run('BEGIN');
        await run(`INSERT INTO ledger (id, grp, amount) VALUES (50, 9, 1)`);
        await run(`UPDATE ledger SET amount = amount * 2 WHERE grp = ${g(0)}`, grp(0));
        await run("INSERT INTO plans (code, price) VALUES ('pro', 20) ON CONFLICT (code) DO NOTHING");
        await run('COMMIT');
        await run('SELECT id, grp, amount FROM ledger ORDER BY id');
        await run('SELECT code, price FROM plans ORDER BY code');
        // A refusal on one shard fails the whole transaction, as on a server.
        await run('BEGIN');
        await run('UPDATE ledger SET amount = amount / (amount - amount)');
        await run('SELECT 1 AS one');
        await run('ROLLBACK');
        await run('SELECT sum(amount) AS s FROM ledger');
        return out;
      };
      await both(steps);
      assert.equal(await assertPlaced('ledger', 'id'), 13);
      for (const c of direct.values())
        assert.deepEqual((await c.query('SELECT code FROM plans ORDER BY code')).rows, [{ code: 'pro' }]);
      // Nothing left prepared or open behind.
      for (const c of direct.values())
        assert.equal((await c.query('SELECT count(*)::int AS n FROM pg_prepared_xacts')).rows[0].n, 0);
    });
  }

  test('COPY FROM STDIN of a sharded table: each row on its shard, in autocommit and in a transaction', async () => {
    const lines = (from: number, to: number): string[] => {
      const out: string[] = [];
      for (let i = from; i <= to; i++)
        out.push(`${i}\t${i % 5}\t${i}\t${i % 7 === 0 ? '\\N' : `n\\t${i}`}\n`);
      return out;
    };
    const steps = async (c: pg.Client): Promise<unknown[]> => {
      const out: unknown[] = [];
      await c.query('TRUNCATE ledger');
      // Chunks that cut lines in the middle, as a stream may send them.
      const text = lines(1, 300).join('');
      const chunks = [text.slice(0, 1000), text.slice(1000, 1001), text.slice(1001)];
      await pipeline(Readable.from(chunks), c.query(copyFrom('COPY ledger FROM STDIN')));
      await c.query('BEGIN');
      await pipeline(
        Readable.from(lines(301, 400)),
        c.query(copyFrom('COPY ledger (id, grp, amount, note) FROM STDIN')),
      );
      out.push(await outcome(c.query('SELECT count(*) AS n FROM ledger')));
      await c.query('ROLLBACK');
      await c.query('BEGIN');
      await pipeline(Readable.from(lines(401, 450)), c.query(copyFrom('COPY ledger FROM STDIN')));
      await c.query('COMMIT');
      // A duplicate key on one shard: nothing of this COPY is kept anywhere.
      out.push(
        await pipeline(Readable.from(lines(440, 460)), c.query(copyFrom('COPY ledger FROM STDIN'))).then(
          () => 'ok',
          (e: pg.DatabaseError) => e.code,
        ),
      );
      out.push(
        await outcome(c.query('SELECT count(*) AS n, sum(amount) AS s, count(note) AS notes FROM ledger')),
      );
      out.push(await outcome(c.query('SELECT note FROM ledger WHERE id = 3')));
      return out;
    };
    const { proxied } = await both(steps);
    assert.equal(proxied[1], '23505');
    assert.equal(await assertPlaced('ledger', 'id'), 350);
    const perShard = await Promise.all(
      [...direct.values()].map(
        async (c) => (await c.query('SELECT count(*)::int AS n FROM ledger')).rows[0].n as number,
      ),
    );
    assert.ok(
      perShard.every((n) => n > 0),
      `rows on every shard: ${perShard.join(', ')}`,
    );
    // A NULL key has no shard: refused, and nothing copied.
    const c = await connect(port);
    await assert.rejects(
      pipeline(
        Readable.from(['900\t1\t1\tx\n', '\\N\t1\t1\tx\n']),
        c.query(copyFrom('COPY ledger FROM STDIN')),
      ),
      (e: pg.DatabaseError) => e.code === '22004' && /NULL shard key/.test(e.message),
    );
    assert.deepEqual((await c.query('SELECT count(*)::int AS n FROM ledger WHERE id = 900')).rows, [
      { n: 0 },
    ]);
    await assert.rejects(
      pipeline(Readable.from(['1,1,1,x\n']), c.query(copyFrom('COPY ledger FROM STDIN (FORMAT csv)'))),
      (e: pg.DatabaseError) => e.code === '0A000' && /text format/.test(e.message),
    );
    assert.deepEqual((await c.query('SELECT 1 AS one')).rows, [{ one: 1 }], 'the session goes on');
  });

  test('named prepared statements without a key, bound many times; SET/SHOW/RESET through the extended protocol', async () => {
    const steps = async (c: pg.Client): Promise<unknown[]> => {
      const out: unknown[] = [];
      await c.query('TRUNCATE ledger');
      for (let i = 1; i <= 20; i++)
        await c.query({
          name: 'ins',
          text: 'INSERT INTO ledger (id, grp, amount) VALUES ($1, $2, $3)',
          values: [i, i % 4, i],
        });
      for (const g of [0, 1, 2, 3, 1])
        out.push(
          await outcome(
            c.query({
              name: 'bump',
              text: 'UPDATE ledger SET amount = amount + 1 WHERE grp = $1',
              values: [g],
            }),
          ),
        );
      for (const g of [1, 2, 3])
        out.push(
          await outcome(
            c.query({
              name: 'sum',
              text: 'SELECT grp, count(*) AS n, sum(amount) AS s FROM ledger WHERE grp >= $1 GROUP BY grp ORDER BY grp',
              values: [g],
            }),
          ),
        );
      out.push(
        await outcome(
          c.query({
            name: 'top',
            text: 'SELECT id, amount FROM ledger ORDER BY amount DESC, id LIMIT 3',
            values: [],
          }),
        ),
      );
      out.push(await outcome(c.query('BEGIN')));
      out.push(
        await outcome(
          c.query({
            name: 'bump',
            text: 'UPDATE ledger SET amount = amount + 1 WHERE grp = $1',
            values: [2],
          }),
        ),
      );
      out.push(
        await outcome(
          c.query({
            name: 'top',
            text: 'SELECT id, amount FROM ledger ORDER BY amount DESC, id LIMIT 3',
            values: [],
          }),
        ),
      );
      out.push(await outcome(c.query('COMMIT')));
      // Session settings with the extended protocol (a name makes node-postgres use it).
      out.push(await outcome(c.query({ name: 'set-tz', text: "SET TimeZone = 'Asia/Tokyo'" })));
      out.push(await outcome(c.query({ name: 'set-app', text: "SET application_name = 'shard-app'" })));
      for (let i = 0; i < 4; i++) {
        out.push(await outcome(c.query({ name: 'show-tz', text: 'SHOW TimeZone' })));
        out.push(
          await outcome(
            c.query({
              name: 'cur',
              text: "SELECT current_setting('application_name') AS a, $1::int AS i",
              values: [i],
            }),
          ),
        );
        out.push(
          await outcome(
            c.query({
              name: 'ledger-n',
              text: 'SELECT count(*) AS n FROM ledger WHERE amount > $1',
              values: [i],
            }),
          ),
        );
      }
      out.push(await outcome(c.query({ name: 'bad-set', text: "SET TimeZone = 'Nowhere/Else'" })));
      out.push(await outcome(c.query({ name: 'reset-tz', text: 'RESET TimeZone' })));
      out.push(await outcome(c.query({ name: 'show-tz', text: 'SHOW TimeZone' })));
      out.push(
        await outcome(
          c.query({
            name: 'cur',
            text: "SELECT current_setting('application_name') AS a, $1::int AS i",
            values: [9],
          }),
        ),
      );
      return out;
    };
    await both(steps);
    assert.equal(await assertPlaced('ledger', 'id'), 20);
  });

  test('Drizzle and Kysely apps: tables, keyed inserts, reads by key, joins with a reference table, merged reads, transactions', async () => {
    const { drizzle } = await import('drizzle-orm/node-postgres');
    const { pgTable, integer, text } = await import('drizzle-orm/pg-core');
    const { eq, and, sql, desc } = await import('drizzle-orm');
    const { Kysely, PostgresDialect } = await import('kysely');
    const customers = pgTable('customers', {
      id: integer('id').primaryKey(),
      name: text('name').notNull(),
      plan: text('plan').notNull(),
    });
    const orders = pgTable('orders', {
      id: integer('id').notNull(),
      customerId: integer('customer_id').notNull(),
      total: integer('total').notNull(),
    });
    const plans = pgTable('plans', { code: text('code').primaryKey(), price: integer('price').notNull() });
    interface Db {
      customers: { id: number; name: string; plan: string };
      orders: { id: number; customer_id: number; total: number };
      plans: { code: string; price: number };
    }

    const flow = async (p: number): Promise<unknown[]> => {
      const pool = new pg.Pool({
        host: '127.0.0.1',
        port: p,
        user: 'postgres',
        database: 'postgres',
        max: 2,
      });
      const out: unknown[] = [];
      try {
        const db = drizzle(pool);
        await db.execute(sql`DROP TABLE IF EXISTS orders, customers`);
        await db.execute(
          sql`CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, plan text NOT NULL)`,
        );
        await db.execute(
          sql`CREATE TABLE orders (id int NOT NULL, customer_id int NOT NULL, total int NOT NULL, PRIMARY KEY (customer_id, id))`,
        );
        await db.delete(plans);
        await db.insert(plans).values([
          { code: 'free', price: 0 },
          { code: 'pro', price: 20 },
        ]);
        for (let id = 1; id <= 16; id++) {
          await db.insert(customers).values({ id, name: `c${id}`, plan: id % 3 === 0 ? 'pro' : 'free' });
          await db.insert(orders).values([
            { id: 1, customerId: id, total: id * 3 },
            { id: 2, customerId: id, total: id * 5 },
          ]);
        }
        out.push(await db.select().from(customers).where(eq(customers.id, 7)));
        out.push(
          await db
            .select()
            .from(orders)
            .where(and(eq(orders.customerId, 7), eq(orders.id, 2))),
        );
        // The reference table: read from any shard; joined to a sharded table read by its key.
        out.push(await db.select().from(plans).where(eq(plans.code, 'pro')));
        for (const id of [3, 9, 10])
          out.push(
            await db
              .select({ name: customers.name, price: plans.price })
              .from(customers)
              .innerJoin(plans, eq(plans.code, customers.plan))
              .where(eq(customers.id, id)),
          );
        // Keyless reads: merged across shards.
        out.push(await db.select().from(customers).orderBy(desc(customers.id)).limit(5));
        out.push(
          await db.select({ n: sql<string>`count(*)`, s: sql<string>`sum(${orders.total})` }).from(orders),
        );
        await db.transaction(async (tx) => {
          await tx
            .update(orders)
            .set({ total: sql`${orders.total} + 100` })
            .where(eq(orders.customerId, 4));
          await tx.update(customers).set({ plan: 'pro' }).where(eq(customers.id, 4));
          await tx
            .update(orders)
            .set({ total: sql`${orders.total} - 1` })
            .where(eq(orders.id, 1)); // every shard
        });
        await db
          .transaction(async (tx) => {
            await tx.delete(orders).where(eq(orders.customerId, 5));
            await tx.delete(orders); // every shard
            throw new Error('undo');
          })
          .catch((e: Error) => assert.equal(e.message, 'undo'));
        out.push(
          await db.select({ n: sql<string>`count(*)`, s: sql<string>`sum(${orders.total})` }).from(orders),
        );
        out.push(await db.select().from(customers).where(eq(customers.id, 4)));

        const k = new Kysely<Db>({ dialect: new PostgresDialect({ pool }) });
        await k.insertInto('customers').values({ id: 40, name: 'k40', plan: 'pro' }).execute();
        await k.insertInto('orders').values({ id: 1, customer_id: 40, total: 400 }).execute();
        out.push(await k.selectFrom('customers').selectAll().where('id', '=', 40).execute());
        out.push(await k.selectFrom('plans').selectAll().orderBy('code').execute());
        out.push(
          await k
            .selectFrom('customers')
            .innerJoin('plans', 'plans.code', 'customers.plan')
            .select(['customers.name', 'plans.price'])
            .where('customers.id', '=', 40)
            .execute(),
        );
        await k.transaction().execute(async (tx) => {
          await tx.updateTable('orders').set({ total: 1 }).where('customer_id', '=', 40).execute();
          await tx.deleteFrom('orders').where('total', '>', 150).execute(); // every shard
        });
        out.push(
          await k
            .selectFrom('orders')
            .select(['customer_id', 'id', 'total'])
            .orderBy('customer_id')
            .orderBy('id')
            .execute(),
        );
        out.push(
          await k
            .selectFrom('customers')
            .select((eb) => [eb.fn.countAll().as('n'), eb.fn.max('id').as('m')])
            .execute(),
        );
        await k.destroy();
      } finally {
        await pool.end().catch(() => undefined);
      }
      return out;
    };
    const oracle = await flow(oraclePort);
    const proxied = await flow(port);
    assert.deepEqual(proxied, oracle);
    assert.equal(await assertPlaced('customers', 'id'), 17);
    assert.equal(await assertPlaced('orders', 'customer_id'), (oracle.at(-2) as unknown[]).length);
  });
});
