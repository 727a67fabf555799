/*
 * libFuzzer target for the native core's framing and response tracking (pgtrack.c): arbitrary
 * server bytes, cut into arbitrary reads, against a scanner expecting an arbitrary number of
 * ReadyForQuery frames. Checked beyond "no crash" (ASan/UBSan do that): the scanner never
 * claims bytes it was not given, never forwards past a stop, and forwarding in pieces gives the
 * same stop at the same offset as forwarding at once.
 *
 * The same bytes are also a client's, for the client-side framing and fingerprint (pgclient.c):
 * read in arbitrary pieces, a request is the same whole Query or handed back the same way; a
 * fingerprint reads only the frame it is given and does not change with how often it is taken;
 * the decision cache returns what was put (or nothing).
 *
 *   node scripts/fuzz-native.js [seconds]
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/pgclient.h"
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

static pgc_cache cache;

static void client_side(const uint8_t *data, size_t size, size_t piece, uint32_t max_frame) {
  /* As the core reads: growing prefixes up to its buffer, stop at the first verdict. */
  static uint8_t buf[PGC_MAX_FRAME];
  size_t have = 0, frame_len = 0;
  pgc_verdict v = PGC_MORE;
  while (have < size && have < PGC_MAX_FRAME) {
    size_t take = size - have < piece ? size - have : piece;
    if (take > PGC_MAX_FRAME - have) take = PGC_MAX_FRAME - have;
    memcpy(buf + have, data + have, take);
    have += take;
    v = pgc_request(buf, have, max_frame, &frame_len);
    if (v != PGC_MORE) break;
  }
  if (v != PGC_QUERY) return;
  if (frame_len != have || frame_len > PGC_MAX_FRAME || buf[0] != 'Q') abort();
  /* Whole at once: the same verdict. */
  size_t again = 0;
  if (pgc_request(data, have, max_frame, &again) != PGC_QUERY || again != frame_len) abort();
  uint64_t fp = pgc_fingerprint(buf, frame_len);
  if (fp != pgc_fingerprint(data, frame_len)) abort();
  if (fp == 0) return;
  pgc_cache_put(&cache, fp, PGC_ROUTE_READ);
  if (pgc_cache_get(&cache, fp) != PGC_ROUTE_READ) abort();
  pgc_cache_put(&cache, fp, PGC_ROUTE_WRITE);
  if (pgc_cache_get(&cache, fp) != PGC_ROUTE_WRITE) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 4) return 0;
  client_side(data + 4, size - 4, 1 + ((size_t)data[1] << 8 | data[2]) % 4096,
              data[3] & 1 ? 1024 * 1024 * 1024 : 8 + data[3]);
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
