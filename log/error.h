/*
 * Diagnostics on stderr (C6): one line each, "TIME LEVEL [wN] message".
 * Levels error, warn, info, debug; the level is set from proxy.json and
 * overridden by SECTION_OPS_LOG_LEVEL. Identical messages (same format
 * string, same call site) repeated within a second are suppressed and the
 * count of suppressed lines is reported with the next one that passes.
 * Never writes to stdout. Thread-safe: each line is one write(2).
 */
#ifndef RINGPROXY_LOG_ERROR_H
#define RINGPROXY_LOG_ERROR_H

#include "cfg/cfg.h"

/* Set the level; an SECTION_OPS_LOG_LEVEL in the environment wins. */
void log_err_init(enum cfg_log_level level);

/* The worker number printed on lines from this thread; LOG_ERR_MAIN or LOG_ERR_RESOLVER
 * for the other threads. */
#define LOG_ERR_MAIN (-1)
#define LOG_ERR_RESOLVER (-2)
void log_err_set_worker(int worker);

int log_err_enabled(enum cfg_log_level level);

void log_msg(enum cfg_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * The same without the rate limit, for lines that are already one per change
 * of state (the resolver's answers): each of them must be seen.
 */
void log_event(enum cfg_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(CFG_LL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(CFG_LL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(CFG_LL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_err_enabled(CFG_LL_DEBUG))                                                         \
            log_msg(CFG_LL_DEBUG, __VA_ARGS__);                                                    \
    } while (0)

#endif
