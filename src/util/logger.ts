/** The process logger (pino, JSON to stderr). `RWSPLIT_LOG_LEVEL` overrides the configured level. */
import { pino, type Logger } from 'pino';

export function createLogger(level: string): Logger {
  return pino(
    { level: process.env.RWSPLIT_LOG_LEVEL ?? level, base: { app: 'rwsplit' } },
    pino.destination(2),
  );
}
