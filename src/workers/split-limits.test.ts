import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { validateConfig } from '../config/load.js';
import { processIdOwner, share, workerConfig, workerCount } from './split-limits.js';

describe('workers: limits split, counts, process ids', () => {
  test('shares sum to the total, differ by at most one, and are at least one', () => {
    for (const total of [1, 2, 3, 7, 20, 64])
      for (const count of [1, 2, 3, 4, 8]) {
        const shares = Array.from({ length: count }, (_, i) => share(total, i, count));
        assert.ok(Math.max(...shares) - Math.min(...shares) <= 1, `${total}/${count}: ${shares}`);
        assert.ok(Math.min(...shares) >= 1);
        assert.equal(
          shares.reduce((a, b) => a + b, 0),
          Math.max(total, count),
        );
      }
  });

  test('a worker config splits pools, client limits and the buffer budget', () => {
    const config = validateConfig({
      postgres: { nodes: [{ id: 'a', host: 'h' }], pool: { size: 21 }, limits: { maxClients: 100 } },
      redis: { shards: [{ name: 's', nodes: [{ id: 'r', host: 'h' }] }], pool: { size: 2 } },
      limits: { maxBufferedBytes: 1000 },
      workers: 2,
    });
    const [w0, w1] = [workerConfig(config, 0, 2), workerConfig(config, 1, 2)];
    assert.equal(w0.postgres!.pool.size + w1.postgres!.pool.size, 21);
    assert.equal(w0.postgres!.limits.maxClients + w1.postgres!.limits.maxClients, 100);
    assert.deepEqual([w0.redis!.pool.size, w1.redis!.pool.size], [1, 1]);
    assert.equal(w0.limits.maxBufferedBytes + w1.limits.maxBufferedBytes, 1000);
    assert.equal(w0.workers, 1);
    assert.equal(config.postgres!.pool.size, 21, 'the instance config is left alone');
    const unlimited = workerConfig(validateConfig({ ...config, limits: { maxBufferedBytes: 0 } }), 1, 2);
    assert.equal(unlimited.limits.maxBufferedBytes, 0, 'no budget stays no budget');
  });

  test('auto takes the cores up to 8; a number is taken as it is', () => {
    assert.equal(workerCount('auto', 2), 2);
    assert.equal(workerCount('auto', 64), 8);
    assert.equal(workerCount('auto', 1), 1);
    assert.equal(workerCount(3, 64), 3);
    assert.equal(validateConfig({ postgres: { nodes: [{ id: 'a', host: 'h' }] } }).workers, 'auto');
    assert.throws(() => validateConfig({ postgres: { nodes: [{ id: 'a', host: 'h' }] }, workers: 0 }));
  });

  test('a process id names its worker', () => {
    const first = 100;
    for (const count of [2, 3]) {
      for (let index = 0; index < count; index++)
        for (let k = 0; k < 5; k++)
          assert.equal(processIdOwner(first + index + k * count, first, count), index);
    }
    assert.equal(processIdOwner(42, first, 2), null);
  });
});
