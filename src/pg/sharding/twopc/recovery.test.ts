import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Decision } from './decision-log.js';
import { newGid } from './gid.js';
import { MemoryDecisionStore } from './memory-store.js';
import { TwoPhaseRecovery, type RecoveryShard } from './recovery.js';
import type { SqlClient } from './sql-client.js';

function dbError(code: string): Error {
  return Object.assign(new Error(`server error ${code}`), { code });
}

/** A shard primary with prepared transactions, answering recovery's statements like the server. */
class FakeShard implements RecoveryShard {
  readonly prepared = new Map<string, { database: string; ageMs: number }>();
  readonly finished: string[] = [];
  /** gids whose COMMIT/ROLLBACK PREPARED answers "is busy" (55000) */
  readonly busy = new Set<string>();
  down = false;

  constructor(readonly shard: string) {}

  prepare(gid: string, ageMs: number, database = 'postgres'): this {
    this.prepared.set(gid, { database, ageMs });
    return this;
  }

  async connect(database = 'postgres'): Promise<SqlClient> {
    if (this.down) throw new Error('connect ECONNREFUSED');
    return {
      query: async (text: string) => this.answer(database, text),
      end: async () => undefined,
      on: () => undefined,
    };
  }

  private answer(database: string, text: string): { rows: unknown[] } {
    if (text.includes('pg_prepared_xacts')) {
      const rows = [...this.prepared].map(([gid, p]) => ({
        gid,
        database: p.database,
        here: database,
        age_ms: p.ageMs,
      }));
      return { rows };
    }
    const m = /^(COMMIT|ROLLBACK) PREPARED '(.*)'$/.exec(text);
    if (m === null) throw new Error(`unexpected statement ${text}`);
    const [, verb, gid = ''] = m;
    const p = this.prepared.get(gid);
    if (p === undefined) throw dbError('42704');
    if (this.busy.has(gid)) throw dbError('55000');
    if (p.database !== database) throw dbError('0A000'); // "belongs to another database"
    this.prepared.delete(gid);
    this.finished.push(`${database}: ${verb} ${gid}`);
    return { rows: [] };
  }
}

function recovery(
  store: MemoryDecisionStore,
  shards: FakeShard[],
  decisionTimeoutMs = 1000,
): TwoPhaseRecovery {
  return new TwoPhaseRecovery({ store, shards: () => shards, decisionTimeoutMs, abortRetentionMs: 5000 });
}

describe('TwoPhaseRecovery', () => {
  test('finishes each prepared gid from its decision and leaves young undecided ones alone', async () => {
    const store = new MemoryDecisionStore();
    const [committed, aborted, young] = [newGid('t'), newGid('t'), newGid('t')];
    await store.decide(committed, 'commit', ['a', 'b']);
    await store.decide(aborted, 'abort', ['a', 'b']);
    const a = new FakeShard('a').prepare(committed, 10).prepare(aborted, 10).prepare(young, 999);
    const b = new FakeShard('b').prepare(committed, 10).prepare(young, 999);
    const report = await recovery(store, [a, b]).runOnce();
    assert.deepEqual(
      a.finished.sort(),
      [`postgres: COMMIT ${committed}`, `postgres: ROLLBACK ${aborted}`].sort(),
    );
    assert.deepEqual(b.finished, [`postgres: COMMIT ${committed}`]);
    assert.deepEqual([...a.prepared.keys(), ...b.prepared.keys()], [young, young]);
    assert.equal(report.waiting.length, 2);
    assert.deepEqual(report.decided, []);
  });

  test("an undecided gid older than decisionTimeoutMs gets 'abort' recorded, then rolled back everywhere", async () => {
    const store = new MemoryDecisionStore();
    const gid = newGid('t');
    const a = new FakeShard('a').prepare(gid, 1500);
    const b = new FakeShard('b').prepare(gid, 900); // younger here: the gid's decision still applies
    const report = await recovery(store, [a, b]).runOnce();
    assert.equal(await store.lookup(gid), 'abort');
    assert.deepEqual(report.decided, [gid]);
    assert.deepEqual(
      [a.finished, b.finished],
      [[`postgres: ROLLBACK ${gid}`], [`postgres: ROLLBACK ${gid}`]],
    );
  });

  test("a coordinator's 'commit' recorded just before recovery's 'abort' wins", async () => {
    const store = new MemoryDecisionStore();
    const gid = newGid('t');
    // The lookup sees no decision; the coordinator's insert lands before recovery's.
    const racing = Object.assign(Object.create(store) as MemoryDecisionStore, {
      lookup: async () => null,
      decide: async (g: string, d: Decision, s: readonly string[]) => {
        await store.decide(g, 'commit', ['a']);
        return store.decide(g, d, s);
      },
    });
    const a = new FakeShard('a').prepare(gid, 5000);
    await recovery(racing, [a]).runOnce();
    assert.deepEqual(a.finished, [`postgres: COMMIT ${gid}`]);
  });

  test('a transaction is finished from the database it was prepared in', async () => {
    const store = new MemoryDecisionStore();
    const gid = newGid('t');
    await store.decide(gid, 'commit', ['a']);
    const a = new FakeShard('a').prepare(gid, 10, 'bank');
    const report = await recovery(store, [a]).runOnce();
    assert.deepEqual(a.finished, [`bank: COMMIT ${gid}`]);
    assert.deepEqual(report.committed, [{ shard: 'a', gid }]);
  });

  test('gids with our prefix but not our format are reported and left alone', async () => {
    const a = new FakeShard('a').prepare("rwsplit:by-hand'", 99_999);
    const report = await recovery(new MemoryDecisionStore(), [a]).runOnce();
    assert.equal(a.prepared.size, 1);
    assert.match(report.errors.join(), /not our format/);
  });

  test('two recoveries at once agree, and each gid is finished once', async () => {
    const store = new MemoryDecisionStore();
    const gids = Array.from({ length: 20 }, () => newGid('t'));
    const [a, b] = [new FakeShard('a'), new FakeShard('b')];
    for (const [i, gid] of gids.entries()) {
      a.prepare(gid, 5000);
      b.prepare(gid, 5000);
      if (i % 2 === 0) await store.decide(gid, 'commit', ['a', 'b']);
    }
    const [r1, r2] = await Promise.all([
      recovery(store, [a, b]).runOnce(),
      recovery(store, [b, a]).runOnce(),
    ]);
    assert.equal(a.prepared.size + b.prepared.size, 0);
    assert.equal(a.finished.length + b.finished.length, 40, 'each gid finished once per shard');
    for (const [i, gid] of gids.entries()) {
      const verb = i % 2 === 0 ? 'COMMIT' : 'ROLLBACK';
      assert.ok(
        a.finished.includes(`postgres: ${verb} ${gid}`) && b.finished.includes(`postgres: ${verb} ${gid}`),
      );
    }
    assert.deepEqual([...r1.errors, ...r2.errors], []);
  });

  test('log rows are forgotten only when old enough and no shard has the gid prepared', async () => {
    let now = 0;
    const store = new MemoryDecisionStore(() => now);
    const [done, stillPrepared, aborted] = [newGid('t'), newGid('t'), newGid('t')];
    await store.decide(done, 'commit', ['a', 'b']);
    await store.decide(stillPrepared, 'commit', ['a', 'b']);
    await store.decide(aborted, 'abort', ['a', 'b']);
    const a = new FakeShard('a');
    const b = new FakeShard('b').prepare(stillPrepared, 10);
    b.busy.add(stillPrepared); // another session is finishing it: it stays prepared for now
    b.down = true;
    const r = recovery(store, [a, b]); // decisionTimeoutMs 1000, abortRetentionMs 5000

    now = 500; // every row younger than the timeout
    assert.equal((await r.runOnce()).forgotten, 0);
    now = 2000; // old enough, but b is unreachable and might hold any of them
    const blind = await r.runOnce();
    assert.deepEqual([blind.unreachable, blind.forgotten, store.rows.size], [['b'], 0, 3]);

    b.down = false;
    const seen = await r.runOnce();
    assert.deepEqual(seen.waiting, [{ shard: 'b', gid: stillPrepared }]);
    assert.deepEqual(
      [...store.rows.keys()].sort(),
      [stillPrepared, aborted].sort(),
      "'abort' rows are kept longer",
    );

    b.busy.clear();
    now = 6000;
    assert.deepEqual((await r.runOnce()).committed, [{ shard: 'b', gid: stillPrepared }]);
    assert.deepEqual(
      [...store.rows.keys()],
      [stillPrepared],
      'seen prepared in this run: kept until the next',
    );
    await r.runOnce();
    assert.equal(store.rows.size, 0);
  });

  test('concurrent runOnce calls share one run; start and stop', async () => {
    const r = recovery(new MemoryDecisionStore(), [new FakeShard('a')]);
    const [x, y] = [r.runOnce(), r.runOnce()];
    assert.equal(x, y);
    await x;
    r.start();
    await r.stop();
    assert.notEqual(r.runOnce(), x);
  });
});
