import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { createRedis, type RwsplitRedis } from '../src/lib/redis/index.js';
import { startRedisStack, type RedisStack } from './support/redis-stack.js';

/**
 * The in-process library (`rwsplit/redis`) as an ioredis client, on a real Redis deployment
 * (2 shards, each a primary and 2 replicas) with the proxy in front of the same nodes: code
 * written for ioredis runs unchanged (the same steps directly on a server and through the
 * library give the same results), reads on replicas and writes on primaries (INFO
 * commandstats), read-your-writes with a replica SIGSTOPped, tokens that cross between the
 * library and the proxy, the metrics, and a replica killed under reads.
 */

/** write-then-read pairs of the read-your-writes run; `npm run test:lib-ryw` runs 20,000 */
const PAIRS = Number(process.env.RWSPLIT_LIB_RYW_PAIRS ?? 2_000);
const LOOPS = 16;

async function commandCalls(
  stack: RedisStack,
  command: string,
): Promise<{ replicas: number; primaries: number }> {
  const calls = await stack.calls(command);
  let replicas = 0;
  let primaries = 0;
  for (const n of stack.redis.nodes) {
    if (n.role === 'primary') primaries += calls.get(n.id) ?? 0;
    else replicas += calls.get(n.id) ?? 0;
  }
  return { replicas, primaries };
}

/** A realistic slice of an ioredis application; `k` names its keys. Returns what it saw. */
async function appSteps(r: Redis, k: (name: string) => string): Promise<unknown[]> {
  const out: unknown[] = [];
  out.push(await r.set(k('greeting'), 'hello'));
  out.push(await r.get(k('greeting')));
  out.push(await r.getBuffer(k('greeting')));
  out.push(await r.set(k('n'), '10', 'EX', 100));
  out.push(await r.incrby(k('n'), 5));
  out.push((await r.ttl(k('n'))) > 0);
  out.push(await r.hset(k('user'), { name: 'ada', lang: 'en' }));
  out.push(await r.hgetall(k('user')));
  out.push(await r.hincrby(k('user'), 'visits', 3));
  out.push(await r.mset(k('a'), '1', k('b'), '2', k('c'), '3'));
  out.push(await r.mget(k('a'), k('b'), k('missing'), k('c')));
  out.push(await r.exists(k('a'), k('b'), k('missing')));
  out.push(await r.rpush(k('list'), 'x', 'y', 'z'));
  out.push(await r.lrange(k('list'), 0, -1));
  out.push(await r.zadd(k('board'), 3, 'carol', 1, 'alice', 2, 'bob'));
  out.push(await r.zrange(k('board'), 0, -1, 'WITHSCORES'));
  out.push(await r.get(k('list')).catch((e: Error) => `error: ${e.message}`));
  out.push(await r.pipeline().set(k('p1'), 'one').incr(k('p2')).get(k('p1')).hget(k('user'), 'name').exec());
  const tag = k('{cart}');
  out.push(await r.multi().set(`${tag}:a`, '1').incr(`${tag}:n`).get(`${tag}:a`).exec());
  out.push(await r.eval("return redis.call('incrby', KEYS[1], ARGV[1])", 1, k('script'), 7));
  r.defineCommand('getset2', {
    numberOfKeys: 1,
    lua: "local old = redis.call('get', KEYS[1]); redis.call('set', KEYS[1], ARGV[1]); return old",
  });
  const custom = r as unknown as { getset2(key: string, v: string): Promise<string | null> };
  out.push(await custom.getset2(k('custom'), 'first'));
  out.push(await custom.getset2(k('custom'), 'second'));
  out.push(await r.del(k('a'), k('b'), k('c'), k('missing')));
  out.push(await r.mget(k('a'), k('b')));
  return out;
}

describe('rwsplit/redis: an ioredis client that splits reads and writes in the process', () => {
  let stack: RedisStack;
  let lib: RwsplitRedis;
  const extra: { disconnect(): void }[] = [];
  const nodes = (): { name: string; nodes: { id: string; host: string; port: number }[] }[] =>
    stack.redis.shardNames.map((name) => {
      const s = stack.redis.shard(name);
      return {
        name,
        nodes: [s.primary, ...s.replicas].map((n) => ({ id: n.id, host: n.host, port: n.port })),
      };
    });

  before(async () => {
    stack = await startRedisStack();
    lib = createRedis({ shards: nodes(), monitor: { intervalMs: 200, timeoutMs: 800 } });
    await lib.connect();
  });
  after(async () => {
    for (const c of extra) c.disconnect();
    lib?.disconnect();
    await stack?.stop();
  });

  test('a bad option is an error naming it', () => {
    const shards = [{ name: 's1', nodes: [{ host: '127.0.0.1', port: 1 }] }];
    assert.throws(() => createRedis({ shards, staleness: { maxLagMs: -1 } }), /staleness\.maxLagMs/);
    assert.throws(() => createRedis({ shards, balance: 'psychic' }), /balance/);
    assert.throws(() => createRedis({ shards, failover: 'auto' as never }), /failover: mode auto/);
    assert.throws(() => createRedis({ shards, db: 3 } as never), /unknown option db/);
    assert.throws(() => createRedis({}), /give either nodes/);
  });

  test('the same ioredis code gives the same results directly on a server and through the library', async () => {
    const direct = new Redis({
      host: stack.redis.shard('s1').primary.host,
      port: stack.redis.shard('s1').primary.port,
    });
    extra.push(direct);
    const viaServer = await appSteps(direct, (n) => `diff:direct:${n}`);
    const viaLib = await appSteps(lib, (n) => `diff:lib:${n}`);
    assert.deepEqual(viaLib, viaServer);
    assert.ok(lib instanceof Redis, 'the client is an ioredis Redis');
  });

  test('pub/sub: a subscriber gets what another client publishes, by channel and by pattern', async () => {
    const sub = lib.duplicate();
    extra.push(sub);
    const got: string[] = [];
    sub.on('message', (ch: string, msg: string) => got.push(`${ch}:${msg}`));
    sub.on('pmessage', (p: string, ch: string, msg: string) => got.push(`${p}|${ch}:${msg}`));
    assert.equal(await sub.subscribe('news', 'sports'), 2);
    assert.equal(await sub.psubscribe('alerts.*'), 3);
    await lib.publish('news', 'one');
    await lib.publish('sports', 'two');
    await lib.publish('alerts.fire', 'three');
    for (let i = 0; i < 100 && got.length < 3; i++) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(got.sort(), ['alerts.*|alerts.fire:three', 'news:one', 'sports:two']);
    assert.equal(await sub.unsubscribe(), 1);
  });

  test('unsupported commands are refused with the reason', async () => {
    await assert.rejects(lib.watch('k'), /WATCH is not supported here/);
    await assert.rejects(lib.select(2), /database 0/);
    await assert.rejects(
      lib.call('RWSPLIT', 'TOKEN', 'not-a-token'),
      /expected r1:<shard>=<offset>@<40-hex replid>/,
    );
  });

  test(`${PAIRS} write-then-read pairs from ${LOOPS} clients, a replica SIGSTOPped for half of them: 0 stale reads, >= 90% of reads on replicas while caught up`, async () => {
    const clients = Array.from({ length: LOOPS }, () => lib.duplicate());
    extra.push(...clients);
    const counters = clients.map(() => 0);
    const stale: string[] = [];
    let pairs = 0;
    const run = async (n: number): Promise<void> => {
      const per = Math.ceil(n / clients.length);
      await Promise.all(
        clients.map(async (c, i) => {
          for (let j = 0; j < per; j++) {
            const v = ++counters[i]!;
            const key = `ryw:${i}:${v % 16}`;
            await c.set(key, String(v));
            const got = await c.get(key);
            pairs++;
            if (got !== String(v)) stale.push(`${key}: wrote ${v}, read ${got}`);
          }
        }),
      );
    };
    await stack.redis.waitForReplication();
    const before_ = await commandCalls(stack, 'get');
    await run(PAIRS / 2);
    const caughtUp = await commandCalls(stack, 'get');
    const onReplicas = caughtUp.replicas - before_.replicas;
    const total = onReplicas + caughtUp.primaries - before_.primaries;
    const share = onReplicas / total;
    console.log(
      `rwsplit/redis read-your-writes: ${(share * 100).toFixed(1)}% of ${total} GETs on replicas while caught up`,
    );
    assert.ok(total >= PAIRS / 2);
    assert.ok(share >= 0.9, `>= 90% of reads on replicas (${(share * 100).toFixed(1)}%)`);

    const victim = stack.redis.shard('s1').replicas[0]!;
    stack.redis.signal(victim.id, 'SIGSTOP');
    try {
      await run(PAIRS / 2);
    } finally {
      stack.redis.signal(victim.id, 'SIGCONT');
    }
    console.log(`rwsplit/redis read-your-writes: ${pairs} pairs, ${stale.length} stale reads`);
    assert.ok(pairs >= PAIRS);
    assert.deepEqual(stale.slice(0, 10), []);
  });

  test('tokens cross: the library gives one the proxy takes, and the reverse', async () => {
    const proxy = new Redis({ host: '127.0.0.1', port: stack.port });
    const proxyReader = new Redis({ host: '127.0.0.1', port: stack.port });
    extra.push(proxy, proxyReader);
    const victim = stack.redis.shard('s2').replicas[1]!;
    stack.redis.signal(victim.id, 'SIGSTOP');
    try {
      for (let n = 1; n <= 50; n++) {
        await lib.set(`cross:${n % 5}`, `lib-${n}`);
        const token = await lib.causalToken();
        assert.match(token ?? '', /^r1:(s[12]=\d+@[0-9a-f]{40},?)+$/);
        assert.equal(await proxyReader.call('RWSPLIT', 'TOKEN', token!), 'OK');
        assert.equal(await proxyReader.get(`cross:${n % 5}`), `lib-${n}`);

        await proxy.set(`cross:${n % 5}`, `proxy-${n}`);
        const fromProxy = (await proxy.call('RWSPLIT', 'TOKEN')) as string;
        const reader = lib.withToken(fromProxy);
        assert.equal(await reader.get(`cross:${n % 5}`), `proxy-${n}`);
        reader.disconnect();
      }
    } finally {
      stack.redis.signal(victim.id, 'SIGCONT');
    }
    const fresh = lib.duplicate();
    extra.push(fresh);
    assert.equal(await fresh.causalToken(), null, 'no write yet: no token');
  });

  test('metrics: the proxy metric names, counting what INFO commandstats counts', async () => {
    const c = lib.duplicate();
    extra.push(c);
    await c.call('RWSPLIT', 'CONSISTENCY', 'eventual');
    const text0 = await lib.metrics.metrics();
    const count = (text: string, kind: string): number => {
      let sum = 0;
      for (const m of text.matchAll(
        new RegExp(`^rwsplit_redis_commands_total\\{node="([^"]+)",kind="${kind}"\\} (\\d+)`, 'gm'),
      ))
        sum += Number(m[2]);
      return sum;
    };
    const before_ = await commandCalls(stack, 'strlen');
    for (let i = 0; i < 200; i++) await c.strlen(`metrics:${i}`);
    const after_ = await commandCalls(stack, 'strlen');
    const text = await lib.metrics.metrics();
    assert.equal(after_.replicas - before_.replicas, 200, 'eventual: every read on a replica');
    assert.equal(count(text, 'read') - count(text0, 'read'), 200);
    assert.match(
      text,
      /^rwsplit_node_up\{node="redis-s1-primary",kind="redis",role="primary",state="up"\} 1$/m,
    );
    assert.match(text, /^rwsplit_replication_lag_bytes\{node="redis-s2-replica1"\} \d+$/m);
  });

  test('kill -9 of a replica under reads: 0 failed reads, and no read goes to it after', async () => {
    const readers = Array.from({ length: 8 }, () => lib.duplicate());
    extra.push(...readers);
    for (const r of readers) await r.call('RWSPLIT', 'CONSISTENCY', 'bounded');
    await lib.set('kill:key', 'v');
    await stack.redis.waitForReplication();
    const victim = stack.redis.shard(stack.redis.shardNames[0]!).replicas[0]!;
    let failures = 0;
    let reads = 0;
    let stop = false;
    const loops = readers.map(async (r) => {
      while (!stop) {
        try {
          await r.get('kill:key');
          reads++;
        } catch {
          failures++;
        }
      }
    });
    await new Promise((r) => setTimeout(r, 300));
    await stack.redis.kill(victim.id);
    await new Promise((r) => setTimeout(r, 700));
    stop = true;
    await Promise.all(loops);
    console.log(`rwsplit/redis kill -9 of ${victim.id}: ${reads} reads, ${failures} failed`);
    assert.equal(failures, 0);
    assert.ok(reads > 0);
    assert.equal(lib.nodes().find((n) => n.id === victim.id)?.state, 'down');
  });
});
