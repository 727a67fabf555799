/**
 * The listening sockets' handover of a graceful restart (`rwsplit restart`, SIGUSR2). The
 * running process spawns its successor with the same command line and an IPC channel, sends
 * it its listening sockets (`child.send(msg, server)`: the successor gets a duplicate of the
 * same kernel socket), and waits until the successor reports it serves. Both processes accept
 * on the same socket meanwhile and the kernel queues connections nobody has accepted yet, so
 * there is never a moment with no listener: no client is refused. The old process then stops
 * accepting and drains its sessions (pg/proxy.ts, redis/proxy.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type net from 'node:net';
import { holdConnections } from '../util/listen.js';

/** Set in the successor's environment: it waits for its listeners on the IPC channel. */
export const HANDOVER_ENV = 'RWSPLIT_HANDOVER';

export type ListenerName = 'postgres' | 'postgresUnix' | 'redis' | 'http';
/** Listening sockets handed over, by what they serve. */
export type Listeners = Partial<Record<ListenerName, net.Server>>;

type HandoverMessage =
  | { rwsplit: 'hello' }
  | { rwsplit: 'listener'; name: ListenerName }
  | { rwsplit: 'listeners-done' }
  | { rwsplit: 'ready'; pid: number };

function isHandoverMessage(m: unknown): m is HandoverMessage {
  return typeof m === 'object' && m !== null && typeof (m as { rwsplit?: unknown }).rwsplit === 'string';
}

export class HandoverError extends Error {}

/**
 * Old side: starts the successor (this process's own command line, its stdout and stderr),
 * hands it `listeners` and resolves with its pid once it serves.
 * @throws HandoverError when it exits or is not ready within `timeoutMs` (it is killed then;
 * this process keeps serving)
 */
export function spawnSuccessor(listeners: Listeners, timeoutMs: number): Promise<number> {
  const child: ChildProcess = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    cwd: process.cwd(),
    env: { ...process.env, [HANDOVER_ENV]: '1' },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    const fail = (why: string): void => {
      cleanup();
      child.kill('SIGKILL');
      reject(new HandoverError(`the new rwsplit process ${why}; this process keeps serving`));
    };
    const timer = setTimeout(() => fail(`was not ready within ${timeoutMs} ms`), timeoutMs);
    const onExit = (code: number | null, signal: string | null): void =>
      fail(`exited during start-up (${signal ?? `code ${code}`}; its log says why)`);
    const onError = (err: Error): void => fail(`could not be started: ${err.message}`);
    const onMessage = (m: unknown): void => {
      if (!isHandoverMessage(m)) return;
      if (m.rwsplit === 'hello') {
        for (const name of Object.keys(listeners) as ListenerName[])
          child.send({ rwsplit: 'listener', name } satisfies HandoverMessage, listeners[name]);
        child.send({ rwsplit: 'listeners-done' } satisfies HandoverMessage);
      } else if (m.rwsplit === 'ready') {
        cleanup();
        // The successor lives on alone: no channel, and this process may exit before it.
        child.disconnect();
        child.unref();
        resolve(m.pid);
      }
    };
    function cleanup(): void {
      clearTimeout(timer);
      child.off('exit', onExit);
      child.off('error', onError);
      child.off('message', onMessage);
    }
    child.on('exit', onExit);
    child.on('error', onError);
    child.on('message', onMessage);
  });
}

/**
 * New side: the listening sockets the old process hands over, or null when this process was
 * not started by a handover.
 */
export function inheritedListeners(): Promise<Listeners> | null {
  if (process.env[HANDOVER_ENV] !== '1' || !process.send) return null;
  delete process.env[HANDOVER_ENV]; // not for a successor of ours
  const send = process.send.bind(process);
  return new Promise((resolve) => {
    const got: Listeners = {};
    const onMessage = (m: unknown, handle: unknown): void => {
      if (!isHandoverMessage(m)) return;
      if (m.rwsplit === 'listener' && handle) {
        // Already accepting: park its connections until the real server takes it over.
        holdConnections(handle as net.Server);
        got[m.name] = handle as net.Server;
      } else if (m.rwsplit === 'listeners-done') {
        process.off('message', onMessage);
        resolve(got);
      }
    };
    process.on('message', onMessage);
    send({ rwsplit: 'hello' } satisfies HandoverMessage);
  });
}

/** New side: tells the old process this one serves; it then stops accepting and drains. */
export function reportReady(): void {
  process.send?.({ rwsplit: 'ready', pid: process.pid } satisfies HandoverMessage);
  // The old process closes the channel; its end must not look like an error here.
  process.on('disconnect', () => undefined);
}
