/**
 * Regression: a complete answer and the server's FATAL arriving in one read. Under CPU load
 * the proxy read a replica's whole answer (ReadyForQuery included) together with the FATAL
 * that followed it ("terminating connection …", here from pg_terminate_backend; a kill -9 of
 * the postmaster does the same): the answer went into the output coalescer, the FATAL closed
 * the backend, and nothing flushed the coalescer, so the client waited forever (pgbench hung
 * after a replica was killed). The test makes the two arrive together for certain by blocking
 * the proxy's event loop (it runs in this process) while the server answers and is terminated.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startStack, type Stack } from './support/stack.js';

function blockEventLoop(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

describe('an answer followed at once by the server FATAL', () => {
  let stack: Stack;

  before(async () => {
    stack = await startStack();
  });

  after(async () => {
    await stack?.stop();
  });

  for (const protocol of ['simple', 'extended'] as const) {
    test(`reaches the client (${protocol} protocol)`, async () => {
      const c = await stack.client();
      const marker = `answer_then_fatal_${protocol}`;
      const text = `SELECT pg_sleep(1.5) AS ${marker}, inet_server_port() AS port`;
      const answer = protocol === 'simple' ? c.query(text) : c.query(`${text}, $1::int AS one`, [1]);
      const settled = answer.then(
        (r) => ({ ok: true as const, port: Number(r.rows[0]!.port) }),
        (e: unknown) => ({ ok: false as const, error: e }),
      );

      // Find the replica backend running it.
      let found = null as { node: string; pid: number } | null;
      for (let i = 0; i < 100 && !found; i++) {
        for (const node of ['pg-replica1', 'pg-replica2']) {
          const d = await stack.direct(node);
          const r = await d.query<{ pid: number }>(
            `SELECT pid FROM pg_stat_activity WHERE query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()`,
            [marker],
          );
          if (r.rows[0]) found = { node, pid: r.rows[0].pid };
        }
        if (!found) await new Promise((res) => setTimeout(res, 20));
      }
      assert.ok(found, 'the read must be running on a replica');

      // Terminate that backend as soon as it has answered, while this process (the proxy)
      // does not read: answer and FATAL then wait in the socket together.
      const killer = await stack.direct(found.node);
      const kill = killer.query(
        `DO $$ BEGIN
           WHILE EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = ${found.pid} AND state = 'active') LOOP
             PERFORM pg_sleep(0.01);
             PERFORM pg_stat_clear_snapshot(); -- pg_stat_activity is a snapshot per transaction
           END LOOP;
           PERFORM pg_sleep(0.1);
           PERFORM pg_terminate_backend(${found.pid});
         END $$`,
      );
      blockEventLoop(3000);
      await kill;

      const outcome = await Promise.race([
        settled,
        new Promise<'no answer'>((res) => setTimeout(() => res('no answer'), 10_000)),
      ]);
      assert.notEqual(outcome, 'no answer', 'the client must get the answer the server sent');
      assert.ok(outcome !== 'no answer' && outcome.ok, `the answer was complete: ${JSON.stringify(outcome)}`);
      assert.equal(stack.nodeByPort.get(outcome.port), found.node);
      // The session carries on.
      const next = await c.query('SELECT 1 AS one');
      assert.equal(next.rows[0]!.one, 1);
    });
  }
});
