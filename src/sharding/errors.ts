/**
 * Errors raised while building a shard ring. Each carries a stable `code` so the config
 * loader and the admin endpoint can say which setting to fix.
 */

/** Stable codes of {@link ShardingError}. */
export type ShardingErrorCode =
  | 'NO_SERVERS'
  | 'BAD_WEIGHT'
  | 'BAD_BUCKETS'
  | 'BAD_HASH_TAG'
  | 'BAD_HASH'
  | 'BAD_RING_KIND'
  | 'WEIGHTS_UNSUPPORTED'
  | 'DUPLICATE_SERVER'
  | 'BAD_KEY';

/** A shard ring that cannot be built as asked; the message names the setting to change. */
export class ShardingError extends Error {
  override readonly name = 'ShardingError';

  constructor(
    readonly code: ShardingErrorCode,
    message: string,
  ) {
    super(message);
  }
}
