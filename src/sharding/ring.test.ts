import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ShardingError } from './errors.js';
import { JumpRing } from './jump.js';
import { KetamaRing } from './ketama.js';
import { RendezvousRing } from './rendezvous.js';
import { createRing, type RingKind } from './ring.js';

const SERVERS = [
  { name: 'a', weight: 1 },
  { name: 'b', weight: 1 },
];

function code(c: string): (e: unknown) => boolean {
  return (e) => e instanceof ShardingError && e.code === c;
}

describe('createRing', () => {
  test('builds each kind, defaulting to twemproxy’s fnv1a_64', () => {
    const ketama = createRing('ketama', SERVERS);
    assert.ok(ketama instanceof KetamaRing);
    assert.equal(ketama.hash, 'fnv1a_64');
    assert.ok(createRing('jump', SERVERS, { hash: 'md5' }) instanceof JumpRing);
    assert.ok(createRing('rendezvous', SERVERS) instanceof RendezvousRing);
    for (const kind of ['ketama', 'jump', 'rendezvous'] as const) {
      const ring = createRing(kind, SERVERS);
      assert.equal(ring.size, 2);
      const index = ring.locate(Buffer.from('k'));
      assert.ok(index === 0 || index === 1);
    }
  });

  test('jump refuses unequal weights instead of ignoring them', () => {
    assert.throws(
      () =>
        createRing('jump', [
          { name: 'a', weight: 1 },
          { name: 'b', weight: 2 },
        ]),
      code('WEIGHTS_UNSUPPORTED'),
    );
    assert.throws(() => createRing('jump', []), code('NO_SERVERS'));
  });

  test('unknown kinds and hashes are refused', () => {
    assert.throws(() => createRing('modula' as RingKind, SERVERS), code('BAD_RING_KIND'));
    assert.throws(() => createRing('ketama', SERVERS, { hash: 'murmur' as 'md5' }), code('BAD_HASH'));
  });
});
