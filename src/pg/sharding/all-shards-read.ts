/**
 * `/* rwsplit:all-shards *\/ SELECT …`: one simple Query run on a read node of every shard,
 * the rows of all of them returned as one result (the first shard's RowDescription, every
 * DataRow, one CommandComplete with the total count). An error from any shard is the answer.
 */
import type { BackendConnection, BackendListener } from '../backend/backend-connection.js';
import { RwsplitPgError, SqlState } from '../errors.js';
import { BackendCode, encodeCommandComplete } from '../protocol/index.js';

export interface ShardTarget {
  shard: string;
  conn: BackendConnection;
}

export interface Collected {
  frames: Buffer[];
  error: Buffer | null;
}

/** Runs `query` (a whole Query frame) on each target in parallel; resolves with the merged frames. */
export async function readAllShards(query: Buffer, targets: readonly ShardTarget[]): Promise<Buffer[]> {
  const results = await Promise.all(targets.map((t) => collect(t, query)));
  const failed = results.find((r) => r.error);
  if (failed) return [failed.error!];
  const out: Buffer[] = [];
  let described = false;
  let rows = 0;
  let tag: string | null = null;
  for (const r of results) {
    for (const f of r.frames) {
      const type = f[0];
      if (type === BackendCode.RowDescription) {
        if (!described) out.push(f);
        described = true;
      } else if (type === BackendCode.DataRow) {
        out.push(f);
        rows++;
      } else if (type === BackendCode.CommandComplete) {
        tag ??= f.toString('utf8', 5, f.length - 1).replace(/\s+\d+$/, '');
      } else if (type === BackendCode.NoticeResponse) {
        out.push(f);
      }
    }
  }
  out.push(encodeCommandComplete(tag === null ? 'SELECT 0' : `${tag} ${rows}`));
  return out;
}

/** Sends one Query frame and gathers its answer up to ReadyForQuery (the error apart). */
export function collect(target: ShardTarget, query: Buffer): Promise<Collected> {
  const { conn } = target;
  const previous = conn.listener;
  return new Promise((resolve) => {
    const frames: Buffer[] = [];
    let error: Buffer | null = null;
    const listener: BackendListener = {
      onBackendFrame(type, frame) {
        if (type === BackendCode.ReadyForQuery) {
          conn.listener = previous;
          resolve({ frames, error });
        } else if (type === BackendCode.ErrorResponse) error ??= Buffer.from(frame);
        else frames.push(Buffer.from(frame));
      },
      onBackendChunkEnd() {},
      onBackendClose(_c, reason) {
        // Resolved, not rejected: the other shards' answers must be awaited before their
        // connections go back to a pool.
        conn.listener = previous;
        error ??= new RwsplitPgError(
          'BACKEND_LOST',
          SqlState.ConnectionFailure,
          `shard ${target.shard} (${conn.target.nodeId}) was lost during an all-shards read: ${reason}`,
        ).toFrame();
        resolve({ frames, error });
      },
    };
    conn.listener = listener;
    conn.write(query);
  });
}
