import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { lex } from '../classifier/lexer.js';
import { RwsplitPgError } from '../errors.js';
import { CopyRowError, CopyRowSplitter, copyInPlan, decodeTextField } from './shard-copy.js';
import { ShardResolver } from './shard-resolver.js';

const resolver = new ShardResolver(['s1', 's2'], {
  hash: { distribution: 'ketama', function: 'fnv1a_64' },
  tables: [
    { table: 'accounts', column: 'id' },
    { table: 'app.orders', column: 'customer_id' },
  ],
  referenceTables: ['plans'],
});
const plan = (sql: string): ReturnType<typeof copyInPlan> => copyInPlan(lex(sql).statements[0]!, resolver);
const shardIndex = (key: string): number => (resolver.shardForKey(key) === 's1' ? 0 : 1);

describe('COPY FROM STDIN plans', () => {
  test('sharded and reference tables, with and without a column list', () => {
    assert.deepEqual(plan('COPY accounts FROM STDIN'), {
      table: ['accounts'],
      columns: null,
      keyColumn: 'id',
    });
    assert.deepEqual(plan('copy app.orders (id, Customer_Id) from stdin with (freeze on)'), {
      table: ['app', 'orders'],
      columns: ['id', 'customer_id'],
      keyColumn: 'customer_id',
    });
    assert.deepEqual(plan('COPY plans FROM STDIN'), { table: ['plans'], columns: null, keyColumn: null });
  });

  test('other tables and other COPY forms are not this plan; unsplittable formats are refused', () => {
    assert.equal(plan('COPY other FROM STDIN'), null);
    assert.equal(plan('COPY accounts TO STDOUT'), null);
    assert.equal(plan("COPY accounts FROM '/tmp/x'"), null);
    for (const sql of [
      'COPY accounts FROM STDIN (FORMAT csv)',
      'COPY accounts FROM STDIN WITH CSV',
      'COPY accounts FROM STDIN (FORMAT binary)',
      "COPY accounts FROM STDIN (DELIMITER '|')",
    ]) {
      const p = plan(sql);
      assert.ok(p instanceof RwsplitPgError, sql);
      assert.equal(p.sqlstate, '0A000');
    }
  });
});

describe('CopyRowSplitter', () => {
  test('rows go to the shard of their key field, lines cut across chunks included', () => {
    const split = new CopyRowSplitter(1, 2, shardIndex);
    const rows = Array.from({ length: 40 }, (_, i) => `x${i}\t${i}\tv\n`).join('');
    const got: string[] = ['', ''];
    for (let at = 0; at < rows.length; at += 7) {
      const parts = split.push(Buffer.from(rows.slice(at, at + 7)));
      parts.forEach((p, i) => (got[i] += p.toString()));
    }
    split.finish().forEach((p, i) => (got[i] += p.toString()));
    for (const [i, text] of got.entries()) {
      const lines = text.split('\n').filter((l) => l !== '');
      for (const l of lines) assert.equal(shardIndex(l.split('\t')[1]!), i, l);
    }
    assert.equal(
      got
        .join('')
        .split('\n')
        .filter((l) => l !== '').length,
      40,
    );
    assert.ok(
      got.every((t) => t.length > 0),
      'both shards get rows',
    );
  });

  test('a last line without newline, the end marker, a NULL key, a short row, a reference table', () => {
    const split = new CopyRowSplitter(0, 2, shardIndex);
    const a = split.push(Buffer.from('7\ta\n8\tb'));
    const b = split.finish();
    assert.equal(a.concat(b).map(String).join('').split('\n').filter(Boolean).sort().join(','), '7\ta,8\tb');
    const ended = new CopyRowSplitter(0, 2, shardIndex);
    const parts = ended.push(Buffer.from('1\tx\n\\.\n2\ty\n'));
    assert.equal(parts.map(String).join(''), '1\tx\n');
    assert.throws(() => new CopyRowSplitter(0, 2, shardIndex).push(Buffer.from('\\N\tx\n')), CopyRowError);
    const short = new CopyRowSplitter(3, 2, shardIndex).push(Buffer.from('1\t2\n'));
    assert.deepEqual(short.map(String), ['1\t2\n', ''], 'the first shard rejects it with its own error');
    const all = new CopyRowSplitter(null, 2, shardIndex).push(Buffer.from('a\n'));
    assert.deepEqual(all.map(String), ['a\n', 'a\n']);
  });

  test('key fields are decoded as the server decodes them', () => {
    assert.equal(decodeTextField(Buffer.from('42')), '42');
    assert.equal(decodeTextField(Buffer.from('\\N')), null);
    assert.equal(decodeTextField(Buffer.from('a\\tb\\\\c\\101\\x42\\q')), 'a\tb\\cABq');
    assert.equal(decodeTextField(Buffer.from('caf\\303\\251')), 'café');
  });
});
