/**
 * The library's Prometheus metrics: the proxy's own `Metrics` (src/admin/metrics.ts) over a
 * view of the library's topologies, so the names and labels are the proxy's
 * (`rwsplit_node_up`, `rwsplit_replication_lag_bytes`, `rwsplit_redis_commands_total`,
 * `rwsplit_pg_queries_by_kind_total`, …). Each pool or client has its registry; an app merges
 * it with its own (`Registry.merge([register, redis.metrics])`) or serves it as it is.
 */
import { Metrics } from '../admin/metrics.js';
import { ClusterView, type ConnectionStatsSource } from '../core/cluster-view.js';
import type { Topology } from '../core/topology.js';

export function libraryMetrics(topologies: readonly Topology[], connections: ConnectionStatsSource): Metrics {
  const view = new ClusterView();
  for (const t of topologies) view.addTopology(t);
  view.addConnections(connections);
  return new Metrics(view);
}
