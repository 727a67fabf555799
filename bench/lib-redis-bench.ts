/**
 * The Redis half of `npm run bench:lib`: one local shard (a primary and 2 replicas) and a
 * Node load generator (16 concurrent async loops, in this process) with ioredis against a
 * plain ioredis client on the primary, `rwsplit/redis` (read-your-writes, the default, and
 * eventual), and ioredis through the rwsplit proxy (a child process), contenders alternated
 * round after round so drift hits all alike. Workloads: GET and SET of random keys among
 * 10,000, one command per loop iteration, and the same pipelined 16 to a batch. CPU per
 * command is this process's user+system time over the commands it ran (the load generator
 * and ioredis included, the same for every contender), so the library's own cost is its
 * figure minus the plain client's; the proxy's own CPU is in its process, not counted here.
 */
import os from 'node:os';
import { Redis } from 'ioredis';
import { RedisCluster } from '../src/cluster/redis-cluster.js';
import { createRedis } from '../src/lib/redis/index.js';
import { baseMachineInfo } from './machine.js';
import { startRwsplitRedis } from './redis-peers.js';
import { log, type Cleanup } from './run-control.js';

const LOOPS = 16;
const KEYS = 10_000;
const PIPELINE = 16;
const VALUE = 'v'.repeat(32);

type Workload = 'GET' | 'SET' | `GET, pipelined ${number}` | `SET, pipelined ${number}`;
const WORKLOADS: Workload[] = ['GET', 'SET', `GET, pipelined ${PIPELINE}`, `SET, pipelined ${PIPELINE}`];

interface Result {
  commands: number;
  seconds: number;
  cpuMicros: number;
}

const key = (): string => `k:${Math.floor(Math.random() * KEYS)}`;

/** One loop iteration of `workload` on `r`: the commands it ran. */
async function step(r: Redis, workload: Workload): Promise<number> {
  const write = workload.startsWith('SET');
  if (!workload.includes('pipelined')) {
    if (write) await r.set(key(), VALUE);
    else await r.get(key());
    return 1;
  }
  const p = r.pipeline();
  for (let i = 0; i < PIPELINE; i++) {
    if (write) p.set(key(), VALUE);
    else p.get(key());
  }
  const replies = await p.exec();
  for (const [err] of replies ?? []) if (err) throw err;
  return PIPELINE;
}

async function drive(r: Redis, workload: Workload, seconds: number): Promise<Result> {
  const until = performance.now() + seconds * 1000;
  let commands = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: LOOPS }, async () => {
      while (performance.now() < until) {
        const n = await step(r, workload); // not `commands += await …`: that reads commands before the await
        commands += n;
      }
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  return { commands, seconds: (performance.now() - t0) / 1000, cpuMicros: cpu.user + cpu.system };
}

/** Runs the Redis half; returns its section of bench/results/lib-bench.md. */
export async function redisLibBench(
  repoRoot: string,
  seconds: number,
  rounds: number,
  cleanup: Cleanup,
): Promise<string[]> {
  log('starting Redis: one shard, a primary + 2 replicas');
  const cluster = await RedisCluster.start({ shards: 1, replicas: 2 });
  cleanup.add('redis cluster', () => cluster.stop());
  const loadAtStart = os.loadavg();
  const s1 = cluster.shard('s1');
  const plain = new Redis({ host: s1.primary.host, port: s1.primary.port });
  cleanup.add('plain ioredis', async () => plain.disconnect());
  for (let i = 0; i < KEYS; i += 1000) {
    const p = plain.pipeline();
    for (let k = i; k < i + 1000; k++) p.set(`k:${k}`, VALUE);
    await p.exec();
  }
  await cluster.waitForReplication();
  const proxy = await startRwsplitRedis(repoRoot, null, cluster.nodes);
  cleanup.add('proxy', () => proxy.stop());
  const viaProxy = new Redis({ host: '127.0.0.1', port: proxy.port });
  cleanup.add('ioredis via the proxy', async () => viaProxy.disconnect());
  const nodes = [s1.primary, ...s1.replicas].map((n) => ({ id: n.id, host: n.host, port: n.port }));
  const lib = createRedis({ nodes });
  const libEventual = createRedis({ nodes, consistency: 'eventual' });
  cleanup.add('rwsplit/redis', async () => {
    lib.disconnect();
    libEventual.disconnect();
  });
  await Promise.all([lib.connect(), libEventual.connect()]);
  const targets: { name: string; client: Redis }[] = [
    { name: 'ioredis on the primary', client: plain },
    { name: 'rwsplit/redis (read-your-writes)', client: lib },
    { name: 'rwsplit/redis (eventual)', client: libEventual },
    { name: 'ioredis via the rwsplit proxy', client: viaProxy },
  ];
  const totals = new Map<string, Result>();
  for (const workload of WORKLOADS) {
    for (const t of targets) await drive(t.client, workload, 0.3); // warm-up: connections, JIT
    for (let round = 1; round <= rounds; round++) {
      for (const t of targets) {
        const r = await drive(t.client, workload, seconds);
        const k = `${workload}|${t.name}`;
        const sum = totals.get(k) ?? { commands: 0, seconds: 0, cpuMicros: 0 };
        totals.set(k, {
          commands: sum.commands + r.commands,
          seconds: sum.seconds + r.seconds,
          cpuMicros: sum.cpuMicros + r.cpuMicros,
        });
        log(`${workload} round ${round} ${t.name}: ${Math.round(r.commands / r.seconds)} commands/s`);
      }
    }
  }
  const lines = [
    '# rwsplit/redis benchmark',
    '',
    `\`npm run bench:lib\`: ${LOOPS} async loops in one Node process with ioredis, one shard`,
    `(a primary and 2 replicas), ${KEYS.toLocaleString('en')} keys of ${VALUE.length} bytes, ${rounds} rounds of ${seconds} s per`,
    'contender and workload, contenders alternated. "CPU/command" is this process (load generator and',
    "ioredis included) per command; the library's own cost is its figure minus the plain client's",
    "(the proxy's own CPU is in its process and not counted).",
    '',
    `Machine: ${JSON.stringify(baseMachineInfo(loadAtStart))}`,
    '',
    '| workload | contender | commands/s | × plain ioredis | CPU µs/command |',
    '| --- | --- | ---: | ---: | ---: |',
  ];
  for (const workload of WORKLOADS) {
    const base = totals.get(`${workload}|${targets[0]!.name}`)!;
    for (const t of targets) {
      const r = totals.get(`${workload}|${t.name}`)!;
      const rate = r.commands / r.seconds;
      lines.push(
        `| ${workload} | ${t.name} | ${Math.round(rate)} | ${(rate / (base.commands / base.seconds)).toFixed(2)} | ${(r.cpuMicros / r.commands).toFixed(1)} |`,
      );
    }
  }
  return lines;
}
