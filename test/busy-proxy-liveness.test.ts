import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { startRedisStack, type RedisStack } from './support/redis-stack.js';
import { startStack, type Stack } from './support/stack.js';

/**
 * A probe that is late because rwsplit itself is busy (its event loop stalled by a huge
 * pipeline, or relaying a large result) is no evidence against the server: with the monitor
 * at its default interval and timeout, no node is reported down and nothing fails over.
 */

interface LoggedEvent {
  node: string;
  type: string;
  detail: string;
}

async function events(httpPort: number): Promise<LoggedEvent[]> {
  return (await (await fetch(`http://127.0.0.1:${httpPort}/api/events`)).json()) as LoggedEvent[];
}

/** `down` and `failover-start` events (nothing else says a healthy node was taken for dead). */
function falseAlarms(all: LoggedEvent[]): LoggedEvent[] {
  return all.filter((e) => e.type === 'down' || e.type === 'failover-start');
}

describe('Redis: 600 pipelined SETs of 1 MiB through rwsplit', () => {
  let stack: RedisStack;
  before(async () => {
    stack = await startRedisStack({
      cluster: { shards: 1, replicas: 1 },
      // The defaults (interval 500 ms, timeout 1000 ms), not the test harness's faster ones.
      redis: { monitor: { intervalMs: 500, timeoutMs: 1000 }, failover: 'auto' },
    });
  });
  after(async () => stack?.stop());

  test('no node reported down, no failover', async () => {
    const client = new Redis({ port: stack.port, enableAutoPipelining: true, lazyConnect: true });
    await client.connect();
    try {
      const value = Buffer.alloc(1024 * 1024, 'v');
      const replies = await Promise.all(Array.from({ length: 600 }, (_, i) => client.set(`big:${i}`, value)));
      assert.equal(replies.filter((r) => r === 'OK').length, 600, 'every SET acknowledged');
      const read = await Promise.all(Array.from({ length: 600 }, (_, i) => client.strlen(`big:${i}`)));
      assert.equal(read.filter((n) => n === value.length).length, 600, 'every value read back whole');
      // A probe late during the burst is judged at most one timeout later.
      await new Promise((r) => setTimeout(r, 1500));
      assert.deepEqual(falseAlarms(await events(stack.httpPort)), [], 'no node down, no failover');
    } finally {
      client.disconnect();
    }
  });
});

describe('PostgreSQL: a large result relayed through rwsplit', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({
      postgres: { monitor: { intervalMs: 500, timeoutMs: 1000 }, failover: 'auto' },
    });
  });
  after(async () => stack?.stop());

  test('no node reported down, no failover', async () => {
    const c = await stack.client();
    // Twice about 200 MB of rows, read through the proxy by a client in the same process:
    // the event loop is busy relaying and decoding the whole time.
    let rows = 0;
    for (let round = 0; round < 2; round++) {
      const big = await c.query("SELECT g, repeat('x', 2000) AS pad FROM generate_series(1, 100000) g");
      rows += big.rowCount ?? 0;
    }
    assert.equal(rows, 200_000, 'every row arrived');
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual(falseAlarms(await events(stack.httpPort)), [], 'no node down, no failover');
  });
});
