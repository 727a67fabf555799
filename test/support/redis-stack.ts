/**
 * Test harness for the Redis proxy: a real Redis cluster (shards × primary + replicas) from
 * the launcher, and an in-process rwsplit in front of it. rwsplit runs Redis-only unless a test
 * asks for a PostgreSQL section too (`postgres: true`: a one-node PostgreSQL cluster is started
 * alongside), which no Redis test needs and which takes seconds to start.
 */
import { pino } from 'pino';
import { Rwsplit } from '../../src/app.js';
import { PgCluster } from '../../src/cluster/pg-cluster.js';
import { RedisCluster, type RedisClusterOptions } from '../../src/cluster/redis-cluster.js';
import { validateConfig } from '../../src/config/load.js';
import { testWorkers } from './stack.js';

export interface RedisStack {
  redis: RedisCluster;
  /** only with `postgres: true` */
  pg: PgCluster | null;
  app: Rwsplit;
  port: number;
  httpPort: number;
  /** `INFO commandstats` calls of `command` on each node */
  calls(command: string): Promise<Map<string, number>>;
  stop(): Promise<void>;
}

export async function startRedisStack(
  opts: {
    cluster?: RedisClusterOptions;
    redis?: Record<string, unknown>;
    postgres?: boolean;
    /** `workers` (data-plane processes); default RWSPLIT_TEST_WORKERS, else 1 */
    workers?: number;
  } = {},
): Promise<RedisStack> {
  const [redis, pg] = await Promise.all([
    RedisCluster.start({ shards: 2, replicas: 2, ...opts.cluster }),
    opts.postgres ? PgCluster.start({ replicas: 0 }) : null,
  ]);
  const stopClusters = async (): Promise<void> => {
    await Promise.all([redis.stop(), pg?.stop()]);
  };
  let app: Rwsplit;
  try {
    const config = validateConfig({
      listen: {
        postgres: { host: '127.0.0.1', port: 0 },
        http: { host: '127.0.0.1', port: 0 },
        redis: { host: '127.0.0.1', port: 0 },
      },
      ...(pg ? { postgres: { nodes: pg.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port })) } } : {}),
      redis: {
        shards: redis.shardNames.map((name) => {
          const s = redis.shard(name);
          return {
            name,
            nodes: [s.primary, ...s.replicas].map((n) => ({ id: n.id, host: n.host, port: n.port })),
          };
        }),
        monitor: { intervalMs: 200, timeoutMs: 800 },
        ...opts.redis,
      },
      ...testWorkers(opts.workers),
    });
    app = await Rwsplit.start(config, { log: pino({ level: process.env.RWSPLIT_TEST_LOG ?? 'silent' }) });
  } catch (err) {
    await stopClusters();
    throw err;
  }
  return {
    redis,
    pg,
    app,
    port: app.redis!.address!.port,
    httpPort: app.httpAddress!.port,
    calls: async (command) => {
      const out = new Map<string, number>();
      for (const n of redis.nodes) {
        if (n.pid === undefined) continue;
        const text = await redis.command(n.id, 'INFO', 'commandstats');
        const m = new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(text);
        out.set(n.id, m ? Number(m[1]) : 0);
      }
      return out;
    },
    stop: async () => {
      await app.stop();
      await stopClusters();
    },
  };
}
