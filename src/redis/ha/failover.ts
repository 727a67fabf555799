/**
 * Automatic failover of Redis shards (`redis.failover.mode: auto`),
 * one shard at a time each, decided after every monitor round:
 *
 * 1. Detection: the shard's primary failed at least 2 probes in a row and has been failing
 *    for `detectMs` (a failure seen by the data path starts the clock; probes decide). One
 *    lost probe, or a primary back within detectMs, causes nothing.
 * 2. Writes of the shard are held (`Topology.holdWrites`: they wait up to `bufferMs`), the
 *    old primary is fenced (the proxy drops its links: commands in flight there get an error
 *    naming the failover).
 * 3. Every reachable replica is asked now for its applied offset (`INFO replication`); the
 *    highest wins (config order breaks ties): with `waitReplicas`, every write a client saw
 *    acknowledged is on at least one replica, hence on the most advanced one.
 * 4. `REPLICAOF NO ONE` on it (Redis starts a new history that continues the old one up to
 *    its offset), `REPLICAOF host port` on the other replicas (they continue with a partial
 *    resync), a monitor round so the Topology sees the new primary, writes released.
 * 5. When the old primary comes back as a master (restarted: empty, writable), it is told
 *    `REPLICAOF <new primary>` — Redis's own fencing: it drops its data and resyncs — and
 *    stays fenced until the monitor sees it as a replica.
 * If no replica can be promoted, the hold is released after bufferMs (writes then fail),
 * the old primary unfenced (it is the only hope), and detection goes on.
 */
import type { Logger } from 'pino';
import { nodeFailed } from '../../core/liveness.js';
import type { NodeStatus, Topology } from '../../core/topology.js';
import type { LinkOptions } from '../backend/backend-link.js';
import { nodeCommand } from '../backend/node-command.js';
import type { AuthorityDecision, NodeProbe } from './primary-authority.js';
import type { FailureStreak, MonitoredShard, RedisMonitor } from './monitor.js';
import { replicationInfoFromReply, type ReplicationInfo } from './replication-info.js';
import { encodeBulk } from '../resp/index.js';

export interface RedisFailoverOptions {
  detectMs: number;
  bufferMs: number;
  promoteTimeoutMs: number;
  /** per administrative command */
  timeoutMs: number;
  link: Omit<LinkOptions, 'resp3' | 'connectTimeoutMs'>;
}

/** How often a stray master is told REPLICAOF again while it has not turned replica. */
const DEMOTE_EVERY_MS = 1000;

export class RedisFailover {
  private readonly running = new Set<MonitoredShard>();
  private readonly demotedAt = new Map<string, number>();
  private stopped = false;

  constructor(
    private readonly monitor: RedisMonitor,
    private readonly opts: RedisFailoverOptions,
    private readonly log: Logger,
  ) {
    monitor.onRound((shard, decision, probes) => this.afterRound(shard, decision, probes));
  }

  /**
   * Stops acting on monitor rounds (a graceful restart hands the decision to the new
   * process, and two deciders must never run at once); resolves once no failover runs.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    while (this.running.size > 0) await new Promise((r) => setTimeout(r, 20));
  }

  /** Acts on monitor rounds again after stop(): the new process did not start. */
  resume(): void {
    this.stopped = false;
  }

  /** Whether a failover of the shard is under way. */
  busy(shard: MonitoredShard): boolean {
    return this.running.has(shard);
  }

  private afterRound(shard: MonitoredShard, decision: AuthorityDecision, probes: readonly NodeProbe[]): void {
    if (this.stopped || this.running.has(shard) || decision.primary === null) return;
    const primary = probes.find((p) => p.id === decision.primary);
    if (primary?.info?.role === 'master') {
      for (const id of decision.strays) void this.demote(shard.topology, id, primary);
      return;
    }
    if (primary?.info !== null) return; // answering, just not (yet) a master: nothing to replace
    const streak = this.monitor.failures(decision.primary);
    const run = streak && {
      failedProbes: streak.count,
      failingSince: streak.since,
      confirmedDownAt: streak.confirmedDownAt ?? null,
    };
    if (!run || !nodeFailed(run, Date.now(), this.opts.detectMs)) return;
    this.running.add(shard);
    void this.failover(shard, decision.primary, Date.now() - streak.since, streak).finally(() =>
      this.running.delete(shard),
    );
  }

  private async failover(
    shard: MonitoredShard,
    fromId: string,
    downMs: number,
    streak: FailureStreak,
  ): Promise<void> {
    const t = shard.topology;
    const from = t.get(fromId)!;
    const name = from.spec.shard;
    const startedAt = Date.now();
    const state = {
      shard: name,
      from: fromId,
      to: null as string | null,
      kind: 'failover' as const,
      startedAt,
    };
    const why =
      streak.confirmedDownAt !== undefined
        ? `${fromId} is gone: a fresh connection was refused ${downMs} ms after the first failure`
        : `${fromId} unreachable for ${downMs} ms (${streak.count} failed probes)`;
    t.holdWrites(state, `failover of shard ${name}: ${why}`);
    shard.authority.claimFence(fromId);
    t.fence(fromId, `failover of shard ${name}: ${why}; fenced until it rejoins as a replica`);
    t.recordFailover(fromId, 'failover-start', `shard ${name}: ${why}`);
    this.log.warn({ shard: name, from: fromId }, 'Redis failover started');
    try {
      // Every data-plane worker holds the writes and dropped the old primary before a promotion.
      await t.settle();
      const chosen = await this.mostAdvanced(t, fromId);
      if (!chosen) {
        await this.giveUp(shard, fromId, startedAt);
        return;
      }
      state.to = chosen.node.spec.id;
      await this.promote(shard, chosen.node, fromId);
      const ms = Date.now() - startedAt;
      t.releaseWrites(name, `${chosen.node.spec.id} is the primary of shard ${name}`);
      t.recordFailover(
        chosen.node.spec.id,
        'failover-end',
        `promoted in ${ms} ms at offset ${chosen.info.offset} (replaces ${fromId})`,
      );
      this.log.warn({ shard: name, from: fromId, to: chosen.node.spec.id, ms }, 'Redis failover done');
    } catch (err) {
      this.log.error({ shard: name, err: (err as Error).message }, 'Redis failover failed');
      await this.giveUp(shard, fromId, startedAt);
    }
  }

  /** Asks every reachable replica for its offset now; the highest wins, config order breaks ties. */
  private async mostAdvanced(
    t: Topology,
    fromId: string,
  ): Promise<{ node: NodeStatus; info: ReplicationInfo } | null> {
    const candidates = t.nodes.filter((n) => n.spec.id !== fromId && n.reachable && !n.fenced);
    const answers = await Promise.all(
      candidates.map(async (node) => {
        try {
          const info = await this.info(node);
          return info.role === 'slave' ? { node, info } : null;
        } catch (err) {
          this.log.warn({ node: node.spec.id, err: (err as Error).message }, 'replica did not answer');
          return null;
        }
      }),
    );
    let best: { node: NodeStatus; info: ReplicationInfo } | null = null;
    for (const a of answers) if (a && (!best || a.info.offset > best.info.offset)) best = a;
    return best;
  }

  private async promote(shard: MonitoredShard, node: NodeStatus, fromId: string): Promise<void> {
    const t = shard.topology;
    await this.command(node, ['REPLICAOF', 'NO', 'ONE']);
    const deadline = Date.now() + this.opts.promoteTimeoutMs;
    for (;;) {
      const info = await this.info(node);
      if (info.role === 'master') break;
      if (Date.now() > deadline)
        throw new Error(
          `${node.spec.id} is not a master ${this.opts.promoteTimeoutMs} ms after REPLICAOF NO ONE`,
        );
      await new Promise((r) => setTimeout(r, 20));
    }
    shard.authority.designate(node.spec.id, 'failover');
    const others = t.nodes.filter((n) => n !== node && n.spec.id !== fromId && n.reachable);
    await Promise.all(
      others.map((n) =>
        this.command(n, ['REPLICAOF', node.spec.host, String(node.spec.port)]).catch((err: Error) =>
          this.log.warn({ node: n.spec.id, err: err.message }, 'could not re-point a replica'),
        ),
      ),
    );
    // One source of truth: the Topology learns the new primary from a probe, like any role.
    await this.monitor.probeShard(shard, new Set([fromId]));
    if (t.primary(node.spec.shard) !== node) {
      throw new Error(`${node.spec.id} was promoted but the monitor does not see it as a routable primary`);
    }
  }

  private async giveUp(shard: MonitoredShard, fromId: string, startedAt: number): Promise<void> {
    const t = shard.topology;
    const name = t.get(fromId)!.spec.shard;
    const left = this.opts.bufferMs - (Date.now() - startedAt);
    if (left > 0) await new Promise((r) => setTimeout(r, left));
    this.log.error({ shard: name }, 'no replica could be promoted; the old primary stays the primary');
    shard.authority.releaseFence(fromId);
    t.unfence(fromId, 'failover found no replica to promote');
    t.releaseWrites(name, `no replica of shard ${name} could be promoted`);
    t.recordFailover(fromId, 'failover-end', 'no replica could be promoted');
  }

  /** A master that is not the shard's primary (the old one, restarted) follows the primary. */
  private async demote(t: Topology, id: string, primary: NodeProbe): Promise<void> {
    const last = this.demotedAt.get(id) ?? 0;
    if (Date.now() - last < DEMOTE_EVERY_MS) return;
    this.demotedAt.set(id, Date.now());
    const node = t.get(id);
    if (!node) return;
    this.log.warn({ node: id, primary: primary.id }, 'demoting a stray Redis master');
    try {
      await this.command(node, ['REPLICAOF', primary.host, String(primary.port)]);
    } catch (err) {
      this.log.warn({ node: id, err: (err as Error).message }, 'could not demote a stray master');
    }
  }

  private async info(node: NodeStatus): Promise<ReplicationInfo> {
    const v = await this.command(node, ['INFO', 'replication']);
    return replicationInfoFromReply(encodeBulk(Buffer.isBuffer(v) ? v : String(v)));
  }

  private command(node: NodeStatus, args: string[]): ReturnType<typeof nodeCommand> {
    return nodeCommand({ nodeId: node.spec.id, host: node.spec.host, port: node.spec.port }, args, {
      link: this.opts.link,
      timeoutMs: this.opts.timeoutMs,
    });
  }
}
