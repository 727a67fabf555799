/** The adversarial suite's report: chaos/results/adversarial-report.{json,md}. */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import type { AdversarialResult, AdversarialSettings } from './adversarial.js';

export interface AdversarialReport {
  date: string;
  commit: string;
  machine: Record<string, unknown>;
  settings: AdversarialSettings;
  results: AdversarialResult[];
}

/** Errors the well-behaved clients saw in one scenario, summed. */
export function wellBehavedErrors(r: AdversarialResult): number {
  return Object.values(r.wellBehavedErrors).reduce((a, b) => a + b, 0);
}

/** A scenario passes when it ran to its end, its checks hold and no well-behaved client saw an error. */
export function adversarialPassed(r: AdversarialResult): boolean {
  return r.error === null && wellBehavedErrors(r) === 0 && r.checks.every((c) => c.ok);
}

function counts(m: Record<string, number>): string {
  return Object.entries(m)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
}

export function renderAdversarialMarkdown(report: AdversarialReport): string {
  const s = report.settings;
  const lines = [
    '# Adversarial suite',
    '',
    `${report.date}, commit ${report.commit}. Clients that misbehave on purpose against rwsplit (a`,
    'child process, default limits unless said), while pgbench (tpcb-like, 2 clients) and',
    'redis-benchmark (SET/GET, 4 clients) run beside them. Reproduce with',
    '`npm run chaos -- --adversarial` (the short version runs in `npm test` as',
    '`test/adversarial.test.ts`).',
    '',
    `Settings: floods ${s.floodMs / 1000} s; ${s.silentConnections} silent connections, psql ${s.psqlAfterMs / 1000} s later ` +
      `(postgres.limits.loginTimeoutMs ${s.pgLoginTimeoutMs}); pipeline up to ${s.pipelineBytes / 1024 / 1024} MiB; ` +
      `garbage ${s.garbagePerSecond} connections/s; redis.limits.maxClients ${s.redisMaxClients}; ` +
      `unread result ${s.pgResultRows} rows of 1,000 bytes.`,
    '',
    `Machine: ${Object.entries(report.machine)
      .map(([k, v]) => `${k} ${String(v)}`)
      .join('; ')}.`,
    '',
    '| scenario | errors seen by well-behaved clients | their operations | rwsplit RSS start / peak / end (MiB) | offender | verdict |',
    '| --- | --- | --- | --- | --- | --- |',
  ];
  for (const r of report.results) {
    lines.push(
      `| ${r.scenario} | ${wellBehavedErrors(r)} (${counts(r.wellBehavedErrors)}) | ${counts(r.wellBehavedOps)} | ` +
        `${r.rss.startMiB} / ${r.rss.peakMiB} / ${r.rss.endMiB} | ${r.offender.replace(/\|/g, '/')} | ` +
        `${adversarialPassed(r) ? 'pass' : 'FAIL'} |`,
    );
  }
  lines.push('', '## Scenarios', '');
  for (const r of report.results) {
    lines.push(`- **${r.scenario}**: ${r.description}.`);
    for (const c of r.checks)
      lines.push(`  - ${c.ok ? 'ok' : 'FAILED'}: ${c.name} (${c.detail.replace(/\n/g, ' ')})`);
    if (r.error) lines.push(`  - did not finish: ${r.error}`);
  }
  return lines.join('\n') + '\n';
}

export function writeAdversarialReport(dir: string, report: AdversarialReport): { md: string; json: string } {
  mkdirSync(dir, { recursive: true });
  const md = path.join(dir, 'adversarial-report.md');
  const json = path.join(dir, 'adversarial-report.json');
  writeFileSync(json, JSON.stringify(report, null, 2) + '\n');
  writeFileSync(md, renderAdversarialMarkdown(report));
  return { md, json };
}
