/*
 * The adversarial layer, part two (#26): five ways one hostile peer used to
 * hurt the proxy, each played here by many concurrent clients against the
 * real ringproxy, every loop bounded in count and time:
 *
 *  tunnel_half_close: 48 tunnels after a 101 (32 under the sanitizers), each
 *    direction a random-sized payload (none, a few bytes, up to 1 MiB) sent
 *    in random pieces and half-closed at a random moment: client first,
 *    origin first, or both at once. Each end must get exactly its own
 *    tunnel's bytes, all of them, then EOF; the other direction keeps
 *    working after a half-close; one access-log line (101) per tunnel.
 *  fd_exhaustion_pauses_accepting: the proxy under a soft RLIMIT_NOFILE of
 *    64, filled up, while 40 clients keep connecting and sending requests
 *    (they wait in the backlog) and 8 keep-alive clients that were there
 *    first keep getting their own tagged answers. The proxy must not spin
 *    (its utime+stime over 1.5 s stays under 40 % of one core), say
 *    "accept: Too many open files" once, count
 *    ringproxy_accept_pauses_total, answer /healthz with 503, and accept
 *    again (and say so) once descriptors are free.
 *  fd_exhaustion_upstream_is_502: 32 connected clients, then the proxy's
 *    limit lowered to its lowest free descriptor: requests get their own
 *    200 or a 502, never hang; every 502 is counted as
 *    ringproxy_upstream_failures_total{reason="no_socket"} and logged as
 *    upstream_connect_failed, and all are answered again once the limit is
 *    raised.
 *  dns_storm_resolves_once_a_second: in the resolution environment
 *    (tests/e2e/netns.h), next-hop resolves to an address that refuses
 *    connections; 32 clients make failing requests for 3 s. Every one is a
 *    prompt 502, and the scripted nameserver sees at most one resolution (A
 *    and AAAA) a second.
 *  long_log_lines_stay_whole: 8 clients through 2 workers, each request
 *    with its own tagged User-Agent and Referer of 2500 to 4000 bytes each
 *    (lines of 5.5 to 9 KiB, longer than PIPE_BUF), stdout a pipe read
 *    slowly: every line is whole JSON, its User-Agent, Referer and path
 *    exactly the ones sent, every request logged exactly once.
 *  connection_token_flood: 6 attackers send heads with 2-4 Connection
 *    fields of 200-900 options and up to 80 other fields (some pipelined
 *    behind a good request) while 4 keep-alive clients keep getting their
 *    own tagged answers. Every flood is a 400, none reaches the origin; and
 *    the proxy's CPU for a batch of floods (2 fields of 3300 options, 90
 *    other fields) is at most 5 times its CPU for the same bytes without
 *    the options (the field renamed, so forwarded): on c2cf0d5 every field
 *    was looked up in every Connection value, and the floods forwarded.
 *
 * Sizes and counts are smaller under the sanitizers (RINGPROXY_SANITIZED=1).
 * Random choices come from $ADV_SEED (tests/adv/common.h), printed as
 * `abuse[<test>]: seed=N` on stderr and in $ADV_REPORT_DIR/abuse-<test>.txt
 * with the failures; every failure message names the seed.
 *
 *   meson test -C build adv_abuse -v
 *   ADV_SEED=N meson test -C build adv_abuse -v
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <jansson.h>

#include "tests/adv/common.h"
#include "tests/e2e/harness.h"
#include "tests/e2e/netns.h"
#include "tests/support/dns.h"
#include "tests/support/origin.h"

/* ---- a run: seed, report, failures ---------------------------------------- */

#define MAX_SHOWN 8

static struct {
    const char *name;
    uint64_t seed;
    char seedstr[24];
    FILE *report;
    char report_path[512];
    pthread_mutex_t mu;
    unsigned nfail;
    char shown[MAX_SHOWN][400];
} run = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* RINGPROXY_SANITIZED=1: the proxy is built with the sanitizers, everything is slower. */
static int sanitized(void)
{
    const char *san = getenv("RINGPROXY_SANITIZED");

    return san && !strcmp(san, "1");
}

#define SCALED(normal, small) (sanitized() ? (small) : (normal))

/* To stderr and the report (under TAP, Criterion hides a test's stderr). */
__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&run.mu);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (run.report) {
        va_start(ap, fmt);
        vfprintf(run.report, fmt, ap);
        va_end(ap);
        fflush(run.report);
    }
    pthread_mutex_unlock(&run.mu);
}

/* A broken invariant, from any thread: counted, the first few kept for the verdict. */
__attribute__((format(printf, 1, 2))) static void fail(const char *fmt, ...)
{
    char msg[400];
    unsigned n;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&run.mu);
    n = run.nfail++;
    if (n < MAX_SHOWN)
        snprintf(run.shown[n], sizeof(run.shown[n]), "%s", msg);
    pthread_mutex_unlock(&run.mu);
    if (n < 40)
        say("abuse[%s]: seed=%s FAIL %s\n", run.name, run.seedstr, msg);
}

static void run_start(const char *name)
{
    const char *env = getenv("ADV_SEED");

    run.name = name;
    run.seed = strtoull(env ? env : "1", NULL, 10);
    if (!run.seed)
        run.seed = 1;
    snprintf(run.seedstr, sizeof(run.seedstr), "%llu", (unsigned long long)run.seed);
    if (getenv("ADV_REPORT_DIR")) {
        snprintf(run.report_path, sizeof(run.report_path), "%s/abuse-%s.txt",
                 getenv("ADV_REPORT_DIR"), name);
        run.report = fopen(run.report_path, "w");
    }
    say("abuse[%s]: seed=%s%s\n", name, run.seedstr, sanitized() ? " (sanitized)" : "");
}

/* The verdict: every kept message is a failure of the test, and the count. */
static void run_end(void)
{
    if (run.report)
        fclose(run.report);
    run.report = NULL;
    if (!run.nfail)
        return;
    for (unsigned i = 0; i < run.nfail && i < MAX_SHOWN; i++)
        cr_expect_fail("%s", run.shown[i]);
    cr_assert_fail("abuse[%s] ADV_SEED=%s: %u failures%s%s", run.name, run.seedstr, run.nfail,
                   run.report_path[0] ? "; report: " : "", run.report_path);
}

/* A generator of its own for each actor of the run. */
static uint64_t rng_for(unsigned id)
{
    uint64_t r = (run.seed * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)(id + 1) << 32) ^ 0x5bd1e995ull;

    return r ? r : 1;
}

/* SIGTERM: the proxy exits 0 and its stderr has no sanitizer report. */
static void proxy_finish(struct proxy *px)
{
    int rc = h_proxy_stop(px);
    char *err = h_slurp(px->err_path);
    const char *san = adv_sanitizer_report(err);

    if (rc != 0)
        fail("the proxy exited %d on SIGTERM, not 0", rc);
    if (san)
        fail("sanitizer report on the proxy's stderr: %.300s", san);
    free(err);
}

/* The proxy's descriptors after start-up, once the harness's probes are closed. */
static int settled_fds(pid_t pid)
{
    int base;

    h_msleep(200);
    base = h_fd_count(pid);
    for (int i = 0; i < 3; i++) {
        int n;

        h_msleep(50);
        n = h_fd_count(pid);
        if (n >= 0 && n < base)
            base = n;
    }
    return base;
}

/* utime + stime of every thread of pid, in seconds (/proc/<pid>/stat); -1 when gone. */
static double cpu_s(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long ut = 0, st = 0;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    p = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
    fclose(f);
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU time of every thread of pid in ns (/proc/<pid>/task/<tid>/schedstat); -1 when unknown. */
static long long cpu_ns(pid_t pid)
{
    char path[64];
    struct dirent *d;
    long long sum = 0;
    DIR *dir;

    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    dir = opendir(path);
    if (!dir)
        return -1;
    while ((d = readdir(dir))) {
        char sp[512];
        long long ns;
        FILE *f;

        if (d->d_name[0] == '.')
            continue;
        snprintf(sp, sizeof(sp), "%s/%s/schedstat", path, d->d_name);
        f = fopen(sp, "r");
        if (!f)
            continue;
        if (fscanf(f, "%lld", &ns) == 1)
            sum += ns;
        fclose(f);
    }
    closedir(dir);
    return sum;
}

/* ---- tagged requests to the test origin ----------------------------------- */

/* GET /headers tagged tag: the origin (tests/support/origin.h) answers with the head it got. */
static int tagged_req(char *out, size_t cap, const char *tag)
{
    return snprintf(out, cap, "GET /headers HTTP/1.1\r\nHost: a\r\nX-Tag: %s\r\n\r\n", tag);
}

/* r is the answer to tag's request: 200, and the head the origin saw has tag's X-Tag only. */
static int own_answer(const struct h_resp *r, const char *tag, char *why, size_t cap)
{
    char want[128];
    int n = 0;

    if (r->status != 200) {
        snprintf(why, cap, "status %d", r->status);
        return 0;
    }
    snprintf(want, sizeof(want), "\r\nX-Tag: %s\r\n", tag);
    for (const char *p = r->body, *e = r->body + r->body_len;
         (p = memmem(p, (size_t)(e - p), "X-Tag:", 6)); p += 6)
        n++;
    if (n != 1 || !memmem(r->body, r->body_len, want, strlen(want))) {
        snprintf(why, cap, "the origin saw another head (%d X-Tag fields): %.*s", n,
                 (int)(r->body_len < 120 ? r->body_len : 120), r->body);
        return 0;
    }
    return 1;
}

/*
 * A well-behaved keep-alive client: tagged requests on its connection, a
 * pause between them, until the deadline; each must be its own answer within
 * max_ms, and the connection must stay open.
 */
struct honest {
    unsigned port;
    int id, fd;
    uint64_t rng;
    long until, max_ms;
    int pause_lo, pause_hi;
    int keep_open; /* the connection stays open at the end: the test closes it */
    const char *what;
    int n, bad;
    long worst_ms;
};

static void *honest_main(void *arg)
{
    struct honest *c = arg;

    if (c->fd < 0)
        c->fd = h_connect(c->port);
    if (c->fd < 0) {
        fail("%s %d: could not connect", c->what, c->id);
        c->bad++;
        return NULL;
    }
    while (h_now_ms() < c->until) {
        char tag[64], req[256], why[200];
        struct h_resp r;
        long t0 = h_now_ms(), took;

        snprintf(tag, sizeof(tag), "%s%d-%d-%s", c->what, c->id, c->n, run.seedstr);
        tagged_req(req, sizeof(req), tag);
        if (h_sends(c->fd, req) < 0 || h_read_response(c->fd, &r, 0) < 0) {
            fail("%s %s: no answer (after %ld ms)", c->what, tag, h_now_ms() - t0);
            c->bad++;
            break;
        }
        took = h_now_ms() - t0;
        c->n++;
        if (took > c->worst_ms)
            c->worst_ms = took;
        if (took > c->max_ms) {
            fail("%s %s: answered after %ld ms", c->what, tag, took);
            c->bad++;
        }
        if (!own_answer(&r, tag, why, sizeof(why))) {
            fail("%s %s: not its own answer: %s", c->what, tag, why);
            c->bad++;
        }
        if (r.closed) {
            fail("%s %s: the proxy closed a keep-alive connection", c->what, tag);
            c->bad++;
            h_resp_free(&r);
            break;
        }
        h_resp_free(&r);
        h_msleep((int)adv_rnd_in(&c->rng, (unsigned)c->pause_lo, (unsigned)c->pause_hi));
    }
    if (!c->keep_open) {
        h_close(c->fd);
        c->fd = -1;
    }
    return NULL;
}

/* ---- 1. tunnels half-closed at random moments, both ways (#26.1) ------------ */

#define TUN_MAX 64
#define TUN_DEADLINE_MS 30000

enum { TM_CLIENT_FIRST, TM_ORIGIN_FIRST, TM_BOTH, TM_COUNT };
static const char *const tm_names[TM_COUNT] = {"client-first", "origin-first", "both"};

/* One end of a tunnel: what it sends, what it must get. */
struct end {
    size_t send_len, want_len;
    uint64_t send_key, want_key;
    int after_eof; /* send only once the other side's EOF came */
    uint64_t rng;
    size_t sent, got;
    long long bad_at; /* first byte that was not the other end's, -1: none */
    int eof, shut, err;
    char why[160];
};

struct tun {
    int id, mode;
    struct end c, o;
    atomic_int o_conns; /* connections the origin got for this tunnel */
};

static struct {
    struct tun *t;
    int n, lfd;
    unsigned port;
    atomic_int stop;
    pthread_t th[2 * TUN_MAX];
    int nth;
    long deadline;
} T;

/* Byte i of a stream: a function of the stream's key (its tunnel and direction) and i. */
static void pat_fill(uint64_t key, size_t off, unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t k = off + i;
        uint64_t x = (key ^ (uint64_t)(k >> 3)) * 0x9e3779b97f4a7c15ull;

        x ^= x >> 29;
        p[i] = (unsigned char)(x >> ((k & 7) * 8));
    }
}

static size_t pick_len(uint64_t *r, unsigned max_bits)
{
    unsigned p = adv_rnd_in(r, 0, 99);
    size_t hi;

    if (p < 10)
        return 0;
    if (p < 25)
        return adv_rnd_in(r, 1, 4096);
    hi = (size_t)1 << adv_rnd_in(r, 13, max_bits);
    return adv_rnd_in(r, (unsigned)(hi / 2), (unsigned)hi);
}

/* Read a head (up to CRLFCRLF) byte by byte, so nothing after it is taken; its length. */
static size_t read_head(int fd, char *out, size_t cap)
{
    size_t n = 0;

    while (n + 1 < cap) {
        struct pollfd p = {.fd = fd, .events = POLLIN};

        if (poll(&p, 1, 5000) <= 0 || recv(fd, out + n, 1, 0) != 1)
            break;
        n++;
        if (n >= 4 && !memcmp(out + n - 4, "\r\n\r\n", 4))
            break;
    }
    out[n] = '\0';
    return n;
}

/*
 * Move one end's bytes: send its stream in random pieces (sometimes a moment
 * apart, starting at a random moment), half-close after the last byte, and
 * read the other end's stream to EOF, checking every byte. Bounded by the
 * run's deadline.
 */
static void pump(struct end *e, int fd)
{
    unsigned char *in = malloc(65536), *out = malloc(65536), *want = malloc(65536);
    long next_send = h_now_ms() + adv_rnd_in(&e->rng, 0, 40);

    e->bad_at = -1;
    if (!in || !out || !want) {
        e->err = 1;
        snprintf(e->why, sizeof(e->why), "out of memory");
        goto done;
    }
    (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    while (!(e->shut && e->eof)) {
        long now = h_now_ms();
        int may_send = !e->shut && (!e->after_eof || e->eof), due = may_send && now >= next_send;
        struct pollfd p = {.fd = fd,
                           .events = (short)((e->eof ? 0 : POLLIN) | (due ? POLLOUT : 0))};

        if (now > T.deadline) {
            e->err = 1;
            snprintf(e->why, sizeof(e->why), "timed out: sent %zu of %zu, got %zu of %zu%s",
                     e->sent, e->send_len, e->got, e->want_len, e->eof ? ", EOF" : "");
            break;
        }
        if (due && e->sent == e->send_len) {
            if (shutdown(fd, SHUT_WR) < 0) {
                e->err = 1;
                snprintf(e->why, sizeof(e->why), "shutdown: %s", strerror(errno));
                break;
            }
            e->shut = 1;
            continue;
        }
        if (poll(&p, 1, may_send && !due ? (int)(next_send - now) + 1 : 50) < 0 && errno != EINTR)
            break;
        if (!e->eof && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t n = recv(fd, in, 65536, 0);

            if (n == 0) {
                e->eof = 1;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                e->err = 1;
                snprintf(e->why, sizeof(e->why), "recv: %s after %zu of %zu bytes", strerror(errno),
                         e->got, e->want_len);
                break;
            } else if (n > 0) {
                size_t k = (size_t)n, ok = e->want_len > e->got ? e->want_len - e->got : 0;

                if (k > ok && e->bad_at < 0)
                    e->bad_at = (long long)(e->got + ok); /* more than the other end sent */
                if (ok > k)
                    ok = k;
                pat_fill(e->want_key, e->got, want, ok);
                if (e->bad_at < 0 && memcmp(in, want, ok))
                    for (size_t i = 0; i < ok; i++)
                        if (in[i] != want[i]) {
                            e->bad_at = (long long)(e->got + i);
                            break;
                        }
                e->got += k;
            }
        }
        if (due && (p.revents & POLLOUT) && e->sent < e->send_len) {
            size_t k = adv_rnd_in(&e->rng, 1, 65536);
            ssize_t n;

            if (k > e->send_len - e->sent)
                k = e->send_len - e->sent;
            pat_fill(e->send_key, e->sent, out, k);
            n = send(fd, out, k, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n > 0) {
                e->sent += (size_t)n;
                if (adv_rnd(&e->rng) % 4 == 0)
                    next_send = h_now_ms() + adv_rnd_in(&e->rng, 0, 3);
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                e->err = 1;
                snprintf(e->why, sizeof(e->why), "send: %s after %zu of %zu bytes", strerror(errno),
                         e->sent, e->send_len);
                break;
            }
        }
    }
done:
    free(in);
    free(out);
    free(want);
}

static const char tun_101[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              "Connection: upgrade\r\n\r\n";

static void *tun_origin_conn(void *arg)
{
    int fd = (int)(intptr_t)arg, id = -1;
    char head[4096];
    struct tun *t;

    read_head(fd, head, sizeof(head));
    if (sscanf(head, "GET /ws/%d ", &id) != 1 || id < 0 || id >= T.n) {
        fail("tunnel origin: a request for no tunnel: %.80s", head);
        close(fd);
        return NULL;
    }
    t = &T.t[id];
    if (atomic_fetch_add(&t->o_conns, 1)) {
        close(fd); /* reported at the end */
        return NULL;
    }
    if (h_send(fd, tun_101, sizeof(tun_101) - 1) < 0) {
        t->o.err = 1;
        snprintf(t->o.why, sizeof(t->o.why), "could not send the 101");
    } else {
        pump(&t->o, fd);
    }
    close(fd);
    return NULL;
}

static void *tun_accept_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&T.stop)) {
        struct pollfd p = {.fd = T.lfd, .events = POLLIN};
        int fd;

        if (poll(&p, 1, 50) <= 0)
            continue;
        fd = accept4(T.lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        if (T.nth == (int)(sizeof(T.th) / sizeof(T.th[0])) ||
            pthread_create(&T.th[T.nth], NULL, tun_origin_conn, (void *)(intptr_t)fd) != 0) {
            fail("tunnel origin: more connections than tunnels");
            close(fd);
            continue;
        }
        T.nth++;
    }
    return NULL;
}

static void *tun_client(void *arg)
{
    struct tun *t = arg;
    char req[256], head[4096];
    int fd = h_connect(T.port);

    if (fd < 0) {
        t->c.err = 1;
        snprintf(t->c.why, sizeof(t->c.why), "could not connect");
        return NULL;
    }
    snprintf(req, sizeof(req),
             "GET /ws/%d HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
             "X-Tag: tun%d-%s\r\n\r\n",
             t->id, t->id, run.seedstr);
    head[0] = '\0';
    if (h_sends(fd, req) == 0)
        read_head(fd, head, sizeof(head));
    if (strncmp(head, "HTTP/1.1 101", 12)) {
        t->c.err = 1;
        snprintf(t->c.why, sizeof(t->c.why), "no 101: %.100s", head);
    } else {
        pump(&t->c, fd);
    }
    close(fd);
    return NULL;
}

static void check_end(const struct tun *t, const struct end *e, const char *who)
{
    if (e->err)
        fail("tunnel %d (%s, %zu up, %zu down): the %s: %s", t->id, tm_names[t->mode],
             t->c.send_len, t->o.send_len, who, e->why);
    else if (e->bad_at >= 0)
        fail("tunnel %d (%s, %zu up, %zu down): the %s got a wrong byte at %lld (of %zu, %zu "
             "arrived)",
             t->id, tm_names[t->mode], t->c.send_len, t->o.send_len, who, e->bad_at, e->want_len,
             e->got);
    else if (e->got != e->want_len || !e->eof)
        fail("tunnel %d (%s, %zu up, %zu down): the %s got %zu of %zu bytes%s", t->id,
             tm_names[t->mode], t->c.send_len, t->o.send_len, who, e->got, e->want_len,
             e->eof ? " before EOF" : ", no EOF");
}

Test(adv_abuse, tunnel_half_close, .timeout = 90)
{
    static const char *const args[] = {"--workers", "2", NULL};
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    int n = SCALED(48, 32), per_mode[TM_COUNT] = {0}, lines = 0, n101 = 0;
    unsigned max_bits = SCALED(21, 19);
    pthread_t acc, cl[TUN_MAX];
    size_t total = 0;
    struct proxy px;
    long t0;
    char *out, *save = NULL;

    run_start("tunnel_half_close");
    memset(&T, 0, sizeof(T));
    T.n = n;
    T.t = calloc((size_t)n, sizeof(*T.t));
    cr_assert(T.t);
    for (int i = 0; i < n; i++) {
        struct tun *t = &T.t[i];
        uint64_t r = rng_for((unsigned)i);
        uint64_t up = (run.seed * 0xbf58476d1ce4e5b9ull) ^ ((uint64_t)i << 1),
                 down = up ^ 1; /* each stream's own pattern: crossed bytes show */

        t->id = i;
        t->mode = (int)adv_rnd_in(&r, 0, TM_COUNT - 1);
        t->c = (struct end){.send_len = pick_len(&r, max_bits),
                            .send_key = up,
                            .want_key = down,
                            .after_eof = t->mode == TM_ORIGIN_FIRST,
                            .rng = rng_for((unsigned)(1000 + i))};
        t->o = (struct end){.send_len = pick_len(&r, max_bits),
                            .send_key = down,
                            .want_key = up,
                            .after_eof = t->mode == TM_CLIENT_FIRST,
                            .rng = rng_for((unsigned)(2000 + i))};
        t->c.want_len = t->o.send_len;
        t->o.want_len = t->c.send_len;
        per_mode[t->mode]++;
        total += t->c.send_len + t->o.send_len;
    }
    say("abuse[tunnel_half_close]: %d tunnels (%d client-first, %d origin-first, %d both), %zu "
        "bytes in all\n",
        n, per_mode[TM_CLIENT_FIRST], per_mode[TM_ORIGIN_FIRST], per_mode[TM_BOTH], total);

    T.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(T.lfd >= 0);
    cr_assert_eq(bind(T.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(listen(T.lfd, 128), 0);
    cr_assert_eq(getsockname(T.lfd, (struct sockaddr *)&sa, &sl), 0);
    h_proxy_start(&px, ntohs(sa.sin_port), "{\"shutdown_grace_ms\": 1000}", args);
    T.port = px.port;
    T.deadline = h_now_ms() + TUN_DEADLINE_MS;
    t0 = h_now_ms();
    cr_assert_eq(pthread_create(&acc, NULL, tun_accept_main, NULL), 0);
    for (int i = 0; i < n; i++)
        cr_assert_eq(pthread_create(&cl[i], NULL, tun_client, &T.t[i]), 0);
    for (int i = 0; i < n; i++)
        pthread_join(cl[i], NULL);
    /* every origin end has its connection by now, and finishes by the same deadline */
    atomic_store(&T.stop, 1);
    pthread_join(acc, NULL);
    for (int i = 0; i < T.nth; i++)
        pthread_join(T.th[i], NULL);
    close(T.lfd);
    say("abuse[tunnel_half_close]: all tunnels done in %.1f s\n", (double)(h_now_ms() - t0) / 1e3);

    for (int i = 0; i < n; i++) {
        struct tun *t = &T.t[i];
        int oc = atomic_load(&t->o_conns);

        check_end(t, &t->c, "client");
        if (oc != 1)
            fail("tunnel %d: the origin got %d connections for it, not 1", i, oc);
        else
            check_end(t, &t->o, "origin");
    }

    /* one access-log line per tunnel, when it ends */
    h_wait_log_lines(&px, n);
    h_msleep(100);
    out = h_slurp(px.out_path);
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_t *j = json_loads(line, 0, NULL);

        lines++;
        n101 += j && json_integer_value(json_object_get(j, "status")) == 101;
        json_decref(j);
    }
    free(out);
    if (lines != n || n101 != n)
        fail("%d access-log lines, %d of them 101, for %d tunnels", lines, n101, n);
    proxy_finish(&px);
    free(T.t);
    run_end();
}

/* ---- 2. out of descriptors (#26.3) ------------------------------------------ */

#define NOFILE_LIMIT 64
#define SPIN_SHARE 0.4 /* of one core: a busy loop takes all of it */
#define FD_CFG                                                                                     \
    "{\"shutdown_grace_ms\": 1000, \"upstream\": {\"pool_idle_timeout_ms\": 30000},"               \
    " \"client\": {\"header_timeout_ms\": 30000, \"idle_timeout_ms\": 30000}}"
#define EMFILE_SAID "accept: Too many open files"

/*
 * A client that keeps knocking while the proxy cannot accept: connect, send
 * a tagged request, wait a little for an answer, give up (half the time
 * with a reset), again. Whatever answer comes must be its own.
 */
struct knocker {
    unsigned port;
    int id;
    uint64_t rng;
    long until;
    int tries, answered;
};

static void *knocker_main(void *arg)
{
    struct knocker *k = arg;

    while (h_now_ms() < k->until) {
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)k->port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        char tag[64], req[256], buf[4096];
        struct pollfd p = {.fd = fd, .events = POLLOUT};

        if (fd < 0)
            break;
        snprintf(tag, sizeof(tag), "knock%d-%d-%s", k->id, k->tries, run.seedstr);
        tagged_req(req, sizeof(req), tag);
        k->tries++;
        if ((connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EINPROGRESS) &&
            poll(&p, 1, 500) == 1 && !(p.revents & (POLLERR | POLLHUP)) &&
            send(fd, req, strlen(req), MSG_NOSIGNAL) > 0) {
            p.events = POLLIN;
            if (poll(&p, 1, (int)adv_rnd_in(&k->rng, 50, 300)) == 1) {
                ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);

                if (n > 0) {
                    buf[n] = '\0';
                    k->answered++;
                    /* only a 200 carries the origin's copy of the head */
                    if (!strncmp(buf, "HTTP/1.1 200", 12) && !strstr(buf, tag))
                        fail("knocker %s: a 200 that is not its own: %.200s", tag, buf);
                }
            }
        }
        if (adv_rnd(&k->rng) % 2) {
            struct linger lg = {1, 0};
            (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
        close(fd);
    }
    return NULL;
}

/* One request on an admin connection accepted earlier; the status, -1 on failure. */
static int admin_on(int fd, const char *path, long *metric_out, const char *sample)
{
    char req[128], key[128];
    struct h_resp r;
    int st;

    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", path);
    if (h_sends(fd, req) < 0 || h_read_response(fd, &r, 0) < 0)
        return -1;
    st = r.status;
    if (metric_out) {
        const char *p;

        r.body = realloc(r.body, r.body_len + 1);
        r.body[r.body_len] = '\0';
        snprintf(key, sizeof(key), "\n%s ", sample);
        p = strstr(r.body, key);
        *metric_out = p ? atol(p + strlen(key)) : -1;
    }
    h_resp_free(&r);
    return st;
}

static int healthz_status(unsigned admin_port)
{
    struct h_resp r;
    int st;

    if (h_roundtrip(admin_port, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", &r) < 0)
        return -1;
    st = r.status;
    h_resp_free(&r);
    return st;
}

Test(adv_abuse, fd_exhaustion_pauses_accepting, .timeout = 90)
{
    enum { KA_MAX = 8, KN_MAX = 40, FILL = NOFILE_LIMIT + 16 };
    int nka = SCALED(8, 6), nkn = SCALED(40, 24), fill[FILL], adm_h, adm_m, base, fds = -1;
    const char *real = getenv("RINGPROXY");
    struct honest ka[KA_MAX];
    struct knocker kn[KN_MAX];
    pthread_t kat[KA_MAX], knt[KN_MAX];
    struct origin *o;
    struct proxy px;
    char wrap[128], tag[64], req[256], why[200];
    long phase_end, pauses = -1, t0, t1;
    double c0, c1, share;
    int hz, said, served = 0, ka_n = 0, knocks = 0, knock_answers = 0;
    FILE *f;

    run_start("fd_exhaustion_pauses_accepting");
    cr_assert(real, "RINGPROXY is not set");
    o = origin_start("127.0.0.1", 0);
    cr_assert(o);
    /* io_uring takes the limit when an accept is armed: the proxy starts under it */
    snprintf(wrap, sizeof(wrap), "/tmp/rp-abuse-ulimit.%d.sh", (int)getpid());
    f = fopen(wrap, "w");
    cr_assert(f);
    fprintf(f, "#!/bin/sh\nulimit -Sn %d\nexec '%s' \"$@\"\n", NOFILE_LIMIT, real);
    fclose(f);
    cr_assert_eq(chmod(wrap, 0700), 0);
    setenv("RINGPROXY", wrap, 1);
    h_proxy_start(&px, origin_port(o), FD_CFG, NULL);
    setenv("RINGPROXY", real, 1);
    base = settled_fds(px.pid);

    /* keep-alive clients, each with an upstream connection in the pool (all at once) */
    for (int i = 0; i < nka; i++) {
        ka[i] = (struct honest){.port = px.port,
                                .id = i,
                                .fd = h_connect(px.port),
                                .rng = rng_for((unsigned)i),
                                .max_ms = 3000,
                                .pause_lo = 20,
                                .pause_hi = 60,
                                /* a descriptor given back would let the proxy accept again */
                                .keep_open = 1,
                                .what = "keepalive"};
        cr_assert(ka[i].fd >= 0);
        cr_assert_eq(h_sends(ka[i].fd, "GET /sleep/200 HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    }
    for (int i = 0; i < nka; i++) {
        struct h_resp r;

        cr_assert_eq(h_read_response(ka[i].fd, &r, 0), 0);
        cr_assert_eq(r.status, 200);
        h_resp_free(&r);
    }
    /* two admin connections, accepted now, for while accepting is paused */
    adm_h = h_connect(px.admin_port);
    adm_m = h_connect(px.admin_port);
    cr_assert(adm_h >= 0 && adm_m >= 0);
    for (long end = h_now_ms() + 3000; h_now_ms() < end; h_msleep(10))
        if ((fds = h_fd_count(px.pid)) >= base + 2 * nka + 2)
            break;
    cr_assert_geq(fds, base + 2 * nka + 2,
                  "%d descriptors, want %d after start-up + %d clients, %d upstreams, 2 admin", fds,
                  base, nka, nka);

    /* more connections than descriptors left: the rest wait in the backlog */
    for (int i = 0; i < FILL; i++)
        fill[i] = h_connect(px.port);
    if (!h_wait_in(px.err_path, EMFILE_SAID, 5000))
        fail("the proxy never said \"%s\" with %d connections over a limit of %d", EMFILE_SAID,
             FILL, NOFILE_LIMIT);
    say("abuse[fd_exhaustion_pauses_accepting]: %d descriptors at start-up, %d now (limit %d)\n",
        base, h_fd_count(px.pid), NOFILE_LIMIT);

    phase_end = h_now_ms() + 2300;
    for (int i = 0; i < nka; i++) {
        ka[i].until = phase_end;
        cr_assert_eq(pthread_create(&kat[i], NULL, honest_main, &ka[i]), 0);
    }
    for (int i = 0; i < nkn; i++) {
        kn[i] = (struct knocker){
            .port = px.port, .id = i, .rng = rng_for((unsigned)(100 + i)), .until = phase_end};
        cr_assert_eq(pthread_create(&knt[i], NULL, knocker_main, &kn[i]), 0);
    }
    h_msleep(300);
    c0 = cpu_s(px.pid);
    t0 = h_now_ms();
    h_msleep(1500);
    c1 = cpu_s(px.pid);
    t1 = h_now_ms();
    share = (c1 - c0) / ((double)(t1 - t0) / 1e3);
    /* counted now: an admin connection closes after its answer, and frees a descriptor */
    said = h_count_in(px.err_path, EMFILE_SAID);
    hz = admin_on(adm_h, "/healthz", NULL, NULL);
    (void)admin_on(adm_m, "/metrics", &pauses, "ringproxy_accept_pauses_total");
    for (int i = 0; i < nka; i++)
        pthread_join(kat[i], NULL);
    for (int i = 0; i < nkn; i++) {
        pthread_join(knt[i], NULL);
        knocks += kn[i].tries;
        knock_answers += kn[i].answered;
    }
    for (int i = 0; i < nka; i++) {
        ka_n += ka[i].n;
        if (ka[i].n < 5)
            fail("keep-alive client %d got only %d answers while the proxy was out of descriptors",
                 i, ka[i].n);
    }
    say("abuse[fd_exhaustion_pauses_accepting]: %.2f s of CPU in %.2f s (%.0f %% of a core), "
        "%d keep-alive answers, %d knocks (%d answered), /healthz %d, accept pauses %ld, "
        "said %d times\n",
        c1 - c0, (double)(t1 - t0) / 1e3, share * 100, ka_n, knocks, knock_answers, hz, pauses,
        said);
    if (c0 < 0 || c1 < 0 || share >= SPIN_SHARE)
        fail("the proxy used %.2f s of CPU in %.2f s while out of descriptors (a busy loop: %.0f "
             "%% of a core, the bound %.0f %%)",
             c1 - c0, (double)(t1 - t0) / 1e3, share * 100, SPIN_SHARE * 100);
    if (hz != 503)
        fail("/healthz answered %d while accepting was paused, not 503", hz);
    if (pauses < 1)
        fail("ringproxy_accept_pauses_total is %ld while accepting was paused", pauses);
    if (said != 1) {
        char *err = h_slurp(px.err_path), *save = NULL;

        fail("\"%s\" said %d times during one pause, not once", EMFILE_SAID, said);
        for (char *l = strtok_r(err, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
            if (strstr(l, "accept"))
                say("abuse[fd_exhaustion_pauses_accepting]: the proxy: %.300s\n", l);
        free(err);
    }

    /* descriptors come back: accepting resumes, says so, and a new client is served */
    for (int i = 0; i < FILL; i++)
        if (fill[i] >= 0)
            h_close(fill[i]);
    for (int i = 0; i < nka; i++)
        if (ka[i].fd >= 0)
            h_close(ka[i].fd);
    h_close(adm_h);
    h_close(adm_m);
    snprintf(tag, sizeof(tag), "after-%s", run.seedstr);
    tagged_req(req, sizeof(req), tag);
    /*
     * The backlog's knocks come first, each wanting an upstream socket under
     * the same limit: until they are through, a new client may get a 502.
     */
    why[0] = '\0';
    for (long end = h_now_ms() + 10000; !served && h_now_ms() < end;) {
        struct h_resp r;

        if (h_roundtrip(px.port, req, &r) == 0) {
            served = own_answer(&r, tag, why, sizeof(why));
            if (!served && r.status != 502)
                fail("a new client after the pause: %s", why);
            h_resp_free(&r);
        }
        if (!served)
            h_msleep(100);
    }
    if (!served)
        fail("no new client served within 10 s of descriptors coming back (last: %s)", why);
    for (long end = h_now_ms() + 5000; (hz = healthz_status(px.admin_port)) != 200;) {
        if (h_now_ms() > end)
            break;
        h_msleep(50);
    }
    if (hz != 200)
        fail("/healthz answers %d after accepting resumed, not 200", hz);
    if (!h_count_in(px.err_path, "accept: accepting again"))
        fail("the proxy never said \"accept: accepting again\"");
    proxy_finish(&px);
    origin_stop(o);
    unlink(wrap);
    run_end();
}

/* The lowest descriptor number pid does not use: with the limit there, no socket can be made. */
static int lowest_free_fd(pid_t pid)
{
    unsigned char used[4096] = {0};
    int i = 0;

    if (h_fds(pid, used, sizeof(used)) < 0)
        return -1;
    while (i < (int)sizeof(used) && used[i])
        i++;
    return i;
}

struct starved {
    unsigned port;
    int id, fd;
    uint64_t rng;
    long until;
    int n, ok, n502, bad, reconnects;
};

static void *starved_main(void *arg)
{
    struct starved *c = arg;

    while (h_now_ms() < c->until && c->fd >= 0) {
        char tag[64], req[256], why[200];
        struct h_resp r;
        long t0 = h_now_ms(), took;

        snprintf(tag, sizeof(tag), "starved%d-%d-%s", c->id, c->n, run.seedstr);
        tagged_req(req, sizeof(req), tag);
        if (h_sends(c->fd, req) < 0 || h_read_response(c->fd, &r, 0) < 0) {
            fail("%s: no answer (after %ld ms)", tag, h_now_ms() - t0);
            c->bad++;
            break;
        }
        took = h_now_ms() - t0;
        c->n++;
        if (took > 3000) {
            fail("%s: answered after %ld ms", tag, took);
            c->bad++;
        }
        if (r.status == 502) {
            c->n502++;
            if (r.body_len != 16 || memcmp(r.body, "502 Bad Gateway\n", 16))
                fail("%s: a 502 that is not the proxy's own: %.*s", tag,
                     (int)(r.body_len < 60 ? r.body_len : 60), r.body);
        } else if (own_answer(&r, tag, why, sizeof(why))) {
            c->ok++;
        } else {
            fail("%s: neither a 502 nor its own answer: %s", tag, why);
            c->bad++;
        }
        if (r.closed) {
            h_close(c->fd);
            c->fd = h_connect(c->port);
            c->reconnects++;
        }
        h_resp_free(&r);
        h_msleep((int)adv_rnd_in(&c->rng, 5, 20));
    }
    return NULL;
}

Test(adv_abuse, fd_exhaustion_upstream_is_502, .timeout = 90)
{
    enum { ST_MAX = 32 };
    int n = SCALED(32, 16), base, fds = -1, limit, total = 0, n502 = 0, ok = 0, lines = 0;
    int logged502 = 0, reconnects = 0, other_term = 0;
    struct starved cl[ST_MAX];
    pthread_t th[ST_MAX];
    struct rlimit rl, saved;
    struct origin *o;
    struct proxy px;
    long no_socket;
    char *out, *save = NULL;

    run_start("fd_exhaustion_upstream_is_502");
    o = origin_start("127.0.0.1", 0);
    cr_assert(o);
    h_proxy_start(&px, origin_port(o), "{\"shutdown_grace_ms\": 1000}", NULL);
    base = settled_fds(px.pid);
    for (int i = 0; i < n; i++) {
        cl[i] = (struct starved){
            .port = px.port, .id = i, .fd = h_connect(px.port), .rng = rng_for((unsigned)i)};
        cr_assert(cl[i].fd >= 0);
    }
    /* every client's descriptor taken, then not one more */
    for (long end = h_now_ms() + 5000; h_now_ms() < end; h_msleep(10))
        if ((fds = h_fd_count(px.pid)) >= base + n)
            break;
    cr_assert_geq(fds, base + n, "%d descriptors, want %d + %d clients", fds, base, n);
    cr_assert_eq(prlimit(px.pid, RLIMIT_NOFILE, NULL, &saved), 0);
    limit = lowest_free_fd(px.pid);
    rl = saved;
    rl.rlim_cur = (rlim_t)limit;
    cr_assert_eq(prlimit(px.pid, RLIMIT_NOFILE, &rl, NULL), 0);
    say("abuse[fd_exhaustion_upstream_is_502]: %d clients, %d descriptors, limit %d\n", n, fds,
        limit);
    for (int i = 0; i < n; i++) {
        cl[i].until = h_now_ms() + 1500;
        cr_assert_eq(pthread_create(&th[i], NULL, starved_main, &cl[i]), 0);
    }
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        total += cl[i].n;
        n502 += cl[i].n502;
        ok += cl[i].ok;
        reconnects += cl[i].reconnects;
    }
    cr_assert_eq(prlimit(px.pid, RLIMIT_NOFILE, &saved, NULL), 0);

    no_socket = h_metric(px.admin_port, "ringproxy_upstream_failures_total{reason=\"no_socket\"}");
    say("abuse[fd_exhaustion_upstream_is_502]: %d requests: %d answered, %d 502, %d reconnects; "
        "no_socket %ld\n",
        total, ok, n502, reconnects, no_socket);
    if (!n502)
        fail("no request got a 502 with no descriptor left for its upstream socket");
    if (no_socket != n502)
        fail("ringproxy_upstream_failures_total{reason=\"no_socket\"} is %ld, clients got %d "
             "502s",
             no_socket, n502);
    if (!h_count_in(px.err_path, "upstream connection: Too many open files"))
        fail("the proxy never said \"upstream connection: Too many open files\"");

    /* every request logged once; each 502 as a failed upstream connection */
    h_wait_log_lines(&px, total);
    h_msleep(100);
    out = h_slurp(px.out_path);
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_t *j = json_loads(line, 0, NULL);
        const char *term = json_string_value(json_object_get(j, "termination"));

        lines++;
        if (json_integer_value(json_object_get(j, "status")) == 502) {
            logged502++;
            if ((!term || strcmp(term, "upstream_connect_failed")) && !other_term++)
                fail("a 502 logged with termination %s, not upstream_connect_failed (the first "
                     "of those)",
                     term ? term : "(none)");
        }
        json_decref(j);
    }
    free(out);
    if (lines != total || logged502 != n502)
        fail("%d access-log lines (%d of them 502) for %d requests (%d 502s)", lines, logged502,
             total, n502);

    /* with the limit back, everyone is served again */
    for (int i = 0; i < n; i++) {
        char tag[64], req[256], why[200];
        struct h_resp r;

        snprintf(tag, sizeof(tag), "starved%d-after-%s", i, run.seedstr);
        tagged_req(req, sizeof(req), tag);
        if (cl[i].fd < 0)
            cl[i].fd = h_connect(px.port);
        if (cl[i].fd < 0 || h_sends(cl[i].fd, req) < 0 || h_read_response(cl[i].fd, &r, 0) < 0) {
            fail("%s: no answer after the limit was raised", tag);
        } else {
            if (!own_answer(&r, tag, why, sizeof(why)))
                fail("%s: after the limit was raised: %s", tag, why);
            h_resp_free(&r);
        }
        if (cl[i].fd >= 0)
            h_close(cl[i].fd);
    }
    proxy_finish(&px);
    origin_stop(o);
    run_end();
}

/* ---- 3. a storm of failing requests against a dead origin (#26.4) ----------- */

/* A client of a dead origin: requests on its connection, a new one now and then. */
struct stormer {
    unsigned port;
    int id, n, bad, conns;
    uint64_t rng;
    long until, worst_ms;
};

static void *stormer_main(void *arg)
{
    struct stormer *s = arg;
    int fd = -1;

    while (h_now_ms() < s->until) {
        char req[256];
        struct h_resp r;
        long t0 = h_now_ms(), took;

        if (fd < 0) {
            fd = h_connect(s->port);
            s->conns++;
        }
        snprintf(req, sizeof(req), "GET /storm HTTP/1.1\r\nHost: a\r\nX-Tag: storm%d-%d-%s\r\n\r\n",
                 s->id, s->n, run.seedstr);
        if (fd < 0 || h_sends(fd, req) < 0 || h_read_response(fd, &r, 0) < 0) {
            fail("storm%d-%d: no answer (after %ld ms)", s->id, s->n, h_now_ms() - t0);
            s->bad++;
            break;
        }
        took = h_now_ms() - t0;
        if (took > s->worst_ms)
            s->worst_ms = took;
        if (r.status != 502) {
            fail("storm%d-%d: %d from a dead origin, not 502", s->id, s->n, r.status);
            s->bad++;
        } else if (took > 3000) {
            fail("storm%d-%d: the 502 took %ld ms", s->id, s->n, took);
            s->bad++;
        }
        if (r.closed || adv_rnd(&s->rng) % 4 == 0) {
            h_close(fd);
            fd = -1;
        }
        h_resp_free(&r);
        s->n++;
        h_msleep((int)adv_rnd_in(&s->rng, 0, 2));
    }
    if (fd >= 0)
        h_close(fd);
    return NULL;
}

Test(adv_abuse, dns_storm_resolves_once_a_second, .fini = netns_down, .timeout = 90)
{
    enum { SM_MAX = 32, STORM_MS = 3000 };
    const char *dead[] = {"127.0.0.9"}; /* nobody listens there */
    int n = SCALED(32, 16), total = 0, conns = 0;
    struct stormer s[SM_MAX];
    pthread_t th[SM_MAX];
    unsigned q0, q, most;
    long t0, took;

    run_start("dns_storm_resolves_once_a_second");
    netns_up(HOSTS_NONE, 1);
    dns_set_answer(NS.dns, dead, 1, 1);
    netns_proxy_start(
        "{\"shutdown_grace_ms\": 1000, \"upstream\": {\"resolve_interval_ms\": 60000}}");
    if (!h_wait_in(NS.px.err_path, "resolve next-hop: 127.0.0.9:80", 3000))
        fail("next-hop was not resolved at start-up");
    q0 = dns_queries(NS.dns);
    t0 = h_now_ms();
    for (int i = 0; i < n; i++) {
        s[i] = (struct stormer){
            .port = NS.px.port, .id = i, .rng = rng_for((unsigned)i), .until = t0 + STORM_MS};
        cr_assert_eq(pthread_create(&th[i], NULL, stormer_main, &s[i]), 0);
    }
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        total += s[i].n;
        conns += s[i].conns;
    }
    took = h_now_ms() - t0;
    q = dns_queries(NS.dns) - q0;
    /* a resolution asks A and AAAA; one at the start of each second, and one of slack */
    most = 2 * (unsigned)((took + 999) / 1000 + 1);
    say("abuse[dns_storm_resolves_once_a_second]: %d clients, %d failing requests on %d "
        "connections in %.1f s made %u DNS queries (at most %u)\n",
        n, total, conns, (double)took / 1e3, q, most);
    if (total < n * 5)
        fail("only %d requests in %.1f s: no storm", total, (double)took / 1e3);
    if (q > most)
        fail("%d failing requests in %.1f s made %u DNS queries, more than %u (one resolution a "
             "second)",
             total, (double)took / 1e3, q, most);
    if (q < 2)
        fail("%d failing requests made no resolution at all (%u queries)", total, q);
    proxy_finish(&NS.px);
    run_end();
}

/* ---- 4. long access-log lines from two workers on a slow pipe (#26.5) -------- */

#define LL_CLIENTS_MAX 8
#define LL_REQS_MAX 40

struct slow_reader {
    int fd;
    char *buf;
    size_t len, cap;
    atomic_int stop;
};

/* Take 4 KiB every 3 ms until told to stop and the pipe is dry. */
static void *slow_reader_main(void *arg)
{
    struct slow_reader *s = arg;

    for (;;) {
        struct pollfd p = {s->fd, POLLIN, 0};
        int stop = atomic_load(&s->stop);
        ssize_t n;

        if (poll(&p, 1, stop ? 300 : 50) <= 0) {
            if (stop)
                return NULL;
            continue;
        }
        if (s->len + 4096 >= s->cap) {
            s->cap *= 2;
            s->buf = realloc(s->buf, s->cap);
            if (!s->buf)
                return NULL;
        }
        n = read(s->fd, s->buf + s->len, 4096);
        if (n <= 0)
            return NULL;
        s->len += (size_t)n;
        h_msleep(3);
    }
}

/*
 * A header value of tag's request: "<kind>:<tag>:<len>:" and letters of the
 * tag's own, len in all. Under LOG_VALUE_MAX (4096), so that the log keeps it
 * whole; two of them make a line longer than PIPE_BUF.
 */
#define LL_VALUE_MIN 2500
#define LL_VALUE_MAX 4000

static void make_val(const char *kind, const char *tag, size_t len, char *out)
{
    int k = snprintf(out, len + 1, "%s:%s:%zu:", kind, tag, len);
    unsigned h = 2166136261u;

    for (const char *p = tag; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    for (size_t i = (size_t)k; i < len; i++)
        out[i] = (char)('a' + (h + (unsigned)i * 7u + (unsigned char)kind[0]) % 26u);
    out[len] = '\0';
}

/* The value of a logged field is kind's value for one of our requests: its tag, or NULL. */
static const char *our_val(const char *kind, const char *v, char *tag, size_t tcap, char *want)
{
    size_t kl = strlen(kind), tl, len;
    const char *e;

    if (!v || strncmp(v, kind, kl) || v[kl] != ':' || !(e = strchr(v + kl + 1, ':')))
        return NULL;
    tl = (size_t)(e - (v + kl + 1));
    len = strtoul(e + 1, NULL, 10);
    if (tl >= tcap || len < LL_VALUE_MIN || len > LL_VALUE_MAX)
        return NULL;
    memcpy(tag, v + kl + 1, tl);
    tag[tl] = '\0';
    make_val(kind, tag, len, want);
    return strcmp(v, want) ? NULL : tag;
}

struct logger {
    unsigned port;
    int id, nreq, sent;
    uint64_t rng;
};

static void *logger_main(void *arg)
{
    struct logger *c = arg;
    char *req = malloc(16384), *ua = malloc(8192), *rf = malloc(8192);
    int fd = h_connect(c->port);

    for (int i = 0; i < c->nreq && fd >= 0 && req && ua && rf; i++) {
        char tag[64];
        struct h_resp r;

        snprintf(tag, sizeof(tag), "l%d-%d-%s", c->id, i, run.seedstr);
        make_val("ua", tag, adv_rnd_in(&c->rng, LL_VALUE_MIN, LL_VALUE_MAX), ua);
        make_val("rf", tag, adv_rnd_in(&c->rng, LL_VALUE_MIN, LL_VALUE_MAX), rf);
        snprintf(req, 16384,
                 "GET /size/1?t=%s HTTP/1.1\r\nHost: a\r\nUser-Agent: %s\r\nReferer: %s\r\n\r\n",
                 tag, ua, rf);
        if (h_sends(fd, req) < 0 || h_read_response(fd, &r, 0) < 0) {
            fail("%s: no answer", tag);
            break;
        }
        c->sent++;
        if (r.status != 200)
            fail("%s: status %d", tag, r.status);
        h_resp_free(&r);
        if (r.closed || adv_rnd(&c->rng) % 8 == 0) {
            h_close(fd);
            fd = h_connect(c->port);
        }
    }
    if (fd >= 0)
        h_close(fd);
    free(req);
    free(ua);
    free(rf);
    return NULL;
}

Test(adv_abuse, long_log_lines_stay_whole, .timeout = 90)
{
    static const char *const args[] = {"--workers", "2", NULL};
    int nc = SCALED(8, 6), nr = SCALED(40, 25), total = 0, lines = 0, broken = 0, missing = 0;
    unsigned char seen[LL_CLIENTS_MAX][LL_REQS_MAX] = {{0}};
    struct slow_reader s = {.cap = 1 << 20};
    struct logger cl[LL_CLIENTS_MAX];
    pthread_t rt, th[LL_CLIENTS_MAX];
    struct origin *o;
    struct proxy px;
    char *save = NULL, *want = malloc(8192);
    int rc;

    run_start("long_log_lines_stay_whole");
    s.buf = malloc(s.cap);
    cr_assert(s.buf && want);
    o = origin_start("127.0.0.1", 0);
    cr_assert(o);
    /* a buffer that holds every line: the slow reader, not a drop, is the test */
    h_proxy_start_piped(
        &px, origin_port(o),
        "{\"shutdown_grace_ms\": 3000, \"access_log\": {\"buffer_bytes\": 4194304}}", args);
    s.fd = px.out_fd;
    cr_assert_eq(pthread_create(&rt, NULL, slow_reader_main, &s), 0);
    for (int i = 0; i < nc; i++) {
        cl[i] = (struct logger){.port = px.port, .id = i, .nreq = nr, .rng = rng_for((unsigned)i)};
        cr_assert_eq(pthread_create(&th[i], NULL, logger_main, &cl[i]), 0);
    }
    for (int i = 0; i < nc; i++) {
        pthread_join(th[i], NULL);
        total += cl[i].sent;
    }
    /* the drain writes out what is buffered before the proxy exits */
    rc = h_proxy_stop(&px);
    if (rc != 0)
        fail("the proxy exited %d on SIGTERM, not 0", rc);
    atomic_store(&s.stop, 1);
    pthread_join(rt, NULL);
    cr_assert(s.buf);
    s.buf[s.len] = '\0';
    for (char *line = strtok_r(s.buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_error_t err;
        json_t *j = json_loads(line, 0, &err);
        const char *ua = j ? json_string_value(json_object_get(j, "useragent")) : NULL;
        const char *rf = j ? json_string_value(json_object_get(j, "referrer")) : NULL;
        const char *path = j ? json_string_value(json_object_get(j, "path")) : NULL;
        char tag[64], tag2[64], in_path[80];
        int c = -1, r = -1;

        lines++;
        if (!j) {
            if (broken++ < 5)
                fail("line %d is broken (%s): %.120s", lines, err.text, line);
            continue;
        }
        /* the User-Agent, the Referer and the path of one request, each whole */
        if (!our_val("ua", ua, tag, sizeof(tag), want) ||
            !our_val("rf", rf, tag2, sizeof(tag2), want) || strcmp(tag, tag2) ||
            (snprintf(in_path, sizeof(in_path), "/size/1?t=%s", tag), !path) ||
            strcmp(path, in_path) || sscanf(tag, "l%d-%d-", &c, &r) != 2 || c < 0 || c >= nc ||
            r < 0 || r >= nr) {
            if (broken++ < 5)
                fail("line %d is not one of our requests, whole: %.200s", lines, line);
        } else if (seen[c][r]++) {
            fail("%s logged %d times", tag, seen[c][r]);
        }
        json_decref(j);
    }
    for (int c = 0; c < nc; c++)
        for (int r = 0; r < cl[c].sent; r++)
            if (!seen[c][r] && missing++ < 5)
                fail("l%d-%d-%s was never logged", c, r, run.seedstr);
    say("abuse[long_log_lines_stay_whole]: %d requests, %d lines (%zu bytes), %d broken, %d "
        "missing\n",
        total, lines, s.len, broken, missing);
    if (lines != total)
        fail("%d whole lines for %d requests", lines, total);
    {
        char *err = h_slurp(px.err_path);
        const char *san = adv_sanitizer_report(err);

        if (san)
            fail("sanitizer report on the proxy's stderr: %.300s", san);
        free(err);
    }
    close(px.out_fd);
    origin_stop(o);
    free(s.buf);
    free(want);
    run_end();
}

/* ---- 5. Connection-token floods (#26.2) ------------------------------------- */

#define FLOOD_CAP 40000

/*
 * A request head with nfields Connection fields of ntok options each, and
 * nother small fields beside them (every one of which c2cf0d5 looked up in
 * every Connection value). With name "Xonnection" instead, the same bytes
 * without a single option. Under 32 KiB and 100 fields, the default limits.
 */
static size_t flood_req(char *out, const char *tag, const char *name, int nfields, int ntok,
                        int nother, uint64_t *rng)
{
    static const char *const real[] = {"x-tag", "accept", "user-agent", "x-forwarded-for"};
    int k =
        snprintf(out, FLOOD_CAP, "GET /flood/%s HTTP/1.1\r\nHost: a\r\nX-Tag: %s\r\n", tag, tag);

    for (int f = 0; f < nother; f++)
        k += snprintf(out + k, (size_t)(FLOOD_CAP - k), "X-F%d: v\r\n", f);
    for (int f = 0; f < nfields; f++) {
        k += snprintf(out + k, (size_t)(FLOOD_CAP - k), "%s: ", name);
        for (int i = 0; i < ntok; i++) {
            if (rng && adv_rnd(rng) % 50 == 0)
                k += snprintf(out + k, (size_t)(FLOOD_CAP - k), "%s%s", i ? "," : "",
                              real[adv_rnd(rng) % 4]);
            else if (rng)
                k += snprintf(out + k, (size_t)(FLOOD_CAP - k), "%sx%u", i ? "," : "",
                              (unsigned)(adv_rnd(rng) % 100000));
            else /* the most options in the fewest bytes */
                k += snprintf(out + k, (size_t)(FLOOD_CAP - k), "%s%c", i ? "," : "", 'a' + i % 26);
        }
        k += snprintf(out + k, (size_t)(FLOOD_CAP - k), "\r\n");
    }
    k += snprintf(out + k, (size_t)(FLOOD_CAP - k), "\r\n");
    return (size_t)k;
}

struct attacker {
    unsigned port;
    int id, n, n400, prefixed, bad;
    uint64_t rng;
    long until;
};

static void *attacker_main(void *arg)
{
    struct attacker *a = arg;
    char *req = malloc(FLOOD_CAP + 256);

    while (req && h_now_ms() < a->until) {
        char tag[64], good[256], ftag[80], why[200];
        int fd = h_connect(a->port), pre = adv_rnd(&a->rng) % 10 < 3, off = 0;
        struct h_resp r;
        long t0 = h_now_ms();
        size_t len;

        if (fd < 0) {
            fail("attacker %d: could not connect", a->id);
            a->bad++;
            break;
        }
        snprintf(tag, sizeof(tag), "attack%d-%d-%s", a->id, a->n, run.seedstr);
        snprintf(ftag, sizeof(ftag), "f%s", tag);
        /* some floods come pipelined behind a good request of the same client */
        if (pre)
            off = tagged_req(good, sizeof(good), tag);
        if (pre)
            memcpy(req, good, (size_t)off);
        len =
            flood_req(req + off, ftag, "Connection", (int)adv_rnd_in(&a->rng, 2, 4),
                      (int)adv_rnd_in(&a->rng, 200, 900), (int)adv_rnd_in(&a->rng, 0, 80), &a->rng);
        a->n++;
        if (h_send(fd, req, (size_t)off + len) < 0) {
            fail("%s: could not send", tag);
            a->bad++;
            h_close(fd);
            continue;
        }
        if (pre) {
            if (h_read_response(fd, &r, 0) < 0) {
                fail("%s: no answer to the good request before the flood", tag);
                a->bad++;
                h_close(fd);
                continue;
            }
            if (!own_answer(&r, tag, why, sizeof(why))) {
                fail("%s: the good request before the flood: %s", tag, why);
                a->bad++;
            }
            h_resp_free(&r);
            a->prefixed++;
        }
        if (h_read_response(fd, &r, 0) < 0) {
            fail("%s: no answer to the flood", ftag);
            a->bad++;
        } else {
            if (r.status != 400) {
                fail("%s: the flood got %d, not 400", ftag, r.status);
                a->bad++;
            } else {
                a->n400++;
            }
            if (h_now_ms() - t0 > 3000)
                fail("%s: answered after %ld ms", ftag, h_now_ms() - t0);
            h_resp_free(&r);
        }
        h_close(fd);
        h_msleep((int)adv_rnd_in(&a->rng, 0, 2));
    }
    free(req);
    return NULL;
}

/*
 * CPU ns the proxy spends on m requests req, one connection each; -1 when it
 * cannot be told. Answers other than want are counted in *wrong.
 */
static long long batch_ns(const struct proxy *px, const char *req, int m, int want, int *wrong)
{
    long long c0 = cpu_ns(px->pid), c1;

    for (int i = 0; i < m; i++) {
        struct h_resp r;

        if (h_roundtrip(px->port, req, &r) < 0)
            return -1;
        h_resp_free(&r);
        *wrong += r.status != want;
    }
    c1 = cpu_ns(px->pid);
    return c0 < 0 || c1 < 0 ? -1 : c1 - c0;
}

Test(adv_abuse, connection_token_flood, .timeout = 90)
{
    enum { AT_MAX = 6, HO_MAX = 4 };
    static const char *const args[] = {"--workers", "2", NULL};
    int na = SCALED(6, 4), nh = 4, batch = SCALED(150, 60), attacks = 0, n400 = 0, prefixed = 0;
    int honest_n = 0;
    struct attacker at[AT_MAX];
    struct honest ho[HO_MAX];
    pthread_t att[AT_MAX], hot[HO_MAX];
    struct origin *o;
    struct proxy px;
    unsigned reached, want_reached;
    long long flood_ns = 0, plain_ns = 0;
    int wrong_flood = 0, wrong_plain = 0;
    char *flood = malloc(FLOOD_CAP), *plain = malloc(FLOOD_CAP);
    long until;
    size_t fl;

    run_start("connection_token_flood");
    cr_assert(flood && plain);
    o = origin_start("127.0.0.1", 0);
    cr_assert(o);
    h_proxy_start(&px, origin_port(o), "{\"shutdown_grace_ms\": 1000}", args);
    until = h_now_ms() + 2500;
    for (int i = 0; i < nh; i++) {
        ho[i] = (struct honest){.port = px.port,
                                .id = i,
                                .fd = -1,
                                .rng = rng_for((unsigned)i),
                                .until = until,
                                .max_ms = 3000,
                                .pause_lo = 0,
                                .pause_hi = 10,
                                .what = "honest"};
        cr_assert_eq(pthread_create(&hot[i], NULL, honest_main, &ho[i]), 0);
    }
    for (int i = 0; i < na; i++) {
        at[i] = (struct attacker){
            .port = px.port, .id = i, .rng = rng_for((unsigned)(100 + i)), .until = until};
        cr_assert_eq(pthread_create(&att[i], NULL, attacker_main, &at[i]), 0);
    }
    for (int i = 0; i < nh; i++) {
        pthread_join(hot[i], NULL);
        honest_n += ho[i].n;
    }
    for (int i = 0; i < na; i++) {
        pthread_join(att[i], NULL);
        attacks += at[i].n;
        n400 += at[i].n400;
        prefixed += at[i].prefixed;
    }
    reached = origin_requests(o);
    want_reached = (unsigned)(honest_n + prefixed);
    say("abuse[connection_token_flood]: %d floods (%d 400, %d behind a good request), %d honest "
        "answers; the origin saw %u requests, %u good ones were sent\n",
        attacks, n400, prefixed, honest_n, reached, want_reached);
    if (reached != want_reached)
        fail("the origin saw %u requests, %u good ones were sent: %d floods got through", reached,
             want_reached, (int)reached - (int)want_reached);
    if (attacks < na * 5)
        fail("only %d floods in 2.5 s", attacks);

    /*
     * The proxy's CPU for floods against the same bytes without options (the
     * field renamed, so forwarded): rounds of each in turn, 2 fields of 3300
     * one-letter options and 90 other fields, a head of 14 KiB (the test
     * origin takes up to 16).
     */
    fl = flood_req(flood, "batch", "Connection", 2, 3300, 90, NULL);
    cr_assert_eq(flood_req(plain, "batch", "Xonnection", 2, 3300, 90, NULL), fl);
    for (int round = 0; round < 3; round++) {
        long long a = batch_ns(&px, flood, batch / 3, 400, &wrong_flood),
                  b = batch_ns(&px, plain, batch / 3, 200, &wrong_plain);

        if (a < 0 || b < 0) {
            fail("the CPU batches could not be measured (round %d)", round);
            break;
        }
        flood_ns += a;
        plain_ns += b;
    }
    say("abuse[connection_token_flood]: %d floods of %zu bytes took %.1f ms of the proxy's CPU, "
        "the same bytes without options %.1f ms (%.2fx)\n",
        batch / 3 * 3, fl, (double)flood_ns / 1e6, (double)plain_ns / 1e6,
        plain_ns > 0 ? (double)flood_ns / (double)plain_ns : 0.0);
    if (wrong_flood || wrong_plain)
        fail("in the CPU batches %d of %d floods were not a 400, %d of %d plain requests not a 200",
             wrong_flood, batch / 3 * 3, wrong_plain, batch / 3 * 3);
    if (plain_ns <= 0 || flood_ns > 5 * plain_ns)
        fail("floods cost %.1f ms of CPU, the same bytes without options %.1f ms: more than 5x",
             (double)flood_ns / 1e6, (double)plain_ns / 1e6);
    proxy_finish(&px);
    origin_stop(o);
    free(flood);
    free(plain);
    run_end();
}
