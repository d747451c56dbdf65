/*
 * Fairness, bounded resources and exact accounting (docs/architecture.md
 * "Flow control", docs/logging.md, docs/operations.md): a few peers that do
 * not read or that trickle cannot take a worker from everyone else; every
 * request is logged once, with fields from its own exchange; shutdown cuts
 * off and logs what did not finish; only TERM and INT stop the proxy; admin
 * connections do not stay open for ever. Running out of descriptors (#26.3)
 * is tested under load in the adversarial layer (tests/adv/abuse.c).
 */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "tests/e2e/fixture.h"

/* A connection that asks for a download and then never reads. */
static int stalled_download(size_t n)
{
    int fd = h_connect(px.port), small = 4096;
    char req[128];

    cr_assert(fd >= 0);
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    snprintf(req, sizeof(req), "GET /size/%zu HTTP/1.1\r\nHost: a\r\n\r\n", n);
    cr_assert_eq(h_sends(fd, req), 0);
    return fd;
}

/* A new client's small request is answered, and soon (not after an idle timeout). */
static void assert_served_soon(const char *why)
{
    for (int i = 0; i < 5; i++) {
        long t0 = h_now_ms();
        struct h_resp r;

        cr_assert_eq(h_roundtrip(px.port, "GET /size/10 HTTP/1.1\r\nHost: a\r\n\r\n", &r), 0,
                     "%s: a new client got no response", why);
        cr_assert_eq(r.status, 200);
        h_resp_free(&r);
        cr_assert_lt(h_now_ms() - t0, 3000, "%s: a new client waited %ld ms", why, h_now_ms() - t0);
    }
}

/*
 * Fairness #19.1: 48 clients that request 8 MB and never read, on one worker
 * (256 receive buffers of 64 KiB): each used to hold buffers on both sides
 * until the idle timeout, and 16 were enough to freeze the worker for 58 s.
 */
Test(e2e_fairness, stalled_readers_do_not_starve_others, .init = fx_up_grace, .fini = fx_down,
     .timeout = 60)
{
    int fd[48];

    for (int i = 0; i < 48; i++)
        fd[i] = stalled_download(8000000);
    h_msleep(1000); /* their responses fill every socket buffer on the way */
    assert_served_soon("48 stalled readers");
    /*
     * Each stalled stream holds at most its queue's share of the ring: a
     * receive finds the published window empty only now and then, in a
     * burst, not once per stalled stream. (Before upstreams took one buffer per
     * receive, a fast origin filled the window first and the queues had to
     * be copied out of the ring, ringproxy_buffer_sweeps_total.)
     */
    long waits = h_metric(px.admin_port, "ringproxy_recv_buffer_waits_total");
    cr_log_info("48 stalled readers: %ld receives waited for a buffer", waits);
    cr_assert_lt(waits, 48, "%ld receives waited for a buffer behind 48 stalled readers", waits);
    for (int i = 0; i < 48; i++)
        h_close(fd[i]);
}

/*
 * Fairness #19.1: 64 connections each with a slow request in flight and 16
 * 1-byte writes pipelined behind it: each write takes a whole receive buffer.
 */
Test(e2e_fairness, trickled_pipelines_do_not_starve_others, .init = fx_up_grace, .fini = fx_down,
     .timeout = 60)
{
    static const char next[] = "GET /x HTTP/1.1\r\n";
    int fd[64];

    for (int i = 0; i < 64; i++) {
        fd[i] = h_connect(px.port);
        cr_assert(fd[i] >= 0);
        cr_assert_eq(h_sends(fd[i], "GET /sleep/4000 HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    }
    for (int k = 0; k < 16; k++) {
        for (int i = 0; i < 64; i++)
            cr_assert_eq(h_send(fd[i], next + k, 1), 0);
        h_msleep(3);
    }
    assert_served_soon("64 trickled pipelines");
    for (int i = 0; i < 64; i++)
        h_close(fd[i]);
}

/* #19.4: only TERM and INT stop the proxy; HUP reloads the config (docs/reload.md), USR1 and USR2
 * are reported. */
Test(e2e_fairness, hup_and_usr_signals_do_not_stop_it, .init = fx_up_grace, .fini = fx_down)
{
    struct h_resp r;
    char *err;

    cr_assert_eq(kill(px.pid, SIGHUP), 0);
    cr_assert_eq(kill(px.pid, SIGUSR1), 0);
    cr_assert_eq(kill(px.pid, SIGUSR2), 0);
    h_msleep(200);
    cr_assert_eq(h_roundtrip(px.port, "GET /size/3 HTTP/1.1\r\nHost: a\r\n\r\n", &r), 0);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    err = h_slurp(px.err_path);
    cr_assert(strstr(err, "reload (SIGHUP): configuration unchanged"), "%s", err);
    cr_assert(strstr(err, "User defined signal 1: ignored"), "%s", err);
    free(err);
}

/* #19.5: admin connections are bounded in number and in idle time. */
Test(e2e_fairness, admin_connections_bounded, .init = fx_up_grace, .fini = fx_down, .timeout = 60)
{
    int fd[80], open = 0;
    char c;

    for (int i = 0; i < 80; i++)
        fd[i] = h_connect(px.admin_port);
    h_msleep(300);
    for (int i = 0; i < 80; i++) {
        struct pollfd p = {.fd = fd[i], .events = POLLIN};

        /* a connection over the limit was closed at accept: readable, EOF */
        if (fd[i] >= 0 && !(poll(&p, 1, 0) == 1 && recv(fd[i], &c, 1, MSG_DONTWAIT) == 0))
            open++;
    }
    cr_assert_leq(open, 64, "%d admin connections kept open", open);
    cr_assert_geq(open, 32);
    /* the idle ones are closed after 10 s */
    for (int i = 0; i < 80; i++) {
        struct pollfd p = {.fd = fd[i], .events = POLLIN};

        if (fd[i] < 0)
            continue;
        cr_assert_eq(poll(&p, 1, 15000), 1, "admin connection %d still open after 15 s", i);
        cr_assert_eq(recv(fd[i], &c, 1, 0), 0);
        h_close(fd[i]);
    }
}

static long num(json_t *line, const char *k)
{
    json_t *v = json_object_get(line, k);

    cr_assert(json_is_integer(v), "%s is not a number", k);
    return (long)json_integer_value(v);
}

static const char *str(json_t *line, const char *k)
{
    json_t *v = json_object_get(line, k);

    return json_is_string(v) ? json_string_value(v) : "";
}

/* #19.3: what is still running when the grace period ends is cut off and logged. */
Test(e2e_fairness, shutdown_logs_what_it_cuts_off, .fini = fx_down)
{
    json_t *a;
    int slow, late;
    char buf[64];

    fx_up_grace();
    slow = h_connect(px.port);
    cr_assert(slow >= 0);
    cr_assert_eq(h_sends(slow, "GET /sleep/5000 HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    h_msleep(200);
    cr_assert_eq(kill(px.pid, SIGTERM), 0);
    h_msleep(100);
    /* a connection made during the drain is closed at once, not left in the backlog */
    late = h_connect(px.port);
    if (late >= 0) {
        long t0 = h_now_ms();

        (void)h_read_all(late, buf, sizeof(buf), 3000);
        cr_assert_lt(h_now_ms() - t0, 800, "a connection made while draining waited");
        h_close(late);
    }
    cr_assert_eq(h_proxy_stop(&px), 0);
    a = fx_log_lines(1);
    cr_assert_eq(json_array_size(a), 1);
    cr_assert_str_eq(str(json_array_get(a, 0), "termination"), "shutdown");
    cr_assert_str_eq(str(json_array_get(a, 0), "path"), "/sleep/5000");
    json_decref(a);
    h_close(slow);
}

/* #19.6: request_bytes is this request's own, not the pipelined ones behind it. */
Test(e2e_fairness, request_bytes_of_pipelined_requests, .init = fx_up_grace, .fini = fx_down)
{
    static const char one[] = "GET /size/1 HTTP/1.1\r\nHost: a\r\n\r\n";
    struct h_resp r;
    json_t *a;
    char three[3 * sizeof(one)];
    int fd = h_connect(px.port);

    snprintf(three, sizeof(three), "%s%s%s", one, one, one);
    cr_assert_eq(h_sends(fd, three), 0);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(h_read_response(fd, &r, 0), 0);
        h_resp_free(&r);
    }
    h_close(fd);
    a = fx_log_lines(3);
    for (size_t i = 0; i < 3; i++)
        cr_assert_eq(num(json_array_get(a, i), "request_bytes"), (long)sizeof(one) - 1, "line %zu",
                     i);
    json_decref(a);
}

/* #19.6: an exchange cut short logs no body bytes of the exchange before it. */
Test(e2e_fairness, response_body_bytes_do_not_carry_over, .init = fx_up_grace, .fini = fx_down)
{
    struct h_resp r;
    json_t *a;
    int fd = h_connect(px.port);

    cr_assert_eq(h_sends(fd, "GET /size/100 HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    cr_assert_eq(h_read_response(fd, &r, 0), 0);
    h_resp_free(&r);
    cr_assert_eq(h_sends(fd, "GET /size/5 HTTP/1.1\r\nHost:"), 0);
    h_msleep(100);
    h_close(fd); /* half a head, then gone */
    a = fx_log_lines(2);
    cr_assert_eq(num(json_array_get(a, 0), "response_body_bytes"), 100);
    cr_assert_eq(num(json_array_get(a, 1), "response_body_bytes"), 0);
    cr_assert_str_eq(str(json_array_get(a, 1), "termination"), "client_closed");
    json_decref(a);
}

/* #19.6: fields of a response that broke mid-body are still the response's. */
Test(e2e_fairness, content_type_logged_when_origin_fails_mid_body, .init = fx_up_grace,
     .fini = fx_down)
{
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Type: text/x-broken\r\n"
                               "Content-Length: 100\r\n\r\nabc";
    char buf[512];
    json_t *a;
    int fd = h_connect(px.port);

    origin_script(origin, resp, sizeof(resp) - 1, 1);
    cr_assert_eq(h_sends(fd, "GET /broken HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    (void)h_read_all(fd, buf, sizeof(buf), 3000);
    h_close(fd);
    a = fx_log_lines(1);
    cr_assert_str_eq(str(json_array_get(a, 0), "content_type"), "text/x-broken");
    cr_assert_eq(num(json_array_get(a, 0), "status"), 200);
    cr_assert_eq(num(json_array_get(a, 0), "response_body_bytes"), 3);
    cr_assert_str_eq(str(json_array_get(a, 0), "termination"), "upstream_reset");
    json_decref(a);
}

/* #19.6: a tunnel is logged once, when it ends, with the bytes that went through it. */
Test(e2e_fairness, tunnel_logged_with_its_bytes, .init = fx_up_grace, .fini = fx_down)
{
    static const char resp[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                               "Connection: upgrade\r\n\r\nhello from the tunnel";
    char buf[512];
    json_t *a;
    int fd = h_connect(px.port);
    size_t n;

    origin_script(origin, resp, sizeof(resp) - 1, 1);
    cr_assert_eq(h_sends(fd, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n"
                             "Upgrade: websocket\r\n\r\n"),
                 0);
    n = h_read_all(fd, buf, sizeof(buf), 3000);
    cr_assert(strstr(buf, "hello from the tunnel"), "%zu: %s", n, buf);
    h_close(fd);
    a = fx_log_lines(1);
    cr_assert_eq(json_array_size(a), 1, "one line for the tunnel");
    cr_assert_eq(num(json_array_get(a, 0), "status"), 101);
    cr_assert_eq(num(json_array_get(a, 0), "bytes"), (long)n);
    cr_assert_eq(num(json_array_get(a, 0), "response_body_bytes"), 21);
    json_decref(a);
}

/* #19.6: with stdout gone, the drop metric counts what stderr reports. */
Test(e2e_fairness, dropped_lines_counted_once_everywhere, .fini = fx_down)
{
    long dropped;
    char *err, *p;
    long reported = 0;

    fx_origin_up();
    h_proxy_start_piped(&px, origin_port(origin), "{" FX_GRACE "}", NULL);
    close(px.out_fd);
    px.out_fd = -1;
    for (int i = 0; i < 20; i++) {
        struct h_resp r;

        cr_assert_eq(h_roundtrip(px.port, "GET /size/1 HTTP/1.1\r\nHost: a\r\n\r\n", &r), 0);
        h_resp_free(&r);
    }
    /* stderr reports at most once a second: wait for both to settle */
    for (int i = 0; i < 50; i++) {
        dropped = h_metric(px.admin_port, "ringproxy_access_log_dropped_total");
        err = h_slurp(px.err_path);
        reported = 0;
        for (p = err; (p = strstr(p, "access log: ")); p++)
            reported += atol(p + strlen("access log: "));
        if (dropped == 20 && reported == 20)
            break;
        free(err);
        err = NULL;
        h_msleep(100);
    }
    if (!err)
        err = h_slurp(px.err_path);
    cr_assert_eq(dropped, 20, "metric %ld", dropped);
    cr_assert_eq(reported, dropped, "stderr reported %ld, the metric %ld:\n%s", reported, dropped,
                 err);
    free(err);
}

/*
 * #19.6 / #26.7: a flood of interim responses is bounded, and a final status
 * is still owed: after the 1xx heads the client gets a 502, and none of the
 * 1xx bytes count as body. The bound is the head block's output room (about
 * 42 KB with the default limits): 2000 heads of 25 bytes are over it.
 */
Test(e2e_fairness, interim_flood_ends_in_502, .init = fx_up_grace, .fini = fx_down)
{
    static const char one[] = "HTTP/1.1 100 Continue\r\n\r\n";
    size_t n = 2000 * (sizeof(one) - 1);
    char *flood = malloc(n), *buf = malloc(n + 4096);
    json_t *a;
    size_t got;
    int fd = h_connect(px.port);

    cr_assert(flood && buf);
    for (int i = 0; i < 2000; i++)
        memcpy(flood + (size_t)i * (sizeof(one) - 1), one, sizeof(one) - 1);
    origin_script(origin, flood, n, 0);
    cr_assert_eq(h_sends(fd, "GET /flood HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"), 0);
    got = h_read_all(fd, buf, n + 4096, 3000);
    cr_assert(got > 0 && strstr(buf, "HTTP/1.1 502 "), "no final 502 after the 1xx (%zu bytes)",
              got);
    h_close(fd);
    a = fx_log_lines(1);
    cr_assert_eq(num(json_array_get(a, 0), "status"), 502);
    cr_assert_eq(num(json_array_get(a, 0), "response_body_bytes"), 16, "\"502 Bad Gateway\\n\"");
    json_decref(a);
    free(flood);
    free(buf);
}

/* #19.2: a request with huge fields is logged, its long values cut with a marker. */
Test(e2e_fairness, long_fields_are_cut_not_dropped, .fini = fx_down)
{
    char *req = malloc(20000), *p;
    struct h_resp r;
    json_t *a;

    /* 3 x 3500 obs-text bytes escape to 63000: with the target, over 64 KiB of line */
    p = req + sprintf(req, "GET /");
    memset(p, 'a', 2000);
    p += 2000;
    p += sprintf(p, " HTTP/1.1\r\nHost: a\r\n");
    for (int h = 0; h < 3; h++) {
        p += sprintf(p, "X-%c: ", 'A' + h);
        memset(p, 0xf0 + h, 3500);
        p += 3500;
        p += sprintf(p, "\r\n");
    }
    p += sprintf(p, "\r\n");
    fx_up_cfg("\"access_log\": {\"request_headers\": [\"X-A\", \"X-B\", \"X-C\"]}");
    cr_assert_eq(h_roundtrip(px.port, req, &r), 0);
    cr_assert_eq(r.status, 200, "status %d: %.200s", r.status, r.head);
    h_resp_free(&r);
    a = fx_log_lines(1);
    cr_assert_eq(num(json_array_get(a, 0), "status"), 200);
    cr_assert_eq(strlen(str(json_array_get(a, 0), "path")), 2001, "a short value is whole");
    for (int h = 0; h < 3; h++) {
        char k[16];
        const char *v;

        snprintf(k, sizeof(k), "http_x_%c", 'a' + h);
        v = str(json_array_get(a, 0), k);
        cr_assert(strlen(v) > 600 && strstr(v, "\u2026[cut]"), "%s is cut, with the marker", k);
    }
    json_decref(a);
    free(req);
}

/* #27.2: access_log.buffer_bytes at its minimum holds that many bytes of lines. */
Test(e2e_fairness, smallest_log_buffer_holds_its_bytes, .fini = fx_down)
{
    json_t *a;

    fx_up_cfg("\"workers\": 1, \"access_log\": {\"buffer_bytes\": 65536}");
    for (int i = 0; i < 50; i++) {
        struct h_resp r;

        cr_assert_eq(h_roundtrip(px.port, "GET /size/1 HTTP/1.1\r\nHost: a\r\n\r\n", &r), 0);
        h_resp_free(&r);
    }
    a = fx_log_lines(50);
    cr_assert_eq(json_array_size(a), 50);
    cr_assert_eq(h_metric(px.admin_port, "ringproxy_access_log_dropped_total"), 0);
    json_decref(a);
}
