/**
 * Rendezvous, or highest-random-weight, hashing (Thaler & Ravishankar, 1998): every server
 * scores every key, the highest score wins. Removing a server moves only the keys it owned
 * (the other scores do not change); adding one moves only the keys it now wins. Costs one
 * score per server per key, fine for the handful of shards rwsplit fronts.
 *
 * Weighted variant (Schindelhauer & Schomaker, "Weighted distributed hash tables", 2005):
 * with `u` uniform in (0, 1), `score = weight / -ln(u)`. `-ln(u)` is exponentially
 * distributed, so `score` is the inverse of an exponential variable of rate `weight`, and the
 * largest score is the smallest such variable: server i wins with probability
 * `weight_i / sum(weights)`, exactly proportional to weight.
 */
import { fnv1a64Wide, keyHash32, keyHash64, type KeyHashName } from './hash-functions.js';
import type { Ring } from './ring-types.js';
import { validateServers, type ShardServer } from './servers.js';
import { mix64, toOpenUnitInterval, xor64, type Uint64 } from './uint64.js';

/** A weighted rendezvous ring over `servers`. */
export class RendezvousRing implements Ring {
  readonly size: number;
  /** Per-server 64-bit seeds, from the server's name (so order in the list does not matter). */
  private readonly seeds: readonly Uint64[];
  private readonly weights: readonly number[];
  /** All weights equal: `weight / -ln(u)` is then increasing in `u`, so `u` alone ranks. */
  private readonly uniform: boolean;

  /**
   * @param servers the shards; a server keeps its keys whatever its position in the list
   * @param hash the 64-bit key hash ({@link keyHash64}); default FNV-1a 64
   */
  constructor(
    servers: readonly ShardServer[],
    readonly hash: KeyHashName = 'fnv1a_64',
  ) {
    validateServers(servers);
    keyHash32(hash, Buffer.alloc(0)); // rejects an unknown name now, not on first locate
    this.size = servers.length;
    this.seeds = servers.map((s) => mix64(fnv1a64Wide(Buffer.from(s.name, 'utf8'))));
    this.weights = servers.map((s) => s.weight);
    this.uniform = servers.every((s) => s.weight === servers[0]?.weight);
  }

  /** Index into the servers of the shard owning `key` (apply `hashTagged()` first). */
  locate(key: Buffer): number {
    if (this.size === 1) return 0;
    const keyHash = keyHash64(this.hash, key);
    let best = 0;
    let bestScore = -1;
    for (let i = 0; i < this.size; i++) {
      const score = this.score(keyHash, i);
      // Strictly greater: on an exact tie the earlier server wins, deterministically.
      if (score > bestScore) {
        best = i;
        bestScore = score;
      }
    }
    return best;
  }

  /** Server `i`'s score for a key: `weight / -ln(u)`, `u` from mixing key hash and seed (or `u` alone, see `uniform`). */
  private score(keyHash: Uint64, i: number): number {
    // The mix is a bijection with full avalanche, so distinct seeds give independent u's.
    const u = toOpenUnitInterval(mix64(xor64(keyHash, this.seeds[i] as Uint64)));
    return this.uniform ? u : (this.weights[i] as number) / -Math.log(u);
  }
}
