/**
 * Which nodes may serve a request: one rule for the PostgreSQL read router, its causal reads
 * and the Redis read planner.
 */
import type { NodeStatus } from './topology.js';

/** A node that can take requests: reachable, not fenced, not one that already failed this one. */
export function canServe(n: NodeStatus, exclude?: ReadonlySet<string> | null): boolean {
  return n.reachable && !n.fenced && !(exclude?.has(n.spec.id) ?? false);
}

/**
 * A replica that may serve a read: it can serve (see canServe) and is within the staleness
 * bound, unless `evenLagging` (eventual consistency) lets a lagging one serve too.
 */
export function eligibleReplica(
  n: NodeStatus,
  evenLagging: boolean,
  exclude?: ReadonlySet<string> | null,
): boolean {
  return n.role === 'replica' && canServe(n, exclude) && (evenLagging || !n.lagging);
}
