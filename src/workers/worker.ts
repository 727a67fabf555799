/**
 * One data-plane worker process (`workers: N`, started by the controller, controller.ts):
 * the PostgreSQL and Redis proxies with their sessions and backend pools, routing on mirrors
 * of the controller's topologies. It accepts nothing itself: the controller passes it client
 * sockets. It runs no monitor, no failover and no admin server; it tells the controller what
 * its data path saw (a node failing), its figures, and CancelRequests for other workers.
 */
import type net from 'node:net';
import type { Logger } from 'pino';
import { Metrics } from '../admin/metrics.js';
import { pgDataPlane, pgTopology } from '../app.js';
import { ClientGuard } from '../core/client-guard.js';
import { ClusterView } from '../core/cluster-view.js';
import type { Topology, TopologyEvent } from '../core/topology.js';
import type { Config } from '../config/schema.js';
import type { PgProxy } from '../pg/proxy.js';
import type { HandedPgState } from '../pg/session/session-handover.js';
import type { HandedRedisState } from '../redis/session/session-handover.js';
import { RedisProxy } from '../redis/proxy.js';
import { redisShards } from '../redis/service.js';
import { createLogger } from '../util/logger.js';
import { resolveDataPlane } from '../util/native-core.js';
import type { ClientProtocol, FromWorker, ToWorker, WorkerStats } from './messages.js';
import { WorkerStreamGate } from './stream-gate.js';
import { applySnapshot, type TopologySnapshot } from './topology-mirror.js';

/** How often a worker reports its figures (client and connection counts, traffic totals). */
export const STATS_INTERVAL_MS = 250;

export class Worker {
  private readonly view = new ClusterView();
  private readonly metrics = new Metrics(this.view);
  private readonly topologies: Topology[] = [];
  private pg: PgProxy | null = null;
  private redis: RedisProxy | null = null;
  /** the reads of change streams' keys (the streams run in the controller) */
  private streamGate: WorkerStreamGate | null = null;
  /** set while the controller's state is applied: events then are the controller's, not ours */
  private applying = false;
  /** nodes our data path marked down, until the controller's state says so too */
  private readonly ownDown = new Set<string>();
  private statsTimer: NodeJS.Timeout | null = null;

  private constructor(
    private readonly config: Config,
    private readonly log: Logger,
    private readonly send: (m: FromWorker) => void,
  ) {}

  static async start(init: Extract<ToWorker, { t: 'init' }>, send: (m: FromWorker) => void): Promise<Worker> {
    const { config } = init;
    const log = createLogger(init.logLevel as Config['logging']['level']).child({ worker: init.index });
    const w = new Worker(config, log, send);
    const guard = new ClientGuard(config.limits.maxBufferedBytes);
    w.metrics.watchGuard(guard);
    if (config.postgres) {
      const topology = pgTopology(config.postgres, log);
      w.view.addTopology(topology);
      w.topologies.push(topology);
    }
    const shards = config.redis ? redisShards(config.redis, w.view, log) : [];
    w.topologies.push(...shards.map((s) => s.topology));
    w.apply(init.topologies);
    if (config.postgres)
      w.pg = pgDataPlane(
        config.postgres,
        w.topologies[0]!,
        w.view,
        w.metrics,
        guard,
        log,
        resolveDataPlane(config.dataPlane).core,
        {
          index: init.index,
          count: init.count,
          ...(init.firstProcessId !== undefined ? { firstProcessId: init.firstProcessId } : {}),
          cancelElsewhere: (processId, secretKey) => send({ t: 'cancel', processId, secretKey }),
        },
      ).proxy;
    if (config.redis) {
      w.redis = new RedisProxy(config.redis, shards, w.metrics.redisStats(), log, guard);
      w.view.addConnections(w.redis);
      await w.redis.prepare();
      if (config.postgres && config.streams && config.streams.list.length > 0) {
        w.streamGate = new WorkerStreamGate(config.streams.list, (seq, stream, lsn) =>
          send({ t: 'stream-wait', seq, stream, lsn: lsn.toString() }),
        );
        w.redis.streamReads = w.streamGate;
      }
    }
    for (const t of w.topologies) t.on('event', (e: TopologyEvent) => w.ownEvent(e));
    w.statsTimer = setInterval(() => send({ t: 'stats', stats: w.stats() }), STATS_INTERVAL_MS);
    w.statsTimer.unref();
    return w;
  }

  /** The controller's topologies, in the order of `this.topologies`. */
  apply(snapshots: TopologySnapshot[]): void {
    this.applying = true;
    try {
      snapshots.forEach((s, i) => {
        const t = this.topologies[i];
        if (t) applySnapshot(t, s, this.ownDown);
      });
    } finally {
      this.applying = false;
    }
  }

  /** A node this worker's data path saw fail: the controller decides for everyone. */
  private ownEvent(e: TopologyEvent): void {
    if (this.applying || e.type !== 'down') return;
    this.ownDown.add(e.node);
    this.send({ t: 'node-down', node: e.node, reason: e.detail });
  }

  /** Graceful restart, new process: a client the old process handed over with its session's state. */
  adoptHanded(protocol: ClientProtocol, socket: net.Socket, state: unknown): void {
    if (protocol === 'postgres' && this.pg) this.pg.adoptHanded(socket, state as HandedPgState);
    else if (protocol === 'redis' && this.redis) this.redis.adopt(socket, state as HandedRedisState);
    else socket.destroy();
  }

  adopt(protocol: ClientProtocol, socket: net.Socket): void {
    const proxy = protocol === 'postgres' ? this.pg : this.redis;
    if (!proxy) {
      socket.destroy();
      return;
    }
    proxy.adopt(socket);
  }

  /** The controller's change streams: their applied positions, and its answer to a wait. */
  streamPositions(applied: [string, string][]): void {
    this.streamGate?.positions(applied);
  }

  /** The controller's Redis position book. */
  adoptPositions(book: Extract<ToWorker, { t: 'state' }>['book']): void {
    const mine = this.redis?.book;
    if (mine) for (const [node, info] of book) mine.adopt(node, info);
  }

  streamApplied(seq: number, error: string | null): void {
    this.streamGate?.answered(seq, error);
  }

  cancel(processId: number, secretKey: number): void {
    this.pg?.cancel(processId, secretKey);
  }

  setLogLevel(level: string): void {
    this.log.level = level;
  }

  stats(): WorkerStats {
    const totals: WorkerStats['totals'] = this.view.nodes.map((n) => {
      const t = this.metrics.nodeTotals(n.spec.id);
      return [n.spec.id, { queries: t.queries, reads: t.reads, writes: t.writes }];
    });
    return {
      clients: { postgres: this.pg?.clientCount ?? 0, redis: this.redis?.clientCount ?? 0 },
      pools: {
        postgres: [...(this.pg?.poolStats() ?? new Map())],
        redis: [...(this.redis?.poolStats() ?? new Map())],
      },
      totals,
      decisions: this.metrics.decisionCounts(),
      streamReads: this.streamGate?.takeReads() ?? [],
    };
  }

  metricsJson(): Promise<unknown[]> {
    return this.metrics.registry.getMetricsAsJSON();
  }

  /**
   * Graceful restart: each session at its next boundary is handed over (`moves`: through the
   * controller to the new process) or closed, as in one process.
   */
  async drain(
    timeoutMs: number,
    moves: Partial<Record<ClientProtocol, (state: unknown, socket: net.Socket) => Promise<boolean>>>,
  ): Promise<Extract<FromWorker, { t: 'drained' }>> {
    const none = { handedOver: 0, atBoundary: 0, atTimeout: 0 };
    const [postgres, redis] = await Promise.all([
      this.pg?.drain(timeoutMs, moves.postgres) ?? none,
      this.redis?.drain(timeoutMs, moves.redis) ?? none,
    ]);
    return { t: 'drained', postgres, redis };
  }

  async stop(): Promise<void> {
    if (this.statsTimer) clearInterval(this.statsTimer);
    await Promise.allSettled([this.pg?.close(), this.redis?.close()]);
  }
}

/** The worker process's main: waits for `init` on the IPC channel, then serves. */
export function runWorker(): void {
  let worker: Worker | null = null;
  const send = (m: FromWorker): void => {
    if (process.connected) process.send!(m);
  };
  // Graceful restart: clients on their way to the controller, by seq, until it answers `handed`.
  const handovers = new Map<number, (ok: boolean) => void>();
  let handoverSeq = 0;
  const moveTo =
    (protocol: ClientProtocol) =>
    (state: unknown, socket: net.Socket): Promise<boolean> =>
      new Promise((resolve) => {
        if (!process.connected) return resolve(false);
        const seq = ++handoverSeq;
        handovers.set(seq, resolve);
        const m: FromWorker = { t: 'handover', seq, protocol, state };
        process.send!(m, socket, undefined, (err) => {
          if (!err) return;
          handovers.delete(seq);
          resolve(false);
        });
      });
  // Without its controller a worker has nobody to tell it about failovers: it must not route.
  process.on('disconnect', () => process.exit(0));
  // The controller stops its workers with SIGTERM: clients are told, as in one process.
  process.on('SIGTERM', () => {
    void (worker?.stop() ?? Promise.resolve()).finally(() => process.exit(0));
  });
  process.on('message', (m: ToWorker, handle?: unknown) => {
    if (m.t === 'init') {
      Worker.start(m, send).then(
        (w) => {
          worker = w;
          send({ t: 'ready' });
        },
        (err: Error) => {
          send({ t: 'failed', error: err.message });
          process.exit(1);
        },
      );
      return;
    }
    if (m.t === 'client' || m.t === 'adopt-handed') {
      const socket = handle as net.Socket | undefined;
      if (!socket) return;
      if (!worker) socket.destroy();
      else if (m.t === 'client') worker.adopt(m.protocol, socket);
      else worker.adoptHanded(m.protocol, socket, m.state);
      return;
    }
    if (!worker) return;
    const w = worker;
    switch (m.t) {
      case 'state':
        w.apply(m.topologies);
        w.streamPositions(m.streams);
        w.adoptPositions(m.book);
        return;
      case 'stream-applied':
        w.streamApplied(m.seq, m.error);
        return;
      case 'sync':
        send({ t: 'synced', seq: m.seq, stats: w.stats() });
        return;
      case 'cancel':
        w.cancel(m.processId, m.secretKey);
        return;
      case 'log-level':
        w.setLogLevel(m.level);
        return;
      case 'metrics':
        void w.metricsJson().then((metrics) => send({ t: 'metrics', seq: m.seq, metrics }));
        return;
      case 'handed':
        handovers.get(m.seq)?.(m.ok);
        handovers.delete(m.seq);
        return;
      case 'drain': {
        const moves = Object.fromEntries(m.handOver.map((p) => [p, moveTo(p)]));
        void w.drain(m.timeoutMs, moves).then(async (report) => {
          send(report);
          await w.stop();
          process.exit(0);
        });
        return;
      }
    }
  });
}
