import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { CommandReader, type CommandHandler } from './command-reader.js';
import { RespProtocolError, RespTooLargeError } from './errors.js';
import { chunkings, crlf, readCommands, unpooled, type DeliveredCommand } from './test-support.js';

/** Commands as a client sends them, each with the arguments redis would see. */
const commands: Array<[string, string[]]> = [
  ['*1\n$4\nPING\n', ['PING']],
  ['*3\n$3\nSET\n$1\nk\n$6\na\r\nb\x00\n', ['SET', 'k', 'a\r\r\nb\x00']], // a payload holding CRLF
  ['*2\n$3\nGET\n$0\n\n', ['GET', '']],
  ['PING\n', ['PING']],
  ['SET  "a b"\t\'c d\'  \n', ['SET', 'a b', 'c d']],
  [`ECHO "\\x41\\n" 'it\\'s'\n`, ['ECHO', 'A\n', "it's"]],
  ['*3\n$4\nMGET\n$2\nk1\n$2\nk2\n', ['MGET', 'k1', 'k2']],
  ['*2\n$4\nECHO\n$3\n\xff\xfe\x00\n', ['ECHO', '\xff\xfe\x00']],
];

/** Bytes a client may send that redis consumes without running anything. */
const ignored = ['\n', '   \n', '*0\n', '*-1\n'];

function expected(list: Array<[string, string[]]>): DeliveredCommand[] {
  return list.map(([raw, args]) => ({ raw: crlf(raw).toString('latin1'), args }));
}

describe('CommandReader splitting', () => {
  test('identical commands whole, byte by byte, and split at every position', () => {
    const stream = Buffer.concat(commands.map(([raw]) => crlf(raw)));
    let runs = 0;
    for (const chunks of chunkings(stream)) {
      assert.deepEqual(
        readCommands(chunks),
        expected(commands),
        `chunk sizes ${chunks.map((c) => c.length)}`,
      );
      runs++;
    }
    assert.equal(runs, stream.length + 1, 'whole, byte by byte, and every split position were tried');
  });

  test('a short pipeline survives every pair of split positions', () => {
    const few = commands.slice(0, 4);
    const stream = Buffer.concat(few.map(([raw]) => crlf(raw)));
    for (const chunks of chunkings(stream, true)) assert.deepEqual(readCommands(chunks), expected(few));
  });

  test('empty lines, *0 and *-1 are consumed and never delivered', () => {
    const stream = Buffer.concat([...ignored.map(crlf), crlf(commands[0]![0]), ...ignored.map(crlf)]);
    for (const chunks of chunkings(stream)) {
      assert.deepEqual(readCommands(chunks), expected(commands.slice(0, 1)));
    }
  });

  test('an inline line may end in a bare LF, and its CR is not part of any argument', () => {
    const out = readCommands([Buffer.from('SET a b\nGET a\r\n')]);
    assert.deepEqual(
      out.map((c) => c.args),
      [
        ['SET', 'a', 'b'],
        ['GET', 'a'],
      ],
    );
    assert.deepEqual(
      out.map((c) => c.raw),
      ['SET a b\n', 'GET a\r\n'],
    );
  });

  test('a 100 kB argument is assembled from 1000-byte chunks', () => {
    const value = Buffer.alloc(100_000, 0x61);
    const stream = Buffer.concat([crlf('*3\n$3\nSET\n$1\nk\n$100000\n'), value, crlf('\n*1\n$4\nPING\n')]);
    const chunks: Buffer[] = [];
    for (let at = 0; at < stream.length; at += 1000) chunks.push(stream.subarray(at, at + 1000));
    const out = readCommands(chunks);
    assert.equal(out.length, 2);
    assert.equal(out[0]!.args[2], value.toString('latin1'));
    assert.deepEqual(out[1]!.args, ['PING']);
  });
});

describe('CommandReader views (read)', () => {
  test('every chunking: the view gives the same arguments and bytes as push, arguments in place', () => {
    const stream = Buffer.concat(commands.map(([raw]) => crlf(raw)));
    for (const chunks of chunkings(stream, false)) {
      const reader = new CommandReader();
      const seen: DeliveredCommand[] = [];
      for (const chunk of chunks) {
        reader.read(Buffer.from(chunk), (cmd) => {
          const args = cmd.args();
          assert.equal(args.length, cmd.argCount);
          if (!cmd.inline) {
            for (let i = 0; i < cmd.argCount; i++) {
              const inPlace = cmd.bytes.subarray(cmd.argStart(i), cmd.argEnd(i));
              assert.equal(inPlace.toString('latin1'), args[i]!.toString('latin1'));
            }
          }
          assert.equal(
            cmd.bytes.subarray(cmd.start, cmd.end).toString('latin1'),
            cmd.raw().toString('latin1'),
          );
          seen.push({ args: args.map((a) => a.toString('latin1')), raw: cmd.raw().toString('latin1') });
        });
      }
      assert.deepEqual(seen, expected(commands));
    }
  });

  test('a pipeline in one chunk: each view points into the chunk, no copy', () => {
    const chunk = unpooled(crlf('*2\n$3\nGET\n$1\na\n*3\n$3\nSET\n$1\nb\n$2\nxy\n'));
    const starts: number[] = [];
    new CommandReader().read(chunk, (cmd) => {
      assert.equal(cmd.bytes, chunk);
      starts.push(cmd.start, cmd.argStart(1));
    });
    assert.deepEqual(starts, [0, 17, 20, 37]);
  });
});

describe('CommandReader memory', () => {
  test('a command inside one chunk: raw and args are subarrays of that chunk', () => {
    const first = crlf('*2\n$3\nGET\n$3\nkey\n');
    const chunk = unpooled(Buffer.concat([first, crlf('DEL "x" y\n')]));
    const reader = new CommandReader();
    const seen: Array<{ args: Buffer[]; raw: Buffer }> = [];
    reader.push(chunk, (args, raw) => seen.push({ args, raw }));
    assert.equal(seen.length, 2);
    const [multibulk, inline] = seen;
    assert.equal(multibulk!.raw.buffer, chunk.buffer);
    assert.equal(multibulk!.raw.byteOffset, chunk.byteOffset);
    assert.equal(multibulk!.raw.length, first.length);
    for (const arg of multibulk!.args) assert.equal(arg.buffer, chunk.buffer);
    assert.equal(multibulk!.args[1]!.byteOffset, chunk.byteOffset + first.indexOf('key'));
    assert.equal(inline!.raw.buffer, chunk.buffer);
    assert.equal(inline!.args[0]!.buffer, chunk.buffer, 'an unquoted inline argument is zero copy');
    assert.notEqual(inline!.args[1]!.buffer, chunk.buffer, 'a quoted one is rebuilt');
    assert.deepEqual(inline!.args.map(String), ['DEL', 'x', 'y']);
  });

  test('a command spanning chunks is one joined copy; its args point into it', () => {
    const whole = crlf('*2\n$3\nGET\n$5\nhello\n');
    const second = crlf('*1\n$4\nPING\n');
    const a = unpooled(whole.subarray(0, 12));
    const b = unpooled(Buffer.concat([whole.subarray(12), second]));
    const reader = new CommandReader();
    const seen: Array<{ args: Buffer[]; raw: Buffer }> = [];
    reader.push(a, (args, raw) => seen.push({ args, raw }));
    assert.equal(seen.length, 0);
    assert.equal(reader.bufferedBytes, 12);
    reader.push(b, (args, raw) => seen.push({ args, raw }));
    assert.deepEqual(seen[0]!.raw, whole);
    assert.notEqual(seen[0]!.raw.buffer, a.buffer);
    assert.notEqual(seen[0]!.raw.buffer, b.buffer);
    assert.equal(seen[0]!.args[1]!.buffer, seen[0]!.raw.buffer);
    assert.equal(seen[0]!.args[1]!.toString(), 'hello');
    assert.equal(seen[1]!.raw.buffer, b.buffer, 'the next whole command is zero copy again');
    assert.equal(reader.bufferedBytes, 0);
  });

  test('bufferedBytes counts a partial command as it grows', () => {
    const whole = crlf('*1\n$10\n0123456789\n');
    const reader = new CommandReader();
    const out: Buffer[][] = [];
    reader.push(whole.subarray(0, 3), (args) => out.push(args));
    assert.equal(reader.bufferedBytes, 3);
    reader.push(whole.subarray(3, 14), (args) => out.push(args));
    assert.equal(reader.bufferedBytes, 14);
    reader.push(whole.subarray(14), (args) => out.push(args));
    assert.equal(reader.bufferedBytes, 0);
    assert.equal(out.length, 1);
  });
});

describe('CommandReader limits', () => {
  /** Pushes bytes one at a time; returns how many were accepted before a throw, and the error. */
  function feedUntilThrow(reader: CommandReader, bytes: Buffer): { accepted: number; error: unknown } {
    for (let i = 0; i < bytes.length; i++) {
      try {
        reader.push(bytes.subarray(i, i + 1), () => assert.fail('no command expected'));
      } catch (error) {
        return { accepted: i, error };
      }
    }
    return { accepted: bytes.length, error: undefined };
  }

  test('a bulk length of 2^40 is rejected as soon as its header line ends', () => {
    const header = crlf(`*2\n$3\nSET\n$${2 ** 40}\n`);
    const reader = new CommandReader();
    const { accepted, error } = feedUntilThrow(reader, Buffer.concat([header, Buffer.alloc(10)]));
    assert.equal(accepted, header.length - 1, 'thrown by the LF of the header, not later');
    assert.ok(error instanceof RespTooLargeError);
    assert.equal(error.code, 'RESP_TOO_LARGE');
    assert.equal(error.size, 2 ** 40);
    assert.equal(error.max, 512 * 1024 * 1024);
    assert.equal(error.setting, 'maxBulkBytes');
    assert.match(error.message, /maxBulkBytes/);
    assert.ok(reader.bufferedBytes <= header.length, 'nothing beyond the header was buffered');
    assert.throws(
      () => reader.push(crlf('PING\n'), () => undefined),
      RespTooLargeError,
      'the reader stays failed',
    );
    assert.throws(() => reader.resume(), RespTooLargeError);
  });

  test('an array length of 2^31 is rejected as soon as its header line ends', () => {
    const header = crlf(`*${2 ** 31}\n`);
    const reader = new CommandReader();
    const { accepted, error } = feedUntilThrow(reader, Buffer.concat([header, crlf('$3\nGET\n')]));
    assert.equal(accepted, header.length - 1);
    assert.ok(error instanceof RespTooLargeError);
    assert.equal(error.setting, 'maxArrayLength');
    assert.equal(error.size, 2 ** 31);
    assert.match(error.message, /maxArrayLength/);
  });

  test('limits are inclusive', () => {
    const cmd = crlf('*2\n$3\nGET\n$4\nabcd\n');
    assert.equal(readCommands([cmd], { maxBulkBytes: 4, maxArrayLength: 2 }).length, 1);
    assert.throws(() => readCommands([cmd], { maxBulkBytes: 3 }), RespTooLargeError);
    assert.throws(() => readCommands([cmd], { maxArrayLength: 1 }), RespTooLargeError);
    assert.equal(readCommands([cmd], { maxCommandBytes: cmd.length }).length, 1);
    assert.throws(
      () => readCommands([cmd], { maxCommandBytes: cmd.length - 1 }),
      (err: unknown) => err instanceof RespTooLargeError && err.setting === 'maxCommandBytes',
    );
    assert.equal(readCommands([Buffer.from('PING 12\r\n')], { maxInlineBytes: 8 }).length, 1);
    assert.throws(
      () => readCommands([Buffer.from('PING 123\r\n')], { maxInlineBytes: 8 }),
      RespTooLargeError,
    );
  });

  test('a line without LF longer than the inline limit is rejected, however it arrives', () => {
    const line = Buffer.alloc(64 * 1024 + 1, 0x61);
    for (const chunks of [[line], [line.subarray(0, 1000), line.subarray(1000)]]) {
      const reader = new CommandReader();
      assert.throws(
        () => chunks.forEach((c) => reader.push(c, () => assert.fail('no command expected'))),
        (err: unknown) => err instanceof RespTooLargeError && err.setting === 'maxInlineBytes',
      );
    }
    const reader = new CommandReader();
    reader.push(line.subarray(0, 64 * 1024), () => undefined);
    assert.equal(reader.bufferedBytes, 64 * 1024, 'exactly the limit is still accepted');
  });

  test('every chunking of an over-long line reports the same kind of error', () => {
    const stream = Buffer.from('SET aaaaaaaaaaaaaaaa\r\n');
    for (const chunks of chunkings(stream)) {
      assert.throws(
        () => readCommands(chunks, { maxInlineBytes: 10 }),
        (err: unknown) => err instanceof RespTooLargeError && err.setting === 'maxInlineBytes',
      );
    }
  });

  test('bad options are refused at construction', () => {
    assert.throws(() => new CommandReader({ maxBulkBytes: 0 }), RangeError);
    assert.throws(() => new CommandReader({ maxArrayLength: 1.5 }), RangeError);
    assert.throws(() => new CommandReader({ maxInlineBytes: -1 }), /maxInlineBytes/);
  });
});

describe('CommandReader garbage', () => {
  const cases: Array<[string, Buffer, RegExp]> = [
    ['binary garbage', Buffer.from([0x00, 0xff, 0xfe, 0x01, 0x02]), /NUL byte/],
    ['a TLS ClientHello', Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]), /NUL byte/],
    ['a NUL inside an inline line', Buffer.from('GET a\x00b\r\n', 'latin1'), /NUL byte/],
    ['an element that is not a bulk string', crlf('*1\n:1\n'), /expected '\$', got ':'/],
    ['a letter in a multibulk length', crlf('*1x\n'), /invalid multibulk length/],
    ['an empty multibulk length', crlf('*\n'), /invalid multibulk length/],
    ['a negative bulk length', crlf('*1\n$-1\n'), /invalid bulk length -1/],
    ['a bulk length of 20 digits', crlf('*1\n$10000000000000000000\n'), /more than 19 digits/],
    ['a CR not followed by LF', crlf('*1\r$4\nPING\n'), /expected LF after CR/],
    ['a payload longer than announced', crlf('*1\n$3\nPING\n'), /not followed by CRLF: got 'G'/],
    ['unbalanced double quotes', crlf('SET "a b\n'), /unbalanced quotes/],
    ['a closing quote followed by a letter', crlf("SET 'a'b c\n"), /unbalanced quotes/],
  ];
  for (const [name, bytes, message] of cases) {
    test(`${name} is a protocol error under every chunking`, () => {
      for (const chunks of chunkings(bytes, false)) {
        assert.throws(
          () => readCommands(chunks),
          (err: unknown) =>
            err instanceof RespProtocolError && err.code === 'RESP_PROTOCOL' && message.test(err.message),
        );
      }
    });
  }

  test('commands before the garbage are delivered, none after', () => {
    const reader = new CommandReader();
    const seen: string[] = [];
    assert.throws(
      () => reader.push(crlf('PING\n*1\n+x\nPING\n'), (args) => seen.push(args.join(' '))),
      RespProtocolError,
    );
    assert.deepEqual(seen, ['PING']);
    assert.throws(() => reader.push(crlf('PING\n'), (args) => seen.push(args.join(' '))), RespProtocolError);
    assert.deepEqual(seen, ['PING']);
  });
});

describe('CommandReader pause and resume', () => {
  const stream = crlf('*1\n$4\nPING\nGET a\n*2\n$3\nDEL\n$1\nb\nECHO x\n');
  const names = ['PING', 'GET', 'DEL', 'ECHO'];

  test('pause inside the handler keeps the rest; resume delivers it in order to the last handler', () => {
    const reader = new CommandReader();
    const seen: string[] = [];
    reader.push(stream.subarray(0, 20), (args) => {
      seen.push(args[0]!.toString());
      reader.pause();
    });
    assert.deepEqual(seen, ['PING']);
    assert.equal(reader.paused, true);
    assert.equal(reader.bufferedBytes, 20 - 14);
    const later: string[] = [];
    reader.push(stream.subarray(20), (args) => later.push(args[0]!.toString()));
    assert.deepEqual(later, [], 'nothing is delivered while paused');
    assert.equal(reader.bufferedBytes, stream.length - 14);
    reader.resume();
    assert.equal(reader.paused, false);
    assert.deepEqual(later, names.slice(1));
    assert.equal(reader.bufferedBytes, 0);
  });

  test('pausing at every command and resuming loses and repeats nothing', () => {
    for (const chunks of chunkings(stream, false)) {
      const reader = new CommandReader();
      const seen: string[] = [];
      const onCommand: CommandHandler = (args) => {
        seen.push(args[0]!.toString());
        reader.pause();
      };
      for (const chunk of chunks) {
        reader.push(chunk, onCommand);
        while (reader.paused) reader.resume();
      }
      assert.deepEqual(seen, names);
    }
  });

  test('a push from inside the handler is queued behind the current chunk', () => {
    const reader = new CommandReader();
    const seen: string[] = [];
    const onCommand: CommandHandler = (args) => {
      seen.push(args[0]!.toString());
      if (seen.length === 1) reader.push(crlf('QUIT\n'), onCommand);
    };
    reader.push(crlf('PING\nECHO\n'), onCommand);
    assert.deepEqual(seen, ['PING', 'ECHO', 'QUIT']);
  });

  test('a throwing handler loses no bytes: the next push delivers the rest', () => {
    const reader = new CommandReader();
    const seen: string[] = [];
    assert.throws(
      () =>
        reader.push(stream, (args) => {
          seen.push(args[0]!.toString());
          if (seen.length === 1) throw new Error('handler failed');
        }),
      /handler failed/,
    );
    assert.equal(reader.bufferedBytes, stream.length - 14);
    reader.push(Buffer.alloc(0), (args) => seen.push(args[0]!.toString()));
    assert.deepEqual(seen, names);
  });
});
