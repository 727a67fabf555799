import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Ewma } from './ewma.js';

function close(actual: number, expected: number, tolerance = 1e-9): void {
  assert.ok(
    Math.abs(actual - expected) <= tolerance,
    `expected ${actual} to be within ${tolerance} of ${expected}`,
  );
}

describe('Ewma', () => {
  test('is NaN (unknown) before the first sample by default', () => {
    assert.ok(Number.isNaN(new Ewma(1000).value));
  });

  test('reports the initial value until the first sample, which replaces it', () => {
    const ewma = new Ewma(1000, 42);
    assert.equal(ewma.value, 42);
    ewma.update(7, 0);
    assert.equal(ewma.value, 7);
  });

  test('a sample one half-life old weighs half as much as a fresh one', () => {
    const ewma = new Ewma(1000);
    ewma.update(10, 0);
    ewma.update(20, 1000);
    // weights 0.5 and 1: (10*0.5 + 20) / 1.5
    close(ewma.value, 25 / 1.5);
  });

  test('samples in the same millisecond are averaged, not ignored', () => {
    const ewma = new Ewma(1000);
    ewma.update(10, 5);
    ewma.update(20, 5);
    ewma.update(30, 5);
    close(ewma.value, 20);
  });

  test('idle time does not change the value; after a long gap the next sample dominates', () => {
    const ewma = new Ewma(1000);
    ewma.update(10, 0);
    ewma.update(10, 100);
    assert.equal(ewma.value, 10);
    ewma.update(500, 1_000_000); // 1000 half-lives later: the old weight underflows to 0
    close(ewma.value, 500);
  });

  test('memory is set by time, not by request rate', () => {
    // Two nodes at 10 ms for a long time, then both jump to 100 ms for one half-life: one
    // sampled every ms, the other every 100 ms. A count-based EWMA would have forgotten the
    // old level on the busy node long before the quiet one; here both sit about half-way.
    const halfLife = 1000;
    const busy = new Ewma(halfLife);
    const quiet = new Ewma(halfLife);
    for (let t = 0; t < 20_000; t++) {
      const sample = t < 19_000 ? 10 : 100;
      busy.update(sample, t);
      if (t % 100 === 0) quiet.update(sample, t);
    }
    for (const ewma of [busy, quiet]) {
      assert.ok(ewma.value > 45 && ewma.value < 65, `value ${ewma.value} should be about half-way`);
    }
    close(busy.value, quiet.value, 6);
  });

  test('a clock going backwards counts as no elapsed time', () => {
    const ewma = new Ewma(1000);
    ewma.update(10, 1000);
    ewma.update(30, 500);
    close(ewma.value, 20);
  });

  test('non-finite samples are ignored', () => {
    const ewma = new Ewma(1000);
    ewma.update(Number.NaN, 0);
    assert.ok(Number.isNaN(ewma.value));
    ewma.update(10, 0);
    ewma.update(Number.POSITIVE_INFINITY, 10);
    assert.equal(ewma.value, 10);
  });

  test('rejects a non-positive half-life', () => {
    assert.throws(() => new Ewma(0), RangeError);
    assert.throws(() => new Ewma(-5), RangeError);
    assert.throws(() => new Ewma(Number.NaN), RangeError);
  });
});
