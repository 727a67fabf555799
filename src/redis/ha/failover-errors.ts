/**
 * What a Redis client is told when its command meets a failover: no primary to write to
 * (after waiting `redis.failover.bufferMs`), or the connection to a node lost before the
 * reply (kill -9 of a primary, or a primary fenced by a failover). The messages name the
 * shard, the node and the failover, and the setting that governs it.
 */
import type { NodeStatus } from '../../core/topology.js';
import type { Shard } from '../sharding/shards.js';
import { redisError } from '../errors.js';

/** `redis.failover` as the errors describe it. */
export interface FailoverSettings {
  mode: 'auto' | 'follow' | 'off';
  bufferMs: number;
  detectMs: number;
}

/** `-CLUSTERDOWN`: the shard has no writable primary (after waiting `waitedMs`). */
export function noPrimaryError(s: Shard, waitedMs: number): Buffer {
  const f = s.topology.failover(s.name);
  const why = f
    ? `a ${f.kind} of shard ${s.name} is replacing ${f.from}`
    : `shard ${s.name} has no reachable primary`;
  const waited = waitedMs > 0 ? `; waited ${waitedMs} ms (redis.failover.bufferMs)` : '';
  return redisError('noPrimary', `${why}${waited}`);
}

/** The text of the error for a command whose link to `node` died before the reply. */
export function lostConnectionMessage(s: Shard, node: NodeStatus, settings: FailoverSettings): string {
  const f = s.topology.failover(s.name);
  const tail = 'the command may or may not have run';
  if (f)
    return `rwsplit lost its connection to ${node.spec.id} during the ${f.kind} of shard ${s.name}; ${tail}`;
  if (node.role !== 'primary')
    return `rwsplit lost its connection to ${node.spec.id} before the reply; ${tail}`;
  const next =
    settings.mode === 'auto'
      ? `; if it stays unreachable for ${settings.detectMs} ms a replica is promoted (redis.failover.mode auto)`
      : '';
  return `rwsplit lost its connection to ${node.spec.id}, primary of shard ${s.name}, before the reply; ${tail}${next}`;
}
