/**
 * Test-only helpers for the RESP codec tests: the ways of cutting a byte stream into chunks that
 * every reader must survive, and collectors that copy what the readers deliver. Not exported
 * from index.ts.
 */
import { CommandReader, type CommandReaderOptions } from './command-reader.js';
import { ReplyReader, type ReplyReaderOptions } from './reply-reader.js';

/** RESP text written with `\n` for readability: every `\n` becomes CRLF. Latin-1, so `\xff` is one byte. */
export function crlf(text: string): Buffer {
  return Buffer.from(text.replace(/\n/g, '\r\n'), 'latin1');
}

/** A copy in its own ArrayBuffer (Buffer.alloc never uses the shared pool), so `.buffer` identity means something. */
export function unpooled(bytes: Buffer): Buffer {
  const own = Buffer.alloc(bytes.length);
  bytes.copy(own);
  return own;
}

/**
 * Every way the tests cut a stream: whole, byte by byte, at each position, and (for short
 * streams) at each pair of positions.
 */
export function* chunkings(stream: Buffer, pairs = stream.length <= 160): Generator<Buffer[]> {
  yield [stream];
  const bytes: Buffer[] = [];
  for (let i = 0; i < stream.length; i++) bytes.push(stream.subarray(i, i + 1));
  yield bytes;
  for (let i = 1; i < stream.length; i++) yield [stream.subarray(0, i), stream.subarray(i)];
  if (!pairs) return;
  for (let i = 1; i < stream.length; i++) {
    for (let j = i + 1; j < stream.length; j++) {
      yield [stream.subarray(0, i), stream.subarray(i, j), stream.subarray(j)];
    }
  }
}

/** One delivered command, copied so later chunk reuse cannot alter it; args as Latin-1 text for readable diffs. */
export interface DeliveredCommand {
  args: string[];
  raw: string;
}

/** One delivered reply, copied. */
export interface DeliveredReply {
  raw: string;
  type: string;
  isError: boolean;
  isPush: boolean;
}

/**
 * Feeds `chunks` (each copied into a fresh buffer first) to a new CommandReader and returns the
 * commands delivered. Throws if the reader keeps bytes after the stream.
 */
export function readCommands(chunks: Buffer[], opts: CommandReaderOptions = {}): DeliveredCommand[] {
  const reader = new CommandReader(opts);
  const out: DeliveredCommand[] = [];
  const onCommand = (args: Buffer[], raw: Buffer): void => {
    out.push({ args: args.map((a) => a.toString('latin1')), raw: raw.toString('latin1') });
  };
  for (const chunk of chunks) reader.push(Buffer.from(chunk), onCommand);
  if (reader.bufferedBytes !== 0)
    throw new Error(`reader kept ${reader.bufferedBytes} bytes after the stream`);
  return out;
}

/** Same as {@link readCommands} for replies. */
export function readReplies(chunks: Buffer[], opts: ReplyReaderOptions = {}): DeliveredReply[] {
  const reader = new ReplyReader(opts);
  const out: DeliveredReply[] = [];
  for (const chunk of chunks) {
    reader.push(Buffer.from(chunk), (raw, info) => {
      out.push({
        raw: raw.toString('latin1'),
        type: String.fromCharCode(info.type),
        isError: info.isError,
        isPush: info.isPush,
      });
    });
  }
  if (reader.bufferedBytes !== 0)
    throw new Error(`reader kept ${reader.bufferedBytes} bytes after the stream`);
  return out;
}
