/**
 * Splits the byte stream a Redis client sends into commands, for routing, while keeping each
 * command's exact bytes so it can be forwarded untouched.
 *
 * Wire facts (https://redis.io/docs/latest/develop/reference/protocol-spec/, and redis'
 * `processMultibulkBuffer` / `processInlineBuffer` in src/networking.c):
 * - a command is normally an array of bulk strings: `*<n>\r\n` then n times `$<len>\r\n<bytes>\r\n`;
 *   an `*` header of 0 or less is consumed and ignored by redis, and so it is here;
 * - any other first byte starts an inline command: one line ending in `\n` (a `\r` before it is
 *   dropped), split on spaces with quoting (see inline-args.ts); an empty line is skipped;
 * - redis refuses an inline line over 64 KiB and closes the connection.
 */
import { ChunkStream, CR, LF, limitOption } from './chunk-stream.js';
import { RespProtocolError, RespTooLargeError, describeByte } from './errors.js';
import { splitInlineArgs } from './inline-args.js';

/**
 * Receives one command: `args` are its arguments (the name first), `raw` its exact bytes. When
 * the command lies in one chunk both are subarrays of that chunk (zero copy); arguments of an
 * inline command that were quoted are fresh buffers.
 */
export type CommandHandler = (args: Buffer[], raw: Buffer) => void;

/**
 * One command as offsets into a buffer, for a reader of {@link CommandReader.read} that needs
 * only some of it (the routing hot path reads the name and the key in place, forwards the
 * bytes, and makes no Buffer per argument). Valid only during the handler's call: the same
 * object describes the next command.
 */
export interface CommandView {
  /** number of arguments, the name included */
  readonly argCount: number;
  /** the buffer the offsets below refer to (the chunk read, or the pieces of a command that spanned chunks, joined) */
  readonly bytes: Buffer;
  /** the command's exact bytes are `bytes[start, end)` */
  readonly start: number;
  readonly end: number;
  /** an inline command: its arguments may not be slices of `bytes` (quoting); use args() */
  readonly inline: boolean;
  /** where argument `i` starts and ends in `bytes` (multibulk commands only) */
  argStart(i: number): number;
  argEnd(i: number): number;
  /** the arguments as Buffers (subarrays of `bytes` for a multibulk command) */
  args(): Buffer[];
  /** the command's exact bytes */
  raw(): Buffer;
}

/** Receives one command as a {@link CommandView}. */
export type CommandViewHandler = (command: CommandView) => void;

/** Limits of a {@link CommandReader}; each is checked as soon as the header declaring it is read. */
export interface CommandReaderOptions {
  /** Largest bulk string (one argument), in bytes. Default 512 MiB, redis' `proto-max-bulk-len`. */
  maxBulkBytes?: number;
  /** Most arguments in one command. Default 1,048,576. */
  maxArrayLength?: number;
  /** Longest inline command line, in bytes before its `\n`. Default 64 KiB, redis' own limit. */
  maxInlineBytes?: number;
  /** Largest whole command, in bytes. Default 1 GiB, redis' `client-query-buffer-limit`. */
  maxCommandBytes?: number;
}

/** Defaults of {@link CommandReaderOptions}. */
export const COMMAND_READER_DEFAULTS: Readonly<Required<CommandReaderOptions>> = Object.freeze({
  maxBulkBytes: 512 * 1024 * 1024,
  maxArrayLength: 1_048_576,
  maxInlineBytes: 64 * 1024,
  maxCommandBytes: 1024 * 1024 * 1024,
});

const ASTERISK = 0x2a;
const DOLLAR = 0x24;
const NUL = 0x00;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;
/** Longer counts and lengths (a billion and more, or leading zeros) are left to the state machine. */
const MAX_FAST_DIGITS = 9;

const enum State {
  Start,
  ArrayLength,
  BulkType,
  BulkLength,
  BulkPayload,
  Inline,
}

/**
 * Streaming parser of client commands. Errors ({@link RespProtocolError},
 * {@link RespTooLargeError}) are thrown from `push`, and every later `push` or `resume` throws
 * the same error: the stream is desynchronised and the connection must be closed.
 *
 * Chunks passed to `push` must not be mutated afterwards: delivered commands refer to them.
 */
export class CommandReader extends ChunkStream implements CommandView {
  private readonly maxBulkBytes: number;
  private readonly maxArrayLength: number;
  private readonly maxInlineBytes: number;
  private readonly maxCommandBytes: number;

  private handler: CommandHandler | null = null;
  private viewHandler: CommandViewHandler | null = null;
  private state = State.Start;
  /** Bulk strings still to read in the current command. */
  private argsLeft = 0;
  /** Start and length of each argument read so far, as offsets in the command's bytes. */
  private argBounds: number[] = [];

  // The command being delivered (CommandView).
  argCount = 0;
  bytes: Buffer = Buffer.alloc(0);
  start = 0;
  end = 0;
  inline = false;
  private inlineArgs: Buffer[] | null = null;
  /** Bytes of the current inline line seen so far (before its `\n`). */
  private inlineBytes = 0;

  constructor(opts: CommandReaderOptions = {}) {
    super();
    const d = COMMAND_READER_DEFAULTS;
    this.maxBulkBytes = limitOption('maxBulkBytes', opts.maxBulkBytes, d.maxBulkBytes);
    this.maxArrayLength = limitOption('maxArrayLength', opts.maxArrayLength, d.maxArrayLength);
    this.maxInlineBytes = limitOption('maxInlineBytes', opts.maxInlineBytes, d.maxInlineBytes);
    this.maxCommandBytes = limitOption('maxCommandBytes', opts.maxCommandBytes, d.maxCommandBytes);
  }

  /**
   * Feeds a chunk and calls `onCommand` once per complete command, in order. If `onCommand`
   * throws, the error propagates and the unread bytes stay buffered for the next push or resume.
   */
  push(chunk: Buffer, onCommand: CommandHandler): void {
    this.handler = onCommand;
    this.viewHandler = null;
    this.feed(chunk);
  }

  /**
   * Like {@link CommandReader.push}, each command handed over as a {@link CommandView} (the
   * reader itself, describing the command only while `onCommand` runs).
   */
  read(chunk: Buffer, onCommand: CommandViewHandler): void {
    this.viewHandler = onCommand;
    this.handler = null;
    this.feed(chunk);
  }

  argStart(i: number): number {
    return this.start + this.argBounds[2 * i]!;
  }

  argEnd(i: number): number {
    return this.start + this.argBounds[2 * i]! + this.argBounds[2 * i + 1]!;
  }

  args(): Buffer[] {
    if (this.inlineArgs !== null) return this.inlineArgs;
    const args = new Array<Buffer>(this.argCount);
    for (let i = 0; i < args.length; i++) args[i] = this.bytes.subarray(this.argStart(i), this.argEnd(i));
    return args;
  }

  raw(): Buffer {
    const bytes = this.bytes;
    return this.start === 0 && this.end === bytes.length ? bytes : bytes.subarray(this.start, this.end);
  }

  protected parse(): void {
    while (this.pos < this.buf.length) {
      switch (this.state) {
        case State.Start:
          if (this.buf[this.pos] === ASTERISK && this.wholeMultibulk()) return;
          this.startCommand();
          break;
        case State.ArrayLength:
          if (!this.readNumber('multibulk length', false)) return;
          this.onArrayLength();
          break;
        case State.BulkType:
          this.readBulkType();
          break;
        case State.BulkLength:
          if (!this.readNumber('bulk length', false)) return;
          this.onBulkLength();
          break;
        case State.BulkPayload:
          if (!this.readBulk()) return;
          if (--this.argsLeft === 0) {
            this.deliverMultibulk();
            return;
          }
          this.state = State.BulkType;
          break;
        case State.Inline:
          if (this.readInline()) return;
          break;
      }
    }
  }

  /**
   * The common case in one pass: a well-formed multibulk command that lies entirely in the
   * chunk from `pos`, within every limit. Delivers it and returns true; returns false having
   * consumed nothing in any other case (incomplete, oversized, malformed, `*0`), and the state
   * machine below reads the command and reports what is wrong with it, as before.
   */
  private wholeMultibulk(): boolean {
    const buf = this.buf;
    const len = buf.length;
    const start = this.pos;
    let p = start + 1;
    let count = 0;
    let c = 0;
    let digits = 0;
    while (p < len && (c = buf[p]!) >= DIGIT_0 && c <= DIGIT_9) {
      count = count * 10 + (c - DIGIT_0);
      p++;
      if (++digits > MAX_FAST_DIGITS) return false;
    }
    if (digits === 0 || count === 0 || count > this.maxArrayLength) return false;
    if (p + 1 >= len || buf[p] !== CR || buf[p + 1] !== LF) return false;
    p += 2;
    const bounds = this.argBounds;
    bounds.length = 0;
    for (let i = 0; i < count; i++) {
      if (p >= len || buf[p] !== DOLLAR) return false;
      p++;
      let n = 0;
      digits = 0;
      while (p < len && (c = buf[p]!) >= DIGIT_0 && c <= DIGIT_9) {
        n = n * 10 + (c - DIGIT_0);
        p++;
        if (++digits > MAX_FAST_DIGITS) return false;
      }
      if (digits === 0 || n > this.maxBulkBytes) return false;
      if (p + 1 >= len || buf[p] !== CR || buf[p + 1] !== LF) return false;
      p += 2;
      const end = p + n;
      if (end + 2 > len || buf[end] !== CR || buf[end + 1] !== LF) return false;
      bounds.push(p - start, n);
      p = end + 2;
    }
    // The size only grows argument by argument: within the limit at the end, within it all along.
    if (p - start > this.maxCommandBytes) return false;
    this.pos = p;
    this.deliver(buf, start, p, count);
    return true;
  }

  /** Hands the command in `bytes[start, end)` (argument bounds in argBounds) to the handler. */
  private deliver(bytes: Buffer, start: number, end: number, count: number): void {
    this.bytes = bytes;
    this.start = start;
    this.end = end;
    this.argCount = count;
    this.inline = false;
    this.inlineArgs = null;
    if (this.viewHandler !== null) this.viewHandler(this);
    else (this.handler as CommandHandler)(this.args(), this.raw());
  }

  /** First byte of a command: `*` starts an array, anything else an inline line. */
  private startCommand(): void {
    this.beginUnit();
    if (this.buf[this.pos] === ASTERISK) {
      this.pos++;
      this.state = State.ArrayLength;
    } else {
      this.inlineBytes = 0;
      this.state = State.Inline;
    }
  }

  private onArrayLength(): void {
    const count = this.number;
    if (count <= 0) {
      this.discardUnit(this.pos);
      this.state = State.Start;
      return;
    }
    if (count > this.maxArrayLength) {
      this.fail(new RespTooLargeError('maxArrayLength', count, this.maxArrayLength, 'multibulk length'));
    }
    this.argsLeft = count;
    this.argBounds.length = 0;
    this.state = State.BulkType;
  }

  private readBulkType(): void {
    const c = this.buf[this.pos++]!;
    // Same wording as redis: "Protocol error: expected '$', got 'x'".
    if (c !== DOLLAR) this.fail(new RespProtocolError(`expected '$', got ${describeByte(c)}`));
    this.state = State.BulkLength;
  }

  private onBulkLength(): void {
    const length = this.number;
    if (length < 0) this.fail(new RespProtocolError(`invalid bulk length ${length}`));
    if (length > this.maxBulkBytes) {
      this.fail(new RespTooLargeError('maxBulkBytes', length, this.maxBulkBytes, 'bulk string length'));
    }
    const start = this.unitOffset(this.pos);
    const size = start + length + 2; // the command's size once this argument and its CRLF are in
    if (size > this.maxCommandBytes) {
      this.fail(new RespTooLargeError('maxCommandBytes', size, this.maxCommandBytes, 'command size'));
    }
    this.argBounds.push(start, length);
    this.startBulk(length);
    this.state = State.BulkPayload;
  }

  private deliverMultibulk(): void {
    this.state = State.Start;
    const raw = this.finishUnit(this.pos);
    this.deliver(raw, 0, raw.length, this.argBounds.length / 2);
  }

  /**
   * Scans the inline line for its `\n`; returns true if a command was delivered. NUL bytes are
   * refused at once: redis would silently cut the line there, so the proxy and the server could
   * disagree on the arguments, and binary garbage (a TLS ClientHello on a plaintext port) fails
   * fast instead of after 64 KiB.
   */
  private readInline(): boolean {
    const buf = this.buf;
    const start = this.pos;
    const newline = buf.indexOf(LF, start);
    const lineEnd = newline === -1 ? buf.length : newline;
    // Only bytes within the limit are checked for NUL, so that the error raised for a given
    // line is the same however the stream is cut into chunks.
    const budget = this.maxInlineBytes - this.inlineBytes;
    const nul = buf.subarray(start, Math.min(lineEnd, start + budget)).indexOf(NUL);
    if (nul !== -1) {
      this.fail(new RespProtocolError(`NUL byte in an inline command at offset ${this.inlineBytes + nul}`));
    }
    if (lineEnd - start > budget) {
      const seen = this.inlineBytes + lineEnd - start;
      this.fail(new RespTooLargeError('maxInlineBytes', seen, this.maxInlineBytes, 'inline command length'));
    }
    this.inlineBytes += lineEnd - start;
    if (newline === -1) {
      this.pos = buf.length;
      return false;
    }
    this.state = State.Start;
    const raw = this.finishUnit(newline + 1);
    const contentEnd = raw.length >= 2 && raw[raw.length - 2] === CR ? raw.length - 2 : raw.length - 1;
    const args = splitInlineArgs(raw.subarray(0, contentEnd));
    if (args === null) this.fail(new RespProtocolError('unbalanced quotes in inline command'));
    if (args.length === 0) return false; // an empty line: skipped, as redis does
    this.bytes = raw;
    this.start = 0;
    this.end = raw.length;
    this.argCount = args.length;
    this.inline = true;
    this.inlineArgs = args;
    if (this.viewHandler !== null) this.viewHandler(this);
    else (this.handler as CommandHandler)(args, raw);
    return true;
  }
}
