/**
 * Chooses the node that serves a read, from the topology, the balancer and the staleness
 * policy. Pure decision logic: the caller acquires the connection.
 */
import { createBalancer, type Balancer, type Candidate } from './balancer.js';
import { canServe, eligibleReplica } from './eligible.js';
import type { NodeStatus, Topology } from './topology.js';
import type { AllLaggingPolicy, BalanceStrategy, PrimaryReads } from './types.js';

export interface ReadRoutingPolicy {
  balance: BalanceStrategy;
  primaryReads: PrimaryReads;
  whenAllLagging: AllLaggingPolicy;
}

export type ReadDecision =
  | { ok: true; node: NodeStatus; reason: 'replica' | 'primary-read' | 'fallback-primary' }
  | { ok: false; message: string; hint: string };

/** Per-read adjustments: the session's consistency level and causal token narrow or widen the choice. */
export interface PickOptions {
  /** nodes that already failed this request */
  exclude?: ReadonlySet<string> | undefined;
  /** `eventual` consistency: replicas past the staleness bound still serve */
  allowLagging?: boolean;
  /** an extra condition a replica must meet (a causal token it has replayed) */
  accept?: ((n: NodeStatus) => boolean) | undefined;
  /** a shard's nodes only (sharded PostgreSQL) */
  shard?: string | undefined;
}

export class ReadRouter {
  private readonly balancer: Balancer;
  /** Candidate objects reused per node so the per-read path allocates only the list. */
  private readonly candidates = new Map<string, Candidate & { status: NodeStatus }>();
  /** The list of one pick, reused: the balancer reads it during the call and keeps nothing. */
  private readonly list: (Candidate & { status: NodeStatus })[] = [];

  constructor(
    private readonly topology: Topology,
    private readonly policy: ReadRoutingPolicy,
  ) {
    this.balancer = createBalancer(policy.balance);
  }

  /** Picks a node for a read; `exclude` lists nodes that already failed this request. */
  pick(exclude?: ReadonlySet<string>, opts?: PickOptions): ReadDecision {
    const list = this.list;
    list.length = 0;
    let primary: NodeStatus | undefined;
    const shard = opts?.shard;
    const evenLagging = opts?.allowLagging ?? false;
    for (const n of this.topology.nodes) {
      if (shard !== undefined && n.spec.shard !== shard) continue;
      if (n.role === 'primary') {
        if (!canServe(n, exclude)) continue;
        primary = n;
        if (this.policy.primaryReads === 'always') list.push(this.candidate(n));
      } else if (eligibleReplica(n, evenLagging, exclude) && (!opts?.accept || opts.accept(n))) {
        list.push(this.candidate(n));
      }
    }
    if (list.length > 0) {
      const chosen =
        list.length === 1 ? list[0]! : (this.balancer.pick(list) as Candidate & { status: NodeStatus });
      return {
        ok: true,
        node: chosen.status,
        reason: chosen.status.role === 'primary' ? 'primary-read' : 'replica',
      };
    }
    return this.noReplica(primary, exclude);
  }

  private noReplica(primary: NodeStatus | undefined, exclude?: ReadonlySet<string>): ReadDecision {
    const replicas = this.topology.nodes.filter((n) => n.role === 'replica');
    const lagging = replicas.filter((n) => n.reachable && !n.fenced && n.lagging);
    const why = describeReplicas(replicas, exclude);
    if (this.policy.primaryReads === 'never') {
      return {
        ok: false,
        message: `no replica can serve this read (${why}) and postgres.routing.primaryReads is "never"`,
        hint: 'Set postgres.routing.primaryReads to "fallback" to let the primary serve reads then.',
      };
    }
    if (lagging.length > 0 && this.policy.whenAllLagging === 'error') {
      return {
        ok: false,
        message: `every replica is past the staleness bound (${why})`,
        hint: 'Raise postgres.staleness.maxLagBytes / maxLagMs, or set postgres.staleness.whenAllLagging to "fallback".',
      };
    }
    if (primary) return { ok: true, node: primary, reason: 'fallback-primary' };
    return {
      ok: false,
      message: `no node can serve this read: the primary is unreachable and ${why}`,
      hint: 'Check that the PostgreSQL servers listed in postgres.nodes are running.',
    };
  }

  private candidate(n: NodeStatus): Candidate & { status: NodeStatus } {
    let c = this.candidates.get(n.spec.id);
    if (!c) {
      c = { id: n.spec.id, weight: n.spec.weight, outstanding: 0, latencyMs: 0, status: n };
      this.candidates.set(n.spec.id, c);
    }
    c.outstanding = n.outstanding;
    c.latencyMs = n.latency.value;
    return c;
  }
}

function describeReplicas(replicas: readonly NodeStatus[], exclude?: ReadonlySet<string>): string {
  if (replicas.length === 0) return 'no replica is configured';
  return replicas
    .map((n) => {
      if (exclude?.has(n.spec.id)) return `${n.spec.id} failed this request`;
      if (n.fenced) return `${n.spec.id} is fenced`;
      if (!n.reachable) return `${n.spec.id} is down`;
      if (n.lagging) return `${n.spec.id} lags ${n.lagBytes ?? '?'} bytes / ${n.lagMs ?? '?'} ms`;
      return `${n.spec.id} is up`;
    })
    .join(', ');
}
