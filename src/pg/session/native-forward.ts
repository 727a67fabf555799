/**
 * The session's use of the native forwarding core (dataPlane native, src/util/native-core.ts).
 * After the session has routed and sent a batch whose answers are all the server's own (the
 * response tracker is plain), the core reads the server's answer and writes it to the client
 * itself, up to the last ReadyForQuery expected; then it hands control back and the session
 * does its usual bookkeeping from the record of what went (tracker, transaction status,
 * latency, the release of the backend). Anything unusual (an error, COPY, a DDL tag, a bad
 * frame) is handed back before it is forwarded, so JavaScript sees it as it does today.
 *
 * One reader per descriptor: while the core reads the server socket, Node's handle is
 * stopped (readStop, with `reading` left true so a pause/resume cycle does not restart it);
 * the callback starts it again. The core writes to the client only while Node has nothing
 * queued on that socket, and the session writes nothing to the client while the core
 * forwards (the answer it would write after is not complete yet).
 *
 * Client to server: a session idle between transactions arms the client (arm): the core reads
 * its next request instead of Node. A simple Query whose text's fingerprint the session put in
 * the decision cache (learn) is offered back with its route; the session leases a backend the
 * way it always does and, when the core can take that backend, the core writes the request and
 * carries the answer: such a request never goes through Node's streams nor the classifier.
 * Anything else is handed back with the bytes read and the client is read by Node again.
 */
import type net from 'node:net';
import tls from 'node:tls';
import type { BackendConnection } from '../backend/backend-connection.js';
import { NativeEvent, NativeRoute, type NativeCore, type NativeHandle } from '../../util/native-core.js';

/** What the core needs from the session it forwards for. */
export interface NativeForwardHost {
  /** The core forwarded these completion frames (type bytes, a ReadyForQuery followed by its status). */
  nativeForwarded(record: Buffer, sent: number): void;
  /** The answer is over (the last ReadyForQuery went): what a chunk end does (release, next batch). */
  onBackendChunkEnd(): void;
  /**
   * The core read a cached request (a simple Query) from the armed client: lease a backend for
   * `route` that `canEngage` accepts and register the request as sent on it (the core writes
   * it); or 'queued': the session took the frame and runs it its own way; or null: the core
   * hands the bytes back.
   */
  nativeRequest(
    route: NativeRoute,
    frame: Buffer,
    canEngage: (conn: BackendConnection) => boolean,
  ): BackendConnection | 'queued' | null;
}

/** The client's frame reader, where bytes the core read and handed back go. */
export interface ClientInput {
  readonly maxFrameBytes: number;
  /** bytes the reader holds (a partial frame): the core may read only from a frame boundary */
  readonly bufferedBytes: number;
  feed(bytes: Buffer): void;
}

/** One decision-cache namespace per classifier (its configuration decides the routes). */
const salts = new WeakMap<object, number>();
let nextSalt = 1;
export function cacheSalt(classifier: object): number {
  let salt = salts.get(classifier);
  if (salt === undefined) salts.set(classifier, (salt = nextSalt++ >>> 0));
  return salt;
}

/** Node's stream handle, as far as the core needs it (internal, stable since Node 12). */
interface StreamHandle {
  fd: number;
  reading: boolean;
  readStop(): number;
  readStart(): number;
}

function handleOf(socket: net.Socket): StreamHandle | null {
  const h = (socket as unknown as { _handle?: StreamHandle | null })._handle;
  return h && typeof h.fd === 'number' && h.fd >= 0 && typeof h.readStop === 'function' ? h : null;
}

export class NativeForward {
  private client: NativeHandle | null = null;
  /** the backend the core forwards from now, or null */
  private engaged: BackendConnection | null = null;
  /** the core reads the client's next request */
  private armed = false;
  /**
   * Node's reading of the client is stopped (armed, or carrying a request the core read): it
   * starts again when the core hands back, or when an answer ends and the session does not arm.
   */
  private clientStopped = false;
  /** set by the connection that owns the client's frame reader; null: never armed */
  input: ClientInput | null = null;

  constructor(
    private readonly core: NativeCore,
    private readonly socket: net.Socket,
    private readonly host: NativeForwardHost,
    private readonly salt: number,
  ) {}

  /**
   * A request just routed the usual way: a lone simple Query with `route` as its statement's own
   * verdict (no transaction, no session state, no hint: the caller checked). Later texts that
   * differ only in literals are offered by the core (see native/src/pgclient.h).
   */
  learn(frame: Buffer, route: NativeRoute): void {
    this.core.cachePut(frame, route, this.salt);
  }

  /**
   * The session is idle between transactions: the core reads the client's next request. Only
   * from a frame boundary, with nothing read by Node and not handled yet.
   */
  arm(): void {
    const input = this.input;
    if (this.armed || this.engaged !== null || input === null || this.socket.destroyed) return;
    if (this.socket instanceof tls.TLSSocket || this.socket.readableLength > 0 || input.bufferedBytes > 0)
      return;
    const h = handleOf(this.socket);
    if (h === null || !h.reading) return;
    const client = this.clientHandle();
    if (client === null) return;
    h.readStop();
    if (!this.core.clientArm(client)) {
      h.readStart();
      this.clientStopped = false;
      return;
    }
    this.armed = true;
    this.clientStopped = true;
  }

  /** Node reads the client again (the session ends it); bytes the core held are dropped. */
  disarm(): void {
    if (!this.armed || this.client === null) return;
    this.armed = false;
    this.core.clientDisarm(this.client);
    this.readClientAgain();
  }

  private readClientAgain(): void {
    this.clientStopped = false;
    if (this.socket.destroyed) return;
    const h = handleOf(this.socket);
    if (h !== null && h.reading) h.readStart();
  }

  /** At the end of the stream Node's own read sees it too and closes the session as usual. */
  private readonly onHandback = (bytes: Buffer | undefined): void => {
    this.armed = false;
    this.readClientAgain();
    if (bytes !== undefined) this.input?.feed(bytes);
  };

  private readonly onRequest = (route: NativeRoute, frame: Buffer): boolean => {
    this.armed = false;
    const conn = this.host.nativeRequest(route, frame, this.canEngage);
    if (conn === null) return false;
    if (conn === 'queued') {
      // The session runs it its own way: Node reads the client again.
      this.readClientAgain();
      return true;
    }
    const bh = handleOf(conn.socket)!;
    const nat = this.backendHandle(conn, bh.fd)!;
    bh.readStop();
    if (!this.core.engage(nat.handle, this.client!, 1)) {
      // canEngage said it could: the request is the session's, which retries it when this
      // connection is gone (nothing of it reached the server).
      bh.readStart();
      this.readClientAgain();
      conn.destroy('the native core could not take the connection');
      return true;
    }
    nat.session = this;
    this.engaged = conn;
    return true;
  };

  /** The core can read `conn`'s answer (the same conditions as afterSend's). */
  private readonly canEngage = (conn: BackendConnection): boolean => {
    if (conn.target.tls || this.socket.writableLength > 0 || this.socket.destroyed) return false;
    const s = conn.socket;
    if (s.readableLength > 0 || s.readableFlowing === false || !conn.atFrameBoundary) return false;
    const bh = handleOf(s);
    if (bh === null || !bh.reading) return false;
    const nat = this.backendHandle(conn, bh.fd);
    return nat !== null && nat.session === null;
  };

  /** True while the core forwards this session's answer. */
  get active(): boolean {
    return this.engaged !== null;
  }

  /**
   * Requests expecting `ready` ReadyForQuery frames were just sent on `conn`; `plain`: the
   * tracker awaits only the server's own answers. Engages the core when it can take them.
   */
  afterSend(conn: BackendConnection, ready: number, plain: boolean): void {
    if (this.engaged !== null) {
      // Pipelined behind an answer the core carries: it takes these too, or stops at its count.
      if (this.engaged === conn && plain) this.core.expectMore(nativeOf(conn)!.handle, ready);
      return;
    }
    if (!plain || ready === 0 || conn.target.tls || this.socket instanceof tls.TLSSocket) return;
    // Nothing may be queued before the answer: not for the client, not from the server.
    if (this.socket.writableLength > 0 || this.socket.destroyed) return;
    // A socket reading through `onread` (plain TCP backends) is never "flowing"; one paused
    // for backpressure says false, and its handle is not reading.
    const backendSocket = conn.socket;
    if (backendSocket.readableLength > 0 || backendSocket.readableFlowing === false || !conn.atFrameBoundary)
      return;
    const bh = handleOf(backendSocket);
    if (bh === null || !bh.reading) return;
    const client = this.clientHandle();
    const nat = client === null ? null : this.backendHandle(conn, bh.fd);
    if (client === null || nat === null) return;
    bh.readStop();
    if (!this.core.engage(nat.handle, client, ready)) {
      bh.readStart();
      return;
    }
    nat.session = this;
    this.engaged = conn;
  }

  /** The core stopped: bookkeeping, reading handed back to Node, leftover bytes fed to the session. */
  private stopped(
    conn: BackendConnection,
    event: NativeEvent,
    record: Buffer,
    leftover: Buffer | undefined,
    errno: number,
    sent: number,
  ): void {
    this.engaged = null;
    if (!conn.socket.destroyed) {
      const bh = handleOf(conn.socket);
      if (bh !== null && bh.reading) bh.readStart();
    }
    this.settle(conn, event, record, leftover, errno, sent);
    if (this.clientStopped && !this.armed) this.readClientAgain();
  }

  private settle(
    conn: BackendConnection,
    event: NativeEvent,
    record: Buffer,
    leftover: Buffer | undefined,
    errno: number,
    sent: number,
  ): void {
    if (record.length > 0 || sent > 0) this.host.nativeForwarded(record, sent);
    if (event === NativeEvent.ClientError) {
      this.socket.destroy();
      return;
    }
    if (leftover !== undefined) conn.feed(leftover);
    else if (event !== NativeEvent.Closed) this.host.onBackendChunkEnd();
    if (event !== NativeEvent.Closed) return;
    // A connection ended by the proxy (Terminate sent) is already closed: only its socket is left.
    if (conn.closed) conn.socket.destroy();
    else
      conn.destroy(
        errno === 0 ? 'server closed the connection' : `reading from the server failed (errno ${errno})`,
      );
  }

  /** The backend closed under the core (JavaScript destroyed it): what went is accounted for. */
  private cutShort(conn: BackendConnection, record: Buffer, sent: number): void {
    if (this.engaged !== conn) return;
    this.engaged = null;
    if (record.length > 0 || sent > 0) this.host.nativeForwarded(record, sent);
    if (this.clientStopped && !this.armed) this.readClientAgain();
  }

  private clientHandle(): NativeHandle | null {
    if (this.client !== null) return this.client;
    const h = handleOf(this.socket);
    if (h === null) return null;
    const input = this.input;
    const client =
      input === null
        ? this.core.clientOpen(h.fd)
        : this.core.clientOpen(h.fd, input.maxFrameBytes, this.salt, this.onRequest, this.onHandback);
    this.client = client;
    // The duplicate keeps the connection open: it goes when Node's socket goes.
    this.socket.once('close', () => {
      this.client = null;
      this.armed = false;
      this.core.clientClose(client);
    });
    return client;
  }

  private backendHandle(conn: BackendConnection, fd: number): BackendNative | null {
    const held = nativeOf(conn);
    if (held !== null) return held;
    const nat: BackendNative = {
      handle: null as unknown as NativeHandle,
      session: null,
      close: () => {
        const cut = this.core.backendClose(nat.handle);
        const s = nat.session;
        nat.session = null;
        if (cut !== undefined && s !== null) s.cutShort(conn, cut[0], cut[1]);
      },
    };
    nat.handle = this.core.backendOpen(fd, conn.maxFrameBytes, (event, record, leftover, errno, sent) => {
      const s = nat.session;
      nat.session = null;
      s?.stopped(conn, event, record, leftover, errno, sent);
    });
    conn.native = nat;
    return nat;
  }
}

/** The core's handle on a backend connection and the session it forwards for now. */
interface BackendNative {
  handle: NativeHandle;
  session: NativeForward | null;
  close(): void;
}

function nativeOf(conn: BackendConnection): BackendNative | null {
  return conn.native as BackendNative | null;
}
