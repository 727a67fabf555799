/**
 * A database created through rwsplit is used at once, while the replicas have not replayed it
 * yet (replay paused on both): the replicas refuse the login (3D000), and the reads go to the
 * primary instead of failing, as a direct connection to the primary would answer. Plain reads
 * and read-your-writes reads (token handed over), simple and extended protocol, node-postgres
 * and postgres.js.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import postgres from 'postgres';
import { startStack, type Stack } from './support/stack.js';

describe('reads when the replicas do not have the database yet', () => {
  let stack: Stack;
  let primaryPort: number;
  let token: string;
  before(async () => {
    // Neither retried reads nor primaryReads: fallback may hide the rule: a replica that
    // refuses the login is not a node failure, and the primary answers when it can.
    stack = await startStack({
      postgres: { pool: { size: 2 }, routing: { primaryReads: 'never', retryReads: false } },
    });
    primaryPort = stack.cluster.primary.port;
    await stack.cluster.waitForReplication();
    for (const r of stack.cluster.replicas) {
      const c = await stack.direct(r.id);
      await c.query('SELECT pg_wal_replay_pause()');
    }
    const admin = await stack.client();
    await admin.query('CREATE DATABASE fresh');
    token = String(Object.values((await admin.query('SHOW rwsplit.causal_token')).rows[0] as object)[0]);
    assert.match(token, /^v1:/);
  });
  after(async () => {
    for (const r of stack?.cluster.replicas ?? []) {
      const c = await stack.direct(r.id);
      await c.query('SELECT pg_wal_replay_resume()');
    }
    await stack?.stop();
  });

  const READ = 'SELECT current_database() AS db, inet_server_port() AS port';

  test('the replicas themselves refuse the database (the condition under test)', async () => {
    const r = stack.cluster.replicas[0]!;
    const c = new pg.Client({ host: '127.0.0.1', port: r.port, user: 'postgres', database: 'fresh' });
    await assert.rejects(c.connect(), (e: { code?: string }) => e.code === '3D000');
  });

  test('node-postgres: plain and read-your-writes reads, simple and extended, answered by the primary', async () => {
    const direct = new pg.Client({
      host: '127.0.0.1',
      port: primaryPort,
      user: 'postgres',
      database: 'fresh',
    });
    await direct.connect();
    const expected = (await direct.query(READ)).rows[0];
    await direct.end();
    for (const ryw of [false, true]) {
      const c = await stack.client({ database: 'fresh' });
      if (ryw) await c.query(`SET rwsplit.causal_token = '${token}'`);
      const simple = (await c.query(READ)).rows[0];
      const extended = (await c.query(`${READ} WHERE $1::int = 1`, [1])).rows[0];
      assert.deepEqual([simple, extended], [expected, expected], ryw ? 'read-your-writes' : 'plain read');
    }
  });

  test('postgres.js: reads on the new database at once', async () => {
    const sql = postgres({
      host: '127.0.0.1',
      port: stack.pgPort,
      user: 'postgres',
      database: 'fresh',
      max: 1,
    });
    try {
      const rows = await sql`SELECT current_database() AS db, inet_server_port() AS port WHERE ${1}::int = 1`;
      assert.deepEqual({ ...rows[0] }, { db: 'fresh', port: primaryPort });
    } finally {
      await sql.end({ timeout: 1 });
    }
  });
});
