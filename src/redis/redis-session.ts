/**
 * One Redis client connection: commands in, replies out in order. Routes each command by
 * its keys (ring → shard) and flags (read-only → a replica of that shard, per `readFrom`;
 * anything else → the shard's primary), splits multi-key commands over shards, pins
 * MULTI/EXEC and WATCH to one shard's primary, and gives blocking commands and pub/sub
 * connections of their own.
 */
import type net from 'node:net';
import type { NodeStatus } from '../core/topology.js';
import type { RedisLink } from './backend-link.js';
import type { CommandInfo, CommandTable } from './command-table.js';
import { ReplySlots, type Slot } from './reply-slots.js';
import {
  encodeArrayHeader,
  encodeBulk,
  encodeCommand,
  encodeError,
  encodeSimple,
  type ReplyInfo,
} from './resp/index.js';
import type { ReadFrom, ShardSet } from './shards.js';
import { localReply, type LocalContext } from './local-commands.js';
import { PubSub } from './pubsub.js';

export interface RedisSessionContext {
  readonly commands: CommandTable;
  readonly shards: ShardSet;
  readonly readFrom: ReadFrom;
  /** null when no password is configured */
  checkPassword(user: string | null, password: string): boolean;
  readonly authRequired: boolean;
  readonly serverVersion: string;
  stats: { routed(nodeId: string, read: boolean): void; retried(nodeId: string): void };
  sessionClosed(id: number): void;
}

/** Multi-key commands split by shard and merged back. */
const SPLIT: Record<string, { merge: 'sum' | 'ok' | 'mget'; pairs: boolean }> = {
  mget: { merge: 'mget', pairs: false },
  del: { merge: 'sum', pairs: false },
  unlink: { merge: 'sum', pairs: false },
  exists: { merge: 'sum', pairs: false },
  touch: { merge: 'sum', pairs: false },
  mset: { merge: 'ok', pairs: true },
};

const CROSSSLOT = (what: string): Buffer =>
  encodeError(
    `Keys in ${what} don't hash to the same shard; put them under one hash tag, e.g. {user:42}:a and {user:42}:b`,
    'CROSSSLOT',
  );

export class RedisSession implements LocalContext {
  resp3 = false;
  authenticated: boolean;
  name: string | null = null;
  private readonly slots: ReplySlots;
  /** MULTI in progress: commands queued here, sent with EXEC to one shard */
  private multi: { commands: Buffer[]; shard: number | null; failed: string | null } | null = null;
  /** WATCH in progress: a link of this client's own to the watched keys' primary */
  private watch: { link: RedisLink; shard: number; node: NodeStatus } | null = null;
  private pubsub: PubSub | null = null;
  private readonly dedicatedInUse = new Set<RedisLink>();
  /** the replica chosen per shard in this tick (see read) */
  private readonly tickPicks = new Map<number, NodeStatus>();
  private closed = false;

  constructor(
    private readonly ctx: RedisSessionContext,
    readonly socket: net.Socket,
    readonly id: number,
  ) {
    this.authenticated = !ctx.authRequired;
    this.slots = new ReplySlots(socket, () => this.resp3);
  }

  get serverVersion(): string {
    return this.ctx.serverVersion;
  }

  checkPassword(user: string | null, password: string): boolean {
    return this.ctx.checkPassword(user, password);
  }

  /** `raw` is the command's bytes as the client sent them: forwarded as-is where nothing changes. */
  onCommand(args: Buffer[], raw: Buffer): void {
    if (this.closed) return;
    const name = args[0]!.toString('latin1').toLowerCase();
    if (this.pubsub?.active && !PubSub.allowedWhileSubscribed(name)) {
      this.slots.answer(
        encodeError(
          `Can't execute '${name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context`,
        ),
      );
      return;
    }
    if (!this.authenticated && name !== 'auth' && name !== 'hello' && name !== 'quit') {
      this.slots.answer(encodeError('Authentication required.', 'NOAUTH'));
      return;
    }
    if (name === 'ping' && this.pubsub?.active) {
      this.slots.answer(Buffer.concat([encodeArrayHeader(2), encodeBulk('pong'), encodeBulk(args[1] ?? '')]));
      return;
    }
    const local = localReply(this, name, args);
    if (local !== undefined) {
      if (local !== null) this.slots.answer(local);
      return;
    }
    if (this.routeSpecial(name, args)) return;
    const info = this.ctx.commands.get(name);
    if (!info) {
      const start = args
        .slice(1, 4)
        .map((a) => `'${a.toString().slice(0, 64)}'`)
        .join(' ');
      this.slots.answer(encodeError(`unknown command '${name}', with args beginning with: ${start}`));
      return;
    }
    if (info.pubsub && name !== 'publish' && name !== 'spublish' && name !== 'pubsub') {
      this.pubSub().command(name, args);
      return;
    }
    this.routeKeyed(name, info, args, raw);
  }

  /** Commands whose routing is not "the keys' shard". Returns true when handled. */
  private routeSpecial(name: string, args: Buffer[]): boolean {
    switch (name) {
      case 'multi':
        if (this.multi) this.slots.answer(encodeError('MULTI calls can not be nested'));
        else {
          this.multi = { commands: [encodeCommand(args)], shard: this.watch?.shard ?? null, failed: null };
          this.slots.answer(encodeSimple('OK'));
        }
        return true;
      case 'exec':
        this.exec();
        return true;
      case 'discard':
        if (!this.multi) this.slots.answer(encodeError('DISCARD without MULTI'));
        else {
          this.multi = null;
          this.endWatch();
          this.slots.answer(encodeSimple('OK'));
        }
        return true;
      case 'watch':
        this.startWatch(args);
        return true;
      case 'unwatch':
        this.endWatch();
        this.slots.answer(encodeSimple('OK'));
        return true;
      case 'publish':
        this.sendTo(
          this.primaryOf(this.ctx.shards.shardOf(args[1] ?? Buffer.alloc(0))),
          encodeCommand(args),
          this.slots.open(),
        );
        return true;
      case 'keys':
      case 'dbsize':
      case 'flushall':
      case 'flushdb':
      case 'randomkey':
        this.broadcast(name, args);
        return true;
      case 'script':
      case 'function': {
        const sub = args[1]?.toString().toLowerCase();
        if (sub === 'load' || sub === 'flush' || sub === 'delete' || sub === 'restore') {
          this.broadcast(name, args);
          return true;
        }
        return false;
      }
      default:
        if (this.multi) {
          this.queueInMulti(name, args);
          return true;
        }
        return false;
    }
  }

  private routeKeyed(name: string, info: CommandInfo, args: Buffer[], raw: Buffer): void {
    const positions = this.ctx.commands.keyPositions(info, args);
    if (positions === null) {
      this.slots.answer(encodeError(`rwsplit cannot locate the keys of '${name}' with these arguments`));
      return;
    }
    // One key (the common case) needs no set.
    const shards =
      positions.length === 1
        ? new Set([this.ctx.shards.shardOf(args[positions[0]!]!)])
        : new Set(positions.map((p) => this.ctx.shards.shardOf(args[p]!)));
    if (this.watch) {
      if (shards.size > 1 || (shards.size === 1 && !shards.has(this.watch.shard))) {
        this.slots.answer(CROSSSLOT('a command during WATCH'));
        return;
      }
      this.watch.link.send(raw, this.filler(this.slots.open()));
      return;
    }
    if (shards.size > 1) {
      const split = SPLIT[name];
      if (!split) this.slots.answer(CROSSSLOT(`'${name}'`));
      else this.split(name, args, split.merge, split.pairs);
      return;
    }
    const shard = shards.size === 1 ? [...shards][0]! : 0;
    if (info.blocking) {
      this.blocking(shard, raw);
      return;
    }
    const slot = this.slots.open();
    if (info.readonly && !info.write) this.read(shard, raw, slot, null);
    else this.sendTo(this.primaryOf(shard), raw, slot);
  }

  // ---- sending ---------------------------------------------------------------------------

  private primaryOf(shard: number): NodeStatus | null {
    return this.ctx.shards.shards[shard]!.topology.primary() ?? null;
  }

  private read(shard: number, raw: Buffer, slot: Slot, failed: Set<string> | null): void {
    const s = this.ctx.shards.shards[shard]!;
    let node: NodeStatus | null;
    if (this.ctx.readFrom === 'primary') node = s.topology.primary() ?? null;
    else {
      // The reads of one pipeline (one tick) share a replica: one write to one link instead of
      // one per replica; the balancer still spreads pipelines and clients.
      const sticky = failed ? undefined : this.tickPicks.get(shard);
      if (sticky && sticky.reachable && !sticky.lagging && !sticky.fenced) node = sticky;
      else {
        const pick = s.readRouter.pick(failed ?? undefined);
        if (!pick.ok) {
          this.slots.fill(slot, encodeError(`${pick.message}. ${pick.hint}`, 'CLUSTERDOWN'));
          return;
        }
        node = pick.node;
        this.rememberForTick(shard, node);
      }
    }
    if (!node) {
      this.slots.fill(slot, encodeError(`no node of shard ${s.name} can serve this read`, 'CLUSTERDOWN'));
      return;
    }
    const chosen = node;
    this.ctx.stats.routed(chosen.spec.id, true);
    this.withLink(chosen, slot, (link) =>
      link.send(raw, (reply) => {
        if (reply !== null) {
          this.slots.fill(slot, reply);
          return;
        }
        // The node died before answering: a read is safe to run elsewhere.
        const tried = failed ?? new Set<string>();
        tried.add(chosen.spec.id);
        this.ctx.stats.retried(chosen.spec.id);
        this.read(shard, raw, slot, tried);
      }),
    );
  }

  private rememberForTick(shard: number, node: NodeStatus): void {
    if (this.tickPicks.size === 0) process.nextTick(() => this.tickPicks.clear());
    this.tickPicks.set(shard, node);
  }

  private sendTo(node: NodeStatus | null, raw: Buffer, slot: Slot): void {
    if (!node) {
      this.slots.fill(slot, encodeError('no primary is available for this shard', 'CLUSTERDOWN'));
      return;
    }
    this.ctx.stats.routed(node.spec.id, false);
    this.withLink(node, slot, (link) => link.send(raw, this.filler(slot, node)));
  }

  /** Runs `use` with the shared link to `node`, at once when it is open. */
  private withLink(node: NodeStatus, slot: Slot, use: (link: RedisLink) => void): void {
    const link = this.ctx.shards.link(node, this.id, this.resp3);
    if (!(link instanceof Promise)) {
      use(link);
      return;
    }
    link.then(use, (err: Error) => this.slots.fill(slot, encodeError(err.message, 'CLUSTERDOWN')));
  }

  private filler(slot: Slot, node?: NodeStatus): (raw: Buffer | null, info: ReplyInfo | null) => void {
    return (raw) => {
      const lost = `rwsplit lost its connection to ${node?.spec.id ?? 'the server'} before the reply; the command may or may not have run`;
      this.slots.fill(slot, raw ?? encodeError(lost));
    };
  }

  /** A multi-key command whose keys live on several shards: one sub-command per shard. */
  private split(name: string, args: Buffer[], merge: 'sum' | 'ok' | 'mget', pairs: boolean): void {
    const byShard = new Map<number, Buffer[]>();
    const placement: [number, number][] = [];
    const order: number[] = [];
    const step = pairs ? 2 : 1;
    for (let i = 1; i + step - 1 < args.length; i += step) {
      const shard = this.ctx.shards.shardOf(args[i]!);
      let list = byShard.get(shard);
      if (!list) {
        byShard.set(shard, (list = [args[0]!]));
        order.push(shard);
      }
      placement.push([order.indexOf(shard), (list.length - 1) / step]);
      for (let j = 0; j < step; j++) list.push(args[i + j]!);
    }
    const slot = this.slots.openSplit(order.length, merge);
    if (merge === 'mget') slot.placement = placement;
    const info = this.ctx.commands.get(name)!;
    order.forEach((shard, part) => {
      const raw = encodeCommand(byShard.get(shard)!);
      const sub = { fill: (bytes: Buffer) => this.slots.fillPart(slot, part, bytes) };
      const node = info.readonly ? null : this.primaryOf(shard);
      if (info.readonly) {
        const fake = this.slots.detached(sub.fill);
        this.read(shard, raw, fake, null);
      } else if (!node) sub.fill(encodeError('no primary is available for this shard', 'CLUSTERDOWN'));
      else {
        this.ctx.stats.routed(node.spec.id, false);
        this.withLink(node, this.slots.detached(sub.fill), (link) =>
          link.send(raw, (r) => sub.fill(r ?? encodeError(`rwsplit lost its connection to ${node.spec.id}`))),
        );
      }
    });
  }

  /** KEYS, DBSIZE, FLUSHALL, SCRIPT LOAD, …: every shard's primary; replies merged. */
  private broadcast(name: string, args: Buffer[]): void {
    const n = this.ctx.shards.shards.length;
    const merge = name === 'dbsize' ? 'sum' : name === 'keys' ? 'keys' : 'ok';
    const slot = merge === 'keys' ? this.slots.openConcat(n) : this.slots.openSplit(n, merge);
    const raw = encodeCommand(args);
    for (let i = 0; i < n; i++) {
      const node = this.primaryOf(i);
      const fill = (bytes: Buffer): void => this.slots.fillPart(slot, i, bytes);
      if (!node) fill(encodeError('no primary is available for this shard', 'CLUSTERDOWN'));
      else
        this.withLink(node, this.slots.detached(fill), (link) =>
          link.send(raw, (r) => fill(r ?? encodeError('connection lost'))),
        );
    }
  }

  /** Blocking commands (BLPOP, XREAD BLOCK, …) get a connection of their own for their duration. */
  private blocking(shard: number, raw: Buffer): void {
    const slot = this.slots.open();
    const node = this.primaryOf(shard);
    if (!node) {
      this.slots.fill(slot, encodeError('no primary is available for this shard', 'CLUSTERDOWN'));
      return;
    }
    this.ctx.stats.routed(node.spec.id, false);
    this.ctx.shards.dedicated(node, this.resp3).then(
      (link) => {
        if (this.closed) {
          this.ctx.shards.releaseDedicated(node, link, this.resp3);
          return;
        }
        this.dedicatedInUse.add(link);
        link.send(raw, (reply) => {
          this.dedicatedInUse.delete(link);
          this.slots.fill(slot, reply ?? encodeError(`rwsplit lost its connection to ${node.spec.id}`));
          this.ctx.shards.releaseDedicated(node, link, this.resp3);
        });
      },
      (err: Error) => this.slots.fill(slot, encodeError(err.message, 'CLUSTERDOWN')),
    );
  }

  // ---- transactions ----------------------------------------------------------------------

  private queueInMulti(name: string, args: Buffer[]): void {
    const m = this.multi!;
    const info = this.ctx.commands.get(name);
    const positions = info ? this.ctx.commands.keyPositions(info, args) : null;
    if (!info || positions === null) {
      m.failed = info ? `cannot locate the keys of '${name}'` : `unknown command '${name}'`;
      this.slots.answer(encodeError(m.failed));
      return;
    }
    for (const p of positions) {
      const shard = this.ctx.shards.shardOf(args[p]!);
      if (m.shard === null) m.shard = shard;
      else if (m.shard !== shard) {
        m.failed = 'keys of this transaction live on different shards';
        this.slots.answer(CROSSSLOT('this transaction'));
        return;
      }
    }
    m.commands.push(encodeCommand(args));
    this.slots.answer(encodeSimple('QUEUED'));
  }

  /** Sends MULTI … EXEC as one write to the shard's primary and answers with EXEC's reply. */
  private exec(): void {
    const m = this.multi;
    if (!m) {
      this.slots.answer(encodeError('EXEC without MULTI'));
      return;
    }
    this.multi = null;
    const slot = this.slots.open();
    if (m.failed) {
      this.endWatch();
      this.slots.fill(
        slot,
        encodeError(`Transaction discarded because of previous errors: ${m.failed}`, 'EXECABORT'),
      );
      return;
    }
    m.commands.push(encodeCommand(['EXEC']));
    const raw = Buffer.concat(m.commands);
    const count = m.commands.length;
    const onReplies = (link: RedisLink, done: () => void): void => {
      const cbs = Array.from({ length: count }, (_, i) =>
        i < count - 1
          ? () => undefined // +OK for MULTI and +QUEUED for each command were answered already
          : (r: Buffer | null) => {
              this.slots.fill(
                slot,
                r ?? encodeError('connection lost during EXEC; the transaction may or may not have run'),
              );
              done();
            },
      );
      link.sendMany(raw, cbs);
    };
    if (this.watch) {
      const w = this.watch;
      onReplies(w.link, () => this.endWatch());
      return;
    }
    const node = this.primaryOf(m.shard ?? 0);
    if (!node) {
      this.slots.fill(slot, encodeError('no primary is available for this shard', 'CLUSTERDOWN'));
      return;
    }
    this.ctx.stats.routed(node.spec.id, false);
    this.withLink(node, slot, (link) => onReplies(link, () => undefined));
  }

  private startWatch(args: Buffer[]): void {
    const shards = new Set(args.slice(1).map((k) => this.ctx.shards.shardOf(k)));
    if (shards.size !== 1 || (this.watch && !shards.has(this.watch.shard))) {
      this.slots.answer(CROSSSLOT('WATCH'));
      return;
    }
    const shard = [...shards][0]!;
    const slot = this.slots.open();
    if (this.watch) {
      this.watch.link.send(encodeCommand(args), this.filler(slot));
      return;
    }
    const node = this.primaryOf(shard);
    if (!node) {
      this.slots.fill(slot, encodeError('no primary is available for this shard', 'CLUSTERDOWN'));
      return;
    }
    this.ctx.shards.dedicated(node, this.resp3).then(
      (link) => {
        this.watch = { link, shard, node };
        link.send(encodeCommand(args), this.filler(slot, node));
      },
      (err: Error) => this.slots.fill(slot, encodeError(err.message, 'CLUSTERDOWN')),
    );
  }

  private endWatch(): void {
    const w = this.watch;
    if (!w) return;
    this.watch = null;
    // UNWATCH before the link serves anyone else.
    w.link.send(encodeCommand(['UNWATCH']), () =>
      this.ctx.shards.releaseDedicated(w.node, w.link, this.resp3),
    );
  }

  // ---- pub/sub ---------------------------------------------------------------------------

  private pubSub(): PubSub {
    if (!this.pubsub) {
      this.pubsub = new PubSub(
        this.ctx.shards,
        this.slots,
        this.socket,
        () => this.resp3,
        (k) => this.primaryOf(k),
      );
    }
    return this.pubsub;
  }

  // ---- endings ---------------------------------------------------------------------------

  quit(): void {
    this.slots.answer(encodeSimple('OK'));
    this.socket.end();
    this.onClose();
  }

  /** The client is gone: connections of its own are closed (a pending BLPOP must not pop for nobody). */
  onClose(): void {
    if (this.closed) return;
    this.closed = true;
    for (const link of this.dedicatedInUse) link.destroy('client left');
    this.dedicatedInUse.clear();
    if (this.watch) this.watch.link.destroy('client left');
    this.watch = null;
    this.pubsub?.close();
    this.ctx.sessionClosed(this.id);
  }
}
