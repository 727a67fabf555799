/**
 * Read-your-writes from PostgreSQL into Redis: what the Redis proxy asks about a one-key
 * read. A key a stream feeds is counted (the read rate); when the connection handed over a
 * PostgreSQL causal token (`RWSPLIT TOKEN <SHOW rwsplit.causal_token>`), the read waits until
 * the stream has applied that position, then goes to the shard's primary (the stream writes
 * there; a replica may not have its latest transaction yet).
 */
import type { CausalToken } from '../core/causal.js';

export interface StreamReadGate {
  /**
   * null: `key` is not a stream's. Otherwise the read is counted, and `wait` (when the token
   * names the stream's PostgreSQL shard) settles once the stream covers the token; it rejects
   * with a message saying how far behind the read model is.
   */
  read(key: Buffer, pgToken: CausalToken | null): { wait: Promise<void> | null } | null;
}
