/*
 * Access-log formatter (C5). log_fmt_new() turns the configured field list
 * into an array of ops, each carrying its key already rendered with the
 * separator before it (JSON `,"status":`, LTSV `\tstatus:`), so a line is one
 * linear pass over the ops with no name lookups and no allocation.
 *
 * Rendering rules, shared by both formats:
 * - An absent string (p == NULL) and a negative ("unknown") number are "-"
 *   (INTERFACE.md); a present but empty string stays empty. A status of 0
 *   means no response was sent, which is also "-".
 * - time: ISO 8601 UTC with milliseconds, 2026-11-27T00:34:11.123Z.
 * - time_taken_ms: an integer number of milliseconds, truncated, like the
 *   field of the same name in Section's nginx module, so existing dashboards
 *   read it unchanged. upstream_*_ms carry microseconds, so they are written
 *   with 3 decimals (1.234) to keep that precision.
 * - request is "METHOD TARGET VERSION"; a missing part is "-", and when all
 *   three are missing the whole value is "-".
 * - upstream_reused is true or false.
 * - Extra header fields (http_<name>, sent_http_<name>) take the first header
 *   whose name matches case-insensitively; repeated headers are joined with
 *   ", " as RFC 9110 5.3 allows for list-valued fields (and as nginx does for
 *   a few of its $http_ variables), so no occurrence is lost.
 *
 * JSON values are strings escaped per RFC 8259, and every byte that is not
 * part of a strictly valid UTF-8 sequence (overlong, surrogate, above
 * U+10FFFF, truncated, stray continuation) is written as \u00XX of its value,
 * so every line is valid JSON whatever the client sent. LTSV has no escaping
 * of its own; values are written so a line can never gain a TAB, CR or LF:
 * TAB, CR and LF become \t \r \n, other control bytes, DEL and invalid UTF-8
 * become \xHH, and a backslash becomes \\ so the escaping stays reversible
 * (no information is lost, unlike replacing bytes by spaces).
 */
#include "log/access.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cfg/cfg.h"
#include "core/str.h"

enum log_op_kind {
    LOK_FIELD = 0, /* one of enum cfg_field */
    LOK_REQ_HDR,   /* http_<name> */
    LOK_RESP_HDR,  /* sent_http_<name> */
    /* must stay last */
    LOK_COUNT
};

struct log_op {
    enum log_op_kind kind;
    enum cfg_field field; /* when kind == LOK_FIELD */
    const char *key;      /* separator, key and ':' ready to copy */
    size_t keylen;
    const char *label; /* the bare key inside key, to find duplicates */
    size_t labellen;
    const char *hdr; /* header name as configured, for LOK_*_HDR */
    size_t hdrlen;
};

/* One allocation: this struct, the ops, then the strings they point to. */
struct log_fmt {
    enum cfg_log_format format;
    size_t nops;
    struct log_op ops[];
};

/*
 * Output cursor. Once a write does not fit, full is set and nothing more is
 * written, so the pass runs to its end without a check after every op.
 */
struct log_w {
    char *p;
    char *end;
    int full;
};

/*
 * glibc's gmtime_r() takes the process-wide tz lock, which all workers
 * would contend on; lines come in bursts within the same second, so each
 * thread keeps the last rendered second instead. The fmt is shared read-only
 * between workers, hence a thread-local cache rather than one in the fmt.
 */
struct log_time_cache {
    time_t sec;
    size_t len; /* 0 = nothing cached yet */
    char buf[48];
};

static _Thread_local struct log_time_cache log_time_cache;

static const char log_hex[] = "0123456789abcdef";

static inline void log_w_put(struct log_w *w, const void *s, size_t n)
{
    if ((size_t)(w->end - w->p) < n) {
        w->full = 1;
        w->p = w->end;
        return;
    }
    memcpy(w->p, s, n);
    w->p += n;
}

static inline void log_w_ch(struct log_w *w, char c)
{
    if (w->p == w->end) {
        w->full = 1;
        return;
    }
    *w->p++ = c;
}

#define LOG_W_LIT(w, lit) log_w_put((w), (lit), sizeof(lit) - 1)

static int log_is_cont(unsigned char c)
{
    return (c & 0xc0) == 0x80;
}

/*
 * Length of the valid UTF-8 sequence starting at s (2..4), or 0 when s[0]
 * does not start one. The ranges are those of RFC 3629 section 4, which
 * exclude overlong forms, surrogates and code points above U+10FFFF.
 */
static size_t log_utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xbf;

    if (c >= 0xc2 && c <= 0xdf)
        return n >= 2 && log_is_cont(s[1]) ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (n < 3)
            return 0;
        if (c == 0xe0)
            lo = 0xa0; /* below is overlong */
        else if (c == 0xed)
            hi = 0x9f; /* above are surrogates */
        return s[1] >= lo && s[1] <= hi && log_is_cont(s[2]) ? 3 : 0;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (n < 4)
            return 0;
        if (c == 0xf0)
            lo = 0x90; /* below is overlong */
        else if (c == 0xf4)
            hi = 0x8f; /* above is beyond U+10FFFF */
        return s[1] >= lo && s[1] <= hi && log_is_cont(s[2]) && log_is_cont(s[3]) ? 4 : 0;
    }
    return 0;
}

/* Bytes that go out as they are; everything else takes the slow path. */
static inline int log_is_plain(unsigned char c, int json)
{
    return c >= 0x20 && c < 0x7f && c != '\\' && (c != '"' || !json);
}

static void log_w_esc_byte(struct log_w *w, unsigned char c, int json)
{
    char b[6];

    switch (c) {
    case '\\':
        LOG_W_LIT(w, "\\\\");
        return;
    case '\n':
        LOG_W_LIT(w, "\\n");
        return;
    case '\r':
        LOG_W_LIT(w, "\\r");
        return;
    case '\t':
        LOG_W_LIT(w, "\\t");
        return;
    case '"':
        if (json) {
            LOG_W_LIT(w, "\\\"");
            return;
        }
        break;
    case '\b':
        if (json) {
            LOG_W_LIT(w, "\\b");
            return;
        }
        break;
    case '\f':
        if (json) {
            LOG_W_LIT(w, "\\f");
            return;
        }
        break;
    default:
        break;
    }
    if (json) {
        memcpy(b, "\\u00", 4);
        b[4] = log_hex[c >> 4];
        b[5] = log_hex[c & 15];
        log_w_put(w, b, 6);
    } else {
        b[0] = '\\';
        b[1] = 'x';
        b[2] = log_hex[c >> 4];
        b[3] = log_hex[c & 15];
        log_w_put(w, b, 4);
    }
}

#define LOG_ONES UINT64_C(0x0101010101010101)
#define LOG_HIGHS UINT64_C(0x8080808080808080)

/*
 * Whether all 8 bytes of v are plain, tested at once (the "has a zero byte"
 * trick of Hacker's Delight 6-1): most values are long ASCII runs, and this
 * makes them cost about one instruction per byte. A borrow or carry can
 * flag a byte next to a flagged one, never a word of plain bytes only.
 */
static inline int log_word_plain(uint64_t v, int json)
{
    uint64_t ctl = (v - LOG_ONES * 0x20) & ~v; /* a byte < 0x20 */
    uint64_t high = v | (v + LOG_ONES);        /* a byte >= 0x7f */
    uint64_t bs = v ^ (LOG_ONES * '\\');
    uint64_t qt = v ^ (LOG_ONES * '"');

    bs = (bs - LOG_ONES) & ~bs; /* a backslash */
    qt = json ? (qt - LOG_ONES) & ~qt : 0;
    return ((ctl | high | bs | qt) & LOG_HIGHS) == 0;
}

/* The bytes of one value, escaped for the format, without quotes. */
static void log_w_esc(struct log_w *w, const char *p, size_t len, int json)
{
    const unsigned char *s = (const unsigned char *)p;
    const unsigned char *end = s + len;

    while (s < end) {
        const unsigned char *run = s;
        uint64_t v;
        size_t k;

        /* Copy runs of plain ASCII and valid UTF-8 with one memcpy. */
        for (;;) {
            if (end - s >= 8 && (memcpy(&v, s, 8), log_word_plain(v, json))) {
                s += 8;
            } else if (s < end && log_is_plain(*s, json)) {
                s++;
            } else if (s < end && *s >= 0x80 && (k = log_utf8_len(s, (size_t)(end - s))) != 0) {
                s += k;
            } else {
                break;
            }
        }
        log_w_put(w, run, (size_t)(s - run));
        if (s < end)
            log_w_esc_byte(w, *s++, json);
    }
}

static void log_w_dash(struct log_w *w, int json)
{
    if (json)
        LOG_W_LIT(w, "\"-\"");
    else
        log_w_ch(w, '-');
}

static void log_w_str(struct log_w *w, struct core_str v, int json)
{
    if (!v.p) {
        log_w_dash(w, json);
        return;
    }
    if (json)
        log_w_ch(w, '"');
    log_w_esc(w, v.p, v.len, json);
    if (json)
        log_w_ch(w, '"');
}

static void log_w_cstr(struct log_w *w, const char *s, int json)
{
    struct core_str v = {s, s ? strlen(s) : 0};

    log_w_str(w, v, json);
}

static void log_w_u64(struct log_w *w, uint64_t v)
{
    char b[20];
    char *q = b + sizeof(b);

    do {
        *--q = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    log_w_put(w, q, (size_t)(b + sizeof(b) - q));
}

/* A count; negative means unknown. */
static void log_w_num(struct log_w *w, int64_t v, int json)
{
    if (v < 0)
        log_w_dash(w, json);
    else
        log_w_u64(w, (uint64_t)v);
}

/* Microseconds as milliseconds with 3 decimals; negative means unknown. */
static void log_w_ms3(struct log_w *w, int64_t us, int json)
{
    char b[4];

    if (us < 0) {
        log_w_dash(w, json);
        return;
    }
    log_w_u64(w, (uint64_t)us / 1000);
    b[0] = '.';
    b[1] = (char)('0' + us / 100 % 10);
    b[2] = (char)('0' + us / 10 % 10);
    b[3] = (char)('0' + us % 10);
    log_w_put(w, b, 4);
}

static void log_w_time(struct log_w *w, struct timespec ts, int json)
{
    struct log_time_cache *c = &log_time_cache;
    long ms = ts.tv_nsec / 1000000;
    char b[5];

    if (c->len == 0 || c->sec != ts.tv_sec) {
        struct tm tm;
        int n;

        if (!gmtime_r(&ts.tv_sec, &tm)) {
            log_w_dash(w, json);
            return;
        }
        n = snprintf(c->buf, sizeof(c->buf), "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        if (n <= 0 || (size_t)n >= sizeof(c->buf)) {
            c->len = 0;
            log_w_dash(w, json);
            return;
        }
        c->sec = ts.tv_sec;
        c->len = (size_t)n;
    }
    /* A bad tv_nsec must not turn into a bad timestamp. */
    if (ms < 0)
        ms = 0;
    if (ms > 999)
        ms = 999;
    b[0] = '.';
    b[1] = (char)('0' + ms / 100);
    b[2] = (char)('0' + ms / 10 % 10);
    b[3] = (char)('0' + ms % 10);
    b[4] = 'Z';
    if (json)
        log_w_ch(w, '"');
    log_w_put(w, c->buf, c->len);
    log_w_put(w, b, 5);
    if (json)
        log_w_ch(w, '"');
}

static void log_w_part(struct log_w *w, struct core_str v, int json)
{
    if (v.p)
        log_w_esc(w, v.p, v.len, json);
    else
        log_w_ch(w, '-');
}

static void log_w_request(struct log_w *w, const struct log_access_rec *r, int json)
{
    if (!r->method.p && !r->target.p && !r->version.p) {
        log_w_dash(w, json);
        return;
    }
    if (json)
        log_w_ch(w, '"');
    log_w_part(w, r->method, json);
    log_w_ch(w, ' ');
    log_w_part(w, r->target, json);
    log_w_ch(w, ' ');
    log_w_part(w, r->version, json);
    if (json)
        log_w_ch(w, '"');
}

static void log_w_hdr(struct log_w *w, const struct log_op *op, const struct core_hdr *h, size_t n,
                      int json)
{
    size_t found = 0;

    for (size_t i = 0; i < n; i++) {
        if (!h[i].name.p || !core_str_ieq(h[i].name, op->hdr, op->hdrlen))
            continue;
        if (found++ == 0) {
            if (json)
                log_w_ch(w, '"');
        } else {
            LOG_W_LIT(w, ", ");
        }
        if (h[i].value.p)
            log_w_esc(w, h[i].value.p, h[i].value.len, json);
    }
    if (found == 0)
        log_w_dash(w, json);
    else if (json)
        log_w_ch(w, '"');
}

static void log_w_field(struct log_w *w, enum cfg_field f, const struct log_access_rec *r, int json)
{
    switch (f) {
    case CFG_F_TIME:
        log_w_time(w, r->start, json);
        break;
    case CFG_F_TIME_TAKEN_MS:
        log_w_num(w, r->duration_us < 0 ? -1 : r->duration_us / 1000, json);
        break;
    case CFG_F_REQUEST:
        log_w_request(w, r, json);
        break;
    case CFG_F_METHOD:
        log_w_str(w, r->method, json);
        break;
    case CFG_F_PATH:
        log_w_str(w, r->target, json);
        break;
    case CFG_F_STATUS:
        log_w_num(w, r->status > 0 ? r->status : -1, json);
        break;
    case CFG_F_BYTES:
        log_w_num(w, r->bytes_sent, json);
        break;
    case CFG_F_RESPONSE_BODY_BYTES:
        log_w_num(w, r->response_body_bytes, json);
        break;
    case CFG_F_CONTENT_TYPE:
        log_w_str(w, r->content_type, json);
        break;
    case CFG_F_HOSTNAME:
        log_w_str(w, r->host, json);
        break;
    case CFG_F_REFERRER:
        log_w_str(w, r->referrer, json);
        break;
    case CFG_F_USERAGENT:
        log_w_str(w, r->useragent, json);
        break;
    case CFG_F_CLIENT_IP:
        log_w_str(w, r->client_ip, json);
        break;
    case CFG_F_HTTP_X_FORWARDED_PROTO:
        log_w_str(w, r->x_forwarded_proto, json);
        break;
    case CFG_F_UPSTREAM_ADDR:
        log_w_str(w, r->upstream_addr, json);
        break;
    case CFG_F_UPSTREAM_STATUS:
        log_w_num(w, r->upstream_status > 0 ? r->upstream_status : -1, json);
        break;
    case CFG_F_SECTION_IO_ID:
        log_w_str(w, r->section_io_id, json);
        break;
    case CFG_F_SECTION_IO_TAG:
        log_w_str(w, r->section_io_tag, json);
        break;
    case CFG_F_REQUEST_BYTES:
        log_w_num(w, r->request_bytes, json);
        break;
    case CFG_F_UPSTREAM_BYTES:
        log_w_num(w, r->upstream_bytes, json);
        break;
    case CFG_F_UPSTREAM_CONNECT_MS:
        log_w_ms3(w, r->upstream_connect_us, json);
        break;
    case CFG_F_UPSTREAM_HEADER_MS:
        log_w_ms3(w, r->upstream_header_us, json);
        break;
    case CFG_F_UPSTREAM_RESPONSE_MS:
        log_w_ms3(w, r->upstream_response_us, json);
        break;
    case CFG_F_UPSTREAM_REUSED:
        if (r->upstream_reused < 0)
            log_w_dash(w, json);
        else if (r->upstream_reused)
            LOG_W_LIT(w, "true");
        else
            LOG_W_LIT(w, "false");
        break;
    case CFG_F_UPSTREAM_ATTEMPTS:
        log_w_num(w, r->upstream_attempts, json);
        break;
    case CFG_F_TERMINATION:
        log_w_cstr(w, r->termination, json);
        break;
    case CFG_F_COUNT:
    default:
        log_w_dash(w, json);
        break;
    }
}

long log_fmt_line(const struct log_fmt *f, const struct log_access_rec *r, char *out, size_t cap)
{
    int json = f->format == CFG_LOG_JSON;
    struct log_w w;

    /* Every line has at least its '\n'; this also keeps out == NULL safe. */
    if (cap == 0)
        return -ENOSPC;
    w.p = out;
    w.end = out + cap;
    w.full = 0;

    for (size_t i = 0; i < f->nops; i++) {
        const struct log_op *op = &f->ops[i];

        log_w_put(&w, op->key, op->keylen);
        switch (op->kind) {
        case LOK_FIELD:
            log_w_field(&w, op->field, r, json);
            break;
        case LOK_REQ_HDR:
            log_w_hdr(&w, op, r->req_hdrs, r->nreq_hdrs, json);
            break;
        case LOK_RESP_HDR:
            log_w_hdr(&w, op, r->resp_hdrs, r->nresp_hdrs, json);
            break;
        case LOK_COUNT:
        default:
            break;
        }
    }
    if (json && f->nops == 0)
        LOG_W_LIT(&w, "{}\n");
    else if (json)
        LOG_W_LIT(&w, "}\n");
    else
        log_w_ch(&w, '\n');
    if (w.full)
        return -ENOSPC;
    return (long)(w.p - out);
}

/*
 * Label of an extra header field: prefix + name lowercased with '-' as '_',
 * the same names cfg/ documents and checks for clashes. Other token bytes
 * (RFC 9110 5.6.2) are safe in a JSON key and an LTSV label and stay; any
 * other byte (cfg/ rejects them, this is defence in depth) becomes '_', so a
 * label never needs escaping whatever the config holds.
 */
static int log_is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+.^_`|~", c));
}

static size_t log_hdr_label(char *dst, const char *prefix, const char *name)
{
    size_t n = strlen(prefix);

    memcpy(dst, prefix, n);
    for (const char *s = name; *s; s++) {
        char c = *s;

        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        else if (!log_is_tchar(c))
            c = '_';
        dst[n++] = c;
    }
    return n;
}

/*
 * Append one op whose label was just written at pool + 2 (room for the
 * separator and quote before it). A label already present is skipped: the
 * same key twice would be an ambiguous JSON object (RFC 8259 4 "SHOULD be
 * unique") and a confusing LTSV line.
 */
static char *log_fmt_add(struct log_fmt *f, char *pool, size_t labellen, enum log_op_kind kind,
                         enum cfg_field field, const char *hdr)
{
    int json = f->format == CFG_LOG_JSON;
    char *label = pool + 2;
    struct log_op *op;
    char *k = pool;

    for (size_t i = 0; i < f->nops; i++)
        if (f->ops[i].labellen == labellen && memcmp(f->ops[i].label, label, labellen) == 0)
            return pool;

    /* Build "<sep><quote>label<quote>:" in place around the label. */
    if (json) {
        k[0] = f->nops == 0 ? '{' : ',';
        k[1] = '"';
        label[labellen] = '"';
        label[labellen + 1] = ':';
        op = &f->ops[f->nops];
        op->key = k;
        op->keylen = labellen + 4;
    } else {
        /* No quotes in LTSV: TAB, label, ':' from k + 1; the first has no TAB. */
        k[1] = f->nops == 0 ? '\0' : '\t';
        label[labellen] = ':';
        op = &f->ops[f->nops];
        op->key = f->nops == 0 ? label : k + 1;
        op->keylen = labellen + 1 + (f->nops == 0 ? 0 : 1);
    }
    op->kind = kind;
    op->field = field;
    op->label = label;
    op->labellen = labellen;
    op->hdr = hdr;
    op->hdrlen = hdr ? strlen(hdr) : 0;
    f->nops++;
    return pool + labellen + 4;
}

struct log_fmt *log_fmt_new(const struct cfg_access_log *c)
{
    size_t nfields = c->nfields < CFG_F_COUNT ? c->nfields : CFG_F_COUNT;
    size_t nmax = nfields + c->nrequest_headers + c->nresponse_headers;
    size_t pool = 0;
    struct log_fmt *f;
    char *p;

    /* Each op takes at most 4 bytes around its label: sep, 2 quotes, ':'. */
    for (size_t i = 0; i < nfields; i++)
        pool += strlen(cfg_field_name(c->fields[i])) + 4;
    for (size_t i = 0; i < c->nrequest_headers; i++)
        pool += 2 * strlen(c->request_headers[i]) + sizeof("http_") + 4;
    for (size_t i = 0; i < c->nresponse_headers; i++)
        pool += 2 * strlen(c->response_headers[i]) + sizeof("sent_http_") + 4;

    f = calloc(1, sizeof(*f) + nmax * sizeof(f->ops[0]) + pool);
    if (!f)
        goto fail;
    f->format = c->format;
    p = (char *)(f->ops + nmax);

    for (size_t i = 0; i < nfields; i++) {
        enum cfg_field fld = c->fields[i];
        const char *name;
        size_t n;

        if ((unsigned)fld >= CFG_F_COUNT)
            continue;
        name = cfg_field_name(fld);
        n = strlen(name);
        memcpy(p + 2, name, n);
        p = log_fmt_add(f, p, n, LOK_FIELD, fld, NULL);
    }
    /* Header names are copied so the fmt does not depend on the cfg's life. */
    for (size_t i = 0; i < c->nrequest_headers; i++) {
        size_t n = log_hdr_label(p + 2, "http_", c->request_headers[i]);
        char *hdr = p + n + 4;

        strcpy(hdr, c->request_headers[i]);
        if (log_fmt_add(f, p, n, LOK_REQ_HDR, CFG_F_COUNT, hdr) != p)
            p = hdr + strlen(hdr) + 1;
    }
    for (size_t i = 0; i < c->nresponse_headers; i++) {
        size_t n = log_hdr_label(p + 2, "sent_http_", c->response_headers[i]);
        char *hdr = p + n + 4;

        strcpy(hdr, c->response_headers[i]);
        if (log_fmt_add(f, p, n, LOK_RESP_HDR, CFG_F_COUNT, hdr) != p)
            p = hdr + strlen(hdr) + 1;
    }
    return f;

fail:
    return NULL;
}

void log_fmt_free(struct log_fmt *f)
{
    free(f);
}
