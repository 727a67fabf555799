import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { PgCluster } from '../src/cluster/pg-cluster.js';
import { createPool, type RwsplitPool } from '../src/lib/pg/index.js';
import { waitFor } from './support/stack.js';

/**
 * The library under real failures, no proxy involved: kill -9 of a replica while 8 loops
 * read (none of their reads fails: the node leaves rotation and the reads it was serving run
 * again elsewhere), then kill -9 of the primary and pg_promote() of a replica by hand (writes
 * follow the promoted node; a write waiting meanwhile is served there).
 */
describe('rwsplit/pg: a dead replica leaves rotation, a failover is followed', () => {
  let cluster: PgCluster;
  let pool: RwsplitPool;
  const served = (res: pg.QueryResult): string => (res as unknown as { node: string }).node;

  before(async () => {
    cluster = await PgCluster.start({ replicas: 2 });
    pool = createPool({
      nodes: cluster.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port })),
      user: 'postgres',
      database: 'postgres',
      monitor: { intervalMs: 100, timeoutMs: 1000 },
      failover: { bufferMs: 20_000 },
    });
    await pool.query('CREATE TABLE events (id serial PRIMARY KEY, note text)');
    await cluster.waitForReplication();
  });
  after(async () => {
    await pool?.end().catch(() => undefined);
    await cluster?.stop();
  });

  test('kill -9 of a replica under read load: 0 failed reads, the node leaves rotation', async () => {
    const victim = cluster.replicas[0]!.id;
    const survivor = cluster.replicas[1]!.id;
    let killed = false;
    let failed = 0;
    let reads = 0;
    const afterKill = new Map<string, number>();
    const errors: string[] = [];
    // 8 loops of reads, simple and extended alternately, before, during and after the kill.
    const loops = Array.from({ length: 8 }, async (_, loop) => {
      for (let i = 0; i < 150; i++) {
        try {
          const r =
            i % 2 === 0
              ? await pool.query('SELECT count(*) AS n FROM events')
              : await pool.query('SELECT count(*) AS n FROM events WHERE id > $1', [loop]);
          reads++;
          if (killed) afterKill.set(served(r), (afterKill.get(served(r)) ?? 0) + 1);
        } catch (err) {
          failed++;
          errors.push((err as Error).message);
        }
        if (loop === 0 && i === 30) {
          await cluster.kill(victim);
          killed = true;
        }
      }
    });
    await Promise.all(loops);
    assert.deepEqual(errors, [], 'no read failed');
    assert.equal(failed, 0);
    assert.equal(reads, 1200);
    await waitFor(`${victim} down`, () => pool.nodes().find((n) => n.id === victim)?.state === 'down');
    const later = new Set<string>();
    for (let i = 0; i < 20; i++) later.add(served(await pool.query('SELECT 1')));
    assert.deepEqual([...later], [survivor], 'reads go to the surviving replica only');
    assert.ok((afterKill.get(survivor) ?? 0) > 0, 'the survivor served reads after the kill');
  });

  test('kill -9 of the primary and pg_promote() of the replica left: writes follow it', async () => {
    const old = cluster.primary.id;
    const promoted = cluster.replicas[1]!;
    const before = await pool.query("INSERT INTO events (note) VALUES ('before') RETURNING id");
    assert.equal(served(before), old);
    await cluster.kill(old);
    // A write issued while there is no primary waits (failover.bufferMs) rather than failing.
    const waiting = pool.query(
      "INSERT INTO events (note) VALUES ('during') RETURNING inet_server_port() AS port",
    );
    const direct = new pg.Client({
      host: promoted.host,
      port: promoted.port,
      user: 'postgres',
      database: 'postgres',
    });
    await direct.connect();
    try {
      await direct.query('SELECT pg_promote()');
    } finally {
      await direct.end();
    }
    const during = await waiting;
    assert.equal(Number(during.rows[0]!.port), promoted.port, 'the waiting write ran on the promoted node');
    assert.equal(served(during), promoted.id);
    const next = await pool.query("INSERT INTO events (note) VALUES ('after') RETURNING id");
    assert.equal(served(next), promoted.id);
    const read = await pool.query(
      "SELECT note FROM events WHERE note IN ('before', 'during', 'after') ORDER BY id",
    );
    assert.deepEqual(
      read.rows.map((r) => r.note as string),
      ['before', 'during', 'after'],
      'the writes are read back (read-your-writes after the failover)',
    );
    const roles = pool.nodes();
    assert.equal(roles.find((n) => n.id === promoted.id)?.role, 'primary');
    assert.equal(roles.find((n) => n.id === old)?.state, 'down');
  });
});
