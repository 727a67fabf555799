import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, validateConfig } from '../config/load.js';

const base = {
  postgres: { nodes: [{ id: 'p', host: '127.0.0.1' }] },
  redis: { shards: [{ name: 's1', nodes: [{ id: 'r', host: '127.0.0.1' }] }] },
};

describe('streams: config', () => {
  test('defaults are filled in', () => {
    const c = validateConfig({
      ...base,
      streams: { list: [{ name: 'items', table: 'public.items', key: 'items:{id}' }] },
    });
    assert.deepEqual(c.streams?.list[0], {
      name: 'items',
      table: 'public.items',
      key: 'items:{id}',
      shard: 'default',
      format: 'hash',
    });
    assert.equal(c.streams?.maxInFlight, 64);
  });

  test('bad entries are refused with the key named', () => {
    const bad = (streams: unknown, re: RegExp): void =>
      assert.throws(
        () => validateConfig({ ...base, streams }),
        (e: Error) => e instanceof ConfigError && re.test(e.message),
      );
    bad({ list: [{ name: 'Items', table: 't', key: 'k:{id}' }] }, /streams\.list\.0\.name/);
    bad(
      { list: [{ name: 'a', table: 't', key: 'static' }] },
      /streams\.list\.0\.key: name at least one primary-key column/,
    );
    bad(
      { list: [{ name: 'a', table: 't', key: 'k:{id}', shard: 'nope' }] },
      /streams\.list\.0\.shard: no postgres node has shard "nope"/,
    );
    bad({ list: [{ name: 'a', table: 't', key: 'k:{id}', format: 'xml' }] }, /streams\.list\.0\.format/);
    bad(
      {
        list: [
          { name: 'a', table: 't', key: 'k:{id}' },
          { name: 'a', table: 'u', key: 'u:{id}' },
        ],
      },
      /two streams have the same name/,
    );
    assert.throws(
      () =>
        validateConfig({
          postgres: base.postgres,
          streams: { list: [{ name: 'a', table: 't', key: 'k:{id}' }] },
        }),
      /a stream needs both a postgres section .* and a redis section/,
    );
  });
});
