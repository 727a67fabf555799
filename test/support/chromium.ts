/**
 * Debian's headless Chromium for the tests that open the dashboard (through playwright-core):
 * installed when missing (apt-get as root, as the demo does for PostgreSQL), then launched with
 * a throw-away profile.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];

/** Installs Debian's chromium when it is missing. */
export function ensureChromium(): void {
  if (existsSync(CHROMIUM)) return;
  const r = spawnSync('bash', ['scripts/ensure-system-deps.sh', 'chromium'], { stdio: 'inherit' });
  if (r.status !== 0 || !existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} is missing and could not be installed: apt-get install chromium`);
}

/** A headless browser with its own profile directory; `close` removes both. */
export async function launchChromium(): Promise<{
  context: BrowserContext;
  profile: string;
  close(): Promise<void>;
}> {
  ensureChromium();
  const profile = mkdtempSync(path.join(os.tmpdir(), 'rwsplit-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 1280, height: 1000 },
  });
  return {
    context,
    profile,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
