/**
 * A local Redis deployment — S shards, each a primary plus N replicas linked by Redis's own
 * replication (`replicaof`) — started from the machine's redis-server on free ports, in a
 * directory the launcher owns, nothing persisted. Used by `rwsplit demo` and by the Redis
 * integration tests: real servers, never mocks.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

import { ClusterError } from './errors.js';
import { freePort, freePorts } from './free-port.js';
import { waitPortRefuses } from './postmaster.js';
import { parseInfo, redisCommand, type RedisTarget } from './redis-client.js';
import { RedisProcess, redisServerBinary } from './redis-process.js';

/** Options of {@link RedisCluster.start}. */
export interface RedisClusterOptions {
  /**
   * Directory to own. Default: a fresh mkdtemp under os.tmpdir() ('rwsplit-redis-'), removed on
   * stop(). A directory given here is kept on stop() (logs stay readable); node directories of
   * a previous run found in it are replaced.
   */
  dir?: string;
  /** Number of shards, named 's1', 's2', … (default 2). */
  shards?: number;
  /** Replicas per shard (default 2). */
  replicas?: number;
  /** `requirepass` and `masterauth` on every node when set; {@link RedisCluster.command} then sends AUTH. */
  password?: string;
  /**
   * More redis-server arguments for every node, e.g. `['--shutdown-timeout', '10']`. They come
   * last, so they override the launcher's own settings (the last occurrence of an option wins).
   */
  extraArgs?: string[];
}

/** One node of a running cluster. */
export interface RedisNodeHandle {
  /** 'redis-s1-primary', 'redis-s1-replica1', … */
  id: string;
  /** 's1', 's2', … */
  shard: string;
  /** The role the launcher gave it (a later `REPLICAOF` sent by someone else is not tracked). */
  role: 'primary' | 'replica';
  host: '127.0.0.1';
  port: number;
  /** The redis-server pid while it runs. */
  pid: number | undefined;
}

interface NodeRuntime {
  handle: RedisNodeHandle;
  proc: RedisProcess;
  /** The primary of a replica's shard; undefined for a primary. */
  primary: RedisNodeHandle | undefined;
  /** The primary port a replica was last told to follow (at spawn or by REPLICAOF). */
  following: number | undefined;
}

interface ShardRuntime {
  name: string;
  primary: NodeRuntime;
  replicas: NodeRuntime[];
}

/** How long start-up and restart() wait for a replica's link to its primary. */
const LINK_TIMEOUT_MS = 15_000;
const POLL_MS = 25;
/** Attempts to start a node on a fresh port when its free port got taken meanwhile. */
const PORT_ATTEMPTS = 3;
/** The RDB file a primary writes for a full sync (redis.conf `dbfilename` default). */
const SYNC_RDB_FILE = 'dump.rdb';
/** Each node's log file, in its own directory. */
export const REDIS_LOG_FILE = 'redis.log';

/** Clusters that still have processes, killed synchronously if the test process exits. */
const live = new Set<RedisCluster>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const cluster of live) cluster.killSyncOnExit();
  });
}

/** Settings every node gets, before the role (`replicaof`) and the caller's `extraArgs`. */
function baseArgs(password: string | undefined): string[] {
  return [
    '--bind',
    '127.0.0.1',
    // Nothing persisted: no RDB snapshots (an empty `save` clears the default save points), no AOF.
    '--save',
    '',
    '--appendonly',
    'no',
    // A full sync writes the RDB to the primary's dir and streams it; unlike a diskless sync
    // (Redis 7's default), the replica then gets writes at once instead of after its next
    // REPLCONF ACK, up to 1 s later (replication.c: repl_start_cmd_stream_on_ack). The primary
    // deletes that file once the replicas are online (`rdb-del-sync-files`, persistence-less
    // instances only) and startNode() removes a leftover one; the replica loads the RDB from
    // the socket into memory (`swapdb`), never writing it.
    '--repl-diskless-sync',
    'no',
    '--rdb-del-sync-files',
    'yes',
    '--repl-diskless-load',
    'swapdb',
    // On SIGTERM, do not wait up to 10 s for lagging replicas: there is nothing to keep.
    '--shutdown-timeout',
    '0',
    ...(password !== undefined ? ['--requirepass', password, '--masterauth', password] : []),
  ];
}

function validate(opts: RedisClusterOptions): { shards: number; replicas: number } {
  const shards = opts.shards ?? 2;
  const replicas = opts.replicas ?? 2;
  if (!Number.isInteger(shards) || shards < 1) {
    throw new ClusterError('BAD_OPTIONS', `shards must be an integer >= 1 (got ${shards})`);
  }
  if (!Number.isInteger(replicas) || replicas < 0) {
    throw new ClusterError('BAD_OPTIONS', `replicas must be an integer >= 0 (got ${replicas})`);
  }
  // An empty requirepass means "no password" to Redis: refuse rather than silently run open.
  if (opts.password === '') throw new ClusterError('BAD_OPTIONS', 'password must not be empty');
  return { shards, replicas };
}

function ownDir(dir: string | undefined): { dir: string; owns: boolean } {
  try {
    if (dir === undefined) return { dir: mkdtempSync(path.join(os.tmpdir(), 'rwsplit-redis-')), owns: true };
    const abs = path.resolve(dir);
    mkdirSync(abs, { recursive: true });
    return { dir: abs, owns: false };
  } catch (err) {
    throw new ClusterError('DIR_NOT_ACCESSIBLE', `cannot create ${dir ?? 'a temporary directory'}: ${err}`, {
      cause: err,
    });
  }
}

function isCode(err: unknown, code: string): boolean {
  return err instanceof ClusterError && err.code === code;
}

/** A running local Redis deployment. Create with {@link RedisCluster.start}. */
export class RedisCluster {
  readonly dir: string;
  readonly nodes: RedisNodeHandle[] = [];
  private readonly runtimes = new Map<string, NodeRuntime>();
  private readonly shards: ShardRuntime[] = [];
  private stopping: Promise<void> | undefined;

  private constructor(
    dir: string,
    private readonly ownsDir: boolean,
    private readonly binary: string,
    private readonly opts: RedisClusterOptions,
    layout: { shards: number; replicas: number },
    ports: number[],
  ) {
    this.dir = dir;
    const nextPort = (): number => {
      const port = ports.shift();
      if (port === undefined) throw new Error('not enough ports');
      return port;
    };
    for (let s = 1; s <= layout.shards; s++) {
      const name = `s${s}`;
      const primary = this.addNode(name, 'primary', `redis-${name}-primary`, nextPort(), undefined);
      const replicas: NodeRuntime[] = [];
      for (let r = 1; r <= layout.replicas; r++) {
        replicas.push(this.addNode(name, 'replica', `redis-${name}-replica${r}`, nextPort(), primary.handle));
      }
      this.shards.push({ name, primary, replicas });
    }
  }

  /**
   * Starts every node at once (replicas with `--replicaof` their primary) and resolves when each
   * answers PING and every replica's link to its primary is up.
   *
   * @throws ClusterError with a stable code: REDIS_BINARY_MISSING, BAD_OPTIONS, DIR_NOT_ACCESSIBLE,
   * NODE_EXITED or NODE_START_TIMEOUT (with the node's log tail), REPLICATION_TIMEOUT.
   */
  static async start(opts: RedisClusterOptions = {}): Promise<RedisCluster> {
    const layout = validate(opts);
    const binary = redisServerBinary(); // fail early, with the install hint, before creating anything
    const ports = await freePorts(layout.shards * (layout.replicas + 1));
    const { dir, owns } = ownDir(opts.dir);
    let cluster: RedisCluster;
    try {
      // A copy: the caller may reuse its arrays, restarts must get the same arguments.
      const own = { ...opts, extraArgs: [...(opts.extraArgs ?? [])] };
      cluster = new RedisCluster(dir, owns, binary, own, layout, ports);
    } catch (err) {
      if (owns) rmSync(dir, { recursive: true, force: true });
      throw new ClusterError('DIR_NOT_ACCESSIBLE', `cannot prepare node directories in ${dir}: ${err}`, {
        cause: err,
      });
    }
    installExitHook();
    live.add(cluster);
    try {
      await cluster.boot();
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  /** Shard names in order: 's1', 's2', … */
  get shardNames(): string[] {
    return this.shards.map((s) => s.name);
  }

  /** The handles of one shard. @throws ClusterError `UNKNOWN_NODE` for an unknown shard name. */
  shard(name: string): { primary: RedisNodeHandle; replicas: RedisNodeHandle[] } {
    const shard = this.shards.find((s) => s.name === name);
    if (shard === undefined) {
      throw new ClusterError('UNKNOWN_NODE', `no shard '${name}' (shards: ${this.shardNames.join(', ')})`);
    }
    return { primary: shard.primary.handle, replicas: shard.replicas.map((r) => r.handle) };
  }

  private addNode(
    shard: string,
    role: RedisNodeHandle['role'],
    id: string,
    port: number,
    primary: RedisNodeHandle | undefined,
  ): NodeRuntime {
    const nodeDir = path.join(this.dir, id);
    rmSync(nodeDir, { recursive: true, force: true }); // a previous run's files in a given dir
    mkdirSync(nodeDir);
    const proc = new RedisProcess({
      id,
      binary: this.binary,
      dir: nodeDir,
      logFile: path.join(nodeDir, REDIS_LOG_FILE),
      password: this.opts.password,
    });
    const handle: RedisNodeHandle = {
      id,
      shard,
      role,
      host: '127.0.0.1',
      port,
      // Live: undefined as soon as the server exits, however it died.
      get pid() {
        return proc.pid;
      },
    };
    const runtime: NodeRuntime = { handle, proc, primary, following: undefined };
    this.nodes.push(handle);
    this.runtimes.set(id, runtime);
    return runtime;
  }

  private runtime(nodeId: string): NodeRuntime {
    const runtime = this.runtimes.get(nodeId);
    if (runtime === undefined) {
      const known = [...this.runtimes.keys()].join(', ');
      throw new ClusterError('UNKNOWN_NODE', `no node '${nodeId}' in this cluster (nodes: ${known})`);
    }
    return runtime;
  }

  private target(handle: RedisNodeHandle, timeoutMs?: number): RedisTarget {
    return { host: handle.host, port: handle.port, password: this.opts.password, timeoutMs };
  }

  private async boot(): Promise<void> {
    const all = [...this.runtimes.values()];
    // allSettled: on a failure, no start attempt may still spawn a server after stop() ran.
    const results = await Promise.allSettled(all.map((rt) => this.startNode(rt, true)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    const replicas = all.filter((rt) => rt.primary !== undefined);
    await Promise.all(replicas.map((rt) => this.repointIfMoved(rt)));
    await Promise.all(replicas.map((rt) => this.waitLinkUp(rt, LINK_TIMEOUT_MS)));
  }

  /**
   * Starts a node with its role's arguments. On its first start only (afterwards clients know
   * the port), retries on a fresh port when its OS-chosen port was taken meanwhile.
   */
  private async startNode(rt: NodeRuntime, firstStart: boolean): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const following = rt.primary?.port;
      const role = following !== undefined ? ['--replicaof', '127.0.0.1', String(following)] : [];
      // Every start begins empty: a sync RDB left by a killed primary must not be loaded.
      rmSync(path.join(this.dir, rt.handle.id, SYNC_RDB_FILE), { force: true });
      try {
        await rt.proc.start(rt.handle.port, [
          ...baseArgs(this.opts.password),
          ...role,
          ...(this.opts.extraArgs ?? []),
        ]);
        rt.following = following;
        return;
      } catch (err) {
        if (!(firstStart && isCode(err, 'PORT_IN_USE') && attempt < PORT_ATTEMPTS)) throw err;
        rt.handle.port = await freePort();
      }
    }
  }

  /** A replica spawned while its primary was being moved to another port follows it there. */
  private async repointIfMoved(rt: NodeRuntime): Promise<void> {
    const port = rt.primary?.port;
    if (port === undefined || rt.following === port) return;
    await redisCommand(this.target(rt.handle), 'REPLICAOF', '127.0.0.1', String(port));
    rt.following = port;
  }

  private async replicationInfo(handle: RedisNodeHandle, timeoutMs: number): Promise<Map<string, string>> {
    return parseInfo(await redisCommand(this.target(handle, timeoutMs), 'INFO', 'replication'));
  }

  /** Waits until a replica reports `master_link_status:up` to its shard's primary port. */
  private async waitLinkUp(rt: NodeRuntime, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = 'not polled';
    while (Date.now() < deadline) {
      try {
        const info = await this.replicationInfo(rt.handle, 1000);
        const status = info.get('master_link_status');
        if (status === 'up' && info.get('master_port') === String(rt.primary?.port)) return;
        last = `master_port:${info.get('master_port')} master_link_status:${status}`;
      } catch (err) {
        last = err instanceof Error ? err.message : String(err);
      }
      await delay(POLL_MS);
    }
    throw new ClusterError(
      'REPLICATION_TIMEOUT',
      `${rt.handle.id} not linked to its primary (port ${rt.primary?.port}) after ${timeoutMs} ms ` +
        `(last: ${last}); log tail:\n${rt.proc.logTail()}`,
    );
  }

  /**
   * Records that `nodeId` is now its shard's primary and the shard's other nodes its replicas,
   * after a failover made by someone else (rwsplit, Sentinel): later restart() and
   * waitForReplication() follow it, and the handles' `role` change. Sends nothing to any
   * server.
   */
  adoptPrimary(nodeId: string): void {
    const rt = this.runtime(nodeId);
    const shard = this.shards.find((s) => s.name === rt.handle.shard)!;
    if (shard.primary === rt) return;
    shard.replicas = [shard.primary, ...shard.replicas].filter((r) => r !== rt);
    shard.primary = rt;
    rt.primary = undefined;
    rt.following = undefined;
    rt.handle.role = 'primary';
    for (const r of shard.replicas) {
      r.primary = rt.handle;
      r.following = rt.handle.port;
      r.handle.role = 'replica';
    }
  }

  /** Sends a signal to a node's redis-server (e.g. 'SIGSTOP', 'SIGCONT', 'SIGKILL'). */
  signal(nodeId: string, sig: NodeJS.Signals): void {
    this.runtime(nodeId).proc.signal(sig);
  }

  /** kill -9 a node (and any child it forked) and wait until its port refuses connections. */
  async kill(nodeId: string): Promise<void> {
    const { handle, proc } = this.runtime(nodeId);
    await proc.kill();
    await waitPortRefuses(handle.port);
  }

  /**
   * (Re)starts a node on its port with its role's configuration and waits until it answers
   * PING — and, for a replica, until its link to its primary is up (a full resync: nothing was
   * persisted). A running node is shut down (SIGTERM) first. Restarting a primary does not wait
   * for its replicas to resync: {@link waitForReplication} does.
   */
  async restart(nodeId: string): Promise<void> {
    const rt = this.runtime(nodeId);
    if (rt.proc.running) await rt.proc.stop();
    await this.startNode(rt, false);
    if (rt.primary !== undefined) await this.waitLinkUp(rt, LINK_TIMEOUT_MS);
  }

  /**
   * Waits until every running replica of every shard has `master_link_status:up` and a
   * `slave_repl_offset` >= its primary's `master_repl_offset` as read when the call began.
   * Killed replicas are skipped; a SIGSTOPped one is waited for.
   *
   * @throws ClusterError `REPLICATION_TIMEOUT` naming the replicas behind, `NODE_NOT_RUNNING`
   * when a shard's primary is not running.
   */
  async waitForReplication(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    await Promise.all(this.shards.map((shard) => this.waitShardCaughtUp(shard, deadline, timeoutMs)));
  }

  private async waitShardCaughtUp(shard: ShardRuntime, deadline: number, timeoutMs: number): Promise<void> {
    const { primary } = shard;
    if (!primary.proc.running) {
      throw new ClusterError(
        'NODE_NOT_RUNNING',
        `${primary.handle.id}, primary of ${shard.name}, is not running`,
      );
    }
    const info = await this.replicationInfo(primary.handle, Math.max(deadline - Date.now(), 1));
    const target = Number(info.get('master_repl_offset'));
    const pending = new Map(shard.replicas.filter((r) => r.proc.running).map((r) => [r, 'not polled']));
    while (pending.size > 0) {
      await Promise.all(
        [...pending.keys()].map(async (rt) => {
          const behind = await this.lagOf(rt, target, deadline);
          if (behind === undefined) pending.delete(rt);
          else pending.set(rt, behind);
        }),
      );
      if (pending.size === 0) return;
      if (Date.now() > deadline) {
        const behind = [...pending].map(([rt, why]) => `${rt.handle.id} (${why})`).join(', ');
        throw new ClusterError(
          'REPLICATION_TIMEOUT',
          `${shard.name}: replicas behind offset ${target} after ${timeoutMs} ms: ${behind}`,
        );
      }
      await delay(POLL_MS);
    }
  }

  /** undefined when the replica is linked and at or past `target`; else why not. */
  private async lagOf(rt: NodeRuntime, target: number, deadline: number): Promise<string | undefined> {
    try {
      // Bounded by the deadline: a SIGSTOPped replica accepts the connection but never answers.
      const info = await this.replicationInfo(rt.handle, Math.min(Math.max(deadline - Date.now(), 50), 1000));
      const link = info.get('master_link_status');
      const offset = Number(info.get('slave_repl_offset'));
      return link === 'up' && offset >= target ? undefined : `link ${link}, offset ${offset}`;
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    }
  }

  /**
   * Sends one command to a node (after AUTH when the cluster has a password) and returns the
   * reply as text, as `redis-cli --raw` prints it: nil is '', array items are one per line.
   *
   * @throws ClusterError `REDIS_ERROR_REPLY` with the server's message on an error reply,
   * `NODE_UNREACHABLE` when the node cannot be reached or does not answer within 5 s.
   */
  command(nodeId: string, ...args: string[]): Promise<string> {
    return redisCommand(this.target(this.runtime(nodeId).handle), ...args);
  }

  /**
   * Stops every process it started (SIGTERM, SIGKILL after 5 s) and removes the directory when
   * it created it. Idempotent; concurrent calls share one shutdown.
   */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    await Promise.all([...this.runtimes.values()].map(({ proc }) => proc.stop()));
    live.delete(this);
    if (this.ownsDir) await rm(this.dir, { recursive: true, force: true });
  }

  /** @internal Synchronous last resort from `process.on('exit')`: SIGKILL everything, remove our dir. */
  killSyncOnExit(): void {
    for (const { proc } of this.runtimes.values()) proc.killSync();
    try {
      if (this.ownsDir) rmSync(this.dir, { recursive: true, force: true });
    } catch {
      // Processes may still be dying; the temp dir is then left behind.
    }
  }
}
