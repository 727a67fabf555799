import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { pino } from 'pino';
import { PgCluster, type PgNodeHandle } from '../src/cluster/pg-cluster.js';
import {
  FaultInjectedError,
  FaultPoints,
  PgDecisionStore,
  TwoPhaseCoordinator,
  TwoPhaseError,
  TwoPhaseRecovery,
  type FaultProbabilities,
  type Participant,
  type RecoveryShard,
} from '../src/pg/sharding/twopc/index.js';

/**
 * Two-phase commit against real servers: two one-node shards, participants over plain
 * node-postgres clients (BEGIN; UPDATE …; then the coordinator), the decision log on shard
 * s0, recovery finishing what a "crashed" coordinator (a throwing fault point) left behind.
 * The accounts live in database `bank`, the log in `postgres`: recovery must finish each
 * prepared transaction from the database it was prepared in.
 */
const DECISION_TIMEOUT_MS = 1000;
/** accounts per shard */
const ACCOUNTS = 50;
const SHARDS = ['s0', 's1'] as const;
type ShardName = (typeof SHARDS)[number];
const log = pino({ level: process.env.RWSPLIT_TEST_LOG ?? 'silent' });

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await delay(100);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

describe('two-phase commit across two PostgreSQL shards', () => {
  const clusters = new Map<ShardName, PgCluster>();
  const open = new Set<pg.Client>();
  let store: PgDecisionStore;

  const primary = (shard: ShardName): PgNodeHandle => clusters.get(shard)!.primary;
  const connect = async (shard: ShardName, database = 'bank'): Promise<pg.Client> => {
    const c = new pg.Client({ host: '127.0.0.1', port: primary(shard).port, user: 'postgres', database });
    c.on('error', () => undefined);
    await c.connect();
    open.add(c);
    return c;
  };
  const close = async (c: pg.Client): Promise<void> => {
    open.delete(c);
    await c.end().catch(() => undefined);
  };
  const query = async <R extends pg.QueryResultRow>(
    shard: ShardName,
    sql: string,
    database = 'bank',
  ): Promise<R[]> => {
    const c = await connect(shard, database);
    try {
      return (await c.query<R>(sql)).rows;
    } finally {
      await close(c);
    }
  };
  const participant = (shard: ShardName, c: pg.Client): Participant => ({
    shard,
    exec: async (sql) => (await c.query(sql)).command,
  });
  const recoveryShards = (): RecoveryShard[] =>
    SHARDS.map((shard) => ({
      shard,
      connect: (database?: string) => connect(shard, database ?? 'postgres'),
    }));
  const newRecovery = (): TwoPhaseRecovery =>
    new TwoPhaseRecovery({
      store,
      shards: recoveryShards,
      decisionTimeoutMs: DECISION_TIMEOUT_MS,
      recoveryIntervalMs: 200,
      log,
    });
  const coordinator = (faults: FaultProbabilities | null = null, seed?: number): TwoPhaseCoordinator =>
    new TwoPhaseCoordinator({
      store,
      instanceId: 'it',
      faults: faults === null ? null : FaultPoints.throwing(faults, seed),
      decisionTimeoutMs: DECISION_TIMEOUT_MS,
      log,
    });

  const preparedGids = async (): Promise<string[]> => {
    const per = await Promise.all(
      SHARDS.map((s) =>
        query<{ gid: string }>(s, "SELECT gid FROM pg_prepared_xacts WHERE gid LIKE 'rwsplit:%'"),
      ),
    );
    return per.flat().map((r) => r.gid);
  };
  const balance = async (shard: ShardName, id: number): Promise<number> =>
    Number((await query<{ b: string }>(shard, `SELECT balance AS b FROM accounts WHERE id = ${id}`))[0]?.b);
  const total = async (): Promise<number> => {
    const per = await Promise.all(
      SHARDS.map((s) => query<{ t: string }>(s, 'SELECT sum(balance) AS t FROM accounts')),
    );
    return per.reduce((sum, rows) => sum + Number(rows[0]?.t), 0);
  };
  /** Recovery until no prepared transaction of ours is left (undecided ones wait for the timeout). */
  const recoverAll = async (): Promise<void> => {
    const recovery = newRecovery();
    await waitUntil('recovery to finish every prepared transaction', async () => {
      await recovery.runOnce();
      return (await preparedGids()).length === 0;
    });
  };

  /** BEGIN on both shards, move `amount` from account `from` on s0 to account `to` on s1. */
  const openTransfer = async (
    amount: number,
    from = 1,
    to = 1,
  ): Promise<{ clients: pg.Client[]; parts: Participant[] }> => {
    const [c0, c1] = [await connect('s0'), await connect('s1')];
    await c0.query('BEGIN');
    await c0.query(`UPDATE accounts SET balance = balance - ${amount} WHERE id = ${from}`);
    await c1.query('BEGIN');
    await c1.query(`UPDATE accounts SET balance = balance + ${amount} WHERE id = ${to}`);
    return { clients: [c0, c1], parts: [participant('s0', c0), participant('s1', c1)] };
  };
  /** The coordinator "died": its connections close, as the kernel would close them. */
  const die = async (clients: pg.Client[]): Promise<void> => {
    await Promise.all(clients.map(close));
  };

  before(async () => {
    for (const shard of SHARDS) {
      const cluster = await PgCluster.start({ replicas: 0, settings: { max_prepared_transactions: '100' } });
      clusters.set(shard, cluster);
      await query(shard, 'CREATE DATABASE bank', 'postgres');
      await query(
        shard,
        `CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0));
         INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, ${ACCOUNTS}) g;
         CREATE TABLE uniq (k int, CONSTRAINT uniq_k UNIQUE (k) DEFERRABLE INITIALLY DEFERRED);`,
      );
    }
    store = new PgDecisionStore({ connect: () => connect('s0', 'postgres') });
  });

  after(async () => {
    await store?.close();
    await Promise.all([...open].map(close));
    await Promise.all([...clusters.values()].map((c) => c.stop()));
  });

  test('two stores creating the log table at once both succeed', async () => {
    const other = new PgDecisionStore({ connect: () => connect('s0', 'postgres') });
    await Promise.all([store.ensureSchema(), other.ensureSchema()]);
    await other.close();
    const rows = await query(
      SHARDS[0],
      "SELECT 1 FROM pg_tables WHERE tablename = 'rwsplit_2pc_log'",
      'postgres',
    );
    assert.equal(rows.length, 1);
  });

  test('a transfer across both shards commits on both', async () => {
    const before0 = await balance('s0', 2);
    const before1 = await balance('s1', 2);
    const t = await openTransfer(10, 2, 2);
    const result = await coordinator().commit(t.parts);
    assert.equal(result.outcome, 'committed');
    assert.deepEqual([await balance('s0', 2), await balance('s1', 2)], [before0 - 10, before1 + 10]);
    assert.equal(await store.lookup(result.gid), 'commit');
    assert.deepEqual(await preparedGids(), []);
    await die(t.clients); // the connections stay usable; closed here only to tidy up
  });

  test('a deferred constraint violated at PREPARE rolls both shards back with its SQLSTATE', async () => {
    await query('s1', 'INSERT INTO uniq VALUES (1)');
    const start = await total();
    const t = await openTransfer(5);
    await t.clients[1]!.query('INSERT INTO uniq VALUES (1)'); // checked only at PREPARE
    await assert.rejects(coordinator().commit(t.parts), (e: unknown) => {
      assert.ok(e instanceof TwoPhaseError);
      assert.deepEqual([e.code, e.sqlstate], ['TWOPC_ROLLED_BACK', '23505']);
      assert.match(e.message, /shard s1/);
      return true;
    });
    assert.equal(await total(), start);
    assert.deepEqual(await preparedGids(), []);
    // The connections are usable again: PREPARE's failure ended the transaction.
    assert.equal((await t.clients[0]!.query('SELECT 1 AS one')).rows[0].one, 1);
    await die(t.clients);
  });

  test('a participant whose backend is killed before PREPARE: both rolled back', async () => {
    const start = await total();
    const t = await openTransfer(5);
    const pid = (await t.clients[1]!.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
    await query('s1', `SELECT pg_terminate_backend(${pid})`);
    await assert.rejects(coordinator().commit(t.parts), (e: unknown) => {
      assert.ok(e instanceof TwoPhaseError && e.code === 'TWOPC_ROLLED_BACK', String(e));
      return true;
    });
    assert.equal(await total(), start);
    assert.deepEqual(await preparedGids(), []);
    await die(t.clients);
  });

  test('crash after PREPARE: nothing decided, recovery rolls back once decisionTimeoutMs has passed', async () => {
    const start = await total();
    const t = await openTransfer(7);
    await assert.rejects(coordinator({ '2pc-after-prepare': 1 }).commit(t.parts), FaultInjectedError);
    await die(t.clients);
    await waitUntil('both participants prepared', async () => (await preparedGids()).length === 2);
    const [gid] = await preparedGids();

    const early = await newRecovery().runOnce();
    assert.equal(early.waiting.length, 2, 'younger than the timeout: left alone');
    assert.equal((await preparedGids()).length, 2);

    await recoverAll();
    assert.equal(await store.lookup(gid!), 'abort');
    assert.equal(await total(), start);
    // A coordinator that wakes up late cannot commit it any more: first writer wins.
    assert.equal(await store.decide(gid!, 'commit', ['s0', 's1']), 'abort');
  });

  test('crash after the decision: recovery commits on both shards at once', async () => {
    const [b0, b1] = [await balance('s0', 3), await balance('s1', 3)];
    const t = await openTransfer(3, 3, 3);
    await assert.rejects(coordinator({ '2pc-after-decision': 1 }).commit(t.parts), FaultInjectedError);
    await die(t.clients);
    const report = await newRecovery().runOnce();
    assert.equal(report.committed.length, 2, JSON.stringify(report));
    assert.deepEqual([await balance('s0', 3), await balance('s1', 3)], [b0 - 3, b1 + 3]);
    assert.deepEqual(await preparedGids(), []);
  });

  test('crash between the commits: recovery commits the rest', async () => {
    const [b0, b1] = [await balance('s0', 4), await balance('s1', 4)];
    const t = await openTransfer(4, 4, 4);
    await assert.rejects(coordinator({ '2pc-between-commits': 1 }).commit(t.parts), FaultInjectedError);
    await die(t.clients);
    assert.equal(await balance('s0', 4), b0 - 4, 'the first participant is committed');
    assert.equal((await preparedGids()).length, 1, 'the second is still prepared');
    const report = await newRecovery().runOnce();
    assert.deepEqual(
      report.committed.map((c) => c.shard),
      ['s1'],
    );
    assert.equal(await balance('s1', 4), b1 + 4);
  });

  test('two recoveries running at once on the same in-doubt transactions resolve them alike', async () => {
    const start = await total();
    const expected = new Map<string, 'commit' | 'abort'>();
    for (let i = 0; i < 6; i++) {
      const point = i % 2 === 0 ? '2pc-after-prepare' : '2pc-after-decision';
      const t = await openTransfer(1, 5 + i, 5 + i);
      const gidsBefore = new Set(await preparedGids());
      await assert.rejects(coordinator({ [point]: 1 }).commit(t.parts), FaultInjectedError);
      await die(t.clients);
      await waitUntil(
        'prepared',
        async () => (await preparedGids()).filter((g) => !gidsBefore.has(g)).length === 2,
      );
      const gid = (await preparedGids()).find((g) => !gidsBefore.has(g))!;
      expected.set(gid, point === '2pc-after-prepare' ? 'abort' : 'commit');
    }
    await delay(DECISION_TIMEOUT_MS + 100);
    const [r1, r2] = await Promise.all([newRecovery().runOnce(), newRecovery().runOnce()]);
    assert.deepEqual([...r1.errors, ...r2.errors], []);
    const finished = [...r1.committed, ...r2.committed, ...r1.rolledBack, ...r2.rolledBack];
    assert.equal(finished.length, 12, 'each gid finished once on each shard');
    for (const [gid, decision] of expected) {
      assert.equal(await store.lookup(gid), decision, gid);
      const done = (
        decision === 'commit' ? [...r1.committed, ...r2.committed] : [...r1.rolledBack, ...r2.rolledBack]
      )
        .filter((f) => f.gid === gid)
        .map((f) => f.shard)
        .sort();
      assert.deepEqual(done, ['s0', 's1'], `${gid} ${decision} on both shards`);
    }
    assert.deepEqual(await preparedGids(), []);
    assert.equal(await total(), start);
  });

  test("a participant's primary killed -9 after the decision is committed by recovery once back", async () => {
    const [b0, b1] = [await balance('s0', 15), await balance('s1', 15)];
    const t = await openTransfer(6, 15, 15);
    const killing: Participant = {
      shard: 's1',
      exec: async (sql) => {
        if (sql.startsWith('COMMIT PREPARED')) await clusters.get('s1')!.kill(primary('s1').id);
        return t.parts[1]!.exec(sql);
      },
    };
    const result = await coordinator().commit([t.parts[0]!, killing]);
    assert.deepEqual([result.outcome, result.pending], ['committed-pending', ['s1']]);
    await die(t.clients);

    const down = await newRecovery().runOnce();
    assert.deepEqual(down.unreachable, ['s1']);
    await clusters.get('s1')!.restart(primary('s1').id);
    const back = await newRecovery().runOnce();
    assert.deepEqual(back.committed, [{ shard: 's1', gid: result.gid }]);
    assert.deepEqual([await balance('s0', 15), await balance('s1', 15)], [b0 - 6, b1 + 6]);
    assert.deepEqual(await preparedGids(), []);
  });

  test('bank transfers: concurrent, mostly across shards, crashing at random points, sum unchanged', async () => {
    const start = await total();
    const recovery = newRecovery();
    const faults = FaultPoints.throwing(
      { '2pc-after-prepare': 0.05, '2pc-after-decision': 0.05, '2pc-between-commits': 0.05 },
      7,
    );
    const coord = new TwoPhaseCoordinator({
      store,
      instanceId: 'bank',
      faults,
      decisionTimeoutMs: DECISION_TIMEOUT_MS,
      log,
    });
    const outcomes = { committed: 0, crashed: 0, failed: 0, local: 0 };
    const rng = (
      (seed) => () =>
        (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31
    )(99);

    const transfer = async (): Promise<void> => {
      const account = (shard: ShardName): [ShardName, number] => [shard, 1 + Math.floor(rng() * ACCOUNTS)];
      const fromShard = SHARDS[Math.floor(rng() * 2)]!;
      const crosses = rng() < 0.8; // most transfers cross shards
      const from = account(fromShard);
      const to = account(crosses ? SHARDS[1 - SHARDS.indexOf(fromShard)]! : fromShard);
      if (from[0] === to[0] && from[1] === to[1]) return;
      // One global lock order (shard, then id): no deadlock across shards, which no server could see.
      const order = [from, to].sort((x, y) => x[0].localeCompare(y[0]) || x[1] - y[1]);
      const amount = 1 + Math.floor(rng() * 20);
      const byShard = new Map<ShardName, pg.Client>();
      try {
        for (const [shard, id] of order) {
          let c = byShard.get(shard);
          if (c === undefined) {
            c = await connect(shard);
            byShard.set(shard, c);
            await c.query('BEGIN');
          }
          const delta = shard === from[0] && id === from[1] ? -amount : amount;
          await c.query(`UPDATE accounts SET balance = balance + ${delta} WHERE id = ${id}`);
        }
        if (byShard.size === 1) {
          await [...byShard.values()][0]!.query('COMMIT'); // one shard: an ordinary commit, no 2PC
          outcomes.local++;
        } else {
          await coord.commit([...byShard].map(([shard, c]) => participant(shard, c)));
          outcomes.committed++;
        }
      } catch (err) {
        if (err instanceof FaultInjectedError) outcomes.crashed++;
        else outcomes.failed++; // e.g. the CHECK on a balance: the UPDATE failed, the transaction is dropped
      } finally {
        await Promise.all([...byShard.values()].map(close));
      }
    };

    recovery.start();
    try {
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          for (let i = 0; i < 40; i++) await transfer();
        }),
      );
    } finally {
      await recovery.stop();
    }
    await recoverAll();
    const seen = JSON.stringify({ outcomes, fired: faults.fired });
    assert.ok(outcomes.committed > 150, seen);
    assert.ok(
      Object.values(faults.fired).every((n) => n > 0),
      `every fault point fired: ${seen}`,
    );
    assert.deepEqual(await preparedGids(), []);
    assert.equal(await total(), start, `sum of balances after ${JSON.stringify(outcomes)}`);
  });
});
