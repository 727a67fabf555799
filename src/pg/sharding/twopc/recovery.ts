/**
 * Recovery of distributed transactions left prepared by a coordinator that died or lost a
 * shard: at start and every recoveryIntervalMs, every shard's primary is asked for prepared
 * transactions with our prefix, and each is finished from the decision log:
 *   'commit' → COMMIT PREPARED;  'abort' → ROLLBACK PREPARED;
 *   no decision, prepared longer than decisionTimeoutMs ago → decide('abort'), then act on
 *   whatever decision holds (a coordinator may have written 'commit' first);
 *   no decision, younger → left alone (its coordinator is probably still at work).
 * Every rwsplit instance may run this at once: first-writer-wins in the log makes them agree,
 * and finishing a gid someone else just finished ("does not exist") counts as done.
 */
import { pino, type Logger } from 'pino';

import type { Decision, DecisionStore } from './decision-log.js';
import { messageOf, PreparedState, sqlStateOf } from './errors.js';
import { GID_PREFIX, gidLiteral, parseGid } from './gid.js';
import { withTimeout, type SqlClient } from './sql-client.js';

/** One shard, as recovery reaches it. */
export interface RecoveryShard {
  readonly shard: string;
  /**
   * Connects to the shard's current primary, to `database` when given (a prepared transaction
   * can only be finished from the database it was prepared in), else to the configured one.
   */
  connect(database?: string): Promise<SqlClient>;
}

/** Options of {@link TwoPhaseRecovery}. */
export interface TwoPhaseRecoveryOptions {
  store: DecisionStore;
  /** every shard (read on each run, so a failover's new primary is used) */
  shards: () => readonly RecoveryShard[];
  /** postgres.sharding.twoPhase.decisionTimeoutMs */
  decisionTimeoutMs: number;
  /**
   * Prepared transactions younger than this are left alone even when decided: their
   * coordinator is most likely finishing them right now, and two COMMIT PREPAREDs of one gid
   * make one of them fail with "is busy" (default 0).
   */
  settleMs?: number;
  /** postgres.sharding.twoPhase.recoveryIntervalMs (default 5,000) */
  recoveryIntervalMs?: number;
  /**
   * How long an 'abort' row is kept once no shard has its gid prepared (default: 10 ×
   * decisionTimeoutMs, at least 1 h). Longer than for 'commit' rows: a coordinator stalled
   * between its PREPAREs could still prepare a gid that recovery already aborted, and the
   * row is what makes it roll that back.
   */
  abortRetentionMs?: number;
  /** log rows forgotten per run at most (default 1,000) */
  forgetBatch?: number;
  /** a query to a shard not answered after this long fails (default 10,000 ms) */
  queryTimeoutMs?: number;
  log?: Logger;
}

/** A prepared transaction, where it is. */
export interface PreparedRef {
  shard: string;
  gid: string;
}

/** What one run did. */
export interface RecoveryReport {
  /** shards whose prepared transactions were listed */
  scanned: string[];
  /** shards that could not be listed (their transactions wait for the next run) */
  unreachable: string[];
  committed: PreparedRef[];
  rolledBack: PreparedRef[];
  /** gids that had no decision and were old enough: recovery recorded 'abort' (or read a concurrent 'commit') */
  decided: string[];
  /** left for a later run: no decision yet and younger than decisionTimeoutMs, or busy elsewhere */
  waiting: PreparedRef[];
  /** log rows deleted because no shard has their gid prepared any more */
  forgotten: number;
  errors: string[];
}

interface PreparedRow {
  gid: string;
  database: string;
  ageMs: number;
  here: string;
}

const LIST_SQL = `SELECT gid, database, current_database() AS here,
  (EXTRACT(EPOCH FROM now() - prepared) * 1000)::float8 AS age_ms
  FROM pg_prepared_xacts WHERE gid LIKE '${GID_PREFIX}%'`;

function emptyReport(): RecoveryReport {
  return {
    scanned: [],
    unreachable: [],
    committed: [],
    rolledBack: [],
    decided: [],
    waiting: [],
    forgotten: 0,
    errors: [],
  };
}

/** Finds and finishes prepared transactions left behind; see the module comment. */
export class TwoPhaseRecovery {
  private readonly log: Logger;
  private readonly intervalMs: number;
  private readonly abortRetentionMs: number;
  private readonly queryTimeoutMs: number;
  private running: Promise<RecoveryReport> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = true;

  constructor(private readonly opts: TwoPhaseRecoveryOptions) {
    this.log = (opts.log ?? pino({ level: 'silent' })).child({ component: '2pc-recovery' });
    this.intervalMs = opts.recoveryIntervalMs ?? 5_000;
    this.abortRetentionMs = opts.abortRetentionMs ?? Math.max(10 * opts.decisionTimeoutMs, 3_600_000);
    this.queryTimeoutMs = opts.queryTimeoutMs ?? 10_000;
  }

  /** Runs now, then every recoveryIntervalMs until {@link stop}. The timer does not keep the process up. */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    void this.tick();
  }

  /** Stops the timer and waits for a run in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running?.catch(() => undefined);
  }

  /** One run over every shard; a run already in progress is shared rather than doubled. */
  runOnce(): Promise<RecoveryReport> {
    this.running ??= this.run().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async tick(): Promise<void> {
    try {
      const report = await this.runOnce();
      const acted = report.committed.length + report.rolledBack.length + report.decided.length;
      if (acted > 0 || report.errors.length > 0 || report.unreachable.length > 0) {
        this.log.info(
          { ...report, committed: report.committed.length, rolledBack: report.rolledBack.length },
          '2PC recovery run',
        );
      }
    } catch (err) {
      this.log.warn({ err: messageOf(err) }, '2PC recovery run failed');
    }
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), this.intervalMs);
    this.timer.unref();
  }

  private async run(): Promise<RecoveryReport> {
    const report = emptyReport();
    // Listed BEFORE the scan: a 'commit' row older than the scan has all its PREPAREs done
    // before the scan, so a gid the scan does not find is finished everywhere.
    const candidates = await this.opts.store
      .listDecided(
        { commitMs: this.opts.decisionTimeoutMs, abortMs: this.abortRetentionMs },
        this.opts.forgetBatch ?? 1_000,
      )
      .catch((err: unknown) => {
        report.errors.push(`listing old decisions: ${messageOf(err)}`);
        return [];
      });
    const seen = new Set<string>();
    const decisions = new Map<string, Promise<Decision | null>>();
    const shards = this.opts.shards();
    await Promise.all(shards.map((s) => this.recoverShard(s, report, seen, decisions)));
    if (report.unreachable.length === 0 && report.scanned.length === shards.length) {
      const forgettable = candidates.filter((gid) => !seen.has(gid));
      try {
        await this.opts.store.forget(forgettable);
        report.forgotten = forgettable.length;
      } catch (err) {
        report.errors.push(`forgetting decisions: ${messageOf(err)}`);
      }
    }
    return report;
  }

  private async recoverShard(
    s: RecoveryShard,
    report: RecoveryReport,
    seen: Set<string>,
    decisions: Map<string, Promise<Decision | null>>,
  ): Promise<void> {
    let client: SqlClient;
    try {
      client = await this.timed(s.connect(), `connecting to shard ${s.shard}`);
    } catch (err) {
      report.unreachable.push(s.shard);
      this.log.debug({ shard: s.shard, err: messageOf(err) }, '2PC recovery: shard unreachable');
      return;
    }
    client.on('error', () => undefined);
    try {
      const rows = await this.listPrepared(client, s.shard);
      report.scanned.push(s.shard);
      for (const row of rows) seen.add(row.gid);
      const plan = await this.plan(s.shard, rows, report, decisions);
      await this.finish(s, client, plan, report);
    } catch (err) {
      report.unreachable.push(s.shard);
      report.errors.push(`shard ${s.shard}: ${messageOf(err)}`);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  private async listPrepared(client: SqlClient, shard: string): Promise<PreparedRow[]> {
    const { rows } = await this.timed(client.query(LIST_SQL), `listing prepared transactions on ${shard}`);
    return rows.map((r) => {
      const row = r as { gid: string; database: string; here: string; age_ms: number };
      return { gid: row.gid, database: row.database, here: row.here, ageMs: Number(row.age_ms) };
    });
  }

  /** The decision for each prepared row: recorded, newly decided 'abort', or null (leave it). */
  private async plan(
    shard: string,
    rows: PreparedRow[],
    report: RecoveryReport,
    decisions: Map<string, Promise<Decision | null>>,
  ): Promise<{ row: PreparedRow; decision: Decision }[]> {
    const plan: { row: PreparedRow; decision: Decision }[] = [];
    for (const row of rows) {
      if (row.ageMs < (this.opts.settleMs ?? 0)) {
        report.waiting.push({ shard, gid: row.gid });
        continue;
      }
      if (parseGid(row.gid) === null) {
        report.errors.push(`shard ${shard}: '${row.gid}' has our prefix but not our format; left alone`);
        continue;
      }
      let decision: Decision | null;
      try {
        decision = await this.decisionFor(row, shard, report, decisions);
      } catch (err) {
        report.errors.push(`decision for ${row.gid}: ${messageOf(err)}`);
        continue;
      }
      if (decision === null) report.waiting.push({ shard, gid: row.gid });
      else plan.push({ row, decision });
    }
    return plan;
  }

  /** Looks the decision up once per run and gid (a gid is prepared on several shards). */
  private decisionFor(
    row: PreparedRow,
    shard: string,
    report: RecoveryReport,
    decisions: Map<string, Promise<Decision | null>>,
  ): Promise<Decision | null> {
    let pending = decisions.get(row.gid);
    if (pending === undefined) {
      pending = this.opts.store.lookup(row.gid).then(async (recorded) => {
        if (recorded !== null || row.ageMs <= this.opts.decisionTimeoutMs) return recorded;
        // First writer wins: if the coordinator recorded 'commit' meanwhile, that is what holds.
        const held = await this.opts.store.decide(row.gid, 'abort', [shard]);
        report.decided.push(row.gid);
        this.log.warn(
          { gid: row.gid, shard, ageMs: Math.round(row.ageMs), held },
          '2PC: no decision in time',
        );
        return held;
      });
      // A failure is not cached: the next shard with this gid asks again.
      pending.catch(() => decisions.delete(row.gid));
      decisions.set(row.gid, pending);
    }
    return pending;
  }

  /** Runs COMMIT/ROLLBACK PREPARED, from a connection to the database each was prepared in. */
  private async finish(
    s: RecoveryShard,
    main: SqlClient,
    plan: { row: PreparedRow; decision: Decision }[],
    report: RecoveryReport,
  ): Promise<void> {
    const byDatabase = new Map<string, typeof plan>();
    for (const item of plan)
      byDatabase.set(item.row.database, [...(byDatabase.get(item.row.database) ?? []), item]);
    for (const [database, items] of byDatabase) {
      const here = items[0]?.row.here === database;
      let client = main;
      if (!here) {
        try {
          client = await this.timed(s.connect(database), `connecting to ${s.shard}/${database}`);
          client.on('error', () => undefined);
        } catch (err) {
          report.errors.push(`shard ${s.shard}, database ${database}: ${messageOf(err)}`);
          continue;
        }
      }
      try {
        for (const { row, decision } of items)
          await this.finishOne(client, s.shard, row.gid, decision, report);
      } finally {
        if (!here) await client.end().catch(() => undefined);
      }
    }
  }

  private async finishOne(
    client: SqlClient,
    shard: string,
    gid: string,
    decision: Decision,
    report: RecoveryReport,
  ): Promise<void> {
    const sql = `${decision === 'commit' ? 'COMMIT' : 'ROLLBACK'} PREPARED ${gidLiteral(gid)}`;
    const done = decision === 'commit' ? report.committed : report.rolledBack;
    try {
      await this.timed(client.query(sql), sql);
      done.push({ shard, gid });
    } catch (err) {
      const state = sqlStateOf(err);
      if (state === PreparedState.Gone) return; // finished by its coordinator or another instance
      if (state === PreparedState.Busy) report.waiting.push({ shard, gid });
      else report.errors.push(`shard ${shard}: ${sql}: ${messageOf(err)}`);
    }
  }

  private timed<T>(work: Promise<T>, what: string): Promise<T> {
    return withTimeout(
      work,
      this.queryTimeoutMs,
      () => new Error(`${what}: no answer within ${this.queryTimeoutMs} ms`),
    );
  }
}
