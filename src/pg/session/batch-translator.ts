/**
 * Writes a batch of client frames to the backend that runs it, translating what is
 * per-connection: named statements become shared server-side names (`rws_<hash>`), a
 * statement the backend has not seen is re-Parsed first, Close of a statement is answered
 * by the proxy. Every forwarded request is registered with the response tracker.
 */
import type { BackendConnection } from '../backend/backend-connection.js';
import type { TakenFrames } from './client-batch.js';
import { bindNote, parseNote, queryNote, type ParsedFrame } from './frame-note.js';
import {
  CLOSE_COMPLETE,
  decodeTarget,
  encodeBindWithStatement,
  encodeParse,
  encodeParseWithName,
  encodeTarget,
  FrontendCode,
  PARSE_COMPLETE,
  type BindHead,
} from '../protocol/index.js';
import { Expect, type ResponseTracker } from './response-tracker.js';
import { ClientStatements, schemaEpoch, statementKey, type StatementInfo } from './statement-registry.js';

/** Server-side prepared statements kept per backend connection before the oldest is closed. */
export const MAX_STATEMENTS_PER_BACKEND = 1000;

/** Batches up to this size are copied into one buffer and sent with a single write. */
const COPY_LIMIT = 16 * 1024;

export interface TranslateResult {
  /** ReadyForQuery answers this batch will produce (Sync, Query, FunctionCall) */
  readyCount: number;
  /** session state created by the batch (pins the session), or null */
  pin: string | null;
  /** the backend socket refused more data: pause the client until it drains */
  backendFull: boolean;
}

export class BatchTranslator {
  /** extended-protocol messages sent since the last Sync: the backend is mid-batch */
  unsynced = false;
  private conn: BackendConnection | null = null;
  private full = false;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /**
   * The run of frames lying next to each other in one received chunk, not yet in `pending`:
   * its memory, where it starts and ends. Joined into one view only when the run ends, so a
   * batch of adjacent frames costs one view, not one per frame.
   */
  private runMemory: ArrayBufferLike | null = null;
  private runStart = 0;
  private runEnd = 0;
  private runFirst: Buffer | null = null;

  constructor(
    private readonly statements: ClientStatements,
    private readonly tracker: ResponseTracker,
  ) {}

  reset(): void {
    this.unsynced = false;
    this.conn = null;
    this.pending = [];
    this.pendingBytes = 0;
    this.runFirst = null;
    this.runMemory = null;
  }

  /** Queues a simple Query the proxy makes (a deferred BEGIN) ahead of the next batch; its answer is swallowed. */
  injectQuery(frame: Buffer, conn: BackendConnection): void {
    this.conn = conn;
    this.send(frame);
    this.tracker.expect(Expect.InjectedQuery);
  }

  /** Sends `batch` (frames with the notes the session took when they were queued) on `conn`. */
  translate(batch: TakenFrames, conn: BackendConnection): TranslateResult {
    this.conn = conn;
    this.full = false;
    let readyCount = 0;
    let pin: string | null = null;
    const { frames, notes } = batch;
    for (let i = 0; i < frames.length; i++) {
      const frame = frames[i]!;
      switch (frame[0]) {
        case FrontendCode.Query: {
          const c = queryNote(notes[i]!);
          pin ??= c.pin;
          // A simple Query replaces the unnamed statement; DISCARD/DEALLOCATE drop ours.
          conn.unnamedKey = null;
          if (c.resetsPrepared) conn.prepared.clear();
          this.send(frame);
          this.tracker.expect(Expect.Query);
          readyCount++;
          break;
        }
        case FrontendCode.Parse:
          pin ??= this.parse(frame, parseNote(notes[i]!), conn);
          break;
        case FrontendCode.Bind:
          this.bind(frame, bindNote(notes[i]!), conn);
          break;
        case FrontendCode.Describe:
          this.describe(frame, conn);
          break;
        case FrontendCode.Execute:
          this.send(frame);
          this.unsynced = true;
          this.tracker.expect(Expect.Execute);
          break;
        case FrontendCode.Close:
          this.close(frame);
          break;
        case FrontendCode.Sync:
          this.send(frame);
          // A Sync inside a COPY is ignored by the server: no ReadyForQuery will answer it.
          if (this.tracker.expect(Expect.Sync)) {
            this.unsynced = false;
            readyCount++;
          }
          break;
        case FrontendCode.FunctionCall:
          this.send(frame);
          this.tracker.expect(Expect.Query);
          readyCount++;
          break;
        case FrontendCode.Flush:
          this.send(frame);
          break;
        case FrontendCode.CopyDone:
        case FrontendCode.CopyFail:
          this.send(frame);
          this.tracker.expectCopyEnd();
          break;
        default: // CopyData: the server is in COPY mode
          this.send(frame);
      }
    }
    this.flush();
    return { readyCount, pin, backendFull: this.full };
  }

  /**
   * Collects the outgoing bytes; `flush` writes them with one system call. Frames that sit
   * next to each other in the client's chunk are joined without copying; a batch of a few
   * small pieces (a rewritten Bind, then Execute and Sync) is copied into one buffer, which
   * costs far less than a writev of several.
   */
  private send(frame: Buffer): void {
    const at = frame.byteOffset;
    // The offset first: `.buffer` is a call into the runtime on Node 20, made once per frame here.
    if (this.runFirst !== null && at === this.runEnd && frame.buffer === this.runMemory) {
      this.runEnd = at + frame.length;
    } else {
      this.endRun();
      this.runFirst = frame;
      this.runMemory = frame.buffer;
      this.runStart = at;
      this.runEnd = at + frame.length;
    }
    this.pendingBytes += frame.length;
  }

  /** The current run goes to `pending`: the frame itself, or one view over the joined frames. */
  private endRun(): void {
    const first = this.runFirst;
    if (first === null) return;
    const bytes = this.runEnd - this.runStart;
    this.pending.push(
      bytes === first.length ? first : Buffer.from(this.runMemory as ArrayBuffer, this.runStart, bytes),
    );
    this.runFirst = null;
    this.runMemory = null;
  }

  private flush(): void {
    this.endRun();
    const pending = this.pending;
    if (pending.length === 0) return;
    const conn = this.conn!;
    let ok: boolean;
    if (pending.length === 1) ok = conn.write(pending[0]!);
    else if (this.pendingBytes <= COPY_LIMIT) ok = conn.write(Buffer.concat(pending, this.pendingBytes));
    else {
      conn.socket.cork();
      ok = true;
      for (const b of pending) ok = conn.write(b) && ok;
      conn.socket.uncork();
    }
    if (!ok) this.full = true;
    pending.length = 0;
    this.pendingBytes = 0;
  }

  private parse(frame: Buffer, parsed: ParsedFrame, conn: BackendConnection): string | null {
    const { msg, classification } = parsed;
    const epoch = schemaEpoch.value;
    let info = parsed.info;
    if (info === null || info.epoch !== epoch) {
      info = {
        key: statementKey(msg.query, msg.paramTypes),
        query: msg.query,
        paramTypes: Buffer.from(msg.paramTypes),
        classification,
        epoch,
      };
      parsed.info = info;
    }
    const key = info.key;
    this.unsynced = true;
    if (msg.statement === '') {
      this.statements.set('', info);
      conn.unnamedKey = key;
      this.send(frame);
      this.tracker.expectParse(null, false);
      return classification.pin;
    }
    this.statements.set(msg.statement, info);
    const held = conn.prepared.get(key);
    if (held !== undefined && held >= epoch) {
      this.tracker.synthesize(PARSE_COMPLETE);
    } else {
      // A copy from before a schema change is replaced, so the client's re-Parse (after
      // `cached plan must not change result type`) really reaches the server.
      if (held !== undefined) this.closeStale(key, held, conn);
      else this.makeRoom(conn);
      conn.prepared.set(key, epoch);
      this.send(encodeParseWithName(frame, msg, key));
      this.tracker.expectParse(key, false);
    }
    return classification.pin;
  }

  /** Closes the server's copy of `key` (prepared at `held`) before it is prepared again. */
  private closeStale(key: string, held: number, conn: BackendConnection): void {
    conn.prepared.delete(key);
    this.send(encodeTarget(FrontendCode.Close, 'S', key));
    this.tracker.expectInjectedClose(key, held);
  }

  private bind(frame: Buffer, head: BindHead, conn: BackendConnection): void {
    const info = this.statements.get(head.statement);
    this.unsynced = true;
    if (!info) {
      // Unknown to us: let the server answer with its own "does not exist" error.
      this.send(frame);
    } else if (head.statement === '') {
      this.ensureUnnamed(info, conn);
      this.send(frame);
    } else {
      this.ensureNamed(info, conn);
      this.send(encodeBindWithStatement(frame, head, info.key));
    }
    this.tracker.expect(Expect.Bind);
  }

  private describe(frame: Buffer, conn: BackendConnection): void {
    const target = decodeTarget(frame);
    const info = target.kind === 'S' ? this.statements.get(target.name) : null;
    this.unsynced = true;
    if (!info) {
      this.send(frame);
    } else if (target.name === '') {
      this.ensureUnnamed(info, conn);
      this.send(frame);
    } else {
      this.ensureNamed(info, conn);
      this.send(encodeTarget(FrontendCode.Describe, 'S', info.key));
    }
    this.tracker.expect(Expect.Describe);
  }

  private close(frame: Buffer): void {
    const target = decodeTarget(frame);
    this.unsynced = true;
    if (target.kind === 'S') {
      // Server-side statements are shared between clients: forget the client's name only.
      this.statements.delete(target.name);
      this.tracker.synthesize(CLOSE_COMPLETE);
      return;
    }
    this.send(frame);
    this.tracker.expect(Expect.Close);
  }

  private ensureNamed(info: StatementInfo, conn: BackendConnection): void {
    const held = conn.prepared.get(info.key);
    // The backend's copy is as new as the client's: the server would answer as the client's own would.
    if (held !== undefined && held >= info.epoch) return;
    if (held !== undefined) this.closeStale(info.key, held, conn);
    else this.makeRoom(conn);
    conn.prepared.set(info.key, info.epoch);
    this.send(encodeParse(info.key, info.query, info.paramTypes));
    this.tracker.expectParse(info.key, true);
  }

  /**
   * Bounds the statements kept on one server connection (server memory): past the limit the
   * oldest one is closed first, with a Close whose answer is swallowed. A client that uses it
   * again simply gets it re-Parsed.
   */
  private makeRoom(conn: BackendConnection): void {
    if (conn.prepared.size < MAX_STATEMENTS_PER_BACKEND) return;
    const [oldest, held] = conn.prepared.entries().next().value as [string, number];
    conn.prepared.delete(oldest);
    this.send(encodeTarget(FrontendCode.Close, 'S', oldest));
    this.tracker.expectInjectedClose(oldest, held);
  }

  private ensureUnnamed(info: StatementInfo, conn: BackendConnection): void {
    if (conn.unnamedKey === info.key) return;
    conn.unnamedKey = info.key;
    this.send(encodeParse('', info.query, info.paramTypes));
    this.tracker.expectParse(null, true);
  }
}
