/**
 * Splits a PostgreSQL byte stream into whole frames without decoding them, so the proxy can
 * route on the type byte and forward the very same bytes.
 *
 * Wire facts (https://www.postgresql.org/docs/current/protocol-overview.html#PROTOCOL-MESSAGE-CONCEPTS):
 * - a typed frame is `Byte1 type, Int32 length, body`, where length counts itself but not the type byte;
 * - the first frame a client sends (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest) has no
 *   type byte: `Int32 length, Int32 code, body`, length counting itself, so at least 8.
 */
import { FrameTooLargeError, MalformedFrameError, type ProtocolError } from './errors.js';

/** Receives one whole frame: `type` is the type byte (0 for startup-phase frames), `frame` includes the header. */
export type FrameHandler = (type: number, frame: Buffer) => void;

/** Options of a {@link FrameReader}. */
export interface FrameReaderOptions {
  /** Largest accepted value of a frame's Int32 length field; above it the stream is rejected. */
  maxFrameBytes: number;
  /** Start in the startup phase (frames without a type byte); default false. */
  startup?: boolean;
}

const EMPTY = Buffer.alloc(0);
/** Type byte + Int32 length. */
const TYPED_HEADER_BYTES = 5;
/** Int32 length only. */
const STARTUP_HEADER_BYTES = 4;
/** The length field counts itself. */
const MIN_TYPED_LENGTH = 4;
/** Length and the Int32 request code. */
const MIN_STARTUP_LENGTH = 8;
/** `partialTotal` while the header of the pending frame is itself incomplete. */
const HEADER_PENDING = -1;

/**
 * Frame splitter with one cursor over the current chunk. A frame that lies inside the chunk is
 * delivered as a subarray of it (zero copy); a frame that spans chunks is collected as a list of
 * pieces with a byte count and joined once when complete (the porsager/postgres approach), so
 * memory grows only with bytes actually received, never with a declared length.
 *
 * Chunks passed to {@link FrameReader.push} must not be mutated afterwards: delivered frames and
 * buffered data refer to them.
 */
export class FrameReader {
  /** True while the next frame is a startup-phase frame (no type byte). The handler may flip it between frames. */
  startup: boolean;

  private readonly maxFrameBytes: number;
  private onFrame: FrameHandler | null = null;

  /** Chunk being parsed and the cursor inside it. */
  private current: Buffer = EMPTY;
  private offset = 0;
  /** Chunks received while paused or while the handler was running (re-entrant push). */
  private readonly queue: Buffer[] = [];
  private queuedBytes = 0;

  /** Pending frame spanning chunks: pieces collected so far, their byte count, and the frame's total size. */
  private pieces: Buffer[] = [];
  private partialBytes = 0;
  private partialTotal = 0;
  private partialStartup = false;
  /** Copy of the header bytes while the header itself is split across chunks. */
  private partialHeader: Buffer = EMPTY;

  private isPaused = false;
  private draining = false;
  private failure: ProtocolError | null = null;

  constructor(opts: FrameReaderOptions) {
    if (!Number.isInteger(opts.maxFrameBytes) || opts.maxFrameBytes < MIN_STARTUP_LENGTH) {
      throw new RangeError(
        `maxFrameBytes must be an integer >= ${MIN_STARTUP_LENGTH}, got ${opts.maxFrameBytes}`,
      );
    }
    this.maxFrameBytes = opts.maxFrameBytes;
    this.startup = opts.startup ?? false;
  }

  /** True after {@link FrameReader.pause} until {@link FrameReader.resume}. */
  get paused(): boolean {
    return this.isPaused;
  }

  /** Bytes held by the reader: a partial frame, plus data not yet parsed because of a pause. */
  get bufferedBytes(): number {
    return this.partialBytes + (this.current.length - this.offset) + this.queuedBytes;
  }

  /**
   * Feeds a chunk and calls `onFrame` once per complete frame, in order. Throws
   * {@link FrameTooLargeError} as soon as a header declares a length above `maxFrameBytes`, and
   * {@link MalformedFrameError} for a length below the minimum; after either, every later call
   * throws the same error (the stream is desynchronised). If `onFrame` throws, the error
   * propagates and the unread bytes stay buffered for the next push or resume.
   */
  push(chunk: Buffer, onFrame: FrameHandler): void {
    if (this.failure) throw this.failure;
    this.onFrame = onFrame;
    if (this.offset < this.current.length || this.draining) {
      this.queue.push(chunk);
      this.queuedBytes += chunk.length;
    } else {
      this.current = chunk;
      this.offset = 0;
    }
    // Drains even for an empty chunk, so bytes left behind by a handler that threw get delivered.
    if (!this.isPaused && !this.draining) this.drain();
  }

  /** Stops delivering frames (may be called from inside the handler); data keeps being buffered. */
  pause(): void {
    this.isPaused = true;
  }

  /** Resumes delivery: buffered frames are delivered synchronously to the handler of the last push. */
  resume(): void {
    if (this.failure) throw this.failure;
    if (!this.isPaused) return;
    this.isPaused = false;
    // Called from inside the handler: the running drain loop simply carries on.
    if (!this.draining && this.onFrame) this.drain();
  }

  /** Parses until the data runs out or the handler pauses. */
  private drain(): void {
    this.draining = true;
    try {
      while (!this.isPaused) {
        if (this.offset >= this.current.length) {
          const next = this.queue.shift();
          if (next === undefined) {
            this.current = EMPTY; // drop the reference so the chunk can be collected
            this.offset = 0;
            break;
          }
          this.queuedBytes -= next.length;
          this.current = next;
          this.offset = 0;
        }
        if (this.partialBytes > 0) this.continuePartial();
        else this.readFrame();
      }
    } finally {
      this.draining = false;
    }
  }

  /** Reads one frame starting at the cursor, or starts a partial frame when the chunk ends first. */
  private readFrame(): void {
    const chunk = this.current;
    const start = this.offset;
    const available = chunk.length - start;
    const startup = this.startup;
    const headerBytes = startup ? STARTUP_HEADER_BYTES : TYPED_HEADER_BYTES;
    if (available < headerBytes) {
      this.partialHeader = Buffer.allocUnsafe(headerBytes);
      chunk.copy(this.partialHeader, 0, start);
      this.partialBytes = available;
      this.partialTotal = HEADER_PENDING;
      this.partialStartup = startup;
      this.offset = chunk.length;
      return;
    }
    const total = this.frameSize(chunk, start, startup);
    if (available >= total) {
      this.offset = start + total; // advance first: a throwing handler leaves the reader consistent
      this.deliver(startup ? 0 : chunk[start]!, chunk.subarray(start, start + total));
      return;
    }
    this.pieces.push(chunk.subarray(start));
    this.partialBytes = available;
    this.partialTotal = total;
    this.partialStartup = startup;
    this.offset = chunk.length;
  }

  /** Adds bytes of the current chunk to the pending frame; delivers it once complete. */
  private continuePartial(): void {
    const chunk = this.current;
    if (this.partialTotal === HEADER_PENDING && !this.completeHeader(chunk)) return;
    const take = Math.min(this.partialTotal - this.partialBytes, chunk.length - this.offset);
    if (take > 0) {
      this.pieces.push(chunk.subarray(this.offset, this.offset + take));
      this.offset += take;
      this.partialBytes += take;
    }
    if (this.partialBytes < this.partialTotal) return;
    const pieces = this.pieces;
    const frame = pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, this.partialTotal);
    this.pieces = [];
    this.partialBytes = 0;
    this.partialTotal = 0;
    this.partialHeader = EMPTY;
    this.deliver(this.partialStartup ? 0 : frame[0]!, frame);
  }

  /** Copies header bytes from `chunk` until the header is whole; returns false if the chunk ran out first. */
  private completeHeader(chunk: Buffer): boolean {
    const header = this.partialHeader;
    const take = Math.min(header.length - this.partialBytes, chunk.length - this.offset);
    chunk.copy(header, this.partialBytes, this.offset, this.offset + take);
    this.offset += take;
    this.partialBytes += take;
    if (this.partialBytes < header.length) return false;
    this.partialTotal = this.frameSize(header, 0, this.partialStartup);
    this.pieces.push(header);
    return true;
  }

  /** Validates the length field of the header at `at` and returns the whole frame's size in bytes. */
  private frameSize(buf: Buffer, at: number, startup: boolean): number {
    // Unsigned read: a hostile 0x80000000 must count as 2 GiB, not as a negative length.
    const length = buf.readUInt32BE(startup ? at : at + 1);
    if (length > this.maxFrameBytes) this.fail(new FrameTooLargeError(length, this.maxFrameBytes));
    if (startup) {
      if (length < MIN_STARTUP_LENGTH) {
        this.fail(new MalformedFrameError(`startup frame length ${length} is below the minimum of 8`));
      }
      return length;
    }
    if (length < MIN_TYPED_LENGTH) {
      const type = String.fromCharCode(buf[at]!);
      this.fail(new MalformedFrameError(`frame '${type}' declares length ${length}, below the minimum of 4`));
    }
    return length + 1;
  }

  private deliver(type: number, frame: Buffer): void {
    (this.onFrame as FrameHandler)(type, frame);
  }

  private fail(err: ProtocolError): never {
    this.failure = err;
    throw err;
  }
}
