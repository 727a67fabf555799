/**
 * Per-statement rules: the leading keyword picks a rule, the rule returns a {@link StatementVerdict}.
 * The documented list of session pins lives in classify.ts; the reasons below must stay in step with it.
 *
 * "route" says where the statement itself can run: `read` if a hot standby accepts it and it changes no
 * data (see "Hot Standby", section "Query access", in the PostgreSQL docs for the list of what a standby
 * refuses), `write` otherwise. A pin sends the session to the primary whatever the route says.
 *
 * @module
 */
import type { Route, TxAction } from './route-types.js';
import type { Token } from './lexer.js';
import {
  closingParen,
  isPgTempQualifier,
  punctAt,
  queryFindings,
  scanQuery,
  wordAt,
  type RuleContext,
} from './query-rules.js';

/** The classification of one statement. */
export interface StatementVerdict {
  route: Route;
  tx: TxAction;
  pin: string | null;
  resetsPrepared: boolean;
}

type Rule = (tokens: readonly Token[], start: number, end: number, ctx: RuleContext) => StatementVerdict;

function verdict(route: Route, pin: string | null = null, tx: TxAction = null): StatementVerdict {
  return { route, tx, pin, resetsPrepared: false };
}

const read = (): StatementVerdict => verdict('read');
const write = (): StatementVerdict => verdict('write');

/** `SELECT`, `VALUES`, `TABLE`, `WITH ...`: a read unless something inside writes. */
const queryRule: Rule = (tokens, start, end, ctx) => {
  const found = queryFindings(tokens, start, end, ctx);
  return verdict(found.write ? 'write' : 'read', found.pin);
};

/** `INSERT`/`UPDATE`/`DELETE`/`MERGE`, `CALL`: writes; function calls may still pin (advisory locks...). */
const dmlRule: Rule = (tokens, start, end, ctx) => verdict('write', scanQuery(tokens, start, end, ctx).pin);

/**
 * Transaction modes of `BEGIN`/`START TRANSACTION`/`SET TRANSACTION` (in any order, commas optional):
 * the last `READ ONLY`/`READ WRITE` wins, as in the server. `ISOLATION LEVEL SERIALIZABLE` cannot run on a
 * hot standby ("cannot use serializable mode in a hot standby"), so such a transaction belongs on the
 * primary even when it is read-only.
 */
function transactionModes(tokens: readonly Token[], start: number, end: number) {
  let readOnly: boolean | null = null;
  let serializable = false;
  for (let i = start; i < end; i++) {
    const w = wordAt(tokens, i);
    if (w === 'serializable') serializable = true;
    if (w !== 'read') continue;
    const mode = wordAt(tokens, i + 1);
    if (mode === 'only') readOnly = true;
    else if (mode === 'write') readOnly = false;
  }
  return { readOnly, standbyReadOnly: readOnly === true && !serializable, serializable };
}

/** `BEGIN` / `START TRANSACTION`: the route says where the transaction it opens can run. */
const beginRule: Rule = (tokens, start, end) => {
  const modes = transactionModes(tokens, start + 1, end);
  return modes.standbyReadOnly ? verdict('read', null, 'begin-read-only') : verdict('write', null, 'begin');
};

/** `COMMIT`/`END` (also `AND CHAIN`); `COMMIT PREPARED` is two-phase commit, a write with no tx action. */
const commitRule: Rule = (tokens, start) =>
  wordAt(tokens, start + 1) === 'prepared' ? write() : verdict('read', null, 'commit');

/** `ROLLBACK`/`ABORT`; `ROLLBACK [WORK] TO [SAVEPOINT] x` keeps the transaction; `ROLLBACK PREPARED` is 2PC. */
const rollbackRule: Rule = (tokens, start, end) => {
  if (wordAt(tokens, start + 1) === 'prepared') return write();
  for (let i = start + 1; i < end; i++) if (wordAt(tokens, i) === 'to') return read();
  return verdict('read', null, 'rollback');
};

/**
 * `SET`: session-level settings pin (the next statement may run on another pooled backend that never saw
 * them); `SET LOCAL` ends with the transaction, `SET TRANSACTION` applies to the current one and
 * `SET CONSTRAINTS` too, so none of those pin. `SET SESSION CHARACTERISTICS AS TRANSACTION` is a session
 * default, hence a pin and no tx action. `SET ROLE` / `SET SESSION AUTHORIZATION` change identity: pins.
 */
const setRule: Rule = (tokens, start, end) => {
  let i = start + 1;
  let local = false;
  const scope = wordAt(tokens, i);
  if (scope === 'local') {
    local = true;
    i++;
  } else if (scope === 'session') {
    const following = wordAt(tokens, i + 1);
    if (following !== 'characteristics' && following !== 'authorization') i++;
  }
  const what = wordAt(tokens, i);
  if (what === 'transaction') return setTransactionVerdict(tokens, i + 1, end);
  if (local || what === 'constraints') return read();
  if (what === 'session' && wordAt(tokens, i + 1) === 'characteristics') return verdict('read', 'SET');
  if (what === 'session' && wordAt(tokens, i + 1) === 'authorization') {
    return verdict('read', 'SET SESSION AUTHORIZATION');
  }
  if (what === 'role') return verdict('read', 'SET ROLE');
  return verdict('read', 'SET');
};

function setTransactionVerdict(tokens: readonly Token[], start: number, end: number): StatementVerdict {
  const modes = transactionModes(tokens, start, end);
  if (modes.standbyReadOnly) return verdict('read', null, 'set-tx-read-only');
  return modes.serializable || modes.readOnly === false ? write() : read();
}

/**
 * `EXPLAIN` only plans, so it is a read whatever it explains. `EXPLAIN ANALYZE` (legacy form) or
 * `EXPLAIN (ANALYZE [true|on|1], ...)` executes the statement, which then decides.
 */
const explainRule: Rule = (tokens, start, end, ctx) => {
  let i = start + 1;
  let analyze = false;
  if (punctAt(tokens, i, '(')) {
    const close = closingParen(tokens, i, end);
    analyze = explainOptionsAnalyze(tokens, i + 1, close);
    i = close + 1;
  } else {
    // legacy form: EXPLAIN [ANALYZE] [VERBOSE] statement
    const isOption = (w: string | undefined) => w === 'analyze' || w === 'analyse' || w === 'verbose';
    for (; isOption(wordAt(tokens, i)); i++) if (wordAt(tokens, i) !== 'verbose') analyze = true;
  }
  if (!analyze) return read();
  const inner = classifyStatement(tokens, i, end, ctx);
  return verdict(inner.route, inner.pin);
};

/** Reads `name [value]` pairs separated by commas; true if the last `analyze` option is on. */
function explainOptionsAnalyze(tokens: readonly Token[], start: number, end: number): boolean {
  let analyze = false;
  for (let i = start; i < end; i++) {
    const name = wordAt(tokens, i);
    if ((name !== 'analyze' && name !== 'analyse') || !(i === start || punctAt(tokens, i - 1, ','))) continue;
    const value = tokens[i + 1];
    if (value === undefined || i + 1 >= end || (value.kind === 'punct' && value.text === ',')) {
      analyze = true;
    } else {
      const v = value.text.toLowerCase();
      analyze = !(v === 'false' || v === 'off' || v === '0');
    }
  }
  return analyze;
}

/**
 * `COPY table FROM` loads data (write); `COPY table TO` only reads; `COPY (query) TO` runs the query, which
 * may itself be `INSERT ... RETURNING` and so on.
 */
const copyRule: Rule = (tokens, start, end, ctx) => {
  const i = start + 1;
  if (punctAt(tokens, i, '(')) {
    const inner = classifyStatement(tokens, i + 1, closingParen(tokens, i, end), ctx);
    return verdict(inner.route, inner.pin);
  }
  const depth = tokens[start]?.depth ?? 0;
  for (let j = i; j < end; j++) {
    const t = tokens[j];
    if (t?.kind !== 'word' || t.depth !== depth) continue;
    if (t.text === 'from') return write();
    if (t.text === 'to') return read();
  }
  return write();
};

/** Words between `CREATE [OR REPLACE]` and the object kind that say how the relation persists. */
const PERSISTENCE = new Set(['global', 'local', 'temp', 'temporary', 'unlogged']);

const TEMP_PINS: ReadonlyMap<string, string> = new Map([
  ['table', 'temp table'],
  ['view', 'temp view'],
  ['recursive', 'temp view'],
  ['sequence', 'temp sequence'],
]);

/**
 * `CREATE ...` is DDL, always a write. Temporary objects (`TEMP`/`TEMPORARY`, optionally after
 * `GLOBAL`/`LOCAL`, or anything named `pg_temp.x`, or referring to it, like a view over a temp table)
 * live in this backend only: pin. `CREATE TABLE ... AS query` runs the query, so its calls may pin too.
 */
const createRule: Rule = (tokens, start, end, ctx) => {
  let i = start + 1;
  if (wordAt(tokens, i) === 'or' && wordAt(tokens, i + 1) === 'replace') i += 2;
  let temp = false;
  for (let w = wordAt(tokens, i); w !== undefined && PERSISTENCE.has(w); w = wordAt(tokens, ++i)) {
    if (w === 'temp' || w === 'temporary') temp = true;
  }
  const object = wordAt(tokens, i) ?? '';
  if (temp) return verdict('write', TEMP_PINS.get(object) ?? 'temp object');
  for (let j = i; j < end; j++) if (isPgTempQualifier(tokens, j)) return verdict('write', 'temp object');
  if (object === 'table') {
    const depth = tokens[start]?.depth ?? 0;
    for (let j = i; j < end; j++) {
      const t = tokens[j];
      if (t?.kind === 'word' && t.text === 'as' && t.depth === depth) {
        return verdict('write', scanQuery(tokens, j + 1, end, ctx).pin);
      }
    }
  }
  return write();
};

/** SQL `PREPARE name AS ...` creates a backend-local statement: pin. `PREPARE TRANSACTION 'gid'` is 2PC. */
const prepareRule: Rule = (tokens, start) =>
  wordAt(tokens, start + 1) === 'transaction' && tokens[start + 2]?.kind === 'string'
    ? write()
    : verdict('read', 'PREPARE');

/** `DISCARD ALL|PLANS` drop prepared statements (the proxy must forget its own); `TEMP|SEQUENCES` do not. */
const discardRule: Rule = (tokens, start) => {
  const what = wordAt(tokens, start + 1);
  return { route: 'write', tx: null, pin: null, resetsPrepared: what === 'all' || what === 'plans' };
};

/**
 * `DECLARE name ... CURSOR [WITH HOLD] FOR query`: a cursor lives until the transaction ends, unless
 * `WITH HOLD` keeps it in the session (pin). The query decides the route (e.g. `FOR UPDATE`).
 */
const declareRule: Rule = (tokens, start, end, ctx) => {
  const depth = tokens[start]?.depth ?? 0;
  let hold = false;
  for (let i = start + 1; i < end; i++) {
    const t = tokens[i];
    if (t?.kind !== 'word' || t.depth !== depth) continue;
    if (t.text === 'with' && wordAt(tokens, i + 1) === 'hold') hold = true;
    if (t.text === 'for') {
      const found = queryFindings(tokens, skipParens(tokens, i + 1, end), end, ctx);
      return verdict(found.write ? 'write' : 'read', hold ? 'cursor WITH HOLD' : found.pin);
    }
  }
  return write();
};

/** Keyed by leading keyword; a Map, so that a word like `constructor` cannot hit Object.prototype. */
const RULES: ReadonlyMap<string, Rule> = new Map<string, Rule>(
  Object.entries({
    select: queryRule,
    values: queryRule,
    table: queryRule,
    with: queryRule,
    insert: dmlRule,
    update: dmlRule,
    delete: dmlRule,
    merge: dmlRule,
    call: dmlRule,
    show: read,
    fetch: read, // cursor operations only make sense in the transaction (or pinned session) that declared it
    move: read,
    close: read,
    savepoint: read,
    release: read,
    begin: beginRule,
    start: beginRule,
    commit: commitRule,
    end: commitRule,
    rollback: rollbackRule,
    abort: rollbackRule,
    set: setRule,
    reset: () => verdict('read', 'RESET'), // undoing a setting is itself session state on that backend
    explain: explainRule,
    copy: copyRule,
    create: createRule,
    prepare: prepareRule,
    execute: write, // runs a statement we cannot see; only the session that prepared it knows it
    deallocate: () => ({ route: 'write', tx: null, pin: null, resetsPrepared: true }),
    discard: discardRule,
    listen: () => verdict('write', 'LISTEN'), // notifications are delivered to the listening backend only
    load: () => verdict('read', 'LOAD'), // a loaded library stays in that backend
    declare: declareRule,
  }),
);

function skipParens(tokens: readonly Token[], i: number, end: number): number {
  while (i < end && punctAt(tokens, i, '(')) i++;
  return i;
}

/**
 * Classifies the statement in tokens [start, end). Leading parentheses are skipped (`(SELECT 1)`);
 * anything unknown, including every other DDL or utility statement, is a write (the safe default).
 */
export function classifyStatement(
  tokens: readonly Token[],
  start: number,
  end: number,
  ctx: RuleContext,
): StatementVerdict {
  const first = skipParens(tokens, start, end);
  const keyword = first < end ? wordAt(tokens, first) : undefined;
  const rule = keyword === undefined ? undefined : RULES.get(keyword);
  return rule === undefined ? write() : rule(tokens, first, end, ctx);
}
