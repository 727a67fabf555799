/**
 * A replication connection (`replication=database` or `true` in the startup packet: logical
 * replication clients such as postgres.js `subscribe`, pg-logical-replication, Debezium, or
 * psql running replication commands). It is not pooled and not routed: after the client's
 * login with rwsplit, one server connection to the shard's current primary is opened with the
 * same startup parameters, and from then on every frame goes across unchanged, both ways,
 * until either side closes. After a failover, a new connection reaches the new primary.
 */
import type net from 'node:net';
import type { BackendConnection, BackendListener } from '../backend/backend-connection.js';
import type { RwsplitPgError } from '../errors.js';
import { encodeBackendKeyData, readyForQuery } from '../protocol/index.js';

export class ReplicationPassthrough implements BackendListener {
  private closed = false;

  constructor(
    private readonly client: net.Socket,
    private readonly backend: BackendConnection,
    private readonly done: (conn: BackendConnection) => void,
  ) {
    backend.listener = this;
    // The server's own startup answers, replayed as the client's login result.
    for (const f of backend.parameterFrames) client.write(f);
    client.write(encodeBackendKeyData(backend.processId, backend.secretKey));
    client.write(readyForQuery(0x49));
  }

  onClientFrame(_type: number, frame: Buffer): void {
    if (this.closed) return;
    if (!this.backend.write(frame)) {
      this.client.pause();
      this.backend.socket.once('drain', () => this.client.resume());
    }
  }

  onClientChunkEnd(): void {}

  onClientClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.backend.destroy('replication client left');
    this.done(this.backend);
  }

  fatal(err: RwsplitPgError): void {
    this.client.end(err.toFatalFrame());
    this.onClientClose();
  }

  onBackendFrame(_type: number, frame: Buffer): void {
    if (!this.client.write(frame)) {
      this.backend.socket.pause();
      this.client.once('drain', () => this.backend.socket.resume());
    }
  }

  onBackendChunkEnd(): void {}

  onBackendClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.client.end();
    this.done(this.backend);
  }
}
