/**
 * Differential test: the lexical classifier against the real PostgreSQL parser (libpg-query, PostgreSQL 18
 * compiled to WASM). For every corpus statement, an oracle walks the parse tree and derives route, tx action,
 * whether the session is pinned, the statement count and the hint (from the real scanner's comment tokens).
 * The oracle is written from the AST alone; it shares only the configurable write-function list with the
 * classifier, and keeps its own list of session-pinning functions.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import { loadModule, parseSync, scanSync } from 'libpg-query';
import { Classifier, DEFAULT_WRITE_FUNCTIONS, type Route, type TxAction } from './classify.js';
import { CORPUS } from './corpus.js';

type Obj = Record<string, unknown>;

interface Expected {
  route: Route;
  tx: TxAction;
  pinned: boolean;
}

const WRITE_FUNCTIONS = new Set(DEFAULT_WRITE_FUNCTIONS);
/** Functions whose effect outlives the statement in the backend (the oracle's own list). */
const SESSION_FUNCTIONS = new Set([
  'pg_advisory_lock',
  'pg_advisory_lock_shared',
  'pg_try_advisory_lock',
  'pg_try_advisory_lock_shared',
  'pg_backup_start',
  'dblink_connect',
  'dblink_connect_u',
]);
const DML_NODES = new Set(['InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt']);

function isObj(x: unknown): x is Obj {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function obj(x: unknown): Obj {
  return isObj(x) ? x : {};
}

/** Every wrapped node `{ TypeName: {...} }` under `root` (root included), depth first. */
function nodes(root: unknown, out: Array<[string, Obj]> = []): Array<[string, Obj]> {
  if (Array.isArray(root)) {
    for (const item of root) nodes(item, out);
  } else if (isObj(root)) {
    for (const [key, value] of Object.entries(root)) {
      if (/^[A-Z]/.test(key) && isObj(value)) out.push([key, value]);
      nodes(value, out);
    }
  }
  return out;
}

/** The single `{ Type: body }` entry of a wrapped node. */
function unwrap(node: unknown): [string, Obj] {
  const entry = Object.entries(obj(node))[0];
  return entry === undefined ? ['', {}] : [entry[0], obj(entry[1])];
}

function stringList(list: unknown): string[] {
  return Array.isArray(list) ? list.map((item) => String(obj(obj(item)['String'])['sval'] ?? '')) : [];
}

/** A FuncCall's own effect: write if in the write list; pin if it keeps session state. */
function funcCall(body: Obj): { write: boolean; pin: boolean } {
  const name = stringList(body['funcname']).at(-1) ?? '';
  let pin = SESSION_FUNCTIONS.has(name);
  if (name === 'set_config') {
    const args = Array.isArray(body['args']) ? body['args'] : [];
    const isLocal = obj(obj(obj(obj(args[2])['A_Const'])['boolval']))['boolval'] === true;
    pin = !isLocal;
  }
  return { write: WRITE_FUNCTIONS.has(name), pin };
}

function isTempRel(rel: unknown): boolean {
  const r = obj(rel);
  return r['relpersistence'] === 't' || r['schemaname'] === 'pg_temp';
}

/** A query that executes: DML nodes, SELECT INTO, locking clauses and function calls anywhere inside. */
function query(root: unknown): Expected {
  let write = false;
  let pinned = false;
  for (const [type, body] of nodes(root)) {
    if (DML_NODES.has(type)) write = true;
    if (type === 'SelectStmt' && body['intoClause'] !== undefined) {
      write = true;
      pinned ||= isTempRel(obj(body['intoClause'])['rel']);
    }
    if (type === 'SelectStmt' && Array.isArray(body['lockingClause'])) write = true;
    if (type === 'FuncCall') {
      const f = funcCall(body);
      write ||= f.write;
      pinned ||= f.pin;
    }
  }
  return { route: write ? 'write' : 'read', tx: null, pinned };
}

/** DefElem options of a transaction statement: last read-only flag, serializable isolation. */
function txModes(options: unknown): { readOnly: boolean | null; serializable: boolean } {
  let readOnly: boolean | null = null;
  let serializable = false;
  for (const [type, def] of nodes(options)) {
    if (type !== 'DefElem') continue;
    const arg = obj(obj(def['arg'])['A_Const']);
    if (def['defname'] === 'transaction_read_only') readOnly = obj(arg['ival'])['ival'] === 1;
    if (def['defname'] === 'transaction_isolation') {
      serializable = obj(arg['sval'])['sval'] === 'serializable';
    }
  }
  return { readOnly, serializable };
}

const read = (pinned = false): Expected => ({ route: 'read', tx: null, pinned });
const write = (pinned = false): Expected => ({ route: 'write', tx: null, pinned });

function transaction(body: Obj): Expected {
  const modes = txModes(body['options']);
  const readOnly = modes.readOnly === true && !modes.serializable;
  switch (body['kind']) {
    case 'TRANS_STMT_BEGIN':
    case 'TRANS_STMT_START':
      return readOnly
        ? { route: 'read', tx: 'begin-read-only', pinned: false }
        : { route: 'write', tx: 'begin', pinned: false };
    case 'TRANS_STMT_COMMIT':
      return { route: 'read', tx: 'commit', pinned: false };
    case 'TRANS_STMT_ROLLBACK':
      return { route: 'read', tx: 'rollback', pinned: false };
    case 'TRANS_STMT_SAVEPOINT':
    case 'TRANS_STMT_RELEASE':
    case 'TRANS_STMT_ROLLBACK_TO':
      return read();
    default: // PREPARE TRANSACTION, COMMIT PREPARED, ROLLBACK PREPARED
      return write();
  }
}

function variableSet(body: Obj): Expected {
  if (body['name'] === 'TRANSACTION') {
    const modes = txModes(body['args']);
    if (modes.readOnly === true && !modes.serializable) {
      return { route: 'read', tx: 'set-tx-read-only', pinned: false };
    }
    return modes.serializable || modes.readOnly === false ? write() : read();
  }
  if (body['name'] === 'TRANSACTION SNAPSHOT') return read();
  return read(body['is_local'] !== true);
}

function explain(body: Obj): Expected {
  let analyze = false;
  for (const [type, def] of nodes(body['options'])) {
    if (type !== 'DefElem' || def['defname'] !== 'analyze') continue;
    const arg = obj(def['arg']);
    if (arg['String'] !== undefined) analyze = !['false', 'off'].includes(String(obj(arg['String'])['sval']));
    else if (arg['Integer'] !== undefined) analyze = obj(arg['Integer'])['ival'] !== undefined;
    else analyze = true;
  }
  if (!analyze) return read();
  const inner = statement(body['query']);
  return { route: inner.route, tx: null, pinned: inner.pinned };
}

/** CREATE-family statements: temp persistence, or anything qualified with pg_temp. */
function create(type: string, body: Obj): Expected {
  const rel = body['relation'] ?? body['view'] ?? body['sequence'] ?? obj(body['into'])['rel'];
  let pinned = isTempRel(rel);
  if (stringList(body['funcname'])[0] === 'pg_temp') pinned = true;
  if (nodes({ root: body }).some(([t, n]) => t === 'RangeVar' && n['schemaname'] === 'pg_temp'))
    pinned = true;
  if (type === 'CreateTableAsStmt' && body['objtype'] === 'OBJECT_TABLE')
    pinned ||= query(body['query']).pinned;
  return write(pinned);
}

const CREATE_NODES = new Set(['ViewStmt', 'IndexStmt', 'DefineStmt', 'CompositeTypeStmt', 'RuleStmt']);

/** The oracle's verdict for one wrapped statement node. */
function statement(node: unknown): Expected {
  const [type, body] = unwrap(node);
  if (type === 'SelectStmt') return query(node);
  if (DML_NODES.has(type) || type === 'CallStmt') return write(query(node).pinned);
  if (type.startsWith('Create') || CREATE_NODES.has(type)) return create(type, body);
  switch (type) {
    case 'TransactionStmt':
      return transaction(body);
    case 'VariableSetStmt':
      return variableSet(body);
    case 'VariableShowStmt':
    case 'FetchStmt':
    case 'ClosePortalStmt':
    case 'ConstraintsSetStmt':
      return read();
    case 'ExplainStmt':
      return explain(body);
    case 'CopyStmt': {
      if (body['is_from'] === true) return write();
      if (body['query'] === undefined) return read();
      const inner = statement(body['query']);
      return { route: inner.route, tx: null, pinned: inner.pinned };
    }
    case 'PrepareStmt':
    case 'LoadStmt':
      return read(true);
    case 'ListenStmt':
      return write(true);
    case 'DeclareCursorStmt': {
      const CURSOR_OPT_HOLD = 0x0020; // src/include/nodes/parsenodes.h
      const q = query(body['query']);
      return { ...q, pinned: q.pinned || (Number(body['options'] ?? 0) & CURSOR_OPT_HOLD) !== 0 };
    }
    default: // DDL, utility statements, EXECUTE, DEALLOCATE, DISCARD, NOTIFY, ...: the safe default
      return write();
  }
}

/** Whole-text expectation: any write, first tx action, any pin; statement count from the parser. */
function oracle(sql: string) {
  const stmts = parseSync(sql).stmts ?? [];
  const verdicts = stmts.map((s) => statement(s.stmt));
  let hint: 'primary' | 'replica' | null = null;
  for (const token of scanSync(sql).tokens) {
    if (hint !== null || (token.tokenName !== 'C_COMMENT' && token.tokenName !== 'SQL_COMMENT')) continue;
    const m = /rwsplit\s*:\s*(primary|replica)\b/i.exec(token.text);
    if (m?.[1] !== undefined) hint = m[1].toLowerCase() === 'primary' ? 'primary' : 'replica';
  }
  return {
    route: verdicts.some((v) => v.route === 'write') ? 'write' : 'read',
    tx: verdicts.find((v) => v.tx !== null)?.tx ?? null,
    pinned: verdicts.some((v) => v.pinned),
    statementCount: stmts.length,
    hint,
  };
}

describe('classifier vs the PostgreSQL parser', () => {
  test('the corpus is large and distinct', () => {
    assert.ok(CORPUS.length >= 300, `corpus has ${CORPUS.length} statements`);
    assert.equal(new Set(CORPUS).size, CORPUS.length);
  });

  test('every corpus statement parses and is classified as the parse tree says', async () => {
    await loadModule();
    const classifier = new Classifier();
    const unparsable: string[] = [];
    const mismatches: Array<{ sql: string; expected: unknown; actual: unknown }> = [];
    for (const sql of CORPUS) {
      let expected;
      try {
        expected = oracle(sql);
      } catch (err) {
        unparsable.push(`${sql}: ${(err as Error).message}`);
        continue;
      }
      const c = classifier.classify(sql);
      const actual = {
        route: c.route,
        tx: c.tx,
        pinned: c.pin !== null,
        statementCount: c.statementCount,
        hint: c.hint,
      };
      if (!isDeepStrictEqual(actual, expected)) mismatches.push({ sql, expected, actual });
    }
    assert.deepEqual(unparsable, []);
    assert.deepEqual(mismatches, []);
  });
});
