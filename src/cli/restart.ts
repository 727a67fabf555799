/** `rwsplit restart`: asks a running instance for a graceful restart (POST /api/restart). */
import { postAdminAction, type AdminTarget } from './admin-action.js';

export type RestartCliOptions = AdminTarget;

/** The new process may take up to restart.startTimeoutMs (60 s by default) to serve. */
const REQUEST_TIMEOUT_MS = 120_000;

/**
 * Sends the request and prints the new process's pid once it serves (the old one drains on).
 * @throws Error with the server's message (the CLI exits 1) when refused or unreachable
 */
export async function runRestartCommand(opts: RestartCliOptions): Promise<void> {
  const r = await postAdminAction<{ pid: number; previousPid: number }>(
    opts,
    'restart',
    '/api/restart',
    null,
    REQUEST_TIMEOUT_MS,
  );
  console.log(
    `rwsplit restarted: pid ${r.pid} serves; pid ${r.previousPid} hands its clients over between transactions, then exits`,
  );
}
