import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { RespProtocolError, RespTooLargeError } from './errors.js';
import { ReplyReader, type ReplyHandler, type ReplyInfo } from './reply-reader.js';
import { chunkings, crlf, readReplies, unpooled, type DeliveredReply } from './test-support.js';

/** One reply of every type, as the server sends it, with the type of the reply proper. */
const replies: Array<[string, string]> = [
  ['+OK\n', '+'],
  ['-ERR unknown command\n', '-'],
  [':42\n', ':'],
  [':-7\n', ':'],
  ['$5\nhello\n', '$'],
  ['$0\n\n', '$'],
  ['$5\na\r\nb\n', '$'], // crlf() makes the payload a\r\r\nb: CRLF inside, never scanned
  ['$-1\n', '$'],
  ['*-1\n', '*'],
  ['*0\n', '*'],
  ['_\n', '_'],
  [',3.14\n', ','],
  [',-inf\n', ','],
  ['#t\n', '#'],
  ['#f\n', '#'],
  ['!21\nSYNTAX invalid syntax\n', '!'],
  ['=15\ntxt:Some string\n', '='],
  ['(3492890328409238509324850943850943825024385\n', '('],
  ['*3\n:1\n$3\nfoo\n*2\n+a\n_\n', '*'],
  ['%2\n+first\n:1\n+second\n:2\n', '%'],
  ['~2\n+orange\n+apple\n', '~'],
  ['>3\n$7\nmessage\n$2\nch\n$5\nhello\n', '>'],
];

/** A map of arrays of maps, an attribute inside an array, and an empty map. */
const nested = '%2\n$1\na\n*2\n%1\n+x\n:1\n%0\n$1\nb\n*3\n|1\n+ttl\n:10\n%1\n+y\n*1\n#t\n_\n,1.5\n';

/** The MGET example of the spec: an attribute before the reply it describes. */
const withAttribute = '|1\n+key-popularity\n%2\n$1\na\n,0.1923\n$1\nb\n,0.0012\n*2\n:2039123\n:9543892\n';

function delivered(raw: string, type: string): DeliveredReply {
  return {
    raw: crlf(raw).toString('latin1'),
    type,
    isError: type === '-' || type === '!',
    isPush: type === '>',
  };
}

describe('ReplyReader splitting', () => {
  const all: Array<[string, string]> = [...replies, [nested, '%'], [withAttribute, '*'], ['|0\n+OK\n', '+']];
  const expected = all.map(([raw, type]) => delivered(raw, type));

  test('every type: identical replies whole, byte by byte, and split at every position', () => {
    const stream = Buffer.concat(all.map(([raw]) => crlf(raw)));
    let runs = 0;
    for (const chunks of chunkings(stream)) {
      assert.deepEqual(readReplies(chunks), expected, `chunk sizes ${chunks.map((c) => c.length)}`);
      runs++;
    }
    assert.equal(runs, stream.length + 1);
  });

  test('nested RESP3 aggregates keep their boundaries under every pair of split positions', () => {
    const stream = Buffer.concat([crlf(nested), crlf(':1\n')]);
    for (const chunks of chunkings(stream, true)) {
      assert.deepEqual(readReplies(chunks), [delivered(nested, '%'), delivered(':1\n', ':')]);
    }
  });

  test('an attribute and the reply it precedes are one unit typed by the reply', () => {
    const stream = Buffer.concat([crlf(withAttribute), crlf('|1\n+a\n+b\n-ERR x\n')]);
    for (const chunks of chunkings(stream)) {
      const out = readReplies(chunks);
      assert.deepEqual(out, [delivered(withAttribute, '*'), delivered('|1\n+a\n+b\n-ERR x\n', '-')]);
      assert.equal(out[1]!.isError, true);
    }
  });

  test('a push between replies is flagged out of band', () => {
    const out = readReplies([crlf('+OK\n>2\n+invalidate\n*1\n$1\nk\n:1\n')]);
    assert.deepEqual(
      out.map((r) => [r.type, r.isPush]),
      [
        ['+', false],
        ['>', true],
        [':', false],
      ],
    );
  });

  test('a 100 kB bulk string is assembled from 1000-byte chunks', () => {
    const stream = Buffer.concat([crlf('$100000\n'), Buffer.alloc(100_000, 0x62), crlf('\n+OK\n')]);
    const chunks: Buffer[] = [];
    for (let at = 0; at < stream.length; at += 1000) chunks.push(stream.subarray(at, at + 1000));
    const out = readReplies(chunks);
    assert.equal(out.length, 2);
    assert.equal(out[0]!.raw.length, 100_000 + 11);
  });

  test('the ReplyInfo handed out is shared per type and frozen', () => {
    const infos: ReplyInfo[] = [];
    new ReplyReader().push(crlf('-ERR a\n-ERR b\n'), (_raw, info) => infos.push(info));
    assert.equal(infos.length, 2);
    assert.deepEqual(infos[0], { type: 0x2d, isError: true, isPush: false });
    assert.equal(infos[0], infos[1]);
    assert.ok(Object.isFrozen(infos[0]));
  });
});

describe('ReplyReader memory', () => {
  test('a reply inside one chunk is a subarray of that chunk (zero copy)', () => {
    const first = crlf('*2\n$3\nabc\n:1\n');
    const chunk = unpooled(Buffer.concat([first, crlf('+OK\n')]));
    const reader = new ReplyReader();
    const raws: Buffer[] = [];
    reader.push(chunk, (raw) => raws.push(raw));
    assert.equal(raws.length, 2);
    for (const raw of raws) assert.equal(raw.buffer, chunk.buffer);
    assert.equal(raws[1]!.byteOffset, chunk.byteOffset + first.length);
  });

  test('a reply spanning chunks is a joined copy; the next whole reply is zero copy again', () => {
    const first = crlf('%1\n+k\n$5\nvalue\n');
    const a = unpooled(first.subarray(0, 9));
    const b = unpooled(Buffer.concat([first.subarray(9), crlf(':5\n')]));
    const reader = new ReplyReader();
    const raws: Buffer[] = [];
    reader.push(a, (raw) => raws.push(raw));
    assert.equal(reader.bufferedBytes, 9);
    reader.push(b, (raw) => raws.push(raw));
    assert.deepEqual(raws[0], first);
    assert.notEqual(raws[0]!.buffer, a.buffer);
    assert.notEqual(raws[0]!.buffer, b.buffer);
    assert.equal(raws[1]!.buffer, b.buffer);
    assert.equal(reader.bufferedBytes, 0);
  });

  test('a deep but legal nesting needs no per-element allocation to delimit', () => {
    const depth = 100;
    const stream = Buffer.from('*1\r\n'.repeat(depth) + ':1\r\n');
    const out = readReplies([stream]);
    assert.equal(out.length, 1);
    assert.equal(out[0]!.raw.length, stream.length);
  });
});

describe('ReplyReader limits', () => {
  function feedUntilThrow(reader: ReplyReader, bytes: Buffer): { accepted: number; error: unknown } {
    for (let i = 0; i < bytes.length; i++) {
      try {
        reader.push(bytes.subarray(i, i + 1), () => assert.fail('no reply expected'));
      } catch (error) {
        return { accepted: i, error };
      }
    }
    return { accepted: bytes.length, error: undefined };
  }

  test('a bulk length of 2^40 is rejected as soon as its header line ends', () => {
    const header = crlf(`*2\n:1\n$${2 ** 40}\n`);
    const reader = new ReplyReader();
    const { accepted, error } = feedUntilThrow(reader, Buffer.concat([header, Buffer.alloc(8)]));
    assert.equal(accepted, header.length - 1);
    assert.ok(error instanceof RespTooLargeError);
    assert.equal(error.setting, 'maxBulkBytes');
    assert.equal(error.size, 2 ** 40);
    assert.match(error.message, /maxBulkBytes/);
    assert.throws(
      () => reader.push(crlf('+OK\n'), () => undefined),
      RespTooLargeError,
      'the reader stays failed',
    );
  });

  test('an array length of 2^31 is rejected as soon as its header line ends', () => {
    const header = crlf(`*${2 ** 31}\n`);
    const reader = new ReplyReader();
    const { accepted, error } = feedUntilThrow(reader, Buffer.concat([header, crlf(':1\n')]));
    assert.equal(accepted, header.length - 1);
    assert.ok(error instanceof RespTooLargeError);
    assert.equal(error.setting, 'maxArrayLength');
    assert.match(error.message, /maxArrayLength/);
  });

  test('a map counts two values per pair against maxArrayLength', () => {
    assert.equal(readReplies([crlf('%1\n:1\n:2\n')], { maxArrayLength: 2 }).length, 1);
    assert.throws(
      () => readReplies([crlf('%2\n')], { maxArrayLength: 3 }),
      (err: unknown) => err instanceof RespTooLargeError && err.size === 4,
    );
    assert.throws(() => readReplies([crlf(`%${2 ** 30}\n`)]), RespTooLargeError);
  });

  test('maxDepth, maxLineBytes and maxReplyBytes are enforced and inclusive', () => {
    const deep = crlf('*1\n*1\n:1\n');
    assert.equal(readReplies([deep], { maxDepth: 2 }).length, 1);
    assert.throws(
      () => readReplies([deep], { maxDepth: 1 }),
      (err: unknown) => err instanceof RespTooLargeError && err.setting === 'maxDepth',
    );
    assert.equal(readReplies([crlf('+12345\n')], { maxLineBytes: 5 }).length, 1);
    assert.throws(
      () => readReplies([crlf('+123456\n')], { maxLineBytes: 5 }),
      (err: unknown) => err instanceof RespTooLargeError && err.setting === 'maxLineBytes',
    );
    const reply = crlf('*2\n$3\nabc\n:1\n');
    assert.equal(readReplies([reply], { maxReplyBytes: reply.length }).length, 1);
    assert.throws(
      () => readReplies([reply], { maxReplyBytes: reply.length - 1 }),
      (err: unknown) => err instanceof RespTooLargeError && err.setting === 'maxReplyBytes',
    );
    const reader = new ReplyReader({ maxReplyBytes: 20 });
    reader.push(crlf('*1000\n:1\n:2\n:3\n'), () => assert.fail('no reply expected'));
    assert.throws(
      () => reader.push(crlf(':4\n'), () => assert.fail('no reply expected')),
      (err: unknown) => err instanceof RespTooLargeError && err.size === 23,
      'a long array of small values is stopped at the value that passes the limit',
    );
    assert.throws(
      () => readReplies([crlf('$100\n')], { maxReplyBytes: 50 }),
      (err: unknown) => err instanceof RespTooLargeError && err.size === 108,
      'a bulk string is counted when its header arrives',
    );
  });

  test('bad options are refused at construction', () => {
    assert.throws(() => new ReplyReader({ maxDepth: 0 }), RangeError);
    assert.throws(() => new ReplyReader({ maxLineBytes: Number.NaN }), /maxLineBytes/);
  });
});

describe('ReplyReader garbage', () => {
  const cases: Array<[string, Buffer, RegExp]> = [
    ['binary garbage', Buffer.from([0x00, 0xff, 0x0d, 0x0a]), /unknown reply type byte '\\x00'/],
    ['an unknown type in an array', crlf('*2\n:1\n@x\n'), /unknown reply type byte '@'/],
    ['a streamed string', crlf('$?\n;4\nHell\n;0\n'), /invalid bulk string length: unexpected '\?'/],
    ['a bad boolean', crlf('#x\n'), /expected 't' or 'f'/],
    ['a null with data', crlf('_x\n'), /expected CR, got 'x'/],
    ['a bad integer', crlf(':12a\n'), /invalid integer: unexpected 'a'/],
    ['a negative map length', crlf('%-1\n'), /invalid map length -1/],
    ['a null blob error', crlf('!-1\n'), /invalid blob error length -1/],
    ['a payload longer than announced', crlf('$3\nabcd\n'), /not followed by CRLF: got 'd'/],
    ['a bare LF in a line', Buffer.from('+OK\n+OK\r\n'), /LF without CR/],
    ['a CR not followed by LF', Buffer.from('+OK\rx'), /expected LF after CR/],
  ];
  for (const [name, bytes, message] of cases) {
    test(`${name} is a protocol error under every chunking`, () => {
      for (const chunks of chunkings(bytes, false)) {
        assert.throws(
          () => readReplies(chunks),
          (err: unknown) =>
            err instanceof RespProtocolError && err.code === 'RESP_PROTOCOL' && message.test(err.message),
        );
      }
    });
  }
});

describe('ReplyReader pause and resume', () => {
  const stream = crlf('+OK\n*2\n:1\n:2\n$3\nabc\n>2\n+a\n+b\n');
  const types = ['+', '*', '$', '>'];
  const firstLength = 5;

  test('pause inside the handler keeps the rest; resume delivers it to the last handler', () => {
    const reader = new ReplyReader();
    const seen: string[] = [];
    reader.push(stream.subarray(0, 12), (_raw, info) => {
      seen.push(String.fromCharCode(info.type));
      reader.pause();
    });
    assert.deepEqual(seen, ['+']);
    assert.equal(reader.bufferedBytes, 12 - firstLength);
    const later: string[] = [];
    reader.push(stream.subarray(12), (_raw, info) => later.push(String.fromCharCode(info.type)));
    assert.deepEqual(later, []);
    reader.resume();
    assert.deepEqual(later, types.slice(1));
    assert.equal(reader.bufferedBytes, 0);
  });

  test('pausing at every reply and resuming loses and repeats nothing', () => {
    for (const chunks of chunkings(stream, false)) {
      const reader = new ReplyReader();
      const seen: string[] = [];
      const onReply: ReplyHandler = (_raw, info) => {
        seen.push(String.fromCharCode(info.type));
        reader.pause();
      };
      for (const chunk of chunks) {
        reader.push(chunk, onReply);
        while (reader.paused) reader.resume();
      }
      assert.deepEqual(seen, types);
    }
  });

  test('a throwing handler loses no bytes', () => {
    const reader = new ReplyReader();
    const seen: string[] = [];
    assert.throws(
      () =>
        reader.push(stream, (_raw, info) => {
          seen.push(String.fromCharCode(info.type));
          if (seen.length === 2) throw new Error('handler failed');
        }),
      /handler failed/,
    );
    reader.push(Buffer.alloc(0), (_raw, info) => seen.push(String.fromCharCode(info.type)));
    assert.deepEqual(seen, types);
  });
});

test('nesting far deeper than a Lua script can return (about 8,000 levels) is read by default', () => {
  const levels = 100_000;
  const deep = Buffer.from('*1\r\n'.repeat(levels) + '$4\r\nleaf\r\n');
  const replies = readReplies([deep]);
  assert.equal(replies.length, 1);
  assert.equal(replies[0]!.raw.length, deep.length);
});
