/**
 * Prometheus metrics (prom-client), one registry per rwsplit instance. Per-node children
 * are bound once so the per-query path does no label lookups.
 */
import client from 'prom-client';
import type { ClientGuard } from '../core/client-guard.js';
import type { ClusterView } from '../core/cluster-view.js';
import { nodeState } from '../core/topology.js';
import type { RouteReason } from '../pg/routing/route-decision.js';
import type { CausalOutcome, PgStats } from '../pg/session/session-context.js';
import { REDIS_ERROR_KINDS, redisErrorCounts, type RedisErrorKind } from '../redis/errors.js';
import { CellCounter, CellHistogram, type HistogramCell } from './fast-metrics.js';

/** Which side of the split a dispatched batch was routed to: `read` (a read route) or `write` (the primary's traffic). */
export type QueryKind = 'read' | 'write';

/** What the admin API reports per node, read from the cells (no scrape). */
export interface NodeTotals {
  queries: number;
  /** null until the proxy reports the kind of its batches (`dispatched(node, kind)`) */
  reads: number | null;
  writes: number | null;
  /** the node's latency histogram; live, copy what must not move */
  latency: HistogramCell | null;
}

/** What a Redis proxy feeds (the same shape `src/redis/` uses). */
export interface RedisStats {
  routed(nodeId: string, read: boolean): void;
  retried(nodeId: string): void;
}

/**
 * The data-plane workers' figures (src/workers/), added to this process's: their sessions
 * count the traffic, this process (the controller) only watches.
 */
export interface RemoteMetrics {
  /** every worker's registry as `getMetricsAsJSON()` gives it */
  registries(): Promise<client.MetricObjectWithValues<client.MetricValue<string>>[][]>;
  /** traffic totals of one node summed over the workers */
  totals(nodeId: string): { queries: number; reads: number | null; writes: number | null };
  decisions(): Record<string, number>;
}

/**
 * Metrics only the controller knows (the monitor's and the view's): a worker's copy would be
 * counted once per worker.
 */
const CONTROLLER_METRICS = new Set([
  'rwsplit_node_up',
  'rwsplit_replication_lag_bytes',
  'rwsplit_replication_lag_seconds',
  'rwsplit_replication_lag_observed_seconds',
  'rwsplit_client_connections',
  'rwsplit_backend_connections',
  'rwsplit_buffered_bytes_limit',
]);

export class Metrics implements PgStats {
  readonly registry = new client.Registry();
  private readonly queries: CellCounter;
  private readonly queriesByKind: CellCounter;
  private readonly decisions: CellCounter;
  private readonly retries: CellCounter;
  private readonly clientErrors: CellCounter;
  private readonly causalReads: CellCounter;
  private readonly duration: CellHistogram;
  private readonly lagObserved: CellHistogram;
  private readonly queryCells = new Map<string, { n: number }>();
  private readonly decisionCells = new Map<string, { n: number }>();
  private readonly durationCells = new Map<string, HistogramCell>();
  private readonly kindCells = new Map<string, Record<QueryKind, { n: number }>>();
  private readonly redisCells = new Map<string, Record<QueryKind, { n: number }>>();
  private redis: RedisStats | null = null;
  private remote: RemoteMetrics | null = null;

  constructor(view: ClusterView) {
    const registers = [this.registry];
    this.queries = new CellCounter(
      'rwsplit_pg_queries_total',
      'Batches (Query or Sync-terminated extended-protocol groups) sent to each node',
      'node',
      registers,
    );
    this.queriesByKind = new CellCounter(
      'rwsplit_pg_queries_by_kind_total',
      'Batches sent to each node, by the side of the split they were routed as (read or write)',
      ['node', 'kind'],
      registers,
    );
    this.decisions = new CellCounter(
      'rwsplit_pg_route_decisions_total',
      'Routing decisions by reason',
      'reason',
      registers,
    );
    this.retries = new CellCounter(
      'rwsplit_pg_read_retries_total',
      'Autocommit reads retried on another node after this node failed before answering',
      'node',
      registers,
    );
    this.clientErrors = new CellCounter(
      'rwsplit_pg_client_errors_total',
      'Errors rwsplit itself sent to clients, by SQLSTATE',
      'sqlstate',
      registers,
    );
    this.causalReads = new CellCounter(
      'rwsplit_pg_causal_reads_total',
      'Reads of sessions holding a causal token, by how the token was honoured',
      'outcome',
      registers,
    );
    this.duration = new CellHistogram(
      'rwsplit_pg_query_duration_seconds',
      'Time from sending a batch to a node to its ReadyForQuery',
      'node',
      [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      this.registry,
    );
    this.lagObserved = new CellHistogram(
      'rwsplit_replication_lag_observed_seconds',
      'Replica time lag as observed by each monitor probe',
      'node',
      [0, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300],
      this.registry,
    );
    const gauge = (
      name: string,
      help: string,
      labelNames: string[],
      collect: (g: client.Gauge) => void,
    ): void => {
      new client.Gauge({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset();
          collect(this);
        },
      });
    };
    gauge(
      'rwsplit_data_plane',
      'The data plane of each proxy: 1 for the one in use (native forwarding core or js), per dataPlane',
      ['protocol', 'plane'],
      (g) => {
        for (const kind of view.proxyKinds) {
          const plane = view.dataPlane(kind);
          g.set({ protocol: kind, plane }, 1);
          g.set({ protocol: kind, plane: plane === 'native' ? 'js' : 'native' }, 0);
        }
      },
    );
    gauge(
      'rwsplit_node_up',
      '1 when the node is in rotation (state up), else 0',
      ['node', 'kind', 'role', 'state'],
      (g) => {
        for (const n of view.nodes) {
          const state = nodeState(n);
          g.set({ node: n.spec.id, kind: n.spec.kind, role: n.role, state }, state === 'up' ? 1 : 0);
        }
      },
    );
    gauge(
      'rwsplit_replication_lag_bytes',
      'Replica lag behind the primary in bytes of WAL',
      ['node'],
      (g) => {
        for (const n of view.nodes) if (n.lagBytes !== null) g.set({ node: n.spec.id }, n.lagBytes);
      },
    );
    gauge('rwsplit_replication_lag_seconds', 'Replica lag behind the primary in seconds', ['node'], (g) => {
      for (const n of view.nodes) if (n.lagMs !== null) g.set({ node: n.spec.id }, n.lagMs / 1000);
    });
    gauge('rwsplit_outstanding_requests', 'Requests in flight per node', ['node'], (g) => {
      for (const n of view.nodes) g.set({ node: n.spec.id }, n.outstanding);
    });
    gauge('rwsplit_client_connections', 'Client connections open, per protocol', ['protocol'], (g) => {
      for (const [protocol, n] of view.clientCounts()) g.set({ protocol }, n);
    });
    gauge('rwsplit_backend_connections', 'Backend connections per node and state', ['node', 'state'], (g) => {
      for (const [node, s] of view.connectionStats()) {
        g.set({ node, state: 'idle' }, s.idle);
        g.set({ node, state: 'active' }, s.active);
        g.set({ node, state: 'waiting' }, s.waiting);
      }
    });
  }

  routed(reason: RouteReason): void {
    let c = this.decisionCells.get(reason);
    if (!c) this.decisionCells.set(reason, (c = this.decisions.cell(reason)));
    c.n++;
  }

  /** One batch sent to a node; `kind`, when the caller knows it, feeds the read/write split. */
  dispatched(nodeId: string, kind?: QueryKind): void {
    let c = this.queryCells.get(nodeId);
    if (!c) this.queryCells.set(nodeId, (c = this.queries.cell(nodeId)));
    c.n++;
    if (kind === undefined) return;
    let k = this.kindCells.get(nodeId);
    if (!k) {
      k = { read: this.queriesByKind.cell(nodeId, 'read'), write: this.queriesByKind.cell(nodeId, 'write') };
      this.kindCells.set(nodeId, k);
    }
    k[kind].n++;
  }

  answered(nodeId: string, seconds: number): void {
    let h = this.durationCells.get(nodeId);
    if (!h) this.durationCells.set(nodeId, (h = this.duration.cell(nodeId)));
    h.observe(seconds);
  }

  retried(nodeId: string): void {
    this.retries.cell(nodeId).n++;
  }

  clientError(sqlstate: string): void {
    this.clientErrors.cell(sqlstate).n++;
  }

  causalRead(outcome: CausalOutcome): void {
    this.causalReads.cell(outcome).n++;
  }

  lagSample(nodeId: string, lagMs: number): void {
    this.lagObserved.cell(nodeId).observe(lagMs / 1000);
  }

  /** Routing decisions so far, by reason. */
  decisionCounts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [[reason], n] of this.decisions.entries()) out[reason!] = n;
    for (const [reason, n] of Object.entries(this.remote?.decisions() ?? {}))
      out[reason] = (out[reason] ?? 0) + n;
    return out;
  }

  /** From now on the data-plane workers' figures are part of this instance's. */
  addRemote(remote: RemoteMetrics): void {
    this.remote = remote;
  }

  /** The Prometheus text of `GET /metrics`: this process's registry, plus the workers' summed. */
  async exposition(): Promise<string> {
    if (!this.remote) return this.registry.metrics();
    const own = await this.registry.getMetricsAsJSON();
    const workers = (await this.remote.registries()).map((r) =>
      r.filter((m) => !CONTROLLER_METRICS.has(m.name)),
    );
    return client.AggregatorRegistry.aggregate([own, ...workers]).metrics();
  }

  /**
   * The Redis proxy's counters (`rwsplit_redis_commands_total{node,kind}`,
   * `rwsplit_redis_read_retries_total{node}`, `rwsplit_redis_client_errors_total{kind,prefix}`),
   * registered on first call so that they exist only in an instance with Redis; the admin
   * API's per-node totals and rates include them.
   */
  redisStats(): RedisStats {
    if (this.redis) return this.redis;
    const commands = new CellCounter(
      'rwsplit_redis_commands_total',
      'Redis commands sent to each node, by kind (read or write)',
      ['node', 'kind'],
      [this.registry],
    );
    const retries = new CellCounter(
      'rwsplit_redis_read_retries_total',
      'Redis reads retried on another node',
      'node',
      [this.registry],
    );
    const made = redisErrorCounts();
    new client.Counter({
      name: 'rwsplit_redis_client_errors_total',
      help: 'Errors rwsplit itself sent to Redis clients, by kind and RESP prefix',
      labelNames: ['kind', 'prefix'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const kind of Object.keys(made) as RedisErrorKind[]) {
          if (made[kind] > 0) this.inc({ kind, prefix: REDIS_ERROR_KINDS[kind] }, made[kind]);
        }
      },
    });
    const cells = this.redisCells;
    this.redis = {
      routed(nodeId: string, read: boolean): void {
        let k = cells.get(nodeId);
        if (!k)
          cells.set(
            nodeId,
            (k = { read: commands.cell(nodeId, 'read'), write: commands.cell(nodeId, 'write') }),
          );
        (read ? k.read : k.write).n++;
      },
      retried(nodeId: string): void {
        retries.cell(nodeId).n++;
      },
    };
    return this.redis;
  }

  /**
   * The client guard's figures: `rwsplit_buffered_bytes` (the budget's use at the last
   * sample), `rwsplit_buffered_bytes_limit` (`limits.maxBufferedBytes`, 0: none) and
   * `rwsplit_clients_killed_total{protocol,reason,class}`.
   */
  watchGuard(guard: ClientGuard): void {
    const registers = [this.registry];
    new client.Gauge({
      name: 'rwsplit_buffered_bytes',
      help: 'Bytes buffered for clients and backends over all sessions (the buffer budget in use)',
      registers,
      collect() {
        this.set(guard.used);
      },
    });
    new client.Gauge({
      name: 'rwsplit_buffered_bytes_limit',
      help: 'The buffer budget, limits.maxBufferedBytes (0: none)',
      registers,
      collect() {
        this.set(guard.maxBufferedBytes);
      },
    });
    new client.Counter({
      name: 'rwsplit_clients_killed_total',
      help: 'Clients rwsplit closed for a limit, by protocol, reason and client class',
      labelNames: ['protocol', 'reason', 'class'],
      registers,
      collect() {
        this.reset();
        for (const [key, n] of guard.kills) {
          const [protocol, reason, cls] = key.split('\0');
          this.inc({ protocol: protocol!, reason: reason!, class: cls! }, n);
        }
      },
    });
  }

  /** Totals of one node of any engine (zeros for a node that has seen no traffic). */
  nodeTotals(nodeId: string): NodeTotals {
    const redis = this.redisCells.get(nodeId);
    if (redis)
      return {
        queries: redis.read.n + redis.write.n,
        reads: redis.read.n,
        writes: redis.write.n,
        latency: null,
      };
    const kinds = this.kindCells.get(nodeId);
    const own = {
      queries: this.queryCells.get(nodeId)?.n ?? 0,
      reads: kinds ? kinds.read.n : null,
      writes: kinds ? kinds.write.n : null,
      latency: this.durationCells.get(nodeId) ?? null,
    };
    const r = this.remote?.totals(nodeId);
    if (!r) return own;
    const add = (a: number | null, b: number | null): number | null =>
      a === null && b === null ? null : (a ?? 0) + (b ?? 0);
    return {
      ...own,
      queries: own.queries + r.queries,
      reads: add(own.reads, r.reads),
      writes: add(own.writes, r.writes),
    };
  }
}
