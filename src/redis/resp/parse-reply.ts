/**
 * Full decoding of one reply into JavaScript values, for the few replies the proxy must read
 * (ROLE, INFO, HELLO, COMMAND output, integers to sum for DEL/EXISTS, arrays to merge for MGET).
 * Everything else is forwarded as raw bytes and never decoded.
 *
 * Mapping of RESP types to {@link RespValue}:
 *
 * | RESP | value |
 * |---|---|
 * | `+` simple string | `string` (UTF-8) |
 * | `-` error, `!` blob error | {@link RespErrorValue} |
 * | `:` integer | `number` when a safe integer, else `bigint` (never a lossy number) |
 * | `,` double | `number` (`inf`, `-inf`, `nan` included) |
 * | `(` big number | `bigint` |
 * | `#` boolean | `boolean` |
 * | `$` bulk string | `Buffer`, a subarray of the input (zero copy) |
 * | `=` verbatim string | `Buffer` of the text, its `txt:`/`mkd:` format prefix dropped |
 * | `_` null, `$-1`, `*-1` | `null` |
 * | `*` array, `~` set, `>` push | `RespValue[]` (a set keeps the server's order) |
 * | `%` map | `Map<RespValue, RespValue>`; Buffer keys compare by identity, use {@link mapGet} |
 * | `\|` attribute | dropped: the value it precedes is returned |
 */
import { CR, LF } from './chunk-stream.js';
import { RespProtocolError } from './errors.js';
import { RespType } from './resp-types.js';

/** An error reply (`-` or `!`), as a value: it is data the server sent, not a codec failure. */
export class RespErrorValue {
  /** Whole error text, e.g. `WRONGTYPE Operation against a key holding the wrong kind of value`. */
  readonly message: string;
  /** True for a RESP3 blob error (`!`). */
  readonly blob: boolean;

  constructor(message: string, blob = false) {
    this.message = message;
    this.blob = blob;
  }

  /** The error code: the first word, by convention upper case (`ERR`, `WRONGTYPE`, `MOVED`). */
  get prefix(): string {
    const space = this.message.indexOf(' ');
    return space === -1 ? this.message : this.message.slice(0, space);
  }
}

/** A decoded reply; see the table at the top of parse-reply.ts. */
export type RespValue =
  | string
  | Buffer
  | number
  | bigint
  | boolean
  | null
  | RespErrorValue
  | RespValue[]
  | Map<RespValue, RespValue>;

/** Options of {@link parseReply}. */
export interface ParseReplyOptions {
  /** Deepest nesting accepted (the decoder recurses). Default 128, as ReplyReader's `maxDepth`. */
  maxDepth?: number;
}

/** Largest count of decimal digits that always fits a safe integer (2^53 has 16 digits). */
const SAFE_DIGITS = 15;

/** Cursor over one reply being decoded. */
class ReplyDecoder {
  pos = 0;

  constructor(
    private readonly buf: Buffer,
    private readonly maxDepth: number,
  ) {}

  value(depth: number): RespValue {
    if (this.pos >= this.buf.length) throw new RespProtocolError('truncated reply: a value is missing');
    const type = this.buf[this.pos++]!;
    switch (type) {
      case RespType.SimpleString:
        return this.line().toString('utf8');
      case RespType.SimpleError:
        return new RespErrorValue(this.line().toString('utf8'));
      case RespType.Integer:
        return integer(this.line().toString('latin1'));
      case RespType.Double:
        return double(this.line().toString('latin1'));
      case RespType.BigNumber:
        return bigNumber(this.line().toString('latin1'));
      case RespType.Boolean:
        return boolean(this.line().toString('latin1'));
      case RespType.Null:
        if (this.line().length !== 0) throw new RespProtocolError('null (_) followed by data');
        return null;
      case RespType.BulkString:
      case RespType.BlobError:
      case RespType.Verbatim:
        return this.bulk(type);
      case RespType.Map:
        return this.map(depth);
      case RespType.Attribute:
        this.map(depth); // auxiliary data: read past it to the value it describes
        return this.value(depth);
      case RespType.Array:
      case RespType.Set:
      case RespType.Push:
        return this.array(type, depth);
      default:
        throw new RespProtocolError(`unknown reply type byte 0x${type.toString(16).padStart(2, '0')}`);
    }
  }

  /** The rest of a line, without its CRLF. */
  private line(): Buffer {
    const buf = this.buf;
    const cr = buf.indexOf(CR, this.pos);
    if (cr === -1 || cr + 1 >= buf.length) throw new RespProtocolError('truncated reply: line without CRLF');
    if (buf[cr + 1] !== LF) throw new RespProtocolError('CR not followed by LF');
    const content = buf.subarray(this.pos, cr);
    if (content.includes(LF)) throw new RespProtocolError('LF without CR in a line');
    this.pos = cr + 2;
    return content;
  }

  private length(name: string, allowNull: boolean): number {
    const text = this.line().toString('latin1');
    if (!/^(?:-1|\d{1,19})$/.test(text) || (text === '-1' && !allowNull)) {
      throw new RespProtocolError(`invalid ${name} '${text}'`);
    }
    return Number(text);
  }

  private bulk(type: number): Buffer | RespErrorValue | null {
    const length = this.length('bulk length', type === RespType.BulkString);
    if (length === -1) return null;
    const start = this.pos;
    const end = start + length;
    if (end + 2 > this.buf.length) throw new RespProtocolError('truncated reply: bulk payload cut short');
    if (this.buf[end] !== CR || this.buf[end + 1] !== LF) {
      throw new RespProtocolError('bulk payload not followed by CRLF');
    }
    this.pos = end + 2;
    const data = this.buf.subarray(start, end);
    if (type === RespType.BlobError) return new RespErrorValue(data.toString('utf8'), true);
    if (type === RespType.Verbatim) {
      // `=<len>\r\n<3-byte format>:<text>\r\n`
      if (length < 4 || data[3] !== 0x3a) throw new RespProtocolError('verbatim string without a format');
      return data.subarray(4);
    }
    return data;
  }

  private array(type: number, depth: number): RespValue[] | null {
    const count = this.length('array length', type === RespType.Array);
    if (count === -1) return null;
    if (count > 0) this.checkDepth(depth);
    this.checkRoom(count);
    const out: RespValue[] = [];
    for (let i = 0; i < count; i++) out.push(this.value(depth + 1));
    return out;
  }

  private map(depth: number): Map<RespValue, RespValue> {
    const pairs = this.length('map length', false);
    if (pairs > 0) this.checkDepth(depth);
    this.checkRoom(2 * pairs);
    const out = new Map<RespValue, RespValue>();
    for (let i = 0; i < pairs; i++) {
      const key = this.value(depth + 1);
      out.set(key, this.value(depth + 1));
    }
    return out;
  }

  /** `depth` aggregates enclose the one being opened: refuse to go past `maxDepth` open levels. */
  private checkDepth(depth: number): void {
    if (depth >= this.maxDepth)
      throw new RespProtocolError(`reply nested deeper than ${this.maxDepth} levels`);
  }

  /** Each value takes at least 3 bytes (`_\r\n`): a count beyond that is a truncated or lying reply. */
  private checkRoom(values: number): void {
    if (values * 3 > this.buf.length - this.pos) {
      throw new RespProtocolError(`truncated reply: ${values} values announced, too few bytes follow`);
    }
  }
}

function integer(text: string): number | bigint {
  if (!/^[+-]?\d{1,19}$/.test(text)) throw new RespProtocolError(`invalid integer '${text}'`);
  const digits = text.length - (text[0] === '+' || text[0] === '-' ? 1 : 0);
  if (digits <= SAFE_DIGITS) return Number(text);
  const big = BigInt(text);
  return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
}

function double(text: string): number {
  switch (text.toLowerCase()) {
    case 'inf':
    case '+inf':
      return Infinity;
    case '-inf':
      return -Infinity;
    case 'nan':
      return NaN;
  }
  const value = Number(text);
  if (text.trim() === '' || Number.isNaN(value)) throw new RespProtocolError(`invalid double '${text}'`);
  return value;
}

function bigNumber(text: string): bigint {
  if (!/^[+-]?\d+$/.test(text)) throw new RespProtocolError(`invalid big number '${text}'`);
  return BigInt(text);
}

function boolean(text: string): boolean {
  if (text === 't') return true;
  if (text === 'f') return false;
  throw new RespProtocolError(`invalid boolean '${text}'`);
}

/**
 * Decodes exactly one reply (as delivered by `ReplyReader`) into a {@link RespValue}. Bulk
 * strings are subarrays of `raw`: copy them to keep them beyond `raw`'s life. Throws
 * {@link RespProtocolError} if `raw` is malformed, truncated, or holds more than one reply.
 */
export function parseReply(raw: Buffer, opts: ParseReplyOptions = {}): RespValue {
  const decoder = new ReplyDecoder(raw, opts.maxDepth ?? 128);
  const value = decoder.value(0);
  if (decoder.pos !== raw.length) {
    throw new RespProtocolError(`${raw.length - decoder.pos} bytes after the end of the reply`);
  }
  return value;
}

/**
 * Looks a key up in a decoded map by its text: matches `string` keys and `Buffer` keys holding
 * the same UTF-8 bytes (a map decoded from the wire has Buffer keys, which a `Map` compares by
 * identity).
 */
export function mapGet(map: Map<RespValue, RespValue>, key: string): RespValue | undefined {
  const direct = map.get(key);
  if (direct !== undefined) return direct;
  const bytes = Buffer.from(key, 'utf8');
  for (const [k, v] of map) {
    if (Buffer.isBuffer(k) && k.equals(bytes)) return v;
  }
  return undefined;
}

/** Text of a string-like value (`string` or `Buffer`, as UTF-8), else null. */
export function replyText(value: RespValue | undefined): string | null {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  return null;
}
