/**
 * Where a stream writes: every Redis shard's current primary, each over the stream's own
 * connection (MULTI/EXEC must not share a link with other clients' commands). Keys go to
 * shards by the proxy's own ring, so clients reading through rwsplit find them.
 */
import { RedisLink, type LinkOptions } from '../redis/backend/backend-link.js';
import { encodeCommand, parseReply, RespErrorValue, replyText, type RespValue } from '../redis/resp/index.js';

export class RedisTargetError extends Error {
  readonly code = 'STREAM_REDIS';
}

/** What the stream needs to know about the Redis side (the running RedisService provides it). */
export interface RedisShardsView {
  /** shard names, in ring order */
  names: string[];
  /** the shard a key lives on */
  shardOf(key: string): number;
  /** the shard's primary as the monitor sees it now, or undefined during a failover */
  primary(shard: number): { nodeId: string; host: string; port: number } | undefined;
  /** the shard's primary plus its reachable replicas (1: no replica to wait for) */
  nodeCount(shard: number): number;
  linkOptions: LinkOptions;
}

/** One shard's connection. */
export class ShardWriter {
  private constructor(
    readonly shard: number,
    private readonly link: RedisLink,
  ) {}

  static async open(view: RedisShardsView, shard: number): Promise<ShardWriter> {
    const node = view.primary(shard);
    if (!node) throw new RedisTargetError(`redis shard ${view.names[shard]!} has no primary right now`);
    const link = await RedisLink.connect(node, view.linkOptions);
    return new ShardWriter(shard, link);
  }

  get nodeId(): string {
    return this.link.target.nodeId;
  }

  get closed(): boolean {
    return this.link.closed;
  }

  set onClose(cb: (reason: string) => void) {
    this.link.onClose = (_l, reason) => cb(reason);
  }

  /** One command; rejects on an error reply or a lost connection. */
  call(args: string[]): Promise<RespValue> {
    return new Promise((resolve, reject) => {
      this.link.send(encodeCommand(args), (raw) => {
        if (raw === null) return reject(new RedisTargetError(`${this.nodeId}: connection lost`));
        const v = parseReply(raw);
        if (v instanceof RespErrorValue) reject(new RedisTargetError(`${this.nodeId}: ${v.message}`));
        else resolve(v);
      });
    });
  }

  /**
   * `commands` inside MULTI/EXEC: all or nothing. Written at once (pipelined behind earlier
   * transactions on this link); rejects when the connection is lost or any command failed.
   */
  exec(commands: string[][]): Promise<void> {
    const parts = [encodeCommand(['MULTI'])];
    for (const c of commands) parts.push(encodeCommand(c));
    parts.push(encodeCommand(['EXEC']));
    // The first refusal while queuing (-OOM, -READONLY, -NOREPLICAS, …): EXEC then only says
    // EXECABORT, so this is what the error names.
    let refused: string | null = null;
    const queued = (raw: Buffer | null): void => {
      if (raw === null || refused !== null) return;
      const v = parseReply(raw);
      if (v instanceof RespErrorValue) refused = v.message;
    };
    return new Promise((resolve, reject) => {
      const cbs = parts.map((_, i) =>
        i < parts.length - 1
          ? queued // +OK / +QUEUED, or an error the EXEC reply reports as EXECABORT
          : (raw: Buffer | null): void => {
              if (raw === null) return reject(new RedisTargetError(`${this.nodeId}: connection lost`));
              const v = parseReply(raw);
              if (v instanceof RespErrorValue)
                return reject(
                  new RedisTargetError(
                    refused === null
                      ? `${this.nodeId}: ${v.message}`
                      : `${this.nodeId} refused the write: ${refused} (the transaction was discarded)`,
                  ),
                );
              if (!Array.isArray(v))
                return reject(new RedisTargetError(`${this.nodeId}: transaction aborted`));
              const failed = v.find((x) => x instanceof RespErrorValue);
              if (failed) return reject(new RedisTargetError(`${this.nodeId}: ${failed.message}`));
              resolve();
            },
      );
      this.link.sendMany(Buffer.concat(parts), cbs);
    });
  }

  /**
   * Whether at least one replica has received every write this connection made so far
   * (`WAIT 1 timeoutMs`); false when none did in time or the connection failed.
   */
  async replicated(timeoutMs: number): Promise<boolean> {
    try {
      return Number(await this.call(['WAIT', '1', String(timeoutMs)])) >= 1;
    } catch {
      return false;
    }
  }

  /** The fields of a hash (HGETALL), as text. */
  async hgetall(key: string): Promise<Record<string, string>> {
    const v = await this.call(['HGETALL', key]);
    const out: Record<string, string> = {};
    if (Array.isArray(v))
      for (let i = 0; i + 1 < v.length; i += 2) out[replyText(v[i])!] = replyText(v[i + 1]) ?? '';
    return out;
  }

  /** Every key matching `pattern` (SCAN, so the server never blocks on a big keyspace). */
  async scan(pattern: string): Promise<string[]> {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const v = await this.call(['SCAN', cursor, 'MATCH', pattern, 'COUNT', '1000']);
      if (!Array.isArray(v) || !Array.isArray(v[1]))
        throw new RedisTargetError(`${this.nodeId}: odd SCAN reply`);
      cursor = replyText(v[0]) ?? '0';
      for (const k of v[1]) keys.push(replyText(k)!);
    } while (cursor !== '0');
    return keys;
  }

  close(): void {
    this.link.onClose = null;
    this.link.destroy('stream stopped');
  }
}
