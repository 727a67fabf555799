/**
 * Statements with no shard key that still have a right place on a sharded endpoint (see
 * docs/CONFIG.md, "Statements without a shard key"):
 *
 * - schema changes (`CREATE`, `ALTER`, `DROP`, `COMMENT`, `GRANT`, `REVOKE`, `TRUNCATE`, …) run
 *   on every shard, in one two-phase transaction; those PostgreSQL refuses in a transaction
 *   block (`… CONCURRENTLY`, `VACUUM`, `CREATE DATABASE`, `ALTER SYSTEM`) run on each shard in
 *   turn;
 * - `UPDATE`/`DELETE` of a sharded table without its key, and writes of a reference table, run
 *   on every shard in one two-phase transaction;
 * - reads of a sharded table without its key run on every shard, merged (shard-merge.ts), also
 *   when it is a co-located join (sharded tables joined on their keys, see shard-rules.ts).
 *
 * @module
 */
import { lex, type Token } from '../classifier/lexer.js';
import { RwsplitPgError, SqlState } from '../errors.js';
import { mergeRefusal, planMerge, type MergePlan } from './shard-merge.js';
import { statementTable } from './shard-rules.js';
import type { ShardResolver } from './shard-resolver.js';

export type Keyless =
  /**
   * one statement run on every shard's primary; `atomic`: inside a two-phase transaction;
   * `replicated`: every shard holds the same rows (DDL, a reference table), so the client gets
   * one shard's rows and count rather than their sum
   */
  | { readonly kind: 'every-shard'; readonly atomic: boolean; readonly replicated: boolean }
  /** a read merged across shards */
  | { readonly kind: 'merge'; readonly plan: MergePlan }
  | { readonly kind: 'refused'; readonly error: RwsplitPgError };

const DDL = new Set([
  'create',
  'alter',
  'drop',
  'comment',
  'grant',
  'revoke',
  'truncate',
  'vacuum',
  'analyze',
  'analyse',
  'reindex',
  'cluster',
  'refresh',
  'security',
  'import',
]);

const word = (tokens: readonly Token[], i: number): string | undefined => {
  const t = tokens[i];
  return t?.kind === 'word' ? t.text : undefined;
};

/** PostgreSQL refuses these inside a transaction block, so they cannot be part of a two-phase commit. */
function outsideTransactionOnly(tokens: readonly Token[]): boolean {
  const first = word(tokens, 0);
  const second = word(tokens, 1);
  if (first === 'vacuum') return true;
  if ((first === 'create' || first === 'drop') && (second === 'database' || second === 'tablespace'))
    return true;
  if (first === 'alter' && second === 'system') return true;
  if (first === 'reindex' && (second === 'system' || second === 'database')) return true;
  return tokens.some((t, i) => t.depth === 0 && word(tokens, i) === 'concurrently');
}

/**
 * What to do with a one-statement text whose shard is unknown, or null when it has no place
 * here (the caller answers with the unknown-shard error).
 */
export function classifyKeyless(
  sql: string,
  resolver: ShardResolver,
  params?: readonly (string | null)[],
): Keyless | null {
  const { statements } = lex(sql);
  if (statements.length !== 1) return null;
  const tokens = statements[0]!;
  const first = word(tokens, 0);
  if (first === undefined) return null;
  if (DDL.has(first)) {
    // Temporary objects live in one server session: they keep their old handling.
    const second = word(tokens, 1);
    if (first === 'create' && (second === 'temp' || second === 'temporary')) return null;
    if (
      first === 'create' &&
      (second === 'local' || second === 'global') &&
      word(tokens, 2)?.startsWith('temp')
    )
      return null;
    return { kind: 'every-shard', atomic: !outsideTransactionOnly(tokens), replicated: true };
  }
  const table = statementTable(tokens);
  if (table === null) return null;
  const sharded = resolver.isSharded(table);
  const reference = resolver.isReference(table);
  if (!sharded && !reference) return null;
  const subquery = tokens.some((t, i) => i > 0 && word(tokens, i) === 'select');
  const joins = tokens.some(
    (t, i) =>
      t.depth === 0 &&
      (word(tokens, i) === 'using' ||
        word(tokens, i) === 'join' ||
        (first === 'update' && word(tokens, i) === 'from')),
  );
  if (first === 'update' || first === 'delete' || (first === 'insert' && reference)) {
    if (subquery || joins)
      return {
        kind: 'refused',
        error: new RwsplitPgError(
          'SHARD_WRITE_UNSUPPORTED',
          SqlState.FeatureNotSupported,
          'rwsplit: this write has no shard key, so it would run on every shard, but it reads other rows (a subquery, FROM or USING) that each shard holds only in part',
          'Give the shard with a /* rwsplit:shard=NAME */ or /* rwsplit:key=VALUE */ comment, or a WHERE on the shard key.',
        ),
      };
    return { kind: 'every-shard', atomic: true, replicated: reference };
  }
  if (first === 'select' && sharded) {
    const plan = planMerge(tokens, sql, params, resolver.placedJoins(tokens));
    return typeof plan === 'string'
      ? { kind: 'refused', error: mergeRefusal(plan) }
      : { kind: 'merge', plan };
  }
  return null;
}
