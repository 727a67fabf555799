/**
 * Per-node rates and recent latency for the live dashboard: the metric cells are sampled
 * on an interval and each sample is compared with the one before, so `queriesPerSec` and
 * the p50/p99 are over the last interval, not since start.
 */
import type { ClusterView } from '../core/cluster-view.js';
import { bucketQuantile } from './fast-metrics.js';
import type { Metrics } from './metrics.js';

/** One node over the last sampling interval. */
export interface NodeRates {
  queriesPerSec: number;
  /**
   * Reads and writes per second. When the proxy reports the kind of its batches these
   * come from `rwsplit_pg_queries_by_kind_total`; otherwise a replica's batches count as
   * reads and a primary's as writes (a primary's fallback reads then show as writes).
   */
  readsPerSec: number;
  writesPerSec: number;
  /** latency quantiles of the batches answered in the interval; null when none were */
  p50Ms: number | null;
  p99Ms: number | null;
}

/** The rates of every node, as of one sample. */
export interface RatesSample {
  at: number;
  intervalMs: number;
  nodes: Record<string, NodeRates>;
}

interface Counts {
  queries: number;
  reads: number | null;
  writes: number | null;
  bounds: readonly number[];
  buckets: Float64Array | null;
  answered: number;
}

export class LiveStats {
  private previous: { at: number; counts: Map<string, Counts> } | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** The most recent sample (empty until two samples have been taken). */
  latest: RatesSample = { at: Date.now(), intervalMs: 0, nodes: {} };

  constructor(
    private readonly view: ClusterView,
    private readonly metrics: Metrics,
  ) {}

  /** Samples every `intervalMs`, calling `onSample` after each; the timer does not keep the process alive. */
  start(intervalMs: number, onSample: (s: RatesSample) => void): void {
    this.sample();
    this.timer = setInterval(() => onSample(this.sample()), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Takes one sample and computes the rates since the previous one. */
  sample(now = Date.now()): RatesSample {
    const counts = new Map<string, Counts>();
    for (const n of this.view.nodes) {
      const t = this.metrics.nodeTotals(n.spec.id);
      counts.set(n.spec.id, {
        queries: t.queries,
        reads: t.reads,
        writes: t.writes,
        bounds: t.latency?.bounds ?? [],
        buckets: t.latency ? Float64Array.from(t.latency.counts) : null,
        answered: t.latency?.count ?? 0,
      });
    }
    const prev = this.previous;
    this.previous = { at: now, counts };
    if (!prev || now <= prev.at) return this.latest;
    const seconds = (now - prev.at) / 1000;
    const nodes: Record<string, NodeRates> = {};
    for (const n of this.view.nodes) {
      const cur = counts.get(n.spec.id)!;
      const old = prev.counts.get(n.spec.id);
      nodes[n.spec.id] = rates(cur, old, seconds, n.role);
    }
    this.latest = { at: now, intervalMs: now - prev.at, nodes };
    return this.latest;
  }
}

function rates(cur: Counts, old: Counts | undefined, seconds: number, role: string): NodeRates {
  const per = (a: number, b: number | undefined): number => Math.max(0, a - (b ?? 0)) / seconds;
  const round = (v: number): number => Math.round(v * 10) / 10;
  const queriesPerSec = per(cur.queries, old?.queries);
  let readsPerSec: number;
  let writesPerSec: number;
  if (cur.reads !== null && cur.writes !== null) {
    readsPerSec = per(cur.reads, old?.reads ?? 0);
    writesPerSec = per(cur.writes, old?.writes ?? 0);
  } else {
    readsPerSec = role === 'replica' ? queriesPerSec : 0;
    writesPerSec = role === 'replica' ? 0 : queriesPerSec;
  }
  let p50Ms: number | null = null;
  let p99Ms: number | null = null;
  const buckets = cur.buckets;
  const answered = cur.answered - (old?.answered ?? 0);
  if (buckets && answered > 0) {
    const delta = buckets.map((c, i) => c - (old?.buckets?.[i] ?? 0));
    const q = (x: number): number | null => {
      const s = bucketQuantile(cur.bounds, delta, answered, x);
      return s === null ? null : Math.round(s * 1e6) / 1000;
    };
    p50Ms = q(0.5);
    p99Ms = q(0.99);
  }
  return {
    queriesPerSec: round(queriesPerSec),
    readsPerSec: round(readsPerSec),
    writesPerSec: round(writesPerSec),
    p50Ms,
    p99Ms,
  };
}
