import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ClientGuard, type BudgetAccount, type ClientKilled } from './client-guard.js';

function account(bytes: number, cut: string[], name: string): BudgetAccount & { bytes: number } {
  const a = {
    protocol: 'redis' as const,
    bytes,
    bufferedBytes: () => a.bytes,
    cutOff: (message: string) => {
      cut.push(`${name}: ${message}`);
      a.bytes = 0;
    },
  };
  return a;
}

test('under the budget nobody is cut off, and the use is measured', () => {
  const g = new ClientGuard(1000, 60_000);
  const cut: string[] = [];
  g.add(account(300, cut, 'a'));
  g.add(account(400, cut, 'b'));
  g.sample();
  assert.equal(g.used, 700);
  assert.deepEqual(cut, []);
  g.stop();
});

test('past the budget the biggest holders are cut off first, only as many as needed', () => {
  const g = new ClientGuard(1000, 60_000);
  const cut: string[] = [];
  const killed: ClientKilled[] = [];
  g.on('killed', (k: ClientKilled) => killed.push(k));
  g.add(account(300, cut, 'small'));
  g.add(account(900, cut, 'big'));
  g.add(account(500, cut, 'middle'));
  g.sample();
  assert.equal(cut.length, 1);
  assert.match(cut[0]!, /^big: .*limits\.maxBufferedBytes = 1000.*900 bytes/);
  assert.equal(g.used, 800);
  assert.equal(killed.length, 1);
  assert.equal(killed[0]!.reason, 'buffer-budget');
  assert.equal(g.kills.get('redis\0buffer-budget\0any'), 1);
  g.stop();
});

test('a budget of 0 measures but never cuts off', () => {
  const g = new ClientGuard(0, 60_000);
  const cut: string[] = [];
  g.add(account(10 ** 9, cut, 'a'));
  g.sample();
  assert.equal(g.used, 10 ** 9);
  assert.equal(g.peak, 10 ** 9);
  assert.deepEqual(cut, []);
  g.stop();
});

test('an account taken out is no longer counted', () => {
  const g = new ClientGuard(1000, 60_000);
  const cut: string[] = [];
  const leave = g.add(account(5000, cut, 'gone'));
  leave();
  g.sample();
  assert.equal(g.used, 0);
  assert.deepEqual(cut, []);
  g.stop();
});
