/**
 * libpq connection strings, as found in a replica's `primary_conninfo`: parsed, edited
 * (re-pointed to a new primary) and written back. Both forms libpq accepts are read —
 * `key=value` pairs and `postgresql://` URIs — and the keyword form is written.
 * See https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING
 */

/** A connection string that libpq would reject too. */
export class ConninfoError extends Error {
  readonly code = 'BAD_CONNINFO';
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** Keyword → value, in the order they appeared. */
export type Conninfo = Map<string, string>;

/** Parses a connection string (keyword/value or URI form). */
export function parseConninfo(text: string): Conninfo {
  const trimmed = text.trim();
  if (/^postgres(ql)?:\/\//.test(trimmed)) return parseUri(trimmed);
  const out: Conninfo = new Map();
  let i = 0;
  const skipSpace = (): void => {
    while (i < text.length && /\s/.test(text[i]!)) i++;
  };
  for (skipSpace(); i < text.length; skipSpace()) {
    const keyStart = i;
    while (i < text.length && /[A-Za-z0-9_]/.test(text[i]!)) i++;
    const key = text.slice(keyStart, i);
    skipSpace();
    if (key === '' || text[i] !== '=')
      throw new ConninfoError(`expected keyword=value at offset ${keyStart} of the connection string`);
    i++;
    skipSpace();
    const [value, next] = readValue(text, i);
    out.set(key, value);
    i = next;
  }
  return out;
}

/** One value at `start`: single-quoted, or up to the next whitespace; `\` escapes the next character. */
function readValue(text: string, start: number): [string, number] {
  let i = start;
  let value = '';
  const quoted = text[i] === "'";
  if (quoted) i++;
  for (; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted ? ch === "'" : /\s/.test(ch)) break;
    if (ch === '\\' && i + 1 < text.length) {
      value += text[++i];
      continue;
    }
    value += ch;
  }
  if (quoted) {
    if (text[i] !== "'") throw new ConninfoError('unterminated quoted value in the connection string');
    i++;
  }
  return [value, i];
}

function parseUri(text: string): Conninfo {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConninfoError('invalid connection URI');
  }
  const out: Conninfo = new Map();
  if (url.username) out.set('user', decodeURIComponent(url.username));
  if (url.password) out.set('password', decodeURIComponent(url.password));
  // A bracketed IPv6 literal keeps its brackets in URL.hostname.
  if (url.hostname) out.set('host', decodeURIComponent(url.hostname.replace(/^\[(.*)\]$/, '$1')));
  if (url.port) out.set('port', url.port);
  const dbname = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (dbname) out.set('dbname', dbname);
  for (const [k, v] of url.searchParams) out.set(k, v);
  return out;
}

/** Writes the keyword/value form, every value single-quoted (`'` and `\` escaped). */
export function formatConninfo(info: Conninfo): string {
  return [...info].map(([k, v]) => `${k}='${v.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`).join(' ');
}

/** Where a replica should stream from now, and, when configured, the login to use. */
export interface RepointTarget {
  host: string;
  port: number;
  user?: string;
  password?: string;
}

/**
 * The same connection string aimed at another server: host and port replaced (`hostaddr`
 * dropped: it would override the host), user and password replaced when given. Everything
 * else stays — `application_name` above all, which `synchronous_standby_names` names.
 */
export function repointConninfo(text: string, to: RepointTarget): string {
  const info = parseConninfo(text);
  info.delete('hostaddr');
  info.set('host', to.host);
  info.set('port', String(to.port));
  if (to.user !== undefined) info.set('user', to.user);
  if (to.password !== undefined) info.set('password', to.password);
  return formatConninfo(info);
}
