/**
 * Builds what sharded PostgreSQL needs from the config: the shard resolver, the 2PC
 * coordinator with its decision log on the log shard's primary, and the recovery loop that
 * finishes what a dead coordinator left prepared. Connections go to whichever node the
 * topology currently sees as each shard's primary, so both follow a failover.
 */
import { backendTlsByNode, pgClientSsl } from '../backend/backend-tls.js';
import { hostname } from 'node:os';
import pg from 'pg';
import type { Logger } from 'pino';
import type { Topology } from '../../core/topology.js';
import type { PgConfig } from '../../config/schema.js';
import type { ShardingContext } from '../session/session-context.js';
import { ShardResolver } from './shard-resolver.js';
import { PgDecisionStore, TwoPhaseCoordinator, TwoPhaseRecovery, type SqlClient } from './twopc/index.js';

export interface Sharding {
  context: ShardingContext;
  recovery: TwoPhaseRecovery;
}

/** Null when the config has no `postgres.sharding` section. */
export function setUpSharding(
  pgc: PgConfig,
  topology: Topology,
  login: { user: string; password?: string | undefined },
  log: Logger,
): Sharding | null {
  const sharding = pgc.sharding;
  if (!sharding) return null;
  const shardNames = [...new Set(pgc.nodes.map((n) => n.shard))];
  const resolver = new ShardResolver(shardNames, sharding);
  const logShard = sharding.twoPhase.logShard ?? shardNames[0]!;
  const tls = backendTlsByNode(pgc);
  const connect = async (shard: string, database?: string): Promise<SqlClient> => {
    const primary = topology.primary(shard);
    if (!primary) throw new Error(`shard ${shard} has no reachable primary`);
    const client = new pg.Client({
      host: primary.spec.host,
      port: primary.spec.port,
      user: login.user,
      password: login.password,
      database: database ?? pgc.monitor.database,
      application_name: 'rwsplit-2pc',
      connectionTimeoutMillis: pgc.pool.connectTimeoutMs,
      // prefer: these connections stay plain, like the failover controller's (docs/CONFIG.md).
      ssl:
        tls.get(primary.spec.id)?.mode === 'prefer'
          ? false
          : pgClientSsl(tls.get(primary.spec.id), primary.spec.host),
    });
    client.on('error', () => undefined); // surfaced by the next query
    await client.connect();
    return client;
  };
  const store = new PgDecisionStore({ connect: () => connect(logShard) });
  const { decisionTimeoutMs, recoveryIntervalMs } = sharding.twoPhase;
  const coordinator = new TwoPhaseCoordinator({
    store,
    instanceId: instanceId(),
    decisionTimeoutMs,
    log,
  });
  const recovery = new TwoPhaseRecovery({
    store,
    shards: () => shardNames.map((shard) => ({ shard, connect: (db?: string) => connect(shard, db) })),
    decisionTimeoutMs,
    recoveryIntervalMs,
    // A live coordinator finishes its own commits; recovery is for the ones left behind.
    settleMs: Math.min(2000, decisionTimeoutMs / 2),
    log,
  });
  return { context: { resolver, coordinator, statementTimeoutMs: decisionTimeoutMs }, recovery };
}

/** host-pid, cut to the gid's allowed characters and length: unique among live instances. */
function instanceId(): string {
  return `${hostname()}-${process.pid}`.replace(/[^A-Za-z0-9._-]/g, '_').slice(-64);
}
