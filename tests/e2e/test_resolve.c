/*
 * End to end: resolution of next-hop (C3, C4).
 *
 * Resolution runs the real libc resolver, in the environment of
 * tests/e2e/netns.h: each test gets a private network namespace when the
 * kernel allows it, origins on 127.0.0.2:80 and 127.0.0.3:80, optionally a
 * test nameserver on 127.0.0.53:53, and a ringproxy started without
 * --upstream, in a private mount namespace where a test /etc/hosts and
 * /etc/resolv.conf are bind-mounted over the real ones. Without root (or
 * CAP_SYS_ADMIN) the tests skip. Many concurrent failing requests against
 * a dead origin (#26.4) are the adversarial layer's (tests/adv/abuse.c).
 * The upstream pool (C11) is tests/e2e/test_pool.c's.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <jansson.h>

#include "tests/e2e/harness.h"
#include "tests/e2e/netns.h"
#include "tests/support/dns.h"

#define INTERVAL_JSON "{\"upstream\": {\"resolve_interval_ms\": 200}}"
#define HOSTS_2 HOSTS_NONE "127.0.0.2 next-hop\n"
#define HOSTS_3 HOSTS_NONE "127.0.0.3 next-hop\n"
#define HOSTS_BOTH HOSTS_NONE "127.0.0.2 next-hop\n127.0.0.3 next-hop\n"

static const char *const req_get = "GET / HTTP/1.1\r\nHost: site.example\r\n\r\n";

/* ---- helpers ------------------------------------------------------------ */

/*
 * A bind mount pins the inode: change the file in place (overwrite, then cut),
 * never by rename. Overwriting first means a reader never sees it empty.
 */
static void rewrite_in_place(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY);
    size_t n = strlen(s);

    cr_assert(fd >= 0, "%s: %s", path, strerror(errno));
    cr_assert_eq(pwrite(fd, s, n, 0), (ssize_t)n);
    cr_assert_eq(ftruncate(fd, (off_t)n), 0);
    close(fd);
}

/* ---- the resolution environment ----------------------------------------- */

/* The proxy's stderr, for failure messages; malloc'd. */
static char *errlog(void)
{
    return h_slurp(NS.px.err_path);
}

/* ---- C3/C4: next-hop through /etc/hosts, then DNS ----------------------- */

Test(e2e_resolve, hosts_entry_reaches_next_hop, .fini = netns_down)
{
    struct h_resp r;
    json_t *j;
    char *out, *err;

    netns_up(HOSTS_2, 0);
    netns_proxy_start(INTERVAL_JSON);
    cr_assert_eq(h_roundtrip(NS.px.port, req_get, &r), 0);
    err = errlog();
    cr_assert_eq(r.status, 200, "stderr: %s", err);
    cr_assert_eq(r.body_len, 18);
    cr_assert_arr_eq(r.body, "hello from origin\n", 18);
    h_resp_free(&r);
    free(err);
    h_wait_in(NS.px.err_path, "resolve next-hop: 127.0.0.2:80\n", 1000);
    err = errlog();
    cr_assert_eq(origin_requests(NS.o2), 1);
    cr_assert_eq(origin_requests(NS.o3), 0);
    /* one diagnostic line for the answer */
    cr_assert(strstr(err, "resolve next-hop: 127.0.0.2:80\n"), "%s", err);
    free(err);
    cr_assert_eq(h_wait_log_lines(&NS.px, 1), 1);
    out = h_slurp(NS.px.out_path);
    j = json_loads(out, JSON_DISABLE_EOF_CHECK, NULL);
    cr_assert(j, "%s", out);
    cr_assert_str_eq(json_string_value(json_object_get(j, "upstream_addr")), "127.0.0.2:80");
    json_decref(j);
    free(out);
}

Test(e2e_resolve, hosts_change_moves_traffic_without_failures, .fini = netns_down)
{
    int fd, slow, failures = 0, st;
    unsigned n2, n3;
    uint64_t t0, took;
    struct h_resp r;
    char *err;

    netns_up(HOSTS_2, 0);
    netns_proxy_start(INTERVAL_JSON);
    fd = h_connect(NS.px.port);
    cr_assert(fd >= 0);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(h_status_on(fd, req_get), 200);
    cr_assert_eq(origin_requests(NS.o2), 5);

    /* a request in flight on the old address when the name moves */
    slow = h_connect(NS.px.port);
    cr_assert(slow >= 0);
    cr_assert_eq(h_sends(slow, "GET /sleep/700 HTTP/1.1\r\nHost: site.example\r\n\r\n"), 0);
    h_msleep(50);

    rewrite_in_place(NS.hosts, HOSTS_3);
    t0 = h_now_ms();
    while (origin_requests(NS.o3) == 0 && h_now_ms() - t0 < 3000) {
        st = h_status_on(fd, req_get);
        failures += st != 200;
        h_msleep(20);
    }
    took = h_now_ms() - t0;
    err = errlog();
    cr_assert_gt(origin_requests(NS.o3), 0, "traffic did not move to 127.0.0.3 within 3 s: %s",
                 err);
    cr_log_info("hosts change -> first request on the new address after %llu ms",
                (unsigned long long)took);
    /* from then on, every new request goes to the new address */
    n2 = origin_requests(NS.o2);
    n3 = origin_requests(NS.o3);
    for (int i = 0; i < 20; i++) {
        st = h_status_on(fd, req_get);
        failures += st != 200;
    }
    cr_assert_eq(origin_requests(NS.o2), n2, "a request went to the old address after the switch");
    cr_assert_eq(origin_requests(NS.o3), n3 + 20);
    cr_assert_eq(failures, 0, "requests failed during the switch (keep-alive client): %s", err);

    /* the old origin finishes what it had */
    cr_assert_eq(h_read_response(slow, &r, 0), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 6);
    cr_assert_arr_eq(r.body, "slept\n", 6);
    h_resp_free(&r);
    h_close(slow);
    h_close(fd);
    cr_assert(strstr(err, "resolve next-hop: 127.0.0.3:80\n"), "%s", err);
    free(err);
    /* only the connection to the new address stays open (in the pool) */
    cr_assert_eq(h_metric_wait(NS.px.admin_port, "ringproxy_upstream_connections", 1, 1000), 1);
    cr_assert_eq(h_metric(NS.px.admin_port, "ringproxy_resolver_changes_total"), 2);
}

/* Wait (bounded) until a request on fd reaches o; 1 when one did. */
static int moved_to(int fd, struct origin *o, int ms)
{
    long end = h_now_ms() + ms;
    unsigned n = origin_requests(o);

    while (h_now_ms() < end) {
        cr_assert_eq(h_status_on(fd, req_get), 200);
        if (origin_requests(o) > n)
            return 1;
        h_msleep(20);
    }
    return 0;
}

/* One line per change of state, even when changes come faster than once a second. */
Test(e2e_resolve, every_change_gets_its_line, .fini = netns_down)
{
    int fd;
    char *err;

    netns_up(HOSTS_2, 0);
    netns_proxy_start(INTERVAL_JSON);
    fd = h_connect(NS.px.port);
    cr_assert(fd >= 0);
    cr_assert_eq(h_status_on(fd, req_get), 200);
    rewrite_in_place(NS.hosts, HOSTS_3);
    cr_assert(moved_to(fd, NS.o3, 3000));
    rewrite_in_place(NS.hosts, HOSTS_2);
    cr_assert(moved_to(fd, NS.o2, 3000));
    h_close(fd);
    cr_assert_eq(h_metric(NS.px.admin_port, "ringproxy_resolver_changes_total"), 3);
    err = errlog();
    cr_assert_eq(h_count_in(NS.px.err_path, "resolve next-hop: 127.0.0.3:80\n"), 1,
                 "the change to .3 is logged: %s", err);
    cr_assert_eq(h_count_in(NS.px.err_path, "resolve next-hop: 127.0.0.2:80\n"), 2,
                 "the change back to .2 is logged too (start-up + change): %s", err);
    free(err);
}

Test(e2e_resolve, nameserver_answers_without_hosts_entry, .fini = netns_down)
{
    const char *a3[] = {"127.0.0.3"};
    struct h_resp r;
    uint64_t t0;
    char *err;

    netns_up(HOSTS_NONE, 1);
    netns_proxy_start(INTERVAL_JSON);
    cr_assert_eq(h_roundtrip(NS.px.port, req_get, &r), 0);
    h_resp_free(&r);
    err = errlog();
    cr_assert_eq(origin_requests(NS.o2), 1, "the nameserver's answer (127.0.0.2) was not used: %s",
                 err);
    cr_assert_gt(dns_queries(NS.dns), 0);
    cr_assert(strstr(err, "resolve next-hop: 127.0.0.2:80\n"), "%s", err);
    free(err);

    /* a new answer from the nameserver moves traffic too */
    dns_set_answer(NS.dns, a3, 1, 1);
    t0 = h_now_ms();
    while (origin_requests(NS.o3) == 0 && h_now_ms() - t0 < 3000) {
        cr_assert_eq(h_roundtrip(NS.px.port, req_get, &r), 0);
        cr_assert_eq(r.status, 200);
        h_resp_free(&r);
        h_msleep(20);
    }
    cr_assert_gt(origin_requests(NS.o3), 0, "the new DNS answer was not used within 3 s");
}

Test(e2e_resolve, hosts_file_comes_before_nameserver, .fini = netns_down)
{
    const char *a3[] = {"127.0.0.3"};
    int fd;

    netns_up(HOSTS_2, 1);
    dns_set_answer(NS.dns, a3, 1, 1);
    netns_proxy_start(INTERVAL_JSON);
    h_msleep(500); /* a few re-resolutions */
    fd = h_connect(NS.px.port);
    cr_assert(fd >= 0);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(h_status_on(fd, req_get), 200);
    h_close(fd);
    cr_assert_eq(origin_requests(NS.o2), 5);
    cr_assert_eq(origin_requests(NS.o3), 0);
    cr_assert_eq(dns_queries(NS.dns), 0, "the nameserver was asked although /etc/hosts answers");
}

Test(e2e_resolve, failing_nameserver_keeps_last_good_answer, .fini = netns_down)
{
    const char *keep = "keeping the last good answer";
    unsigned q0, n2;
    uint64_t t0, worst = 0;
    int fd, failures = 0;
    char *err;

    netns_up(HOSTS_NONE, 1);
    netns_proxy_start(INTERVAL_JSON);
    fd = h_connect(NS.px.port);
    cr_assert(fd >= 0);
    cr_assert_eq(h_status_on(fd, req_get), 200);
    cr_assert_eq(origin_requests(NS.o2), 1);

    /* SERVFAIL for ~7 intervals: traffic stays on the last answer, one warning */
    dns_set_mode(NS.dns, DNS_SERVFAIL);
    q0 = dns_queries(NS.dns);
    t0 = h_now_ms();
    while (h_now_ms() - t0 < 1500) {
        failures += h_status_on(fd, req_get) != 200;
        h_msleep(100);
    }
    err = errlog();
    cr_assert_eq(failures, 0, "%s", err);
    cr_assert_eq(origin_requests(NS.o3), 0);
    cr_assert_geq(dns_queries(NS.dns) - q0, 3, "the resolver stopped asking while failing");
    cr_assert_eq(h_count_in(NS.px.err_path, keep), 1,
                 "want one warning per change of state, not one per interval: %s", err);
    free(err);
    cr_assert_eq(h_metric(NS.px.admin_port, "ringproxy_resolver_failing"), 1);

    /* answers again: one line, failing gauge back to 0, no change of the set */
    dns_set_mode(NS.dns, DNS_ANSWER);
    cr_assert_eq(h_metric_wait(NS.px.admin_port, "ringproxy_resolver_failing", 0, 2000), 0);
    cr_assert_eq(h_count_in(NS.px.err_path, "answering again"), 1);
    cr_assert_eq(h_metric(NS.px.admin_port, "ringproxy_resolver_changes_total"), 1);

    /*
     * A nameserver that does not answer at all: getaddrinfo blocks for the
     * resolv.conf timeout, on the resolver thread only. Requests keep their
     * usual latency and their address.
     */
    dns_set_mode(NS.dns, DNS_SILENT);
    n2 = origin_requests(NS.o2);
    t0 = h_now_ms();
    while (h_now_ms() - t0 < 2500) {
        uint64_t s = h_now_ms();

        failures += h_status_on(fd, req_get) != 200;
        if (h_now_ms() - s > worst)
            worst = h_now_ms() - s;
        h_msleep(50);
    }
    dns_set_mode(NS.dns, DNS_ANSWER); /* so that the stop does not wait for a timeout */
    err = errlog();
    cr_assert_eq(failures, 0, "%s", err);
    cr_assert_gt(origin_requests(NS.o2), n2);
    cr_assert_eq(origin_requests(NS.o3), 0);
    cr_assert_lt(worst, 250, "a request took %llu ms while the nameserver was silent",
                 (unsigned long long)worst);
    cr_assert_eq(h_count_in(NS.px.err_path, keep), 2, "%s", err);
    free(err);
    h_close(fd);
}

Test(e2e_resolve, two_addresses_share_load_and_dead_one_is_skipped, .fini = netns_down)
{
    unsigned n2;
    double refused;
    int fd, failures = 0;
    char *err;

    netns_up(HOSTS_BOTH, 0);
    /* no pool: every request opens a connection, so each one picks an address */
    netns_proxy_start("{\"upstream\": {\"resolve_interval_ms\": 200, \"pool_max_idle\": 0}}");
    h_wait_in(NS.px.err_path, "resolve next-hop: 2 addresses: 127.0.0.2:80, 127.0.0.3:80\n", 1000);
    err = errlog();
    cr_assert(strstr(err, "resolve next-hop: 2 addresses: 127.0.0.2:80, 127.0.0.3:80\n"),
              "/etc/hosts has two lines for next-hop (multi on): %s", err);
    free(err);
    fd = h_connect(NS.px.port);
    cr_assert(fd >= 0);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(h_status_on(fd, req_get), 200);
    cr_log_info("round robin over two addresses: %u / %u", origin_requests(NS.o2),
                origin_requests(NS.o3));
    cr_assert_geq(origin_requests(NS.o2), 8);
    cr_assert_geq(origin_requests(NS.o3), 8);

    /* .3 dies (connect refused); the name still lists it */
    origin_stop(NS.o3);
    NS.o3 = NULL;
    n2 = origin_requests(NS.o2);
    for (int i = 0; i < 30; i++) {
        failures += h_status_on(fd, req_get) != 200;
        h_msleep(50);
    }
    h_close(fd);
    err = errlog();
    cr_assert_eq(failures, 0, "failover to the live address: %s", err);
    cr_assert_eq(origin_requests(NS.o2), n2 + 30);
    refused =
        h_metric(NS.px.admin_port, "ringproxy_upstream_failures_total{reason=\"connect_refused\"}");
    cr_log_info("connect_refused over 1.5 s with a dead address: %.0f", refused);
    /* backoff 0.5 s, 1 s, 2 s: a handful of tries, not one per request */
    cr_assert_geq(refused, 1);
    cr_assert_leq(refused, 4, "the dead address was not backed off: %s", err);
    free(err);
}

/*
 * #26.6: the backoff covers every address of the set. 41 addresses for
 * next-hop, only 127.0.0.2 alive: once each dead one has refused, requests go
 * to the live one (on c2cf0d5 a 16-entry table forgot dead addresses: with
 * 40 of them 4 or 5 of 48 requests a second got through). The log line says how many
 * addresses there are and cuts only between addresses.
 */
Test(e2e_resolve, backoff_covers_every_address, .fini = netns_down)
{
    char hosts[4096];
    int off = snprintf(hosts, sizeof(hosts), "%s127.0.0.2 next-hop\n", HOSTS_NONE), fd, ok = 0;
    char *err;

    for (int i = 10; i < 50; i++)
        off += snprintf(hosts + off, sizeof(hosts) - (size_t)off, "127.0.0.%d next-hop\n", i);
    netns_up(hosts, 0);
    netns_proxy_start("{\"upstream\": {\"resolve_interval_ms\": 60000, \"pool_max_idle\": 0}}");
    h_wait_in(NS.px.err_path, "resolve next-hop: 41 addresses: ", 1000);
    err = errlog();
    cr_assert(strstr(err, "resolve next-hop: 41 addresses: 127.0.0.10:80, "), "%s", err);
    cr_assert(strstr(err, " more\n"), "a long set is cut between addresses, with a count: %s", err);
    free(err);
    fd = h_connect(NS.px.port);
    cr_assert(fd >= 0);
    /* every dead address refuses once (or a few times), and is then skipped */
    for (int i = 0; i < 48; i++)
        (void)h_status_on(fd, req_get);
    for (int i = 0; i < 48; i++)
        ok += h_status_on(fd, req_get) == 200;
    h_close(fd);
    cr_assert_eq(ok, 48, "%d of 48 requests reached the live address", ok);
}
