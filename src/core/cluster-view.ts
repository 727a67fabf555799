/**
 * Everything an instance watches, for the admin API, metrics and the dashboard: the
 * topologies (the PostgreSQL cluster, each Redis shard, …) and the connection counts of
 * the proxies in front of them. Read-only; each protocol keeps its own Topology.
 */
import { EventEmitter } from 'node:events';
import type { NodeStatus, Topology, TopologyEvent } from './topology.js';

export interface ConnectionCounts {
  idle: number;
  active: number;
  waiting: number;
}

/** A proxy's connection counts: backend connections per node, and its clients. */
export interface ConnectionStatsSource {
  readonly kind: 'postgres' | 'redis';
  readonly clientCount: number;
  /** what moves its bytes: the native forwarding core or JavaScript (dataPlane); absent: js */
  readonly dataPlane?: 'native' | 'js';
  poolStats(): Map<string, ConnectionCounts>;
}

export class ClusterView extends EventEmitter {
  private readonly topologies: Topology[] = [];
  private readonly sources: ConnectionStatsSource[] = [];

  addTopology(t: Topology): void {
    this.topologies.push(t);
    t.on('event', (e: TopologyEvent) => this.emit('event', e));
  }

  addConnections(source: ConnectionStatsSource): void {
    this.sources.push(source);
  }

  get nodes(): NodeStatus[] {
    return this.topologies.flatMap((t) => t.nodes);
  }

  /** The event logs of every topology, oldest first. */
  get events(): TopologyEvent[] {
    return this.topologies.flatMap((t) => t.events).sort((a, b) => a.at - b.at);
  }

  connectionStats(): Map<string, ConnectionCounts> {
    const out = new Map<string, ConnectionCounts>();
    for (const s of this.sources) for (const [node, c] of s.poolStats()) out.set(node, c);
    return out;
  }

  /** The data plane of the proxy for `kind` (js when it has none or does not say). */
  dataPlane(kind: 'postgres' | 'redis'): 'native' | 'js' {
    return this.sources.find((s) => s.kind === kind)?.dataPlane ?? 'js';
  }

  /** The proxies' kinds, each once. */
  get proxyKinds(): ('postgres' | 'redis')[] {
    return [...new Set(this.sources.map((s) => s.kind))];
  }

  clientCounts(): Map<string, number> {
    const out = new Map<string, number>();
    for (const s of this.sources) out.set(s.kind, (out.get(s.kind) ?? 0) + s.clientCount);
    return out;
  }
}
