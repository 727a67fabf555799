/**
 * The adversarial suite's short version (the full one: `npm run chaos -- --adversarial`):
 * misbehaving clients (a subscriber that never reads under a publish flood, silent connections,
 * a pipeline that never reads, garbage at a high connection rate, a connection hoarder, a
 * PostgreSQL client that stops reading a large result) against rwsplit as a child process,
 * with pgbench and redis-benchmark beside them. Each scenario must leave the well-behaved
 * clients without a single error, keep rwsplit's memory bounded, and deal with the offender
 * as its checks say (chaos/adversarial.ts). No timing is asserted.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  ADVERSARIAL_SCENARIOS,
  AdversarialStack,
  runAdversarial,
  SHORT_SETTINGS,
} from '../chaos/adversarial.js';
import { wellBehavedErrors } from '../chaos/adversarial-report.js';

describe('adversarial clients (short)', () => {
  let stack: AdversarialStack;

  before(async () => {
    stack = await AdversarialStack.start(SHORT_SETTINGS);
  });

  after(async () => {
    await stack?.stop();
  });

  for (const scenario of ADVERSARIAL_SCENARIOS) {
    test(`${scenario.name}: ${scenario.description}`, async () => {
      const r = await runAdversarial(stack, scenario, SHORT_SETTINGS);
      const summary = JSON.stringify(r);
      assert.equal(r.error, null, summary);
      assert.equal(wellBehavedErrors(r), 0, `well-behaved clients saw errors: ${summary}`);
      assert.ok(r.checks.length >= 2, summary);
      for (const c of r.checks) assert.ok(c.ok, `${c.name}: ${c.detail}`);
      assert.notEqual(r.offender, '', summary);
    });
  }
});
