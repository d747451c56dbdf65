/*
 * The reverse proxy: one worker per thread, each with its own ring, its own
 * listeners, connections, upstream pool, timers and access-log buffer.
 * Nothing on the request path is shared between workers.
 */
#ifndef RINGPROXY_HTTP_PROXY_H
#define RINGPROXY_HTTP_PROXY_H

#include <stdatomic.h>
#include <stdint.h>

#include "cfg/cfg.h"
#include "http/auth.h"
#include "http/ratelimit.h"
#include "http/stats.h"
#include "log/access.h"
#include "log/out.h"
#include "net/resolve.h"

#define HTTP_MAX_LISTENERS 2

/* Process-wide, read-only for workers except the atomics. */
struct http_shared {
    const struct cfg *cfg;
    struct log_fmt *log_fmt;
    struct net_resolver *resolver;
    const char *upstream_host; /* Host for requests that carry none (HTTP/1.0) */
    unsigned nworkers;
    int stdout_is_pipe;
    int access_log;       /* 0 only with --no-access-log (benchmarks) */
    _Atomic int stop;     /* set by the main thread: drain and exit */
    _Atomic int draining; /* for /healthz */
    /* the workers' writers on a shared stdout pipe take turns for long lines (log/out.h) */
    struct log_pipe_lock log_lock;
    struct http_stats *stats; /* one per worker, summed by the admin endpoint */
    /* the rate_limit rules' buckets, shared by all workers (lock-free); NULL without such rules */
    struct http_ratelimit *ratelimit;
    /* basic_auth's password checks and their cache (http/auth.h); NULL without such rules */
    struct http_auth *auth;
};

struct http_worker_params {
    int id;
    int lfd[HTTP_MAX_LISTENERS]; /* public listeners; -1 when unused */
    int admin_fd;                /* loopback admin listener, or -1 */
    int evfd;                    /* written by the main thread to wake the worker */
};

/*
 * Run a worker on the calling thread until it has drained after a stop.
 * ready(arg, err, what) is called once the ring is set up (err = 0) or could
 * not be (err = -errno, what = the step). Returns 0 or -errno.
 */
int http_worker_run(struct http_shared *sh, const struct http_worker_params *p,
                    void (*ready)(void *arg, int err, const char *what), void *arg);

#endif
