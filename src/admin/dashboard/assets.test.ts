import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadDashboardAssets } from './assets.js';

describe('dashboard assets', () => {
  const assets = loadDashboardAssets();

  test('the page refers only to assets that are served', () => {
    const page = String(assets.get('/')!.body);
    const refs = [...page.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1]!);
    assert.equal(refs.length, 4, refs.join());
    for (const ref of refs) assert.equal(assets.get(ref)?.status, 200, ref);
  });

  test('uPlot comes from the installed package, and the page script is valid JavaScript', () => {
    assert.match(String(assets.get('/assets/uPlot.iife.min.js')!.body), /uPlot/);
    assert.doesNotThrow(() => new Function(String(assets.get('/assets/dashboard.js')!.body)));
  });
});
