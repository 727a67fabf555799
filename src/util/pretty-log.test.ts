import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { wantsPrettyLogs } from './logger.js';
import { formatLogLine, prettyDestination } from './pretty-log.js';

describe('readable logs', () => {
  test('a pino line becomes time, level, message and key=value fields', () => {
    const at = new Date(2024, 0, 2, 3, 12, 5).getTime();
    const line = JSON.stringify({
      level: 40,
      time: at,
      app: 'rwsplit',
      msg: 'node pg1 down',
      node: 'pg1',
      detail: 'connect ECONNREFUSED 127.0.0.1:5432',
      http: { port: 8432 },
    });
    assert.equal(
      formatLogLine(line),
      '03:12:05 WARN  node pg1 down node=pg1 detail="connect ECONNREFUSED 127.0.0.1:5432" http.port=8432\n',
    );
    assert.equal(formatLogLine('not json'), 'not json\n');
  });

  test('errors show their message, and their stack at error level', () => {
    const out = formatLogLine(
      JSON.stringify({
        level: 50,
        time: 0,
        msg: 'failed',
        err: { message: 'boom', stack: 'Error: boom\n  at x' },
      }),
    );
    assert.match(out, / ERROR failed err=boom\n {4}Error: boom\n {6}at x\n$/);
  });

  test('works as a pino destination', () => {
    const lines: string[] = [];
    const log = pino({ base: { app: 'rwsplit' } }, prettyDestination({ write: (s) => lines.push(s) }));
    log.info({ node: 'a' }, 'hello');
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /^\d\d:\d\d:\d\d INFO {2}hello node=a\n$/);
  });

  test('pretty when asked or on a terminal; RWSPLIT_LOG_PRETTY=0 forces JSON', () => {
    assert.equal(wantsPrettyLogs({ RWSPLIT_LOG_PRETTY: '1' }, false), true);
    assert.equal(wantsPrettyLogs({}, true), true);
    assert.equal(wantsPrettyLogs({ RWSPLIT_LOG_PRETTY: '0' }, true), false);
    assert.equal(wantsPrettyLogs({}, false), false);
  });
});
