/*
 * End to end: the admin listener (C2). /healthz (200 while the workers turn,
 * 503 while draining), /metrics in the Prometheus text format (every line a
 * sample or a comment, HELP and TYPE for every family, counters that count,
 * a cumulative histogram), 404/405 for the rest, loopback only.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/logging.h>

#include "tests/e2e/fixture.h"
#include "tests/e2e/netns.h"

/* GET path from the admin listener; the body NUL-terminated in r->body. */
static int admin_get(unsigned port, const char *method, const char *path, struct h_resp *r)
{
    char req[256];
    int rc;

    snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", method, path);
    rc = h_roundtrip(port, req, r);
    if (rc == 0) {
        r->body = realloc(r->body, r->body_len + 1);
        r->body[r->body_len] = '\0';
    }
    return rc;
}

/* ---- a small Prometheus text-format (0.0.4) reader ------------------------- */

#define MAX_SAMPLES 256
#define MAX_FAMILIES 64

struct sample {
    char name[96];
    char labels[128]; /* as written, without braces */
    double v;
};

struct family {
    char name[96];
    char type[16];
    int help;
};

struct expo {
    struct sample s[MAX_SAMPLES];
    int ns;
    struct family f[MAX_FAMILIES];
    int nf;
};

static int name_ok(const char *p, size_t n)
{
    if (!n || !(isalpha((unsigned char)p[0]) || p[0] == '_' || p[0] == ':'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)p[i]) || p[i] == '_' || p[i] == ':'))
            return 0;
    return 1;
}

static struct family *family_of(struct expo *e, const char *name, int create)
{
    for (int i = 0; i < e->nf; i++)
        if (!strcmp(e->f[i].name, name))
            return &e->f[i];
    if (!create || e->nf == MAX_FAMILIES)
        return NULL;
    snprintf(e->f[e->nf].name, sizeof(e->f[0].name), "%s", name);
    return &e->f[e->nf++];
}

/* The family a sample belongs to: histograms add _bucket, _sum, _count. */
static struct family *family_for_sample(struct expo *e, const char *name)
{
    static const char *const sfx[] = {"_bucket", "_sum", "_count"};
    struct family *f = family_of(e, name, 0);
    char base[96];

    if (f)
        return f;
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(name), k = strlen(sfx[i]);
        if (n > k && !strcmp(name + n - k, sfx[i])) {
            snprintf(base, sizeof(base), "%.*s", (int)(n - k), name);
            f = family_of(e, base, 0);
            if (f && !strcmp(f->type, "histogram"))
                return f;
        }
    }
    return NULL;
}

/* Labels: key="value"(,key="value")*, values without escapes here. */
static int labels_ok(const char *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        size_t k = i;
        while (k < n && p[k] != '=')
            k++;
        if (k == n || !name_ok(p + i, k - i) || k + 1 >= n || p[k + 1] != '"')
            return 0;
        k += 2;
        while (k < n && p[k] != '"') {
            if (p[k] == '\\')
                k++;
            k++;
        }
        if (k >= n)
            return 0;
        k++;
        if (k < n && p[k] != ',')
            return 0;
        i = k + (k < n);
    }
    return 1;
}

/* Parse the whole body; every problem fails the test with the line. */
static void expo_parse(const char *body, struct expo *e)
{
    char line[512];
    int lineno = 0;

    memset(e, 0, sizeof(*e));
    cr_assert(body[0] && body[strlen(body) - 1] == '\n', "the exposition ends with a newline");
    for (const char *p = body; *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = (size_t)(nl - p);

        lineno++;
        cr_assert(n < sizeof(line), "line %d too long", lineno);
        memcpy(line, p, n);
        line[n] = '\0';
        p = nl + 1;
        cr_assert(n > 0, "line %d is empty", lineno);
        if (line[0] == '#') {
            char kw[8], name[96], rest[400];
            struct family *f;

            cr_assert_eq(sscanf(line, "# %7s %95s %399[^\n]", kw, name, rest), 3,
                         "line %d: a comment that is neither HELP nor TYPE: %s", lineno, line);
            cr_assert(name_ok(name, strlen(name)), "line %d: metric name %s", lineno, name);
            f = family_of(e, name, 1);
            cr_assert(f);
            if (!strcmp(kw, "HELP")) {
                cr_assert(!f->help, "line %d: second HELP for %s", lineno, name);
                f->help = 1;
            } else {
                cr_assert_str_eq(kw, "TYPE", "line %d: %s", lineno, line);
                cr_assert(!f->type[0], "line %d: second TYPE for %s", lineno, name);
                cr_assert(!strcmp(rest, "counter") || !strcmp(rest, "gauge") ||
                              !strcmp(rest, "histogram") || !strcmp(rest, "summary") ||
                              !strcmp(rest, "untyped"),
                          "line %d: type %s", lineno, rest);
                cr_assert_lt(strlen(rest), sizeof(f->type));
                memcpy(f->type, rest, strlen(rest) + 1);
            }
            continue;
        }
        {
            struct sample *s;
            struct family *f;
            const char *sp = strchr(line, ' '), *br = strchr(line, '{');
            size_t namelen;
            char *end;

            cr_assert(sp, "line %d: no value: %s", lineno, line);
            cr_assert_lt(e->ns, MAX_SAMPLES);
            s = &e->s[e->ns++];
            if (br && br < sp) {
                const char *cl = strchr(br, '}');
                cr_assert(cl && cl + 1 == sp, "line %d: labels: %s", lineno, line);
                cr_assert(labels_ok(br + 1, (size_t)(cl - br - 1)), "line %d: labels: %s", lineno,
                          line);
                snprintf(s->labels, sizeof(s->labels), "%.*s", (int)(cl - br - 1), br + 1);
                namelen = (size_t)(br - line);
            } else {
                namelen = (size_t)(sp - line);
            }
            cr_assert(name_ok(line, namelen), "line %d: name: %s", lineno, line);
            snprintf(s->name, sizeof(s->name), "%.*s", (int)namelen, line);
            errno = 0;
            s->v = strtod(sp + 1, &end);
            cr_assert(end != sp + 1 && *end == '\0' && !errno, "line %d: value: %s", lineno, line);
            f = family_for_sample(e, s->name);
            cr_assert(f, "line %d: %s comes before its # HELP / # TYPE", lineno, s->name);
            cr_assert(f->help && f->type[0], "line %d: family %s lacks HELP or TYPE", lineno,
                      f->name);
            cr_assert(!strncmp(s->name, "ringproxy_", 10), "line %d: %s", lineno, s->name);
            for (int i = 0; i < e->ns - 1; i++)
                cr_assert(strcmp(e->s[i].name, s->name) || strcmp(e->s[i].labels, s->labels),
                          "line %d: duplicate sample %s{%s}", lineno, s->name, s->labels);
        }
    }
}

/* Value of name{labels} (labels "" = none); NAN when absent. */
static double expo_get(const struct expo *e, const char *name, const char *labels)
{
    for (int i = 0; i < e->ns; i++)
        if (!strcmp(e->s[i].name, name) && !strcmp(e->s[i].labels, labels))
            return e->s[i].v;
    return NAN;
}

static void scrape(unsigned port, struct expo *e)
{
    struct h_resp r;
    char v[128];

    cr_assert_eq(admin_get(port, "GET", "/metrics", &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(h_header(r.head, "Content-Type", v, sizeof(v)), 0);
    cr_assert(!strncmp(v, "text/plain; version=0.0.4", 25), "Content-Type: %s", v);
    expo_parse(r.body, e);
    h_resp_free(&r);
}

/* The histogram's buckets: le ascending, counts cumulative, +Inf last and == _count. */
static double check_histogram(const struct expo *e, const char *name)
{
    char bucket[128], count[128], sum[128];
    double prev_le = -INFINITY, prev = 0, inf = NAN, c;
    int nb = 0;

    snprintf(bucket, sizeof(bucket), "%s_bucket", name);
    snprintf(count, sizeof(count), "%s_count", name);
    snprintf(sum, sizeof(sum), "%s_sum", name);
    for (int i = 0; i < e->ns; i++) {
        double le;

        if (strcmp(e->s[i].name, bucket))
            continue;
        cr_assert(!strncmp(e->s[i].labels, "le=\"", 4), "%s{%s}", bucket, e->s[i].labels);
        cr_assert(isnan(inf), "a bucket after le=\"+Inf\"");
        le = !strcmp(e->s[i].labels, "le=\"+Inf\"") ? INFINITY : strtod(e->s[i].labels + 4, NULL);
        cr_assert_gt(le, prev_le, "bucket bounds ascend");
        cr_assert_geq(e->s[i].v, prev, "buckets are cumulative (le=%g)", le);
        prev_le = le;
        prev = e->s[i].v;
        if (isinf(le))
            inf = e->s[i].v;
        nb++;
    }
    cr_assert_geq(nb, 2);
    cr_assert(!isnan(inf), "%s has no le=\"+Inf\" bucket", name);
    c = expo_get(e, count, "");
    cr_assert_eq(inf, c, "+Inf bucket %g == _count %g", inf, c);
    cr_assert_geq(expo_get(e, sum, ""), 0);
    return c;
}

/* ---- tests ------------------------------------------------------------------ */

Test(e2e_admin, healthz_ok, .init = fx_up, .fini = fx_down)
{
    struct h_resp r;
    char v[64];

    cr_assert_eq(admin_get(px.admin_port, "GET", "/healthz", &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "ok\n");
    h_resp_free(&r);
    cr_assert_eq(admin_get(px.admin_port, "HEAD", "/healthz", &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 0);
    cr_assert_eq(h_header(r.head, "Content-Length", v, sizeof(v)), 0);
    cr_assert_str_eq(v, "3");
    h_resp_free(&r);
}

Test(e2e_admin, unknown_path_404_other_method_405, .init = fx_up, .fini = fx_down)
{
    struct h_resp r;

    cr_assert_eq(admin_get(px.admin_port, "GET", "/nope", &r), 0);
    cr_assert_eq(r.status, 404);
    h_resp_free(&r);
    cr_assert_eq(admin_get(px.admin_port, "GET", "/healthzz", &r), 0);
    cr_assert_eq(r.status, 404);
    h_resp_free(&r);
    cr_assert_eq(admin_get(px.admin_port, "POST", "/metrics", &r), 0);
    cr_assert_eq(r.status, 405);
    h_resp_free(&r);
    /* the admin listener never proxies */
    cr_assert_eq(origin_requests(origin), 0);
}

Test(e2e_admin, metrics_exposition_is_well_formed, .init = fx_up, .fini = fx_down)
{
    static const char *const families[][2] = {
        {"ringproxy_requests_total", "counter"},
        {"ringproxy_client_bytes_received_total", "counter"},
        {"ringproxy_client_bytes_sent_total", "counter"},
        {"ringproxy_client_connections", "gauge"},
        {"ringproxy_client_connections_accepted_total", "counter"},
        {"ringproxy_client_connections_refused_total", "counter"},
        {"ringproxy_upstream_connections", "gauge"},
        {"ringproxy_upstream_pool_idle", "gauge"},
        {"ringproxy_upstream_connects_total", "counter"},
        {"ringproxy_upstream_reuses_total", "counter"},
        {"ringproxy_upstream_retries_total", "counter"},
        {"ringproxy_upstream_failures_total", "counter"},
        {"ringproxy_access_log_dropped_total", "counter"},
        {"ringproxy_resolver_changes_total", "counter"},
        {"ringproxy_resolver_failing", "gauge"},
        {"ringproxy_draining", "gauge"},
        {"ringproxy_request_duration_seconds", "histogram"},
    };
    static struct expo e;
    struct h_resp r;

    cr_assert_eq(h_roundtrip(px.port, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", &r), 0);
    h_resp_free(&r);
    scrape(px.admin_port, &e);
    for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
        struct family *f = family_of(&e, families[i][0], 0);
        cr_assert(f, "family %s missing", families[i][0]);
        cr_assert_str_eq(f->type, families[i][1], "%s", f->name);
    }
    for (int i = 0; i < e.nf; i++) {
        size_t n = strlen(e.f[i].name);
        if (!strcmp(e.f[i].type, "counter"))
            cr_assert(n > 6 && !strcmp(e.f[i].name + n - 6, "_total"),
                      "counter %s should end in _total", e.f[i].name);
        cr_assert(e.f[i].help && e.f[i].type[0], "%s", e.f[i].name);
    }
    for (int i = 0; i < e.ns; i++)
        cr_assert(e.s[i].v >= 0 && !isnan(e.s[i].v), "%s{%s} %g", e.s[i].name, e.s[i].labels,
                  e.s[i].v);
    /* every status class and every failure reason is always present */
    for (const char *const *c =
             (const char *const[]){"none", "1xx", "2xx", "3xx", "4xx", "5xx", NULL};
         *c; c++) {
        char l[32];
        snprintf(l, sizeof(l), "class=\"%s\"", *c);
        cr_assert(!isnan(expo_get(&e, "ringproxy_requests_total", l)), "%s", l);
    }
    for (const char *const *c =
             (const char *const[]){"connect_refused", "connect_timeout", "response_timeout",
                                   "reset", "bad_response", "no_address", NULL};
         *c; c++) {
        char l[48];
        snprintf(l, sizeof(l), "reason=\"%s\"", *c);
        cr_assert(!isnan(expo_get(&e, "ringproxy_upstream_failures_total", l)), "%s", l);
    }
    cr_assert_eq(check_histogram(&e, "ringproxy_request_duration_seconds"), 1);
}

/* Scrape until the 2xx+4xx+5xx classes reached want (the counters move at the end of an exchange).
 */
static void scrape_until(unsigned port, struct expo *e, double want)
{
    long end = h_now_ms() + 1000;

    for (;;) {
        double n;

        scrape(port, e);
        n = expo_get(e, "ringproxy_requests_total", "class=\"2xx\"") +
            expo_get(e, "ringproxy_requests_total", "class=\"4xx\"") +
            expo_get(e, "ringproxy_requests_total", "class=\"5xx\"");
        if (n >= want || h_now_ms() > end)
            return;
        h_msleep(10);
    }
}

Test(e2e_admin, metrics_count_requests_bytes_and_reuse, .init = fx_up, .fini = fx_down)
{
    static struct expo a, b;
    static const char *const reqs[] = {
        "GET /size/1000 HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /status/404 HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /status/503 HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /size/10 HTTP/1.1\r\nHost: a\r\n\r\n",
    };
    size_t sent = 0, got = 0;
    struct h_resp r;
    long end = h_now_ms() + 5000;
    int fd;

    /*
     * The start-up check's connection (h_proxy_start) is counted when a
     * worker gets to its accept, which can be after the first scrape: wait
     * for it, or it would count as this test's.
     */
    do
        scrape(px.admin_port, &a);
    while (expo_get(&a, "ringproxy_client_connections_accepted_total", "") < 1 &&
           h_now_ms() < end && (h_msleep(10), 1));
    fd = h_connect(px.port);
    cr_assert(fd >= 0);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(h_sends(fd, reqs[i]), 0);
        cr_assert_eq(h_read_response(fd, &r, 0), 0);
        sent += strlen(reqs[i]);
        got += strlen(r.head) + r.body_len;
        h_resp_free(&r);
    }
    h_close(fd);
    scrape_until(px.admin_port, &b, 4);
#define D(name, labels) (expo_get(&b, (name), (labels)) - expo_get(&a, (name), (labels)))
    cr_assert_eq(D("ringproxy_requests_total", "class=\"2xx\""), 2);
    cr_assert_eq(D("ringproxy_requests_total", "class=\"4xx\""), 1);
    cr_assert_eq(D("ringproxy_requests_total", "class=\"5xx\""), 1);
    cr_assert_eq(D("ringproxy_requests_total", "class=\"3xx\""), 0);
    cr_assert_eq(D("ringproxy_client_bytes_received_total", ""), (double)sent);
    cr_assert_eq(D("ringproxy_client_bytes_sent_total", ""), (double)got);
    cr_assert_eq(D("ringproxy_client_connections_accepted_total", ""), 1);
    /* one connection upstream, three requests over it from the pool (C11) */
    cr_assert_eq(D("ringproxy_upstream_connects_total", ""), 1);
    cr_assert_eq(D("ringproxy_upstream_reuses_total", ""), 3);
    cr_assert_eq(expo_get(&b, "ringproxy_upstream_pool_idle", ""), 1);
    cr_assert_eq(expo_get(&b, "ringproxy_upstream_connections", ""), 1);
    cr_assert_eq(origin_accepts(origin), 1);
    cr_assert_eq(D("ringproxy_request_duration_seconds_count", ""), 4);
    cr_assert_gt(D("ringproxy_request_duration_seconds_sum", ""), 0);
    cr_assert_eq(check_histogram(&b, "ringproxy_request_duration_seconds"),
                 check_histogram(&a, "ringproxy_request_duration_seconds") + 4);
    cr_assert_eq(expo_get(&b, "ringproxy_draining", ""), 0);
#undef D
}

Test(e2e_admin, metrics_count_upstream_failures, .fini = fx_down)
{
    struct h_resp r;
    static struct expo e;

    origin = NULL;
    h_proxy_start(&px, h_free_port(), NULL, NULL);
    cr_assert_eq(h_roundtrip(px.port, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", &r), 0);
    cr_assert_eq(r.status, 502);
    h_resp_free(&r);
    scrape_until(px.admin_port, &e, 1);
    cr_assert_eq(expo_get(&e, "ringproxy_upstream_failures_total", "reason=\"connect_refused\""),
                 1);
    cr_assert_eq(expo_get(&e, "ringproxy_requests_total", "class=\"5xx\""), 1);
}

Test(e2e_admin, healthz_503_while_draining, .init = fx_up, .fini = fx_down)
{
    struct h_resp r, h;
    int fd = h_connect(px.port);

    cr_assert(fd >= 0);
    cr_assert_eq(h_sends(fd, "GET /sleep/1500 HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    h_msleep(150);
    cr_assert_eq(admin_get(px.admin_port, "GET", "/healthz", &h), 0);
    cr_assert_eq(h.status, 200);
    h_resp_free(&h);
    kill(px.pid, SIGTERM);
    h_msleep(100);
    cr_assert_eq(admin_get(px.admin_port, "GET", "/healthz", &h), 0,
                 "the admin listener answers during the drain");
    cr_assert_eq(h.status, 503, "/healthz during the drain: %d %s", h.status, h.body);
    h_resp_free(&h);
    cr_assert_eq(admin_get(px.admin_port, "GET", "/metrics", &h), 0);
    cr_assert(strstr(h.body, "\nringproxy_draining 1\n"), "%s", h.body);
    h_resp_free(&h);
    cr_assert_eq(h_read_response(fd, &r, 0), 0, "the in-flight request completes");
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    h_close(fd);
    cr_assert_eq(h_proxy_stop(&px), 0);
}

/* Run ringproxy expecting it to refuse to start; returns its stderr (malloc'd). */
static char *run_refused(const char *admin_flag, const char *json)
{
    char dir[] = "/tmp/rp-admin-XXXXXX", path[96], listen[32];
    const char *args[] = {"--config",  dir,          "--listen",
                          listen,      "--upstream", "127.0.0.1:1",
                          "--workers", "1",          admin_flag ? "--admin" : NULL,
                          admin_flag,  NULL};
    int status;
    char *err;

    cr_assert(mkdtemp(dir));
    if (json) {
        FILE *f;
        snprintf(path, sizeof(path), "%s/proxy.json", dir);
        f = fopen(path, "w");
        cr_assert(f);
        fputs(json, f);
        fclose(f);
    }
    snprintf(path, sizeof(path), "%s/err", dir);
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", h_free_port());
    status = h_reap(h_spawn(args, NULL, path), 3000);
    err = h_slurp(path);
    cr_assert(status != -1, "ringproxy started with a non-loopback admin address: %s", err);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) != 0, "exit status %d", status);
    (void)unlink(path);
    snprintf(path, sizeof(path), "%s/proxy.json", dir);
    (void)unlink(path);
    (void)rmdir(dir);
    return err;
}

Test(e2e_admin, non_loopback_admin_is_refused)
{
    static const char *const bad[] = {"0.0.0.0", "[::]", "192.0.2.1"};
    char flag[48];
    char *err;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(flag, sizeof(flag), "%s:%u", bad[i], h_free_port());
        err = run_refused(flag, NULL);
        cr_assert(strstr(err, "loopback"), "--admin %s: %s", flag, err);
        free(err);
    }
    err = run_refused(NULL, "{\"admin\": {\"listen\": \"0.0.0.0:9000\"}}");
    cr_assert(strstr(err, "loopback"), "admin.listen 0.0.0.0:9000: %s", err);
    free(err);
}

Test(e2e_admin, any_loopback_address_is_accepted, .fini = fx_down)
{
    char flag[32];
    const char *args[] = {"--admin", flag, NULL};
    struct h_resp r;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    unsigned port = h_free_port();
    int fd;

    snprintf(flag, sizeof(flag), "127.0.0.2:%u", port);
    fx_start(NULL, args); /* the last --admin wins */
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(0x7f000002);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "%s", strerror(errno));
    cr_assert_eq(h_sends(fd, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    h_close(fd);
}

static int connect_to(const char *ip, unsigned port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    inet_pton(AF_INET, ip, &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Section's module metadata: metrics at /metrics on port 9000, on loopback only (C2). */
Test(e2e_admin, default_admin_is_loopback_port_9000)
{
    char dir[] = "/tmp/rp-admin-XXXXXX", listen[32], path[96];
    const char *args[] = {"--config",    dir,         "--listen", listen, "--upstream",
                          "127.0.0.1:1", "--workers", "1",        NULL};
    struct h_resp r;
    pid_t pid;
    int fd = -1, status;

    if (!netns_private_net())
        cr_skip_test("needs a private network namespace (port 9000 may be taken): %s",
                     strerror(errno));
    cr_assert(mkdtemp(dir));
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", h_free_port());
    snprintf(path, sizeof(path), "%s/err", dir);
    pid = h_spawn(args, NULL, path);
    for (int i = 0; i < 300 && fd < 0; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            cr_assert_fail("ringproxy exited: %s", h_slurp(path));
        fd = connect_to("127.0.0.1", 9000);
        if (fd < 0)
            h_msleep(10);
    }
    cr_assert(fd >= 0, "nothing listens on 127.0.0.1:9000");
    cr_assert_eq(h_sends(fd, "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    h_close(fd);
    /* bound to 127.0.0.1 itself, not to every address */
    fd = connect_to("127.0.0.2", 9000);
    cr_assert_lt(fd, 0, "the admin listener answers on 127.0.0.2: it is not bound to 127.0.0.1");
    kill(pid, SIGTERM);
    (void)h_reap(pid, 5000);
    (void)unlink(path);
    (void)rmdir(dir);
}
