/**
 * Runs pgbench and reads its summary. Output format of pgbench 15 (doc/src/sgml/ref/pgbench.sgml):
 *
 *   number of transactions actually processed: 437000
 *   number of failed transactions: 0 (0.000%)
 *   latency average = 0.438 ms
 *   tps = 36451.812345 (without initial connection time)
 *
 * A client that hits an error other than a serialization/deadlock failure is aborted
 * ("client 3 script 0 aborted in command 1 query 0: ERROR: …"); the run then ends with
 * "Run was aborted; the above results are incomplete." and exit code 2.
 */
import { spawn } from 'node:child_process';

import { pgBinary } from '../src/cluster/pg-binaries.js';
import { pgChildEnv } from '../src/cluster/run-as.js';

/** What one pgbench run reported. */
export interface PgbenchSummary {
  exitCode: number | null;
  tps: number | null;
  transactions: number | null;
  failedTransactions: number | null;
  latencyAvgMs: number | null;
  /** Clients pgbench aborted on an error. */
  abortedClients: number;
  /** Distinct error lines pgbench printed (first few). */
  errors: string[];
}

const MAX_ERROR_LINES = 5;

function matchNumber(text: string, re: RegExp): number | null {
  const m = re.exec(text);
  return m?.[1] === undefined ? null : Number(m[1]);
}

/** Reads the summary out of pgbench's combined stdout + stderr. */
export function parsePgbenchOutput(output: string, exitCode: number | null): PgbenchSummary {
  const lines = output.split('\n');
  const errors: string[] = [];
  for (const line of lines) {
    if (!/error|fatal|aborted/i.test(line)) continue;
    // "client 3 script 0 aborted in command 1 query 0: ERROR: x" — group by the message.
    const normalized = line.replace(/client \d+/g, 'client N').trim();
    if (!errors.includes(normalized) && errors.length < MAX_ERROR_LINES) errors.push(normalized);
  }
  return {
    exitCode,
    tps: matchNumber(output, /^tps = ([\d.]+)/m),
    transactions: matchNumber(output, /^number of transactions actually processed: (\d+)/m),
    failedTransactions: matchNumber(output, /^number of failed transactions: (\d+)/m),
    latencyAvgMs: matchNumber(output, /^latency average = ([\d.]+) ms/m),
    abortedClients: lines.filter((l) => /client \d+ (script \d+ )?aborted/.test(l)).length,
    errors,
  };
}

/** Where pgbench connects. */
export interface PgbenchTarget {
  host: string;
  port: number;
}

function connArgs(target: PgbenchTarget): string[] {
  return ['-h', target.host, '-p', String(target.port), '-U', 'postgres'];
}

/**
 * Runs pgbench with `args` against `target` (database `postgres`) and resolves with its
 * summary and raw output. `signal` aborts the run (SIGINT to pgbench, which then reports).
 */
export function runPgbench(
  target: PgbenchTarget,
  args: string[],
  signal?: AbortSignal,
): Promise<{ summary: PgbenchSummary; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(pgBinary('pgbench'), [...connArgs(target), ...args, 'postgres'], {
      env: pgChildEnv({ uid: undefined, gid: undefined, home: undefined }),
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(signal !== undefined ? { signal, killSignal: 'SIGINT' as const } : {}),
    });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (output += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (output += c));
    child.once('error', (err) => {
      if (err.name !== 'AbortError') reject(err);
    });
    child.once('close', (code) => resolve({ summary: parsePgbenchOutput(output, code), output }));
  });
}

/** `pgbench -i -s <scale>` on the primary; throws with pgbench's output when it fails. */
export async function initPgbench(target: PgbenchTarget, scale: number): Promise<void> {
  const { summary, output } = await runPgbench(target, ['-i', '-q', '-s', String(scale)]);
  if (summary.exitCode !== 0) throw new Error(`pgbench -i failed (exit ${summary.exitCode}):\n${output}`);
}
