/*
 * The forwarding rules: what goes upstream and back, decided from a parsed
 * message (http/msg.h) and a policy, written as bytes. No sockets, no
 * state machine: http/proxy.c calls these, and tests/http/test_forward.c
 * checks each rule of docs/http.md without starting the binary.
 *
 * - http_fwd_request(): a request's checks after parsing (version, Host,
 *   framing, method, target, limits) and the head the origin gets
 *   (hop-by-hop fields removed, absolute-form to origin-form, Host).
 * - http_fwd_response_check() and http_fwd_response(): whether an origin's
 *   head can be relayed, and the head the client gets.
 * - http_fwd_answer(): the proxy's own answers (400, 408, 502, ...).
 */
#ifndef RINGPROXY_HTTP_FORWARD_H
#define RINGPROXY_HTTP_FORWARD_H

#include <stddef.h>
#include <stdint.h>

#include "core/str.h"
#include "http/msg.h"

struct http_fwd_policy {
    size_t max_uri_bytes;
    uint64_t max_body_bytes;  /* 0: no limit */
    const char *default_host; /* Host for a request that carries none (HTTP/1.0) */
};

/* What the request rules found out about a request they accepted. */
struct http_fwd_req {
    uint8_t http10;
    uint8_t upgrade;           /* an upgrade is asked for (and may be granted: 101) */
    uint8_t has_body;          /* Content-Length > 0 or chunked */
    uint8_t idempotent;        /* may be sent again after a keep-alive race */
    uint8_t keep_alive;        /* the client's connection may stay open after the response */
    struct core_str host_sent; /* the Host the origin gets (the log's hostname) */
};

/*
 * Check the parsed request m and write the head for the origin into out
 * (cap bytes). Returns its length, or -status: 400 (broken), 413 (body over
 * the limit), 414 (target over the limit), 431 (the rewritten head does not
 * fit), 501 (CONNECT, a transfer coding other than chunked).
 */
long http_fwd_request(const struct http_msg *m, const struct http_fwd_policy *pol, char *out,
                      size_t cap, struct http_fwd_req *ret);

/*
 * Can this response head be relayed? 0, or -1 (the client gets 502): the
 * version is 1.x, the status is 100..599 (llhttp takes any three digits,
 * and a status without meaning has no framing), and 101 only when an
 * upgrade was asked for.
 */
int http_fwd_response_check(const struct http_msg *m, int upgrade_asked);

struct cfg_rules;
struct http_rules_verdict;
struct http_rules_req;

struct http_fwd_resp {
    uint8_t final;      /* the final response (not an interim 1xx) */
    uint8_t dechunk;    /* the client can't take chunked (HTTP/1.0): Transfer-Encoding goes */
    uint8_t keep_alive; /* the client's connection stays open after it */
    uint8_t http10;     /* the client speaks HTTP/1.0 */
    /* edge rules (http/rules.h): the request's verdict; all NULL for no edits */
    const struct cfg_rules *rs;
    const struct http_rules_verdict *rv;
    const struct http_rules_req *rr; /* for templates; its npath is not read */
};

/*
 * Write the head the client gets into out (cap bytes): its length, or -1
 * when it does not fit. With o->rv and rv->any_resp, the final response's
 * fields that the rules' response_headers remove or set are dropped and
 * the fields they set or add are appended before the Connection field;
 * an interim 1xx goes as it came.
 */
long http_fwd_response(const struct http_msg *m, const struct http_fwd_resp *o, char *out,
                       size_t cap);

/*
 * The proxy's own answer: "STATUS REASON\n" as text/plain, with
 * Connection: keep-alive or close. head_only (the request was HEAD) leaves
 * the body out. Returns the bytes written (the head's in *ret_head), or -1
 * when cap is too small.
 */
int http_fwd_answer(int status, int keep_alive, int head_only, char *out, size_t cap,
                    int *ret_head);

/* The reason phrase of a status the proxy answers with. */
const char *http_fwd_reason(int status);

#endif
