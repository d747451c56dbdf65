/*
 * Access log (C5): one line per request on stdout, JSON (default) or LTSV,
 * with the field names fixed in docs/contract.md ("Access-log fields"). The format
 * is compiled once at load; a line is formatted at request end into a
 * scratch buffer of log_fmt_max_line() bytes and appended to the worker's
 * log_out buffer. Long values are cut (LOG_VALUE_MAX), never the line.
 */
#ifndef RINGPROXY_LOG_ACCESS_H
#define RINGPROXY_LOG_ACCESS_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "cfg/cfg.h"
#include "core/str.h"

/*
 * Everything known about one exchange when it ends. String views may be
 * absent (p == NULL) and are then written as "-". Negative numbers mean
 * "not known" and are written as "-" too.
 */
struct log_access_rec {
    struct timespec start;   /* CLOCK_REALTIME when the request began */
    int64_t duration_us;     /* request start to last byte sent */
    struct core_str method;  /* "GET" */
    struct core_str target;  /* request target as received */
    struct core_str version; /* "HTTP/1.1" */
    struct core_str host;
    struct core_str referrer;
    struct core_str useragent;
    struct core_str x_forwarded_proto;
    struct core_str section_io_id;
    struct core_str section_io_tag;
    struct core_str content_type;  /* of the response */
    struct core_str client_ip;     /* True-Client-IP, else the socket peer */
    struct core_str upstream_addr; /* "127.0.0.1:80" */
    int status;                    /* status sent to the client; 0 if none */
    int upstream_status;           /* -1 if none */
    int64_t bytes_sent;            /* all bytes sent to the client */
    int64_t response_body_bytes;
    int64_t request_bytes;        /* bytes received from the client for this request */
    int64_t upstream_bytes;       /* bytes received from the upstream */
    int64_t upstream_connect_us;  /* -1 when no connect was made (reused) */
    int64_t upstream_header_us;   /* request sent to response head; -1 none */
    int64_t upstream_response_us; /* request sent to last byte; -1 none */
    int upstream_reused;          /* 0/1, -1 when no upstream was used */
    int upstream_attempts;
    const char *termination; /* NULL when the exchange ended normally */
    const char *rule;        /* the edge rule that answered or last changed the request, or NULL */
    const struct core_hdr *req_hdrs; /* for extra request-header fields */
    size_t nreq_hdrs;
    const struct core_hdr *resp_hdrs; /* for extra response-header fields */
    size_t nresp_hdrs;
};

struct log_fmt;

/* Compile the access-log format of c; NULL on OOM. */
struct log_fmt *log_fmt_new(const struct cfg_access_log *c);

/* NULL-safe. */
void log_fmt_free(struct log_fmt *f);

/*
 * Longest output of one string value, not counting JSON's quotes: a value
 * whose escaped form is longer is cut at a character or escape boundary
 * (never inside \u00XX, \xHH or a UTF-8 sequence) and ends with
 * LOG_CUT_MARK, the two together at most LOG_VALUE_MAX bytes. Each part of
 * `request` (method, target, version) is a value of its own; a repeated
 * header's joined value is one value.
 */
#define LOG_VALUE_MAX 4096

/*
 * What ends a cut value, in both formats: an escaped U+2026 (JSON decodes it
 * to "\xe2\x80\xa6[cut]"). Neither escaper ever writes the escape \u2026
 * otherwise (a client's "\u2026" comes out as "\\u2026"): JSON escapes only
 * bytes below U+0100 and LTSV never writes "\u".
 */
#define LOG_CUT_MARK "\\u2026[cut]"
#define LOG_CUT_LEN (sizeof(LOG_CUT_MARK) - 1)

/*
 * The longest line f can produce, its '\n' included, whatever the record
 * holds: log_fmt_line() with a cap of at least this never fails.
 */
size_t log_fmt_max_line(const struct log_fmt *f);

/*
 * Format one line (with its trailing '\n') into out. Returns its length, or
 * -ENOSPC when it does not fit in cap (nothing useful is left in out then),
 * which cannot happen when cap >= log_fmt_max_line(f).
 */
long log_fmt_line(const struct log_fmt *f, const struct log_access_rec *r, char *out, size_t cap);

#endif
