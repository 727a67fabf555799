/**
 * Puts a server on its configured address, or on a listening socket a graceful restart handed
 * over (src/admin/handover.ts) when that socket is on the configured port: the old process
 * still holds that port, so binding it again would fail, and taking the socket over means no
 * connection is refused in between.
 *
 * A socket handed over through the IPC channel arrives as a net.Server that Node has already
 * put to listening: it accepts connections at once, long before this process is ready to serve
 * them (its monitor, its pools). Those connections must not be lost in a server nobody listens
 * to (their clients would wait forever): `holdConnections` parks them as they come, and
 * `listenServer` gives them to the real server once it takes the socket over.
 */
import type net from 'node:net';

/** connections accepted on a handed-over socket before its real server took it over */
const parked = new WeakMap<net.Server, { sockets: net.Socket[]; park: (s: net.Socket) => void }>();

/** Called as soon as a handed-over server arrives: parks what it accepts (see above). */
export function holdConnections(handed: net.Server): void {
  const sockets: net.Socket[] = [];
  const park = (s: net.Socket): void => {
    sockets.push(s);
  };
  handed.on('connection', park);
  parked.set(handed, { sockets, park });
}

/**
 * Stops a handed-over server that no real server took over (its port or its section left the
 * config): its parked clients are closed, as they would be refused by a port nobody serves.
 */
export function releaseHandedServer(handed: net.Server): void {
  const held = parked.get(handed);
  if (!held) return;
  parked.delete(handed);
  handed.off('connection', held.park);
  handed.close();
  for (const s of held.sockets) s.destroy();
}

export function listenServer(
  server: net.Server,
  host: string,
  port: number,
  inherited?: net.Server,
): Promise<net.AddressInfo> {
  const handed = inherited?.address();
  const reuse = inherited !== undefined && typeof handed === 'object' && handed?.port === port;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => {
      server.off('error', reject);
      if (reuse) adoptParked(server, inherited);
      resolve(server.address() as net.AddressInfo);
    };
    if (reuse) server.listen(inherited, done);
    else {
      if (inherited) releaseHandedServer(inherited);
      server.listen(port, host, done);
    }
  });
}

/**
 * Same as listenServer for a Unix socket handed over (the file stays where it was); without
 * one, listens on `file`. Resolves with the server that listens: a handed-over Unix socket
 * keeps the server it arrived in, which passes its connections on to `server`. (Node takes a
 * handed-over TCP handle as it is, but listens on a Unix one by opening its descriptor again,
 * which libuv refuses with EEXIST while the arrived server holds it: the new process of a
 * graceful restart then failed to start.)
 */
export function listenPath(server: net.Server, file: string, inherited?: net.Server): Promise<net.Server> {
  if (inherited) {
    inherited.on('connection', (s: net.Socket) => server.emit('connection', s));
    adoptParked(server, inherited);
    return Promise.resolve(inherited);
  }
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(file, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

/** `server` now owns the handed socket (new connections come to it): it gets the parked ones too. */
function adoptParked(server: net.Server, handed: net.Server): void {
  const held = parked.get(handed);
  if (!held) return;
  parked.delete(handed);
  handed.off('connection', held.park);
  for (const s of held.sockets) {
    // A client that gave up meanwhile is gone already; the rest are served from their first byte
    // (what they sent waits in the socket's buffer).
    if (s.destroyed) continue;
    if (typeof s.setNoDelay === 'function') s.setNoDelay(true);
    server.emit('connection', s);
  }
}
