/**
 * The steps a failover and a switchover share, from choosing the replica to releasing the
 * held writes: rank candidates, promote, re-point the others, carry synchronous replication
 * over, let the monitor see the new primary, release.
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { FailoverState, NodeStatus, Topology } from '../../core/topology.js';
import type { NodeSpec } from '../../core/types.js';
import { FailoverError, rankCandidates, type CandidatePosition } from './failover-plan.js';
import type { PgMonitor } from './monitor.js';
import {
  ensurePhysicalSlot,
  inRecovery,
  requestPromotion,
  repointReplica,
  setSyncStandbyNames,
  walPositions,
  type NodeSql,
} from './promotion-sql.js';

/** What the steps need; built once by the controller. */
export interface PromotionDeps {
  topology: Topology;
  monitor: Pick<PgMonitor, 'lastProbe' | 'probeNow'>;
  sql: NodeSql;
  log: Logger;
  promoteTimeoutMs: number;
  /** the login written into re-pointed replicas' primary_conninfo, when configured */
  replicationUser?: string | undefined;
  replicationPassword?: string | undefined;
}

/** How a failover or switchover ended, as the admin API and the event log tell it. */
export interface PromotionReport {
  kind: FailoverState['kind'];
  shard: string;
  from: string;
  to: string;
  elapsedMs: number;
  /** replicas now streaming from `to` (re-pointed) */
  repointed: string[];
  /** replicas that could not be re-pointed now (retried when they answer again) */
  notRepointed: string[];
  /** synchronous_standby_names set on the new primary, or null */
  syncStandbyNames: string | null;
  warnings: string[];
}

const POLL_MS = 25;
/** how often a promoted replica is asked whether recovery has ended */
const PROMOTE_POLL_MS = 10;

/** The promotion steps over one topology, monitor and SQL runner (see the file comment). */
export class Promotion {
  constructor(private readonly d: PromotionDeps) {}

  /**
   * The shard's replicas that could take over, best first (failover-plan.ts rankCandidates),
   * each asked for its WAL positions now. Fenced nodes (drained, or old primaries) and nodes
   * that do not answer, or answer as a primary, are left out.
   */
  async candidates(shard: string, exclude: ReadonlySet<string>): Promise<CandidatePosition[]> {
    const { topology, sql, log } = this.d;
    const nodes = topology.nodes.filter(
      (n) => n.spec.shard === shard && !exclude.has(n.spec.id) && !n.fenced,
    );
    const answers = await Promise.all(
      nodes.map(async (n): Promise<CandidatePosition | null> => {
        try {
          const p = await sql.run(n.spec, walPositions);
          if (!p.inRecovery) return null;
          return { id: n.spec.id, order: topology.nodes.indexOf(n), ...p };
        } catch (err) {
          log.warn({ node: n.spec.id, err: (err as Error).message }, 'failover: replica did not answer');
          return null;
        }
      }),
    );
    return rankCandidates(answers.filter((a): a is CandidatePosition => a !== null));
  }

  /** `pg_promote()`, then waits until the node answers `pg_is_in_recovery() = false` (one connection). */
  async promote(node: NodeSpec): Promise<void> {
    const { sql, promoteTimeoutMs } = this.d;
    const deadline = Date.now() + promoteTimeoutMs;
    await sql.run(
      node,
      async (c) => {
        let sent: boolean;
        try {
          sent = await requestPromotion(c);
        } catch (err) {
          throw new FailoverError(
            'PROMOTION_FAILED',
            `pg_promote() on ${node.id} failed: ${(err as Error).message} (the login needs superuser or EXECUTE on pg_promote)`,
          );
        }
        if (!sent) throw new FailoverError('PROMOTION_FAILED', `pg_promote() on ${node.id} returned false`);
        while (await inRecovery(c)) {
          if (Date.now() > deadline)
            throw new FailoverError(
              'PROMOTION_FAILED',
              `${node.id} was still in recovery ${promoteTimeoutMs} ms after pg_promote() (postgres.failover.promoteTimeoutMs)`,
            );
          await delay(PROMOTE_POLL_MS);
        }
      },
      promoteTimeoutMs + 1000,
    );
  }

  /**
   * Re-points one replica at `to`: its physical slot, if it uses one, is created on `to`
   * first, so `to` keeps the WAL the replica still needs.
   */
  async repoint(replica: NodeSpec, to: NodeSpec): Promise<void> {
    const { sql, replicationUser, replicationPassword } = this.d;
    const target = {
      host: to.host,
      port: to.port,
      ...(replicationUser !== undefined ? { user: replicationUser } : {}),
      ...(replicationPassword !== undefined ? { password: replicationPassword } : {}),
    };
    const done = await sql.run(replica, (c) =>
      repointReplica(c, target, (slot) => sql.run(to, (p) => ensurePhysicalSlot(p, slot))),
    );
    this.d.log.info({ node: replica.id, to: to.id, slot: done.slot || null }, 'replica re-pointed');
  }

  /** Re-points every other replica of the shard, concurrently; those that fail are returned. */
  async repointOthers(
    shard: string,
    to: NodeSpec,
    skip: ReadonlySet<string>,
  ): Promise<{ repointed: string[]; notRepointed: string[] }> {
    const others = this.d.topology.nodes.filter(
      (n) => n.spec.shard === shard && n.spec.id !== to.id && !skip.has(n.spec.id),
    );
    const results = await Promise.all(
      others.map((n) =>
        this.repoint(n.spec, to).then(
          () => true,
          (err: Error) => {
            this.d.log.warn({ node: n.spec.id, err: err.message }, 'could not re-point replica');
            return false;
          },
        ),
      ),
    );
    return {
      repointed: others.filter((_, i) => results[i]).map((n) => n.spec.id),
      notRepointed: others.filter((_, i) => !results[i]).map((n) => n.spec.id),
    };
  }

  /**
   * Zero-loss mode carried over: the old primary's synchronous_standby_names (as its last
   * probe saw them) set on the new one — unless no replica follows it, when every commit would
   * wait forever. Returns the value set, or a warning.
   */
  async carrySyncNames(
    from: string,
    to: NodeSpec,
    followers: number,
  ): Promise<{ set: string | null; warning: string | null }> {
    const names = this.d.monitor.lastProbe(from)?.syncStandbyNames ?? '';
    if (names === '') return { set: null, warning: null };
    if (followers === 0) {
      const warning = `synchronous_standby_names '${names}' not set on ${to.id}: no replica follows it, commits would wait forever; writes are asynchronous until you set it`;
      this.d.log.warn({ node: to.id }, warning);
      return { set: null, warning };
    }
    await this.d.sql.run(to, (c) => setSyncStandbyNames(c, names));
    return { set: names, warning: null };
  }

  /**
   * Has the monitor probe `to` until the topology sees it as the shard's primary: roles keep
   * one writer (the probes), and the hold is released only once writes can really go there.
   */
  async confirmPrimary(shard: string, to: string, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await this.d.monitor.probeNow(to);
      if (this.d.topology.primary(shard)?.spec.id === to) return true;
      if (Date.now() > deadline) return false;
      await delay(POLL_MS);
    }
  }

  /**
   * After the promotion: re-point the others, carry synchronous replication over, wait for
   * the monitor to see the new primary, release the writes, record the end.
   */
  async complete(state: FailoverState, to: NodeStatus): Promise<PromotionReport> {
    const { topology, log } = this.d;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      topology.releaseWrites(state.shard, `${to.spec.id} is the primary of shard ${state.shard}`);
    };
    let report: PromotionReport;
    try {
      report = await this.settle(state, to, release);
    } finally {
      // Whatever went wrong after the promotion, writes are never held for good.
      release();
    }
    topology.recordFailover(to.spec.id, 'failover-end', describeReport(report));
    log.info(report, `${state.kind} done`);
    return report;
  }

  /**
   * `release` is called as soon as writes may go to `to`: with asynchronous replication once
   * the monitor sees it as the primary (re-pointing the others follows; writes do not depend
   * on it); in zero-loss mode only after synchronous_standby_names is carried over, so no
   * write is acknowledged by the new primary alone.
   */
  private async settle(state: FailoverState, to: NodeStatus, release: () => void): Promise<PromotionReport> {
    const { promoteTimeoutMs } = this.d;
    const warnings: string[] = [];
    const synchronous = (this.d.monitor.lastProbe(state.from)?.syncStandbyNames ?? '') !== '';
    let confirmed: boolean | null = null;
    if (!synchronous) {
      confirmed = await this.confirmPrimary(state.shard, to.spec.id, promoteTimeoutMs);
      if (confirmed) release();
    }
    const skip = new Set([state.from]);
    const { repointed, notRepointed } = await this.repointOthers(state.shard, to.spec, skip);
    const sync = await this.carrySyncNames(state.from, to.spec, repointed.length).catch((err: Error) => ({
      set: null,
      warning: `could not set synchronous_standby_names on ${to.spec.id}: ${err.message}`,
    }));
    if (sync.warning) warnings.push(sync.warning);
    confirmed ??= await this.confirmPrimary(state.shard, to.spec.id, promoteTimeoutMs);
    if (!confirmed)
      warnings.push(`the monitor did not see ${to.spec.id} as the primary within ${promoteTimeoutMs} ms`);
    if (notRepointed.length > 0)
      warnings.push(`not re-pointed yet (retried when they answer): ${notRepointed.join(', ')}`);
    return {
      kind: state.kind,
      shard: state.shard,
      from: state.from,
      to: to.spec.id,
      elapsedMs: Date.now() - state.startedAt,
      repointed,
      notRepointed,
      syncStandbyNames: sync.set,
      warnings,
    };
  }
}

/** One line for the event log. */
export function describeReport(r: PromotionReport): string {
  const parts = [
    `${r.kind} ${r.from} -> ${r.to} in ${r.elapsedMs} ms`,
    `re-pointed: ${r.repointed.join(', ') || 'none'}`,
  ];
  if (r.syncStandbyNames) parts.push(`synchronous_standby_names = '${r.syncStandbyNames}'`);
  parts.push(...r.warnings);
  return parts.join('; ');
}
