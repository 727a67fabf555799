import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { formatSwitchover, runSwitchoverCommand } from './switchover.js';

describe('rwsplit switchover', () => {
  test('prints the outcome, the re-pointed replicas and every note', () => {
    const text = formatSwitchover({
      kind: 'switchover',
      shard: 'default',
      from: 'pg-primary',
      to: 'pg-replica1',
      elapsedMs: 231,
      repointed: ['pg-replica2'],
      notRepointed: [],
      syncStandbyNames: 'ANY 1 (replica1, replica2)',
      warnings: ['pg-primary is read-only and fenced'],
    });
    assert.equal(
      text,
      [
        'switchover of shard default: pg-primary -> pg-replica1 in 231 ms',
        're-pointed replicas: pg-replica2',
        'synchronous_standby_names on pg-replica1: ANY 1 (replica1, replica2)',
        'note: pg-primary is read-only and fenced',
      ].join('\n'),
    );
  });

  test('says where to find the token when none is given', async () => {
    const saved = process.env.RWSPLIT_ADMIN_TOKEN;
    delete process.env.RWSPLIT_ADMIN_TOKEN;
    try {
      await assert.rejects(
        runSwitchoverCommand({ http: 'http://127.0.0.1:1' }),
        /--token T or set RWSPLIT_ADMIN_TOKEN/,
      );
    } finally {
      if (saved !== undefined) process.env.RWSPLIT_ADMIN_TOKEN = saved;
    }
  });
});
