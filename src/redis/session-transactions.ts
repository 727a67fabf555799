/**
 * MULTI/EXEC/DISCARD and WATCH/UNWATCH for one client connection. A transaction lives on
 * one shard: its commands are queued here and sent with EXEC, as one write, to that shard's
 * primary. WATCH takes a connection of the client's own to the watched keys' primary, and
 * every command until EXEC/DISCARD/UNWATCH runs there.
 */
import type { NodeStatus } from '../core/topology.js';
import type { RedisLink, ReplyCallback } from './backend-link.js';
import { CommandTable, proxyRefusal, unknownCommandError } from './command-table.js';
import type { RedisSession } from './redis-session.js';
import type { Slot } from './reply-slots.js';
import { encodeCommand, encodeError, encodeSimple } from './resp/index.js';

/** A transaction or WATCH spanning shards. */
export const CROSSSLOT = (what: string): Buffer =>
  encodeError(
    `Keys in ${what} don't hash to the same shard; put them under one hash tag, e.g. {user:42}:a and {user:42}:b`,
    'CROSSSLOT',
  );

export class Transactions {
  /** MULTI in progress: commands queued here, sent with EXEC to one shard */
  private multi: { commands: Buffer[]; shard: number | null; failed: string | null } | null = null;
  /** WATCH in progress: a link of this client's own to the watched keys' primary */
  private watch: { link: RedisLink; shard: number; node: NodeStatus } | null = null;

  constructor(private readonly s: RedisSession) {}

  get inMulti(): boolean {
    return this.multi !== null;
  }

  get watching(): boolean {
    return this.watch !== null;
  }

  command(name: string, args: Buffer[]): void {
    const slots = this.s.slots;
    switch (name) {
      case 'multi':
        if (this.multi) slots.answer(encodeError('MULTI calls can not be nested'));
        else {
          this.multi = { commands: [encodeCommand(args)], shard: this.watch?.shard ?? null, failed: null };
          slots.answer(encodeSimple('OK'));
        }
        return;
      case 'exec':
        this.exec();
        return;
      case 'discard':
        if (!this.multi) slots.answer(encodeError('DISCARD without MULTI'));
        else {
          this.multi = null;
          this.endWatch();
          slots.answer(encodeSimple('OK'));
        }
        return;
      case 'watch':
        this.startWatch(args);
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
      this.s.slots.answer(CROSSSLOT('a command during WATCH'));
      return;
    }
    const slot = this.s.slots.open();
    const deliver = (r: Buffer | null): void =>
      this.s.slots.fill(slot, r ?? encodeError(this.s.lostMessage(w.shard, w.node)));
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
      slots.answer(encodeError(refusal));
      return;
    }
    let positions = commands.keyPositions(CommandTable.resolve(info, args), args);
    // Malformed arguments: queued, EXEC carries the server's own error for this command.
    if (positions === 'malformed' || (positions === null && shards.shards.length === 1)) positions = [];
    if (positions === null) {
      m.failed = `cannot locate the keys of '${name}'`;
      slots.answer(encodeError(`rwsplit cannot locate the keys of '${name}' with these arguments`));
      return;
    }
    for (const p of positions) {
      const shard = shards.shardOf(args[p]!);
      if (m.shard === null) m.shard = shard;
      else if (m.shard !== shard) {
        m.failed = 'keys of this transaction live on different shards';
        slots.answer(CROSSSLOT('this transaction'));
        return;
      }
    }
    m.commands.push(encodeCommand(args));
    slots.answer(encodeSimple('QUEUED'));
  }

  /** Sends MULTI … EXEC as one write to the shard's primary and answers with EXEC's reply. */
  private exec(): void {
    const m = this.multi;
    const slots = this.s.slots;
    if (!m) {
      slots.answer(encodeError('EXEC without MULTI'));
      return;
    }
    this.multi = null;
    const slot = slots.open();
    if (m.failed) {
      this.endWatch();
      // Redis's own text: each error was answered when its command was refused.
      slots.fill(slot, encodeError('Transaction discarded because of previous errors.', 'EXECABORT'));
      return;
    }
    m.commands.push(encodeCommand(['EXEC']));
    const raw = Buffer.concat(m.commands);
    const count = m.commands.length;
    const shard = m.shard ?? 0;
    if (this.watch) {
      const w = this.watch;
      this.send(w.link, w.node, w.shard, raw, count, slot, () => this.endWatch());
      return;
    }
    this.s.withPrimary(
      shard,
      (e) => slots.fill(slot, e),
      (node) => {
        this.s.ctx.stats.routed(node.spec.id, false);
        this.s.withLink(node, slot, (link) =>
          this.send(link, node, shard, raw, count, slot, () => undefined),
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
    done: () => void,
  ): void {
    const last = this.s.ctx.writes.track(link, shard, node, this.s.causal, (r) => {
      this.s.slots.fill(
        slot,
        r ?? encodeError('connection lost during EXEC; the transaction may or may not have run'),
      );
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
      slots.answer(CROSSSLOT('WATCH'));
      return;
    }
    const shard = [...keyShards][0]!;
    const slot = slots.open();
    const reply = (node: NodeStatus) => (r: Buffer | null) =>
      slots.fill(slot, r ?? encodeError(this.s.lostMessage(shard, node)));
    if (this.watch) {
      this.watch.link.send(encodeCommand(args), reply(this.watch.node));
      return;
    }
    this.s.withPrimary(
      shard,
      (e) => slots.fill(slot, e),
      (node) =>
        shards.dedicated(node, this.s.resp3).then(
          (link) => {
            if (this.s.isClosed) {
              link.destroy('client left');
              return;
            }
            this.watch = { link, shard, node };
            link.send(encodeCommand(args), reply(node));
          },
          (err: Error) => slots.fill(slot, encodeError(err.message, 'CLUSTERDOWN')),
        ),
    );
  }

  private endWatch(): void {
    const w = this.watch;
    if (!w) return;
    this.watch = null;
    // UNWATCH before the link serves anyone else.
    w.link.send(encodeCommand(['UNWATCH']), () =>
      this.s.ctx.shards.releaseDedicated(w.node, w.link, this.s.resp3),
    );
  }

  /** The client left: its watch connection goes. */
  close(): void {
    this.watch?.link.destroy('client left');
    this.watch = null;
    this.multi = null;
  }
}
