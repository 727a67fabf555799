/**
 * `rwsplit ring --config FILE (--add NAME[:WEIGHT] | --remove NAME) [--keys N]`: what a change
 * of the Redis shard list would move, before making it. Keys are a deterministic sample
 * (`key:<n>` hashed, so the sample is spread like real keys), placed on the configured ring
 * before and after the change.
 */
import { createHash } from 'node:crypto';
import { loadConfigFile } from '../config/load.js';
import { movement } from '../sharding/movement.js';
import { createRing } from '../sharding/ring.js';
import type { ShardServer } from '../sharding/servers.js';

export interface RingOptions {
  config: string;
  add?: string;
  remove?: string;
  keys: number;
}

export function ringMovementReport(opts: RingOptions): string {
  const config = loadConfigFile(opts.config);
  if (!config.redis) throw new Error(`${opts.config} has no redis section: there is no ring to change`);
  const { hash, shards } = config.redis;
  const before: ShardServer[] = shards.map((s) => ({ name: s.name, weight: s.weight }));
  let after: ShardServer[];
  if (opts.add) {
    const [name, weight] = opts.add.split(':');
    if (before.some((s) => s.name === name)) throw new Error(`shard ${name} is already in the ring`);
    after = [...before, { name: name!, weight: weight ? Number(weight) : 1 }];
  } else if (opts.remove) {
    after = before.filter((s) => s.name !== opts.remove);
    if (after.length === before.length) throw new Error(`no shard named ${opts.remove} in the ring`);
  } else {
    throw new Error('say what changes: --add NAME[:WEIGHT] or --remove NAME');
  }
  const ringOpts = { hash: hash.function };
  const r1 = createRing(hash.distribution, before, ringOpts);
  const r2 = createRing(hash.distribution, after, ringOpts);
  const sample = (function* () {
    for (let i = 0; i < opts.keys; i++) yield Buffer.from(createHash('md5').update(`key:${i}`).digest('hex'));
  })();
  const report = movement(r1, r2, sample);
  const lines = [
    `ring: ${hash.distribution} (${hash.function}), ${before.length} → ${after.length} shards`,
    `keys moved: ${report.moved} of ${report.total} sampled (${(report.fraction * 100).toFixed(2)}%; ideal ≈ ${((1 / Math.max(before.length, after.length)) * 100).toFixed(2)}%)`,
  ];
  for (const [dest, n] of report.byDestination) lines.push(`  to ${after[dest]?.name ?? dest}: ${n}`);
  return lines.join('\n');
}
