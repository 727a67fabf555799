/**
 * Reads of a sharded table without a shard key: the query runs on every shard and the rows
 * are merged here, so the client gets the answer one server holding all rows would give. What
 * is merged (see docs/CONFIG.md, "Reads without a key"):
 *
 * - one table (a `postgres.sharding.tables` table), no join (but a co-located join of sharded
 *   tables on their keys), no subquery, no `WITH`, no set
 *   operation, no window function, no `HAVING`, no locking clause;
 * - plain rows: concatenated; `DISTINCT`: duplicates dropped across shards;
 * - `count(…)`, `sum(…)`, `min(…)`, `max(…)` as whole select items, with or without
 *   `GROUP BY` (whose items must be exactly the other select items): combined per group;
 * - `ORDER BY` output columns (by name, position or the same expression): sorted here;
 * - `LIMIT n [OFFSET m]` (numbers): each shard returns its first n + m rows, the merged rows
 *   are cut; with aggregates the shards return every group.
 *
 * Values are compared as the server would only where their text allows it: integers,
 * `numeric` (as decimals), `bool`, `uuid`, and text types when the database's collation is
 * byte order (`C`/`POSIX`); grouping and `DISTINCT` need a type whose text is canonical
 * (`numeric` is not: 1.0 and 1.00 are equal). Anything else is refused with SQLSTATE 0A000
 * and the reason, never answered wrongly.
 *
 * @module
 */
import type { Token } from '../classifier/lexer.js';
import { RwsplitPgError, SqlState } from '../errors.js';
import { encodeCommandComplete, encodeDataRow } from '../protocol/index.js';

/** How one output column is combined across shards. */
export type Combine = 'key' | 'count' | 'sum' | 'min' | 'max';

/** One ORDER BY item, resolved to an output column. */
export interface SortKey {
  /** -1: the column named `name` (a SELECT *, resolved from the shards' RowDescription) */
  column: number;
  name?: string;
  desc: boolean;
  nullsFirst: boolean;
}

/** How to run a keyless read on every shard and merge the answers. */
export interface MergePlan {
  /** the text each shard runs */
  shardSql: string;
  /** per output column */
  combine: Combine[];
  /** rows are combined per group (aggregates present) */
  aggregate: boolean;
  distinct: boolean;
  order: SortKey[];
  limit: number | null;
  offset: number;
  /** parameters ($n, as indexes) the cut LIMIT/OFFSET referred to: the shard text no longer does */
  cutParams: number[];
}

const AGGREGATES = new Set(['count', 'sum', 'min', 'max']);
/** Aggregates whose partial results cannot be combined from their values alone. */
const OTHER_AGGREGATES = new Set([
  'avg',
  'array_agg',
  'string_agg',
  'json_agg',
  'jsonb_agg',
  'json_object_agg',
  'jsonb_object_agg',
  'xmlagg',
  'bool_and',
  'bool_or',
  'every',
  'bit_and',
  'bit_or',
  'bit_xor',
  'stddev',
  'stddev_pop',
  'stddev_samp',
  'variance',
  'var_pop',
  'var_samp',
  'corr',
  'covar_pop',
  'covar_samp',
  'percentile_cont',
  'percentile_disc',
  'mode',
  'range_agg',
  'range_intersect_agg',
  'any_value',
]);

const REFUSED_WORDS: ReadonlyMap<string, string> = new Map([
  ['with', 'a WITH query'],
  ['union', 'a set operation (UNION)'],
  ['intersect', 'a set operation (INTERSECT)'],
  ['except', 'a set operation (EXCEPT)'],
  ['join', 'a join'],
  ['over', 'a window function'],
  ['having', 'HAVING (it filters groups only complete after the merge)'],
  ['for', 'a locking clause (FOR UPDATE/SHARE)'],
  ['into', 'SELECT INTO'],
  ['fetch', 'FETCH FIRST (write LIMIT)'],
  ['collate', 'COLLATE'],
  ['using', 'ORDER BY … USING'],
  ['rollup', 'ROLLUP'],
  ['cube', 'CUBE'],
  ['grouping', 'GROUPING SETS'],
  ['tablesample', 'TABLESAMPLE'],
]);

/** The refusal: SQLSTATE 0A000, why, and how to run it anyway. */
export function mergeRefusal(why: string): RwsplitPgError {
  return new RwsplitPgError(
    'SHARD_MERGE_UNSUPPORTED',
    SqlState.FeatureNotSupported,
    `rwsplit: this read has no shard key, so it would run on every shard, but its results cannot be merged correctly: ${why}`,
    'Give the shard with a /* rwsplit:shard=NAME */ or /* rwsplit:key=VALUE */ comment (or a WHERE on the ' +
      'shard key), or rewrite the query (avg(x): select sum(x) and count(x) and divide).',
  );
}

const word = (tokens: readonly Token[], i: number): string | undefined => {
  const t = tokens[i];
  return t?.kind === 'word' ? t.text : undefined;
};
const punct = (tokens: readonly Token[], i: number, ch: string): boolean => {
  const t = tokens[i];
  return t?.kind === 'punct' && t.text === ch;
};
const sameTokens = (a: readonly Token[], b: readonly Token[]): boolean =>
  a.length === b.length && a.every((t, i) => t.kind === b[i]!.kind && t.text === b[i]!.text);

/** Splits [from, to) on top-level commas (depth `depth`). */
function splitList(tokens: readonly Token[], from: number, to: number, depth: number): Token[][] {
  const out: Token[][] = [];
  let start = from;
  for (let i = from; i <= to; i++) {
    if (i === to || (tokens[i]!.depth === depth && punct(tokens, i, ','))) {
      out.push(tokens.slice(start, i) as Token[]);
      start = i + 1;
    }
  }
  return out;
}

interface SelectItem {
  expr: Token[];
  /** the output column's name as the server names it, when the text says it */
  name: string | null;
  combine: Combine;
}

/** `expr [AS] alias`: the expression and the alias (only an explicit AS is taken as one). */
function selectItem(item: Token[]): SelectItem | string {
  let expr = item;
  let name: string | null = null;
  const n = item.length;
  if (n >= 3 && word(item, n - 2) === 'as' && item[n - 2]!.depth === 0) {
    expr = item.slice(0, n - 2);
    name = item[n - 1]!.text;
  } else if (n === 1 && (item[0]!.kind === 'word' || item[0]!.kind === 'qident')) name = item[0]!.text;
  else if (n === 3 && punct(item, 1, '.') && item[2]!.kind !== 'punct') name = item[2]!.text;
  for (let i = 0; i < expr.length; i++) {
    const w = word(expr, i);
    if (w === undefined || !punct(expr, i + 1, '(')) continue;
    if (OTHER_AGGREGATES.has(w))
      return w === 'avg'
        ? 'avg() (select sum(x) and count(x) and divide them)'
        : `the aggregate ${w}() (its partial results cannot be combined)`;
    if (!AGGREGATES.has(w)) continue;
    // An aggregate must be the whole item: `sum(x) + 1` or `coalesce(max(x), 0)` are not merged.
    if (i !== 0 || !punct(expr, expr.length - 1, ')') || expr[expr.length - 1]!.depth !== 0)
      return `an expression over the aggregate ${w}()`;
    if (word(expr, 2) === 'distinct') return `${w}(DISTINCT …)`;
    name ??= w;
    return { expr, name, combine: w as Combine };
  }
  return { expr, name, combine: 'key' };
}

/**
 * The merge plan of a keyless SELECT on a sharded table (`tokens`: its one statement), or the
 * reason it cannot be merged. `placedJoins`: a co-located join, whose joins keep each result
 * row on one shard (`TableRules.placedJoins`), so they run on the shards as written.
 */
export function planMerge(
  tokens: readonly Token[],
  sql: string,
  params?: readonly (string | null)[],
  placedJoins = false,
): MergePlan | string {
  for (let i = 1; i < tokens.length; i++) {
    const w = word(tokens, i);
    if (w === 'select') return 'a subquery';
    if (w === 'join' && placedJoins) continue;
    if (w !== undefined && REFUSED_WORDS.has(w)) return REFUSED_WORDS.get(w)!;
    if (tokens[i]!.kind === 'string' && tokens[i]!.text.includes('\\'))
      return 'a string with backslash escapes';
  }
  let i = 1;
  let distinct = false;
  if (word(tokens, i) === 'distinct') {
    if (word(tokens, i + 1) === 'on') return 'DISTINCT ON';
    distinct = true;
    i++;
  } else if (word(tokens, i) === 'all') i++;
  let from = -1;
  for (let j = i; j < tokens.length; j++)
    if (tokens[j]!.depth === 0 && word(tokens, j) === 'from') {
      from = j;
      break;
    }
  if (from < 0) return 'no FROM';
  const items: SelectItem[] = [];
  for (const raw of splitList(tokens, i, from, 0)) {
    if (raw.length === 0) return 'an empty select item';
    if (raw.length === 1 && punct(raw, 0, '*')) {
      if (i !== from - 1) return 'SELECT * next to other select items';
      items.push({ expr: raw, name: null, combine: 'key' });
      continue;
    }
    const item = selectItem(raw);
    if (typeof item === 'string') return item;
    items.push(item);
  }
  // Clauses after FROM, at the top level.
  const clause = (name: string): number => {
    for (let j = from + 1; j < tokens.length; j++)
      if (tokens[j]!.depth === 0 && word(tokens, j) === name) return j;
    return -1;
  };
  const tableEnd = [clause('where'), clause('group'), clause('order'), clause('limit'), clause('offset')]
    .filter((j) => j >= 0)
    .reduce((a, b) => Math.min(a, b), tokens.length);
  for (let j = from + 1; j < tableEnd; j++)
    if (punct(tokens, j, ',')) return 'a join (several tables in FROM)';
  const aggregate = items.some((it) => it.combine !== 'key');
  const groupAt = clause('group');
  const orderAt = clause('order');
  const limitAt = clause('limit');
  const offsetAt = clause('offset');
  const tailStart = [limitAt, offsetAt].filter((j) => j >= 0).reduce((a, b) => Math.min(a, b), tokens.length);
  if (groupAt >= 0 || aggregate) {
    if (items.some((it) => it.expr.length === 1 && punct(it.expr, 0, '*'))) return 'SELECT * with GROUP BY';
    const keys = items.filter((it) => it.combine === 'key');
    let groups: Token[][] = [];
    if (groupAt >= 0) {
      if (word(tokens, groupAt + 1) !== 'by') return 'GROUP without BY';
      const groupEnd = [orderAt, tailStart]
        .filter((j) => j > groupAt)
        .reduce((a, b) => Math.min(a, b), tokens.length);
      groups = splitList(tokens, groupAt + 2, groupEnd, 0);
    }
    const resolved = groups.map((g) => resolveItem(g, items));
    if (resolved.some((r) => r < 0 || items[r]!.combine !== 'key'))
      return 'a GROUP BY item that is not a select item (select every grouping column)';
    for (const k of keys)
      if (!resolved.includes(items.indexOf(k))) return 'a select item that is not in GROUP BY';
  }
  const order: SortKey[] = [];
  if (orderAt >= 0) {
    if (word(tokens, orderAt + 1) !== 'by') return 'ORDER without BY';
    for (const raw of splitList(tokens, orderAt + 2, tailStart, 0)) {
      let end = raw.length;
      let desc = false;
      let nullsFirst: boolean | null = null;
      if (word(raw, end - 2) === 'nulls') {
        nullsFirst = word(raw, end - 1) === 'first';
        end -= 2;
      }
      if (word(raw, end - 1) === 'desc' || word(raw, end - 1) === 'asc') {
        desc = word(raw, end - 1) === 'desc';
        end--;
      }
      const expr = raw.slice(0, end);
      const star = items.length === 1 && items[0]!.expr.length === 1 && punct(items[0]!.expr, 0, '*');
      if (star && expr.length === 1 && (expr[0]!.kind === 'word' || expr[0]!.kind === 'qident')) {
        order.push({ column: -1, name: expr[0]!.text, desc, nullsFirst: nullsFirst ?? desc });
        continue;
      }
      const column =
        star && expr.length === 1 && expr[0]!.kind === 'number'
          ? Number(expr[0]!.text) - 1
          : resolveItem(expr, items);
      if (column < 0)
        return 'an ORDER BY item that is not an output column (select it, or order by its position)';
      order.push({ column, desc, nullsFirst: nullsFirst ?? desc });
    }
  }
  let limit: number | null = null;
  let offset = 0;
  const cutParams: number[] = [];
  let j = tailStart;
  while (j < tokens.length) {
    const w = word(tokens, j);
    const t = tokens[j + 1];
    const value =
      t?.kind === 'param' ? params?.[Number(t.text.slice(1)) - 1] : t?.kind === 'number' ? t.text : undefined;
    if (w === 'limit' && word(tokens, j + 1) === 'all') j += 2;
    else if ((w === 'limit' || w === 'offset') && value != null && /^\d+$/.test(value)) {
      if (t?.kind === 'param') cutParams.push(Number(t.text.slice(1)) - 1);
      if (w === 'limit') limit = Number(value);
      else offset = Number(value);
      j += 2;
      if (w === 'offset' && (word(tokens, j) === 'row' || word(tokens, j) === 'rows')) j++;
    } else return 'LIMIT/OFFSET other than numbers';
  }
  let shardSql = sql;
  if (tailStart < tokens.length) {
    // The tail is LIMIT/OFFSET numbers only (checked above); cut it from the text.
    const cut = /(\s+(limit\s+(all|\d+|\$\d+)|offset\s+(\d+|\$\d+)(\s+rows?)?))+\s*;?\s*$/i.exec(sql);
    if (cut === null) return 'a LIMIT/OFFSET written in a way rwsplit cannot cut (a comment after it?)';
    shardSql = sql.slice(0, cut.index);
    if (!aggregate && limit !== null) shardSql += ` LIMIT ${limit + offset}`;
  }
  return {
    shardSql,
    combine: items.map((it) => it.combine),
    aggregate,
    distinct,
    order,
    limit,
    offset,
    cutParams,
  };
}

/** The select item an ORDER BY / GROUP BY item names: by position, name or the same expression; -1 if none. */
function resolveItem(expr: readonly Token[], items: readonly SelectItem[]): number {
  if (expr.length === 1 && expr[0]!.kind === 'number' && /^\d+$/.test(expr[0]!.text)) {
    const n = Number(expr[0]!.text) - 1;
    return n >= 0 && n < items.length ? n : -1;
  }
  const bySame = items.findIndex((it) => sameTokens(it.expr, expr));
  if (bySame >= 0) return bySame;
  if (expr.length === 1) return items.findIndex((it) => it.name === expr[0]!.text);
  if (expr.length === 3 && punct(expr, 1, '.'))
    return items.findIndex((it) => it.name === expr[2]!.text && it.combine === 'key');
  return -1;
}

// ---- merging the shards' answers -----------------------------------------------------------

const OID = {
  bool: 16,
  name: 19,
  int8: 20,
  int2: 21,
  int4: 23,
  text: 25,
  oid: 26,
  float4: 700,
  float8: 701,
  bpchar: 1042,
  varchar: 1043,
  date: 1082,
  timestamp: 1114,
  timestamptz: 1184,
  numeric: 1700,
  uuid: 2950,
} as const;
const INTEGER = new Set<number>([OID.int2, OID.int4, OID.int8, OID.oid]);
const TEXT = new Set<number>([OID.text, OID.varchar, OID.name]);
/** Types whose text is one per value (equal values, equal texts): grouping and DISTINCT by text are right. */
const CANONICAL = new Set<number>([
  ...INTEGER,
  ...TEXT,
  OID.bool,
  OID.uuid,
  OID.date,
  OID.timestamp,
  OID.timestamptz,
]);

/** A value in its text form (null: SQL NULL). */
export type Value = string | null;
type Compare = (a: string, b: string) => number;

/** A column's type OID from a RowDescription frame, per column. */
export function rowDescriptionTypes(frame: Buffer): { names: string[]; types: number[] } {
  const n = frame.readInt16BE(5);
  const names: string[] = [];
  const types: number[] = [];
  let at = 7;
  for (let i = 0; i < n; i++) {
    const end = frame.indexOf(0, at);
    names.push(frame.toString('utf8', at, end));
    at = end + 1;
    types.push(frame.readInt32BE(at + 6)); // table oid (4), attnum (2), type oid
    at += 18;
  }
  return { names, types };
}

function decodeRow(frame: Buffer): Value[] {
  const n = frame.readInt16BE(5);
  const out: Value[] = [];
  let at = 7;
  for (let i = 0; i < n; i++) {
    const len = frame.readInt32BE(at);
    at += 4;
    if (len < 0) out.push(null);
    else {
      out.push(frame.toString('utf8', at, at + len));
      at += len;
    }
  }
  return out;
}

/** Decimal text → [digits as BigInt, scale]; NaN and infinities are not numbers here. */
function decimal(s: string): [bigint, number] | null {
  const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(s);
  if (!m) return null;
  const frac = m[3] ?? '';
  const v = BigInt(m[2]! + frac);
  return [m[1] ? -v : v, frac.length];
}
const scaled = (d: [bigint, number], scale: number): bigint => d[0] * 10n ** BigInt(scale - d[1]);

function compareDecimal(a: string, b: string): number {
  const x = decimal(a);
  const y = decimal(b);
  // PostgreSQL orders NaN above every number, infinities at the ends.
  const rank = (s: string, d: unknown): number =>
    d !== null ? 0 : s === 'NaN' ? 2 : s === 'Infinity' ? 1 : s === '-Infinity' ? -1 : 3;
  const rx = rank(a, x);
  const ry = rank(b, y);
  if (rx !== 0 || ry !== 0) return rx - ry;
  const scale = Math.max(x![1], y![1]);
  const p = scaled(x!, scale);
  const q = scaled(y!, scale);
  return p < q ? -1 : p > q ? 1 : 0;
}

/**
 * How to compare values of a type as the server would, or the reason it cannot be done.
 * `bytewiseText`: the database's collation orders text as bytes.
 */
function comparator(type: number, bytewiseText: boolean): Compare | string {
  if (INTEGER.has(type) || type === OID.numeric) return compareDecimal;
  if (type === OID.bool) return (a, b) => (a === b ? 0 : a === 'f' ? -1 : 1);
  if (type === OID.uuid) return (a, b) => (a < b ? -1 : a > b ? 1 : 0);
  if (TEXT.has(type)) {
    if (!bytewiseText)
      return 'ordering text across shards needs the database collation C (the proxy cannot sort by a linguistic collation)';
    return (a, b) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
  }
  return `ordering values of type oid ${type} across shards (supported: integers, numeric, bool, uuid, text under collation C)`;
}

function sumOf(type: number, values: readonly Value[]): Value | string {
  const present = values.filter((v): v is string => v !== null);
  if (present.length === 0) return null;
  if (type !== OID.int8 && type !== OID.numeric && !INTEGER.has(type))
    return `sum() of type oid ${type} (only integer and numeric sums add up exactly)`;
  const ds = present.map(decimal);
  if (ds.some((d) => d === null)) return 'sum() of NaN or infinity';
  const scale = Math.max(...ds.map((d) => d![1]));
  const total = ds.reduce((acc, d) => acc + scaled(d!, scale), 0n);
  if (scale === 0) return total.toString();
  const neg = total < 0n;
  const digits = (neg ? -total : total).toString().padStart(scale + 1, '0');
  return `${neg ? '-' : ''}${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
}

/** One shard's answer to the plan's query. */
export interface ShardRows {
  description: Buffer | null;
  rows: Buffer[];
}

/**
 * Merges the shards' answers into what the client gets (RowDescription, DataRows,
 * CommandComplete), or throws the refusal when a column's type cannot be merged.
 */
export function mergeShardRows(
  plan: MergePlan,
  answers: readonly ShardRows[],
  bytewiseText: boolean,
): Buffer[] {
  const description = answers.find((a) => a.description !== null)?.description ?? null;
  if (description === null) return [encodeCommandComplete('SELECT 0')];
  const { names, types } = rowDescriptionTypes(description);
  const raw = answers.flatMap((a) => a.rows);
  const out: Buffer[] = [description];
  // Rows neither combined nor sorted pass as they came, undecoded.
  if (!plan.aggregate && !plan.distinct && plan.order.length === 0)
    out.push(...raw.slice(plan.offset, plan.limit === null ? undefined : plan.offset + plan.limit));
  else
    for (const row of mergeRows(plan, names, types, raw.map(decodeRow), bytewiseText))
      out.push(encodeDataRow(row));
  out.push(encodeCommandComplete(`SELECT ${out.length - 1}`));
  return out;
}

/**
 * The merge itself, on rows already decoded to their text form (the proxy decodes DataRows,
 * the library asks node-postgres for text): combined per group, de-duplicated, sorted and cut
 * as the plan says. `names`/`types`: the output columns' names and type OIDs. Throws the
 * refusal when a column's type cannot be merged.
 */
export function mergeRows(
  plan: MergePlan,
  names: readonly string[],
  types: readonly number[],
  decodedRows: Value[][],
  bytewiseText: boolean,
): Value[][] {
  // SELECT *: one select item, every column a key.
  const combine = plan.combine.length === types.length ? plan.combine : types.map((): Combine => 'key');
  const order = plan.order.map((k) => {
    if (k.column >= 0) return k;
    const column = names.indexOf(k.name ?? '');
    if (column < 0 || names.indexOf(k.name ?? '', column + 1) >= 0)
      throw mergeRefusal(`ORDER BY ${k.name}: no single output column of that name`);
    return { ...k, column };
  });
  if (order.some((k) => k.column >= types.length)) throw mergeRefusal('ORDER BY position out of range');
  const compares = new Map<number, Compare>();
  const compareFor = (column: number): Compare => {
    let c = compares.get(column);
    if (c === undefined) {
      const found = comparator(types[column]!, bytewiseText);
      if (typeof found === 'string') throw mergeRefusal(found);
      compares.set(column, (c = found));
    }
    return c;
  };
  let rows = decodedRows;
  if (plan.aggregate || plan.distinct) {
    combine.forEach((c, col) => {
      if (c === 'key' && !CANONICAL.has(types[col]!))
        throw mergeRefusal(
          `grouping or DISTINCT on a column of type oid ${types[col]} (equal values may be written differently, as numeric 1.0 and 1.00)`,
        );
      if (c === 'min' || c === 'max') compareFor(col);
    });
    const groups = new Map<string, Value[][]>();
    for (const row of rows) {
      const key = JSON.stringify(combine.map((c, col) => (c === 'key' ? row[col] : 0)));
      const g = groups.get(key);
      if (g) g.push(row);
      else groups.set(key, [row]);
    }
    rows = [...groups.values()].map((g) =>
      combine.map((c, col) => combineColumn(c, col, types[col]!, g, compareFor)),
    );
  }
  if (order.length > 0) {
    const keys = order.map((k) => ({ ...k, compare: compareFor(k.column) }));
    rows.sort((a, b) => {
      for (const k of keys) {
        const x = a[k.column] ?? null;
        const y = b[k.column] ?? null;
        let r: number;
        if (x === null || y === null) r = x === y ? 0 : (x === null) === k.nullsFirst ? -1 : 1;
        else r = k.desc ? -k.compare(x, y) : k.compare(x, y);
        if (r !== 0) return r;
      }
      return 0;
    });
  }
  return rows.slice(plan.offset, plan.limit === null ? undefined : plan.offset + plan.limit);
}

function combineColumn(
  c: Combine,
  col: number,
  type: number,
  group: Value[][],
  compareFor: (col: number) => Compare,
): Value {
  const values = group.map((r) => r[col] ?? null);
  switch (c) {
    case 'key':
      return values[0] ?? null;
    case 'count':
    case 'sum': {
      const s = c === 'count' ? (sumOf(OID.int8, values) ?? '0') : sumOf(type, values);
      if (s !== null && typeof s === 'string' && !/^-?\d/.test(s)) throw mergeRefusal(s);
      return s;
    }
    case 'min':
    case 'max': {
      const cmp = compareFor(col);
      let best: string | null = null;
      for (const v of values) {
        if (v === null) continue;
        if (best === null || (c === 'min' ? cmp(v, best) < 0 : cmp(v, best) > 0)) best = v;
      }
      return best;
    }
  }
}
