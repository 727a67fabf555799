/**
 * Server-Sent Events for `GET /api/stream` (https://html.spec.whatwg.org/multipage/server-sent-events.html):
 * each message is `event: <name>\ndata: <one line of JSON>\n\n`. The browser's EventSource
 * reconnects on its own after `retry` ms when the connection drops.
 */
import type http from 'node:http';

/** A subscriber this far behind (bytes queued in its socket) is dropped rather than buffered without bound. */
const MAX_BACKLOG_BYTES = 1024 * 1024;

export class EventStream {
  private readonly clients = new Set<http.ServerResponse>();

  get size(): number {
    return this.clients.size;
  }

  /** Answers `req` with an event stream, sends `initial` messages, and keeps it for broadcasts. */
  open(req: http.IncomingMessage, res: http.ServerResponse, initial: Array<[string, unknown]>): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
    });
    res.write('retry: 1000\n\n');
    for (const [event, data] of initial) res.write(frame(event, data));
    this.clients.add(res);
    req.socket.setNoDelay(true);
    const drop = (): void => {
      this.clients.delete(res);
    };
    res.on('close', drop);
    res.on('error', drop);
  }

  /** Sends one message to every subscriber. */
  broadcast(event: string, data: unknown): void {
    if (this.clients.size === 0) return;
    const text = frame(event, data);
    for (const res of this.clients) {
      if (res.writableLength > MAX_BACKLOG_BYTES) {
        this.clients.delete(res);
        res.destroy();
        continue;
      }
      res.write(text);
    }
  }

  closeAll(): void {
    for (const res of this.clients) res.end();
    this.clients.clear();
  }
}

function frame(event: string, data: unknown): string {
  // JSON.stringify never emits a raw newline, so the data stays on one `data:` line.
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}
