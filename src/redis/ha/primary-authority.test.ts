import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PrimaryAuthority, sameHost, type NodeProbe } from './primary-authority.js';
import type { ReplicationInfo } from './replication-info.js';

const IDS = ['p', 'r1', 'r2'];
const PORTS: Record<string, number> = { p: 7000, r1: 7001, r2: 7002 };

function master(): ReplicationInfo {
  return {
    role: 'master',
    replid: 'a'.repeat(40),
    replid2: '0'.repeat(40),
    secondOffset: -1,
    offset: 100,
    linkUp: true,
    masterHost: null,
    masterPort: null,
    connectedReplicas: 0,
  };
}

function replicaOf(id: string): ReplicationInfo {
  return { ...master(), role: 'slave', masterHost: '127.0.0.1', masterPort: PORTS[id]! };
}

/** A round: per node, 'down', 'master' or the id of the master it follows. */
function round(state: Record<string, string>): NodeProbe[] {
  return IDS.map((id) => {
    const s = state[id]!;
    const info = s === 'down' ? null : s === 'master' ? master() : replicaOf(s);
    return { id, host: 'localhost', port: PORTS[id]!, info };
  });
}

describe('PrimaryAuthority (follow)', () => {
  test('at start the master wins; roles are as reported', () => {
    const a = new PrimaryAuthority(IDS, 'follow');
    const d = a.decide(round({ p: 'master', r1: 'p', r2: 'p' }), new Set());
    assert.equal(d.primary, 'p');
    assert.deepEqual(
      [...d.roles],
      [
        ['p', 'primary'],
        ['r1', 'replica'],
        ['r2', 'replica'],
      ],
    );
    assert.deepEqual(d.fence, []);
  });

  test('a promotion made elsewhere is followed; the old primary back as master is fenced, then unfenced as replica', () => {
    const a = new PrimaryAuthority(IDS, 'follow');
    a.decide(round({ p: 'master', r1: 'p', r2: 'p' }), new Set());
    assert.equal(
      a.decide(round({ p: 'down', r1: 'p', r2: 'p' }), new Set()).primary,
      'p',
      'down is not replaced by itself',
    );
    const d = a.decide(round({ p: 'down', r1: 'master', r2: 'r1' }), new Set());
    assert.equal(d.primary, 'r1');
    const back = a.decide(round({ p: 'master', r1: 'master', r2: 'r1' }), new Set());
    assert.equal(back.primary, 'r1');
    assert.deepEqual(
      back.fence.map((f) => f.id),
      ['p'],
    );
    assert.deepEqual(back.strays, ['p']);
    assert.match(back.fence[0]!.reason, /r1 is the shard's primary/);
    const again = a.decide(round({ p: 'master', r1: 'master', r2: 'r1' }), new Set(['p']));
    assert.deepEqual(again.fence, [], 'fenced once');
    const rejoined = a.decide(round({ p: 'r1', r1: 'master', r2: 'r1' }), new Set(['p']));
    assert.deepEqual(rejoined.unfence, [{ id: 'p', reason: 'rejoined as a replica' }]);
  });

  test('two masters at start: the one the replicas follow wins', () => {
    const a = new PrimaryAuthority(IDS, 'follow');
    const d = a.decide(round({ p: 'master', r1: 'master', r2: 'r1' }), new Set());
    assert.equal(d.primary, 'r1');
    assert.deepEqual(
      d.fence.map((f) => f.id),
      ['p'],
    );
  });

  test('no master seen yet: the first configured node is assumed (a primary down at start can be replaced)', () => {
    const a = new PrimaryAuthority(IDS, 'auto');
    assert.equal(a.decide(round({ p: 'down', r1: 'p', r2: 'p' }), new Set()).primary, 'p');
  });

  test("an operator's fence is never lifted", () => {
    const a = new PrimaryAuthority(IDS, 'follow');
    const d = a.decide(round({ p: 'master', r1: 'p', r2: 'p' }), new Set(['r1']));
    assert.deepEqual(d.unfence, []);
  });

  test('the current primary demoted to replica: the master it follows takes over', () => {
    const a = new PrimaryAuthority(IDS, 'follow');
    a.decide(round({ p: 'master', r1: 'p', r2: 'p' }), new Set());
    const d = a.decide(round({ p: 'r2', r1: 'master', r2: 'master' }), new Set());
    assert.equal(d.primary, 'r2');
    assert.deepEqual(
      d.fence.map((f) => f.id),
      ['r1'],
    );
  });
});

describe('PrimaryAuthority (follow): a replica promoted before the primary stopped', () => {
  /** p as given, r1 a master with `r1Info`, r2 following r1. */
  const probes = (p: ReplicationInfo | null, r1Info: ReplicationInfo): NodeProbe[] => [
    { id: 'p', host: 'localhost', port: PORTS.p!, info: p },
    { id: 'r1', host: 'localhost', port: PORTS.r1!, info: r1Info },
    { id: 'r2', host: 'localhost', port: PORTS.r2!, info: replicaOf('r1') },
  ];

  test('fenced while the primary answers, it takes over once the primary is down: its history continues the primary one', () => {
    const a = new PrimaryAuthority(IDS, 'follow');
    a.decide(round({ p: 'master', r1: 'p', r2: 'p' }), new Set());
    // REPLICAOF NO ONE on r1: a new history, the primary's id kept as replid2.
    const promoted = { ...master(), replid: 'b'.repeat(40), replid2: 'a'.repeat(40), secondOffset: 101 };
    const d1 = a.decide(probes(master(), promoted), new Set());
    assert.equal(d1.primary, 'p');
    assert.deepEqual(
      d1.fence.map((f) => f.id),
      ['r1'],
    );
    const d2 = a.decide(probes(null, promoted), new Set(['r1']));
    assert.equal(d2.primary, 'r1');
    assert.deepEqual(
      d2.unfence.map((f) => f.id),
      ['r1'],
    );
  });

  test('a fenced master of another history (a node back empty) does not take over', () => {
    const a = new PrimaryAuthority(IDS, 'follow');
    a.decide(round({ p: 'master', r1: 'p', r2: 'p' }), new Set());
    const unrelated = { ...master(), replid: 'c'.repeat(40) };
    a.decide(probes(master(), unrelated), new Set());
    const d = a.decide(probes(null, unrelated), new Set(['r1']));
    assert.equal(d.primary, 'p');
    assert.deepEqual(d.unfence, []);
  });
});

describe('PrimaryAuthority with an authority', () => {
  test('Sentinel (strict) names the primary: other masters are fenced, even promoted ones', () => {
    const a = new PrimaryAuthority(IDS, 'follow');
    a.designate('p', 'Sentinel', true);
    const d = a.decide(round({ p: 'down', r1: 'master', r2: 'p' }), new Set());
    assert.equal(d.primary, 'p');
    assert.deepEqual(
      d.fence.map((f) => f.id),
      ['r1'],
    );
    a.designate('r1', 'Sentinel', true);
    const after = a.decide(round({ p: 'down', r1: 'master', r2: 'r1' }), new Set(['r1']));
    assert.equal(after.primary, 'r1');
    assert.deepEqual(
      after.unfence.map((u) => u.id),
      ['r1'],
      'named by Sentinel: its fence is lifted',
    );
  });

  test("the controller's fence on the replaced primary is lifted only when it turns replica", () => {
    const a = new PrimaryAuthority(IDS, 'auto');
    a.decide(round({ p: 'master', r1: 'p', r2: 'p' }), new Set());
    a.claimFence('p');
    a.designate('r1', 'failover');
    const back = a.decide(round({ p: 'master', r1: 'master', r2: 'r1' }), new Set(['p']));
    assert.deepEqual(back.strays, ['p']);
    assert.deepEqual(back.unfence, []);
    const joined = a.decide(round({ p: 'r1', r1: 'master', r2: 'r1' }), new Set(['p']));
    assert.deepEqual(
      joined.unfence.map((u) => u.id),
      ['p'],
    );
  });
});

describe('PrimaryAuthority (off)', () => {
  test('the first configured node is the primary whatever the roles', () => {
    const a = new PrimaryAuthority(IDS, 'off');
    const d = a.decide(round({ p: 'r1', r1: 'master', r2: 'r1' }), new Set());
    assert.equal(d.primary, 'p');
    assert.equal(d.roles.get('p'), 'primary');
    assert.equal(d.roles.get('r1'), 'replica');
    assert.deepEqual(d.fence, []);
  });
});

test('sameHost: loopback spellings are one host', () => {
  assert.equal(sameHost('localhost', '127.0.0.1'), true);
  assert.equal(sameHost('10.0.0.1', '10.0.0.1'), true);
  assert.equal(sameHost('10.0.0.1', '10.0.0.2'), false);
  assert.equal(sameHost('localhost', null), false);
});
