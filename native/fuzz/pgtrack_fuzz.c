/*
 * libFuzzer target for the native core's framing and response tracking (pgtrack.c): arbitrary
 * server bytes, cut into arbitrary reads, against a scanner expecting an arbitrary number of
 * ReadyForQuery frames. Checked beyond "no crash" (ASan/UBSan do that): the scanner never
 * claims bytes it was not given, never forwards past a stop, and forwarding in pieces gives the
 * same stop at the same offset as forwarding at once.
 *
 *   node scripts/fuzz-native.js [seconds]
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/pgtrack.h"

#define CAP (64 * 1024)

static size_t run(const uint8_t *data, size_t len, uint32_t max_frame, uint32_t expect, size_t piece,
                  pgt_stop *final, uint8_t *rec, uint32_t *nrec) {
  static uint8_t buf[CAP];
  pgt_state st;
  pgt_init(&st, max_frame, expect);
  size_t consumed = 0; /* bytes forwarded or stopped at */
  size_t have = 0;     /* bytes in buf not yet forwarded (an unfinished header or frame) */
  size_t fed = 0;
  *final = PGT_MORE;
  while (fed < len || have > 0) {
    size_t take = len - fed < piece ? len - fed : piece;
    if (take > CAP - have) take = CAP - have;
    memcpy(buf + have, data + fed, take);
    have += take;
    fed += take;
    pgt_stop stop;
    size_t n = pgt_scan(&st, buf, have, CAP, &stop);
    if (n > have) abort(); /* claims bytes it was not given */
    consumed += n;
    memmove(buf, buf + n, have - n);
    have -= n;
    if (stop != PGT_MORE) {
      *final = stop;
      break;
    }
    if (take == 0) break; /* nothing new and nothing scanned: waits for more */
  }
  if (st.nrec > PGT_RECORD_MAX) abort();
  memcpy(rec, st.rec, st.nrec);
  *nrec = st.nrec;
  return consumed;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 4) return 0;
  const uint32_t expect = 1 + data[0] % 8;
  const size_t piece = 1 + ((size_t)data[1] << 8 | data[2]) % 4096;
  const uint32_t max_frame = data[3] & 1 ? 1024 * 1024 * 1024 : 8 + data[3];
  data += 4;
  size -= 4;
  static uint8_t rec1[PGT_RECORD_MAX], rec2[PGT_RECORD_MAX];
  uint32_t n1, n2;
  pgt_stop s1, s2;
  size_t c1 = run(data, size, max_frame, expect, size ? size : 1, &s1, rec1, &n1);
  size_t c2 = run(data, size, max_frame, expect, piece, &s2, rec2, &n2);
  if (c1 > size) abort();
  /* A stop is a property of the bytes, not of how they were cut. */
  if (s1 != PGT_MORE && s2 != PGT_MORE && (s1 != s2 || c1 != c2)) abort();
  if (s1 == s2 && c1 == c2 && (n1 != n2 || memcmp(rec1, rec2, n1) != 0)) abort();
  /* A DONE stop sits right after a ReadyForQuery. */
  if (s1 == PGT_DONE && (c1 < 6 || data[c1 - 6] != 'Z')) abort();
  return 0;
}
