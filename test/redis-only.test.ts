/**
 * `rwsplit start` with only a `redis` section: no PostgreSQL anywhere. Run through the CLI
 * as a user would, against a real Redis primary and replica.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { freePorts } from '../src/cluster/free-port.js';
import { RedisCluster } from '../src/cluster/redis-cluster.js';
import { waitFor } from './support/stack.js';

const bin = path.resolve('bin/rwsplit.js');

function redisCli(port: number, ...args: string[]): string {
  const r = spawnSync('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  return r.stdout.trim();
}

/** Whether something accepts TCP connections on the port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

describe('rwsplit start with a Redis-only config', () => {
  let redis: RedisCluster;
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'rwsplit-redis-only-'));

  before(async () => {
    redis = await RedisCluster.start({ shards: 1, replicas: 1 });
  });
  after(async () => {
    await redis?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  test('serves Redis, answers the admin API, opens no PostgreSQL port, and stops with exit 0', async () => {
    const [pgPort, httpPort, redisPort] = (await freePorts(3)) as [number, number, number];
    const shard = redis.shard(redis.shardNames[0]!);
    const nodes = [shard.primary, ...shard.replicas]
      .map((n) => `        - { id: ${n.id}, host: 127.0.0.1, port: ${n.port} }`)
      .join('\n');
    const file = path.join(tmp, 'redis-only.yaml');
    writeFileSync(
      file,
      [
        'workers: 1',
        'listen:',
        `  postgres: { host: 127.0.0.1, port: ${pgPort} }`,
        `  http: { host: 127.0.0.1, port: ${httpPort} }`,
        `  redis: { host: 127.0.0.1, port: ${redisPort} }`,
        'redis:',
        '  shards:',
        '    - name: s1',
        '      nodes:',
        nodes,
        '  monitor: { intervalMs: 200, timeoutMs: 800 }',
        '',
      ].join('\n'),
    );
    const child = spawn(process.execPath, [bin, 'start', '--config', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await waitFor(`rwsplit listening on ${redisPort} (output so far: ${out})`, () => listening(redisPort));
      assert.equal(redisCli(redisPort, 'SET', 'only:redis', 'yes'), 'OK');
      assert.equal(redisCli(redisPort, 'GET', 'only:redis'), 'yes');
      const nodesSeen = (await (await fetch(`http://127.0.0.1:${httpPort}/api/nodes`)).json()) as {
        id: string;
        kind: string;
      }[];
      assert.deepEqual(nodesSeen.map((n) => n.kind).sort(), ['redis', 'redis']);
      assert.equal(await listening(pgPort), false, 'no PostgreSQL listener without a postgres section');
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0, out);
  });

  test('a config with neither postgres nor redis is refused, naming both', () => {
    const file = path.join(tmp, 'empty.yaml');
    writeFileSync(file, 'listen:\n  http: { host: 127.0.0.1, port: 0 }\n');
    const r = spawnSync(process.execPath, [bin, 'start', '--config', file], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /add a postgres section .*a redis section/);
  });
});
