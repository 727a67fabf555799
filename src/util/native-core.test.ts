import assert from 'node:assert/strict';
import { test } from 'node:test';
import { validateConfig } from '../config/load.js';
import { loadNativeCore, resolveDataPlane } from './native-core.js';

const minimal = { postgres: { nodes: [{ id: 'pg1', host: '127.0.0.1' }] } };

test('dataPlane: js and auto run the JavaScript data plane; native takes the core exactly when it loads', () => {
  assert.deepEqual(resolveDataPlane('js'), { kind: 'js', core: null, reason: 'dataPlane: js' });
  const { core } = loadNativeCore();
  const auto = resolveDataPlane('auto');
  assert.equal(auto.kind, 'js');
  assert.equal(auto.core, null);
  if (core) assert.equal(resolveDataPlane('native').core, core);
  else assert.throws(() => resolveDataPlane('native'), /dataPlane is native but .*set dataPlane: auto/);
});

test('RWSPLIT_DATA_PLANE stands for dataPlane only when the config does not set it', () => {
  const saved = process.env['RWSPLIT_DATA_PLANE'];
  try {
    delete process.env['RWSPLIT_DATA_PLANE'];
    assert.equal(validateConfig(minimal).dataPlane, 'auto');
    process.env['RWSPLIT_DATA_PLANE'] = 'js';
    assert.equal(validateConfig(minimal).dataPlane, 'js');
    assert.equal(validateConfig({ ...minimal, dataPlane: 'native' }).dataPlane, 'native');
    process.env['RWSPLIT_DATA_PLANE'] = 'fast';
    assert.throws(() => validateConfig(minimal), /dataPlane/);
  } finally {
    if (saved === undefined) delete process.env['RWSPLIT_DATA_PLANE'];
    else process.env['RWSPLIT_DATA_PLANE'] = saved;
  }
});
