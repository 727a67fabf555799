/**
 * Output written once per event-loop turn. Server links and client reply queues collect what
 * they would write and register here; everything collected is written in one `write` per
 * socket when the turn's I/O callbacks are done (`setImmediate`). So a pipeline of 16
 * commands leaves as one buffer to each server, the commands of every client read in the same
 * poll share one write per server link, and the replies a client gets in one turn leave as
 * one buffer, whatever number of server chunks they came in.
 *
 * One `setImmediate` per turn for the whole process, not one per socket.
 */

/** Something that collects bytes and writes them when asked. */
export interface Flushable {
  /** Writes what was collected; a second call in the same turn finds nothing to write. */
  flushOut(): void;
}

const due: Flushable[] = [];
let scheduled = false;

function flushAll(): void {
  scheduled = false;
  // Items added while flushing (none expected) are flushed in this pass too.
  let i = 0;
  try {
    for (; i < due.length; i++) due[i]!.flushOut();
  } finally {
    // A flushOut that threw (a bug) must not leave the others waiting for good: they go next turn.
    due.splice(0, Math.min(i + 1, due.length));
    if (due.length > 0 && !scheduled) {
      scheduled = true;
      setImmediate(flushAll);
    }
  }
}

/** Asks for `f.flushOut()` at the end of this event-loop turn. The caller registers once per turn. */
export function flushLater(f: Flushable): void {
  due.push(f);
  if (!scheduled) {
    scheduled = true;
    setImmediate(flushAll);
  }
}
