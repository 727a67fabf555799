/**
 * Knows which server response answers which request of a leased backend, so the proxy can
 * answer some requests itself (ParseComplete for a statement the backend already has,
 * CloseComplete for a client's Close of a shared statement) and swallow the answers to
 * requests it injected (a re-Parse), while the client sees exactly the stream a single
 * server would have sent.
 *
 * Completion rules (https://www.postgresql.org/docs/current/protocol-flow.html):
 * Parse→'1', Bind→'2', Describe→'T'|'n' (statement: after 't'), Execute→'C'|'I'|'s',
 * Close→'3', Sync/Query/FunctionCall→'Z'. After an ErrorResponse in an extended-protocol
 * batch the server skips everything up to Sync, so do we. 'N', 'A', 'S' may come anytime.
 *
 * COPY FROM STDIN: once the server answers CopyInResponse it reads the client's stream as COPY
 * data and ignores every Sync (and Flush) up to the client's CopyDone or CopyFail, or up to an
 * error that ends the COPY. Clients differ in where they put their Sync (libpq: one right after
 * Execute and one after CopyDone; others only one of the two), so the Syncs forwarded inside
 * that window expect no ReadyForQuery.
 */
import { BackendCode } from '../protocol/index.js';

export const enum Expect {
  Parse,
  Bind,
  Describe,
  Execute,
  Close,
  Sync,
  Query,
  /** a Parse the proxy injected: its ParseComplete is not the client's */
  InjectedParse,
  /** a simple Query the proxy injected (a deferred BEGIN): swallow up to and including its 'Z' */
  InjectedQuery,
  /** a Close the proxy injected to evict a server-side statement: swallow its CloseComplete */
  InjectedClose,
  /** a response the proxy makes up; emitted when it reaches the head of the queue */
  Synthetic,
  /** the client's CopyDone/CopyFail went here: no answer of its own, marks where a COPY ends */
  CopyEnd,
}

interface Entry {
  kind: Expect;
  /** Synthetic: the bytes to send */
  bytes: Buffer | null;
  /** Parse/InjectedParse: statement key added to the backend optimistically, undone if it fails */
  key: string | null;
  /** InjectedClose: the schema epoch the closed copy was prepared at (restored if the Close is skipped) */
  epoch?: number;
}

/** What the session must do with one backend frame. */
export const enum Verdict {
  Forward,
  Swallow,
}

export interface TrackerSink {
  /** sends bytes to the client (synthetic responses) */
  emit(bytes: Buffer): void;
  /** a Parse of `key` did not happen on the server (error, or skipped after an error) */
  parseFailed(key: string | null): void;
  /** an injected Close of `key` was skipped after an error: the statement (prepared at `epoch`) still exists */
  closeSkipped(key: string, epoch: number): void;
  /**
   * `count` Syncs already registered fell inside a COPY: the server ignores them, no
   * ReadyForQuery comes. `extended`: the COPY came from an Execute, so the server still waits
   * for a Sync that ends the implicit transaction.
   */
  readyDropped?(count: number, extended: boolean): void;
}

const SHARED: Partial<Record<Expect, Entry>> = {};
function shared(kind: Expect): Entry {
  let e = SHARED[kind];
  if (!e) SHARED[kind] = e = { kind, bytes: null, key: null };
  return e;
}

export class ResponseTracker {
  private queue: Entry[] = [];
  private head = 0;
  /** Sync/Query entries in the queue: the ReadyForQuery messages still to come */
  pendingReady = 0;
  /** the server is in COPY FROM STDIN and the client has not ended it yet: Syncs sent now are ignored */
  private inCopy = false;

  constructor(private readonly sink: TrackerSink) {}

  get idle(): boolean {
    return this.head === this.queue.length;
  }

  /**
   * Every answer still awaited is the server's own, forwarded as it comes (no injected
   * request, no proxy-made answer, no COPY): the native core may carry it (native-forward.ts).
   */
  get plain(): boolean {
    if (this.inCopy) return false;
    for (let i = this.head; i < this.queue.length; i++) if (this.queue[i]!.kind > Expect.Query) return false;
    return true;
  }

  /** Registers a request; false for a Sync the server will ignore (sent inside a COPY): no answer comes. */
  expect(kind: Expect): boolean {
    if (kind === Expect.Sync && this.inCopy) return false;
    if (kind === Expect.Sync || kind === Expect.Query || kind === Expect.InjectedQuery) this.pendingReady++;
    this.queue.push(shared(kind));
    return true;
  }

  /** The client's CopyDone or CopyFail was forwarded: a COPY in progress ends there. */
  expectCopyEnd(): void {
    if (this.inCopy) {
      this.inCopy = false;
      return;
    }
    // The server may not have started the COPY yet (pipelined): mark the place for onCopyIn.
    this.queue.push(shared(Expect.CopyEnd));
    this.drainSynthetic();
  }

  expectParse(key: string | null, injected: boolean): void {
    const kind = injected ? Expect.InjectedParse : Expect.Parse;
    // The unnamed statement's Parse (a driver's every query) needs no entry of its own.
    this.queue.push(key === null ? shared(kind) : { kind, bytes: null, key });
  }

  /** A Close of `key` injected by the proxy (statement eviction). */
  expectInjectedClose(key: string, epoch: number): void {
    this.queue.push({ kind: Expect.InjectedClose, bytes: null, key, epoch });
  }

  synthesize(bytes: Buffer): void {
    this.queue.push({ kind: Expect.Synthetic, bytes, key: null });
    this.drainSynthetic();
  }

  /** Emits synthetic responses that have reached the head of the queue (and drops COPY-end marks there). */
  drainSynthetic(): void {
    while (this.head < this.queue.length) {
      const e = this.queue[this.head]!;
      if (e.kind === Expect.CopyEnd) {
        this.shift();
        continue;
      }
      if (e.kind !== Expect.Synthetic) break;
      this.shift();
      this.sink.emit(e.bytes!);
    }
  }

  /** Classifies one backend frame; updates the queue. */
  onFrame(type: number, frame: Buffer): Verdict {
    if (
      type === BackendCode.NoticeResponse ||
      type === BackendCode.NotificationResponse ||
      type === BackendCode.ParameterStatus
    )
      return Verdict.Forward;
    const e = this.queue[this.head];
    if (!e) return Verdict.Forward; // nothing expected (e.g. a notification on a pinned session)
    if (type === BackendCode.ErrorResponse) return this.onError(e);
    if (type === BackendCode.CopyInResponse && (e.kind === Expect.Execute || e.kind === Expect.Query))
      this.onCopyIn(e.kind === Expect.Execute);
    if (!completes(e.kind, type, frame))
      return e.kind === Expect.InjectedQuery ? Verdict.Swallow : Verdict.Forward;
    this.complete(e);
    const verdict =
      e.kind === Expect.InjectedParse || e.kind === Expect.InjectedQuery || e.kind === Expect.InjectedClose
        ? Verdict.Swallow
        : Verdict.Forward;
    this.drainSynthetic();
    return verdict;
  }

  /** Forgets everything (the backend is gone). */
  reset(): void {
    this.queue = [];
    this.head = 0;
    this.pendingReady = 0;
    this.inCopy = false;
  }

  /**
   * The request at the head started a COPY FROM STDIN: the Syncs forwarded after it and before
   * the client's CopyDone/CopyFail are read by the server as part of the COPY and ignored.
   */
  private onCopyIn(extended: boolean): void {
    let dropped = 0;
    let i = this.head + 1;
    for (; i < this.queue.length; i++) {
      const kind = this.queue[i]!.kind;
      if (kind === Expect.CopyEnd) break;
      if (kind === Expect.Sync) {
        this.queue.splice(i--, 1);
        dropped++;
      }
    }
    // No end forwarded yet: Syncs sent from now until it are ignored too.
    if (i === this.queue.length) this.inCopy = true;
    if (dropped > 0) {
      this.pendingReady -= dropped;
      this.sink.readyDropped?.(dropped, extended);
    }
  }

  private onError(e: Entry): Verdict {
    // An error ends a COPY in progress: the server reads Syncs normally again.
    this.inCopy = false;
    // In a simple Query the error is one of its results; ReadyForQuery still ends it.
    if (e.kind === Expect.Query || e.kind === Expect.InjectedQuery) return Verdict.Forward;
    // Extended protocol: the server now ignores everything up to the next Sync.
    let closes: Entry[] | null = null;
    while (this.head < this.queue.length) {
      const skipped = this.queue[this.head]!;
      if (skipped.kind === Expect.Sync) break;
      if (skipped.kind === Expect.Parse || skipped.kind === Expect.InjectedParse)
        this.sink.parseFailed(skipped.key);
      if (skipped.kind === Expect.InjectedClose) (closes ??= []).push(skipped);
      this.shift();
    }
    // After the Parses: a Close skipped before a re-Parse of the same key leaves the old copy in place.
    if (closes) for (const c of closes) this.sink.closeSkipped(c.key!, c.epoch ?? 0);
    return Verdict.Forward;
  }

  private complete(e: Entry): void {
    if (e.kind === Expect.Sync || e.kind === Expect.Query || e.kind === Expect.InjectedQuery)
      this.pendingReady--;
    this.shift();
  }

  private shift(): void {
    this.head++;
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    } else if (this.head > 1024) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
  }
}

function completes(kind: Expect, type: number, frame: Buffer): boolean {
  switch (kind) {
    case Expect.Parse:
    case Expect.InjectedParse:
      return type === BackendCode.ParseComplete;
    case Expect.Bind:
      return type === BackendCode.BindComplete;
    case Expect.Describe:
      return type === BackendCode.RowDescription || type === BackendCode.NoData;
    case Expect.Execute:
      return (
        type === BackendCode.CommandComplete ||
        type === BackendCode.EmptyQueryResponse ||
        type === BackendCode.PortalSuspended
      );
    case Expect.Close:
    case Expect.InjectedClose:
      return type === BackendCode.CloseComplete;
    case Expect.Sync:
    case Expect.Query:
    case Expect.InjectedQuery:
      return type === BackendCode.ReadyForQuery && frame.length >= 6;
    case Expect.Synthetic:
    case Expect.CopyEnd:
      return false;
  }
}
