/**
 * `rwsplit demo`: a real local cluster (a PostgreSQL primary + replicas, or with `--pg-shards`
 * several such shards; Redis shards of a primary + replicas), the proxies and the admin
 * server, with no configuration. The demo owns its cluster, so it runs `failover: auto` on
 * both sides: a `kill -9` of a primary (the first thing people try) is followed by a
 * promotion. With Redis and one PostgreSQL shard it also runs a change stream: the table
 * `items` mirrored into Redis hashes `items:<id>` (src/stream/), which the banner shows how to
 * try with read-your-writes from PostgreSQL into Redis. Runs until SIGINT/SIGTERM, then stops
 * everything it started.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { InvalidArgumentError } from 'commander';
import { Rwsplit } from '../app.js';
import { ClusterError } from '../cluster/errors.js';
import { PgCluster, type PgNodeHandle } from '../cluster/pg-cluster.js';
import { PgShardedCluster } from '../cluster/pg-shards.js';
import { withClient } from '../cluster/sql.js';
import { RedisCluster } from '../cluster/redis-cluster.js';
import { validateConfig } from '../config/load.js';
import { waitForSignal } from './signals.js';

export interface DemoOptions {
  dir: string;
  replicas: number;
  pgPort: number;
  httpPort: number;
  redisPort: number;
  redisShards: number;
  /** PostgreSQL shards (default 1: one primary + replicas, no sharding section). */
  pgShards?: number;
  /** `--workers`: data-plane processes (config key `workers`; default auto: the cores, at most 8) */
  workers?: number | 'auto';
}

/** The PostgreSQL side of the demo: one cluster, or several shards. */
type PgFixture = PgCluster | PgShardedCluster;

/** `--pg-shards`: 1-16. */
export function pgShardsOption(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 16) throw new InvalidArgumentError('expected a number 1-16');
  return n;
}

/**
 * Probes every 200 ms: with `failover.detectMs` (its default), a killed primary is replaced
 * within a couple of seconds rather than waiting for slower rounds.
 */
const DEMO_MONITOR = { intervalMs: 200, timeoutMs: 1000 };

/** The table the sharded demo creates on every shard, routed by its `id` (postgres.sharding.tables). */
const DEMO_TABLE = 'accounts';

/**
 * The sharded demo's table rules: its own table, and pgbench's, so `pgbench -i` and its
 * built-in scripts run through it unchanged. A tpcb-like transaction updates an account, a
 * teller and a branch, each placed by its own id (one shard, or a two-phase commit across
 * them); a history row goes with its account.
 */
const DEMO_TABLE_RULES = [
  { table: DEMO_TABLE, column: 'id' },
  { table: 'pgbench_accounts', column: 'aid' },
  { table: 'pgbench_branches', column: 'bid' },
  { table: 'pgbench_tellers', column: 'tid' },
  { table: 'pgbench_history', column: 'aid' },
];

/** The table the demo's change stream mirrors into Redis hashes `items:<id>`. */
const STREAM_TABLE_SQL = `CREATE TABLE IF NOT EXISTS items (id bigint PRIMARY KEY, name text NOT NULL,
  qty int NOT NULL DEFAULT 0, updated_at timestamptz NOT NULL DEFAULT now())`;
const STREAM = { name: 'items', table: 'items', key: 'items:{id}' };

export async function runDemo(opts: DemoOptions): Promise<void> {
  const dir = path.resolve(opts.dir, 'postgres');
  const shards = opts.pgShards ?? 1;
  mkdirSync(path.dirname(dir), { recursive: true });
  const layout =
    shards > 1
      ? `${shards} shards of 1 primary + ${opts.replicas} replicas`
      : `1 primary, ${opts.replicas} replicas`;
  console.log(`rwsplit demo: starting PostgreSQL (${layout}) in ${dir} ...`);
  // The change stream reads PostgreSQL's logical decoding: one shard, and Redis to write to.
  const streaming = shards === 1 && opts.redisShards > 0;
  const { cluster, scratch } = await startCluster(dir, opts.replicas, shards, streaming);
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
          // Also a Unix socket in the demo's directory: psql -h <dir> -p <port>.
          postgres: { host: '127.0.0.1', port: opts.pgPort, socketDir: path.dirname(cluster.dir) },
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
                monitor: DEMO_MONITOR,
                failover: 'auto',
              },
            }
          : {}),
        postgres: {
          ...(cluster instanceof PgShardedCluster
            ? {
                nodes: cluster.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port, shard: n.shard })),
                sharding: {
                  tables: DEMO_TABLE_RULES,
                  twoPhase: { logShard: cluster.shardNames[0] },
                },
              }
            : { nodes: cluster.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port })) }),
          // The demo's servers run as (or log in as) the superuser `postgres`, which promotion
          // needs (pg_promote, ALTER SYSTEM): the monitor logs in as the client's user, postgres.
          monitor: DEMO_MONITOR,
          failover: 'auto',
        },
        ...(streaming ? { streams: { list: [STREAM] } } : {}),
        logging: { level: 'warn' },
        ...(opts.workers !== undefined ? { workers: opts.workers } : {}),
      },
      'demo',
    );
    if (cluster instanceof PgShardedCluster) await createDemoTable(cluster);
    else if (streaming)
      await withClient(
        { host: cluster.primary.host, port: cluster.primary.port, password: undefined },
        (client) => client.query(STREAM_TABLE_SQL),
      );
    app = await Rwsplit.start(config);
    printEndpoints(cluster, redis, opts, app.pgSocket, streaming, app.workers?.count ?? 1);
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
  shards: number,
  logical: boolean,
): Promise<{ cluster: PgFixture; scratch: string | null }> {
  const start = (at: string): Promise<PgFixture> =>
    shards > 1
      ? PgShardedCluster.start({ dir: at, shards, replicas })
      : PgCluster.start({ dir: at, replicas, ...(logical ? { settings: { wal_level: 'logical' } } : {}) });
  try {
    return { cluster: await start(dir), scratch: null };
  } catch (err) {
    if (!(err instanceof ClusterError) || err.code !== 'DIR_NOT_ACCESSIBLE') throw err;
    const fallback = mkdtempSync(path.join(os.tmpdir(), 'rwsplit-demo-'));
    chmodSync(fallback, 0o755);
    console.log(`rwsplit demo: ${err.message}\nrwsplit demo: using ${fallback} instead`);
    return { cluster: await start(path.join(fallback, 'postgres')), scratch: fallback };
  }
}

/** The same empty table on every shard's primary (the replicas get it by streaming). */
async function createDemoTable(cluster: PgShardedCluster): Promise<void> {
  await Promise.all(
    cluster.primaries.map((p) =>
      withClient({ host: p.host, port: p.port, password: undefined }, (client) =>
        client.query(
          `CREATE TABLE IF NOT EXISTS ${DEMO_TABLE} (id bigint PRIMARY KEY, balance bigint NOT NULL DEFAULT 0)`,
        ),
      ),
    ),
  );
}

function printEndpoints(
  cluster: PgFixture,
  redis: RedisCluster | null,
  opts: DemoOptions,
  socket: string | null,
  streaming: boolean,
  workers: number,
): void {
  const sharded = cluster instanceof PgShardedCluster;
  const psql = `psql "host=127.0.0.1 port=${opts.pgPort} user=postgres dbname=postgres"`;
  const lines = [
    '',
    'rwsplit demo is running.',
    '',
    `  PostgreSQL proxy   127.0.0.1:${opts.pgPort}   (user postgres, database postgres, no password)`,
    ...(socket
      ? [
          `                     and the Unix socket ${socket} (psql -h ${path.dirname(socket)} -p ${opts.pgPort})`,
        ]
      : []),
    ...(sharded
      ? [
          `                     ${cluster.shardNames.length} shards (${cluster.shardNames.join(', ')}); ` +
            `table ${DEMO_TABLE} is spread by its id`,
        ]
      : []),
    ...(redis
      ? [
          `  Redis proxy        127.0.0.1:${opts.redisPort}   (${redis.shardNames.length} shards, keys spread by ketama)`,
        ]
      : []),
    `  admin / metrics    http://127.0.0.1:${opts.httpPort}/   /api/nodes   /metrics`,
    `  data plane         ${workersLine(workers)}`,
    '',
    '  nodes:',
    ...cluster.nodes.map((n) => nodeLine(n, sharded)),
    ...(redis?.nodes ?? []).map((n) => `    ${n.id.padEnd(18)} ${n.role.padEnd(8)} 127.0.0.1:${n.port}`),
    '',
    'Try it:',
    ...(sharded
      ? [
          `  ${psql} -c "/* rwsplit:shard=${cluster.shardNames[1] ?? 's1'} */ SELECT inet_server_port(), pg_is_in_recovery()"`,
          `  ${psql} -c "INSERT INTO ${DEMO_TABLE} (id, balance) VALUES (1, 100)"   # to the shard of id 1`,
          `  ${psql} -c "SELECT count(*), sum(balance) FROM ${DEMO_TABLE}"   # every shard, merged`,
          `  pgbench -h 127.0.0.1 -p ${opts.pgPort} -U postgres -i postgres && pgbench -h 127.0.0.1 -p ${opts.pgPort} -U postgres -n -T 5 postgres`,
        ]
      : [`  ${psql} -c "SELECT inet_server_port(), pg_is_in_recovery()"`]),
    ...(redis
      ? [`  redis-cli -p ${opts.redisPort} SET greeting hello && redis-cli -p ${opts.redisPort} GET greeting`]
      : []),
    `  npx rwsplit status --http http://127.0.0.1:${opts.httpPort}`,
    '',
    ...(streaming ? streamLines(psql, opts) : []),
    ...failoverLines(cluster, redis, opts),
    'Press Ctrl-C to stop every process the demo started.',
  ];
  console.log(lines.join('\n'));
}

/** How many processes serve the clients (`workers`, `--workers`). */
export function workersLine(workers: number): string {
  return workers > 1
    ? `${workers} worker processes (workers: --workers or the config key; auto: the cores, at most 8)`
    : 'one process (workers: 1)';
}

/**
 * The banner's change-stream paragraph: one command that writes a row through the PostgreSQL
 * proxy, takes that session's causal token, and reads the row's hash through the Redis proxy
 * with the token (the read waits until the stream has applied the write).
 */
export function streamLines(psql: string, opts: Pick<DemoOptions, 'redisPort' | 'httpPort'>): string[] {
  const write =
    "INSERT INTO items (id, name, qty) VALUES (1, 'apple', 5) " +
    'ON CONFLICT (id) DO UPDATE SET qty = items.qty + 1, updated_at = now()';
  return [
    `Change stream "${STREAM.name}": the PostgreSQL table items is kept in Redis as hashes items:<id>,`,
    'from logical replication. Write a row through rwsplit, then read it through the Redis port with',
    "the write's causal token (read-your-writes: the read waits until the stream has applied it):",
    `  T=$(${psql} -qAt -c "${write}" -c "SHOW rwsplit.causal_token") && printf 'RWSPLIT TOKEN %s\\nHGETALL items:1\\n' "$T" | redis-cli -p ${opts.redisPort}`,
    `  curl -s http://127.0.0.1:${opts.httpPort}/api/streams   # lag, rates, freshness; the dashboard's Streams panel`,
    '',
  ];
}

/**
 * The banner's failover paragraph: the demo runs `failover: auto`, and the quickest way to
 * see it is to kill a primary, so it names the primaries' pids.
 */
function failoverLines(cluster: PgFixture, redis: RedisCluster | null, opts: DemoOptions): string[] {
  const primaries = cluster.nodes.filter((n) => n.role === 'primary');
  const redisPrimary = redis?.nodes.find((n) => n.role === 'primary');
  const kill = (pid: number | undefined): string => (pid === undefined ? '(not running)' : `kill -9 ${pid}`);
  return [
    `Failover is automatic (failover: auto for PostgreSQL${redis ? ' and Redis' : ''}): kill a primary and`,
    `watch http://127.0.0.1:${opts.httpPort}/ promote a replica; writes carry on through the same ports.`,
    ...primaries.map((n) => `  ${kill(n.pid).padEnd(16)} # PostgreSQL primary ${n.id} (its postmaster)`),
    ...(redisPrimary ? [`  ${kill(redisPrimary.pid).padEnd(16)} # Redis primary ${redisPrimary.id}`] : []),
    `  npx rwsplit events --http http://127.0.0.1:${opts.httpPort}   # failover-start, failover-end, fenced …`,
    '',
  ];
}

/** One line of the node table; with shards, the shard each node serves. */
function nodeLine(n: PgNodeHandle, sharded: boolean): string {
  const shard = sharded ? `${n.shard.padEnd(6)} ` : '';
  return `    ${n.id.padEnd(18)} ${shard}${n.role.padEnd(8)} 127.0.0.1:${n.port}`;
}
