/**
 * `POST /api/reload`: compares the running configuration with a freshly validated one and
 * applies the keys that can change without a restart. Everything else is reported as
 * needing a restart and left as it is running (docs/CONFIG.md, "Reloading").
 */
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { StalenessTracker } from '../core/staleness.js';
import type { ReloadPlan } from './actions.js';

/** The keys a reload applies live. */
export const LIVE_KEYS: readonly string[] = [
  'postgres.staleness.maxLagBytes',
  'postgres.staleness.maxLagMs',
  'postgres.staleness.breachesToLeave',
  'postgres.staleness.samplesToReturn',
  'postgres.staleness.returnRatio',
  'logging.level',
  'admin.token',
  'restart.drainTimeoutMs',
  'restart.startTimeoutMs',
];

/** What a reload acts on. */
export interface LiveTargets {
  /** null with a Redis-only config */
  staleness: StalenessTracker | null;
  log: Logger;
  setAdminToken(token: string | null): void;
}

/** Key paths (`a.b.c`) whose values differ; an array that differs is reported as a whole. */
export function changedKeys(a: unknown, b: unknown, prefix = ''): string[] {
  if (isPlainObject(a) && isPlainObject(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].flatMap((k) => changedKeys(a[k], b[k], prefix ? `${prefix}.${k}` : k));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [prefix || '(top level)'];
}

/**
 * Applies the live keys of `next` to the targets and returns the configuration now in
 * effect (the running one with those keys replaced) and what changed.
 */
export function applyReload(
  current: Config,
  next: Config,
  targets: LiveTargets,
): { config: Config; plan: ReloadPlan } {
  const changed = changedKeys(current, next);
  const plan: ReloadPlan = {
    applied: changed.filter((k) => LIVE_KEYS.includes(k)),
    needsRestart: changed.filter((k) => !LIVE_KEYS.includes(k)),
  };
  const config: Config = structuredClone(current);
  const s = next.postgres?.staleness;
  if (
    s &&
    config.postgres &&
    targets.staleness &&
    plan.applied.some((k) => k.startsWith('postgres.staleness.'))
  ) {
    // setBound restarts every replica's breach/return streak: only when the bound changed.
    targets.staleness.setBound({
      maxLagBytes: s.maxLagBytes,
      maxLagMs: s.maxLagMs,
      breachesToLeave: s.breachesToLeave,
      samplesToReturn: s.samplesToReturn,
      returnRatio: s.returnRatio,
    });
    config.postgres.staleness = { ...s, whenAllLagging: config.postgres.staleness.whenAllLagging };
  }
  if (plan.applied.includes('logging.level')) {
    // RWSPLIT_LOG_LEVEL overrides the file at start; it keeps doing so after a reload.
    targets.log.level = process.env.RWSPLIT_LOG_LEVEL ?? next.logging.level;
    config.logging.level = next.logging.level;
  }
  if (plan.applied.includes('admin.token')) {
    targets.setAdminToken(next.admin.token ?? null);
    config.admin.token = next.admin.token;
  }
  // Read when a restart begins: nothing to apply.
  if (plan.applied.some((k) => k.startsWith('restart.'))) config.restart = { ...next.restart };
  return { config, plan };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
