import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  analyze,
  describeError,
  distinctErrors,
  doublePrimaryAcks,
  longestGapMs,
  longestSessionStall,
  longestSessionStallMs,
  lostWrites,
  Recorder,
  staleReads,
  writesResumeMs,
  writeUnavailabilityMs,
  type AckedWrite,
  type ReadRecord,
} from './checker.js';

function ack(key: string, value: number, at: number, node: string | null = 'p', sentAt = at - 1): AckedWrite {
  return { key, value, session: 0, sentAt, at, node };
}

function read(
  seen: number | null,
  expectedMin: number | null,
  at = 0,
  node: string | null = 'r',
): ReadRecord {
  return { at, session: 0, seen, expectedMin, node };
}

describe('write unavailability', () => {
  test('is the longest gap from the last ack before the fault to the end of the load', () => {
    // acks every 10 ms, then nothing from 100 to 1600, then every 10 ms again
    const times = [10, 20, 90, 100, 1600, 1610, 1620];
    assert.equal(writeUnavailabilityMs(times, 95, 1700), 1500);
  });

  test('counts up to the end of the load when writes never resume', () => {
    assert.equal(writeUnavailabilityMs([10, 50], 60, 2060), 2010);
  });

  test('without any ack before the fault, the gap starts at the fault', () => {
    assert.equal(writeUnavailabilityMs([500, 510], 100, 520), 400);
  });

  test('ignores acks after the end of the load (steps finishing after stop)', () => {
    assert.equal(writeUnavailabilityMs([100, 200, 5000], 150, 300), 100);
  });

  test('the same figure over a window without a fault', () => {
    assert.equal(longestGapMs([5, 10, 40, 45], 0, 50), 30);
    assert.equal(longestGapMs([], 0, 50), 50);
  });
});

describe('longest session stall', () => {
  test('one stuck session shows even while the others carry on', () => {
    let t = 0;
    const rec = new Recorder(() => t);
    for (let ms = 0; ms <= 1000; ms += 10) {
      t = ms;
      rec.ack({ key: `w:${ms}`, value: ms, session: 0, sentAt: ms, node: 'p' });
    }
    t = 90;
    rec.error(1, 'write', new Error('lost'));
    t = 15_090; // session 1's next query: a client-side timeout
    rec.error(1, 'write', new Error('Query read timeout'));
    const stall = longestSessionStall(rec.snapshot(), 100, 1000);
    assert.deepEqual(stall, { ms: 15_000, session: 1, from: 90, endedBy: 'write error: Query read timeout' });
    assert.ok(
      writeUnavailabilityMs(
        rec.acks.map((a) => a.at),
        100,
        1000,
      ) <= 10,
    );
  });

  test('a session silent since before the fault counts up to the end of the load', () => {
    let t = 0;
    const rec = new Recorder(() => t);
    t = 50;
    rec.read({ session: 2, seen: 1, expectedMin: null, node: 'r' });
    assert.equal(longestSessionStallMs(rec.snapshot(), 100, 600), 550);
  });
});

describe('writes resume', () => {
  test('is the first ack of a write sent after the fault', () => {
    const acks = [ack('w:1', 1, 120, 'p', 90), ack('w:2', 2, 2100, 'q', 150), ack('w:3', 3, 2050, 'q', 160)];
    // w:1 was sent before the fault (100): its late ack does not count as resumption
    assert.equal(writesResumeMs(acks, 100), 1950);
  });

  test('is null when no write sent after the fault was acknowledged', () => {
    assert.equal(writesResumeMs([ack('w:1', 1, 120, 'p', 90)], 100), null);
  });
});

describe('acknowledged writes lost', () => {
  test('a missing key or a lower final value is a lost ack', () => {
    const acks = [
      ack('w:1', 1, 1),
      ack('w:2', 2, 2),
      ack('ryw:0', 5, 3),
      ack('ryw:0', 6, 4),
      ack('ryw:1', 3, 5),
    ];
    const final = new Map([
      ['w:1', 1],
      ['ryw:0', 5],
      ['ryw:1', 4],
    ]);
    assert.deepEqual(
      lostWrites(acks, final).map((a) => `${a.key}=${a.value}`),
      ['w:2=2', 'ryw:0=6'],
    );
  });

  test('nothing is lost when every ack is there', () => {
    assert.equal(lostWrites([ack('w:1', 1, 1)], new Map([['w:1', 1]])).length, 0);
  });
});

describe('stale reads', () => {
  test('a checked read below the last acknowledged value, or with no value, is stale', () => {
    const reads = [read(5, 5), read(4, 5), read(null, 1), read(null, null), read(1, null), read(7, 5)];
    assert.deepEqual(
      staleReads(reads).map((r) => r.seen),
      [4, null],
    );
  });
});

describe('double-primary acks', () => {
  test('acks of the old primary after the first ack of the new one', () => {
    const acks = [
      ack('w:1', 1, 10, 'old'),
      ack('w:2', 2, 20, 'new'),
      ack('w:3', 3, 25, 'old'),
      ack('w:4', 4, 30, 'new'),
    ];
    assert.deepEqual(
      doublePrimaryAcks(acks).map((a) => a.key),
      ['w:3'],
    );
  });

  test('a clean handover has none, and acks with no node are ignored', () => {
    const acks = [ack('w:1', 1, 10, 'old'), ack('w:2', 2, 20, null), ack('w:3', 3, 30, 'new')];
    assert.equal(doublePrimaryAcks(acks).length, 0);
  });

  test('three primaries in turn: each is judged against the next', () => {
    const acks = [ack('a', 1, 10, 'n1'), ack('b', 2, 20, 'n2'), ack('c', 3, 30, 'n3'), ack('d', 4, 35, 'n2')];
    assert.deepEqual(
      doublePrimaryAcks(acks).map((a) => a.key),
      ['d'],
    );
  });
});

describe('errors', () => {
  test('SQLSTATE and Redis prefixes become the code; digits are folded when grouping', () => {
    const pgErr = Object.assign(new Error('terminating connection due to administrator command'), {
      code: '57P01',
    });
    assert.deepEqual(describeError(pgErr), { message: pgErr.message, code: '57P01' });
    assert.equal(
      describeError(new Error("READONLY You can't write against a read only replica.")).code,
      'READONLY',
    );
    assert.equal(describeError('plain').code, null);
    const rec = new Recorder(() => 0);
    rec.error(0, 'connect', new Error('connect ECONNREFUSED 127.0.0.1:4001'));
    rec.error(1, 'connect', new Error('connect ECONNREFUSED 127.0.0.1:4002'));
    rec.error(1, 'write', pgErr);
    const groups = distinctErrors(rec.errors);
    assert.equal(groups.length, 2);
    assert.deepEqual(groups[0], {
      kind: 'connect',
      code: null,
      message: 'connect ECONNREFUSED N.N.N.N:N',
      count: 2,
    });
  });
});

describe('analyze', () => {
  test('computes every figure of a run with a failover', () => {
    let t = 0;
    const rec = new Recorder(() => t);
    const at = (ms: number): void => {
      t = ms;
    };
    for (let i = 1; i <= 10; i++) {
      at(i * 10);
      rec.ack({ key: `w:${i}`, value: i, session: 0, sentAt: i * 10 - 2, node: 'old' });
    }
    at(105);
    rec.read({ session: 1, seen: 3, expectedMin: 3, node: 'replica' });
    rec.read({ session: 1, seen: 2, expectedMin: 3, node: 'old' });
    rec.error(0, 'write', new Error('boom'));
    rec.reconnected();
    for (let i = 11; i <= 12; i++) {
      at(2000 + i);
      rec.ack({ key: `w:${i}`, value: i, session: 0, sentAt: 1500, node: 'new' });
    }
    const final = new Map(Array.from({ length: 11 }, (_, i) => [`w:${i + 1}`, i + 1] as [string, number]));
    const f = analyze(rec.snapshot(), { loadStart: 0, faultAt: 100, loadEnd: 2100 }, final);
    assert.equal(f.writeUnavailabilityMs, 2011 - 100);
    assert.equal(f.baselineGapMs, 10);
    assert.equal(f.writesResumeMs, 2011 - 100);
    assert.equal(f.longestSessionStallMs, 2100 - 105, "session 1's reads and error at 105, then nothing");
    assert.deepEqual(f.longestSessionStall, {
      ms: 1995,
      session: 1,
      from: 5,
      endedBy: 'still waiting at the end of the load',
    });
    assert.equal(f.writesAcked, 12);
    assert.equal(f.writesAckedAfterFault, 2);
    assert.equal(f.clientErrors, 1);
    assert.equal(f.reconnects, 1);
    assert.equal(f.ackedWritesLost, 1);
    assert.equal(f.lostSample[0]?.key, 'w:12');
    assert.equal(f.checkedReads, 2);
    assert.equal(f.staleReads, 1);
    assert.equal(f.checkedReadsOnReplicas, 0.5);
    assert.deepEqual(f.checkedReadsByNode, { replica: 1, old: 1 });
    assert.equal(f.doublePrimaryAcks, 0);
    assert.deepEqual(f.writeNodes, ['old', 'new']);
  });

  test('an unreadable final state leaves the loss unknown, not zero', () => {
    const rec = new Recorder(() => 0);
    rec.ack({ key: 'w:1', value: 1, session: 0, sentAt: 0, node: 'p' });
    const f = analyze(rec.snapshot(), { loadStart: 0, faultAt: 0, loadEnd: 10 }, null);
    assert.equal(f.ackedWritesLost, null);
  });
});
