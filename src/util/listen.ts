/**
 * Puts a server on its configured address, or on a listening socket a graceful restart handed
 * over (src/admin/handover.ts) when that socket is on the configured port: the old process
 * still holds that port, so binding it again would fail, and taking the socket over means no
 * connection is refused in between.
 */
import type net from 'node:net';

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
      resolve(server.address() as net.AddressInfo);
    };
    if (reuse) server.listen(inherited, done);
    else server.listen(port, host, done);
  });
}
