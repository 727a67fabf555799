import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { lcgStep, fromBigInt, mix64, mul64, toBigInt, toOpenUnitInterval, u64 } from './uint64.js';

const MASK = (1n << 64n) - 1n;

/** Deterministic 64-bit values covering edge cases and a spread of random ones. */
function samples(): bigint[] {
  const out = [0n, 1n, 0xffff_ffffn, 0x1_0000_0000n, MASK, MASK - 1n, 0x8000_0000_0000_0000n];
  let x = 0x9e37_79b9_7f4a_7c15n;
  for (let i = 0; i < 500; i++) {
    x = (x * 6364136223846793005n + 1442695040888963407n) & MASK;
    out.push(x);
  }
  return out;
}

/** SplitMix64's finalizer written directly in BigInt, independent of the uint32-pair code. */
function mix64Reference(v: bigint): bigint {
  let z = v;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK;
  return z ^ (z >> 31n);
}

describe('uint64 pair arithmetic', () => {
  test('mul64 is the low 64 bits of the product', () => {
    const values = samples();
    for (let i = 0; i < values.length; i++) {
      const a = values[i] as bigint;
      const b = values[(i * 7 + 3) % values.length] as bigint;
      assert.equal(toBigInt(mul64(fromBigInt(a), fromBigInt(b))), (a * b) & MASK, `${a} * ${b}`);
    }
  });

  test('lcgStep is key * multiplier + 1, carrying and wrapping at 2^64', () => {
    const values = samples();
    for (let i = 0; i < values.length; i++) {
      const key = values[i] as bigint;
      const m = values[(i * 3 + 1) % values.length] as bigint;
      assert.equal(toBigInt(lcgStep(fromBigInt(key), fromBigInt(m))), (key * m + 1n) & MASK);
    }
    // 0xffffffff * 1 + 1: the +1 carries into the high word; MASK * 1 + 1 wraps to 0.
    assert.equal(toBigInt(lcgStep(u64(0, 0xffffffff), u64(0, 1))), 0x1_0000_0000n);
    assert.equal(toBigInt(lcgStep(u64(0xffffffff, 0xffffffff), u64(0, 1))), 0n);
  });

  test('mix64 matches a BigInt SplitMix64 finalizer', () => {
    for (const v of samples()) assert.equal(toBigInt(mix64(fromBigInt(v))), mix64Reference(v));
  });

  test('fromBigInt wraps negatives like a C cast to uint64_t', () => {
    assert.deepEqual(fromBigInt(-1n), u64(0xffffffff, 0xffffffff));
    assert.deepEqual(fromBigInt(1n << 64n), u64(0, 0));
  });

  test('toOpenUnitInterval never yields 0 or 1', () => {
    const low = toOpenUnitInterval(u64(0, 0));
    const high = toOpenUnitInterval(u64(0xffffffff, 0xffffffff));
    assert.ok(low > 0 && Number.isFinite(Math.log(low)));
    assert.ok(high < 1 && Math.log(high) < 0);
    assert.equal(toOpenUnitInterval(u64(0x80000000, 0)), 0.5 + 2 ** -53);
  });
});
