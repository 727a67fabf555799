/**
 * One client session of the load generator, whatever the protocol: connect, run steps until
 * told to stop, and when the connection breaks, reconnect (every failed attempt is a
 * client-visible error) as an application with a retry loop would.
 */
import { setTimeout as delay } from 'node:timers/promises';

import type { Recorder } from './checker.js';

/** What a session does over one protocol; `step` records its own acks, reads and errors. */
export interface SessionDriver<C> {
  connect(): Promise<C>;
  /** Runs one operation (or one write-then-read pair); resolves false when the connection is no longer usable. */
  step(conn: C): Promise<boolean>;
  close(conn: C): Promise<void>;
}

export interface SessionLoopOptions {
  /** pause between steps, so a few sessions do not take every core of a small machine */
  pauseMs: number;
  /** wait before retrying a failed connection attempt */
  reconnectDelayMs: number;
}

/**
 * Runs a session until `stop` aborts. The step in flight when it aborts finishes (its
 * acknowledgement still counts: it is checked against the final state like any other).
 */
export async function runSession<C>(
  session: number,
  driver: SessionDriver<C>,
  rec: Recorder,
  stop: AbortSignal,
  opts: SessionLoopOptions,
): Promise<void> {
  let conn: C | null = null;
  let connectedBefore = false;
  while (!stop.aborted) {
    if (conn === null) {
      try {
        conn = await driver.connect();
      } catch (err) {
        rec.error(session, 'connect', err);
        await pause(opts.reconnectDelayMs, stop);
        continue;
      }
      if (connectedBefore) rec.reconnected();
      connectedBefore = true;
    }
    const usable = await driver.step(conn);
    if (!usable) {
      await driver.close(conn).catch(() => undefined);
      conn = null;
    }
    await pause(opts.pauseMs, stop);
  }
  if (conn !== null) await driver.close(conn).catch(() => undefined);
}

async function pause(ms: number, stop: AbortSignal): Promise<void> {
  if (ms <= 0 || stop.aborted) return;
  await delay(ms, undefined, { signal: stop }).catch(() => undefined);
}

/** A running set of sessions. */
export interface RunningLoad {
  /** Stops every session (each finishes the step in flight) and resolves when all are closed. */
  stop(): Promise<void>;
}

/** Starts one loop per driver; `stop()` aborts them all and waits. */
export function startSessions(
  drivers: SessionDriver<unknown>[],
  rec: Recorder,
  opts: SessionLoopOptions,
): RunningLoad {
  const abort = new AbortController();
  const loops = drivers.map((d, i) => runSession(i, d, rec, abort.signal, opts));
  return {
    stop: async () => {
      abort.abort();
      await Promise.all(loops);
    },
  };
}
