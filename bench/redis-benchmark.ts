/**
 * Runs redis-benchmark and reads its `--csv` output. Format of redis-benchmark 7.0
 * (src/redis-benchmark.c, showLatencyReport): a header line, then one line per test, every
 * field quoted:
 *
 *   "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
 *   "SET","87413.00","0.301","0.080","0.287","0.431","0.599","2.055"
 *
 * Since 6.2 an error reply ends the run at once ("Error from server: …" on stderr, exit code 1)
 * rather than being counted as a request; a lost connection also exits 1. A proxy that stops
 * answering leaves redis-benchmark waiting forever, hence the timeout here.
 */
import { spawn } from 'node:child_process';

/** One test line of the CSV output. */
export interface RedisBenchmarkRow {
  /** Upper case, as printed: 'SET', 'GET'. */
  test: string;
  rps: number;
  avgLatencyMs: number | null;
  p50LatencyMs: number | null;
  p99LatencyMs: number | null;
}

/** What one redis-benchmark run reported. */
export interface RedisBenchmarkSummary {
  exitCode: number | null;
  /** Killed after the timeout: the contender stopped answering. */
  timedOut: boolean;
  rows: RedisBenchmarkRow[];
  /** Every non-CSV line it printed (errors, warnings), first few. */
  messages: string[];
}

const MAX_MESSAGES = 5;

function unquote(field: string): string {
  return field.trim().replace(/^"(.*)"$/, '$1');
}

function numberOrNull(text: string | undefined): number | null {
  if (text === undefined || text === '') return null;
  const n = Number(text);
  return Number.isFinite(n) ? n : null;
}

/** Reads the CSV rows and the other lines out of redis-benchmark's combined stdout + stderr. */
export function parseRedisBenchmarkCsv(output: string): { rows: RedisBenchmarkRow[]; messages: string[] } {
  const rows: RedisBenchmarkRow[] = [];
  const messages: string[] = [];
  let header: string[] | undefined;
  for (const raw of output.split(/\r?\n|\r/)) {
    const line = raw.trim();
    if (line === '') continue;
    const fields = line.startsWith('"') ? line.split(',').map(unquote) : undefined;
    if (fields?.[0] === 'test') {
      header = fields;
      continue;
    }
    const rps =
      fields === undefined || header === undefined ? null : numberOrNull(fields[header.indexOf('rps')]);
    if (fields === undefined || header === undefined || rps === null) {
      if (messages.length < MAX_MESSAGES && !messages.includes(line)) messages.push(line);
      continue;
    }
    const col = (name: string): number | null => numberOrNull(fields[(header ?? []).indexOf(name)]);
    rows.push({
      test: fields[0] ?? '?',
      rps,
      avgLatencyMs: col('avg_latency_ms'),
      p50LatencyMs: col('p50_latency_ms'),
      p99LatencyMs: col('p99_latency_ms'),
    });
  }
  return { rows, messages };
}

/**
 * Runs `redis-benchmark -h 127.0.0.1 -p <port> <args> --csv`, killing it after `timeoutMs`
 * (and when `signal` aborts).
 */
export function runRedisBenchmark(
  port: number,
  args: string[],
  timeoutMs: number,
  signal: AbortSignal,
): Promise<RedisBenchmarkSummary> {
  return new Promise((resolve, reject) => {
    const child = spawn('redis-benchmark', ['-h', '127.0.0.1', '-p', String(port), ...args, '--csv'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    const keep = (chunk: Buffer): void => {
      output += chunk.toString('utf8');
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    const onAbort = (): void => {
      child.kill('SIGKILL');
    };
    signal.addEventListener('abort', onAbort, { once: true });
    child.once('error', (err) => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      reject(new Error(`cannot run redis-benchmark: ${err.message}`, { cause: err }));
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      const parsed = parseRedisBenchmarkCsv(output);
      if (timedOut) parsed.messages.unshift(`no result within ${Math.round(timeoutMs / 1000)} s: killed`);
      resolve({ exitCode: code, timedOut, ...parsed });
    });
  });
}
