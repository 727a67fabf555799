/**
 * Builders for the frames the proxy originates: toward backends (startup, cancel, re-Parse under
 * another name, authentication replies) and toward clients (authentication, errors, status).
 * Each returns a whole frame, header included, ready for `socket.write`.
 * Formats: https://www.postgresql.org/docs/current/protocol-message-formats.html
 */
import { BufferWriter } from './buffer-writer.js';
import type { BindHead, ParseMessage } from './decode.js';
import { MalformedFrameError } from './errors.js';
import {
  BackendCode,
  CANCEL_REQUEST_CODE,
  FrontendCode,
  PROTOCOL_VERSION_3,
  SSL_REQUEST_CODE,
} from './message-types.js';

const writer = new BufferWriter();

/** A typed frame with an empty body: type byte and length 4. */
function emptyFrame(type: number): Buffer {
  return writer.startTyped(type).finish();
}

// Shared constant frames. Object.freeze() refuses non-empty typed arrays, so these are plain
// Buffers: never mutate them, only write them to sockets.

/** Sync ('S'). */
export const SYNC: Buffer = emptyFrame(FrontendCode.Sync);
/** Flush ('H'). */
export const FLUSH: Buffer = emptyFrame(FrontendCode.Flush);
/** Terminate ('X'). */
export const TERMINATE: Buffer = emptyFrame(FrontendCode.Terminate);
/** ParseComplete ('1'). */
export const PARSE_COMPLETE: Buffer = emptyFrame(BackendCode.ParseComplete);
/** BindComplete ('2'). */
export const BIND_COMPLETE: Buffer = emptyFrame(BackendCode.BindComplete);
/** CloseComplete ('3'). */
export const CLOSE_COMPLETE: Buffer = emptyFrame(BackendCode.CloseComplete);
/** NoData ('n'). */
export const NO_DATA: Buffer = emptyFrame(BackendCode.NoData);
/** AuthenticationOk ('R', code 0). */
export const AUTHENTICATION_OK: Buffer = writer.startTyped(BackendCode.Authentication).int32(0).finish();
/** SSLRequest: length 8, code 80877103, no type byte. */
export const SSL_REQUEST: Buffer = writer.startUntyped().int32(SSL_REQUEST_CODE).finish();
/** The server's one-byte refusal of SSLRequest/GSSENCRequest ('N'); not a framed message. */
export const SSL_NO: Buffer = Buffer.from('N', 'latin1');

const READY_IDLE = writer.startTyped(BackendCode.ReadyForQuery).byte(0x49 /* I */).finish();
const READY_IN_TRANSACTION = writer.startTyped(BackendCode.ReadyForQuery).byte(0x54 /* T */).finish();
const READY_FAILED_TRANSACTION = writer.startTyped(BackendCode.ReadyForQuery).byte(0x45 /* E */).finish();

/** ReadyForQuery ('Z') for status 'I', 'T' or 'E' (as a char code); a shared precomputed buffer. */
export function readyForQuery(status: number): Buffer {
  switch (status) {
    case 0x49:
      return READY_IDLE;
    case 0x54:
      return READY_IN_TRANSACTION;
    case 0x45:
      return READY_FAILED_TRANSACTION;
    default:
      throw new MalformedFrameError(`ReadyForQuery: unknown transaction status ${status}`);
  }
}

/** StartupMessage for protocol 3.0: name/value pairs, ended by an empty name. */
export function encodeStartupMessage(params: Record<string, string>): Buffer {
  writer.startUntyped().int32(PROTOCOL_VERSION_3);
  for (const [name, value] of Object.entries(params)) writer.cstring(name).cstring(value);
  return writer.byte(0).finish();
}

/** CancelRequest (sent on a fresh connection): length 16, code 80877102, process id, secret key. */
export function encodeCancelRequest(processId: number, secretKey: number): Buffer {
  return writer.startUntyped().int32(CANCEL_REQUEST_CODE).int32(processId).int32(secretKey).finish();
}

/** Query ('Q'). */
export function encodeQuery(sql: string): Buffer {
  return writer.startTyped(FrontendCode.Query).cstring(sql).finish();
}

/** Parse ('P'); `paramTypes` raw as {@link decodeParse} returns it (an empty buffer means no types). */
export function encodeParse(statement: string, query: string, paramTypes: Buffer): Buffer {
  writer.startTyped(FrontendCode.Parse).cstring(statement).cstring(query);
  if (paramTypes.length === 0) writer.int16(0);
  else writer.bytes(paramTypes);
  return writer.finish();
}

/**
 * Re-encodes a Parse under another statement name. The query and parameter types are copied as
 * raw bytes from the original frame, never re-encoded: they are forwarded exactly as received.
 */
export function encodeParseWithName(frame: Buffer, parsed: ParseMessage, newName: string): Buffer {
  // The old name's end is found in the raw bytes: its decoded length may differ from the
  // original byte length if the client sent invalid UTF-8.
  const queryAt = frame.indexOf(0, 5) + 1;
  if (queryAt === 0 || frame.length - queryAt < parsed.paramTypes.length) {
    throw new MalformedFrameError('Parse: frame does not match its decoded form');
  }
  return spliceName(FrontendCode.Parse, frame, 5, checkedName(newName), queryAt);
}

/** Re-encodes a Bind so it refers to another prepared statement; portal and the rest are kept as raw bytes. */
export function encodeBindWithStatement(frame: Buffer, head: BindHead, newStatement: string): Buffer {
  const statementAt = frame.indexOf(0, 5) + 1;
  if (statementAt === 0 || statementAt > head.restOffset || head.restOffset > frame.length) {
    throw new MalformedFrameError('Bind: frame does not match its decoded head');
  }
  return spliceName(FrontendCode.Bind, frame, statementAt, checkedName(newStatement), head.restOffset);
}

/**
 * Builds `type, length, frame[5..nameAt), name NUL, frame[restAt..)` in one exact allocation.
 * Bypasses the shared writer on purpose: these run per Bind/Parse on the hot path, and the
 * writer would copy the (possibly large) raw tail twice.
 */
function spliceName(type: number, frame: Buffer, nameAt: number, name: string, restAt: number): Buffer {
  const nameBytes = Buffer.byteLength(name, 'utf8');
  const total = nameAt + nameBytes + 1 + (frame.length - restAt);
  const out = Buffer.allocUnsafe(total);
  out[0] = type;
  out.writeUInt32BE(total - 1, 1);
  frame.copy(out, 5, 5, nameAt);
  out.write(name, nameAt, nameBytes, 'utf8');
  out[nameAt + nameBytes] = 0;
  frame.copy(out, nameAt + nameBytes + 1, restAt);
  return out;
}

/** Refuses a statement name with a NUL inside: it would end the name early on the server's side. */
function checkedName(name: string): string {
  if (name.includes('\0')) throw new MalformedFrameError('cannot encode a string containing NUL');
  return name;
}

/** Bind ('B') of text parameters (null = SQL NULL), every result column in text format. */
export function encodeBindText(
  portal: string,
  statement: string,
  params: readonly (string | null)[],
): Buffer {
  writer.startTyped(FrontendCode.Bind).cstring(portal).cstring(statement).int16(0).int16(params.length);
  for (const p of params) {
    if (p === null) {
      writer.int32(-1);
      continue;
    }
    const bytes = Buffer.from(p, 'utf8');
    writer.int32(bytes.length).bytes(bytes);
  }
  return writer.int16(0).finish();
}

/** Execute ('E') of a portal; `maxRows` 0 = all rows. */
export function encodeExecute(portal: string, maxRows = 0): Buffer {
  return writer.startTyped(FrontendCode.Execute).cstring(portal).int32(maxRows).finish();
}

/** Describe ('D') or Close ('C') of a prepared statement ('S') or portal ('P'). */
export function encodeTarget(code: number, kind: 'S' | 'P', name: string): Buffer {
  if (code !== FrontendCode.Describe && code !== FrontendCode.Close) {
    throw new MalformedFrameError(`encodeTarget: code ${code} is neither Describe nor Close`);
  }
  return writer
    .startTyped(code)
    .byte(kind === 'S' ? 0x53 : 0x50)
    .cstring(name)
    .finish();
}

/** PasswordMessage ('p'): a cleartext password or an MD5 digest string. */
export function encodePasswordMessage(password: string): Buffer {
  return writer.startTyped(FrontendCode.Password).cstring(password).finish();
}

/** SASLInitialResponse ('p'): mechanism name, Int32 length, client-first-message. */
export function encodeSaslInitialResponse(mechanism: string, data: Buffer): Buffer {
  return writer.startTyped(FrontendCode.Password).cstring(mechanism).int32(data.length).bytes(data).finish();
}

/** SASLResponse ('p'): the raw client-final-message. */
export function encodeSaslResponse(data: Buffer): Buffer {
  return writer.startTyped(FrontendCode.Password).bytes(data).finish();
}

/** AuthenticationSASL ('R', code 10): the mechanism list, ended by an empty name. */
export function encodeAuthenticationSasl(mechanisms: string[]): Buffer {
  writer.startTyped(BackendCode.Authentication).int32(10);
  for (const mechanism of mechanisms) writer.cstring(mechanism);
  return writer.byte(0).finish();
}

/** AuthenticationSASLContinue ('R', code 11): the server-first-message. */
export function encodeAuthenticationSaslContinue(data: Buffer): Buffer {
  return writer.startTyped(BackendCode.Authentication).int32(11).bytes(data).finish();
}

/** AuthenticationSASLFinal ('R', code 12): the server-final-message. */
export function encodeAuthenticationSaslFinal(data: Buffer): Buffer {
  return writer.startTyped(BackendCode.Authentication).int32(12).bytes(data).finish();
}

/** AuthenticationCleartextPassword ('R', code 3). */
export function encodeAuthenticationCleartext(): Buffer {
  return writer.startTyped(BackendCode.Authentication).int32(3).finish();
}

/** ParameterStatus ('S'). */
export function encodeParameterStatus(name: string, value: string): Buffer {
  return writer.startTyped(BackendCode.ParameterStatus).cstring(name).cstring(value).finish();
}

/** BackendKeyData ('K'): process id and secret key, two Int32 (protocol 3.0). */
export function encodeBackendKeyData(processId: number, secretKey: number): Buffer {
  return writer.startTyped(BackendCode.BackendKeyData).int32(processId).int32(secretKey).finish();
}

/** CommandComplete ('C') with a command tag such as `SET` or `SELECT 1`. */
export function encodeCommandComplete(tag: string): Buffer {
  return writer.startTyped(BackendCode.CommandComplete).cstring(tag).finish();
}

/**
 * RowDescription ('T') for text-format columns the proxy answers itself (SHOW of its own
 * settings): no table, type `text` (OID 25) unless given, variable length, no modifier.
 */
export function encodeRowDescription(columns: readonly { name: string; typeOid?: number }[]): Buffer {
  const w = writer.startTyped(BackendCode.RowDescription).int16(columns.length);
  for (const c of columns)
    w.cstring(c.name)
      .int32(0)
      .int16(0)
      .int32(c.typeOid ?? 25)
      .int16(-1)
      .int32(-1)
      .int16(0);
  return w.finish();
}

/** DataRow ('D') of text values; null is SQL NULL (length -1). */
export function encodeDataRow(values: readonly (string | null)[]): Buffer {
  const w = writer.startTyped(BackendCode.DataRow).int16(values.length);
  for (const v of values) {
    if (v === null) {
      w.int32(-1);
      continue;
    }
    const bytes = Buffer.from(v, 'utf8');
    w.int32(bytes.length).bytes(bytes);
  }
  return w.finish();
}

/** Fields of an ErrorResponse or NoticeResponse the proxy originates. */
export interface ErrorFields {
  severity: 'ERROR' | 'FATAL' | 'PANIC' | 'WARNING' | 'NOTICE' | 'INFO' | 'LOG';
  /** SQLSTATE, five characters (e.g. `08006`). */
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

/** ErrorResponse ('E'): fields S, V (same as S, the non-localized severity), C, M, then D and H if set. */
export function encodeErrorResponse(f: ErrorFields): Buffer {
  return encodeFields(BackendCode.ErrorResponse, f);
}

/** NoticeResponse ('N'): same fields as {@link encodeErrorResponse}. */
export function encodeNoticeResponse(f: ErrorFields): Buffer {
  return encodeFields(BackendCode.NoticeResponse, f);
}

/** Each field is a code byte and a string; a zero byte ends the list. */
function encodeFields(type: number, f: ErrorFields): Buffer {
  writer.startTyped(type);
  writer.byte(0x53 /* S */).cstring(f.severity);
  writer.byte(0x56 /* V */).cstring(f.severity);
  writer.byte(0x43 /* C */).cstring(f.code);
  writer.byte(0x4d /* M */).cstring(f.message);
  if (f.detail !== undefined) writer.byte(0x44 /* D */).cstring(f.detail);
  if (f.hint !== undefined) writer.byte(0x48 /* H */).cstring(f.hint);
  return writer.byte(0).finish();
}
