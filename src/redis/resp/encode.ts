/**
 * Builders for the RESP the proxy originates: commands toward servers (health checks, ROLE,
 * INFO, commands split per shard) and replies toward clients (its own errors, merged results of
 * multi-key commands). Each returns complete bytes, ready for `socket.write`.
 * Formats: https://redis.io/docs/latest/develop/reference/protocol-spec/
 */

const CRLF = '\r\n';

// Shared constant replies: Object.freeze() refuses non-empty typed arrays, so these are plain
// Buffers: never mutate them, only write them to sockets.
const NULL_BULK = Buffer.from('$-1\r\n', 'latin1');
const NULL_RESP3 = Buffer.from('_\r\n', 'latin1');

/** Replaces each run of CR/LF by one space: a line type cannot carry them (no reply injection). */
function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ');
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** Decimal text of a RESP integer: a signed 64-bit value, refusing fractions and anything wider. */
function integerText(n: number | bigint): string {
  if (typeof n === 'number' && !Number.isInteger(n)) {
    throw new RangeError(`RESP integers must be integers, got ${n}`);
  }
  const big = BigInt(n);
  if (big < INT64_MIN || big > INT64_MAX) {
    throw new RangeError(`RESP integers are signed 64-bit, got ${big}`);
  }
  return big.toString(); // never exponent notation, unlike String(1e21)
}

/** `*<n>\r\n$<len>\r\n<arg>\r\n…`: a command as an array of bulk strings (strings as UTF-8). */
export function encodeCommand(args: ReadonlyArray<string | Buffer>): Buffer {
  const lengths = args.map((arg) => (typeof arg === 'string' ? Buffer.byteLength(arg, 'utf8') : arg.length));
  const head = `*${args.length}${CRLF}`;
  let size = head.length;
  for (const length of lengths) size += 1 + String(length).length + 2 + length + 2;
  const out = Buffer.allocUnsafe(size);
  let at = out.write(head, 0, 'latin1');
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    at += out.write(`$${lengths[i]!}${CRLF}`, at, 'latin1');
    at += typeof arg === 'string' ? out.write(arg, at, 'utf8') : arg.copy(out, at);
    at += out.write(CRLF, at, 'latin1');
  }
  return out;
}

/**
 * `-<prefix> <message>\r\n`, an error reply. CR and LF in the message become spaces. `prefix`
 * is the error code clients branch on (`ERR` by default; redis also uses `WRONGTYPE`, `NOAUTH`…).
 * `encoding` `latin1`: the message's characters are bytes (a client's argument echoed as sent).
 */
export function encodeError(message: string, prefix = 'ERR', encoding: 'utf8' | 'latin1' = 'utf8'): Buffer {
  const code = oneLine(prefix).replace(/ /g, '');
  const text = oneLine(message);
  return Buffer.from(text === '' ? `-${code}${CRLF}` : `-${code} ${text}${CRLF}`, encoding);
}

/** `+<s>\r\n`, a simple string (`OK`, `PONG`). CR and LF become spaces. */
export function encodeSimple(s: string): Buffer {
  return Buffer.from(`+${oneLine(s)}${CRLF}`, 'utf8');
}

/** `:<n>\r\n`. Throws RangeError for a non-integer or a value outside the signed 64-bit range. */
export function encodeInteger(n: number | bigint): Buffer {
  return Buffer.from(`:${integerText(n)}${CRLF}`, 'latin1');
}

/** `$<len>\r\n<bytes>\r\n` (strings as UTF-8); null gives the RESP2 null bulk string `$-1\r\n` (shared). */
export function encodeBulk(value: Buffer | string | null): Buffer {
  if (value === null) return NULL_BULK;
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  const head = `$${bytes.length}${CRLF}`;
  const out = Buffer.allocUnsafe(head.length + bytes.length + 2);
  out.write(head, 0, 'latin1');
  bytes.copy(out, head.length);
  out.write(CRLF, head.length + bytes.length, 'latin1');
  return out;
}

/**
 * `*<n>\r\n`, the header of an array whose `n` values the caller writes next (merged MGET or
 * KEYS replies). `n = -1` is the RESP2 null array.
 */
export function encodeArrayHeader(n: number): Buffer {
  if (!Number.isSafeInteger(n) || n < -1)
    throw new RangeError(`array length must be an integer >= -1, got ${n}`);
  return Buffer.from(`*${n}${CRLF}`, 'latin1');
}

/** A null reply: `_\r\n` in RESP3, else the null bulk string `$-1\r\n`. Shared buffers: never mutate. */
export function encodeNull(resp3: boolean): Buffer {
  return resp3 ? NULL_RESP3 : NULL_BULK;
}
