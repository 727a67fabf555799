/**
 * One postmaster process: spawned directly (not through pg_ctl) so its pid is known and a
 * `kill -9` hits exactly it; its output is split into lines for the node's log.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';

import { ClusterError } from './errors.js';
import { followChild, isProcessAlive, killTree, settlesWithin, signalQuietly } from './process-tree.js';
import { pgChildEnv, type RunAs } from './run-as.js';
import { withClient, type SqlTarget } from './sql.js';

/** How long a node may take to accept connections after its postmaster is spawned. */
export const START_TIMEOUT_MS = 30_000;
const POLL_MS = 50;
const TAIL_LINES = 40;

/** Everything a postmaster needs that does not change across restarts. */
export interface PostmasterOptions {
  id: string;
  dataDir: string;
  socketDir: string;
  cwd: string;
  postgresBin: string;
  runAs: RunAs;
  /** Receives each line the postmaster writes to stdout or stderr. */
  onLine: (line: string) => void;
}

/** A restartable postmaster for one data directory. */
export class Postmaster {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private closed: Promise<void> = Promise.resolve();
  private alive = false;
  private readonly tail: string[] = [];

  constructor(private readonly opts: PostmasterOptions) {}

  /** The postmaster's pid while it runs. */
  get pid(): number | undefined {
    return this.alive ? this.child?.pid : undefined;
  }

  get running(): boolean {
    return this.alive;
  }

  /** The last lines the node logged, for error messages. */
  logTail(): string {
    return this.tail.join('\n');
  }

  /**
   * Spawns the postmaster on `port` and waits until it accepts TCP connections and answers
   * `SELECT 1` over `readyTarget` (a hot standby answers once it reaches a consistent state).
   *
   * @throws ClusterError `PORT_IN_USE`, `NODE_EXITED` or `NODE_START_TIMEOUT`, with the log tail.
   */
  async start(port: number, readyTarget: SqlTarget, timeoutMs = START_TIMEOUT_MS): Promise<void> {
    if (this.alive) throw new ClusterError('BAD_OPTIONS', `${this.opts.id} is already running`);
    this.spawnPostmaster(port);
    await this.waitReady(port, readyTarget, timeoutMs);
  }

  private spawnPostmaster(port: number): void {
    const { dataDir, socketDir, runAs } = this.opts;
    const args = ['-D', dataDir, '-p', String(port), '-k', socketDir, '-c', 'listen_addresses=127.0.0.1'];
    const child = spawn(this.opts.postgresBin, args, {
      cwd: this.opts.cwd,
      env: pgChildEnv(runAs),
      detached: false,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(runAs.uid !== undefined ? { uid: runAs.uid, gid: runAs.gid } : {}),
    });
    this.child = child;
    this.alive = true;
    this.tail.length = 0; // start-up errors are judged on this run's lines only
    // `closed` waits for the postmaster's children too (they hold its pipes).
    ({ exited: this.exited, closed: this.closed } = followChild(
      child,
      this.opts.postgresBin,
      (l) => this.record(l),
      () => {
        if (this.child === child) this.alive = false;
      },
    ));
  }

  private record(line: string): void {
    this.tail.push(line);
    if (this.tail.length > TAIL_LINES) this.tail.shift();
    try {
      this.opts.onLine(line);
    } catch {
      // A throwing log callback must not take the node down.
    }
  }

  private async waitReady(port: number, target: SqlTarget, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let lastError = 'none';
    while (Date.now() < deadline) {
      if (!this.alive) throw await this.exitedError();
      try {
        await tcpConnect(port);
        await withClient(target, (client) => client.query('SELECT 1'), 1000);
        return;
      } catch (err) {
        lastError = err instanceof Error ? err.message : String(err);
      }
      await delay(POLL_MS);
    }
    throw new ClusterError(
      'NODE_START_TIMEOUT',
      `${this.opts.id} did not accept connections on port ${port} within ${timeoutMs} ms ` +
        `(last error: ${lastError}); log tail:\n${this.logTail()}`,
    );
  }

  private async exitedError(): Promise<ClusterError> {
    // Let the last log lines arrive: they say why it exited.
    await settlesWithin(this.closed, 1000);
    const tail = this.logTail();
    // Messages from PostgreSQL's pqcomm.c (bind) and ipc/shmem start-up (a crashed
    // postmaster's children still attached to its shared memory).
    const code = /Address already in use/i.test(tail)
      ? 'PORT_IN_USE'
      : /pre-existing shared memory block .* is still in use/.test(tail)
        ? 'OLD_PROCESSES_ALIVE'
        : 'NODE_EXITED';
    return new ClusterError(code, `${this.opts.id} exited during start-up; log tail:\n${tail}`);
  }

  /** Sends `sig` to the postmaster. @throws ClusterError `NODE_NOT_RUNNING` */
  signal(sig: NodeJS.Signals): void {
    const pid = this.pid;
    if (pid === undefined) throw new ClusterError('NODE_NOT_RUNNING', `${this.opts.id} is not running`);
    process.kill(pid, sig);
  }

  /** Crashes the node: SIGKILL to the postmaster and its children, then waits until all are gone. */
  async kill(): Promise<void> {
    const pid = this.pid;
    if (pid === undefined) return;
    const children = killTree(pid);
    await this.exited;
    await waitFor(() => children.every((child) => !isProcessAlive(child)), 10_000);
    await settlesWithin(this.closed, 1000);
  }

  /** Fast shutdown (SIGINT); SIGKILL of the whole tree when it takes longer than `timeoutMs`. */
  async stop(timeoutMs = 5000): Promise<void> {
    const pid = this.pid;
    if (pid === undefined) return;
    signalQuietly(pid, 'SIGINT');
    // A SIGSTOPped postmaster only acts on SIGINT once continued.
    signalQuietly(pid, 'SIGCONT');
    const stopped = await settlesWithin(this.exited, timeoutMs);
    if (!stopped) await this.kill();
    await settlesWithin(this.closed, 1000);
  }

  /** Synchronous SIGKILL of the tree, for a `process.on('exit')` handler. */
  killSync(): void {
    const pid = this.pid;
    if (pid !== undefined) killTree(pid);
  }
}

/** Resolves when a TCP connection to 127.0.0.1:`port` succeeds, rejects on any error. */
export function tcpConnect(port: number, timeoutMs = 1000): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`connect to port ${port} timed out`)));
    socket.once('connect', () => {
      socket.destroy();
      resolve();
    });
    socket.once('error', reject);
  });
}

/** Polls until 127.0.0.1:`port` refuses TCP connections. */
export async function waitPortRefuses(port: number, timeoutMs = 10_000): Promise<void> {
  const refused = async (): Promise<boolean> => {
    try {
      await tcpConnect(port, 200);
      return false;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ECONNREFUSED';
    }
  };
  const deadline = Date.now() + timeoutMs;
  while (!(await refused())) {
    if (Date.now() > deadline) {
      throw new ClusterError(
        'NODE_STOP_TIMEOUT',
        `port ${port} still accepts connections after ${timeoutMs} ms`,
      );
    }
    await delay(POLL_MS);
  }
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline)
      throw new ClusterError('NODE_STOP_TIMEOUT', 'processes still alive after SIGKILL');
    await delay(POLL_MS / 5);
  }
}
