/*
 * Tests for log/access.c. Every JSON line produced here is also parsed with
 * jansson, which rejects invalid UTF-8 and bad escapes: passing that is the
 * proof that a line is valid JSON, not just that it looks as expected.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "cfg/cfg.h"
#include "core/str.h"
#include "log/access.h"

#define S(lit) ((struct core_str){(lit), sizeof(lit) - 1})
#define ABSENT ((struct core_str){NULL, 0})

/* \u0000 is valid JSON (RFC 8259 7) but jansson wants to be told. */
#define JFLAGS (JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES)

static char line[16384];

/* 2026-11-27T00:34:11.123Z */
static const struct timespec t0 = {1795739651, 123456789};

static struct log_access_rec rec_full(void)
{
    struct log_access_rec r = {
        .start = t0,
        .duration_us = 12345678,
        .method = S("GET"),
        .target = S("/a/b?c=d"),
        .version = S("HTTP/1.1"),
        .host = S("www.example.com"),
        .referrer = S("https://ref.example/"),
        .useragent = S("curl/8.0"),
        .x_forwarded_proto = S("https"),
        .section_io_id = S("abc-123"),
        .section_io_tag = S("tag1"),
        .content_type = S("text/html; charset=utf-8"),
        .client_ip = S("203.0.113.7"),
        .upstream_addr = S("127.0.0.1:80"),
        .status = 200,
        .upstream_status = 201,
        .bytes_sent = 1234,
        .response_body_bytes = 1000,
        .request_bytes = 456,
        .upstream_bytes = 1300,
        .upstream_connect_us = 1234,
        .upstream_header_us = 5,
        .upstream_response_us = 1234567,
        .upstream_reused = 1,
        .upstream_attempts = 2,
        .termination = "upstream_timeout",
        .rule = "admin-lock",
    };
    return r;
}

static struct log_access_rec rec_absent(void)
{
    struct log_access_rec r = {
        .start = {0, 0},
        .duration_us = -1,
        .status = 0,
        .upstream_status = -1,
        .bytes_sent = -1,
        .response_body_bytes = -1,
        .request_bytes = -1,
        .upstream_bytes = -1,
        .upstream_connect_us = -1,
        .upstream_header_us = -1,
        .upstream_response_us = -1,
        .upstream_reused = -1,
        .upstream_attempts = -1,
        .termination = NULL,
    };
    return r;
}

static struct cfg_access_log cfg_fields(enum cfg_log_format format, const enum cfg_field *f,
                                        size_t n)
{
    struct cfg_access_log c = {.format = format, .buffer_bytes = 1 << 20};

    if (n > 0)
        memcpy(c.fields, f, n * sizeof(*f));
    c.nfields = n;
    return c;
}

static struct cfg_access_log cfg_all(enum cfg_log_format format)
{
    struct cfg_access_log c = {.format = format, .buffer_bytes = 1 << 20};

    for (int i = 0; i < CFG_F_COUNT; i++)
        c.fields[i] = (enum cfg_field)i;
    c.nfields = CFG_F_COUNT;
    return c;
}

/* Format r with c into the static line; returns its length. */
static size_t fmt_line(const struct cfg_access_log *c, const struct log_access_rec *r)
{
    struct log_fmt *f = log_fmt_new(c);
    long n;

    cr_assert_not_null(f);
    n = log_fmt_line(f, r, line, sizeof(line));
    log_fmt_free(f);
    cr_assert_gt(n, 0);
    cr_assert_eq(line[n - 1], '\n');
    cr_assert_eq(memchr(line, '\n', (size_t)n), line + n - 1, "exactly one newline");
    return (size_t)n;
}

static json_t *parse(const char *p, size_t n)
{
    json_error_t err;
    json_t *j = json_loadb(p, n, JFLAGS, &err);

    cr_assert_not_null(j, "invalid JSON (%s at %d): %.*s", err.text, err.position, (int)n, p);
    cr_assert(json_is_object(j));
    return j;
}

/* Format one field alone; check the line is exactly prefix + want + suffix. */
static void check_one(enum cfg_log_format format, enum cfg_field fld,
                      const struct log_access_rec *r, const char *want)
{
    struct cfg_access_log c = cfg_fields(format, &fld, 1);
    char expect[4096];
    size_t n = fmt_line(&c, r);

    if (format == CFG_LOG_JSON)
        snprintf(expect, sizeof(expect), "{\"%s\":%s}\n", cfg_field_name(fld), want);
    else
        snprintf(expect, sizeof(expect), "%s:%s\n", cfg_field_name(fld), want);
    cr_assert_eq(n, strlen(expect), "%s: got %.*s want %s", cfg_field_name(fld), (int)n, line,
                 expect);
    cr_assert_arr_eq(line, expect, n, "%s: got %.*s want %s", cfg_field_name(fld), (int)n, line,
                     expect);
    if (format == CFG_LOG_JSON)
        json_decref(parse(line, n));
}

struct field_case {
    enum cfg_field f;
    const char *json_full;
    const char *ltsv_full;
    const char *json_absent;
    const char *ltsv_absent;
};

static const struct field_case field_cases[] = {
    {CFG_F_TIME, "\"2026-11-27T00:34:11.123Z\"", "2026-11-27T00:34:11.123Z",
     "\"1970-01-01T00:00:00.000Z\"", "1970-01-01T00:00:00.000Z"},
    {CFG_F_TIME_TAKEN_MS, "12345", "12345", "\"-\"", "-"},
    {CFG_F_REQUEST, "\"GET /a/b?c=d HTTP/1.1\"", "GET /a/b?c=d HTTP/1.1", "\"-\"", "-"},
    {CFG_F_METHOD, "\"GET\"", "GET", "\"-\"", "-"},
    {CFG_F_PATH, "\"/a/b?c=d\"", "/a/b?c=d", "\"-\"", "-"},
    {CFG_F_STATUS, "200", "200", "\"-\"", "-"},
    {CFG_F_BYTES, "1234", "1234", "\"-\"", "-"},
    {CFG_F_RESPONSE_BODY_BYTES, "1000", "1000", "\"-\"", "-"},
    {CFG_F_CONTENT_TYPE, "\"text/html; charset=utf-8\"", "text/html; charset=utf-8", "\"-\"", "-"},
    {CFG_F_HOSTNAME, "\"www.example.com\"", "www.example.com", "\"-\"", "-"},
    {CFG_F_REFERRER, "\"https://ref.example/\"", "https://ref.example/", "\"-\"", "-"},
    {CFG_F_USERAGENT, "\"curl/8.0\"", "curl/8.0", "\"-\"", "-"},
    {CFG_F_CLIENT_IP, "\"203.0.113.7\"", "203.0.113.7", "\"-\"", "-"},
    {CFG_F_HTTP_X_FORWARDED_PROTO, "\"https\"", "https", "\"-\"", "-"},
    {CFG_F_UPSTREAM_ADDR, "\"127.0.0.1:80\"", "127.0.0.1:80", "\"-\"", "-"},
    {CFG_F_UPSTREAM_STATUS, "201", "201", "\"-\"", "-"},
    {CFG_F_SECTION_IO_ID, "\"abc-123\"", "abc-123", "\"-\"", "-"},
    {CFG_F_SECTION_IO_TAG, "\"tag1\"", "tag1", "\"-\"", "-"},
    {CFG_F_REQUEST_BYTES, "456", "456", "\"-\"", "-"},
    {CFG_F_UPSTREAM_BYTES, "1300", "1300", "\"-\"", "-"},
    {CFG_F_UPSTREAM_CONNECT_MS, "1.234", "1.234", "\"-\"", "-"},
    {CFG_F_UPSTREAM_HEADER_MS, "0.005", "0.005", "\"-\"", "-"},
    {CFG_F_UPSTREAM_RESPONSE_MS, "1234.567", "1234.567", "\"-\"", "-"},
    {CFG_F_UPSTREAM_REUSED, "true", "true", "\"-\"", "-"},
    {CFG_F_UPSTREAM_ATTEMPTS, "2", "2", "\"-\"", "-"},
    {CFG_F_TERMINATION, "\"upstream_timeout\"", "upstream_timeout", "\"-\"", "-"},
    {CFG_F_RULE, "\"admin-lock\"", "admin-lock", "\"-\"", "-"},
};

Test(log_access, every_field_is_covered)
{
    cr_assert_eq(sizeof(field_cases) / sizeof(field_cases[0]), CFG_F_COUNT);
    for (int i = 0; i < CFG_F_COUNT; i++)
        cr_assert_eq(field_cases[i].f, (enum cfg_field)i);
}

Test(log_access, json_full_each_field)
{
    struct log_access_rec r = rec_full();

    for (size_t i = 0; i < CFG_F_COUNT; i++)
        check_one(CFG_LOG_JSON, field_cases[i].f, &r, field_cases[i].json_full);
}

Test(log_access, ltsv_full_each_field)
{
    struct log_access_rec r = rec_full();

    for (size_t i = 0; i < CFG_F_COUNT; i++)
        check_one(CFG_LOG_LTSV, field_cases[i].f, &r, field_cases[i].ltsv_full);
}

Test(log_access, json_absent_each_field)
{
    struct log_access_rec r = rec_absent();

    for (size_t i = 0; i < CFG_F_COUNT; i++)
        check_one(CFG_LOG_JSON, field_cases[i].f, &r, field_cases[i].json_absent);
}

Test(log_access, ltsv_absent_each_field)
{
    struct log_access_rec r = rec_absent();

    for (size_t i = 0; i < CFG_F_COUNT; i++)
        check_one(CFG_LOG_LTSV, field_cases[i].f, &r, field_cases[i].ltsv_absent);
}

Test(log_access, json_full_line_types)
{
    struct cfg_access_log c = cfg_all(CFG_LOG_JSON);
    struct log_access_rec r = rec_full();
    size_t n = fmt_line(&c, &r);
    json_t *j = parse(line, n);

    cr_assert_eq(json_object_size(j), CFG_F_COUNT);
    cr_assert(json_is_integer(json_object_get(j, "status")));
    cr_assert_eq(json_integer_value(json_object_get(j, "status")), 200);
    cr_assert(json_is_integer(json_object_get(j, "bytes")));
    cr_assert(json_is_integer(json_object_get(j, "time_taken_ms")));
    cr_assert(json_is_real(json_object_get(j, "upstream_connect_ms")));
    cr_assert_float_eq(json_real_value(json_object_get(j, "upstream_response_ms")), 1234.567, 1e-9);
    cr_assert(json_is_true(json_object_get(j, "upstream_reused")));
    cr_assert_str_eq(json_string_value(json_object_get(j, "hostname")), "www.example.com");
    cr_assert_eq(strncmp(line, "{\"time\":\"2026-11-27T00:34:11.123Z\",\"time_taken_ms\":12345,",
                         strlen("{\"time\":\"2026-11-27T00:34:11.123Z\",\"time_taken_ms\":12345,")),
                 0);
    json_decref(j);
}

Test(log_access, json_absent_line_all_dashes)
{
    struct cfg_access_log c = cfg_all(CFG_LOG_JSON);
    struct log_access_rec r = rec_absent();
    size_t n = fmt_line(&c, &r);
    json_t *j = parse(line, n);
    const char *k;
    json_t *v;

    cr_assert_eq(json_object_size(j), CFG_F_COUNT);
    json_object_foreach(j, k, v)
    {
        if (strcmp(k, "time") == 0)
            continue;
        cr_assert(json_is_string(v), "%s", k);
        cr_assert_str_eq(json_string_value(v), "-", "%s", k);
    }
    json_decref(j);
}

Test(log_access, reused_false)
{
    struct log_access_rec r = rec_full();

    r.upstream_reused = 0;
    check_one(CFG_LOG_JSON, CFG_F_UPSTREAM_REUSED, &r, "false");
    check_one(CFG_LOG_LTSV, CFG_F_UPSTREAM_REUSED, &r, "false");
}

Test(log_access, zero_values_are_numbers)
{
    struct log_access_rec r = rec_full();

    r.bytes_sent = 0;
    r.duration_us = 999; /* below one ms: truncated to 0 */
    r.upstream_connect_us = 0;
    r.upstream_attempts = 0;
    check_one(CFG_LOG_JSON, CFG_F_BYTES, &r, "0");
    check_one(CFG_LOG_JSON, CFG_F_TIME_TAKEN_MS, &r, "0");
    check_one(CFG_LOG_JSON, CFG_F_UPSTREAM_CONNECT_MS, &r, "0.000");
    check_one(CFG_LOG_JSON, CFG_F_UPSTREAM_ATTEMPTS, &r, "0");
    r.bytes_sent = INT64_MAX;
    check_one(CFG_LOG_JSON, CFG_F_BYTES, &r, "9223372036854775807");
    r.bytes_sent = INT64_MIN;
    check_one(CFG_LOG_JSON, CFG_F_BYTES, &r, "\"-\"");
}

Test(log_access, empty_string_is_not_absent)
{
    struct log_access_rec r = rec_full();

    r.referrer = S("");
    check_one(CFG_LOG_JSON, CFG_F_REFERRER, &r, "\"\"");
    check_one(CFG_LOG_LTSV, CFG_F_REFERRER, &r, "");
}

Test(log_access, request_with_missing_parts)
{
    struct log_access_rec r = rec_absent();

    r.method = S("GET");
    check_one(CFG_LOG_JSON, CFG_F_REQUEST, &r, "\"GET - -\"");
    r.target = S("/x y");
    check_one(CFG_LOG_LTSV, CFG_F_REQUEST, &r, "GET /x y -");
}

Test(log_access, time_milliseconds_and_cache)
{
    struct log_access_rec r = rec_full();

    r.start.tv_nsec = 999999999;
    check_one(CFG_LOG_JSON, CFG_F_TIME, &r, "\"2026-11-27T00:34:11.999Z\"");
    r.start.tv_nsec = 0;
    check_one(CFG_LOG_JSON, CFG_F_TIME, &r, "\"2026-11-27T00:34:11.000Z\"");
    /* The next second must not reuse the cached one. */
    r.start.tv_sec++;
    check_one(CFG_LOG_JSON, CFG_F_TIME, &r, "\"2026-11-27T00:34:12.000Z\"");
    r.start.tv_sec = 951782400; /* leap day */
    r.start.tv_nsec = 5000000;
    check_one(CFG_LOG_LTSV, CFG_F_TIME, &r, "2000-02-29T00:00:00.005Z");
}

struct thread_arg {
    time_t sec;
    int ok;
};

static void *time_thread(void *p)
{
    struct thread_arg *a = p;
    enum cfg_field fld = CFG_F_TIME;
    struct cfg_access_log c = cfg_fields(CFG_LOG_LTSV, &fld, 1);
    struct log_fmt *f = log_fmt_new(&c);
    struct log_access_rec r = rec_full();
    char buf[128], want[64];
    struct tm tm;

    a->ok = 1;
    r.start.tv_nsec = 0;
    for (int i = 0; i < 2000; i++) {
        long n;

        r.start.tv_sec = a->sec + i % 3;
        n = log_fmt_line(f, &r, buf, sizeof(buf));
        gmtime_r(&r.start.tv_sec, &tm);
        strftime(want, sizeof(want), "time:%Y-%m-%dT%H:%M:%S.000Z\n", &tm);
        if (n != (long)strlen(want) || memcmp(buf, want, (size_t)n) != 0)
            a->ok = 0;
    }
    log_fmt_free(f);
    return NULL;
}

/* The time cache is per thread: two threads in different seconds stay right. */
Test(log_access, time_cache_per_thread)
{
    struct thread_arg a[2] = {{1795739651, 0}, {1000000000, 0}};
    pthread_t t[2];

    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, time_thread, &a[i]), 0);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        cr_assert(a[i].ok);
    }
}

/* Expected JSON / LTSV rendering of one ASCII byte inside a string. */
static void ascii_expect(unsigned char c, char *json, char *ltsv)
{
    static const char hex[] = "0123456789abcdef";

    switch (c) {
    case '"':
        strcpy(json, "\\\"");
        strcpy(ltsv, "\"");
        return;
    case '\\':
        strcpy(json, "\\\\");
        strcpy(ltsv, "\\\\");
        return;
    case '\n':
        strcpy(json, "\\n");
        strcpy(ltsv, "\\n");
        return;
    case '\r':
        strcpy(json, "\\r");
        strcpy(ltsv, "\\r");
        return;
    case '\t':
        strcpy(json, "\\t");
        strcpy(ltsv, "\\t");
        return;
    case '\b':
        strcpy(json, "\\b");
        sprintf(ltsv, "\\x08");
        return;
    case '\f':
        strcpy(json, "\\f");
        sprintf(ltsv, "\\x0c");
        return;
    default:
        break;
    }
    if (c < 0x20 || c == 0x7f) {
        sprintf(json, "\\u00%c%c", hex[c >> 4], hex[c & 15]);
        sprintf(ltsv, "\\x%c%c", hex[c >> 4], hex[c & 15]);
    } else {
        json[0] = ltsv[0] = (char)c;
        json[1] = ltsv[1] = '\0';
    }
}

Test(log_access, every_ascii_byte)
{
    struct log_access_rec r = rec_full();

    for (int c = 0; c < 0x80; c++) {
        char v[3] = {'a', (char)c, 'z'};
        char je[8], le[8], jw[32], lw[32];
        size_t n;
        json_t *j;

        ascii_expect((unsigned char)c, je, le);
        snprintf(jw, sizeof(jw), "\"a%sz\"", je);
        snprintf(lw, sizeof(lw), "a%sz", le);
        r.useragent = (struct core_str){v, 3};
        check_one(CFG_LOG_JSON, CFG_F_USERAGENT, &r, jw);
        check_one(CFG_LOG_LTSV, CFG_F_USERAGENT, &r, lw);

        /* Round trip: JSON gives back the very byte. */
        enum cfg_field fld = CFG_F_USERAGENT;
        struct cfg_access_log cj = cfg_fields(CFG_LOG_JSON, &fld, 1);
        n = fmt_line(&cj, &r);
        j = parse(line, n);
        cr_assert_eq(json_string_length(json_object_get(j, "useragent")), 3);
        cr_assert_arr_eq(json_string_value(json_object_get(j, "useragent")), v, 3);
        json_decref(j);
    }
}

struct utf8_case {
    const char *in;
    size_t len;
    const char *json; /* expected inside the quotes */
    const char *ltsv;
};

#define U(lit, j, l)                                                                               \
    {                                                                                              \
        lit, sizeof(lit) - 1, j, l                                                                 \
    }

static const struct utf8_case invalid_utf8[] = {
    /* overlong */
    U("\xc0\x80", "\\u00c0\\u0080", "\\xc0\\x80"),
    U("\xc1\xbf", "\\u00c1\\u00bf", "\\xc1\\xbf"),
    U("\xe0\x80\x80", "\\u00e0\\u0080\\u0080", "\\xe0\\x80\\x80"),
    U("\xe0\x9f\xbf", "\\u00e0\\u009f\\u00bf", "\\xe0\\x9f\\xbf"),
    U("\xf0\x80\x80\x80", "\\u00f0\\u0080\\u0080\\u0080", "\\xf0\\x80\\x80\\x80"),
    U("\xf0\x8f\xbf\xbf", "\\u00f0\\u008f\\u00bf\\u00bf", "\\xf0\\x8f\\xbf\\xbf"),
    /* surrogates */
    U("\xed\xa0\x80", "\\u00ed\\u00a0\\u0080", "\\xed\\xa0\\x80"),
    U("\xed\xbf\xbf", "\\u00ed\\u00bf\\u00bf", "\\xed\\xbf\\xbf"),
    /* beyond U+10FFFF */
    U("\xf4\x90\x80\x80", "\\u00f4\\u0090\\u0080\\u0080", "\\xf4\\x90\\x80\\x80"),
    U("\xf5\x80\x80\x80", "\\u00f5\\u0080\\u0080\\u0080", "\\xf5\\x80\\x80\\x80"),
    U("\xf8\x88\x80\x80\x80", "\\u00f8\\u0088\\u0080\\u0080\\u0080", "\\xf8\\x88\\x80\\x80\\x80"),
    U("\xfe", "\\u00fe", "\\xfe"),
    U("\xff", "\\u00ff", "\\xff"),
    /* truncated, at the end and before ASCII */
    U("\xc3", "\\u00c3", "\\xc3"),
    U("\xe2\x82", "\\u00e2\\u0082", "\\xe2\\x82"),
    U("\xf0\x9f\x98", "\\u00f0\\u009f\\u0098", "\\xf0\\x9f\\x98"),
    U("\xc3"
      "A",
      "\\u00c3A", "\\xc3A"),
    U("\xe2\x82"
      "A",
      "\\u00e2\\u0082A", "\\xe2\\x82A"),
    U("\xf0\x9f\x98"
      "A",
      "\\u00f0\\u009f\\u0098A", "\\xf0\\x9f\\x98A"),
    /* a lead byte followed by another lead byte */
    U("\xc3\xc3\xa9", "\\u00c3\xc3\xa9", "\\xc3\xc3\xa9"),
    /* stray continuation bytes */
    U("\x80", "\\u0080", "\\x80"),
    U("\xbf"
      "a",
      "\\u00bfa", "\\xbfa"),
    U("\xc3\xa9\xa9", "\xc3\xa9\\u00a9", "\xc3\xa9\\xa9"),
};

static const struct utf8_case valid_utf8[] = {
    U("\xc2\x80", "\xc2\x80", "\xc2\x80"),                         /* U+0080 */
    U("\xc3\xa9", "\xc3\xa9", "\xc3\xa9"),                         /* é */
    U("\xdf\xbf", "\xdf\xbf", "\xdf\xbf"),                         /* U+07FF */
    U("\xe0\xa0\x80", "\xe0\xa0\x80", "\xe0\xa0\x80"),             /* U+0800 */
    U("\xe2\x82\xac", "\xe2\x82\xac", "\xe2\x82\xac"),             /* € */
    U("\xed\x9f\xbf", "\xed\x9f\xbf", "\xed\x9f\xbf"),             /* U+D7FF */
    U("\xee\x80\x80", "\xee\x80\x80", "\xee\x80\x80"),             /* U+E000 */
    U("\xef\xbf\xbf", "\xef\xbf\xbf", "\xef\xbf\xbf"),             /* U+FFFF */
    U("\xe2\x80\xa8", "\xe2\x80\xa8", "\xe2\x80\xa8"),             /* U+2028 */
    U("\xf0\x90\x80\x80", "\xf0\x90\x80\x80", "\xf0\x90\x80\x80"), /* U+10000 */
    U("\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"), /* 😀 */
    U("\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf"), /* U+10FFFF */
    U("caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac", "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac",
      "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac"),
};

static void check_utf8(const struct utf8_case *cs, size_t n)
{
    struct log_access_rec r = rec_full();

    for (size_t i = 0; i < n; i++) {
        char jw[128];

        snprintf(jw, sizeof(jw), "\"%s\"", cs[i].json);
        r.target = (struct core_str){cs[i].in, cs[i].len};
        check_one(CFG_LOG_JSON, CFG_F_PATH, &r, jw);
        check_one(CFG_LOG_LTSV, CFG_F_PATH, &r, cs[i].ltsv);
    }
}

Test(log_access, invalid_utf8_escaped)
{
    check_utf8(invalid_utf8, sizeof(invalid_utf8) / sizeof(invalid_utf8[0]));
}

Test(log_access, valid_utf8_verbatim)
{
    check_utf8(valid_utf8, sizeof(valid_utf8) / sizeof(valid_utf8[0]));
}

/* Every byte value 0x80..0xff alone: always escaped, always valid JSON. */
Test(log_access, every_high_byte_alone)
{
    struct log_access_rec r = rec_full();

    for (int c = 0x80; c < 0x100; c++) {
        char v = (char)c, jw[16], lw[16];

        snprintf(jw, sizeof(jw), "\"\\u00%02x\"", c);
        snprintf(lw, sizeof(lw), "\\x%02x", c);
        r.host = (struct core_str){&v, 1};
        check_one(CFG_LOG_JSON, CFG_F_HOSTNAME, &r, jw);
        check_one(CFG_LOG_LTSV, CFG_F_HOSTNAME, &r, lw);
    }
}

/* All two-byte strings: the JSON always parses and LTSV keeps one line. */
Test(log_access, every_byte_pair)
{
    enum cfg_field fld[] = {CFG_F_USERAGENT, CFG_F_STATUS};
    struct cfg_access_log cj = cfg_fields(CFG_LOG_JSON, fld, 2);
    struct cfg_access_log cl = cfg_fields(CFG_LOG_LTSV, fld, 2);
    struct log_fmt *fj = log_fmt_new(&cj), *fl = log_fmt_new(&cl);
    struct log_access_rec r = rec_full();
    char v[2];
    int tabs;

    r.useragent = (struct core_str){v, 2};
    for (int a = 0; a < 256; a++) {
        for (int b = 0; b < 256; b++) {
            json_error_t err;
            json_t *j;
            long n;

            v[0] = (char)a;
            v[1] = (char)b;
            n = log_fmt_line(fj, &r, line, sizeof(line));
            cr_assert_gt(n, 0);
            j = json_loadb(line, (size_t)n, JFLAGS, &err);
            cr_assert_not_null(j, "%02x %02x: %s", a, b, err.text);
            cr_assert_eq(json_object_size(j), 2);
            json_decref(j);
            n = log_fmt_line(fl, &r, line, sizeof(line));
            cr_assert_gt(n, 0);
            tabs = 0;
            for (long i = 0; i < n - 1; i++) {
                unsigned char c = (unsigned char)line[i];

                tabs += c == '\t';
                cr_assert((c >= 0x20 && c != 0x7f) || c == '\t', "%02x %02x: byte %ld", a, b, i);
            }
            cr_assert_eq(tabs, 1, "%02x %02x", a, b);
            cr_assert_eq(line[n - 1], '\n');
        }
    }
    log_fmt_free(fj);
    log_fmt_free(fl);
}

Test(log_access, field_selection_and_order)
{
    enum cfg_field fld[] = {CFG_F_STATUS, CFG_F_TIME, CFG_F_HOSTNAME};
    struct cfg_access_log c = cfg_fields(CFG_LOG_JSON, fld, 3);
    struct log_access_rec r = rec_full();
    size_t n = fmt_line(&c, &r);
    const char *want =
        "{\"status\":200,\"time\":\"2026-11-27T00:34:11.123Z\",\"hostname\":\"www.example.com\"}\n";

    cr_assert_eq(n, strlen(want));
    cr_assert_arr_eq(line, want, n);

    c = cfg_fields(CFG_LOG_LTSV, fld, 3);
    n = fmt_line(&c, &r);
    want = "status:200\ttime:2026-11-27T00:34:11.123Z\thostname:www.example.com\n";
    cr_assert_eq(n, strlen(want));
    cr_assert_arr_eq(line, want, n);
}

Test(log_access, duplicate_field_written_once)
{
    enum cfg_field fld[] = {CFG_F_STATUS, CFG_F_BYTES, CFG_F_STATUS};
    struct cfg_access_log c = cfg_fields(CFG_LOG_JSON, fld, 3);
    struct log_access_rec r = rec_full();
    size_t n = fmt_line(&c, &r);
    const char *want = "{\"status\":200,\"bytes\":1234}\n";
    enum cfg_field fld2[] = {CFG_F_STATUS, CFG_F_BYTES, CFG_F_BYTES, CFG_F_STATUS};

    cr_assert_eq(n, strlen(want));
    cr_assert_arr_eq(line, want, n);
    /* LTSV: the first key has no TAB before it, the others do; both are found */
    c = cfg_fields(CFG_LOG_LTSV, fld2, 4);
    n = fmt_line(&c, &r);
    want = "status:200\tbytes:1234\n";
    cr_assert_eq(n, strlen(want));
    cr_assert_arr_eq(line, want, n);
}

Test(log_access, no_fields)
{
    struct cfg_access_log c = cfg_fields(CFG_LOG_JSON, NULL, 0);
    struct log_access_rec r = rec_full();
    size_t n = fmt_line(&c, &r);

    cr_assert_eq(n, 3);
    cr_assert_arr_eq(line, "{}\n", 3);
    c.format = CFG_LOG_LTSV;
    n = fmt_line(&c, &r);
    cr_assert_eq(n, 1);
}

Test(log_access, all_fields_ltsv_shape)
{
    struct cfg_access_log c = cfg_all(CFG_LOG_LTSV);
    struct log_access_rec r = rec_full();
    size_t n = fmt_line(&c, &r);
    char *save = NULL, *tok;
    int i = 0;

    line[n - 1] = '\0';
    for (tok = strtok_r(line, "\t", &save); tok; tok = strtok_r(NULL, "\t", &save), i++) {
        const char *name = cfg_field_name((enum cfg_field)i);

        cr_assert_eq(strncmp(tok, name, strlen(name)), 0, "%s", tok);
        cr_assert_eq(tok[strlen(name)], ':', "%s", tok);
    }
    cr_assert_eq(i, CFG_F_COUNT);
}

static char *req_names[] = {"X-Custom-Header", "accept", "X-Absent"};
static char *resp_names[] = {"Cache-Control", "X-Missing", "Set-Cookie"};

static struct cfg_access_log cfg_hdrs(enum cfg_log_format format)
{
    enum cfg_field fld[] = {CFG_F_STATUS};
    struct cfg_access_log c = cfg_fields(format, fld, 1);

    c.request_headers = req_names;
    c.nrequest_headers = 3;
    c.response_headers = resp_names;
    c.nresponse_headers = 3;
    return c;
}

static const struct core_hdr req_hdrs[] = {
    {.name = S("x-custom-header"), .value = S("a")},
    {.name = S("ACCEPT"), .value = S("*/*")},
    {.name = S("Host"), .value = S("h")},
    {.name = S("X-Custom-Header"), .value = S("b \"q\"")},
};

static const struct core_hdr resp_hdrs[] = {
    {.name = S("cache-control"), .value = S("no-cache")},
    {.name = S("Set-Cookie"), .value = S("a=1")},
    {.name = S("set-cookie"), .value = S("b=2")},
};

Test(log_access, extra_header_fields_json)
{
    struct cfg_access_log c = cfg_hdrs(CFG_LOG_JSON);
    struct log_access_rec r = rec_full();
    const char *want = "{\"status\":200,\"http_x_custom_header\":\"a, b \\\"q\\\"\","
                       "\"http_accept\":\"*/*\",\"http_x_absent\":\"-\","
                       "\"sent_http_cache_control\":\"no-cache\",\"sent_http_x_missing\":\"-\","
                       "\"sent_http_set_cookie\":\"a=1, b=2\"}\n";
    size_t n;

    r.req_hdrs = req_hdrs;
    r.nreq_hdrs = 4;
    r.resp_hdrs = resp_hdrs;
    r.nresp_hdrs = 3;
    n = fmt_line(&c, &r);
    cr_assert_eq(n, strlen(want), "%.*s", (int)n, line);
    cr_assert_arr_eq(line, want, n, "%.*s", (int)n, line);
    json_decref(parse(line, n));
}

Test(log_access, extra_header_fields_ltsv)
{
    struct cfg_access_log c = cfg_hdrs(CFG_LOG_LTSV);
    struct log_access_rec r = rec_full();
    const char *want = "status:200\thttp_x_custom_header:a, b \"q\"\thttp_accept:*/*\t"
                       "http_x_absent:-\tsent_http_cache_control:no-cache\t"
                       "sent_http_x_missing:-\tsent_http_set_cookie:a=1, b=2\n";
    size_t n;

    r.req_hdrs = req_hdrs;
    r.nreq_hdrs = 4;
    r.resp_hdrs = resp_hdrs;
    r.nresp_hdrs = 3;
    n = fmt_line(&c, &r);
    cr_assert_eq(n, strlen(want), "%.*s", (int)n, line);
    cr_assert_arr_eq(line, want, n, "%.*s", (int)n, line);
}

Test(log_access, extra_headers_absent_when_no_headers)
{
    struct cfg_access_log c = cfg_hdrs(CFG_LOG_JSON);
    struct log_access_rec r = rec_absent();
    size_t n = fmt_line(&c, &r);
    json_t *j = parse(line, n);
    const char *k;
    json_t *v;

    cr_assert_eq(json_object_size(j), 7);
    json_object_foreach(j, k, v)
    {
        cr_assert_str_eq(json_string_value(v), "-", "%s", k);
    }
    json_decref(j);
}

/* Odd characters in a configured name never reach a key unescaped. */
Test(log_access, header_label_sanitised)
{
    char *names[] = {"X-\"Odd\"\tName:", "x__odd__name_", "X.Tok!#$%&'*+^_`|~9"};
    enum cfg_field fld[] = {CFG_F_STATUS};
    struct cfg_access_log c = cfg_fields(CFG_LOG_JSON, fld, 1);
    struct log_access_rec r = rec_full();
    const char *want = "{\"status\":200,\"http_x__odd__name_\":\"-\","
                       "\"http_x.tok!#$%&'*+^_`|~9\":\"-\"}\n";
    size_t n;

    /* The second name gives the same label as the first: written once. */
    c.request_headers = names;
    c.nrequest_headers = 3;
    n = fmt_line(&c, &r);
    cr_assert_eq(n, strlen(want), "%.*s", (int)n, line);
    cr_assert_arr_eq(line, want, n);
}

Test(log_access, header_same_as_field_written_once)
{
    char *names[] = {"X-Forwarded-Proto"};
    enum cfg_field fld[] = {CFG_F_HTTP_X_FORWARDED_PROTO};
    struct cfg_access_log c = cfg_fields(CFG_LOG_LTSV, fld, 1);
    struct log_access_rec r = rec_full();
    size_t n;

    c.request_headers = names;
    c.nrequest_headers = 1;
    n = fmt_line(&c, &r);
    cr_assert_eq(n, strlen("http_x_forwarded_proto:https\n"));
}

/* A hostile value cannot end the line, add a field or change another one. */
Test(log_access, injection)
{
    static const char evil[] = "x\",\"status\":999,\"a\":\"\n{\"b\":1}\r\tstatus:999\\";
    struct cfg_access_log cj = cfg_all(CFG_LOG_JSON);
    struct cfg_access_log cl = cfg_all(CFG_LOG_LTSV);
    struct log_access_rec r = rec_full();
    struct core_hdr h[] = {{.name = S("X-Evil"), .value = S(evil)}};
    char *names[] = {"X-Evil"};
    size_t n, tabs = 0;
    json_t *j;

    r.useragent = S(evil);
    r.target = S(evil);
    r.req_hdrs = h;
    r.nreq_hdrs = 1;
    cj.request_headers = cl.request_headers = names;
    cj.nrequest_headers = cl.nrequest_headers = 1;

    n = fmt_line(&cj, &r);
    j = parse(line, n);
    cr_assert_eq(json_object_size(j), CFG_F_COUNT + 1);
    cr_assert_eq(json_integer_value(json_object_get(j, "status")), 200);
    cr_assert_str_eq(json_string_value(json_object_get(j, "useragent")), evil);
    cr_assert_str_eq(json_string_value(json_object_get(j, "http_x_evil")), evil);
    json_decref(j);

    n = fmt_line(&cl, &r);
    for (size_t i = 0; i < n; i++) {
        cr_assert_neq(line[i], '\r');
        tabs += line[i] == '\t';
    }
    cr_assert_eq(tabs, CFG_F_COUNT);
}

Test(log_access, enospc_never_writes_past_cap)
{
    struct cfg_access_log c = cfg_all(CFG_LOG_JSON);
    struct log_fmt *f;
    struct log_access_rec r = rec_full();
    char full[4096], buf[4096 + 16];
    long len;

    for (int fmt = 0; fmt < CFG_LOG_FORMAT_COUNT; fmt++) {
        c.format = (enum cfg_log_format)fmt;
        f = log_fmt_new(&c);
        cr_assert_not_null(f);
        r.useragent = S("\x01\xff\xc3\xa9\"");
        len = log_fmt_line(f, &r, full, sizeof(full));
        cr_assert_gt(len, 0);
        for (size_t cap = 0; cap <= (size_t)len + 2; cap++) {
            long n;

            memset(buf, 0x5a, sizeof(buf));
            n = log_fmt_line(f, &r, buf, cap);
            if (cap < (size_t)len)
                cr_assert_eq(n, -ENOSPC, "cap %zu", cap);
            else
                cr_assert_eq(n, len, "cap %zu", cap);
            for (size_t i = cap; i < sizeof(buf); i++)
                cr_assert_eq(buf[i], 0x5a, "cap %zu: wrote at %zu", cap, i);
        }
        cr_assert_eq(log_fmt_line(f, &r, NULL, 0), -ENOSPC);
        log_fmt_free(f);
    }
}

Test(log_access, fmt_free_null)
{
    log_fmt_free(NULL);
}

/* Header names too long for the ops' 16-bit lengths are refused, not cut (cfg/ never gets there).
 */
Test(log_access, fmt_refuses_oversized_header_name)
{
    size_t len = 70000;
    char *name = malloc(len + 1);
    char *names[] = {name};
    enum cfg_field fld[] = {CFG_F_STATUS};
    struct cfg_access_log c = cfg_fields(CFG_LOG_JSON, fld, 1);

    cr_assert_not_null(name);
    memset(name, 'a', len);
    name[len] = '\0';
    c.request_headers = names;
    c.nrequest_headers = 1;
    cr_assert_null(log_fmt_new(&c));
    c.request_headers = NULL;
    c.nrequest_headers = 0;
    c.response_headers = names;
    c.nresponse_headers = 1;
    cr_assert_null(log_fmt_new(&c));
    name[1000] = '\0'; /* still longer than cfg/ allows, but within the ops' lengths */
    struct log_fmt *f = log_fmt_new(&c);
    cr_assert_not_null(f);
    log_fmt_free(f);
    free(name);
}

/* The fmt keeps its own copy of header names: the cfg may go first. */
Test(log_access, fmt_outlives_cfg)
{
    char *name = strdup("X-Temp");
    char *names[] = {name};
    enum cfg_field fld[] = {CFG_F_STATUS};
    struct cfg_access_log c = cfg_fields(CFG_LOG_LTSV, fld, 1);
    struct core_hdr h[] = {{.name = S("x-temp"), .value = S("v")}};
    struct log_access_rec r = rec_full();
    struct log_fmt *f;
    long n;

    c.request_headers = names;
    c.nrequest_headers = 1;
    f = log_fmt_new(&c);
    memset(name, 'Q', strlen(name));
    free(name);
    r.req_hdrs = h;
    r.nreq_hdrs = 1;
    n = log_fmt_line(f, &r, line, sizeof(line));
    cr_assert_eq(n, (long)strlen("status:200\thttp_x_temp:v\n"));
    cr_assert_arr_eq(line, "status:200\thttp_x_temp:v\n", (size_t)n);
    log_fmt_free(f);
}

/*
 * Values of 8 bytes and more take the word-at-a-time path. Plain 'a' around
 * a piece never changes how the piece is escaped (it is neither a lead nor a
 * continuation byte), so a piece inside a long value must come out exactly
 * as it does alone, which takes the byte-at-a-time path.
 */
static size_t esc_alone(const struct log_fmt *f, const char *v, size_t n, char *out, size_t cap)
{
    struct log_access_rec r = rec_full();
    long len;

    r.useragent = (struct core_str){v, n};
    len = log_fmt_line(f, &r, out, cap);
    cr_assert_gt(len, 0);
    return (size_t)len;
}

Test(log_access, word_path_matches_byte_path)
{
    static const size_t pos[] = {0, 5, 6, 7, 8, 9, 14};
    enum cfg_field fld = CFG_F_USERAGENT;
    char v[16], alone[64], in_long[128], want[128];

    for (int fmt = 0; fmt < CFG_LOG_FORMAT_COUNT; fmt++) {
        struct cfg_access_log c = cfg_fields((enum cfg_log_format)fmt, &fld, 1);
        struct log_fmt *f = log_fmt_new(&c);
        /* Where the value starts in a line: after `{"useragent":"` or `useragent:`. */
        size_t head = fmt == CFG_LOG_JSON ? 14 : 10;
        size_t tail = fmt == CFG_LOG_JSON ? 3 : 1;

        for (int x = 0; x < 256; x++) {
            for (int y = 0; y < 256; y++) {
                char pair[2] = {(char)x, (char)y};
                size_t na = esc_alone(f, pair, 2, alone, sizeof(alone)) - head - tail;

                for (size_t i = 0; i < sizeof(pos) / sizeof(pos[0]); i++) {
                    size_t p = pos[i], nl;

                    memset(v, 'a', sizeof(v));
                    memcpy(v + p, pair, 2);
                    nl = esc_alone(f, v, sizeof(v), in_long, sizeof(in_long));
                    memset(want, 'a', p);
                    memcpy(want + p, alone + head, na);
                    memset(want + p + na, 'a', sizeof(v) - p - 2);
                    cr_assert_eq(nl - head - tail, na + sizeof(v) - 2, "%02x %02x at %zu", x, y, p);
                    cr_assert_arr_eq(in_long + head, want, nl - head - tail, "%02x %02x at %zu", x,
                                     y, p);
                }
            }
        }
        log_fmt_free(f);
    }
}

/* Multibyte sequences, valid or not, at every offset of a long value. */
Test(log_access, utf8_at_every_offset)
{
    struct log_access_rec r = rec_full();

    for (size_t k = 0; k < 2; k++) {
        const struct utf8_case *cs = k ? invalid_utf8 : valid_utf8;
        size_t n = k ? sizeof(invalid_utf8) / sizeof(invalid_utf8[0])
                     : sizeof(valid_utf8) / sizeof(valid_utf8[0]);

        for (size_t i = 0; i < n; i++) {
            for (size_t off = 0; off < 10; off++) {
                char in[128], jw[256], lw[256];
                size_t len = 0;

                memset(in, 'b', off);
                memcpy(in + off, cs[i].in, cs[i].len);
                memset(in + off + cs[i].len, 'c', 9);
                len = off + cs[i].len + 9;
                snprintf(jw, sizeof(jw), "\"%.*s%s%s\"", (int)off, "bbbbbbbbbb", cs[i].json,
                         "ccccccccc");
                snprintf(lw, sizeof(lw), "%.*s%s%s", (int)off, "bbbbbbbbbb", cs[i].ltsv,
                         "ccccccccc");
                r.target = (struct core_str){in, len};
                check_one(CFG_LOG_JSON, CFG_F_PATH, &r, jw);
                check_one(CFG_LOG_LTSV, CFG_F_PATH, &r, lw);
            }
        }
    }
}

/*
 * Numbers below 1000 are written without counting digits and the others two
 * digits at a time: every power of ten and its neighbours, against printf.
 */
Test(log_access, numbers_at_digit_boundaries)
{
    struct log_access_rec r = rec_full();
    int64_t vals[3 * 19 + 2];
    size_t n = 0;
    int64_t p = 1;

    for (int k = 0; k <= 18; k++, p = k <= 18 ? p * 10 : p) {
        vals[n++] = p - 1;
        vals[n++] = p;
        vals[n++] = p + 1;
    }
    vals[n++] = INT64_MAX - 1;
    vals[n++] = INT64_MAX;
    for (size_t i = 0; i < n; i++) {
        int64_t v = vals[i];
        char want[64];

        for (int fmt = 0; fmt < CFG_LOG_FORMAT_COUNT; fmt++) {
            enum cfg_log_format format = (enum cfg_log_format)fmt;

            r.bytes_sent = v;
            snprintf(want, sizeof(want), "%lld", (long long)v);
            check_one(format, CFG_F_BYTES, &r, want);
            r.duration_us = v;
            snprintf(want, sizeof(want), "%lld", (long long)(v / 1000));
            check_one(format, CFG_F_TIME_TAKEN_MS, &r, want);
            r.upstream_response_us = v;
            snprintf(want, sizeof(want), "%lld.%03lld", (long long)(v / 1000),
                     (long long)(v % 1000));
            check_one(format, CFG_F_UPSTREAM_RESPONSE_MS, &r, want);
            if (v > 0 && v <= INT32_MAX) {
                r.status = r.upstream_attempts = (int)v;
                snprintf(want, sizeof(want), "%d", (int)v);
                check_one(format, CFG_F_STATUS, &r, want);
                check_one(format, CFG_F_UPSTREAM_ATTEMPTS, &r, want);
            }
        }
    }
    r.status = INT32_MAX;
    r.upstream_attempts = INT32_MIN;
    r.upstream_connect_us = 999;
    check_one(CFG_LOG_JSON, CFG_F_STATUS, &r, "2147483647");
    check_one(CFG_LOG_JSON, CFG_F_UPSTREAM_ATTEMPTS, &r, "\"-\"");
    check_one(CFG_LOG_LTSV, CFG_F_UPSTREAM_CONNECT_MS, &r, "0.999");
}

/* A year past 9999 makes a longer date, which the cache copes with. */
Test(log_access, time_five_digit_year)
{
    struct log_access_rec r = rec_full();

    r.start.tv_sec = 253402300800; /* 10000-01-01 */
    r.start.tv_nsec = 7000000;
    check_one(CFG_LOG_JSON, CFG_F_TIME, &r, "\"10000-01-01T00:00:00.007Z\"");
    r.start.tv_sec = 253402300799;
    check_one(CFG_LOG_LTSV, CFG_F_TIME, &r, "9999-12-31T23:59:59.007Z");
}

/*
 * Plain values are checked and copied in pieces that depend on their length
 * (under 4 bytes, under 8, whole words, an overlapping last word): every
 * length up to 40, alone and with a byte that needs escaping, or a valid
 * 2-byte UTF-8 sequence, at each position.
 */
Test(log_access, value_lengths_and_escape_positions)
{
    static const char *const pieces[] = {"\"",   "\\",   "\n",   "\x01",     "\x7f",
                                         "\x80", "\xc3", "\xff", "\xc3\xa9", "~"};
    struct log_access_rec r = rec_full();

    for (size_t len = 0; len <= 40; len++) {
        for (size_t pos = 0; pos <= len; pos++) {
            for (size_t k = 0; k < sizeof(pieces) / sizeof(pieces[0]); k++) {
                const char *pc = pieces[k];
                size_t pn = strlen(pc);
                char v[64], je[16], le[16], jw[128], lw[128];
                size_t n = 0;

                /* pos == len: the plain value alone, once. */
                if (pos == len && k > 0)
                    break;
                for (size_t i = 0; i < pos; i++)
                    v[n++] = (char)('A' + i % 26);
                if (pos < len) {
                    memcpy(v + n, pc, pn);
                    n += pn;
                }
                for (size_t i = pos + 1; i < len; i++)
                    v[n++] = (char)('a' + i % 26);
                if (pos == len) {
                    je[0] = le[0] = '\0';
                } else if ((unsigned char)pc[0] < 0x80) {
                    ascii_expect((unsigned char)pc[0], je, le);
                } else if (pn == 2) {
                    strcpy(je, pc);
                    strcpy(le, pc);
                } else {
                    snprintf(je, sizeof(je), "\\u00%02x", (unsigned char)pc[0]);
                    snprintf(le, sizeof(le), "\\x%02x", (unsigned char)pc[0]);
                }
                snprintf(jw, sizeof(jw), "\"%.*s%s%.*s\"", (int)pos, v, je,
                         (int)(len > pos ? len - pos - 1 : 0), v + pos + (pos < len ? pn : 0));
                snprintf(lw, sizeof(lw), "%.*s%s%.*s", (int)pos, v, le,
                         (int)(len > pos ? len - pos - 1 : 0), v + pos + (pos < len ? pn : 0));
                r.useragent = (struct core_str){v, n};
                check_one(CFG_LOG_JSON, CFG_F_USERAGENT, &r, jw);
                check_one(CFG_LOG_LTSV, CFG_F_USERAGENT, &r, lw);
            }
        }
    }
}

/*
 * Every cap from 0 to well past a line's length, so that each op in turn
 * meets the point where it no longer has room for the unchecked path: the
 * line is byte for byte the one written with plenty of room, or -ENOSPC,
 * and nothing is written past the line or past cap.
 */
Test(log_access, every_cap_same_line)
{
    static char ua[300], ctl[100];
    char *names[] = {"X-Custom-Header", "accept"};
    char full[8192], buf[8192];
    struct log_access_rec recs[4] = {rec_full(), rec_absent(), rec_full(), rec_full()};

    for (size_t i = 0; i < sizeof(ua); i++)
        ua[i] = "ab\"\\\xc3\xa9\x01z"[i % 8];
    /* Control bytes take the most room once escaped: 6 bytes each in JSON. */
    memset(ctl, 0x01, sizeof(ctl));
    recs[0].useragent = (struct core_str){ua, sizeof(ua)};
    recs[0].req_hdrs = req_hdrs;
    recs[0].nreq_hdrs = 4;
    recs[2].referrer = ABSENT;
    recs[2].upstream_connect_us = -1;
    recs[2].termination = NULL;
    recs[3].target = (struct core_str){ctl, sizeof(ctl)};
    recs[3].useragent = (struct core_str){ctl, sizeof(ctl)};
    for (int fmt = 0; fmt < CFG_LOG_FORMAT_COUNT; fmt++) {
        struct cfg_access_log c = cfg_all((enum cfg_log_format)fmt);
        struct log_fmt *f;

        c.request_headers = names;
        c.nrequest_headers = 2;
        f = log_fmt_new(&c);
        cr_assert_not_null(f);
        for (size_t k = 0; k < sizeof(recs) / sizeof(recs[0]); k++) {
            long len = log_fmt_line(f, &recs[k], full, sizeof(full));

            cr_assert_gt(len, 0);
            for (size_t cap = 0; cap <= (size_t)len + 600; cap++) {
                long n;

                memset(buf, 0x5a, sizeof(buf));
                n = log_fmt_line(f, &recs[k], buf, cap);
                if (cap < (size_t)len) {
                    cr_assert_eq(n, -ENOSPC, "rec %zu cap %zu", k, cap);
                } else {
                    cr_assert_eq(n, len, "rec %zu cap %zu", k, cap);
                    cr_assert_arr_eq(buf, full, (size_t)len, "rec %zu cap %zu", k, cap);
                }
                for (size_t i = cap < (size_t)len ? cap : (size_t)len; i < sizeof(buf); i++)
                    cr_assert_eq(buf[i], 0x5a, "rec %zu cap %zu: wrote at %zu", k, cap, i);
            }
        }
        log_fmt_free(f);
    }
}

/* ---- long values: cut, never the line (issue #19.2) ---------------------- */

/* A value of n bytes, byte i being pat[i % patlen], in a buffer the test frees. */
static char *repeat(const char *pat, size_t patlen, size_t n)
{
    char *v = malloc(n + 1);

    cr_assert_not_null(v);
    for (size_t i = 0; i < n; i++)
        v[i] = pat[i % patlen];
    v[n] = '\0';
    return v;
}

/* Format r with f into a buffer of exactly log_fmt_max_line(f) bytes (so ASan sees overruns). */
static char *fmt_max(const struct log_fmt *f, const struct log_access_rec *r, size_t *ret_n)
{
    size_t max = log_fmt_max_line(f);
    char *buf = malloc(max);
    long n;

    cr_assert_not_null(buf);
    n = log_fmt_line(f, r, buf, max);
    cr_assert_gt(n, 0, "a line always fits log_fmt_max_line() (%zu)", max);
    cr_assert_leq((size_t)n, max);
    cr_assert_eq(memchr(buf, '\n', (size_t)n), buf + n - 1, "exactly one newline");
    *ret_n = (size_t)n;
    return buf;
}

/*
 * The report of #19.2: two 8,000-byte obs-text header values (6 bytes each
 * once escaped) and an 8,000-byte target made a line longer than the proxy's
 * 64 KiB buffer, and the line was dropped. Now the line is logged, in a
 * buffer of 64 KiB as well as in one of log_fmt_max_line(), with those values
 * cut and marked and every other field intact.
 */
Test(log_access, hostile_long_values_are_cut_not_dropped)
{
    char *names[] = {"X-A", "X-B"};
    char *obs = repeat("\x80\x9f\xff", 3, 8000);
    char *target = repeat("/aaaaaaa", 8, 8000);
    struct core_hdr h[] = {{.name = S("X-A"), .value = {obs, 8000}},
                           {.name = S("x-b"), .value = {obs, 8000}}};
    struct log_access_rec r = rec_full();
    char *big = malloc(64 * 1024);

    r.target = (struct core_str){target, 8000};
    r.req_hdrs = h;
    r.nreq_hdrs = 2;
    for (int fmt = 0; fmt < CFG_LOG_FORMAT_COUNT; fmt++) {
        struct cfg_access_log c = cfg_all((enum cfg_log_format)fmt);
        struct log_fmt *f;
        size_t n;
        char *l;

        c.request_headers = names;
        c.nrequest_headers = 2;
        f = log_fmt_new(&c);
        cr_assert_not_null(f);
        l = fmt_max(f, &r, &n);
        /* The proxy's 64 KiB line buffer of before takes it too. */
        cr_assert_eq(log_fmt_line(f, &r, big, 64 * 1024), (long)n);
        cr_assert_arr_eq(big, l, n);
        if (fmt == CFG_LOG_JSON) {
            json_t *j = parse(l, n);
            const char *keys[] = {"http_x_a", "http_x_b", "path"};

            cr_assert_eq(json_object_size(j), CFG_F_COUNT + 2);
            cr_assert_eq(json_integer_value(json_object_get(j, "status")), 200);
            cr_assert_str_eq(json_string_value(json_object_get(j, "useragent")), "curl/8.0");
            for (size_t i = 0; i < 3; i++) {
                const char *v = json_string_value(json_object_get(j, keys[i]));

                cr_assert_not_null(v, "%s", keys[i]);
                /* decoded: the marker's \u2026 is U+2026 */
                cr_assert(strlen(v) > 6 && strcmp(v + strlen(v) - 8, "\xe2\x80\xa6[cut]") == 0,
                          "%s", keys[i]);
            }
            cr_assert_eq(
                strncmp(json_string_value(json_object_get(j, "request")), "GET /aaaaaaa", 12), 0);
            json_decref(j);
        }
        /* Raw: the marker once per cut value (target in request and path, 2 headers). */
        {
            size_t marks = 0;

            for (const char *p = l;
                 (p = memmem(p, n - (size_t)(p - l), LOG_CUT_MARK, LOG_CUT_LEN)) != NULL; p++)
                marks++;
            cr_assert_eq(marks, 4);
        }
        free(l);
        log_fmt_free(f);
    }
    free(big);
    free(obs);
    free(target);
}

/*
 * The escaped output of a value made of j plain bytes then m copies of unit
 * u, whose escaped form is e with '|' between its characters, in a field
 * alone: exactly the uncut output when it fits LOG_VALUE_MAX, else its
 * longest head ending between two characters that leaves room for the
 * marker, then the marker.
 */
static void check_cut(enum cfg_log_format format, size_t j, const char *u, const char *e, size_t m)
{
    enum cfg_field fld = CFG_F_USERAGENT;
    struct cfg_access_log c = cfg_fields(format, &fld, 1);
    struct log_fmt *f = log_fmt_new(&c);
    size_t pre = format == CFG_LOG_JSON ? strlen("{\"useragent\":\"") : strlen("useragent:");
    size_t post = format == CFG_LOG_JSON ? 3 : 1;
    size_t ul = strlen(u), room = LOG_VALUE_MAX - LOG_CUT_LEN;
    size_t piece[8] = {0}, npiece = 0, el = 0, full, head, wn, n;
    char *v = malloc(j + m * ul), *want, *l;
    struct log_access_rec r = rec_full();

    cr_assert_not_null(f);
    for (const char *p = e; *p; p++) {
        if (*p == '|') {
            npiece++;
            continue;
        }
        piece[npiece]++;
        el++;
    }
    npiece++;
    full = j + m * el;
    want = malloc(full + LOG_CUT_LEN);
    memset(v, 'a', j);
    memset(want, 'a', j);
    for (size_t i = 0, o = j; i < m; i++) {
        memcpy(v + j + i * ul, u, ul);
        for (const char *p = e; *p; p++)
            if (*p != '|')
                want[o++] = *p;
    }
    if (full <= LOG_VALUE_MAX) {
        wn = full;
    } else {
        head = j < room ? j : room;
        for (size_t i = 0; head < room && i < m * npiece; i++) {
            if (head + piece[i % npiece] > room)
                break;
            head += piece[i % npiece];
        }
        memcpy(want + head, LOG_CUT_MARK, LOG_CUT_LEN);
        wn = head + LOG_CUT_LEN;
    }
    r.useragent = (struct core_str){v, j + m * ul};
    l = fmt_max(f, &r, &n);
    cr_assert_eq(n - pre - post, wn, "j %zu m %zu unit %s: %zu bytes, want %zu", j, m, e,
                 n - pre - post, wn);
    cr_assert_arr_eq(l + pre, want, wn, "j %zu m %zu unit %s", j, m, e);
    cr_assert_leq(wn, LOG_VALUE_MAX);
    if (format == CFG_LOG_JSON)
        json_decref(parse(l, n));
    free(l);
    free(v);
    free(want);
    log_fmt_free(f);
}

/* Around the limit, with every kind of piece at every alignment. */
Test(log_access, cut_between_characters_and_escapes)
{
    static const struct {
        const char *in, *json, *ltsv;
    } units[] = {
        {"b", "b", "b"},
        {"\x01", "\\u0001", "\\x01"},
        {"\xff", "\\u00ff", "\\xff"},
        {"\"", "\\\"", "\""},
        {"\\", "\\\\", "\\\\"},
        {"\t", "\\t", "\\t"},
        {"\xc3\xa9", "\xc3\xa9", "\xc3\xa9"},                         /* é */
        {"\xe2\x82\xac", "\xe2\x82\xac", "\xe2\x82\xac"},             /* € */
        {"\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"}, /* 😀 */
        {"\xc3\xa9\x01", "\xc3\xa9|\\u0001", "\xc3\xa9|\\x01"},
        {"\xe2\x82"
         "b",
         "\\u00e2|\\u0082|b", "\\xe2|\\x82|b"}, /* a truncated sequence */
    };

    for (size_t k = 0; k < sizeof(units) / sizeof(units[0]); k++) {
        for (int fmt = 0; fmt < CFG_LOG_FORMAT_COUNT; fmt++) {
            enum cfg_log_format format = (enum cfg_log_format)fmt;
            const char *e = format == CFG_LOG_JSON ? units[k].json : units[k].ltsv;
            size_t el = strlen(e) - (size_t)(strchr(e, '|') ? 1 : 0) -
                        (size_t)(strchr(e, '|') && strchr(strchr(e, '|') + 1, '|') ? 1 : 0);

            /* Outputs of LOG_VALUE_MAX - el to LOG_VALUE_MAX + 2 * el... */
            for (size_t j = 0; j < 12; j++) {
                size_t m = (LOG_VALUE_MAX - j) / el;

                for (size_t d = 0; d < 4; d++)
                    check_cut(format, j, units[k].in, e, m + d - 1);
            }
            /* ...and far past it, the cut falling at every offset of a unit. */
            for (size_t j = LOG_VALUE_MAX - LOG_CUT_LEN - 8; j < LOG_VALUE_MAX - LOG_CUT_LEN + 2;
                 j++)
                check_cut(format, j, units[k].in, e, 3000);
        }
    }
    /* A plain value of 8 MiB is cut like any other. */
    check_cut(CFG_LOG_JSON, 8 << 20, "b", "b", 0);
}

/* A repeated header's joined value is cut as one value, ", " included. */
Test(log_access, joined_headers_cut_as_one_value)
{
    char *names[] = {"Cookie"};
    enum cfg_field fld = CFG_F_STATUS;
    struct cfg_access_log c = cfg_fields(CFG_LOG_JSON, &fld, 1);
    char *v = repeat("c", 1, 1000);
    struct core_hdr h[8];
    struct log_access_rec r = rec_full();
    struct log_fmt *f;
    json_t *j;
    const char *got;
    char *want = malloc(8 * 1002);
    size_t n, wn = 0;
    char *l;

    for (size_t i = 0; i < 8; i++) {
        h[i] = (struct core_hdr){.name = S("cookie"), .value = {v, 1000}};
        if (i)
            memcpy(want + wn, ", ", 2), wn += 2;
        memcpy(want + wn, v, 1000);
        wn += 1000;
    }
    c.request_headers = names;
    c.nrequest_headers = 1;
    f = log_fmt_new(&c);
    r.req_hdrs = h;
    r.nreq_hdrs = 8;
    l = fmt_max(f, &r, &n);
    j = parse(l, n);
    got = json_string_value(json_object_get(j, "http_cookie"));
    cr_assert_not_null(got);
    /* 4085 bytes of the joined value, then U+2026 "[cut]" */
    cr_assert_eq(strlen(got), LOG_VALUE_MAX - LOG_CUT_LEN + 8);
    cr_assert_arr_eq(got, want, LOG_VALUE_MAX - LOG_CUT_LEN);
    cr_assert_str_eq(got + LOG_VALUE_MAX - LOG_CUT_LEN, "\xe2\x80\xa6[cut]");
    json_decref(j);
    free(l);
    /* 4 of them, 4006 bytes, fit: no marker. */
    r.nreq_hdrs = 4;
    l = fmt_max(f, &r, &n);
    j = parse(l, n);
    got = json_string_value(json_object_get(j, "http_cookie"));
    cr_assert_eq(strlen(got), 4006);
    cr_assert_arr_eq(got, want, 4006);
    json_decref(j);
    free(l);
    free(want);
    free(v);
    log_fmt_free(f);
}

/* In request, the target is cut and the method and version stay. */
Test(log_access, request_parts_cut_each)
{
    enum cfg_field fld = CFG_F_REQUEST;
    struct cfg_access_log c = cfg_fields(CFG_LOG_LTSV, &fld, 1);
    struct log_fmt *f = log_fmt_new(&c);
    char *t = repeat("/x", 2, 9000);
    struct log_access_rec r = rec_full();
    size_t n, room = LOG_VALUE_MAX - LOG_CUT_LEN;
    char *l;

    r.target = (struct core_str){t, 9000};
    l = fmt_max(f, &r, &n);
    cr_assert_eq(n, strlen("request:GET ") + room + LOG_CUT_LEN + strlen(" HTTP/1.1\n"));
    cr_assert_arr_eq(l, "request:GET /x/x", 16);
    cr_assert_arr_eq(l + 12, t, room);
    cr_assert_arr_eq(l + 12 + room, LOG_CUT_MARK " HTTP/1.1\n", LOG_CUT_LEN + 10);
    free(l);
    free(t);
    log_fmt_free(f);
}

/*
 * Arbitrarily long hostile values in every string field and many header
 * fields: the line always fits log_fmt_max_line() and is one valid line, and
 * the bound is close to what such a line takes (it is not just huge).
 */
Test(log_access, max_line_holds_the_worst_line)
{
    static const char *const pats[] = {"\x01", "\xff", "\"\\", "\xc3\xa9\x01", "abc\xe2\x82"};
    char *rnames[CFG_MAX_LOG_HEADERS], *snames[CFG_MAX_LOG_HEADERS];
    struct core_hdr rh[2 * CFG_MAX_LOG_HEADERS], sh[2 * CFG_MAX_LOG_HEADERS];

    for (size_t i = 0; i < CFG_MAX_LOG_HEADERS; i++) {
        rnames[i] = malloc(16);
        snames[i] = malloc(16);
        snprintf(rnames[i], 16, "X-Req-%zu", i);
        snprintf(snames[i], 16, "X-Resp-%zu", i);
    }
    for (size_t p = 0; p < sizeof(pats) / sizeof(pats[0]); p++) {
        char *v = repeat(pats[p], strlen(pats[p]), 20000);
        struct core_str sv = {v, 20000};
        struct log_access_rec r = rec_full();

        r.method = r.target = r.version = r.host = r.referrer = r.useragent = sv;
        r.x_forwarded_proto = r.section_io_id = r.section_io_tag = r.content_type = sv;
        r.client_ip = r.upstream_addr = sv;
        r.termination = r.rule = v;
        r.start.tv_sec = 253402300800; /* a five-digit year: the longest time */
        r.duration_us = r.bytes_sent = r.upstream_response_us = INT64_MAX;
        for (size_t i = 0; i < 2 * CFG_MAX_LOG_HEADERS; i++) {
            rh[i].name = (struct core_str){rnames[i / 2], strlen(rnames[i / 2])};
            sh[i].name = (struct core_str){snames[i / 2], strlen(snames[i / 2])};
            rh[i].value = sh[i].value = (struct core_str){v, 3000 + i};
        }
        r.req_hdrs = rh;
        r.nreq_hdrs = 2 * CFG_MAX_LOG_HEADERS;
        r.resp_hdrs = sh;
        r.nresp_hdrs = 2 * CFG_MAX_LOG_HEADERS;
        for (int fmt = 0; fmt < CFG_LOG_FORMAT_COUNT; fmt++) {
            for (size_t nh = 0; nh <= CFG_MAX_LOG_HEADERS; nh += CFG_MAX_LOG_HEADERS) {
                struct cfg_access_log c = cfg_all((enum cfg_log_format)fmt);
                struct log_fmt *f;
                size_t n, tabs = 0;
                char *l;

                c.request_headers = rnames;
                c.response_headers = snames;
                c.nrequest_headers = c.nresponse_headers = nh;
                f = log_fmt_new(&c);
                cr_assert_not_null(f);
                l = fmt_max(f, &r, &n);
                /*
                 * Every string value is cut here: the bound is not much more
                 * (what is left is mostly the 64 bytes of each number).
                 */
                cr_assert_geq(n + 2048, log_fmt_max_line(f), "%zu of %zu", n, log_fmt_max_line(f));
                if (fmt == CFG_LOG_JSON) {
                    json_decref(parse(l, n));
                } else {
                    for (size_t i = 0; i + 1 < n; i++) {
                        unsigned char ch = (unsigned char)l[i];

                        cr_assert((ch >= 0x20 && ch != 0x7f) || ch == '\t', "byte %zu", i);
                        tabs += ch == '\t';
                    }
                    cr_assert_eq(tabs, CFG_F_COUNT - 1 + 2 * nh);
                }
                free(l);
                log_fmt_free(f);
            }
        }
        free(v);
    }
    for (size_t i = 0; i < CFG_MAX_LOG_HEADERS; i++) {
        free(rnames[i]);
        free(snames[i]);
    }
}

/* The bound of a few formats, by hand. */
Test(log_access, max_line_by_format)
{
    enum cfg_field fld[] = {CFG_F_STATUS, CFG_F_HOSTNAME, CFG_F_REQUEST};
    struct cfg_access_log c = cfg_fields(CFG_LOG_JSON, fld, 3);
    struct log_fmt *f = log_fmt_new(&c);

    /* {"status":  ,"hostname":  ,"request":  }\n and the values' bounds */
    cr_assert_eq(log_fmt_max_line(f),
                 10 + 12 + 11 + 3 + 64 + (LOG_VALUE_MAX + 2) + (3 * LOG_VALUE_MAX + 4));
    log_fmt_free(f);
    c = cfg_fields(CFG_LOG_JSON, NULL, 0);
    f = log_fmt_new(&c);
    cr_assert_eq(log_fmt_max_line(f), 3);
    log_fmt_free(f);
}

/*
 * Every cap around a line with cut values: the careful path cuts exactly as
 * the fast one, gives -ENOSPC below the line's length, and writes nothing
 * past the line or past cap (the tail held back before a cut never lands).
 */
Test(log_access, every_cap_same_line_with_cuts)
{
    enum cfg_field fld[] = {CFG_F_STATUS, CFG_F_USERAGENT, CFG_F_REQUEST, CFG_F_BYTES};
    char *names[] = {"X-Custom-Header"};
    char *ua = repeat("\xc3\xa9\x01", 3, 3000); /* 2 + 6 bytes per 3 */
    char *t = repeat("/abc\xe2\x82\xac", 7, 6000);
    struct core_hdr h[] = {{.name = S("x-custom-header"), .value = {ua, 2000}},
                           {.name = S("x-custom-header"), .value = {t, 2100}}};
    struct log_access_rec r = rec_full();

    r.useragent = (struct core_str){ua, 3000};
    r.target = (struct core_str){t, 6000};
    r.req_hdrs = h;
    r.nreq_hdrs = 2;
    for (int fmt = 0; fmt < CFG_LOG_FORMAT_COUNT; fmt++) {
        struct cfg_access_log c = cfg_fields((enum cfg_log_format)fmt, fld, 4);
        struct log_fmt *f;
        size_t len, size;
        char *full, *buf;

        c.request_headers = names;
        c.nrequest_headers = 1;
        f = log_fmt_new(&c);
        full = fmt_max(f, &r, &len);
        size = len + 64;
        buf = malloc(size);
        for (size_t cap = 0; cap <= size; cap++) {
            long n;
            size_t w;

            memset(buf, 0x5a, size);
            n = log_fmt_line(f, &r, buf, cap);
            if (cap < len) {
                cr_assert_eq(n, -ENOSPC, "cap %zu", cap);
                w = cap;
            } else {
                cr_assert_eq(n, (long)len, "cap %zu", cap);
                cr_assert_eq(memcmp(buf, full, len), 0, "cap %zu", cap);
                w = len;
            }
            for (size_t i = w; i < size; i++)
                if (buf[i] != 0x5a)
                    cr_assert_fail("cap %zu: wrote at %zu", cap, i);
        }
        free(buf);
        free(full);
        log_fmt_free(f);
    }
    free(ua);
    free(t);
}
