import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { formatLsn, InvalidLsnError, lsnDiff, parseLsn, PositionHistory } from './lag.js';

const isInvalidLsn = (err: unknown): boolean => err instanceof InvalidLsnError && err.code === 'INVALID_LSN';

describe('parseLsn / formatLsn', () => {
  test('parses the high and low 32-bit halves', () => {
    assert.equal(parseLsn('0/0'), 0n);
    assert.equal(parseLsn('0/3000060'), 0x3000060n);
    assert.equal(parseLsn('16/B374D848'), (0x16n << 32n) + 0xb374d848n);
    assert.equal(parseLsn('1/0'), 1n << 32n);
    assert.equal(parseLsn('FFFFFFFF/FFFFFFFF'), (1n << 64n) - 1n);
  });

  test('accepts lower case and zero padding', () => {
    assert.equal(parseLsn('16/b374d848'), parseLsn('16/B374D848'));
    assert.equal(parseLsn('0/0000ABCD'), 0xabcdn);
    assert.equal(parseLsn('00000001/00000000'), 1n << 32n);
  });

  test('formats as PostgreSQL prints it, and round-trips', () => {
    assert.equal(formatLsn(0n), '0/0');
    assert.equal(formatLsn(1n << 32n), '1/0');
    assert.equal(formatLsn((0x16n << 32n) + 0xb374d848n), '16/B374D848');
    for (const text of [
      '0/0',
      '0/1',
      '0/FFFFFFFF',
      '1/0',
      '16/B374D848',
      'ABCDEF01/23456789',
      'FFFFFFFF/FFFFFFFF',
    ]) {
      assert.equal(formatLsn(parseLsn(text)), text);
    }
    for (const n of [
      0n,
      1n,
      0xffffffffn,
      1n << 32n,
      (1n << 32n) + 1n,
      0x7fff_ffff_0000_0001n,
      (1n << 64n) - 1n,
    ]) {
      assert.equal(parseLsn(formatLsn(n)), n);
    }
  });

  test('rejects what is not an LSN', () => {
    for (const text of [
      '',
      '0',
      '0/',
      '/0',
      '1/2/3',
      'G/0',
      '0/-1',
      ' 0/1',
      '0/1 ',
      '123456789/0',
      '0/123456789',
    ]) {
      assert.throws(() => parseLsn(text), isInvalidLsn, JSON.stringify(text));
    }
    assert.throws(() => formatLsn(-1n), isInvalidLsn);
    assert.throws(() => formatLsn(1n << 64n), isInvalidLsn);
  });
});

describe('lsnDiff', () => {
  test('is a - b in bytes, across the 32-bit boundary', () => {
    assert.equal(lsnDiff('1/0', '0/FFFFFFFF'), 1);
    assert.equal(lsnDiff('2/10', '1/0'), 0x1_0000_0010);
    assert.equal(lsnDiff(parseLsn('0/3000060'), parseLsn('0/3000000')), 0x60);
    assert.equal(lsnDiff(0x3000060n, '0/3000000'), 0x60);
  });

  test('clamps at 0 when a is not ahead of b', () => {
    assert.equal(lsnDiff('0/100', '0/100'), 0);
    assert.equal(lsnDiff('0/100', '1/0'), 0);
  });
});

describe('PositionHistory', () => {
  test('knows nothing at first: lag 0, no latest', () => {
    const history = new PositionHistory();
    assert.equal(history.latest, undefined);
    assert.equal(history.lagMs(0n, 1000), 0);
  });

  test('lag is the time since the primary first showed a position beyond the replica', () => {
    const history = new PositionHistory();
    history.record(100n, 0);
    history.record(200n, 1000);
    history.record(300n, 2000);
    assert.equal(history.latest, 300n);
    assert.equal(history.lagMs(300n, 5000), 0, 'caught up');
    assert.equal(history.lagMs(400n, 5000), 0, 'ahead of the last sample');
    assert.equal(history.lagMs(250n, 2500), 500, 'beyond 250 first seen at 2000');
    assert.equal(history.lagMs(200n, 2500), 500, 'exactly 200 replayed: 300 is the first beyond');
    assert.equal(history.lagMs(150n, 2500), 1500);
    assert.equal(history.lagMs(99n, 2500), 2500);
  });

  test('keeps the time a position was first seen; ignores repeats and regressions', () => {
    const history = new PositionHistory();
    history.record(100n, 0);
    history.record(100n, 5000);
    history.record(50n, 6000);
    assert.equal(history.latest, 100n);
    assert.equal(history.lagMs(0n, 7000), 7000);
  });

  test('an idle primary does not make a caught-up replica lag', () => {
    const history = new PositionHistory();
    history.record(500n, 0);
    for (let t = 1000; t <= 60_000; t += 1000) history.record(500n, t);
    assert.equal(history.lagMs(500n, 60_000), 0);
    // A replica still behind keeps lagging, by the time since 500 was first seen.
    assert.equal(history.lagMs(400n, 60_000), 60_000);
  });

  test('memory is bounded; older than the oldest sample gives the oldest age as a lower bound', () => {
    const history = new PositionHistory(3);
    for (let i = 1; i <= 10; i++) history.record(BigInt(i * 100), i * 1000);
    assert.equal(history.latest, 1000n);
    // Kept: 800@8000, 900@9000, 1000@10000. The replica at 100 is really 9 s behind.
    assert.equal(history.lagMs(100n, 11_000), 3000);
    assert.equal(history.lagMs(850n, 11_000), 2000);
    assert.equal(history.lagMs(1000n, 11_000), 0);
  });

  test('agrees with a brute-force scan over a wrapped ring', () => {
    const capacity = 7;
    const history = new PositionHistory(capacity);
    const all: Array<[bigint, number]> = [];
    let position = 0n;
    for (let t = 0; t < 40; t++) {
      position += BigInt((t * 37) % 5); // sometimes 0: a repeat that must be ignored
      history.record(position, t * 10);
      if (all.length === 0 || position > all[all.length - 1]![0]) all.push([position, t * 10]);
      const kept = all.slice(-capacity);
      const now = t * 10 + 3;
      for (let replayed = -1n; replayed <= position + 1n; replayed++) {
        const beyond = kept.find(([p]) => p > replayed);
        const expected = beyond === undefined ? 0 : now - beyond[1];
        assert.equal(history.lagMs(replayed, now), expected, `t=${t} replayed=${replayed}`);
      }
    }
  });

  test('never reports a negative lag', () => {
    const history = new PositionHistory();
    history.record(100n, 5000);
    assert.equal(history.lagMs(0n, 4000), 0);
  });

  test('clear forgets everything, so a new primary with lower positions is recorded', () => {
    const history = new PositionHistory();
    history.record(1000n, 0);
    history.clear();
    assert.equal(history.latest, undefined);
    history.record(10n, 100);
    assert.equal(history.latest, 10n);
    assert.equal(history.lagMs(5n, 300), 200);
  });

  test('rejects a capacity below one', () => {
    assert.throws(() => new PositionHistory(0), RangeError);
    assert.throws(() => new PositionHistory(2.5), RangeError);
  });
});
