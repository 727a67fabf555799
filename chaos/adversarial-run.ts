/**
 * `npm run chaos -- --adversarial [--short] [--scenarios a,b] [--out DIR]`: the adversarial
 * suite (chaos/adversarial.ts) on one stack, then chaos/results/adversarial-report.{json,md}.
 * Exit code 0 when every scenario passed, 1 otherwise, 2 for a bad command line.
 */
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { baseMachineInfo } from '../bench/machine.js';
import {
  ADVERSARIAL_SCENARIOS,
  AdversarialStack,
  FULL_SETTINGS,
  runAdversarial,
  SHORT_SETTINGS,
  type AdversarialResult,
} from './adversarial.js';
import { adversarialPassed, wellBehavedErrors, writeAdversarialReport } from './adversarial-report.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

function log(line: string): void {
  console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`);
}

export async function adversarialMain(argv: string[]): Promise<void> {
  let values: { short?: boolean; scenarios?: string; out?: string };
  try {
    values = parseArgs({
      args: argv.filter((a) => a !== '--adversarial'),
      options: { short: { type: 'boolean' }, scenarios: { type: 'string' }, out: { type: 'string' } },
      strict: true,
    }).values;
  } catch (err) {
    console.error(`chaos --adversarial: ${(err as Error).message}`);
    process.exitCode = 2;
    return;
  }
  const names = values.scenarios?.split(',').map((x) => x.trim());
  const unknown = names?.filter((n) => !ADVERSARIAL_SCENARIOS.some((s) => s.name === n)) ?? [];
  if (unknown.length > 0) {
    console.error(
      `unknown scenario ${unknown.join(', ')}; scenarios: ${ADVERSARIAL_SCENARIOS.map((s) => s.name).join(', ')}`,
    );
    process.exitCode = 2;
    return;
  }
  const settings = values.short ? SHORT_SETTINGS : FULL_SETTINGS;
  const loadAverage = os.loadavg();
  const stack = await AdversarialStack.start(settings);
  const results: AdversarialResult[] = [];
  try {
    for (const scenario of ADVERSARIAL_SCENARIOS.filter((s) => !names || names.includes(s.name))) {
      log(`${scenario.name} …`);
      const r = await runAdversarial(stack, scenario, settings);
      log(
        `${scenario.name}: ${wellBehavedErrors(r)} errors for well-behaved clients, RSS ${r.rss.startMiB} → peak ${r.rss.peakMiB} → ${r.rss.endMiB} MiB; ${r.offender}${r.error ? `; ERROR ${r.error}` : ''}`,
      );
      results.push(r);
    }
  } finally {
    await stack.stop();
  }
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
    }).trim();
  } catch {
    // not a checkout
  }
  const files = writeAdversarialReport(path.resolve(values.out ?? path.join(REPO_ROOT, 'chaos', 'results')), {
    date: new Date().toISOString(),
    commit,
    machine: { ...baseMachineInfo(loadAverage) },
    settings,
    results,
  });
  log(`wrote ${files.md} and ${files.json}`);
  if (!results.every(adversarialPassed)) process.exitCode = 1;
}
