import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createBalancer, NoCandidatesError, type Balancer, type Candidate } from './balancer.js';
import type { BalanceStrategy } from './types.js';

function node(id: string, fields: Partial<Candidate> = {}): Candidate {
  return { id, weight: 1, outstanding: 0, latencyMs: Number.NaN, ...fields };
}

/** mulberry32: a tiny seeded PRNG so random-driven tests are reproducible. */
function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function pickIds(balancer: Balancer, candidates: readonly Candidate[], times: number): string[] {
  const ids: string[] = [];
  for (let i = 0; i < times; i++) ids.push(balancer.pick(candidates).id);
  return ids;
}

function countIds(ids: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const id of ids) counts[id] = (counts[id] ?? 0) + 1;
  return counts;
}

const STRATEGIES: BalanceStrategy[] = ['round-robin', 'weighted', 'least-outstanding', 'lowest-latency'];

describe('createBalancer', () => {
  test('reports its strategy and throws a coded error on an empty list', () => {
    for (const strategy of STRATEGIES) {
      const balancer = createBalancer(strategy, { random: seeded(1) });
      assert.equal(balancer.strategy, strategy);
      assert.throws(
        () => balancer.pick([]),
        (err: unknown) => err instanceof NoCandidatesError && err.code === 'NO_CANDIDATES',
      );
    }
  });

  test('a single candidate is always returned, whatever the strategy', () => {
    const only = node('only', { weight: 0, outstanding: 9, latencyMs: 500 });
    for (const strategy of STRATEGIES) {
      const balancer = createBalancer(strategy, { random: seeded(2) });
      assert.deepEqual(pickIds(balancer, [only], 5), ['only', 'only', 'only', 'only', 'only']);
    }
  });
});

describe('round-robin', () => {
  test('rotates over a fixed set', () => {
    const rr = createBalancer('round-robin');
    assert.equal(pickIds(rr, [node('a'), node('b'), node('c')], 9).join(''), 'abcabcabc');
  });

  test('stays fair when the set alternates between calls', () => {
    // A counter indexed into alternating [a,b] / [a,b,c] would give a 400, b 100, c 100.
    const rr = createBalancer('round-robin');
    const two = [node('a'), node('b')];
    const three = [node('a'), node('b'), node('c')];
    const ids: string[] = [];
    for (let i = 0; i < 600; i++) ids.push(rr.pick(i % 2 === 0 ? two : three).id);
    const counts = countIds(ids);
    assert.ok(Math.abs((counts.a ?? 0) - (counts.b ?? 0)) <= 1, JSON.stringify(counts));
    assert.ok((counts.c ?? 0) >= 100, JSON.stringify(counts));
    // Nobody is picked twice in a row.
    for (let i = 1; i < ids.length; i++) assert.notEqual(ids[i], ids[i - 1], `picks ${i - 1} and ${i}`);
  });

  test('after a node leaves and another joins, every window of n picks covers each node once', () => {
    const rr = createBalancer('round-robin');
    pickIds(rr, [node('a'), node('b'), node('c')], 4);
    const next = [node('a'), node('c'), node('d')];
    const ids = pickIds(rr, next, 30);
    assert.equal(ids[0], 'd', 'a node that joins is tried first');
    for (let i = 0; i + 3 <= ids.length; i += 3) {
      assert.deepEqual([...ids.slice(i, i + 3)].sort(), ['a', 'c', 'd'], `window at ${i}`);
    }
  });
});

describe('weighted (smooth weighted round-robin)', () => {
  const five = node('a', { weight: 5 });
  const oneB = node('b', { weight: 1 });
  const oneC = node('c', { weight: 1 });

  test('5:1:1 gives the interleaved nginx sequence a a b a c a a', () => {
    const weighted = createBalancer('weighted');
    assert.deepEqual(pickIds(weighted, [five, oneB, oneC], 7), ['a', 'a', 'b', 'a', 'c', 'a', 'a']);
  });

  test('5:1:1 gives exact proportions over 700 picks, repeating every 7', () => {
    const weighted = createBalancer('weighted');
    const ids = pickIds(weighted, [five, oneB, oneC], 700);
    assert.deepEqual(countIds(ids), { a: 500, b: 100, c: 100 });
    for (let i = 7; i < ids.length; i++) assert.equal(ids[i], ids[i - 7]);
  });

  test('weight 0 is never chosen while a weighted node exists; all-zero rotates', () => {
    const weighted = createBalancer('weighted');
    const zero = node('z', { weight: 0 });
    assert.deepEqual(countIds(pickIds(weighted, [zero, oneB, oneC], 100)), { b: 50, c: 50 });
    const z2 = node('y', { weight: 0 });
    assert.deepEqual(countIds(pickIds(weighted, [zero, z2], 10)), { z: 5, y: 5 });
  });

  test('negative or NaN weights count as 0', () => {
    const weighted = createBalancer('weighted');
    const bad = [node('neg', { weight: -3 }), node('nan', { weight: Number.NaN }), oneB];
    assert.deepEqual(countIds(pickIds(weighted, bad, 20)), { b: 20 });
  });

  test('keeps proportions when a node leaves and comes back', () => {
    const weighted = createBalancer('weighted');
    pickIds(weighted, [five, oneB, oneC], 3);
    assert.deepEqual(countIds(pickIds(weighted, [five, oneB], 600)), { a: 500, b: 100 });
    const back = countIds(pickIds(weighted, [five, oneB, oneC], 700));
    for (const [id, expected] of [
      ['a', 500],
      ['b', 100],
      ['c', 100],
    ] as const) {
      assert.ok(Math.abs((back[id] ?? 0) - expected) <= 1, `${id}: ${JSON.stringify(back)}`);
    }
  });

  test('a node that joins gets its share at once', () => {
    const weighted = createBalancer('weighted');
    pickIds(weighted, [oneB, oneC], 10);
    const counts = countIds(pickIds(weighted, [oneB, oneC, node('d', { weight: 2 })], 400));
    assert.deepEqual(counts, { b: 100, c: 100, d: 200 });
  });
});

describe('least-outstanding', () => {
  test('prefers the node with fewest requests in flight', () => {
    const lo = createBalancer('least-outstanding');
    const set = [node('a', { outstanding: 4 }), node('b', { outstanding: 1 }), node('c', { outstanding: 2 })];
    assert.deepEqual(pickIds(lo, set, 5), ['b', 'b', 'b', 'b', 'b']);
  });

  test('follows the counts as they change', () => {
    const lo = createBalancer('least-outstanding');
    const outstanding: Record<string, number> = { a: 0, b: 0, c: 0 };
    // Requests never finish: picking must keep the in-flight counts level.
    for (let i = 0; i < 90; i++) {
      const set = Object.entries(outstanding).map(([id, n]) => node(id, { outstanding: n }));
      const id = lo.pick(set).id;
      outstanding[id] = (outstanding[id] ?? 0) + 1;
      const values = Object.values(outstanding);
      assert.ok(Math.max(...values) - Math.min(...values) <= 1, JSON.stringify(outstanding));
    }
  });

  test('equal nodes share load by rotation, the busier one gets nothing', () => {
    const lo = createBalancer('least-outstanding');
    const set = [node('a'), node('b'), node('busy', { outstanding: 3 })];
    assert.deepEqual(countIds(pickIds(lo, set, 100)), { a: 50, b: 50 });
  });
});

describe('lowest-latency (power of two choices)', () => {
  test('prefers the faster node in aggregate; the slowest is never the better of two', () => {
    const p2c = createBalancer('lowest-latency', { random: seeded(42) });
    const set = [
      node('slow', { latencyMs: 50 }),
      node('fast', { latencyMs: 5 }),
      node('mid', { latencyMs: 20 }),
    ];
    const counts = countIds(pickIds(p2c, set, 3000));
    // Pairs are uniform: fast wins {fast,mid} and {fast,slow} (2/3), mid wins {mid,slow} (1/3).
    assert.equal(counts.slow, undefined);
    assert.ok((counts.fast ?? 0) > 1800 && (counts.fast ?? 0) < 2200, JSON.stringify(counts));
    assert.ok((counts.mid ?? 0) > 800 && (counts.mid ?? 0) < 1200, JSON.stringify(counts));
  });

  test('with many nodes, pick counts fall as latency rises', () => {
    const p2c = createBalancer('lowest-latency', { random: seeded(7) });
    const set = [10, 20, 30, 40, 50].map((ms) => node(`n${ms}`, { latencyMs: ms }));
    const counts = countIds(pickIds(p2c, set, 10_000));
    const ordered = ['n10', 'n20', 'n30', 'n40', 'n50'].map((id) => counts[id] ?? 0);
    for (let i = 1; i < ordered.length; i++) assert.ok(ordered[i - 1]! > ordered[i]!, JSON.stringify(counts));
  });

  test('unknown latency (NaN or 0) counts as best so new nodes get tried', () => {
    for (const unknown of [Number.NaN, 0]) {
      const p2c = createBalancer('lowest-latency', { random: seeded(3) });
      const set = [
        node('new', { latencyMs: unknown }),
        node('x', { latencyMs: 1 }),
        node('y', { latencyMs: 2 }),
      ];
      const counts = countIds(pickIds(p2c, set, 3000));
      assert.ok((counts.new ?? 0) > 1800, `${unknown}: ${JSON.stringify(counts)}`);
    }
  });

  test('equal latency is decided by fewer outstanding requests', () => {
    const p2c = createBalancer('lowest-latency', { random: seeded(9) });
    const set = [
      node('busy', { latencyMs: 10, outstanding: 5 }),
      node('idle', { latencyMs: 10, outstanding: 0 }),
    ];
    assert.deepEqual(countIds(pickIds(p2c, set, 50)), { idle: 50 });
  });

  test('always compares two distinct nodes, even at the edges of the random source', () => {
    const set = [node('a', { latencyMs: 30 }), node('b', { latencyMs: 20 }), node('c', { latencyMs: 10 })];
    // random() = 0 draws indices 0 and then 1 (0 shifted past the first): b beats a.
    assert.equal(createBalancer('lowest-latency', { random: () => 0 }).pick(set).id, 'b');
    // random() = 1 (out of contract) is clamped: indices 2 and 1: c beats b.
    assert.equal(createBalancer('lowest-latency', { random: () => 1 }).pick(set).id, 'c');
    const two = [node('a', { latencyMs: 30 }), node('b', { latencyMs: 20 })];
    for (const r of [0, 0.49, 0.5, 0.999]) {
      assert.equal(createBalancer('lowest-latency', { random: () => r }).pick(two).id, 'b', `random ${r}`);
    }
  });
});
