/**
 * One autocommit statement through the router: where it runs, the lease, the retry of a
 * read whose node failed, the causal token after a write, and the result's routing fields.
 * Shared by `pool.query` and by a client from `pool.connect()` between transactions.
 */
import type pg from 'pg';
import { formatPgToken, parsePgToken, type CausalToken } from '../../core/causal.js';
import type { RouteDecision } from '../../pg/routing/route-decision.js';
import { failedNode, isConnectionError, SHARD, type Lease, type PgRouter } from './router.js';
import type { MergePlan } from '../../pg/sharding/shard-merge.js';
import { everyShard, libraryError, mergeOn, placeStatement } from './shards.js';

/** A query config as pg takes it, plus a per-request causal token. */
export interface RoutedQueryConfig extends pg.QueryConfig {
  /** a token from `pool.causalToken()`, a result's `causalToken` or the proxy's `SHOW rwsplit.causal_token` */
  causalToken?: string;
  /** pg's: rows as arrays */
  rowMode?: 'array';
}

/** Normalizes pg's argument forms: (text, values?, cb?) or (config, values?, cb?). */
export function queryArgs(
  textOrConfig: string | RoutedQueryConfig,
  valuesOrCb?: unknown,
  cb?: unknown,
): { config: RoutedQueryConfig; callback: ((err: Error | null, res?: unknown) => void) | undefined } {
  let values: unknown[] | undefined;
  let callback = cb as ((err: Error | null, res?: unknown) => void) | undefined;
  if (typeof valuesOrCb === 'function') callback = valuesOrCb as typeof callback;
  else if (Array.isArray(valuesOrCb)) values = valuesOrCb;
  let config: RoutedQueryConfig;
  if (typeof textOrConfig === 'string') config = { text: textOrConfig };
  else if (textOrConfig !== null && typeof textOrConfig === 'object') config = { ...textOrConfig };
  else throw new TypeError('Client was passed a null or undefined query');
  if (values !== undefined) config.values = values;
  return { config, callback };
}

/** Runs `fn` and hands its outcome to a pg-style callback, or returns the promise. */
export function settle<T>(
  promise: Promise<T>,
  callback: ((err: Error | null, res?: T) => void) | undefined,
): Promise<T> | undefined {
  if (!callback) return promise;
  promise.then(
    (res) => callback(null, res),
    (err: Error) => callback(err),
  );
  return undefined;
}

/** Where a result was served: a non-enumerable `node`, and `causalToken` after a write. */
export function annotate<T extends object>(
  result: T,
  nodeId: string,
  position: bigint | null,
  shard = SHARD,
): T {
  Object.defineProperty(result, 'node', { value: nodeId, enumerable: false, configurable: true });
  if (position !== null) {
    const token = formatPgToken(new Map([[shard, position]]));
    Object.defineProperty(result, 'causalToken', { value: token, enumerable: false, configurable: true });
  }
  return result;
}

/** The token a read must see: the pool's (read-your-writes), a scope's and the request's, whichever is ahead. */
export function readToken(
  router: PgRouter,
  scope: CausalToken | null,
  request: string | undefined,
): CausalToken | null {
  const parts: CausalToken[] = [];
  if (router.consistency === 'read-your-writes' && router.token.size > 0) parts.push(router.token);
  if (scope && scope.size > 0) parts.push(scope);
  if (request) parts.push(parsePgToken(request, SHARD));
  if (parts.length <= 1) return parts[0] ?? null;
  const out: CausalToken = new Map();
  for (const t of parts) for (const [shard, pos] of t) if ((out.get(shard) ?? -1n) < pos) out.set(shard, pos);
  return out;
}

/** Routing reasons after which the primary's position becomes the token (it may have written). */
export function mayWrite(d: RouteDecision): boolean {
  return (
    d.reason === 'write' || d.reason === 'transaction' || d.reason === 'pinned' || d.reason === 'hint-primary'
  );
}

/** Whether writes through this router capture a token (read-your-writes, or a caller holding one). */
export function capturesToken(router: PgRouter, scope: CausalToken | null): boolean {
  return router.consistency === 'read-your-writes' || scope !== null;
}

/** One autocommit statement: routed, run, its lease given back. */
export async function runStatement(
  router: PgRouter,
  config: RoutedQueryConfig,
  scope: CausalToken | null,
): Promise<pg.QueryResult> {
  const { causalToken, ...pgConfig } = config;
  const d = router.decide(pgConfig.text);
  router.stats?.routed(d.reason);
  let shard = SHARD;
  const sharding = router.sharding?.context;
  if (sharding) {
    const place = placeStatement(sharding, pgConfig.text, pgConfig.values);
    if (place.kind === 'every-shard') {
      const tokens = capturesToken(router, scope) ? [router.token, scope] : [];
      return everyShard(router, pgConfig, place.atomic, place.replicated, tokens);
    }
    if (place.kind === 'merge') return mergeRead(router, place.plan, pgConfig, d, scope, causalToken);
    // A write or session state that names no table (`SELECT nextval('s')`, an advisory lock)
    // still belongs to one shard, which the text does not say: the proxy refuses it too.
    if (place.anywhere && (d.reason === 'write' || d.reason === 'pinned'))
      throw libraryError(sharding.resolver.unknownShardError());
    shard = place.shard;
  }
  if (d.target === 'primary') {
    const lease = await router.leasePrimary(shard);
    return runOn(router, lease, pgConfig, d, scope);
  }
  const token = readToken(router, scope, causalToken);
  const failed = new Set<string>();
  for (;;) {
    let lease: Lease | null = null;
    try {
      lease = await router.leaseRead(token, router.consistency, failed, shard);
      return await runOn(router, lease, pgConfig, d, scope);
    } catch (err) {
      // The node died under an autocommit read, or refused it: the same read on another node.
      const node = lease?.node.spec.id ?? (typeof err === 'object' && err ? failedNode.get(err) : undefined);
      const retry = router.config.routing.retryReads && d.retryable && isConnectionError(err);
      if (!retry || node === undefined || failed.has(node)) throw err;
      failed.add(node);
      router.stats?.retried(node);
    }
  }
}

/** A read of every shard (one read node each, as a read of that shard would pick), rows merged. */
async function mergeRead(
  router: PgRouter,
  plan: MergePlan,
  config: pg.QueryConfig,
  d: RouteDecision,
  scope: CausalToken | null,
  causalToken: string | undefined,
): Promise<pg.QueryResult> {
  const token = readToken(router, scope, causalToken);
  const leases: Lease[] = [];
  let failure: unknown;
  try {
    for (const shard of router.sharding!.context.resolver.shardNames)
      leases.push(
        d.target === 'primary'
          ? await router.leasePrimary(shard)
          : await router.leaseRead(token, router.consistency, undefined, shard),
      );
    for (const l of leases)
      router.stats?.dispatched(l.node.spec.id, d.target === 'primary' ? 'write' : 'read');
    const result = await mergeOn(router, plan, config, leases);
    return annotate(result, leases.map((l) => l.node.spec.id).join(','), null);
  } catch (err) {
    failure = err;
    throw err;
  } finally {
    for (const l of leases) router.done(l, failure);
  }
}

async function runOn(
  router: PgRouter,
  lease: Lease,
  config: pg.QueryConfig,
  d: RouteDecision,
  scope: CausalToken | null,
): Promise<pg.QueryResult> {
  let result: pg.QueryResult;
  let position: bigint | null = null;
  try {
    router.stats?.dispatched(lease.node.spec.id, d.target === 'primary' ? 'write' : 'read');
    result = await lease.client.query(config);
    // A text that left a transaction open (pg.Pool hands such a connection back as it is)
    // or session state is not given to the next statement: the connection is closed.
    const idle = lease.client.getTransactionStatus() === 'I';
    if (!idle || d.reason === 'pinned') {
      router.done(lease, undefined, true);
      return annotate(result, lease.node.spec.id, null);
    }
    if (mayWrite(d) && capturesToken(router, scope)) {
      try {
        position = await router.capture(lease, [router.token, scope]);
      } catch (err) {
        // The write is done; without its position reads go to the primary (tokenUnknown).
        router.done(lease, err);
        return annotate(result, lease.node.spec.id, null);
      }
    }
  } catch (err) {
    router.done(lease, err);
    throw err;
  }
  router.done(lease);
  return annotate(result, lease.node.spec.id, position, lease.node.spec.shard);
}
