/** `rwsplit switchover`: asks a running instance (POST /api/switchover) and prints what happened. */
import type { PromotionReport } from '../pg/ha/promotion.js';

export interface SwitchoverCliOptions {
  http: string;
  token?: string;
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
  const token = opts.token ?? process.env.RWSPLIT_ADMIN_TOKEN;
  if (!token)
    throw new Error(
      'switchover needs the admin token: pass --token T or set RWSPLIT_ADMIN_TOKEN (admin.token)',
    );
  const url = new URL('/api/switchover', opts.http);
  const body: Record<string, string> = {};
  if (opts.shard) body.shard = opts.shard;
  if (opts.to) body.to = opts.to;
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (err) {
    throw new Error(
      `cannot reach rwsplit's admin server at ${opts.http} (${(err as Error).message}); is it running? pass --http URL`,
    );
  }
  const text = await res.text();
  if (!res.ok) {
    let message = text;
    try {
      const e = JSON.parse(text) as { error?: string; message?: string };
      message = `${e.error ?? res.status}: ${e.message ?? text}`;
    } catch {
      // not JSON: print it as it came
    }
    throw new Error(`switchover refused (HTTP ${res.status}) ${message}`);
  }
  console.log(formatSwitchover(JSON.parse(text) as PromotionReport));
}
