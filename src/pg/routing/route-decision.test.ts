import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Classifier } from '../classifier/classify.js';
import { encodeParse, SYNC } from '../protocol/index.js';
import { cstr, int16, typedFrame } from '../protocol/test-support.js';
import { ClientBatch } from '../session/client-batch.js';
import type { RouteDecision } from './route-decision.js';
import { ClientStatements, statementKey } from '../session/statement-registry.js';

const classifier = new Classifier();
const NO_TYPES = int16(0);

/** Bind of `statement` to the unnamed portal, no parameters, text results. */
function bind(statement: string): Buffer {
  return typedFrame('B', cstr(''), cstr(statement), int16(0), int16(0), int16(0));
}

function execute(): Buffer {
  return typedFrame('E', cstr(''), Buffer.from([0, 0, 0, 0]));
}

function registered(name: string, query: string): ClientStatements {
  const statements = new ClientStatements();
  statements.set(name, {
    key: statementKey(query, NO_TYPES),
    query,
    paramTypes: NO_TYPES,
    classification: classifier.classify(query),
    epoch: 0,
  });
  return statements;
}

/** The decision for `frames` queued as a session queues them (each noted on arrival). */
function decideRoute(frames: Buffer[], statements: ClientStatements, deferredBegin: boolean): RouteDecision {
  const batch = new ClientBatch(classifier);
  for (const f of frames) batch.push(f);
  return batch.route(statements, deferredBegin);
}

describe('decideRoute with the extended protocol', () => {
  test('a Bind of the unnamed statement follows the Parse of the same batch, not the previous query', () => {
    // What drivers send: every parameterised query re-Parses the unnamed statement.
    const statements = registered('', 'UPDATE t SET v = $1 WHERE id = $2');
    const read = [encodeParse('', 'SELECT v FROM t WHERE id = $1', NO_TYPES), bind(''), execute(), SYNC];
    assert.equal(decideRoute(read, statements, false).target, 'read');
    const write = [encodeParse('', 'DELETE FROM t WHERE id = $1', NO_TYPES), bind(''), execute(), SYNC];
    assert.equal(decideRoute(write, registered('', 'SELECT 1'), false).target, 'primary');
  });

  test('a Bind alone uses the statement the client prepared earlier', () => {
    const statements = registered('s1', 'INSERT INTO t VALUES ($1)');
    assert.equal(decideRoute([bind('s1'), execute(), SYNC], statements, false).target, 'primary');
    const reads = registered('s2', 'SELECT 1');
    assert.equal(decideRoute([bind('s2'), execute(), SYNC], reads, false).target, 'read');
  });
});
