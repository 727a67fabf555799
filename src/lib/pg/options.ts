/**
 * The options of `createPool`: what `pg.Pool` takes (login, `max`, timeouts) plus the
 * routing keys of the YAML `postgres` section, validated by the same schema so a bad key
 * gets the same error the proxy gives for it (naming the key).
 */
import type { ConnectionOptions } from 'node:tls';
import type { Logger } from 'pino';
import { ConfigError, validateConfig } from '../../config/load.js';
import type { ConsistencyLevel, PgConfig } from '../../config/schema.js';

/** A node of the cluster; its role (primary or replica) is observed, not configured. */
export interface PoolNode {
  /** the name results and events use; default `<host>_<port>` */
  id?: string;
  host: string;
  port?: number;
  weight?: number;
  /** the shard the node belongs to (a primary and its replicas share one); default `default` */
  shard?: string;
}

/** Options of {@link createPool}. */
export interface PoolOptions {
  nodes: PoolNode[];
  user?: string;
  password?: string;
  database?: string;
  /** connections per node (pg.Pool's `max` is for its one server); default 10 */
  max?: number;
  idleTimeoutMillis?: number;
  connectionTimeoutMillis?: number;
  application_name?: string;
  ssl?: boolean | ConnectionOptions;
  /** shorthand for `routing.consistency` */
  consistency?: ConsistencyLevel;
  /** the `postgres.routing` keys of the YAML config (docs/CONFIG.md) */
  routing?: Record<string, unknown>;
  /** the `postgres.staleness` keys */
  staleness?: Record<string, unknown>;
  /** `follow` (default) or `off`; an application process does not promote (`auto` is the proxy's) */
  failover?: 'follow' | 'off' | Record<string, unknown>;
  /** the `postgres.monitor` keys; the monitor logs in as the pool does unless told otherwise */
  monitor?: Record<string, unknown>;
  /** the `postgres.sharding` keys: table rules, ring, default shard, two-phase commit (docs/LIBRARY.md) */
  sharding?: Record<string, unknown>;
  /** a pino logger for node events (default: silent) */
  logger?: Logger;
}

/** The pg.Pool keys passed to every node's pool as they are. */
const PG_KEYS = [
  'user',
  'password',
  'database',
  'max',
  'idleTimeoutMillis',
  'connectionTimeoutMillis',
  'application_name',
  'ssl',
] as const;
const OWN_KEYS = new Set<string>([
  ...PG_KEYS,
  'nodes',
  'consistency',
  'routing',
  'staleness',
  'failover',
  'monitor',
  'sharding',
  'logger',
]);

/** What the pool runs with: the validated `postgres` section and the pg.Pool settings. */
export interface ResolvedOptions {
  pg: PgConfig;
  /** passed to each node's pg.Pool (plus host and port) */
  login: Pick<PoolOptions, (typeof PG_KEYS)[number]>;
  logger: Logger | undefined;
}

export function resolveOptions(opts: PoolOptions): ResolvedOptions {
  if (opts === null || typeof opts !== 'object')
    throw new ConfigError('rwsplit/pg: createPool needs an options object');
  for (const key of Object.keys(opts)) {
    if (!OWN_KEYS.has(key))
      throw new ConfigError(
        `rwsplit/pg: unknown option ${key}; it takes nodes, ${PG_KEYS.join(', ')}, consistency, routing, staleness, failover, monitor, sharding and logger (docs/LIBRARY.md)`,
      );
  }
  if (!Array.isArray(opts.nodes) || opts.nodes.length === 0)
    throw new ConfigError('rwsplit/pg: nodes: list at least one node ({ host, port })');
  const failoverMode = typeof opts.failover === 'string' ? opts.failover : opts.failover?.mode;
  if (failoverMode === 'auto')
    throw new ConfigError(
      'rwsplit/pg: failover: mode auto is the proxy\'s (an application process does not promote); use "follow" (default) or "off"',
    );
  const routing = { ...opts.routing };
  if (opts.consistency !== undefined) routing.consistency = opts.consistency;
  const user = opts.user ?? process.env.PGUSER ?? 'postgres';
  const database = opts.database ?? process.env.PGDATABASE ?? user;
  const password = opts.password ?? process.env.PGPASSWORD;
  const monitor = {
    user,
    database,
    ...(password === undefined ? {} : { password }),
    ...opts.monitor,
  };
  const raw = {
    postgres: {
      nodes: opts.nodes.map((n) => ({
        id: n.id ?? `${n.host}_${n.port ?? 5432}`.replace(/[^A-Za-z0-9_.-]/g, '_'),
        host: n.host,
        ...(n.port === undefined ? {} : { port: n.port }),
        ...(n.weight === undefined ? {} : { weight: n.weight }),
        ...(n.shard === undefined ? {} : { shard: n.shard }),
      })),
      routing,
      ...(opts.staleness === undefined ? {} : { staleness: opts.staleness }),
      ...(opts.failover === undefined ? {} : { failover: opts.failover }),
      monitor,
      ...(opts.sharding === undefined ? {} : { sharding: opts.sharding }),
      pool: {},
    },
  };
  let config;
  try {
    config = validateConfig(raw, 'rwsplit/pg');
  } catch (err) {
    // The schema names keys by their place in the YAML file; here they are options.
    if (err instanceof ConfigError)
      throw new ConfigError(err.message.replace(/\bpostgres\./g, '').replace(/ in postgres;/, ';'));
    throw err;
  }
  const login: ResolvedOptions['login'] = { user, database, max: opts.max ?? 10 };
  if (password !== undefined) login.password = password;
  for (const key of ['idleTimeoutMillis', 'connectionTimeoutMillis', 'application_name', 'ssl'] as const)
    if (opts[key] !== undefined) (login as Record<string, unknown>)[key] = opts[key];
  return { pg: config.postgres!, login, logger: opts.logger };
}
