/**
 * Assembles the Redis side of one instance from its config: a Topology, read router,
 * staleness tracker and primary authority per shard, the monitor, the proxy, and per
 * `redis.failover.mode` either the failover controller (`auto`), the Sentinel follower
 * (`follow` with `sentinels`), or neither. Registered with the ClusterView so the admin API,
 * metrics and dashboard show the Redis nodes too.
 */
import type { AddressInfo, Server } from 'node:net';
import type { Logger } from 'pino';
import type { ClientGuard } from '../core/client-guard.js';
import type { ClusterView } from '../core/cluster-view.js';
import { ReadRouter } from '../core/read-router.js';
import { StalenessTracker } from '../core/staleness.js';
import { Topology } from '../core/topology.js';
import type { RedisConfig } from '../config/schema.js';
import { RedisFailover } from './ha/failover.js';
import { RedisMonitor, type MonitoredShard } from './ha/monitor.js';
import { shardNodes } from './sharding/shard-routing.js';
import { RedisProxy, type RedisStats } from './proxy.js';
import { SentinelFollower, type SentinelShard } from './ha/sentinel-follower.js';

export class RedisService {
  address: AddressInfo | null = null;

  private constructor(
    readonly proxy: RedisProxy,
    readonly monitor: RedisMonitor,
    readonly topologies: Topology[],
    /** `failover.mode: auto` */
    readonly failover: RedisFailover | null,
    /** `failover.mode: follow` with Sentinels */
    readonly sentinels: SentinelFollower | null,
  ) {}

  static async start(
    config: RedisConfig,
    listen: { host: string; port: number },
    view: ClusterView,
    stats: RedisStats,
    log: Logger,
    guard?: ClientGuard,
    /** the listening socket a graceful restart handed over */
    inherited?: Server,
    /** called once everything is built, before the proxy listens (the data-plane workers take over its listener) */
    beforeListen?: (service: RedisService) => void,
  ): Promise<RedisService> {
    const staleness = new StalenessTracker(config.staleness);
    const shards = redisShards(config, view, log);
    const proxy = new RedisProxy(config, shards, stats, log, guard);
    view.addConnections(proxy);
    const credentials = {
      ...(config.backend.password !== undefined ? { password: config.backend.password } : {}),
      ...(config.backend.user !== undefined ? { user: config.backend.user } : {}),
    };
    const monitor = new RedisMonitor(
      shards,
      staleness,
      proxy.book,
      { intervalMs: config.monitor.intervalMs, timeoutMs: config.monitor.timeoutMs, ...credentials },
      log,
    );
    const { failover, sentinels } = RedisService.decider(config, shards, monitor, credentials, log);
    const service = new RedisService(
      proxy,
      monitor,
      shards.map((s) => s.topology),
      failover,
      sentinels,
    );
    try {
      await monitor.start();
      sentinels?.start();
      await proxy.prepare();
      beforeListen?.(service);
      service.address = await proxy.listen(listen.host, listen.port, inherited);
    } catch (err) {
      await service.stop();
      throw err;
    }
    return service;
  }

  /** Who replaces a dead primary, per `redis.failover`. */
  private static decider(
    config: RedisConfig,
    shards: MonitoredShard[],
    monitor: RedisMonitor,
    credentials: { password?: string; user?: string },
    log: Logger,
  ): { failover: RedisFailover | null; sentinels: SentinelFollower | null } {
    const f = config.failover;
    if (f.mode === 'auto') {
      if (f.sentinels.length > 0)
        log.warn('redis.failover.sentinels is ignored with mode auto (rwsplit decides)');
      const failover = new RedisFailover(
        monitor,
        {
          detectMs: f.detectMs,
          bufferMs: f.bufferMs,
          promoteTimeoutMs: f.promoteTimeoutMs,
          timeoutMs: config.monitor.timeoutMs,
          link: credentials,
        },
        log,
      );
      return { failover, sentinels: null };
    }
    if (f.mode !== 'follow' || f.sentinels.length === 0) return { failover: null, sentinels: null };
    const followed: SentinelShard[] = [];
    config.shards.forEach((s, i) => {
      if (s.sentinelName !== undefined) followed.push({ shard: shards[i]!, masterName: s.sentinelName });
      else
        log.warn(
          { shard: s.name },
          'shard has no sentinelName: its primary is followed from the roles alone',
        );
    });
    const sentinels = new SentinelFollower(
      f.sentinels,
      followed,
      monitor,
      { timeoutMs: config.monitor.timeoutMs },
      log,
    );
    return { failover: null, sentinels };
  }

  async stop(): Promise<void> {
    this.sentinels?.stop();
    this.monitor.stop();
    await this.proxy.close();
  }
}

/**
 * Per shard of `config`: its Topology (registered with `view`), read router and primary
 * authority. The controller's monitor and failover act on them; a data-plane worker builds
 * its own and mirrors the controller's.
 */
export function redisShards(
  config: RedisConfig,
  view: ClusterView,
  log: Logger,
): (MonitoredShard & { readRouter: ReadRouter })[] {
  const shards = shardNodes(config, log);
  for (const s of shards) view.addTopology(s.topology);
  return shards;
}
