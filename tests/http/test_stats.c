/*
 * Tests for http/stats.c and the /metrics text that http/admin.c renders
 * from every worker's counters: bucket boundaries, sums across workers, and
 * a line-by-line check of the Prometheus text exposition format.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "http/admin.h"
#include "http/proxy.h"
#include "http/stats.h"
#include "net/resolve.h"

/* Which bucket one observation of us microseconds lands in; checks the sum. */
static int bucket_of(uint64_t us)
{
    struct http_stats s;
    int found = -1;

    memset(&s, 0, sizeof(s));
    http_stats_observe(&s, us);
    for (int i = 0; i <= HTTP_HIST_BUCKETS; i++) {
        uint64_t v = STAT_GET(&s, hist[i]);

        cr_assert_leq(v, 1);
        if (v) {
            cr_assert_eq(found, -1, "counted twice");
            found = i;
        }
    }
    cr_assert_eq(STAT_GET(&s, hist_sum_us), us);
    return found;
}

Test(http_stats, bounds_ascending)
{
    for (int i = 1; i < HTTP_HIST_BUCKETS; i++)
        cr_assert_gt(http_hist_bounds_ms[i], http_hist_bounds_ms[i - 1]);
    cr_assert_eq(http_hist_bounds_ms[0], 1);
    cr_assert_eq(http_hist_bounds_ms[HTTP_HIST_BUCKETS - 1], 60000);
}

Test(http_stats, observe_buckets_inclusive_upper_bound)
{
    cr_assert_eq(bucket_of(0), 0);
    cr_assert_eq(bucket_of(1), 0);
    for (int i = 0; i < HTTP_HIST_BUCKETS; i++) {
        uint64_t b = (uint64_t)(http_hist_bounds_ms[i] * 1000.0);

        /* le="bound": a duration equal to the bound is in that bucket. */
        cr_assert_eq(bucket_of(b), i, "%llu us", (unsigned long long)b);
        cr_assert_eq(bucket_of(b + 1), i + 1, "%llu us", (unsigned long long)b + 1);
        if (i)
            cr_assert_eq(bucket_of(b - 1), i, "%llu us", (unsigned long long)b - 1);
    }
    cr_assert_eq(bucket_of(UINT64_MAX / 2), HTTP_HIST_BUCKETS);
}

Test(http_stats, observe_accumulates)
{
    struct http_stats s;

    memset(&s, 0, sizeof(s));
    http_stats_observe(&s, 500);
    http_stats_observe(&s, 700);
    http_stats_observe(&s, 3000);
    cr_assert_eq(STAT_GET(&s, hist[0]), 2);
    cr_assert_eq(STAT_GET(&s, hist[2]), 1);
    cr_assert_eq(STAT_GET(&s, hist_sum_us), 4200);
}

Test(http_stats, stat_macros)
{
    struct http_stats s;

    memset(&s, 0, sizeof(s));
    STAT_INC(&s, clients_active);
    STAT_ADD(&s, clients_active, 4);
    STAT_DEC(&s, clients_active);
    cr_assert_eq(STAT_GET(&s, clients_active), 4);
    STAT_ADD(&s, upstream_failures[HT_UPSTREAM_RESET], 3);
    cr_assert_eq(STAT_GET(&s, upstream_failures[HT_UPSTREAM_RESET]), 3);
}

/* One table names every termination for the log and each upstream failure for the metric. */
Test(http_stats, termination_names)
{
    cr_assert_null(http_term_str(HT_NONE), "a normal end is logged as -");
    for (int t = HT_NONE + 1; t < HT_COUNT; t++) {
        const char *n = http_terms[t].log;
        cr_assert(n && *n, "termination %d has no log name", t);
        for (const char *p = n; *p; p++)
            cr_assert((*p >= 'a' && *p <= 'z') || *p == '_', "%s: not snake_case", n);
        /* exactly the upstream's failures are counted by reason */
        cr_assert_eq(http_terms[t].reason != NULL, t >= HT_UPSTREAM_UNAVAILABLE, "%s", n);
    }
    cr_assert_str_eq(http_term_str(HT_UPSTREAM_CONNECT_REFUSED), "upstream_connect_failed");
    cr_assert_str_eq(http_terms[HT_UPSTREAM_CONNECT_REFUSED].reason, "connect_refused");
    cr_assert_str_eq(http_term_str(HT_UPSTREAM_NO_SOCKET), "upstream_connect_failed");
    cr_assert_str_eq(http_terms[HT_UPSTREAM_NO_SOCKET].reason, "no_socket");
    cr_assert_str_eq(http_terms[HT_UPSTREAM_TIMEOUT].reason, "response_timeout");
    cr_assert_str_eq(http_terms[HT_UPSTREAM_UNAVAILABLE].reason, "no_address");
    cr_assert_str_eq(http_term_str(HT_COUNT), "?");
    cr_assert_str_eq(http_term_str((enum http_term) - 1), "?");
}

/* ---- /metrics ---- */

static struct http_stats st[2];
static struct http_shared sh;
static char text[64 * 1024];
static size_t textlen;

static void shared_up(void)
{
    memset(st, 0, sizeof(st));
    memset(&sh, 0, sizeof(sh));
    sh.nworkers = 2;
    sh.stats = st;
    /* Not started: the admin endpoint only reads its state. */
    sh.resolver = net_resolver_new("127.0.0.1", "80", 1000, 2);
    cr_assert_not_null(sh.resolver);
}

static void shared_down(void)
{
    net_resolver_free(sh.resolver);
    sh.resolver = NULL;
}

static void render(void)
{
    textlen = http_admin_metrics(&sh, text, sizeof(text));
    cr_assert_gt(textlen, 0);
    cr_assert_lt(textlen, sizeof(text), "output filled the buffer");
    text[textlen] = '\0';
}

/* The value of the sample whose name-and-labels part is exactly key. */
static double sample(const char *key)
{
    size_t kl = strlen(key);

    for (const char *l = text; *l;) {
        const char *e = strchr(l, '\n');

        if (!strncmp(l, key, kl) && l[kl] == ' ')
            return strtod(l + kl + 1, NULL);
        l = e ? e + 1 : l + strlen(l);
    }
    cr_assert_fail("no sample %s in:\n%s", key, text);
    return NAN;
}

struct family {
    char name[128];
    char type[16];
    int help, samples;
};

static struct family fams[64];
static int nfams;

static struct family *family(const char *name, size_t n)
{
    for (int i = 0; i < nfams; i++)
        if (strlen(fams[i].name) == n && !strncmp(fams[i].name, name, n))
            return &fams[i];
    cr_assert_lt(nfams, 64);
    cr_assert_lt(n, sizeof(fams[0].name));
    memcpy(fams[nfams].name, name, n);
    fams[nfams].name[n] = '\0';
    return &fams[nfams++];
}

static int name_char(char c, int first)
{
    return isalpha((unsigned char)c) || c == '_' || c == ':' ||
           (!first && isdigit((unsigned char)c));
}

/* The family a sample belongs to: itself, or a histogram it is a series of. */
static struct family *family_of(const char *name, size_t n)
{
    static const char *const sfx[] = {"_bucket", "_sum", "_count"};

    for (int i = 0; i < nfams; i++)
        if (strlen(fams[i].name) == n && !strncmp(fams[i].name, name, n))
            return &fams[i];
    for (size_t k = 0; k < 3; k++) {
        size_t sl = strlen(sfx[k]);

        if (n > sl && !strncmp(name + n - sl, sfx[k], sl)) {
            for (int i = 0; i < nfams; i++)
                if (strlen(fams[i].name) == n - sl && !strncmp(fams[i].name, name, n - sl) &&
                    !strcmp(fams[i].type, "histogram"))
                    return &fams[i];
        }
    }
    return NULL;
}

/* Parse `{k="v",...}` at p; returns the end or NULL. */
static const char *labels(const char *p, const char *end)
{
    if (p == end || *p != '{')
        return p;
    p++;
    while (p < end && *p != '}') {
        const char *k = p;

        while (p < end && name_char(*p, p == k))
            p++;
        if (p == k || p >= end || *p != '=' || p + 1 >= end || p[1] != '"')
            return NULL;
        p += 2;
        while (p < end && *p != '"') {
            if (*p == '\\')
                p++;
            p++;
        }
        if (p >= end)
            return NULL;
        p++;
        if (p < end && *p == ',')
            p++;
    }
    return p < end ? p + 1 : NULL;
}

/*
 * Every line is a comment (# HELP name text / # TYPE name type) or a sample
 * `name{labels} value`; every family has one HELP and one TYPE before its
 * samples; no sample repeats.
 */
static void check_exposition(void)
{
    static char keys[256][160];
    int nkeys = 0;

    nfams = 0;
    cr_assert_eq(text[textlen - 1], '\n', "the text ends with a newline");
    cr_assert_eq(strlen(text), textlen, "a NUL inside the text");
    for (const char *l = text; *l;) {
        const char *end = strchr(l, '\n'), *p;

        cr_assert_not_null(end);
        cr_assert_gt(end - l, 0, "empty line");
        if (*l == '#') {
            int help = !strncmp(l, "# HELP ", 7), type = !strncmp(l, "# TYPE ", 7);
            struct family *f;
            const char *n;

            cr_assert(help || type, "comment is neither HELP nor TYPE: %.*s", (int)(end - l), l);
            n = p = l + 7;
            while (p < end && name_char(*p, p == n))
                p++;
            cr_assert(p > n && p < end && *p == ' ', "bad name: %.*s", (int)(end - l), l);
            f = family(n, (size_t)(p - n));
            cr_assert_eq(f->samples, 0, "%s: comment after samples", f->name);
            p++;
            if (help) {
                cr_assert_eq(f->help, 0, "%s: two HELP", f->name);
                cr_assert_gt(end - p, 0, "%s: empty HELP", f->name);
                f->help = 1;
            } else {
                cr_assert_str_empty(f->type, "%s: two TYPE", f->name);
                cr_assert_lt(end - p, (long)sizeof(f->type));
                memcpy(f->type, p, (size_t)(end - p));
                f->type[end - p] = '\0';
                cr_assert(!strcmp(f->type, "counter") || !strcmp(f->type, "gauge") ||
                              !strcmp(f->type, "histogram") || !strcmp(f->type, "summary") ||
                              !strcmp(f->type, "untyped"),
                          "%s: type %s", f->name, f->type);
            }
        } else {
            const char *n = l, *v;
            struct family *f;
            char *vend;

            p = l;
            while (p < end && name_char(*p, p == n))
                p++;
            cr_assert_gt(p - n, 0, "bad sample line: %.*s", (int)(end - l), l);
            f = family_of(n, (size_t)(p - n));
            cr_assert_not_null(f, "sample of an undeclared family: %.*s", (int)(end - l), l);
            cr_assert(f->help && f->type[0], "%s: HELP and TYPE must come first", f->name);
            f->samples++;
            p = labels(p, end);
            cr_assert_not_null(p, "bad labels: %.*s", (int)(end - l), l);
            cr_assert(p < end && *p == ' ', "no space before value: %.*s", (int)(end - l), l);
            cr_assert_lt(nkeys, 256);
            cr_assert_lt(p - l, 160);
            memcpy(keys[nkeys], l, (size_t)(p - l));
            keys[nkeys][p - l] = '\0';
            for (int i = 0; i < nkeys; i++)
                cr_assert_str_neq(keys[i], keys[nkeys], "duplicate sample %s", keys[i]);
            nkeys++;
            v = p + 1;
            (void)strtod(v, &vend);
            cr_assert(vend > v && vend == end, "bad value: %.*s", (int)(end - l), l);
        }
        l = end + 1;
    }
    for (int i = 0; i < nfams; i++) {
        cr_assert(fams[i].help, "%s: no HELP", fams[i].name);
        cr_assert(fams[i].type[0], "%s: no TYPE", fams[i].name);
        cr_assert_gt(fams[i].samples, 0, "%s: no samples", fams[i].name);
        if (!strcmp(fams[i].type, "counter"))
            cr_assert(strlen(fams[i].name) > 6 &&
                          !strcmp(fams[i].name + strlen(fams[i].name) - 6, "_total"),
                      "counter %s does not end in _total", fams[i].name);
    }
}

static const char *type_of(const char *name)
{
    for (int i = 0; i < nfams; i++)
        if (!strcmp(fams[i].name, name))
            return fams[i].type;
    return "";
}

Test(http_stats, metrics_valid_exposition_when_zero, .init = shared_up, .fini = shared_down)
{
    render();
    check_exposition();
    cr_assert_eq(sample("ringproxy_requests_total{class=\"2xx\"}"), 0);
    cr_assert_eq(sample("ringproxy_request_duration_seconds_count"), 0);
    cr_assert_eq(sample("ringproxy_request_duration_seconds_bucket{le=\"+Inf\"}"), 0);
}

Test(http_stats, metrics_sum_workers, .init = shared_up, .fini = shared_down)
{
    STAT_ADD(&st[0], requests[2], 3);
    STAT_ADD(&st[1], requests[2], 4);
    STAT_ADD(&st[1], requests[5], 2);
    STAT_ADD(&st[0], requests[0], 1);
    STAT_ADD(&st[0], bytes_in, 1000);
    STAT_ADD(&st[1], bytes_in, 234);
    STAT_ADD(&st[0], bytes_out, 5);
    STAT_ADD(&st[0], clients_active, 2);
    STAT_ADD(&st[1], clients_active, 3);
    STAT_ADD(&st[1], clients_accepted, 9);
    STAT_ADD(&st[0], clients_refused, 1);
    STAT_ADD(&st[0], upstreams_active, 6);
    STAT_ADD(&st[1], upstream_connects, 7);
    STAT_ADD(&st[0], upstream_reuses, 8);
    STAT_ADD(&st[1], upstream_retries, 2);
    STAT_ADD(&st[0], upstream_failures[HT_UPSTREAM_CONNECT_TIMEOUT], 1);
    STAT_ADD(&st[1], upstream_failures[HT_UPSTREAM_CONNECT_TIMEOUT], 2);
    STAT_ADD(&st[1], upstream_failures[HT_UPSTREAM_UNAVAILABLE], 5);
    STAT_ADD(&st[0], pool_idle, 4);
    STAT_ADD(&st[1], log_dropped, 11);
    atomic_store(&sh.draining, 1);
    render();
    check_exposition();

    cr_assert_eq(sample("ringproxy_requests_total{class=\"none\"}"), 1);
    cr_assert_eq(sample("ringproxy_requests_total{class=\"1xx\"}"), 0);
    cr_assert_eq(sample("ringproxy_requests_total{class=\"2xx\"}"), 7);
    cr_assert_eq(sample("ringproxy_requests_total{class=\"5xx\"}"), 2);
    cr_assert_eq(sample("ringproxy_client_bytes_received_total"), 1234);
    cr_assert_eq(sample("ringproxy_client_bytes_sent_total"), 5);
    cr_assert_eq(sample("ringproxy_client_connections"), 5);
    cr_assert_eq(sample("ringproxy_client_connections_accepted_total"), 9);
    cr_assert_eq(sample("ringproxy_client_connections_refused_total"), 1);
    cr_assert_eq(sample("ringproxy_upstream_connections"), 6);
    cr_assert_eq(sample("ringproxy_upstream_connects_total"), 7);
    cr_assert_eq(sample("ringproxy_upstream_reuses_total"), 8);
    cr_assert_eq(sample("ringproxy_upstream_retries_total"), 2);
    cr_assert_eq(sample("ringproxy_upstream_pool_idle"), 4);
    cr_assert_eq(sample("ringproxy_upstream_failures_total{reason=\"connect_timeout\"}"), 3);
    cr_assert_eq(sample("ringproxy_upstream_failures_total{reason=\"no_address\"}"), 5);
    cr_assert_eq(sample("ringproxy_upstream_failures_total{reason=\"reset\"}"), 0);
    cr_assert_eq(sample("ringproxy_access_log_dropped_total"), 11);
    cr_assert_eq(sample("ringproxy_draining"), 1);
    cr_assert_eq(sample("ringproxy_resolver_changes_total"), 0);
    cr_assert_eq(sample("ringproxy_resolver_failing"), 0);

    cr_assert_str_eq(type_of("ringproxy_requests_total"), "counter");
    cr_assert_str_eq(type_of("ringproxy_client_connections"), "gauge");
    cr_assert_str_eq(type_of("ringproxy_upstream_connections"), "gauge");
    cr_assert_str_eq(type_of("ringproxy_upstream_pool_idle"), "gauge");
    cr_assert_str_eq(type_of("ringproxy_draining"), "gauge");
    cr_assert_str_eq(type_of("ringproxy_request_duration_seconds"), "histogram");
}

Test(http_stats, metrics_resolver_state, .init = shared_up, .fini = shared_down)
{
    /* Started, the resolver's first answer counts as a change. */
    cr_assert_eq(net_resolver_start(sh.resolver), 0);
    render();
    check_exposition();
    cr_assert_eq(sample("ringproxy_resolver_changes_total"), 1);
    cr_assert_eq(sample("ringproxy_resolver_failing"), 0);
}

Test(http_stats, metrics_histogram_cumulative, .init = shared_up, .fini = shared_down)
{
    /* Durations in us: two per worker per bucket i, i+1 of them in bucket i. */
    uint64_t n = 0, sum = 0, per[HTTP_HIST_BUCKETS + 1] = {0};
    double prev_le = -1, prev_count = -1, bucket_inf;
    int nb = 0;

    for (int i = 0; i <= HTTP_HIST_BUCKETS; i++) {
        uint64_t us = i < HTTP_HIST_BUCKETS ? (uint64_t)(http_hist_bounds_ms[i] * 1000.0)
                                            : 100000000u; /* 100 s */
        for (int k = 0; k <= i; k++) {
            http_stats_observe(&st[k % 2], us);
            per[i]++;
            n++;
            sum += us;
        }
    }
    render();
    check_exposition();

    for (const char *l = text; *l;) {
        const char *e = strchr(l, '\n');
        static const char pre[] = "ringproxy_request_duration_seconds_bucket{le=\"";

        if (!strncmp(l, pre, sizeof(pre) - 1)) {
            const char *q = l + sizeof(pre) - 1, *qe = strchr(q, '"');
            double le, count = strtod(qe + 3, NULL);
            uint64_t want = 0;

            cr_assert(qe && qe[1] == '}' && qe[2] == ' ');
            if (!strncmp(q, "+Inf\"", 5)) {
                le = INFINITY;
                cr_assert_eq(nb, HTTP_HIST_BUCKETS, "+Inf is not the last bucket");
            } else {
                le = strtod(q, NULL);
                cr_assert_lt(nb, HTTP_HIST_BUCKETS);
                cr_assert_float_eq(le, http_hist_bounds_ms[nb] / 1000.0, 1e-12);
            }
            for (int i = 0; i <= nb; i++)
                want += per[i];
            cr_assert_gt(le, prev_le, "le not ascending");
            cr_assert_geq(count, prev_count, "buckets not cumulative");
            cr_assert_eq(count, (double)want, "bucket %d: %g, want %llu", nb, count,
                         (unsigned long long)want);
            prev_le = le;
            prev_count = count;
            nb++;
        }
        l = e ? e + 1 : l + strlen(l);
    }
    cr_assert_eq(nb, HTTP_HIST_BUCKETS + 1);
    bucket_inf = sample("ringproxy_request_duration_seconds_bucket{le=\"+Inf\"}");
    cr_assert_eq(bucket_inf, (double)n);
    cr_assert_eq(sample("ringproxy_request_duration_seconds_count"), bucket_inf);
    cr_assert_float_eq(sample("ringproxy_request_duration_seconds_sum"), (double)sum / 1e6, 1e-6);
}

/*
 * Regression (http/admin.c mb_printf): when the text does not fit, the length is
 * set to cap although vsnprintf left a NUL in buf[cap - 1]: the caller gets a
 * length that counts the NUL and a cut line. Latent: respond() gives 64 KiB.
 */
Test(http_stats, metrics_truncated_has_no_nul, .init = shared_up, .fini = shared_down)
{
    char small[300];
    size_t n;

    memset(small, 'x', sizeof(small));
    n = http_admin_metrics(&sh, small, sizeof(small));
    cr_assert_leq(n, sizeof(small));
    cr_assert_eq(memchr(small, '\0', n), NULL, "returned length %zu covers the NUL at %td", n,
                 (char *)memchr(small, '\0', n) - small);
}
