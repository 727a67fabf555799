/** `rwsplit switchover`: asks a running instance (POST /api/switchover) and prints what happened. */
import type { PromotionReport } from '../pg/ha/promotion.js';
import { postAdminAction, type AdminTarget } from './admin-action.js';

export interface SwitchoverCliOptions extends AdminTarget {
  to?: string;
  shard?: string;
}

/** A switchover takes at most bufferMs + promoteTimeoutMs or so; leave room. */
const REQUEST_TIMEOUT_MS = 60_000;

/** Formats the controller's report as a few lines for a terminal. */
export function formatSwitchover(r: PromotionReport): string {
  const lines = [
    `switchover of shard ${r.shard}: ${r.from} -> ${r.to} in ${r.elapsedMs} ms`,
    `re-pointed replicas: ${r.repointed.join(', ') || 'none'}`,
  ];
  if (r.syncStandbyNames) lines.push(`synchronous_standby_names on ${r.to}: ${r.syncStandbyNames}`);
  for (const w of r.warnings) lines.push(`note: ${w}`);
  return lines.join('\n');
}

/**
 * Sends the request and prints the report.
 * @throws Error with the server's message (the CLI exits 1) when refused or unreachable
 */
export async function runSwitchoverCommand(opts: SwitchoverCliOptions): Promise<void> {
  const body: Record<string, string> = {};
  if (opts.shard) body.shard = opts.shard;
  if (opts.to) body.to = opts.to;
  const report = await postAdminAction<PromotionReport>(
    opts,
    'switchover',
    '/api/switchover',
    body,
    REQUEST_TIMEOUT_MS,
  );
  console.log(formatSwitchover(report));
}
