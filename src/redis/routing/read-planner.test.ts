import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ReadRouter } from '../../core/read-router.js';
import { Topology } from '../../core/topology.js';
import { PositionBook } from './position-book.js';
import { ReadPlanner, type ReadChoice } from './read-planner.js';
import type { ReplicationInfo } from '../ha/replication-info.js';
import type { Shard } from '../sharding/shards.js';

const A = 'a'.repeat(40);
const B = 'b'.repeat(40);

function setup(causalWaitMs = 0): { planner: ReadPlanner; topology: Topology; book: PositionBook } {
  const topology = new Topology(
    ['p', 'r1', 'r2'].map((id, i) => ({
      id,
      kind: 'redis',
      shard: 's1',
      host: '127.0.0.1',
      port: 1 + i,
      weight: 1,
    })),
  );
  topology.markProbeOk('p', 'primary');
  topology.markProbeOk('r1', 'replica');
  topology.markProbeOk('r2', 'replica');
  const readRouter = new ReadRouter(topology, {
    balance: 'round-robin',
    primaryReads: 'fallback',
    whenAllLagging: 'fallback',
  });
  const shards: Shard[] = [{ index: 0, name: 's1', topology, readRouter }];
  // Port 1 refuses connections: an on-demand check answers null at once.
  const book = new PositionBook(() => ({ resp3: false, connectTimeoutMs: 200 }), 200);
  const planner = new ReadPlanner(shards, book, {
    readFrom: 'prefer-replica',
    balance: 'round-robin',
    causalWaitMs,
  });
  return { planner, topology, book };
}

function at(replid: string, offset: number, role: 'master' | 'slave' = 'slave'): ReplicationInfo {
  return {
    role,
    replid,
    replid2: '0'.repeat(40),
    secondOffset: -1,
    offset,
    linkUp: true,
    masterHost: null,
    masterPort: null,
    connectedReplicas: 0,
  };
}

function nodeOf(choice: ReadChoice | Promise<ReadChoice>): string {
  assert.ok(!(choice instanceof Promise), 'decided at once');
  assert.equal(choice.error, undefined);
  return choice.node!.spec.id;
}

describe('ReadPlanner', () => {
  test('strong reads the primary; eventual reads a lagging replica; bounded does not', () => {
    const { planner, topology } = setup();
    assert.equal(nodeOf(planner.plan(0, 'strong', [])), 'p');
    topology.setLagging('r1', true);
    topology.setLagging('r2', true);
    assert.match(nodeOf(planner.plan(0, 'eventual', [])), /^r[12]$/);
    assert.equal(nodeOf(planner.plan(0, 'bounded', [])), 'p', 'every replica lags: fallback to the primary');
  });

  test("read-your-writes: only a replica at the token's position, else the primary", () => {
    const { planner, book } = setup();
    const want = [{ replid: A, offset: 100 }];
    book.observe('r1', at(A, 99));
    book.observe('r2', at(A, 100));
    for (let i = 0; i < 4; i++) assert.equal(nodeOf(planner.plan(0, 'read-your-writes', want)), 'r2');
    book.observe('r2', at(B, 5000)); // a history that does not continue A: not comparable
    assert.equal(nodeOf(planner.plan(0, 'read-your-writes', want)), 'p');
    book.observe('r1', at(A, 150));
    assert.equal(nodeOf(planner.plan(0, 'read-your-writes', want)), 'r1');
  });

  test('read-your-writes with no token is bounded: replicas in rotation', () => {
    const { planner } = setup();
    const seen = new Set([
      nodeOf(planner.plan(0, 'read-your-writes', [])),
      nodeOf(planner.plan(0, 'read-your-writes', [])),
    ]);
    assert.deepEqual([...seen].sort(), ['r1', 'r2']);
  });

  test('a replica that failed this read is not chosen again', () => {
    const { planner, book } = setup();
    book.observe('r1', at(A, 100));
    book.observe('r2', at(A, 100));
    const want = [{ replid: A, offset: 100 }];
    assert.equal(nodeOf(planner.plan(0, 'read-your-writes', want, new Set(['r1']))), 'r2');
  });

  test('waiting: replicas that cannot be asked make the read go to the primary by the deadline', async () => {
    const { planner, book } = setup(50);
    const choice = planner.plan(0, 'read-your-writes', [{ replid: A, offset: 10 }]);
    assert.ok(choice instanceof Promise);
    assert.equal((await choice).node?.spec.id, 'p');
    book.close();
  });
});
