/**
 * The file-system side of a local cluster: validated options, the cluster directory and its
 * socket directory, the primary's initdb and each replica's base backup.
 */
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import { appendFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { ClusterError } from './errors.js';
import { postgresqlConfSettings, renderConf, renderPgHba, type AuthMethod } from './pg-config.js';
import { isProcessAlive } from './process-tree.js';
import { chownToRunAs, runPgTool, type RunAs } from './run-as.js';

/** Options after defaults and validation. */
export interface ResolvedOptions {
  replicas: number;
  fixedPorts: number[] | undefined;
  settings: Record<string, string>;
  replication: 'async' | 'sync';
  password: string | undefined;
  authMethod: AuthMethod;
}

/** The subset of PgClusterOptions this module validates (kept structural to avoid a cycle). */
export interface SetupOptionsInput {
  replicas?: number;
  ports?: number[];
  settings?: Record<string, string>;
  replication?: 'async' | 'sync';
  password?: string;
  authMethod?: AuthMethod;
}

function badOption(message: string): ClusterError {
  return new ClusterError('BAD_OPTIONS', `PgCluster: ${message}`);
}

/** Applies defaults and rejects combinations that could only fail later, more obscurely. */
export function resolveOptions(opts: SetupOptionsInput): ResolvedOptions {
  const replicas = opts.replicas ?? 2;
  if (!Number.isInteger(replicas) || replicas < 0)
    throw badOption(`replicas must be an integer >= 0, got ${replicas}`);
  const ports = opts.ports;
  if (ports !== undefined) {
    if (ports.length !== replicas + 1) throw badOption(`ports needs ${replicas + 1} entries (primary first)`);
    if (ports.some((p) => !Number.isInteger(p) || p < 1 || p > 65535))
      throw badOption('ports must be TCP ports');
    if (new Set(ports).size !== ports.length) throw badOption('ports must be distinct');
  }
  const replication = opts.replication ?? 'async';
  // With no standby, every commit on a synchronous primary would wait forever.
  if (replication === 'sync' && replicas === 0)
    throw badOption("replication 'sync' needs at least one replica");
  const password = opts.password;
  const authMethod = opts.authMethod ?? (password !== undefined ? 'scram-sha-256' : 'trust');
  if (authMethod !== 'trust' && password === undefined) {
    throw badOption(`authMethod '${authMethod}' needs a password (set options.password)`);
  }
  return { replicas, fixedPorts: ports, settings: opts.settings ?? {}, replication, password, authMethod };
}

/** Where a cluster lives on disk. */
export interface ClusterDirs {
  dir: string;
  ownsDir: boolean;
  socketDir: string;
  ownsSocketDir: boolean;
}

/** Longest Unix socket path (sun_path is 108 bytes on Linux, including the NUL). */
const MAX_SOCKET_PATH = 107;

/**
 * Creates (or adopts) the cluster directory, traversable and owned by the PostgreSQL user, and
 * the socket directory inside it — or under the temp dir when the path would be too long for
 * a Unix socket.
 */
export function prepareDirs(
  requested: string | undefined,
  nodeIds: string[],
  runAs: RunAs,
  idPrefix = 'pg',
): ClusterDirs {
  let dir: string;
  const ownsDir = requested === undefined;
  if (requested === undefined) {
    dir = mkdtempSync(path.join(os.tmpdir(), 'rwsplit-pg-'));
  } else {
    dir = path.resolve(requested);
    mkdirSync(dir, { recursive: true });
    const blocked = untraversableAncestor(dir, runAs);
    if (blocked !== undefined) {
      throw new ClusterError(
        'DIR_NOT_ACCESSIBLE',
        `the PostgreSQL user (uid ${runAs.uid}) cannot enter ${blocked}, so it cannot use ${dir}: ` +
          `make it traversable (chmod o+x ${blocked}) or choose another dir`,
      );
    }
    clearPreviousRun(dir, nodeIds, idPrefix);
  }
  // mkdtemp creates 0700; the postgres user must traverse it when we are root.
  chmodSync(dir, 0o755);
  chownToRunAs(dir, runAs);
  let socketDir = path.join(dir, 'run');
  let ownsSocketDir = false;
  if (path.join(socketDir, '.s.PGSQL.65535.lock').length > MAX_SOCKET_PATH) {
    socketDir = mkdtempSync(path.join(os.tmpdir(), 'rwsplit-sock-'));
    ownsSocketDir = true;
  } else {
    rmSync(socketDir, { recursive: true, force: true });
    mkdirSync(socketDir);
  }
  chmodSync(socketDir, 0o755);
  chownToRunAs(socketDir, runAs);
  return { dir, ownsDir, socketDir, ownsSocketDir };
}

/**
 * The first ancestor of `dir` (itself excluded: it is chowned to the PostgreSQL user) that the
 * PostgreSQL user may not traverse, judged from mode bits. Only the primary group counts:
 * Node drops supplementary groups when it spawns with a uid. `undefined` when not switching users.
 */
export function untraversableAncestor(dir: string, runAs: RunAs): string | undefined {
  if (runAs.uid === undefined) return undefined;
  for (let current = path.dirname(dir); ; current = path.dirname(current)) {
    const st = statSync(current);
    const bit = st.uid === runAs.uid ? 0o100 : st.gid === runAs.gid ? 0o010 : 0o001;
    if ((st.mode & bit) === 0) return current;
    if (path.dirname(current) === current) return undefined;
  }
}

/**
 * A caller-supplied directory may hold the data directories of a previous run (the demo's
 * `--dir`): remove those — and only those, named `<idPrefix>-primary|replicaN` and recognised
 * by PG_VERSION — unless a postmaster still runs in one.
 */
function clearPreviousRun(dir: string, nodeIds: string[], idPrefix: string): void {
  const candidates = new Set(nodeIds);
  for (const name of readdirSync(dir)) {
    const suffix = name.startsWith(`${idPrefix}-`) ? name.slice(idPrefix.length + 1) : '';
    if (/^(primary|replica\d+)$/.test(suffix)) candidates.add(name);
  }
  for (const name of candidates) {
    const dataDir = path.join(dir, name);
    if (!existsSync(path.join(dataDir, 'PG_VERSION'))) continue;
    const pid = stalePostmasterPid(dataDir);
    if (pid !== undefined && isProcessAlive(pid)) {
      throw new ClusterError(
        'STALE_POSTMASTER',
        `a postgres from a previous run (pid ${pid}) still uses ${dataDir}: stop it (kill ${pid}) or use another dir`,
      );
    }
    rmSync(dataDir, { recursive: true, force: true });
  }
}

function stalePostmasterPid(dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Inputs for {@link initPrimary}. */
export interface InitPrimaryInput {
  initdbBin: string;
  dataDir: string;
  cwd: string;
  socketDir: string;
  runAs: RunAs;
  options: ResolvedOptions;
}

/**
 * initdb (trust, no fsync: fast) and the configuration every node inherits through the base
 * backups: replication settings, the caller's settings, pg_hba for the chosen method.
 */
export async function initPrimary(input: InitPrimaryInput): Promise<void> {
  const { dataDir, options } = input;
  const args = [
    '-D',
    dataDir,
    '--auth=trust',
    '-U',
    'postgres',
    '--no-sync',
    '--locale=C',
    '--encoding=UTF8',
  ];
  await runPgTool(input.initdbBin, [...args, '--no-instructions'], { runAs: input.runAs, cwd: input.cwd });
  const settings = postgresqlConfSettings({
    socketDir: input.socketDir,
    authMethod: options.authMethod,
    userSettings: options.settings,
  });
  // The files belong to the PostgreSQL user already; appending keeps owner and mode.
  await appendFile(path.join(dataDir, 'postgresql.conf'), renderConf(settings));
  await writeFile(path.join(dataDir, 'pg_hba.conf'), renderPgHba(options.authMethod));
}

/** Inputs for {@link baseBackupReplica}. */
export interface BaseBackupInput {
  basebackupBin: string;
  dataDir: string;
  cwd: string;
  runAs: RunAs;
  primaryPort: number;
  /** application_name in primary_conninfo and the physical slot's name. */
  standbyName: string;
  password: string | undefined;
}

/**
 * Clones the primary with pg_basebackup: `-R` writes standby.signal and primary_conninfo
 * (which keeps the `application_name` given here, so synchronous_standby_names can name the
 * standby), `-C -S` creates a physical slot so the primary keeps WAL the replica still needs.
 */
export async function baseBackupReplica(input: BaseBackupInput): Promise<void> {
  const conninfo = `host=127.0.0.1 port=${input.primaryPort} user=postgres application_name=${input.standbyName}`;
  const args = ['-d', conninfo, '-D', input.dataDir, '-R', '-X', 'stream', '-c', 'fast', '--no-sync'];
  args.push('-C', '-S', input.standbyName);
  const env: Record<string, string> = input.password !== undefined ? { PGPASSWORD: input.password } : {};
  await runPgTool(input.basebackupBin, args, { runAs: input.runAs, cwd: input.cwd, env });
  // The primary's log file came along in the copy; the replica starts its own.
  await rm(path.join(input.dataDir, NODE_LOG_FILE), { force: true });
}

/** Name of the per-node log file inside its data directory (when no log callback is given). */
export const NODE_LOG_FILE = 'postgres.log';
