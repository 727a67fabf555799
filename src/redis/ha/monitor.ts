/**
 * Probes every Redis node on an interval with `INFO replication` (one round trip: role,
 * history id, offset, link state; see replication-info.ts). Per shard, the primary
 * authority (primary-authority.ts) turns a round into roles and fences; the positions go to
 * the position book (read-your-writes); lag in bytes (primary offset minus the replica's
 * applied offset) and in time (since the primary first passed that offset) feeds the
 * staleness bound. A probe that fails or times out takes the node out of rotation at once;
 * consecutive failures are counted for failure detection (failover.ts).
 */
import type { Logger } from 'pino';
import { PositionHistory } from '../../core/lag.js';
import type { StalenessTracker } from '../../core/staleness.js';
import type { NodeStatus, Topology } from '../../core/topology.js';
import { loopStall, ProbeExcused, ProbeTimeout, withProbeDeadline } from '../../core/liveness.js';
import { connectOutcome } from '../../util/connect-check.js';
import { RedisLink } from '../backend/backend-link.js';
import { INFO_REPLICATION, type PositionBook } from '../routing/position-book.js';
import type { AuthorityDecision, NodeProbe, PrimaryAuthority } from './primary-authority.js';
import { replicationInfoFromReply, type ReplicationInfo } from './replication-info.js';
import { encodeCommand } from '../resp/index.js';

/** The client name of the monitor's connections; SLOWLOG GET through rwsplit leaves their entries out. */
export const MONITOR_CLIENT_NAME = 'rwsplit-monitor';
const SETNAME = encodeCommand(['CLIENT', 'SETNAME', MONITOR_CLIENT_NAME]);

export interface RedisMonitorOptions {
  intervalMs: number;
  timeoutMs: number;
  password?: string;
  user?: string;
  onLag?: (nodeId: string, lagMs: number) => void;
}

/** One shard as the monitor watches it. */
export interface MonitoredShard {
  topology: Topology;
  authority: PrimaryAuthority;
}

/** Consecutive probe failures of a node, for failure detection. */
export interface FailureStreak {
  count: number;
  /** when the first failure of the streak was seen (a probe, or the data path) */
  since: number;
  /** when a fresh connection attempt was refused during the streak (the server is gone) */
  confirmedDownAt?: number;
}

/** Called after each shard's round with what was decided and seen. */
export type RoundListener = (shard: MonitoredShard, decision: AuthorityDecision, probes: NodeProbe[]) => void;

export class RedisMonitor {
  private readonly links = new Map<string, RedisLink>();
  private readonly histories = new Map<Topology, PositionHistory>();
  private readonly streaks = new Map<string, FailureStreak>();
  /** each node's last probe answer, kept for a node that answers BUSY */
  private readonly lastInfo = new Map<string, ReplicationInfo>();
  private readonly listeners: RoundListener[] = [];
  /** awaited with each round's probes (Sentinel queries) */
  private readonly sources: (() => Promise<void>)[] = [];
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** nodes with a confirming connection attempt under way */
  private readonly confirming = new Set<string>();
  /** when each node last answered a probe (a confirmation older than that is stale) */
  private readonly lastOkAt = new Map<string, number>();

  constructor(
    readonly shards: readonly MonitoredShard[],
    private readonly staleness: StalenessTracker,
    private readonly book: PositionBook,
    private readonly opts: RedisMonitorOptions,
    private readonly log: Logger,
  ) {
    for (const s of shards) {
      this.histories.set(s.topology, new PositionHistory());
      // A failure seen by the data path starts the streak's clock; probes still decide.
      s.topology.on('event', (e: { type: string; node: string; at: number }) => {
        if (e.type === 'down' && !this.streaks.has(e.node))
          this.streaks.set(e.node, { count: 0, since: e.at });
        if (e.type === 'down') {
          this.book.forget(e.node);
          this.confirm(s, e.node);
        }
      });
    }
  }

  /**
   * One fresh connection attempt to a node that just failed: refused means nothing listens
   * any more, which a failover may act on at once (core/liveness.ts); then the shard is probed
   * again without it, so the round listeners (the failover) see it now.
   */
  private confirm(shard: MonitoredShard, id: string): void {
    const n = shard.topology.get(id);
    if (!n || this.stopped || this.confirming.has(id)) return;
    this.confirming.add(id);
    const startedAt = Date.now();
    void connectOutcome(n.spec.host, n.spec.port, this.opts.timeoutMs)
      .then(async (outcome) => {
        if (outcome !== 'refused' || this.stopped) return;
        if ((this.lastOkAt.get(id) ?? 0) > startedAt) return; // it answered since
        const streak = this.streaks.get(id) ?? { count: 0, since: startedAt };
        streak.confirmedDownAt ??= Date.now();
        this.streaks.set(id, streak);
        shard.topology.markDown(id, `connection refused: nothing listens on ${n.spec.host}:${n.spec.port}`);
        this.log.warn({ node: id }, 'node confirmed down: connection refused');
        await this.probeShard(shard, new Set([id]));
      })
      .catch((err: Error) => this.log.warn({ node: id, err: err.message }, 'confirming a failure failed'))
      .finally(() => this.confirming.delete(id));
  }

  get intervalMs(): number {
    return this.opts.intervalMs;
  }

  async start(): Promise<void> {
    loopStall.start();
    await this.round();
    this.schedule();
  }

  stop(): void {
    if (!this.stopped) loopStall.stop();
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    for (const l of this.links.values()) l.destroy('monitor stopped');
    this.links.clear();
  }

  onRound(listener: RoundListener): void {
    this.listeners.push(listener);
  }

  /** Something to refresh with every round (the Sentinel follower). */
  addSource(refresh: () => Promise<void>): void {
    this.sources.push(refresh);
  }

  /** The node's current streak of failed probes, if it is failing. */
  failures(nodeId: string): FailureStreak | undefined {
    return this.streaks.get(nodeId);
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.round().finally(() => this.schedule()), this.opts.intervalMs);
    this.timer.unref();
  }

  async round(): Promise<void> {
    await Promise.all([
      ...this.sources.map((refresh) => refresh().catch(() => undefined)),
      ...this.shards.map((s) => this.probeShard(s)),
    ]);
  }

  /**
   * Probes one shard now (after a promotion, or when Sentinel announced a switch). Nodes in
   * `skip` count as not answering without being asked (a primary being replaced: a
   * SIGSTOPped one would hold the round up for the probe timeout).
   */
  async probeShard(shard: MonitoredShard, skip?: ReadonlySet<string>): Promise<void> {
    const t = shard.topology;
    const probes: NodeProbe[] = await Promise.all(
      t.nodes.map(async (n) => ({
        id: n.spec.id,
        host: n.spec.host,
        port: n.spec.port,
        info: skip?.has(n.spec.id) ? null : await this.probe(n, t),
      })),
    );
    if (this.stopped) return;
    const fenced = new Set(t.nodes.filter((n) => n.fenced).map((n) => n.spec.id));
    const decision = shard.authority.decide(probes, fenced);
    // Fences first: no moment where a stray master is routable with its new role.
    for (const f of decision.fence) {
      this.log.warn({ node: f.id, reason: f.reason }, 'fencing a Redis node');
      t.fence(f.id, f.reason);
    }
    for (const p of probes) {
      if (!p.info) continue;
      const n = t.get(p.id)!;
      t.markProbeOk(p.id, decision.roles.get(p.id)!);
      n.position = String(p.info.offset);
      this.book.observe(p.id, p.info);
    }
    for (const u of decision.unfence) t.unfence(u.id, u.reason);
    this.recordLag(t, probes, decision.primary);
    for (const l of this.listeners) l(shard, decision, probes);
  }

  private recordLag(t: Topology, probes: readonly NodeProbe[], primaryId: string | null): void {
    const primary = probes.find((p) => p.id === primaryId);
    const primaryNode = primaryId === null ? undefined : t.get(primaryId);
    if (!primary?.info || primary.info.role !== 'master' || !primaryNode || primaryNode.fenced) return;
    const now = Date.now();
    const primaryOffset = primary.info.offset;
    const history = this.histories.get(t)!;
    history.record(BigInt(primaryOffset), now);
    for (const p of probes) {
      if (!p.info) continue;
      const n = t.get(p.id)!;
      if (p.info.role === 'master') {
        n.lagBytes = 0;
        n.lagMs = 0;
        continue;
      }
      this.replicaLag(t, n, p.info, primaryOffset, history, now);
    }
  }

  private replicaLag(
    t: Topology,
    n: NodeStatus,
    info: ReplicationInfo,
    primaryOffset: number,
    history: PositionHistory,
    now: number,
  ): void {
    n.lagBytes = Math.max(0, primaryOffset - info.offset);
    n.lagMs = info.linkUp ? history.lagMs(BigInt(info.offset), now) : null;
    if (n.lagMs !== null) this.opts.onLag?.(n.spec.id, n.lagMs);
    // A replica whose link to the primary is down serves ever older data: out of rotation.
    const eligible = this.staleness.observe(n.spec.id, n.lagBytes, n.lagMs) && info.linkUp;
    t.setLagging(n.spec.id, !eligible);
  }

  private async probe(n: NodeStatus, t: Topology): Promise<ReplicationInfo | null> {
    const id = n.spec.id;
    const startedAt = Date.now();
    try {
      const raw = await withProbeDeadline(this.opts.timeoutMs, id, async (deadline) => {
        const link = await this.linkTo(n, deadline);
        const reply = new Promise<Buffer>((resolve, reject) =>
          link.send(INFO_REPLICATION, (r) => (r ? resolve(r) : reject(new Error('connection lost')))),
        );
        return Promise.race([reply, deadline]);
      });
      // BUSY (a script or function past busy-reply-threshold) is an answer: the node is up and
      // must stay in rotation so SCRIPT KILL / FUNCTION KILL can reach it; its role and
      // position are as last seen.
      const busy = raw.subarray(0, 6).toString('latin1') === '-BUSY ';
      const info = busy ? this.lastInfo.get(id) : replicationInfoFromReply(raw);
      if (!info) throw new Error(raw.toString('latin1').trim());
      this.lastInfo.set(id, info);
      this.streaks.delete(id);
      this.lastOkAt.set(id, Date.now());
      return info;
    } catch (err) {
      // Late only because the node is busy sending data on the data path: no verdict, and the
      // link stays (the answer is queued behind that data).
      if (err instanceof ProbeExcused) return null;
      this.links.get(id)?.destroy('probe failed');
      this.links.delete(id);
      const streak = this.streaks.get(id) ?? { count: 0, since: startedAt };
      streak.count++;
      this.streaks.set(id, streak);
      const reason = `probe failed: ${(err as Error).message}`;
      if (n.reachable) this.log.warn({ node: id, reason }, 'node out of rotation');
      t.markDown(id, reason);
      // Not a timeout (refused, reset): worth one fresh attempt.
      if (!(err instanceof ProbeTimeout)) {
        const shard = this.shards.find((s) => s.topology === t);
        if (shard) this.confirm(shard, id);
      }
      return null;
    }
  }

  private async linkTo(n: NodeStatus, deadline: Promise<never>): Promise<RedisLink> {
    const id = n.spec.id;
    const existing = this.links.get(id);
    if (existing && !existing.closed) return existing;
    const connecting = RedisLink.connect(
      { nodeId: id, host: n.spec.host, port: n.spec.port },
      { resp3: false, connectTimeoutMs: this.opts.timeoutMs, ...this.credentials() },
    );
    try {
      const link = await Promise.race([connecting, deadline]);
      // Named so its probes can be told from clients' commands (SLOWLOG, CLIENT LIST).
      link.send(SETNAME, () => undefined);
      this.links.set(id, link);
      return link;
    } catch (err) {
      // Lost the race: a connection that completes later must not linger.
      connecting.then(
        (late) => late.destroy('probe gave up'),
        () => undefined,
      );
      throw err;
    }
  }

  private credentials(): { password?: string; user?: string } {
    const out: { password?: string; user?: string } = {};
    if (this.opts.password !== undefined) out.password = this.opts.password;
    if (this.opts.user !== undefined) out.user = this.opts.user;
    return out;
  }
}
