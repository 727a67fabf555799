/**
 * A Redis client that returns each reply's exact bytes, to compare rwsplit with a server byte
 * for byte (ioredis and redis-cli decode and reformat). Built on the proxy's own backend link.
 */
import { RedisLink } from '../../src/redis/backend/backend-link.js';
import { encodeCommand } from '../../src/redis/resp/index.js';

export interface RawRedis {
  /** Sends one command and resolves with its raw reply (latin1 text, so bytes stay bytes). */
  call(...args: (string | Buffer)[]): Promise<string>;
  close(): void;
}

export async function rawRedis(port: number, name = `127.0.0.1:${port}`): Promise<RawRedis> {
  const link = await RedisLink.connect(
    { nodeId: name, host: '127.0.0.1', port },
    { resp3: false, connectTimeoutMs: 5000 },
  );
  return {
    call: (...args) =>
      new Promise((resolve, reject) =>
        link.send(encodeCommand(args), (raw) =>
          raw ? resolve(raw.toString('latin1')) : reject(new Error(`connection to ${name} lost`)),
        ),
      ),
    close: () => link.destroy('test done'),
  };
}
