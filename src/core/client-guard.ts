/**
 * What keeps one client from taking the whole instance down: the instance-wide budget of
 * bytes buffered for clients and backends (`limits.maxBufferedBytes`), and the record of the
 * clients rwsplit cut off (per-client output limits, the budget, login and idle timeouts),
 * which metrics and the event log read.
 *
 * The budget is sampled, not counted on every write: each session reports what it holds when
 * asked (its client socket's queue, the proxy's own queues for it, its backend sockets'
 * queues), every `intervalMs`. Per-client limits (Redis's client-output-buffer-limit, the
 * backpressure of both protocols) are the first line and act at once on the write path; the
 * budget is the last line for what they let through, summed over every client.
 */
import { EventEmitter } from 'node:events';

export type GuardedProtocol = 'postgres' | 'redis';

/** One client session as the budget sees it. */
export interface BudgetAccount {
  readonly protocol: GuardedProtocol;
  /** bytes buffered for this client now, on both sides of the proxy */
  bufferedBytes(): number;
  /** Closes the client, with an error in its protocol when one can still be sent. */
  cutOff(message: string): void;
}

/** Why a client was cut off (the `reason` label of `rwsplit_clients_killed_total`). */
export type KillReason = 'output-buffer-limit' | 'buffer-budget' | 'login-timeout' | 'idle-timeout';

export interface ClientKilled {
  protocol: GuardedProtocol;
  reason: KillReason;
  /** the client's class (Redis: normal, pubsub, monitor, blocked; PostgreSQL: session or login) */
  clientClass: string;
  detail: string;
}

const SAMPLE_MS = 100;

/** Emits `killed` (a ClientKilled) whenever a client is cut off. */
export class ClientGuard extends EventEmitter {
  /** bytes buffered over every session at the last sample */
  used = 0;
  /** the most `used` has been since start */
  peak = 0;
  /** clients cut off so far, by `protocol\0reason\0class` */
  readonly kills = new Map<string, number>();
  private readonly accounts = new Set<BudgetAccount>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    /** `limits.maxBufferedBytes`; 0: no budget (the use is still measured) */
    public maxBufferedBytes: number,
    private readonly intervalMs = SAMPLE_MS,
  ) {
    super();
  }

  /** Puts a session under the budget; the returned function takes it out. */
  add(account: BudgetAccount): () => void {
    this.accounts.add(account);
    if (!this.timer) {
      this.timer = setInterval(() => this.sample(), this.intervalMs);
      this.timer.unref();
    }
    return () => {
      this.accounts.delete(account);
      if (this.accounts.size === 0 && this.timer) {
        clearInterval(this.timer);
        this.timer = null;
      }
    };
  }

  /** Records a client cut off (metrics, event log). */
  killed(k: ClientKilled): void {
    const key = `${k.protocol}\0${k.reason}\0${k.clientClass}`;
    this.kills.set(key, (this.kills.get(key) ?? 0) + 1);
    this.emit('killed', k);
  }

  /** Sums every session's buffers; past the budget, cuts off the biggest holders first. */
  sample(): void {
    let total = 0;
    const sizes: [BudgetAccount, number][] = [];
    for (const a of this.accounts) {
      const n = a.bufferedBytes();
      total += n;
      if (n > 0) sizes.push([a, n]);
    }
    this.used = total;
    if (total > this.peak) this.peak = total;
    const max = this.maxBufferedBytes;
    if (max <= 0 || total <= max) return;
    sizes.sort((x, y) => y[1] - x[1]);
    for (const [account, n] of sizes) {
      if (total <= max) break;
      const message = `rwsplit's buffers for all clients are full (limits.maxBufferedBytes = ${max}); this connection held the most (${n} bytes)`;
      this.accounts.delete(account);
      account.cutOff(message);
      this.killed({
        protocol: account.protocol,
        reason: 'buffer-budget',
        clientClass: 'any',
        detail: `${n} bytes buffered of ${total}`,
      });
      total -= n;
    }
    this.used = total;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.accounts.clear();
  }
}
