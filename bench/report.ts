/**
 * The benchmark's results: the raw JSON, the Markdown table committed to the repo and the
 * table printed to the terminal. Every figure is also shown as a ratio to the direct
 * connection in the same workload and protocol mode, measured minutes apart on the same box.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import type { MachineInfo } from './machine.js';

export type Contender =
  'direct' | 'forwarder' | 'rwsplit' | 'rwsplit-native' | 'rwsplit-js' | 'pgbouncer' | 'pgpool';
export type Workload = 'select-only' | 'tpcb-like';
export type ProtocolMode = 'simple' | 'extended' | 'prepared';

/** One pgbench run of one contender. */
export interface RunResult {
  workload: Workload;
  mode: ProtocolMode;
  contender: Contender;
  pgbenchArgs: string[];
  exitCode: number | null;
  tps: number | null;
  transactions: number | null;
  failedTransactions: number | null;
  abortedClients: number;
  latencyAvgMs: number | null;
  /** User + system CPU of the proxy's processes per processed transaction; null for direct. */
  proxyCpuUsPerTx: number | null;
  ratioToDirect: number | null;
  /** TPS over the bare Node.js forwarder's in the same workload and mode (null without one). */
  ratioToForwarder?: number | null;
  errors: string[];
}

/** Everything written to pg-bench.json. */
export interface BenchReport {
  date: string;
  durationSeconds: number;
  machine: MachineInfo;
  cluster: { replicas: number; scale: number; settings: Record<string, string> };
  pgbench: { common: string[]; workloads: Record<Workload, string[]>; warmupSeconds: number };
  peers: Record<string, string>;
  results: RunResult[];
}

const CONTENDER_LABEL: Record<Contender, string> = {
  direct: 'direct to primary',
  forwarder: 'bare Node.js forwarder (primary only)',
  rwsplit: 'rwsplit',
  'rwsplit-native': 'rwsplit (native)',
  'rwsplit-js': 'rwsplit (js)',
  pgbouncer: 'PgBouncer (session, primary only)',
  pgpool: 'Pgpool-II (SR mode, reads on replicas)',
};

/** Fills in each result's ratio to the direct run (and the forwarder's) of the same workload and mode. */
export function addRatios(results: RunResult[]): void {
  const ratio = (r: RunResult, to: Contender): number | null => {
    const base = results.find((d) => d.contender === to && d.workload === r.workload && d.mode === r.mode);
    return r.tps !== null && base?.tps != null && base.tps > 0 ? r.tps / base.tps : null;
  };
  const withForwarder = results.some((r) => r.contender === 'forwarder');
  for (const r of results) {
    r.ratioToDirect = ratio(r, 'direct');
    if (withForwarder) r.ratioToForwarder = ratio(r, 'forwarder');
  }
}

const fmt = {
  tps: (v: number | null): string => (v === null ? '—' : Math.round(v).toLocaleString('en-US')),
  ratio: (v: number | null): string => (v === null ? '—' : v.toFixed(2)),
  cpu: (v: number | null): string => (v === null ? '—' : v.toFixed(1)),
  ms: (v: number | null): string => (v === null ? '—' : v.toFixed(3)),
  count: (v: number | null): string => (v === null ? '—' : String(v)),
};

function cells(r: RunResult): string[] {
  return [
    r.workload,
    r.mode,
    CONTENDER_LABEL[r.contender],
    fmt.tps(r.tps),
    fmt.ratio(r.ratioToDirect),
    fmt.ratio(r.ratioToForwarder ?? null),
    fmt.ms(r.latencyAvgMs),
    fmt.count(r.failedTransactions),
    String(r.abortedClients),
    fmt.cpu(r.proxyCpuUsPerTx),
  ];
}

const HEADERS = [
  'workload',
  'mode',
  'contender',
  'TPS',
  'ratio to direct',
  'ratio to forwarder',
  'latency ms',
  'failed tx',
  'aborted clients',
  'proxy CPU µs/tx',
];

/**
 * A plain-text table for the terminal: columns padded to their widest cell, those from
 * `firstNumeric` on right-aligned.
 */
export function renderTextTable(headers: string[], rows: string[][], firstNumeric: number): string {
  const all = [headers, ...rows];
  const widths = headers.map((_, i) => Math.max(...all.map((row) => (row[i] ?? '').length)));
  const line = (row: string[]): string =>
    row.map((c, i) => (i >= firstNumeric ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0))).join('  ');
  return all.map(line).join('\n');
}

/** A Markdown table, columns from `firstNumeric` on right-aligned. */
export function renderMarkdownTable(headers: string[], rows: string[][], firstNumeric: number): string {
  const head = `| ${headers.join(' | ')} |\n|${headers.map((_, i) => (i >= firstNumeric ? '---:' : '---')).join('|')}|`;
  return [head, ...rows.map((row) => `| ${row.join(' | ')} |`)].join('\n');
}

/** A plain-text table for the terminal. */
export function renderConsoleTable(results: RunResult[]): string {
  return renderTextTable(HEADERS, results.map(cells), 3);
}

function markdownTable(results: RunResult[]): string {
  return renderMarkdownTable(HEADERS, results.map(cells), 3);
}

function errorSection(results: RunResult[]): string {
  const failing = results.filter((r) => r.errors.length > 0 || r.exitCode !== 0);
  if (failing.length === 0) return 'No run reported an error.\n';
  const items = failing.map(
    (r) =>
      `- ${r.workload} / ${r.mode} / ${r.contender} (pgbench exit ${r.exitCode}, ` +
      `${r.abortedClients} aborted clients):\n` +
      r.errors.map((e) => `  - \`${e.replaceAll('`', "'")}\``).join('\n'),
  );
  return items.join('\n') + '\n';
}

/** The Markdown results file. */
export function renderMarkdown(report: BenchReport): string {
  const m = report.machine;
  return `# PostgreSQL benchmark results

Written by \`npm run bench\` (bench/pg-bench.ts) on ${report.date}; raw numbers in
\`pg-bench.json\`. See bench/README.md for how to read this.

**Machine:** ${m.nproc} cores (${m.cpuModel}), ${m.memoryGiB} GiB, ${m.os}, ${m.kernel}; Node ${m.node}.
Client, proxies and all three servers share these cores over loopback. Load average before the
run: ${m.loadAverageAtStart.join(' / ')} (1 / 5 / 15 min).

**Software:** ${m.postgres}; ${m.pgbench}; ${m.pgbouncer}; ${m.pgpool}.

**Cluster:** primary + ${report.cluster.replicas} streaming replicas, pgbench scale ${report.cluster.scale},
settings ${Object.entries(report.cluster.settings)
    .map(([k, v]) => `\`${k}=${v}\``)
    .join(', ')}.

**Runs:** \`pgbench ${report.pgbench.common.join(' ')} -M <mode>\` plus \`-S\` for select-only,
${report.durationSeconds} s each, contenders alternated within each workload × mode; every contender
first warmed up with ${report.pgbench.warmupSeconds} s of select-only. Single runs: read ratios, not
absolute figures.

${markdownTable(report.results)}

"proxy CPU µs/tx" is user + system time of the proxy's processes (Pgpool-II: its whole process
tree) during the run, divided by the transactions pgbench completed.

## Errors

${errorSection(report.results)}`;
}

/** Writes pg-bench.json and pg-bench.md into `outDir` (created if missing). */
export function writeReport(outDir: string, report: BenchReport): { json: string; md: string } {
  mkdirSync(outDir, { recursive: true });
  const json = path.join(outDir, 'pg-bench.json');
  const md = path.join(outDir, 'pg-bench.md');
  writeFileSync(json, JSON.stringify(report, null, 2) + '\n');
  writeFileSync(md, renderMarkdown(report));
  return { json, md };
}
