/**
 * Free TCP ports from the OS. A port is only "free" at the instant it is read; the caller
 * (the cluster launcher) retries with another one if a server then fails to bind it.
 */
import net from 'node:net';

const LOOPBACK = '127.0.0.1';

function listenOnEphemeralPort(): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host: LOOPBACK, port: 0, exclusive: true }, () => resolve(server));
  });
}

function portOf(server: net.Server): number {
  const address = server.address();
  if (address === null || typeof address === 'string') {
    throw new Error('listening socket has no TCP address');
  }
  return address.port;
}

function close(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Asks the OS for a free TCP port on 127.0.0.1 (listen on port 0, read it, close). */
export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  if (port === undefined) throw new Error('no port returned');
  return port;
}

/**
 * Asks the OS for `count` distinct free TCP ports on 127.0.0.1. All sockets stay open until
 * every port is read, so the OS cannot hand the same port out twice within one call.
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    for (let i = 0; i < count; i++) servers.push(await listenOnEphemeralPort());
    return servers.map(portOf);
  } finally {
    await Promise.all(servers.map(close));
  }
}
