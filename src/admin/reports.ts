/**
 * The JSON bodies of the admin API's read endpoints, built from the ClusterView (every
 * topology: the PostgreSQL cluster, Redis shards, …) and the metric cells. Pure: no HTTP.
 */
import type { ClusterView, ConnectionCounts } from '../core/cluster-view.js';
import { nodeState } from '../core/topology.js';
import { bucketQuantile } from './fast-metrics.js';
import type { Metrics } from './metrics.js';

/** One row of `GET /api/nodes` (the fields users and scripts rely on, plus details). */
export interface NodeReport {
  id: string;
  kind: 'postgres' | 'redis';
  shard: string;
  role: 'primary' | 'replica';
  host: string;
  port: number;
  state: 'up' | 'down' | 'lagging' | 'fenced';
  lagBytes: number | null;
  lagMs: number | null;
  timeline: number | null;
  position: string | null;
  outstanding: number;
  latencyMs: number | null;
  lastError: string | null;
  connections: ConnectionCounts;
  /** what moves this node's bytes in the proxy: the native forwarding core or JavaScript (dataPlane) */
  dataPlane: 'native' | 'js';
}

/** One entry of `GET /api/shards`: the nodes of one shard of one engine. */
export interface ShardReport {
  kind: NodeReport['kind'];
  shard: string;
  /** id of the node currently routable as primary, or null when there is none */
  primary: string | null;
  nodes: NodeReport[];
}

/** Per-node totals in `GET /api/stats` (since the instance started). */
export interface NodeStatsReport {
  id: string;
  queries: number;
  reads: number | null;
  writes: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
}

/** The body of `GET /api/stats`. */
export interface StatsReport {
  at: number;
  /** routing decisions by reason (`read`, `write`, `transaction`, `pinned`, `retry`, …) */
  decisions: Record<string, number>;
  /** client connections open, per protocol */
  clients: Record<string, number>;
  /** backend connections summed over every node, and per node */
  backends: { total: ConnectionCounts; byNode: Record<string, ConnectionCounts> };
  nodes: NodeStatsReport[];
}

const round3 = (v: number): number => Math.round(v * 1000) / 1000;

export function nodeReports(view: ClusterView): NodeReport[] {
  const stats = view.connectionStats();
  return view.nodes.map((n) => ({
    id: n.spec.id,
    kind: n.spec.kind,
    shard: n.spec.shard,
    role: n.role,
    host: n.spec.host,
    port: n.spec.port,
    state: nodeState(n),
    lagBytes: n.lagBytes,
    lagMs: n.lagMs,
    timeline: n.timeline,
    position: n.position,
    outstanding: n.outstanding,
    latencyMs: Number.isFinite(n.latency.value) ? round3(n.latency.value) : null,
    lastError: n.lastError,
    connections: stats.get(n.spec.id) ?? { idle: 0, active: 0, waiting: 0 },
    dataPlane: view.dataPlane(n.spec.kind),
  }));
}

/** Nodes grouped by engine and shard, in the order the view lists them. */
export function shardReports(nodes: readonly NodeReport[]): ShardReport[] {
  const shards = new Map<string, ShardReport>();
  for (const n of nodes) {
    const key = `${n.kind}\0${n.shard}`;
    let s = shards.get(key);
    if (!s) shards.set(key, (s = { kind: n.kind, shard: n.shard, primary: null, nodes: [] }));
    s.nodes.push(n);
    if (n.role === 'primary' && (n.state === 'up' || n.state === 'lagging')) s.primary ??= n.id;
  }
  return [...shards.values()];
}

export function statsReport(view: ClusterView, metrics: Metrics): StatsReport {
  const byNode = Object.fromEntries(view.connectionStats());
  const total = { idle: 0, active: 0, waiting: 0 };
  for (const c of Object.values(byNode)) {
    total.idle += c.idle;
    total.active += c.active;
    total.waiting += c.waiting;
  }
  const nodes = view.nodes.map((n): NodeStatsReport => {
    const t = metrics.nodeTotals(n.spec.id);
    const h = t.latency;
    const ms = (q: number): number | null => {
      const s = h ? bucketQuantile(h.bounds, h.counts, h.count, q) : null;
      return s === null ? null : round3(s * 1000);
    };
    return {
      id: n.spec.id,
      queries: t.queries,
      reads: t.reads,
      writes: t.writes,
      p50Ms: ms(0.5),
      p99Ms: ms(0.99),
    };
  });
  return {
    at: Date.now(),
    decisions: metrics.decisionCounts(),
    clients: Object.fromEntries(view.clientCounts()),
    backends: { total, byNode },
    nodes,
  };
}
