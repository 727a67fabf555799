import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { startRedisStack, type RedisStack } from './support/redis-stack.js';
import { RedisWriters } from './support/redis-writers.js';
import { nodeStates, waitFor } from './support/stack.js';

/**
 * `redis.failover.mode: auto` with a real Redis shard (a primary and two replicas): kill -9
 * of the primary under a write load, then the old primary restarted.
 */

const WRITERS = 8;
const FAILOVER = { mode: 'auto', detectMs: 1500, bufferMs: 5000 };

async function events(stack: RedisStack): Promise<{ node: string; type: string; detail: string }[]> {
  return (await (await fetch(`http://127.0.0.1:${stack.httpPort}/api/events`)).json()) as {
    node: string;
    type: string;
    detail: string;
  }[];
}

/** rwsplit_redis_commands_total{node, kind="write"} from /metrics. */
async function writesRouted(stack: RedisStack, node: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${stack.httpPort}/metrics`)).text();
  const m = new RegExp(`rwsplit_redis_commands_total\\{node="${node}",kind="write"\\} (\\d+)`).exec(text);
  return m ? Number(m[1]) : 0;
}

function primaryOf(stack: RedisStack): string | undefined {
  return stack.app.redis!.topologies[0]!.primary()?.spec.id;
}

/** Direct reads of many keys from one node (MGET in batches). */
async function missingOn(port: number, keys: readonly { key: string; value: string }[]): Promise<string[]> {
  const direct = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1 });
  try {
    const missing: string[] = [];
    for (let i = 0; i < keys.length; i += 500) {
      const batch = keys.slice(i, i + 500);
      const values = await direct.mget(...batch.map((k) => k.key));
      batch.forEach((k, j) => {
        if (values[j] !== k.value) missing.push(k.key);
      });
    }
    return missing;
  } finally {
    direct.disconnect();
  }
}

describe('Redis failover (mode auto): kill -9 of the shard primary under load', () => {
  let stack: RedisStack;
  let writers: RedisWriters;
  before(async () => {
    stack = await startRedisStack({ cluster: { shards: 1, replicas: 2 }, redis: { failover: FAILOVER } });
    writers = new RedisWriters(stack.port, WRITERS, 'fo');
  });
  after(async () => {
    writers?.close();
    await stack?.stop();
  });

  test('writes resume on the promoted replica, connections continue, the old primary rejoins as a replica', async () => {
    const shard = stack.redis.shard('s1');
    const old = shard.primary;
    writers.start();
    await waitFor('writes flowing', () => writers.acked.length > 200);
    const killedAt = performance.now();
    await stack.redis.kill(old.id);
    await waitFor(
      'a write acknowledged after the kill',
      () => writers.firstAckSentAfter(killedAt) !== undefined,
      20_000,
    );
    const resumed = writers.firstAckSentAfter(killedAt)!;
    console.log(
      `redis failover: first write acknowledged ${Math.round(resumed.at - killedAt)} ms after kill -9 of the primary`,
    );
    await waitFor(
      'every writer acknowledged after the failover',
      () => writers.writersAckedAfter(resumed.at) === WRITERS,
    );
    await writers.stop();
    const oldWrites = await writesRouted(stack, old.id);

    const promoted = primaryOf(stack);
    assert.ok(
      promoted && shard.replicas.some((r) => r.id === promoted),
      `a replica was promoted (${promoted})`,
    );
    const promotedNode = shard.replicas.find((r) => r.id === promoted)!;
    assert.match(await stack.redis.command(promoted, 'INFO', 'replication'), /role:master/);
    // Writes acknowledged after the promotion are on the promoted node.
    const after_ = writers.acked.filter((w) => w.sentAt >= resumed.sentAt);
    assert.deepEqual(await missingOn(promotedNode.port, after_), []);
    const other = shard.replicas.find((r) => r.id !== promoted)!;
    await waitFor(`${other.id} follows ${promoted}`, async () => {
      const info = await stack.redis.command(other.id, 'INFO', 'replication');
      return info.includes(`master_port:${promotedNode.port}`) && info.includes('master_link_status:up');
    });
    // Errors are only for commands in flight on the dead primary, and they say so.
    for (const e of writers.errors)
      assert.match(e.message, /primary of shard s1|failover of shard s1/, e.message);

    // The old primary comes back empty and writable: fenced, demoted, then a replica.
    await stack.redis.restart(old.id);
    await waitFor(`${old.id} back as a replica of ${promoted}`, async () => {
      const info = await stack.redis.command(old.id, 'INFO', 'replication');
      const state = (await nodeStates(stack.httpPort)).find((n) => n.id === old.id)?.state;
      return info.includes(`master_port:${promotedNode.port}`) && state !== 'fenced';
    });
    const c = writers.clients[0]!;
    for (let i = 0; i < 50; i++) assert.equal(await c.set(`fo:after:${i}`, String(i)), 'OK');
    assert.equal(primaryOf(stack), promoted, 'the old primary did not take the shard back');
    assert.equal(
      await writesRouted(stack, old.id),
      oldWrites,
      `no write was routed to ${old.id} after the failover`,
    );
    const log = await events(stack);
    for (const [node, type] of [
      [old.id, 'failover-start'],
      [old.id, 'fenced'],
      [promoted, 'failover-end'],
      [old.id, 'unfenced'],
    ] as const) {
      assert.ok(
        log.some((e) => e.node === node && e.type === type),
        `event ${type} of ${node}`,
      );
    }
  });
});

describe('Redis zero-loss mode (waitReplicas): kill -9 of the primary loses no acknowledged write', () => {
  let stack: RedisStack;
  let writers: RedisWriters;
  before(async () => {
    stack = await startRedisStack({
      cluster: { shards: 1, replicas: 2 },
      redis: { failover: FAILOVER, waitReplicas: { numReplicas: 1, timeoutMs: 1000 } },
    });
    writers = new RedisWriters(stack.port, WRITERS, 'zl');
  });
  after(async () => {
    writers?.close();
    await stack?.stop();
  });

  test('every write the clients saw acknowledged is on the new primary', async () => {
    const old = stack.redis.shard('s1').primary;
    writers.start();
    await waitFor('writes flowing', () => writers.acked.length > 200);
    const killedAt = performance.now();
    await stack.redis.kill(old.id);
    await waitFor(
      'a write acknowledged after the kill',
      () => writers.firstAckSentAfter(killedAt) !== undefined,
      20_000,
    );
    const resumed = writers.firstAckSentAfter(killedAt)!;
    console.log(
      `redis zero-loss failover: first write acknowledged ${Math.round(resumed.at - killedAt)} ms after the kill`,
    );
    await new Promise((r) => setTimeout(r, 500));
    await writers.stop();
    const promoted = primaryOf(stack)!;
    const port = stack.redis.nodes.find((n) => n.id === promoted)!.port;
    const missing = await missingOn(port, writers.acked);
    console.log(
      `redis zero-loss failover: ${writers.acked.length} acknowledged writes, ${missing.length} missing, ${writers.errors.length} client errors`,
    );
    assert.ok(writers.acked.length > 200);
    assert.deepEqual(missing, [], 'no acknowledged write is lost');
  });
});
