import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import type { RunFigures } from './checker.js';
import { median, mergeErrors, renderMarkdown, summarize, tableRow, type ChaosReport } from './report.js';
import type { RunResult, RunSettings } from './runner.js';

function figures(over: Partial<RunFigures> = {}): RunFigures {
  return {
    writeUnavailabilityMs: 100,
    baselineGapMs: 10,
    writesResumeMs: 90,
    longestSessionStallMs: 100,
    longestSessionStall: null,
    writesAcked: 1000,
    writesAckedAfterFault: 500,
    clientErrors: 0,
    distinctErrors: [],
    errorSample: [],
    reconnects: 0,
    ackedWritesLost: 0,
    lostSample: [],
    checkedReads: 100,
    staleReads: 0,
    staleSample: [],
    checkedReadsOnReplicas: 1,
    checkedReadsByNode: {},
    doublePrimaryAcks: 0,
    doubleSample: [],
    writeNodes: ['p'],
    ...over,
  };
}

function run(scenario: string, n: number, f: RunFigures | null, over: Partial<RunResult> = {}): RunResult {
  return {
    scenario,
    engine: scenario.startsWith('redis') ? 'redis' : 'postgres',
    run: n,
    startedAt: '2026-01-01T00:00:00.000Z',
    victim: 'p',
    initialPrimary: 'p',
    promoted: null,
    window: { loadStart: 0, faultAt: 1000, loadEnd: 2000 },
    figures: f,
    end: null,
    events: [],
    error: f === null ? 'cluster did not start' : null,
    ...over,
  };
}

describe('summaries', () => {
  test('median of odd and even counts', () => {
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 2, 3]), 2.5);
  });

  test('timings get median and max; correctness counts are totals over the runs', () => {
    const runs = [
      run('pg-kill-primary', 1, figures({ writeUnavailabilityMs: 1200, clientErrors: 3, staleReads: 1 }), {
        promoted: 'r1',
      }),
      run(
        'pg-kill-primary',
        2,
        figures({ writeUnavailabilityMs: 2400, clientErrors: 5, ackedWritesLost: 2 }),
        {
          promoted: 'r2',
        },
      ),
      run(
        'pg-kill-primary',
        3,
        figures({ writeUnavailabilityMs: 1800, clientErrors: 4, writesResumeMs: null }),
        {
          promoted: 'r1',
        },
      ),
      run('redis-kill-replica', 1, figures({ doublePrimaryAcks: 0 })),
      run('redis-kill-replica', 2, null),
    ];
    const [pg, redis] = summarize(runs, new Map([['pg-kill-primary', 'kill it']]));
    assert.ok(pg && redis);
    assert.deepEqual(pg.writeUnavailabilityMs, { median: 1800, max: 2400 });
    assert.deepEqual(pg.clientErrors, { median: 4, max: 5 });
    assert.equal(pg.neverResumed, 1);
    assert.deepEqual(pg.writesResumeMs, { median: 90, max: 90 });
    assert.equal(pg.ackedWritesLost, 2);
    assert.equal(pg.staleReads, 1);
    assert.equal(pg.checkedReads, 300);
    assert.equal(pg.description, 'kill it');
    assert.deepEqual(pg.promoted, ['r1', 'r2', 'r1']);
    assert.equal(redis.failedRuns, 1);
    assert.equal(redis.doublePrimaryAcks, null, 'Redis replies do not name the server');
    const row = tableRow(pg);
    assert.match(row, /\| 1800 \(2400\) \|/);
    assert.match(row, /never in 1/);
    assert.match(row, /r1 ×2, r2 ×1/);
  });

  test('a run whose final state could not be read leaves the loss unknown', () => {
    const [s] = summarize([run('pg-kill-primary', 1, figures({ ackedWritesLost: null }))], new Map());
    assert.equal(s?.ackedWritesLost, null);
    assert.match(tableRow(s!), /\| unknown \|/);
  });

  test('distinct errors of several runs add up', () => {
    const e = { kind: 'write' as const, code: '57P01', message: 'terminating', count: 2 };
    const merged = mergeErrors([[e], [{ ...e, count: 3 }], [{ ...e, code: null, count: 1 }]]);
    assert.deepEqual(
      merged.map((m) => [m.code, m.count]),
      [
        ['57P01', 5],
        [null, 1],
      ],
    );
  });

  test('the Markdown has the table, the errors and the failed runs', () => {
    const settings: RunSettings = {
      timing: { warmupMs: 1, afterMs: 2, freezeMs: 3, lagMs: 4 },
      load: { writers: 1, rywSessions: 1, readers: 1, pauseMs: 0 },
      pgReplication: 'sync',
      redisWaitReplicas: true,
    };
    const errors = [{ kind: 'connect' as const, code: 'ECONNREFUSED', message: 'connect refused', count: 7 }];
    const runs = [
      run('pg-proxy-restart', 1, figures({ distinctErrors: errors, clientErrors: 7 })),
      run('pg-proxy-restart', 2, null),
    ];
    const report: ChaosReport = {
      date: 'today',
      commit: 'abc',
      machine: { nproc: 2 },
      settings,
      rwsplit: {},
      summaries: summarize(runs, new Map()),
      runs,
    };
    const md = renderMarkdown(report);
    assert.match(md, /^\| pg-proxy-restart \| 2 \(1 failed\) \|/m);
    assert.match(md, /7 × connect ECONNREFUSED: connect refused/);
    assert.match(md, /pg-proxy-restart #2: cluster did not start/);
  });
});
