/**
 * Errors of the two-phase-commit coordinator. A {@link TwoPhaseError} is what the client's
 * `COMMIT` fails with: it is a {@link RwsplitPgError}, so the session sends it as an
 * ErrorResponse with a real SQLSTATE.
 */
import { RwsplitPgError, SqlState } from '../../errors.js';

/** Stable codes of {@link TwoPhaseError}. */
export type TwoPhaseErrorCode =
  /** every participant was rolled back (or will be, by recovery, from the recorded 'abort') */
  | 'TWOPC_ROLLED_BACK'
  /** the decision could not be made durable or read back: recovery decides, the client cannot know yet */
  | 'TWOPC_IN_DOUBT';

/** How a distributed transaction that did not commit ended, as far as the coordinator knows. */
export class TwoPhaseError extends RwsplitPgError {
  override readonly name = 'TwoPhaseError';

  constructor(
    override readonly code: TwoPhaseErrorCode,
    sqlstate: string,
    message: string,
    /** the transaction's gid, to find it in `rwsplit_2pc_log` and the logs */
    readonly gid: string,
    hint?: string,
    override readonly cause?: unknown,
  ) {
    super(code, sqlstate, message, hint);
  }
}

/** SQLSTATEs of {@link TwoPhaseError}, from the one table in pg/errors.ts. */
export const TwoPhaseSqlState = {
  TransactionRollback: SqlState.TransactionRollback,
  ResolutionUnknown: SqlState.TransactionResolutionUnknown,
} as const;

/** The SQLSTATE of a server error (pg's DatabaseError `code`), or undefined for anything else. */
export function sqlStateOf(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null || !('code' in err)) return undefined;
  const code = (err as { code: unknown }).code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** The message of anything thrown. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** SQLSTATEs of COMMIT/ROLLBACK PREPARED that the coordinator and recovery read. */
export const PreparedState = {
  /** 42704 "prepared transaction with identifier … does not exist": someone already finished it */
  Gone: '42704',
  /** 55000 "prepared transaction with identifier … is busy": another session is finishing it now */
  Busy: '55000',
} as const;
