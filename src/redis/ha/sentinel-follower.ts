/**
 * Follows Redis Sentinel (`redis.failover.mode: follow` with `redis.failover.sentinels`):
 * Sentinel decides failovers, and its answer is the authority for each shard's primary
 * (shards name their Sentinel master with `sentinelName`). A node reporting master that
 * Sentinel does not name is fenced (primary-authority.ts).
 *
 * Two channels, for correctness and for speed:
 * - every monitor round asks each Sentinel `SENTINEL MASTER <name>` and takes the address
 *   with the highest `config-epoch` (Sentinel's own version of a master's configuration:
 *   during a failover some Sentinels still answer the old address, but never with a newer
 *   epoch); an answer older than the one applied is ignored, so the primary never flips back;
 * - a subscription to `+switch-master` on each Sentinel (published when a Sentinel switches
 *   to the promoted replica) triggers that query and a probe of the shard at once, instead of
 *   at the next round.
 * Sentinels are reached without AUTH.
 */
import type { Logger } from 'pino';
import { RedisLink } from '../backend/backend-link.js';
import { nodeCommand } from '../backend/node-command.js';
import { sameHost } from './primary-authority.js';
import type { MonitoredShard, RedisMonitor } from './monitor.js';
import { encodeCommand, parseReply, type RespValue } from '../resp/index.js';

export interface SentinelAddress {
  host: string;
  port: number;
}

/** A shard and the name Sentinel monitors its primary under. */
export interface SentinelShard {
  shard: MonitoredShard;
  masterName: string;
}

/** One Sentinel's view of a master. */
export interface MasterAnswer {
  host: string;
  port: number;
  epoch: number;
}

export class SentinelFollower {
  private readonly epochs = new Map<SentinelShard, number>();
  private readonly subscriptions = new Map<string, RedisLink>();
  private readonly unknownWarned = new Set<string>();
  private retry: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    private readonly sentinels: readonly SentinelAddress[],
    private readonly shards: readonly SentinelShard[],
    private readonly monitor: RedisMonitor,
    private readonly opts: { timeoutMs: number },
    private readonly log: Logger,
  ) {
    monitor.addSource(() => this.refresh());
  }

  /** Subscribes to `+switch-master` everywhere (and keeps re-subscribing while stopped ones come back). */
  start(): void {
    this.subscribeAll();
    this.retry = setInterval(() => this.subscribeAll(), Math.max(this.monitor.intervalMs, 500));
    this.retry.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.retry) clearInterval(this.retry);
    for (const l of this.subscriptions.values()) l.destroy('stopping');
    this.subscriptions.clear();
  }

  /** Asks every Sentinel about every shard and applies the newest answers. */
  async refresh(only?: SentinelShard): Promise<void> {
    await Promise.all((only ? [only] : this.shards).map((s) => this.refreshShard(s)));
  }

  private async refreshShard(s: SentinelShard): Promise<void> {
    const answers = await Promise.all(this.sentinels.map((addr) => this.askMaster(addr, s.masterName)));
    const best = newest(answers);
    if (!best || best.epoch < (this.epochs.get(s) ?? -1)) return;
    const node = s.shard.topology.nodes.find(
      (n) => n.spec.port === best.port && sameHost(n.spec.host, best.host),
    );
    if (!node) {
      const key = `${s.masterName}@${best.host}:${best.port}`;
      if (!this.unknownWarned.has(key)) {
        this.unknownWarned.add(key);
        this.log.warn(
          { sentinelName: s.masterName, host: best.host, port: best.port },
          "Sentinel names a primary that is not in the shard's nodes",
        );
      }
      return;
    }
    this.epochs.set(s, best.epoch);
    if (s.shard.authority.primary !== node.spec.id) {
      this.log.info(
        { shard: node.spec.shard, node: node.spec.id, epoch: best.epoch },
        'Sentinel names a new primary',
      );
    }
    s.shard.authority.designate(node.spec.id, `named by Sentinel, config-epoch ${best.epoch}`, true);
  }

  private async askMaster(addr: SentinelAddress, name: string): Promise<MasterAnswer | null> {
    try {
      const v = await nodeCommand(
        { nodeId: `sentinel ${addr.host}:${addr.port}`, host: addr.host, port: addr.port },
        ['SENTINEL', 'MASTER', name],
        { link: {}, timeoutMs: this.opts.timeoutMs },
      );
      return masterAnswer(v);
    } catch {
      return null;
    }
  }

  private subscribeAll(): void {
    if (this.stopped) return;
    for (const addr of this.sentinels) {
      const key = `${addr.host}:${addr.port}`;
      const existing = this.subscriptions.get(key);
      if (existing && !existing.closed) continue;
      this.subscriptions.delete(key);
      RedisLink.connect(
        { nodeId: `sentinel ${key}`, host: addr.host, port: addr.port },
        { resp3: false, connectTimeoutMs: this.opts.timeoutMs },
      ).then(
        (link) => {
          if (this.stopped) {
            link.destroy('stopping');
            return;
          }
          this.subscriptions.set(key, link);
          link.listener = (raw) => this.onPush(raw);
          link.send(encodeCommand(['SUBSCRIBE', '+switch-master']), () => undefined);
        },
        () => undefined,
      );
    }
  }

  /** `message +switch-master "<name> <old ip> <old port> <new ip> <new port>"`. */
  private onPush(raw: Buffer): void {
    const v = parseReply(raw);
    if (!Array.isArray(v) || text(v[0]) !== 'message' || text(v[1]) !== '+switch-master') return;
    const name = text(v[2]).split(' ')[0];
    const s = this.shards.find((x) => x.masterName === name);
    if (!s) return;
    this.log.info({ sentinelName: name, message: text(v[2]) }, 'Sentinel switched master');
    void this.refresh(s).then(() => this.monitor.probeShard(s.shard));
  }
}

/**
 * The answer with the highest config-epoch; among answers of that epoch, the address most
 * Sentinels give. (The failover leader bumps the epoch when it sees the promotion but
 * switches the address only when it announces +switch-master, while the others take both
 * from its hello messages: for a moment one epoch has two addresses, and the majority has
 * already switched.)
 */
export function newest(answers: readonly (MasterAnswer | null)[]): MasterAnswer | null {
  const valid = answers.filter((a): a is MasterAnswer => a !== null);
  if (valid.length === 0) return null;
  const top = Math.max(...valid.map((a) => a.epoch));
  const votes = new Map<string, { answer: MasterAnswer; count: number }>();
  for (const a of valid) {
    if (a.epoch !== top) continue;
    const key = `${a.host}:${a.port}`;
    const v = votes.get(key) ?? { answer: a, count: 0 };
    v.count++;
    votes.set(key, v);
  }
  let best: { answer: MasterAnswer; count: number } | null = null;
  for (const v of votes.values()) if (!best || v.count > best.count) best = v;
  return best!.answer;
}

function text(v: RespValue | undefined): string {
  return Buffer.isBuffer(v) ? v.toString() : typeof v === 'string' ? v : String(v ?? '');
}

/** `SENTINEL MASTER` answers a flat field/value array (RESP2) or a map (RESP3). */
function masterAnswer(v: RespValue): MasterAnswer | null {
  const fields = new Map<string, string>();
  if (Array.isArray(v)) for (let i = 0; i + 1 < v.length; i += 2) fields.set(text(v[i]), text(v[i + 1]));
  else if (v instanceof Map) for (const [k, x] of v) fields.set(text(k), text(x));
  const host = fields.get('ip');
  const port = Number(fields.get('port'));
  const epoch = Number(fields.get('config-epoch') ?? 0);
  if (!host || !Number.isInteger(port)) return null;
  return { host, port, epoch: Number.isFinite(epoch) ? epoch : 0 };
}
