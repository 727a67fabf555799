/**
 * Errors the proxy raises itself. Each has a stable `code` and a PostgreSQL SQLSTATE so it
 * can be sent to the client as an ErrorResponse in its own protocol; messages name the
 * cause and, in `hint`, the setting to change.
 */
import { encodeErrorResponse, type ErrorFields } from './protocol/index.js';

export class RwsplitPgError extends Error {
  constructor(
    readonly code: string,
    readonly sqlstate: string,
    message: string,
    readonly hint?: string,
    readonly severity: 'ERROR' | 'FATAL' = 'ERROR',
  ) {
    super(message);
  }

  toFields(): ErrorFields {
    const fields: ErrorFields = { severity: this.severity, code: this.sqlstate, message: this.message };
    if (this.hint) fields.hint = this.hint;
    return fields;
  }

  toFrame(): Buffer {
    return encodeErrorResponse(this.toFields());
  }

  /** The same error as a FATAL ErrorResponse, optionally with a detail line. */
  toFatalFrame(detail?: string): Buffer {
    const fields = this.toFields();
    fields.severity = 'FATAL';
    if (detail) fields.detail = detail;
    return encodeErrorResponse(fields);
  }
}

/** A backend refused our login or failed during startup; `frame` is its ErrorResponse, when it sent one. */
export class BackendStartupError extends Error {
  readonly code = 'BACKEND_STARTUP';
  constructor(
    message: string,
    readonly nodeId: string,
    readonly frame: Buffer | null,
    /** true when the failure is the node's (network, timeout) rather than the login's (bad database, password) */
    readonly nodeFailure: boolean,
  ) {
    super(message);
  }
}

/** SQLSTATEs used by the proxy (see https://www.postgresql.org/docs/current/errcodes-appendix.html). */
export const SqlState = {
  ProtocolViolation: '08P01',
  ConnectionFailure: '08006',
  CannotConnectNow: '57P03',
  TooManyConnections: '53300',
  InvalidPassword: '28P01',
  InvalidAuthorization: '28000',
  FeatureNotSupported: '0A000',
  AdminShutdown: '57P01',
  OutOfMemory: '53200',
  /** a NoticeResponse's code: a warning with no more precise class */
  Warning: '01000',
  NullValueNotAllowed: '22004',
  InvalidParameterValue: '22023',
  InFailedSqlTransaction: '25P02',
  IdleInTransactionSessionTimeout: '25P03',
  /** class 08, transaction_resolution_unknown: a COMMIT whose outcome rwsplit cannot know */
  TransactionResolutionUnknown: '08007',
  /** class 40, transaction_rollback: used when no participant gave a more precise SQLSTATE */
  TransactionRollback: '40000',
  /** class 40, serialization_failure: the code clients retry a transaction on */
  SerializationFailure: '40001',
  UndefinedObject: '42704',
  /** a server's error that came without a code */
  InternalError: 'XX000',
} as const;
