/**
 * Property-based tests of the frame reader and startup-packet decoding: whatever a client
 * sends, in whatever pieces, ends in whole frames or a ProtocolError, never another exception,
 * and the reader never holds more than it was given.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';

import { decodeStartupPacket } from './decode.js';
import { FrameTooLargeError, MalformedFrameError, ProtocolError } from './errors.js';
import { FrameReader } from './frame-reader.js';
import { cstr, int32, typedFrame, untypedFrame } from './test-support.js';

const MAX = 64 * 1024;
/** enough runs to find a bad split, few enough to stay within a few seconds */
const RUNS = 300;

/** `bytes` cut at the given (sorted, deduplicated) positions. */
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

/**
 * Feeds `chunks`; returns the frames delivered and the error that ended the stream (a
 * ProtocolError; anything else fails the test). Checks after each chunk that the reader holds
 * no more than it was given.
 */
function feed(chunks: Buffer[], startup: boolean): { frames: Buffer[]; error: ProtocolError | null } {
  const reader = new FrameReader({ maxFrameBytes: MAX, startup });
  const frames: Buffer[] = [];
  let given = 0;
  for (const chunk of chunks) {
    given += chunk.length;
    try {
      reader.push(chunk, (_type, frame) => frames.push(Buffer.from(frame)));
    } catch (err) {
      assert.ok(err instanceof ProtocolError, `not a ProtocolError: ${String(err)}`);
      return { frames, error: err };
    }
    const delivered = frames.reduce((n, f) => n + f.length, 0);
    assert.ok(reader.bufferedBytes <= given - delivered, 'the reader holds more than it was given');
  }
  return { frames, error: null };
}

const typedFrameArb = fc
  .tuple(fc.constantFrom(...'QPBEDSCHXpdcf'.split('')), fc.uint8Array({ maxLength: 300 }))
  .map(([type, body]) => typedFrame(type, Buffer.from(body)));

test('valid typed frames in random pieces come out whole and in order', () => {
  fc.assert(
    fc.property(
      fc.array(typedFrameArb, { maxLength: 20 }),
      fc.array(fc.nat(), { maxLength: 30 }),
      (fs, cuts) => {
        const stream = Buffer.concat(fs);
        const { frames, error } = feed(split(stream, cuts), false);
        assert.equal(error, null);
        assert.deepEqual(frames, fs);
      },
    ),
    { numRuns: RUNS },
  );
});

test('random bytes in random pieces end in frames or a ProtocolError (both phases)', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 2000 }),
      fc.array(fc.nat(), { maxLength: 20 }),
      fc.boolean(),
      (bytes, cuts, startup) => {
        const { frames } = feed(split(Buffer.from(bytes), cuts), startup);
        assert.ok(frames.reduce((n, f) => n + f.length, 0) <= bytes.length);
      },
    ),
    { numRuns: RUNS * 3 },
  );
});

test('a huge (or negative) declared length is refused at its header, before any body arrives', () => {
  fc.assert(
    fc.property(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), fc.boolean(), (length, startup) => {
      const header = startup ? int32(length) : Buffer.concat([Buffer.from('Q'), int32(length)]);
      const { error } = feed([header], startup);
      const min = startup ? 8 : 4;
      const declared = length >>> 0; // the field is read unsigned: a negative one is huge
      if (declared > MAX) assert.ok(error instanceof FrameTooLargeError);
      else if (declared < min) assert.ok(error instanceof MalformedFrameError);
      else assert.equal(error, null); // a plausible length: waits for the body
    }),
    { numRuns: RUNS },
  );
});

test('startup packets: random bodies decode or raise a ProtocolError', () => {
  const known = fc.constantFrom(196608, 80877103, 80877104, 80877102, 131072, 0);
  fc.assert(
    fc.property(
      fc.oneof(known, fc.nat()),
      fc.oneof(
        fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
        fc
          .array(fc.tuple(fc.string({ maxLength: 20 }), fc.string({ maxLength: 20 })), { maxLength: 6 })
          .map((kv) => Buffer.concat([...kv.flatMap(([k, v]) => [cstr(k), cstr(v)]), Buffer.of(0)])),
      ),
      (code, body) => {
        const frame = untypedFrame(int32(code), body);
        try {
          const packet = decodeStartupPacket(frame);
          assert.ok(['startup', 'ssl', 'gssenc', 'cancel'].includes(packet.kind));
        } catch (err) {
          assert.ok(err instanceof ProtocolError, `not a ProtocolError: ${String(err)}`);
        }
      },
    ),
    { numRuns: RUNS * 3 },
  );
});
