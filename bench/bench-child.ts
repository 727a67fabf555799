/**
 * Long-running processes the benchmark starts (rwsplit, PgBouncer, Pgpool-II): spawned with
 * their output in a log file, stopped with a polite signal then SIGKILL, and killed
 * synchronously if the benchmark itself exits first, so nothing outlives a run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

import { chownToRunAs, type RunAs } from '../src/cluster/run-as.js';
import { descendantPids } from './proc-stat.js';

/** How to spawn one {@link BenchChild}. */
export interface BenchChildSpec {
  name: string;
  file: string;
  args: string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** Run as this user (PgBouncer and Pgpool-II as `postgres`); undefined: as ourselves. */
  runAs?: RunAs;
  /** Receives stdout and stderr. */
  logFile: string;
}

const live = new Set<BenchChild>();
const runDirs = new Set<string>();
let exitHookInstalled = false;

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** A spawned server process of the benchmark. */
export class BenchChild {
  private readonly exited: Promise<void>;
  private alive = true;

  private constructor(
    readonly spec: BenchChildSpec,
    private readonly child: ChildProcess,
  ) {
    this.exited = new Promise((resolve) => {
      child.once('exit', () => {
        this.alive = false;
        live.delete(this);
        resolve();
      });
      child.once('error', () => {
        this.alive = false;
        live.delete(this);
        resolve();
      });
    });
  }

  /** Spawns the process in its own process group, so a Ctrl-C on the terminal reaches only us. */
  static spawn(spec: BenchChildSpec): BenchChild {
    const fd = openSync(spec.logFile, 'a');
    try {
      const uid = spec.runAs?.uid;
      const child = spawn(spec.file, spec.args, {
        cwd: spec.cwd,
        env: spec.env,
        detached: true,
        stdio: ['ignore', fd, fd],
        ...(uid !== undefined ? { uid, gid: spec.runAs?.gid } : {}),
      });
      const handle = new BenchChild(spec, child);
      live.add(handle);
      installExitHook();
      return handle;
    } finally {
      closeSync(fd); // the child has its own copy
    }
  }

  get pid(): number {
    const pid = this.child.pid;
    if (pid === undefined) throw new Error(`${this.spec.name} has no pid (spawn failed)`);
    return pid;
  }

  get running(): boolean {
    return this.alive;
  }

  /** The last `lines` lines of the process's log, for error messages. */
  logTail(lines = 30): string {
    try {
      return readFileSync(this.spec.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /**
   * Sends `signal` (the program's own "shut down now" signal), waits up to `graceMs`, then
   * SIGKILLs the process and every descendant it had (Pgpool-II forks one per pool slot).
   */
  async stop(signal: NodeJS.Signals, graceMs = 5000): Promise<void> {
    if (!this.alive) return;
    const descendants = descendantPids(this.pid);
    killQuietly(this.pid, signal);
    const timedOut = await Promise.race([this.exited.then(() => false), delay(graceMs).then(() => true)]);
    if (timedOut) killQuietly(this.pid, 'SIGKILL');
    for (const pid of [...descendants, ...descendantPids(this.pid)]) killQuietly(pid, 'SIGKILL');
    await this.exited;
  }

  /** SIGKILL, synchronously: the last resort from `process.on('exit')`. */
  killSync(): void {
    if (!this.alive || this.child.pid === undefined) return;
    for (const pid of descendantPids(this.child.pid)) killQuietly(pid, 'SIGKILL');
    killQuietly(this.child.pid, 'SIGKILL');
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) child.killSync();
    for (const dir of runDirs) rmSync(dir, { recursive: true, force: true });
  });
}

/**
 * A fresh temp directory for one program's config, log, pid and socket files, owned by the
 * user that program runs as (it writes its pid file and sockets there).
 */
export function makeRunDir(prefix: string, runAs: RunAs): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  chmodSync(dir, 0o755);
  chownToRunAs(dir, runAs);
  runDirs.add(dir);
  installExitHook();
  return dir;
}

/** Removes a directory made by {@link makeRunDir} (once its program has stopped). */
export async function removeRunDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  runDirs.delete(dir);
}
