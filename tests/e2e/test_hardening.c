/*
 * Hardening, end to end (docs/http.md): what the proxy accepts, rejects and
 * rewrites, proven over raw sockets on both sides. A rejection test checks
 * what the client got and then sends a valid "sentinel" request: it must be
 * the first thing the origin ever received, so nothing of the bad request
 * (or of a request smuggled inside it) reached the origin. Tests that need
 * byte-level control of the origin (100-continue, early answers, connect
 * timeout) use a raw listening socket driven from the test itself.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "tests/e2e/fixture.h"

/*
 * For errors found in the body (the head may already be on its way): the
 * origin never got a complete request and never saw the bytes at and after
 * marker.
 */
static void assert_no_request_completed(const char *marker)
{
    const char *buf = fx_sentinel();

    cr_assert_eq(origin_requests(origin), 1,
                 "the origin completed the rejected request; it received:\n%s",
                 h_shown(buf, strlen(buf)));
    cr_assert_null(strstr(buf, marker), "the origin received bytes past the error:\n%s",
                   h_shown(buf, strlen(buf)));
}

/* No line of the access log mentions needle (e.g. a smuggled request's path). */
static void assert_log_lacks(const char *needle)
{
    char *out;

    h_msleep(100);
    out = h_slurp(px.out_path);
    cr_assert_null(strstr(out, needle),
                   "the proxy handled a request it should never have seen:\n%s", out);
    free(out);
}

/* A request the head checks must refuse: status want, closed, nothing forwarded. */
#define REJECTS(name, want, raw) FX_REJECTS(e2e_hardening, name, want, raw)

/* A request whose body framing breaks: 400, closed, no request completes at the origin. */
#define REJECTS_BODY(name, raw)                                                                    \
    Test(e2e_hardening, name, .init = fx_up_grace, .fini = fx_down)                                \
    {                                                                                              \
        static const char req[] = raw;                                                             \
        fx_expect_answer_and_close(req, sizeof(req) - 1, 400);                                     \
        assert_no_request_completed("SMUGGLE");                                                    \
    }

/* ==== 1. llhttp 8.1.0's holes ======================================== */

/* CVE-2023-30589: llhttp takes a lone CR as a line end; the TE would become real. */
REJECTS(llhttp_cr_without_lf_in_value_is_400, 400,
        "GET / HTTP/1.1\r\nHost: a\r\nX-Abc: \rxTransfer-Encoding: chunked\r\n\r\n"
        "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
REJECTS(llhttp_obs_fold_space_is_400, 400,
        "GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n")
REJECTS(llhttp_obs_fold_tab_is_400, 400,
        "GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n\tTransfer-Encoding: chunked\r\n\r\n")

/* A body-less response with Content-Length: the next response must be intact. */
static void no_body_then_next(const char *req, int no_body, const char *script, int want)
{
    static const char next[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
    struct h_resp r;
    int fd = h_connect(px.port);

    origin_script(origin, script, strlen(script), 0);
    origin_script(origin, next, sizeof(next) - 1, 0);
    cr_assert_eq(h_sends(fd, req), 0);
    cr_assert_eq(h_read_response(fd, &r, no_body), 0);
    cr_assert_eq(r.status, want);
    h_resp_free(&r);
    cr_assert_eq(h_sends(fd, "GET /next HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0, "the next response on the connection is broken");
    cr_assert_eq(r.status, 200, "the next response is not where it should be:\n%s", r.head);
    cr_assert_eq(r.body_len, 3);
    cr_assert_arr_eq(r.body, "abc", 3);
    h_resp_free(&r);
    h_close(fd);
}

Test(e2e_hardening, origin_204_with_content_length_has_no_body, .init = fx_up_grace,
     .fini = fx_down)
{
    no_body_then_next("GET /a HTTP/1.1\r\nHost: a\r\n\r\n", 0,
                      "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", 204);
}

Test(e2e_hardening, origin_304_with_content_length_has_no_body, .init = fx_up_grace,
     .fini = fx_down)
{
    no_body_then_next("GET /a HTTP/1.1\r\nHost: a\r\n\r\n", 0,
                      "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", 304);
}

Test(e2e_hardening, head_response_with_content_length_has_no_body, .init = fx_up_grace,
     .fini = fx_down)
{
    no_body_then_next("HEAD /a HTTP/1.1\r\nHost: a\r\n\r\n", 1,
                      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 200);
}

/* An origin that does send bytes after a 204: they are not the client's. */
Test(e2e_hardening, origin_204_stray_body_bytes_never_reach_client, .init = fx_up_grace,
     .fini = fx_down)
{
    no_body_then_next("GET /a HTTP/1.1\r\nHost: a\r\n\r\n", 0,
                      "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello", 204);
}

/* ==== 2. request validation ============================================ */

REJECTS(cl_with_te_is_400, 400,
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
REJECTS(te_with_cl_is_400, 400,
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
        "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
/* llhttp 8.1.0 does not count an empty Transfer-Encoding: both framings would pass. */
REJECTS(te_empty_with_cl_is_400, 400,
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\nContent-Length: 5\r\n\r\n"
        "0\r\n\r\n")
REJECTS(te_empty_is_400, 400, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n")
REJECTS(two_different_cl_is_400, 400,
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
/* RFC 9110 8.6 allows merging equal values; we are strict (docs/http.md). */
REJECTS(two_equal_cl_is_400, 400,
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello")
REJECTS(cl_list_is_400, 400, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello")
REJECTS(cl_1x_is_400, 400, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\nx")
REJECTS(cl_negative_is_400, 400, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\nx")
REJECTS(cl_plus_is_400, 400, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx")
REJECTS(cl_empty_is_400, 400, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n")
REJECTS(cl_hex_is_400, 400, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x1\r\n\r\nx")
REJECTS(cl_overflow_is_400, 400,
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\nx")
/* RFC 9112 6.3: chunked not final in a request: 400 and close. */
REJECTS(te_gzip_is_400, 400,
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"
        "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
REJECTS(te_chunked_then_gzip_is_400, 400,
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n")
REJECTS(te_identity_is_400, 400,
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n")
REJECTS(te_chunked_twice_is_400, 400,
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
/* Framing is clear but we apply no coding but chunked: 501 (RFC 9112 6.1). */
REJECTS(te_gzip_then_chunked_is_501, 501,
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n")
REJECTS(te_unknown_chunked_lookalike_is_400, 400,
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n")
/* Two field lines are one list (RFC 9110 5.3): "chunked, gzip" and "gzip, chunked". */
REJECTS(te_chunked_line_then_gzip_line_is_400, 400,
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
        "Transfer-Encoding: gzip\r\n\r\n0\r\n\r\n")
REJECTS(te_gzip_line_then_chunked_line_is_501, 501,
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n"
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
REJECTS(te_in_http10_is_400, 400, "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
REJECTS(te_space_before_colon_is_400, 400,
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding : chunked\r\n\r\n"
        "0\r\n\r\n")

REJECTS_BODY(chunk_size_not_hex_is_400,
             "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
             "zz\r\nSMUGGLE\r\n0\r\n\r\n")
REJECTS_BODY(chunk_size_overflow_is_400,
             "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
             "ffffffffffffffffff\r\nSMUGGLE\r\n0\r\n\r\n")
REJECTS_BODY(chunk_data_longer_than_size_is_400,
             "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
             "5\r\nhelloSMUGGLE\r\n0\r\n\r\n")

REJECTS(space_before_colon_is_400, 400, "GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n")
REJECTS(tab_before_colon_is_400, 400, "GET / HTTP/1.1\r\nHost: a\r\nX-A\t: b\r\n\r\n")
REJECTS(host_space_before_colon_is_400, 400, "GET / HTTP/1.1\r\nHost : a\r\n\r\n")
REJECTS(empty_field_name_is_400, 400, "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n")
REJECTS(non_token_field_name_is_400, 400, "GET / HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n")
REJECTS(nul_in_value_is_400, 400, "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\0b\r\n\r\n")
REJECTS(nul_in_name_is_400, 400, "GET / HTTP/1.1\r\nHost: a\r\nX\0A: b\r\n\r\n")
REJECTS(cr_in_name_is_400, 400, "GET / HTTP/1.1\r\nHost: a\r\nX-\rA: b\r\n\r\n")
REJECTS(ctl_in_value_is_400, 400,
        "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x01"
        "b\r\n\r\n")
REJECTS(esc_in_value_is_400, 400, "GET / HTTP/1.1\r\nHost: a\r\nX-A: \x1b[31mred\r\n\r\n")
REJECTS(del_in_value_is_400, 400,
        "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x7f"
        "b\r\n\r\n")
REJECTS(ctl_in_name_is_400, 400,
        "GET / HTTP/1.1\r\nHost: a\r\nX-\x01"
        "A: b\r\n\r\n")
REJECTS(space_in_target_is_400, 400, "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n")
REJECTS(tab_in_target_is_400, 400, "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n")
REJECTS(ctl_in_target_is_400, 400,
        "GET /a\x01"
        "b HTTP/1.1\r\nHost: a\r\n\r\n")
REJECTS(nul_in_target_is_400, 400, "GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n")
REJECTS(del_in_target_is_400, 400,
        "GET /a\x7f"
        "b HTTP/1.1\r\nHost: a\r\n\r\n")
REJECTS(relative_target_is_400, 400, "GET a/b HTTP/1.1\r\nHost: a\r\n\r\n")
REJECTS(bad_method_token_is_400, 400, "GE(T / HTTP/1.1\r\nHost: a\r\n\r\n")
REJECTS(leading_space_is_400, 400, " GET / HTTP/1.1\r\nHost: a\r\n\r\n")
REJECTS(version_1_2_is_400, 400, "GET / HTTP/1.2\r\nHost: a\r\n\r\n")
REJECTS(version_2_0_is_400, 400, "GET / HTTP/2.0\r\nHost: a\r\n\r\n")
REJECTS(version_truncated_is_400, 400, "GET / HTTP/1.\r\nHost: a\r\n\r\n")
REJECTS(version_lowercase_is_400, 400, "GET / http/1.1\r\nHost: a\r\n\r\n")
REJECTS(http09_request_line_is_400, 400, "GET /\r\n\r\n")
REJECTS(missing_host_http11_is_400, 400, "GET / HTTP/1.1\r\nX-A: b\r\n\r\n")
REJECTS(two_hosts_is_400, 400, "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n")
/* RFC 9112 3.2: a Host field with an invalid value is a 400. */
REJECTS(host_with_space_is_400, 400, "GET / HTTP/1.1\r\nHost: exa mple.com\r\n\r\n")
REJECTS(host_with_slash_is_400, 400, "GET / HTTP/1.1\r\nHost: a.example/evil\r\n\r\n")
/*
 * No percent-encoded host: origins that decode it (WHATWG URL) would serve
 * internal.example.com where the rules matched something else.
 */
REJECTS(host_percent_encoded_is_400, 400, "GET / HTTP/1.1\r\nHost: internal%2eexample.com\r\n\r\n")
REJECTS(absolute_form_authority_percent_encoded_is_400, 400,
        "GET http://internal%2eexample.com/x HTTP/1.1\r\nHost: a\r\n\r\n")
/*
 * Another case of a known method: frameworks that upper-case the method
 * would run DELETE past a rule that denies it (nginx refuses these too).
 */
REJECTS(method_lowercase_delete_is_400, 400, "delete /x HTTP/1.1\r\nHost: a\r\n\r\n")
REJECTS(method_mixed_case_connect_is_400, 400, "Connect a:443 HTTP/1.1\r\nHost: a\r\n\r\n")

/* Every byte in a Host value: reg-name, IP-literal and port bytes pass, all else is 400. */
Test(e2e_hardening, host_value_bytes, .init = fx_up_grace, .fini = fx_down)
{
    /*
     * reg-name bytes; ':', '[' and ']' are structure (a port, an IP literal):
     * "a:b" and "a[b" are not host[:port] (e2e_edges::malformed_authorities_are_400)
     */
    static const char ok[] = "-._~!$&'()*+,;=";

    for (int b = 1; b < 256; b++) {
        char req[64];
        struct h_resp r;
        int alnum = (b >= '0' && b <= '9') || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z');
        int want = alnum || strchr(ok, b) ? 200 : 400;

        if (b == '\r' || b == '\n')
            continue; /* a line end, not a byte of the value */
        snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: a%cb\r\n\r\n", b);
        fx_roundtrip(req, &r);
        cr_assert_eq(r.status, want, "Host byte 0x%02x: %d", b, r.status);
        h_resp_free(&r);
    }
}

REJECTS(absolute_form_userinfo_is_400, 400,
        "GET http://user@evil.example/ HTTP/1.1\r\nHost: a\r\n\r\n")
REJECTS(absolute_form_empty_authority_is_400, 400, "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n")
/* A reverse proxy opens no tunnels to arbitrary hosts. */
REJECTS(connect_is_501, 501, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
/* Bare LF: rejected, so one request can never be read two ways (docs/http.md). */
REJECTS(bare_lf_everywhere_is_400, 400, "GET / HTTP/1.1\nHost: a\n\n")
REJECTS(bare_lf_in_one_line_is_400, 400, "GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n")
REJECTS(bare_lf_at_head_end_is_400, 400, "GET / HTTP/1.1\r\nHost: a\r\n\n")

/* What the strict scan must still let through, unchanged. */
Test(e2e_hardening, tab_and_obs_text_in_value_pass_unchanged, .init = fx_up_grace, .fini = fx_down)
{
    struct h_resp r;
    char head[16384];

    fx_roundtrip("GET /v HTTP/1.1\r\nHost: a\r\nX-V: a\tb caf\xc3\xa9\r\n\r\n", &r);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    origin_last_head(origin, head, sizeof(head));
    cr_assert(strstr(head, "\r\nX-V: a\tb caf\xc3\xa9\r\n"), "%s", h_shown(head, strlen(head)));
}

/* RFC 9112 2.2: empty lines before a request line are ignored. */
Test(e2e_hardening, leading_empty_line_ignored, .init = fx_up_grace, .fini = fx_down)
{
    struct h_resp r;

    fx_roundtrip("\r\nGET /after-crlf HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
}

Test(e2e_hardening, http10_without_host_gets_one_host, .init = fx_up_grace, .fini = fx_down)
{
    struct h_resp r;
    char head[16384];

    fx_roundtrip("GET /h10 HTTP/1.0\r\n\r\n", &r);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    origin_last_head(origin, head, sizeof(head));
    cr_assert(!strncmp(head, "GET /h10 HTTP/1.1\r\n", 19), "%s", head);
    cr_assert(strcasestr(head, "\r\nhost: "), "HTTP/1.1 upstream needs a Host:\n%s", head);
    cr_assert_null(strcasestr(strcasestr(head, "\r\nhost: ") + 2, "\r\nhost: "), "%s", head);
}

/* ==== 3. forwarding ===================================================== */

static void assert_lacks_field(const char *head, const char *name)
{
    char needle[64];

    snprintf(needle, sizeof(needle), "\r\n%s:", name);
    cr_assert_null(strcasestr(head, needle), "%s must not be forwarded:\n%s", name,
                   h_shown(head, strlen(head)));
}

Test(e2e_hardening, hop_by_hop_request_fields_removed, .init = fx_up_grace, .fini = fx_down)
{
    static const char *const gone[] = {"Connection", "Keep-Alive", "Proxy-Connection",
                                       "TE",         "Trailer",    "Upgrade",
                                       "X-Secret",   "X-Other",    "X-Third"};
    struct h_resp r;
    char head[16384];

    fx_roundtrip("GET /hop HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret , x-other\r\n"
                 "Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n"
                 "Trailer: X-T\r\nUpgrade: h2c\r\nX-Secret: 1\r\nX-Other: 2\r\nX-Keep: 3\r\n"
                 "Connection: X-Third\r\nX-Third: 4\r\n\r\n",
                 &r);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    origin_last_head(origin, head, sizeof(head));
    for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++)
        assert_lacks_field(head, gone[i]);
    cr_assert(strstr(head, "\r\nHost: a\r\nX-Keep: 3\r\n"), "%s", head);
}

Test(e2e_hardening, hop_by_hop_response_fields_removed, .init = fx_up_grace, .fini = fx_down)
{
    static const char resp[] =
        "HTTP/1.1 200 OK\r\nConnection: X-Hop, close\r\nX-Hop: secret\r\n"
        "Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n"
        "Trailer: X-T\r\nUpgrade: h2c\r\nX-End: 1\r\nContent-Length: 2\r\n\r\nok";
    static const char *const gone[] = {"Keep-Alive", "Proxy-Connection", "TE",
                                       "Trailer",    "Upgrade",          "X-Hop"};
    struct h_resp r;
    char v[256];
    int fd = h_connect(px.port);

    origin_script(origin, resp, sizeof(resp) - 1, 1);
    cr_assert_eq(h_sends(fd, "GET /hop HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 2);
    for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++)
        assert_lacks_field(r.head, gone[i]);
    cr_assert(strstr(r.head, "\r\nX-End: 1\r\n"), "%s", r.head);
    /* the origin's "Connection: close" is about the upstream hop, not ours */
    if (h_header(r.head, "Connection", v, sizeof(v)) == 0)
        cr_assert(strcasecmp(v, "close") && !strcasestr(v, "x-hop"),
                  "the origin's Connection field leaked: %s", v);
    h_resp_free(&r);
    cr_assert_eq(h_sends(fd, "GET /next HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0, "the client connection should stay open");
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    h_close(fd);
}

Test(e2e_hardening, end_to_end_request_fields_keep_order_and_repeats, .init = fx_up_grace,
     .fini = fx_down)
{
    /* C10: X-Forwarded-For, X-Forwarded-Proto, True-Client-IP, section-io-id pass as sent. */
    static const char fields[] =
        "Host: a\r\nX-Multi: 1\r\nX-Forwarded-For: 203.0.113.9, 10.0.0.1\r\n"
        "X-Multi: 2\r\nTrue-Client-IP: 203.0.113.9\r\n"
        "X-Forwarded-Proto: https\r\nsection-io-id: 0123abcd\r\n"
        "Accept: */*\r\nX-Multi: 3\r\n";
    char req[1024], head[16384];
    struct h_resp r;

    snprintf(req, sizeof(req), "GET /order HTTP/1.1\r\n%s\r\n", fields);
    fx_roundtrip(req, &r);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    origin_last_head(origin, head, sizeof(head));
    cr_assert(strstr(head, fields), "fields reordered, merged or changed:\n%s", head);
}

Test(e2e_hardening, response_repeated_fields_and_order_kept, .init = fx_up_grace, .fini = fx_down)
{
    static const char fields[] = "Set-Cookie: a=1; Path=/\r\nX-Order-1: a\r\n"
                                 "Set-Cookie: b=2; HttpOnly\r\nX-Order-2: b\r\n"
                                 "Cache-Control: no-store\r\nCache-Control: private\r\n";
    char resp[512];
    struct h_resp r;

    snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\n%sContent-Length: 2\r\n\r\nok", fields);
    origin_script(origin, resp, strlen(resp), 0);
    fx_roundtrip("GET /c HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.head, fields), "%s", r.head);
    h_resp_free(&r);
}

Test(e2e_hardening, odd_valid_targets_forwarded_byte_for_byte, .init = fx_up_grace, .fini = fx_down)
{
    static const char *const targets[] = {
        "/a%20b?x=%2F&y=1",
        "/p;v=1/%7Euser/./../x?q=a+b&&r=%00&s",
        "/!$&'()*+,;=:@-._~/?/?:@!$&'()*+,;=",
        "//double//slash/",
        "/?",
        "/%E2%82%AC/%e2%82%ac?%",
        "/a?b=c?d=e",
    };
    char req[512], head[16384], want[512];
    struct h_resp r;
    int fd = h_connect(px.port);

    for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", targets[i]);
        cr_assert_eq(h_sends(fd, req), 0);
        cr_assert_eq(h_read_response(fd, &r, 0), 0, "%s", targets[i]);
        cr_assert_eq(r.status, 200, "%s gets %d", targets[i], r.status);
        h_resp_free(&r);
        origin_last_head(origin, head, sizeof(head));
        snprintf(want, sizeof(want), "GET %s HTTP/1.1\r\n", targets[i]);
        cr_assert(!strncmp(head, want, strlen(want)), "sent %s, origin got:\n%s", targets[i], head);
    }
    h_close(fd);
}

Test(e2e_hardening, options_asterisk_forwarded, .init = fx_up_grace, .fini = fx_down)
{
    struct h_resp r;
    char head[16384];

    fx_roundtrip("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    origin_last_head(origin, head, sizeof(head));
    cr_assert(!strncmp(head, "OPTIONS * HTTP/1.1\r\n", 20), "%s", head);
}

/* RFC 9112 3.2.2: absolute-form goes upstream in origin-form, Host from the authority. */
Test(e2e_hardening, absolute_form_forwarded_as_origin_form, .init = fx_up_grace, .fini = fx_down)
{
    struct h_resp r;
    char head[16384];
    int fd = h_connect(px.port);

    cr_assert_eq(h_sends(fd, "GET http://example.com/p?q HTTP/1.1\r\nHost: example.com\r\n\r\n"),
                 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    cr_assert_eq(r.status, 200, "absolute-form answered %d", r.status);
    h_resp_free(&r);
    origin_last_head(origin, head, sizeof(head));
    cr_assert(!strncmp(head, "GET /p?q HTTP/1.1\r\n", 19), "origin got:\n%s", head);
    cr_assert(strstr(head, "\r\nHost: example.com\r\n"), "%s", head);

    cr_assert_eq(h_sends(fd, "GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n"), 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    origin_last_head(origin, head, sizeof(head));
    cr_assert(!strncmp(head, "GET / HTTP/1.1\r\n", 16), "empty path must become /:\n%s", head);
    h_close(fd);
}

Test(e2e_hardening, absolute_form_authority_replaces_host, .init = fx_up_grace, .fini = fx_down)
{
    struct h_resp r;
    char head[16384];
    const char *h;

    fx_roundtrip("GET http://example.com:8080/x HTTP/1.1\r\nHost: other.example\r\n\r\n", &r);
    cr_assert_eq(r.status, 200, "absolute-form answered %d", r.status);
    h_resp_free(&r);
    origin_last_head(origin, head, sizeof(head));
    cr_assert(!strncmp(head, "GET /x HTTP/1.1\r\n", 17), "origin got:\n%s", head);
    h = strcasestr(head, "\r\nhost: ");
    cr_assert(h && !strncmp(h, "\r\nHost: example.com:8080\r\n", 26), "%s", head);
    cr_assert_null(strcasestr(h + 2, "\r\nhost: "), "two Host fields:\n%s", head);
    cr_assert_null(strstr(head, "other.example"), "%s", head);
}

Test(e2e_hardening, http10_client_gets_no_chunked_and_close, .init = fx_up_grace, .fini = fx_down)
{
    static const char resp[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    char buf[4096], head[16384];
    int fd = h_connect(px.port), eof;

    origin_script(origin, resp, sizeof(resp) - 1, 0);
    cr_assert_eq(h_sends(fd, "GET /c HTTP/1.0\r\nConnection: keep-alive, X-Gone\r\n\r\n"), 0);
    h_read_to_eof(fd, buf, sizeof(buf), 3000, &eof);
    cr_assert(eof, "a de-chunked body ends with the close: %s", h_shown(buf, strlen(buf)));
    cr_assert(!strncmp(buf, "HTTP/1.1 200 ", 13), "%s", h_shown(buf, strlen(buf)));
    cr_assert_null(strcasestr(buf, "transfer-encoding"), "%s", h_shown(buf, strlen(buf)));
    cr_assert(strstr(buf, "\r\n\r\nhello world") && !strstr(buf, "world\r\n"), "%s",
              h_shown(buf, strlen(buf)));
    h_close(fd);
    origin_last_head(origin, head, sizeof(head));
    assert_lacks_field(head, "Connection");
    assert_lacks_field(head, "X-Gone");
}

Test(e2e_hardening, http10_keepalive_only_when_asked, .init = fx_up_grace, .fini = fx_down)
{
    struct h_resp r;
    char v[64], buf[256];
    int fd = h_connect(px.port), eof;

    cr_assert_eq(h_sends(fd, "GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(h_header(r.head, "Connection", v, sizeof(v)), 0, "%s", r.head);
    cr_assert_str_eq(v, "keep-alive");
    h_resp_free(&r);
    cr_assert_eq(h_sends(fd, "GET /2 HTTP/1.0\r\n\r\n"), 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0, "the connection was kept as asked");
    cr_assert_eq(r.status, 200);
    cr_assert(h_header(r.head, "Connection", v, sizeof(v)) != 0 || strcasecmp(v, "keep-alive"),
              "keep-alive not asked for: %s", r.head);
    h_resp_free(&r);
    h_read_to_eof(fd, buf, sizeof(buf), 2000, &eof);
    cr_assert(eof, "an HTTP/1.0 connection without keep-alive must close");
    h_close(fd);
}

/* ==== 4. response side =================================================== */

Test(e2e_hardening, interim_100_and_103_relayed_then_final, .init = fx_up_grace, .fini = fx_down)
{
    static const char resp[] =
        "HTTP/1.1 100 Continue\r\n\r\n"
        "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style"
        "\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    struct h_resp r;
    char v[128];
    int fd = h_connect(px.port);

    origin_script(origin, resp, sizeof(resp) - 1, 0);
    cr_assert_eq(h_sends(fd, "GET /hints HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    cr_assert_eq(r.status, 100, "%s", r.head);
    h_resp_free(&r);
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    cr_assert_eq(r.status, 103, "%s", r.head);
    cr_assert_eq(h_header(r.head, "Link", v, sizeof(v)), 0, "%s", r.head);
    cr_assert_str_eq(v, "</style.css>; rel=preload; as=style");
    h_resp_free(&r);
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 2);
    cr_assert_arr_eq(r.body, "ok", 2);
    h_resp_free(&r);
    cr_assert_eq(h_sends(fd, "GET /next HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 18);
    h_resp_free(&r);
    h_close(fd);
}

/* RFC 9110 15.2: a server MUST NOT send a 1xx response to an HTTP/1.0 client. */
Test(e2e_hardening, http10_client_gets_no_1xx, .init = fx_up_grace, .fini = fx_down)
{
    static const char resp[] = "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                               "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    char buf[4096];
    int fd = h_connect(px.port), eof;

    origin_script(origin, resp, sizeof(resp) - 1, 0);
    cr_assert_eq(h_sends(fd, "GET /hints HTTP/1.0\r\n\r\n"), 0);
    h_read_to_eof(fd, buf, sizeof(buf), 3000, &eof);
    cr_assert(!strncmp(buf, "HTTP/1.1 200 ", 13), "an HTTP/1.0 client got:\n%s",
              h_shown(buf, strlen(buf)));
    cr_assert_null(strstr(buf, " 103 "), "%s", h_shown(buf, strlen(buf)));
    h_close(fd);
}

static const char expect_head[] =
    "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";

Test(e2e_hardening, expect_100_continue_when_origin_sends_100, .init = fx_raw_up, .fini = fx_down)
{
    char ub[8192];
    size_t un;
    struct h_resp r;
    int fd = h_connect(px.port), ufd, eof;

    cr_assert_eq(h_sends(fd, expect_head), 0);
    ufd = fx_raw_accept(3000);
    cr_assert(ufd >= 0, "the proxy did not connect to the origin");
    un = h_recv_until(ufd, ub, sizeof(ub), 0, "\r\n\r\n", 3000, &eof);
    cr_assert(strstr(ub, "\r\n\r\n"), "no request head at the origin: %s", h_shown(ub, un));
    cr_assert(strcasestr(ub, "\r\nExpect: 100-continue\r\n"),
              "the origin must see the expectation to answer it:\n%s", ub);
    fx_raw_sends(ufd, "HTTP/1.1 100 Continue\r\n\r\n");
    cr_assert_eq(h_read_response(fd, &r, 0), 0, "no 100 relayed");
    cr_assert_eq(r.status, 100);
    h_resp_free(&r);
    cr_assert_eq(h_sends(fd, "hello"), 0);
    un = h_recv_until(ufd, ub, sizeof(ub), un, "\r\n\r\nhello", 3000, &eof);
    cr_assert(strstr(ub, "\r\n\r\nhello"), "the body did not follow: %s", h_shown(ub, un));
    fx_raw_sends(ufd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_arr_eq(r.body, "ok", 2);
    h_resp_free(&r);
    h_close(fd);
}

/*
 * The origin refuses the expectation: the client gets the 417 at once, and
 * the upstream connection, which still owes the origin 5 body bytes, is
 * never used for another request (the origin would read that request as
 * the body).
 */
Test(e2e_hardening, expect_100_continue_origin_answers_417_early, .init = fx_raw_up,
     .fini = fx_down)
{
    char ub[8192], ub2[8192];
    size_t un;
    struct h_resp r;
    int fd = h_connect(px.port), fd2, ufd, ufd2, eof;
    long t0;

    cr_assert_eq(h_sends(fd, expect_head), 0);
    ufd = fx_raw_accept(3000);
    cr_assert(ufd >= 0);
    un = h_recv_until(ufd, ub, sizeof(ub), 0, "\r\n\r\n", 3000, &eof);
    cr_assert(strstr(ub, "\r\n\r\n"));
    fx_raw_sends(ufd, "HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n");
    t0 = h_now_ms();
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    cr_assert_eq(r.status, 417);
    cr_assert_lt(h_now_ms() - t0, 2000);
    h_resp_free(&r);
    h_close(fd);

    fd2 = h_connect(px.port);
    cr_assert_eq(h_sends(fd2, "GET /next HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    un = h_recv_until(ufd, ub, sizeof(ub), un, "GET /next", 1000, &eof);
    cr_assert_null(strstr(ub, "GET /next"),
                   "the next request went on the connection that still owed a body:\n%s",
                   h_shown(ub, un));
    ufd2 = fx_raw_accept(3000);
    cr_assert(ufd2 >= 0, "the next request never reached the origin");
    h_recv_until(ufd2, ub2, sizeof(ub2), 0, "\r\n\r\n", 3000, &eof);
    cr_assert(!strncmp(ub2, "GET /next ", 10), "%s", h_shown(ub2, strlen(ub2)));
    fx_raw_sends(ufd2, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    cr_assert_eq(h_read_response(fd2, &r, 0), 0);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    h_close(fd2);
}

/* The origin answers before the body: the body the client sends later is never a request. */
Test(e2e_hardening, origin_answers_early_body_never_parsed, .init = fx_raw_up, .fini = fx_down)
{
    static const char smuggled[] = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    char req[256], ub[8192], buf[4096];
    struct h_resp r;
    int fd = h_connect(px.port), ufd, eof;

    snprintf(req, sizeof(req),
             "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %zu\r\nExpect: 100-continue\r\n\r\n",
             sizeof(smuggled) - 1);
    cr_assert_eq(h_sends(fd, req), 0);
    ufd = fx_raw_accept(3000);
    cr_assert(ufd >= 0);
    h_recv_until(ufd, ub, sizeof(ub), 0, "\r\n\r\n", 3000, &eof);
    fx_raw_sends(ufd, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly");
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    (void)h_sends(fd, smuggled);
    h_read_to_eof(fd, buf, sizeof(buf), 1000, &eof);
    cr_assert_null(strstr(buf, "HTTP/1."), "the body was answered as a request:\n%s",
                   h_shown(buf, strlen(buf)));
    h_close(fd);
    ufd = fx_raw_accept(300);
    if (ufd >= 0) {
        h_recv_until(ufd, ub, sizeof(ub), 0, "\r\n\r\n", 500, &eof);
        cr_assert_null(strstr(ub, "/smuggled"), "%s", h_shown(ub, strlen(ub)));
    }
    assert_log_lacks("/smuggled");
}

static void expect_502_for(const char *resp)
{
    struct h_resp r;

    origin_script(origin, resp, strlen(resp), 1);
    fx_roundtrip("GET /bad HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    cr_assert_eq(r.status, 502, "origin sent:\n%s\nclient got:\n%s", h_shown(resp, strlen(resp)),
                 r.head);
    cr_assert_null(memmem(r.body, r.body_len, "hello", 5), "the broken body leaked");
    h_resp_free(&r);
}

Test(e2e_hardening, origin_cl_and_te_is_502, .init = fx_up_grace, .fini = fx_down)
{
    expect_502_for("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "5\r\nhello\r\n0\r\n\r\n");
}

Test(e2e_hardening, origin_two_different_cl_is_502, .init = fx_up_grace, .fini = fx_down)
{
    expect_502_for("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello!!");
}

Test(e2e_hardening, origin_empty_te_with_cl_is_502, .init = fx_up_grace, .fini = fx_down)
{
    expect_502_for("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: \r\n\r\nhello");
}

Test(e2e_hardening, origin_garbage_is_502, .init = fx_up_grace, .fini = fx_down)
{
    expect_502_for("FOO\r\n\r\n");
}

Test(e2e_hardening, origin_bare_lf_is_502, .init = fx_up_grace, .fini = fx_down)
{
    expect_502_for("HTTP/1.1 200 OK\nContent-Length: 5\n\nhello");
}

Test(e2e_hardening, origin_101_without_upgrade_request_is_502, .init = fx_up_grace, .fini = fx_down)
{
    expect_502_for("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\n\r\nhello");
}

/* The client must learn the body is short: EOF before the announced length, never a hang. */
Test(e2e_hardening, origin_closes_mid_body_client_sees_eof, .init = fx_up_grace, .fini = fx_down)
{
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789";
    char buf[4096];
    const char *body;
    int fd = h_connect(px.port), eof;
    long t0 = h_now_ms();

    origin_script(origin, resp, sizeof(resp) - 1, 1);
    cr_assert_eq(h_sends(fd, "GET /short HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    h_read_to_eof(fd, buf, sizeof(buf), 3000, &eof);
    cr_assert(eof, "the client connection hangs after %ld ms", h_now_ms() - t0);
    cr_assert(!strncmp(buf, "HTTP/1.1 200 ", 13), "%s", h_shown(buf, strlen(buf)));
    body = strstr(buf, "\r\n\r\n");
    cr_assert(body && strlen(body + 4) < 1000, "%s", h_shown(buf, strlen(buf)));
    h_close(fd);
}

Test(e2e_hardening, origin_closes_mid_chunked_body_no_fake_end, .init = fx_up_grace,
     .fini = fx_down)
{
    static const char resp[] =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
    char buf[4096];
    int fd = h_connect(px.port), eof;

    origin_script(origin, resp, sizeof(resp) - 1, 1);
    cr_assert_eq(h_sends(fd, "GET /short HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    h_read_to_eof(fd, buf, sizeof(buf), 3000, &eof);
    cr_assert(eof, "the client connection hangs");
    cr_assert(strstr(buf, "hello"), "%s", h_shown(buf, strlen(buf)));
    cr_assert_null(strstr(buf, "\r\n0\r\n"), "the proxy forged the end of a truncated body:\n%s",
                   h_shown(buf, strlen(buf)));
    h_close(fd);
}

/* ==== 5. upgrade ========================================================= */

Test(e2e_hardening, websocket_upgrade_tunnels_both_ways, .init = fx_up_grace, .fini = fx_down)
{
    static const char resp[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                               "Connection: Upgrade\r\n"
                               "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
                               "server-hello";
    struct h_resp r;
    char v[64], buf[64], head[16384];
    int fd = h_connect(px.port);

    origin_script(origin, resp, sizeof(resp) - 1, 0);
    cr_assert_eq(h_sends(fd, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                             "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                             "Sec-WebSocket-Version: 13\r\n\r\n"),
                 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    cr_assert_eq(r.status, 101);
    cr_assert_eq(h_header(r.head, "Upgrade", v, sizeof(v)), 0, "%s", r.head);
    cr_assert_str_eq(v, "websocket");
    cr_assert(h_header(r.head, "Connection", v, sizeof(v)) == 0 && strcasestr(v, "upgrade"), "%s",
              r.head);
    h_resp_free(&r);
    origin_last_head(origin, head, sizeof(head));
    cr_assert(strcasestr(head, "\r\nUpgrade: websocket\r\n"), "%s", head);
    cr_assert(strcasestr(head, "\r\nConnection: upgrade\r\n"), "%s", head);
    cr_assert(strstr(head, "\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"), "%s", head);
    h_read_all(fd, buf, 13, 3000);
    cr_assert_str_eq(buf, "server-hello");
    cr_assert_eq(h_sends(fd, "client-bytes"), 0);
    cr_assert(fx_origin_got("\r\n\r\nclient-bytes", 3000), "client bytes never reached the origin");
    h_close(fd);
}

Test(e2e_hardening, upgrade_answered_200_stays_http, .init = fx_up_grace, .fini = fx_down)
{
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno";
    struct h_resp r;
    int fd = h_connect(px.port);

    origin_script(origin, resp, sizeof(resp) - 1, 0);
    cr_assert_eq(h_sends(fd, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                             "Upgrade: websocket\r\n\r\n"),
                 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_arr_eq(r.body, "no", 2);
    cr_assert_not(r.closed, "no tunnel, so the connection stays HTTP and open:\n%s", r.head);
    h_resp_free(&r);
    cr_assert_eq(h_sends(fd, "GET /after HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0, "the connection did not stay HTTP");
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 18);
    h_resp_free(&r);
    h_close(fd);
}

/*
 * h2c smuggling: an origin that speaks h2c would turn the client connection
 * into HTTP/2 requests the proxy never sees (its rules, limits, log). The
 * upgrade is not forwarded, the origin answers the request as HTTP/1.1 and
 * the connection stays HTTP; an origin that switches anyway is a 502.
 */
Test(e2e_hardening, h2c_upgrade_not_forwarded, .init = fx_up_grace, .fini = fx_down)
{
    static const char h2c_req[] =
        "GET /h2c HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
    static const char switched[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
                                   "Connection: Upgrade\r\n\r\n\0\0\0\4\0\0\0\0\0";
    struct h_resp r;
    char head[16384], buf[4096];
    int fd = h_connect(px.port), eof;

    cr_assert_eq(h_sends(fd, h2c_req), 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_not(r.closed, "no tunnel, so the connection stays HTTP and open:\n%s", r.head);
    h_resp_free(&r);
    origin_last_head(origin, head, sizeof(head));
    assert_lacks_field(head, "Upgrade");
    assert_lacks_field(head, "HTTP2-Settings");
    cr_assert_null(strcasestr(head, "connection: upgrade"), "%s", head);
    cr_assert_eq(h_sends(fd, "GET /after HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0, "the connection did not stay HTTP");
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    h_close(fd);

    fd = h_connect(px.port);
    origin_script(origin, switched, sizeof(switched) - 1, 1);
    cr_assert_eq(h_sends(fd, h2c_req), 0);
    h_read_to_eof(fd, buf, sizeof(buf), 3000, &eof);
    cr_assert(!strncmp(buf, "HTTP/1.1 502 ", 13),
              "a 101 to an upgrade not asked for is broken:\n%s", h_shown(buf, strlen(buf)));
    h_close(fd);
}

/* RFC 9110 7.8: an Upgrade field in an HTTP/1.0 request is ignored: no tunnel. */
Test(e2e_hardening, http10_upgrade_ignored, .init = fx_up_grace, .fini = fx_down)
{
    static const char resp[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                               "Connection: Upgrade\r\n\r\nserver-hello";
    char head[16384], buf[4096];
    int fd = h_connect(px.port), eof;

    origin_script(origin, resp, sizeof(resp) - 1, 1);
    cr_assert_eq(
        h_sends(fd, "GET /ws HTTP/1.0\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"), 0);
    h_read_to_eof(fd, buf, sizeof(buf), 3000, &eof);
    origin_last_head(origin, head, sizeof(head));
    assert_lacks_field(head, "Upgrade");
    cr_assert_null(strcasestr(head, "connection: upgrade"), "%s", head);
    cr_assert(!strncmp(buf, "HTTP/1.1 502 ", 13), "a 101 to an HTTP/1.0 request is broken:\n%s",
              h_shown(buf, strlen(buf)));
    h_close(fd);
}

/* ==== 6. limits ========================================================== */

#define SMALL_LIMITS                                                                               \
    "\"limits\": {\"max_header_bytes\": 4096, \"max_header_line_bytes\": 1024, "                   \
    "\"max_uri_bytes\": 1024, \"max_headers\": 10, \"max_body_bytes\": 1000}"

static void up_small(void)
{
    fx_up_cfg(SMALL_LIMITS);
}

/* "name: vvvv...\r\n" with the line (without CRLF) exactly len bytes long. */
static size_t put_field(char *p, const char *name, size_t len)
{
    size_t nl = strlen(name);

    memcpy(p, name, nl);
    memcpy(p + nl, ": ", 2);
    memset(p + nl + 2, 'v', len - nl - 2);
    memcpy(p + len, "\r\n", 2);
    return len + 2;
}

/* "GET " target " HTTP/1.1\r\nHost: a\r\n" + fields + "\r\n" with a target of tlen bytes. */
static size_t build_get(char *p, size_t tlen, int nfields, size_t field_len)
{
    size_t n = 0;

    memcpy(p, "GET /", 5);
    n = 5;
    memset(p + n, 't', tlen - 1);
    n += tlen - 1;
    memcpy(p + n, " HTTP/1.1\r\nHost: a\r\n", 20);
    n += 20;
    for (int i = 0; i < nfields; i++) {
        char name[16];
        snprintf(name, sizeof(name), "X-F%d", i);
        n += put_field(p + n, name, field_len);
    }
    memcpy(p + n, "\r\n", 2);
    return n + 2;
}

static void expect_pass(const char *req, size_t len)
{
    struct h_resp r;
    int fd = h_connect(px.port);

    cr_assert_eq(h_send(fd, req, len), 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    cr_assert_eq(r.status, 200, "a request within the limits got %d", r.status);
    h_resp_free(&r);
    h_close(fd);
}

Test(e2e_hardening, header_section_too_large_is_431, .init = up_small, .fini = fx_down)
{
    static char req[16384];
    size_t n;

    n = build_get(req, 1, 6, 800); /* ~4.9 KB > 4096 */
    fx_expect_rejected(req, n, 431);
    n = build_get(req, 1, 4, 800); /* ~3.3 KB */
    expect_pass(req, n);
}

Test(e2e_hardening, header_line_too_large_is_431, .init = up_small, .fini = fx_down)
{
    static char req[16384];
    size_t n;

    n = build_get(req, 1, 1, 1025);
    fx_expect_rejected(req, n, 431);
    n = build_get(req, 1, 1, 1024);
    expect_pass(req, n);
}

Test(e2e_hardening, too_many_headers_is_431, .init = up_small, .fini = fx_down)
{
    static char req[16384];
    size_t n;

    n = build_get(req, 1, 10, 20);
    fx_expect_rejected(req, n, 431);
    n = build_get(req, 1, 9, 20); /* Host + 9 = 10 = max_headers */
    expect_pass(req, n);
}

Test(e2e_hardening, target_at_max_uri_bytes_passes, .init = up_small, .fini = fx_down)
{
    static char req[16384];

    expect_pass(req, build_get(req, 1024, 0, 0));
}

Test(e2e_hardening, target_one_over_max_uri_bytes_is_414, .init = up_small, .fini = fx_down)
{
    static char req[16384];

    fx_expect_rejected(req, build_get(req, 1025, 0, 0), 414);
}

Test(e2e_hardening, target_far_over_max_uri_bytes_is_414, .init = up_small, .fini = fx_down)
{
    static char req[16384];

    fx_expect_rejected(req, build_get(req, 3000, 0, 0), 414);
}

Test(e2e_hardening, defaults_8k_target_passes_8k_plus_1_is_414, .init = fx_up_grace,
     .fini = fx_down)
{
    static char req[32768];

    fx_expect_rejected(req, build_get(req, 8193, 0, 0), 414);
    expect_pass(req, build_get(req, 8192, 0, 0));
}

Test(e2e_hardening, defaults_8k_header_line_passes_8k_plus_1_is_431, .init = fx_up_grace,
     .fini = fx_down)
{
    static char req[32768];

    fx_expect_rejected(req, build_get(req, 1, 1, 8193), 431);
    expect_pass(req, build_get(req, 1, 1, 8192));
}

Test(e2e_hardening, defaults_7k_of_headers_pass_unchanged, .init = fx_up_grace, .fini = fx_down)
{
    static char req[32768];
    char head[16384];
    size_t n = build_get(req, 1, 7, 1000);
    const char *fields;

    expect_pass(req, n);
    origin_last_head(origin, head, sizeof(head));
    fields = strstr(req, "X-F0");
    cr_assert(strstr(head, "\r\nX-F0") &&
                  !memcmp(strstr(head, "\r\nX-F0") + 2, fields, strlen(fields)),
              "headers changed on the way");
}

Test(e2e_hardening, body_content_length_over_limit_is_413, .init = up_small, .fini = fx_down)
{
    static const char req[] = "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\nxyz";

    fx_expect_rejected(req, sizeof(req) - 1, 413);
}

Test(e2e_hardening, body_content_length_at_limit_passes, .init = up_small, .fini = fx_down)
{
    static char req[4096];
    struct h_resp r;
    int n = snprintf(req, sizeof(req),
                     "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n");

    int fd = h_connect(px.port);

    memset(req + n, 'b', 1000);
    cr_assert_eq(h_send(fd, req, (size_t)n + 1000), 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 1000);
    h_resp_free(&r);
    h_close(fd);
}

/* A pipelined request after a body at the limit is not part of that body. */
Test(e2e_hardening, body_at_limit_then_pipelined_request_passes, .init = up_small, .fini = fx_down)
{
    static char req[4096];
    struct h_resp r;
    int n = snprintf(req, sizeof(req),
                     "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n");
    int fd = h_connect(px.port);

    memset(req + n, 'b', 1000);
    n += 1000;
    n += snprintf(req + n, sizeof(req) - (size_t)n, "GET /size/7 HTTP/1.1\r\nHost: a\r\n\r\n");
    cr_assert_eq(h_send(fd, req, (size_t)n), 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    cr_assert_eq(r.status, 200, "a 1000-byte body with max_body_bytes 1000 got %d", r.status);
    cr_assert_eq(r.body_len, 1000);
    h_resp_free(&r);
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 7);
    h_resp_free(&r);
    h_close(fd);
}

Test(e2e_hardening, body_chunked_over_limit_is_413, .init = up_small, .fini = fx_down)
{
    static char req[4096];
    size_t n = (size_t)snprintf(
        req, sizeof(req), "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");

    for (int i = 0; i < 2; i++) {
        n += (size_t)snprintf(req + n, sizeof(req) - n, "258\r\n"); /* 600 */
        memset(req + n, i ? 'S' : 'c', 600);
        if (i)
            memcpy(req + n, "SMUGGLE", 7);
        n += 600;
        memcpy(req + n, "\r\n", 2);
        n += 2;
    }
    memcpy(req + n, "0\r\n\r\n", 5);
    n += 5;
    fx_expect_answer_and_close(req, n, 413);
    assert_no_request_completed("SMUGGLE");
}

/* max_body_bytes counts the decoded body, not the chunk framing. */
Test(e2e_hardening, body_chunked_at_limit_passes, .init = up_small, .fini = fx_down)
{
    static char req[4096];
    struct h_resp r;
    size_t n = (size_t)snprintf(
        req, sizeof(req), "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    int fd = h_connect(px.port);

    for (int i = 0; i < 10; i++) {
        n += (size_t)snprintf(req + n, sizeof(req) - n, "64;ext=%d\r\n", i); /* 100 */
        memset(req + n, 'a' + i, 100);
        n += 100;
        memcpy(req + n, "\r\n", 2);
        n += 2;
    }
    memcpy(req + n, "0\r\n\r\n", 5);
    n += 5;
    cr_assert_eq(h_send(fd, req, n), 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    cr_assert_eq(r.status, 200, "1000 decoded bytes with max_body_bytes 1000 got %d", r.status);
    cr_assert_eq(r.body_len, 1000);
    h_resp_free(&r);
    h_close(fd);
}

Test(e2e_hardening, max_connections_refuses_new_keeps_old, .fini = fx_down)
{
    struct h_resp r;
    char buf[512];
    int a, b, c, d = -1, eof;

    fx_up_cfg("\"client\": {\"max_connections\": 2}");
    h_msleep(200); /* h_proxy_start's probe connection must be gone first */
    a = h_connect(px.port);
    b = h_connect(px.port);
    cr_assert(a >= 0 && b >= 0);
    cr_assert_eq(h_sends(a, "GET /a HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    cr_assert_eq(h_read_response(a, &r, 0), 0);
    h_resp_free(&r);
    cr_assert_eq(h_sends(b, "GET /b HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    cr_assert_eq(h_read_response(b, &r, 0), 0);
    h_resp_free(&r);

    c = h_connect(px.port);
    if (c >= 0) {
        (void)h_sends(c, "GET /c HTTP/1.1\r\nHost: a\r\n\r\n");
        h_read_to_eof(c, buf, sizeof(buf), 2000, &eof);
        cr_assert(eof, "a connection over client.max_connections was kept open");
        cr_assert_null(strstr(buf, "200 OK"), "a connection over the limit was served");
        h_close(c);
    }
    for (int i = 0; i < 2; i++) {
        int fd = i ? b : a;
        cr_assert_eq(h_sends(fd, "GET /again HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
        cr_assert_eq(h_read_response(fd, &r, 0), 0, "an existing connection stopped working");
        cr_assert_eq(r.status, 200);
        h_resp_free(&r);
    }
    h_close(a);
    for (int i = 0; i < 50 && d < 0; i++) {
        h_msleep(20);
        d = h_connect(px.port);
        if (d >= 0 && (h_sends(d, "GET /d HTTP/1.1\r\nHost: a\r\n\r\n") < 0 ||
                       h_read_response(d, &r, 0) < 0)) {
            h_close(d);
            d = -1;
            continue;
        }
    }
    cr_assert(d >= 0, "a freed slot was never reused");
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    h_close(d);
    h_close(b);
}

/* ==== 7. timeouts ======================================================== */

Test(e2e_hardening, slowloris_partial_head_gets_408_others_served, .fini = fx_down)
{
    struct h_resp r;
    char buf[1024];
    int a, eof;
    long t0;

    fx_up_cfg("\"client\": {\"header_timeout_ms\": 300}");
    a = h_connect(px.port);
    t0 = h_now_ms();
    cr_assert_eq(h_sends(a, "GET / HTTP/1.1\r\nHost: a\r\nX-Slow: "), 0);
    fx_roundtrip("GET /other HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    cr_assert_eq(r.status, 200, "another client is served meanwhile");
    cr_assert_lt(h_now_ms() - t0, 300, "the other client waited for the slow one");
    h_resp_free(&r);
    h_read_to_eof(a, buf, sizeof(buf), 3000, &eof);
    cr_assert(!strncmp(buf, "HTTP/1.1 408 ", 13), "%s", h_shown(buf, strlen(buf)));
    cr_assert(eof, "the slow connection stays open");
    cr_assert_lt(h_now_ms() - t0, 2000);
    h_close(a);
    assert_log_lacks("/smuggled"); /* keeps the log flushed before stop */
}

/* One byte every 50 ms keeps the connection busy but not the head deadline. */
Test(e2e_hardening, slowloris_trickle_hits_hard_deadline, .fini = fx_down)
{
    char buf[1024];
    int a, eof;
    long t0;

    fx_up_cfg("\"client\": {\"header_timeout_ms\": 300}");
    a = h_connect(px.port);
    t0 = h_now_ms();
    cr_assert_eq(h_sends(a, "GET / HTTP/1.1\r\nHost: a\r\nX-Slow: "), 0);
    while (h_now_ms() - t0 < 3000) {
        struct pollfd pfd = {a, POLLIN, 0};
        if (poll(&pfd, 1, 50) > 0)
            break;
        if (h_sends(a, "v") < 0)
            break;
    }
    h_read_to_eof(a, buf, sizeof(buf), 3000, &eof);
    cr_assert_lt(h_now_ms() - t0, 2000, "a trickling head outlived the header deadline");
    cr_assert(!strncmp(buf, "HTTP/1.1 408 ", 13), "%s", h_shown(buf, strlen(buf)));
    h_close(a);
}

Test(e2e_hardening, idle_keepalive_closed_after_idle_timeout, .fini = fx_down)
{
    struct h_resp r;
    char buf[256];
    int fd, eof;
    long t0, dt;

    fx_up_cfg("\"client\": {\"idle_timeout_ms\": 300}");
    fd = h_connect(px.port);
    cr_assert_eq(h_sends(fd, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    cr_assert_not(r.closed);
    h_resp_free(&r);
    t0 = h_now_ms();
    h_read_to_eof(fd, buf, sizeof(buf), 3000, &eof);
    dt = h_now_ms() - t0;
    cr_assert(eof, "an idle keep-alive connection stays open");
    cr_assert(dt >= 150 && dt < 2000, "closed after %ld ms with idle_timeout_ms 300", dt);
    cr_assert_eq(buf[0], '\0', "%s", h_shown(buf, strlen(buf)));
    h_close(fd);
}

/*
 * Connect timeout on loopback: a listener with backlog 0 whose one accept
 * slot is taken drops further SYNs, so the proxy's connect hangs.
 */
Test(e2e_hardening, upstream_connect_timeout_is_502, .fini = fx_down)
{
    struct h_resp r;
    int filler;
    long t0;

    fx_raw_start(0);
    filler = h_connect(rw.port);
    cr_assert(filler >= 0);
    fx_raw_keep(filler);
    fx_proxy_grace(rw.port, "\"upstream\": {\"connect_timeout_ms\": 300}");
    t0 = h_now_ms();
    fx_roundtrip("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    cr_assert_eq(r.status, 502);
    cr_assert_lt(h_now_ms() - t0, 2500, "took %ld ms", h_now_ms() - t0);
    h_resp_free(&r);
}

Test(e2e_hardening, upstream_response_timeout_is_504, .fini = fx_down)
{
    struct h_resp r;
    long t0;

    fx_up_cfg("\"upstream\": {\"response_timeout_ms\": 300}");
    t0 = h_now_ms();
    fx_roundtrip("GET /sleep/1200 HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    cr_assert_eq(r.status, 504);
    cr_assert_lt(h_now_ms() - t0, 1100);
    h_resp_free(&r);
}

Test(e2e_hardening, upstream_stalls_mid_body_client_closed, .fini = fx_down)
{
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc";
    char buf[1024];
    int fd, eof;
    long t0;

    fx_up_cfg("\"upstream\": {\"response_timeout_ms\": 300}");
    origin_script(origin, resp, sizeof(resp) - 1, 0);
    fd = h_connect(px.port);
    t0 = h_now_ms();
    cr_assert_eq(h_sends(fd, "GET /stall HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    h_read_to_eof(fd, buf, sizeof(buf), 3000, &eof);
    cr_assert(eof, "the client waits forever for a stalled body");
    cr_assert_lt(h_now_ms() - t0, 2500);
    cr_assert(!strncmp(buf, "HTTP/1.1 200 ", 13), "%s", h_shown(buf, strlen(buf)));
    cr_assert(strstr(buf, "\r\n\r\nabc") && strlen(strstr(buf, "\r\n\r\n") + 4) == 3, "%s",
              h_shown(buf, strlen(buf)));
    h_close(fd);
}

/* ==== 8. keep-alive race ================================================= */

static const char ok_keep[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/* The origin closed a pooled connection and the proxy saw it: the connection is not used. */
Test(e2e_hardening, closed_pooled_connection_not_used, .init = fx_up_grace, .fini = fx_down)
{
    struct h_resp r;

    origin_script(origin, ok_keep, sizeof(ok_keep) - 1, 1);
    origin_script(origin, ok_keep, sizeof(ok_keep) - 1, 1);
    fx_roundtrip("GET /1 HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    h_msleep(200);
    fx_roundtrip("GET /2 HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    cr_assert_eq(origin_accepts(origin), 2);
    h_msleep(200);
    fx_roundtrip("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc", &r);
    cr_assert_eq(r.status, 200, "a POST after a close the proxy had seen: %d", r.status);
    cr_assert_eq(origin_accepts(origin), 3);
    h_resp_free(&r);
}

/* The origin closes a reused connection on receiving the request: GET is retried once. */
Test(e2e_hardening, keepalive_race_get_retried_once, .init = fx_up_grace, .fini = fx_down)
{
    struct h_resp r;

    origin_script(origin, ok_keep, sizeof(ok_keep) - 1, 0);
    origin_script(origin, NULL, 0, 1);
    fx_roundtrip("GET /1 HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    fx_roundtrip("GET /2 HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    cr_assert_eq(r.status, 200, "an idempotent request on a dead pooled connection got %d",
                 r.status);
    cr_assert_eq(r.body_len, 18);
    h_resp_free(&r);
    cr_assert_eq(origin_accepts(origin), 2, "one retry on one fresh connection");
    cr_assert_eq(origin_requests(origin), 3);
}

Test(e2e_hardening, keepalive_race_post_not_retried_502, .init = fx_up_grace, .fini = fx_down)
{
    struct h_resp r;

    origin_script(origin, ok_keep, sizeof(ok_keep) - 1, 0);
    origin_script(origin, NULL, 0, 1);
    fx_roundtrip("GET /1 HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    fx_roundtrip("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc", &r);
    cr_assert_eq(r.status, 502);
    h_resp_free(&r);
    cr_assert_eq(origin_accepts(origin), 1, "a POST must not be retried");
    cr_assert_eq(origin_requests(origin), 2);
}

/* ==== 9. early answers ==================================================== */

Test(e2e_hardening, early_413_body_never_parsed_as_request, .init = up_small, .fini = fx_down)
{
    static const char req[] = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000000\r\n\r\n"
                              "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";

    fx_expect_rejected(req, sizeof(req) - 1, 413);
    assert_log_lacks("/smuggled");
}

Test(e2e_hardening, early_400_body_never_parsed_as_request, .init = fx_up_grace, .fini = fx_down)
{
    static const char req[] = "POST / HTTP/1.1\r\nContent-Length: 37\r\n\r\n"
                              "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";

    fx_expect_rejected(req, sizeof(req) - 1, 400);
    assert_log_lacks("/smuggled");
}

Test(e2e_hardening, early_400_chunked_body_never_parsed_as_request, .init = fx_up_grace,
     .fini = fx_down)
{
    static const char req[] = "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "zz\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";

    fx_expect_answer_and_close(req, sizeof(req) - 1, 400);
    assert_no_request_completed("/smuggled");
    assert_log_lacks("/smuggled");
}
