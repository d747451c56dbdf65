#include "tests/support/origin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SCRIPTS 8
#define RECV_LOG_CAP (1 << 20)

struct script {
    char *raw;
    size_t len;
    int close_after;
};

struct origin {
    int fd;
    unsigned port;
    pthread_t thread;
    _Atomic int stop;
    _Atomic unsigned accepts, requests, active;
    pthread_mutex_t mu;
    struct script scripts[MAX_SCRIPTS];
    unsigned nscripts;
    char last_head[16384];
    char *recv_log;
    size_t recv_len;
};

struct conn {
    struct origin *o;
    int fd;
    char buf[65536];
    size_t len;
};

static void note_received(struct origin *o, const char *p, size_t n)
{
    pthread_mutex_lock(&o->mu);
    if (o->recv_len + n > RECV_LOG_CAP)
        n = RECV_LOG_CAP - o->recv_len;
    memcpy(o->recv_log + o->recv_len, p, n);
    o->recv_len += n;
    pthread_mutex_unlock(&o->mu);
}

/* Read more into c->buf; 0 on EOF/error/stop. */
static int fill(struct conn *c)
{
    for (;;) {
        struct pollfd pfd = {c->fd, POLLIN, 0};
        ssize_t n;

        if (atomic_load(&c->o->stop))
            return 0;
        if (poll(&pfd, 1, 100) == 0)
            continue;
        if (c->len == sizeof(c->buf))
            return 0;
        n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
        if (n <= 0)
            return 0;
        note_received(c->o, c->buf + c->len, (size_t)n);
        c->len += (size_t)n;
        return 1;
    }
}

static void consume(struct conn *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static const char *find_hdr(const char *head, const char *name)
{
    size_t nl = strlen(name);

    for (const char *p = strstr(head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
        if (!strncasecmp(p + 2, name, nl) && p[2 + nl] == ':') {
            const char *v = p + 3 + nl;
            while (*v == ' ')
                v++;
            return v;
        }
    }
    return NULL;
}

/* Read a request body into *ret (malloc'd); -1 on failure. */
static long read_body(struct conn *c, const char *head, char **ret)
{
    const char *cl = find_hdr(head, "Content-Length");
    const char *te = find_hdr(head, "Transfer-Encoding");
    size_t cap = 1 << 16, len = 0;
    char *b = malloc(cap);

    if (!b)
        return -1;
    if (te && !strncasecmp(te, "chunked", 7)) {
        for (;;) {
            char *eol;
            unsigned long sz;

            while (!(eol = memmem(c->buf, c->len, "\r\n", 2)))
                if (!fill(c))
                    goto fail;
            sz = strtoul(c->buf, NULL, 16);
            consume(c, (size_t)(eol - c->buf) + 2);
            if (sz == 0) {
                while (!memmem(c->buf, c->len, "\r\n", 2))
                    if (!fill(c))
                        goto fail;
                /* trailers: skip lines until an empty one */
                for (;;) {
                    char *e2 = memmem(c->buf, c->len, "\r\n", 2);
                    if (!e2) {
                        if (!fill(c))
                            goto fail;
                        continue;
                    }
                    size_t ll = (size_t)(e2 - c->buf);
                    consume(c, ll + 2);
                    if (!ll)
                        break;
                }
                break;
            }
            while (c->len < sz + 2)
                if (!fill(c))
                    goto fail;
            while (len + sz > cap) {
                char *nb = realloc(b, cap *= 2);
                if (!nb)
                    goto fail;
                b = nb;
            }
            memcpy(b + len, c->buf, sz);
            len += sz;
            consume(c, sz + 2);
        }
    } else if (cl) {
        size_t want = strtoul(cl, NULL, 10);
        if (want > cap) {
            char *nb = realloc(b, want);
            if (!nb)
                goto fail;
            b = nb;
        }
        while (len < want) {
            size_t take;
            if (!c->len && !fill(c))
                goto fail;
            take = c->len < want - len ? c->len : want - len;
            memcpy(b + len, c->buf, take);
            len += take;
            consume(c, take);
        }
    }
    *ret = b;
    return (long)len;
fail:
    free(b);
    return -1;
}

/* Byte i of every generated body, whatever the framing. */
static char pattern_byte(size_t i)
{
    return (char)('a' + (i % 16384) % 26);
}

int origin_body_ok(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != pattern_byte(i))
            return 0;
    return 1;
}

static int send_pattern(int fd, size_t n, int chunked)
{
    static char buf[16384 + 1024];
    size_t pos = 0;

    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = pattern_byte(i);
    while (pos < n) {
        size_t k = n - pos < (chunked ? 1000 : 16384) ? n - pos : (chunked ? 1000 : 16384);
        if (chunked) {
            char h[32];
            int hl = snprintf(h, sizeof(h), "%zx\r\n", k);
            if (send_all(fd, h, (size_t)hl) < 0)
                return -1;
        }
        if (send_all(fd, buf + pos % 16384, k) < 0 || (chunked && send_all(fd, "\r\n", 2) < 0))
            return -1;
        pos += k;
    }
    return chunked ? send_all(fd, "0\r\n\r\n", 5) : 0;
}

/* Serve one request; 0 to keep the connection, -1 to close it. */
static int serve(struct conn *c)
{
    struct origin *o = c->o;
    char head[16384], resp[512];
    char *end, *body = NULL;
    size_t hl;
    long blen;
    int n, is_head, keep;
    unsigned long arg;

    while (!(end = memmem(c->buf, c->len, "\r\n\r\n", 4)))
        if (!fill(c))
            return -1;
    hl = (size_t)(end - c->buf) + 4;
    if (hl >= sizeof(head))
        return -1;
    memcpy(head, c->buf, hl);
    head[hl] = '\0';
    consume(c, hl);
    pthread_mutex_lock(&o->mu);
    memcpy(o->last_head, head, hl + 1);
    pthread_mutex_unlock(&o->mu);
    blen = read_body(c, head, &body);
    if (blen < 0)
        return -1;
    atomic_fetch_add(&o->requests, 1);

    pthread_mutex_lock(&o->mu);
    if (o->nscripts) {
        struct script s = o->scripts[0];
        memmove(o->scripts, o->scripts + 1, --o->nscripts * sizeof(s));
        pthread_mutex_unlock(&o->mu);
        free(body);
        if (s.raw && send_all(c->fd, s.raw, s.len) < 0)
            s.close_after = 1;
        free(s.raw);
        return s.close_after ? -1 : 0;
    }
    pthread_mutex_unlock(&o->mu);

    is_head = !strncmp(head, "HEAD ", 5);
    keep =
        !strstr(head, "HTTP/1.0\r\n") && !find_hdr(head, "Connection") ? 1
        : (find_hdr(head, "Connection") && !strncasecmp(find_hdr(head, "Connection"), "close", 5))
            ? 0
            : !strstr(head, "HTTP/1.0\r\n");
    if (sscanf(head, "%*s /size/%lu ", &arg) == 1) {
        n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     "Content-Length: %lu\r\n\r\n",
                     arg);
        if (send_all(c->fd, resp, (size_t)n) < 0 || (!is_head && send_pattern(c->fd, arg, 0) < 0))
            keep = 0;
    } else if (sscanf(head, "%*s /asset/%lu ", &arg) == 1) {
        /* The head a static file server sends (nginx's fields, in its order). */
        n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n"
                     "Date: Fri, 27 Nov 2026 10:00:00 GMT\r\n"
                     "Content-Type: application/octet-stream\r\nContent-Length: %lu\r\n"
                     "Last-Modified: Thu, 26 Nov 2026 09:00:00 GMT\r\n"
                     "Connection: keep-alive\r\nETag: \"6a1f3c40-%lx\"\r\n"
                     "Accept-Ranges: bytes\r\n\r\n",
                     arg, arg);
        if (send_all(c->fd, resp, (size_t)n) < 0 || (!is_head && send_pattern(c->fd, arg, 0) < 0))
            keep = 0;
    } else if (sscanf(head, "%*s /chunked/%lu ", &arg) == 1) {
        n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: "
                     "chunked\r\n\r\n");
        if (send_all(c->fd, resp, (size_t)n) < 0 || (!is_head && send_pattern(c->fd, arg, 1) < 0))
            keep = 0;
    } else if (sscanf(head, "%*s /eof/%lu ", &arg) == 1) {
        n = snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n");
        (void)(send_all(c->fd, resp, (size_t)n) < 0 || send_pattern(c->fd, arg, 0));
        keep = 0;
    } else if (sscanf(head, "%*s /status/%lu ", &arg) == 1) {
        n = snprintf(resp, sizeof(resp), "HTTP/1.1 %lu Status\r\n%s\r\n", arg,
                     arg == 204 || arg == 304 || arg < 200 ? "" : "Content-Length: 0\r\n");
        if (send_all(c->fd, resp, (size_t)n) < 0)
            keep = 0;
    } else if (sscanf(head, "%*s /sleep/%lu ", &arg) == 1) {
        struct timespec ts = {(time_t)(arg / 1000), (long)(arg % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nContent-Type: text/plain\r\n\r\n"
                     "slept\n");
        if (send_all(c->fd, resp, (size_t)n) < 0)
            keep = 0;
    } else if (!strncmp(head, "GET /headers ", 13)) {
        n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n\r\n",
                     hl);
        if (send_all(c->fd, resp, (size_t)n) < 0 || send_all(c->fd, head, hl) < 0)
            keep = 0;
    } else if (!strncmp(head, "POST /echo ", 11) || !strncmp(head, "PUT /echo ", 10)) {
        n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     "Content-Length: %ld\r\n\r\n",
                     blen);
        if (send_all(c->fd, resp, (size_t)n) < 0 || send_all(c->fd, body, (size_t)blen) < 0)
            keep = 0;
    } else {
        static const char hello[] = "hello from origin\n";
        n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "%s\r\n%s",
                     sizeof(hello) - 1, keep ? "" : "Connection: close\r\n", is_head ? "" : hello);
        if (send_all(c->fd, resp, (size_t)n) < 0)
            keep = 0;
    }
    free(body);
    return keep ? 0 : -1;
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;

    while (!atomic_load(&c->o->stop) && serve(c) == 0)
        ;
    (void)close(c->fd);
    atomic_fetch_sub(&c->o->active, 1);
    free(c);
    return NULL;
}

static void *accept_main(void *arg)
{
    struct origin *o = arg;

    while (!atomic_load(&o->stop)) {
        struct pollfd pfd = {o->fd, POLLIN, 0};
        pthread_t t;
        struct conn *c;
        int fd, one = 1;

        if (poll(&pfd, 1, 50) <= 0)
            continue;
        fd = accept(o->fd, NULL, NULL);
        if (fd < 0)
            continue;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        atomic_fetch_add(&o->accepts, 1);
        c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        c->o = o;
        c->fd = fd;
        atomic_fetch_add(&o->active, 1);
        if (pthread_create(&t, NULL, conn_main, c) != 0) {
            atomic_fetch_sub(&o->active, 1);
            close(fd);
            free(c);
            continue;
        }
        pthread_detach(t);
    }
    return NULL;
}

struct origin *origin_start(const char *addr, unsigned port)
{
    struct origin *o = calloc(1, sizeof(*o));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    socklen_t sl = sizeof(sa);
    int one = 1;

    if (!o)
        return NULL;
    o->recv_log = malloc(RECV_LOG_CAP);
    pthread_mutex_init(&o->mu, NULL);
    o->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (!o->recv_log || o->fd < 0 || inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
        goto fail;
    (void)setsockopt(o->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(o->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(o->fd, 4096) < 0 ||
        getsockname(o->fd, (struct sockaddr *)&sa, &sl) < 0)
        goto fail;
    o->port = ntohs(sa.sin_port);
    if (pthread_create(&o->thread, NULL, accept_main, o) != 0)
        goto fail;
    return o;
fail:
    if (o->fd >= 0)
        close(o->fd);
    free(o->recv_log);
    free(o);
    return NULL;
}

unsigned origin_port(const struct origin *o)
{
    return o->port;
}

void origin_stop(struct origin *o)
{
    if (!o)
        return;
    atomic_store(&o->stop, 1);
    pthread_join(o->thread, NULL);
    for (int i = 0; i < 200 && atomic_load(&o->active); i++)
        usleep(10000);
    close(o->fd);
    for (unsigned i = 0; i < o->nscripts; i++)
        free(o->scripts[i].raw);
    if (!atomic_load(&o->active)) {
        free(o->recv_log);
        free(o);
    }
}

unsigned origin_accepts(const struct origin *o)
{
    return atomic_load(&o->accepts);
}

unsigned origin_requests(const struct origin *o)
{
    return atomic_load(&o->requests);
}

void origin_last_head(struct origin *o, char *buf, size_t cap)
{
    pthread_mutex_lock(&o->mu);
    snprintf(buf, cap, "%s", o->last_head);
    pthread_mutex_unlock(&o->mu);
}

size_t origin_received(struct origin *o, char *buf, size_t cap)
{
    size_t n;

    pthread_mutex_lock(&o->mu);
    n = o->recv_len < cap - 1 ? o->recv_len : cap - 1;
    memcpy(buf, o->recv_log, n);
    buf[n] = '\0';
    pthread_mutex_unlock(&o->mu);
    return n;
}

void origin_script(struct origin *o, const char *raw, size_t len, int close_after)
{
    pthread_mutex_lock(&o->mu);
    if (o->nscripts < MAX_SCRIPTS) {
        struct script *s = &o->scripts[o->nscripts++];
        s->raw = raw ? malloc(len) : NULL;
        if (s->raw)
            memcpy(s->raw, raw, len);
        s->len = len;
        s->close_after = close_after;
    }
    pthread_mutex_unlock(&o->mu);
}
