/**
 * What follows a write on its link before (and after) the client is answered:
 * - `WAIT numReplicas timeoutMs` when `redis.waitReplicas` is set (zero-loss mode): the
 *   client gets the write's reply only once that many replicas acknowledged it, else an
 *   error saying it was not confirmed (it may still exist on the primary);
 * - `INFO replication` when the session keeps a causal token: the primary's history id and
 *   offset right after the write (see causal-token.ts).
 *
 * Both are link trailers (backend-link.ts): one of each per link per event-loop turn, after
 * every command of the turn, in the same system call. Redis answers a connection in order,
 * so one `WAIT` covers every write before it on the link (it waits for the connection's
 * last write offset) and one `INFO replication` gives a position at or past each of them.
 * `INFO replication` rather than `ROLE`: ROLE gives the offset but not the history id, and
 * a position is only comparable within its history; both are one round trip that rides in
 * the same segment as the writes, and the write's own reply is not delayed by it (only a
 * read of the same shard arriving before the position does follow the write, see
 * session-causal.ts).
 */
import type { NodeStatus } from '../../core/topology.js';
import type { DecodedListener, ReplyCallback, RedisLink } from '../backend/backend-link.js';
import { INFO_REPLICATION } from './position-book.js';
import { replicationInfoFromReply, type ReplicationInfo } from '../ha/replication-info.js';
import { encodeCommand, parseReply } from '../resp/index.js';
import type { SessionCausal } from '../session/session-causal.js';
import { notReplicatedError } from '../errors.js';

export interface WaitReplicas {
  numReplicas: number;
  timeoutMs: number;
}

/** Whether a raw reply is an error (`-` or RESP3 `!`). */
export function isErrorReply(raw: Buffer): boolean {
  return raw[0] === 0x2d || raw[0] === 0x21;
}

/** The position in an `INFO replication` reply, or null when there is none to read. */
export function positionFrom(raw: Buffer | null): ReplicationInfo | null {
  if (raw === null) return null;
  try {
    return replicationInfoFromReply(raw);
  } catch {
    return null;
  }
}

export class WritePath {
  private readonly waitCommand: Buffer | null;

  constructor(private readonly wait: WaitReplicas | undefined) {
    this.waitCommand = wait
      ? encodeCommand(['WAIT', String(wait.numReplicas), String(wait.timeoutMs)])
      : null;
  }

  /**
   * Registers the position trailer for one write of the hot path about to be sent on `link`
   * (its reply goes to the write itself, see TrackedWrite). Not when {@link WritePath.waits}.
   */
  trackHot(
    link: RedisLink,
    shard: number,
    node: NodeStatus,
    causal: SessionCausal,
    write: TrackedWrite,
  ): void {
    causal.beginWrite(shard, node);
    if (causal.tracking) {
      write.refs++;
      link.trailerTo(INFO_REPLICATION, positionFrom, write);
    }
  }

  /** Whether writes wait for replicas (`redis.waitReplicas`): they take {@link WritePath.track}. */
  get waits(): boolean {
    return this.waitCommand !== null;
  }

  /**
   * Registers the trailers for one write about to be sent on `link` and returns the callback
   * for the write's reply. `deliver` gets what the client must see (null: the link died
   * before the reply).
   */
  track(
    link: RedisLink,
    shard: number,
    node: NodeStatus,
    causal: SessionCausal,
    deliver: (reply: Buffer | null) => void,
  ): ReplyCallback {
    let reply: Buffer | null | undefined;
    let delivered = false;
    const finish = (bytes: Buffer | null): void => {
      if (delivered) return;
      delivered = true;
      deliver(bytes);
    };
    const wait = this.wait;
    if (wait && this.waitCommand) {
      link.trailer(this.waitCommand, (w) => {
        if (reply === undefined || reply === null) return;
        if (w === null) finish(notReplicatedError(node.spec.id, wait, 'the connection was lost during WAIT'));
        else {
          const n = parseReply(w);
          const acked = typeof n === 'number' ? n : 0;
          finish(acked >= wait.numReplicas ? reply : notReplicatedError(node.spec.id, wait, `${acked} did`));
        }
      });
    }
    causal.beginWrite(shard, node);
    if (causal.tracking) {
      link.trailerDecoded(INFO_REPLICATION, positionFrom, (info) =>
        causal.endWrite(shard, info, reply != null),
      );
    }
    return (raw) => {
      reply = raw;
      if (raw === null || !this.waitCommand || isErrorReply(raw)) finish(raw);
    };
  }
}

/**
 * A write of the hot path (client-session.ts): its reply goes to the slot itself; its
 * position, when the session keeps one, to `position` (the slot again), without a closure.
 */
export interface TrackedWrite extends DecodedListener {
  refs: number;
}
