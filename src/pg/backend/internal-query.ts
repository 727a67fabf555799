/**
 * A statement the proxy runs for itself on a leased, idle backend connection (a commit
 * position for the causal token, a replica's replay position, PREPARE TRANSACTION for
 * two-phase commit). The connection's listener is borrowed for the exchange and handed
 * back; nothing of it reaches the client.
 */
import type { BackendConnection, BackendListener } from './backend-connection.js';
import {
  BackendCode,
  decodeErrorFields,
  encodeBindText,
  encodeExecute,
  encodeParse,
  encodeQuery,
  SYNC,
} from '../protocol/index.js';

export interface InternalResult {
  /** text values of every DataRow, in order */
  rows: (string | null)[][];
  /** transaction status from the closing ReadyForQuery ('I', 'T' or 'E') */
  txStatus: string;
  /** the last CommandComplete tag (`COMMIT`, `PREPARE TRANSACTION`, `ROLLBACK`, …) */
  tag: string | null;
}

/** The server answered with an ErrorResponse; `fields` are its fields by code letter. */
export class InternalQueryError extends Error {
  readonly code = 'INTERNAL_QUERY_FAILED';
  constructor(
    readonly fields: Map<string, string>,
    readonly sql: string,
  ) {
    super(fields.get('M') ?? 'error');
  }

  get sqlstate(): string {
    return this.fields.get('C') ?? '';
  }
}

/** The connection closed during the exchange. */
export class InternalQueryLost extends Error {
  readonly code = 'INTERNAL_QUERY_LOST';
}

/**
 * Runs one query: simple protocol, or with `params` (text values for `$1`, `$2`, …) the
 * extended protocol on the unnamed statement. The connection must be idle (its last
 * ReadyForQuery seen, nothing in flight); the caller's listener is restored before the promise
 * settles, and is told about a close only through the rejection.
 */
export function internalQuery(
  conn: BackendConnection,
  sql: string,
  params?: readonly (string | null)[],
): Promise<InternalResult> {
  const previous = conn.listener;
  return new Promise((resolve, reject) => {
    const rows: (string | null)[][] = [];
    let error: Map<string, string> | null = null;
    let tag: string | null = null;
    const listener: BackendListener = {
      onBackendFrame(type, frame) {
        if (type === BackendCode.DataRow) rows.push(decodeDataRow(frame));
        else if (type === BackendCode.CommandComplete) tag = frame.toString('utf8', 5, frame.length - 1);
        else if (type === BackendCode.ErrorResponse) error = decodeErrorFields(frame);
        else if (type === BackendCode.ReadyForQuery) {
          conn.listener = previous;
          const txStatus = String.fromCharCode(frame[5]!);
          if (error) reject(new InternalQueryError(error, sql));
          else resolve({ rows, txStatus, tag });
        }
      },
      onBackendChunkEnd() {},
      onBackendClose(_conn, reason) {
        conn.listener = previous;
        reject(new InternalQueryLost(`${conn.target.nodeId}: ${reason}`));
      },
    };
    conn.listener = listener;
    if (conn.closed) {
      conn.listener = previous;
      reject(new InternalQueryLost(`${conn.target.nodeId}: connection already closed`));
      return;
    }
    if (!params) {
      conn.write(encodeQuery(sql));
      return;
    }
    // The unnamed statement no longer holds what a client's session parsed there.
    conn.unnamedKey = null;
    conn.write(
      Buffer.concat([
        encodeParse('', sql, Buffer.alloc(0)),
        encodeBindText('', '', params),
        encodeExecute(''),
        SYNC,
      ]),
    );
  });
}

/** Text values of a DataRow ('D'): Int16 count, then per column Int32 length (-1 = NULL) and bytes. */
function decodeDataRow(frame: Buffer): (string | null)[] {
  const count = frame.readInt16BE(5);
  const out: (string | null)[] = [];
  let at = 7;
  for (let i = 0; i < count; i++) {
    const len = frame.readInt32BE(at);
    at += 4;
    if (len < 0) {
      out.push(null);
      continue;
    }
    out.push(frame.toString('utf8', at, at + len));
    at += len;
  }
  return out;
}
