import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Topology } from '../../core/topology.js';
import type { ReplicationInfo } from '../ha/replication-info.js';
import { rwsplitCommand } from './rwsplit-command.js';
import { SessionCausal } from './session-causal.js';
import { newest } from '../ha/sentinel-follower.js';

const A = 'a'.repeat(40);
const topology = new Topology([
  { id: 'p', kind: 'redis', shard: 's1', host: '127.0.0.1', port: 1, weight: 1 },
  { id: 'r', kind: 'redis', shard: 's1', host: '127.0.0.1', port: 2, weight: 1 },
]);
const P = topology.get('p')!;

function primaryAt(offset: number): ReplicationInfo {
  return {
    role: 'master',
    replid: A,
    replid2: '0'.repeat(40),
    secondOffset: -1,
    offset,
    linkUp: true,
    masterHost: null,
    masterPort: null,
    connectedReplicas: 1,
  };
}

describe('SessionCausal', () => {
  test("a write without its position yet pins the shard's reads to its node", () => {
    const c = new SessionCausal('read-your-writes');
    c.beginWrite(0, P);
    assert.deepEqual(c.pin(0), { node: P });
    assert.equal(c.pin(1), null);
    let settled = false;
    c.whenSettled(() => (settled = true));
    assert.equal(settled, false);
    c.endWrite(0, primaryAt(42), true);
    assert.equal(settled, true);
    assert.equal(c.pin(0), null);
    assert.deepEqual(c.token.forShard(0), [{ replid: A, offset: 42 }]);
  });

  test('an acknowledged write whose position never came makes the shard unknown until the primary answers', () => {
    const c = new SessionCausal('read-your-writes');
    c.beginWrite(0, P);
    c.endWrite(0, null, true);
    assert.equal(c.pin(0), 'primary');
    assert.deepEqual(c.unknownShards(), [0]);
    c.resolve(0, primaryAt(50));
    assert.equal(c.pin(0), null);
    assert.deepEqual(c.token.forShard(0), [{ replid: A, offset: 50 }]);
  });

  test('a write that failed leaves nothing to wait for', () => {
    const c = new SessionCausal('read-your-writes');
    c.beginWrite(0, P);
    c.endWrite(0, null, false);
    assert.equal(c.pin(0), null);
  });

  test('levels without a token keep none until asked; then earlier writes are unknown', () => {
    const c = new SessionCausal('bounded');
    assert.equal(c.tracking, false);
    c.beginWrite(0, P);
    assert.equal(c.pin(0), null);
    c.wantToken();
    assert.equal(c.tracking, true);
    assert.deepEqual(c.unknownShards(), [0]);
  });

  test('switching to read-your-writes marks earlier writes unknown', () => {
    const c = new SessionCausal('eventual');
    c.beginWrite(1, P);
    c.level = 'read-your-writes';
    assert.equal(c.pin(1), 'primary');
  });
});

describe('RWSPLIT command', () => {
  const names = ['s1', 's2'];
  const reply = (c: SessionCausal, ...args: string[]): string => {
    const a = rwsplitCommand(
      ['RWSPLIT', ...args].map((x) => Buffer.from(x)),
      c,
      names,
    );
    return 'reply' in a ? a.reply.toString() : 'TOKEN-LATER';
  };

  test('CONSISTENCY get and set', () => {
    const c = new SessionCausal('read-your-writes');
    assert.equal(reply(c, 'CONSISTENCY'), '$16\r\nread-your-writes\r\n');
    assert.equal(reply(c, 'consistency', 'STRONG'), '+OK\r\n');
    assert.equal(c.level, 'strong');
    assert.match(
      reply(c, 'CONSISTENCY', 'linearizable'),
      /^-ERR unknown consistency level 'linearizable': use eventual, bounded, read-your-writes, strong/,
    );
  });

  test('TOKEN get is answered later; TOKEN <t> adopts or says the format', () => {
    const c = new SessionCausal('read-your-writes');
    assert.equal(reply(c, 'TOKEN'), 'TOKEN-LATER');
    assert.equal(reply(c, 'TOKEN', `r1:s2=9@${A}`), '+OK\r\n');
    assert.deepEqual(c.token.forShard(1), [{ replid: A, offset: 9 }]);
    assert.match(
      reply(c, 'TOKEN', 'garbage'),
      /^-ERR malformed causal token: expected r1:<shard>=<offset>@<40-hex replid>/,
    );
    assert.match(reply(c, 'NOPE'), /^-ERR unknown RWSPLIT subcommand 'nope'/);
  });
});

describe('Sentinel answers', () => {
  test('the highest config-epoch wins; within it, the address most Sentinels give', () => {
    const old = { host: '127.0.0.1', port: 1, epoch: 0 };
    const leaderBeforeSwitch = { host: '127.0.0.1', port: 1, epoch: 1 };
    const switched = { host: '127.0.0.1', port: 2, epoch: 1 };
    assert.equal(newest([old, null, old]), old);
    assert.equal(newest([old, switched, old]), switched);
    assert.equal(newest([leaderBeforeSwitch, switched, switched]), switched);
    assert.equal(newest([null, null]), null);
  });
});
