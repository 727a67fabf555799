import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { runScenario, type RunResult, type RunSettings } from '../chaos/runner.js';
import { selectScenarios } from '../chaos/scenarios.js';

/**
 * The short version of `npm run chaos`: a few scenarios, once each, with short phases. It
 * asserts correctness only — no acknowledged write lost (synchronous replication, Redis
 * WAIT), no stale read for a session's own writes, no write acknowledged by two primaries —
 * never a timing; chaos/results/chaos-report.md has the timings.
 */
const SHORT: RunSettings = {
  timing: { warmupMs: 1500, afterMs: 3000, freezeMs: 5000, lagMs: 2000 },
  load: { writers: 4, rywSessions: 4, readers: 2, pauseMs: 2 },
  pgReplication: 'sync',
  redisWaitReplicas: true,
};

function explain(r: RunResult): string {
  const f = r.figures;
  if (f === null) return `run failed: ${r.error}`;
  return JSON.stringify({
    lostSample: f.lostSample,
    staleSample: f.staleSample,
    doubleSample: f.doubleSample,
    errors: f.distinctErrors.slice(0, 5),
    end: r.end,
    events: r.events,
  });
}

describe('chaos, short: correctness under faults', () => {
  const scenarios = selectScenarios([
    'pg-kill-primary',
    'pg-sigstop-primary',
    'pg-lagging-replica',
    'redis-kill-primary',
  ]);
  for (const scenario of scenarios) {
    test(`${scenario.name}: no acknowledged write lost, no stale read, no double-primary ack`, async () => {
      const r = await runScenario(scenario, SHORT, 1);
      assert.equal(r.error, null, explain(r));
      const f = r.figures!;
      assert.ok(
        f.writesAcked > 0 && f.checkedReads > 0,
        `the load ran: ${f.writesAcked} writes, ${f.checkedReads} reads`,
      );
      assert.equal(f.ackedWritesLost, 0, explain(r));
      assert.equal(f.staleReads, 0, explain(r));
      assert.equal(f.doublePrimaryAcks, 0, explain(r));
      if (scenario.name.endsWith('kill-primary'))
        assert.notEqual(r.promoted, null, `a replica was promoted: ${explain(r)}`);
      // After a promotion the old primary gets no traffic: fenced, or down when it was killed.
      if (r.promoted !== null)
        assert.match(r.end!.proxyStates[r.initialPrimary!] ?? '', /^(fenced|down)$/, explain(r));
    });
  }
});
