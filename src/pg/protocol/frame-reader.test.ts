import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { FrameTooLargeError, MalformedFrameError } from './errors.js';
import { FrameReader, type FrameHandler } from './frame-reader.js';
import {
  chunkings,
  cstr,
  int16,
  int32,
  readAll,
  typedFrame,
  untypedFrame,
  type Delivered,
} from './test-support.js';

const MAX = 1 << 20;

/** A mixed backend-like sequence: empty bodies, short and long ones. */
const typedFrames: Buffer[] = [
  typedFrame('1'),
  typedFrame('2'),
  typedFrame('T', int16(1), cstr('id'), int32(0), int16(0), int32(23), int16(4), int32(-1), int16(0)),
  typedFrame('D', int16(1), int32(3), Buffer.from('abc')),
  typedFrame('C', cstr('SELECT 1')),
  typedFrame('Z', Buffer.from('I')),
];

const startupFrames: Buffer[] = [
  untypedFrame(int32(80877103)), // SSLRequest: stays in the startup phase
  untypedFrame(int32(196608), cstr('user'), cstr('alice'), cstr('database'), cstr('app'), Buffer.of(0)),
  typedFrame('p', cstr('secret')),
  typedFrame('Q', cstr('SELECT 1')),
  typedFrame('X'),
];

function expected(frames: Buffer[], startupCount = 0): Delivered[] {
  return frames.map((bytes, i) => ({ type: i < startupCount ? 0 : bytes[0]!, bytes }));
}

/** A copy in its own ArrayBuffer (Buffer.alloc never uses the shared pool), so `.buffer` identity means something. */
function unpooled(bytes: Buffer): Buffer {
  const own = Buffer.alloc(bytes.length);
  bytes.copy(own);
  return own;
}

function collector(): { frames: Delivered[]; onFrame: FrameHandler } {
  const frames: Delivered[] = [];
  return { frames, onFrame: (type, frame) => frames.push({ type, bytes: Buffer.from(frame) }) };
}

describe('FrameReader splitting', () => {
  test('typed frames: identical output whole, byte by byte, and split at every one or two positions', () => {
    const stream = Buffer.concat(typedFrames);
    let runs = 0;
    for (const chunks of chunkings(stream)) {
      assert.deepEqual(readAll(chunks), expected(typedFrames), `chunk sizes ${chunks.map((c) => c.length)}`);
      runs++;
    }
    assert.ok(runs > stream.length * 2, 'every split position was tried');
  });

  test('startup frames then typed frames: identical output under every split', () => {
    const stream = Buffer.concat(startupFrames);
    for (const chunks of chunkings(stream)) {
      assert.deepEqual(readAll(chunks, { startup: true }), expected(startupFrames, 2));
    }
  });

  test('a frame larger than any chunk is assembled from its pieces', () => {
    const big = typedFrame('d', Buffer.alloc(100_000, 7));
    const stream = Buffer.concat([typedFrame('c'), big, typedFrame('Z', Buffer.from('T'))]);
    const chunks: Buffer[] = [];
    for (let at = 0; at < stream.length; at += 1000) chunks.push(stream.subarray(at, at + 1000));
    const out = readAll(chunks);
    assert.equal(out.length, 3);
    assert.deepEqual(out[1]!.bytes, big);
  });

  test('the handler switches from startup to typed frames inside one chunk', () => {
    const reader = new FrameReader({ maxFrameBytes: MAX, startup: true });
    const seen: Array<[number, number]> = [];
    const chunk = Buffer.concat([startupFrames[1]!, typedFrame('Q', cstr('SELECT 1')), typedFrame('S')]);
    reader.push(chunk, (type, frame) => {
      seen.push([type, frame.length]);
      reader.startup = false;
    });
    assert.deepEqual(seen, [
      [0, startupFrames[1]!.length],
      [0x51, 14],
      [0x53, 5],
    ]);
  });

  test('an empty chunk delivers nothing and keeps nothing', () => {
    const { frames, onFrame } = collector();
    const reader = new FrameReader({ maxFrameBytes: MAX });
    reader.push(Buffer.alloc(0), onFrame);
    assert.equal(frames.length, 0);
    assert.equal(reader.bufferedBytes, 0);
  });
});

describe('FrameReader memory', () => {
  test('a frame wholly inside a chunk is a subarray of that chunk (zero copy)', () => {
    const chunk = unpooled(
      Buffer.concat([typedFrame('C', cstr('BEGIN')), typedFrame('Z', Buffer.from('T'))]),
    );
    const reader = new FrameReader({ maxFrameBytes: MAX });
    const frames: Buffer[] = [];
    reader.push(chunk, (_type, frame) => frames.push(frame));
    assert.equal(frames.length, 2);
    for (const frame of frames) assert.equal(frame.buffer, chunk.buffer);
    assert.equal(frames[1]!.byteOffset, chunk.byteOffset + frames[0]!.length);
  });

  test('a frame spanning chunks is a joined copy; the next whole frame is zero copy again', () => {
    const first = typedFrame('C', cstr('INSERT 0 1'));
    const second = typedFrame('Z', Buffer.from('I'));
    const a = unpooled(first.subarray(0, 7));
    const b = unpooled(Buffer.concat([first.subarray(7), second]));
    const reader = new FrameReader({ maxFrameBytes: MAX });
    const frames: Buffer[] = [];
    reader.push(a, (_type, frame) => frames.push(frame));
    assert.equal(reader.bufferedBytes, 7);
    reader.push(b, (_type, frame) => frames.push(frame));
    assert.deepEqual(frames, [first, second]);
    assert.notEqual(frames[0]!.buffer, a.buffer);
    assert.notEqual(frames[0]!.buffer, b.buffer);
    assert.equal(frames[1]!.buffer, b.buffer);
    assert.equal(reader.bufferedBytes, 0);
  });

  test('bufferedBytes counts a partial frame as it grows', () => {
    const frame = typedFrame('d', Buffer.alloc(50, 1));
    const reader = new FrameReader({ maxFrameBytes: MAX });
    const { frames, onFrame } = collector();
    reader.push(frame.subarray(0, 3), onFrame);
    assert.equal(reader.bufferedBytes, 3);
    reader.push(frame.subarray(3, 20), onFrame);
    assert.equal(reader.bufferedBytes, 20);
    reader.push(frame.subarray(20), onFrame);
    assert.equal(reader.bufferedBytes, 0);
    assert.deepEqual(frames, [{ type: 0x64, bytes: frame }]);
  });
});

describe('FrameReader pause and resume', () => {
  test('pause inside the handler keeps the rest buffered; resume delivers it in order', () => {
    const stream = Buffer.concat(typedFrames);
    const reader = new FrameReader({ maxFrameBytes: MAX });
    const seen: number[] = [];
    reader.push(stream.subarray(0, 20), (type) => {
      seen.push(type);
      if (seen.length === 1) reader.pause();
    });
    assert.deepEqual(seen, [0x31]);
    assert.equal(reader.paused, true);
    assert.equal(reader.bufferedBytes, 20 - typedFrames[0]!.length);

    const later: number[] = [];
    reader.push(stream.subarray(20), (type) => later.push(type));
    assert.deepEqual(later, [], 'nothing is delivered while paused');
    assert.equal(reader.bufferedBytes, stream.length - typedFrames[0]!.length);

    reader.resume();
    assert.equal(reader.paused, false);
    assert.deepEqual(
      later,
      typedFrames.slice(1).map((f) => f[0]),
      'resume delivers synchronously to the last handler',
    );
    assert.equal(reader.bufferedBytes, 0);
  });

  test('pausing again during resume stops again; frames are never lost or repeated', () => {
    const stream = Buffer.concat(typedFrames);
    const reader = new FrameReader({ maxFrameBytes: MAX });
    const seen: number[] = [];
    const onFrame: FrameHandler = (type) => {
      seen.push(type);
      reader.pause();
    };
    reader.push(stream, onFrame);
    let resumes = 0;
    while (reader.paused) {
      reader.resume();
      resumes++;
    }
    assert.deepEqual(
      seen,
      typedFrames.map((f) => f[0]),
    );
    assert.equal(resumes, typedFrames.length);
  });

  test('pause and resume inside the same handler call carries on', () => {
    const reader = new FrameReader({ maxFrameBytes: MAX });
    const seen: number[] = [];
    reader.push(Buffer.concat(typedFrames), (type) => {
      seen.push(type);
      reader.pause();
      reader.resume();
    });
    assert.equal(seen.length, typedFrames.length);
  });

  test('a push from inside the handler is queued behind the current chunk', () => {
    const reader = new FrameReader({ maxFrameBytes: MAX });
    const seen: number[] = [];
    const onFrame: FrameHandler = (type) => {
      seen.push(type);
      if (seen.length === 1) reader.push(typedFrame('X'), onFrame);
    };
    reader.push(Buffer.concat([typedFrame('Q', cstr('x')), typedFrame('S')]), onFrame);
    assert.deepEqual(seen, [0x51, 0x53, 0x58]);
  });

  test('a throwing handler loses no bytes: the next push delivers the rest', () => {
    const reader = new FrameReader({ maxFrameBytes: MAX });
    const seen: number[] = [];
    assert.throws(
      () =>
        reader.push(Buffer.concat(typedFrames.slice(0, 3)), (type) => {
          seen.push(type);
          if (seen.length === 1) throw new Error('handler failed');
        }),
      /handler failed/,
    );
    assert.equal(reader.bufferedBytes, typedFrames[1]!.length + typedFrames[2]!.length);
    reader.push(Buffer.alloc(0), (type) => seen.push(type));
    assert.deepEqual(
      seen,
      typedFrames.slice(0, 3).map((f) => f[0]),
    );
  });
});

describe('FrameReader limits', () => {
  test('a 2 GiB length is rejected after the 5 header bytes, before any body', () => {
    const header = Buffer.from([0x51, 0x80, 0, 0, 0]);
    const reader = new FrameReader({ maxFrameBytes: MAX });
    let calls = 0;
    for (let i = 0; i < 4; i++) reader.push(header.subarray(i, i + 1), () => calls++);
    assert.equal(reader.bufferedBytes, 4, 'only header bytes are held');
    assert.throws(
      () => reader.push(header.subarray(4), () => calls++),
      (err: unknown) => {
        assert.ok(err instanceof FrameTooLargeError);
        assert.equal(err.code, 'FRAME_TOO_LARGE');
        assert.equal(err.length, 2 ** 31);
        assert.equal(err.max, MAX);
        assert.match(err.message, /maxFrameBytes/);
        return true;
      },
    );
    assert.equal(calls, 0);
    assert.throws(
      () => reader.push(Buffer.from('S'), () => calls++),
      FrameTooLargeError,
      'the reader stays failed',
    );
  });

  test('a 2 GiB length in one chunk with its header only is rejected at once', () => {
    const reader = new FrameReader({ maxFrameBytes: MAX });
    assert.throws(() => reader.push(Buffer.from([0x44, 0x80, 0, 0, 0]), () => undefined), FrameTooLargeError);
  });

  test('a startup frame over the limit is rejected after its 4 length bytes', () => {
    const reader = new FrameReader({ maxFrameBytes: 1000, startup: true });
    assert.throws(() => reader.push(int32(1001), () => undefined), FrameTooLargeError);
  });

  test('the limit is inclusive: a length of exactly maxFrameBytes passes', () => {
    const frame = typedFrame('d', Buffer.alloc(96));
    assert.equal(readAll([frame], { maxFrameBytes: 100 }).length, 1);
    assert.throws(() => readAll([frame], { maxFrameBytes: 99 }), FrameTooLargeError);
  });

  test('a typed length below 4 is malformed', () => {
    for (const length of [0, 1, 3]) {
      const reader = new FrameReader({ maxFrameBytes: MAX });
      const header = Buffer.concat([Buffer.from('Q'), int32(length)]);
      assert.throws(
        () => reader.push(header, () => undefined),
        (err: unknown) => err instanceof MalformedFrameError && err.code === 'MALFORMED_FRAME',
      );
    }
  });

  test('a startup length below 8 is malformed', () => {
    const reader = new FrameReader({ maxFrameBytes: MAX, startup: true });
    assert.throws(
      () => reader.push(Buffer.concat([int32(7), Buffer.alloc(3)]), () => undefined),
      MalformedFrameError,
    );
  });

  test('a malformed header split across chunks is caught when it completes', () => {
    const reader = new FrameReader({ maxFrameBytes: MAX });
    reader.push(Buffer.from([0x51, 0, 0]), () => undefined);
    assert.throws(() => reader.push(Buffer.from([0, 2]), () => undefined), MalformedFrameError);
  });

  test('a bad maxFrameBytes is refused at construction', () => {
    assert.throws(() => new FrameReader({ maxFrameBytes: 0 }), RangeError);
    assert.throws(() => new FrameReader({ maxFrameBytes: 1.5 }), RangeError);
  });
});
