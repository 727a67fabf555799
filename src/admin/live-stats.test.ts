import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ClusterView } from '../core/cluster-view.js';
import { Topology } from '../core/topology.js';
import type { NodeSpec } from '../core/types.js';
import { LiveStats } from './live-stats.js';
import { Metrics } from './metrics.js';

const spec = (id: string): NodeSpec => ({
  id,
  kind: 'postgres',
  shard: 'default',
  host: 'h',
  port: 1,
  weight: 1,
});

describe('LiveStats', () => {
  test('rates and latency are over the last interval, not since start', () => {
    const view = new ClusterView();
    view.addTopology(new Topology([spec('p'), spec('r')]));
    const metrics = new Metrics(view);
    const live = new LiveStats(view, metrics);
    for (let i = 0; i < 50; i++) metrics.answered('r', 5); // old and slow: must not count
    live.sample(10_000);
    for (let i = 0; i < 20; i++) {
      metrics.dispatched('r');
      metrics.answered('r', 0.0004);
    }
    for (let i = 0; i < 6; i++) metrics.dispatched('p');
    const s = live.sample(12_000);
    assert.equal(s.intervalMs, 2000);
    const r = s.nodes.r!;
    assert.deepEqual([r.queriesPerSec, r.readsPerSec, r.writesPerSec], [10, 10, 0]);
    assert.equal(r.p50Ms, 0.35);
    // Without the kind reported, a primary's batches count as writes.
    const p = s.nodes.p!;
    assert.deepEqual([p.queriesPerSec, p.readsPerSec, p.writesPerSec, p.p50Ms], [3, 0, 3, null]);
  });

  test('the kind split, when reported, decides reads and writes', () => {
    const view = new ClusterView();
    view.addTopology(new Topology([spec('p')]));
    const metrics = new Metrics(view);
    const live = new LiveStats(view, metrics);
    live.sample(0);
    metrics.dispatched('p', 'write');
    metrics.dispatched('p', 'read');
    metrics.dispatched('p', 'read');
    const p = live.sample(1000).nodes.p!;
    assert.deepEqual([p.queriesPerSec, p.readsPerSec, p.writesPerSec], [3, 2, 1]);
  });

  test('a Redis node counts the commands fed through redisStats()', async () => {
    const view = new ClusterView();
    view.addTopology(new Topology([{ ...spec('k0'), kind: 'redis', shard: 's1' }]));
    const metrics = new Metrics(view);
    const live = new LiveStats(view, metrics);
    live.sample(0);
    const stats = metrics.redisStats();
    assert.equal(metrics.redisStats(), stats, 'registered once');
    for (let i = 0; i < 4; i++) stats.routed('k0', true);
    stats.routed('k0', false);
    const k = live.sample(1000).nodes.k0!;
    assert.deepEqual([k.queriesPerSec, k.readsPerSec, k.writesPerSec], [5, 4, 1]);
    assert.match(
      await metrics.registry.metrics(),
      /^rwsplit_redis_commands_total\{node="k0",kind="read"\} 4$/m,
    );
  });
});
