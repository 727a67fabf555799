import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { validateConfig } from '../config/load.js';
import { StalenessTracker, DEFAULT_STALENESS, type StalenessBound } from '../core/staleness.js';
import { applyReload, changedKeys } from './reload.js';

const base = { postgres: { nodes: [{ id: 'a', host: 'h' }] } };

class SpyTracker extends StalenessTracker {
  bounds: StalenessBound[] = [];
  override setBound(bound: StalenessBound): void {
    this.bounds.push(bound);
    super.setBound(bound);
  }
}

describe('config reload', () => {
  test('changedKeys names leaves, and arrays as a whole', () => {
    assert.deepEqual(changedKeys({ a: { b: 1, c: [1] } }, { a: { b: 2, c: [1, 2] } }), ['a.b', 'a.c']);
    assert.deepEqual(changedKeys({ a: { t: undefined } }, { a: { t: 'x' } }), ['a.t']);
    assert.deepEqual(changedKeys({ a: 1 }, { a: 1 }), []);
  });

  test('live keys are applied, the others reported and left as they run', () => {
    const current = validateConfig(base);
    const next = validateConfig({
      ...base,
      postgres: { ...base.postgres, staleness: { maxLagMs: 50, whenAllLagging: 'error' }, pool: { size: 3 } },
      logging: { level: 'debug' },
      admin: { token: 'x'.repeat(16) },
    });
    const staleness = new SpyTracker(DEFAULT_STALENESS);
    const log = pino({ level: 'info' });
    let token: string | null = null;
    const { config, plan } = applyReload(current, next, {
      staleness,
      log,
      setAdminToken: (t) => (token = t),
    });
    assert.deepEqual(plan.applied.sort(), ['admin.token', 'logging.level', 'postgres.staleness.maxLagMs']);
    assert.deepEqual(plan.needsRestart.sort(), ['postgres.pool.size', 'postgres.staleness.whenAllLagging']);
    assert.equal(staleness.bounds.length, 1);
    assert.equal(staleness.bounds[0]!.maxLagMs, 50);
    assert.equal(log.level, process.env.RWSPLIT_LOG_LEVEL ?? 'debug');
    assert.equal(token, 'x'.repeat(16));
    assert.equal(config.postgres!.staleness.maxLagMs, 50);
    assert.equal(config.postgres!.staleness.whenAllLagging, 'fallback', 'restart-only keys keep their value');
    assert.equal(config.postgres!.pool.size, 20);
    assert.equal(current.postgres!.staleness.maxLagMs, 10_000, 'the old config object is not mutated');
  });

  test('a reload that changes no staleness key leaves the tracker (and its streaks) alone', () => {
    const current = validateConfig(base);
    const staleness = new SpyTracker(DEFAULT_STALENESS);
    const next = validateConfig({ ...base, logging: { level: 'warn' } });
    applyReload(current, next, { staleness, log: pino({ level: 'silent' }), setAdminToken: () => undefined });
    assert.equal(staleness.bounds.length, 0);
  });
});
