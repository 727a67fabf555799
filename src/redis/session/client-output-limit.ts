/**
 * Redis's `client-output-buffer-limit` for one client: the bytes waiting to reach it (its
 * socket's queue plus replies the proxy holds back for order) against the limits of its class
 * (`redis.limits.clientOutputBufferLimit`). Past the hard limit, or past the soft limit for
 * longer than its seconds, the client must be closed: a subscriber that stops reading while
 * others publish would otherwise take every byte of the proxy's memory.
 *
 * A class whose limits are 0 (normal and blocked clients, as in Redis) is bounded instead by
 * backpressure: the session stops reading the client's commands while their replies wait
 * (`overHighWater`), so what is queued is at most the replies of the commands already read.
 */

/** Redis's classes, plus blocked clients (a BLPOP waiting), which Redis counts as normal. */
export type OutputClass = 'normal' | 'pubsub' | 'monitor' | 'blocked';

export interface OutputLimit {
  hardBytes: number;
  softBytes: number;
  softSeconds: number;
}

export type OutputLimits = Record<OutputClass, OutputLimit>;

/** Queued reply bytes past which a session stops reading the client's commands. */
export const OUTPUT_HIGH_WATER = 1024 * 1024;

export class ClientOutputLimit {
  /** when the client went over its soft limit (ms since epoch), or null while under it */
  private softSince: number | null = null;

  constructor(private readonly limits: OutputLimits) {}

  /**
   * Checks `queued` bytes for a client of class `cls`; returns why it must be closed, or null.
   * Called after each write to the client.
   */
  check(cls: OutputClass, queued: number, now = Date.now()): string | null {
    const { hardBytes, softBytes, softSeconds } = this.limits[cls];
    if (hardBytes > 0 && queued >= hardBytes)
      return `${queued} bytes of replies queued reached the hard limit of ${hardBytes} (redis.limits.clientOutputBufferLimit.${cls}.hardBytes)`;
    if (softBytes > 0 && queued >= softBytes) {
      this.softSince ??= now;
      if (now - this.softSince >= softSeconds * 1000)
        return `${queued} bytes of replies queued stayed over the soft limit of ${softBytes} for ${softSeconds} s (redis.limits.clientOutputBufferLimit.${cls}.softBytes)`;
    } else {
      this.softSince = null;
    }
    return null;
  }
}
