/**
 * The floor a Node.js proxy stands on: a bare TCP forwarder, one server connection per client,
 * every chunk read from one side written to the other, no parsing, backpressure only. The
 * benchmarks run it as a contender so rwsplit's figures can be read against what Node itself
 * costs on the same box in the same run. Usage:
 *
 *   node dist/bench/node-forwarder.js <listen port> <server host> <server port>
 */
import net from 'node:net';

/** Copies `from`'s data to `to`, pausing `from` while `to` has too much queued. */
function forward(from: net.Socket, to: net.Socket): void {
  from.on('data', (chunk) => {
    if (!to.write(chunk)) {
      from.pause();
      to.once('drain', () => from.resume());
    }
  });
  from.on('end', () => to.end());
  from.on('error', () => to.destroy());
  from.on('close', () => to.destroy());
}

function main(): void {
  const [listenPort, host, port] = process.argv.slice(2);
  if (listenPort === undefined || host === undefined || port === undefined) {
    console.error('usage: node dist/bench/node-forwarder.js <listen port> <server host> <server port>');
    process.exit(2);
  }
  const server = net.createServer({ noDelay: true }, (client) => {
    const upstream = net.connect({ host, port: Number(port), noDelay: true });
    forward(client, upstream);
    forward(upstream, client);
  });
  server.listen(Number(listenPort), '127.0.0.1', () =>
    console.log(`forwarding 127.0.0.1:${listenPort} to ${host}:${port}`),
  );
  process.on('SIGTERM', () => process.exit(0));
}

main();
