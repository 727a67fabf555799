/**
 * Several local PostgreSQL shards, each its own primary + streaming replicas (one
 * {@link PgCluster} per shard), for `rwsplit demo --pg-shards N` and the sharding and
 * two-phase-commit tests. Shards are named 's1', 's2', …; node ids are 'pg-s1-primary',
 * 'pg-s1-replica1', …, and each node handle carries its shard, as `postgres.nodes[].shard`
 * would. Every node allows as many prepared transactions as connections (pg-config.ts).
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { ClusterError } from './errors.js';
import { PgCluster, type PgClusterOptions, type PgNodeHandle } from './pg-cluster.js';

/** Options of {@link PgShardedCluster.start}. */
export interface PgShardedClusterOptions extends Omit<
  PgClusterOptions,
  'dir' | 'ports' | 'idPrefix' | 'shard'
> {
  /**
   * Directory to own; each shard lives in a subdirectory named after it. Default: a fresh
   * mkdtemp under os.tmpdir() ('rwsplit-pgs-'), removed on stop(). A directory given here is
   * kept on stop(), and data directories of a previous run in it are replaced.
   */
  dir?: string;
  /** Number of shards (default 2), named 's1', 's2', …. */
  shards?: number;
}

/** Shard subdirectories left behind when the process exits without stop(). */
const ownedDirs = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Installed once the shards' clusters have started, hence after PgCluster's own hook: exit
  // handlers run in order, so the postmasters are killed first. Removal is best effort.
  process.on('exit', () => {
    for (const dir of ownedDirs) rmSync(dir, { recursive: true, force: true });
  });
}

/** Running shards; create with {@link PgShardedCluster.start}. */
export class PgShardedCluster {
  private stopping: Promise<void> | undefined;

  private constructor(
    readonly dir: string,
    private readonly ownsDir: boolean,
    private readonly clusters: ReadonlyMap<string, PgCluster>,
  ) {}

  /**
   * Starts every shard (in parallel) and resolves once each shard's replicas stream.
   *
   * @throws ClusterError: BAD_OPTIONS for a bad shard count, else what {@link PgCluster.start}
   * throws (every shard already started is stopped first).
   */
  static async start(opts: PgShardedClusterOptions = {}): Promise<PgShardedCluster> {
    const count = opts.shards ?? 2;
    if (!Number.isInteger(count) || count < 1 || count > 64) {
      throw new ClusterError('BAD_OPTIONS', `PgShardedCluster: shards must be an integer 1-64, got ${count}`);
    }
    const { dir, owns } = ownDir(opts.dir);
    const { shards: _count, dir: _dir, ...shared } = opts;
    const names = Array.from({ length: count }, (_, i) => `s${i + 1}`);
    const started = await Promise.allSettled(
      names.map((name) =>
        PgCluster.start({ ...shared, dir: path.join(dir, name), idPrefix: `pg-${name}`, shard: name }),
      ),
    );
    const clusters = new Map<string, PgCluster>();
    let failure: unknown;
    started.forEach((result, i) => {
      if (result.status === 'fulfilled') clusters.set(names[i] ?? '', result.value);
      else failure ??= result.reason;
    });
    installExitHook();
    const sharded = new PgShardedCluster(dir, owns, clusters);
    if (failure !== undefined) {
      await sharded.stop();
      throw failure;
    }
    return sharded;
  }

  /** Shard names in order: 's1', 's2', …. */
  get shardNames(): string[] {
    return [...this.clusters.keys()];
  }

  /** Every node, shard by shard, each shard's primary first. */
  get nodes(): PgNodeHandle[] {
    return [...this.clusters.values()].flatMap((c) => c.nodes);
  }

  /** Each shard's primary, in shard order. */
  get primaries(): PgNodeHandle[] {
    return [...this.clusters.values()].map((c) => c.primary);
  }

  /** One shard's cluster (its primary, replicas, waitForReplication, …). @throws ClusterError UNKNOWN_NODE */
  shard(name: string): PgCluster {
    const cluster = this.clusters.get(name);
    if (cluster === undefined) {
      throw new ClusterError('UNKNOWN_NODE', `no shard '${name}' (shards: ${this.shardNames.join(', ')})`);
    }
    return cluster;
  }

  /** The cluster holding a node. @throws ClusterError UNKNOWN_NODE */
  clusterOf(nodeId: string): PgCluster {
    for (const cluster of this.clusters.values())
      if (cluster.nodes.some((n) => n.id === nodeId)) return cluster;
    const known = this.nodes.map((n) => n.id).join(', ');
    throw new ClusterError('UNKNOWN_NODE', `no node '${nodeId}' in these shards (nodes: ${known})`);
  }

  /** Sends a signal to a node's postmaster (see {@link PgCluster.signal}). */
  signal(nodeId: string, sig: NodeJS.Signals): void {
    this.clusterOf(nodeId).signal(nodeId, sig);
  }

  /** Sends a signal to a node's postmaster and its children (see {@link PgCluster.signalTree}). */
  signalTree(nodeId: string, sig: NodeJS.Signals): void {
    this.clusterOf(nodeId).signalTree(nodeId, sig);
  }

  /** kill -9 a node and wait until its port refuses connections. */
  kill(nodeId: string): Promise<void> {
    return this.clusterOf(nodeId).kill(nodeId);
  }

  /** (Re)starts a node with its data dir and port (see {@link PgCluster.restart}). */
  restart(nodeId: string): Promise<void> {
    return this.clusterOf(nodeId).restart(nodeId);
  }

  /** Waits until every shard's running replicas have replayed their primary's current WAL. */
  async waitForReplication(timeoutMs = 10_000): Promise<void> {
    await Promise.all([...this.clusters.values()].map((c) => c.waitForReplication(timeoutMs)));
  }

  /** Stops every shard; removes the directory when it created it. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    await Promise.allSettled([...this.clusters.values()].map((c) => c.stop()));
    if (this.ownsDir) {
      await rm(this.dir, { recursive: true, force: true });
      ownedDirs.delete(this.dir);
    }
  }
}

/** The parent directory: the caller's, or a fresh temporary one other users may traverse. */
function ownDir(requested: string | undefined): { dir: string; owns: boolean } {
  try {
    if (requested !== undefined) {
      const dir = path.resolve(requested);
      mkdirSync(dir, { recursive: true });
      return { dir, owns: false };
    }
    const dir = mkdtempSync(path.join(os.tmpdir(), 'rwsplit-pgs-'));
    // mkdtemp creates 0700; as root, PostgreSQL runs as another user that must traverse it.
    chmodSync(dir, 0o755);
    ownedDirs.add(dir);
    return { dir, owns: true };
  } catch (err) {
    throw new ClusterError(
      'DIR_NOT_ACCESSIBLE',
      `cannot create ${requested ?? 'a temporary directory'}: ${err}`,
      {
        cause: err,
      },
    );
  }
}
