/*
 * rwsplit's native forwarding core (Node-API). It runs on Node's own event loop (uv_poll on
 * duplicated file descriptors, no threads) and, for a request JavaScript has routed and sent,
 * moves the server's answer to the client: read() from the server, frames checked and tracked
 * (pgtrack.c) up to the expected ReadyForQuery, one send() per read to the client. At the last
 * expected ReadyForQuery, at any frame it does not handle, at a closed connection, it stops
 * and calls JavaScript back with what it forwarded and the bytes it read but did not forward.
 *
 * Ownership of a descriptor: JavaScript stops its own reading of the server socket before it
 * engages the core and starts it again in the callback, so exactly one reader exists at a
 * time. Toward the client the core writes only while JavaScript has nothing queued on that
 * socket and writes nothing itself (it has no reason to: the answer is not complete).
 * One buffer per server connection, allocated when the connection is opened: nothing is
 * allocated per message.
 *
 * Client to server (pgclient.c): JavaScript may arm a client that waits, idle, for its next
 * request. The core then reads it; one whole simple Query whose fingerprint is in the decision
 * cache (filled by JavaScript) is offered to JavaScript with its route, and JavaScript, which
 * keeps the pools, the balancing and the session's state, lends a backend by engaging it; the
 * core writes the request there and carries the answer as above. Anything else (a cache miss,
 * another message, pipelined bytes, the client closing) is handed back to JavaScript with the
 * bytes read, from a frame boundary, and Node reads the client again.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <node_api.h>
#include <uv.h>

#include "pgclient.h"
#include "pgtrack.h"

#define BUF_BYTES (64 * 1024)

/* What the callback reports (the first argument). */
enum { EV_DONE = 0, EV_HANDBACK = 1, EV_CLOSED = 2, EV_CLIENT_ERROR = 3 };

typedef struct fwd_s fwd_t;

typedef struct {
  uv_poll_t poll;
  int fd;
  int events; /* what the poll watches now (0: stopped) */
  int closed;
  int armed;      /* the core reads this client's next request */
  fwd_t *engaged; /* the server connection forwarding to this client now, if any */
  /* Reading requests (only when clientOpen got the callbacks): */
  uint8_t *rbuf;
  size_t rlen;
  uint32_t max_frame;
  uint64_t salt; /* the decision cache's namespace (one per classifier) */
  napi_env env;
  napi_ref on_request;
  napi_ref on_handback;
  napi_async_context async;
} client_t;

struct fwd_s {
  uv_poll_t poll;
  int fd;
  int polling;
  int closed;
  int engaged;
  int in_callback;
  int pending;     /* the event to report once the output is written (-1: none) */
  int read_error;  /* errno of a failed read, 0: end of stream */
  client_t *client;
  pgt_state st;
  uint8_t *buf;
  size_t start; /* output [start, fwd) not yet written */
  size_t fwd;   /* scanned and allowed to go */
  size_t len;   /* read so far */
  napi_env env;
  napi_ref callback;
  napi_async_context async;
  uint64_t sent; /* bytes sent to the client in this engagement */
};

static uint64_t g_engagements = 0;
static uint64_t g_bytes = 0;
static uint64_t g_requests = 0;  /* requests the core read and sent to a backend itself */
static uint64_t g_handbacks = 0; /* armed reads handed back to JavaScript */
static pgc_cache g_cache;        /* zeroed: empty */

static void on_backend(uv_poll_t *h, int status, int events);
static void on_client(uv_poll_t *h, int status, int events);

static uv_loop_t *loop_of(napi_env env) {
  uv_loop_t *loop = NULL;
  napi_get_uv_event_loop(env, &loop);
  return loop;
}

static void free_client(uv_handle_t *h) {
  client_t *c = (client_t *)h->data;
  close(c->fd);
  free(c->rbuf);
  free(c);
}

static void free_fwd(uv_handle_t *h) {
  fwd_t *f = (fwd_t *)h->data;
  close(f->fd);
  free(f->buf);
  free(f);
}

static void backend_poll(fwd_t *f, int on) {
  if (f->closed || f->polling == on) return;
  f->polling = on;
  if (on) uv_poll_start(&f->poll, UV_READABLE | UV_DISCONNECT, on_backend);
  else uv_poll_stop(&f->poll);
}

static void client_watch(client_t *c, int events) {
  if (c->closed || c->events == events) return;
  c->events = events;
  if (events) uv_poll_start(&c->poll, events, on_client);
  else uv_poll_stop(&c->poll);
}

static void client_poll(client_t *c, int on) { client_watch(c, on ? UV_WRITABLE : 0); }

/* Ends the engagement and tells JavaScript: event, completion record, bytes not forwarded. */
static void finish(fwd_t *f, int event) {
  backend_poll(f, 0);
  if (f->client) {
    client_poll(f->client, 0);
    f->client->engaged = NULL;
    f->client = NULL;
  }
  f->engaged = 0;
  f->pending = -1;
  napi_env env = f->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value argv[5], cb, recv, result;
  napi_create_int32(env, event, &argv[0]);
  void *data;
  napi_create_buffer_copy(env, f->st.nrec, f->st.rec, &data, &argv[1]);
  if (f->len > f->fwd) napi_create_buffer_copy(env, f->len - f->fwd, f->buf + f->fwd, &data, &argv[2]);
  else napi_get_undefined(env, &argv[2]);
  napi_create_int32(env, event == EV_CLOSED ? f->read_error : 0, &argv[3]);
  napi_create_double(env, (double)f->sent, &argv[4]);
  f->st.nrec = 0;
  f->sent = 0;
  f->start = f->fwd = f->len = 0;
  napi_get_reference_value(env, f->callback, &cb);
  napi_get_global(env, &recv); /* napi_make_callback wants an object */
  f->in_callback = 1;
  napi_status s = napi_make_callback(env, f->async, recv, cb, 5, argv, &result);
  f->in_callback = 0;
  if (s == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
  napi_close_handle_scope(env, scope);
}

/* Writes [start, fwd) to the client; 1 when all of it went, 0 when it must wait, -1 on error. */
static int flush_out(fwd_t *f) {
  while (f->start < f->fwd) {
    if (f->client == NULL) { /* the client left: its answer goes nowhere */
      f->start = f->fwd;
      break;
    }
    ssize_t n = send(f->client->fd, f->buf + f->start, f->fwd - f->start, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      f->start += (size_t)n;
      f->sent += (uint64_t)n;
      g_bytes += (uint64_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    return -1;
  }
  return 1;
}

/* Writes what may go; then reports a pending stop, or reads on. */
static void pump(fwd_t *f) {
  int w = flush_out(f);
  if (w < 0) {
    finish(f, EV_CLIENT_ERROR);
    return;
  }
  if (w == 0) {
    /* Backpressure: the server waits until the client has taken this. */
    backend_poll(f, 0);
    client_poll(f->client, 1);
    return;
  }
  if (f->client) client_poll(f->client, 0);
  if (f->pending >= 0) {
    finish(f, f->pending);
    return;
  }
  /* Keep only the unscanned tail (part of a header, a frame that must be seen whole). */
  if (f->fwd > 0) {
    size_t tail = f->len - f->fwd;
    if (tail > 0) memmove(f->buf, f->buf + f->fwd, tail);
    f->len = tail;
    f->start = f->fwd = 0;
  }
  backend_poll(f, 1);
}

static void scan(fwd_t *f) {
  pgt_stop stop;
  size_t n = pgt_scan(&f->st, f->buf + f->fwd, f->len - f->fwd, BUF_BYTES, &stop);
  f->fwd += n;
  if (stop == PGT_DONE) f->pending = EV_DONE;
  else if (stop == PGT_HANDBACK) f->pending = EV_HANDBACK;
}

static void on_backend(uv_poll_t *h, int status, int events) {
  fwd_t *f = (fwd_t *)h->data;
  (void)events;
  if (f->closed || !f->engaged) return;
  ssize_t n;
  do n = read(f->fd, f->buf + f->len, BUF_BYTES - f->len);
  while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && status == 0) return;
  if (n <= 0) {
    /* The server closed (or failed): what was forwarded is reported, the rest is JavaScript's. */
    f->read_error = n < 0 ? errno : (status < 0 ? -status : 0);
    f->pending = EV_CLOSED;
    pump(f);
    return;
  }
  f->len += (size_t)n;
  scan(f);
  pump(f);
}

static void client_readable(client_t *c, int status);

static void on_client(uv_poll_t *h, int status, int events) {
  client_t *c = (client_t *)h->data;
  (void)events;
  if (c->armed && !c->closed) {
    client_readable(c, status);
    return;
  }
  fwd_t *f = c->engaged;
  if (f == NULL || c->closed) {
    client_poll(c, 0);
    return;
  }
  if (status < 0) {
    finish(f, EV_CLIENT_ERROR);
    return;
  }
  pump(f);
}

/* Calls one of a client's callbacks; the result, or NULL when it threw (reported as fatal). */
static napi_value client_call(client_t *c, napi_ref ref, size_t argc, napi_value *argv) {
  napi_env env = c->env;
  napi_value cb, recv, result = NULL;
  napi_get_reference_value(env, ref, &cb);
  napi_get_global(env, &recv);
  napi_status s = napi_make_callback(env, c->async, recv, cb, argc, argv, &result);
  if (s == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
    return NULL;
  }
  return s == napi_ok ? result : NULL;
}

/* The armed read ends: JavaScript gets the bytes read (a frame boundary first) and reads on. */
static void handback(client_t *c, int eof) {
  c->armed = 0;
  client_watch(c, 0);
  g_handbacks++;
  napi_env env = c->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value argv[2];
  void *data;
  if (c->rlen > 0) napi_create_buffer_copy(env, c->rlen, c->rbuf, &data, &argv[0]);
  else napi_get_undefined(env, &argv[0]);
  c->rlen = 0;
  napi_get_boolean(env, eof, &argv[1]);
  client_call(c, c->on_handback, 2, argv);
  napi_close_handle_scope(env, scope);
}

/* Offers a cached request to JavaScript: 1 when it took it (it engaged a backend, or owns it). */
static int offer(client_t *c, uint8_t route, size_t frame_len) {
  napi_env env = c->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value argv[2], result;
  void *data;
  napi_create_uint32(env, route, &argv[0]);
  napi_create_buffer_copy(env, frame_len, c->rbuf, &data, &argv[1]);
  result = client_call(c, c->on_request, 2, argv);
  bool took = false;
  if (result != NULL) napi_get_value_bool(env, result, &took);
  napi_close_handle_scope(env, scope);
  return took;
}

static void client_readable(client_t *c, int status) {
  ssize_t n;
  do n = read(c->fd, c->rbuf + c->rlen, PGC_MAX_FRAME - c->rlen);
  while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && status == 0) return;
  if (n <= 0) {
    /* Closed or failed: Node reads the same end of stream and closes the session as usual. */
    handback(c, 1);
    return;
  }
  c->rlen += (size_t)n;
  size_t frame_len;
  pgc_verdict v = pgc_request(c->rbuf, c->rlen, c->max_frame, &frame_len);
  if (v == PGC_MORE && c->rlen < PGC_MAX_FRAME) return;
  if (v != PGC_QUERY) {
    handback(c, 0);
    return;
  }
  uint64_t fp = pgc_fingerprint(c->rbuf, frame_len);
  uint8_t route = fp == 0 ? PGC_ROUTE_NONE : pgc_cache_get(&g_cache, fp ^ c->salt);
  if (route == PGC_ROUTE_NONE) {
    handback(c, 0);
    return;
  }
  c->armed = 0;
  client_watch(c, 0);
  if (!offer(c, route, frame_len)) {
    if (!c->closed) handback(c, 0);
    return;
  }
  c->rlen = 0;
  fwd_t *f = c->engaged;
  /* Taken but not engaged: JavaScript runs the request its own way (it kept the frame). */
  if (f == NULL || c->closed) return;
  g_requests++;
  ssize_t w;
  do w = send(f->fd, c->rbuf, frame_len, MSG_NOSIGNAL | MSG_DONTWAIT);
  while (w < 0 && errno == EINTR);
  if (w != (ssize_t)frame_len) {
    /*
     * An idle server connection takes a few kilobytes at once; one that does not is broken.
     * A frame cut short is never run by the server: JavaScript drops the connection and runs
     * the request again elsewhere, as for a server lost before it answered.
     */
    f->read_error = w < 0 ? errno : EAGAIN;
    f->pending = EV_CLOSED;
    pump(f);
  }
}

/* ---- JavaScript API ---------------------------------------------------------------------- */

static napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

static napi_value fail(napi_env env, const char *msg) {
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static int dup_fd(napi_env env, napi_value v) {
  int32_t fd;
  if (napi_get_value_int32(env, v, &fd) != napi_ok || fd < 0) return -1;
  return dup(fd);
}

/*
 * clientOpen(fd[, maxFrameBytes, cacheSalt, onRequest(route, frame) -> took, onHandback(bytes, eof)])
 * -> handle. With the callbacks, the client can be armed (clientArm).
 */
static napi_value client_open(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], ext, name;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1) return fail(env, "clientOpen(fd)");
  int reads = argc == 5;
  uint32_t max_frame = 0, salt = 0;
  if (reads && (napi_get_value_uint32(env, argv[1], &max_frame) != napi_ok ||
                napi_get_value_uint32(env, argv[2], &salt) != napi_ok))
    return fail(env, "clientOpen: bad maxFrameBytes or cacheSalt");
  int fd = dup_fd(env, argv[0]);
  if (fd < 0) return fail(env, "clientOpen: cannot duplicate the descriptor");
  client_t *c = calloc(1, sizeof *c);
  uint8_t *rbuf = reads ? malloc(PGC_MAX_FRAME) : NULL;
  if (c == NULL || (reads && rbuf == NULL)) {
    free(c);
    free(rbuf);
    close(fd);
    return fail(env, "clientOpen: out of memory");
  }
  c->fd = fd;
  if (uv_poll_init(loop_of(env), &c->poll, fd) != 0) {
    close(fd);
    free(rbuf);
    free(c);
    return fail(env, "clientOpen: uv_poll_init failed");
  }
  c->poll.data = c;
  c->env = env;
  if (reads) {
    c->rbuf = rbuf;
    c->max_frame = max_frame;
    c->salt = (uint64_t)salt * 0x9E3779B97F4A7C15ULL;
    napi_create_reference(env, argv[3], 1, &c->on_request);
    napi_create_reference(env, argv[4], 1, &c->on_handback);
    napi_create_string_utf8(env, "rwsplit.request", NAPI_AUTO_LENGTH, &name);
    napi_async_init(env, NULL, name, &c->async);
  }
  napi_create_external(env, c, NULL, NULL, &ext);
  return ext;
}

static void *external(napi_env env, napi_value v) {
  void *p = NULL;
  napi_get_value_external(env, v, &p);
  return p;
}

/* clientClose(handle): a server connection forwarding to it carries on to the end of its answer. */
static napi_value client_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  client_t *c = argc ? external(env, argv[0]) : NULL;
  if (c == NULL || c->closed) return undefined(env);
  fwd_t *f = c->engaged;
  client_watch(c, 0);
  c->armed = 0;
  c->closed = 1;
  if (c->rbuf != NULL) {
    napi_delete_reference(env, c->on_request);
    napi_delete_reference(env, c->on_handback);
    napi_async_destroy(env, c->async);
  }
  if (f != NULL) {
    f->client = NULL;
    c->engaged = NULL;
    if (!f->closed && !f->in_callback) backend_poll(f, f->pending < 0);
  }
  uv_close((uv_handle_t *)&c->poll, free_client);
  return undefined(env);
}

/* backendOpen(fd, maxFrameBytes, callback(event, record, leftover, errno)) -> handle */
static napi_value backend_open(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], ext, name;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3) return fail(env, "backendOpen(fd, maxFrameBytes, callback)");
  uint32_t max_frame;
  if (napi_get_value_uint32(env, argv[1], &max_frame) != napi_ok) return fail(env, "backendOpen: bad maxFrameBytes");
  int fd = dup_fd(env, argv[0]);
  if (fd < 0) return fail(env, "backendOpen: cannot duplicate the descriptor");
  fwd_t *f = calloc(1, sizeof *f);
  uint8_t *buf = malloc(BUF_BYTES);
  if (f == NULL || buf == NULL) {
    free(f);
    free(buf);
    close(fd);
    return fail(env, "backendOpen: out of memory");
  }
  f->fd = fd;
  f->buf = buf;
  f->env = env;
  f->pending = -1;
  pgt_init(&f->st, max_frame, 0);
  if (uv_poll_init(loop_of(env), &f->poll, fd) != 0) {
    close(fd);
    free(buf);
    free(f);
    return fail(env, "backendOpen: uv_poll_init failed");
  }
  f->poll.data = f;
  napi_create_reference(env, argv[2], 1, &f->callback);
  napi_create_string_utf8(env, "rwsplit.forward", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &f->async);
  napi_create_external(env, f, NULL, NULL, &ext);
  return ext;
}

/*
 * backendClose(handle) -> [record, bytes sent] of an engagement cut short, or undefined: stops
 * and frees (JavaScript closes its own socket).
 */
static napi_value backend_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out = NULL;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  fwd_t *f = argc ? external(env, argv[0]) : NULL;
  if (f == NULL || f->closed) return undefined(env);
  if (f->engaged) {
    napi_value rec, sent;
    void *data;
    napi_create_buffer_copy(env, f->st.nrec, f->st.rec, &data, &rec);
    napi_create_double(env, (double)f->sent, &sent);
    napi_create_array_with_length(env, 2, &out);
    napi_set_element(env, out, 0, rec);
    napi_set_element(env, out, 1, sent);
  }
  backend_poll(f, 0);
  if (f->client) {
    client_poll(f->client, 0);
    f->client->engaged = NULL;
    f->client = NULL;
  }
  f->closed = 1;
  f->engaged = 0;
  napi_delete_reference(env, f->callback);
  napi_async_destroy(env, f->async);
  uv_close((uv_handle_t *)&f->poll, free_fwd);
  return out != NULL ? out : undefined(env);
}

/*
 * engage(backend, client, expectedReadyForQuery) -> boolean: the core reads the server's answer
 * until that many ReadyForQuery frames went to the client. JavaScript has stopped reading the
 * server socket and has nothing queued for the client.
 */
static napi_value engage(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  fwd_t *f = argc == 3 ? external(env, argv[0]) : NULL;
  client_t *c = argc == 3 ? external(env, argv[1]) : NULL;
  uint32_t expect = 0;
  napi_get_value_uint32(env, argv[2], &expect);
  int ok = f != NULL && c != NULL && !f->closed && !c->closed && !f->engaged && c->engaged == NULL &&
           expect > 0;
  if (ok) {
    f->engaged = 1;
    f->client = c;
    c->engaged = f;
    f->pending = -1;
    f->read_error = 0;
    f->start = f->fwd = f->len = 0;
    f->sent = 0;
    pgt_init(&f->st, f->st.max_frame, expect);
    g_engagements++;
    backend_poll(f, 1);
  }
  napi_get_boolean(env, ok, &out);
  return out;
}

/* expectMore(backend, n) -> boolean: more requests were sent on an engaged connection. */
static napi_value expect_more(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  fwd_t *f = argc == 2 ? external(env, argv[0]) : NULL;
  uint32_t n = 0;
  napi_get_value_uint32(env, argv[1], &n);
  /* Once the last answer is seen (a stop pending) it is too late: JavaScript takes the rest. */
  int ok = f != NULL && f->engaged && !f->closed && f->pending < 0 && !f->in_callback;
  if (ok) f->st.expect_z += n;
  napi_get_boolean(env, ok, &out);
  return out;
}

/* clientArm(client) -> boolean: the core reads the client's next request (Node's reading is stopped). */
static napi_value client_arm(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  client_t *c = argc ? external(env, argv[0]) : NULL;
  int ok = c != NULL && c->rbuf != NULL && !c->closed && !c->armed && c->engaged == NULL;
  if (ok) {
    c->armed = 1;
    c->rlen = 0;
    client_watch(c, UV_READABLE | UV_DISCONNECT);
  }
  napi_get_boolean(env, ok, &out);
  return out;
}

/* clientDisarm(client) -> bytes read and not handled, or undefined: JavaScript reads again. */
static napi_value client_disarm(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  client_t *c = argc ? external(env, argv[0]) : NULL;
  if (c == NULL || !c->armed) return undefined(env);
  c->armed = 0;
  client_watch(c, 0);
  if (c->rlen == 0) return undefined(env);
  void *data;
  napi_create_buffer_copy(env, c->rlen, c->rbuf, &data, &out);
  c->rlen = 0;
  return out;
}

/* cachePut(queryFrame, route, cacheSalt) -> boolean: false when the text has no fingerprint. */
static napi_value cache_put(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *data = NULL;
  size_t len = 0;
  uint32_t route = 0, salt = 0;
  int ok = argc == 3 && napi_get_buffer_info(env, argv[0], &data, &len) == napi_ok &&
           napi_get_value_uint32(env, argv[1], &route) == napi_ok &&
           napi_get_value_uint32(env, argv[2], &salt) == napi_ok &&
           (route == PGC_ROUTE_READ || route == PGC_ROUTE_WRITE);
  uint64_t fp = ok ? pgc_fingerprint(data, len) : 0;
  if (fp != 0) pgc_cache_put(&g_cache, fp ^ ((uint64_t)salt * 0x9E3779B97F4A7C15ULL), (uint8_t)route);
  napi_get_boolean(env, fp != 0, &out);
  return out;
}

/* fingerprint(queryFrame) -> hex string, or undefined when the text has none (tests). */
static napi_value fingerprint(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *data = NULL;
  size_t len = 0;
  if (argc < 1 || napi_get_buffer_info(env, argv[0], &data, &len) != napi_ok) return undefined(env);
  uint64_t fp = pgc_fingerprint(data, len);
  if (fp == 0) return undefined(env);
  char hex[17];
  static const char digits[] = "0123456789abcdef";
  for (int i = 0; i < 16; i++) hex[i] = digits[(fp >> (60 - 4 * i)) & 15];
  hex[16] = 0;
  napi_create_string_utf8(env, hex, 16, &out);
  return out;
}

/* stats() -> [engagements, bytes forwarded, requests read natively, armed reads handed back] */
static napi_value stats(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value arr, v;
  napi_create_array_with_length(env, 4, &arr);
  napi_create_double(env, (double)g_engagements, &v);
  napi_set_element(env, arr, 0, v);
  napi_create_double(env, (double)g_bytes, &v);
  napi_set_element(env, arr, 1, v);
  napi_create_double(env, (double)g_requests, &v);
  napi_set_element(env, arr, 2, v);
  napi_create_double(env, (double)g_handbacks, &v);
  napi_set_element(env, arr, 3, v);
  return arr;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"clientOpen", NULL, client_open, NULL, NULL, NULL, napi_default, NULL},
      {"clientClose", NULL, client_close, NULL, NULL, NULL, napi_default, NULL},
      {"backendOpen", NULL, backend_open, NULL, NULL, NULL, napi_default, NULL},
      {"backendClose", NULL, backend_close, NULL, NULL, NULL, napi_default, NULL},
      {"engage", NULL, engage, NULL, NULL, NULL, napi_default, NULL},
      {"expectMore", NULL, expect_more, NULL, NULL, NULL, napi_default, NULL},
      {"clientArm", NULL, client_arm, NULL, NULL, NULL, napi_default, NULL},
      {"clientDisarm", NULL, client_disarm, NULL, NULL, NULL, napi_default, NULL},
      {"cachePut", NULL, cache_put, NULL, NULL, NULL, napi_default, NULL},
      {"fingerprint", NULL, fingerprint, NULL, NULL, NULL, napi_default, NULL},
      {"stats", NULL, stats, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
