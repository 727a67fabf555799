import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { RedisCluster } from '../src/cluster/redis-cluster.js';
import { RedisSentinels } from '../src/cluster/redis-sentinel.js';
import { createRedis, type RedisOptions, type RwsplitRedis } from '../src/lib/redis/index.js';
import { startRedisStack, type RedisStack } from './support/redis-stack.js';
import { waitFor } from './support/stack.js';

/**
 * `rwsplit/redis` with `failover: follow` (the default: an application process does not
 * promote) under a write load, on one real shard (a primary and 2 replicas), with kill -9 of
 * the primary and the promotion made three ways: by hand (`REPLICAOF NO ONE` on the replica
 * furthest ahead), by the proxy (`failover.mode: auto` over the same nodes), and by Redis
 * Sentinel. In each, the library's writes go to the new primary once it is one, and with
 * `waitReplicas: 1` no write the library acknowledged is missing there.
 */

const WRITERS = 8;
const INTERVAL_MS = 200;
const LIB_OPTIONS = {
  monitor: { intervalMs: INTERVAL_MS, timeoutMs: 800 },
  waitReplicas: { numReplicas: 1, timeoutMs: 2000 },
} satisfies RedisOptions;

interface Acked {
  key: string;
  value: string;
  sentAt: number;
}

/** Clients of the library (duplicates: each its own causal state) writing unique keys in loops. */
class Writers {
  readonly acked: Acked[] = [];
  readonly errors: string[] = [];
  private running = true;
  private readonly loops: Promise<void>[];

  constructor(lib: RwsplitRedis, prefix: string) {
    this.loops = Array.from({ length: WRITERS }, async (_, w) => {
      const c = lib.duplicate();
      try {
        for (let n = 0; this.running; n++) {
          const key = `${prefix}:${w}:${n}`;
          const sentAt = Date.now();
          try {
            if ((await c.set(key, String(n))) === 'OK') this.acked.push({ key, value: String(n), sentAt });
          } catch (err) {
            this.errors.push((err as Error).message);
            await new Promise((r) => setTimeout(r, 20));
          }
        }
      } finally {
        c.disconnect();
      }
    });
  }

  ackedSince(t: number): number {
    return this.acked.filter((a) => a.sentAt > t).length;
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}

/** Keys of `acked` whose value is not on the node (MGET in batches, directly). */
async function missingOn(port: number, acked: readonly Acked[]): Promise<string[]> {
  const direct = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1 });
  try {
    const missing: string[] = [];
    for (let i = 0; i < acked.length; i += 500) {
      const batch = acked.slice(i, i + 500);
      const values = await direct.mget(...batch.map((a) => a.key));
      batch.forEach((a, j) => {
        if (values[j] !== a.value) missing.push(a.key);
      });
    }
    return missing;
  } finally {
    direct.disconnect();
  }
}

/** The node the library writes to: a primary that is up (a dead one keeps the role it was last seen in). */
function libPrimary(lib: RwsplitRedis): string | undefined {
  return lib.nodes().find((n) => n.role === 'primary' && n.state === 'up')?.id;
}

function shardNodes(cluster: RedisCluster): { id: string; host: string; port: number }[] {
  const s = cluster.shard('s1');
  return [s.primary, ...s.replicas].map((n) => ({ id: n.id, host: n.host, port: n.port }));
}

/**
 * Runs the write load, kill -9s the primary, lets `promote` make a replica the primary (it
 * returns the promoted node's id once that node is a master), then checks: the library
 * names the promoted node as primary, writes resume on it, and every acknowledged write is
 * on it. Errors are only for writes caught by the failover, and say so.
 */
async function failoverUnderLoad(
  cluster: RedisCluster,
  lib: RwsplitRedis,
  prefix: string,
  promote: () => Promise<string>,
): Promise<void> {
  const s1 = cluster.shard('s1');
  const old = s1.primary;
  assert.equal(libPrimary(lib), old.id);
  const writers = new Writers(lib, prefix);
  try {
    await waitFor('writes flowing', () => writers.acked.length > 200);
    const killedAt = Date.now();
    await cluster.kill(old.id);
    const promotedId = await promote();
    const promotedAt = Date.now();
    const promoted = s1.replicas.find((r) => r.id === promotedId)!;
    assert.ok(promoted, `a replica was promoted (${promotedId})`);
    cluster.adoptPrimary(promotedId);
    await waitFor('the library to name the promoted node primary', () => libPrimary(lib) === promotedId);
    const followedAt = Date.now();
    await waitFor(
      'writes acknowledged after the promotion',
      () => writers.ackedSince(followedAt) > 100,
      20_000,
    );
    console.log(
      `lib redis failover (${prefix}): promoted ${promotedAt - killedAt} ms after kill -9; ` +
        `the library followed ≤ ${followedAt - promotedAt} ms after (monitor interval ${INTERVAL_MS} ms); ` +
        `${writers.errors.length} write errors during the failover`,
    );
    await writers.stop();
    const missing = await missingOn(promoted.port, writers.acked);
    console.log(
      `lib redis failover (${prefix}): ${writers.acked.length} acknowledged writes, ${missing.length} missing`,
    );
    assert.ok(writers.acked.length > 300);
    assert.deepEqual(missing, [], 'no acknowledged write is lost');
    for (const e of writers.errors)
      assert.match(
        e,
        new RegExp(`${old.id}|shard s1|not confirmed|WAIT`),
        `an error that names the failover: ${e}`,
      );
    // Later writes are on the new primary (read back there directly).
    assert.equal(await lib.set(`${prefix}:after`, 'x'), 'OK');
    assert.equal(await cluster.command(promotedId, 'GET', `${prefix}:after`), 'x');
    assert.equal(lib.nodes().find((n) => n.id === old.id)?.state, 'down');
  } finally {
    await writers.stop();
  }
}

describe('rwsplit/redis follows a failover made by hand', () => {
  let cluster: RedisCluster;
  let lib: RwsplitRedis;
  before(async () => {
    cluster = await RedisCluster.start({ shards: 1, replicas: 2 });
    lib = createRedis({
      nodes: shardNodes(cluster),
      failover: { mode: 'follow', bufferMs: 20_000 },
      ...LIB_OPTIONS,
    });
    await lib.connect();
  });
  after(async () => {
    lib?.disconnect();
    await cluster?.stop();
  });

  test('kill -9 of the primary, REPLICAOF NO ONE on the replica furthest ahead: writes follow it, none lost', async () => {
    await failoverUnderLoad(cluster, lib, 'hand', async () => {
      const replicas = cluster.shard('s1').replicas;
      const offsets = await Promise.all(
        replicas.map(async (r) => {
          const info = await cluster.command(r.id, 'INFO', 'replication');
          return Number(/slave_repl_offset:(\d+)/.exec(info)?.[1] ?? -1);
        }),
      );
      const best = offsets[1]! > offsets[0]! ? 1 : 0;
      const promoted = replicas[best]!;
      const other = replicas[1 - best]!;
      await cluster.command(promoted.id, 'REPLICAOF', 'NO', 'ONE');
      await cluster.command(other.id, 'REPLICAOF', promoted.host, String(promoted.port));
      return promoted.id;
    });
  });

  test('REPLICAOF NO ONE on a replica while the primary still runs, then kill -9 of the primary: the library follows it', async () => {
    // After the first test: its promoted node is the primary, one replica follows it.
    const s1 = cluster.shard('s1');
    const current = s1.primary;
    const next = s1.replicas.find((r) => r.pid !== undefined)!;
    const lib2 = createRedis({
      nodes: shardNodes(cluster),
      monitor: { intervalMs: INTERVAL_MS, timeoutMs: 800 },
      failover: { mode: 'follow', bufferMs: 20_000 },
    });
    try {
      await lib2.connect();
      assert.equal(libPrimary(lib2), current.id);
      assert.equal(await lib2.set('early:before', '1'), 'OK');
      await cluster.waitForReplication();
      await cluster.command(next.id, 'REPLICAOF', 'NO', 'ONE');
      // Two masters: the one that was primary stays so; the other is fenced meanwhile.
      await waitFor(
        `${next.id} fenced`,
        () => lib2.nodes().find((n) => n.id === next.id)?.state === 'fenced',
      );
      assert.equal(libPrimary(lib2), current.id);
      await cluster.kill(current.id);
      const killedAt = Date.now();
      await waitFor(`the library to name ${next.id} primary`, () => libPrimary(lib2) === next.id);
      console.log(
        `lib redis failover (promoted first): the library followed ≤ ${Date.now() - killedAt} ms after kill -9 (monitor interval ${INTERVAL_MS} ms)`,
      );
      cluster.adoptPrimary(next.id);
      assert.equal(await lib2.set('early:after', '2'), 'OK');
      assert.equal(await cluster.command(next.id, 'GET', 'early:after'), '2');
      assert.equal(await cluster.command(next.id, 'GET', 'early:before'), '1');
      assert.equal(await lib2.get('early:before'), '1');
    } finally {
      lib2.disconnect();
    }
  });
});

describe('rwsplit/redis follows a failover made by the proxy', () => {
  let stack: RedisStack;
  let lib: RwsplitRedis;
  before(async () => {
    stack = await startRedisStack({
      cluster: { shards: 1, replicas: 2 },
      redis: { failover: { mode: 'auto', detectMs: 1500, bufferMs: 10_000 } },
    });
    lib = createRedis({
      nodes: shardNodes(stack.redis),
      failover: { mode: 'follow', bufferMs: 20_000 },
      ...LIB_OPTIONS,
    });
    await lib.connect();
  });
  after(async () => {
    lib?.disconnect();
    await stack?.stop();
  });

  test('kill -9 of the primary, the proxy promotes a replica: the library writes there, none lost', async () => {
    const old = stack.redis.shard('s1').primary.id;
    await failoverUnderLoad(stack.redis, lib, 'proxy', async () => {
      const seen: { promoted: string | undefined } = { promoted: undefined };
      await waitFor(
        'the proxy to promote a replica',
        async () => {
          const id = stack.app.redis!.topologies[0]!.primary()?.spec.id;
          seen.promoted = id;
          return (
            id !== undefined &&
            id !== old &&
            (await stack.redis.command(id, 'INFO', 'replication')).includes('role:master')
          );
        },
        20_000,
      );
      return seen.promoted!;
    });
  });
});

describe('rwsplit/redis follows Redis Sentinel', () => {
  const MASTER = 'lib-s1';
  let cluster: RedisCluster;
  let sentinels: RedisSentinels;
  let lib: RwsplitRedis;
  before(async () => {
    cluster = await RedisCluster.start({ shards: 1, replicas: 2 });
    sentinels = await RedisSentinels.start({
      masters: [{ name: MASTER, port: cluster.shard('s1').primary.port, replicas: 2 }],
      count: 3,
      quorum: 2,
      downAfterMs: 1000,
      failoverTimeoutMs: 5000,
    });
    lib = createRedis({
      shards: [{ name: 's1', sentinelName: MASTER, nodes: shardNodes(cluster) }],
      failover: {
        mode: 'follow',
        bufferMs: 30_000,
        sentinels: sentinels.nodes.map((n) => ({ host: n.host, port: n.port })),
      },
      ...LIB_OPTIONS,
    });
    await lib.connect();
  });
  after(async () => {
    lib?.disconnect();
    await Promise.all([sentinels?.stop(), cluster?.stop()]);
  });

  test('kill -9 of the primary: the library writes to the node Sentinel promotes, none lost', async () => {
    const old = cluster.shard('s1').primary.port;
    await failoverUnderLoad(cluster, lib, 'sentinel', async () => {
      const seen: { named: { host: string; port: number } | null } = { named: null };
      await waitFor(
        'Sentinel to name a new primary',
        async () => {
          seen.named = await sentinels.masterAddress(MASTER);
          return seen.named !== null && seen.named.port !== old;
        },
        40_000,
      );
      const named = seen.named;
      const promoted = cluster.shard('s1').replicas.find((r) => r.port === named?.port);
      assert.ok(promoted, `Sentinel names one of the replicas (${JSON.stringify(named)})`);
      await waitFor(`${promoted.id} a master`, async () =>
        (await cluster.command(promoted.id, 'INFO', 'replication')).includes('role:master'),
      );
      return promoted.id;
    });
  });
});
