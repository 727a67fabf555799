/**
 * A client from `pool.connect()` on a sharded pool: statements route one by one (pool.query's
 * way) until one opens a transaction or leaves session state. A transaction's BEGIN waits for
 * its first statement with a shard, as in the proxy; each shard it reaches gets the same BEGIN
 * and keeps its connection until the end. A COMMIT of a transaction that wrote on several
 * shards is the proxy's two-phase commit (its coordinator and decision log); a ROLLBACK rolls
 * back every shard. Session state holds the client on one shard's primary until release.
 */
import pg from 'pg';
import { formatPgToken, type CausalToken } from '../../core/causal.js';
import type { RouteDecision } from '../../pg/routing/route-decision.js';
import { pinnedToShardError } from '../../pg/sharding/shard-transaction.js';
import { isConnectionError, type Lease, type PgRouter } from './router.js';
import { annotate, capturesToken, mayWrite, readToken, runStatement, type RoutedQueryConfig } from './run.js';
import {
  commitShards,
  isLoneBegin,
  isSessionSetting,
  libraryError,
  loneEnd,
  mergeOn,
  placeStatement,
  runOnEach,
} from './shards.js';

interface Held {
  kind: 'transaction' | 'session';
  decision: RouteDecision;
  /** the transaction's BEGIN, sent on each shard it reaches (null: the first statement opened it) */
  begin: string | null;
  leases: Map<string, Lease>;
  /** the shard of the last statement: where a statement without a shard of its own runs */
  current: string | null;
  /** the request's token (`causalToken` in the config that opened it) */
  causalToken: string | undefined;
}

/** An empty result with pg's shape, for a BEGIN or an end the library answers itself. */
function ownResult(command: string): pg.QueryResult {
  return { command, rowCount: null, oid: 0, fields: [], rows: [] } as unknown as pg.QueryResult;
}

export class ShardedClient {
  private held: Held | null = null;

  constructor(
    private readonly router: PgRouter,
    private readonly scope: CausalToken | null,
    private readonly forward: Record<'notice' | 'notification', (msg: unknown) => void>,
  ) {}

  /** The node of the shard the client is held on, or null between statements. */
  get pinnedTo(): string | null {
    const h = this.held;
    if (!h) return null;
    return (h.current === null ? undefined : h.leases.get(h.current))?.node.spec.id ?? null;
  }

  async run(config: RoutedQueryConfig): Promise<pg.QueryResult> {
    const submittable = typeof (config as { submit?: unknown }).submit === 'function';
    if (!this.held) {
      const d = this.router.decide(config.text);
      const tx = d.reason === 'transaction' || d.reason === 'read-only-transaction';
      if (!tx && d.reason !== 'pinned' && !submittable) return runStatement(this.router, config, this.scope);
      this.router.stats?.routed(d.reason);
      this.held = {
        kind: tx && !submittable ? 'transaction' : 'session',
        decision: d,
        begin: null,
        leases: new Map(),
        current: null,
        causalToken: config.causalToken,
      };
      if (this.held.kind === 'transaction' && isLoneBegin(config.text)) {
        // Which shard is not known until a statement names one: the BEGIN goes there then.
        this.held.begin = config.text;
        return ownResult('BEGIN');
      }
    }
    return this.onHeld(this.held, config, submittable);
  }

  private async onHeld(h: Held, config: RoutedQueryConfig, submittable: boolean): Promise<pg.QueryResult> {
    const { causalToken: _ignored, ...pgConfig } = config;
    if (h.kind === 'transaction') {
      const end = loneEnd(pgConfig.text);
      if (end !== null && h.leases.size !== 1) return this.finish(h, end);
    }
    const sharding = this.router.sharding!.context;
    // A SET that opens session state has no shard: it holds the client on any one (the proxy
    // would replay it on every shard the session reaches; here the client stays on that shard).
    const setting = h.current === null && h.kind === 'session' && isSessionSetting(pgConfig.text);
    const fallback = h.current ?? (setting ? sharding.resolver.anyShard() : null);
    const place = placeStatement(sharding, pgConfig.text, pgConfig.values, fallback);
    if (place.kind === 'shard' && place.anywhere && h.current === null && !setting) {
      // The first statement with a shard chooses it; a write or session state naming no table
      // (`SELECT nextval('s')`, an advisory lock) cannot: the proxy refuses it too.
      const d = this.router.decide(pgConfig.text);
      if (d.reason === 'write' || d.reason === 'pinned')
        throw libraryError(sharding.resolver.unknownShardError());
    }
    const targets =
      place.kind === 'shard'
        ? [place.anywhere && h.current !== null ? h.current : place.shard]
        : [...sharding.resolver.shardNames];
    if (h.kind === 'session') {
      const other = targets.find((t) => h.current !== null && t !== h.current);
      if (other !== undefined) throw libraryError(pinnedToShardError(h.current!, 'session state', other));
    }
    const leases: Lease[] = [];
    for (const shard of targets) leases.push(await this.open(h, shard));
    if (targets.length === 1) h.current = targets[0]!;
    let result: pg.QueryResult;
    try {
      if (place.kind === 'merge') result = await mergeOn(this.router, place.plan, pgConfig, leases);
      else if (place.kind === 'every-shard') result = await runOnEach(pgConfig, leases, place.replicated);
      else if (submittable)
        return (await leases[0]!.client.query(pgConfig as pg.QueryConfig)) as pg.QueryResult;
      else result = await leases[0]!.client.query(pgConfig);
    } catch (err) {
      if (h.kind === 'transaction' && this.idle(h)) this.drop(h, err);
      // A lost connection keeps the client held on it: what follows fails too until release.
      else if (isConnectionError(err))
        for (const l of leases)
          this.router.topology.markDown(l.node.spec.id, `connection lost: ${(err as Error).message}`);
      throw err;
    }
    const node = leases.map((l) => l.node.spec.id).join(',');
    if (h.kind === 'transaction' && this.idle(h)) {
      // Over on its one shard (COMMIT, ROLLBACK, or the text ended it): positions, then release.
      const token = await this.capture(h);
      this.drop(h);
      return this.annotated(result, node, token);
    }
    return annotate(result, node, null);
  }

  /** A lone COMMIT/ROLLBACK of a transaction on no shard or on several. */
  private async finish(h: Held, end: 'commit' | 'rollback'): Promise<pg.QueryResult> {
    const leases = [...h.leases.values()];
    const node = leases.map((l) => l.node.spec.id).join(',');
    if (leases.length === 0) {
      this.drop(h);
      return ownResult(end === 'commit' ? 'COMMIT' : 'ROLLBACK');
    }
    const failed = leases.some((l) => l.client.getTransactionStatus() === 'E');
    if (end === 'rollback' || failed) {
      const settled = await Promise.allSettled(leases.map((l) => l.client.query('ROLLBACK')));
      const lost = settled.find((s) => s.status === 'rejected');
      this.drop(h, lost?.reason, lost !== undefined);
      // PostgreSQL answers the COMMIT of a failed transaction with ROLLBACK.
      return annotate(ownResult('ROLLBACK'), node, null);
    }
    try {
      await commitShards(this.router, leases);
    } catch (err) {
      // Each participant was rolled back or left to recovery: its connection is not reused.
      this.drop(h, undefined, true);
      throw err;
    }
    const token = await this.capture(h);
    this.drop(h);
    return this.annotated(ownResult('COMMIT'), node, token);
  }

  /** The connection of the held transaction (or session) on `shard`, opened there on first use. */
  private async open(h: Held, shard: string): Promise<Lease> {
    const had = h.leases.get(shard);
    if (had) return had;
    const lease =
      h.decision.target === 'primary'
        ? await this.router.leasePrimary(shard)
        : await this.router.leaseRead(
            readToken(this.router, this.scope, h.causalToken),
            this.router.consistency,
            undefined,
            shard,
          );
    lease.client.on('notice', this.forward.notice);
    lease.client.on('notification', this.forward.notification);
    h.leases.set(shard, lease);
    // The first statement of a transaction opened it (`BEGIN; …`); later shards get its BEGIN.
    const begin =
      h.kind === 'session' || (h.begin === null && h.leases.size === 1) ? null : (h.begin ?? 'BEGIN');
    if (begin !== null) {
      try {
        await lease.client.query(begin);
      } catch (err) {
        h.leases.delete(shard);
        this.unforward(lease);
        this.router.done(lease, err, true);
        throw err;
      }
    }
    return lease;
  }

  private idle(h: Held): boolean {
    for (const l of h.leases.values()) if (l.client.getTransactionStatus() !== 'I') return false;
    return true;
  }

  /** After a transaction that may have written: each shard's commit position raises the tokens. */
  private async capture(h: Held): Promise<CausalToken | null> {
    if (!mayWrite(h.decision) || !capturesToken(this.router, this.scope)) return null;
    const out: CausalToken = new Map();
    for (const l of h.leases.values()) {
      const pos = await this.router.capture(l, [this.router.token, this.scope]).catch(() => null);
      if (pos !== null) out.set(l.node.spec.shard, pos);
    }
    return out;
  }

  private annotated(result: pg.QueryResult, node: string, token: CausalToken | null): pg.QueryResult {
    annotate(result, node, null);
    if (token !== null && token.size > 0)
      Object.defineProperty(result, 'causalToken', {
        value: formatPgToken(token),
        enumerable: false,
        configurable: true,
      });
    return result;
  }

  private drop(h: Held, err?: unknown, destroy = false): void {
    if (this.held !== h) return;
    this.held = null;
    for (const l of h.leases.values()) {
      this.unforward(l);
      this.router.done(l, err, destroy || l.client.getTransactionStatus() !== 'I');
    }
  }

  private unforward(l: Lease): void {
    l.client.off('notice', this.forward.notice);
    l.client.off('notification', this.forward.notification);
  }

  /** pg's `release(err?)`: session state and open transactions never reach another user. */
  release(err?: Error | boolean): void {
    const h = this.held;
    this.held = null;
    if (!h) return;
    const destroy = err !== undefined && err !== false;
    for (const l of h.leases.values()) {
      this.unforward(l);
      const dirty = h.kind === 'session' || l.client.getTransactionStatus() !== 'I';
      this.router.done(l, destroy && err !== true ? err : undefined, destroy || dirty);
    }
  }
}
