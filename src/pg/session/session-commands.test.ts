import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decodeErrorFields, encodeQuery } from '../protocol/index.js';
import {
  applySessionCommand,
  mayBeSessionCommand,
  parseSessionCommand,
  type SessionSettings,
} from './session-commands.js';

describe('rwsplit session commands', () => {
  test('the byte pre-check accepts SET/SHOW/RESET and rejects common statements', () => {
    for (const sql of ['SET rwsplit.x = 1', '  show rwsplit.x', '\nreset rwsplit.x'])
      assert.equal(mayBeSessionCommand(encodeQuery(sql)), true, sql);
    for (const sql of ['SELECT 1', 'select 1', 'RELEASE x', 'SHARE'])
      assert.equal(mayBeSessionCommand(encodeQuery(sql)), false, sql);
    for (const sql of [
      'INSERT INTO t VALUES (1)',
      'UPDATE t SET a = 1',
      'BEGIN',
      'with x as (select 1) select 1',
    ])
      assert.equal(mayBeSessionCommand(encodeQuery(sql)), false, sql);
  });

  test('parses the forms PostgreSQL accepts for SET, SHOW and RESET', () => {
    assert.deepEqual(parseSessionCommand('SHOW rwsplit.causal_token'), {
      kind: 'show',
      name: 'causal_token',
    });
    assert.deepEqual(parseSessionCommand("set rwsplit.causal_token = 'v1:default@0/1';"), {
      kind: 'set',
      name: 'causal_token',
      value: 'v1:default@0/1',
    });
    assert.deepEqual(parseSessionCommand('SET SESSION rwsplit.consistency TO strong'), {
      kind: 'set',
      name: 'consistency',
      value: 'strong',
    });
    assert.deepEqual(parseSessionCommand("SET rwsplit.shard_key = 'it''s'"), {
      kind: 'set',
      name: 'shard_key',
      value: "it's",
    });
    assert.deepEqual(parseSessionCommand('RESET rwsplit.consistency'), {
      kind: 'set',
      name: 'consistency',
      value: null,
    });
    assert.deepEqual(parseSessionCommand('SET rwsplit.consistency TO DEFAULT'), {
      kind: 'set',
      name: 'consistency',
      value: null,
    });
    assert.equal(parseSessionCommand('SET search_path = x'), null);
    assert.equal(parseSessionCommand('SET rwsplit.consistency = strong; SELECT 1'), null);
  });

  test('applies settings and answers in the protocol', () => {
    const s: SessionSettings = {
      consistency: 'read-your-writes',
      defaultConsistency: 'read-your-writes',
      token: new Map(),
      shardKey: null,
    };
    const tags = (frames: Buffer[]) => frames.map((f) => String.fromCharCode(f[0]!)).join('');
    assert.equal(
      tags(applySessionCommand({ kind: 'set', name: 'consistency', value: 'eventual' }, s, 'default')),
      'C',
    );
    assert.equal(s.consistency, 'eventual');
    assert.equal(tags(applySessionCommand({ kind: 'show', name: 'consistency' }, s, 'default')), 'TDC');
    const bad = applySessionCommand({ kind: 'set', name: 'consistency', value: 'often' }, s, 'default');
    assert.equal(decodeErrorFields(bad[0]!).get('C'), '22023');
    assert.equal(s.consistency, 'eventual');
    applySessionCommand({ kind: 'set', name: 'causal_token', value: '0/10' }, s, 'default');
    applySessionCommand({ kind: 'set', name: 'causal_token', value: '0/5' }, s, 'default');
    assert.equal(s.token.get('default'), 0x10n, 'a handed-over token never lowers the session token');
    applySessionCommand({ kind: 'set', name: 'causal_token', value: null }, s, 'default');
    assert.equal(s.token.size, 0);
    const unknown = applySessionCommand({ kind: 'show', name: 'nope' }, s, 'default');
    assert.equal(decodeErrorFields(unknown[0]!).get('C'), '42704');
  });
});
