import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Classifier } from '../classifier/classify.js';
import { ClientBatch } from './client-batch.js';
import { ParsedFrame, queryNote } from './frame-note.js';
import { encodeParse, encodeQuery, SYNC } from '../protocol/index.js';
import { int16 } from '../protocol/test-support.js';
import { ClientStatements } from './statement-registry.js';

const classifier = new Classifier();

describe('ClientBatch', () => {
  test('each Query and Parse is classified once, when queued; other frames carry no note', () => {
    const batch = new ClientBatch(classifier);
    batch.push(encodeQuery('SELECT 1'));
    batch.push(encodeParse('s1', 'INSERT INTO t VALUES ($1)', int16(0)));
    batch.push(SYNC);
    assert.equal(queryNote(batch.notes[0]!).route, 'read');
    const parsed = batch.notes[1];
    assert.ok(parsed instanceof ParsedFrame);
    assert.equal(parsed.msg.statement, 's1');
    assert.equal(parsed.classification.route, 'write');
    assert.equal(batch.notes[2], null);
    assert.equal(
      batch.bytes,
      batch.frames.reduce((n, f) => n + f.length, 0),
    );
  });

  test('the route decision is kept until the batch changes', () => {
    const batch = new ClientBatch(classifier);
    const statements = new ClientStatements();
    batch.push(encodeQuery('SELECT 1'));
    const read = batch.route(statements, false);
    assert.equal(read.target, 'read');
    assert.equal(batch.route(statements, false), read);
    batch.push(encodeQuery('DELETE FROM t'));
    assert.equal(batch.route(statements, false).target, 'primary');
    batch.shift();
    assert.equal(batch.route(statements, false).target, 'primary');
    batch.replaceFirst(encodeQuery('SELECT 2'));
    assert.equal(batch.route(statements, false).target, 'read');
  });

  test('taken and peeked frames keep their contents when the batch moves on', () => {
    const batch = new ClientBatch(classifier);
    const a = encodeQuery('SELECT 1');
    const b = encodeQuery('SELECT 2');
    batch.push(a);
    batch.push(b);
    const peeked = batch.peek(5);
    const first = batch.take(1);
    assert.deepEqual(first.frames, [a]);
    assert.deepEqual(batch.frames, [b]);
    assert.equal(batch.bytes, b.length);
    assert.deepEqual(peeked.frames, [a, b]);
    batch.prepend(first);
    assert.deepEqual(batch.frames, [a, b]);
    assert.equal(batch.notes.length, 2);
    batch.clear();
    assert.equal(batch.length, 0);
    assert.equal(batch.bytes, 0);
  });
});
