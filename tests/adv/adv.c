/*
 * The adversarial layer: the real ringproxy between a hostile origin
 * (tests/adv/hostile.c) and many concurrent hostile clients, for a bounded
 * time, with four invariants checked on every run:
 *
 *  1. a client receives only bytes of its own requests, in order: no other
 *     request's tag or `secret=` cookie, no POISONED stray bytes, ever;
 *  2. every request gets, within its mode's bound, its expected answer or
 *     one of the failures its mode allows (502, 504, its own partial
 *     response then EOF); nothing hangs;
 *  3. the access log has at most one line per request, exactly one with
 *     the client's status for every complete response;
 *  4. afterwards the proxy holds no more descriptors than after start-up,
 *     still answers, and exits 0 on SIGTERM (no sanitizer report).
 *
 * One Test per family of scenarios (framing, poison, leak, timeouts), a
 * mixed one, and one with edge rules on (rules: header edits, a rewrite,
 * rule answers pipelined between proxied requests, error pages in place of
 * the origin's POISONED error bodies; its config folder is
 * tests/adv/rules/), each with its own proxy and origin. Clients pipeline 1-4
 * requests, read slowly through small receive buffers, half-close, close
 * abruptly, send bodies (length and chunked); the origin's misbehaviour is
 * chosen by the request path (hostile.h).
 *
 * Random choices come from one seed: ADV_SEED=N reproduces a run's
 * requests (timing aside). The seed is printed as `adv: seed=N`, on stderr
 * and in $ADV_REPORT_DIR/adv-<family>.txt (under meson, the test's build
 * folder: Criterion hides a test's stderr under TAP), with the failures (a
 * few per invariant and mode; all with ADV_VERBOSE=1), the origin's account
 * of each failed request, and the tail of the proxy's stderr.
 *
 *   meson test -C build adv -v
 *   ADV_SEED=N ADV_VERBOSE=1 meson test -C build adv -v
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "tests/adv/common.h"
#include "tests/adv/hostile.h"
#include "tests/e2e/harness.h"

#define MAX_PIPE 4
#define MAX_REQ_PER_CLIENT 4000
#define SLACK_MS 3000        /* on top of the proxy's own timeouts */
#define BADCHUNK_MAX_MS 1200 /* a broken chunk is answered at once, not at a timeout */
#define HANG_MS 25000        /* no request may take longer than this in total */

/*
 * What the rules family also asks for: answers the edge rules make
 * themselves (tests/adv/rules/proxy.json), which the origin never sees.
 * They follow the origin's modes (enum adv_mode) in the same tables.
 */
enum rule_mode {
    RM_RESPOND = AM_COUNT, /* /adv-rule/<tag>: respond 200 with pages/rule.txt */
    RM_DENY,               /* /adv-deny/<tag>: deny (403, with its error page) */
    RM_GONE,               /* /adv-gone/<tag>: deny 410, no page: the plain text answer */
    RM_REDIRECT,           /* /adv-redir/<tag>: redirect 308 to https://{host}{uri} */
    RM_MAPHIT,             /* /adv-map/<k>?t=<tag>: a redirect_map entry (301) */
    RM_MAPMISS,            /* /adv-map/miss/<tag>: not in the map: deny 404 (its page) */
    /* must stay last */
    NMODES
};

static const char *mname(int m)
{
    static const char *const rule_names[NMODES - AM_COUNT] = {"respond",  "deny",    "gone",
                                                              "redirect", "map-hit", "map-miss"};

    if (m < AM_COUNT)
        return adv_mode_name((enum adv_mode)m);
    return m < NMODES ? rule_names[m - AM_COUNT] : "?";
}

/* ---- a family of scenarios ---------------------------------------------- */

struct fam {
    const char *name;
    const char *json;
    const char *workers;
    int clients, load_ms;
    int resp_ms, idle_ms; /* as in json */
    unsigned weight[NMODES];
    int slow_pct, pipe_max, half_pct, abrupt_pct, post_pct;
    int bigpad_pct; /* requests with a head of many KiB */
    int stall_pct;  /* sessions that pipeline a socket-filling body and a big head, then stall */
    /*
     * Edge rules: the proxy's config folder is $<rules_dir> (proxy.json
     * with rules and error_pages, and their files) instead of json, and
     * every answer is judged as those rules make it (judge_rules()).
     */
    const char *rules_dir;
    int rw_pct;         /* proxied requests sent under /adv-rw/, which a rewrite strips */
    int sink_break_pct; /* sessions of sink_break_session() */
};

#define CFG_A                                                                                      \
    "{\"upstream\": {\"response_timeout_ms\": 1500, \"connect_timeout_ms\": 1000,"                 \
    " \"pool_idle_timeout_ms\": 500},"                                                             \
    " \"client\": {\"idle_timeout_ms\": 3000, \"header_timeout_ms\": 3000},"                       \
    " \"shutdown_grace_ms\": 1000}"
/* the client's idle timeout below the upstream's response timeout: waiting is not idling */
#define CFG_B                                                                                      \
    "{\"upstream\": {\"response_timeout_ms\": 2000, \"connect_timeout_ms\": 1000,"                 \
    " \"pool_idle_timeout_ms\": 500},"                                                             \
    " \"client\": {\"idle_timeout_ms\": 1000, \"header_timeout_ms\": 3000},"                       \
    " \"shutdown_grace_ms\": 1000}"

static const struct fam fam_framing = {
    .name = "framing",
    .json = CFG_A,
    .workers = "1",
    .clients = 24,
    .load_ms = 6000,
    .resp_ms = 1500,
    .idle_ms = 3000,
    .weight = {[AM_OK] = 30,
               [AM_CHUNKED] = 25,
               [AM_INTERIM] = 15,
               [AM_CONNLEN] = 10,
               [AM_BADCHUNK] = 10,
               [AM_MIDCLOSE] = 10},
    .slow_pct = 25,
    .pipe_max = 4,
    .half_pct = 15,
    .abrupt_pct = 10,
    .post_pct = 30,
    .bigpad_pct = 15,
    .stall_pct = 0,
};

static const struct fam fam_poison = {
    .name = "poison",
    .json = CFG_A,
    .workers = "2",
    .clients = 32,
    .load_ms = 6000,
    .resp_ms = 1500,
    .idle_ms = 3000,
    .weight = {[AM_HEAD204] = 30,
               [AM_OK] = 25,
               [AM_BIGHEAD] = 15,
               [AM_MIDCLOSE] = 10,
               [AM_CHUNKED] = 10,
               [AM_EARLY] = 5,
               [AM_STALL] = 5},
    .slow_pct = 50,
    .pipe_max = 4,
    .half_pct = 10,
    .abrupt_pct = 10,
    .post_pct = 30,
    .bigpad_pct = 20,
    .stall_pct = 0,
};

/* queued response heads outliving their block, with slow readers and big request heads about */
static const struct fam fam_leak = {
    .name = "leak",
    .json = CFG_A,
    .workers = "1",
    .clients = 32,
    .load_ms = 5000,
    .resp_ms = 1500,
    .idle_ms = 3000,
    .weight = {[AM_BIGHEAD] = 40, [AM_MIDCLOSE] = 20, [AM_OK] = 25, [AM_CHUNKED] = 15},
    .slow_pct = 70,
    .pipe_max = 3,
    .half_pct = 10,
    .abrupt_pct = 10,
    .post_pct = 40,
    .bigpad_pct = 50,
    .stall_pct = 12,
};

static const struct fam fam_timeouts = {
    .name = "timeouts",
    .json = CFG_B,
    .workers = "1",
    .clients = 24,
    .load_ms = 6000,
    .resp_ms = 2000,
    .idle_ms = 1000,
    .weight =
        {[AM_STALL] = 20, [AM_EARLY] = 20, [AM_OK] = 35, [AM_INTERIM] = 10, [AM_CHUNKED] = 15},
    .slow_pct = 25,
    .pipe_max = 3,
    .half_pct = 15,
    .abrupt_pct = 10,
    .post_pct = 30,
    .bigpad_pct = 15,
    .stall_pct = 0,
};

static const struct fam fam_mixed = {
    .name = "mixed",
    .json = CFG_A,
    .workers = "2",
    .clients = 40,
    .load_ms = 9000,
    .resp_ms = 1500,
    .idle_ms = 3000,
    .weight = {[AM_OK] = 30,
               [AM_CHUNKED] = 15,
               [AM_HEAD204] = 12,
               [AM_EARLY] = 4,
               [AM_MIDCLOSE] = 6,
               [AM_BIGHEAD] = 8,
               [AM_CONNLEN] = 6,
               [AM_BADCHUNK] = 6,
               [AM_STALL] = 3,
               [AM_INTERIM] = 10},
    .slow_pct = 35,
    .pipe_max = 4,
    .half_pct = 10,
    .abrupt_pct = 10,
    .post_pct = 30,
    .bigpad_pct = 25,
    .stall_pct = 3,
};

/*
 * Edge rules on everything the mixed family does: header edits on every
 * request and response, a rewrite on a share of the proxied requests, rule
 * answers (respond, deny, redirect, a redirect map) pipelined between them,
 * and error pages for the origin's error statuses (its bodies POISONED),
 * its early 401, and the proxy's own 502 and 504.
 */
static const struct fam fam_rules = {
    .name = "rules",
    .json = NULL,
    .workers = "2",
    .clients = 32,
    .load_ms = 8000,
    .resp_ms = 1500,
    .idle_ms = 3000,
    .weight = {[AM_OK] = 22,
               [AM_CHUNKED] = 8,
               [AM_HEAD204] = 6,
               [AM_EARLY] = 4,
               [AM_MIDCLOSE] = 4,
               [AM_BIGHEAD] = 4,
               [AM_CONNLEN] = 4,
               [AM_BADCHUNK] = 3,
               [AM_STALL] = 2,
               [AM_INTERIM] = 5,
               [AM_ERROR] = 18,
               [RM_RESPOND] = 7,
               [RM_DENY] = 4,
               [RM_GONE] = 3,
               [RM_REDIRECT] = 3,
               [RM_MAPHIT] = 4,
               [RM_MAPMISS] = 2},
    .slow_pct = 35,
    .pipe_max = 4,
    .half_pct = 10,
    .abrupt_pct = 10,
    .post_pct = 30,
    .bigpad_pct = 15,
    .stall_pct = 0,
    .rules_dir = "ADV_RULES_DIR",
    .rw_pct = 30,
    .sink_break_pct = 3,
};

/* ---- results ------------------------------------------------------------ */

enum outcome {
    OC_EXPECTED = 0, /* the origin's answer, as sent */
    OC_LOCAL,        /* an allowed 502 / 504 from the proxy */
    OC_PARTIAL,      /* an allowed partial response, then EOF */
    OC_UNANSWERED,   /* an allowed EOF before any byte of it (the connection had ended) */
    OC_ABANDONED,    /* the client gave up on it (abrupt close) */
    OC_FAILED,
    /* must stay last */
    OC_COUNT
};

static const char *const oc_names[OC_COUNT] = {"expected",   "local",     "partial",
                                               "unanswered", "abandoned", "FAILED"};

struct res {
    char tag[48];
    int16_t status; /* of a complete final response, else 0 */
    uint8_t mode;
};

struct fail {
    char tag[48];  /* empty: not tied to one request */
    int inv, mode; /* mode -1: none */
    int on502;     /* about a complete 502: excused when the request crossed junk */
    char msg[400];
};

struct cl {
    int id;
    uint64_t rng;
    unsigned seq;
    struct res *res;
    size_t nres, capres;
    struct fail *fail;
    size_t nfail, capfail;
    unsigned long stats[NMODES][OC_COUNT];
    int judging502; /* the answer being judged is a complete 502 */
    long slowest_ms;
    char slowest[48];
};

static struct {
    const struct fam *f;
    uint64_t seed;
    char seedstr[24];
    long deadline;
    unsigned port;
    size_t capacity; /* bytes a non-reading client's sockets take in; 0: unknown */
    int retried;     /* a family failing on timing alone runs once more */
} run;

/*
 * The report goes to stderr and to $ADV_REPORT_DIR/adv-<family>.txt: under
 * `meson test` (TAP), Criterion sends a test's stderr to /dev/null.
 */
static FILE *report;

__attribute__((format(printf, 1, 2))) static void rep(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (report) {
        va_start(ap, fmt);
        vfprintf(report, fmt, ap);
        va_end(ap);
        fflush(report);
    }
}

static int pct(struct cl *c, int p)
{
    return (int)(adv_rnd(&c->rng) % 100) < p;
}

__attribute__((format(printf, 5, 6))) static void cl_fail(struct cl *c, const char *tag, int mode,
                                                          int inv, const char *fmt, ...)
{
    struct fail *f;
    va_list ap;

    if (c->nfail == c->capfail) {
        size_t cap = c->capfail ? c->capfail * 2 : 16;
        void *p = realloc(c->fail, cap * sizeof(*c->fail));
        if (!p)
            return;
        c->fail = p;
        c->capfail = cap;
    }
    f = &c->fail[c->nfail++];
    snprintf(f->tag, sizeof(f->tag), "%s", tag ? tag : "");
    f->inv = inv;
    f->mode = mode;
    f->on502 = c->judging502;
    va_start(ap, fmt);
    vsnprintf(f->msg, sizeof(f->msg), fmt, ap);
    va_end(ap);
}

/* ---- one request -------------------------------------------------------- */

struct rq {
    char tag[48];
    int mode; /* enum adv_mode, or enum rule_mode */
    int v, head, idx;
    size_t n, b;
    size_t end;      /* offset in the connection's output just past this request */
    long t_sent;     /* all of it written */
    long t_start;    /* the proxy may have started on it (previous answer read) */
    enum outcome oc; /* OC_COUNT while open */
    char desc[64];
    char method[8];
    char target[192]; /* as sent: what {uri} and a Location are made of */
};

/* "mode/vN METHOD body" for messages */
static const char *mode_of(const struct rq *q)
{
    return q->desc;
}

static void cl_result(struct cl *c, struct rq *q, enum outcome oc, int status)
{
    struct res *r;
    long took = q->t_start ? h_now_ms() - q->t_start : 0;

    if (took > c->slowest_ms && oc != OC_ABANDONED) {
        c->slowest_ms = took;
        snprintf(c->slowest, sizeof(c->slowest), "%s", q->tag);
    }
    q->oc = oc;
    c->stats[q->mode][oc]++;
    if (c->nres == c->capres) {
        size_t cap = c->capres ? c->capres * 2 : 256;
        void *p = realloc(c->res, cap * sizeof(*c->res));
        if (!p)
            return;
        c->res = p;
        c->capres = cap;
    }
    r = &c->res[c->nres++];
    snprintf(r->tag, sizeof(r->tag), "%s", q->tag);
    r->status = (int16_t)status;
    r->mode = (uint8_t)q->mode;
}

/* ---- response parsing (incremental) -------------------------------------- */

enum rps { RP_HEAD = 0, RP_CL, RP_CSIZE, RP_CDATA, RP_CCRLF, RP_TRAILER, RP_EOF, RP_DONE };

struct rp {
    enum rps st;
    size_t off; /* bytes of this message parsed */
    size_t head_len;
    int status, close, chunked, interim, until_eof, has_xtag;
    long long cl;
    unsigned long long remain;
    char xtag[64];
    char line1[96];
    /* what edge rules put in a head (judge_rules()): count of each field, and its value */
    int n_edge, n_edge_add, n_powered, n_location, n_rule_uri;
    char edge[16], edge_add[16], ctype[48], location[256], rule_uri[256];
    char *body;
    size_t blen, bcap;
};

static void rp_reset(struct rp *p)
{
    char *body = p->body;
    size_t cap = p->bcap;

    memset(p, 0, sizeof(*p));
    p->body = body;
    p->bcap = cap;
    p->cl = -1;
}

static int rp_add(struct rp *p, const char *s, size_t n)
{
    if (p->blen + n + 1 > p->bcap) {
        size_t cap = p->bcap ? p->bcap : 4096;
        char *q;
        while (cap < p->blen + n + 1)
            cap *= 2;
        if (cap > (8u << 20))
            return -1;
        q = realloc(p->body, cap);
        if (!q)
            return -1;
        p->body = q;
        p->bcap = cap;
    }
    memcpy(p->body + p->blen, s, n);
    p->blen += n;
    p->body[p->blen] = '\0'; /* for messages */
    return 0;
}

static const char *crlf(const char *b, size_t from, size_t len)
{
    for (size_t i = from; i + 1 < len; i++)
        if (b[i] == '\r' && b[i + 1] == '\n')
            return b + i;
    return NULL;
}

static int has_token(const char *v, size_t vl, const char *tok)
{
    size_t tl = strlen(tok);

    for (size_t i = 0; i < vl;) {
        size_t s, e;
        while (i < vl && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        s = i;
        while (i < vl && v[i] != ',')
            i++;
        e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && !strncasecmp(v + s, tok, tl))
            return 1;
    }
    return 0;
}

static int rp_head(struct rp *p, const char *b, size_t hl, char *err, size_t ecap)
{
    const char *e = crlf(b, 0, hl), *l;
    size_t l1 = (size_t)(e - b);

    snprintf(p->line1, sizeof(p->line1), "%.*s", (int)(l1 < 90 ? l1 : 90), b);
    for (char *x = p->line1; *x; x++)
        if ((unsigned char)*x < 0x20 || (unsigned char)*x >= 0x7f)
            *x = '.'; /* one line in the report */
    if (l1 < 12 || strncmp(b, "HTTP/1.", 7) || b[8] != ' ' ||
        sscanf(b + 9, "%3d", &p->status) != 1) {
        snprintf(err, ecap, "not a status line: \"%s\"", p->line1);
        return -1;
    }
    for (l = e + 2; l < b + hl - 2; l = e + 2) {
        const char *colon, *v;
        size_t nl, vl;

        e = crlf(b, (size_t)(l - b), hl);
        colon = memchr(l, ':', (size_t)(e - l));
        if (!colon) {
            snprintf(err, ecap, "header line without a colon: \"%.60s\"", l);
            return -1;
        }
        nl = (size_t)(colon - l);
        v = colon + 1;
        while (v < e && (*v == ' ' || *v == '\t'))
            v++;
        vl = (size_t)(e - v);
        if (nl == 14 && !strncasecmp(l, "Content-Length", 14)) {
            long long x = 0;
            if (p->cl >= 0) {
                snprintf(err, ecap, "two Content-Length fields");
                return -1;
            }
            for (size_t i = 0; i < vl; i++) {
                if (v[i] < '0' || v[i] > '9' || x > (1ll << 40)) {
                    snprintf(err, ecap, "bad Content-Length \"%.*s\"", (int)vl, v);
                    return -1;
                }
                x = x * 10 + (v[i] - '0');
            }
            p->cl = x;
        } else if (nl == 17 && !strncasecmp(l, "Transfer-Encoding", 17)) {
            p->chunked = has_token(v, vl, "chunked");
        } else if (nl == 10 && !strncasecmp(l, "Connection", 10)) {
            p->close |= has_token(v, vl, "close");
        } else if (nl == 5 && !strncasecmp(l, "X-Tag", 5)) {
            p->has_xtag = 1;
            snprintf(p->xtag, sizeof(p->xtag), "%.*s", (int)(vl < 63 ? vl : 63), v);
        } else if (nl == 6 && !strncasecmp(l, "X-Edge", 6)) {
            if (!p->n_edge++)
                snprintf(p->edge, sizeof(p->edge), "%.*s", (int)(vl < 15 ? vl : 15), v);
        } else if (nl == 10 && !strncasecmp(l, "X-Edge-Add", 10)) {
            if (!p->n_edge_add++)
                snprintf(p->edge_add, sizeof(p->edge_add), "%.*s", (int)(vl < 15 ? vl : 15), v);
        } else if (nl == 12 && !strncasecmp(l, "X-Powered-By", 12)) {
            p->n_powered++;
        } else if (nl == 12 && !strncasecmp(l, "Content-Type", 12)) {
            snprintf(p->ctype, sizeof(p->ctype), "%.*s", (int)(vl < 47 ? vl : 47), v);
        } else if (nl == 8 && !strncasecmp(l, "Location", 8)) {
            if (!p->n_location++)
                snprintf(p->location, sizeof(p->location), "%.*s", (int)(vl < 255 ? vl : 255), v);
        } else if (nl == 10 && !strncasecmp(l, "X-Rule-Uri", 10)) {
            if (!p->n_rule_uri++)
                snprintf(p->rule_uri, sizeof(p->rule_uri), "%.*s", (int)(vl < 255 ? vl : 255), v);
        }
    }
    return 0;
}

/*
 * Feed the bytes of the message at b[0..len) (eof: nothing more will come).
 * Returns 1 when the message is complete (p->off bytes), 0 when more is
 * needed, -1 on a framing error (err says what).
 */
static int rp_feed(struct rp *p, const char *b, size_t len, int eof, int no_body, char *err,
                   size_t ecap)
{
    for (;;) {
        switch (p->st) {
        case RP_HEAD: {
            const char *e = len >= 4 ? memmem(b + (p->off > 3 ? p->off - 3 : 0),
                                              len - (p->off > 3 ? p->off - 3 : 0), "\r\n\r\n", 4)
                                     : NULL;
            if (!e) {
                p->off = len;
                if (len > 65536) {
                    snprintf(err, ecap, "response head over 64 KiB");
                    return -1;
                }
                return 0;
            }
            p->head_len = p->off = (size_t)(e - b) + 4;
            if (rp_head(p, b, p->head_len, err, ecap) < 0)
                return -1;
            if (p->status >= 100 && p->status < 200 && p->status != 101) {
                p->interim = 1;
                p->st = RP_DONE;
            } else if (no_body || p->status == 204 || p->status == 304) {
                p->st = RP_DONE;
            } else if (p->chunked) {
                p->st = RP_CSIZE;
            } else if (p->cl >= 0) {
                p->remain = (unsigned long long)p->cl;
                p->st = p->cl ? RP_CL : RP_DONE;
            } else {
                p->until_eof = 1;
                p->st = RP_EOF;
            }
            break;
        }
        case RP_CL:
        case RP_CDATA: {
            size_t k = len - p->off;
            if (k > p->remain)
                k = (size_t)p->remain;
            if (!k)
                return 0;
            if (rp_add(p, b + p->off, k) < 0) {
                snprintf(err, ecap, "body too large");
                return -1;
            }
            p->off += k;
            p->remain -= k;
            if (!p->remain)
                p->st = p->st == RP_CL ? RP_DONE : RP_CCRLF;
            break;
        }
        case RP_CSIZE: {
            const char *e = crlf(b, p->off, len);
            const char *s = b + p->off;
            unsigned long long sz = 0;
            int digits = 0, sig = 0;

            if (!e) {
                if (len - p->off > 1024) {
                    snprintf(err, ecap, "chunk size line over 1 KiB");
                    return -1;
                }
                return 0;
            }
            for (; s < e; s++) {
                int d = *s >= '0' && *s <= '9'   ? *s - '0'
                        : *s >= 'a' && *s <= 'f' ? *s - 'a' + 10
                        : *s >= 'A' && *s <= 'F' ? *s - 'A' + 10
                                                 : -1;
                if (d < 0)
                    break;
                digits++;
                if (sz || d)
                    sig++;
                sz = sz * 16 + (unsigned)d;
                if (sig > 15) {
                    snprintf(err, ecap, "chunk size overflows");
                    return -1;
                }
            }
            if (!digits || (s < e && *s != ';')) {
                snprintf(err, ecap, "bad chunk size line \"%.*s\"",
                         (int)((e - b) - (long)p->off < 40 ? (e - b) - (long)p->off : 40),
                         b + p->off);
                return -1;
            }
            p->off = (size_t)(e - b) + 2;
            p->remain = sz;
            p->st = sz ? RP_CDATA : RP_TRAILER;
            break;
        }
        case RP_CCRLF:
            if (len - p->off < 2)
                return 0;
            if (b[p->off] != '\r' || b[p->off + 1] != '\n') {
                snprintf(err, ecap, "chunk data not followed by CRLF");
                return -1;
            }
            p->off += 2;
            p->st = RP_CSIZE;
            break;
        case RP_TRAILER: {
            const char *e = crlf(b, p->off, len);
            if (!e) {
                if (len - p->off > 8192) {
                    snprintf(err, ecap, "trailer over 8 KiB");
                    return -1;
                }
                return 0;
            }
            if ((size_t)(e - b) == p->off)
                p->st = RP_DONE;
            p->off = (size_t)(e - b) + 2;
            break;
        }
        case RP_EOF:
            if (len > p->off && rp_add(p, b + p->off, len - p->off) < 0) {
                snprintf(err, ecap, "unframed body too large");
                return -1;
            }
            p->off = len;
            if (!eof)
                return 0;
            p->st = RP_DONE;
            break;
        case RP_DONE:
            return 1;
        }
    }
}

/* ---- one connection --------------------------------------------------- */

struct cn {
    int fd;
    struct adv_buf in; /* received, not consumed */
    struct rp p;
    struct adv_buf out; /* to send */
    size_t ooff;        /* of it sent */
    char *rest;         /* the rest of an early request's body, sent after its answer (or not) */
    size_t restlen;
    int eof, reset, wdead, half_wanted, half, closing, ended_by_prev;
    int slow, rchunk, rcvbuf;
    long abrupt_at; /* bytes of this batch after which the client closes; -1 never */
    int stall_ms;   /* read nothing for this long once the batch is written */
    long stall_until;
    size_t rx_batch;
    long last_rx, last_done, t_open;
    long prev_sent;    /* when the last request of the batch before was all written */
    char prev[192];    /* the answer before, for messages */
    long long head_cl; /* the last answer was to HEAD and announced this many body bytes */
    struct rq head_rq;
    char head_line[96];
    struct rq rq[MAX_PIPE];
    int nrq, next;
};

static int cn_open(struct cl *c, struct cn *k)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)run.port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

    if (fd < 0)
        return -1;
    if (k->slow || k->rcvbuf) {
        int rb = k->rcvbuf ? k->rcvbuf : (int)adv_rnd_in(&c->rng, 2048, 4096);
        /* before connect, so the window is small from the start */
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof(rb));
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    if (pct(c, 50))
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    k->fd = fd;
    k->t_open = h_now_ms();
    return 0;
}

static void cn_close(struct cn *k, int reset)
{
    if (k->fd < 0)
        return;
    if (reset) {
        struct linger lg = {1, 0};
        setsockopt(k->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(k->fd);
    k->fd = -1;
}

static void cn_write(struct cn *k, long now)
{
    while (!k->wdead && k->ooff < k->out.len) {
        ssize_t w = send(k->fd, k->out.p + k->ooff, k->out.len - k->ooff, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (w <= 0) {
            k->wdead = 1; /* the proxy closed: what it sent is still to be read */
            break;
        }
        k->ooff += (size_t)w;
    }
    for (int i = 0; i < k->nrq; i++)
        if (!k->rq[i].t_sent && k->ooff >= k->rq[i].end)
            k->rq[i].t_sent = now;
    if (k->half_wanted && !k->half && k->ooff == k->out.len) {
        (void)shutdown(k->fd, SHUT_WR);
        k->half = 1;
    }
}

/* Read once (a little when slow); returns bytes read, 0 on EOF or nothing. */
static size_t cn_read(struct cn *k)
{
    size_t want = k->slow ? (size_t)k->rchunk : 65536;
    ssize_t r;

    do
        r = recv(k->fd, adv_buf_room(&k->in, want + 1), want, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    if (r <= 0) {
        k->eof = 1; /* 0: FIN; < 0: reset; what was received stays ours to check */
        k->reset = r < 0;
        return 0;
    }
    k->in.len += (size_t)r;
    k->in.p[k->in.len] = '\0'; /* for messages */
    k->rx_batch += (size_t)r;
    return (size_t)r;
}

static void cn_consume(struct cn *k, size_t n)
{
    memmove(k->in.p, k->in.p + n, k->in.len - n);
    k->in.len -= n;
    k->in.p[k->in.len] = '\0';
}

/* ---- judging ----------------------------------------------------------- */

/* Invariant 1 on raw bytes that answer q: nothing of any other request. */
static int scan(struct cl *c, const struct rq *q, const char *raw, size_t n)
{
    const char *s;
    size_t pos = 0, tl;
    int bad = 0;

    if ((s = memmem(raw, n, "secret=", 7))) {
        cl_fail(c, q->tag, (int)q->mode, 1, "request bytes (\"%.60s\") in the answer to %s (%s)", s,
                q->tag, mode_of(q));
        bad = 1;
    }
    if (memmem(raw, n, ADV_POISON, strlen(ADV_POISON))) {
        cl_fail(c, q->tag, (int)q->mode, 1, "POISONED stray bytes in the answer to %s (%s)", q->tag,
                mode_of(q));
        bad = 1;
    }
    while ((s = adv_tag_find(raw, n, run.seedstr, &pos, &tl))) {
        if (tl != strlen(q->tag) || memcmp(s, q->tag, tl)) {
            cl_fail(c, q->tag, (int)q->mode, 1, "foreign tag %.*s in the answer to %s (%s)",
                    (int)tl, s, q->tag, mode_of(q));
            bad = 1;
            break;
        }
    }
    return bad;
}

/* The origin's own answer: its X-Tag must be the request's. */
static int xtag_ok(struct cl *c, const struct rq *q, const struct rp *p)
{
    if (p->has_xtag && !strcmp(p->xtag, q->tag))
        return 1;
    cl_fail(c, q->tag, (int)q->mode, 1, "%s (%s): \"%s\" with X-Tag %s", q->tag, mode_of(q),
            p->line1, p->has_xtag ? p->xtag : "(none)");
    return 0;
}

static int body_ok(struct cl *c, const struct rq *q, const struct rp *p, size_t want, int exact)
{
    size_t tl = strlen(q->tag);
    unsigned h = adv_tag_hash(q->tag);

    if (exact ? p->blen != want : p->blen > want) {
        cl_fail(c, q->tag, (int)q->mode, 2, "%s (%s): body of %zu bytes, expected %s%zu", q->tag,
                mode_of(q), p->blen, exact ? "" : "at most ", want);
        return 0;
    }
    for (size_t i = 0; i < p->blen; i++)
        if (p->body[i] != adv_body_byte(q->tag, tl, h, i)) {
            cl_fail(c, q->tag, (int)q->mode, 1,
                    "%s (%s): body byte %zu is '%c', not its own (\"%.40s\")", q->tag, mode_of(q),
                    i, p->body[i], p->body + i);
            return 0;
        }
    return 1;
}

/* The status the origin answers this mode with, when it answers fully. */
static int origin_status(const struct rq *q)
{
    switch (q->mode) {
    case AM_HEAD204:
        return q->v == 2 ? 200 : q->v == 3 ? 304 : 204;
    case AM_EARLY:
        return 401;
    default:
        return 200;
    }
}

static size_t origin_body_len(const struct rq *q)
{
    switch (q->mode) {
    case AM_HEAD204:
        return 0;
    case AM_BIGHEAD:
        return ADV_BIGHEAD_BODY;
    default:
        return q->n;
    }
}

/* ---- judging with edge rules (the rules family) ------------------------ */

/* The files of the rules family's config folder that answers are made of. */
static struct {
    int on;
    struct adv_buf p401, p403, p404, p503, p5xx, rule;
} pages;

static int page_load(struct adv_buf *b, const char *dir, const char *name)
{
    char path[512];
    FILE *f;
    size_t n;

    b->len = 0;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (!(f = fopen(path, "rb")))
        return -1;
    while ((n = fread(adv_buf_room(b, 4096), 1, 4096, f)) > 0)
        b->len += n;
    fclose(f);
    return b->len ? 0 : -1;
}

/* The error page the rules give status (error_pages in tests/adv/rules/proxy.json), or NULL. */
static const struct adv_buf *page_for(int status)
{
    switch (status) {
    case 401:
        return &pages.p401;
    case 403:
        return &pages.p403;
    case 404:
        return &pages.p404;
    case 503:
        return &pages.p503;
    default:
        return status >= 500 && status <= 599 ? &pages.p5xx : NULL;
    }
}

/* The status the origin answers an error mode's variant with (hostile.c, respond_error()). */
static int error_status(int v)
{
    static const int st[6] = {500, 503, 404, 500, 500, 403};

    return v >= 0 && v < 6 ? st[v] : 500;
}

/*
 * Every final answer, whoever makes it, carries the response_headers edits
 * of the rule without match: X-Edge set (the origin's own X-Edge replaced),
 * X-Edge-Add added with the method, X-Powered-By removed.
 */
static int edits_ok(struct cl *c, const struct rq *q, const struct rp *p)
{
    if (p->n_edge == 1 && !strcmp(p->edge, "1") && p->n_edge_add == 1 &&
        !strcmp(p->edge_add, q->method) && !p->n_powered)
        return 1;
    cl_fail(c, q->tag, q->mode, 2,
            "%s (%s): \"%s\" without the response edits: %d X-Edge (\"%s\"), %d X-Edge-Add "
            "(\"%s\"), %d X-Powered-By",
            q->tag, mode_of(q), p->line1, p->n_edge, p->edge, p->n_edge_add, p->edge_add,
            p->n_powered);
    return 0;
}

/* The answer's body is want (a page, a rule's body); a HEAD answer announces its length only. */
static int page_ok(struct cl *c, const struct rq *q, const struct rp *p, const char *want,
                   size_t wlen, const char *what)
{
    if (q->head ? p->blen == 0 && p->cl == (long long)wlen
                : p->blen == wlen && !memcmp(p->body, want, wlen))
        return 1;
    if (q->head || p->blen != wlen) {
        cl_fail(c, q->tag, q->mode, 2,
                "%s (%s): \"%s\" should carry %s (%zu bytes): Content-Length %lld, %zu body "
                "bytes (\"%.40s\")",
                q->tag, mode_of(q), p->line1, what, wlen, p->cl, p->blen, p->blen ? p->body : "");
    } else {
        size_t i = 0;
        while (p->body[i] == want[i])
            i++;
        cl_fail(c, q->tag, q->mode, 1, "%s (%s): %s differs at byte %zu: \"%.40s\"", q->tag,
                mode_of(q), what, i, p->body + i);
    }
    return 0;
}

/* An answer with status and the error page for it (or the plain text answer when none). */
static int status_page_ok(struct cl *c, const struct rq *q, const struct rp *p, int status)
{
    const struct adv_buf *pg = page_for(status);
    char text[64], what[32];

    if (p->status != status) {
        cl_fail(c, q->tag, q->mode, 2, "%s (%s): expected %d, got \"%s\"", q->tag, mode_of(q),
                status, p->line1);
        return 0;
    }
    snprintf(what, sizeof(what), "the %d page", status);
    if (pg)
        return page_ok(c, q, p, pg->p, pg->len, what) &&
               (strcmp(p->ctype, "text/html; charset=utf-8")
                    ? (cl_fail(c, q->tag, q->mode, 2, "%s (%s): page with Content-Type \"%s\"",
                               q->tag, mode_of(q), p->ctype),
                       0)
                    : 1);
    snprintf(text, sizeof(text), "%d %s\n", status, status == 410 ? "Gone" : "?");
    return page_ok(c, q, p, text, strlen(text), "the plain text answer");
}

/* A rule's own answer (the rule modes). */
static int rule_answer_ok(struct cl *c, const struct rq *q, const struct rp *p)
{
    char want[320];
    const char *qs;

    switch (q->mode) {
    case RM_RESPOND:
        if (p->status != 200 || p->n_rule_uri != 1 || strcmp(p->rule_uri, q->target)) {
            cl_fail(c, q->tag, q->mode, 2,
                    "%s (%s): expected 200 with X-Rule-Uri %s, got \"%s\" "
                    "with %d X-Rule-Uri (\"%s\")",
                    q->tag, mode_of(q), q->target, p->line1, p->n_rule_uri, p->rule_uri);
            return 0;
        }
        return page_ok(c, q, p, pages.rule.p, pages.rule.len, "pages/rule.txt");
    case RM_DENY:
        return status_page_ok(c, q, p, 403);
    case RM_GONE:
        return status_page_ok(c, q, p, 410);
    case RM_MAPMISS:
        return status_page_ok(c, q, p, 404);
    case RM_REDIRECT:
        snprintf(want, sizeof(want), "https://adv%s", q->target);
        break;
    default: /* RM_MAPHIT: redirects.txt */
        qs = strchr(q->target, '?');
        snprintf(want, sizeof(want), "%s/moved/%d%s", q->v >= 48 ? "https://moved.example" : "",
                 q->v,
                 q->v >= 56 ? "?q=map"
                 : qs       ? qs
                            : "");
        break;
    }
    if (p->status != (q->mode == RM_REDIRECT ? 308 : 301) || p->n_location != 1 ||
        strcmp(p->location, want) || p->blen || (!q->head && p->cl != 0)) {
        cl_fail(c, q->tag, q->mode, 2,
                "%s (%s): expected %d to %s without a body, got \"%s\" to %s (%d Location, "
                "Content-Length %lld, %zu body bytes)",
                q->tag, mode_of(q), q->mode == RM_REDIRECT ? 308 : 301, want, p->line1, p->location,
                p->n_location, p->cl, p->blen);
        return 0;
    }
    return 1;
}

/*
 * A complete answer with the rules on: the edits on every one; a rule's
 * answer as the rule says; the origin's error statuses and the proxy's own
 * 502 and 504 with their pages, never the origin's body; the rest as
 * without rules (ret 0: judge_complete() goes on as usual). Returns 1 with
 * *ok and *oc set when it judged the answer.
 */
static int judge_rules(struct cl *c, struct cn *k, struct rq *q, int *ok, enum outcome *oc)
{
    struct rp *p = &k->p;
    int st = p->status;

    if (!edits_ok(c, q, p)) {
        *ok = 0;
        return 1;
    }
    if (q->mode >= AM_COUNT) {
        *ok = rule_answer_ok(c, q, p);
        *oc = OC_EXPECTED;
        return 1;
    }
    if (q->mode == AM_EARLY) {
        *ok = status_page_ok(c, q, p, 401);
        if (*ok && !p->close) {
            cl_fail(c, q->tag, q->mode, 2,
                    "%s (%s): 401 answered before the request body was read lacks "
                    "Connection: close",
                    q->tag, mode_of(q));
            *ok = 0;
        }
        return 1;
    }
    if (q->mode == AM_ERROR) {
        if (q->v == 3 && st == 502) {
            /* the origin's body broke off before its page went out: the proxy's own 502 */
            *oc = OC_LOCAL;
            *ok = status_page_ok(c, q, p, 502);
        } else {
            *ok = status_page_ok(c, q, p, error_status(q->v));
        }
        return 1; /* the page is whole: requests pipelined behind it get their answers too */
    }
    return 0; /* the proxy's own 502 and 504 get their page checked in judge_complete() */
}

static void judge_complete(struct cl *c, struct cn *k, struct rq *q, const char *raw, long now)
{
    struct rp *p = &k->p;
    int st = p->status, ok = 0;
    enum outcome oc = OC_EXPECTED;

    c->judging502 = st == 502;
    scan(c, q, raw, p->off);
    if (pages.on && judge_rules(c, k, q, &ok, &oc)) {
        c->judging502 = 0;
        cl_result(c, q, ok ? oc : OC_FAILED, st);
        return;
    }
    switch (q->mode) {
    case AM_OK:
    case AM_CHUNKED:
    case AM_INTERIM:
    case AM_HEAD204:
    case AM_EARLY:
        if (st != origin_status(q)) {
            cl_fail(c, q->tag, (int)q->mode, 2, "%s (%s): expected %d, got \"%s\"", q->tag,
                    mode_of(q), origin_status(q), p->line1);
            break;
        }
        ok = xtag_ok(c, q, p) && body_ok(c, q, p, origin_body_len(q), 1);
        if (ok && q->mode == AM_EARLY && !p->close) {
            cl_fail(c, q->tag, (int)q->mode, 2,
                    "%s (%s): 401 answered before the request body was read lacks "
                    "Connection: close",
                    q->tag, mode_of(q));
            ok = 0;
        }
        break;
    case AM_MIDCLOSE:
    case AM_BIGHEAD:
    case AM_CONNLEN:
    case AM_BADCHUNK:
        if (st == 502) {
            ok = 1;
            oc = OC_LOCAL;
        } else {
            cl_fail(c, q->tag, (int)q->mode, 2,
                    "%s (%s): expected 502%s, got a complete \"%s\" (%zu body bytes%s)", q->tag,
                    mode_of(q), q->mode == AM_CONNLEN ? "" : " or its own partial answer then EOF",
                    p->line1, p->blen, p->until_eof ? ", read until close" : "");
        }
        if (ok && q->mode == AM_BADCHUNK && now - q->t_start > BADCHUNK_MAX_MS) {
            cl_fail(c, q->tag, (int)q->mode, 2, "%s (%s): 502 only after %ld ms", q->tag,
                    mode_of(q), now - q->t_start);
            ok = 0;
        }
        break;
    case AM_STALL:
        if (st == 504) {
            ok = 1;
            oc = OC_LOCAL;
        } else {
            cl_fail(c, q->tag, (int)q->mode, 2, "%s (%s): expected 504, got \"%s\"", q->tag,
                    mode_of(q), p->line1);
        }
        break;
    default:
        break;
    }
    if (ok && oc == OC_LOCAL && pages.on)
        ok = edits_ok(c, q, p) && status_page_ok(c, q, p, st); /* the 5xx page, with the edits */
    c->judging502 = 0;
    cl_result(c, q, ok ? oc : OC_FAILED, st);
}

/* EOF after some bytes of q's answer. */
static void judge_partial(struct cl *c, struct cn *k, struct rq *q, long now)
{
    struct rp *p = &k->p;
    int ok = 0;

    scan(c, q, k->in.p, k->in.len);
    /*
     * An answer cut inside its head fails, even the partial answer of a
     * midclose or bighead: the proxy hands heads over whole, and closes a
     * connection whose input is unread by lingering (write side shut,
     * input drained), never with a reset, which would drop what its socket
     * still held (this answer's head, or earlier complete answers).
     */
    if (p->st == RP_HEAD) {
        cl_fail(c, q->tag, (int)q->mode, 2,
                "%s (%s): %s inside the answer's head (%zu bytes: \"%.40s\")", q->tag, mode_of(q),
                k->reset ? "reset" : "EOF", k->in.len, k->in.p);
    } else if (q->mode == AM_MIDCLOSE || q->mode == AM_BIGHEAD || q->mode == AM_BADCHUNK) {
        if (p->status != 200)
            cl_fail(c, q->tag, (int)q->mode, 2, "%s (%s): partial \"%s\"", q->tag, mode_of(q),
                    p->line1);
        else
            ok = xtag_ok(c, q, p) &&
                 body_ok(c, q, p, origin_body_len(q) ? origin_body_len(q) : 5, 0);
        if (ok && q->mode == AM_BADCHUNK && now - q->t_start > BADCHUNK_MAX_MS) {
            cl_fail(c, q->tag, (int)q->mode, 2, "%s (%s): connection closed only after %ld ms",
                    q->tag, mode_of(q), now - q->t_start);
            ok = 0;
        }
    } else {
        cl_fail(c, q->tag, (int)q->mode, 2, "%s (%s): \"%s\" cut short: %zu body bytes then %s",
                q->tag, mode_of(q), p->line1, p->blen, k->reset ? "a reset" : "EOF");
    }
    cl_result(c, q, ok ? OC_PARTIAL : OC_FAILED, 0);
}

/* EOF before any byte of q's answer. */
static void judge_unanswered(struct cl *c, struct cn *k, struct rq *q, long now)
{
    /* a half-close after complete requests still gets every answer (docs/http.md) */
    if (k->ended_by_prev) {
        cl_result(c, q, OC_UNANSWERED, 0);
        return;
    }
    /*
     * A keep-alive close: the proxy's idle timeout counts from when it
     * handed the last answer to the kernel, which may be long before a slow
     * reader has read it. A new batch sent an idle timeout (less a few ms
     * for the crossing) after the one before may meet the close.
     */
    if (q->idx == 0 && k->prev_sent && q->t_sent &&
        q->t_sent - k->prev_sent >= run.f->idle_ms - 20) {
        cl_result(c, q, OC_UNANSWERED, 0);
        k->ended_by_prev = 1;
        return;
    }
    cl_fail(c, q->tag, (int)q->mode, 2,
            "%s (%s): connection %s without an answer, %ld ms after the proxy could start "
            "on it (answer %d of %d in its batch; before it: %s, %ld ms before)",
            q->tag, mode_of(q), k->reset ? "reset" : "closed", q->t_start ? now - q->t_start : -1,
            q->idx + 1, k->nrq, k->prev[0] ? k->prev : "the connection was opened",
            now - (k->last_done ? k->last_done : k->t_open));
    cl_result(c, q, OC_FAILED, 0);
    k->ended_by_prev = 1; /* the rest follow from this one */
}

static void abandon_rest(struct cl *c, struct cn *k)
{
    for (; k->next < k->nrq; k->next++)
        cl_result(c, &k->rq[k->next], OC_ABANDONED, 0);
}

/* The longest q may go without progress. */
static long bound_ms(const struct rq *q)
{
    const struct fam *f = run.f;

    if (q->mode == AM_STALL)
        return f->resp_ms + SLACK_MS;
    return (f->resp_ms > f->idle_ms ? f->resp_ms : f->idle_ms) + SLACK_MS;
}

/* When the proxy could start on q at the earliest: sent, and the answer before it read. */
static void set_start(struct cn *k, struct rq *q, long now)
{
    if (q->t_start)
        return;
    if (!q->t_sent)
        q->t_sent = now; /* answered before the write was seen complete */
    q->t_start = q->t_sent > k->last_done ? q->t_sent : k->last_done;
}

/* Parse what arrived; judge complete answers. */
static void progress(struct cl *c, struct cn *k, long now)
{
    char err[160];

    while (k->next < k->nrq || k->head_cl) {
        struct rq *q = &k->rq[k->next];
        int r;

        if (k->head_cl) {
            /*
             * The answer to a HEAD request announced a body: none may
             * follow. The next answer starts with "HTTP/"; anything else is
             * that body, sent anyway (by the proxy: the origin never does).
             */
            if (!k->in.len)
                return;
            if (k->in.p[0] != 'H') {
                size_t n = (size_t)k->head_cl < k->in.len ? (size_t)k->head_cl : k->in.len;
                if (n < (size_t)k->head_cl && !k->eof)
                    return;
                char shown[24];

                for (size_t i = 0; i < sizeof(shown) - 1; i++)
                    shown[i] = i >= n ? '\0' : (unsigned char)k->in.p[i] < 0x20 ? '.' : k->in.p[i];
                shown[sizeof(shown) - 1] = '\0';
                scan(c, &k->head_rq, k->in.p, n);
                cl_fail(c, k->head_rq.tag, (int)k->head_rq.mode, 1,
                        "%s (%s): %zu body bytes (\"%s\") came after its answer \"%s\" to HEAD",
                        k->head_rq.tag, mode_of(&k->head_rq), n, shown, k->head_line);
                cn_consume(k, n);
            }
            k->head_cl = 0;
            continue;
        }
        r = rp_feed(&k->p, k->in.p, k->in.len, k->eof, q->head, err, sizeof(err));
        if (r == 0)
            return;
        set_start(k, q, now);
        if (r < 0) {
            scan(c, q, k->in.p, k->in.len);
            cl_fail(c, q->tag, (int)q->mode, 1, "%s (%s): malformed answer: %s (before it: %s)",
                    q->tag, mode_of(q), err, k->prev[0] ? k->prev : "nothing on this connection");
            cl_result(c, q, OC_FAILED, 0);
            k->next++;
            abandon_rest(c, k);
            k->closing = 2; /* nothing more can be read in step */
            return;
        }
        if (k->p.interim) {
            if (q->mode == AM_INTERIM && k->p.has_xtag)
                (void)xtag_ok(c, q, &k->p);
            scan(c, q, k->in.p, k->p.off);
            cn_consume(k, k->p.off);
            rp_reset(&k->p);
            continue;
        }
        judge_complete(c, k, q, k->in.p, now);
        snprintf(k->prev, sizeof(k->prev), "%s (%s) got \"%.40s\"%s in %ld ms", q->tag, mode_of(q),
                 k->p.line1, k->p.close ? " with Connection: close" : "", now - q->t_start);
        if (q->mode == AM_EARLY && k->rest && pct(c, 50)) {
            /* the rest of the body, which the proxy must discard */
            adv_buf_add(&k->out, k->rest, k->restlen);
        }
        if (k->p.close || k->p.until_eof)
            k->closing = 1;
        if (q->head && k->p.cl > 0 && !k->closing) {
            k->head_cl = k->p.cl;
            k->head_rq = *q;
            snprintf(k->head_line, sizeof(k->head_line), "%s", k->p.line1);
        }
        cn_consume(k, k->p.off);
        rp_reset(&k->p);
        k->next++;
        k->last_done = now;
        if (k->closing) {
            k->ended_by_prev = 1;
            for (; k->next < k->nrq; k->next++)
                cl_result(c, &k->rq[k->next], OC_UNANSWERED, 0);
        }
    }
}

/* After an answer that ends the connection: EOF must follow, and nothing else. */
static void await_eof(struct cl *c, struct cn *k)
{
    long t0 = h_now_ms();
    const char *tag = k->nrq ? k->rq[k->nrq - 1].tag : NULL;

    if (k->closing == 2)
        return;
    while (!k->eof) {
        struct pollfd pf = {k->fd, POLLIN | (k->ooff < k->out.len && !k->wdead ? POLLOUT : 0), 0};
        long now = h_now_ms();

        if (now - t0 > 2000 + SLACK_MS) {
            cl_fail(c, tag, k->nrq ? (int)k->rq[k->nrq - 1].mode : -1, 2,
                    "no EOF within %d ms after an answer that ended the connection (%s)",
                    2000 + SLACK_MS, tag ? tag : "");
            return;
        }
        if (poll(&pf, 1, 20) <= 0)
            continue;
        if (pf.revents & POLLOUT)
            cn_write(k, now);
        if (pf.revents & (POLLIN | POLLHUP | POLLERR))
            (void)cn_read(k);
    }
    if (k->in.len) {
        const struct rq *q = &k->rq[k->nrq - 1];
        scan(c, q, k->in.p, k->in.len);
        cl_fail(c, tag, k->nrq ? (int)k->rq[k->nrq - 1].mode : -1, 1,
                "%zu bytes after the answer that ended the connection (after %s): \"%.60s\"",
                k->in.len, tag ? tag : "", k->in.p);
    }
}

/*
 * "/<word>", spelled as the rules family likes: as is, or in a way only
 * path normalisation (docs/rules.md) makes the same: "//", "%61" for the
 * "a" of "adv-...", an encoded '/' and a doubled one inside it. (Dot
 * segments are refused before the rules: a 400, not a spelling.)
 */
static int spell(struct cl *c, char *out, size_t cap, const char *word)
{
    switch (adv_rnd(&c->rng) % 8) {
    case 0:
        return snprintf(out, cap, "//%s", word);
    case 1:
        return snprintf(out, cap, "/%%61%s", word + 1);
    case 2:
        return snprintf(out, cap, "/%%2F%s/", word);
    default:
        return snprintf(out, cap, "/%s", word);
    }
}

/* The request target q is sent with (q->target). */
static void make_target(struct cl *c, struct rq *q)
{
    char pre[48] = "";
    size_t cap = sizeof(q->target);

    if (q->mode < AM_COUNT) {
        /* under /adv-rw/, stripped by a rewrite: the origin still gets /<mode>/<tag> */
        if (run.f->rw_pct && pct(c, run.f->rw_pct))
            spell(c, pre, sizeof(pre), "adv-rw");
        snprintf(q->target, cap, "%s/%s/%s?n=%zu&v=%d&b=%zu", pre, mname(q->mode), q->tag, q->n,
                 q->v, q->b);
        return;
    }
    switch (q->mode) {
    case RM_RESPOND:
        spell(c, pre, sizeof(pre), "adv-rule");
        snprintf(q->target, cap, "%s/%s?n=%zu", pre, q->tag, q->n);
        break;
    case RM_DENY:
        spell(c, pre, sizeof(pre), "adv-deny");
        snprintf(q->target, cap, "%s/%s", pre, q->tag);
        break;
    case RM_GONE:
        spell(c, pre, sizeof(pre), "adv-gone");
        snprintf(q->target, cap, "%s/%s", pre, q->tag);
        break;
    case RM_REDIRECT:
        spell(c, pre, sizeof(pre), "adv-redir");
        snprintf(q->target, cap, "%s/%s?v=%d", pre, q->tag, q->v);
        break;
    case RM_MAPHIT:
        spell(c, pre, sizeof(pre), "adv-map");
        snprintf(q->target, cap, "%s/%d?t=%s", pre, q->v, q->tag);
        break;
    default:
        spell(c, pre, sizeof(pre), "adv-map");
        snprintf(q->target, cap, "%s/miss/%s", pre, q->tag);
        break;
    }
}

/* Build one request into k's output. */
static void add_request(struct cl *c, struct cn *k, struct rq *q, int with_early_rest)
{
    const struct fam *f = run.f;
    int te = 0, zeros = 0, post;
    size_t first = 0;
    char *body = NULL;
    const char *method;

    post = q->mode == AM_EARLY || ((q->mode == AM_OK || q->mode == AM_CHUNKED ||
                                    q->mode == AM_INTERIM || q->mode == AM_STALL) &&
                                   pct(c, f->post_pct));
    /* the rules family: bodies to the origin's error statuses and, fewer, to rule answers */
    if (q->mode == AM_ERROR && !q->head)
        post = pct(c, f->post_pct);
    else if (q->mode >= AM_COUNT && !q->head)
        post = pct(c, f->post_pct / 3);
    if (q->b && q->mode != AM_EARLY) {
        post = 1; /* the caller chose the body's size (sink_break_session()) */
    } else if (post && q->mode != AM_EARLY) {
        q->b = pct(c, 70) ? adv_rnd_in(&c->rng, 1, 4096) : adv_rnd_in(&c->rng, 4097, 65536);
        te = pct(c, 50);
        zeros = te && pct(c, 15);
    }
    method = q->head ? "HEAD" : post ? "POST" : "GET";
    snprintf(q->method, sizeof(q->method), "%s", method);
    make_target(c, q);
    if (q->mode == AM_EARLY)
        snprintf(q->desc, sizeof(q->desc), "early/v%d POST partial body", q->v);
    else if (post)
        snprintf(q->desc, sizeof(q->desc), "%s/v%d POST %s %zu", mname(q->mode), q->v,
                 !te     ? "length"
                 : zeros ? "chunked with 0-padded sizes"
                         : "chunked",
                 q->b);
    else
        snprintf(q->desc, sizeof(q->desc), "%s/v%d %s", mname(q->mode), q->v, method);
    adv_buf_fmt(&k->out,
                "%s %s HTTP/1.1\r\nHost: adv\r\nX-Tag: %s\r\n"
                "Cookie: secret=%s\r\nUser-Agent: adv/%d\r\n",
                method, q->target, q->tag, q->tag, c->id);
    if (f->rules_dir) {
        /* removed and set by a request_headers edit: the origin checks (hostile_expect_header) */
        adv_buf_fmt(&k->out, "X-Remove-Me: secret=%s\r\n", q->tag);
        if (pct(c, 30))
            adv_buf_fmt(&k->out, "X-Edge-Req: client\r\n");
    }
    if (pct(c, run.f->bigpad_pct)) {
        /*
         * A head of up to ~28 KiB, secrets all along: copied into a head
         * block that a queued response still points into, it would show.
         */
        unsigned lines = adv_rnd_in(&c->rng, 1, 4), len = adv_rnd_in(&c->rng, 1000, 7000);
        for (unsigned l = 0; l < lines; l++) {
            size_t start = k->out.len;
            adv_buf_fmt(&k->out, "X-Pad-%u: ", l);
            while (k->out.len - start < len)
                adv_buf_fmt(&k->out, "%s;secret=%s ", q->tag, q->tag);
            adv_buf_fmt(&k->out, "\r\n");
        }
    }
    if (q->mode == AM_EARLY) {
        /* the rest would be a request if anyone parsed the body as one */
        char line[128];
        int ll =
            snprintf(line, sizeof(line), "GET /smuggled/%s HTTP/1.1\r\nHost: a\r\n\r\n", q->tag);
        q->b = adv_rnd_in(&c->rng, 256 * 1024, 2 * 1024 * 1024);
        body = malloc(q->b);
        if (!body)
            abort();
        for (size_t i = 0; i < q->b; i++)
            body[i] = line[i % (size_t)ll];
        first = adv_rnd_in(&c->rng, 4096, 32768);
        adv_buf_fmt(&k->out, "Content-Length: %zu\r\n\r\n", q->b);
        adv_buf_add(&k->out, body, first);
        if (with_early_rest) {
            k->rest = body;
            k->restlen = q->b - first;
            memmove(k->rest, body + first, k->restlen);
        } else {
            free(body);
        }
        q->end = k->out.len;
        return;
    }
    if (!post) {
        adv_buf_fmt(&k->out, "\r\n");
        q->end = k->out.len;
        return;
    }
    body = malloc(q->b);
    if (!body)
        abort();
    adv_body(q->tag, q->b, body);
    if (!te) {
        adv_buf_fmt(&k->out, "Content-Length: %zu\r\n\r\n", q->b);
        adv_buf_add(&k->out, body, q->b);
    } else {
        adv_buf_fmt(&k->out, "Transfer-Encoding: chunked\r\n\r\n");
        for (size_t off = 0; off < q->b;) {
            size_t n = adv_rnd_in(&c->rng, 1, 9000);
            if (n > q->b - off)
                n = q->b - off;
            if (zeros)
                adv_buf_fmt(&k->out, "%0*zx\r\n", (int)adv_rnd_in(&c->rng, 16, 20), n);
            else
                adv_buf_fmt(&k->out, "%zx\r\n", n);
            adv_buf_add(&k->out, body + off, n);
            adv_buf_fmt(&k->out, "\r\n");
            off += n;
        }
        adv_buf_fmt(&k->out, "0\r\n\r\n");
    }
    free(body);
    q->end = k->out.len;
}

static int pick_mode(struct cl *c)
{
    unsigned total = 0, r;

    for (int m = 0; m < NMODES; m++)
        total += run.f->weight[m];
    r = (unsigned)(adv_rnd(&c->rng) % total);
    for (int m = 0; m < NMODES; m++) {
        if (r < run.f->weight[m])
            return m;
        r -= run.f->weight[m];
    }
    return AM_OK;
}

/*
 * A body size. Up to 300 KiB; 64 KiB for a small-buffer reader, whose tiny
 * window against loopback's 64 KiB segments can make TCP itself crawl
 * (persist timer, delayed ACKs): its backpressure comes from stalled_session().
 */
static size_t pick_size(struct cl *c, const struct cn *k)
{
    unsigned r = (unsigned)(adv_rnd(&c->rng) % 100);

    if (r < 65)
        return adv_rnd_in(&c->rng, 64, 4096);
    if (r < 90 || k->slow)
        return adv_rnd_in(&c->rng, 4097, 65536);
    return adv_rnd_in(&c->rng, 65537, 300 * 1024);
}

/* Choose and queue a batch of pipelined requests. */
static void make_batch(struct cl *c, struct cn *k, int last)
{
    int depth = (int)adv_rnd_in(&c->rng, 1, (unsigned)run.f->pipe_max), stalls = 0;

    for (int i = 0; i < k->nrq; i++)
        if (k->rq[i].t_sent > k->prev_sent)
            k->prev_sent = k->rq[i].t_sent;
    k->nrq = k->next = 0;
    k->out.len = k->ooff = 0;
    k->rx_batch = 0;
    for (int i = 0; i < depth; i++) {
        struct rq *q = &k->rq[k->nrq];
        int m = pick_mode(c);

        if (m == AM_STALL && stalls++)
            m = AM_OK; /* one wait per batch keeps the run short */
        if (m == AM_EARLY && !last)
            m = AM_OK; /* it ends the connection on purpose */
        memset(q, 0, sizeof(*q));
        q->oc = OC_COUNT;
        q->idx = k->nrq;
        q->mode = m;
        q->v = m < AM_COUNT
                   ? (int)(adv_rnd(&c->rng) % (uint64_t)adv_mode_variants((enum adv_mode)m))
                   : 0;
        snprintf(q->tag, sizeof(q->tag), "c%d-r%u-%s", c->id, c->seq++, run.seedstr);
        switch (m) {
        case AM_OK:
            q->n = q->v == 1 ? adv_rnd_in(&c->rng, 1, 16000) : pick_size(c, k);
            break;
        case AM_CHUNKED:
        case AM_INTERIM:
            q->n = pick_size(c, k);
            break;
        case AM_HEAD204:
            q->head = q->v == 2;
            q->n = adv_rnd_in(&c->rng, 1, 100000);
            break;
        case AM_EARLY:
            q->n = adv_rnd_in(&c->rng, 10, 2000);
            break;
        case AM_MIDCLOSE:
            q->n = adv_rnd_in(&c->rng, 100, 100000);
            break;
        case AM_CONNLEN:
            q->head = pct(c, 25);
            q->n = adv_rnd_in(&c->rng, 10, 5000);
            break;
        case AM_ERROR:
            q->head = pct(c, 20);
            q->n = pick_size(c, k);
            break;
        case RM_RESPOND:
        case RM_DENY:
        case RM_GONE:
        case RM_REDIRECT:
        case RM_MAPHIT:
        case RM_MAPMISS:
            q->head = pct(c, 25);
            q->n = adv_rnd_in(&c->rng, 1, 999);
            if (m == RM_MAPHIT)
                q->v = (int)adv_rnd_in(&c->rng, 0, 63);
            break;
        default:
            q->n = 0;
            break;
        }
        add_request(c, k, q, 1);
        k->nrq++;
        if (m == AM_EARLY)
            break;
        /* what ends the connection usually comes last */
        if ((m == AM_MIDCLOSE || m == AM_BIGHEAD || m == AM_BADCHUNK ||
             (m == AM_ERROR && (q->v == 2 || q->v == 3))) &&
            pct(c, 80))
            break;
    }
}

/* Run one batch; returns 1 when the connection is over. */
static int run_batch(struct cl *c, struct cn *k)
{
    long t0 = h_now_ms();

    k->last_rx = t0;
    for (;;) {
        long now = h_now_ms();
        struct pollfd pf = {k->fd, POLLIN, 0};

        if (k->next < k->nrq) {
            struct rq *q = &k->rq[k->next];
            if (q->t_sent && !q->t_start)
                q->t_start = q->t_sent > k->last_done ? q->t_sent : k->last_done;
            if (q->t_start) {
                long ref = q->t_start > k->last_rx ? q->t_start : k->last_rx;
                if (now - ref > bound_ms(q) || now - q->t_start > HANG_MS) {
                    scan(c, q, k->in.p, k->in.len);
                    cl_fail(c, q->tag, (int)q->mode, 2,
                            "%s (%s): no answer (%zu bytes of it) %ld ms after the proxy could "
                            "start on it, nothing for %ld ms (%s reader)",
                            q->tag, mode_of(q), k->in.len, now - q->t_start, now - ref,
                            k->slow       ? "slow, small-buffer"
                            : k->stall_ms ? "stalling"
                                          : "fast");
                    cl_result(c, q, OC_FAILED, 0);
                    k->next++;
                    abandon_rest(c, k);
                    return 1;
                }
            } else if (now - t0 > HANG_MS) {
                cl_fail(c, q->tag, (int)q->mode, 2, "%s: could not send the request in %d ms",
                        q->tag, HANG_MS);
                abandon_rest(c, k);
                return 1;
            }
        } else if (k->closing) {
            await_eof(c, k);
            return 1;
        } else {
            return 0;
        }
        if (k->abrupt_at == 0 && k->ooff == k->out.len) {
            /* gone before any answer: the proxy must clean up after us */
            h_msleep((int)adv_rnd_in(&c->rng, 0, 30));
            abandon_rest(c, k);
            return 1;
        }
        if (k->ooff < k->out.len && !k->wdead)
            pf.events |= POLLOUT;
        if (k->stall_ms && !k->stall_until && k->ooff == k->out.len)
            k->stall_until = now + k->stall_ms;
        if (k->stall_until && now >= k->stall_until && k->rcvbuf) {
            /* the stall is over: a bigger window, or TCP itself crawls through megabytes */
            int rb = 1 << 20;
            setsockopt(k->fd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof(rb));
            k->rcvbuf = 0;
        }
        if (k->stall_until && now < k->stall_until) {
            /* not reading: the proxy's queue towards us fills up */
            pf.events &= (short)~POLLIN;
            k->last_rx = now;
            if (!pf.events) {
                h_msleep(10);
                continue;
            }
        }
        if (poll(&pf, 1, 20) <= 0)
            continue;
        now = h_now_ms();
        if (pf.revents & POLLOUT)
            cn_write(k, now);
        if (pf.revents & (POLLIN | POLLHUP | POLLERR)) {
            size_t got = cn_read(k);
            if (got)
                k->last_rx = now;
            progress(c, k, now);
            if (k->abrupt_at > 0 && k->rx_batch >= (size_t)k->abrupt_at && k->next < k->nrq) {
                /* give up mid-answer: what came so far must still be ours */
                scan(c, &k->rq[k->next], k->in.p, k->in.len);
                abandon_rest(c, k);
                return 1;
            }
            if (k->eof && k->next < k->nrq) {
                struct rq *q = &k->rq[k->next];

                set_start(k, q, now);
                if (k->in.len) {
                    judge_partial(c, k, q, now);
                    k->next++;
                    k->ended_by_prev = 1;
                }
                for (; k->next < k->nrq; k->next++)
                    judge_unanswered(c, k, &k->rq[k->next], now);
                return 1;
            }
            if (got && k->slow)
                h_msleep((int)adv_rnd_in(&c->rng, 1, 3));
        }
    }
}

/*
 * The pattern of a use after free: a body that leaves the client's sockets
 * (which take run.capacity bytes) only a little room, then a ~30 KiB response
 * head that no longer fits, so the proxy holds it; the origin breaks that
 * response off, the client reads nothing for a while, and other clients'
 * big request heads (secrets all along) keep coming meanwhile.
 */
static void stalled_session(struct cl *c)
{
    struct cn k;
    struct rq *q;
    size_t room = adv_rnd_in(&c->rng, 2048, 24576);

    memset(&k, 0, sizeof(k));
    k.fd = -1;
    k.rcvbuf = 4096; /* as when run.capacity was measured */
    rp_reset(&k.p);
    if (cn_open(c, &k) < 0) {
        cl_fail(c, NULL, -1, 2, "client %d: cannot connect to the proxy: %s", c->id,
                strerror(errno));
        h_msleep(50);
        return;
    }
    k.abrupt_at = -1;
    k.stall_ms = (int)adv_rnd_in(&c->rng, 300, 600);
    for (int i = 0; i < 2; i++) {
        q = &k.rq[k.nrq];
        memset(q, 0, sizeof(*q));
        q->oc = OC_COUNT;
        q->idx = k.nrq;
        q->mode = i ? AM_BIGHEAD : AM_OK;
        q->v = i ? (int)(adv_rnd(&c->rng) % 2) : 0;
        q->n = i ? 0 : run.capacity - room;
        snprintf(q->tag, sizeof(q->tag), "c%d-r%u-%s", c->id, c->seq++, run.seedstr);
        add_request(c, &k, q, 0);
        k.nrq++;
    }
    (void)run_batch(c, &k);
    cn_close(&k, 0);
    free(k.in.p);
    free(k.out.p);
    free(k.rest);
    free(k.p.body);
}

/*
 * The rules family: the origin's error body breaks off (error/v3) while a
 * slow, small-buffer reader has the page only partly read, and a request
 * with a large body is pipelined behind it, still arriving. The page is
 * whole in the proxy: it must reach the client whole, whatever happens to
 * the connection after it.
 */
static void sink_break_session(struct cl *c)
{
    struct cn k;

    memset(&k, 0, sizeof(k));
    k.fd = -1;
    k.slow = 1;
    k.rchunk = (int)adv_rnd_in(&c->rng, 512, 2048);
    k.rcvbuf = 4096;
    rp_reset(&k.p);
    if (cn_open(c, &k) < 0) {
        cl_fail(c, NULL, -1, 2, "client %d: cannot connect to the proxy: %s", c->id,
                strerror(errno));
        h_msleep(50);
        return;
    }
    k.abrupt_at = -1;
    for (int i = 0; i < 2; i++) {
        struct rq *q = &k.rq[k.nrq];

        memset(q, 0, sizeof(*q));
        q->oc = OC_COUNT;
        q->idx = k.nrq;
        q->mode = i ? AM_OK : AM_ERROR;
        q->v = i ? 0 : 3;
        q->n = i ? adv_rnd_in(&c->rng, 64, 4096) : adv_rnd_in(&c->rng, 3000, 30000);
        q->b = i ? adv_rnd_in(&c->rng, 1u << 20, 3u << 20) : 0;
        snprintf(q->tag, sizeof(q->tag), "c%d-r%u-%s", c->id, c->seq++, run.seedstr);
        add_request(c, &k, q, 0);
        k.nrq++;
    }
    (void)run_batch(c, &k);
    cn_close(&k, 0);
    free(k.in.p);
    free(k.out.p);
    free(k.rest);
    free(k.p.body);
}

/* One connection: a few batches, then close (or the proxy closes it). */
static void session(struct cl *c)
{
    const struct fam *f = run.f;
    struct cn k;
    int batches = (int)adv_rnd_in(&c->rng, 1, 4), half = pct(c, f->half_pct);
    int abrupt = pct(c, f->abrupt_pct), ended = 0;

    if (run.capacity && pct(c, f->stall_pct)) {
        stalled_session(c);
        return;
    }
    if (f->sink_break_pct && pct(c, f->sink_break_pct)) {
        sink_break_session(c);
        return;
    }
    memset(&k, 0, sizeof(k));
    k.fd = -1;
    rp_reset(&k.p);
    k.slow = pct(c, f->slow_pct);
    k.rchunk = (int)adv_rnd_in(&c->rng, 512, 2048);
    if (cn_open(c, &k) < 0) {
        cl_fail(c, NULL, -1, 2, "client %d: cannot connect to the proxy: %s", c->id,
                strerror(errno));
        h_msleep(50);
        return;
    }
    for (int b = 0;
         b < batches && !ended && h_now_ms() < run.deadline && c->seq < MAX_REQ_PER_CLIENT; b++) {
        int last = b == batches - 1;

        free(k.rest);
        k.rest = NULL;
        k.restlen = 0;
        make_batch(c, &k, last);
        if (k.rq[k.nrq - 1].mode == AM_EARLY)
            last = 1;
        k.half_wanted = last && half && k.rq[k.nrq - 1].mode != AM_EARLY;
        k.abrupt_at = -1;
        if (abrupt && last)
            k.abrupt_at = pct(c, 25) ? 0 : (long)adv_rnd_in(&c->rng, 1, 40000);
        ended = run_batch(c, &k);
        if (!ended && !last)
            h_msleep(pct(c, 90) ? (int)adv_rnd_in(&c->rng, 0, 20)
                                : (int)adv_rnd_in(&c->rng, 50, 200));
    }
    if (!ended && k.fd >= 0) {
        /* nothing may follow the last answer */
        struct pollfd pf = {k.fd, POLLIN, 0};
        if (poll(&pf, 1, 5) > 0) {
            (void)cn_read(&k);
            if (k.in.len) {
                scan(c, &k.rq[k.nrq - 1], k.in.p, k.in.len);
                for (size_t i = 0; i < k.in.len; i++)
                    if ((unsigned char)k.in.p[i] < 0x20)
                        k.in.p[i] = '.';
                cl_fail(c, NULL, (int)k.rq[k.nrq - 1].mode, 1,
                        "client %d: %zu stray bytes after the last answer (%s): \"%.60s\"", c->id,
                        k.in.len, k.prev, k.in.p);
            }
        }
    }
    cn_close(&k, abrupt && pct(c, 50));
    free(k.in.p);
    free(k.out.p);
    free(k.rest);
    free(k.p.body);
}

static void *client_main(void *arg)
{
    struct cl *c = arg;

    while (h_now_ms() < run.deadline && c->seq < MAX_REQ_PER_CLIENT)
        session(c);
    return NULL;
}

/* ---- the proxy's side ---------------------------------------------------- */

/*
 * How many bytes of a response the sockets towards a client that reads
 * nothing take in (the proxy's send queue and the client's receive queue,
 * with a 4 KiB receive buffer); 0 when it cannot be told.
 */
static size_t capacity(unsigned port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), rb = 4096, inq = 0;
    long q = -1, last = -2, stable_since = h_now_ms(), end = h_now_ms() + 5000;
    struct linger lg = {1, 0};
    char req[256];

    if (fd < 0)
        return 0;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof(rb));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        close(fd);
        return 0;
    }
    snprintf(req, sizeof(req),
             "GET /ok/cal-%s?n=%u&v=0&b=0 HTTP/1.1\r\nHost: adv\r\nX-Tag: cal-%s\r\n"
             "Cookie: secret=cal-%s\r\n\r\n",
             run.seedstr, 8u << 20, run.seedstr, run.seedstr);
    (void)h_sends(fd, req);
    while (h_now_ms() < end && h_now_ms() - stable_since < 300) {
        h_msleep(20);
        q = h_send_q(port, ntohs(sa.sin_port));
        if (q != last) {
            last = q;
            stable_since = h_now_ms();
        }
    }
    (void)ioctl(fd, FIONREAD, &inq);
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
    if (q < 0 || h_now_ms() >= end)
        return 0;
    return (size_t)q + (size_t)inq;
}

static int res_cmp(const void *a, const void *b)
{
    return strcmp(((const struct res *)a)->tag, ((const struct res *)b)->tag);
}

/* Invariant 3: one log line per answered request, with the status its client got. */
static void check_log(struct cl *c0, const struct proxy *px, struct res *all, size_t nall,
                      struct hostile *h)
{
    char *s = h_slurp(px->out_path), *line, *save = NULL;
    unsigned *count = calloc(nall + 1, sizeof(unsigned));
    int *status = calloc(nall + 1, sizeof(int));
    size_t lines = 0;

    qsort(all, nall, sizeof(*all), res_cmp);
    for (line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je), *jp, *js;
        const char *path, *t, *e;
        struct res key, *r;

        lines++;
        if (!o) {
            cl_fail(c0, NULL, -1, 3, "access log line is not JSON (%s): %.80s", je.text, line);
            continue;
        }
        jp = json_object_get(o, "path");
        js = json_object_get(o, "status");
        path = json_is_string(jp) ? json_string_value(jp) : "";
        if (!strncmp(path, "/smuggled/", 10))
            cl_fail(c0, NULL, -1, 1, "access log has a smuggled request: %.80s", line);
        /* the tag is the second segment, or anywhere in a rules family's target */
        t = path[0] == '/' ? strchr(path + 1, '/') : NULL;
        if (t && run.f->rules_dir) {
            size_t pos = 0, tl;
            t = adv_tag_find(path, strlen(path), run.seedstr, &pos, &tl);
            e = t ? t + tl : NULL;
        } else if (t) {
            t++;
            e = strchr(t, '?');
        }
        if (t) {
            snprintf(key.tag, sizeof(key.tag), "%.*s", (int)(e ? e - t : (long)strlen(t)), t);
            r = bsearch(&key, all, nall, sizeof(*all), res_cmp);
            if (r) {
                size_t i = (size_t)(r - all);
                count[i]++;
                status[i] = json_is_integer(js) ? (int)json_integer_value(js) : -1;
            }
        }
        json_decref(o);
    }
    for (size_t i = 0; i < nall; i++) {
        if (hostile_excused(h, all[i].tag))
            continue;
        if (count[i] > 1)
            cl_fail(c0, all[i].tag, all[i].mode, 3, "%s (%s): %u access log lines", all[i].tag,
                    mname(all[i].mode), count[i]);
        else if (all[i].status && count[i] == 0)
            cl_fail(c0, all[i].tag, all[i].mode, 3,
                    "%s (%s): answered %d but not in the access log", all[i].tag,
                    mname(all[i].mode), all[i].status);
        else if (all[i].status && status[i] != all[i].status)
            cl_fail(c0, all[i].tag, all[i].mode, 3,
                    "%s (%s): the client got %d, the access log says %d", all[i].tag,
                    mname(all[i].mode), all[i].status, status[i]);
    }
    free(count);
    free(status);
    free(s);
    rep("adv[%s]: %zu access log lines\n", run.f->name, lines);
}

static void check_sanitizer(struct cl *c0, const struct proxy *px)
{
    char *err = h_slurp(px->err_path);
    const char *p = adv_sanitizer_report(err);

    if (p)
        cl_fail(c0, NULL, -1, 4, "sanitizer report on the proxy's stderr: %.300s", p);
    free(err);
}

/* ---- a run ------------------------------------------------------------- */

/*
 * Starvation (#19.1): a well-behaved client next to the hostile ones, a new
 * connection every 100 ms for a small answer, timed. However the others
 * behave (slow readers, trickles, stalls), it must be served within
 * PROBE_MAX_MS (a worker starved by a few stalled readers once kept new
 * clients waiting for the idle timeout).
 */
#define PROBE_MAX_MS 2000
#define STALLERS 48

struct probe {
    unsigned port;
    long worst_ms;
    int n, failed;
    char worst[64];
};

/*
 * The proxy's 502 for tag read exactly the origin's junk (ok/v2, late
 * stray bytes) on a reused connection: the junk came in the same loop turn
 * as the request went out, before any byte of it reached the origin, so
 * the origin cannot excuse it (it never got the request). No proxy can
 * tell such bytes from an answer; a 502 is right.
 */
static int junk_answered(const char *log, const char *tag)
{
    char want[48];
    const char *ln = log ? strstr(log, tag) : NULL, *b, *e;

    if (!ln)
        return 0;
    for (b = ln; b > log && b[-1] != '\n'; b--)
        ;
    e = strchr(ln, '\n');
    snprintf(want, sizeof(want), "\"upstream_bytes\":%zu,", strlen(ADV_JUNK));
    for (const char *k[] = {"\"status\":502,", want, "\"upstream_connect_ms\":\"-\","}, **p = k;
         p < k + 3; p++) {
        const char *at = strstr(b, *p);
        if (!at || (e && at > e))
            return 0;
    }
    return 1;
}

static void *probe_main(void *arg)
{
    struct probe *p = arg;

    while (h_now_ms() < run.deadline) {
        char req[256], tag[48];
        struct h_resp r;
        long t0 = h_now_ms(), took;
        int ok;

        snprintf(tag, sizeof(tag), "probe%d", p->n++);
        snprintf(req, sizeof(req),
                 "GET /ok/%s?n=5&v=0&b=0 HTTP/1.1\r\nHost: a\r\nX-Tag: %s\r\n"
                 "Cookie: secret=%s\r\nConnection: close\r\n\r\n",
                 tag, tag, tag);
        ok = h_roundtrip(p->port, req, &r) == 0 && r.status == 200;
        if (ok)
            h_resp_free(&r);
        took = h_now_ms() - t0;
        if (!ok)
            p->failed++;
        if (took > p->worst_ms) {
            p->worst_ms = took;
            snprintf(p->worst, sizeof(p->worst), "%s", tag);
        }
        h_msleep(100);
    }
    return NULL;
}

static void run_family(const struct fam *f)
{
    const char *rules_dir = f->rules_dir ? getenv(f->rules_dir) : NULL;
    const char *args[] = {"--workers", f->workers, rules_dir ? "--config" : NULL, rules_dir, NULL};
    const char *env = getenv("ADV_SEED");
    struct proxy px;
    struct hostile *h;
    struct cl *cls, c0;
    pthread_t *tid;
    struct res *all;
    size_t nall = 0, nfail = 0, nexcused = 0;
    unsigned long inv[5] = {0}, total = 0, stats[NMODES][OC_COUNT] = {{0}};
    unsigned per[5][NMODES + 1] = {{0}};
    int verbose = getenv("ADV_VERBOSE") && strcmp(getenv("ADV_VERBOSE"), "0");
    long t_start = h_now_ms(), t_load = 0, t_fds = 0, slowest = 0;
    const char *slowest_tag = "";
    int base_fds, fds = -1, rc, status;
    char probs[2048], first[512] = "", report_path[512] = "";
    int shown = 0;
    char said[12][432];
    unsigned nprob;

    memset(&c0, 0, sizeof(c0));
    run.f = f;
    run.seed = strtoull(env ? env : "1", NULL, 10);
    snprintf(run.seedstr, sizeof(run.seedstr), "%llu", (unsigned long long)run.seed);
    if (getenv("ADV_REPORT_DIR")) {
        snprintf(report_path, sizeof(report_path), "%s/adv-%s.txt", getenv("ADV_REPORT_DIR"),
                 f->name);
        report = fopen(report_path, "w");
    }
    rep("adv: seed=%s family=%s workers=%s clients=%d load=%d ms\n", run.seedstr, f->name,
        f->workers, f->clients, f->load_ms);
    h = hostile_start(run.seed ^ (uint64_t)(uintptr_t)f->name[0] * 0x9e3779b97f4a7c15ull);
    cr_assert(h, "adv: seed=%s: hostile origin did not start", run.seedstr);
    pages.on = 0;
    if (f->rules_dir) {
        /* the config folder (a later --config wins over the harness's own) and its answers */
        cr_assert(rules_dir, "adv[%s]: $%s is not set", f->name, f->rules_dir);
        cr_assert(!page_load(&pages.p401, rules_dir, "pages/401.html") &&
                      !page_load(&pages.p403, rules_dir, "pages/403.html") &&
                      !page_load(&pages.p404, rules_dir, "pages/404.html") &&
                      !page_load(&pages.p503, rules_dir, "pages/503.html") &&
                      !page_load(&pages.p5xx, rules_dir, "pages/5xx.html") &&
                      !page_load(&pages.rule, rules_dir, "pages/rule.txt"),
                  "adv[%s]: cannot read the pages in %s", f->name, rules_dir);
        pages.on = 1;
        /* what the rule without match does to every request */
        hostile_expect_header(h, "X-Edge-Req", "1");
        hostile_expect_header(h, "X-Remove-Me", NULL);
    }
    h_proxy_start(&px, hostile_port(h), f->json, args);
    run.port = px.port;
    /* the start-up probes' connections close; what stays is the baseline */
    h_msleep(300);
    base_fds = h_fd_count(px.pid);
    for (int i = 0; i < 3; i++) {
        int n;
        h_msleep(100);
        n = h_fd_count(px.pid);
        if (n >= 0 && n < base_fds)
            base_fds = n;
    }

    run.capacity = 0;
    if (f->stall_pct) {
        run.capacity = capacity(px.port);
        if (run.capacity < 65536 || run.capacity > (6u << 20)) {
            rep("adv[%s]: client sockets take %zu bytes: no stalled sessions\n", f->name,
                run.capacity);
            run.capacity = 0;
        } else {
            rep("adv[%s]: client sockets take %zu bytes\n", f->name, run.capacity);
        }
        /* its connections close again before the descriptors are counted */
    }
    cls = calloc((size_t)f->clients, sizeof(*cls));
    tid = calloc((size_t)f->clients, sizeof(*tid));
    cr_assert(cls && tid);
    run.deadline = h_now_ms() + f->load_ms;
    struct probe probe = {.port = px.port};
    pthread_t probe_tid;
    int stalled[STALLERS];

    /*
     * In the leak family (one worker), STALLERS clients also ask for 8 MB
     * (16 ask for 4 MB under the sanitizers, where the origin is slow to
     * make them) and read nothing until the load ends: on c2cf0d5 they held
     * every receive buffer of the worker, and the probe waited.
     */
    const char *san = getenv("RINGPROXY_SANITIZED");
    int sanitized = san && !strcmp(san, "1");
    int stall_bytes = sanitized ? 4000000 : 8000000, nstall = sanitized ? 16 : STALLERS;

    for (int i = 0; i < STALLERS; i++) {
        char req[256];
        int small = 4096;

        stalled[i] = -1;
        if (strcmp(f->name, "leak") || i >= nstall)
            continue;
        stalled[i] = h_connect(px.port);
        if (stalled[i] < 0)
            continue;
        (void)setsockopt(stalled[i], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
        snprintf(req, sizeof(req),
                 "GET /ok/stall%d?n=%d&v=0&b=0 HTTP/1.1\r\nHost: a\r\nX-Tag: stall%d\r\n"
                 "Cookie: secret=stall%d\r\n\r\n",
                 i, stall_bytes, i, i);
        (void)h_sends(stalled[i], req);
    }
    cr_assert_eq(pthread_create(&probe_tid, NULL, probe_main, &probe), 0);
    for (int i = 0; i < f->clients; i++) {
        cls[i].id = i;
        cls[i].rng = (run.seed * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)(i + 1) << 32) ^
                     (uint64_t)(unsigned char)f->name[0] ^ 0x5bd1e995ull;
        if (!cls[i].rng)
            cls[i].rng = 1;
        cr_assert_eq(pthread_create(&tid[i], NULL, client_main, &cls[i]), 0);
    }
    for (int i = 0; i < f->clients; i++)
        pthread_join(tid[i], NULL);
    pthread_join(probe_tid, NULL);
    for (int i = 0; i < STALLERS; i++)
        if (stalled[i] >= 0)
            h_close(stalled[i]);
    t_load = h_now_ms();
    rep("adv[%s]: a well-behaved client: %d requests, slowest %s %ld ms, %d unanswered\n", f->name,
        probe.n, probe.worst, probe.worst_ms, probe.failed);
    if (probe.worst_ms > PROBE_MAX_MS || probe.failed)
        cl_fail(&c0, NULL, -1, 2,
                "a well-behaved client next to the hostile ones waited %ld ms (%s), %d of %d "
                "unanswered",
                probe.worst_ms, probe.worst, probe.failed, probe.n);

    /* invariant 4: the proxy is alive, closes everything, answers, exits 0 */
    if (waitpid(px.pid, &status, WNOHANG) == px.pid) {
        char *err = h_slurp(px.err_path);
        size_t el = strlen(err);
        cl_fail(&c0, NULL, -1, 4, "the proxy died during the load (status %#x): %.400s", status,
                el > 400 ? err + el - 400 : err);
        free(err);
        px.pid = 0;
    } else {
        long t0 = h_now_ms();
        while (h_now_ms() - t0 < 10000) {
            fds = h_fd_count(px.pid);
            if (fds >= 0 && fds <= base_fds)
                break;
            h_msleep(100);
        }
        t_fds = h_now_ms();
        if (fds > base_fds)
            cl_fail(&c0, NULL, -1, 4,
                    "%d descriptors open 10 s after the load, %d after start-up "
                    "(client connections %ld, idle pool %ld)",
                    fds, base_fds, h_metric(px.admin_port, "ringproxy_client_connections"),
                    h_metric(px.admin_port, "ringproxy_upstream_pool_idle"));
        {
            struct h_resp r;
            char req[256], want[64];
            snprintf(req, sizeof(req),
                     "GET /ok/final-%s?n=100&v=0&b=0 HTTP/1.1\r\nHost: adv\r\n"
                     "X-Tag: final-%s\r\nCookie: secret=final-%s\r\n\r\n",
                     run.seedstr, run.seedstr, run.seedstr);
            snprintf(want, sizeof(want), "final-%s", run.seedstr);
            if (h_roundtrip(px.port, req, &r) != 0) {
                cl_fail(&c0, NULL, -1, 4, "no answer to a plain request after the load");
            } else {
                char xt[64] = "";
                (void)h_header(r.head, "X-Tag", xt, sizeof(xt));
                if (r.status != 200 || strcmp(xt, want) || r.body_len != 100)
                    cl_fail(&c0, NULL, -1, 4,
                            "a plain request after the load got %d, X-Tag %s, %zu body bytes",
                            r.status, xt, r.body_len);
                h_resp_free(&r);
            }
        }
        rc = h_proxy_stop(&px);
        if (rc != 0)
            cl_fail(&c0, NULL, -1, 4, "the proxy exited %d on SIGTERM, not 0", rc);
    }
    check_sanitizer(&c0, &px);

    /* invariant 3 needs every client's results */
    for (int i = 0; i < f->clients; i++)
        nall += cls[i].nres;
    all = calloc(nall + 1, sizeof(*all));
    cr_assert(all);
    nall = 0;
    for (int i = 0; i < f->clients; i++) {
        memcpy(all + nall, cls[i].res, cls[i].nres * sizeof(*all));
        nall += cls[i].nres;
    }
    check_log(&c0, &px, all, nall, h);

    nprob = hostile_problems(h, probs, sizeof(probs));
    if (nprob)
        cl_fail(&c0, NULL, -1, 1, "the origin saw %u bad requests, first: %.300s", nprob, probs);

    /* the report: a few messages per invariant and mode (all with ADV_VERBOSE=1) */
    char *accesslog = h_slurp(px.out_path);
    for (int i = 0; i <= f->clients; i++) {
        struct cl *c = i < f->clients ? &cls[i] : &c0;
        for (size_t j = 0; j < c->nfail; j++) {
            struct fail *fl = &c->fail[j];
            unsigned *seen = &per[fl->inv][fl->mode + 1];
            if (fl->tag[0] && fl->on502 &&
                (hostile_excused(h, fl->tag) || junk_answered(accesslog, fl->tag))) {
                if (verbose || nexcused < 5)
                    rep("adv: seed=%s excused: [inv%d] %s\n", run.seedstr, fl->inv, fl->msg);
                nexcused++;
                continue;
            }
            inv[fl->inv]++;
            if (!nfail)
                snprintf(first, sizeof(first), "[inv%d] %s", fl->inv, fl->msg);
            if (verbose || (*seen)++ < 3) {
                char nt[256];
                rep("adv: seed=%s [inv%d] %s\n", run.seedstr, fl->inv, fl->msg);
                if (fl->tag[0]) {
                    const char *ln = accesslog ? strstr(accesslog, fl->tag) : NULL;

                    rep("adv:     %s: %s\n", fl->tag,
                        hostile_note(h, fl->tag, nt, sizeof(nt)) ? nt
                                                                 : "the origin never received it");
                    /* the proxy's own account: its access-log line for the request */
                    if (ln) {
                        const char *b = ln, *e = strchr(ln, '\n');
                        while (b > accesslog && b[-1] != '\n')
                            b--;
                        rep("adv:     %s: logged %.*s\n", fl->tag,
                            (int)((e ? e : ln + strlen(ln)) - b > 1200
                                      ? 1200
                                      : (e ? e : ln + strlen(ln)) - b),
                            b);
                    }
                }
                /* the only channel to meson's test log: said once the outcome is known */
                if (shown < 12)
                    snprintf(said[shown++], sizeof(said[0]), "[inv%d] %s", fl->inv, fl->msg);
            }
            nfail++;
        }
        if (c->slowest_ms > slowest) {
            slowest = c->slowest_ms;
            slowest_tag = c->slowest;
        }
        for (int m = 0; m < NMODES && i < f->clients; m++)
            for (int o = 0; o < OC_COUNT; o++) {
                stats[m][o] += c->stats[m][o];
                total += c->stats[m][o];
            }
    }
    for (int v = 1; v <= 4; v++)
        for (int m = -1; m < NMODES; m++)
            if (per[v][m + 1] > 3 && !verbose)
                rep("adv: seed=%s [inv%d] %s: %u failures in all\n", run.seedstr, v,
                    m < 0 ? "(no mode)" : mname(m), per[v][m + 1]);
    rep("adv[%s]: seed=%s %lu requests (origin saw %lu) in %.1f s, %zu failures", f->name,
        run.seedstr, total, hostile_requests(h), (double)(h_now_ms() - t_start) / 1e3, nfail);
    if (nexcused)
        rep(", %zu excused (stray bytes crossed a request)", nexcused);
    rep("\n");
    rep("adv[%s]: clients done at %.1f s, descriptors back at %.1f s; slowest request %s: %ld ms\n",
        f->name, (double)(t_load - t_start) / 1e3, (double)(t_fds - t_start) / 1e3, slowest_tag,
        slowest);
    {
        char ex[1024];
        if (hostile_excused_list(h, ex, sizeof(ex)))
            rep("adv[%s]: requests that crossed stray bytes: %s\n", f->name, ex);
    }
    for (int m = 0; m < NMODES; m++) {
        unsigned long n = 0;
        for (int o = 0; o < OC_COUNT; o++)
            n += stats[m][o];
        if (!n)
            continue;
        rep("adv[%s]:   %-9s %5lu:", f->name, mname(m), n);
        for (int o = 0; o < OC_COUNT; o++)
            if (stats[m][o])
                rep(" %s %lu", oc_names[o], stats[m][o]);
        rep("\n");
    }

    hostile_stop(h);
    for (int i = 0; i < f->clients; i++) {
        free(cls[i].res);
        free(cls[i].fail);
    }
    free(c0.res);
    free(c0.fail);
    free(all);
    free(cls);
    free(tid);
    if (nfail) {
        /* the proxy's own account, for whoever reads the report */
        char *err = h_slurp(px.err_path);
        size_t el = strlen(err);
        const char *from = el > 3000 ? err + el - 3000 : err;
        rep("adv[%s]: the proxy's stderr (last %zu bytes):\n%s\n", f->name, strlen(from), from);
        free(err);
    }
    free(accesslog);
    if (pages.on) {
        struct adv_buf *b[] = {&pages.p401, &pages.p403, &pages.p404,
                               &pages.p503, &pages.p5xx, &pages.rule};
        for (size_t i = 0; i < sizeof(b) / sizeof(b[0]); i++) {
            free(b[i]->p);
            *b[i] = (struct adv_buf){0};
        }
        pages.on = 0;
    }
    if (report)
        fclose(report);
    report = NULL;
    if (nfail && !inv[1] && !inv[3] && !inv[4] && !run.retried) {
        /*
         * Only answers late or cut short (inv2), which depend on timing on a
         * loaded machine: said here, and the family runs once more with
         * another seed; failing again fails the test. A foreign byte
         * (inv1), a missing or doubled log line (inv3) or a leaked
         * descriptor (inv4) fails it at once.
         */
        /* info, not warn: a Criterion warning makes the whole run exit 1 */
        cr_log_info("adv[%s] ADV_SEED=%s: %zu late or cut answers (first: %s); once more with "
                    "another seed",
                    f->name, run.seedstr, nfail, first);
        for (int i = 0; i < shown; i++)
            cr_log_info("%s", said[i]);
        run.retried = 1;
        {
            char next[32];

            snprintf(next, sizeof(next), "%llu", (unsigned long long)run.seed * 2654435761u + 1);
            setenv("ADV_SEED", next, 1);
        }
        run_family(f);
        return;
    }
    for (int i = 0; nfail && i < shown; i++)
        cr_expect_fail("%s", said[i]);
    if (nfail)
        cr_assert_fail("adv[%s] ADV_SEED=%s: %zu invariant failures (inv1 %lu, inv2 %lu, inv3 %lu, "
                       "inv4 %lu)%s%s%s",
                       f->name, run.seedstr, nfail, inv[1], inv[2], inv[3], inv[4],
                       run.retried ? " (second run)" : "", report_path[0] ? "; report: " : "",
                       report_path);
}

Test(adv, framing, .timeout = 120)
{
    run_family(&fam_framing);
}

Test(adv, poison, .timeout = 120)
{
    run_family(&fam_poison);
}

Test(adv, leak, .timeout = 120)
{
    run_family(&fam_leak);
}

Test(adv, timeouts, .timeout = 120)
{
    run_family(&fam_timeouts);
}

Test(adv, mixed, .timeout = 120)
{
    run_family(&fam_mixed);
}

Test(adv, rules, .timeout = 120)
{
    run_family(&fam_rules);
}
