/**
 * What a client session sees when its primary dies, independent of who replaces it: a
 * transaction in flight ends with an error naming the loss (not a closed connection), the
 * client rolls back and carries on; a write sent while there is no primary waits
 * postgres.failover.bufferMs for one (here a promotion done by hand, failover: follow).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type pg from 'pg';
import { startStack, waitFor, whereRuns, type Stack } from './support/stack.js';

describe('sessions across the loss of their primary', () => {
  let stack: Stack;

  before(async () => {
    stack = await startStack({
      postgres: {
        monitor: { intervalMs: 200, timeoutMs: 800 },
        failover: { mode: 'follow', bufferMs: 20_000 },
      },
    });
    const c = await stack.client();
    await c.query('CREATE TABLE t (id serial PRIMARY KEY, note text)');
  });

  after(async () => {
    await stack?.stop();
  });

  test('a transaction on a killed primary errors, ROLLBACK ends it, a buffered write reaches the promoted node', async () => {
    const c = await stack.client();
    await c.query('BEGIN');
    await c.query("INSERT INTO t (note) VALUES ('lost')");
    await stack.cluster.kill('pg-primary');
    const err = (await c.query('SELECT 1').catch((e: unknown) => e)) as pg.DatabaseError;
    assert.ok(err instanceof Error, 'the statement after the loss must fail');
    assert.equal(err.code, '40001');
    assert.match(err.message, /pg-primary/);
    assert.match(err.message, /rolled back/);
    const again = (await c.query('SELECT 1').catch((e: unknown) => e)) as pg.DatabaseError;
    assert.equal(again.code, '25P02', 'an aborted transaction refuses statements until it ends');
    await c.query('ROLLBACK');
    // The same connection reads again (a replica serves).
    assert.match(await whereRuns(stack, c), /pg-replica/);

    // No primary now: this write waits (bufferMs) while a replica is promoted by hand.
    const write = c.query<{ port: number }>(
      "INSERT INTO t (note) VALUES ('after') RETURNING inet_server_port() AS port",
    );
    await new Promise((r) => setTimeout(r, 500));
    const replica1 = await stack.direct('pg-replica1');
    await replica1.query('SELECT pg_promote(true, 30)');
    const res = await write;
    assert.equal(stack.nodeByPort.get(Number(res.rows[0]!.port)), 'pg-replica1');
    const rows = await replica1.query<{ note: string }>('SELECT note FROM t ORDER BY id');
    assert.deepEqual(
      rows.rows.map((r) => r.note),
      ['after'],
      'the lost transaction left nothing; the buffered write is there once',
    );
    await waitFor('pg-replica1 reported primary', async () => {
      const res = await fetch(`http://127.0.0.1:${stack.httpPort}/api/nodes`);
      const nodes = (await res.json()) as { id: string; role: string }[];
      return nodes.some((n) => n.id === 'pg-replica1' && n.role === 'primary');
    });
  });
});
