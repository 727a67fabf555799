/**
 * One authenticated connection from the proxy to a PostgreSQL node. It performs the
 * startup and authentication (trust, cleartext, md5, SCRAM-SHA-256), then hands every
 * frame the server sends to whoever currently holds it (a client session) untouched.
 */
import net from 'node:net';
import { dataActivity } from '../../core/liveness.js';
import { md5PasswordResponse, ScramClient, type ScramKeys } from '../auth/index.js';
import { connectWithTls, type BackendTls } from './backend-tls.js';
import { BackendStartupError } from '../errors.js';
import {
  BackendCode,
  decodeAuthentication,
  decodeBackendKeyData,
  decodeErrorFields,
  decodeParameterStatus,
  decodeSaslMechanisms,
  encodePasswordMessage,
  encodeSaslInitialResponse,
  encodeSaslResponse,
  encodeStartupMessage,
  FrameReader,
  TERMINATE,
} from '../protocol/index.js';

export interface BackendTarget {
  nodeId: string;
  host: string;
  port: number;
  /** TLS toward this node (sslmode other than disable), else plain TCP */
  tls?: BackendTls;
}

export interface BackendLogin {
  user: string;
  database: string;
  /** startup parameters passed through from the client (application_name, client_encoding, ...) */
  params: Record<string, string>;
  password?: string;
  /**
   * No password, but the SCRAM keys the user's latest client proved it has (SCRAM pass-through,
   * postgres.auth.authQuery): read at each new connection, so a pool opened before an
   * `ALTER ROLE … PASSWORD` uses the keys of the latest login.
   */
  scramKeys?: () => ScramKeys | undefined;
}

/** Receives the frames of a leased connection. */
export interface BackendListener {
  onBackendFrame(type: number, frame: Buffer): void;
  onBackendChunkEnd(): void;
  onBackendClose(conn: BackendConnection, reason: string): void;
}

export interface BackendOptions {
  connectTimeoutMs: number;
  maxFrameBytes: number;
}

export class BackendConnection {
  processId = 0;
  secretKey = 0;
  /** ParameterStatus frames from startup, as sent by the server (replayed to clients at login) */
  readonly parameterFrames: Buffer[] = [];
  readonly parameters = new Map<string, string>();
  /** statement keys prepared on this server connection, with the schema epoch of each (see statement-registry.ts) */
  readonly prepared = new Map<string, number>();
  /** key of the query held by the unnamed statement on the server, null when unknown */
  unnamedKey: string | null = null;
  listener: BackendListener | null = null;
  closed = false;
  /**
   * a client ran pg_terminate_backend on this backend through rwsplit: its FATAL 57P01 is that
   * termination, not the server shutting down (see backend-signal.ts)
   */
  terminationRequested = false;
  /**
   * The native core's hold on this connection (dataPlane native, see
   * src/pg/session/native-forward.ts): `close` frees it when the connection closes.
   */
  native: { close(): void } | null = null;
  /** true while a pool counts this connection in its total (cleared once it is forgotten) */
  counted = true;
  private closeNotified = false;
  lastUsedAt = Date.now();
  private readonly reader: FrameReader;
  /** what a received chunk goes to: the startup exchange, then the data-mode reader */
  private onChunk: (chunk: Buffer) => void = IGNORE_CHUNK;
  /** the largest frame accepted from the server (the native core applies the same limit) */
  readonly maxFrameBytes: number;
  private readonly onFrame = (type: number, frame: Buffer): void => {
    if (this.listener) this.listener.onBackendFrame(type, frame);
    else this.onIdleFrame(type, frame);
  };

  private constructor(
    readonly target: BackendTarget,
    readonly socket: net.Socket,
    opts: BackendOptions,
  ) {
    this.reader = new FrameReader({ maxFrameBytes: opts.maxFrameBytes });
    this.maxFrameBytes = opts.maxFrameBytes;
  }

  /** Connects (over TLS when the target asks for it), authenticates and waits for the first ReadyForQuery. */
  static connect(
    target: BackendTarget,
    login: BackendLogin,
    opts: BackendOptions,
  ): Promise<BackendConnection> {
    if (!target.tls) return BackendConnection.logIn(target, login, opts, null);
    return connectWithTls(target, target.tls, opts.connectTimeoutMs).then((socket) =>
      BackendConnection.logIn(target, login, opts, socket),
    );
  }

  /** The startup exchange, on `ready` (a socket already negotiated) or on a new plain TCP connection. */
  private static logIn(
    target: BackendTarget,
    login: BackendLogin,
    opts: BackendOptions,
    ready: net.Socket | null,
  ): Promise<BackendConnection> {
    return new Promise((resolve, reject) => {
      const slab = ready === null ? new ReadSlab() : null;
      const socket =
        ready ??
        net.connect({
          host: target.host,
          port: target.port,
          noDelay: true,
          // Reads land in a slab the connection owns instead of going through the Readable
          // stream (a buffer allocated per read, a 'data' event, a nextTick): see ReadSlab.
          onread: {
            buffer: () => slab!.next(),
            callback: (n: number, buf: Uint8Array): boolean => {
              conn.onChunk(slab!.took(buf, n));
              return true;
            },
          },
        });
      const conn = new BackendConnection(target, socket, opts);
      // A TLS socket is a stream: its decrypted data comes as 'data' events.
      if (ready !== null) socket.on('data', (chunk: Buffer) => conn.onChunk(chunk));
      const startup = new StartupExchange(conn, login, socket);
      let settled = false;
      const fail = (err: BackendStartupError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        conn.closed = true;
        reject(err);
      };
      const timer = setTimeout(
        () =>
          fail(
            new BackendStartupError(
              `connecting to ${target.nodeId} (${target.host}:${target.port}) timed out after ${opts.connectTimeoutMs} ms; raise postgres.pool.connectTimeoutMs if the node is slow to accept`,
              target.nodeId,
              null,
              true,
            ),
          ),
        opts.connectTimeoutMs,
      );
      if (ready) socket.write(encodeStartupMessage(startup.startupParams()));
      else socket.on('connect', () => socket.write(encodeStartupMessage(startup.startupParams())));
      socket.on('error', (err) =>
        fail(
          new BackendStartupError(
            `cannot reach ${target.nodeId} (${target.host}:${target.port}): ${err.message}`,
            target.nodeId,
            null,
            true,
          ),
        ),
      );
      socket.on('close', () =>
        fail(
          new BackendStartupError(
            `${target.nodeId} closed the connection during startup`,
            target.nodeId,
            null,
            true,
          ),
        ),
      );
      conn.onChunk = (chunk: Buffer): void => {
        try {
          conn.reader.push(chunk, (type, frame) => {
            if (settled) return;
            const done = startup.handle(type, frame);
            if (done) {
              settled = true;
              clearTimeout(timer);
              socket.removeAllListeners();
              conn.attach(ready !== null);
              resolve(conn);
            }
          });
        } catch (err) {
          fail(
            err instanceof BackendStartupError
              ? err
              : new BackendStartupError(String((err as Error).message), target.nodeId, null, true),
          );
        }
      };
    });
  }

  /** Switches the socket to data mode after startup. */
  private attach(streamed: boolean): void {
    if (streamed) this.socket.on('data', (chunk: Buffer) => this.onChunk(chunk));
    this.onChunk = (chunk: Buffer): void => this.feed(chunk);
    this.socket.on('error', (err) => this.handleClose(err.message));
    this.socket.on('close', () => this.handleClose('server closed the connection'));
    // The server's FIN: without this the socket stays half-open until 'close', and a pool
    // could lend it meanwhile (the first write then fails with "write after end").
    this.socket.on('end', () => this.handleClose('server closed the connection'));
  }

  /** Bytes the server sent: from the socket, or read by the native core and not forwarded by it. */
  feed(chunk: Buffer): void {
    // Evidence of life for the monitor (a probe queued behind this data is not a failure).
    dataActivity.received(this.target.nodeId);
    try {
      this.reader.push(chunk, this.onFrame);
    } catch (err) {
      this.destroy(`protocol error from ${this.target.nodeId}: ${(err as Error).message}`);
      return;
    }
    this.listener?.onBackendChunkEnd();
  }

  /** No part of a frame is held: the next byte from the server starts a frame. */
  get atFrameBoundary(): boolean {
    return this.reader.bufferedBytes === 0;
  }

  write(buf: Buffer): boolean {
    return this.socket.write(buf);
  }

  /** Sends Terminate and closes; used when the pool drops an idle connection. */
  terminate(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.end(TERMINATE);
  }

  destroy(reason = 'destroyed by proxy'): void {
    if (this.closed) return;
    this.socket.destroy();
    this.handleClose(reason);
  }

  private handleClose(reason: string): void {
    this.closed = true;
    const native = this.native;
    this.native = null;
    native?.close();
    if (this.closeNotified) return;
    this.closeNotified = true;
    const listener = this.listener;
    this.listener = null;
    listener?.onBackendClose(this, reason);
    this.onClosed?.(this, reason);
  }

  /** Set by the pool to learn about connections that die. */
  onClosed: ((conn: BackendConnection, reason: string) => void) | null = null;

  private onIdleFrame(type: number, _frame: Buffer): void {
    // An idle server only speaks to report a shutdown (ErrorResponse) or a setting change.
    if (type === BackendCode.ErrorResponse) this.destroy('server sent an error while idle');
  }
}

const IGNORE_CHUNK = (_chunk: Buffer): void => {};

/**
 * Bytes of a fresh slab; a read gets the slab's free tail, at least MIN_READ_BYTES of it. A
 * connection keeps its current slab while idle (its next read's memory), so this is also what
 * an idle backend connection holds: 64 KiB, the read size Node's own stream path asks for.
 */
const SLAB_BYTES = 64 * 1024;
const MIN_READ_BYTES = 16 * 1024;

/**
 * Memory for a plain TCP backend socket's reads (`net.Socket`'s `onread`): each read is given
 * the free tail of the current slab, and the bytes it received are never written again — frames
 * handed on are views of them, and a view may outlive the read (a client socket that queues
 * it, a frame a helper keeps). Only when the tail gets short does the next read get a new slab;
 * the old one lives as long as some view of it does. One allocation per many small reads
 * instead of the stream's one per read, and no 'data' event or nextTick per read.
 */
class ReadSlab {
  private slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
  private used = 0;

  /** The memory the next read goes into. */
  next(): Buffer {
    if (SLAB_BYTES - this.used < MIN_READ_BYTES) {
      this.slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
      this.used = 0;
    }
    return this.slab.subarray(this.used);
  }

  /** `n` bytes were read into `buf` (what next() returned): they are the chunk, and taken. */
  took(buf: Uint8Array, n: number): Buffer {
    this.used += n;
    return (buf as Buffer).subarray(0, n);
  }
}

/** The startup/authentication state machine of one backend connection. */
class StartupExchange {
  private scram: ScramClient | null = null;

  constructor(
    private readonly conn: BackendConnection,
    private readonly login: BackendLogin,
    private readonly socket: net.Socket,
  ) {}

  startupParams(): Record<string, string> {
    return { ...this.login.params, user: this.login.user, database: this.login.database };
  }

  /** Returns true once the server is ready for queries. */
  handle(type: number, frame: Buffer): boolean {
    switch (type) {
      case BackendCode.Authentication:
        this.authenticate(frame);
        return false;
      case BackendCode.ParameterStatus: {
        const { name, value } = decodeParameterStatus(frame);
        this.conn.parameters.set(name, value);
        this.conn.parameterFrames.push(Buffer.from(frame));
        return false;
      }
      case BackendCode.BackendKeyData: {
        const key = decodeBackendKeyData(frame);
        this.conn.processId = key.processId;
        this.conn.secretKey = key.secretKey;
        return false;
      }
      case BackendCode.ReadyForQuery:
        return true;
      case BackendCode.ErrorResponse: {
        const fields = decodeErrorFields(frame);
        throw new BackendStartupError(
          `${this.conn.target.nodeId} refused the login of user "${this.login.user}" to database "${this.login.database}": ${fields.get('M') ?? 'error'}`,
          this.conn.target.nodeId,
          Buffer.from(frame),
          // Startup errors that are about the node rather than the login.
          ['57P03', '53300', '57P01'].includes(fields.get('C') ?? ''),
        );
      }
      default:
        return false; // NoticeResponse, NegotiateProtocolVersion: nothing to do
    }
  }

  private authenticate(frame: Buffer): void {
    const { code, data } = decodeAuthentication(frame);
    switch (code) {
      case 0:
        return;
      case 3:
        this.socket.write(encodePasswordMessage(this.password('password')));
        return;
      case 5:
        this.socket.write(
          encodePasswordMessage(md5PasswordResponse(this.login.user, this.password('md5'), data)),
        );
        return;
      case 10: {
        const mechanisms = decodeSaslMechanisms(data);
        if (!mechanisms.includes('SCRAM-SHA-256')) {
          throw this.failure(
            `offers only SASL mechanisms ${mechanisms.join(', ')}; rwsplit supports SCRAM-SHA-256`,
          );
        }
        const keys = this.login.password === undefined ? this.login.scramKeys?.() : undefined;
        this.scram = new ScramClient(keys ?? this.password('SCRAM-SHA-256'));
        this.socket.write(encodeSaslInitialResponse('SCRAM-SHA-256', this.scram.clientFirstMessage()));
        return;
      }
      case 11:
        if (!this.scram) throw this.failure('sent SASLContinue out of order');
        this.socket.write(encodeSaslResponse(this.scram.handleServerFirst(data)));
        return;
      case 12:
        if (!this.scram) throw this.failure('sent SASLFinal out of order');
        this.scram.handleServerFinal(data);
        return;
      default:
        throw this.failure(`asks for an authentication method rwsplit does not support (code ${code})`);
    }
  }

  private password(method: string): string {
    if (this.login.password !== undefined) return this.login.password;
    if (this.login.scramKeys) {
      throw this.failure(
        `asks for ${method} authentication of user "${this.login.user}"; rwsplit logs that user in with the SCRAM keys of its client (postgres.auth.authQuery) and knows no password: the server must ask for scram-sha-256 (pg_hba.conf)`,
      );
    }
    throw this.failure(
      `asks for ${method} authentication of user "${this.login.user}" and rwsplit has no password for it; set postgres.backend.password or the user's password in postgres.auth.users`,
    );
  }

  private failure(what: string): BackendStartupError {
    return new BackendStartupError(
      `${this.conn.target.nodeId} ${what}`,
      this.conn.target.nodeId,
      null,
      false,
    );
  }
}
