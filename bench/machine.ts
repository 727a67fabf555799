/**
 * What the benchmark ran on, recorded next to the figures: a ratio only means something
 * together with the core count (client, proxies and servers share the cores) and versions.
 */
import { execFileSync } from 'node:child_process';
import os from 'node:os';

import { pgBinary } from '../src/cluster/pg-binaries.js';

/** The machine and software versions of one benchmark run. */
export interface MachineInfo {
  nproc: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  os: string;
  node: string;
  postgres: string;
  pgbench: string;
  pgbouncer: string;
  pgpool: string;
}

function firstLine(file: string, args: string[]): string {
  try {
    const out = execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return out.trim().split('\n')[0] ?? '';
  } catch (err) {
    return `unknown (${err instanceof Error ? err.message : String(err)})`;
  }
}

function osName(): string {
  try {
    const release = execFileSync('cat', ['/etc/os-release'], { encoding: 'utf8' });
    return /^PRETTY_NAME="?([^"\n]*)"?/m.exec(release)?.[1] ?? os.type();
  } catch {
    return os.type();
  }
}

/** Collects {@link MachineInfo}; `postgresVersion` is the primary's `SELECT version()`. */
export function machineInfo(postgresVersion: string, pgbouncerBin: string, pgpoolBin: string): MachineInfo {
  return {
    nproc: Number(firstLine('nproc', [])) || os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    kernel: `${os.type()} ${os.release()} ${os.version()}`,
    os: osName(),
    node: process.version,
    postgres: postgresVersion,
    pgbench: firstLine(pgBinary('pgbench'), ['--version']),
    pgbouncer: firstLine(pgbouncerBin, ['--version']),
    pgpool: firstLine(pgpoolBin, ['--version']),
  };
}
