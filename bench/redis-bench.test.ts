/**
 * The Redis benchmark's pure parts: reading redis-benchmark's CSV and turning runs into cells.
 * Not part of `npm test` (scripts/run-tests.js runs dist/src and dist/test only); run with
 * `node --test dist/bench/redis-bench.test.js`.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { parseRedisBenchmarkCsv } from './redis-benchmark.js';
import { median, summarize, type RedisRunResult } from './redis-report.js';

const HEADER =
  '"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"';

describe('parseRedisBenchmarkCsv', () => {
  test('reads every test line by header name', () => {
    const out = [
      HEADER,
      '"SET","87413.00","0.301","0.080","0.287","0.431","0.599","2.055"',
      '"GET","93197.50","0.280","0.072","0.271","0.399","0.551","1.903"',
      '',
    ].join('\n');
    const { rows, messages } = parseRedisBenchmarkCsv(out);
    assert.deepEqual(rows, [
      { test: 'SET', rps: 87413, avgLatencyMs: 0.301, p50LatencyMs: 0.287, p99LatencyMs: 0.599 },
      { test: 'GET', rps: 93197.5, avgLatencyMs: 0.28, p50LatencyMs: 0.271, p99LatencyMs: 0.551 },
    ]);
    assert.deepEqual(messages, []);
  });

  test('keeps warnings and errors, once each, and no row for an aborted run', () => {
    const out = [
      'WARNING: Could not fetch server CONFIG',
      HEADER,
      'Error from server: ERR unknown command',
      'Error from server: ERR unknown command',
    ].join('\n');
    const { rows, messages } = parseRedisBenchmarkCsv(out);
    assert.deepEqual(rows, []);
    assert.deepEqual(messages, [
      'WARNING: Could not fetch server CONFIG',
      'Error from server: ERR unknown command',
    ]);
  });
});

function run(over: Partial<RedisRunResult>): RedisRunResult {
  return {
    round: 1,
    mode: 'P1',
    command: 'GET',
    contender: 'direct',
    args: [],
    exitCode: 0,
    timedOut: false,
    rps: 100,
    avgLatencyMs: 1,
    p99LatencyMs: 2,
    proxyCpuUsPerRequest: null,
    callsByNode: {},
    messages: [],
    ...over,
  };
}

describe('summarize', () => {
  test('median over successful rounds, ratio to direct of the same mode and command', () => {
    const cells = summarize([
      run({ round: 1, rps: 100 }),
      run({ round: 1, contender: 'rwsplit', rps: 50, proxyCpuUsPerRequest: 10 }),
      run({ round: 2, rps: 300 }),
      run({ round: 2, contender: 'rwsplit', rps: 90, proxyCpuUsPerRequest: 20 }),
      run({ round: 3, rps: 200 }),
      run({ round: 3, contender: 'rwsplit', rps: 5, exitCode: 1 }),
      run({ round: 1, command: 'SET', rps: 400 }),
    ]);
    assert.equal(cells.length, 3);
    const [direct, rwsplit, set] = cells;
    assert.equal(direct?.rps, 200);
    assert.equal(rwsplit?.rps, 70); // (50 + 90) / 2; the failed run is left out
    assert.deepEqual(rwsplit?.rpsByRound, [50, 90, null]);
    assert.equal(rwsplit?.failedRuns, 1);
    assert.equal(rwsplit?.ratioToDirect, 0.35);
    assert.equal(rwsplit?.proxyCpuUsPerRequest, 15);
    assert.equal(set?.ratioToDirect, 1);
  });

  test('no ratio when direct failed', () => {
    const cells = summarize([run({ timedOut: true }), run({ contender: 'twemproxy', rps: 80 })]);
    assert.equal(cells[0]?.rps, null);
    assert.equal(cells[1]?.ratioToDirect, null);
  });

  test('median of nothing is null', () => {
    assert.equal(median([null, null]), null);
    assert.equal(median([3, 1, 2]), 2);
  });
});
