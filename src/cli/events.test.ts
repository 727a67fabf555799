import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { formatEventTable, sinceOption } from './events.js';

describe('rwsplit events', () => {
  test('--since takes epoch milliseconds or a duration ago', () => {
    const now = 1_700_000_000_000;
    assert.equal(sinceOption('1699999999000', now), 1_699_999_999_000);
    assert.equal(sinceOption('90s', now), now - 90_000);
    assert.equal(sinceOption('5m', now), now - 300_000);
    assert.equal(sinceOption('2h', now), now - 7_200_000);
    assert.equal(sinceOption('500ms', now), now - 500);
    assert.throws(() => sinceOption('yesterday', now), /duration/);
  });

  test('the table aligns columns and shows instance-wide events with "-"', () => {
    const table = formatEventTable(
      [
        { at: 1, node: 'pg-replica1', type: 'down', detail: 'connect ECONNREFUSED' },
        { at: 2, node: null, type: 'config-reload', detail: 'applied: logging.level' },
      ],
      (ms) => `t${ms}`,
    );
    assert.equal(
      table,
      [
        'TIME  NODE         EVENT          DETAIL',
        't1    pg-replica1  down           connect ECONNREFUSED',
        't2    -            config-reload  applied: logging.level',
      ].join('\n'),
    );
    assert.equal(formatEventTable([]), 'no events');
  });
});
