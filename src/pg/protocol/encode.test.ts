import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  decodeAuthentication,
  decodeBackendKeyData,
  decodeBindHead,
  decodeCommandTag,
  decodeErrorFields,
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
import {
  AUTHENTICATION_OK,
  BIND_COMPLETE,
  CLOSE_COMPLETE,
  encodeAuthenticationCleartext,
  encodeAuthenticationSasl,
  encodeAuthenticationSaslContinue,
  encodeAuthenticationSaslFinal,
  encodeBackendKeyData,
  encodeBindWithStatement,
  encodeCancelRequest,
  encodeCommandComplete,
  encodeErrorResponse,
  encodeNoticeResponse,
  encodeParameterStatus,
  encodeParse,
  encodeParseWithName,
  encodePasswordMessage,
  encodeQuery,
  encodeSaslInitialResponse,
  encodeSaslResponse,
  encodeStartupMessage,
  encodeTarget,
  FLUSH,
  NO_DATA,
  PARSE_COMPLETE,
  readyForQuery,
  SSL_NO,
  SSL_REQUEST,
  SYNC,
  TERMINATE,
} from './encode.js';
import { MalformedFrameError } from './errors.js';
import { BackendCode, FrontendCode } from './message-types.js';
import { chunkings, cstr, int16, int32, readAll, typedFrame } from './test-support.js';

/** One encoded frame and the check that decoding it gives back what was encoded. */
interface RoundTrip {
  name: string;
  frame: Buffer;
  check: (frame: Buffer) => void;
}

const paramTypes = Buffer.concat([int16(2), int32(23), int32(25)]);
const scram = Buffer.from('n,,n=,r=rOprNGfwEbeRWgbNEkqO');

const frontend: RoundTrip[] = [
  {
    name: 'Query',
    frame: encodeQuery('SELECT 1 -- é'),
    check: (f) => assert.equal(decodeQuery(f), 'SELECT 1 -- é'),
  },
  {
    name: 'Parse',
    frame: encodeParse('s1', 'SELECT $1::int, $2', paramTypes),
    check: (f) =>
      assert.deepEqual(decodeParse(f), { statement: 's1', query: 'SELECT $1::int, $2', paramTypes }),
  },
  {
    name: 'Parse without types',
    frame: encodeParse('', 'SELECT 1', Buffer.alloc(0)),
    check: (f) =>
      assert.deepEqual(decodeParse(f), { statement: '', query: 'SELECT 1', paramTypes: int16(0) }),
  },
  {
    name: 'Describe',
    frame: encodeTarget(FrontendCode.Describe, 'S', 's1'),
    check: (f) => assert.deepEqual(decodeTarget(f), { kind: 'S', name: 's1' }),
  },
  {
    name: 'Close',
    frame: encodeTarget(FrontendCode.Close, 'P', 'portal'),
    check: (f) => assert.deepEqual(decodeTarget(f), { kind: 'P', name: 'portal' }),
  },
  {
    name: 'PasswordMessage',
    frame: encodePasswordMessage('md5abc'),
    check: (f) => assert.deepEqual(decodePasswordMessage(f), cstr('md5abc')),
  },
  {
    name: 'SASLInitialResponse',
    frame: encodeSaslInitialResponse('SCRAM-SHA-256', scram),
    check: (f) => assert.deepEqual(decodeSaslInitialResponse(f), { mechanism: 'SCRAM-SHA-256', data: scram }),
  },
  {
    name: 'SASLResponse',
    frame: encodeSaslResponse(Buffer.from('c=biws,r=abc,p=xyz')),
    check: (f) => assert.deepEqual(decodePasswordMessage(f), Buffer.from('c=biws,r=abc,p=xyz')),
  },
  { name: 'Sync', frame: SYNC, check: (f) => assert.deepEqual([...f], [0x53, 0, 0, 0, 4]) },
  { name: 'Flush', frame: FLUSH, check: (f) => assert.deepEqual([...f], [0x48, 0, 0, 0, 4]) },
  { name: 'Terminate', frame: TERMINATE, check: (f) => assert.deepEqual([...f], [0x58, 0, 0, 0, 4]) },
];

const backend: RoundTrip[] = [
  {
    name: 'AuthenticationOk',
    frame: AUTHENTICATION_OK,
    check: (f) => assert.deepEqual(decodeAuthentication(f), { code: 0, data: Buffer.alloc(0) }),
  },
  {
    name: 'AuthenticationCleartextPassword',
    frame: encodeAuthenticationCleartext(),
    check: (f) => assert.equal(decodeAuthentication(f).code, 3),
  },
  {
    name: 'AuthenticationSASL',
    frame: encodeAuthenticationSasl(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256']),
    check: (f) => {
      const auth = decodeAuthentication(f);
      assert.equal(auth.code, 10);
      assert.deepEqual(decodeSaslMechanisms(auth.data), ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256']);
    },
  },
  {
    name: 'AuthenticationSASLContinue',
    frame: encodeAuthenticationSaslContinue(Buffer.from('r=abc,s=c2FsdA==,i=4096')),
    check: (f) =>
      assert.deepEqual(decodeAuthentication(f), { code: 11, data: Buffer.from('r=abc,s=c2FsdA==,i=4096') }),
  },
  {
    name: 'AuthenticationSASLFinal',
    frame: encodeAuthenticationSaslFinal(Buffer.from('v=abc')),
    check: (f) => assert.deepEqual(decodeAuthentication(f), { code: 12, data: Buffer.from('v=abc') }),
  },
  {
    name: 'ParameterStatus',
    frame: encodeParameterStatus('server_version', '16.4'),
    check: (f) => assert.deepEqual(decodeParameterStatus(f), { name: 'server_version', value: '16.4' }),
  },
  {
    name: 'BackendKeyData',
    frame: encodeBackendKeyData(4242, -123456789),
    check: (f) => assert.deepEqual(decodeBackendKeyData(f), { processId: 4242, secretKey: -123456789 }),
  },
  {
    name: 'CommandComplete',
    frame: encodeCommandComplete('INSERT 0 1'),
    check: (f) => assert.equal(decodeCommandTag(f), 'INSERT 0 1'),
  },
  {
    name: 'ErrorResponse',
    frame: encodeErrorResponse({
      severity: 'FATAL',
      code: '08006',
      message: 'no backend',
      hint: 'raise poolSize',
    }),
    check: (f) =>
      assert.deepEqual(
        [...decodeErrorFields(f)],
        [
          ['S', 'FATAL'],
          ['V', 'FATAL'],
          ['C', '08006'],
          ['M', 'no backend'],
          ['H', 'raise poolSize'],
        ],
      ),
  },
  {
    name: 'NoticeResponse',
    frame: encodeNoticeResponse({ severity: 'WARNING', code: '01000', message: 'm', detail: 'd' }),
    check: (f) => {
      assert.equal(f[0], BackendCode.NoticeResponse);
      assert.equal(decodeErrorFields(f).get('D'), 'd');
    },
  },
  {
    name: 'ReadyForQuery T',
    frame: readyForQuery(0x54),
    check: (f) => assert.equal(decodeReadyForQuery(f), 0x54),
  },
  {
    name: 'ParseComplete',
    frame: PARSE_COMPLETE,
    check: (f) => assert.deepEqual([...f], [0x31, 0, 0, 0, 4]),
  },
  { name: 'BindComplete', frame: BIND_COMPLETE, check: (f) => assert.deepEqual([...f], [0x32, 0, 0, 0, 4]) },
  {
    name: 'CloseComplete',
    frame: CLOSE_COMPLETE,
    check: (f) => assert.deepEqual([...f], [0x33, 0, 0, 0, 4]),
  },
  { name: 'NoData', frame: NO_DATA, check: (f) => assert.deepEqual([...f], [0x6e, 0, 0, 0, 4]) },
];

/** Streams every frame of `trips` through the reader under every chunking and decodes each one. */
function assertRoundTrips(trips: RoundTrip[], lead: Buffer[] = []): void {
  const stream = Buffer.concat([...lead, ...trips.map((t) => t.frame)]);
  let runs = 0;
  for (const chunks of chunkings(stream, false)) {
    const frames = readAll(chunks, { startup: lead.length > 0 }).slice(lead.length);
    assert.equal(frames.length, trips.length);
    trips.forEach((trip, i) => {
      const got = frames[i]!;
      assert.equal(got.type, trip.frame[0], trip.name);
      trip.check(got.bytes);
    });
    runs++;
  }
  assert.equal(runs, stream.length + 1);
}

describe('round trips: encode -> FrameReader -> decode, under every chunking', () => {
  test('frontend messages after a StartupMessage', () => {
    const startup = encodeStartupMessage({ user: 'alice', database: 'app', application_name: 'rw' });
    assertRoundTrips(frontend, [startup]);
    const decoded = decodeStartupPacket(startup);
    assert.equal(decoded.kind, 'startup');
    assert.ok(decoded.kind === 'startup');
    assert.equal(decoded.protocolVersion, 196608);
    assert.deepEqual(
      [...decoded.params],
      [
        ['user', 'alice'],
        ['database', 'app'],
        ['application_name', 'rw'],
      ],
    );
  });

  test('backend messages', () => {
    assertRoundTrips(backend);
  });

  test('SSLRequest and CancelRequest', () => {
    assert.deepEqual(decodeStartupPacket(SSL_REQUEST), { kind: 'ssl' });
    assert.deepEqual([...SSL_REQUEST], [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
    const cancel = encodeCancelRequest(77, -5);
    assert.deepEqual(readAll([cancel], { startup: true }), [{ type: 0, bytes: cancel }]);
    assert.deepEqual(decodeStartupPacket(cancel), { kind: 'cancel', processId: 77, secretKey: -5 });
    assert.equal(cancel.length, 16);
  });
});

describe('encoders: exact bytes', () => {
  test('Query is type, length counting itself, NUL-terminated text', () => {
    assert.deepEqual(encodeQuery('SELECT 1'), typedFrame('Q', cstr('SELECT 1')));
  });

  test('ErrorResponse writes S, V, C, M, then D and H, then a zero byte', () => {
    const frame = encodeErrorResponse({
      severity: 'ERROR',
      code: '42P01',
      message: 'm',
      detail: 'd',
      hint: 'h',
    });
    const body = Buffer.concat([
      ...['SERROR', 'VERROR', 'C42P01', 'Mm', 'Dd', 'Hh'].map((s) => cstr(s)),
      Buffer.of(0),
    ]);
    assert.deepEqual(frame, typedFrame('E', body));
  });

  test('readyForQuery returns the same shared buffer per status and refuses others', () => {
    assert.equal(readyForQuery(0x49), readyForQuery(0x49));
    assert.deepEqual(readyForQuery(0x45), typedFrame('Z', Buffer.from('E')));
    assert.throws(() => readyForQuery(0x41), MalformedFrameError);
  });

  test('SSL_NO is the single byte N', () => {
    assert.deepEqual([...SSL_NO], [0x4e]);
  });

  test('a string containing NUL is refused instead of shifting the fields after it', () => {
    assert.throws(() => encodeQuery('SELECT 1\0; DROP TABLE t'), MalformedFrameError);
    assert.throws(() => encodeStartupMessage({ user: 'a\0b' }), MalformedFrameError);
  });

  test('encodeTarget refuses a code that is neither Describe nor Close', () => {
    assert.throws(() => encodeTarget(FrontendCode.Query, 'S', 'x'), MalformedFrameError);
  });

  test('a large frame grows the writer, and small frames after it are still right', () => {
    const sql = `SELECT '${'x'.repeat(300_000)}'`;
    const big = encodeQuery(sql);
    assert.equal(big.readUInt32BE(1), Buffer.byteLength(sql) + 5);
    assert.equal(decodeQuery(big), sql);
    assert.deepEqual(encodeCommandComplete('BEGIN'), typedFrame('C', cstr('BEGIN')));
  });

  test('returned frames are independent: a later encode does not alter an earlier one', () => {
    const first = encodeQuery('SELECT 1');
    const copy = Buffer.from(first);
    encodeQuery('SELECT 2');
    assert.deepEqual(first, copy);
  });
});

describe('renaming statements', () => {
  test('encodeParseWithName changes only the name and keeps query and types as raw bytes', () => {
    // The query holds invalid UTF-8 (0xff): it must survive untouched, not become U+FFFD.
    const rawQuery = Buffer.concat([Buffer.from("SELECT '"), Buffer.of(0xff), Buffer.from("', $1")]);
    const original = typedFrame('P', cstr('client_stmt'), rawQuery, Buffer.of(0), paramTypes);
    const renamed = encodeParseWithName(original, decodeParse(original), 'rw_17');
    assert.deepEqual(renamed, typedFrame('P', cstr('rw_17'), rawQuery, Buffer.of(0), paramTypes));
    const parsed = decodeParse(renamed);
    assert.equal(parsed.statement, 'rw_17');
    assert.deepEqual(parsed.paramTypes, paramTypes);
  });

  test('encodeBindWithStatement keeps the portal and the rest bytes', () => {
    const rest = Buffer.concat([int16(1), int16(1), int16(1), int32(4), int32(42), int16(1), int16(1)]);
    const original = typedFrame('B', cstr('portal1'), cstr('client_stmt'), rest);
    const head = decodeBindHead(original);
    const renamed = encodeBindWithStatement(original, head, 'rw_é');
    assert.deepEqual(renamed, typedFrame('B', cstr('portal1'), cstr('rw_é'), rest));
    const again = decodeBindHead(renamed);
    assert.deepEqual(
      { portal: again.portal, statement: again.statement },
      { portal: 'portal1', statement: 'rw_é' },
    );
    assert.deepEqual(renamed.subarray(again.restOffset), rest);
  });

  test('renaming refuses a name containing NUL', () => {
    const original = typedFrame('P', cstr('a'), cstr('SELECT 1'), int16(0));
    assert.throws(() => encodeParseWithName(original, decodeParse(original), 'x\0y'), MalformedFrameError);
  });
});
