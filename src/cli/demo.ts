/**
 * `rwsplit demo`: a real local cluster (a PostgreSQL primary + replicas, Redis shards of a
 * primary + replicas), the proxies and the admin server, with no configuration. Runs until
 * SIGINT/SIGTERM, then stops everything it started.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Rwsplit } from '../app.js';
import { ClusterError } from '../cluster/errors.js';
import { PgCluster } from '../cluster/pg-cluster.js';
import { RedisCluster } from '../cluster/redis-cluster.js';
import { validateConfig } from '../config/load.js';
import { waitForSignal } from './main.js';

export interface DemoOptions {
  dir: string;
  replicas: number;
  pgPort: number;
  httpPort: number;
  redisPort: number;
  redisShards: number;
}

export async function runDemo(opts: DemoOptions): Promise<void> {
  const dir = path.resolve(opts.dir, 'postgres');
  mkdirSync(path.dirname(dir), { recursive: true });
  console.log(`rwsplit demo: starting PostgreSQL (1 primary, ${opts.replicas} replicas) in ${dir} ...`);
  const { cluster, scratch } = await startCluster(dir, opts.replicas);
  let app: Rwsplit | null = null;
  let redis: RedisCluster | null = null;
  try {
    if (opts.redisShards > 0) {
      console.log(
        `rwsplit demo: starting Redis (${opts.redisShards} shards of 1 primary + ${opts.replicas} replicas) ...`,
      );
      redis = await RedisCluster.start({
        dir: path.join(path.dirname(cluster.dir), 'redis'),
        shards: opts.redisShards,
        replicas: opts.replicas,
      });
    }
    const r = redis;
    const config = validateConfig(
      {
        listen: {
          postgres: { host: '127.0.0.1', port: opts.pgPort },
          http: { host: '127.0.0.1', port: opts.httpPort },
          redis: { host: '127.0.0.1', port: opts.redisPort },
        },
        ...(r
          ? {
              redis: {
                shards: r.shardNames.map((name) => {
                  const s = r.shard(name);
                  return {
                    name,
                    nodes: [s.primary, ...s.replicas].map((n) => ({ id: n.id, host: n.host, port: n.port })),
                  };
                }),
              },
            }
          : {}),
        postgres: {
          nodes: cluster.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port })),
          monitor: { intervalMs: 500 },
        },
        logging: { level: 'warn' },
      },
      'demo',
    );
    app = await Rwsplit.start(config);
    printEndpoints(cluster, redis, opts);
    const sig = await waitForSignal();
    console.log(`\nrwsplit demo: ${sig} received, stopping ...`);
  } finally {
    await app?.stop();
    await Promise.allSettled([cluster.stop(), redis?.stop()]);
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  }
  console.log('rwsplit demo: stopped');
}

/**
 * As root, PostgreSQL runs as the `postgres` user, which cannot enter a private home
 * directory (/root is 0700). Rather than fail, the demo then keeps its data under the
 * system temp directory and says so.
 */
async function startCluster(
  dir: string,
  replicas: number,
): Promise<{ cluster: PgCluster; scratch: string | null }> {
  try {
    return { cluster: await PgCluster.start({ dir, replicas }), scratch: null };
  } catch (err) {
    if (!(err instanceof ClusterError) || err.code !== 'DIR_NOT_ACCESSIBLE') throw err;
    const fallback = mkdtempSync(path.join(os.tmpdir(), 'rwsplit-demo-'));
    chmodSync(fallback, 0o755);
    console.log(`rwsplit demo: ${err.message}\nrwsplit demo: using ${fallback} instead`);
    return {
      cluster: await PgCluster.start({ dir: path.join(fallback, 'postgres'), replicas }),
      scratch: fallback,
    };
  }
}

function printEndpoints(cluster: PgCluster, redis: RedisCluster | null, opts: DemoOptions): void {
  const lines = [
    '',
    'rwsplit demo is running.',
    '',
    `  PostgreSQL proxy   127.0.0.1:${opts.pgPort}   (user postgres, database postgres, no password)`,
    ...(redis
      ? [
          `  Redis proxy        127.0.0.1:${opts.redisPort}   (${redis.shardNames.length} shards, keys spread by ketama)`,
        ]
      : []),
    `  admin / metrics    http://127.0.0.1:${opts.httpPort}/   /api/nodes   /metrics`,
    '',
    '  nodes:',
    ...cluster.nodes.map((n) => `    ${n.id.padEnd(18)} ${n.role.padEnd(8)} 127.0.0.1:${n.port}`),
    ...(redis?.nodes ?? []).map((n) => `    ${n.id.padEnd(18)} ${n.role.padEnd(8)} 127.0.0.1:${n.port}`),
    '',
    'Try it:',
    `  psql "host=127.0.0.1 port=${opts.pgPort} user=postgres dbname=postgres" -c "SELECT inet_server_port(), pg_is_in_recovery()"`,
    ...(redis
      ? [`  redis-cli -p ${opts.redisPort} SET greeting hello && redis-cli -p ${opts.redisPort} GET greeting`]
      : []),
    `  npx rwsplit status --http http://127.0.0.1:${opts.httpPort}`,
    '',
    'Press Ctrl-C to stop every process the demo started.',
  ];
  console.log(lines.join('\n'));
}
