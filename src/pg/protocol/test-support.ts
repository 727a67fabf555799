/**
 * Test-only helpers for the codec tests: hand-built frames (independent of encode.ts) and the
 * ways of cutting a byte stream into chunks that every codec test must survive. Not exported
 * from index.ts.
 */
import { FrameReader } from './frame-reader.js';

/** Int32 big-endian. */
export function int32(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(value);
  return b;
}

/** Int16 big-endian. */
export function int16(value: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeInt16BE(value);
  return b;
}

/** NUL-terminated UTF-8 string. */
export function cstr(value: string): Buffer {
  return Buffer.concat([Buffer.from(value, 'utf8'), Buffer.of(0)]);
}

/** A typed frame built by hand: type byte, Int32 length (counting itself), body. */
export function typedFrame(type: string, ...body: Buffer[]): Buffer {
  const payload = Buffer.concat(body);
  return Buffer.concat([Buffer.from(type, 'latin1'), int32(payload.length + 4), payload]);
}

/** A startup-phase frame built by hand: Int32 length (counting itself), body. */
export function untypedFrame(...body: Buffer[]): Buffer {
  const payload = Buffer.concat(body);
  return Buffer.concat([int32(payload.length + 4), payload]);
}

/** One delivered frame, copied so later chunk reuse cannot alter it. */
export interface Delivered {
  type: number;
  bytes: Buffer;
}

/** Every way the tests cut a stream: whole, byte by byte, at each position, and at each pair of positions. */
export function* chunkings(stream: Buffer, pairs = stream.length <= 200): Generator<Buffer[]> {
  yield [stream];
  const bytes: Buffer[] = [];
  for (let i = 0; i < stream.length; i++) bytes.push(stream.subarray(i, i + 1));
  yield bytes;
  for (let i = 1; i < stream.length; i++) yield [stream.subarray(0, i), stream.subarray(i)];
  if (!pairs) return;
  for (let i = 1; i < stream.length; i++) {
    for (let j = i + 1; j < stream.length; j++) {
      yield [stream.subarray(0, i), stream.subarray(i, j), stream.subarray(j)];
    }
  }
}

/**
 * Feeds `chunks` to a fresh reader and returns the frames delivered. `switchAfterStartup`
 * leaves the startup phase after the first startup frame, as the proxy does after StartupMessage.
 * Chunks are copied into fresh buffers first, so no test passes by sharing memory with `stream`.
 */
export function readAll(
  chunks: Buffer[],
  opts: { startup?: boolean; maxFrameBytes?: number } = {},
): Delivered[] {
  const reader = new FrameReader({
    maxFrameBytes: opts.maxFrameBytes ?? 1 << 20,
    startup: opts.startup ?? false,
  });
  const out: Delivered[] = [];
  const onFrame = (type: number, frame: Buffer): void => {
    out.push({ type, bytes: Buffer.from(frame) });
    if (type === 0 && frame.length > 8) reader.startup = false; // a StartupMessage, not SSLRequest
  };
  for (const chunk of chunks) reader.push(Buffer.from(chunk), onFrame);
  if (reader.bufferedBytes !== 0)
    throw new Error(`reader kept ${reader.bufferedBytes} bytes after the stream`);
  return out;
}
