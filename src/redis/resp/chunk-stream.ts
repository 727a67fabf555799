/**
 * Machinery shared by {@link CommandReader} and {@link ReplyReader}: a cursor over the current
 * chunk, a queue of chunks received while paused, collection of a unit (one command or one
 * reply) that spans chunks, and the incremental readers of the pieces every RESP unit is made
 * of: an integer line (`123\r\n` after a type byte) and a bulk payload (`n` bytes and CRLF).
 *
 * Every parser state survives a chunk boundary at any byte, so a unit is parsed exactly once
 * whatever the chunking, and memory grows only with bytes actually received, never with a
 * declared length. Internal to the codec: not exported from index.ts.
 */
import { RespProtocolError, describeByte, type RespError } from './errors.js';

/** Carriage return, the first byte of every RESP line terminator. */
export const CR = 0x0d;
/** Line feed. */
export const LF = 0x0a;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;
/** 2^63 has 19 digits: any RESP integer or length fits, and anything longer is garbage. */
const MAX_DIGITS = 19;
const EMPTY = Buffer.alloc(0);

/** Validates a limit option: a positive safe integer, or undefined for the default. Reads a positive integer option, or its default. */
export function limitOption(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a positive integer, got ${value}`);
  }
  return value;
}

const enum NumberPhase {
  Start,
  Signed,
  Digits,
  LineFeed,
}

const enum BulkPhase {
  Payload,
  CarriageReturn,
  LineFeed,
}

/**
 * Base class of the streaming readers. A subclass implements {@link ChunkStream.parse}, which
 * consumes bytes of `buf` from `pos` until it delivers one unit (and returns, so that a pause
 * requested by the handler takes effect between units) or runs out of bytes.
 *
 * A unit that lies inside one chunk is delivered as a subarray of it (zero copy); a unit that
 * spans chunks is kept as a list of pieces and joined once when complete.
 */
export abstract class ChunkStream {
  /** Chunk being parsed and the cursor inside it. */
  protected buf: Buffer = EMPTY;
  protected pos = 0;
  /** Value of the last line completed by {@link ChunkStream.readNumber}. */
  protected number = 0;

  /** Chunks received while paused or while a handler was running (re-entrant push). */
  private readonly queue: Buffer[] = [];
  private queuedBytes = 0;

  /** The unit being read: where it starts in `buf`, and its earlier pieces if it spans chunks. */
  private active = false;
  private unitStart = 0;
  private pieces: Buffer[] = [];
  private piecesBytes = 0;

  private numberPhase = NumberPhase.Start;
  private numberNegative = false;
  private numberDigits = 0;
  private numberValue = 0;

  private bulkPhase = BulkPhase.Payload;
  private bulkLeft = 0;

  private isPaused = false;
  private draining = false;
  private started = false;
  private failure: RespError | null = null;

  /** True after `pause()` until `resume()`. */
  get paused(): boolean {
    return this.isPaused;
  }

  /** Bytes held by the reader: a partial unit, plus data not yet parsed because of a pause. */
  get bufferedBytes(): number {
    const held = this.active ? this.unitStart : this.pos;
    return this.piecesBytes + (this.buf.length - held) + this.queuedBytes;
  }

  /** Stops delivering units (may be called from inside the handler); data keeps being buffered. */
  pause(): void {
    this.isPaused = true;
  }

  /** Resumes delivery: buffered units are delivered synchronously to the handler of the last push. */
  resume(): void {
    if (this.failure) throw this.failure;
    if (!this.isPaused) return;
    this.isPaused = false;
    // Called from inside the handler: the running drain loop simply carries on.
    if (!this.draining && this.started) this.drain();
  }

  /**
   * Consumes bytes of `buf` from `pos`: returns after delivering one unit, or when `buf` is
   * exhausted. Throws (through {@link ChunkStream.fail}) on bad input.
   */
  protected abstract parse(): void;

  /** Adds a chunk and parses what can be parsed; the subclass has stored its handler first. */
  protected feed(chunk: Buffer): void {
    if (this.failure) throw this.failure;
    this.started = true;
    if (this.pos < this.buf.length || this.draining) {
      this.queue.push(chunk);
      this.queuedBytes += chunk.length;
    } else {
      this.moveTo(chunk);
    }
    // Drains even for an empty chunk, so bytes left behind by a handler that threw get delivered.
    if (!this.isPaused && !this.draining) this.drain();
  }

  /** True while a unit has begun and is not yet complete. */
  protected get inUnit(): boolean {
    return this.active;
  }

  /** Marks `pos` as the first byte of a new unit. */
  protected beginUnit(): void {
    this.active = true;
    this.unitStart = this.pos;
  }

  /** Position of `buf[at]` counted from the first byte of the current unit. */
  protected unitOffset(at: number): number {
    return this.piecesBytes + at - this.unitStart;
  }

  /**
   * Ends the current unit just before `buf[end]` and returns its bytes: a subarray of `buf` if
   * it lies there entirely, else the pieces joined once. `pos` moves to `end`, so a handler that
   * throws afterwards leaves the reader consistent.
   */
  protected finishUnit(end: number): Buffer {
    let raw: Buffer;
    if (this.pieces.length === 0) {
      raw = this.buf.subarray(this.unitStart, end);
    } else {
      if (end > this.unitStart) this.pieces.push(this.buf.subarray(this.unitStart, end));
      const total = this.piecesBytes + end - this.unitStart;
      raw = this.pieces.length === 1 ? this.pieces[0]! : Buffer.concat(this.pieces, total);
      this.pieces = [];
      this.piecesBytes = 0;
    }
    this.active = false;
    this.pos = end;
    return raw;
  }

  /** Drops the current unit (consumed but not delivered: an empty inline line, `*0`). */
  protected discardUnit(end: number): void {
    this.pieces = [];
    this.piecesBytes = 0;
    this.active = false;
    this.pos = end;
  }

  /** Records the failure so that every later push or resume rethrows it, and throws it. */
  protected fail(err: RespError): never {
    this.failure = err;
    throw err;
  }

  /**
   * Reads the rest of an integer line (the type byte already consumed): optional sign, 1 to
   * 19 digits, CRLF. Returns true once the line is complete, its value in `number`; false when
   * `buf` ran out first. `what` names the field in error messages ("bulk length").
   */
  protected readNumber(what: string, allowPlus: boolean): boolean {
    const buf = this.buf;
    const end = buf.length;
    let p = this.pos;
    while (p < end) {
      const c = buf[p++]!;
      const phase = this.numberPhase;
      if (phase === NumberPhase.LineFeed) {
        if (c !== LF)
          this.fail(new RespProtocolError(`invalid ${what}: expected LF after CR, got ${describeByte(c)}`));
        this.pos = p;
        this.number = this.numberNegative ? -this.numberValue : this.numberValue;
        this.numberPhase = NumberPhase.Start;
        this.numberNegative = false;
        this.numberDigits = 0;
        this.numberValue = 0;
        return true;
      }
      if (c >= DIGIT_0 && c <= DIGIT_9) {
        if (++this.numberDigits > MAX_DIGITS) {
          this.fail(new RespProtocolError(`invalid ${what}: more than ${MAX_DIGITS} digits`));
        }
        this.numberValue = this.numberValue * 10 + (c - DIGIT_0);
        this.numberPhase = NumberPhase.Digits;
      } else if (c === CR && phase === NumberPhase.Digits) {
        this.numberPhase = NumberPhase.LineFeed;
      } else if (phase === NumberPhase.Start && (c === MINUS || (allowPlus && c === PLUS))) {
        this.numberNegative = c === MINUS;
        this.numberPhase = NumberPhase.Signed;
      } else {
        this.fail(new RespProtocolError(`invalid ${what}: unexpected ${describeByte(c)}`));
      }
    }
    this.pos = p;
    return false;
  }

  /** Prepares {@link ChunkStream.readBulk} for a payload of `length` bytes. */
  protected startBulk(length: number): void {
    this.bulkLeft = length;
    this.bulkPhase = BulkPhase.Payload;
  }

  /**
   * Skips the payload announced to {@link ChunkStream.startBulk} and checks the CRLF after it.
   * Returns true once both are consumed. The payload is never scanned: it may hold any byte.
   */
  protected readBulk(): boolean {
    const buf = this.buf;
    if (this.bulkPhase === BulkPhase.Payload) {
      const take = Math.min(this.bulkLeft, buf.length - this.pos);
      this.pos += take;
      this.bulkLeft -= take;
      if (this.bulkLeft > 0) return false;
      this.bulkPhase = BulkPhase.CarriageReturn;
    }
    while (this.pos < buf.length) {
      const c = buf[this.pos++]!;
      const expected = this.bulkPhase === BulkPhase.CarriageReturn ? CR : LF;
      if (c !== expected) {
        this.fail(new RespProtocolError(`bulk payload not followed by CRLF: got ${describeByte(c)}`));
      }
      if (this.bulkPhase === BulkPhase.LineFeed) return true;
      this.bulkPhase = BulkPhase.LineFeed;
    }
    return false;
  }

  /** Parses until the data runs out or the handler pauses. */
  private drain(): void {
    this.draining = true;
    try {
      while (!this.isPaused) {
        if (this.pos >= this.buf.length) {
          const next = this.queue.shift();
          if (next === undefined) {
            this.moveTo(EMPTY); // drop the reference so the chunk can be collected
            break;
          }
          this.queuedBytes -= next.length;
          this.moveTo(next);
        }
        this.parse();
      }
    } finally {
      this.draining = false;
    }
  }

  /** Leaves the exhausted `buf` for `next`, keeping the tail of a unit in progress as a piece. */
  private moveTo(next: Buffer): void {
    if (this.active) {
      if (this.unitStart < this.buf.length) {
        this.pieces.push(this.buf.subarray(this.unitStart));
        this.piecesBytes += this.buf.length - this.unitStart;
      }
      this.unitStart = 0;
    }
    this.buf = next;
    this.pos = 0;
  }
}
