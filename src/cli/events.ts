/** `rwsplit events`: fetches /api/events from a running instance and prints a table. */
import { fetchAdminJson } from './admin-client.js';
import { InvalidArgumentError } from 'commander';
import type { LogEvent } from '../admin/event-log.js';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Parses `--since`: epoch milliseconds (`1718000000000`) or a duration back from `now`
 * (`90s`, `5m`, `2h`, `1d`, `500ms`). Returns epoch milliseconds.
 */
export function sinceOption(value: string, now = Date.now()): number {
  if (/^\d+$/.test(value)) return Number(value);
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(value.trim());
  if (!m) throw new InvalidArgumentError('expected epoch milliseconds or a duration such as 90s, 5m, 2h');
  return Math.round(now - Number(m[1]) * UNIT_MS[m[2]!]!);
}

const two = (n: number): string => String(n).padStart(2, '0');

/** Local time as `YYYY-MM-DD HH:MM:SS.mmm`. */
export function formatTime(ms: number): string {
  const d = new Date(ms);
  const date = `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}`;
  const time = `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
  return `${date} ${time}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

/** The events as an aligned table, oldest first (the detail column is left unpadded). */
export function formatEventTable(events: readonly LogEvent[], time = formatTime): string {
  if (events.length === 0) return 'no events';
  const header = ['TIME', 'NODE', 'EVENT', 'DETAIL'];
  const rows = events.map((e) => [time(e.at), e.node ?? '-', e.type, e.detail]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows]
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export async function printEvents(base: string, since?: number): Promise<void> {
  const query: Record<string, string> = since === undefined ? {} : { since: String(since) };
  console.log(formatEventTable(await fetchAdminJson<LogEvent[]>(base, '/api/events', query)));
}
