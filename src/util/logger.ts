/**
 * The process logger (pino) on stderr. `RWSPLIT_LOG_LEVEL` overrides the configured level.
 * JSON lines by default; one readable line per entry when stderr is a terminal or
 * `RWSPLIT_LOG_PRETTY=1` (`RWSPLIT_LOG_PRETTY=0` forces JSON; `NO_COLOR` turns colours off).
 */
import { pino, type Logger } from 'pino';
import { prettyDestination } from './pretty-log.js';

/** Whether log lines are rendered for a human rather than as JSON. */
export function wantsPrettyLogs(env = process.env, stderrIsTty = process.stderr.isTTY === true): boolean {
  if (env.RWSPLIT_LOG_PRETTY === '1') return true;
  if (env.RWSPLIT_LOG_PRETTY === '0') return false;
  return stderrIsTty;
}

export function createLogger(level: string): Logger {
  const options = { level: process.env.RWSPLIT_LOG_LEVEL ?? level, base: { app: 'rwsplit' } };
  if (wantsPrettyLogs()) {
    const color = process.stderr.isTTY === true && process.env.NO_COLOR === undefined;
    return pino(options, prettyDestination(process.stderr, color));
  }
  return pino(options, pino.destination(2));
}
