#include "tests/e2e/harness.h"

#include <arpa/inet.h>
#include <crypt.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/hooks.h>

void h_msleep(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

long h_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Claim port for this process among all test processes: 1, or 0 when another holds it. */
static int claim_port(unsigned port)
{
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int n;

    if (fd < 0)
        return 0;
    /* sun_path[0] = '\0': the abstract namespace, gone when the process exits */
    n = snprintf(un.sun_path + 1, sizeof(un.sun_path) - 1, "ringproxy-e2e-port-%u", port);
    if (bind(fd, (struct sockaddr *)&un,
             (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n)) != 0) {
        close(fd);
        return 0;
    }
    return 1;
}

/*
 * Ports for the proxy come from below the kernel's ephemeral range (32768+),
 * where the origins' and clients' automatic ports live: a port found free
 * here cannot be handed to another test's origin a moment later.
 */
unsigned h_free_port(void)
{
    static _Thread_local unsigned seed;

    if (!seed)
        seed = (unsigned)getpid() * 2654435761u ^ (unsigned)h_now_ms();
    for (int tries = 0; tries < 200; tries++) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        unsigned port;
        int fd, ok, one = 1;

        seed = seed * 1103515245u + 12345u;
        port = 20000 + (seed >> 8) % 12000;
        sa.sin_port = htons((uint16_t)port);
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        /*
         * Keep the port reserved for this test process: a bound socket that
         * never listens takes no connections and lets our proxy bind the port
         * (SO_REUSEPORT, same user). It does not keep out another test
         * process doing the same (both may bind with SO_REUSEPORT, and then
         * two proxies would share the port's connections), so the port is
         * also claimed by an abstract unix socket name, which only one
         * process can hold.
         */
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
        /* and SO_REUSEADDR: ringproxy's check that nothing listens there binds beside it */
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && claim_port(port);
        if (ok)
            return port; /* both stay open until the test process exits */
        close(fd);
    }
    return 0;
}

char *h_slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    if (!f)
        return calloc(1, 1);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    n = (long)fread(buf, 1, (size_t)n, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

int h_connect_rcvbuf(unsigned port, int rcvbuf)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {10, 0};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    if ((rcvbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) < 0) ||
        connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return fd;
}

int h_connect(unsigned port)
{
    return h_connect_rcvbuf(port, 0);
}

/*
 * Every proxy's folder lives under /tmp/rp-e2e.<runner pid>: Criterion runs
 * each test in a child of the runner, and the runner removes the lot when
 * all tests are done.
 */
static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    char base[64];

    (void)stats;
    snprintf(base, sizeof(base), "/tmp/rp-e2e.%d", (int)getpid());
    (void)nftw(base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* For a child's stdout or stderr: the file at path, created anew (NULL: /dev/null). */
static int out_file(const char *path)
{
    int fd = path ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)
                  : open("/dev/null", O_WRONLY | O_CLOEXEC);

    cr_assert(fd >= 0, "%s: %s", path ? path : "/dev/null", strerror(errno));
    return fd;
}

/* Fork and exec argv with stdout out and stderr err (both closed here; they may be one). */
static pid_t spawn(const char *const *argv, int out, int err)
{
    pid_t pid = fork();

    cr_assert(pid >= 0);
    if (pid == 0) {
        dup2(out, 1);
        dup2(err, 2);
        /* nothing of the test process (Criterion's arenas, other sockets) leaks in */
        close_range(3, ~0U, 0);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(out);
    if (err != out)
        close(err);
    return pid;
}

int h_engine_args(const char **argv, int n)
{
    const char *e = getenv("RINGPROXY_ENGINE");

    if (e && *e) {
        argv[n++] = "--engine";
        argv[n++] = e;
    }
    return n;
}

pid_t h_spawn(const char *const *args, const char *out_path, const char *err_path)
{
    const char *bin = getenv("RINGPROXY");
    const char *argv[32];
    int n = 0, out, err;

    cr_assert(bin, "RINGPROXY is not set");
    argv[n++] = bin;
    n = h_engine_args(argv, n);
    for (int i = 0; args && args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    out = out_file(out_path);
    err = out_path && err_path && !strcmp(out_path, err_path) ? out : out_file(err_path);
    return spawn(argv, out, err);
}

int h_reap(pid_t pid, int ms)
{
    long end = h_now_ms() + ms;
    int status;

    for (;;) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return status;
        if (h_now_ms() >= end)
            break;
        h_msleep(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

static void start(struct proxy *p, unsigned upstream_port, const char *json,
                  const char *const *args, int piped)
{
    int pfd[2] = {-1, -1};
    int own_admin = 1;
    char listen[32], upstream[32], admin[32];
    const char *bin = getenv("RINGPROXY");
    const char *argv[32];
    int n = 0, status;

    cr_assert(bin, "RINGPROXY is not set");
    memset(p, 0, sizeof(*p));
    snprintf(p->dir, sizeof(p->dir), "/tmp/rp-e2e.%d", (int)getppid());
    (void)mkdir(p->dir, 0700);
    snprintf(p->dir, sizeof(p->dir), "/tmp/rp-e2e.%d/XXXXXX", (int)getppid());
    cr_assert(mkdtemp(p->dir));
    snprintf(p->out_path, sizeof(p->out_path), "%s/stdout", p->dir);
    snprintf(p->err_path, sizeof(p->err_path), "%s/stderr", p->dir);
    if (json) {
        char path[128];
        FILE *f;
        snprintf(path, sizeof(path), "%s/proxy.json", p->dir);
        f = fopen(path, "w");
        cr_assert(f);
        fputs(json, f);
        fclose(f);
    }
    p->port = h_free_port();
    p->admin_port = h_free_port();
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", p->port);
    snprintf(upstream, sizeof(upstream), "127.0.0.1:%u", upstream_port);
    snprintf(admin, sizeof(admin), "127.0.0.1:%u", p->admin_port);
    argv[n++] = bin;
    argv[n++] = "--config";
    argv[n++] = p->dir;
    argv[n++] = "--listen";
    argv[n++] = listen;
    argv[n++] = "--upstream";
    argv[n++] = upstream;
    argv[n++] = "--admin";
    argv[n++] = admin;
    argv[n++] = "--workers";
    argv[n++] = "1";
    n = h_engine_args(argv, n);
    for (int i = 0; args && args[i] && n < 30; i++) {
        own_admin &= strcmp(args[i], "--admin") != 0;
        argv[n++] = args[i];
    }
    argv[n] = NULL;

    if (piped)
        cr_assert(pipe2(pfd, O_CLOEXEC) == 0);
    p->pid = spawn(argv, piped ? pfd[1] : out_file(p->out_path), out_file(p->err_path));
    p->out_fd = pfd[0];
    for (int i = 0; i < 500; i++) {
        int fd;

        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            char *err = h_slurp(p->err_path);
            p->pid = 0;
            if (strstr(err, "io_uring is not available")) {
                free(err);
                cr_skip_test("the kernel refuses io_uring here");
            }
            cr_assert_fail("ringproxy exited at start-up: %s", err);
        }
        fd = h_connect(p->port);
        if (fd >= 0) {
            /* a test that moves the admin listener checks it itself */
            int afd = own_admin ? h_connect(p->admin_port) : dup(fd);

            close(fd);
            if (afd >= 0)
                close(afd);
            /* both listeners answer, and they are ours: the process is still there */
            if (afd >= 0 && waitpid(p->pid, &status, WNOHANG) == 0)
                return;
            h_msleep(10);
            continue;
        }
        h_msleep(10);
    }
    cr_assert_fail("ringproxy did not start listening within 5 s");
}

void h_proxy_start(struct proxy *p, unsigned upstream_port, const char *json,
                   const char *const *args)
{
    start(p, upstream_port, json, args, 0);
}

void h_proxy_start_piped(struct proxy *p, unsigned upstream_port, const char *json,
                         const char *const *args)
{
    start(p, upstream_port, json, args, 1);
}

int h_proxy_stop(struct proxy *p)
{
    int status;

    if (!p->pid)
        return -1;
    kill(p->pid, SIGTERM);
    status = h_reap(p->pid, 15000);
    p->pid = 0;
    return status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int h_wait_log_lines(struct proxy *p, int n)
{
    int lines = 0;

    for (int i = 0; i < 300; i++) {
        char *s = h_slurp(p->out_path);
        lines = 0;
        for (char *q = s; *q; q++)
            lines += *q == '\n';
        free(s);
        if (lines >= n)
            break;
        h_msleep(10);
    }
    return lines;
}

int h_count_in(const char *path, const char *needle)
{
    char *s = h_slurp(path);
    int n = 0;

    for (char *p = strstr(s, needle); p; p = strstr(p + 1, needle))
        n++;
    free(s);
    return n;
}

int h_wait_in(const char *path, const char *needle, int ms)
{
    long end = h_now_ms() + ms;

    while (!h_count_in(path, needle)) {
        if (h_now_ms() > end)
            return 0;
        h_msleep(10);
    }
    return 1;
}

int h_fds(pid_t pid, unsigned char *used, size_t cap)
{
    char path[64];
    struct dirent *d;
    DIR *dir;
    int n = 0;

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    dir = opendir(path);
    if (!dir)
        return -1;
    while ((d = readdir(dir))) {
        int k = atoi(d->d_name);

        if (d->d_name[0] == '.')
            continue;
        n++;
        if (used && k >= 0 && (size_t)k < cap)
            used[k] = 1;
    }
    closedir(dir);
    return n;
}

long h_rss_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

int h_send(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Buffered reading of one connection. */
struct rd {
    int fd;
    char buf[65536];
    size_t off, len;
    int eof;
};

static int rd_fill(struct rd *r)
{
    ssize_t n;

    if (r->off == r->len)
        r->off = r->len = 0;
    if (r->len == sizeof(r->buf)) {
        memmove(r->buf, r->buf + r->off, r->len - r->off);
        r->len -= r->off;
        r->off = 0;
    }
    n = recv(r->fd, r->buf + r->len, sizeof(r->buf) - r->len, 0);
    if (n <= 0) {
        r->eof = 1;
        return -1;
    }
    r->len += (size_t)n;
    return 0;
}

static struct rd *rd_for(int fd)
{
    /* One reader per thread is enough: tests read one connection at a time, and
     * leftover bytes stay with their fd. */
    static _Thread_local struct rd rds[8];
    for (int i = 0; i < 8; i++)
        if (rds[i].fd == fd && (rds[i].len || rds[i].eof))
            return &rds[i];
    for (int i = 0; i < 8; i++)
        if (!rds[i].len && !rds[i].eof) {
            rds[i].fd = fd;
            rds[i].off = rds[i].len = 0;
            return &rds[i];
        }
    memset(&rds[0], 0, sizeof(rds[0]));
    rds[0].fd = fd;
    return &rds[0];
}

static void rd_release(struct rd *r)
{
    if (r->off == r->len) {
        r->off = r->len = 0;
        r->eof = 0;
        r->fd = -1;
    }
}

static int rd_line(struct rd *r, char *out, size_t cap)
{
    for (;;) {
        char *nl = memchr(r->buf + r->off, '\n', r->len - r->off);
        if (nl) {
            size_t n = (size_t)(nl - (r->buf + r->off)) + 1;
            if (n >= cap)
                return -1;
            memcpy(out, r->buf + r->off, n);
            out[n] = '\0';
            r->off += n;
            return (int)n;
        }
        if (rd_fill(r) < 0)
            return -1;
    }
}

static int rd_bytes(struct rd *r, char *out, size_t n)
{
    while (n) {
        size_t k;
        if (r->off == r->len && rd_fill(r) < 0)
            return -1;
        k = r->len - r->off < n ? r->len - r->off : n;
        memcpy(out, r->buf + r->off, k);
        r->off += k;
        out += k;
        n -= k;
    }
    return 0;
}

int h_header(const char *head, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);

    for (const char *p = strstr(head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
        if (!strncasecmp(p + 2, name, nl) && p[2 + nl] == ':') {
            const char *v = p + 3 + nl, *e;
            while (*v == ' ' || *v == '\t')
                v++;
            e = strstr(v, "\r\n");
            if (!e || (size_t)(e - v) >= cap)
                return -1;
            memcpy(out, v, (size_t)(e - v));
            out[e - v] = '\0';
            return 0;
        }
    }
    return -1;
}

int h_read_response(int fd, struct h_resp *resp, int no_body)
{
    struct rd *r = rd_for(fd);
    char line[16384], v[64];
    size_t hl = 0, cap = 1 << 16;

    memset(resp, 0, sizeof(*resp));
    resp->content_length = -1;
    for (;;) {
        int n = rd_line(r, line, sizeof(line));
        if (n < 0 || hl + (size_t)n >= sizeof(resp->head))
            return -1;
        memcpy(resp->head + hl, line, (size_t)n + 1);
        hl += (size_t)n;
        if (!strcmp(line, "\r\n"))
            break;
    }
    if (sscanf(resp->head, "HTTP/1.%*d %d", &resp->status) != 1)
        return -1;
    resp->body = malloc(cap);
    if (h_header(resp->head, "Content-Length", v, sizeof(v)) == 0)
        resp->content_length = atol(v);
    if (h_header(resp->head, "Transfer-Encoding", v, sizeof(v)) == 0 && strstr(v, "chunked"))
        resp->chunked = 1;
    if (no_body || resp->status == 204 || resp->status == 304 ||
        (resp->status >= 100 && resp->status < 200))
        goto done;
    if (resp->chunked) {
        for (;;) {
            unsigned long sz;
            if (rd_line(r, line, sizeof(line)) < 0)
                return -1;
            sz = strtoul(line, NULL, 16);
            if (sz == 0) {
                do {
                    if (rd_line(r, line, sizeof(line)) < 0)
                        return -1;
                } while (strcmp(line, "\r\n"));
                break;
            }
            while (resp->body_len + sz > cap)
                resp->body = realloc(resp->body, cap *= 2);
            if (rd_bytes(r, resp->body + resp->body_len, sz) < 0 || rd_bytes(r, line, 2) < 0)
                return -1;
            resp->body_len += sz;
        }
    } else if (resp->content_length >= 0) {
        if ((size_t)resp->content_length > cap)
            resp->body = realloc(resp->body, cap = (size_t)resp->content_length);
        if (rd_bytes(r, resp->body, (size_t)resp->content_length) < 0)
            return -1;
        resp->body_len = (size_t)resp->content_length;
    } else {
        for (;;) {
            if (r->off == r->len && rd_fill(r) < 0)
                break;
            while (resp->body_len + (r->len - r->off) > cap)
                resp->body = realloc(resp->body, cap *= 2);
            memcpy(resp->body + resp->body_len, r->buf + r->off, r->len - r->off);
            resp->body_len += r->len - r->off;
            r->off = r->len;
        }
        resp->closed = 1;
    }
done:
    if (h_header(resp->head, "Connection", v, sizeof(v)) == 0 && !strcasecmp(v, "close"))
        resp->closed = 1;
    rd_release(r);
    return 0;
}

void h_resp_free(struct h_resp *r)
{
    free(r->body);
    r->body = NULL;
}

size_t h_read_all(int fd, char *buf, size_t cap, int timeout_ms)
{
    struct rd *r = rd_for(fd);
    size_t n = 0;

    /* what the response reader buffered comes first */
    if (r->len > r->off) {
        n = r->len - r->off < cap - 1 ? r->len - r->off : cap - 1;
        memcpy(buf, r->buf + r->off, n);
        r->off += n;
    }
    rd_release(r);
    r->fd = -1;
    for (;;) {
        struct pollfd pfd = {fd, POLLIN, 0};
        ssize_t k;
        if (n + 1 >= cap || poll(&pfd, 1, timeout_ms) <= 0)
            break;
        k = recv(fd, buf + n, cap - 1 - n, 0);
        if (k <= 0)
            break;
        n += (size_t)k;
    }
    buf[n] = '\0';
    return n;
}

size_t h_recv_until(int fd, char *buf, size_t cap, size_t have, const char *needle, int timeout_ms,
                    int *ret_eof)
{
    long end = h_now_ms() + timeout_ms;

    *ret_eof = 0;
    buf[have] = '\0';
    while (!(needle && memmem(buf, have, needle, strlen(needle)))) {
        struct pollfd pfd = {fd, POLLIN, 0};
        long left = end - h_now_ms();
        ssize_t k;

        if (have + 1 >= cap || left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            break;
        k = recv(fd, buf + have, cap - 1 - have, 0);
        if (k <= 0) {
            if (k < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            *ret_eof = 1;
            break;
        }
        have += (size_t)k;
        buf[have] = '\0';
    }
    return have;
}

size_t h_read_to_eof(int fd, char *buf, size_t cap, int timeout_ms, int *ret_eof)
{
    return h_recv_until(fd, buf, cap, h_read_all(fd, buf, cap, 0), NULL, timeout_ms, ret_eof);
}

void h_close(int fd)
{
    struct rd *r = rd_for(fd);

    r->off = r->len = 0;
    r->eof = 0;
    r->fd = -1;
    close(fd);
}

int h_roundtrip(unsigned port, const char *req, struct h_resp *r)
{
    int fd = h_connect(port), rc;

    if (fd < 0)
        return -1;
    if (h_sends(fd, req) < 0) {
        close(fd);
        return -1;
    }
    rc = h_read_response(fd, r, !strncmp(req, "HEAD ", 5));
    h_close(fd);
    return rc;
}

int h_status_on(int fd, const char *req)
{
    struct h_resp r;
    int st;

    if (h_sends(fd, req) < 0 || h_read_response(fd, &r, 0) < 0)
        return -1;
    st = r.closed ? -r.status : r.status;
    h_resp_free(&r);
    return st;
}

long h_metric(unsigned admin_port, const char *sample)
{
    struct h_resp r;
    char key[160];
    long v = -1;
    int fd = h_connect(admin_port);

    if (fd < 0)
        return -1;
    if (h_sends(fd, "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n") == 0 &&
        h_read_response(fd, &r, 0) == 0) {
        char *p;

        r.body = realloc(r.body, r.body_len + 1);
        r.body[r.body_len] = '\0';
        snprintf(key, sizeof(key), "\n%s ", sample);
        p = strstr(r.body, key);
        if (p)
            v = atol(p + strlen(key));
        h_resp_free(&r);
    }
    h_close(fd);
    return v;
}

long h_metric_wait(unsigned admin_port, const char *sample, long want, int ms)
{
    long end = h_now_ms() + ms, v;

    while ((v = h_metric(admin_port, sample)) != want && h_now_ms() < end)
        h_msleep(20);
    return v;
}

long h_send_q(unsigned lport, unsigned rport)
{
    char line[512];
    long q = -1;
    FILE *f = fopen("/proc/net/tcp", "r");

    if (!f)
        return -1;
    while (q < 0 && fgets(line, sizeof(line), f)) {
        unsigned lp, rp;
        unsigned long tx;

        if (sscanf(line, " %*d: %*x:%x %*x:%x %*x %lx:%*x", &lp, &rp, &tx) == 3 && lp == lport &&
            rp == rport)
            q = (long)tx;
    }
    fclose(f);
    return q;
}

const char *h_shown(const char *p, size_t n)
{
    static char out[4096];
    size_t o = 0;

    for (size_t i = 0; i < n && o + 8 < sizeof(out); i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\r') {
            o += (size_t)snprintf(out + o, sizeof(out) - o, "\\r");
        } else if (c == '\n') {
            o += (size_t)snprintf(out + o, sizeof(out) - o, "\\n\n");
        } else if (c < 0x20 || c >= 0x7f) {
            o += (size_t)snprintf(out + o, sizeof(out) - o, "\\x%02x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
    return out;
}

void h_put_file(const char *dir, const char *rel, const char *text)
{
    char path[256], tmp[300];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "w");
    cr_assert(f, "%s: %s", tmp, strerror(errno));
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
    cr_assert_eq(rename(tmp, path), 0, "%s: %s", path, strerror(errno));
}

const char *h_basic_raw(char *out, size_t cap, const char *cred, size_t n)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = (size_t)snprintf(out, cap, "Authorization: Basic ");

    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)cred[i] << 16;

        if (i + 1 < n)
            v |= (uint32_t)(unsigned char)cred[i + 1] << 8;
        if (i + 2 < n)
            v |= (uint32_t)(unsigned char)cred[i + 2];
        cr_assert_lt(o + 7, cap);
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = i + 1 < n ? abc[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? abc[v & 63] : '=';
    }
    snprintf(out + o, cap - o, "\r\n");
    return out;
}

const char *h_basic(char *out, size_t cap, const char *user, const char *pass)
{
    char cred[256];
    int n = snprintf(cred, sizeof(cred), "%s:%s", user, pass);

    cr_assert_lt(n, (int)sizeof(cred));
    return h_basic_raw(out, cap, cred, (size_t)n);
}

char *h_crypt(const char *prefix, unsigned long cost, const char *pass)
{
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    char *h;

    cr_assert_not_null(cd);
    cr_assert_not_null(crypt_gensalt_rn(prefix, cost, NULL, 0, salt, sizeof(salt)), "%s", prefix);
    h = crypt_rn(pass, salt, cd, (int)sizeof(*cd));
    cr_assert(h && h[0] != '*', "crypt_rn(%s) failed", salt);
    h = strdup(h);
    free(cd);
    return h;
}
