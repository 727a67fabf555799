/**
 * kill -9 of one data-plane worker under pgbench load (`workers: 2`). Four pgbench processes
 * of one client each are started one after the other, so the controller's round robin deals
 * two to each worker; which worker holds which is read from `GET /api/workers` as each
 * connects. One worker is then killed: the pgbench runs on the other must finish with 0 failed
 * transactions and exit 0, the two on the killed one must abort (their connection went with
 * it). The replacement then serves new connections: pgbench -C (a connection per transaction)
 * through both workers, 0 failed, with the replacement's share of the connections counted.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { pgbench, summary, type PgbenchResult } from './support/pgbench.js';
import { startStack, waitFor, type Stack } from './support/stack.js';

const RUNS = 4;

interface WorkerRow {
  index: number;
  pid: number;
  ready: boolean;
  clients: number;
  accepted: number;
}

describe('kill -9 of one worker under pgbench load', () => {
  let stack: Stack;

  before(async () => {
    stack = await startStack({ workers: 2, cluster: { replicas: 1 }, postgres: { pool: { size: 8 } } });
    const init = await pgbench(stack.cluster.primary.port, ['-i', '-s', '1', '-q']);
    assert.equal(init.code, 0, summary(init));
    await stack.cluster.waitForReplication();
  });
  after(async () => stack?.stop());

  const workers = async (): Promise<WorkerRow[]> =>
    (await (await fetch(`http://127.0.0.1:${stack.httpPort}/api/workers`)).json()) as WorkerRow[];

  test('the other worker’s clients see 0 errors; the replacement serves new connections', async (t) => {
    const runs: { worker: number; result: Promise<PgbenchResult> }[] = [];
    for (let i = 0; i < RUNS; i++) {
      // pgbench opens a connection of its own first (it reads the scale), then its client's: two
      // connections, dealt in turn, would put every client on the same worker. One connection
      // more before every other run moves the next client to the other worker.
      if (i % 2 === 1) {
        const c = new pg.Client({ host: '127.0.0.1', port: stack.pgPort, user: 'postgres' });
        await c.connect();
        await c.end();
      }
      // Only the earlier runs' clients in session (no short connection still counted), so that
      // `before` is what this run's client adds to.
      await waitFor(
        `only the ${i} earlier pgbench clients in session`,
        async () => (await workers()).reduce((n, w) => n + w.clients, 0) === i,
      );
      const before = (await workers()).map((w) => w.clients);
      // Select-only and TPC-B-like (writes) in turn, each one client, long enough to outlast the kill.
      const result = pgbench(stack.pgPort, ['-n', ...(i % 2 === 0 ? ['-S'] : []), '-c', '1', '-T', '12']);
      // The worker whose sessions grew by one, the others as they were; checked twice, apart, so
      // pgbench's first (short) connection is not taken for its client.
      const settled = async (): Promise<number> => {
        const now = await workers();
        const grown = now.flatMap((w, j) => (w.clients === before[j]! + 1 ? [j] : []));
        const same = now.filter((w, j) => w.clients === before[j]!).length;
        return grown.length === 1 && same === now.length - 1 ? grown[0]! : -1;
      };
      let worker = -1;
      await waitFor(`pgbench ${i}'s client in session`, async () => {
        worker = await settled();
        if (worker < 0) return false;
        await new Promise((r) => setTimeout(r, 600));
        return (await settled()) === worker;
      });
      runs.push({ worker, result });
    }
    assert.deepEqual(runs.map((r) => r.worker).sort(), [0, 0, 1, 1], 'two pgbench runs on each worker');
    await waitFor('every pgbench client in session', async () =>
      (await workers()).every((w) => w.clients === RUNS / 2),
    );
    await new Promise((r) => setTimeout(r, 1000));
    const victim = (await workers())[0]!;
    process.kill(victim.pid, 'SIGKILL');
    await waitFor('a replacement worker', async () => {
      const w = (await workers())[0]!;
      return w.pid !== victim.pid && w.ready;
    });
    const results = await Promise.all(runs.map((r) => r.result));
    t.diagnostic(
      runs
        .map(
          (r, i) =>
            `pgbench ${i} (worker ${r.worker}): exit ${results[i]!.code}, ${results[i]!.processed} processed, ${results[i]!.failed} failed`,
        )
        .join('; '),
    );
    runs.forEach((r, i) => {
      const res = results[i]!;
      if (r.worker === 1) {
        assert.equal(res.code, 0, `pgbench ${i} on the surviving worker: ${summary(res)}`);
        assert.ok(res.processed > 0, `pgbench ${i} on the surviving worker ran: ${summary(res)}`);
        assert.equal(res.failed, 0, `pgbench ${i} on the surviving worker: ${summary(res)}`);
      } else {
        assert.notEqual(
          res.code,
          0,
          `pgbench ${i} on the killed worker lost its connection: ${summary(res)}`,
        );
        assert.match(res.output, /aborted/, `pgbench ${i} on the killed worker: ${summary(res)}`);
      }
    });
    // New connections, one per transaction, dealt to both workers in turn.
    const acceptedBefore = (await workers())[0]!.accepted;
    const fresh = await pgbench(stack.pgPort, ['-n', '-S', '-C', '-c', '2', '-t', '50']);
    assert.equal(fresh.code, 0, summary(fresh));
    assert.deepEqual({ processed: fresh.processed, failed: fresh.failed }, { processed: 100, failed: 0 });
    const served = (await workers())[0]!.accepted - acceptedBefore;
    t.diagnostic(`the replacement took ${served} of pgbench -C's connections`);
    assert.ok(served >= 40, `the replacement took ${served} of the 100 new connections`);
  });
});
