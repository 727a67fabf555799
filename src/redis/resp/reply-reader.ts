/**
 * Splits the byte stream a Redis server sends into whole replies without decoding them, so the
 * proxy can forward each reply's exact bytes and tell errors and out-of-band pushes apart.
 *
 * Wire facts (https://redis.io/docs/latest/develop/reference/protocol-spec/):
 * - line types end at CRLF: `+` simple string, `-` error, `:` integer, `_` null, `,` double,
 *   `#` boolean (`t`/`f`), `(` big number;
 * - bulk types carry `<len>\r\n<bytes>\r\n`: `$` bulk string (`$-1` is the RESP2 null), `!` blob
 *   error, `=` verbatim string;
 * - aggregates announce a count of values: `*` array (`*-1` is the RESP2 null array), `~` set,
 *   `>` push; `%` map and `|` attribute announce pairs, so twice as many values;
 * - an attribute is not a value of its own: it precedes the value it describes, at the top level
 *   or inside an aggregate (where it does not count as an element).
 * Streamed strings and aggregates (`$?`, `*?`) are never sent by redis and are refused.
 */
import { ChunkStream, CR, LF, limitOption } from './chunk-stream.js';
import { RespProtocolError, RespTooLargeError, describeByte } from './errors.js';
import { RespType } from './resp-types.js';

/** What the proxy needs to know about a reply without decoding it. */
export interface ReplyInfo {
  /** Type byte of the reply proper: after any attributes, so `raw[0]` may differ (`|`). */
  readonly type: number;
  /** `-` or `!`. */
  readonly isError: boolean;
  /** `>`: out of band (pub/sub message, invalidation), not the answer to a command. */
  readonly isPush: boolean;
}

/**
 * Receives one whole reply (attributes included): a subarray of the chunk when the reply lies
 * in one chunk (zero copy), else a joined copy. `info` is a shared frozen object per type.
 */
export type ReplyHandler = (raw: Buffer, info: ReplyInfo) => void;

/** Limits of a {@link ReplyReader}; each is checked as soon as the header declaring it is read. */
export interface ReplyReaderOptions {
  /** Largest bulk string, blob error or verbatim string, in bytes. Default 512 MiB. */
  maxBulkBytes?: number;
  /** Most values in one aggregate (a map or attribute of n pairs has 2n). Default 2^31 - 1. */
  maxArrayLength?: number;
  /** Longest line (simple string, error, double, big number), in bytes. Default 1 MiB. */
  maxLineBytes?: number;
  /**
   * Deepest nesting of aggregates. Default 2^20: nesting costs one number per level here (no
   * recursion), and a Lua script's reply may nest about 8,000 levels (Redis 7's Lua stack).
   */
  maxDepth?: number;
  /** Largest whole reply, in bytes. Default 1 GiB. */
  maxReplyBytes?: number;
}

/** Defaults of {@link ReplyReaderOptions}. */
export const REPLY_READER_DEFAULTS: Readonly<Required<ReplyReaderOptions>> = Object.freeze({
  maxBulkBytes: 512 * 1024 * 1024,
  maxArrayLength: 2 ** 31 - 1,
  maxLineBytes: 1024 * 1024,
  maxDepth: 2 ** 20,
  maxReplyBytes: 1024 * 1024 * 1024,
});

const LOWER_T = 0x74;
const LOWER_F = 0x66;

const enum State {
  Type,
  Length,
  Integer,
  Text,
  Fixed,
  Bulk,
}

/** Position inside a fixed-shape line: `#t\r\n`, `#f\r\n`, `_\r\n`. */
const enum FixedPhase {
  Value,
  CarriageReturn,
  LineFeed,
}

const INFOS: ReplyInfo[] = [];
for (const type of '+-:$*_,#!=(%~>|') {
  const code = type.charCodeAt(0);
  INFOS[code] = Object.freeze({
    type: code,
    isError: code === RespType.SimpleError || code === RespType.BlobError,
    isPush: code === RespType.Push,
  });
}

/** Name of the length field of an aggregate or bulk type, for error messages. */
function lengthName(type: number): string {
  switch (type) {
    case RespType.BulkString:
      return 'bulk string length';
    case RespType.BlobError:
      return 'blob error length';
    case RespType.Verbatim:
      return 'verbatim string length';
    case RespType.Map:
      return 'map length';
    case RespType.Set:
      return 'set length';
    case RespType.Push:
      return 'push length';
    case RespType.Attribute:
      return 'attribute length';
    default:
      return 'array length';
  }
}

/**
 * Streaming splitter of server replies. Nested aggregates are followed with a stack of
 * remaining counts, one number per open level, so nothing is allocated per element. Errors
 * ({@link RespProtocolError}, {@link RespTooLargeError}) are thrown from `push`, and every
 * later `push` or `resume` throws the same error.
 *
 * Chunks passed to `push` must not be mutated afterwards: delivered replies refer to them.
 */
export class ReplyReader extends ChunkStream {
  private readonly maxBulkBytes: number;
  private readonly maxArrayLength: number;
  private readonly maxLineBytes: number;
  private readonly maxDepth: number;
  private readonly maxReplyBytes: number;

  private handler: ReplyHandler | null = null;
  private state = State.Type;
  /** Type byte of the value being read, and of the current reply proper. */
  private valueType = 0;
  private replyType = 0;
  /** Open aggregates: values still expected at each level, and whether the level is an attribute. */
  private readonly remaining: number[] = [];
  private readonly attribute: boolean[] = [];
  private depth = 0;
  /** Line being scanned: bytes seen, and whether its CR was seen. */
  private lineBytes = 0;
  private lineCR = false;
  private fixedPhase = FixedPhase.Value;

  constructor(opts: ReplyReaderOptions = {}) {
    super();
    const d = REPLY_READER_DEFAULTS;
    this.maxBulkBytes = limitOption('maxBulkBytes', opts.maxBulkBytes, d.maxBulkBytes);
    this.maxArrayLength = limitOption('maxArrayLength', opts.maxArrayLength, d.maxArrayLength);
    this.maxLineBytes = limitOption('maxLineBytes', opts.maxLineBytes, d.maxLineBytes);
    this.maxDepth = limitOption('maxDepth', opts.maxDepth, d.maxDepth);
    this.maxReplyBytes = limitOption('maxReplyBytes', opts.maxReplyBytes, d.maxReplyBytes);
  }

  /**
   * Feeds a chunk and calls `onReply` once per complete reply, in order. If `onReply` throws,
   * the error propagates and the unread bytes stay buffered for the next push or resume.
   */
  push(chunk: Buffer, onReply: ReplyHandler): void {
    this.handler = onReply;
    this.feed(chunk);
  }

  protected parse(): void {
    while (this.pos < this.buf.length) {
      switch (this.state) {
        case State.Type:
          this.readType();
          continue;
        case State.Length:
          if (!this.readNumber(lengthName(this.valueType), false)) return;
          if (this.onLength()) return;
          continue;
        case State.Integer:
          if (!this.readNumber('integer', true)) return;
          break;
        case State.Text:
          if (!this.readText()) return;
          break;
        case State.Fixed:
          if (!this.readFixed()) return;
          break;
        case State.Bulk:
          if (!this.readBulk()) return;
          break;
      }
      if (this.valueDone(false)) return;
    }
  }

  /** Reads the type byte of a value and picks the state that reads the rest. */
  private readType(): void {
    if (!this.inUnit) this.beginUnit();
    const type = this.buf[this.pos++]!;
    this.valueType = type;
    if (this.depth === 0 && type !== RespType.Attribute) this.replyType = type;
    switch (type) {
      case RespType.SimpleString:
      case RespType.SimpleError:
      case RespType.Double:
      case RespType.BigNumber:
        this.lineBytes = 0;
        this.lineCR = false;
        this.state = State.Text;
        return;
      case RespType.Integer:
        this.state = State.Integer;
        return;
      case RespType.Boolean:
      case RespType.Null:
        this.fixedPhase = type === RespType.Boolean ? FixedPhase.Value : FixedPhase.CarriageReturn;
        this.state = State.Fixed;
        return;
      default:
        if (INFOS[type] === undefined) {
          this.fail(new RespProtocolError(`unknown reply type byte ${describeByte(type)}`));
        }
        this.state = State.Length; // bulk types and aggregates
    }
  }

  /** Handles a complete length line; returns true if that completed (and delivered) the reply. */
  private onLength(): boolean {
    const type = this.valueType;
    const length = this.number;
    const isBulk = type === RespType.BulkString || type === RespType.BlobError || type === RespType.Verbatim;
    if (length === -1 && (type === RespType.BulkString || type === RespType.Array)) {
      return this.valueDone(false); // RESP2 null bulk string / null array
    }
    if (length < 0) this.fail(new RespProtocolError(`invalid ${lengthName(type)} ${length}`));
    if (isBulk) {
      if (length > this.maxBulkBytes) {
        this.fail(new RespTooLargeError('maxBulkBytes', length, this.maxBulkBytes, lengthName(type)));
      }
      this.checkReplySize(this.unitOffset(this.pos) + length + 2);
      this.startBulk(length);
      this.state = State.Bulk;
      return false;
    }
    const isAttribute = type === RespType.Attribute;
    const values = isAttribute || type === RespType.Map ? 2 * length : length;
    if (values > this.maxArrayLength) {
      this.fail(
        new RespTooLargeError('maxArrayLength', values, this.maxArrayLength, `${lengthName(type)} (values)`),
      );
    }
    if (values === 0) return this.valueDone(isAttribute);
    if (this.depth >= this.maxDepth) {
      this.fail(new RespTooLargeError('maxDepth', this.depth + 1, this.maxDepth, 'nesting depth'));
    }
    this.remaining[this.depth] = values;
    this.attribute[this.depth] = isAttribute;
    this.depth++;
    this.state = State.Type;
    return false;
  }

  /**
   * A value (or, with `isAttribute`, an attribute) just ended: counts it in its aggregate,
   * closing every aggregate it completes. Returns true if the whole reply is complete, after
   * delivering it. An attribute counts in nothing, and at the top level the reply it
   * describes is still to come.
   */
  private valueDone(isAttribute: boolean): boolean {
    this.state = State.Type;
    // Checked at every value, not only at the end, so a long array of small values is stopped
    // as soon as it passes the limit.
    this.checkReplySize(this.unitOffset(this.pos));
    let attribute = isAttribute;
    while (this.depth > 0) {
      if (attribute) return false;
      const top = this.depth - 1;
      const left = this.remaining[top]! - 1;
      if (left > 0) {
        this.remaining[top] = left;
        return false;
      }
      attribute = this.attribute[top]!;
      this.depth = top;
    }
    if (attribute) return false;
    const raw = this.finishUnit(this.pos);
    (this.handler as ReplyHandler)(raw, INFOS[this.replyType]!);
    return true;
  }

  private checkReplySize(size: number): void {
    if (size > this.maxReplyBytes) {
      this.fail(new RespTooLargeError('maxReplyBytes', size, this.maxReplyBytes, 'reply size'));
    }
  }

  /** Scans a text line to its CRLF: no bare CR or LF inside, at most `maxLineBytes`. */
  private readText(): boolean {
    const buf = this.buf;
    const end = buf.length;
    let p = this.pos;
    while (p < end) {
      const c = buf[p++]!;
      if (this.lineCR) {
        if (c !== LF)
          this.fail(new RespProtocolError(`expected LF after CR in a line, got ${describeByte(c)}`));
        this.pos = p;
        return true;
      }
      if (c === CR) {
        this.lineCR = true;
      } else if (c === LF) {
        this.fail(new RespProtocolError('LF without CR in a line'));
      } else if (++this.lineBytes > this.maxLineBytes) {
        this.fail(new RespTooLargeError('maxLineBytes', this.lineBytes, this.maxLineBytes, 'line length'));
      }
    }
    this.pos = p;
    return false;
  }

  /** Reads the rest of `#t\r\n`, `#f\r\n` or `_\r\n`. */
  private readFixed(): boolean {
    const buf = this.buf;
    while (this.pos < buf.length) {
      const c = buf[this.pos++]!;
      switch (this.fixedPhase) {
        case FixedPhase.Value:
          if (c !== LOWER_T && c !== LOWER_F) {
            this.fail(new RespProtocolError(`invalid boolean: expected 't' or 'f', got ${describeByte(c)}`));
          }
          this.fixedPhase = FixedPhase.CarriageReturn;
          break;
        case FixedPhase.CarriageReturn:
          if (c !== CR) this.fail(new RespProtocolError(`expected CR, got ${describeByte(c)}`));
          this.fixedPhase = FixedPhase.LineFeed;
          break;
        case FixedPhase.LineFeed:
          if (c !== LF) this.fail(new RespProtocolError(`expected LF, got ${describeByte(c)}`));
          return true;
      }
    }
    return false;
  }
}
