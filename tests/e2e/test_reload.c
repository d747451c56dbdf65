/*
 * Live reload (docs/operations.md "Reloading the config"): SIGHUP and
 * changes of the config folder load proxy.json and its files again; a
 * valid config applies to new requests while those under way finish on the
 * old one; an invalid one keeps the old; settings that cannot change live
 * say so. The real binary over real sockets.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "tests/e2e/fixture.h"
#include "tests/e2e/harness.h"
#include "tests/support/origin.h"

/* A config whose rule answers every request with body (no origin needed). */
static char *answering(const char *body, const char *more)
{
    static char json[1024];

    snprintf(json, sizeof(json),
             "{" FX_GRACE "%s, \"rules\": [{\"name\": \"r\", \"respond\": {\"status\": 200, "
             "\"body\": \"%s\"}}]}",
             more ? more : "", body);
    return json;
}

/* GET / on a new connection: the body, in a static buffer ("" on failure). */
static const char *body_now(void)
{
    static char b[256];
    struct h_resp r;

    b[0] = 0;
    if (h_roundtrip(px.port, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &r) == 0) {
        snprintf(b, sizeof(b), "%.*s", (int)r.body_len, r.body);
        h_resp_free(&r);
    }
    return b;
}

/* Wait (bounded) until GET / answers want. */
static int body_becomes(const char *want, int ms)
{
    long end = h_now_ms() + ms;

    do {
        if (!strcmp(body_now(), want))
            return 1;
        h_msleep(20);
    } while (h_now_ms() < end);
    return 0;
}

static void reload_sig(void)
{
    cr_assert_eq(kill(px.pid, SIGHUP), 0);
}

Test(e2e_reload, sighup_applies_a_new_config, .fini = fx_down)
{
    fx_start(answering("one\\n", NULL), NULL);
    cr_assert_str_eq(body_now(), "one\n");
    cr_assert_eq(h_metric(px.admin_port, "ringproxy_config_reloads_total{result=\"ok\"}"), 0);
    h_put_file(px.dir, "proxy.json", answering("two\\n", NULL));
    reload_sig();
    cr_assert(body_becomes("two\n", 3000), "got %s", body_now());
    cr_assert_eq(
        h_metric_wait(px.admin_port, "ringproxy_config_reloads_total{result=\"ok\"}", 1, 3000), 1);
    cr_assert_eq(h_wait_in(px.err_path, "applied (generation 2)", 3000), 1);
    /* the same again: nothing to apply */
    reload_sig();
    cr_assert_eq(h_metric_wait(px.admin_port,
                               "ringproxy_config_reloads_total{result=\"unchanged\"}", 1, 3000),
                 1);
}

Test(e2e_reload, folder_change_applies_without_a_signal, .fini = fx_down)
{
    fx_start(answering("one\\n", NULL), NULL);
    cr_assert_str_eq(body_now(), "one\n");
    h_put_file(px.dir, "proxy.json", answering("two\\n", NULL));
    cr_assert(body_becomes("two\n", 3000), "got %s", body_now());
    /* the layout of the JSON alone is no change */
    h_put_file(px.dir, "proxy.json", answering("two\\n", ", \"log_level\": \"info\""));
    cr_assert_eq(h_metric_wait(px.admin_port,
                               "ringproxy_config_reloads_total{result=\"unchanged\"}", 1, 3000),
                 1);
}

Test(e2e_reload, a_file_the_config_names_is_watched_too, .fini = fx_down)
{
    char dir[128];
    static const char cfg[] = "{" FX_GRACE ", \"rules\": [{\"name\": \"p\", \"respond\": "
                              "{\"status\": 200, \"file\": \"pages/p.txt\"}}]}";

    fx_origin_up();
    h_proxy_start(&px, origin_port(origin), NULL, (const char *const[]){"--workers", "1", NULL});
    /* the folder is the proxy's: pages/ made under it after the start */
    snprintf(dir, sizeof(dir), "%s/pages", px.dir);
    cr_assert_eq(mkdir(dir, 0755), 0);
    h_put_file(px.dir, "pages/p.txt", "first\n");
    h_put_file(px.dir, "proxy.json", cfg);
    cr_assert(body_becomes("first\n", 3000), "got %s", body_now());
    h_put_file(px.dir, "pages/p.txt", "second\n");
    cr_assert(body_becomes("second\n", 3000), "a change in pages/: got %s", body_now());
}

Test(e2e_reload, kubernetes_data_symlink_swap, .fini = fx_down)
{
    char p[256], q[256];

    fx_origin_up();
    h_proxy_start(&px, origin_port(origin), NULL, NULL);
    /* a ConfigMap volume: proxy.json -> ..data/proxy.json, ..data -> ..v1 */
    snprintf(p, sizeof(p), "%s/..v1", px.dir);
    cr_assert_eq(mkdir(p, 0755), 0);
    h_put_file(px.dir, "..v1/proxy.json", answering("v1\\n", NULL));
    snprintf(p, sizeof(p), "%s/..data", px.dir);
    cr_assert_eq(symlink("..v1", p), 0);
    snprintf(p, sizeof(p), "%s/proxy.json", px.dir);
    cr_assert_eq(symlink("..data/proxy.json", p), 0);
    cr_assert(body_becomes("v1\n", 3000), "got %s", body_now());
    /* the kubelet's update: a new copy, a new symlink renamed over ..data */
    snprintf(p, sizeof(p), "%s/..v2", px.dir);
    cr_assert_eq(mkdir(p, 0755), 0);
    h_put_file(px.dir, "..v2/proxy.json", answering("v2\\n", NULL));
    snprintf(p, sizeof(p), "%s/..data_tmp", px.dir);
    cr_assert_eq(symlink("..v2", p), 0);
    snprintf(q, sizeof(q), "%s/..data", px.dir);
    cr_assert_eq(rename(p, q), 0);
    cr_assert(body_becomes("v2\n", 3000), "got %s", body_now());
}

Test(e2e_reload, an_invalid_config_keeps_the_running_one, .fini = fx_down)
{
    fx_start(answering("one\\n", NULL), NULL);
    h_put_file(px.dir, "proxy.json",
               "{\"rules\": [{\"respond\": {\"status\": 200}, \"deny\": {}}], \"workerz\": 2}");
    reload_sig();
    cr_assert_eq(
        h_metric_wait(px.admin_port, "ringproxy_config_reloads_total{result=\"failed\"}", 1, 3000),
        1);
    /* each problem, as the validator words it */
    cr_assert_eq(h_wait_in(px.err_path, "workerz", 1000), 1);
    cr_assert_eq(h_wait_in(px.err_path, "/rules/0", 1000), 1);
    cr_assert_eq(h_wait_in(px.err_path, "still running generation 1", 1000), 1);
    cr_assert_str_eq(body_now(), "one\n");
    h_put_file(px.dir, "proxy.json", answering("two\\n", NULL));
    reload_sig();
    cr_assert(body_becomes("two\n", 3000), "a valid one after it applies: got %s", body_now());
}

Test(e2e_reload, fixed_settings_say_so_and_the_rest_applies, .fini = fx_down)
{
    fx_start(answering("one\\n", ", \"workers\": 1"), NULL);
    h_put_file(px.dir, "proxy.json",
               answering("two\\n", ", \"workers\": 2, \"limits\": {\"max_header_bytes\": 16384}"));
    reload_sig();
    cr_assert(body_becomes("two\n", 3000), "got %s", body_now());
    cr_assert_eq(h_wait_in(px.err_path, "workers cannot change while ringproxy runs", 1000), 1);
    cr_assert_eq(h_wait_in(px.err_path, "limits.max_header_bytes cannot change", 1000), 1);
}

Test(e2e_reload, a_request_under_way_finishes_on_its_config, .fini = fx_down)
{
    static const char v1[] = "{" FX_GRACE ", \"rules\": [{\"name\": \"g\", \"response_headers\": "
                             "{\"set\": {\"X-Gen\": \"1\"}}}]}";
    static const char v2[] = "{" FX_GRACE ", \"rules\": [{\"name\": \"g\", \"response_headers\": "
                             "{\"set\": {\"X-Gen\": \"2\"}}}]}";
    struct h_resp r;
    char got[16], head[4096];
    int c, u;

    fx_raw_start(64);
    h_proxy_start(&px, rw.port, v1, (const char *const[]){"--workers", "1", NULL});
    c = h_connect(px.port);
    cr_assert_geq(c, 0);
    cr_assert_eq(h_send(c, "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n", 31), 0);
    u = fx_raw_take_request(head, sizeof(head), "GET /slow");
    fx_raw_keep(u);
    /* the config changes while the origin thinks */
    h_put_file(px.dir, "proxy.json", v2);
    reload_sig();
    cr_assert_eq(h_wait_in(px.err_path, "applied (generation 2)", 3000), 1);
    h_msleep(50); /* a loop turn: the worker takes the new generation */
    fx_raw_sends(u, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nold");
    cr_assert_eq(h_read_response(c, &r, 0), 0);
    cr_assert_eq(h_header(r.head, "X-Gen", got, sizeof(got)), 0);
    cr_assert_str_eq(got, "1", "the exchange began on generation 1");
    h_resp_free(&r);
    /* the next request on the same connection runs on the new one */
    cr_assert_eq(h_send(c, "GET /next HTTP/1.1\r\nHost: t\r\n\r\n", 31), 0);
    u = fx_raw_take_request(head, sizeof(head), "GET /next");
    fx_raw_keep(u);
    fx_raw_sends(u, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nnew");
    cr_assert_eq(h_read_response(c, &r, 0), 0);
    cr_assert_eq(h_header(r.head, "X-Gen", got, sizeof(got)), 0);
    cr_assert_str_eq(got, "2");
    h_resp_free(&r);
    h_close(c);
}

/* ---- reloads under load ------------------------------------------------------- */

#define LOAD_CLIENTS 8
#define RELOADS 20

struct load {
    pthread_t t;
    _Atomic int *stop;
    long requests, errors, reconnects;
    int gens_seen; /* bit g: a response of X-Gen g */
};

static void *load_main(void *arg)
{
    struct load *l = arg;
    int fd = h_connect(px.port);

    while (fd >= 0 && !atomic_load(l->stop)) {
        struct h_resp r;
        char g[8];

        if (h_send(fd, "GET /k HTTP/1.1\r\nHost: t\r\n\r\n", 28) != 0 ||
            h_read_response(fd, &r, 0) != 0) {
            l->errors++;
            h_close(fd);
            fd = h_connect(px.port);
            l->reconnects++;
            continue;
        }
        if (r.status != 200 || h_header(r.head, "X-Gen", g, sizeof(g)) != 0)
            l->errors++;
        else
            l->gens_seen |= 1 << (atoi(g) & 15);
        l->requests++;
        h_resp_free(&r);
    }
    h_close(fd);
    return NULL;
}

Test(e2e_reload, twenty_reloads_under_keep_alive_load_lose_nothing, .fini = fx_down, .timeout = 120)
{
    struct load l[LOAD_CLIENTS] = {0};
    _Atomic int stop = 0;
    long requests = 0, errors = 0, reconnects = 0;
    char json[512];

    snprintf(json, sizeof(json),
             "{" FX_GRACE ", \"workers\": 2, \"rules\": [{\"name\": \"g\", "
             "\"response_headers\": {\"set\": {\"X-Gen\": \"%d\"}}}]}",
             0);
    fx_start(json, NULL);
    for (int i = 0; i < LOAD_CLIENTS; i++) {
        l[i].stop = &stop;
        cr_assert_eq(pthread_create(&l[i].t, NULL, load_main, &l[i]), 0);
    }
    for (int k = 1; k <= RELOADS; k++) {
        char want[64];

        h_msleep(100);
        snprintf(json, sizeof(json),
                 "{" FX_GRACE ", \"workers\": 2, \"rules\": [{\"name\": \"g\", "
                 "\"response_headers\": {\"set\": {\"X-Gen\": \"%d\"}}}]}",
                 k % 4);
        h_put_file(px.dir, "proxy.json", json);
        reload_sig();
        snprintf(want, sizeof(want), "applied (generation %d)", k + 1);
        cr_assert_eq(h_wait_in(px.err_path, want, 5000), 1, "reload %d", k);
    }
    h_msleep(200);
    atomic_store(&stop, 1);
    for (int i = 0; i < LOAD_CLIENTS; i++) {
        cr_assert_eq(pthread_join(l[i].t, NULL), 0);
        requests += l[i].requests;
        errors += l[i].errors;
        reconnects += l[i].reconnects;
        cr_expect_eq(l[i].gens_seen & 0xf, 0xf, "client %d saw X-Gen %#x", i, l[i].gens_seen);
    }
    fprintf(stderr, "reload under load: %ld requests over %d reloads, %ld errors, %ld reconnects\n",
            requests, RELOADS, errors, reconnects);
    cr_assert_gt(requests, 0);
    cr_assert_eq(errors, 0);
    cr_assert_eq(reconnects, 0, "no connection was dropped");
    /* the generations replaced are freed once nothing uses them (ASan checks the rest) */
    cr_assert_eq(h_metric(px.admin_port, "ringproxy_config_reloads_total{result=\"ok\"}"), RELOADS);
}

/*
 * Exchanges may not keep every generation alive: past GEN_KEEP (4) older
 * generations still in use on a worker, the exchanges on the oldest are
 * closed and logged with termination superseded (a slow upload or a tunnel
 * begun before each reload would otherwise keep every config ever loaded).
 */
Test(e2e_reload, a_sixth_generation_in_use_closes_the_oldest, .fini = fx_down, .timeout = 60)
{
    char head[4096], buf[256];
    int c[6], eof = 0;
    json_t *a;

    fx_raw_start(64);
    h_proxy_start(&px, rw.port, "{" FX_GRACE "}", (const char *const[]){"--workers", "1", NULL});
    for (int k = 0; k < 6; k++) {
        char json[256], want[64], path[32];
        int u;

        /* a request the (raw) origin never answers, on generation k + 1 */
        snprintf(path, sizeof(path), "/held%d", k);
        snprintf(head, sizeof(head), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
        c[k] = h_connect(px.port);
        cr_assert_geq(c[k], 0);
        cr_assert_eq(h_send(c[k], head, strlen(head)), 0);
        u = fx_raw_take_request(head, sizeof(head), path);
        fx_raw_keep(u);
        if (k == 5)
            break;
        snprintf(json, sizeof(json), "{" FX_GRACE ", \"upstream\": {\"pool_max_idle\": %d}}",
                 10 + k);
        h_put_file(px.dir, "proxy.json", json);
        reload_sig();
        snprintf(want, sizeof(want), "applied (generation %d)", k + 2);
        cr_assert_eq(h_wait_in(px.err_path, want, 3000), 1, "reload %d", k);
        h_msleep(50); /* a loop turn: the worker takes it */
    }
    /* generations 1..5 are in use besides the newest (6): the oldest's request is closed */
    (void)h_read_to_eof(c[0], buf, sizeof(buf), 3000, &eof);
    cr_assert(eof, "the request on generation 1 was not closed");
    cr_assert_eq(h_wait_in(px.err_path, "config generation 1: its last 1 requests closed", 1000),
                 1);
    a = fx_log_lines(1);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(a, 0), "termination")),
                     "superseded");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(a, 0), "path")), "/held0");
    json_decref(a);
    for (int k = 0; k < 6; k++)
        h_close(c[k]);
}
