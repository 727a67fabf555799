/**
 * Ketama consistent hashing placing keys exactly like twemproxy 0.5 (`distribution: ketama`),
 * so rwsplit can take over a twemproxy pool without moving a key. Mirrors
 * src/hashkit/nc_ketama.c (`ketama_update`, `ketama_hash`, `ketama_item_cmp`,
 * `ketama_dispatch`) and `server_pool_hash` / `server_pool_idx` in src/nc_server.c.
 *
 * The ring ("continuum") holds 160 points per server on average, in proportion to weight.
 * Each server's points come from MD5 digests of `"<name>-<i>"`, four uint32 points per digest.
 * A key goes to the first point at or after its hash, wrapping to the first point.
 */
import { keyHash32, md5, type KeyHashName } from './hash-functions.js';
import type { Ring } from './ring-types.js';
import { totalWeight, validateServers, type ShardServer } from './servers.js';

export type { ShardServer } from './servers.js';

/** `KETAMA_POINTS_PER_SERVER`: average points per server. */
const POINTS_PER_SERVER = 160;
/** Points taken from one MD5 digest (`pointer_per_hash`). */
const POINTS_PER_HASH = 4;

/**
 * How many continuum points a server gets: `pointer_per_server` in `ketama_update`, computed
 * in C `float` (Math.fround at every step) because rounding decides the count, e.g. three
 * servers of equal weight. `+ 0.0000000001` is a double literal: that one addition is done in
 * double, then cast back to float.
 */
export function ketamaPointCount(weight: number, total: number, liveServers: number): number {
  const pct = Math.fround(weight / total);
  let x = Math.fround(pct * POINTS_PER_SERVER);
  x = Math.fround(x / 4);
  x = Math.fround(x * Math.fround(liveServers));
  const withEpsilon = Math.fround(x + 0.0000000001);
  return Math.floor(withEpsilon) * POINTS_PER_HASH;
}

/**
 * The four points of one digest (`ketama_hash` with alignment 0..3): bytes 4a..4a+3 of
 * MD5(`host`) read little-endian.
 *
 * twemproxy formats `host` with `snprintf` into an 86-byte buffer (`KETAMA_MAX_HOSTLEN`) but
 * hashes the untruncated length, so names whose `"<name>-<i>"` exceeds 85 bytes read past the
 * buffer there (undefined behaviour); here the whole string is hashed.
 */
function digestPoints(host: string): [number, number, number, number] {
  const digest = md5(host);
  return [digest.readUInt32LE(0), digest.readUInt32LE(4), digest.readUInt32LE(8), digest.readUInt32LE(12)];
}

/** A twemproxy-compatible ketama ring over `servers`. */
export class KetamaRing implements Ring {
  readonly size: number;
  /** Continuum point values, ascending. */
  private readonly values: Uint32Array;
  /** `owners[i]` is the server index of point `values[i]`. */
  private readonly owners: Uint32Array;

  /**
   * @param servers the pool, in config order (order matters only for ties, see below)
   * @param hash the key hash (twemproxy's `hash:`); the points always use MD5
   */
  constructor(
    servers: readonly ShardServer[],
    readonly hash: KeyHashName,
  ) {
    validateServers(servers);
    keyHash32(hash, Buffer.alloc(0)); // rejects an unknown name now, not on first locate
    this.size = servers.length;
    const points = buildContinuum(servers);
    this.values = Uint32Array.from(points, (p) => p.value);
    this.owners = Uint32Array.from(points, (p) => p.owner);
  }

  /** Number of points on the continuum (twemproxy's `ncontinuum`). */
  get pointCount(): number {
    return this.values.length;
  }

  /** Index into the servers of the shard owning `key` (apply {@link hashTagged} first). */
  locate(key: Buffer): number {
    // server_pool_idx: a one-server pool skips hashing.
    if (this.size === 1) return 0;
    // server_pool_hash: an empty key hashes to 0.
    const hash = key.length === 0 ? 0 : keyHash32(this.hash, key);
    return this.dispatch(hash);
  }

  /** `ketama_dispatch`: the first point whose value is >= `hash`, wrapping past the last. */
  dispatch(hash: number): number {
    const values = this.values;
    let left = 0;
    let right = values.length;
    while (left < right) {
      const middle = (left + right) >>> 1;
      if ((values[middle] as number) < hash) left = middle + 1;
      else right = middle;
    }
    return this.owners[right === values.length ? 0 : right] as number;
  }
}

interface Point {
  value: number;
  owner: number;
}

/**
 * `ketama_update` with every server live (rwsplit ejects hosts elsewhere, so no
 * `auto_eject_hosts` here): each server's points, then sorted by value.
 *
 * twemproxy sorts with `qsort` and `ketama_item_cmp`, which leaves the order of equal values
 * to the C library; glibc's merge sort keeps insertion order, as does the stable sort here.
 * Two servers sharing a 32-bit point is rare (about 1 in 40,000 pools of three servers).
 */
function buildContinuum(servers: readonly ShardServer[]): Point[] {
  const total = totalWeight(servers);
  const points: Point[] = [];
  servers.forEach((server, owner) => {
    const count = ketamaPointCount(server.weight, total, servers.length);
    for (let i = 0; i < count / POINTS_PER_HASH; i++) {
      for (const value of digestPoints(`${server.name}-${i}`)) points.push({ value, owner });
    }
  });
  return points.sort((a, b) => a.value - b.value);
}
