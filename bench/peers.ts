/**
 * The proxies the benchmark measures, each started on free ports against the same cluster:
 * rwsplit (this repo's CLI), PgBouncer and Pgpool-II, the latter two as the `postgres` user
 * (both refuse to run as root, or warn loudly) with every file in a temp dir of their own.
 * Their settings are those of the reference measurements on a 2-core machine (see bench/README.md).
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

import pg from 'pg';
import { stringify } from 'yaml';

import { freePort } from '../src/cluster/free-port.js';
import type { PgNodeHandle } from '../src/cluster/pg-cluster.js';
import { pgChildEnv, type RunAs } from '../src/cluster/run-as.js';
import { BenchChild, makeRunDir, removeRunDir } from './bench-child.js';

export const PGBOUNCER_BIN = '/usr/sbin/pgbouncer';
export const PGPOOL_BIN = '/usr/sbin/pgpool';

/** A started proxy: where pgbench connects, and how to measure and stop it. */
export interface RunningPeer {
  port: number;
  process: BenchChild;
  /** Sum CPU over the process tree (Pgpool-II forks one process per client slot). */
  cpuOverTree: boolean;
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 30_000;

/**
 * One readiness check: resolves undefined once the peer is ready, else a reason it is not yet;
 * a throw (connection refused while it starts) counts as "not yet" too.
 */
export type ReadyProbe = () => Promise<string | undefined>;

/**
 * Polls `probe` until it reports ready.
 *
 * @throws Error with the process's log tail when it exits or the deadline passes.
 */
async function waitReady(port: number, child: BenchChild, probe: ReadyProbe): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last = 'no attempt yet';
  while (Date.now() < deadline) {
    if (!child.running) throw new Error(`${child.spec.name} exited during start-up:\n${child.logTail()}`);
    try {
      const notYet = await probe();
      if (notYet === undefined) return;
      last = notYet;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await delay(200);
  }
  throw new Error(
    `${child.spec.name} not ready on port ${port} after ${READY_TIMEOUT_MS} ms (last: ${last}):\n${child.logTail()}`,
  );
}

/** Ready once a real login through `port` runs `SELECT 1` and `extraCheck` (if any) passes. */
export function pgLoginProbe(
  port: number,
  extraCheck?: (client: pg.Client) => Promise<string | undefined>,
): ReadyProbe {
  return async () => {
    const client = new pg.Client({
      host: '127.0.0.1',
      port,
      user: 'postgres',
      database: 'postgres',
      connectionTimeoutMillis: 2000,
    });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.query('SELECT 1');
      return extraCheck === undefined ? undefined : await extraCheck(client);
    } finally {
      await client.end().catch(() => {});
    }
  };
}

/** Stops the process, then removes its run dir. */
function stopper(child: BenchChild, signal: NodeJS.Signals, dir: string): () => Promise<void> {
  return async () => {
    await child.stop(signal);
    await removeRunDir(dir);
  };
}

/**
 * Waits until a just-spawned peer passes `probe`; on failure stops it and removes its run dir
 * before rethrowing. `signal` is the peer's own "shut down now" signal, used by `stop()`.
 */
export async function startPeer(
  child: BenchChild,
  port: number,
  signal: NodeJS.Signals,
  dir: string,
  cpuOverTree: boolean,
  probe: ReadyProbe,
): Promise<RunningPeer> {
  const stop = stopper(child, signal, dir);
  try {
    await waitReady(port, child, probe);
  } catch (err) {
    await stop();
    throw err;
  }
  return { port, process: child, cpuOverTree, stop };
}

/**
 * rwsplit from `bin/rwsplit.js start --config`, pool size 20, log level warn, defaults
 * otherwise. Ready once a login works and its monitor reports every node up (else the first
 * seconds of the first run would all go to the primary).
 */
/** `dataPlane`: native or js; absent: the config's default (auto). */
export async function startRwsplit(
  repoRoot: string,
  nodes: PgNodeHandle[],
  dataPlane?: 'native' | 'js',
): Promise<RunningPeer> {
  const dir = makeOwnRunDir('rwsplit-bench-rw-');
  const [pgPort, httpPort] = [await freePort(), await freePort()];
  const config = {
    workers: 1,
    listen: { postgres: { host: '127.0.0.1', port: pgPort }, http: { host: '127.0.0.1', port: httpPort } },
    postgres: {
      nodes: nodes.map((n) => ({ id: n.id, host: n.host, port: n.port })),
      pool: { size: 20 },
    },
    logging: { level: 'warn' },
    ...(dataPlane ? { dataPlane } : {}),
  };
  const child = spawnRwsplit(repoRoot, dir, config);
  const probe = pgLoginProbe(pgPort, () => rwsplitNodesUp(httpPort, 'postgres', nodes.length));
  return startPeer(child, pgPort, 'SIGTERM', dir, false, probe);
}

/**
 * The bare Node.js forwarder (node-forwarder.ts) in front of `host:port`: the floor of a Node
 * proxy, for the ratios. `probe` checks a request through it (a login, a PING).
 */
export async function startNodeForwarder(
  repoRoot: string,
  host: string,
  port: number,
  probe: (port: number) => ReadyProbe,
): Promise<RunningPeer> {
  const dir = makeOwnRunDir('rwsplit-bench-forwarder-');
  const listen = await freePort();
  const child = BenchChild.spawn({
    name: 'node-forwarder',
    file: process.execPath,
    args: [path.join(repoRoot, 'dist', 'bench', 'node-forwarder.js'), String(listen), host, String(port)],
    cwd: repoRoot,
    env: process.env,
    logFile: path.join(dir, 'forwarder.log'),
  });
  return startPeer(child, listen, 'SIGTERM', dir, false, probe(listen));
}

/** A run dir for a program that runs as the current user (rwsplit, nutcracker). */
export function makeOwnRunDir(prefix: string): string {
  return makeRunDir(prefix, { uid: undefined, gid: undefined, home: undefined });
}

/**
 * Writes `config` as `rwsplit.yaml` into `dir` and spawns `bin/rwsplit.js start --config` on
 * it, as the current user (rwsplit is our own program), output to `rwsplit.log` there.
 */
export function spawnRwsplit(repoRoot: string, dir: string, config: object): BenchChild {
  const configFile = path.join(dir, 'rwsplit.yaml');
  writeFileSync(configFile, stringify(config));
  return BenchChild.spawn({
    name: 'rwsplit',
    file: process.execPath,
    // BENCH_RWSPLIT_NODE_ARGS: extra node flags for rwsplit only, e.g. `--cpu-prof --cpu-prof-dir=/tmp/p`.
    args: [...nodeArgs(), path.join(repoRoot, 'bin', 'rwsplit.js'), 'start', '--config', configFile],
    cwd: repoRoot,
    env: process.env,
    logFile: path.join(dir, 'rwsplit.log'),
  });
}

function nodeArgs(): string[] {
  return (process.env['BENCH_RWSPLIT_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');
}

/**
 * Asks rwsplit's `GET /api/nodes` whether at least `expected` nodes of `kind` are up.
 *
 * @returns undefined when they are, else what it sees.
 */
export async function rwsplitNodesUp(
  httpPort: number,
  kind: 'postgres' | 'redis',
  expected: number,
): Promise<string | undefined> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/api/nodes`);
  const nodes = ((await res.json()) as { id: string; kind?: string; state: string }[]).filter(
    // `kind` arrived with the Redis proxy; a row without it is a PostgreSQL node.
    (n) => (n.kind ?? 'postgres') === kind,
  );
  const up = nodes.filter((n) => n.state === 'up').length;
  return up >= expected
    ? undefined
    : `rwsplit sees ${up}/${expected} ${kind} nodes up: ${JSON.stringify(nodes)}`;
}

/** PgBouncer 1.18, session pooling to the primary only (it does no read/write splitting). */
export async function startPgbouncer(primary: PgNodeHandle, runAs: RunAs): Promise<RunningPeer> {
  const dir = makeRunDir('rwsplit-bench-bouncer-', runAs);
  const port = await freePort();
  const ini = [
    '[databases]',
    `postgres = host=${primary.host} port=${primary.port} dbname=postgres`,
    '',
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    `unix_socket_dir = ${dir}`,
    'pool_mode = session',
    'default_pool_size = 20',
    'max_client_conn = 200',
    'auth_type = trust',
    // With trust, PgBouncer still only admits users listed in auth_file.
    `auth_file = ${path.join(dir, 'userlist.txt')}`,
    `logfile = ${path.join(dir, 'pgbouncer.log')}`,
    `pidfile = ${path.join(dir, 'pgbouncer.pid')}`,
    '',
  ].join('\n');
  writeFileSync(path.join(dir, 'userlist.txt'), '"postgres" ""\n');
  writeFileSync(path.join(dir, 'pgbouncer.ini'), ini);
  const child = BenchChild.spawn({
    name: 'pgbouncer',
    file: PGBOUNCER_BIN,
    args: [path.join(dir, 'pgbouncer.ini')],
    cwd: dir,
    env: pgChildEnv(runAs),
    runAs,
    logFile: path.join(dir, 'stderr.log'),
  });
  // PgBouncer 1.18: SIGTERM is "immediate shutdown" (SIGINT would wait for clients).
  return startPeer(child, port, 'SIGTERM', dir, false, pgLoginProbe(port));
}

/** The pgpool.conf lines: streaming-replication mode, reads balanced over the replicas only. */
function pgpoolConf(dir: string, port: number, pcpPort: number, nodes: PgNodeHandle[]): string {
  const settings: Record<string, string | number> = {
    backend_clustering_mode: "'streaming_replication'",
    listen_addresses: "'127.0.0.1'",
    port,
    socket_dir: `'${dir}'`,
    pcp_listen_addresses: "''",
    pcp_port: pcpPort,
    pcp_socket_dir: `'${dir}'`,
    wd_ipc_socket_dir: `'${dir}'`,
    enable_pool_hba: 'off',
    pool_passwd: "''",
    num_init_children: 32,
    max_pool: 4,
    load_balance_mode: 'on',
    sr_check_period: 5,
    sr_check_user: "'postgres'",
    sr_check_database: "'postgres'",
    delay_threshold: 10000000,
    health_check_period: 5,
    health_check_user: "'postgres'",
    health_check_database: "'postgres'",
    failover_on_backend_error: 'off',
    failover_command: "''",
    log_destination: "'stderr'",
    logging_collector: 'off',
    log_min_messages: "'warning'",
    logdir: `'${dir}'`,
    pid_file_name: `'${path.join(dir, 'pgpool.pid')}'`,
  };
  nodes.forEach((node, i) => {
    settings[`backend_hostname${i}`] = `'${node.host}'`;
    settings[`backend_port${i}`] = node.port;
    // The primary takes no reads: backend_weight0=0, as in the anchor runs.
    settings[`backend_weight${i}`] = node.role === 'primary' ? 0 : 1;
    settings[`backend_flag${i}`] = "'DISALLOW_TO_FAILOVER'";
  });
  return (
    Object.entries(settings)
      .map(([k, v]) => `${k} = ${v}`)
      .join('\n') + '\n'
  );
}

/** Pgpool-II 4.3 in the foreground (`-n`), trust auth, no pool_hba, no failover. */
export async function startPgpool(nodes: PgNodeHandle[], runAs: RunAs): Promise<RunningPeer> {
  const primaryFirst = [...nodes].sort((a, b) => (a.role === 'primary' ? -1 : b.role === 'primary' ? 1 : 0));
  const dir = makeRunDir('rwsplit-bench-pgpool-', runAs);
  const [port, pcpPort] = [await freePort(), await freePort()];
  writeFileSync(path.join(dir, 'pgpool.conf'), pgpoolConf(dir, port, pcpPort, primaryFirst));
  writeFileSync(path.join(dir, 'pcp.conf'), '');
  writeFileSync(path.join(dir, 'pool_hba.conf'), '');
  const child = BenchChild.spawn({
    name: 'pgpool',
    file: PGPOOL_BIN,
    // -D: ignore any pgpool_status left from a previous run (node states start fresh).
    args: ['-n', '-D', '-f', 'pgpool.conf', '-F', 'pcp.conf', '-a', 'pool_hba.conf'],
    cwd: dir,
    env: pgChildEnv(runAs),
    runAs,
    logFile: path.join(dir, 'pgpool.log'),
  });
  // SIGINT is Pgpool-II's "fast shutdown" (SIGTERM would wait for clients to leave).
  const probe = pgLoginProbe(port, (client) => pgpoolNodesUp(client, nodes.length));
  return startPeer(child, port, 'SIGINT', dir, true, probe);
}

async function pgpoolNodesUp(client: pg.Client, expected: number): Promise<string | undefined> {
  const { rows } = await client.query<{ status: string; role: string }>('SHOW POOL_NODES');
  // 'waiting' = up, no client has used it yet.
  const up = rows.filter((r) => r.status === 'up' || r.status === 'waiting');
  const hasPrimary = rows.some((r) => r.role === 'primary');
  return up.length >= expected && hasPrimary ? undefined : `pool_nodes: ${JSON.stringify(rows)}`;
}
