/**
 * One client connection's consistency state: its level (`RWSPLIT CONSISTENCY`), its causal
 * token, and what the token cannot tell yet:
 * - writes sent and not yet followed by their position (pipelines): a read of that shard
 *   goes to the same node, on the same link, behind the write — Redis answers a connection
 *   in order, so the read sees it;
 * - shards whose position after an acknowledged write is unknown (the link died before the
 *   `INFO replication` behind the write answered, the node was demoted meanwhile, or the
 *   session only starts tracking now): reads go to the primary, and the primary's position
 *   read behind such a read becomes the token (it covers every write the primary holds).
 */
import type { CausalToken as PgCausalToken } from '../../core/causal.js';
import type { NodeStatus } from '../../core/topology.js';
import type { ConsistencyLevel } from '../../config/schema.js';
import { CausalToken } from '../routing/causal-token.js';
import type { ReplicationInfo } from '../ha/replication-info.js';

/** Where a read must go regardless of the token: the pending write's node, or the primary. */
export type Pin = { node: NodeStatus } | 'primary' | null;

export class SessionCausal {
  readonly token = new CausalToken();
  /** a PostgreSQL causal token handed over with `RWSPLIT TOKEN` (reads of stream-fed keys wait for it) */
  pgToken: PgCausalToken | null = null;
  private readonly pending = new Map<number, { node: NodeStatus; count: number }>();
  private readonly unknown = new Set<number>();
  /** shards this connection wrote to, for a session that starts tracking late */
  private readonly wrote = new Set<number>();
  private settleWaiters: (() => void)[] = [];
  /** the connection asked for its token: keep it whatever the level */
  private tokenWanted = false;

  constructor(private currentLevel: ConsistencyLevel) {}

  get level(): ConsistencyLevel {
    return this.currentLevel;
  }

  /** Changing to read-your-writes: positions of earlier writes were not kept, so they are unknown. */
  set level(level: ConsistencyLevel) {
    if (level === 'read-your-writes' && !this.tracking) this.lateStart();
    this.currentLevel = level;
  }

  /** Whether writes are followed by their position (the `INFO replication` behind them). */
  get tracking(): boolean {
    return this.currentLevel === 'read-your-writes' || this.tokenWanted;
  }

  /** `RWSPLIT TOKEN` was asked: from now on positions are kept whatever the level. */
  wantToken(): void {
    if (!this.tracking) this.lateStart();
    this.tokenWanted = true;
  }

  /** A write to `shard` was sent to `node`. */
  beginWrite(shard: number, node: NodeStatus): void {
    this.wrote.add(shard);
    if (!this.tracking) return;
    const p = this.pending.get(shard);
    if (p && p.node === node) p.count++;
    else this.pending.set(shard, { node, count: (p?.count ?? 0) + 1 });
  }

  /**
   * The position behind a write arrived (`info`), or never will (null). `acked`: the client
   * got a non-error reply for the write, so its token must cover it.
   */
  endWrite(shard: number, info: ReplicationInfo | null, acked: boolean): void {
    const p = this.pending.get(shard);
    if (p && --p.count <= 0) this.pending.delete(shard);
    if (info && info.role === 'master') this.resolve(shard, info);
    else if (acked) this.unknown.add(shard);
    this.settleIfDone();
  }

  /** A primary's position read behind one of this session's commands. */
  resolve(shard: number, info: ReplicationInfo): void {
    if (info.role !== 'master') return;
    this.token.recordWrite(shard, info);
    this.unknown.delete(shard);
  }

  /** Where a read of `shard` must go, when the token alone cannot route it. */
  pin(shard: number): Pin {
    const p = this.pending.get(shard);
    if (p) return { node: p.node };
    return this.unknown.has(shard) ? 'primary' : null;
  }

  /** Shards whose position is unknown (resolved by asking their primary). */
  unknownShards(): number[] {
    return [...this.unknown];
  }

  /** Runs `cb` once no write's position is pending. */
  whenSettled(cb: () => void): void {
    if (this.pending.size === 0) cb();
    else this.settleWaiters.push(cb);
  }

  private settleIfDone(): void {
    if (this.pending.size > 0 || this.settleWaiters.length === 0) return;
    const waiters = this.settleWaiters;
    this.settleWaiters = [];
    for (const cb of waiters) cb();
  }

  private lateStart(): void {
    for (const s of this.wrote) this.unknown.add(s);
  }
}
