/**
 * End to end in a real browser: Debian's headless Chromium (through playwright-core) opens
 * the dashboard of a running stack under load, sees every node and the charts move, and
 * after `kill -9` of a replica sees it shown as down and the event in the timeline.
 * With RWSPLIT_UPDATE_SCREENSHOT=1 it rewrites docs/dashboard.png (the screenshot README
 * shows); otherwise the screenshot goes to a temporary file, so a test run leaves the tree as it was.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type pg from 'pg';
import type { Page } from 'playwright-core';
import { launchChromium } from './support/chromium.js';
import { startStack, waitFor, type Stack } from './support/stack.js';

/** Clients running SELECTs (reads, on the replicas) and a few INSERTs (writes) until stopped. */
function startLoad(clients: pg.Client[]): () => Promise<void> {
  let running = true;
  const loops = clients.map(async (c, i) => {
    while (running) {
      try {
        if (i === 0) await c.query('INSERT INTO dash_load (at) VALUES (now())');
        else await c.query('SELECT count(*) FROM pg_class');
      } catch {
        await new Promise((r) => setTimeout(r, 50)); // a replica was killed: the next read goes elsewhere
      }
      await new Promise((r) => setTimeout(r, i === 0 ? 20 : 2));
    }
  });
  return async () => {
    running = false;
    await Promise.all(loops);
  };
}

describe('dashboard in headless Chromium', () => {
  let stack: Stack;
  let browser: Awaited<ReturnType<typeof launchChromium>> | undefined;
  let page: Page;
  let profile: string;
  let stopLoad: (() => Promise<void>) | null = null;

  before(async () => {
    stack = await startStack();
    const setup = await stack.client();
    await setup.query('CREATE TABLE dash_load (id serial PRIMARY KEY, at timestamptz)');
    await stack.cluster.waitForReplication();
    stopLoad = startLoad(await Promise.all([1, 2, 3].map(() => stack.client())));
    browser = await launchChromium();
    profile = browser.profile;
    page = await browser.context.newPage();
  });
  after(async () => {
    await stopLoad?.();
    await stack?.stop();
    await browser?.close();
  });

  test('shows every node, moving charts, and a killed replica as down with its event', async () => {
    await page.goto(`http://127.0.0.1:${stack.httpPort}/`);
    for (const n of stack.cluster.nodes)
      await page.waitForSelector(`.node[data-node="${n.id}"][data-state="up"]`, { timeout: 5000 });
    assert.equal(await page.locator('.node').count(), stack.cluster.nodes.length);
    assert.equal(await page.locator('.chart canvas').count(), 4, 'four charts are drawn');

    // The charts move: new samples arrive and a replica's reads/s shows traffic.
    const replica = stack.cluster.replicas[0]!.id;
    const charts = page.locator('#charts');
    const points = async (): Promise<number> => Number(await charts.getAttribute('data-points'));
    await waitFor('two chart points', async () => (await points()) >= 2, 5000);
    const first = await charts.getAttribute('data-sample-at');
    const reads = page.locator(`.node[data-node="${replica}"] dd[data-field="reads/s"]`);
    await waitFor(`reads/s of ${replica} above 0`, async () => Number(await reads.textContent()) > 0, 5000);
    await waitFor('a new sample', async () => (await charts.getAttribute('data-sample-at')) !== first, 3000);
    // A few seconds of history, for the screenshot.
    await waitFor('six chart points', async () => (await points()) >= 6, 8000);

    await stack.cluster.kill(replica);
    // The bound: shown as down, with its event, within 3 s of the kill.
    await page.waitForSelector(`.node[data-node="${replica}"][data-state="down"]`, { timeout: 3000 });
    await page.waitForSelector(`tr[data-type="down"][data-node="${replica}"]`, { timeout: 1000 });
    const row = await page.locator(`tr[data-type="down"][data-node="${replica}"]`).first().innerText();
    assert.match(row, new RegExp(replica));
    assert.equal(await page.locator('.node[data-state="up"]').count(), stack.cluster.nodes.length - 1);
    // Under load, with the dead replica and its event: the picture README shows.
    const settled = Number(await charts.getAttribute('data-sample-at'));
    await waitFor(
      'one more sample',
      async () => Number(await charts.getAttribute('data-sample-at')) > settled,
      3000,
    );
    const shot =
      process.env.RWSPLIT_UPDATE_SCREENSHOT === '1'
        ? 'docs/dashboard.png'
        : path.join(profile, 'dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    assert.ok(existsSync(shot), 'screenshot written');
  });
});
