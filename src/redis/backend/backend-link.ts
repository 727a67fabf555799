/**
 * One connection from the proxy to a Redis node. Shared links multiplex many clients:
 * commands are written in order and replies come back in the same order (Redis answers a
 * connection's commands FIFO), so each reply goes to the callback queued with its command.
 * A dedicated link (pub/sub, blocking commands, WATCH) instead hands every reply to one
 * listener.
 */
import { dataActivity } from '../../core/liveness.js';
import net from 'node:net';
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

export class RedisLink {
  private readonly callbacks: ReplyCallback[] = [];
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
    return this.callbacks.length - this.head;
  }

  /** Writes one command; its reply goes to `cb`. */
  send(raw: Buffer, cb: ReplyCallback): boolean {
    if (this.closed) {
      cb(null, null);
      return true;
    }
    this.callbacks.push(cb);
    this.corkForTick();
    return this.socket.write(raw);
  }

  /**
   * Commands written in one event-loop tick (a client's pipeline, or many clients' commands
   * read in one poll) leave in one system call: the socket is corked on the first write of
   * the tick and uncorked on the next tick.
   */
  private corkForTick(): void {
    if (this.corked) return;
    this.corked = true;
    this.socket.cork();
    process.nextTick(this.uncork);
  }

  private corked = false;
  private readonly uncork = (): void => {
    this.corked = false;
    if (this.trailers) this.writeTrailers();
    this.socket.uncork();
  };

  /** commands to write once at the end of this tick, with everyone who asked for their reply */
  private trailers: Map<Buffer, ReplyCallback[]> | null = null;

  /**
   * Asks for `raw` to be written once at the end of this tick, after every command written in
   * it, in the same system call; every caller in the tick that passes the same `raw` Buffer
   * shares its one reply. The write path uses it to follow a tick's writes with one `WAIT`
   * and one `INFO replication`: Redis runs a connection's commands in order, so their answers
   * cover every write before them on this link.
   */
  trailer(raw: Buffer, cb: ReplyCallback): void {
    if (this.closed) {
      cb(null, null);
      return;
    }
    this.corkForTick();
    this.trailers ??= new Map();
    const waiting = this.trailers.get(raw);
    if (waiting) waiting.push(cb);
    else this.trailers.set(raw, [cb]);
  }

  private writeTrailers(): void {
    const trailers = this.trailers!;
    this.trailers = null;
    for (const [raw, cbs] of trailers) {
      this.callbacks.push(
        cbs.length === 1
          ? cbs[0]!
          : (reply, info) => {
              for (const cb of cbs) cb(reply, info);
            },
      );
      this.socket.write(raw);
    }
  }

  /** Writes several commands in one write, with their callbacks in order. */
  sendMany(raw: Buffer, cbs: ReplyCallback[]): boolean {
    if (this.closed) {
      for (const cb of cbs) cb(null, null);
      return true;
    }
    for (const cb of cbs) this.callbacks.push(cb);
    this.corkForTick();
    return this.socket.write(raw);
  }

  destroy(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
    const pending = this.callbacks.slice(this.head);
    this.callbacks.length = 0;
    this.head = 0;
    const trailers = this.trailers;
    this.trailers = null;
    for (const cb of pending) cb(null, null);
    if (trailers) for (const cbs of trailers.values()) for (const cb of cbs) cb(null, null);
    this.onClose?.(this, reason);
  }

  private readonly onReply = (raw: Buffer, info: ReplyInfo): void => {
    if (this.listener) {
      this.listener(raw, info);
      return;
    }
    if (info.isPush) return; // out-of-band data on a shared link (none is expected)
    const cb = this.callbacks[this.head];
    if (!cb) return;
    this.callbacks[this.head++] = undefined as unknown as ReplyCallback;
    if (this.head === this.callbacks.length) {
      this.callbacks.length = 0;
      this.head = 0;
    } else if (this.head > 4096) {
      this.callbacks.splice(0, this.head);
      this.head = 0;
    }
    cb(raw, info);
  };
}
