/**
 * The startup phase of a client connection: SSLRequest / GSSENCRequest negotiation,
 * CancelRequest, the StartupMessage, and authentication (trust or SCRAM-SHA-256).
 * https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP
 */
import type net from 'node:net';
import tls from 'node:tls';
import { ScramError, ScramServer, type ScramKeys, type ScramVerifier } from '../auth/index.js';
import { RwsplitPgError, SqlState } from '../errors.js';
import {
  AUTHENTICATION_OK,
  decodeSaslInitialResponse,
  decodePasswordMessage,
  decodeStartupPacket,
  encodeAuthenticationSasl,
  encodeAuthenticationSaslContinue,
  encodeAuthenticationSaslFinal,
  FrameTooLargeError,
  FrontendCode,
  MalformedFrameError,
  PROTOCOL_VERSION_3,
  SSL_NO,
} from '../protocol/index.js';

/** What the client asked for in its StartupMessage. */
export interface ClientLogin {
  user: string;
  database: string;
  /** other startup parameters, passed on to backends (application_name, client_encoding, ...) */
  params: Record<string, string>;
  /** after a SCRAM login: the keys the client proved it has, to log into servers as it (pass-through) */
  scramKeys?: ScramKeys;
}

export interface StartupPolicy {
  authMethod: 'trust' | 'scram-sha-256';
  /**
   * SCRAM verifier of a user, or null when unknown (or it has none); a promise when it must be
   * fetched (postgres.auth.authQuery, run in the client's `database` by default).
   */
  verifier(user: string, database: string): ScramVerifier | null | Promise<ScramVerifier | null>;
  tls: tls.SecureContext | null;
  cancel(processId: number, secretKey: number): void;
}

/** Events of the startup phase, implemented by the proxy's client connection. */
export interface StartupHost {
  readonly socket: net.Socket;
  write(buf: Buffer): void;
  /** replace the transport after a TLS handshake was agreed */
  upgrade(secure: tls.TLSSocket): void;
  /** the frame reader leaves startup mode (typed frames follow) */
  typedFramesFollow(): void;
  authenticated(login: ClientLogin): void;
  reject(err: RwsplitPgError): void;
  closeQuietly(): void;
}

type Phase = 'startup' | 'lookup' | 'sasl-initial' | 'sasl-final' | 'done';

export class ClientStartup {
  private phase: Phase = 'startup';
  private login: ClientLogin | null = null;
  private scram: ScramServer | null = null;

  constructor(
    private readonly host: StartupHost,
    private readonly policy: StartupPolicy,
  ) {}

  onFrame(type: number, frame: Buffer): void {
    try {
      if (this.phase === 'startup') this.onStartupPacket(frame);
      else if (this.phase === 'sasl-initial' || this.phase === 'sasl-final') this.onSasl(type, frame);
      else throw protocolError(`unexpected message type 0x${type.toString(16)} during startup`);
    } catch (err) {
      this.fail(err);
    }
  }

  private fail(err: unknown): void {
    this.phase = 'done';
    if (err instanceof RwsplitPgError) this.host.reject(err);
    else if (err instanceof ScramError)
      this.host.reject(protocolError(`SCRAM exchange failed: ${err.message}`));
    else this.host.reject(protocolError((err as Error).message));
  }

  private onStartupPacket(frame: Buffer): void {
    const packet = decodeStartupPacket(frame);
    switch (packet.kind) {
      case 'ssl':
        if (this.policy.tls && !(this.host.socket instanceof tls.TLSSocket)) {
          this.host.write(Buffer.from('S'));
          this.host.upgrade(
            new tls.TLSSocket(this.host.socket, { isServer: true, secureContext: this.policy.tls }),
          );
        } else {
          this.host.write(SSL_NO);
        }
        return;
      case 'gssenc':
        this.host.write(SSL_NO); // GSSAPI encryption is not offered
        return;
      case 'cancel':
        this.phase = 'done';
        this.policy.cancel(packet.processId, packet.secretKey);
        this.host.closeQuietly();
        return;
      case 'startup':
        this.onStartupMessage(packet.protocolVersion, packet.params);
    }
  }

  private onStartupMessage(version: number, params: Map<string, string>): void {
    this.host.typedFramesFollow();
    if (version >> 16 !== PROTOCOL_VERSION_3 >> 16) {
      throw new RwsplitPgError(
        'UNSUPPORTED_PROTOCOL',
        SqlState.FeatureNotSupported,
        `unsupported frontend protocol ${version >> 16}.${version & 0xffff}: rwsplit speaks 3.0`,
      );
    }
    const user = params.get('user');
    if (!user)
      throw new RwsplitPgError(
        'NO_USER',
        SqlState.InvalidAuthorization,
        'no PostgreSQL user name specified in startup packet',
      );
    // `replication` stays among the parameters: the proxy passes such a connection through.
    const rest: Record<string, string> = {};
    for (const [k, v] of params) {
      // `_pq_.` options are protocol extensions that would need NegotiateProtocolVersion.
      if (k !== 'user' && k !== 'database' && !k.startsWith('_pq_.')) rest[k] = v;
    }
    this.login = { user, database: params.get('database') || user, params: rest };
    if (this.policy.authMethod === 'trust') {
      this.finish();
      return;
    }
    const verifier = this.policy.verifier(user, this.login.database);
    if (!(verifier instanceof Promise)) {
      this.startScram(user, verifier);
      return;
    }
    // The client sends nothing until it is asked for its SASL response: a frame now is an error.
    this.phase = 'lookup';
    verifier.then(
      (v) => {
        if (this.phase === 'lookup') this.startScram(user, v);
      },
      (err: unknown) => {
        if (this.phase === 'lookup') this.fail(err);
      },
    );
  }

  private startScram(user: string, verifier: ScramVerifier | null): void {
    // An unknown user gets the same exchange against a fake verifier (no user enumeration).
    this.scram = new ScramServer(verifier, { user });
    this.phase = 'sasl-initial';
    this.host.write(encodeAuthenticationSasl(['SCRAM-SHA-256']));
  }

  private onSasl(type: number, frame: Buffer): void {
    if (type !== FrontendCode.Password)
      throw protocolError(`expected a SASL response, got message type 0x${type.toString(16)}`);
    const scram = this.scram!;
    if (this.phase === 'sasl-initial') {
      const { mechanism, data } = decodeSaslInitialResponse(frame);
      if (mechanism !== 'SCRAM-SHA-256') throw protocolError(`unsupported SASL mechanism "${mechanism}"`);
      this.phase = 'sasl-final';
      this.host.write(encodeAuthenticationSaslContinue(scram.handleClientFirst(data)));
      return;
    }
    const final = scram.handleClientFinal(decodePasswordMessage(frame));
    if (!final) {
      throw new RwsplitPgError(
        'AUTH_FAILED',
        SqlState.InvalidPassword,
        `password authentication failed for user "${this.login!.user}"`,
        undefined,
        'FATAL',
      );
    }
    this.host.write(encodeAuthenticationSaslFinal(final));
    const keys = scram.keys;
    if (keys) this.login!.scramKeys = keys;
    this.finish();
  }

  private finish(): void {
    this.phase = 'done';
    this.host.write(AUTHENTICATION_OK);
    this.host.authenticated(this.login!);
  }
}

/**
 * A first packet whose length field is impossible gets no answer: PostgreSQL only logs
 * "invalid length of startup packet" and closes the connection. The common case is a client
 * that connects and leaves at once: it sends Terminate (`X\0\0\0\4`) where the startup
 * packet belongs, which reads as a 1.4 GB length. `err` is what the frame reader threw while
 * the connection was still in its startup phase.
 */
export function closesSilently(err: Error): boolean {
  // The reader raises MalformedFrameError in the startup phase only for a length below 8.
  return err instanceof FrameTooLargeError || err instanceof MalformedFrameError;
}

function protocolError(message: string): RwsplitPgError {
  return new RwsplitPgError('PROTOCOL_VIOLATION', SqlState.ProtocolViolation, message, undefined, 'FATAL');
}
