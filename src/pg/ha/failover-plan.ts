/**
 * The decisions of a PostgreSQL failover that need no server: when a primary counts as
 * failed, which replica to promote, and the controller's errors. Pure functions.
 */
import { parseLsn } from '../../core/lag.js';
import { nodeFailed, type FailureRun } from '../../core/liveness.js';

/** Error codes of failover and switchover; the admin API maps them to HTTP statuses. */
export type FailoverErrorCode =
  | 'FAILOVER_RUNNING'
  | 'NOT_AUTO'
  | 'UNKNOWN_SHARD'
  | 'BAD_TARGET'
  | 'NO_PRIMARY'
  | 'NO_CANDIDATE'
  | 'CATCHUP_TIMEOUT'
  | 'PROMOTION_FAILED';

/** A failover or switchover refused or failed; `code` is stable, `message` says what to do. */
export class FailoverError extends Error {
  constructor(
    readonly code: FailoverErrorCode,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** A node's current run of failed probes (the monitor keeps one per node); see core/liveness.ts. */
export type ProbeHealth = FailureRun;

/**
 * A primary is failed when a fresh connection attempt was refused (its server is gone), or
 * when it has been failing for at least `detectMs` and at least two probes in a row failed:
 * one lost probe, or one broken data-path connection, is never enough (core/liveness.ts).
 */
export function primaryFailed(health: ProbeHealth, now: number, detectMs: number): boolean {
  return nodeFailed(health, now, detectMs);
}

/** What a replica answered, right now, about its WAL. */
export interface CandidatePosition {
  id: string;
  /** position in the configuration (the fallback order) */
  order: number;
  /** pg_last_wal_receive_lsn(): WAL received and flushed to disk */
  receiveLsn: string | null;
  /** pg_last_wal_replay_lsn() */
  replayLsn: string | null;
}

const NONE = -1n;

function lsnOrNone(lsn: string | null): bigint {
  return lsn === null ? NONE : parseLsn(lsn);
}

/**
 * Best candidate first: the most WAL received wins (pg_promote replays all of it before the
 * node accepts writes, so that is what survives); replay position breaks ties, then the
 * configured order. A replica that replayed more than it reports received (it restarted and
 * its WAL receiver has not run since) counts with its replay position.
 */
export function rankCandidates(candidates: readonly CandidatePosition[]): CandidatePosition[] {
  const key = (c: CandidatePosition): [bigint, bigint] => {
    const replay = lsnOrNone(c.replayLsn);
    const received = lsnOrNone(c.receiveLsn);
    return [received > replay ? received : replay, replay];
  };
  return [...candidates].sort((a, b) => {
    const [ra, pa] = key(a);
    const [rb, pb] = key(b);
    if (ra !== rb) return ra > rb ? -1 : 1;
    if (pa !== pb) return pa > pb ? -1 : 1;
    return a.order - b.order;
  });
}
