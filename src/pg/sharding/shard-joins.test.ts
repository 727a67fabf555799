import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { lex } from '../classifier/lexer.js';
import { classifyKeyless } from './shard-keyless.js';
import { ShardResolver } from './shard-resolver.js';

const resolver = new ShardResolver(['s1', 's2'], {
  hash: { distribution: 'ketama', function: 'fnv1a_64' },
  tables: [
    { table: 'customers', column: 'id' },
    { table: 'orders', column: 'customer_id' },
    { table: 'items', column: 'cust' },
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

  test('joins of sharded tables not on their keys, other join forms, or no key term: not placed by the rules', () => {
    for (const sql of [
      'SELECT * FROM customers c JOIN orders o ON o.id = c.id WHERE c.id = 7',
      'SELECT * FROM customers c RIGHT JOIN plans p ON p.code = c.plan WHERE c.id = 7',
      'SELECT * FROM customers c JOIN plans p USING (code) WHERE c.id = 7',
      'SELECT * FROM customers c, plans p WHERE c.id = 7',
      'SELECT * FROM customers c JOIN plans p ON p.code = c.plan WHERE p.id = 7',
      'SELECT * FROM plans p JOIN customers c ON p.code = c.plan WHERE c.id = 7',
      'SELECT * FROM customers c JOIN plans p ON p.code = c.plan',
    ])
      assert.deepEqual(resolver.resolve(sql), { kind: 'unknown' }, sql);
  });

  test('a keyword after a dot is a name: an OR after `t.window` still makes the WHERE unknown', () => {
    assert.deepEqual(
      resolver.resolve('SELECT * FROM customers WHERE id = 5 AND customers.window = 1 OR true'),
      { kind: 'unknown' },
    );
    assert.deepEqual(resolver.resolve('SELECT * FROM customers c WHERE c.id = 5 AND c.window = 1'), {
      kind: 'shard',
      shard: resolver.shardForKey('5'),
      via: 'table-rule',
    });
  });

  const on = (key: string): unknown => ({
    kind: 'shard',
    shard: resolver.shardForKey(key),
    via: 'table-rule',
  });

  test('co-located joins (sharded tables equated on their keys): placed by a key term on either table', () => {
    const cases: [string, (string | null)[] | undefined, string][] = [
      ['SELECT * FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.id = 7', undefined, '7'],
      [
        'SELECT * FROM customers c JOIN orders o ON c.id = o.customer_id WHERE o.customer_id = $1',
        ['8'],
        '8',
      ],
      [
        'select "customers"."name", "orders"."total" from "customers" inner join "orders" on "orders"."customer_id" = "customers"."id" where "customers"."id" = $1',
        ['9'],
        '9',
      ],
      [
        'SELECT * FROM orders AS o LEFT OUTER JOIN customers AS c ON c.id = o.customer_id AND c.name <> $2 WHERE customer_id = $1 ORDER BY o.id LIMIT 3',
        ['10', 'x'],
        '10',
      ],
      // a chain: items on orders' key, a reference table in between
      [
        'SELECT * FROM customers c JOIN plans p ON p.code = c.plan JOIN orders o ON o.customer_id = c.id AND o.id BETWEEN 1 AND 5 LEFT JOIN items i ON i.cust = o.customer_id WHERE i.cust = 11 AND c.id = 11',
        undefined,
        '11',
      ],
      [
        'SELECT * FROM orders o1 JOIN orders o2 ON o1.customer_id = o2.customer_id WHERE o2.customer_id = 12',
        undefined,
        '12',
      ],
    ];
    for (const [sql, params, key] of cases) assert.deepEqual(resolver.resolve(sql, params), on(key), sql);
  });

  test('joins of sharded tables not equated on their keys, or keys of different shards: not placed', () => {
    const a = '1';
    const b = Array.from({ length: 100 }, (_, n) => String(n + 2)).find(
      (k) => resolver.shardForKey(k) !== resolver.shardForKey(a),
    );
    assert.ok(b !== undefined);
    for (const sql of [
      'SELECT * FROM customers c JOIN orders o ON o.id = c.id WHERE c.id = 7',
      'SELECT * FROM customers c JOIN orders o ON o.customer_id = c.id OR o.id = 1 WHERE c.id = 7',
      'SELECT * FROM customers c JOIN orders o ON o.customer_id = c.id + 1 WHERE c.id = 7',
      'SELECT * FROM customers c JOIN orders o ON customer_id = id WHERE c.id = 7',
      'SELECT * FROM customers c JOIN orders o ON o.customer_id = customers.id WHERE c.id = 7',
      'SELECT * FROM customers c JOIN orders o USING (id) WHERE c.id = 7',
      'SELECT * FROM customers c RIGHT JOIN orders o ON o.customer_id = c.id WHERE c.id = 7',
      'SELECT * FROM customers c FULL JOIN orders o ON o.customer_id = c.id WHERE c.id = 7',
      'SELECT * FROM customers c JOIN orders o ON o.customer_id = c.id JOIN items i ON i.id = o.id WHERE c.id = 7',
      'SELECT * FROM customers c, orders o WHERE o.customer_id = c.id AND c.id = 7',
      `SELECT * FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.id = ${a} AND o.customer_id = ${b}`,
      'SELECT * FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.id = 7 OR o.customer_id = 7',
      'SELECT * FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.name = $1',
      'SELECT * FROM customers c JOIN orders o ON o.customer_id = c.id',
    ])
      assert.deepEqual(resolver.resolve(sql, ['x']), { kind: 'unknown' }, sql);
  });

  test('keyless: co-located joins are merged, other joins refused as before', () => {
    const kind = (sql: string): string | undefined => classifyKeyless(sql, resolver)?.kind;
    for (const sql of [
      'SELECT c.name, o.total FROM customers c JOIN orders o ON o.customer_id = c.id ORDER BY c.name, o.total',
      'SELECT c.id, count(*) AS n FROM customers c LEFT JOIN orders o ON o.customer_id = c.id GROUP BY c.id',
      'SELECT * FROM customers c JOIN plans p ON p.code = c.plan JOIN orders o ON o.customer_id = c.id LIMIT 5',
    ])
      assert.equal(kind(sql), 'merge', sql);
    for (const sql of [
      'SELECT * FROM customers c JOIN orders o ON o.id = c.id',
      'SELECT * FROM customers c RIGHT JOIN orders o ON o.customer_id = c.id',
      'SELECT * FROM customers c JOIN orders o USING (customer_id)',
      'SELECT * FROM customers c JOIN plans p ON p.code = c.plan WHERE p.price > 0', // reference tables only: as before
    ])
      assert.equal(kind(sql), 'refused', sql);
    // a reference table first: no place, as before (the unknown-shard error)
    assert.equal(kind('SELECT * FROM plans p JOIN customers c ON c.plan = p.code'), undefined);
    const placed = (sql: string): boolean => resolver.placedJoins(lex(sql).statements[0]!);
    assert.equal(placed('SELECT * FROM customers'), false);
    // a keyword as a column name after a dot does not end the ON: its OR is seen
    assert.equal(
      placed('SELECT * FROM customers c JOIN orders o ON o.customer_id = c.id AND o.window > 0'),
      true,
    );
    assert.equal(
      placed('SELECT * FROM customers c JOIN orders o ON o.customer_id = c.id AND o.window > 0 OR true'),
      false,
    );
  });
});
