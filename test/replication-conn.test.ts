/**
 * Replication connections (`replication=database`) pass through rwsplit to the primary:
 * psql's IDENTIFY_SYSTEM answers as it does directly, and postgres.js `subscribe` through
 * rwsplit receives an INSERT made through rwsplit (logical replication, wal_level=logical).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import postgres from 'postgres';
import { pgBinary } from '../src/cluster/pg-binaries.js';
import { startStack, waitFor, type Stack } from './support/stack.js';

function psql(conninfo: string, sql: string): Promise<{ status: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(pgBinary('psql'), ['-X', '-At', conninfo, '-c', sql]);
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, out: out.trim() }));
  });
}

describe('replication connections through rwsplit', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({ cluster: { replicas: 1, settings: { wal_level: 'logical' } } });
    const c = await stack.client();
    await c.query('CREATE TABLE feed (id int PRIMARY KEY, note text)');
    await c.query('CREATE PUBLICATION alltables FOR ALL TABLES');
  });
  after(async () => stack?.stop());

  test('psql replication=database IDENTIFY_SYSTEM: the primary system, as directly', async () => {
    const conn = (port: number): string =>
      `host=127.0.0.1 port=${port} user=postgres dbname=postgres replication=database`;
    const direct = await psql(conn(stack.cluster.primary.port), 'IDENTIFY_SYSTEM');
    const proxied = await psql(conn(stack.pgPort), 'IDENTIFY_SYSTEM');
    assert.equal(direct.status, 0, direct.out);
    assert.equal(proxied.status, 0, proxied.out);
    // systemid|timeline|xlogpos|dbname: the WAL position may move between the two runs.
    const fields = (out: string): string[] => {
      const [systemid, timeline, , dbname] = out.split('|');
      return [systemid!, timeline!, dbname!];
    };
    assert.deepEqual(fields(proxied.out), fields(direct.out));
    assert.match(direct.out, /^\d+\|1\|[0-9A-F]+\/[0-9A-F]+\|postgres$/);
  });

  test('postgres.js subscribe through rwsplit receives an INSERT made through rwsplit', async () => {
    const sql = postgres({ host: '127.0.0.1', port: stack.pgPort, user: 'postgres', database: 'postgres' });
    const seen: unknown[] = [];
    try {
      const sub = await sql.subscribe('insert:feed', (row) => seen.push({ ...row }));
      await sql`INSERT INTO feed VALUES (1, 'through rwsplit')`;
      await waitFor('the subscriber to get the INSERT', () => seen.length > 0);
      assert.deepEqual(seen, [{ id: 1, note: 'through rwsplit' }]);
      await sub.unsubscribe();
    } finally {
      await sql.end({ timeout: 1 });
    }
  });
});
