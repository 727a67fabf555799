/** Runs pgbench (the PostgreSQL binary) and parses its summary. */
import { spawn } from 'node:child_process';
import { pgBinary } from '../../src/cluster/pg-binaries.js';

export interface PgbenchResult {
  code: number | null;
  processed: number;
  failed: number;
  tps: number;
  output: string;
}

export function pgbench(port: number, args: string[]): Promise<PgbenchResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      pgBinary('pgbench'),
      ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', ...args, 'postgres'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const num = (re: RegExp): number => Number(re.exec(output)?.[1] ?? NaN);
      resolve({
        code,
        processed: num(/number of transactions actually processed: (\d+)/),
        failed: num(/number of failed transactions: (\d+)/),
        tps: num(/tps = ([\d.]+)/),
        output,
      });
    });
  });
}

/** Asserts-friendly one-line summary for failure messages. */
export function summary(r: PgbenchResult): string {
  return `exit ${r.code}, processed ${r.processed}, failed ${r.failed}\n${r.output.slice(-1500)}`;
}
