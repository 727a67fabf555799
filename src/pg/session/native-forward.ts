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
 */
import type net from 'node:net';
import tls from 'node:tls';
import type { BackendConnection } from '../backend/backend-connection.js';
import { NativeEvent, type NativeCore, type NativeHandle } from '../../util/native-core.js';

/** What the core needs from the session it forwards for. */
export interface NativeForwardHost {
  /** The core forwarded these completion frames (type bytes, a ReadyForQuery followed by its status). */
  nativeForwarded(record: Buffer, sent: number): void;
  /** The answer is over (the last ReadyForQuery went): what a chunk end does (release, next batch). */
  onBackendChunkEnd(): void;
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

  constructor(
    private readonly core: NativeCore,
    private readonly socket: net.Socket,
    private readonly host: NativeForwardHost,
  ) {}

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
  }

  private clientHandle(): NativeHandle | null {
    if (this.client !== null) return this.client;
    const h = handleOf(this.socket);
    if (h === null) return null;
    const client = this.core.clientOpen(h.fd);
    this.client = client;
    // The duplicate keeps the connection open: it goes when Node's socket goes.
    this.socket.once('close', () => {
      this.client = null;
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
