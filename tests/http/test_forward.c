/*
 * http/forward.c: the forwarding rules of docs/http.md, without the binary.
 * Each row is a request (or response) head as the client (origin) sent it
 * and what the other side gets: the rewritten head, or the status the
 * client gets instead. The e2e tests named in docs/http.md check the same
 * rules through real sockets.
 */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "http/forward.h"
#include "http/msg.h"

static struct http_msg msg;
static struct core_hdr hdrs[64];
static char out[4096];

#define EACH(c, table)                                                                             \
    for (const __typeof__(table[0]) *c = table; c < table + sizeof(table) / sizeof(table[0]); c++)

static const struct http_fwd_policy pol = {
    .max_uri_bytes = 64, .max_body_bytes = 1000, .default_host = "next-hop"};

/* Parse a head (which the tests write whole) with the proxy's own parser. */
static int parse(llhttp_type_t type, const char *head)
{
    memset(&msg, 0, sizeof(msg));
    return http_msg_head(&msg, type, head, strlen(head), hdrs, 64);
}

struct req_case {
    const char *name;
    const char *in;
    int status;       /* 0: forwarded as want */
    const char *want; /* the head the origin gets */
};

/* ---- requests: rewritten and forwarded (docs/http.md, "Rewritten and forwarded") ---- */

static const struct req_case forwarded[] = {
    {"plain GET goes as it came", "GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nX-A: 1\r\n\r\n", 0,
     "GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nX-A: 1\r\n\r\n"},
    {"hop-by-hop fields removed",
     "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: 5\r\n"
     "Proxy-Connection: x\r\nTE: trailers\r\nTrailer: X\r\nUpgrade: h2c\r\nX-Secret: s\r\n"
     "X-Kept: k\r\n\r\n",
     0, "GET / HTTP/1.1\r\nHost: a\r\nX-Kept: k\r\n\r\n"},
    {"absolute-form becomes origin-form, its authority the Host",
     "GET http://b.example:8080/p?q HTTP/1.1\r\nHost: a\r\n\r\n", 0,
     "GET /p?q HTTP/1.1\r\nHost: b.example:8080\r\n\r\n"},
    {"absolute-form without a path asks for /", "GET http://b.example HTTP/1.1\r\nHost: a\r\n\r\n",
     0, "GET / HTTP/1.1\r\nHost: b.example\r\n\r\n"},
    {"HTTP/1.0 without Host gets the upstream's name", "GET / HTTP/1.0\r\n\r\n", 0,
     "GET / HTTP/1.1\r\nHost: next-hop\r\n\r\n"},
    {"a WebSocket upgrade keeps Upgrade and says Connection: upgrade",
     "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 0,
     "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"},
    {"an h2c upgrade is not forwarded: the request goes as plain HTTP/1.1",
     "GET /h HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
     "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
     0, "GET /h HTTP/1.1\r\nHost: a\r\n\r\n"},
    {"an upgrade that offers HTTP/2.0 beside websocket is not forwarded",
     "GET /h HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
     "Upgrade: HTTP/2.0\r\n\r\n",
     0, "GET /h HTTP/1.1\r\nHost: a\r\n\r\n"},
    {"an upgrade in HTTP/1.0 is ignored",
     "GET /ws HTTP/1.0\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 0,
     "GET /ws HTTP/1.1\r\nHost: a\r\n\r\n"},
    {"chunked body framing is kept",
     "POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 0,
     "POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"},
    {"OPTIONS * is forwarded", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 0,
     "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"},
    {"an extension method is forwarded", "PURGE /x HTTP/1.1\r\nHost: a\r\n\r\n", 0,
     "PURGE /x HTTP/1.1\r\nHost: a\r\n\r\n"},
    {"IPv6 literal with a port is a Host", "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", 0,
     "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"},
    {"a target with escapes and sub-delims goes byte for byte",
     "GET /p;v=1/%7Euser/./../x?q=a+b&&r=%00&s HTTP/1.1\r\nHost: a\r\n\r\n", 0,
     "GET /p;v=1/%7Euser/./../x?q=a+b&&r=%00&s HTTP/1.1\r\nHost: a\r\n\r\n"},
    {"a target of delimiters goes byte for byte",
     "GET /!$&'()*+,;=:@-._~/?/?:@!$&'()*+,;= HTTP/1.1\r\nHost: a\r\n\r\n", 0,
     "GET /!$&'()*+,;=:@-._~/?/?:@!$&'()*+,;= HTTP/1.1\r\nHost: a\r\n\r\n"},
    {"double slashes and a second ? are not normalised",
     "GET //double//slash/?b=c?d=e HTTP/1.1\r\nHost: a\r\n\r\n", 0,
     "GET //double//slash/?b=c?d=e HTTP/1.1\r\nHost: a\r\n\r\n"},
    {"absolute-form with only a query gets a / before it",
     "GET http://b.example?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", 0,
     "GET /?x=1 HTTP/1.1\r\nHost: b.example\r\n\r\n"},
    {"repeated fields and the platform's fields keep their order",
     "GET /o HTTP/1.1\r\nHost: a\r\nX-Multi: 1\r\nX-Forwarded-For: 203.0.113.9, 10.0.0.1\r\n"
     "X-Multi: 2\r\nTrue-Client-IP: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n"
     "section-io-id: 0123abcd\r\nAccept: */*\r\nX-Multi: 3\r\n\r\n",
     0,
     "GET /o HTTP/1.1\r\nHost: a\r\nX-Multi: 1\r\nX-Forwarded-For: 203.0.113.9, 10.0.0.1\r\n"
     "X-Multi: 2\r\nTrue-Client-IP: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n"
     "section-io-id: 0123abcd\r\nAccept: */*\r\nX-Multi: 3\r\n\r\n"},
    {"a backslash in the query is data", "GET /q?a=\\ HTTP/1.1\r\nHost: a\r\n\r\n", 0,
     "GET /q?a=\\ HTTP/1.1\r\nHost: a\r\n\r\n"},
    {"TAB and obs-text in a value pass unchanged",
     "GET / HTTP/1.1\r\nHost: a\r\nX-V: a\tb caf\xc3\xa9\r\n\r\n", 0,
     "GET / HTTP/1.1\r\nHost: a\r\nX-V: a\tb caf\xc3\xa9\r\n\r\n"},
    {"Content-Length framing is kept, at limits.max_body_bytes too",
     "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n", 0,
     "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n"},
    {"an extension method with a body is framed like any request",
     "BREW /pot HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n", 0,
     "BREW /pot HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n"},
    {"HTTP/1.0 with a Host keeps that one Host", "GET / HTTP/1.0\r\nHost: h\r\n\r\n", 0,
     "GET / HTTP/1.1\r\nHost: h\r\n\r\n"},
    {"Expect: 100-continue is forwarded",
     "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", 0,
     "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"},
};

/* ---- requests: refused (docs/http.md, "Rejected", "Limits") ---- */

static const struct req_case refused[] = {
    {"two Host fields", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, NULL},
    {"no Host in HTTP/1.1", "GET / HTTP/1.1\r\nX: y\r\n\r\n", 400, NULL},
    {"Host with an open bracket", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400, NULL},
    {"Host that is only a port", "GET / HTTP/1.1\r\nHost: :80\r\n\r\n", 400, NULL},
    {"Host with two colons", "GET / HTTP/1.1\r\nHost: a:b:c\r\n\r\n", 400, NULL},
    {"absolute-form with a bad authority", "GET http://a:b:c/ HTTP/1.1\r\nHost: a\r\n\r\n", 400,
     NULL},
    {"absolute-form with userinfo", "GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, NULL},
    {"absolute-form of another scheme", "GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, NULL},
    {"Transfer-Encoding in HTTP/1.0",
     "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 400, NULL},
    {"a final coding other than chunked (RFC 9112 6.3: 400)",
     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400, NULL},
    {"codings before a final chunked (RFC 9112 6.1: 501)",
     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, NULL},
    {"codings before chunked over two field lines",
     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"
     "\r\n",
     501, NULL},
    {"CONNECT", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 501, NULL},
    {"a fragment in the target (never sent; origins cut the path there)",
     "GET /admin/x#/../../public HTTP/1.1\r\nHost: a\r\n\r\n", 400, NULL},
    {"a backslash in the path (some origins take it for a slash)",
     "GET /x\\..\\admin HTTP/1.1\r\nHost: a\r\n\r\n", 400, NULL},
    {"a fragment after the query", "GET /x?a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400, NULL},
    {"a target over limits.max_uri_bytes",
     "GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n"
     "Host: a\r\n\r\n",
     414, NULL},
    {"a Content-Length over limits.max_body_bytes",
     "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n", 413, NULL},
    {"an HTTP/0.9 request line (no version)", "GET /\r\nHost: a\r\n\r\n", 400, NULL},
    {"HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 400, NULL},
    {"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400, NULL},
    {"a truncated version", "GET / HTTP/1.\r\nHost: a\r\n\r\n", 400, NULL},
    {"a lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n", 400, NULL},
    {"Host with a space", "GET / HTTP/1.1\r\nHost: exa mple.com\r\n\r\n", 400, NULL},
    {"Host with a slash", "GET / HTTP/1.1\r\nHost: a.example/evil\r\n\r\n", 400, NULL},
    {"absolute-form with an empty authority", "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400,
     NULL},
    {"a relative target", "GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400, NULL},
    {"* for a method other than OPTIONS", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400, NULL},
};

Test(http_forward, requests_forwarded)
{
    EACH(c, forwarded)
    {
        struct http_fwd_req f;
        long n;

        cr_assert_eq(parse(HTTP_REQUEST, c->in), 0, "%s: does not parse", c->name);
        n = http_fwd_request(&msg, &pol, out, sizeof(out), &f);
        cr_assert_gt(n, 0, "%s: refused with %ld", c->name, -n);
        cr_assert(n == (long)strlen(c->want) && !memcmp(out, c->want, (size_t)n),
                  "%s:\ngot  %.*s\nwant %s", c->name, (int)n, out, c->want);
    }
}

/* The status the client gets: the parser's refusal (http/msg.c), or the rules'. */
Test(http_forward, requests_refused)
{
    EACH(c, refused)
    {
        struct http_fwd_req f;
        int r = parse(HTTP_REQUEST, c->in);

        if (r == 0)
            r = (int)http_fwd_request(&msg, &pol, out, sizeof(out), &f);
        cr_assert_eq(r, -c->status, "%s: got %d", c->name, -r);
    }
}

/* What the rules find out about a request, which the state machine acts on. */
Test(http_forward, request_properties)
{
    struct http_fwd_req f;

    cr_assert_eq(parse(HTTP_REQUEST, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    cr_assert_gt(http_fwd_request(&msg, &pol, out, sizeof(out), &f), 0);
    cr_assert(f.idempotent && f.keep_alive && !f.has_body && !f.http10 && !f.upgrade);
    cr_assert(f.host_sent.len == 1 && f.host_sent.p[0] == 'a');

    cr_assert_eq(parse(HTTP_REQUEST, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n"), 0);
    cr_assert_gt(http_fwd_request(&msg, &pol, out, sizeof(out), &f), 0);
    cr_assert(!f.idempotent && f.has_body, "a POST with a body is never sent twice");

    cr_assert_eq(parse(HTTP_REQUEST, "PURGE / HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    cr_assert_gt(http_fwd_request(&msg, &pol, out, sizeof(out), &f), 0);
    cr_assert(!f.idempotent, "an unknown method is not idempotent");

    cr_assert_eq(parse(HTTP_REQUEST, "GET / HTTP/1.0\r\n\r\n"), 0);
    cr_assert_gt(http_fwd_request(&msg, &pol, out, sizeof(out), &f), 0);
    cr_assert(f.http10 && !f.keep_alive, "HTTP/1.0 closes unless it asks for keep-alive");

    cr_assert_eq(parse(HTTP_REQUEST, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"), 0);
    cr_assert_gt(http_fwd_request(&msg, &pol, out, sizeof(out), &f), 0);
    cr_assert(!f.keep_alive);

    cr_assert_eq(parse(HTTP_REQUEST, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), 0);
    cr_assert_gt(http_fwd_request(&msg, &pol, out, sizeof(out), &f), 0);
    cr_assert(f.http10 && f.keep_alive, "HTTP/1.0 stays open when it asks for keep-alive");

    cr_assert_eq(parse(HTTP_REQUEST, "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                                     "Upgrade: websocket\r\n\r\n"),
                 0);
    cr_assert_gt(http_fwd_request(&msg, &pol, out, sizeof(out), &f), 0);
    cr_assert(f.upgrade, "an HTTP/1.1 upgrade may be granted (101)");

    static const struct {
        const char *offer;
        int granted; /* may be: the origin's 101 is relayed */
    } upgrades[] = {
        /* an upgrade to HTTP itself, or naming no protocol: not forwarded */
        {"h2c", 0},
        {"H2C", 0},
        {"h2", 0},
        {" h2c ", 0},
        {"websocket, h2c", 0},
        {"HTTP/2.0", 0},
        {"http/1.1", 0},
        {"websocket,HTTP/2", 0},
        {"h2c/1", 0},
        {"", 0},
        {" , ", 0},
        /* not #protocol (token [/ token]): nothing to be sure of */
        {"h2c;x", 0},
        {"websocket;h2c", 0},
        {"h2c x", 0},
        {"websocket/", 0},
        {"/2", 0},
        {"web\"socket\"", 0},
        /* other protocols */
        {"websocket", 1},
        {"WebSocket/13, foo", 1},
        {"connect-udp", 1},
        {"h2x", 1},
        {"https", 1},
        {"TLS/1.2", 1},
        {" websocket ,, foo/1 ", 1},
    };
    for (size_t i = 0; i < sizeof(upgrades) / sizeof(upgrades[0]); i++) {
        char req[256];

        snprintf(req, sizeof(req),
                 "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n",
                 upgrades[i].offer);
        cr_assert_eq(parse(HTTP_REQUEST, req), 0, "%s", req);
        cr_assert_gt(http_fwd_request(&msg, &pol, out, sizeof(out), &f), 0);
        cr_assert_eq(f.upgrade, upgrades[i].granted, "Upgrade: %s: %s", upgrades[i].offer,
                     upgrades[i].granted ? "may be granted"
                                         : "no upgrade the proxy forwards (a 101 to it is a 502)");
    }

    cr_assert_eq(parse(HTTP_REQUEST, "GET / HTTP/1.0\r\nConnection: Upgrade\r\n"
                                     "Upgrade: websocket\r\n\r\n"),
                 0);
    cr_assert_gt(http_fwd_request(&msg, &pol, out, sizeof(out), &f), 0);
    cr_assert(!f.upgrade, "HTTP/1.0 asks for no upgrade: a 101 to it is a 502");
}

/*
 * Only these are sent again after a keep-alive race (docs/http.md, "Keep-alive
 * and the upstream race"), and only without a body.
 */
Test(http_forward, retry_only_idempotent_without_body)
{
    static const struct {
        const char *name;
        const char *in;
        int idempotent, has_body;
    } cases[] = {
        {"GET", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1, 0},
        {"HEAD", "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", 1, 0},
        {"OPTIONS", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 1, 0},
        {"PUT", "PUT / HTTP/1.1\r\nHost: a\r\n\r\n", 1, 0},
        {"DELETE", "DELETE / HTTP/1.1\r\nHost: a\r\n\r\n", 1, 0},
        {"TRACE", "TRACE / HTTP/1.1\r\nHost: a\r\n\r\n", 1, 0},
        {"PUT with a body", "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n", 1, 1},
        {"GET with a chunked body",
         "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 1, 1},
        {"GET with Content-Length: 0", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", 1,
         0},
        {"POST", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", 0, 0},
        {"PATCH", "PATCH / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", 0, 0},
        {"an extension method", "BREW / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 0},
    };

    EACH(c, cases)
    {
        struct http_fwd_req f;

        cr_assert_eq(parse(HTTP_REQUEST, c->in), 0, "%s: does not parse", c->name);
        cr_assert_gt(http_fwd_request(&msg, &pol, out, sizeof(out), &f), 0, "%s", c->name);
        cr_assert_eq(f.idempotent, c->idempotent, "%s: idempotent %d", c->name, f.idempotent);
        cr_assert_eq(f.has_body, c->has_body, "%s: has_body %d", c->name, f.has_body);
    }
}

/* limits.max_uri_bytes is exact: a target of that many bytes passes, one more is 414. */
Test(http_forward, max_uri_bytes_exact)
{
    char target[128], in[256];
    struct http_fwd_req f;

    for (size_t len = 1; len <= pol.max_uri_bytes + 2; len++) {
        long n;

        target[0] = '/';
        memset(target + 1, 'a', len - 1);
        target[len] = '\0';
        snprintf(in, sizeof(in), "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", target);
        cr_assert_eq(parse(HTTP_REQUEST, in), 0);
        n = http_fwd_request(&msg, &pol, out, sizeof(out), &f);
        if (len <= pol.max_uri_bytes)
            cr_assert_gt(n, 0, "a target of %zu bytes: %ld", len, n);
        else
            cr_assert_eq(n, -414, "a target of %zu bytes: %ld", len, n);
    }
}

/*
 * Every byte in a Host value (as e2e_hardening::host_value_bytes): reg-name
 * bytes pass but '%' (no percent-encoded host: origins that decode it would
 * serve a host the rules did not match), everything else is 400 from the
 * parser or the rules.
 */
Test(http_forward, host_value_bytes)
{
    static const char ok[] = "-._~!$&'()*+,;=";

    for (int b = 1; b < 256; b++) {
        char in[64];
        struct http_fwd_req f;
        int alnum = (b >= '0' && b <= '9') || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z');
        int r;

        if (b == '\r' || b == '\n')
            continue; /* a line end, not a byte of the value */
        snprintf(in, sizeof(in), "GET / HTTP/1.1\r\nHost: a%cb\r\n\r\n", b);
        r = parse(HTTP_REQUEST, in);
        if (r == 0)
            r = http_fwd_request(&msg, &pol, out, sizeof(out), &f) > 0 ? 0 : -400;
        cr_assert_eq(r, alnum || strchr(ok, b) ? 0 : -400, "Host byte 0x%02x: %d", b, r);
    }
}

/* A rewritten head that does not fit the room for it is 431. */
Test(http_forward, request_over_the_room_is_431)
{
    struct http_fwd_req f;
    const char *in = "GET / HTTP/1.1\r\nHost: a\r\nX-Long: 0123456789012345678901234567890\r\n\r\n";

    cr_assert_eq(parse(HTTP_REQUEST, in), 0);
    cr_assert_eq(http_fwd_request(&msg, &pol, out, 40, &f), -431);
}

/* ---- responses (docs/http.md, "Responses") ---- */

struct resp_case {
    const char *name;
    const char *in;
    struct http_fwd_resp o;
    const char *want;
};

static const struct resp_case responses[] = {
    {"a keep-alive response goes as it came",
     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\n\r\n",
     {.final = 1, .keep_alive = 1},
     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\n\r\n"},
    {"hop-by-hop fields removed",
     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: "
     "timeout=5\r\nX-Hop: h\r\nUpgrade: h2c\r\n\r\n",
     {.final = 1, .keep_alive = 1},
     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"},
    {"the client's connection closes: Connection: close",
     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
     {.final = 1, .keep_alive = 0},
     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"},
    {"HTTP/1.0 keep-alive is said",
     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
     {.final = 1, .keep_alive = 1, .http10 = 1},
     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n"},
    {"chunked to an HTTP/1.0 client: Transfer-Encoding goes, the close ends it",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
     {.final = 1, .dechunk = 1, .http10 = 1},
     "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"},
    {"an interim response says nothing of the connection",
     "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n",
     {.final = 0, .keep_alive = 0},
     "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"},
    {"101 keeps Upgrade and says Connection: upgrade",
     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
     {.final = 1, .keep_alive = 1},
     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"},
    {"repeated fields keep their order and are never merged",
     "HTTP/1.1 200 OK\r\nSet-Cookie: a=1; Path=/\r\nX-Order-1: a\r\nSet-Cookie: b=2; HttpOnly\r\n"
     "X-Order-2: b\r\nCache-Control: no-store\r\nCache-Control: private\r\nContent-Length: 2\r\n"
     "\r\n",
     {.final = 1, .keep_alive = 1},
     "HTTP/1.1 200 OK\r\nSet-Cookie: a=1; Path=/\r\nX-Order-1: a\r\nSet-Cookie: b=2; HttpOnly\r\n"
     "X-Order-2: b\r\nCache-Control: no-store\r\nCache-Control: private\r\nContent-Length: 2\r\n"
     "\r\n"},
    {"an HTTP/1.0 origin's head goes out as HTTP/1.1",
     "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n",
     {.final = 1, .keep_alive = 1},
     "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"},
};

Test(http_forward, responses_rewritten)
{
    EACH(c, responses)
    {
        long n;

        cr_assert_eq(parse(HTTP_RESPONSE, c->in), 0, "%s: does not parse", c->name);
        cr_assert_eq(http_fwd_response_check(&msg, 1), 0, "%s", c->name);
        n = http_fwd_response(&msg, &c->o, out, sizeof(out));
        cr_assert(n == (long)strlen(c->want) && !memcmp(out, c->want, (size_t)n),
                  "%s:\ngot  %.*s\nwant %s", c->name, (int)n, out, c->want);
    }
}

/* #26.8: a status without meaning has no framing: 502, never relayed. */
Test(http_forward, responses_refused)
{
    static const char *const bad[] = {
        "HTTP/1.1 099 Low\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 600 High\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 999 High\r\nContent-Length: 2\r\n\r\n",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse(HTTP_RESPONSE, bad[i]) != 0)
            continue; /* refused by the parser: a 502 as well */
        cr_assert_eq(http_fwd_response_check(&msg, 1), -1, "%s", bad[i]);
    }
    cr_assert_eq(parse(HTTP_RESPONSE, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"), 0);
    cr_assert_eq(http_fwd_response_check(&msg, 0), -1, "101 without an upgrade asked for");
    cr_assert_eq(http_fwd_response_check(&msg, 1), 0);
}

Test(http_forward, response_over_the_room_fails)
{
    cr_assert_eq(parse(HTTP_RESPONSE, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"), 0);
    cr_assert_eq(http_fwd_response(&msg, &(struct http_fwd_resp){.final = 1}, out, 20), -1);
}

/* ---- local answers (docs/http.md, "Local answers") ---- */

Test(http_forward, local_answers)
{
    int head;
    int n = http_fwd_answer(502, 1, 0, out, sizeof(out), &head);
    static const char want[] = "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\n"
                               "Content-Length: 16\r\nConnection: keep-alive\r\n\r\n"
                               "502 Bad Gateway\n";

    cr_assert(n == (int)strlen(want) && !memcmp(out, want, (size_t)n), "%.*s", n, out);
    cr_assert_eq(head, n - 16);
    n = http_fwd_answer(400, 0, 1, out, sizeof(out), &head);
    cr_assert_eq(n, head, "the answer to HEAD has no body");
    cr_assert(strstr(out, "Connection: close\r\n"));
    cr_assert(strstr(out, "Content-Length: 16\r\n"), "the length of the body it would have");
    cr_assert_eq(http_fwd_answer(431, 1, 0, out, 64, &head), -1, "too small a room");
    static const int statuses[] = {400, 408, 413, 414, 431, 501, 502, 503, 504};
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
        cr_assert_str_neq(http_fwd_reason(statuses[i]), "Error", "%d has its reason", statuses[i]);
}
