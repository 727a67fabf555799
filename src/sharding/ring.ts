/**
 * The common face of the placement algorithms, and a factory choosing one by name (the config
 * value). A ring maps a key, already reduced to its hash tag, to an index into the shard list.
 */
import { ShardingError } from './errors.js';
import { assertKeyHashName, type KeyHashName } from './hash-functions.js';
import { JumpRing } from './jump.js';
import { KetamaRing } from './ketama.js';
import { RendezvousRing } from './rendezvous.js';
import { validateServers, type ShardServer } from './servers.js';

export type { ShardServer } from './servers.js';

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

/**
 * A ring of `kind` over `servers`. `jump` numbers shards by position and cannot weight them:
 * unequal weights are refused rather than silently ignored.
 */
export function createRing(kind: RingKind, servers: readonly ShardServer[], opts: RingOptions = {}): Ring {
  const hash = opts.hash ?? 'fnv1a_64';
  assertKeyHashName(hash);
  switch (kind) {
    case 'ketama':
      return new KetamaRing(servers, hash);
    case 'rendezvous':
      return new RendezvousRing(servers, hash);
    case 'jump':
      validateServers(servers);
      if (servers.some((s) => s.weight !== servers[0]?.weight)) {
        throw new ShardingError(
          'WEIGHTS_UNSUPPORTED',
          "jump hash cannot weight shards: give every server the same weight, or use 'ketama' or 'rendezvous'",
        );
      }
      return new JumpRing(servers.length, hash);
    default:
      throw new ShardingError(
        'BAD_RING_KIND',
        `unknown ring kind '${String(kind)}': use 'ketama', 'jump' or 'rendezvous'`,
      );
  }
}
