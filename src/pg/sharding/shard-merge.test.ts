import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { lex } from '../classifier/lexer.js';
import { encodeDataRow, encodeRowDescription } from '../protocol/index.js';
import { mergeShardRows, planMerge, rowDescriptionTypes, type MergePlan } from './shard-merge.js';
import { settingChange, ShardSessionState } from './shard-session-state.js';

const plan = (sql: string, params?: (string | null)[]): MergePlan | string =>
  planMerge(lex(sql).statements[0]!, sql, params);

describe('planMerge', () => {
  test('pushes LIMIT + OFFSET down for plain rows, drops it for aggregates', () => {
    const p = plan('SELECT id, name FROM t ORDER BY name DESC, 1 LIMIT 5 OFFSET 3') as MergePlan;
    assert.equal(p.shardSql, 'SELECT id, name FROM t ORDER BY name DESC, 1 LIMIT 8');
    assert.deepEqual(p.order, [
      { column: 1, desc: true, nullsFirst: true },
      { column: 0, desc: false, nullsFirst: false },
    ]);
    assert.deepEqual([p.limit, p.offset], [5, 3]);
    const a = plan('SELECT grp, count(*), sum(q) FROM t GROUP BY grp ORDER BY 2 LIMIT 2') as MergePlan;
    assert.equal(a.shardSql, 'SELECT grp, count(*), sum(q) FROM t GROUP BY grp ORDER BY 2');
    assert.deepEqual(a.combine, ['key', 'count', 'sum']);
    const e = plan('SELECT id FROM t ORDER BY id LIMIT $1 OFFSET $2', ['4', '6']) as MergePlan;
    assert.equal(e.shardSql, 'SELECT id FROM t ORDER BY id LIMIT 10');
    assert.deepEqual(e.cutParams, [0, 1]);
  });

  test('refuses what cannot be merged, with the reason', () => {
    for (const [sql, why] of [
      ['SELECT avg(x) FROM t', /avg/],
      ['SELECT g, count(*) FROM t GROUP BY g HAVING count(*) > 1', /HAVING/],
      ['SELECT a FROM t, u', /join/],
      ['SELECT count(DISTINCT a) FROM t', /DISTINCT/],
      ['SELECT coalesce(max(a), 0) FROM t', /expression over the aggregate/],
      ['SELECT a, count(*) FROM t GROUP BY b', /GROUP BY/],
      ['SELECT a FROM t ORDER BY b', /ORDER BY item/],
      ['SELECT DISTINCT ON (a) a FROM t', /DISTINCT ON/],
    ] as const)
      assert.match(plan(sql) as string, why, sql);
  });
});

describe('mergeShardRows', () => {
  const desc = (cols: [string, number][]): Buffer =>
    encodeRowDescription(cols.map(([name, typeOid]) => ({ name, typeOid })));
  const rows = (frames: Buffer[]): (string | null)[][] =>
    frames
      .filter((f) => f[0] === 0x44)
      .map((f) => {
        const out: (string | null)[] = [];
        let at = 7;
        for (let i = 0; i < f.readInt16BE(5); i++) {
          const len = f.readInt32BE(at);
          at += 4;
          out.push(len < 0 ? null : f.toString('utf8', at, at + len));
          at += Math.max(len, 0);
        }
        return out;
      });

  test('combines counts, decimal sums, min/max per group and sorts numerically', () => {
    const p = plan('SELECT g, count(*), sum(n), min(n) FROM t GROUP BY g ORDER BY 2 DESC, g') as MergePlan;
    const d = desc([
      ['g', 23],
      ['count', 20],
      ['sum', 1700],
      ['min', 1700],
    ]);
    assert.deepEqual(rowDescriptionTypes(d).types, [23, 20, 1700, 1700]);
    const out = mergeShardRows(
      p,
      [
        {
          description: d,
          rows: [encodeDataRow(['1', '2', '1.5', '0.5']), encodeDataRow(['10', '1', '2', '2'])],
        },
        {
          description: d,
          rows: [encodeDataRow(['1', '9', '-3.25', '-10']), encodeDataRow(['2', '3', null, null])],
        },
      ],
      true,
    );
    assert.deepEqual(rows(out), [
      ['1', '11', '-1.75', '-10'],
      ['2', '3', null, null],
      ['10', '1', '2', '2'],
    ]);
    assert.equal(out[out.length - 1]!.toString('utf8', 5, out[out.length - 1]!.length - 1), 'SELECT 3');
  });

  test('refuses text ordering under a linguistic collation and grouping by numeric', () => {
    const p = plan('SELECT name FROM t ORDER BY name') as MergePlan;
    const d = desc([['name', 25]]);
    assert.throws(
      () => mergeShardRows(p, [{ description: d, rows: [encodeDataRow(['b'])] }], false),
      /collation C/,
    );
    const g = plan('SELECT DISTINCT amount FROM t') as MergePlan;
    assert.throws(
      () => mergeShardRows(g, [{ description: desc([['amount', 1700]]), rows: [] }], true),
      /1\.0 and 1\.00/,
    );
  });
});

describe('session settings', () => {
  const change = (sql: string) => settingChange(lex(sql).statements[0]!, sql);
  test('parses SET, SET TIME ZONE, SET LOCAL, RESET; leaves SET ROLE and rwsplit settings alone', () => {
    assert.deepEqual(change("SET application_name = 'x';"), {
      kind: 'set',
      name: 'application_name',
      sql: "SET application_name = 'x'",
    });
    assert.equal(change("SET TIME ZONE 'UTC'")?.kind, 'set');
    assert.deepEqual(change('SET LOCAL work_mem = 1000'), {
      kind: 'local',
      sql: 'SET LOCAL work_mem = 1000',
    });
    assert.deepEqual(change('RESET search_path'), { kind: 'reset', name: 'search_path' });
    assert.deepEqual(change('RESET ALL'), { kind: 'reset-all' });
    assert.equal(change('SET ROLE admin'), null);
    assert.equal(change('SET TRANSACTION READ ONLY'), null);
    assert.equal(change("SET rwsplit.shard_key = '1'"), null);
  });

  test('the last SET of a parameter wins; RESET drops it', () => {
    const s = new ShardSessionState();
    s.record({ kind: 'set', name: 'a', sql: 'SET a = 1' });
    s.record({ kind: 'set', name: 'b', sql: 'SET b = 1' });
    s.record({ kind: 'set', name: 'a', sql: 'SET a = 2' });
    const conn = {} as never;
    assert.equal(s.syncQuery(conn), 'RESET ALL; SET b = 1; SET a = 2');
    assert.equal(s.syncQuery(conn), null);
    s.record({ kind: 'reset', name: 'b' });
    assert.equal(s.syncQuery(conn), 'RESET ALL; SET a = 2');
  });
});
