/*
 * Client-side framing and the decision cache of the native forwarding core. The core reads a
 * client's request itself only for the common case: one whole simple Query, nothing behind
 * it, whose text's fingerprint JavaScript has put in the cache with its route. Everything
 * else is JavaScript's, as are the bytes.
 *
 * The fingerprint is the text with its literals (standalone numbers, standard '...' strings)
 * replaced by a placeholder, so `WHERE aid = 7` and `WHERE aid = 8` share a decision: the
 * classifier's verdict (read or write, transaction, session state) never depends on a literal's
 * value. Texts it cannot read with certainty have no fingerprint and always go to JavaScript:
 * comments (they may carry a routing hint), dollar quotes, E'' and other prefixed strings,
 * backslashes, more than one statement, a NUL, anything longer than PGC_MAX_TEXT.
 *
 * Pure: no I/O, no allocation. The fuzz target drives it with arbitrary bytes.
 */
#ifndef RWSPLIT_PGCLIENT_H
#define RWSPLIT_PGCLIENT_H

#include <stddef.h>
#include <stdint.h>

/* Longest Query frame the core takes itself (bigger ones go to JavaScript). */
#define PGC_MAX_FRAME 4096
#define PGC_MAX_TEXT (PGC_MAX_FRAME - 6)
#define PGC_CACHE_SLOTS 4096

typedef enum {
  PGC_MORE = 0,     /* a Query frame has begun and is not whole yet: read on */
  PGC_QUERY = 1,    /* buf is exactly one whole Query frame (its length: the return value) */
  PGC_HANDBACK = 2, /* anything else: JavaScript takes the bytes */
} pgc_verdict;

/* Route values in the cache (0: no decision). */
enum { PGC_ROUTE_NONE = 0, PGC_ROUTE_READ = 1, PGC_ROUTE_WRITE = 2 };

typedef struct {
  uint64_t fp[PGC_CACHE_SLOTS];
  uint8_t route[PGC_CACHE_SLOTS];
} pgc_cache;

/* What buf[0..len) holds; *frame_len: the Query frame's size when PGC_QUERY. */
pgc_verdict pgc_request(const uint8_t *buf, size_t len, uint32_t max_frame, size_t *frame_len);

/* The fingerprint of a Query frame's text (the frame whole, type byte first); 0: none. */
uint64_t pgc_fingerprint(const uint8_t *frame, size_t frame_len);

/* A direct-mapped cache: a new decision replaces whatever held its slot. */
void pgc_cache_clear(pgc_cache *c);
void pgc_cache_put(pgc_cache *c, uint64_t fp, uint8_t route);
uint8_t pgc_cache_get(const pgc_cache *c, uint64_t fp);

#endif
