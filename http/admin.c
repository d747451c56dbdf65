#include "http/admin.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cfg/rules.h"
#include "http/proxy.h"
#include "http/stats.h"

#define ADMIN_REQ_MAX 2048
/*
 * Every admin receive and send has this long to complete (a linked
 * timeout): an idle or stalled scraper is closed. At most ADMIN_CONNS_MAX
 * admin connections are open at once; more are closed at accept.
 */
#define ADMIN_IO_TIMEOUT_MS 10000
#define ADMIN_CONNS_MAX 64

struct admin_conn {
    struct core_op op;
    int fd;
    size_t len;
    char *out;
    size_t outlen, sent;
    struct admin_conn *prev, *next;
    char req[ADMIN_REQ_MAX];
};

struct http_admin {
    struct core_op op_accept;
    struct core_thread *t;
    struct http_shared *sh;
    int fd;
    int accepting;
    uint64_t resume_ms; /* accepting paused for want of descriptors until then */
    unsigned nconns;
    struct admin_conn *conns;
};

/* An SQE for an operation that link_timeout() follows: room for both, or the link breaks. */
static struct io_uring_sqe *linked_sqe(struct http_admin *a)
{
    core_sqe_room(a->t, 2);
    return core_sqe(a->t);
}

/* Bound the operation just prepared in sqe by ADMIN_IO_TIMEOUT_MS. */
static void link_timeout(struct http_admin *a, struct io_uring_sqe *sqe)
{
    static struct __kernel_timespec ts = {ADMIN_IO_TIMEOUT_MS / 1000,
                                          ADMIN_IO_TIMEOUT_MS % 1000 * 1000000L};
    struct io_uring_sqe *tsqe;

    sqe->flags |= IOSQE_IO_LINK;
    tsqe = core_sqe(a->t);
    io_uring_prep_link_timeout(tsqe, &ts, 0);
    io_uring_sqe_set_data64(tsqe, CORE_UD_IGNORE);
}

static void arm_accept(struct http_admin *a)
{
    struct io_uring_sqe *sqe = core_sqe(a->t);

    io_uring_prep_multishot_accept(sqe, a->fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data(sqe, &a->op_accept);
    a->accepting = 1;
}

struct http_admin *http_admin_new(struct core_thread *t, struct http_shared *sh, int fd)
{
    struct http_admin *a = calloc(1, sizeof(*a));

    if (!a)
        return NULL;
    a->op_accept.kind = OPK_ADMIN_ACCEPT;
    a->t = t;
    a->sh = sh;
    a->fd = fd;
    arm_accept(a);
    return a;
}

static void conn_free(struct http_admin *a, struct admin_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        a->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    (void)close(c->fd);
    free(c->out);
    free(c);
    a->nconns--;
}

void http_admin_free(struct http_admin *a)
{
    if (!a)
        return;
    while (a->conns)
        conn_free(a, a->conns);
    free(a);
}

uint64_t http_admin_turn(struct http_admin *a)
{
    if (!a || a->accepting || atomic_load(&a->sh->stop))
        return UINT64_MAX;
    if (a->t->now_ms < a->resume_ms)
        return a->resume_ms;
    arm_accept(a);
    return UINT64_MAX;
}

struct mbuf {
    char *p;
    size_t len, cap;
};

__attribute__((format(printf, 2, 3))) static void mb_printf(struct mbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->len + 1 >= b->cap)
        return;
    va_start(ap, fmt);
    n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        b->len = b->len + (size_t)n < b->cap ? b->len + (size_t)n : b->cap - 1; /* no NUL */
}

static uint64_t sum(const struct http_shared *sh, size_t off)
{
    uint64_t s = 0;

    for (unsigned i = 0; i < sh->nworkers; i++)
        s += atomic_load_explicit((const _Atomic uint64_t *)((const char *)&sh->stats[i] + off),
                                  memory_order_relaxed);
    return s;
}

#define SUM(sh, field) sum((sh), offsetof(struct http_stats, field))

static void metric(struct mbuf *b, const char *name, const char *type, const char *help, uint64_t v)
{
    mb_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
              (unsigned long long)v);
}

/*
 * Hits per edge rule and action: the rule's kind of answer, and "edit" for
 * its other actions; a rate_limit's are "rate_limited" (answered 429) and
 * "rate_limit_allowed" (let through).
 */
static void rule_metrics(const struct http_shared *sh, struct mbuf *b)
{
    /* the newest generation, which this thread may use until its next loop turn */
    const struct http_gen *g = atomic_load(&((struct http_shared *)sh)->gen);
    const struct cfg_rules *rs = g ? g->cfg->rules : NULL;

    if (!rs || !rs->n)
        return;
    mb_printf(b, "# HELP ringproxy_rule_hits_total Requests a rule matched, by what it did: "
                 "answered (its action), changed (edit), or let through or refused by its "
                 "rate_limit (rate_limit_allowed, rate_limited) or basic_auth "
                 "(basic_auth_allowed, basic_auth_refused, basic_auth_throttled).\n"
                 "# TYPE ringproxy_rule_hits_total counter\n");
    for (size_t i = 0; i < rs->n; i++) {
        const struct cfg_erule *r = &rs->v[i];
        int edits = r->req_hdrs.n || r->resp_hdrs.n || r->rewrite.kind != CFG_RW_NONE;

        for (unsigned k = 0; k < HTTP_RULE_SLOTS; k++) {
            const char *action = k == CFG_RK_NONE   ? "edit"
                                 : k < CFG_RK_COUNT ? cfg_rule_kind_names[k]
                                                    : NULL;
            uint64_t v = 0;

            int auth = r->kind == CFG_RK_BASIC_AUTH;

            if (k == CFG_RK_NONE        ? !edits
                : k == HTTP_RULE_PASSED ? r->kind != CFG_RK_RATE_LIMIT && !auth
                : auth                  ? k != CFG_RK_BASIC_AUTH && k != CFG_RK_RATE_LIMIT
                                        : k != r->kind)
                continue;
            if (r->kind == CFG_RK_RATE_LIMIT && k != CFG_RK_NONE)
                action = k == HTTP_RULE_PASSED ? "rate_limit_allowed" : "rate_limited";
            /* a basic_auth's 429 (too many password checks) is in its rate_limit slot */
            if (auth && k != CFG_RK_NONE)
                action = k == HTTP_RULE_PASSED    ? "basic_auth_allowed"
                         : k == CFG_RK_BASIC_AUTH ? "basic_auth_refused"
                                                  : "basic_auth_throttled";
            for (unsigned j = 0; j < sh->nworkers; j++)
                v += atomic_load_explicit(
                    &g->rule_hits[j * g->rule_stride + i * HTTP_RULE_SLOTS + k],
                    memory_order_relaxed);
            mb_printf(b, "ringproxy_rule_hits_total{rule=\"%s\",action=\"%s\"} %llu\n", r->label,
                      action, (unsigned long long)v);
        }
    }
}

size_t http_admin_metrics(const struct http_shared *sh, char *buf, size_t cap)
{
    struct mbuf b = {buf, 0, cap};
    static const char *const cls[6] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
    uint64_t changes, cum = 0;
    int failing;

    mb_printf(&b, "# HELP ringproxy_requests_total Requests answered, by status class.\n"
                  "# TYPE ringproxy_requests_total counter\n");
    for (int i = 0; i < 6; i++)
        mb_printf(&b, "ringproxy_requests_total{class=\"%s\"} %llu\n", cls[i],
                  (unsigned long long)SUM(sh, requests[i]));
    metric(&b, "ringproxy_client_bytes_received_total", "counter", "Bytes received from clients.",
           SUM(sh, bytes_in));
    metric(&b, "ringproxy_client_bytes_sent_total", "counter", "Bytes sent to clients.",
           SUM(sh, bytes_out));
    metric(&b, "ringproxy_client_connections", "gauge", "Open client connections.",
           SUM(sh, clients_active));
    metric(&b, "ringproxy_client_connections_accepted_total", "counter",
           "Client connections accepted.", SUM(sh, clients_accepted));
    metric(&b, "ringproxy_client_connections_refused_total", "counter",
           "Client connections refused over client.max_connections or while draining.",
           SUM(sh, clients_refused));
    metric(&b, "ringproxy_upstream_connections", "gauge", "Open upstream connections.",
           SUM(sh, upstreams_active));
    metric(&b, "ringproxy_upstream_pool_idle", "gauge", "Idle upstream connections in the pools.",
           SUM(sh, pool_idle));
    metric(&b, "ringproxy_upstream_connects_total", "counter", "Upstream connections opened.",
           SUM(sh, upstream_connects));
    metric(&b, "ringproxy_upstream_reuses_total", "counter",
           "Requests sent over a pooled upstream connection.", SUM(sh, upstream_reuses));
    metric(&b, "ringproxy_upstream_retries_total", "counter",
           "Requests retried after a pooled connection turned out closed.",
           SUM(sh, upstream_retries));
    mb_printf(&b, "# HELP ringproxy_upstream_failures_total Upstream failures, by reason.\n"
                  "# TYPE ringproxy_upstream_failures_total counter\n");
    for (int i = 0; i < HT_COUNT; i++)
        if (http_terms[i].reason)
            mb_printf(&b, "ringproxy_upstream_failures_total{reason=\"%s\"} %llu\n",
                      http_terms[i].reason, (unsigned long long)SUM(sh, upstream_failures[i]));
    rule_metrics(sh, &b);
    const struct http_gen *g = atomic_load(&((struct http_shared *)sh)->gen);
    static const char *const reload_res[] = {[HTTP_RELOAD_OK] = "ok",
                                             [HTTP_RELOAD_FAILED] = "failed",
                                             [HTTP_RELOAD_UNCHANGED] = "unchanged"};

    mb_printf(&b, "# HELP ringproxy_config_reloads_total Config reloads (SIGHUP, or the config "
                  "folder changed), by result: ok (applied), failed (invalid: the running config "
                  "stays), unchanged (nothing to apply).\n"
                  "# TYPE ringproxy_config_reloads_total counter\n");
    for (int r = HTTP_RELOAD_OK; r <= HTTP_RELOAD_UNCHANGED; r++)
        mb_printf(&b, "ringproxy_config_reloads_total{result=\"%s\"} %llu\n", reload_res[r],
                  (unsigned long long)atomic_load(&((struct http_shared *)sh)->reloads[r]));
    if (g)
        mb_printf(&b,
                  "# HELP ringproxy_config_info The config new requests run on: its hash "
                  "(proxy.json and the files it names) and generation (1 at start, one more "
                  "per reload applied).\n"
                  "# TYPE ringproxy_config_info gauge\n"
                  "ringproxy_config_info{hash=\"%016llx\",generation=\"%llu\"} 1\n",
                  (unsigned long long)g->hash, (unsigned long long)g->id);
    if (g && g->auth) {
        static const char *const res[] = {
            [HTTP_AUTH_OK] = "ok", [HTTP_AUTH_BAD] = "bad", [HTTP_AUTH_LATE] = "late"};

        mb_printf(&b, "# HELP ringproxy_auth_checks_total basic_auth password checks by the "
                      "helper threads, by result (late: waited past its deadline, not run).\n"
                      "# TYPE ringproxy_auth_checks_total counter\n");
        for (int r = HTTP_AUTH_OK; r <= HTTP_AUTH_LATE; r++)
            mb_printf(&b, "ringproxy_auth_checks_total{result=\"%s\"} %llu\n", res[r],
                      (unsigned long long)http_auth_checks(g->auth, (enum http_auth_result)r));
        metric(&b, "ringproxy_auth_queued", "gauge",
               "basic_auth password checks waiting for a helper thread.",
               http_auth_queued(g->auth));
    }
    metric(&b, "ringproxy_access_log_dropped_total", "counter",
           "Access-log lines dropped because stdout did not keep up.", SUM(sh, log_dropped));
    metric(&b, "ringproxy_recv_buffer_waits_total", "counter",
           "Receives that found every receive buffer in use and waited for one.",
           SUM(sh, recv_buffer_waits));
    metric(&b, "ringproxy_accept_pauses_total", "counter",
           "Times a worker stopped accepting for want of descriptors or memory.",
           SUM(sh, accept_pauses));
    metric(&b, "ringproxy_buffer_sweeps_total", "counter",
           "Times more than half a worker's receive buffers were held and waiting bytes were "
           "moved out of them.",
           SUM(sh, buffer_sweeps));
    net_resolver_state(sh->resolver, &changes, &failing);
    metric(&b, "ringproxy_resolver_changes_total", "counter",
           "Times the upstream address set changed.", changes);
    metric(&b, "ringproxy_resolver_failing", "gauge",
           "1 while the last resolution failed (the last good answer is kept).", (uint64_t)failing);
    metric(&b, "ringproxy_draining", "gauge", "1 while shutting down.",
           (uint64_t)atomic_load(&sh->draining));
    mb_printf(&b, "# HELP ringproxy_request_duration_seconds Request duration, first byte to "
                  "last byte sent.\n# TYPE ringproxy_request_duration_seconds histogram\n");
    for (int i = 0; i <= HTTP_HIST_BUCKETS; i++) {
        cum += SUM(sh, hist[i]);
        if (i < HTTP_HIST_BUCKETS)
            mb_printf(&b, "ringproxy_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                      http_hist_bounds_ms[i] / 1000.0, (unsigned long long)cum);
        else
            mb_printf(&b, "ringproxy_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                      (unsigned long long)cum);
    }
    mb_printf(&b, "ringproxy_request_duration_seconds_sum %.6f\n",
              (double)SUM(sh, hist_sum_us) / 1e6);
    mb_printf(&b, "ringproxy_request_duration_seconds_count %llu\n", (unsigned long long)cum);
    return b.len;
}

static int healthy(const struct http_shared *sh)
{
    struct timespec ts;
    uint64_t now;

    if (atomic_load(&sh->draining))
        return 0;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    now = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    /* Each loop turns at least once a second when idle; 5 s of silence is a stuck worker. */
    for (unsigned i = 0; i < sh->nworkers; i++)
        if (now > atomic_load(&sh->stats[i].last_turn_ms) + 5000 ||
            atomic_load(&sh->stats[i].accept_paused))
            return 0;
    return 1;
}

static void respond(struct http_admin *a, struct admin_conn *c)
{
    /* room for every metric, with four lines per edge rule (label up to 64 bytes) */
    const struct http_gen *gen = atomic_load(&a->sh->gen);
    const size_t body_cap = 64 * 1024 + (gen && gen->cfg->rules ? gen->cfg->rules->n * 4 * 160 : 0);
    char *body = malloc(body_cap);
    const char *status = "200 OK", *ctype = "text/plain; charset=utf-8";
    size_t blen = 0;
    int head_only = !strncmp(c->req, "HEAD ", 5);
    struct io_uring_sqe *sqe;
    int n;

    c->out = malloc(body_cap + 256);
    if (!body || !c->out) {
        free(body);
        conn_free(a, c);
        return;
    }
    if (!strncmp(c->req, "GET /healthz ", 13) || !strncmp(c->req, "HEAD /healthz ", 14)) {
        int ok = healthy(a->sh);
        status = ok ? "200 OK" : "503 Service Unavailable";
        blen = (size_t)snprintf(body, body_cap, ok ? "ok\n" : "unavailable\n");
    } else if (!strncmp(c->req, "GET /metrics ", 13) || !strncmp(c->req, "HEAD /metrics ", 14)) {
        ctype = "text/plain; version=0.0.4; charset=utf-8";
        blen = http_admin_metrics(a->sh, body, body_cap);
    } else if (!strncmp(c->req, "GET ", 4) || !strncmp(c->req, "HEAD ", 5)) {
        status = "404 Not Found";
        blen = (size_t)snprintf(body, body_cap, "not found: try /healthz or /metrics\n");
    } else {
        status = "405 Method Not Allowed";
        blen = (size_t)snprintf(body, body_cap, "method not allowed\n");
    }
    n = snprintf(c->out, 256,
                 "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: "
                 "close\r\n\r\n",
                 status, ctype, blen);
    if (!head_only)
        memcpy(c->out + n, body, blen);
    c->outlen = (size_t)n + (head_only ? 0 : blen);
    free(body);
    c->op.kind = OPK_ADMIN_SEND;
    sqe = linked_sqe(a);
    io_uring_prep_send(sqe, c->fd, c->out, c->outlen, MSG_NOSIGNAL);
    io_uring_sqe_set_data(sqe, &c->op);
    link_timeout(a, sqe);
}

static void arm_recv(struct http_admin *a, struct admin_conn *c)
{
    struct io_uring_sqe *sqe = linked_sqe(a);

    c->op.kind = OPK_ADMIN_RECV;
    io_uring_prep_recv(sqe, c->fd, c->req + c->len, ADMIN_REQ_MAX - 1 - c->len, 0);
    io_uring_sqe_set_data(sqe, &c->op);
    link_timeout(a, sqe);
}

void http_admin_cqe(struct http_admin *a, struct core_op *op, const struct io_uring_cqe *cqe)
{
    struct admin_conn *c;

    if (op == &a->op_accept) {
        if (!(cqe->flags & IORING_CQE_F_MORE))
            a->accepting = 0;
        if (cqe->res >= 0) {
            c = a->nconns < ADMIN_CONNS_MAX ? calloc(1, sizeof(*c)) : NULL;
            if (!c) {
                (void)close(cqe->res);
            } else {
                a->nconns++;
                c->fd = cqe->res;
                c->next = a->conns;
                if (a->conns)
                    a->conns->prev = c;
                a->conns = c;
                arm_recv(a, c);
            }
        }
        if (cqe->res == -EMFILE || cqe->res == -ENFILE || cqe->res == -ENOBUFS ||
            cqe->res == -ENOMEM) {
            /* do not fail again in a loop: http_admin_turn() tries again later */
            a->resume_ms = a->t->now_ms + 100;
            if (a->accepting) {
                struct io_uring_sqe *sqe = core_sqe(a->t);

                io_uring_prep_cancel(sqe, &a->op_accept, 0);
                io_uring_sqe_set_data64(sqe, CORE_UD_IGNORE);
            }
            return;
        }
        if (!a->accepting && cqe->res != -ECANCELED && !atomic_load(&a->sh->stop))
            arm_accept(a);
        return;
    }
    c = (struct admin_conn *)op;
    if (op->kind == OPK_ADMIN_RECV) {
        if (cqe->res <= 0) {
            conn_free(a, c);
            return;
        }
        c->len += (size_t)cqe->res;
        c->req[c->len] = '\0';
        if (strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n")) {
            respond(a, c);
        } else if (c->len >= ADMIN_REQ_MAX - 1) {
            conn_free(a, c);
        } else {
            arm_recv(a, c);
        }
        return;
    }
    if (cqe->res > 0 && (c->sent += (size_t)cqe->res) < c->outlen) {
        struct io_uring_sqe *sqe = linked_sqe(a);
        io_uring_prep_send(sqe, c->fd, c->out + c->sent, c->outlen - c->sent, MSG_NOSIGNAL);
        io_uring_sqe_set_data(sqe, &c->op);
        link_timeout(a, sqe);
        return;
    }
    conn_free(a, c);
}
