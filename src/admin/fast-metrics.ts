/**
 * Metric primitives for the per-query path. prom-client's `labels(...).inc()` re-hashes the
 * label set on every call (measured: ~10 µs per transaction for three calls); these keep
 * plain numbers per label value and turn them into Prometheus samples only when scraped.
 */
import client from 'prom-client';

/** A counter with one label whose children are plain number cells. */
export class CellCounter {
  private readonly cells = new Map<string, { n: number }>();

  constructor(name: string, help: string, label: string, registers: client.Registry[]) {
    const cells = this.cells;
    new client.Counter({
      name,
      help,
      labelNames: [label],
      registers,
      collect() {
        this.reset();
        for (const [value, cell] of cells) this.inc({ [label]: value }, cell.n);
      },
    });
  }

  /** The cell for one label value; keep it and do `cell.n++`. */
  cell(value: string): { n: number } {
    let c = this.cells.get(value);
    if (!c) this.cells.set(value, (c = { n: 0 }));
    return c;
  }
}

/** One label value's buckets. */
export class HistogramCell {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(private readonly bounds: readonly number[]) {
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
}
