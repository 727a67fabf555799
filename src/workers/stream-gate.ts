/**
 * Change streams with several workers: the controller runs the streams (one process reads a
 * replication slot), the workers serve the Redis reads of the keys they feed. This is the
 * worker's StreamReadGate: it knows the streams' key templates from the config, counts the
 * reads (reported with the worker's figures, added to the stream's read rate by the
 * controller), and makes a read with a PostgreSQL causal token wait until the controller's
 * stream has applied that position. The positions the controller sends with its state answer
 * most reads at once; a read past them asks the controller, which waits as in one process
 * (`ChangeStream.waitApplied`, `redis.causalWaitMs`) and answers applied or why not.
 */
import type { CausalToken } from '../core/causal.js';
import type { StreamConfig } from '../config/schema.js';
import { KeyTemplate } from '../stream/key-template.js';
import type { StreamReadGate } from '../stream/stream-reads.js';

interface GateStream {
  name: string;
  shard: string;
  template: KeyTemplate;
  /** the controller's applied position as last heard (only ever raised) */
  applied: bigint | null;
  /** reads since the last report */
  reads: number;
}

export class WorkerStreamGate implements StreamReadGate {
  private readonly streams: GateStream[];
  private seq = 0;
  private readonly waiting = new Map<number, { resolve: () => void; reject: (err: Error) => void }>();

  constructor(
    list: readonly StreamConfig[],
    /** asks the controller to answer `seq` once stream `stream` applied `lsn` */
    private readonly ask: (seq: number, stream: string, lsn: bigint) => void,
  ) {
    this.streams = list.map((s) => ({
      name: s.name,
      shard: s.shard,
      template: new KeyTemplate(s.key),
      applied: null,
      reads: 0,
    }));
  }

  read(key: Buffer, pgToken: CausalToken | null): { wait: Promise<void> | null } | null {
    const text = key.toString('utf8');
    const s = this.streams.find((x) => x.template.matches(text));
    if (!s) return null;
    s.reads++;
    const lsn = pgToken?.get(s.shard);
    if (lsn === undefined) return { wait: null };
    // Covered by what the controller said (the raw token is past the page start the stream compares).
    if (s.applied !== null && s.applied >= lsn) return { wait: Promise.resolve() };
    const seq = ++this.seq;
    return {
      wait: new Promise<void>((resolve, reject) => {
        this.waiting.set(seq, { resolve, reject });
        this.ask(seq, s.name, lsn);
      }),
    };
  }

  /** The controller's answer to a wait. */
  answered(seq: number, error: string | null): void {
    const w = this.waiting.get(seq);
    if (!w) return;
    this.waiting.delete(seq);
    if (error === null) w.resolve();
    else w.reject(new Error(error));
  }

  /** The applied positions sent with the controller's state. */
  positions(applied: readonly [string, string][]): void {
    for (const [name, lsn] of applied) {
      const s = this.streams.find((x) => x.name === name);
      const v = BigInt(lsn);
      if (s && (s.applied === null || v > s.applied)) s.applied = v;
    }
  }

  /** Reads per stream since the previous call. */
  takeReads(): [string, number][] {
    return this.streams.map((s) => {
      const n = s.reads;
      s.reads = 0;
      return [s.name, n];
    });
  }
}
