/**
 * Errors raised by the local cluster launcher. Each carries a stable `code` so callers (the
 * demo, the test suite) can tell a missing system package from a node that failed to start.
 */

/** Stable codes of {@link ClusterError}. */
export type ClusterErrorCode =
  | 'PG_BINARIES_MISSING'
  | 'PG_USER_MISSING'
  | 'BAD_OPTIONS'
  | 'DIR_NOT_ACCESSIBLE'
  | 'COMMAND_FAILED'
  | 'NODE_EXITED'
  | 'NODE_START_TIMEOUT'
  | 'NODE_STOP_TIMEOUT'
  | 'PORT_IN_USE'
  | 'REPLICATION_TIMEOUT'
  | 'UNKNOWN_NODE'
  | 'NODE_NOT_RUNNING'
  | 'OLD_PROCESSES_ALIVE'
  | 'STALE_POSTMASTER'
  | 'REDIS_BINARY_MISSING'
  | 'REDIS_ERROR_REPLY'
  | 'NODE_UNREACHABLE';

/** An error of the local cluster launcher; the message says what to do about it. */
export class ClusterError extends Error {
  override readonly name = 'ClusterError';

  constructor(
    readonly code: ClusterErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
