/**
 * `rwsplit/pg`: read/write splitting inside a Node.js process, as a drop-in for `pg.Pool`
 * (docs/LIBRARY.md).
 */
export { createPool, RwsplitPool, type PoolNodeStatus, type Queryable } from './pool.js';
export { RoutingClient } from './client.js';
export type { PoolNode, PoolOptions } from './options.js';
export type { RoutedQueryConfig } from './run.js';
export { RoutingError } from './router.js';
export { ConfigError } from '../../config/load.js';
export { CausalTokenError } from '../../core/causal.js';
