import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ClusterView } from '../core/cluster-view.js';
import { Topology } from '../core/topology.js';
import type { NodeSpec } from '../core/types.js';
import { Metrics } from './metrics.js';
import { nodeReports, shardReports, statsReport } from './reports.js';

const spec = (id: string, kind: NodeSpec['kind'], shard: string): NodeSpec => ({
  id,
  kind,
  shard,
  host: '127.0.0.1',
  port: 1,
  weight: 1,
});

describe('admin reports', () => {
  test('shards group nodes by engine and shard; a down primary is no shard primary', () => {
    const view = new ClusterView();
    const pg = new Topology([spec('p', 'postgres', 'default'), spec('r', 'postgres', 'default')]);
    view.addTopology(pg);
    view.addTopology(new Topology([spec('a0', 'redis', 's0'), spec('a1', 'redis', 's0')]));
    view.addTopology(new Topology([spec('b0', 'redis', 's1')]));
    pg.markDown('p', 'test');
    const shards = shardReports(nodeReports(view));
    assert.deepEqual(
      shards.map((s) => [s.kind, s.shard, s.primary, s.nodes.map((n) => n.id)]),
      [
        ['postgres', 'default', null, ['p', 'r']],
        ['redis', 's0', 'a0', ['a0', 'a1']],
        ['redis', 's1', 'b0', ['b0']],
      ],
    );
  });

  test('stats: decisions by reason and per-node totals with percentiles', () => {
    const view = new ClusterView();
    view.addTopology(new Topology([spec('p', 'postgres', 'default'), spec('r', 'postgres', 'default')]));
    const metrics = new Metrics(view);
    metrics.routed('read');
    metrics.routed('read');
    metrics.routed('write');
    for (let i = 0; i < 100; i++) {
      metrics.dispatched('r', 'read');
      metrics.answered('r', 0.0004);
    }
    const stats = statsReport(view, metrics);
    assert.deepEqual(stats.decisions, { read: 2, write: 1 });
    const r = stats.nodes.find((n) => n.id === 'r')!;
    assert.deepEqual([r.queries, r.reads, r.writes], [100, 100, 0]);
    // All in the (0.2 ms, 0.5 ms] bucket: the median is half-way, 0.35 ms.
    assert.equal(r.p50Ms, 0.35);
    const p = stats.nodes.find((n) => n.id === 'p')!;
    assert.deepEqual([p.queries, p.reads, p.p50Ms], [0, null, null]);
  });
});
