/**
 * A {@link DecisionStore} in memory: for unit tests of the coordinator, recovery and the
 * session. Not durable, not shared between processes: never for production.
 */
import type { Decision, DecisionStore } from './decision-log.js';

interface Row {
  decision: Decision;
  participants: readonly string[];
  decidedAt: number;
}

/** An in-memory decision log with the same first-writer-wins rule as the table. */
export class MemoryDecisionStore implements DecisionStore {
  readonly rows = new Map<string, Row>();

  constructor(private readonly now: () => number = Date.now) {}

  async ensureSchema(): Promise<void> {}

  async decide(gid: string, decision: Decision, participants: readonly string[]): Promise<Decision> {
    const held = this.rows.get(gid);
    if (held !== undefined) return held.decision;
    this.rows.set(gid, { decision, participants: [...participants], decidedAt: this.now() });
    return decision;
  }

  async lookup(gid: string): Promise<Decision | null> {
    return this.rows.get(gid)?.decision ?? null;
  }

  async listDecided(olderThan: { commitMs: number; abortMs: number }, limit: number): Promise<string[]> {
    const now = this.now();
    return [...this.rows]
      .filter(
        ([, r]) => now - r.decidedAt > (r.decision === 'commit' ? olderThan.commitMs : olderThan.abortMs),
      )
      .sort(([, a], [, b]) => a.decidedAt - b.decidedAt)
      .slice(0, limit)
      .map(([gid]) => gid);
  }

  async forget(gids: readonly string[]): Promise<void> {
    for (const gid of gids) this.rows.delete(gid);
  }
}
