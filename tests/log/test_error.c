/*
 * Tests for log/error.c. Criterion runs each test in its own process, so a
 * test may redirect fd 1 and 2 to pipes and set the environment freely.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "cfg/cfg.h"
#include "log/error.h"

static int err_pipe[2] = {-1, -1};
static int out_pipe[2] = {-1, -1};
static char got[1 << 16];

/* Send fd 2 and fd 1 to pipes we can read without blocking. */
static void capture(void)
{
    cr_assert_eq(pipe2(err_pipe, O_NONBLOCK), 0);
    cr_assert_eq(pipe2(out_pipe, O_NONBLOCK), 0);
    cr_assert_eq(dup2(err_pipe[1], STDERR_FILENO), STDERR_FILENO);
    cr_assert_eq(dup2(out_pipe[1], STDOUT_FILENO), STDOUT_FILENO);
}

static size_t drain(int fd)
{
    size_t n = 0;
    ssize_t r;

    while (n < sizeof(got) - 1 && (r = read(fd, got + n, sizeof(got) - 1 - n)) > 0)
        n += (size_t)r;
    got[n] = '\0';
    return n;
}

/* Everything written to stderr since the last call, NUL-terminated in got. */
static size_t err_read(void)
{
    return drain(err_pipe[0]);
}

static void no_stdout(void)
{
    cr_assert_eq(drain(out_pipe[0]), 0, "stdout got: %s", got);
}

static size_t count_lines(const char *s)
{
    size_t n = 0;

    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void init_level(enum cfg_log_level level)
{
    unsetenv("SECTION_OPS_LOG_LEVEL");
    log_err_init(level);
}

static void assert_match(const char *re, const char *s)
{
    regex_t rx;

    cr_assert_eq(regcomp(&rx, re, REG_EXTENDED | REG_NOSUB), 0);
    cr_assert_eq(regexec(&rx, s, 0, NULL, 0), 0, "'%s' does not match %s", s, re);
    regfree(&rx);
}

Test(log_error, line_format_main)
{
    capture();
    init_level(CFG_LL_INFO);
    log_error("hello %d %s", 42, "world");
    err_read();
    assert_match("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
                 "error \\[main\\] hello 42 world\n$",
                 got);
    no_stdout();
}

Test(log_error, line_format_worker_and_levels)
{
    capture();
    init_level(CFG_LL_INFO);
    log_err_set_worker(3);
    log_warn("w");
    err_read();
    assert_match("Z warn \\[w3\\] w\n$", got);
    log_info("i");
    err_read();
    assert_match("Z info \\[w3\\] i\n$", got);
    log_err_set_worker(-1);
    log_info("back");
    err_read();
    assert_match("Z info \\[main\\] back\n$", got);
    no_stdout();
}

Test(log_error, time_is_now_utc)
{
    struct tm tm;
    time_t now;
    char want[32];

    capture();
    init_level(CFG_LL_INFO);
    now = time(NULL);
    log_error("t");
    err_read();
    gmtime_r(&now, &tm);
    strftime(want, sizeof(want), "%Y-%m-%dT%H:%M", &tm);
    /* Same minute, unless the test straddled one. */
    if (tm.tm_sec < 59)
        cr_assert_eq(strncmp(got, want, strlen(want)), 0, "%s vs %s", got, want);
}

static int evaluated;

static int side_effect(void)
{
    evaluated = 1;
    return 1;
}

Test(log_error, level_filter)
{
    capture();
    init_level(CFG_LL_WARN);
    cr_assert(log_err_enabled(CFG_LL_ERROR));
    cr_assert(log_err_enabled(CFG_LL_WARN));
    cr_assert_not(log_err_enabled(CFG_LL_INFO));
    cr_assert_not(log_err_enabled(CFG_LL_DEBUG));
    log_info("no");
    log_debug("no %d", side_effect());
    cr_assert_not(evaluated, "log_debug evaluated its arguments while disabled");
    cr_assert_eq(err_read(), 0);
    log_error("yes e");
    log_warn("yes w");
    err_read();
    cr_assert_eq(count_lines(got), 2);
    init_level(CFG_LL_DEBUG);
    log_debug("dbg %d", side_effect());
    cr_assert(evaluated);
    err_read();
    assert_match("Z debug \\[main\\] dbg 1\n$", got);
    no_stdout();
}

Test(log_error, env_overrides_config)
{
    capture();
    setenv("SECTION_OPS_LOG_LEVEL", "DeBuG", 1);
    log_err_init(CFG_LL_ERROR);
    cr_assert(log_err_enabled(CFG_LL_DEBUG));
    setenv("SECTION_OPS_LOG_LEVEL", "error", 1);
    log_err_init(CFG_LL_DEBUG);
    cr_assert_not(log_err_enabled(CFG_LL_WARN));
    setenv("SECTION_OPS_LOG_LEVEL", "Warn", 1);
    log_err_init(CFG_LL_ERROR);
    cr_assert(log_err_enabled(CFG_LL_WARN));
    cr_assert_not(log_err_enabled(CFG_LL_INFO));
    setenv("SECTION_OPS_LOG_LEVEL", "INFO", 1);
    log_err_init(CFG_LL_ERROR);
    cr_assert(log_err_enabled(CFG_LL_INFO));
    cr_assert_not(log_err_enabled(CFG_LL_DEBUG));
    cr_assert_eq(err_read(), 0, "no warning for a valid level: %s", got);
}

Test(log_error, env_unknown_keeps_config_and_warns_once)
{
    capture();
    setenv("SECTION_OPS_LOG_LEVEL", "verbose\n", 1);
    /* Even at level error the operator learns the variable was ignored. */
    log_err_init(CFG_LL_ERROR);
    cr_assert(log_err_enabled(CFG_LL_ERROR));
    cr_assert_not(log_err_enabled(CFG_LL_WARN));
    err_read();
    cr_assert_eq(count_lines(got), 1, "%s", got);
    assert_match("Z warn \\[main\\] SECTION_OPS_LOG_LEVEL=\"verbose\\\\n\" is not one of "
                 "error, warn, info, debug; keeping level error\n$",
                 got);
    no_stdout();
}

Test(log_error, env_empty_is_unset)
{
    capture();
    setenv("SECTION_OPS_LOG_LEVEL", "", 1);
    log_err_init(CFG_LL_INFO);
    cr_assert(log_err_enabled(CFG_LL_INFO));
    cr_assert_not(log_err_enabled(CFG_LL_DEBUG));
    cr_assert_eq(err_read(), 0);
}

Test(log_error, newlines_escaped_one_line)
{
    capture();
    init_level(CFG_LL_INFO);
    log_error("a\nb\r\nc %s", "x\ny\x01z\tt");
    err_read();
    cr_assert_eq(count_lines(got), 1);
    assert_match("\\] a\\\\nb\\\\r\\\\nc x\\\\ny\\\\x01z\tt\n$", got);
}

static size_t prefix_len(void)
{
    /* "2026-11-27T00:34:11.123Z error [main] " */
    return 24 + 1 + strlen("error") + 1 + strlen("[main]") + 1;
}

Test(log_error, long_message_truncated)
{
    char *big = malloc(5000);
    size_t n;

    memset(big, 'x', 4999);
    big[4999] = '\0';
    capture();
    init_level(CFG_LL_INFO);
    log_error("%s", big);
    n = err_read();
    cr_assert_eq(n, 1024);
    cr_assert_eq(count_lines(got), 1);
    cr_assert_eq(strcmp(got + n - 4, "...\n"), 0);
    free(big);
}

Test(log_error, message_exactly_fitting_not_cut)
{
    size_t room = 1024 - 1 - prefix_len();
    char *m = malloc(room + 2);
    size_t n;

    memset(m, 'y', room + 1);
    m[room] = '\0';
    capture();
    init_level(CFG_LL_INFO);
    log_error("%s", m);
    n = err_read();
    cr_assert_eq(n, 1024);
    cr_assert_eq(got[n - 2], 'y', "no ... when it fits");

    m[room] = 'y';
    m[room + 1] = '\0';
    log_error("%.5000s", m); /* another call site: "%s" is rate limited now */
    n = err_read();
    cr_assert_eq(n, 1024);
    cr_assert_eq(strcmp(got + n - 4, "...\n"), 0);
    free(m);
}

/* Tests below pass formats that are not literals, to have many call sites. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
#pragma GCC diagnostic ignored "-Wformat-security"

/* Escapes are not cut in half, and neither are UTF-8 sequences. */
Test(log_error, truncation_keeps_sequences_whole)
{
    /* One call site each: the same one twice within a second is suppressed. */
    static const char *const fmts[] = {"%s",      "%.4000s", "%.4001s", "%.4002s",
                                       "%.4003s", "%.4004s", "%.4005s", "%.4006s"};
    char m[3000];
    size_t n, i;

    capture();
    init_level(CFG_LL_INFO);
    for (int off = 0; off < 4; off++) {
        for (i = 0; i < (size_t)off; i++)
            m[i] = 'a';
        for (; i + 4 < sizeof(m); i += 4)
            memcpy(m + i, "\xf0\x9f\x98\x80", 4);
        m[i] = '\0';
        log_msg(CFG_LL_ERROR, fmts[2 * off], m);
        n = err_read();
        cr_assert_eq(strcmp(got + n - 4, "...\n"), 0);
        /* What is before "..." ends on a whole emoji. */
        cr_assert_eq(memcmp(got + n - 8, "\xf0\x9f\x98\x80", 4), 0, "off %d", off);

        for (i = 0; i < (size_t)off; i++)
            m[i] = 'a';
        for (; i + 1 < sizeof(m); i++)
            m[i] = '\n';
        m[i] = '\0';
        log_msg(CFG_LL_ERROR, fmts[2 * off + 1], m);
        n = err_read();
        cr_assert_eq(count_lines(got), 1);
        cr_assert_eq(memcmp(got + n - 6, "\\n...\n", 6), 0, "%s", got + n - 10);
    }
}

Test(log_error, rate_limited_per_call_site)
{
    size_t n;

    capture();
    init_level(CFG_LL_INFO);
    for (int i = 0; i < 100; i++)
        log_error("same site %d", i);
    log_error("other site");
    err_read();
    cr_assert_eq(count_lines(got), 2, "%s", got);
    assert_match("same site 0\n.*other site\n$", got);

    usleep(1100 * 1000);
    log_error("same site %d", 100);
    log_error("same site %d", 101);
    n = err_read();
    cr_assert_eq(count_lines(got), 1, "%s", got);
    assert_match("\\] same site 100 \\(99 similar lines suppressed\\)\n$", got);
    cr_assert_lt(n, 1024);

    usleep(1100 * 1000);
    log_error("same site %d", 102);
    err_read();
    assert_match("\\] same site 102 \\(1 similar lines suppressed\\)\n$", got);

    /* Nothing suppressed since: no suffix. */
    usleep(1100 * 1000);
    log_error("same site %d", 103);
    err_read();
    assert_match("\\] same site 103\n$", got);
    no_stdout();
}

/* Lines hidden by the level do not count as suppressed. */
Test(log_error, filtered_lines_not_counted)
{
    capture();
    init_level(CFG_LL_WARN);
    for (int i = 0; i < 10; i++)
        log_info("hidden");
    cr_assert_eq(err_read(), 0);
}

Test(log_error, suffix_kept_when_message_truncated)
{
    char *big = malloc(3000);
    size_t n;

    memset(big, 'z', 2999);
    big[2999] = '\0';
    capture();
    init_level(CFG_LL_INFO);
    log_error("%s", big);
    log_error("%s", big);
    usleep(1100 * 1000);
    log_error("%s", big);
    n = err_read();
    cr_assert_eq(count_lines(got), 2);
    cr_assert_eq(strcmp(got + n - strlen("... (1 similar lines suppressed)\n"),
                        "... (1 similar lines suppressed)\n"),
                 0, "%s", got + n - 60);
    free(big);
}

static void *other_thread(void *arg)
{
    log_err_set_worker(7);
    log_error("per thread");
    return arg;
}

Test(log_error, rate_limit_is_per_thread)
{
    pthread_t t;

    capture();
    init_level(CFG_LL_INFO);
    log_error("per thread");
    log_error("per thread");
    cr_assert_eq(pthread_create(&t, NULL, other_thread, NULL), 0);
    pthread_join(t, NULL);
    err_read();
    cr_assert_eq(count_lines(got), 2, "%s", got);
    assert_match("\\[main\\] per thread\n.*\\[w7\\] per thread\n$", got);
}

/* More call sites than table slots: every one still gets its first line out. */
Test(log_error, many_call_sites)
{
    enum { SITES = 300 };
    char(*fmts)[32] = malloc(SITES * sizeof(*fmts));
    size_t total = 0;

    capture();
    init_level(CFG_LL_INFO);
    for (int i = 0; i < SITES; i++) {
        snprintf(fmts[i], sizeof(fmts[i]), "site %d", i);
        log_error(fmts[i]);
        total += count_lines((err_read(), got));
    }
    cr_assert_eq(total, SITES);
    /* Repeats of recent sites are still limited. */
    log_error(fmts[SITES - 1]);
    cr_assert_eq(err_read(), 0);
    free(fmts);
}

#pragma GCC diagnostic pop

Test(log_error, errno_preserved)
{
    capture();
    init_level(CFG_LL_INFO);
    errno = ECONNRESET;
    log_error("failed: %m");
    cr_assert_eq(errno, ECONNRESET);
    err_read();
    assert_match("failed: Connection reset by peer\n$", got);
    errno = EPIPE;
    log_debug("hidden");
    cr_assert_eq(errno, EPIPE);
}

Test(log_error, stdout_untouched)
{
    capture();
    setenv("SECTION_OPS_LOG_LEVEL", "bogus", 1);
    log_err_init(CFG_LL_DEBUG);
    log_error("e");
    log_warn("w");
    log_info("i");
    log_debug("d");
    no_stdout();
    cr_assert_gt(err_read(), 0);
}
