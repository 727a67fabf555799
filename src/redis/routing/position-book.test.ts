import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ReplicationInfo } from '../ha/replication-info.js';
import { PositionBook } from './position-book.js';

const info = (replid: string, offset: number): ReplicationInfo => ({
  role: 'slave',
  replid,
  replid2: '0'.repeat(40),
  secondOffset: -1,
  offset,
  linkUp: true,
  masterHost: '127.0.0.1',
  masterPort: 1,
  connectedReplicas: 0,
});

describe('PositionBook: positions another process saw (a worker adopting the controller’s book)', () => {
  test('taken unless the book holds a later position of the same history', () => {
    const book = new PositionBook(() => ({ resp3: false, connectTimeoutMs: 100 }), 100);
    book.adopt('r1', info('a'.repeat(40), 100));
    assert.equal(book.get('r1')?.offset, 100);
    book.observe('r1', info('a'.repeat(40), 500)); // this worker's own check, later
    book.adopt('r1', info('a'.repeat(40), 300));
    assert.equal(book.get('r1')?.offset, 500, 'an older answer does not lower it');
    book.adopt('r1', info('b'.repeat(40), 10));
    assert.equal(book.get('r1')?.replid, 'b'.repeat(40), 'a new history replaces it');
    assert.deepEqual(
      book.entries().map(([id, i]) => [id, i.offset]),
      [['r1', 10]],
    );
    book.close();
  });
});
