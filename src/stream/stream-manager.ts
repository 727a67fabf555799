/**
 * The instance's change streams (`streams:` in the config): builds one ChangeStream per
 * entry on top of the PostgreSQL topology and the running Redis proxy, reports them for
 * `GET /api/streams` and exports their four figures to Prometheus.
 */
import client from 'prom-client';
import type { Logger } from 'pino';
import type { Config, StreamsConfig } from '../config/schema.js';
import type { Topology } from '../core/topology.js';
import type { RedisService } from '../redis/service.js';
import type { LinkOptions } from '../redis/backend/backend-link.js';
import { ChangeStream, type ChangeStreamDeps } from './change-stream.js';
import { formatLsn } from './pgoutput.js';
import type { RedisShardsView } from './redis-target.js';
import { FRESHNESS_BUCKETS_MS } from './stream-figures.js';
import type { StreamReadGate } from './stream-reads.js';
import type { CausalToken } from '../core/causal.js';

/** One entry of `GET /api/streams`. */
export interface StreamReport {
  name: string;
  table: string;
  state: string;
  /** the last failure, until the stream applies again (or why it stopped, state `error`) */
  error: string | null;
  /** failures since start */
  errors: number;
  appliedLsn: string | null;
  lagBytes: number | null;
  /** row changes decoded and not yet applied */
  lagChanges: number | null;
  /** since the commit of the oldest transaction not yet applied */
  lagMs: number | null;
  arrivalRate: number;
  writeRate: number;
  readRate: number;
  freshnessP50Ms: number | null;
  freshnessP99Ms: number | null;
}

export class StreamManager implements StreamReadGate {
  readonly streams: ChangeStream[];

  private constructor(
    streams: ChangeStream[],
    /** `redis.causalWaitMs`: how long a read with a PostgreSQL token waits for the stream */
    private readonly causalWaitMs: number,
    private readonly redis: RedisService,
  ) {
    this.streams = streams;
  }

  static start(
    config: Config,
    streams: StreamsConfig,
    pgTopology: Topology,
    redis: RedisService,
    registry: client.Registry,
    log: Logger,
    event: ChangeStreamDeps['event'],
  ): StreamManager {
    const pgc = config.postgres!;
    const rc = config.redis!;
    const user =
      streams.user ?? pgc.monitor.user ?? pgc.backend.user ?? pgc.auth.users[0]?.name ?? 'postgres';
    const password =
      streams.password ??
      pgc.monitor.password ??
      pgc.backend.password ??
      pgc.auth.users.find((u) => u.name === user)?.password;
    const linkOptions: LinkOptions = { resp3: false, connectTimeoutMs: rc.pool.connectTimeoutMs };
    if (rc.backend.password !== undefined) linkOptions.password = rc.backend.password;
    if (rc.backend.user !== undefined) linkOptions.user = rc.backend.user;
    const view: RedisShardsView = {
      names: rc.shards.map((s) => s.name),
      shardOf: (key) => redis.proxy.shards.shardOf(Buffer.from(key)),
      primary: (i) => {
        const n = redis.topologies[i]?.writablePrimary(rc.shards[i]!.name);
        return n && { nodeId: n.spec.id, host: n.spec.host, port: n.spec.port };
      },
      // A replica that is down cannot be waited for: with none reachable, the primary's answer is all there is.
      nodeCount: (i) =>
        1 + (redis.topologies[i]?.nodes.filter((n) => n.role === 'replica' && n.reachable).length ?? 0),
      linkOptions,
    };
    const list = streams.list.map(
      (s) =>
        new ChangeStream(s, {
          pgPrimary: () => {
            const n = pgTopology.writablePrimary(s.shard);
            return n && { nodeId: n.spec.id, host: n.spec.host, port: n.spec.port };
          },
          login: {
            user,
            database: streams.database ?? pgc.monitor.database,
            ...(password !== undefined && !password.startsWith('SCRAM-SHA-256$') ? { password } : {}),
          },
          connectTimeoutMs: pgc.pool.connectTimeoutMs,
          maxFrameBytes: pgc.limits.maxFrameBytes,
          redis: view,
          maxInFlight: streams.maxInFlight,
          statusIntervalMs: streams.statusIntervalMs,
          log,
          event,
        }),
    );
    const manager = new StreamManager(list, rc.causalWaitMs, redis);
    manager.register(registry);
    redis.proxy.streamReads = manager;
    for (const s of list) s.start();
    return manager;
  }

  async stop(): Promise<void> {
    if (this.redis.proxy.streamReads === this) this.redis.proxy.streamReads = null;
    await Promise.all(this.streams.map((s) => s.stop()));
  }

  /**
   * Stops consuming but keeps serving reads (they wait for a token, then get TRYAGAIN): a
   * graceful restart hands the slots to the new process.
   */
  async pause(): Promise<void> {
    await Promise.all(this.streams.map((s) => s.stop()));
  }

  /** Consumes again after pause() (the new process of a graceful restart failed to start). */
  async resume(): Promise<void> {
    await Promise.all(this.streams.map((s) => s.resume()));
  }

  /** The stream whose keys include `key` (by its template's shape), if any. */
  streamOfKey(key: string): ChangeStream | undefined {
    return this.streams.find((s) => s.template.matches(key));
  }

  /** See StreamReadGate: counts reads of stream-fed keys, makes them wait for a PostgreSQL token. */
  read(key: Buffer, pgToken: CausalToken | null): { wait: Promise<void> | null } | null {
    const s = this.streamOfKey(key.toString('utf8'));
    if (!s) return null;
    s.figures.reads.add(1);
    const lsn = pgToken?.get(s.config.shard);
    return { wait: lsn === undefined ? null : s.waitApplied(lsn, this.causalWaitMs) };
  }

  // ---- for the data-plane workers (src/workers/): they serve the reads, the streams run here

  /** Each stream's applied position, when known. */
  appliedPositions(): [string, bigint][] {
    return this.streams.flatMap((s) => (s.appliedLsn === null ? [] : [[s.name, s.appliedLsn]]));
  }

  /** A worker's read with a PostgreSQL causal token: as `read` makes one here wait. */
  waitApplied(name: string, lsn: bigint): Promise<void> {
    const s = this.streams.find((x) => x.name === name);
    if (!s) return Promise.reject(new Error(`no stream ${name}`));
    return s.waitApplied(lsn, this.causalWaitMs);
  }

  /** Reads of a stream's keys a worker served (the read rate). */
  countReads(name: string, n: number): void {
    this.streams.find((x) => x.name === name)?.figures.reads.add(n);
  }

  reports(): StreamReport[] {
    const now = Date.now();
    return this.streams.map((s) => ({
      name: s.name,
      table: s.config.table,
      state: s.state,
      error: s.lastError,
      errors: s.errors,
      appliedLsn: s.appliedLsn === null ? null : formatLsn(s.appliedLsn),
      lagBytes: s.lagBytes,
      lagChanges: s.lagChanges,
      lagMs: s.lagMs(now),
      arrivalRate: round(s.figures.arrivals.rate(now)),
      writeRate: round(s.figures.writes.rate(now)),
      readRate: round(s.figures.reads.rate(now)),
      freshnessP50Ms: s.figures.percentile(50),
      freshnessP99Ms: s.figures.percentile(99),
    }));
  }

  /** Prometheus: counters for the three rates, a histogram for freshness, gauges for lag and state. */
  private register(registry: client.Registry): void {
    const streams = this.streams;
    const each = (pick: (s: ChangeStream) => number): MetricValue[] =>
      streams.map((s) => ({ value: pick(s), labels: { stream: s.name } }));
    const metrics = [
      custom(
        'rwsplit_stream_changes_decoded_total',
        'Row changes decoded from PostgreSQL (arrival)',
        'counter',
        () => each((s) => s.figures.arrivals.total),
      ),
      custom('rwsplit_stream_changes_applied_total', 'Row changes applied to Redis (write)', 'counter', () =>
        each((s) => s.figures.writes.total),
      ),
      custom('rwsplit_stream_reads_total', "Reads of a stream's keys through rwsplit (read)", 'counter', () =>
        each((s) => s.figures.reads.total),
      ),
      custom('rwsplit_stream_lag_bytes', 'WAL bytes the server has sent past what Redis holds', 'gauge', () =>
        each((s) => s.lagBytes ?? 0),
      ),
      custom('rwsplit_stream_lag_changes', 'Row changes decoded and not yet applied to Redis', 'gauge', () =>
        each((s) => s.lagChanges ?? 0),
      ),
      custom(
        'rwsplit_stream_lag_seconds',
        'Since the commit of the oldest transaction not yet applied to Redis',
        'gauge',
        () => each((s) => (s.lagMs() ?? 0) / 1000),
      ),
      custom('rwsplit_stream_up', '1 while the stream is streaming, 0 otherwise', 'gauge', () =>
        each((s) => (s.state === 'streaming' ? 1 : 0)),
      ),
      custom(
        'rwsplit_stream_errors_total',
        'Failures of the stream (interruptions it retried, and the error that stopped it)',
        'counter',
        () => each((s) => s.errors),
      ),
      custom(
        'rwsplit_stream_freshness_seconds',
        'Commit on the PostgreSQL primary to applied in Redis',
        'histogram',
        () =>
          streams.flatMap((s) => {
            const f = s.figures;
            const out: MetricValue[] = [];
            let cumulative = 0;
            FRESHNESS_BUCKETS_MS.forEach((b, i) => {
              cumulative += f.buckets[i]!;
              out.push({
                metricName: 'rwsplit_stream_freshness_seconds_bucket',
                value: cumulative,
                labels: { stream: s.name, le: b / 1000 },
              });
            });
            out.push({
              metricName: 'rwsplit_stream_freshness_seconds_bucket',
              value: f.freshnessCount,
              labels: { stream: s.name, le: '+Inf' },
            });
            out.push({
              metricName: 'rwsplit_stream_freshness_seconds_sum',
              value: f.freshnessSumMs / 1000,
              labels: { stream: s.name },
            });
            out.push({
              metricName: 'rwsplit_stream_freshness_seconds_count',
              value: f.freshnessCount,
              labels: { stream: s.name },
            });
            return out;
          }),
      ),
    ];
    for (const m of metrics) registry.registerMetric(m as unknown as client.Metric);
  }
}

interface MetricValue {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

/** A metric whose values are read from the streams when scraped (prom-client renders it). */
function custom(
  name: string,
  help: string,
  type: 'counter' | 'gauge' | 'histogram',
  values: () => MetricValue[],
) {
  return {
    name,
    help,
    type,
    aggregator: 'sum',
    get: () => Promise.resolve({ name, help, type, aggregator: 'sum', values: values() }),
    reset: () => undefined,
  };
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}
