/**
 * Lexical statement classifier: decides, without a full parse, whether a query text may run on a replica,
 * whether it opens or closes a transaction, and whether it leaves session state behind. Results are
 * cached per exact text. Correctness is checked against the real PostgreSQL parser in differential.test.ts.
 *
 * ## Routes
 * `read`: `SELECT`/`VALUES`/`TABLE`/`WITH` without anything that writes, `SHOW`, `EXPLAIN` (without
 * `ANALYZE` of a write), `COPY table TO` and `COPY (read query) TO`, `FETCH`/`MOVE`/`CLOSE`,
 * `SAVEPOINT`/`RELEASE`/`ROLLBACK TO`, `COMMIT`/`ROLLBACK`, `BEGIN READ ONLY`, `SET ...`, `RESET`, `LOAD`,
 * `PREPARE name`, `DECLARE` over a read query. Everything else is a `write`, including statements the
 * classifier does not know (the safe default). A read becomes a write when it contains a data-modifying CTE,
 * `SELECT ... INTO`, a row-locking clause (`FOR UPDATE|NO KEY UPDATE|SHARE|KEY SHARE`) or a call of a
 * function in the write list (see write-functions.ts).
 *
 * ## Session pins (the documented list)
 * A pinned session keeps one primary backend to itself, because these statements leave state in the
 * backend that later statements rely on, and pooled backends are otherwise lent per transaction:
 * - `SET name ...`, `SET SESSION name ...`, `SET ROLE`, `SET SESSION AUTHORIZATION`,
 *   `SET SESSION CHARACTERISTICS AS TRANSACTION ...` (not `SET LOCAL`, `SET TRANSACTION`, `SET CONSTRAINTS`:
 *   they end with the transaction);
 * - `RESET name` / `RESET ALL`: the reset value is session state too, and deciding whether it equals a
 *   pooled backend's state is not worth the risk;
 * - `SELECT set_config(name, value, is_local)` unless `is_local` is the literal `true`;
 * - temporary objects: `CREATE [GLOBAL|LOCAL] TEMP|TEMPORARY TABLE|VIEW|SEQUENCE`, `CREATE ... pg_temp.x`,
 *   `SELECT ... INTO TEMP x`, `CREATE TEMP TABLE ... AS`;
 * - SQL `PREPARE name AS ...` (protocol-level prepared statements are the proxy's business);
 * - `LISTEN channel`;
 * - session-level advisory locks: `pg_advisory_lock`, `pg_advisory_lock_shared`, `pg_try_advisory_lock`,
 *   `pg_try_advisory_lock_shared` (the `_xact_` variants end with the transaction: only writes);
 * - `DECLARE ... CURSOR WITH HOLD`;
 * - `LOAD 'library'`;
 * - `pg_backup_start()`, `dblink_connect()`.
 * Not pins: `DISCARD`, `DEALLOCATE` (they remove state; `resetsPrepared` tells the proxy), `UNLISTEN`,
 * `EXECUTE`, `currval`/`lastval` (see write-functions.ts for why).
 *
 * ## Transaction control
 * `BEGIN`/`START TRANSACTION` route `write` (the transaction needs the primary) unless `READ ONLY` without
 * `SERIALIZABLE`: a hot standby refuses serializable isolation, so such a transaction is a plain `begin`.
 * `SET TRANSACTION READ ONLY` follows the same rule. `COMMIT AND CHAIN` is still `commit`.
 *
 * ## Known limits
 * Strings are lexed with `standard_conforming_strings = on`. Column or alias names that are also keywords
 * (`update`, `share`) or write-function names followed by `(` may turn a read into a write; never the
 * reverse for the constructs above.
 *
 * @module
 */
import { GenerationalCache } from './cache.js';
import { lex } from './lexer.js';
import { selectShape } from './literal-shape.js';
import type { RuleContext } from './query-rules.js';
import type { Route, TxAction } from './route-types.js';
import { classifyStatement } from './statement-rules.js';
import { DEFAULT_WRITE_FUNCTIONS } from './write-functions.js';

export { DEFAULT_WRITE_FUNCTIONS } from './write-functions.js';

export type { Route, TxAction } from './route-types.js';

/** The classification of a whole query text. */
export interface Classification {
  route: Route;
  tx: TxAction;
  /** Non-null: this text creates session state; the session must be pinned to the primary. A short reason. */
  pin: string | null;
  /** `/* rwsplit:primary *\/` or `/* rwsplit:replica *\/` in any comment (block or `--`); null if none. */
  hint: 'primary' | 'replica' | null;
  /** DISCARD ALL / DISCARD PLANS / DEALLOCATE: the proxy must forget its prepared statements on that backend. */
  resetsPrepared: boolean;
  /** Number of top-level statements in the text; 0 for empty. */
  statementCount: number;
}

/** Options of a {@link Classifier}. */
export interface ClassifierOptions {
  /** Functions that make a SELECT a write (lower-case names, schema prefix ignored); default DEFAULT_WRITE_FUNCTIONS. */
  writeFunctions?: readonly string[];
  /** Maximum number of cached texts; default 10,000. 0 disables the cache. */
  cacheSize?: number;
}

/** Texts longer than this (UTF-16 code units, 64 Ki) are classified but not cached. */
export const MAX_CACHED_TEXT_LENGTH = 64 * 1024;

/** Total length of all cached texts; with the entry bound this caps the cache at a few tens of MiB. */
const MAX_CACHED_CHARS = 16 * 1024 * 1024;

const DEFAULT_CACHE_SIZE = 10_000;

/** Classifies SQL texts, caching results per exact text. */
export class Classifier {
  private readonly cache: GenerationalCache<Classification>;
  private readonly ctx: RuleContext;

  constructor(opts: ClassifierOptions = {}) {
    const names = opts.writeFunctions ?? DEFAULT_WRITE_FUNCTIONS;
    this.ctx = { writeFunctions: new Set(names.map((name) => name.toLowerCase())) };
    this.cache = new GenerationalCache(opts.cacheSize ?? DEFAULT_CACHE_SIZE, MAX_CACHED_CHARS);
  }

  /**
   * Classifies `sql`; a repeated text returns the cached (frozen) result, and so does a SELECT
   * that differs from a cached one only in its numeric literals (literal-shape.ts).
   */
  classify(sql: string): Classification {
    if (sql.length > MAX_CACHED_TEXT_LENGTH) return classifyText(sql, this.ctx);
    const cached = this.cache.get(sql);
    if (cached !== undefined) return cached;
    const shape = selectShape(sql);
    if (shape === null) {
      const result = classifyText(sql, this.ctx);
      this.cache.set(sql, result);
      return result;
    }
    // The text is cached too, so a repeat of it (a health check's `SELECT 1`) is one lookup.
    let result = this.cache.get(shape);
    if (result === undefined) {
      result = classifyText(shape, this.ctx);
      this.cache.set(shape, result);
    }
    this.cache.set(sql, result);
    return result;
  }
}

/**
 * Classifies a whole text: a write if any statement writes, the first pin reason, the first tx action,
 * `resetsPrepared` if any statement resets.
 */
function classifyText(sql: string, ctx: RuleContext): Classification {
  const { statements, hint } = lex(sql);
  let route: Route = 'read';
  let tx: TxAction = null;
  let pin: string | null = null;
  let resetsPrepared = false;
  for (const tokens of statements) {
    const v = classifyStatement(tokens, 0, tokens.length, ctx);
    if (v.route === 'write') route = 'write';
    tx ??= v.tx;
    pin ??= v.pin;
    resetsPrepared ||= v.resetsPrepared;
  }
  return Object.freeze({ route, tx, pin, hint, resetsPrepared, statementCount: statements.length });
}
