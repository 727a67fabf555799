import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { RwsplitPgError } from '../errors.js';
import { IdleTransactionWatch, type IdleTransactionSubject } from './idle-transaction.js';

class FakeSession implements IdleTransactionSubject {
  clientFrames = 0;
  inTransaction = true;
  ended: RwsplitPgError | null = null;
  idleInTransaction(): boolean {
    return this.inTransaction && this.ended === null;
  }
  fatal(err: RwsplitPgError): void {
    this.ended = err;
  }
}

describe('IdleTransactionWatch', () => {
  test('ends a session idle in a transaction for the timeout, with 25P03', () => {
    const s = new FakeSession();
    const watch = new IdleTransactionWatch(1000, () => [s]);
    watch.sweep(0);
    watch.sweep(999);
    assert.equal(s.ended, null);
    watch.sweep(1000);
    const err = s.ended as RwsplitPgError | null;
    assert.equal(err?.sqlstate, '25P03');
    assert.equal(err?.severity, 'FATAL');
    assert.equal(err?.message, 'terminating connection due to idle-in-transaction timeout');
    assert.match(err?.hint ?? '', /postgres\.pool\.idleInTransactionTimeoutMs/);
  });

  test('a message from the client restarts the clock; leaving the transaction stops it', () => {
    const s = new FakeSession();
    const watch = new IdleTransactionWatch(1000, () => [s]);
    watch.sweep(0);
    s.clientFrames++;
    watch.sweep(900);
    watch.sweep(1800);
    assert.equal(s.ended, null, 'idle for 900 ms only since its last message');
    s.inTransaction = false;
    watch.sweep(2000);
    s.inTransaction = true;
    watch.sweep(2500);
    watch.sweep(3400);
    assert.equal(s.ended, null, 'the transaction it is in now has been idle 900 ms');
    watch.sweep(3500);
    assert.notEqual(s.ended, null);
  });

  test('sweeps a tenth of the timeout apart, within 10 ms and 1 s', () => {
    assert.equal(new IdleTransactionWatch(500, () => []).intervalMs, 50);
    assert.equal(new IdleTransactionWatch(50, () => []).intervalMs, 10);
    assert.equal(new IdleTransactionWatch(600_000, () => []).intervalMs, 1000);
  });
});
