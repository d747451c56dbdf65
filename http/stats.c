#include "http/stats.h"

#include <stddef.h>

const double http_hist_bounds_ms[HTTP_HIST_BUCKETS] = {1,   2.5, 5,    10,   25,    50,
                                                       100, 250, 1000, 2500, 10000, 60000};

const struct http_term_name http_terms[HT_COUNT] = {
    [HT_NONE] = {NULL, NULL},
    [HT_BAD_REQUEST] = {"bad_request", NULL},
    [HT_BAD_REQUEST_BODY] = {"bad_request_body", NULL},
    [HT_NOT_IMPLEMENTED] = {"not_implemented", NULL},
    [HT_LIMIT_EXCEEDED] = {"limit_exceeded", NULL},
    [HT_HEADER_TIMEOUT] = {"header_timeout", NULL},
    [HT_IDLE_TIMEOUT] = {"idle_timeout", NULL},
    [HT_CLIENT_TIMEOUT] = {"client_timeout", NULL},
    [HT_CLIENT_CLOSED] = {"client_closed", NULL},
    [HT_EARLY_RESPONSE] = {"early_response", NULL},
    [HT_OUT_OF_MEMORY] = {"out_of_memory", NULL},
    [HT_SHUTDOWN] = {"shutdown", NULL},
    [HT_RATE_LIMITED] = {"rate_limited", NULL},
    [HT_AUTH_BUSY] = {"auth_busy", NULL},
    [HT_SUPERSEDED] = {"superseded", NULL},
    [HT_UPSTREAM_UNAVAILABLE] = {"upstream_unavailable", "no_address"},
    [HT_UPSTREAM_CONNECT_REFUSED] = {"upstream_connect_failed", "connect_refused"},
    [HT_UPSTREAM_NO_SOCKET] = {"upstream_connect_failed", "no_socket"},
    [HT_UPSTREAM_CONNECT_TIMEOUT] = {"upstream_connect_timeout", "connect_timeout"},
    [HT_UPSTREAM_TIMEOUT] = {"upstream_timeout", "response_timeout"},
    [HT_UPSTREAM_RESET] = {"upstream_reset", "reset"},
    [HT_UPSTREAM_BAD_RESPONSE] = {"upstream_bad_response", "bad_response"},
};

const char *http_term_str(enum http_term t)
{
    return (unsigned)t < HT_COUNT ? http_terms[t].log : "?";
}

void http_stats_observe(struct http_stats *s, uint64_t duration_us)
{
    unsigned i = 0;

    while (i < HTTP_HIST_BUCKETS && (double)duration_us > http_hist_bounds_ms[i] * 1000.0)
        i++;
    STAT_INC(s, hist[i]);
    STAT_ADD(s, hist_sum_us, duration_us);
}
