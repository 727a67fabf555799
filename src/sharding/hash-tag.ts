/**
 * Hash tags: the part of a key that decides its shard, so related keys (`{user42}:cart`,
 * `{user42}:profile`) land together. Same rule in twemproxy (`server_pool_idx` in
 * src/nc_server.c, `hash_tag: "{}"`) and Redis Cluster (`keyHashSlot` in src/cluster.c): find
 * the first opening character, then the first closing character after it; if there is at
 * least one byte between them, hash only those bytes, otherwise hash the whole key.
 */
import { ShardingError } from './errors.js';

/** Redis Cluster's tag, and the one twemproxy configs use in practice. */
export const DEFAULT_HASH_TAG = '{}';

/**
 * The part of `key` used for hashing. `tag` is two single-byte characters, opening then
 * closing (twemproxy rejects any other length); `''` means "no hash tag": the whole key.
 * Returns a view into `key` (no copy).
 */
export function hashTagged(key: Buffer, tag: string = DEFAULT_HASH_TAG): Buffer {
  if (tag === '') return key;
  const [open, close] = tagBytes(tag);
  const start = key.indexOf(open);
  if (start < 0) return key;
  const end = key.indexOf(close, start + 1);
  // An empty tag ("{}") does not count: the whole key is hashed.
  if (end <= start + 1) return key;
  return key.subarray(start + 1, end);
}

const tagCache = new Map<string, readonly [number, number]>();

function tagBytes(tag: string): readonly [number, number] {
  let bytes = tagCache.get(tag);
  if (bytes === undefined) {
    const raw = Buffer.from(tag, 'utf8');
    const [open, close] = raw;
    if (raw.length !== 2 || open === undefined || close === undefined) {
      throw new ShardingError('BAD_HASH_TAG', `hash tag '${tag}' must be two one-byte characters, like '{}'`);
    }
    bytes = [open, close];
    tagCache.set(tag, bytes);
  }
  return bytes;
}
