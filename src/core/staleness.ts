/**
 * Bounded staleness: decides, probe after probe, whether a replica
 * is close enough to the primary to receive reads. Hysteresis keeps a replica whose lag
 * hovers around the bound from flapping in and out of rotation: it leaves only after several
 * consecutive breaches, and returns only after several consecutive samples well under the
 * bound (`returnRatio * bound`), not merely under it.
 */

/** The staleness bound and its hysteresis. A `null` bound disables that dimension. */
export interface StalenessBound {
  maxLagBytes: number | null;
  maxLagMs: number | null;
  /** consecutive breaching samples before a replica leaves rotation (default 2) */
  breachesToLeave: number;
  /** consecutive healthy samples before it returns (default 3) */
  samplesToReturn: number;
  /** a replica returns only when lag <= returnRatio * bound (default 0.5) — the hysteresis band that prevents flapping */
  returnRatio: number;
}

/** 16 MiB or 10 s behind the primary, 2 breaches to leave, 3 samples under half the bound to return. */
export const DEFAULT_STALENESS: StalenessBound = Object.freeze({
  maxLagBytes: 16 * 1024 * 1024,
  maxLagMs: 10_000,
  breachesToLeave: 2,
  samplesToReturn: 3,
  returnRatio: 0.5,
});

/** A bound with a negative limit, a ratio outside [0, 1] or a non-integer count. */
export class InvalidStalenessBoundError extends Error {
  /** Stable machine-readable identifier of the failure. */
  readonly code = 'INVALID_STALENESS_BOUND';

  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** Per-replica hysteresis state. */
interface ReplicaState {
  lagging: boolean;
  /** consecutive breaching samples while in rotation */
  breaches: number;
  /** consecutive samples inside the return band while out of rotation */
  healthy: number;
}

/** Outcome of comparing one sample with the bound: no known dimension gives `unknown`. */
type Verdict = 'breach' | 'within' | 'unknown';

/** Tracks, per replica id, whether it is within the staleness bound. */
export class StalenessTracker {
  private bound: StalenessBound;
  private readonly replicas = new Map<string, ReplicaState>();

  constructor(bound: StalenessBound) {
    validateBound(bound);
    this.bound = { ...bound };
  }

  /**
   * Feeds one probe's lag for a replica; returns whether the replica is now within bound
   * (eligible). `null` means "not measured": a sample with no measured, bounded dimension
   * changes nothing (it neither breaks nor extends a streak), since a failed lag query is no
   * evidence either way; whether the node is reachable at all is the health checker's call.
   */
  observe(nodeId: string, lagBytes: number | null, lagMs: number | null): boolean {
    const state = this.stateOf(nodeId);
    if (!state.lagging) {
      const verdict = this.judge(lagBytes, lagMs, 1);
      if (verdict === 'breach') {
        state.breaches++;
        if (state.breaches >= this.bound.breachesToLeave) {
          state.lagging = true;
          state.breaches = 0;
          state.healthy = 0;
        }
      } else if (verdict === 'within') {
        state.breaches = 0;
      }
    } else {
      // Out of rotation: the sample must be inside the narrower return band, every dimension.
      const verdict = this.judge(lagBytes, lagMs, this.bound.returnRatio);
      if (verdict === 'within') {
        state.healthy++;
        if (state.healthy >= this.bound.samplesToReturn) {
          state.lagging = false;
          state.healthy = 0;
          state.breaches = 0;
        }
      } else if (verdict === 'breach') {
        state.healthy = 0;
      }
    }
    return !state.lagging;
  }

  /** Whether the replica is out of rotation for staleness; false for a replica never observed. */
  isLagging(nodeId: string): boolean {
    return this.replicas.get(nodeId)?.lagging ?? false;
  }

  /** Drops a replica's history (removed from the topology, or promoted to primary). */
  forget(nodeId: string): void {
    this.replicas.delete(nodeId);
  }

  /**
   * Replaces the bound (configuration reload). Each replica keeps its in/out state, but its
   * streaks restart: they were counted against the old bound.
   */
  setBound(bound: StalenessBound): void {
    validateBound(bound);
    this.bound = { ...bound };
    for (const state of this.replicas.values()) {
      state.breaches = 0;
      state.healthy = 0;
    }
  }

  private stateOf(nodeId: string): ReplicaState {
    let state = this.replicas.get(nodeId);
    if (state === undefined) {
      state = { lagging: false, breaches: 0, healthy: 0 };
      this.replicas.set(nodeId, state);
    }
    return state;
  }

  /**
   * Compares a sample with `ratio * bound` on each dimension that is both bounded and
   * measured: `breach` if any exceeds it, `within` if all measured ones are at or under it.
   */
  private judge(lagBytes: number | null, lagMs: number | null, ratio: number): Verdict {
    const checks: Array<[number | null, number | null]> = [
      [lagBytes, this.bound.maxLagBytes],
      [lagMs, this.bound.maxLagMs],
    ];
    let measured = false;
    for (const [lag, max] of checks) {
      if (lag === null || max === null || Number.isNaN(lag)) continue;
      measured = true;
      if (lag > max * ratio) return 'breach';
    }
    return measured ? 'within' : 'unknown';
  }
}

function validateBound(bound: StalenessBound): void {
  for (const key of ['maxLagBytes', 'maxLagMs'] as const) {
    const value = bound[key];
    if (value !== null && !(value >= 0)) {
      throw new InvalidStalenessBoundError(`staleness ${key} must be >= 0 or null, got ${value}`);
    }
  }
  for (const key of ['breachesToLeave', 'samplesToReturn'] as const) {
    const value = bound[key];
    if (!Number.isInteger(value) || value < 1) {
      throw new InvalidStalenessBoundError(`staleness ${key} must be an integer >= 1, got ${value}`);
    }
  }
  if (!(bound.returnRatio >= 0 && bound.returnRatio <= 1)) {
    throw new InvalidStalenessBoundError(
      `staleness returnRatio must be between 0 and 1, got ${bound.returnRatio}`,
    );
  }
}
