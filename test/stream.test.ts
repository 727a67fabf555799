/**
 * Change streams (src/stream/): a PostgreSQL table kept in Redis by logical replication, on a
 * real PostgreSQL cluster (wal_level = logical) and two real Redis shards. The oracle is the
 * table itself: after each scenario every Redis key equals its row, field by field, and no
 * other key exists. Exactly-once across restarts is counted with Redis's own EXEC counters.
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
import { parseLsnText } from '../src/stream/pgoutput.js';
import type { ChangeStream } from '../src/stream/change-stream.js';
import { waitFor } from './support/stack.js';

let pgc: PgCluster;
let redis: RedisCluster;
let db: pg.Client;
/** the shards' primaries, directly */
let primaries: Redis[];

const TEXT = { getTypeParser: () => (v: string) => v };

function config(): ReturnType<typeof validateConfig> {
  return validateConfig({
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
      causalWaitMs: 5000,
    },
    streams: {
      statusIntervalMs: 200,
      list: [
        { name: 'items', table: 'items', key: 'items:{id}' },
        { name: 'docs', table: 'docs', key: 'doc:{a}:{b}', format: 'json' },
      ],
    },
  });
}

async function startApp(): Promise<Rwsplit> {
  return Rwsplit.start(config(), { log: pino({ level: process.env.RWSPLIT_TEST_LOG ?? 'silent' }) });
}

function stream(app: Rwsplit, name: string): ChangeStream {
  return app.streams!.streams.find((s) => s.name === name)!;
}

/** Waits until the stream streams and has applied everything the primary wrote so far. */
async function caughtUp(app: Rwsplit, name: string): Promise<void> {
  const s = stream(app, name);
  await waitFor(`stream ${name} streaming`, () => s.state === 'streaming', 30_000);
  const { rows } = await db.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
  await s.waitApplied(parseLsnText(rows[0]!.lsn), 30_000);
}

/** Every key matching `pattern` on the shard primaries, with its value (hash fields or JSON). */
async function redisRows(pattern: string, json: boolean): Promise<Map<string, unknown>> {
  const out = new Map<string, unknown>();
  for (const r of primaries) {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await r.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
    for (const k of keys) {
      assert.ok(!out.has(k), `key ${k} is on two shards`);
      out.set(k, json ? JSON.parse((await r.get(k))!) : await r.hgetall(k));
    }
  }
  return out;
}

/** items as the hash format must hold them: text output, NULL columns absent. */
async function expectedItems(): Promise<Map<string, unknown>> {
  const { rows } = await db.query<Record<string, string | null>>({
    text: 'SELECT * FROM items',
    types: TEXT,
  });
  const out = new Map<string, unknown>();
  for (const r of rows) {
    const h: Record<string, string> = {};
    for (const [k, v] of Object.entries(r)) if (v !== null) h[k] = v;
    out.set(`items:${r['id']!}`, h);
  }
  return out;
}

function assertSame(actual: Map<string, unknown>, expected: Map<string, unknown>): void {
  const lost = [...expected.keys()].filter((k) => !actual.has(k));
  const extra = [...actual.keys()].filter((k) => !expected.has(k));
  const stale = [...expected.keys()].filter(
    (k) =>
      actual.has(k) && JSON.stringify(sortKeys(actual.get(k))) !== JSON.stringify(sortKeys(expected.get(k))),
  );
  assert.deepEqual(
    { lost: lost.length, stale: stale.length, extra: extra.length },
    { lost: 0, stale: 0, extra: 0 },
    `lost ${lost.slice(0, 3).join(' ')} stale ${stale.slice(0, 3).join(' ')} extra ${extra.slice(0, 3).join(' ')}`,
  );
}

function sortKeys(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v;
  return Object.fromEntries(
    Object.entries(v as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)),
  );
}

/** EXEC calls on the shard primaries (only the streams use MULTI/EXEC here). */
async function execCalls(): Promise<number> {
  let n = 0;
  for (const r of primaries) {
    const m = /cmdstat_exec:calls=(\d+)/.exec(await r.info('commandstats'));
    n += m ? Number(m[1]) : 0;
  }
  return n;
}

/** `n` single-row autocommit writes (insert, update or delete of an existing row) from `writers` connections. */
async function writeLoad(n: number, writers: number, firstId: number): Promise<void> {
  const clients = await Promise.all(
    Array.from({ length: writers }, async () => {
      const c = new pg.Client({ connectionString: pgc.nodes[0]!.connectionString });
      await c.connect();
      return c;
    }),
  );
  let next = 0;
  await Promise.all(
    clients.map(async (c, w) => {
      for (;;) {
        const i = next++;
        if (i >= n) break;
        const id = firstId + i;
        await c.query('INSERT INTO items (id, name, qty, price, tags) VALUES ($1, $2, $3, $4, $5)', [
          id,
          `item ${id} ✓ 'q' "dq"`,
          i % 7,
          i % 3 === 0 ? null : `${i}.25`,
          i % 5 === 0 ? null : `{a,b${w}}`,
        ]);
        if (i % 4 === 1)
          await c.query('UPDATE items SET qty = qty + 100, name = name || $2 WHERE id = $1', [id, ' upd']);
        if (i % 9 === 2) await c.query('DELETE FROM items WHERE id = $1', [id]);
      }
    }),
  );
  await Promise.all(clients.map((c) => c.end()));
}

before(async () => {
  [pgc, redis] = await Promise.all([
    PgCluster.start({ replicas: 1, settings: { wal_level: 'logical' } }),
    RedisCluster.start({ shards: 2, replicas: 1 }),
  ]);
  db = new pg.Client({ connectionString: pgc.nodes[0]!.connectionString });
  await db.connect();
  await db.query(`CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, qty int NOT NULL DEFAULT 0,
    price numeric, tags text[], updated_at timestamptz NOT NULL DEFAULT now())`);
  await db.query(
    `CREATE TABLE docs (a int, b text, body jsonb, flag boolean, big bigint, f float8, PRIMARY KEY (a, b))`,
  );
  primaries = redis.shardNames.map(
    (name) => new Redis({ port: redis.shard(name).primary.port, lazyConnect: false }),
  );
});

after(async () => {
  for (const r of primaries ?? []) r.disconnect();
  await db?.end();
  await Promise.all([redis?.stop(), pgc?.stop()]);
});

describe('change stream into Redis', () => {
  test('the initial copy and the stream meet exactly while writers run', async () => {
    await db.query(
      `INSERT INTO items (id, name, qty, price) SELECT g, 'pre ' || g, g % 10, g / 3.0 FROM generate_series(1, 3000) g`,
    );
    // Writers run before, during and after the copy: each change must be in the copy or in the stream, once.
    const load = writeLoad(3000, 4, 100_000);
    const app = await startApp();
    try {
      await load;
      await caughtUp(app, 'items');
      assertSame(await redisRows('items:*', false), await expectedItems());
      const s = stream(app, 'items');
      assert.equal(s.state, 'streaming');
      // The keys are where rwsplit's ring puts them: a read through the proxy finds them.
      const via = new Redis({ port: app.redis!.address!.port });
      try {
        await via.call('RWSPLIT', 'CONSISTENCY', 'strong');
        assert.equal(await via.hget('items:1', 'name'), 'pre 1');
        assert.equal(await via.hget('items:100000', 'qty'), '0');
      } finally {
        via.disconnect();
      }
    } finally {
      await app.stop();
    }
  });

  test('updates that change the key move it; deletes and truncates remove keys; json keeps types', async () => {
    const app = await startApp();
    try {
      await caughtUp(app, 'items');
      await db.query('UPDATE items SET id = id + 1000000 WHERE id BETWEEN 1 AND 50');
      await db.query('UPDATE items SET price = NULL, tags = \'{x,"y z"}\' WHERE id BETWEEN 51 AND 60');
      await db.query('DELETE FROM items WHERE id BETWEEN 61 AND 70');
      await db.query('BEGIN');
      await db.query("INSERT INTO items (id, name) VALUES (5000000, 'in the same transaction')");
      await db.query('UPDATE items SET id = 5000001 WHERE id = 5000000');
      await db.query('COMMIT');
      await caughtUp(app, 'items');
      assertSame(await redisRows('items:*', false), await expectedItems());
      assert.equal((await redisRows('items:1', false)).size, 0);
      assert.equal((await redisRows('items:1000001', false)).size, 1);

      await db.query(
        `INSERT INTO docs VALUES (1, 'x:y', '{"k":[1,2,{"n":null}]}', true, 9007199254740993, 1.5),
                                 (2, 'é', NULL, false, 42, 'NaN')`,
      );
      await db.query("UPDATE docs SET a = 3, flag = NULL WHERE b = 'é'");
      await caughtUp(app, 'docs');
      assert.deepEqual(
        sortKeys(Object.fromEntries(await redisRows('doc:*', true))),
        sortKeys({
          'doc:1:x:y': {
            a: 1,
            b: 'x:y',
            body: { k: [1, 2, { n: null }] },
            flag: true,
            big: '9007199254740993',
            f: 1.5,
          },
          'doc:3:é': { a: 3, b: 'é', body: null, flag: null, big: 42, f: 'NaN' },
        }),
      );

      // A truncate in a transaction with writes before and after it.
      await db.query('BEGIN');
      await db.query("INSERT INTO items (id, name) VALUES (6000000, 'gone with the truncate')");
      await db.query('TRUNCATE items');
      await db.query("INSERT INTO items (id, name) VALUES (6000001, 'after the truncate')");
      await db.query('COMMIT');
      await caughtUp(app, 'items');
      const left = await redisRows('items:*', false);
      assert.deepEqual([...left.keys()], ['items:6000001']);
      assertSame(left, await expectedItems());
    } finally {
      await app.stop();
    }
  });

  test('a restart of rwsplit mid-stream loses nothing and applies nothing twice', async (t) => {
    let app = await startApp();
    await caughtUp(app, 'items');
    const execBefore = await execCalls();
    const { rows } = await db.query<{ n: string }>('SELECT count(*) AS n FROM items');
    assert.equal(rows[0]!.n, '1');
    // 2,000 ids: inserts, every 4th updated, every 9th deleted; each statement is one transaction on one shard.
    const n = 2000;
    const txns =
      n +
      Array.from({ length: n }, (_, i) => i).filter((i) => i % 4 === 1).length +
      Array.from({ length: n }, (_, i) => i).filter((i) => i % 9 === 2).length;
    const load = writeLoad(n, 4, 200_000);
    await waitFor('some changes applied', () => stream(app, 'items').figures.writes.total > 200, 30_000);
    await app.stop(); // mid-stream: transactions decoded, some sent to Redis and unanswered
    app = await startApp();
    try {
      await load;
      await caughtUp(app, 'items');
      assertSame(await redisRows('items:*', false), await expectedItems());
      // One EXEC per transaction, on the one shard it touched: none lost, none repeated (no new copy either).
      assert.equal((await execCalls()) - execBefore, txns);
      const f = stream(app, 'items').figures;
      t.diagnostic(
        `${txns} transactions, as many EXEC; after the restart: freshness p50 ${f.percentile(50)} ms, p99 ${f.percentile(99)} ms`,
      );
      const events = (await (await fetch(`http://127.0.0.1:${app.httpAddress!.port}/api/events`)).json()) as {
        type: string;
      }[];
      assert.ok(events.some((e) => e.type === 'stream-started'));
      assert.ok(
        !events.some((e) => e.type === 'stream-resynced'),
        'the restart resumed; it did not copy again',
      );
    } finally {
      await app.stop();
    }
  });

  test('read-your-writes from PostgreSQL into Redis: 1,000 pairs, 0 stale', async () => {
    const app = await startApp();
    const writer = new pg.Client({
      host: '127.0.0.1',
      port: app.pgAddress!.port,
      user: 'postgres',
      database: 'postgres',
    });
    const reader = new Redis({ port: app.redis!.address!.port });
    try {
      await writer.connect();
      await caughtUp(app, 'items');
      await writer.query("INSERT INTO items (id, name, qty) VALUES (400000, 'ryw', 0)");
      const pairs = 1000;
      let stale = 0;
      let errors = 0;
      let firstError: string | undefined;
      for (let i = 1; i <= pairs; i++) {
        // Extended protocol on odd turns, simple on even ones.
        if (i % 2) await writer.query('UPDATE items SET qty = $1 WHERE id = 400000', [i]);
        else await writer.query(`UPDATE items SET qty = ${i} WHERE id = 400000`);
        const { rows } = await writer.query<{ rwsplit_causal_token: string }>('SHOW rwsplit.causal_token');
        const token = Object.values(rows[0]!)[0] as string;
        await reader.call('RWSPLIT', 'TOKEN', token);
        try {
          if ((await reader.hget('items:400000', 'qty')) !== String(i)) stale++;
        } catch (err) {
          errors++;
          firstError ??= `pair ${i}: ${(err as Error).message}`;
        }
      }
      assert.deepEqual({ stale, errors }, { stale: 0, errors: 0 }, firstError);
      const [report] = (await (
        await fetch(`http://127.0.0.1:${app.httpAddress!.port}/api/streams`)
      ).json()) as {
        readRate: number;
      }[];
      assert.ok(report!.readRate > 0, `readRate ${report!.readRate}`);
      assert.equal(stream(app, 'items').figures.reads.total, pairs);
      // A token the stream cannot reach in time: the read answers how far behind the read model is.
      await reader.call('RWSPLIT', 'TOKEN', 'v1:default@FFFF/0');
      await assert.rejects(
        reader.hget('items:400000', 'qty'),
        /TRYAGAIN stream items: the read model is \d+ bytes behind/,
      );
    } finally {
      reader.disconnect();
      await writer.end();
      await app.stop();
    }
  });

  test('the four figures and the lag: /api/streams and /metrics', async (t) => {
    const app = await startApp();
    try {
      await caughtUp(app, 'items');
      // Stop the shard primaries: changes arrive and cannot be applied, so the lag grows.
      const ids = redis.shardNames.map((name) => redis.shard(name).primary.id);
      for (const id of ids) redis.signal(id, 'SIGSTOP');
      try {
        await db.query(
          "INSERT INTO items (id, name) SELECT g, 'lag ' || g FROM generate_series(300000, 300499) g",
        );
        for (let i = 0; i < 50; i++) await db.query('UPDATE items SET qty = qty + 1 WHERE id = 300000');
        const s = stream(app, 'items');
        await waitFor(
          'changes decoded and not applied',
          () => s.figures.arrivals.total >= 550 && (s.lagBytes ?? 0) > 0,
          30_000,
        );
        const [report] = (await (
          await fetch(`http://127.0.0.1:${app.httpAddress!.port}/api/streams`)
        ).json()) as {
          name: string;
          lagBytes: number;
          arrivalRate: number;
        }[];
        assert.equal(report!.name, 'items');
        assert.ok(report!.lagBytes > 0, `lagBytes ${report!.lagBytes}`);
        assert.ok(report!.arrivalRate > 0);
      } finally {
        for (const id of ids) redis.signal(id, 'SIGCONT');
      }
      await caughtUp(app, 'items');
      assertSame(await redisRows('items:*', false), await expectedItems());
      const [report] = (await (
        await fetch(`http://127.0.0.1:${app.httpAddress!.port}/api/streams`)
      ).json()) as {
        state: string;
        lagBytes: number;
        writeRate: number;
        freshnessP50Ms: number;
        freshnessP99Ms: number;
      }[];
      t.diagnostic(`after a stall of the Redis primaries: ${JSON.stringify(report)}`);
      assert.equal(report!.state, 'streaming');
      assert.equal(report!.lagBytes, 0);
      assert.ok(report!.writeRate > 0);
      assert.ok(report!.freshnessP99Ms >= report!.freshnessP50Ms);
      const metrics = await (await fetch(`http://127.0.0.1:${app.httpAddress!.port}/metrics`)).text();
      const count = /rwsplit_stream_freshness_seconds_count\{stream="items"\} (\d+)/.exec(metrics);
      assert.ok(count && Number(count[1]) >= 51, `freshness samples: ${count?.[1]}`);
      assert.match(metrics, /rwsplit_stream_changes_applied_total\{stream="items"\} \d+/);
    } finally {
      await app.stop();
    }
  });
});
