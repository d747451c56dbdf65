/*
 * The driver shared by the request and response fuzzers (tests/http/
 * fuzz_request.c, fuzz_response.c): the invariants both sides have, and the
 * loop that feeds input to http/msg.c the way http/proxy.c does.
 */
#ifndef RINGPROXY_TESTS_HTTP_FUZZ_DRIVE_H
#define RINGPROXY_TESTS_HTTP_FUZZ_DRIVE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/msg.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "invariant failed: %s (%s:%d)\n", #x, __FILE__, __LINE__);             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define MAX_MSGS 16

static const struct http_limits lim = {
    .max_head = 2048, .max_line = 512, .max_first_line = 600, .max_lines = 20};

struct walk {
    const char *lo, *hi; /* the piece being walked */
    size_t decoded, total;
};

static void on_body(void *ctx, const char *p, size_t n)
{
    struct walk *w = ctx;

    CHECK(p >= w->lo && p + n <= w->hi);
    w->decoded += n;
    CHECK(w->decoded <= w->total);
}

static int is_ctl(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

static void check_view(struct core_str v, const char *lo, const char *hi)
{
    if (!v.p) {
        CHECK(v.len == 0);
        return;
    }
    CHECK(v.p >= lo && v.p <= hi && v.len <= (size_t)(hi - v.p));
}

/*
 * Field names are tokens, values hold no control byte (TAB aside), every view
 * lies in the head, at most one Content-Length and never both framings.
 */
static void check_fields(const struct http_msg *m, const char *h, const char *hi)
{
    unsigned ncl = 0, nte = 0;

    CHECK(m->nhdrs <= m->max_hdrs);
    for (uint16_t i = 0; i < m->nhdrs; i++) {
        struct core_str nm = m->hdrs[i].name, v = m->hdrs[i].value;

        check_view(nm, h, hi);
        check_view(v, h, hi);
        CHECK(nm.len > 0);
        for (size_t k = 0; k < nm.len; k++)
            CHECK(http_is_tchar((unsigned char)nm.p[k]));
        for (size_t k = 0; k < v.len; k++)
            CHECK(!is_ctl((unsigned char)v.p[k]));
        ncl += CORE_STR_IEQ(nm, "content-length");
        nte += CORE_STR_IEQ(nm, "transfer-encoding");
        (void)http_token_in(v, "close", 5);
    }
    CHECK(ncl == HTTP_MSG_COUNT(m, "content-length"));
    CHECK(ncl <= 1);
    CHECK(!(ncl && nte));
    CHECK(m->count[HK_CONTENT_LENGTH] == ncl);
}

/*
 * Feed data in pieces of `piece` bytes (each its own exact-size heap block),
 * as http/proxy.c does: scan and copy a head, parse it, walk its body, then
 * the next message. check_head() runs on every accepted head; at the end of
 * the input an open body gets http_msg_eof() when eof_at_end is set (an
 * origin's close).
 */
static void fuzz_drive(const uint8_t *data, size_t size, size_t piece, llhttp_type_t type,
                       int no_body, int eof_at_end,
                       void (*check_head)(const struct http_msg *, const char *, size_t))
{
    struct http_scan scan = {0};
    struct http_msg m = {0};
    struct core_hdr *hdrs;
    struct walk w = {0};
    char *head;
    size_t off = 0, hlen = 0;
    int in_body = 0, msgs = 0, stop = 0;
    uint16_t max_hdrs = (uint16_t)(lim.max_lines + 1);

    m.no_body = (uint8_t)no_body;
    head = malloc(lim.max_head);
    hdrs = malloc(max_hdrs * sizeof(*hdrs));
    w.total = size;

    while (off < size && !stop) {
        size_t n = size - off < piece ? size - off : piece;
        char *seg = malloc(n);
        size_t pos = 0;

        memcpy(seg, data + off, n);
        off += n;
        while (pos < n && !stop) {
            if (!in_body) {
                int done;
                long r = http_scan(&scan, &lim, seg + pos, n - pos, &done);

                if (r < 0) {
                    CHECK(r == -400 || r == -414 || r == -431);
                    stop = 1;
                    break;
                }
                CHECK((size_t)r <= n - pos);
                CHECK(!done || r > 0);
                CHECK(done || (size_t)r == n - pos);
                CHECK(hlen + (size_t)r <= lim.max_head);
                memcpy(head + hlen, seg + pos, (size_t)r);
                hlen += (size_t)r;
                pos += (size_t)r;
                if (!done)
                    break;
                {
                    /* Parse from an exact-size copy, as the proxy parses its block. */
                    char *h = malloc(hlen);
                    int hr;

                    memcpy(h, head, hlen);
                    hr = http_msg_head(&m, type, h, hlen, hdrs, max_hdrs);
                    CHECK(hr == 0 || hr == -400 || hr == -431);
                    if (hr == 0)
                        check_head(&m, h, hlen);
                    free(h);
                    if (hr < 0) {
                        stop = 1;
                        break;
                    }
                }
                m.on_body = on_body;
                m.ctx = &w;
                scan = (struct http_scan){0};
                hlen = 0;
                if (m.complete) {
                    if (++msgs == MAX_MSGS)
                        stop = 1;
                } else {
                    in_body = 1;
                }
            } else {
                size_t used = 0;
                int r;

                w.lo = seg + pos;
                w.hi = seg + n;
                r = http_msg_body(&m, seg + pos, n - pos, &used);
                CHECK(r == -1 || r == 0 || r == 1);
                if (r < 0) {
                    stop = 1;
                    break;
                }
                CHECK(r == 1 ? used <= n - pos : used == n - pos);
                pos += used;
                if (r == 1) {
                    in_body = 0;
                    if (++msgs == MAX_MSGS)
                        stop = 1;
                }
            }
        }
        if (eof_at_end && in_body && !stop && off >= size) {
            /* The origin closed: that ends a read-until-close body only. */
            w.lo = w.hi = NULL;
            int r = http_msg_eof(&m);
            CHECK(r == 1 || r == -1);
        }
        free(seg);
    }
    free(hdrs);
    free(head);
}

#endif
