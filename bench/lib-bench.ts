/**
 * The library benchmark: one local primary + 2 replicas and a Node load generator (16
 * concurrent async loops) against a plain pg.Pool on the primary, a plain pg.Pool per
 * replica picked in turn by hand, `rwsplit/pg`, and pg.Pool through the rwsplit proxy (a
 * child process), contenders alternated round after round so drift hits all alike.
 * Workloads: select-only by primary key, and a read/write mix (1 UPDATE per 4 SELECTs).
 * CPU per query is this process's user+system time over the queries it ran (the load
 * generator included, the same for every contender), so the library's own cost is its
 * figure minus the plain pool's. Then the same for Redis (lib-redis-bench.ts). Writes
 * bench/results/lib-bench.md: one section per part; a run of one part (`--part pg|redis`)
 * rewrites its own section and keeps the other's. `--note` adds a line under each section
 * written (e.g. that the box was loaded). Usage:
 *
 *   node dist/bench/lib-bench.js [--seconds 3] [--rounds 3] [--part all|pg|redis] [--note text]
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { PgCluster } from '../src/cluster/pg-cluster.js';
import { createPool } from '../src/lib/pg/index.js';
import os from 'node:os';
import { redisLibBench } from './lib-redis-bench.js';
import { baseMachineInfo } from './machine.js';
import { startRwsplit } from './peers.js';
import { Cleanup, installSignalHandlers, log, reportFailure, UsageError } from './run-control.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const LOOPS = 16;
const ROWS = 100_000;
const abort = new AbortController();
type Workload = 'select-only' | 'read-write';
const WORKLOADS: Workload[] = ['select-only', 'read-write'];
const USAGE = 'node dist/bench/lib-bench.js [--seconds 3] [--rounds 3] [--part all|pg|redis] [--note text]';
const RESULTS = path.join(REPO_ROOT, 'bench', 'results', 'lib-bench.md');

/** Something with pg.Pool's query: each contender is one. */
interface Target {
  name: string;
  query(text: string, values: unknown[]): Promise<unknown>;
}

interface Result {
  queries: number;
  seconds: number;
  cpuMicros: number;
}

async function drive(target: Target, workload: Workload, seconds: number): Promise<Result> {
  const until = performance.now() + seconds * 1000;
  let queries = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: LOOPS }, async () => {
      let i = 0;
      while (performance.now() < until) {
        const aid = 1 + Math.floor(Math.random() * ROWS);
        if (workload === 'read-write' && i % 5 === 4)
          await target.query('UPDATE accounts SET abalance = abalance + 1 WHERE aid = $1', [aid]);
        else await target.query('SELECT abalance FROM accounts WHERE aid = $1', [aid]);
        queries++;
        i++;
      }
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  return { queries, seconds: (performance.now() - t0) / 1000, cpuMicros: cpu.user + cpu.system };
}

/**
 * The results file with `sections` (each starting with its `# ` title line) put in place of
 * the sections of the same title, the others kept.
 */
function mergeSections(sections: string[][]): string {
  const old = existsSync(RESULTS) ? readFileSync(RESULTS, 'utf8') : '';
  const kept = new Map<string, string>();
  for (const part of old.split(/^(?=# )/m)) {
    const title = part.split('\n', 1)[0]!;
    if (title.startsWith('# ')) kept.set(title, part.trimEnd());
  }
  for (const lines of sections) kept.set(lines[0]!, lines.join('\n'));
  return [...kept.values()].join('\n\n') + '\n';
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '3' },
      rounds: { type: 'string', default: '3' },
      part: { type: 'string', default: 'all' },
      note: { type: 'string' },
    },
  });
  const seconds = Number(values.seconds);
  const rounds = Number(values.rounds);
  const part = values.part;
  if (!(seconds > 0) || !Number.isInteger(rounds) || rounds < 1)
    throw new UsageError('--seconds must be a positive number and --rounds a positive integer');
  if (part !== 'all' && part !== 'pg' && part !== 'redis')
    throw new UsageError(`--part is all, pg or redis, not ${part}`);
  const cleanup = new Cleanup();
  installSignalHandlers(abort);
  const sections: string[][] = [];
  const noted = (lines: string[]): string[] =>
    values.note ? [lines[0]!, '', `**${values.note}**`, ...lines.slice(1)] : lines;
  try {
    if (part !== 'redis') sections.push(noted(await pgLibBench(seconds, rounds, cleanup)));
    if (part !== 'pg') sections.push(noted(await redisLibBench(REPO_ROOT, seconds, rounds, cleanup)));
    for (const lines of sections) console.log(lines.join('\n'));
    writeFileSync(RESULTS, mergeSections(sections));
    log(`written ${RESULTS}`);
  } finally {
    await cleanup.stopAll();
  }
}

async function pgLibBench(seconds: number, rounds: number, cleanup: Cleanup): Promise<string[]> {
  {
    log('starting PostgreSQL: primary + 2 replicas');
    const cluster = await PgCluster.start({ replicas: 2, settings: { max_connections: '300' } });
    cleanup.add('cluster', () => cluster.stop());
    const login = { user: 'postgres', database: 'postgres', max: LOOPS };
    const direct = (port: number): pg.Pool => new pg.Pool({ ...login, host: '127.0.0.1', port });
    const primary = direct(cluster.primary.port);
    await primary.query(
      `CREATE TABLE accounts (aid int PRIMARY KEY, abalance int NOT NULL DEFAULT 0);
       INSERT INTO accounts (aid) SELECT generate_series(1, ${ROWS}); ANALYZE accounts`,
    );
    await cluster.waitForReplication();
    const replicaPools = cluster.replicas.map((r) => direct(r.port));
    let turn = 0;
    const proxy = await startRwsplit(REPO_ROOT, cluster.nodes);
    cleanup.add('proxy', () => proxy.stop());
    const viaProxy = new pg.Pool({ ...login, host: '127.0.0.1', port: proxy.port });
    const lib = createPool({ nodes: cluster.nodes.map((n) => ({ host: n.host, port: n.port })), ...login });
    await lib.ready();
    const targets: Target[] = [
      { name: 'pg.Pool on the primary', query: (t, v) => primary.query(t, v) },
      {
        // Writes must still go to the primary; reads alternate over the replicas by hand.
        name: 'pg.Pool per replica by hand',
        query: (t, v) =>
          t.startsWith('SELECT')
            ? replicaPools[turn++ % replicaPools.length]!.query(t, v)
            : primary.query(t, v),
      },
      { name: 'rwsplit/pg', query: (t, v) => lib.query(t, v) },
      { name: 'pg.Pool via the rwsplit proxy', query: (t, v) => viaProxy.query(t, v) },
    ];
    const totals = new Map<string, Result>();
    for (const workload of WORKLOADS) {
      for (const t of targets) await drive(t, workload, 0.5); // warm-up: connections, plans
      for (let round = 1; round <= rounds; round++) {
        for (const t of targets) {
          const r = await drive(t, workload, seconds);
          const key = `${workload}|${t.name}`;
          const sum = totals.get(key) ?? { queries: 0, seconds: 0, cpuMicros: 0 };
          totals.set(key, {
            queries: sum.queries + r.queries,
            seconds: sum.seconds + r.seconds,
            cpuMicros: sum.cpuMicros + r.cpuMicros,
          });
          log(`${workload} round ${round} ${t.name}: ${Math.round(r.queries / r.seconds)} q/s`);
        }
      }
    }
    const lines = [
      '# rwsplit/pg benchmark',
      '',
      `\`npm run bench:lib\`: ${LOOPS} async loops in one Node process, ${rounds} rounds of ${seconds} s per`,
      'contender and workload, contenders alternated. "CPU/query" is this process (load generator',
      "included) per query; the library's own cost is its figure minus the plain pool's.",
      '',
      `Machine: ${JSON.stringify(baseMachineInfo(os.loadavg()))}`,
      '',
      '| workload | contender | queries/s | × plain pool | CPU µs/query |',
      '| --- | --- | ---: | ---: | ---: |',
    ];
    for (const workload of WORKLOADS) {
      const base = totals.get(`${workload}|${targets[0]!.name}`)!;
      for (const t of targets) {
        const r = totals.get(`${workload}|${t.name}`)!;
        const qps = r.queries / r.seconds;
        lines.push(
          `| ${workload} | ${t.name} | ${Math.round(qps)} | ${(qps / (base.queries / base.seconds)).toFixed(2)} | ${(r.cpuMicros / r.queries).toFixed(1)} |`,
        );
      }
    }
    await Promise.all([primary.end(), viaProxy.end(), lib.end(), ...replicaPools.map((p) => p.end())]);
    return lines;
  }
}

main().catch((err: unknown) => reportFailure(err, abort, USAGE));
