/**
 * Login and idle timeouts on both ports, and the instance-wide buffer budget, with short
 * settings: silent connections are closed with an error in their protocol, real clients still
 * connect and work, idle ones are closed, and past `limits.maxBufferedBytes` the client holding
 * the most is cut off while the others carry on. Every cut-off is counted in
 * `rwsplit_clients_killed_total` and shows in the event log.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { pino } from 'pino';

import { Rwsplit } from '../src/app.js';
import { PgCluster } from '../src/cluster/pg-cluster.js';
import { RedisCluster } from '../src/cluster/redis-cluster.js';
import { redisCommand } from '../src/cluster/redis-client.js';
import { validateConfig } from '../src/config/load.js';
import { encodeCommand } from '../src/redis/resp/index.js';

const LOGIN_MS = 400;
const IDLE_MS = 1500;
const BUDGET = 4 * 1024 * 1024;

/** Connects, sends `bytes` (if any), and collects what arrives until the server closes. */
function silentClient(port: number, bytes?: Buffer): Promise<{ received: string; closed: Promise<string> }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let received = '';
    socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
    const closed = new Promise<string>((r) => socket.once('close', () => r(received)));
    socket.once('error', reject);
    socket.once('connect', () => {
      if (bytes) socket.write(bytes);
      resolve({ received, closed });
    });
  });
}

async function metric(httpPort: number, name: string, labels: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  const line = text
    .split('\n')
    .find((l) => l.startsWith(name) && labels.split(',').every((x) => l.includes(x)));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('client limits: login and idle timeouts, buffer budget', () => {
  let pgCluster: PgCluster;
  let redis: RedisCluster;
  let app: Rwsplit;
  let pgPort: number;
  let redisPort: number;
  let httpPort: number;

  before(async () => {
    [pgCluster, redis] = await Promise.all([
      PgCluster.start({ replicas: 0 }),
      RedisCluster.start({ shards: 1, replicas: 0 }),
    ]);
    const shard = redis.shard(redis.shardNames[0]!);
    const config = validateConfig({
      workers: 1,
      listen: {
        postgres: { host: '127.0.0.1', port: 0 },
        http: { host: '127.0.0.1', port: 0 },
        redis: { host: '127.0.0.1', port: 0 },
      },
      limits: { maxBufferedBytes: BUDGET },
      postgres: {
        nodes: pgCluster.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port })),
        limits: { loginTimeoutMs: LOGIN_MS, idleClientTimeoutMs: IDLE_MS },
      },
      redis: {
        shards: [
          {
            name: 's1',
            nodes: [{ id: shard.primary.id, host: shard.primary.host, port: shard.primary.port }],
          },
        ],
        auth: { password: 'letmein' },
        limits: { loginTimeoutMs: LOGIN_MS, idleClientTimeoutMs: IDLE_MS },
      },
    });
    app = await Rwsplit.start(config, { log: pino({ level: process.env.RWSPLIT_TEST_LOG ?? 'silent' }) });
    pgPort = app.pgAddress!.port;
    redisPort = app.redis!.address!.port;
    httpPort = app.httpAddress!.port;
  });

  after(async () => {
    await app?.stop();
    await Promise.allSettled([pgCluster?.stop(), redis?.stop()]);
  });

  test('PostgreSQL: a silent connection gets FATAL 08P01 naming loginTimeoutMs; a real client still logs in', async () => {
    const silent = await Promise.all([silentClient(pgPort), silentClient(pgPort)]);
    const client = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'postgres', database: 'postgres' });
    await client.connect();
    for (const s of silent) {
      const got = await s.closed;
      assert.match(got, /^E/);
      assert.match(got, /C08P01/);
      assert.match(got, /postgres\.limits\.loginTimeoutMs/);
    }
    await delay(LOGIN_MS + 200); // past the login timeout: a logged-in client is not touched by it
    const r = await client.query('SELECT 1 AS one');
    assert.equal(r.rows[0].one, 1);
    await client.end();
    assert.ok(
      (await metric(
        httpPort,
        'rwsplit_clients_killed_total',
        'protocol="postgres",reason="login-timeout"',
      )) >= 2,
    );
  });

  test('PostgreSQL: an idle session is closed with 57P01 naming idleClientTimeoutMs', async () => {
    const client = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'postgres', database: 'postgres' });
    // node-postgres reports the FATAL, then the closed connection: the first is the one that counts.
    const error = new Promise<Error>((resolve) => client.on('error', resolve));
    await client.connect();
    await client.query('SELECT 1');
    const err = (await error) as Error & { code?: string };
    assert.equal(err.code, '57P01');
    assert.match(err.message, /postgres\.limits\.idleClientTimeoutMs/);
  });

  test('Redis with AUTH required: a silent connection gets -ERR naming loginTimeoutMs; a real client works', async () => {
    const silent = await silentClient(redisPort);
    const got = await silent.closed;
    assert.match(got, /^-ERR .*redis\.limits\.loginTimeoutMs/);
    assert.equal(await redisCommand({ port: redisPort, password: 'letmein' }, 'PING'), 'PONG');
    assert.ok(
      (await metric(httpPort, 'rwsplit_clients_killed_total', 'protocol="redis",reason="login-timeout"')) >=
        1,
    );
  });

  test('Redis: an authenticated client that stays idle is closed', async () => {
    const s = await silentClient(
      redisPort,
      Buffer.concat([encodeCommand(['AUTH', 'letmein']), encodeCommand(['PING'])]),
    );
    const got = await s.closed;
    assert.equal(got, '+OK\r\n+PONG\r\n');
    assert.ok(
      (await metric(httpPort, 'rwsplit_clients_killed_total', 'protocol="redis",reason="idle-timeout"')) >= 1,
    );
  });

  test('buffer budget: a subscriber that reads nothing is cut off before its own limit; the publisher carries on', async () => {
    // The pub/sub class allows 32 MiB per client; the whole instance only BUDGET (4 MiB).
    const hog = net.connect({ host: '127.0.0.1', port: redisPort });
    hog.on('error', () => undefined);
    const hogClosed = new Promise<void>((r) => hog.once('close', () => r()));
    hog.write(Buffer.concat([encodeCommand(['AUTH', 'letmein']), encodeCommand(['SUBSCRIBE', 'budget'])]));
    await delay(200);
    hog.pause();
    // The publisher: one connection, 50 PUBLISH at a time, every reply read.
    const pub = net.connect({ host: '127.0.0.1', port: redisPort });
    let replies = '';
    let want = 0;
    let answered: (() => void) | null = null;
    pub.on('data', (d: Buffer) => {
      replies += d.toString('latin1');
      if (replies.split('\r\n').length - 1 >= want) answered?.();
    });
    const ask = (bytes: Buffer, count: number): Promise<void> =>
      new Promise((resolve) => {
        want += count;
        answered = resolve;
        pub.write(bytes);
      });
    await ask(encodeCommand(['AUTH', 'letmein']), 1);
    const batch = Buffer.concat(
      Array.from({ length: 50 }, () => encodeCommand(['PUBLISH', 'budget', 'm'.repeat(10_000)])),
    );
    let published = 0;
    const killed = (): Promise<number> =>
      metric(httpPort, 'rwsplit_clients_killed_total', 'protocol="redis",reason="buffer-budget"');
    // Far more than the budget if need be, published until the subscriber is cut off.
    while (published < 20_000 && (await killed()) === 0) {
      await ask(batch, 50);
      published += 50;
    }
    pub.end();
    const lines = replies.split('\r\n').filter((l) => l !== '');
    assert.equal(lines[0], '+OK');
    assert.ok(
      lines.slice(1).every((l) => /^:\d+$/.test(l)),
      `publisher saw: ${lines.find((l) => !/^:\d+$/.test(l))}`,
    );
    hog.resume();
    await hogClosed;
    assert.equal(
      await metric(httpPort, 'rwsplit_clients_killed_total', 'protocol="redis",reason="buffer-budget"'),
      1,
    );
    assert.equal(await metric(httpPort, 'rwsplit_buffered_bytes_limit', ''), BUDGET);
    const events = (await (await fetch(`http://127.0.0.1:${httpPort}/api/events`)).json()) as {
      type: string;
      detail: string;
    }[];
    assert.ok(events.some((e) => e.type === 'client-killed' && /buffer-budget/.test(e.detail)));
  });
});
