/**
 * Pub/Sub for one client. Channels are sharded like keys: SUBSCRIBE goes to the primary of
 * the channel's shard (PUBLISH is routed the same way), over a connection of this client's
 * own per shard; pattern subscriptions go to every shard, since a pattern can match channels
 * anywhere (their confirmations are forwarded from the first shard only, so the client sees
 * one per pattern).
 */
import type net from 'node:net';
import type { NodeStatus } from '../../core/topology.js';
import type { RedisLink } from '../backend/backend-link.js';
import type { ReplySlots } from './reply-slots.js';
import { notSupportedError, unavailableError } from '../errors.js';
import { encodeCommand, parseReply } from '../resp/index.js';
import type { LinkProfile, ShardSet } from '../sharding/shards.js';

const ALLOWED = new Set([
  'subscribe',
  'psubscribe',
  'ssubscribe',
  'unsubscribe',
  'punsubscribe',
  'sunsubscribe',
  'ping',
  'quit',
  'reset',
]);

export class PubSub {
  private readonly links = new Map<number, Promise<RedisLink>>();
  private readonly channels = new Set<string>();
  private readonly patterns = new Set<string>();
  private closed = false;

  constructor(
    private readonly shards: ShardSet,
    private readonly slots: ReplySlots,
    private readonly socket: net.Socket,
    private readonly profile: () => LinkProfile,
    private readonly primaryOf: (shard: number) => NodeStatus | null,
  ) {}

  /** In RESP2, a subscribed connection may only run these. */
  static allowedWhileSubscribed(name: string): boolean {
    return ALLOWED.has(name);
  }

  get active(): boolean {
    return !this.profile().resp3 && this.subscribed;
  }

  get subscribed(): boolean {
    return this.channels.size + this.patterns.size > 0;
  }

  get channelCount(): number {
    return this.channels.size;
  }

  get patternCount(): number {
    return this.patterns.size;
  }

  command(name: string, args: Buffer[]): void {
    const names = args.slice(1);
    switch (name) {
      case 'subscribe':
      case 'ssubscribe':
        names.forEach((c) => this.channels.add(c.toString()));
        this.byShard(name, names);
        return;
      case 'unsubscribe':
      case 'sunsubscribe':
        if (names.length === 0) {
          this.channels.clear();
          for (const shard of this.links.keys()) this.send(shard, [args[0]!]);
        } else {
          names.forEach((c) => this.channels.delete(c.toString()));
          this.byShard(name, names);
        }
        return;
      case 'psubscribe':
      case 'punsubscribe':
        if (name === 'psubscribe') names.forEach((p) => this.patterns.add(p.toString()));
        else if (names.length === 0) this.patterns.clear();
        else names.forEach((p) => this.patterns.delete(p.toString()));
        for (let i = 0; i < this.shards.shards.length; i++) this.send(i, args);
        return;
      default:
        this.slots.answer(notSupportedError(`'${name}' is not supported through rwsplit`));
    }
  }

  close(): void {
    this.closed = true;
    for (const p of this.links.values())
      p.then(
        (l) => l.destroy('client left'),
        () => undefined,
      );
    this.links.clear();
  }

  private byShard(name: string, channels: Buffer[]): void {
    const groups = new Map<number, Buffer[]>();
    for (const c of channels) {
      const shard = this.shards.shardOf(c);
      const g = groups.get(shard) ?? [];
      g.push(c);
      groups.set(shard, g);
    }
    for (const [shard, list] of groups) this.send(shard, [Buffer.from(name), ...list]);
  }

  private send(shard: number, args: Buffer[]): void {
    const raw = encodeCommand(args);
    this.link(shard).then(
      (link) => {
        link.socket.write(raw);
      },
      (err: Error) => this.slots.answer(unavailableError(err.message)),
    );
  }

  private link(shard: number): Promise<RedisLink> {
    let p = this.links.get(shard);
    if (p) return p;
    const node = this.primaryOf(shard);
    if (!node) return Promise.reject(new Error('no primary is available for this shard'));
    p = this.shards.exclusive(node, this.profile()).then((link) => {
      if (this.closed) link.destroy('client left');
      link.listener = (raw) => this.forward(shard, raw);
      link.onClose = () => {
        if (!this.closed) this.socket.destroy(); // subscriptions are gone: the client must reconnect
      };
      return link;
    });
    this.links.set(shard, p);
    return p;
  }

  /** Forwards a reply of a subscription link; pattern confirmations only from shard 0. */
  private forward(shard: number, raw: Buffer): void {
    if (shard !== 0) {
      const v = parseReply(raw);
      const kind = Array.isArray(v) && Buffer.isBuffer(v[0]) ? v[0].toString() : '';
      if (kind === 'psubscribe' || kind === 'punsubscribe') return;
    }
    this.slots.answer(raw);
  }
}
