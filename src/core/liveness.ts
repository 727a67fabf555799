/**
 * "Is this node alive?" — the one rule both monitors (PostgreSQL and Redis) and both failover
 * controllers apply. No sockets here: the monitors feed it what they saw.
 *
 * - A node is failed, for a failover, when it was *confirmed* down (a fresh connection
 *   attempt was refused: nothing listens on its port any more — the server process is gone),
 *   or when it has been failing for `detectMs` with at least two failed probes in a row. The
 *   first is unambiguous and acts at once; the second is for what cannot be told apart from a
 *   frozen or partitioned node (timeouts), where promoting early would risk two primaries.
 * - A probe that timed out is not evidence against the node when rwsplit itself was the slow
 *   party: the event loop stalled for part of the probe's time (discounted: the probe gets its
 *   full time of its own), or the node's connections kept delivering bytes meanwhile (it is
 *   plainly alive; the probe answer is queued behind them).
 */
import { performance } from 'node:perf_hooks';

/** A node's current run of failures, as a monitor keeps it. */
export interface FailureRun {
  /** consecutive probes that failed; 0 after any success */
  failedProbes: number;
  /** when the node was first seen failing in this run (a probe sent, or a data-path error); null when healthy */
  failingSince: number | null;
  /** when a fresh connection attempt was refused during this run (the server is gone), else null */
  confirmedDownAt?: number | null;
}

/**
 * A primary is failed when it was confirmed down, or when it has been failing for at least
 * `detectMs` and at least two probes in a row failed: one lost probe, or one broken data-path
 * connection, is never enough on its own.
 */
export function nodeFailed(run: FailureRun, now: number, detectMs: number): boolean {
  if (run.confirmedDownAt != null) return true;
  return run.failedProbes >= 2 && run.failingSince !== null && now - run.failingSince >= detectMs;
}

/** What one connection attempt made to confirm a failure found. */
export type ConnectOutcome =
  /** nothing listens on the port: the server process is gone (unambiguous) */
  | 'refused'
  /** something accepted the connection: the node may be alive */
  | 'open'
  /** no answer in time: a frozen or partitioned node looks the same (ambiguous) */
  | 'timeout'
  /** anything else (unreachable network, …): ambiguous */
  | 'error';

const SAMPLE_MS = 20;

/**
 * Measures how long this process's event loop was stalled: a timer that should fire every
 * 20 ms notes how late it fires. `stalledMs()` is a running total, so a probe can subtract
 * the value at its start from the value at its deadline.
 */
export class LoopStallMeter {
  private total = 0;
  private last = performance.now();
  private timer: NodeJS.Timeout | null = null;
  private users = 0;

  /** Starts sampling (counted: each start needs a stop). */
  start(): void {
    if (this.users++ > 0) return;
    this.last = performance.now();
    this.timer = setInterval(() => this.sample(), SAMPLE_MS);
    this.timer.unref();
  }

  stop(): void {
    if (--this.users > 0 || !this.timer) return;
    clearInterval(this.timer);
    this.timer = null;
  }

  /** Milliseconds the loop has been stalled in total, including a stall going on right now. */
  stalledMs(): number {
    const now = performance.now();
    return this.total + Math.max(0, now - this.last - SAMPLE_MS);
  }

  private sample(): void {
    const now = performance.now();
    this.total += Math.max(0, now - this.last - SAMPLE_MS);
    this.last = now;
  }
}

/** The process-wide meter both monitors share. */
export const loopStall = new LoopStallMeter();

/** When each node's data-path connections last delivered bytes (performance.now() ms). */
export class DataActivity {
  private readonly lastAt = new Map<string, number>();

  /** Called by the data path for each chunk received from a node. */
  received(nodeId: string, at = performance.now()): void {
    this.lastAt.set(nodeId, at);
  }

  /** Did the node deliver bytes at or after `since` (performance.now() ms)? */
  deliveredSince(nodeId: string, since: number): boolean {
    return (this.lastAt.get(nodeId) ?? -Infinity) >= since;
  }
}

/** The process-wide record the data paths write and the monitors read. */
export const dataActivity = new DataActivity();

/** A probe that had its full time of its own and no answer: ambiguous evidence (frozen, partitioned). */
export class ProbeTimeout extends Error {
  readonly code = 'PROBE_TIMEOUT';
}

/**
 * A probe that ran out of time while the node's connections were delivering data: no
 * evidence against the node (it is alive; the probe's answer is queued behind that data).
 * Monitors drop such a probe: the node is neither marked down nor counted as failing.
 */
export class ProbeExcused extends Error {
  readonly code = 'PROBE_EXCUSED';
}

/**
 * A probe deadline that does not count rwsplit's own stalls against the node: `work` races
 * `deadline`, which rejects once the probe has had `ms` of time of its own (wall time minus
 * event-loop stall), with ProbeExcused when the node delivered data on the data path within
 * the last `ms`. A timer firing late gives pending I/O one turn first (setImmediate runs after
 * the poll phase), so a reply read in the same loop turn wins.
 */
export async function withProbeDeadline<T>(
  ms: number,
  nodeId: string,
  work: (deadline: Promise<never>) => Promise<T>,
): Promise<T> {
  const startedAt = performance.now();
  const stalledAtStart = loopStall.stalledMs();
  let timer: NodeJS.Timeout | undefined;
  let settled = false;
  const deadline = new Promise<never>((_, reject) => {
    const check = (): void => {
      if (settled) return;
      const now = performance.now();
      const own = now - startedAt - (loopStall.stalledMs() - stalledAtStart);
      if (own < ms) {
        timer = setTimeout(arm, Math.max(1, ms - own));
        return;
      }
      if (dataActivity.deliveredSince(nodeId, now - ms))
        reject(new ProbeExcused(`no probe answer within ${ms} ms, but ${nodeId} is delivering data`));
      else reject(new ProbeTimeout(`no answer within ${ms} ms`));
    };
    const arm = (): void => void setImmediate(check);
    timer = setTimeout(arm, ms);
  });
  deadline.catch(() => undefined); // a step that lost the race must not leave an unhandled rejection
  try {
    return await work(deadline);
  } finally {
    settled = true;
    clearTimeout(timer);
  }
}
