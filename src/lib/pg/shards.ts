/**
 * Sharding in the library: where a statement runs among the shards, decided by the proxy's
 * own modules (the ShardResolver's hints, table rules and ring; shard-keyless.ts for the
 * statements without a key; shard-merge.ts to merge reads; the two-phase-commit coordinator
 * for writes on every shard), and the runs the proxy makes over several shards, on leases of
 * the library's node pools instead of backend sockets.
 */
import { createRequire } from 'node:module';
import { lex } from '../../pg/classifier/lexer.js';
import pg from 'pg';
import type { CausalToken } from '../../core/causal.js';
import { RwsplitPgError } from '../../pg/errors.js';
import { classifyKeyless } from '../../pg/sharding/shard-keyless.js';
import { settingChange } from '../../pg/sharding/shard-session-state.js';
import { mergeRefusal, mergeRows, type MergePlan, type Value } from '../../pg/sharding/shard-merge.js';
import type { Participant } from '../../pg/sharding/twopc/index.js';
import type { ShardingContext } from '../../pg/session/session-context.js';
import { RoutingError, type Lease, type PgRouter } from './router.js';

/** node-postgres's own conversion of a parameter to the text it sends (so keys hash as bound). */
const { prepareValue } = createRequire(import.meta.url)('pg/lib/utils.js') as {
  prepareValue: (v: unknown) => unknown;
};

/** Where a statement runs on a sharded pool. */
export type Placement =
  /** `anywhere`: it reads no user table, so any shard answers (a transaction keeps its own) */
  | { readonly kind: 'shard'; readonly shard: string; readonly anywhere: boolean }
  /** a read of every shard, rows merged (a keyless read, or `/* rwsplit:all-shards *\/`) */
  | { readonly kind: 'merge'; readonly plan: MergePlan }
  /** a schema change or keyless write on every shard's primary (`atomic`: in one 2PC transaction) */
  | { readonly kind: 'every-shard'; readonly atomic: boolean; readonly replicated: boolean };

/** The proxy's error, as the library raises it: same SQLSTATE (`code`), message and hint. */
export function libraryError(err: RwsplitPgError): RoutingError {
  return new RoutingError(err.message, err.sqlstate, err.hint);
}

/** Parameters as the text node-postgres sends; undefined when one is binary (a Buffer: not hashed). */
export function textParams(values: readonly unknown[] | undefined): (string | null)[] | undefined {
  if (values === undefined) return undefined;
  const out: (string | null)[] = [];
  for (const v of values) {
    const p = prepareValue(v);
    if (p === null || p === undefined) out.push(null);
    else if (Buffer.isBuffer(p)) return undefined;
    else out.push(String(p));
  }
  return out;
}

/**
 * The proxy's placement of one statement text (with its parameters) among the shards: hints,
 * table rules, the default shard, then the keyless rules. Throws the proxy's error for a
 * statement it refuses or whose shard it cannot tell.
 */
export function placeStatement(
  sharding: ShardingContext,
  text: string,
  values: readonly unknown[] | undefined,
  /** a transaction's current shard: where a statement with no shard and no keyless rule runs (COMMIT, SAVEPOINT) */
  current: string | null = null,
): Placement {
  const { resolver } = sharding;
  const params = textParams(values);
  const r = resolver.resolve(text, params);
  switch (r.kind) {
    case 'shard':
      return { kind: 'shard', shard: r.shard, anywhere: false };
    case 'anywhere':
      return { kind: 'shard', shard: resolver.anyShard(), anywhere: true };
    case 'error':
      throw libraryError(r.error);
    case 'all-shards':
      return { kind: 'merge', plan: concatenation(text) };
    case 'unknown': {
      const keyless = classifyKeyless(text, resolver, params);
      if (keyless === null) {
        if (current !== null) return { kind: 'shard', shard: current, anywhere: true };
        throw libraryError(resolver.unknownShardError());
      }
      if (keyless.kind === 'refused') throw libraryError(keyless.error);
      if (keyless.kind === 'merge') return { kind: 'merge', plan: keyless.plan };
      return { kind: 'every-shard', atomic: keyless.atomic, replicated: keyless.replicated };
    }
  }
}

/** `/* rwsplit:all-shards *\/`: every shard's rows, one after the other (as all-shards-read.ts). */
function concatenation(text: string): MergePlan {
  return {
    shardSql: text,
    combine: [],
    aggregate: false,
    distinct: false,
    order: [],
    limit: null,
    offset: 0,
    cutParams: [],
  };
}

/** Whether a text is one statement that opens a transaction and does nothing else (`BEGIN …`). */
export function isLoneBegin(text: string): boolean {
  const { statements } = lex(text);
  if (statements.length !== 1) return false;
  const first = statements[0]![0];
  const w = first?.kind === 'word' ? first.text : '';
  return w === 'begin' || w === 'start';
}

/** Whether a text is one session SET/RESET (what the proxy tracks per session; SET LOCAL aside). */
export function isSessionSetting(text: string): boolean {
  const { statements } = lex(text);
  if (statements.length !== 1) return false;
  const change = settingChange(statements[0]!, text);
  return change !== null && change.kind !== 'local';
}

/** `commit`/`rollback` for a lone COMMIT/END/ROLLBACK/ABORT (not ROLLBACK TO, not … PREPARED), else null. */
export function loneEnd(text: string): 'commit' | 'rollback' | null {
  const { statements } = lex(text);
  if (statements.length !== 1) return null;
  const words = statements[0]!.filter((t) => t.kind === 'word').map((t) => t.text);
  if (words.includes('to') || words.includes('prepared') || words.includes('chain')) return null;
  if (words[0] === 'commit' || words[0] === 'end') return 'commit';
  if (words[0] === 'rollback' || words[0] === 'abort') return 'rollback';
  return null;
}

/** Type parsers that leave every value as the server's text: what the merge compares. */
const AS_TEXT = { getTypeParser: () => (v: string) => v };

/**
 * A merged read on one lease per shard (leased for it, or a transaction's): the plan's text on
 * each, the rows merged by shard-merge.ts, then parsed as the caller's config asks (its
 * `rowMode`, its `types`).
 */
export async function mergeOn(
  router: PgRouter,
  plan: MergePlan,
  config: pg.QueryConfig,
  leases: readonly Lease[],
): Promise<pg.QueryResult> {
  let values = config.values;
  if (plan.cutParams.length > 0 && values !== undefined) {
    // The LIMIT/OFFSET parameters left the shards' text; they are the last ones, so they go.
    const keep = values.length - plan.cutParams.length;
    if (plan.cutParams.some((i) => i < keep))
      throw libraryError(mergeRefusal('a LIMIT or OFFSET parameter before other parameters'));
    values = values.slice(0, keep);
  }
  if (router.bytewiseText === undefined) {
    const r = await leases[0]!.client.query<{ datcollate: string }>(
      'SELECT datcollate FROM pg_database WHERE datname = current_database()',
    );
    router.bytewiseText = ['C', 'POSIX'].includes(r.rows[0]?.datcollate ?? '');
  }
  const answers = await Promise.all(
    leases.map((l) =>
      l.client.query<Value[]>({
        text: plan.shardSql,
        ...(values === undefined ? {} : { values }),
        rowMode: 'array',
        types: AS_TEXT,
      }),
    ),
  );
  const described = answers.find((a) => a.fields.length > 0) ?? answers[0]!;
  const fields = described.fields;
  let merged: Value[][];
  try {
    merged = mergeRows(
      plan,
      fields.map((f) => f.name),
      fields.map((f) => f.dataTypeID),
      answers.flatMap((a) => a.rows),
      router.bytewiseText,
    );
  } catch (err) {
    if (err instanceof RwsplitPgError) throw libraryError(err);
    throw err;
  }
  const types = config.types ?? pg.types;
  const parsers = fields.map((f) => types.getTypeParser(f.dataTypeID, 'text') as (v: string) => unknown);
  const parse = (row: Value[]): unknown[] => row.map((v, i) => (v === null ? null : parsers[i]!(v)));
  const rows =
    (config as { rowMode?: string }).rowMode === 'array'
      ? merged.map(parse)
      : merged.map((row) => {
          const out: Record<string, unknown> = {};
          parse(row).forEach((v, i) => (out[fields[i]!.name] = v));
          return out;
        });
  return { command: described.command, rowCount: rows.length, oid: 0, fields, rows };
}

/**
 * One statement on each lease (a transaction's, one per shard), the results combined: the
 * first shard's for a replicated table or a schema change (every shard holds the same), else
 * the rows concatenated and the counts summed.
 */
export async function runOnEach(
  config: pg.QueryConfig,
  leases: readonly Lease[],
  replicated: boolean,
): Promise<pg.QueryResult> {
  const results = await Promise.all(leases.map((l) => l.client.query(config)));
  const first = results[0]!;
  if (replicated) return first;
  const rows = results.flatMap((r) => r.rows);
  const counts = results.map((r) => r.rowCount);
  const rowCount = counts.every((c) => c === null) ? null : counts.reduce<number>((a, c) => a + (c ?? 0), 0);
  return { ...first, rows, rowCount };
}

/** The participants of a two-phase commit: the open transaction on each lease. */
export function participants(leases: readonly Lease[], timeoutMs: number): Participant[] {
  return leases.map((l) => ({
    shard: l.node.spec.shard,
    // A participant that does not answer must not hold the COMMIT forever: past the deadline
    // node-postgres gives up on it, which the coordinator treats as a lost participant.
    exec: (sql: string) =>
      l.client.query({ text: sql, query_timeout: timeoutMs } as pg.QueryConfig).then((r) => r.command),
  }));
}

/**
 * Commits the transactions open on `leases` (one per shard) with the proxy's coordinator:
 * everywhere or nowhere. Throws the coordinator's error (nothing committed, or in doubt).
 */
export async function commitShards(router: PgRouter, leases: readonly Lease[]): Promise<void> {
  const sharding = router.sharding!.context;
  try {
    await sharding.coordinator.commit(participants(leases, sharding.statementTimeoutMs));
  } catch (err) {
    if (err instanceof RwsplitPgError) throw libraryError(err);
    throw err;
  }
}

/**
 * A schema change or keyless write on every shard's primary, autocommit, as the proxy runs it:
 * `atomic`: in one transaction per shard committed by two-phase commit; else on each shard in
 * turn (what PostgreSQL refuses in a transaction block). The commit positions raise `tokens`.
 */
export async function everyShard(
  router: PgRouter,
  config: pg.QueryConfig,
  atomic: boolean,
  replicated: boolean,
  tokens: (CausalToken | null)[],
): Promise<pg.QueryResult> {
  const shards = router.sharding!.context.resolver.shardNames;
  const leases: Lease[] = [];
  let failure: unknown;
  try {
    for (const shard of shards) leases.push(await router.leasePrimary(shard));
    let result: pg.QueryResult;
    if (!atomic) {
      const results: pg.QueryResult[] = [];
      for (const l of leases) results.push(await l.client.query(config));
      result = replicated ? results[0]! : combine(results);
    } else {
      await Promise.all(leases.map((l) => l.client.query('BEGIN')));
      const settled = await Promise.allSettled(leases.map((l) => l.client.query(config)));
      const refused = settled.find((s) => s.status === 'rejected');
      if (refused) {
        await Promise.all(leases.map((l) => l.client.query('ROLLBACK')));
        throw refused.reason;
      }
      const results = settled.map((s) => (s as PromiseFulfilledResult<pg.QueryResult>).value);
      await commitShards(router, leases);
      result = replicated ? results[0]! : combine(results);
    }
    if (tokens.some((t) => t !== null))
      await Promise.all(leases.map((l) => router.capture(l, tokens).catch(() => null)));
    return result;
  } catch (err) {
    failure = err;
    throw err;
  } finally {
    for (const l of leases)
      router.done(l, failure, failure !== undefined || l.client.getTransactionStatus() !== 'I');
  }
}

function combine(results: pg.QueryResult[]): pg.QueryResult {
  const first = results[0]!;
  const counts = results.map((r) => r.rowCount);
  const rowCount = counts.every((c) => c === null) ? null : counts.reduce<number>((a, c) => a + (c ?? 0), 0);
  return { ...first, rows: results.flatMap((r) => r.rows), rowCount };
}
