/*
 * http/ratelimit.c: the token buckets of rate_limit with a fake clock, the
 * eviction of the table's slots, several threads on one table, and the
 * rules' evaluation with a limiter (http/rules.c).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "cfg/cfg.h"
#include "cfg/rules.h"
#include "http/forward.h"
#include "http/msg.h"
#include "http/ratelimit.h"
#include "http/rules.h"

#define S 1000000u /* µs */
#define T0 (100u * S)
#define PER_S(n) ((uint64_t)CFG_RL_TICKS_PER_S / (n))
#define PER_MIN(n) ((uint64_t)CFG_RL_TICKS_PER_S * 60u / (n))

static struct http_ratelimit *table(size_t keys)
{
    struct http_ratelimit *rl = http_ratelimit_new(keys, T0);

    cr_assert_not_null(rl);
    return rl;
}

static uint64_t key(struct http_ratelimit *rl, const char *s)
{
    return http_ratelimit_key_bytes(rl, 0, s, strlen(s));
}

Test(http_ratelimit, burst_then_rate)
{
    struct http_ratelimit *rl = table(1024);
    uint64_t k = key(rl, "a");

    /* 3 at once, then one a second */
    for (int i = 0; i < 3; i++)
        cr_expect_eq(http_ratelimit_take(rl, k, T0, PER_S(1), 3), 0, "request %d", i);
    cr_expect_eq(http_ratelimit_take(rl, k, T0, PER_S(1), 3), 1);
    cr_expect_eq(http_ratelimit_take(rl, k, T0 + S / 2, PER_S(1), 3), 1); /* 0.5 s: rounded up */
    cr_expect_eq(http_ratelimit_take(rl, k, T0 + S, PER_S(1), 3), 0);
    cr_expect_eq(http_ratelimit_take(rl, k, T0 + S, PER_S(1), 3), 1);
    /* a refused request takes nothing: after 2 s more, 2 tokens */
    cr_expect_eq(http_ratelimit_take(rl, k, T0 + 3 * S, PER_S(1), 3), 0);
    cr_expect_eq(http_ratelimit_take(rl, k, T0 + 3 * S, PER_S(1), 3), 0);
    cr_expect_eq(http_ratelimit_take(rl, k, T0 + 3 * S, PER_S(1), 3), 1);
    /* idle for long: never more than burst at once */
    for (int i = 0; i < 3; i++)
        cr_expect_eq(http_ratelimit_take(rl, k, T0 + 1000 * S, PER_S(1), 3), 0);
    cr_expect_eq(http_ratelimit_take(rl, k, T0 + 1000 * S, PER_S(1), 3), 1);
    http_ratelimit_free(rl);
}

Test(http_ratelimit, retry_after_seconds)
{
    struct http_ratelimit *rl = table(1024);
    uint64_t k = key(rl, "login");

    /* 10 a minute, burst 5: 5 at once, then one every 6 s */
    for (int i = 0; i < 5; i++)
        cr_expect_eq(http_ratelimit_take(rl, k, T0, PER_MIN(10), 5), 0);
    cr_expect_eq(http_ratelimit_take(rl, k, T0, PER_MIN(10), 5), 6);
    cr_expect_eq(http_ratelimit_take(rl, k, T0 + 5 * S, PER_MIN(10), 5), 1);
    cr_expect_eq(http_ratelimit_take(rl, k, T0 + 6 * S, PER_MIN(10), 5), 0);
    cr_expect_eq(http_ratelimit_take(rl, k, T0 + 6 * S + 1, PER_MIN(10), 5), 6);
    /* one an hour's worth: 1 a minute */
    k = key(rl, "slow");
    cr_expect_eq(http_ratelimit_take(rl, k, T0, PER_MIN(1), 1), 0);
    cr_expect_eq(http_ratelimit_take(rl, k, T0, PER_MIN(1), 1), 60);
    cr_expect_eq(http_ratelimit_take(rl, k, T0 + 59 * S + 1, PER_MIN(1), 1), 1);
    /* fast: 1,000,000 a second, 10 at once */
    k = key(rl, "fast");
    for (int i = 0; i < 10; i++)
        cr_expect_eq(http_ratelimit_take(rl, k, T0, 16, 10), 0);
    cr_expect_eq(http_ratelimit_take(rl, k, T0, 16, 10), 1); /* at least 1 */
    cr_expect_eq(http_ratelimit_take(rl, k, T0 + 1, 16, 10), 0);
    http_ratelimit_free(rl);
}

Test(http_ratelimit, keys_and_rules_are_apart)
{
    struct http_ratelimit *rl = table(1024);
    struct cfg_ip a = {0, 0x0000ffffc0000201u}, b = {0, 0x0000ffffc0000202u};
    uint64_t ka = http_ratelimit_key_ip(rl, 0, &a);

    cr_expect_neq(ka, http_ratelimit_key_ip(rl, 0, &b));
    cr_expect_neq(ka, http_ratelimit_key_ip(rl, 1, &a)); /* another rule, another bucket */
    cr_expect_eq(ka, http_ratelimit_key_ip(rl, 0, &a));
    cr_expect_neq(http_ratelimit_key_bytes(rl, 0, "abcdefgh", 8),
                  http_ratelimit_key_bytes(rl, 0, "abcdefgh\0", 9));
    cr_expect_eq(http_ratelimit_take(rl, ka, T0, PER_S(1), 1), 0);
    cr_expect_eq(http_ratelimit_take(rl, ka, T0, PER_S(1), 1), 1);
    cr_expect_eq(http_ratelimit_take(rl, http_ratelimit_key_ip(rl, 0, &b), T0, PER_S(1), 1), 0);
    cr_expect_eq(http_ratelimit_take(rl, http_ratelimit_key_ip(rl, 1, &a), T0, PER_S(1), 1), 0);
    http_ratelimit_free(rl);
}

Test(http_ratelimit, client_key_is_the_address)
{
    static const char *const same[][2] = {{"192.0.2.1", "::ffff:192.0.2.1"},
                                          {"0.0.0.0", "::ffff:0.0.0.0"},
                                          {"255.255.255.255", "::ffff:255.255.255.255"},
                                          {"2001:db8::1", "2001:DB8:0::1"},
                                          /* an IPv6 client is its /64 */
                                          {"2001:db8:1:1::1", "2001:db8:1:1:ffff:1:2:3"},
                                          {"10.20.30.40", "::ffff:a14:1e28"}};
    static const char *const other[] = {"01.2.3.4", "1.2.3",     "1.2.3.4.5", "256.1.1.1",
                                        "1..2.3",   "1.2.3.4 ",  "x",         "",
                                        "1.2.3.04", "1111.2.3.4"};
    struct http_ratelimit *rl = table(1024);
    struct cfg_ip ip;

    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        uint64_t a = http_ratelimit_key_client(rl, 0, same[i][0], strlen(same[i][0]));

        cr_expect_eq(a, http_ratelimit_key_client(rl, 0, same[i][1], strlen(same[i][1])), "%s",
                     same[i][0]);
        cr_assert_eq(cfg_ip_parse(same[i][0], strlen(same[i][0]), &ip), 0);
        cr_expect_eq(a, http_ratelimit_key_ip(rl, 0, &ip), "%s", same[i][0]);
    }
    cr_expect_neq(http_ratelimit_key_client(rl, 0, "2001:db8:1:1::1", 15),
                  http_ratelimit_key_client(rl, 0, "2001:db8:1:2::1", 15), "another /64");
    cr_expect_neq(http_ratelimit_key_client(rl, 0, "192.0.2.1", 9),
                  http_ratelimit_key_client(rl, 0, "192.0.2.2", 9), "IPv4: the address");
    /* what the fast path refuses goes to cfg_ip_parse, else is keyed by its text */
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        size_t n = strlen(other[i]);
        uint64_t want = cfg_ip_parse(other[i], n, &ip) == 0 ? http_ratelimit_key_ip(rl, 0, &ip)
                                                            : key(rl, other[i]);

        cr_expect_eq(http_ratelimit_key_client(rl, 0, other[i], n), want, "%s", other[i]);
    }
    http_ratelimit_free(rl);
}

Test(http_ratelimit, size_is_fixed)
{
    struct http_ratelimit *rl = table(1000);

    cr_expect_eq(http_ratelimit_slots(rl), 1024); /* rounded up to a power of two */
    cr_expect_eq(http_ratelimit_bytes(rl), 1024 * 16);
    http_ratelimit_free(rl);
    rl = table(262144);
    cr_expect_eq(http_ratelimit_bytes(rl), 4u << 20);
    http_ratelimit_free(rl);
    http_ratelimit_free(NULL);
}

/*
 * A flood of distinct keys in a small table: the limited key, whose bucket
 * is the emptiest, survives while the flood's keys (one token spent each)
 * take each other's slots; and a key that was evicted starts full, so
 * eviction can only let a request through, never refuse one.
 */
Test(http_ratelimit, flood_evicts_the_fullest_buckets)
{
    struct http_ratelimit *rl = table(1024);
    uint64_t k = key(rl, "limited");
    char name[32];

    for (int i = 0; i < 20; i++)
        (void)http_ratelimit_take(rl, k, T0, PER_MIN(1), 20);
    cr_expect_eq(http_ratelimit_take(rl, k, T0, PER_MIN(1), 20), 60);
    for (int i = 0; i < 100000; i++) {
        snprintf(name, sizeof(name), "flood-%d", i);
        cr_assert_eq(http_ratelimit_take(rl, key(rl, name), T0 + S, PER_MIN(1), 20), 0);
    }
    cr_expect_eq(http_ratelimit_take(rl, k, T0 + S, PER_MIN(1), 20), 59, "the limit held");
    /* a steady key among the flood is never refused wrongly */
    uint64_t steady = key(rl, "steady");
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "flood2-%d", i);
        for (int j = 0; j < 100; j++) {
            snprintf(name, sizeof(name), "flood2-%d-%d", i, j);
            (void)http_ratelimit_take(rl, key(rl, name), T0 + 2 * S + (uint64_t)i * 10000, PER_S(1),
                                      1);
        }
        /* 100 a second, within its 200 a second */
        cr_expect_eq(
            http_ratelimit_take(rl, steady, T0 + 2 * S + (uint64_t)i * 10000, PER_S(200), 1), 0,
            "steady refused at %d", i);
    }
    http_ratelimit_free(rl);
}

/* ---- several workers on one table ----------------------------------------- */

struct worker {
    struct http_ratelimit *rl;
    uint64_t key;
    int n, allowed, spread;
};

static void *hammer(void *arg)
{
    struct worker *w = arg;
    char name[32];

    for (int i = 0; i < w->n; i++) {
        uint64_t k = w->key;

        if (w->spread) {
            snprintf(name, sizeof(name), "t%p-%d", (void *)w, i % 5000);
            k = key(w->rl, name);
        }
        if (http_ratelimit_take(w->rl, k, T0, PER_S(1), 1000) == 0)
            w->allowed++;
    }
    return NULL;
}

Test(http_ratelimit, threads_share_one_bucket)
{
    struct http_ratelimit *rl = table(1024);
    struct worker w[4];
    pthread_t t[4];
    int total = 0;

    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){rl, key(rl, "shared"), 100000, 0, 0};
        cr_assert_eq(pthread_create(&t[i], NULL, hammer, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        total += w[i].allowed;
    }
    /* the clock stands still: exactly the burst, whoever took it */
    cr_expect_eq(total, 1000);
    http_ratelimit_free(rl);
}

Test(http_ratelimit, threads_with_evictions)
{
    struct http_ratelimit *rl = table(1024);
    struct worker w[4];
    pthread_t t[4];

    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){rl, 0, 200000, 0, 1};
        cr_assert_eq(pthread_create(&t[i], NULL, hammer, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    /* 20,000 keys in 1,024 slots: every request of an evicted key starts full */
    for (int i = 0; i < 4; i++)
        cr_expect_gt(w[i].allowed, 0);
    http_ratelimit_free(rl);
}

/* ---- the rules with a limiter --------------------------------------------- */

static struct http_msg msg;
static struct core_hdr hdrs[64];
static char fwd[4096], scratch[1024];
static struct http_rules_req rq;
static struct http_rules_verdict vd;
static const struct http_fwd_policy pol = {
    .max_uri_bytes = 1000, .max_body_bytes = 0, .default_host = "next-hop"};

static struct cfg *load(const char *json)
{
    struct cfg_errs e;
    struct cfg *c = NULL;
    int rc = cfg_load_buf_at(json, strlen(json), NULL, NULL, &c, &e);

    cr_assert_eq(rc, 0, "%s: %s", json, e.n ? e.lines[0] : "?");
    cfg_errs_free(&e);
    return c;
}

/* Evaluate a request at now: the rule that answers, or -1. */
static int eval(const struct cfg *c, struct http_ratelimit *rl, const char *head, const char *peer,
                uint64_t now)
{
    struct http_fwd_req f;

    memset(&msg, 0, sizeof(msg));
    cr_assert_eq(http_msg_head(&msg, HTTP_REQUEST, head, strlen(head), hdrs, 64), 0);
    cr_assert_gt(http_fwd_request(&msg, &pol, fwd, sizeof(fwd), &f), 0);
    cr_assert_eq(http_rules_req_init(&rq, &msg, f.host_sent, (struct core_str){peer, strlen(peer)},
                                     scratch, sizeof(scratch)),
                 0);
    rq.rl = rl;
    rq.now_us = now;
    http_rules_eval(c->rules, &rq, &vd);
    return vd.answer;
}

#define POST(target, fields)                                                                       \
    "POST " target " HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n" fields "\r\n"

Test(http_ratelimit, rules_client_ip)
{
    struct cfg *c =
        load("{\"rules\": [{\"name\": \"login\", \"match\": {\"path\": \"/login\", \"method\": "
             "\"POST\"},"
             " \"rate_limit\": {\"key\": \"client_ip\", \"per_minute\": 10, \"burst\": 2},"
             " \"request_headers\": {\"set\": {\"X-Seen\": \"1\"}}},"
             " {\"name\": \"after\", \"match\": {\"path\": \"/login\"}, \"respond\": {\"body\": "
             "\"x\"}}]}");
    struct http_ratelimit *rl = table(1024);
    char out[1024];
    long n;

    for (int i = 0; i < 2; i++) {
        /* within the limit: evaluation goes on, the rule's edits apply */
        cr_expect_eq(eval(c, rl, POST("/login", ""), "192.0.2.1", T0), 1);
        cr_expect(vd.passed[0] & 1);
        cr_expect(http_rules_applied(&vd, 0));
    }
    cr_expect_eq(eval(c, rl, POST("/login", ""), "192.0.2.1", T0), 0);
    cr_expect_eq(vd.retry_after, 6);
    cr_expect_eq(vd.last, 0);
    cr_expect(!(vd.passed[0] & 1));
    n = http_rules_answer_head(c->rules, &vd, &rq, 429, NULL, 1, out, sizeof(out));
    cr_assert_gt(n, 0);
    out[n] = '\0';
    cr_expect(strstr(out, "HTTP/1.1 429 Too Many Requests\r\n"), "%s", out);
    cr_expect(strstr(out, "\r\nRetry-After: 6\r\n"), "%s", out);
    /* the same address as True-Client-IP, IPv4-mapped: the same client */
    cr_expect_eq(
        eval(c, rl, POST("/login", "True-Client-IP: ::ffff:192.0.2.1\r\n"), "10.0.0.9", T0), 0);
    /* another client; X-Forwarded-For is not read */
    cr_expect_eq(eval(c, rl, POST("/login", "X-Forwarded-For: 192.0.2.1\r\n"), "192.0.2.2", T0), 1);
    /* not matched: not counted */
    cr_expect_eq(eval(c, rl, "GET /login HTTP/1.1\r\nHost: a\r\n\r\n", "192.0.2.1", T0), 1);
    cr_expect(!(vd.passed[0] & 1));
    /* 6 s later, one more */
    cr_expect_eq(eval(c, rl, POST("/login", ""), "192.0.2.1", T0 + 6 * S), 1);
    /* no table: nothing is limited */
    for (int i = 0; i < 5; i++)
        cr_expect_eq(eval(c, NULL, POST("/login", ""), "192.0.2.1", T0), 1);
    http_ratelimit_free(rl);
    cfg_free(c);
}

Test(http_ratelimit, rules_header_key)
{
    struct cfg *c = load("{\"rules\": [{\"rate_limit\": {\"key\": \"header:X-Api-Key\","
                         " \"per_second\": 1}}]}");
    struct http_ratelimit *rl = table(1024);

    cr_expect_eq(eval(c, rl, POST("/", "x-api-key: k1\r\n"), "192.0.2.1", T0), -1);
    cr_expect_eq(eval(c, rl, POST("/", "X-Api-Key:  k1 \r\n"), "192.0.2.2", T0), 0);
    cr_expect_eq(vd.retry_after, 1);
    cr_expect_eq(eval(c, rl, POST("/", "X-Api-Key: k2\r\n"), "192.0.2.1", T0), -1);
    /* without the header, or with it empty: not limited by this rule */
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(eval(c, rl, POST("/", ""), "192.0.2.1", T0), -1);
        cr_expect_eq(eval(c, rl, POST("/", "X-Api-Key: \r\n"), "192.0.2.1", T0), -1);
    }
    /*
     * two fields of the name, in any spelling, empty or not: which one the
     * origin reads is not known, so a decoy cannot make a fresh bucket
     */
    cr_expect_eq(eval(c, rl, POST("/", "X-Api-Key: k3\r\nX-Api-Key: k4\r\n"), "192.0.2.1", T0), 0);
    cr_expect_eq(vd.retry_after, 1);
    cr_expect_eq(eval(c, rl, POST("/", "X_Api_Key: decoy\r\nX-Api-Key: k5\r\n"), "192.0.2.1", T0),
                 0);
    cr_expect_eq(eval(c, rl, POST("/", "X-Api-Key:\r\nX-Api-Key: k6\r\n"), "192.0.2.1", T0), 0);
    cr_expect_eq(eval(c, rl, POST("/", "X-Api-Key: k7\r\n"), "192.0.2.1", T0), -1,
                 "k3..k6 took no token");
    /* in any spelling an origin reads as the name (HTTP_X_API_KEY): k1 is still over */
    cr_expect_eq(eval(c, rl, POST("/", "X_Api_Key: k1\r\n"), "192.0.2.3", T0), 0);
    cr_expect_eq(eval(c, rl, POST("/", "x.api~key: k1\r\n"), "192.0.2.3", T0), 0);
    http_ratelimit_free(rl);
    cfg_free(c);
}
