/**
 * MULTI/EXEC/DISCARD and WATCH/UNWATCH for one client connection. A transaction lives on
 * one shard: its commands are queued here and sent with EXEC, as one write, to that shard's
 * primary. WATCH takes a connection of the client's own to the watched keys' primary, and
 * every command until EXEC/DISCARD/UNWATCH runs there.
 */
import type { NodeStatus } from '../../core/topology.js';
import type { RedisLink, ReplyCallback } from '../backend/backend-link.js';
import { CommandTable, proxyRefusal, unknownCommandError } from '../routing/command-table.js';
import { localReply } from './local-commands.js';
import type { SessionHelperHost } from './session-context.js';
import type { LinkProfile } from '../sharding/shards.js';
import type { Slot } from './reply-slots.js';
import {
  crossShardError,
  execAbortError,
  execLostError,
  internalError,
  keysUnknownError,
  lostConnectionError,
  notSupportedError,
  unavailableError,
  usageError,
} from '../errors.js';
import { encodeArrayHeader, encodeCommand, encodeSimple, ReplyReader } from '../resp/index.js';

/**
 * Commands rwsplit answers itself (they concern the client's connection to the proxy): inside
 * MULTI they are queued like any other and answered, in their place, in EXEC's reply.
 */
const LOCAL_IN_MULTI = new Set(['auth', 'hello', 'select', 'client', 'monitor']);

/** Commands that cannot be queued through rwsplit: the transaction fails, as for Redis's no-multi commands. */
const NOT_IN_MULTI: Record<string, string> = {
  rwsplit: 'RWSPLIT cannot be queued in MULTI through rwsplit; send it before MULTI or after EXEC',
  subscribe:
    'SUBSCRIBE inside MULTI is not supported through rwsplit: subscriptions use connections of their own',
  ssubscribe:
    'SSUBSCRIBE inside MULTI is not supported through rwsplit: subscriptions use connections of their own',
  psubscribe:
    'PSUBSCRIBE inside MULTI is not supported through rwsplit: subscriptions use connections of their own',
  unsubscribe:
    'UNSUBSCRIBE inside MULTI is not supported through rwsplit: subscriptions use connections of their own',
  sunsubscribe:
    'SUNSUBSCRIBE inside MULTI is not supported through rwsplit: subscriptions use connections of their own',
  punsubscribe:
    'PUNSUBSCRIBE inside MULTI is not supported through rwsplit: subscriptions use connections of their own',
  sync: 'Command not allowed inside a transaction',
  psync: 'Command not allowed inside a transaction',
  replconf: 'Command not allowed inside a transaction',
};

export class Transactions {
  /** MULTI in progress: commands queued here, sent with EXEC to one shard */
  private multi: {
    commands: Buffer[];
    /** per queued command: null when a server runs it, else the command rwsplit answers at EXEC */
    entries: (Buffer[] | null)[];
    shard: number | null;
    failed: string | null;
    /** a SELECT was queued: later server commands would run in the old database */
    selected: boolean;
  } | null = null;
  /** WATCH in progress: a link of this client's own to the watched keys' primary */
  private watch: { link: RedisLink; shard: number; node: NodeStatus; profile: LinkProfile } | null = null;

  constructor(private readonly s: SessionHelperHost) {}

  get inMulti(): boolean {
    return this.multi !== null;
  }

  get watching(): boolean {
    return this.watch !== null;
  }

  /** Commands queued in MULTI (CLIENT LIST's `multi=`), -1 outside MULTI. */
  get queued(): number {
    return this.multi ? this.multi.entries.length : -1;
  }

  command(name: string, args: Buffer[]): void {
    const slots = this.s.slots;
    switch (name) {
      case 'multi':
        if (this.multi) slots.answer(usageError('MULTI calls can not be nested'));
        else {
          this.multi = {
            commands: [encodeCommand(args)],
            entries: [],
            shard: this.watch?.shard ?? null,
            failed: null,
            selected: false,
          };
          slots.answer(encodeSimple('OK'));
        }
        return;
      case 'exec':
        this.exec();
        return;
      case 'discard':
        if (!this.multi) slots.answer(usageError('DISCARD without MULTI'));
        else {
          this.multi = null;
          this.endWatch();
          slots.answer(encodeSimple('OK'));
        }
        return;
      case 'watch':
        if (this.multi) slots.answer(usageError('WATCH inside MULTI is not allowed'));
        else this.startWatch(args);
        return;
      default: // unwatch
        this.endWatch();
        slots.answer(encodeSimple('OK'));
    }
  }

  /** A keyed command while WATCH is active: it runs on the watch connection. */
  duringWatch(shards: ReadonlySet<number>, raw: Buffer, mayWrite: boolean): void {
    const w = this.watch!;
    if (shards.size > 1 || (shards.size === 1 && !shards.has(w.shard))) {
      this.s.slots.answer(crossShardError('a command during WATCH'));
      return;
    }
    const slot = this.s.slots.open();
    const deliver = (r: Buffer | null): void =>
      this.s.slots.fill(slot, r ?? lostConnectionError(this.s.lostMessage(w.shard, w.node)));
    w.link.send(
      raw,
      mayWrite ? this.s.ctx.writes.track(w.link, w.shard, w.node, this.s.causal, deliver) : deliver,
    );
  }

  queue(name: string, args: Buffer[]): void {
    const m = this.multi!;
    const { commands, shards, slots } = {
      commands: this.s.ctx.commands,
      shards: this.s.ctx.shards,
      slots: this.s.slots,
    };
    const refused =
      NOT_IN_MULTI[name] ??
      ((name === 'auth' || name === 'hello') && this.s.passthrough
        ? `${name.toUpperCase()} cannot be queued in MULTI through rwsplit in passthrough auth mode; send it before MULTI`
        : undefined);
    if (refused !== undefined) {
      m.failed = refused;
      slots.answer(notSupportedError(refused));
      return;
    }
    const local =
      LOCAL_IN_MULTI.has(name) || ((name === 'swapdb' || name === 'move') && this.s.shardCount > 1);
    if (local) {
      // A SELECT that would change the database: later commands must not be queued after it.
      if (name === 'select' && args.length === 2 && /^\d+$/.test(args[1]!.toString())) {
        const n = Number(args[1]!.toString());
        if (n !== this.s.db && n < this.s.databases) m.selected = true;
      }
      m.entries.push(args);
      slots.answer(encodeSimple('QUEUED'));
      return;
    }
    if (m.selected) {
      m.failed = 'commands after SELECT inside MULTI would run in the previous database through rwsplit';
      slots.answer(notSupportedError(`${m.failed}; SELECT before MULTI`));
      return;
    }
    // Refused at once like Redis does (the transaction then ends in EXECABORT): unknown
    // command or subcommand, wrong number of arguments.
    const info = commands.get(name);
    if (!info) {
      m.failed = 'unknown command';
      slots.answer(unknownCommandError(args));
      return;
    }
    const refusal = CommandTable.refusal(info, args) ?? proxyRefusal(name, args);
    if (refusal !== null) {
      m.failed = refusal;
      slots.answer(notSupportedError(refusal));
      return;
    }
    let positions = commands.keyPositions(CommandTable.resolve(info, args), args);
    // Malformed arguments: queued, EXEC carries the server's own error for this command.
    if (positions === 'malformed' || (positions === null && shards.shards.length === 1)) positions = [];
    if (positions === null) {
      m.failed = `cannot locate the keys of '${name}'`;
      slots.answer(keysUnknownError(name));
      return;
    }
    for (const p of positions) {
      const shard = shards.shardOf(args[p]!);
      if (m.shard === null) m.shard = shard;
      else if (m.shard !== shard) {
        m.failed = 'keys of this transaction live on different shards';
        slots.answer(crossShardError('this transaction'));
        return;
      }
    }
    m.commands.push(encodeCommand(args));
    m.entries.push(null);
    slots.answer(encodeSimple('QUEUED'));
  }

  /** The reply of a queued command rwsplit answers itself, computed at EXEC as Redis would. */
  private localAtExec(args: Buffer[]): Buffer {
    const name = args[0]!.toString('latin1').toLowerCase();
    if (name === 'monitor') return usageError("MONITOR isn't allowed for DENY BLOCKING client");
    return localReply(this.s, name, args) ?? encodeSimple('OK');
  }

  /**
   * EXEC's reply with the answers of locally answered commands put in their places; `server`
   * is the servers' EXEC reply to the other commands (null when there were none).
   */
  private merged(m: NonNullable<Transactions['multi']>, server: Buffer | null): Buffer {
    if (server === null)
      return Buffer.concat([
        encodeArrayHeader(m.entries.length),
        ...m.entries.map((a) => this.localAtExec(a!)),
      ]);
    if (server[0] !== 0x2a || m.entries.every((e) => e === null)) return server; // aborted or nil (WATCH): as is
    const headerEnd = server.indexOf('\r\n');
    const replies: Buffer[] = [];
    new ReplyReader().push(server.subarray(headerEnd + 2), (r) => replies.push(Buffer.from(r)));
    let next = 0;
    const out = m.entries.map((e) =>
      e === null ? (replies[next++] ?? internalError('missing reply')) : this.localAtExec(e),
    );
    return Buffer.concat([encodeArrayHeader(out.length), ...out]);
  }

  /** Sends MULTI … EXEC as one write to the shard's primary and answers with EXEC's reply. */
  private exec(): void {
    const m = this.multi;
    const slots = this.s.slots;
    if (!m) {
      slots.answer(usageError('EXEC without MULTI'));
      return;
    }
    this.multi = null;
    const slot = slots.open();
    if (m.failed) {
      this.endWatch();
      // Redis's own text: each error was answered when its command was refused.
      slots.fill(slot, execAbortError());
      return;
    }
    if (m.commands.length === 1 && !this.watch) {
      // Only commands rwsplit answers itself: no server is involved.
      slots.fill(slot, this.merged(m, null));
      return;
    }
    if (m.entries.some((e) => e !== null)) {
      // Their effects (CLIENT SETNAME, SELECT …) apply when EXEC's reply comes: the commands
      // after EXEC wait for it.
      this.s.hold(new Promise<void>((resolve) => (slot.onFilled = resolve)));
    }
    m.commands.push(encodeCommand(['EXEC']));
    const raw = Buffer.concat(m.commands);
    const count = m.commands.length;
    const shard = m.shard ?? 0;
    const answer = (r: Buffer): Buffer => this.merged(m, r);
    if (this.watch) {
      const w = this.watch;
      this.send(w.link, w.node, w.shard, raw, count, slot, answer, () => this.endWatch());
      return;
    }
    this.s.withPrimary(
      shard,
      (e) => slots.fill(slot, e),
      (node) => {
        this.s.ctx.stats.routed(node.spec.id, false);
        this.s.withLink(node, slot, (link) =>
          this.send(link, node, shard, raw, count, slot, answer, () => undefined),
        );
      },
    );
  }

  private send(
    link: RedisLink,
    node: NodeStatus,
    shard: number,
    raw: Buffer,
    count: number,
    slot: Slot,
    answer: (reply: Buffer) => Buffer,
    done: () => void,
  ): void {
    this.s.writtenShards.add(shard); // WAIT counts replicas for it
    const last = this.s.ctx.writes.track(link, shard, node, this.s.causal, (r) => {
      this.s.slots.fill(slot, r ? answer(r) : execLostError());
      done();
    });
    // +OK for MULTI and +QUEUED for each command were answered already.
    const cbs: ReplyCallback[] = Array.from({ length: count }, (_, i) =>
      i < count - 1 ? () => undefined : last,
    );
    link.sendMany(raw, cbs);
  }

  private startWatch(args: Buffer[]): void {
    const { shards, slots } = { shards: this.s.ctx.shards, slots: this.s.slots };
    const keyShards = new Set(args.slice(1).map((k) => shards.shardOf(k)));
    if (keyShards.size !== 1 || (this.watch && !keyShards.has(this.watch.shard))) {
      slots.answer(crossShardError('WATCH'));
      return;
    }
    const shard = [...keyShards][0]!;
    const slot = slots.open();
    const reply = (node: NodeStatus) => (r: Buffer | null) =>
      slots.fill(slot, r ?? lostConnectionError(this.s.lostMessage(shard, node)));
    if (this.watch) {
      this.watch.link.send(encodeCommand(args), reply(this.watch.node));
      return;
    }
    const profile = this.s.profile;
    this.s.withPrimary(
      shard,
      (e) => slots.fill(slot, e),
      (node) =>
        shards.dedicated(node, profile).then(
          (link) => {
            if (this.s.isClosed) {
              link.destroy('client left');
              return;
            }
            this.watch = { link, shard, node, profile };
            link.send(encodeCommand(args), reply(node));
          },
          (err: Error) => slots.fill(slot, unavailableError(err.message)),
        ),
    );
  }

  private endWatch(): void {
    const w = this.watch;
    if (!w) return;
    this.watch = null;
    // UNWATCH before the link serves anyone else.
    w.link.send(encodeCommand(['UNWATCH']), () =>
      this.s.ctx.shards.releaseDedicated(w.node, w.link, w.profile),
    );
  }

  /** The client left (its watch connection goes) or sent RESET (`keepLink`: UNWATCH, then reuse it). */
  close(keepLink: boolean): void {
    if (keepLink) this.endWatch();
    else this.watch?.link.destroy('client left');
    this.watch = null;
    this.multi = null;
  }
}
