/**
 * The client frames a session has queued and not yet sent, each with what the session read
 * from it when it arrived: a Query's classification, a Parse's decoded message and its
 * classification. A frame is decoded and classified once, on arrival; routing, translation,
 * recovery and the shard and signal helpers read that note instead of decoding again. The
 * batch's route decision is kept until the batch changes.
 */
import type { Classifier } from '../classifier/classify.js';
import { noteFrame, type FrameNote } from './frame-note.js';
import { FrontendCode } from '../protocol/index.js';
import { decideRoute, type RouteDecision } from '../routing/route-decision.js';
import type { ClientStatements } from './statement-registry.js';

/** Frames taken off a batch, with their notes (a retry runs them again). */
export interface TakenFrames {
  readonly frames: Buffer[];
  readonly notes: FrameNote[];
}

export class ClientBatch {
  /** the queued frames, oldest first */
  frames: Buffer[] = [];
  /** notes[i] is what frames[i] says */
  notes: FrameNote[] = [];
  /** total size of the queued frames */
  bytes = 0;
  private decision: RouteDecision | null = null;
  private decidedWithDeferredBegin = false;
  /**
   * The last Parse frame queued and its note. Drivers send the same Parse (the unnamed
   * statement, re-Parsed for every parameterised query) again and again: the same bytes say
   * the same thing, so a repeat is compared, not decoded and classified again. Frames are
   * never mutated once received (frame-reader.ts), so keeping the view is safe.
   */
  private lastParse: Buffer | null = null;
  private lastParseNote: FrameNote = null;

  constructor(private readonly classifier: Classifier) {}

  get length(): number {
    return this.frames.length;
  }

  /** The first queued frame (the batch must not be empty). */
  get first(): Buffer {
    return this.frames[0]!;
  }

  /** The first queued frame's note. */
  get firstNote(): FrameNote {
    return this.notes[0] ?? null;
  }

  /** Queues a frame; a malformed Query, Parse or Bind throws here (a protocol violation), before it is queued. */
  push(frame: Buffer): void {
    const note = frame[0] === FrontendCode.Parse ? this.noteParse(frame) : noteFrame(this.classifier, frame);
    this.frames.push(frame);
    this.notes.push(note);
    this.bytes += frame.length;
    this.decision = null;
  }

  private noteParse(frame: Buffer): FrameNote {
    const last = this.lastParse;
    if (last !== null && last.length === frame.length && last.equals(frame)) return this.lastParseNote;
    const note = noteFrame(this.classifier, frame);
    this.lastParse = frame;
    this.lastParseNote = note;
    return note;
  }

  /** Takes the first frame off (the proxy answers it itself). */
  shift(): Buffer {
    const frame = this.frames.shift()!;
    this.notes.shift();
    this.bytes -= frame.length;
    this.decision = null;
    return frame;
  }

  /** Replaces the first frame by a rewritten one (read anew). */
  replaceFirst(frame: Buffer): void {
    this.bytes += frame.length - this.frames[0]!.length;
    this.frames[0] = frame;
    this.notes[0] = noteFrame(this.classifier, frame);
    this.decision = null;
  }

  /** Takes the first `count` frames off (all of them when count ≥ length). */
  take(count = this.frames.length): TakenFrames {
    const frames = this.frames;
    const notes = this.notes;
    this.decision = null;
    if (count >= frames.length) {
      this.frames = [];
      this.notes = [];
      this.bytes = 0;
      return { frames, notes };
    }
    this.frames = frames.slice(count);
    this.notes = notes.slice(count);
    this.bytes = sizeOf(this.frames);
    return { frames: frames.slice(0, count), notes: notes.slice(0, count) };
  }

  /** The first `count` frames, left queued (all of them when count ≥ length). */
  peek(count: number): TakenFrames {
    // The arrays themselves, not this batch: take() detaches them, so they keep these frames.
    if (count >= this.frames.length) return { frames: this.frames, notes: this.notes };
    return { frames: this.frames.slice(0, count), notes: this.notes.slice(0, count) };
  }

  /** Drops every queued frame. */
  clear(): void {
    this.take();
  }

  /** Puts frames taken earlier back in front of what queued since (a read retried elsewhere). */
  prepend(taken: TakenFrames): void {
    this.frames = taken.frames.concat(this.frames);
    this.notes = taken.notes.concat(this.notes);
    this.bytes = sizeOf(this.frames);
    this.decision = null;
  }

  /**
   * Where the queued batch must run (route-decision.ts), computed once per state of the batch:
   * the statements a Bind names are registered only when a batch is sent, which changes the batch.
   */
  route(statements: ClientStatements, deferredBegin: boolean): RouteDecision {
    if (this.decision === null || this.decidedWithDeferredBegin !== deferredBegin) {
      this.decision = decideRoute(this.frames, this.notes, statements, deferredBegin);
      this.decidedWithDeferredBegin = deferredBegin;
    }
    return this.decision;
  }
}

function sizeOf(frames: readonly Buffer[]): number {
  let n = 0;
  for (const f of frames) n += f.length;
  return n;
}
