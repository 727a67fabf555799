/**
 * The routing engine of the in-process library: the proxy's topology, monitor, staleness
 * tracker, read router, classifier and causal-token bookkeeping, driving one `pg.Pool` per
 * node instead of backend sockets. It decides where a statement runs and leases a
 * connection there; the pool and client front ends (pool.ts, client.ts) run the statement.
 */
import { EventEmitter } from 'node:events';
import pg from 'pg';
import { pino, type Logger } from 'pino';
import { advanceToken, ReplayPositions, type CausalToken } from '../../core/causal.js';
import { parseLsn } from '../../core/lag.js';
import { ReadRouter } from '../../core/read-router.js';
import { StalenessTracker } from '../../core/staleness.js';
import { Topology, type NodeStatus } from '../../core/topology.js';
import type { ConsistencyLevel, PgConfig } from '../../config/schema.js';
import { COMMIT_POSITION_SQL, REPLAY_POSITION_SQL } from '../../pg/routing/causal-gate.js';
import { Classifier } from '../../pg/classifier/classify.js';
import { SqlState } from '../../pg/errors.js';
import { PgMonitor } from '../../pg/ha/monitor.js';
import { routeFromFacts, type RouteDecision } from '../../pg/routing/route-decision.js';
import type { Metrics } from '../../admin/metrics.js';
import type { ResolvedOptions } from './options.js';
import { setUpSharding, type Sharding } from '../../pg/sharding/sharding-setup.js';

/** The shard of an unsharded cluster (the proxy's name for it, so tokens cross). */
export const SHARD = 'default';
const POLL_MS = 1;

/** A connection leased on one node. */
export interface Lease {
  client: pg.PoolClient;
  node: NodeStatus;
  /** listens for the connection's errors while it is leased (pg.Pool listens only while idle) */
  onError: (err: Error) => void;
}

/** A routing failure with the SQLSTATE the proxy would answer with. */
export class RoutingError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'RoutingError';
  }
}

/** Errors that say the server or the connection is gone (not the statement's fault). */
export function isConnectionError(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = typeof e?.code === 'string' ? e.code : '';
  if (/^(ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENOTCONN)$/.test(code)) return true;
  // admin shutdown, crash shutdown, cannot connect now; connection exceptions
  if (/^(57P0[123]|08...)$/.test(code)) return true;
  const msg = typeof e?.message === 'string' ? e.message : '';
  return /Connection terminated|connection timeout|Client has encountered a connection error/i.test(msg);
}

/** The node a connection attempt failed on, for the caller's retry (the error is pg's own). */
export const failedNode = new WeakMap<object, string>();

export class PgRouter extends EventEmitter {
  readonly topology: Topology;
  readonly classifier: Classifier;
  readonly readRouter: ReadRouter;
  readonly replay: ReplayPositions;
  readonly monitor: PgMonitor;
  readonly consistency: ConsistencyLevel;
  /** the pool's own token: every write through the pool raises it (read-your-writes per pool) */
  readonly token: CausalToken = new Map();
  /** the last write's position could not be read: reads go to the primary until the next one */
  tokenUnknown = false;
  readonly ready: Promise<void>;
  /** the pool's metrics (the proxy's names; set by the pool) */
  stats: Metrics | null = null;
  /** the proxy's sharding (resolver, 2PC coordinator, recovery), when `sharding` is configured */
  readonly sharding: Sharding | null;
  /** whether the database orders text as bytes (merged reads ask once) */
  bytewiseText: boolean | undefined;
  private readonly pools = new Map<string, pg.Pool>();
  private readonly log: Logger;

  constructor(
    readonly config: PgConfig,
    private readonly login: ResolvedOptions['login'],
    logger: Logger | undefined,
  ) {
    super();
    this.log = logger ?? pino({ level: 'silent' });
    this.consistency = config.routing.consistency;
    this.topology = new Topology(
      config.nodes.map((n) => ({
        id: n.id,
        kind: 'postgres',
        shard: n.shard,
        host: n.host,
        port: n.port,
        weight: n.weight,
      })),
      config.monitor.upAfter,
    );
    this.topology.on('event', (e) => this.log.info(e, `node ${e.node} ${e.type}`));
    const staleness = new StalenessTracker(config.staleness);
    this.readRouter = new ReadRouter(this.topology, {
      balance: config.routing.balance,
      primaryReads: config.routing.primaryReads,
      whenAllLagging: config.staleness.whenAllLagging,
    });
    this.classifier = new Classifier(
      config.routing.writeFunctions ? { writeFunctions: config.routing.writeFunctions } : {},
    );
    this.replay = new ReplayPositions(this.topology);
    const m = config.monitor;
    this.monitor = new PgMonitor(
      this.topology,
      staleness,
      {
        intervalMs: m.intervalMs,
        timeoutMs: m.timeoutMs,
        database: m.database,
        user: m.user ?? login.user ?? 'postgres',
        ...(m.password === undefined ? {} : { password: m.password }),
        failoverMode: config.failover.mode,
        onLag: (node, ms) => this.stats?.lagSample(node, ms),
      },
      this.log,
    );
    for (const n of this.topology.nodes) this.pools.set(n.spec.id, this.nodePool(n));
    this.sharding = setUpSharding(
      config,
      this.topology,
      {
        user: login.user ?? 'postgres',
        ...(login.password === undefined ? {} : { password: login.password }),
      },
      this.log,
    );
    // The first round tells roles apart; statements wait for it (a write must not guess).
    this.ready = this.monitor.start();
    this.ready.catch(() => undefined);
    // As the proxy does: this process finishes the two-phase commits a dead coordinator left prepared.
    const recovery = this.sharding?.recovery;
    if (recovery)
      this.ready.then(
        () => recovery.start(),
        () => undefined,
      );
  }

  private nodePool(n: NodeStatus): pg.Pool {
    const pool = new pg.Pool({ ...this.login, host: n.spec.host, port: n.spec.port });
    for (const ev of ['connect', 'acquire', 'release', 'remove'] as const)
      pool.on(ev, (...args: unknown[]) => this.emit(ev, ...args));
    pool.on('error', (err, client) => {
      // An idle connection died: the node is suspect at once (the monitor decides when it returns).
      if (isConnectionError(err)) this.topology.markDown(n.spec.id, `idle connection lost: ${err.message}`);
      if (this.listenerCount('error') > 0) this.emit('error', err, client);
    });
    return pool;
  }

  /** The node pools by node id, for the metrics. */
  get poolsById(): ReadonlyMap<string, pg.Pool> {
    return this.pools;
  }

  /** The node pools, for counts. */
  get nodePools(): Iterable<pg.Pool> {
    return this.pools.values();
  }

  /** Where a statement text runs, by the proxy's precedence over the classifier's verdict. */
  decide(text: string): RouteDecision {
    const c = this.classifier.classify(text);
    return routeFromFacts(c.hint, c.tx, c.pin !== null, c.route === 'write', true);
  }

  /** Leases a connection on the writable primary, waiting up to failover.bufferMs for one. */
  async leasePrimary(shard = SHARD): Promise<Lease> {
    await this.ready;
    const deadline = Date.now() + this.config.failover.bufferMs;
    for (;;) {
      const node = await this.topology.whenWritable(shard, Math.max(0, deadline - Date.now()));
      if (!node)
        throw new RoutingError(
          `no writable primary${shard === SHARD ? '' : ` of shard ${shard}`} within failover.bufferMs (${this.config.failover.bufferMs} ms): ${this.describeNodes()}`,
          SqlState.CannotConnectNow,
          'Check the PostgreSQL servers given in nodes; with failover follow, writes resume once a primary answers.',
        );
      try {
        return await this.lease(node);
      } catch (err) {
        // Nothing was sent: the write waits for a primary that answers (lease marked this one down).
        if (!isConnectionError(err) || Date.now() >= deadline) throw err;
      }
    }
  }

  /**
   * Leases a connection for a read: a replica by the balancer within the staleness bound
   * (every replica with `eventual`), the primary with `strong`; with a causal token, a replica
   * known to have replayed it, else the furthest one once it has (up to causalWaitMs), else
   * the primary.
   */
  async leaseRead(
    token: CausalToken | null,
    level: ConsistencyLevel,
    exclude?: Set<string>,
    shard = SHARD,
  ): Promise<Lease> {
    await this.ready;
    if (level === 'strong') return this.leasePrimary(shard);
    if (this.tokenUnknown && level === 'read-your-writes') return this.leasePrimary(shard);
    const pick = this.readRouter.pick(exclude, { allowLagging: level === 'eventual', shard });
    if (!pick.ok) throw new RoutingError(pick.message, SqlState.CannotConnectNow, pick.hint);
    let node = pick.node;
    const t = token?.get(shard);
    if (t === undefined || node.role === 'primary') return this.lease(node);
    if (this.replay.known(node) >= t) return this.lease(node);
    const known = this.readRouter.pick(exclude, {
      accept: (n) => this.replay.known(n) >= t,
      allowLagging: level === 'eventual',
      shard,
    });
    if (known.ok && known.node.role === 'replica') return this.lease(known.node);
    node = this.furthestReplica(exclude, level === 'eventual', shard) ?? node;
    const lease = await this.lease(node);
    let ready = false;
    try {
      ready = await this.awaitReplay(lease, t);
    } catch (err) {
      this.done(lease, err);
      if (typeof err === 'object' && err) failedNode.set(err, lease.node.spec.id);
      throw err;
    }
    if (ready) return lease;
    this.done(lease);
    return this.leasePrimary(shard);
  }

  private async awaitReplay(lease: Lease, token: bigint): Promise<boolean> {
    const deadline = performance.now() + this.config.routing.causalWaitMs;
    for (;;) {
      const res = await lease.client.query<{ pg_last_wal_replay_lsn: string | null }>(REPLAY_POSITION_SQL);
      const text = res.rows[0]?.pg_last_wal_replay_lsn ?? null;
      if (text === null) return false; // not a replica (any more): the primary serves
      const pos = parseLsn(text);
      if (pos >= token) {
        this.replay.confirm(lease.node.spec.id, pos);
        return true;
      }
      if (performance.now() >= deadline) return false;
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }

  private furthestReplica(
    exclude: Set<string> | undefined,
    eventual: boolean,
    shard: string,
  ): NodeStatus | undefined {
    let best: NodeStatus | undefined;
    let bestAt = -2n;
    for (const n of this.topology.nodes) {
      if (n.spec.shard !== shard) continue;
      if (n.role !== 'replica' || !n.reachable || n.fenced || (n.lagging && !eventual)) continue;
      if (exclude?.has(n.spec.id)) continue;
      const at = this.replay.known(n);
      if (at > bestAt) {
        best = n;
        bestAt = at;
      }
    }
    return best;
  }

  /** Leases a connection on `node`; a refused or broken connection marks the node down. */
  async lease(node: NodeStatus): Promise<Lease> {
    const pool = this.pools.get(node.spec.id)!;
    try {
      const client = await pool.connect();
      // A server that dies between two statements of a lease (FATAL, reset) is reported on the
      // connection, not to a query: it must not become an uncaught exception.
      const onError = (err: Error): void => {
        if (isConnectionError(err)) this.topology.markDown(node.spec.id, `connection lost: ${err.message}`);
      };
      client.on('error', onError);
      return { client, node, onError };
    } catch (err) {
      if (isConnectionError(err)) {
        this.topology.markDown(node.spec.id, `connect failed: ${(err as Error).message}`);
        failedNode.set(err as object, node.spec.id);
      }
      throw err;
    }
  }

  /**
   * After a write, on the same primary connection: its WAL insert position raises the pool's
   * token and the caller's, and is returned in the proxy's token format.
   */
  async capture(lease: Lease, tokens: (CausalToken | null)[]): Promise<bigint | null> {
    try {
      const res = await lease.client.query<{ pg_current_wal_insert_lsn: string }>(COMMIT_POSITION_SQL);
      const pos = parseLsn(res.rows[0]!.pg_current_wal_insert_lsn);
      for (const t of tokens) if (t) advanceToken(t, lease.node.spec.shard, pos);
      this.tokenUnknown = false;
      return pos;
    } catch (err) {
      this.tokenUnknown = true;
      throw err;
    }
  }

  /** Gives a lease back; a connection error also takes its node out at once. */
  done(lease: Lease, err?: unknown, destroy = false): void {
    const lost = err !== undefined && isConnectionError(err);
    if (lost) this.topology.markDown(lease.node.spec.id, `connection lost: ${(err as Error).message}`);
    lease.client.off('error', lease.onError);
    // A statement's own error leaves the connection usable; a lost one or session state does not.
    lease.client.release(lost ? (err as Error) : destroy ? true : undefined);
  }

  async end(): Promise<void> {
    await this.ready.catch(() => undefined);
    await this.sharding?.recovery.stop();
    await this.monitor.stop();
    await Promise.allSettled([...this.pools.values()].map((p) => p.end()));
  }

  private describeNodes(): string {
    return this.topology.nodes
      .map((n) => `${n.spec.id} is ${n.fenced ? 'fenced' : n.reachable ? n.role : 'down'}`)
      .join(', ');
  }
}
