import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, validateConfig } from './load.js';

const nodes = [{ id: 'a', host: '127.0.0.1' }];

describe('postgres.pool timeouts', () => {
  test('defaults: a 5 s pool wait, no idle-in-transaction limit', () => {
    const pool = validateConfig({ postgres: { nodes } }).postgres!.pool;
    assert.equal(pool.queryWaitTimeoutMs, 5000);
    assert.equal(pool.idleInTransactionTimeoutMs, 0);
    assert.equal(pool.size, 20);
  });

  test('acquireTimeoutMs, the first name of queryWaitTimeoutMs, is still accepted', () => {
    const pool = validateConfig({ postgres: { nodes, pool: { acquireTimeoutMs: 700 } } }).postgres!.pool;
    assert.equal(pool.queryWaitTimeoutMs, 700);
    assert.ok(!('acquireTimeoutMs' in pool));
    // Both names at once: the old one is refused, so nobody wonders which one applies.
    assert.throws(
      () => validateConfig({ postgres: { nodes, pool: { acquireTimeoutMs: 700, queryWaitTimeoutMs: 900 } } }),
      (e: Error) => /unknown key acquireTimeoutMs in postgres\.pool/.test(e.message),
    );
  });

  test('a negative idle-in-transaction timeout is refused, naming the key', () => {
    assert.throws(
      () => validateConfig({ postgres: { nodes, pool: { idleInTransactionTimeoutMs: -1 } } }),
      (e: Error) => e instanceof ConfigError && /postgres\.pool\.idleInTransactionTimeoutMs/.test(e.message),
    );
  });
});
