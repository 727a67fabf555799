/**
 * Time-decayed exponentially weighted moving average, used for per-node request latency
 * (the `lowest-latency` balancing strategy).
 *
 * Why decay by elapsed time and not by sample count: a count-based EWMA (`v = a*x + (1-a)*v`)
 * forgets at the speed traffic arrives. A busy node would forget a slow spell in milliseconds
 * while a node that gets one read a minute would carry a latency from an hour ago; worse, the
 * balancer itself decides which node gets traffic, so the estimate's memory would depend on the
 * balancer's own choices. Decaying by time gives every node the same memory (`halfLifeMs`),
 * whatever its request rate: a sample's weight halves every half-life, so "recent" means the
 * same thing on every node.
 *
 * Formulation: each sample enters with weight 1 and its weight decays by `2^(-age/halfLife)`;
 * the value is the weighted mean. Stored incrementally as the mean and the total weight, so
 * samples that arrive in the same millisecond are averaged (not ignored, as they would be by
 * `v = v*d + x*(1-d)` with `d = 1` at zero elapsed time), and a long idle gap cannot underflow
 * the ratio (the old weight just reaches 0 and the next sample takes over). While no sample
 * arrives the value stays where it was: idleness is no evidence that a node became faster.
 */
export class Ewma {
  private readonly halfLifeMs: number;
  private mean: number;
  /** Sum of the decayed weights of every sample so far, as of `lastMs`; 0 before the first sample. */
  private weight = 0;
  private lastMs = Number.NaN;

  /**
   * @param halfLifeMs time after which a sample counts half as much (> 0)
   * @param initial value reported before the first sample (default NaN, "unknown"); the first
   *   sample replaces it rather than being averaged with a guess
   */
  constructor(halfLifeMs: number, initial = Number.NaN) {
    if (!(halfLifeMs > 0) || !Number.isFinite(halfLifeMs)) {
      throw new RangeError(`Ewma half-life must be a positive finite number of ms, got ${halfLifeMs}`);
    }
    this.halfLifeMs = halfLifeMs;
    this.mean = initial;
  }

  /**
   * Adds one sample observed at `nowMs` (a monotonic clock such as `performance.now()`).
   * Non-finite samples are ignored; a clock that goes backwards counts as no time elapsed.
   */
  update(sampleMs: number, nowMs: number): void {
    if (!Number.isFinite(sampleMs)) return;
    if (this.weight === 0 || Number.isNaN(this.lastMs)) {
      this.mean = sampleMs;
      this.weight = 1;
      this.lastMs = nowMs;
      return;
    }
    const elapsed = Math.max(0, nowMs - this.lastMs);
    const decayed = this.weight * Math.pow(2, -elapsed / this.halfLifeMs);
    const total = decayed + 1;
    this.mean = (this.mean * decayed + sampleMs) / total;
    this.weight = total;
    this.lastMs = Math.max(this.lastMs, nowMs);
  }

  /** The current average, or the `initial` value (NaN by default) before any sample. */
  get value(): number {
    return this.mean;
  }
}
