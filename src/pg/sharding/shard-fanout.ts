/**
 * Statements a sharded session runs on every shard (see shard-keyless.ts for which): schema
 * changes and keyless writes in one two-phase transaction over every shard's primary (or,
 * for what PostgreSQL refuses in a transaction block, on each shard in turn), keyless reads
 * merged (shard-merge.ts), and the session's settings (shard-session-state.ts), which are
 * tried on one shard and then follow the session to every backend it leases.
 */
import type { NodeStatus } from '../../core/topology.js';
import type { BackendConnection } from '../backend/backend-connection.js';
import type { BackendPool } from '../backend/backend-pool.js';
import { collect, type Collected } from './all-shards-read.js';
import { RwsplitPgError, SqlState } from '../errors.js';
import { internalQuery } from '../backend/internal-query.js';
import {
  BackendCode,
  decodeErrorFields,
  encodeCommandComplete,
  encodeErrorResponse,
} from '../protocol/index.js';
import type { SessionContext, ShardingContext } from '../session/session-context.js';
import { noPrimaryError } from '../session/session-recovery.js';
import { mergeShardRows, type MergePlan } from './shard-merge.js';
import { ShardSessionState, type SettingChange } from './shard-session-state.js';
import type { Lease } from '../backend/lease.js';

/** What the fan-out needs of its session. */
export interface FanOutHost {
  poolFor(node: NodeStatus): BackendPool;
  /** the node a read of `shard` uses (the primary under `strong`) */
  readNodeOf(shard: string): NodeStatus;
  /** two-phase commit over the participants: the frames that answer COMMIT */
  commitAll(all: readonly Lease[]): Promise<Buffer[]>;
}

interface FanOutLease {
  shard: string;
  node: NodeStatus;
  pool: BackendPool;
  conn: BackendConnection;
  /** a transaction of ours is open on it: if anything fails, the connection is dropped */
  open?: boolean;
}

/** Whether the database's collation orders text as bytes, per sharding context (asked once). */
const bytewiseCollation = new WeakMap<ShardingContext, boolean>();

export class ShardFanOut {
  /** the session's SET/RESET statements, applied on every backend it leases */
  readonly state = new ShardSessionState();

  constructor(
    private readonly ctx: SessionContext,
    private readonly sharding: ShardingContext,
    private readonly host: FanOutHost,
  ) {}

  /** A session SET/RESET: run on one shard (so the server checks it), then recorded. */
  async applySetting(frame: Buffer, change: SettingChange): Promise<Buffer[]> {
    const shard = this.sharding.resolver.anyShard();
    return this.withLeases([shard], false, async ([lease]) => {
      const answer = await collect(lease!, frame);
      if (answer.error) return [answer.error];
      this.state.record(change);
      this.state.markApplied(lease!.conn);
      return answer.frames;
    });
  }

  /**
   * One statement on every shard's primary; `atomic`: in one two-phase transaction;
   * `replicated`: the client gets the first shard's rows and count (every shard has the same).
   */
  async everyShard(frame: Buffer, atomic: boolean, replicated: boolean): Promise<Buffer[]> {
    const shards = this.sharding.resolver.shardNames;
    return this.withLeases(shards, true, async (leases) => {
      if (!atomic) {
        const answers: Collected[] = [];
        for (const [i, lease] of leases.entries()) {
          const answer = await collect(lease, frame);
          if (answer.error) {
            const done = shards.slice(0, i);
            return [
              namedError(
                answer.error,
                lease.shard,
                done.length > 0
                  ? `It ran on shard ${done.join(', ')} already and was not run on the shards after ${lease.shard}; this statement cannot run in a transaction block, so it is not atomic across shards.`
                  : undefined,
              ),
            ];
          }
          answers.push(answer);
        }
        return combine(replicated ? answers.slice(0, 1) : answers);
      }
      for (const l of leases) l.open = true;
      await Promise.all(leases.map((l) => internalQuery(l.conn, 'BEGIN')));
      const answers = await Promise.all(leases.map((l) => collect(l, frame)));
      const failed = answers.findIndex((a) => a.error !== null);
      if (failed >= 0) {
        await Promise.all(leases.map((l) => internalQuery(l.conn, 'ROLLBACK')));
        for (const l of leases) l.open = false;
        return [
          namedError(answers[failed]!.error!, leases[failed]!.shard, 'Nothing was changed on any shard.'),
        ];
      }
      const participants = leases.map((l) => ({ ...l, txStatus: 0x54 /* T */ }));
      const committed = await this.host.commitAll(participants);
      for (const l of leases) l.open = false;
      const ok = committed.some(
        (f) => f[0] === BackendCode.CommandComplete && f.toString('utf8', 5, f.length - 1) === 'COMMIT',
      );
      if (!ok) return committed;
      // Warnings of the commit (a shard finishing later) go with the statement's own answer.
      return [
        ...committed.filter((f) => f[0] === BackendCode.NoticeResponse),
        ...combine(replicated ? answers.slice(0, 1) : answers),
      ];
    });
  }

  /**
   * A keyless read: the plan's query on one read node per shard, the rows merged. `query`:
   * the frames to send (the plan's text in a Query, or an extended-protocol group).
   */
  async mergeRead(plan: MergePlan, query: Buffer): Promise<Buffer[]> {
    const shards = this.sharding.resolver.shardNames;
    return this.withLeases(shards, false, (leases) => this.mergeOn(plan, query, leases));
  }

  /** The merged read on these backends (one per shard: a transaction's, or leased for it). */
  async mergeOn(
    plan: MergePlan,
    query: Buffer,
    leases: readonly Lease[] | readonly FanOutLease[],
  ): Promise<Buffer[]> {
    const targets = leases.map(target);
    let bytewise = bytewiseCollation.get(this.sharding);
    if (bytewise === undefined) {
      const r = await internalQuery(
        targets[0]!.conn,
        'SELECT datcollate FROM pg_database WHERE datname = current_database()',
      );
      bytewise = ['C', 'POSIX'].includes(r.rows[0]?.[0] ?? '');
      bytewiseCollation.set(this.sharding, bytewise);
    }
    const answers = await Promise.all(targets.map((t) => collect(t, query)));
    for (const t of targets) t.conn.unnamedKey = null; // the group replaced the unnamed statement
    const failed = answers.findIndex((a) => a.error !== null);
    if (failed >= 0) return [namedError(answers[failed]!.error!, targets[failed]!.shard)];
    try {
      return mergeShardRows(
        plan,
        answers.map((a) => ({
          description: a.frames.find((f) => f[0] === BackendCode.RowDescription) ?? null,
          rows: a.frames.filter((f) => f[0] === BackendCode.DataRow),
        })),
        bytewise,
      );
    } catch (err) {
      if (err instanceof RwsplitPgError) return [err.toFrame()];
      throw err;
    }
  }

  /**
   * One statement (a Query, or an extended-protocol group) on each of a transaction's backends,
   * one per shard, the answers combined; `failed` when any shard refused it (its error, named).
   */
  async runOn(
    leases: readonly Lease[],
    frame: Buffer,
    replicated: boolean,
  ): Promise<{ frames: Buffer[]; failed: boolean }> {
    const targets = leases.map(target);
    const answers = await Promise.all(targets.map((t) => collect(t, frame)));
    for (const t of targets) t.conn.unnamedKey = null;
    const failed = answers.findIndex((a) => a.error !== null);
    if (failed >= 0)
      return { frames: [namedError(answers[failed]!.error!, targets[failed]!.shard)], failed: true };
    return { frames: combine(replicated ? answers.slice(0, 1) : answers), failed: false };
  }

  /**
   * Leases a backend on each shard (its primary, or its read node), brings it to the
   * session's settings, runs `work`, and gives every backend back.
   */
  private async withLeases(
    shards: readonly string[],
    primary: boolean,
    work: (leases: FanOutLease[]) => Promise<Buffer[]>,
  ): Promise<Buffer[]> {
    const leases: FanOutLease[] = [];
    try {
      for (const shard of shards) {
        const node = primary ? this.ctx.topology.writablePrimary(shard) : this.host.readNodeOf(shard);
        if (!node) throw noPrimaryError(this.ctx.topology.failover(shard));
        const pool = this.host.poolFor(node);
        leases.push({ shard, node, pool, conn: await pool.acquire() });
      }
      for (const l of leases) {
        const sync = this.state.syncQuery(l.conn);
        if (sync !== null) await internalQuery(l.conn, sync);
      }
      return await work(leases);
    } catch (err) {
      if (err instanceof RwsplitPgError) return [err.toFrame()];
      return [
        new RwsplitPgError(
          'SHARD_FANOUT_FAILED',
          SqlState.ConnectionFailure,
          `rwsplit: running the statement on every shard failed: ${(err as Error).message}`,
        ).toFrame(),
      ];
    } finally {
      for (const l of leases) {
        l.conn.listener = null;
        l.conn.unnamedKey = null; // an extended-protocol group replaced the unnamed statement
        if (l.conn.closed) l.pool.lost();
        else if (l.open) l.pool.discard(l.conn, 'left in a transaction by a failed statement on every shard');
        else l.pool.release(l.conn);
      }
    }
  }
}

/** A lease as a target of collect(): its shard and connection. */
function target(l: Lease | FanOutLease): { shard: string; conn: BackendConnection } {
  return { shard: 'shard' in l ? l.shard : l.node.spec.shard, conn: l.conn };
}

/** A shard's error, its message naming the shard. */
export function namedError(frame: Buffer, shard: string, detail?: string): Buffer {
  const f = decodeErrorFields(frame);
  return encodeErrorResponse({
    severity: 'ERROR',
    code: f.get('C') ?? SqlState.InternalError,
    message: `shard ${shard}: ${f.get('M') ?? 'error'}`,
    ...(f.get('D') !== undefined || detail !== undefined
      ? { detail: [f.get('D'), detail].filter((x) => x !== undefined).join(' ') }
      : {}),
    ...(f.get('H') !== undefined ? { hint: f.get('H') } : {}),
  });
}

/**
 * The shards' answers as one: the first RowDescription, every row, notices once per text, and
 * one CommandComplete whose row count is the total (`UPDATE 7`, `INSERT 0 4`).
 */
function combine(answers: readonly Collected[]): Buffer[] {
  const out: Buffer[] = [];
  const notices = new Set<string>();
  let described = false;
  let tag: string | null = null;
  let count = 0n;
  let counted = true;
  for (const [i, a] of answers.entries()) {
    for (const f of a.frames) {
      if (
        f[0] === BackendCode.ParseComplete ||
        f[0] === BackendCode.BindComplete ||
        f[0] === BackendCode.NoData
      ) {
        if (i === 0) out.push(f); // extended protocol: the first shard's acknowledgements
      } else if (f[0] === BackendCode.RowDescription) {
        if (!described) out.push(f);
        described = true;
      } else if (f[0] === BackendCode.DataRow) out.push(f);
      else if (f[0] === BackendCode.NoticeResponse) {
        const key = f.toString('latin1');
        if (!notices.has(key)) out.push(f);
        notices.add(key);
      } else if (f[0] === BackendCode.CommandComplete) {
        const text = f.toString('utf8', 5, f.length - 1);
        const m = /^(.*?)(\d+)$/.exec(text);
        if (m && /^[A-Z]+ (0 )?$/.test(m[1]!)) {
          tag = m[1]!;
          count += BigInt(m[2]!);
        } else {
          tag = text;
          counted = false;
        }
      }
    }
  }
  out.push(encodeCommandComplete(tag === null ? 'SELECT 0' : counted ? `${tag}${count}` : tag));
  return out;
}
