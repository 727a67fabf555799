import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { findSignalCall, withCallAnswered, withPid } from './backend-signal.js';

describe('findSignalCall', () => {
  test('a literal pid, with its span', () => {
    const q = 'SELECT pg_cancel_backend( 4242 )';
    const call = findSignalCall(q)!;
    assert.equal(call.fn, 'pg_cancel_backend');
    assert.equal(call.pid, 4242);
    assert.equal(withPid(q, call, 17), 'SELECT pg_cancel_backend( 17 )');
    const t = findSignalCall('select pg_catalog.PG_TERMINATE_BACKEND(99, 5000) AS t')!;
    assert.equal(t.fn, 'pg_terminate_backend');
    assert.equal(t.pid, 99);
  });

  test('a pid from a query is not a literal', () => {
    const call = findSignalCall('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1')!;
    assert.equal(call.fn, 'pg_terminate_backend');
    assert.equal(call.pid, null);
    assert.equal(findSignalCall('SELECT pg_cancel_backend(12 + 3)')?.pid, null);
  });

  test('not a call: other statements, strings, comments, two calls', () => {
    assert.equal(findSignalCall("SELECT 'pg_cancel_backend(1)'"), null);
    assert.equal(findSignalCall('SELECT 1 /* pg_cancel_backend(1) */'), null);
    assert.equal(findSignalCall('SELECT pg_cancel_backend(1), pg_cancel_backend(2)'), null);
    assert.equal(findSignalCall('SELECT pg_cancel_backend(1); SELECT 2'), null);
    assert.equal(findSignalCall('DELETE FROM t WHERE pg_cancel_backend(1)'), null);
  });
});

describe('withCallAnswered', () => {
  test('named like the call when it stands alone, as the server names it', () => {
    const q = 'SELECT pg_terminate_backend(4194305)';
    assert.equal(withCallAnswered(q, findSignalCall(q)!), 'SELECT true AS pg_terminate_backend');
    const aliased = 'SELECT pg_cancel_backend(4194305) AS c';
    assert.equal(withCallAnswered(aliased, findSignalCall(aliased)!), 'SELECT true AS c');
    const inside = 'SELECT NOT pg_cancel_backend(4194305);';
    assert.equal(withCallAnswered(inside, findSignalCall(inside)!), 'SELECT NOT true;');
  });
});
