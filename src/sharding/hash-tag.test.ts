import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ShardingError } from './errors.js';
import { hashTagged } from './hash-tag.js';

function tagged(key: string, tag?: string): string {
  return hashTagged(Buffer.from(key), tag).toString();
}

describe('hashTagged', () => {
  test('content of the first non-empty {...}', () => {
    assert.equal(tagged('{user1000}.following'), 'user1000');
    assert.equal(tagged('prefix{tag}suffix{other}'), 'tag');
    assert.equal(tagged('foo{{bar}}zap'), '{bar');
  });

  test('whole key when there is no complete or non-empty tag', () => {
    assert.equal(tagged('plain'), 'plain');
    assert.equal(tagged('foo{}{bar}'), 'foo{}{bar}');
    assert.equal(tagged('{unclosed'), '{unclosed');
    assert.equal(tagged('}{'), '}{');
    assert.equal(tagged(''), '');
  });

  test('a } before the first { is ignored', () => {
    assert.equal(tagged('a}b{c}d'), 'c');
  });

  test('other tag characters and no tag', () => {
    assert.equal(tagged('a:b$c', ':$'), 'b');
    assert.equal(tagged('{x}y', ''), '{x}y');
  });

  test('returns a view, not a copy', () => {
    const key = Buffer.from('{ab}cd');
    const part = hashTagged(key);
    key[1] = 0x7a; // 'z'
    assert.equal(part.toString(), 'zb');
  });

  test('a tag that is not two one-byte characters is refused', () => {
    for (const bad of ['{', '{{}', 'é}']) {
      assert.throws(
        () => hashTagged(Buffer.from('k'), bad),
        (e) => e instanceof ShardingError && e.code === 'BAD_HASH_TAG',
        bad,
      );
    }
  });
});
