import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { RendezvousRing } from './rendezvous.js';
import type { ShardServer } from './servers.js';

const KEYS = Array.from({ length: 20_000 }, (_, i) => Buffer.from(`session:${i}`));

function servers(...names: string[]): ShardServer[] {
  return names.map((name) => ({ name, weight: 1 }));
}

describe('RendezvousRing', () => {
  test('removing a server moves only the keys it owned', () => {
    const full = servers('a', 'b', 'c', 'd');
    const before = new RendezvousRing(full);
    const after = new RendezvousRing(full.filter((s) => s.name !== 'c'));
    let moved = 0;
    for (const key of KEYS) {
      const was = full[before.locate(key)]!.name;
      const now = full.filter((s) => s.name !== 'c')[after.locate(key)]!.name;
      if (was !== 'c') assert.equal(now, was, `key ${key.toString()} moved off a surviving server`);
      else moved++;
    }
    assert.ok(moved > KEYS.length / 5, `server c owned ${moved} keys`);
  });

  test('placement follows names, not list order', () => {
    const one = new RendezvousRing(servers('a', 'b', 'c'));
    const other = new RendezvousRing(servers('c', 'a', 'b'));
    const names1 = ['a', 'b', 'c'];
    const names2 = ['c', 'a', 'b'];
    for (const key of KEYS.slice(0, 2_000)) assert.equal(names1[one.locate(key)], names2[other.locate(key)]);
  });

  test('key shares are proportional to weight', () => {
    const weighted: ShardServer[] = [
      { name: 'small', weight: 1 },
      { name: 'big', weight: 3 },
      { name: 'mid', weight: 2 },
    ];
    for (const hash of ['fnv1a_64', 'md5'] as const) {
      const ring = new RendezvousRing(weighted, hash);
      const counts = [0, 0, 0];
      for (const key of KEYS) counts[ring.locate(key)]! += 1;
      const shares = counts.map((c) => c / KEYS.length);
      [1 / 6, 3 / 6, 2 / 6].forEach((want, i) =>
        assert.ok(Math.abs(shares[i]! - want) < 0.015, `${hash}: ${shares.join(',')}`),
      );
    }
  });

  test('the equal-weight shortcut ranks like the weighted score', () => {
    // [1000, 1000, 1001] takes the weighted path; its placements differ from equal weights
    // only for keys whose two best scores are within 0.1% of each other.
    const equal = new RendezvousRing(servers('a', 'b', 'c'));
    const nearly = new RendezvousRing([
      { name: 'a', weight: 1000 },
      { name: 'b', weight: 1000 },
      { name: 'c', weight: 1001 },
    ]);
    let differ = 0;
    for (const key of KEYS) if (equal.locate(key) !== nearly.locate(key)) differ++;
    assert.ok(differ < KEYS.length * 0.002, `${differ} keys placed differently`);
  });

  test('one server: always 0', () => {
    assert.equal(new RendezvousRing(servers('solo')).locate(Buffer.from('x')), 0);
  });
});
