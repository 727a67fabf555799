/**
 * The four figures of one stream: arrival rate (changes decoded per second), write rate
 * (changes applied to Redis per second), read rate (reads of the stream's keys per second,
 * counted by whoever serves them), and freshness (commit on the primary to applied in Redis).
 * Rates are over the last few seconds; freshness keeps recent samples for percentiles and
 * cumulative histogram buckets for Prometheus.
 */

/** Freshness histogram bucket bounds, milliseconds. */
export const FRESHNESS_BUCKETS_MS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000];
const SAMPLES = 4096;
const WINDOW_MS = 5000;
const MARK_MS = 200;

/**
 * A counter with its rate over the last WINDOW_MS: marks (time, total) are taken as counts
 * arrive (at most every MARK_MS), and the rate runs from the oldest mark still in the window,
 * over at least a second so a burst does not read as a huge rate.
 */
class RateCounter {
  total = 0;
  private readonly marks: { at: number; total: number }[] = [];

  add(n: number, now = Date.now()): void {
    const last = this.marks[this.marks.length - 1];
    if (!last || now - last.at >= MARK_MS) this.marks.push({ at: now, total: this.total });
    this.total += n;
  }

  rate(now = Date.now()): number {
    while (this.marks.length > 0 && now - this.marks[0]!.at > WINDOW_MS) this.marks.shift();
    const first = this.marks[0];
    if (!first) return 0;
    return ((this.total - first.total) * 1000) / Math.max(1000, now - first.at);
  }
}

export class StreamFigures {
  readonly arrivals = new RateCounter();
  readonly writes = new RateCounter();
  readonly reads = new RateCounter();
  /** cumulative counts per bucket of FRESHNESS_BUCKETS_MS, then +Inf */
  readonly buckets = new Array<number>(FRESHNESS_BUCKETS_MS.length + 1).fill(0);
  freshnessSumMs = 0;
  freshnessCount = 0;
  private readonly recent: number[] = [];
  private next = 0;

  freshness(ms: number): void {
    const v = Math.max(0, ms);
    this.freshnessSumMs += v;
    this.freshnessCount++;
    let i = FRESHNESS_BUCKETS_MS.findIndex((b) => v <= b);
    if (i < 0) i = FRESHNESS_BUCKETS_MS.length;
    this.buckets[i]!++;
    if (this.recent.length < SAMPLES) this.recent.push(v);
    else this.recent[this.next] = v;
    this.next = (this.next + 1) % SAMPLES;
  }

  /** A percentile (0..100) of the recent freshness samples, null before any. */
  percentile(p: number): number | null {
    if (this.recent.length === 0) return null;
    const sorted = [...this.recent].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
  }
}
