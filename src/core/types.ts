/**
 * Shared vocabulary of the routing core. Backend-agnostic: nothing here knows about
 * sockets or wire protocols.
 */

/** Which engine a node runs. */
export type NodeKind = 'postgres' | 'redis';

/** A node's replication role as last observed by the monitor. */
export type NodeRole = 'primary' | 'replica';

/**
 * Routing state of a node, as the admin API reports it.
 * - `up`: healthy and eligible for its role's traffic;
 * - `down`: not answering (connection refused, probe timeout);
 * - `lagging`: a replica past the staleness bound; it receives no reads;
 * - `fenced`: never routed to (an old primary after failover, or drained by an operator).
 */
export type NodeState = 'up' | 'down' | 'lagging' | 'fenced';

/** Static description of a node, from the config file or the local cluster launcher. */
export interface NodeSpec {
  id: string;
  kind: NodeKind;
  shard: string;
  host: string;
  port: number;
  /** Relative weight for the weighted balancer (default 1). */
  weight: number;
}

/** Read balancing strategies. */
export type BalanceStrategy = 'round-robin' | 'weighted' | 'least-outstanding' | 'lowest-latency';

/** Whether the primary takes reads: never, only when no replica can, or always as one more candidate. */
export type PrimaryReads = 'never' | 'fallback' | 'always';

/** What to do with a read when every replica is down or past the staleness bound. */
export type AllLaggingPolicy = 'fallback' | 'error';
