import assert from 'node:assert/strict';
import { test } from 'node:test';

import { splitInlineArgs } from './inline-args.js';

/** Latin-1 in, Latin-1 out, so every byte value is visible in the table below. */
function split(line: string): string[] | null {
  const args = splitInlineArgs(Buffer.from(line, 'latin1'));
  return args === null ? null : args.map((a) => a.toString('latin1'));
}

test('inline lines split as redis sdssplitargs() splits them', () => {
  const cases: Array<[string, string[] | null]> = [
    ['', []],
    ['   \t ', []],
    ['PING', ['PING']],
    ['SET a b', ['SET', 'a', 'b']],
    ['  SET \t a\rb  ', ['SET', 'a', 'b']],
    ['SET "a b" \'c d\'', ['SET', 'a b', 'c d']],
    ['"" \'\'', ['', '']],
    ['"\\x41\\x4a\\x00\\xff"', ['AJ\x00\xff']],
    ['"\\n\\r\\t\\b\\a\\\\\\"\\q"', ['\n\r\t\b\x07\\"q']],
    ['"\\xZZ"', ['xZZ']], // not a hex escape: `\x` is just `x`
    ['"\\x4"', ['x4']],
    ["'it\\'s' 'a\\nb'", ["it's", 'a\\nb']], // only \' is an escape inside single quotes
    ['a"b c"', ['ab c']], // a quote inside a word starts a quoted part
    ['"a"\tb', ['a', 'b']],
    ['a\x0bb', ['a\x0bb']], // \v separates arguments only between them, as in redis
    ['\x0ba', ['a']],
    ['"abc', null],
    ["'abc", null],
    ['"a"b', null], // a closing quote must be followed by a space
    ["'a'b", null],
    ['"abc\\', null],
    ['"abc\\"', null],
  ];
  for (const [line, expected] of cases) assert.deepEqual(split(line), expected, JSON.stringify(line));
});

test('unquoted arguments are subarrays of the line; quoted ones are copies', () => {
  const line = Buffer.alloc(16);
  line.write('GET key "quoted"'); // own ArrayBuffer, so `.buffer` identity means something
  const args = splitInlineArgs(line)!;
  assert.equal(args[1]!.buffer, line.buffer);
  assert.equal(args[1]!.byteOffset, line.byteOffset + 4);
  assert.notEqual(args[2]!.buffer, line.buffer);
  assert.equal(args[2]!.toString(), 'quoted');
});
