/**
 * Linux process helpers read from /proc: the children of a postmaster (its backends and
 * auxiliary processes) and whether a pid is really alive.
 *
 * Why: killing only the postmaster with SIGKILL leaves its children running for a moment, and
 * while any of them is attached to the old shared memory a restart fails with "pre-existing
 * shared memory block is still in use". A "node crash" therefore kills the whole tree.
 */
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

interface ProcStat {
  state: string;
  ppid: number;
}

function readStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // Format: "pid (comm) state ppid …"; comm may itself contain spaces and parentheses.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const state = rest[0];
  const ppid = Number(rest[1]);
  return state === undefined || !Number.isInteger(ppid) ? undefined : { state, ppid };
}

/** True when `pid` exists and is not a zombie (a zombie has exited; only its parent's wait is missing). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  const stat = readStat(pid);
  return stat === undefined ? !procAvailable() : stat.state !== 'Z';
}

let procChecked: boolean | undefined;
function procAvailable(): boolean {
  if (procChecked === undefined) procChecked = readStat(process.pid) !== undefined;
  return procChecked;
}

/** Pids whose parent is `pid` (empty when /proc is unavailable). */
export function childPids(pid: number): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  const children: number[] = [];
  for (const entry of entries) {
    const child = Number(entry);
    if (!Number.isInteger(child)) continue;
    const stat = readStat(child);
    if (stat !== undefined && stat.ppid === pid && stat.state !== 'Z') children.push(child);
  }
  return children;
}

/** Sends `signal` to `pid`, ignoring "no such process". */
export function signalQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/**
 * Kills a process and its direct children with SIGKILL, as a machine crash would. The parent
 * is stopped first so it cannot fork a new child between listing and killing.
 *
 * @returns the children's pids, for waiting on them.
 */
export function killTree(pid: number): number[] {
  signalQuietly(pid, 'SIGSTOP');
  const children = childPids(pid);
  signalQuietly(pid, 'SIGKILL');
  for (const child of children) signalQuietly(child, 'SIGKILL');
  return children;
}

/**
 * Resolves true once `promise` settles, false after `timeoutMs`. The timer is cleared either
 * way: a pending timer would keep the test process alive after the cluster stopped.
 */
export async function settlesWithin(promise: Promise<unknown>, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Follows a spawned server: `exited` resolves when the process is gone (or could not be
 * spawned, which `record` is told), `closed` once every holder of its pipes is gone (its
 * children too); each output line goes to `record`.
 */
export function followChild(
  child: ChildProcess,
  binary: string,
  record: (line: string) => void,
  onGone: () => void,
): { exited: Promise<void>; closed: Promise<void> } {
  const exited = new Promise<void>((resolve) => {
    const gone = (): void => {
      onGone();
      resolve();
    };
    child.once('exit', gone);
    child.once('error', (err) => {
      record(`[launcher] cannot spawn ${binary}: ${err.message}`);
      gone();
    });
  });
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
  for (const stream of [child.stdout, child.stderr]) {
    if (stream !== null) createInterface({ input: stream, crlfDelay: Infinity }).on('line', record);
  }
  return { exited, closed };
}
