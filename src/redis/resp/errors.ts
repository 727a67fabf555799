/**
 * Errors raised by the RESP codec. Each carries a stable `code` so callers can branch on it
 * without parsing messages. A reader that throws one is desynchronised for good: the proxy
 * closes that one connection, after sending `-ERR Protocol error: …` to a
 * client the way redis-server does.
 */

/** Base class of every RESP codec error. */
export class RespError extends Error {
  /** Stable machine-readable identifier of the failure. */
  readonly code: string;

  constructor(code: string, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/** Bytes that do not follow the protocol: an unknown type byte, a bad length, a missing CRLF, bad quoting. */
export class RespProtocolError extends RespError {
  constructor(message: string) {
    super('RESP_PROTOCOL', message);
  }
}

/**
 * A length or size above a configured ceiling. Raised as soon as the header that declares it
 * is read, before any of the payload is buffered, so a hostile length costs no memory.
 */
export class RespTooLargeError extends RespError {
  /** The option to raise to accept this input, e.g. `maxBulkBytes` or `maxArrayLength`. */
  readonly setting: string;
  /** The size that was declared or reached (bytes, elements or nesting levels, as the setting says). */
  readonly size: number;
  /** The configured ceiling. */
  readonly max: number;

  constructor(setting: string, size: number, max: number, what: string) {
    super(
      'RESP_TOO_LARGE',
      `RESP ${what} of ${size} is above the limit of ${max}; raise ${setting} to accept it`,
    );
    this.setting = setting;
    this.size = size;
    this.max = max;
  }
}

/** Printable form of one byte for error messages: the character if printable ASCII, else `\xNN`. */
export function describeByte(byte: number): string {
  if (byte >= 0x20 && byte < 0x7f) return `'${String.fromCharCode(byte)}'`;
  return `'\\x${byte.toString(16).padStart(2, '0')}'`;
}
