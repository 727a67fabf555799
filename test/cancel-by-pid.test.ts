/**
 * pg_cancel_backend / pg_terminate_backend through rwsplit, compared with the same steps on a
 * server directly. Under transaction pooling the session to reach may run on any node: a
 * query's pid (from pg_stat_activity) is looked for where it lives, a statement that takes its
 * pids from pg_stat_activity runs on every node of the shard, and the pid rwsplit hands out in
 * BackendKeyData reaches that session's real backend (a LISTEN session) or the session itself.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { nodeStates, startStack, waitFor, type Stack } from './support/stack.js';

type Protocol = 'simple' | 'extended';

interface Outcome {
  code: string | undefined;
  message: string;
}

/** Runs a query, forcing the extended protocol (Parse/Bind/Execute) when asked, even without parameters. */
function run<R extends pg.QueryResultRow>(
  c: pg.Client,
  protocol: Protocol,
  text: string,
): Promise<pg.QueryResult<R>> {
  if (protocol === 'simple') return c.query<R>(text);
  return c.query<R>({ text, queryMode: 'extended' } as pg.QueryConfig);
}

/** Starts a long sleep tagged `tag` (in its text, for pg_stat_activity); resolves with how it ended. */
function sleeper(c: pg.Client, protocol: Protocol, tag: string): Promise<Outcome> {
  const text = `SELECT pg_sleep(60) AS slept, '${tag}' AS tag`;
  return run(c, protocol, text).then(
    () => ({ code: 'none', message: 'the sleep was not cancelled' }),
    (err: pg.DatabaseError) => ({ code: err.code, message: err.message }),
  );
}

/** How a client that sends nothing learns its end: the server's FATAL, as an error event. */
function ending(c: pg.Client): Promise<Outcome> {
  return new Promise((resolve) =>
    c.once('error', (err: pg.DatabaseError) => resolve({ code: err.code, message: err.message })),
  );
}

describe('cancelling and terminating sessions by pid', () => {
  let stack: Stack;
  /** direct connections to every node, to find a tagged query the way an operator would */
  let direct: Map<string, pg.Client>;

  before(async () => {
    stack = await startStack();
    direct = new Map();
    for (const n of stack.cluster.nodes) direct.set(n.id, await stack.direct(n.id));
  });
  after(async () => stack?.stop());

  /** Where the query tagged `tag` runs (node id and server pid), once it shows in pg_stat_activity. */
  async function find(tag: string): Promise<{ node: string; pid: number }> {
    let found: { node: string; pid: number } | null = null;
    await waitFor(`query ${tag} in pg_stat_activity`, async () => {
      for (const [node, c] of direct) {
        const r = await c.query<{ pid: number }>(
          `SELECT pid FROM pg_stat_activity WHERE query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid() AND state = 'active'`,
          [`'${tag}' AS tag`],
        );
        if (r.rows.length > 0) found = { node, pid: r.rows[0]!.pid };
      }
      return found !== null;
    });
    return found!;
  }

  let directCancel: Outcome;
  test('direct: a cancelled sleep ends with 57014 (the reference)', async () => {
    const replica = stack.cluster.nodes[1]!;
    const a = await stack.direct(replica.id);
    const outcome = sleeper(a, 'simple', 'direct-sleep');
    const { pid } = await find('direct-sleep');
    const r = await direct.get(replica.id)!.query(`SELECT pg_cancel_backend(${pid})`);
    assert.deepEqual(r.rows, [{ pg_cancel_backend: true }]);
    directCancel = await outcome;
    assert.equal(directCancel.code, '57014');
  });

  for (const protocol of ['simple', 'extended'] as const) {
    test(`${protocol}: a read sleeping on a replica, cancelled by the pid pg_stat_activity shows`, async () => {
      const a = await stack.client();
      const b = await stack.client();
      const tag = `fanout-${protocol}`;
      const outcome = sleeper(a, protocol, tag);
      const where = await find(tag);
      assert.notEqual(where.node, 'pg-primary', 'an autocommit read runs on a replica');
      // The operator's statement: its pids come from pg_stat_activity, so it runs on every node.
      const r = await b.query<{ cancelled: boolean }>(
        `SELECT pg_cancel_backend(pid) AS cancelled FROM pg_stat_activity
          WHERE query LIKE '%${tag}'' AS tag%' AND pid <> pg_backend_pid()`,
      );
      assert.deepEqual(r.rows, [{ cancelled: true }], 'one row: the one backend running the query');
      assert.deepEqual(await outcome, directCancel);
    });

    test(`${protocol}: a read sleeping on a replica, cancelled by a literal pid`, async () => {
      const a = await stack.client();
      const b = await stack.client();
      const tag = `literal-${protocol}`;
      const outcome = sleeper(a, 'simple', tag);
      const { pid } = await find(tag);
      const r = await run<{ pg_cancel_backend: boolean }>(b, protocol, `SELECT pg_cancel_backend(${pid})`);
      assert.deepEqual(r.rows, [{ pg_cancel_backend: true }]);
      assert.deepEqual(await outcome, directCancel);
    });

    test(`${protocol}: a query cancelled by the pid rwsplit handed out (BackendKeyData)`, async () => {
      const a = await stack.client();
      const b = await stack.client();
      const tag = `handed-${protocol}`;
      const outcome = sleeper(a, 'extended', tag);
      await find(tag);
      const handed = (a as unknown as { processID: number }).processID;
      const r = await run<{ pg_cancel_backend: boolean }>(b, protocol, `SELECT pg_cancel_backend(${handed})`);
      assert.deepEqual(r.rows, [{ pg_cancel_backend: true }]);
      assert.deepEqual(await outcome, directCancel);
    });
  }

  test('a LISTEN session terminated by the pid rwsplit handed out: its real backend ends, and so does the client', async () => {
    // Direct, the reference.
    const listenerDirect = await stack.direct('pg-primary');
    await listenerDirect.query('LISTEN news');
    const directEnd = ending(listenerDirect);
    const pidDirect = (listenerDirect as unknown as { processID: number }).processID;
    const rd = await direct.get('pg-primary')!.query(`SELECT pg_terminate_backend(${pidDirect})`);
    assert.deepEqual(rd.rows, [{ pg_terminate_backend: true }]);
    const expected = await directEnd;
    assert.equal(expected.code, '57P01');

    const listener = await stack.client();
    await listener.query('LISTEN news');
    const realPid = (await listener.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const handed = (listener as unknown as { processID: number }).processID;
    assert.notEqual(handed, realPid);
    const end = ending(listener);
    const b = await stack.client();
    const r = await run<{ pg_terminate_backend: boolean }>(
      b,
      'extended',
      `SELECT pg_terminate_backend(${handed})`,
    );
    assert.deepEqual(r.rows, [{ pg_terminate_backend: true }]);
    assert.deepEqual(await end, expected);
    await waitFor('the LISTEN backend gone from pg_stat_activity', async () => {
      const left = await direct
        .get('pg-primary')!
        .query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [realPid]);
      return left.rows.length === 0;
    });
    // A terminated session is not a failed server: every node stays in rotation.
    const states = await nodeStates(stack.httpPort);
    assert.deepEqual(
      states.map((n) => n.state),
      states.map(() => 'up'),
    );
  });

  test('an idle session terminated by the pid rwsplit handed out ends like a server session', async () => {
    const idle = await stack.client();
    const end = ending(idle);
    const handed = (idle as unknown as { processID: number }).processID;
    const b = await stack.client();
    const r = await b.query(`SELECT pg_terminate_backend(${handed})`);
    assert.deepEqual(r.rows, [{ pg_terminate_backend: true }]);
    assert.deepEqual(await end, {
      code: '57P01',
      message: 'terminating connection due to administrator command',
    });
    await assert.rejects(idle.query('SELECT 1'));
  });
});
