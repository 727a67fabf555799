/**
 * How many keys change shard between two rings, e.g. before and after adding a shard. The
 * admin endpoint runs it over a sample of keys to show what a topology change would cost.
 */
import type { Ring } from './ring.js';

/** Result of {@link movement}. */
export interface MovementReport {
  /** Keys whose shard differs between the two rings. */
  moved: number;
  /** Keys examined. */
  total: number;
  /** `moved / total`, 0 when there were no keys. */
  fraction: number;
  /** For moved keys only: shard index in `after` -> number of keys moving there. */
  byDestination: Map<number, number>;
}

/** Compares where `before` and `after` place each of `keys` (pass hash-tagged keys). */
export function movement(before: Ring, after: Ring, keys: Iterable<Buffer>): MovementReport {
  let moved = 0;
  let total = 0;
  const byDestination = new Map<number, number>();
  for (const key of keys) {
    total++;
    const to = after.locate(key);
    if (before.locate(key) !== to) {
      moved++;
      byDestination.set(to, (byDestination.get(to) ?? 0) + 1);
    }
  }
  return { moved, total, fraction: total === 0 ? 0 : moved / total, byDestination };
}
