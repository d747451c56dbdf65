#include "http/stats.h"

const double http_hist_bounds_ms[HTTP_HIST_BUCKETS] = {1,   2.5, 5,    10,   25,    50,
                                                       100, 250, 1000, 2500, 10000, 60000};

static const char *const fail_names[HF_COUNT] = {
    [HF_CONNECT_REFUSED] = "connect_refused",
    [HF_CONNECT_TIMEOUT] = "connect_timeout",
    [HF_RESPONSE_TIMEOUT] = "response_timeout",
    [HF_RESET] = "reset",
    [HF_BAD_RESPONSE] = "bad_response",
    [HF_NO_ADDRESS] = "no_address",
    [HF_SOCKET] = "no_socket",
};

const char *http_fail_str(enum http_fail f)
{
    return (unsigned)f < HF_COUNT ? fail_names[f] : "?";
}

void http_stats_observe(struct http_stats *s, uint64_t duration_us)
{
    unsigned i = 0;

    while (i < HTTP_HIST_BUCKETS && (double)duration_us > http_hist_bounds_ms[i] * 1000.0)
        i++;
    STAT_INC(s, hist[i]);
    STAT_ADD(s, hist_sum_us, duration_us);
}
