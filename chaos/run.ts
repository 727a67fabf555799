/**
 * `npm run chaos`: every scenario (or those named) `--runs` times, each on a fresh cluster,
 * then chaos/results/chaos-report.{json,md}. Usage (after `npm run build`):
 *
 *   node dist/chaos/run.js [--runs 3] [--scenarios a,b] [--out DIR] [--warmup-ms N] [--after-ms N]
 *   node dist/chaos/run.js --adversarial [--short] [--scenarios a,b] [--out DIR]   (chaos/adversarial-run.ts)
 *
 * Exit code 0 when every run completed with no acknowledged write lost, no stale read and no
 * double-primary ack; 1 otherwise (the report is written either way); 2 for a bad command line.
 */
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { baseMachineInfo, toolVersion } from '../bench/machine.js';
import { pgBinary } from '../src/cluster/pg-binaries.js';
import { redisServerBinary } from '../src/cluster/redis-process.js';
import { adversarialMain } from './adversarial-run.js';
import { summarize, tableRow, writeReport, type ChaosReport, type ScenarioSummary } from './report.js';
import { runScenario, type RunResult, type RunSettings } from './runner.js';
import { SCENARIOS, selectScenarios } from './scenarios.js';
import { FAILOVER_CONFIG, MONITOR_CONFIG } from './stacks.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

const USAGE =
  'usage: node dist/chaos/run.js [--runs N] [--scenarios a,b,…] [--out DIR] [--warmup-ms N] [--after-ms N]\n' +
  `scenarios: ${SCENARIOS.map((s) => s.name).join(', ')}`;

/** The full suite's settings; the short version in test/chaos.test.ts uses shorter phases. */
export const DEFAULT_SETTINGS: RunSettings = {
  timing: { warmupMs: 3000, afterMs: 5000, freezeMs: 5000, lagMs: 4000 },
  load: { writers: 4, rywSessions: 4, readers: 2, pauseMs: 2 },
  pgReplication: 'sync',
  redisWaitReplicas: true,
};

interface Options {
  runs: number;
  scenarios: string[] | undefined;
  outDir: string;
  settings: RunSettings;
}

function wholeNumber(name: string, text: string | undefined, fallback: number, min: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min)
    throw new Error(`${name} must be a whole number >= ${min}, got '${text}'`);
  return n;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      runs: { type: 'string' },
      scenarios: { type: 'string' },
      out: { type: 'string' },
      'warmup-ms': { type: 'string' },
      'after-ms': { type: 'string' },
    },
    strict: true,
  });
  const scenarios = values.scenarios
    ?.split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  selectScenarios(scenarios); // fails early on an unknown name
  const t = DEFAULT_SETTINGS.timing;
  return {
    runs: wholeNumber('--runs', values.runs, 3, 1),
    scenarios,
    outDir: path.resolve(values.out ?? path.join(REPO_ROOT, 'chaos', 'results')),
    settings: {
      ...DEFAULT_SETTINGS,
      timing: {
        ...t,
        warmupMs: wholeNumber('--warmup-ms', values['warmup-ms'], t.warmupMs, 0),
        afterMs: wholeNumber('--after-ms', values['after-ms'], t.afterMs, 0),
      },
    },
  };
}

function log(line: string): void {
  console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`);
}

function commit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

function machine(loadAverage: number[]): Record<string, unknown> {
  return {
    ...baseMachineInfo(loadAverage),
    postgres: toolVersion(pgBinary('postgres'), ['--version']),
    redis: toolVersion(redisServerBinary(), ['--version']).replace(/ sha=.*$/, ''),
  };
}

/** A scenario passes when every run completed and nothing was lost, stale or doubly acknowledged. */
export function passed(s: ScenarioSummary): boolean {
  return (
    s.failedRuns === 0 &&
    s.lostUnknownRuns === 0 &&
    s.ackedWritesLost === 0 &&
    s.staleReads === 0 &&
    (s.doublePrimaryAcks ?? 0) === 0
  );
}

async function main(): Promise<void> {
  if (process.argv.includes('--adversarial')) {
    await adversarialMain(process.argv.slice(2)); // the adversarial suite: chaos/adversarial-run.ts
    return;
  }
  let opts: Options;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (err) {
    console.error(`chaos: ${err instanceof Error ? err.message : String(err)}\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  const loadAverage = os.loadavg();
  const scenarios = selectScenarios(opts.scenarios);
  const runs: RunResult[] = [];
  // Round-robin over the scenarios, so slow drift on the box hits them all alike.
  for (let run = 1; run <= opts.runs; run++)
    for (const scenario of scenarios) {
      const r = await runScenario(scenario, opts.settings, run, log);
      if (r.error !== null) log(`${scenario.name} #${run} FAILED: ${r.error}`);
      runs.push(r);
    }
  const summaries = summarize(runs, new Map(SCENARIOS.map((s) => [s.name, s.description])));
  const report: ChaosReport = {
    date: new Date().toISOString(),
    commit: commit(),
    machine: machine(loadAverage),
    settings: opts.settings,
    rwsplit: { failover: FAILOVER_CONFIG, monitor: MONITOR_CONFIG },
    summaries,
    runs,
  };
  const files = writeReport(opts.outDir, report);
  for (const s of summaries) console.log(tableRow(s));
  log(`wrote ${files.md} and ${files.json}`);
  if (!summaries.every(passed)) process.exitCode = 1;
}

// A Ctrl-C ends the process; the launchers' exit hooks kill every server they started.
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));
await main();
