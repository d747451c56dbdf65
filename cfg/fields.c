#include <errno.h>
#include <string.h>

#include "cfg/cfg.h"
#include "cfg/schema.h"

static const char *const field_names[CFG_F_COUNT] = {
    [CFG_F_TIME] = "time",
    [CFG_F_TIME_TAKEN_MS] = "time_taken_ms",
    [CFG_F_REQUEST] = "request",
    [CFG_F_METHOD] = "method",
    [CFG_F_PATH] = "path",
    [CFG_F_STATUS] = "status",
    [CFG_F_BYTES] = "bytes",
    [CFG_F_RESPONSE_BODY_BYTES] = "response_body_bytes",
    [CFG_F_CONTENT_TYPE] = "content_type",
    [CFG_F_HOSTNAME] = "hostname",
    [CFG_F_REFERRER] = "referrer",
    [CFG_F_USERAGENT] = "useragent",
    [CFG_F_CLIENT_IP] = "client_ip",
    [CFG_F_HTTP_X_FORWARDED_PROTO] = "http_x_forwarded_proto",
    [CFG_F_UPSTREAM_ADDR] = "upstream_addr",
    [CFG_F_UPSTREAM_STATUS] = "upstream_status",
    [CFG_F_SECTION_IO_ID] = "section_io_id",
    [CFG_F_SECTION_IO_TAG] = "section_io_tag",
    [CFG_F_REQUEST_BYTES] = "request_bytes",
    [CFG_F_UPSTREAM_BYTES] = "upstream_bytes",
    [CFG_F_UPSTREAM_CONNECT_MS] = "upstream_connect_ms",
    [CFG_F_UPSTREAM_HEADER_MS] = "upstream_header_ms",
    [CFG_F_UPSTREAM_RESPONSE_MS] = "upstream_response_ms",
    [CFG_F_UPSTREAM_REUSED] = "upstream_reused",
    [CFG_F_UPSTREAM_ATTEMPTS] = "upstream_attempts",
    [CFG_F_TERMINATION] = "termination",
    [CFG_F_RULE] = "rule",
};

/* Documentation only; the meaning is log/access.c's, these follow log/access.h. */
static const char *const field_docs[CFG_F_COUNT] = {
    [CFG_F_TIME] = "when the request started: ISO 8601 UTC with milliseconds",
    [CFG_F_TIME_TAKEN_MS] = "request start to last byte sent, whole milliseconds",
    [CFG_F_REQUEST] = "request line: method, target, version",
    [CFG_F_METHOD] = "request method",
    [CFG_F_PATH] = "request target as received",
    [CFG_F_STATUS] = "status sent to the client",
    [CFG_F_BYTES] = "bytes sent to the client, head and body",
    [CFG_F_RESPONSE_BODY_BYTES] = "response body bytes sent to the client",
    [CFG_F_CONTENT_TYPE] = "Content-Type of the response",
    [CFG_F_HOSTNAME] = "Host request header",
    [CFG_F_REFERRER] = "Referer request header",
    [CFG_F_USERAGENT] = "User-Agent request header",
    [CFG_F_CLIENT_IP] = "True-Client-IP request header, else the socket peer",
    [CFG_F_HTTP_X_FORWARDED_PROTO] = "X-Forwarded-Proto request header",
    [CFG_F_UPSTREAM_ADDR] = "upstream address used (ADDR:PORT)",
    [CFG_F_UPSTREAM_STATUS] = "status received from the upstream",
    [CFG_F_SECTION_IO_ID] = "section-io-id request header",
    [CFG_F_SECTION_IO_TAG] = "section-io-tag request header",
    [CFG_F_REQUEST_BYTES] = "bytes received from the client for this request",
    [CFG_F_UPSTREAM_BYTES] = "bytes received from the upstream",
    [CFG_F_UPSTREAM_CONNECT_MS] = "upstream connect, milliseconds (3 decimals); `-` if reused",
    [CFG_F_UPSTREAM_HEADER_MS] =
        "request sent to response head received, milliseconds (3 decimals)",
    [CFG_F_UPSTREAM_RESPONSE_MS] =
        "request sent to last response byte received, milliseconds (3 decimals)",
    [CFG_F_UPSTREAM_REUSED] =
        "whether the upstream connection came from the pool: `true` or `false`",
    [CFG_F_UPSTREAM_ATTEMPTS] = "upstream attempts made (a safe retry makes 2)",
    [CFG_F_TERMINATION] = "why the exchange ended early; `-` when it ended normally",
    [CFG_F_RULE] = "the rule that answered or last changed the request (its name, else its "
                   "index); `-` when none",
};

const char *cfg_field_name(enum cfg_field f)
{
    return (unsigned)f < CFG_F_COUNT ? field_names[f] : "?";
}

const char *cfg_field_doc(enum cfg_field f)
{
    return (unsigned)f < CFG_F_COUNT ? field_docs[f] : "?";
}

int cfg_field_from_name(const char *name, size_t len)
{
    for (int f = 0; f < CFG_F_COUNT; f++) {
        if (strlen(field_names[f]) == len && memcmp(field_names[f], name, len) == 0)
            return f;
    }
    return -ENOENT;
}

int cfg_header_field_name(const char *header, int response, char *buf, size_t cap)
{
    const char *prefix = response ? "sent_http_" : "http_";
    size_t plen = strlen(prefix);
    size_t hlen = strlen(header);

    if (cap < plen + hlen + 1)
        return -ENOSPC;
    memcpy(buf, prefix, plen);
    for (size_t i = 0; i < hlen; i++) {
        char ch = header[i];

        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch - 'A' + 'a');
        else if (ch == '-')
            ch = '_';
        buf[plen + i] = ch;
    }
    buf[plen + hlen] = '\0';
    return (int)(plen + hlen);
}
