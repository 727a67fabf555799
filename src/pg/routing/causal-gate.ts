/**
 * The two round trips read-your-writes costs, run on a leased backend before it is handed
 * back or used: after a write, the primary's WAL insert position (the session's new causal
 * token); before a read on a replica not known to be far enough, that replica's replay
 * position, polled for up to causalWaitMs.
 */
import { parseLsn } from '../../core/lag.js';
import type { BackendConnection } from '../backend/backend-connection.js';
import { internalQuery, InternalQueryLost } from '../backend/internal-query.js';

// The insert position is at or past the end of every record this backend has written,
// commit records included, whether or not they are flushed yet (synchronous_commit=off).
export const COMMIT_POSITION_SQL = 'SELECT pg_current_wal_insert_lsn()::text';
export const REPLAY_POSITION_SQL = 'SELECT pg_last_wal_replay_lsn()::text';
const POLL_MS = 1;

export type GateOutcome =
  /** the replica has replayed the token (its position is returned) */
  | { kind: 'ready'; position: bigint }
  /** causalWaitMs passed first */
  | { kind: 'timeout' }
  /** the connection died: a node failure */
  | { kind: 'lost'; reason: string }
  /** the server refused the statement (a role without rights, a node that is not a replica) */
  | { kind: 'error'; reason: string };

/** The primary's position after this connection's writes, or an outcome explaining why not. */
export async function commitPosition(
  conn: BackendConnection,
): Promise<{ kind: 'ready'; position: bigint } | Exclude<GateOutcome, { kind: 'ready' | 'timeout' }>> {
  try {
    const res = await internalQuery(conn, COMMIT_POSITION_SQL);
    const text = res.rows[0]?.[0];
    if (!text) return { kind: 'error', reason: 'no WAL position returned' };
    return { kind: 'ready', position: parseLsn(text) };
  } catch (err) {
    return failure(err);
  }
}

/** Polls the replica behind `conn` until it has replayed `token`, for at most `waitMs`. */
export async function awaitReplay(
  conn: BackendConnection,
  token: bigint,
  waitMs: number,
  isCancelled: () => boolean,
): Promise<GateOutcome> {
  const deadline = performance.now() + waitMs;
  for (;;) {
    let position: bigint | null;
    try {
      const res = await internalQuery(conn, REPLAY_POSITION_SQL);
      const text = res.rows[0]?.[0];
      position = text ? parseLsn(text) : null;
    } catch (err) {
      return failure(err);
    }
    // NULL: the node is not (or no longer) a replica; its data may be another history.
    if (position === null)
      return { kind: 'error', reason: 'not a replica (pg_last_wal_replay_lsn() is NULL)' };
    if (position >= token) return { kind: 'ready', position };
    if (performance.now() >= deadline || isCancelled()) return { kind: 'timeout' };
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

function failure(err: unknown): Exclude<GateOutcome, { kind: 'ready' | 'timeout' }> {
  if (err instanceof InternalQueryLost) return { kind: 'lost', reason: err.message };
  return { kind: 'error', reason: (err as Error).message };
}
