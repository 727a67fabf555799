import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  decodeAuthentication,
  decodeBackendKeyData,
  decodeBindHead,
  decodeCommandTag,
  decodeErrorFields,
  decodeExecutePortal,
  decodeParameterStatus,
  decodeParse,
  decodePasswordMessage,
  decodeQuery,
  decodeReadyForQuery,
  decodeSaslInitialResponse,
  decodeSaslMechanisms,
  decodeStartupPacket,
  decodeTarget,
} from './decode.js';
import { MalformedFrameError } from './errors.js';
import { chunkings, cstr, int16, int32, readAll, typedFrame, untypedFrame } from './test-support.js';

/** Frames built by hand from the documented formats, independent of encode.ts. */
const execute = typedFrame('E', cstr('p1'), int32(0));
const bind = typedFrame('B', cstr(''), cstr('s1'), int16(0), int16(0), int16(0));

describe('decoders read hand-built frames', () => {
  test('Execute: the portal name', () => {
    assert.equal(decodeExecutePortal(execute), 'p1');
    assert.equal(decodeExecutePortal(typedFrame('E', cstr(''), int32(100))), '');
  });

  test('Bind head: unnamed portal, statement, and where the rest starts', () => {
    assert.deepEqual(decodeBindHead(bind), { portal: '', statement: 's1', restOffset: 9 });
  });

  test('Describe of the unnamed portal', () => {
    assert.deepEqual(decodeTarget(typedFrame('D', Buffer.from('P'), cstr(''))), { kind: 'P', name: '' });
  });

  test('ReadyForQuery statuses', () => {
    for (const status of ['I', 'T', 'E']) {
      assert.equal(decodeReadyForQuery(typedFrame('Z', Buffer.from(status))), status.charCodeAt(0));
    }
  });

  test('MD5 authentication request carries the 4-byte salt', () => {
    const frame = typedFrame('R', int32(5), Buffer.of(1, 2, 3, 4));
    assert.deepEqual(decodeAuthentication(frame), { code: 5, data: Buffer.of(1, 2, 3, 4) });
  });

  test('SASLInitialResponse with length -1 has empty data', () => {
    const frame = typedFrame('p', cstr('SCRAM-SHA-256'), int32(-1));
    assert.deepEqual(decodeSaslInitialResponse(frame), { mechanism: 'SCRAM-SHA-256', data: Buffer.alloc(0) });
  });

  test('an ErrorResponse with no fields decodes to an empty map', () => {
    assert.equal(decodeErrorFields(typedFrame('E', Buffer.of(0))).size, 0);
  });

  test('GSSENCRequest, and a StartupMessage with no parameters', () => {
    assert.deepEqual(decodeStartupPacket(untypedFrame(int32(80877104))), { kind: 'gssenc' });
    const bare = decodeStartupPacket(untypedFrame(int32(196608), Buffer.of(0)));
    assert.deepEqual(bare, { kind: 'startup', protocolVersion: 196608, params: new Map() });
  });

  test('a StartupMessage of protocol 3.2 is reported with its version for the proxy to negotiate', () => {
    const packet = decodeStartupPacket(untypedFrame(int32(196610), cstr('user'), cstr('u'), Buffer.of(0)));
    assert.ok(packet.kind === 'startup');
    assert.equal(packet.protocolVersion, 196610);
  });

  test('decoders read frames delivered by the reader under every chunking', () => {
    const frames = [execute, bind, typedFrame('Q', cstr('BEGIN'))];
    for (const chunks of chunkings(Buffer.concat(frames))) {
      const got = readAll(chunks);
      assert.equal(decodeExecutePortal(got[0]!.bytes), 'p1');
      assert.equal(decodeBindHead(got[1]!.bytes).statement, 's1');
      assert.equal(decodeQuery(got[2]!.bytes), 'BEGIN');
    }
  });
});

/** Asserts `fn` throws a MalformedFrameError whose message matches `pattern`. */
function assertMalformed(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof MalformedFrameError, `expected MalformedFrameError, got ${String(err)}`);
    assert.equal(err.code, 'MALFORMED_FRAME');
    assert.match(err.message, pattern);
    return true;
  });
}

describe('decoders reject malformed frames', () => {
  const noNul = /NUL-terminated/;

  test('a string without its NUL', () => {
    assertMalformed(() => decodeQuery(typedFrame('Q', Buffer.from('SELECT 1'))), noNul);
    assertMalformed(() => decodeParse(typedFrame('P', cstr('s'), Buffer.from('SELECT'))), noNul);
    assertMalformed(() => decodeBindHead(typedFrame('B', cstr('p'), Buffer.from('s'))), noNul);
    assertMalformed(() => decodeTarget(typedFrame('D', Buffer.from('Sname'))), noNul);
    assertMalformed(() => decodeExecutePortal(typedFrame('E', Buffer.from('p'))), noNul);
    assertMalformed(() => decodeErrorFields(typedFrame('E', Buffer.from('Mmessage'))), noNul);
    assertMalformed(() => decodeParameterStatus(typedFrame('S', cstr('a'), Buffer.from('b'))), noNul);
    assertMalformed(() => decodeCommandTag(typedFrame('C', Buffer.from('SELECT 1'))), noNul);
    assertMalformed(() => decodeSaslInitialResponse(typedFrame('p', Buffer.from('SCRAM'))), noNul);
    assertMalformed(() => decodeSaslMechanisms(Buffer.from('SCRAM-SHA-256')), noNul);
    assertMalformed(() => decodeStartupPacket(untypedFrame(int32(196608), Buffer.from('user'))), noNul);
  });

  test('a missing terminator after the last field or parameter', () => {
    assertMalformed(() => decodeErrorFields(typedFrame('E', cstr('Mm'))), /truncated/);
    assertMalformed(() => decodeStartupPacket(untypedFrame(int32(196608), cstr('user'), cstr('u'))), noNul);
    assertMalformed(() => decodeSaslMechanisms(cstr('SCRAM-SHA-256')), noNul);
  });

  test('trailing bytes after the body', () => {
    assertMalformed(() => decodeQuery(typedFrame('Q', cstr('a'), Buffer.from('b'))), /trailing/);
    assertMalformed(() => decodeReadyForQuery(typedFrame('Z', Buffer.from('II'))), /trailing/);
    assertMalformed(() => decodeBackendKeyData(typedFrame('K', int32(1), int32(2), int32(3))), /trailing/);
  });

  test('a Parse whose parameter count disagrees with its type list', () => {
    assertMalformed(
      () => decodeParse(typedFrame('P', cstr(''), cstr('SELECT $1'), int16(2), int32(23))),
      /truncated/,
    );
    assertMalformed(() => decodeParse(typedFrame('P', cstr(''), cstr('SELECT 1'))), /truncated/);
  });

  test('a Bind too short to hold its three counts', () => {
    assertMalformed(() => decodeBindHead(typedFrame('B', cstr(''), cstr(''), int16(0))), /truncated/);
  });

  test('the wrong type byte, or a length field that disagrees with the frame', () => {
    assertMalformed(() => decodeQuery(typedFrame('P', cstr('x'))), /expected type 'Q', got 'P'/);
    const lying = typedFrame('Q', cstr('SELECT 1'));
    assertMalformed(() => decodeQuery(lying.subarray(0, lying.length - 1)), /length field/);
    assertMalformed(() => decodeQuery(Buffer.from('Q')), /truncated/);
  });

  test('bad enumerated values', () => {
    assertMalformed(() => decodeReadyForQuery(typedFrame('Z', Buffer.from('X'))), /transaction status/);
    assertMalformed(() => decodeTarget(typedFrame('C', Buffer.from('X'), cstr('n'))), /'S' or 'P'/);
    assertMalformed(() => decodeSaslInitialResponse(typedFrame('p', cstr('M'), int32(-2))), /data length/);
    assertMalformed(
      () => decodeSaslInitialResponse(typedFrame('p', cstr('M'), int32(10), Buffer.from('abc'))),
      /truncated/,
    );
  });

  test('an unknown startup code is named in the message', () => {
    assertMalformed(
      () => decodeStartupPacket(untypedFrame(int32(131072), Buffer.of(0))),
      /131072 \(protocol 2\.0\)/,
    );
    assertMalformed(() => decodeStartupPacket(untypedFrame(int32(12345678))), /12345678/);
  });

  test('startup packets of the wrong size', () => {
    assertMalformed(() => decodeStartupPacket(untypedFrame(int32(80877102), int32(1))), /truncated/);
    assertMalformed(() => decodeStartupPacket(untypedFrame(int32(80877103), int32(0))), /trailing/);
    assertMalformed(() => decodeStartupPacket(Buffer.from([0, 0, 0, 9, 0, 3, 0, 0])), /length field/);
  });

  test('short fixed-size bodies', () => {
    assertMalformed(() => decodeAuthentication(typedFrame('R', int16(0))), /truncated/);
    assertMalformed(() => decodeBackendKeyData(typedFrame('K', int32(1))), /truncated/);
    assertMalformed(() => decodeExecutePortal(typedFrame('E', cstr('p'), int16(0))), /truncated/);
    assertMalformed(() => decodePasswordMessage(typedFrame('Q', cstr('x'))), /expected type 'p'/);
  });
});
