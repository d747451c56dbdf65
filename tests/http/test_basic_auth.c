/*
 * basic_auth in http/rules.c: what the rules make of a request's
 * Authorization field (401, a check to make, through from the cache, 429
 * for too many checks), going on after a check (http_rules_resume()), and
 * the 401's head. The checks themselves (http/auth.c) have their own tests
 * (test_auth.c); the proxy's parking of a request, end_to_end (e2e_rules).
 */
#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "cfg/rules.h"
#include "http/auth.h"
#include "http/forward.h"
#include "http/msg.h"
#include "http/ratelimit.h"
#include "http/rules.h"

static struct cfg_rules rs;
static char *hashes[2];

static void release(void)
{
    for (size_t i = 0; i < rs.n; i++) {
        struct cfg_erule *e = &rs.v[i];

        cfg_hset_free(&e->auth.users);
        free(e->auth.hash);
        free(e->req_hdrs.v);
    }
    free(rs.v);
    cfg_hset_free(&rs.edit_names);
    memset(&rs, 0, sizeof(rs));
    for (int i = 0; i < 2; i++) {
        free(hashes[i]);
        hashes[i] = NULL;
    }
}

TestSuite(http_basic_auth, .fini = release);

/* A bcrypt hash of pass, cost 4 (fast), made the way mkpasswd -m bcrypt does. */
static char *bcrypt(const char *pass)
{
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data cd;

    memset(&cd, 0, sizeof(cd));
    cr_assert(crypt_gensalt_rn("$2b$", 4, NULL, 0, salt, sizeof(salt)));
    cr_assert(crypt_rn(pass, salt, &cd, sizeof(cd)));
    return strdup(cd.output);
}

static struct cfg_erule *rule(const char *label, unsigned kind)
{
    struct cfg_erule *e;

    rs.v = realloc(rs.v, (rs.n + 1) * sizeof(*rs.v));
    cr_assert(rs.v);
    e = &rs.v[rs.n++];
    memset(e, 0, sizeof(*e));
    e->label = (char *)label;
    e->kind = (uint8_t)kind;
    return e;
}

/*
 * Rules: 0 staging (basic_auth: qa/secret, ops/hunter2), 1 after (sets
 * X-After: a request edit after it), 2 deny 403 (so every request that got
 * through the password ends there).
 */
static void setup(void)
{
    struct cfg_erule *e;
    static const char *const users[] = {"qa", "ops"};

    cfg_hset_init(&rs.edit_names, 1);
    hashes[0] = bcrypt("secret");
    hashes[1] = bcrypt("hunter2");
    e = rule("staging", CFG_RK_BASIC_AUTH);
    e->status = 401;
    e->auth.realm = "staging";
    e->auth.realm_len = 7;
    cfg_hset_init(&e->auth.users, 0);
    e->auth.hash = calloc(2, sizeof(char *));
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(cfg_hset_add(&e->auth.users, users[i], strlen(users[i]), NULL), i);
        e->auth.hash[i] = hashes[i];
    }
    e = rule("after", CFG_RK_NONE);
    e->req_hdrs.v = calloc(1, sizeof(struct cfg_hedit));
    e->req_hdrs.n = 1;
    e->req_hdrs.v[0] = (struct cfg_hedit){.op = CFG_HE_SET, .name = "X-After", .name_len = 7};
    e->req_hdrs.v[0].name_id = (uint32_t)cfg_hset_add(&rs.edit_names, "X-After", 7, NULL);
    e->req_hdrs.v[0].value = (struct cfg_tpl){0};
    e = rule("closed", CFG_RK_DENY);
    e->status = 403;
}

static struct http_msg msg;
static struct core_hdr hdrs[32];
static char fwd[4096], scratch[1024], cred[1024];
static struct http_rules_req rq;
static struct http_rules_verdict vd;

static const struct http_fwd_policy pol = {.max_uri_bytes = 1000, .default_host = "next-hop"};

/* Evaluate a request with the given fields ("Name: value\r\n" each). */
static void eval(const char *fields, struct http_ratelimit *rl, struct http_auth *auth)
{
    static char head[2048];
    struct http_fwd_req f;

    snprintf(head, sizeof(head), "GET /x HTTP/1.1\r\nHost: staging.example.com\r\n%s\r\n", fields);
    memset(&msg, 0, sizeof(msg));
    cr_assert_eq(http_msg_head(&msg, HTTP_REQUEST, head, strlen(head), hdrs, 32), 0, "%s", head);
    cr_assert_gt(http_fwd_request(&msg, &pol, fwd, sizeof(fwd), &f), 0);
    cr_assert_eq(http_rules_req_init(&rq, &msg, f.host_sent, (struct core_str){"10.0.0.1", 8},
                                     scratch, sizeof(scratch)),
                 0);
    rq.rl = rl;
    rq.auth = auth;
    rq.now_us = 1000000;
    rq.cred = cred;
    rq.cred_cap = sizeof(cred);
    http_rules_eval(&rs, &rq, &vd);
}

/* "Authorization: Basic base64(user:pass)" */
static const char *basic(const char *userpass)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static char out[512];
    size_t n = strlen(userpass), o = (size_t)sprintf(out, "Authorization: Basic ");

    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)userpass[i] << 16;

        if (i + 1 < n)
            v |= (uint32_t)(unsigned char)userpass[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)userpass[i + 2];
        out[o++] = al[v >> 18 & 63];
        out[o++] = al[v >> 12 & 63];
        out[o++] = i + 1 < n ? al[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? al[v & 63] : '=';
    }
    strcpy(out + o, "\r\n");
    return out;
}

/* A check the rules asked for: made here, on the test's thread, as a helper would. */
static int check(void)
{
    const struct cfg_erule *e = &rs.v[vd.auth];
    struct crypt_data cd;
    char pass[256];

    cr_assert_lt(vd.auth_pass.len, sizeof(pass));
    memcpy(pass, vd.auth_pass.p, vd.auth_pass.len);
    pass[vd.auth_pass.len] = 0;
    memset(&cd, 0, sizeof(cd));
    cr_assert_geq(vd.auth_hash, 0);
    cr_assert_eq(vd.auth_user >= 0 ? vd.auth_hash : vd.auth_user, vd.auth_user);
    if (!crypt_rn(pass, e->auth.hash[vd.auth_hash], &cd, sizeof(cd)))
        return 0;
    return vd.auth_user >= 0 && !strcmp(cd.output, e->auth.hash[vd.auth_user]);
}

Test(http_basic_auth, refused_without_good_credentials, .init = setup)
{
    static const char *const refused[] = {
        "",                                          /* none */
        "Authorization: Bearer abc\r\n",             /* another scheme */
        "Authorization: Basic\r\n",                  /* no credentials */
        "Authorization: Basic !!!!\r\n",             /* not base64 */
        "Authorization: Basic cWE=\r\n",             /* "qa": no colon */
        "Authorization: Basic cWE6c2VjcmV0A\r\n",    /* a dangling base64 digit */
        "Authorization: Basic cWE6AHNlY3JldA==\r\n", /* "qa:\0secret": a NUL */
        "Authorization: Basic cWE6c2VjcmV0\r\nAuthorization: Basic cWE6c2VjcmV0\r\n", /* two */
    };

    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        eval(refused[i], NULL, NULL);
        cr_expect_eq(vd.answer, 0, "%s: answer %d", refused[i], vd.answer);
        cr_expect_eq(vd.auth, -1, "%s", refused[i]);
        cr_expect_eq(vd.retry_after, 0u);
    }
}

Test(http_basic_auth, a_check_then_through, .init = setup)
{
    eval(basic("qa:secret"), NULL, NULL);
    cr_assert_eq(vd.answer, -1);
    cr_assert_eq(vd.auth, 0, "stops for the check");
    cr_assert_eq(vd.auth_user, 0);
    cr_assert_eq(vd.auth_pass.len, 6);
    cr_assert(!memcmp(vd.auth_pass.p, "secret", 6));
    cr_assert(!vd.any_req, "the rules after it have not run yet");
    cr_assert(check());
    http_rules_resume(&rs, &rq, &vd, 1);
    cr_assert_eq(vd.auth, -1);
    cr_assert(http_rules_applied(&vd, 1), "the rule after it ran");
    cr_assert_eq(vd.answer, 2, "and the one after that answered");
    cr_assert(vd.passed[0] & 1, "counted as let through");
}

Test(http_basic_auth, scheme_any_case_and_spaces, .init = setup)
{
    eval("Authorization: bAsIc    b3BzOmh1bnRlcjI=\r\n", NULL, NULL); /* ops:hunter2 */
    cr_assert_eq(vd.auth, 0);
    cr_assert_eq(vd.auth_user, 1);
    cr_assert(check());
}

Test(http_basic_auth, wrong_password_is_401, .init = setup)
{
    char out[1024];
    long n;

    eval(basic("qa:hunter2"), NULL, NULL);
    cr_assert_eq(vd.auth, 0);
    cr_assert(!check(), "another user's password");
    http_rules_resume(&rs, &rq, &vd, 0);
    cr_assert_eq(vd.answer, 0);
    cr_assert(!(vd.passed[0] & 1));
    n = http_rules_answer_head(&rs, &vd, &rq, 401, NULL, 1, out, sizeof(out));
    cr_assert_gt(n, 0);
    out[n] = 0;
    cr_assert_str_eq(out, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n"
                          "WWW-Authenticate: Basic realm=\"staging\", charset=\"UTF-8\"\r\n"
                          "Connection: keep-alive\r\n\r\n");
}

Test(http_basic_auth, unknown_user_is_checked_and_refused, .init = setup)
{
    eval(basic("root:secret"), NULL, NULL);
    cr_assert_eq(vd.auth, 0, "checked all the same: the time tells nothing");
    cr_assert_eq(vd.auth_user, -1);
    cr_assert(!check(), "even with another user's password");
}

Test(http_basic_auth, user_names_are_case_sensitive, .init = setup)
{
    eval(basic("QA:secret"), NULL, NULL);
    cr_assert_eq(vd.auth_user, -1);
}

Test(http_basic_auth, password_may_hold_colons, .init = setup)
{
    eval(basic("qa:a:b:c"), NULL, NULL);
    cr_assert_eq(vd.auth_user, 0);
    cr_assert_eq(vd.auth_pass.len, 5);
    cr_assert(!memcmp(vd.auth_pass.p, "a:b:c", 5));
}

Test(http_basic_auth, too_many_checks_is_429, .init = setup)
{
    struct http_ratelimit *rl = http_ratelimit_new(1024, 0);
    char out[1024];
    long n;

    cr_assert(rl);
    for (int i = 0; i < HTTP_RULES_AUTH_BURST; i++) {
        eval(basic("qa:wrong"), rl, NULL);
        cr_assert_eq(vd.auth, 0, "check %d", i);
    }
    eval(basic("qa:secret"), rl, NULL);
    cr_assert_eq(vd.auth, -1, "no more checks for this client for now");
    cr_assert_eq(vd.answer, 0);
    cr_assert_geq(vd.retry_after, 1u);
    cr_assert_leq(vd.retry_after, (unsigned)HTTP_RULES_AUTH_EVERY_S);
    n = http_rules_answer_head(&rs, &vd, &rq, 429, NULL, 0, out, sizeof(out));
    cr_assert_gt(n, 0);
    out[n] = 0;
    cr_assert(strstr(out, "\r\nRetry-After: "), "%s", out);
    cr_assert(!strstr(out, "WWW-Authenticate"), "%s", out);
    http_ratelimit_free(rl);
}

Test(http_basic_auth, remembered_checks_pass_at_once, .init = setup)
{
    struct http_auth *a = http_auth_new(1, 1, 4, 64);
    uint64_t key[2];

    cr_assert(a);
    eval(basic("qa:secret"), NULL, a);
    cr_assert_eq(vd.auth, 0);
    key[0] = vd.auth_key[0];
    key[1] = vd.auth_key[1];
    cr_assert(check());
    http_auth_cache_put(a, key, rq.now_us);
    eval(basic("qa:secret"), NULL, a);
    cr_assert_eq(vd.auth, -1, "remembered: no check");
    cr_assert_eq(vd.answer, 2);
    cr_assert(vd.passed[0] & 1);
    eval(basic("qa:secret2"), NULL, a);
    cr_assert_eq(vd.auth, 0, "another password is checked");
    eval(basic("ops:secret"), NULL, a);
    cr_assert_eq(vd.auth, 0, "another user is checked");
    http_auth_free(a);
}

Test(http_basic_auth, no_room_for_credentials_is_401, .init = setup)
{
    eval(basic("qa:secret"), NULL, NULL);
    rq.cred_cap = 4;
    http_rules_eval(&rs, &rq, &vd);
    cr_assert_eq(vd.answer, 0);
    cr_assert_eq(vd.auth, -1);
}

Test(http_basic_auth, unknown_users_cost_like_some_user, .init = setup)
{
    struct http_auth *a = http_auth_new(1, 1, 4, 64);
    int seen[2] = {0, 0};
    char up[64];

    cr_assert(a);
    for (int n = 0; n < 64; n++) {
        int first;

        snprintf(up, sizeof(up), "nobody%d:secret", n);
        eval(basic(up), NULL, a);
        cr_assert_eq(vd.auth_user, -1);
        cr_assert(vd.auth_hash == 0 || vd.auth_hash == 1, "%d", vd.auth_hash);
        first = vd.auth_hash;
        seen[first]++;
        snprintf(up, sizeof(up), "nobody%d:other", n);
        eval(basic(up), NULL, a);
        cr_assert_eq(vd.auth_hash, first, "a name is checked against the same hash each time");
    }
    cr_assert(seen[0] && seen[1], "names spread over the users' hashes: %d %d", seen[0], seen[1]);
    http_auth_free(a);
}
