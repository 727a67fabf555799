/**
 * A human-readable rendering of pino's JSON lines for a terminal:
 * `14:03:07 INFO  node pg1 down reason="connection refused" node=pg1`.
 * Used as a pino destination, so the loggers themselves stay the JSON ones.
 */

const LEVELS: Record<number, string> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
};
const COLORS: Record<number, string> = { 10: '90', 20: '36', 30: '32', 40: '33', 50: '31', 60: '35' };
/** Fields every line has, shown in their own places or not at all. */
const SKIP = new Set(['level', 'time', 'msg', 'app', 'pid', 'hostname']);

/** A value as `key=value` shows it: bare when it needs no quoting, JSON-quoted otherwise. */
function show(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v) ?? String(v);
}

/** Flattens nested objects into dotted keys (`postgres.port=6432`); arrays stay JSON. */
function fields(obj: Record<string, unknown>, prefix = ''): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(obj)) {
    if (!prefix && SKIP.has(k)) continue;
    const key = prefix ? `${prefix}.${k}` : k;
    if (key === 'err' || key === 'stack') continue;
    if (typeof v === 'object' && v !== null && !Array.isArray(v))
      out.push(...fields(v as Record<string, unknown>, key));
    else out.push(`${key}=${show(v)}`);
  }
  return out;
}

/** Formats one pino JSON line; a line that is not JSON is returned as it is. */
export function formatLogLine(line: string, color = false): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.endsWith('\n') ? line : `${line}\n`;
  }
  const level = typeof rec.level === 'number' ? rec.level : 30;
  const d = new Date(typeof rec.time === 'number' ? rec.time : Date.now());
  const two = (n: number): string => String(n).padStart(2, '0');
  const time = `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
  let label = (LEVELS[level] ?? String(level)).padEnd(5);
  if (color) label = `\x1b[${COLORS[level] ?? '0'}m${label}\x1b[0m`;
  const err = rec.err as { message?: string; stack?: string } | undefined;
  const parts = [time, label, typeof rec.msg === 'string' ? rec.msg : '', ...fields(rec)];
  if (err?.message) parts.push(`err=${show(err.message)}`);
  let out = parts.filter((p) => p !== '').join(' ');
  if (err?.stack && level >= 50) out += `\n${err.stack.replace(/^/gm, '    ')}`;
  return `${out}\n`;
}

/** A pino destination writing formatted lines to `out` (stderr by default). */
export function prettyDestination(
  out: { write(s: string): unknown } = process.stderr,
  color = false,
): { write(line: string): void } {
  return {
    write(chunk: string): void {
      for (const line of chunk.split('\n')) if (line) out.write(formatLogLine(line, color));
    },
  };
}
