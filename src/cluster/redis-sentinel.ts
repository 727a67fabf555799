/**
 * Real Redis Sentinels for the tests and the demo: N `redis-sentinel` processes (Debian
 * package `redis-sentinel`) on free ports, each with its own config file in a directory the
 * launcher owns (Sentinel rewrites its config file as it learns the topology, so the file
 * must be its own and writable), monitoring the given primaries:
 *
 *   sentinel monitor <name> 127.0.0.1 <port> <quorum>
 *   sentinel down-after-milliseconds <name> <ms>
 *   sentinel failover-timeout <name> <ms>
 *
 * `start()` returns once every Sentinel answers PING and knows the others (they discover
 * each other through hello messages on the primary, every 2 s) — without that, a failover
 * could find no quorum. https://redis.io/docs/latest/operate/oss_and_stack/management/sentinel/
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

import { ClusterError } from './errors.js';
import { freePorts } from './free-port.js';
import { waitPortRefuses } from './postmaster.js';
import { followChild, killTree, settlesWithin, signalQuietly } from './process-tree.js';
import { redisCommand, redisRequest, replyText } from './redis-client.js';

/** Environment variable naming the redis-sentinel binary to use instead of the one on PATH. */
export const REDIS_SENTINEL_ENV = 'RWSPLIT_REDIS_SENTINEL';
const INSTALL_HINT = 'install the Debian package `redis-sentinel` (`apt-get install redis-sentinel`)';
const READY_TIMEOUT_MS = 20_000;
const POLL_MS = 50;

/** A primary for the Sentinels to monitor. */
export interface SentinelMaster {
  /** the name clients ask Sentinel about (`sentinelName` in rwsplit's config) */
  name: string;
  host?: string;
  port: number;
  /** replicas the Sentinels must have discovered before start() returns (default 0) */
  replicas?: number;
}

/** Options of {@link RedisSentinels.start}. */
export interface RedisSentinelOptions {
  masters: SentinelMaster[];
  /** Sentinel processes (default 3) */
  count?: number;
  /** Sentinels that must agree the primary is down (default 2) */
  quorum?: number;
  /** `down-after-milliseconds` (default 1000) */
  downAfterMs?: number;
  /** `failover-timeout` (default 10000) */
  failoverTimeoutMs?: number;
  /** `auth-pass` for the monitored nodes */
  password?: string;
  /** Directory to own; default a fresh temp dir removed on stop(). */
  dir?: string;
}

/** One running Sentinel. */
export interface SentinelHandle {
  id: string;
  host: '127.0.0.1';
  port: number;
  pid: number | undefined;
}

interface SentinelRuntime {
  handle: SentinelHandle;
  child: ChildProcess | undefined;
  exited: Promise<void>;
  output: string[];
}

/** Absolute path of redis-sentinel: `$RWSPLIT_REDIS_SENTINEL`, else PATH, else /usr/bin. */
export function redisSentinelBinary(): string {
  const fromEnv = process.env[REDIS_SENTINEL_ENV];
  const dirs = (process.env['PATH'] ?? '').split(path.delimiter).filter((d) => d !== '');
  const candidates =
    fromEnv !== undefined && fromEnv !== ''
      ? [fromEnv]
      : [...dirs.map((d) => path.join(d, 'redis-sentinel')), '/usr/bin/redis-sentinel'];
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // next
    }
  }
  throw new ClusterError('REDIS_BINARY_MISSING', `redis-sentinel not found: ${INSTALL_HINT}`);
}

/** The config file of one Sentinel. */
export function sentinelConfig(opts: RedisSentinelOptions, port: number, dir: string): string {
  const quorum = opts.quorum ?? 2;
  const lines = [
    `port ${port}`,
    'bind 127.0.0.1',
    'daemonize no',
    `dir ${dir}`,
    `logfile ${path.join(dir, 'sentinel.log')}`,
  ];
  for (const m of opts.masters) {
    lines.push(
      `sentinel monitor ${m.name} ${m.host ?? '127.0.0.1'} ${m.port} ${quorum}`,
      `sentinel down-after-milliseconds ${m.name} ${opts.downAfterMs ?? 1000}`,
      `sentinel failover-timeout ${m.name} ${opts.failoverTimeoutMs ?? 10_000}`,
      `sentinel parallel-syncs ${m.name} 1`,
    );
    if (opts.password !== undefined) lines.push(`sentinel auth-pass ${m.name} ${opts.password}`);
  }
  return lines.join('\n') + '\n';
}

const live = new Set<RedisSentinels>();
let exitHookInstalled = false;

/** Running Sentinels. Create with {@link RedisSentinels.start}. */
export class RedisSentinels {
  readonly nodes: SentinelHandle[] = [];
  private readonly runtimes = new Map<string, SentinelRuntime>();
  private stopping: Promise<void> | undefined;

  private constructor(
    readonly dir: string,
    private readonly ownsDir: boolean,
    private readonly opts: RedisSentinelOptions,
  ) {}

  /**
   * Starts the Sentinels and waits until each answers and knows every other one (and the
   * masters' expected replicas).
   * @throws ClusterError REDIS_BINARY_MISSING, BAD_OPTIONS, NODE_START_TIMEOUT (with the log tail)
   */
  static async start(opts: RedisSentinelOptions): Promise<RedisSentinels> {
    const count = opts.count ?? 3;
    if (!Number.isInteger(count) || count < 1 || opts.masters.length === 0) {
      throw new ClusterError('BAD_OPTIONS', 'need at least one Sentinel and one master to monitor');
    }
    const binary = redisSentinelBinary();
    const ports = await freePorts(count);
    const owns = opts.dir === undefined;
    const dir = opts.dir ?? mkdtempSync(path.join(os.tmpdir(), 'rwsplit-sentinel-'));
    const sentinels = new RedisSentinels(path.resolve(dir), owns, opts);
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.on('exit', () => {
        for (const s of live) s.killSyncOnExit();
      });
    }
    live.add(sentinels);
    try {
      ports.forEach((port, i) => sentinels.spawn(binary, `sentinel${i + 1}`, port));
      await sentinels.waitReady(count);
    } catch (err) {
      await sentinels.stop();
      throw err;
    }
    return sentinels;
  }

  private spawn(binary: string, id: string, port: number): void {
    const dir = path.join(this.dir, id);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const conf = path.join(dir, 'sentinel.conf');
    writeFileSync(conf, sentinelConfig(this.opts, port, dir));
    const child = spawn(binary, [conf], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    const rt: SentinelRuntime = {
      handle: { id, host: '127.0.0.1', port, pid: child.pid },
      child,
      exited: Promise.resolve(),
      output: [],
    };
    rt.exited = followChild(
      child,
      binary,
      (line) => rt.output.push(line),
      () => {
        rt.handle.pid = undefined;
      },
    ).exited;
    this.nodes.push(rt.handle);
    this.runtimes.set(id, rt);
  }

  private async waitReady(count: number): Promise<void> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (const rt of this.runtimes.values()) {
      let last = 'not polled';
      for (;;) {
        try {
          last = await this.readiness(rt, count);
          if (last === '') break;
        } catch (err) {
          last = (err as Error).message;
        }
        if (rt.handle.pid === undefined || Date.now() > deadline) {
          throw new ClusterError(
            'NODE_START_TIMEOUT',
            `${rt.handle.id} (port ${rt.handle.port}) not ready (${last}); log tail:\n${this.logTail(rt)}`,
          );
        }
        await delay(POLL_MS);
      }
    }
  }

  /** '' when the Sentinel knows the others and the expected replicas of every master; else what is missing. */
  private async readiness(rt: SentinelRuntime, count: number): Promise<string> {
    for (const m of this.opts.masters) {
      const fields = pairs(
        replyText(
          await redisRequest({ port: rt.handle.port, timeoutMs: 1000 }, ['SENTINEL', 'MASTER', m.name]),
        ),
      );
      const others = Number(fields.get('num-other-sentinels'));
      const replicas = Number(fields.get('num-slaves'));
      if (others < count - 1) return `${m.name}: knows ${others} other sentinels of ${count - 1}`;
      if (replicas < (m.replicas ?? 0)) return `${m.name}: knows ${replicas} replicas of ${m.replicas}`;
    }
    return '';
  }

  private logTail(rt: SentinelRuntime): string {
    let log = '';
    try {
      log = readFileSync(path.join(this.dir, rt.handle.id, 'sentinel.log'), 'utf8');
    } catch {
      // not opened yet
    }
    return [...rt.output, ...log.split('\n')]
      .filter((l) => l !== '')
      .slice(-30)
      .join('\n');
  }

  /** Sends one command to a Sentinel; the reply as `redis-cli --raw` prints it. */
  command(id: string, ...args: string[]): Promise<string> {
    return redisCommand({ port: this.runtime(id).handle.port }, ...args);
  }

  /** `SENTINEL get-master-addr-by-name` as the first Sentinel that answers sees it. */
  async masterAddress(name: string): Promise<{ host: string; port: number } | null> {
    for (const n of this.nodes) {
      if (n.pid === undefined) continue;
      try {
        const [host, port] = (await this.command(n.id, 'SENTINEL', 'get-master-addr-by-name', name)).split(
          '\n',
        );
        return host ? { host, port: Number(port) } : null;
      } catch {
        // next
      }
    }
    return null;
  }

  /** Crashes one Sentinel (kill -9) and waits until its port refuses connections. */
  async kill(id: string): Promise<void> {
    const rt = this.runtime(id);
    if (rt.handle.pid !== undefined) killTree(rt.handle.pid);
    await rt.exited;
    await waitPortRefuses(rt.handle.port);
  }

  /** Stops every Sentinel (SIGTERM, SIGKILL after 5 s) and removes the directory it created. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    await Promise.all(
      [...this.runtimes.values()].map(async (rt) => {
        const pid = rt.handle.pid;
        if (pid === undefined) return;
        signalQuietly(pid, 'SIGTERM');
        if (!(await settlesWithin(rt.exited, 5000))) {
          killTree(pid);
          await rt.exited;
        }
      }),
    );
    live.delete(this);
    if (this.ownsDir) rmSync(this.dir, { recursive: true, force: true });
  }

  /** @internal synchronous last resort from `process.on('exit')` */
  killSyncOnExit(): void {
    for (const rt of this.runtimes.values()) if (rt.handle.pid !== undefined) killTree(rt.handle.pid);
    try {
      if (this.ownsDir) rmSync(this.dir, { recursive: true, force: true });
    } catch {
      // still dying
    }
  }

  private runtime(id: string): SentinelRuntime {
    const rt = this.runtimes.get(id);
    if (!rt)
      throw new ClusterError('UNKNOWN_NODE', `no Sentinel '${id}' (${[...this.runtimes.keys()].join(', ')})`);
    return rt;
  }
}

/** `SENTINEL MASTER` as raw text (one item per line, field then value) → fields. */
function pairs(text: string): Map<string, string> {
  const items = text.split('\n');
  const out = new Map<string, string>();
  for (let i = 0; i + 1 < items.length; i += 2) out.set(items[i]!, items[i + 1]!);
  return out;
}
