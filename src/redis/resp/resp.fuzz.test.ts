/**
 * Property-based tests of the RESP readers: whatever a client (command reader) or a server
 * (reply reader) sends, in whatever pieces, ends in whole messages or a RespError, never
 * another exception, and a reader never holds more than it was given. Huge declared lengths
 * are refused at their header; deep nesting is refused at the reply reader's maxDepth.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';

import { CommandReader } from './command-reader.js';
import { encodeCommand } from './encode.js';
import { RespError, RespTooLargeError } from './errors.js';
import { ReplyReader } from './reply-reader.js';

const RUNS = 300;

function split(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const p of points) {
    out.push(Buffer.from(bytes.subarray(from, p)));
    from = p;
  }
  out.push(Buffer.from(bytes.subarray(from)));
  return out;
}

/** Feeds `chunks`; returns the units delivered (raw bytes) and the RespError that ended the stream. */
function feed(
  reader: CommandReader | ReplyReader,
  chunks: Buffer[],
): { units: Buffer[]; error: RespError | null } {
  const units: Buffer[] = [];
  let given = 0;
  for (const chunk of chunks) {
    given += chunk.length;
    try {
      if (reader instanceof CommandReader) reader.push(chunk, (_args, raw) => units.push(Buffer.from(raw)));
      else reader.push(chunk, (raw) => units.push(Buffer.from(raw)));
    } catch (err) {
      assert.ok(err instanceof RespError, `not a RespError: ${String(err)}`);
      return { units, error: err };
    }
    const delivered = units.reduce((n, u) => n + u.length, 0);
    assert.ok(reader.bufferedBytes <= given - delivered, 'the reader holds more than it was given');
  }
  return { units, error: null };
}

const small = { maxBulkBytes: 4096, maxArrayLength: 64 };

const commandArb = fc
  .array(
    fc.uint8Array({ maxLength: 100 }).map((b) => Buffer.from(b)),
    { minLength: 1, maxLength: 8 },
  )
  .map((args) => encodeCommand(args));

test('commands in random pieces come out whole and in order', () => {
  fc.assert(
    fc.property(
      fc.array(commandArb, { maxLength: 20 }),
      fc.array(fc.nat(), { maxLength: 30 }),
      (cmds, cuts) => {
        const { units, error } = feed(new CommandReader(small), split(Buffer.concat(cmds), cuts));
        assert.equal(error, null);
        assert.deepEqual(units, cmds);
      },
    ),
    { numRuns: RUNS },
  );
});

/** Bytes that look like RESP often enough to reach deep states, random otherwise. */
const respish = fc
  .array(
    fc.oneof(
      fc.constantFrom(
        '*',
        '$',
        '+',
        '-',
        ':',
        '%',
        '~',
        '>',
        '|',
        '_',
        ',',
        '#',
        '(',
        '=',
        '!',
        '\r\n',
        '\r',
        '\n',
      ),
      fc.integer({ min: -3, max: 5000 }).map(String),
      fc.string({ maxLength: 10 }),
    ),
    { maxLength: 80 },
  )
  .map((parts) => Buffer.from(parts.join(''), 'latin1'));

const noise = fc.oneof(
  respish,
  fc.uint8Array({ maxLength: 1000 }).map((b) => Buffer.from(b)),
);

test('random bytes to the command reader end in commands or a RespError', () => {
  fc.assert(
    fc.property(noise, fc.array(fc.nat(), { maxLength: 20 }), (bytes, cuts) => {
      feed(new CommandReader(small), split(bytes, cuts));
    }),
    { numRuns: RUNS * 3 },
  );
});

test('random bytes to the reply reader end in replies or a RespError', () => {
  fc.assert(
    fc.property(noise, fc.array(fc.nat(), { maxLength: 20 }), (bytes, cuts) => {
      feed(new ReplyReader({ ...small, maxDepth: 16 }), split(bytes, cuts));
    }),
    { numRuns: RUNS * 3 },
  );
});

test('huge declared lengths are refused at their header', () => {
  fc.assert(
    fc.property(
      fc.constantFrom('*', '$'),
      fc.bigInt({ min: 4097n, max: 10n ** 30n }),
      fc.boolean(),
      (type, n, replies) => {
        const header = Buffer.from(type === '*' ? `*${n}\r\n` : `*1\r\n$${n}\r\n`);
        const { error } = replies
          ? feed(new ReplyReader({ ...small, maxArrayLength: 4096 }), [header])
          : feed(new CommandReader({ ...small, maxArrayLength: 4096 }), [header]);
        assert.ok(error instanceof RespError, `no error for ${header.toString().trim()}`);
        if (n < 2n ** 53n) assert.ok(error instanceof RespTooLargeError, error.message);
      },
    ),
    { numRuns: RUNS },
  );
});

test('deep nesting is refused by the reply reader; the command reader takes only flat arrays', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 17, max: 100_000 }),
      fc.constantFrom('*1\r\n', '%1\r\n', '~1\r\n', '>1\r\n'),
      (depth, open) => {
        const bytes = Buffer.from(open.repeat(depth) + ':1\r\n');
        const reply = feed(new ReplyReader({ maxDepth: 16 }), [bytes]);
        assert.ok(reply.error instanceof RespError);
        // Another type byte opens an inline command, a line of its own: parsed or refused, never an exception.
        const command = feed(new CommandReader(small), [bytes]);
        if (open === '*1\r\n') assert.ok(command.error instanceof RespError);
      },
    ),
    { numRuns: 50 },
  );
});
