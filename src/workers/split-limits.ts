/**
 * Limits stay global with several workers: each worker gets its share of every per-instance
 * count (backend connections per node, clients, buffered bytes), so N workers never open more
 * server connections than the config allows. Shares differ by at most one and are at least
 * one (a worker with no connection to a node could not serve it), so with fewer connections
 * than workers the total is `workers`, not the configured figure (docs/CONFIG.md, `workers`).
 */
import { availableParallelism } from 'node:os';
import type { Config } from '../config/schema.js';

/** `workers: auto` takes every core, up to this many. */
export const MAX_AUTO_WORKERS = 8;

/** The number of data-plane processes `workers` asks for (1: one process, no controller split). */
export function workerCount(workers: Config['workers'], cores = availableParallelism()): number {
  if (workers === 'auto') return Math.max(1, Math.min(cores, MAX_AUTO_WORKERS));
  return workers;
}

/** Worker `index`'s share of `total` when split over `count` workers (at least 1). */
export function share(total: number, index: number, count: number): number {
  const base = Math.floor(total / count);
  return Math.max(1, base + (index < total % count ? 1 : 0));
}

/** The config worker `index` of `count` runs with: the instance's, its limits split. */
export function workerConfig(config: Config, index: number, count: number): Config {
  const out = structuredClone(config);
  out.workers = 1;
  out.limits.maxBufferedBytes =
    config.limits.maxBufferedBytes === 0 ? 0 : share(config.limits.maxBufferedBytes, index, count);
  if (out.postgres && config.postgres) {
    out.postgres.pool.size = share(config.postgres.pool.size, index, count);
    out.postgres.limits.maxClients = share(config.postgres.limits.maxClients, index, count);
  }
  if (out.redis && config.redis) {
    out.redis.pool.size = share(config.redis.pool.size, index, count);
    out.redis.limits.maxClients = share(config.redis.limits.maxClients, index, count);
  }
  return out;
}

/**
 * The session process ids (BackendKeyData) of worker `index` of `count`: `first + index`,
 * then every `count`-th, so the id alone names the worker a CancelRequest must reach.
 */
export function processIdOwner(processId: number, first: number, count: number): number | null {
  if (processId < first) return null;
  return (processId - first) % count;
}
