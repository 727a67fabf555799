import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { md5PasswordResponse } from './md5.js';

describe('md5PasswordResponse', () => {
  test('matches the formula computed step by step', () => {
    const salt = Buffer.from([1, 2, 3, 4]);
    const inner = createHash('md5').update('secretpostgres').digest('hex');
    const outer = createHash('md5')
      .update(Buffer.concat([Buffer.from(inner), salt]))
      .digest('hex');
    const response = md5PasswordResponse('postgres', 'secret', salt);
    assert.equal(response, 'md5' + outer);
    assert.match(response, /^md5[0-9a-f]{32}$/);
    assert.equal(response.length, 35);
  });

  test('inner hash is what PostgreSQL 15 stored for role g_md5 with password secret', () => {
    // `SET password_encryption = 'md5'; CREATE ROLE g_md5 PASSWORD 'secret'` gave this rolpassword.
    const stored = 'md54d2fbeacc5411478ae213497020175a0';
    const salt = Buffer.from([0xde, 0xad, 0xbe, 0xef]);
    const expected = 'md5' + createHash('md5').update(stored.slice(3)).update(salt).digest('hex');
    assert.equal(md5PasswordResponse('g_md5', 'secret', salt), expected);
  });

  test('depends on user, password and salt', () => {
    const salt = Buffer.from([1, 2, 3, 4]);
    const base = md5PasswordResponse('postgres', 'secret', salt);
    assert.notEqual(md5PasswordResponse('postgre', 'secret', salt), base);
    assert.notEqual(md5PasswordResponse('postgres', 'secreT', salt), base);
    assert.notEqual(md5PasswordResponse('postgres', 'secret', Buffer.from([1, 2, 3, 5])), base);
  });

  test('hashes non-ASCII user and password as UTF-8', () => {
    const salt = Buffer.from([9, 8, 7, 6]);
    const inner = createHash('md5').update(Buffer.from('pässwördjürgen', 'utf8')).digest('hex');
    const expected = 'md5' + createHash('md5').update(inner).update(salt).digest('hex');
    assert.equal(md5PasswordResponse('jürgen', 'pässwörd', salt), expected);
  });
});
