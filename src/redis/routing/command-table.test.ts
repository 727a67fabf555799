import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CommandTable, unknownCommandError, type CommandInfo } from './command-table.js';

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

const b = (...a: string[]): Buffer[] => a.map((x) => Buffer.from(x));
const movable = (name: string, keySpecs: CommandInfo['keySpecs']): CommandInfo => ({
  ...base,
  name,
  movableKeys: true,
  keySpecs,
});
const table = new CommandTable();

test('key specs: numkeys (keynum) counted from its own argument, as Redis does', () => {
  // LMPOP numkeys key [key …] LEFT|RIGHT: begin_search index 1, keynum 0/1/1
  const lmpop = movable('lmpop', [
    {
      begin: { type: 'index', index: 1 },
      find: { type: 'keynum', keyNumIdx: 0, firstKey: 1, keyStep: 1 },
      incomplete: false,
    },
  ]);
  assert.deepEqual(table.keyPositions(lmpop, b('LMPOP', '2', 'a', 'b', 'LEFT')), [2, 3]);
  assert.equal(table.keyPositions(lmpop, b('LMPOP', 'x', 'a', 'LEFT')), 'malformed');
  assert.equal(table.keyPositions(lmpop, b('LMPOP', '-1', 'a', 'LEFT')), 'malformed');
  assert.equal(table.keyPositions(lmpop, b('LMPOP', '9', 'a', 'LEFT')), 'malformed');
  // ZUNIONSTORE dest numkeys key …: two specs, merged in argument order
  const zus = movable('zunionstore', [
    {
      begin: { type: 'index', index: 1 },
      find: { type: 'range', lastKey: 0, keyStep: 1, limit: 0 },
      incomplete: false,
    },
    {
      begin: { type: 'index', index: 2 },
      find: { type: 'keynum', keyNumIdx: 0, firstKey: 1, keyStep: 1 },
      incomplete: false,
    },
  ]);
  assert.deepEqual(
    table.keyPositions(zus, b('ZUNIONSTORE', 'd', '2', 'a', 'b', 'WEIGHTS', '1', '2')),
    [1, 3, 4],
  );
  // EVAL script 0: no keys at all
  const evalInfo = movable('eval', [
    {
      begin: { type: 'index', index: 2 },
      find: { type: 'keynum', keyNumIdx: 0, firstKey: 1, keyStep: 1 },
      incomplete: false,
    },
  ]);
  assert.deepEqual(table.keyPositions(evalInfo, b('EVAL', 'return 1', '0', 'x')), []);
});

test('key specs: keywords (XREAD STREAMS halves what follows; GEORADIUS STORE is optional)', () => {
  const xread = movable('xread', [
    {
      begin: { type: 'keyword', keyword: 'STREAMS', startFrom: 1 },
      find: { type: 'range', lastKey: -1, keyStep: 1, limit: 2 },
      incomplete: false,
    },
  ]);
  assert.deepEqual(
    table.keyPositions(xread, b('XREAD', 'COUNT', '2', 'streams', 'a', 'b', '0', '0')),
    [4, 5],
  );
  assert.deepEqual(table.keyPositions(xread, b('XREAD', 'COUNT', '2')), []);
  const geo = movable('georadius', [
    {
      begin: { type: 'index', index: 1 },
      find: { type: 'range', lastKey: 0, keyStep: 1, limit: 0 },
      incomplete: false,
    },
    {
      begin: { type: 'keyword', keyword: 'STORE', startFrom: 6 },
      find: { type: 'range', lastKey: 0, keyStep: 1, limit: 0 },
      incomplete: false,
    },
  ]);
  assert.deepEqual(table.keyPositions(geo, b('GEORADIUS', 'g', '1', '2', '3', 'km')), [1]);
  assert.deepEqual(table.keyPositions(geo, b('GEORADIUS', 'g', '1', '2', '3', 'km', 'STORE', 'd')), [1, 7]);
  // an unknown spec without a rule: nobody can tell
  assert.equal(
    table.keyPositions(
      movable('x', [{ begin: { type: 'unknown' }, find: { type: 'unknown' }, incomplete: false }]),
      b('X', 'a'),
    ),
    null,
  );
});

test('SORT and MIGRATE follow Redis own rules (sortGetKeys, migrateGetKeys)', () => {
  const sort = movable('sort', []);
  assert.deepEqual(
    table.keyPositions(sort, b('SORT', 'l', 'BY', 'store', 'LIMIT', '0', '1', 'STORE', 'd')),
    [1, 8],
  );
  assert.deepEqual(table.keyPositions(sort, b('SORT', 'l', 'GET', '#')), [1]);
  const migrate = movable('migrate', []);
  assert.deepEqual(table.keyPositions(migrate, b('MIGRATE', 'h', '1', 'k', '0', '10')), [3]);
  assert.deepEqual(
    table.keyPositions(migrate, b('MIGRATE', 'h', '1', '', '0', '10', 'AUTH2', 'u', 'p', 'KEYS', 'a', 'b')),
    [10, 11],
  );
});

test('refusal: arity and unknown subcommands with Redis texts; resolve picks the subcommand', () => {
  const sub: CommandInfo = {
    ...base,
    name: 'object|encoding',
    readonly: true,
    arity: 3,
    firstKey: 2,
    lastKey: 2,
    keyStep: 1,
  };
  const object: CommandInfo = {
    ...base,
    name: 'object',
    arity: -2,
    subcommands: new Map([['object|encoding', sub]]),
  };
  assert.equal(CommandTable.refusal(object, b('OBJECT')), "wrong number of arguments for 'object' command");
  assert.equal(
    CommandTable.refusal(object, b('OBJECT', 'nope')),
    "unknown subcommand 'nope'. Try OBJECT HELP.",
  );
  assert.equal(
    CommandTable.refusal(object, b('OBJECT', 'ENCODING')),
    "wrong number of arguments for 'object|encoding' command",
  );
  assert.equal(CommandTable.refusal(object, b('OBJECT', 'encoding', 'k')), null);
  assert.equal(CommandTable.resolve(object, b('OBJECT', 'Encoding', 'k')), sub);
  const set: CommandInfo = { ...base, name: 'set', arity: -3 };
  assert.equal(CommandTable.refusal(set, b('SET', 'foo')), "wrong number of arguments for 'set' command");
});

test('unknown command error echoes the bytes sent (UTF-8 stays UTF-8), as Redis does', () => {
  assert.equal(
    unknownCommandError(b('héllo', 'x', 'y')).toString('utf8'),
    "-ERR unknown command 'héllo', with args beginning with: 'x' 'y' \r\n",
  );
  assert.equal(
    unknownCommandError(b('foo')).toString(),
    "-ERR unknown command 'foo', with args beginning with: \r\n",
  );
});
