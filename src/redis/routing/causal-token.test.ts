import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  CausalToken,
  CausalTokenError,
  covers,
  excludes,
  MAX_POSITIONS_PER_SHARD,
  parseCausalToken,
  type HistoryPosition,
} from './causal-token.js';

const A = 'a'.repeat(40);
const B = 'b'.repeat(40);
const C = 'c'.repeat(40);
const NONE = '0'.repeat(40);
const NAMES = ['s1', 's2'];

const at = (replid: string, offset: number, replid2 = NONE, secondOffset = -1): HistoryPosition => ({
  replid,
  replid2,
  offset,
  secondOffset,
});

describe('covers: has a node applied a position?', () => {
  test('same history: offset at or past', () => {
    assert.equal(covers(at(A, 100), { replid: A, offset: 100 }), true);
    assert.equal(covers(at(A, 99), { replid: A, offset: 100 }), false);
  });

  test("a history that continues the token's up to second_repl_offset", () => {
    // promoted at offset 1000: second_repl_offset is 1001, bytes 1..1000 are shared
    const promoted = at(B, 1500, A, 1001);
    assert.equal(covers(promoted, { replid: A, offset: 1000 }), true);
    assert.equal(covers(promoted, { replid: A, offset: 1001 }), false, 'written after the branch: lost');
  });

  test("an unrelated history never qualifies, whatever its offset (the dead primary's replica)", () => {
    assert.equal(covers(at(A, 5000), { replid: B, offset: 10 }), false);
    assert.equal(covers(at(C, 5000, A, 10), { replid: B, offset: 10 }), false);
  });

  test('excludes: the primary branched off before the position', () => {
    assert.equal(excludes(at(B, 2000, A, 1001), { replid: A, offset: 1200 }), true);
    assert.equal(excludes(at(B, 2000, A, 1001), { replid: A, offset: 900 }), false);
    assert.equal(excludes(at(B, 2000, A, 1001), { replid: C, offset: 900 }), false);
  });
});

describe('CausalToken', () => {
  test('a write position replaces the ones it covers; max within a history', () => {
    const t = new CausalToken();
    assert.equal(t.format(NAMES), null);
    t.recordWrite(0, at(A, 100));
    t.recordWrite(0, at(A, 250));
    t.recordWrite(0, at(A, 200)); // an older position arriving late does not go back
    assert.deepEqual(t.forShard(0), [{ replid: A, offset: 250 }]);
    t.recordWrite(1, at(B, 7));
    assert.equal(t.format(NAMES), `r1:s1=250@${A},s2=7@${B}`);
  });

  test("after a failover, the new primary's position covers the old history's below the branch", () => {
    const t = new CausalToken();
    t.recordWrite(0, at(A, 900));
    t.recordWrite(0, at(B, 1100, A, 1001));
    assert.deepEqual(t.forShard(0), [{ replid: B, offset: 1100 }]);
  });

  test('a position lost in a failover is dropped; one from an unknown history is kept', () => {
    const t = new CausalToken();
    t.recordWrite(0, at(A, 1200)); // written on the old primary after the branch point
    t.adopt(new Map([[0, [{ replid: C, offset: 5 }]]]));
    t.recordWrite(0, at(B, 1100, A, 1001));
    assert.deepEqual(t.forShard(0), [
      { replid: C, offset: 5 },
      { replid: B, offset: 1100 },
    ]);
  });

  test('text form round trip, several histories per shard', () => {
    const t = new CausalToken();
    t.recordWrite(0, at(A, 12345));
    t.adopt(
      new Map([
        [0, [{ replid: B, offset: 3 }]],
        [1, [{ replid: C, offset: 678 }]],
      ]),
    );
    const text = t.format(NAMES)!;
    assert.equal(text, `r1:s1=12345@${A},s1=3@${B},s2=678@${C}`);
    const back = new CausalToken();
    back.adopt(parseCausalToken(text, NAMES));
    assert.equal(back.format(NAMES), text);
  });

  test('adopting keeps the larger offset of one history', () => {
    const t = new CausalToken();
    t.recordWrite(0, at(A, 500));
    t.adopt(parseCausalToken(`r1:s1=400@${A}`, NAMES));
    assert.deepEqual(t.forShard(0), [{ replid: A, offset: 500 }]);
    t.adopt(parseCausalToken(`r1:s1=600@${A}`, NAMES));
    assert.deepEqual(t.forShard(0), [{ replid: A, offset: 600 }]);
  });

  test(`more than ${MAX_POSITIONS_PER_SHARD} histories for one shard are refused`, () => {
    const t = new CausalToken();
    const many = ['1', '2', '3', '4', '5'].map((d) => ({ replid: d.repeat(40), offset: 1 }));
    assert.throws(() => t.adopt(new Map([[0, many]])), CausalTokenError);
  });
});

describe('parseCausalToken', () => {
  test('malformed tokens say the expected format', () => {
    for (const bad of [
      '',
      'x',
      'r1:',
      'r2:s1=1@' + A,
      'r1:s1=1',
      'r1:s1=-1@' + A,
      'r1:s1=1@' + A.slice(1),
      'r1:s1=1@' + A + ',',
    ]) {
      assert.throws(
        () => parseCausalToken(bad, NAMES),
        (e: Error) => {
          assert.ok(e instanceof CausalTokenError);
          assert.match(e.message, /expected r1:<shard>=<offset>@<40-hex replid>/);
          return true;
        },
        bad,
      );
    }
  });

  test('an unknown shard is named', () => {
    assert.throws(() => parseCausalToken(`r1:s9=1@${A}`, NAMES), /shard 's9'.*shards: s1, s2/);
  });

  test('shard names may contain colons', () => {
    const parsed = parseCausalToken(`r1:eu:1=42@${A}`, ['eu:1']);
    assert.deepEqual(parsed.get(0), [{ replid: A, offset: 42 }]);
  });
});
