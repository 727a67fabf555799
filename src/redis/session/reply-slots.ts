/**
 * Replies to one client, in the order of its commands. A client may pipeline commands that
 * go to different nodes; each command gets a slot, filled when its reply arrives, and slots
 * are written to the client strictly in order. A command split over shards (MGET, DEL, …)
 * gets one slot whose parts are merged when the last arrives.
 */
import type net from 'node:net';
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

export class Slot {
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
}

export class ReplySlots {
  private slots: Slot[] = [];
  private head = 0;
  private corked = false;
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

  get pending(): number {
    return this.slots.length - this.head;
  }

  open(): Slot {
    const s = new Slot();
    if (this.muteNew) s.muted = true;
    this.slots.push(s);
    return s;
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

  /** Writes every completed slot at the head; writes made in one tick leave in one segment. */
  private flush(): void {
    let wrote = false;
    while (this.head < this.slots.length) {
      const s = this.slots[this.head]!;
      if (s.data === null) break;
      if (s.muted) {
        this.head++;
        continue;
      }
      if (!this.corked) {
        this.corked = true;
        this.socket.cork();
        process.nextTick(() => {
          this.corked = false;
          this.socket.uncork();
        });
      }
      this.socket.write(s.data);
      this.heldBytes -= s.data.length;
      wrote = true;
      this.head++;
    }
    if (this.head === this.slots.length) {
      this.slots = [];
      this.head = 0;
      this.onIdle?.();
    }
    if (wrote) this.afterWrite?.();
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
