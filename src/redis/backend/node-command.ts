/**
 * One administrative command to one Redis server (or Sentinel) on a connection of its own:
 * `REPLICAOF`, `INFO replication`, `SENTINEL MASTER`. Used by the failover controller and
 * the Sentinel follower, never on the client data path.
 */
import { LinkError, RedisLink, type LinkOptions, type LinkTarget } from './backend-link.js';
import { encodeCommand, parseReply, RespErrorValue, type RespValue } from '../resp/index.js';

/** A command a node refused or did not answer in time. */
export class NodeCommandError extends Error {
  readonly code = 'REDIS_NODE_COMMAND';
}

/**
 * Sends `args` and resolves with the decoded reply.
 * @throws NodeCommandError on an error reply, a lost connection or no answer within `timeoutMs`
 */
export async function nodeCommand(
  target: LinkTarget,
  args: readonly string[],
  opts: { link: Omit<LinkOptions, 'resp3' | 'connectTimeoutMs'>; timeoutMs: number },
): Promise<RespValue> {
  let link: RedisLink | null = null;
  let finished = false;
  let timer: NodeJS.Timeout | undefined;
  const what = `${args.slice(0, 2).join(' ')} on ${target.nodeId}`;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new NodeCommandError(`${what}: no answer within ${opts.timeoutMs} ms`)),
      opts.timeoutMs,
    );
  });
  timeout.catch(() => undefined);
  try {
    const connecting = RedisLink.connect(target, {
      ...opts.link,
      resp3: false,
      connectTimeoutMs: opts.timeoutMs,
    });
    // A connection that completes after the timeout must not linger.
    connecting.then(
      (l) => (finished ? l.destroy('gave up') : undefined),
      () => undefined,
    );
    link = await Promise.race([connecting, timeout]);
    const l = link;
    const raw = await Promise.race([
      new Promise<Buffer | null>((resolve) => l.send(encodeCommand(args), resolve)),
      timeout,
    ]);
    if (raw === null) throw new NodeCommandError(`${what}: connection lost`);
    const value = parseReply(raw);
    if (value instanceof RespErrorValue) throw new NodeCommandError(`${what}: ${value.message}`);
    return value;
  } catch (err) {
    if (err instanceof LinkError) throw new NodeCommandError(`${what}: ${err.message}`);
    throw err;
  } finally {
    finished = true;
    clearTimeout(timer);
    (link as RedisLink | null)?.destroy('done');
  }
}
