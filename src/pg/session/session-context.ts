/**
 * What a client session needs from the proxy around it. Kept as an interface so the
 * session module stays free of server, monitor and metrics wiring.
 */
import type { NativeCore } from '../../util/native-core.js';
import type { ReplayPositions } from '../../core/causal.js';
import type { NodeStatus, Topology } from '../../core/topology.js';
import type { ConsistencyLevel } from '../../config/schema.js';
import type { ReadRouter } from '../../core/read-router.js';
import type { Classifier } from '../classifier/classify.js';
import type { BackendPool } from '../backend/backend-pool.js';
import type { BackendConnection, BackendLogin } from '../backend/backend-connection.js';
import type { RwsplitPgError } from '../errors.js';
import type { ShardResolver } from '../sharding/shard-resolver.js';
import type { TwoPhaseCoordinator } from '../sharding/twopc/index.js';
import type { RouteDecision, RouteReason } from '../routing/route-decision.js';

/** Counters and histograms the data path feeds (implemented with prom-client in admin/). */
export interface PgStats {
  routed(reason: RouteReason): void;
  /** a batch went to a node, routed as a read or as a write */
  dispatched(nodeId: string, kind: 'read' | 'write'): void;
  answered(nodeId: string, seconds: number): void;
  retried(nodeId: string): void;
  clientError(sqlstate: string): void;
  /** a read with a causal token: served by a replica known to be far enough, one checked, or the primary */
  causalRead(outcome: CausalOutcome): void;
}

export type CausalOutcome = 'replica-known' | 'replica-checked' | 'primary';

/** Sharded PostgreSQL: how statements find their shard, and the 2PC coordinator for COMMIT. */
export interface ShardingContext {
  readonly resolver: ShardResolver;
  readonly coordinator: TwoPhaseCoordinator;
  /** longest wait for one participant's PREPARE/COMMIT PREPARED (decisionTimeoutMs) */
  readonly statementTimeoutMs: number;
}

export interface SessionContext {
  readonly classifier: Classifier;
  readonly topology: Topology;
  readonly readRouter: ReadRouter;
  readonly stats: PgStats;
  readonly retryReads: boolean;
  readonly maxBatchBytes: number;
  /** consistency level a session starts with (postgres.routing.consistency) */
  readonly consistency: ConsistencyLevel;
  readonly causalWaitMs: number;
  /** how long a write waits for a new primary (postgres.failover.bufferMs) */
  readonly failoverBufferMs: number;
  /** null unless postgres.sharding is configured */
  readonly sharding: ShardingContext | null;
  /** replicas' known replay positions, for causal tokens */
  readonly replay: ReplayPositions;
  /** the native forwarding core when the data plane is native (dataPlane), else null */
  readonly nativeCore: NativeCore | null;

  /** the pool for a node and a login (created on first use) */
  pool(node: NodeStatus, login: BackendLogin): BackendPool;
  /** the data path lost a connection to this node unexpectedly */
  nodeFailed(nodeId: string, reason: string): void;
  /** a session ended (for the cancel-key registry) */
  sessionClosed(processId: number): void;
  /** the backend of rwsplit's pools with this server pid, or the session rwsplit gave this pid to */
  signalTarget(pid: number): SignalTarget | null;
}

/** The routing intents a session's helpers call on it (causal reads, backend signals). */
export interface RoutingHost {
  /** the shard the batch being routed belongs to */
  readonly shard: string;
  readonly closed: boolean;
  /**
   * The proxy runs its own work (`work`, on the lease or beside it): the client's requests
   * wait until it settles; `then` runs with its result as soon as they may go on.
   */
  gate<T>(work: Promise<T>, then: (result: T) => void): void;
  route(decision: RouteDecision, failed: Set<string> | null): void;
  routeTo(
    node: NodeStatus,
    decision: RouteDecision,
    reason: RouteReason,
    failed: Set<string> | null,
    checkToken: bigint | null,
  ): void;
}

/** Whom a literal pid names: a backend of rwsplit's pools, or a session rwsplit gave the pid to. */
export type SignalTarget =
  | { kind: 'backend'; conn: BackendConnection; node: NodeStatus }
  | { kind: 'session'; session: SignalledSession };

/** What a signal needs of the session it is aimed at (ClientSession implements it). */
export interface SignalledSession {
  readonly currentBackend: BackendConnection | null;
  /** the node of the leased backend */
  readonly node: NodeStatus | null;
  fatal(err: RwsplitPgError): void;
}
