/**
 * postgres.pool.idleInTransactionTimeoutMs and postgres.pool.queryWaitTimeoutMs with real
 * clients, one backend connection per node so that a held backend is felt at once. A client
 * idle inside a transaction is ended the way PostgreSQL's own idle_in_transaction_session_timeout
 * ends it (compared with a direct connection), and the backend it held serves the next client.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { pino } from 'pino';
import { Rwsplit } from '../src/app.js';
import { validateConfig } from '../src/config/load.js';
import { startStack, type Stack } from './support/stack.js';

interface Ending {
  code: string | undefined;
  severity: string | undefined;
  message: string;
}

/** The error a client receives while it sends nothing (FATAL from the server), then its end. */
function endingOf(c: pg.Client): Promise<Ending> {
  return new Promise((resolve) => {
    c.once('error', (err: pg.DatabaseError) =>
      resolve({ code: err.code, severity: err.severity, message: err.message }),
    );
  });
}

async function connect(port: number): Promise<pg.Client> {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
  // After the server's FATAL, node-postgres also reports the closed connection: expected here.
  c.on('error', () => undefined);
  await c.connect();
  return c;
}

describe('idle-in-transaction and pool-wait timeouts', () => {
  let stack: Stack;
  let waiting: Rwsplit;
  let primaryPort: number;

  before(async () => {
    stack = await startStack({
      cluster: { replicas: 1 },
      postgres: { pool: { size: 1, idleInTransactionTimeoutMs: 300, queryWaitTimeoutMs: 30_000 } },
    });
    primaryPort = stack.cluster.nodes[0]!.port;
    // A second instance on the same cluster, without the idle timeout and a short pool wait.
    waiting = await Rwsplit.start(
      validateConfig({
        workers: 1,
        listen: { postgres: { host: '127.0.0.1', port: 0 }, http: { host: '127.0.0.1', port: 0 } },
        postgres: {
          nodes: stack.cluster.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port })),
          monitor: { intervalMs: 200, timeoutMs: 1000 },
          pool: { size: 1, queryWaitTimeoutMs: 300 },
        },
      }),
      { log: pino({ level: 'silent' }) },
    );
    const setup = await stack.client();
    await setup.query('CREATE TABLE tx_idle (id int PRIMARY KEY)');
    await setup.end();
  });

  after(async () => {
    await waiting?.stop();
    await stack?.stop();
  });

  test('a client idle in a transaction is ended like PostgreSQL ends it, and its backend serves the next client', async () => {
    // Direct: the server's own timeout.
    const direct = await connect(primaryPort);
    await direct.query("SET idle_in_transaction_session_timeout = '300ms'");
    await direct.query('BEGIN');
    await direct.query('INSERT INTO tx_idle VALUES ($1)', [1]);
    const directEnding = await endingOf(direct);
    await assert.rejects(direct.query('SELECT 1'));

    // Through rwsplit (pool of 1): the idle client holds the primary's only backend.
    const idle = await stack.client();
    await idle.query('BEGIN');
    await idle.query('INSERT INTO tx_idle VALUES ($1)', [2]);
    const ending = endingOf(idle);
    const next = await stack.client();
    // Waits for the one backend the idle client holds, and gets it once that client is ended.
    const insert = next.query('INSERT INTO tx_idle VALUES (3)');
    const proxied = await ending;
    await insert;
    await assert.rejects(idle.query('SELECT 1'), 'the idle client connection is closed');

    assert.equal(directEnding.code, '25P03');
    assert.deepEqual(proxied, directEnding);
    const rows = (
      await next.query<{ id: number }>('SELECT id FROM tx_idle ORDER BY id /* rwsplit:primary */')
    ).rows;
    assert.deepEqual(
      rows.map((r) => r.id),
      [3],
      'both idle transactions were rolled back',
    );
  });

  test('a lone BEGIN left idle is ended too (no backend held, the client is still in a transaction)', async () => {
    const direct = await connect(primaryPort);
    await direct.query("SET idle_in_transaction_session_timeout = '300ms'");
    await direct.query('BEGIN');
    const directEnding = await endingOf(direct);
    const c = await stack.client();
    await c.query('BEGIN');
    assert.deepEqual(await endingOf(c), directEnding);
  });

  test('a client waiting for a busy pool longer than queryWaitTimeoutMs gets 53300 naming the setting, and carries on', async () => {
    const port = waiting.pgAddress!.port;
    const holder = await connect(port);
    const waiter = await connect(port);
    try {
      await holder.query('BEGIN');
      await holder.query('INSERT INTO tx_idle VALUES ($1)', [10]);
      for (const attempt of [
        () => waiter.query('INSERT INTO tx_idle VALUES (11)'),
        () => waiter.query('INSERT INTO tx_idle VALUES ($1)', [11]),
      ]) {
        await assert.rejects(attempt(), (err: pg.DatabaseError) => {
          assert.equal(err.code, '53300');
          assert.equal(err.severity, 'ERROR');
          assert.match(err.message, /stayed busy for 300 ms/);
          assert.match(err.hint ?? '', /postgres\.pool\.queryWaitTimeoutMs/);
          return true;
        });
      }
      // The holder was not disturbed; once it commits, the waiter's session works.
      await holder.query('COMMIT');
      await waiter.query('INSERT INTO tx_idle VALUES ($1)', [11]);
      const r = await waiter.query<{ n: string }>(
        'SELECT count(*) AS n FROM tx_idle WHERE id IN (10, 11) /* rwsplit:primary */',
      );
      assert.equal(r.rows[0]!.n, '2');
    } finally {
      await holder.end();
      await waiter.end();
    }
  });
});
