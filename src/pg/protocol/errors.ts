/**
 * Errors raised by the PostgreSQL wire codec. Each carries a stable `code` so callers can
 * branch on it without parsing messages. Any of them means the byte stream can no longer be
 * trusted: the proxy destroys that one connection.
 */

/** Base class of every codec error. */
export class ProtocolError extends Error {
  /** Stable machine-readable identifier of the failure. */
  readonly code: string;

  constructor(code: string, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/**
 * A frame declared a length above the configured ceiling. Raised as soon as the header is
 * known, before any of the body is buffered, so a hostile length costs no memory.
 */
export class FrameTooLargeError extends ProtocolError {
  /** The length the frame declared (the Int32 length field, which counts itself). */
  readonly length: number;
  /** The configured ceiling (`maxFrameBytes`). */
  readonly max: number;

  constructor(length: number, max: number) {
    super(
      'FRAME_TOO_LARGE',
      `PostgreSQL frame declares ${length} bytes, above the limit of ${max}; raise maxFrameBytes to accept it`,
    );
    this.length = length;
    this.max = max;
  }
}

/** A frame header or body that does not follow the message format (truncated, garbled, bad length). */
export class MalformedFrameError extends ProtocolError {
  constructor(message: string) {
    super('MALFORMED_FRAME', message);
  }
}
