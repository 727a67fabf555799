import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { KeyTemplate, KeyTemplateError } from './key-template.js';
import { jsonValue, rowCommands, type OutputColumn } from './row-format.js';
import { pageStart } from './change-stream.js';

const cols: OutputColumn[] = [
  { name: 'id', index: 0, typeOid: 20 },
  { name: 'name', index: 1, typeOid: 25 },
  { name: 'doc', index: 2, typeOid: 3802 },
];

describe('key templates', () => {
  test('render, match and scan pattern', () => {
    const t = new KeyTemplate('t*[x]:{tenant}:{id}');
    assert.deepEqual(t.columns, ['tenant', 'id']);
    assert.equal(
      t.render((c) => ({ tenant: 'a:b', id: '7' })[c] ?? null),
      't*[x]:a:b:7',
    );
    assert.equal(t.pattern(), 't\\*\\[x\\]:*:*');
    assert.ok(t.matches('t*[x]:a:7'));
    assert.ok(!t.matches('tx[x]:a:7'));
    assert.ok(!t.matches('t*[x]:a'));
    assert.throws(() => t.render(() => null), KeyTemplateError);
    assert.throws(() => new KeyTemplate('static'), KeyTemplateError);
  });
});

describe('row formats', () => {
  test('hash: a whole row replaces the key; NULL has no field; unchanged TOAST keeps its field', () => {
    const row = [{ kind: 'text', text: '1' }, { kind: 'null' }, { kind: 'text', text: '{}' }] as const;
    assert.deepEqual(rowCommands('hash', 'k', cols, [...row], true), [
      ['DEL', 'k'],
      ['HSET', 'k', 'id', '1', 'doc', '{}'],
    ]);
    const partial = [{ kind: 'text', text: '1' }, { kind: 'null' }, { kind: 'unchanged' }] as const;
    assert.deepEqual(rowCommands('hash', 'k', cols, [...partial], false), [
      ['HDEL', 'k', 'name'],
      ['HSET', 'k', 'id', '1'],
    ]);
  });

  test('json: typed values; an unchanged TOASTed column is merged in by a script', () => {
    const row = [
      { kind: 'text', text: '12' },
      { kind: 'text', text: 'x' },
      { kind: 'text', text: '{"a":[1]}' },
    ] as const;
    assert.deepEqual(rowCommands('json', 'k', cols, [...row], false), [
      ['SET', 'k', '{"id":12,"name":"x","doc":{"a":[1]}}'],
    ]);
    const partial = [{ kind: 'text', text: '12' }, { kind: 'null' }, { kind: 'unchanged' }] as const;
    const [cmd] = rowCommands('json', 'k', cols, [...partial], false);
    assert.equal(cmd![0], 'EVAL');
    assert.deepEqual(cmd!.slice(2), ['1', 'k', '{"id":12,"name":null}', '["doc"]']);
    assert.equal(jsonValue(20, '9007199254740993'), '9007199254740993');
    assert.equal(jsonValue(16, 'f'), false);
    assert.equal(jsonValue(701, 'Infinity'), 'Infinity');
    assert.equal(jsonValue(1700, '1.10'), '1.10');
  });

  test('a token inside a WAL page header is the page boundary', () => {
    assert.equal(pageStart(0x2000n + 24n), 0x2000n);
    assert.equal(pageStart(0x2000n + 40n), 0x2000n);
    assert.equal(pageStart(0x2000n + 48n), 0x2000n + 48n);
    assert.equal(pageStart(0x2000n), 0x2000n);
  });
});
