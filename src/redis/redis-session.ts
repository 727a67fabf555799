/**
 * One Redis client connection: commands in, replies out in order. Routes each command by
 * its keys (ring → shard) and flags (read-only → a node chosen by the connection's
 * consistency level, see read-planner.ts; anything else → the shard's primary, followed by
 * WAIT and the causal position, see write-path.ts), splits multi-key commands over shards,
 * pins MULTI/EXEC and WATCH to one shard's primary, and gives blocking commands and pub/sub
 * connections of their own.
 *
 * Commands run in the client's order: while a write waits for a shard's new primary
 * (failover, `redis.failover.bufferMs`) or a read waits for a replica to reach the
 * connection's causal token (`redis.causalWaitMs`), the commands after it wait in a queue.
 */
import type net from 'node:net';
import type { NodeStatus } from '../core/topology.js';
import type { ConsistencyLevel } from '../config/schema.js';
import type { RedisLink } from './backend-link.js';
import { CommandTable, type CommandInfo } from './command-table.js';
import { lostConnectionMessage, noPrimaryError, type FailoverSettings } from './failover-errors.js';
import { localReply, type LocalContext } from './local-commands.js';
import { INFO_REPLICATION } from './position-book.js';
import { PubSub } from './pubsub.js';
import type { ReadChoice, ReadPlanner } from './read-planner.js';
import { ReplySlots, type Slot } from './reply-slots.js';
import { encodeArrayHeader, encodeBulk, encodeCommand, encodeError, encodeSimple } from './resp/index.js';
import { rwsplitCommand } from './rwsplit-command.js';
import { SessionCausal } from './session-causal.js';
import { SessionFanout } from './session-fanout.js';
import { Transactions } from './session-transactions.js';
import type { ReadFrom, ShardSet } from './shards.js';
import { positionFrom, type WritePath } from './write-path.js';

export interface RedisSessionContext {
  readonly commands: CommandTable;
  readonly shards: ShardSet;
  readonly readFrom: ReadFrom;
  readonly planner: ReadPlanner;
  readonly writes: WritePath;
  /** every connection starts at this level (`redis.consistency`) */
  readonly consistency: ConsistencyLevel;
  /** `redis.failover`: how long writes wait for a new primary, and what the errors say */
  readonly failover: FailoverSettings;
  /** null when no password is configured */
  checkPassword(user: string | null, password: string): boolean;
  readonly authRequired: boolean;
  readonly serverVersion: string;
  stats: { routed(nodeId: string, read: boolean): void; retried(nodeId: string): void };
  sessionClosed(id: number): void;
}

/** Commands queued behind a waiting one before the client's socket is paused (backpressure). */
const MAX_QUEUED = 1024;

export class RedisSession implements LocalContext {
  resp3 = false;
  authenticated: boolean;
  name: string | null = null;
  readonly slots: ReplySlots;
  readonly causal: SessionCausal;
  private readonly tx: Transactions;
  private readonly fanout: SessionFanout;
  private pubsub: PubSub | null = null;
  private readonly dedicatedInUse = new Set<RedisLink>();
  /** the replica chosen per shard in this tick (see read) */
  private readonly tickPicks = new Map<number, NodeStatus>();
  /** commands waiting behind a write that waits for a primary or a read that waits for a replica */
  private held = 0;
  private queue: [Buffer[], Buffer, number][] = [];
  private queueHead = 0;
  /**
   * When the command being dispatched arrived: waits (bufferMs, causalWaitMs) count from
   * there, so a pipeline queued behind a waiting command does not wait once per command.
   */
  private arrivedAt = 0;
  private closed = false;

  constructor(
    readonly ctx: RedisSessionContext,
    readonly socket: net.Socket,
    readonly id: number,
  ) {
    this.authenticated = !ctx.authRequired;
    this.slots = new ReplySlots(socket, () => this.resp3);
    this.causal = new SessionCausal(ctx.consistency);
    this.tx = new Transactions(this);
    this.fanout = new SessionFanout(this);
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
    if (this.held > 0) {
      this.queue.push([args, raw, Date.now()]);
      if (this.queue.length - this.queueHead > MAX_QUEUED) this.socket.pause();
      return;
    }
    this.arrivedAt = Date.now();
    this.dispatch(args, raw);
  }

  private dispatch(args: Buffer[], raw: Buffer): void {
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
    if (name === 'rwsplit') {
      this.rwsplit(args);
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

  /**
   * Commands after this point wait until `work` settles (they run in the client's order).
   * `work` must not reject.
   */
  hold(work: Promise<void>): void {
    this.held++;
    void work
      .catch((err: Error) => this.socket.destroy(err)) // a bug, not a client error: this client only
      .finally(() => {
        this.held--;
        this.drain();
      });
  }

  private drain(): void {
    while (this.held === 0 && this.queueHead < this.queue.length && !this.closed) {
      const [args, raw, at] = this.queue[this.queueHead]!;
      this.queue[this.queueHead++] = undefined as unknown as [Buffer[], Buffer, number];
      this.arrivedAt = at;
      this.dispatch(args, raw);
    }
    if (this.queueHead === this.queue.length) {
      this.queue = [];
      this.queueHead = 0;
    }
    if (this.queue.length - this.queueHead <= MAX_QUEUED && this.socket.isPaused()) this.socket.resume();
  }

  /** Commands whose routing is not "the keys' shard". Returns true when handled. */
  private routeSpecial(name: string, args: Buffer[]): boolean {
    switch (name) {
      case 'multi':
      case 'exec':
      case 'discard':
      case 'watch':
      case 'unwatch':
        this.tx.command(name, args);
        return true;
      case 'publish': {
        const shard = this.ctx.shards.shardOf(args[1] ?? Buffer.alloc(0));
        this.write(shard, encodeCommand(args), this.slots.open(), false);
        return true;
      }
      case 'keys':
      case 'dbsize':
      case 'flushall':
      case 'flushdb':
      case 'randomkey':
        this.fanout.broadcast(name, args);
        return true;
      case 'script':
      case 'function': {
        const sub = args[1]?.toString().toLowerCase();
        if (sub === 'load' || sub === 'flush' || sub === 'delete' || sub === 'restore') {
          this.fanout.broadcast(name, args);
          return true;
        }
        return false;
      }
      default:
        if (this.tx.inMulti) {
          this.tx.queue(name, args);
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
    if (this.tx.watching) {
      this.tx.duringWatch(shards, raw, CommandTable.mayWrite(info));
      return;
    }
    if (shards.size > 1) {
      this.fanout.split(name, args);
      return;
    }
    const shard = shards.size === 1 ? [...shards][0]! : 0;
    if (info.blocking) {
      this.blocking(shard, raw, CommandTable.mayWrite(info));
      return;
    }
    const slot = this.slots.open();
    if (info.readonly && !info.write) this.read(shard, raw, slot, null);
    else this.write(shard, raw, slot, CommandTable.mayWrite(info));
  }

  // ---- RWSPLIT -----------------------------------------------------------------------------

  private rwsplit(args: Buffer[]): void {
    const names = this.ctx.shards.shards.map((s) => s.name);
    const action = rwsplitCommand(args, this.causal, names);
    if ('reply' in action) {
      this.slots.answer(action.reply);
      return;
    }
    const slot = this.slots.open();
    this.causal.wantToken();
    // Shards whose position is unknown: their primary's position now covers the writes.
    const unknown = this.causal.unknownShards();
    let left = unknown.length + 1;
    let failed: string | null = null;
    const done = (): void => {
      if (--left > 0) return;
      if (failed) this.slots.fill(slot, encodeError(failed, 'CLUSTERDOWN'));
      else this.causal.whenSettled(() => this.slots.fill(slot, encodeBulk(this.causal.token.format(names))));
    };
    for (const shard of unknown) {
      const s = this.ctx.shards.shards[shard]!;
      const node = s.topology.primary();
      if (!node) {
        failed = `cannot give a causal token now: the primary of shard ${s.name} is unavailable`;
        done();
        continue;
      }
      this.withLink(node, slot, (link) =>
        link.send(INFO_REPLICATION, (raw) => {
          const info = positionFrom(raw);
          if (info) this.causal.resolve(shard, info);
          else failed = `cannot give a causal token now: ${node.spec.id} did not report its position`;
          done();
        }),
      );
    }
    done();
  }

  // ---- writes ------------------------------------------------------------------------------

  /**
   * Runs `use` with the shard's writable primary: at once, or once a failover or switchover
   * gives the shard one (up to `failover.bufferMs`; commands after this one wait meanwhile).
   */
  withPrimary(shard: number, fail: (error: Buffer) => void, use: (node: NodeStatus) => void): void {
    const s = this.ctx.shards.shards[shard]!;
    const node = s.topology.writablePrimary(s.name);
    if (node) {
      use(node);
      return;
    }
    const { bufferMs } = this.ctx.failover;
    const left = bufferMs - (Date.now() - this.arrivedAt);
    if (left <= 0) {
      fail(noPrimaryError(s, bufferMs > 0 ? bufferMs : 0));
      return;
    }
    this.hold(
      s.topology.whenWritable(s.name, left).then((n) => {
        if (this.closed) return;
        if (n) use(n);
        else fail(noPrimaryError(s, bufferMs));
      }),
    );
  }

  /**
   * A command that must run on the shard's primary, answered in `slot`; `mayWrite`: it may
   * change data, so it gets WAIT and the causal position behind it (write-path.ts).
   */
  write(shard: number, raw: Buffer, slot: Slot, mayWrite: boolean): void {
    const fail = (e: Buffer): void => this.slots.fill(slot, e);
    this.withPrimary(shard, fail, (node) => {
      this.ctx.stats.routed(node.spec.id, false);
      this.withLink(node, slot, (link) => {
        const deliver = (r: Buffer | null): void =>
          this.slots.fill(slot, r ?? encodeError(this.lostMessage(shard, node)));
        link.send(raw, mayWrite ? this.ctx.writes.track(link, shard, node, this.causal, deliver) : deliver);
      });
    });
  }

  /** What a client is told when the link to `node` died before a command's reply. */
  lostMessage(shard: number, node: NodeStatus): string {
    return lostConnectionMessage(this.ctx.shards.shards[shard]!, node, this.ctx.failover);
  }

  // ---- reads -------------------------------------------------------------------------------

  read(shard: number, raw: Buffer, slot: Slot, failed: Set<string> | null): void {
    const level = this.causal.level;
    const pin = level === 'read-your-writes' ? this.causal.pin(shard) : null;
    if (pin !== null) {
      // A write of this connection to the shard has no position yet: read behind it.
      const s = this.ctx.shards.shards[shard]!;
      const node = pin === 'primary' ? s.topology.primary() : pin.node;
      if (node && node.reachable && !node.fenced && !failed?.has(node.spec.id)) {
        this.sendRead(shard, node, raw, slot, failed, pin === 'primary');
        return;
      }
    }
    const want = this.causal.token.forShard(shard);
    // The reads of one pipeline (one tick) share a replica: one write to one link instead of
    // one per replica; the balancer still spreads pipelines and clients.
    const sticky = failed ? undefined : this.tickPicks.get(shard);
    if (
      sticky &&
      sticky.reachable &&
      !sticky.lagging &&
      !sticky.fenced &&
      level !== 'strong' &&
      (level !== 'read-your-writes' || this.ctx.planner.holds(sticky, want))
    ) {
      this.sendRead(shard, sticky, raw, slot, failed, false);
      return;
    }
    const choice = this.ctx.planner.plan(shard, level, want, failed ?? undefined, this.arrivedAt);
    if (choice instanceof Promise) this.hold(choice.then((c) => this.routeRead(shard, c, raw, slot, failed)));
    else this.routeRead(shard, choice, raw, slot, failed);
  }

  private routeRead(
    shard: number,
    choice: ReadChoice,
    raw: Buffer,
    slot: Slot,
    failed: Set<string> | null,
  ): void {
    if (this.closed) return;
    if (choice.error !== undefined) {
      this.slots.fill(slot, encodeError(choice.error, 'CLUSTERDOWN'));
      return;
    }
    if (choice.node.role === 'replica') this.rememberForTick(shard, choice.node);
    this.sendRead(shard, choice.node, raw, slot, failed, false);
  }

  private sendRead(
    shard: number,
    node: NodeStatus,
    raw: Buffer,
    slot: Slot,
    failed: Set<string> | null,
    resolvePosition: boolean,
  ): void {
    this.ctx.stats.routed(node.spec.id, true);
    this.withLink(node, slot, (link) => {
      link.send(raw, (reply) => {
        if (reply !== null) {
          this.slots.fill(slot, reply);
          return;
        }
        // The node died before answering: a read is safe to run elsewhere.
        const tried = failed ?? new Set<string>();
        tried.add(node.spec.id);
        this.ctx.stats.retried(node.spec.id);
        this.read(shard, raw, slot, tried);
      });
      if (resolvePosition) {
        link.trailer(INFO_REPLICATION, (r) => {
          const info = positionFrom(r);
          if (info) this.causal.resolve(shard, info);
        });
      }
    });
  }

  private rememberForTick(shard: number, node: NodeStatus): void {
    if (this.tickPicks.size === 0) process.nextTick(() => this.tickPicks.clear());
    this.tickPicks.set(shard, node);
  }

  /** Runs `use` with the shared link to `node`, at once when it is open. */
  withLink(node: NodeStatus, slot: Slot, use: (link: RedisLink) => void): void {
    const link = this.ctx.shards.link(node, this.id, this.resp3);
    if (!(link instanceof Promise)) {
      use(link);
      return;
    }
    link.then(use, (err: Error) => this.slots.fill(slot, encodeError(err.message, 'CLUSTERDOWN')));
  }

  /** Blocking commands (BLPOP, XREAD BLOCK, …) get a connection of their own for their duration. */
  private blocking(shard: number, raw: Buffer, mayWrite: boolean): void {
    const slot = this.slots.open();
    const fail = (e: Buffer): void => this.slots.fill(slot, e);
    this.withPrimary(shard, fail, (node) => {
      this.ctx.stats.routed(node.spec.id, false);
      this.ctx.shards.dedicated(node, this.resp3).then(
        (link) => {
          if (this.closed) {
            this.ctx.shards.releaseDedicated(node, link, this.resp3);
            return;
          }
          this.dedicatedInUse.add(link);
          const deliver = (reply: Buffer | null): void => {
            this.dedicatedInUse.delete(link);
            this.slots.fill(slot, reply ?? encodeError(this.lostMessage(shard, node)));
            this.ctx.shards.releaseDedicated(node, link, this.resp3);
          };
          // A blocking write (BLPOP pops) gets its WAIT and position too: Redis runs them
          // once the command unblocks, since it reads a blocked client's next commands only then.
          link.send(raw, mayWrite ? this.ctx.writes.track(link, shard, node, this.causal, deliver) : deliver);
        },
        (err: Error) => fail(encodeError(err.message, 'CLUSTERDOWN')),
      );
    });
  }

  // ---- pub/sub ---------------------------------------------------------------------------

  private pubSub(): PubSub {
    if (!this.pubsub) {
      this.pubsub = new PubSub(
        this.ctx.shards,
        this.slots,
        this.socket,
        () => this.resp3,
        (k) => this.ctx.shards.shards[k]!.topology.primary() ?? null,
      );
    }
    return this.pubsub;
  }

  // ---- endings ---------------------------------------------------------------------------

  /**
   * Every reply written, nothing queued or waiting, no MULTI or WATCH under way: closing the
   * connection now loses nothing, and a command sent meanwhile never ran (a graceful restart;
   * clients such as ioredis reconnect and send it again).
   */
  get drainable(): boolean {
    return (
      !this.closed &&
      this.slots.pending === 0 &&
      this.held === 0 &&
      this.queueHead === this.queue.length &&
      !this.tx.inMulti &&
      !this.tx.watching
    );
  }

  get isClosed(): boolean {
    return this.closed;
  }

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
    this.tx.close();
    this.pubsub?.close();
    this.queue = [];
    this.queueHead = 0;
    this.ctx.sessionClosed(this.id);
  }
}
