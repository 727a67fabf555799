/**
 * The PostgreSQL benchmark: one local primary + 2 replicas, and pgbench through each
 * contender — direct, a bare Node.js forwarder, rwsplit (native and js data planes), PgBouncer, Pgpool-II — for {select-only, tpcb-like} ×
 * {simple, extended, prepared}, contenders alternated so drift hits all alike. Writes
 * bench/results/pg-bench.{json,md}. Usage (after `npm run build`):
 *
 *   node dist/bench/pg-bench.js [--seconds 12] [--warmup 2] [--out DIR] [--contenders a,b]
 *
 * `BENCH_SECONDS` in the environment sets the default duration.
 */
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { PgCluster } from '../src/cluster/pg-cluster.js';
import { resolvePgRunAs } from '../src/cluster/run-as.js';
import { queryRows } from '../src/cluster/sql.js';
import { machineInfo } from './machine.js';
import {
  PGBOUNCER_BIN,
  PGPOOL_BIN,
  startPgbouncer,
  startPgpool,
  pgLoginProbe,
  startNodeForwarder,
  startRwsplit,
  type RunningPeer,
} from './peers.js';
import { initPgbench, runPgbench, type PgbenchTarget } from './pgbench.js';
import { clockTicksPerSecond, cpuTicks } from './proc-stat.js';
import {
  addRatios,
  renderConsoleTable,
  writeReport,
  type Contender,
  type ProtocolMode,
  type RunResult,
  type Workload,
} from './report.js';
import { Cleanup, installSignalHandlers, log, reportFailure, UsageError } from './run-control.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const ALL_CONTENDERS: Contender[] = [
  'direct',
  'forwarder',
  'rwsplit-native',
  'rwsplit-js',
  'pgbouncer',
  'pgpool',
];
/** `rwsplit` (dataPlane auto) is still accepted; the default runs both data planes side by side. */
const KNOWN_CONTENDERS: Contender[] = [...ALL_CONTENDERS, 'rwsplit'];
const MODES: ProtocolMode[] = ['simple', 'extended', 'prepared'];
const WORKLOAD_ARGS: Record<Workload, string[]> = { 'select-only': ['-S'], 'tpcb-like': [] };
const COMMON_ARGS = ['-n', '-c', '16', '-j', '2'];
const SCALE = 10;
const REPLICAS = 2;
const CLUSTER_SETTINGS = { shared_buffers: '256MB', max_connections: '300' };

const USAGE =
  'usage: node dist/bench/pg-bench.js [--seconds N] [--warmup N] [--out DIR] [--contenders a,b,…]';

interface Options {
  seconds: number;
  warmupSeconds: number;
  outDir: string;
  contenders: Contender[];
}

function positiveInt(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0)
    throw new UsageError(`${name} must be a whole number of seconds, got '${text}'`);
  return n;
}

function parseOptions(argv: string[]): Options {
  try {
    return parseOptionsOrThrow(argv);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    // node:util parseArgs errors (unknown option, missing value)
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
}

function parseOptionsOrThrow(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      seconds: { type: 'string' },
      warmup: { type: 'string', default: '2' },
      out: { type: 'string', default: path.join(REPO_ROOT, 'bench', 'results') },
      contenders: { type: 'string', default: ALL_CONTENDERS.join(',') },
    },
  });
  const seconds = positiveInt('--seconds', values.seconds ?? process.env['BENCH_SECONDS'] ?? '12');
  if (seconds < 1) throw new UsageError('--seconds must be at least 1');
  const contenders = values.contenders.split(',').map((c) => c.trim()) as Contender[];
  const unknown = contenders.filter((c) => !KNOWN_CONTENDERS.includes(c));
  if (unknown.length > 0)
    throw new UsageError(`unknown contender(s) ${unknown.join(', ')}; use ${KNOWN_CONTENDERS}`);
  if (!contenders.includes('direct')) contenders.unshift('direct'); // ratios need it
  return {
    seconds,
    warmupSeconds: positiveInt('--warmup', values.warmup),
    outDir: path.resolve(values.out),
    contenders: KNOWN_CONTENDERS.filter((c) => contenders.includes(c)),
  };
}

/** Where pgbench connects for a contender, and the process whose CPU we read (none for direct). */
interface Target {
  contender: Contender;
  endpoint: PgbenchTarget;
  peer: RunningPeer | undefined;
}

async function startContenders(
  cluster: PgCluster,
  contenders: Contender[],
  cleanup: Cleanup,
  signal: AbortSignal,
): Promise<Target[]> {
  const runAs = resolvePgRunAs();
  const targets: Target[] = [];
  for (const contender of contenders) {
    signal.throwIfAborted();
    let peer: RunningPeer | undefined;
    if (contender === 'rwsplit') peer = await startRwsplit(REPO_ROOT, cluster.nodes);
    else if (contender === 'rwsplit-native') peer = await startRwsplit(REPO_ROOT, cluster.nodes, 'native');
    else if (contender === 'rwsplit-js') peer = await startRwsplit(REPO_ROOT, cluster.nodes, 'js');
    else if (contender === 'pgbouncer') peer = await startPgbouncer(cluster.primary, runAs);
    else if (contender === 'pgpool') peer = await startPgpool(cluster.nodes, runAs);
    else if (contender === 'forwarder')
      peer = await startNodeForwarder(REPO_ROOT, '127.0.0.1', cluster.primary.port, (p) => pgLoginProbe(p));
    if (peer !== undefined) {
      cleanup.add(contender, peer.stop);
      log(`${contender} ready on port ${peer.port} (pid ${peer.process.pid})`);
    }
    const port = peer?.port ?? cluster.primary.port;
    targets.push({ contender, endpoint: { host: '127.0.0.1', port }, peer });
  }
  return targets;
}

/** One measured pgbench run, with the proxy's CPU read from /proc before and after. */
async function measure(
  target: Target,
  workload: Workload,
  mode: ProtocolMode,
  seconds: number,
  signal: AbortSignal,
): Promise<RunResult> {
  const args = [...COMMON_ARGS, '-T', String(seconds), '-M', mode, ...WORKLOAD_ARGS[workload]];
  const peer = target.peer;
  const before = peer === undefined ? 0 : cpuTicks(peer.process.pid, peer.cpuOverTree);
  const { summary } = await runPgbench(target.endpoint, args, signal);
  const after = peer === undefined ? 0 : cpuTicks(peer.process.pid, peer.cpuOverTree);
  signal.throwIfAborted();
  const tx = summary.transactions;
  const cpuUs = ((after - before) / clockTicksPerSecond()) * 1e6;
  return {
    workload,
    mode,
    contender: target.contender,
    pgbenchArgs: args,
    exitCode: summary.exitCode,
    tps: summary.tps,
    transactions: tx,
    failedTransactions: summary.failedTransactions,
    abortedClients: summary.abortedClients,
    latencyAvgMs: summary.latencyAvgMs,
    proxyCpuUsPerTx: peer === undefined || tx === null || tx === 0 ? null : cpuUs / tx,
    ratioToDirect: null,
    errors: summary.errors,
  };
}

async function runMatrix(targets: Target[], opts: Options, signal: AbortSignal): Promise<RunResult[]> {
  if (opts.warmupSeconds > 0) {
    for (const target of targets) {
      log(`warm-up ${target.contender} (${opts.warmupSeconds} s select-only)`);
      const args = [...COMMON_ARGS, '-T', String(opts.warmupSeconds), '-S'];
      await runPgbench(target.endpoint, args, signal);
      signal.throwIfAborted();
    }
  }
  const results: RunResult[] = [];
  for (const workload of Object.keys(WORKLOAD_ARGS) as Workload[]) {
    for (const mode of MODES) {
      for (const target of targets) {
        const r = await measure(target, workload, mode, opts.seconds, signal);
        const cpu = r.proxyCpuUsPerTx === null ? '' : `, proxy CPU ${r.proxyCpuUsPerTx.toFixed(1)} µs/tx`;
        const failed = r.errors.length > 0 ? `, exit ${r.exitCode}: ${r.errors[0]}` : '';
        log(`${workload} ${mode} ${target.contender}: ${r.tps?.toFixed(0) ?? '—'} tps${cpu}${failed}`);
        results.push(r);
      }
    }
  }
  addRatios(results);
  return results;
}

async function startCluster(cleanup: Cleanup): Promise<PgCluster> {
  log(`starting PostgreSQL primary + ${REPLICAS} replicas`);
  const cluster = await PgCluster.start({ replicas: REPLICAS, settings: CLUSTER_SETTINGS });
  cleanup.add('PostgreSQL cluster', () => cluster.stop());
  log(`pgbench -i -s ${SCALE} on the primary (port ${cluster.primary.port})`);
  await initPgbench({ host: '127.0.0.1', port: cluster.primary.port }, SCALE);
  await cluster.waitForReplication(120_000);
  return cluster;
}

const abort = new AbortController();

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  installSignalHandlers(abort);
  execFileSync('bash', [path.join(REPO_ROOT, 'scripts', 'ensure-system-deps.sh'), 'pgbouncer', 'pgpool2'], {
    stdio: 'inherit',
  });
  const cleanup = new Cleanup();
  const started = Date.now();
  const loadAtStart = os.loadavg();
  try {
    const cluster = await startCluster(cleanup);
    abort.signal.throwIfAborted();
    const targets = await startContenders(cluster, opts.contenders, cleanup, abort.signal);
    const results = await runMatrix(targets, opts, abort.signal);
    const [row] = await queryRows<{ version: string }>(
      { host: '127.0.0.1', port: cluster.primary.port, password: undefined },
      'SELECT version()',
    );
    const report = {
      date: new Date().toISOString(),
      durationSeconds: opts.seconds,
      machine: machineInfo(row?.version ?? 'unknown', PGBOUNCER_BIN, PGPOOL_BIN, loadAtStart),
      cluster: { replicas: REPLICAS, scale: SCALE, settings: CLUSTER_SETTINGS },
      pgbench: { common: COMMON_ARGS, workloads: WORKLOAD_ARGS, warmupSeconds: opts.warmupSeconds },
      peers: peerSettings(),
      results,
    };
    console.log('\n' + renderConsoleTable(results) + '\n');
    const files = writeReport(opts.outDir, report);
    log(`wrote ${files.json} and ${files.md} (${Math.round((Date.now() - started) / 1000)} s in all)`);
  } finally {
    log('stopping everything');
    await cleanup.stopAll();
  }
}

/** The peers' settings, for the JSON (the full files are built in peers.ts). */
function peerSettings(): Record<string, string> {
  return {
    forwarder: 'bench/node-forwarder.ts: socket data → write, one primary connection per client, no parsing',
    rwsplit: 'bin/rwsplit.js start; pool.size=20, logging.level=warn, defaults otherwise; nodes = all 3',
    'rwsplit-native': 'the same with dataPlane: native (the native forwarding core)',
    'rwsplit-js': 'the same with dataPlane: js (the TypeScript data plane)',
    pgbouncer: 'pool_mode=session default_pool_size=20 max_client_conn=200 auth_type=trust; primary only',
    pgpool:
      "backend_clustering_mode='streaming_replication' load_balance_mode=on backend_weight0=0 " +
      'replicas weight 1 num_init_children=32 max_pool=4 sr_check_period=5 delay_threshold=10000000 ' +
      'health_check_period=5 enable_pool_hba=off trust, no failover',
  };
}

main().catch((err: unknown) => reportFailure(err, abort, USAGE));
