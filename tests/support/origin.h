/*
 * A small HTTP/1.1 origin for tests and the demo: thread per connection,
 * keep-alive, Content-Length and chunked request bodies. Routes:
 *   GET  /size/N        N bytes ('a'..'z' repeating), Content-Length
 *   GET  /asset/N       N bytes with the head nginx sends for a static file
 *   GET  /chunked/N     N bytes, chunked in pieces of up to 1000 bytes
 *   GET  /eof/N         N bytes, no length, connection closed after
 *   GET  /status/NNN    empty body with that status (204/304 without body)
 *   GET  /sleep/MS      waits MS ms, then "slept\n"
 *   GET  /headers       the request head as received, as the body
 *   POST /echo          the request body back (Content-Length)
 *   anything else       "hello from origin\n"
 * A test can instead script the raw bytes of the next responses.
 */
#ifndef RINGPROXY_TESTS_ORIGIN_H
#define RINGPROXY_TESTS_ORIGIN_H

#include <stddef.h>
#include <stdint.h>

struct origin;

/* Listen on addr:port (port 0 = any); NULL on failure. */
struct origin *origin_start(const char *addr, unsigned port);
unsigned origin_port(const struct origin *o);
void origin_stop(struct origin *o);

/* 1 when p is the first n bytes of a body of /size/N, /asset/N, /chunked/N or /eof/N. */
int origin_body_ok(const char *p, size_t n);

/* Connections accepted and requests served so far. */
unsigned origin_accepts(const struct origin *o);
unsigned origin_requests(const struct origin *o);

/*
 * The head of the most recent request, NUL-terminated, copied into buf
 * (empty when none yet); and every byte received so far on all connections.
 */
void origin_last_head(struct origin *o, char *buf, size_t cap);
size_t origin_received(struct origin *o, char *buf, size_t cap);

/*
 * Answer the next request with these exact bytes (not parsed), then act
 * as told: close_after = 1 closes the connection after writing. A NULL
 * raw with close_after closes without answering. One script per request,
 * used in order; up to 8 queued.
 */
void origin_script(struct origin *o, const char *raw, size_t len, int close_after);

#endif
