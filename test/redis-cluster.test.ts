/**
 * Integration test of the local Redis launcher: real redis-server processes, real replication.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';

import { ClusterError } from '../src/cluster/errors.js';
import { isProcessAlive } from '../src/cluster/process-tree.js';
import { parseInfo, redisCommand } from '../src/cluster/redis-client.js';
import { REDIS_LOG_FILE, RedisCluster, type RedisNodeHandle } from '../src/cluster/redis-cluster.js';
import { REDIS_SERVER_ENV } from '../src/cluster/redis-process.js';

function isClusterError(code: string, message?: RegExp): (err: unknown) => boolean {
  return (err) => err instanceof ClusterError && err.code === code && (message?.test(err.message) ?? true);
}

/** Polls `check` until it returns true; fails the test after `timeoutMs`. */
async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for: ${what}`);
    await delay(50);
  }
}

/** The primary's own view: its master_repl_offset and the acknowledged offset of each replica port. */
async function primaryView(
  cluster: RedisCluster,
  primary: RedisNodeHandle,
): Promise<{ offset: number; acked: Map<number, number> }> {
  const info = parseInfo(await cluster.command(primary.id, 'INFO', 'replication'));
  const acked = new Map<number, number>();
  for (const [key, value] of info) {
    if (!/^slave\d+$/.test(key)) continue;
    // "ip=127.0.0.1,port=6380,state=online,offset=123,lag=0"
    const fields = new Map(value.split(',').map((kv) => kv.split('=') as [string, string]));
    acked.set(Number(fields.get('port')), Number(fields.get('offset')));
  }
  return { offset: Number(info.get('master_repl_offset')), acked };
}

function assertAllGone(pids: number[]): void {
  for (const pid of pids) assert.ok(!isProcessAlive(pid), `redis-server pid ${pid} still alive`);
}

describe('RedisCluster, 2 shards × (primary + 2 replicas)', () => {
  let cluster: RedisCluster;

  before(async () => {
    cluster = await RedisCluster.start();
  });

  after(async () => {
    await cluster?.stop();
  });

  test('names each node after its shard and role, on distinct ports, each with a pid', () => {
    assert.deepEqual(cluster.shardNames, ['s1', 's2']);
    assert.deepEqual(
      cluster.nodes.map((n) => `${n.id}/${n.shard}/${n.role}`),
      [
        'redis-s1-primary/s1/primary',
        'redis-s1-replica1/s1/replica',
        'redis-s1-replica2/s1/replica',
        'redis-s2-primary/s2/primary',
        'redis-s2-replica1/s2/replica',
        'redis-s2-replica2/s2/replica',
      ],
    );
    assert.equal(new Set(cluster.nodes.map((n) => n.port)).size, 6);
    for (const node of cluster.nodes) assert.ok(Number.isInteger(node.pid), `${node.id} has no pid`);
    const s2 = cluster.shard('s2');
    assert.equal(s2.primary.id, 'redis-s2-primary');
    assert.deepEqual(
      s2.replicas.map((r) => r.id),
      ['redis-s2-replica1', 'redis-s2-replica2'],
    );
    assert.ok(existsSync(path.join(cluster.dir, 'redis-s1-primary', REDIS_LOG_FILE)));
  });

  test('ROLE: primaries are masters, replicas are connected slaves of their own primary', async () => {
    for (const name of cluster.shardNames) {
      const { primary, replicas } = cluster.shard(name);
      const role = (await cluster.command(primary.id, 'ROLE')).split('\n');
      assert.equal(role[0], 'master', `${primary.id}: ${role.join(' ')}`);
      for (const replica of replicas) {
        const [kind, host, port, state] = (await cluster.command(replica.id, 'ROLE')).split('\n');
        assert.deepEqual(
          [kind, host, port, state],
          ['slave', '127.0.0.1', String(primary.port), 'connected'],
        );
      }
    }
  });

  test('a write on a shard primary is readable on its replicas, not on the other shard', async () => {
    const s1 = cluster.shard('s1');
    const s2 = cluster.shard('s2');
    assert.equal(await cluster.command(s1.primary.id, 'SET', 'k:s1', 'one'), 'OK');
    assert.equal(await cluster.command(s2.primary.id, 'SET', 'k:s2', 'two'), 'OK');
    await cluster.waitForReplication();
    for (const replica of s1.replicas) {
      assert.equal(await cluster.command(replica.id, 'GET', 'k:s1'), 'one');
      assert.equal(await cluster.command(replica.id, 'EXISTS', 'k:s2'), '0');
    }
    for (const node of [s2.primary, ...s2.replicas]) {
      assert.equal(await cluster.command(node.id, 'GET', 'k:s2'), 'two');
      assert.equal(await cluster.command(node.id, 'EXISTS', 'k:s1'), '0');
    }
    const replica = s1.replicas[0];
    assert.ok(replica !== undefined);
    await assert.rejects(
      cluster.command(replica.id, 'SET', 'k:s1', 'x'),
      isClusterError('REDIS_ERROR_REPLY', /READONLY/),
    );
  });

  test('a SIGSTOPped replica falls behind while writes continue and catches up after SIGCONT', async () => {
    const { primary, replicas } = cluster.shard('s1');
    const [frozen, other] = replicas;
    assert.ok(frozen !== undefined && other !== undefined);
    cluster.signal(frozen.id, 'SIGSTOP');
    try {
      for (let i = 0; i < 50; i++) await cluster.command(primary.id, 'SET', `stopped:${i}`, `v${i}`);
      // Replicas acknowledge their offset every second (REPLCONF ACK): the running one gets there.
      let view = await primaryView(cluster, primary);
      await eventually('the running replica acknowledges every write', async () => {
        view = await primaryView(cluster, primary);
        return view.acked.get(other.port) === view.offset;
      });
      const frozenAck = view.acked.get(frozen.port);
      assert.ok(
        frozenAck !== undefined && frozenAck < view.offset,
        `frozen at ${frozenAck} of ${view.offset}`,
      );
      await assert.rejects(
        cluster.waitForReplication(300),
        (err) =>
          isClusterError('REPLICATION_TIMEOUT')(err) &&
          (err as Error).message.includes(frozen.id) &&
          !(err as Error).message.includes(other.id),
      );
    } finally {
      cluster.signal(frozen.id, 'SIGCONT');
    }
    await cluster.waitForReplication();
    assert.equal(await cluster.command(frozen.id, 'GET', 'stopped:49'), 'v49');
    await eventually('the primary sees the thawed replica caught up', async () => {
      const view = await primaryView(cluster, primary);
      return view.acked.get(frozen.port) === view.offset;
    });
  });

  test('kill() of a replica frees its port; restart() brings it back linked, resynced, same port', async () => {
    const { primary, replicas } = cluster.shard('s2');
    const victim = replicas[1];
    assert.ok(victim !== undefined);
    const oldPid = victim.pid;
    const port = victim.port;
    assert.ok(oldPid !== undefined);
    await cluster.kill(victim.id);
    assert.equal(victim.pid, undefined);
    assert.ok(!isProcessAlive(oldPid));
    await assert.rejects(cluster.command(victim.id, 'PING'), isClusterError('NODE_UNREACHABLE'));
    assert.throws(() => cluster.signal(victim.id, 'SIGSTOP'), isClusterError('NODE_NOT_RUNNING'));
    await cluster.command(primary.id, 'SET', 'while-down', 'yes');
    await cluster.waitForReplication(); // the killed replica is skipped

    await cluster.restart(victim.id);
    assert.equal(victim.port, port);
    assert.ok(victim.pid !== undefined && victim.pid !== oldPid);
    const [kind, , masterPort, state] = (await cluster.command(victim.id, 'ROLE')).split('\n');
    assert.deepEqual([kind, masterPort, state], ['slave', String(primary.port), 'connected']);
    assert.equal(await cluster.command(victim.id, 'GET', 'while-down'), 'yes');
    await cluster.command(primary.id, 'SET', 'after-restart', 'ok');
    await cluster.waitForReplication();
    assert.equal(await cluster.command(victim.id, 'GET', 'after-restart'), 'ok');
  });

  test('a primary killed and restarted comes back empty (nothing persisted) and its replicas follow it', async () => {
    const { primary, replicas } = cluster.shard('s2');
    assert.notEqual(await cluster.command(primary.id, 'DBSIZE'), '0');
    // Right after the previous test's full resync: the sync RDB may still be in its dir.
    await cluster.kill(primary.id);
    await assert.rejects(
      cluster.waitForReplication(100),
      isClusterError('NODE_NOT_RUNNING', /redis-s2-primary/),
    );
    await cluster.restart(primary.id);
    assert.equal(await cluster.command(primary.id, 'DBSIZE'), '0');
    assert.equal((await cluster.command(primary.id, 'ROLE')).split('\n')[0], 'master');
    await cluster.command(primary.id, 'SET', 'reborn', '1');
    await cluster.waitForReplication();
    for (const replica of replicas) {
      assert.equal(await cluster.command(replica.id, 'DBSIZE'), '1');
      assert.equal(await cluster.command(replica.id, 'GET', 'reborn'), '1');
    }
  });

  test('unknown nodes and shards are refused with UNKNOWN_NODE', async () => {
    assert.throws(() => cluster.shard('s3'), isClusterError('UNKNOWN_NODE', /s1, s2/));
    assert.throws(() => cluster.signal('redis-s9-primary', 'SIGCONT'), isClusterError('UNKNOWN_NODE'));
    await assert.rejects(cluster.kill('nope'), isClusterError('UNKNOWN_NODE'));
    assert.throws(() => cluster.command('nope', 'PING'), isClusterError('UNKNOWN_NODE'));
  });

  test('stop() ends every redis-server of the cluster and removes the directory it created', async () => {
    const pids = cluster.nodes.map((n) => n.pid);
    assert.ok(pids.every((p) => p !== undefined));
    await cluster.stop();
    assertAllGone(pids.filter((p): p is number => p !== undefined));
    assert.ok(cluster.nodes.every((n) => n.pid === undefined));
    assert.equal(existsSync(cluster.dir), false);
    await cluster.stop(); // idempotent
  });
});

describe('RedisCluster with a password, in a directory given by the caller', () => {
  const password = 's3cret pass';
  let base: string;
  let cluster: RedisCluster;

  before(async () => {
    base = mkdtempSync(path.join(os.tmpdir(), 'rwsplit-redis-test-'));
    cluster = await RedisCluster.start({ dir: path.join(base, 'cluster'), shards: 1, replicas: 1, password });
  });

  after(async () => {
    await cluster?.stop();
    rmSync(base, { recursive: true, force: true });
  });

  test('every node requires AUTH; replication authenticates with masterauth', async () => {
    const { primary, replicas } = cluster.shard('s1');
    const replica = replicas[0];
    assert.ok(replica !== undefined);
    for (const node of [primary, replica]) {
      await assert.rejects(
        redisCommand({ port: node.port }, 'GET', 'k'),
        isClusterError('REDIS_ERROR_REPLY', /NOAUTH/),
      );
      await assert.rejects(
        redisCommand({ port: node.port, password: 'wrong' }, 'PING'),
        isClusterError('REDIS_ERROR_REPLY', /WRONGPASS/),
      );
    }
    assert.equal(await redisCommand({ port: primary.port, password }, 'SET', 'k', 'secret-value'), 'OK');
    await cluster.waitForReplication();
    assert.equal(await cluster.command(replica.id, 'GET', 'k'), 'secret-value');
    const role = (await cluster.command(replica.id, 'ROLE')).split('\n');
    assert.equal(role[3], 'connected');
  });

  test('stop() keeps a given directory and its logs, and ends the processes', async () => {
    const pids = cluster.nodes.map((n) => n.pid).filter((p): p is number => p !== undefined);
    assert.equal(pids.length, 2);
    await cluster.stop();
    assertAllGone(pids);
    const log = readFileSync(path.join(cluster.dir, 'redis-s1-replica1', REDIS_LOG_FILE), 'utf8');
    assert.match(log, /MASTER <-> REPLICA sync: Finished with success/);
    assert.equal(cluster.dir, path.join(base, 'cluster'));
  });
});

describe('RedisCluster start-up failures', () => {
  test('bad options are refused before anything starts', async () => {
    await assert.rejects(RedisCluster.start({ shards: 0 }), isClusterError('BAD_OPTIONS', /shards/));
    await assert.rejects(RedisCluster.start({ replicas: -1 }), isClusterError('BAD_OPTIONS', /replicas/));
    await assert.rejects(RedisCluster.start({ password: '' }), isClusterError('BAD_OPTIONS', /password/));
  });

  test('a missing redis-server says which Debian package to install', async () => {
    const saved = process.env[REDIS_SERVER_ENV];
    process.env[REDIS_SERVER_ENV] = '/nonexistent/redis-server';
    try {
      await assert.rejects(
        RedisCluster.start(),
        isClusterError('REDIS_BINARY_MISSING', /Debian package `redis-server`/),
      );
    } finally {
      if (saved === undefined) delete process.env[REDIS_SERVER_ENV];
      else process.env[REDIS_SERVER_ENV] = saved;
    }
  });

  test('a node that exits at start-up fails start() with the tail of its log file', async () => {
    const base = mkdtempSync(path.join(os.tmpdir(), 'rwsplit-redis-test-'));
    try {
      await assert.rejects(
        RedisCluster.start({
          dir: base,
          shards: 1,
          replicas: 1,
          extraArgs: ['--loadmodule', '/nonexistent/m.so'],
        }),
        isClusterError(
          'NODE_EXITED',
          /redis-s1-\w+ exited during start-up[\s\S]*Module \/nonexistent\/m.so failed to load/,
        ),
      );
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });

  test('a directive redis-server rejects fails start() with what it printed', async () => {
    await assert.rejects(
      RedisCluster.start({ shards: 1, replicas: 0, extraArgs: ['--no-such-directive', 'x'] }),
      isClusterError('NODE_EXITED', /Bad directive/),
    );
  });
});
