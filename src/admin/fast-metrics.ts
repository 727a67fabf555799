/**
 * Metric primitives for the per-query path. prom-client's `labels(...).inc()` re-hashes the
 * label set on every call (measured: ~10 µs per transaction for three calls); these keep
 * plain numbers per label value and turn them into Prometheus samples only when scraped.
 */
import client from 'prom-client';

/**
 * A counter whose children are plain number cells, with one label or a few. A child is
 * keyed by its label values joined with NUL, a byte no label value here contains.
 */
export class CellCounter {
  private readonly cells = new Map<string, { n: number }>();

  constructor(name: string, help: string, label: string | readonly string[], registers: client.Registry[]) {
    const labels = typeof label === 'string' ? [label] : label;
    const cells = this.cells;
    new client.Counter({
      name,
      help,
      labelNames: labels,
      registers,
      collect() {
        this.reset();
        for (const [key, cell] of cells) {
          const values = key.split('\0');
          this.inc(Object.fromEntries(labels.map((l, i) => [l, values[i] ?? ''])), cell.n);
        }
      },
    });
  }

  /** The cell for one set of label values (in constructor order); keep it and do `cell.n++`. */
  cell(...values: string[]): { n: number } {
    const key = values.join('\0');
    let c = this.cells.get(key);
    if (!c) this.cells.set(key, (c = { n: 0 }));
    return c;
  }

  /** Every child as [label values, count]. */
  *entries(): IterableIterator<[string[], number]> {
    for (const [key, cell] of this.cells) yield [key.split('\0'), cell.n];
  }
}

/** One label value's buckets. */
export class HistogramCell {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(v: number): void {
    this.sum += v;
    this.count++;
    const b = this.bounds;
    for (let i = 0; i < b.length; i++) {
      if (v <= b[i]!) {
        this.counts[i]!++;
        return;
      }
    }
  }
}

/** A histogram with one label, registered with prom-client as a custom metric. */
export class CellHistogram {
  private readonly cells = new Map<string, HistogramCell>();
  readonly type = 'histogram';
  readonly aggregator = 'sum';

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly label: string,
    private readonly bounds: readonly number[],
    registry: client.Registry,
  ) {
    registry.registerMetric(this as unknown as client.Metric);
  }

  cell(value: string): HistogramCell {
    let c = this.cells.get(value);
    if (!c) this.cells.set(value, (c = new HistogramCell(this.bounds)));
    return c;
  }

  /** The shape prom-client's registry renders (name, help, type, values). */
  get(): {
    name: string;
    help: string;
    type: string;
    aggregator: string;
    values: client.MetricValueWithName<string>[];
  } {
    const values: client.MetricValueWithName<string>[] = [];
    for (const [value, cell] of this.cells) {
      let cumulative = 0;
      this.bounds.forEach((le, i) => {
        cumulative += cell.counts[i]!;
        values.push({
          metricName: `${this.name}_bucket`,
          labels: { le, [this.label]: value },
          value: cumulative,
        });
      });
      values.push({
        metricName: `${this.name}_bucket`,
        labels: { le: '+Inf', [this.label]: value },
        value: cell.count,
      });
      values.push({ metricName: `${this.name}_sum`, labels: { [this.label]: value }, value: cell.sum });
      values.push({ metricName: `${this.name}_count`, labels: { [this.label]: value }, value: cell.count });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.cells.clear();
  }

  /** Every child as [label value, cell]; the cells are live, copy what must not move. */
  entries(): IterableIterator<[string, HistogramCell]> {
    return this.cells.entries();
  }
}

/**
 * Estimates the q-quantile (0..1) of observations from per-bucket counts, as Prometheus'
 * `histogram_quantile()` does: find the bucket holding the rank and interpolate linearly
 * inside it (the first bucket starts at 0). Observations above the last bound (counted in
 * `total` but in no bucket) give the last bound, the most that can honestly be said.
 * Returns null when there are no observations.
 */
export function bucketQuantile(
  bounds: readonly number[],
  counts: ArrayLike<number>,
  total: number,
  q: number,
): number | null {
  if (total <= 0) return null;
  const rank = q * total;
  let below = 0;
  for (let i = 0; i < bounds.length; i++) {
    const inBucket = counts[i] ?? 0;
    if (below + inBucket >= rank && inBucket > 0) {
      const lower = i === 0 ? 0 : bounds[i - 1]!;
      return lower + (bounds[i]! - lower) * ((rank - below) / inBucket);
    }
    below += inBucket;
  }
  return bounds[bounds.length - 1] ?? null;
}
