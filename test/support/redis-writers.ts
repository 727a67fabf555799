/**
 * A write load for the Redis failover tests: N ioredis connections through rwsplit, each
 * writing unique keys in a loop (`SET <prefix>:<writer>:<n> <n>`), recording every write the
 * client saw acknowledged and every error, with times.
 */
import { Redis } from 'ioredis';

export interface AckedWrite {
  key: string;
  value: string;
  /** when the command was sent and when its OK arrived */
  sentAt: number;
  at: number;
}

export class RedisWriters {
  readonly clients: Redis[];
  readonly acked: AckedWrite[] = [];
  readonly errors: { at: number; message: string }[] = [];
  private running = false;
  private loops: Promise<void>[] = [];

  constructor(
    port: number,
    count: number,
    private readonly prefix: string,
  ) {
    this.clients = Array.from(
      { length: count },
      () => new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1, retryStrategy: () => null }),
    );
  }

  start(): void {
    this.running = true;
    this.loops = this.clients.map((c, i) => this.loop(c, i));
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  close(): void {
    for (const c of this.clients) c.disconnect();
  }

  /** The first acknowledged write sent after `t`, if any. */
  firstAckSentAfter(t: number): AckedWrite | undefined {
    return this.acked.filter((w) => w.sentAt > t).sort((a, b) => a.at - b.at)[0];
  }

  /** Writers with at least one acknowledged write sent after `t`. */
  writersAckedAfter(t: number): number {
    const ids = new Set(this.acked.filter((w) => w.sentAt > t).map((w) => w.key.split(':')[1]));
    return ids.size;
  }

  private async loop(c: Redis, writer: number): Promise<void> {
    for (let n = 0; this.running; n++) {
      const key = `${this.prefix}:${writer}:${n}`;
      const sentAt = performance.now();
      try {
        const r = await c.set(key, String(n));
        if (r === 'OK') this.acked.push({ key, value: String(n), sentAt, at: performance.now() });
      } catch (err) {
        this.errors.push({ at: performance.now(), message: (err as Error).message });
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }
}
