/*
 * libFuzzer harness for log/access.c. The input is split into a field list
 * and a record; the record is formatted in JSON and in LTSV and each line is
 * checked:
 * - JSON parses with jansson (which rejects invalid UTF-8 and bad escapes),
 *   is one object with exactly the expected keys, and the useragent string
 *   reads back unchanged whenever jansson agrees it was valid UTF-8, or, when
 *   it was long enough to be cut, as a head of it followed by the marker;
 * - LTSV has exactly one '\n', at the end, no other control byte but the
 *   TABs between fields, and the expected labels in order;
 * - both fit a buffer of exactly log_fmt_max_line() bytes, and one of
 *   exactly their length, and one byte less gives -ENOSPC (the buffers are
 *   malloc'ed to size, so ASan sees any overrun): however long the values,
 *   a line is never refused by a buffer of log_fmt_max_line().
 *
 * Input layout: a count byte and that many field bytes (each taken modulo
 * CFG_F_COUNT, repeats allowed), the numbers, then length-prefixed strings
 * (length 0xff = absent; 0xfe = long: a byte k and a string repeated to
 * (k + 1) * 97 bytes, up to 24,832, so that values get cut); missing input
 * reads as zeros / absent.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cfg/cfg.h"
#include "core/str.h"
#include "log/access.h"

struct fz_in {
    const uint8_t *p;
    size_t n;
};

static uint8_t fz_u8(struct fz_in *in)
{
    uint8_t v = 0;

    if (in->n) {
        v = *in->p++;
        in->n--;
    }
    return v;
}

static int64_t fz_i64(struct fz_in *in)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = v << 8 | fz_u8(in);
    return (int64_t)v;
}

/* Small numbers are far more interesting than random 64-bit ones. */
static int64_t fz_num(struct fz_in *in)
{
    uint8_t k = fz_u8(in), hi, lo;

    if (k < 0x40)
        return k;
    if (k < 0x80)
        return -1;
    if (k < 0xc0) {
        hi = fz_u8(in);
        lo = fz_u8(in);
        return (int64_t)hi << 8 | lo;
    }
    return fz_i64(in);
}

/* Room for the long values of one input: at most 25 strings and 16 header values. */
#define FZ_LONG_MAX (256 * 97)
#define FZ_LONG_SLOTS 48

static char fz_long[FZ_LONG_SLOTS][FZ_LONG_MAX];
static size_t fz_nlong;

static struct core_str fz_str(struct fz_in *in)
{
    uint8_t len = fz_u8(in);
    struct core_str s = {NULL, 0};

    if (len == 0xff)
        return s;
    if (len == 0xfe) {
        size_t n = ((size_t)fz_u8(in) + 1) * 97;
        struct core_str pat = fz_str(in);
        char *v;

        if (!pat.p || pat.len == 0 || fz_nlong == FZ_LONG_SLOTS)
            return pat;
        v = fz_long[fz_nlong++];
        for (size_t i = 0; i < n; i++)
            v[i] = pat.p[i % pat.len];
        s.p = v;
        s.len = n;
        return s;
    }
    if (len > in->n)
        len = (uint8_t)in->n;
    s.p = (const char *)in->p;
    s.len = len;
    in->p += len;
    in->n -= len;
    return s;
}

#define FZ_MAX_HDRS 8

static char *fz_req_names[] = {"X-Fuzz", "Cookie"};
static char *fz_resp_names[] = {"Set-Cookie"};
static const char *const fz_extra_keys[] = {"http_x_fuzz", "http_cookie", "sent_http_set_cookie"};
static const struct core_str fz_hdr_names[] = {
    {"x-fuzz", 6}, {"COOKIE", 6}, {"set-cookie", 10}, {"Set-Cookie", 10}};

static void fz_hdrs(struct fz_in *in, struct core_hdr *h, size_t *ret_n)
{
    size_t n = fz_u8(in) % (FZ_MAX_HDRS + 1);

    for (size_t i = 0; i < n; i++) {
        uint8_t sel = fz_u8(in);

        h[i].name = sel < 0xc0 ? fz_hdr_names[sel % 4] : fz_str(in);
        h[i].value = fz_str(in);
    }
    *ret_n = n;
}

static void fz_check_json(const char *line, size_t n, const char *const *keys, size_t nkeys,
                          struct core_str ua, int ua_selected)
{
    json_error_t err;
    json_t *j = json_loadb(line, n, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &err);

    if (!j || !json_is_object(j) || json_object_size(j) != nkeys)
        abort();
    for (size_t i = 0; i < nkeys; i++)
        if (!json_object_get(j, keys[i]))
            abort();
    if (ua_selected && ua.p) {
        /* json_stringn() accepts exactly the valid UTF-8 strings. */
        json_t *ref = json_stringn(ua.p, ua.len);
        json_t *got = json_object_get(j, "useragent");

        if (ref && !json_equal(ref, got)) {
            /* Cut: a head of the value, then the marker (U+2026 "[cut]"). */
            static const char mark[] = "\xe2\x80\xa6[cut]";
            const char *g = json_string_value(got);
            size_t gl = json_string_length(got), ml = sizeof(mark) - 1;

            if (ua.len <= LOG_VALUE_MAX / 6 || !g || gl < ml ||
                memcmp(g + gl - ml, mark, ml) != 0 || gl - ml > ua.len ||
                memcmp(g, ua.p, gl - ml) != 0)
                abort();
        }
        json_decref(ref);
    }
    json_decref(j);
}

static void fz_check_ltsv(const char *line, size_t n, const char *const *keys, size_t nkeys)
{
    size_t k = 0, start = 0;

    if (n == 0 || line[n - 1] != '\n')
        abort();
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)line[i];

        if (c == '\t' || i == n - 1) {
            size_t len;

            if (k >= nkeys)
                abort();
            len = strlen(keys[k]);
            if (i - start < len + 1 || memcmp(line + start, keys[k], len) != 0 ||
                line[start + len] != ':')
                abort();
            k++;
            start = i + 1;
        } else if (c < 0x20 || c == 0x7f) {
            abort();
        }
    }
    if (k != nkeys)
        abort();
}

/*
 * Format once in a big buffer, then in buffers of exactly log_fmt_max_line(),
 * n and n - 1 bytes.
 */
static long fz_format(const struct log_fmt *f, const struct log_access_rec *r, char *big,
                      size_t cap)
{
    long n = log_fmt_line(f, r, big, cap);
    size_t max = log_fmt_max_line(f);
    char *exact;

    if (n <= 0 || (size_t)n > max)
        abort();
    exact = malloc(max);
    if (!exact || log_fmt_line(f, r, exact, max) != n || memcmp(exact, big, (size_t)n))
        abort();
    free(exact);
    exact = malloc((size_t)n);
    if (!exact || log_fmt_line(f, r, exact, (size_t)n) != n || memcmp(exact, big, (size_t)n))
        abort();
    if (log_fmt_line(f, r, exact, (size_t)n - 1) != -ENOSPC)
        abort();
    free(exact);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char big[1 << 20];
    struct fz_in in = {data, size};
    struct cfg_access_log c = {0};
    const char *keys[CFG_F_COUNT + 3];
    size_t nkeys = 0;
    int seen[CFG_F_COUNT] = {0};
    struct core_hdr req[FZ_MAX_HDRS], resp[FZ_MAX_HDRS];
    struct log_access_rec r = {0};
    static char term[FZ_LONG_MAX + 1];
    struct core_str t;
    size_t nf = fz_u8(&in) % (CFG_F_COUNT + 8);

    fz_nlong = 0;

    for (size_t i = 0; i < nf; i++) {
        enum cfg_field f = (enum cfg_field)(fz_u8(&in) % CFG_F_COUNT);

        if (c.nfields < CFG_F_COUNT)
            c.fields[c.nfields++] = f;
    }
    /* Expected keys: the first occurrence of each field, then the headers. */
    for (size_t i = 0; i < c.nfields; i++) {
        if (!seen[c.fields[i]]++)
            keys[nkeys++] = cfg_field_name(c.fields[i]);
    }
    for (size_t i = 0; i < 3; i++)
        keys[nkeys++] = fz_extra_keys[i];
    c.request_headers = fz_req_names;
    c.nrequest_headers = 2;
    c.response_headers = fz_resp_names;
    c.nresponse_headers = 1;

    r.start.tv_sec = (time_t)fz_num(&in);
    r.start.tv_nsec = (long)fz_num(&in);
    r.duration_us = fz_num(&in);
    r.status = (int)fz_num(&in);
    r.upstream_status = (int)fz_num(&in);
    r.bytes_sent = fz_num(&in);
    r.response_body_bytes = fz_num(&in);
    r.request_bytes = fz_num(&in);
    r.upstream_bytes = fz_num(&in);
    r.upstream_connect_us = fz_num(&in);
    r.upstream_header_us = fz_num(&in);
    r.upstream_response_us = fz_num(&in);
    r.upstream_reused = (int)fz_num(&in);
    r.upstream_attempts = (int)fz_num(&in);
    r.method = fz_str(&in);
    r.target = fz_str(&in);
    r.version = fz_str(&in);
    r.host = fz_str(&in);
    r.referrer = fz_str(&in);
    r.useragent = fz_str(&in);
    r.x_forwarded_proto = fz_str(&in);
    r.section_io_id = fz_str(&in);
    r.section_io_tag = fz_str(&in);
    r.content_type = fz_str(&in);
    r.client_ip = fz_str(&in);
    r.upstream_addr = fz_str(&in);
    t = fz_str(&in);
    if (t.p) {
        /* termination is a C string: stop at the first NUL. */
        memcpy(term, t.p, t.len);
        term[t.len] = '\0';
        r.termination = term;
    }
    fz_hdrs(&in, req, &r.nreq_hdrs);
    fz_hdrs(&in, resp, &r.nresp_hdrs);
    r.req_hdrs = req;
    r.resp_hdrs = resp;

    for (int fmt = 0; fmt < CFG_LOG_FORMAT_COUNT; fmt++) {
        struct log_fmt *f;
        long n;

        c.format = (enum cfg_log_format)fmt;
        f = log_fmt_new(&c);
        if (!f)
            abort();
        n = fz_format(f, &r, big, sizeof(big));
        if (memchr(big, '\n', (size_t)n) != big + n - 1)
            abort();
        if (fmt == CFG_LOG_JSON)
            fz_check_json(big, (size_t)n, keys, nkeys, r.useragent, seen[CFG_F_USERAGENT]);
        else
            fz_check_ltsv(big, (size_t)n, keys, nkeys);
        log_fmt_free(f);
    }
    return 0;
}
