import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { encodeArrayHeader, encodeBulk, encodeInteger, encodeNull, encodeSimple } from './encode.js';
import { RespProtocolError } from './errors.js';
import { RespErrorValue, mapGet, parseReply, replyText, type RespValue } from './parse-reply.js';
import { ReplyReader } from './reply-reader.js';
import { crlf } from './test-support.js';

function parse(text: string): RespValue {
  return parseReply(crlf(text));
}

describe('parseReply scalars', () => {
  test('each RESP2 and RESP3 scalar decodes to its documented JS value', () => {
    assert.equal(parse('+OK\n'), 'OK');
    assert.equal(parse('+caf\xc3\xa9\n'), 'café', 'simple strings are UTF-8');
    assert.equal(parse(':0\n'), 0);
    assert.equal(parse(':-42\n'), -42);
    assert.equal(parse(':+7\n'), 7);
    assert.equal(parse(':9007199254740991\n'), Number.MAX_SAFE_INTEGER);
    assert.equal(
      parse(':9007199254740993\n'),
      9007199254740993n,
      'beyond 2^53: a bigint, not a rounded number',
    );
    assert.equal(parse(':-9223372036854775808\n'), -9223372036854775808n);
    assert.equal(parse(',3.25\n'), 3.25);
    assert.equal(parse(',1e3\n'), 1000);
    assert.equal(parse(',inf\n'), Infinity);
    assert.equal(parse(',-inf\n'), -Infinity);
    assert.ok(Number.isNaN(parse(',nan\n')));
    assert.equal(
      parse('(3492890328409238509324850943850943825024385\n'),
      3492890328409238509324850943850943825024385n,
    );
    assert.equal(parse('#t\n'), true);
    assert.equal(parse('#f\n'), false);
    assert.equal(parse('_\n'), null);
    assert.equal(parse('$-1\n'), null);
    assert.equal(parse('*-1\n'), null);
    assert.deepEqual(parse('$5\nhello\n'), Buffer.from('hello'));
    assert.deepEqual(parse('$0\n\n'), Buffer.alloc(0));
    assert.deepEqual(parse('=15\ntxt:Some string\n'), Buffer.from('Some string'));
  });

  test('errors are values with their code', () => {
    const simple = parse('-WRONGTYPE Operation against a key\n');
    assert.ok(simple instanceof RespErrorValue);
    assert.equal(simple.message, 'WRONGTYPE Operation against a key');
    assert.equal(simple.prefix, 'WRONGTYPE');
    assert.equal(simple.blob, false);
    const blob = parse('!21\nSYNTAX invalid syntax\n');
    assert.ok(blob instanceof RespErrorValue);
    assert.equal(blob.prefix, 'SYNTAX');
    assert.equal(blob.blob, true);
    assert.equal(new RespErrorValue('ERR').prefix, 'ERR');
  });

  test('a bulk string is a zero-copy subarray of the reply', () => {
    const raw = Buffer.alloc(11);
    raw.write('$5\r\nhello\r\n');
    const value = parseReply(raw);
    assert.ok(Buffer.isBuffer(value));
    assert.equal(value.buffer, raw.buffer);
    assert.equal(value.byteOffset, raw.byteOffset + 4);
  });
});

describe('parseReply aggregates', () => {
  test('arrays, sets and pushes are arrays; RESP2 null array is null', () => {
    assert.deepEqual(parse('*3\n:1\n$1\na\n_\n'), [1, Buffer.from('a'), null]);
    assert.deepEqual(parse('~2\n+x\n+y\n'), ['x', 'y']);
    assert.deepEqual(parse('>3\n$7\nmessage\n$2\nch\n$2\nhi\n'), [
      Buffer.from('message'),
      Buffer.from('ch'),
      Buffer.from('hi'),
    ]);
    assert.deepEqual(parse('*0\n'), []);
  });

  test('a map of arrays of maps decodes with its structure', () => {
    const value = parse('%2\n+a\n*2\n%1\n+x\n:1\n%0\n+b\n#f\n');
    assert.ok(value instanceof Map);
    const a = value.get('a');
    assert.ok(Array.isArray(a));
    assert.deepEqual(a, [new Map([['x', 1]]), new Map()]);
    assert.equal(value.get('b'), false);
  });

  test('attributes are dropped, at the top and inside aggregates', () => {
    assert.deepEqual(parse('|1\n+key-popularity\n%1\n$1\na\n,0.5\n*2\n:1\n:2\n'), [1, 2]);
    assert.deepEqual(parse('*2\n|1\n+ttl\n:10\n+v\n:3\n'), ['v', 3], 'an attribute is not an element');
  });

  test('mapGet finds Buffer and string keys by text; replyText reads string-like values', () => {
    const hello = parse('%3\n$6\nserver\n$5\nredis\n+proto\n:3\n$4\nrole\n$6\nmaster\n');
    assert.ok(hello instanceof Map);
    assert.equal(replyText(mapGet(hello, 'server')), 'redis');
    assert.equal(mapGet(hello, 'proto'), 3);
    assert.equal(mapGet(hello, 'missing'), undefined);
    assert.equal(replyText(mapGet(hello, 'proto')), null);
    assert.equal(replyText(undefined), null);
  });

  test('every reply the ReplyReader splits off decodes, including encoder output', () => {
    const stream = Buffer.concat([
      encodeSimple('PONG'),
      encodeInteger(12),
      encodeBulk('x'),
      encodeNull(true),
      encodeArrayHeader(2),
      encodeBulk(null),
      encodeInteger(2n ** 62n),
    ]);
    const values: RespValue[] = [];
    new ReplyReader().push(stream, (raw) => values.push(parseReply(raw)));
    assert.deepEqual(values, ['PONG', 12, Buffer.from('x'), null, [null, 2n ** 62n]]);
  });
});

describe('parseReply rejects', () => {
  const bad: Array<[string, Buffer, RegExp]> = [
    ['an empty buffer', Buffer.alloc(0), /value is missing/],
    ['an unknown type', Buffer.from('@x\r\n'), /unknown reply type byte 0x40/],
    ['a line without CRLF', Buffer.from('+OK'), /line without CRLF/],
    ['two replies', crlf('+OK\n+OK\n'), /5 bytes after the end/],
    ['a truncated array', crlf('*3\n:1\n'), /too few bytes follow/],
    ['a truncated bulk', crlf('$10\nabc\n'), /cut short/],
    ['a bad integer', crlf(':1.5\n'), /invalid integer/],
    ['a bad double', crlf(',abc\n'), /invalid double/],
    ['a bad boolean', crlf('#x\n'), /invalid boolean/],
    ['a bad big number', crlf('(12x\n'), /invalid big number/],
    ['a null map', crlf('%-1\n'), /invalid map length/],
    ['a verbatim string without format', crlf('=3\nabc\n'), /without a format/],
    ['a bare LF', Buffer.from(':1\n2\r\n'), /LF without CR/],
  ];
  for (const [name, raw, message] of bad) {
    test(`${name}`, () => {
      assert.throws(
        () => parseReply(raw),
        (err: unknown) => err instanceof RespProtocolError && message.test(err.message),
      );
    });
  }

  test('nesting beyond maxDepth is refused without overflowing the stack', () => {
    const deep = Buffer.from('*1\r\n'.repeat(100_000) + ':1\r\n');
    assert.throws(() => parseReply(deep), /nested deeper than 128 levels/);
    assert.deepEqual(parseReply(crlf('*1\n*1\n:1\n'), { maxDepth: 2 }), [[1]]);
    assert.throws(() => parseReply(crlf('*1\n*1\n:1\n'), { maxDepth: 1 }), RespProtocolError);
    assert.deepEqual(
      parseReply(crlf('*1\n*0\n'), { maxDepth: 1 }),
      [[]],
      'an empty aggregate opens no level',
    );
  });
});
