import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Topology, type TopologyEvent } from '../core/topology.js';
import { applySnapshot, snapshotTopology } from './topology-mirror.js';

const specs = ['p', 'r1', 'r2'].map((id) => ({
  id,
  kind: 'postgres' as const,
  shard: 'default',
  host: 'h',
  port: 1,
  weight: 1,
}));

function pair(): { ctl: Topology; copy: Topology; events: TopologyEvent[] } {
  const ctl = new Topology(specs);
  const copy = new Topology(specs);
  for (const t of [ctl, copy]) {
    t.markProbeOk('p', 'primary');
    t.markProbeOk('r1', 'replica');
    t.markProbeOk('r2', 'replica');
  }
  const events: TopologyEvent[] = [];
  copy.on('event', (e: TopologyEvent) => events.push(e));
  return { ctl, copy, events };
}

describe('topology mirror', () => {
  test('a failover reaches the copy: writes held and the old primary fenced at once, then the new primary', () => {
    const { ctl, copy, events } = pair();
    ctl.holdWrites({ shard: 'default', from: 'p', to: null, kind: 'failover', startedAt: 1 }, 'x');
    ctl.fence('p', 'failover');
    ctl.markDown('p', 'gone');
    applySnapshot(copy, snapshotTopology(ctl));
    assert.equal(copy.writablePrimary('default'), undefined, 'writes held');
    assert.equal(copy.get('p')!.fenced, true);
    assert.equal(copy.get('p')!.reachable, false);
    assert.deepEqual(
      events.map((e) => e.type),
      ['writes-held', 'fenced', 'down'],
    );
    ctl.markProbeOk('r1', 'primary');
    ctl.failover('default')!.to = 'r1';
    ctl.releaseWrites('default', 'done');
    applySnapshot(copy, snapshotTopology(ctl));
    assert.equal(copy.writablePrimary('default')?.spec.id, 'r1');
    assert.equal(copy.get('p')!.fenced, true, 'the old primary stays fenced');
  });

  test('a node back up on the controller comes back on the copy without the copy counting probes', () => {
    const { ctl, copy } = pair();
    ctl.markDown('r2', 'refused');
    applySnapshot(copy, snapshotTopology(ctl));
    assert.equal(copy.get('r2')!.reachable, false);
    ctl.markProbeOk('r2', 'replica');
    ctl.markProbeOk('r2', 'replica');
    assert.equal(ctl.get('r2')!.reachable, true);
    applySnapshot(copy, snapshotTopology(ctl));
    assert.equal(copy.get('r2')!.reachable, true);
  });

  test('lag figures and verdicts are copied; what is the copy’s own is kept', () => {
    const { ctl, copy } = pair();
    const r1 = ctl.get('r1')!;
    r1.lagBytes = 1234;
    r1.lagMs = 56;
    r1.position = '0/10';
    ctl.setLagging('r1', true);
    copy.get('r1')!.outstanding = 3;
    applySnapshot(copy, snapshotTopology(ctl));
    const c = copy.get('r1')!;
    assert.deepEqual([c.lagBytes, c.lagMs, c.position, c.lagging], [1234, 56, '0/10', true]);
    assert.equal(c.outstanding, 3);
  });

  test('a node the copy saw fail stays down until the controller says so too', () => {
    const { ctl, copy } = pair();
    const own = new Set<string>();
    copy.markDown('p', 'connection refused');
    own.add('p');
    // A snapshot taken before the controller heard of it still says up.
    applySnapshot(copy, snapshotTopology(ctl), own);
    assert.equal(copy.get('p')!.reachable, false);
    ctl.markDown('p', 'reported by a worker');
    applySnapshot(copy, snapshotTopology(ctl), own);
    assert.equal(own.size, 0);
    ctl.markProbeOk('p', 'primary');
    ctl.markProbeOk('p', 'primary');
    applySnapshot(copy, snapshotTopology(ctl), own);
    assert.equal(copy.get('p')!.reachable, true, 'back once the controller has seen it come back');
  });
});
