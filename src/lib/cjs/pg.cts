/**
 * `require('rwsplit/pg')`: the ES module itself, through Node's require() of ES modules
 * (Node.js >= 20.19), so CommonJS and ESM callers share one instance. Older Node.js versions
 * cannot load an ES module synchronously; they get an error that says what to do instead.
 */
function load(): unknown {
  try {
    // A CommonJS file loading the ES module: require() is the point here.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('../pg/index.js') as unknown;
  } catch (err) {
    if ((err as { code?: string }).code !== 'ERR_REQUIRE_ESM') throw err;
    throw new Error(
      `rwsplit/pg is an ES module and this Node.js (${process.version}) cannot require() it: use import, or await import('rwsplit/pg') from CommonJS, or Node.js >= 20.19`,
    );
  }
}

export = load();
