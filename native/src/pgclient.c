#include "pgclient.h"

#include <string.h>

#define HEADER 5

static uint32_t be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

pgc_verdict pgc_request(const uint8_t *buf, size_t len, uint32_t max_frame, size_t *frame_len) {
  *frame_len = 0;
  if (len == 0) return PGC_MORE;
  if (buf[0] != 'Q') return PGC_HANDBACK;
  if (len < HEADER) return PGC_MORE;
  const uint32_t length = be32(buf + 1);
  /* Bad or large lengths are JavaScript's to report or to take (FrameReader's limits). */
  if (length < 5 || length > max_frame || (size_t)length + 1 > PGC_MAX_FRAME) return PGC_HANDBACK;
  const size_t whole = (size_t)length + 1;
  if (len < whole) return PGC_MORE;
  /* Something behind the Query (pipelined requests): JavaScript takes the lot. */
  if (len > whole) return PGC_HANDBACK;
  *frame_len = whole;
  return PGC_QUERY;
}

static int ident_char(uint8_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '$' || c >= 0x80;
}

#define FNV_OFFSET 14695981039346656037ULL
#define FNV_PRIME 1099511628211ULL
#define MIX(h, c) ((h) = ((h) ^ (uint8_t)(c)) * FNV_PRIME)

uint64_t pgc_fingerprint(const uint8_t *frame, size_t frame_len) {
  if (frame_len < HEADER + 1 || frame[0] != 'Q') return 0;
  const uint8_t *s = frame + HEADER;
  size_t n = frame_len - HEADER - 1; /* the text without its terminating NUL */
  if (frame[frame_len - 1] != 0 || n > PGC_MAX_TEXT) return 0;
  uint64_t h = FNV_OFFSET;
  int ended = 0; /* a ';' was seen: only whitespace may follow */
  size_t i = 0;
  while (i < n) {
    const uint8_t c = s[i];
    if (c == 0 || c == '\\') return 0;
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f') {
      MIX(h, ' ');
      while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == '\f')) i++;
      continue;
    }
    if (ended) return 0;
    if (c == ';') {
      ended = 1;
      i++;
      continue;
    }
    if ((c == '-' && i + 1 < n && s[i + 1] == '-') || (c == '/' && i + 1 < n && s[i + 1] == '*')) return 0;
    if (c == '\'') {
      /* A standard string; a prefixed one (E'', U&'', B'', X'', N'') follows an identifier char. */
      if (i > 0 && (ident_char(s[i - 1]) || s[i - 1] == '&')) return 0;
      i++;
      for (;;) {
        if (i >= n) return 0; /* unterminated */
        if (s[i] == 0 || s[i] == '\\') return 0;
        if (s[i] == '\'') {
          if (i + 1 < n && s[i + 1] == '\'') {
            i += 2;
            continue;
          }
          break;
        }
        i++;
      }
      i++;
      MIX(h, 0x01); /* the literal's placeholder */
      continue;
    }
    if (c == '"') {
      /* A quoted identifier is a name: kept whole. */
      MIX(h, c);
      i++;
      for (;;) {
        if (i >= n || s[i] == 0) return 0;
        if (s[i] == '"') {
          if (i + 1 < n && s[i + 1] == '"') {
            MIX(h, '"');
            MIX(h, '"');
            i += 2;
            continue;
          }
          break;
        }
        MIX(h, s[i]);
        i++;
      }
      MIX(h, '"');
      i++;
      continue;
    }
    if (c >= '0' && c <= '9' && (i == 0 || !ident_char(s[i - 1]))) {
      /* A number standing alone (not part of a name such as t1 or $1). */
      while (i < n && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.')) i++;
      MIX(h, 0x02);
      continue;
    }
    if (c == '$') return 0; /* dollar quotes, parameters: not in a simple Query we take */
    MIX(h, c);
    i++;
  }
  /* 0 means "none". */
  return h == 0 ? 1 : h;
}

void pgc_cache_clear(pgc_cache *c) { memset(c, 0, sizeof *c); }

void pgc_cache_put(pgc_cache *c, uint64_t fp, uint8_t route) {
  if (fp == 0) return;
  const size_t slot = (size_t)(fp ^ (fp >> 32)) & (PGC_CACHE_SLOTS - 1);
  c->fp[slot] = fp;
  c->route[slot] = route;
}

uint8_t pgc_cache_get(const pgc_cache *c, uint64_t fp) {
  if (fp == 0) return PGC_ROUTE_NONE;
  const size_t slot = (size_t)(fp ^ (fp >> 32)) & (PGC_CACHE_SLOTS - 1);
  return c->fp[slot] == fp ? c->route[slot] : PGC_ROUTE_NONE;
}
