/**
 * SLOWLOG GET through rwsplit leaves out the entries of rwsplit's own monitor connections
 * (named `rwsplit-monitor`, see ha/monitor.ts): a client asking for its slow commands does
 * not want the proxy's probes. Each entry is `[id, time, µs, [args…], addr, name]`.
 */
import { encodeArrayHeader, parseReply, ReplyReader } from '../resp/index.js';
import { MONITOR_CLIENT_NAME } from '../ha/monitor.js';

/** The reply without the monitor's entries; the reply itself when it is not a list of entries. */
export function withoutMonitorEntries(raw: Buffer): Buffer {
  if (raw[0] !== 0x2a) return raw; // an error, or not an array
  const eol = raw.indexOf('\r\n');
  const entries: Buffer[] = [];
  try {
    new ReplyReader().push(raw.subarray(eol + 2), (entry) => entries.push(entry));
  } catch {
    return raw;
  }
  const kept = entries.filter((e) => {
    const v = parseReply(e);
    const name = Array.isArray(v) ? v[5] : undefined;
    return !(Buffer.isBuffer(name) && name.toString('latin1') === MONITOR_CLIENT_NAME);
  });
  if (kept.length === entries.length) return raw;
  return Buffer.concat([encodeArrayHeader(kept.length), ...kept]);
}
