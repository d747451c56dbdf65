/*
 * Safety #6: allocation failure never shortens or corrupts a message. In a
 * build with -Dfault_inject=true, RINGPROXY_FAULT_ALLOC_EVERY=N makes every
 * Nth segment or head-block allocation of a worker fail. Whatever a client
 * then gets must be either the exact response, an answer of ringproxy's own
 * (502), or a response cut off by a close that its framing shows; never a
 * response whose framing is complete and whose bytes are wrong, and never a
 * request body the origin takes as complete with bytes missing (the echo
 * would differ). The proxy keeps serving and exits 0. Skipped in builds
 * without fault injection.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "tests/e2e/fixture.h"

static int injecting(void)
{
    const char *e = getenv("RINGPROXY_FAULT_INJECT");

    return e && !strcmp(e, "1");
}

static void down(void)
{
    fx_down();
    unsetenv("RINGPROXY_FAULT_ALLOC_EVERY");
}

struct tally {
    int exact, refused, cut;
};

/* One response: exact, ringproxy's 502, or cut off (then the connection is done). */
static int check(int fd, struct tally *t, const char *what, const char *want, size_t n)
{
    struct h_resp r;

    if (h_read_response(fd, &r, 0) < 0) {
        t->cut++;
        h_resp_free(&r);
        return -1;
    }
    if (r.status == 502) {
        t->refused++;
    } else {
        cr_assert_eq(r.status, 200, "%s: status %d", what, r.status);
        if (want)
            cr_assert(r.body_len == n && !memcmp(r.body, want, n),
                      "%s: a complete response with wrong bytes (%zu of %zu)", what, r.body_len, n);
        else
            cr_assert(r.body_len == n && origin_body_ok(r.body, n),
                      "%s: a complete response with wrong bytes (%zu of %zu)", what, r.body_len, n);
        t->exact++;
    }
    h_resp_free(&r);
    return r.closed ? -1 : 0;
}

static void run(unsigned every)
{
    char env[16], req[512], *post, *body;
    struct tally t = {0};
    size_t blen = 60000;

    snprintf(env, sizeof(env), "%u", every);
    setenv("RINGPROXY_FAULT_ALLOC_EVERY", env, 1);
    fx_up_grace();
    body = malloc(blen);
    post = malloc(blen + 256);
    cr_assert(body && post);
    for (size_t i = 0; i < blen; i++)
        body[i] = (char)('A' + (i * 7) % 26);
    for (int round = 0; round < 30; round++) {
        int fd = h_connect(px.port), n;

        cr_assert(fd >= 0);
        /* two pipelined downloads, one by length and one chunked */
        snprintf(
            req, sizeof(req),
            "GET /size/%d HTTP/1.1\r\nHost: a\r\n\r\nGET /chunked/%d HTTP/1.1\r\nHost: a\r\n\r\n",
            70000 + round, 50000 + round);
        if (h_sends(fd, req) == 0 && check(fd, &t, "size", NULL, 70000 + (size_t)round) == 0 &&
            check(fd, &t, "chunked", NULL, 50000 + (size_t)round) == 0) {
            /* an upload the origin echoes: bytes lost in the middle would show */
            n = snprintf(post, 256, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %zu\r\n\r\n",
                         blen);
            memcpy(post + n, body, blen);
            if (h_send(fd, post, (size_t)n + blen) == 0)
                (void)check(fd, &t, "echo", body, blen);
        }
        h_close(fd);
    }
    free(body);
    free(post);
    cr_log_info("every %u: %d exact, %d refused with 502, %d cut off", every, t.exact, t.refused,
                t.cut);
    cr_assert_gt(t.refused + t.cut, 0, "no allocation failed: is fault injection on?");
    unsetenv("RINGPROXY_FAULT_ALLOC_EVERY");
}

TestSuite(e2e_faults, .fini = down, .timeout = 120);

Test(e2e_faults, every_7th_allocation_fails)
{
    if (!injecting())
        cr_skip_test("built without -Dfault_inject=true");
    run(7);
}

Test(e2e_faults, every_31st_allocation_fails)
{
    if (!injecting())
        cr_skip_test("built without -Dfault_inject=true");
    run(31);
}

Test(e2e_faults, every_97th_allocation_fails)
{
    if (!injecting())
        cr_skip_test("built without -Dfault_inject=true");
    run(97);
}
