/**
 * Commands whose keys are located from Redis 7's key specs (numkeys, keywords) or Redis's own
 * rules (SORT, MIGRATE): each runs against a Redis server directly and through rwsplit, and the
 * replies must be byte for byte the same; with one shard, and with two shards when the keys
 * share a hash tag. Keys on different shards get -CROSSSLOT.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { rawRedis, type RawRedis } from './support/raw-redis.js';
import { startRedisStack, type RedisStack } from './support/redis-stack.js';

const FUNCTIONS = [
  '#!lua name=keyspecs',
  "redis.register_function('kget', function(keys, args) return redis.call('GET', keys[1]) end)",
  "redis.register_function{function_name='kget_ro', callback=function(keys, args) return redis.call('GET', keys[1]) end, flags={'no-writes'}}",
  "redis.register_function('kset', function(keys, args) return redis.call('SET', keys[1], args[1]) end)",
].join('\n');

/** One scenario: commands run in order on an empty database; every reply is compared. */
type Case = string[][];

/** Keys all under hash tag {t}; `t` builds one. */
const t = (k: string): string => `{t}${k}`;

const CASES: Record<string, Case> = {
  'LMPOP / BLMPOP': [
    ['RPUSH', t('l2'), 'a', 'b', 'c'],
    ['LMPOP', '2', t('l1'), t('l2'), 'LEFT', 'COUNT', '2'],
    ['BLMPOP', '1', '2', t('l1'), t('l2'), 'RIGHT'],
    ['LMPOP', '2', t('l1'), t('l2'), 'LEFT'],
  ],
  'ZMPOP / BZMPOP': [
    ['ZADD', t('z2'), '1', 'a', '2', 'b', '3', 'c'],
    ['ZMPOP', '2', t('z1'), t('z2'), 'MIN'],
    ['BZMPOP', '1', '2', t('z1'), t('z2'), 'MAX', 'COUNT', '2'],
  ],
  'ZUNION / ZINTER / ZDIFF / ZINTERCARD and their STORE forms': [
    ['ZADD', t('z1'), '1', 'a', '2', 'b'],
    ['ZADD', t('z2'), '3', 'b', '4', 'c'],
    ['ZUNION', '2', t('z1'), t('z2'), 'WITHSCORES'],
    ['ZINTER', '2', t('z1'), t('z2'), 'WEIGHTS', '1', '2', 'WITHSCORES'],
    ['ZDIFF', '2', t('z1'), t('z2')],
    ['ZINTERCARD', '2', t('z1'), t('z2'), 'LIMIT', '5'],
    ['ZUNIONSTORE', t('d1'), '2', t('z1'), t('z2'), 'AGGREGATE', 'MAX'],
    ['ZINTERSTORE', t('d2'), '2', t('z1'), t('z2')],
    ['ZDIFFSTORE', t('d3'), '2', t('z1'), t('z2')],
    ['ZRANGE', t('d1'), '0', '-1', 'WITHSCORES'],
    ['ZRANGE', t('d2'), '0', '-1', 'WITHSCORES'],
    ['ZRANGE', t('d3'), '0', '-1', 'WITHSCORES'],
  ],
  SINTERCARD: [
    ['SADD', t('s1'), 'a', 'b', 'c'],
    ['SADD', t('s2'), 'b', 'c', 'd'],
    ['SINTERCARD', '2', t('s1'), t('s2')],
    ['SINTERCARD', '2', t('s1'), t('s2'), 'LIMIT', '1'],
  ],
  'EVAL / EVALSHA / EVAL_RO with numkeys': [
    ['SET', t('a'), '1'],
    ['EVAL', "return {KEYS[1], KEYS[2], ARGV[1], redis.call('GET', KEYS[1])}", '2', t('a'), t('b'), 'x'],
    ['EVAL', 'return 7', '0'],
    ['SCRIPT', 'LOAD', "return redis.call('INCR', KEYS[1])"],
    ['EVALSHA', '__SHA__', '1', t('a')],
    ['EVAL_RO', "return redis.call('GET', KEYS[1])", '1', t('a')],
    ['EVAL_RO', "return redis.call('SET', KEYS[1], 'x')", '1', t('a')],
  ],
  'FCALL / FCALL_RO with numkeys (and FCALL_RO of a write function: the server own error)': [
    ['FCALL', 'kset', '1', t('f'), 'v'],
    ['FCALL', 'kget', '1', t('f')],
    ['FCALL_RO', 'kget_ro', '1', t('f')],
    ['FCALL_RO', 'kset', '1', t('f'), 'w'],
    ['GET', t('f')],
  ],
  'SORT with STORE, BY and GET patterns (run on the sorted key shard)': [
    ['RPUSH', t('l'), '3', '1', '2'],
    [
      'MSET',
      t('w_1'),
      '30',
      t('w_2'),
      '10',
      t('w_3'),
      '20',
      t('o_1'),
      'one',
      t('o_2'),
      'two',
      t('o_3'),
      'three',
    ],
    ['SORT', t('l')],
    ['SORT', t('l'), 'DESC', 'STORE', t('sorted')],
    ['LRANGE', t('sorted'), '0', '-1'],
    ['SORT', t('l'), 'BY', `${t('w_')}*`, 'GET', '#', 'GET', `${t('o_')}*`],
    ['SORT_RO', t('l'), 'LIMIT', '0', '2'],
  ],
  'GEORADIUS / GEORADIUSBYMEMBER with STORE / STOREDIST': [
    ['GEOADD', t('g'), '13.361389', '38.115556', 'Palermo', '15.087269', '37.502669', 'Catania'],
    ['GEORADIUS', t('g'), '15', '37', '200', 'km', 'ASC'],
    ['GEORADIUS', t('g'), '15', '37', '200', 'km', 'STORE', t('gs')],
    ['GEORADIUSBYMEMBER', t('g'), 'Palermo', '200', 'km', 'STOREDIST', t('gd')],
    ['ZRANGE', t('gs'), '0', '-1'],
    ['ZRANGE', t('gd'), '0', '-1', 'WITHSCORES'],
  ],
  'XREAD / XREADGROUP STREAMS': [
    ['XADD', t('x1'), '1-1', 'f', 'a'],
    ['XADD', t('x2'), '1-2', 'f', 'b'],
    ['XREAD', 'COUNT', '5', 'STREAMS', t('x1'), t('x2'), '0', '0'],
    ['XGROUP', 'CREATE', t('x1'), 'g', '0'],
    ['XREADGROUP', 'GROUP', 'g', 'c', 'COUNT', '1', 'STREAMS', t('x1'), '>'],
    ['XINFO', 'STREAM', t('x1')],
  ],
  'malformed numkeys: the server own errors': [
    ['EVAL', 'return 1', 'x'],
    ['EVAL', 'return 1', '-1'],
    ['EVAL', 'return 1', '3', t('a')],
    ['LMPOP', '0', 'LEFT'],
    ['ZUNION', 'abc', t('z1')],
    ['SINTERCARD', '5', t('s1')],
    ['XREAD', 'STREAMS', t('x1')],
    ['XREAD', 'COUNT', '1'],
    ['ZUNIONSTORE', t('d'), '0', t('z1')],
  ],
};

async function run(client: RawRedis, steps: Case, sha: string): Promise<string[]> {
  const out: string[] = [];
  for (const step of steps) out.push(await client.call(...step.map((a) => (a === '__SHA__' ? sha : a))));
  return out;
}

function suite(shards: number): void {
  describe(`key specs, ${shards} shard(s): direct vs through rwsplit`, () => {
    let stack: RedisStack;
    let direct: RawRedis;
    let proxy: RawRedis;
    let sha = '';
    before(async () => {
      stack = await startRedisStack({ cluster: { shards, replicas: 1 } });
      proxy = await rawRedis(stack.port, 'rwsplit');
      // The server that holds {t}: the primary where a key written through rwsplit lands.
      await proxy.call('SET', t('where'), '1');
      let port = 0;
      for (const name of stack.redis.shardNames) {
        const p = stack.redis.shard(name).primary;
        if ((await stack.redis.command(p.id, 'EXISTS', t('where'))).trim() === '1') port = p.port;
      }
      assert.notEqual(port, 0, 'the primary holding {t} was found');
      direct = await rawRedis(port, 'direct');
      assert.match(await proxy.call('FUNCTION', 'LOAD', 'REPLACE', FUNCTIONS), /keyspecs/);
      sha = (await proxy.call('SCRIPT', 'LOAD', "return redis.call('INCR', KEYS[1])")).split('\r\n')[1]!;
      await stack.redis.waitForReplication();
    });
    after(async () => {
      direct?.close();
      proxy?.close();
      await stack?.stop();
    });

    for (const [name, steps] of Object.entries(CASES)) {
      test(name, async () => {
        assert.equal(await direct.call('FLUSHALL'), '+OK\r\n');
        const want = await run(direct, steps, sha);
        assert.equal(await proxy.call('FLUSHALL'), '+OK\r\n');
        const got = await run(proxy, steps, sha);
        for (let i = 0; i < steps.length; i++) {
          assert.equal(got[i], want[i], `${steps[i]!.join(' ')}: rwsplit's reply is the server's`);
        }
        // Not vacuous: most steps of a case (the malformed case excepted) succeed on the server.
        const errors = want.filter((r) => r.startsWith('-')).length;
        if (name.startsWith('malformed')) assert.equal(errors, steps.length, 'every malformed step errs');
        else assert.ok(errors <= 1, `${errors} of ${steps.length} steps err on the server`);
      });
    }

    if (shards > 1) {
      test('keys on different shards: -CROSSSLOT, nothing run', async () => {
        // Two keys of different shards, found through the proxy's own placement.
        const shardOf = async (k: string): Promise<number> => {
          const holder = await Promise.all(
            stack.redis.shardNames.map(async (n) =>
              (await stack.redis.command(stack.redis.shard(n).primary.id, 'EXISTS', k)).trim(),
            ),
          );
          return holder.indexOf('1');
        };
        const keys: string[] = [];
        for (let i = 0; keys.length < 2 && i < 200; i++) {
          const k = `cross:${i}`;
          await proxy.call('SET', k, '1');
          if (keys.length === 0 || (await shardOf(keys[0]!)) !== (await shardOf(k))) keys.push(k);
        }
        assert.equal(keys.length, 2, 'two keys on two shards');
        for (const cmd of [
          ['ZUNION', '2', keys[0]!, keys[1]!],
          ['LMPOP', '2', keys[0]!, keys[1]!, 'LEFT'],
          ['EVAL', 'return 1', '2', keys[0]!, keys[1]!],
          ['SORT', keys[0]!, 'STORE', keys[1]!],
          ['XREAD', 'STREAMS', keys[0]!, keys[1]!, '0', '0'],
        ]) {
          assert.match(await proxy.call(...cmd), /^-CROSSSLOT /, cmd.join(' '));
        }
      });
    }
  });
}

suite(1);
suite(2);
