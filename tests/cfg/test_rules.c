/*
 * Unit tests for cfg/rules.c and cfg/ip.c: every validator message with its
 * pointer (basic_auth's hash checks against what libxcrypt makes), every
 * member of the compiled model on a realistic config
 * (RULES_DATA/site), the files the rules read (escapes, sizes, kinds), a
 * redirect map of 100,000 entries, and address parsing and lookup.
 */
#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "cfg/cfg.h"
#include "cfg/hset.h"
#include "cfg/rules.h"
#include "cfg/schema.h"

/* ---- helpers ---- */

static const char *data_dir(void)
{
    const char *d = getenv("RULES_DATA");

    cr_assert_not_null(d, "RULES_DATA is not set (run through meson test)");
    return d;
}

/* The problems of a document loaded with folder dir, joined by '\n' ("" when none). */
static char *problems_at(const char *json, const char *dir)
{
    struct cfg_errs e;
    struct cfg *c = NULL;
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    int rc = cfg_load_buf_at(json, strlen(json), "proxy.json", dir, &c, &e);

    cr_assert_not_null(f);
    for (size_t i = 0; i < e.n; i++)
        fprintf(f, "%s%s", i ? "\n" : "", e.lines[i]);
    fclose(f);
    if (rc == 0)
        cr_assert_eq(e.n, 0);
    else
        cr_assert_gt(e.n, 0, "rc %d without a message", rc);
    cfg_errs_free(&e);
    cfg_free(c);
    return out;
}

#define EXPECT_AT(json, dir, expected)                                                             \
    do {                                                                                           \
        char *got_ = problems_at((json), (dir));                                                   \
        cr_expect_str_eq(got_, (expected), "for %s", (json));                                      \
        free(got_);                                                                                \
    } while (0)

#define EXPECT(json, expected) EXPECT_AT(json, NULL, expected)

/* A rule document: the rules array's text inside {"rules": [...]}. */
#define RULES(...) "{\"rules\": [" __VA_ARGS__ "]}"

static struct cfg *load_at(const char *json, const char *dir)
{
    struct cfg_errs e;
    struct cfg *c = NULL;
    int rc = cfg_load_buf_at(json, strlen(json), NULL, dir, &c, &e);

    cr_assert_eq(rc, 0, "%s: %s", json, e.n ? e.lines[0] : "?");
    cfg_errs_free(&e);
    return c;
}

static char *new_dir(void)
{
    char *dir = strdup("/tmp/cfg-rules-XXXXXX");

    cr_assert_not_null(mkdtemp(dir));
    return dir;
}

static void put_file(const char *dir, const char *name, const char *s, size_t len)
{
    char path[512];
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0, "%s", path);
    cr_assert_eq(write(fd, s, len), (ssize_t)len);
    close(fd);
}

static void rm_dir(char *dir)
{
    char cmd[600];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
    free(dir);
}

static int has(const struct cfg_hset *s, const char *k)
{
    return cfg_hset_find(s, k, strlen(k)) >= 0;
}

static struct cfg_ip ip(const char *s)
{
    struct cfg_ip r;

    cr_assert_eq(cfg_ip_parse(s, strlen(s), &r), 0, "%s", s);
    return r;
}

/* ---- the validator's messages ---- */

Test(cfg_rules, unknown_keys_with_suggestions)
{
    EXPECT("{\"rule\": []}", "/rule: unknown key; did you mean \"rules\"?");
    EXPECT("{\"error_page\": {}}", "/error_page: unknown key; did you mean \"error_pages\"?");
    EXPECT(RULES("{\"nmae\": \"a\", \"deny\": {}}"), "/rules/0/nmae: unknown key; did you mean "
                                                     "\"name\"?");
    EXPECT(RULES("{\"match\": {\"pth\": \"/a\"}, \"deny\": {}}"),
           "/rules/0/match/pth: unknown key; did you mean \"path\"?");
    EXPECT(RULES("{\"path\": \"/a\", \"deny\": {}}"),
           "/rules/0/path: unknown key here; did you mean /rules/0/match/path?");
    EXPECT(RULES("{\"redirect\": {\"to\": \"/x\", \"code\": 301}}"),
           "/rules/0/redirect/code: unknown key; expected one of \"to\", \"status\"");
    EXPECT(RULES("{\"response_headers\": {\"sett\": {\"A\": \"b\"}}}"),
           "/rules/0/response_headers/sett: unknown key; did you mean \"set\"?");
    EXPECT(RULES("{\"respond\": {\"bdy\": \"x\"}}"),
           "/rules/0/respond/bdy: unknown key; did you mean \"body\"?");
    EXPECT(RULES("{\"match\": {\"not\": {\"hots\": \"a.example\"}}, \"deny\": {}}"),
           "/rules/0/match/not/hots: unknown key; did you mean \"host\"?");
    EXPECT(RULES("{\"rewrite\": {\"strip\": \"/a\"}}"),
           "/rules/0/rewrite/strip: unknown key; did you mean \"strip_prefix\"?");
}

#define RL(body) RULES("{\"rate_limit\": " body "}")

Test(cfg_rules, rate_limit_problems)
{
    EXPECT(RL("{\"per_second\": 1}"),
           "/rules/0/rate_limit: missing \"key\" (\"client_ip\" or \"header:NAME\")");
    EXPECT(
        RL("{\"key\": \"ip\", \"per_second\": 1}"),
        "/rules/0/rate_limit/key: \"ip\" is not a key; expected \"client_ip\" or \"header:NAME\"");
    EXPECT(RL("{\"key\": \"Header:X-Key\", \"per_second\": 1}"),
           "/rules/0/rate_limit/key: \"Header:X-Key\" is not a key; expected \"client_ip\" or "
           "\"header:NAME\"");
    EXPECT(RL("{\"key\": 3, \"per_second\": 1}"),
           "/rules/0/rate_limit/key: expected \"client_ip\" or \"header:NAME\", got 3");
    EXPECT(RL("{\"key\": \"header:\", \"per_second\": 1}"),
           "/rules/0/rate_limit/key: \"\" is not a header name (1 to 64 letters, digits and "
           "!#$%&'*+-.^_`|~)");
    EXPECT(RL("{\"key\": \"header:X Key\", \"per_second\": 1}"),
           "/rules/0/rate_limit/key: \"X Key\" is not a header name (1 to 64 letters, digits and "
           "!#$%&'*+-.^_`|~)");
    EXPECT(RL("{\"key\": \"client_ip\"}"),
           "/rules/0/rate_limit: missing \"per_second\" or \"per_minute\" (the rate)");
    EXPECT(RL("{\"key\": \"client_ip\", \"per_second\": 1, \"per_minute\": 60}"),
           "/rules/0/rate_limit: \"per_second\" and \"per_minute\" both given; a rate_limit has "
           "one of them");
    EXPECT(RL("{\"key\": \"client_ip\", \"per_second\": 0}"),
           "/rules/0/rate_limit/per_second: expected an integer from 1 to 1000000, got 0");
    EXPECT(RL("{\"key\": \"client_ip\", \"per_second\": 1000001}"),
           "/rules/0/rate_limit/per_second: expected an integer from 1 to 1000000, got 1000001");
    EXPECT(RL("{\"key\": \"client_ip\", \"per_minute\": 1.5}"),
           "/rules/0/rate_limit/per_minute: expected an integer from 1 to 60000000, got 1.5");
    EXPECT(RL("{\"key\": \"client_ip\", \"per_minute\": \"10\"}"),
           "/rules/0/rate_limit/per_minute: expected an integer from 1 to 60000000, got \"10\"");
    EXPECT(RL("{\"key\": \"client_ip\", \"per_minute\": 10, \"burst\": 0}"),
           "/rules/0/rate_limit/burst: expected an integer from 1 to 100000, got 0");
    EXPECT(RL("{\"key\": \"client_ip\", \"per_minute\": 10, \"burst\": 100001}"),
           "/rules/0/rate_limit/burst: expected an integer from 1 to 100000, got 100001");
    EXPECT(RL("{\"key\": \"client_ip\", \"per_minute\": 10, \"brust\": 2}"),
           "/rules/0/rate_limit/brust: unknown key; did you mean \"burst\"?");
    EXPECT(RL("[]"), "/rules/0/rate_limit: expected an object, got []");
    EXPECT(RULES("{\"rate_limit\": {\"key\": \"client_ip\", \"per_second\": 1}, \"deny\": {}}"),
           "/rules/0: \"rate_limit\" and \"deny\" both answer; a rule has at most one of redirect, "
           "redirect_map, respond, deny, rate_limit, basic_auth");
    EXPECT("{\"limits\": {\"rate_limit_keys\": 10}}",
           "/limits/rate_limit_keys: expected an integer from 1024 to 16777216, got 10");
}

Test(cfg_rules, rate_limit_model)
{
    struct cfg *c =
        load_at(RULES("{\"name\": \"login\", \"match\": {\"path\": \"/login\"}, "
                      "\"rate_limit\": {\"key\": \"client_ip\", \"per_minute\": 10, \"burst\": 5}, "
                      "\"request_headers\": {\"set\": {\"X-Limited\": \"yes\"}}}, "
                      "{\"rate_limit\": {\"key\": \"header:X-Api-Key\", \"per_second\": 3}}, "
                      "{\"rate_limit\": {\"key\": \"client_ip\", \"per_second\": 1000000}}, "
                      "{\"deny\": {}}"),
                NULL);
    const struct cfg_rules *rs = c->rules;

    cr_assert_eq(rs->n, 4);
    cr_expect_eq(rs->v[0].kind, CFG_RK_RATE_LIMIT);
    cr_expect_eq(rs->v[0].status, 429);
    cr_expect_eq(rs->v[0].rl.key, CFG_RL_CLIENT_IP);
    cr_expect_eq(rs->v[0].rl.rate, 10);
    cr_expect(rs->v[0].rl.per_minute);
    cr_expect_eq(rs->v[0].rl.burst, 5);
    cr_expect_eq(rs->v[0].rl.interval, 6u * CFG_RL_TICKS_PER_S); /* 6 s a token */
    cr_expect_eq(rs->v[0].req_hdrs.n, 1);
    cr_expect_eq(rs->v[1].rl.key, CFG_RL_HEADER);
    cr_expect_str_eq(rs->v[1].rl.header, "X-Api-Key");
    cr_expect_eq(rs->v[1].rl.header_len, 9);
    cr_expect_eq(rs->v[1].rl.burst, 1); /* the default */
    cr_expect(!rs->v[1].rl.per_minute);
    cr_expect_eq(rs->v[1].rl.interval, (CFG_RL_TICKS_PER_S + 1) / 3); /* rounded */
    cr_expect_eq(rs->v[2].rl.interval, 16);
    cr_expect_str_eq(cfg_rule_kind_names[CFG_RK_RATE_LIMIT], "rate_limit");
    /* a rate_limit answers only some requests: the rule after it can run */
    cr_expect_eq(c->limits.rate_limit_keys, 262144);
    cfg_free(c);
}

/* ---- basic_auth ---- */

/*
 * Real hashes, made with libxcrypt (crypt_gensalt_rn + crypt_rn): the
 * password of each is in its comment, and basic_auth_hashes_are_real checks
 * them. The checks/ golden files use the same ones.
 */
#define H_2B /* "staging-qa", cost 10 */                                                           \
    "$2b$10$aH12YMCD8PHuUOVwUjc77ezVvCxkMA.oll8zvr2/rRVtbvzO.yAQ6"
#define H_2Y /* "staging-dev", cost 5 */                                                           \
    "$2y$05$kG.bhNCZANC2RYF8X1E3aerC5jU48kRd9MVjtiO4FJdvZeWajZw42"
#define H_Y /* "yes-pass" */                                                                       \
    "$y$j9T$luOhSAeVv5vM5X8bYJJcs/$KmT1ZyZdwyTxki21kagDt.kVXGxLWgyv.7kkvjMmgd9"
#define H_6                                                                                        \
    /* "sha-pass" */ "$6$GdUzN2zw90Fe27ee$XsKahkMIcuk/"                                            \
                     "VAD.h8X8lvUyLjAOmK6WN1hd1xqrFuFDo6BIpFozOPmev"                               \
                     "dFh.pripgC0SUDV3ck.y1U/Mb5cN."
#define H_6R                                                                                       \
    /* "rounds-pass" */ "$6$rounds=10000$hDBRHkqB4tDRsXXl$"                                        \
                        "nlGESsQa3KLubRC7GOaXF5KF0IG6kvBmiP2qXSrH7"                                \
                        "EdLQWy3ABRyEwWiuy1fSy85WczC1DTIxlh7WXJ5./dLg1"

#define BA(body) RULES("{\"basic_auth\": " body "}")
#define BA_USERS(users) BA("{\"realm\": \"r\", \"users\": {" users "}}")
/* The hash of user "u" refused with message m. */
#define EXPECT_HASH(hash, m)                                                                       \
    EXPECT(BA_USERS("\"u\": \"" hash "\""), "/rules/0/basic_auth/users/u: " m)

#define AUTH_MAKE "make one with mkpasswd -m bcrypt (Debian package whois) or htpasswd -nB USER"
#define AUTH_USE "use bcrypt ($2b$, $2y$), yescrypt ($y$) or SHA-512-crypt ($6$): " AUTH_MAKE

Test(cfg_rules, basic_auth_model)
{
    struct cfg *c =
        load_at(RULES("{\"name\": \"staging\", \"match\": {\"host\": [\"staging.example.com\"]}, "
                      "\"basic_auth\": {\"realm\": \"Staging area, keep out!\", \"users\": {"
                      "\"qa\": \"" H_2B "\", \"dev\": \"" H_2Y "\", \"Yes Man\": \"" H_Y "\", "
                      "\"s\\u00e9bastien\": \"" H_6 "\", \"r\": \"" H_6R "\"}}, "
                      "\"request_headers\": {\"remove\": [\"Authorization\"]}}, "
                      "{\"basic_auth\": {\"realm\": \"r\", \"users\": {\"a\": \"" H_2Y "\"}}}, "
                      "{\"deny\": {}}"),
                NULL);
    const struct cfg_rules *rs = c->rules;
    const struct cfg_basic_auth *a = &rs->v[0].auth;
    static const char *const users[] = {"qa", "dev", "Yes Man",
                                        "s\xc3\xa9"
                                        "bastien",
                                        "r"};
    static const char *const hashes[] = {H_2B, H_2Y, H_Y, H_6, H_6R};

    cr_assert_eq(rs->n, 3);
    cr_expect_eq(rs->v[0].kind, CFG_RK_BASIC_AUTH);
    cr_expect_eq(rs->v[0].status, 401);
    cr_expect_str_eq(rs->v[0].label, "staging");
    cr_expect_str_eq(a->realm, "Staging area, keep out!");
    cr_expect_eq(a->realm_len, strlen("Staging area, keep out!"));
    cr_assert_eq(a->users.n, 5);
    for (size_t i = 0; i < 5; i++) {
        long id = cfg_hset_find(&a->users, users[i], strlen(users[i]));

        cr_assert_geq(id, 0, "%s", users[i]);
        cr_expect_str_eq(a->hash[id], hashes[i], "%s", users[i]);
    }
    /* user names are case-sensitive */
    cr_expect_lt(cfg_hset_find(&a->users, "QA", 2), 0);
    cr_expect_lt(cfg_hset_find(&a->users, "yes man", 7), 0);
    cr_expect(has(&rs->v[0].match->hosts, "staging.example.com"));
    cr_expect_eq(rs->v[0].req_hdrs.n, 1);
    /* without match it still lets requests with credentials through: no "can never run" */
    cr_expect_null(rs->v[1].match);
    cr_expect_eq(rs->v[1].auth.users.n, 1);
    cr_expect_str_eq(cfg_rule_kind_names[CFG_RK_BASIC_AUTH], "basic_auth");
    cfg_free(c);
}

Test(cfg_rules, basic_auth_hashes_are_real)
{
    /* the fixtures' hashes are what crypt(3) makes of their passwords */
    static const char *const pw[] = {"staging-qa", "staging-dev", "yes-pass", "sha-pass",
                                     "rounds-pass"};
    static const char *const hashes[] = {H_2B, H_2Y, H_Y, H_6, H_6R};
    struct crypt_data *cd = calloc(1, sizeof(*cd));

    cr_assert_not_null(cd);
    for (size_t i = 0; i < 5; i++) {
        const char *h = crypt_rn(pw[i], hashes[i], cd, sizeof(*cd));

        cr_assert_not_null(h, "%s", hashes[i]);
        cr_expect_str_eq(h, hashes[i]);
    }
    free(cd);
}

/*
 * What libxcrypt makes for each accepted prefix, with fresh random salts,
 * is accepted, and its setting alone (crypt_gensalt's output) is refused.
 */
Test(cfg_rules, basic_auth_accepts_what_libcrypt_makes, .timeout = 60)
{
    static const struct {
        const char *prefix, *setting_msg;
        unsigned long count;
    } m[] = {
        {"$2b$",
         "not a valid bcrypt hash: 29 characters, not 60 (\"$2b$\", the cost, \"$\", 53 "
         "of ./0-9A-Za-z): a setting without its checksum; " AUTH_MAKE,
         4},
        {"$2y$",
         "not a valid bcrypt hash: 29 characters, not 60 (\"$2b$\", the cost, \"$\", 53 "
         "of ./0-9A-Za-z): a setting without its checksum; " AUTH_MAKE,
         4},
        {"$y$",
         "not a valid yescrypt hash: no checksum after the salt: a setting, not a hash; " AUTH_MAKE,
         1},
        {"$6$",
         "not a valid SHA-512-crypt hash: no checksum after the salt: a setting, not a "
         "hash; " AUTH_MAKE,
         1000},
        {"$6$",
         "not a valid SHA-512-crypt hash: no checksum after the salt: a setting, not a "
         "hash; " AUTH_MAKE,
         0},
    };
    struct crypt_data *cd = calloc(1, sizeof(*cd));

    cr_assert_not_null(cd);
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
        for (int k = 0; k < 16; k++) {
            char setting[CRYPT_GENSALT_OUTPUT_SIZE], pw[32], *doc = NULL, *expected = NULL;
            const char *h;

            cr_assert_not_null(
                crypt_gensalt_rn(m[i].prefix, m[i].count, NULL, 0, setting, sizeof(setting)));
            snprintf(pw, sizeof(pw), "pw-%zu-%d", i, k);
            h = crypt_rn(pw, setting, cd, sizeof(*cd));
            cr_assert_not_null(h, "%s", setting);
            cr_assert_gt(asprintf(&doc, BA_USERS("\"u\": \"%s\""), h), 0);
            EXPECT(doc, "");
            free(doc);
            /* a $6$ setting ends without the '$' after the salt: add it, as a hash has */
            cr_assert_gt(
                asprintf(&doc, BA_USERS("\"u\": \"%s%s\""), setting, setting[1] == '6' ? "$" : ""),
                0);
            cr_assert_gt(asprintf(&expected, "/rules/0/basic_auth/users/u: %s", m[i].setting_msg),
                         0);
            EXPECT(doc, expected);
            free(doc);
            free(expected);
        }
    }
    free(cd);
}

Test(cfg_rules, basic_auth_refuses_other_hashes)
{
    /* plain text, and formats that are not accepted, named where recognisable */
    EXPECT_HASH("hunter2", "looks like plain text, not a crypt(3) hash; " AUTH_USE);
    EXPECT_HASH("correct horse battery staple",
                "looks like plain text, not a crypt(3) hash; " AUTH_USE);
    EXPECT_HASH("$ecret", "looks like plain text, not a crypt(3) hash; " AUTH_USE);
    EXPECT_HASH("", "empty, not a crypt(3) hash; " AUTH_USE);
    EXPECT_HASH("$1$EyhIu2/x$1.dP0E5vBb6XqRb93zlb51", "$1$ (MD5-crypt) is not accepted; " AUTH_USE);
    EXPECT_HASH("$5$S9J7fClGQozmewhw$Ow4JVpzXKdDb5HoKd0DNQwr58UcqhKoF17xYXnte1e/",
                "$5$ (SHA-256-crypt) is not accepted; " AUTH_USE);
    EXPECT_HASH("$2a$05$ebOp5MFIwA.N/iOFeal84.s7fma4CizyOK9kiZ1jU2RJ18DlxnVkm",
                "$2a$ (bcrypt's old prefix) is not accepted; " AUTH_USE);
    EXPECT_HASH("$2x$05$ebOp5MFIwA.N/iOFeal84.s7fma4CizyOK9kiZ1jU2RJ18DlxnVkm",
                "$2x$ (bcrypt with the 8-bit bug) is not accepted; " AUTH_USE);
    EXPECT_HASH("$apr1$Jf9yS1Cp$SdRcDgBm6kYcRkPqXGvBx0",
                "$apr1$ (Apache MD5, htpasswd -m) is not accepted; " AUTH_USE);
    EXPECT_HASH("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
                "{SHA} (unsalted SHA-1, htpasswd -s) is not accepted; " AUTH_USE);
    EXPECT_HASH(
        "ab01FAX.bQRSU",
        "looks like traditional DES crypt (or plain text), which is not accepted; " AUTH_USE);
    EXPECT_HASH("_J9..8sSFabcdefghijk", "_ (BSDi extended DES) is not accepted; " AUTH_USE);
    EXPECT_HASH("$gy$j9T$23BGBzF3wuVcl8UYlEaa2/$4M1BC8BdIAYVZ9BgnvvlMsOLrE1PZuyaXVpffqsM6A5",
                "$gy$ (GOST yescrypt) is not accepted; " AUTH_USE);
    EXPECT_HASH("$7$CU..../....0pzBNcJyPYbQfuWuVE6ho0$/50k/UM75RyAW5qmAQSTrbjG.YStn26.x1w.HF.vBo/",
                "$7$ (scrypt) is not accepted; " AUTH_USE);
    EXPECT_HASH("$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
                "$argon2 (Argon2, not in libcrypt) is not accepted; " AUTH_USE);
    EXPECT_HASH("$zz$abc", "\"$zz$\" is a hash format ringproxy does not accept; " AUTH_USE);
    /* copy-paste slips */
    EXPECT_HASH("qa:" H_2Y,
                "looks like an htpasswd line (USER:HASH); give only the hash after the ':'");
    EXPECT_HASH(H_2Y "\\n",
                "the hash has a space or line break at its start or end; give the hash alone");
    EXPECT_HASH(" " H_2Y,
                "the hash has a space or line break at its start or end; give the hash alone");
    EXPECT(BA_USERS("\"u\": 5"), "/rules/0/basic_auth/users/u: expected a string (a crypt(3) "
                                 "hash), got 5");
    EXPECT(BA_USERS("\"u\": null"), "/rules/0/basic_auth/users/u: expected a string (a crypt(3) "
                                    "hash), got null");
}

Test(cfg_rules, basic_auth_refuses_incomplete_hashes)
{
    /* bcrypt: exactly "$2b$NN$" and 53 of ./0-9A-Za-z, the cost from 04 to 31 */
    EXPECT_HASH("$2b$10$aH12YMCD8PHuUOVwUjc77e",
                "not a valid bcrypt hash: 29 characters, not 60 (\"$2b$\", the cost, \"$\", 53 of "
                "./0-9A-Za-z): a setting without its checksum; " AUTH_MAKE);
    EXPECT_HASH("$2b$10$aH12YMCD8PHuUOVwUjc77ezVvCxkMA.oll8zvr2/rRVtbvzO.yAQ",
                "not a valid bcrypt hash: 59 characters, not 60 (\"$2b$\", the cost, \"$\", 53 of "
                "./0-9A-Za-z); " AUTH_MAKE);
    EXPECT_HASH(
        "$2b$03$aH12YMCD8PHuUOVwUjc77ezVvCxkMA.oll8zvr2/rRVtbvzO.yAQ6",
        "not a valid bcrypt hash: the cost is two digits from 04 to 31, then \"$\"; " AUTH_MAKE);
    EXPECT_HASH(
        "$2b$32$aH12YMCD8PHuUOVwUjc77ezVvCxkMA.oll8zvr2/rRVtbvzO.yAQ6",
        "not a valid bcrypt hash: the cost is two digits from 04 to 31, then \"$\"; " AUTH_MAKE);
    EXPECT_HASH(
        "$2y$1x$aH12YMCD8PHuUOVwUjc77ezVvCxkMA.oll8zvr2/rRVtbvzO.yAQ6",
        "not a valid bcrypt hash: the cost is two digits from 04 to 31, then \"$\"; " AUTH_MAKE);
    EXPECT_HASH("$2b$10$aH12YMCD8PHuUOVwUjc77ezVvCxkMA.oll8zvr2/rRVtbvzO.yAQ!",
                "not a valid bcrypt hash: character 60 is not one of ./0-9A-Za-z; " AUTH_MAKE);
    EXPECT_HASH("$2b$10$aH12YMCD8PHuUOVwU$c77ezVvCxkMA.oll8zvr2/rRVtbvzO.yAQ6",
                "not a valid bcrypt hash: character 25 is not one of ./0-9A-Za-z; " AUTH_MAKE);
    /* SHA-512-crypt: "$6$" ["rounds=N$"] salt "$" and 86 of ./0-9A-Za-z */
    EXPECT_HASH("$6$GdUzN2zw90Fe27ee$",
                "not a valid SHA-512-crypt hash: no checksum after the salt: a setting, not a "
                "hash; " AUTH_MAKE);
    EXPECT_HASH("$6$GdUzN2zw90Fe27ee",
                "not a valid SHA-512-crypt hash: no checksum after the salt: a setting, not a "
                "hash; " AUTH_MAKE);
    EXPECT_HASH("$6$GdUzN2zw90Fe27ee$XsKahkMIcuk",
                "not a valid SHA-512-crypt hash: the checksum after the salt is 86 of "
                "./0-9A-Za-z, got 11 characters; " AUTH_MAKE);
    EXPECT_HASH(H_6 "x", "not a valid SHA-512-crypt hash: the checksum after the salt is 86 of "
                         "./0-9A-Za-z, got 87 characters; " AUTH_MAKE);
    EXPECT_HASH(
        "$6$rounds=999$GdUzN2zw90Fe27ee$XsKahkMIcuk/VAD.h8X8lvUyLjAOmK6WN1hd1xqrFuFDo6BIpFo"
        "zOPmevdFh.pripgC0SUDV3ck.y1U/Mb5cN.",
        "not a valid SHA-512-crypt hash: \"rounds=N$\" needs N from 1000 to 999999999; " AUTH_MAKE);
    EXPECT_HASH(
        "$6$$XsKahkMIcuk/VAD.h8X8lvUyLjAOmK6WN1hd1xqrFuFDo6BIpFozOPmevdFh.pripgC0SUDV3ck.y1"
        "U/Mb5cN.",
        "not a valid SHA-512-crypt hash: the salt is 1 to 16 characters, then \"$\"; " AUTH_MAKE);
    EXPECT_HASH(
        "$6$GdUzN2zw90Fe27eeX$XsKahkMIcuk/VAD.h8X8lvUyLjAOmK6WN1hd1xqrFuFDo6BIpFozOPmevdFh."
        "pripgC0SUDV3ck.y1U/Mb5cN.",
        "not a valid SHA-512-crypt hash: the salt is 1 to 16 characters, then \"$\"; " AUTH_MAKE);
    EXPECT_HASH("$6$Gd zN2zw90Fe27ee$XsKahkMIcuk/VAD.h8X8lvUyLjAOmK6WN1hd1xqrFuFDo6BIpFozOPmevdFh."
                "pripgC0SUDV3ck.y1U/Mb5cN.",
                "not a valid SHA-512-crypt hash: the salt has a space, ':' or a byte outside "
                "printable ASCII; " AUTH_MAKE);
    /* yescrypt: "$y$" params "$" salt "$" and 43 of ./0-9A-Za-z */
    EXPECT_HASH(
        "$y$j9T$luOhSAeVv5vM5X8bYJJcs/",
        "not a valid yescrypt hash: no checksum after the salt: a setting, not a hash; " AUTH_MAKE);
    EXPECT_HASH("$y$j9T$luOhSAeVv5vM5X8bYJJcs/$KmT1",
                "not a valid yescrypt hash: the checksum after the salt is 43 of ./0-9A-Za-z, got "
                "4 characters; " AUTH_MAKE);
    EXPECT_HASH(
        "$y$$luOhSAeVv5vM5X8bYJJcs/$KmT1ZyZdwyTxki21kagDt.kVXGxLWgyv.7kkvjMmgd9",
        "not a valid yescrypt hash: the parameters are of ./0-9A-Za-z, then \"$\"; " AUTH_MAKE);
    EXPECT_HASH("$y$j9T$$KmT1ZyZdwyTxki21kagDt.kVXGxLWgyv.7kkvjMmgd9",
                "not a valid yescrypt hash: the salt is of ./0-9A-Za-z, then \"$\"; " AUTH_MAKE);
    EXPECT_HASH("$y$j9T$luOh*AeVv5vM5X8bYJJcs/$KmT1ZyZdwyTxki21kagDt.kVXGxLWgyv.7kkvjMmgd9",
                "not a valid yescrypt hash: the salt is of ./0-9A-Za-z, then \"$\"; " AUTH_MAKE);
    /* crypt_checksalt() has the last word on what passed the shape checks */
    EXPECT_HASH("$6$Gd*zN2zw90Fe27ee$XsKahkMIcuk/VAD.h8X8lvUyLjAOmK6WN1hd1xqrFuFDo6BIpFozOPmevdFh."
                "pripgC0SUDV3ck.y1U/Mb5cN.",
                "SHA-512-crypt hash refused by libcrypt (crypt_checksalt): its settings are "
                "invalid; " AUTH_MAKE);
}

Test(cfg_rules, basic_auth_hash_too_long)
{
    char *doc = NULL, salt[240];

    memset(salt, 'a', sizeof(salt) - 1);
    salt[sizeof(salt) - 1] = '\0';
    cr_assert_gt(asprintf(&doc,
                          BA_USERS("\"u\": \"$y$j9T$%s$KmT1ZyZdwyTxki21kagDt.kVXGxLWgyv."
                                   "7kkvjMmgd9\""),
                          salt),
                 0);
    EXPECT(doc, "/rules/0/basic_auth/users/u: not a valid yescrypt hash: 290 bytes, more than "
                "255; " AUTH_MAKE);
    free(doc);
}

Test(cfg_rules, basic_auth_problems)
{
    EXPECT(BA("{\"users\": {\"qa\": \"" H_2B "\"}}"),
           "/rules/0/basic_auth: missing \"realm\" (the name the browser shows when it asks for a "
           "password)");
    EXPECT(BA("{\"realm\": \"r\"}"),
           "/rules/0/basic_auth: missing \"users\" (user name -> crypt(3) hash)");
    EXPECT(BA("{}"), "/rules/0/basic_auth: missing \"realm\" (the name the browser shows when it "
                     "asks for a password)\n"
                     "/rules/0/basic_auth: missing \"users\" (user name -> crypt(3) hash)");
    EXPECT(BA("[]"), "/rules/0/basic_auth: expected an object, got []");
    /* realm: 1 to 128 bytes of printable ASCII without '"' and '\' */
    EXPECT(BA("{\"realm\": 3, \"users\": {\"qa\": \"" H_2B "\"}}"),
           "/rules/0/basic_auth/realm: expected a string, got 3");
    EXPECT(BA("{\"realm\": \"\", \"users\": {\"qa\": \"" H_2B "\"}}"),
           "/rules/0/basic_auth/realm: \"\" is not a realm (1 to 128 printable ASCII characters, "
           "without '\"' and '\\')");
    EXPECT(BA("{\"realm\": \"say \\\"hi\\\"\", \"users\": {\"qa\": \"" H_2B "\"}}"),
           "/rules/0/basic_auth/realm: \"say \"hi\"\" is not a realm (1 to 128 printable ASCII "
           "characters, without '\"' and '\\')");
    EXPECT(BA("{\"realm\": \"a\\\\b\", \"users\": {\"qa\": \"" H_2B "\"}}"),
           "/rules/0/basic_auth/realm: \"a\\b\" is not a realm (1 to 128 printable ASCII "
           "characters, without '\"' and '\\')");
    EXPECT(BA("{\"realm\": \"tab\\there\", \"users\": {\"qa\": \"" H_2B "\"}}"),
           "/rules/0/basic_auth/realm: \"tab\\x09here\" is not a realm (1 to 128 printable ASCII "
           "characters, without '\"' and '\\')");
    EXPECT(BA("{\"realm\": \"caf\\u00e9\", \"users\": {\"qa\": \"" H_2B "\"}}"),
           "/rules/0/basic_auth/realm: \"caf\\xc3\\xa9\" is not a realm (1 to 128 printable ASCII "
           "characters, without '\"' and '\\')");
    /* users: a non-empty object; names without ':' or control characters */
    EXPECT(BA("{\"realm\": \"r\", \"users\": {}}"),
           "/rules/0/basic_auth/users: no users; a basic_auth has at least one (user name -> "
           "crypt(3) hash)");
    EXPECT(BA("{\"realm\": \"r\", \"users\": [\"qa\"]}"),
           "/rules/0/basic_auth/users: expected an object (user name -> crypt(3) hash), got "
           "[\"qa\"]");
    EXPECT(BA_USERS("\"a:b\": \"" H_2B "\", \"\": \"" H_2B "\", \"c\\u0001\": \"" H_2B
                    "\", \"d\\u007f\": \"" H_2B "\", \"tab\\t\": \"hunter2\""),
           "/rules/0/basic_auth/users/a:b: \"a:b\" is not a user name (1 to 255 bytes, without "
           "':' or control characters)\n"
           "/rules/0/basic_auth/users/: \"\" is not a user name (1 to 255 bytes, without ':' or "
           "control characters)\n"
           "/rules/0/basic_auth/users/c\\u0001: \"c\\x01\" is not a user name (1 to 255 bytes, "
           "without ':' or control characters)\n"
           "/rules/0/basic_auth/users/d\\u007F: \"d\\x7f\" is not a user name (1 to 255 bytes, "
           "without ':' or control characters)\n"
           "/rules/0/basic_auth/users/tab\\u0009: \"tab\\x09\" is not a user name (1 to 255 bytes, "
           "without ':' or control characters)\n"
           "/rules/0/basic_auth/users/tab\\u0009: looks like plain text, not a crypt(3) "
           "hash; " AUTH_USE);
    /* unknown keys, with suggestions */
    EXPECT(BA("{\"relam\": \"r\", \"realm\": \"r\", \"users\": {\"qa\": \"" H_2B "\"}}"),
           "/rules/0/basic_auth/relam: unknown key; did you mean \"realm\"?");
    EXPECT(BA("{\"realm\": \"r\", \"user\": {\"qa\": \"" H_2B "\"}}"),
           "/rules/0/basic_auth/user: unknown key; did you mean \"users\"?\n"
           "/rules/0/basic_auth: missing \"users\" (user name -> crypt(3) hash)");
    EXPECT(BA("{\"realm\": \"r\", \"users\": {\"qa\": \"" H_2B "\"}, \"passwords\": {}}"),
           "/rules/0/basic_auth/passwords: unknown key; expected one of \"realm\", \"users\"");
    /* a second terminal action, either way round; the second's own problems too */
    EXPECT(RULES("{\"basic_auth\": {\"realm\": \"r\", \"users\": {\"qa\": \"" H_2B "\"}}, "
                 "\"deny\": {}}"),
           "/rules/0: \"basic_auth\" and \"deny\" both answer; a rule has at most one of "
           "redirect, redirect_map, respond, deny, rate_limit, basic_auth");
    EXPECT(RULES("{\"rate_limit\": {\"key\": \"client_ip\", \"per_second\": 1}, "
                 "\"basic_auth\": {\"realm\": \"r\", \"users\": {\"qa\": \"hunter2\"}}}"),
           "/rules/0: \"rate_limit\" and \"basic_auth\" both answer; a rule has at most one of "
           "redirect, redirect_map, respond, deny, rate_limit, basic_auth\n"
           "/rules/0/basic_auth/users/qa: looks like plain text, not a crypt(3) hash; " AUTH_USE);
    EXPECT(RULES("{\"basic_auth\": {\"realm\": \"r\", \"users\": {\"qa\": \"" H_2B "\"}}, "
                 "\"bsaic_auth\": {}}"),
           "/rules/0/bsaic_auth: unknown key; did you mean \"basic_auth\"?");
    /* a basic_auth without match does not answer every request: later rules can run */
    EXPECT(RULES("{\"basic_auth\": {\"realm\": \"r\", \"users\": {\"qa\": \"" H_2B "\"}}}, "
                 "{\"deny\": {}}"),
           "");
}

Test(cfg_rules, basic_auth_bounds)
{
    char name[CFG_AUTH_MAX_USER + 2], realm[CFG_AUTH_MAX_REALM + 2], *doc = NULL, *exp = NULL;
    FILE *f;
    size_t len = 0;

    memset(name, 'n', sizeof(name) - 1);
    name[CFG_AUTH_MAX_USER] = '\0';
    memset(realm, 'r', sizeof(realm) - 1);
    realm[CFG_AUTH_MAX_REALM] = '\0';
    /* at the bounds: accepted */
    cr_assert_gt(
        asprintf(&doc,
                 RULES("{\"basic_auth\": {\"realm\": \"%s\", \"users\": {\"%s\": \"" H_2B "\"}}}"),
                 realm, name),
        0);
    EXPECT(doc, "");
    free(doc);
    /* one over: refused */
    name[CFG_AUTH_MAX_USER] = 'n';
    name[CFG_AUTH_MAX_USER + 1] = '\0';
    realm[CFG_AUTH_MAX_REALM] = 'r';
    realm[CFG_AUTH_MAX_REALM + 1] = '\0';
    cr_assert_gt(
        asprintf(&doc,
                 RULES("{\"basic_auth\": {\"realm\": \"%s\", \"users\": {\"%s\": \"" H_2B "\"}}}"),
                 realm, name),
        0);
    {
        char *got = problems_at(doc, NULL);

        cr_expect(strstr(got, "/rules/0/basic_auth/realm: \"rrrr"), "%s", got);
        cr_expect(strstr(got, "...\" is not a realm (1 to 128 printable ASCII characters, "
                              "without '\"' and '\\')\n/rules/0/basic_auth/users/nnnn"),
                  "%s", got);
        cr_expect(strstr(got, "...\" is not a user name (1 to 255 bytes, without ':' or control "
                              "characters)"),
                  "%s", got);
        free(got);
    }
    free(doc);

    /* CFG_AUTH_MAX_USERS users, then one more */
    for (int more = 0; more < 2; more++) {
        f = open_memstream(&doc, &len);
        cr_assert_not_null(f);
        fprintf(f, "{\"rules\": [{\"basic_auth\": {\"realm\": \"r\", \"users\": {");
        for (int i = 0; i < CFG_AUTH_MAX_USERS + more; i++)
            fprintf(f, "%s\"u%d\": \"%s\"", i ? ", " : "", i, H_2Y);
        fprintf(f, "}}}]}");
        fclose(f);
        if (!more) {
            struct cfg *c = load_at(doc, NULL);

            cr_expect_eq(c->rules->v[0].auth.users.n, CFG_AUTH_MAX_USERS);
            cfg_free(c);
        } else {
            cr_assert_gt(
                asprintf(&exp, "/rules/0/basic_auth/users: more than %d users", CFG_AUTH_MAX_USERS),
                0);
            EXPECT(doc, exp);
            free(exp);
        }
        free(doc);
    }
}

Test(cfg_rules, lists)
{
    EXPECT("{\"lists\": {\"of fice\": [\"10.0.0.0/8\"]}}",
           "/lists/of fice: \"of fice\" is not a list name (1 to 64 letters, digits, '_', '-')");
    EXPECT("{\"lists\": {\"a\": []}}", "/lists/a: an empty list matches nothing");
    EXPECT("{\"lists\": {\"a\": [\"@b\"], \"b\": [\"::1\"]}}",
           "/lists/a/0: \"@b\": a list cannot refer to another list");
    EXPECT("{\"lists\": {\"a\": [\"10.0.0.1/8\"]}}",
           "/lists/a/0: 10.0.0.1/8: host bits set; did you mean 10.0.0.0/8?");
    EXPECT("{\"lists\": [\"10.0.0.0/8\"]}",
           "/lists: expected an object (list name -> addresses and CIDRs), got [\"10.0.0.0/8\"]");
    EXPECT("{\"lists\": {\"a\": [1]}}", "/lists/a/0: expected a string, got 1");
    EXPECT_AT("{\"lists\": {\"a\": \"10.1.0.0/16\"}}", NULL, "");
}

Test(cfg_rules, client_ip)
{
    EXPECT("{\"lists\": {\"office\": [\"10.0.0.0/8\"]}, \"rules\": [{\"match\": {\"client_ip\": "
           "[\"10.0.0.0/8\", \"10.0.0.0/33\"]}, \"deny\": {}}]}",
           "/rules/0/match/client_ip/1: \"10.0.0.0/33\" is not an address or CIDR");
    EXPECT("{\"lists\": {\"office\": [\"10.0.0.0/8\"]}, \"rules\": [{\"match\": {\"client_ip\": "
           "[\"@ofice\"]}, \"deny\": {}}]}",
           "/rules/0/match/client_ip/0: unknown list \"@ofice\"; did you mean \"@office\"?");
    EXPECT("{\"lists\": {\"office\": [\"10.0.0.0/8\"]}, \"rules\": [{\"match\": {\"client_ip\": "
           "\"@zzzzzz\"}, \"deny\": {}}]}",
           "/rules/0/match/client_ip: unknown list \"@zzzzzz\"; the lists are defined in /lists");
    EXPECT(RULES("{\"match\": {\"client_ip\": [\"@office\"]}, \"deny\": {}}"),
           "/rules/0/match/client_ip/0: unknown list \"@office\"; no lists are defined (/lists)");
    EXPECT(RULES("{\"match\": {\"client_ip\": [\"2001:db8::1/32\"]}, \"deny\": {}}"),
           "/rules/0/match/client_ip/0: 2001:db8::1/32: host bits set; did you mean "
           "2001:db8::/32?");
    EXPECT(RULES("{\"match\": {\"client_ip\": [\"fe80::1%eth0\", \"1.2.3\", \"01.2.3.4\", "
                 "\"1.2.3.4/08\", \"::/129\", \"1.2.3.4/\"]}, \"deny\": {}}"),
           "/rules/0/match/client_ip/0: \"fe80::1%eth0\" is not an address or CIDR\n"
           "/rules/0/match/client_ip/1: \"1.2.3\" is not an address or CIDR\n"
           "/rules/0/match/client_ip/2: \"01.2.3.4\" is not an address or CIDR\n"
           "/rules/0/match/client_ip/3: \"1.2.3.4/08\" is not an address or CIDR\n"
           "/rules/0/match/client_ip/4: \"::/129\" is not an address or CIDR\n"
           "/rules/0/match/client_ip/5: \"1.2.3.4/\" is not an address or CIDR");
}

Test(cfg_rules, matchers)
{
    EXPECT(RULES("{\"match\": {\"host\": []}, \"deny\": {}}"),
           "/rules/0/match/host: an empty list matches nothing");
    EXPECT(RULES("{\"match\": {\"host\": [\"a.example:8080\", \"a b\", \"*.\"]}, \"deny\": {}}"),
           "/rules/0/match/host/0: \"a.example:8080\": write the host without a port (the port "
           "is ignored)\n"
           "/rules/0/match/host/1: \"a b\" is not a host name (letters, digits, '-', '.'; "
           "\"*.example.com\" for its subdomains)\n"
           "/rules/0/match/host/2: \"*.\" is not a host name (letters, digits, '-', '.'; "
           "\"*.example.com\" for its subdomains)");
    EXPECT(RULES("{\"match\": {\"path\": [\"admin\", \"/a?b\", \"/a*/b\", \"/../x\"]}, "
                 "\"deny\": {}}"),
           "/rules/0/match/path/0: \"admin\": a path starts with '/'\n"
           "/rules/0/match/path/1: \"/a?b\": a path has no query ('?')\n"
           "/rules/0/match/path/2: \"/a*/b\": '*' only ends a prefix, as in \"/x/*\"\n"
           "/rules/0/match/path/3: \"/../x\" cannot be normalised (a \"..\" above the root, %00, "
           "or a '%' without two hex digits)");
    EXPECT(RULES("{\"match\": {\"method\": [\"get\", \"GE T\"]}, \"deny\": {}}"),
           "/rules/0/match/method/0: \"get\": methods are case-sensitive; did you mean \"GET\"?\n"
           "/rules/0/match/method/1: \"GE T\" is not a method");
    EXPECT(RULES("{\"match\": {\"scheme\": \"ftp\"}, \"deny\": {}}"),
           "/rules/0/match/scheme: expected \"http\" or \"https\", got \"ftp\"");
    EXPECT(RULES("{\"match\": {\"header\": {\"X A\": true, \"B\": 1, \"C\": [], \"D\": "
                 "[\"a\\u0001\"]}}, \"deny\": {}}"),
           "/rules/0/match/header/X A: \"X A\" is not a header name (1 to 64 letters, digits and "
           "!#$%&'*+-.^_`|~)\n"
           "/rules/0/match/header/B: expected a string or an array of strings, got 1\n"
           "/rules/0/match/header/C: an empty list matches nothing\n"
           "/rules/0/match/header/D/0: \"a\\x01\": a header value has no control characters");
    EXPECT(RULES("{\"match\": {\"not\": {}}, \"deny\": {}}"),
           "/rules/0/match/not: an empty match inside \"not\" matches no request");
    EXPECT(RULES("{\"match\": {\"not\": {\"not\": {\"not\": {\"not\": {\"not\": {\"method\": "
                 "\"GET\"}}}}}}, \"deny\": {}}"),
           "/rules/0/match/not/not/not/not/not: \"not\" nested more than 4 deep");
    EXPECT(RULES("{\"match\": {\"not\": {\"not\": {\"not\": {\"not\": {\"method\": \"GET\"}}}}}, "
                 "\"deny\": {}}"),
           "");
    EXPECT(RULES("{\"match\": [], \"deny\": {}}"), "/rules/0/match: expected an object, got []");
}

Test(cfg_rules, rule_shape)
{
    EXPECT(RULES("{\"match\": {\"path\": \"/a\"}, \"redirect\": {\"to\": \"/b\"}, \"deny\": {}}"),
           "/rules/0: \"redirect\" and \"deny\" both answer; a rule has at most one of redirect, "
           "redirect_map, respond, deny, rate_limit, basic_auth");
    EXPECT(RULES("{\"name\": \"x\", \"match\": {\"path\": \"/a\"}}"),
           "/rules/0: no action; a rule has at least one of request_headers, response_headers, "
           "rewrite, redirect, redirect_map, respond, deny, rate_limit, basic_auth");
    EXPECT(RULES("{\"name\": \"a\", \"deny\": {}, \"match\": {\"path\": \"/a\"}}, "
                 "{\"name\": \"a\", \"deny\": {}, \"match\": {\"path\": \"/b\"}}"),
           "/rules/1/name: \"a\" is also the name of /rules/0");
    EXPECT(RULES("{\"name\": \"a b\", \"deny\": {}}"),
           "/rules/0/name: \"a b\" is not a rule name (1 to 64 letters, digits, '_', '.', '-')");
    EXPECT(RULES("{\"name\": \"\", \"deny\": {}}"),
           "/rules/0/name: \"\" is not a rule name (1 to 64 letters, digits, '_', '.', '-')");
    EXPECT(RULES("1"), "/rules/0: expected an object, got 1");
    EXPECT("{\"rules\": {}}", "/rules: expected an array of rules, got {}");
}

Test(cfg_rules, can_never_run)
{
    EXPECT(RULES("{\"response_headers\": {\"set\": {\"A\": \"b\"}}}, "
                 "{\"name\": \"m\", \"redirect_map\": {\"file\": \"x.txt\"}}, "
                 "{\"name\": \"all\", \"deny\": {}}, "
                 "{\"match\": {\"path\": \"/a\"}, \"deny\": {}}, "
                 "{\"match\": {\"path\": \"" CFG_HEALTHZ_PATH "\"}, \"respond\": {}}, "
                 "{\"match\": {\"path\": \"/.well-known/*\"}, \"respond\": {}}, "
                 "{\"match\": {\"path\": \"/*\"}, \"respond\": {}}"),
           "/rules/1/redirect_map/file: \"x.txt\": files are read from the config folder, and "
           "this document was loaded without one\n"
           "/rules/3: can never run: /rules/2 has no match and answers every request\n"
           "/rules/6: can never run: /rules/2 has no match and answers every request");
    EXPECT(RULES("{\"match\": {}, \"redirect\": {\"to\": \"https://{host}{uri}\"}}, "
                 "{\"deny\": {}}"),
           "/rules/1: can never run: /rules/0 has no match and answers every request");
}

/*
 * C10: edited names are kept folded (every separator read as '-', as origins
 * that build CGI-style names read them), so the proxy drops every spelling
 * of a set or removed name: one id for X_A, x-a and X.A, under the folded key.
 */
Test(cfg_rules, edit_names_are_folded)
{
    struct cfg *c = load_at(RULES("{\"request_headers\": {\"set\": {\"X_A\": \"1\"}}}, "
                                  "{\"request_headers\": {\"remove\": [\"x-a\"]}}, "
                                  "{\"response_headers\": {\"set\": {\"X.A\": \"2\"}}}"),
                            NULL);
    const struct cfg_rules *rs = c->rules;
    long id = cfg_hset_find(&rs->edit_names, "x-a", 3);

    cr_assert_geq(id, 0);
    cr_expect_eq(rs->edit_names.n, 1);
    cr_expect_eq(rs->v[0].req_hdrs.v[0].name_id, (uint32_t)id);
    cr_expect_eq(rs->v[1].req_hdrs.v[0].name_id, (uint32_t)id);
    cr_expect_eq(rs->v[2].resp_hdrs.v[0].name_id, (uint32_t)id);
    cr_expect_eq(cfg_hset_find(&rs->edit_names, "X_A", 3), -1, "stored as written");
    cr_expect_str_eq(rs->v[0].req_hdrs.v[0].name, "X_A", "written as given");
    cfg_free(c);
    EXPECT(RULES("{\"respond\": {\"body\": \"x\", \"headers\": {\"Content_Type\": \"a/b\"}}}"),
           "/rules/0/respond/headers/Content_Type: set the Content-Type with "
           "/rules/0/respond/content_type");
}

Test(cfg_rules, header_edits)
{
    EXPECT(RULES("{\"request_headers\": {\"set\": {\"Content-Length\": \"1\", \"host\": \"x\"}, "
                 "\"remove\": [\"Connection\", \"TE\"], \"add\": {\"Upgrade\": \"h2c\"}}}, "
                 "{\"response_headers\": {\"set\": {\"Transfer-Encoding\": \"x\", \"Keep-Alive\": "
                 "\"x\", \"Proxy-Connection\": \"x\", \"Trailer\": \"x\"}}}"),
           "/rules/0/request_headers/remove/0: \"Connection\" is a framing or hop-by-hop field; "
           "rules cannot edit it\n"
           "/rules/0/request_headers/remove/1: \"TE\" is a framing or hop-by-hop field; rules "
           "cannot edit it\n"
           "/rules/0/request_headers/set/Content-Length: \"Content-Length\" is a framing or "
           "hop-by-hop field; rules cannot edit it\n"
           "/rules/0/request_headers/set/host: \"host\" is a framing or hop-by-hop field; rules "
           "cannot edit it\n"
           "/rules/0/request_headers/add/Upgrade: \"Upgrade\" is a framing or hop-by-hop field; "
           "rules cannot edit it\n"
           "/rules/1/response_headers/set/Transfer-Encoding: \"Transfer-Encoding\" is a framing "
           "or hop-by-hop field; rules cannot edit it\n"
           "/rules/1/response_headers/set/Keep-Alive: \"Keep-Alive\" is a framing or hop-by-hop "
           "field; rules cannot edit it\n"
           "/rules/1/response_headers/set/Proxy-Connection: \"Proxy-Connection\" is a framing or "
           "hop-by-hop field; rules cannot edit it\n"
           "/rules/1/response_headers/set/Trailer: \"Trailer\" is a framing or hop-by-hop field; "
           "rules cannot edit it");
    /* spellings that origins reading any separator as '-' take for those fields */
    EXPECT(RULES("{\"request_headers\": {\"add\": {\"Transfer_Encoding\": \"chunked\"}, "
                 "\"set\": {\"content.length\": \"1\"}}}"),
           "/rules/0/request_headers/set/content.length: \"content.length\" is Content-Length "
           "to origins that read any separator as '-' (a framing or hop-by-hop field); rules "
           "cannot edit it\n"
           "/rules/0/request_headers/add/Transfer_Encoding: \"Transfer_Encoding\" is "
           "Transfer-Encoding to origins that read any separator as '-' (a framing or hop-by-hop "
           "field); rules cannot edit it");
    EXPECT(RULES("{\"request_headers\": {\"set\": {\"X-Client-IP\": \"a\"}, \"remove\": "
                 "[\"X_Client_IP\"]}}"),
           "/rules/0/request_headers/set/X-Client-IP: \"X-Client-IP\" is also edited by "
           "/rules/0/request_headers/remove/0");
    EXPECT(RULES("{\"response_headers\": {\"set\": {\"X-A\": \"a\\r\\nb\", \"x-b\": \"{hots}\", "
                 "\"X-C\": 1}, \"remove\": [\"x-a\", \"X-D\", \"x-d\"], \"add\": {\"X-E\": []}}}"),
           "/rules/0/response_headers/remove/2: \"x-d\" is also edited by "
           "/rules/0/response_headers/remove/1\n"
           "/rules/0/response_headers/set/X-A: \"X-A\" is also edited by "
           "/rules/0/response_headers/remove/0\n"
           "/rules/0/response_headers/set/x-b: unknown placeholder \"{hots}\"; did you mean "
           "\"{host}\"?\n"
           "/rules/0/response_headers/set/X-C: expected a string, got 1\n"
           "/rules/0/response_headers/add/X-E: expected a value or a non-empty array of values, "
           "got []");
    EXPECT(RULES("{\"response_headers\": {\"set\": {\"X-A\": \"a\\u0007\"}}}"),
           "/rules/0/response_headers/set/X-A: byte 0x07 at offset 1 is not allowed in a header "
           "value (no control characters)");
    EXPECT(RULES("{\"response_headers\": {\"remove\": \"Server\"}}"),
           "/rules/0/response_headers/remove: expected an array of header names, got \"Server\"");
    EXPECT(RULES("{\"response_headers\": {\"set\": {\"X\": \"{word} {{host}} { } {}\"}}}"),
           "/rules/0/response_headers/set/X: unknown placeholder \"{word}\"; the placeholders are "
           "{scheme}, {host}, {path}, {query}, {uri}, {method}, {client_ip}");
}

Test(cfg_rules, too_many_edit_names)
{
    /* 257 distinct names over 5 rules of at most 64 edits each. */
    char *doc = NULL, *got;
    size_t len = 0;
    FILE *f = open_memstream(&doc, &len);
    int name = 0;

    fprintf(f, "{\"rules\": [");
    for (int r = 0; r < 5; r++) {
        fprintf(f, "%s{\"response_headers\": {\"remove\": [", r ? ", " : "");
        for (int i = 0; i < 64 && name < 257; i++)
            fprintf(f, "%s\"X-%d\"", i ? ", " : "", name++);
        fprintf(f, "]}}");
    }
    fprintf(f, "]}");
    fclose(f);
    got = problems_at(doc, NULL);
    cr_expect_str_eq(got, "/rules/4/response_headers/remove/0: more than 256 distinct header "
                          "names are edited in this config");
    free(got);
    free(doc);
    /* And 65 edits in one rule and direction. */
    f = open_memstream(&doc, &len);
    fprintf(f, "{\"rules\": [{\"response_headers\": {\"remove\": [");
    for (int i = 0; i < 65; i++)
        fprintf(f, "%s\"X-%d\"", i ? ", " : "", i);
    fprintf(f, "]}}]}");
    fclose(f);
    got = problems_at(doc, NULL);
    cr_expect_str_eq(got, "/rules/0/response_headers/remove/64: more than 64 header edits in "
                          "one rule and direction");
    free(got);
    free(doc);
}

Test(cfg_rules, actions)
{
    EXPECT(RULES("{\"redirect\": {\"status\": 200}}"),
           "/rules/0/redirect/status: expected one of 301, 302, 303, 307, 308, got 200\n"
           "/rules/0/redirect: missing \"to\" (the Location: an absolute URL or a path)");
    EXPECT(RULES("{\"match\": {\"path\": \"/a\"}, \"redirect\": {\"to\": \"example.com/x\"}}, "
                 "{\"match\": {\"path\": \"/b\"}, \"redirect\": {\"to\": \"//evil.example/\"}}, "
                 "{\"match\": {\"path\": \"/c\"}, \"redirect\": {\"to\": \"/a b\"}}, "
                 "{\"match\": {\"path\": \"/d\"}, \"redirect\": {\"to\": \"{scheme}://x{uri}\", "
                 "\"status\": \"301\"}}"),
           "/rules/0/redirect/to: \"example.com/x\": expected an absolute http:// or https:// "
           "URL, or a path starting with a single '/'\n"
           "/rules/1/redirect/to: \"//evil.example/\": expected an absolute http:// or https:// "
           "URL, or a path starting with a single '/'\n"
           "/rules/2/redirect/to: byte 0x20 at offset 2 is not allowed in a URL (no spaces or "
           "control characters)\n"
           "/rules/3/redirect/status: expected one of 301, 302, 303, 307, 308, got \"301\"");
    EXPECT(RULES("{\"match\": {\"path\": \"/a\"}, \"deny\": {\"status\": 302}}, "
                 "{\"match\": {\"path\": \"/b\"}, \"respond\": {\"status\": 101}}, "
                 "{\"match\": {\"path\": \"/c\"}, \"respond\": {\"status\": 304, \"body\": "
                 "\"x\"}}, "
                 "{\"match\": {\"path\": \"/d\"}, \"respond\": {\"body\": \"x\", \"file\": "
                 "\"y\"}}, "
                 "{\"match\": {\"path\": \"/e\"}, \"respond\": {\"content_type\": \"text/html\"}}, "
                 "{\"match\": {\"path\": \"/f\"}, \"respond\": {\"body\": \"x\", \"headers\": "
                 "{\"content-type\": \"text/html\"}}}"),
           "/rules/0/deny/status: expected a status from 400 to 599, got 302\n"
           "/rules/1/respond/status: expected a status from 200 to 599, got 101\n"
           "/rules/2/respond: a 304 response has no body; remove \"body\"\n"
           "/rules/3/respond: \"body\" and \"file\" both give the body; use one\n"
           "/rules/4/respond: \"content_type\" without \"body\" or \"file\"\n"
           "/rules/5/respond/headers/content-type: set the Content-Type with "
           "/rules/5/respond/content_type");
    EXPECT(RULES("{\"rewrite\": {}}, {\"rewrite\": {\"strip_prefix\": \"/a\", \"add_prefix\": "
                 "\"/b\"}}, {\"rewrite\": {\"path\": \"x\"}}, {\"rewrite\": {\"strip_prefix\": "
                 "\"/\"}}, {\"rewrite\": {\"add_prefix\": \"/%zz\"}}"),
           "/rules/0/rewrite: expected one of \"strip_prefix\", \"add_prefix\", \"path\"\n"
           "/rules/1/rewrite: \"strip_prefix\" and \"add_prefix\" both rewrite; a rewrite has "
           "exactly one of strip_prefix, add_prefix, path\n"
           "/rules/2/rewrite/path: \"x\": expected a path starting with '/', without a query\n"
           "/rules/3/rewrite/strip_prefix: \"/\" as a prefix changes nothing\n"
           "/rules/4/rewrite/add_prefix: \"/%zz\" cannot be normalised (a \"..\" above the root, "
           "%00, or a '%' without two hex digits)");
    EXPECT(RULES("{\"redirect_map\": {\"status\": 301}}"),
           "/rules/0/redirect_map: missing \"file\" (a file of FROM TO lines in the config "
           "folder)");
}

Test(cfg_rules, error_pages_keys)
{
    EXPECT("{\"error_pages\": {\"600\": \"a.html\", \"3xx\": \"a.html\", \"404\": 1, \"5xx\": "
           "\"b.html\"}}",
           "/error_pages/600: \"600\" is not a status from \"400\" to \"599\" or a class \"4xx\" "
           "or \"5xx\"\n"
           "/error_pages/3xx: \"3xx\" is not a status from \"400\" to \"599\" or a class \"4xx\" "
           "or \"5xx\"\n"
           "/error_pages/5xx: \"b.html\": files are read from the config folder, and this "
           "document was loaded without one\n"
           "/error_pages/404: expected a file name (a string), got 1");
}

/* ---- files ---- */

Test(cfg_rules, files)
{
    char *dir = new_dir(), *outside = new_dir(), path[600], *big;
    size_t n = CFG_RULES_MAX_FILE + 1;

    put_file(dir, "ok.html", "<p>ok</p>", 9);
    put_file(outside, "secret.html", "secret", 6);
    snprintf(path, sizeof(path), "%s/sub", dir);
    cr_assert_eq(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/out.html", dir);
    char target[600];
    snprintf(target, sizeof(target), "%s/secret.html", outside);
    cr_assert_eq(symlink(target, path), 0);
    snprintf(path, sizeof(path), "%s/in.html", dir);
    cr_assert_eq(symlink("ok.html", path), 0);
    snprintf(path, sizeof(path), "%s/fifo", dir);
    cr_assert_eq(mkfifo(path, 0644), 0);
    big = malloc(n);
    memset(big, 'x', n);
    put_file(dir, "big.html", big, n);
    put_file(dir, "max.html", big, n - 1);
    free(big);

    char json[4096];
    snprintf(json, sizeof(json),
             "{\"error_pages\": {\"400\": \"../x.html\", \"401\": \"%s/secret.html\", \"402\": "
             "\"out.html\", \"403\": \"missing.html\", \"404\": \"sub\", \"405\": \"big.html\", "
             "\"406\": \"fifo\", \"407\": \"\", \"408\": \"sub/../ok.html\", \"409\": "
             "\"in.html\", \"410\": \"max.html\", \"411\": \"./ok.html\", \"412\": "
             "\"ok.html/x\"}}",
             outside);
    char want[4096];
    snprintf(want, sizeof(want),
             "/error_pages/400: \"../x.html\" has a \"..\" component; name a file inside the "
             "config folder\n"
             "/error_pages/401: \"%s/secret.html\" is an absolute path; name a file inside the "
             "config folder\n"
             "/error_pages/402: \"out.html\" is a symbolic link leading outside the config "
             "folder\n"
             "/error_pages/403: \"missing.html\": no such file in the config folder\n"
             "/error_pages/404: \"sub\" is a directory, not a file\n"
             "/error_pages/405: \"big.html\" is larger than 1 MiB (1048577 bytes)\n"
             "/error_pages/406: \"fifo\" is not a regular file\n"
             "/error_pages/407: expected a file name, got \"\"\n"
             "/error_pages/408: \"sub/../ok.html\" has a \"..\" component; name a file inside "
             "the config folder\n"
             "/error_pages/412: \"ok.html/x\": no such file in the config folder",
             outside);
    EXPECT_AT(json, dir, want);

    /* The good ones, and one load per file: in.html, ./ok.html and ok.html are one page. */
    struct cfg *c = load_at("{\"error_pages\": {\"409\": \"in.html\", \"410\": \"max.html\", "
                            "\"411\": \"./ok.html\", \"4xx\": \"ok.html\"}, \"rules\": "
                            "[{\"respond\": {\"file\": \"ok.html\"}}]}",
                            dir);
    const struct cfg_rules *rs = c->rules;
    cr_assert_not_null(rs);
    cr_expect_eq(rs->npages, 2);
    cr_expect_eq(rs->pages_by_status[409], rs->pages_by_status[411]);
    cr_expect_eq(rs->pages_by_status[409], rs->pages_by_status[400]);
    cr_expect_eq(rs->v[0].body, rs->pages_by_status[409]);
    cr_expect_eq(rs->pages_by_status[410]->len, CFG_RULES_MAX_FILE);
    cr_expect_null(rs->pages_by_status[500]);
    cfg_free(c);
    rm_dir(dir);
    rm_dir(outside);
}

/* ---- the compiled model of a realistic config ---- */

Test(cfg_rules, compiled_model)
{
    struct cfg *c = NULL;
    struct cfg_errs e;
    char site[512];
    int rc;

    snprintf(site, sizeof(site), "%s/site", data_dir());
    rc = cfg_load(site, &c, &e);
    cr_assert_eq(rc, 0, "%s", e.n ? e.lines[0] : "");
    cfg_errs_free(&e);
    const struct cfg_rules *rs = c->rules;
    cr_assert_not_null(rs);
    cr_assert_eq(rs->n, 6);

    /* https: scheme http -> redirect */
    const struct cfg_erule *r = &rs->v[0];
    cr_expect_str_eq(r->label, "https");
    cr_assert_not_null(r->match);
    cr_expect_eq(r->match->has, CFG_M_SCHEME);
    cr_expect_eq(r->match->schemes, 1);
    cr_expect_eq(r->kind, CFG_RK_REDIRECT);
    cr_expect_eq(r->status, 301);
    cr_expect_str_eq(r->location.text, "https://{host}{uri}");
    cr_assert_eq(r->location.nparts, 3);
    cr_expect_eq(r->location.parts[0].var, CFG_TV_LITERAL);
    cr_expect_eq(r->location.parts[0].len, 8);
    cr_expect_eq(memcmp(r->location.parts[0].lit, "https://", 8), 0);
    cr_expect_eq(r->location.parts[1].var, CFG_TV_HOST);
    cr_expect_eq(r->location.parts[2].var, CFG_TV_URI);
    cr_expect_eq(r->location.lit_len, 8);
    cr_expect_eq(r->req_hdrs.n + r->resp_hdrs.n + r->answer_hdrs.n, 0);
    cr_expect_eq(r->rewrite.kind, CFG_RW_NONE);

    /* admin-lock: paths, not client_ip @office -> deny 403 */
    r = &rs->v[1];
    cr_expect_str_eq(r->label, "admin-lock");
    cr_expect_eq(r->match->has, CFG_M_PATH | CFG_M_NOT);
    cr_expect(has(&r->match->paths, "/admin"));
    cr_expect(has(&r->match->path_prefixes, "/admin/"));
    cr_expect(!has(&r->match->path_prefixes, "/admin"));
    cr_expect_eq(r->match->names_healthz, 0);
    cr_assert_not_null(r->match->not );
    cr_expect_eq(r->match->not ->has, CFG_M_CLIENT_IP);
    cr_expect_eq(r->match->not ->client_ip.n, 3);
    struct cfg_ip a = ip("203.0.113.77"), b = ip("2001:db8:1::5"), d = ip("198.51.100.7"),
                  o = ip("198.51.100.8"), m = ip("::ffff:203.0.113.1");
    cr_expect(cfg_ipset_has(&r->match->not ->client_ip, &a));
    cr_expect(cfg_ipset_has(&r->match->not ->client_ip, &b));
    cr_expect(cfg_ipset_has(&r->match->not ->client_ip, &d));
    cr_expect(!cfg_ipset_has(&r->match->not ->client_ip, &o));
    cr_expect(cfg_ipset_has(&r->match->not ->client_ip, &m));
    cr_expect_eq(r->kind, CFG_RK_DENY);
    cr_expect_eq(r->status, 403);

    /* moved: redirect map */
    r = &rs->v[2];
    cr_expect_str_eq(r->label, "moved");
    cr_expect_null(r->match);
    cr_expect_eq(r->kind, CFG_RK_REDIRECT_MAP);
    cr_expect_eq(r->status, 308);
    cr_expect_str_eq(r->map.file, "redirects.txt");
    cr_expect_eq(r->map.from.n, 3);
    long i = cfg_hset_find(&r->map.from, "/old-page", 9);
    cr_assert_geq(i, 0);
    cr_expect_str_eq(r->map.to[i], "/new-page");
    cr_expect_eq(r->map.to_len[i], 9);
    cr_expect_eq(r->map.to_has_query[i], 0);
    i = cfg_hset_find(&r->map.from, "/products/abc", 13);
    cr_assert_geq(i, 0, "FROM is stored normalised");
    cr_expect_str_eq(r->map.to[i], "https://shop.example.com/abc?ref=old");
    cr_expect_eq(r->map.to_has_query[i], 1);
    i = cfg_hset_find(&r->map.from, "/a/c", 4);
    cr_assert_geq(i, 0, "FROM is stored normalised");
    cr_expect_str_eq(r->map.to[i], "/c");

    /* blog: rewrite + request header */
    r = &rs->v[3];
    cr_expect(has(&r->match->path_prefixes, "/blog/"));
    cr_expect_eq(r->kind, CFG_RK_NONE);
    cr_expect_eq(r->rewrite.kind, CFG_RW_STRIP_PREFIX);
    cr_expect_str_eq(r->rewrite.arg, "/blog");
    cr_expect_eq(r->rewrite.len, 5);
    cr_assert_eq(r->req_hdrs.n, 1);
    cr_expect_eq(r->req_hdrs.v[0].op, CFG_HE_SET);
    cr_expect_str_eq(r->req_hdrs.v[0].name, "X-Site");
    cr_expect_str_eq(r->req_hdrs.v[0].value.text, "blog");
    cr_expect_eq(r->req_hdrs.v[0].value.nparts, 1);

    /* hsts: response header edits, remove first */
    r = &rs->v[4];
    cr_expect_null(r->match);
    cr_assert_eq(r->resp_hdrs.n, 3);
    cr_expect_eq(r->resp_hdrs.v[0].op, CFG_HE_REMOVE);
    cr_expect_str_eq(r->resp_hdrs.v[0].name, "Server");
    cr_expect_eq(r->resp_hdrs.v[1].op, CFG_HE_REMOVE);
    cr_expect_str_eq(r->resp_hdrs.v[1].name, "X-Powered-By");
    cr_expect_eq(r->resp_hdrs.v[2].op, CFG_HE_SET);
    cr_expect_str_eq(r->resp_hdrs.v[2].name, "Strict-Transport-Security");
    cr_expect_str_eq(r->resp_hdrs.v[2].value.text, "max-age=31536000");

    /* shop-closed: respond file + header */
    r = &rs->v[5];
    cr_expect(has(&r->match->path_prefixes, "/shop/"));
    cr_expect_eq(r->kind, CFG_RK_RESPOND);
    cr_expect_eq(r->status, 503);
    cr_assert_not_null(r->body);
    cr_expect_str_eq(r->body->file, "pages/maintenance.html");
    cr_expect_str_eq(r->body->content_type, "text/html; charset=utf-8");
    cr_expect_eq(r->body->len, strlen("<h1>Back soon</h1>\n"));
    cr_expect_eq(memcmp(r->body->data, "<h1>Back soon</h1>\n", r->body->len), 0);
    cr_assert_eq(r->answer_hdrs.n, 1);
    cr_expect_eq(r->answer_hdrs.v[0].op, CFG_HE_SET);
    cr_expect_str_eq(r->answer_hdrs.v[0].name, "Retry-After");
    cr_expect_str_eq(r->answer_hdrs.v[0].value.text, "600");

    /* edit names, case-insensitive, one id each */
    cr_expect_eq(rs->edit_names.n, 5);
    for (size_t k = 0; k < rs->n; k++) {
        const struct cfg_hedits *all[] = {&rs->v[k].req_hdrs, &rs->v[k].resp_hdrs,
                                          &rs->v[k].answer_hdrs};

        for (size_t j = 0; j < 3; j++) {
            for (size_t h = 0; h < all[j]->n; h++) {
                const struct cfg_hedit *he = &all[j]->v[h];

                cr_expect_eq(cfg_hset_find(&rs->edit_names, he->name, he->name_len),
                             (long)he->name_id);
            }
        }
    }
    cr_expect_eq(cfg_hset_find(&rs->edit_names, "server", 6),
                 (long)rs->v[4].resp_hdrs.v[0].name_id);

    /* error pages: the status, its class, nothing else */
    const struct cfg_page *p404 = cfg_rules_error_page(rs, 404);
    cr_assert_not_null(p404);
    cr_expect_str_eq(p404->file, "pages/404.html");
    cr_expect_str_eq(p404->content_type, "text/html; charset=utf-8");
    cr_expect_str_eq(cfg_rules_error_page(rs, 502)->file, "pages/oops.html");
    cr_expect_eq(cfg_rules_error_page(rs, 500), cfg_rules_error_page(rs, 599));
    cr_expect_null(cfg_rules_error_page(rs, 403));
    cr_expect_null(cfg_rules_error_page(rs, 200));
    cr_expect_null(cfg_rules_error_page(rs, 600));
    cr_expect_null(cfg_rules_error_page(NULL, 404));
    cr_expect_eq(rs->npages, 3);

    /* The names */
    cr_expect_str_eq(cfg_rule_kind_names[CFG_RK_REDIRECT_MAP], "redirect_map");
    cr_expect_str_eq(cfg_tvar_names[CFG_TV_CLIENT_IP], "client_ip");

    /* The config still dumps to a document that loads, and validates. */
    char *dump = cfg_dump(c);
    cr_assert_not_null(dump);
    cr_expect_not_null(strstr(dump, "\"admin-lock\""));
    cr_expect_eq(cfg_validate(c, &e), 0, "%s", e.n ? e.lines[0] : "");
    cfg_errs_free(&e);
    struct cfg *c2 = NULL;
    cr_expect_eq(cfg_load_buf_at(dump, strlen(dump), "dump", site, &c2, &e), 0, "%s",
                 e.n ? e.lines[0] : "");
    cfg_errs_free(&e);
    char *dump2 = c2 ? cfg_dump(c2) : NULL;
    cr_expect_str_eq(dump2, dump);
    free(dump);
    free(dump2);
    cfg_free(c2);
    cfg_free(c);
}

Test(cfg_rules, defaults_and_labels)
{
    struct cfg *c = load_at(
        RULES("{\"match\": {\"path\": \"/a\"}, \"deny\": {}}, "
              "{\"match\": {\"host\": [\"WWW.Example.com\", \"*.example.org\"], \"method\": "
              "[\"GET\", \"HEAD\"], \"scheme\": [\"http\", \"https\"], \"header\": {\"X-A\": "
              "true, \"X-B\": false, \"X-C\": [\"1\", \"2\"], \"X-D\": \"3\"}}, \"respond\": "
              "{\"body\": \"hi\"}}, "
              "{\"match\": {\"path\": \"/*\"}, \"redirect\": {\"to\": \"/x?{query}\"}}, "
              "{\"match\": {\"path\": [\"/.well-known/*\"]}, \"response_headers\": {\"add\": "
              "{\"Link\": [\"<a>\", \"<b>\"], \"Via\": \"x\"}}, \"rewrite\": {\"add_prefix\": "
              "\"/v2/\"}}, "
              "{\"match\": {}, \"rewrite\": {\"path\": \"/p/%41/../b/\"}}"),
        NULL);
    const struct cfg_rules *rs = c->rules;

    cr_assert_eq(rs->n, 5);
    cr_expect_str_eq(rs->v[0].label, "0");
    cr_expect_eq(rs->v[0].status, 403);
    cr_expect_str_eq(rs->v[1].label, "1");
    const struct cfg_match *m = rs->v[1].match;
    cr_expect(has(&m->hosts, "www.example.com"));
    cr_expect(has(&m->hosts, "WWW.EXAMPLE.COM"));
    cr_expect(has(&m->host_suffixes, ".example.org"));
    cr_expect(!has(&m->host_suffixes, "example.org"));
    /* methods without case: "ban" is BAN to frameworks that upper-case the method */
    cr_expect(has(&m->methods, "GET") && has(&m->methods, "HEAD") && has(&m->methods, "get"));
    /* paths: without case for a guarding rule (deny), as written for the others (respond) */
    cr_expect(rs->v[0].match->paths.icase && has(&rs->v[0].match->paths, "/A"));
    cr_expect(!rs->v[2].match->path_prefixes.icase);
    cr_expect_eq(m->schemes, 3);
    cr_assert_eq(m->nheaders, 4);
    cr_expect_str_eq(m->headers[0].name, "X-A");
    cr_expect_eq(m->headers[0].test, CFG_HT_PRESENT);
    cr_expect_eq(m->headers[1].test, CFG_HT_ABSENT);
    cr_expect_eq(m->headers[2].test, CFG_HT_VALUES);
    cr_expect(has(&m->headers[2].values, "1") && has(&m->headers[2].values, "2"));
    cr_expect(has(&m->headers[3].values, "3"));
    cr_expect_eq(m->has, CFG_M_HOST | CFG_M_METHOD | CFG_M_SCHEME | CFG_M_HEADER);
    cr_expect_eq(rs->v[1].status, 200);
    cr_expect_str_eq(rs->v[1].body->content_type, "text/plain; charset=utf-8");
    cr_expect_null(rs->v[1].body->file);
    cr_expect_eq(rs->v[1].body->len, 2);
    cr_expect(has(&rs->v[2].match->path_prefixes, "/"));
    cr_expect_eq(rs->v[2].match->names_healthz, 0, "\"/*\" does not name the health check");
    cr_expect_eq(rs->v[2].status, 301);
    cr_expect_eq(rs->v[2].location.nparts, 2);
    cr_expect_eq(rs->v[2].location.parts[1].var, CFG_TV_QUERY);
    cr_expect_eq(rs->v[3].match->names_healthz, 1);
    cr_assert_eq(rs->v[3].resp_hdrs.n, 3);
    cr_expect_eq(rs->v[3].resp_hdrs.v[0].op, CFG_HE_ADD);
    cr_expect_str_eq(rs->v[3].resp_hdrs.v[1].value.text, "<b>");
    cr_expect_eq(rs->v[3].resp_hdrs.v[0].name_id, rs->v[3].resp_hdrs.v[1].name_id);
    cr_expect_eq(rs->v[3].rewrite.kind, CFG_RW_ADD_PREFIX);
    cr_expect_str_eq(rs->v[3].rewrite.arg, "/v2");
    cr_expect_null(rs->v[4].match);
    cr_expect_eq(rs->v[4].rewrite.kind, CFG_RW_PATH);
    cr_expect_str_eq(rs->v[4].rewrite.arg, "/p/b/");
    cfg_free(c);

    /* No rule keys: no rules. */
    c = load_at("{\"workers\": 1}", NULL);
    cr_expect_null(c->rules);
    cr_expect_null(c->rules_json);
    cfg_free(c);
    c = load_at("{\"rules\": []}", NULL);
    cr_assert_not_null(c->rules);
    cr_expect_eq(c->rules->n, 0);
    cfg_free(c);
}

/* ---- redirect maps ---- */

Test(cfg_rules, redirect_map_problems)
{
    char *dir = new_dir();
    const char *map = "# comment\n"
                      "/a /b\n"
                      "/c\n" /* 3: no TO */
                      "  \t # indented comment\n"
                      "a /b\n"                 /* 5: FROM without '/' */
                      "/d?x=1 /b\n"            /* 6: query */
                      "/e example.com\n"       /* 7: TO */
                      "/f /g extra\n"          /* 8: three fields */
                      "/h /i#frag # comment\n" /* fine: '#' inside a field */
                      "//a /x\n"               /* 10: duplicate of line 2 once normalised */
                      "/../x /y\n"             /* 11: above the root */
                      "/j //evil.example\n"    /* 12: TO */
                      "/k\t/l\r\n"             /* fine: tab, CRLF */
                      "/a /c\n";               /* 14: duplicate of line 2 */
    put_file(dir, "r.txt", map, strlen(map));
    EXPECT_AT(RULES("{\"redirect_map\": {\"file\": \"r.txt\"}}"), dir,
              "/rules/0/redirect_map/file: r.txt:3: FROM \"/c\" without TO\n"
              "/rules/0/redirect_map/file: r.txt:5: FROM \"a\": expected a path starting with "
              "'/', without a query or control characters\n"
              "/rules/0/redirect_map/file: r.txt:6: FROM \"/d?x=1\": expected a path starting "
              "with '/', without a query or control characters\n"
              "/rules/0/redirect_map/file: r.txt:7: TO \"example.com\": expected a path "
              "starting with a single '/' or an absolute http:// or https:// URL, in ASCII "
              "without control characters\n"
              "/rules/0/redirect_map/file: r.txt:8: expected FROM TO, got 3 fields (a '#' "
              "comment follows a space)\n"
              "/rules/0/redirect_map/file: r.txt:10: FROM \"//a\" is also on line 2 (once "
              "normalised)\n"
              "/rules/0/redirect_map/file: r.txt:11: FROM \"/../x\" cannot be normalised (a "
              "\"..\" above the root, %00, or a '%' without two hex digits)\n"
              "/rules/0/redirect_map/file: r.txt:12: TO \"//evil.example\": expected a path "
              "starting with a single '/' or an absolute http:// or https:// URL, in ASCII "
              "without control characters\n"
              "/rules/0/redirect_map/file: r.txt:14: FROM \"/a\" is also on line 2");

    /* At most 20 shown, then a count. */
    char *many = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&many, &len);
    for (int i = 0; i < 25; i++)
        fprintf(f, "bad%d /x\n", i);
    fclose(f);
    put_file(dir, "many.txt", many, len);
    free(many);
    char *got = problems_at(RULES("{\"redirect_map\": {\"file\": \"many.txt\"}}"), dir);
    size_t lines = 1;
    for (const char *p = got; *p; p++)
        lines += *p == '\n';
    cr_expect_eq(lines, 21, "%s", got);
    cr_expect_not_null(strstr(got, "many.txt:20: FROM \"bad19\""), "%s", got);
    cr_expect_null(strstr(got, "many.txt:21:"), "%s", got);
    cr_expect_not_null(strstr(got, "\n/rules/0/redirect_map/file: many.txt: ... and 5 more "
                                   "problems"),
                       "%s", got);
    free(got);

    put_file(dir, "empty.txt", "# nothing\n\n", 11);
    EXPECT_AT(RULES("{\"redirect_map\": {\"file\": \"empty.txt\", \"status\": 302}}"), dir,
              "/rules/0/redirect_map/file: empty.txt: no FROM TO pairs");
    rm_dir(dir);
}

static double now_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

Test(cfg_rules, redirect_map_100k, .timeout = 60)
{
    enum { N = 100000 };
    char *dir = new_dir(), path[600];
    FILE *f;
    size_t file_bytes, key_bytes = 0, to_bytes = 0;

    snprintf(path, sizeof(path), "%s/redirects.txt", dir);
    f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "# generated: %d migration redirects\n", N);
    for (int i = 0; i < N; i++) {
        char from[64], to[96];
        int fl = snprintf(from, sizeof(from), "/catalog/item-%d/details", i);
        int tl = i % 2 ? snprintf(to, sizeof(to), "/products/%d", i)
                       : snprintf(to, sizeof(to), "https://shop.example.com/p/%d?src=old", i);

        fprintf(f, "%s %s\n", from, to);
        key_bytes += (size_t)fl;
        to_bytes += (size_t)tl;
    }
    file_bytes = (size_t)ftell(f);
    fclose(f);

    double t0 = now_s();
    struct cfg *c = load_at(RULES("{\"redirect_map\": {\"file\": \"redirects.txt\"}}"), dir);
    double took = now_s() - t0;
    const struct cfg_redirect_map *m = &c->rules->v[0].map;

    cr_assert_eq(m->from.n, N);
    for (int i = 0; i < N; i += 997) {
        char from[64], to[96];
        int fl = snprintf(from, sizeof(from), "/catalog/item-%d/details", i);
        long k = cfg_hset_find(&m->from, from, (size_t)fl);

        cr_assert_geq(k, 0, "%s", from);
        if (i % 2)
            snprintf(to, sizeof(to), "/products/%d", i);
        else
            snprintf(to, sizeof(to), "https://shop.example.com/p/%d?src=old", i);
        cr_expect_str_eq(m->to[k], to);
        cr_expect_eq(m->to_has_query[k], i % 2 == 0);
    }
    cr_expect_lt(cfg_hset_find(&m->from, "/catalog/item-100000/details", 28), 0);

    /* Memory: the set, the target block and the per-entry arrays. */
    size_t bytes = cfg_hset_bytes(&m->from) + to_bytes + N /* NULs */ +
                   N * (sizeof(*m->to) + sizeof(*m->to_len) + sizeof(*m->to_has_query));
    size_t overhead = bytes - key_bytes - to_bytes;
    fprintf(stderr,
            "redirect map: %d entries, %zu-byte file, loaded in %.1f ms; %zu bytes held, "
            "%.1f bytes/entry (%.1f of them FROM and TO text, %.1f overhead)\n",
            N, file_bytes, took * 1e3, bytes, (double)bytes / N, (double)(key_bytes + to_bytes) / N,
            (double)overhead / N);
    /* Bounded per entry: the text plus a fixed amount (hash slots at most 4 per key). */
    cr_expect_leq(overhead, (size_t)N * 64, "%zu bytes of overhead", overhead);
    cfg_free(c);
    rm_dir(dir);
}

/* ---- addresses ---- */

Test(cfg_rules, ip_parse)
{
    struct cfg_ip r = {1, 1};

    r = ip("1.2.3.4");
    cr_expect_eq(r.hi, 0);
    cr_expect_eq(r.lo, 0x0000ffff01020304ull);
    cr_expect(memcmp(&r, &(struct cfg_ip){0, 0x0000ffff01020304ull}, sizeof(r)) == 0);
    struct cfg_ip m = ip("::ffff:1.2.3.4");
    cr_expect_eq(m.hi, r.hi);
    cr_expect_eq(m.lo, r.lo);
    r = ip("2001:db8::1");
    cr_expect_eq(r.hi, 0x20010db800000000ull);
    cr_expect_eq(r.lo, 1);
    r = ip("::");
    cr_expect_eq(r.hi | r.lo, 0);
    r = ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    cr_expect_eq(r.hi & r.lo, UINT64_MAX);
    const char *bad[] = {"",      "1.2.3",  "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.4 ",
                         "[::1]", "::1%lo", "1.2.3.4/8", "x",         "::g"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct cfg_ip untouched = {7, 7};

        cr_expect_eq(cfg_ip_parse(bad[i], strlen(bad[i]), &untouched), -EINVAL, "%s", bad[i]);
        cr_expect_eq(untouched.hi, 7, "%s", bad[i]);
    }
    /* Length, not NUL: "1.2.3.45" cut to 7 bytes is 1.2.3.4. */
    cr_expect_eq(cfg_ip_parse("1.2.3.45", 7, &r), 0);
    cr_expect_eq(r.lo, 0x0000ffff01020304ull);
    cr_expect_eq(cfg_ip_parse("1.2.\0.4", 7, &r), -EINVAL);
}

/* A set from CIDR texts. */
static struct cfg_ipset set_of(const char *const *cidrs, size_t n)
{
    struct cfg_iprange *v = calloc(n + 1, sizeof(*v));
    struct cfg_ipset s;
    char why[160];

    for (size_t i = 0; i < n; i++)
        cr_assert_eq(cfg_cidr_parse(cidrs[i], strlen(cidrs[i]), &v[i], why, sizeof(why)), 0,
                     "%s: %s", cidrs[i], why);
    cfg_ipset_build(&s, v, n);
    return s;
}

static int in(const struct cfg_ipset *s, const char *a)
{
    struct cfg_ip x = ip(a);

    return cfg_ipset_has(s, &x);
}

Test(cfg_rules, ipset)
{
    const char *v4all[] = {"0.0.0.0/0"};
    struct cfg_ipset s = set_of(v4all, 1);
    cr_expect(in(&s, "0.0.0.0") && in(&s, "255.255.255.255") && in(&s, "::ffff:10.1.2.3"));
    cr_expect(!in(&s, "::1") && !in(&s, "2001:db8::1") && !in(&s, "::fffe:ffff:ffff"));
    free(s.v);

    const char *v6all[] = {"::/0"};
    s = set_of(v6all, 1);
    cr_expect(in(&s, "::") && in(&s, "1.2.3.4") &&
              in(&s, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
    cr_expect_eq(s.n, 1);
    free(s.v);

    const char *hosts[] = {"10.0.0.1/32", "10.0.0.1", "2001:db8::5/128", "2001:db8::5"};
    s = set_of(hosts, 4);
    cr_expect_eq(s.n, 2);
    cr_expect(in(&s, "10.0.0.1") && !in(&s, "10.0.0.2") && !in(&s, "10.0.0.0"));
    cr_expect(in(&s, "2001:db8::5") && !in(&s, "2001:db8::4") && !in(&s, "2001:db8::6"));
    free(s.v);

    /* Overlapping, nested and adjacent ranges merge; unsorted input. */
    const char *merge[] = {"10.0.1.0/24",           "10.0.0.0/16", "192.168.0.0/24",
                           "192.168.1.0/24",        "10.0.0.0/24", "172.16.0.0/12",
                           "::ffff:192.168.2.0/120"};
    s = set_of(merge, 7);
    cr_expect_eq(s.n, 3, "%zu ranges", s.n);
    cr_expect(in(&s, "10.0.255.255") && !in(&s, "10.1.0.0") && !in(&s, "9.255.255.255"));
    cr_expect(in(&s, "192.168.0.0") && in(&s, "192.168.2.255") && !in(&s, "192.168.3.0"));
    cr_expect(in(&s, "172.31.255.255") && !in(&s, "172.32.0.0"));
    for (size_t i = 1; i < s.n; i++)
        cr_expect(s.v[i - 1].last.hi < s.v[i].first.hi ||
                  (s.v[i - 1].last.hi == s.v[i].first.hi && s.v[i - 1].last.lo < s.v[i].first.lo));
    free(s.v);

    /* The top of the space merges without wrapping. */
    const char *top[] = {"ffff::/16", "ffff:ffff::/32", "8000::/1"};
    s = set_of(top, 3);
    cr_expect_eq(s.n, 1);
    cr_expect(in(&s, "8000::") && !in(&s, "7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
    free(s.v);

    /* Empty. */
    struct cfg_ipset e = {0};
    struct cfg_ip x = ip("1.2.3.4");
    cr_expect(!cfg_ipset_has(&e, &x));
    cr_expect(!cfg_ipset_has(NULL, &x));

    /* Host bits and prefix lengths. */
    char why[160];
    struct cfg_iprange r;
    cr_expect_eq(cfg_cidr_parse("10.0.0.1/8", 10, &r, why, sizeof(why)), -EINVAL);
    cr_expect_str_eq(why, "10.0.0.1/8: host bits set; did you mean 10.0.0.0/8?");
    cr_expect_eq(cfg_cidr_parse("10.0.0.0/33", 11, &r, why, sizeof(why)), -EINVAL);
    cr_expect_str_eq(why, "is not an address or CIDR");
    cr_expect_eq(cfg_cidr_parse("2001:db8::/129", 14, &r, why, sizeof(why)), -EINVAL);
    cr_expect_eq(cfg_cidr_parse("2001:db8::/128", 14, &r, why, sizeof(why)), 0);
    cr_expect_eq(cfg_cidr_parse("1.2.3.4/32", 10, &r, why, sizeof(why)), 0);
    cr_expect_eq(cfg_cidr_parse("1.2.3.4/-1", 10, &r, why, sizeof(why)), -EINVAL);
    cr_expect_eq(cfg_cidr_parse("1.2.3.4/+8", 10, &r, why, sizeof(why)), -EINVAL);
    cr_expect_eq(cfg_cidr_parse("0.0.0.0/0", 9, &r, why, sizeof(why)), 0);
    cr_expect_eq(r.first.lo, 0x0000ffff00000000ull);
    cr_expect_eq(r.last.lo, 0x0000ffffffffffffull);
    cr_expect_eq(cfg_cidr_parse("fe80::1/10", 10, &r, why, sizeof(why)), -EINVAL);
    cr_expect_str_eq(why, "fe80::1/10: host bits set; did you mean fe80::/10?");
}
