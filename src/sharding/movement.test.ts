import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { movement } from './movement.js';
import { createRing, type RingKind } from './ring.js';
import type { ShardServer } from './servers.js';

const KEYS = Array.from({ length: 100_000 }, (_, i) => Buffer.from(`order:${i}:${(i * 2654435761) >>> 0}`));

function shards(n: number): ShardServer[] {
  return Array.from({ length: n }, (_, i) => ({ name: `shard-${i}`, weight: 1 }));
}

describe('movement', () => {
  // Adding one shard to N should move about 1/(N+1) of the keys, all onto the new shard.
  // Ketama's 160 points per shard give it a wider spread than jump or rendezvous.
  const tolerance: Record<RingKind, number> = { jump: 0.01, rendezvous: 0.01, ketama: 0.06 };
  for (const kind of ['jump', 'rendezvous', 'ketama'] as const) {
    for (const n of [3, 4, 9]) {
      test(`${kind}: adding a shard to ${n} moves ~1/${n + 1} of the keys, all to the new shard`, () => {
        const before = createRing(kind, shards(n), { hash: 'md5' });
        const after = createRing(kind, shards(n + 1), { hash: 'md5' });
        const report = movement(before, after, KEYS);
        assert.equal(report.total, KEYS.length);
        assert.equal(report.fraction, report.moved / report.total);
        assert.ok(
          Math.abs(report.fraction - 1 / (n + 1)) < tolerance[kind],
          `moved ${report.fraction.toFixed(4)}, expected ~${(1 / (n + 1)).toFixed(4)}`,
        );
        assert.deepEqual([...report.byDestination.keys()], [n]);
        assert.equal(report.byDestination.get(n), report.moved);
      });
    }
  }

  test('identical rings move nothing; no keys gives fraction 0', () => {
    const ring = createRing('ketama', shards(3));
    assert.deepEqual(movement(ring, ring, KEYS.slice(0, 1_000)), {
      moved: 0,
      total: 1_000,
      fraction: 0,
      byDestination: new Map(),
    });
    assert.equal(movement(ring, ring, []).fraction, 0);
  });

  test('counts destinations of moved keys when shards are renamed', () => {
    const before = createRing('rendezvous', shards(3));
    const after = createRing('rendezvous', [...shards(2), { name: 'replacement', weight: 1 }]);
    const report = movement(before, after, KEYS.slice(0, 30_000));
    let sum = 0;
    for (const count of report.byDestination.values()) sum += count;
    assert.equal(sum, report.moved);
    // Only shard-2's keys move; rendezvous hands them out among all three shards.
    assert.ok(report.fraction > 0.25 && report.fraction < 0.42, String(report.fraction));
  });
});
