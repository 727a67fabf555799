import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ShardingError } from './errors.js';
import { crc16, fnv1a64, fnv1a64Wide, keyHash32, keyHash64, md5Hash } from './hash-functions.js';
import { hashTagged } from './hash-tag.js';
import { toBigInt } from './uint64.js';

const MASK64 = (1n << 64n) - 1n;

/** twemproxy's hash_fnv1a_64 transcribed into BigInt, `char` signed as on x86-64. */
function twemproxyFnvReference(key: Buffer): number {
  let hash = 0xcbf29ce484222325n & 0xffffffffn;
  for (const byte of key) {
    const val = BigInt.asUintN(32, BigInt((byte << 24) >> 24));
    hash = ((hash ^ val) * (0x100000001b3n & 0xffffffffn)) & 0xffffffffn;
  }
  return Number(hash);
}

/** Standard FNV-1a 64 in BigInt. */
function fnv1a64Reference(key: Buffer): bigint {
  let hash = 0xcbf29ce484222325n;
  for (const byte of key) hash = ((hash ^ BigInt(byte)) * 0x100000001b3n) & MASK64;
  return hash;
}

function randomKeys(count: number): Buffer[] {
  let seed = 12345;
  const next = (): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed >>> 16;
  };
  return Array.from({ length: count }, () =>
    Buffer.from(Array.from({ length: next() % 48 }, () => next() & 0xff)),
  );
}

describe('fnv1a64 (twemproxy hash_fnv1a_64)', () => {
  test('empty key is the truncated offset basis', () => {
    assert.equal(fnv1a64(Buffer.alloc(0)), 0x84222325);
  });

  test('matches a BigInt transcription on random binary keys', () => {
    for (const key of randomKeys(2_000))
      assert.equal(fnv1a64(key), twemproxyFnvReference(key), key.toString('hex'));
  });

  test('sign-extends bytes >= 0x80 like a signed char', () => {
    // 0xff becomes 0xffffffff: (0x84222325 ^ 0xffffffff) * 0x1b3 mod 2^32.
    assert.equal(fnv1a64(Buffer.from([0xff])), 0x79fe466e);
    assert.notEqual(
      fnv1a64(Buffer.from([0xff])),
      Number(fnv1a64Reference(Buffer.from([0xff])) & 0xffffffffn),
    );
  });

  test('equals the low half of standard FNV-1a 64 for ASCII keys', () => {
    for (const k of ['a', 'foobar', 'user:1000', '{tag}rest']) {
      assert.equal(fnv1a64(Buffer.from(k)), fnv1a64Wide(Buffer.from(k)).lo, k);
    }
  });
});

describe('fnv1a64Wide (standard FNV-1a 64)', () => {
  test('published vectors', () => {
    assert.equal(toBigInt(fnv1a64Wide(Buffer.from(''))), 0xcbf29ce484222325n);
    assert.equal(toBigInt(fnv1a64Wide(Buffer.from('a'))), 0xaf63dc4c8601ec8cn);
    assert.equal(toBigInt(fnv1a64Wide(Buffer.from('foobar'))), 0x85944171f73967e8n);
  });

  test('matches BigInt FNV-1a 64 on random binary keys', () => {
    for (const key of randomKeys(2_000)) assert.equal(toBigInt(fnv1a64Wide(key)), fnv1a64Reference(key));
  });
});

describe('md5Hash (twemproxy hash_md5)', () => {
  test('first four digest bytes, little-endian', () => {
    // md5("") = d41d8cd9..., md5("a") = 0cc175b9...
    assert.equal(md5Hash(Buffer.from('')), 0xd98c1dd4);
    assert.equal(md5Hash(Buffer.from('a')), 0xb975c10c);
  });

  test('keyHash64 md5 is the first eight digest bytes, little-endian', () => {
    // md5("a") = 0cc175b9 c0f1b6a8 ...
    assert.equal(toBigInt(keyHash64('md5', Buffer.from('a'))), 0xa8b6f1c0b975c10cn);
  });
});

describe('crc16 (Redis Cluster)', () => {
  test('XMODEM check value', () => {
    assert.equal(crc16(Buffer.from('123456789')), 0x31c3);
  });

  test('slots match CLUSTER KEYSLOT of redis-server 7.0', () => {
    // Produced by `redis-cli cluster keyslot <key>` against a cluster-enabled redis-server.
    const golden: [string, number][] = [
      ['foo', 12182],
      ['bar', 5061],
      ['hello', 866],
      ['123456789', 12739],
      ['{user1000}.following', 3443],
      ['{user1000}.followers', 3443],
      ['foo{}{bar}', 8363],
      ['foo{{bar}}zap', 4015],
      ['foo{bar}{zap}', 5061],
      ['', 0],
      ['ключ', 10303],
    ];
    for (const [key, slot] of golden) assert.equal(crc16(hashTagged(Buffer.from(key))) & 0x3fff, slot, key);
  });
});

describe('keyHash32 / keyHash64', () => {
  test('dispatch by name', () => {
    const key = Buffer.from('dispatch');
    assert.equal(keyHash32('fnv1a_64', key), fnv1a64(key));
    assert.equal(keyHash32('md5', key), md5Hash(key));
    assert.deepEqual(keyHash64('fnv1a_64', key), fnv1a64Wide(key));
  });

  test('unknown names are refused with BAD_HASH', () => {
    const bad = 'murmur' as 'md5';
    assert.throws(
      () => keyHash32(bad, Buffer.from('k')),
      (e) => e instanceof ShardingError && e.code === 'BAD_HASH',
    );
    assert.throws(
      () => keyHash64(bad, Buffer.from('k')),
      (e) => e instanceof ShardingError && e.code === 'BAD_HASH',
    );
  });
});
