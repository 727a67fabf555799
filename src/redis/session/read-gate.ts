/**
 * Whether rwsplit reads a Redis client's commands now. Several reasons may stop it at once
 * (replies waiting to reach the client, too many commands in flight, commands queued behind a
 * waiting one); reading goes on only when none is left. Pausing stops both the socket and the
 * command reader, so a chunk already read stops at the command that crossed the line.
 */
export type StopReason = 'output' | 'in-flight' | 'queued';

export class ReadGate {
  private readonly reasons = new Set<StopReason>();

  constructor(
    private readonly pause: () => void,
    private readonly resume: () => void,
  ) {}

  get stopped(): boolean {
    return this.reasons.size > 0;
  }

  has(reason: StopReason): boolean {
    return this.reasons.has(reason);
  }

  stop(reason: StopReason): void {
    if (this.reasons.has(reason)) return;
    this.reasons.add(reason);
    if (this.reasons.size === 1) this.pause();
  }

  go(reason: StopReason): void {
    if (!this.reasons.delete(reason) || this.reasons.size > 0) return;
    // Not from inside the caller's stack: resuming delivers buffered commands synchronously.
    process.nextTick(() => {
      if (this.reasons.size === 0) this.resume();
    });
  }
}
