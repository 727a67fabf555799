import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startStack, whereRuns, type Stack } from './support/stack.js';

describe('balancing: weighted replicas and primaryReads: always', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({ postgres: { routing: { balance: 'weighted', primaryReads: 'always' } } });
  });
  after(async () => stack?.stop());

  test('reads follow the configured weights across primary and replicas', async () => {
    // Equal weights and primaryReads: always: every node, the primary included, gets a third.
    const c = await stack.client();
    const counts = new Map<string, number>();
    for (let i = 0; i < 90; i++) {
      const node = await whereRuns(stack, c);
      counts.set(node, (counts.get(node) ?? 0) + 1);
    }
    assert.deepEqual(
      [...counts.entries()].sort(),
      stack.cluster.nodes.map((n) => [n.id, 30]).sort(),
      'smooth weighted round-robin with equal weights: 30 each',
    );
  });
});

describe('balancing: uneven weights', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({ postgres: { routing: { balance: 'weighted' } }, weights: [1, 3, 1] });
  });
  after(async () => stack?.stop());

  test('a replica of weight 3 gets three times the reads of a replica of weight 1', async () => {
    const c = await stack.client();
    const counts = new Map<string, number>();
    for (let i = 0; i < 100; i++) {
      const node = await whereRuns(stack, c);
      counts.set(node, (counts.get(node) ?? 0) + 1);
    }
    const [r1, r2] = stack.cluster.replicas;
    assert.equal(counts.get(r1!.id), 75);
    assert.equal(counts.get(r2!.id), 25);
    assert.equal(
      counts.get(stack.cluster.primary.id),
      undefined,
      'the primary takes no reads (fallback only)',
    );
  });
});

describe('balancing: least-outstanding and lowest-latency keep working end to end', () => {
  for (const balance of ['least-outstanding', 'lowest-latency'] as const) {
    test(`${balance}: concurrent reads all land on replicas and all succeed`, async () => {
      const stack = await startStack({ postgres: { routing: { balance } } });
      try {
        const clients = await Promise.all(Array.from({ length: 8 }, () => stack.client()));
        const nodes = await Promise.all(
          clients.flatMap((c) =>
            Array.from({ length: 5 }, () =>
              whereRuns(stack, c, 'SELECT inet_server_port() AS port, pg_sleep(0.01)'),
            ),
          ),
        );
        const replicas = new Set(stack.cluster.replicas.map((r) => r.id));
        assert.ok(
          nodes.every((n) => replicas.has(n)),
          `all on replicas: ${nodes}`,
        );
        assert.equal(new Set(nodes).size, 2, 'both replicas used');
      } finally {
        await stack.stop();
      }
    });
  }
});
