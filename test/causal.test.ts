/**
 * Read-your-writes through causal tokens, checked from outside: many sessions each write
 * their own row and read it back at once, while one replica's replay is paused part of the
 * time. Every read must see the session's last acknowledged write; where reads ran is taken
 * from inet_server_port().
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { pino } from 'pino';
import { Rwsplit } from '../src/app.js';
import { validateConfig } from '../src/config/load.js';
import { nodeStates, startStack, waitFor, type Stack } from './support/stack.js';

/** write-then-read pairs per protocol; `npm run test:ryw` runs 100,000 of each (about 2 minutes each here) */
const PAIRS = Number(process.env.RWSPLIT_RYW_PAIRS ?? 10_000);
const SESSIONS = 32;
/** pause/resume period of the lagging replica */
const PAUSE_MS = 1500;

interface Tally {
  pairs: number;
  stale: number;
  onReplica: number;
  onReplicaCaughtUp: number;
  caughtUp: number;
}

describe('read-your-writes with causal tokens', () => {
  let stack: Stack;
  let replicaPorts: Set<number>;

  before(async () => {
    stack = await startStack({
      postgres: { monitor: { intervalMs: 200, timeoutMs: 1000 }, pool: { size: 40 } },
    });
    const setup = await stack.client();
    await setup.query('CREATE TABLE ryw (id int PRIMARY KEY, v bigint NOT NULL)');
    await setup.query(`INSERT INTO ryw SELECT g, 0 FROM generate_series(1, ${SESSIONS + 100}) g`);
    replicaPorts = new Set(stack.cluster.nodes.filter((n) => n.id !== 'pg-primary').map((n) => n.port));
  });

  after(async () => {
    await stack?.stop();
  });

  /** Pauses replica1's replay on and off until `done` is set; `paused()` tells the phase. */
  async function lagger(): Promise<{ stop: () => Promise<void>; paused: () => boolean }> {
    const replica = await stack.direct('pg-replica1');
    let paused = false;
    let running = true;
    const loop = (async () => {
      while (running) {
        await replica.query('SELECT pg_wal_replay_pause()');
        paused = true;
        await new Promise((r) => setTimeout(r, PAUSE_MS));
        await replica.query('SELECT pg_wal_replay_resume()');
        // "Caught up" starts once the replica has replayed what it received.
        await new Promise((r) => setTimeout(r, 100));
        paused = false;
        await new Promise((r) => setTimeout(r, PAUSE_MS));
      }
    })();
    return {
      paused: () => paused,
      stop: async () => {
        running = false;
        await loop;
        await replica.query('SELECT pg_wal_replay_resume()');
      },
    };
  }

  // Simple protocol (literal SQL) and extended protocol (node-postgres with parameters:
  // Parse/Bind/Execute/Sync, what drivers and ORMs send) must route the same way.
  for (const protocol of ['simple', 'extended'] as const) {
    test(`${PAIRS} write-then-read pairs from ${SESSIONS} sessions, ${protocol} protocol: no stale read, reads on replicas`, async () => {
      const lag = await lagger();
      const tally: Tally = { pairs: 0, stale: 0, onReplica: 0, onReplicaCaughtUp: 0, caughtUp: 0 };
      const perSession = Math.ceil(PAIRS / SESSIONS);
      const started = Date.now();
      const read = `SELECT v, inet_server_port() AS port FROM ryw WHERE id = `;
      await Promise.all(
        Array.from({ length: SESSIONS }, async (_, s) => {
          const c = await stack.client();
          const id = s + 1;
          for (let v = 1; v <= perSession; v++) {
            if (protocol === 'simple') await c.query(`UPDATE ryw SET v = ${v} WHERE id = ${id}`);
            else await c.query('UPDATE ryw SET v = $1 WHERE id = $2', [v, id]);
            const caughtUp = !lag.paused();
            const r =
              protocol === 'simple'
                ? await c.query<{ v: string; port: number }>(`${read}${id}`)
                : await c.query<{ v: string; port: number }>(`${read}$1`, [id]);
            const row = r.rows[0]!;
            tally.pairs++;
            if (Number(row.v) < v) tally.stale++;
            const replica = replicaPorts.has(Number(row.port));
            if (replica) tally.onReplica++;
            if (caughtUp) {
              tally.caughtUp++;
              if (replica) tally.onReplicaCaughtUp++;
            }
          }
        }),
      );
      await lag.stop();
      const seconds = (Date.now() - started) / 1000;
      const metrics = await (await fetch(`http://127.0.0.1:${stack.httpPort}/metrics`)).text();
      const causal = metrics.split('\n').filter((l) => l.startsWith('rwsplit_pg_causal_reads_total'));
      console.log(
        `read-your-writes (${protocol}): ${tally.pairs} pairs in ${seconds.toFixed(1)} s, stale ${tally.stale}; ` +
          `reads on replicas ${pct(tally.onReplica, tally.pairs)} overall, ` +
          `${pct(tally.onReplicaCaughtUp, tally.caughtUp)} while replica1 replayed; ${causal.join('; ')}`,
      );
      assert.equal(tally.pairs, perSession * SESSIONS);
      assert.equal(tally.stale, 0, 'a session read older data than it had written');
      // Reads leave the primary only through replicas that replayed the token; while they
      // replay, nearly every read should (replica2 never pauses, replica1 half of the time).
      assert.ok(tally.caughtUp >= tally.pairs / 4, `too few reads while caught up: ${tally.caughtUp}`);
      assert.ok(
        tally.onReplicaCaughtUp >= 0.9 * tally.caughtUp,
        `only ${pct(tally.onReplicaCaughtUp, tally.caughtUp)} of the reads made while the replicas were caught up ran on a replica`,
      );
    });
  }

  test('a token handed to another connection, and to another rwsplit instance, gives no stale read', async () => {
    const other = await Rwsplit.start(
      validateConfig({
        workers: 1,
        listen: { postgres: { host: '127.0.0.1', port: 0 }, http: { host: '127.0.0.1', port: 0 } },
        postgres: {
          nodes: stack.cluster.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port })),
          monitor: { intervalMs: 200, timeoutMs: 1000 },
        },
      }),
      { log: pino({ level: 'silent' }) },
    );
    const lag = await lagger();
    const writer = await stack.client();
    const sameProxy = await stack.client();
    const otherProxy = new pg.Client({
      host: '127.0.0.1',
      port: other.pgAddress!.port,
      user: 'postgres',
      database: 'postgres',
    });
    await otherProxy.connect();
    let stale = 0;
    let replicaReads = 0;
    const rounds = 1500;
    try {
      for (let v = 1; v <= rounds; v++) {
        await writer.query(`UPDATE ryw SET v = ${v} WHERE id = ${SESSIONS + 1}`);
        const token = (await writer.query<{ 'rwsplit.causal_token': string }>('SHOW rwsplit.causal_token'))
          .rows[0]!['rwsplit.causal_token'];
        assert.match(token, /^v1:default@[0-9A-F]+\/[0-9A-F]+$/);
        const reader = v % 2 === 0 ? sameProxy : otherProxy;
        await reader.query(`SET rwsplit.causal_token = '${token}'`);
        const r = await reader.query<{ v: string; port: number }>(
          `SELECT v, inet_server_port() AS port FROM ryw WHERE id = ${SESSIONS + 1}`,
        );
        if (Number(r.rows[0]!.v) < v) stale++;
        if (replicaPorts.has(Number(r.rows[0]!.port))) replicaReads++;
      }
    } finally {
      await lag.stop();
      await otherProxy.end();
      await other.stop();
    }
    console.log(`token handoff: ${rounds} rounds, stale ${stale}, on replicas ${pct(replicaReads, rounds)}`);
    assert.equal(stale, 0);
    assert.ok(replicaReads > 0, 'handed-over tokens never let a replica serve');
  });

  test('SHOW/SET rwsplit settings: consistency levels, bad values, unknown settings', async () => {
    const c = await stack.client();
    const show = async (name: string): Promise<string> =>
      Object.values((await c.query(`SHOW rwsplit.${name}`)).rows[0] as Record<string, string>)[0]!;
    assert.equal(await show('consistency'), 'read-your-writes');
    assert.equal(await show('causal_token'), '', 'no token before the first write');
    await c.query("SET rwsplit.consistency = 'strong'");
    assert.equal(await show('consistency'), 'strong');
    for (let i = 0; i < 10; i++) {
      const r = await c.query<{ port: number }>('SELECT inet_server_port() AS port');
      assert.equal(
        stack.nodeByPort.get(Number(r.rows[0]!.port)),
        'pg-primary',
        'strong reads go to the primary',
      );
    }
    await c.query('RESET rwsplit.consistency');
    assert.equal(await show('consistency'), 'read-your-writes');
    await assert.rejects(c.query("SET rwsplit.consistency = 'sometimes'"), (err: pg.DatabaseError) => {
      assert.equal(err.code, '22023');
      assert.match(err.message, /rwsplit\.consistency/);
      return true;
    });
    await assert.rejects(c.query("SET rwsplit.causal_token = 'garbage'"), (err: pg.DatabaseError) => {
      assert.equal(err.code, '22023');
      assert.match(err.message, /invalid causal token/);
      return true;
    });
    await assert.rejects(c.query('SHOW rwsplit.nonsense'), (err: pg.DatabaseError) => {
      assert.equal(err.code, '42704');
      return true;
    });
    // The session still works, unpinned: a read goes to a replica.
    const r = await c.query<{ port: number }>('SELECT inet_server_port() AS port');
    assert.ok(replicaPorts.has(Number(r.rows[0]!.port)));
    // Inside a transaction the settings answer with the transaction's status.
    await c.query('BEGIN');
    await c.query('UPDATE ryw SET v = v WHERE id = 1');
    assert.equal(await show('consistency'), 'read-your-writes');
    await c.query('COMMIT');
    assert.match(await show('causal_token'), /^v1:default@/);
  });

  test('eventual consistency reads from a replica past the staleness bound', async () => {
    const replica = await stack.direct('pg-replica1');
    const c = await stack.client();
    await c.query("SET rwsplit.consistency = 'eventual'");
    await replica.query('SELECT pg_wal_replay_pause()');
    try {
      const writer = await stack.client();
      // ~28 MB of WAL: past the default bound of 16 MiB while replica1 replays nothing.
      await writer.query(
        "CREATE TABLE filler AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 120000) g",
      );
      await waitFor('replica1 lagging', async () =>
        (await nodeStates(stack.httpPort)).some((n) => n.id === 'pg-replica1' && n.state === 'lagging'),
      );
      const seen = new Set<string>();
      for (let i = 0; i < 20; i++) {
        const r = await c.query<{ port: number }>('SELECT inet_server_port() AS port');
        seen.add(stack.nodeByPort.get(Number(r.rows[0]!.port))!);
      }
      assert.ok(
        seen.has('pg-replica1'),
        `eventual reads should still use the lagging replica, saw ${[...seen]}`,
      );
      const bounded = await stack.client();
      for (let i = 0; i < 20; i++) {
        const r = await bounded.query<{ port: number }>('SELECT inet_server_port() AS port');
        assert.notEqual(stack.nodeByPort.get(Number(r.rows[0]!.port)), 'pg-replica1');
      }
    } finally {
      await replica.query('SELECT pg_wal_replay_resume()');
    }
  });
});

function pct(n: number, of: number): string {
  return of === 0 ? 'n/a' : `${((100 * n) / of).toFixed(1)}%`;
}
