/**
 * The Redis routing parts built from `redis:` config, shared by every front end (the proxy,
 * a data-plane worker, the in-process library): per shard its Topology, read router and
 * primary authority; over all shards the ring and links, the replica position book, the read
 * planner and the write path.
 *
 * @module
 */
import type { Logger } from 'pino';
import { ReadRouter } from '../../core/read-router.js';
import { Topology } from '../../core/topology.js';
import type { RedisConfig } from '../../config/schema.js';
import { createRing } from '../../sharding/ring.js';
import type { LinkOptions } from '../backend/backend-link.js';
import { PrimaryAuthority } from '../ha/primary-authority.js';
import { PositionBook } from '../routing/position-book.js';
import { ReadPlanner } from '../routing/read-planner.js';
import { WritePath } from '../routing/write-path.js';
import { ShardSet, type Shard } from './shards.js';

/** One shard's nodes as rwsplit tracks them. */
export interface ShardNodes {
  topology: Topology;
  readRouter: ReadRouter;
  authority: PrimaryAuthority;
}

/** Per shard of `config`: its Topology (events logged), read router and primary authority. */
export function shardNodes(config: RedisConfig, log: Logger): ShardNodes[] {
  return config.shards.map((s) => {
    const topology = new Topology(
      s.nodes.map((n) => ({
        id: n.id,
        kind: 'redis',
        shard: s.name,
        host: n.host,
        port: n.port,
        weight: n.weight,
      })),
      config.monitor.upAfter,
    );
    topology.on('event', (e) => log.info(e, `node ${e.node} ${e.type}`));
    const readRouter = new ReadRouter(topology, {
      balance: config.balance,
      primaryReads: config.readFrom === 'replica' ? 'never' : 'fallback',
      whenAllLagging: config.staleness.whenAllLagging,
    });
    const authority = new PrimaryAuthority(
      s.nodes.map((n) => n.id),
      config.failover.mode,
    );
    return { topology, readRouter, authority };
  });
}

/** What routes commands over the shards. */
export interface ShardRouting {
  shards: ShardSet;
  book: PositionBook;
  planner: ReadPlanner;
  writes: WritePath;
}

/** The ring, links, position book, read planner and write path over `topologies`. */
export function shardRouting(
  config: RedisConfig,
  topologies: readonly { topology: Topology; readRouter: ReadRouter }[],
  linkOptions: () => LinkOptions,
): ShardRouting {
  const shards: Shard[] = topologies.map((t, index) => ({
    index,
    name: config.shards[index]!.name,
    topology: t.topology,
    readRouter: t.readRouter,
  }));
  const ring = createRing(
    config.hash.distribution,
    config.shards.map((s) => ({ name: s.name, weight: s.weight })),
    { hash: config.hash.function },
  );
  const set = new ShardSet(shards, ring, config.hash.tag, linkOptions, config.pool.size, (nodeId, reason) => {
    for (const s of shards) s.topology.markDown(nodeId, reason);
  });
  for (const s of shards) {
    s.topology.on('event', (e: { type: string; node: string }) => {
      // A fenced node (a primary being replaced) loses its links at once: commands in
      // flight there get an error that names the failover, none is sent there again.
      if (e.type === 'down' || e.type === 'fenced') set.dropNode(e.node);
    });
  }
  const book = new PositionBook(linkOptions, config.monitor.timeoutMs);
  const planner = new ReadPlanner(shards, book, {
    readFrom: config.readFrom,
    balance: config.balance,
    causalWaitMs: config.causalWaitMs,
  });
  return { shards: set, book, planner, writes: new WritePath(config.waitReplicas) };
}
