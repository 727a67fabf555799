/**
 * Prepared statements after a schema change. PostgreSQL answers a statement prepared before an
 * ALTER TABLE that changed its result type with `0A000 cached plan must not change result type`;
 * drivers then prepare it again (postgres.js does it by itself, node-postgres on a new name or a
 * new connection). Through rwsplit that new Parse must reach the server even though the shared
 * server-side statement already exists on the backends, whether the DDL went through rwsplit or
 * straight to the primary. Each case runs directly and through rwsplit.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import postgres from 'postgres';
import { startStack, type Stack } from './support/stack.js';

describe('re-prepared statements after a schema change', () => {
  let stack: Stack;
  let primaryPort: number;
  before(async () => {
    stack = await startStack({ postgres: { pool: { size: 2 } } });
    primaryPort = stack.cluster.primary.port;
  });
  after(async () => stack?.stop());

  /** DDL run directly on the primary (`via: 'primary'`) or through rwsplit, then replicated. */
  async function ddl(sql: string, via: 'rwsplit' | 'primary'): Promise<void> {
    const c = new pg.Client({
      host: '127.0.0.1',
      port: via === 'primary' ? primaryPort : stack.pgPort,
      user: 'postgres',
      database: 'postgres',
    });
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
    await stack.cluster.waitForReplication();
  }

  for (const via of ['rwsplit', 'primary'] as const) {
    test(`postgres.js (prepares by default): ALTER TABLE ... TYPE through ${via}, the same query works`, async () => {
      const table = `pj_${via}`;
      await ddl(
        `CREATE TABLE ${table} (id int PRIMARY KEY, v int); INSERT INTO ${table} VALUES (1, 10)`,
        via,
      );
      for (const port of [primaryPort, stack.pgPort]) {
        // Several connections so the statement is prepared on every pooled backend.
        const sql = postgres({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', max: 3 });
        try {
          const run = (): Promise<unknown[]> =>
            Promise.all(
              [1, 2, 3].map(() => sql`SELECT v FROM ${sql(table)} WHERE id = ${1}`.then((r) => r[0]!.v)),
            );
          const prefix = port === primaryPort ? 'direct' : 'rwsplit';
          assert.deepEqual(await run(), [10, 10, 10], `${prefix}: before`);
          // int -> smallint changes the result type (the server answers 0A000 to the old plan);
          // postgres.js parses both the same way, so its cached column parsers stay right.
          await ddl(`ALTER TABLE ${table} ALTER COLUMN v TYPE smallint`, via);
          assert.deepEqual(await run(), [10, 10, 10], `${prefix}: after ALTER TABLE`);
          // A table dropped and created again with another column type: the same text, new plan.
          await ddl(
            `DROP TABLE ${table}; CREATE TABLE ${table} (id int PRIMARY KEY, v int); INSERT INTO ${table} VALUES (1, 20)`,
            via,
          );
          assert.deepEqual(await run(), [20, 20, 20], `${prefix}: after DROP and CREATE`);
          await ddl(`UPDATE ${table} SET v = 10`, via);
        } finally {
          await sql.end({ timeout: 1 });
        }
      }
    });
  }

  test('node-postgres named queries: after 0A000, a new connection or a new name prepares the query again', async () => {
    await ddl('CREATE TABLE np (id int PRIMARY KEY, v int); INSERT INTO np VALUES (1, 10)', 'rwsplit');
    const query = { name: 'get', text: 'SELECT v FROM np WHERE id = $1', values: [1] };
    const outcomes: Record<string, unknown[]> = {};
    for (const [label, port] of [
      ['direct', primaryPort],
      ['rwsplit', stack.pgPort],
    ] as const) {
      const connect = async (): Promise<pg.Client> => {
        const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
        await c.connect();
        return c;
      };
      const clients = await Promise.all([connect(), connect(), connect()]);
      try {
        const seen: unknown[] = [];
        for (const c of clients) seen.push((await c.query(query)).rows[0].v);
        await ddl('ALTER TABLE np ALTER COLUMN v TYPE text', 'rwsplit');
        // The first use after the change fails where the statement was prepared before it
        // (through rwsplit the Bind may also land on a backend that never had it: then it works).
        const first = await clients[0]!.query(query).then(
          (r) => r.rows[0].v as unknown,
          (e: { code?: string }) => e.code,
        );
        if (label === 'direct') assert.equal(first, '0A000');
        else assert.ok(first === '0A000' || first === '10', `rwsplit: ${String(first)}`);
        // The same text under another name, and the same name on new connections.
        seen.push((await clients[1]!.query({ ...query, name: 'get2' })).rows[0].v);
        const fresh = await Promise.all([connect(), connect()]);
        for (const c of fresh) seen.push((await c.query(query)).rows[0].v);
        await Promise.all(fresh.map((c) => c.end()));
        outcomes[label] = seen;
        await ddl('ALTER TABLE np ALTER COLUMN v TYPE int USING v::int', 'rwsplit');
      } finally {
        await Promise.all(clients.map((c) => c.end()));
      }
    }
    assert.deepEqual(outcomes['direct'], [10, 10, 10, '10', '10', '10']);
    assert.deepEqual(outcomes['rwsplit'], outcomes['direct']);
  });
});
