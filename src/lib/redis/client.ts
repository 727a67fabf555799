/**
 * `createRedis(options)`: an ioredis client (it is one: `instanceof Redis`, every command
 * method, `pipeline()`, `multi()`, `defineCommand`, scan streams) whose commands are routed
 * in the process by the proxy's modules instead of going down one connection: each command
 * is classified by the servers' own `COMMAND` table and its keys placed on the ring; reads go
 * to a replica of the key's shard that the read planner allows (staleness, this client's
 * causal token), writes to the shard's primary with the proxy's write path behind them.
 * ioredis builds the commands (argument and reply transformers, key prefix, scripts);
 * rwsplit sends them and hands each its reply.
 */
import { Redis, type Command } from 'ioredis';
import type { Registry } from 'prom-client';
import type { Metrics } from '../../admin/metrics.js';
import { nodeState } from '../../core/topology.js';
import type { NodeState } from '../../core/types.js';
import type { RedisLink } from '../../redis/backend/backend-link.js';
import { CausalTokenError, parseCausalToken } from '../../redis/routing/causal-token.js';
import { CommandTable, type CommandInfo } from '../../redis/routing/command-table.js';
import { READ_ONLY_SCRIPTS, refusedByReplica } from '../../redis/routing/read-only-scripts.js';
import { TickPicks } from '../../redis/routing/tick-picks.js';
import { encodeCommand } from '../../redis/resp/index.js';
import { SPLIT } from '../../redis/session/session-fanout.js';
import { SessionCausal } from '../../redis/session/session-causal.js';
import { crossShardError } from '../../redis/errors.js';
import { rwsplitCommand } from '../../redis/session/rwsplit-command.js';
import { libraryMetrics } from '../metrics.js';
import { resolveRedisOptions, type RedisOptions, type ResolvedRedisOptions } from './options.js';
import { LibPubSub } from './pubsub.js';
import { decode, type IoredisValue } from './replies.js';
import { RedisRouter, type Encode } from './router.js';

/** A node as the client sees it now. */
export interface RedisNodeStatus {
  id: string;
  shard: string;
  host: string;
  port: number;
  role: 'primary' | 'replica';
  state: NodeState;
  lagBytes: number | null;
}

/** What a client and its duplicates share: the router, the links, the metrics. */
interface Shared {
  router: RedisRouter;
  metrics: Metrics;
  options: ResolvedRedisOptions;
  clients: Set<RwsplitRedis>;
}

/** Commands whose routing is not "the keys' shard" (as the proxy's routeSpecial). */
const BROADCAST = new Set(['keys', 'dbsize', 'flushall', 'flushdb', 'randomkey']);
const SUBSCRIBE = new Set(['subscribe', 'psubscribe', 'unsubscribe', 'punsubscribe']);
const NOT_HERE: Record<string, string> = {
  multi: 'use redis.multi()….exec() (a pipeline): MULTI is sent with its commands and EXEC in one go',
  exec: 'use redis.multi()….exec()',
  discard: 'use redis.multi()….exec()',
  watch:
    'WATCH needs a connection of its own, which a routed client does not have; use a plain ioredis client on the primary for optimistic locking',
  unwatch: 'WATCH is not supported (see WATCH)',
  select: 'the library uses database 0 on every node',
  ssubscribe: 'use SUBSCRIBE: channels are sharded by the ring already',
  sunsubscribe: 'use UNSUBSCRIBE',
  monitor: 'MONITOR one server directly',
};

let nextAffinity = 0;

/**
 * A command whose only key is its first argument and that needs nothing but its key's shard
 * (no subcommand, no key count in its arguments, not blocking): most commands an application
 * sends. OBJECT, the scripts, PUBLISH, KEYS and the others routed otherwise fail this test.
 */
function oneKey(info: CommandInfo): boolean {
  return (
    info.firstKey === 1 && info.lastKey === 1 && !info.movableKeys && !info.subcommands && !info.blocking
  );
}

function asBuffer(a: unknown): Buffer {
  return Buffer.isBuffer(a) ? a : Buffer.from(String(a));
}

function encodeFor(command: Command): Encode {
  return (link: RedisLink) => {
    // The link is the "socket" ioredis scripts remember their EVAL by.
    const w = command.toWritable(link as never) as string | Buffer;
    return typeof w === 'string' ? Buffer.from(w) : w;
  };
}

function settleWith(command: Command): (raw: Buffer) => void {
  return (raw) => {
    const r = decode(raw);
    if ('error' in r) command.reject(r.error);
    else command.resolve(r.value);
  };
}

export class RwsplitRedis extends Redis {
  /** this client's level and causal token: read-your-writes per client, as per proxy connection */
  private readonly causal: SessionCausal;
  private readonly shared: Shared;
  private readonly affinity = nextAffinity++;
  /** the replica this client's reads of each shard went to in this tick, as per proxy session */
  private readonly picks = new TickPicks();
  /** MULTI … EXEC of a pipeline being collected, by the pipeline's stream */
  private readonly groups = new Map<object, Command[]>();
  private subscriptions: LibPubSub | null = null;
  private closedByUser = false;
  private isReady = false;

  /** @param shared internal: a duplicate's router (see duplicate()) */
  constructor(options: RedisOptions, shared?: unknown) {
    const resolved = (shared as Shared | undefined)?.options ?? resolveRedisOptions(options);
    super({
      lazyConnect: true,
      ...(resolved.keyPrefix === undefined ? {} : { keyPrefix: resolved.keyPrefix }),
    });
    if (shared) this.shared = shared as Shared;
    else {
      const clients = new Set<RwsplitRedis>();
      let metrics: Metrics | null = null;
      const stats = {
        routed: (node: string, read: boolean) => metrics?.redisStats().routed(node, read),
        retried: (node: string) => metrics?.redisStats().retried(node),
        lagSample: (node: string, ms: number) => metrics?.lagSample(node, ms),
      };
      const router = new RedisRouter(resolved.redis, stats, resolved.logger);
      metrics = libraryMetrics(router.topologies, {
        kind: 'redis',
        get clientCount() {
          return clients.size;
        },
        poolStats: () => router.shards.stats(),
      });
      // Registered now, so the families exist before the first command.
      metrics.redisStats();
      this.shared = { router, metrics, options: resolved, clients };
    }
    this.shared.clients.add(this);
    this.causal = new SessionCausal(this.shared.options.redis.consistency);
    this.shared.router.ready.then(
      () => {
        this.isReady = true;
        if (this.closedByUser) return;
        this.setState('connect');
        this.setState('ready');
      },
      (err: Error) => {
        if (this.listenerCount('error') > 0) this.emit('error', err);
      },
    );
  }

  private setState(status: string): void {
    (this as unknown as { setStatus(s: string): void }).setStatus(status);
  }

  /** The prom-client registry with the proxy's metric names for this client and its duplicates. */
  get metrics(): Registry {
    return this.shared.metrics.registry;
  }

  /** Resolves once every node was probed once and the commands are known (commands wait for it anyway). */
  override connect(): Promise<void> {
    return this.shared.router.ready;
  }

  /** Every node's role and state as the monitor and the data path last saw them. */
  nodes(): RedisNodeStatus[] {
    return this.shared.router.topologies.flatMap((t) =>
      t.nodes.map((n) => ({
        id: n.spec.id,
        shard: n.spec.shard,
        host: n.spec.host,
        port: n.spec.port,
        role: n.role,
        state: nodeState(n),
        lagBytes: n.lagBytes,
      })),
    );
  }

  /**
   * This client's causal token (`RWSPLIT TOKEN`'s format, `r1:…`), null before its first
   * write: hand it to another client (`adoptToken`, `withToken`) or to a proxy connection
   * (`RWSPLIT TOKEN <token>`) whose reads must see this client's writes.
   */
  async causalToken(): Promise<string | null> {
    await this.shared.router.ready;
    await this.shared.router.settleToken(this.causal, this.affinity);
    return this.causal.token.format(this.shared.router.shardNames);
  }

  /** Reads of this client now also see what `token` covers (a token of the library or of the proxy). */
  adoptToken(token: string): void {
    this.causal.token.adopt(parseCausalToken(token, this.shared.router.shardNames));
  }

  /** A client sharing this one's connections whose reads see what `token` covers, and its own writes. */
  withToken(token: string | null | undefined): RwsplitRedis {
    if (token) parseCausalToken(token, this.shared.router.shardNames); // refuse a bad one here, not later
    const c = this.duplicate();
    if (token) c.adoptToken(token);
    return c;
  }

  /** A client of its own (level, causal token) over the same connections and monitor. */
  override duplicate(): RwsplitRedis {
    return new RwsplitRedis({}, this.shared);
  }

  override disconnect(): void {
    this.close();
  }

  private close(): void {
    if (this.closedByUser) return;
    this.closedByUser = true;
    this.subscriptions?.close();
    const { clients, router } = this.shared;
    clients.delete(this);
    if (clients.size === 0) void router.end();
    this.setState('end');
  }

  override sendCommand(command: Command, stream?: unknown): Promise<unknown> {
    if (this.closedByUser) {
      command.reject(new Error('Connection is closed.'));
      return command.promise;
    }
    if (this.isReady) this.dispatch(command, stream);
    else
      this.shared.router.ready.then(
        () => this.dispatch(command, stream),
        (err: Error) => command.reject(err),
      );
    return command.promise;
  }

  private dispatch(command: Command, stream: unknown): void {
    const name = command.name.toLowerCase();
    if (stream !== null && typeof stream === 'object' && (stream as { isPipeline?: boolean }).isPipeline) {
      const group = this.groups.get(stream);
      if (name === 'multi') {
        this.groups.set(stream, [command]);
        return;
      }
      if (group) {
        group.push(command);
        if (name === 'exec' || name === 'discard') {
          this.groups.delete(stream);
          this.transaction(group);
        }
        return;
      }
    }
    const refusal = NOT_HERE[name];
    if (refusal !== undefined) {
      command.reject(new Error(`rwsplit/redis: ${name.toUpperCase()} is not supported here: ${refusal}`));
      return;
    }
    if (name === 'quit') {
      command.resolve(Buffer.from('OK'));
      this.close();
      return;
    }
    if (SUBSCRIBE.has(name)) {
      this.subscription(name, command);
      return;
    }
    const router = this.shared.router;
    const done = settleWith(command);
    const encode = encodeFor(command);
    const simple = router.commands.get(name);
    if (simple !== undefined && oneKey(simple) && command.args.length >= 1) {
      // GET, SET, HGET, INCR, …: the key is the first argument; no argument list to build.
      const shard = router.shards.shards.length > 1 ? router.shards.shardOf(asBuffer(command.args[0])) : 0;
      if (simple.readonly && !simple.write)
        router.read(shard, this.causal, this.picks, this.affinity, encode, done);
      else router.write(shard, this.causal, this.affinity, encode, CommandTable.mayWrite(simple), done);
      return;
    }
    const args = [Buffer.from(name), ...command.args.map(asBuffer)];
    if (name === 'rwsplit') {
      const action = rwsplitCommand(args, this.causal, router.shardNames);
      if ('reply' in action) done(action.reply);
      else
        this.causalToken().then((t) => command.resolve(t === null ? null : Buffer.from(t)), command.reject);
      return;
    }
    if (name === 'publish') {
      router.write(
        router.shards.shardOf(args[1] ?? Buffer.alloc(0)),
        this.causal,
        this.affinity,
        encode,
        false,
        done,
      );
      return;
    }
    const multiShard = router.shards.shards.length > 1;
    const sub = args[1]?.toString().toLowerCase();
    if (multiShard && (BROADCAST.has(name) || (name === 'script' && (sub === 'load' || sub === 'flush')))) {
      this.broadcast(name, args, command);
      return;
    }
    const container = router.commands.get(name);
    if (!container) {
      // Not a command the servers know: the first shard's primary answers with its own error.
      router.write(0, this.causal, this.affinity, encode, false, done);
      return;
    }
    const info = CommandTable.resolve(container, args);
    let positions = router.commands.keyPositions(info, args);
    if (positions === 'malformed') positions = [];
    if (positions === null) {
      if (multiShard) {
        command.reject(new Error(`rwsplit/redis: cannot locate the keys of '${name}' with these arguments`));
        return;
      }
      positions = [];
    }
    const shards = new Set(positions.map((p) => router.shards.shardOf(args[p]!)));
    if (shards.size > 1) {
      this.split(name, args, command);
      return;
    }
    const shard = shards.size === 1 ? [...shards][0]! : 0;
    if (info.blocking) router.blocking(shard, this.causal, encode, CommandTable.mayWrite(info), done);
    else if (info.readonly && !info.write && container.name !== 'object')
      router.read(
        shard,
        this.causal,
        this.picks,
        this.affinity,
        encode,
        READ_ONLY_SCRIPTS.has(name) ? this.primaryOnReadonly(shard, encode, done) : done,
      );
    else router.write(shard, this.causal, this.affinity, encode, CommandTable.mayWrite(info), done);
  }

  /**
   * A read-only script (FCALL_RO, EVAL_RO, EVALSHA_RO) that a replica refused because it is
   * flagged for writes: asked of the primary, whose own error is what a direct client sees
   * (the proxy does the same; see read-only-scripts.ts).
   */
  private primaryOnReadonly(
    shard: number,
    encode: Encode,
    done: (raw: Buffer) => void,
  ): (raw: Buffer) => void {
    return (raw) => {
      if (refusedByReplica(raw))
        this.shared.router.write(shard, this.causal, this.affinity, encode, false, done);
      else done(raw);
    };
  }

  /** MULTI, its commands and EXEC of one pipeline: together on the primary of their keys' shard. */
  private transaction(group: Command[]): void {
    const router = this.shared.router;
    const shards = new Set<number>();
    for (const c of group) {
      const args = [Buffer.from(c.name), ...c.args.map(asBuffer)];
      const container = router.commands.get(c.name.toLowerCase());
      if (!container) continue;
      const positions = router.commands.keyPositions(CommandTable.resolve(container, args), args);
      if (Array.isArray(positions)) for (const p of positions) shards.add(router.shards.shardOf(args[p]!));
    }
    if (shards.size > 1) {
      const refusal = crossShardError('a transaction');
      for (const c of group) settleWith(c)(refusal);
      return;
    }
    router.transaction(
      shards.size === 1 ? [...shards][0]! : 0,
      this.causal,
      this.affinity,
      group.map(encodeFor),
      group.map(settleWith),
    );
  }

  /** MGET, MSET, DEL, … whose keys are on several shards: one command per shard, replies merged. */
  private split(name: string, args: Buffer[], command: Command): void {
    const spec = SPLIT[name];
    if (!spec) {
      settleWith(command)(crossShardError(`'${name}'`));
      return;
    }
    const router = this.shared.router;
    const byShard = new Map<number, Buffer[]>();
    const placement: [number, number][] = [];
    const step = spec.pairs ? 2 : 1;
    for (let i = 1; i + step - 1 < args.length; i += step) {
      const shard = router.shards.shardOf(args[i]!);
      let list = byShard.get(shard);
      if (!list) byShard.set(shard, (list = [args[0]!]));
      placement.push([shard, (list.length - 1) / step]);
      for (let j = 0; j < step; j++) list.push(args[i + j]!);
    }
    const info = router.commands.get(name)!;
    const parts = new Map<number, IoredisValue>();
    let left = byShard.size;
    let failed: Error | null = null;
    for (const [shard, partArgs] of byShard) {
      const raw = encodeCommand(partArgs);
      const done = (reply: Buffer): void => {
        const r = decode(reply);
        if ('error' in r) failed ??= r.error;
        else parts.set(shard, r.value);
        if (--left > 0) return;
        if (failed) command.reject(failed);
        else if (spec.merge === 'sum')
          command.resolve([...parts.values()].reduce<number>((a, v) => a + (v as number), 0));
        else if (spec.merge === 'ok') command.resolve(Buffer.from('OK'));
        else command.resolve(placement.map(([s, i]) => (parts.get(s) as IoredisValue[])[i]!));
      };
      if (info.readonly) router.read(shard, this.causal, this.picks, this.affinity, () => raw, done);
      else router.write(shard, this.causal, this.affinity, () => raw, CommandTable.mayWrite(info), done);
    }
  }

  /** KEYS, DBSIZE, FLUSHALL, SCRIPT LOAD, …: every shard's primary, replies merged (as the proxy does). */
  private broadcast(name: string, args: Buffer[], command: Command): void {
    const router = this.shared.router;
    const n = router.shards.shards.length;
    const raw = encodeCommand(args);
    const info = router.commands.get(name);
    const mayWrite = info !== undefined && CommandTable.mayWrite(info);
    const values: IoredisValue[] = new Array<IoredisValue>(n).fill(null);
    let left = n;
    let failed: Error | null = null;
    for (let i = 0; i < n; i++) {
      router.write(
        i,
        this.causal,
        this.affinity,
        () => raw,
        mayWrite,
        (reply) => {
          const r = decode(reply);
          if ('error' in r) failed ??= r.error;
          else values[i] = r.value;
          if (--left > 0) return;
          if (failed) command.reject(failed);
          else if (name === 'dbsize') command.resolve(values.reduce<number>((a, v) => a + (v as number), 0));
          else if (name === 'keys') command.resolve(values.flatMap((v) => v as IoredisValue[]));
          else if (name === 'randomkey') command.resolve(values.find((v) => v !== null) ?? null);
          else command.resolve(values[0]!);
        },
      );
    }
  }

  private subscription(name: string, command: Command): void {
    const o = this.shared.options;
    const subs = (this.subscriptions ??= new LibPubSub(this.shared.router, this, o.login));
    const names = command.args.map((a) => asBuffer(a).toString());
    const pattern = name.startsWith('p');
    const op = name.includes('unsub') ? subs.unsubscribe(names, pattern) : subs.subscribe(names, pattern);
    op.then((count) => command.resolve(count), command.reject);
  }
}

/** `createRedis({ nodes: [{ host, port }, …] })` or `createRedis({ shards: [{ name, nodes }, …] })`: see docs/LIBRARY.md. */
export function createRedis(options: RedisOptions): RwsplitRedis {
  return new RwsplitRedis(options);
}

export { CausalTokenError };
