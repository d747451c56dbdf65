/*
 * Diagnostics on stderr (C6). Each line is formatted into a stack buffer and
 * written with a single write(2): a write to a pipe of at most PIPE_BUF bytes
 * is atomic, so lines from different threads never interleave, without any
 * lock. stdout is never touched: it carries access-log lines only.
 *
 * Rate limiting is per call site, keyed by the format string's address, and
 * per thread: each thread keeps a small open-addressing table of recent
 * formats, so there is no shared state beyond the level. (A compiler may
 * merge identical format literals, which then share one key; that is fine,
 * they are the same message.)
 */
#include "log/error.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cfg/cfg.h"

/* Within PIPE_BUF (4096 on Linux) so that one line is one atomic write. */
#define LOG_ERR_LINE_MAX 1024

/* Per-thread rate-limit table: a power of 2, probed LOG_ERR_PROBE slots deep. */
#define LOG_ERR_SLOTS 64
#define LOG_ERR_PROBE 8

/* At most one line per call site per thread per second. */
#define LOG_ERR_INTERVAL_NS 1000000000LL

struct log_err_slot {
    const char *fmt; /* NULL = free */
    int64_t last_ns; /* CLOCK_MONOTONIC when its last line was written */
    uint64_t suppressed;
};

/* Set once by main before workers start; atomic so readers need no lock. */
static atomic_int log_err_level = CFG_LL_INFO;

static _Thread_local int log_err_worker = -1;
static _Thread_local struct log_err_slot log_err_slots[LOG_ERR_SLOTS];

static const char *const log_err_names[CFG_LL_COUNT] = {
    [CFG_LL_ERROR] = "error",
    [CFG_LL_WARN] = "warn",
    [CFG_LL_INFO] = "info",
    [CFG_LL_DEBUG] = "debug",
};

static int64_t log_err_now_ns(void)
{
    struct timespec ts;

    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/*
 * Whether a line from call site fmt may be written now; when it may, the
 * number of lines suppressed since the last one goes to *ret_suppressed.
 * When all probed slots are taken, the least recently written one is reused
 * (its pending suppressed count is lost): it takes more than LOG_ERR_SLOTS
 * distinct messages per second on one thread for that to happen.
 */
static int log_err_pass(const char *fmt, uint64_t *ret_suppressed)
{
    uint64_t h = (uint64_t)(uintptr_t)fmt * 0x9e3779b97f4a7c15ULL;
    size_t first = (size_t)(h >> 58) & (LOG_ERR_SLOTS - 1);
    struct log_err_slot *victim = NULL;
    int64_t now = log_err_now_ns();

    for (size_t i = 0; i < LOG_ERR_PROBE; i++) {
        struct log_err_slot *s = &log_err_slots[(first + i) & (LOG_ERR_SLOTS - 1)];

        if (s->fmt == fmt) {
            if (now - s->last_ns < LOG_ERR_INTERVAL_NS) {
                s->suppressed++;
                return 0;
            }
            *ret_suppressed = s->suppressed;
            s->suppressed = 0;
            s->last_ns = now;
            return 1;
        }
        if (!s->fmt) {
            victim = s;
            break;
        }
        if (!victim || s->last_ns < victim->last_ns)
            victim = s;
    }
    victim->fmt = fmt;
    victim->last_ns = now;
    victim->suppressed = 0;
    *ret_suppressed = 0;
    return 1;
}

/* Drop a UTF-8 sequence cut at the end of line[0..pos). */
static size_t log_err_trim_utf8(const char *line, size_t start, size_t pos)
{
    size_t i = 0;

    while (i < 3 && pos - i > start && ((unsigned char)line[pos - 1 - i] & 0xc0) == 0x80)
        i++;
    if (pos - i > start) {
        unsigned char lead = (unsigned char)line[pos - 1 - i];
        size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;

        if (need > 1 && need > i + 1)
            return pos - i - 1;
    }
    return pos;
}

/*
 * Copy msg into line[pos..lim) so that it stays one line: CR and LF become
 * \r and \n, other control bytes \xHH. An escape is copied whole or not at
 * all. Returns the new position; *ret_done tells whether all of msg fit.
 */
static size_t log_err_copy(char *line, size_t pos, size_t lim, const char **msg, int *ret_done)
{
    static const char hex[] = "0123456789abcdef";
    const char *s = *msg;

    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char e[4];
        size_t n = 0;

        if (c == '\n') {
            e[n++] = '\\';
            e[n++] = 'n';
        } else if (c == '\r') {
            e[n++] = '\\';
            e[n++] = 'r';
        } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
            e[n++] = '\\';
            e[n++] = 'x';
            e[n++] = hex[c >> 4];
            e[n++] = hex[c & 15];
        } else {
            e[n++] = (char)c;
        }
        if (lim - pos < n)
            break;
        memcpy(line + pos, e, n);
        pos += n;
    }
    *msg = s;
    *ret_done = *s == '\0';
    return pos;
}

static void log_err_vwrite(enum cfg_log_level level, uint64_t suppressed, const char *fmt,
                           va_list ap) __attribute__((format(printf, 3, 0)));

static void log_err_vwrite(enum cfg_log_level level, uint64_t suppressed, const char *fmt,
                           va_list ap)
{
    char line[LOG_ERR_LINE_MAX];
    char msg[LOG_ERR_LINE_MAX];
    char suffix[64];
    char who[16];
    size_t pos, lim, start, cut, suffixlen = 0;
    const char *m = msg;
    struct timespec ts;
    struct tm tm;
    int n, done, cut_msg;
    ssize_t w;

    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    if (n < 0) {
        /* Only a bad format or encoding does this; say so rather than nothing. */
        (void)snprintf(msg, sizeof(msg), "(bad log format: %.200s)", fmt);
        n = 0;
    }
    /* vsnprintf() having cut msg means its end is missing: show "...". */
    cut_msg = (size_t)n >= sizeof(msg);

    (void)clock_gettime(CLOCK_REALTIME, &ts);
    if (!gmtime_r(&ts.tv_sec, &tm))
        memset(&tm, 0, sizeof(tm));
    if (log_err_worker >= 0)
        (void)snprintf(who, sizeof(who), "w%d", log_err_worker);
    else if (log_err_worker == LOG_ERR_RESOLVER)
        memcpy(who, "resolver", sizeof("resolver"));
    else
        memcpy(who, "main", sizeof("main"));
    n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s [%s] ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 ts.tv_nsec / 1000000, (unsigned)level < CFG_LL_COUNT ? log_err_names[level] : "?",
                 who);
    if (n < 0 || (size_t)n >= sizeof(line) / 2)
        return;
    start = (size_t)n;

    if (suppressed > 0)
        suffixlen = (size_t)snprintf(suffix, sizeof(suffix), " (%llu similar lines suppressed)",
                                     (unsigned long long)suppressed);
    /* Room for the message: all but the suffix and the '\n'. */
    lim = sizeof(line) - suffixlen - 1;

    /*
     * First copy with room kept for "...", then try to fit the rest without
     * it; only when that fails is the message cut there and "..." appended.
     */
    pos = log_err_copy(line, start, lim - 3, &m, &done);
    cut = pos;
    if (!done)
        pos = log_err_copy(line, pos, lim, &m, &done);
    if (!done || cut_msg) {
        pos = log_err_trim_utf8(line, start, cut);
        memcpy(line + pos, "...", 3);
        pos += 3;
    }
    memcpy(line + pos, suffix, suffixlen);
    pos += suffixlen;
    line[pos++] = '\n';

    do
        w = write(STDERR_FILENO, line, pos);
    while (w < 0 && errno == EINTR);
}

static void log_err_write(enum cfg_log_level level, uint64_t suppressed, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void log_err_write(enum cfg_log_level level, uint64_t suppressed, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_err_vwrite(level, suppressed, fmt, ap);
    va_end(ap);
}

void log_err_init(enum cfg_log_level level)
{
    const char *env = getenv("SECTION_OPS_LOG_LEVEL");
    int saved = errno;
    int lvl = (unsigned)level < CFG_LL_COUNT ? (int)level : CFG_LL_INFO;
    int bad = 0;

    /* An empty variable counts as unset, as with most shell-set options. */
    if (env && *env) {
        bad = 1;
        for (int i = 0; i < CFG_LL_COUNT; i++) {
            if (strcasecmp(env, log_err_names[i]) == 0) {
                lvl = i;
                bad = 0;
                break;
            }
        }
    }
    atomic_store_explicit(&log_err_level, lvl, memory_order_relaxed);
    /*
     * Written whatever the level: the operator asked for a different level
     * and must learn that it was not applied, even when warnings are off.
     */
    if (bad)
        log_err_write(CFG_LL_WARN, 0,
                      "SECTION_OPS_LOG_LEVEL=\"%.64s\" is not one of error, warn, info, debug; "
                      "keeping level %s",
                      env, log_err_names[lvl]);
    errno = saved;
}

void log_err_set_worker(int worker)
{
    log_err_worker = worker < 0 && worker != LOG_ERR_RESOLVER ? LOG_ERR_MAIN : worker;
}

int log_err_enabled(enum cfg_log_level level)
{
    return (int)level <= atomic_load_explicit(&log_err_level, memory_order_relaxed);
}

void log_msg(enum cfg_log_level level, const char *fmt, ...)
{
    /* Callers log and then look at errno (and %m reads it): keep it. */
    int saved = errno;
    uint64_t suppressed = 0;
    va_list ap;

    if (log_err_enabled(level) && log_err_pass(fmt, &suppressed)) {
        errno = saved;
        va_start(ap, fmt);
        log_err_vwrite(level, suppressed, fmt, ap);
        va_end(ap);
    }
    errno = saved;
}

void log_event(enum cfg_log_level level, const char *fmt, ...)
{
    int saved = errno;
    va_list ap;

    if (log_err_enabled(level)) {
        va_start(ap, fmt);
        log_err_vwrite(level, 0, fmt, ap);
        va_end(ap);
    }
    errno = saved;
}
