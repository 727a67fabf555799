/**
 * CPU time of a process (tree) read from /proc, for "proxy CPU per transaction".
 *
 * Fields of /proc/<pid>/stat (proc(5)), counted after the `(comm)` field, which may contain
 * spaces: state(3) ppid(4) … utime(14) stime(15) cutime(16) cstime(17), all in clock ticks.
 * utime/stime cover every thread of the process; cutime/cstime hold the time of children the
 * process has already waited for, so a pgpool child that exits (and is reaped by its parent)
 * during a run still counts.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

interface StatFields {
  ppid: number;
  /** utime + stime */
  ownTicks: number;
  /** cutime + cstime */
  reapedChildTicks: number;
}

function readStat(pid: number): StatFields | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined; // gone
  }
  // After ") " come the fields from state(3) on: index 0 is field 3.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const field = (n: number): number => Number(rest[n - 3]);
  return {
    ppid: field(4),
    ownTicks: field(14) + field(15),
    reapedChildTicks: field(16) + field(17),
  };
}

/** Every live pid mapped to its parent pid. */
function parentMap(): Map<number, number> {
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    const stat = readStat(pid);
    if (stat !== undefined) parents.set(pid, stat.ppid);
  }
  return parents;
}

/** All descendants of `root` (children, grandchildren…), not `root` itself. */
export function descendantPids(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const [pid, ppid] of parentMap()) {
    const list = children.get(ppid) ?? [];
    list.push(pid);
    children.set(ppid, list);
  }
  const found: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    const pid = queue.shift() as number;
    for (const child of children.get(pid) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}

/**
 * CPU ticks (user + system) used so far by `root` and, when `tree` is set, by all its live
 * descendants plus the children every member of the tree has reaped. The difference of two
 * readings is the tree's CPU use in between, even when members came and went.
 */
export function cpuTicks(root: number, tree: boolean): number {
  const pids = tree ? [root, ...descendantPids(root)] : [root];
  let ticks = 0;
  for (const pid of pids) {
    const stat = readStat(pid);
    if (stat === undefined) continue;
    ticks += stat.ownTicks + (tree ? stat.reapedChildTicks : 0);
  }
  return ticks;
}

let ticksPerSecond: number | undefined;

/** The kernel's USER_HZ (`getconf CLK_TCK`, 100 on every mainstream Linux). */
export function clockTicksPerSecond(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}
