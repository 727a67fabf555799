/**
 * TLS toward PostgreSQL servers (`sslmode`, as libpq names it): the data path's connections
 * negotiate it with an SSLRequest before the startup message; the monitor's and the failover
 * controller's node-postgres connections get the matching `ssl` option.
 *
 * - `disable`: plain TCP (the default).
 * - `prefer`: TLS when the server offers it, else plain; the certificate is not checked.
 * - `require`: TLS or no connection; the certificate is not checked.
 * - `verify-ca`: TLS, and the server's certificate must be signed by `sslrootcert` (or, without
 *   it, by a CA Node trusts).
 * - `verify-full`: `verify-ca`, and the certificate must name the host rwsplit connects to.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import type { PgConfig, SslMode } from '../../config/schema.js';
import { ConfigError } from '../../config/load.js';
import { BackendStartupError } from '../errors.js';
import { SSL_REQUEST } from '../protocol/index.js';

export interface BackendTls {
  readonly mode: Exclude<SslMode, 'disable'>;
  /** PEM CA certificates from `sslrootcert`, or null for Node's own CAs */
  readonly ca: Buffer | null;
  /** where `ca` came from, for error messages */
  readonly caFile: string | null;
}

/** The TLS settings of each node (absent: `disable`), from `postgres.backend` and per node overrides. */
export function backendTlsByNode(pgc: PgConfig): Map<string, BackendTls> {
  const out = new Map<string, BackendTls>();
  const files = new Map<string, Buffer>();
  for (const n of pgc.nodes) {
    const mode = n.sslmode ?? pgc.backend.sslmode;
    if (mode === 'disable') continue;
    const caFile = n.sslrootcert ?? pgc.backend.sslrootcert ?? null;
    let ca: Buffer | null = null;
    if (caFile !== null) {
      ca =
        files.get(caFile) ??
        readCa(
          caFile,
          n.sslrootcert ? `postgres.nodes (${n.id}).sslrootcert` : 'postgres.backend.sslrootcert',
        );
      files.set(caFile, ca);
    }
    out.set(n.id, { mode, ca, caFile });
  }
  return out;
}

function readCa(file: string, key: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new ConfigError(`${key}: cannot read ${file}: ${(err as Error).message}`);
  }
}

/** node-postgres's `ssl` option for the same settings (prefer: try TLS first; see `plainAfterRefusal`). */
export function pgClientSsl(t: BackendTls | undefined, host: string): false | tls.ConnectionOptions {
  if (!t) return false;
  return tlsOptions(t, host);
}

/** node-postgres's error when the server answered an SSLRequest with 'N'. */
export function isTlsRefusal(err: Error): boolean {
  return /does not support SSL/i.test(err.message);
}

function tlsOptions(t: BackendTls, host: string): tls.ConnectionOptions {
  const verify = t.mode === 'verify-ca' || t.mode === 'verify-full';
  const opts: tls.ConnectionOptions = { rejectUnauthorized: verify };
  if (t.ca) opts.ca = t.ca;
  // verify-ca: the chain is checked, the name is not (libpq's meaning).
  if (t.mode === 'verify-ca') opts.checkServerIdentity = () => undefined;
  // SNI takes host names only; the identity check uses `host` either way.
  if (net.isIP(host) === 0) opts.servername = host;
  return opts;
}

/**
 * Connects to `host:port` and negotiates TLS as `t` says; resolves with the socket the startup
 * message goes on (a TLS socket, or the plain one when `prefer` met a server without TLS).
 */
export function connectWithTls(
  target: { nodeId: string; host: string; port: number },
  t: BackendTls,
  timeoutMs: number,
): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const raw = net.connect({ host: target.host, port: target.port, noDelay: true });
    let settled = false;
    const where = `${target.nodeId} (${target.host}:${target.port})`;
    const fail = (message: string, nodeFailure: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      raw.destroy();
      reject(new BackendStartupError(message, target.nodeId, null, nodeFailure));
    };
    const timer = setTimeout(
      () =>
        fail(
          `connecting to ${where} with TLS timed out after ${timeoutMs} ms; raise postgres.pool.connectTimeoutMs if the node is slow to accept`,
          true,
        ),
      timeoutMs,
    );
    raw.once('error', (err) => fail(`cannot reach ${where}: ${err.message}`, true));
    raw.once('close', () => fail(`${where} closed the connection during TLS negotiation`, true));
    raw.once('connect', () => raw.write(SSL_REQUEST));
    raw.once('data', (chunk: Buffer) => {
      if (settled) return;
      const answer = chunk[0];
      if (answer === 0x4e /* N */) {
        if (t.mode === 'prefer') {
          settled = true;
          clearTimeout(timer);
          raw.removeAllListeners();
          resolve(raw);
          return;
        }
        fail(
          `${where} does not accept TLS connections (ssl = off) and postgres sslmode is ${t.mode}; turn ssl on in the server, or set sslmode to prefer or disable`,
          false,
        );
        return;
      }
      if (answer !== 0x53 /* S */ || chunk.length > 1) {
        fail(`${where} answered the SSLRequest with unexpected bytes`, false);
        return;
      }
      raw.removeAllListeners();
      raw.once('error', (err) => fail(`cannot reach ${where}: ${err.message}`, true));
      const secure = tls.connect({ ...tlsOptions(t, target.host), socket: raw, host: target.host });
      secure.once('secureConnect', () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        secure.removeAllListeners();
        resolve(secure);
      });
      secure.once('error', (err) =>
        fail(
          `TLS with ${where} failed (sslmode ${t.mode}${t.caFile ? `, sslrootcert ${t.caFile}` : ''}): ${err.message}`,
          false,
        ),
      );
    });
  });
}
