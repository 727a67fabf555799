/**
 * Pub/Sub for a `rwsplit/redis` client, sharded as the proxy shards it: a channel lives on
 * the primary of its shard on the ring (PUBLISH goes there too), a pattern on every shard's
 * primary. Each shard's subscriptions ride on an ioredis connection of their own (ioredis
 * resubscribes after a reconnect); when the shard's primary changes (a failover followed by
 * the monitor), the connection moves to the new primary with the same subscriptions.
 */
import { EventEmitter } from 'node:events';
import { Redis } from 'ioredis';
import type { RedisRouter } from './router.js';

const FORWARDED = ['message', 'messageBuffer', 'pmessage', 'pmessageBuffer', 'smessage', 'smessageBuffer'];

interface ShardSubscriber {
  node: string;
  redis: Redis;
  channels: Set<string>;
  patterns: Set<string>;
}

export class LibPubSub {
  private readonly subs = new Map<number, ShardSubscriber>();
  private readonly channels = new Set<string>();
  private readonly patterns = new Set<string>();
  private readonly listeners: (() => void)[];

  constructor(
    private readonly router: RedisRouter,
    private readonly target: EventEmitter,
    private readonly login: { username?: string; password?: string; connectTimeout: number },
  ) {
    this.listeners = router.topologies.map((_t, shard) => () => this.follow(shard));
    router.topologies.forEach((t, shard) => t.on('event', this.listeners[shard]!));
  }

  get count(): number {
    return this.channels.size + this.patterns.size;
  }

  async subscribe(channels: string[], pattern: boolean): Promise<number> {
    const byShard = new Map<number, string[]>();
    const shards = pattern ? this.router.shards.shards.map((s) => s.index) : null;
    for (const c of channels) {
      for (const shard of shards ?? [this.router.shards.shardOf(Buffer.from(c))]) {
        const list = byShard.get(shard) ?? [];
        list.push(c);
        byShard.set(shard, list);
      }
    }
    await Promise.all(
      [...byShard].map(async ([shard, list]) => {
        const sub = this.subscriber(shard);
        for (const c of list) (pattern ? sub.patterns : sub.channels).add(c);
        await (pattern ? sub.redis.psubscribe(...list) : sub.redis.subscribe(...list));
      }),
    );
    for (const c of channels) (pattern ? this.patterns : this.channels).add(c);
    return this.count;
  }

  /** No names: every channel (or pattern). */
  async unsubscribe(names: string[], pattern: boolean): Promise<number> {
    const all = pattern ? this.patterns : this.channels;
    const list = names.length > 0 ? names : [...all];
    await Promise.all(
      [...this.subs.values()].map(async (sub) => {
        const own = pattern ? sub.patterns : sub.channels;
        const mine = list.filter((c) => own.has(c));
        if (mine.length === 0) return;
        for (const c of mine) own.delete(c);
        await (pattern ? sub.redis.punsubscribe(...mine) : sub.redis.unsubscribe(...mine));
      }),
    );
    for (const c of list) all.delete(c);
    return this.count;
  }

  close(): void {
    this.router.topologies.forEach((t, shard) => t.off('event', this.listeners[shard]!));
    for (const sub of this.subs.values()) sub.redis.disconnect();
    this.subs.clear();
  }

  private subscriber(shard: number): ShardSubscriber {
    let sub = this.subs.get(shard);
    if (sub) return sub;
    const s = this.router.shard(shard);
    const node = s.topology.primary() ?? s.topology.nodes[0]!;
    sub = {
      node: node.spec.id,
      redis: this.connect(node.spec.host, node.spec.port),
      channels: new Set(),
      patterns: new Set(),
    };
    this.subs.set(shard, sub);
    return sub;
  }

  private connect(host: string, port: number): Redis {
    const redis = new Redis({
      host,
      port,
      connectTimeout: this.login.connectTimeout,
      ...(this.login.username === undefined ? {} : { username: this.login.username }),
      ...(this.login.password === undefined ? {} : { password: this.login.password }),
    });
    redis.on('error', () => undefined); // a dead node: the monitor moves the subscriptions
    for (const ev of FORWARDED) redis.on(ev, (...args: unknown[]) => this.target.emit(ev, ...args));
    return redis;
  }

  /** The shard's primary changed: its subscriptions move to the new one. */
  private follow(shard: number): void {
    const sub = this.subs.get(shard);
    if (sub) {
      const s = this.router.shard(shard);
      const primary = s.topology.primary();
      if (!primary || primary.spec.id === sub.node) return;
      sub.redis.disconnect();
      sub.node = primary.spec.id;
      sub.redis = this.connect(primary.spec.host, primary.spec.port);
      if (sub.channels.size > 0) void sub.redis.subscribe(...sub.channels).catch(() => undefined);
      if (sub.patterns.size > 0) void sub.redis.psubscribe(...sub.patterns).catch(() => undefined);
    }
  }
}
