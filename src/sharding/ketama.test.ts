import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ShardingError } from './errors.js';
import { fnv1a64, md5 } from './hash-functions.js';
import { hashTagged } from './hash-tag.js';
import { KetamaRing, ketamaPointCount, type ShardServer } from './ketama.js';
import { twemproxyServerName } from './servers.js';

const NAMED_121: ShardServer[] = [
  { name: 'name1', weight: 1 },
  { name: 'name2', weight: 2 },
  { name: 'name3', weight: 1 },
];

function place(ring: KetamaRing, keys: string[]): string {
  return keys.map((k) => `${k}=${ring.locate(hashTagged(Buffer.from(k)))}`).join(' ');
}

const GOLDEN_KEYS = [
  'key:0',
  'key:1',
  'key:5',
  'foo',
  'bar',
  'hello',
  '{user1000}.following',
  'user1000',
  'ключ',
];

describe('KetamaRing', () => {
  test('places keys like nutcracker 0.5 did (golden vectors)', () => {
    // Recorded from nutcracker 0.5.0 (Debian) in front of three redis-servers, servers
    // `127.0.0.1:<port>:<weight> name1..name3`, hash_tag "{}": SET through the proxy, EXISTS
    // on each server. Named servers make the placement independent of the ports.
    assert.equal(
      place(new KetamaRing(NAMED_121, 'fnv1a_64'), GOLDEN_KEYS),
      'key:0=2 key:1=2 key:5=2 foo=0 bar=1 hello=2 {user1000}.following=2 user1000=2 ключ=1',
    );
    assert.equal(
      place(new KetamaRing(NAMED_121, 'md5'), GOLDEN_KEYS),
      'key:0=0 key:1=2 key:5=1 foo=1 bar=1 hello=1 {user1000}.following=1 user1000=1 ключ=0',
    );
    const equal = NAMED_121.map((s) => ({ ...s, weight: 1 }));
    assert.equal(
      place(new KetamaRing(equal, 'fnv1a_64'), GOLDEN_KEYS),
      'key:0=2 key:1=2 key:5=2 foo=0 bar=0 hello=2 {user1000}.following=2 user1000=2 ключ=1',
    );
  });

  test('point counts follow ketama_update, float rounding included', () => {
    assert.equal(ketamaPointCount(1, 3, 3), 160);
    assert.deepEqual(
      [1, 2, 1].map((w) => ketamaPointCount(w, 4, 3)),
      [120, 240, 120],
    );
    assert.deepEqual(
      [3, 5, 7].map((w) => ketamaPointCount(w, 15, 3)),
      [96, 160, 224],
    );
    // Multiples of four (points come four to an MD5 digest), rounded down.
    assert.equal(ketamaPointCount(1, 7, 2), 44);
    assert.equal(new KetamaRing(NAMED_121, 'md5').pointCount, 480);
  });

  test('each point is a little-endian quarter of MD5("<name>-<i>")', () => {
    // A one-point-hash ring: the key hash right at a point maps to that point's server.
    const ring = new KetamaRing(NAMED_121, 'fnv1a_64');
    const digest = md5('name2-7');
    for (let x = 0; x < 4; x++) assert.equal(ring.dispatch(digest.readUInt32LE(4 * x)), 1);
  });

  test('dispatch takes the first point >= hash and wraps past the last', () => {
    const ring = new KetamaRing(NAMED_121, 'md5');
    const owners = new Set<number>();
    for (let h = 0; h < 2 ** 32; h += 2 ** 22) owners.add(ring.dispatch(h));
    assert.deepEqual([...owners].sort(), [0, 1, 2]);
    // Above every point, the owner of the lowest point (the one hash 0 also picks).
    assert.equal(ring.dispatch(0xffffffff), ring.dispatch(0));
  });

  test('the empty key hashes to 0 (server_pool_hash), a one-server pool skips hashing', () => {
    const ring = new KetamaRing(NAMED_121, 'fnv1a_64');
    assert.notEqual(fnv1a64(Buffer.alloc(0)), 0);
    assert.equal(ring.locate(Buffer.alloc(0)), ring.dispatch(0));
    const single = new KetamaRing([{ name: 'only', weight: 3 }], 'md5');
    assert.equal(single.locate(Buffer.from('anything')), 0);
  });

  test('key shares follow weights', () => {
    const ring = new KetamaRing(NAMED_121, 'md5');
    const counts = [0, 0, 0];
    for (let i = 0; i < 40_000; i++) counts[ring.locate(Buffer.from(`k${i}`))]! += 1;
    const shares = counts.map((c) => c / 40_000);
    // 120/240/120 points: 25%/50%/25%, within the spread of 160-point rings.
    assert.ok(Math.abs(shares[0]! - 0.25) < 0.06 && Math.abs(shares[1]! - 0.5) < 0.06, shares.join(','));
  });

  test('server identities like conf_add_server', () => {
    assert.equal(twemproxyServerName('10.0.0.1', 6379, 'cache-a'), 'cache-a');
    assert.equal(twemproxyServerName('10.0.0.1', 6379), '10.0.0.1:6379');
    assert.equal(twemproxyServerName('10.0.0.1', 11211), '10.0.0.1');
  });

  test('bad pools are refused with stable codes', () => {
    const code = (c: string) => (e: unknown) => e instanceof ShardingError && e.code === c;
    assert.throws(() => new KetamaRing([], 'md5'), code('NO_SERVERS'));
    assert.throws(() => new KetamaRing([{ name: 'a', weight: 0 }], 'md5'), code('BAD_WEIGHT'));
    assert.throws(() => new KetamaRing([{ name: 'a', weight: 1.5 }], 'md5'), code('BAD_WEIGHT'));
    assert.throws(
      () =>
        new KetamaRing(
          [
            { name: 'a', weight: 1 },
            { name: 'a', weight: 1 },
          ],
          'md5',
        ),
      code('DUPLICATE_SERVER'),
    );
    assert.throws(() => new KetamaRing(NAMED_121, 'crc32' as 'md5'), code('BAD_HASH'));
  });
});
