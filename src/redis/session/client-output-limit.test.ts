import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ClientOutputLimit, type OutputLimits } from './client-output-limit.js';

const limits: OutputLimits = {
  normal: { hardBytes: 0, softBytes: 0, softSeconds: 0 },
  pubsub: { hardBytes: 1000, softBytes: 100, softSeconds: 2 },
  monitor: { hardBytes: 5000, softBytes: 0, softSeconds: 0 },
  blocked: { hardBytes: 0, softBytes: 0, softSeconds: 0 },
};

test('a class without bounds is never cut off', () => {
  const l = new ClientOutputLimit(limits);
  assert.equal(l.check('normal', 10 ** 12, 0), null);
  assert.equal(l.check('blocked', 10 ** 12, 0), null);
});

test('the hard limit cuts off at once and names the key', () => {
  const l = new ClientOutputLimit(limits);
  assert.equal(l.check('pubsub', 999, 0), null);
  const why = l.check('pubsub', 1000, 0);
  assert.match(why ?? '', /hard limit of 1000 \(redis\.limits\.clientOutputBufferLimit\.pubsub\.hardBytes\)/);
  assert.match(l.check('monitor', 6000, 0) ?? '', /monitor\.hardBytes/);
});

test('the soft limit cuts off only after staying over it for its seconds', () => {
  const l = new ClientOutputLimit(limits);
  assert.equal(l.check('pubsub', 200, 0), null);
  assert.equal(l.check('pubsub', 200, 1999), null);
  assert.match(l.check('pubsub', 200, 2000) ?? '', /soft limit of 100 for 2 s/);
});

test('dropping under the soft limit restarts its clock', () => {
  const l = new ClientOutputLimit(limits);
  assert.equal(l.check('pubsub', 200, 0), null);
  assert.equal(l.check('pubsub', 50, 1500), null);
  assert.equal(l.check('pubsub', 200, 1600), null);
  assert.equal(l.check('pubsub', 200, 3500), null);
  assert.notEqual(l.check('pubsub', 200, 3600), null);
});
