import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ShardingError } from './errors.js';
import { JumpRing, jumpHash } from './jump.js';

const MASK = (1n << 64n) - 1n;

/** The paper's reference implementation, transcribed into BigInt. */
function jumpReference(key: bigint, buckets: number): number {
  let k = key & MASK;
  let b = -1n;
  let j = 0n;
  while (j < BigInt(buckets)) {
    b = j;
    k = (k * 2862933555777941757n + 1n) & MASK;
    j = BigInt(Math.trunc(Number(b + 1n) * (2 ** 31 / Number((k >> 33n) + 1n))));
  }
  return Number(b);
}

describe('jumpHash', () => {
  test('published vectors (ClickHouse 00580_consistent_hashing_functions)', () => {
    assert.equal(jumpHash(1, 1), 0);
    assert.equal(jumpHash(42, 57), 43);
    assert.equal(jumpHash(256, 1024), 520);
    assert.equal(jumpHash(3735883980, 1), 0);
    assert.equal(jumpHash(3735883980, 666), 361);
    assert.equal(jumpHash(16045690984833335023n, 255), 237);
  });

  test('matches a BigInt transcription of the reference code', () => {
    let key = 0x0123_4567_89ab_cdefn;
    for (let i = 0; i < 2_000; i++) {
      key = (key * 6364136223846793005n + 1442695040888963407n) & MASK;
      const buckets = 1 + (i % 5 === 0 ? i * 997 : i % 97);
      assert.equal(jumpHash(key, buckets), jumpReference(key, buckets), `${key} in ${buckets}`);
    }
  });

  test('growing by one bucket moves a key only into the new bucket', () => {
    for (let key = 0; key < 5_000; key++) {
      for (let n = 1; n < 12; n++) {
        const before = jumpHash(key, n);
        const after = jumpHash(key, n + 1);
        assert.ok(after === before || after === n, `key ${key}: ${before} -> ${after} going to ${n + 1}`);
      }
    }
  });

  test('bad bucket counts and keys are refused', () => {
    const code = (c: string) => (e: unknown) => e instanceof ShardingError && e.code === c;
    assert.throws(() => jumpHash(1, 0), code('BAD_BUCKETS'));
    assert.throws(() => jumpHash(1, 2.5), code('BAD_BUCKETS'));
    assert.throws(() => jumpHash(1.5, 3), code('BAD_KEY'));
    assert.throws(() => new JumpRing(0), code('BAD_BUCKETS'));
  });
});

describe('JumpRing', () => {
  test('spreads keys evenly over the buckets', () => {
    for (const hash of ['fnv1a_64', 'md5'] as const) {
      const ring = new JumpRing(5, hash);
      const counts = [0, 0, 0, 0, 0];
      for (let i = 0; i < 50_000; i++) counts[ring.locate(Buffer.from(`user:${i}`))]! += 1;
      for (const c of counts) assert.ok(Math.abs(c / 50_000 - 0.2) < 0.01, `${hash}: ${counts.join(',')}`);
    }
  });

  test('one bucket: always 0', () => {
    assert.equal(new JumpRing(1).locate(Buffer.from('x')), 0);
  });
});
