import assert from 'node:assert/strict';
import { test } from 'node:test';

import { CommandReader } from './command-reader.js';
import {
  encodeArrayHeader,
  encodeBulk,
  encodeCommand,
  encodeError,
  encodeInteger,
  encodeNull,
  encodeSimple,
} from './encode.js';

const text = (b: Buffer): string => b.toString('latin1');

test('encodeCommand writes an array of bulk strings, strings as UTF-8', () => {
  assert.equal(text(encodeCommand(['PING'])), '*1\r\n$4\r\nPING\r\n');
  assert.equal(text(encodeCommand([])), '*0\r\n');
  assert.equal(
    text(encodeCommand(['SET', 'clé', Buffer.from([0, 0xff, 0x0d, 0x0a])])),
    '*3\r\n$3\r\nSET\r\n$4\r\ncl\xc3\xa9\r\n$4\r\n\x00\xff\r\n\r\n',
  );
});

test('encodeCommand output reads back as the same arguments', () => {
  const args = ['MSET', 'k1', 'v\r\n1', Buffer.alloc(300, 7), ''];
  const seen: Buffer[][] = [];
  new CommandReader().push(encodeCommand(args), (got) => seen.push(got));
  assert.deepEqual(seen, [args.map((a) => (typeof a === 'string' ? Buffer.from(a) : a))]);
});

test('encodeError prefixes a code and cannot be used to inject a reply', () => {
  assert.equal(text(encodeError('no backend')), '-ERR no backend\r\n');
  assert.equal(text(encodeError('bad\r\n+OK\r\n')), '-ERR bad +OK \r\n');
  assert.equal(
    text(encodeError('Authentication required.', 'NOAUTH')),
    '-NOAUTH Authentication required.\r\n',
  );
  assert.equal(text(encodeError('')), '-ERR\r\n');
  assert.equal(text(encodeError('x', 'BAD CODE\n')), '-BADCODE x\r\n');
});

test('encodeSimple, encodeInteger, encodeBulk, encodeArrayHeader, encodeNull', () => {
  assert.equal(text(encodeSimple('OK')), '+OK\r\n');
  assert.equal(text(encodeSimple('a\nb')), '+a b\r\n');
  assert.equal(text(encodeInteger(0)), ':0\r\n');
  assert.equal(text(encodeInteger(-12)), ':-12\r\n');
  assert.equal(text(encodeInteger(2 ** 60)), ':1152921504606846976\r\n');
  assert.equal(text(encodeInteger(-(2n ** 63n))), ':-9223372036854775808\r\n');
  assert.equal(text(encodeInteger(2n ** 63n - 1n)), ':9223372036854775807\r\n');
  assert.throws(() => encodeInteger(2n ** 63n), RangeError, 'RESP integers are 64-bit');
  assert.throws(() => encodeInteger(1e21), RangeError);
  assert.throws(() => encodeInteger(1.5), RangeError);
  assert.throws(() => encodeInteger(Infinity), RangeError);
  assert.equal(text(encodeBulk('hé')), '$3\r\nh\xc3\xa9\r\n');
  assert.equal(text(encodeBulk(Buffer.alloc(0))), '$0\r\n\r\n');
  assert.equal(text(encodeBulk(null)), '$-1\r\n');
  assert.equal(text(encodeArrayHeader(3)), '*3\r\n');
  assert.equal(text(encodeArrayHeader(-1)), '*-1\r\n');
  assert.throws(() => encodeArrayHeader(-2), RangeError);
  assert.throws(() => encodeArrayHeader(0.5), RangeError);
  assert.equal(text(encodeNull(true)), '_\r\n');
  assert.equal(text(encodeNull(false)), '$-1\r\n');
});
