import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { createClient } from 'redis';
import { startRedisStack, type RedisStack } from './support/redis-stack.js';
import { nodeStates, waitFor } from './support/stack.js';

function raw(
  port: number,
  bytes: Buffer | string,
  waitMs = 1500,
): Promise<{ reply: string; closed: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => s.write(bytes));
    let reply = '';
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ reply, closed: false });
    }, waitMs);
    s.on('data', (d) => (reply += d.toString('latin1')));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ reply, closed: true });
    });
  });
}

function redisCli(port: number, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args]);
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', () => resolve(out.trim()));
  });
}

describe('Redis through the proxy', () => {
  let stack: RedisStack;
  const clients: Redis[] = [];
  const client = (): Redis => {
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
    stack = await startRedisStack();
  });
  after(async () => {
    for (const c of clients) c.disconnect();
    await stack?.stop();
  });

  test('SET goes to shard primaries and GET to their replicas (INFO commandstats of each node)', async () => {
    const c = client();
    for (let i = 0; i < 200; i++)
      await c.set(`k${i}:${createHash('md5').update(String(i)).digest('hex')}`, `v${i}`);
    await stack.redis.waitForReplication();
    for (let i = 0; i < 200; i++)
      assert.equal(await c.get(`k${i}:${createHash('md5').update(String(i)).digest('hex')}`), `v${i}`);
    const sets = await stack.calls('set');
    const gets = await stack.calls('get');
    for (const n of stack.redis.nodes) {
      if (n.role === 'primary') {
        assert.ok(sets.get(n.id)! > 0, `${n.id} took writes`);
        assert.equal(gets.get(n.id), 0, `${n.id} (primary) took no reads`);
      } else {
        // (a replica's own cmdstat_set counts the writes it replays from its primary)
        assert.ok(gets.get(n.id)! > 0, `${n.id} served reads`);
      }
    }
    const onPrimaries = stack.redis.nodes
      .filter((n) => n.role === 'primary')
      .reduce((a, n) => a + sets.get(n.id)!, 0);
    assert.equal(onPrimaries, 200, 'each SET ran once, on the primary of its shard');
    const readsOnReplicas = stack.redis.nodes
      .filter((n) => n.role === 'replica')
      .reduce((a, n) => a + gets.get(n.id)!, 0);
    assert.equal(readsOnReplicas, 200, 'every GET ran on a replica');
  });

  test('a pipeline spanning shards gets its replies in request order', async () => {
    const c = client();
    const p = c.pipeline();
    for (let i = 0; i < 300; i++) p.set(`p${i}`, String(i)).incr(`n${i}`).get(`p${i}`);
    const res = (await p.exec())!;
    for (let i = 0; i < 300; i++) {
      assert.deepEqual(res[i * 3], [null, 'OK']);
      assert.equal(res[i * 3 + 1]![1], 1);
    }
  });

  test('MSET, MGET, DEL, EXISTS split over shards and merged in order', async () => {
    const c = client();
    const keys = Array.from({ length: 50 }, (_, i) => `multi:${i}`);
    assert.equal(await c.mset(Object.fromEntries(keys.map((k) => [k, `val-${k}`]))), 'OK');
    await stack.redis.waitForReplication();
    assert.deepEqual(await c.mget(...keys, 'missing-key'), [...keys.map((k) => `val-${k}`), null]);
    assert.equal(await c.exists(...keys, 'missing-key'), 50);
    assert.equal(await c.del(...keys.slice(0, 20)), 20);
    await stack.redis.waitForReplication();
    assert.equal(await c.exists(...keys), 30);
  });

  test('MULTI/EXEC on one shard works; across shards it is refused with CROSSSLOT', async () => {
    const c = client();
    const res = await c.multi().set('{acct:1}:a', '1').incrby('{acct:1}:b', 5).get('{acct:1}:a').exec();
    assert.deepEqual(res, [
      [null, 'OK'],
      [null, 5],
      [null, '1'],
    ]);
    // Some x<i> lives on the other shard: that transaction must be refused as a whole.
    let refused: Error | null = null;
    for (let i = 0; i < 100 && !refused; i++) {
      const r = await c
        .multi()
        .set('{acct:1}:a', '2')
        .set(createHash('md5').update(String(i)).digest('hex'), '1') // spread: FNV clusters similar keys
        .exec()
        .catch((e: Error) => e);
      if (r instanceof Error) refused = r;
    }
    assert.ok(refused, 'a cross-shard transaction was refused');
    assert.match(refused.message, /CROSSSLOT|EXECABORT/);
  });

  test('WATCH + MULTI/EXEC: a concurrent change aborts the transaction', async () => {
    const a = client();
    const b = client();
    await a.set('{w}:k', '1');
    await a.watch('{w}:k');
    await b.set('{w}:k', '2');
    const res = await a.multi().set('{w}:k', '3').exec();
    assert.equal(res, null, 'EXEC after a watched key changed returns nil');
    assert.equal(
      await b.get('{w}:k').then(async () => (await stack.redis.waitForReplication(), a.get('{w}:k'))),
      '2',
    );
  });

  test('Pub/Sub: SUBSCRIBE and PUBLISH, sharded by channel', async () => {
    const sub = client();
    const pub = client();
    const got: string[] = [];
    sub.on('message', (ch: string, msg: string) => got.push(`${ch}=${msg}`));
    await sub.subscribe('news', 'sports', 'weather');
    for (const ch of ['news', 'sports', 'weather']) await pub.publish(ch, `hello ${ch}`);
    await waitFor('3 messages', () => got.length === 3, 5000);
    assert.deepEqual(got.sort(), ['news=hello news', 'sports=hello sports', 'weather=hello weather']);
  });

  test('BLPOP blocks on a connection of its own and gets the pushed element', async () => {
    const waiter = client();
    const pusher = client();
    const pending = waiter.blpop('{q}:jobs', 5);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(await pusher.get('nothing'), null, 'other clients are not blocked meanwhile');
    await pusher.rpush('{q}:jobs', 'job-1');
    assert.deepEqual(await pending, ['{q}:jobs', 'job-1']);
  });

  test('redis-cli and node-redis work through it', async () => {
    assert.equal(await redisCli(stack.port, 'SET', 'cli-key', 'cli-value'), 'OK');
    await stack.redis.waitForReplication();
    assert.equal(await redisCli(stack.port, 'GET', 'cli-key'), 'cli-value');
    const nr = createClient({ socket: { host: '127.0.0.1', port: stack.port } });
    await nr.connect();
    try {
      await nr.set('nr-key', 'nr-value');
      await stack.redis.waitForReplication();
      assert.equal(await nr.get('nr-key'), 'nr-value');
      assert.equal(await nr.ping(), 'PONG');
    } finally {
      await nr.quit();
    }
  });

  test('malformed RESP, a 2^40 bulk length and an unknown command: -ERR, only that client affected', async () => {
    const bystander = client();
    const load = redisBenchmark(stack.port, ['-t', 'get,set', '-n', '30000', '-c', '20', '-q']);
    await new Promise((r) => setTimeout(r, 200));
    const garbage = await raw(stack.port, '*2\r\n$3\r\nGET\r\nxx\r\n');
    assert.match(garbage.reply, /^-ERR Protocol error/);
    assert.ok(garbage.closed);
    const huge = await raw(stack.port, '*2\r\n$3\r\nGET\r\n$1099511627776\r\n');
    assert.match(huge.reply, /^-ERR Protocol error.*maxBulkBytes/);
    assert.ok(huge.closed);
    const unknown = await raw(stack.port, '*1\r\n$10\r\nNOSUCHCMD1\r\n', 500);
    assert.match(unknown.reply, /^-ERR unknown command 'NOSUCHCMD1'/); // as sent, like Redis
    assert.equal(unknown.closed, false, 'an unknown command does not close the connection');
    assert.equal(await bystander.ping(), 'PONG');
    const bench = await load;
    assert.equal(bench.code, 0, bench.out);
    assert.match(bench.out, /GET: [\d.]+ requests per second/, bench.out);
    assert.doesNotMatch(bench.out, /error/i, bench.out);
  });

  test('a SIGSTOPped replica leaves rotation; reads keep working', async () => {
    const shard = stack.redis.shard(stack.redis.shardNames[0]!);
    const victim = shard.replicas[0]!;
    stack.redis.signal(victim.id, 'SIGSTOP');
    try {
      await waitFor(`${victim.id} down`, async () => {
        const nodes = await nodeStates(stack.httpPort);
        return nodes.find((n) => n.id === victim.id)?.state === 'down';
      });
      const c = client();
      for (let i = 0; i < 100; i++)
        assert.equal(await c.get(`k${i}:${createHash('md5').update(String(i)).digest('hex')}`), `v${i}`);
    } finally {
      stack.redis.signal(victim.id, 'SIGCONT');
    }
  });
});

function redisBenchmark(port: number, args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('redis-benchmark', ['-h', '127.0.0.1', '-p', String(port), ...args]);
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out }));
  });
}

describe('Redis: faults, RESP3 and AUTH', () => {
  let stack: RedisStack;
  before(async () => {
    stack = await startRedisStack({ redis: { auth: { password: 'proxy-secret' } } });
  });
  after(async () => stack?.stop());

  test('AUTH is required and checked at the proxy', async () => {
    const anon = new Redis({
      host: '127.0.0.1',
      port: stack.port,
      maxRetriesPerRequest: 0,
      lazyConnect: true,
      enableReadyCheck: false,
      retryStrategy: () => null,
    });
    await anon.connect();
    await assert.rejects(anon.get('x'), /NOAUTH/);
    await assert.rejects(anon.auth('wrong'), /WRONGPASS/);
    assert.equal(await anon.auth('proxy-secret'), 'OK');
    assert.equal(await anon.set('authed', '1'), 'OK');
    anon.disconnect();
  });

  test('node-redis speaking RESP3 (HELLO 3) through the proxy', async () => {
    const c = createClient({
      socket: { host: '127.0.0.1', port: stack.port },
      password: 'proxy-secret',
      RESP: 3,
    });
    await c.connect();
    try {
      await c.hSet('{h}:user', { name: 'ada', lang: 'en' });
      await stack.redis.waitForReplication();
      const h = await c.hGetAll('{h}:user');
      assert.equal(h.name, 'ada');
      assert.equal(h.lang, 'en');
      assert.equal(await c.ping(), 'PONG');
    } finally {
      await c.quit();
    }
  });

  test('kill -9 of a replica under redis-benchmark -t get: zero errors', async () => {
    const shard = stack.redis.shard(stack.redis.shardNames[1]!);
    const victim = shard.replicas[1]!;
    const run = redisBenchmark(stack.port, [
      '-a',
      'proxy-secret',
      '-t',
      'get',
      '-n',
      '100000',
      '-c',
      '50',
      '-q',
    ]);
    await new Promise((r) => setTimeout(r, 400));
    await stack.redis.kill(victim.id);
    const r = await run;
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /GET: [\d.]+ requests per second/, r.out);
    assert.doesNotMatch(r.out, /error/i, r.out);
  });
});
