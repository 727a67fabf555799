/** Polling with a deadline, for the chaos harness. */
import { setTimeout as delay } from 'node:timers/promises';

/**
 * Polls `check` every `intervalMs` until it resolves undefined (ready) or the time runs out.
 * A string is why it is not ready yet (named in the timeout error); a throw ends the wait.
 *
 * @throws Error naming `what` and the last reason when the deadline passes.
 */
export async function waitUntil(
  what: string,
  timeoutMs: number,
  check: () => Promise<string | undefined>,
  intervalMs = 200,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'not checked yet';
  while (Date.now() < deadline) {
    const notYet = await check();
    if (notYet === undefined) return;
    last = notYet;
    await delay(intervalMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last})`);
}
