/**
 * The routing engine of `rwsplit/redis`: the proxy's topology, monitor, primary authority,
 * ring and shard links, read planner (the eligible-replica rule, causal waits), write path
 * (`INFO replication` and `WAIT` behind writes) and command table, driven from a client
 * object in the process instead of a client socket. It speaks raw RESP, as the proxy does;
 * the ioredis-shaped front end (client.ts) turns replies into ioredis values.
 */
import type { Logger } from 'pino';
import { pino } from 'pino';
import { StalenessTracker } from '../../core/staleness.js';
import { Topology, type NodeStatus } from '../../core/topology.js';
import type { RedisConfig } from '../../config/schema.js';
import { AuthRefused, RedisLink, type LinkOptions } from '../../redis/backend/backend-link.js';
import { lostConnectionMessage, noPrimaryError } from '../../redis/ha/failover-errors.js';
import { RedisMonitor } from '../../redis/ha/monitor.js';
import { SentinelFollower, type SentinelShard } from '../../redis/ha/sentinel-follower.js';
import { CommandTable } from '../../redis/routing/command-table.js';
import { INFO_REPLICATION, PositionBook } from '../../redis/routing/position-book.js';
import { ReadPlanner, type ReadChoice } from '../../redis/routing/read-planner.js';
import { positionFrom, WritePath } from '../../redis/routing/write-path.js';
import { lostConnectionError, unavailableError } from '../../redis/errors.js';
import { encodeCommand } from '../../redis/resp/index.js';
import type { TickPicks } from '../../redis/routing/tick-picks.js';
import type { SessionCausal } from '../../redis/session/session-causal.js';
import { DEFAULT_PROFILE, ShardSet, type Shard } from '../../redis/sharding/shards.js';
import { shardNodes, shardRouting } from '../../redis/sharding/shard-routing.js';

/** What the router reports per command (the proxy's `RedisStats`: the same metrics). */
export interface RouterStats {
  routed(nodeId: string, read: boolean): void;
  retried(nodeId: string): void;
  lagSample(nodeId: string, lagMs: number): void;
}

/** Called with a command's raw reply (an error reply when it could not run). */
export type RawCallback = (raw: Buffer) => void;
/** Encodes a command for the link it is about to be written on (ioredis scripts load per connection). */
export type Encode = (link: RedisLink) => Buffer;

function linkFailure(err: Error): Buffer {
  return err instanceof AuthRefused ? err.reply : unavailableError(err.message);
}

export class RedisRouter {
  readonly shards: ShardSet;
  readonly topologies: Topology[];
  readonly monitor: RedisMonitor;
  readonly book: PositionBook;
  readonly ready: Promise<void>;
  readonly shardNames: string[];
  private readonly planner: ReadPlanner;
  private readonly writes: WritePath;
  private readonly sentinels: SentinelFollower | null = null;
  private table: CommandTable | null = null;
  /**
   * Per client and shard: writes dispatched but not yet written on their link (waiting for a
   * primary or for the link to open), and the reads queued behind them. A read must not
   * overtake a write of its own client: once the write is on its link, the causal state
   * routes the read (behind it on the same link, or by its position).
   */
  private readonly unsent = new WeakMap<
    SessionCausal,
    Map<number, { count: number; waiting: (() => void)[] }>
  >();
  private readonly log: Logger;
  private closed = false;

  constructor(
    readonly config: RedisConfig,
    readonly stats: RouterStats,
    logger: Logger | undefined,
  ) {
    this.log = logger ?? pino({ level: 'silent' });
    const staleness = new StalenessTracker(config.staleness);
    const monitored = shardNodes(config, this.log);
    this.topologies = monitored.map((m) => m.topology);
    this.shardNames = config.shards.map((s) => s.name);
    const routing = shardRouting(config, monitored, () => this.linkOptions());
    this.shards = routing.shards;
    this.book = routing.book;
    this.planner = routing.planner;
    this.writes = routing.writes;
    const credentials = this.credentials();
    this.monitor = new RedisMonitor(
      monitored,
      staleness,
      this.book,
      {
        intervalMs: config.monitor.intervalMs,
        timeoutMs: config.monitor.timeoutMs,
        onLag: (node, ms) => stats.lagSample(node, ms),
        ...credentials,
      },
      this.log,
    );
    const f = config.failover;
    if (f.mode === 'follow' && f.sentinels.length > 0) {
      const followed: SentinelShard[] = [];
      config.shards.forEach((s, i) => {
        if (s.sentinelName !== undefined) followed.push({ shard: monitored[i]!, masterName: s.sentinelName });
      });
      this.sentinels = new SentinelFollower(
        f.sentinels,
        followed,
        this.monitor,
        { timeoutMs: config.monitor.timeoutMs },
        this.log,
      );
    }
    // The first round tells roles apart and the command table says what reads; commands wait for both.
    this.ready = this.monitor.start().then(async () => {
      this.sentinels?.start();
      this.table = await this.learnCommands();
    });
    this.ready.catch(() => undefined);
  }

  /** The command table learned from the servers (valid once `ready` resolved). */
  get commands(): CommandTable {
    return this.table!;
  }

  shard(index: number): Shard {
    return this.shards.shards[index]!;
  }

  private credentials(): { password?: string; user?: string } {
    const b = this.config.backend;
    return {
      ...(b.password !== undefined ? { password: b.password } : {}),
      ...(b.user !== undefined ? { user: b.user } : {}),
    };
  }

  private linkOptions(): LinkOptions {
    return { connectTimeoutMs: this.config.pool.connectTimeoutMs, resp3: false, ...this.credentials() };
  }

  /** `COMMAND` from the first shard primary that answers: flags and key positions, as the proxy learns them. */
  private async learnCommands(): Promise<CommandTable> {
    let lastError: Error | null = null;
    for (const shard of this.shards.shards) {
      const node = shard.topology.primary() ?? shard.topology.nodes[0];
      if (!node) continue;
      try {
        const link = await RedisLink.connect(
          { nodeId: node.spec.id, host: node.spec.host, port: node.spec.port },
          this.linkOptions(),
        );
        const raw = await new Promise<Buffer | null>((resolve) =>
          link.send(encodeCommand(['COMMAND']), resolve),
        );
        link.destroy('done');
        if (raw === null) throw new Error('connection lost');
        return CommandTable.fromReply(raw);
      } catch (err) {
        lastError = err as Error;
      }
    }
    throw new Error(
      `rwsplit/redis: cannot learn the commands from any shard primary: ${lastError?.message ?? 'no node'}`,
    );
  }

  /**
   * Runs `use` with the shard's writable primary: at once, or once a failover gives the shard
   * one (up to `failover.bufferMs` after `since`).
   */
  private withPrimary(
    shard: number,
    since: number,
    fail: RawCallback,
    use: (node: NodeStatus) => void,
  ): void {
    const s = this.shard(shard);
    const node = s.topology.writablePrimary(s.name);
    if (node) {
      use(node);
      return;
    }
    const { bufferMs } = this.config.failover;
    const left = bufferMs - (Date.now() - since);
    if (left <= 0) {
      fail(noPrimaryError(s, bufferMs));
      return;
    }
    void s.topology.whenWritable(s.name, left).then((n) => {
      if (n) use(n);
      else fail(noPrimaryError(s, bufferMs));
    });
  }

  private withLink(
    node: NodeStatus,
    affinity: number,
    fail: (err: Error) => void,
    use: (l: RedisLink) => void,
  ): void {
    if (this.closed) {
      fail(new Error('Connection is closed.'));
      return;
    }
    const link = this.shards.link(node, affinity, DEFAULT_PROFILE);
    if (!(link instanceof Promise)) use(link);
    else link.then(use, fail);
  }

  private holdReads(causal: SessionCausal, shard: number): () => void {
    let byShard = this.unsent.get(causal);
    if (!byShard) this.unsent.set(causal, (byShard = new Map()));
    let entry = byShard.get(shard);
    if (!entry) byShard.set(shard, (entry = { count: 0, waiting: [] }));
    entry.count++;
    const e = entry;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--e.count > 0) return;
      byShard.delete(shard);
      for (const run of e.waiting) run();
    };
  }

  /**
   * A command for the shard's primary. `mayWrite`: it may change data, so it gets WAIT
   * (`waitReplicas`) and the causal position behind it (the proxy's write path).
   */
  write(
    shard: number,
    causal: SessionCausal,
    affinity: number,
    encode: Encode,
    mayWrite: boolean,
    cb: RawCallback,
    since = Date.now(),
  ): void {
    const release = this.holdReads(causal, shard);
    const fail = (raw: Buffer): void => {
      release();
      cb(raw);
    };
    this.withPrimary(shard, since, fail, (node) => {
      this.stats.routed(node.spec.id, false);
      this.withLink(
        node,
        affinity,
        (err) => fail(linkFailure(err)),
        (link) => {
          const deliver = (r: Buffer | null): void =>
            cb(
              r ?? lostConnectionError(lostConnectionMessage(this.shard(shard), node, this.config.failover)),
            );
          link.send(encode(link), mayWrite ? this.writes.track(link, shard, node, causal, deliver) : deliver);
          release();
        },
      );
    });
  }

  /**
   * MULTI, the queued commands and EXEC, written together on one link to the shard's primary
   * (nothing else can come between them); EXEC gets the write path's trailers.
   */
  transaction(
    shard: number,
    causal: SessionCausal,
    affinity: number,
    encodes: Encode[],
    cbs: RawCallback[],
    since = Date.now(),
  ): void {
    const release = this.holdReads(causal, shard);
    const failAll = (raw: Buffer): void => {
      release();
      for (const cb of cbs) cb(raw);
    };
    this.withPrimary(shard, since, failAll, (node) => {
      this.stats.routed(node.spec.id, false);
      this.withLink(
        node,
        affinity,
        (err) => failAll(linkFailure(err)),
        (link) => {
          const lost = (): Buffer =>
            lostConnectionError(lostConnectionMessage(this.shard(shard), node, this.config.failover));
          const last = encodes.length - 1;
          encodes.forEach((encode, i) => {
            const deliver = (r: Buffer | null): void => cbs[i]!(r ?? lost());
            link.send(
              encode(link),
              i === last ? this.writes.track(link, shard, node, causal, deliver) : deliver,
            );
          });
        },
      );
    });
  }

  /** A blocking command (BLPOP, XREAD BLOCK): a link of its own to the shard's primary for its duration. */
  blocking(shard: number, causal: SessionCausal, encode: Encode, mayWrite: boolean, cb: RawCallback): void {
    this.withPrimary(shard, Date.now(), cb, (node) => {
      this.stats.routed(node.spec.id, false);
      this.shards.dedicated(node, DEFAULT_PROFILE).then(
        (link) => {
          const deliver = (r: Buffer | null): void => {
            cb(
              r ?? lostConnectionError(lostConnectionMessage(this.shard(shard), node, this.config.failover)),
            );
            this.shards.releaseDedicated(node, link, DEFAULT_PROFILE);
          };
          link.send(encode(link), mayWrite ? this.writes.track(link, shard, node, causal, deliver) : deliver);
        },
        (err: Error) => cb(linkFailure(err)),
      );
    });
  }

  /**
   * A read, as a proxy session routes it: behind this client's write whose position is not
   * known yet (same link, so Redis answers it after the write), else by the read planner per
   * consistency level and causal token. A node that dies before answering is left out and the
   * read runs elsewhere.
   */
  read(
    shard: number,
    causal: SessionCausal,
    picks: TickPicks,
    affinity: number,
    encode: Encode,
    cb: RawCallback,
    failed: Set<string> | null = null,
    since = Date.now(),
  ): void {
    const unsent = this.unsent.get(causal)?.get(shard);
    if (unsent) {
      unsent.waiting.push(() => this.read(shard, causal, picks, affinity, encode, cb, failed, since));
      return;
    }
    const level = causal.level;
    const pin = level === 'read-your-writes' ? causal.pin(shard) : null;
    if (pin !== null) {
      const s = this.shard(shard);
      const node = pin === 'primary' ? s.topology.primary() : pin.node;
      if (node && node.reachable && !node.fenced && !failed?.has(node.spec.id)) {
        this.sendRead(shard, causal, picks, affinity, node, encode, cb, failed, pin === 'primary', since);
        return;
      }
    }
    const want = causal.token.forShard(shard);
    const sticky = failed ? undefined : picks.sticky(shard, level, want, this.planner);
    if (sticky !== undefined) {
      this.sendRead(shard, causal, picks, affinity, sticky, encode, cb, failed, false, since);
      return;
    }
    const choice = this.planner.plan(shard, level, want, failed ?? undefined, since);
    const route = (c: ReadChoice): void => {
      if (c.error !== undefined) {
        cb(unavailableError(c.error));
        return;
      }
      if (c.node.role === 'replica') picks.remember(shard, c.node);
      this.sendRead(shard, causal, picks, affinity, c.node, encode, cb, failed, false, since);
    };
    if (choice instanceof Promise) void choice.then(route);
    else route(choice);
  }

  private sendRead(
    shard: number,
    causal: SessionCausal,
    picks: TickPicks,
    affinity: number,
    node: NodeStatus,
    encode: Encode,
    cb: RawCallback,
    failed: Set<string> | null,
    resolvePosition: boolean,
    since: number,
  ): void {
    this.stats.routed(node.spec.id, true);
    const retry = (): void => {
      // The node died (or refused the connection) before answering: a read is safe to run elsewhere.
      const tried = failed ?? new Set<string>();
      tried.add(node.spec.id);
      this.stats.retried(node.spec.id);
      this.read(shard, causal, picks, affinity, encode, cb, tried, since);
    };
    this.withLink(
      node,
      affinity,
      (err) => (err instanceof AuthRefused || this.closed ? cb(linkFailure(err)) : retry()),
      (link) => {
        link.send(encode(link), (reply) => (reply !== null ? cb(reply) : retry()));
        if (resolvePosition) {
          link.trailer(INFO_REPLICATION, (r) => {
            const info = positionFrom(r);
            if (info) causal.resolve(shard, info);
          });
        }
      },
    );
  }

  /**
   * Positions of shards this client wrote to whose position is unknown: asked of their
   * primaries now (they cover every write there), for `causalToken()`.
   */
  async settleToken(causal: SessionCausal, affinity: number): Promise<void> {
    causal.wantToken();
    await Promise.all(
      causal.unknownShards().map(
        (shard) =>
          new Promise<void>((resolve, reject) => {
            const s = this.shard(shard);
            const node = s.topology.primary();
            if (!node) {
              reject(
                new Error(`cannot give a causal token now: the primary of shard ${s.name} is unavailable`),
              );
              return;
            }
            this.withLink(node, affinity, reject, (link) =>
              link.send(INFO_REPLICATION, (raw) => {
                const info = positionFrom(raw);
                if (info) causal.resolve(shard, info);
                if (info) resolve();
                else
                  reject(
                    new Error(`cannot give a causal token now: ${node.spec.id} did not report its position`),
                  );
              }),
            );
          }),
      ),
    );
    await new Promise<void>((resolve) => causal.whenSettled(resolve));
  }

  async end(): Promise<void> {
    this.closed = true;
    await this.ready.catch(() => undefined);
    this.sentinels?.stop();
    this.monitor.stop();
    this.book.close();
    this.shards.closeAll();
  }
}
