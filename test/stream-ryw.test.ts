/**
 * Read-your-writes across the change stream, on real servers: a write through the PostgreSQL
 * proxy, its session's causal token (`SHOW rwsplit.causal_token`) handed to a Redis connection
 * (`RWSPLIT TOKEN`), then a read of the mirrored key through the Redis proxy must show that
 * write, never an older state. Four lanes at once, each with its own row: updates (simple and
 * extended protocol), moves of the row to a new primary key (the old key must be gone) and
 * delete-then-insert transactions. Every pair is checked: 0 stale, 0 errors.
 *
 * RWSPLIT_STREAM_RYW_PAIRS sets the number of pairs (default 1,000; the figure is 10,000).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import pg from 'pg';
import { pino } from 'pino';
import { Rwsplit } from '../src/app.js';
import { PgCluster } from '../src/cluster/pg-cluster.js';
import { RedisCluster } from '../src/cluster/redis-cluster.js';
import { validateConfig } from '../src/config/load.js';
import { caughtUp } from './support/stream-oracle.js';

const PAIRS = Number(process.env.RWSPLIT_STREAM_RYW_PAIRS ?? 1000);
const LANES = 4;

let pgc: PgCluster;
let redis: RedisCluster;
let app: Rwsplit;
let db: pg.Client;

before(async () => {
  [pgc, redis] = await Promise.all([
    PgCluster.start({ replicas: 0, settings: { wal_level: 'logical' } }),
    RedisCluster.start({ shards: 2, replicas: 1 }),
  ]);
  db = new pg.Client({ connectionString: pgc.nodes[0]!.connectionString });
  await db.connect();
  await db.query(
    'CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, qty int NOT NULL, at timestamptz NOT NULL DEFAULT now())',
  );
  await db.query(
    `INSERT INTO items (id, name, qty) SELECT g, 'lane ' || g, 0 FROM generate_series(1, ${LANES}) g`,
  );
  app = await Rwsplit.start(
    validateConfig({
      workers: 1,
      listen: {
        postgres: { host: '127.0.0.1', port: 0 },
        http: { host: '127.0.0.1', port: 0 },
        redis: { host: '127.0.0.1', port: 0 },
      },
      postgres: {
        nodes: pgc.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port })),
        monitor: { intervalMs: 200, timeoutMs: 1000 },
      },
      redis: {
        shards: redis.shardNames.map((name) => {
          const s = redis.shard(name);
          return {
            name,
            nodes: [s.primary, ...s.replicas].map((n) => ({ id: n.id, host: n.host, port: n.port })),
          };
        }),
        monitor: { intervalMs: 200, timeoutMs: 1000 },
        // the box is shared and slow: a read waits this long for the stream before answering TRYAGAIN
        causalWaitMs: 10_000,
      },
      streams: { statusIntervalMs: 200, list: [{ name: 'items', table: 'items', key: 'items:{id}' }] },
    }),
    { log: pino({ level: process.env.RWSPLIT_TEST_LOG ?? 'silent' }) },
  );
  await caughtUp(() => app.streams!.streams[0]!, db);
});

after(async () => {
  await db?.end();
  await app?.stop();
  await Promise.all([redis?.stop(), pgc?.stop()]);
});

describe('read-your-writes from PostgreSQL into Redis across the stream', () => {
  test(`${PAIRS} write/token/read pairs in ${LANES} lanes: 0 stale, 0 errors`, async (t) => {
    let stale = 0;
    let errors = 0;
    let done = 0;
    const problems: string[] = [];
    const readMs: number[] = [];
    const started = Date.now();

    const lane = async (l: number): Promise<void> => {
      const writer = new pg.Client({
        host: '127.0.0.1',
        port: app.pgAddress!.port,
        user: 'postgres',
        database: 'postgres',
      });
      const reader = new Redis({ port: app.redis!.address!.port });
      await writer.connect();
      let id = l + 1;
      let nextId = 1_000_000 * (l + 1);
      try {
        for (let i = 1; i <= PAIRS / LANES; i++) {
          const qty = i;
          let gone: string | null = null;
          switch (i % 4) {
            case 0:
              await writer.query('UPDATE items SET qty = $2, at = now() WHERE id = $1', [id, qty]);
              break;
            case 1:
              await writer.query(`UPDATE items SET qty = ${qty}, name = 'lane ${l} ü ${i}' WHERE id = ${id}`);
              break;
            case 2: {
              // The row moves to a new key: the old one must be gone too.
              const to = nextId++;
              await writer.query('UPDATE items SET id = $2, qty = $3 WHERE id = $1', [id, to, qty]);
              gone = `items:${id}`;
              id = to;
              break;
            }
            default: {
              const to = nextId++;
              await writer.query('BEGIN');
              await writer.query('DELETE FROM items WHERE id = $1', [id]);
              await writer.query("INSERT INTO items (id, name, qty) VALUES ($1, 'again', $2)", [to, qty]);
              await writer.query('COMMIT');
              gone = `items:${id}`;
              id = to;
            }
          }
          const { rows } = await writer.query('SHOW rwsplit.causal_token');
          const token = Object.values(rows[0] as Record<string, string>)[0]!;
          await reader.call('RWSPLIT', 'TOKEN', token);
          const t0 = Date.now();
          try {
            const got = await reader.hget(`items:${id}`, 'qty');
            const old = gone === null ? 0 : await reader.exists(gone);
            readMs.push(Date.now() - t0);
            if (got !== String(qty) || old !== 0) {
              stale++;
              if (problems.length < 5)
                problems.push(
                  `lane ${l} pair ${i}: qty ${got} (wrote ${qty}), old key ${gone} exists ${old}`,
                );
            }
          } catch (err) {
            errors++;
            if (problems.length < 5) problems.push(`lane ${l} pair ${i}: ${(err as Error).message}`);
          }
          done++;
        }
      } finally {
        reader.disconnect();
        await writer.end();
      }
    };

    await Promise.all(Array.from({ length: LANES }, (_, l) => lane(l)));
    const ms = Date.now() - started;
    readMs.sort((a, b) => a - b);
    const pct = (p: number): number =>
      readMs[Math.min(readMs.length - 1, Math.floor((p / 100) * readMs.length))]!;
    t.diagnostic(
      `${done} pairs in ${ms} ms (${Math.round((done * 1000) / ms)} pairs/s); read with the token: p50 ${pct(50)} ms, p99 ${pct(99)} ms`,
    );
    assert.equal(done, PAIRS - (PAIRS % LANES));
    assert.deepEqual({ stale, errors }, { stale: 0, errors: 0 }, problems.join('\n'));
    // Every read was of a stream-fed key, counted as such (the read rate's source).
    assert.ok(app.streams!.streams[0]!.figures.reads.total >= done);
  });
});
