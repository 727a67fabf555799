/**
 * Automatic failover of PostgreSQL primaries (`postgres.failover.mode: auto`) and planned
 * switchover. After each monitor round the controller looks at each shard's primary: failing
 * for `detectMs` with at least two failed probes, it is replaced — writes held, old primary
 * fenced, the most advanced replica promoted, the others re-pointed, writes released. It
 * also fences on the server an old primary that comes back (read-only, its sessions ended)
 * and re-points replicas that were unreachable during the failover once they answer.
 * In modes `follow` and `off` it does nothing (the monitor follows or ignores roles).
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { PgConfig } from '../../config/schema.js';
import type { FailoverState, NodeStatus, Topology } from '../../core/topology.js';
import { FailoverError, primaryFailed } from './failover-plan.js';
import type { PgMonitor } from './monitor.js';
import { fenceServer, NodeSql, unfenceServer, type SqlLogin } from './promotion-sql.js';
import { Promotion, type PromotionReport } from './promotion.js';
import { runSwitchover } from './switchover.js';

export { FailoverError } from './failover-plan.js';
export type { PromotionReport } from './promotion.js';

/** Options of {@link PgFailover}: `postgres.failover` plus what the app knows. */
export interface FailoverOptions {
  mode: PgConfig['failover']['mode'];
  detectMs: number;
  bufferMs: number;
  promoteTimeoutMs: number;
  replicationUser?: string | undefined;
  replicationPassword?: string | undefined;
  /** the login of the controller's own connections (the monitor's; a superuser) */
  login: SqlLogin;
  /** bound on connecting to a node and on each statement that is not a wait */
  timeoutMs: number;
  /** backend connections the proxy has leased on a node right now (switchover waits for 0) */
  activeConnections: (nodeId: string) => number;
}

/** An old primary this controller replaced; fenced on the server once it answers again. */
interface Retired {
  shard: string;
  serverFenced: boolean;
}

/**
 * The failover controller of one instance: watches each shard's primary after every monitor
 * round (mode auto), runs failovers and switchovers one at a time per shard.
 */
export class PgFailover {
  readonly promotion: Promotion;
  readonly sql: NodeSql;
  /** the failover or switchover running per shard */
  private readonly busy = new Map<string, { kind: FailoverState['kind']; run: Promise<unknown> }>();
  /** after a failover that promoted nothing, detection waits until this time */
  private readonly retryAt = new Map<string, number>();
  private readonly retired = new Map<string, Retired>();
  /** replicas left pointing at an old primary: re-pointed when they answer */
  private readonly pendingRepoint = new Map<string, string>();
  private readonly sideTasks = new Set<string>();
  private readonly warnedNoCandidate = new Set<string>();
  private stopped = false;

  constructor(
    readonly topology: Topology,
    readonly monitor: PgMonitor,
    readonly opts: FailoverOptions,
    readonly log: Logger,
  ) {
    this.sql = new NodeSql(opts.login, opts.timeoutMs);
    this.promotion = new Promotion({
      topology,
      monitor,
      sql: this.sql,
      log,
      promoteTimeoutMs: opts.promoteTimeoutMs,
      replicationUser: opts.replicationUser,
      replicationPassword: opts.replicationPassword,
    });
    monitor.onRound(() => this.afterRound());
  }

  /** Stops acting on monitor rounds and waits for a failover or switchover under way. */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.allSettled([...this.busy.values()].map((b) => b.run));
  }

  /** Acts on monitor rounds again after stop(): a graceful restart whose new process did not start. */
  resume(): void {
    this.stopped = false;
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  /**
   * Planned switchover of a shard's primary to `to` (default: the most advanced replica).
   * @throws FailoverError NOT_AUTO, UNKNOWN_SHARD, FAILOVER_RUNNING, NO_PRIMARY, BAD_TARGET,
   * NO_CANDIDATE, CATCHUP_TIMEOUT, PROMOTION_FAILED
   */
  async switchover(shard = 'default', to?: string): Promise<PromotionReport> {
    if (this.opts.mode !== 'auto')
      throw new FailoverError(
        'NOT_AUTO',
        `switchover needs postgres.failover.mode auto; this instance has mode ${this.opts.mode} (roles are ${this.opts.mode === 'off' ? 'configured' : 'only followed'})`,
      );
    if (!this.topology.nodes.some((n) => n.spec.shard === shard))
      throw new FailoverError(
        'UNKNOWN_SHARD',
        `no PostgreSQL shard '${shard}'; shards: ${this.shards().join(', ')}`,
      );
    return this.exclusive(shard, 'switchover', () => runSwitchover(this, shard, to));
  }

  /** Marks a replaced primary, fenced on the server by the switchover (or not yet: a failover). */
  retire(id: string, shard: string, serverFenced: boolean): void {
    this.retired.set(id, { shard, serverFenced });
  }

  /** Runs `work` as the shard's only failover or switchover. */
  private exclusive<T>(shard: string, kind: FailoverState['kind'], work: () => Promise<T>): Promise<T> {
    const running = this.busy.get(shard);
    if (running)
      throw new FailoverError('FAILOVER_RUNNING', `a ${running.kind} of shard ${shard} is already running`);
    const run = work().finally(() => this.busy.delete(shard));
    this.busy.set(shard, { kind, run });
    return run;
  }

  private shards(): string[] {
    return [...new Set(this.topology.nodes.map((n) => n.spec.shard))];
  }

  private afterRound(): void {
    if (this.stopped || this.opts.mode !== 'auto') return;
    const now = Date.now();
    for (const shard of this.shards()) if (!this.busy.has(shard)) this.watch(shard, now);
    for (const [id, r] of this.retired) this.watchRetired(id, r);
    for (const [id, shard] of this.pendingRepoint) this.retryRepoint(id, shard);
  }

  /** Starts a failover when the shard's known primary has failed (failover-plan.ts primaryFailed). */
  private watch(shard: string, now: number): void {
    const primary = this.topology.nodes.find(
      (n) => n.spec.shard === shard && n.role === 'primary' && n.roleKnown && !n.fenced,
    );
    if (!primary) return;
    const health = this.monitor.health(primary.spec.id);
    if (!primaryFailed(health, now, this.opts.detectMs) || (this.retryAt.get(shard) ?? 0) > now) {
      if (health.failedProbes === 0) this.warnedNoCandidate.delete(shard);
      return;
    }
    const replicas = this.topology.nodes.filter(
      (n) => n.spec.shard === shard && n !== primary && n.reachable && !n.fenced,
    );
    if (replicas.length === 0) {
      if (!this.warnedNoCandidate.has(shard))
        this.log.error(
          { shard, node: primary.spec.id },
          'primary failed and no replica is reachable: no failover',
        );
      this.warnedNoCandidate.add(shard);
      return;
    }
    const why =
      health.confirmedDownAt != null
        ? `primary ${primary.spec.id} is gone: a fresh connection was refused ${now - (health.failingSince ?? now)} ms after the first failure`
        : `primary ${primary.spec.id} unreachable for ${now - health.failingSince!} ms (${health.failedProbes} probes failed)`;
    this.exclusive(shard, 'failover', () => this.failover(shard, primary, why)).catch((err: Error) =>
      this.log.error({ shard, err: err.message }, 'failover failed'),
    );
  }

  private async failover(shard: string, from: NodeStatus, why: string): Promise<PromotionReport | null> {
    const state: FailoverState = {
      shard,
      from: from.spec.id,
      to: null,
      kind: 'failover',
      startedAt: Date.now(),
    };
    this.log.warn({ shard, node: from.spec.id }, `failover: ${why}`);
    this.topology.holdWrites(state, `failover: ${why}; new writes wait up to ${this.opts.bufferMs} ms`);
    // The proxy closes its connections to a fenced node: transactions there get an error
    // naming the failover instead of waiting on a server that may come back.
    this.topology.fence(from.spec.id, `failover: ${why}; fenced until it rejoins as a replica`);
    this.topology.recordFailover(from.spec.id, 'failover-start', why);
    // Every data-plane worker holds the writes and has dropped the old primary before anything
    // is promoted: none can write there once another node takes writes.
    await this.topology.settle();
    let lastError = 'no replica answered';
    for (const c of await this.promotion.candidates(shard, new Set([from.spec.id]))) {
      const to = this.topology.get(c.id)!;
      try {
        await this.promotion.promote(to.spec);
      } catch (err) {
        lastError = (err as Error).message;
        this.log.error({ node: c.id, err: lastError }, 'failover: promotion failed, trying the next replica');
        continue;
      }
      state.to = c.id;
      this.retire(from.spec.id, shard, false);
      const report = await this.promotion.complete(state, to);
      this.notRepointed(report.notRepointed, shard);
      return report;
    }
    await this.giveUp(state, lastError);
    return null;
  }

  /** Nothing promoted: writes stay held for bufferMs (as promised), then fail with NO_PRIMARY. */
  private async giveUp(state: FailoverState, reason: string): Promise<void> {
    const wait = state.startedAt + this.opts.bufferMs - Date.now();
    if (wait > 0 && !this.stopped) await delay(wait);
    // The old primary was not replaced: when it answers again it is the primary again.
    this.topology.unfence(
      state.from,
      `failover gave up (${reason}); still the primary of shard ${state.shard}`,
    );
    this.topology.releaseWrites(state.shard, `failover gave up: ${reason}`);
    this.topology.recordFailover(
      state.from,
      'failover-end',
      `failover of ${state.from} gave up after ${Date.now() - state.startedAt} ms: ${reason}; detection retries in ${this.opts.detectMs} ms`,
    );
    this.retryAt.set(state.shard, Date.now() + this.opts.detectMs);
  }

  /**
   * An old primary answering again: still a primary → made harmless on the server (its
   * sessions ended, read-only by default); back as a replica → the setting reset, unfenced.
   */
  private watchRetired(id: string, r: Retired): void {
    const p = this.monitor.lastProbe(id);
    if (!p || this.monitor.health(id).failedProbes > 0 || this.sideTasks.has(id)) return;
    if (!p.inRecovery && r.serverFenced) return;
    this.side(id, async () => {
      const node = this.topology.get(id)!;
      if (!p.inRecovery) {
        const ended = await this.sql.run(node.spec, fenceServer);
        r.serverFenced = true;
        this.topology.recordFailover(
          id,
          'fenced-on-server',
          `back as a primary on timeline ${p.timeline}: default_transaction_read_only = on, ${ended} sessions ended`,
        );
        this.log.warn(
          { node: id, shard: r.shard, endedSessions: ended },
          `old primary ${id} is back as a primary on timeline ${p.timeline}: fenced on the server (default_transaction_read_only = on, ${ended} sessions ended); it gets no traffic until it rejoins as a replica`,
        );
        return;
      }
      await this.sql.run(node.spec, unfenceServer);
      this.retired.delete(id);
      this.topology.unfence(id, 'rejoined as a replica');
    });
  }

  private retryRepoint(id: string, shard: string): void {
    const primary = this.topology.primary(shard);
    const p = this.monitor.lastProbe(id);
    if (!primary || !p?.inRecovery || this.monitor.health(id).failedProbes > 0 || this.sideTasks.has(id))
      return;
    this.side(id, async () => {
      await this.promotion.repoint(this.topology.get(id)!.spec, primary.spec);
      this.pendingRepoint.delete(id);
    });
  }

  /** Runs a small background task for one node at a time; failures are logged, retried next round. */
  private side(id: string, task: () => Promise<void>): void {
    this.sideTasks.add(id);
    task()
      .catch((err: Error) =>
        this.log.warn({ node: id, err: err.message }, 'failover follow-up failed; retrying'),
      )
      .finally(() => this.sideTasks.delete(id));
  }

  /** Remembers replicas a promotion could not re-point. */
  notRepointed(ids: readonly string[], shard: string): void {
    for (const id of ids) this.pendingRepoint.set(id, shard);
  }
}
