import type { NodeStatus } from '../../core/topology.js';
import type { BackendConnection } from './backend-connection.js';
import type { BackendPool } from './backend-pool.js';

/**
 * A backend lent to a client session: the connection, the pool it goes back to, its node, and
 * the transaction status its server last reported. A session holds one at a time; a sharded
 * transaction parks one per shard it reached, in the same shape.
 */
export interface Lease {
  conn: BackendConnection;
  pool: BackendPool;
  node: NodeStatus;
  /** its transaction status, from its last ReadyForQuery */
  txStatus: number;
}
