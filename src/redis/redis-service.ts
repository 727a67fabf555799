/**
 * Assembles the Redis side of one instance from its config: a Topology, read router and
 * staleness tracker per shard, the monitor, and the proxy. Registered with the ClusterView
 * so the admin API, metrics and dashboard show the Redis nodes too.
 */
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { ClusterView } from '../core/cluster-view.js';
import { ReadRouter } from '../core/read-router.js';
import { StalenessTracker } from '../core/staleness.js';
import { Topology } from '../core/topology.js';
import type { RedisConfig } from '../config/schema.js';
import { RedisMonitor } from './redis-monitor.js';
import { RedisProxy, type RedisStats } from './redis-proxy.js';

export class RedisService {
  address: AddressInfo | null = null;

  private constructor(
    readonly proxy: RedisProxy,
    readonly monitor: RedisMonitor,
    readonly topologies: Topology[],
  ) {}

  static async start(
    config: RedisConfig,
    listen: { host: string; port: number },
    view: ClusterView,
    stats: RedisStats,
    log: Logger,
  ): Promise<RedisService> {
    const staleness = new StalenessTracker({
      maxLagBytes: config.staleness.maxLagBytes,
      maxLagMs: config.staleness.maxLagMs,
      breachesToLeave: config.staleness.breachesToLeave,
      samplesToReturn: config.staleness.samplesToReturn,
      returnRatio: config.staleness.returnRatio,
    });
    const shards = config.shards.map((s) => {
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
      view.addTopology(topology);
      const readRouter = new ReadRouter(topology, {
        balance: config.balance,
        primaryReads: config.readFrom === 'replica' ? 'never' : 'fallback',
        whenAllLagging: config.staleness.whenAllLagging,
      });
      return { topology, readRouter };
    });
    const proxy = new RedisProxy(config, shards, stats, log);
    view.addConnections(proxy);
    const monitor = new RedisMonitor(
      shards.map((s) => s.topology),
      staleness,
      {
        intervalMs: config.monitor.intervalMs,
        timeoutMs: config.monitor.timeoutMs,
        ...(config.backend.password !== undefined ? { password: config.backend.password } : {}),
        ...(config.backend.user !== undefined ? { user: config.backend.user } : {}),
      },
      log,
    );
    const service = new RedisService(
      proxy,
      monitor,
      shards.map((s) => s.topology),
    );
    await monitor.start();
    await proxy.prepare();
    service.address = await proxy.listen(listen.host, listen.port);
    return service;
  }

  async stop(): Promise<void> {
    this.monitor.stop();
    await this.proxy.close();
  }
}
