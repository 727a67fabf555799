/**
 * The faults a chaos run injects, one per scenario. Each `inject` resolves once the fault is
 * in place and, for a timed fault (a frozen process, paused replay), once it has been lifted
 * again; the load keeps running throughout.
 */
import { setTimeout as delay } from 'node:timers/promises';

import { queryRows } from '../src/cluster/sql.js';
import type { ChaosStack, PgChaosStack, RedisChaosStack } from './stacks.js';

/** How long each phase of a run lasts. */
export interface ScenarioTiming {
  /** load before the fault */
  warmupMs: number;
  /** load after the fault (after it was lifted, for timed faults) */
  afterMs: number;
  /** how long a SIGSTOPped process stays frozen */
  freezeMs: number;
  /** how long a replica's WAL replay stays paused */
  lagMs: number;
}

export interface Scenario {
  name: string;
  engine: 'postgres' | 'redis';
  /** one line for the report */
  description: string;
  /** a replica is expected to be promoted */
  failover: boolean;
  /** Injects the fault; resolves with the node it hit. */
  inject(stack: ChaosStack, timing: ScenarioTiming): Promise<string>;
}

function pgStack(stack: ChaosStack): PgChaosStack {
  if (stack.engine !== 'postgres') throw new Error('a PostgreSQL scenario needs a PostgreSQL stack');
  return stack;
}

function redisStack(stack: ChaosStack): RedisChaosStack {
  if (stack.engine !== 'redis') throw new Error('a Redis scenario needs a Redis stack');
  return stack;
}

function pgReplica(stack: PgChaosStack): string {
  const replica = stack.cluster.replicas[0];
  if (replica === undefined) throw new Error('the scenario needs a replica');
  return replica.id;
}

function redisNodes(stack: RedisChaosStack): { primary: string; replica: string } {
  const shard = stack.redis.shard('s1');
  const replica = shard.replicas[0];
  if (replica === undefined) throw new Error('the scenario needs a replica');
  return { primary: shard.primary.id, replica: replica.id };
}

/** Freezes a process for `ms` (SIGSTOP … SIGCONT); thawed even when the wait is interrupted. */
async function freeze(signal: (sig: NodeJS.Signals) => void, ms: number): Promise<void> {
  signal('SIGSTOP');
  try {
    await delay(ms);
  } finally {
    signal('SIGCONT');
  }
}

export const SCENARIOS: readonly Scenario[] = [
  {
    name: 'pg-kill-primary',
    engine: 'postgres',
    description: 'kill -9 of the PostgreSQL primary (postmaster and backends)',
    failover: true,
    inject: async (s) => {
      const { cluster } = pgStack(s);
      await cluster.kill(cluster.primary.id);
      return cluster.primary.id;
    },
  },
  {
    name: 'pg-kill-replica',
    engine: 'postgres',
    description: 'kill -9 of one PostgreSQL replica',
    failover: false,
    inject: async (s) => {
      const stack = pgStack(s);
      const id = pgReplica(stack);
      await stack.cluster.kill(id);
      return id;
    },
  },
  {
    name: 'pg-sigstop-primary',
    engine: 'postgres',
    description: 'SIGSTOP of the PostgreSQL primary and all its processes, SIGCONT after the freeze',
    failover: true,
    inject: async (s, t) => {
      const { cluster } = pgStack(s);
      const id = cluster.primary.id;
      await freeze((sig) => cluster.signalTree(id, sig), t.freezeMs);
      return id;
    },
  },
  {
    name: 'pg-lagging-replica',
    engine: 'postgres',
    description: 'WAL replay paused on one replica (pg_wal_replay_pause), resumed after a while',
    failover: false,
    inject: async (s, t) => {
      const stack = pgStack(s);
      const id = pgReplica(stack);
      const node = stack.cluster.nodes.find((n) => n.id === id)!;
      const target = { host: '127.0.0.1', port: node.port, password: undefined };
      await queryRows(target, 'SELECT pg_wal_replay_pause()');
      try {
        await delay(t.lagMs);
      } finally {
        await queryRows(target, 'SELECT pg_wal_replay_resume()');
      }
      return id;
    },
  },
  {
    name: 'pg-proxy-restart',
    engine: 'postgres',
    description:
      'graceful restart of rwsplit (`rwsplit restart`): the new process takes the listening sockets over, the old one drains and exits',
    failover: false,
    inject: async (s) => {
      await pgStack(s).proxy.gracefulRestart();
      return 'rwsplit';
    },
  },
  {
    name: 'pg-proxy-kill',
    engine: 'postgres',
    description: 'kill -9 of the rwsplit process, started again at once on the same ports',
    failover: false,
    inject: async (s) => {
      await pgStack(s).proxy.killAndRestart();
      return 'rwsplit';
    },
  },
  {
    name: 'redis-proxy-restart',
    engine: 'redis',
    description:
      'graceful restart of rwsplit (`rwsplit restart`): the new process takes the listening sockets over, the old one drains and exits',
    failover: false,
    inject: async (s) => {
      await redisStack(s).proxy.gracefulRestart();
      return 'rwsplit';
    },
  },
  {
    name: 'redis-kill-primary',
    engine: 'redis',
    description: 'kill -9 of the Redis shard primary',
    failover: true,
    inject: async (s) => {
      const stack = redisStack(s);
      const { primary } = redisNodes(stack);
      await stack.redis.kill(primary);
      return primary;
    },
  },
  {
    name: 'redis-kill-replica',
    engine: 'redis',
    description: 'kill -9 of one Redis replica',
    failover: false,
    inject: async (s) => {
      const stack = redisStack(s);
      const { replica } = redisNodes(stack);
      await stack.redis.kill(replica);
      return replica;
    },
  },
  {
    name: 'redis-sigstop-replica',
    engine: 'redis',
    description: 'SIGSTOP of one Redis replica, SIGCONT after the freeze',
    failover: false,
    inject: async (s, t) => {
      const stack = redisStack(s);
      const { replica } = redisNodes(stack);
      await freeze((sig) => stack.redis.signal(replica, sig), t.freezeMs);
      return replica;
    },
  },
];

/** The scenarios named, in the suite's order. @throws Error naming an unknown scenario. */
export function selectScenarios(names: readonly string[] | undefined): Scenario[] {
  if (names === undefined || names.length === 0) return [...SCENARIOS];
  for (const n of names)
    if (!SCENARIOS.some((s) => s.name === n))
      throw new Error(`unknown scenario '${n}'; scenarios: ${SCENARIOS.map((s) => s.name).join(', ')}`);
  return SCENARIOS.filter((s) => names.includes(s.name));
}
