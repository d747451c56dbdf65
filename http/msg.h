/*
 * One HTTP/1.x message as seen by the proxy: a strict scan of the head's
 * bytes that closes llhttp 8.1.0's holes (CR without LF, obs-fold, bare LF,
 * control bytes) and finds where the head ends and which limit it breaks;
 * llhttp's parse of the complete, contiguous head into views; and our own
 * strict walk over the body (Content-Length, chunked, read-until-close),
 * which tells where the message ends in each buffer. llhttp never sees a
 * body: 8.1.0 takes any two bytes as the CRLF after chunk data and lets CR
 * and obs-fold through in trailers.
 */
#ifndef RINGPROXY_HTTP_MSG_H
#define RINGPROXY_HTTP_MSG_H

#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#include "core/str.h"

struct http_scan {
    uint32_t len;      /* head bytes seen */
    uint32_t line_len; /* bytes of the current line */
    uint16_t lines;
    uint8_t state;
};

struct http_limits {
    uint32_t max_head;
    uint32_t max_line;
    uint32_t max_first_line;
    uint32_t max_lines;
};

/*
 * Scan the next n bytes of a head. Returns the number of bytes that belong
 * to the head (all n unless the head ends inside them; *ret_done is then 1),
 * or a negative HTTP status: -400 malformed, -414 first line too long, -431
 * head, line or header count too large; after an error s is of no further use.
 */
long http_scan(struct http_scan *s, const struct http_limits *l, const char *p, size_t n,
               int *ret_done);

/* Header fields the proxy looks at, found in one pass over the parsed head. */
enum http_hk {
    HK_OTHER = 0,
    HK_HOST,
    HK_CONNECTION,
    HK_KEEP_ALIVE,
    HK_PROXY_CONNECTION,
    HK_TE,
    HK_TRAILER,
    HK_UPGRADE,
    HK_TRANSFER_ENCODING,
    HK_CONTENT_LENGTH,
    HK_CONTENT_TYPE,
    HK_REFERER,
    HK_USER_AGENT,
    HK_X_FORWARDED_PROTO,
    HK_SECTION_IO_ID,
    HK_SECTION_IO_TAG,
    HK_TRUE_CLIENT_IP,
    HK_AUTHORIZATION,
    HK_X_FORWARDED_FOR,
    /* must stay last */
    HK_COUNT
};

/* Which known field a name is (case-insensitive), or HK_OTHER. Parsed headers carry it in kind. */
enum http_hk http_hk_of(struct core_str name);

/* Hop-by-hop whatever Connection says (RFC 9110 7.6.1). */
static inline int http_hk_hop_by_hop(enum http_hk k)
{
    return k == HK_CONNECTION || k == HK_KEEP_ALIVE || k == HK_PROXY_CONNECTION || k == HK_TE ||
           k == HK_TRAILER || k == HK_UPGRADE;
}

/* Set by the platform in front (C10); the rules and the access log go by them. */
static inline int http_hk_platform(enum http_hk k)
{
    return k == HK_TRUE_CLIENT_IP || k == HK_X_FORWARDED_FOR || k == HK_X_FORWARDED_PROTO ||
           k == HK_SECTION_IO_ID || k == HK_SECTION_IO_TAG;
}

/*
 * The next element of a comma-separated list (RFC 9110 5.6.1) at *i, without
 * the whitespace around it; empty elements are skipped. 0 at the end.
 */
int http_list_next(struct core_str v, size_t *i, struct core_str *ret);

struct http_msg {
    llhttp_t parser;
    struct core_str method;
    struct core_str target;
    struct core_str reason;
    struct core_hdr *hdrs; /* storage owned by the caller */
    uint16_t nhdrs;
    uint16_t max_hdrs;
    uint8_t no_body;    /* responses: the request was HEAD */
    uint8_t complete;   /* the whole message has been walked */
    uint8_t body;       /* enum http_body_kind */
    uint8_t cstate;     /* chunked decoder state */
    uint8_t cdigits;    /* significant hex digits of the chunk size so far */
    uint8_t chex;       /* the chunk size has a digit (leading zeros count here only) */
    uint8_t ext_method; /* requests: a method token llhttp does not know (not idempotent) */
    uint8_t tname_len;  /* request trailers: bytes of the current trailer name, folded */
    char tname[17];     /* its first bytes (core_name_fold1), as long as a name checked */
    uint32_t trailer_len;
    uint32_t chunk_extra; /* chunk-size lines' extensions and leading zeros so far */
    uint64_t remaining;   /* body bytes left (length), or of the current chunk */
    uint64_t data_bytes;  /* body data walked so far, framing not counted */
    uint8_t too_many;
    uint8_t count[HK_COUNT]; /* occurrences, saturating at 255 */
    int16_t first[HK_COUNT]; /* index of the first occurrence, -1 when absent */
    /* Chunk data as decoded, when on_body is set (HTTP/1.0 clients of chunked responses). */
    void (*on_body)(void *ctx, const char *p, size_t n);
    void *ctx;
};

/* Most options (tokens) the Connection fields of one message may list. */
#define HTTP_MAX_CONN_TOKENS 16

/*
 * Parse a complete head (as found by http_scan) of type HTTP_REQUEST or
 * HTTP_RESPONSE. hdrs has room for max_hdrs entries. Returns 0 or a negative
 * HTTP status (-400; -431 for too many headers). On success, m->complete
 * tells whether the message has no body, and every field named by a
 * Connection option has hop set. A Connection field that names a framing
 * field (Content-Length, Transfer-Encoding, Host) or lists more than
 * HTTP_MAX_CONN_TOKENS options is malformed (-400): framing is never
 * hop-by-hop. A request method that llhttp 8.1.0 does not know is taken as
 * any other token (RFC 9110 9.1), with ext_method set.
 */
int http_msg_head(struct http_msg *m, llhttp_type_t type, const char *p, size_t n,
                  struct core_hdr *hdrs, uint16_t max_hdrs);

enum http_body_kind {
    HB_NONE = 0, /* the message ended with its head */
    HB_LENGTH,
    HB_CHUNKED,
    HB_EOF, /* responses without a length: the body ends when the origin closes */
    /* must stay last */
    HB_COUNT
};

/* Largest trailer section accepted after a chunked body. */
#define HTTP_MAX_TRAILER 8192
/*
 * Most bytes of chunk extensions and of leading zeros in chunk sizes, all
 * chunk-size lines of one message together: they are framing, not body, so
 * limits.max_body_bytes does not count them, and without a bound per
 * message they would carry any amount of data to the origin (in one line
 * or a line per one-byte chunk). Clients send neither.
 */
#define HTTP_MAX_CHUNK_EXTRA 4096

/*
 * Walk n body bytes. Returns 0 when all were body and the message goes on,
 * 1 when the message ended after *ret_used bytes, -1 on malformed framing
 * (bad chunk size or extension, chunk data not followed by exactly CRLF, a
 * trailer with a bare CR, obs-fold, a control byte or no colon; in a request,
 * a trailer field that frames, routes, is hop-by-hop or is the platform's:
 * trailer_refused()).
 */
int http_msg_body(struct http_msg *m, const char *p, size_t n, size_t *ret_used);

/* The end of a read-until-close body: 1 when that ends the message, else -1. */
int http_msg_eof(struct http_msg *m);

/* Value of the first field of kind k, or an absent view. */
static inline struct core_str http_msg_known(const struct http_msg *m, enum http_hk k)
{
    return m->first[k] >= 0 ? m->hdrs[m->first[k]].value : (struct core_str){0};
}

/* First header named name (case-insensitive), or an absent view. */
struct core_str http_msg_get(const struct http_msg *m, const char *name, size_t len);
#define HTTP_MSG_GET(m, lit) http_msg_get((m), (lit), sizeof(lit) - 1)

/* Number of headers named name. */
unsigned http_msg_count(const struct http_msg *m, const char *name, size_t len);
#define HTTP_MSG_COUNT(m, lit) http_msg_count((m), (lit), sizeof(lit) - 1)

/* Is tok one of the comma-separated tokens of v (case-insensitive)? */
int http_token_in(struct core_str v, const char *tok, size_t len);

extern const uint8_t http_tchar[256];

/* A tchar per RFC 9110. */
static inline int http_is_tchar(unsigned char c)
{
    return http_tchar[c];
}

#endif
