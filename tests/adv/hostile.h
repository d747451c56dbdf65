/*
 * The adversarial layer's hostile origin (tests/adv/adv.c drives it through
 * the real ringproxy). It listens on 127.0.0.1 (port 0), one thread per
 * connection, and answers by the request path `/<mode>/<tag>?n=N&v=V&b=B`:
 * mode picks the misbehaviour, v its variant, n the response body length,
 * b the request body length. Every request also carries `X-Tag: <tag>` and
 * `Cookie: secret=<tag>`; the origin never echoes either header, so a
 * client that sees a `secret=` or another request's tag saw someone else's
 * bytes. Bodies are adv_body(tag, n), so both sides can check them, except
 * the error mode's, which are POISONED and other requests' tags and secrets:
 * only an error page may reach the client in their place.
 */
#ifndef RINGPROXY_TESTS_ADV_HOSTILE_H
#define RINGPROXY_TESTS_ADV_HOSTILE_H

#include <stddef.h>
#include <stdint.h>

enum adv_mode {
    AM_OK = 0,   /* 200 Content-Length; v1: stray response in the same write, v2: junk later */
    AM_CHUNKED,  /* 200 chunked; v1: chunk sizes with many leading zeros, v2: extensions, trailer */
    AM_HEAD204,  /* no-body answers (204, 304, HEAD), then stray POISONED bytes */
    AM_EARLY,    /* 401 before the request body is read, then close */
    AM_MIDCLOSE, /* part of the body, then close */
    AM_BIGHEAD,  /* a ~30 KiB head, 10 of 1000 body bytes, then close */
    AM_CONNLEN,  /* Connection: naming the framing fields (or Host) */
    AM_BADCHUNK, /* broken chunk framing, connection left open */
    AM_STALL,    /* reads the request, never answers */
    AM_INTERIM,  /* 100 and/or 103 before the final answer */
    AM_ERROR,    /* an error status (500 503 404 403) whose body is POISONED and foreign tags */
    /* must stay last */
    AM_COUNT
};

#define ADV_POISON "POISONED"
#define ADV_JUNK ADV_POISON "\r\n\r\n" /* not a response: read as one, it is a 502 */
#define ADV_POISON_RESPONSE "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n" ADV_POISON
#define ADV_BIGHEAD_BODY 1000 /* announced; 10 bytes are sent */

const char *adv_mode_name(enum adv_mode m);
/* Number of variants of a mode (v is 0 .. count - 1). */
int adv_mode_variants(enum adv_mode m);

/*
 * Byte i of the body of n bytes for tag: a 1 KiB unit "[tag]" followed by
 * letters, repeated. adv_body() writes all n bytes to out.
 */
char adv_body_byte(const char *tag, size_t tlen, unsigned hash, size_t i);
unsigned adv_tag_hash(const char *tag);
void adv_body(const char *tag, size_t n, char *out);

/*
 * Find the next tag "c<digits>-r<digits>-<seed>" in s[0..len) at or after
 * *pos. Returns its start and sets *tlen, or NULL when there is none.
 */
const char *adv_tag_find(const char *s, size_t len, const char *seed, size_t *pos, size_t *tlen);

struct hostile;

/* Start the origin; seed makes its random choices reproducible. NULL on failure. */
struct hostile *hostile_start(uint64_t seed);
unsigned hostile_port(const struct hostile *h);
/* Close every connection, stop, wait (bounded) for the threads, free. */
void hostile_stop(struct hostile *h);
unsigned long hostile_requests(struct hostile *h);

/*
 * From now on every request must carry the field name exactly once, with
 * value (NULL: the field must be absent): what an edge rule's request
 * header edits promise. Call before the proxy sends requests; at most 4.
 * A request without it is one of hostile_problems().
 */
void hostile_expect_header(struct hostile *h, const char *name, const char *value);

/*
 * Problems the origin saw itself: a request whose tag, X-Tag, Cookie or
 * body disagree (another client's bytes), a request the proxy should never
 * have sent (a smuggled one). Returns the count; the first few messages,
 * one a line, go to buf.
 */
unsigned hostile_problems(struct hostile *h, char *buf, size_t cap);

/*
 * 1 when tag's request reached the origin right after junk (ok, v2) was
 * written on its connection: it crossed the junk on the way, the proxy could
 * not have known, and a 502 for it is not the proxy's fault.
 */
int hostile_excused(struct hostile *h, const char *tag);
/* What the origin noticed about tag's request (stray bytes before it on its connection): 1 if any.
 */
int hostile_note(struct hostile *h, const char *tag, char *buf, size_t cap);
/* The excused tags, each with how soon its request came; returns the count. */
size_t hostile_excused_list(struct hostile *h, char *buf, size_t cap);

#endif
