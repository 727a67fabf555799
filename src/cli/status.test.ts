import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { workersLine } from './demo.js';
import { formatWorkers } from './status.js';

describe('how many processes serve the clients (rwsplit status, the demo banner)', () => {
  test('rwsplit status says it in one process too', () => {
    assert.equal(formatWorkers([]), 'workers: 1 (one process)');
    assert.equal(
      formatWorkers([
        { index: 0, pid: 11, ready: true, startedAt: 0, clients: 3, accepted: 5 },
        { index: 1, pid: 12, ready: false, startedAt: 0, clients: 0, accepted: 0 },
      ]),
      'workers: 2 (#0 pid 11 3 clients, #1 pid 12 starting)',
    );
  });

  test('the demo banner', () => {
    assert.match(workersLine(2), /^2 worker processes/);
    assert.equal(workersLine(1), 'one process (workers: 1)');
  });
});
