/**
 * The shards a ring distributes keys over, and the checks every ring kind applies to them.
 */
import { ShardingError } from './errors.js';

/** One shard as a ring sees it. */
export interface ShardServer {
  /**
   * The server's identity on the ring: what the ring hashes to place it. For placement
   * compatible with twemproxy this is the server's name from its `servers:` line when it has
   * one, else what {@link twemproxyServerName} returns. Renaming a server moves its keys.
   */
  name: string;
  /** Relative share of the keys, a positive integer (twemproxy's `:weight`). */
  weight: number;
}

/** twemproxy's `CONF_DEFAULT_KETAMA_PORT`, left out of unnamed servers' identities. */
const LIBMEMCACHED_DEFAULT_PORT = 11211;

/**
 * The string twemproxy hashes for a server line `host:port:weight [name]` (`conf_add_server`
 * in src/nc_conf.c): the name when there is one; otherwise `host:port`, or just `host` when the
 * port is 11211 (kept from libmemcached for compatibility).
 */
export function twemproxyServerName(host: string, port: number, name?: string): string {
  if (name !== undefined && name !== '') return name;
  return port === LIBMEMCACHED_DEFAULT_PORT ? host : `${host}:${port}`;
}

/** Throws a {@link ShardingError} unless `servers` is non-empty with distinct names and positive integer weights. */
export function validateServers(servers: readonly ShardServer[]): void {
  if (servers.length === 0) {
    throw new ShardingError('NO_SERVERS', 'a shard ring needs at least one server');
  }
  const seen = new Set<string>();
  for (const server of servers) {
    if (!Number.isSafeInteger(server.weight) || server.weight < 1) {
      throw new ShardingError(
        'BAD_WEIGHT',
        `server '${server.name}' has weight ${server.weight}: weights are positive integers`,
      );
    }
    if (seen.has(server.name)) {
      throw new ShardingError(
        'DUPLICATE_SERVER',
        `server name '${server.name}' appears twice: names must be unique`,
      );
    }
    seen.add(server.name);
  }
}

/** Sum of the servers' weights. */
export function totalWeight(servers: readonly ShardServer[]): number {
  let total = 0;
  for (const server of servers) total += server.weight;
  return total;
}
