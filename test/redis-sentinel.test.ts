import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { Rwsplit } from '../src/app.js';
import { PgCluster } from '../src/cluster/pg-cluster.js';
import { RedisCluster } from '../src/cluster/redis-cluster.js';
import { RedisSentinels } from '../src/cluster/redis-sentinel.js';
import { validateConfig } from '../src/config/load.js';
import { nodeStates, waitFor } from './support/stack.js';

/**
 * `redis.failover.mode: follow` with real Redis Sentinels as the authority: 3 Sentinels
 * (quorum 2, down-after 1000 ms) watch one shard (a primary and 2 replicas). After kill -9
 * of the primary, Sentinel promotes a replica and announces it (+switch-master); rwsplit
 * must then route writes to the node Sentinel names. The old primary, restarted, reports
 * master until Sentinel turns it into a replica: rwsplit fences it meanwhile.
 */

const MASTER = 'rw-s1';
const INTERVAL_MS = 200;

describe('following Redis Sentinel', () => {
  let redis: RedisCluster;
  let pg: PgCluster;
  let sentinels: RedisSentinels;
  let app: Rwsplit;
  const clients: Redis[] = [];
  before(async () => {
    [redis, pg] = await Promise.all([
      RedisCluster.start({ shards: 1, replicas: 2 }),
      PgCluster.start({ replicas: 0 }),
    ]);
    const s1 = redis.shard('s1');
    sentinels = await RedisSentinels.start({
      masters: [{ name: MASTER, port: s1.primary.port, replicas: 2 }],
      count: 3,
      quorum: 2,
      downAfterMs: 1000,
      failoverTimeoutMs: 5000,
    });
    const config = validateConfig({
      workers: 1,
      listen: {
        postgres: { host: '127.0.0.1', port: 0 },
        http: { host: '127.0.0.1', port: 0 },
        redis: { host: '127.0.0.1', port: 0 },
      },
      postgres: { nodes: pg.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port })) },
      redis: {
        shards: [
          {
            name: 's1',
            sentinelName: MASTER,
            nodes: [s1.primary, ...s1.replicas].map((n) => ({ id: n.id, host: n.host, port: n.port })),
          },
        ],
        monitor: { intervalMs: INTERVAL_MS, timeoutMs: 800 },
        failover: { mode: 'follow', sentinels: sentinels.nodes.map((n) => ({ host: n.host, port: n.port })) },
      },
    });
    app = await Rwsplit.start(config, { log: pino({ level: process.env.RWSPLIT_TEST_LOG ?? 'silent' }) });
  });
  after(async () => {
    for (const c of clients) c.disconnect();
    await app?.stop();
    await Promise.all([sentinels?.stop(), redis?.stop(), pg?.stop()]);
  });

  test("after Sentinel's failover, writes go to the node Sentinel names; the old primary is fenced until it is a replica", async () => {
    const s1 = redis.shard('s1');
    const old = s1.primary;
    const port = app.redis!.address!.port;
    const c = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1, retryStrategy: () => null });
    clients.push(c);
    assert.equal(await c.set('sentinel:before', '1'), 'OK');

    const watcher = new Redis({ host: '127.0.0.1', port: sentinels.nodes[0]!.port });
    clients.push(watcher);
    let announcedAt = 0;
    watcher.on('message', (channel: string) => {
      if (channel === '+switch-master' && announcedAt === 0) announcedAt = Date.now();
    });
    await watcher.subscribe('+switch-master');

    const killedAt = Date.now();
    await redis.kill(old.id);
    await waitFor('Sentinel to announce +switch-master', () => announcedAt > 0, 40_000);
    const named = await sentinels.masterAddress(MASTER);
    const promoted = s1.replicas.find((r) => r.port === named?.port);
    assert.ok(promoted, `Sentinel names one of the replicas (${JSON.stringify(named)})`);

    // A write sent at the announcement completes once rwsplit routes to the new primary.
    assert.equal(await c.set('sentinel:after', String(announcedAt)), 'OK');
    const routedAt = Date.now();
    console.log(
      `redis sentinel follow: Sentinel announced ${announcedAt - killedAt} ms after the kill; ` +
        `rwsplit routed a write ${routedAt - announcedAt} ms after the announcement (monitor interval ${INTERVAL_MS} ms)`,
    );
    assert.equal(
      await redis.command(promoted.id, 'GET', 'sentinel:after'),
      String(announcedAt),
      'the write landed on the node Sentinel names',
    );
    assert.equal(app.redis!.topologies[0]!.primary()?.spec.id, promoted.id);

    // The old primary comes back empty as a master: fenced until Sentinel makes it a replica.
    await redis.restart(old.id);
    await waitFor(
      `${old.id} fenced`,
      async () => (await nodeStates(app.httpAddress!.port)).find((n) => n.id === old.id)?.state === 'fenced',
    );
    for (let i = 0; i < 20; i++) assert.equal(await c.set(`sentinel:fenced:${i}`, 'x'), 'OK');
    assert.equal(
      await redis.command(old.id, 'GET', 'sentinel:fenced:0'),
      '',
      'no write reached the old primary',
    );
    await waitFor(
      `${old.id} turned replica by Sentinel and unfenced`,
      async () => (await nodeStates(app.httpAddress!.port)).find((n) => n.id === old.id)?.state !== 'fenced',
      30_000,
    );
    assert.match(
      await redis.command(old.id, 'INFO', 'replication'),
      new RegExp(`master_port:${promoted.port}`),
    );
  });
});
