/**
 * The common face of the placement algorithms. Kept apart from the factory in ring.ts so the
 * algorithms can implement it without importing the factory that imports them.
 */
import type { KeyHashName } from './hash-functions.js';

/** Placement algorithms: twemproxy-compatible ketama, jump hash, weighted rendezvous. */
export type RingKind = 'ketama' | 'jump' | 'rendezvous';

/** Places keys on shards. */
export interface Ring {
  /** Index of the shard owning `key` (0..size-1); pass `hashTagged(key)`. */
  locate(key: Buffer): number;
  /** Number of shards. */
  readonly size: number;
}

/** Options of {@link createRing}. */
export interface RingOptions {
  /** Key hash; default `fnv1a_64`, twemproxy's default. */
  hash?: KeyHashName;
}
