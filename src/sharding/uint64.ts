/**
 * Unsigned 64-bit arithmetic on pairs of uint32 numbers. The hot paths (jump hash, rendezvous
 * scores, wide FNV) run once per key, and BigInt allocates on every operation; two doubles
 * holding 32 bits each stay in registers. Every intermediate below is an integer < 2^53, so
 * double arithmetic is exact.
 */

/** An unsigned 64-bit integer as its high and low 32-bit halves (each 0..2^32-1). */
export interface Uint64 {
  readonly hi: number;
  readonly lo: number;
}

const TWO_32 = 0x1_0000_0000;

/** Low word of the last {@link mulWords} product (a scratch cell: no allocation per multiply). */
let productLow = 0;

/**
 * The low 64 bits of `(aHi:aLo) * (bHi:bLo)`: returns the high word, leaves the low word in
 * `productLow`. Hot loops call this instead of {@link mul64} to avoid an object per step.
 */
function mulWords(aHi: number, aLo: number, bHi: number, bLo: number): number {
  // Full 64-bit product of the low halves from 16-bit limbs: each partial product < 2^32.
  const a0 = aLo & 0xffff;
  const a1 = aLo >>> 16;
  const b0 = bLo & 0xffff;
  const b1 = bLo >>> 16;
  const mid = a0 * b1 + a1 * b0; // < 2^33
  // `& 0xffff` is exact on mid (ToInt32 drops only multiples of 2^32) and, unlike `%` on a
  // double above 2^31, compiles to one instruction.
  const midLow = mid & 0xffff;
  const low = a0 * b0 + midLow * 0x10000; // < 2^33
  const carry = (low >= TWO_32 ? 1 : 0) + (mid - midLow) / 0x10000 + a1 * b1;
  productLow = low >>> 0;
  // The cross terms only reach the high word; Math.imul keeps their low 32 bits.
  return (carry + Math.imul(aHi, bLo) + Math.imul(aLo, bHi)) >>> 0;
}

/** The low 64 bits of `a * b`. */
export function mul64(a: Uint64, b: Uint64): Uint64 {
  const hi = mulWords(a.hi, a.lo, b.hi, b.lo);
  return { hi, lo: productLow };
}

/**
 * `key * multiplier + 1` modulo 2^64 (the jump hash LCG step), as a new value.
 */
export function lcgStep(key: Uint64, multiplier: Uint64): Uint64 {
  let hi = mulWords(key.hi, key.lo, multiplier.hi, multiplier.lo);
  let lo = productLow + 1;
  if (lo === TWO_32) {
    lo = 0;
    hi = (hi + 1) >>> 0;
  }
  return { hi, lo };
}

/** `a ^ b`. */
export function xor64(a: Uint64, b: Uint64): Uint64 {
  return { hi: (a.hi ^ b.hi) >>> 0, lo: (a.lo ^ b.lo) >>> 0 };
}

/** `a >>> n` for 0 < n < 32. */
export function shiftRight64(a: Uint64, n: number): Uint64 {
  return { hi: a.hi >>> n, lo: ((a.lo >>> n) | (a.hi << (32 - n))) >>> 0 };
}

/** The value as a BigInt (tests and diagnostics; not for hot paths). */
export function toBigInt(a: Uint64): bigint {
  return (BigInt(a.hi) << 32n) | BigInt(a.lo);
}

/** A BigInt reduced modulo 2^64 (negative values wrap, as a C cast to uint64_t does). */
export function fromBigInt(value: bigint): Uint64 {
  const v = BigInt.asUintN(64, value);
  return { hi: Number(v >> 32n), lo: Number(v & 0xffff_ffffn) };
}

/** The uint64 constant `hi:lo` (helper so constants read like their hex spelling). */
export function u64(hi: number, lo: number): Uint64 {
  return { hi: hi >>> 0, lo: lo >>> 0 };
}

const MIX_C1 = u64(0xbf58476d, 0x1ce4e5b9);
const MIX_C2 = u64(0x94d049bb, 0x133111eb);

/**
 * SplitMix64's finalizer (Stafford's "Mix13"): a bijection on 64 bits in which every output
 * bit depends on every input bit. Used where a raw hash (FNV) has weak avalanche. Written on
 * plain words (one allocation) because rendezvous runs it once per server per key.
 */
export function mix64(a: Uint64): Uint64 {
  let hi = a.hi;
  let lo = a.lo;
  // x ^= x >>> 30 (the low word first: it needs the old high word)
  lo = (lo ^ ((lo >>> 30) | (hi << 2))) >>> 0;
  hi = (hi ^ (hi >>> 30)) >>> 0;
  hi = mulWords(hi, lo, MIX_C1.hi, MIX_C1.lo);
  lo = productLow;
  // x ^= x >>> 27
  lo = (lo ^ ((lo >>> 27) | (hi << 5))) >>> 0;
  hi = (hi ^ (hi >>> 27)) >>> 0;
  hi = mulWords(hi, lo, MIX_C2.hi, MIX_C2.lo);
  lo = productLow;
  // x ^= x >>> 31
  lo = (lo ^ ((lo >>> 31) | (hi << 1))) >>> 0;
  hi = (hi ^ (hi >>> 31)) >>> 0;
  return { hi, lo };
}

/**
 * The top 52 bits of `a` as a double in the open interval (0, 1), uniform when `a` is: the
 * midpoint of one of 2^52 equal cells, so neither 0 nor 1 (whose logarithms are -Infinity
 * and 0) can come out.
 */
export function toOpenUnitInterval(a: Uint64): number {
  return (a.hi * 0x10_0000 + (a.lo >>> 12) + 0.5) / 2 ** 52;
}
