/** `rwsplit restart`: asks a running instance for a graceful restart (POST /api/restart). */

export interface RestartCliOptions {
  http: string;
  token?: string;
}

/** The new process may take up to restart.startTimeoutMs (60 s by default) to serve. */
const REQUEST_TIMEOUT_MS = 120_000;

/**
 * Sends the request and prints the new process's pid once it serves (the old one drains on).
 * @throws Error with the server's message (the CLI exits 1) when refused or unreachable
 */
export async function runRestartCommand(opts: RestartCliOptions): Promise<void> {
  const token = opts.token ?? process.env.RWSPLIT_ADMIN_TOKEN;
  if (!token)
    throw new Error('restart needs the admin token: pass --token T or set RWSPLIT_ADMIN_TOKEN (admin.token)');
  let res: Response;
  try {
    res = await fetch(new URL('/api/restart', opts.http), {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (err) {
    throw new Error(
      `cannot reach rwsplit's admin server at ${opts.http} (${(err as Error).message}); is it running? pass --http URL`,
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
    throw new Error(`restart refused (HTTP ${res.status}) ${message}`);
  }
  const r = JSON.parse(text) as { pid: number; previousPid: number };
  console.log(
    `rwsplit restarted: pid ${r.pid} serves; pid ${r.previousPid} closes its clients between transactions, then exits`,
  );
}
