/**
 * The Redis contenders the Redis benchmark measures, each on free ports against the same
 * cluster: rwsplit (this repo's CLI, Redis section) and twemproxy (Debian's `nutcracker` 0.5)
 * with the settings of the reference measurements (see bench/README.md). Both run as the current user
 * with their config and log in a temp dir of their own.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';

import { freePort, freePorts } from '../src/cluster/free-port.js';
import type { PgNodeHandle } from '../src/cluster/pg-cluster.js';
import { redisCommand } from '../src/cluster/redis-client.js';
import type { RedisNodeHandle } from '../src/cluster/redis-cluster.js';
import { BenchChild } from './bench-child.js';
import { makeOwnRunDir, rwsplitNodesUp, spawnRwsplit, startPeer, type RunningPeer } from './peers.js';

export const NUTCRACKER_BIN = '/usr/sbin/nutcracker';

/** The twemproxy pool settings of the anchor run ("ketama, one server"). */
export const TWEMPROXY_SETTINGS = {
  hash: 'fnv1a_64',
  distribution: 'ketama',
  auto_eject_hosts: true,
  server_retry_timeout: 2000,
  server_failure_limit: 1,
  redis: true,
} as const;

/** Not ready until `PING` through `port` answers `PONG`. */
export async function pingPong(port: number): Promise<string | undefined> {
  const reply = await redisCommand({ port, timeoutMs: 2000 }, 'PING');
  return reply === 'PONG' ? undefined : `PING answered '${reply}'`;
}

/** The config's `redis.shards`: the cluster's nodes grouped by shard, primary first. */
function shardsOf(
  nodes: RedisNodeHandle[],
): { name: string; nodes: { id: string; host: string; port: number }[] }[] {
  const names = [...new Set(nodes.map((n) => n.shard))];
  return names.map((name) => ({
    name,
    nodes: nodes
      .filter((n) => n.shard === name)
      .sort((a, b) => (a.role === b.role ? 0 : a.role === 'primary' ? -1 : 1))
      .map((n) => ({ id: n.id, host: n.host, port: n.port })),
  }));
}

/**
 * rwsplit from `bin/rwsplit.js start --config` with a Redis section over every node of
 * `redisNodes` (defaults otherwise: reads prefer replicas, round-robin) and a PostgreSQL
 * section over `pgNodes` (null: Redis only), log level warn. Ready once PING through its Redis
 * port answers PONG and its monitor reports every Redis node up (else the first seconds of the
 * first run would send every read to the primary). The returned `port` is the Redis port.
 */
export async function startRwsplitRedis(
  repoRoot: string,
  pgNodes: PgNodeHandle[] | null,
  redisNodes: RedisNodeHandle[],
  /** `workers`: data-plane processes (their CPU is then read over the process tree) */
  workers = 1,
): Promise<RunningPeer> {
  const dir = makeOwnRunDir('rwsplit-bench-rwredis-');
  const [pgPort, httpPort, redisPort] = (await freePorts(3)) as [number, number, number];
  const config = {
    listen: {
      postgres: { host: '127.0.0.1', port: pgPort },
      http: { host: '127.0.0.1', port: httpPort },
      redis: { host: '127.0.0.1', port: redisPort },
    },
    ...(pgNodes
      ? { postgres: { nodes: pgNodes.map((n) => ({ id: n.id, host: n.host, port: n.port })) } }
      : {}),
    redis: { shards: shardsOf(redisNodes) },
    logging: { level: 'warn' },
    workers,
  };
  const child = spawnRwsplit(repoRoot, dir, config);
  const probe = async (): Promise<string | undefined> =>
    (await pingPong(redisPort)) ?? (await rwsplitNodesUp(httpPort, 'redis', redisNodes.length));
  return startPeer(child, redisPort, 'SIGTERM', dir, workers > 1, probe);
}

/** nutcracker's YAML: one pool, the anchor settings, `servers` with weight 1 each. */
function nutcrackerConfig(port: number, servers: RedisNodeHandle[]): string {
  return [
    'bench:',
    `  listen: 127.0.0.1:${port}`,
    ...Object.entries(TWEMPROXY_SETTINGS).map(([k, v]) => `  ${k}: ${v}`),
    '  servers:',
    ...servers.map((s) => `   - ${s.host}:${s.port}:1`),
    '',
  ].join('\n');
}

/**
 * twemproxy (nutcracker 0.5) in front of `servers` (the benchmark passes the one shard's
 * primary: twemproxy has no notion of replicas). Its stats port is a free port too (the
 * default 22222 would clash with anything else on the box).
 */
export async function startTwemproxy(servers: RedisNodeHandle[]): Promise<RunningPeer> {
  const dir = makeOwnRunDir('rwsplit-bench-twemproxy-');
  const [port, statsPort] = [await freePort(), await freePort()];
  const confFile = path.join(dir, 'nutcracker.yml');
  writeFileSync(confFile, nutcrackerConfig(port, servers));
  const child = BenchChild.spawn({
    name: 'twemproxy',
    file: NUTCRACKER_BIN,
    // No -o: it logs to stderr, which goes to logFile.
    args: [
      '-c',
      confFile,
      '-s',
      String(statsPort),
      '-a',
      '127.0.0.1',
      '-p',
      path.join(dir, 'nutcracker.pid'),
    ],
    cwd: dir,
    env: process.env,
    logFile: path.join(dir, 'nutcracker.log'),
  });
  // nutcracker exits at once on SIGTERM (signal.c: SIGTERM → "exiting").
  return startPeer(child, port, 'SIGTERM', dir, false, () => pingPong(port));
}
