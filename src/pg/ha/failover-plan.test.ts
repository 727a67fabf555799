import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { primaryFailed, rankCandidates, type CandidatePosition } from './failover-plan.js';

describe('primaryFailed', () => {
  test('needs both the time and two failed probes', () => {
    assert.equal(primaryFailed({ failedProbes: 0, failingSince: null }, 10_000, 1500), false);
    assert.equal(
      primaryFailed({ failedProbes: 1, failingSince: 0 }, 10_000, 1500),
      false,
      'one lost probe is never enough, however long ago',
    );
    assert.equal(
      primaryFailed({ failedProbes: 5, failingSince: 9_000 }, 10_000, 1500),
      false,
      'a short outage (a flapping primary) is not a failure',
    );
    assert.equal(primaryFailed({ failedProbes: 2, failingSince: 8_500 }, 10_000, 1500), true);
  });

  test('a data-path failure starts the clock but the probes still decide', () => {
    // the proxy saw the connection break at 7000; no probe has failed yet
    assert.equal(primaryFailed({ failedProbes: 0, failingSince: 7_000 }, 10_000, 1500), false);
    assert.equal(primaryFailed({ failedProbes: 2, failingSince: 7_000 }, 8_000, 1500), false);
    assert.equal(primaryFailed({ failedProbes: 2, failingSince: 7_000 }, 8_500, 1500), true);
  });
});

const c = (id: string, order: number, receiveLsn: string | null, replayLsn: string | null) =>
  ({ id, order, receiveLsn, replayLsn }) satisfies CandidatePosition;

describe('rankCandidates', () => {
  test('the most WAL received wins, even when it replayed less', () => {
    const ranked = rankCandidates([
      c('r1', 1, '0/5000000', '0/5000000'),
      c('r2', 2, '0/6000000', '0/4000000'),
    ]);
    assert.deepEqual(
      ranked.map((x) => x.id),
      ['r2', 'r1'],
    );
  });

  test('replay breaks a tie in received WAL, then the configured order', () => {
    assert.deepEqual(
      rankCandidates([
        c('r1', 1, '0/6000000', '0/5000000'),
        c('r2', 2, '0/6000000', '0/5800000'),
        c('r3', 3, '0/6000000', '0/5800000'),
      ]).map((x) => x.id),
      ['r2', 'r3', 'r1'],
    );
    assert.deepEqual(
      rankCandidates([c('r3', 3, null, null), c('r2', 2, null, null)]).map((x) => x.id),
      ['r2', 'r3'],
      'nothing known: configured order',
    );
  });

  test('a replica that never streamed counts with what it replayed; unknown positions rank last', () => {
    assert.deepEqual(
      rankCandidates([
        c('r1', 1, null, null),
        c('r2', 2, '0/3000000', '0/3000000'),
        c('r3', 3, null, '1/0'),
      ]).map((x) => x.id),
      ['r3', 'r2', 'r1'],
    );
  });

  test('does not reorder its input', () => {
    const input = [c('r1', 1, '0/1', '0/1'), c('r2', 2, '0/2', '0/2')];
    rankCandidates(input);
    assert.deepEqual(
      input.map((x) => x.id),
      ['r1', 'r2'],
    );
  });
});
