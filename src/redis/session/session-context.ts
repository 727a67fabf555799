/**
 * What a Redis client session needs from the proxy around it (RedisSessionContext), and what its
 * helpers (SessionFanout, Transactions) may use of the session (SessionHelperHost). Kept as
 * interfaces so the helpers and the session do not import each other, as on the PostgreSQL side.
 */
import type { NodeStatus } from '../../core/topology.js';
import type { ClientGuard } from '../../core/client-guard.js';
import type { ConsistencyLevel } from '../../config/schema.js';
import type { StreamReadGate } from '../../stream/stream-reads.js';
import type { RedisLink } from '../backend/backend-link.js';
import type { FailoverSettings } from '../ha/failover-errors.js';
import type { CommandTable } from '../routing/command-table.js';
import type { ReadPlanner } from '../routing/read-planner.js';
import type { WritePath } from '../routing/write-path.js';
import type { LinkProfile, ReadFrom, ShardSet } from '../sharding/shards.js';
import type { ClientHandle } from './client-command.js';
import type { OutputLimits } from './client-output-limit.js';
import type { LocalContext } from './local-commands.js';
import type { ReplySlots, Slot } from './reply-slots.js';
import type { SessionCausal } from './session-causal.js';

export interface RedisSessionContext {
  readonly commands: CommandTable;
  readonly shards: ShardSet;
  readonly readFrom: ReadFrom;
  readonly planner: ReadPlanner;
  readonly writes: WritePath;
  /** every connection starts at this level (`redis.consistency`) */
  readonly consistency: ConsistencyLevel;
  /** `redis.failover`: how long writes wait for a new primary, and what the errors say */
  readonly failover: FailoverSettings;
  /** proxy auth mode: whether these credentials are rwsplit's (`redis.auth`) */
  checkPassword(user: string | null, password: string): boolean;
  readonly authRequired: boolean;
  /** `redis.auth.mode: passthrough`: clients' credentials are checked by the servers */
  readonly passthrough: boolean;
  readonly defaultPasswordSet: boolean;
  readonly serverVersion: string;
  /** the servers' `databases` */
  readonly databases: number;
  /** every client of the proxy (CLIENT LIST, CLIENT KILL) */
  clients(): Iterable<ClientHandle>;
  stats: { routed(nodeId: string, read: boolean): void; retried(nodeId: string): void };
  sessionClosed(id: number): void;
  /** `redis.limits.clientOutputBufferLimit` */
  readonly outputLimits: OutputLimits;
  /** records clients cut off (metrics, event log) */
  readonly guard: ClientGuard;
  /** the change streams' read gate (read rate, read-your-writes from PostgreSQL), when any */
  streamReads(): StreamReadGate | null;
}

/**
 * What SessionFanout and Transactions use of their session (RedisSession implements it); the
 * commands rwsplit answers itself inside MULTI need the LocalContext too.
 */
export interface SessionHelperHost extends LocalContext {
  readonly ctx: RedisSessionContext;
  /** the client's replies, in the order of its commands */
  readonly slots: ReplySlots;
  /** the session's consistency level and causal token */
  causal: SessionCausal;
  /** the database SELECTed */
  readonly db: number;
  /** shards this client wrote to (WAIT counts their replicas) */
  readonly writtenShards: Set<number>;
  readonly databases: number;
  readonly shardCount: number;
  readonly passthrough: boolean;
  /** the kind of backend link this client's commands need (database, RESP version, user) */
  readonly profile: LinkProfile;
  readonly isClosed: boolean;
  /** holds the client's later commands until `work` settles */
  hold(work: Promise<void>): void;
  withPrimary(shard: number, fail: (error: Buffer) => void, use: (node: NodeStatus) => void): void;
  withLink(node: NodeStatus, slot: Slot, use: (link: RedisLink) => void): void;
  write(shard: number, raw: Buffer, slot: Slot, mayWrite: boolean): void;
  read(shard: number, raw: Buffer, slot: Slot, failed: Set<string> | null): void;
  /** what a client is told when its connection to `node` is lost */
  lostMessage(shard: number, node: NodeStatus): string;
}
