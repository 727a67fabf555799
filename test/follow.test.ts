import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { nodeStates, startStack, waitFor, whereRuns, type Stack } from './support/stack.js';

/**
 * Roles are observed, not configured: when something else promotes a replica (Patroni, an
 * operator), rwsplit follows; when the old primary comes back as a primary on an older
 * timeline, it is fenced and gets no traffic (no split brain through the proxy).
 */
describe('following a promotion made elsewhere, and fencing the old primary', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack();
    const c = await stack.client();
    await c.query('CREATE TABLE notes (id serial PRIMARY KEY, port int)');
    await stack.cluster.waitForReplication();
  });
  after(async () => stack?.stop());

  test('writes follow the promoted replica; the restarted old primary is fenced', async () => {
    const [old, promoted] = [stack.cluster.primary, stack.cluster.replicas[0]!];
    await stack.cluster.kill(old.id);
    const d = await stack.direct(promoted.id);
    await d.query('SELECT pg_promote()');

    const writer = await stack.client();
    const insert =
      'INSERT INTO notes (port) VALUES (inet_server_port()) RETURNING inet_server_port() AS port';
    let landed = '';
    await waitFor('a write through the proxy to reach the promoted node', async () => {
      landed = await whereRuns(stack, writer, insert).catch(() => '');
      return landed === promoted.id;
    });

    await stack.cluster.restart(old.id); // back as a primary, on the old timeline
    await waitFor(
      `${old.id} fenced`,
      async () => (await nodeStates(stack.httpPort)).find((n) => n.id === old.id)?.state === 'fenced',
    );
    for (let i = 0; i < 20; i++)
      assert.equal(await whereRuns(stack, writer, insert), promoted.id, 'no write reaches the fenced node');
    const events = (await (await fetch(`http://127.0.0.1:${stack.httpPort}/api/events`)).json()) as {
      node: string;
      type: string;
    }[];
    assert.ok(
      events.some((e) => e.node === old.id && e.type === 'fenced'),
      'the fencing is in the event log',
    );
    assert.ok(
      events.some((e) => e.node === promoted.id && e.type === 'role-change'),
      'the promotion is in the event log',
    );
  });
});
