/**
 * The two-phase-commit coordinator: makes a transaction that wrote on several shards commit
 * everywhere or nowhere (https://www.postgresql.org/docs/current/sql-prepare-transaction.html).
 *
 *   1. PREPARE TRANSACTION 'rwsplit:…' on every participant, in parallel;
 *   2. any refusal → roll every participant back, the client's COMMIT fails;
 *   3. all prepared → decide('commit') in the decision log: from the moment that row is
 *      committed the transaction is committed, whatever happens to this process;
 *   4. COMMIT PREPARED on every participant; one that fails now is left to recovery.
 *
 * The session owns the participants' connections; this module only sends them statements.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { pino, type Logger } from 'pino';

import { DecisionLogUnavailableError, LOG_TABLE, type Decision, type DecisionStore } from './decision-log.js';
import { messageOf, PreparedState, sqlStateOf, TwoPhaseError, TwoPhaseSqlState } from './errors.js';
import { FaultPoints } from './fault-points.js';
import { checkInstanceId, gidLiteral, newGid } from './gid.js';

/** One participant of a distributed transaction: an open transaction on one shard's primary. */
export interface Participant {
  readonly shard: string;
  /**
   * Runs one simple-protocol statement on that transaction's connection and resolves with its
   * CommandComplete tag when known; rejects with the server's error (pg's DatabaseError, whose
   * `code` is the SQLSTATE) or a connection error. The tag matters: PostgreSQL answers
   * PREPARE TRANSACTION in a transaction that already failed with the tag ROLLBACK, no error.
   */
  exec(sql: string): Promise<string | void>;
}

/** How a commit ended when it did commit. */
export interface CommitResult {
  gid: string;
  /** 'committed-pending': the decision is durable but some participants are left to recovery */
  outcome: 'committed' | 'committed-pending';
  /** the shards whose COMMIT PREPARED did not succeed (recovery finishes them) */
  pending: string[];
}

/** Options of {@link TwoPhaseCoordinator}. */
export interface TwoPhaseCoordinatorOptions {
  store: DecisionStore;
  /** this rwsplit instance, in every gid it makes: [A-Za-z0-9._-], at most 64 characters */
  instanceId: string;
  /** armed fault points; default {@link FaultPoints.fromEnv} (none unless RWSPLIT_FAULTS is set); null: none */
  faults?: FaultPoints | null;
  /**
   * postgres.sharding.twoPhase.decisionTimeoutMs: recovery may abort a prepared transaction
   * with no decision after this long, so a commit that got this slow decides 'abort' itself.
   */
  decisionTimeoutMs?: number;
  /** tries of decide('commit') when the log fails (default 3; decide is idempotent) */
  decideAttempts?: number;
  log?: Logger;
}

type PrepareState =
  | { state: 'prepared' }
  /** the server answered with an error: this participant is not prepared */
  | { state: 'refused'; error: unknown }
  /** the connection failed: it may or may not be prepared */
  | { state: 'unknown'; error: unknown };

/** SQLSTATE classes that mean the session died rather than that the statement was refused. */
const SESSION_LOST = /^(08|57|58|XX)/;

const ROLLBACK_HINT =
  'Nothing was committed on any shard; the transaction can be retried. ' +
  'Recovery rolls back, from the recorded decision, any shard that could not be reached.';

/** Runs two-phase commits; one instance serves every session of an rwsplit process. */
export class TwoPhaseCoordinator {
  /** outcomes so far, for metrics */
  readonly stats = { committed: 0, committedPending: 0, rolledBack: 0, inDoubt: 0 };
  private readonly store: DecisionStore;
  private readonly instanceId: string;
  private readonly faults: FaultPoints | undefined;
  private readonly decisionTimeoutMs: number;
  private readonly decideAttempts: number;
  private readonly log: Logger;

  constructor(opts: TwoPhaseCoordinatorOptions) {
    this.store = opts.store;
    this.instanceId = checkInstanceId(opts.instanceId);
    this.faults = opts.faults === undefined ? FaultPoints.fromEnv() : (opts.faults ?? undefined);
    this.decisionTimeoutMs = opts.decisionTimeoutMs ?? 30_000;
    this.decideAttempts = Math.max(1, opts.decideAttempts ?? 3);
    this.log = (opts.log ?? pino({ level: 'silent' })).child({ component: '2pc' });
  }

  /**
   * Commits the participants' transactions atomically. Resolves once the decision 'commit'
   * is durable (every COMMIT PREPARED done, or the failed ones left to recovery).
   *
   * @throws TwoPhaseError `TWOPC_ROLLED_BACK` (nothing committed anywhere) or `TWOPC_IN_DOUBT`
   * (the decision could not be recorded: recovery commits or rolls back everywhere later).
   * @throws FaultInjectedError from a throwing fault point, with nothing cleaned up.
   */
  async commit(participants: readonly Participant[]): Promise<CommitResult> {
    if (participants.length === 0) throw new RangeError('a distributed transaction needs a participant');
    const gid = newGid(this.instanceId);
    const shards = participants.map((p) => p.shard);
    const started = performance.now();
    const states = await this.prepareAll(gid, participants);

    const refused = participants.filter((_, i) => states[i]?.state !== 'prepared');
    if (refused.length > 0) {
      // The server's own error when one refused (a deferred constraint: 23505…); a lost
      // connection's 57P01 or 08006 would tell the client its own session died.
      const first = states.find((s) => s.state === 'refused') ?? states.find((s) => s.state === 'unknown');
      const cause = first !== undefined && 'error' in first ? first.error : undefined;
      const names = refused.map((p) => p.shard).join(', ');
      return this.rollBack(gid, participants, states, {
        sqlstate: first?.state === 'refused' ? sqlStateOf(cause) : undefined,
        message: `COMMIT failed: PREPARE TRANSACTION failed on shard ${names}: ${messageOf(cause)}`,
        cause,
      });
    }
    const elapsed = performance.now() - started;
    if (elapsed >= this.decisionTimeoutMs) {
      // Recovery may already be aborting it; deciding 'abort' ourselves keeps the rule simple.
      return this.rollBack(gid, participants, states, {
        message: `COMMIT failed: preparing took ${Math.round(elapsed)} ms, longer than decisionTimeoutMs`,
        hint: 'Raise postgres.sharding.twoPhase.decisionTimeoutMs if shards are this slow to prepare.',
      });
    }
    const decision = await this.decideCommit(gid, participants, states);
    if (decision === 'abort') {
      return this.rollBack(gid, participants, states, {
        message:
          'COMMIT failed: recovery had already decided to roll this transaction back (prepared too long)',
        hint: 'Raise postgres.sharding.twoPhase.decisionTimeoutMs if commits are this slow.',
      });
    }
    this.faults?.pass('2pc-after-decision');
    return this.commitAll(gid, participants, shards);
  }

  /** PREPARE on every participant at once; a throwing fault point rejects at once. */
  private prepareAll(gid: string, participants: readonly Participant[]): Promise<PrepareState[]> {
    const sql = `PREPARE TRANSACTION ${gidLiteral(gid)}`;
    return Promise.all(
      participants.map(async (p): Promise<PrepareState> => {
        let tag: string | void;
        try {
          tag = await p.exec(sql);
        } catch (error) {
          const state = sqlStateOf(error);
          return state === undefined || SESSION_LOST.test(state)
            ? { state: 'unknown', error }
            : { state: 'refused', error };
        }
        if (typeof tag === 'string' && tag.startsWith('ROLLBACK')) {
          const error = new Error(
            `the transaction on shard ${p.shard} had already failed (PREPARE answered ROLLBACK)`,
          );
          return { state: 'refused', error };
        }
        this.faults?.pass('2pc-after-prepare');
        return { state: 'prepared' };
      }),
    );
  }

  /**
   * decide('commit'), retried: decide is idempotent, so a retry after a lost answer reads the
   * row the first try wrote. When no try reached the log, nothing can be committed: roll back.
   */
  private async decideCommit(
    gid: string,
    participants: readonly Participant[],
    states: PrepareState[],
  ): Promise<Decision> {
    const shards = participants.map((p) => p.shard);
    let mayHaveWritten = false;
    let lastError: unknown;
    for (let attempt = 1; attempt <= this.decideAttempts; attempt++) {
      try {
        return await this.store.decide(gid, 'commit', shards);
      } catch (err) {
        lastError = err;
        if (!(err instanceof DecisionLogUnavailableError)) mayHaveWritten = true;
        this.log.warn({ gid, attempt, err: messageOf(err) }, '2PC decision not recorded');
        if (attempt < this.decideAttempts) await delay(100 * attempt);
      }
    }
    if (!mayHaveWritten) {
      return this.rollBack(gid, participants, states, {
        message: `COMMIT failed: the 2PC decision log is unreachable: ${messageOf(lastError)}`,
        hint: 'Check the primary of postgres.sharding.twoPhase.logShard.',
        cause: lastError,
      });
    }
    this.stats.inDoubt++;
    this.log.error({ gid, shards, err: messageOf(lastError) }, '2PC transaction in doubt');
    throw new TwoPhaseError(
      'TWOPC_IN_DOUBT',
      TwoPhaseSqlState.ResolutionUnknown,
      `COMMIT outcome unknown: the decision for ${gid} (shards ${shards.join(', ')}) may or may not be in ` +
        `${LOG_TABLE}: ${messageOf(lastError)}`,
      gid,
      'rwsplit recovery finishes it on every shard: committed if the decision was recorded, otherwise ' +
        'rolled back after postgres.sharding.twoPhase.decisionTimeoutMs.',
      lastError,
    );
  }

  /**
   * COMMIT PREPARED on the first participant alone, then on the others together: the fault
   * point between them then leaves a known state (one committed, the rest prepared).
   */
  private async commitAll(
    gid: string,
    participants: readonly Participant[],
    shards: string[],
  ): Promise<CommitResult> {
    const [first, ...rest] = participants;
    const done: boolean[] = [];
    if (first !== undefined) done.push(await this.commitOne(gid, first));
    if (rest.length > 0) this.faults?.pass('2pc-between-commits');
    done.push(...(await Promise.all(rest.map((p) => this.commitOne(gid, p)))));
    const pending = shards.filter((_, i) => done[i] !== true);
    if (pending.length === 0) {
      this.stats.committed++;
      return { gid, outcome: 'committed', pending };
    }
    this.stats.committedPending++;
    this.log.warn({ gid, pending }, '2PC committed; recovery will finish COMMIT PREPARED on some shards');
    return { gid, outcome: 'committed-pending', pending };
  }

  /** true when committed (or already finished by recovery: "does not exist" after a 'commit' decision). */
  private async commitOne(gid: string, p: Participant): Promise<boolean> {
    try {
      await p.exec(`COMMIT PREPARED ${gidLiteral(gid)}`);
      return true;
    } catch (err) {
      if (sqlStateOf(err) === PreparedState.Gone) return true;
      this.log.warn({ gid, shard: p.shard, err: messageOf(err) }, 'COMMIT PREPARED failed');
      return false;
    }
  }

  /**
   * Rolls every participant back, records 'abort' when one could not be (so recovery needs
   * not wait for the timeout), then throws `TWOPC_ROLLED_BACK`.
   */
  private async rollBack(
    gid: string,
    participants: readonly Participant[],
    states: PrepareState[],
    why: { message: string; sqlstate?: string | undefined; hint?: string; cause?: unknown },
  ): Promise<never> {
    const done = await Promise.all(participants.map((p, i) => this.rollBackOne(gid, p, states[i])));
    const left = participants.filter((_, i) => !done[i]).map((p) => p.shard);
    if (left.length > 0) await this.recordAbort(gid, participants, left);
    this.stats.rolledBack++;
    const sqlstate = why.sqlstate ?? TwoPhaseSqlState.TransactionRollback;
    throw new TwoPhaseError(
      'TWOPC_ROLLED_BACK',
      sqlstate,
      why.message,
      gid,
      why.hint ?? ROLLBACK_HINT,
      why.cause,
    );
  }

  private async rollBackOne(gid: string, p: Participant, state: PrepareState | undefined): Promise<boolean> {
    if (state !== undefined && state.state !== 'prepared') {
      // Ends the transaction if PREPARE never ran on it; a mere WARNING when PREPARE already did.
      await p.exec('ROLLBACK').catch(() => undefined);
      if (state.state === 'refused') return true;
    }
    try {
      await p.exec(`ROLLBACK PREPARED ${gidLiteral(gid)}`);
      return true;
    } catch (err) {
      if (sqlStateOf(err) === PreparedState.Gone) return true;
      this.log.warn({ gid, shard: p.shard, err: messageOf(err) }, 'ROLLBACK PREPARED failed');
      return false;
    }
  }

  private async recordAbort(
    gid: string,
    participants: readonly Participant[],
    left: string[],
  ): Promise<void> {
    try {
      const held = await this.store.decide(
        gid,
        'abort',
        participants.map((p) => p.shard),
      );
      if (held === 'commit')
        this.log.error({ gid }, "2PC log holds 'commit' for a transaction being rolled back");
    } catch (err) {
      this.log.warn(
        { gid, left, err: messageOf(err) },
        "2PC 'abort' not recorded; recovery rolls back after the timeout",
      );
    }
  }
}
