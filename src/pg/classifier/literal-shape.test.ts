import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Classifier } from './classify.js';
import { lex } from './lexer.js';
import { selectShape } from './literal-shape.js';

/** The text's tokens, numbers' texts blanked. */
function masked(sql: string): unknown {
  return lex(sql).statements.map((st) => st.map((t) => ({ ...t, text: t.kind === 'number' ? '#' : t.text })));
}

/** No cache: every text is lexed and classified as it is. */
const plain = new Classifier({ cacheSize: 0 });

describe('selectShape', () => {
  test('masks the numbers of a plain SELECT, and only those', () => {
    assert.equal(
      selectShape('SELECT abalance FROM pgbench_accounts WHERE aid = 4711;'),
      'SELECT abalance FROM pgbench_accounts WHERE aid = 0;',
    );
    assert.equal(
      selectShape('  select t1.a, 1.5e3, .5 from t1 limit 10'),
      '  select t1.a, 0, .0 from t1 limit 0',
    );
    assert.equal(selectShape('SELECT a.1x FROM t'), 'SELECT a.0 FROM t');
    assert.equal(selectShape('SELECT é1, 1é FROM t'), 'SELECT é1, 0 FROM t');
  });

  test('gives no shape where the lexer has more to say, or where there is nothing to mask', () => {
    for (const sql of [
      'SELECT a FROM t', // no number
      "SELECT 1 FROM t WHERE a = 'x'", // a string
      'SELECT 1 FROM "t"', // a quoted identifier
      'SELECT $1 + 1', // a parameter
      'SELECT $$x$$, 1',
      'SELECT 1 -- rwsplit:primary',
      'SELECT /* rwsplit:primary */ 1',
      'SELECT 1; DELETE FROM t WHERE id = 2', // two statements
      'SELECT 1; EXPLAIN (ANALYZE 0) DELETE FROM t',
      'EXPLAIN (ANALYZE 0) DELETE FROM t WHERE id = 1', // not a SELECT: the number matters here
      'UPDATE t SET a = 1',
      'SELECT1 FROM t',
      '(SELECT 1)',
      "SELECT E'\\'' , 1",
    ])
      assert.equal(selectShape(sql), null, sql);
    assert.equal(selectShape('SELECT 1;  \n'), 'SELECT 0;  \n');
  });

  test('the shape lexes to the same tokens, numbers aside', () => {
    for (const sql of ['SELECT a, f(2, 3.5) FROM t WHERE b IN (1, 2) FOR UPDATE;', 'SELECT a.5, t.1x FROM t'])
      assert.deepEqual(masked(selectShape(sql)!), masked(sql), sql);
  });

  test('a text and its shape classify alike, cached or not (random SELECT texts)', () => {
    const piece = fc.constantFrom(
      'select',
      'from',
      't',
      't1',
      'a.b',
      'where',
      'for',
      'update',
      'share',
      'key',
      'no',
      'into',
      'temp',
      'table',
      'pg_temp',
      'nextval',
      'set_config',
      'pg_advisory_lock',
      'true',
      'insert',
      'delete',
      'with',
      'limit',
      '1',
      '42',
      '1.5',
      '.5',
      '1e10',
      '0x1F',
      '7abc',
      '(',
      ')',
      ',',
      '.',
      '=',
      '+',
      '*',
      '<',
      ';',
    );
    const sep = fc.constantFrom(' ', '  ', '\n', '\t', '');
    const text = fc
      .array(fc.tuple(piece, sep), { maxLength: 16 })
      .chain((parts) =>
        fc
          .constantFrom('SELECT ', 'select ', ' Select\t')
          .map((head) => head + parts.map(([p, s]) => p + s).join('')),
      );
    const cached = new Classifier();
    fc.assert(
      fc.property(text, (sql) => {
        const expected = plain.classify(sql);
        assert.deepEqual(cached.classify(sql), expected, sql);
        const shape = selectShape(sql);
        if (shape === null) return;
        assert.deepEqual(plain.classify(shape), expected, `${sql} / ${shape}`);
        assert.deepEqual(masked(shape), masked(sql), `${sql} / ${shape}`);
      }),
      { numRuns: 3000 },
    );
  });

  test('texts differing only in their numbers share one classification', () => {
    const classifier = new Classifier({ cacheSize: 1000 });
    const first = classifier.classify('SELECT abalance FROM pgbench_accounts WHERE aid = 1;');
    for (let aid = 2; aid <= 100; aid++)
      assert.equal(classifier.classify(`SELECT abalance FROM pgbench_accounts WHERE aid = ${aid};`), first);
    const lock = classifier.classify('SELECT a FROM t WHERE id = 5 FOR UPDATE');
    assert.equal(lock.route, 'write');
    assert.equal(classifier.classify('SELECT a FROM t WHERE id = 6 FOR UPDATE'), lock);
  });
});
