/**
 * Decoders for the few messages routing needs to look inside (don't decode
 * what you only forward). Each takes the WHOLE frame as {@link FrameReader} delivers it, checks
 * the type byte and that the length field matches the frame, and reads only the needed fields.
 * Formats: https://www.postgresql.org/docs/current/protocol-message-formats.html
 *
 * Strings on the wire are NUL-terminated ("String" in the docs) and decoded as UTF-8: rwsplit
 * assumes client_encoding UTF8, as every modern driver sends.
 */
import { MalformedFrameError } from './errors.js';
import {
  BackendCode,
  CANCEL_REQUEST_CODE,
  FrontendCode,
  GSSENC_REQUEST_CODE,
  SSL_REQUEST_CODE,
} from './message-types.js';

/** What a client's first frame asks for. */
export type StartupPacket =
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; processId: number; secretKey: number }
  | { kind: 'startup'; protocolVersion: number; params: Map<string, string> };

/** Parse ('P'): the statement name, its SQL, and the parameter type OIDs kept raw. */
export interface ParseMessage {
  statement: string;
  query: string;
  /** Raw bytes from the Int16 param count to the end (count, then one Int32 OID per parameter). */
  paramTypes: Buffer;
}

/** The head of a Bind ('B'): names only; formats and values are forwarded untouched. */
export interface BindHead {
  portal: string;
  statement: string;
  /** Offset in the frame where the rest (parameter format codes, values, result formats) starts. */
  restOffset: number;
}

const TYPED_BODY = 5;
const STARTUP_BODY = 8;
const NUL = 0;

/** Throws unless `frame` is a typed frame of type `type` whose length field matches its size. */
function expectTyped(frame: Buffer, type: number, what: string): void {
  if (frame.length < TYPED_BODY)
    throw new MalformedFrameError(`${what}: frame of ${frame.length} bytes is truncated`);
  if (frame[0] !== type) {
    const got = String.fromCharCode(frame[0]!);
    throw new MalformedFrameError(`${what}: expected type '${String.fromCharCode(type)}', got '${got}'`);
  }
  const length = frame.readUInt32BE(1);
  if (length + 1 !== frame.length) {
    throw new MalformedFrameError(
      `${what}: length field says ${length + 1} bytes, frame has ${frame.length}`,
    );
  }
}

/** Index of the NUL ending the string that starts at `start`; throws when there is none. */
function stringEnd(frame: Buffer, start: number, what: string): number {
  const end = start < frame.length ? frame.indexOf(NUL, start) : -1;
  if (end < 0) throw new MalformedFrameError(`${what}: string is not NUL-terminated`);
  return end;
}

/** Throws unless the body ends exactly at `at`, as the server's pq_getmsgend() insists. */
function expectEnd(frame: Buffer, at: number, what: string): void {
  if (at > frame.length) throw new MalformedFrameError(`${what}: body is truncated`);
  if (at < frame.length)
    throw new MalformedFrameError(`${what}: ${frame.length - at} unexpected trailing bytes`);
}

/** Throws unless `count` more bytes are present at `at`. */
function expectBytes(frame: Buffer, at: number, count: number, what: string): void {
  if (at + count > frame.length) throw new MalformedFrameError(`${what}: body is truncated`);
}

/**
 * Decodes a client's first frame (no type byte): SSLRequest, GSSENCRequest, CancelRequest or a
 * StartupMessage of protocol major version 3. Any other code is rejected, naming it.
 */
export function decodeStartupPacket(frame: Buffer): StartupPacket {
  if (frame.length < STARTUP_BODY || frame.readUInt32BE(0) !== frame.length) {
    throw new MalformedFrameError(`startup packet: length field does not match ${frame.length} bytes`);
  }
  const code = frame.readUInt32BE(4);
  switch (code) {
    case SSL_REQUEST_CODE:
      expectEnd(frame, STARTUP_BODY, 'SSLRequest');
      return { kind: 'ssl' };
    case GSSENC_REQUEST_CODE:
      expectEnd(frame, STARTUP_BODY, 'GSSENCRequest');
      return { kind: 'gssenc' };
    case CANCEL_REQUEST_CODE:
      // Protocol 3.0 keys are exactly Int32; 3.2 allows longer keys, which rwsplit does not negotiate.
      expectEnd(frame, STARTUP_BODY + 8, 'CancelRequest');
      return { kind: 'cancel', processId: frame.readInt32BE(8), secretKey: frame.readInt32BE(12) };
  }
  if (code >>> 16 !== 3) {
    throw new MalformedFrameError(
      `startup packet: unknown request code ${code} (protocol ${code >>> 16}.${code & 0xffff})`,
    );
  }
  return { kind: 'startup', protocolVersion: code, params: decodeStartupParams(frame) };
}

/** StartupMessage parameters: name/value string pairs ended by an empty name. */
function decodeStartupParams(frame: Buffer): Map<string, string> {
  const params = new Map<string, string>();
  let at = STARTUP_BODY;
  while (true) {
    const nameEnd = stringEnd(frame, at, 'StartupMessage');
    if (nameEnd === at) break;
    const valueEnd = stringEnd(frame, nameEnd + 1, 'StartupMessage');
    params.set(frame.toString('utf8', at, nameEnd), frame.toString('utf8', nameEnd + 1, valueEnd));
    at = valueEnd + 1;
  }
  expectEnd(frame, at + 1, 'StartupMessage');
  return params;
}

/** Query ('Q'): the SQL text. */
export function decodeQuery(frame: Buffer): string {
  expectTyped(frame, FrontendCode.Query, 'Query');
  const end = stringEnd(frame, TYPED_BODY, 'Query');
  expectEnd(frame, end + 1, 'Query');
  return frame.toString('utf8', TYPED_BODY, end);
}

/** Parse ('P'): statement name, SQL, and the raw parameter type list (checked for a consistent size). */
export function decodeParse(frame: Buffer): ParseMessage {
  expectTyped(frame, FrontendCode.Parse, 'Parse');
  const nameEnd = stringEnd(frame, TYPED_BODY, 'Parse');
  const queryEnd = stringEnd(frame, nameEnd + 1, 'Parse');
  const typesAt = queryEnd + 1;
  expectBytes(frame, typesAt, 2, 'Parse');
  expectEnd(frame, typesAt + 2 + 4 * frame.readUInt16BE(typesAt), 'Parse');
  return {
    statement: frame.toString('utf8', TYPED_BODY, nameEnd),
    query: frame.toString('utf8', nameEnd + 1, queryEnd),
    paramTypes: frame.subarray(typesAt),
  };
}

/** Bind ('B'): portal and statement names, and where the untouched rest begins. */
export function decodeBindHead(frame: Buffer): BindHead {
  expectTyped(frame, FrontendCode.Bind, 'Bind');
  const portalEnd = stringEnd(frame, TYPED_BODY, 'Bind');
  const statementEnd = stringEnd(frame, portalEnd + 1, 'Bind');
  // The rest holds at least three Int16 counts (formats, values, result formats), possibly zero each.
  expectBytes(frame, statementEnd + 1, 6, 'Bind');
  return {
    portal: frame.toString('utf8', TYPED_BODY, portalEnd),
    statement: frame.toString('utf8', portalEnd + 1, statementEnd),
    restOffset: statementEnd + 1,
  };
}

/** Describe ('D') or Close ('C'): 'S' for a prepared statement or 'P' for a portal, then its name. */
export function decodeTarget(frame: Buffer): { kind: 'S' | 'P'; name: string } {
  const type = frame[0];
  const what = type === FrontendCode.Close ? 'Close' : 'Describe';
  expectTyped(frame, type === FrontendCode.Close ? FrontendCode.Close : FrontendCode.Describe, what);
  expectBytes(frame, TYPED_BODY, 1, what);
  const kind = frame[TYPED_BODY];
  if (kind !== 0x53 /* S */ && kind !== 0x50 /* P */) {
    throw new MalformedFrameError(`${what}: target kind must be 'S' or 'P', got ${kind}`);
  }
  const end = stringEnd(frame, TYPED_BODY + 1, what);
  expectEnd(frame, end + 1, what);
  return { kind: kind === 0x53 ? 'S' : 'P', name: frame.toString('utf8', TYPED_BODY + 1, end) };
}

/** Execute ('E'): the portal name (the Int32 row limit that follows is left alone). */
export function decodeExecutePortal(frame: Buffer): string {
  expectTyped(frame, FrontendCode.Execute, 'Execute');
  const end = stringEnd(frame, TYPED_BODY, 'Execute');
  expectEnd(frame, end + 1 + 4, 'Execute');
  return frame.toString('utf8', TYPED_BODY, end);
}

/** ReadyForQuery ('Z'): the transaction status byte, 'I' idle, 'T' in a transaction, 'E' failed transaction. */
export function decodeReadyForQuery(frame: Buffer): number {
  expectTyped(frame, BackendCode.ReadyForQuery, 'ReadyForQuery');
  expectEnd(frame, TYPED_BODY + 1, 'ReadyForQuery');
  const status = frame[TYPED_BODY]!;
  if (status !== 0x49 /* I */ && status !== 0x54 /* T */ && status !== 0x45 /* E */) {
    throw new MalformedFrameError(`ReadyForQuery: unknown transaction status ${status}`);
  }
  return status;
}

/**
 * ErrorResponse ('E') or NoticeResponse ('N'): fields keyed by their one-character code
 * ('S' severity, 'V' non-localized severity, 'C' SQLSTATE, 'M' message, 'D' detail, 'H' hint, ...).
 */
export function decodeErrorFields(frame: Buffer): Map<string, string> {
  const isNotice = frame[0] === BackendCode.NoticeResponse;
  const what = isNotice ? 'NoticeResponse' : 'ErrorResponse';
  expectTyped(frame, isNotice ? BackendCode.NoticeResponse : BackendCode.ErrorResponse, what);
  const fields = new Map<string, string>();
  let at = TYPED_BODY;
  while (true) {
    expectBytes(frame, at, 1, what);
    const field = frame[at]!;
    if (field === NUL) break;
    const end = stringEnd(frame, at + 1, what);
    fields.set(String.fromCharCode(field), frame.toString('utf8', at + 1, end));
    at = end + 1;
  }
  expectEnd(frame, at + 1, what);
  return fields;
}

/**
 * Authentication ('R'): the Int32 request code and the bytes after it (salt for MD5 = 5, mechanism
 * list for SASL = 10, server-first-message for SASLContinue = 11, server-final for SASLFinal = 12).
 */
export function decodeAuthentication(frame: Buffer): { code: number; data: Buffer } {
  expectTyped(frame, BackendCode.Authentication, 'Authentication');
  expectBytes(frame, TYPED_BODY, 4, 'Authentication');
  return { code: frame.readInt32BE(TYPED_BODY), data: frame.subarray(TYPED_BODY + 4) };
}

/** The data of AuthenticationSASL: mechanism names, each NUL-terminated, ended by an empty name. */
export function decodeSaslMechanisms(data: Buffer): string[] {
  const mechanisms: string[] = [];
  let at = 0;
  while (true) {
    const end = stringEnd(data, at, 'AuthenticationSASL');
    if (end === at) break;
    mechanisms.push(data.toString('utf8', at, end));
    at = end + 1;
  }
  expectEnd(data, at + 1, 'AuthenticationSASL');
  return mechanisms;
}

/** ParameterStatus ('S'): a run-time parameter the server reports (server_version, TimeZone, ...). */
export function decodeParameterStatus(frame: Buffer): { name: string; value: string } {
  expectTyped(frame, BackendCode.ParameterStatus, 'ParameterStatus');
  const nameEnd = stringEnd(frame, TYPED_BODY, 'ParameterStatus');
  const valueEnd = stringEnd(frame, nameEnd + 1, 'ParameterStatus');
  expectEnd(frame, valueEnd + 1, 'ParameterStatus');
  return {
    name: frame.toString('utf8', TYPED_BODY, nameEnd),
    value: frame.toString('utf8', nameEnd + 1, valueEnd),
  };
}

/** BackendKeyData ('K'): process id and secret key for CancelRequest (protocol 3.0: two Int32). */
export function decodeBackendKeyData(frame: Buffer): { processId: number; secretKey: number } {
  expectTyped(frame, BackendCode.BackendKeyData, 'BackendKeyData');
  expectEnd(frame, TYPED_BODY + 8, 'BackendKeyData');
  return { processId: frame.readInt32BE(TYPED_BODY), secretKey: frame.readInt32BE(TYPED_BODY + 4) };
}

/** CommandComplete ('C'): the command tag, e.g. `INSERT 0 1`, `SELECT 5`, `BEGIN`. */
export function decodeCommandTag(frame: Buffer): string {
  expectTyped(frame, BackendCode.CommandComplete, 'CommandComplete');
  const end = stringEnd(frame, TYPED_BODY, 'CommandComplete');
  expectEnd(frame, end + 1, 'CommandComplete');
  return frame.toString('utf8', TYPED_BODY, end);
}

/** PasswordMessage / SASLResponse / GSSResponse ('p'): the raw payload (a subarray, not a copy). */
export function decodePasswordMessage(frame: Buffer): Buffer {
  expectTyped(frame, FrontendCode.Password, 'PasswordMessage');
  return frame.subarray(TYPED_BODY);
}

/** SASLInitialResponse ('p'): the chosen mechanism and the client-first-message (Int32 length -1 means none). */
export function decodeSaslInitialResponse(frame: Buffer): { mechanism: string; data: Buffer } {
  expectTyped(frame, FrontendCode.Password, 'SASLInitialResponse');
  const end = stringEnd(frame, TYPED_BODY, 'SASLInitialResponse');
  const lengthAt = end + 1;
  expectBytes(frame, lengthAt, 4, 'SASLInitialResponse');
  const length = frame.readInt32BE(lengthAt);
  const dataAt = lengthAt + 4;
  if (length < -1) throw new MalformedFrameError(`SASLInitialResponse: invalid data length ${length}`);
  expectEnd(frame, dataAt + Math.max(length, 0), 'SASLInitialResponse');
  return { mechanism: frame.toString('utf8', TYPED_BODY, end), data: frame.subarray(dataAt) };
}
