/*
 * Unit tests for cfg/: defaults, every kind of problem and its exact
 * message, JSON pointers, hostport parsing, and the generated documentation
 * (docs/config.md, cfg/proxy.schema.json) against the schema table.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "cfg/cfg.h"
#include "cfg/schema.h"
#include "tests/cfg/docgen.h"

/* Loads a document; returns the problems joined by '\n' ("" when none), caller frees. */
static char *problems(const char *json, int *ret_rc)
{
    struct cfg_errs e;
    struct cfg *c = NULL;
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    int rc = cfg_load_buf(json, strlen(json), "proxy.json", &c, &e);

    cr_assert_not_null(f);
    for (size_t i = 0; i < e.n; i++)
        fprintf(f, "%s%s", i ? "\n" : "", e.lines[i]);
    fclose(f);
    if (rc == 0) {
        cr_assert_not_null(c);
        cr_assert_eq(e.n, 0);
    } else {
        cr_assert_gt(e.n, 0, "rc %d without a message", rc);
    }
    cfg_errs_free(&e);
    cfg_free(c);
    if (ret_rc)
        *ret_rc = rc;
    return out;
}

#define EXPECT_PROBLEMS(json, expected)                                                            \
    do {                                                                                           \
        int rc_;                                                                                   \
        char *got_ = problems((json), &rc_);                                                       \
        cr_expect_str_eq(got_, (expected), "for %s", (json));                                      \
        cr_expect_eq(rc_, (expected)[0] ? -EINVAL : 0, "rc for %s", (json));                       \
        free(got_);                                                                                \
    } while (0)

static struct cfg *load_ok(const char *json)
{
    struct cfg_errs e;
    struct cfg *c = NULL;
    int rc = cfg_load_buf(json, strlen(json), NULL, &c, &e);

    cr_assert_eq(rc, 0, "%s: %s", json, e.n ? e.lines[0] : "?");
    cfg_errs_free(&e);
    return c;
}

/* ---- defaults ---- */

Test(cfg_defaults, values)
{
    struct cfg *c = cfg_new_default();

    cr_assert_not_null(c);
    cr_expect_eq(c->workers, 0);
    cr_expect_eq(c->shutdown_grace_ms, 10000);
    cr_expect_eq(c->log_level, CFG_LL_INFO);
    cr_expect_eq(c->upstream.connect_timeout_ms, 5000);
    cr_expect_eq(c->upstream.response_timeout_ms, 60000);
    cr_expect_eq(c->upstream.resolve_interval_ms, 5000);
    cr_expect_eq(c->upstream.pool_idle_timeout_ms, 4000);
    cr_expect_eq(c->upstream.pool_max_idle, 4096);
    cr_expect_eq(c->upstream.receive_buffer_bytes, 1048576);
    cr_expect_eq(c->upstream.receive_buffer_total_bytes, 268435456);
    cr_expect_eq(c->client.header_timeout_ms, 10000);
    cr_expect_eq(c->client.idle_timeout_ms, 60000);
    cr_expect_eq(c->client.max_connections, 0);
    cr_expect_eq(c->limits.max_header_bytes, 32768);
    cr_expect_eq(c->limits.max_header_line_bytes, 8192);
    cr_expect_eq(c->limits.max_uri_bytes, 8192);
    cr_expect_eq(c->limits.max_headers, 100);
    cr_expect_eq(c->limits.max_body_bytes, 0);
    cr_expect_eq(c->access_log.format, CFG_LOG_JSON);
    cr_expect_eq(c->access_log.nfields, CFG_F_COUNT);
    for (int i = 0; i < CFG_F_COUNT; i++)
        cr_expect_eq(c->access_log.fields[i], (enum cfg_field)i);
    cr_expect_eq(c->access_log.nrequest_headers, 0);
    cr_expect_null(c->access_log.request_headers);
    cr_expect_eq(c->access_log.nresponse_headers, 0);
    cr_expect_eq(c->access_log.buffer_bytes, 1048576);
    cr_expect_str_eq(c->admin.listen, "127.0.0.1:9000");
    /* Leaves room for ~7 KiB of headers from the edge. */
    cr_expect_geq(c->limits.max_header_bytes, 7 * 1024);
    cfg_free(c);
}

Test(cfg_defaults, empty_object_is_defaults)
{
    struct cfg *c = load_ok("{}"), *d = cfg_new_default();
    char *a = cfg_dump(c), *b = cfg_dump(d);

    cr_assert_str_eq(a, b);
    free(a);
    free(b);
    cfg_free(c);
    cfg_free(d);
}

Test(cfg_defaults, defaults_are_valid)
{
    struct cfg *d = cfg_new_default();
    struct cfg_errs e;

    cr_assert_eq(cfg_validate(d, &e), 0, "%s", e.n ? e.lines[0] : "");
    cfg_errs_free(&e);
    cfg_free(d);
}

Test(cfg_defaults, table_matches_struct)
{
    size_t n;
    const struct cfg_key *k = cfg_schema_keys(&n);
    struct cfg *d = cfg_new_default();

    cr_assert_leq(n, CFG_SCHEMA_MAX_KEYS);
    for (size_t i = 0; i < n; i++) {
        if (k[i].kind == CFG_K_UINT) {
            cr_expect(k[i].size == 4 || k[i].size == 8, "%s", k[i].path);
            cr_expect_leq(k[i].min, k[i].def, "%s", k[i].path);
            cr_expect_leq(k[i].def, k[i].max, "%s", k[i].path);
            cr_expect_leq(k[i].max, k[i].size == 4 ? UINT32_MAX : CFG_JSON_INT_MAX, "%s",
                          k[i].path);
        }
        if (k[i].kind == CFG_K_ENUM)
            cr_expect_lt(k[i].def, k[i].nnames, "%s", k[i].path);
        cr_expect_not_null(k[i].doc, "%s", k[i].path);
        cr_expect_null(strchr(k[i].doc, '|'), "%s: '|' breaks the markdown table", k[i].path);
        /* A key's object comes before it. */
        const char *dot = strrchr(k[i].path, '.');
        if (dot) {
            char parent[64];

            snprintf(parent, sizeof(parent), "%.*s", (int)(dot - k[i].path), k[i].path);
            const struct cfg_key *p = cfg_schema_find(parent);
            cr_expect(p && p < &k[i] && p->kind == CFG_K_OBJECT, "%s", k[i].path);
        }
        cr_expect_eq(cfg_schema_find(k[i].path), &k[i], "%s is listed twice", k[i].path);
    }
    cfg_free(d);
}

Test(cfg_defaults, missing_file_is_defaults)
{
    char dir[] = "/tmp/cfg-test-XXXXXX";
    struct cfg *c = NULL;
    struct cfg_errs e;

    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(cfg_load(dir, &c, &e), 0);
    cr_expect_eq(e.n, 0);
    cr_assert_not_null(c);
    cr_expect_eq(c->upstream.connect_timeout_ms, 5000);
    cfg_free(c);
    cr_expect_eq(cfg_load("/nonexistent/ringproxy/cfg", NULL, &e), 0);
    rmdir(dir);
}

Test(cfg_defaults, null_safe_free)
{
    struct cfg_errs e = {0};

    cfg_free(NULL);
    cfg_errs_free(NULL);
    cfg_errs_free(&e);
    cfg_errs_free(&e);
}

/* ---- loading values ---- */

Test(cfg_load, full_document)
{
    struct cfg *c = load_ok("{\"$schema\": \"x\", \"workers\": 4, \"shutdown_grace_ms\": 0,"
                            " \"log_level\": \"debug\","
                            " \"upstream\": {\"connect_timeout_ms\": 1, \"response_timeout_ms\": "
                            "3600000, \"resolve_interval_ms\": 100, \"pool_idle_timeout_ms\": 2,"
                            " \"pool_max_idle\": 0, \"receive_buffer_bytes\": 0},"
                            " \"client\": {\"header_timeout_ms\": 3, \"idle_timeout_ms\": 4,"
                            " \"max_connections\": 5},"
                            " \"limits\": {\"max_header_bytes\": 1024, \"max_header_line_bytes\":"
                            " 1024, \"max_uri_bytes\": 256, \"max_headers\": 7,"
                            " \"max_body_bytes\": 9007199254740991},"
                            " \"access_log\": {\"format\": \"ltsv\", \"fields\": [\"status\","
                            " \"time\"], \"request_headers\": [\"X-Request-Id\"],"
                            " \"response_headers\": [\"Cache-Control\", \"Age\"],"
                            " \"buffer_bytes\": 65536},"
                            " \"admin\": {\"listen\": \"[::1]:9100\"}}");

    cr_expect_eq(c->workers, 4);
    cr_expect_eq(c->shutdown_grace_ms, 0);
    cr_expect_eq(c->log_level, CFG_LL_DEBUG);
    cr_expect_eq(c->upstream.connect_timeout_ms, 1);
    cr_expect_eq(c->upstream.response_timeout_ms, 3600000);
    cr_expect_eq(c->upstream.resolve_interval_ms, 100);
    cr_expect_eq(c->upstream.pool_idle_timeout_ms, 2);
    cr_expect_eq(c->upstream.pool_max_idle, 0);
    cr_expect_eq(c->upstream.receive_buffer_bytes, 0);
    cr_expect_eq(c->client.header_timeout_ms, 3);
    cr_expect_eq(c->client.idle_timeout_ms, 4);
    cr_expect_eq(c->client.max_connections, 5);
    cr_expect_eq(c->limits.max_header_bytes, 1024);
    cr_expect_eq(c->limits.max_header_line_bytes, 1024);
    cr_expect_eq(c->limits.max_uri_bytes, 256);
    cr_expect_eq(c->limits.max_headers, 7);
    cr_expect_eq(c->limits.max_body_bytes, UINT64_C(9007199254740991));
    cr_expect_eq(c->access_log.format, CFG_LOG_LTSV);
    cr_assert_eq(c->access_log.nfields, 2);
    cr_expect_eq(c->access_log.fields[0], CFG_F_STATUS);
    cr_expect_eq(c->access_log.fields[1], CFG_F_TIME);
    cr_assert_eq(c->access_log.nrequest_headers, 1);
    cr_expect_str_eq(c->access_log.request_headers[0], "X-Request-Id");
    cr_assert_eq(c->access_log.nresponse_headers, 2);
    cr_expect_str_eq(c->access_log.response_headers[0], "Cache-Control");
    cr_expect_str_eq(c->access_log.response_headers[1], "Age");
    cr_expect_eq(c->access_log.buffer_bytes, 65536);
    cr_expect_str_eq(c->admin.listen, "[::1]:9100");
    cfg_free(c);
}

Test(cfg_load, dump_round_trip)
{
    struct cfg *c = load_ok("{\"access_log\": {\"fields\": [\"bytes\"], \"request_headers\":"
                            " [\"A\", \"b-c\"]}, \"limits\": {\"max_body_bytes\": 12345678901}}");
    char *s = cfg_dump(c), *s2;
    struct cfg *c2 = load_ok(s);

    s2 = cfg_dump(c2);
    cr_expect_str_eq(s, s2);
    cr_expect_eq(c2->limits.max_body_bytes, UINT64_C(12345678901));
    cr_expect_eq(c2->access_log.nrequest_headers, 2);
    free(s);
    free(s2);
    cfg_free(c);
    cfg_free(c2);
}

Test(cfg_load, validate_only_and_no_errs)
{
    const char *bad = "{\"workers\": -1}";

    cr_expect_eq(cfg_load_buf(bad, strlen(bad), "x", NULL, NULL), -EINVAL);
    cr_expect_eq(cfg_load_buf("{}", 2, NULL, NULL, NULL), 0);
    cr_expect_eq(cfg_load_buf(NULL, 0, NULL, NULL, NULL), -EINVAL);
}

Test(cfg_load, out_param_untouched_on_failure)
{
    struct cfg *c = (struct cfg *)0x1;
    struct cfg_errs e;

    cr_expect_eq(cfg_load_buf("{\"x\":1}", 7, NULL, &c, &e), -EINVAL);
    cr_expect_eq(c, (struct cfg *)0x1);
    cfg_errs_free(&e);
}

/* ---- types ---- */

Test(cfg_types, integers)
{
    EXPECT_PROBLEMS("{\"workers\": \"4\"}", "/workers: expected an integer from 0 to 1024, got "
                                            "\"4\"; write the number without quotes");
    EXPECT_PROBLEMS("{\"workers\": true}",
                    "/workers: expected an integer from 0 to 1024, got true");
    EXPECT_PROBLEMS("{\"workers\": 1.0}", "/workers: expected an integer from 0 to 1024, got 1.0");
    EXPECT_PROBLEMS("{\"workers\": 1e2}",
                    "/workers: expected an integer from 0 to 1024, got 100.0");
    EXPECT_PROBLEMS("{\"workers\": -1}", "/workers: expected an integer from 0 to 1024, got -1");
    EXPECT_PROBLEMS("{\"workers\": null}",
                    "/workers: expected an integer from 0 to 1024, got null");
    EXPECT_PROBLEMS("{\"workers\": {}}", "/workers: expected an integer from 0 to 1024, got {}");
    EXPECT_PROBLEMS("{\"workers\": [1]}", "/workers: expected an integer from 0 to 1024, got [1]");
    EXPECT_PROBLEMS("{\"upstream\": {\"response_timeout_ms\": \"fast\"}}",
                    "/upstream/response_timeout_ms: expected an integer from 1 to 3600000, got "
                    "\"fast\"");
    EXPECT_PROBLEMS("{\"workers\": 0}", "");
    EXPECT_PROBLEMS("{\"workers\": -0}", "");
}

Test(cfg_types, unsigned_64)
{
    EXPECT_PROBLEMS("{\"limits\": {\"max_body_bytes\": 9007199254740991}}", "");
    EXPECT_PROBLEMS("{\"limits\": {\"max_body_bytes\": 9007199254740992}}",
                    "/limits/max_body_bytes: expected an integer from 0 to 9007199254740991, got "
                    "9007199254740992");
    EXPECT_PROBLEMS("{\"limits\": {\"max_body_bytes\": -9223372036854775808}}",
                    "/limits/max_body_bytes: expected an integer from 0 to 9007199254740991, got "
                    "-9223372036854775808");
    EXPECT_PROBLEMS("{\"limits\": {\"max_headers\": 4294967296}}",
                    "/limits/max_headers: expected an integer from 1 to 10000, got 4294967296");
}

Test(cfg_types, objects_strings_enums)
{
    EXPECT_PROBLEMS("{\"upstream\": 5}", "/upstream: expected an object, got 5");
    EXPECT_PROBLEMS("{\"upstream\": []}", "/upstream: expected an object, got []");
    EXPECT_PROBLEMS("{\"$schema\": 5}", "/$schema: expected a string, got 5");
    EXPECT_PROBLEMS("{\"log_level\": \"verbose\"}",
                    "/log_level: expected one of \"error\", \"warn\", \"info\", \"debug\", got "
                    "\"verbose\"");
    EXPECT_PROBLEMS("{\"log_level\": \"Debug\"}",
                    "/log_level: expected one of \"error\", \"warn\", \"info\", \"debug\", got "
                    "\"Debug\"; did you mean \"debug\"?");
    EXPECT_PROBLEMS("{\"log_level\": 3}", "/log_level: expected one of \"error\", \"warn\", "
                                          "\"info\", \"debug\", got 3");
    EXPECT_PROBLEMS("{\"access_log\": {\"format\": \"jsonl\"}}",
                    "/access_log/format: expected one of \"json\", \"ltsv\", got \"jsonl\"; did "
                    "you mean \"json\"?");
}

Test(cfg_types, got_value_is_truncated)
{
    EXPECT_PROBLEMS(
        "{\"workers\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaa\"}",
        "/workers: expected an integer from 0 to 1024, got "
        "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...");
    /* jansson's ASCII output keeps DEL: the loader escapes it (found by fuzz_cfg). */
    EXPECT_PROBLEMS("{\"workers\": \"a\x7f\"}",
                    "/workers: expected an integer from 0 to 1024, got \"a\\u007F\"");
    EXPECT_PROBLEMS("{\"workers\": \"\\u0007\\u00e9\"}",
                    "/workers: expected an integer from 0 to 1024, got \"\\u0007\\u00E9\"");
}

/* ---- ranges, for every integer key of the table ---- */

Test(cfg_range, every_integer_key)
{
    size_t n;
    const struct cfg_key *k = cfg_schema_keys(&n);

    for (size_t i = 0; i < n; i++) {
        char ptr[128], json[512], want[512], tail[128];
        const char *dot;

        if (k[i].kind != CFG_K_UINT)
            continue;
        cfg_key_pointer(k[i].path, ptr, sizeof(ptr));
        dot = strrchr(k[i].path, '.');
        uint64_t vals[] = {k[i].min, k[i].max, k[i].min - 1, k[i].max + 1};
        for (size_t v = 0; v < 4; v++) {
            int ok = v < 2;

            if (v == 2 && k[i].min == 0)
                snprintf(tail, sizeof(tail), "-1");
            else
                snprintf(tail, sizeof(tail), "%llu", (unsigned long long)vals[v]);
            if (dot)
                snprintf(json, sizeof(json), "{\"%.*s\": {\"%s\": %s}}", (int)(dot - k[i].path),
                         k[i].path, dot + 1, tail);
            else
                snprintf(json, sizeof(json), "{\"%s\": %s}", k[i].path, tail);
            /* Rules between keys may reject an extreme value; check the range only. */
            int rc;
            char *got = problems(json, &rc);

            if (ok) {
                cr_expect(strstr(got, "expected an integer") == NULL, "%s: %s", json, got);
            } else {
                snprintf(want, sizeof(want), "%s: expected an integer from %llu to %llu, got %s",
                         ptr, (unsigned long long)k[i].min, (unsigned long long)k[i].max, tail);
                cr_expect_str_eq(got, want);
            }
            free(got);
        }
    }
}

/* ---- unknown keys ---- */

Test(cfg_unknown, suggestions)
{
    EXPECT_PROBLEMS("{\"upstreams\": {}}", "/upstreams: unknown key; did you mean \"upstream\"?");
    EXPECT_PROBLEMS("{\"Workers\": 1}", "/Workers: unknown key; did you mean \"workers\"?");
    EXPECT_PROBLEMS("{\"wokrers\": 1}", "/wokrers: unknown key; did you mean \"workers\"?");
    EXPECT_PROBLEMS("{\"upstream\": {\"conect_timeout_ms\": 1}}",
                    "/upstream/conect_timeout_ms: unknown key; did you mean "
                    "\"connect_timeout_ms\"?");
    EXPECT_PROBLEMS("{\"upstream\": {\"connect_timeout\": 1}}",
                    "/upstream/connect_timeout: unknown key; did you mean "
                    "\"connect_timeout_ms\"?");
    EXPECT_PROBLEMS("{\"connect_timeout_ms\": 1}", "/connect_timeout_ms: unknown key here; did "
                                                   "you mean /upstream/connect_timeout_ms?");
    EXPECT_PROBLEMS("{\"client\": {\"pool_max_idle\": 1}}",
                    "/client/pool_max_idle: unknown key here; did you mean "
                    "/upstream/pool_max_idle?");
    EXPECT_PROBLEMS("{\"upstream.connect_timeout_ms\": 1}",
                    "/upstream.connect_timeout_ms: unknown key here; did you mean "
                    "/upstream/connect_timeout_ms? (keys nest as objects)");
    EXPECT_PROBLEMS("{\"admin\": {\"port\": 1}}",
                    "/admin/port: unknown key; expected one of \"listen\"");
    EXPECT_PROBLEMS("{\"x\": 1}",
                    "/x: unknown key; expected one of \"$schema\", \"workers\", "
                    "\"shutdown_grace_ms\", \"log_level\", \"engine\", \"upstream\", \"client\", "
                    "\"limits\", \"access_log\", \"admin\", \"lists\", \"rules\", "
                    "\"error_pages\"");
}

Test(cfg_unknown, distance)
{
    cr_expect_eq(cfg_distance("abc", 3, "abc", 3, 3), 0);
    cr_expect_eq(cfg_distance("abc", 3, "ABC", 3, 3), 0);
    cr_expect_eq(cfg_distance("abc", 3, "acb", 3, 3), 1);
    cr_expect_eq(cfg_distance("abc", 3, "ab", 2, 3), 1);
    cr_expect_eq(cfg_distance("kitten", 6, "sitting", 7, 5), 3);
    cr_expect_eq(cfg_distance("a", 1, "abcdef", 6, 2), 3);
    const char *cand[] = {"upstream", "client", "limits"};
    cr_expect_str_eq(cfg_suggest("clinet", 6, cand, 3), "client");
    cr_expect_null(cfg_suggest("zzzzzz", 6, cand, 3));
    cr_expect_null(cfg_suggest("", 0, cand, 3));
}

Test(cfg_unknown, long_key_is_cut)
{
    char json[400], want[400];
    char key[201];

    memset(key, 'k', 200);
    key[200] = '\0';
    snprintf(json, sizeof(json), "{\"%s\": 1}", key);
    int rc;
    char *got = problems(json, &rc);
    snprintf(want, sizeof(want), "/%.64s...: unknown key", key);
    cr_expect(strncmp(got, want, strlen(want)) == 0, "%s", got);
    free(got);
}

/* ---- JSON pointers ---- */

Test(cfg_pointer, escaping)
{
    EXPECT_PROBLEMS("{\"a/b\": 1}",
                    "/a~1b: unknown key; expected one of \"$schema\", "
                    "\"workers\", \"shutdown_grace_ms\", \"log_level\", "
                    "\"engine\", \"upstream\", \"client\", \"limits\", \"access_log\", "
                    "\"admin\", \"lists\", \"rules\", \"error_pages\"");
    char *got = problems("{\"upstream\": {\"m~n/o\": 1, \"\\u0001\\u00e9\\ud83d\\ude00\\\\\": 2, "
                         "\"\": 3}}",
                         NULL);
    cr_expect(strstr(got, "/upstream/m~0n~1o: unknown key") == got, "%s", got);
    cr_expect(strstr(got, "\n/upstream/\\u0001\\u00E9\\uD83D\\uDE00\\\\: unknown key") != NULL,
              "%s", got);
    cr_expect(strstr(got, "\n/upstream/: unknown key") != NULL, "%s", got);
    free(got);
}

Test(cfg_pointer, array_indices)
{
    EXPECT_PROBLEMS("{\"access_log\": {\"fields\": [\"time\", 5]}}",
                    "/access_log/fields/1: expected a field name (a string), got 5");
}

Test(cfg_pointer, key_pointer)
{
    char buf[64];

    cfg_key_pointer("upstream.connect_timeout_ms", buf, sizeof(buf));
    cr_expect_str_eq(buf, "/upstream/connect_timeout_ms");
    cfg_key_pointer("workers", buf, sizeof(buf));
    cr_expect_str_eq(buf, "/workers");
    cfg_key_pointer("workers", buf, 4);
    cr_expect_str_eq(buf, "/wo");
}

/* ---- syntax and file-level problems ---- */

Test(cfg_syntax, one_line_each)
{
    EXPECT_PROBLEMS("", "proxy.json: empty file; write {} for the built-in defaults, or remove "
                        "the file");
    EXPECT_PROBLEMS(" \n\t\r\n", "proxy.json: empty file; write {} for the built-in defaults, or "
                                 "remove the file");
    EXPECT_PROBLEMS("[1, 2]", "proxy.json: expected an object {...} at the top level, got [1,2]");
    EXPECT_PROBLEMS("\"x\"", "proxy.json: expected an object {...} at the top level, got \"x\"");
    EXPECT_PROBLEMS("7", "proxy.json: expected an object {...} at the top level, got 7");
    EXPECT_PROBLEMS("null", "proxy.json: expected an object {...} at the top level, got null");
    EXPECT_PROBLEMS("{\"workers\": 1,\n \"workers\": 2}",
                    "proxy.json:2:10: duplicate object key near '\"workers\"'");
    EXPECT_PROBLEMS("{\"workers\": 1,}", "proxy.json:1:15: string or '}' expected near '}'");
    EXPECT_PROBLEMS("{} {}", "proxy.json:1:4: end of file expected near '{'");
    EXPECT_PROBLEMS("{\"a\": 99999999999999999999}",
                    "proxy.json:1:26: too big integer near '99999999999999999999'");
    EXPECT_PROBLEMS("{\"a\": \"\\u0000\"}",
                    "proxy.json:1:14: \\u0000 is not allowed without JSON_ALLOW_NUL near "
                    "'\"\\u0000\"'");
    EXPECT_PROBLEMS("\xef\xbb\xbf{}",
                    "proxy.json: starts with a UTF-8 byte order mark; save the file without it");
    EXPECT_PROBLEMS("{\"a\":\"\xc3\xa9\xff\"}",
                    "proxy.json:1:7: invalid UTF-8: unable to decode byte 0xff near "
                    "'\"\\xc3\\xa9' (byte offset 8)");
    EXPECT_PROBLEMS("{\"a\x01\":1}", "proxy.json:1:3: control character 0x1 near '\"a'");
}

Test(cfg_syntax, embedded_nul_byte)
{
    struct cfg_errs e;

    cr_expect_eq(cfg_load_buf("{}\0", 3, NULL, NULL, &e), -EINVAL);
    cr_expect_eq(e.n, 1);
    cfg_errs_free(&e);
}

Test(cfg_syntax, too_large)
{
    size_t n = CFG_MAX_FILE_BYTES + 1;
    char *big = malloc(n);
    struct cfg_errs e;

    cr_assert_not_null(big);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    cr_expect_eq(cfg_load_buf(big, n, "proxy.json", NULL, &e), -EFBIG);
    cr_assert_eq(e.n, 1);
    cr_expect_str_eq(e.lines[0], "proxy.json: larger than 1 MiB (1048577 bytes)");
    cfg_errs_free(&e);
    /* Exactly the limit is fine. */
    big[n - 2] = '}';
    cr_expect_eq(cfg_load_buf(big, n - 1, "proxy.json", NULL, &e), 0);
    free(big);
}

Test(cfg_syntax, name_is_shown_safely)
{
    struct cfg_errs e;

    cr_expect_eq(cfg_load_buf("[]", 2, "a\nb.json", NULL, &e), -EINVAL);
    cr_assert_eq(e.n, 1);
    cr_expect_str_eq(e.lines[0], "a\\x0ab.json: expected an object {...} at the top level, got []");
    cfg_errs_free(&e);
}

/* ---- every problem, in file order ---- */

Test(cfg_order, all_problems_in_file_order)
{
    EXPECT_PROBLEMS(
        "{\"zz\": 1, \"upstream\": {\"pool_max_idle\": -5, \"x\": 1},"
        " \"workers\": 2000, \"access_log\": {\"fields\": [\"timme\"]},"
        " \"admin\": {\"listen\": \"10.0.0.1:9000\"}}",
        "/zz: unknown key; expected one of \"$schema\", \"workers\", "
        "\"shutdown_grace_ms\", \"log_level\", \"engine\", \"upstream\", \"client\", \"limits\", "
        "\"access_log\", \"admin\", \"lists\", \"rules\", \"error_pages\"\n"
        "/upstream/pool_max_idle: expected an integer from 0 to 65536, got -5\n"
        "/upstream/x: unknown key; expected one of \"connect_timeout_ms\", "
        "\"response_timeout_ms\", \"resolve_interval_ms\", \"pool_idle_timeout_ms\", "
        "\"pool_max_idle\", \"receive_buffer_bytes\", \"receive_buffer_total_bytes\"\n"
        "/workers: expected an integer from 0 to 1024, got 2000\n"
        "/access_log/fields/0: unknown field \"timme\"; did you mean \"time\"?\n"
        "/admin/listen: must be a loopback address (127.0.0.0/8 or [::1]) per the "
        "Section contract (C2), got \"10.0.0.1:9000\"");
}

/* ---- access_log ---- */

Test(cfg_fields, problems)
{
    EXPECT_PROBLEMS("{\"access_log\": {\"fields\": []}}",
                    "/access_log/fields: expected at least 1 field name, got []");
    EXPECT_PROBLEMS("{\"access_log\": {\"fields\": \"time\"}}",
                    "/access_log/fields: expected an array of field names, got \"time\"");
    EXPECT_PROBLEMS("{\"access_log\": {\"fields\": [\"time\", \"status\", \"time\"]}}",
                    "/access_log/fields/2: duplicate of /access_log/fields/0 (\"time\")");
    EXPECT_PROBLEMS("{\"access_log\": {\"fields\": [\"http_x_request_id\"]}}",
                    "/access_log/fields/0: unknown field \"http_x_request_id\"; to log a request "
                    "header, list its name in /access_log/request_headers");
    EXPECT_PROBLEMS("{\"access_log\": {\"fields\": [\"sent_http_age\"]}}",
                    "/access_log/fields/0: unknown field \"sent_http_age\"; to log a response "
                    "header, list its name in /access_log/response_headers");
    char *got = problems("{\"access_log\": {\"fields\": [\"zzzzzzzz\"]}}", NULL);
    cr_expect(strstr(got, "/access_log/fields/0: unknown field \"zzzzzzzz\"; the fields are: "
                          "time, time_taken_ms, ") == got,
              "%s", got);
    cr_expect(strstr(got, ", termination") != NULL, "%s", got);
    free(got);
}

Test(cfg_fields, names)
{
    for (int f = 0; f < CFG_F_COUNT; f++) {
        const char *name = cfg_field_name((enum cfg_field)f);

        cr_expect_eq(cfg_field_from_name(name, strlen(name)), f);
        cr_expect_str_neq((char *)cfg_field_doc((enum cfg_field)f), "?");
    }
    cr_expect_eq(cfg_field_from_name("nope", 4), -ENOENT);
    cr_expect_eq(cfg_field_from_name("time", 3), -ENOENT);
    cr_expect_str_eq(cfg_field_name(CFG_F_COUNT), "?");
    cr_expect_str_eq(cfg_log_level_name(CFG_LL_WARN), "warn");
    cr_expect_str_eq(cfg_log_level_name(CFG_LL_COUNT), "?");
    cr_expect_str_eq(cfg_log_format_name(CFG_LOG_LTSV), "ltsv");
    cr_expect_str_eq(cfg_log_format_name(CFG_LOG_FORMAT_COUNT), "?");
}

Test(cfg_headers, field_names)
{
    char buf[64];

    cr_expect_eq(cfg_header_field_name("X-Request-Id", 0, buf, sizeof(buf)), 17);
    cr_expect_str_eq(buf, "http_x_request_id");
    cr_expect_eq(cfg_header_field_name("Cache-Control", 1, buf, sizeof(buf)), 23);
    cr_expect_str_eq(buf, "sent_http_cache_control");
    cr_expect_eq(cfg_header_field_name("Cache-Control", 1, buf, 23), -ENOSPC);
    cr_expect_eq(cfg_header_field_name("Cache-Control", 1, buf, 24), 23);
}

Test(cfg_headers, problems)
{
    EXPECT_PROBLEMS("{\"access_log\": {\"request_headers\": [\"X-Id\", \"x_id\"]}}",
                    "/access_log/request_headers/1: duplicate of /access_log/request_headers/0 "
                    "(both are logged as \"http_x_id\")");
    EXPECT_PROBLEMS("{\"access_log\": {\"response_headers\": [\"Age\", \"AGE\"]}}",
                    "/access_log/response_headers/1: duplicate of /access_log/response_headers/0 "
                    "(both are logged as \"sent_http_age\")");
    EXPECT_PROBLEMS("{\"access_log\": {\"request_headers\": [\"X Y\", \"\", 3, \"a:b\"]}}",
                    "/access_log/request_headers/0: expected a header name (letters, digits and "
                    "!#$%&'*+-.^_`|~), got \"X Y\"\n"
                    "/access_log/request_headers/1: expected a header name of 1 to 64 characters, "
                    "got \"\"\n"
                    "/access_log/request_headers/2: expected a header name (a string), got 3\n"
                    "/access_log/request_headers/3: expected a header name (letters, digits and "
                    "!#$%&'*+-.^_`|~), got \"a:b\"");
    EXPECT_PROBLEMS("{\"access_log\": {\"request_headers\": [\"X-Forwarded-Proto\"]}}",
                    "/access_log/request_headers/0: \"X-Forwarded-Proto\" would be logged as "
                    "\"http_x_forwarded_proto\", which is a field already; list "
                    "\"http_x_forwarded_proto\" in /access_log/fields instead");
    EXPECT_PROBLEMS("{\"access_log\": {\"request_headers\": {}}}",
                    "/access_log/request_headers: expected an array of header names, got {}");
    EXPECT_PROBLEMS(
        "{\"access_log\": {\"response_headers\": "
        "[\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"]}}",
        "/access_log/response_headers/0: expected a header name of 1 to 64 "
        "characters, got \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...");
    EXPECT_PROBLEMS("{\"access_log\": {\"request_headers\": [\"!#$%&'*+-.^_`|~09AZaz\"]}}", "");
}

Test(cfg_headers, at_most_32)
{
    char json[2048];
    size_t n = 0;

    n += (size_t)snprintf(json + n, sizeof(json) - n, "{\"access_log\": {\"request_headers\": [");
    for (int i = 0; i < 33; i++)
        n += (size_t)snprintf(json + n, sizeof(json) - n, "%s\"h%d\"", i ? ", " : "", i);
    snprintf(json + n, sizeof(json) - n, "]}}");
    EXPECT_PROBLEMS(json, "/access_log/request_headers: expected at most 32 header names, got 33");
    /* 32 is fine. */
    char *cut = strstr(json, ", \"h32\"");
    memmove(cut, cut + 7, strlen(cut + 7) + 1);
    EXPECT_PROBLEMS(json, "");
}

/* ---- admin.listen and hostport parsing ---- */

Test(cfg_listen, problems)
{
    EXPECT_PROBLEMS("{\"admin\": {\"listen\": \"127.0.0.1:9000\"}}", "");
    EXPECT_PROBLEMS("{\"admin\": {\"listen\": \"127.9.8.7:1\"}}", "");
    EXPECT_PROBLEMS("{\"admin\": {\"listen\": \"[::1]:65535\"}}", "");
    EXPECT_PROBLEMS("{\"admin\": {\"listen\": \"0.0.0.0:9000\"}}",
                    "/admin/listen: must be a loopback address (127.0.0.0/8 or [::1]) per the "
                    "Section contract (C2), got \"0.0.0.0:9000\"");
    EXPECT_PROBLEMS("{\"admin\": {\"listen\": \"[::]:9000\"}}",
                    "/admin/listen: must be a loopback address (127.0.0.0/8 or [::1]) per the "
                    "Section contract (C2), got \"[::]:9000\"");
    EXPECT_PROBLEMS("{\"admin\": {\"listen\": \"localhost:9000\"}}",
                    "/admin/listen: expected a numeric \"ADDR:PORT\" or \"[IPV6]:PORT\" with PORT "
                    "from 1 to 65535 (host names are not resolved), got \"localhost:9000\"");
    EXPECT_PROBLEMS("{\"admin\": {\"listen\": 9000}}",
                    "/admin/listen: expected a string \"ADDR:PORT\" such as \"127.0.0.1:9000\", "
                    "got 9000");
}

static int parse(const char *s, int *ret_family, unsigned *ret_port)
{
    struct sockaddr_storage ss;
    unsigned len = 0;
    int r = cfg_parse_hostport(s, &ss, &len);

    if (r < 0)
        return r;
    *ret_family = ss.ss_family;
    if (ss.ss_family == AF_INET) {
        cr_expect_eq(len, sizeof(struct sockaddr_in));
        *ret_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    } else {
        cr_expect_eq(len, sizeof(struct sockaddr_in6));
        *ret_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return 0;
}

Test(cfg_addr, parse_hostport)
{
    static const char *good4[] = {"127.0.0.1:9000", "0.0.0.0:80", "10.1.2.3:65535",
                                  "255.255.255.255:1"};
    static const char *good6[] = {"[::1]:9000", "[::]:80", "[2001:db8::1]:443",
                                  "[::ffff:127.0.0.1]:1"};
    static const char *bad[] = {"",
                                ":80",
                                "127.0.0.1",
                                "127.0.0.1:",
                                "127.0.0.1:0",
                                "127.0.0.1:65536",
                                "127.0.0.1:080",
                                "127.0.0.1:+80",
                                "127.0.0.1:-1",
                                "127.0.0.1:8 0",
                                "127.0.0.1:123456",
                                "localhost:80",
                                "127.1:80",
                                "0x7f.0.0.1:80",
                                "127.000.0.1:80",
                                " 127.0.0.1:80",
                                "::1:80",
                                "[::1]",
                                "[::1]:",
                                "[::1:80",
                                "::1]:80",
                                "[]:80",
                                "[127.0.0.1]:80",
                                "[fe80::1%eth0]:80",
                                "[::1]x:80",
                                "*:80"};
    int fam;
    unsigned port;

    for (size_t i = 0; i < sizeof(good4) / sizeof(good4[0]); i++) {
        cr_expect_eq(parse(good4[i], &fam, &port), 0, "%s", good4[i]);
        cr_expect_eq(fam, AF_INET, "%s", good4[i]);
    }
    for (size_t i = 0; i < sizeof(good6) / sizeof(good6[0]); i++) {
        cr_expect_eq(parse(good6[i], &fam, &port), 0, "%s", good6[i]);
        cr_expect_eq(fam, AF_INET6, "%s", good6[i]);
    }
    cr_expect_eq(parse("127.0.0.1:9000", &fam, &port), 0);
    cr_expect_eq(port, 9000);
    cr_expect_eq(parse("[::1]:65535", &fam, &port), 0);
    cr_expect_eq(port, 65535);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_eq(parse(bad[i], &fam, &port), -EINVAL, "%s", bad[i]);
    cr_expect_eq(cfg_parse_hostport(NULL, NULL, NULL), -EINVAL);
}

Test(cfg_addr, untouched_on_failure)
{
    struct sockaddr_storage ss;
    unsigned len = 77;

    memset(&ss, 0xab, sizeof(ss));
    cr_expect_eq(cfg_parse_hostport("nope:1", &ss, &len), -EINVAL);
    cr_expect_eq(len, 77);
    cr_expect_eq(((unsigned char *)&ss)[0], 0xab);
}

static int loopback(const char *s)
{
    struct sockaddr_storage ss;
    unsigned len;

    cr_assert_eq(cfg_parse_hostport(s, &ss, &len), 0, "%s", s);
    return cfg_addr_is_loopback(&ss);
}

Test(cfg_addr, loopback)
{
    cr_expect(loopback("127.0.0.1:1"));
    cr_expect(loopback("127.255.255.254:1"));
    cr_expect(loopback("[::1]:1"));
    cr_expect(loopback("[0:0:0:0:0:0:0:1]:1"));
    cr_expect_not(loopback("128.0.0.1:1"));
    cr_expect_not(loopback("126.255.255.255:1"));
    cr_expect_not(loopback("0.0.0.0:1"));
    cr_expect_not(loopback("[::]:1"));
    cr_expect_not(loopback("[::2]:1"));
    cr_expect_not(loopback("[::ffff:127.0.0.1]:1"));
    struct sockaddr_storage unix_ss = {.ss_family = AF_UNIX};
    cr_expect_not(cfg_addr_is_loopback(&unix_ss));
}

/* ---- rules between keys ---- */

Test(cfg_rules, messages)
{
    EXPECT_PROBLEMS("{\"limits\": {\"max_header_bytes\": 4096}}",
                    "/limits/max_header_bytes: 4096 must not be less than "
                    "/limits/max_header_line_bytes (8192, the default): a header line is part of "
                    "the request head\n"
                    "/limits/max_header_bytes: 4096 must not be less than /limits/max_uri_bytes "
                    "(8192, the default): the request target is part of the request head");
    EXPECT_PROBLEMS("{\"limits\": {\"max_uri_bytes\": 40000}}",
                    "/limits/max_uri_bytes: 40000 must not exceed /limits/max_header_bytes (32768, "
                    "the default): the request target is part of the request head");
    EXPECT_PROBLEMS("{\"limits\": {\"max_header_line_bytes\": 5000, \"max_header_bytes\": 4096,"
                    " \"max_uri_bytes\": 4096}}",
                    "/limits/max_header_line_bytes: 5000 must not exceed /limits/max_header_bytes "
                    "(4096): a header line is part of the request head");
    /* A rejected key takes no part in the rules. */
    EXPECT_PROBLEMS("{\"limits\": {\"max_header_bytes\": 1, \"max_uri_bytes\": 40000}}",
                    "/limits/max_header_bytes: expected an integer from 1024 to 1048576, got 1");
    EXPECT_PROBLEMS("{\"limits\": {\"max_header_bytes\": 4096, \"max_uri_bytes\": 4096,"
                    " \"max_header_line_bytes\": 4096}}",
                    "");
}

/* ---- cfg_validate: a config changed in memory ---- */

static char *validate_lines(const struct cfg *c, int *ret_rc)
{
    struct cfg_errs e;
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);

    *ret_rc = cfg_validate(c, &e);
    for (size_t i = 0; i < e.n; i++)
        fprintf(f, "%s%s", i ? "\n" : "", e.lines[i]);
    fclose(f);
    cfg_errs_free(&e);
    return out;
}

Test(cfg_validate, overrides)
{
    struct cfg *c = cfg_new_default();
    char *hdrs[] = {"X-A", "x_a", "bad name"};
    int rc;
    char *got;

    c->workers = 5000;
    c->log_level = (enum cfg_log_level)9;
    c->limits.max_body_bytes = UINT64_MAX;
    c->access_log.fields[1] = CFG_F_TIME;
    c->access_log.fields[2] = (enum cfg_field)77;
    c->access_log.request_headers = hdrs;
    c->access_log.nrequest_headers = 3;
    strcpy(c->admin.listen, "0.0.0.0:9000");
    c->limits.max_uri_bytes = 65536;
    got = validate_lines(c, &rc);
    cr_expect_eq(rc, -EINVAL);
    cr_expect_str_eq(got,
                     "/workers: expected an integer from 0 to 1024, got 5000\n"
                     "/log_level: expected one of \"error\", \"warn\", \"info\", \"debug\", got 9\n"
                     "/limits/max_body_bytes: expected an integer from 0 to 9007199254740991, got "
                     "1.84467440737096e19\n"
                     "/access_log/fields/1: duplicate of /access_log/fields/0 (\"time\")\n"
                     "/access_log/fields/2: expected a field name (a string), got 77\n"
                     "/access_log/request_headers/1: duplicate of /access_log/request_headers/0 "
                     "(both are logged as \"http_x_a\")\n"
                     "/access_log/request_headers/2: expected a header name (letters, digits and "
                     "!#$%&'*+-.^_`|~), got \"bad name\"\n"
                     "/admin/listen: must be a loopback address (127.0.0.0/8 or [::1]) per the "
                     "Section contract (C2), got \"0.0.0.0:9000\"\n"
                     "/limits/max_uri_bytes: 65536 must not exceed /limits/max_header_bytes "
                     "(32768): the request target is part of the request head");
    free(got);
    c->access_log.request_headers = NULL;
    c->access_log.nrequest_headers = 0;
    cfg_free(c);
}

Test(cfg_validate, corrupt_counts)
{
    struct cfg *c = cfg_new_default();
    int rc;
    char *got;

    c->access_log.nfields = 0;
    c->access_log.nresponse_headers = 1; /* with a NULL array */
    memset(c->admin.listen, 'x', sizeof(c->admin.listen));
    got = validate_lines(c, &rc);
    cr_expect_eq(rc, -EINVAL);
    cr_expect_str_eq(got, "/access_log/fields: expected at least 1 field name, got []\n"
                          "/access_log/response_headers/0: expected a header name (a string), got "
                          "null\n"
                          "/admin/listen: expected a numeric \"ADDR:PORT\" or \"[IPV6]:PORT\" with "
                          "PORT from 1 to 65535 (host names are not resolved), got "
                          "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...");
    free(got);
    c->access_log.nresponse_headers = 0;
    c->access_log.nfields = CFG_F_COUNT + 2;
    got = validate_lines(c, &rc);
    cr_expect(strstr(got,
                     "/access_log/fields/27: expected a field name (a string), got null\n"
                     "/access_log/fields/28: expected a field name (a string), got null") != NULL,
              "%s", got);
    free(got);
    cfg_free(c);
}

/* ---- files ---- */

static char *tmpdir_with(const char *content, size_t len)
{
    char *dir = strdup("/tmp/cfg-test-XXXXXX"), path[256];
    int fd;

    cr_assert_not_null(mkdtemp(dir));
    if (content) {
        snprintf(path, sizeof(path), "%s/proxy.json", dir);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        cr_assert_geq(fd, 0);
        cr_assert_eq(write(fd, content, len), (ssize_t)len);
        close(fd);
    }
    return dir;
}

static void rm_tmpdir(char *dir)
{
    char cmd[300];

    snprintf(cmd, sizeof(cmd), "chmod -R u+rwx '%s' && rm -rf '%s'", dir, dir);
    cr_expect_eq(system(cmd), 0);
    free(dir);
}

static char *load_dir_err(const char *dir, int *ret_rc)
{
    struct cfg_errs e;
    char *line;

    *ret_rc = cfg_load(dir, NULL, &e);
    cr_assert_eq(e.n, *ret_rc == 0 ? 0 : 1, "rc %d", *ret_rc);
    line = strdup(e.n ? e.lines[0] : "");
    cfg_errs_free(&e);
    return line;
}

Test(cfg_file, good_file_and_trailing_slash)
{
    const char *json = "{\"workers\": 3}";
    char *dir = tmpdir_with(json, strlen(json)), slashed[300];
    struct cfg *c = NULL;
    struct cfg_errs e;

    snprintf(slashed, sizeof(slashed), "%s//", dir);
    cr_assert_eq(cfg_load(slashed, &c, &e), 0);
    cr_expect_eq(c->workers, 3);
    cfg_free(c);
    rm_tmpdir(dir);
}

Test(cfg_file, content_errors_name_the_file)
{
    char *dir = tmpdir_with("", 0);
    int rc;
    char *line = load_dir_err(dir, &rc);

    cr_expect_eq(rc, -EINVAL);
    cr_expect_str_eq(line, "proxy.json: empty file; write {} for the built-in defaults, or remove "
                           "the file");
    free(line);
    rm_tmpdir(dir);
}

Test(cfg_file, directory_fifo_dangling_link_too_large)
{
    char *dir = tmpdir_with(NULL, 0), path[300], want[400];
    int rc;
    char *line;

    snprintf(path, sizeof(path), "%s/proxy.json", dir);
    cr_assert_eq(mkdir(path, 0755), 0);
    line = load_dir_err(dir, &rc);
    snprintf(want, sizeof(want), "%s: a directory, not a file", path);
    cr_expect_eq(rc, -EISDIR);
    cr_expect_str_eq(line, want);
    free(line);
    rmdir(path);

    cr_assert_eq(mkfifo(path, 0644), 0);
    line = load_dir_err(dir, &rc);
    snprintf(want, sizeof(want), "%s: not a regular file", path);
    cr_expect_eq(rc, -EINVAL);
    cr_expect_str_eq(line, want);
    free(line);
    unlink(path);

    cr_assert_eq(symlink("nowhere.json", path), 0);
    line = load_dir_err(dir, &rc);
    snprintf(want, sizeof(want), "%s: a symbolic link to nothing", path);
    cr_expect_eq(rc, -EINVAL);
    cr_expect_str_eq(line, want);
    free(line);
    unlink(path);

    cr_assert_eq(symlink("/dev/null", path), 0);
    line = load_dir_err(dir, &rc);
    cr_expect_eq(rc, -EINVAL);
    free(line);
    unlink(path);

    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, CFG_MAX_FILE_BYTES + 1), 0);
    close(fd);
    line = load_dir_err(dir, &rc);
    snprintf(want, sizeof(want), "%s: larger than 1 MiB", path);
    cr_expect_eq(rc, -EFBIG);
    cr_expect_str_eq(line, want);
    free(line);

    /* DIR is a file. */
    line = load_dir_err(path, &rc);
    cr_expect_eq(rc, -ENOTDIR);
    free(line);
    rm_tmpdir(dir);
}

/*
 * Loads dir as an unprivileged user: root reads any file, so when the test
 * runs as root, a child drops to nobody first and reports back.
 */
static char *load_dir_err_unprivileged(const char *dir, int *ret_rc)
{
    int fds[2], status;
    char buf[512] = "";
    ssize_t n;
    pid_t pid;

    if (geteuid() != 0)
        return load_dir_err(dir, ret_rc);
    cr_assert_eq(pipe(fds), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        struct cfg_errs e;
        int rc;

        close(fds[0]);
        if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
            _exit(77);
        rc = cfg_load(dir, NULL, &e);
        dprintf(fds[1], "%d\n%s", rc, e.n ? e.lines[0] : "");
        cfg_errs_free(&e);
        _exit(0);
    }
    close(fds[1]);
    n = read(fds[0], buf, sizeof(buf) - 1);
    close(fds[0]);
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
        cr_skip_test("cannot drop root privileges");
    cr_assert(n > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    buf[n] = '\0';
    *ret_rc = atoi(buf);
    return strdup(strchr(buf, '\n') + 1);
}

Test(cfg_file, unreadable_file_and_dir)
{
    char *dir = tmpdir_with("{}", 2), path[300], want[400];
    int rc;
    char *line;

    snprintf(path, sizeof(path), "%s/proxy.json", dir);
    cr_assert_eq(chmod(dir, 0755), 0);
    cr_assert_eq(chmod(path, 0), 0);
    line = load_dir_err_unprivileged(dir, &rc);
    snprintf(want, sizeof(want), "%s: Permission denied", path);
    cr_expect_eq(rc, -EACCES);
    cr_expect_str_eq(line, want);
    free(line);

    cr_assert_eq(chmod(path, 0644), 0);
    cr_assert_eq(chmod(dir, 0), 0);
    line = load_dir_err_unprivileged(dir, &rc);
    cr_expect_eq(rc, -EACCES);
    cr_expect_str_eq(line, want);
    free(line);
    rm_tmpdir(dir);
}

/* ---- documentation and JSON Schema against the table ---- */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0, n;

    cr_assert_not_null(f, "cannot open %s", path);
    do {
        if (len + 4096 + 1 > cap) {
            cap = 2 * cap + 8192;
            buf = realloc(buf, cap);
            cr_assert_not_null(buf);
        }
        n = fread(buf + len, 1, 4096, f);
        len += n;
    } while (n > 0);
    buf[len] = '\0';
    fclose(f);
    return buf;
}

static const char *env_path(const char *name)
{
    const char *p = getenv(name);

    cr_assert_not_null(p, "%s is not set (run through meson test)", name);
    return p;
}

static void expect_section(const char *doc, const char *name, const char *want)
{
    const char *start, *end;

    cr_assert_eq(docgen_section(doc, name, &start, &end), 0, "no %s markers in docs/config.md",
                 name);
    char *have = strndup(start, (size_t)(end - start));
    cr_expect_str_eq(have, want,
                     "docs/config.md section '%s' differs from cfg/schema.c: run `meson compile -C "
                     "build cfg-docs`",
                     name);
    free(have);
}

Test(cfg_docs, generated_sections_are_current)
{
    char *doc = slurp(env_path("CFG_DOCS"));
    char *keys = cfg_schema_markdown(), *example = docgen_example_block();

    expect_section(doc, "keys", keys);
    expect_section(doc, "example", example);
    free(keys);
    free(example);
    free(doc);
}

Test(cfg_docs, every_key_and_default_documented)
{
    char *doc = slurp(env_path("CFG_DOCS"));
    size_t n;
    const struct cfg_key *k = cfg_schema_keys(&n);

    for (size_t i = 0; i < n; i++) {
        char want[256];

        snprintf(want, sizeof(want), "| `%s` |", k[i].path);
        cr_expect_not_null(strstr(doc, want), "%s is not documented", k[i].path);
        if (k[i].kind == CFG_K_UINT) {
            snprintf(want, sizeof(want), "| `%s` | integer | `%llu` |", k[i].path,
                     (unsigned long long)k[i].def);
            cr_expect_not_null(strstr(doc, want), "%s: default not documented", k[i].path);
        }
    }
    for (int f = 0; f < CFG_F_COUNT; f++) {
        char want[128];

        snprintf(want, sizeof(want), "| `%s` |", cfg_field_name((enum cfg_field)f));
        cr_expect_not_null(strstr(doc, want), "field %s is not documented", want);
    }
    free(doc);
}

Test(cfg_docs, json_examples_are_valid)
{
    char *doc = slurp(env_path("CFG_DOCS"));
    int blocks = 0;

    for (const char *p = doc; (p = strstr(p, "```json\n")) != NULL;) {
        const char *start = p + 8, *end = strstr(start, "```");
        struct cfg_errs e;

        cr_assert_not_null(end);
        int rc = cfg_load_buf(start, (size_t)(end - start), "docs", NULL, &e);
        cr_expect_eq(rc, 0, "example %d: %s", blocks, e.n ? e.lines[0] : "");
        cfg_errs_free(&e);
        blocks++;
        p = end + 3;
    }
    cr_expect_geq(blocks, 2);
    free(doc);
}

Test(cfg_docs, example_is_the_defaults)
{
    char *ex = cfg_schema_example();
    struct cfg *c = load_ok(ex), *d = cfg_new_default();
    char *a = cfg_dump(c), *b = cfg_dump(d);

    cr_expect_str_eq(a, b);
    cr_expect_str_eq(a, ex);
    free(a);
    free(b);
    free(ex);
    cfg_free(c);
    cfg_free(d);
}

static json_t *load_schema_file(void)
{
    json_error_t je;
    json_t *s = json_load_file(env_path("CFG_SCHEMA"), JSON_REJECT_DUPLICATES, &je);

    cr_assert_not_null(s, "proxy.schema.json:%d:%d: %s", je.line, je.column, je.text);
    return s;
}

Test(cfg_json_schema, file_is_current)
{
    json_t *file = load_schema_file(), *gen = cfg_schema_json();
    char *text = docgen_schema_text(gen), *have = slurp(env_path("CFG_SCHEMA"));

    cr_expect(json_equal(file, gen), "cfg/proxy.schema.json differs: run `meson compile -C build "
                                     "cfg-docs`");
    cr_expect_str_eq(have, text);
    free(text);
    free(have);
    json_decref(file);
    json_decref(gen);
}

/*
 * Every object in the schema forbids unknown keys, as the loader does; a map
 * (header names, list names: propertyNames) constrains its keys instead.
 */
static void expect_closed(const json_t *s, const char *where)
{
    const char *key;
    json_t *v;

    if (json_is_object(s) && json_is_string(json_object_get(s, "type")) &&
        strcmp(json_string_value(json_object_get(s, "type")), "object") == 0 &&
        !json_object_get(s, "propertyNames"))
        cr_expect(json_is_false(json_object_get(s, "additionalProperties")),
                  "%s: additionalProperties is not false", where);
    json_object_foreach((json_t *)json_object_get(s, "properties"), key, v) expect_closed(v, key);
}

/* Finds the schema of a dotted path by walking "properties". */
static const json_t *schema_at(const json_t *root, const char *path)
{
    char buf[128], *save = NULL;
    const json_t *s = root;

    snprintf(buf, sizeof(buf), "%s", path);
    for (char *part = strtok_r(buf, ".", &save); part && s; part = strtok_r(NULL, ".", &save))
        s = json_object_get(json_object_get(s, "properties"), part);
    return s;
}

static uint64_t juint(const json_t *v)
{
    cr_assert(json_is_integer(v));
    return (uint64_t)json_integer_value(v);
}

/* Compares each property of the file with its row, independently of cfg_schema_json(). */
Test(cfg_json_schema, agrees_with_table)
{
    json_t *s = load_schema_file();
    size_t n, nprops = 0;
    const struct cfg_key *k = cfg_schema_keys(&n);

    cr_expect_str_eq(json_string_value(json_object_get(s, "$schema")),
                     "https://json-schema.org/draft/2020-12/schema");
    expect_closed(s, "(top)");
    for (size_t i = 0; i < n; i++) {
        const json_t *p = schema_at(s, k[i].path), *def;
        const char *type;

        cr_assert_not_null(p, "%s missing from proxy.schema.json", k[i].path);
        type = json_string_value(json_object_get(p, "type"));
        def = json_object_get(p, "default");
        cr_expect_str_eq(json_string_value(json_object_get(p, "description")), k[i].doc);
        switch (k[i].kind) {
        case CFG_K_OBJECT:
            cr_expect_str_eq(type, "object");
            break;
        case CFG_K_UINT:
            cr_expect_str_eq(type, "integer", "%s", k[i].path);
            cr_expect_eq(juint(json_object_get(p, "minimum")), k[i].min, "%s", k[i].path);
            cr_expect_eq(juint(json_object_get(p, "maximum")), k[i].max, "%s", k[i].path);
            cr_expect_eq(juint(def), k[i].def, "%s", k[i].path);
            break;
        case CFG_K_ENUM: {
            const json_t *e = json_object_get(p, "enum");

            cr_assert_eq(json_array_size(e), k[i].nnames, "%s", k[i].path);
            for (size_t j = 0; j < k[i].nnames; j++)
                cr_expect_str_eq(json_string_value(json_array_get(e, j)), k[i].names[j]);
            cr_expect_str_eq(json_string_value(def), k[i].names[k[i].def]);
            break;
        }
        case CFG_K_FIELDS: {
            const json_t *e = json_object_get(json_object_get(p, "items"), "enum");

            cr_expect_str_eq(type, "array");
            cr_assert_eq(json_array_size(e), CFG_F_COUNT);
            cr_assert_eq(json_array_size(def), CFG_F_COUNT);
            for (int f = 0; f < CFG_F_COUNT; f++) {
                cr_expect_str_eq(json_string_value(json_array_get(e, (size_t)f)),
                                 cfg_field_name((enum cfg_field)f));
                cr_expect_str_eq(json_string_value(json_array_get(def, (size_t)f)),
                                 cfg_field_name((enum cfg_field)f));
            }
            cr_expect_eq(juint(json_object_get(p, "minItems")), k[i].min);
            cr_expect_eq(juint(json_object_get(p, "maxItems")), k[i].max);
            cr_expect(json_is_true(json_object_get(p, "uniqueItems")));
            break;
        }
        case CFG_K_HEADERS:
            cr_expect_str_eq(type, "array");
            cr_expect_eq(json_array_size(def), 0);
            cr_expect_eq(juint(json_object_get(p, "maxItems")), CFG_MAX_LOG_HEADERS);
            cr_expect_not_null(json_object_get(json_object_get(p, "items"), "pattern"));
            break;
        case CFG_K_LISTEN:
            cr_expect_str_eq(type, "string");
            cr_expect_str_eq(json_string_value(def), k[i].def_str);
            break;
        case CFG_K_IGNORED:
            cr_expect_str_eq(type, "string");
            cr_expect_null(def);
            break;
        case CFG_K_COUNT:
            break;
        }
    }
    /* And the other way: every property of the file is a row of the table. */
    json_t *todo = json_pack("[{s:o, s:s}]", "s", json_incref(s), "path", "");
    cr_assert_not_null(todo);
    while (json_array_size(todo)) {
        json_t *item = json_incref(json_array_get(todo, 0));
        const char *prefix = json_string_value(json_object_get(item, "path")), *key;
        json_t *v;

        json_array_remove(todo, 0);
        json_object_foreach(json_object_get(json_object_get(item, "s"), "properties"), key, v)
        {
            char path[128];

            snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "", key);
            if (!*prefix && cfg_rules_is_top(key))
                continue; /* the rules table's: cfg_json_schema::rules_agree_with_table */
            cr_expect_not_null(cfg_schema_find(path), "%s is in proxy.schema.json only", path);
            nprops++;
            json_array_append_new(todo, json_pack("{s:O, s:s}", "s", v, "path", path));
        }
        json_decref(item);
    }
    cr_expect_eq(nprops, n);
    json_decref(todo);
    json_decref(s);
}

/* The schema of a rules-table path ("rules[].match.host"): "[]" is the array's items. */
static const json_t *rules_schema_at(const json_t *root, const char *path)
{
    char buf[128], *save = NULL;
    const json_t *s = root;

    snprintf(buf, sizeof(buf), "%s", path);
    for (char *part = strtok_r(buf, ".", &save); part && s; part = strtok_r(NULL, ".", &save)) {
        size_t n = strlen(part);
        int items = n > 2 && strcmp(part + n - 2, "[]") == 0;

        if (items)
            part[n - 2] = '\0';
        s = json_object_get(json_object_get(s, "properties"), part);
        if (items)
            s = json_object_get(s, "items");
    }
    return s;
}

/* Counts the properties below s, through array items. */
static size_t count_props(const json_t *s)
{
    const char *key;
    json_t *v;
    size_t n = 0;

    json_object_foreach(json_object_get(s, "properties"), key, v) n +=
        1 + count_props(v) + count_props(json_object_get(v, "items"));
    return n;
}

Test(cfg_json_schema, rules_agree_with_table)
{
    json_t *s = load_schema_file();
    size_t n, rows = 0, nprops = 0;
    const struct cfg_rkey *k = cfg_rules_keys(&n);
    const char *top[] = {"lists", "rules", "error_pages"};

    for (size_t i = 0; i < n; i++) {
        const json_t *p = rules_schema_at(s, k[i].path);

        cr_expect_null(strchr(k[i].doc, '|'), "%s: '|' breaks the markdown table", k[i].path);
        if (k[i].type == CFG_RT_UNSUPPORTED) {
            cr_expect_null(p, "%s is refused, so not in the schema", k[i].path);
            continue;
        }
        rows++;
        cr_assert_not_null(p, "%s missing from proxy.schema.json", k[i].path);
        cr_expect_str_eq(json_string_value(json_object_get(p, "description")), k[i].doc);
        if (k[i].type == CFG_RT_STATUS) {
            cr_expect_str_eq(json_string_value(json_object_get(p, "type")), "integer");
            cr_expect_eq(json_integer_value(json_object_get(p, "default")), k[i].sdef);
            if (k[i].statuses)
                cr_expect_eq(json_array_size(json_object_get(p, "enum")), k[i].nstatuses);
            else
                cr_expect_eq(json_integer_value(json_object_get(p, "maximum")), k[i].smax);
        }
        if (k[i].type == CFG_RT_MAP)
            cr_expect_str_eq(
                json_string_value(json_object_get(json_object_get(p, "propertyNames"), "pattern")),
                k[i].pattern);
    }
    /* And the other way: every property is a row. */
    for (size_t i = 0; i < 3; i++) {
        const json_t *p = json_object_get(json_object_get(s, "properties"), top[i]);

        cr_assert_not_null(p, "%s", top[i]);
        nprops += 1 + count_props(p) + count_props(json_object_get(p, "items"));
    }
    cr_expect_eq(nprops, rows);
    cr_expect_str_eq(
        json_string_value(json_object_get(rules_schema_at(s, "rules[].match.not"), "$ref")),
        "#/$defs/match");
    cr_expect(json_equal(json_object_get(json_object_get(s, "$defs"), "match"),
                         rules_schema_at(s, "rules[].match")));
    json_decref(s);
}

/* The rules table is documented in docs/config.md, row by row. */
Test(cfg_docs, every_rule_key_documented)
{
    char *doc = slurp(env_path("CFG_DOCS"));
    size_t n;
    const struct cfg_rkey *k = cfg_rules_keys(&n);

    for (size_t i = 0; i < n; i++) {
        char want[256];

        snprintf(want, sizeof(want), "| `%s` |", k[i].path);
        cr_expect_not_null(strstr(doc, want), "%s is not documented", k[i].path);
    }
    cr_expect_not_null(strstr(doc, "(rules.md)"));
    free(doc);
}

/* The patterns the schema gives editors for what it can express of header names and C2. */
Test(cfg_json_schema, patterns)
{
    json_t *s = load_schema_file();
    const char *listen =
        json_string_value(json_object_get(schema_at(s, "admin.listen"), "pattern"));
    const char *hdr = json_string_value(json_object_get(
        json_object_get(schema_at(s, "access_log.request_headers"), "items"), "pattern"));

    cr_expect_str_eq(listen,
                     "^(127\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}|\\[::1\\]):[1-9][0-9]{0,4}$");
    cr_expect_str_eq(hdr, "^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$");
    json_decref(s);
}
