/**
 * One connection from the proxy to a Redis node. Shared links multiplex many clients:
 * commands are written in order and replies come back in the same order (Redis answers a
 * connection's commands FIFO), so each reply goes to the callback queued with its command.
 * A dedicated link (pub/sub, blocking commands, WATCH) instead hands every reply to one
 * listener.
 */
import { dataActivity } from '../../core/liveness.js';
import net from 'node:net';
import { flushLater, type Flushable } from './flush-queue.js';
import { encodeCommand, mapGet, parseReply, ReplyReader, type ReplyInfo } from '../resp/index.js';

export interface LinkTarget {
  nodeId: string;
  host: string;
  port: number;
}

export interface LinkOptions {
  /** AUTH sent first when set */
  password?: string;
  user?: string;
  /** switch the connection to RESP3 with HELLO 3 */
  resp3: boolean;
  /** SELECT this database after the login (0 when unset) */
  db?: number;
  connectTimeoutMs: number;
}

/** Called with one reply; `raw` is null when the link died before the reply came. */
export type ReplyCallback = (raw: Buffer | null, info: ReplyInfo | null) => void;

const BUSY = Buffer.from('-BUSY ', 'latin1');

/** `HELLO` with no argument: the connection's details (its id among them) in its own protocol; no ACL denies it. */
export const HELLO = encodeCommand(['HELLO']);

/** The server's id for the connection (`CLIENT ID`) in a `HELLO` reply, RESP2 or RESP3; null when absent. */
export function helloId(raw: Buffer | null): number | null {
  if (raw === null) return null;
  let v;
  try {
    v = parseReply(raw);
  } catch {
    return null;
  }
  let id: unknown;
  if (v instanceof Map) id = mapGet(v, 'id');
  else if (Array.isArray(v)) {
    for (let i = 0; i + 1 < v.length; i += 2) {
      const k = v[i];
      if ((Buffer.isBuffer(k) || typeof k === 'string') && k.toString() === 'id') id = v[i + 1];
    }
  }
  return typeof id === 'number' ? id : typeof id === 'bigint' ? Number(id) : null;
}

export class LinkError extends Error {
  readonly code = 'REDIS_LINK';
}

/**
 * The server answered the handshake (AUTH, HELLO, SELECT) with an error: the node is fine,
 * the credentials or the database are not. `reply` is the server's error, as it sent it.
 */
export class AuthRefused extends LinkError {
  constructor(
    message: string,
    readonly reply: Buffer,
  ) {
    super(message);
  }
}

/** Gets the reply to one command (`raw` null: the link died first). */
export interface ReplySink {
  linkReply(raw: Buffer | null, info: ReplyInfo | null): void;
}

/** Gets a trailer's reply, decoded once for all who share it (see RedisLink.trailerTo). */
export interface DecodedListener {
  decodedReply(value: unknown): void;
}

class CallbackListener implements DecodedListener {
  constructor(private readonly cb: (value: unknown) => void) {}
  decodedReply(value: unknown): void {
    this.cb(value);
  }
}

/** A plain callback as a sink (commands off the hot path). */
class CallbackSink implements ReplySink {
  constructor(private readonly cb: ReplyCallback) {}
  linkReply(raw: Buffer | null, info: ReplyInfo | null): void {
    this.cb(raw, info);
  }
}

/** Everyone waiting for one trailer's reply: raw callbacks, and callbacks of its decoded value (decoded once). */
class Trailer implements ReplySink {
  readonly raw: ReplyCallback[] = [];
  readonly decoded: DecodedListener[] = [];
  constructor(public decode: ((reply: Buffer | null) => unknown) | null) {}
  linkReply(reply: Buffer | null, info: ReplyInfo | null): void {
    for (const cb of this.raw) cb(reply, info);
    if (this.decoded.length === 0 || this.decode === null) return;
    const value = this.decode(reply);
    for (const l of this.decoded) l.decodedReply(value);
  }
}

export class RedisLink implements Flushable {
  /** who gets each reply, in the order the commands were written (entries before `head` are done) */
  private readonly sinks: (ReplySink | null)[] = [];
  private head = 0;
  private readonly reader = new ReplyReader();
  closed = false;
  /** dedicated mode: every reply (including pushes) goes here instead of the FIFO */
  listener: ((raw: Buffer, info: ReplyInfo) => void) | null = null;
  onClose: ((link: RedisLink, reason: string) => void) | null = null;
  /** the server's id for this connection, once asked (`serverId()`): CLIENT UNBLOCK and tracking redirects name it */
  private idAsked: Promise<number | null> | null = null;

  private constructor(
    readonly target: LinkTarget,
    readonly socket: net.Socket,
  ) {
    socket.on('data', (chunk: Buffer) => {
      // Evidence of life for the monitor (a probe queued behind this data is not a failure).
      dataActivity.received(target.nodeId);
      try {
        this.reader.push(chunk, this.onReply);
      } catch (err) {
        this.destroy(`protocol error from ${target.nodeId}: ${(err as Error).message}`);
      }
    });
    socket.on('error', (err) => this.destroy(err.message));
    socket.on('close', () => this.destroy('server closed the connection'));
  }

  /** Connects and runs the handshake (AUTH, HELLO 3); rejects with a LinkError naming the node. */
  static connect(target: LinkTarget, opts: LinkOptions): Promise<RedisLink> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: target.host, port: target.port, noDelay: true });
      const link = new RedisLink(target, socket);
      const timer = setTimeout(() => {
        link.destroy('connect timeout');
        reject(
          new LinkError(
            `connecting to ${target.nodeId} (${target.host}:${target.port}) timed out after ${opts.connectTimeoutMs} ms`,
          ),
        );
      }, opts.connectTimeoutMs);
      let refused: Buffer | null = null;
      const fail = (reason: string): void => {
        clearTimeout(timer);
        const message = `cannot reach ${target.nodeId} (${target.host}:${target.port}): ${reason}`;
        reject(refused ? new AuthRefused(message, refused) : new LinkError(message));
      };
      link.onClose = (_l, reason) => fail(reason);
      socket.once('connect', () => {
        const hello: (string | Buffer)[] = [];
        if (opts.resp3) hello.push('HELLO', '3');
        if (opts.password !== undefined) {
          if (opts.resp3) hello.push('AUTH', opts.user ?? 'default', opts.password);
          else
            link.send(
              encodeCommand(opts.user ? ['AUTH', opts.user, opts.password] : ['AUTH', opts.password]),
              check,
            );
        }
        if (hello.length > 0) link.send(encodeCommand(hello), check);
        if (opts.db) link.send(encodeCommand(['SELECT', String(opts.db)]), check);
        // The last step confirms the connection. After a login, HELLO (which ACLs never deny)
        // rather than PING, which an ACL user may lack.
        const confirm = opts.password !== undefined ? ['HELLO'] : ['PING'];
        link.send(encodeCommand(confirm), (raw) => {
          clearTimeout(timer);
          // BUSY (a script past busy-reply-threshold) is an answer: the server is up, and
          // this link may be the one that carries SCRIPT KILL.
          const busy = raw !== null && raw.subarray(0, 6).equals(BUSY);
          if (raw !== null && raw[0] === 0x2d && !busy) refused ??= raw;
          if (raw === null || (raw[0] === 0x2d && !busy)) return fail(raw?.toString().trim() ?? 'closed');
          link.onClose = null;
          resolve(link);
        });
      });
      function check(raw: Buffer | null, info: ReplyInfo | null): void {
        if (raw !== null && info?.isError) {
          refused ??= raw;
          link.destroy(`handshake refused: ${raw.toString().trim()}`);
        }
      }
    });
  }

  /**
   * The server's id for this connection (`HELLO`'s `id`), asked once; the request is written
   * now, so on a dedicated link it goes before the command sent next.
   */
  serverId(): Promise<number | null> {
    this.idAsked ??= new Promise((resolve) => this.send(HELLO, (raw) => resolve(helloId(raw))));
    return this.idAsked;
  }

  get pending(): number {
    return this.sinks.length - this.head;
  }

  /** Writes one command; its reply goes to `cb`. */
  send(raw: Buffer, cb: ReplyCallback): void {
    this.sendTo(raw, new CallbackSink(cb));
  }

  /**
   * Writes one command; its reply goes to `sink.linkReply` (no closure per command: the hot
   * path passes the reply slot itself).
   */
  sendTo(raw: Buffer, sink: ReplySink): void {
    if (this.closed) {
      sink.linkReply(null, null);
      return;
    }
    this.sinks.push(sink);
    this.queueOut(raw);
  }

  /**
   * Writes the command `bytes[start, end)`; its reply goes to `sink.linkReply`. Commands that
   * follow each other in the same buffer (a client's pipeline, read in one chunk) are
   * collected as one range: one Buffer per run, not per command. `bytes` must not change
   * until this turn's write.
   */
  sendRangeTo(bytes: Buffer, start: number, end: number, sink: ReplySink): void {
    if (this.closed) {
      sink.linkReply(null, null);
      return;
    }
    this.sinks.push(sink);
    this.outBytes += end - start;
    if (this.runBytes === bytes && this.runEnd === start) {
      this.runEnd = end;
      return;
    }
    this.endRun();
    this.runBytes = bytes;
    this.runStart = start;
    this.runEnd = end;
    if (!this.flushQueued) {
      this.flushQueued = true;
      flushLater(this);
    }
  }

  /** The range collected by sendRangeTo, if any, goes to `out` (before anything queued after it). */
  private endRun(): void {
    const bytes = this.runBytes;
    if (bytes === null) return;
    this.runBytes = null;
    this.out.push(bytes.subarray(this.runStart, this.runEnd));
  }

  /**
   * Collects `raw` for this turn's one write (flush-queue.ts): commands sent in one
   * event-loop turn (a client's pipeline, or many clients' commands read in one poll) leave
   * in one buffer, in the order they were sent.
   */
  private queueOut(raw: Buffer): void {
    this.endRun();
    this.out.push(raw);
    this.outBytes += raw.length;
    if (!this.flushQueued) {
      this.flushQueued = true;
      flushLater(this);
    }
  }

  /** bytes collected for this turn's write (the last run of sendRangeTo not yet in `out`; outBytes counts it) */
  private readonly out: Buffer[] = [];
  private outBytes = 0;
  private flushQueued = false;
  private runBytes: Buffer | null = null;
  private runStart = 0;
  private runEnd = 0;

  /** Writes what this turn collected, its trailers last. */
  flushOut(): void {
    this.flushQueued = false;
    this.endRun();
    if (this.trailers) this.writeTrailers();
    const out = this.out;
    if (out.length === 0 || this.closed) {
      out.length = 0;
      this.outBytes = 0;
      return;
    }
    const bytes = out.length === 1 ? out[0]! : Buffer.concat(out, this.outBytes);
    out.length = 0;
    this.outBytes = 0;
    this.socket.write(bytes);
  }

  /** commands to write once at the end of this turn, with everyone who asked for their reply */
  private trailers: Map<Buffer, Trailer> | null = null;

  /**
   * Asks for `raw` to be written once at the end of this turn, after every command sent in
   * it, in the same write; every caller in the turn that passes the same `raw` Buffer shares
   * its one reply. The write path uses it to follow a turn's writes with one `WAIT` and one
   * `INFO replication`: Redis runs a connection's commands in order, so their answers cover
   * every write before them on this link.
   */
  trailer(raw: Buffer, cb: ReplyCallback): void {
    const t = this.trailerFor(raw, null);
    if (t === null) cb(null, null);
    else t.raw.push(cb);
  }

  /**
   * Like {@link RedisLink.trailer}, with the shared reply decoded once by `decode` for every
   * caller of the turn (pass the same `decode` for the same `raw`).
   */
  trailerDecoded<T>(raw: Buffer, decode: (reply: Buffer | null) => T, cb: (value: T) => void): void {
    this.trailerTo(raw, decode, new CallbackListener(cb as (value: unknown) => void));
  }

  /** Like {@link RedisLink.trailerDecoded}, the decoded reply going to `listener` (no closure). */
  trailerTo(raw: Buffer, decode: (reply: Buffer | null) => unknown, listener: DecodedListener): void {
    const t = this.trailerFor(raw, decode);
    if (t === null) listener.decodedReply(decode(null));
    else t.decoded.push(listener);
  }

  private trailerFor(raw: Buffer, decode: ((reply: Buffer | null) => unknown) | null): Trailer | null {
    if (this.closed) return null;
    if (!this.flushQueued) {
      this.flushQueued = true;
      flushLater(this);
    }
    this.trailers ??= new Map();
    let t = this.trailers.get(raw);
    if (t === undefined) {
      t = new Trailer(decode);
      this.trailers.set(raw, t);
    } else if (decode !== null) t.decode = decode;
    return t;
  }

  private writeTrailers(): void {
    const trailers = this.trailers!;
    this.trailers = null;
    for (const [raw, t] of trailers) {
      this.sinks.push(t);
      this.out.push(raw);
      this.outBytes += raw.length;
    }
  }

  /** Writes several commands in one write, with their callbacks in order. */
  sendMany(raw: Buffer, cbs: ReplyCallback[]): void {
    if (this.closed) {
      for (const cb of cbs) cb(null, null);
      return;
    }
    for (const cb of cbs) this.sinks.push(new CallbackSink(cb));
    this.queueOut(raw);
  }

  destroy(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
    const pending = this.sinks.slice(this.head);
    this.sinks.length = 0;
    this.head = 0;
    this.out.length = 0;
    this.outBytes = 0;
    this.runBytes = null;
    const trailers = this.trailers;
    this.trailers = null;
    for (const sink of pending) sink?.linkReply(null, null);
    if (trailers) for (const t of trailers.values()) t.linkReply(null, null);
    this.onClose?.(this, reason);
  }

  private readonly onReply = (raw: Buffer, info: ReplyInfo): void => {
    if (this.listener) {
      this.listener(raw, info);
      return;
    }
    if (info.isPush) return; // out-of-band data on a shared link (none is expected)
    const sinks = this.sinks;
    const sink = sinks[this.head];
    if (sink === undefined || sink === null) return;
    sinks[this.head++] = null;
    if (this.head === sinks.length) {
      sinks.length = 0;
      this.head = 0;
    } else if (this.head > 4096) {
      sinks.splice(0, this.head);
      this.head = 0;
    }
    sink.linkReply(raw, info);
  };
}
