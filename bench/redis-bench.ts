/**
 * The Redis benchmark: one local shard (a primary + 2 replicas) and redis-benchmark SET and GET
 * through each contender — direct to the primary, rwsplit (reads on the replicas), twemproxy
 * with the one server — without and with `-P 16`, contenders alternated so drift hits all
 * alike. Writes bench/results/redis-bench.{json,md}. Usage (after `npm run build`):
 *
 *   node dist/bench/redis-bench.js [--requests 200000] [--rounds 3] [--warmup 20000] [--out DIR]
 *                                  [--contenders rwsplit,rwsplit-2w,twemproxy]
 */
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { PgCluster } from '../src/cluster/pg-cluster.js';
import { parseInfo } from '../src/cluster/redis-client.js';
import { RedisCluster } from '../src/cluster/redis-cluster.js';
import { redisServerBinary } from '../src/cluster/redis-process.js';
import { baseMachineInfo, toolVersion } from './machine.js';
import { startNodeForwarder, type RunningPeer } from './peers.js';
import { clockTicksPerSecond, cpuTicks } from './proc-stat.js';
import { runRedisBenchmark } from './redis-benchmark.js';
import {
  NUTCRACKER_BIN,
  pingPong,
  startRwsplitRedis,
  startTwemproxy,
  TWEMPROXY_SETTINGS,
} from './redis-peers.js';
import {
  renderRedisConsoleTable,
  summarize,
  writeRedisReport,
  type PipelineMode,
  type RedisBenchCommand,
  type RedisBenchReport,
  type RedisContender,
  type RedisMachineInfo,
  type RedisRunResult,
} from './redis-report.js';
import { Cleanup, installSignalHandlers, log, reportFailure, UsageError } from './run-control.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const ALL_CONTENDERS: RedisContender[] = ['direct', 'forwarder', 'rwsplit', 'rwsplit-2w', 'twemproxy'];
const MODES: Record<PipelineMode, string[]> = { P1: [], P16: ['-P', '16'] };
// SET first: the GET runs then read a key that exists (no -r: every request uses one key).
const COMMANDS: RedisBenchCommand[] = ['SET', 'GET'];
const CLIENTS = 50;
const SHARDS = 1;
const REPLICAS = 2;

const USAGE =
  'usage: node dist/bench/redis-bench.js [--requests N] [--rounds N] [--warmup N] [--out DIR] [--contenders a,b]';

interface Options {
  requests: number;
  rounds: number;
  warmupRequests: number;
  outDir: string;
  contenders: RedisContender[];
}

function wholeNumber(name: string, text: string, min: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min)
    throw new UsageError(`${name} must be a whole number >= ${min}, got '${text}'`);
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
      requests: { type: 'string', default: '200000' },
      rounds: { type: 'string', default: '3' },
      warmup: { type: 'string', default: '20000' },
      out: { type: 'string', default: path.join(REPO_ROOT, 'bench', 'results') },
      contenders: { type: 'string', default: ALL_CONTENDERS.join(',') },
    },
  });
  const contenders = values.contenders.split(',').map((c) => c.trim()) as RedisContender[];
  const unknown = contenders.filter((c) => !ALL_CONTENDERS.includes(c));
  if (unknown.length > 0)
    throw new UsageError(`unknown contender(s) ${unknown.join(', ')}; use ${ALL_CONTENDERS}`);
  return {
    // redis-benchmark rejects -P 16 with fewer requests than clients × 16 in a useful way: keep it sane.
    requests: wholeNumber('--requests', values.requests, 1000),
    rounds: wholeNumber('--rounds', values.rounds, 1),
    warmupRequests: wholeNumber('--warmup', values.warmup, 0),
    outDir: path.resolve(values.out),
    // direct is always measured: the ratios need it.
    contenders: ALL_CONTENDERS.filter((c) => c === 'direct' || contenders.includes(c)),
  };
}

/** Where redis-benchmark connects for a contender, and the process whose CPU we read (none for direct). */
interface Target {
  contender: RedisContender;
  port: number;
  peer: RunningPeer | undefined;
}

interface Clusters {
  pg: PgCluster;
  redis: RedisCluster;
}

async function startClusters(cleanup: Cleanup, signal: AbortSignal): Promise<Clusters> {
  // rwsplit's config needs a PostgreSQL section: one primary, never queried by the benchmark.
  log('starting a PostgreSQL primary (rwsplit needs one in its config)');
  const pg = await PgCluster.start({ replicas: 0 });
  cleanup.add('PostgreSQL', () => pg.stop());
  signal.throwIfAborted();
  log(`starting Redis: ${SHARDS} shard, primary + ${REPLICAS} replicas`);
  const redis = await RedisCluster.start({ shards: SHARDS, replicas: REPLICAS });
  cleanup.add('Redis cluster', () => redis.stop());
  signal.throwIfAborted();
  return { pg, redis };
}

async function startContenders(
  clusters: Clusters,
  contenders: RedisContender[],
  cleanup: Cleanup,
  signal: AbortSignal,
): Promise<Target[]> {
  const primary = clusters.redis.shard('s1').primary;
  const targets: Target[] = [];
  for (const contender of contenders) {
    signal.throwIfAborted();
    let peer: RunningPeer | undefined;
    if (contender === 'rwsplit')
      peer = await startRwsplitRedis(REPO_ROOT, clusters.pg.nodes, clusters.redis.nodes);
    else if (contender === 'rwsplit-2w')
      peer = await startRwsplitRedis(REPO_ROOT, clusters.pg.nodes, clusters.redis.nodes, 2);
    else if (contender === 'twemproxy') peer = await startTwemproxy([primary]);
    else if (contender === 'forwarder')
      peer = await startNodeForwarder(REPO_ROOT, primary.host, primary.port, (p) => () => pingPong(p));
    if (peer !== undefined) {
      cleanup.add(contender, peer.stop);
      log(`${contender} ready on port ${peer.port} (pid ${peer.process.pid})`);
    }
    targets.push({ contender, port: peer?.port ?? primary.port, peer });
  }
  return targets;
}

/** Generous: a healthy run of 200,000 requests takes a few seconds; a stalled proxy never ends. */
function timeoutMs(requests: number): number {
  return 30_000 + requests / 2;
}

/** One measured redis-benchmark run, with the proxy's CPU read from /proc before and after. */
async function measure(
  target: Target,
  spec: { round: number; mode: PipelineMode; command: RedisBenchCommand; requests: number },
  redis: RedisCluster,
  signal: AbortSignal,
): Promise<RedisRunResult> {
  const args = [
    '-c',
    String(CLIENTS),
    '-n',
    String(spec.requests),
    '-t',
    spec.command.toLowerCase(),
    ...MODES[spec.mode],
  ];
  const peer = target.peer;
  await resetStats(redis);
  const before = peer === undefined ? 0 : cpuTicks(peer.process.pid, peer.cpuOverTree);
  const summary = await runRedisBenchmark(target.port, args, timeoutMs(spec.requests), signal);
  const after = peer === undefined ? 0 : cpuTicks(peer.process.pid, peer.cpuOverTree);
  signal.throwIfAborted();
  const calls = await callsByNode(redis, spec.command);
  const row = summary.rows.find((r) => r.test === spec.command);
  const ok = summary.exitCode === 0 && !summary.timedOut && row !== undefined;
  const cpuUs = ((after - before) / clockTicksPerSecond()) * 1e6;
  return {
    ...spec,
    contender: target.contender,
    args: [...args, '--csv'],
    exitCode: summary.exitCode,
    timedOut: summary.timedOut,
    rps: row?.rps ?? null,
    avgLatencyMs: row?.avgLatencyMs ?? null,
    p99LatencyMs: row?.p99LatencyMs ?? null,
    proxyCpuUsPerRequest: peer === undefined || !ok ? null : cpuUs / spec.requests,
    callsByNode: calls,
    messages: summary.messages,
  };
}

async function warmUp(targets: Target[], requests: number, signal: AbortSignal): Promise<void> {
  if (requests === 0) return;
  for (const target of targets) {
    log(`warm-up ${target.contender} (${requests} SET + GET)`);
    const args = ['-c', String(CLIENTS), '-n', String(requests), '-t', 'set,get'];
    const summary = await runRedisBenchmark(target.port, args, timeoutMs(requests), signal);
    signal.throwIfAborted();
    if (summary.exitCode !== 0 || summary.timedOut)
      log(`warm-up ${target.contender} failed (exit ${summary.exitCode}): ${summary.messages.join(' | ')}`);
  }
}

function describe(r: RedisRunResult): string {
  const cpu =
    r.proxyCpuUsPerRequest === null ? '' : `, proxy CPU ${r.proxyCpuUsPerRequest.toFixed(2)} µs/req`;
  const failed = r.exitCode !== 0 || r.timedOut ? `, FAILED exit ${r.exitCode}` : '';
  const said = r.messages.length > 0 ? `: ${r.messages.join(' | ')}` : '';
  return `round ${r.round} ${r.mode} ${r.command} ${r.contender}: ${r.rps?.toFixed(0) ?? '—'} rps${cpu}${failed}${said}`;
}

async function runMatrix(
  targets: Target[],
  opts: Options,
  redis: RedisCluster,
  signal: AbortSignal,
): Promise<RedisRunResult[]> {
  await warmUp(targets, opts.warmupRequests, signal);
  const runs: RedisRunResult[] = [];
  for (let round = 1; round <= opts.rounds; round++) {
    for (const mode of Object.keys(MODES) as PipelineMode[]) {
      for (const command of COMMANDS) {
        for (const target of targets) {
          const r = await measure(target, { round, mode, command, requests: opts.requests }, redis, signal);
          log(describe(r));
          runs.push(r);
        }
      }
    }
  }
  return runs;
}

function machine(loadAtStart: number[]): RedisMachineInfo {
  return {
    ...baseMachineInfo(loadAtStart),
    redisServer: toolVersion(redisServerBinary(), ['--version']),
    redisBenchmark: toolVersion('redis-benchmark', ['--version']),
    nutcracker: toolVersion(NUTCRACKER_BIN, ['--version']),
  };
}

/** The contenders' settings, for the report (the files are built in redis-peers.ts). */
function contenderSettings(contenders: RedisContender[]): Record<RedisContender, string> {
  const all: Record<RedisContender, string> = {
    direct: 'redis-benchmark straight at the shard primary',
    forwarder: 'bench/node-forwarder.ts: socket data → write, one primary connection per client, no parsing',
    rwsplit:
      'bin/rwsplit.js start; redis section with the primary and both replicas, defaults ' +
      '(readFrom prefer-replica, round-robin, pool.size 2); logging.level=warn',
    'rwsplit-2w':
      'the same with workers: 2 (a controller and two data-plane processes, one link per node each); ' +
      'proxy CPU summed over the three processes',
    twemproxy:
      `nutcracker 0.5, one pool, one server (the primary, weight 1); ` +
      Object.entries(TWEMPROXY_SETTINGS)
        .map(([k, v]) => `${k}: ${v}`)
        .join(', '),
  };
  return Object.fromEntries(contenders.map((c) => [c, all[c]])) as Record<RedisContender, string>;
}

/** Zeroes every node's INFO commandstats, so {@link callsByNode} counts one run only. */
async function resetStats(redis: RedisCluster): Promise<void> {
  await Promise.all(redis.nodes.map((n) => redis.command(n.id, 'CONFIG', 'RESETSTAT')));
}

/**
 * How many `command` calls each node executed since {@link resetStats} (INFO commandstats):
 * shows where a contender sent the requests. Replicas also count the SETs replicated to them.
 */
async function callsByNode(redis: RedisCluster, command: RedisBenchCommand): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const node of redis.nodes) {
    const info = parseInfo(await redis.command(node.id, 'INFO', 'commandstats'));
    const stat = info.get(`cmdstat_${command.toLowerCase()}`) ?? '';
    out[node.id] = Number(/calls=(\d+)/.exec(stat)?.[1] ?? 0);
  }
  return out;
}

const abort = new AbortController();

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  installSignalHandlers(abort);
  // Installs redis-server, redis-tools (redis-benchmark) and nutcracker by default.
  execFileSync('bash', [path.join(REPO_ROOT, 'scripts', 'ensure-system-deps.sh')], { stdio: 'inherit' });
  const cleanup = new Cleanup();
  const started = Date.now();
  const loadAtStart = os.loadavg();
  try {
    const clusters = await startClusters(cleanup, abort.signal);
    const targets = await startContenders(clusters, opts.contenders, cleanup, abort.signal);
    const runs = await runMatrix(targets, opts, clusters.redis, abort.signal);
    const cells = summarize(runs);
    const report: RedisBenchReport = {
      date: new Date().toISOString(),
      machine: machine(loadAtStart),
      cluster: { shards: SHARDS, replicas: REPLICAS },
      redisBenchmark: {
        common: ['-c', String(CLIENTS), '-n', String(opts.requests)],
        modes: MODES,
        requests: opts.requests,
        rounds: opts.rounds,
        warmupRequests: opts.warmupRequests,
      },
      contenders: contenderSettings(opts.contenders),
      cells,
      runs,
    };
    console.log('\n' + renderRedisConsoleTable(cells) + '\n');
    const files = writeRedisReport(opts.outDir, report);
    log(`wrote ${files.json} and ${files.md} (${Math.round((Date.now() - started) / 1000)} s in all)`);
  } finally {
    log('stopping everything');
    await cleanup.stopAll();
  }
}

main().catch((err: unknown) => reportFailure(err, abort, USAGE));
