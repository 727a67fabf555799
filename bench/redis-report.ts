/**
 * The Redis benchmark's results: every redis-benchmark run, the per-cell medians over the
 * rounds with their ratio to the direct connection, the Markdown file committed to the repo
 * and the table printed to the terminal.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import type { BaseMachineInfo } from './machine.js';
import { renderMarkdownTable, renderTextTable } from './report.js';

export type RedisContender = 'direct' | 'forwarder' | 'rwsplit' | 'rwsplit-2w' | 'twemproxy';
/** `P1`: one request at a time per connection (redis-benchmark's default); `P16`: `-P 16`. */
export type PipelineMode = 'P1' | 'P16';
export type RedisBenchCommand = 'SET' | 'GET';

/** One redis-benchmark run: one contender, one mode, one command, one round. */
export interface RedisRunResult {
  round: number;
  mode: PipelineMode;
  command: RedisBenchCommand;
  contender: RedisContender;
  args: string[];
  exitCode: number | null;
  timedOut: boolean;
  rps: number | null;
  avgLatencyMs: number | null;
  p99LatencyMs: number | null;
  /** User + system CPU of the proxy process per request; null for direct. */
  proxyCpuUsPerRequest: number | null;
  /**
   * The run's command as counted by each node (INFO commandstats, reset before the run): where
   * the contender sent it. Replicas also count the SETs replicated to them.
   */
  callsByNode: Record<string, number>;
  /** What redis-benchmark printed besides its CSV (errors, warnings). */
  messages: string[];
}

/** One contender × mode × command: medians over the rounds that succeeded. */
export interface RedisCell {
  mode: PipelineMode;
  command: RedisBenchCommand;
  contender: RedisContender;
  rps: number | null;
  /** Every round's rps (null: that run failed). */
  rpsByRound: (number | null)[];
  ratioToDirect: number | null;
  /** median rps over the bare Node.js forwarder's in the same mode and command (null without one) */
  ratioToForwarder?: number | null;
  avgLatencyMs: number | null;
  p99LatencyMs: number | null;
  proxyCpuUsPerRequest: number | null;
  /** Runs that exited non-zero or timed out. */
  failedRuns: number;
}

/** The machine plus the versions of what the Redis benchmark runs. */
export interface RedisMachineInfo extends BaseMachineInfo {
  redisServer: string;
  redisBenchmark: string;
  nutcracker: string;
}

/** Everything written to redis-bench.json. */
export interface RedisBenchReport {
  date: string;
  machine: RedisMachineInfo;
  cluster: { shards: number; replicas: number };
  redisBenchmark: {
    /** Arguments of every run besides `-t <command>`, `-P` and `--csv`. */
    common: string[];
    modes: Record<PipelineMode, string[]>;
    requests: number;
    rounds: number;
    warmupRequests: number;
  };
  contenders: Record<RedisContender, string>;
  cells: RedisCell[];
  runs: RedisRunResult[];
}

export const REDIS_CONTENDER_LABEL: Record<RedisContender, string> = {
  direct: 'direct to primary',
  forwarder: 'bare Node.js forwarder (primary only)',
  rwsplit: 'rwsplit (reads on replicas)',
  'rwsplit-2w': 'rwsplit, workers: 2 (reads on replicas)',
  twemproxy: 'twemproxy (one server)',
};

const MODE_LABEL: Record<PipelineMode, string> = { P1: 'no pipeline', P16: '-P 16' };

/** The median of the non-null values; null when there are none. */
export function median(values: (number | null)[]): number | null {
  const xs = values.filter((v): v is number => v !== null).sort((a, b) => a - b);
  if (xs.length === 0) return null;
  const mid = Math.floor(xs.length / 2);
  return xs.length % 2 === 1 ? (xs[mid] as number) : ((xs[mid - 1] as number) + (xs[mid] as number)) / 2;
}

function failed(r: RedisRunResult): boolean {
  return r.exitCode !== 0 || r.timedOut;
}

/**
 * Groups runs into cells (in the order they first appear), with medians over the rounds whose
 * run succeeded and the ratio of the median rps to direct's in the same mode and command.
 */
export function summarize(runs: RedisRunResult[]): RedisCell[] {
  const cells = new Map<string, RedisRunResult[]>();
  for (const r of runs) {
    const key = `${r.mode}/${r.command}/${r.contender}`;
    cells.set(key, [...(cells.get(key) ?? []), r]);
  }
  const out: RedisCell[] = [...cells.values()].map((group) => {
    const ok = group.filter((r) => !failed(r));
    const first = group[0] as RedisRunResult;
    return {
      mode: first.mode,
      command: first.command,
      contender: first.contender,
      rps: median(ok.map((r) => r.rps)),
      rpsByRound: group.map((r) => (failed(r) ? null : r.rps)),
      ratioToDirect: null,
      avgLatencyMs: median(ok.map((r) => r.avgLatencyMs)),
      p99LatencyMs: median(ok.map((r) => r.p99LatencyMs)),
      proxyCpuUsPerRequest: median(ok.map((r) => r.proxyCpuUsPerRequest)),
      failedRuns: group.length - ok.length,
    };
  });
  const ratio = (c: RedisCell, to: RedisContender): number | null => {
    const base = out.find((d) => d.contender === to && d.mode === c.mode && d.command === c.command);
    return c.rps !== null && base?.rps != null && base.rps > 0 ? c.rps / base.rps : null;
  };
  const withForwarder = out.some((c) => c.contender === 'forwarder');
  for (const c of out) {
    c.ratioToDirect = ratio(c, 'direct');
    if (withForwarder) c.ratioToForwarder = ratio(c, 'forwarder');
  }
  return out;
}

const fmt = {
  rps: (v: number | null): string => (v === null ? '—' : Math.round(v).toLocaleString('en-US')),
  ratio: (v: number | null): string => (v === null ? '—' : v.toFixed(2)),
  cpu: (v: number | null): string => (v === null ? '—' : v.toFixed(2)),
  ms: (v: number | null): string => (v === null ? '—' : v.toFixed(3)),
};

const HEADERS = [
  'mode',
  'command',
  'contender',
  'rps (median)',
  'ratio to direct',
  'ratio to forwarder',
  'avg latency ms',
  'p99 ms',
  'proxy CPU µs/req',
  'failed runs',
];

function cells(c: RedisCell): string[] {
  return [
    MODE_LABEL[c.mode],
    c.command,
    REDIS_CONTENDER_LABEL[c.contender],
    fmt.rps(c.rps),
    fmt.ratio(c.ratioToDirect),
    fmt.ratio(c.ratioToForwarder ?? null),
    fmt.ms(c.avgLatencyMs),
    fmt.ms(c.p99LatencyMs),
    fmt.cpu(c.proxyCpuUsPerRequest),
    String(c.failedRuns),
  ];
}

/** A plain-text table for the terminal. */
export function renderRedisConsoleTable(cellsIn: RedisCell[]): string {
  return renderTextTable(HEADERS, cellsIn.map(cells), 3);
}

function errorSection(runs: RedisRunResult[]): string {
  const failing = runs.filter(failed);
  const items = failing.map(
    (r) =>
      `- FAILED: round ${r.round} / ${MODE_LABEL[r.mode]} / ${r.command} / ${r.contender} ` +
      `(exit ${r.exitCode}${r.timedOut ? ', timed out' : ''}):\n` +
      r.messages.map((m) => `  - \`${m.replaceAll('`', "'")}\``).join('\n'),
  );
  // Messages of runs that succeeded (warnings), once per contender and text.
  const warnings = new Map<string, number>();
  for (const r of runs.filter((x) => !failed(x))) {
    for (const m of r.messages) {
      const key = `${r.contender}\u0000${m}`;
      warnings.set(key, (warnings.get(key) ?? 0) + 1);
    }
  }
  for (const [key, count] of warnings) {
    const [contender, message] = key.split('\u0000') as [RedisContender, string];
    items.push(`- ${contender}, ${count} successful run(s): \`${message.replaceAll('`', "'")}\``);
  }
  if (items.length === 0) return 'redis-benchmark printed nothing besides its results.\n';
  const note = [...warnings.keys()].some((k) => k.includes('Could not fetch server CONFIG'))
    ? '\n"Could not fetch server CONFIG": redis-benchmark asks for `CONFIG GET save` and ' +
      '`appendonly` only to describe the server; twemproxy does not proxy CONFIG. Harmless.\n'
    : '';
  return items.join('\n') + '\n' + note;
}

function routingSection(runs: RedisRunResult[]): string {
  const lastRound = Math.max(...runs.map((r) => r.round));
  const last = runs.filter((r) => r.round === lastRound);
  const nodes = [...new Set(last.flatMap((r) => Object.keys(r.callsByNode)))];
  const rows = last.map((r) => [
    MODE_LABEL[r.mode],
    r.command,
    REDIS_CONTENDER_LABEL[r.contender],
    ...nodes.map((n) => (r.callsByNode[n] ?? 0).toLocaleString('en-US')),
  ]);
  return renderMarkdownTable(['mode', 'command', 'contender', ...nodes], rows, 3) + '\n';
}

/** A warning when other work kept the cores busy before the run: then only CPU µs/req is steady. */
function busyWarning(m: BaseMachineInfo): string {
  const load = m.loadAverageAtStart[0] ?? 0;
  return load < m.nproc
    ? ''
    : ` **The box was busy** (1-minute load ${load} on ${m.nproc} cores): rps and ratios are noisy; ` +
        'proxy CPU µs/req is the steadier figure.';
}

/** The Markdown results file. */
export function renderRedisMarkdown(report: RedisBenchReport): string {
  const m = report.machine;
  const rb = report.redisBenchmark;
  const contenders = (Object.keys(report.contenders) as RedisContender[])
    .map((c) => `- **${REDIS_CONTENDER_LABEL[c]}**: ${report.contenders[c]}`)
    .join('\n');
  return `# Redis benchmark results

Written by \`npm run bench:redis\` (bench/redis-bench.ts) on ${report.date}; raw numbers, every
round included, in \`redis-bench.json\`. See bench/README.md for how to read this.

**Machine:** ${m.nproc} cores (${m.cpuModel}), ${m.memoryGiB} GiB, ${m.os}, ${m.kernel}; Node ${m.node}.
Client, proxies and all servers share these cores over loopback. Load average before the
run: ${m.loadAverageAtStart.join(' / ')} (1 / 5 / 15 min).${busyWarning(m)}

**Software:** ${m.redisServer}; ${m.redisBenchmark}; ${m.nutcracker}.

**Cluster:** ${report.cluster.shards} shard, a primary + ${report.cluster.replicas} replicas (\`replicaof\`), nothing persisted.

**Contenders:**

${contenders}

**Runs:** \`redis-benchmark -h 127.0.0.1 -p <port> ${rb.common.join(' ')} -t <set|get> --csv\`, plus
\`${rb.modes.P16.join(' ')}\` in the pipelined mode; ${rb.requests.toLocaleString('en-US')} requests each, SET then GET
(separate runs, so the proxy CPU of each command is its own), contenders alternated within each
mode × command, ${rb.rounds} round(s), medians shown. Each contender first warmed up with
${rb.warmupRequests.toLocaleString('en-US')} SETs and GETs.

${renderMarkdownTable(HEADERS, report.cells.map(cells), 3)}

"proxy CPU µs/req" is user + system time of the proxy process during a run divided by the
requests redis-benchmark completed. For reference, the anchor run on a quiet box of this kind
(\`-t get,set -n 200000 -c 50\`, no pipeline) had twemproxy
at 0.70 of direct for SET and 0.94 for GET.

## Where the requests went

The run's command as counted by each server (\`INFO commandstats\`, reset before each run), last
round. Replicas count the SETs replicated to them too.

${routingSection(report.runs)}
## Errors and warnings

${errorSection(report.runs)}`;
}

/** Writes redis-bench.json and redis-bench.md into `outDir` (created if missing). */
export function writeRedisReport(outDir: string, report: RedisBenchReport): { json: string; md: string } {
  mkdirSync(outDir, { recursive: true });
  const json = path.join(outDir, 'redis-bench.json');
  const md = path.join(outDir, 'redis-bench.md');
  writeFileSync(json, JSON.stringify(report, null, 2) + '\n');
  writeFileSync(md, renderRedisMarkdown(report));
  return { json, md };
}
