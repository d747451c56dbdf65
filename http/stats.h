/*
 * Per-worker counters for /metrics. Only the owning worker writes them
 * (relaxed load + store: plain moves, no locked instructions on the request
 * path); the admin endpoint reads every worker's copy and sums them.
 */
#ifndef RINGPROXY_HTTP_STATS_H
#define RINGPROXY_HTTP_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#include "cfg/rules.h"

/*
 * Why an exchange did not end normally: one value per reason, with its name
 * in the access log's `termination` field and, for the upstream's failures,
 * its `reason` label in ringproxy_upstream_failures_total. Both come from
 * http_terms[] (docs/troubleshooting.md describes each).
 */
enum http_term {
    HT_NONE = 0, /* ended normally: `-` */
    HT_BAD_REQUEST,
    HT_BAD_REQUEST_BODY,
    HT_NOT_IMPLEMENTED,
    HT_LIMIT_EXCEEDED,
    HT_HEADER_TIMEOUT,
    HT_IDLE_TIMEOUT,
    HT_CLIENT_TIMEOUT,
    HT_CLIENT_CLOSED,
    HT_EARLY_RESPONSE,
    HT_OUT_OF_MEMORY,
    HT_SHUTDOWN,
    HT_RATE_LIMITED, /* a rate_limit rule answered 429 */
    HT_AUTH_BUSY,    /* a basic_auth check could not be made in time: 503 */
    HT_SUPERSEDED,   /* cut off: its config generation was too many reloads old */
    /* the upstream's failures: each counted by its reason */
    HT_UPSTREAM_UNAVAILABLE,     /* no address */
    HT_UPSTREAM_CONNECT_REFUSED, /* every address tried refused or failed the connect */
    HT_UPSTREAM_NO_SOCKET,       /* no socket could be made here (out of descriptors) */
    HT_UPSTREAM_CONNECT_TIMEOUT,
    HT_UPSTREAM_TIMEOUT,
    HT_UPSTREAM_RESET,
    HT_UPSTREAM_BAD_RESPONSE,
    /* must stay last */
    HT_COUNT
};

struct http_term_name {
    const char *log;    /* the access log's termination value */
    const char *reason; /* the failure metric's reason label, or NULL: not an upstream failure */
};

extern const struct http_term_name http_terms[HT_COUNT];

/* The access log's name of t; NULL for HT_NONE (the log writes `-`). */
const char *http_term_str(enum http_term t);

#define HTTP_HIST_BUCKETS 12

/* Upper bounds of the request-duration histogram, in ms. */
extern const double http_hist_bounds_ms[HTTP_HIST_BUCKETS];

struct http_stats {
    _Atomic uint64_t requests[6]; /* by status class: [0] = none, [1..5] = 1xx..5xx */
    _Atomic uint64_t bytes_in;    /* from clients */
    _Atomic uint64_t bytes_out;   /* to clients */
    _Atomic uint64_t clients_active;
    _Atomic uint64_t clients_accepted;
    _Atomic uint64_t clients_refused; /* over client.max_connections */
    _Atomic uint64_t upstreams_active;
    _Atomic uint64_t upstream_connects;
    _Atomic uint64_t upstream_reuses;
    _Atomic uint64_t upstream_retries;
    _Atomic uint64_t upstream_failures[HT_COUNT]; /* rows of http_terms[] with a reason */
    _Atomic uint64_t pool_idle;
    _Atomic uint64_t log_dropped;
    _Atomic uint64_t recv_buffer_waits;           /* receives that found no ring buffer */
    _Atomic uint64_t buffer_sweeps;               /* pressure_sweep() runs */
    _Atomic uint64_t accept_pauses;               /* accepting paused: out of descriptors */
    _Atomic uint64_t accept_paused;               /* 1 while it is */
    _Atomic uint64_t hist[HTTP_HIST_BUCKETS + 1]; /* last = +Inf */
    _Atomic uint64_t hist_sum_us;
    _Atomic uint64_t loop_turns;
    _Atomic uint64_t last_turn_ms; /* CLOCK_MONOTONIC */
    _Atomic uint64_t gen;          /* the config generation new requests run on (http/proxy.h) */
};

/*
 * Edge rules' hits, per generation and worker (struct http_gen's
 * rule_hits): [rule * HTTP_RULE_SLOTS + kind], where kind is the rule's
 * answer (enum cfg_rule_kind), CFG_RK_NONE for its edits, or
 * HTTP_RULE_PASSED for a rate_limit or basic_auth that let the request
 * through.
 */

#define HTTP_RULE_PASSED CFG_RK_COUNT
#define HTTP_RULE_SLOTS (CFG_RK_COUNT + 1)

#define STAT_ADD(s, f, n)                                                                          \
    atomic_store_explicit(&(s)->f, atomic_load_explicit(&(s)->f, memory_order_relaxed) + (n),      \
                          memory_order_relaxed)
#define STAT_INC(s, f) STAT_ADD(s, f, 1)
#define STAT_DEC(s, f) STAT_ADD(s, f, (uint64_t)-1)
#define STAT_GET(s, f) atomic_load_explicit(&(s)->f, memory_order_relaxed)

void http_stats_observe(struct http_stats *s, uint64_t duration_us);

#endif
