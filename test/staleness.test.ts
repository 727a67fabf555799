import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { nodeStates, startStack, waitFor, whereRuns, type Stack } from './support/stack.js';

describe('bounded staleness with a replica whose replay is paused', () => {
  let stack: Stack;
  const nodes = () => nodeStates(stack.httpPort);

  before(async () => {
    stack = await startStack({
      postgres: {
        staleness: { maxLagBytes: 1024 * 1024, maxLagMs: null, breachesToLeave: 2, samplesToReturn: 2 },
      },
    });
    const c = await stack.client();
    await c.query('CREATE TABLE filler (id int, pad text)');
    await stack.cluster.waitForReplication();
  });
  after(async () => stack?.stop());

  test('a paused replica past maxLagBytes gets no reads, and returns after resume', async () => {
    const [paused, other] = stack.cluster.replicas;
    const replica = await stack.direct(paused!.id);
    await replica.query('SELECT pg_wal_replay_pause()');
    const writer = await stack.client();
    await writer.query("INSERT INTO filler SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g");
    await waitFor(
      `${paused!.id} to be reported lagging`,
      async () => (await nodes()).find((n) => n.id === paused!.id)?.state === 'lagging',
    );
    const row = (await nodes()).find((n) => n.id === paused!.id)!;
    assert.ok(row.lagBytes! > 1024 * 1024, `lag ${row.lagBytes}`);

    const reader = await stack.client();
    for (let i = 0; i < 40; i++)
      assert.equal(await whereRuns(stack, reader), other!.id, 'reads avoid the lagging replica');

    await replica.query('SELECT pg_wal_replay_resume()');
    await waitFor(
      `${paused!.id} back in rotation`,
      async () => (await nodes()).find((n) => n.id === paused!.id)?.state === 'up',
    );
    const seen = new Set<string>();
    for (let i = 0; i < 10; i++) seen.add(await whereRuns(stack, reader));
    assert.ok(seen.has(paused!.id), 'the caught-up replica serves reads again');
  });

  test('when every replica lags, reads fall back to the primary', async () => {
    const replicas = await Promise.all(stack.cluster.replicas.map((r) => stack.direct(r.id)));
    for (const r of replicas) await r.query('SELECT pg_wal_replay_pause()');
    const writer = await stack.client();
    await writer.query("INSERT INTO filler SELECT g, repeat('y', 200) FROM generate_series(1, 20000) g");
    await waitFor(
      'both replicas lagging',
      async () => (await nodes()).filter((n) => n.state === 'lagging').length === 2,
    );
    const reader = await stack.client();
    assert.equal(await whereRuns(stack, reader), stack.cluster.primary.id);
    for (const r of replicas) await r.query('SELECT pg_wal_replay_resume()');
    await waitFor('replicas back', async () => (await nodes()).every((n) => n.state === 'up'));
  });
});
