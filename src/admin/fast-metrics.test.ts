import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import client from 'prom-client';
import { bucketQuantile, CellCounter } from './fast-metrics.js';

describe('bucketQuantile', () => {
  const bounds = [0.001, 0.01, 0.1, 1];

  test('no observations give null', () => {
    assert.equal(bucketQuantile(bounds, [0, 0, 0, 0], 0, 0.5), null);
  });

  test('interpolates linearly inside the bucket holding the rank, the first from 0', () => {
    // 10 observations in (0, 0.001]: the median sits half-way through that bucket.
    assert.equal(bucketQuantile(bounds, [10, 0, 0, 0], 10, 0.5), 0.0005);
    // 50 in the first bucket, 50 in (0.01, 0.1]: p99 is 98% of the way through the third.
    const p99 = bucketQuantile(bounds, [50, 0, 50, 0], 100, 0.99)!;
    assert.ok(Math.abs(p99 - (0.01 + 0.09 * 0.98)) < 1e-12, String(p99));
    assert.equal(bucketQuantile(bounds, [50, 0, 50, 0], 100, 0.5), 0.001);
  });

  test('observations above the last bound give the last bound', () => {
    assert.equal(bucketQuantile(bounds, [1, 0, 0, 0], 10, 0.99), 1);
  });
});

describe('CellCounter', () => {
  test('renders one sample per set of label values, one label or two', async () => {
    const registry = new client.Registry();
    const one = new CellCounter('t_one_total', 'one label', 'node', [registry]);
    const two = new CellCounter('t_two_total', 'two labels', ['node', 'kind'], [registry]);
    one.cell('a').n += 3;
    two.cell('a', 'read').n += 2;
    two.cell('a', 'write').n++;
    const text = await registry.metrics();
    assert.match(text, /^t_one_total\{node="a"\} 3$/m);
    assert.match(text, /^t_two_total\{node="a",kind="read"\} 2$/m);
    assert.match(text, /^t_two_total\{node="a",kind="write"\} 1$/m);
    assert.deepEqual(
      [...two.entries()],
      [
        [['a', 'read'], 2],
        [['a', 'write'], 1],
      ],
    );
  });
});
