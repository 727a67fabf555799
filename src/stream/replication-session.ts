/**
 * One walsender connection (`replication=database`) on the project's PostgreSQL codec and
 * backend connection (startup and authentication as for any backend): replication commands
 * over the simple query protocol, then CopyBoth after START_REPLICATION. The caller gets each
 * CopyData payload, decides when to acknowledge, and pauses the socket for backpressure.
 */
import {
  BackendConnection,
  type BackendListener,
  type BackendTarget,
} from '../pg/backend/backend-connection.js';
import { BackendCode, decodeErrorFields, encodeQuery } from '../pg/protocol/index.js';
import { COPY_DONE, encodeStandbyStatus, formatLsn } from './pgoutput.js';

export class ReplicationError extends Error {
  readonly code = 'STREAM_REPLICATION';
  constructor(
    message: string,
    /** the server's SQLSTATE when it sent an ErrorResponse */
    readonly sqlState: string | null = null,
  ) {
    super(message);
  }
}

export interface ReplicationLogin {
  user: string;
  password?: string;
  database: string;
}

/** One row of a replication command's result, by column name, text values. */
export type TextRow = Record<string, string | null>;

/** Decodes a DataRow frame's values as text (replication commands answer in text). */
function decodeDataRow(frame: Buffer): (string | null)[] {
  const n = frame.readInt16BE(5);
  const out: (string | null)[] = [];
  let o = 7;
  for (let i = 0; i < n; i++) {
    const len = frame.readInt32BE(o);
    o += 4;
    if (len < 0) out.push(null);
    else {
      out.push(frame.toString('utf8', o, o + len));
      o += len;
    }
  }
  return out;
}

/** Decodes a RowDescription frame's column names. */
function decodeColumnNames(frame: Buffer): string[] {
  const n = frame.readInt16BE(5);
  const names: string[] = [];
  let o = 7;
  for (let i = 0; i < n; i++) {
    const end = frame.indexOf(0, o);
    names.push(frame.toString('utf8', o, end));
    o = end + 1 + 18; // table oid, attnum, type oid, typlen, typmod, format
  }
  return names;
}

type Pending = {
  rows: TextRow[];
  names: string[];
  error: ReplicationError | null;
  resolve: (rows: TextRow[]) => void;
  reject: (err: Error) => void;
};

export class ReplicationSession implements BackendListener {
  private pending: Pending | null = null;
  private copying = false;
  private closed = false;
  /** each CopyData payload while streaming */
  onCopyData: ((payload: Buffer) => void) | null = null;
  /** the connection ended (server, network, or close()); `reason` says why */
  onClose: ((reason: string) => void) | null = null;

  private constructor(private readonly conn: BackendConnection) {
    conn.listener = this;
  }

  static async open(
    target: BackendTarget,
    login: ReplicationLogin,
    opts: { connectTimeoutMs: number; maxFrameBytes: number },
  ): Promise<ReplicationSession> {
    const conn = await BackendConnection.connect(
      target,
      {
        user: login.user,
        database: login.database,
        params: { replication: 'database', application_name: 'rwsplit-stream' },
        ...(login.password !== undefined ? { password: login.password } : {}),
      },
      opts,
    );
    return new ReplicationSession(conn);
  }

  get nodeId(): string {
    return this.conn.target.nodeId;
  }

  /** Runs one command (replication command or SQL) and returns its rows. */
  command(sql: string): Promise<TextRow[]> {
    if (this.closed) return Promise.reject(new ReplicationError('replication connection is closed'));
    if (this.pending || this.copying)
      return Promise.reject(new ReplicationError('replication connection is busy'));
    return new Promise((resolve, reject) => {
      this.pending = { rows: [], names: [], error: null, resolve, reject };
      this.conn.write(encodeQuery(sql));
    });
  }

  /**
   * START_REPLICATION of a logical slot with pgoutput, from `startLsn`; resolves once the
   * server is in CopyBoth mode (its CopyBothResponse).
   */
  startReplication(slot: string, startLsn: bigint, publication: string): Promise<void> {
    const sql = `START_REPLICATION SLOT ${slot} LOGICAL ${formatLsn(startLsn)} (proto_version '1', publication_names '${publication}')`;
    return this.command(sql).then(() => undefined);
  }

  /** Sends a standby status update: everything up to `lsn` is applied (and may be forgotten). */
  acknowledge(lsn: bigint, replyRequested = false): void {
    if (!this.closed && this.copying) this.conn.write(encodeStandbyStatus(lsn, Date.now(), replyRequested));
  }

  /** Stops reading the server (backpressure); PostgreSQL's send buffer then fills and it waits. */
  pause(): void {
    this.conn.socket.pause();
  }

  resume(): void {
    this.conn.socket.resume();
  }

  close(reason = 'stream stopped'): void {
    if (this.closed) return;
    // The slot is persistent and acknowledged only up to what Redis holds: an abrupt end loses nothing.
    if (this.copying) this.conn.write(COPY_DONE);
    this.conn.destroy(reason);
  }

  onBackendFrame(type: number, frame: Buffer): void {
    if (this.copying && type === BackendCode.CopyData) {
      this.onCopyData?.(frame.subarray(5));
      return;
    }
    const p = this.pending;
    switch (type) {
      case BackendCode.RowDescription:
        if (p) p.names = decodeColumnNames(frame);
        return;
      case BackendCode.DataRow:
        if (p) {
          const values = decodeDataRow(frame);
          const row: TextRow = {};
          values.forEach((v, i) => (row[p.names[i] ?? String(i)] = v));
          p.rows.push(row);
        }
        return;
      case BackendCode.ErrorResponse: {
        const f = decodeErrorFields(frame);
        const err = new ReplicationError(
          `${this.nodeId}: ${f.get('M') ?? 'error'}${f.has('D') ? ` (${f.get('D')!})` : ''}`,
          f.get('C') ?? null,
        );
        if (p) p.error = err;
        else if (this.copying) this.fail(err.message);
        return;
      }
      case BackendCode.CopyBothResponse:
        this.copying = true;
        if (p) {
          this.pending = null;
          p.resolve([]);
        }
        return;
      case BackendCode.ReadyForQuery:
        this.copying = false;
        if (p) {
          this.pending = null;
          if (p.error) p.reject(p.error);
          else p.resolve(p.rows);
        }
        return;
      default:
        return; // CommandComplete, NoticeResponse, ParameterStatus, CopyDone
    }
  }

  onBackendChunkEnd(): void {}

  onBackendClose(_conn: BackendConnection, reason: string): void {
    this.fail(reason);
  }

  private fail(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.copying = false;
    const p = this.pending;
    this.pending = null;
    p?.reject(new ReplicationError(`${this.nodeId}: ${reason}`));
    if (!this.conn.closed) this.conn.destroy(reason);
    this.onClose?.(reason);
  }
}
