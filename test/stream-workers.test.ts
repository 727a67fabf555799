/**
 * Change streams with `workers: 2`: the stream runs in the controller, the Redis reads of its
 * keys are served by the workers. Read-your-writes across the stream holds on both workers (a
 * PostgreSQL session's token handed to a Redis connection, the read waiting for the
 * controller's stream), the reads count in the stream's figures (`/api/streams`, `/metrics`),
 * and a read whose token the stream cannot reach in `redis.causalWaitMs` gets the same
 * TRYAGAIN as in one process.
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
import { waitFor } from './support/stack.js';
import { caughtUp } from './support/stream-oracle.js';

const LANES = 4;
const PAIRS = 400;
const CAUSAL_WAIT_MS = 5000;

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
  await db.query('CREATE TABLE items (id bigint PRIMARY KEY, qty int NOT NULL)');
  await db.query(`INSERT INTO items SELECT g, 0 FROM generate_series(1, ${LANES}) g`);
  app = await Rwsplit.start(
    validateConfig({
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
        causalWaitMs: CAUSAL_WAIT_MS,
      },
      streams: { statusIntervalMs: 200, list: [{ name: 'items', table: 'items', key: 'items:{id}' }] },
      workers: 2,
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

describe('change streams with two data-plane workers', () => {
  test(`${PAIRS} write/token/read pairs, readers on both workers: 0 stale, 0 errors, every read counted`, async () => {
    assert.equal(app.workers?.count, 2);
    const readsBefore = app.streams!.streams[0]!.figures.reads.total;
    // Connections are dealt to the workers in turn: the writers one after the other, then the
    // readers, so each worker holds two of each (checked below).
    const writers: pg.Client[] = [];
    for (let l = 0; l < LANES; l++) {
      const w = new pg.Client({ host: '127.0.0.1', port: app.pgAddress!.port, user: 'postgres' });
      await w.connect();
      writers.push(w);
    }
    const readers: Redis[] = [];
    for (let l = 0; l < LANES; l++) {
      const r = new Redis({ port: app.redis!.address!.port });
      await r.ping();
      readers.push(r);
    }
    await waitFor('each worker reports its four clients', () =>
      app.workers!.describe().every((w) => w.clients === LANES),
    );
    let stale = 0;
    let errors = 0;
    const problems: string[] = [];
    const lane = async (l: number): Promise<void> => {
      const writer = writers[l]!;
      const reader = readers[l]!;
      for (let qty = 1; qty <= PAIRS / LANES; qty++) {
        // Simple and extended protocol in turn.
        if (qty % 2 === 0) await writer.query('UPDATE items SET qty = $2 WHERE id = $1', [l + 1, qty]);
        else await writer.query(`UPDATE items SET qty = ${qty} WHERE id = ${l + 1}`);
        const { rows } = await writer.query('SHOW rwsplit.causal_token');
        await reader.call('RWSPLIT', 'TOKEN', Object.values(rows[0] as Record<string, string>)[0]!);
        try {
          const got = await reader.hget(`items:${l + 1}`, 'qty');
          if (got !== String(qty)) {
            stale++;
            if (problems.length < 5) problems.push(`lane ${l}: qty ${got}, wrote ${qty}`);
          }
        } catch (err) {
          errors++;
          if (problems.length < 5) problems.push(`lane ${l}: ${(err as Error).message}`);
        }
      }
    };
    try {
      await Promise.all(writers.map((_, l) => lane(l)));
    } finally {
      for (const r of readers) r.disconnect();
      await Promise.all(writers.map((w) => w.end()));
    }
    assert.deepEqual({ stale, errors }, { stale: 0, errors: 0 }, problems.join('\n'));
    // The workers report their reads with their figures (every 250 ms).
    await waitFor(
      'the workers’ reads in the stream’s figures',
      () => app.streams!.streams[0]!.figures.reads.total - readsBefore >= PAIRS,
    );
    const metrics = await (await fetch(`http://127.0.0.1:${app.httpAddress!.port}/metrics`)).text();
    const reads = Number(/^rwsplit_stream_reads_total\{stream="items"\} (\d+)$/m.exec(metrics)?.[1]);
    assert.ok(reads >= PAIRS, `rwsplit_stream_reads_total ${reads}, expected at least ${PAIRS}`);
  });

  test('a token the stream cannot reach in causalWaitMs: TRYAGAIN from the worker, as in one process', async () => {
    const reader = new Redis({ port: app.redis!.address!.port, maxRetriesPerRequest: 0 });
    try {
      // Far past anything this cluster has written.
      await reader.call('RWSPLIT', 'TOKEN', 'v1:default@FF/0');
      await assert.rejects(reader.hget('items:1', 'qty'), (err: Error) =>
        /^TRYAGAIN stream items: the read model is \d+ bytes behind after 5000 ms/.test(err.message),
      );
      // A key no stream feeds does not wait.
      assert.equal(await reader.get('other:1'), null);
    } finally {
      reader.disconnect();
    }
  });
});
