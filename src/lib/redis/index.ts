/**
 * `rwsplit/redis`: read/write splitting inside a Node.js process, as an ioredis client
 * (docs/LIBRARY.md).
 */
export { createRedis, RwsplitRedis, CausalTokenError, type RedisNodeStatus } from './client.js';
export type { RedisNode, RedisOptions, RedisShard } from './options.js';
export { ConfigError } from '../../config/load.js';
