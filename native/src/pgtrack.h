/*
 * Response tracking for the native forwarding core: walks a server's byte stream frame by
 * frame with the same framing limits as the TypeScript FrameReader (src/pg/protocol), and
 * says how far the bytes may go to the client without JavaScript seeing them.
 *
 * Pure: no I/O, no allocation. The fuzz target drives it with arbitrary bytes.
 */
#ifndef RWSPLIT_PGTRACK_H
#define RWSPLIT_PGTRACK_H

#include <stddef.h>
#include <stdint.h>

/* Completion frames remembered for JavaScript's response tracker (type, and status after 'Z'). */
#define PGT_RECORD_MAX 256

typedef enum {
  PGT_MORE = 0,     /* everything scanned may go; more bytes are needed */
  PGT_DONE = 1,     /* the last expected ReadyForQuery ends at the returned offset */
  PGT_HANDBACK = 2, /* the frame at the returned offset is JavaScript's to handle */
} pgt_stop;

typedef struct {
  uint32_t max_frame;  /* largest accepted length field (FrameReader's maxFrameBytes) */
  uint32_t expect_z;   /* ReadyForQuery frames still to come */
  uint32_t body_left;  /* bytes of a frame being streamed through that are not here yet */
  uint32_t nrec;       /* bytes used in rec */
  uint8_t rec[PGT_RECORD_MAX];
} pgt_state;

void pgt_init(pgt_state *s, uint32_t max_frame, uint32_t expect_z);

/*
 * Scans buf[0..len) from a frame boundary (or from inside a frame being streamed). `cap` is
 * the most bytes the caller can hold: a frame whose content must be seen whole (CommandComplete)
 * and is larger is handed back. Returns how many bytes may be forwarded; *stop says why it
 * stopped there.
 */
size_t pgt_scan(pgt_state *s, const uint8_t *buf, size_t len, size_t cap, pgt_stop *stop);

#endif
