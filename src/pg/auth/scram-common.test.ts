import { createHash, createHmac, pbkdf2Sync } from 'node:crypto';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ScramVerifierError,
  formatScramVerifier,
  hi,
  makeScramVerifier,
  parseScramVerifier,
  saslPrep,
  xor,
} from './scram-common.js';

/**
 * Verifiers written by a real PostgreSQL 15.18 (`CREATE ROLE ... PASSWORD ...` with
 * password_encryption = 'scram-sha-256', read back from pg_authid.rolpassword). The non-ASCII passwords
 * exercise each branch of PostgreSQL's SASLprep: normalized, or used raw because prohibited.
 */
const POSTGRES_VERIFIERS: ReadonlyArray<{ what: string; password: string; verifier: string }> = [
  {
    what: 'ASCII',
    password: 'pencil',
    verifier:
      'SCRAM-SHA-256$4096:V/PgTcrHXRCRXKuREWfqBA==$7vXx/6scZ8bW0QDC+D5y4YSTn6RZ783xjZGohJcHev0=:RwK7W8NgAyKPDGe1JSuQFz1xegvZuehSpqVSpi5KQMg=',
  },
  {
    what: 'precomposed letters',
    password: 'p\u00e4ssw\u00f6rd',
    verifier:
      'SCRAM-SHA-256$4096:NkQ5Ql9bSIr1vXEz2aj6Jw==$XKs8qJcbcYzlE/IXvrz8EeFXl34cc9GNcXFPTinV4Ro=:xgKEteEBIumcj9yWbKFS4IhkybSVLQ3Vk/IGt44ToI8=',
  },
  {
    what: 'combining diaeresis (NFKC composes it)',
    password: 'pa\u0308ssw\u00f6rd',
    verifier:
      'SCRAM-SHA-256$4096:i3Xz23p/ymxIdbCwhw6XKg==$lgXCncu1G4UORcipeO7X+gFD8uvLx21nNvura7XUTmg=:BP5bvHteZSo+ZUYY6MhN6TNUeIw/ew1XuqPHLq3QuZw=',
  },
  {
    what: 'fullwidth letters (NFKC folds them)',
    password: '\uff50\uff41\uff53\uff53\u00e9',
    verifier:
      'SCRAM-SHA-256$4096:QXVClZttstLyVKKR66SpOQ==$rIZWSCZM6Q/pCy6KWvoqHcRkqY0e7JQfvz7dvsdFRjE=:WP0yUiCNhgFs2rhrsk58if3cmASrYFtAuu/Rr+jiSZM=',
  },
  {
    what: 'no-break space (mapped to a space)',
    password: '\u00a0pw\u00e9',
    verifier:
      'SCRAM-SHA-256$4096:Bnvg17tEgoP8HK/bZ7I4bg==$LZWNm5w5yBn+TvFdPk2oqrvw4inUL4q1oSM41jzFJ8w=:0tbSfrzLz24Dp0SSSHocAIY8H/ywbQIJYDeRo3KoPYo=',
  },
  {
    what: 'soft hyphen (mapped to nothing)',
    password: 'pa\u00adss\u00e9',
    verifier:
      'SCRAM-SHA-256$4096:QbfS+yQqjeIMTsR3lgCq3w==$Y8GNrKo9BZqQic6h0x0Nnh6CpiouB0NGX+FY2O5/oko=:qtgJ8H6cYnFwnjYWC+SBFs3LBhw09sWzcxzo3oHWl00=',
  },
  {
    what: 'ASCII control among non-ASCII (prohibited: raw)',
    password: 'a\u0007\u00e9',
    verifier:
      'SCRAM-SHA-256$4096:bUh8VN/QKyeyNyGRrK/kuQ==$uVkJ+fTag/IsTP2UMV10QMzb4uzjOVdLrv3Jt+MKXYk=:MVjhYvhh9we9L1pOF7cWXSiS9nUzFXmXNrNfRR4lHpo=',
  },
  {
    what: 'right-to-left only',
    password: '\u05e9\u05dc\u05d5\u05dd',
    verifier:
      'SCRAM-SHA-256$4096:qotkej5jvG/SFaH8KaPeAQ==$WjQli5IEtcUP/2PMidTq3qOgTB30aOWuNlHcCtDhJZI=:YT3L0Rx27Ry5oKGGkCPEVOI9A/OK1A7HDGzvBDfWBE0=',
  },
  {
    what: 'mixed left-to-right and right-to-left (bidi rule: raw)',
    password: 'a\u05e9',
    verifier:
      'SCRAM-SHA-256$4096:20iLhJ3JnqibSI+Z5QPQCA==$WyV+wVSiPeDHJJdDoiKg5EXcR+biE4Jpjs27Lu1d7gs=:GDa4rq9MOdROqqqvIWl4MKAXTOrPGS5FLJMSiwoPYMY=',
  },
  {
    what: 'character unassigned in Unicode 3.2 (raw, although NFKC would change the rest)',
    password: '\uff50\u0221',
    verifier:
      'SCRAM-SHA-256$4096:i7Gxq6Tb/P3LVvZC/ol7zg==$jcXkP3/4q5Bov2w6DQ+XSD1uhgb8XY5XAlACHWno/WI=:CwmhrMOhYA65g3zG7Z56UUdZ3rwZzPihQj5eeLQ0gQc=',
  },
  {
    what: 'soft hyphen then decomposed e-acute',
    password: '\u00ad\u00e9\u0301',
    verifier:
      'SCRAM-SHA-256$4096:LAtlzFjXiXUO8ZRKNu2PNA==$7PNWKZQkZ3kmhxCQCT2dEGE6TW+iwapSPAObetR7Yas=:ur5l2yfh4upjvT6/Jvx4C8QSypBKfn3IeXO4gF1QfvI=',
  },
  {
    what: 'only a character mapped to nothing (empty: raw)',
    password: '\u00ad',
    verifier:
      'SCRAM-SHA-256$4096:p5WTg6Gl/lJVmMb5yDIbfQ==$oKddNsz7RmDmJv3PeMnXEzYSweOpxatRWIoemAblV1E=:QpCiyKtrjSnA5+/UymgLAYUtbYbbXaY5US+JLMGiS+0=',
  },
];

describe('makeScramVerifier against PostgreSQL', () => {
  for (const { what, password, verifier } of POSTGRES_VERIFIERS) {
    test(`reproduces the verifier PostgreSQL stored: ${what}`, () => {
      const { salt, iterations } = parseScramVerifier(verifier);
      assert.equal(formatScramVerifier(makeScramVerifier(password, { salt, iterations })), verifier);
    });
  }
});

describe('makeScramVerifier', () => {
  test('follows RFC 5802 step by step', () => {
    const salt = Buffer.from('0123456789abcdef');
    const salted = pbkdf2Sync('pencil', salt, 4096, 32, 'sha256');
    const clientKey = createHmac('sha256', salted).update('Client Key').digest();
    const v = makeScramVerifier('pencil', { salt });
    assert.equal(v.iterations, 4096);
    assert.deepEqual(v.salt, salt);
    assert.deepEqual(v.storedKey, createHash('sha256').update(clientKey).digest());
    assert.deepEqual(v.serverKey, createHmac('sha256', salted).update('Server Key').digest());
  });

  test('defaults to 16 random salt bytes and 4096 iterations, in the PostgreSQL text format', () => {
    const a = makeScramVerifier('pw');
    const b = makeScramVerifier('pw');
    assert.equal(a.salt.length, 16);
    assert.notDeepEqual(a.salt, b.salt);
    assert.match(
      formatScramVerifier(a),
      /^SCRAM-SHA-256\$4096:[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=$/,
    );
  });

  test('honours the iteration count and rejects a non-positive one', () => {
    const salt = Buffer.alloc(16, 7);
    const v = makeScramVerifier('pw', { salt, iterations: 10 });
    assert.equal(v.iterations, 10);
    assert.notDeepEqual(v.storedKey, makeScramVerifier('pw', { salt, iterations: 11 }).storedKey);
    assert.throws(() => makeScramVerifier('pw', { iterations: 0 }), RangeError);
    assert.throws(() => makeScramVerifier('pw', { iterations: 1.5 }), RangeError);
  });
});

describe('parseScramVerifier / formatScramVerifier', () => {
  test('round-trip', () => {
    const v = makeScramVerifier('round trip', { iterations: 100 });
    const text = formatScramVerifier(v);
    assert.deepEqual(parseScramVerifier(text), v);
    assert.equal(formatScramVerifier(parseScramVerifier(text)), text);
  });

  const good = POSTGRES_VERIFIERS[0]?.verifier ?? '';
  const bad: ReadonlyArray<[string, string, RegExp]> = [
    ['empty string', '', /of the form/],
    ['md5 hash', 'md54d2fbeacc5411478ae213497020175a0', /of the form/],
    ['other mechanism', good.replace('SCRAM-SHA-256', 'SCRAM-SHA-1'), /of the form/],
    ['missing ServerKey', good.slice(0, good.lastIndexOf(':')), /of the form/],
    ['zero iterations', good.replace('$4096:', '$0:'), /iteration count/],
    ['huge iterations', good.replace('$4096:', '$99999999999:'), /iteration count/],
    ['salt not base64', good.replace('V/PgTcrHXRCRXKuREWfqBA==', 'V/PgTcrHX!CRXKuREWfqBA=='), /salt/],
    ['short StoredKey', good.replace('7vXx/6scZ8bW0QDC+D5y4YSTn6RZ783xjZGohJcHev0=', 'AAAA'), /StoredKey/],
    ['ServerKey not base64', good.slice(0, -1), /ServerKey/],
    ['trailing garbage', `${good}$x`, /of the form/],
  ];
  for (const [what, text, message] of bad) {
    test(`rejects ${what} with ScramVerifierError`, () => {
      assert.throws(
        () => parseScramVerifier(text),
        (err: unknown) =>
          err instanceof ScramVerifierError &&
          err.code === 'SCRAM_VERIFIER_INVALID' &&
          message.test(err.message),
      );
    });
  }

  test('does not echo the verifier in its error message', () => {
    const secretish = good.slice(0, -1);
    assert.throws(
      () => parseScramVerifier(secretish),
      (err: unknown) => err instanceof Error && !err.message.includes('7vXx/6scZ8bW0QDC'),
    );
  });
});

describe('saslPrep', () => {
  test('returns ASCII unchanged, control characters included', () => {
    assert.equal(saslPrep('pencil'), 'pencil');
    assert.equal(saslPrep('a\u0007b\u007f'), 'a\u0007b\u007f');
    assert.equal(saslPrep(''), '');
  });

  test('maps, removes and normalizes', () => {
    assert.equal(saslPrep('\u00a0pw\u00e9'), ' pw\u00e9');
    assert.equal(saslPrep('pa\u00adss\u00e9'), 'pass\u00e9');
    assert.equal(saslPrep('pa\u0308ss'), 'p\u00e4ss');
    assert.equal(saslPrep('\uff50\uff41\uff53\uff53\u00e9'), 'pass\u00e9');
    assert.equal(saslPrep('\u2168'), 'IX');
  });

  test('falls back to the raw password when SASLprep would fail', () => {
    for (const raw of [
      'a\u0007\u00e9',
      'a\u05e9',
      '\u05e9a',
      '\uff50\u0221',
      '\u00ad',
      '\ue000\u00e9',
      'x\ud800',
    ]) {
      assert.equal(saslPrep(raw), raw, JSON.stringify(raw));
    }
  });

  test('accepts right-to-left text that starts and ends with an R/AL character', () => {
    assert.equal(saslPrep('\u05e9 1 \u05dd'), '\u05e9 1 \u05dd');
    assert.equal(saslPrep('\ufe8d'), '\u0627');
  });
});

describe('primitives', () => {
  test('hi is PBKDF2-HMAC-SHA-256 with a 32-byte output', () => {
    const out = hi(Buffer.from('password'), Buffer.from('salt'), 1);
    // RFC 7914 section 11 / common PBKDF2-HMAC-SHA256 vector (P="password", S="salt", c=1), first 32 bytes.
    assert.equal(out.toString('hex'), '120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b');
  });

  test('xor combines bytes and refuses different lengths', () => {
    assert.deepEqual(xor(Buffer.from([0x0f, 0xf0]), Buffer.from([0xff, 0xff])), Buffer.from([0xf0, 0x0f]));
    assert.throws(() => xor(Buffer.alloc(1), Buffer.alloc(2)), RangeError);
  });
});
