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

/*
 * One generation of the configuration: the one loaded at start, then one
 * per reload that changed something (SIGHUP, or the config folder changed).
 * A request runs on the generation that was current when it began, to its
 * end; new requests take the newest. A generation is freed (by the main
 * thread) once nothing uses it: refs counts the main thread while it is the
 * newest and each worker that runs requests on it or has it as its newest.
 * Settings that cannot change while running (workers, listeners, buffer
 * sizes, the access-log format) are the same in every generation: a reload
 * that changes them keeps the running values and says so.
 */
struct http_gen {
    struct cfg *cfg; /* owned */
    uint64_t id;     /* 1 at start, then one more per reload applied */
    uint64_t hash;   /* of the loaded config (http_gen_hash()) */
    _Atomic uint64_t refs;
    /* per worker: [worker * rule_stride + rule * HTTP_RULE_SLOTS + kind] (http/stats.h) */
    _Atomic uint64_t *rule_hits;
    size_t rule_stride;
    /* what its rules use, made by the main thread before the generation was published */
    struct http_ratelimit *ratelimit;
    struct http_auth *auth;
};

/* A generation for cfg (taken over), with refs 1 (the caller's). NULL when out of memory. */
struct http_gen *http_gen_new(struct cfg *cfg, uint64_t id, uint64_t hash, unsigned nworkers);

/* Free g and its config (not the ratelimit and auth, which live as long as the process). */
void http_gen_free(struct http_gen *g);

/*
 * A hash of everything a config says, files included (the pages, the
 * redirect maps): two loads of the same folder hash the same, whatever
 * the JSON's layout.
 */
uint64_t http_gen_hash(const struct cfg *cfg);

enum http_reload_result { HTTP_RELOAD_OK = 0, HTTP_RELOAD_FAILED, HTTP_RELOAD_UNCHANGED };

/* Process-wide, read-only for workers except the atomics. */
struct http_shared {
    /*
     * The newest generation. A worker may read it at any time and use what
     * it read until its next loop turn: the main thread frees a generation
     * only after every worker has begun a turn on a newer one.
     */
    _Atomic(struct http_gen *) gen;
    _Atomic uint64_t reloads[3]; /* by enum http_reload_result */
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
