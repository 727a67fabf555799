import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { startRedisStack, type RedisStack } from './support/redis-stack.js';

/**
 * Read-your-writes through rwsplit (the default consistency level): many connections each
 * write a key and read it back at once, while one replica is SIGSTOPped part of the time
 * (the way to make Redis lag) and then catches up. No read may return an older value than
 * the connection's last acknowledged write, and while replicas are caught up most reads
 * still go to replicas.
 */

/** write-then-read pairs in the checker (split over the phases below) */
const PAIRS = 20_000;
const CONNECTIONS = 16;
/** keys per connection: values grow, so a stale read returns a smaller one (or nil) */
const KEYS_PER_CONNECTION = 20;
/** token hand-overs from one connection to another */
const HANDOVERS = 2_000;

interface Checker {
  pairs: number;
  stale: string[];
}

/** `pairs` SET-then-GET pairs spread over `clients`; counters continue across calls. */
async function writeThenRead(
  clients: Redis[],
  counters: number[],
  pairs: number,
  out: Checker,
): Promise<void> {
  const per = Math.ceil(pairs / clients.length);
  await Promise.all(
    clients.map(async (c, i) => {
      for (let n = 0; n < per; n++) {
        const v = ++counters[i]!;
        const key = `ryw:${i}:${v % KEYS_PER_CONNECTION}`;
        await c.set(key, String(v));
        const got = await c.get(key);
        out.pairs++;
        if (got !== String(v)) out.stale.push(`${key}: wrote ${v}, read ${got}`);
      }
    }),
  );
}

async function getCalls(stack: RedisStack): Promise<{ replicas: number; primaries: number }> {
  const calls = await stack.calls('get');
  let replicas = 0;
  let primaries = 0;
  for (const n of stack.redis.nodes) {
    if (n.role === 'primary') primaries += calls.get(n.id) ?? 0;
    else replicas += calls.get(n.id) ?? 0;
  }
  return { replicas, primaries };
}

describe('read-your-writes (Redis)', () => {
  let stack: RedisStack;
  const clients: Redis[] = [];
  const connect = (): Redis => {
    const c = new Redis({
      host: '127.0.0.1',
      port: stack.port,
      maxRetriesPerRequest: 1,
      retryStrategy: () => null,
    });
    clients.push(c);
    return c;
  };
  before(async () => {
    stack = await startRedisStack({ redis: { monitor: { intervalMs: 200, timeoutMs: 800 } } });
  });
  after(async () => {
    for (const c of clients) c.disconnect();
    await stack?.stop();
  });

  test(`${PAIRS} write-then-read pairs from ${CONNECTIONS} connections, a replica SIGSTOPped part of the time: zero stale reads`, async () => {
    const conns = Array.from({ length: CONNECTIONS }, connect);
    const counters = conns.map(() => 0);
    const check: Checker = { pairs: 0, stale: [] };
    const victim = stack.redis.shard('s1').replicas[0]!;

    // Phase 1: replicas caught up; where do the reads go?
    const before = await getCalls(stack);
    await writeThenRead(conns, counters, PAIRS / 2, check);
    const during = await getCalls(stack);
    const onReplicas = during.replicas - before.replicas;
    const onPrimaries = during.primaries - before.primaries;
    const fraction = onReplicas / (onReplicas + onPrimaries);
    console.log(
      `redis read-your-writes: ${(fraction * 100).toFixed(1)}% of ${onReplicas + onPrimaries} GETs went to replicas while they were caught up`,
    );
    assert.ok(fraction > 0.5, `most reads still go to replicas (${(fraction * 100).toFixed(1)}%)`);

    // Phase 2: one replica stopped, then continued (it lags while it catches up).
    stack.redis.signal(victim.id, 'SIGSTOP');
    try {
      await writeThenRead(conns, counters, PAIRS / 4, check);
    } finally {
      stack.redis.signal(victim.id, 'SIGCONT');
    }
    await writeThenRead(conns, counters, PAIRS / 4, check);
    console.log(`redis read-your-writes: ${check.pairs} pairs, ${check.stale.length} stale reads`);
    assert.ok(check.pairs >= PAIRS);
    assert.deepEqual(check.stale.slice(0, 10), []);
  });

  test(`a token handed from one connection to another: ${HANDOVERS} hand-overs, zero stale reads`, async () => {
    const writers = Array.from({ length: 4 }, connect);
    const readers = Array.from({ length: 4 }, connect);
    const stale: string[] = [];
    const victim = stack.redis.shard('s2').replicas[1]!;
    let stopped = false;
    const toggle = setInterval(() => {
      stack.redis.signal(victim.id, stopped ? 'SIGCONT' : 'SIGSTOP');
      stopped = !stopped;
    }, 700);
    try {
      await Promise.all(
        writers.map(async (w, i) => {
          const r = readers[i]!;
          for (let n = 1; n <= HANDOVERS / writers.length; n++) {
            const key = `handover:${i}:${n % 10}`;
            await w.set(key, String(n));
            const token = (await w.call('RWSPLIT', 'TOKEN')) as string;
            assert.match(token, /^r1:(s[12]=\d+@[0-9a-f]{40},?)+$/);
            assert.equal(await r.call('RWSPLIT', 'TOKEN', token), 'OK');
            const got = await r.get(key);
            if (got !== String(n)) stale.push(`${key}: wrote ${n}, read ${got}`);
          }
        }),
      );
    } finally {
      clearInterval(toggle);
      if (stopped) stack.redis.signal(victim.id, 'SIGCONT');
    }
    assert.deepEqual(stale.slice(0, 10), []);
  });

  test('RWSPLIT CONSISTENCY per connection; a malformed token is refused with the format', async () => {
    const c = connect();
    assert.equal(await c.call('RWSPLIT', 'CONSISTENCY'), 'read-your-writes');
    await assert.rejects(
      c.call('RWSPLIT', 'TOKEN', 'not-a-token'),
      /expected r1:<shard>=<offset>@<40-hex replid>/,
    );
    await assert.rejects(
      c.call('RWSPLIT', 'CONSISTENCY', 'psychic'),
      /use eventual, bounded, read-your-writes, strong/,
    );
    assert.equal(await c.call('RWSPLIT', 'TOKEN'), null, 'no write yet: no token');
    assert.equal(await c.call('RWSPLIT', 'CONSISTENCY', 'strong'), 'OK');
    await stack.redis.waitForReplication();
    const before = await getCalls(stack);
    for (let i = 0; i < 100; i++) await c.get(`ryw:0:${i % KEYS_PER_CONNECTION}`);
    const after_ = await getCalls(stack);
    assert.equal(after_.primaries - before.primaries, 100, 'strong: every read on a primary');
    assert.equal(await c.call('RWSPLIT', 'CONSISTENCY', 'eventual'), 'OK');
    for (let i = 0; i < 100; i++) await c.get(`ryw:0:${i % KEYS_PER_CONNECTION}`);
    const last = await getCalls(stack);
    assert.equal(last.replicas - after_.replicas, 100, 'eventual: every read on a replica');
  });
});
