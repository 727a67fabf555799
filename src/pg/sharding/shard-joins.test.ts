import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ShardResolver } from './shard-resolver.js';

const resolver = new ShardResolver(['s1', 's2'], {
  hash: { distribution: 'ketama', function: 'fnv1a_64' },
  tables: [
    { table: 'customers', column: 'id' },
    { table: 'orders', column: 'customer_id' },
  ],
  referenceTables: ['plans', 'countries'],
});

describe('reads of a sharded table by its key, joined with reference tables', () => {
  test('joins of reference tables keep the key: placed by the WHERE term on the sharded table', () => {
    const on = (key: string): unknown => ({
      kind: 'shard',
      shard: resolver.shardForKey(key),
      via: 'table-rule',
    });
    const cases: [string, (string | null)[] | undefined, string][] = [
      ['SELECT * FROM customers c JOIN plans p ON p.code = c.plan WHERE c.id = 7', undefined, '7'],
      [
        'select "customers"."name", "plans"."price" from "customers" inner join "plans" on "plans"."code" = "customers"."plan" where "customers"."id" = $1',
        ['9'],
        '9',
      ],
      [
        'SELECT * FROM customers AS c LEFT OUTER JOIN plans ON plans.code = c.plan LEFT JOIN countries k ON k.code = c.country WHERE id = 12 AND c.name <> $1',
        ['x'],
        '12',
      ],
    ];
    for (const [sql, params, key] of cases) assert.deepEqual(resolver.resolve(sql, params), on(key), sql);
  });

  test('joins of sharded tables, other join forms, or no key term: not placed by the rules', () => {
    for (const sql of [
      'SELECT * FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.id = 7',
      'SELECT * FROM customers c RIGHT JOIN plans p ON p.code = c.plan WHERE c.id = 7',
      'SELECT * FROM customers c JOIN plans p USING (code) WHERE c.id = 7',
      'SELECT * FROM customers c, plans p WHERE c.id = 7',
      'SELECT * FROM customers c JOIN plans p ON p.code = c.plan WHERE p.id = 7',
      'SELECT * FROM plans p JOIN customers c ON p.code = c.plan WHERE c.id = 7',
      'SELECT * FROM customers c JOIN plans p ON p.code = c.plan',
    ])
      assert.deepEqual(resolver.resolve(sql), { kind: 'unknown' }, sql);
  });
});
