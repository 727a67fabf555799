/**
 * What a chaos run stands on: a real cluster from the launcher (PostgreSQL primary + 2
 * replicas, or one Redis shard of a primary + 2 replicas) and rwsplit as a child process
 * (`bin/rwsplit.js start --config`) on fixed free ports, with `failover: auto` and a 200 ms
 * monitor. A child process, not in-process: the proxy then has its own event loop (the load
 * generator cannot slow it down), and it can be killed with SIGKILL and started again.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { BenchChild, removeRunDir } from '../bench/bench-child.js';
import { makeOwnRunDir, rwsplitNodesUp, spawnRwsplit } from '../bench/peers.js';
import { freePorts } from '../src/cluster/free-port.js';
import { isProcessAlive, signalQuietly } from '../src/cluster/process-tree.js';
import { PgCluster } from '../src/cluster/pg-cluster.js';
import { RedisCluster } from '../src/cluster/redis-cluster.js';
import { parseInfo, redisCommand } from '../src/cluster/redis-client.js';
import { queryRows } from '../src/cluster/sql.js';
import { waitUntil } from './wait.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const READY_TIMEOUT_MS = 30_000;

/** rwsplit's failover settings for every run (recorded in the report). */
export const FAILOVER_CONFIG = { mode: 'auto', detectMs: 1500, bufferMs: 5000 } as const;
export const MONITOR_CONFIG = { intervalMs: 200, timeoutMs: 1000 } as const;
/** the admin token of the chaos runs' rwsplit (`rwsplit restart` needs one) */
const ADMIN_TOKEN = 'chaos-admin-token';
/** rwsplit's graceful-restart settings for every run */
export const RESTART_CONFIG = { drainTimeoutMs: 10_000 } as const;

/** A node of either engine, as the scenarios and the final read-back need it. */
export interface ChaosNode {
  id: string;
  port: number;
  running: boolean;
}

/** rwsplit running as a child process that can be killed and started again on the same ports. */
export class RwsplitChild {
  private child: BenchChild;
  /** the process a graceful restart started (not our child: it outlives the one we started) */
  private successor: number | null = null;

  constructor(
    private readonly dir: string,
    private readonly config: object,
    readonly pgPort: number,
    readonly httpPort: number,
    readonly redisPort: number,
  ) {
    this.child = spawnRwsplit(REPO_ROOT, dir, config);
  }

  /** Waits until a PostgreSQL login works and the monitor sees `pgNodes` (and `redisNodes`) nodes up. */
  async ready(pgNodes: number, redisNodes: number): Promise<void> {
    await waitUntil(`rwsplit ready on port ${this.pgPort}`, READY_TIMEOUT_MS, async () => {
      if (!this.running) throw new Error(`rwsplit exited during start-up:\n${this.child.logTail()}`);
      const pg = await rwsplitNodesUp(this.httpPort, 'postgres', pgNodes).catch((e: Error) => e.message);
      if (pg !== undefined) return pg;
      if (redisNodes === 0) return undefined;
      return rwsplitNodesUp(this.httpPort, 'redis', redisNodes).catch((e: Error) => e.message);
    });
  }

  /** kill -9, then the same command again (as a supervisor restarting it would), ready once it serves logins. */
  async killAndRestart(): Promise<void> {
    await this.stopSuccessor('SIGKILL');
    await this.child.stop('SIGKILL');
    this.child = spawnRwsplit(REPO_ROOT, this.dir, this.config);
    await waitUntil('rwsplit back after kill -9', READY_TIMEOUT_MS, async () => {
      if (!this.child.running) throw new Error(`rwsplit exited during restart:\n${this.child.logTail()}`);
      return rwsplitNodesUp(this.httpPort, 'postgres', 1).catch((e: Error) => e.message);
    });
  }

  /**
   * Graceful restart with `rwsplit restart` (POST /api/restart): resolves once the new process
   * serves and the old one has drained its clients and exited.
   */
  async gracefulRestart(): Promise<void> {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [path.join(REPO_ROOT, 'bin', 'rwsplit.js'), 'restart', '--http', `http://127.0.0.1:${this.httpPort}`],
      { env: { ...process.env, RWSPLIT_ADMIN_TOKEN: ADMIN_TOKEN }, timeout: 60_000 },
    );
    const m = /pid (\d+) serves; pid (\d+) /.exec(stdout);
    if (!m) throw new Error(`rwsplit restart said: ${stdout}`);
    const [next, previous] = [Number(m[1]), Number(m[2])];
    await waitUntil('the old rwsplit process drained and exited', RESTART_CONFIG.drainTimeoutMs + 5000, () =>
      Promise.resolve(isProcessAlive(previous) ? `pid ${previous} still draining` : undefined),
    );
    this.successor = next;
  }

  /** the rwsplit process serving now (its memory is read from /proc) */
  get pid(): number {
    return this.successor ?? this.child.pid;
  }

  private get running(): boolean {
    return this.successor !== null ? isProcessAlive(this.successor) : this.child.running;
  }

  private async stopSuccessor(signal: NodeJS.Signals): Promise<void> {
    const pid = this.successor;
    if (pid === null) return;
    this.successor = null;
    signalQuietly(pid, signal);
    const deadline = Date.now() + 5000;
    while (isProcessAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (isProcessAlive(pid)) signalQuietly(pid, 'SIGKILL');
  }

  /** `GET` one admin endpoint. */
  async api<T>(endpoint: string): Promise<T> {
    const res = await fetch(`http://127.0.0.1:${this.httpPort}${endpoint}`);
    return (await res.json()) as T;
  }

  logTail(lines = 40): string {
    return this.child.logTail(lines);
  }

  async stop(): Promise<void> {
    await this.stopSuccessor('SIGTERM');
    await this.child.stop('SIGTERM');
    await removeRunDir(this.dir);
  }
}

/** A PostgreSQL cluster with rwsplit in front. */
export interface PgChaosStack {
  engine: 'postgres';
  cluster: PgCluster;
  proxy: RwsplitChild;
  nodeByPort: Map<number, string>;
  stop(): Promise<void>;
}

/** A Redis shard with rwsplit in front (and the one-node PostgreSQL cluster its config needs). */
export interface RedisChaosStack {
  engine: 'redis';
  redis: RedisCluster;
  pg: PgCluster;
  proxy: RwsplitChild;
  stop(): Promise<void>;
}

export type ChaosStack = PgChaosStack | RedisChaosStack;

async function startProxy(config: (ports: number[]) => object): Promise<RwsplitChild> {
  const ports = await freePorts(3);
  const [pgPort, httpPort, redisPort] = ports as [number, number, number];
  const dir = makeOwnRunDir('rwsplit-chaos-');
  return new RwsplitChild(dir, config(ports), pgPort, httpPort, redisPort);
}

function listen(ports: number[]): object {
  const [pg, http, redis] = ports;
  const host = '127.0.0.1';
  return { postgres: { host, port: pg }, http: { host, port: http }, redis: { host, port: redis } };
}

/** The config keys every run's rwsplit shares besides its nodes. */
const COMMON_CONFIG = { admin: { token: ADMIN_TOKEN }, restart: RESTART_CONFIG, logging: { level: 'info' } };

/** Stops the proxy then the clusters, even when one of them fails to stop. */
async function stopAll(
  proxy: RwsplitChild | undefined,
  clusters: { stop(): Promise<void> }[],
): Promise<void> {
  await proxy?.stop().catch(() => undefined);
  await Promise.allSettled(clusters.map((c) => c.stop()));
}

/** Starts a primary + 2 replicas (`replication` as given) and rwsplit with `failover: auto`. */
export async function startPgChaosStack(replication: 'sync' | 'async'): Promise<PgChaosStack> {
  const cluster = await PgCluster.start({ replicas: 2, replication });
  let proxy: RwsplitChild | undefined;
  try {
    proxy = await startProxy((ports) => ({
      workers: 1,
      listen: listen(ports),
      postgres: {
        nodes: cluster.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port })),
        monitor: MONITOR_CONFIG,
        failover: FAILOVER_CONFIG,
      },
      ...COMMON_CONFIG,
    }));
    await proxy.ready(cluster.nodes.length, 0);
  } catch (err) {
    await stopAll(proxy, [cluster]);
    throw err;
  }
  const started = proxy;
  return {
    engine: 'postgres',
    cluster,
    proxy: started,
    nodeByPort: new Map(cluster.nodes.map((n) => [n.port, n.id])),
    stop: () => stopAll(started, [cluster]),
  };
}

/**
 * Starts one Redis shard (primary + 2 replicas) and rwsplit with `failover: auto`; with
 * `waitReplicas`, each write is acknowledged only once a replica has it (zero-loss mode).
 */
export async function startRedisChaosStack(waitReplicas: boolean): Promise<RedisChaosStack> {
  const [redis, pg] = await Promise.all([
    RedisCluster.start({ shards: 1, replicas: 2 }),
    PgCluster.start({ replicas: 0 }),
  ]);
  let proxy: RwsplitChild | undefined;
  try {
    const shard = redis.shard('s1');
    proxy = await startProxy((ports) => ({
      workers: 1,
      listen: listen(ports),
      postgres: { nodes: pg.nodes.map((n) => ({ id: n.id, host: n.host, port: n.port })) },
      redis: {
        shards: [
          {
            name: 's1',
            nodes: [shard.primary, ...shard.replicas].map((n) => ({ id: n.id, host: n.host, port: n.port })),
          },
        ],
        monitor: MONITOR_CONFIG,
        failover: FAILOVER_CONFIG,
        ...(waitReplicas ? { waitReplicas: { numReplicas: 1, timeoutMs: 1000 } } : {}),
      },
      ...COMMON_CONFIG,
    }));
    await proxy.ready(1, redis.nodes.length);
  } catch (err) {
    await stopAll(proxy, [redis, pg]);
    throw err;
  }
  const started = proxy;
  return { engine: 'redis', redis, pg, proxy: started, stop: () => stopAll(started, [redis, pg]) };
}

/** The nodes of the stack's data cluster (not the helper PostgreSQL node of a Redis stack). */
export function dataNodes(stack: ChaosStack): ChaosNode[] {
  const nodes = stack.engine === 'postgres' ? stack.cluster.nodes : stack.redis.nodes;
  return nodes.map((n) => ({ id: n.id, port: n.port, running: n.pid !== undefined }));
}

/** Whether a running node says it is a primary (PostgreSQL: not in recovery; Redis: `role:master`). */
async function serverSaysPrimary(stack: ChaosStack, node: ChaosNode): Promise<boolean> {
  try {
    if (stack.engine === 'postgres') {
      const rows = await queryRows<{ r: boolean }>(
        { host: '127.0.0.1', port: node.port, password: undefined },
        'SELECT pg_is_in_recovery() AS r',
      );
      return rows[0]?.r === false;
    }
    const info = parseInfo(
      await redisCommand(
        { host: '127.0.0.1', port: node.port, password: undefined, timeoutMs: 1000 },
        'INFO',
        'replication',
      ),
    );
    return info.get('role') === 'master';
  } catch {
    return false;
  }
}

/** Where the run ended: the primary rwsplit routes writes to, and every server that says it is one. */
export interface EndState {
  /** rwsplit's routable primary, confirmed by the server itself; null when there is none */
  primary: ChaosNode | null;
  /** running nodes whose server says it is a primary (a fenced old primary included) */
  serversClaimingPrimary: string[];
  /** each node's state in rwsplit's `GET /api/nodes` */
  proxyStates: Record<string, string>;
}

/**
 * Waits (up to `timeoutMs`) until rwsplit reports a primary that the server confirms, then
 * says who else claims to be one. With no confirmed primary by then, `primary` is null.
 */
export async function endState(stack: ChaosStack, timeoutMs: number): Promise<EndState> {
  const kind = stack.engine;
  const nodes = dataNodes(stack);
  let primary: ChaosNode | null = null;
  let proxyStates: Record<string, string> = {};
  const deadline = Date.now() + timeoutMs;
  while (primary === null && Date.now() < deadline) {
    const reported = await stack.proxy
      .api<{ id: string; kind: string; role: string; state: string }[]>('/api/nodes')
      .catch(() => []);
    const mine = reported.filter((n) => n.kind === kind);
    proxyStates = Object.fromEntries(mine.map((n) => [n.id, n.state]));
    const p = mine.find((n) => n.role === 'primary' && (n.state === 'up' || n.state === 'lagging'));
    const candidate = nodes.find((n) => n.id === p?.id && n.running);
    if (candidate && (await serverSaysPrimary(stack, candidate))) primary = candidate;
    else await new Promise((r) => setTimeout(r, 200));
  }
  const claiming: string[] = [];
  for (const n of nodes) if (n.running && (await serverSaysPrimary(stack, n))) claiming.push(n.id);
  return { primary, serversClaimingPrimary: claiming, proxyStates };
}
