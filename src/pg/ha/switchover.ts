/**
 * Planned switchover (`POST /api/switchover`, `rwsplit switchover`): hold new writes, let the
 * transactions on the primary finish, make the primary read-only, wait for the target to
 * replay everything the primary wrote, promote it, re-point the others, release. Clients
 * see no errors: autocommit reads keep flowing to replicas, new writes wait for the new
 * primary (failover.bufferMs) and then run there.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { parseLsn } from '../../core/lag.js';
import type { Logger } from 'pino';
import type { FailoverState, NodeStatus, Topology } from '../../core/topology.js';
import { FailoverError } from './failover-plan.js';
import { currentWalLsn, fenceServer, replayLsn, unfenceServer, type NodeSql } from './promotion-sql.js';
import type { Promotion, PromotionReport } from './promotion.js';

/**
 * What a switchover uses of the failover controller that runs it (PgFailover), named here so
 * the controller can import the switchover without the switchover importing the controller.
 */
export interface SwitchoverController {
  readonly topology: Topology;
  readonly sql: NodeSql;
  readonly promotion: Promotion;
  readonly log: Logger;
  readonly opts: {
    readonly bufferMs: number;
    readonly promoteTimeoutMs: number;
    readonly timeoutMs: number;
    activeConnections(nodeId: string): number;
  };
  retire(id: string, shard: string, serverFenced: boolean): void;
  notRepointed(ids: readonly string[], shard: string): void;
}

/** Runs one switchover; the controller makes sure it is the shard's only one. */
export async function runSwitchover(
  ctl: SwitchoverController,
  shard: string,
  toId: string | undefined,
): Promise<PromotionReport> {
  const { topology } = ctl;
  const from = topology.primary(shard);
  if (!from)
    throw new FailoverError(
      'NO_PRIMARY',
      `shard ${shard} has no primary that is up: nothing to switch over from`,
    );
  const to = await chooseTarget(ctl, shard, from, toId);
  const state: FailoverState = {
    shard,
    from: from.spec.id,
    to: to.spec.id,
    kind: 'switchover',
    startedAt: Date.now(),
  };
  topology.holdWrites(
    state,
    `switchover ${from.spec.id} -> ${to.spec.id}: new writes wait up to ${ctl.opts.bufferMs} ms`,
  );
  topology.recordFailover(from.spec.id, 'failover-start', `switchover to ${to.spec.id} requested`);
  const warnings: string[] = [];
  try {
    await handOver(ctl, from, to, warnings);
  } catch (err) {
    await abandon(ctl, state, err as Error);
    throw err;
  }
  ctl.retire(from.spec.id, shard, true);
  const report = await ctl.promotion.complete(state, to);
  ctl.notRepointed(report.notRepointed, shard);
  report.warnings.push(
    ...warnings,
    `${from.spec.id} is read-only and fenced; to make it a replica of ${to.spec.id}, restart it with a standby.signal and primary_conninfo`,
  );
  return report;
}

/** From the held writes to the promotion: idle, read-only, caught up, promoted. */
async function handOver(
  ctl: SwitchoverController,
  from: NodeStatus,
  to: NodeStatus,
  warnings: string[],
): Promise<void> {
  // Every worker holds new writes before the wait for the last transactions on the primary.
  await ctl.topology.settle();
  const busy = await waitForIdle(ctl, from.spec.id);
  if (busy > 0)
    warnings.push(`${busy} transactions on ${from.spec.id} were still open after the wait: they were ended`);
  // Fenced first: the proxy drops its connections there before the server ends them.
  ctl.topology.fence(from.spec.id, `switchover to ${to.spec.id}: read-only, a replica only after a restart`);
  await ctl.topology.settle();
  const ended = await ctl.sql.run(from.spec, fenceServer);
  const lsn = await ctl.sql.run(from.spec, currentWalLsn);
  ctl.log.info(
    { from: from.spec.id, to: to.spec.id, lsn, ended },
    'switchover: primary read-only, waiting for catch-up',
  );
  await waitForReplay(ctl, to, lsn);
  await ctl.promotion.promote(to.spec);
}

async function chooseTarget(
  ctl: SwitchoverController,
  shard: string,
  from: NodeStatus,
  toId: string | undefined,
): Promise<NodeStatus> {
  const { topology } = ctl;
  if (toId === undefined) {
    const [best] = await ctl.promotion.candidates(shard, new Set([from.spec.id]));
    if (!best) throw new FailoverError('NO_CANDIDATE', `shard ${shard} has no replica that answers`);
    return topology.get(best.id)!;
  }
  const n = topology.get(toId);
  const replicas = topology.nodes
    .filter((x) => x.spec.shard === shard && x !== from)
    .map((x) => x.spec.id)
    .join(', ');
  if (!n || n.spec.shard !== shard)
    throw new FailoverError(
      'BAD_TARGET',
      `no node '${toId}' in shard ${shard}; its replicas are: ${replicas}`,
    );
  if (n === from) throw new FailoverError('BAD_TARGET', `${toId} is already the primary of shard ${shard}`);
  if (n.fenced)
    throw new FailoverError(
      'BAD_TARGET',
      `${toId} is fenced (drained, or an old primary); choose among: ${replicas}`,
    );
  if (!n.reachable || n.role !== 'replica')
    throw new FailoverError('BAD_TARGET', `${toId} is not a replica that is up; choose among: ${replicas}`);
  return n;
}

/**
 * Waits until the proxy has no leased connection on the primary (transactions under way
 * finish), for at most half of bufferMs: new writes wait bufferMs in all, and the
 * catch-up and the promotion need the rest. Returns the connections still leased.
 */
async function waitForIdle(ctl: SwitchoverController, id: string): Promise<number> {
  const deadline = Date.now() + ctl.opts.bufferMs / 2;
  while (ctl.opts.activeConnections(id) > 0 && Date.now() < deadline) await delay(10);
  return ctl.opts.activeConnections(id);
}

/** Polls the target's replay position until it reaches `lsn` (bounded by promoteTimeoutMs). */
async function waitForReplay(ctl: SwitchoverController, to: NodeStatus, lsn: string): Promise<void> {
  const target = parseLsn(lsn);
  const { promoteTimeoutMs, timeoutMs } = ctl.opts;
  let seen: string | null = null;
  try {
    await ctl.sql.run(
      to.spec,
      async (c) => {
        const deadline = Date.now() + promoteTimeoutMs;
        while ((seen = await replayLsn(c)) === null || parseLsn(seen) < target) {
          if (Date.now() > deadline) throw new Error('deadline');
          await delay(10);
        }
      },
      promoteTimeoutMs + timeoutMs,
    );
  } catch (err) {
    throw new FailoverError(
      'CATCHUP_TIMEOUT',
      `${to.spec.id} replayed up to ${seen ?? 'nothing'}, not ${lsn}, within ${promoteTimeoutMs} ms (postgres.failover.promoteTimeoutMs; ${(err as Error).message})`,
    );
  }
}

/** A switchover that failed before the promotion: the old primary takes writes again. */
async function abandon(ctl: SwitchoverController, state: FailoverState, err: Error): Promise<void> {
  const { topology } = ctl;
  const from = topology.get(state.from)!;
  await ctl.sql
    .run(from.spec, unfenceServer)
    .catch((e: Error) =>
      ctl.log.error(
        { node: state.from, err: e.message },
        'switchover abandoned but the old primary is still read-only: ALTER SYSTEM RESET default_transaction_read_only there',
      ),
    );
  topology.unfence(state.from, `switchover abandoned: ${err.message}`);
  topology.releaseWrites(state.shard, `switchover abandoned; ${state.from} is still the primary`);
  topology.recordFailover(
    state.from,
    'failover-end',
    `switchover to ${state.to} abandoned after ${Date.now() - state.startedAt} ms: ${err.message}`,
  );
}
