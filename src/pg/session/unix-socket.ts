/**
 * The PostgreSQL proxy's Unix-domain socket: `<socketDir>/.s.PGSQL.<port>`, the name libpq
 * and every driver derive from a directory and a port (`psql -h <dir> -p <port>`, or no `-h`
 * when the directory is the client's default). A socket file left by a process that died is
 * removed at start; one that still answers is another server's, and rwsplit refuses to start.
 */
import { rename, unlink } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';

/** Longest socket path the kernel accepts (sun_path is 108 bytes on Linux, with its NUL). */
const MAX_SOCKET_PATH = 107;

/** The socket file PostgreSQL clients look for in `dir` for `port`. */
export function pgSocketPath(dir: string, port: number): string {
  return path.join(dir, `.s.PGSQL.${port}`);
}

/** Checks the path fits and clears a stale socket file; rejects if a live server owns it. */
export async function prepareSocketPath(file: string): Promise<void> {
  if (Buffer.byteLength(file) > MAX_SOCKET_PATH)
    throw new Error(
      `listen.postgres.socketDir gives the socket path ${file}, longer than ${MAX_SOCKET_PATH} bytes: choose a shorter directory`,
    );
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.connect(file);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new Error(`another server is listening on ${file} (listen.postgres.socketDir)`);
  await removeSocketFile(file);
}

/** Removes the socket file; a missing one is fine. */
export async function removeSocketFile(file: string): Promise<void> {
  try {
    await unlink(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/**
 * Where to bind before the socket is renamed to `file` (bindThenRename). libuv unlinks the path
 * a Unix socket was bound to when its handle closes; after a graceful restart the old process
 * closes its listener while the new one still accepts on the same socket, so the path it
 * bound must not be the one clients use. null when the longer name would not fit (the socket
 * is then bound where it lives).
 */
export function bindPathFor(file: string): string | null {
  const temp = `${file}.new`;
  return Buffer.byteLength(temp) > MAX_SOCKET_PATH ? null : temp;
}

/** Moves the socket bound at `temp` (bindPathFor) to `file`, replacing a stale file atomically. */
export async function moveSocketFile(temp: string, file: string): Promise<void> {
  await rename(temp, file);
}
