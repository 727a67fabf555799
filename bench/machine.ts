/**
 * What the benchmark ran on, recorded next to the figures: a ratio only means something
 * together with the core count (client, proxies and servers share the cores) and versions.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';

import { pgBinary } from '../src/cluster/pg-binaries.js';

/** The machine every benchmark records, whatever it measures. */
export interface BaseMachineInfo {
  nproc: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  os: string;
  node: string;
  /** 1/5/15-minute load averages before the cluster started: other work on the box skews throughput. */
  loadAverageAtStart: number[];
}

/** The machine and software versions of one PostgreSQL benchmark run. */
export interface MachineInfo extends BaseMachineInfo {
  postgres: string;
  pgbench: string;
  pgbouncer: string;
  pgpool: string;
}

/** First line a command prints on stdout or stderr (pgpool writes its version to stderr). */
export function toolVersion(file: string, args: string[]): string {
  const res = spawnSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (res.error !== undefined) return `unknown (${res.error.message})`;
  return `${res.stdout}\n${res.stderr}`.trim().split('\n')[0] ?? '';
}

function osName(): string {
  try {
    const release = readFileSync('/etc/os-release', 'utf8');
    return /^PRETTY_NAME="?([^"\n]*)"?/m.exec(release)?.[1] ?? os.type();
  } catch {
    return os.type();
  }
}

/** Collects {@link BaseMachineInfo}. */
export function baseMachineInfo(loadAverageAtStart: number[]): BaseMachineInfo {
  return {
    nproc: Number(toolVersion('nproc', [])) || os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    kernel: `${os.type()} ${os.release()} ${os.version()}`,
    os: osName(),
    node: process.version,
    loadAverageAtStart: loadAverageAtStart.map((l) => Math.round(l * 100) / 100),
  };
}

/** Collects {@link MachineInfo}; `postgresVersion` is the primary's `SELECT version()`. */
export function machineInfo(
  postgresVersion: string,
  pgbouncerBin: string,
  pgpoolBin: string,
  loadAverageAtStart: number[],
): MachineInfo {
  return {
    ...baseMachineInfo(loadAverageAtStart),
    postgres: postgresVersion,
    pgbench: toolVersion(pgBinary('pgbench'), ['--version']),
    pgbouncer: toolVersion(pgbouncerBin, ['--version']),
    pgpool: toolVersion(pgpoolBin, ['--version']),
  };
}
