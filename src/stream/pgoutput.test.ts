import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  decodePgoutput,
  decodeReplicationMessage,
  encodeStandbyStatus,
  formatLsn,
  parseLsnText,
  PgoutputError,
} from './pgoutput.js';

/** Builds a message from parts: numbers as [value, bytes], strings zero-terminated, Buffers raw. */
function msg(...parts: (string | Buffer | [number | bigint, 1 | 2 | 4 | 8])[]): Buffer {
  const out: Buffer[] = [];
  for (const p of parts) {
    if (typeof p === 'string') out.push(Buffer.from(`${p}\0`));
    else if (Buffer.isBuffer(p)) out.push(p);
    else {
      const b = Buffer.alloc(p[1]);
      if (p[1] === 1) b.writeUInt8(Number(p[0]));
      else if (p[1] === 2) b.writeInt16BE(Number(p[0]));
      else if (p[1] === 4) b.writeUInt32BE(Number(p[0]));
      else b.writeBigUInt64BE(BigInt(p[0]));
      out.push(b);
    }
  }
  return Buffer.concat(out);
}
const byte = (c: string): [number, 1] => [c.charCodeAt(0), 1];
const text = (s: string): Buffer =>
  Buffer.concat([Buffer.from('t'), msg([Buffer.byteLength(s), 4]), Buffer.from(s)]);

describe('pgoutput codec', () => {
  test('LSN text form round-trips', () => {
    assert.equal(formatLsn(0x16b3a18n), '0/16B3A18');
    assert.equal(parseLsnText('1/0000000A'), (1n << 32n) | 10n);
    assert.equal(formatLsn(parseLsnText('FFFFFFFF/FFFFFFFF')), 'FFFFFFFF/FFFFFFFF');
    assert.throws(() => parseLsnText('12'), PgoutputError);
  });

  test('XLogData and keepalive; times are Unix milliseconds', () => {
    const micros = BigInt(Date.UTC(2026, 0, 1) - Date.UTC(2000, 0, 1)) * 1000n;
    const x = decodeReplicationMessage(msg(byte('w'), [10n, 8], [20n, 8], [micros, 8], Buffer.from('B')));
    assert.deepEqual(x, {
      kind: 'xlog',
      walStart: 10n,
      walEnd: 20n,
      sendTimeMs: Date.UTC(2026, 0, 1),
      data: Buffer.from('B'),
    });
    const k = decodeReplicationMessage(msg(byte('k'), [99n, 8], [micros, 8], [1, 1]));
    assert.deepEqual(k, {
      kind: 'keepalive',
      walEnd: 99n,
      sendTimeMs: Date.UTC(2026, 0, 1),
      replyRequested: true,
    });
    assert.throws(() => decodeReplicationMessage(msg(byte('k'), [1n, 8])), PgoutputError);
  });

  test('standby status update: a CopyData frame with the position three times', () => {
    const f = encodeStandbyStatus(0x1234n, Date.UTC(2000, 0, 1) + 5, true);
    assert.equal(f[0], 0x64);
    assert.equal(f.readInt32BE(1), f.length - 1);
    assert.equal(f[5], 0x72);
    assert.deepEqual(
      [f.readBigUInt64BE(6), f.readBigUInt64BE(14), f.readBigUInt64BE(22)],
      [0x1234n, 0x1234n, 0x1234n],
    );
    assert.equal(f.readBigInt64BE(30), 5000n);
    assert.equal(f[38], 1);
  });

  test('relation, begin, insert, update with old key, delete, truncate, commit', () => {
    const rel = decodePgoutput(
      msg(
        byte('R'),
        [16384, 4],
        'public',
        'items',
        byte('d'),
        [2, 2],
        [1, 1],
        'id',
        [20, 4],
        [-1 >>> 0, 4],
        [0, 1],
        'name',
        [25, 4],
        [-1 >>> 0, 4],
      ),
    );
    assert.deepEqual(rel, {
      tag: 'relation',
      relationOid: 16384,
      schema: 'public',
      name: 'items',
      replicaIdentity: 'd',
      columns: [
        { name: 'id', typeOid: 20, typeMod: -1, isKey: true },
        { name: 'name', typeOid: 25, typeMod: -1, isKey: false },
      ],
    });
    assert.deepEqual(decodePgoutput(msg(byte('B'), [0x500n, 8], [0n, 8], [7, 4])), {
      tag: 'begin',
      finalLsn: 0x500n,
      commitTimeMs: Date.UTC(2000, 0, 1),
      xid: 7,
    });
    const tuple = msg([2, 2], text('1'), text('é ✓'));
    assert.deepEqual(decodePgoutput(msg(byte('I'), [16384, 4], byte('N'), tuple)), {
      tag: 'insert',
      relationOid: 16384,
      newTuple: [
        { kind: 'text', text: '1' },
        { kind: 'text', text: 'é ✓' },
      ],
    });
    const oldKey = msg([2, 2], text('0'), byte('n'));
    const upd = decodePgoutput(
      msg(byte('U'), [16384, 4], byte('K'), oldKey, byte('N'), msg([2, 2], text('1'), byte('u'))),
    );
    assert.deepEqual(upd, {
      tag: 'update',
      relationOid: 16384,
      oldTuple: [{ kind: 'text', text: '0' }, { kind: 'null' }],
      newTuple: [{ kind: 'text', text: '1' }, { kind: 'unchanged' }],
    });
    const plain = decodePgoutput(msg(byte('U'), [16384, 4], byte('N'), tuple));
    assert.equal(plain.tag === 'update' && plain.oldTuple, null);
    assert.deepEqual(decodePgoutput(msg(byte('D'), [16384, 4], byte('K'), oldKey)), {
      tag: 'delete',
      relationOid: 16384,
      oldTuple: [{ kind: 'text', text: '0' }, { kind: 'null' }],
    });
    assert.deepEqual(decodePgoutput(msg(byte('T'), [2, 4], [1, 1], [16384, 4], [16390, 4])), {
      tag: 'truncate',
      options: 1,
      relationOids: [16384, 16390],
    });
    assert.deepEqual(decodePgoutput(msg(byte('C'), [0, 1], [0x500n, 8], [0x530n, 8], [0n, 8])), {
      tag: 'commit',
      flags: 0,
      commitLsn: 0x500n,
      endLsn: 0x530n,
      commitTimeMs: Date.UTC(2000, 0, 1),
    });
  });

  test('truncated or unknown messages are errors, not garbage', () => {
    assert.throws(
      () => decodePgoutput(msg(byte('I'), [16384, 4], byte('N'), [1, 2], byte('t'), [10, 4])),
      PgoutputError,
    );
    assert.throws(() => decodePgoutput(msg(byte('R'), [1, 4], Buffer.from('no terminator'))), PgoutputError);
    assert.throws(() => decodePgoutput(msg(byte('Z'))), /unknown pgoutput message 'Z'/);
    assert.throws(
      () => decodePgoutput(msg(byte('I'), [1, 4], byte('N'), [1, 2], byte('b'), [0, 4])),
      /binary values/,
    );
  });
});
