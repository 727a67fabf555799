/**
 * The options of `createRedis`: the shards (or, for one shard, just its nodes), ioredis's
 * login keys, and the routing keys of the YAML `redis` section, validated by the same schema
 * so a bad key gets the error the proxy gives for it (naming the key).
 */
import type { Logger } from 'pino';
import { ConfigError, validateConfig } from '../../config/load.js';
import type { ConsistencyLevel, RedisConfig } from '../../config/schema.js';

/** A node of a shard; its role (primary or replica) is observed, not configured. */
export interface RedisNode {
  /** the name results, events and tokens use; default `<host>_<port>` */
  id?: string;
  host: string;
  port?: number;
  weight?: number;
}

/** One shard: a primary and its replicas, placed on the ring by `name` (as twemproxy does). */
export interface RedisShard {
  name: string;
  nodes: RedisNode[];
  weight?: number;
  /** the name Sentinel knows this shard's primary by (`failover.sentinels`) */
  sentinelName?: string;
}

/** Options of {@link createRedis}. */
export interface RedisOptions {
  /** the shards; or give `nodes` for a single shard (named `default`) */
  shards?: RedisShard[];
  nodes?: RedisNode[];
  /** as ioredis takes them: the login on every node */
  username?: string;
  password?: string;
  /** ioredis's `keyPrefix`: prepended to every key */
  keyPrefix?: string;
  /** ioredis's `connectTimeout` (ms), for every node connection */
  connectTimeout?: number;
  /** shorthand for the `redis.consistency` key */
  consistency?: ConsistencyLevel;
  /** keys of the YAML `redis` section (docs/CONFIG.md) */
  readFrom?: 'primary' | 'replica' | 'prefer-replica';
  balance?: string;
  causalWaitMs?: number;
  waitReplicas?: Record<string, unknown>;
  hash?: Record<string, unknown>;
  staleness?: Record<string, unknown>;
  /** `follow` (default) or `off`; an application process does not promote (`auto` is the proxy's) */
  failover?: 'follow' | 'off' | Record<string, unknown>;
  monitor?: Record<string, unknown>;
  /** connections per node shared by a client and its duplicates (default 1: one per node, as ioredis) */
  connectionsPerNode?: number;
  /** a pino logger for node events (default: silent) */
  logger?: Logger;
}

const SECTION_KEYS = [
  'readFrom',
  'balance',
  'causalWaitMs',
  'waitReplicas',
  'hash',
  'staleness',
  'failover',
  'monitor',
] as const;
const OWN_KEYS = new Set<string>([
  ...SECTION_KEYS,
  'shards',
  'nodes',
  'username',
  'password',
  'keyPrefix',
  'connectTimeout',
  'consistency',
  'connectionsPerNode',
  'logger',
]);

export interface ResolvedRedisOptions {
  redis: RedisConfig;
  keyPrefix: string | undefined;
  logger: Logger | undefined;
  /** for the subscriber connections (ioredis) */
  login: { username?: string; password?: string; connectTimeout: number };
}

function nodeId(n: RedisNode): string {
  return n.id ?? `${n.host}_${n.port ?? 6379}`.replace(/[^A-Za-z0-9_.-]/g, '_');
}

export function resolveRedisOptions(opts: RedisOptions): ResolvedRedisOptions {
  if (opts === null || typeof opts !== 'object')
    throw new ConfigError('rwsplit/redis: createRedis needs an options object');
  for (const key of Object.keys(opts)) {
    if (!OWN_KEYS.has(key))
      throw new ConfigError(
        `rwsplit/redis: unknown option ${key}; it takes shards or nodes, username, password, keyPrefix, connectTimeout, consistency, ${SECTION_KEYS.join(', ')}, connectionsPerNode and logger (docs/LIBRARY.md)`,
      );
  }
  if ((opts.shards === undefined) === (opts.nodes === undefined))
    throw new ConfigError(
      'rwsplit/redis: give either nodes (one shard: [{ host, port }, …]) or shards ([{ name, nodes }, …])',
    );
  const failoverMode = typeof opts.failover === 'string' ? opts.failover : opts.failover?.mode;
  if (failoverMode === 'auto')
    throw new ConfigError(
      'rwsplit/redis: failover: mode auto is the proxy\'s (an application process does not promote); use "follow" (default) or "off"',
    );
  const shards = opts.shards ?? [{ name: 'default', nodes: opts.nodes! }];
  const section: Record<string, unknown> = {
    shards: (Array.isArray(shards) ? shards : []).map((s) => ({
      ...s,
      nodes: Array.isArray(s.nodes)
        ? s.nodes.map((n) => ({
            id: nodeId(n),
            host: n.host,
            ...(n.port === undefined ? {} : { port: n.port }),
            ...(n.weight === undefined ? {} : { weight: n.weight }),
          }))
        : s.nodes,
    })),
  };
  for (const key of SECTION_KEYS) if (opts[key] !== undefined) section[key] = opts[key];
  if (opts.consistency !== undefined) section.consistency = opts.consistency;
  const backend: Record<string, string> = {};
  if (opts.username !== undefined) backend.user = opts.username;
  if (opts.password !== undefined) backend.password = opts.password;
  section.backend = backend;
  section.pool = {
    size: opts.connectionsPerNode ?? 1,
    ...(opts.connectTimeout === undefined ? {} : { connectTimeoutMs: opts.connectTimeout }),
  };
  let config;
  try {
    config = validateConfig({ redis: section }, 'rwsplit/redis');
  } catch (err) {
    // The schema names keys by their place in the YAML file; here they are options.
    if (err instanceof ConfigError)
      throw new ConfigError(
        err.message
          .replace(/\bredis\.pool\.size\b/g, 'connectionsPerNode')
          .replace(/\bredis\.pool\.connectTimeoutMs\b/g, 'connectTimeout')
          .replace(/\bredis\.backend\.user\b/g, 'username')
          .replace(/\bredis\.backend\.password\b/g, 'password')
          .replace(/\bredis\./g, '')
          .replace(/ in redis;/, ';'),
      );
    throw err;
  }
  const redis = config.redis!;
  return {
    redis,
    keyPrefix: opts.keyPrefix,
    logger: opts.logger,
    login: {
      ...(opts.username === undefined ? {} : { username: opts.username }),
      ...(opts.password === undefined ? {} : { password: opts.password }),
      connectTimeout: redis.pool.connectTimeoutMs,
    },
  };
}
