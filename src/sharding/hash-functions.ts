/**
 * Key hash functions, bit-for-bit like the proxies and servers whose placement rwsplit must
 * reproduce: twemproxy 0.5 (`src/hashkit/nc_fnv.c`, `nc_md5.c`) and Redis Cluster
 * (`src/crc16.c`, CRC16-CCITT in its XMODEM variant).
 */
import crypto from 'node:crypto';

import { ShardingError } from './errors.js';
import type { Uint64 } from './uint64.js';

/** The key hashes a ring can be built with; named as in twemproxy's `hash:` setting. */
export type KeyHashName = 'fnv1a_64' | 'md5';

/** The low 32 bits of FNV-1a's 64-bit offset basis 0xcbf29ce484222325. */
const FNV64_INIT_LOW32 = 0x84222325;
/** The low 32 bits of FNV's 64-bit prime 0x100000001b3. */
const FNV64_PRIME_LOW32 = 0x1b3;

/**
 * twemproxy's `hash_fnv1a_64` (nc_fnv.c), which despite its name is 32-bit all the way: it
 * starts from `(uint32_t) FNV_64_INIT` and multiplies by `(uint32_t) FNV_64_PRIME`. The low 32
 * bits of a product depend only on the low 32 bits of its factors, so for bytes below 0x80
 * this equals the low half of a standard 64-bit FNV-1a ({@link fnv1a64Wide}).
 *
 * It also reads the key through a plain `char *`: each byte goes through
 * `(uint32_t)key[x]`, which sign-extends bytes >= 0x80 to 0xffffffxx where `char` is signed
 * (x86-64, the Debian amd64 `nutcracker` package). That is mirrored here; an ARM build of
 * twemproxy (unsigned `char`) places keys with such bytes differently.
 *
 * @returns an unsigned 32-bit hash
 */
export function fnv1a64(key: Buffer): number {
  let hash = FNV64_INIT_LOW32;
  for (let i = 0; i < key.length; i++) {
    const byte = key[i] as number;
    // (uint32_t)(signed char)byte
    const val = byte >= 0x80 ? (byte | 0xffffff00) >>> 0 : byte;
    hash = Math.imul((hash ^ val) >>> 0, FNV64_PRIME_LOW32) >>> 0;
  }
  return hash;
}

/**
 * twemproxy's `hash_md5` (nc_md5.c): the MD5 digest of the key, its first four bytes read
 * little-endian as a uint32.
 */
export function md5Hash(key: Buffer): number {
  return md5(key).readUInt32LE(0);
}

/**
 * The one-shot `crypto.hash` (Node >= 20.12) costs about half of a `createHash` object per
 * call; older Node 20 releases fall back to the latter.
 */
const md5Digest: (data: Buffer | string) => Buffer =
  typeof crypto.hash === 'function'
    ? (data) => crypto.hash('md5', data, 'buffer')
    : (data) => crypto.createHash('md5').update(data).digest();

/** The 16-byte MD5 digest (twemproxy's `md5_signature`). */
export function md5(data: Buffer | string): Buffer {
  return md5Digest(data);
}

const CRC16_TABLE = buildCrc16Table();

/** Table for CRC16-CCITT, polynomial 0x1021, MSB first (what Redis' crc16.c tabulates). */
function buildCrc16Table(): Uint16Array {
  const table = new Uint16Array(256);
  for (let n = 0; n < 256; n++) {
    let crc = n << 8;
    for (let bit = 0; bit < 8; bit++) {
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    table[n] = crc;
  }
  return table;
}

/**
 * Redis Cluster's CRC16 (src/crc16.c: XMODEM — poly 0x1021, init 0, no reflection, no final
 * xor). A key's cluster slot is `crc16(hashTagged(key)) & 16383`.
 */
export function crc16(key: Buffer): number {
  let crc = 0;
  for (let i = 0; i < key.length; i++) {
    crc = ((crc << 8) & 0xffff) ^ (CRC16_TABLE[((crc >>> 8) ^ (key[i] as number)) & 0xff] as number);
  }
  return crc;
}

/**
 * Standard 64-bit FNV-1a (unsigned bytes, full 64-bit state), unlike twemproxy's
 * {@link fnv1a64}. Used where a ring needs 64 bits of key hash (jump, rendezvous).
 */
export function fnv1a64Wide(key: Buffer): Uint64 {
  let hi = 0xcbf29ce4;
  let lo = FNV64_INIT_LOW32;
  for (let i = 0; i < key.length; i++) {
    lo = (lo ^ (key[i] as number)) >>> 0;
    // hash * 0x100000001b3 = hash * 0x1b3 + (hash << 40); only lo's low 24 bits survive the
    // shift into the high word.
    const loProduct = lo * FNV64_PRIME_LOW32;
    const carry = Math.floor(loProduct / 0x1_0000_0000);
    hi = (hi * FNV64_PRIME_LOW32 + carry + (lo & 0xffffff) * 0x100) >>> 0;
    lo = loProduct >>> 0;
  }
  return { hi, lo };
}

/**
 * The 32-bit key hash twemproxy computes for `hash: <name>` (its `pool->key_hash`).
 */
export function keyHash32(name: KeyHashName, key: Buffer): number {
  switch (name) {
    case 'fnv1a_64':
      return fnv1a64(key);
    case 'md5':
      return md5Hash(key);
    default:
      throw unknownHash(name);
  }
}

/**
 * A 64-bit key hash: standard FNV-1a 64 ({@link fnv1a64Wide}) or the first eight bytes of the
 * MD5 digest read little-endian.
 */
export function keyHash64(name: KeyHashName, key: Buffer): Uint64 {
  switch (name) {
    case 'fnv1a_64':
      return fnv1a64Wide(key);
    case 'md5': {
      const digest = md5(key);
      return { hi: digest.readUInt32LE(4), lo: digest.readUInt32LE(0) };
    }
    default:
      throw unknownHash(name);
  }
}

/** Throws unless `name` is a supported {@link KeyHashName} (config values arrive untyped). */
export function assertKeyHashName(name: string): asserts name is KeyHashName {
  if (name !== 'fnv1a_64' && name !== 'md5') throw unknownHash(name);
}

function unknownHash(name: never | string): ShardingError {
  return new ShardingError('BAD_HASH', `unknown key hash '${String(name)}': use 'fnv1a_64' or 'md5'`);
}
