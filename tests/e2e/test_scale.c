/*
 * Concurrency at scale (#20; docs/operations.md, "The upstream pool"): the
 * upstream pool grows with the concurrency instead of closing and reopening
 * connections past a fixed size, shrinks again when the load drops, and
 * thousands of connections open and close without leaving anything behind.
 *
 * Clients here are one thread driving many non-blocking sockets with
 * poll(): each sends a request, reads the whole response, sends the next.
 * Every loop is bounded in requests and time.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "tests/e2e/fixture.h"

#define REQ "GET /size/64 HTTP/1.1\r\nHost: a\r\n\r\n"
/* the origin holds each exchange this long: the exchanges overlap, as under real load */
#define REQ_SLOW "GET /sleep/50 HTTP/1.1\r\nHost: a\r\n\r\n"

struct scl {
    int fd;
    const char *req;
    int left;      /* requests still to send */
    int waiting;   /* a request is out, its response not yet whole */
    size_t len;    /* bytes of the current response so far */
    char buf[512]; /* the current response */
};

/* Soft descriptor limit up to the hard one (the proxy inherits it); the limit. */
static rlim_t raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl))
        return 1024;
    rl.rlim_cur = rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
    (void)getrlimit(RLIMIT_NOFILE, &rl);
    return rl.rlim_cur;
}

static void start(const char *json)
{
    const char *args[] = {"--workers", "2", NULL};

    fx_start(json, args);
}

/* Open n client connections (non-blocking after connect); 0 when all opened. */
static int open_clients(struct scl *c, int n, int per_client, const char *req)
{
    for (int i = 0; i < n; i++) {
        c[i] = (struct scl){.fd = h_connect(px.port), .left = per_client, .req = req};
        if (c[i].fd < 0)
            return -1;
        (void)fcntl(c[i].fd, F_SETFL, O_NONBLOCK);
    }
    return 0;
}

/* The response in c->buf is whole: 1, and checks it is the origin's 200. */
static int response_whole(struct scl *c)
{
    const char *end, *cl;

    c->buf[c->len] = '\0';
    end = strstr(c->buf, "\r\n\r\n");
    if (!end)
        return 0;
    cl = strstr(c->buf, "Content-Length: ");
    cr_assert(cl && cl < end, "no Content-Length: %s", c->buf);
    cr_assert(!strncmp(c->buf, "HTTP/1.1 200 ", 13), "%s", c->buf);
    return c->len >= (size_t)(end + 4 - c->buf) + strtoul(cl + 16, NULL, 10);
}

/*
 * Run every client's requests to the end, each sending its next request as
 * soon as its response is whole (bounded: limit_ms). Returns the responses.
 */
static long drive(struct scl *c, int n, long limit_ms)
{
    struct pollfd *p = calloc((size_t)n, sizeof(*p));
    long deadline = h_now_ms() + limit_ms, done = 0;
    int active = n;

    cr_assert(p);
    while (active && h_now_ms() < deadline) {
        active = 0;
        for (int i = 0; i < n; i++) {
            if (!c[i].waiting && c[i].left) {
                ssize_t w = send(c[i].fd, c[i].req, strlen(c[i].req), MSG_NOSIGNAL);
                cr_assert_eq(w, (ssize_t)strlen(c[i].req), "send: %s", strerror(errno));
                c[i].waiting = 1;
                c[i].left--;
                c[i].len = 0;
            }
            p[i] = (struct pollfd){.fd = c[i].waiting ? c[i].fd : -1, .events = POLLIN};
            active += c[i].waiting;
        }
        if (!active || poll(p, (nfds_t)n, 200) <= 0)
            continue;
        for (int i = 0; i < n; i++) {
            ssize_t r;

            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            r = recv(c[i].fd, c[i].buf + c[i].len, sizeof(c[i].buf) - 1 - c[i].len, 0);
            if (r <= 0) {
                int e = errno;
                char *err = h_slurp(px.err_path), *out = h_slurp(px.out_path);
                size_t el = strlen(err), ol = strlen(out);
                cr_assert_fail("client %d: the proxy closed or failed (%zd, %s); stderr: %s; "
                               "log: %s",
                               i, r, strerror(e), el > 600 ? err + el - 600 : err,
                               ol > 1500 ? out + ol - 1500 : out);
            }
            c[i].len += (size_t)r;
            if (response_whole(&c[i])) {
                c[i].waiting = 0;
                done++;
            }
        }
    }
    free(p);
    return done;
}

/*
 * Rounds: every client sends a request, and the next round starts when all
 * responses are in, so the exchanges end together and their connections are
 * idle at once, as when a busy proxy finishes a batch of responses.
 */
static long rounds(struct scl *c, int n, int nrounds)
{
    long done = 0;

    for (int r = 0; r < nrounds; r++) {
        for (int i = 0; i < n; i++)
            c[i].left = 1;
        done += drive(c, n, 20000);
    }
    return done;
}

static void close_clients(struct scl *c, int n)
{
    for (int i = 0; i < n; i++)
        if (c[i].fd >= 0)
            close(c[i].fd);
}

/*
 * 300 clients in rounds on 2 workers, each exchange held 50 ms by the
 * origin so that they overlap: the pool grows to what they use
 * and steady load reuses it. With a pool of 64 per worker, past 128
 * concurrent exchanges every finished one closed its connection and the
 * next connected anew: thousands of connects for 6,000 requests.
 */
Test(e2e_scale, pool_grows_with_concurrency, .fini = fx_down, .timeout = 90)
{
    enum { N = 300, PER = 20 };
    struct scl *c = calloc(N, sizeof(*c));
    long done, connects, reuses;

    cr_assert(c);
    cr_assert(raise_nofile() >= 4 * N + 64, "needs %d descriptors", 4 * N + 64);
    start("{\"shutdown_grace_ms\": 1000}");
    cr_assert_eq(open_clients(c, N, 0, REQ_SLOW), 0);
    done = rounds(c, N, PER);
    cr_assert_eq(done, (long)N * PER, "%ld of %d responses", done, N * PER);
    connects = h_metric(px.admin_port, "ringproxy_upstream_connects_total");
    reuses = h_metric(px.admin_port, "ringproxy_upstream_reuses_total");
    cr_log_info("pool: %ld connects, %ld reuses for %d requests from %d clients", connects, reuses,
                N * PER, N);
    /* at most one per client, with room for a worker's connections just back in its pool */
    cr_expect_leq(connects, N + N / 4, "%ld upstream connects for %d concurrent clients", connects,
                  N);
    cr_expect_geq(reuses, (long)N * PER - connects);
    close_clients(c, N);
    free(c);
}

/*
 * After a burst the pool shrinks to what the load now uses: the most
 * recently used connections serve it, the rest close after the idle timeout.
 */
Test(e2e_scale, pool_shrinks_when_load_drops, .fini = fx_down, .timeout = 90)
{
    enum { N = 200, FEW = 8 };
    struct scl *c = calloc(N, sizeof(*c));
    long idle, connects;

    cr_assert(c);
    cr_assert(raise_nofile() >= 4 * N + 64);
    start("{\"upstream\": {\"pool_idle_timeout_ms\": 1000}, \"shutdown_grace_ms\": 1000}");
    cr_assert_eq(open_clients(c, N, 0, REQ_SLOW), 0);
    cr_assert_eq(rounds(c, N, 5), (long)N * 5);
    idle = h_metric(px.admin_port, "ringproxy_upstream_pool_idle");
    cr_expect_geq(idle, N / 4, "%ld idle upstream connections after %d concurrent clients", idle,
                  N);
    connects = h_metric(px.admin_port, "ringproxy_upstream_connects_total");

    /* a few clients keep going for 2.5 idle timeouts: they reuse, the rest age out */
    long until = h_now_ms() + 2500;
    while (h_now_ms() < until) {
        for (int i = 0; i < FEW; i++)
            c[i].left = 1;
        cr_assert_eq(drive(c, FEW, 5000), FEW);
        h_msleep(5);
    }
    idle = h_metric(px.admin_port, "ringproxy_upstream_pool_idle");
    cr_expect_leq(idle, 2 * FEW, "%ld idle upstream connections for %d clients", idle, FEW);
    cr_expect_leq(h_metric(px.admin_port, "ringproxy_upstream_connects_total"), connects + FEW,
                  "the few clients reused the pool");
    close_clients(c, FEW);
    idle = h_metric_wait(px.admin_port, "ringproxy_upstream_pool_idle", 0, 4000);
    cr_expect_eq(idle, 0, "%ld idle upstream connections left after the idle timeout", idle);
    close_clients(c + FEW, N - FEW);
    free(c);
}

/*
 * 2,000 keep-alive clients (800 under the sanitizers; fewer when the
 * descriptor limit is lower), each
 * with a request done, close at once, half with a reset: every client and
 * upstream descriptor is given back, the proxy answers, and it stops at
 * once with its pool open.
 */
Test(e2e_scale, thousands_close_at_once, .fini = fx_down, .timeout = 120)
{
    rlim_t lim = raise_nofile();
    const char *san = getenv("RINGPROXY_SANITIZED");
    int want = san && !strcmp(san, "1") ? 800 : 2000; /* the origin is a thread per connection */
    int n = lim > (rlim_t)want * 3 + 256 ? want : (int)((lim - 256) / 3);
    struct scl *c = calloc((size_t)n, sizeof(*c));
    int base, fds;
    long done, deadline;
    struct h_resp r;

    cr_assert(c && n >= 500, "descriptor limit %lu", (unsigned long)lim);
    if (n < want)
        cr_log_info("descriptor limit %lu: %d clients", (unsigned long)lim, n);
    start("{\"shutdown_grace_ms\": 1000}");
    h_msleep(200);
    base = h_fd_count(px.pid);
    cr_assert_eq(open_clients(c, n, 0, REQ_SLOW), 0);
    done = rounds(c, n, 2);
    cr_assert_eq(done, 2 * n, "%ld of %d responses", done, 2 * n);
    cr_expect_eq(h_metric(px.admin_port, "ringproxy_client_connections"), n);
    for (int i = 0; i < n; i++) {
        if (i % 2) {
            struct linger lg = {1, 0};
            (void)setsockopt(c[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
        close(c[i].fd);
        c[i].fd = -1;
    }
    cr_expect_eq(h_metric_wait(px.admin_port, "ringproxy_client_connections", 0, 10000), 0);
    /* the pool stays: its connections are all the proxy holds beyond the baseline */
    deadline = h_now_ms() + 10000;
    do {
        fds = h_fd_count(px.pid);
        if (fds - base <= h_metric(px.admin_port, "ringproxy_upstream_pool_idle"))
            break;
        h_msleep(50);
    } while (h_now_ms() < deadline);
    cr_expect_leq(fds - base, h_metric(px.admin_port, "ringproxy_upstream_pool_idle"),
                  "%d descriptors beyond the %d of start-up", fds - base, base);
    cr_assert_eq(h_roundtrip(px.port, REQ, &r), 0);
    cr_expect_eq(r.status, 200);
    h_resp_free(&r);
    free(c);
    long t0 = h_now_ms();
    cr_expect_eq(h_proxy_stop(&px), 0);
    px.pid = 0;
    cr_expect_lt(h_now_ms() - t0, 3000, "stopping with a full pool took %ld ms", h_now_ms() - t0);
}

/*
 * Memory follows the load back down (docs/operations.md, "After a burst"):
 * after 2,000 overlapping exchanges on one worker, once the clients have gone and the
 * pool's connections have aged out, the proxy's RSS comes back near its
 * level before the burst. The last memory freed is the idle upstream
 * connections' (pool_idle_timeout_ms after the burst, seconds after the
 * free lists were trimmed): it must go back to the kernel too. Not under the
 * sanitizers, whose allocator keeps freed memory.
 */
Test(e2e_scale, memory_returns_after_a_burst, .fini = fx_down, .timeout = 90)
{
    enum { WANT = 2000, WARM = 50 };
    const char *san = getenv("RINGPROXY_SANITIZED");
    const char *one_worker[] = {"--workers", "1", NULL};
    rlim_t lim = raise_nofile();
    int n = lim > (rlim_t)WANT * 3 + 256 ? WANT : (int)((lim - 256) / 3);
    struct scl *c;
    long base, peak, now = -1, deadline;

    if (san && !strcmp(san, "1"))
        cr_skip_test("the sanitizers' allocator keeps freed memory");
    cr_assert(c = calloc(WANT, sizeof(*c)));
    cr_assert(n >= 1000, "descriptor limit %lu", (unsigned long)lim);
    fx_start("{\"upstream\": {\"pool_idle_timeout_ms\": 3000}, \"shutdown_grace_ms\": 1000}",
             one_worker);
    /* the level before: a little traffic, then quiet until it is trimmed */
    cr_assert_eq(open_clients(c, WARM, 0, REQ_SLOW), 0);
    cr_assert_eq(rounds(c, WARM, 2), 2 * WARM);
    close_clients(c, WARM);
    cr_assert_eq(h_metric_wait(px.admin_port, "ringproxy_upstream_pool_idle", 0, 8000), 0);
    h_msleep(2500);
    cr_assert_gt(base = h_rss_kib(px.pid), 0);

    cr_assert_eq(open_clients(c, n, 0, REQ_SLOW), 0);
    cr_assert_eq(rounds(c, n, 2), 2 * n);
    cr_assert_gt(peak = h_rss_kib(px.pid), 0);
    close_clients(c, n);
    cr_assert_eq(h_metric_wait(px.admin_port, "ringproxy_client_connections", 0, 5000), 0);
    cr_assert_eq(h_metric_wait(px.admin_port, "ringproxy_upstream_pool_idle", 0, 8000), 0);
    /* memory not needed for a second goes back within two more */
    deadline = h_now_ms() + 3500;
    do {
        h_msleep(250);
        now = h_rss_kib(px.pid);
    } while (now - base > 2048 && h_now_ms() < deadline);
    cr_log_info("RSS %ld KiB before the burst, %ld at its end, %ld after", base, peak, now);
    cr_expect_gt(peak - base, 4096, "the burst was too small to tell (%ld -> %ld KiB)", base, peak);
    cr_expect_leq(now - base, 2048, "RSS %ld KiB before the burst, %ld at its end, %ld after", base,
                  peak, now);
    free(c);
}
