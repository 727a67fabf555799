import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_STALENESS,
  InvalidStalenessBoundError,
  StalenessTracker,
  type StalenessBound,
} from './staleness.js';

/** Bytes-only bound of 1000 with the default hysteresis (leave after 2, return after 3 at <= 500). */
const BYTES_1000: StalenessBound = { ...DEFAULT_STALENESS, maxLagBytes: 1000, maxLagMs: null };

/** Feeds byte lags in order and returns the eligibility after each. */
function feed(tracker: StalenessTracker, id: string, lags: ReadonlyArray<number | null>): boolean[] {
  return lags.map((lag) => tracker.observe(id, lag, null));
}

/** mulberry32: seeded PRNG for reproducible noise. */
function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function transitions(states: readonly boolean[]): number {
  let n = 0;
  for (let i = 1; i < states.length; i++) if (states[i] !== states[i - 1]) n++;
  return n;
}

describe('DEFAULT_STALENESS', () => {
  test('is 16 MiB / 10 s, leave after 2, return after 3 under half the bound', () => {
    assert.deepEqual(
      { ...DEFAULT_STALENESS },
      {
        maxLagBytes: 16 * 1024 * 1024,
        maxLagMs: 10_000,
        breachesToLeave: 2,
        samplesToReturn: 3,
        returnRatio: 0.5,
      },
    );
  });
});

describe('StalenessTracker', () => {
  test('a replica never observed is not lagging', () => {
    const tracker = new StalenessTracker(BYTES_1000);
    assert.equal(tracker.isLagging('r1'), false);
  });

  test('leaves rotation only after N consecutive breaches', () => {
    const tracker = new StalenessTracker(BYTES_1000);
    assert.deepEqual(
      feed(tracker, 'r1', [1000, 2000]),
      [true, true],
      'at the bound is within; one breach stays',
    );
    assert.equal(tracker.observe('r1', 2000, null), false);
    assert.equal(tracker.isLagging('r1'), true);

    const three = new StalenessTracker({ ...BYTES_1000, breachesToLeave: 3 });
    assert.deepEqual(feed(three, 'r1', [5000, 5000, 5000]), [true, true, false]);
  });

  test('a within-bound sample breaks a breach streak', () => {
    const tracker = new StalenessTracker(BYTES_1000);
    assert.deepEqual(feed(tracker, 'r1', [2000, 900, 2000, 900, 2000]), [true, true, true, true, true]);
  });

  test('returns only after M consecutive samples at or under returnRatio * bound', () => {
    const tracker = new StalenessTracker(BYTES_1000);
    feed(tracker, 'r1', [2000, 2000]);
    // Under the bound but above the return band (500): stays out however long it lasts.
    assert.ok(feed(tracker, 'r1', Array<number>(20).fill(600)).every((ok) => !ok));
    assert.deepEqual(feed(tracker, 'r1', [500, 400]), [false, false]);
    assert.equal(tracker.observe('r1', 0, null), true);
    assert.equal(tracker.isLagging('r1'), false);
  });

  test('a sample above the return band restarts the return count', () => {
    const tracker = new StalenessTracker(BYTES_1000);
    feed(tracker, 'r1', [2000, 2000]);
    assert.deepEqual(feed(tracker, 'r1', [100, 100, 700, 100, 100]), [false, false, false, false, false]);
    assert.equal(tracker.observe('r1', 100, null), true);
  });

  test('a breach right after returning needs the full streak again to leave', () => {
    const tracker = new StalenessTracker(BYTES_1000);
    feed(tracker, 'r1', [2000, 2000, 0, 0, 0]);
    assert.deepEqual(feed(tracker, 'r1', [2000, 2000]), [true, false]);
  });

  test('no flapping when the lag oscillates just around the bound', () => {
    const random = seeded(11);
    const lags = Array.from({ length: 300 }, () => 1000 + Math.round((random() - 0.5) * 60)); // 970..1030
    const tracker = new StalenessTracker(BYTES_1000);
    const states = feed(tracker, 'r1', lags);
    assert.equal(transitions(states), 1, 'leaves once and stays out: never near 500');
    assert.equal(states.at(-1), false);

    // Alternating just over / just under never makes two consecutive breaches.
    const alternating = new StalenessTracker(BYTES_1000);
    const alt = feed(
      alternating,
      'r2',
      Array.from({ length: 100 }, (_, i) => (i % 2 === 0 ? 1010 : 990)),
    );
    assert.equal(transitions(alt), 0);
    assert.equal(alt[0], true);

    // Without hysteresis the same noise would flap constantly: the band is what prevents it.
    const bare = new StalenessTracker({
      ...BYTES_1000,
      breachesToLeave: 1,
      samplesToReturn: 1,
      returnRatio: 1,
    });
    assert.ok(transitions(feed(bare, 'r1', lags)) > 50);
  });

  test('null lag never counts as a breach, nor breaks a streak', () => {
    const tracker = new StalenessTracker(BYTES_1000);
    assert.ok(feed(tracker, 'r1', Array<null>(10).fill(null)).every((ok) => ok));
    assert.deepEqual(feed(tracker, 'r1', [2000, null, 2000]), [true, true, false]);
    // Out of rotation, unknown samples do not count toward returning either.
    assert.deepEqual(feed(tracker, 'r1', [0, null, 0, null, 0]), [false, false, false, false, true]);
  });

  test('a null bound disables that dimension', () => {
    const msOnly = new StalenessTracker({ ...DEFAULT_STALENESS, maxLagBytes: null, maxLagMs: 1000 });
    for (let i = 0; i < 5; i++) assert.equal(msOnly.observe('r1', 1e12, 10), true);
    assert.equal(msOnly.observe('r1', 0, 5000), true);
    assert.equal(msOnly.observe('r1', 0, 5000), false);

    const unbounded = new StalenessTracker({ ...DEFAULT_STALENESS, maxLagBytes: null, maxLagMs: null });
    for (let i = 0; i < 5; i++) assert.equal(unbounded.observe('r1', 1e12, 1e9), true);
  });

  test('either dimension breaching is a breach; returning needs every measured one in the band', () => {
    const bound: StalenessBound = { ...DEFAULT_STALENESS, maxLagBytes: 1000, maxLagMs: 1000 };
    const tracker = new StalenessTracker(bound);
    assert.deepEqual(
      [tracker.observe('r1', 0, 2000), tracker.observe('r1', 2000, 0)],
      [true, false],
      'a bytes breach then a time breach are consecutive breaches',
    );
    // Bytes in band but time not: no progress toward returning.
    for (let i = 0; i < 5; i++) assert.equal(tracker.observe('r1', 0, 800), false);
    // Only time measured, and in band: counts.
    assert.deepEqual([tracker.observe('r1', null, 100), tracker.observe('r1', 0, 100)], [false, false]);
    assert.equal(tracker.observe('r1', 10, 100), true);
  });

  test('replicas are tracked independently; forget drops the history', () => {
    const tracker = new StalenessTracker(BYTES_1000);
    feed(tracker, 'r1', [2000, 2000]);
    feed(tracker, 'r2', [2000]);
    assert.equal(tracker.isLagging('r1'), true);
    assert.equal(tracker.isLagging('r2'), false);
    tracker.forget('r1');
    assert.equal(tracker.isLagging('r1'), false);
    assert.equal(tracker.observe('r1', 2000, null), true, 'the breach streak restarted too');
  });

  test('setBound applies the new bound and restarts the streaks', () => {
    const tracker = new StalenessTracker(BYTES_1000);
    feed(tracker, 'r1', [2000, 2000]);
    feed(tracker, 'r2', [2000]);
    tracker.setBound({ ...BYTES_1000, maxLagBytes: 10_000 });
    assert.equal(tracker.isLagging('r1'), true, 'state is kept across a reload');
    assert.equal(tracker.observe('r2', 2000, null), true, 'under the new bound, and the old streak is gone');
    assert.deepEqual(feed(tracker, 'r1', [4000, 4000]), [false, false]);
    assert.equal(tracker.observe('r1', 4000, null), true, 'under half the new bound');
  });

  test('rejects an invalid bound with a coded error', () => {
    const bad: StalenessBound[] = [
      { ...BYTES_1000, maxLagBytes: -1 },
      { ...BYTES_1000, maxLagMs: Number.NaN },
      { ...BYTES_1000, breachesToLeave: 0 },
      { ...BYTES_1000, samplesToReturn: 1.5 },
      { ...BYTES_1000, returnRatio: 1.5 },
      { ...BYTES_1000, returnRatio: -0.1 },
    ];
    for (const bound of bad) {
      assert.throws(
        () => new StalenessTracker(bound),
        (err: unknown) => err instanceof InvalidStalenessBoundError && err.code === 'INVALID_STALENESS_BOUND',
        JSON.stringify(bound),
      );
    }
    const tracker = new StalenessTracker(BYTES_1000);
    assert.throws(() => tracker.setBound({ ...BYTES_1000, returnRatio: 2 }), InvalidStalenessBoundError);
  });
});
