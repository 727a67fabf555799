/**
 * The change-stream benchmark: a PostgreSQL primary with one streaming replica
 * (wal_level = logical), one Redis shard (primary + replica), rwsplit with a stream of table
 * `items` into Redis hashes. Writers update rows at a target rate (default 1,000 and 5,000
 * changes/s, then as fast as they can) for a few seconds each; per phase it reports the four
 * figures (arrival, write and read rate, freshness p50/p99 from /api/streams) beside the
 * streaming replica's replay lag sampled in the same phase (pg_stat_replication.replay_lag:
 * the physical reference). Writes bench/results/stream-bench.{json,md}. Usage (after
 * `npm run build`):
 *
 *   node dist/bench/stream-bench.js [--seconds 8] [--rates 1000,5000,max] [--out DIR]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import pg from 'pg';
import { pino } from 'pino';
import { Rwsplit } from '../src/app.js';
import { PgCluster } from '../src/cluster/pg-cluster.js';
import { RedisCluster } from '../src/cluster/redis-cluster.js';
import { validateConfig } from '../src/config/load.js';
import type { StreamReport } from '../src/stream/stream-manager.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const ROWS = 10_000;
const WRITERS = 8;

interface PhaseResult {
  target: string;
  offeredChangesPerSec: number;
  arrivalRate: number;
  writeRate: number;
  readRate: number;
  freshnessP50Ms: number | null;
  freshnessP99Ms: number | null;
  replicaReplayLagP50Ms: number | null;
  replicaReplayLagP99Ms: number | null;
  maxLagBytes: number;
}

function percentile(values: number[], p: number): number | null {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '8' },
      rates: { type: 'string', default: '1000,5000,max' },
      out: { type: 'string', default: path.join(REPO_ROOT, 'bench', 'results') },
    },
  });
  const seconds = Number(values.seconds);
  const [pgc, redis] = await Promise.all([
    PgCluster.start({ replicas: 1, settings: { wal_level: 'logical' } }),
    RedisCluster.start({ shards: 1, replicas: 1 }),
  ]);
  let app: Rwsplit | null = null;
  try {
    const db = new pg.Client({ connectionString: pgc.nodes[0]!.connectionString });
    await db.connect();
    await db.query(
      'CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, qty int NOT NULL DEFAULT 0, updated_at timestamptz NOT NULL DEFAULT now())',
    );
    await db.query(`INSERT INTO items (id, name) SELECT g, 'item ' || g FROM generate_series(1, ${ROWS}) g`);
    const s = redis.shard(redis.shardNames[0]!);
    app = await Rwsplit.start(
      validateConfig({
        workers: 1,
        listen: {
          postgres: { host: '127.0.0.1', port: 0 },
          http: { host: '127.0.0.1', port: 0 },
          redis: { host: '127.0.0.1', port: 0 },
        },
        postgres: { nodes: pgc.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port })) },
        redis: {
          shards: [
            {
              name: 's1',
              nodes: [s.primary, ...s.replicas].map((n) => ({ id: n.id, host: n.host, port: n.port })),
            },
          ],
        },
        streams: { list: [{ name: 'items', table: 'items', key: 'items:{id}' }] },
      }),
      { log: pino({ level: 'silent' }) },
    );
    const api = `http://127.0.0.1:${app.httpAddress!.port}/api/streams`;
    const report = async (): Promise<StreamReport> =>
      ((await (await fetch(api)).json()) as StreamReport[])[0]!;
    while ((await report()).state !== 'streaming') await new Promise((r) => setTimeout(r, 100));
    const writers = await Promise.all(
      Array.from({ length: WRITERS }, async () => {
        const c = new pg.Client({ connectionString: pgc.nodes[0]!.connectionString });
        await c.connect();
        return c;
      }),
    );
    const reader = new Redis({ port: app.redis!.address!.port });
    const results: PhaseResult[] = [];
    for (const target of values.rates.split(',')) {
      const rate = target === 'max' ? Infinity : Number(target);
      const until = Date.now() + seconds * 1000;
      let done = 0;
      let stop = false;
      const lags: number[] = [];
      let maxLagBytes = 0;
      const started = Date.now();
      const sampler = (async () => {
        while (!stop) {
          const { rows } = await db.query<{ ms: number | null }>(
            'SELECT extract(epoch FROM replay_lag) * 1000 AS ms FROM pg_stat_replication',
          );
          if (rows[0]?.ms != null) lags.push(Number(rows[0].ms));
          maxLagBytes = Math.max(maxLagBytes, (await report()).lagBytes ?? 0);
          await reader.hget(`items:${1 + Math.floor(Math.random() * ROWS)}`, 'qty');
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      await Promise.all(
        writers.map(async (c, w) => {
          while (Date.now() < until) {
            // Paced: each writer keeps to its share of the target rate.
            const due = started + ((done + 1) * 1000) / rate;
            if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
            done++;
            const id = 1 + ((done * WRITERS + w) % ROWS);
            await c.query('UPDATE items SET qty = qty + 1, updated_at = now() WHERE id = $1', [id]);
          }
        }),
      );
      const offered = (done * 1000) / (Date.now() - started);
      const r = await report();
      stop = true;
      await sampler;
      results.push({
        target,
        offeredChangesPerSec: Math.round(offered),
        arrivalRate: r.arrivalRate,
        writeRate: r.writeRate,
        readRate: r.readRate,
        freshnessP50Ms: r.freshnessP50Ms,
        freshnessP99Ms: r.freshnessP99Ms,
        replicaReplayLagP50Ms: percentile(lags, 50),
        replicaReplayLagP99Ms: percentile(lags, 99),
        maxLagBytes,
      });
      console.log(JSON.stringify(results[results.length - 1]));
      // Let the stream drain before the next phase.
      while (((await report()).lagBytes ?? 0) > 0) await new Promise((r) => setTimeout(r, 100));
      await new Promise((r) => setTimeout(r, 5500)); // the rate windows (5 s) forget this phase
    }
    reader.disconnect();
    await Promise.all(writers.map((c) => c.end()));
    await db.end();
    mkdirSync(values.out, { recursive: true });
    writeFileSync(
      path.join(values.out, 'stream-bench.json'),
      JSON.stringify({ seconds, writers: WRITERS, results }, null, 2) + '\n',
    );
    const md = [
      '# Change stream benchmark',
      '',
      `${WRITERS} writers, single-row UPDATEs of a ${ROWS}-row table, ${seconds} s per phase; one PostgreSQL replica, one Redis shard with one replica, on one machine. Freshness: commit on the primary to applied in Redis (rwsplit's histogram, last 4,096 transactions); replica replay lag: pg_stat_replication.replay_lag sampled every 50 ms in the same phase.`,
      '',
      '| target | offered changes/s | arrival/s | write/s | read/s | freshness p50 ms | freshness p99 ms | replica replay lag p50 ms | p99 ms | max lag bytes |',
      '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
      ...results.map(
        (r) =>
          `| ${r.target} | ${r.offeredChangesPerSec} | ${r.arrivalRate} | ${r.writeRate} | ${r.readRate} | ${r.freshnessP50Ms} | ${r.freshnessP99Ms} | ${r.replicaReplayLagP50Ms?.toFixed(1)} | ${r.replicaReplayLagP99Ms?.toFixed(1)} | ${r.maxLagBytes} |`,
      ),
      '',
    ].join('\n');
    writeFileSync(path.join(values.out, 'stream-bench.md'), md);
    console.log(md);
  } finally {
    await app?.stop();
    await Promise.all([redis.stop(), pgc.stop()]);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
