import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ConfigError, validateConfig } from './load.js';

const nodes = [
  { id: 'a1', host: '127.0.0.1', shard: 's1' },
  { id: 'a2', host: '127.0.0.1', shard: 's1' },
  { id: 'b1', host: '127.0.0.1', shard: 's2' },
];

function refused(raw: unknown, pattern: RegExp): void {
  assert.throws(
    () => validateConfig(raw, 'f.yaml'),
    (e: Error) => e instanceof ConfigError && pattern.test(e.message),
  );
}

describe('validateConfig: PostgreSQL shards', () => {
  test('one shard needs no sharding section; nodes default to shard "default"', () => {
    const c = validateConfig({ postgres: { nodes: [{ id: 'a', host: 'h' }] } });
    assert.equal(c.postgres!.nodes[0]?.shard, 'default');
    assert.equal(c.postgres!.sharding, undefined);
    const named = validateConfig({ postgres: { nodes: [nodes[0], nodes[1]] } });
    assert.equal(named.postgres!.nodes[1]?.shard, 's1');
  });

  test('several shards need postgres.sharding, even an empty one', () => {
    refused(
      { postgres: { nodes } },
      /f\.yaml: postgres\.sharding: the nodes use 2 shards \(s1, s2\); add a postgres\.sharding/,
    );
    refused({ postgres: { nodes: [{ id: 'x', host: 'h' }, nodes[2]] } }, /2 shards \(default, s2\)/);
    const c = validateConfig({ postgres: { nodes, sharding: {} } });
    assert.equal(c.postgres!.sharding?.hash.distribution, 'ketama');
    assert.deepEqual(c.postgres!.sharding?.tables, []);
  });

  test('defaultShard and twoPhase.logShard must be the shard of some node', () => {
    refused(
      { postgres: { nodes, sharding: { defaultShard: 's3' } } },
      /postgres\.sharding\.defaultShard: no node has shard "s3" \(shards of postgres\.nodes: s1, s2\)/,
    );
    refused(
      { postgres: { nodes, sharding: { twoPhase: { logShard: 'S1' } } } },
      /postgres\.sharding\.twoPhase\.logShard: no node has shard "S1"/,
    );
    const c = validateConfig({
      postgres: { nodes, sharding: { defaultShard: 's2', twoPhase: { logShard: 's1' } } },
    });
    assert.equal(c.postgres!.sharding?.defaultShard, 's2');
    assert.equal(c.postgres!.sharding?.twoPhase.logShard, 's1');
  });

  test('table rules must name a table and a column, each table once', () => {
    refused(
      { postgres: { nodes, sharding: { tables: [{ table: 'accounts', column: 'a b' }] } } },
      /f\.yaml: postgres\.sharding\.tables\.0\.column: 'a b' is not a column name/,
    );
    refused(
      {
        postgres: {
          nodes,
          sharding: {
            tables: [
              { table: 'accounts', column: 'id' },
              { table: 'ACCOUNTS', column: 'id' },
            ],
          },
        },
      },
      /postgres\.sharding\.tables\.1\.table: 'ACCOUNTS' is listed twice/,
    );
    const tables = [
      { table: 'accounts', column: 'id' },
      { table: 'app."Orders"', column: '"CustomerId"' },
    ];
    const c = validateConfig({ postgres: { nodes, sharding: { tables } } });
    assert.deepEqual(c.postgres!.sharding?.tables, tables);
  });
});
