import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Classifier,
  DEFAULT_WRITE_FUNCTIONS,
  MAX_CACHED_TEXT_LENGTH,
  type Classification,
} from './classify.js';
import { GenerationalCache } from './cache.js';
import { findHint, lex } from './lexer.js';

const classifier = new Classifier();
const c = (sql: string): Classification => classifier.classify(sql);

function assertRoutes(route: 'read' | 'write', statements: readonly string[]): void {
  for (const sql of statements) assert.equal(c(sql).route, route, sql);
}

function assertPins(statements: readonly string[], pinned = true): void {
  for (const sql of statements) assert.equal(c(sql).pin !== null, pinned, `${sql}: pin ${c(sql).pin}`);
}

describe('reads', () => {
  test('queries without writes are reads', () => {
    assertRoutes('read', [
      'SELECT 1',
      'VALUES (1), (2)',
      'TABLE t',
      'SHOW search_path',
      '(SELECT 1)',
      '  ((select 1) union (select 2))',
      'WITH a AS (SELECT 1) SELECT * FROM a',
      'EXPLAIN DELETE FROM t',
      'EXPLAIN ANALYZE SELECT * FROM t',
      'FETCH 10 FROM c',
      'MOVE NEXT IN c',
      'CLOSE c',
      'SELECT lower(x), now() FROM t',
      'SELECT * FROM t FOR READ ONLY',
      "SELECT substring('abc' FROM 1 FOR 2)",
    ]);
  });

  test('keywords inside strings, comments and quoted identifiers do not count', () => {
    assertRoutes('read', [
      "SELECT 'DELETE FROM x'",
      "SELECT 'it''s; DELETE FROM t'",
      "SELECT E'it\\'s; DELETE FROM t'",
      "SELECT U&'d\\0061t\\+000061; DROP TABLE t'",
      'SELECT $$DELETE FROM t$$',
      'SELECT $body$ ; INSERT INTO t VALUES (1); $body$',
      'SELECT 1 /* nested /* */ DELETE FROM t */',
      'SELECT 1 -- ; DELETE FROM t',
      'SELECT "delete", "for" "update" FROM t',
      "SELECT 'nextval(1)'",
      "SELECT 'x' FROM t WHERE a = 'FOR UPDATE'",
    ]);
  });

  test('a $1 parameter is not a dollar quote', () => {
    const r = c('SELECT $1::int; DELETE FROM t WHERE id = $2');
    assert.equal(r.route, 'write');
    assert.equal(r.statementCount, 2);
  });

  test('COPY to the client reads, COPY from the client writes', () => {
    assertRoutes('read', ['COPY t TO STDOUT', 'COPY t (a, b) TO STDOUT', 'COPY (SELECT * FROM t) TO STDOUT']);
    assertRoutes('write', [
      'COPY t FROM STDIN',
      'COPY t (a) FROM STDIN',
      'COPY (DELETE FROM t RETURNING *) TO STDOUT',
    ]);
  });
});

describe('writes', () => {
  test('DML and DDL are writes; unknown statements default to write', () => {
    assertRoutes('write', [
      'INSERT INTO t VALUES (1)',
      'UPDATE t SET x = 1',
      'DELETE FROM t',
      'MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE',
      'CREATE TABLE t (a int)',
      'ALTER TABLE t ADD c int',
      'DROP TABLE t',
      'TRUNCATE t',
      'GRANT SELECT ON t TO u',
      'VACUUM',
      'ANALYZE t',
      'REFRESH MATERIALIZED VIEW mv',
      'LOCK TABLE t',
      'CALL p()',
      'DO $$ BEGIN END $$',
      'CHECKPOINT',
      'NOTIFY ch',
      'UNLISTEN ch',
      'EXECUTE p',
      "PREPARE TRANSACTION 'g'",
      "COMMIT PREPARED 'g'",
      "ROLLBACK PREPARED 'g'",
      'FROBNICATE everything',
      '"quoted" start',
      'constructor',
    ]);
  });

  test('row locks, SELECT INTO and data-modifying CTEs make a query a write', () => {
    assertRoutes('write', [
      'SELECT * FROM t FOR UPDATE',
      'SELECT * FROM t FOR NO KEY UPDATE',
      'select * from t for share',
      'SELECT * FROM t FOR KEY SHARE SKIP LOCKED',
      'SELECT * FROM (SELECT * FROM t FOR UPDATE) s',
      'SELECT * INTO newtable FROM t',
      'WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d',
      'WITH d AS MATERIALIZED (UPDATE t SET x = 1 RETURNING *) SELECT * FROM d',
      'WITH a AS (WITH b AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM b) SELECT * FROM a',
      'WITH a AS (SELECT 1), b AS (SELECT 2) INSERT INTO t SELECT * FROM a, b',
      'WITH a AS (SELECT 1) DELETE FROM t',
      '(WITH a AS (SELECT 1) UPDATE t SET x = 1)',
    ]);
  });

  test('EXPLAIN ANALYZE runs the statement; plain EXPLAIN does not', () => {
    assertRoutes('write', [
      'EXPLAIN ANALYZE DELETE FROM t',
      'EXPLAIN ANALYZE VERBOSE UPDATE t SET x = 1',
      'EXPLAIN (ANALYZE) INSERT INTO t VALUES (1)',
      'EXPLAIN (ANALYZE true, BUFFERS) DELETE FROM t',
      'EXPLAIN (VERBOSE, ANALYZE on) DELETE FROM t',
      "EXPLAIN ANALYZE SELECT nextval('s')",
    ]);
    assertRoutes('read', [
      'EXPLAIN (ANALYZE false) DELETE FROM t',
      'EXPLAIN (ANALYZE off, VERBOSE) DELETE FROM t',
      'EXPLAIN VERBOSE DELETE FROM t',
      "EXPLAIN SELECT nextval('s')",
    ]);
  });

  test('write functions count as calls only, wherever they are', () => {
    assertRoutes('write', [
      "SELECT nextval('s')",
      "SELECT pg_catalog.setval('s', 1)",
      'SELECT "nextval"(\'s\')',
      "SELECT * FROM t WHERE id = (SELECT currval('s'))",
      'SELECT lastval()',
      'SELECT pg_advisory_xact_lock(1)',
      "SELECT pg_notify('c', 'p')",
      'SELECT txid_current()',
    ]);
    assertRoutes('read', ["SELECT 'nextval'", 'SELECT nextval FROM t', 'SELECT "NEXTVAL"(\'s\')']);
  });

  test('the write-function list is configurable; session pins are not', () => {
    const custom = new Classifier({ writeFunctions: ['My_Func'] });
    assert.equal(custom.classify('SELECT app.my_func(1)').route, 'write');
    assert.equal(custom.classify("SELECT nextval('s')").route, 'read');
    assert.equal(custom.classify('SELECT pg_advisory_lock(1)').pin, 'advisory lock');
    assert.ok(DEFAULT_WRITE_FUNCTIONS.includes('nextval'));
  });
});

describe('transactions', () => {
  test('BEGIN and its read-only forms', () => {
    for (const sql of [
      'BEGIN',
      'BEGIN WORK',
      'START TRANSACTION',
      'BEGIN READ WRITE',
      'BEGIN READ ONLY, READ WRITE',
    ]) {
      assert.deepEqual([c(sql).tx, c(sql).route], ['begin', 'write'], sql);
    }
    for (const sql of [
      'BEGIN READ ONLY',
      'start transaction read only',
      'START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY',
      'BEGIN READ ONLY ISOLATION LEVEL READ COMMITTED',
    ]) {
      assert.deepEqual([c(sql).tx, c(sql).route], ['begin-read-only', 'read'], sql);
    }
  });

  test('a serializable read-only transaction needs the primary (standbys refuse serializable)', () => {
    assert.equal(c('BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE').tx, 'begin');
    assert.equal(c('SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY').tx, null);
    assert.equal(c('SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY').route, 'write');
  });

  test('COMMIT, ROLLBACK and their look-alikes', () => {
    for (const sql of ['COMMIT', 'END', 'COMMIT WORK', 'COMMIT AND CHAIN'])
      assert.equal(c(sql).tx, 'commit', sql);
    for (const sql of ['ROLLBACK', 'ABORT', 'ROLLBACK AND NO CHAIN'])
      assert.equal(c(sql).tx, 'rollback', sql);
    for (const sql of [
      'ROLLBACK TO SAVEPOINT a',
      'ROLLBACK TO a',
      "COMMIT PREPARED 'g'",
      "ROLLBACK PREPARED 'g'",
    ]) {
      assert.equal(c(sql).tx, null, sql);
    }
    assert.equal(c('SAVEPOINT a').tx, null);
  });

  test('SET TRANSACTION READ ONLY vs session characteristics', () => {
    assert.equal(c('SET TRANSACTION READ ONLY').tx, 'set-tx-read-only');
    assert.equal(c('SET TRANSACTION READ ONLY').pin, null);
    const session = c('SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY');
    assert.equal(session.tx, null);
    assert.equal(session.pin, 'SET');
  });
});

describe('session pins', () => {
  test('SET and RESET pin; SET LOCAL, SET TRANSACTION and SET CONSTRAINTS do not', () => {
    assertPins([
      'SET search_path = app',
      'SET SESSION statement_timeout = 0',
      'set time zone local',
      'RESET search_path',
      'RESET ALL',
      'SET ROLE app',
      'SET SESSION AUTHORIZATION app',
    ]);
    assertPins(['SET LOCAL search_path = app', 'SET LOCAL ROLE app', 'SET CONSTRAINTS ALL DEFERRED'], false);
    assert.equal(c('SET ROLE app').pin, 'SET ROLE');
    assert.equal(c('SET SESSION AUTHORIZATION DEFAULT').pin, 'SET SESSION AUTHORIZATION');
  });

  test('set_config pins unless is_local is the literal true', () => {
    assert.equal(c("SELECT set_config('a.b', 'c', false)").pin, 'set_config');
    assert.equal(c("SELECT set_config('a.b', $1, $2)").pin, 'set_config');
    const local = c("SELECT set_config('a.b', 'c', TRUE)");
    assert.deepEqual([local.route, local.pin], ['write', null]);
  });

  test('temporary objects pin', () => {
    assert.equal(c('CREATE TEMP TABLE x (a int)').pin, 'temp table');
    assert.equal(c('CREATE LOCAL TEMPORARY TABLE x (a int)').pin, 'temp table');
    assert.equal(c('CREATE OR REPLACE TEMP VIEW v AS SELECT 1').pin, 'temp view');
    assert.equal(c('CREATE TEMP SEQUENCE s').pin, 'temp sequence');
    assert.equal(c('CREATE TABLE pg_temp.x (a int)').pin, 'temp object');
    assert.equal(c('SELECT * INTO TEMP x FROM t').pin, 'temp table');
    assert.equal(c('SELECT * INTO TEMPORARY TABLE x FROM t').pin, 'temp table');
    assertPins(
      ['CREATE UNLOGGED TABLE x (a int)', 'SELECT * INTO temp FROM t', 'INSERT INTO temp VALUES (1)'],
      false,
    );
  });

  test('PREPARE, LISTEN, advisory locks, cursors WITH HOLD and LOAD pin', () => {
    assert.deepEqual([c('PREPARE p AS SELECT 1').pin, c('PREPARE p AS SELECT 1').route], ['PREPARE', 'read']);
    assert.equal(c('LISTEN ch').pin, 'LISTEN');
    assert.equal(c('SELECT pg_advisory_lock(1)').pin, 'advisory lock');
    assert.equal(c('SELECT pg_try_advisory_lock_shared(1, 2)').pin, 'advisory lock');
    assert.equal(c('DECLARE c CURSOR WITH HOLD FOR SELECT 1').pin, 'cursor WITH HOLD');
    assert.equal(c("LOAD 'auto_explain'").pin, 'LOAD');
    assertPins(
      ['SELECT pg_advisory_xact_lock(1)', 'UNLISTEN *', 'DECLARE c CURSOR FOR SELECT 1', 'EXECUTE p'],
      false,
    );
    assert.equal(c('DECLARE c CURSOR FOR SELECT * FROM t FOR UPDATE').route, 'write');
    assert.equal(c('DECLARE c CURSOR FOR SELECT 1').route, 'read');
  });

  test('DISCARD and DEALLOCATE reset prepared statements but do not pin', () => {
    for (const sql of [
      'DISCARD ALL',
      'DISCARD PLANS',
      'DEALLOCATE p',
      'DEALLOCATE ALL',
      'DEALLOCATE PREPARE p',
    ]) {
      const r = c(sql);
      assert.deepEqual([r.route, r.pin, r.resetsPrepared], ['write', null, true], sql);
    }
    for (const sql of ['DISCARD TEMP', 'DISCARD SEQUENCES']) assert.equal(c(sql).resetsPrepared, false, sql);
  });
});

describe('hints', () => {
  test('block and line comments, any case, whitespace tolerated', () => {
    assert.equal(c('/* rwsplit:primary */ SELECT 1').hint, 'primary');
    assert.equal(c('SELECT 1 /*   RWSPLIT : Replica   */').hint, 'replica');
    assert.equal(c('SELECT 1 -- rwsplit:primary').hint, 'primary');
    assert.equal(c('/* a /* rwsplit:replica */ b */ SELECT 1').hint, 'replica');
    assert.equal(c('SELECT 1').hint, null);
  });

  test('hints in strings or with other words do not count; the first hint wins', () => {
    assert.equal(c("SELECT '/* rwsplit:primary */'").hint, null);
    assert.equal(c('/* rwsplit:primaryx */ SELECT 1').hint, null);
    assert.equal(c('/* rwsplit:replica */ SELECT 1 /* rwsplit:primary */').hint, 'replica');
    assert.equal(findHint('-- rwsplit  primary'), null);
  });

  test('hints are reported, not applied', () => {
    const r = c('/* rwsplit:replica */ DELETE FROM t');
    assert.deepEqual([r.route, r.hint], ['write', 'replica']);
  });
});

describe('statements and lexing', () => {
  test('multi-statement texts: any write, first pin, first tx action', () => {
    const r = c('SELECT 1; SET a = 1; SELECT pg_advisory_lock(1); BEGIN; COMMIT; DISCARD ALL');
    assert.deepEqual(
      [r.route, r.pin, r.tx, r.resetsPrepared, r.statementCount],
      ['write', 'SET', 'begin', true, 6],
    );
    assert.equal(c('SELECT 1; SELECT 2').route, 'read');
    assert.equal(c('BEGIN READ ONLY; SELECT 1; COMMIT').tx, 'begin-read-only');
  });

  test('statement count ignores empty statements and semicolons in quotes', () => {
    assert.equal(c('').statementCount, 0);
    assert.equal(c(' ;; -- nothing').statementCount, 0);
    assert.equal(c('SELECT 1;;SELECT 2;').statementCount, 2);
    assert.equal(c('SELECT \';\'; SELECT $$;$$; SELECT ";" FROM t').statementCount, 3);
    assert.equal(c('').route, 'read');
  });

  test('SQL-standard function bodies keep their semicolons', () => {
    const sql =
      'CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END; SELECT 3';
    assert.equal(c(sql).statementCount, 2);
  });

  test('odd whitespace and unbalanced input do not break the lexer', () => {
    assert.equal(c('\f\t\r\n\vSELECT\f1').route, 'read');
    assert.equal(c('SELECT (1; DELETE FROM t').route, 'write');
    assert.equal(c("SELECT 'unterminated; DELETE FROM t").route, 'read');
    assert.equal(c('SELECT $q$ unterminated; DELETE').statementCount, 1);
  });

  test('tokens: words folded, quoted identifiers kept, parenthesis depth tracked', () => {
    const [stmt] = lex('SELECT "A""b", f(x) FROM T').statements;
    assert.deepEqual(
      stmt?.map((t) => [t.kind, t.text, t.depth]),
      [
        ['word', 'select', 0],
        ['qident', 'A"b', 0],
        ['punct', ',', 0],
        ['word', 'f', 0],
        ['punct', '(', 0],
        ['word', 'x', 1],
        ['punct', ')', 0],
        ['word', 'from', 0],
        ['word', 't', 0],
      ],
    );
  });
});

describe('cache', () => {
  test('a repeated text returns the same frozen result', () => {
    const local = new Classifier();
    const first = local.classify('SELECT 42');
    assert.equal(local.classify('SELECT 42'), first);
    assert.ok(Object.isFrozen(first));
    assert.deepEqual(new Classifier({ cacheSize: 0 }).classify('SELECT 42'), first);
  });

  test('texts over the size limit are classified but not cached', () => {
    const local = new Classifier();
    const long = `SELECT 1 /* ${'x'.repeat(MAX_CACHED_TEXT_LENGTH)} */`;
    const first = local.classify(long);
    assert.equal(first.route, 'read');
    assert.notEqual(local.classify(long), first);
    assert.deepEqual(local.classify(long), first);
  });

  test('a statement used in every generation stays cached; one-off texts are dropped', () => {
    const cache = new GenerationalCache<number>(4, 1000); // two generations of 2
    cache.set('hot', 1);
    for (let i = 0; i < 20; i++) {
      cache.set(`one-off ${i}`, i);
      assert.equal(cache.get('hot'), 1, `hot survives rotation ${i}`);
    }
    assert.equal(cache.get('one-off 0'), undefined);
    assert.ok(cache.size <= 4, `size ${cache.size}`);
  });

  test('the key-length budget bounds memory and refuses oversized keys', () => {
    const cache = new GenerationalCache<number>(100, 20); // 10 characters per generation
    cache.set('aaaa', 1);
    cache.set('bbbb', 2);
    cache.set('cccc', 3); // young is full: rotate
    assert.deepEqual([cache.get('aaaa'), cache.get('bbbb')], [1, 2]);
    cache.set('x'.repeat(11), 4);
    assert.equal(cache.get('x'.repeat(11)), undefined);
    cache.clear();
    assert.equal(cache.size, 0);
  });
});
