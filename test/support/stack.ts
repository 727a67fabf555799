/**
 * Test harness: a real PostgreSQL cluster from the launcher plus an in-process rwsplit on
 * free ports, and helpers to talk to both.
 */
import pg from 'pg';
import { pino } from 'pino';
import { Rwsplit } from '../../src/app.js';
import { PgCluster, type PgClusterOptions } from '../../src/cluster/pg-cluster.js';
import { validateConfig } from '../../src/config/load.js';

export interface Stack {
  cluster: PgCluster;
  app: Rwsplit;
  pgPort: number;
  httpPort: number;
  /** node id by server port, to name where a query ran */
  nodeByPort: Map<number, string>;
  client(opts?: Partial<pg.ClientConfig>): Promise<pg.Client>;
  direct(nodeId: string): Promise<pg.Client>;
  stop(): Promise<void>;
}

export interface StackOptions {
  cluster?: PgClusterOptions;
  /** merged into the `postgres` section of the config */
  postgres?: Record<string, unknown>;
  /** balancer weight per node, primary first (default 1 each) */
  weights?: number[];
  /** `workers` (data-plane processes); default RWSPLIT_TEST_WORKERS, else 1 */
  workers?: number;
}

/**
 * The `workers` key of a test instance: the test's own, else RWSPLIT_TEST_WORKERS
 * (scripts/run-tests.js runs the files that touch routing, failover, causal reads and 2PC
 * with 2 as well), else 1 (one process; said explicitly, the product's default being `auto`).
 */
export function testWorkers(workers?: number): { workers: number } {
  return { workers: workers ?? Number(process.env.RWSPLIT_TEST_WORKERS ?? 1) };
}

export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const cluster = await PgCluster.start({ replicas: 2, ...opts.cluster });
  let app: Rwsplit;
  try {
    const config = validateConfig({
      listen: { postgres: { host: '127.0.0.1', port: 0 }, http: { host: '127.0.0.1', port: 0 } },
      postgres: {
        nodes: cluster.nodes.map((n, i) => ({
          id: n.id,
          host: n.host,
          port: n.port,
          weight: opts.weights?.[i] ?? 1,
        })),
        monitor: { intervalMs: 200, timeoutMs: 1000 },
        ...opts.postgres,
      },
      ...testWorkers(opts.workers),
    });
    app = await Rwsplit.start(config, { log: pino({ level: process.env.RWSPLIT_TEST_LOG ?? 'silent' }) });
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  const pgPort = app.pgAddress!.port;
  const clients: pg.Client[] = [];
  const connect = async (cfg: pg.ClientConfig): Promise<pg.Client> => {
    const c = new pg.Client(cfg);
    c.on('error', () => undefined);
    await c.connect();
    clients.push(c);
    return c;
  };
  return {
    cluster,
    app,
    pgPort,
    httpPort: app.httpAddress!.port,
    nodeByPort: new Map(cluster.nodes.map((n) => [n.port, n.id])),
    client: (o = {}) =>
      connect({ host: '127.0.0.1', port: pgPort, user: 'postgres', database: 'postgres', ...o }),
    direct: (nodeId) => {
      const n = cluster.nodes.find((x) => x.id === nodeId)!;
      return connect({ host: '127.0.0.1', port: n.port, user: 'postgres', database: 'postgres' });
    },
    stop: async () => {
      await Promise.allSettled(clients.map((c) => c.end()));
      await app.stop();
      await cluster.stop();
    },
  };
}

/** Runs `sql` and returns the node id of the server that answered (via inet_server_port()). */
export async function whereRuns(
  stack: Stack,
  client: pg.Client,
  sql = 'SELECT inet_server_port() AS port',
): Promise<string> {
  const res = await client.query<{ port: number }>(sql);
  const port = Number(res.rows[0]!.port);
  return stack.nodeByPort.get(port) ?? `unknown port ${port}`;
}

/** `GET /api/nodes` of a running instance: each node's id and state (and the rest). */
export async function nodeStates(
  httpPort: number,
): Promise<{ id: string; state: string; lagBytes: number | null }[]> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/api/nodes`);
  return (await res.json()) as { id: string; state: string; lagBytes: number | null }[];
}

/** Polls `check` until it returns true or the time runs out (then throws with `what`). */
export async function waitFor(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
