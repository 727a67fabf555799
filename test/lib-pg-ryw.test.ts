import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type pg from 'pg';
import { createPool, type RwsplitPool } from '../src/lib/pg/index.js';
import { startStack, type Stack } from './support/stack.js';

/**
 * Read-your-writes through `rwsplit/pg` at volume: write-then-read pairs from 16 loops on a
 * primary and two streaming replicas. While the replicas are caught up, at least 90% of the
 * reads must still run on a replica; then one replica's replay is paused half of the time
 * (`pg_wal_replay_pause()`), and no read may miss its own write.
 */

/** write-then-read pairs in all; `npm run test:lib-ryw` runs 20,000 */
const PAIRS = Number(process.env.RWSPLIT_LIB_RYW_PAIRS ?? 2_000);
const LOOPS = 16;

describe('rwsplit/pg read-your-writes at volume', () => {
  let stack: Stack;
  let pool: RwsplitPool;
  const served = (res: pg.QueryResult): string => (res as unknown as { node: string }).node;

  before(async () => {
    stack = await startStack();
    pool = createPool({
      nodes: stack.cluster.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port })),
      user: 'postgres',
      database: 'postgres',
      max: 4,
      monitor: { intervalMs: 100 },
    });
    await pool.query('CREATE TABLE pairs (id bigserial PRIMARY KEY, loop int, n int)');
    await stack.cluster.waitForReplication();
  });
  after(async () => {
    await pool?.end().catch(() => undefined);
    await stack?.stop();
  });

  /** `pairs` INSERT-then-SELECT pairs over LOOPS loops, half with parameters (extended protocol). */
  async function run(
    pairs: number,
    out: { pairs: number; stale: string[]; onReplica: number },
  ): Promise<void> {
    const primary = stack.cluster.primary.id;
    await Promise.all(
      Array.from({ length: LOOPS }, async (_, loop) => {
        for (let i = 0; i < Math.ceil(pairs / LOOPS); i++) {
          const extended = i % 2 === 0;
          const ins = extended
            ? await pool.query('INSERT INTO pairs (loop, n) VALUES ($1, $2) RETURNING id', [loop, i])
            : await pool.query(`INSERT INTO pairs (loop, n) VALUES (${loop}, ${i}) RETURNING id`);
          const id = Number(ins.rows[0]!.id);
          const read = extended
            ? await pool.query('SELECT n FROM pairs WHERE id = $1', [id])
            : await pool.query(`SELECT n FROM pairs WHERE id = ${id}`);
          out.pairs++;
          if (read.rows.length !== 1) out.stale.push(`loop ${loop}: row ${id} missing`);
          if (served(read) !== primary) out.onReplica++;
        }
      }),
    );
  }

  test(`${PAIRS} write-then-read pairs: >= 90% of reads on replicas while caught up, 0 stale reads with a replica's replay paused half of the time`, async () => {
    const caughtUp = { pairs: 0, stale: [] as string[], onReplica: 0 };
    const metricsBefore = await pool.metrics.metrics();
    await run(PAIRS / 2, caughtUp);
    const metricsAfter = await pool.metrics.metrics();
    // The pool's metrics (the proxy's names) count what the results say.
    const replicaIds = new Set(stack.cluster.replicas.map((r) => r.id));
    const replicaReads = (text: string): number => {
      let sum = 0;
      for (const m of text.matchAll(
        /^rwsplit_pg_queries_by_kind_total\{node="([^"]+)",kind="read"\} (\d+)$/gm,
      ))
        if (replicaIds.has(m[1]!)) sum += Number(m[2]);
      return sum;
    };
    assert.equal(replicaReads(metricsAfter) - replicaReads(metricsBefore), caughtUp.onReplica);
    assert.match(metricsAfter, /^rwsplit_pg_route_decisions_total\{reason="write"\} \d+$/m);
    const share = caughtUp.onReplica / caughtUp.pairs;
    console.log(
      `rwsplit/pg read-your-writes: ${(share * 100).toFixed(1)}% of ${caughtUp.pairs} reads on replicas while caught up`,
    );
    assert.ok(share >= 0.9, `>= 90% of reads on replicas (${(share * 100).toFixed(1)}%)`);

    const paused = await stack.direct(stack.cluster.replicas[0]!.id);
    let stop = false;
    const toggler = (async () => {
      while (!stop) {
        await paused.query('SELECT pg_wal_replay_pause()');
        await new Promise((r) => setTimeout(r, 300));
        await paused.query('SELECT pg_wal_replay_resume()');
        await new Promise((r) => setTimeout(r, 300));
      }
    })();
    const lagging = { pairs: 0, stale: [] as string[], onReplica: 0 };
    try {
      await run(PAIRS / 2, lagging);
    } finally {
      stop = true;
      await toggler;
      await paused.query('SELECT pg_wal_replay_resume()');
    }
    const all = caughtUp.pairs + lagging.pairs;
    const stale = [...caughtUp.stale, ...lagging.stale];
    console.log(
      `rwsplit/pg read-your-writes: ${all} pairs, ${stale.length} stale reads; ${((lagging.onReplica / lagging.pairs) * 100).toFixed(1)}% on replicas with replay paused half of the time`,
    );
    assert.ok(all >= PAIRS);
    assert.deepEqual(stale.slice(0, 10), []);
  });
});
