/*
 * Access-log formatter (C5). log_fmt_new() turns the configured field list
 * into an array of ops, each carrying its key already rendered with the
 * separator before it (JSON `,"status":`, LTSV `\tstatus:`), so a line is one
 * linear pass over the ops with no name lookups and no allocation.
 *
 * Rendering rules, shared by both formats:
 * - An absent string (p == NULL) and a negative ("unknown") number are "-"
 *   (docs/contract.md); a present but empty string stays empty. A status of 0
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
 * - A string value is cut when its escaped form would be longer than
 *   LOG_VALUE_MAX bytes: it keeps the longest head that leaves room for
 *   LOG_CUT_MARK, cut between two characters or escapes (log_cv_*), so a line
 *   has a fixed bound, log_fmt_max_line(), computed with the format.
 *
 * JSON values are strings escaped per RFC 8259, and every byte that is not
 * part of a strictly valid UTF-8 sequence (overlong, surrogate, above
 * U+10FFFF, truncated, stray continuation) is written as \u00XX of its value,
 * so every line is valid JSON whatever the client sent. LTSV has no escaping
 * of its own; values are written so a line can never gain a TAB, CR or LF:
 * TAB, CR and LF become \t \r \n, other control bytes, DEL and invalid UTF-8
 * become \xHH, and a backslash becomes \\ so the escaping stays reversible
 * (no information is lost, unlike replacing bytes by spaces).
 *
 * A line takes one of two paths per op. When the buffer has room for the
 * key and for the value's worst case (a fixed bound, or 6 bytes per byte of a
 * string) and no string can need cutting (LOG_SHORT_MAX), the value is
 * written with no check per byte or per piece (log_put_*), which is nearly
 * always: lines are a few hundred bytes and the buffer is log_fmt_max_line().
 * Otherwise the op takes the careful path (log_w_*), which checks every
 * write and stops at cap: strings are escaped piece by piece and cut at
 * LOG_VALUE_MAX, values of bounded size (numbers, times, booleans) are
 * rendered by the same log_put_* code into a scratch buffer and copied if
 * they fit. Both paths write the same bytes.
 */
#include "log/access.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cfg/cfg.h"
#include "core/str.h"

/*
 * How an op's value is written. Fields of the same type share one case, the
 * value being found at an offset in the record, so the per-op switch stays
 * small. LH_DASH is 0 so that a field missing from log_fields is "-", never
 * some other member read as the wrong type.
 */
enum log_how {
    LH_DASH = 0,
    LH_STR,     /* struct core_str */
    LH_CSTR,    /* const char *, NULL when absent */
    LH_NUM,     /* int64_t, negative when unknown */
    LH_INT,     /* int, negative when unknown */
    LH_POS,     /* int, 0 or negative when unknown (a status) */
    LH_US_MS,   /* int64_t microseconds as whole milliseconds */
    LH_US_MS3,  /* int64_t microseconds as milliseconds with 3 decimals */
    LH_TIME,    /* struct timespec */
    LH_BOOL,    /* int, negative when unknown */
    LH_REQUEST, /* method, target and version */
    LH_REQ_HDR, /* http_<name> */
    LH_RESP_HDR /* sent_http_<name> */
};

/*
 * 24 bytes, so a line's ops span few cache lines: between two lines the
 * kernel's TCP work has evicted them, and each line reads them all.
 */
struct log_op {
    const char *key; /* separator, key and ':' ready to copy */
    const char *hdr; /* header name as configured, for LH_*_HDR */
    uint16_t keylen;
    uint16_t hdrlen;
    uint16_t off; /* of the value in struct log_access_rec */
    uint8_t how;  /* enum log_how */
};

_Static_assert(sizeof(struct log_op) <= 24, "a log_op stays small");

/* Keys are made of a label of at most this many bytes and 4 around it. */
#define LOG_LABEL_MAX (UINT16_MAX - 4)

_Static_assert(sizeof(struct log_access_rec) <= UINT16_MAX, "log_op.off is 16 bits");

/* Offset of member m, which must be of type t (else _Generic has no match). */
#define LOG_OFF(m, t)                                                                              \
    (offsetof(struct log_access_rec, m) +                                                          \
     0 * sizeof(_Generic(((struct log_access_rec *)0)->m, t : 0)))

static const struct {
    unsigned char how;
    unsigned short off;
} log_fields[CFG_F_COUNT] = {
    [CFG_F_TIME] = {LH_TIME, LOG_OFF(start, struct timespec)},
    [CFG_F_TIME_TAKEN_MS] = {LH_US_MS, LOG_OFF(duration_us, int64_t)},
    [CFG_F_REQUEST] = {LH_REQUEST, 0},
    [CFG_F_METHOD] = {LH_STR, LOG_OFF(method, struct core_str)},
    [CFG_F_PATH] = {LH_STR, LOG_OFF(target, struct core_str)},
    [CFG_F_STATUS] = {LH_POS, LOG_OFF(status, int)},
    [CFG_F_BYTES] = {LH_NUM, LOG_OFF(bytes_sent, int64_t)},
    [CFG_F_RESPONSE_BODY_BYTES] = {LH_NUM, LOG_OFF(response_body_bytes, int64_t)},
    [CFG_F_CONTENT_TYPE] = {LH_STR, LOG_OFF(content_type, struct core_str)},
    [CFG_F_HOSTNAME] = {LH_STR, LOG_OFF(host, struct core_str)},
    [CFG_F_REFERRER] = {LH_STR, LOG_OFF(referrer, struct core_str)},
    [CFG_F_USERAGENT] = {LH_STR, LOG_OFF(useragent, struct core_str)},
    [CFG_F_CLIENT_IP] = {LH_STR, LOG_OFF(client_ip, struct core_str)},
    [CFG_F_HTTP_X_FORWARDED_PROTO] = {LH_STR, LOG_OFF(x_forwarded_proto, struct core_str)},
    [CFG_F_UPSTREAM_ADDR] = {LH_STR, LOG_OFF(upstream_addr, struct core_str)},
    [CFG_F_UPSTREAM_STATUS] = {LH_POS, LOG_OFF(upstream_status, int)},
    [CFG_F_SECTION_IO_ID] = {LH_STR, LOG_OFF(section_io_id, struct core_str)},
    [CFG_F_SECTION_IO_TAG] = {LH_STR, LOG_OFF(section_io_tag, struct core_str)},
    [CFG_F_REQUEST_BYTES] = {LH_NUM, LOG_OFF(request_bytes, int64_t)},
    [CFG_F_UPSTREAM_BYTES] = {LH_NUM, LOG_OFF(upstream_bytes, int64_t)},
    [CFG_F_UPSTREAM_CONNECT_MS] = {LH_US_MS3, LOG_OFF(upstream_connect_us, int64_t)},
    [CFG_F_UPSTREAM_HEADER_MS] = {LH_US_MS3, LOG_OFF(upstream_header_us, int64_t)},
    [CFG_F_UPSTREAM_RESPONSE_MS] = {LH_US_MS3, LOG_OFF(upstream_response_us, int64_t)},
    [CFG_F_UPSTREAM_REUSED] = {LH_BOOL, LOG_OFF(upstream_reused, int)},
    [CFG_F_UPSTREAM_ATTEMPTS] = {LH_INT, LOG_OFF(upstream_attempts, int)},
    [CFG_F_TERMINATION] = {LH_CSTR, LOG_OFF(termination, const char *)},
    [CFG_F_RULE] = {LH_CSTR, LOG_OFF(rule, const char *)},
};

/* One allocation: this struct, the ops, then the strings they point to. */
struct log_fmt {
    enum cfg_log_format format;
    size_t max_line; /* log_fmt_max_line() */
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

/*
 * The escape of byte c, which is neither plain nor the start of a valid
 * UTF-8 sequence, into b; returns its length (2 to 6).
 */
static size_t log_esc_code(unsigned char c, int json, char b[6])
{
    char e = 0;

    switch (c) {
    case '\\':
        e = '\\';
        break;
    case '\n':
        e = 'n';
        break;
    case '\r':
        e = 'r';
        break;
    case '\t':
        e = 't';
        break;
    case '"':
        e = json ? '"' : 0;
        break;
    case '\b':
        e = json ? 'b' : 0;
        break;
    case '\f':
        e = json ? 'f' : 0;
        break;
    default:
        break;
    }
    b[0] = '\\';
    if (e) {
        b[1] = e;
        return 2;
    }
    if (json) {
        memcpy(b + 1, "u00", 3);
        b[4] = log_hex[c >> 4];
        b[5] = log_hex[c & 15];
        return 6;
    }
    b[1] = 'x';
    b[2] = log_hex[c >> 4];
    b[3] = log_hex[c & 15];
    return 4;
}

static void log_w_esc_byte(struct log_w *w, unsigned char c, int json)
{
    char b[6];

    log_w_put(w, b, log_esc_code(c, json, b));
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
/*
 * The end of the run of bytes at s that need no escaping (plain ASCII and
 * valid UTF-8), scanning no further once more than max bytes are taken.
 */
static inline const unsigned char *log_plain_run(const unsigned char *s, const unsigned char *end,
                                                 size_t max, int json)
{
    const unsigned char *run = s;
    uint64_t v;
    size_t k;

    while ((size_t)(s - run) <= max) {
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
    return s;
}

static void log_w_esc(struct log_w *w, const char *p, size_t len, int json)
{
    const unsigned char *s = (const unsigned char *)p;
    const unsigned char *end = s + len;

    while (s < end) {
        const unsigned char *run = s;

        /* Copy runs of plain ASCII and valid UTF-8 with one memcpy. */
        s = log_plain_run(s, end, SIZE_MAX, json);
        log_w_put(w, run, (size_t)(s - run));
        if (s < end)
            log_w_esc_byte(w, *s++, json);
    }
}

/*
 * A value no longer than this (input bytes) cannot need cutting: each byte
 * becomes at most 6 (\u00XX).
 */
#define LOG_SHORT_MAX (LOG_VALUE_MAX / 6)

_Static_assert(LOG_VALUE_MAX > LOG_CUT_LEN + 6, "a cut value keeps a head");

/*
 * A string value capped at LOG_VALUE_MAX bytes of output. Its head goes out
 * while it leaves room for the marker (room); the first piece that does not
 * fit there, and all after it, are held in tail, which has room for what
 * was left plus the marker. If the value ends with everything held, the
 * tail follows the head and nothing was cut; if a piece does not fit in the
 * tail either, the tail is dropped and the marker follows the head. So the
 * marker appears exactly when the whole value would not fit, and nothing is
 * ever written past what the line keeps.
 */
enum { LOG_CV_HEAD, LOG_CV_TAIL, LOG_CV_CUT };

struct log_cv {
    struct log_w *w;
    size_t room; /* LOG_CV_HEAD: bytes the head may still take */
    size_t tcap; /* LOG_CV_TAIL: room of tail */
    size_t tlen;
    int state;
    /*
     * tcap is the head's room left when it stopped, below 6 (an escape did
     * not fit) or 4 (a run stopped before a UTF-8 sequence), plus the marker.
     */
    char tail[LOG_CUT_LEN + 6];
};

static void log_cv_init(struct log_cv *v, struct log_w *w)
{
    v->w = w;
    v->room = LOG_VALUE_MAX - LOG_CUT_LEN;
    v->tcap = 0;
    v->tlen = 0;
    v->state = LOG_CV_HEAD;
}

/* Bytes the value may still take; a piece longer than this cuts it. */
static size_t log_cv_left(const struct log_cv *v)
{
    if (v->state == LOG_CV_HEAD)
        return v->room + LOG_CUT_LEN;
    return v->state == LOG_CV_TAIL ? v->tcap - v->tlen : 0;
}

static void log_cv_hold(struct log_cv *v, const char *s, size_t n)
{
    if (n > v->tcap - v->tlen) {
        v->state = LOG_CV_CUT;
        log_w_put(v->w, LOG_CUT_MARK, LOG_CUT_LEN);
        return;
    }
    memcpy(v->tail + v->tlen, s, n);
    v->tlen += n;
}

/* n bytes that stay together: one escape. */
static void log_cv_unit(struct log_cv *v, const char *s, size_t n)
{
    if (v->state == LOG_CV_HEAD) {
        if (n <= v->room) {
            log_w_put(v->w, s, n);
            v->room -= n;
            return;
        }
        v->state = LOG_CV_TAIL;
        v->tcap = v->room + LOG_CUT_LEN;
    }
    if (v->state == LOG_CV_TAIL)
        log_cv_hold(v, s, n);
}

/* Plain bytes and whole UTF-8 sequences: split between two characters only. */
static void log_cv_run(struct log_cv *v, const char *s, size_t n)
{
    if (v->state == LOG_CV_HEAD) {
        size_t k = v->room;

        if (n <= k) {
            log_w_put(v->w, s, n);
            v->room -= n;
            return;
        }
        /* s[k] exists; back up to the lead byte of its character. */
        while (k > 0 && log_is_cont((unsigned char)s[k]))
            k--;
        log_w_put(v->w, s, k);
        v->state = LOG_CV_TAIL;
        v->tcap = v->room - k + LOG_CUT_LEN;
        s += k;
        n -= k;
    }
    if (v->state == LOG_CV_TAIL)
        log_cv_hold(v, s, n);
}

/* log_w_esc() into a capped value. */
static void log_cv_esc(struct log_cv *v, const char *p, size_t len, int json)
{
    const unsigned char *s = (const unsigned char *)p;
    const unsigned char *end = s + len;

    while (s < end && v->state != LOG_CV_CUT) {
        const unsigned char *run = s;
        size_t left = log_cv_left(v);

        /* A run longer than left cuts the value: no need to scan further. */
        s = log_plain_run(s, end, left, json);
        if (s > run)
            log_cv_run(v, (const char *)run, (size_t)(s - run));
        if (s < end && v->state != LOG_CV_CUT) {
            char b[6];

            log_cv_unit(v, b, log_esc_code(*s++, json, b));
        }
    }
}

static void log_cv_end(struct log_cv *v)
{
    if (v->state == LOG_CV_TAIL)
        log_w_put(v->w, v->tail, v->tlen);
}

/* One string value, escaped and capped, without quotes. */
static void log_w_val(struct log_w *w, const char *p, size_t len, int json)
{
    struct log_cv v;

    if (len <= LOG_SHORT_MAX) {
        log_w_esc(w, p, len, json);
        return;
    }
    log_cv_init(&v, w);
    log_cv_esc(&v, p, len, json);
    log_cv_end(&v);
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
    log_w_val(w, v.p, v.len, json);
    if (json)
        log_w_ch(w, '"');
}

static void log_w_cstr(struct log_w *w, const char *s, int json)
{
    struct core_str v = {s, s ? strlen(s) : 0};

    log_w_str(w, v, json);
}

/*
 * Render second sec into c unless it holds it already; 0 when it cannot be
 * rendered (the cache then keeps whatever it held).
 */
static int log_time_get(struct log_time_cache *c, time_t sec)
{
    struct tm tm;
    int n;

    if (c->len != 0 && c->sec == sec)
        return 1;
    if (!gmtime_r(&sec, &tm))
        return 0;
    n = snprintf(c->buf, sizeof(c->buf), "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (n <= 0 || (size_t)n >= sizeof(c->buf)) {
        c->len = 0;
        return 0;
    }
    c->sec = sec;
    c->len = (size_t)n;
    return 1;
}

/* A bad tv_nsec must not turn into a bad timestamp. */
static inline long log_time_ms(struct timespec ts)
{
    long ms = ts.tv_nsec / 1000000;

    if (ms < 0)
        ms = 0;
    if (ms > 999)
        ms = 999;
    return ms;
}

static void log_w_part(struct log_w *w, struct core_str v, int json)
{
    if (v.p)
        log_w_val(w, v.p, v.len, json);
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

/* The matching headers' values joined with ", ": one value, capped as one. */
static void log_w_hdr(struct log_w *w, const struct log_op *op, const struct core_hdr *h, size_t n,
                      int json)
{
    struct log_cv v;
    size_t found = 0;

    log_cv_init(&v, w);
    for (size_t i = 0; i < n; i++) {
        if (!h[i].name.p || !core_str_ieq(h[i].name, op->hdr, op->hdrlen))
            continue;
        if (found++ == 0) {
            if (json)
                log_w_ch(w, '"');
        } else {
            log_cv_run(&v, ", ", 2);
        }
        if (h[i].value.p)
            log_cv_esc(&v, h[i].value.p, h[i].value.len, json);
    }
    log_cv_end(&v);
    if (found == 0)
        log_w_dash(w, json);
    else if (json)
        log_w_ch(w, '"');
}

/*
 * The fast path: each log_put_* writes at o, which the caller has checked
 * has room for the worst case, and returns the end of what it wrote.
 *
 * Room after a key for any value but a string or a request: 20 digits with
 * 3 decimals, or a time (2 quotes, the cached date, ".mmmZ").
 */
#define LOG_FAST_ROOM 64

_Static_assert(sizeof(((struct log_time_cache *)0)->buf) + 7 <= LOG_FAST_ROOM,
               "a time fits in LOG_FAST_ROOM");

static char *log_put_fixed(char *o, const struct log_op *op, const struct log_access_rec *r,
                           int json);

/* One op, key and value, on the careful path. */
static void log_w_op(struct log_w *w, const struct log_op *op, const struct log_access_rec *r,
                     int json)
{
    const void *at = (const char *)r + op->off;
    char tmp[LOG_FAST_ROOM];

    log_w_put(w, op->key, op->keylen);
    switch ((enum log_how)op->how) {
    case LH_STR:
        log_w_str(w, *(const struct core_str *)at, json);
        return;
    case LH_CSTR:
        log_w_cstr(w, *(const char *const *)at, json);
        return;
    case LH_REQUEST:
        log_w_request(w, r, json);
        return;
    case LH_REQ_HDR:
        log_w_hdr(w, op, r->req_hdrs, r->nreq_hdrs, json);
        return;
    case LH_RESP_HDR:
        log_w_hdr(w, op, r->resp_hdrs, r->nresp_hdrs, json);
        return;
    default:
        /* A value of bounded size: rendered aside, then copied if it fits. */
        log_w_put(w, tmp, (size_t)(log_put_fixed(tmp, op, r, json) - tmp));
        return;
    }
}

/*
 * One op on the careful path; NULL once a write has not fit, as nothing
 * more would be written after that.
 */
static char *log_op_careful(char *p, char *end, const struct log_op *op,
                            const struct log_access_rec *r, int json)
{
    struct log_w w = {p, end, 0};

    log_w_op(&w, op, r, json);
    return w.full ? NULL : w.p;
}

/*
 * The longest string value that surely fits in room bytes: 8 bytes per byte
 * cover the 6 of \u00XX (4 of \xHH) and, room being at least LOG_FAST_ROOM,
 * the quotes, or the request's 2 quotes, 2 spaces and 3 dashes.
 */
#define LOG_STR_MAX(room) ((room) / 8)

/* "00" to "99": numbers are written two digits per division. */
static const char log_d2[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233"
    "34353637383940414243444546474849505152535455565758596061626364656667"
    "6869707172737475767778798081828384858687888990919293949596979899";

/*
 * n bytes from s. Keys and values are mostly 1 to 32 bytes, for which two
 * overlapping fixed-size copies beat a call to memcpy with a variable size.
 */
static inline char *log_put_bytes(char *o, const char *s, size_t n)
{
    if (n >= 16) {
        if (n > 32) {
            memcpy(o, s, n);
            return o + n;
        }
        memcpy(o, s, 16);
        memcpy(o + n - 16, s + n - 16, 16);
    } else if (n >= 8) {
        memcpy(o, s, 8);
        memcpy(o + n - 8, s + n - 8, 8);
    } else if (n >= 4) {
        memcpy(o, s, 4);
        memcpy(o + n - 4, s + n - 4, 4);
    } else if (n > 0) {
        o[0] = s[0];
        o[n / 2] = s[n / 2];
        o[n - 1] = s[n - 1];
    }
    return o + n;
}

static inline char *log_put_dash(char *o, int json)
{
    if (!json) {
        *o = '-';
        return o + 1;
    }
    memcpy(o, "\"-\"", 3);
    return o + 3;
}

static char *log_put_u64_long(char *o, uint64_t v)
{
    uint64_t t = 10000;
    size_t n = 4;
    char *q;

    while (n < 20 && v >= t) {
        n++;
        t *= 10;
    }
    q = o + n;
    while (v >= 100) {
        q -= 2;
        memcpy(q, log_d2 + 2 * (v % 100), 2);
        v /= 100;
    }
    if (v >= 10)
        memcpy(q - 2, log_d2 + 2 * v, 2);
    else
        q[-1] = (char)('0' + v);
    return o + n;
}

/* Counts and statuses are mostly below 1000: no digit counting for those. */
static inline char *log_put_u64(char *o, uint64_t v)
{
    if (v < 10) {
        *o = (char)('0' + v);
        return o + 1;
    }
    if (v < 100) {
        memcpy(o, log_d2 + 2 * v, 2);
        return o + 2;
    }
    if (v < 1000) {
        o[0] = (char)('0' + v / 100);
        memcpy(o + 1, log_d2 + 2 * (v % 100), 2);
        return o + 3;
    }
    return log_put_u64_long(o, v);
}

static inline char *log_put_num(char *o, int64_t v, int json)
{
    if (v < 0)
        return log_put_dash(o, json);
    return log_put_u64(o, (uint64_t)v);
}

static inline char *log_put_ms3(char *o, int64_t us, int json)
{
    uint64_t frac;

    if (us < 0)
        return log_put_dash(o, json);
    o = log_put_u64(o, (uint64_t)us / 1000);
    frac = (uint64_t)us % 1000;
    o[0] = '.';
    o[1] = (char)('0' + frac / 100);
    memcpy(o + 2, log_d2 + 2 * (frac % 100), 2);
    return o + 4;
}

static inline char *log_put_time(char *o, struct timespec ts, int json)
{
    struct log_time_cache *c = &log_time_cache;
    long ms = log_time_ms(ts);

    if (!log_time_get(c, ts.tv_sec))
        return log_put_dash(o, json);
    if (json)
        *o++ = '"';
    o = log_put_bytes(o, c->buf, c->len);
    o[0] = '.';
    o[1] = (char)('0' + ms / 100);
    memcpy(o + 2, log_d2 + 2 * (ms % 100), 2);
    o[4] = 'Z';
    o += 5;
    if (json)
        *o++ = '"';
    return o;
}

/* A value of bounded size (at most LOG_FAST_ROOM bytes): the kinds not strings. */
static inline __attribute__((always_inline)) char *
log_put_fixed(char *o, const struct log_op *op, const struct log_access_rec *r, int json)
{
    const void *at = (const char *)r + op->off;

    switch ((enum log_how)op->how) {
    case LH_NUM:
        return log_put_num(o, *(const int64_t *)at, json);
    case LH_INT:
        return log_put_num(o, *(const int *)at, json);
    case LH_POS:
        return log_put_num(o, *(const int *)at > 0 ? *(const int *)at : -1, json);
    case LH_US_MS:
        return log_put_num(o, *(const int64_t *)at < 0 ? -1 : *(const int64_t *)at / 1000, json);
    case LH_US_MS3:
        return log_put_ms3(o, *(const int64_t *)at, json);
    case LH_TIME:
        return log_put_time(o, *(const struct timespec *)at, json);
    case LH_BOOL:
        if (*(const int *)at < 0)
            return log_put_dash(o, json);
        if (*(const int *)at) {
            memcpy(o, "true", 4);
            return o + 4;
        }
        memcpy(o, "false", 5);
        return o + 5;
    default:
        return log_put_dash(o, json);
    }
}

/* Whatever log_put_esc cannot take word by word; o has room for 6 * len. */
static char *log_put_esc_slow(char *o, const unsigned char *s, size_t len, int json)
{
    struct log_w w = {o, o + 6 * len, 0};

    log_w_esc(&w, (const char *)s, len, json);
    return w.p;
}

/*
 * log_w_esc() for the common value, plain ASCII, checked and copied 8 bytes
 * at a time; a value under 8 bytes is checked as one word made of its
 * pieces. The first word with anything else hands the rest to the careful
 * escaper, which may start there since the bytes before it are plain ASCII
 * and so cannot be part of a UTF-8 sequence.
 */
static inline char *log_put_esc(char *o, const char *p, size_t len, int json)
{
    const unsigned char *s = (const unsigned char *)p;
    const unsigned char *e = s + len;
    uint64_t v;

    if (len < 8) {
        if (len >= 4) {
            uint32_t a, b;

            memcpy(&a, s, 4);
            memcpy(&b, e - 4, 4);
            if (!log_word_plain(a | (uint64_t)b << 32, json))
                return log_put_esc_slow(o, s, len, json);
            memcpy(o, &a, 4);
            memcpy(o + len - 4, &b, 4);
        } else if (len > 0) {
            /* The unused bytes are 'a', which is plain. */
            v = s[0] | (uint64_t)s[len / 2] << 8 | (uint64_t)s[len - 1] << 16 |
                (LOG_ONES * 'a') << 24;
            if (!log_word_plain(v, json))
                return log_put_esc_slow(o, s, len, json);
            o[0] = (char)s[0];
            o[len / 2] = (char)s[len / 2];
            o[len - 1] = (char)s[len - 1];
        }
        return o + len;
    }
    while (e - s > 8) {
        memcpy(&v, s, 8);
        if (!log_word_plain(v, json))
            return log_put_esc_slow(o, s, (size_t)(e - s), json);
        memcpy(o, &v, 8);
        o += 8;
        s += 8;
    }
    /* 1 to 8 bytes left: the value's last 8, overlapping plain ones done. */
    memcpy(&v, e - 8, 8);
    if (!log_word_plain(v, json))
        return log_put_esc_slow(o, s, (size_t)(e - s), json);
    o += e - s;
    memcpy(o - 8, &v, 8);
    return o;
}

static inline char *log_put_str(char *o, struct core_str v, int json)
{
    if (!v.p)
        return log_put_dash(o, json);
    if (json)
        *o++ = '"';
    o = log_put_esc(o, v.p, v.len, json);
    if (json)
        *o++ = '"';
    return o;
}

static inline char *log_put_part(char *o, struct core_str v, int json)
{
    if (!v.p) {
        *o = '-';
        return o + 1;
    }
    return log_put_esc(o, v.p, v.len, json);
}

static char *log_put_request(char *o, const struct log_access_rec *r, int json)
{
    if (!r->method.p && !r->target.p && !r->version.p)
        return log_put_dash(o, json);
    if (json)
        *o++ = '"';
    o = log_put_part(o, r->method, json);
    *o++ = ' ';
    o = log_put_part(o, r->target, json);
    *o++ = ' ';
    o = log_put_part(o, r->version, json);
    if (json)
        *o++ = '"';
    return o;
}

/*
 * The whole line, compiled once per format so that json is a constant, and
 * once more for a cap of at least log_fmt_max_line() (sure): then no write
 * can pass the end, and only strings long enough to be cut leave the fast
 * path. An op's fields go to locals before anything is written: a store to
 * out may alias f and r as far as the compiler knows, and would force
 * reloads.
 */
static inline __attribute__((always_inline)) long log_fmt_run(const struct log_fmt *f,
                                                              const struct log_access_rec *r,
                                                              char *out, size_t cap, const int json,
                                                              const int sure)
{
    const struct log_op *op = f->ops;
    const struct log_op *last = op + f->nops;
    char *end = out + cap;
    char *p = out;

    for (; op < last; op++) {
        const void *at = (const char *)r + op->off;
        size_t keylen = op->keylen;
        size_t room = (size_t)(end - p);
        char *o;

        if (!sure && room < keylen + LOG_FAST_ROOM)
            goto careful;
        room -= keylen;
        o = log_put_bytes(p, op->key, keylen);
        switch ((enum log_how)op->how) {
        case LH_STR: {
            struct core_str v = *(const struct core_str *)at;

            if ((!sure && v.len > LOG_STR_MAX(room)) || v.len > LOG_SHORT_MAX)
                goto careful;
            o = log_put_str(o, v, json);
            break;
        }
        case LH_CSTR: {
            const char *s = *(const char *const *)at;
            struct core_str v = {s, s ? strlen(s) : 0};

            if ((!sure && v.len > LOG_STR_MAX(room)) || v.len > LOG_SHORT_MAX)
                goto careful;
            o = log_put_str(o, v, json);
            break;
        }
        case LH_REQUEST: {
            size_t m = r->method.len, t = r->target.len, v = r->version.len;

            /* (m | t | v) <= LOG_STR_MAX bounds each, so the sum cannot wrap. */
            if ((m | t | v) > LOG_SHORT_MAX ||
                (!sure && ((m | t | v) > LOG_STR_MAX(room) || m + t + v > LOG_STR_MAX(room))))
                goto careful;
            o = log_put_request(o, r, json);
            break;
        }
        case LH_REQ_HDR:
        case LH_RESP_HDR:
            /* Extra headers are rare enough not to need a fast path. */
            goto careful;
        default:
            o = log_put_fixed(o, op, r, json);
            break;
        }
        p = o;
        continue;
    careful:
        p = log_op_careful(p, end, op, r, json);
        if (!p)
            return -ENOSPC;
    }
    if (json) {
        size_t n = f->nops == 0 ? 3 : 2;

        if (!sure && (size_t)(end - p) < n)
            return -ENOSPC;
        memcpy(p, f->nops == 0 ? "{}\n" : "}\n", n);
        p += n;
    } else {
        if (!sure && p == end)
            return -ENOSPC;
        *p++ = '\n';
    }
    return (long)(p - out);
}

size_t log_fmt_max_line(const struct log_fmt *f)
{
    return f->max_line;
}

long log_fmt_line(const struct log_fmt *f, const struct log_access_rec *r, char *out, size_t cap)
{
    /* Every line has at least its '\n'; this also keeps out == NULL safe. */
    if (cap == 0)
        return -ENOSPC;
    if (cap >= f->max_line)
        return f->format == CFG_LOG_JSON ? log_fmt_run(f, r, out, cap, 1, 1)
                                         : log_fmt_run(f, r, out, cap, 0, 1);
    if (f->format == CFG_LOG_JSON)
        return log_fmt_run(f, r, out, cap, 1, 0);
    return log_fmt_run(f, r, out, cap, 0, 0);
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

/* The bare label inside an op's key, to find duplicates. */
static struct core_str log_op_label(const struct log_fmt *f, const struct log_op *op)
{
    if (f->format == CFG_LOG_JSON)
        return (struct core_str){op->key + 2, op->keylen - 4u};
    /* LTSV: "label:" for the first op, "\tlabel:" after it; a label has no TAB. */
    if (op->key[0] == '\t')
        return (struct core_str){op->key + 1, op->keylen - 2u};
    return (struct core_str){op->key, op->keylen - 1u};
}

/*
 * Append one op whose label was just written at pool + 2 (room for the
 * separator and quote before it). A label already present is skipped: the
 * same key twice would be an ambiguous JSON object (RFC 8259 4 "SHOULD be
 * unique") and a confusing LTSV line.
 */
static char *log_fmt_add(struct log_fmt *f, char *pool, size_t labellen, enum log_how how,
                         size_t off, const char *hdr)
{
    int json = f->format == CFG_LOG_JSON;
    char *label = pool + 2;
    struct log_op *op;
    char *k = pool;

    for (size_t i = 0; i < f->nops; i++) {
        struct core_str l = log_op_label(f, &f->ops[i]);

        if (l.len == labellen && memcmp(l.p, label, labellen) == 0)
            return pool;
    }

    /* Build "<sep><quote>label<quote>:" in place around the label. */
    if (json) {
        k[0] = f->nops == 0 ? '{' : ',';
        k[1] = '"';
        label[labellen] = '"';
        label[labellen + 1] = ':';
        op = &f->ops[f->nops];
        op->key = k;
        op->keylen = (uint16_t)(labellen + 4);
    } else {
        /* No quotes in LTSV: TAB, label, ':' from k + 1; the first has no TAB. */
        k[1] = f->nops == 0 ? '\0' : '\t';
        label[labellen] = ':';
        op = &f->ops[f->nops];
        op->key = f->nops == 0 ? label : k + 1;
        op->keylen = (uint16_t)(labellen + 1 + (f->nops == 0 ? 0 : 1));
    }
    op->how = (uint8_t)how;
    op->off = (uint16_t)off;
    op->hdr = hdr;
    op->hdrlen = (uint16_t)(hdr ? strlen(hdr) : 0);
    f->nops++;
    return pool + labellen + 4;
}

/*
 * The longest line of f: its keys, each value's bound and the line's end
 * ("}\n", or "{}\n" when there is no op, or "\n"). A string value is at most
 * LOG_VALUE_MAX bytes and 2 quotes ("-" fits in that too), a request 3 of
 * them, 2 spaces and 2 quotes, any other value LOG_FAST_ROOM.
 */
static size_t log_fmt_bound(const struct log_fmt *f)
{
    size_t n = 3;

    for (size_t i = 0; i < f->nops; i++) {
        const struct log_op *op = &f->ops[i];

        n += op->keylen;
        switch ((enum log_how)op->how) {
        case LH_STR:
        case LH_CSTR:
        case LH_REQ_HDR:
        case LH_RESP_HDR:
            n += LOG_VALUE_MAX + 2;
            break;
        case LH_REQUEST:
            n += 3 * LOG_VALUE_MAX + 4;
            break;
        default:
            n += LOG_FAST_ROOM;
            break;
        }
    }
    return n;
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
    for (size_t i = 0; i < c->nrequest_headers; i++) {
        /* cfg/ allows far shorter names; the ops' lengths are 16 bits */
        if (strlen(c->request_headers[i]) > LOG_LABEL_MAX - sizeof("sent_http_"))
            goto fail;
        pool += 2 * strlen(c->request_headers[i]) + sizeof("http_") + 4;
    }
    for (size_t i = 0; i < c->nresponse_headers; i++) {
        if (strlen(c->response_headers[i]) > LOG_LABEL_MAX - sizeof("sent_http_"))
            goto fail;
        pool += 2 * strlen(c->response_headers[i]) + sizeof("sent_http_") + 4;
    }

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
        p = log_fmt_add(f, p, n, log_fields[fld].how, log_fields[fld].off, NULL);
    }
    /* Header names are copied so the fmt does not depend on the cfg's life. */
    for (size_t i = 0; i < c->nrequest_headers; i++) {
        size_t n = log_hdr_label(p + 2, "http_", c->request_headers[i]);
        char *hdr = p + n + 4;

        strcpy(hdr, c->request_headers[i]);
        if (log_fmt_add(f, p, n, LH_REQ_HDR, 0, hdr) != p)
            p = hdr + strlen(hdr) + 1;
    }
    for (size_t i = 0; i < c->nresponse_headers; i++) {
        size_t n = log_hdr_label(p + 2, "sent_http_", c->response_headers[i]);
        char *hdr = p + n + 4;

        strcpy(hdr, c->response_headers[i]);
        if (log_fmt_add(f, p, n, LH_RESP_HDR, 0, hdr) != p)
            p = hdr + strlen(hdr) + 1;
    }
    f->max_line = log_fmt_bound(f);
    return f;

fail:
    return NULL;
}

void log_fmt_free(struct log_fmt *f)
{
    free(f);
}
