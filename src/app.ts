/**
 * Assembles one rwsplit instance from a validated config: topology, monitor, the
 * PostgreSQL proxy and the admin HTTP server. Used by `rwsplit start`, `rwsplit demo` and
 * the integration tests (in-process).
 */
import { resolveDataPlane, type NativeCore } from './util/native-core.js';
import { readFileSync } from 'node:fs';
import type { AddressInfo, Socket } from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';
import { AdminActionError, type ReloadPlan, type SwitchoverRequest } from './admin/actions.js';
import {
  inheritedProcessIds,
  PG_PROCESS_IDS_ENV,
  spawnSuccessor,
  type ClientAdopters,
  type Listeners,
  type Successor,
} from './admin/handover.js';
import { AdminServer } from './admin/http-server.js';
import { Metrics } from './admin/metrics.js';
import { applyReload } from './admin/reload.js';
import { loadConfigFile } from './config/load.js';
import type { Config, PgConfig } from './config/schema.js';
import { ClientGuard, type ClientKilled } from './core/client-guard.js';
import { ClusterView } from './core/cluster-view.js';
import { ReadRouter } from './core/read-router.js';
import { StalenessTracker } from './core/staleness.js';
import { Topology } from './core/topology.js';
import { Classifier } from './pg/classifier/classify.js';
import { backendTlsByNode } from './pg/backend/backend-tls.js';
import { PgFailover } from './pg/ha/failover.js';
import { setUpSharding } from './pg/sharding/sharding-setup.js';
import type { TwoPhaseRecovery } from './pg/sharding/twopc/index.js';
import { PgMonitor } from './pg/ha/monitor.js';
import { FIRST_PROCESS_ID, PgProxy, type PgProxyDeps } from './pg/proxy.js';
import { WorkerPool, type MoveToSuccessor } from './workers/controller.js';
import { workerCount } from './workers/split-limits.js';
import { RedisService } from './redis/service.js';
import type { HandedRedisState } from './redis/session/session-handover.js';
import type { HandedPgState } from './pg/session/session-handover.js';
import { StreamManager } from './stream/stream-manager.js';
import { releaseHandedServer } from './util/listen.js';
import { createLogger } from './util/logger.js';

export class Rwsplit {
  pgAddress: AddressInfo | null = null;
  /** the Unix socket's path (listen.postgres.socketDir), or null */
  pgSocket: string | null = null;
  httpAddress: AddressInfo | null = null;
  /** the Redis proxy, when the config has a `redis` section */
  redis: RedisService | null = null;
  /** the change streams (`streams:`), when configured */
  streams: StreamManager | null = null;
  private restarting = false;
  private retire: () => void = () => undefined;
  private readonly retiredPromise = new Promise<void>((resolve) => (this.retire = resolve));
  /** the PostgreSQL failover controller (acts only with postgres.failover.mode auto) */
  failover: PgFailover | null = null;
  /** the buffer budget and the record of clients cut off by a limit */
  guard: ClientGuard | null = null;
  /** finishes two-phase commits a dead coordinator left prepared (sharded PostgreSQL) */
  recovery: TwoPhaseRecovery | null = null;
  /** the data-plane workers (`workers` > 1): they hold the client sessions, this process controls */
  workers: WorkerPool | null = null;
  /** `--workers` on the command line, which overrides the file's `workers` on a reload too */
  private workersOverride: Config['workers'] | null = null;

  private constructor(
    /** the configuration in effect (a reload replaces the keys it applies live) */
    public config: Config,
    /** the PostgreSQL nodes (empty with a Redis-only config) */
    readonly topology: Topology,
    /** the PostgreSQL proxy; null with a Redis-only config */
    readonly proxy: PgProxy | null,
    readonly monitor: PgMonitor | null,
    readonly admin: AdminServer,
    readonly log: Logger,
    private readonly staleness: StalenessTracker | null,
    /** the file `config` came from, when it did: `POST /api/reload` re-reads it */
    readonly configPath: string | null,
  ) {}

  static async start(
    config: Config,
    opts: {
      log?: Logger;
      configPath?: string;
      listeners?: Listeners;
      /** `--workers`: set in `config` already; a reload applies it to the file it re-reads */
      workers?: Config['workers'];
    } = {},
  ): Promise<Rwsplit> {
    const log = opts.log ?? createLogger(config.logging.level);
    const pgc = config.postgres;
    const topology = pgTopology(pgc, log);
    const view = new ClusterView();
    view.addTopology(topology);
    const metrics = new Metrics(view);
    const guard = new ClientGuard(config.limits.maxBufferedBytes);
    metrics.watchGuard(guard);
    // The native forwarding core or the JavaScript data plane (dataPlane): said once, here.
    const plane = resolveDataPlane(config.dataPlane);
    if (pgc)
      log.info(
        { dataPlane: plane.kind, setting: config.dataPlane, ...(plane.reason ? { why: plane.reason } : {}) },
        plane.kind === 'native'
          ? 'data plane: native forwarding core'
          : `data plane: JavaScript (${plane.reason ?? 'dataPlane: js'})`,
      );
    const pg = pgc ? assemblePostgres(pgc, topology, view, metrics, guard, log, plane.core) : null;
    let app: Rwsplit | null = null;
    const admin = new AdminServer(view, metrics, {
      token: config.admin.token ?? null,
      // Without a postgres section there is nothing to switch over: the API answers 409.
      ...(pg ? { switchover: (req: SwitchoverRequest) => pg.failover.switchover(req.shard, req.to) } : {}),
      log,
      ...(opts.configPath ? { reload: () => app!.reload(), restart: () => app!.restart() } : {}),
      streams: () => app?.streams?.reports() ?? [],
      workers: () => app?.workers?.describe() ?? [],
    });
    app = new Rwsplit(
      config,
      topology,
      pg?.proxy ?? null,
      pg?.monitor ?? null,
      admin,
      log,
      pg?.staleness ?? null,
      opts.configPath ?? null,
    );
    app.failover = pg?.failover ?? null;
    app.guard = guard;
    app.workersOverride = opts.workers ?? null;
    reportKills(guard, (detail) => admin.events.record(null, 'client-killed', detail), log);
    await pg?.monitor.start();
    app.recovery = pg?.sharding?.recovery ?? null;
    app.recovery?.start();
    const workers = dataPlaneWorkers(config, view, metrics, log, (detail) =>
      admin.events.record(null, 'worker-exited', detail),
    );
    app.workers = workers;
    const redisTopologies: Topology[] = [];
    try {
      const handed = opts.listeners ?? {};
      if (pg && pgc) {
        // A graceful restart's successor: cancel keys past those of the sessions it will adopt.
        const ids = opts.listeners ? inheritedProcessIds() : null;
        if (ids !== null) (workers ?? pg.proxy).continueProcessIds(ids);
        // Connections accepted before the workers serve wait for the first one ready.
        workers?.takeOver(pg.proxy.listener, 'postgres');
        app.pgAddress = await pg.proxy.listen(
          config.listen.postgres.host,
          config.listen.postgres.port,
          handed.postgres,
        );
        if (config.listen.postgres.socketDir)
          app.pgSocket = await pg.proxy.listenUnix(
            config.listen.postgres.socketDir,
            app.pgAddress.port,
            handed.postgresUnix,
          );
        if (app.pgSocket && pg.proxy.unixListener) workers?.takeOver(pg.proxy.unixListener, 'postgres');
      }
      if (config.redis)
        app.redis = await RedisService.start(
          config.redis,
          config.listen.redis,
          view,
          metrics.redisStats(),
          log,
          guard,
          handed.redis,
          (service) => {
            redisTopologies.push(...service.topologies);
            workers?.takeOver(service.proxy.listener, 'redis');
          },
        );
      if (workers) {
        const topologies = [...(pgc ? [topology] : []), ...redisTopologies];
        workers.redisBook = app.redis?.proxy.book ?? null;
        workers.onNodeDown((node, reason) => {
          for (const t of topologies) if (t.get(node)) t.markDown(node, reason);
        });
        await workers.start(topologies, config.restart.startTimeoutMs);
      }
      if (config.streams && config.streams.list.length > 0 && app.redis)
        app.streams = StreamManager.start(
          config,
          config.streams,
          topology,
          app.redis,
          metrics.registry,
          log,
          (type, detail) => admin.events.record(null, type, detail),
        );
      if (workers) workers.streams = app.streams;
      app.httpAddress = await admin.listen(config.listen.http.host, config.listen.http.port, handed.http);
    } catch (err) {
      await app.stop();
      throw err;
    } finally {
      // Sockets handed over that no server took (their section left the config): closed.
      for (const s of Object.values(opts.listeners ?? {})) releaseHandedServer(s);
    }
    log.info(
      {
        postgres: app.pgAddress,
        postgresSocket: app.pgSocket,
        redis: app.redis ? config.listen.redis : null,
        http: app.httpAddress,
      },
      'rwsplit is listening',
    );
    return app;
  }

  /**
   * Re-reads the config file and applies what can change live (docs/CONFIG.md,
   * "Reloading"); throws ConfigError, changing nothing, when the file is invalid.
   */
  reload(): ReloadPlan {
    if (!this.configPath)
      throw new AdminActionError('RELOAD_UNAVAILABLE', 'this instance was not started from a config file');
    const next = loadConfigFile(this.configPath);
    if (this.workersOverride !== null) next.workers = this.workersOverride;
    const { config, plan } = applyReload(this.config, next, {
      staleness: this.staleness,
      log: this.log,
      setAdminToken: (t) => this.admin.setToken(t),
    });
    this.config = config;
    // The level in effect (RWSPLIT_LOG_LEVEL still wins over the file). The other live keys act
    // in this process: staleness verdicts reach the workers with the topology, the admin token
    // and restart timeouts are the controller's.
    this.workers?.setLogLevel(this.log.level);
    return plan;
  }

  /**
   * Graceful restart (`rwsplit restart`, `POST /api/restart`, SIGUSR2): starts the new process
   * on this one's listening sockets (src/admin/handover.ts) and resolves with its pid once it
   * serves; this process then stops accepting, hands each client over to it at its next
   * transaction boundary (or between Redis replies; one whose state cannot move is closed
   * there instead), and `retired` resolves once they are all gone (or
   * after `restart.drainTimeoutMs`). The failover controllers stop first: the new process
   * decides from then on. If the new process does not start, this one carries on as before.
   * @throws AdminActionError RESTART_RUNNING, RESTART_UNAVAILABLE, RESTART_FAILED
   */
  async restart(): Promise<{ pid: number; previousPid: number }> {
    if (this.restarting)
      throw new AdminActionError('RESTART_RUNNING', 'a restart of this process is already under way');
    if (!this.configPath)
      throw new AdminActionError(
        'RESTART_UNAVAILABLE',
        'this instance was not started from a config file (rwsplit start --config FILE)',
      );
    this.restarting = true;
    const { drainTimeoutMs, startTimeoutMs } = this.config.restart;
    this.log.warn('graceful restart: starting the new process on the same listening sockets');
    // One process at a time promotes, and one consumes a replication slot (a slot serves one
    // connection): the successor starts its own controllers and streams.
    await Promise.all([this.failover?.stop(), this.redis?.failover?.stop(), this.streams?.pause()]);
    let successor: Successor;
    try {
      successor = await spawnSuccessor(
        {
          http: this.admin.listener,
          ...(this.proxy ? { postgres: this.proxy.listener } : {}),
          ...(this.proxy?.unixListener ? { postgresUnix: this.proxy.unixListener } : {}),
          ...(this.redis ? { redis: this.redis.proxy.listener } : {}),
        },
        startTimeoutMs,
        this.proxy
          ? { [PG_PROCESS_IDS_ENV]: String((this.workers ?? this.proxy).processIdsAfterHandover) }
          : {},
      );
    } catch (err) {
      this.failover?.resume();
      this.redis?.failover?.resume();
      void this.streams?.resume();
      this.restarting = false;
      this.log.error({ err: (err as Error).message }, 'graceful restart failed');
      throw new AdminActionError('RESTART_FAILED', (err as Error).message);
    }
    const pid = successor.pid;
    this.log.warn({ newPid: pid }, 'graceful restart: the new process serves; draining this one');
    // Answer the request first (it came through the admin server that is about to stop).
    setImmediate(() => void this.drainThenRetire(drainTimeoutMs, successor));
    return { pid, previousPid: process.pid };
  }

  /** Resolves once a graceful restart has drained this process and stopped it. */
  get retired(): Promise<void> {
    return this.retiredPromise;
  }

  /**
   * What a successor takes over from this process's drain (src/admin/handover.ts): Redis
   * clients at a reply boundary and PostgreSQL clients at a transaction boundary, with their
   * sessions' state, for the sections it serves; with data-plane workers, one of them adopts
   * each.
   */
  get clientAdopters(): ClientAdopters {
    const workers = this.workers;
    if (workers)
      return {
        ...(this.redis ? { redis: (socket, state) => workers.adoptHanded('redis', socket, state) } : {}),
        ...(this.proxy
          ? { postgres: (socket, state) => workers.adoptHanded('postgres', socket, state) }
          : {}),
      };
    const redis = this.redis;
    const pg = this.proxy;
    return {
      ...(redis ? { redis: (socket, state) => redis.proxy.adopt(socket, state as HandedRedisState) } : {}),
      ...(pg ? { postgres: (socket, state) => pg.adoptHanded(socket, state as HandedPgState) } : {}),
    };
  }

  private async drainThenRetire(timeoutMs: number, successor: Successor): Promise<void> {
    const started = Date.now();
    this.admin.stopAccepting();
    const moveRedis = successor.adopts('redis')
      ? (state: HandedRedisState, socket: Socket) => successor.sendClient('redis', state, socket)
      : undefined;
    const movePg = successor.adopts('postgres')
      ? (state: HandedPgState, socket: Socket) => successor.sendClient('postgres', state, socket)
      : undefined;
    // Clients on data-plane workers go through this process (WorkerPool.drain).
    const workerMoves = {
      ...(movePg ? { postgres: movePg as MoveToSuccessor } : {}),
      ...(moveRedis ? { redis: moveRedis as MoveToSuccessor } : {}),
    };
    const [pg, redis, workers] = await Promise.all([
      this.proxy?.drain(timeoutMs, movePg) ?? { handedOver: 0, atBoundary: 0, atTimeout: 0 },
      this.redis?.proxy.drain(timeoutMs, moveRedis) ?? { handedOver: 0, atBoundary: 0, atTimeout: 0 },
      this.workers?.drain(timeoutMs, workerMoves) ?? null,
    ]);
    if (workers) {
      for (const k of ['handedOver', 'atBoundary', 'atTimeout'] as const) {
        pg[k] += workers[0]![k];
        redis[k] += workers[1]![k];
      }
    }
    // Every handover is on its way: the successor lives on alone (and the listening sockets
    // can close here without waiting for the clients it took over).
    successor.release();
    this.log.warn(
      { postgres: pg, redis, ms: Date.now() - started },
      'graceful restart: drained, this process stops',
    );
    await this.stop();
    this.retire();
  }

  async stop(): Promise<void> {
    await this.streams?.stop();
    await Promise.allSettled([
      this.workers?.stop(),
      this.proxy?.close(),
      this.admin.close(),
      this.monitor?.stop(),
      this.failover?.stop(),
      this.recovery?.stop(),
      this.redis?.stop(),
    ]);
    this.guard?.stop();
  }
}

/**
 * The data-plane workers `config.workers` asks for (null: this process serves clients itself).
 * Change streams run in this process (the controller); the workers serve the reads of their
 * keys and ask it for the streams' positions (src/workers/stream-gate.ts).
 */
function dataPlaneWorkers(
  config: Config,
  view: ClusterView,
  metrics: Metrics,
  log: Logger,
  record: (detail: string) => void,
): WorkerPool | null {
  const count = workerCount(config.workers);
  // No proxy section: no client to serve, nothing to fork.
  if (count <= 1 || (!config.postgres && !config.redis)) return null;
  const workers = new WorkerPool({ count, config, firstProcessId: FIRST_PROCESS_ID, log, record });
  view.addConnections(workers.connections('postgres'));
  view.addConnections(workers.connections('redis'));
  metrics.addRemote(workers);
  return workers;
}

/** The PostgreSQL nodes of `pgc` (none without a postgres section), their events logged. */
export function pgTopology(pgc: PgConfig | undefined, log: Logger): Topology {
  const topology = new Topology(
    (pgc?.nodes ?? []).map((n) => ({
      id: n.id,
      kind: 'postgres',
      shard: n.shard,
      host: n.host,
      port: n.port,
      weight: n.weight,
    })),
    pgc?.monitor.upAfter,
  );
  topology.on('event', (e) => log.info(e, `node ${e.node} ${e.type}`));
  return topology;
}

/** The PostgreSQL side of an instance: staleness, routing, the proxy, its monitor and failover. */
function assemblePostgres(
  pgc: PgConfig,
  topology: Topology,
  view: ClusterView,
  metrics: Metrics,
  guard: ClientGuard,
  log: Logger,
  nativeCore: NativeCore | null,
): {
  proxy: PgProxy;
  monitor: PgMonitor;
  failover: PgFailover;
  staleness: StalenessTracker;
  sharding: ReturnType<typeof setUpSharding>;
} {
  const staleness = new StalenessTracker(pgc.staleness);
  const { proxy, sharding, backendTls, monitorLogin } = pgDataPlane(
    pgc,
    topology,
    view,
    metrics,
    guard,
    log,
    nativeCore,
  );
  const monitor = new PgMonitor(
    topology,
    staleness,
    {
      intervalMs: pgc.monitor.intervalMs,
      timeoutMs: pgc.monitor.timeoutMs,
      database: pgc.monitor.database,
      ...monitorLogin,
      onLag: (id, ms) => metrics.lagSample(id, ms),
      failoverMode: pgc.failover.mode,
      tls: backendTls,
    },
    log,
  );
  const failover = new PgFailover(
    topology,
    monitor,
    {
      ...pgc.failover,
      login: monitor.login,
      timeoutMs: pgc.monitor.timeoutMs,
      // Summed over the data-plane workers when there are several (the view has their counts).
      activeConnections: (id) => view.connectionStats().get(id)?.active ?? 0,
    },
    log,
  );
  return { proxy, monitor, failover, staleness, sharding };
}

/**
 * What serves PostgreSQL clients: read router, classifier, sharding (2PC coordinator), the
 * proxy and its pools. The whole of it in one process, or in each data-plane worker
 * (`worker`: src/workers/), where the controller keeps the monitor and failover.
 */
export function pgDataPlane(
  pgc: PgConfig,
  topology: Topology,
  view: ClusterView,
  metrics: Metrics,
  guard: ClientGuard,
  log: Logger,
  nativeCore: NativeCore | null,
  worker?: PgProxyDeps['worker'],
): {
  proxy: PgProxy;
  sharding: ReturnType<typeof setUpSharding>;
  backendTls: ReturnType<typeof backendTlsByNode>;
  monitorLogin: { user: string; password?: string };
} {
  const readRouter = new ReadRouter(topology, {
    balance: pgc.routing.balance,
    primaryReads: pgc.routing.primaryReads,
    whenAllLagging: pgc.staleness.whenAllLagging,
  });
  const classifier = new Classifier(
    pgc.routing.writeFunctions ? { writeFunctions: pgc.routing.writeFunctions } : {},
  );
  const monitorUser = pgc.monitor.user ?? pgc.backend.user ?? pgc.auth.users[0]?.name ?? 'postgres';
  const monitorPassword =
    pgc.monitor.password ??
    pgc.backend.password ??
    pgc.auth.users.find((u) => u.name === monitorUser)?.password;
  const sharding = setUpSharding(
    pgc,
    topology,
    {
      user: monitorUser,
      password: monitorPassword?.startsWith('SCRAM-SHA-256$') ? undefined : monitorPassword,
    },
    log,
  );
  const backendTls = backendTlsByNode(pgc);
  const proxy = new PgProxy({
    config: pgc,
    backendTls,
    topology,
    readRouter,
    classifier,
    stats: metrics,
    log,
    tls: pgc.tls
      ? tls.createSecureContext({ cert: readFileSync(pgc.tls.cert), key: readFileSync(pgc.tls.key) })
      : null,
    sharding: sharding?.context ?? null,
    guard,
    ...(worker ? { worker } : {}),
    nativeCore,
  });
  view.addConnections(proxy);
  const monitorLogin = {
    user: monitorUser,
    ...(monitorPassword && !monitorPassword.startsWith('SCRAM-SHA-256$')
      ? { password: monitorPassword }
      : {}),
  };
  return { proxy, sharding, backendTls, monitorLogin };
}

/**
 * Clients cut off go to the event log: one event each for buffer limits (rare, and each names
 * its client), one summary a second for login and idle timeouts (a flood of silent sockets
 * must not flood the log).
 */
function reportKills(guard: ClientGuard, record: (detail: string) => void, log: Logger): void {
  let timeouts = new Map<string, number>();
  let timer: NodeJS.Timeout | null = null;
  guard.on('killed', (k: ClientKilled) => {
    if (k.reason !== 'login-timeout' && k.reason !== 'idle-timeout') {
      log.warn(k, `closed a ${k.protocol} client: ${k.reason}`);
      record(`${k.protocol} ${k.clientClass} client closed (${k.reason}): ${k.detail}`);
      return;
    }
    const key = `${k.protocol} clients closed (${k.reason})`;
    timeouts.set(key, (timeouts.get(key) ?? 0) + 1);
    timer ??= setTimeout(() => {
      timer = null;
      const counts = timeouts;
      timeouts = new Map();
      for (const [what, n] of counts) {
        log.info({ clients: n }, what);
        record(`${n} ${what}`);
      }
    }, 1000);
    timer.unref();
  });
}
