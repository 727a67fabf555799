/**
 * One `COPY … FROM STDIN` running on every shard's backend at once (shard-copy.ts splits the
 * rows): the COPY statement is sent to each, the client gets one CopyInResponse, its CopyData
 * is cut into rows and each row written to its shard's backend, and CopyDone (or CopyFail)
 * ends it everywhere; the answer is one CommandComplete with the total row count, or the first
 * shard's error, its message naming the shard.
 */
import type { BackendConnection, BackendListener } from '../backend/backend-connection.js';
import { RwsplitPgError, SqlState } from '../errors.js';
import { BackendCode, encodeCommandComplete, FrontendCode } from '../protocol/index.js';
import { CopyRowError, type CopyRowSplitter } from './shard-copy.js';
import { namedError } from './shard-fanout.js';

interface Target {
  shard: string;
  conn: BackendConnection;
}

/** What one shard's server answered to the COPY. */
interface ShardAnswer {
  error: Buffer | null;
  tag: string | null;
  notices: Buffer[];
}

export interface CopyOutcome {
  frames: Buffer[];
  failed: boolean;
}

export class ShardCopyIn {
  private readonly ends: Promise<ShardAnswer>[] = [];
  private readonly answers: ShardAnswer[] = [];
  /** the split failed (a NULL key): the COPY is failed on every shard at its end */
  private failure: RwsplitPgError | null = null;

  private constructor(
    private readonly targets: readonly Target[],
    private readonly splitter: CopyRowSplitter,
    /** every shard holds the same rows: the count is one shard's */
    private readonly replicated: boolean,
  ) {}

  /**
   * Sends the COPY statement to every target; resolves with the copy in progress and the
   * CopyInResponse for the client, or with the first shard's error (the COPYs that did start
   * are failed, and every target is idle again when it resolves).
   */
  static async start(
    targets: readonly Target[],
    query: Buffer,
    splitter: CopyRowSplitter,
    replicated: boolean,
  ): Promise<{ copy: ShardCopyIn; response: Buffer } | { error: Buffer }> {
    const copy = new ShardCopyIn(targets, splitter, replicated);
    const started = targets.map((t) => copy.listen(t, query));
    const responses = await Promise.all(started);
    const failed = responses.findIndex((r) => r === null);
    if (failed < 0) return { copy, response: responses[0]! };
    // The COPYs that started are failed; the refusing shard's own error is the answer.
    await copy.end('COPY failed on another shard');
    const refusal = copy.answers[failed]!.error!;
    return { error: namedError(refusal, targets[failed]!.shard, 'No row was copied on any shard.') };
  }

  /** One CopyData message of the client's. */
  data(frame: Buffer): void {
    if (this.failure) return;
    let parts: Buffer[];
    try {
      parts = this.splitter.push(frame.subarray(5));
    } catch (err) {
      if (!(err instanceof CopyRowError)) throw err;
      this.failure = new RwsplitPgError(
        'SHARD_COPY_NULL_KEY',
        SqlState.NullValueNotAllowed,
        `rwsplit: ${err.message}`,
      );
      return;
    }
    this.send(parts);
  }

  /** CopyDone (`clientFail` null) or the client's CopyFail message: ends the COPY on every shard and answers. */
  async end(clientFail: string | null): Promise<CopyOutcome> {
    if (clientFail === null && !this.failure) {
      try {
        this.send(this.splitter.finish());
      } catch (err) {
        if (!(err instanceof CopyRowError)) throw err;
        this.failure = new RwsplitPgError(
          'SHARD_COPY_NULL_KEY',
          SqlState.NullValueNotAllowed,
          `rwsplit: ${err.message}`,
        );
      }
    }
    const last =
      this.failure !== null
        ? copyFail(this.failure.message)
        : clientFail !== null
          ? copyFail(clientFail)
          : COPY_DONE;
    for (const t of this.targets) if (!t.conn.closed) t.conn.write(last);
    const answers = await Promise.all(this.ends);
    if (this.failure) return { frames: [this.failure.toFrame()], failed: true };
    const errorAt = answers.findIndex((a) => a.error !== null);
    if (errorAt >= 0)
      return {
        frames: [
          namedError(
            answers[errorAt]!.error!,
            this.targets[errorAt]!.shard,
            'No row was copied on any shard.',
          ),
        ],
        failed: true,
      };
    let count = 0n;
    for (const a of this.replicated ? answers.slice(0, 1) : answers) {
      const m = /^COPY (\d+)$/.exec(a.tag ?? '');
      if (m) count += BigInt(m[1]!);
    }
    const notices = new Map<string, Buffer>();
    for (const a of answers) for (const n of a.notices) notices.set(n.toString('latin1'), n);
    return { frames: [...notices.values(), encodeCommandComplete(`COPY ${count}`)], failed: false };
  }

  private send(parts: readonly Buffer[]): void {
    for (const [i, t] of this.targets.entries()) {
      const data = parts[i];
      if (data && data.length > 0 && !t.conn.closed) t.conn.write(copyData(data));
    }
  }

  /**
   * Sends the COPY to one target; resolves with its CopyInResponse, or null if it refused. The
   * listener stays until the target's ReadyForQuery, which settles its entry of `ends`.
   */
  private listen(target: Target, query: Buffer): Promise<Buffer | null> {
    const { conn } = target;
    const answer: ShardAnswer = { error: null, tag: null, notices: [] };
    this.answers.push(answer);
    let started: (r: Buffer | null) => void = () => undefined;
    const start = new Promise<Buffer | null>((resolve) => (started = resolve));
    this.ends.push(
      new Promise<ShardAnswer>((resolve) => {
        const listener: BackendListener = {
          onBackendFrame(type, frame) {
            if (type === BackendCode.CopyInResponse) started(Buffer.from(frame));
            else if (type === BackendCode.ErrorResponse) answer.error ??= Buffer.from(frame);
            else if (type === BackendCode.CommandComplete)
              answer.tag = frame.toString('utf8', 5, frame.length - 1);
            else if (type === BackendCode.NoticeResponse) answer.notices.push(Buffer.from(frame));
            else if (type === BackendCode.ReadyForQuery) {
              conn.listener = null;
              started(null);
              resolve(answer);
            }
          },
          onBackendChunkEnd() {},
          onBackendClose(_c, reason) {
            conn.listener = null;
            answer.error ??= new RwsplitPgError(
              'BACKEND_LOST',
              SqlState.ConnectionFailure,
              `shard ${target.shard} (${conn.target.nodeId}) was lost during COPY: ${reason}`,
            ).toFrame();
            started(null);
            resolve(answer);
          },
        };
        conn.listener = listener;
        conn.write(query);
      }),
    );
    return start;
  }
}

const COPY_DONE = Buffer.from([FrontendCode.CopyDone, 0, 0, 0, 4]);

function copyData(data: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head[0] = FrontendCode.CopyData;
  head.writeUInt32BE(data.length + 4, 1);
  return Buffer.concat([head, data]);
}

function copyFail(message: string): Buffer {
  const text = Buffer.from(`${message}\0`, 'utf8');
  const head = Buffer.alloc(5);
  head[0] = FrontendCode.CopyFail;
  head.writeUInt32BE(text.length + 4, 1);
  return Buffer.concat([head, text]);
}
