/**
 * Commands of one client that run on several shards and whose replies are merged: a
 * multi-key command whose keys live on several shards (MGET, MSET, DEL, …: one sub-command
 * per shard), and commands for every shard's primary (KEYS, DBSIZE, FLUSHALL, SCRIPT LOAD).
 */
import { CommandTable } from '../routing/command-table.js';
import type { SessionHelperHost } from './session-context.js';
import { crossShardError, lostConnectionError, unavailableError } from '../errors.js';
import { encodeCommand } from '../resp/index.js';

/** Multi-key commands split by shard and merged back. */
export const SPLIT: Record<string, { merge: 'sum' | 'ok' | 'mget'; pairs: boolean }> = {
  mget: { merge: 'mget', pairs: false },
  del: { merge: 'sum', pairs: false },
  unlink: { merge: 'sum', pairs: false },
  exists: { merge: 'sum', pairs: false },
  touch: { merge: 'sum', pairs: false },
  mset: { merge: 'ok', pairs: true },
};

export class SessionFanout {
  constructor(private readonly s: SessionHelperHost) {}

  /** A multi-key command whose keys live on several shards: one sub-command per shard. */
  split(name: string, args: Buffer[]): void {
    const spec = SPLIT[name];
    if (!spec) {
      this.s.slots.answer(crossShardError(`'${name}'`));
      return;
    }
    const shards = this.s.ctx.shards;
    const byShard = new Map<number, Buffer[]>();
    const placement: [number, number][] = [];
    const order: number[] = [];
    const step = spec.pairs ? 2 : 1;
    for (let i = 1; i + step - 1 < args.length; i += step) {
      const shard = shards.shardOf(args[i]!);
      let list = byShard.get(shard);
      if (!list) {
        byShard.set(shard, (list = [args[0]!]));
        order.push(shard);
      }
      placement.push([order.indexOf(shard), (list.length - 1) / step]);
      for (let j = 0; j < step; j++) list.push(args[i + j]!);
    }
    const slots = this.s.slots;
    const slot = slots.openSplit(order.length, spec.merge);
    if (spec.merge === 'mget') slot.placement = placement;
    const info = this.s.ctx.commands.get(name)!;
    order.forEach((shard, part) => {
      const raw = encodeCommand(byShard.get(shard)!);
      const part_ = slots.detached((bytes: Buffer) => slots.fillPart(slot, part, bytes));
      if (info.readonly) this.s.read(shard, raw, part_, null);
      else this.s.write(shard, raw, part_, CommandTable.mayWrite(info));
    });
  }

  /** KEYS, DBSIZE, FLUSHALL, SCRIPT LOAD, …: every shard's primary; replies merged. */
  broadcast(name: string, args: Buffer[]): void {
    const slots = this.s.slots;
    const n = this.s.ctx.shards.shards.length;
    const merge = name === 'dbsize' ? 'sum' : name === 'keys' ? 'keys' : 'ok';
    const slot = merge === 'keys' ? slots.openConcat(n) : slots.openSplit(n, merge);
    const raw = encodeCommand(args);
    // KEYS, DBSIZE, RANDOMKEY only read (on the primaries, to see every key at once).
    const info = this.s.ctx.commands.get(name);
    const mayWrite = info !== undefined && CommandTable.mayWrite(info);
    for (let i = 0; i < n; i++) {
      const part = slots.detached((bytes: Buffer) => slots.fillPart(slot, i, bytes));
      this.s.write(i, raw, part, mayWrite);
    }
  }

  /**
   * SCRIPT KILL, FUNCTION KILL: to every shard's primary (a script runs on the primary of the
   * shard of its keys; rwsplit does not track which one is running), each on a connection of
   * its own (a shared link may be queued behind the busy script itself, and Redis reads no
   * more commands from the connection running it). The answer is the first that is not
   * `NOTBUSY` (the shard that had a script to kill), else the first shard's `NOTBUSY`.
   */
  kill(args: Buffer[]): void {
    const slots = this.s.slots;
    const slot = slots.open();
    const raw = encodeCommand(args);
    const shards = this.s.ctx.shards;
    const replies: (Buffer | null)[] = new Array<Buffer | null>(shards.shards.length).fill(null);
    let left = replies.length;
    const done = (i: number, reply: Buffer): void => {
      replies[i] = reply;
      if (--left > 0) return;
      const killed = replies.find((r) => r !== null && !r.subarray(0, 8).equals(NOTBUSY));
      slots.fill(slot, killed ?? replies[0]!);
    };
    shards.shards.forEach((shard, i) => {
      const node = shard.topology.primary();
      if (!node) {
        done(i, unavailableError(`the primary of shard ${shard.name} is unavailable`));
        return;
      }
      shards.dedicated(node, this.s.profile).then(
        (link) =>
          link.send(raw, (reply) => {
            done(i, reply ?? lostConnectionError(this.s.lostMessage(i, node)));
            shards.releaseDedicated(node, link, this.s.profile);
          }),
        (err: Error) => done(i, unavailableError(err.message)),
      );
    });
  }
}

const NOTBUSY = Buffer.from('-NOTBUSY', 'latin1');
