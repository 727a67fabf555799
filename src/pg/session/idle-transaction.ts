/**
 * postgres.pool.idleInTransactionTimeoutMs: a client that stays idle inside a transaction
 * holds its backend connection (and the transaction's locks and snapshot) for everyone else.
 * Like PostgreSQL's idle_in_transaction_session_timeout, such a client is disconnected with
 * FATAL 25P03 and its backend dropped (the server rolls the transaction back), which frees the
 * pool slot. A periodic sweep rather than a timer per request: arming a timer at every
 * ReadyForQuery would cost the hot path; the sweep costs one counter increment per client
 * frame, and ends a session between timeoutMs and timeoutMs plus one sweep interval after its
 * last message.
 */
import { RwsplitPgError, SqlState } from '../errors.js';

/** What the sweep needs of a session (ClientSession implements it). */
export interface IdleTransactionSubject {
  /** client frames received so far: unchanged between two sweeps means no message came */
  readonly clientFrames: number;
  /** the client was told it is inside a transaction and the server owes it nothing */
  idleInTransaction(): boolean;
  /** ends the client's connection with this error (the backend and its transaction are dropped) */
  fatal(err: RwsplitPgError): void;
}

/** PostgreSQL's own SQLSTATE and text for idle_in_transaction_session_timeout. */
export function idleInTransactionError(timeoutMs: number): RwsplitPgError {
  return new RwsplitPgError(
    'IDLE_IN_TRANSACTION_TIMEOUT',
    SqlState.IdleInTransactionSessionTimeout,
    'terminating connection due to idle-in-transaction timeout',
    `rwsplit ends transactions left idle for ${timeoutMs} ms (postgres.pool.idleInTransactionTimeoutMs).`,
    'FATAL',
  );
}

export class IdleTransactionWatch {
  /** per session idle in a transaction: its frame count and when it was first seen so */
  private readonly marks = new WeakMap<IdleTransactionSubject, { frames: number; since: number }>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly timeoutMs: number,
    private readonly sessions: () => Iterable<IdleTransactionSubject>,
  ) {}

  /** How often the sessions are looked at: a tenth of the timeout, between 10 ms and 1 s. */
  get intervalMs(): number {
    return Math.min(1000, Math.max(10, Math.floor(this.timeoutMs / 10)));
  }

  start(): void {
    this.timer = setInterval(() => this.sweep(performance.now()), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  sweep(now: number): void {
    const expired: IdleTransactionSubject[] = [];
    for (const s of this.sessions()) {
      if (!s.idleInTransaction()) {
        this.marks.delete(s);
        continue;
      }
      const mark = this.marks.get(s);
      if (mark === undefined || mark.frames !== s.clientFrames) {
        this.marks.set(s, { frames: s.clientFrames, since: now });
      } else if (now - mark.since >= this.timeoutMs) {
        this.marks.delete(s);
        expired.push(s);
      }
    }
    // Ended after the loop: ending a session removes it from the collection being iterated.
    for (const s of expired) s.fatal(idleInTransactionError(this.timeoutMs));
  }
}
