/*
 * Protocol edges (#26.7, #26.8; docs/http.md): authorities that are not
 * host[:port], statuses outside 100..599, the final status owed after an
 * interim one, and the log's hostname for absolute-form requests.
 * Connection-token floods (#26.2) are tested under load in the adversarial
 * layer (tests/adv/abuse.c).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "tests/e2e/fixture.h"

static int status_of(const char *req)
{
    struct h_resp r;
    int s;

    cr_assert_eq(h_roundtrip(px.port, req, &r), 0, "no response to %s", req);
    s = r.status;
    h_resp_free(&r);
    return s;
}

/* #26.8: RFC 9112 3.2 - Host is uri-host [":" port]; anything else is a 400 and reaches nothing. */
Test(e2e_edges, malformed_authorities_are_400, .init = fx_up_grace, .fini = fx_down)
{
    static const char *const bad[] = {
        "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: :80\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a:b:c\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: []\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n",
        "GET http://a:b:c/ HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http://[::1/ HTTP/1.1\r\nHost: a\r\n\r\n",
    };
    static const char *const good[] = {
        "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a.example:\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n",
        "GET http://[::1]:80/ HTTP/1.1\r\nHost: a\r\n\r\n",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(status_of(bad[i]), 400, "%s", bad[i]);
    cr_assert_eq(origin_requests(origin), 0, "a malformed authority reached the origin");
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        cr_assert_eq(status_of(good[i]), 200, "%s", good[i]);
}

/* #26.8: a status the origin cannot mean (llhttp takes any three digits) is a 502. */
Test(e2e_edges, status_outside_100_599_is_502, .init = fx_up_grace, .fini = fx_down)
{
    static const char *const resp[] = {
        "HTTP/1.1 099 Low\r\nContent-Length: 2\r\n\r\nok",
        "HTTP/1.1 600 High\r\nContent-Length: 2\r\n\r\nok",
    };

    for (size_t i = 0; i < 2; i++) {
        origin_script(origin, resp[i], strlen(resp[i]), 1);
        cr_assert_eq(status_of("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 502, "%s", resp[i]);
    }
}

/* Line i of the log (bounded wait), parsed. */
static json_t *log_line(int i)
{
    json_t *a = fx_log_lines(i + 1), *j = json_incref(json_array_get(a, (size_t)i));

    json_decref(a);
    return j;
}

/* #26.8: for absolute-form, the log's hostname is the authority the origin got as Host. */
Test(e2e_edges, absolute_form_logs_the_host_sent, .init = fx_up_grace, .fini = fx_down)
{
    char head[4096];
    json_t *j;

    cr_assert_eq(status_of("GET http://abs.example/p HTTP/1.1\r\nHost: other.example\r\n\r\n"),
                 200);
    origin_last_head(origin, head, sizeof(head));
    cr_assert(strstr(head, "\r\nHost: abs.example\r\n"), "%s", head);
    j = log_line(0);
    cr_assert_str_eq(json_string_value(json_object_get(j, "hostname")), "abs.example");
    json_decref(j);
}

/* #26.7: after an interim response the final one is still owed: 502 when the origin closes. */
Test(e2e_edges, interim_then_close_is_502, .fini = fx_down)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    struct h_resp r;
    char head[2048];
    int ofd, fd;

    /* a raw origin: the test one answers only after a whole request, body included */
    fx_raw_start(4);
    fx_proxy_grace(rw.port, NULL);
    fd = h_connect(px.port);
    cr_assert_eq(h_sends(fd, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                             "Expect: 100-continue\r\n\r\n"),
                 0);
    ofd = accept(rw.lfd, NULL, NULL);
    cr_assert(ofd >= 0);
    (void)h_read_all(ofd, head, sizeof(head), 300); /* the head; the body never comes */
    cr_assert_eq(h_send(ofd, cont, sizeof(cont) - 1), 0);
    close(ofd);
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    cr_assert_eq(r.status, 100);
    h_resp_free(&r);
    cr_assert_eq(h_read_response(fd, &r, 0), 0, "no final response after the 100");
    cr_assert_eq(r.status, 502);
    h_resp_free(&r);
    h_close(fd);
}

/* #26.7: an origin that sends 103 and then nothing: the final status is a 504. */
Test(e2e_edges, interim_then_stall_is_504, .fini = fx_down)
{
    static const char early[] = "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n";
    struct h_resp r;
    int fd;

    fx_up_cfg("\"upstream\": {\"response_timeout_ms\": 500}");
    fd = h_connect(px.port);
    origin_script(origin, early, sizeof(early) - 1, 0);
    cr_assert_eq(h_sends(fd, "GET /hints HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    cr_assert_eq(r.status, 103);
    h_resp_free(&r);
    cr_assert_eq(h_read_response(fd, &r, 0), 0, "no final response after the 103");
    cr_assert_eq(r.status, 504);
    h_resp_free(&r);
    h_close(fd);
}

/*
 * ringproxy's own answer to HEAD has no body (RFC 9110 9.3.2): found by the
 * adversarial layer, where the 16 body bytes of a 502 to HEAD were read as
 * the start of the next response on the connection.
 */
Test(e2e_edges, own_answer_to_head_has_no_body, .init = fx_up_grace, .fini = fx_down)
{
    static const char bad[] = "HTTP/1.1 200 OK\r\nConnection: Content-Length\r\n"
                              "Content-Length: 2\r\n\r\n";
    struct h_resp r;
    int fd = h_connect(px.port);

    origin_script(origin, bad, sizeof(bad) - 1, 0);
    cr_assert_eq(h_sends(fd, "HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    cr_assert_eq(h_read_response(fd, &r, 1), 0);
    cr_assert_eq(r.status, 502);
    cr_assert_eq(r.content_length, 16, "the head of the answer to GET");
    h_resp_free(&r);
    cr_assert_eq(h_sends(fd, "GET /size/3 HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    cr_assert_eq(r.status, 200, "the next response starts where the head ended");
    cr_assert_eq(r.body_len, 3);
    h_resp_free(&r);
    h_close(fd);
}

struct slow_origin {
    int lfd;
    size_t got;
};

/* Accept one connection, take the head and a 3 MB body slowly, answer 200. */
static void *slow_origin_main(void *arg)
{
    struct slow_origin *o = arg;
    char buf[65536];
    size_t want = 0, seen = 0;
    int fd = accept(o->lfd, NULL, NULL);

    if (fd < 0)
        return NULL;
    h_msleep(300); /* let the proxy's queue towards us fill */
    for (long until = h_now_ms() + 10000; h_now_ms() < until;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        char *e;

        if (n <= 0)
            break;
        seen += (size_t)n;
        if (!want && (e = memmem(buf, (size_t)n, "\r\n\r\n", 4)))
            want = 3000000 + (size_t)(e + 4 - buf);
        if (want && seen >= want)
            break;
        h_msleep(1);
    }
    o->got = seen;
    (void)!send(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 40, MSG_NOSIGNAL);
    h_msleep(200);
    close(fd);
    return NULL;
}

/*
 * A client that sends a whole body and half-closes at once gets its
 * response, though the end of the body still waited for a slow origin when
 * the EOF came (found in review: it was cut off as client_closed).
 */
Test(e2e_edges, half_close_after_a_whole_body_gets_the_response, .fini = fx_down, .timeout = 60)
{
    struct slow_origin o = {0};
    char *body = malloc(3000000), buf[4096];
    pthread_t th;
    size_t n;
    int fd;

    cr_assert(body);
    fx_raw_start(4);
    o.lfd = rw.lfd;
    fx_proxy_grace(rw.port, NULL);
    cr_assert_eq(pthread_create(&th, NULL, slow_origin_main, &o), 0);
    memset(body, 'b', 3000000);
    fd = h_connect(px.port);
    cr_assert_eq(h_sends(fd, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 3000000\r\n\r\n"), 0);
    cr_assert_eq(h_send(fd, body, 3000000), 0);
    cr_assert_eq(shutdown(fd, SHUT_WR), 0);
    n = h_read_all(fd, buf, sizeof(buf), 10000);
    pthread_join(th, NULL);
    cr_assert(n > 0 && !strncmp(buf, "HTTP/1.1 200 OK", 15), "got %zu bytes: %.60s", n, buf);
    h_close(fd);
    free(body);
}

/*
 * A close while the client's socket holds unread input answers with a
 * reset, and a reset drops what the proxy's socket still had to send. A
 * client pipelines A, B and the start of a large POST, and reads nothing
 * yet (a small receive buffer): A's response is handed over whole (logged)
 * but part of it still waits in the proxy's socket; then the origin breaks
 * B's response, and the proxy must close without destroying A's tail: the
 * client reads all of A, B's part, then EOF, never a reset.
 */
Test(e2e_edges, aborted_exchange_keeps_earlier_responses, .fini = fx_down, .timeout = 60)
{
    enum { A_BODY = 40000 };
    static char buf[1 << 20];
    char head[4096], *abody = malloc(A_BODY + 1), *junk = calloc(1, 65536);
    int fd, ofd, reset = 0, eof = 0;
    size_t got = 0;
    long end;

    cr_assert(abody && junk);
    fx_raw_start(4);
    fx_proxy_grace(rw.port, NULL);
    fd = h_connect_rcvbuf(px.port, 4096);
    cr_assert(fd >= 0);
    cr_assert_eq(h_sends(fd, "GET /a HTTP/1.1\r\nHost: a\r\n\r\n"
                             "GET /b HTTP/1.1\r\nHost: a\r\n\r\n"
                             "POST /c HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000\r\n\r\n"),
                 0);
    /* as much of C's body as the sockets take: the proxy reads a little ahead, the rest waits */
    for (int i = 0; i < 64 && send(fd, junk, 65536, MSG_DONTWAIT) > 0; i++)
        ;
    ofd = fx_raw_take_request(head, sizeof(head), "A");
    cr_assert(strstr(head, "GET /a "), "%s", head);
    memset(abody, 'a', A_BODY);
    abody[A_BODY] = 0;
    snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", A_BODY);
    fx_raw_sends(ofd, head);
    fx_raw_sends(ofd, abody);
    /* A is handed over whole once it is logged; B reaches the origin after it */
    cr_assert(h_wait_in(px.out_path, "\"path\":\"/a\"", 5000), "A was not logged");
    memset(head, 0, sizeof(head));
    (void)h_recv_until(ofd, head, sizeof(head), 0, "\r\n\r\n", 1000, &eof);
    if (!strstr(head, "GET /b ")) {
        /* not on the same connection (the pool may not reuse it at once): a new one */
        ofd = fx_raw_take_request(head, sizeof(head), "B");
    }
    cr_assert(strstr(head, "GET /b "), "B did not reach the origin: %s", head);
    fx_raw_sends(ofd, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nbbb");
    (void)shutdown(ofd, SHUT_RDWR); /* closed by fx_down */
    cr_assert(h_wait_in(px.out_path, "\"path\":\"/b\"", 5000), "B was not logged");
    h_msleep(200); /* the proxy closes (or lingers) now */
    end = h_now_ms() + 10000;
    while (got < sizeof(buf) - 1 && h_now_ms() < end) {
        struct pollfd pf = {fd, POLLIN, 0};
        ssize_t n;

        if (poll(&pf, 1, 200) <= 0)
            continue;
        n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (n < 0 && errno == ECONNRESET)
            reset = 1;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = 0;
    close(fd);
    cr_assert(!reset, "reset after %zu bytes: A's response was destroyed (%s)", got,
              h_shown(buf, got));
    cr_assert(strstr(buf, abody), "A's body did not arrive whole (%zu bytes)", got);
    cr_assert(strstr(buf, "bbb"), "B's part did not arrive (%zu bytes)", got);
    free(abody);
    free(junk);
}
