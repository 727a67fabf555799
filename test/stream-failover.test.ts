/**
 * Change streams across failovers, on real servers: kill -9 of the Redis shard primary
 * (rwsplit's Redis failover promotes its replica; the stream resumes there from the position
 * the replica holds, no copy), then kill -9 of the PostgreSQL primary (the logical slot does
 * not survive the promotion on PostgreSQL 15: the stream copies again on the new primary and
 * converges to its table).
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
import type { ChangeStream } from '../src/stream/change-stream.js';
import { parseLsnText } from '../src/stream/pgoutput.js';
import { waitFor } from './support/stack.js';

const FAILOVER = { mode: 'auto', detectMs: 1000, bufferMs: 5000 };
const TEXT = { getTypeParser: () => (v: string) => v };

let pgc: PgCluster;
let redis: RedisCluster;
let app: Rwsplit;

function stream(): ChangeStream {
  return app.streams!.streams[0]!;
}

/** A connection to the current PostgreSQL primary (as rwsplit sees it). */
async function primaryClient(): Promise<pg.Client> {
  const n = app.topology.primary()!;
  const c = new pg.Client({ host: n.spec.host, port: n.spec.port, user: 'postgres', database: 'postgres' });
  c.on('error', () => undefined);
  await c.connect();
  return c;
}

async function caughtUp(): Promise<void> {
  await waitFor('stream streaming', () => stream().state === 'streaming', 60_000);
  const c = await primaryClient();
  try {
    const { rows } = await c.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
    await stream().waitApplied(parseLsnText(rows[0]!.lsn), 30_000);
  } finally {
    await c.end();
  }
}

/** Every items:* key of the current Redis primary against every row of the current PostgreSQL primary. */
async function compare(): Promise<{ lost: number; stale: number; extra: number; rows: number }> {
  const node = app.redis!.topologies[0]!.primary()!;
  const r = new Redis({ port: node.spec.port });
  const c = await primaryClient();
  try {
    const { rows } = await c.query<Record<string, string | null>>({
      text: 'SELECT * FROM items',
      types: TEXT,
    });
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await r.scan(cursor, 'MATCH', 'items:*', 'COUNT', 1000);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
    const want = new Map(rows.map((row) => [`items:${row['id']!}`, row]));
    let stale = 0;
    for (const [k, row] of want) {
      const h = await r.hgetall(k);
      const expected = Object.fromEntries(Object.entries(row).filter(([, v]) => v !== null));
      if (
        Object.keys(h).length > 0 &&
        JSON.stringify(Object.entries(h).sort()) !== JSON.stringify(Object.entries(expected).sort())
      )
        stale++;
    }
    const have = new Set(keys);
    return {
      lost: [...want.keys()].filter((k) => !have.has(k)).length,
      stale,
      extra: keys.filter((k) => !want.has(k)).length,
      rows: rows.length,
    };
  } finally {
    r.disconnect();
    await c.end();
  }
}

/** Single-row writes from 4 connections to whatever is the primary, retrying through failovers. */
async function writeLoad(n: number, firstId: number): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      let c: pg.Client | null = null;
      while (next < n) {
        const i = next;
        try {
          c ??= await primaryClient();
          await c.query(
            'INSERT INTO items (id, name, qty) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET qty = items.qty + 1',
            [firstId + i, `n ${i} ✓`, i % 13],
          );
          if (i % 5 === 0)
            await c.query('UPDATE items SET name = name || $2 WHERE id = $1', [firstId + i, '+']);
          if (i % 7 === 0) await c.query('DELETE FROM items WHERE id = $1', [firstId + i - 3]);
          if (i === next) next++;
        } catch {
          await c?.end().catch(() => undefined);
          c = null;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      await c?.end();
    }),
  );
}

before(async () => {
  [pgc, redis] = await Promise.all([
    PgCluster.start({ replicas: 1, settings: { wal_level: 'logical' } }),
    RedisCluster.start({ shards: 1, replicas: 1 }),
  ]);
  const db = new pg.Client({ connectionString: pgc.nodes[0]!.connectionString });
  await db.connect();
  await db.query(
    'CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, qty int NOT NULL DEFAULT 0)',
  );
  await db.query("INSERT INTO items SELECT g, 'pre ' || g, g % 10 FROM generate_series(1, 1000) g");
  await db.end();
  const s = redis.shard(redis.shardNames[0]!);
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
        failover: FAILOVER,
      },
      redis: {
        shards: [
          {
            name: 's1',
            nodes: [s.primary, ...s.replicas].map((n) => ({ id: n.id, host: n.host, port: n.port })),
          },
        ],
        monitor: { intervalMs: 200, timeoutMs: 1000 },
        failover: FAILOVER,
      },
      streams: { statusIntervalMs: 200, list: [{ name: 'items', table: 'items', key: 'items:{id}' }] },
    }),
    { log: pino({ level: process.env.RWSPLIT_TEST_LOG ?? 'silent' }) },
  );
});

after(async () => {
  await app?.stop();
  await Promise.all([redis?.stop(), pgc?.stop()]);
});

async function events(): Promise<{ type: string; detail: string }[]> {
  return (await (await fetch(`http://127.0.0.1:${app.httpAddress!.port}/api/events`)).json()) as {
    type: string;
    detail: string;
  }[];
}

describe('change stream across failovers', () => {
  test('kill -9 of the Redis primary mid-stream: resumed on the promoted replica, 0 lost, 0 stale, 0 extra', async () => {
    await caughtUp();
    const copies = (await events()).filter((e) => e.type === 'stream-resynced').length;
    assert.equal(copies, 1);
    const load = writeLoad(1500, 10_000);
    await waitFor('some changes applied', () => stream().figures.writes.total > 300, 30_000);
    const old = redis.shard(redis.shardNames[0]!).primary.id;
    await redis.kill(old);
    await load;
    await waitFor('a new Redis primary', () => app.redis!.topologies[0]!.primary()?.spec.id !== old, 30_000);
    await caughtUp();
    const result = await compare();
    assert.deepEqual({ ...result, rows: result.rows > 1000 }, { lost: 0, stale: 0, extra: 0, rows: true });
    assert.equal(
      (await events()).filter((e) => e.type === 'stream-resynced').length,
      copies,
      'resumed, not copied again',
    );
  });

  test('kill -9 of the PostgreSQL primary: the stream copies again on the promoted replica and converges', async () => {
    const old = app.topology.primary()!.spec.id;
    const load = writeLoad(1000, 20_000);
    await waitFor('some changes applied', () => stream().figures.writes.total > 100, 30_000);
    await pgc.kill(old);
    await load;
    await waitFor('a new PostgreSQL primary', () => (app.topology.primary()?.spec.id ?? old) !== old, 30_000);
    await waitFor(
      'the stream copied on the new primary',
      async () =>
        (await events()).some((e) => e.type === 'stream-resynced' && !e.detail.includes(old)) || false,
      60_000,
    );
    await caughtUp();
    assert.deepEqual(await compare().then((r) => ({ ...r, rows: r.rows > 1000 })), {
      lost: 0,
      stale: 0,
      extra: 0,
      rows: true,
    });
  });
});
