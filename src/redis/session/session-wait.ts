/**
 * `WAIT numreplicas timeout` (and `WAITAOF`, where the servers have it) through rwsplit.
 *
 * Redis counts the replicas that acknowledged the calling connection's last write (its
 * `woff`). Through rwsplit a client's writes run on shared server connections, whose last
 * write may be another client's, and a WAIT there would block every client sharing the
 * connection for up to its timeout. So WAIT runs on a server connection of the client's own,
 * on the primary of each shard the client wrote to (shard 0 when it wrote nothing), in three
 * steps:
 * 1. a barrier: `HELLO` on the client's shared connection to that primary; its reply comes
 *    after the client's earlier commands there, so its writes have run;
 * 2. on a new connection: `PUBLISH __rwsplit__:wait ""`, a write Redis propagates to its
 *    replicas (outside cluster mode), so this connection's `woff` is at or past the client's
 *    last write (past other clients' writes before it too, as on a shared connection);
 * 3. the client's WAIT, unchanged, on that connection: Redis itself asks its replicas for
 *    acknowledgements (REPLCONF GETACK), counts them and times out.
 * A shard the client wrote nothing to gets no PUBLISH: the connection's `woff` is 0, and Redis
 * counts every connected replica, as it does for a direct connection that wrote nothing.
 * With several shards the answer is the smallest count (Redis's own `agg_min` policy for
 * WAIT in a cluster); the first error wins over counts.
 *
 * The connection is the client's own while WAIT blocks: `CLIENT UNBLOCK` reaches it, and it
 * is closed when the client leaves or when WAIT has answered.
 */
import type { NodeStatus } from '../../core/topology.js';
import { HELLO, type RedisLink } from '../backend/backend-link.js';
import { lostConnectionError, notSupportedError } from '../errors.js';
import { encodeArrayHeader, encodeCommand, encodeInteger, parseReply } from '../resp/index.js';

/** The channel of the propagated no-op; nothing in rwsplit subscribes to it. */
export const WAIT_CHANNEL = '__rwsplit__:wait';
const PUBLISH = encodeCommand(['PUBLISH', WAIT_CHANNEL, '']);

/** What WAIT needs from the session it runs for. */
export interface WaitHost {
  /** shards this client sent a write to */
  readonly writtenShards: ReadonlySet<number>;
  withPrimary(shard: number, fail: (error: Buffer) => void, use: (node: NodeStatus) => void): void;
  /** the client's shared connection to `node` (the one its commands to that node took) */
  sharedLink(node: NodeStatus, fail: (error: Buffer) => void, use: (link: RedisLink) => void): void;
  /** a new connection of the client's own to `node`, closed when the client leaves */
  ownLink(node: NodeStatus, fail: (error: Buffer) => void, use: (link: RedisLink) => void): void;
  /** sends a command that may block on a connection of the client's own (CLIENT UNBLOCK finds it) */
  sendBlocking(link: RedisLink, raw: Buffer, cb: (reply: Buffer | null) => void): void;
  lostMessage(shard: number, node: NodeStatus): string;
}

/** Runs the client's `WAIT`/`WAITAOF` (`raw`, as it sent it); `answer` gets the one reply. */
export function runWait(host: WaitHost, raw: Buffer, answer: (reply: Buffer) => void): void {
  const written = [...host.writtenShards].sort((a, b) => a - b);
  const shards = written.length > 0 ? written : [0];
  const replies: Buffer[] = [];
  let left = shards.length;
  const done = (reply: Buffer): void => {
    replies.push(reply);
    if (--left > 0) return;
    answer(smallest(replies));
  };
  for (const shard of shards) {
    const wrote = host.writtenShards.has(shard);
    let finished = false;
    const once = (reply: Buffer): void => {
      if (finished) return;
      finished = true;
      done(reply);
    };
    host.withPrimary(shard, once, (node) => {
      const onOwn = (): void =>
        host.ownLink(node, once, (link) => {
          if (wrote) {
            link.send(PUBLISH, (r) => {
              if (r !== null && (r[0] === 0x2d || r[0] === 0x21))
                once(
                  notSupportedError(
                    `WAIT through rwsplit publishes on ${WAIT_CHANNEL} first (its write marks this client's last write): ${r.toString().slice(1).trim()}`,
                  ),
                );
            });
          }
          host.sendBlocking(link, raw, (r) => {
            link.destroy('wait answered');
            once(r ?? lostConnectionError(host.lostMessage(shard, node)));
          });
        });
      if (!wrote) {
        onOwn();
        return;
      }
      host.sharedLink(node, once, (shared) => shared.send(HELLO, () => onOwn()));
    });
  }
}

/**
 * The smallest count of the shards' replies (WAITAOF: of each of its two counts); an error if
 * any shard answered one.
 */
function smallest(replies: Buffer[]): Buffer {
  if (replies.length === 1) return replies[0]!;
  let min: number[] | null = null;
  for (const r of replies) {
    const v = parseReply(r);
    const counts = typeof v === 'number' ? [v] : Array.isArray(v) ? v : null;
    if (counts === null || !counts.every((c): c is number => typeof c === 'number')) return r;
    min = min === null ? counts : min.map((m, i) => Math.min(m, counts[i] ?? m));
  }
  if (min === null || min.length === 1) return encodeInteger(min?.[0] ?? 0);
  return Buffer.concat([encodeArrayHeader(min.length), ...min.map((m) => encodeInteger(m))]);
}
