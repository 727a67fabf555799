/**
 * Change streams when something is wrong, on real servers: a Redis shard that refuses writes
 * (-OOM), a slot dropped under the stream, its publication dropped, and a table changed so its
 * rows can no longer be mapped to keys. Each time the user is told (the event log,
 * `GET /api/streams`, `/metrics`), nothing hangs (a read with a token gets its answer), the
 * other streams carry on, and where the stream can recover it ends equal to its table.
 *
 * Five streams on one PostgreSQL primary and two Redis shards; the Redis hash tag `()` puts
 * stream `oom`'s keys on one shard and every other stream's on the other, so a shard that
 * refuses writes stops only the stream writing there.
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
import { createRing } from '../src/sharding/ring.js';
import type { ChangeStream } from '../src/stream/change-stream.js';
import type { StreamReport } from '../src/stream/stream-manager.js';
import { waitFor } from './support/stack.js';
import { caughtUp, diff, redisHashes, tableHashes } from './support/stream-oracle.js';

let pgc: PgCluster;
let redis: RedisCluster;
let app: Rwsplit;
let db: pg.Client;
/** the two shard primaries, directly, in ring order */
let primaries: Redis[];
/** hash tags: `tags.oom` lands on the shard `oomShard`, `tags.rest` on the other one */
const tags = { oom: '', rest: '' };
let oomShard = 0;

const TABLES = ['good', 'oomt', 'slotted', 'published', 'unmapped'];
const STREAMS = [
  { name: 'good', table: 'good', prefix: 'g' },
  { name: 'oom', table: 'oomt', prefix: 'o' },
  { name: 'slotted', table: 'slotted', prefix: 's' },
  { name: 'published', table: 'published', prefix: 'p' },
  { name: 'unmapped', table: 'unmapped', prefix: 'u' },
];

function prefix(name: string): string {
  const s = STREAMS.find((x) => x.name === name)!;
  return `${s.prefix}:(${name === 'oom' ? tags.oom : tags.rest}):`;
}

function stream(name: string): () => ChangeStream {
  return () => app.streams!.streams.find((s) => s.name === name)!;
}

async function reports(): Promise<StreamReport[]> {
  return (await (
    await fetch(`http://127.0.0.1:${app.httpAddress!.port}/api/streams`)
  ).json()) as StreamReport[];
}

async function report(name: string): Promise<StreamReport> {
  return (await reports()).find((r) => r.name === name)!;
}

async function events(): Promise<{ type: string; detail: string }[]> {
  return (await (await fetch(`http://127.0.0.1:${app.httpAddress!.port}/api/events`)).json()) as {
    type: string;
    detail: string;
  }[];
}

async function metric(name: string, streamName: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${app.httpAddress!.port}/metrics`)).text();
  const m = new RegExp(`^${name}\\{stream="${streamName}"\\} (\\S+)$`, 'm').exec(text);
  assert.ok(m, `${name} for ${streamName} on /metrics`);
  return Number(m[1]);
}

/** The stream's keys against its table: 0 lost, 0 stale, 0 extra. */
async function assertMirrors(name: string, table: string): Promise<number> {
  const p = prefix(name);
  const d = diff(
    await redisHashes(primaries, `${p}*`),
    await tableHashes(db, table, (r) => `${p}${r['id']!}`),
  );
  assert.deepEqual(
    { lost: d.lost, stale: d.stale, extra: d.extra },
    { lost: 0, stale: 0, extra: 0 },
    d.examples,
  );
  return d.rows;
}

async function insert(table: string, from: number, n: number): Promise<void> {
  await db.query(
    `INSERT INTO ${table} (id, name) SELECT g, 'row ' || g || ' ✓' FROM generate_series(${from}, ${from + n - 1}) g`,
  );
}

before(async () => {
  [pgc, redis] = await Promise.all([
    PgCluster.start({ replicas: 0, settings: { wal_level: 'logical' } }),
    RedisCluster.start({ shards: 2, replicas: 0 }),
  ]);
  // Two hash tags that the proxy's ring (ketama, fnv1a_64, as configured below) puts on different shards.
  const ring = createRing(
    'ketama',
    redis.shardNames.map((name) => ({ name, weight: 1 })),
  );
  const candidates = Array.from({ length: 1000 }, (_, i) => `t${i}`);
  tags.oom = candidates[0]!;
  oomShard = ring.locate(Buffer.from(tags.oom));
  const other = candidates.find((c) => ring.locate(Buffer.from(c)) !== oomShard);
  assert.ok(other, 'a tag on the other shard');
  tags.rest = other;
  primaries = redis.shardNames.map((name) => new Redis({ port: redis.shard(name).primary.port }));
  db = new pg.Client({ connectionString: pgc.nodes[0]!.connectionString });
  await db.connect();
  for (const t of TABLES) {
    await db.query(`CREATE TABLE ${t} (id bigint PRIMARY KEY, name text NOT NULL, qty int)`);
    await insert(t, 1, 100);
  }
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
          return { name, nodes: [{ id: s.primary.id, host: s.primary.host, port: s.primary.port }] };
        }),
        hash: { tag: '()' },
        monitor: { intervalMs: 200, timeoutMs: 1000 },
        causalWaitMs: 1000,
      },
      streams: {
        statusIntervalMs: 200,
        list: STREAMS.map((s) => ({ name: s.name, table: s.table, key: `${prefix(s.name)}{id}` })),
      },
    }),
    { log: pino({ level: process.env.RWSPLIT_TEST_LOG ?? 'silent' }) },
  );
  for (const s of STREAMS) await caughtUp(stream(s.name), db);
  // The keys are where the proxy's own ring puts them.
  const shardOf = (key: string): number => app.redis!.proxy.shards.shardOf(Buffer.from(key));
  for (const s of STREAMS)
    assert.equal(shardOf(`${prefix(s.name)}1`) === oomShard, s.name === 'oom', `shard of stream ${s.name}`);
});

after(async () => {
  for (const r of primaries ?? []) r.disconnect();
  await db?.end();
  await app?.stop();
  await Promise.all([redis?.stop(), pgc?.stop()]);
});

describe('change stream errors', () => {
  test('a Redis shard that refuses writes (-OOM): told once, nothing hangs, the other streams carry on, then it catches up', async () => {
    const oom = primaries[oomShard]!;
    await oom.config('SET', 'maxmemory', '1');
    try {
      await insert('oomt', 1000, 200);
      await insert('good', 1000, 200);
      await waitFor(
        'stream oom interrupted by the refusal, and retried',
        () => stream('oom')().errors >= 3 && stream('oom')().state !== 'streaming',
        30_000,
      );
      const r = await report('oom');
      assert.match(r.error ?? '', /refused the write: OOM command not allowed/);
      assert.ok(r.lagChanges !== null && r.lagChanges >= 200, `lagChanges ${r.lagChanges}`);
      assert.ok(r.errors >= 3);
      // Told once, not once per retry.
      const told = (await events()).filter(
        (e) => e.type === 'stream-interrupted' && e.detail.includes('OOM'),
      );
      assert.equal(told.length, 1, JSON.stringify(told));
      assert.match(told[0]!.detail, /^stream oom: .*OOM.*nothing is lost/);
      assert.ok((await metric('rwsplit_stream_errors_total', 'oom')) >= 3);
      assert.equal(await metric('rwsplit_stream_up', 'good'), 1);
      // The other streams carry on.
      await caughtUp(stream('good'), db);
      await assertMirrors('good', 'good');
      // Nothing hangs: a read of the stuck stream's key with a token is answered (TRYAGAIN after causalWaitMs).
      const via = new Redis({ port: app.redis!.address!.port });
      try {
        const { rows } = await db.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
        await via.call('RWSPLIT', 'TOKEN', rows[0]!.lsn);
        await assert.rejects(
          via.hget(`${prefix('oom')}1000`, 'name'),
          /TRYAGAIN stream oom: the read model is \d+ bytes behind/,
        );
        assert.equal(await via.hget(`${prefix('good')}1000`, 'name'), 'row 1000 ✓');
      } finally {
        via.disconnect();
      }
    } finally {
      await oom.config('SET', 'maxmemory', '0');
    }
    await caughtUp(stream('oom'), db);
    assert.equal(await assertMirrors('oom', 'oomt'), 300);
    const r = await report('oom');
    assert.equal(r.error, null);
    assert.equal(r.lagChanges, 0);
    assert.ok(
      (await events()).some((e) => e.type === 'stream-recovered' && e.detail.startsWith('stream oom ')),
    );
  });

  test('a slot dropped under the stream: told why, copied again, equal to its table', async () => {
    await db.query(
      "SELECT pg_terminate_backend(active_pid, 10000) FROM pg_replication_slots WHERE slot_name = 'rwsplit_slotted' AND active_pid IS NOT NULL",
    );
    // The stream reconnects within half a second: drop the slot as soon as it is free.
    await waitFor('the slot dropped', async () => {
      try {
        await db.query("SELECT pg_drop_replication_slot('rwsplit_slotted')");
        return true;
      } catch {
        return false;
      }
    });
    await insert('slotted', 1000, 50);
    await waitFor(
      'the stream copied again',
      async () =>
        (await events()).some(
          (e) =>
            e.type === 'stream-resynced' &&
            e.detail.startsWith('stream slotted:') &&
            e.detail.includes('its slot rwsplit_slotted does not exist'),
        ),
      30_000,
    );
    await caughtUp(stream('slotted'), db);
    await insert('slotted', 2000, 50);
    await caughtUp(stream('slotted'), db);
    assert.equal(await assertMirrors('slotted', 'slotted'), 200);
  });

  test('a publication dropped under the stream: told why, a new slot and a copy, equal to its table', async () => {
    await db.query('DROP PUBLICATION rwsplit_published');
    await insert('published', 1000, 50);
    await waitFor(
      'the stream copied again',
      async () =>
        (await events()).some(
          (e) =>
            e.type === 'stream-resynced' &&
            e.detail.startsWith('stream published:') &&
            /publication "rwsplit_published" does not exist/.test(e.detail),
        ),
      30_000,
    );
    assert.ok(
      (await events()).some(
        (e) =>
          e.type === 'stream-interrupted' &&
          /^stream published: .*publication "rwsplit_published" does not exist/.test(e.detail),
      ),
    );
    await caughtUp(stream('published'), db);
    await insert('published', 2000, 50);
    await caughtUp(stream('published'), db);
    assert.equal(await assertMirrors('published', 'published'), 200);
    const { rows } = await db.query("SELECT 1 FROM pg_publication WHERE pubname = 'rwsplit_published'");
    assert.equal(rows.length, 1, 'the publication was made again');
  });

  test('rows that can no longer be mapped to a key stop that stream with a clear error; the others carry on', async () => {
    // The key column leaves the replica identity: a delete would no longer name the key.
    await db.query('ALTER TABLE unmapped ADD COLUMN code text');
    await db.query("UPDATE unmapped SET code = 'c' || id");
    await db.query('ALTER TABLE unmapped ALTER COLUMN code SET NOT NULL');
    await db.query('CREATE UNIQUE INDEX unmapped_code ON unmapped (code)');
    await db.query('ALTER TABLE unmapped REPLICA IDENTITY USING INDEX unmapped_code');
    await db.query("INSERT INTO unmapped (id, name, code) VALUES (5000, 'after', 'c5000')");
    await waitFor('stream unmapped stopped', () => stream('unmapped')().state === 'error', 30_000);
    const r = await report('unmapped');
    assert.equal(r.state, 'error');
    assert.match(
      r.error ?? '',
      /table public\.unmapped changed: key column 'id' is no longer in its replica identity/,
    );
    assert.equal(r.errors, 1);
    const stopped = (await events()).filter((e) => e.type === 'stream-error');
    assert.equal(stopped.length, 1);
    assert.match(stopped[0]!.detail, /^stream unmapped: table public\.unmapped changed/);
    assert.equal(await metric('rwsplit_stream_up', 'unmapped'), 0);
    assert.equal(await metric('rwsplit_stream_errors_total', 'unmapped'), 1);
    // The others carry on.
    await insert('good', 5000, 20);
    await insert('slotted', 5000, 20);
    await caughtUp(stream('good'), db);
    await caughtUp(stream('slotted'), db);
    await assertMirrors('good', 'good');
    await assertMirrors('slotted', 'slotted');
    assert.deepEqual(
      (await reports()).map((x) => [x.name, x.state]),
      STREAMS.map((s) => [s.name, s.name === 'unmapped' ? 'error' : 'streaming']),
    );
    // Nothing hangs: a read of the stopped stream's key with a token gets TRYAGAIN, not silence.
    const via = new Redis({ port: app.redis!.address!.port });
    try {
      const { rows } = await db.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
      await via.call('RWSPLIT', 'TOKEN', rows[0]!.lsn);
      await assert.rejects(via.hget(`${prefix('unmapped')}5000`, 'name'), /TRYAGAIN stream unmapped/);
    } finally {
      via.disconnect();
    }
  });
});
