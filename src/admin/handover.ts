/**
 * The listening sockets' handover of a graceful restart (`rwsplit restart`, SIGUSR2). The
 * running process spawns its successor with the same command line and an IPC channel, sends
 * it its listening sockets (`child.send(msg, server)`: the successor gets a duplicate of the
 * same kernel socket), and waits until the successor reports it serves. Both processes accept
 * on the same socket meanwhile and the kernel queues connections nobody has accepted yet, so
 * there is never a moment with no listener: no client is refused. The old process then stops
 * accepting and drains its sessions (pg/proxy.ts, redis/proxy.ts).
 *
 * The channel stays open during the drain: a client the old process has answered everything
 * it sent is handed over too (`child.send(msg, socket)`, with its session's state in `msg`),
 * so it keeps its connection and what it sends next is read by the successor from the same
 * kernel socket. Nothing is lost in between: the old process stops reading before it sends the
 * socket, so bytes that arrive meanwhile wait in the kernel for the successor. With data-plane
 * workers, the clients reach this channel through the old controller and leave it through the
 * new one to a worker (src/workers/controller.ts: WorkerPool.drain, WorkerPool.adoptHanded).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type net from 'node:net';
import { holdConnections } from '../util/listen.js';

/** Set in the successor's environment: it waits for its listeners on the IPC channel. */
export const HANDOVER_ENV = 'RWSPLIT_HANDOVER';
/**
 * Set in the successor's environment: the first PostgreSQL process id (cancel key) it may
 * hand out, past those of the sessions the old process will hand it (PgProxy.processIdsAfterHandover).
 */
export const PG_PROCESS_IDS_ENV = 'RWSPLIT_PG_PROCESS_IDS';

/** New side: the first PostgreSQL process id the old process left free, or null (and forgets it). */
export function inheritedProcessIds(): number | null {
  const v = process.env[PG_PROCESS_IDS_ENV];
  delete process.env[PG_PROCESS_IDS_ENV]; // not for a successor of ours
  return v === undefined ? null : Number(v);
}

export type ListenerName = 'postgres' | 'postgresUnix' | 'redis' | 'http';
/** Kinds of client connection a successor can take over with their state. */
export type ClientKind = 'redis' | 'postgres';
/** Listening sockets handed over, by what they serve. */
export type Listeners = Partial<Record<ListenerName, net.Server>>;

type HandoverMessage =
  | { rwsplit: 'hello' }
  | { rwsplit: 'listener'; name: ListenerName }
  | { rwsplit: 'listeners-done' }
  | { rwsplit: 'ready'; pid: number; adopts?: ClientKind[] }
  | { rwsplit: 'client'; kind: ClientKind; state: unknown };

function isHandoverMessage(m: unknown): m is HandoverMessage {
  return typeof m === 'object' && m !== null && typeof (m as { rwsplit?: unknown }).rwsplit === 'string';
}

export class HandoverError extends Error {}

/** Old side: the successor once it serves, and the channel to hand it clients during the drain. */
export interface Successor {
  readonly pid: number;
  /** whether it takes over clients of `kind` (its config may have dropped that section) */
  adopts(kind: ClientKind): boolean;
  /**
   * Hands a client connection over: the socket (which must not be read from any more) and its
   * session's state. Resolves true once it is on its way; false when the channel is gone (the
   * socket is then still this process's, to close).
   */
  sendClient(kind: ClientKind, state: unknown, socket: net.Socket): Promise<boolean>;
  /** The drain is over: the successor lives on alone. */
  release(): void;
}

/**
 * Old side: starts the successor (this process's own command line, its stdout and stderr),
 * hands it `listeners` and resolves once it serves. `env`: more for its environment (see
 * PG_PROCESS_IDS_ENV).
 * @throws HandoverError when it exits or is not ready within `timeoutMs` (it is killed then;
 * this process keeps serving)
 */
export function spawnSuccessor(
  listeners: Listeners,
  timeoutMs: number,
  env: Record<string, string> = {},
): Promise<Successor> {
  const child: ChildProcess = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    cwd: process.cwd(),
    env: { ...process.env, ...env, [HANDOVER_ENV]: '1' },
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
        // This process may exit before the successor, which must not die with it.
        child.unref();
        resolve(successor(child, m.pid, new Set(m.adopts ?? [])));
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

function successor(child: ChildProcess, pid: number, kinds: Set<ClientKind>): Successor {
  let open = true;
  const gone = (): void => {
    open = false;
  };
  child.once('disconnect', gone);
  child.once('exit', gone);
  // A send that fails (the successor died) reports through its callback; nothing to throw here.
  child.on('error', () => undefined);
  return {
    pid,
    adopts: (kind) => open && kinds.has(kind),
    sendClient: (kind, state, socket) =>
      new Promise((resolve) => {
        if (!open || !child.connected) {
          resolve(false);
          return;
        }
        const msg: HandoverMessage = { rwsplit: 'client', kind, state };
        child.send(msg, socket, (err) => resolve(err === null || err === undefined));
      }),
    release: () => {
      if (!open) return;
      open = false;
      // Node disconnects once the sockets still queued are acknowledged.
      if (child.connected) child.disconnect();
    },
  };
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

/** New side: what takes over a client of one kind (its socket and the state sent with it). */
export type ClientAdopters = Partial<Record<ClientKind, (socket: net.Socket, state: unknown) => void>>;

/**
 * New side: tells the old process this one serves, and which clients it takes over
 * (`adopters`); the old one then stops accepting and drains, handing those clients over.
 */
export function reportReady(adopters: ClientAdopters = {}): void {
  if (!process.send) return;
  process.on('message', (m: unknown, handle: unknown) => {
    if (!isHandoverMessage(m) || m.rwsplit !== 'client' || !handle) return;
    const adopt = adopters[m.kind];
    const socket = handle as net.Socket;
    // Announced, so never sent; but a socket nobody serves must not leave its client waiting.
    if (!adopt) socket.destroy();
    else adopt(socket, m.state);
  });
  const adopts = Object.keys(adopters) as ClientKind[];
  process.send({ rwsplit: 'ready', pid: process.pid, adopts } satisfies HandoverMessage);
  // The old process closes the channel; its end must not look like an error here.
  process.on('disconnect', () => undefined);
}
