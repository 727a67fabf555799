/**
 * The little of a `pg.Client` that the decision log and recovery use, so both run over
 * node-postgres in production and over fakes in unit tests. A `pg.Client` is one.
 */

/** One connection: simple or parameterised queries, closing, and its asynchronous errors. */
export interface SqlClient {
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
  end(): Promise<void>;
  /** a connection that dies while idle reports it here; without a listener node would crash */
  on(event: 'error', listener: (err: Error) => void): unknown;
}

/** Rejects with `onTimeout()` when `work` has not settled after `ms`; the timer never keeps the process up. */
export async function withTimeout<T>(work: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
    timer.unref();
  });
  try {
    return await Promise.race([work, expired]);
  } finally {
    clearTimeout(timer);
  }
}
