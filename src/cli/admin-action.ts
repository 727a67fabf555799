/** The commands that ask a running instance for an admin action (POST with admin.token). */

/** Where the running instance's admin server is, and its token. */
export interface AdminTarget {
  http: string;
  token?: string;
}

/**
 * POSTs `body` (if any) to `path` and returns the parsed JSON answer.
 * @throws Error naming what to change (the CLI exits 1): no token, unreachable, or refused
 *   with the server's own code and message
 */
export async function postAdminAction<T>(
  target: AdminTarget,
  action: string,
  path: string,
  body: Record<string, string> | null,
  timeoutMs: number,
): Promise<T> {
  const token = target.token ?? process.env.RWSPLIT_ADMIN_TOKEN;
  if (!token)
    throw new Error(
      `${action} needs the admin token: pass --token T or set RWSPLIT_ADMIN_TOKEN (admin.token)`,
    );
  let res: Response;
  try {
    res = await fetch(new URL(path, target.http), {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        ...(body ? { 'content-type': 'application/json' } : {}),
      },
      ...(body ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    throw new Error(
      `cannot reach rwsplit's admin server at ${target.http} (${(err as Error).message}); is it running? pass --http URL`,
    );
  }
  const text = await res.text();
  if (!res.ok) {
    let message = text;
    try {
      const e = JSON.parse(text) as { error?: string; message?: string };
      message = `${e.error ?? res.status}: ${e.message ?? text}`;
    } catch {
      // not JSON: print it as it came
    }
    throw new Error(`${action} refused (HTTP ${res.status}) ${message}`);
  }
  return JSON.parse(text) as T;
}
