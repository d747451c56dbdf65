/*
 * Found by an attacker's review of basic_auth (#23) and live reload (#24
 * part 4), each fixed; the tests keep them fixed:
 *
 * - reload_never_falls_back_to_the_built_in_defaults: proxy.json missing
 *   at a reload (a deploy that removes it, then writes the new one) was
 *   read as "no file: built-in defaults", which have no rules: every
 *   basic_auth, deny and client_ip rule was gone until the next change.
 *   A reload now needs the file (cfg_load_required()).
 * - a_replaced_config_folder_is_still_watched: the folder's watch is on its
 *   inode; a folder replaced at the same path (a remount, a deploy tool
 *   that swaps directories) was never watched again. Now the folder's own
 *   watch going away is seen, and the path is watched for every second.
 * - basic_auth_unknown_user_costs_like_a_known_one: an unknown user was
 *   checked against the rule's first hash; when users' hashes differ in
 *   cost (htpasswd -B defaults to 5, mkpasswd to yescrypt), the refusal
 *   time told which names exist. Now a secret hash of the name picks the
 *   user whose hash it is checked against.
 * - basic_auth_check_budget_holds_across_one_ipv6_64: the per-client check
 *   budget was keyed by the whole 128-bit address; one /64 (what every
 *   IPv6 customer has) is 2^64 clients. Now an IPv6 client is its /64.
 */
#include <crypt.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "tests/e2e/fixture.h"
#include "tests/e2e/harness.h"
#include "tests/support/origin.h"

/* GET /private without credentials on a new connection: its status (0: no answer). */
static int status_unauthenticated(void)
{
    struct h_resp r;
    int s = 0;

    if (h_roundtrip(px.port, "GET /private HTTP/1.1\r\nHost: t\r\n\r\n", &r) == 0) {
        s = r.status;
        h_resp_free(&r);
    }
    return s;
}

/* A config with one basic_auth over the whole site (cost 4: the tests need no real cost). */
static const char *staging_config(void)
{
    static char json[512];
    char *h = h_crypt("$2b$", 4, "right");

    snprintf(json, sizeof(json),
             "{" FX_GRACE ", \"rules\": [{\"name\": \"staging\", \"basic_auth\": {\"realm\": "
             "\"staging\", \"users\": {\"qa\": \"%s\"}}}]}",
             h);
    free(h);
    return json;
}

/* ---- live reload: a reload never opens what the running config closes ---------------- */

Test(e2e_attack_review, reload_never_falls_back_to_the_built_in_defaults, .fini = fx_down,
     .timeout = 60)
{
    char from[256], to[256];

    fx_start(staging_config(), NULL);
    cr_assert_eq(status_unauthenticated(), 401);
    /* a deploy: the old proxy.json goes, the new one comes a moment later */
    snprintf(from, sizeof(from), "%s/proxy.json", px.dir);
    snprintf(to, sizeof(to), "%s.away", px.dir);
    cr_assert_eq(rename(from, to), 0, "%s", strerror(errno));
    kill(px.pid, SIGHUP);
    h_msleep(700); /* the folder's quiet time (200 ms) and the signal's reload */
    cr_assert_eq(status_unauthenticated(), 401,
                 "proxy.json missing at a reload: the running config must stay, not the "
                 "built-in defaults without any rule");
    cr_assert_eq(rename(to, from), 0);
}

Test(e2e_attack_review, a_replaced_config_folder_is_still_watched, .fini = fx_down, .timeout = 60)
{
    char old[128], cmd[512];
    long end;
    int s = 0;

    fx_origin_up();
    h_proxy_start(&px, origin_port(origin), "{" FX_GRACE "}", NULL);
    cr_assert_eq(status_unauthenticated(), 200);
    /* the folder is replaced by another at the same path (a remount, a directory swap) */
    snprintf(old, sizeof(old), "%s.old", px.dir);
    cr_assert_eq(rename(px.dir, old), 0, "%s", strerror(errno));
    h_msleep(600); /* the reload that this change causes finds no folder */
    cr_assert_eq(mkdir(px.dir, 0755), 0);
    /* then the new folder gets a config with a password rule */
    h_put_file(px.dir, "proxy.json", staging_config());
    end = h_now_ms() + 3000;
    while (h_now_ms() < end && (s = status_unauthenticated()) != 401)
        h_msleep(50);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", old);
    cr_expect_eq(system(cmd), 0);
    cr_assert_eq(s, 401, "a change in the folder now at --config was not seen: status %d", s);
}

/* ---- basic_auth ------------------------------------------------------------------------ */

/* ms for a 401 to user:pass, from client address ip (True-Client-IP) on a new connection. */
static long refusal_ms(const char *user, const char *ip)
{
    char req[1024], auth[512];
    struct h_resp r;
    long t0 = h_now_ms(), t;

    snprintf(req, sizeof(req), "GET /private HTTP/1.1\r\nHost: t\r\nTrue-Client-IP: %s\r\n%s\r\n",
             ip, h_basic(auth, sizeof(auth), user, "wrong"));
    cr_assert_eq(h_roundtrip(px.port, req, &r), 0);
    t = h_now_ms() - t0;
    cr_assert_eq(r.status, 401, "%s: %d", user, r.status);
    h_resp_free(&r);
    return t;
}

/*
 * An unknown name is checked against the hash of a user chosen by a secret
 * hash of the name (http/rules.c): its refusal takes as long as some user's,
 * so the costly user's slow refusal does not tell that "admin" exists (a
 * name that does not exist is refused as slowly about as often), and a cheap
 * user's fast one does not either.
 */
Test(e2e_attack_review, basic_auth_unknown_user_costs_like_a_known_one, .fini = fx_down,
     .timeout = 60)
{
    char json[1024];
    char *cheap = h_crypt("$2b$", 5, "a"), *dear = h_crypt("$2b$", 12, "b");
    long known = 0, slow = 0, fast = 0;

    /* "ops" was added with htpasswd -B (cost 5), "admin" with a cost of 12 */
    snprintf(json, sizeof(json),
             "{" FX_GRACE ", \"rules\": [{\"name\": \"staging\", \"basic_auth\": {\"realm\": "
             "\"s\", \"users\": {\"ops\": \"%s\", \"admin\": \"%s\"}}}]}",
             cheap, dear);
    fx_start(json, NULL);
    for (int i = 0; i < 3; i++) {
        char ip[32];

        snprintf(ip, sizeof(ip), "192.0.2.%d", 10 + i);
        known += refusal_ms("admin", ip);
    }
    known /= 3;
    for (int i = 0; i < 12; i++) {
        char ip[32], name[32];
        long t;

        snprintf(ip, sizeof(ip), "192.0.2.%d", 20 + i);
        snprintf(name, sizeof(name), "no-such-user-%d", i);
        t = refusal_ms(name, ip);
        if (t * 2 >= known)
            slow++;
        else
            fast++;
    }
    fprintf(stderr, "refusal: admin %ld ms; 12 unknown names: %ld as slow, %ld faster\n", known,
            slow, fast);
    free(cheap);
    free(dear);
    cr_assert_gt(slow, 0, "no unknown name was refused as slowly as admin (%ld ms)", known);
}

Test(e2e_attack_review, basic_auth_check_budget_holds_across_one_ipv6_64, .fini = fx_down,
     .timeout = 60)
{
    int throttled = 0;

    fx_start(staging_config(), NULL);
    /* 30 wrong passwords from 30 addresses of one /64: one customer's network */
    for (int i = 0; i < 30; i++) {
        char req[1024], auth[512];
        struct h_resp r;

        snprintf(req, sizeof(req),
                 "GET /private HTTP/1.1\r\nHost: t\r\nTrue-Client-IP: 2001:db8:1:2::%x\r\n%s\r\n",
                 i + 1, h_basic(auth, sizeof(auth), "qa", "guess"));
        cr_assert_eq(h_roundtrip(px.port, req, &r), 0);
        throttled += r.status == 429;
        h_resp_free(&r);
    }
    cr_assert_geq(throttled, 15,
                  "30 checks from one /64 in a burst: %d throttled (the budget is 10 a client)",
                  throttled);
}
