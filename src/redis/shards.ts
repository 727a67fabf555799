/**
 * The Redis side of the topology: shards (each a primary and replicas, with its own
 * Topology and read router), the ring that maps keys to shards, and the shared links to
 * every node.
 */
import type { ReadRouter } from '../core/read-router.js';
import type { NodeStatus, Topology } from '../core/topology.js';
import { hashTagged } from '../sharding/hash-tag.js';
import type { Ring } from '../sharding/ring.js';
import { LinkError, RedisLink, type LinkOptions } from './backend-link.js';

export interface Shard {
  index: number;
  name: string;
  topology: Topology;
  readRouter: ReadRouter;
}

/** Where a read may go, per `redis.readFrom`. */
export type ReadFrom = 'primary' | 'replica' | 'prefer-replica';

interface NodeLinks {
  links: (RedisLink | null)[];
  connecting: (Promise<RedisLink> | null)[];
  idleDedicated: RedisLink[];
}

export class ShardSet {
  private readonly nodeLinks = new Map<string, NodeLinks>();
  /** per node: its links for RESP2 and RESP3 clients, found without building a key */
  private readonly byNode = new WeakMap<NodeStatus, [NodeLinks | null, NodeLinks | null]>();

  constructor(
    readonly shards: Shard[],
    private readonly ring: Ring,
    private readonly hashTag: string,
    private readonly linkOptions: () => LinkOptions,
    private readonly linksPerNode: number,
    private readonly onNodeFailure: (nodeId: string, reason: string) => void,
  ) {}

  /** Index of the shard that owns `key`. */
  shardOf(key: Buffer): number {
    if (this.shards.length === 1) return 0;
    return this.ring.locate(this.hashTag === '' ? key : hashTagged(key, this.hashTag));
  }

  /** A shared link to `node`, picked by `affinity` so one client's commands to a node stay in order. */
  link(node: NodeStatus, affinity: number, resp3: boolean): RedisLink | Promise<RedisLink> {
    const entry = this.entry(node, resp3);
    const i = affinity % this.linksPerNode;
    const link = entry.links[i];
    if (link && !link.closed) return link;
    let pending = entry.connecting[i];
    if (!pending) {
      pending = this.open(node, resp3).then(
        (l) => {
          entry.links[i] = l;
          entry.connecting[i] = null;
          l.onClose = (_x, reason) => {
            if (entry.links[i] === l) entry.links[i] = null;
            this.onNodeFailure(node.spec.id, reason);
          };
          return l;
        },
        (err: Error) => {
          entry.connecting[i] = null;
          throw err;
        },
      );
      entry.connecting[i] = pending;
    }
    return pending;
  }

  /** A link for one client alone (blocking commands, WATCH, pub/sub). */
  async dedicated(node: NodeStatus, resp3: boolean): Promise<RedisLink> {
    const entry = this.entry(node, resp3);
    let link = entry.idleDedicated.pop();
    while (link && link.closed) link = entry.idleDedicated.pop();
    return link ?? this.open(node, resp3);
  }

  /** Returns a dedicated link after a blocking command completed normally. */
  releaseDedicated(node: NodeStatus, link: RedisLink, resp3: boolean): void {
    const entry = this.entry(node, resp3);
    if (link.closed || link.listener || entry.idleDedicated.length >= 8) link.destroy('not needed');
    else entry.idleDedicated.push(link);
  }

  /** Drops every link to a node (it is down). */
  dropNode(nodeId: string): void {
    for (const [key, entry] of this.nodeLinks) {
      if (!key.startsWith(`${nodeId}\0`)) continue;
      for (const l of entry.links) l?.destroy(`${nodeId} is down`);
      for (const l of entry.idleDedicated.splice(0)) l.destroy(`${nodeId} is down`);
    }
  }

  closeAll(): void {
    for (const entry of this.nodeLinks.values()) {
      for (const l of entry.links) l?.destroy('shutting down');
      for (const l of entry.idleDedicated.splice(0)) l.destroy('shutting down');
    }
  }

  /** Shared links per node, for the admin API. */
  stats(): Map<string, { idle: number; active: number; waiting: number }> {
    const out = new Map<string, { idle: number; active: number; waiting: number }>();
    for (const [key, entry] of this.nodeLinks) {
      const node = key.split('\0')[0]!;
      const cur = out.get(node) ?? { idle: 0, active: 0, waiting: 0 };
      for (const l of entry.links) {
        if (!l || l.closed) continue;
        if (l.pending > 0) cur.active++;
        else cur.idle++;
        cur.waiting += l.pending;
      }
      cur.idle += entry.idleDedicated.length;
      out.set(node, cur);
    }
    return out;
  }

  private entry(node: NodeStatus, resp3: boolean): NodeLinks {
    let pair = this.byNode.get(node);
    if (!pair) this.byNode.set(node, (pair = [null, null]));
    const cached = pair[resp3 ? 1 : 0];
    if (cached) return cached;
    const made = this.makeEntry(node, resp3);
    pair[resp3 ? 1 : 0] = made;
    return made;
  }

  private makeEntry(node: NodeStatus, resp3: boolean): NodeLinks {
    const key = `${node.spec.id}\0${resp3 ? 3 : 2}`;
    let entry = this.nodeLinks.get(key);
    if (!entry) {
      entry = {
        links: new Array<RedisLink | null>(this.linksPerNode).fill(null),
        connecting: new Array<Promise<RedisLink> | null>(this.linksPerNode).fill(null),
        idleDedicated: [],
      };
      this.nodeLinks.set(key, entry);
    }
    return entry;
  }

  private async open(node: NodeStatus, resp3: boolean): Promise<RedisLink> {
    try {
      return await RedisLink.connect(
        { nodeId: node.spec.id, host: node.spec.host, port: node.spec.port },
        { ...this.linkOptions(), resp3 },
      );
    } catch (err) {
      if (err instanceof LinkError) this.onNodeFailure(node.spec.id, err.message);
      throw err;
    }
  }
}
