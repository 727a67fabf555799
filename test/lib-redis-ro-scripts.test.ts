import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { RedisCluster } from '../src/cluster/redis-cluster.js';
import { createRedis, type RwsplitRedis } from '../src/lib/redis/index.js';

/**
 * `rwsplit/redis` and the read-only script commands (FCALL_RO, EVAL_RO), on a real primary
 * and replica: they run on the replica, and a script flagged for writes, which a replica
 * refuses with `READONLY`, is asked of the primary, so the client sees what it sees directly
 * on the primary (the server is the oracle; the proxy does the same).
 */

const LIBRARY = [
  '#!lua name=rolib',
  "redis.register_function('kset', function(keys, args) return redis.call('SET', keys[1], args[1]) end)",
  "redis.register_function{function_name='kget_ro', callback=function(keys) return redis.call('GET', keys[1]) end, flags={'no-writes'}}",
].join('\n');
const FLAGGED_WRITE = "#!lua\nreturn redis.call('SET', KEYS[1], 'from-eval-ro')";
const UNFLAGGED_WRITE = "return redis.call('SET', KEYS[1], 'from-eval-ro')";
const READ = "return redis.call('GET', KEYS[1])";

/** The steps; every reply or error, as a client sees it. */
async function steps(r: Redis): Promise<unknown[]> {
  const seen = (p: Promise<unknown>): Promise<unknown> =>
    p.catch((e: Error) => `error: ${e.message.replace(/script: \w+/, 'script: <sha>')}`);
  return [
    await seen(r.fcall_ro('kget_ro', 1, 'ro:k')),
    await seen(r.fcall_ro('kset', 1, 'ro:k', 'from-fcall-ro')),
    await seen(r.eval_ro(READ, 1, 'ro:k')),
    await seen(r.eval_ro(FLAGGED_WRITE, 1, 'ro:k')),
    await seen(r.eval_ro(UNFLAGGED_WRITE, 1, 'ro:k')),
    await seen(r.get('ro:k')),
  ];
}

/** `INFO commandstats` of one command on one node: calls and rejected calls. */
async function stats(
  cluster: RedisCluster,
  id: string,
  command: string,
): Promise<{ calls: number; rejected: number; failed: number }> {
  const text = await cluster.command(id, 'INFO', 'commandstats');
  const m = new RegExp(`cmdstat_${command}:calls=(\\d+),.*?rejected_calls=(\\d+),failed_calls=(\\d+)`).exec(
    text,
  );
  return { calls: Number(m?.[1] ?? 0), rejected: Number(m?.[2] ?? 0), failed: Number(m?.[3] ?? 0) };
}

describe('rwsplit/redis: FCALL_RO / EVAL_RO of a script that writes', () => {
  let cluster: RedisCluster;
  let lib: RwsplitRedis;
  let direct: Redis;

  before(async () => {
    cluster = await RedisCluster.start({ shards: 1, replicas: 1 });
    const s = cluster.shard('s1');
    direct = new Redis({ host: s.primary.host, port: s.primary.port });
    await direct.call('FUNCTION', 'LOAD', LIBRARY);
    await direct.set('ro:k', 'original');
    await cluster.waitForReplication();
    lib = createRedis({
      nodes: [s.primary, ...s.replicas].map((n) => ({ id: n.id, host: n.host, port: n.port })),
      monitor: { intervalMs: 200, timeoutMs: 800 },
    });
    await lib.connect();
  });
  after(async () => {
    lib?.disconnect();
    direct?.disconnect();
    await cluster?.stop();
  });

  test('the library answers as the primary does; read-only scripts ran on the replica, refused ones were asked of the primary', async () => {
    const s = cluster.shard('s1');
    const replica = s.replicas[0]!.id;
    const before = await stats(cluster, replica, 'fcall_ro');
    const viaLib = await steps(lib);
    const after_ = await stats(cluster, replica, 'fcall_ro');
    const viaPrimary = await steps(direct);
    assert.deepEqual(viaLib, viaPrimary);
    // What the server says, so the comparison above is about the cases meant.
    assert.equal(viaPrimary[0], 'original');
    assert.match(String(viaPrimary[1]), /Can not execute a script with write flag using \*_ro command/);
    assert.match(String(viaPrimary[3]), /Can not execute a script with write flag using \*_ro command/);
    assert.match(String(viaPrimary[4]), /Write commands are not allowed from read-only scripts/);
    assert.equal(viaPrimary[5], 'original', 'no script wrote');
    // The library sent both FCALL_RO calls to the replica: one ran there, one was refused.
    assert.deepEqual(
      { calls: after_.calls - before.calls, rejected: after_.rejected - before.rejected },
      { calls: 1, rejected: 1 },
    );
    // ... and the refused one to the primary next, which refuses it as it does the direct
    // client's (Redis counts that refusal as a failed call): 2 on the primary, run by none.
    const onPrimary = await stats(cluster, s.primary.id, 'fcall_ro');
    assert.equal(onPrimary.failed, 2, JSON.stringify(onPrimary));
  });
});
