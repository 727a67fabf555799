/**
 * The Redis side of the topology: shards (each a primary and replicas, with its own
 * Topology and read router), the ring that maps keys to shards, and the shared links to
 * every node.
 */
import type { ReadRouter } from '../../core/read-router.js';
import type { NodeStatus, Topology } from '../../core/topology.js';
import { hashTagged } from '../../sharding/hash-tag.js';
import type { Ring } from '../../sharding/ring.js';
import { AuthRefused, LinkError, RedisLink, type LinkOptions } from '../backend/backend-link.js';

export interface Shard {
  index: number;
  name: string;
  topology: Topology;
  readRouter: ReadRouter;
}

/**
 * What a backend connection carries for the clients that share it: the protocol, the
 * selected database and, in passthrough auth mode, the client's own credentials. Links are
 * pooled per profile, so a connection never serves a client whose state differs.
 */
export interface LinkProfile {
  readonly resp3: boolean;
  readonly db: number;
  /** credentials to log in with; null: rwsplit's own (`redis.backend`) */
  readonly auth: { readonly user: string | null; readonly password: string } | null;
  /** passthrough mode with no credentials: log in with none (the server's default user) */
  readonly anonymous: boolean;
}

/** The profile of a fresh connection (RESP2, database 0, rwsplit's credentials). */
export const DEFAULT_PROFILE: LinkProfile = { resp3: false, db: 0, auth: null, anonymous: false };

export function profileKey(p: LinkProfile): string {
  const who = p.auth ? `${p.auth.user ?? 'default'}\0${p.auth.password}` : p.anonymous ? '\0anon' : '';
  return `${p.resp3 ? 3 : 2}\0${p.db}\0${who}`;
}

function isPlain(p: LinkProfile): boolean {
  return p.db === 0 && p.auth === null && !p.anonymous;
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
  link(node: NodeStatus, affinity: number, profile: LinkProfile): RedisLink | Promise<RedisLink> {
    const entry = this.entry(node, profile);
    const i = affinity % this.linksPerNode;
    const link = entry.links[i];
    if (link && !link.closed) return link;
    let pending = entry.connecting[i];
    if (!pending) {
      pending = this.open(node, profile).then(
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
  async dedicated(node: NodeStatus, profile: LinkProfile): Promise<RedisLink> {
    const entry = this.entry(node, profile);
    let link = entry.idleDedicated.pop();
    while (link && link.closed) link = entry.idleDedicated.pop();
    return link ?? this.open(node, profile);
  }

  /**
   * A new link for one client alone that is never pooled and is destroyed when the client
   * is done with it: for commands that change a connection's state for good (MONITOR).
   */
  exclusive(node: NodeStatus, profile: LinkProfile): Promise<RedisLink> {
    return this.open(node, profile);
  }

  /**
   * Logs in to `node` with these credentials and closes the connection: resolves null when
   * the server accepted them, else with the server's own error reply.
   */
  async tryLogin(node: NodeStatus, profile: LinkProfile): Promise<Buffer | null> {
    try {
      const link = await RedisLink.connect(
        { nodeId: node.spec.id, host: node.spec.host, port: node.spec.port },
        this.options(profile),
      );
      link.destroy('login checked');
      return null;
    } catch (err) {
      if (err instanceof AuthRefused) return err.reply;
      throw err;
    }
  }

  /** Returns a dedicated link after a blocking command completed normally. */
  releaseDedicated(node: NodeStatus, link: RedisLink, profile: LinkProfile): void {
    const entry = this.entry(node, profile);
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

  private entry(node: NodeStatus, profile: LinkProfile): NodeLinks {
    // The common profile (database 0, rwsplit's credentials) is found without building a key.
    if (!isPlain(profile)) return this.makeEntry(node, profile);
    const resp3 = profile.resp3;
    let pair = this.byNode.get(node);
    if (!pair) this.byNode.set(node, (pair = [null, null]));
    const cached = pair[resp3 ? 1 : 0];
    if (cached) return cached;
    const made = this.makeEntry(node, profile);
    pair[resp3 ? 1 : 0] = made;
    return made;
  }

  private makeEntry(node: NodeStatus, profile: LinkProfile): NodeLinks {
    const key = `${node.spec.id}\0${profileKey(profile)}`;
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

  private options(profile: LinkProfile): LinkOptions {
    const base = this.linkOptions();
    const out: LinkOptions = { connectTimeoutMs: base.connectTimeoutMs, resp3: profile.resp3 };
    if (profile.db !== 0) out.db = profile.db;
    if (profile.auth) {
      out.password = profile.auth.password;
      if (profile.auth.user !== null) out.user = profile.auth.user;
    } else if (!profile.anonymous) {
      if (base.password !== undefined) out.password = base.password;
      if (base.user !== undefined) out.user = base.user;
    }
    return out;
  }

  private async open(node: NodeStatus, profile: LinkProfile): Promise<RedisLink> {
    try {
      return await RedisLink.connect(
        { nodeId: node.spec.id, host: node.spec.host, port: node.spec.port },
        this.options(profile),
      );
    } catch (err) {
      // A server refusing a client's credentials or database is not a node failure.
      if (err instanceof LinkError && !(err instanceof AuthRefused))
        this.onNodeFailure(node.spec.id, err.message);
      throw err;
    }
  }
}
