import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  dataActivity,
  loopStall,
  nodeFailed,
  ProbeExcused,
  ProbeTimeout,
  withProbeDeadline,
} from './liveness.js';

/** Blocks the event loop for `ms` (what a huge synchronous parse or copy does). */
function stall(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    /* busy */
  }
}

const never = new Promise<never>(() => undefined);

describe('nodeFailed', () => {
  test('a refused fresh connection fails the node at once; otherwise detectMs and two probes', () => {
    assert.equal(
      nodeFailed({ failedProbes: 0, failingSince: 1000, confirmedDownAt: 1001 }, 1002, 1500),
      true,
    );
    assert.equal(nodeFailed({ failedProbes: 1, failingSince: 0 }, 5000, 1500), false);
    assert.equal(nodeFailed({ failedProbes: 2, failingSince: 0 }, 1000, 1500), false);
    assert.equal(nodeFailed({ failedProbes: 2, failingSince: 0 }, 1500, 1500), true);
  });
});

describe('withProbeDeadline', () => {
  before(() => loopStall.start());
  after(() => loopStall.stop());

  test('a probe that never answers times out (ProbeTimeout)', async () => {
    await assert.rejects(
      withProbeDeadline(50, 'quiet', (d) => Promise.race([never, d])),
      (err: unknown) => err instanceof ProbeTimeout,
    );
  });

  test("rwsplit's own stall is not counted against the node", async () => {
    const answer = new Promise<string>((resolve) => setTimeout(() => resolve('ok'), 200));
    const probe = withProbeDeadline(100, 'stalled', (d) => Promise.race([answer, d]));
    // The loop is blocked longer than the probe's timeout; the answer comes 200 ms after the
    // start, i.e. within the probe's own 100 ms once the 150 ms stall is discounted.
    setTimeout(() => stall(150), 5);
    assert.equal(await probe, 'ok');
  });

  test('a node delivering data on the data path is excused, not timed out', async () => {
    const feeding = setInterval(() => dataActivity.received('busy'), 10);
    try {
      await assert.rejects(
        withProbeDeadline(50, 'busy', (d) => Promise.race([never, d])),
        (err: unknown) => err instanceof ProbeExcused,
      );
    } finally {
      clearInterval(feeding);
    }
  });
});
