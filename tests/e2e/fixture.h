/*
 * The fixture most end-to-end tests share, on top of tests/e2e/harness.h:
 * a test origin on 127.0.0.1 (tests/support/origin.h) with ringproxy in
 * front of it, or a raw origin that the test accepts from and talks
 * through by hand. Criterion runs each test in its own process, so there
 * is one of each per test: `origin`, `px` and `rw`.
 */
#ifndef RINGPROXY_TESTS_FIXTURE_H
#define RINGPROXY_TESTS_FIXTURE_H

#include <stddef.h>

#include <jansson.h>

#include "tests/e2e/harness.h"

extern struct origin *origin;
extern struct proxy px;

/* A bounded shutdown even when a failed assertion leaves a connection open. */
#define FX_GRACE "\"shutdown_grace_ms\": 1000"

/* The origin alone (the test starts the proxy). */
void fx_origin_up(void);

/* The origin, then the proxy in front of it: proxy.json = json (NULL: none), extra arguments (NULL:
 * none). */
void fx_start(const char *json, const char *const *args);

/* .init: the origin and the proxy with built-in defaults. */
void fx_up(void);

/* The proxy in front of 127.0.0.1:upstream_port, proxy.json {FX_GRACE, inner} (inner NULL: FX_GRACE
 * alone). */
void fx_proxy_grace(unsigned upstream_port, const char *inner);

/* The origin, then fx_proxy_grace(its port, inner). */
void fx_up_cfg(const char *inner);

/* .init: fx_up_cfg(NULL). */
void fx_up_grace(void);

/*
 * .fini: the raw origin's connections and listener closed, the proxy
 * stopped (it must exit 0 on SIGTERM) when still running, its stdout pipe
 * closed, the origin stopped.
 */
void fx_down(void);

/* ---- the raw origin -------------------------------------------------------- */

#define FX_RAW_MAX 64

struct fx_raw {
    int lfd; /* -1 until fx_raw_start */
    unsigned port;
    int fd[FX_RAW_MAX]; /* closed by fx_down */
    int n;
};

extern struct fx_raw rw;

/* Listen on 127.0.0.1 (any port: rw.port) with this backlog. */
void fx_raw_start(int backlog);

/* fx_raw_start(64), then fx_proxy_grace(rw.port, inner). */
void fx_raw_up_cfg(const char *inner);

/* .init: fx_raw_up_cfg(NULL). */
void fx_raw_up(void);

/* Close fd in fx_down (when there is room). */
void fx_raw_keep(int fd);

/* Accept one connection (kept for fx_down) within timeout_ms; -1 when none came. */
int fx_raw_accept(int timeout_ms);

/* Send all of s, failing the test when it cannot. */
void fx_raw_sends(int fd, const char *s);

/* Accept one upstream connection and read one request head from it into buf. */
int fx_raw_take_request(char *buf, size_t cap, const char *what);

/* ---- checks against the fixture ---------------------------------------------- */

/* Wait (bounded) until the origin has received needle; 1 when it has. */
int fx_origin_got(const char *needle, int timeout_ms);

/* One request to the proxy on its own connection; the response is returned. */
void fx_roundtrip(const char *req, struct h_resp *r);

/* A valid request (GET /sentinel) on a fresh connection must be served: all the origin received by
 * then. */
const char *fx_sentinel(void);

/*
 * A valid request on a fresh connection after a rejected one: it must be
 * served, and be the first bytes the origin ever received.
 */
void fx_assert_nothing_forwarded(void);

/* Send req, expect a response with status want, then the close. */
void fx_expect_answer_and_close(const char *req, size_t len, int want);

/* fx_expect_answer_and_close, then fx_assert_nothing_forwarded. */
void fx_expect_rejected(const char *req, size_t len, int want);

/* A request the head checks must refuse: status want, closed, nothing forwarded. */
#define FX_REJECTS(suite, name, want, raw)                                                         \
    Test(suite, name, .init = fx_up_grace, .fini = fx_down)                                        \
    {                                                                                              \
        static const char req[] = raw;                                                             \
        fx_expect_rejected(req, sizeof(req) - 1, want);                                            \
    }

/* The proxy's access-log lines, parsed (JSON); at least n of them (bounded wait). */
json_t *fx_log_lines(int n);

#endif
