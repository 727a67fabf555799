/**
 * One redis-server process: spawned directly in the foreground (`--daemonize no`) so its pid is
 * known and a `kill -9` hits exactly it. It logs to a file in its own directory (`--logfile`);
 * what it prints before that file is open (a bad configuration directive) is kept from its
 * stdout/stderr, so a start-up failure can show both.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

import { ClusterError } from './errors.js';
import { followChild, isProcessAlive, killTree, settlesWithin, signalQuietly } from './process-tree.js';
import { redisCommand } from './redis-client.js';

/** Environment variable naming the redis-server binary to use instead of the one on PATH. */
export const REDIS_SERVER_ENV = 'RWSPLIT_REDIS_SERVER';

/** Where Debian's `redis-server` package puts it, for a PATH that lacks /usr/bin. */
const DEBIAN_REDIS_SERVER = '/usr/bin/redis-server';
const INSTALL_HINT = 'install the Debian package `redis-server` (`apt-get install redis-server`)';

/** How long a node may take to answer PING after it is spawned. */
export const REDIS_START_TIMEOUT_MS = 15_000;
const POLL_MS = 25;
const TAIL_LINES = 40;

function isExecutableFile(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

/**
 * Absolute path of redis-server: `$RWSPLIT_REDIS_SERVER` when set, else the first on PATH, else
 * Debian's /usr/bin/redis-server.
 *
 * @throws ClusterError `REDIS_BINARY_MISSING` saying to install the Debian package `redis-server`.
 */
export function redisServerBinary(): string {
  const fromEnv = process.env[REDIS_SERVER_ENV];
  if (fromEnv !== undefined && fromEnv !== '') {
    if (isExecutableFile(fromEnv)) return fromEnv;
    // An explicit setting that is wrong must not silently fall back to another install.
    throw new ClusterError(
      'REDIS_BINARY_MISSING',
      `${REDIS_SERVER_ENV}=${fromEnv} is not an executable file: fix or unset it, or ${INSTALL_HINT}`,
    );
  }
  const dirs = (process.env['PATH'] ?? '').split(path.delimiter).filter((d) => d !== '');
  const candidates = [...dirs.map((d) => path.join(d, 'redis-server')), DEBIAN_REDIS_SERVER];
  const found = candidates.find(isExecutableFile);
  if (found !== undefined) return found;
  throw new ClusterError('REDIS_BINARY_MISSING', `redis-server not found: ${INSTALL_HINT}`);
}

/** Everything a node's process needs that does not change across restarts. */
export interface RedisProcessOptions {
  id: string;
  binary: string;
  /** The node's own directory: its cwd and `--dir` (where a replica's sync files would go). */
  dir: string;
  logFile: string;
  /** For the readiness PING when the node has `requirepass`. */
  password: string | undefined;
}

/** A restartable redis-server for one node directory. */
export class RedisProcess {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private closed: Promise<void> = Promise.resolve();
  private alive = false;
  /** stdout/stderr lines of the current run. */
  private readonly output: string[] = [];
  /** Size of the log file when the current run started: its tail is judged on this run only. */
  private logOffset = 0;

  constructor(private readonly opts: RedisProcessOptions) {}

  /** The server's pid while it runs. */
  get pid(): number | undefined {
    return this.alive ? this.child?.pid : undefined;
  }

  get running(): boolean {
    return this.alive;
  }

  /** The last lines of this run's output and log file, for error messages. */
  logTail(): string {
    let log = '';
    try {
      log = readFileSync(this.opts.logFile).subarray(this.logOffset).toString('utf8');
    } catch {
      // No log file yet: the server died before opening it (its output says why).
    }
    const lines = [...this.output, ...log.split('\n').filter((l) => l !== '')];
    return lines.slice(-TAIL_LINES).join('\n');
  }

  /**
   * Spawns the server on `port` with `args` (the role and tuning options; this class adds
   * `--port`, `--dir`, `--logfile`, `--daemonize no`) and waits until it answers PING with PONG.
   *
   * @throws ClusterError `PORT_IN_USE`, `NODE_EXITED` or `NODE_START_TIMEOUT`, with the log tail.
   */
  async start(port: number, args: readonly string[], timeoutMs = REDIS_START_TIMEOUT_MS): Promise<void> {
    if (this.alive) throw new ClusterError('BAD_OPTIONS', `${this.opts.id} is already running`);
    const { dir, logFile } = this.opts;
    // Own options first, `args` after: for redis-server the last occurrence of an option wins.
    this.spawnServer([
      '--port',
      String(port),
      '--dir',
      dir,
      '--logfile',
      logFile,
      '--daemonize',
      'no',
      ...args,
    ]);
    await this.waitPong(port, timeoutMs);
  }

  private spawnServer(args: string[]): void {
    try {
      this.logOffset = statSync(this.opts.logFile).size;
    } catch {
      this.logOffset = 0;
    }
    this.output.length = 0;
    const child = spawn(this.opts.binary, args, { cwd: this.opts.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.alive = true;
    // `closed` waits for any child the server forked too (they hold its pipes).
    ({ exited: this.exited, closed: this.closed } = followChild(
      child,
      this.opts.binary,
      (l) => this.record(l),
      () => {
        if (this.child === child) this.alive = false;
      },
    ));
  }

  private record(line: string): void {
    this.output.push(line);
    if (this.output.length > TAIL_LINES) this.output.shift();
  }

  private async waitPong(port: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let lastError = 'none';
    while (Date.now() < deadline) {
      if (!this.alive) throw await this.exitedError(port);
      try {
        const reply = await redisCommand({ port, password: this.opts.password, timeoutMs: 1000 }, 'PING');
        if (reply === 'PONG') return;
        lastError = `PING answered '${reply}'`;
      } catch (err) {
        lastError = err instanceof Error ? err.message : String(err);
      }
      await delay(POLL_MS);
    }
    throw new ClusterError(
      'NODE_START_TIMEOUT',
      `${this.opts.id} did not answer PING on port ${port} within ${timeoutMs} ms ` +
        `(last error: ${lastError}); log tail:\n${this.logTail()}`,
    );
  }

  private async exitedError(port: number): Promise<ClusterError> {
    await settlesWithin(this.closed, 1000); // let the last output lines arrive: they say why
    const tail = this.logTail();
    // server.c listenToPort(): "Could not create server TCP listening socket …: bind: Address already in use".
    const code = /Address already in use/i.test(tail) ? 'PORT_IN_USE' : 'NODE_EXITED';
    return new ClusterError(
      code,
      `${this.opts.id} exited during start-up on port ${port} (log: ${this.opts.logFile}); log tail:\n${tail}`,
    );
  }

  /** Sends `sig` to the server. @throws ClusterError `NODE_NOT_RUNNING` */
  signal(sig: NodeJS.Signals): void {
    const pid = this.pid;
    if (pid === undefined) throw new ClusterError('NODE_NOT_RUNNING', `${this.opts.id} is not running`);
    process.kill(pid, sig);
  }

  /** Crashes the node: SIGKILL to the server and any child it forked (an RDB transfer), then waits until all are gone. */
  async kill(): Promise<void> {
    const pid = this.pid;
    if (pid === undefined) return;
    const children = killTree(pid);
    await this.exited;
    const deadline = Date.now() + 10_000;
    while (children.some(isProcessAlive)) {
      if (Date.now() > deadline) {
        throw new ClusterError('NODE_STOP_TIMEOUT', `${this.opts.id}: processes still alive after SIGKILL`);
      }
      await delay(5);
    }
    await settlesWithin(this.closed, 1000);
  }

  /** Shutdown by SIGTERM; SIGKILL of the tree when it takes longer than `timeoutMs`. */
  async stop(timeoutMs = 5000): Promise<void> {
    const pid = this.pid;
    if (pid === undefined) return;
    signalQuietly(pid, 'SIGTERM');
    signalQuietly(pid, 'SIGCONT'); // a SIGSTOPped server only acts on SIGTERM once continued
    if (!(await settlesWithin(this.exited, timeoutMs))) await this.kill();
    await settlesWithin(this.closed, 1000);
  }

  /** Synchronous SIGKILL of the tree, for a `process.on('exit')` handler. */
  killSync(): void {
    const pid = this.pid;
    if (pid !== undefined) killTree(pid);
  }
}
