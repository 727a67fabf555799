import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { TwoPhaseCoordinator, type Participant } from './coordinator.js';
import { DecisionLogUnavailableError, type Decision } from './decision-log.js';
import { TwoPhaseError } from './errors.js';
import { FaultInjectedError, FaultPoints, type FaultProbabilities } from './fault-points.js';
import { MemoryDecisionStore } from './memory-store.js';

type Answer = string | Error | undefined;

/** A participant that records what it was sent and answers through `answer`. */
class FakeParticipant implements Participant {
  readonly sent: string[] = [];
  constructor(
    readonly shard: string,
    private readonly answer: (sql: string) => Answer | Promise<Answer> = (sql) => sql.split(' ')[0],
  ) {}

  async exec(sql: string): Promise<string | void> {
    this.sent.push(sql.replace(/'rwsplit:[^']*'/, 'GID'));
    const a = await this.answer(sql);
    if (a instanceof Error) throw a;
    return a;
  }
}

function dbError(code: string, message = `server error ${code}`): Error {
  return Object.assign(new Error(message), { code });
}

/** Answers like the server except for statements starting with `prefix`. */
function failing(prefix: string, error: Error | string): (sql: string) => Answer {
  return (sql) => (sql.startsWith(prefix) ? error : sql.split(' ')[0]);
}

function coordinator(
  store = new MemoryDecisionStore(),
  faults: FaultProbabilities | null = null,
  decisionTimeoutMs?: number,
): TwoPhaseCoordinator {
  return new TwoPhaseCoordinator({
    store,
    instanceId: 'unit',
    faults: faults === null ? null : FaultPoints.throwing(faults),
    decisionTimeoutMs,
  });
}

async function rejectsWith(work: Promise<unknown>, code: string, sqlstate?: string): Promise<TwoPhaseError> {
  let caught: unknown;
  await work.then(
    () => assert.fail('expected the commit to fail'),
    (e: unknown) => (caught = e),
  );
  assert.ok(caught instanceof TwoPhaseError, String(caught));
  assert.equal(caught.code, code);
  if (sqlstate !== undefined) assert.equal(caught.sqlstate, sqlstate);
  return caught;
}

describe('TwoPhaseCoordinator', () => {
  test('prepares everywhere, records commit, commits everywhere', async () => {
    const store = new MemoryDecisionStore();
    const [a, b] = [new FakeParticipant('a'), new FakeParticipant('b')];
    const result = await coordinator(store).commit([a, b]);
    assert.equal(result.outcome, 'committed');
    assert.match(result.gid, /^rwsplit:unit:/);
    for (const p of [a, b]) assert.deepEqual(p.sent, ['PREPARE TRANSACTION GID', 'COMMIT PREPARED GID']);
    assert.deepEqual(store.rows.get(result.gid)?.decision, 'commit');
    assert.deepEqual(store.rows.get(result.gid)?.participants, ['a', 'b']);
  });

  test('a refused PREPARE rolls every participant back and keeps its SQLSTATE', async () => {
    const store = new MemoryDecisionStore();
    const a = new FakeParticipant('a');
    const b = new FakeParticipant('b', failing('PREPARE', dbError('23505', 'duplicate key')));
    const err = await rejectsWith(coordinator(store).commit([a, b]), 'TWOPC_ROLLED_BACK', '23505');
    assert.match(err.message, /shard b.*duplicate key/);
    assert.deepEqual(a.sent, ['PREPARE TRANSACTION GID', 'ROLLBACK PREPARED GID']);
    assert.deepEqual(b.sent, ['PREPARE TRANSACTION GID', 'ROLLBACK']);
    assert.equal(store.rows.size, 0, 'nothing left to recover, nothing recorded');
  });

  test('PREPARE answered ROLLBACK (the transaction had failed) counts as refused', async () => {
    const a = new FakeParticipant('a');
    const b = new FakeParticipant('b', failing('PREPARE', 'ROLLBACK'));
    await rejectsWith(coordinator().commit([a, b]), 'TWOPC_ROLLED_BACK', '40000');
    assert.deepEqual(a.sent.at(-1), 'ROLLBACK PREPARED GID');
    assert.ok(!a.sent.some((s) => s.startsWith('COMMIT')) && !b.sent.some((s) => s.startsWith('COMMIT')));
  });

  test("a participant lost during PREPARE: the others roll back and 'abort' is recorded for recovery", async () => {
    const store = new MemoryDecisionStore();
    const a = new FakeParticipant('a');
    const b = new FakeParticipant('b', () =>
      dbError('57P01', 'terminating connection due to administrator command'),
    );
    const err = await rejectsWith(coordinator(store).commit([a, b]), 'TWOPC_ROLLED_BACK', '40000');
    assert.equal(store.rows.get(err.gid)?.decision, 'abort');
    assert.deepEqual(a.sent, ['PREPARE TRANSACTION GID', 'ROLLBACK PREPARED GID']);
    assert.deepEqual(b.sent, ['PREPARE TRANSACTION GID', 'ROLLBACK', 'ROLLBACK PREPARED GID']);
  });

  test("when recovery recorded 'abort' first, the coordinator rolls back", async () => {
    const store = new MemoryDecisionStore();
    const early = {
      decide: async (gid: string, _d: Decision, shards: readonly string[]) =>
        store.decide(gid, 'abort', shards),
    };
    const racing = Object.assign(Object.create(store) as MemoryDecisionStore, early);
    const [a, b] = [new FakeParticipant('a'), new FakeParticipant('b')];
    const err = await rejectsWith(coordinator(racing).commit([a, b]), 'TWOPC_ROLLED_BACK', '40000');
    assert.match(err.message, /recovery had already decided/);
    for (const p of [a, b]) assert.deepEqual(p.sent, ['PREPARE TRANSACTION GID', 'ROLLBACK PREPARED GID']);
  });

  test('a lost answer from the log is retried; the decision that holds is used', async () => {
    const store = new MemoryDecisionStore();
    let calls = 0;
    const flaky = Object.assign(Object.create(store) as MemoryDecisionStore, {
      decide: async (gid: string, d: Decision, shards: readonly string[]) => {
        calls++;
        const held = await store.decide(gid, d, shards);
        if (calls === 1) throw new Error('Connection terminated'); // written, answer lost
        return held;
      },
    });
    const result = await coordinator(flaky).commit([new FakeParticipant('a'), new FakeParticipant('b')]);
    assert.equal(result.outcome, 'committed');
    assert.equal(calls, 2);
  });

  test('a decision that may have been written but cannot be confirmed is in doubt: nothing is finished', async () => {
    const store = new MemoryDecisionStore();
    const broken = Object.assign(Object.create(store) as MemoryDecisionStore, {
      decide: async () => {
        throw new Error('the 2PC decision log did not answer');
      },
    });
    const [a, b] = [new FakeParticipant('a'), new FakeParticipant('b')];
    const c = new TwoPhaseCoordinator({ store: broken, instanceId: 'unit', faults: null, decideAttempts: 2 });
    const err = await rejectsWith(c.commit([a, b]), 'TWOPC_IN_DOUBT', '08007');
    assert.match(err.hint ?? '', /recovery/);
    for (const p of [a, b])
      assert.deepEqual(p.sent, ['PREPARE TRANSACTION GID'], 'left prepared for recovery');
    assert.equal(c.stats.inDoubt, 1);
  });

  test('a log that could not be reached at all wrote nothing: roll back', async () => {
    const store = new MemoryDecisionStore();
    const down = Object.assign(Object.create(store) as MemoryDecisionStore, {
      decide: async () => {
        throw new DecisionLogUnavailableError('cannot connect to the 2PC decision log: ECONNREFUSED');
      },
    });
    const [a, b] = [new FakeParticipant('a'), new FakeParticipant('b')];
    const c = new TwoPhaseCoordinator({ store: down, instanceId: 'unit', faults: null, decideAttempts: 2 });
    const err = await rejectsWith(c.commit([a, b]), 'TWOPC_ROLLED_BACK');
    assert.match(err.message, /ECONNREFUSED/);
    for (const p of [a, b]) assert.deepEqual(p.sent, ['PREPARE TRANSACTION GID', 'ROLLBACK PREPARED GID']);
  });

  test('a COMMIT PREPARED that fails after the decision leaves the commit pending, not failed', async () => {
    const a = new FakeParticipant('a');
    const b = new FakeParticipant('b', failing('COMMIT', new Error('Connection terminated')));
    const c = new FakeParticipant('c', failing('COMMIT', dbError('42704'))); // recovery was faster
    const coord = coordinator();
    const result = await coord.commit([a, b, c]);
    assert.equal(result.outcome, 'committed-pending');
    assert.deepEqual(result.pending, ['b']);
    assert.deepEqual(coord.stats, { committed: 0, committedPending: 1, rolledBack: 0, inDoubt: 0 });
  });

  test('a commit slower to prepare than decisionTimeoutMs decides abort itself', async () => {
    const store = new MemoryDecisionStore();
    const slow = new FakeParticipant('a', async (sql) => {
      await delay(60);
      return sql.split(' ')[0];
    });
    const err = await rejectsWith(
      coordinator(store, null, 20).commit([slow, new FakeParticipant('b')]),
      'TWOPC_ROLLED_BACK',
    );
    assert.match(err.message, /longer than decisionTimeoutMs/);
    assert.equal(store.rows.get(err.gid), undefined, 'no commit recorded');
    assert.equal(slow.sent.at(-1), 'ROLLBACK PREPARED GID');
  });

  describe('throwing fault points stop the commit where it stands', () => {
    const run = async (point: keyof FaultProbabilities) => {
      const store = new MemoryDecisionStore();
      const [a, b] = [new FakeParticipant('a'), new FakeParticipant('b')];
      await assert.rejects(
        coordinator(store, { [point]: 1 }).commit([a, b]),
        (e: unknown) => e instanceof FaultInjectedError && e.point === point,
      );
      await delay(10); // let the other participant's PREPARE finish, as on a server
      return { decisions: [...store.rows.values()].map((r) => r.decision), a: a.sent, b: b.sent };
    };

    test('after prepare: prepared, no decision, nothing rolled back', async () => {
      const r = await run('2pc-after-prepare');
      assert.deepEqual(r.decisions, []);
      assert.deepEqual([r.a, r.b], [['PREPARE TRANSACTION GID'], ['PREPARE TRANSACTION GID']]);
    });

    test('after the decision: commit recorded, no COMMIT PREPARED sent', async () => {
      const r = await run('2pc-after-decision');
      assert.deepEqual(r.decisions, ['commit']);
      assert.deepEqual([r.a, r.b], [['PREPARE TRANSACTION GID'], ['PREPARE TRANSACTION GID']]);
    });

    test('between commits: the first participant committed, the second still prepared', async () => {
      const r = await run('2pc-between-commits');
      assert.deepEqual(r.decisions, ['commit']);
      assert.deepEqual(r.a, ['PREPARE TRANSACTION GID', 'COMMIT PREPARED GID']);
      assert.deepEqual(r.b, ['PREPARE TRANSACTION GID']);
    });
  });
});
