/**
 * Prometheus metrics (prom-client), one registry per rwsplit instance. Per-node children
 * are bound once so the per-query path does no label lookups.
 */
import client from 'prom-client';
import type { Topology } from '../core/topology.js';
import { nodeState } from '../core/topology.js';
import type { PgStats, RouteReason } from '../pg/session-context.js';

export interface PoolStatsSource {
  readonly clientCount: number;
  poolStats(): Map<string, { idle: number; active: number; waiting: number }>;
}

export class Metrics implements PgStats {
  readonly registry = new client.Registry();
  private readonly queries: client.Counter<'node'>;
  private readonly decisions: client.Counter<'reason'>;
  private readonly retries: client.Counter<'node'>;
  private readonly clientErrors: client.Counter<'sqlstate'>;
  private readonly duration: client.Histogram<'node'>;
  private readonly lagObserved: client.Histogram<'node'>;
  private readonly queryChildren = new Map<string, client.Counter.Internal>();
  private readonly durationChildren = new Map<string, client.Histogram.Internal<'node'>>();
  private readonly decisionChildren = new Map<string, client.Counter.Internal>();

  constructor(topology: Topology, pools: () => PoolStatsSource | null) {
    const registers = [this.registry];
    this.queries = new client.Counter({
      name: 'rwsplit_pg_queries_total',
      help: 'Batches (Query or Sync-terminated extended-protocol groups) sent to each node',
      labelNames: ['node'],
      registers,
    });
    this.decisions = new client.Counter({
      name: 'rwsplit_pg_route_decisions_total',
      help: 'Routing decisions by reason',
      labelNames: ['reason'],
      registers,
    });
    this.retries = new client.Counter({
      name: 'rwsplit_pg_read_retries_total',
      help: 'Autocommit reads retried on another node after this node failed before answering',
      labelNames: ['node'],
      registers,
    });
    this.clientErrors = new client.Counter({
      name: 'rwsplit_pg_client_errors_total',
      help: 'Errors rwsplit itself sent to clients, by SQLSTATE',
      labelNames: ['sqlstate'],
      registers,
    });
    this.duration = new client.Histogram({
      name: 'rwsplit_pg_query_duration_seconds',
      help: 'Time from sending a batch to a node to its ReadyForQuery',
      labelNames: ['node'],
      buckets: [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.lagObserved = new client.Histogram({
      name: 'rwsplit_replication_lag_observed_seconds',
      help: 'Replica time lag as observed by each monitor probe',
      labelNames: ['node'],
      buckets: [0, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300],
      registers,
    });
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
      'rwsplit_node_up',
      '1 when the node is in rotation (state up), else 0',
      ['node', 'kind', 'role', 'state'],
      (g) => {
        for (const n of topology.nodes) {
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
        for (const n of topology.nodes) if (n.lagBytes !== null) g.set({ node: n.spec.id }, n.lagBytes);
      },
    );
    gauge('rwsplit_replication_lag_seconds', 'Replica lag behind the primary in seconds', ['node'], (g) => {
      for (const n of topology.nodes) if (n.lagMs !== null) g.set({ node: n.spec.id }, n.lagMs / 1000);
    });
    gauge('rwsplit_pg_outstanding_requests', 'Batches in flight per node', ['node'], (g) => {
      for (const n of topology.nodes) g.set({ node: n.spec.id }, n.outstanding);
    });
    gauge('rwsplit_pg_client_connections', 'Client connections open', [], (g) => {
      g.set(pools()?.clientCount ?? 0);
    });
    gauge(
      'rwsplit_pg_backend_connections',
      'Backend connections per node and state',
      ['node', 'state'],
      (g) => {
        for (const [node, s] of pools()?.poolStats() ?? []) {
          g.set({ node, state: 'idle' }, s.idle);
          g.set({ node, state: 'active' }, s.active);
          g.set({ node, state: 'waiting' }, s.waiting);
        }
      },
    );
  }

  routed(reason: RouteReason): void {
    let c = this.decisionChildren.get(reason);
    if (!c) this.decisionChildren.set(reason, (c = this.decisions.labels(reason)));
    c.inc();
  }

  dispatched(nodeId: string): void {
    let c = this.queryChildren.get(nodeId);
    if (!c) this.queryChildren.set(nodeId, (c = this.queries.labels(nodeId)));
    c.inc();
  }

  answered(nodeId: string, seconds: number): void {
    let h = this.durationChildren.get(nodeId);
    if (!h) this.durationChildren.set(nodeId, (h = this.duration.labels(nodeId)));
    h.observe(seconds);
  }

  retried(nodeId: string): void {
    this.retries.labels(nodeId).inc();
  }

  clientError(sqlstate: string): void {
    this.clientErrors.labels(sqlstate).inc();
  }

  lagSample(nodeId: string, lagMs: number): void {
    this.lagObserved.labels(nodeId).observe(lagMs / 1000);
  }
}
