/**
 * What `pool.connect()` hands out: a client with pg's `query`/`release` that routes each
 * statement on its own, as a proxy session does, until one opens a transaction (then every
 * statement runs on that transaction's node until it ends) or leaves session state (then it
 * stays on the primary until released, and that connection is closed rather than reused).
 */
import { EventEmitter } from 'node:events';
import pg from 'pg';
import type { CausalToken } from '../../core/causal.js';
import { annotate, capturesToken, mayWrite, queryArgs, readToken, runStatement, settle } from './run.js';
import type { RoutedQueryConfig } from './run.js';
import { isConnectionError, type Lease, type PgRouter } from './router.js';
import type { RouteDecision } from '../../pg/routing/route-decision.js';
import { ShardedClient } from './sharded-client.js';

type Pin = {
  kind: 'transaction' | 'session';
  lease: Lease;
  decision: RouteDecision;
  /** the held connection's notices and notifications (LISTEN) re-emitted on this client */
  forward: Record<'notice' | 'notification', (msg: unknown) => void>;
};

export class RoutingClient extends EventEmitter {
  private pin: Pin | null = null;
  private released = false;
  /** statements run one after another, as on one pg.Client */
  private tail: Promise<unknown> = Promise.resolve();
  /** on a sharded pool: what holds this client on shards (sharded-client.ts) */
  private readonly sharded: ShardedClient | null;

  constructor(
    private readonly router: PgRouter,
    private readonly scope: CausalToken | null,
    private readonly onRelease: (client: RoutingClient) => void,
  ) {
    super();
    this.sharded = router.sharding
      ? new ShardedClient(router, scope, {
          notice: (msg: unknown) => this.emit('notice', msg),
          notification: (msg: unknown) => this.emit('notification', msg),
        })
      : null;
  }

  /** The node this client is held on (a transaction or session state), or null between statements. */
  get pinnedTo(): string | null {
    if (this.sharded) return this.sharded.pinnedTo;
    return this.pin?.lease.node.spec.id ?? null;
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
    const { config, callback } = queryArgs(textOrConfig, valuesOrCb, cb);
    if (this.released) {
      const err = new Error('Client was released to the pool; get another with pool.connect()');
      return settle(Promise.reject(err), callback);
    }
    const run = this.tail.then(() => this.run(config));
    this.tail = run.catch(() => undefined);
    return settle(run, callback);
  }

  private async run(config: RoutedQueryConfig): Promise<pg.QueryResult> {
    if (this.sharded) return this.sharded.run(config);
    if (this.pin) return this.onPin(this.pin, config);
    const d = this.router.decide(config.text);
    const submittable = typeof (config as { submit?: unknown }).submit === 'function';
    if (
      d.reason === 'transaction' ||
      d.reason === 'read-only-transaction' ||
      d.reason === 'pinned' ||
      submittable
    ) {
      const { causalToken, ...pgConfig } = config;
      const lease =
        d.target === 'primary'
          ? await this.router.leasePrimary()
          : await this.router.leaseRead(
              readToken(this.router, this.scope, causalToken),
              this.router.consistency,
            );
      // A cursor or stream keeps its connection until the client is released.
      const kind = d.reason === 'pinned' || submittable ? 'session' : 'transaction';
      const forward = {
        notice: (msg: unknown) => this.emit('notice', msg),
        notification: (msg: unknown) => this.emit('notification', msg),
      };
      lease.client.on('notice', forward.notice);
      lease.client.on('notification', forward.notification);
      this.pin = { kind, lease, decision: d, forward };
      if (submittable) return lease.client.query(pgConfig as pg.QueryConfig) as Promise<pg.QueryResult>;
      return this.onPin(this.pin, pgConfig);
    }
    return runStatement(this.router, config, this.scope);
  }

  /** A statement on the held connection; a transaction that ended gives the connection back. */
  private async onPin(pin: Pin, config: RoutedQueryConfig): Promise<pg.QueryResult> {
    const { causalToken: _ignored, ...pgConfig } = config;
    const { lease } = pin;
    let result: pg.QueryResult;
    try {
      result = await lease.client.query(pgConfig);
    } catch (err) {
      if (pin.kind === 'transaction' && lease.client.getTransactionStatus() === 'I') this.unpin(pin, err);
      // A lost connection keeps the client held on it: the statements that follow fail too
      // (they must not run outside the transaction the application thinks it is in) until release.
      else if (isConnectionError(err))
        this.router.topology.markDown(lease.node.spec.id, `connection lost: ${(err as Error).message}`);
      throw err;
    }
    let position: bigint | null = null;
    if (pin.kind === 'transaction' && lease.client.getTransactionStatus() === 'I') {
      // The transaction is over: its commit position becomes the token, the connection goes back.
      if (mayWrite(pin.decision) && capturesToken(this.router, this.scope)) {
        try {
          position = await this.router.capture(lease, [this.router.token, this.scope]);
        } catch (err) {
          this.unpin(pin, err);
          return annotate(result, lease.node.spec.id, null);
        }
      }
      this.unpin(pin);
    }
    return annotate(result, lease.node.spec.id, position);
  }

  private unpin(pin: Pin, err?: unknown): void {
    if (this.pin !== pin) return;
    this.pin = null;
    this.unforward(pin);
    this.router.done(pin.lease, err);
  }

  private unforward(pin: Pin): void {
    pin.lease.client.off('notice', pin.forward.notice);
    pin.lease.client.off('notification', pin.forward.notification);
  }

  /** pg's `release(err?)`: an error (or `true`) closes the held connection instead of reusing it. */
  release(err?: Error | boolean): void {
    if (this.released)
      throw new Error('Release called on client which has already been released to the pool.');
    this.released = true;
    this.sharded?.release(err);
    const pin = this.pin;
    this.pin = null;
    if (pin) {
      this.unforward(pin);
      // Session state must not reach the next user of that connection; nor an open transaction.
      const destroy = err !== undefined && err !== false;
      const dirty = pin.kind === 'session' || pin.lease.client.getTransactionStatus() !== 'I';
      this.router.done(pin.lease, destroy && err !== true ? err : undefined, destroy || dirty);
    }
    this.onRelease(this);
  }

  escapeIdentifier(str: string): string {
    return pg.escapeIdentifier(str);
  }

  escapeLiteral(str: string): string {
    return pg.escapeLiteral(str);
  }
}
