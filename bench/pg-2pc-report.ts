/**
 * The cross-shard benchmark's results: every pgbench run, per-case medians over the rounds,
 * the cross-shard / single-shard ratio, the after-run checks (no prepared transaction left,
 * total balance unchanged), the Markdown file committed to the repo and the terminal table.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import type { BaseMachineInfo } from './machine.js';
import { renderMarkdownTable, renderTextTable } from './report.js';
import { median } from './redis-report.js';

/** What one run measured: a script through rwsplit, or the single-shard one straight at s1's primary. */
export type RunCase = 'direct-single' | 'rwsplit-single' | 'rwsplit-cross';

/** One pgbench run of one case in one round. */
export interface TwoPcRunResult {
  round: number;
  runCase: RunCase;
  pgbenchArgs: string[];
  exitCode: number | null;
  tps: number | null;
  transactions: number | null;
  failedTransactions: number | null;
  abortedClients: number;
  latencyAvgMs: number | null;
  /** Average latency of the script's COMMIT (`pgbench -r`): where two-phase commit costs. */
  commitLatencyMs: number | null;
  /** User + system CPU of the rwsplit process per transaction; null for direct. */
  proxyCpuUsPerTx: number | null;
  /** `rwsplit:%` prepared transactions on all shards the moment pgbench exited. */
  preparedRightAfter: number;
  errors: string[];
}

/** One case: medians over its rounds whose pgbench exited 0, sums of failures over all. */
export interface TwoPcCell {
  runCase: RunCase;
  tps: number | null;
  tpsByRound: (number | null)[];
  latencyAvgMs: number | null;
  commitLatencyMs: number | null;
  proxyCpuUsPerTx: number | null;
  transactions: number;
  failedTransactions: number;
  abortedClients: number;
  /** Runs whose pgbench exited non-zero (left out of the medians). */
  failedRuns: number;
}

/** The figures the issue asks for. */
export interface TwoPcHeadline {
  /** median cross-shard tps / median single-shard tps, both through rwsplit */
  crossToSingle: number | null;
  /** the same ratio within each round (the two runs minutes apart at most) */
  crossToSingleByRound: (number | null)[];
  /** median single-shard tps through rwsplit / direct */
  singleToDirect: number | null;
}

/** What is checked once every run is over. */
export interface TwoPcChecks {
  expectedTotal: number;
  totalBefore: number;
  totalAfter: number;
  balanceByShard: Record<string, number>;
  accountsByShard: Record<string, number>;
  /** `rwsplit:%` rows of pg_prepared_xacts on each shard's primary right after the last run */
  preparedAtEnd: Record<string, number>;
  /** the same after waiting for recovery, when some were there at the end; else null */
  preparedAfterWait: Record<string, number> | null;
  waitedMs: number;
  ok: boolean;
}

/** The machine plus the versions of what this benchmark runs. */
export interface TwoPcMachineInfo extends BaseMachineInfo {
  postgres: string;
  pgbench: string;
}

/** Everything written to pg-2pc-bench.json. */
export interface TwoPcBenchReport {
  date: string;
  machine: TwoPcMachineInfo;
  cluster: {
    shards: number;
    replicasPerShard: number;
    accountsPerShard: number;
    settings: Record<string, string>;
  };
  pgbench: {
    common: string[];
    seconds: number;
    rounds: number;
    warmupSeconds: number;
    scripts: Record<string, string>;
  };
  rwsplit: string;
  cells: TwoPcCell[];
  headline: TwoPcHeadline;
  checks: TwoPcChecks;
  /** rwsplit's own log lines (level warn and up) during the whole benchmark, the last few */
  rwsplitLog: string[];
  runs: TwoPcRunResult[];
}

const CASE_LABEL: Record<RunCase, string> = {
  'direct-single': 'single-shard, direct to s1 primary',
  'rwsplit-single': 'single-shard via rwsplit',
  'rwsplit-cross': 'cross-shard via rwsplit (2PC)',
};

const CASES: RunCase[] = ['direct-single', 'rwsplit-single', 'rwsplit-cross'];

function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  return a === null || a === undefined || b === null || b === undefined || b <= 0 ? null : a / b;
}

/** Groups runs by case (in {@link CASES} order) into medians over the rounds that succeeded. */
export function summarize(runs: TwoPcRunResult[]): TwoPcCell[] {
  return CASES.flatMap((runCase) => {
    const group = runs.filter((r) => r.runCase === runCase).sort((a, b) => a.round - b.round);
    if (group.length === 0) return [];
    const ok = group.filter((r) => r.exitCode === 0);
    const sum = (f: (r: TwoPcRunResult) => number | null): number =>
      group.reduce((s, r) => s + (f(r) ?? 0), 0);
    return [
      {
        runCase,
        tps: median(ok.map((r) => r.tps)),
        tpsByRound: group.map((r) => (r.exitCode === 0 ? r.tps : null)),
        latencyAvgMs: median(ok.map((r) => r.latencyAvgMs)),
        commitLatencyMs: median(ok.map((r) => r.commitLatencyMs)),
        proxyCpuUsPerTx: median(ok.map((r) => r.proxyCpuUsPerTx)),
        transactions: sum((r) => r.transactions),
        failedTransactions: sum((r) => r.failedTransactions),
        abortedClients: sum((r) => r.abortedClients),
        failedRuns: group.length - ok.length,
      },
    ];
  });
}

/** The cross/single and single/direct ratios, from the cells and round by round. */
export function headline(cells: TwoPcCell[], runs: TwoPcRunResult[]): TwoPcHeadline {
  const cell = (c: RunCase): TwoPcCell | undefined => cells.find((x) => x.runCase === c);
  const rounds = [...new Set(runs.map((r) => r.round))].sort((a, b) => a - b);
  const okTps = (round: number, c: RunCase): number | null => {
    const r = runs.find((x) => x.round === round && x.runCase === c);
    return r !== undefined && r.exitCode === 0 ? r.tps : null;
  };
  return {
    crossToSingle: ratio(cell('rwsplit-cross')?.tps, cell('rwsplit-single')?.tps),
    crossToSingleByRound: rounds.map((n) => ratio(okTps(n, 'rwsplit-cross'), okTps(n, 'rwsplit-single'))),
    singleToDirect: ratio(cell('rwsplit-single')?.tps, cell('direct-single')?.tps),
  };
}

const fmt = {
  tps: (v: number | null): string => (v === null ? '—' : Math.round(v).toLocaleString('en-US')),
  ratio: (v: number | null): string => (v === null ? '—' : v.toFixed(2)),
  ms: (v: number | null): string => (v === null ? '—' : v.toFixed(3)),
  cpu: (v: number | null): string => (v === null ? '—' : v.toFixed(1)),
  int: (v: number): string => v.toLocaleString('en-US'),
};

const HEADERS = [
  'case',
  'TPS (median)',
  'TPS by round',
  'latency ms',
  'COMMIT ms',
  'proxy CPU µs/tx',
  'transactions',
  'failed tx',
  'aborted clients',
  'failed runs',
];

function cells(c: TwoPcCell): string[] {
  return [
    CASE_LABEL[c.runCase],
    fmt.tps(c.tps),
    c.tpsByRound.map(fmt.tps).join(' / '),
    fmt.ms(c.latencyAvgMs),
    fmt.ms(c.commitLatencyMs),
    fmt.cpu(c.proxyCpuUsPerTx),
    fmt.int(c.transactions),
    fmt.int(c.failedTransactions),
    fmt.int(c.abortedClients),
    String(c.failedRuns),
  ];
}

/** A plain-text table of the cells and the ratios, for the terminal. */
export function renderConsoleSummary(cellList: TwoPcCell[], h: TwoPcHeadline): string {
  return (
    renderTextTable(HEADERS, cellList.map(cells), 1) +
    `\n\ncross-shard / single-shard (rwsplit): ${fmt.ratio(h.crossToSingle)}` +
    ` (by round: ${h.crossToSingleByRound.map(fmt.ratio).join(' / ')});` +
    ` single-shard rwsplit / direct: ${fmt.ratio(h.singleToDirect)}`
  );
}

function shardList(values: Record<string, number>): string {
  return Object.entries(values)
    .map(([shard, n]) => `${shard} ${fmt.int(n)}`)
    .join(', ');
}

function checksSection(c: TwoPcChecks): string {
  const prepared =
    c.preparedAfterWait === null
      ? `none on any shard right after the last run (${shardList(c.preparedAtEnd)})`
      : `${shardList(c.preparedAtEnd)} right after the last run, ${shardList(c.preparedAfterWait)} ` +
        `after waiting ${Math.round(c.waitedMs / 1000)} s for recovery`;
  return [
    `- **Result: ${c.ok ? 'pass' : 'FAIL'}.**`,
    `- Sum of all balances: ${fmt.int(c.totalBefore)} before the runs, **${fmt.int(c.totalAfter)}** after ` +
      `(expected ${fmt.int(c.expectedTotal)}); by shard after: ${shardList(c.balanceByShard)} ` +
      `(cross-shard transfers move money between shards, so only the total is fixed).`,
    `- Accounts: ${shardList(c.accountsByShard)}.`,
    `- Prepared transactions \`rwsplit:%\` in pg_prepared_xacts: ${prepared}.`,
  ].join('\n');
}

function errorSection(report: TwoPcBenchReport): string {
  const failing = report.runs.filter((r) => r.errors.length > 0 || r.exitCode !== 0);
  const runs = failing.map(
    (r) =>
      `- round ${r.round}, ${CASE_LABEL[r.runCase]} (pgbench exit ${r.exitCode}, ${r.abortedClients} aborted clients):\n` +
      r.errors.map((e) => `  - \`${e.replaceAll('`', "'")}\``).join('\n'),
  );
  const text = runs.length === 0 ? 'No run reported an error.' : runs.join('\n');
  const log =
    report.rwsplitLog.length === 0
      ? 'rwsplit logged nothing at level warn or above.'
      : 'rwsplit log (warn and above, last lines):\n\n```\n' + report.rwsplitLog.join('\n') + '\n```';
  return `${text}\n\n${log}\n`;
}

function tpsOf(report: TwoPcBenchReport, runCase: RunCase): number | null {
  return report.cells.find((c) => c.runCase === runCase)?.tps ?? null;
}

/** The Markdown results file. */
export function renderMarkdown(report: TwoPcBenchReport): string {
  const m = report.machine;
  const h = report.headline;
  const cl = report.cluster;
  const settings = Object.entries(cl.settings)
    .map(([k, v]) => `\`${k}=${v}\``)
    .join(', ');
  return `# Cross-shard transaction benchmark results

Written by \`npm run bench:2pc\` (bench/pg-2pc-bench.ts) on ${report.date}; raw numbers in
\`pg-2pc-bench.json\`. See bench/README.md for how to read this.

**Cross-shard / single-shard transaction rate through rwsplit: ${fmt.ratio(h.crossToSingle)}**
(median ${fmt.tps(tpsOf(report, 'rwsplit-cross'))} vs ${fmt.tps(tpsOf(report, 'rwsplit-single'))} tps;
round by round ${h.crossToSingleByRound.map(fmt.ratio).join(' / ')}).
Single-shard through rwsplit / direct: ${fmt.ratio(h.singleToDirect)}.

**Machine:** ${m.nproc} cores (${m.cpuModel}), ${m.memoryGiB} GiB, ${m.os}, ${m.kernel}; Node ${m.node}.
pgbench, rwsplit and all ${cl.shards * (cl.replicasPerShard + 1)} servers share these cores over loopback.
Load average before the run: ${m.loadAverageAtStart.join(' / ')} (1 / 5 / 15 min).

**Software:** ${m.postgres}; ${m.pgbench}.

**Cluster:** ${cl.shards} shards, each a primary + ${cl.replicasPerShard} streaming replica; table
\`accounts\` with ${fmt.int(cl.accountsPerShard)} rows per shard, each shard its own id range (s1 from 1,
s2 from ${fmt.int(cl.accountsPerShard + 1)}); settings ${settings}. The launcher runs PostgreSQL with
\`fsync=off\`, so no commit here waits for a disk flush. With fsync on, a two-shard commit needs
five flushes, four one after the other (both \`PREPARE TRANSACTION\`s in parallel, the coordinator
log's row, \`COMMIT PREPARED\` on the first shard, then on the other), a single-shard commit one:
on real disks the ratio is lower.

**rwsplit:** ${report.rwsplit}.

**Runs:** \`pgbench ${report.pgbench.common.join(' ')} -T ${report.pgbench.seconds} -f <script>\`,
${report.pgbench.rounds} rounds; within a round the three cases run one after the other, the order
rotating each round; each case first warmed up for ${report.pgbench.warmupSeconds} s. Medians over
the rounds whose pgbench exited 0.

${renderMarkdownTable(HEADERS, report.cells.map(cells), 1)}

- single-shard: \`BEGIN\`; two \`UPDATE\`s on one shard (picked at random per transaction,
  \`/* rwsplit:shard=sN */\`); \`COMMIT\` — an ordinary commit on one primary.
- cross-shard: \`BEGIN\`; \`UPDATE\` on s1; \`UPDATE\` on s2; \`COMMIT\` — rwsplit runs
  \`PREPARE TRANSACTION\` on both, records the decision in \`rwsplit_2pc_log\` on s1, then
  \`COMMIT PREPARED\` on both.
- direct: the single-shard script straight at s1's primary (the hints are plain comments there).
- "COMMIT ms" is pgbench's per-statement latency of \`COMMIT;\` (\`-r\`); "proxy CPU µs/tx" is
  rwsplit's user + system CPU during the run divided by the transactions.

## Checks after the runs

${checksSection(report.checks)}

## Errors

${errorSection(report)}`;
}

/** Writes pg-2pc-bench.json and pg-2pc-bench.md into `outDir` (created if missing). */
export function writeTwoPcReport(outDir: string, report: TwoPcBenchReport): { json: string; md: string } {
  mkdirSync(outDir, { recursive: true });
  const json = path.join(outDir, 'pg-2pc-bench.json');
  const md = path.join(outDir, 'pg-2pc-bench.md');
  writeFileSync(json, JSON.stringify(report, null, 2) + '\n');
  writeFileSync(md, renderMarkdown(report));
  return { json, md };
}
