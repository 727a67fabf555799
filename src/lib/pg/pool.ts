/**
 * `createPool(options)`: a drop-in for `pg.Pool` over a primary and its replicas, routed
 * in the process by the proxy's own modules (no extra hop). `query` in its promise and
 * callback forms, `connect()`/`release()`, `end()`, pg.Pool's events and counts.
 */
import { EventEmitter } from 'node:events';
import type pg from 'pg';
import { formatPgToken, parsePgToken, type CausalToken } from '../../core/causal.js';
import { nodeState, type TopologyEvent } from '../../core/topology.js';
import type { NodeState } from '../../core/types.js';
import type { Registry } from 'prom-client';
import type { Metrics } from '../../admin/metrics.js';
import { libraryMetrics } from '../metrics.js';
import { RoutingClient } from './client.js';
import { resolveOptions, type PoolOptions } from './options.js';
import { PgRouter, SHARD } from './router.js';
import { queryArgs, runStatement, settle, type RoutedQueryConfig } from './run.js';

/** A node as the pool sees it now. */
export interface PoolNodeStatus {
  id: string;
  host: string;
  port: number;
  /** its shard (`default` unless the pool is sharded) */
  shard: string;
  role: 'primary' | 'replica';
  state: NodeState;
  lagBytes: number | null;
  lagMs: number | null;
}

/** What both the pool and a token scope offer: queries that share a causal token. */
export interface Queryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string | RoutedQueryConfig,
    values?: unknown[],
  ): Promise<pg.QueryResult<R>>;
  query(
    text: string | RoutedQueryConfig,
    values: unknown[] | undefined,
    callback: (err: Error | null, res?: pg.QueryResult) => void,
  ): void;
  query(text: string | RoutedQueryConfig, callback: (err: Error | null, res?: pg.QueryResult) => void): void;
  /** this scope's causal token, in the proxy's format (`v1:default@0/3000148`), '' before any write */
  causalToken(): string;
}

const ENDED = 'Cannot use a pool after calling end on the pool';

export class RwsplitPool extends EventEmitter implements Queryable {
  private readonly router: PgRouter;
  private readonly clients = new Set<RoutingClient>();
  private readonly stats: Metrics;
  ending = false;
  ended = false;

  constructor(options: PoolOptions) {
    super();
    const resolved = resolveOptions(options);
    this.router = new PgRouter(resolved.pg, resolved.login, resolved.logger);
    // pg.Pool's events, from the node pools: the physical pg.Client is their argument.
    for (const ev of ['connect', 'acquire', 'release', 'remove'] as const)
      this.router.on(ev, (...args: unknown[]) => this.emit(ev, ...args));
    // An idle connection lost (a node died) is reported to listeners; unlike pg.Pool, no
    // listener does not make it an uncaught exception: the node just leaves rotation.
    this.router.on('error', (...args: unknown[]) => {
      if (this.listenerCount('error') > 0) this.emit('error', ...args);
    });
    this.router.topology.on('event', (e: TopologyEvent) => this.emit('node', e));
    const clients = this.clients;
    const router = this.router;
    this.stats = libraryMetrics([router.topology], {
      kind: 'postgres',
      get clientCount() {
        return clients.size;
      },
      poolStats: () => {
        const out = new Map<string, { idle: number; active: number; waiting: number }>();
        for (const [id, p] of router.poolsById)
          out.set(id, { idle: p.idleCount, active: p.totalCount - p.idleCount, waiting: p.waitingCount });
        return out;
      },
    });
    router.stats = this.stats;
  }

  /** A prom-client registry with the proxy's metric names (docs/LIBRARY.md): serve it or merge it with the app's. */
  get metrics(): Registry {
    return this.stats.registry;
  }

  /** Resolves once the monitor has seen every node once (roles known); queries wait for it anyway. */
  ready(): Promise<void> {
    return this.router.ready;
  }

  query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string | RoutedQueryConfig,
    values?: unknown[],
  ): Promise<pg.QueryResult<R>>;
  query(
    text: string | RoutedQueryConfig,
    values: unknown[] | undefined,
    callback: (err: Error | null, res?: pg.QueryResult) => void,
  ): void;
  query(text: string | RoutedQueryConfig, callback: (err: Error | null, res?: pg.QueryResult) => void): void;
  query(
    textOrConfig: string | RoutedQueryConfig,
    valuesOrCb?: unknown,
    cb?: unknown,
  ): Promise<pg.QueryResult> | undefined {
    return this.scopedQuery(null, textOrConfig, valuesOrCb, cb);
  }

  private scopedQuery(
    scope: CausalToken | null,
    textOrConfig: string | RoutedQueryConfig,
    valuesOrCb?: unknown,
    cb?: unknown,
  ): Promise<pg.QueryResult> | undefined {
    let args;
    try {
      args = queryArgs(textOrConfig, valuesOrCb, cb);
    } catch (err) {
      const callback = typeof valuesOrCb === 'function' ? valuesOrCb : cb;
      return settle(Promise.reject(err as Error), callback as undefined);
    }
    if (this.ending) return settle(Promise.reject(new Error(ENDED)), args.callback);
    return settle(runStatement(this.router, args.config, scope), args.callback);
  }

  /** A client that routes per statement until a transaction or session state holds it on one node. */
  connect(): Promise<RoutingClient>;
  connect(
    callback: (err: Error | null, client?: RoutingClient, done?: (err?: Error | boolean) => void) => void,
  ): void;
  connect(
    callback?: (err: Error | null, client?: RoutingClient, done?: (err?: Error | boolean) => void) => void,
  ): Promise<RoutingClient> | undefined {
    const p = this.ending ? Promise.reject(new Error(ENDED)) : this.newClient(null);
    if (!callback) return p;
    p.then(
      (c) => callback(null, c, (err) => c.release(err)),
      (err: Error) => callback(err),
    );
    return undefined;
  }

  private async newClient(scope: CausalToken | null): Promise<RoutingClient> {
    await this.router.ready;
    const client = new RoutingClient(this.router, scope, (c) => this.clients.delete(c));
    this.clients.add(client);
    return client;
  }

  /** The pool's causal token (raised by every write through it), in the proxy's format. */
  causalToken(): string {
    return this.router.token.size === 0 ? '' : formatPgToken(this.router.token);
  }

  /**
   * Queries that read what `token` saw (and what they themselves write), whatever the pool's
   * consistency level: for a request that carries a token from another process or from the
   * proxy's `SHOW rwsplit.causal_token`.
   */
  withToken(token: string | null | undefined): Queryable & { connect(): Promise<RoutingClient> } {
    const scope: CausalToken = token ? parsePgToken(token, SHARD) : new Map();
    const query = (
      t: string | RoutedQueryConfig,
      v?: unknown,
      c?: unknown,
    ): Promise<pg.QueryResult> | undefined =>
      this.ending
        ? settle(Promise.reject(new Error(ENDED)), (typeof v === 'function' ? v : c) as undefined)
        : this.scopedQuery(scope, t, v, c);
    return {
      query: query as Queryable['query'],
      causalToken: () => (scope.size === 0 ? '' : formatPgToken(scope)),
      connect: () => (this.ending ? Promise.reject(new Error(ENDED)) : this.newClient(scope)),
    };
  }

  /** Every node's role and state as the monitor and the data path last saw them. */
  nodes(): PoolNodeStatus[] {
    return this.router.topology.nodes.map((n) => ({
      id: n.spec.id,
      host: n.spec.host,
      port: n.spec.port,
      shard: n.spec.shard,
      role: n.role,
      state: nodeState(n),
      lagBytes: n.lagBytes,
      lagMs: n.lagMs,
    }));
  }

  /** Connections open over all nodes (pg.Pool's counts, summed over the node pools). */
  get totalCount(): number {
    let n = 0;
    for (const p of this.router.nodePools) n += p.totalCount;
    return n;
  }

  get idleCount(): number {
    let n = 0;
    for (const p of this.router.nodePools) n += p.idleCount;
    return n;
  }

  get waitingCount(): number {
    let n = 0;
    for (const p of this.router.nodePools) n += p.waitingCount;
    return n;
  }

  end(): Promise<void>;
  end(callback: (err?: Error) => void): void;
  end(callback?: (err?: Error) => void): Promise<void> | undefined {
    if (this.ending) {
      const err = new Error('Called end on pool more than once');
      if (callback) {
        callback(err);
        return undefined;
      }
      return Promise.reject(err);
    }
    this.ending = true;
    const p = this.router.end().then(() => {
      this.ended = true;
    });
    if (!callback) return p;
    p.then(() => callback(), callback);
    return undefined;
  }
}

/** `createPool({ nodes: [{ host, port }, …], user, database })`: see docs/LIBRARY.md. */
export function createPool(options: PoolOptions): RwsplitPool {
  return new RwsplitPool(options);
}
