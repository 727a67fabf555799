#include "pgtrack.h"

#include <string.h>

/* The length field counts itself (FrameReader's MIN_TYPED_LENGTH). */
#define MIN_LENGTH 4
#define HEADER 5

void pgt_init(pgt_state *s, uint32_t max_frame, uint32_t expect_z) {
  s->max_frame = max_frame;
  s->expect_z = expect_z;
  s->body_left = 0;
  s->nrec = 0;
}

static uint32_t be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/*
 * CommandComplete of DDL (tag CREATE/ALTER/DROP) starts a new schema epoch in JavaScript
 * (statement-registry.ts, isDdlComplete): the same test, so such a frame is handed back.
 */
static int is_ddl_tag(const uint8_t *tag, size_t n) {
  static const char *const tags[] = {"CREATE ", "ALTER ", "DROP "};
  for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++) {
    size_t k = strlen(tags[i]);
    if (n >= k && memcmp(tag, tags[i], k) == 0) return 1;
  }
  return 0;
}

/* Frames that complete a request in the response tracker (response-tracker.ts, completes()). */
static int completes(uint8_t type) {
  switch (type) {
    case '1': case '2': case '3': case 'T': case 'n': case 'C': case 'I': case 's':
      return 1;
    default:
      return 0;
  }
}

size_t pgt_scan(pgt_state *s, const uint8_t *buf, size_t len, size_t cap, pgt_stop *stop) {
  size_t i = 0;
  for (;;) {
    if (s->body_left > 0) {
      size_t take = len - i < s->body_left ? len - i : s->body_left;
      i += take;
      s->body_left -= (uint32_t)take;
      if (s->body_left > 0) break;
    }
    if (s->expect_z == 0) {
      *stop = PGT_DONE;
      return i;
    }
    if (len - i < HEADER) break;
    const uint8_t type = buf[i];
    const uint32_t length = be32(buf + i + 1);
    /* Bad lengths are JavaScript's to report (FrameTooLargeError, MalformedFrameError). */
    if (length < MIN_LENGTH || length > s->max_frame) goto handback;
    /* Room for this frame's record (two bytes at most): else JavaScript catches up first. */
    if (s->nrec + 2 > PGT_RECORD_MAX) goto handback;
    const size_t whole = (size_t)length + 1;
    switch (type) {
      case 'Z':
        if (length != 5) goto handback;
        if (len - i < whole) goto more;
        {
          const uint8_t status = buf[i + HEADER];
          if (status != 'I' && status != 'T' && status != 'E') goto handback;
          s->rec[s->nrec++] = 'Z';
          s->rec[s->nrec++] = status;
        }
        s->expect_z--;
        i += whole;
        continue;
      case 'C':
        if (whole > cap) goto handback;
        if (len - i < whole) goto more;
        if (is_ddl_tag(buf + i + HEADER, length - MIN_LENGTH)) goto handback;
        break;
      case '1': case '2': case '3': case 'T': case 'n': case 'I': case 's':
      case 'D': case 't': case 'N': case 'A': case 'S':
        break;
      default:
        /* ErrorResponse, COPY, authentication, anything unusual: JavaScript decides. */
        goto handback;
    }
    if (completes(type)) s->rec[s->nrec++] = type;
    if (len - i >= whole) {
      i += whole;
    } else {
      /* Streamed through: only the type byte mattered. */
      s->body_left = (uint32_t)(whole - (len - i));
      i = len;
      break;
    }
  }
more:
  *stop = PGT_MORE;
  return i;
handback:
  *stop = PGT_HANDBACK;
  return i;
}
