/**
 * Which PostgreSQL shard a statement belongs to. Pure logic: the
 * session asks per statement, with the statement's text and, for the extended protocol, its
 * bound parameters in text form.
 *
 * Order of precedence:
 * 1. hints in comments: `/* rwsplit:shard=NAME *\/`, `/* rwsplit:key=VALUE *\/`,
 *    `/* rwsplit:all-shards *\/` (see shard-hints.ts). Hints that disagree are an error, never
 *    a choice between them;
 * 2. table rules (`postgres.sharding.tables`) for simple statements (see shard-rules.ts);
 * 3. `postgres.sharding.defaultShard`, when set;
 * 4. a statement that reads no user table (`SELECT 1`, `SELECT version()`, `SHOW …`, catalog
 *    reads; see `touchesNoTable`) is `anywhere`: the session runs it on any shard;
 * 5. otherwise `unknown`: the session answers with {@link unknownShardError}.
 *
 * A key's shard is the configured ring's choice (src/sharding/ring.ts, the shard names as the
 * ring's servers, weight 1 each) for the UTF-8 bytes of the key's text: the literal as written
 * (`42`, or the content of `'42'`), a parameter's text as bound, a hint's value as written.
 * What the text parses to is never used: `42` and `042` are different keys.
 *
 * Per text, the work that does not depend on parameters (comments, tokens, rules, hint keys'
 * shards) is done once and cached.
 *
 * @module
 */
import { GenerationalCache } from '../classifier/cache.js';
import { lex, type Token } from '../classifier/lexer.js';
import { RwsplitPgError, SqlState } from '../errors.js';
import { findShardHints, type ShardHints } from './shard-hints.js';
import {
  parseIdentifierChain,
  tableKey,
  TableRuleError,
  TableRules,
  touchesNoTable,
  type KeyRef,
  type TableRule,
} from './shard-rules.js';
import { createRing, type Ring, type RingKind } from '../../sharding/ring.js';
import type { KeyHashName } from '../../sharding/hash-functions.js';

export { TableRuleError };

/** How a shard was chosen. */
export type ShardVia = 'hint-shard' | 'hint-key' | 'table-rule' | 'default';

/** The answer of {@link ShardResolver.resolve}. */
export type ShardResolution =
  | { readonly kind: 'shard'; readonly shard: string; readonly via: ShardVia }
  /** `/* rwsplit:all-shards *\/`: run on every shard and merge the rows. */
  | { readonly kind: 'all-shards' }
  /** Reads no user table: any shard gives the answer ({@link ShardResolver.anyShard}). */
  | { readonly kind: 'anywhere' }
  /** No hint, no rule, no default shard: send {@link unknownShardError}. */
  | { readonly kind: 'unknown' }
  /** A hint that cannot be followed (an unknown shard name, hints that disagree): send `error`. */
  | { readonly kind: 'error'; readonly error: RwsplitPgError };

/** The part of `postgres.sharding` the resolver uses (the schema's shape, defaults filled in). */
export interface ShardingRules {
  hash: { distribution: RingKind; function: KeyHashName };
  defaultShard?: string | undefined;
  tables: readonly TableRule[];
  /** tables every shard holds in full: read from any shard, written on all */
  referenceTables?: readonly string[] | undefined;
}

/** Options of a {@link ShardResolver}. */
export interface ShardResolverOptions {
  /** Maximum number of cached texts; default 10,000. 0 disables the cache. */
  cacheSize?: number;
}

/** What a text says, parameters aside. */
type Plan =
  | { readonly kind: 'done'; readonly result: ShardResolution }
  /** keys still to place: literals already as shard indexes, parameters by index */
  | { readonly kind: 'keys'; readonly shards: readonly number[]; readonly params: readonly number[] }
  | { readonly kind: 'unknown' };

/** Texts longer than this are resolved but not cached (as the classifier does). */
const MAX_CACHED_TEXT_LENGTH = 64 * 1024;
const MAX_CACHED_CHARS = 8 * 1024 * 1024;
const MAX_CACHED_KEY_CHARS = 1024 * 1024;
const DEFAULT_CACHE_SIZE = 10_000;

const UNKNOWN: ShardResolution = Object.freeze({ kind: 'unknown' });
const ALL_SHARDS: ShardResolution = Object.freeze({ kind: 'all-shards' });
const ANYWHERE: ShardResolution = Object.freeze({ kind: 'anywhere' });
const UNKNOWN_PLAN: Plan = Object.freeze({ kind: 'unknown' });

/** Maps statements and keys to shards. Build one per configuration (it caches per text). */
export class ShardResolver {
  /** Shard names, in config order (the ring's servers). */
  readonly shardNames: readonly string[];
  /** `postgres.sharding.defaultShard`, if set. */
  readonly defaultShard: string | undefined;
  private readonly ring: Ring;
  private readonly rules: TableRules;
  private readonly cache: GenerationalCache<Plan>;
  /** key text → shard index: a ring lookup hashes the key (about 1 µs), a hit costs a map lookup */
  private readonly keyCache: GenerationalCache<number>;
  /** per shard index: the frozen results, so a hot path allocates nothing */
  private readonly results: Record<ShardVia, ShardResolution>[];
  private readonly fallback: ShardResolution;
  /** normalised names of the reference tables */
  private readonly references: Set<string>;
  readonly isReference = (parts: readonly string[]): boolean => this.references.has(tableKey(parts));
  /** round-robin position of {@link anyShard} */
  private nextAny = 0;

  /**
   * @param shardNames the distinct shard names of `postgres.nodes`, in config order
   * @throws ShardingError for a ring that cannot be built, TableRuleError for a bad table rule,
   *   Error for a default shard that is not a shard
   */
  constructor(shardNames: readonly string[], sharding: ShardingRules, opts: ShardResolverOptions = {}) {
    this.shardNames = Object.freeze([...shardNames]);
    this.ring = createRing(
      sharding.hash.distribution,
      shardNames.map((name) => ({ name, weight: 1 })),
      { hash: sharding.hash.function },
    );
    this.rules = new TableRules(sharding.tables, (parts) => this.references.has(tableKey(parts)));
    this.references = new Set();
    for (const [i, name] of (sharding.referenceTables ?? []).entries()) {
      const parts = parseIdentifierChain(name);
      if (parts === null || parts.length > 3)
        throw new TableRuleError(
          `postgres.sharding.referenceTables.${i}: '${name}' is not a table name like countries or app.countries`,
        );
      if (this.rules.covers(parts))
        throw new TableRuleError(
          `postgres.sharding.referenceTables.${i}: '${name}' also has a rule in postgres.sharding.tables`,
        );
      this.references.add(tableKey(parts));
    }
    this.cache = new GenerationalCache(opts.cacheSize ?? DEFAULT_CACHE_SIZE, MAX_CACHED_CHARS);
    this.keyCache = new GenerationalCache(opts.cacheSize ?? DEFAULT_CACHE_SIZE, MAX_CACHED_KEY_CHARS);
    this.results = shardNames.map((shard) => {
      const at = (via: ShardVia): ShardResolution => Object.freeze({ kind: 'shard', shard, via });
      return {
        'hint-shard': at('hint-shard'),
        'hint-key': at('hint-key'),
        'table-rule': at('table-rule'),
        default: at('default'),
      };
    });
    this.defaultShard = sharding.defaultShard;
    if (this.defaultShard === undefined) {
      this.fallback = UNKNOWN;
    } else {
      const index = shardNames.indexOf(this.defaultShard);
      const result = this.results[index]?.default;
      if (result === undefined) {
        throw new Error(
          `postgres.sharding.defaultShard: '${this.defaultShard}' is not a shard (${this.list()})`,
        );
      }
      this.fallback = result;
    }
  }

  /** The shard that owns `key` (its text, hashed as UTF-8 by the configured ring). */
  shardForKey(key: string): string {
    return this.shardNames[this.indexForKey(key)] ?? '';
  }

  /** A shard for a statement that may run on any (round-robin, so such reads spread). */
  anyShard(): string {
    const i = this.nextAny;
    this.nextAny = (i + 1) % this.shardNames.length;
    return this.shardNames[i] ?? '';
  }

  /**
   * The shard of one query text (a simple Query, or a Parse's text with the Bind's parameters
   * in text form; `null` is SQL NULL). See the module comment for the rules.
   */
  resolve(sql: string, params?: readonly (string | null)[]): ShardResolution {
    const plan = this.plan(sql);
    if (plan.kind === 'done') {
      const r = plan.result;
      // With a default shard, statements the text does not place all go there, tableless too.
      if (r.kind === 'unknown' || (r.kind === 'anywhere' && this.defaultShard !== undefined))
        return this.fallback;
      return r;
    }
    if (plan.kind === 'unknown') return this.fallback;
    let index = plan.shards[0] ?? -1;
    for (const p of plan.params) {
      const value = params?.[p];
      if (value === undefined || value === null) return this.fallback;
      const at = this.indexForKey(value);
      if (index >= 0 && at !== index) return this.fallback; // rows or conditions on different shards
      index = at;
    }
    return this.results[index]?.['table-rule'] ?? this.fallback;
  }

  /** Whether a rule covers the table (name parts, normalised). */
  isSharded(parts: readonly string[]): boolean {
    return this.rules.covers(parts);
  }

  /** Whether a SELECT is a co-located join: sharded tables joined on their keys (and reference tables). */
  placedJoins(tokens: readonly Token[]): boolean {
    return this.rules.placedJoins(tokens);
  }

  /** The shard key column (normalised) of a sharded table, or null. */
  keyColumn(parts: readonly string[]): string | null {
    return this.rules.columnOf(parts);
  }

  /**
   * The error a statement gets when its shard cannot be determined: it names the three ways
   * to give one and the default-shard setting.
   */
  unknownShardError(): RwsplitPgError {
    return unknownShardError(this.shardNames);
  }

  private indexForKey(key: string): number {
    if (this.shardNames.length === 1) return 0;
    let index = this.keyCache.get(key);
    if (index === undefined) {
      index = this.ring.locate(Buffer.from(key, 'utf8'));
      this.keyCache.set(key, index);
    }
    return index;
  }

  private list(): string {
    return `configured shards: ${this.shardNames.join(', ')}`;
  }

  private plan(sql: string): Plan {
    if (sql.length > MAX_CACHED_TEXT_LENGTH) return this.makePlan(sql);
    let plan = this.cache.get(sql);
    if (plan === undefined) {
      plan = this.makePlan(sql);
      this.cache.set(sql, plan);
    }
    return plan;
  }

  private makePlan(sql: string): Plan {
    const hints = findShardHints(sql);
    if (hints !== null) return { kind: 'done', result: this.followHints(hints) };
    const statements = lex(sql).statements;
    if (statements.length > 0 && statements.every((t) => touchesNoTable(t, this.isReference)))
      return { kind: 'done', result: ANYWHERE };
    if (this.rules.size === 0) return UNKNOWN_PLAN;
    const shards = new Set<number>();
    const params: number[] = [];
    let found = false;
    for (const tokens of statements) {
      const keys = this.rules.statementKeys(tokens);
      if (keys === null) return UNKNOWN_PLAN;
      if (keys === 'neutral') continue;
      found = true;
      for (const key of keys) addKey(key, shards, params, (text) => this.indexForKey(text));
    }
    if (!found || shards.size > 1) return UNKNOWN_PLAN;
    const [literal] = shards;
    if (params.length === 0 && literal !== undefined) {
      return { kind: 'done', result: this.results[literal]?.['table-rule'] ?? UNKNOWN };
    }
    return Object.freeze({ kind: 'keys', shards: [...shards], params: [...new Set(params)] });
  }

  /** One resolution from every hint of a text, or an error when they disagree. */
  private followHints(hints: ShardHints): ShardResolution {
    const chosen = new Set<number>();
    for (const name of hints.shards) {
      const index = this.shardNames.indexOf(name);
      if (index < 0) {
        return hintError(
          name === ''
            ? 'the /* rwsplit:shard=… */ hint names no shard'
            : `the /* rwsplit:shard=${name} */ hint names an unknown shard`,
          `Use one of the ${this.list()}.`,
        );
      }
      chosen.add(index);
    }
    for (const key of hints.keys) {
      if (key === '')
        return hintError('the /* rwsplit:key=… */ hint has an empty key', 'Write the key after "=".');
      chosen.add(this.indexForKey(key));
    }
    if (hints.allShards && chosen.size > 0) {
      return hintError(
        'the /* rwsplit:all-shards */ hint contradicts a shard or key hint in the same statement',
        'Keep either the all-shards hint or the shard/key hints.',
      );
    }
    if (hints.allShards) return ALL_SHARDS;
    if (chosen.size > 1) {
      const names = [...chosen].map((i) => this.shardNames[i]).join(', ');
      return hintError(
        `the shard and key hints of this statement point to different shards (${names})`,
        'Keep one shard.',
      );
    }
    const [index] = chosen;
    const via: ShardVia = hints.shards.length > 0 ? 'hint-shard' : 'hint-key';
    return this.results[index ?? -1]?.[via] ?? UNKNOWN;
  }
}

function addKey(key: KeyRef, shards: Set<number>, params: number[], locate: (text: string) => number): void {
  if (key.kind === 'literal') shards.add(locate(key.text));
  else params.push(key.index);
}

function hintError(message: string, hint: string): ShardResolution {
  return Object.freeze({
    kind: 'error',
    error: new RwsplitPgError(
      'SHARD_HINT_INVALID',
      SqlState.InvalidParameterValue,
      `rwsplit: ${message}`,
      hint,
    ),
  });
}

/**
 * The error for a statement whose shard is unknown (SQLSTATE 0A000, feature_not_supported:
 * the proxy cannot run it as written), naming the three ways to give a shard and the
 * default-shard setting.
 */
export function unknownShardError(shardNames: readonly string[]): RwsplitPgError {
  return new RwsplitPgError(
    'SHARD_UNKNOWN',
    SqlState.FeatureNotSupported,
    'rwsplit: cannot tell which shard this statement belongs to',
    'Give the shard with a /* rwsplit:shard=NAME */ or /* rwsplit:key=VALUE */ comment in the statement, ' +
      "with SET rwsplit.shard_key = '…' (until RESET), or with a rule for its table in " +
      'postgres.sharding.tables (table and key column; the key a literal or $n parameter in a simple ' +
      'INSERT, UPDATE, DELETE or SELECT); or set postgres.sharding.defaultShard to send such statements ' +
      `to one shard. Shards: ${shardNames.join(', ')}.`,
  );
}
