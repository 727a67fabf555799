/**
 * Pools of authenticated backend connections, one pool per (node, login). Connections are
 * lent to a client session for one transaction (or one autocommit batch) and returned;
 * a session pinned by session state keeps its connection until it ends (PgBouncer's
 * transaction pooling, with the pinning rule instead of forbidding session state).
 */
import { BackendConnection, type BackendLogin, type BackendTarget } from './backend-connection.js';
import { BackendStartupError, RwsplitPgError, SqlState } from '../errors.js';

export interface PoolOptions {
  size: number;
  /** how long acquire() waits for a connection of a busy pool (postgres.pool.queryWaitTimeoutMs) */
  queryWaitTimeoutMs: number;
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  maxFrameBytes: number;
}

export interface PoolHooks {
  /** a connection attempt failed because of the node (refused, reset, timeout) */
  onNodeFailure(nodeId: string, reason: string): void;
}

interface Waiter {
  resolve(conn: BackendConnection): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

export class BackendPool {
  private readonly idle: BackendConnection[] = [];
  /** every open connection, idle or lent (to find a backend by its server pid) */
  readonly connections = new Set<BackendConnection>();
  private readonly waiters: Waiter[] = [];
  /** connections open or being opened */
  private total = 0;
  private leased = 0;
  private closing = false;

  constructor(
    readonly target: BackendTarget,
    readonly login: BackendLogin,
    private readonly opts: PoolOptions,
    private readonly hooks: PoolHooks,
  ) {}

  get stats(): { idle: number; active: number; waiting: number; total: number } {
    return { idle: this.idle.length, active: this.leased, waiting: this.waiters.length, total: this.total };
  }

  /** An idle connection right away, or null (no promise, no allocation: the hot path). */
  tryAcquire(): BackendConnection | null {
    const conn = this.idle.pop();
    if (!conn) return null;
    this.leased++;
    return conn;
  }

  /** An idle connection, a new one when under `size`, else the first one released (FIFO). */
  acquire(): Promise<BackendConnection> {
    const conn = this.tryAcquire();
    if (conn) return Promise.resolve(conn);
    if (this.total < this.opts.size) return this.open();
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          const i = this.waiters.indexOf(waiter);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(
            new RwsplitPgError(
              'POOL_TIMEOUT',
              SqlState.TooManyConnections,
              `all ${this.opts.size} connections to ${this.target.nodeId} stayed busy for ${this.opts.queryWaitTimeoutMs} ms`,
              'Raise postgres.pool.size (and max_connections on the server) or postgres.pool.queryWaitTimeoutMs, or end transactions sooner (postgres.pool.idleInTransactionTimeoutMs).',
            ),
          );
        }, this.opts.queryWaitTimeoutMs),
      };
      this.waiters.push(waiter);
    });
  }

  /** Returns a healthy, idle-in-protocol connection (ReadyForQuery 'I' seen, nothing pending). */
  release(conn: BackendConnection): void {
    this.leased--;
    conn.listener = null;
    if (conn.closed || this.closing) {
      this.forget(conn);
      return;
    }
    conn.lastUsedAt = Date.now();
    const waiter = this.waiters.shift();
    if (waiter) {
      clearTimeout(waiter.timer);
      this.leased++;
      waiter.resolve(conn);
      return;
    }
    this.idle.push(conn);
  }

  /** Drops a leased connection whose state is unknown (client vanished mid-transaction, session state). */
  discard(conn: BackendConnection, reason: string): void {
    this.leased--;
    conn.listener = null;
    conn.destroy(reason);
  }

  /** A leased connection died under its session; its slot is freed by the close handler. */
  lost(): void {
    this.leased--;
  }

  /** Closes idle connections unused for longer than idleTimeoutMs. */
  reapIdle(now: number): void {
    if (this.opts.idleTimeoutMs === 0) return;
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const conn = this.idle[i]!;
      if (now - conn.lastUsedAt > this.opts.idleTimeoutMs) {
        this.idle.splice(i, 1);
        conn.terminate();
      }
    }
  }

  /** Closes every idle connection (their node went down: they are probably dead too). */
  dropIdle(): void {
    for (const conn of this.idle.splice(0)) conn.destroy('node is down');
  }

  close(): void {
    this.closing = true;
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(new RwsplitPgError('SHUTDOWN', SqlState.AdminShutdown, 'rwsplit is shutting down'));
    }
    for (const conn of this.idle.splice(0)) conn.terminate();
  }

  private async open(): Promise<BackendConnection> {
    this.total++;
    try {
      const conn = await BackendConnection.connect(this.target, this.login, this.opts);
      conn.onClosed = (c) => this.forget(c);
      this.connections.add(conn);
      this.leased++;
      return conn;
    } catch (err) {
      this.total--;
      if (err instanceof BackendStartupError && err.nodeFailure)
        this.hooks.onNodeFailure(this.target.nodeId, err.message);
      this.wakeWaiterWithNewConnection();
      throw err;
    }
  }

  private forget(conn: BackendConnection): void {
    this.connections.delete(conn);
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
    if (!conn.counted) return;
    conn.counted = false;
    this.total--;
    this.wakeWaiterWithNewConnection();
  }

  /** A slot freed up: if someone waits, open a connection for them. */
  private wakeWaiterWithNewConnection(): void {
    if (this.closing || this.waiters.length === 0 || this.total >= this.opts.size) return;
    const waiter = this.waiters.shift()!;
    clearTimeout(waiter.timer);
    this.open().then(waiter.resolve, waiter.reject);
  }
}
