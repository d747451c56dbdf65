/*
 * Safety, end to end: one test (or a few) per defect of the "safety" list,
 * each cited in its comment as "safety #N". The patterns are those of
 * test_hardening.c: a rejection test checks what the client got and then
 * sends a valid "sentinel" request that must be the first thing the origin
 * ever received; tests that need byte-level control of the origin use a raw
 * listening socket driven from the test itself.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "tests/e2e/fixture.h"

static void set_rcvtimeo(int fd, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

/* A request the head checks must refuse: status want, closed, nothing forwarded. */
#define REJECTS(name, want, raw) FX_REJECTS(e2e_safety, name, want, raw)

/*
 * The access-log lines (JSON) whose "path" is path, after waiting for at
 * least min_lines lines in all: how many there are; *ret gets the last one
 * (json_decref it) when ret is not NULL.
 */
static int log_lines_for(const char *path, int min_lines, json_t **ret)
{
    char *out, *line, *save = NULL;
    int n = 0;

    h_wait_log_lines(&px, min_lines);
    h_msleep(100); /* a line logged twice would show by now */
    out = h_slurp(px.out_path);
    if (ret)
        *ret = NULL;
    for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_t *j = json_loads(line, 0, NULL);
        const char *p = j ? json_string_value(json_object_get(j, "path")) : NULL;

        cr_assert(j, "an access-log line is not JSON: %s", line);
        if (p && !strcmp(p, path)) {
            n++;
            if (ret) {
                if (*ret)
                    json_decref(*ret);
                *ret = j;
                continue;
            }
        }
        json_decref(j);
    }
    free(out);
    return n;
}

/* ==== safety #1: framing fields named in Connection ========================= */

/*
 * safety #1: "Connection: Content-Length" would make the proxy drop the
 * Content-Length it framed the body with; the origin would then read the
 * body as a request of its own.
 */
REJECTS(connection_names_content_length_smuggling_is_400, 400,
        "POST /ok HTTP/1.1\r\nHost: a\r\nConnection: Content-Length\r\nContent-Length: 35\r\n\r\n"
        "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
/* safety #1: the same inside a list, in lower case. */
REJECTS(connection_names_content_length_in_list_is_400, 400,
        "POST /ok HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, content-length\r\n"
        "Content-Length: 35\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
/* safety #1: named in a second Connection field. */
REJECTS(connection_names_content_length_in_second_field_is_400, 400,
        "POST /ok HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nContent-Length: 35\r\n"
        "Connection: CONTENT-LENGTH\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
/* safety #1: Transfer-Encoding named in Connection. */
REJECTS(connection_names_transfer_encoding_is_400, 400,
        "POST /ok HTTP/1.1\r\nHost: a\r\nConnection: Transfer-Encoding\r\n"
        "Transfer-Encoding: chunked\r\n\r\n23\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n\r\n"
        "0\r\n\r\n")
/* safety #1: Transfer-Encoding, in a list of a second Connection field, odd case. */
REJECTS(connection_names_transfer_encoding_in_second_list_is_400, 400,
        "POST /ok HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n"
        "Transfer-Encoding: chunked\r\nConnection: x-a, tRaNsFeR-eNcOdInG\r\n\r\n"
        "23\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n\r\n0\r\n\r\n")
/* safety #1: Host named in Connection. */
REJECTS(connection_names_host_is_400, 400,
        "GET /ok HTTP/1.1\r\nHost: a\r\nConnection: Host\r\n\r\n")
/* safety #1: Host, in the list of a second Connection field. */
/* C10: the platform's fields are what the rules and the log go by; the origin keeps them. */
REJECTS(connection_names_true_client_ip_is_400, 400,
        "GET /ok HTTP/1.1\r\nHost: a\r\nConnection: True-Client-IP, X-Forwarded-For\r\n"
        "True-Client-IP: 198.51.100.7\r\nX-Forwarded-For: 198.51.100.7\r\n\r\n")
REJECTS(connection_names_x_forwarded_for_is_400, 400,
        "GET /ok HTTP/1.1\r\nHost: a\r\nConnection: x-forwarded-for\r\n"
        "X-Forwarded-For: 198.51.100.7\r\n\r\n")
REJECTS(connection_names_x_forwarded_proto_is_400, 400,
        "GET /ok HTTP/1.1\r\nHost: a\r\nConnection: X-Forwarded-Proto\r\n"
        "X-Forwarded-Proto: https\r\n\r\n")
REJECTS(connection_names_host_in_second_field_is_400, 400,
        "GET /ok HTTP/1.1\r\nConnection: keep-alive\r\nHost: a\r\nConnection: close, host\r\n\r\n")
/*
 * C1: a name that origins building CGI-style names read as
 * Transfer-Encoding (HTTP_TRANSFER_ENCODING): the proxy and the server frame
 * by Content-Length, and an application that looks the variable up would be
 * told chunked. Refused as a smuggling gadget, not forwarded.
 */
REJECTS(underscore_transfer_encoding_is_400, 400,
        "POST /ok HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\nContent-Length: 35\r\n\r\n"
        "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
/* C10: nor may a client stand in for the platform's True-Client-IP or X-Forwarded-For so. */
REJECTS(underscore_true_client_ip_is_400, 400,
        "GET /ok HTTP/1.1\r\nHost: a\r\nTrue_Client_IP: 192.0.2.1\r\n\r\n")
REJECTS(underscore_x_forwarded_for_is_400, 400,
        "GET /ok HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 192.0.2.1\r\n\r\n")
/* C10: any separator, as lighttpd's CGI and FastCGI read every one of them as '_'. */
REJECTS(dotted_true_client_ip_is_400, 400,
        "GET /ok HTTP/1.1\r\nHost: a\r\nTrue.Client.IP: 192.0.2.1\r\n\r\n")

/* The origin sends resp (then closes): the client must get a 502, never the broken response. */
static void expect_502_for(const char *resp)
{
    struct h_resp r;
    int fd = h_connect(px.port);

    cr_assert(fd >= 0);
    set_rcvtimeo(fd, 3000);
    origin_script(origin, resp, strlen(resp), 1);
    cr_assert_eq(h_sends(fd, "GET /bad HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0, "no complete response when the origin sent:\n%s",
                 h_shown(resp, strlen(resp)));
    cr_assert(!strncmp(r.head, "HTTP/1.1 502 ", 13), "origin sent:\n%s\nclient got:\n%s",
              h_shown(resp, strlen(resp)), r.head);
    cr_assert_null(memmem(r.body, r.body_len, "hello", 5), "the broken body leaked");
    h_resp_free(&r);
    h_close(fd);
}

/* safety #1: a response whose Connection names its own Content-Length. */
Test(e2e_safety, response_connection_names_content_length_is_502, .init = fx_up_grace,
     .fini = fx_down)
{
    expect_502_for("HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\n"
                   "hello");
}

/* safety #1: the same in a list. */
Test(e2e_safety, response_connection_names_content_length_in_list_is_502, .init = fx_up_grace,
     .fini = fx_down)
{
    expect_502_for("HTTP/1.1 200 OK\r\nConnection: keep-alive, content-length\r\n"
                   "Content-Length: 5\r\n\r\nhello");
}

/* safety #1: a response whose Connection names its Transfer-Encoding. */
Test(e2e_safety, response_connection_names_transfer_encoding_is_502, .init = fx_up_grace,
     .fini = fx_down)
{
    expect_502_for("HTTP/1.1 200 OK\r\nConnection: transfer-encoding\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
}

/* safety #1: a response whose Connection names Host. */
Test(e2e_safety, response_connection_names_host_is_502, .init = fx_up_grace, .fini = fx_down)
{
    expect_502_for("HTTP/1.1 200 OK\r\nHost: a\r\nConnection: Host\r\nContent-Length: 5\r\n\r\n"
                   "hello");
}

/* ==== safety #2: a queued response head outlives its block =================== */

#define UAF_CLIENTS 6

/* One upstream connection of the raw origin in the use-after-free scenario. */
struct uconn {
    int fd;
    size_t len;
    size_t body_left; /* /big body bytes still to write */
    char buf[65536];
};

static struct {
    struct uconn c[FX_RAW_MAX];
    int n;
    size_t big_body;   /* Content-Length of /big */
    long last_sent_ms; /* when the origin last wrote body bytes */
    int second_done;   /* /second was answered and that connection shut */
    char *second_resp; /* ~30 KiB of head, Content-Length 1000, 10 body bytes */
    size_t second_len;
} uaf;

static void uaf_build_second(void)
{
    static char resp[32768];
    size_t n = 0;

    n += (size_t)snprintf(resp + n, sizeof(resp) - n, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < 80; i++) {
        n += (size_t)snprintf(resp + n, sizeof(resp) - n, "X-Pad-%02d: ", i);
        memset(resp + n, 'p', 360);
        n += 360;
        memcpy(resp + n, "\r\n", 2);
        n += 2;
    }
    n += (size_t)snprintf(resp + n, sizeof(resp) - n, "Content-Length: 1000\r\n\r\n0123456789");
    uaf.second_resp = resp;
    uaf.second_len = n;
}

static void uaf_drop(struct uconn *u)
{
    for (int i = 0; i < rw.n; i++)
        if (rw.fd[i] == u->fd)
            rw.fd[i] = -1;
    (void)close(u->fd);
    u->fd = -1;
}

/* Answer every complete request head in u->buf. */
static void uaf_answer(struct uconn *u)
{
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    char *end;

    while (u->fd >= 0 && (end = memmem(u->buf, u->len, "\r\n\r\n", 4))) {
        size_t hl = (size_t)(end - u->buf) + 4;

        if (!strncmp(u->buf, "GET /big ", 9) || !strncmp(u->buf, "GET /cal ", 9)) {
            char head[128];
            size_t body = u->buf[5] == 'c' ? (size_t)64 << 20 : uaf.big_body;
            int n = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n",
                             body);
            (void)h_send(u->fd, head, (size_t)n);
            u->body_left = body;
        } else if (!strncmp(u->buf, "GET /second ", 12)) {
            (void)h_send(u->fd, uaf.second_resp, uaf.second_len);
            (void)shutdown(u->fd, SHUT_WR); /* 990 body bytes short */
            uaf.second_done = 1;
        } else {
            (void)h_send(u->fd, ok, sizeof(ok) - 1);
        }
        memmove(u->buf, u->buf + hl, u->len - hl);
        u->len -= hl;
    }
}

/* Run the raw origin for up to ms, or until until_fd (>= 0) is readable. */
static void uaf_pump(int ms, int until_fd)
{
    static char fill[65536];
    long end = h_now_ms() + ms;

    memset(fill, 'b', sizeof(fill));
    while (h_now_ms() < end) {
        struct pollfd p[FX_RAW_MAX + 2];
        int map[FX_RAW_MAX + 2], n = 0;

        p[n] = (struct pollfd){rw.lfd, POLLIN, 0};
        map[n++] = -1;
        for (int i = 0; i < uaf.n; i++) {
            if (uaf.c[i].fd < 0)
                continue;
            p[n] = (struct pollfd){uaf.c[i].fd,
                                   (short)(POLLIN | (uaf.c[i].body_left ? POLLOUT : 0)), 0};
            map[n++] = i;
        }
        if (until_fd >= 0) {
            p[n] = (struct pollfd){until_fd, POLLIN, 0};
            map[n++] = -2;
        }
        if (poll(p, (nfds_t)n, 5) <= 0)
            continue;
        for (int k = 0; k < n; k++) {
            struct uconn *u;

            if (!p[k].revents)
                continue;
            if (map[k] == -2)
                return;
            if (map[k] == -1) {
                int fd = accept(rw.lfd, NULL, NULL);
                if (fd >= 0 && uaf.n < FX_RAW_MAX) {
                    fx_raw_keep(fd);
                    uaf.c[uaf.n++] = (struct uconn){.fd = fd};
                } else if (fd >= 0) {
                    (void)close(fd);
                }
                continue;
            }
            u = &uaf.c[map[k]];
            if (p[k].revents & (POLLIN | POLLHUP | POLLERR)) {
                ssize_t r = recv(u->fd, u->buf + u->len, sizeof(u->buf) - u->len, MSG_DONTWAIT);
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                    uaf_drop(u);
                    continue;
                }
                if (r > 0) {
                    u->len += (size_t)r;
                    uaf_answer(u);
                }
            }
            if (u->fd >= 0 && u->body_left && (p[k].revents & POLLOUT)) {
                size_t want = u->body_left < sizeof(fill) ? u->body_left : sizeof(fill);
                ssize_t w = send(u->fd, fill, want, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (w > 0) {
                    u->body_left -= (size_t)w;
                    uaf.last_sent_ms = h_now_ms();
                }
            }
        }
    }
}

/* A client socket whose receive buffer is small from the SYN on. */
static int connect_small_rcvbuf(unsigned port)
{
    int fd = h_connect_rcvbuf(port, 4096);

    cr_assert(fd >= 0);
    set_rcvtimeo(fd, 3000);
    return fd;
}

static void uaf_reset(void)
{
    for (int i = 0; i < uaf.n; i++)
        if (uaf.c[i].fd >= 0)
            uaf_drop(&uaf.c[i]);
    uaf.n = 0;
    uaf.second_done = 0;
}

/*
 * How many bytes the proxy writes towards a client like A (small receive
 * buffer, not reading) before its socket stops taking more: the client's
 * receive queue plus the proxy's send queue once the origin can write no
 * more. It depends on the kernel's send buffer sizing, so it is measured.
 */
static size_t uaf_capacity(void)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    long q;
    int a, inq = 0;

    fx_proxy_grace(rw.port, NULL);
    uaf_reset();
    a = connect_small_rcvbuf(px.port);
    cr_assert_eq(getsockname(a, (struct sockaddr *)&sa, &sl), 0);
    cr_assert_eq(h_sends(a, "GET /cal HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    uaf.last_sent_ms = h_now_ms();
    for (long end = h_now_ms() + 15000; h_now_ms() - uaf.last_sent_ms < 300;) {
        cr_assert_lt(h_now_ms(), end, "the origin never stopped being able to write");
        uaf_pump(20, -1);
    }
    q = h_send_q(px.port, ntohs(sa.sin_port));
    cr_assert_gt(q, 0, "no send queue for the proxy's socket in /proc/net/tcp");
    cr_assert_eq(ioctl(a, FIONREAD, &inq), 0);
    h_close(a);
    cr_expect_eq(h_proxy_stop(&px), 0, "ringproxy exits 0 on SIGTERM");
    uaf_reset();
    return (size_t)q + (size_t)inq;
}

/* Read fd until EOF or timeout_ms, the raw origin running meanwhile. */
static size_t uaf_read_all(int fd, char *buf, size_t cap, int timeout_ms)
{
    long end = h_now_ms() + timeout_ms;
    size_t n = 0;

    while (n < cap && h_now_ms() < end) {
        ssize_t k;

        uaf_pump(20, fd);
        k = recv(fd, buf + n, cap - n, MSG_DONTWAIT);
        if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR))
            break;
        if (k > 0)
            n += (size_t)k;
    }
    return n;
}

/*
 * One round. Client A pipelines /big and /second and reads nothing. /big is
 * sized to leave about room bytes free in the sockets towards A once it is
 * all written; /second's ~30 KiB head, then, is left queued in the proxy,
 * by reference into its upstream's head block, and the origin breaks that
 * response off. Other clients then send heads full of secrets, and A reads
 * everything. Returns the bytes A read (into abuf); *ret_armed tells
 * whether /second was answered.
 */
static size_t uaf_round(size_t capacity, size_t room, char *abuf, size_t cap, int *ret_armed)
{
    static const char pipelined[] = "GET /big HTTP/1.1\r\nHost: a\r\n\r\n"
                                    "GET /second HTTP/1.1\r\nHost: a\r\n\r\n";
    static char req[32768];
    size_t an;
    int a;

    uaf_reset();
    uaf.big_body = capacity - room - 40; /* the head is about 40 bytes */
    a = connect_small_rcvbuf(px.port);
    cr_assert_eq(h_send(a, pipelined, sizeof(pipelined) - 1), 0);
    for (long end = h_now_ms() + 3000; !uaf.second_done && h_now_ms() < end;)
        uaf_pump(20, -1);
    *ret_armed = uaf.second_done;
    uaf_pump(100, -1); /* the proxy sees the origin's close */

    for (int i = 0; i < UAF_CLIENTS; i++) {
        struct h_resp r;
        size_t n = (size_t)snprintf(req, sizeof(req), "GET /b%d HTTP/1.1\r\nHost: a\r\n", i);
        int b = h_connect(px.port);

        /* secrets all along a head nearly as large as /second's */
        for (int k = 0; k < 28; k++) {
            n += (size_t)snprintf(req + n, sizeof(req) - n, "X-Fill-%02d: LEAKED-SECRET-%d-%02d ",
                                  k, i, k);
            memset(req + n, 'f', 960);
            n += 960;
            n += (size_t)snprintf(req + n, sizeof(req) - n, "\r\n");
        }
        n += (size_t)snprintf(req + n, sizeof(req) - n, "Cookie: secret=LEAKED-SECRET-%d\r\n\r\n",
                              i);
        cr_assert(b >= 0);
        cr_assert_eq(h_send(b, req, n), 0);
        uaf_pump(3000, b);
        set_rcvtimeo(b, 3000);
        if (h_read_response(b, &r, 0) == 0)
            h_resp_free(&r);
        h_close(b);
    }
    uaf_pump(50, -1);

    /* A reads everything the proxy has for it */
    an = uaf_read_all(a, abuf, cap, 5000);
    h_close(a);
    return an;
}

/*
 * safety #2: a response head queued for a client behind its full socket
 * points into the upstream connection's head block; when the origin breaks
 * that response off, the upstream connection is freed with its block, and
 * other clients' request heads (with their cookies) are written into it.
 * The client must never receive a byte of them. The rounds leave different
 * amounts of room in the client's sockets.
 */
Test(e2e_safety, queued_response_head_never_shows_other_requests, .fini = fx_down)
{
    static const size_t rooms[] = {12288, 4096, 20480};
    static char abuf[8 << 20];
    size_t capacity;
    int armed = 0;

    uaf_build_second();
    fx_raw_start(64);
    capacity = uaf_capacity();
    cr_assert_gt(capacity, 65536, "a client socket that takes %zu bytes?", capacity);
    for (size_t round = 0; round < sizeof(rooms) / sizeof(rooms[0]); round++) {
        const char *leak;
        size_t n;
        int ok;

        fx_proxy_grace(rw.port, NULL);
        n = uaf_round(capacity, rooms[round], abuf, sizeof(abuf), &ok);
        armed += ok;
        leak = memmem(abuf, n, "LEAKED-SECRET", 13);
        if (leak) {
            const char *from = leak - abuf > 200 ? leak - 200 : abuf;
            size_t len = (size_t)(abuf + n - from) < 400 ? (size_t)(abuf + n - from) : 400;

            cr_assert_fail("round %zu (room %zu of %zu): client A received another client's "
                           "request bytes at offset %zu of %zu:\n%s",
                           round, rooms[round], capacity, (size_t)(leak - abuf), n,
                           h_shown(from, len));
        }
        cr_expect_eq(h_proxy_stop(&px), 0, "ringproxy exits 0 on SIGTERM");
        uaf_reset();
    }
    cr_log_info("safety #2: /second answered in %d of %zu rounds (capacity %zu)", armed,
                sizeof(rooms) / sizeof(rooms[0]), capacity);
    /* a run in which the pattern never formed proves nothing: it may not pass */
    cr_assert_gt(armed, 0, "/big never completed in any round (capacity %zu)", capacity);
}

/* ==== safety #3: late stray bytes from the origin ============================== */

static const char poison[] = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nPOISONED";

static int raw_is_open(int fd)
{
    for (int i = 0; i < rw.n; i++)
        if (rw.fd[i] == fd)
            return fd >= 0;
    return 0;
}

/*
 * Wait (bounded) for a complete "GET path" head on any upstream connection
 * of the raw origin, accepting new ones as they come; returns the socket it
 * came on, or -1. Connections the proxy closes are closed here too.
 */
static int raw_wait_request(const char *path, int timeout_ms)
{
    static char bufs[FX_RAW_MAX][8192];
    static size_t lens[FX_RAW_MAX];
    char want[64];
    long end = h_now_ms() + timeout_ms;

    snprintf(want, sizeof(want), "GET %s ", path);
    memset(lens, 0, sizeof(lens));
    while (h_now_ms() < end) {
        struct pollfd p[FX_RAW_MAX + 1];
        int map[FX_RAW_MAX + 1], n = 0;

        p[n] = (struct pollfd){rw.lfd, POLLIN, 0};
        map[n++] = -1;
        for (int i = 0; i < rw.n; i++) {
            if (rw.fd[i] < 0)
                continue;
            p[n] = (struct pollfd){rw.fd[i], POLLIN, 0};
            map[n++] = i;
        }
        if (poll(p, (nfds_t)n, 5) <= 0)
            continue;
        for (int k = 0; k < n; k++) {
            const char *h;
            ssize_t r;
            int i = map[k];

            if (!p[k].revents)
                continue;
            if (i < 0) {
                fx_raw_keep(accept(rw.lfd, NULL, NULL));
                continue;
            }
            r = recv(rw.fd[i], bufs[i] + lens[i], sizeof(bufs[i]) - 1 - lens[i], MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                (void)close(rw.fd[i]);
                rw.fd[i] = -1;
                continue;
            }
            if (r < 0)
                continue;
            lens[i] += (size_t)r;
            bufs[i][lens[i]] = '\0';
            if ((h = strstr(bufs[i], want)) && strstr(h, "\r\n\r\n"))
                return rw.fd[i];
        }
    }
    return -1;
}

/* A client asks for path; the raw origin answers "path" wherever the request comes. */
static void next_client_gets_its_own_answer(const char *path)
{
    char req[128], resp[128];
    struct h_resp r;
    size_t bl = strlen(path + 1);
    int fd = h_connect(px.port), ufd;

    cr_assert(fd >= 0);
    set_rcvtimeo(fd, 3000);
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", path);
    snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s", bl, path + 1);
    cr_assert_eq(h_sends(fd, req), 0);
    ufd = raw_wait_request(path, 3000);
    cr_assert(ufd >= 0, "%s never reached the origin", path);
    fx_raw_sends(ufd, resp);
    cr_assert_eq(h_read_response(fd, &r, 0), 0, "no response to %s", path);
    cr_assert_null(memmem(r.body, r.body_len, "POISONED", 8),
                   "a later client got the origin's stray bytes:\n%s", r.head);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, bl, "body of %zu bytes for %s:\n%s", r.body_len, path, r.head);
    cr_assert_arr_eq(r.body, path + 1, bl);
    h_resp_free(&r);
    h_close(fd);
}

/*
 * /two reached the origin on where (request 1's connection was ufd): the
 * origin answers it there, after any stray bytes, and the second client
 * (fd2, closed here) must get exactly that answer.
 */
static void two_answered(int fd2, int where, int ufd, const char *when)
{
    static const char two[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo";
    struct h_resp r;

    cr_assert(where >= 0, "%s/two never reached the origin", when);
    fx_raw_sends(where, two);
    cr_assert_eq(h_read_response(fd2, &r, 0), 0, "%sno response to the second client", when);
    cr_assert_null(memmem(r.body, r.body_len, "POISONED", 8),
                   "%sthe second client got the origin's stray bytes (/two went %s):\n%s", when,
                   where == ufd ? "on request 1's connection" : "on another connection", r.head);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 3, "%sbody of %zu bytes:\n%s", when, r.body_len, r.head);
    cr_assert_arr_eq(r.body, "two", 3);
    h_resp_free(&r);
    h_close(fd2);
}

/*
 * Request 1 gets resp1, complete and without a body; at once a second
 * client sends "GET /two", and 50 ms after resp1 the origin writes a whole
 * response more on request 1's connection. If the proxy had put that
 * connection back in the pool at once, /two went on it and those late bytes
 * are read as its answer. The second client must get the origin's answer
 * to /two, and so must a third client 250 ms later.
 */
static void late_stray_bytes(const char *req1, int no_body, const char *resp1, int want1)
{
    char ub[8192];
    struct h_resp r;
    long t0;
    int fd = h_connect(px.port), fd2, ufd, where;

    cr_assert(fd >= 0);
    cr_assert_eq(h_sends(fd, req1), 0);
    ufd = fx_raw_take_request(ub, sizeof(ub), "request 1");
    fx_raw_sends(ufd, resp1);
    cr_assert_eq(h_read_response(fd, &r, no_body), 0, "no response to request 1");
    t0 = h_now_ms();
    cr_assert_eq(r.status, want1);
    h_resp_free(&r);

    fd2 = h_connect(px.port);
    cr_assert(fd2 >= 0);
    set_rcvtimeo(fd2, 3000);
    cr_assert_eq(h_sends(fd2, "GET /two HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    where = raw_wait_request("/two", 40);
    h_msleep((int)(t0 + 50 - h_now_ms() > 0 ? t0 + 50 - h_now_ms() : 0));
    if (raw_is_open(ufd))
        (void)h_send(ufd, poison, sizeof(poison) - 1); /* the proxy may have closed it: fine */
    if (where < 0)
        where = raw_wait_request("/two", 3000);
    two_answered(fd2, where, ufd, "");

    h_msleep((int)(t0 + 250 - h_now_ms() > 0 ? t0 + 250 - h_now_ms() : 0));
    next_client_gets_its_own_answer("/three");
    h_close(fd);
}

/* safety #3: after a response to HEAD (with a Content-Length, and no body). */
Test(e2e_safety, late_stray_bytes_after_head_response, .init = fx_raw_up, .fini = fx_down)
{
    late_stray_bytes("HEAD /one HTTP/1.1\r\nHost: a\r\n\r\n", 1,
                     "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n", 200);
}

/* safety #3: after a 204. */
Test(e2e_safety, late_stray_bytes_after_204, .init = fx_raw_up, .fini = fx_down)
{
    late_stray_bytes("GET /one HTTP/1.1\r\nHost: a\r\n\r\n", 0, "HTTP/1.1 204 No Content\r\n\r\n",
                     204);
}

static void raw_up_one_worker(void)
{
    fx_raw_up_cfg("\"workers\": 1");
}

/*
 * safety #3 with the proxy's loop stalled (a loaded machine, a paused
 * process): after a 204 the proxy is stopped; meanwhile the origin writes a
 * whole response more on that connection, a second client asks for /two,
 * and more than the 250 ms a bodiless exchange's connection stays out of
 * the pool go by. When the loop runs again the settle time is over and
 * both events wait at once: the stray bytes came first and must close the
 * connection, never answer /two. Then stopped while the 204 itself is
 * still unread, so that answer and the stray bytes arrive together.
 */
Test(e2e_safety, late_stray_bytes_while_the_proxy_is_stalled, .init = raw_up_one_worker,
     .fini = fx_down)
{
    char ub[8192];

    for (int round = 0; round < 2; round++) {
        struct h_resp r;
        int fd = h_connect(px.port), fd2, ufd;

        cr_assert(fd >= 0);
        set_rcvtimeo(fd, 3000);
        cr_assert_eq(h_sends(fd, "GET /one HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
        ufd = round ? raw_wait_request("/one", 3000)
                    : fx_raw_take_request(ub, sizeof(ub), "request 1");
        cr_assert(ufd >= 0, "/one never reached the origin");
        if (round == 0) {
            fx_raw_sends(ufd, "HTTP/1.1 204 No Content\r\n\r\n");
            cr_assert_eq(h_read_response(fd, &r, 0), 0, "no response to request 1");
            cr_assert_eq(r.status, 204);
            h_resp_free(&r);
            h_msleep(20); /* the exchange ends: its connection waits out the settle time */
            cr_assert_eq(kill(px.pid, SIGSTOP), 0);
        } else {
            cr_assert_eq(kill(px.pid, SIGSTOP), 0);
            fx_raw_sends(ufd, "HTTP/1.1 204 No Content\r\n\r\n");
        }
        (void)h_send(ufd, poison, sizeof(poison) - 1);
        h_msleep(20);
        fd2 = h_connect(px.port); /* the kernel completes it from the listen queue */
        cr_assert(fd2 >= 0);
        set_rcvtimeo(fd2, 3000);
        cr_assert_eq(h_sends(fd2, "GET /two HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
        h_msleep(400);
        cr_assert_eq(kill(px.pid, SIGCONT), 0);
        if (round == 1) {
            cr_assert_eq(h_read_response(fd, &r, 0), 0, "no response to request 1");
            cr_assert_eq(r.status, 204);
            h_resp_free(&r);
        }
        two_answered(fd2, raw_wait_request("/two", 3000), ufd, round ? "round 1: " : "round 0: ");
        h_close(fd);
    }
}

/* safety #3: after a 304. */
Test(e2e_safety, late_stray_bytes_after_304, .init = fx_raw_up, .fini = fx_down)
{
    late_stray_bytes("GET /one HTTP/1.1\r\nHost: a\r\n\r\n", 0, "HTTP/1.1 304 Not Modified\r\n\r\n",
                     304);
}

/*
 * safety #3: after a complete Content-Length body, extra bytes 50 ms later
 * on that connection; 150 ms after them a new client must get its own
 * answer. (A request sent before the extra bytes come would go on the
 * pooled connection, and they would be its answer: nothing can tell them
 * apart there, so this one waits.)
 */
Test(e2e_safety, late_stray_bytes_after_complete_body, .init = fx_raw_up, .fini = fx_down)
{
    char ub[8192];
    struct h_resp r;
    int fd = h_connect(px.port), ufd;

    cr_assert(fd >= 0);
    cr_assert_eq(h_sends(fd, "GET /one HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    ufd = fx_raw_take_request(ub, sizeof(ub), "request 1");
    fx_raw_sends(ufd, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    cr_assert_eq(h_read_response(fd, &r, 0), 0, "no response to request 1");
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    h_msleep(50);
    (void)h_send(ufd, poison, sizeof(poison) - 1);
    h_msleep(150);
    next_client_gets_its_own_answer("/two");
    h_close(fd);
}

/* ==== safety #4: broken chunk framing in a response ============================ */

static const char chunked_head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

/*
 * An earlier exchange on the same upstream connection, then "GET /bad"
 * answered with part1 and (300 ms later, when not NULL) part2. Returns the
 * client socket; *ret_t0 is when part1 was sent.
 */
static int bad_chunked_exchange(const char *part1, const char *part2, long *ret_t0)
{
    char ub[8192];
    size_t un;
    struct h_resp r;
    int fd = h_connect(px.port), ufd, eof;

    cr_assert(fd >= 0);
    cr_assert_eq(h_sends(fd, "GET /first HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    ufd = fx_raw_take_request(ub, sizeof(ub), "/first");
    fx_raw_sends(ufd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);

    cr_assert_eq(h_sends(fd, "GET /bad HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    un = h_recv_until(ufd, ub, sizeof(ub), 0, "\r\n\r\n", 3000, &eof);
    cr_assert(!strncmp(ub, "GET /bad ", 9), "/bad did not reuse the pooled upstream connection: %s",
              h_shown(ub, un));
    *ret_t0 = h_now_ms();
    fx_raw_sends(ufd, part1);
    if (part2) {
        h_msleep(300);
        (void)h_send(ufd, part2, strlen(part2));
    }
    return fd;
}

/* The one access-log line of /bad: its upstream_bytes is what the origin sent for it. */
static void assert_bad_logged_once(size_t upstream_bytes)
{
    json_t *j;
    int n = log_lines_for("/bad", 2, &j);

    cr_assert_eq(n, 1, "/bad was logged %d times", n);
    cr_assert_eq(json_integer_value(json_object_get(j, "upstream_bytes")),
                 (json_int_t)upstream_bytes,
                 "upstream_bytes %lld, the origin sent %zu for this response (%zu before it)",
                 (long long)json_integer_value(json_object_get(j, "upstream_bytes")),
                 upstream_bytes, strlen("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
    json_decref(j);
}

/* The whole broken response in one write: nothing of it was sent yet, so 502. */
static void bad_chunked_one_write(const char *resp)
{
    struct h_resp r;
    long t0;
    int fd = bad_chunked_exchange(resp, NULL, &t0);

    set_rcvtimeo(fd, 3000);
    cr_assert_eq(h_read_response(fd, &r, 0), 0, "no complete response within 3 s after:\n%s",
                 h_shown(resp, strlen(resp)));
    cr_assert(!strncmp(r.head, "HTTP/1.1 502 ", 13), "origin sent:\n%s\nclient got:\n%s",
              h_shown(resp, strlen(resp)), r.head);
    cr_assert_lt(h_now_ms() - t0, 3000);
    cr_assert_null(memmem(r.body, r.body_len, "hello", 5), "the broken body leaked");
    h_resp_free(&r);
    h_close(fd);
    assert_bad_logged_once(strlen(resp));
}

/* The break comes after part of the body went out: that part, then EOF, no last chunk. */
static void bad_chunked_split(const char *part1, const char *part2)
{
    static char buf[65536];
    long t0;
    int fd = bad_chunked_exchange(part1, part2, &t0), eof;

    h_read_to_eof(fd, buf, sizeof(buf), 3000, &eof);
    cr_assert(eof, "the client connection is still open %ld ms after the broken chunk",
              h_now_ms() - t0);
    cr_assert_lt(h_now_ms() - t0, 3000);
    cr_assert(!strncmp(buf, "HTTP/1.1 200 ", 13), "%s", h_shown(buf, strlen(buf)));
    cr_assert(strstr(buf, "\r\n5\r\nhello\r\n"), "%s", h_shown(buf, strlen(buf)));
    cr_assert_null(strstr(buf, "0\r\n\r\n"), "the proxy forged the end of a broken body:\n%s",
                   h_shown(buf, strlen(buf)));
    h_close(fd);
    assert_bad_logged_once(strlen(part1) + strlen(part2));
}

/* safety #4: a chunk size that is not hex, in the same write as the head. */
Test(e2e_safety, bad_chunk_size_in_one_write_is_502, .init = fx_raw_up, .fini = fx_down)
{
    char resp[256];

    snprintf(resp, sizeof(resp), "%s5\r\nhello\r\nzz\r\n", chunked_head);
    bad_chunked_one_write(resp);
}

/* safety #4: the bad chunk size 300 ms after the head and a first chunk. */
Test(e2e_safety, bad_chunk_size_after_partial_body_closes_without_last_chunk, .init = fx_raw_up,
     .fini = fx_down)
{
    char part1[256];

    snprintf(part1, sizeof(part1), "%s5\r\nhello\r\n", chunked_head);
    bad_chunked_split(part1, "zz\r\n");
}

/* Trailer fields of more than 8 KiB in all (1000-byte lines), then the final CRLF. */
static const char *big_trailers(void)
{
    static char t[16384];
    size_t n = 0;

    for (int i = 0; i < 10; i++) {
        n += (size_t)snprintf(t + n, sizeof(t) - n, "X-Trailer-%d: ", i);
        memset(t + n, 't', 985);
        n += 985;
        memcpy(t + n, "\r\n", 2);
        n += 2;
    }
    memcpy(t + n, "\r\n", 3);
    return t;
}

/* safety #4: trailers over 8 KiB, all in one write with the head. */
Test(e2e_safety, bad_chunk_trailers_over_8k_in_one_write_is_502, .init = fx_raw_up, .fini = fx_down)
{
    static char resp[32768];

    snprintf(resp, sizeof(resp), "%s5\r\nhello\r\n0\r\n%s", chunked_head, big_trailers());
    bad_chunked_one_write(resp);
}

/* safety #4: trailers over 8 KiB, 300 ms after the head and a first chunk. */
Test(e2e_safety, bad_chunk_trailers_over_8k_after_partial_body_closes_without_last_chunk,
     .init = fx_raw_up, .fini = fx_down)
{
    static char part2[32768];
    char part1[256];

    snprintf(part1, sizeof(part1), "%s5\r\nhello\r\n", chunked_head);
    snprintf(part2, sizeof(part2), "0\r\n%s", big_trailers());
    bad_chunked_split(part1, part2);
}

/* ==== safety #5: the client's timer while the origin thinks ==================== */

/*
 * safety #5: a client that sent its whole request is waiting for the origin,
 * not idle: upstream.response_timeout_ms decides (504), not
 * client.idle_timeout_ms (a silent close).
 */
Test(e2e_safety, client_timer_off_while_origin_works_504, .fini = fx_down)
{
    char ub[8192], buf[4096];
    json_t *j;
    long t0, dt;
    int fd, eof;

    fx_raw_up_cfg("\"client\": {\"idle_timeout_ms\": 500}, "
                  "\"upstream\": {\"response_timeout_ms\": 1500}");
    fd = h_connect(px.port);
    cr_assert(fd >= 0);
    t0 = h_now_ms();
    cr_assert_eq(h_sends(fd, "GET /wait HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    fx_raw_take_request(ub, sizeof(ub), "/wait"); /* and never answered */
    h_read_to_eof(fd, buf, sizeof(buf), 4000, &eof);
    dt = h_now_ms() - t0;
    cr_assert(!strncmp(buf, "HTTP/1.1 504 ", 13),
              "after %ld ms (idle_timeout_ms 500, response_timeout_ms 1500) the client got:\n%s",
              dt, h_shown(buf, strlen(buf)));
    cr_assert(dt >= 1200 && dt < 3500, "504 after %ld ms with response_timeout_ms 1500", dt);
    h_close(fd);
    cr_assert_eq(log_lines_for("/wait", 1, &j), 1);
    cr_assert_eq(json_integer_value(json_object_get(j, "status")), 504);
    json_decref(j);
}

/* ==== safety #7: early answers say that the connection ends ==================== */

/*
 * safety #7: the origin answers before the request body is read; the proxy
 * will close the client connection after it, and the response head must say
 * so (Connection: close).
 */
Test(e2e_safety, early_answer_says_close, .init = fx_raw_up, .fini = fx_down)
{
    static char req[2048];
    char ub[8192], buf[4096], v[128];
    struct h_resp r;
    int n = snprintf(req, sizeof(req),
                     "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n");
    int fd = h_connect(px.port), ufd, eof;

    cr_assert(fd >= 0);
    memset(req + n, 'x', 1000);
    cr_assert_eq(h_send(fd, req, (size_t)n + 1000), 0);
    ufd = fx_raw_take_request(ub, sizeof(ub), "/up");
    fx_raw_sends(ufd, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\n\r\nnope");
    set_rcvtimeo(fd, 3000);
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    cr_assert_eq(r.status, 401);
    cr_assert(h_header(r.head, "Connection", v, sizeof(v)) == 0 && strcasestr(v, "close"),
              "the proxy closes after an early answer, and its head must say so:\n%s", r.head);
    cr_assert_eq(r.body_len, 4);
    cr_assert_arr_eq(r.body, "nope", 4);
    h_resp_free(&r);
    h_read_to_eof(fd, buf, sizeof(buf), 3000, &eof);
    cr_assert(eof, "the client connection stays open after an early answer");
    cr_assert_eq(buf[0], '\0', "bytes after the response: %s", h_shown(buf, strlen(buf)));
    h_close(fd);
}

/* ==== safety #8: extension methods ============================================= */

/* "METHOD target version" goes upstream unchanged (as HTTP/1.1), and the origin answers. */
static void expect_method_forwarded(const char *method, const char *target, const char *version)
{
    char req[256], want[256], head[16384];
    struct h_resp r;

    snprintf(req, sizeof(req), "%s %s %s\r\nHost: a\r\n\r\n", method, target, version);
    fx_roundtrip(req, &r);
    cr_assert_eq(r.status, 200, "%s %s %s was answered %d", method, target, version, r.status);
    cr_assert_eq(r.body_len, 18, "not the origin's answer:\n%s", r.head);
    cr_assert_arr_eq(r.body, "hello from origin\n", 18);
    h_resp_free(&r);
    origin_last_head(origin, head, sizeof(head));
    snprintf(want, sizeof(want), "%s %s HTTP/1.1\r\n", method, target);
    cr_assert(!strncmp(head, want, strlen(want)), "sent %s, the origin got:\n%s", req, head);
}

/* safety #8: RFC 2324's BREW is a token like any other. */
Test(e2e_safety, extension_methods_brew_forwarded, .init = fx_up_grace, .fini = fx_down)
{
    expect_method_forwarded("BREW", "/pot", "HTTP/1.1");
}

/* safety #8: BAN (Varnish). */
Test(e2e_safety, extension_methods_ban_forwarded, .init = fx_up_grace, .fini = fx_down)
{
    expect_method_forwarded("BAN", "/x", "HTTP/1.1");
}

/* safety #8: a one-letter method. */
Test(e2e_safety, extension_methods_one_letter_forwarded, .init = fx_up_grace, .fini = fx_down)
{
    expect_method_forwarded("M", "/", "HTTP/1.1");
}

/* safety #8: a 20-letter method. */
Test(e2e_safety, extension_methods_long_token_forwarded, .init = fx_up_grace, .fini = fx_down)
{
    expect_method_forwarded("ABCDEFGHIJKLMNOPQRST", "/long", "HTTP/1.1");
}

/* safety #8: extension methods from an HTTP/1.0 client. */
Test(e2e_safety, extension_methods_http10_forwarded, .init = fx_up_grace, .fini = fx_down)
{
    expect_method_forwarded("BREW", "/pot", "HTTP/1.0");
}

/* method with a Content-Length body: forwarded with its body. */
static void expect_method_with_body_forwarded(const char *method)
{
    char req[256], want[256], head[16384];
    struct h_resp r;

    snprintf(req, sizeof(req), "%s /p HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n%s-body",
             method, !strcmp(method, "BAN") ? "ban!!" : "purge");
    fx_roundtrip(req, &r);
    cr_assert_eq(r.status, 200, "%s with a body was answered %d", method, r.status);
    cr_assert_eq(r.body_len, 18, "not the origin's answer:\n%s", r.head);
    h_resp_free(&r);
    origin_last_head(origin, head, sizeof(head));
    snprintf(want, sizeof(want), "%s /p HTTP/1.1\r\n", method);
    cr_assert(!strncmp(head, want, strlen(want)), "the origin got:\n%s", head);
    cr_assert(strstr(head, "\r\nContent-Length: 10\r\n"), "%s", head);
    snprintf(want, sizeof(want), "\r\n\r\n%s-body", !strcmp(method, "BAN") ? "ban!!" : "purge");
    cr_assert(fx_origin_got(want, 2000), "the %s body did not reach the origin", method);
}

/* safety #8: PURGE and BAN with a Content-Length body. */
Test(e2e_safety, extension_methods_purge_and_ban_with_body_forwarded, .init = fx_up_grace,
     .fini = fx_down)
{
    expect_method_with_body_forwarded("PURGE");
    expect_method_with_body_forwarded("BAN");
}

/*
 * safety #8: accepting extension methods keeps CONNECT a 501 (checked first,
 * nothing forwarded), and an extension method is then forwarded.
 */
Test(e2e_safety, extension_methods_connect_still_501, .init = fx_up_grace, .fini = fx_down)
{
    static const char req[] = "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n";

    fx_expect_rejected(req, sizeof(req) - 1, 501);
    expect_method_forwarded("BREW", "/pot", "HTTP/1.1");
}

/*
 * safety #8: methods that are not tokens stay 400 and reach nothing; an
 * extension method is then forwarded.
 */
Test(e2e_safety, extension_methods_non_token_still_400, .init = fx_up_grace, .fini = fx_down)
{
    static const char *const bad[] = {
        "GE(T / HTTP/1.1\r\nHost: a\r\n\r\n", "G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
        "BR\"EW /pot HTTP/1.1\r\nHost: a\r\n\r\n", "BREW: /pot HTTP/1.1\r\nHost: a\r\n\r\n"};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        fx_expect_answer_and_close(bad[i], strlen(bad[i]), 400);
    fx_assert_nothing_forwarded();
    expect_method_forwarded("BREW", "/pot", "HTTP/1.1");
}

/* ==== safety #9: chunk sizes with leading zeros ================================ */

/* POST /echo with this chunked body: 200, and the origin echoes want. */
static void expect_chunked_echo(const char *body, const char *want)
{
    char req[1024];
    struct h_resp r;

    snprintf(req, sizeof(req),
             "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n%s", body);
    fx_roundtrip(req, &r);
    cr_assert_eq(r.status, 200, "chunked body %s was answered %d", h_shown(body, strlen(body)),
                 r.status);
    cr_assert_eq(r.body_len, strlen(want));
    cr_assert_arr_eq(r.body, want, strlen(want));
    h_resp_free(&r);
}

/* safety #9: 16 digits, the value 5. */
Test(e2e_safety, chunk_size_leading_zeros_16_digits_forwarded, .init = fx_up_grace, .fini = fx_down)
{
    expect_chunked_echo("0000000000000005\r\nhello\r\n0\r\n\r\n", "hello");
}

/* safety #9: 30 leading zeros, also on the last chunk. */
Test(e2e_safety, chunk_size_leading_zeros_30_forwarded, .init = fx_up_grace, .fini = fx_down)
{
    expect_chunked_echo("0000000000000000000000000000005\r\nhello\r\n"
                        "0000000000000000000000000000006\r\n world\r\n"
                        "0000000000000000000000000000000\r\n\r\n",
                        "hello world");
}

/*
 * docs/http.md, "Framing": a request trailer that an origin merging
 * trailers into the head (Apache's MergeTrailers) would take for the
 * platform's field or the framing is refused (C10): no request completes
 * at the origin. A trailer of another name still passes.
 */
Test(e2e_safety, request_trailer_with_platform_or_framing_field_is_refused, .init = fx_up_grace,
     .fini = fx_down)
{
    static const char *const refused[] = {
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n0\r\nTrue-Client-IP: 192.0.2.1\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n0\r\nx_forwarded_for: 192.0.2.1\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n",
    };

    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        fx_expect_answer_and_close(refused[i], strlen(refused[i]), 400);
    h_msleep(100);
    cr_assert_eq(origin_requests(origin), 0, "the origin completed a request with such a trailer");
    expect_chunked_echo("5\r\nhello\r\n0\r\nServer-Timing: db;dur=5\r\n\r\n", "hello");
}

/*
 * safety #9: what counts is the value: sizes of 2^64 and more are 400 (no
 * request completes at the origin), while many digits of a small value pass.
 */
Test(e2e_safety, chunk_size_leading_zeros_value_decides, .init = fx_up_grace, .fini = fx_down)
{
    static const char *const too_big[] = {
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "10000000000000000\r\nSMUGGLE\r\n0\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "fffffffffffffffff\r\nSMUGGLE\r\n0\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "0000000000000000000010000000000000000\r\nSMUGGLE\r\n0\r\n\r\n",
    };
    static char buf[1 << 20];

    for (size_t i = 0; i < sizeof(too_big) / sizeof(too_big[0]); i++)
        fx_expect_answer_and_close(too_big[i], strlen(too_big[i]), 400);
    h_msleep(100);
    cr_assert_eq(origin_requests(origin), 0, "the origin completed a request with a huge chunk");
    origin_received(origin, buf, sizeof(buf));
    cr_assert_null(strstr(buf, "SMUGGLE"), "%s", h_shown(buf, strlen(buf)));
    expect_chunked_echo("0000000000000000000010\r\nsixteen-bytes-ok\r\n0\r\n\r\n",
                        "sixteen-bytes-ok");
}

/* safety #9: the response side: a chunk size with 20 leading zeros. */
Test(e2e_safety, chunk_size_leading_zeros_in_response_relayed, .init = fx_up_grace, .fini = fx_down)
{
    static const char resp[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "000000000000000000005\r\nhello\r\n00000000000000000000\r\n\r\n";
    struct h_resp r;
    int fd = h_connect(px.port);

    cr_assert(fd >= 0);
    set_rcvtimeo(fd, 3000);
    origin_script(origin, resp, sizeof(resp) - 1, 0);
    cr_assert_eq(h_sends(fd, "GET /z HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0, "no complete response");
    cr_assert_eq(r.status, 200, "%s", r.head);
    cr_assert_eq(r.body_len, 5);
    cr_assert_arr_eq(r.body, "hello", 5);
    h_resp_free(&r);
    cr_assert_eq(h_sends(fd, "GET /next HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0, "the connection broke after the response");
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    h_close(fd);
}

/* ==== safety #10: bad requests and the pool; half-close after pipelining ======= */

/*
 * safety #10: a request whose chunked body is malformed (all of it in one
 * write) gets its 400 without using up a pooled upstream connection.
 */
Test(e2e_safety, bad_chunked_requests_keep_pool, .init = fx_up_grace, .fini = fx_down)
{
    static const char bad[] = "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "zz\r\n";
    struct h_resp r;

    fx_roundtrip("GET /warm HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    cr_assert_eq(origin_accepts(origin), 1);
    for (int i = 0; i < 20; i++)
        fx_expect_answer_and_close(bad, sizeof(bad) - 1, 400);
    fx_roundtrip("GET /good HTTP/1.1\r\nHost: a\r\n\r\n", &r);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    cr_assert_eq(origin_accepts(origin), 1, "20 malformed requests cost %u upstream connections",
                 origin_accepts(origin) - 1);
}

/*
 * safety #10: a client that pipelines two complete requests and then shuts
 * its write side still gets both responses, then EOF.
 */
Test(e2e_safety, pipelined_then_half_close_all_answered, .init = fx_up_grace, .fini = fx_down)
{
    static const char reqs[] =
        "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /size/7 HTTP/1.1\r\nHost: a\r\n\r\n";
    struct h_resp r;
    char buf[4096];
    int fd = h_connect(px.port), eof;

    cr_assert(fd >= 0);
    set_rcvtimeo(fd, 3000);
    cr_assert_eq(h_send(fd, reqs, sizeof(reqs) - 1), 0);
    cr_assert_eq(shutdown(fd, SHUT_WR), 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0, "no response to the first request");
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 18);
    h_resp_free(&r);
    cr_assert_eq(h_read_response(fd, &r, 0), 0, "no response to the second request");
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 7);
    h_resp_free(&r);
    h_read_to_eof(fd, buf, sizeof(buf), 3000, &eof);
    cr_assert(eof, "the connection stays open after both answers to a half-closed client");
    cr_assert_eq(buf[0], '\0', "bytes after the responses: %s", h_shown(buf, strlen(buf)));
    h_close(fd);
}
