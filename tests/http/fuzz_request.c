/*
 * libFuzzer harness for the request side of http/msg.c, driven the way
 * http/proxy.c drives it: the input arrives in receive-sized pieces (each
 * its own exact-size heap block, so ASan sees any read past a piece);
 * http_scan finds the head, which is copied into one contiguous block and
 * parsed by http_msg_head; the bytes after it are walked by http_msg_body
 * until the message ends, and what follows is the next pipelined request.
 *
 * Input: byte 0 picks the piece size (0 = everything at once), the rest is
 * what a client sent. Invariants checked beyond "no crash, no UB":
 *   - http_scan returns -400/-414/-431 or a count within the piece, and a
 *     head never exceeds max_head bytes;
 *   - http_msg_head returns 0, -400 or -431; every view (method, target,
 *     names, values) lies inside the head block;
 *   - an accepted head has no control byte (CR, LF, NUL, ...; TAB aside) in
 *     any field name or value, no whitespace or control byte in the target,
 *     names and the method are tokens: llhttp 8.1.0's CR and obs-fold holes
 *     stay closed;
 *   - an accepted head has at most one Content-Length and never both
 *     Content-Length and Transfer-Encoding (one framing only);
 *   - http_msg_body returns -1, 0 (all bytes used) or 1 (used <= n), and
 *     decoded body views lie inside the piece being walked.
 */
#include "tests/http/fuzz_drive.h"

static void check_head(const struct http_msg *m, const char *h, size_t n)
{
    const char *hi = h + n;

    check_view(m->method, h, hi);
    check_view(m->target, h, hi);
    for (size_t i = 0; i < m->method.len; i++)
        CHECK(http_is_tchar((unsigned char)m->method.p[i]));
    /* RFC 9112 3.2: the target is visible ASCII; no space, TAB or control byte. */
    for (size_t i = 0; i < m->target.len; i++)
        CHECK((unsigned char)m->target.p[i] > 0x20 && (unsigned char)m->target.p[i] != 0x7f);
    check_fields(m, h, hi);
    (void)HTTP_MSG_GET(m, "host");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    fuzz_drive(data + 1, size - 1, data[0] ? data[0] : size, HTTP_REQUEST, 0, 0, check_head);
    return 0;
}
