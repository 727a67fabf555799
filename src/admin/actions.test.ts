import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ClusterView } from '../core/cluster-view.js';
import { nodeState, Topology } from '../core/topology.js';
import type { NodeSpec } from '../core/types.js';
import { FailoverError } from '../pg/ha/failover-plan.js';
import { AdminActionError, asActionError, parseSwitchoverRequest, ViewDrainer } from './actions.js';

const spec = (id: string, kind: NodeSpec['kind'] = 'postgres', shard = 'default'): NodeSpec => ({
  id,
  kind,
  shard,
  host: '127.0.0.1',
  port: 1,
  weight: 1,
});

function setup(): { view: ClusterView; pg: Topology; redis: Topology; drainer: ViewDrainer } {
  const view = new ClusterView();
  const pg = new Topology([spec('p'), spec('r1'), spec('r2')]);
  const redis = new Topology([spec('k0', 'redis', 's0'), spec('k1', 'redis', 's0')]);
  view.addTopology(pg);
  view.addTopology(redis);
  return { view, pg, redis, drainer: new ViewDrainer(view) };
}

const code = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof AdminActionError);
    return `${err.code} ${err.status}`;
  }
  return 'no error';
};

describe('ViewDrainer', () => {
  test('drains and undrains a replica of any topology; repeating changes nothing', () => {
    const { pg, redis, drainer } = setup();
    assert.equal(drainer.drain('r1'), true);
    assert.equal(nodeState(pg.get('r1')!), 'fenced');
    assert.equal(drainer.drain('r1'), false);
    assert.equal(drainer.drain('k1'), true, 'a Redis replica drains the same way');
    assert.equal(nodeState(redis.get('k1')!), 'fenced');
    assert.equal(drainer.undrain('r1'), true);
    assert.equal(nodeState(pg.get('r1')!), 'up');
    assert.equal(drainer.undrain('r1'), false);
  });

  test('refuses a primary, an unknown node, and undraining a fence it did not set', () => {
    const { pg, drainer } = setup();
    assert.equal(
      code(() => drainer.drain('p')),
      'NODE_IS_PRIMARY 409',
    );
    assert.equal(
      code(() => drainer.drain('nope')),
      'NODE_NOT_FOUND 404',
    );
    pg.get('r2')!.fenced = true; // as a failover would
    assert.equal(
      code(() => drainer.undrain('r2')),
      'FENCED_ELSEWHERE 409',
    );
    assert.equal(
      code(() => drainer.drain('r2')),
      'FENCED_ELSEWHERE 409',
    );
    assert.equal(pg.get('r2')!.fenced, true);
  });
});

describe('switchover requests', () => {
  test('reads the optional shard and target; an empty body takes the defaults', () => {
    assert.deepEqual(parseSwitchoverRequest(''), {});
    assert.deepEqual(parseSwitchoverRequest('{"to":"pg-replica2"}'), { to: 'pg-replica2' });
    assert.deepEqual(parseSwitchoverRequest('{"shard":"s1","to":"b"}'), { shard: 's1', to: 'b' });
  });

  test('refuses malformed bodies with BAD_REQUEST (400) naming the problem', () => {
    for (const [body, message] of [
      ['{', /must be JSON/],
      ['[1]', /JSON object/],
      ['{"target":"x"}', /unknown key "target"/],
      ['{"to":3}', /"to" must be a non-empty string/],
    ] as const) {
      assert.throws(
        () => parseSwitchoverRequest(body),
        (err: unknown) => err instanceof AdminActionError && err.status === 400 && message.test(err.message),
      );
    }
  });

  test("a failover controller's refusals keep their code and get an HTTP status", () => {
    const busy = asActionError(new FailoverError('FAILOVER_RUNNING', 'a switchover is running'));
    assert.ok(busy instanceof AdminActionError);
    assert.equal(`${busy.code} ${busy.status}`, 'FAILOVER_RUNNING 409');
    const bad = asActionError(new FailoverError('BAD_TARGET', 'no node x'));
    assert.equal((bad as AdminActionError).status, 400);
    const other = new Error('boom');
    assert.equal(asActionError(other), other, 'other errors pass through');
  });
});
