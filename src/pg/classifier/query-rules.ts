/**
 * Rules for statements that run a query (`SELECT`, `VALUES`, `TABLE`, `WITH`, DML, cursors, `COPY (...)`):
 * what inside the query makes it a write or pins the session.
 *
 * Every rule here may err only towards "write": a read sent to the primary costs a little load, a write
 * sent to a standby fails ("cannot execute ... in a read-only transaction").
 *
 * @module
 */
import type { Token } from './lexer.js';
import { SESSION_PIN_FUNCTIONS } from './write-functions.js';

/** What scanning a query found. */
export interface QueryFindings {
  write: boolean;
  /** First session-state reason found, or null. */
  pin: string | null;
}

/** Options the rules need, resolved once per {@link Classifier}. */
export interface RuleContext {
  readonly writeFunctions: ReadonlySet<string>;
}

const DML = new Set(['insert', 'update', 'delete', 'merge']);

/** Keywords that can end a `SELECT ... INTO <target>` clause; after `INTO TEMP` they mean "a table named temp". */
export const AFTER_INTO_TARGET: ReadonlySet<string> = new Set([
  'from',
  'where',
  'group',
  'having',
  'window',
  'order',
  'limit',
  'offset',
  'fetch',
  'for',
  'union',
  'intersect',
  'except',
]);

/** The lower-cased word at `i`, or undefined if the token there is not an unquoted word. */
export function wordAt(tokens: readonly Token[], i: number): string | undefined {
  const t = tokens[i];
  return t?.kind === 'word' ? t.text : undefined;
}

/** True if the token at `i` is the punctuation character `ch`. */
export function punctAt(tokens: readonly Token[], i: number, ch: string): boolean {
  const t = tokens[i];
  return t?.kind === 'punct' && t.text === ch;
}

/** Index of the `)` closing the `(` at `open`, or `end` if it is unbalanced. */
export function closingParen(tokens: readonly Token[], open: number, end: number): number {
  const depth = tokens[open]?.depth ?? 0;
  for (let i = open + 1; i < end; i++) {
    const t = tokens[i];
    if (t?.kind === 'punct' && t.text === ')' && t.depth === depth) return i;
  }
  return end;
}

/**
 * Scans [start, end) for anything that makes a query write or pin, at any parenthesis depth:
 * - `( INSERT|UPDATE|DELETE|MERGE`: a data-modifying CTE body (`WITH x AS [NOT] [MATERIALIZED] (DELETE ...)`),
 *   which executes even when the main statement is a `SELECT`;
 * - `SELECT ... INTO target`: creates a table (a temp one pins);
 * - `FOR UPDATE | NO KEY UPDATE | SHARE | KEY SHARE`: row locks write the tuple header (xmax), which a
 *   standby refuses;
 * - calls of write or session-pinning functions (`name(` or `"name"(`; a name in a string is not a call).
 */
export function scanQuery(
  tokens: readonly Token[],
  start: number,
  end: number,
  ctx: RuleContext,
): QueryFindings {
  const found: QueryFindings = { write: false, pin: null };
  const pin = (reason: string | null): void => {
    if (reason !== null && found.pin === null) found.pin = reason;
  };
  for (let i = start; i < end; i++) {
    const t = tokens[i];
    if (t === undefined) break;
    if (t.kind === 'punct') {
      if (t.text === '(' && DML.has(wordAt(tokens, i + 1) ?? '')) found.write = true;
      continue;
    }
    if (t.kind === 'word' && t.text === 'into') {
      const previous = wordAt(tokens, i - 1);
      if (previous !== 'insert' && previous !== 'merge') {
        found.write = true;
        pin(selectIntoPin(tokens, i + 1, end));
      }
    } else if (t.kind === 'word' && t.text === 'for' && isLockingClause(tokens, i + 1)) {
      found.write = true;
    }
    if ((t.kind === 'word' || t.kind === 'qident') && punctAt(tokens, i + 1, '(') && i + 1 < end) {
      if (ctx.writeFunctions.has(t.text)) found.write = true;
      pin(functionPin(tokens, t.text, i + 1, end));
    }
  }
  return found;
}

/** `FOR UPDATE`, `FOR NO KEY UPDATE`, `FOR SHARE`, `FOR KEY SHARE` (not `FOR READ ONLY`, not `substring(x FOR 2)`). */
function isLockingClause(tokens: readonly Token[], i: number): boolean {
  const w = wordAt(tokens, i);
  if (w === 'update' || w === 'share') return true;
  if (w === 'no') return wordAt(tokens, i + 1) === 'key' && wordAt(tokens, i + 2) === 'update';
  if (w === 'key') return wordAt(tokens, i + 1) === 'share';
  return false;
}

/**
 * `SELECT ... INTO [GLOBAL|LOCAL] TEMP|TEMPORARY [TABLE] name` or `INTO pg_temp.name` creates a temporary
 * table, visible only to this backend. `INTO temp FROM ...` is a permanent table named "temp".
 */
function selectIntoPin(tokens: readonly Token[], i: number, end: number): string | null {
  let j = i;
  const first = wordAt(tokens, j);
  if (first === 'global' || first === 'local') j++;
  const w = wordAt(tokens, j);
  if (w === 'temp' || w === 'temporary') {
    j++;
    if (wordAt(tokens, j) === 'table') j++;
    const target = tokens[j];
    if (j >= end || target === undefined) return null;
    if (target.kind === 'qident') return 'temp table';
    return target.kind === 'word' && !AFTER_INTO_TARGET.has(target.text) ? 'temp table' : null;
  }
  if (isPgTempQualifier(tokens, j)) return 'temp table';
  return null;
}

/** True if tokens at `i` are `pg_temp .` (the session's temporary schema as a name qualifier). */
export function isPgTempQualifier(tokens: readonly Token[], i: number): boolean {
  const t = tokens[i];
  return (t?.kind === 'word' || t?.kind === 'qident') && t.text === 'pg_temp' && punctAt(tokens, i + 1, '.');
}

/**
 * The pin reason for a call of `name` whose `(` is at `open`. `set_config(name, value, is_local)` changes
 * the session unless `is_local` is the literal `true` (anything else, a parameter included, might be false).
 */
function functionPin(tokens: readonly Token[], name: string, open: number, end: number): string | null {
  const reason = SESSION_PIN_FUNCTIONS.get(name);
  if (reason !== undefined) return reason;
  if (name !== 'set_config') return null;
  const third = argumentRange(tokens, open, end, 2);
  if (third === null) return 'set_config';
  const [from, to] = third;
  return to - from === 1 && wordAt(tokens, from) === 'true' ? null : 'set_config';
}

/** [from, to) of the zero-based argument `index` of the call whose `(` is at `open`, or null if absent. */
function argumentRange(
  tokens: readonly Token[],
  open: number,
  end: number,
  index: number,
): [number, number] | null {
  const inner = (tokens[open]?.depth ?? 0) + 1;
  let argument = 0;
  let from = open + 1;
  for (let i = open + 1; i < end; i++) {
    const t = tokens[i];
    if (t === undefined) break;
    const boundary =
      t.kind === 'punct' &&
      ((t.text === ',' && t.depth === inner) || (t.text === ')' && t.depth === inner - 1));
    if (!boundary) continue;
    if (argument === index) return [from, i];
    if (t.text === ')') return null;
    argument++;
    from = i + 1;
  }
  return null;
}

/**
 * Verdict for a query statement starting at `start` (after any leading parentheses): the scan above plus,
 * for `WITH`, the main statement, which is the first `SELECT|VALUES|TABLE|INSERT|UPDATE|DELETE|MERGE` at the
 * depth of the `WITH` (CTE bodies sit one level deeper).
 */
export function queryFindings(
  tokens: readonly Token[],
  start: number,
  end: number,
  ctx: RuleContext,
): QueryFindings {
  const found = scanQuery(tokens, start, end, ctx);
  if (wordAt(tokens, start) === 'with') {
    const depth = tokens[start]?.depth ?? 0;
    for (let i = start + 1; i < end; i++) {
      const t = tokens[i];
      if (t?.kind !== 'word' || t.depth !== depth) continue;
      if (DML.has(t.text)) found.write = true;
      if (DML.has(t.text) || t.text === 'select' || t.text === 'values' || t.text === 'table') break;
    }
  }
  return found;
}
