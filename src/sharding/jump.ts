/**
 * Jump consistent hash (Lamping & Veach, "A Fast, Minimal Memory, Consistent Hash
 * Algorithm", 2014, https://arxiv.org/abs/1406.2294). Maps a 64-bit key to one of `buckets`
 * buckets with no table at all; growing from n to n+1 buckets moves exactly the keys that land
 * in the new bucket (about 1/(n+1) of them). Buckets are numbered: shards can only be added
 * or removed at the end, and weights are not supported.
 */
import { ShardingError } from './errors.js';
import { keyHash32, keyHash64, type KeyHashName } from './hash-functions.js';
import type { Ring } from './ring-types.js';
import { fromBigInt, lcgStep, mix64, u64, type Uint64 } from './uint64.js';

/** The paper's LCG multiplier 2862933555777941757. */
const LCG_MULTIPLIER = u64(0x27bb2ee6, 0x87b0b0fd);
const TWO_31 = 2 ** 31;
/** The reference implementation returns an `int32_t`. */
const MAX_BUCKETS = 2 ** 31 - 1;

/**
 * `JumpConsistentHash(key, num_buckets)` from the paper: the bucket (0..buckets-1) of a
 * 64-bit key. A bigint or number key is taken modulo 2^64 (as the C `uint64_t` parameter);
 * a number must be an integer.
 */
export function jumpHash(key: bigint | number, buckets: number): number {
  if (typeof key === 'number' && !Number.isSafeInteger(key)) {
    throw new ShardingError('BAD_KEY', `jump hash key ${key} is not a safe integer: pass a bigint`);
  }
  return jumpHash64(fromBigInt(BigInt(key)), buckets);
}

/** {@link jumpHash} on a key already split into uint32 halves (no BigInt on the hot path). */
export function jumpHash64(key: Uint64, buckets: number): number {
  checkBuckets(buckets);
  let k = key;
  let b = -1;
  let j = 0;
  while (j < buckets) {
    b = j;
    k = lcgStep(k, LCG_MULTIPLIER);
    // (b + 1) * (double(1LL << 31) / double((key >> 33) + 1)), truncated to int64 (j >= 0).
    j = Math.floor((b + 1) * (TWO_31 / ((k.hi >>> 1) + 1)));
  }
  return b;
}

function checkBuckets(buckets: number): void {
  if (!Number.isInteger(buckets) || buckets < 1 || buckets > MAX_BUCKETS) {
    throw new ShardingError('BAD_BUCKETS', `jump hash needs 1..${MAX_BUCKETS} buckets, got ${buckets}`);
  }
}

/**
 * A ring of `size` numbered shards placed with jump hash. The 64-bit key hash goes through
 * SplitMix64's finalizer first: jump hash assumes uniform keys, and FNV-1a of short keys that
 * differ in one byte is not uniform enough in its high bits.
 */
export class JumpRing implements Ring {
  /**
   * @param size number of shards (buckets)
   * @param hash the 64-bit key hash ({@link keyHash64}); default FNV-1a 64
   */
  constructor(
    readonly size: number,
    readonly hash: KeyHashName = 'fnv1a_64',
  ) {
    checkBuckets(size);
    keyHash32(hash, Buffer.alloc(0)); // rejects an unknown name now, not on first locate
  }

  /** Index (0..size-1) of the shard owning `key` (apply `hashTagged()` first). */
  locate(key: Buffer): number {
    if (this.size === 1) return 0;
    return jumpHash64(mix64(keyHash64(this.hash, key)), this.size);
  }
}
