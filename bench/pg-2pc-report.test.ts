/**
 * The cross-shard benchmark's pure parts: its pgbench scripts, reading COMMIT latency from
 * `pgbench -r` output, and turning runs into medians and ratios.
 * Run with `node --test dist/bench/pg-2pc-report.test.js`.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { headline, summarize, type RunCase, type TwoPcRunResult } from './pg-2pc-report.js';
import { accountsSetupSql, ACCOUNTS_PER_SHARD, commitLatencyMs, transferScript } from './pg-2pc-scripts.js';

function run(round: number, runCase: RunCase, tps: number | null, exitCode = 0): TwoPcRunResult {
  return {
    round,
    runCase,
    pgbenchArgs: [],
    exitCode,
    tps,
    transactions: tps === null ? null : tps * 10,
    failedTransactions: exitCode === 0 ? 0 : 3,
    abortedClients: exitCode === 0 ? 0 : 1,
    latencyAvgMs: tps === null ? null : 8000 / tps,
    commitLatencyMs: 1,
    proxyCpuUsPerTx: runCase === 'direct-single' ? null : 100,
    preparedRightAfter: 0,
    errors: [],
  };
}

describe('transferScript', () => {
  test('cross-shard: s1 then s2 by hint, inside one transaction', () => {
    const lines = transferScript('cross').trim().split('\n');
    const sql = lines.filter((l) => !l.startsWith('\\'));
    assert.equal(sql[0], 'BEGIN;');
    assert.match(sql[1] ?? '', /^\/\* rwsplit:shard=s1 \*\/ UPDATE accounts .* WHERE id = :a;$/);
    assert.match(sql[2] ?? '', /^\/\* rwsplit:shard=s2 \*\/ UPDATE accounts .* WHERE id = :b;$/);
    assert.equal(sql[3], 'COMMIT;');
    assert.ok(lines.includes(`\\set b random(${ACCOUNTS_PER_SHARD + 1}, ${2 * ACCOUNTS_PER_SHARD})`));
  });

  test('single-shard: one random shard for both statements; direct pins s1', () => {
    const single = transferScript('single', 3);
    assert.match(single, /^\\set sh random\(1, 3\)$/m);
    assert.equal(single.match(/rwsplit:shard=s:sh /g)?.length, 2);
    assert.match(transferScript('single-direct'), /^\\set sh 1$/m);
    // the amount is pasted in parentheses: `- -5` must never become `--5`, a comment
    assert.doesNotMatch(single, /[-+] :amount/);
  });

  test('each shard gets its own id range', () => {
    assert.match(accountsSetupSql(1)[1] ?? '', new RegExp(`generate_series\\(${ACCOUNTS_PER_SHARD + 1}, `));
  });
});

describe('commitLatencyMs', () => {
  test('reads the COMMIT line of pgbench 15 -r output (latency, failures, statement)', () => {
    const out = [
      'statement latencies in milliseconds and failures:',
      '         0.002           0  \\set a random(1, 50000)',
      '         0.151           0  BEGIN;',
      '         0.420           0  /* rwsplit:shard=s1 */ UPDATE accounts SET balance = balance - (:amount) WHERE id = :a;',
      '        14.650           0  COMMIT;',
    ].join('\n');
    assert.equal(commitLatencyMs(out), 14.65);
  });

  test('older format without the failures column, and no COMMIT line at all', () => {
    assert.equal(commitLatencyMs('         0.659  COMMIT;\n'), 0.659);
    assert.equal(commitLatencyMs('tps = 100\n'), null);
  });
});

describe('summarize and headline', () => {
  const runs = [
    run(1, 'direct-single', 3000),
    run(1, 'rwsplit-single', 1000),
    run(1, 'rwsplit-cross', 300),
    run(2, 'rwsplit-cross', 5000, 2), // a failed run: not in the medians
    run(2, 'rwsplit-single', 1200),
    run(2, 'direct-single', 2800),
    run(3, 'rwsplit-single', 1100),
    run(3, 'rwsplit-cross', 400),
    run(3, 'direct-single', 3100),
  ];

  test('medians over the rounds that exited 0, failures summed over all', () => {
    const cells = summarize(runs);
    assert.deepEqual(
      cells.map((c) => c.runCase),
      ['direct-single', 'rwsplit-single', 'rwsplit-cross'],
    );
    const cross = cells.find((c) => c.runCase === 'rwsplit-cross');
    assert.equal(cross?.tps, 350);
    assert.deepEqual(cross?.tpsByRound, [300, null, 400]);
    assert.equal(cross?.failedRuns, 1);
    assert.equal(cross?.failedTransactions, 3);
    assert.equal(cells.find((c) => c.runCase === 'direct-single')?.tps, 3000);
  });

  test('cross/single ratio from the medians and per round; single/direct', () => {
    const h = headline(summarize(runs), runs);
    assert.equal(h.crossToSingle, 350 / 1100);
    assert.deepEqual(h.crossToSingleByRound, [0.3, null, 400 / 1100]);
    assert.equal(h.singleToDirect, 1100 / 3000);
  });
});
