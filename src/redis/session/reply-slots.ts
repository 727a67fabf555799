/**
 * Replies to one client, in the order of its commands. A client may pipeline commands that
 * go to different nodes; each command gets a slot, filled when its reply arrives, and slots
 * are written to the client strictly in order. A command split over shards (MGET, DEL, …)
 * gets one slot whose parts are merged when the last arrives.
 */
import type net from 'node:net';
import type { NodeStatus } from '../../core/topology.js';
import type { DecodedListener, ReplySink } from '../backend/backend-link.js';
import type { SessionCausal } from './session-causal.js';
import { flushLater, type Flushable } from '../backend/flush-queue.js';
import {
  encodeArrayHeader,
  encodeBulk,
  encodeInteger,
  encodeNull,
  parseReply,
  RespErrorValue,
} from '../resp/index.js';

/** How the parts of a split command become one reply. */
export type MergeKind = 'sum' | 'ok' | 'mget' | 'concat';

/**
 * What a slot on the hot path calls back when its server reply (or the position behind a
 * write) arrives: the session, without a closure per command.
 */
export interface SlotHost {
  /** the command's reply; null: the link died before it came */
  slotReply(slot: Slot, raw: Buffer | null): void;
  /** the position read behind a write (`INFO replication`, decoded; null: none) */
  slotPosition(slot: Slot, position: unknown): void;
}

/** What the command of a hot-path slot is, for its host. */
export const enum SlotKind {
  /** a slot filled by its owner's own code (everything off the hot path) */
  Plain,
  /** a read sent on a shared link: retried elsewhere if the link dies */
  Read,
  /** a command run on the primary that changes nothing */
  Primary,
  /** a write: its position (`INFO replication` behind it) is recorded when it arrives */
  Write,
}

export class Slot implements ReplySink, DecodedListener {
  data: Buffer | null = null;
  /** split commands: one reply per part */
  parts: (Buffer | null)[] | null = null;
  /** mget: for each original key, [part index, position in that part's array] */
  placement: [number, number][] | null = null;
  merge: MergeKind | null = null;
  remaining = 0;
  /** a detached slot (one part of a split command) hands its reply here instead of queuing it */
  onFill: ((bytes: Buffer) => void) | null = null;
  /** CLIENT REPLY OFF/SKIP: the reply keeps its place in the order but is not written */
  muted = false;
  /** called once the slot has its reply (EXEC with commands rwsplit answers: the session waits for it) */
  onFilled: (() => void) | null = null;

  // The hot path (a one-key command on a shared link): the slot is the link's reply sink, and
  // is reused once its reply was written and nothing refers to it any more.
  kind = SlotKind.Plain;
  host: SlotHost | null = null;
  shard = 0;
  node: NodeStatus | null = null;
  /** the command's bytes are `command[commandStart, commandEnd)` (a read is sent again elsewhere when its link dies) */
  command: Buffer | null = null;
  commandStart = 0;
  commandEnd = 0;
  /** holders of this slot besides the reply queue (a link, a trailer); reused at 0 once written */
  refs = 0;
  /** true while the slot may go back to its queue's pool */
  pooled = false;
  /** a write: its reply came (the connection's token must cover it) */
  acked = false;
  /** a write: the connection's causal state when it was sent */
  causal: SessionCausal | null = null;

  /** the command's bytes */
  commandBytes(): Buffer {
    return this.command!.subarray(this.commandStart, this.commandEnd);
  }

  linkReply(raw: Buffer | null): void {
    this.refs--;
    if (raw === null) this.pooled = false; // a retry or an error path may keep it: never reused
    this.host!.slotReply(this, raw);
  }

  decodedReply(value: unknown): void {
    this.refs--;
    this.host!.slotPosition(this, value);
  }
}

/** Fills the reply queue's places already written (so they hold no slot that may be reused). */
const DONE = new Slot();

export class ReplySlots implements Flushable {
  private readonly slots: Slot[] = [];
  private head = 0;
  /** replies due to the client, written at the end of this turn */
  private readonly out: Buffer[] = [];
  private outBytes = 0;
  private flushQueued = false;
  /** called when every reply so far was written (a graceful restart closes the client then) */
  onIdle: (() => void) | null = null;
  /** bytes of replies that arrived but wait behind an earlier slot (the client's output limit counts them) */
  heldBytes = 0;
  /** slots opened while set are muted (CLIENT REPLY OFF/SKIP, set around one command) */
  muteNew = false;

  constructor(
    private readonly socket: net.Socket,
    private readonly resp3: () => boolean,
    /** called after replies were written to the client (output limits, backpressure) */
    private readonly afterWrite: (() => void) | null = null,
  ) {}

  /** commands not yet answered to the client (replies collected but not yet written count) */
  get pending(): number {
    return this.slots.length - this.head + this.out.length;
  }

  open(): Slot {
    const s = new Slot();
    if (this.muteNew) s.muted = true;
    this.slots.push(s);
    return s;
  }

  /** slots of the hot path whose reply was written, ready to be reused */
  private readonly pool: Slot[] = [];

  /**
   * A slot for a command of the hot path (`command[start, end)`) whose reply comes to `host` (see Slot): reused from
   * the pool when one is free, so a pipeline allocates no slot per command.
   */
  openFor(
    host: SlotHost,
    kind: SlotKind,
    shard: number,
    node: NodeStatus,
    command: Buffer,
    start: number,
    end: number,
  ): Slot {
    const s = this.pool.pop() ?? new Slot();
    s.host = host;
    s.kind = kind;
    s.shard = shard;
    s.node = node;
    s.command = command;
    s.commandStart = start;
    s.commandEnd = end;
    s.refs = 0;
    s.pooled = true;
    s.acked = false;
    s.causal = null;
    s.muted = this.muteNew;
    this.slots.push(s);
    return s;
  }

  /** A slot no longer referred to by anything: back to the pool when it came from there. */
  release(s: Slot): void {
    if (!s.pooled || s.refs > 0 || s.data !== null) return;
    s.host = null;
    s.node = null;
    s.command = null;
    s.causal = null;
    if (this.pool.length < 1024) this.pool.push(s);
  }

  /** A slot for a command split in `parts` parts. */
  openSplit(parts: number, merge: MergeKind): Slot {
    const s = this.open();
    s.parts = new Array<Buffer | null>(parts).fill(null);
    s.remaining = parts;
    s.merge = merge;
    return s;
  }

  /** A concatenation of array replies (KEYS over every shard). */
  openConcat(parts: number): Slot {
    return this.openSplit(parts, 'concat');
  }

  /** A slot outside the reply order whose reply goes to `onFill` (a part of a split command). */
  detached(onFill: (bytes: Buffer) => void): Slot {
    const s = new Slot();
    s.onFill = onFill;
    return s;
  }

  /** An answer made by the proxy, in order. */
  answer(bytes: Buffer): void {
    this.fill(this.open(), bytes);
  }

  fill(slot: Slot, bytes: Buffer): void {
    if (slot.onFill) {
      slot.onFill(bytes);
      return;
    }
    slot.data = bytes;
    this.heldBytes += bytes.length;
    const filled = slot.onFilled;
    slot.onFilled = null;
    filled?.();
    this.flush();
  }

  fillPart(slot: Slot, part: number, bytes: Buffer): void {
    slot.parts![part] = bytes;
    if (--slot.remaining === 0) this.fill(slot, this.merge(slot));
  }

  /**
   * Moves every completed slot at the head to this turn's output, written once at the end of
   * the turn (flush-queue.ts): the replies a client gets in one event-loop turn leave in one
   * buffer.
   */
  private flush(): void {
    const slots = this.slots;
    while (this.head < slots.length) {
      const s = slots[this.head]!;
      const data = s.data;
      if (data === null) break;
      slots[this.head++] = DONE;
      if (s.pooled) {
        s.data = null;
        this.release(s);
      }
      if (s.muted) {
        this.heldBytes -= data.length;
        continue;
      }
      this.out.push(data);
      this.outBytes += data.length;
    }
    if (this.head === slots.length) {
      slots.length = 0;
      this.head = 0;
    }
    if (this.out.length === 0) {
      // Nothing to write (muted replies): every reply so far is done all the same.
      if (slots.length === 0 && !this.flushQueued) this.onIdle?.();
    } else if (!this.flushQueued) {
      this.flushQueued = true;
      flushLater(this);
    }
  }

  /** Writes the replies collected in this turn now (before the socket is ended). */
  flushOut(): void {
    this.flushQueued = false;
    const out = this.out;
    if (out.length === 0) return;
    const bytes = out.length === 1 ? out[0]! : Buffer.concat(out, this.outBytes);
    out.length = 0;
    this.heldBytes -= this.outBytes;
    this.outBytes = 0;
    if (this.socket.writable) this.socket.write(bytes);
    if (this.head === this.slots.length) this.onIdle?.();
    this.afterWrite?.();
  }

  private merge(slot: Slot): Buffer {
    const parts = slot.parts!;
    const firstError = parts.find((p) => p !== null && (p[0] === 0x2d || p[0] === 0x21));
    if (firstError) return firstError;
    switch (slot.merge) {
      case 'sum': {
        let total = 0;
        for (const p of parts) total += Number(parseReply(p!));
        return encodeInteger(total);
      }
      case 'ok':
        return parts[0]!;
      case 'concat': {
        const items: Buffer[] = [];
        for (const p of parts) {
          const v = parseReply(p!);
          if (Array.isArray(v)) for (const x of v) items.push(encodeBulk(Buffer.isBuffer(x) ? x : String(x)));
        }
        return Buffer.concat([encodeArrayHeader(items.length), ...items]);
      }
      default: {
        const values = parts.map((p) => parseReply(p!));
        const placement = slot.placement!;
        const out: Buffer[] = [encodeArrayHeader(placement.length)];
        for (const [part, pos] of placement) {
          const arr = values[part];
          const v = Array.isArray(arr) ? arr[pos] : undefined;
          if (v instanceof RespErrorValue || v === undefined || v === null)
            out.push(encodeNull(this.resp3()));
          else out.push(encodeBulk(Buffer.isBuffer(v) ? v : String(v)));
        }
        return Buffer.concat(out);
      }
    }
  }
}
