/*
 * End to end: the upstream pool (C11). ringproxy in front of the test
 * origin on 127.0.0.1 (tests/e2e/fixture.h): keep-alive reuse, the pool's
 * idle timeout, an origin that closes a pooled connection, and the
 * keep-alive race (a request retried once, never one with a body), read
 * from /metrics; and the receive buffer of upstream sockets.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/logging.h>

#include "tests/e2e/fixture.h"

static const char *const req_get = "GET / HTTP/1.1\r\nHost: site.example\r\n\r\n";

#define PM(name) h_metric(px.admin_port, (name))

/* A client connection whose first request was served: its upstream connection is in the pool. */
static int pooled_client(void)
{
    int fd = h_connect(px.port);

    cr_assert(fd >= 0);
    cr_assert_eq(h_status_on(fd, req_get), 200);
    return fd;
}

Test(e2e_pool, keepalive_reuse_ratio, .fini = fx_down)
{
    enum { NCONN = 10, NREQ = 2000 };
    int fds[NCONN];
    double reuses, connects, ok;
    uint64_t t0;

    fx_start(NULL, NULL);
    for (int i = 0; i < NCONN; i++) {
        fds[i] = h_connect(px.port);
        cr_assert(fds[i] >= 0);
    }
    t0 = h_now_ms();
    for (int i = 0; i < NREQ; i++) {
        int st =
            h_status_on(fds[i % NCONN], "GET /size/512 HTTP/1.1\r\nHost: site.example\r\n\r\n");
        cr_assert_eq(st, 200, "request %d: %d", i, st);
    }
    for (int i = 0; i < NCONN; i++)
        h_close(fds[i]);
    reuses = PM("ringproxy_upstream_reuses_total");
    connects = PM("ringproxy_upstream_connects_total");
    ok = PM("ringproxy_requests_total{class=\"2xx\"}");
    cr_log_info("%d requests over %d keep-alive clients in %llu ms: %u origin accepts, "
                "%.0f connects, %.0f reuses, reuse ratio %.4f",
                NREQ, NCONN, (unsigned long long)(h_now_ms() - t0), origin_accepts(origin),
                connects, reuses, reuses / ok);
    cr_assert_eq(ok, NREQ);
    cr_assert_eq(reuses + connects, NREQ, "every request either reused or connected");
    cr_assert_leq(connects, NCONN);
    cr_assert_eq(origin_accepts(origin), (unsigned)connects);
    cr_assert_geq(reuses / (NREQ - connects), 0.999);
    cr_assert_geq(reuses / ok, 0.995);
    cr_assert_eq(PM("ringproxy_upstream_retries_total"), 0);
}

Test(e2e_pool, idle_timeout_closes_pooled_connection, .fini = fx_down)
{
    int fd;

    fx_start("{\"upstream\": {\"pool_idle_timeout_ms\": 300}}", NULL);
    fd = pooled_client();
    cr_assert_eq(PM("ringproxy_upstream_pool_idle"), 1);
    cr_assert_eq(h_metric_wait(px.admin_port, "ringproxy_upstream_pool_idle", 0, 1500), 0,
                 "pooled connection still open after pool_idle_timeout_ms");
    cr_assert_eq(PM("ringproxy_upstream_connections"), 0);
    cr_assert_eq(h_status_on(fd, req_get), 200, "the client connection stays");
    cr_assert_eq(PM("ringproxy_upstream_connects_total"), 2);
    cr_assert_eq(origin_accepts(origin), 2);
    h_close(fd);
}

Test(e2e_pool, origin_close_seen_while_pooled, .fini = fx_down)
{
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    int fd;

    fx_start(NULL, NULL);
    /* the origin answers, then closes without saying so */
    origin_script(origin, resp, sizeof(resp) - 1, 1);
    fd = pooled_client();
    /* the pooled socket keeps a receive armed: the close is seen at once */
    cr_assert_eq(h_metric_wait(px.admin_port, "ringproxy_upstream_connections", 0, 500), 0);
    cr_assert_eq(h_status_on(fd, req_get), 200);
    h_close(fd);
    cr_assert_eq(PM("ringproxy_upstream_connects_total"), 2);
    cr_assert_eq(PM("ringproxy_upstream_reuses_total"), 0);
    cr_assert_eq(PM("ringproxy_upstream_retries_total"), 0, "no retry was needed");
    cr_assert_eq(PM("ringproxy_upstream_failures_total{reason=\"reset\"}"), 0);
}

Test(e2e_pool, keepalive_race_retries_idempotent_once, .fini = fx_down)
{
    struct h_resp r;
    int fd;

    fx_start(NULL, NULL);
    fd = pooled_client();
    /* the pooled connection closes just as the next request arrives */
    origin_script(origin, NULL, 0, 1);
    cr_assert_eq(h_sends(fd, req_get), 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    cr_assert_eq(r.status, 200, "a GET without body is retried on a fresh connection");
    cr_assert_eq(r.body_len, 18);
    h_resp_free(&r);
    cr_assert_eq(PM("ringproxy_upstream_retries_total"), 1);
    cr_assert_eq(PM("ringproxy_upstream_reuses_total"), 1);
    cr_assert_eq(origin_accepts(origin), 2);

    /* once: when the retry's connection fails the same way, 502 */
    cr_assert_eq(h_status_on(fd, req_get), 200); /* back to a pooled connection */
    origin_script(origin, NULL, 0, 1);
    origin_script(origin, NULL, 0, 1);
    cr_assert_eq(h_sends(fd, req_get), 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    cr_assert_eq(r.status, 502);
    h_resp_free(&r);
    cr_assert_eq(PM("ringproxy_upstream_retries_total"), 2);
    h_close(fd);
}

Test(e2e_pool, keepalive_race_never_retries_a_body, .fini = fx_down)
{
    struct h_resp r;
    int fd;

    fx_start(NULL, NULL);
    fd = pooled_client();
    origin_script(origin, NULL, 0, 1);
    cr_assert_eq(h_sends(fd, "POST /echo HTTP/1.1\r\nHost: site.example\r\n"
                             "Content-Length: 3\r\n\r\nabc"),
                 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    cr_assert_eq(r.status, 502, "a request with a body is not sent twice");
    h_resp_free(&r);
    h_close(fd);
    cr_assert_eq(PM("ringproxy_upstream_retries_total"), 0);
    cr_assert_eq(origin_requests(origin), 2);
}

/*
 * SO_RCVBUF of the proxy's sockets to the origin, read through copies of
 * the descriptors (pidfd_getfd): how many, up to max; -2 when this system
 * does not let the test copy descriptors of its child (Docker's default
 * seccomp profile without CAP_SYS_PTRACE, Yama's ptrace_scope 2 or 3).
 * upstream_rcvbuf(): the one socket's, or -1 when there is none.
 */
static int upstream_rcvbufs(unsigned origin_port, int *out, int max)
{
#if defined(SYS_pidfd_open) && defined(SYS_pidfd_getfd)
    char path[64];
    struct dirent *d;
    DIR *dir;
    int pfd, n = 0;

    pfd = (int)syscall(SYS_pidfd_open, px.pid, 0);
    if (pfd < 0)
        return -2;
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)px.pid);
    dir = opendir(path);
    cr_assert(dir);
    while (n >= 0 && n < max && (d = readdir(dir))) {
        struct sockaddr_in peer;
        socklen_t len = sizeof(peer);
        int fd, v = 0;

        if (d->d_name[0] == '.')
            continue;
        fd = (int)syscall(SYS_pidfd_getfd, pfd, atoi(d->d_name), 0);
        if (fd < 0) {
            if (errno == EPERM || errno == ENOSYS)
                n = -2;
            continue;
        }
        if (!getpeername(fd, (struct sockaddr *)&peer, &len) && peer.sin_family == AF_INET &&
            ntohs(peer.sin_port) == origin_port) {
            len = sizeof(v);
            cr_assert_eq(getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, &len), 0);
            out[n++] = v;
        }
        close(fd);
    }
    closedir(dir);
    close(pfd);
    return n;
#else
    (void)origin_port;
    (void)out;
    (void)max;
    return -2;
#endif
}

static int upstream_rcvbuf(unsigned origin_port)
{
    int v = -1, n = upstream_rcvbufs(origin_port, &v, 1);

    return n < 0 ? n : n ? v : -1;
}

/* net.core.rmem_max; skips the test where it cannot be read */
static unsigned long rmem_max(void)
{
    unsigned long v = 0;
    FILE *f = fopen("/proc/sys/net/core/rmem_max", "re");

    if (!f)
        cr_skip_test("net.core.rmem_max cannot be read here");
    cr_assert_eq(fscanf(f, "%lu", &v), 1);
    fclose(f);
    return v;
}

/* SO_RCVBUF of a socket nobody set it on: what autotuning starts from (tcp_rmem[1]) */
static int untouched_rcvbuf(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), v = 0;
    socklen_t len = sizeof(v);

    cr_assert_geq(fd, 0);
    cr_assert_eq(getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, &len), 0);
    close(fd);
    return v;
}

/* The SO_RCVBUF of the upstream connection a request opened, under proxy.json's upstream block. */
static int rcvbuf_with(const char *upstream_json)
{
    char json[256];
    int fd, v;

    snprintf(json, sizeof(json), "{\"upstream\": %s}", upstream_json);
    fx_start(json, NULL);
    fd = pooled_client();
    v = upstream_rcvbuf(origin_port(origin));
    if (v == -2)
        cr_skip_test("pidfd_getfd is not allowed here: the proxy's sockets cannot be inspected");
    cr_assert_neq(v, -1, "no upstream connection found in the proxy");
    h_close(fd);
    return v;
}

#define RCVBUF_WARN "upstream.receive_buffer_bytes 67108864 is above net.core.rmem_max"

/* upstream.receive_buffer_bytes: SO_RCVBUF of upstream sockets, within net.core.rmem_max. */
Test(e2e_pool, receive_buffer_bytes_sets_upstream_rcvbuf, .fini = fx_down)
{
    if (rmem_max() < 100000)
        cr_skip_test("net.core.rmem_max is below 100000 here");
    cr_assert_eq(rcvbuf_with("{\"receive_buffer_bytes\": 100000}"), 200000,
                 "the kernel doubles what SO_RCVBUF asks for");
    cr_assert_eq(h_count_in(px.err_path, "receive_buffer_bytes"), 0);
}

/*
 * The default: 1 MiB where net.core.rmem_max allows it, else a socket left
 * to autotuning (not one cut down to rmem_max), without a word.
 */
Test(e2e_pool, receive_buffer_bytes_default_is_1mib, .fini = fx_down)
{
    unsigned long max = rmem_max();
    int v = rcvbuf_with("{}");

    if (max >= 1048576)
        cr_assert_eq(v, 2 * 1048576);
    else
        cr_assert_neq(v, (int)(2 * max), "cut down to rmem_max: autotuning lost");
    h_msleep(200);
    cr_assert_eq(h_count_in(px.err_path, "receive_buffer_bytes"), 0);
}

/* 0: the kernel's autotuning, whatever rmem_max allows. */
Test(e2e_pool, receive_buffer_bytes_zero_leaves_autotuning, .fini = fx_down)
{
    int v = rcvbuf_with("{\"receive_buffer_bytes\": 0}");

    cr_assert_neq(v, 2 * 1048576);
    cr_assert_eq(v, untouched_rcvbuf(), "a small answer does not grow the buffer");
}

/* Above net.core.rmem_max: autotuning, and one warn line. */
Test(e2e_pool, receive_buffer_bytes_above_rmem_max_warns, .fini = fx_down)
{
    unsigned long max = rmem_max();
    int v;

    if (max >= 67108864)
        cr_skip_test("net.core.rmem_max is at least 64 MiB here");
    v = rcvbuf_with("{\"receive_buffer_bytes\": 67108864}");
    cr_assert_neq(v, (int)(2 * max), "cut down to rmem_max: autotuning lost");
    cr_assert_eq(v, untouched_rcvbuf());
    cr_assert(h_wait_in(px.err_path, RCVBUF_WARN, 3000), "no warning");
    cr_assert_eq(h_count_in(px.err_path, RCVBUF_WARN), 1);
}

/*
 * upstream.receive_buffer_total_bytes: room for one fixed buffer (twice
 * 100000) in the one worker's share, so of two upstream connections busy
 * at once the second is left to autotuning; once the first closes, the
 * next connection gets the fixed buffer again.
 */
Test(e2e_pool, receive_buffer_total_bytes_bounds_fixed_buffers, .fini = fx_down)
{
    int c1, c2, c3, u1, u2, u3, v[4], n, eof;
    char buf[4096];

    if (rmem_max() < 100000)
        cr_skip_test("net.core.rmem_max is below 100000 here");
    fx_raw_up_cfg("\"workers\": 1, \"upstream\": {\"receive_buffer_bytes\": 100000, "
                  "\"receive_buffer_total_bytes\": 200000}");
    c1 = h_connect(px.port);
    c2 = h_connect(px.port);
    cr_assert(c1 >= 0 && c2 >= 0);
    cr_assert_eq(h_send(c1, req_get, strlen(req_get)), 0);
    u1 = fx_raw_accept(3000);
    cr_assert(u1 >= 0, "no upstream connection for the first client");
    cr_assert_eq(h_send(c2, req_get, strlen(req_get)), 0);
    u2 = fx_raw_accept(3000);
    cr_assert(u2 >= 0, "no upstream connection for the second client");
    n = upstream_rcvbufs(rw.port, v, 4);
    if (n == -2)
        cr_skip_test("pidfd_getfd is not allowed here: the proxy's sockets cannot be inspected");
    cr_assert_eq(n, 2);
    cr_assert((v[0] == 200000) != (v[1] == 200000), "one fixed buffer, not %d and %d", v[0], v[1]);
    cr_assert_eq(v[0] == 200000 ? v[1] : v[0], untouched_rcvbuf());
    /* the first exchange ends with its connection: its share is free again */
    fx_raw_sends(u1, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    h_recv_until(c1, buf, sizeof(buf), 0, "ok", 3000, &eof);
    cr_assert(h_metric_wait(px.admin_port, "ringproxy_upstream_connections", 1, 3000) == 1);
    c3 = h_connect(px.port);
    cr_assert(c3 >= 0);
    cr_assert_eq(h_send(c3, req_get, strlen(req_get)), 0);
    u3 = fx_raw_accept(3000);
    cr_assert(u3 >= 0, "no upstream connection for the third client");
    n = upstream_rcvbufs(rw.port, v, 4);
    cr_assert_eq(n, 2);
    cr_assert((v[0] == 200000) != (v[1] == 200000), "one fixed buffer, not %d and %d", v[0], v[1]);
    (void)u2;
    h_close(c1);
    h_close(c2);
    h_close(c3);
}
