/**
 * Replication lag from positions: byte lag from PostgreSQL LSNs, and
 * time lag from a history of the primary's positions, so neither depends on the nodes' clocks
 * nor on the primary being busy.
 */

/** A string that is not a PostgreSQL LSN, or a number out of the 64-bit LSN range. */
export class InvalidLsnError extends Error {
  /** Stable machine-readable identifier of the failure. */
  readonly code = 'INVALID_LSN';

  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

const MAX_LSN = (1n << 64n) - 1n;

/**
 * `pg_lsn` text is `X/Y`: the high and low 32 bits of the 64-bit WAL position in hex, 1 to 8
 * digits each (src/backend/utils/adt/pg_lsn.c: `pg_lsn_in_internal` reads up to
 * MAXPG_LSNCOMPONENT = 8 hex digits per part; `pg_lsn_out` prints `%X/%X`). Zero-padded
 * parts are accepted as well, as the server's input function does.
 */
const LSN_PATTERN = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

/** Parses a PostgreSQL LSN such as `16/B374D848` into its 64-bit byte position. */
export function parseLsn(s: string): bigint {
  const match = LSN_PATTERN.exec(s);
  if (match === null) throw new InvalidLsnError(`not a PostgreSQL LSN (expected hex 'X/Y'): '${s}'`);
  const [, high, low] = match as unknown as [string, string, string];
  return (BigInt(`0x${high}`) << 32n) | BigInt(`0x${low}`);
}

/** Formats a 64-bit byte position as PostgreSQL prints it (`%X/%X`, upper case, no padding). */
export function formatLsn(n: bigint): string {
  if (n < 0n || n > MAX_LSN) throw new InvalidLsnError(`LSN out of the 64-bit range: ${n}`);
  const high = (n >> 32n).toString(16).toUpperCase();
  const low = (n & 0xffffffffn).toString(16).toUpperCase();
  return `${high}/${low}`;
}

/**
 * Bytes by which `a` is ahead of `b` (`a - b`), 0 when it is not ahead (a replica that
 * already replayed more than the primary position we last saw is not lagging). As a number:
 * exact up to 2^53 bytes (8 PiB), far beyond any lag worth measuring.
 */
export function lsnDiff(a: bigint | string, b: bigint | string): number {
  const diff = toPosition(a) - toPosition(b);
  return diff > 0n ? Number(diff) : 0;
}

function toPosition(lsn: bigint | string): bigint {
  return typeof lsn === 'string' ? parseLsn(lsn) : lsn;
}

/**
 * Remembers recent (primary position, time seen) samples; a replica's time lag = now - time
 * the primary first reported a position beyond the replica's replayed position (0 when caught
 * up). Bounded memory (ring of the last N samples, default 600; when the replica is older than
 * the oldest sample, the age of the oldest sample is a lower bound).
 *
 * Why not `now() - pg_last_xact_replay_timestamp()` on the replica: it compares two machines'
 * clocks, and on an idle primary it grows forever although the replica has everything. Here
 * every time is the proxy's own (pass a monotonic clock such as `performance.now()`), and a
 * replica that replayed the primary's latest position has lag 0 however long ago that was.
 * The resolution is the probe interval: a position is "first seen" when a probe saw it.
 */
export class PositionHistory {
  private readonly positions: bigint[] = [];
  private readonly times: number[] = [];
  /** Index of the oldest sample in the ring. */
  private head = 0;
  private size = 0;

  /** @param maxSamples ring capacity (default 600: ten minutes of history at one probe a second) */
  constructor(private readonly maxSamples = 600) {
    if (!Number.isInteger(maxSamples) || maxSamples < 1) {
      throw new RangeError(`PositionHistory needs at least one sample of capacity, got ${maxSamples}`);
    }
  }

  /**
   * Records the primary's position as seen at `nowMs`. Only a position beyond the latest one
   * is kept: its time is when it was *first* seen, which is what the lag is measured from.
   */
  record(position: bigint, nowMs: number): void {
    const latest = this.latest;
    if (latest !== undefined && position <= latest) return;
    const slot = (this.head + this.size) % this.maxSamples;
    this.positions[slot] = position;
    this.times[slot] = nowMs;
    if (this.size < this.maxSamples) this.size++;
    else this.head = (this.head + 1) % this.maxSamples;
  }

  /**
   * Time lag of a replica that replayed up to `replayed`: how long ago the primary first
   * showed a position beyond it; 0 when it is at or beyond the latest known position (or
   * nothing is known yet).
   */
  lagMs(replayed: bigint, nowMs: number): number {
    const latest = this.latest;
    if (latest === undefined || replayed >= latest) return 0;
    // Positions increase along the ring: binary search for the first one beyond `replayed`.
    // When even the oldest is beyond it, the oldest sample's age is a lower bound.
    let lo = 0;
    let hi = this.size - 1; // the latest is beyond `replayed`, so the answer is in [0, size)
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.positionAt(mid) > replayed) hi = mid;
      else lo = mid + 1;
    }
    return Math.max(0, nowMs - this.timeAt(lo));
  }

  /** The highest position recorded, or undefined before the first sample. */
  get latest(): bigint | undefined {
    return this.size === 0 ? undefined : this.positionAt(this.size - 1);
  }

  /**
   * Forgets every sample: after a failover the new primary's positions may be below the old
   * one's, and `record` would otherwise ignore them until they overtook it.
   */
  clear(): void {
    this.head = 0;
    this.size = 0;
    this.positions.length = 0;
    this.times.length = 0;
  }

  /** Position of the i-th oldest sample (0 = oldest). */
  private positionAt(i: number): bigint {
    return this.positions[(this.head + i) % this.maxSamples] as bigint;
  }

  private timeAt(i: number): number {
    return this.times[(this.head + i) % this.maxSamples] as number;
  }
}
