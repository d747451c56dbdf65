#include "tests/e2e/fixture.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

struct origin *origin;
struct proxy px;
struct fx_raw rw = {.lfd = -1};

void fx_origin_up(void)
{
    origin = origin_start("127.0.0.1", 0);
    cr_assert(origin);
}

void fx_start(const char *json, const char *const *args)
{
    fx_origin_up();
    h_proxy_start(&px, origin_port(origin), json, args);
}

void fx_up(void)
{
    fx_start(NULL, NULL);
}

void fx_proxy_grace(unsigned upstream_port, const char *inner)
{
    char json[1024];

    snprintf(json, sizeof(json), "{%s%s%s}", FX_GRACE, inner ? ", " : "", inner ? inner : "");
    h_proxy_start(&px, upstream_port, json, NULL);
}

void fx_up_cfg(const char *inner)
{
    fx_origin_up();
    fx_proxy_grace(origin_port(origin), inner);
}

void fx_up_grace(void)
{
    fx_up_cfg(NULL);
}

void fx_down(void)
{
    for (int i = 0; i < rw.n; i++)
        if (rw.fd[i] >= 0)
            (void)close(rw.fd[i]);
    rw.n = 0;
    if (rw.lfd >= 0)
        (void)close(rw.lfd);
    rw.lfd = -1;
    if (px.pid)
        cr_expect_eq(h_proxy_stop(&px), 0, "ringproxy exits 0 on SIGTERM");
    if (px.out_fd > 0)
        close(px.out_fd);
    origin_stop(origin);
}

/* ---- the raw origin -------------------------------------------------------- */

void fx_raw_start(int backlog)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);

    rw.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(rw.lfd >= 0);
    cr_assert_eq(bind(rw.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(listen(rw.lfd, backlog), 0);
    cr_assert_eq(getsockname(rw.lfd, (struct sockaddr *)&sa, &sl), 0);
    rw.port = ntohs(sa.sin_port);
}

void fx_raw_up_cfg(const char *inner)
{
    fx_raw_start(64);
    fx_proxy_grace(rw.port, inner);
}

void fx_raw_up(void)
{
    fx_raw_up_cfg(NULL);
}

void fx_raw_keep(int fd)
{
    if (fd >= 0 && rw.n < FX_RAW_MAX)
        rw.fd[rw.n++] = fd;
}

int fx_raw_accept(int timeout_ms)
{
    struct pollfd pfd = {rw.lfd, POLLIN, 0};
    int fd;

    if (poll(&pfd, 1, timeout_ms) <= 0)
        return -1;
    fd = accept(rw.lfd, NULL, NULL);
    fx_raw_keep(fd);
    return fd;
}

void fx_raw_sends(int fd, const char *s)
{
    cr_assert_eq(h_send(fd, s, strlen(s)), 0, "raw origin: send failed");
}

int fx_raw_take_request(char *buf, size_t cap, const char *what)
{
    int ufd = fx_raw_accept(3000), eof;
    size_t n;

    cr_assert(ufd >= 0, "the proxy did not connect to the origin for %s", what);
    n = h_recv_until(ufd, buf, cap, 0, "\r\n\r\n", 3000, &eof);
    cr_assert(strstr(buf, "\r\n\r\n"), "no request head at the origin for %s: %s", what,
              h_shown(buf, n));
    return ufd;
}

/* ---- checks against the fixture ---------------------------------------------- */

int fx_origin_got(const char *needle, int timeout_ms)
{
    static char buf[1 << 20];
    long end = h_now_ms() + timeout_ms;

    do {
        origin_received(origin, buf, sizeof(buf));
        if (strstr(buf, needle))
            return 1;
        h_msleep(10);
    } while (h_now_ms() < end);
    return 0;
}

void fx_roundtrip(const char *req, struct h_resp *r)
{
    cr_assert_eq(h_roundtrip(px.port, req, r), 0, "no response to:\n%s", h_shown(req, strlen(req)));
}

const char *fx_sentinel(void)
{
    static char buf[1 << 20];
    struct h_resp r;

    cr_assert_eq(h_roundtrip(px.port, "GET /sentinel HTTP/1.1\r\nHost: sentinel\r\n\r\n", &r), 0,
                 "the proxy no longer serves a valid request");
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    origin_received(origin, buf, sizeof(buf));
    return buf;
}

void fx_assert_nothing_forwarded(void)
{
    const char *buf = fx_sentinel();

    cr_assert(!strncmp(buf, "GET /sentinel ", 14),
              "the origin received bytes of the rejected request:\n%s", h_shown(buf, strlen(buf)));
    cr_assert_eq(origin_requests(origin), 1);
}

void fx_expect_answer_and_close(const char *req, size_t len, int want)
{
    struct h_resp r;
    char rest[4096];
    int fd = h_connect(px.port), eof;

    cr_assert(fd >= 0);
    (void)h_send(fd, req, len);
    cr_assert_eq(h_read_response(fd, &r, 0), 0, "no complete response to:\n%s", h_shown(req, len));
    cr_expect_eq(r.status, want, "answered %d instead of %d to:\n%s", r.status, want,
                 h_shown(req, len));
    h_resp_free(&r);
    h_read_to_eof(fd, rest, sizeof(rest), 2000, &eof);
    cr_expect(eof, "the connection is still open 2 s after an error that ends it");
    cr_expect_eq(rest[0], '\0', "bytes after the error response: %s", h_shown(rest, strlen(rest)));
    h_close(fd);
}

void fx_expect_rejected(const char *req, size_t len, int want)
{
    fx_expect_answer_and_close(req, len, want);
    fx_assert_nothing_forwarded();
}

json_t *fx_log_lines(int n)
{
    json_t *a = json_array();
    char *s, *save = NULL;

    cr_assert_geq(h_wait_log_lines(&px, n), n, "fewer than %d log lines", n);
    s = h_slurp(px.out_path);
    for (char *line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_error_t err;
        json_t *j = json_loads(line, 0, &err);

        cr_assert(j, "not JSON (%s): %s", err.text, line);
        json_array_append_new(a, j);
    }
    free(s);
    return a;
}
