/**
 * One fresh TCP connection attempt to a node, to confirm a failure seen elsewhere: a refusal
 * means nothing listens on that port any more (the server process is gone), which, unlike a
 * timeout, cannot be a frozen or partitioned server.
 */
import net from 'node:net';
import type { ConnectOutcome } from '../core/liveness.js';

export function connectOutcome(host: string, port: number, timeoutMs: number): Promise<ConnectOutcome> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (outcome: ConnectOutcome): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(outcome);
    };
    const timer = setTimeout(() => done('timeout'), timeoutMs);
    socket.once('connect', () => done('open'));
    socket.once('error', (err: NodeJS.ErrnoException) =>
      done(err.code === 'ECONNREFUSED' ? 'refused' : 'error'),
    );
  });
}
