/**
 * Table rules (`postgres.sharding.tables`: `table → column`): the shard keys of a simple
 * statement on a sharded table, read from the classifier lexer's tokens. Recognised forms:
 *
 * - `INSERT INTO t [AS a] (…, col, …) VALUES (…, X, …)[, (…)]* [ON CONFLICT …] [RETURNING …]`
 * - `UPDATE [ONLY] t [[AS] a] SET … WHERE … col = X …`
 * - `DELETE FROM [ONLY] t [[AS] a] WHERE … col = X …`
 * - `SELECT … FROM [ONLY] t [[AS] a] WHERE … col = X …` (then GROUP BY, ORDER BY, LIMIT, FOR UPDATE… may follow)
 *
 * X is a number, a `'string'` or a parameter `$n`, optionally cast (`$1::bigint`); `col` may be
 * qualified by the table or its alias; `X = col` works too. A SELECT may INNER/LEFT JOIN reference
 * tables, and sharded tables on their keys (`JOIN b ON b.kb = a.ka`, a co-located join: the key
 * of either places it). The condition must be a
 * conjunction at the top level: an `OR` there, another join (`,`, `USING`, `UPDATE … FROM`),
 * a subquery anywhere, `WITH`, set operations (`UNION`…) make the statement unknown: a rule
 * never guesses. The key is the value's text as written or as bound (`42` and `'42'` are the
 * same key; `042` is another).
 *
 * @module
 */
import { lex, type Token } from '../classifier/lexer.js';
import { AFTER_INTO_TARGET } from '../classifier/query-rules.js';

/** Where a statement's shard key comes from. */
export type KeyRef =
  /** A literal in the text: its shard is known from the text alone. */
  | { readonly kind: 'literal'; readonly text: string }
  /** A parameter `$n`: `index` is n - 1. */
  | { readonly kind: 'param'; readonly index: number };

/** What a statement says about its shard: its keys (one per row or condition), `neutral`, or `null` (unknown). */
export type StatementKeys = readonly KeyRef[] | 'neutral' | null;

/** One `postgres.sharding.tables` entry. */
export interface TableRule {
  readonly table: string;
  readonly column: string;
}

/** A table rule that cannot be used; the message names the entry. */
export class TableRuleError extends Error {
  readonly code = 'SHARD_TABLE_RULE_INVALID';
}

/** Transaction control belongs to no shard; it neither helps nor spoils a multi-statement text. */
const NEUTRAL = new Set(['begin', 'start', 'commit', 'end', 'rollback', 'abort', 'savepoint', 'release']);

/** Keywords ending a WHERE clause at the top level. */
const WHERE_END = new Set([
  'returning',
  'group',
  'order',
  'limit',
  'offset',
  'for',
  'having',
  'window',
  'fetch',
]);
const SET_OPERATIONS = new Set(['union', 'intersect', 'except']);
/** Words that start a join clause. */
const JOIN_START = new Set(['join', 'inner', 'left', 'right', 'full', 'cross', 'natural']);

const PLAIN_NUMBER = /^\d+(\.\d+)?$/;

/** Identifier parts joined with a character no identifier written in SQL holds unquoted. */
const joinParts = (parts: readonly string[]): string => parts.join('\u0000');

/** The table rules of a sharding config, compiled for lookups by normalised table name. */
export class TableRules {
  /** normalised table name → normalised column name */
  private readonly columns = new Map<string, string>();

  /**
   * @param isReference whether a table (name parts, normalised) is a reference table: a read
   *   of a sharded table by its key may join those, which every shard holds in full
   * @throws TableRuleError for a name that is not an identifier chain, or a table listed twice.
   */
  constructor(
    rules: readonly TableRule[],
    private readonly isReference: (parts: readonly string[]) => boolean = () => false,
  ) {
    for (const [i, rule] of rules.entries()) {
      const table = parseIdentifierChain(rule.table);
      const column = parseIdentifierChain(rule.column);
      const where = `postgres.sharding.tables.${i}`;
      if (table === null || table.length > 3) {
        throw new TableRuleError(
          `${where}.table: '${rule.table}' is not a table name like accounts or app.accounts`,
        );
      }
      if (column?.length !== 1) {
        throw new TableRuleError(`${where}.column: '${rule.column}' is not a column name`);
      }
      const key = joinParts(table);
      if (this.columns.has(key)) throw new TableRuleError(`${where}.table: '${rule.table}' is listed twice`);
      this.columns.set(key, column[0] ?? '');
    }
  }

  /** Number of rules. */
  get size(): number {
    return this.columns.size;
  }

  /** The shard keys of one statement (tokens of the classifier lexer). */
  statementKeys(tokens: readonly Token[]): StatementKeys {
    const first = wordAt(tokens, 0);
    if (first === undefined) return null;
    if (NEUTRAL.has(first)) return 'neutral';
    if (this.columns.size === 0 || hasSubquery(tokens)) return null;
    switch (first) {
      case 'insert':
        return this.insertKeys(tokens);
      case 'update':
        return this.updateKeys(tokens);
      case 'delete':
        return this.deleteKeys(tokens);
      case 'select':
        return this.selectKeys(tokens);
      default:
        return null;
    }
  }

  private insertKeys(tokens: readonly Token[]): StatementKeys {
    if (wordAt(tokens, 1) !== 'into') return null;
    const target = this.target(tokens, 2);
    if (target === null) return null;
    let i = target.next;
    if (wordAt(tokens, i) === 'as' && identAt(tokens, i + 1) !== undefined) i += 2;
    const columns = parenItems(tokens, i);
    if (columns === null) return null;
    let position = -1;
    for (const [n, [from, to]] of columns.items.entries()) {
      if (to !== from + 1 || identAt(tokens, from) === undefined) return null; // `col[1]`, `col.field`
      if (identAt(tokens, from) === target.column) position = n;
    }
    if (position < 0 || wordAt(tokens, columns.next) !== 'values') return null;
    return rowKeys(tokens, columns.next + 1, columns.items.length, position);
  }

  private updateKeys(tokens: readonly Token[]): StatementKeys {
    const target = this.target(tokens, wordAt(tokens, 1) === 'only' ? 2 : 1);
    if (target === null) return null;
    const set = aliasThen(tokens, target.next, 'set');
    if (set === null) return null;
    for (let i = set.next; i < tokens.length; i++) {
      if (tokens[i]?.depth !== 0) continue;
      const w = wordAt(tokens, i);
      if (w === 'from') return null; // UPDATE … FROM: a join
      if (w === 'where') return whereKeys(tokens, i + 1, { ...target, alias: set.alias });
    }
    return null;
  }

  private deleteKeys(tokens: readonly Token[]): StatementKeys {
    if (wordAt(tokens, 1) !== 'from') return null;
    const target = this.target(tokens, wordAt(tokens, 2) === 'only' ? 3 : 2);
    if (target === null) return null;
    const where = aliasThen(tokens, target.next, 'where');
    return where === null ? null : whereKeys(tokens, where.next, { ...target, alias: where.alias });
  }

  private selectKeys(tokens: readonly Token[]): StatementKeys {
    let from = -1;
    for (let i = 1; i < tokens.length && from < 0; i++) {
      if (tokens[i]?.depth !== 0) continue;
      const w = wordAt(tokens, i);
      if (w === 'into') return null; // SELECT … INTO creates a table
      if (w === 'from') from = i;
    }
    if (from < 0) return null;
    const target = this.target(tokens, wordAt(tokens, from + 1) === 'only' ? from + 2 : from + 1);
    if (target === null) return null;
    const where = aliasThen(tokens, target.next, 'where');
    if (where !== null) return whereKeys(tokens, where.next, { ...target, alias: where.alias });
    const joined = this.joins(tokens, target);
    if (joined === null || joined.where < 0) return null;
    // A key term on any of the joined sharded tables places the statement (they agree or it is unknown).
    const keys: KeyRef[] = [];
    for (const t of joined.targets) {
      const found = whereKeys(tokens, joined.where, t);
      if (Array.isArray(found)) keys.push(...(found as readonly KeyRef[]));
    }
    return keys.length > 0 ? keys : null;
  }

  /**
   * `[[AS] alias] {[INNER | LEFT [OUTER]] JOIN table [[AS] alias] ON …}` at the target's end,
   * then WHERE or the end of the FROM clause: joins that keep every result row on one shard. A
   * reference table (every shard holds it in full) may be joined on anything; a sharded table
   * only when its ON is an AND chain with a term `x.ka = y.kb` equating its key column with the
   * key column of a sharded table before it (a co-located join): rows with equal keys hash to
   * the same shard. The sharded tables (aliases set) and the index after WHERE (or -1: none),
   * or null for anything else.
   */
  private joins(tokens: readonly Token[], target: Target): { targets: Target[]; where: number } | null {
    let i = target.next;
    const first = { ...target };
    const asWord = wordAt(tokens, i) === 'as' ? 1 : 0;
    if (!JOIN_START.has(wordAt(tokens, i + asWord) ?? '')) {
      first.alias = identAt(tokens, i + asWord);
      if (first.alias === undefined) return null;
      i += asWord + 1;
    }
    const targets = [first];
    /** the end of the FROM clause: the statement's end, WHERE, or a clause after it (not `t.order`, a column) */
    const ends = (j: number): boolean => {
      const w = tokens[j]?.depth === 0 && !punctAt(tokens, j - 1, '.') ? wordAt(tokens, j) : undefined;
      return j >= tokens.length || w === 'where' || (w !== undefined && WHERE_END.has(w));
    };
    for (let joins = 0; ; joins++) {
      const w = wordAt(tokens, i);
      if (ends(i)) return joins > 0 ? { targets, where: w === 'where' ? i + 1 : -1 } : null;
      if (w === 'inner') i++;
      else if (w === 'left') i += wordAt(tokens, i + 1) === 'outer' ? 2 : 1;
      if (wordAt(tokens, i) !== 'join') return null;
      const name = readName(tokens, i + 1);
      if (name === null) return null;
      const joined = this.target(tokens, i + 1);
      if (joined === null && !this.isReference(name.parts)) return null;
      const on = aliasThen(tokens, name.next, 'on');
      if (on === null) return null;
      i = on.next;
      for (; i < tokens.length; i++) {
        const w = tokens[i]?.depth === 0 ? wordAt(tokens, i) : undefined;
        if (ends(i) || (w !== undefined && JOIN_START.has(w))) break;
        if (w === 'using' || punctAt(tokens, i, ',')) return null;
      }
      if (joined !== null) {
        joined.alias = on.alias;
        if (!targets.some((t) => keysEquated(tokens, on.next, i, t, joined))) return null;
        targets.push(joined);
      }
    }
  }

  /**
   * Whether a SELECT is a co-located join: a sharded table joined with at least one sharded
   * table on their keys, and otherwise only reference tables (see `joins`). Run on every shard,
   * the union of the shards' rows is the answer one server holding all rows would give, so such
   * a read without a key may be merged.
   */
  placedJoins(tokens: readonly Token[]): boolean {
    if (wordAt(tokens, 0) !== 'select' || hasSubquery(tokens)) return false;
    let from = -1;
    for (let i = 1; i < tokens.length && from < 0; i++)
      if (tokens[i]?.depth === 0 && wordAt(tokens, i) === 'from') from = i;
    const target =
      from < 0 ? null : this.target(tokens, wordAt(tokens, from + 1) === 'only' ? from + 2 : from + 1);
    // Joins of reference tables alone stay refused without a key, as before this rule.
    return target !== null && (this.joins(tokens, target)?.targets.length ?? 0) > 1;
  }

  /** Whether a rule covers the table (its name parts, normalised). */
  covers(parts: readonly string[]): boolean {
    return this.columns.has(joinParts(parts));
  }

  /** The key column (normalised) of a table a rule covers, or null. */
  columnOf(parts: readonly string[]): string | null {
    return this.columns.get(joinParts(parts)) ?? null;
  }

  /** The table named at `i` if a rule covers it, with its key column. */
  private target(tokens: readonly Token[], i: number): Target | null {
    const name = readName(tokens, i);
    if (name === null) return null;
    const column = this.columns.get(joinParts(name.parts));
    if (column === undefined) return null;
    return { column, table: name.parts[name.parts.length - 1] ?? '', alias: undefined, next: name.next };
  }
}

/** The rule's table as a statement names it. */
interface Target {
  column: string;
  /** last part of the table name: what an unaliased column qualifier is */
  table: string;
  alias: string | undefined;
  next: number;
}

/** Parses `accounts`, `app.accounts`, `"Mixed Case"`: the parts, normalised as the server would; null if not a name. */
export function parseIdentifierChain(text: string): string[] | null {
  const { statements } = lex(text);
  const tokens = statements[0];
  if (statements.length !== 1 || tokens === undefined) return null;
  const name = readName(tokens, 0);
  return name !== null && name.next === tokens.length ? name.parts : null;
}

/** First words of statements that only compute or read (no table unless after FROM/JOIN). */
const TABLELESS_FIRST = new Set(['select', 'show', 'values']);

/**
 * True when a statement reads no user table: a SELECT, SHOW or VALUES whose every FROM and
 * JOIN names a system catalog (`pg_*`, `pg_catalog.…`, `information_schema.…`). Such a
 * statement (`SELECT 1`, `SELECT version()`, `SHOW server_version`, a driver's catalog query)
 * gives the same answer on every shard, catalogs aside, which are each shard's own.
 * Conservative: any other FROM (a table, a function, `extract(… FROM …)`) answers false.
 */
export function touchesNoTable(
  tokens: readonly Token[],
  isReference?: (parts: readonly string[]) => boolean,
): boolean {
  const first = wordAt(tokens, 0);
  if (first === undefined || !TABLELESS_FIRST.has(first)) return false;
  /** depth of the FROM list being read (items separated by commas), or -1 */
  let fromDepth = -1;
  for (let i = 1; i < tokens.length; i++) {
    const t = tokens[i]!;
    const w = wordAt(tokens, i);
    if (w === 'into') return false; // SELECT … INTO creates a table
    if (w === 'from' || w === 'join') {
      if (!catalogAt(tokens, i + 1) && !referenceAt(tokens, i + 1, isReference)) return false;
      fromDepth = t.depth;
    } else if (fromDepth >= 0 && t.depth === fromDepth) {
      if (
        t.kind === 'punct' &&
        t.text === ',' &&
        !catalogAt(tokens, i + 1) &&
        !referenceAt(tokens, i + 1, isReference)
      )
        return false;
      if (w !== undefined && FROM_LIST_END.has(w)) fromDepth = -1;
    } else if (t.depth < fromDepth) fromDepth = -1;
  }
  return true;
}

/** Words that end a FROM list: the clauses that may follow it, and a JOIN's condition. */
const FROM_LIST_END: ReadonlySet<string> = new Set([...AFTER_INTO_TARGET, 'on', 'using']);

/** A reference table's name at `i` (`postgres.sharding.referenceTables`): every shard holds all its rows. */
function referenceAt(
  tokens: readonly Token[],
  i: number,
  isReference: ((parts: readonly string[]) => boolean) | undefined,
): boolean {
  if (isReference === undefined) return false;
  const name = readName(tokens, i);
  return name !== null && isReference(name.parts);
}

/** The table a statement writes (INSERT INTO, UPDATE, DELETE FROM) or first reads (SELECT … FROM), as name parts. */
export function statementTable(tokens: readonly Token[]): string[] | null {
  const first = wordAt(tokens, 0);
  let at = -1;
  if (first === 'insert' && wordAt(tokens, 1) === 'into') at = 2;
  else if (first === 'update') at = wordAt(tokens, 1) === 'only' ? 2 : 1;
  else if (first === 'delete' && wordAt(tokens, 1) === 'from') at = wordAt(tokens, 2) === 'only' ? 3 : 2;
  else if (first === 'select') {
    for (let i = 1; i < tokens.length && at < 0; i++)
      if (tokens[i]?.depth === 0 && wordAt(tokens, i) === 'from')
        at = wordAt(tokens, i + 1) === 'only' ? i + 2 : i + 1;
  }
  return at < 0 ? null : (readName(tokens, at)?.parts ?? null);
}

/** Joins name parts the way table rules key them. */
export const tableKey = joinParts;

/** A system catalog's name at `i`: `pg_…`, or `pg_catalog.…` / `information_schema.…`. */
function catalogAt(tokens: readonly Token[], i: number): boolean {
  const name = identAt(tokens, i);
  if (name === undefined) return false;
  if (punctAt(tokens, i + 1, '.')) return name === 'pg_catalog' || name === 'information_schema';
  return name.startsWith('pg_');
}

function wordAt(tokens: readonly Token[], i: number): string | undefined {
  const t = tokens[i];
  return t?.kind === 'word' ? t.text : undefined;
}

/** An identifier's normalised text: an unquoted word (already lower-cased) or a quoted identifier. */
function identAt(tokens: readonly Token[], i: number): string | undefined {
  const t = tokens[i];
  return t?.kind === 'word' || t?.kind === 'qident' ? t.text : undefined;
}

function punctAt(tokens: readonly Token[], i: number, ch: string): boolean {
  const t = tokens[i];
  return t?.kind === 'punct' && t.text === ch;
}

/** `ident [. ident]*` at `i`. */
function readName(tokens: readonly Token[], i: number): { parts: string[]; next: number } | null {
  const first = identAt(tokens, i);
  if (first === undefined) return null;
  const parts = [first];
  let next = i + 1;
  while (punctAt(tokens, next, '.')) {
    const part = identAt(tokens, next + 1);
    if (part === undefined) return null;
    parts.push(part);
    next += 2;
  }
  return { parts, next };
}

/** A subquery anywhere (`SELECT` after the first token) reads rows a table rule knows nothing about. */
function hasSubquery(tokens: readonly Token[]): boolean {
  for (let i = 1; i < tokens.length; i++) if (wordAt(tokens, i) === 'select') return true;
  return false;
}

/** `[[AS] alias] keyword` at `i`: the alias if any, and the index after the keyword. */
function aliasThen(
  tokens: readonly Token[],
  i: number,
  keyword: string,
): { alias: string | undefined; next: number } | null {
  if (wordAt(tokens, i) === keyword) return { alias: undefined, next: i + 1 };
  const asWord = wordAt(tokens, i) === 'as' ? 1 : 0;
  const alias = identAt(tokens, i + asWord);
  if (alias === undefined || wordAt(tokens, i + asWord + 1) !== keyword) return null;
  return { alias, next: i + asWord + 2 };
}

/** The comma-separated items of the parenthesised list opening at `i`, as [from, to) ranges. */
function parenItems(tokens: readonly Token[], i: number): { items: [number, number][]; next: number } | null {
  if (!punctAt(tokens, i, '(')) return null;
  const depth = tokens[i]?.depth ?? 0;
  const items: [number, number][] = [];
  let from = i + 1;
  for (let j = i + 1; j < tokens.length; j++) {
    const t = tokens[j];
    if (t?.kind !== 'punct' || t.depth !== depth + (t.text === ')' ? 0 : 1)) continue;
    if (t.text === ',' || t.text === ')') {
      if (j === from) return null; // an empty item
      items.push([from, j]);
      from = j + 1;
      if (t.text === ')') return { items, next: j + 1 };
    }
  }
  return null;
}

/** The key of each `VALUES` row; the rows must end the statement or be followed by ON CONFLICT / RETURNING. */
function rowKeys(tokens: readonly Token[], i: number, width: number, position: number): StatementKeys {
  const keys: KeyRef[] = [];
  for (;;) {
    const row = parenItems(tokens, i);
    const cell = row?.items[position];
    if (row === null || cell === undefined || row.items.length !== width) return null;
    const value = valueAt(tokens, cell[0]);
    if (value === null || value.next !== cell[1]) return null;
    keys.push(value.ref);
    i = row.next;
    if (!punctAt(tokens, i, ',')) break;
    i++;
  }
  const after = wordAt(tokens, i);
  return i === tokens.length || after === 'on' || after === 'returning' ? keys : null;
}

/** A literal or a parameter at `i`, with an optional `::type` cast. */
function valueAt(tokens: readonly Token[], i: number): { ref: KeyRef; next: number } | null {
  const t = tokens[i];
  let ref: KeyRef;
  let next = i + 1;
  if (t?.kind === 'number' && PLAIN_NUMBER.test(t.text)) {
    ref = { kind: 'literal', text: t.text };
  } else if (t?.kind === 'punct' && t.text === '-' && tokens[i + 1]?.kind === 'number') {
    const digits = tokens[i + 1]?.text ?? '';
    if (!PLAIN_NUMBER.test(digits)) return null;
    ref = { kind: 'literal', text: `-${digits}` };
    next = i + 2;
  } else if (t?.kind === 'string' && !t.text.includes('\\')) {
    // The lexer keeps E'…' and U&'…' escapes as written: a backslash means the value is unknown here.
    ref = { kind: 'literal', text: t.text };
  } else if (t?.kind === 'param') {
    ref = { kind: 'param', index: Number(t.text.slice(1)) - 1 };
  } else {
    return null;
  }
  if (
    punctAt(tokens, next, ':') &&
    punctAt(tokens, next + 1, ':') &&
    identAt(tokens, next + 2) !== undefined
  ) {
    next += 3;
  }
  return { ref, next };
}

/**
 * The keys a WHERE clause pins: every top-level `col = X` term of an AND chain. An `OR` at the
 * top level, or a set operation, makes it unknown; a clause with no such term is unknown too.
 */
function whereKeys(tokens: readonly Token[], start: number, target: Target): StatementKeys {
  const keys: KeyRef[] = [];
  let termStart = start;
  let inBetween = false; // `x BETWEEN a AND b`: that AND does not separate terms
  let i = start;
  for (; i <= tokens.length; i++) {
    const t = tokens[i];
    // A word after a dot is a column or table name (`t.window`), not a keyword ending the WHERE.
    const w = t?.depth === 0 && !punctAt(tokens, i - 1, '.') ? wordAt(tokens, i) : undefined;
    if (w === 'or' || (w !== undefined && SET_OPERATIONS.has(w))) return null;
    if (w === 'between') inBetween = true;
    const ends = t === undefined || (w !== undefined && WHERE_END.has(w));
    if (w === 'and' && inBetween) {
      inBetween = false;
    } else if (w === 'and' || ends) {
      const ref = termKey(tokens, termStart, i, target);
      if (ref !== null) keys.push(ref);
      termStart = i + 1;
      if (ends) break;
    }
  }
  for (let j = i; j < tokens.length; j++) {
    const w = tokens[j]?.depth === 0 ? wordAt(tokens, j) : undefined;
    if (w !== undefined && SET_OPERATIONS.has(w)) return null;
  }
  return keys.length > 0 ? keys : null;
}

/** The key of a term `col = X` or `X = col` spanning exactly [from, to), else null. */
function termKey(tokens: readonly Token[], from: number, to: number, target: Target): KeyRef | null {
  const left = columnAt(tokens, from, target);
  if (left !== null && punctAt(tokens, left, '=')) {
    const value = valueAt(tokens, left + 1);
    return value !== null && value.next === to ? value.ref : null;
  }
  const value = valueAt(tokens, from);
  if (value === null || !punctAt(tokens, value.next, '=')) return null;
  return columnAt(tokens, value.next + 1, target) === to ? value.ref : null;
}

/** Whether [from, to) (a join's ON) is an AND chain with a term `a.ka = b.kb` or `b.kb = a.ka`, both qualified. */
function keysEquated(tokens: readonly Token[], from: number, to: number, a: Target, b: Target): boolean {
  const qualified = (i: number, t: Target): number | null => {
    const name = readName(tokens, i);
    return name?.parts.length === 2 && name.parts[0] === (t.alias ?? t.table) && name.parts[1] === t.column
      ? name.next
      : null;
  };
  let found = false;
  let inBetween = false;
  let termStart = from;
  for (let i = from; i <= to; i++) {
    const w = i < to && tokens[i]?.depth === 0 ? wordAt(tokens, i) : undefined;
    if (w === 'or') return false;
    if (w === 'between') inBetween = true;
    if (w === 'and' && inBetween) inBetween = false;
    else if (w === 'and' || i === to) {
      const end = i;
      const check = (x: Target, y: Target): boolean => {
        const left = qualified(termStart, x);
        return left !== null && punctAt(tokens, left, '=') && qualified(left + 1, y) === end;
      };
      if (check(a, b) || check(b, a)) found = true;
      termStart = i + 1;
    }
  }
  return found;
}

/** If the rule's column (bare, or qualified by the table or its alias) is at `i`, the index after it. */
function columnAt(tokens: readonly Token[], i: number, target: Target): number | null {
  const name = readName(tokens, i);
  if (name === null || name.parts.length > 2) return null;
  const [qualifier, column] = name.parts.length === 2 ? name.parts : [undefined, name.parts[0]];
  if (column !== target.column) return null;
  if (qualifier !== undefined && qualifier !== (target.alias ?? target.table)) return null;
  return name.next;
}
