/**
 * Short-lived `pg` connections to one node of a local cluster, for readiness checks and the
 * launcher's own queries. Each call opens and closes its own connection: the launcher runs a
 * handful of queries, and a pooled connection would outlive a killed node.
 */
import pg from 'pg';

/** Where and how to connect: always user `postgres`, database `postgres`, over TCP. */
export interface SqlTarget {
  host: string;
  port: number;
  password: string | undefined;
}

/** Opens a connection, runs `fn`, closes the connection whatever happens. */
export async function withClient<T>(
  target: SqlTarget,
  fn: (client: pg.Client) => Promise<T>,
  connectTimeoutMs = 2000,
): Promise<T> {
  const client = new pg.Client({
    host: target.host,
    port: target.port,
    user: 'postgres',
    database: 'postgres',
    password: target.password,
    connectionTimeoutMillis: connectTimeoutMs,
    application_name: 'rwsplit-cluster-launcher',
  });
  // A node killed mid-query emits 'error' on the client; the failed query already rejects.
  client.on('error', () => {});
  try {
    await client.connect();
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/** Runs one query and returns its rows. */
export async function queryRows<R extends pg.QueryResultRow>(
  target: SqlTarget,
  text: string,
  values: unknown[] = [],
): Promise<R[]> {
  return withClient(target, async (client) => (await client.query<R>(text, values)).rows);
}
