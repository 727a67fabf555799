/**
 * The factory choosing a placement algorithm by name (the config value). A ring maps a key,
 * already reduced to its hash tag, to an index into the shard list (see ring-types.ts).
 */
import { ShardingError } from './errors.js';
import { assertKeyHashName } from './hash-functions.js';
import { JumpRing } from './jump.js';
import { KetamaRing } from './ketama.js';
import { RendezvousRing } from './rendezvous.js';
import type { Ring, RingKind, RingOptions } from './ring-types.js';
import { validateServers, type ShardServer } from './servers.js';

export type { ShardServer } from './servers.js';

export type { Ring, RingKind, RingOptions } from './ring-types.js';

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
