import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { pgbench, summary } from './support/pgbench.js';
import { startStack, waitFor, type Stack } from './support/stack.js';

/** Committed transactions in database postgres, per node, read on each server directly. */
/**
 * Index scans of pgbench_accounts per node: only pgbench's reads make them (the monitor's own
 * queries commit transactions too, so counting commits would count the monitor as load).
 */
async function accountScansPerNode(stack: Stack): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const n of stack.cluster.nodes) {
    const c = await stack.direct(n.id);
    const r = await c.query<{ n: string }>(
      "SELECT coalesce(sum(idx_scan), 0) AS n FROM pg_stat_user_indexes WHERE relname = 'pgbench_accounts'",
    );
    out.set(n.id, Number(r.rows[0]!.n));
    await c.end();
  }
  return out;
}

describe('pgbench through the proxy', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack();
    const init = await pgbench(stack.cluster.primary.port, ['-i', '-s', '1', '-q']);
    assert.equal(init.code, 0, init.output);
    await stack.cluster.waitForReplication();
  });
  after(async () => stack?.stop());

  for (const mode of ['simple', 'extended', 'prepared']) {
    for (const workload of ['select-only', 'tpcb-like']) {
      test(`-M ${mode} ${workload}, 16 clients: zero errors`, async () => {
        const args = ['-n', '-M', mode, '-c', '16', '-j', '2', '-T', '2'];
        if (workload === 'select-only') args.push('-S');
        const r = await pgbench(stack.pgPort, args);
        assert.equal(r.code, 0, summary(r));
        assert.ok(r.processed > 0, summary(r));
        assert.equal(r.failed, 0, summary(r));
      });
    }
  }

  test("select-only load lands on the replicas, seen from each server's own statistics", async () => {
    const before = await accountScansPerNode(stack);
    const r = await pgbench(stack.pgPort, ['-n', '-S', '-c', '4', '-t', '100']);
    assert.equal(r.code, 0, summary(r));
    // Servers publish their counters within a second or two of going idle.
    let delta = new Map<string, number>();
    let total = 0;
    await waitFor("the servers' statistics to show the 400 reads", async () => {
      const now = await accountScansPerNode(stack);
      delta = new Map([...now].map(([id, n]) => [id, n - (before.get(id) ?? 0)]));
      total = [...delta.values()].reduce((a, b) => a + b, 0);
      return total >= 400;
    });
    assert.ok((delta.get(stack.cluster.primary.id) ?? 0) < total * 0.05, `primary share ${[...delta]}`);
    for (const x of stack.cluster.replicas) {
      assert.ok((delta.get(x.id) ?? 0) >= total * 0.1, `each replica takes a share ${[...delta]}`);
    }
  });
});
