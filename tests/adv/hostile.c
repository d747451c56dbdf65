#include "tests/adv/hostile.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tests/adv/common.h"

#define MAX_CONNS 1024
#define MAX_PROBLEMS 16
#define MAX_EXPECT 4
#define HEAD_MAX 65536
#define BODY_MAX (4u << 20)
#define LATE_STRAY_US 80000 /* stray bytes after a bodiless answer later than this: junk */
#define EXCUSE_MS 250       /* a request this soon after stray bytes crossed them */
#define IO_TIMEOUT_S 20     /* a connection nobody talks to ends by itself */

static const char *const mode_names[AM_COUNT] = {
    [AM_OK] = "ok",           [AM_CHUNKED] = "chunked",   [AM_HEAD204] = "head204",
    [AM_EARLY] = "early",     [AM_MIDCLOSE] = "midclose", [AM_BIGHEAD] = "bighead",
    [AM_CONNLEN] = "connlen", [AM_BADCHUNK] = "badchunk", [AM_STALL] = "stall",
    [AM_INTERIM] = "interim", [AM_ERROR] = "error",
};

static const int mode_variants[AM_COUNT] = {
    [AM_OK] = 3,       [AM_CHUNKED] = 3, [AM_HEAD204] = 5, [AM_EARLY] = 2,
    [AM_MIDCLOSE] = 3, [AM_BIGHEAD] = 2, [AM_CONNLEN] = 4, [AM_BADCHUNK] = 2,
    [AM_STALL] = 1,    [AM_INTERIM] = 3, [AM_ERROR] = 6,
};

const char *adv_mode_name(enum adv_mode m)
{
    return m < AM_COUNT ? mode_names[m] : "?";
}

int adv_mode_variants(enum adv_mode m)
{
    return m < AM_COUNT ? mode_variants[m] : 1;
}

unsigned adv_tag_hash(const char *tag)
{
    unsigned h = 2166136261u;

    for (; *tag; tag++)
        h = (h ^ (unsigned char)*tag) * 16777619u;
    return h;
}

char adv_body_byte(const char *tag, size_t tlen, unsigned hash, size_t i)
{
    size_t j = i % 1024;

    if (j == 0)
        return '[';
    if (j <= tlen)
        return tag[j - 1];
    if (j == tlen + 1)
        return ']';
    /* letters only: no digit can make a tag, no byte can look like framing */
    return (char)('a' + (j * 7 + i / 1024 + hash) % 26);
}

/*
 * Bodies repeat every 26 units (byte i depends on i % 1024 and i / 1024 % 26):
 * the first period is computed, the rest copied. Byte by byte, the 8 MB
 * bodies of the leak family's stalled readers took seconds of the two cores
 * the proxy shares, and the other clients' first requests timed out.
 */
#define BODY_PERIOD (26 * 1024)

void adv_body(const char *tag, size_t n, char *out)
{
    size_t tlen = strlen(tag), first = n < BODY_PERIOD ? n : BODY_PERIOD;
    unsigned hash = adv_tag_hash(tag);

    for (size_t i = 0; i < first; i++)
        out[i] = adv_body_byte(tag, tlen, hash, i);
    for (size_t off = BODY_PERIOD; off < n; off += BODY_PERIOD)
        memcpy(out + off, out, n - off < BODY_PERIOD ? n - off : BODY_PERIOD);
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

const char *adv_tag_find(const char *s, size_t len, const char *seed, size_t *pos, size_t *tlen)
{
    size_t sl = strlen(seed);

    while (*pos + sl + 1 <= len) {
        const char *d = memchr(s + *pos, '-', len - *pos);
        size_t at, b;

        if (!d)
            break;
        at = (size_t)(d - s);
        *pos = at + 1;
        if (at + 1 + sl > len || memcmp(d + 1, seed, sl) ||
            (at + 1 + sl < len && is_digit(s[at + 1 + sl])))
            continue;
        /* backwards: <digits> 'r' '-' <digits> 'c' */
        b = at;
        while (b > 0 && is_digit(s[b - 1]))
            b--;
        if (b == at || b < 2 || s[b - 1] != 'r' || s[b - 2] != '-')
            continue;
        b -= 2;
        {
            size_t e = b;
            while (b > 0 && is_digit(s[b - 1]))
                b--;
            if (b == e || b < 1 || s[b - 1] != 'c')
                continue;
            b--;
        }
        *tlen = at + 1 + sl - b;
        *pos = at + 1 + sl;
        return s + b;
    }
    return NULL;
}

/* ---- the origin -------------------------------------------------------- */

struct hostile {
    int lfd;
    unsigned port;
    uint64_t seed;
    char seedstr[24];
    pthread_t acceptor;
    atomic_int stop;
    atomic_int active;
    atomic_uint conns;
    atomic_ulong requests;
    pthread_mutex_t mu;
    int fds[MAX_CONNS];
    unsigned nproblems;
    char problems[MAX_PROBLEMS][256];
    struct excused {
        char tag[64];
        long gap_us; /* from the stray bytes (or the answer after them) to the request */
    } * excused;
    size_t nexcused, capexcused;
    struct note {
        char tag[64];
        char text[256];
    } * notes;
    size_t nnotes, capnotes;
    struct expect {
        char name[32];
        char value[64];
        int absent;
    } expect[MAX_EXPECT];
    int nexpect;
};

struct hconn {
    struct hostile *h;
    int fd, slot;
    char *buf;
    size_t len, cap; /* bytes received and not consumed yet */
    int excuse_next; /* a request came right after stray bytes: it crossed them */
    long excuse_gap_us;
    uint64_t rng;
    char prev[96]; /* the request before, for messages */
    unsigned id;   /* for messages */
    int nreq;
    char stray[160]; /* "after <tag> (<mode>/v<n>)": this connection carried stray bytes */
    long stray_us;
};

struct hreq {
    char method[8];
    char tag[64];
    enum adv_mode mode;
    int v, head_req;
    size_t n, b;
    long long cl; /* -1: none */
    int chunked;
};

static void msleep(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

static long now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

__attribute__((format(printf, 2, 3))) static void problem(struct hostile *h, const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&h->mu);
    if (h->nproblems < MAX_PROBLEMS) {
        va_start(ap, fmt);
        vsnprintf(h->problems[h->nproblems], sizeof(h->problems[0]), fmt, ap);
        va_end(ap);
    }
    h->nproblems++;
    pthread_mutex_unlock(&h->mu);
}

static void excuse(struct hostile *h, const char *tag, long gap_us)
{
    pthread_mutex_lock(&h->mu);
    if (h->nexcused == h->capexcused) {
        size_t cap = h->capexcused ? h->capexcused * 2 : 64;
        void *p = realloc(h->excused, cap * sizeof(h->excused[0]));
        if (p) {
            h->excused = p;
            h->capexcused = cap;
        }
    }
    if (h->nexcused < h->capexcused) {
        snprintf(h->excused[h->nexcused].tag, sizeof(h->excused[0].tag), "%s", tag);
        h->excused[h->nexcused++].gap_us = gap_us;
    }
    pthread_mutex_unlock(&h->mu);
}

static void note(struct hostile *h, const char *tag, const char *text)
{
    pthread_mutex_lock(&h->mu);
    if (h->nnotes == h->capnotes) {
        size_t cap = h->capnotes ? h->capnotes * 2 : 64;
        void *p = realloc(h->notes, cap * sizeof(h->notes[0]));
        if (p) {
            h->notes = p;
            h->capnotes = cap;
        }
    }
    if (h->nnotes < h->capnotes) {
        snprintf(h->notes[h->nnotes].tag, sizeof(h->notes[0].tag), "%s", tag);
        snprintf(h->notes[h->nnotes++].text, sizeof(h->notes[0].text), "%s", text);
    }
    pthread_mutex_unlock(&h->mu);
}

int hostile_note(struct hostile *h, const char *tag, char *buf, size_t cap)
{
    int found = 0;

    pthread_mutex_lock(&h->mu);
    for (size_t i = h->nnotes; i-- > 0 && !found;)
        if (!strcmp(h->notes[i].tag, tag)) {
            snprintf(buf, cap, "%s", h->notes[i].text);
            found = 1;
        }
    pthread_mutex_unlock(&h->mu);
    return found;
}

int hostile_excused(struct hostile *h, const char *tag)
{
    int found = 0;

    pthread_mutex_lock(&h->mu);
    for (size_t i = 0; i < h->nexcused && !found; i++)
        found = !strcmp(h->excused[i].tag, tag);
    pthread_mutex_unlock(&h->mu);
    return found;
}

unsigned hostile_problems(struct hostile *h, char *buf, size_t cap)
{
    unsigned n;
    size_t off = 0;

    pthread_mutex_lock(&h->mu);
    n = h->nproblems;
    if (cap)
        buf[0] = '\0';
    for (unsigned i = 0; i < n && i < MAX_PROBLEMS && off + 1 < cap; i++) {
        int k = snprintf(buf + off, cap - off, "%s\n", h->problems[i]);
        if (k < 0)
            break;
        off += (size_t)k < cap - off ? (size_t)k : cap - off - 1;
    }
    pthread_mutex_unlock(&h->mu);
    return n;
}

size_t hostile_excused_list(struct hostile *h, char *buf, size_t cap)
{
    size_t n, off = 0;

    pthread_mutex_lock(&h->mu);
    n = h->nexcused;
    if (cap)
        buf[0] = '\0';
    for (size_t i = 0; i < n && off + 1 < cap; i++) {
        int k = snprintf(buf + off, cap - off, "%s%s (+%ld us)", i ? ", " : "", h->excused[i].tag,
                         h->excused[i].gap_us);
        if (k < 0)
            break;
        off += (size_t)k < cap - off ? (size_t)k : cap - off - 1;
    }
    pthread_mutex_unlock(&h->mu);
    return n;
}

void hostile_expect_header(struct hostile *h, const char *name, const char *value)
{
    pthread_mutex_lock(&h->mu);
    if (h->nexpect < MAX_EXPECT) {
        struct expect *e = &h->expect[h->nexpect++];
        snprintf(e->name, sizeof(e->name), "%s", name);
        snprintf(e->value, sizeof(e->value), "%s", value ? value : "");
        e->absent = !value;
    }
    pthread_mutex_unlock(&h->mu);
}

unsigned long hostile_requests(struct hostile *h)
{
    return atomic_load(&h->requests);
}

unsigned hostile_port(const struct hostile *h)
{
    return h->port;
}

/* Write all of s; -1 when the proxy went away. */
static int wr(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

#define STREAM_MIN (256 * 1024) /* larger ok bodies are written by wr_periods() */
#define OK_STREAMED(q) (!(q)->head_req && (q)->v != 1 && (q)->n > STREAM_MIN)

/* The body of n bytes for tag, written one BODY_PERIOD at a time (it repeats with that period). */
static int wr_periods(int fd, const char *tag, size_t n)
{
    char *per = malloc(BODY_PERIOD);
    int rc = 0;

    if (!per)
        return -1;
    adv_body(tag, BODY_PERIOD, per);
    for (size_t off = 0; off < n && rc == 0; off += BODY_PERIOD)
        rc = wr(fd, per, n - off < BODY_PERIOD ? n - off : BODY_PERIOD);
    free(per);
    return rc;
}

/* Write s in 1 to 3 pieces, sometimes a moment apart: the proxy sees odd splits. */
static int wr_split(struct hconn *hc, const char *s, size_t n)
{
    unsigned pieces = adv_rnd_in(&hc->rng, 1, 3);

    while (pieces > 1 && n > 1) {
        size_t k = 1 + adv_rnd(&hc->rng) % (n - 1);
        if (wr(hc->fd, s, k) < 0)
            return -1;
        if (adv_rnd(&hc->rng) % 2)
            msleep(1);
        s += k;
        n -= k;
        pieces--;
    }
    return wr(hc->fd, s, n);
}

/* More bytes into hc->buf; -1 on EOF, error or stop. */
static int fill(struct hconn *hc)
{
    ssize_t r;

    if (hc->len == hc->cap) {
        size_t cap = hc->cap * 2;
        char *p;
        if (cap > BODY_MAX + HEAD_MAX)
            return -1;
        p = realloc(hc->buf, cap);
        if (!p)
            return -1;
        hc->buf = p;
        hc->cap = cap;
    }
    do
        r = recv(hc->fd, hc->buf + hc->len, hc->cap - hc->len, 0);
    while (r < 0 && errno == EINTR);
    if (r <= 0 || atomic_load(&hc->h->stop))
        return -1;
    hc->len += (size_t)r;
    return 0;
}

static void consume(struct hconn *hc, size_t n)
{
    memmove(hc->buf, hc->buf + n, hc->len - n);
    hc->len -= n;
}

/* Index just past "\r\n" at or after from, reading more as needed; -1 on EOF. */
static long find_crlf(struct hconn *hc, size_t from, size_t limit)
{
    for (;;) {
        for (size_t i = from; i + 1 < hc->len; i++)
            if (hc->buf[i] == '\r' && hc->buf[i + 1] == '\n')
                return (long)(i + 2);
        if (hc->len - from > limit || fill(hc) < 0)
            return -1;
    }
}

static const char *hdr_value(const char *head, size_t hl, const char *name, size_t *vl)
{
    size_t nl = strlen(name);
    const char *p = memchr(head, '\n', hl);

    while (p && (size_t)(p + 1 - head) < hl) {
        const char *line = p + 1, *e = memchr(line, '\r', hl - (size_t)(line - head));
        if (!e)
            break;
        if ((size_t)(e - line) > nl && !strncasecmp(line, name, nl) && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (v < e && (*v == ' ' || *v == '\t'))
                v++;
            *vl = (size_t)(e - v);
            return v;
        }
        p = memchr(line, '\n', hl - (size_t)(line - head));
    }
    return NULL;
}

/* How many fields named name the head has; the first one's value in *v, *vl. */
static int hdr_count(const char *head, size_t hl, const char *name, const char **v, size_t *vl)
{
    size_t nl = strlen(name);
    const char *p = memchr(head, '\n', hl);
    int n = 0;

    while (p && (size_t)(p + 1 - head) < hl) {
        const char *line = p + 1, *e = memchr(line, '\r', hl - (size_t)(line - head));
        if (!e)
            break;
        if ((size_t)(e - line) > nl && !strncasecmp(line, name, nl) && line[nl] == ':') {
            if (!n++) {
                const char *x = line + nl + 1;
                while (x < e && (*x == ' ' || *x == '\t'))
                    x++;
                *v = x;
                *vl = (size_t)(e - x);
            }
        }
        p = memchr(line, '\n', hl - (size_t)(line - head));
    }
    return n;
}

/* The fields hostile_expect_header() asked for. */
static void check_expected(struct hconn *hc, const char *head, size_t hl, const char *tag)
{
    struct hostile *h = hc->h;
    struct expect ex[MAX_EXPECT];
    int nex;

    pthread_mutex_lock(&h->mu);
    nex = h->nexpect;
    memcpy(ex, h->expect, sizeof(ex));
    pthread_mutex_unlock(&h->mu);
    for (int i = 0; i < nex; i++) {
        const char *v = NULL;
        size_t vl = 0;
        int n = hdr_count(head, hl, ex[i].name, &v, &vl);

        if (ex[i].absent ? n == 0
                         : n == 1 && vl == strlen(ex[i].value) && !memcmp(v, ex[i].value, vl))
            continue;
        problem(h, "origin: request %s has %d %s field(s) (first: \"%.*s\"), expected %s", tag, n,
                ex[i].name, v ? (int)(vl < 60 ? vl : 60) : 0, v ? v : "",
                ex[i].absent ? "none" : ex[i].value);
    }
}

static size_t query_num(const char *q, const char *key)
{
    char k[8];
    const char *p;

    snprintf(k, sizeof(k), "%s=", key);
    for (p = q; p && *p; p = strchr(p, '&')) {
        if (*p == '&' || *p == '?')
            p++;
        if (!strncmp(p, k, strlen(k)))
            return (size_t)strtoull(p + strlen(k), NULL, 10);
    }
    return 0;
}

/* s[0..n) as one printable line, for messages. */
static const char *esc(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;

    for (size_t i = 0; i < n && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r' || c == '\n') {
            out[o++] = '\\';
            out[o++] = c == '\r' ? 'r' : 'n';
        } else if (c < 0x20 || c >= 0x7f) {
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
    return out;
}

/* Every tag in s must be tag: anything else is another request's bytes. */
static void check_tags(struct hconn *hc, const char *what, const char *s, size_t n, const char *tag)
{
    size_t pos = 0, tl;
    const char *t;

    while ((t = adv_tag_find(s, n, hc->h->seedstr, &pos, &tl))) {
        if (tl != strlen(tag) || memcmp(t, tag, tl)) {
            problem(hc->h, "origin: request %s carries foreign tag %.*s in its %s", tag, (int)tl, t,
                    what);
            return;
        }
    }
}

/* Read the request body into *body (decoded); -1 on EOF, -2 on broken framing. */
static int read_body(struct hconn *hc, struct hreq *q, char **body, size_t *blen)
{
    size_t cap = 4096, len = 0;
    char *b = malloc(cap);
    int rc = -1; /* -2: broken framing */

    if (!b)
        return -1;
    if (q->cl >= 0) {
        if ((unsigned long long)q->cl > BODY_MAX)
            goto fail;
        while (hc->len < (size_t)q->cl)
            if (fill(hc) < 0)
                goto fail;
        free(b);
        b = malloc((size_t)q->cl + 1);
        if (!b)
            return -1;
        memcpy(b, hc->buf, (size_t)q->cl);
        len = (size_t)q->cl;
        consume(hc, len);
    } else if (q->chunked) {
        for (;;) {
            long e = find_crlf(hc, 0, 1024);
            unsigned long long sz = 0;
            int digits = 0;

            if (e < 0)
                goto fail;
            for (long i = 0; i < e - 2 && hc->buf[i] != ';'; i++) {
                char c = hc->buf[i];
                int d = c >= '0' && c <= '9'   ? c - '0'
                        : c >= 'a' && c <= 'f' ? c - 'a' + 10
                        : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                               : -1;
                if (d < 0 || sz > BODY_MAX) {
                    rc = -2;
                    goto fail;
                }
                sz = sz * 16 + (unsigned)d;
                digits++;
            }
            if (!digits) {
                rc = -2;
                goto fail;
            }
            consume(hc, (size_t)e);
            if (sz == 0) {
                /* trailer section */
                for (;;) {
                    e = find_crlf(hc, 0, 8192);
                    if (e < 0)
                        goto fail;
                    consume(hc, (size_t)e);
                    if (e == 2)
                        break;
                }
                break;
            }
            if (len + sz > BODY_MAX)
                goto fail;
            while (hc->len < sz + 2)
                if (fill(hc) < 0)
                    goto fail;
            if (hc->buf[sz] != '\r' || hc->buf[sz + 1] != '\n') {
                rc = -2;
                goto fail;
            }
            while (len + sz > cap) {
                char *p = realloc(b, cap *= 2);
                if (!p)
                    goto fail;
                b = p;
            }
            memcpy(b + len, hc->buf, sz);
            len += sz;
            consume(hc, sz + 2);
        }
    }
    *body = b;
    *blen = len;
    return 0;
fail:
    free(b);
    return rc;
}

/* One request from the proxy; -1 when the connection is over. */
static int read_request(struct hconn *hc, struct hreq *q)
{
    char head[HEAD_MAX + 1], target[512];
    const char *v, *t, *mode_end;
    size_t hl, vl;
    long e = -1;

    memset(q, 0, sizeof(*q));
    q->cl = -1;
    for (;;) {
        if (hc->len >= 4) {
            const char *m = memmem(hc->buf, hc->len, "\r\n\r\n", 4);
            if (m) {
                e = (long)(m - hc->buf) + 4;
                break;
            }
        }
        if (hc->len > HEAD_MAX || fill(hc) < 0)
            return -1;
    }
    hl = (size_t)e;
    memcpy(head, hc->buf, hl);
    head[hl] = '\0';
    consume(hc, hl);
    atomic_fetch_add(&hc->h->requests, 1);
    if (sscanf(head, "%7s %511s HTTP/1.1\r\n", q->method, target) != 2) {
        char ebuf[256];
        problem(hc->h, "origin: unparsable request after %s: %s", hc->prev[0] ? hc->prev : "none",
                esc(head, hl, ebuf, sizeof(ebuf)));
        return -1;
    }
    q->head_req = !strcmp(q->method, "HEAD");
    /* /<mode>/<tag>?n=..&v=..&b=.. */
    t = target[0] == '/' ? strchr(target + 1, '/') : NULL;
    if (!t) {
        char ebuf[256];
        problem(hc->h, "origin: unexpected target after %s: %s", hc->prev[0] ? hc->prev : "none",
                esc(head, hl, ebuf, sizeof(ebuf)));
        return -1;
    }
    mode_end = t;
    q->mode = AM_COUNT;
    for (int m = 0; m < AM_COUNT; m++)
        if ((size_t)(mode_end - target - 1) == strlen(mode_names[m]) &&
            !strncmp(target + 1, mode_names[m], strlen(mode_names[m])))
            q->mode = (enum adv_mode)m;
    {
        const char *qs = strchr(t + 1, '?');
        size_t tl = qs ? (size_t)(qs - t - 1) : strlen(t + 1);
        if (tl >= sizeof(q->tag))
            tl = sizeof(q->tag) - 1;
        memcpy(q->tag, t + 1, tl);
        q->tag[tl] = '\0';
        if (qs) {
            q->n = query_num(qs, "n");
            q->v = (int)query_num(qs, "v");
            q->b = query_num(qs, "b");
        }
    }
    if (!strncmp(target, "/smuggled/", 10)) {
        problem(hc->h, "origin: received a smuggled request: %s", target);
        return -1;
    }
    if (q->mode == AM_COUNT) {
        problem(hc->h, "origin: unknown mode in %s", target);
        return -1;
    }
    {
        /* the journal: where each request arrived, for the report */
        char text[256];
        int n =
            snprintf(text, sizeof(text), "origin: got it as request %d on upstream connection %u",
                     ++hc->nreq, hc->id);
        if (hc->prev[0] && n > 0 && (size_t)n < sizeof(text))
            n += snprintf(text + n, sizeof(text) - (size_t)n, ", after %s", hc->prev);
        if (hc->stray[0] && n > 0 && (size_t)n < sizeof(text))
            (void)snprintf(text + n, sizeof(text) - (size_t)n,
                           "; stray bytes went out on it %s, %ld us before", hc->stray,
                           now_us() - hc->stray_us);
        note(hc->h, q->tag, text);
        snprintf(hc->prev, sizeof(hc->prev), "%s (%s/v%d)", q->tag, mode_names[q->mode], q->v);
    }
    if (hc->excuse_next) {
        excuse(hc->h, q->tag, hc->excuse_gap_us);
        hc->excuse_next = 0;
    }
    /* the tag of the path, X-Tag and the cookie agree, and nothing else is in the head */
    v = hdr_value(head, hl, "X-Tag", &vl);
    if (!v || vl != strlen(q->tag) || memcmp(v, q->tag, vl))
        problem(hc->h, "origin: request %s has X-Tag %.*s", q->tag, v ? (int)vl : 6,
                v ? v : "(none)");
    v = hdr_value(head, hl, "Cookie", &vl);
    if (!v || vl != 7 + strlen(q->tag) || memcmp(v, "secret=", 7) || memcmp(v + 7, q->tag, vl - 7))
        problem(hc->h, "origin: request %s has Cookie %.*s", q->tag, v ? (int)vl : 6,
                v ? v : "(none)");
    check_tags(hc, "head", head, hl, q->tag);
    check_expected(hc, head, hl, q->tag);
    if ((v = hdr_value(head, hl, "Content-Length", &vl)))
        q->cl = strtoll(v, NULL, 10);
    if ((v = hdr_value(head, hl, "Transfer-Encoding", &vl)))
        q->chunked = vl >= 7 && !strncasecmp(v + vl - 7, "chunked", 7);
    if (q->mode == AM_EARLY)
        return 0; /* the body is never read */
    if (q->cl >= 0 || q->chunked) {
        char *body = NULL;
        size_t blen = 0;

        int r = read_body(hc, q, &body, &blen);

        if (r == -2)
            problem(hc->h, "origin: request %s: body framing broken", q->tag);
        if (r < 0)
            return -1; /* -1: cut short, as when a client goes away mid-body */
        if (blen != q->b) {
            problem(hc->h, "origin: request %s: body of %zu bytes, expected %zu", q->tag, blen,
                    q->b);
        } else {
            char *want = malloc(blen + 1);
            if (want) {
                adv_body(q->tag, blen, want);
                if (memcmp(want, body, blen)) {
                    check_tags(hc, "body", body, blen, q->tag);
                    problem(hc->h, "origin: request %s: body differs from what was sent", q->tag);
                }
                free(want);
            }
        }
        free(body);
    } else if (q->b) {
        problem(hc->h, "origin: request %s: no body framing, expected %zu bytes", q->tag, q->b);
    }
    return 0;
}

/* Body bytes of tag (adv_body) at the end of o. */
static void ob_body(struct adv_buf *o, const char *tag, size_t n)
{
    adv_body(tag, n, adv_buf_room(o, n));
    o->len += n;
}

/* The body of n bytes as chunks; zeros: leading zeros on the sizes; ext: extensions. */
static void ob_chunks(struct hconn *hc, struct adv_buf *o, const char *tag, size_t n, int zeros,
                      int ext)
{
    char *body = malloc(n + 1);
    size_t off = 0;

    if (!body)
        abort();
    adv_body(tag, n, body);
    while (off < n) {
        size_t k = adv_rnd_in(&hc->rng, 1, adv_rnd(&hc->rng) % 4 ? 4096 : 40000);
        if (k > n - off)
            k = n - off;
        if (zeros)
            adv_buf_fmt(o, "%0*zx", (int)adv_rnd_in(&hc->rng, 16, 24), k);
        else
            adv_buf_fmt(o, "%zx", k);
        if (ext)
            adv_buf_fmt(o, ";ext=%u", adv_rnd_in(&hc->rng, 0, 99));
        adv_buf_add(o, "\r\n", 2);
        adv_buf_add(o, body + off, k);
        adv_buf_add(o, "\r\n", 2);
        off += k;
    }
    free(body);
    if (zeros)
        adv_buf_fmt(o, "%0*d\r\n", (int)adv_rnd_in(&hc->rng, 16, 24), 0);
    else
        adv_buf_add(o, "0\r\n", 3);
    if (ext)
        adv_buf_fmt(o, "X-Trailer: [%s]\r\n", tag);
    adv_buf_add(o, "\r\n", 2);
}

/* Wait up to ms for the proxy to send something (or close): 1 if it did. */
static int readable_within(int fd, int ms)
{
    struct pollfd p = {fd, POLLIN, 0};

    return poll(&p, 1, ms) > 0;
}

/* Wait until the proxy closes the connection (bounded); what it sends is read and dropped. */
static void await_close(struct hconn *hc)
{
    long waited = 0;

    while (waited < IO_TIMEOUT_S * 1000 && !atomic_load(&hc->h->stop)) {
        char tmp[4096];
        ssize_t r;

        if (!readable_within(hc->fd, 100)) {
            waited += 100;
            continue;
        }
        r = recv(hc->fd, tmp, sizeof(tmp), 0);
        if (r <= 0)
            return;
    }
}

/* Stray bytes went out after q's answer (late_us after it; 0: in the same write). */
static void stray_sent(struct hconn *hc, const struct hreq *q, long late_us)
{
    snprintf(hc->stray, sizeof(hc->stray), "after %s (%s/v%d), %ld us after its answer", q->tag,
             mode_names[q->mode], q->v, late_us);
    hc->stray_us = now_us();
}

/*
 * n bytes of an error body: POISONED, and other requests' tags and secrets
 * (made with the seed of tag), so that any byte of it that reaches a client
 * shows (tests/adv/adv.c, scan()).
 */
static void ob_poison(struct adv_buf *o, const char *tag, size_t n)
{
    const char *seed = strrchr(tag, '-');

    for (unsigned i = 0; n; i++) {
        char unit[96];
        int ul = snprintf(unit, sizeof(unit), "%s secret=c9999-r%u%s ", ADV_POISON, i,
                          seed ? seed : "-0");
        size_t k = (size_t)ul < n ? (size_t)ul : n;

        adv_buf_add(o, unit, k);
        n -= k;
    }
}

/*
 * An error status the rules give a page for, with a body that must never
 * reach the client (the page replaces it), framed by the variant:
 * v0 500 Content-Length, v1 503 chunked, v2 404 until the close, v3 500
 * cut a third of the way (then the close), v4 500 with a stray response in
 * the same write, v5 403 written slowly, in pieces. A HEAD request gets the
 * head alone (and Connection: close when the connection ends after it).
 * Returns 1 when the connection is to close, -1 when the proxy went away.
 */
static int respond_error(struct hconn *hc, const struct hreq *q, struct adv_buf *o)
{
    static const int status[6] = {500, 503, 404, 500, 500, 403};
    static const char *const reason[6] = {
        "Internal Server Error", "Service Unavailable",   "Not Found",
        "Internal Server Error", "Internal Server Error", "Forbidden"};
    int v = q->v >= 0 && q->v < 6 ? q->v : 0, rc = 0;
    size_t n = q->head_req ? 0 : q->n;

    adv_buf_fmt(o, "HTTP/1.1 %d %s\r\nX-Tag: %s\r\nX-Powered-By: hostile\r\n", status[v], reason[v],
                q->tag);
    adv_buf_fmt(o, "Content-Type: text/html\r\n%s",
                q->head_req && (v == 2 || v == 3) ? "Connection: close\r\n" : "");
    switch (v) {
    case 1:
        adv_buf_fmt(o, "Transfer-Encoding: chunked\r\n\r\n");
        if (!q->head_req) {
            struct adv_buf body = {0};
            ob_poison(&body, q->tag, q->n);
            for (size_t off = 0; off < body.len;) {
                size_t k = adv_rnd_in(&hc->rng, 1, 9000);
                if (k > body.len - off)
                    k = body.len - off;
                adv_buf_fmt(o, "%zx\r\n", k);
                adv_buf_add(o, body.p + off, k);
                adv_buf_add(o, "\r\n", 2);
                off += k;
            }
            free(body.p);
            adv_buf_add(o, "0\r\n\r\n", 5);
        }
        break;
    case 2:
        adv_buf_add(o, "\r\n", 2);
        ob_poison(o, q->tag, n);
        break;
    case 3:
        adv_buf_fmt(o, "Content-Length: %zu\r\n\r\n", q->n);
        ob_poison(o, q->tag, n / 3);
        break;
    default:
        adv_buf_fmt(o, "Content-Length: %zu\r\n\r\n", q->n);
        ob_poison(o, q->tag, n);
        if (v == 4)
            adv_buf_add(o, ADV_POISON_RESPONSE, strlen(ADV_POISON_RESPONSE));
        break;
    }
    if (v == 5) {
        /* the head first, the body in pieces: the page goes out while it is read and dropped */
        size_t at = 0;
        for (int i = 0; i < 3 && rc == 0; i++) {
            size_t end = i == 2 ? o->len : at + (o->len - at) / 2;
            rc = wr(hc->fd, o->p + at, end - at);
            at = end;
            if (i < 2)
                msleep((int)adv_rnd_in(&hc->rng, 5, 30));
        }
    } else if (v == 4) {
        /*
         * One write: the stray response is in the socket with the answer, so
         * the proxy sees it before it can reuse the connection. Split, the
         * stray part could come after the next request went out, which no
         * proxy can tell from that request's answer (the excused race).
         */
        rc = wr(hc->fd, o->p, o->len);
    } else {
        rc = wr_split(hc, o->p, o->len);
    }
    if (rc == 0 && v == 4)
        stray_sent(hc, q, 0);
    if (rc < 0)
        return -1;
    return v == 2 || v == 3;
}

/* Answer q as its mode says. Returns 1 when the connection must be closed now. */
static int respond(struct hconn *hc, struct hreq *q)
{
    struct adv_buf o = {0};
    int close_after = 0, rc = 0;
    const char *tag = q->tag;
    long t0;

    switch (q->mode) {
    case AM_OK:
        /* X-Powered-By and X-Edge: for edge rules to remove and replace */
        adv_buf_fmt(&o,
                    "HTTP/1.1 200 OK\r\nX-Tag: %s\r\nContent-Type: text/plain\r\n"
                    "X-Powered-By: hostile\r\nX-Edge: origin\r\nContent-Length: %zu\r\n\r\n",
                    tag, q->n);
        if (!q->head_req && !OK_STREAMED(q))
            ob_body(&o, tag, q->n);
        if (OK_STREAMED(q)) {
            /*
             * A large body (the leak family's stalled readers ask for 8 MB)
             * is written period by period instead of made whole in memory:
             * 48 of them made whole took the test process's CPU for a
             * second, and the other clients' first requests timed out.
             */
            rc = wr_split(hc, o.p, o.len);
            if (rc == 0)
                rc = wr_periods(hc->fd, tag, q->n);
        } else if (q->v == 1) {
            /* bytes beyond the Content-Length, in the very same write */
            adv_buf_add(&o, ADV_POISON_RESPONSE, strlen(ADV_POISON_RESPONSE));
            rc = wr(hc->fd, o.p, o.len);
            stray_sent(hc, q, 0);
        } else {
            rc = wr_split(hc, o.p, o.len);
        }
        if (rc == 0 && q->v == 2) {
            /*
             * Bytes beyond the Content-Length in a later write. A proxy that
             * reused the connection in the meantime did nothing wrong: then
             * there is nothing to send. Otherwise the pooled connection must
             * be dropped when they arrive. A request already on its way
             * crosses them and gets a 502 for them (they are no response),
             * which is excused; the connection ends there.
             */
            long t_answer = now_us();

            if (!readable_within(hc->fd, (int)adv_rnd_in(&hc->rng, 20, 60))) {
                t0 = now_us();
                rc = wr(hc->fd, ADV_JUNK, strlen(ADV_JUNK));
                stray_sent(hc, q, t0 - t_answer);
                hc->excuse_next = rc == 0 && readable_within(hc->fd, EXCUSE_MS);
                hc->excuse_gap_us = now_us() - t0;
            }
        }
        break;
    case AM_CHUNKED:
        adv_buf_fmt(&o,
                    "HTTP/1.1 200 OK\r\nX-Tag: %s\r\nContent-Type: text/plain\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n",
                    tag);
        ob_chunks(hc, &o, tag, q->n, q->v == 1, q->v == 2);
        rc = wr_split(hc, o.p, o.len);
        break;
    case AM_HEAD204:
        switch (q->v) {
        case 0:
            adv_buf_fmt(&o, "HTTP/1.1 204 No Content\r\nX-Tag: %s\r\n\r\n", tag);
            break;
        case 1:
            adv_buf_fmt(&o, "HTTP/1.1 204 No Content\r\nX-Tag: %s\r\nContent-Length: 8\r\n\r\n%s",
                        tag, ADV_POISON);
            break;
        case 2: /* a HEAD request */
            adv_buf_fmt(&o, "HTTP/1.1 200 OK\r\nX-Tag: %s\r\nContent-Length: %zu\r\n\r\n", tag,
                        q->n);
            break;
        case 3:
            adv_buf_fmt(&o, "HTTP/1.1 304 Not Modified\r\nX-Tag: %s\r\nETag: \"x\"\r\n\r\n", tag);
            break;
        default:
            adv_buf_fmt(&o, "HTTP/1.1 204 No Content\r\nX-Tag: %s\r\n\r\n%s", tag,
                        ADV_POISON_RESPONSE);
            break;
        }
        t0 = now_us(); /* before the proxy can have the answer: never less than its own wait */
        rc = wr(hc->fd, o.p, o.len);
        if (rc == 0 && (q->v == 1 || q->v == 4))
            stray_sent(hc, q, 0);
        if (rc == 0 && q->v != 1 && q->v != 4) {
            /*
             * Stray bytes 20-60 ms later, whether or not the proxy sent
             * another request meanwhile: it keeps such a connection out of
             * its pool for 250 ms (docs/http.md). When this thread wakes too
             * late for that (a loaded machine), the bytes are junk instead,
             * under the rules of ok/v2.
             */
            msleep((int)adv_rnd_in(&hc->rng, 20, 60));
            if (now_us() - t0 < LATE_STRAY_US) {
                rc = wr(hc->fd, ADV_POISON_RESPONSE, strlen(ADV_POISON_RESPONSE));
                stray_sent(hc, q, now_us() - t0);
            } else if (!readable_within(hc->fd, 0)) {
                long t1 = now_us();
                rc = wr(hc->fd, ADV_JUNK, strlen(ADV_JUNK));
                stray_sent(hc, q, t1 - t0);
                hc->excuse_next = rc == 0 && readable_within(hc->fd, EXCUSE_MS);
                hc->excuse_gap_us = now_us() - t1;
            }
        }
        break;
    case AM_EARLY:
        adv_buf_fmt(&o, "HTTP/1.1 401 Unauthorized\r\nX-Tag: %s\r\nContent-Length: %zu\r\n%s\r\n",
                    tag, q->n, q->v == 1 ? "Connection: keep-alive\r\n" : "");
        ob_body(&o, tag, q->n);
        (void)wr(hc->fd, o.p, o.len);
        msleep((int)adv_rnd_in(&hc->rng, 50, 150));
        close_after = 1;
        break;
    case AM_MIDCLOSE: {
        size_t k = q->n / 3;
        if (q->v == 2) {
            adv_buf_fmt(&o, "HTTP/1.1 200 OK\r\nX-Tag: %s\r\nTransfer-Encoding: chunked\r\n\r\n",
                        tag);
            adv_buf_fmt(&o, "%zx\r\n", k);
            ob_body(&o, tag, k);
            adv_buf_fmt(&o, "\r\n%zx\r\n", q->n - k);
            (void)wr(hc->fd, o.p, o.len);
        } else {
            adv_buf_fmt(&o, "HTTP/1.1 200 OK\r\nX-Tag: %s\r\nContent-Length: %zu\r\n\r\n", tag,
                        q->n);
            if (q->v == 1) {
                (void)wr(hc->fd, o.p, o.len);
                msleep((int)adv_rnd_in(&hc->rng, 5, 20));
                o.len = 0;
            }
            ob_body(&o, tag, k);
            (void)wr(hc->fd, o.p, o.len);
        }
        close_after = 1;
        break;
    }
    case AM_BIGHEAD: {
        char *fill_line = malloc(5001);
        adv_buf_fmt(&o, "HTTP/1.1 200 OK\r\nX-Tag: %s\r\nContent-Length: %d\r\n", tag,
                    ADV_BIGHEAD_BODY);
        if (!fill_line)
            abort();
        for (int i = 0; i < 6; i++) {
            adv_body(tag, 5000, fill_line);
            adv_buf_fmt(&o, "X-Big-%d: ", i);
            adv_buf_add(&o, fill_line, 5000);
            adv_buf_add(&o, "\r\n", 2);
        }
        free(fill_line);
        adv_buf_add(&o, "\r\n", 2);
        if (q->v == 1) {
            (void)wr(hc->fd, o.p, o.len);
            msleep((int)adv_rnd_in(&hc->rng, 5, 15));
            o.len = 0;
        }
        ob_body(&o, tag, 10);
        (void)wr(hc->fd, o.p, o.len);
        close_after = 1;
        break;
    }
    case AM_CONNLEN:
        /* a HEAD request gets no body: the proxy's 502 for it must have none either */
        switch (q->v) {
        case 0:
            adv_buf_fmt(&o,
                        "HTTP/1.1 200 OK\r\nX-Tag: %s\r\nConnection: Content-Length\r\n"
                        "Content-Length: %zu\r\n\r\n",
                        tag, q->n);
            if (!q->head_req)
                ob_body(&o, tag, q->n);
            break;
        case 1:
            adv_buf_fmt(&o,
                        "HTTP/1.1 200 OK\r\nX-Tag: %s\r\nConnection: transfer-encoding\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n",
                        tag);
            if (!q->head_req)
                ob_chunks(hc, &o, tag, q->n, 0, 0);
            break;
        case 2:
            adv_buf_fmt(&o,
                        "HTTP/1.1 200 OK\r\nX-Tag: %s\r\nConnection: keep-alive, Content-Length\r\n"
                        "Content-Length: %zu\r\n\r\n",
                        tag, q->n);
            if (!q->head_req)
                ob_body(&o, tag, q->n);
            break;
        default:
            adv_buf_fmt(&o,
                        "HTTP/1.1 200 OK\r\nX-Tag: %s\r\nConnection: keep-alive, Host\r\n"
                        "Host: origin\r\nContent-Length: %zu\r\n\r\n",
                        tag, q->n);
            if (!q->head_req)
                ob_body(&o, tag, q->n);
            break;
        }
        rc = wr(hc->fd, o.p, o.len);
        break;
    case AM_BADCHUNK:
        adv_buf_fmt(&o, "HTTP/1.1 200 OK\r\nX-Tag: %s\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n",
                    tag);
        ob_body(&o, tag, 5);
        adv_buf_add(&o, "\r\n", 2);
        if (q->v == 1) {
            (void)wr(hc->fd, o.p, o.len);
            msleep((int)adv_rnd_in(&hc->rng, 20, 40));
            o.len = 0;
        }
        adv_buf_add(&o, "zz\r\n", 4);
        (void)wr(hc->fd, o.p, o.len);
        /* left open: only the proxy's own reading of the framing can end this */
        await_close(hc);
        close_after = 1;
        break;
    case AM_STALL:
        await_close(hc);
        close_after = 1;
        break;
    case AM_INTERIM:
        if (q->v == 0) {
            adv_buf_add(&o, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        } else {
            if (q->v == 2) {
                (void)wr(hc->fd, "HTTP/1.1 100 Continue\r\n\r\n", 25);
                msleep(5);
            }
            adv_buf_fmt(
                &o, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\nX-Tag: %s\r\n\r\n",
                tag);
            if (q->v == 2) {
                (void)wr(hc->fd, o.p, o.len);
                msleep(5);
                o.len = 0;
            }
        }
        if (q->v == 1) {
            adv_buf_fmt(&o, "HTTP/1.1 200 OK\r\nX-Tag: %s\r\nTransfer-Encoding: chunked\r\n\r\n",
                        tag);
            ob_chunks(hc, &o, tag, q->n, 0, 0);
        } else {
            adv_buf_fmt(&o, "HTTP/1.1 200 OK\r\nX-Tag: %s\r\nContent-Length: %zu\r\n\r\n", tag,
                        q->n);
            ob_body(&o, tag, q->n);
        }
        rc = wr_split(hc, o.p, o.len);
        break;
    case AM_ERROR:
        close_after = respond_error(hc, q, &o);
        rc = close_after < 0 ? -1 : 0;
        break;
    default:
        close_after = 1;
        break;
    }
    free(o.p);
    return close_after || rc < 0;
}

static void *conn_main(void *arg)
{
    struct hconn *hc = arg;
    struct hostile *h = hc->h;
    struct hreq q;

    while (!atomic_load(&h->stop) && read_request(hc, &q) == 0) {
        /* the origin's choices for a request depend on the seed and the tag only */
        hc->rng = (h->seed ^ ((uint64_t)adv_tag_hash(q.tag) << 17)) | 1;
        if (respond(hc, &q))
            break;
    }
    pthread_mutex_lock(&h->mu);
    h->fds[hc->slot] = -1;
    pthread_mutex_unlock(&h->mu);
    close(hc->fd);
    free(hc->buf);
    free(hc);
    atomic_fetch_sub(&h->active, 1);
    return NULL;
}

static void *accept_main(void *arg)
{
    struct hostile *h = arg;

    while (!atomic_load(&h->stop)) {
        struct timeval tv = {IO_TIMEOUT_S, 0};
        struct hconn *hc;
        pthread_attr_t attr;
        pthread_t t;
        int fd = accept4(h->lfd, NULL, NULL, SOCK_CLOEXEC), slot = -1, one = 1, sndbuf = 256 * 1024;

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (atomic_load(&h->stop))
                break;
            msleep(5);
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        /*
         * A fixed send buffer: where tcp_wmem lets it grow to megabytes, the
         * leak family's 48 stalled 8 MB responses were copied into the
         * kernel at once, and that copying, in this process, took the CPUs
         * the clients and the proxy share.
         */
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
        pthread_mutex_lock(&h->mu);
        for (int i = 0; i < MAX_CONNS && slot < 0; i++)
            if (h->fds[i] < 0)
                slot = i;
        if (slot >= 0)
            h->fds[slot] = fd;
        pthread_mutex_unlock(&h->mu);
        hc = slot >= 0 ? calloc(1, sizeof(*hc)) : NULL;
        if (hc)
            hc->buf = malloc(hc->cap = 65536);
        if (!hc || !hc->buf) {
            problem(h, "origin: out of connection slots");
            if (slot >= 0) {
                pthread_mutex_lock(&h->mu);
                h->fds[slot] = -1;
                pthread_mutex_unlock(&h->mu);
            }
            if (hc)
                free(hc->buf);
            free(hc);
            close(fd);
            continue;
        }
        hc->h = h;
        hc->fd = fd;
        hc->slot = slot;
        hc->id = atomic_fetch_add(&h->conns, 1) + 1;
        atomic_fetch_add(&h->active, 1);
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 1024 * 1024);
        if (pthread_create(&t, &attr, conn_main, hc) != 0) {
            pthread_mutex_lock(&h->mu);
            h->fds[slot] = -1;
            pthread_mutex_unlock(&h->mu);
            atomic_fetch_sub(&h->active, 1);
            close(fd);
            free(hc->buf);
            free(hc);
            problem(h, "origin: cannot start a connection thread");
        }
        pthread_attr_destroy(&attr);
    }
    return NULL;
}

struct hostile *hostile_start(uint64_t seed)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    struct hostile *h = calloc(1, sizeof(*h));

    if (!h)
        return NULL;
    h->seed = seed;
    snprintf(h->seedstr, sizeof(h->seedstr), "%llu", (unsigned long long)seed);
    pthread_mutex_init(&h->mu, NULL);
    for (int i = 0; i < MAX_CONNS; i++)
        h->fds[i] = -1;
    h->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (h->lfd < 0 || bind(h->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(h->lfd, 1024) != 0 || getsockname(h->lfd, (struct sockaddr *)&sa, &sl) != 0)
        goto fail;
    h->port = ntohs(sa.sin_port);
    if (pthread_create(&h->acceptor, NULL, accept_main, h) != 0)
        goto fail;
    return h;
fail:
    if (h->lfd >= 0)
        close(h->lfd);
    free(h);
    return NULL;
}

void hostile_stop(struct hostile *h)
{
    if (!h)
        return;
    atomic_store(&h->stop, 1);
    (void)shutdown(h->lfd, SHUT_RDWR);
    pthread_join(h->acceptor, NULL);
    close(h->lfd);
    for (int i = 0; i < 500 && atomic_load(&h->active) > 0; i++) {
        pthread_mutex_lock(&h->mu);
        for (int k = 0; k < MAX_CONNS; k++)
            if (h->fds[k] >= 0)
                (void)shutdown(h->fds[k], SHUT_RDWR);
        pthread_mutex_unlock(&h->mu);
        msleep(10);
    }
    if (atomic_load(&h->active) > 0)
        return; /* a thread is stuck: leak rather than free what it uses */
    pthread_mutex_destroy(&h->mu);
    free(h->excused);
    free(h->notes);
    free(h);
}
