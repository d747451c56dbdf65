/*
 * End to end: the access log on stdout (C5), diagnostics on stderr (C6), no
 * files (C7). Every request is logged exactly once, whatever its fate, in a
 * line a JSON or LTSV consumer can parse; a stalled stdout never stalls the
 * proxy. Lines longer than PIPE_BUF from two workers on one slowly read pipe
 * (#26.5) are tested in the adversarial layer (tests/adv/abuse.c).
 */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "tests/e2e/fixture.h"

/* Parse every line of s as JSON; returns the count, fails on a bad line. */
static int json_lines(char *s, json_t **ret_first)
{
    char *save = NULL;
    int n = 0;

    for (char *line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_error_t err;
        json_t *j = json_loads(line, 0, &err);

        cr_assert(j, "line %d is not JSON (%s): %s", n, err.text, line);
        if (n == 0 && ret_first)
            *ret_first = j;
        else
            json_decref(j);
        n++;
    }
    return n;
}

Test(e2e_logging, ltsv_format, .init = fx_origin_up, .fini = fx_down)
{
    struct h_resp r;
    char *out;

    h_proxy_start(&px, origin_port(origin), "{\"access_log\": {\"format\": \"ltsv\"}}", NULL);
    cr_assert_eq(h_roundtrip(px.port, "GET /size/7 HTTP/1.1\r\nHost: ltsv.example\r\n\r\n", &r), 0);
    h_resp_free(&r);
    cr_assert_eq(h_wait_log_lines(&px, 1), 1);
    out = h_slurp(px.out_path);
    cr_assert(!strncmp(out, "time:", 5), "%s", out);
    cr_assert(strstr(out, "\tstatus:200\t"), "%s", out);
    cr_assert(strstr(out, "\thostname:ltsv.example\t"), "%s", out);
    cr_assert(strstr(out, "\tresponse_body_bytes:7\t"), "%s", out);
    cr_assert_eq(strchr(out, '\n') - out + 1, (long)strlen(out), "one line, ending in LF");
    free(out);
}

Test(e2e_logging, hostile_values_stay_one_valid_line, .init = fx_origin_up, .fini = fx_down)
{
    struct h_resp r;
    json_t *j = NULL;
    char *out;

    h_proxy_start(&px, origin_port(origin), NULL, NULL);
    /* quotes, backslashes, a fake field and bytes that are not UTF-8 (obs-text) */
    cr_assert_eq(h_roundtrip(px.port,
                             "GET /q?a=\"b\"\\ HTTP/1.1\r\nHost: x\r\n"
                             "User-Agent: evil\",\"status\":999,\"x\":\"\xff\xfe\xc3\r\n\r\n",
                             &r),
                 0);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    cr_assert_eq(h_wait_log_lines(&px, 1), 1);
    out = h_slurp(px.out_path);
    cr_assert_eq(json_lines(out, &j), 1);
    cr_assert_eq(json_integer_value(json_object_get(j, "status")), 200, "no injected field");
    cr_assert(strstr(json_string_value(json_object_get(j, "useragent")), "evil\",\"status\":999"));
    cr_assert_str_eq(json_string_value(json_object_get(j, "path")), "/q?a=\"b\"\\");
    json_decref(j);
    free(out);
}

Test(e2e_logging, local_answers_are_logged, .init = fx_origin_up, .fini = fx_down)
{
    static const char *const reqs[] = {
        "GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n",       /* 400 */
        "GET / HTTP/1.1\r\nX-Abc: \rxTransfer-Encoding: x\r\n\r\n", /* 400 */
    };
    static const int want[] = {400, 400};
    struct h_resp r;
    char *out, *save = NULL;
    int n = 0;

    h_proxy_start(&px, origin_port(origin), NULL, NULL);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(h_roundtrip(px.port, reqs[i], &r), 0);
        cr_assert_eq(r.status, want[i]);
        h_resp_free(&r);
    }
    cr_assert_eq(h_wait_log_lines(&px, 2), 2);
    out = h_slurp(px.out_path);
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
        json_t *j = json_loads(line, 0, NULL);
        cr_assert(j, "%s", line);
        cr_assert_eq(json_integer_value(json_object_get(j, "status")), want[n]);
        cr_assert_str_eq(json_string_value(json_object_get(j, "upstream_addr")), "-");
        cr_assert_str_neq(json_string_value(json_object_get(j, "termination")), "-");
        json_decref(j);
    }
    cr_assert_eq(origin_requests(origin), 0, "nothing reached the origin");
    free(out);
}

Test(e2e_logging, fields_and_extra_headers_in_order, .init = fx_origin_up, .fini = fx_down)
{
    struct h_resp r;
    json_t *j = NULL;
    const char *key;
    json_t *v;
    const char *want[] = {"status", "method", "http_x_custom", "sent_http_content_type"};
    int i = 0;
    char *out;

    h_proxy_start(
        &px, origin_port(origin),
        "{\"access_log\": {\"fields\": [\"status\", \"method\"],"
        " \"request_headers\": [\"X-Custom\"], \"response_headers\": [\"Content-Type\"]}}",
        NULL);
    cr_assert_eq(h_roundtrip(px.port, "GET / HTTP/1.1\r\nHost: a\r\nX-Custom: v1\r\n\r\n", &r), 0);
    h_resp_free(&r);
    cr_assert_eq(h_wait_log_lines(&px, 1), 1);
    out = h_slurp(px.out_path);
    j = json_loads(out, JSON_PRESERVE_ORDER, NULL);
    cr_assert(j, "%s", out);
    json_object_foreach(j, key, v)
    {
        cr_assert(i < 4, "unexpected key %s", key);
        cr_assert_str_eq(key, want[i]);
        i++;
    }
    cr_assert_eq(i, 4);
    cr_assert_str_eq(json_string_value(json_object_get(j, "http_x_custom")), "v1");
    cr_assert_str_eq(json_string_value(json_object_get(j, "sent_http_content_type")), "text/plain");
    json_decref(j);
    free(out);
}

struct load {
    unsigned port;
    int n;
    int ok;
};

static void *load_main(void *arg)
{
    struct load *l = arg;
    int fd = h_connect(l->port);

    for (int i = 0; i < l->n && fd >= 0; i++) {
        struct h_resp r;
        const char *req = i % 5 == 4 ? "GET / HTTP/1.1\r\nHost a\r\n\r\n" /* 400, closes */
                                     : "GET /size/32 HTTP/1.1\r\nHost: a\r\n\r\n";
        if (h_sends(fd, req) < 0 || h_read_response(fd, &r, 0) < 0)
            break;
        l->ok++;
        h_resp_free(&r);
        if (r.closed) {
            h_close(fd);
            fd = h_connect(l->port);
        }
    }
    if (fd >= 0)
        h_close(fd);
    return NULL;
}

Test(e2e_logging, every_request_logged_once_under_load, .init = fx_origin_up, .fini = fx_down)
{
    const char *args[] = {"--workers", "2", NULL};
    struct load l[6];
    pthread_t t[6];
    int total = 0;
    char *out;

    h_proxy_start(&px, origin_port(origin), NULL, args);
    for (int i = 0; i < 6; i++) {
        l[i] = (struct load){px.port, 150, 0};
        pthread_create(&t[i], NULL, load_main, &l[i]);
    }
    for (int i = 0; i < 6; i++) {
        pthread_join(t[i], NULL);
        total += l[i].ok;
    }
    cr_assert_eq(total, 900);
    cr_assert_eq(h_wait_log_lines(&px, total), total);
    usleep(100000);
    out = h_slurp(px.out_path);
    cr_assert_eq(json_lines(out, NULL), total, "exactly one whole line per request");
    free(out);
}

Test(e2e_logging, stalled_stdout_does_not_stall_requests, .init = fx_origin_up, .fini = fx_down)
{
    struct h_resp r;
    static char buf[1 << 18]; /* more than the pipe and the log buffer hold */
    char *err;
    int fd, served = 0;
    size_t got = 0;

    h_proxy_start_piped(&px, origin_port(origin), "{\"access_log\": {\"buffer_bytes\": 65536}}",
                        NULL);
    /* Nobody reads stdout: the 64 KiB pipe and the 64 KiB buffer fill, then lines drop. */
    fd = h_connect(px.port);
    for (int i = 0; i < 3000; i++) {
        cr_assert_eq(h_sends(fd, "GET /size/1 HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
        cr_assert_eq(h_read_response(fd, &r, 0), 0, "request %d got no answer", i);
        h_resp_free(&r);
        served++;
    }
    h_close(fd);
    cr_assert_eq(served, 3000);
    /* what did arrive is whole lines */
    for (;;) {
        struct pollfd pfd = {px.out_fd, POLLIN, 0};
        ssize_t n;
        if (poll(&pfd, 1, 200) <= 0 || got + 1 >= sizeof(buf))
            break;
        n = read(px.out_fd, buf + got, sizeof(buf) - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    cr_assert_gt(got, 0);
    cr_assert_eq(buf[strlen(buf) - 1], '\n');
    cr_assert_gt(h_metric(px.admin_port, "ringproxy_access_log_dropped_total"), 0);
    usleep(1100000);
    err = h_slurp(px.err_path);
    cr_assert(strstr(err, "dropped"), "the drop is reported on stderr: %s", err);
    free(err);
}

Test(e2e_logging, never_opens_a_file_for_writing, .init = fx_origin_up, .fini = fx_down)
{
    struct h_resp r;
    char path[64], link[256], fdinfo[512];
    struct dirent *d;
    DIR *dir;

    h_proxy_start(&px, origin_port(origin), NULL, NULL);
    for (int i = 0; i < 20; i++) {
        cr_assert_eq(h_roundtrip(px.port, "GET /size/100 HTTP/1.1\r\nHost: a\r\n\r\n", &r), 0);
        h_resp_free(&r);
    }
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)px.pid);
    dir = opendir(path);
    cr_assert(dir);
    while ((d = readdir(dir))) {
        struct stat st;
        char full[512];
        int fdn = atoi(d->d_name);
        ssize_t n;

        if (d->d_name[0] == '.' || fdn <= 2)
            continue; /* stdin, and the stdout/stderr the harness gave it */
        snprintf(full, sizeof(full), "%s/%s", path, d->d_name);
        n = readlink(full, link, sizeof(link) - 1);
        if (n < 0 || stat(full, &st) < 0)
            continue;
        link[n] = '\0';
        if (S_ISREG(st.st_mode)) {
            FILE *f;
            unsigned flags = 0;
            snprintf(fdinfo, sizeof(fdinfo), "/proc/%d/fdinfo/%s", (int)px.pid, d->d_name);
            f = fopen(fdinfo, "r");
            if (f) {
                char line[128];
                while (fgets(line, sizeof(line), f))
                    sscanf(line, "flags: %o", &flags);
                fclose(f);
            }
            cr_assert_eq(flags & O_ACCMODE, O_RDONLY, "fd %s open for writing: %s", d->d_name,
                         link);
        }
    }
    closedir(dir);
}

Test(e2e_logging, log_level_from_environment, .init = fx_origin_up, .fini = fx_down)
{
    char *err;

    setenv("SECTION_OPS_LOG_LEVEL", "error", 1);
    h_proxy_start(&px, origin_port(origin), NULL, NULL);
    cr_assert_eq(h_proxy_stop(&px), 0);
    err = h_slurp(px.err_path);
    cr_assert(!strstr(err, " info "), "no info lines at level error: %s", err);
    free(err);
    unsetenv("SECTION_OPS_LOG_LEVEL");
}
