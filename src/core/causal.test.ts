import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { advanceToken, CausalTokenError, formatPgToken, parsePgToken, ReplayPositions } from './causal.js';
import { Topology } from './topology.js';

describe('causal tokens', () => {
  test('format and parse round-trip, several shards', () => {
    const t = new Map([
      ['default', 0x3000148n],
      ['s2', (0x1n << 32n) | 0x16b3a18n],
    ]);
    const text = formatPgToken(t);
    assert.equal(text, 'v1:default@0/3000148,s2@1/16B3A18');
    assert.deepEqual(parsePgToken(text, 'default'), t);
  });

  test('a bare LSN applies to the default shard; empty text is no token', () => {
    assert.deepEqual(parsePgToken(' 0/16B3A18 ', 'default'), new Map([['default', 0x16b3a18n]]));
    assert.equal(parsePgToken('', 'default').size, 0);
  });

  test('malformed tokens are refused with the expected format in the message', () => {
    for (const bad of ['garbage', 'v1:default', 'v1:@0/1', 'v1:default@0/XYZ', '0/', '1/2/3']) {
      assert.throws(
        () => parsePgToken(bad, 'default'),
        (err: Error) => {
          assert.ok(err instanceof CausalTokenError, bad);
          assert.match(err.message, /v1:default@0\/3000148/);
          return true;
        },
      );
    }
  });

  test('tokens only move forward', () => {
    const t = new Map<string, bigint>();
    advanceToken(t, 'a', 10n);
    advanceToken(t, 'a', 5n);
    assert.equal(t.get('a'), 10n);
    advanceToken(t, 'a', 11n);
    assert.equal(t.get('a'), 11n);
  });
});

describe('ReplayPositions', () => {
  const spec = (id: string) => ({
    id,
    kind: 'postgres' as const,
    shard: 'default',
    host: 'h',
    port: 1,
    weight: 1,
  });

  test('known position: the higher of the monitor probe and confirmed checks', () => {
    const topo = new Topology([spec('p'), spec('r')]);
    const replay = new ReplayPositions(topo);
    const r = topo.get('r')!;
    assert.equal(replay.known(r), -1n);
    r.position = '0/100';
    assert.equal(replay.known(r), 0x100n);
    replay.confirm('r', 0x200n);
    assert.equal(replay.known(r), 0x200n);
    r.position = '0/300';
    assert.equal(replay.known(r), 0x300n);
    replay.confirm('r', 0x250n);
    assert.equal(replay.known(r), 0x300n);
  });

  test('a node that goes down or changes role forgets confirmed positions', () => {
    const topo = new Topology([spec('p'), spec('r')]);
    const replay = new ReplayPositions(topo);
    const r = topo.get('r')!;
    replay.confirm('r', 0x500n);
    topo.markDown('r', 'test');
    assert.equal(replay.known(r), -1n);
  });
});
