import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { Recorder } from './checker.js';
import { runSession, startSessions, type SessionDriver } from './session-loop.js';

describe('session loop', () => {
  test('records failed connection attempts, reconnects after a broken step, closes at the end', async () => {
    const rec = new Recorder();
    const abort = new AbortController();
    let attempts = 0;
    let steps = 0;
    const closed: number[] = [];
    const driver: SessionDriver<number> = {
      connect: async () => {
        attempts++;
        if (attempts === 1) throw new Error('connect ECONNREFUSED');
        return attempts;
      },
      step: async () => {
        steps++;
        if (steps === 3) return false; // the connection broke
        if (steps === 6) abort.abort();
        return true;
      },
      close: async (conn) => {
        closed.push(conn);
      },
    };
    await runSession(4, driver, rec, abort.signal, { pauseMs: 0, reconnectDelayMs: 1 });
    assert.equal(attempts, 3, 'one refused, one first connection, one reconnection');
    assert.equal(steps, 6);
    assert.deepEqual(closed, [2, 3], 'the broken connection and, at the end, the last one');
    assert.equal(rec.reconnects, 1);
    assert.equal(rec.errors.length, 1);
    assert.equal(rec.errors[0]?.kind, 'connect');
    assert.equal(rec.errors[0]?.session, 4);
  });

  test('stop() waits for the step in flight', async () => {
    const rec = new Recorder();
    let finished = 0;
    const driver: SessionDriver<unknown> = {
      connect: async () => ({}),
      step: async () => {
        await new Promise((r) => setTimeout(r, 20));
        finished++;
        return true;
      },
      close: async () => undefined,
    };
    const load = startSessions([driver, driver], rec, { pauseMs: 0, reconnectDelayMs: 1 });
    await new Promise((r) => setTimeout(r, 5));
    await load.stop();
    const atStop = finished;
    assert.ok(atStop >= 2, `both sessions finished their step (${atStop})`);
    await new Promise((r) => setTimeout(r, 40));
    assert.equal(finished, atStop, 'no step starts after stop()');
  });
});
