import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { checkInstanceId, GID_PREFIX, gidLiteral, MAX_GID_BYTES, newGid, parseGid } from './gid.js';

describe('2PC gids', () => {
  test('a new gid carries the prefix and the instance id, and parses back', () => {
    const gid = newGid('proxy-1.eu_west');
    assert.ok(gid.startsWith(`${GID_PREFIX}proxy-1.eu_west:`));
    assert.equal(parseGid(gid)?.instanceId, 'proxy-1.eu_west');
  });

  test('gids are unique and stay under the server limit with the longest instance id', () => {
    const id = 'x'.repeat(64);
    const gids = new Set(Array.from({ length: 10_000 }, () => newGid(id)));
    assert.equal(gids.size, 10_000);
    for (const gid of gids) assert.ok(Buffer.byteLength(gid) <= MAX_GID_BYTES, gid);
  });

  test('instance ids that would need quoting or break parsing are refused', () => {
    for (const bad of ['', "o'brien", 'a:b', 'back\\slash', 'x'.repeat(65), 'é']) {
      assert.throws(() => checkInstanceId(bad), RangeError, bad);
      assert.throws(() => newGid(bad), RangeError, bad);
    }
  });

  test('foreign gids are not ours and are never quoted', () => {
    for (const foreign of ['x2', 'rwsplit:', "rwsplit:a:1-2-ab'; DROP TABLE t; --", 'rwsplit:a:b']) {
      assert.equal(parseGid(foreign), null, foreign);
      assert.throws(() => gidLiteral(foreign), RangeError);
    }
    const gid = newGid('a');
    assert.equal(gidLiteral(gid), `'${gid}'`);
  });
});
