/**
 * The chaos report: runs grouped per scenario (median and max of the timings, totals of the
 * correctness counts), written as chaos-report.json (every run, every figure) and
 * chaos-report.md (the table committed to the repo). Pure apart from {@link writeReport}.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import type { DistinctError } from './checker.js';
import type { RunResult, RunSettings } from './runner.js';

/** Median and max of one figure over a scenario's runs. */
export interface Spread {
  median: number;
  max: number;
}

/** One row of the report. */
export interface ScenarioSummary {
  scenario: string;
  engine: 'postgres' | 'redis';
  description: string;
  runs: number;
  /** runs that could not be completed (stack failed to start, a step threw) */
  failedRuns: number;
  writeUnavailabilityMs: Spread | null;
  writesResumeMs: Spread | null;
  /** runs in which no write sent after the fault was acknowledged */
  neverResumed: number;
  longestSessionStallMs: Spread | null;
  clientErrors: Spread | null;
  reconnects: Spread | null;
  writesAcked: Spread | null;
  /** total over the runs; null when no run's final state could be read */
  ackedWritesLost: number | null;
  /** runs whose final state could not be read (no primary at the end) */
  lostUnknownRuns: number;
  staleReads: number;
  checkedReads: number;
  /** median fraction of checked reads served by replicas */
  checkedReadsOnReplicas: number | null;
  /** total over the runs; null for Redis (its replies do not name the server) */
  doublePrimaryAcks: number | null;
  /** per run: the promoted node, or null */
  promoted: (string | null)[];
  errors: DistinctError[];
}

/** Everything chaos-report.json holds. */
export interface ChaosReport {
  date: string;
  commit: string;
  machine: Record<string, unknown>;
  settings: RunSettings;
  /** the rwsplit settings every run used */
  rwsplit: Record<string, unknown>;
  summaries: ScenarioSummary[];
  runs: RunResult[];
}

/** Median of a non-empty list (mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function spread(values: readonly number[]): Spread | null {
  return values.length === 0 ? null : { median: median(values), max: Math.max(...values) };
}

/** Adds up the distinct errors of several runs. */
export function mergeErrors(lists: readonly DistinctError[][]): DistinctError[] {
  const merged = new Map<string, DistinctError>();
  for (const list of lists)
    for (const e of list) {
      const key = `${e.kind}\0${e.code ?? ''}\0${e.message}`;
      const m = merged.get(key);
      if (m) m.count += e.count;
      else merged.set(key, { ...e });
    }
  return [...merged.values()].sort((a, b) => b.count - a.count);
}

/** One summary per scenario, in the order the scenarios first appear in `runs`. */
export function summarize(
  runs: readonly RunResult[],
  descriptions: ReadonlyMap<string, string>,
): ScenarioSummary[] {
  const names = [...new Set(runs.map((r) => r.scenario))];
  return names.map((name) => {
    const all = runs.filter((r) => r.scenario === name);
    const done = all.filter((r) => r.figures !== null);
    const figs = done.map((r) => r.figures!);
    const known = figs.filter((f) => f.ackedWritesLost !== null);
    const fractions = figs.map((f) => f.checkedReadsOnReplicas).filter((x): x is number => x !== null);
    const engine = all[0]!.engine;
    return {
      scenario: name,
      engine,
      description: descriptions.get(name) ?? '',
      runs: all.length,
      failedRuns: all.length - done.length,
      writeUnavailabilityMs: spread(figs.map((f) => f.writeUnavailabilityMs)),
      writesResumeMs: spread(figs.map((f) => f.writesResumeMs).filter((x): x is number => x !== null)),
      neverResumed: figs.filter((f) => f.writesResumeMs === null).length,
      longestSessionStallMs: spread(figs.map((f) => f.longestSessionStallMs)),
      clientErrors: spread(figs.map((f) => f.clientErrors)),
      reconnects: spread(figs.map((f) => f.reconnects)),
      writesAcked: spread(figs.map((f) => f.writesAcked)),
      ackedWritesLost: known.length === 0 ? null : known.reduce((n, f) => n + f.ackedWritesLost!, 0),
      lostUnknownRuns: figs.length - known.length,
      staleReads: figs.reduce((n, f) => n + f.staleReads, 0),
      checkedReads: figs.reduce((n, f) => n + f.checkedReads, 0),
      checkedReadsOnReplicas: fractions.length === 0 ? null : median(fractions),
      doublePrimaryAcks: engine === 'redis' ? null : figs.reduce((n, f) => n + f.doublePrimaryAcks, 0),
      promoted: done.map((r) => r.promoted),
      errors: mergeErrors(figs.map((f) => f.distinctErrors)),
    };
  });
}

function cell(s: Spread | null): string {
  return s === null ? '—' : `${fmt(s.median)} (${fmt(s.max)})`;
}

function fmt(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

function promotedCell(p: (string | null)[]): string {
  if (p.length === 0) return '—';
  const counts = new Map<string, number>();
  for (const x of p) counts.set(x ?? 'none', (counts.get(x ?? 'none') ?? 0) + 1);
  return [...counts].map(([n, c]) => (p.length === 1 ? n : `${n} ×${c}`)).join(', ');
}

/** One Markdown table row of a summary. */
export function tableRow(s: ScenarioSummary): string {
  const resume = cell(s.writesResumeMs) + (s.neverResumed > 0 ? `, never in ${s.neverResumed}` : '');
  const lost =
    s.ackedWritesLost === null
      ? 'unknown'
      : `${s.ackedWritesLost}${s.lostUnknownRuns > 0 ? ` (+${s.lostUnknownRuns} runs unknown)` : ''}`;
  const onReplicas =
    s.checkedReadsOnReplicas === null ? '' : `, ${Math.round(s.checkedReadsOnReplicas * 100)}% on replicas`;
  const runs = s.failedRuns > 0 ? `${s.runs} (${s.failedRuns} failed)` : String(s.runs);
  return (
    `| ${s.scenario} | ${runs} | ${cell(s.writeUnavailabilityMs)} | ${resume} | ${cell(s.longestSessionStallMs)} | ${cell(s.clientErrors)} | ` +
    `${cell(s.reconnects)} | ${lost} | ${s.staleReads} / ${s.checkedReads}${onReplicas} | ` +
    `${s.doublePrimaryAcks ?? 'n/a'} | ${promotedCell(s.promoted)} |`
  );
}

const HEADER = [
  '| scenario | runs | write unavailability ms, median (max) | writes resume ms, median (max) | longest session stall ms, median (max) | client errors, median (max) | reconnects, median (max) | acked writes lost | stale reads / checked reads | double-primary acks | promoted |',
  '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
];

/** The Markdown report. */
export function renderMarkdown(r: ChaosReport): string {
  const s = r.settings;
  const lines = [
    '# Chaos report',
    '',
    `Produced by \`npm run chaos\` on ${r.date} at commit ${r.commit}; how to read it: [chaos/README.md](../README.md).`,
    '',
    `Machine: ${String(r.machine.nproc)} cores (${String(r.machine.cpuModel)}), ${String(r.machine.memoryGiB)} GiB, ` +
      `${String(r.machine.os)}, Node ${String(r.machine.node)}, ${String(r.machine.postgres)}, ${String(r.machine.redis)}.`,
    '',
    `Each run starts a fresh cluster and rwsplit (child process, ${JSON.stringify(r.rwsplit)}), runs ` +
      `${s.load.writers} writers, ${s.load.rywSessions} read-your-writes sessions and ${s.load.readers} readers ` +
      `(${s.load.pauseMs} ms pause between operations) for ${s.timing.warmupMs} ms, injects the fault ` +
      `(freezes last ${s.timing.freezeMs} ms, replay pauses ${s.timing.lagMs} ms), keeps the load for ` +
      `${s.timing.afterMs} ms more, then checks. PostgreSQL replication: ${s.pgReplication === 'sync' ? 'synchronous (`ANY 1` of the 2 replicas)' : 'asynchronous'}; ` +
      `Redis: ${s.redisWaitReplicas ? '`waitReplicas: 1`' : 'no WAIT'}.`,
    '',
    ...HEADER,
    ...r.summaries.map(tableRow),
    '',
    ...errorSection(r.summaries),
    ...stallSection(r.runs, s),
    ...timelineSection(r.runs),
    ...failureSection(r.runs),
  ];
  return lines.join('\n') + '\n';
}

function errorSection(summaries: readonly ScenarioSummary[]): string[] {
  const out = ['## Errors the clients saw (all runs; digits shown as N)', ''];
  for (const s of summaries) {
    if (s.errors.length === 0) continue;
    out.push(`**${s.scenario}**`, '');
    for (const e of s.errors.slice(0, 8))
      out.push(
        `- ${e.count} × ${e.kind}${e.code ? ` ${e.code}` : ''}: ${e.message.replace(/\s+/g, ' ').slice(0, 200)}`,
      );
    if (s.errors.length > 8) out.push(`- … ${s.errors.length - 8} more kinds in chaos-report.json`);
    out.push('');
  }
  return out.length === 2 ? [...out, 'None.', ''] : out;
}

/** What a session number was: writers first, then read-your-writes sessions, then readers. */
function sessionRole(session: number, s: RunSettings): string {
  if (session < s.load.writers) return 'writer';
  if (session < s.load.writers + s.load.rywSessions) return 'read-your-writes';
  return 'reader';
}

function stallSection(runs: readonly RunResult[], s: RunSettings): string[] {
  const out = ['## Longest session stall (worst run of each scenario)', ''];
  const worst = new Map<string, RunResult>();
  for (const r of runs) {
    const ms = r.figures?.longestSessionStall?.ms;
    if (ms === undefined) continue;
    const w = worst.get(r.scenario)?.figures?.longestSessionStall?.ms;
    if (w === undefined || ms > w) worst.set(r.scenario, r);
  }
  for (const [scenario, r] of worst) {
    const st = r.figures!.longestSessionStall!;
    const ended = st.endedBy.replace(/\s+/g, ' ').slice(0, 160);
    out.push(
      `- **${scenario}** #${r.run}: ${st.ms} ms, session ${st.session} (${sessionRole(st.session, s)}), ` +
        `waiting from ${st.from >= 0 ? '+' : ''}${st.from} ms from the fault; ended by ${ended}`,
    );
  }
  out.push('');
  return out;
}

function timelineSection(runs: readonly RunResult[]): string[] {
  const out = [
    '## rwsplit events after the fault (first completed run of each scenario, ms from the fault)',
    '',
  ];
  const seen = new Set<string>();
  for (const r of runs) {
    if (seen.has(r.scenario) || r.figures === null) continue;
    seen.add(r.scenario);
    const events = r.events.filter((e) => e.atMs >= 0).slice(0, 12);
    const text = events.map((e) => `+${e.atMs} ${e.type} ${e.node}`).join('; ');
    out.push(`- **${r.scenario}** (victim ${r.victim ?? '?'}): ${text || 'none'}${endText(r)}`);
  }
  out.push('');
  return out;
}

/** Where the run ended: each node's state in rwsplit, and which servers still say they are a primary. */
function endText(r: RunResult): string {
  if (r.end === null) return '';
  const states = Object.entries(r.end.proxyStates)
    .map(([id, state]) => `${id} ${state}`)
    .join(', ');
  return `. At the end: ${states}; servers saying they are a primary: ${r.end.serversClaimingPrimary.join(', ') || 'none'}`;
}

function failureSection(runs: readonly RunResult[]): string[] {
  const failed = runs.filter((r) => r.error !== null);
  if (failed.length === 0) return [];
  const out = ['## Runs that failed', ''];
  for (const r of failed) out.push(`- ${r.scenario} #${r.run}: ${(r.error ?? '').split('\n')[0]}`);
  out.push('');
  return out;
}

/** Writes chaos-report.json and chaos-report.md into `dir`. */
export function writeReport(dir: string, report: ChaosReport): { json: string; md: string } {
  mkdirSync(dir, { recursive: true });
  const json = path.join(dir, 'chaos-report.json');
  const md = path.join(dir, 'chaos-report.md');
  writeFileSync(json, JSON.stringify(report, null, 2) + '\n');
  writeFileSync(md, renderMarkdown(report));
  return { json, md };
}
