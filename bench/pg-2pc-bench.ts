/**
 * The cross-shard transaction benchmark: two local PostgreSQL shards (primary + 1 replica
 * each) behind one rwsplit, and pgbench bank transfers through it — within one shard (an
 * ordinary commit) and across both (two-phase commit) — plus the single-shard transfer
 * straight at one primary for context. Afterwards it checks that no `rwsplit:%` transaction
 * is left prepared and that the sum of all balances is unchanged. Writes
 * bench/results/pg-2pc-bench.{json,md}. Usage (after `npm run build`):
 *
 *   node dist/bench/pg-2pc-bench.js [--seconds 15] [--rounds 3] [--warmup 3] [--clients 8] [--out DIR]
 *
 * `BENCH_SECONDS` in the environment sets the default duration.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import pg from 'pg';

import { freePort } from '../src/cluster/free-port.js';
import { pgBinary } from '../src/cluster/pg-binaries.js';
import { PgShardedCluster } from '../src/cluster/pg-shards.js';
import { queryRows, withClient, type SqlTarget } from '../src/cluster/sql.js';
import { baseMachineInfo, toolVersion } from './machine.js';
import { makeOwnRunDir, rwsplitNodesUp, spawnRwsplit, startPeer, type RunningPeer } from './peers.js';
import {
  headline,
  renderConsoleSummary,
  summarize,
  writeTwoPcReport,
  type RunCase,
  type TwoPcBenchReport,
  type TwoPcChecks,
  type TwoPcRunResult,
} from './pg-2pc-report.js';
import {
  ACCOUNTS_PER_SHARD,
  accountsSetupSql,
  commitLatencyMs,
  START_BALANCE,
  transferScript,
  type TransferKind,
} from './pg-2pc-scripts.js';
import { runPgbench, type PgbenchTarget } from './pgbench.js';
import { clockTicksPerSecond, cpuTicks } from './proc-stat.js';
import { Cleanup, installSignalHandlers, log, reportFailure, UsageError } from './run-control.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const SHARDS = 2;
const REPLICAS = 1;
// Each rwsplit client in a cross-shard transaction holds a connection, and at COMMIT a
// prepared transaction, on both primaries: both limits far above the client count.
const CLUSTER_SETTINGS = { max_connections: '100', max_prepared_transactions: '100' };
const RECOVERY_INTERVAL_MS = 2000;
/** How long the end check waits for recovery to finish prepared transactions it finds. */
const RECOVERY_WAIT_MS = 4 * RECOVERY_INTERVAL_MS;
const CASES: RunCase[] = ['direct-single', 'rwsplit-single', 'rwsplit-cross'];
const SCRIPT_OF: Record<RunCase, TransferKind> = {
  'direct-single': 'single-direct',
  'rwsplit-single': 'single',
  'rwsplit-cross': 'cross',
};

const USAGE =
  'usage: node dist/bench/pg-2pc-bench.js [--seconds N] [--rounds N] [--warmup N] [--clients N] [--out DIR]';

interface Options {
  seconds: number;
  rounds: number;
  warmupSeconds: number;
  clients: number;
  outDir: string;
}

function wholeNumber(name: string, text: string, min: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min)
    throw new UsageError(`${name} must be a whole number ≥ ${min}, got '${text}'`);
  return n;
}

function parseOptions(argv: string[]): Options {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        seconds: { type: 'string' },
        rounds: { type: 'string', default: '3' },
        warmup: { type: 'string', default: '3' },
        clients: { type: 'string', default: '8' },
        out: { type: 'string', default: path.join(REPO_ROOT, 'bench', 'results') },
      },
    }));
  } catch (err) {
    // node:util parseArgs errors (unknown option, missing value)
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  return {
    seconds: wholeNumber('--seconds', values.seconds ?? process.env['BENCH_SECONDS'] ?? '15', 1),
    rounds: wholeNumber('--rounds', values.rounds, 1),
    warmupSeconds: wholeNumber('--warmup', values.warmup, 0),
    clients: wholeNumber('--clients', values.clients, 1),
    outDir: path.resolve(values.out),
  };
}

function commonArgs(clients: number): string[] {
  return ['-n', '-M', 'simple', '-r', '-c', String(clients), '-j', String(Math.min(2, clients))];
}

/** Where the benchmark runs: the shards, rwsplit, and the script file of each case. */
interface Setup {
  cluster: PgShardedCluster;
  primaries: Map<string, SqlTarget>;
  rwsplit: RunningPeer;
  rwsplitLogFile: string;
  scriptFiles: Record<RunCase, string>;
}

async function startShards(cleanup: Cleanup): Promise<PgShardedCluster> {
  log(`starting ${SHARDS} PostgreSQL shards, each a primary + ${REPLICAS} replica`);
  const cluster = await PgShardedCluster.start({
    shards: SHARDS,
    replicas: REPLICAS,
    settings: CLUSTER_SETTINGS,
  });
  cleanup.add('PostgreSQL shards', () => cluster.stop());
  for (const [i, primary] of cluster.primaries.entries()) {
    log(`creating ${ACCOUNTS_PER_SHARD.toLocaleString('en-US')} accounts on ${primary.shard}`);
    await withClient(primaryTarget(primary.port), async (client) => {
      for (const sql of accountsSetupSql(i)) await client.query(sql);
    });
  }
  await cluster.waitForReplication(120_000);
  return cluster;
}

function primaryTarget(port: number): SqlTarget {
  return { host: '127.0.0.1', port, password: undefined };
}

/** rwsplit's config for the run: every node with its shard, the coordinator log on s1. */
function rwsplitConfig(cluster: PgShardedCluster, pgPort: number, httpPort: number): object {
  return {
    listen: { postgres: { host: '127.0.0.1', port: pgPort }, http: { host: '127.0.0.1', port: httpPort } },
    postgres: {
      nodes: cluster.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port, shard: n.shard })),
      pool: { size: 20 },
      sharding: { twoPhase: { logShard: 's1', recoveryIntervalMs: RECOVERY_INTERVAL_MS } },
    },
    logging: { level: 'warn' },
  };
}

/** rwsplit from `bin/rwsplit.js start`; ready once a hinted query works and every node is up. */
async function startShardedRwsplit(
  cluster: PgShardedCluster,
  dir: string,
): Promise<{ peer: RunningPeer; logFile: string }> {
  const [pgPort, httpPort] = [await freePort(), await freePort()];
  const child = spawnRwsplit(REPO_ROOT, dir, rwsplitConfig(cluster, pgPort, httpPort));
  const probe = async (): Promise<string | undefined> => {
    const client = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'postgres', database: 'postgres' });
    client.on('error', () => {});
    try {
      await client.connect();
      // Statements with no shard are refused by a sharded rwsplit; a hint gives one.
      await client.query('/* rwsplit:shard=s1 */ SELECT 1');
      return await rwsplitNodesUp(httpPort, 'postgres', cluster.nodes.length);
    } finally {
      await client.end().catch(() => {});
    }
  };
  const peer = await startPeer(child, pgPort, 'SIGTERM', dir, false, probe);
  return { peer, logFile: child.spec.logFile };
}

async function setUp(cleanup: Cleanup, signal: AbortSignal): Promise<Setup> {
  const cluster = await startShards(cleanup);
  signal.throwIfAborted();
  const primaries = new Map(cluster.primaries.map((p) => [p.shard, primaryTarget(p.port)]));
  const dir = makeOwnRunDir('rwsplit-bench-2pc-');
  const { peer, logFile } = await startShardedRwsplit(cluster, dir);
  cleanup.add('rwsplit', peer.stop);
  log(`rwsplit ready on port ${peer.port} (pid ${peer.process.pid})`);
  const scriptFiles = {} as Record<RunCase, string>;
  for (const runCase of CASES) {
    const file = path.join(dir, `${runCase}.sql`);
    writeFileSync(file, transferScript(SCRIPT_OF[runCase], SHARDS));
    scriptFiles[runCase] = file;
  }
  return { cluster, primaries, rwsplit: peer, rwsplitLogFile: logFile, scriptFiles };
}

function endpointOf(setup: Setup, runCase: RunCase): PgbenchTarget {
  const port = runCase === 'direct-single' ? setup.cluster.primaries[0]?.port : setup.rwsplit.port;
  if (port === undefined) throw new Error('no s1 primary');
  return { host: '127.0.0.1', port };
}

/** `rwsplit:%` prepared transactions on each shard's primary. */
async function preparedByShard(setup: Setup): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const [shard, target] of setup.primaries) {
    const [row] = await queryRows<{ n: string }>(
      target,
      "SELECT count(*) AS n FROM pg_prepared_xacts WHERE gid LIKE 'rwsplit:%'",
    );
    out[shard] = Number(row?.n ?? 0);
  }
  return out;
}

const total = (byShard: Record<string, number>): number => Object.values(byShard).reduce((a, b) => a + b, 0);

/** One measured pgbench run, with rwsplit's CPU read from /proc before and after. */
async function measure(
  setup: Setup,
  runCase: RunCase,
  round: number,
  opts: Options,
  signal: AbortSignal,
): Promise<TwoPcRunResult> {
  const args = [...commonArgs(opts.clients), '-T', String(opts.seconds), '-f', setup.scriptFiles[runCase]];
  const proxied = runCase !== 'direct-single';
  const pid = setup.rwsplit.process.pid;
  const before = proxied ? cpuTicks(pid, false) : 0;
  const { summary, output } = await runPgbench(endpointOf(setup, runCase), args, signal);
  const after = proxied ? cpuTicks(pid, false) : 0;
  signal.throwIfAborted();
  const preparedRightAfter = total(await preparedByShard(setup));
  const tx = summary.transactions;
  const cpuUs = ((after - before) / clockTicksPerSecond()) * 1e6;
  return {
    round,
    runCase,
    pgbenchArgs: args.map((a) => (a === setup.scriptFiles[runCase] ? `${runCase}.sql` : a)),
    exitCode: summary.exitCode,
    tps: summary.tps,
    transactions: tx,
    failedTransactions: summary.failedTransactions,
    abortedClients: summary.abortedClients,
    latencyAvgMs: summary.latencyAvgMs,
    commitLatencyMs: commitLatencyMs(output),
    proxyCpuUsPerTx: !proxied || tx === null || tx === 0 ? null : cpuUs / tx,
    preparedRightAfter,
    errors: summary.errors,
  };
}

function describeRun(r: TwoPcRunResult): string {
  const cpu = r.proxyCpuUsPerTx === null ? '' : `, rwsplit CPU ${r.proxyCpuUsPerTx.toFixed(1)} µs/tx`;
  const commit = r.commitLatencyMs === null ? '' : `, COMMIT ${r.commitLatencyMs.toFixed(3)} ms`;
  const failed = r.errors.length > 0 || r.exitCode !== 0 ? `, exit ${r.exitCode}: ${r.errors[0] ?? ''}` : '';
  const prepared = r.preparedRightAfter > 0 ? `, ${r.preparedRightAfter} prepared left at exit` : '';
  return `round ${r.round} ${r.runCase}: ${r.tps?.toFixed(0) ?? '—'} tps${commit}${cpu}${failed}${prepared}`;
}

/** Warm-up of every case, then the rounds, the case order rotating so drift hits all alike. */
async function runRounds(setup: Setup, opts: Options, signal: AbortSignal): Promise<TwoPcRunResult[]> {
  if (opts.warmupSeconds > 0) {
    for (const runCase of CASES) {
      log(`warm-up ${runCase} (${opts.warmupSeconds} s)`);
      const args = [
        ...commonArgs(opts.clients),
        '-T',
        String(opts.warmupSeconds),
        '-f',
        setup.scriptFiles[runCase],
      ];
      await runPgbench(endpointOf(setup, runCase), args, signal);
      signal.throwIfAborted();
    }
  }
  const runs: TwoPcRunResult[] = [];
  for (let round = 1; round <= opts.rounds; round++) {
    const shift = (round - 1) % CASES.length;
    for (const runCase of [...CASES.slice(shift), ...CASES.slice(0, shift)]) {
      const r = await measure(setup, runCase, round, opts, signal);
      log(describeRun(r));
      runs.push(r);
    }
  }
  return runs;
}

async function balances(
  setup: Setup,
): Promise<{ sum: Record<string, number>; rows: Record<string, number> }> {
  const sum: Record<string, number> = {};
  const rows: Record<string, number> = {};
  for (const [shard, target] of setup.primaries) {
    const [row] = await queryRows<{ s: string; n: string }>(
      target,
      'SELECT sum(balance) AS s, count(*) AS n FROM accounts',
    );
    sum[shard] = Number(row?.s ?? 0);
    rows[shard] = Number(row?.n ?? 0);
  }
  return { sum, rows };
}

/**
 * No `rwsplit:%` transaction left prepared (after giving recovery time to finish any that a
 * client disconnected by pgbench's -T could leave), and the sum of balances unchanged.
 */
async function finalChecks(setup: Setup, totalBefore: number): Promise<TwoPcChecks> {
  const preparedAtEnd = await preparedByShard(setup);
  let preparedAfterWait: Record<string, number> | null = null;
  const started = Date.now();
  if (total(preparedAtEnd) > 0) {
    log(`${total(preparedAtEnd)} prepared transactions right after the last run; waiting for recovery`);
    do {
      await delay(500);
      preparedAfterWait = await preparedByShard(setup);
    } while (total(preparedAfterWait) > 0 && Date.now() - started < RECOVERY_WAIT_MS);
  }
  const after = await balances(setup);
  const expectedTotal = SHARDS * ACCOUNTS_PER_SHARD * START_BALANCE;
  const totalAfter = total(after.sum);
  return {
    expectedTotal,
    totalBefore,
    totalAfter,
    balanceByShard: after.sum,
    accountsByShard: after.rows,
    preparedAtEnd,
    preparedAfterWait,
    waitedMs: preparedAfterWait === null ? 0 : Date.now() - started,
    ok:
      totalAfter === expectedTotal &&
      totalBefore === expectedTotal &&
      total(preparedAfterWait ?? preparedAtEnd) === 0,
  };
}

/** rwsplit's log lines (it runs at level warn), the last `max`, each cut to a readable length. */
function rwsplitLogLines(file: string, max = 15): string[] {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  return lines.slice(-max).map((l) => (l.length > 400 ? `${l.slice(0, 400)}…` : l));
}

/** Everything written to the results files. */
async function buildReport(
  setup: Setup,
  opts: Options,
  measured: { loadAtStart: number[]; runs: TwoPcRunResult[]; checks: TwoPcChecks },
): Promise<TwoPcBenchReport> {
  const cells = summarize(measured.runs);
  const s1 = setup.primaries.get('s1');
  const [row] = s1 === undefined ? [] : await queryRows<{ version: string }>(s1, 'SELECT version()');
  return {
    date: new Date().toISOString(),
    machine: {
      ...baseMachineInfo(measured.loadAtStart),
      postgres: row?.version ?? 'unknown',
      pgbench: toolVersion(pgBinary('pgbench'), ['--version']),
    },
    cluster: {
      shards: SHARDS,
      replicasPerShard: REPLICAS,
      accountsPerShard: ACCOUNTS_PER_SHARD,
      settings: CLUSTER_SETTINGS,
    },
    pgbench: {
      common: commonArgs(opts.clients),
      seconds: opts.seconds,
      rounds: opts.rounds,
      warmupSeconds: opts.warmupSeconds,
      scripts: Object.fromEntries(CASES.map((c) => [c, transferScript(SCRIPT_OF[c], SHARDS)])),
    },
    rwsplit:
      '`bin/rwsplit.js start`, all 4 nodes with their shard, pool.size=20, ' +
      `sharding.twoPhase.logShard=s1, recoveryIntervalMs=${RECOVERY_INTERVAL_MS}, logging.level=warn, defaults otherwise`,
    cells,
    headline: headline(cells, measured.runs),
    checks: measured.checks,
    rwsplitLog: rwsplitLogLines(setup.rwsplitLogFile),
    runs: measured.runs,
  };
}

const abort = new AbortController();

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  installSignalHandlers(abort);
  const cleanup = new Cleanup();
  const started = Date.now();
  const loadAtStart = os.loadavg();
  try {
    const setup = await setUp(cleanup, abort.signal);
    const totalBefore = total((await balances(setup)).sum);
    const runs = await runRounds(setup, opts, abort.signal);
    const checks = await finalChecks(setup, totalBefore);
    const report = await buildReport(setup, opts, { loadAtStart, runs, checks });
    const { cells, headline: head } = report;
    console.log('\n' + renderConsoleSummary(cells, head) + '\n');
    log(
      `checks: ${checks.ok ? 'pass' : 'FAIL'} — total balance ${checks.totalAfter} (expected ${checks.expectedTotal}), ` +
        `prepared left ${total(checks.preparedAfterWait ?? checks.preparedAtEnd)}`,
    );
    const files = writeTwoPcReport(opts.outDir, report);
    log(`wrote ${files.json} and ${files.md} (${Math.round((Date.now() - started) / 1000)} s in all)`);
    if (!checks.ok) process.exitCode = 1;
  } finally {
    log('stopping everything');
    await cleanup.stopAll();
  }
}

main().catch((err: unknown) => reportFailure(err, abort, USAGE));
