/**
 * A local PostgreSQL cluster — one primary and N streaming replicas — started from the
 * machine's binaries in a temporary directory on free ports. Used by `rwsplit demo` and by
 * every integration test: real servers, never mocks.
 */
import { createWriteStream, fchownSync, openSync, rmSync, type WriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

import {
  baseBackupReplica,
  initPrimary,
  NODE_LOG_FILE,
  prepareDirs,
  resolveOptions,
  type ClusterDirs,
  type ResolvedOptions,
} from './cluster-setup.js';
import { ClusterError } from './errors.js';
import { freePort, freePorts } from './free-port.js';
import { pgBinary } from './pg-binaries.js';
import type { AuthMethod } from './pg-config.js';
import { quorumStandbyNames } from './pg-config.js';
import { Postmaster, waitPortRefuses } from './postmaster.js';
import { childPids, signalQuietly } from './process-tree.js';
import { parseLsn } from '../core/lag.js';
import { resolvePgRunAs, type RunAs } from './run-as.js';
import { queryRows, withClient, type SqlTarget } from './sql.js';

/** Options of {@link PgCluster.start}. */
export interface PgClusterOptions {
  /**
   * Directory to own. Default: a fresh mkdtemp under os.tmpdir() ('rwsplit-pg-'), removed on
   * stop(). A directory given here is kept on stop() (logs stay readable); data directories of
   * a previous run found in it are replaced.
   */
  dir?: string;
  /** Number of streaming replicas (default 2). */
  replicas?: number;
  /** Fixed ports, primary first; default free ports. */
  ports?: number[];
  /** Extra postgresql.conf settings for every node, e.g. `{ max_connections: '200' }`. */
  settings?: Record<string, string>;
  /**
   * 'async' (default) or 'sync': the primary gets
   * `synchronous_standby_names = 'ANY 1 (replica1, replica2, …)'`, each replica's
   * application_name being `replicaN`. Only the primary has it: after a promotion, whoever
   * promotes decides what the new primary waits for.
   */
  replication?: 'async' | 'sync';
  /**
   * Password for the 'postgres' superuser; when set, pg_hba uses scram-sha-256 for TCP
   * connections (md5 when authMethod='md5'), else trust. Unix-socket connections are trusted.
   */
  password?: string;
  authMethod?: AuthMethod;
  /** Called with each line postgres logs; default: a `postgres.log` file in each node's data dir. */
  log?: (nodeId: string, line: string) => void;
  /**
   * First part of the node ids (default 'pg': 'pg-primary', 'pg-replica1', …); also names the
   * data directories. Letters, digits, '_' and '-'. {@link PgShardedCluster} uses 'pg-s1', ….
   */
  idPrefix?: string;
  /** The shard these nodes serve, as `postgres.nodes[].shard` would say (default 'default'). */
  shard?: string;
}

/** One node of a running cluster. */
export interface PgNodeHandle {
  /** 'pg-primary', 'pg-replica1', 'pg-replica2', … (with idPrefix 'pg-s1': 'pg-s1-primary', …) */
  id: string;
  /** The shard of the cluster ('default' unless started with a `shard` option). */
  shard: string;
  role: 'primary' | 'replica';
  host: '127.0.0.1';
  port: number;
  dataDir: string;
  /** The postmaster's pid while it runs. */
  pid: number | undefined;
  /** A libpq-style URI for the superuser 'postgres' to database 'postgres'. */
  connectionString: string;
}

interface NodeRuntime {
  handle: PgNodeHandle;
  postmaster: Postmaster;
  /** application_name and slot name of a replica ('replica1'); undefined for the primary. */
  standbyName: string | undefined;
}

/** How long start-up waits for every replica to stream from the primary. */
const STREAMING_TIMEOUT_MS = 30_000;
const POLL_MS = 50;
/** Attempts to start a node on a fresh port when its free port got taken meanwhile. */
const PORT_ATTEMPTS = 3;
/** How long a restart waits for the children of a postmaster that died by signal to exit. */
const OLD_PROCESSES_WAIT_MS = 10_000;

/** Clusters that still have processes, killed synchronously if the test process exits. */
const live = new Set<PgCluster>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const cluster of live) cluster.killSyncOnExit();
  });
}

const ID_PREFIX = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;

/** Node ids of a cluster: the primary first, then 'replica1', 'replica2', …. */
function nodeIdsFor(idPrefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${idPrefix}-${i === 0 ? 'primary' : `replica${i}`}`);
}

function connectionString(port: number, password: string | undefined): string {
  const auth = password !== undefined ? `postgres:${encodeURIComponent(password)}` : 'postgres';
  return `postgresql://${auth}@127.0.0.1:${port}/postgres`;
}

export { parseLsn } from '../core/lag.js';

/** A running local primary + replicas cluster. Create with {@link PgCluster.start}. */
export class PgCluster {
  readonly dir: string;
  readonly nodes: PgNodeHandle[];
  private readonly runtimes = new Map<string, NodeRuntime>();
  private readonly logStreams: WriteStream[] = [];
  private stopping: Promise<void> | undefined;

  private constructor(
    private readonly dirs: ClusterDirs,
    private readonly options: ResolvedOptions,
    private readonly runAs: RunAs,
    ports: number[],
    nodeIds: string[],
    opts: PgClusterOptions,
  ) {
    this.dir = dirs.dir;
    this.nodes = [];
    const postgresBin = pgBinary('postgres');
    const { log } = opts;
    ports.forEach((port, index) => {
      const standbyName = index === 0 ? undefined : `replica${index}`;
      const id = nodeIds[index] ?? `node${index}`;
      const dataDir = path.join(dirs.dir, id);
      const postmaster = new Postmaster({
        id,
        dataDir,
        socketDir: dirs.socketDir,
        cwd: dirs.dir,
        postgresBin,
        runAs,
        onLine: log !== undefined ? (line) => log(id, line) : this.fileLogger(dataDir),
      });
      const handle: PgNodeHandle = {
        id,
        shard: opts.shard ?? 'default',
        role: index === 0 ? 'primary' : 'replica',
        host: '127.0.0.1',
        port,
        dataDir,
        // Live: undefined as soon as the postmaster exits, however it died.
        get pid() {
          return postmaster.pid;
        },
        connectionString: connectionString(port, options.password),
      };
      this.nodes.push(handle);
      this.runtimes.set(id, { handle, postmaster, standbyName });
    });
  }

  /**
   * Starts a primary and `replicas` streaming replicas and resolves once every replica
   * streams from the primary (and, in 'sync' mode, counts in the quorum).
   *
   * @throws ClusterError with a stable code: PG_BINARIES_MISSING, PG_USER_MISSING, BAD_OPTIONS,
   * COMMAND_FAILED, NODE_EXITED, NODE_START_TIMEOUT, REPLICATION_TIMEOUT…
   */
  static async start(opts: PgClusterOptions = {}): Promise<PgCluster> {
    const options = resolveOptions(opts);
    const idPrefix = opts.idPrefix ?? 'pg';
    if (!ID_PREFIX.test(idPrefix)) {
      throw new ClusterError(
        'BAD_OPTIONS',
        `PgCluster: idPrefix '${idPrefix}': use letters, digits, '_' and '-'`,
      );
    }
    pgBinary('initdb'); // fail early, with the install hint, before creating anything
    const runAs = resolvePgRunAs();
    const ports = options.fixedPorts ?? (await freePorts(options.replicas + 1));
    const nodeIds = nodeIdsFor(idPrefix, ports.length);
    const dirs = prepareDirs(opts.dir, nodeIds, runAs, idPrefix);
    const cluster = new PgCluster(dirs, options, runAs, ports, nodeIds, opts);
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

  get primary(): PgNodeHandle {
    const primary = this.nodes[0];
    if (primary === undefined) throw new Error('cluster has no primary');
    return primary;
  }

  get replicas(): PgNodeHandle[] {
    return this.nodes.slice(1);
  }

  private fileLogger(dataDir: string): (line: string) => void {
    let stream: WriteStream | undefined;
    return (line) => {
      if (stream === undefined) {
        // Opened on the first line, when initdb or pg_basebackup has made the data dir.
        // Owned by the PostgreSQL user: pg_basebackup, running as that user, copies the
        // primary's data dir with this file in it (a root-only file would fail the copy).
        const fd = openSync(path.join(dataDir, NODE_LOG_FILE), 'a', 0o600);
        if (this.runAs.uid !== undefined && this.runAs.gid !== undefined) {
          fchownSync(fd, this.runAs.uid, this.runAs.gid);
        }
        stream = createWriteStream('', { fd });
        stream.on('error', () => {}); // e.g. the dir removed under us: logging is best effort
        this.logStreams.push(stream);
      }
      stream.write(line + '\n');
    };
  }

  private runtime(nodeId: string): NodeRuntime {
    const runtime = this.runtimes.get(nodeId);
    if (runtime === undefined) {
      const known = [...this.runtimes.keys()].join(', ');
      throw new ClusterError('UNKNOWN_NODE', `no node '${nodeId}' in this cluster (nodes: ${known})`);
    }
    return runtime;
  }

  /** Admin connection over the Unix socket: always trusted, whatever the TCP auth method. */
  private localTarget(handle: PgNodeHandle): SqlTarget {
    return { host: this.dirs.socketDir, port: handle.port, password: undefined };
  }

  private async boot(): Promise<void> {
    const primary = this.runtime(this.primary.id);
    await initPrimary({
      initdbBin: pgBinary('initdb'),
      dataDir: primary.handle.dataDir,
      cwd: this.dir,
      socketDir: this.dirs.socketDir,
      runAs: this.runAs,
      options: this.options,
    });
    await this.startNode(primary, true);
    if (this.options.password !== undefined) await this.setPassword(this.options.password);
    const replicas = [...this.runtimes.values()].filter((r) => r.standbyName !== undefined);
    await Promise.all(replicas.map((replica) => this.cloneAndStart(replica)));
    if (this.options.replication === 'sync') await this.enableQuorumCommit(replicas);
    await this.waitForStreaming(replicas);
  }

  private async setPassword(password: string): Promise<void> {
    // password_encryption (md5 or scram) is in postgresql.conf; ALTER ROLE takes no parameters.
    await withClient(this.localTarget(this.primary), async (client) => {
      await client.query(`ALTER ROLE postgres PASSWORD ${client.escapeLiteral(password)}`);
    });
  }

  private async cloneAndStart(replica: NodeRuntime): Promise<void> {
    await baseBackupReplica({
      basebackupBin: pgBinary('pg_basebackup'),
      dataDir: replica.handle.dataDir,
      cwd: this.dir,
      runAs: this.runAs,
      primaryPort: this.primary.port,
      standbyName: replica.standbyName ?? replica.handle.id,
      password: this.options.password,
    });
    await this.startNode(replica, true);
  }

  /**
   * Starts a node. Retries on a fresh port when its OS-chosen port was taken meanwhile (first
   * start only: afterwards clients know the port), and while processes of a crashed
   * predecessor still hold its shared memory.
   */
  private async startNode(runtime: NodeRuntime, firstStart: boolean): Promise<void> {
    const { handle, postmaster } = runtime;
    const portMayChange = firstStart && this.options.fixedPorts === undefined;
    const deadline = Date.now() + OLD_PROCESSES_WAIT_MS;
    for (let attempt = 1; ; attempt++) {
      try {
        await postmaster.start(handle.port, this.localTarget(handle));
        return;
      } catch (err) {
        const code = err instanceof ClusterError ? err.code : undefined;
        if (code === 'PORT_IN_USE' && portMayChange && attempt < PORT_ATTEMPTS) {
          handle.port = await freePort();
          handle.connectionString = connectionString(handle.port, this.options.password);
        } else if (code === 'OLD_PROCESSES_ALIVE' && Date.now() < deadline) {
          await delay(100);
        } else {
          throw err;
        }
      }
    }
  }

  private async enableQuorumCommit(replicas: NodeRuntime[]): Promise<void> {
    const names = quorumStandbyNames(replicas.map((r) => r.standbyName ?? r.handle.id));
    await withClient(this.localTarget(this.primary), async (client) => {
      await client.query(`ALTER SYSTEM SET synchronous_standby_names = ${client.escapeLiteral(names)}`);
      await client.query('SELECT pg_reload_conf()');
    });
  }

  /** Waits until the primary sees every replica streaming (and in the sync quorum when 'sync'). */
  private async waitForStreaming(replicas: NodeRuntime[]): Promise<void> {
    const wanted = replicas.map((r) => r.standbyName ?? r.handle.id);
    const syncMode = this.options.replication === 'sync';
    const deadline = Date.now() + STREAMING_TIMEOUT_MS;
    let seen: { application_name: string; state: string; sync_state: string }[] = [];
    while (Date.now() < deadline) {
      seen = await queryRows(
        this.localTarget(this.primary),
        'SELECT application_name, state, sync_state FROM pg_stat_replication',
      );
      const ok = (name: string): boolean =>
        seen.some(
          (s) =>
            s.application_name === name && s.state === 'streaming' && (!syncMode || s.sync_state !== 'async'),
        );
      if (wanted.every(ok)) return;
      await delay(POLL_MS);
    }
    throw new ClusterError(
      'REPLICATION_TIMEOUT',
      `replicas not all streaming after ${STREAMING_TIMEOUT_MS} ms; pg_stat_replication: ${JSON.stringify(seen)}`,
    );
  }

  /** Sends a signal to a node's postmaster (e.g. 'SIGKILL', 'SIGSTOP', 'SIGCONT'). */
  signal(nodeId: string, sig: NodeJS.Signals): void {
    this.runtime(nodeId).postmaster.signal(sig);
  }

  /**
   * Sends a signal to a node's postmaster and every child of it (its backends, WAL
   * sender/receiver, …): `SIGSTOP` then freezes the whole server, as a partition or a
   * hung machine would, and `SIGCONT` thaws it.
   */
  signalTree(nodeId: string, sig: NodeJS.Signals): void {
    const pid = this.runtime(nodeId).handle.pid;
    if (pid === undefined) throw new ClusterError('NODE_NOT_RUNNING', `${nodeId} is not running`);
    for (const child of childPids(pid)) signalQuietly(child, sig);
    signalQuietly(pid, sig);
  }

  /** kill -9 a node (its postmaster and that postmaster's children) and wait until its port refuses connections. */
  async kill(nodeId: string): Promise<void> {
    const { handle, postmaster } = this.runtime(nodeId);
    await postmaster.kill();
    await waitPortRefuses(handle.port);
  }

  /**
   * (Re)starts a node with its existing data dir and port and waits until it accepts
   * connections. A running node is shut down (fast) first.
   */
  async restart(nodeId: string): Promise<void> {
    const runtime = this.runtime(nodeId);
    if (runtime.postmaster.running) await runtime.postmaster.stop();
    await this.startNode(runtime, false);
  }

  /**
   * Waits until every running replica's replay LSN >= the primary's current WAL LSN (as
   * PostgreSQL's own TAP tests' wait_for_catchup does). Killed nodes are skipped.
   *
   * @throws ClusterError `REPLICATION_TIMEOUT` naming the replicas behind, `NODE_NOT_RUNNING` without a primary.
   */
  async waitForReplication(timeoutMs = 10_000): Promise<void> {
    const primary = this.runtime(this.primary.id);
    if (!primary.postmaster.running) throw new ClusterError('NODE_NOT_RUNNING', 'the primary is not running');
    const [row] = await queryRows<{ lsn: string }>(
      this.localTarget(primary.handle),
      'SELECT pg_current_wal_lsn()::text AS lsn',
    );
    const target = parseLsn(row?.lsn ?? '0/0');
    const pending = new Map(
      this.replicas.filter((r) => this.runtime(r.id).postmaster.running).map((r) => [r.id, 'none']),
    );
    const deadline = Date.now() + timeoutMs;
    while (pending.size > 0) {
      for (const id of [...pending.keys()]) {
        const replay = await this.replayLsn(this.runtime(id).handle);
        if (replay !== null && parseLsn(replay) >= target) pending.delete(id);
        else pending.set(id, replay ?? 'none');
      }
      if (pending.size === 0) return;
      if (Date.now() > deadline) {
        const behind = [...pending].map(([id, lsn]) => `${id} at ${lsn}`).join(', ');
        throw new ClusterError(
          'REPLICATION_TIMEOUT',
          `replicas behind ${row?.lsn} after ${timeoutMs} ms: ${behind}`,
        );
      }
      await delay(POLL_MS);
    }
  }

  private async replayLsn(handle: PgNodeHandle): Promise<string | null> {
    try {
      const [row] = await queryRows<{ lsn: string | null }>(
        this.localTarget(handle),
        'SELECT pg_last_wal_replay_lsn()::text AS lsn',
      );
      return row?.lsn ?? null;
    } catch {
      return null; // still starting, or briefly unreachable: keep polling until the deadline
    }
  }

  /**
   * Stops every process it started (fast shutdown, SIGKILL after 5 s) and removes the
   * directory when it created it. Idempotent; concurrent calls share one shutdown.
   */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    await Promise.all([...this.runtimes.values()].map(({ postmaster }) => postmaster.stop()));
    live.delete(this);
    await Promise.all(this.logStreams.map((s) => new Promise<void>((resolve) => s.end(() => resolve()))));
    if (this.dirs.ownsSocketDir) await rm(this.dirs.socketDir, { recursive: true, force: true });
    if (this.dirs.ownsDir) await rm(this.dir, { recursive: true, force: true });
  }

  /** @internal Synchronous last resort from `process.on('exit')`: SIGKILL everything, remove our dirs. */
  killSyncOnExit(): void {
    for (const { postmaster } of this.runtimes.values()) postmaster.killSync();
    try {
      if (this.dirs.ownsSocketDir) rmSync(this.dirs.socketDir, { recursive: true, force: true });
      if (this.dirs.ownsDir) rmSync(this.dir, { recursive: true, force: true });
    } catch {
      // Processes may still be dying; the temp dir is then left behind.
    }
  }
}
