/**
 * The chaos suite's checker: what the load generator saw (every acknowledged write, every
 * error, every read) and the figures computed from it once a scenario is over. Pure logic,
 * no sockets: the load generators feed a {@link Recorder}, the scenario runner reads the data
 * back from the surviving primary and calls {@link analyze}.
 */

/** A write the client saw acknowledged. */
export interface AckedWrite {
  /** the row or key written: `w:<id>` for the writers, `ryw:<session>` for read-your-writes sessions */
  key: string;
  /** the value written (writers: the id; read-your-writes sessions: their counter) */
  value: number;
  session: number;
  /** when the write was sent, ms on the recorder's clock */
  sentAt: number;
  /** when its acknowledgement arrived */
  at: number;
  /** the server that accepted it (PostgreSQL: from `inet_server_port()`), null when unknown */
  node: string | null;
}

/**
 * What failed: an operation (`write`, `read`), a connection attempt (`connect`), or an open
 * connection outside any operation (`connection`: the driver's error event).
 */
export type ErrorKind = 'write' | 'read' | 'connect' | 'connection';

/** An error a client saw. */
export interface ClientErrorRecord {
  at: number;
  session: number;
  kind: ErrorKind;
  message: string;
  /** SQLSTATE (PostgreSQL) or the error prefix (Redis), when there is one */
  code: string | null;
}

/** A read that returned. */
export interface ReadRecord {
  at: number;
  session: number;
  /** the value seen (null: no row or key) */
  seen: number | null;
  /** read-your-writes sessions: the session's last acknowledged value; null for unchecked reads */
  expectedMin: number | null;
  node: string | null;
}

/** Everything one scenario run recorded, on one clock (ms since the recorder was made). */
export interface Recording {
  acks: AckedWrite[];
  errors: ClientErrorRecord[];
  reads: ReadRecord[];
  /** connections re-established after one broke */
  reconnects: number;
}

/** Collects a run's observations; `now` is injectable for tests. */
export class Recorder {
  readonly acks: AckedWrite[] = [];
  readonly errors: ClientErrorRecord[] = [];
  readonly reads: ReadRecord[] = [];
  reconnects = 0;
  private readonly origin: number;

  constructor(private readonly clock: () => number = () => performance.now()) {
    this.origin = clock();
  }

  /** ms since the recorder was made */
  now(): number {
    return this.clock() - this.origin;
  }

  ack(write: Omit<AckedWrite, 'at'>): void {
    this.acks.push({ ...write, at: this.now() });
  }

  error(session: number, kind: ErrorKind, err: unknown): void {
    const { message, code } = describeError(err);
    this.errors.push({ at: this.now(), session, kind, message, code });
  }

  read(read: Omit<ReadRecord, 'at'>): void {
    this.reads.push({ ...read, at: this.now() });
  }

  reconnected(): void {
    this.reconnects++;
  }

  snapshot(): Recording {
    return {
      acks: [...this.acks],
      errors: [...this.errors],
      reads: [...this.reads],
      reconnects: this.reconnects,
    };
  }
}

/** Message and code of anything thrown: pg errors carry `code` (SQLSTATE), Redis replies a prefix. */
export function describeError(err: unknown): { message: string; code: string | null } {
  if (err instanceof Error) {
    const raw = (err as Error & { code?: unknown }).code;
    const prefix = /^([A-Z][A-Z_]+) /.exec(err.message)?.[1] ?? null;
    const code = typeof raw === 'string' ? raw : prefix;
    return { message: err.message, code };
  }
  return { message: String(err), code: null };
}

/**
 * Write unavailability: the longest gap between consecutive acknowledgements (of any
 * session) from the last one before the fault to the end of the load. The end of the load
 * closes the last gap, so writes that never resume count up to it.
 */
export function writeUnavailabilityMs(ackTimes: readonly number[], faultAt: number, loadEnd: number): number {
  const sorted = [...ackTimes].sort((a, b) => a - b);
  let prev = faultAt;
  for (const t of sorted) if (t <= faultAt) prev = t;
  let longest = 0;
  for (const t of sorted) {
    if (t <= faultAt || t > loadEnd) continue;
    longest = Math.max(longest, t - prev);
    prev = t;
  }
  return Math.max(longest, loadEnd - prev);
}

/** The longest gap between acknowledgements in [from, to]: the same figure without a fault, for scale. */
export function longestGapMs(ackTimes: readonly number[], from: number, to: number): number {
  const inside = ackTimes.filter((t) => t >= from && t <= to).sort((a, b) => a - b);
  let prev = from;
  let longest = 0;
  for (const t of inside) {
    longest = Math.max(longest, t - prev);
    prev = t;
  }
  return Math.max(longest, to - prev);
}

/** One session's longest wait, as {@link longestSessionStall} finds it. */
export interface SessionStall {
  ms: number;
  session: number;
  /** the session's last finished operation before the wait (or the fault) */
  from: number;
  /** what ended the wait: an ack, a read, an error (with its message), or the end of the load */
  endedBy: string;
}

/**
 * The longest any one session went without finishing an operation (an ack, a read or an
 * error), from its last one before the fault on; a session still waiting when the load
 * stopped counts up to the end of the load, one that finished later up to when it did. The
 * write unavailability hides a single stuck session while the others carry on; this does not.
 */
export function longestSessionStall(rec: Recording, faultAt: number, loadEnd: number): SessionStall | null {
  const bySession = new Map<number, { at: number; what: string }[]>();
  const add = (session: number, at: number, what: string): void => {
    const list = bySession.get(session);
    if (list) list.push({ at, what });
    else bySession.set(session, [{ at, what }]);
  };
  for (const a of rec.acks) add(a.session, a.at, 'ack');
  for (const r of rec.reads) add(r.session, r.at, 'read');
  for (const e of rec.errors) add(e.session, e.at, `${e.kind} error: ${e.message}`);
  let worst: SessionStall | null = null;
  const consider = (session: number, from: number, to: number, endedBy: string): void => {
    if (worst === null || to - from > worst.ms) worst = { ms: to - from, session, from, endedBy };
  };
  for (const [session, events] of bySession) {
    events.sort((a, b) => a.at - b.at);
    let prev: number | null = null;
    for (const e of events) {
      if (e.at > faultAt) consider(session, prev ?? faultAt, e.at, e.what);
      prev = e.at;
    }
    if (loadEnd > (prev ?? faultAt))
      consider(session, prev ?? faultAt, loadEnd, 'still waiting at the end of the load');
  }
  return worst;
}

/** {@link longestSessionStall} in ms (0 without any session). */
export function longestSessionStallMs(rec: Recording, faultAt: number, loadEnd: number): number {
  return longestSessionStall(rec, faultAt, loadEnd)?.ms ?? 0;
}

/**
 * ms from the fault to the first acknowledgement of a write sent after it, or null when no
 * write sent after the fault was acknowledged.
 */
export function writesResumeMs(acks: readonly AckedWrite[], faultAt: number): number | null {
  let first: number | null = null;
  for (const a of acks) if (a.sentAt >= faultAt && (first === null || a.at < first)) first = a.at;
  return first === null ? null : first - faultAt;
}

/**
 * Acknowledged writes absent from the final state: a key missing, or holding a value lower
 * than one acknowledged for it (values only grow, so a lower value means acknowledged
 * updates were lost).
 */
export function lostWrites(acks: readonly AckedWrite[], final: ReadonlyMap<string, number>): AckedWrite[] {
  return acks.filter((a) => {
    const v = final.get(a.key);
    return v === undefined || v < a.value;
  });
}

/** Read-your-writes violations: checked reads that saw less than the session's last acknowledged write. */
export function staleReads(reads: readonly ReadRecord[]): ReadRecord[] {
  return reads.filter((r) => r.expectedMin !== null && (r.seen === null || r.seen < r.expectedMin));
}

/**
 * Writes acknowledged by two primaries: acknowledgements from a node after the first
 * acknowledgement from a node that began acknowledging later (the old primary still taking
 * writes once the new one does). Acks without a node are ignored.
 */
export function doublePrimaryAcks(acks: readonly AckedWrite[]): AckedWrite[] {
  // For each node, the first ack of the next node to start acknowledging.
  const order = firstAcks(acks);
  const supersededAt = new Map<string, number>();
  order.forEach(([node], i) => {
    const next = order[i + 1];
    if (next !== undefined) supersededAt.set(node, next[1]);
  });
  return acks.filter((a) => {
    if (a.node === null) return false;
    const until = supersededAt.get(a.node);
    return until !== undefined && a.at > until;
  });
}

/** One distinct error message: digits folded so "id 17" and "id 18" count as one. */
export interface DistinctError {
  kind: ErrorKind;
  code: string | null;
  message: string;
  count: number;
}

/** Groups errors by kind, code and message with every run of digits replaced by `N`. */
export function distinctErrors(errors: readonly ClientErrorRecord[]): DistinctError[] {
  const groups = new Map<string, DistinctError>();
  for (const e of errors) {
    const message = e.message.replace(/\d+/g, 'N');
    const key = `${e.kind}\0${e.code ?? ''}\0${message}`;
    const g = groups.get(key);
    if (g) g.count++;
    else groups.set(key, { kind: e.kind, code: e.code, message, count: 1 });
  }
  return [...groups.values()].sort((a, b) => b.count - a.count);
}

/** When the load ran and when the fault hit, on the recorder's clock. */
export interface RunWindow {
  loadStart: number;
  faultAt: number;
  loadEnd: number;
}

/** The figures of one scenario run. */
export interface RunFigures {
  writeUnavailabilityMs: number;
  /** the same longest-gap figure over the warm-up, before the fault */
  baselineGapMs: number;
  writesResumeMs: number | null;
  /** the longest one session went without finishing an operation, from the fault on */
  longestSessionStallMs: number;
  /** that session, when its wait began (ms from the fault) and what ended it */
  longestSessionStall: SessionStall | null;
  writesAcked: number;
  writesAckedAfterFault: number;
  /** failed operations plus failed connection attempts */
  clientErrors: number;
  distinctErrors: DistinctError[];
  /** the first errors, as recorded (time, session, kind), for diagnosis */
  errorSample: ClientErrorRecord[];
  reconnects: number;
  /** null when the final state could not be read (no primary at the end) */
  ackedWritesLost: number | null;
  lostSample: AckedWrite[];
  checkedReads: number;
  staleReads: number;
  staleSample: ReadRecord[];
  /** fraction of checked reads answered by a node other than the primary of the moment (the last to begin acknowledging writes) */
  checkedReadsOnReplicas: number | null;
  /** checked reads per answering node */
  checkedReadsByNode: Record<string, number>;
  doublePrimaryAcks: number;
  doubleSample: AckedWrite[];
  /** nodes that acknowledged writes, in the order they began to */
  writeNodes: string[];
}

const SAMPLE = 5;

/** Computes every figure of a run; `final` is the data read back from the surviving primary. */
export function analyze(
  rec: Recording,
  window: RunWindow,
  final: ReadonlyMap<string, number> | null,
): RunFigures {
  const ackTimes = rec.acks.map((a) => a.at);
  const stall = longestSessionStall(rec, window.faultAt, window.loadEnd);
  const lost = final === null ? null : lostWrites(rec.acks, final);
  const stale = staleReads(rec.reads);
  const doubles = doublePrimaryAcks(rec.acks);
  const starts = firstAcks(rec.acks);
  const writeNodes = starts.map(([node]) => node);
  const checked = rec.reads.filter((r) => r.expectedMin !== null);
  const withNode = checked.filter((r) => r.node !== null);
  return {
    writeUnavailabilityMs: round(writeUnavailabilityMs(ackTimes, window.faultAt, window.loadEnd)),
    baselineGapMs: round(longestGapMs(ackTimes, window.loadStart, window.faultAt)),
    writesResumeMs: nullableRound(writesResumeMs(rec.acks, window.faultAt)),
    longestSessionStallMs: round(stall?.ms ?? 0),
    longestSessionStall:
      stall === null ? null : { ...stall, ms: round(stall.ms), from: round(stall.from - window.faultAt) },
    writesAcked: rec.acks.length,
    writesAckedAfterFault: rec.acks.filter((a) => a.at > window.faultAt).length,
    clientErrors: rec.errors.length,
    distinctErrors: distinctErrors(rec.errors),
    errorSample: rec.errors.slice(0, 4 * SAMPLE),
    reconnects: rec.reconnects,
    ackedWritesLost: lost === null ? null : lost.length,
    lostSample: (lost ?? []).slice(0, SAMPLE),
    checkedReads: checked.length,
    staleReads: stale.length,
    staleSample: stale.slice(0, SAMPLE),
    checkedReadsOnReplicas:
      withNode.length === 0 || starts.length === 0
        ? null
        : round(withNode.filter((r) => r.node !== primaryAt(starts, r.at)).length / withNode.length, 3),
    checkedReadsByNode: countBy(withNode, (r) => r.node!),
    doublePrimaryAcks: doubles.length,
    doubleSample: doubles.slice(0, SAMPLE),
    writeNodes,
  };
}

function countBy<T>(items: readonly T[], key: (item: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const item of items) out[key(item)] = (out[key(item)] ?? 0) + 1;
  return out;
}

/** Each node that acknowledged writes with the time of its first acknowledgement, earliest first. */
function firstAcks(acks: readonly AckedWrite[]): [string, number][] {
  const first = new Map<string, number>();
  for (const a of acks) {
    if (a.node === null) continue;
    const seen = first.get(a.node);
    if (seen === undefined || a.at < seen) first.set(a.node, a.at);
  }
  return [...first.entries()].sort((x, y) => x[1] - y[1]);
}

/** The node taking writes at `t`: the last one to have begun acknowledging by then. */
function primaryAt(starts: readonly [string, number][], t: number): string | undefined {
  let node = starts[0]?.[0];
  for (const [n, at] of starts) if (at <= t) node = n;
  return node;
}

function round(n: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

function nullableRound(n: number | null): number | null {
  return n === null ? null : round(n);
}
