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
import type { NodeStatus } from '../../core/topology.js';
import type { ConsistencyLevel } from '../../config/schema.js';
import type { CausalPosition } from '../routing/causal-token.js';
import { AuthRefused, type RedisLink } from '../backend/backend-link.js';
import type { ReplyCallback } from '../backend/backend-link.js';
import type { ClientHandle, ClientView } from './client-command.js';
import { ClientOutputLimit, OUTPUT_HIGH_WATER, type OutputClass } from './client-output-limit.js';
import {
  CommandTable,
  proxyRefusal,
  unknownCommandError,
  type CommandInfo,
} from '../routing/command-table.js';
import { lostConnectionMessage, noPrimaryError } from '../ha/failover-errors.js';
import { localReply, type LocalContext } from './local-commands.js';
import { INFO_REPLICATION } from '../routing/position-book.js';
import { PubSub } from './pubsub.js';
import { ReadGate } from './read-gate.js';
import type { ReadChoice } from '../routing/read-planner.js';
import { ReplySlots, SlotKind, type Slot, type SlotHost } from './reply-slots.js';
import { HotKind, hotCommands, type HotCommand } from './hot-path.js';
import type { ReplicationInfo } from '../ha/replication-info.js';
import {
  encodeArrayHeader,
  encodeBulk,
  encodeCommand,
  encodeInteger,
  encodeSimple,
  type CommandView,
} from '../resp/index.js';
import {
  arityError,
  cutOffError,
  keysUnknownError,
  lostConnectionError,
  lostLinkText,
  noAuthError,
  notIntegerError,
  notSupportedError,
  tryAgainError,
  unavailableError,
  usageError,
} from '../errors.js';
import { rwsplitCommand } from './rwsplit-command.js';
import { SessionCausal } from './session-causal.js';
import { SessionFanout } from './session-fanout.js';
import { SessionTracking } from './session-tracking.js';
import { runWait, type WaitHost } from './session-wait.js';
import { withoutMonitorEntries } from './slowlog-filter.js';
import { Transactions } from './session-transactions.js';
import type { RedisSessionContext, SessionHelperHost } from './session-context.js';
import { DEFAULT_PROFILE, type LinkProfile } from '../sharding/shards.js';
import { positionFrom } from '../routing/write-path.js';
import { READ_ONLY_SCRIPTS, refusedByReplica } from '../routing/read-only-scripts.js';
import { TickPicks } from '../routing/tick-picks.js';

/** Commands queued behind a waiting one before the client's socket is paused (backpressure). */
const MAX_QUEUED = 1024;
/**
 * Commands sent on and not yet answered to the client before reading it pauses: a client that
 * pipelines without reading gets at most this many replies' worth of memory, and cannot fill
 * a shared backend link (where other clients' replies queue behind its own).
 */
const MAX_IN_FLIGHT = 1024;

/** Commands that run at once even inside MULTI (everything else is queued), as in Redis. */
const NOT_QUEUED = new Set(['exec', 'discard', 'multi', 'watch', 'quit', 'reset']);

/** Commands a MONITOR client may still run; others touch the keyspace and are refused, as in Redis. */
const KEYSPACE_ERROR = "Replica can't interact with the keyspace";

export class RedisSession implements LocalContext, ClientHandle, WaitHost, SessionHelperHost, SlotHost {
  resp3 = false;
  authenticated: boolean;
  name: string | null = null;
  /** the database SELECTed (one shard only): links are per database */
  db = 0;
  /** passthrough auth mode: the credentials the servers accepted from this client */
  private creds: { user: string | null; password: string } | null = null;
  private cachedProfile: LinkProfile = DEFAULT_PROFILE;
  readonly slots: ReplySlots;
  causal: SessionCausal;
  private readonly tx: Transactions;
  private readonly fanout: SessionFanout;
  private pubsub: PubSub | null = null;
  /** MONITOR: one link of this client's own per node, closed when it is done */
  private monitorLinks: RedisLink[] | null = null;
  /** CLIENT REPLY ON / OFF / SKIP (SKIP: the next command's replies only) */
  private replyMode: 'on' | 'off' | 'skip' = 'on';
  private readonly startedAt = Date.now();
  private lastCommandAt = Date.now();
  private lastCommand = 'NULL';
  private readonly dedicatedInUse = new Set<RedisLink>();
  /** shards this client sent a write to (WAIT counts the replicas that have its writes) */
  readonly writtenShards = new Set<number>();
  private readonly tracking: SessionTracking;
  /** the replica chosen per shard in this tick (see read) */
  private readonly tickPicks = new TickPicks();
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
  /** in MONITOR mode (its output limit is the monitor class's) */
  get monitoring(): boolean {
    return this.monitorLinks !== null;
  }
  private readonly outputLimit: ClientOutputLimit;
  /** whether the client's commands are read now (backpressure) */
  readonly gate: ReadGate;

  constructor(
    readonly ctx: RedisSessionContext,
    readonly socket: net.Socket,
    readonly id: number,
    gate?: ReadGate,
  ) {
    this.gate =
      gate ??
      new ReadGate(
        () => socket.pause(),
        () => socket.resume(),
      );
    this.authenticated = !ctx.authRequired;
    this.slots = new ReplySlots(
      socket,
      () => this.resp3,
      () => this.afterWrite(),
    );
    this.outputLimit = new ClientOutputLimit(ctx.outputLimits);
    this.causal = new SessionCausal(ctx.consistency);
    this.tx = new Transactions(this);
    this.fanout = new SessionFanout(this);
    const self = this; // eslint-disable-line @typescript-eslint/no-this-alias -- getters below read the session's current state
    this.tracking = new SessionTracking({
      get resp3() {
        return self.resp3;
      },
      get subscribed() {
        return self.subscribed;
      },
      push: (bytes) => this.push(bytes),
      shards: ctx.shards,
      get profile() {
        return self.profile;
      },
      client: (id) => this.client(id),
    });
  }

  /** in pub/sub mode (RESP2 clients get redirected invalidations only then) */
  get subscribed(): boolean {
    return this.pubsub?.subscribed ?? false;
  }

  /** An out-of-band message (a tracking invalidation) to this client, after the replies already due. */
  push(bytes: Buffer): void {
    if (!this.closed) this.slots.answer(bytes);
  }

  /** rwsplit's client with this id (this one included), or null. */
  private client(id: number): RedisSession | null {
    for (const c of this.ctx.clients()) if (c instanceof RedisSession && c.id === id && !c.closed) return c;
    return null;
  }

  trackingInfo(): Buffer {
    return this.tracking.info(this.resp3);
  }

  getredir(): number {
    return this.tracking.getredir();
  }

  get serverVersion(): string {
    return this.ctx.serverVersion;
  }

  get databases(): number {
    return this.ctx.databases;
  }

  get shardCount(): number {
    return this.ctx.shards.shards.length;
  }

  get passthrough(): boolean {
    return this.ctx.passthrough;
  }

  get defaultPasswordSet(): boolean {
    return this.ctx.defaultPasswordSet;
  }

  clients(): Iterable<ClientHandle> {
    return this.ctx.clients();
  }

  /**
   * What the server connections carrying this client's commands must have: its protocol,
   * database and (passthrough mode) credentials. Links are pooled per profile.
   */
  get profile(): LinkProfile {
    const p = this.cachedProfile;
    const anonymous = this.ctx.passthrough && this.creds === null;
    if (p.resp3 === this.resp3 && p.db === this.db && p.auth === this.creds && p.anonymous === anonymous)
      return p;
    this.cachedProfile = { resp3: this.resp3, db: this.db, auth: this.creds, anonymous };
    return this.cachedProfile;
  }

  /** passthrough mode: the credentials the servers accepted (a graceful restart hands them over) */
  get credentials(): { user: string | null; password: string } | null {
    return this.creds;
  }

  set credentials(creds: { user: string | null; password: string } | null) {
    this.creds = creds;
  }

  /** CLIENT REPLY OFF or SKIP is in effect */
  get repliesMuted(): boolean {
    return this.replyMode !== 'on';
  }

  select(db: number): void {
    this.db = db;
  }

  loggedIn(): void {
    this.authenticated = true;
  }

  useProtocol(version: 2 | 3): void {
    this.resp3 = version === 3;
  }

  setName(name: Buffer): void {
    this.name = name.length === 0 ? null : name.toString();
  }

  setReplyMode(mode: 'on' | 'off' | 'skip'): void {
    this.replyMode = mode;
    if (mode === 'on') this.slots.muteNew = false;
  }

  login(user: string | null, password: string, then: () => Buffer): void {
    const slot = this.slots.open();
    const node = this.ctx.shards.shards[0]!.topology.primary();
    if (!node) {
      this.slots.fill(slot, unavailableError('cannot check credentials now: no primary is reachable'));
      return;
    }
    const creds = { user, password };
    const profile: LinkProfile = { resp3: false, db: 0, auth: creds, anonymous: false };
    // The commands after AUTH wait for its answer: they run as the user it logs in.
    this.hold(
      this.ctx.shards.tryLogin(node, profile).then(
        (refused) => {
          if (refused) {
            this.slots.fill(slot, refused);
            return;
          }
          this.creds = creds;
          this.slots.fill(slot, then());
        },
        (err: Error) => this.slots.fill(slot, unavailableError(err.message)),
      ),
    );
  }

  view(): ClientView {
    const now = Date.now();
    const a = this.socket;
    const flags =
      (this.monitorLinks ? 'O' : '') +
      (this.pubsub?.subscribed ? 'P' : '') +
      (this.tx.inMulti ? 'x' : '') +
      (this.dedicatedInUse.size > 0 ? 'b' : '') +
      (this.tracking.on ? 't' : '');
    return {
      id: this.id,
      addr: `${a.remoteAddress ?? ''}:${a.remotePort ?? 0}`,
      laddr: `${a.localAddress ?? ''}:${a.localPort ?? 0}`,
      fd: -1,
      name: this.name,
      age: Math.floor((now - this.startedAt) / 1000),
      idle: Math.floor((now - this.lastCommandAt) / 1000),
      flags: flags === '' ? 'N' : flags,
      db: this.db,
      sub: this.pubsub?.channelCount ?? 0,
      psub: this.pubsub?.patternCount ?? 0,
      multi: this.tx.queued,
      cmd: this.lastCommand,
      user: this.creds?.user ?? 'default',
      resp: this.resp3 ? 3 : 2,
    };
  }

  kill(): void {
    if (this.closed) return;
    this.onClose(); // no command of it runs from now on
    // The socket ends after this tick: a client that kills itself gets its reply first.
    setImmediate(() => {
      this.slots.flushOut();
      this.socket.end();
    });
  }
  checkPassword(user: string | null, password: string): boolean {
    return this.ctx.checkPassword(user, password);
  }

  /** `raw` is the command's bytes as the client sent them: forwarded as-is where nothing changes. */
  onCommand(args: Buffer[], raw: Buffer): void {
    if (this.closed) return;
    if (this.held > 0) {
      this.queue.push([args, raw, Date.now()]);
      if (this.queue.length - this.queueHead > MAX_QUEUED) this.gate.stop('queued');
      return;
    }
    this.arrivedAt = Date.now();
    this.dispatch(args, raw);
    if (this.slots.pending >= MAX_IN_FLIGHT) this.gate.stop('in-flight');
  }

  /**
   * A command as the reader hands it over (valid during this call only): a command of the
   * hot path is routed from its bytes in place, with no Buffer per argument; any other gets
   * its arguments as Buffers and goes through onCommand.
   */
  onRead(cmd: CommandView): void {
    if (!this.closed && this.held === 0 && cmd.argCount >= 2 && !cmd.inline && this.onHotPath()) {
      const bytes = cmd.bytes;
      const hot = hotCommands(this.ctx.commands).lookupIn(bytes, cmd.argStart(0), cmd.argEnd(0));
      if (hot !== null) {
        this.arrivedAt = Date.now();
        this.runHot(hot, bytes, cmd.argStart(1), cmd.argEnd(1), bytes, cmd.start, cmd.end);
        if (this.slots.pending >= MAX_IN_FLIGHT) this.gate.stop('in-flight');
        return;
      }
    }
    this.onCommand(cmd.args(), cmd.raw());
  }

  private dispatch(args: Buffer[], raw: Buffer): void {
    if (args.length >= 2 && this.onHotPath()) {
      const hot = hotCommands(this.ctx.commands).lookup(args[0]!);
      if (hot !== null) {
        const key = args[1]!;
        this.runHot(hot, key, 0, key.length, raw, 0, raw.length);
        return;
      }
    }
    const name = args[0]!.toString('latin1').toLowerCase();
    this.lastCommandAt = Date.now();
    this.lastCommand =
      args.length > 1 && CONTAINERS.has(name) ? `${name}|${args[1]!.toString().toLowerCase()}` : name;
    // CLIENT REPLY OFF/SKIP: the replies of this command are written nowhere.
    const mute = this.replyMode !== 'on';
    if (this.replyMode === 'skip') this.replyMode = 'on';
    this.slots.muteNew = mute;
    // CLIENT CACHING applies to the next command other than CLIENT …, as in Redis.
    this.tracking.beginCommand(name === 'client');
    try {
      this.dispatchOne(name, args, raw);
    } finally {
      this.slots.muteNew = false;
      this.tracking.endCommand();
    }
  }

  private dispatchOne(name: string, args: Buffer[], raw: Buffer): void {
    if (this.pubsub?.active && !PubSub.allowedWhileSubscribed(name)) {
      this.slots.answer(
        usageError(
          `Can't execute '${name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context`,
        ),
      );
      return;
    }
    if (!this.authenticated && name !== 'auth' && name !== 'hello' && name !== 'quit' && name !== 'reset') {
      this.slots.answer(noAuthError());
      return;
    }
    if (name === 'ping' && this.pubsub?.active) {
      this.slots.answer(Buffer.concat([encodeArrayHeader(2), encodeBulk('pong'), encodeBulk(args[1] ?? '')]));
      return;
    }
    if (name === 'reset') {
      this.reset();
      return;
    }
    // Inside MULTI every command is queued, those rwsplit answers itself included.
    if (this.tx.inMulti && !NOT_QUEUED.has(name)) {
      this.tx.queue(name, args);
      return;
    }
    if (this.monitorLinks && name !== 'monitor') {
      const info = this.ctx.commands.get(name);
      if (info && (info.readonly || info.write || info.mayReplicate)) {
        this.slots.answer(usageError(KEYSPACE_ERROR));
        return;
      }
    }
    if (name === 'monitor') {
      this.monitor();
      return;
    }
    if (CONNECTION_STATE[name] !== undefined) {
      this.slots.answer(notSupportedError(CONNECTION_STATE[name]));
      return;
    }
    if (name === 'client' && this.connectionClient(args)) return;
    // A passthrough user's PING and ECHO go to the server, so its ACL rules apply to them.
    const local = this.serverChecksAcl(name) ? undefined : localReply(this, name, args);
    if (local !== undefined) {
      if (local !== null) this.slots.answer(local);
      return;
    }
    if (name === 'rwsplit') {
      this.rwsplit(args);
      return;
    }
    const refused = proxyRefusal(name, args);
    if (refused !== null && !this.tx.inMulti) {
      this.slots.answer(notSupportedError(refused));
      return;
    }
    if (this.routeSpecial(name, args)) return;
    const info = this.ctx.commands.get(name);
    if (!info) {
      this.slots.answer(unknownCommandError(args));
      return;
    }
    if (info.pubsub && name !== 'publish' && name !== 'spublish' && name !== 'pubsub') {
      this.pubSub().command(name, args);
      return;
    }
    this.routeKeyed(name, info, args, raw);
  }

  // ---- the hot path ------------------------------------------------------------------------

  /**
   * Whether the connection is in its plain state, where a one-key command needs nothing but
   * its route (hot-path.ts): logged in, no MULTI, WATCH, subscription, MONITOR, tracking or
   * CLIENT REPLY in force.
   */
  private onHotPath(): boolean {
    return (
      this.authenticated &&
      this.pubsub === null &&
      this.monitorLinks === null &&
      this.replyMode === 'on' &&
      !this.tx.inMulti &&
      !this.tx.watching &&
      !this.tracking.on
    );
  }

  /**
   * A one-key command in the plain state: what routeKeyed, read and write do for it, with a
   * reused reply slot as the link's reply sink (slotReply) and no closure. Anything unusual
   * (a failover under way, a link still connecting, a read that must wait or follow a write)
   * goes to the general code with a plain slot.
   */
  private runHot(
    hot: HotCommand,
    keyBytes: Buffer,
    keyStart: number,
    keyEnd: number,
    bytes: Buffer,
    start: number,
    end: number,
  ): void {
    this.lastCommandAt = this.arrivedAt;
    this.lastCommand = hot.name;
    this.tracking.beginCommand(false);
    this.hotCommand(hot.kind, keyBytes, keyStart, keyEnd, bytes, start, end);
    this.tracking.endCommand();
  }

  /**
   * The command is `bytes[start, end)`, its key `keyBytes[keyStart, keyEnd)`: Buffers are made
   * of them only off the hot path (a link sends the range, see RedisLink.sendRangeTo).
   */
  private hotCommand(
    kind: HotKind,
    keyBytes: Buffer,
    keyStart: number,
    keyEnd: number,
    bytes: Buffer,
    start: number,
    end: number,
  ): void {
    const shards = this.ctx.shards;
    const shard = shards.shards.length === 1 ? 0 : shards.shardOf(keyBytes.subarray(keyStart, keyEnd));
    if (kind !== HotKind.Read) {
      this.hotWrite(shard, bytes, start, end, kind === HotKind.Write);
      return;
    }
    const streams = this.ctx.streamReads();
    if (streams !== null) {
      const gate = streams.read(keyBytes.subarray(keyStart, keyEnd), this.causal.pgToken);
      if (gate?.wait) {
        // The connection holds a PostgreSQL token: read once the stream applied it, on the primary it writes to.
        const waiting = this.slots.open();
        gate.wait.then(
          () => this.write(shard, bytes.subarray(start, end), waiting, false),
          (err: Error) => this.slots.fill(waiting, tryAgainError(err.message)),
        );
        return;
      }
    }
    this.hotRead(shard, bytes, start, end);
  }

  private hotWrite(shard: number, bytes: Buffer, start: number, end: number, mayWrite: boolean): void {
    const s = this.ctx.shards.shards[shard]!;
    const node = mayWrite && this.ctx.writes.waits ? undefined : s.topology.writablePrimary(s.name);
    const link = node === undefined ? null : this.ctx.shards.link(node, this.id, this.profile);
    if (node === undefined || link === null || link instanceof Promise) {
      this.write(shard, bytes.subarray(start, end), this.slots.open(), mayWrite);
      return;
    }
    if (mayWrite) this.writtenShards.add(shard);
    this.ctx.stats.routed(node.spec.id, false);
    const kind = mayWrite ? SlotKind.Write : SlotKind.Primary;
    const slot = this.slots.openFor(this, kind, shard, node, bytes, start, end);
    if (mayWrite) {
      slot.causal = this.causal;
      this.ctx.writes.trackHot(link, shard, node, this.causal, slot);
    }
    slot.refs++;
    link.sendRangeTo(bytes, start, end, slot);
  }

  private hotRead(shard: number, bytes: Buffer, start: number, end: number): void {
    const causal = this.causal;
    const level = causal.level;
    if (level === 'read-your-writes' && causal.pin(shard) !== null) {
      this.read(shard, bytes.subarray(start, end), this.slots.open(), null);
      return;
    }
    const want = causal.token.forShard(shard);
    let node = this.sticky(shard, level, want);
    if (node === undefined) {
      const choice = this.ctx.planner.plan(shard, level, want, undefined, this.arrivedAt);
      if (choice instanceof Promise) {
        const slot = this.slots.open();
        const raw = bytes.subarray(start, end);
        this.hold(choice.then((c) => this.routeRead(shard, c, raw, slot, null)));
        return;
      }
      if (choice.error !== undefined) {
        this.routeRead(shard, choice, bytes.subarray(start, end), this.slots.open(), null);
        return;
      }
      node = choice.node;
      if (node.role === 'replica') this.rememberForTick(shard, node);
    }
    const link = this.ctx.shards.link(node, this.id, this.profile);
    if (link instanceof Promise) {
      this.sendRead(shard, node, bytes.subarray(start, end), this.slots.open(), null, false);
      return;
    }
    this.ctx.stats.routed(node.spec.id, true);
    const slot = this.slots.openFor(this, SlotKind.Read, shard, node, bytes, start, end);
    slot.refs++;
    link.sendRangeTo(bytes, start, end, slot);
  }

  /** The reply to a command of the hot path (SlotHost). */
  slotReply(slot: Slot, raw: Buffer | null): void {
    if (raw !== null) {
      if (slot.kind === SlotKind.Write) slot.acked = true;
      this.slots.fill(slot, raw);
      return;
    }
    const node = slot.node!;
    if (slot.kind === SlotKind.Read) {
      // The node died before answering: a read is safe to run elsewhere.
      this.ctx.stats.retried(node.spec.id);
      this.read(slot.shard, slot.commandBytes(), slot, new Set([node.spec.id]));
      return;
    }
    this.slots.fill(slot, lostConnectionError(this.lostMessage(slot.shard, node)));
  }

  /** The position behind a write of the hot path (SlotHost; see WritePath.trackHot). */
  slotPosition(slot: Slot, position: unknown): void {
    slot.causal!.endWrite(slot.shard, position as ReplicationInfo | null, slot.acked);
    this.slots.release(slot);
  }

  /** PING/ECHO of a client logged in as its own user (passthrough): answered by the server. */
  private serverChecksAcl(name: string): boolean {
    return (name === 'ping' || name === 'echo') && this.ctx.passthrough && this.creds !== null;
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
    if (this.queue.length - this.queueHead <= MAX_QUEUED) this.gate.go('queued');
    if (this.slots.pending >= MAX_IN_FLIGHT) this.gate.stop('in-flight');
  }

  // ---- output limits -----------------------------------------------------------------------

  /** The class whose client-output-buffer-limit applies to this connection now. */
  outputClass(): OutputClass {
    if (this.monitoring) return 'monitor';
    if (this.pubsub !== null) return 'pubsub';
    if (this.dedicatedInUse.size > 0) return 'blocked';
    return 'normal';
  }

  /** Bytes waiting to reach the client: its socket's queue and replies held back for order. */
  bufferedBytes(): number {
    return this.socket.writableLength + this.slots.heldBytes;
  }

  /** After replies were written: the output limit of the client's class, then backpressure. */
  private afterWrite(): void {
    if (this.closed) return;
    const queued = this.bufferedBytes();
    const cls = this.outputClass();
    const over = this.outputLimit.check(cls, queued);
    if (over !== null) {
      this.ctx.guard.killed({
        protocol: 'redis',
        reason: 'output-buffer-limit',
        clientClass: cls,
        detail: `client ${this.id}: ${over}`,
      });
      this.cutOff(`client output buffer limit: ${over}`);
      return;
    }
    if (queued > OUTPUT_HIGH_WATER && !this.gate.has('output')) {
      // Stop reading commands whose replies could only pile up; go on once the client has read.
      this.gate.stop('output');
      this.socket.once('drain', () => this.gate.go('output'));
    }
    if (this.slots.pending < MAX_IN_FLIGHT / 2) this.gate.go('in-flight');
  }

  /**
   * Closes the client for exceeding a limit: with `-ERR` when nothing is queued before it
   * (a client that reads would see it), at once otherwise (its queue is what must go).
   */
  cutOff(message: string): void {
    if (this.socket.writableLength === 0 && this.slots.heldBytes === 0) {
      this.socket.end(cutOffError(message));
      setTimeout(() => this.socket.destroy(), 1000).unref();
    } else {
      this.socket.destroy();
    }
    this.onClose();
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
      case 'wait':
      case 'waitaof': {
        // WAITAOF only where the servers have it (Redis 7.2): else their own unknown-command error.
        if (!this.ctx.commands.get(name)) return false;
        const slot = this.slots.open();
        runWait(this, encodeCommand(args), (r) => this.slots.fill(slot, r));
        return true;
      }
      case 'swapdb':
        // A change of the server's data, not of a connection: the (one) shard's primary.
        this.write(0, encodeCommand(args), this.slots.open(), true);
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
        // Inside MULTI they are queued like any command (they run on the transaction's shard).
        if (this.tx.inMulti) {
          this.tx.queue(name, args);
          return true;
        }
        const sub = args[1]?.toString().toLowerCase();
        if (name === 'script' && sub === 'debug') {
          this.slots.answer(
            notSupportedError(
              'SCRIPT DEBUG is not supported through rwsplit: it turns a shared server connection into a debugging session; run it on a server',
            ),
          );
          return true;
        }
        if (sub === 'load' || sub === 'flush' || sub === 'delete' || sub === 'restore') {
          this.fanout.broadcast(name, args);
          return true;
        }
        if (sub === 'kill' && args.length === 2) {
          this.fanout.kill(args);
          return true;
        }
        return false;
      }
      default:
        return false;
    }
  }

  private routeKeyed(name: string, container: CommandInfo, args: Buffer[], raw: Buffer): void {
    // A container's subcommand (OBJECT ENCODING, XINFO STREAM) has keys and flags of its own.
    const info = CommandTable.resolve(container, args);
    let positions = this.ctx.commands.keyPositions(info, args);
    // Arguments the server refuses before touching a key (bad numkeys): it answers its own error.
    if (positions === 'malformed') positions = [];
    if (positions === null) {
      // With one shard every key is there, wherever it is named.
      if (this.ctx.shards.shards.length > 1) {
        this.slots.answer(keysUnknownError(name));
        return;
      }
      positions = [];
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
    if (positions.length === 1 && info.readonly && !info.write) {
      const gate = this.ctx.streamReads()?.read(args[positions[0]!]!, this.causal.pgToken);
      if (gate?.wait) {
        // The connection holds a PostgreSQL token: read once the stream applied it, on the primary it writes to.
        const waiting = this.slots.open();
        gate.wait.then(
          () => this.write(shard, raw, waiting, false),
          (err: Error) => this.slots.fill(waiting, tryAgainError(err.message)),
        );
        return;
      }
    }
    let slot = this.slots.open();
    if (info.name === 'slowlog|get') {
      const whole = slot;
      slot = this.slots.detached((bytes) => this.slots.fill(whole, withoutMonitorEntries(bytes)));
    }
    // OBJECT IDLETIME/FREQ describe the key's accesses, which are the primary's (writes land there).
    if (info.readonly && !info.write && container.name !== 'object') {
      this.read(
        shard,
        raw,
        READ_ONLY_SCRIPTS.has(name) ? this.primaryOnReadonly(shard, raw, slot) : slot,
        null,
      );
    } else this.write(shard, raw, slot, CommandTable.mayWrite(info));
  }

  /**
   * FCALL_RO/EVAL_RO/EVALSHA_RO of a script flagged for writes: a replica refuses it with
   * `READONLY` before running it, the primary with Redis's own error (`Can not execute a
   * script with write flag using *_ro command.`), which is what a direct client sees. The
   * script does not run on either, so asking the primary again is safe.
   */
  private primaryOnReadonly(shard: number, raw: Buffer, slot: Slot): Slot {
    return this.slots.detached((bytes) => {
      if (refusedByReplica(bytes)) this.write(shard, raw, slot, false);
      else this.slots.fill(slot, bytes);
    });
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
      if (failed) this.slots.fill(slot, unavailableError(failed));
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
    if (mayWrite) this.writtenShards.add(shard);
    const fail = (e: Buffer): void => this.slots.fill(slot, e);
    this.withPrimary(shard, fail, (node) => {
      this.ctx.stats.routed(node.spec.id, false);
      this.withLink(node, slot, (link) => {
        const deliver = (r: Buffer | null): void =>
          this.slots.fill(slot, r ?? lostConnectionError(this.lostMessage(shard, node)));
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
    if (this.tracking.on) {
      // Tracked reads run on the client's tracking connection to the primary (session-tracking.ts).
      this.write(shard, raw, slot, false);
      return;
    }
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
    const sticky = failed ? undefined : this.sticky(shard, level, want);
    if (sticky !== undefined) {
      this.sendRead(shard, sticky, raw, slot, failed, false);
      return;
    }
    const choice = this.ctx.planner.plan(shard, level, want, failed ?? undefined, this.arrivedAt);
    if (choice instanceof Promise) this.hold(choice.then((c) => this.routeRead(shard, c, raw, slot, failed)));
    else this.routeRead(shard, choice, raw, slot, failed);
  }

  /**
   * The replica this tick's reads of `shard` went to, when this read may go there too: the
   * reads of one pipeline (one tick) share a replica, so one write to one link instead of one
   * per replica; the balancer still spreads pipelines and clients.
   */
  private sticky(
    shard: number,
    level: ConsistencyLevel,
    want: readonly CausalPosition[],
  ): NodeStatus | undefined {
    return this.tickPicks.sticky(shard, level, want, this.ctx.planner);
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
      this.slots.fill(slot, unavailableError(choice.error));
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
        link.trailerDecoded(INFO_REPLICATION, positionFrom, (info) => {
          if (info) this.causal.resolve(shard, info);
        });
      }
    });
  }

  private rememberForTick(shard: number, node: NodeStatus): void {
    this.tickPicks.remember(shard, node);
  }

  /**
   * Runs `use` with the shared link to `node` (with CLIENT TRACKING on, the client's tracking
   * link when `node` is a primary), at once when it is open.
   */
  withLink(node: NodeStatus, slot: Slot, use: (link: RedisLink) => void): void {
    const link = this.tracking.linkTo(node) ?? this.ctx.shards.link(node, this.id, this.profile);
    if (!(link instanceof Promise)) {
      use(link);
      return;
    }
    link.then(use, (err: Error) => this.slots.fill(slot, linkFailure(err)));
  }

  /** Blocking commands (BLPOP, XREAD BLOCK, …) get a connection of their own for their duration. */
  private blocking(shard: number, raw: Buffer, mayWrite: boolean): void {
    const slot = this.slots.open();
    const fail = (e: Buffer): void => this.slots.fill(slot, e);
    this.withPrimary(shard, fail, (node) => {
      this.ctx.stats.routed(node.spec.id, false);
      const profile = this.profile;
      if (mayWrite) this.writtenShards.add(shard);
      this.ctx.shards.dedicated(node, profile).then(
        (link) => {
          if (this.closed) {
            this.ctx.shards.releaseDedicated(node, link, profile);
            return;
          }
          const deliver = (reply: Buffer | null): void => {
            this.slots.fill(slot, reply ?? lostConnectionError(this.lostMessage(shard, node)));
            this.ctx.shards.releaseDedicated(node, link, profile);
          };
          // A blocking write (BLPOP pops) gets its WAIT and position too: Redis runs them
          // once the command unblocks, since it reads a blocked client's next commands only then.
          this.sendBlocking(
            link,
            raw,
            mayWrite ? this.ctx.writes.track(link, shard, node, this.causal, deliver) : deliver,
          );
        },
        (err: Error) => fail(linkFailure(err)),
      );
    });
  }

  /**
   * Sends a command that may block on a link of this client's own: until it answers, CLIENT
   * UNBLOCK with this client's id reaches it (the server's id for the link is asked first, in
   * the same write) and the client's leaving closes it.
   */
  sendBlocking(link: RedisLink, raw: Buffer, cb: ReplyCallback): void {
    void link.serverId();
    this.dedicatedInUse.add(link);
    link.send(raw, (reply, info) => {
      this.dedicatedInUse.delete(link);
      cb(reply, info);
    });
  }

  /** The client's shared link to `node` (WaitHost). */
  sharedLink(node: NodeStatus, fail: (error: Buffer) => void, use: (link: RedisLink) => void): void {
    const link = this.ctx.shards.link(node, this.id, this.profile);
    if (!(link instanceof Promise)) use(link);
    else link.then(use, (err: Error) => fail(linkFailure(err)));
  }

  /** A new link of this client's own to `node`, never pooled (WaitHost). */
  ownLink(node: NodeStatus, fail: (error: Buffer) => void, use: (link: RedisLink) => void): void {
    this.ctx.shards.exclusive(node, this.profile).then(
      (link) => {
        if (this.closed) link.destroy('client left');
        else use(link);
      },
      (err: Error) => fail(linkFailure(err)),
    );
  }

  // ---- CLIENT TRACKING / CACHING / UNBLOCK ---------------------------------------------------

  /**
   * The CLIENT subcommands that act on server connections of the client's own; false for the
   * others (answered by local-commands.ts). Inside MULTI they are queued and refused there.
   */
  private connectionClient(args: Buffer[]): boolean {
    const sub = args[1]?.toString().toLowerCase();
    if (sub === 'tracking') {
      const reply = this.tracking.command(args);
      if (Buffer.isBuffer(reply)) this.slots.answer(reply);
      else {
        // The commands after it are tracked: they wait for its answer.
        const slot = this.slots.open();
        this.hold(reply.then((r) => this.slots.fill(slot, r)));
      }
      return true;
    }
    if (sub === 'caching') {
      this.slots.answer(this.tracking.caching(args));
      return true;
    }
    if (sub === 'unblock') {
      this.unblock(args);
      return true;
    }
    return false;
  }

  /**
   * CLIENT UNBLOCK <id> [TIMEOUT|ERROR], `id` as rwsplit's clients see it (CLIENT ID): sent to
   * the server for the link that client's blocking command runs on. `:0` when that client is
   * not blocked, as from Redis.
   */
  private unblock(args: Buffer[]): void {
    if (args.length !== 3 && args.length !== 4) {
      this.slots.answer(arityError('client|unblock'));
      return;
    }
    const mode = args.length === 4 ? args[3]!.toString().toLowerCase() : 'timeout';
    if (mode !== 'timeout' && mode !== 'error') {
      this.slots.answer(usageError('CLIENT UNBLOCK reason should be TIMEOUT or ERROR'));
      return;
    }
    const text = args[2]!.toString();
    if (!/^-?\d+$/.test(text) || !Number.isSafeInteger(Number(text))) {
      this.slots.answer(notIntegerError());
      return;
    }
    const target = this.client(Number(text));
    const link = target?.dedicatedInUse.values().next().value;
    if (!link) {
      this.slots.answer(encodeInteger(0));
      return;
    }
    const slot = this.slots.open();
    const node = this.ctx.shards.shards
      .map((s) => s.topology.get(link.target.nodeId))
      .find((n) => n !== undefined);
    void link.serverId().then((serverId) => {
      if (serverId === null || !node || link.closed) {
        this.slots.fill(slot, encodeInteger(0));
        return;
      }
      const cmd = encodeCommand(['CLIENT', 'UNBLOCK', String(serverId), ...args.slice(3)]);
      this.sharedLink(
        node,
        (e) => this.slots.fill(slot, e),
        (l) =>
          l.send(cmd, (r) => this.slots.fill(slot, r ?? lostConnectionError(lostLinkText(node.spec.id)))),
      );
    });
  }

  // ---- MONITOR -----------------------------------------------------------------------------

  /**
   * MONITOR on every reachable node (reads run on replicas), each on a link of this client's
   * own that is closed when the client resets or leaves: a monitoring connection answers
   * nothing else, so it must never serve another client.
   */
  private monitor(): void {
    if (this.monitorLinks) return; // Redis ignores a second MONITOR
    const links: RedisLink[] = [];
    this.monitorLinks = links;
    const slot = this.slots.open();
    const profile = { ...this.profile, resp3: false };
    const nodes = this.ctx.shards.shards.flatMap((s) =>
      s.topology.nodes.filter((n) => n.reachable && !n.fenced),
    );
    let left = nodes.length;
    let failure: Buffer | null = null;
    const done = (): void => {
      if (--left > 0) return;
      if (failure && links.length === 0) {
        this.monitorLinks = null;
        this.slots.fill(slot, failure);
      } else this.slots.fill(slot, encodeSimple('OK'));
    };
    if (left === 0) {
      left = 1;
      failure = unavailableError('no node is reachable to monitor');
      done();
      return;
    }
    for (const node of nodes) {
      this.ctx.shards.exclusive(node, profile).then(
        (link) => {
          if (this.closed || this.monitorLinks !== links) {
            link.destroy('monitor not needed');
            done();
            return;
          }
          let confirmed = false;
          link.listener = (raw, info) => {
            if (confirmed) {
              this.slots.answer(raw);
              return;
            }
            confirmed = true;
            if (info.isError) {
              failure = raw;
              link.destroy('monitor refused');
            } else links.push(link);
            done();
          };
          link.socket.write(encodeCommand(['MONITOR']));
        },
        (err: Error) => {
          failure = linkFailure(err);
          done();
        },
      );
    }
  }

  private stopMonitor(): void {
    const links = this.monitorLinks;
    this.monitorLinks = null;
    for (const l of links ?? []) l.destroy('monitor ended');
  }

  // ---- RESET -------------------------------------------------------------------------------

  /** RESET: everything rwsplit holds for this connection goes back to a new connection's. */
  private reset(): void {
    this.tx.close(true);
    this.pubsub?.close();
    this.pubsub = null;
    this.stopMonitor();
    this.tracking.stop();
    this.resp3 = false;
    this.name = null;
    this.db = 0;
    this.creds = null;
    this.authenticated = !this.ctx.authRequired;
    this.causal = new SessionCausal(this.ctx.consistency);
    this.replyMode = 'on';
    this.slots.muteNew = false;
    this.slots.answer(encodeSimple('RESET'));
  }

  // ---- pub/sub ---------------------------------------------------------------------------

  private pubSub(): PubSub {
    if (!this.pubsub) {
      this.pubsub = new PubSub(
        this.ctx.shards,
        this.slots,
        this.socket,
        () => this.profile,
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
    this.slots.flushOut();
    this.socket.end();
    this.onClose();
  }

  /** The client is gone: connections of its own are closed (a pending BLPOP must not pop for nobody). */
  onClose(): void {
    if (this.closed) return;
    this.closed = true;
    for (const link of this.dedicatedInUse) link.destroy('client left');
    this.dedicatedInUse.clear();
    this.stopMonitor();
    this.tracking.close();
    this.tx.close(false);
    this.pubsub?.close();
    this.queue = [];
    this.queueHead = 0;
    this.ctx.sessionClosed(this.id);
  }
}

/** Commands whose CLIENT LIST `cmd=` names the subcommand too, as Redis does. */
const CONTAINERS = new Set([
  'client',
  'config',
  'object',
  'script',
  'function',
  'command',
  'acl',
  'memory',
  'xinfo',
  'pubsub',
]);

/**
 * Commands that would change a shared server connection for good, and are not otherwise
 * handled (CLIENT, SELECT, HELLO, MONITOR, subscriptions, WATCH are): refused, with why.
 */
const CONNECTION_STATE: Record<string, string> = {
  sync: 'SYNC is not supported through rwsplit: it would turn a shared server connection into a replication stream; connect replicas to the servers',
  psync:
    'PSYNC is not supported through rwsplit: it would turn a shared server connection into a replication stream; connect replicas to the servers',
  replconf:
    'REPLCONF is not supported through rwsplit: it concerns a replication connection; connect replicas to the servers',
};

/** What a client is told when a link could not be opened: the server's own refusal, or why. */
function linkFailure(err: Error): Buffer {
  return err instanceof AuthRefused ? err.reply : unavailableError(err.message);
}
