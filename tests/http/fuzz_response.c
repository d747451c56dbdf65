/*
 * libFuzzer harness for the response side of http/msg.c, driven the way
 * http/proxy.c drives it for an upstream: the input arrives in
 * receive-sized pieces (each its own exact-size heap block, so ASan sees
 * any read past a piece); http_scan finds the head, which is copied into
 * one contiguous block and parsed by http_msg_head with no_body set as for
 * a HEAD request; the bytes after it are walked by http_msg_body (decoded
 * body bytes go to on_body, as for an HTTP/1.0 client), and what follows is
 * parsed as the next response (the proxy does so after a 1xx). At the end
 * of the input a body still open gets http_msg_eof, as at an upstream close.
 *
 * Input: byte 0: bit 7 = the request was HEAD (no_body), bits 0-6 the piece
 * size (0 = everything at once); the rest is what the origin sent.
 * Invariants checked beyond "no crash, no UB":
 *   - http_scan returns -400/-414/-431 or a count within the piece, and a
 *     head never exceeds max_head bytes;
 *   - http_msg_head returns 0, -400 or -431; every view (reason, names,
 *     values) lies inside the head block;
 *   - an accepted head has no control byte (TAB aside) in any name, value or
 *     the reason, names are tokens; at most one Content-Length and never
 *     both Content-Length and Transfer-Encoding;
 *   - a response to HEAD, a 1xx, 204 or 304 is complete with its head
 *     (llhttp 8.1.0 would read a body after 204/304 with Content-Length);
 *   - http_msg_body returns -1, 0 (all bytes used) or 1 (used <= n), and
 *     decoded body views lie inside the piece being walked;
 *   - http_msg_eof returns 1 or -1.
 */
#include "tests/http/fuzz_drive.h"

static void check_head(const struct http_msg *m, const char *h, size_t n)
{
    const char *hi = h + n;
    unsigned st = m->parser.status_code;

    check_view(m->reason, h, hi);
    for (size_t i = 0; i < m->reason.len; i++)
        CHECK(!is_ctl((unsigned char)m->reason.p[i]));
    check_fields(m, h, hi);
    (void)HTTP_MSG_GET(m, "content-type");
    if (m->no_body || st < 200 || st == 204 || st == 304)
        CHECK(m->complete);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    fuzz_drive(data + 1, size - 1, data[0] & 0x7f ? data[0] & 0x7f : size, HTTP_RESPONSE,
               data[0] >> 7, 1, check_head);
    return 0;
}
