import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CommandTable, type CommandInfo } from './command-table.js';

const base: CommandInfo = {
  name: 'x',
  readonly: false,
  write: false,
  mayReplicate: false,
  blocking: false,
  pubsub: false,
  firstKey: 0,
  lastKey: 0,
  keyStep: 0,
  movableKeys: false,
};

test('mayWrite: write flags, and keyed commands that are not read-only (EVAL has no write flag)', () => {
  assert.equal(
    CommandTable.mayWrite({ ...base, name: 'set', write: true, firstKey: 1, lastKey: 1, keyStep: 1 }),
    true,
  );
  assert.equal(CommandTable.mayWrite({ ...base, name: 'eval', movableKeys: true }), true);
  assert.equal(CommandTable.mayWrite({ ...base, name: 'flushall', write: true }), true);
  assert.equal(CommandTable.mayWrite({ ...base, name: 'info' }), false);
  assert.equal(
    CommandTable.mayWrite({ ...base, name: 'get', readonly: true, firstKey: 1, lastKey: 1, keyStep: 1 }),
    false,
  );
  assert.equal(CommandTable.mayWrite({ ...base, name: 'eval_ro', readonly: true, movableKeys: true }), false);
});
