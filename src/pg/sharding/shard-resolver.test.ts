import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { Classifier } from '../classifier/classify.js';
import { ShardResolver, TableRuleError, type ShardResolution, type ShardingRules } from './shard-resolver.js';
import { createRing } from '../../sharding/ring.js';

const SHARDS = ['s1', 's2', 's3'];
const TABLES = [
  { table: 'accounts', column: 'id' },
  { table: 'app.orders', column: 'customer_id' },
  { table: '"Mixed"', column: '"Key"' },
];

function rules(extra: Partial<ShardingRules> = {}): ShardingRules {
  return { hash: { distribution: 'ketama', function: 'fnv1a_64' }, tables: TABLES, ...extra };
}

const resolver = new ShardResolver(SHARDS, rules());
const ring = createRing(
  'ketama',
  SHARDS.map((name) => ({ name, weight: 1 })),
  { hash: 'fnv1a_64' },
);
const ringShard = (key: string): string => SHARDS[ring.locate(Buffer.from(key, 'utf8'))] ?? '?';

/** Integer keys (as text) landing on `shard`, and one landing elsewhere. */
function keysOn(shard: string, count = 2): string[] {
  const out: string[] = [];
  for (let i = 1; out.length < count; i++) if (ringShard(String(i)) === shard) out.push(String(i));
  return out;
}
const [k1, k1b] = keysOn('s1') as [string, string];
const [k2] = keysOn('s2') as [string];

const onShard = (shard: string, via: string): ShardResolution =>
  ({ kind: 'shard', shard, via }) as ShardResolution;
const byRule = (shard: string): ShardResolution => onShard(shard, 'table-rule');
const UNKNOWN = { kind: 'unknown' };
const ANYWHERE = { kind: 'anywhere' };

function errorOf(r: ShardResolution): string {
  assert.equal(r.kind, 'error');
  return r.kind === 'error' ? `${r.error.message} / ${r.error.hint}` : '';
}

describe('ShardResolver: ring', () => {
  test('shardForKey gives what createRing gives for the same shard names (ketama, jump, rendezvous, md5)', () => {
    for (const distribution of ['ketama', 'jump', 'rendezvous'] as const) {
      for (const fn of ['fnv1a_64', 'md5'] as const) {
        const r = new ShardResolver(SHARDS, rules({ hash: { distribution, function: fn } }));
        const direct = createRing(
          distribution,
          SHARDS.map((name) => ({ name, weight: 1 })),
          { hash: fn },
        );
        const seen = new Set<string>();
        for (let i = 0; i < 300; i++) {
          const key = `user:${i}`;
          const expected = SHARDS[direct.locate(Buffer.from(key))];
          assert.equal(r.shardForKey(key), expected, `${distribution}/${fn} ${key}`);
          seen.add(r.shardForKey(key));
        }
        assert.equal(seen.size, 3, 'keys spread over every shard');
      }
    }
  });

  test('a key hint, a literal and a parameter with the same text land on the same shard', () => {
    const viaHint = resolver.resolve(`/* rwsplit:key=${k2} */ SELECT 1`);
    assert.deepEqual(viaHint, onShard('s2', 'hint-key'));
    assert.deepEqual(resolver.resolve(`SELECT * FROM accounts WHERE id = ${k2}`), byRule('s2'));
    assert.deepEqual(resolver.resolve(`SELECT * FROM accounts WHERE id = '${k2}'`), byRule('s2'));
    assert.deepEqual(resolver.resolve('SELECT * FROM accounts WHERE id = $1', [k2]), byRule('s2'));
  });

  test('a one-shard configuration puts every key there', () => {
    const one = new ShardResolver(['only'], rules({ tables: [] }));
    assert.equal(one.shardForKey('anything'), 'only');
    assert.deepEqual(one.resolve('/* rwsplit:key=x */ SELECT 1'), onShard('only', 'hint-key'));
  });
});

describe('ShardResolver: hints', () => {
  test('shard, key and all-shards hints, in block and line comments, anywhere in the text', () => {
    assert.deepEqual(resolver.resolve('/* rwsplit:shard=s3 */ SELECT now()'), onShard('s3', 'hint-shard'));
    assert.deepEqual(
      resolver.resolve('SELECT now() /* RWSPLIT : shard = s2 */'),
      onShard('s2', 'hint-shard'),
    );
    assert.deepEqual(resolver.resolve('SELECT 1 -- rwsplit:shard=s1\n'), onShard('s1', 'hint-shard'));
    assert.deepEqual(resolver.resolve(`SELECT 1 /* rwsplit:key= ${k1} */`), onShard('s1', 'hint-key'));
    assert.deepEqual(resolver.resolve('/* rwsplit:all-shards */ SELECT count(*) FROM t'), {
      kind: 'all-shards',
    });
  });

  test('a key hint takes the text up to */, trimmed, or a quoted value', () => {
    const spaced = 'user 42 of tenant x';
    assert.equal(resolver.resolve(`/* rwsplit:key=  ${spaced}   */ SELECT 1`).kind, 'shard');
    assert.deepEqual(
      resolver.resolve(`/* rwsplit:key=  ${spaced}   */ SELECT 1`),
      onShard(ringShard(spaced), 'hint-key'),
    );
    assert.deepEqual(
      resolver.resolve(`/* rwsplit:key='${spaced}' */ SELECT 1`),
      onShard(ringShard(spaced), 'hint-key'),
    );
    const quoted = "it's";
    assert.deepEqual(
      resolver.resolve("/* rwsplit:key='it''s' */ SELECT 1"),
      onShard(ringShard(quoted), 'hint-key'),
    );
    // in a nested comment, the value ends at the inner */
    assert.deepEqual(
      resolver.resolve(`/* outer /* rwsplit:key=${k2} */ more */ SELECT 1`),
      onShard('s2', 'hint-key'),
    );
  });

  test('hint-like text in strings, quoted identifiers and dollar quotes is not a hint', () => {
    // Each reads no table: no hint, so any shard serves them.
    assert.deepEqual(resolver.resolve("SELECT '/* rwsplit:shard=s2 */'"), ANYWHERE);
    assert.deepEqual(resolver.resolve('SELECT 1 AS "/* rwsplit:shard=s2 */"'), ANYWHERE);
    assert.deepEqual(resolver.resolve('SELECT $x$ /* rwsplit:shard=s2 */ $x$'), ANYWHERE);
    assert.deepEqual(resolver.resolve("SELECT E'\\' /* rwsplit:shard=s2 */'"), ANYWHERE);
    assert.deepEqual(
      resolver.resolve("SELECT a$b, '--' /* rwsplit:shard=s2 */"),
      onShard('s2', 'hint-shard'),
    );
  });

  test('shard hints live with the classifier hints: both are read from the same comment', () => {
    const sql = '/* rwsplit:primary rwsplit:shard=s2 */ SELECT * FROM accounts';
    assert.deepEqual(resolver.resolve(sql), onShard('s2', 'hint-shard'));
    assert.equal(new Classifier().classify(sql).hint, 'primary');
    const separate = '/* rwsplit:replica */ /* rwsplit:key=abc */ SELECT 1';
    assert.deepEqual(resolver.resolve(separate), onShard(ringShard('abc'), 'hint-key'));
    assert.equal(new Classifier().classify(separate).hint, 'replica');
  });

  test('a hint beats a table rule', () => {
    assert.deepEqual(
      resolver.resolve(`/* rwsplit:shard=s3 */ UPDATE accounts SET b = 0 WHERE id = ${k1}`),
      onShard('s3', 'hint-shard'),
    );
  });

  test('an unknown or missing shard name is an error naming the configured shards', () => {
    const msg = errorOf(resolver.resolve('/* rwsplit:shard=s9 */ SELECT 1'));
    assert.match(msg, /rwsplit:shard=s9 \*\/ hint names an unknown shard/);
    assert.match(msg, /s1, s2, s3/);
    assert.match(errorOf(resolver.resolve('/* rwsplit:shard= */ SELECT 1')), /names no shard/);
    assert.match(errorOf(resolver.resolve('/* rwsplit:key= */ SELECT 1')), /empty key/);
    const r = resolver.resolve('/* rwsplit:shard=S1 */ SELECT 1');
    assert.equal(r.kind === 'error' && r.error.sqlstate, '22023', 'names are case-sensitive');
  });

  test('hints that disagree are an error; hints that agree are fine', () => {
    assert.match(
      errorOf(resolver.resolve('/* rwsplit:shard=s1 */ /* rwsplit:shard=s2 */ SELECT 1')),
      /different shards/,
    );
    assert.match(
      errorOf(resolver.resolve(`/* rwsplit:shard=s2 rwsplit:key='${k1}' */ SELECT 1`)),
      /s2, s1|s1, s2/,
    );
    assert.match(
      errorOf(resolver.resolve('/* rwsplit:all-shards */ /* rwsplit:shard=s1 */ SELECT 1')),
      /contradicts/,
    );
    assert.deepEqual(
      resolver.resolve(`/* rwsplit:shard=s1 */ /* rwsplit:key=${k1b} */ SELECT 1`),
      onShard('s1', 'hint-shard'),
    );
  });

  test('other rwsplit words are not shard hints', () => {
    assert.deepEqual(resolver.resolve('/* rwsplit:primary */ SELECT 1'), ANYWHERE);
    assert.deepEqual(resolver.resolve('/* rwsplit:shards=s1 rwsplit:all-shardsx */ SELECT 1'), ANYWHERE);
  });
});

describe('ShardResolver: statements that read no table', () => {
  test('run anywhere: no table, or system catalogs only', () => {
    const anywhere = [
      'SELECT 1',
      'select version()',
      'SELECT now(), current_setting($1)',
      'SHOW server_version',
      'VALUES (1), (2)',
      'SELECT 1; SELECT 2',
      'SELECT oid, typname FROM pg_type WHERE typname = $1',
      'SELECT * FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace',
      'SELECT table_name FROM information_schema.tables',
      'SELECT c.relname FROM pg_class c, pg_namespace n WHERE n.oid = c.relnamespace ORDER BY 1, 2',
    ];
    for (const sql of anywhere) assert.deepEqual(resolver.resolve(sql), ANYWHERE, sql);
  });

  test('anything naming another relation, or creating one, is not guessed', () => {
    const unknown = [
      'SELECT * FROM t',
      'SELECT * FROM pg_class, t',
      'SELECT * FROM pg_class JOIN t ON true',
      'SELECT * FROM pg_class c, pg_namespace n, t',
      'SELECT (SELECT 1 FROM t), relname FROM pg_class',
      'SELECT * FROM public.pg_lookalike',
      'SELECT extract(year FROM now())',
      'SELECT generate_series(1, 3) INTO t2',
      'SELECT * FROM generate_series(1, 3)',
      'SELECT 1; DELETE FROM t',
      'SET application_name = $$x$$',
    ];
    for (const sql of unknown) assert.deepEqual(resolver.resolve(sql), UNKNOWN, sql);
  });

  test('the round-robin shard for such statements visits every shard', () => {
    const r = new ShardResolver(SHARDS, rules());
    const seen = new Set(Array.from({ length: SHARDS.length }, () => r.anyShard()));
    assert.deepEqual([...seen].sort(), [...SHARDS].sort());
  });
});

describe('ShardResolver: table rules', () => {
  test('INSERT with a column list: the key column by position, literal or parameter', () => {
    assert.deepEqual(resolver.resolve(`INSERT INTO accounts (name, id) VALUES ('x', ${k2})`), byRule('s2'));
    assert.deepEqual(
      resolver.resolve('insert into accounts(id, name) values ($2, $1)', ['x', k1]),
      byRule('s1'),
    );
    assert.deepEqual(
      resolver.resolve(
        `INSERT INTO accounts AS a (id) VALUES (${k1}) ON CONFLICT (id) DO UPDATE SET n = a.n + 1`,
      ),
      byRule('s1'),
    );
    assert.deepEqual(
      resolver.resolve(`INSERT INTO accounts (id) VALUES ('${k2}'::text) RETURNING id`),
      byRule('s2'),
    );
  });

  test('multi-row INSERT: one shard when every row agrees, unknown otherwise', () => {
    assert.deepEqual(
      resolver.resolve(`INSERT INTO accounts (id, b) VALUES (${k1}, 1), (${k1b}, 2)`),
      byRule('s1'),
    );
    assert.deepEqual(resolver.resolve(`INSERT INTO accounts (id, b) VALUES (${k1}, 1), (${k2}, 2)`), UNKNOWN);
    assert.deepEqual(
      resolver.resolve('INSERT INTO accounts (id) VALUES ($1), ($2)', [k1, k1b]),
      byRule('s1'),
    );
    assert.deepEqual(resolver.resolve('INSERT INTO accounts (id) VALUES ($1), ($2)', [k1, k2]), UNKNOWN);
  });

  test('UPDATE, DELETE and SELECT with col = X in an AND chain', () => {
    assert.deepEqual(
      resolver.resolve(`UPDATE accounts SET b = b - 5 WHERE id = ${k1} AND b >= 5`),
      byRule('s1'),
    );
    assert.deepEqual(
      resolver.resolve(`update only accounts a set b = 1 where a.id = ${k2} returning b`),
      byRule('s2'),
    );
    assert.deepEqual(
      resolver.resolve(`DELETE FROM accounts WHERE x BETWEEN 1 AND 5 AND id = ${k2}`),
      byRule('s2'),
    );
    assert.deepEqual(
      resolver.resolve(`SELECT b FROM accounts AS acc WHERE ${k1} = acc.id FOR UPDATE`),
      byRule('s1'),
    );
    assert.deepEqual(
      resolver.resolve(
        `SELECT count(*), max(b) FROM accounts WHERE (b > 0) AND accounts.id = '${k2}' ORDER BY 1 LIMIT 1`,
      ),
      byRule('s2'),
    );
    assert.deepEqual(resolver.resolve('SeLeCt * FrOm AcCoUnTs WhErE ID = $1', [k1]), byRule('s1'));
    assert.deepEqual(resolver.resolve('SELECT * FROM accounts WHERE id = $1::bigint', [k2]), byRule('s2'));
  });

  test('negative numbers and strings are keys by their text', () => {
    assert.deepEqual(resolver.resolve('SELECT * FROM accounts WHERE id = -7'), byRule(ringShard('-7')));
    assert.deepEqual(resolver.resolve("SELECT * FROM accounts WHERE id = 'a''b'"), byRule(ringShard("a'b")));
  });

  test('schema-qualified and quoted identifiers match the rule as written', () => {
    assert.deepEqual(resolver.resolve(`SELECT * FROM app.orders WHERE customer_id = ${k2}`), byRule('s2'));
    assert.deepEqual(
      resolver.resolve(`SELECT * FROM "app"."orders" o WHERE o."customer_id" = ${k1}`),
      byRule('s1'),
    );
    assert.deepEqual(
      resolver.resolve(`SELECT * FROM orders WHERE customer_id = ${k1}`),
      UNKNOWN,
      'no schema: another table',
    );
    assert.deepEqual(resolver.resolve(`SELECT * FROM public.accounts WHERE id = ${k1}`), UNKNOWN);
    assert.deepEqual(resolver.resolve(`UPDATE "Mixed" SET v = 1 WHERE "Key" = ${k2}`), byRule('s2'));
    assert.deepEqual(
      resolver.resolve(`UPDATE mixed SET v = 1 WHERE "Key" = ${k2}`),
      UNKNOWN,
      'mixed is not "Mixed"',
    );
    assert.deepEqual(
      resolver.resolve(`UPDATE "Mixed" SET v = 1 WHERE key = ${k2}`),
      UNKNOWN,
      'key is not "Key"',
    );
    assert.deepEqual(resolver.resolve(`SELECT * FROM "ACCOUNTS" WHERE id = ${k1}`), UNKNOWN);
  });

  test('parameters: missing, NULL or out of range make it unknown', () => {
    const sql = 'DELETE FROM accounts WHERE id = $2';
    assert.deepEqual(resolver.resolve(sql, ['a', k2]), byRule('s2'));
    assert.deepEqual(resolver.resolve(sql, ['a', null]), UNKNOWN);
    assert.deepEqual(resolver.resolve(sql, ['a']), UNKNOWN);
    assert.deepEqual(resolver.resolve(sql), UNKNOWN);
    assert.deepEqual(
      resolver.resolve(sql, ['a', k1]),
      byRule('s1'),
      'a cached text still reads its parameters',
    );
  });

  test('several conditions on the key must agree', () => {
    assert.deepEqual(
      resolver.resolve(`SELECT * FROM accounts WHERE id = ${k1} AND id = ${k1b}`),
      byRule('s1'),
    );
    assert.deepEqual(resolver.resolve(`SELECT * FROM accounts WHERE id = ${k1} AND id = ${k2}`), UNKNOWN);
    assert.deepEqual(resolver.resolve('SELECT * FROM accounts WHERE id = $1 AND id = $2', [k1, k2]), UNKNOWN);
  });

  test('joins, subqueries, OR, set operations, CTEs and other shapes are unknown, never guessed', () => {
    const unknown = [
      `SELECT * FROM accounts a JOIN t ON t.a = a.id WHERE a.id = ${k1}`,
      `SELECT * FROM accounts, t WHERE id = ${k1}`,
      `SELECT * FROM accounts WHERE id = (SELECT id FROM accounts WHERE id = ${k1})`,
      `SELECT * FROM accounts WHERE id = ${k1} AND b IN (SELECT b FROM t)`,
      `SELECT (SELECT count(*) FROM t), b FROM accounts WHERE id = ${k1}`,
      `SELECT * FROM accounts WHERE id = ${k1} OR id = ${k1b}`,
      `SELECT * FROM accounts WHERE id = ${k1} UNION SELECT * FROM accounts WHERE id = ${k1}`,
      `WITH x AS (SELECT 1) SELECT * FROM accounts WHERE id = ${k1}`,
      `SELECT * FROM accounts WHERE id IN (${k1})`,
      `SELECT * FROM accounts WHERE id > ${k1}`,
      `SELECT * FROM accounts WHERE id = ${k1} + 1`,
      `SELECT * FROM accounts WHERE NOT id = ${k1}`,
      `SELECT * FROM accounts WHERE other = ${k1}`,
      `SELECT * FROM accounts WHERE t.id = ${k1}`,
      `SELECT * INTO copy FROM accounts WHERE id = ${k1}`,
      'SELECT * FROM accounts',
      `SELECT * FROM t WHERE id = ${k1}`,
      `UPDATE accounts SET b = 1 FROM t WHERE accounts.id = ${k1}`,
      `UPDATE accounts SET b = 1 WHERE CURRENT OF c`,
      `DELETE FROM accounts USING t WHERE accounts.id = ${k1}`,
      `INSERT INTO accounts VALUES (${k1})`,
      `INSERT INTO accounts (name) VALUES ('x')`,
      `INSERT INTO accounts (id) VALUES (DEFAULT)`,
      `INSERT INTO accounts (id) SELECT ${k1}`,
      `INSERT INTO accounts (id) VALUES (${k1}) , (${k1}, 2)`,
      `INSERT INTO accounts (id) VALUES (1e3)`,
      "SELECT * FROM accounts WHERE id = E'a\\'b'",
      `MERGE INTO accounts a USING t ON a.id = t.id WHEN MATCHED THEN DELETE`,
      'BEGIN',
    ];
    for (const sql of unknown) assert.deepEqual(resolver.resolve(sql), UNKNOWN, sql);
  });

  test('a multi-statement text: transaction control is neutral, the others must agree', () => {
    assert.deepEqual(
      resolver.resolve(
        `BEGIN; UPDATE accounts SET b = 1 WHERE id = ${k1}; UPDATE accounts SET b = 2 WHERE id = ${k1b}; COMMIT`,
      ),
      byRule('s1'),
    );
    assert.deepEqual(
      resolver.resolve(
        `UPDATE accounts SET b = 1 WHERE id = ${k1}; UPDATE accounts SET b = 2 WHERE id = ${k2}`,
      ),
      UNKNOWN,
    );
    assert.deepEqual(resolver.resolve(`SELECT 1; UPDATE accounts SET b = 1 WHERE id = ${k1}`), UNKNOWN);
  });
});

describe('ShardResolver: default shard and errors', () => {
  const withDefault = new ShardResolver(SHARDS, rules({ defaultShard: 's3' }));

  test('without a shard, statements go to the default shard when one is set', () => {
    assert.deepEqual(withDefault.resolve('SELECT 1'), onShard('s3', 'default'));
    assert.deepEqual(
      withDefault.resolve('SELECT * FROM accounts WHERE id = $1', [null]),
      onShard('s3', 'default'),
    );
    assert.deepEqual(withDefault.resolve(`SELECT * FROM accounts WHERE id = ${k1}`), byRule('s1'));
    assert.deepEqual(withDefault.resolve('/* rwsplit:all-shards */ SELECT 1'), { kind: 'all-shards' });
    assert.equal(withDefault.resolve('/* rwsplit:shard=nope */ SELECT 1').kind, 'error');
  });

  test('unknownShardError names the three ways to give a shard and the default-shard setting', () => {
    const err = resolver.unknownShardError();
    assert.equal(err.code, 'SHARD_UNKNOWN');
    assert.equal(err.sqlstate, '0A000');
    const text = `${err.message} ${err.hint}`;
    assert.match(text, /rwsplit:shard=NAME/);
    assert.match(text, /rwsplit:key=VALUE/);
    assert.match(text, /SET rwsplit\.shard_key/);
    assert.match(text, /postgres\.sharding\.tables/);
    assert.match(text, /postgres\.sharding\.defaultShard/);
    assert.match(text, /s1, s2, s3/);
  });

  test('bad rules and a default shard that is not a shard are refused when built', () => {
    const build = (extra: Partial<ShardingRules>) => () => new ShardResolver(SHARDS, rules(extra));
    assert.throws(
      build({ tables: [{ table: 'a b', column: 'id' }] }),
      (e: Error) => e instanceof TableRuleError && /tables\.0\.table/.test(e.message),
    );
    assert.throws(build({ tables: [{ table: 'a', column: 'x.y' }] }), /tables\.0\.column/);
    assert.throws(
      build({
        tables: [
          { table: 'a', column: 'x' },
          { table: 'A', column: 'y' },
        ],
      }),
      /tables\.1\.table: 'A' is listed twice/,
    );
    assert.throws(build({ defaultShard: 's9' }), /defaultShard: 's9' is not a shard/);
  });

  test('results are stable across the cache and without it', () => {
    const uncached = new ShardResolver(SHARDS, rules(), { cacheSize: 0 });
    for (let i = 0; i < 50; i++) {
      const sql = `UPDATE accounts SET b = 0 WHERE id = ${i}`;
      const expected = byRule(ringShard(String(i)));
      assert.deepEqual(resolver.resolve(sql), expected);
      assert.deepEqual(resolver.resolve(sql), expected);
      assert.deepEqual(uncached.resolve(sql), expected);
    }
  });
});
