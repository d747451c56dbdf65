#include "http/forward.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http/rules.h"

/* Never forwarded: the fields of RFC 9110 7.6.1, and those a Connection option names. */
static int is_hop_by_hop(const struct core_hdr *h, int keep_upgrade)
{
    if (h->kind == HK_UPGRADE)
        return !keep_upgrade;
    return http_hk_hop_by_hop(h->kind) || h->hop;
}

struct wbuf {
    char *p;
    size_t len, cap;
    int overflow;
};

static void wb_put(struct wbuf *b, const char *s, size_t n)
{
    if (b->len + n > b->cap) {
        b->overflow = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

#define WB_LIT(b, lit) wb_put((b), (lit), sizeof(lit) - 1)

static void wb_hdr(struct wbuf *b, struct core_str name, struct core_str value)
{
    wb_put(b, name.p, name.len);
    WB_LIT(b, ": ");
    wb_put(b, value.p, value.len);
    WB_LIT(b, "\r\n");
}

/*
 * An upgrade to HTTP itself (h2c, h2, HTTP/2.0, ...) would turn the client
 * connection into a tunnel of requests the proxy never sees: its rules, its
 * limits and its log would be bypassed (h2c smuggling; RFC 9113 3.1
 * deprecates the h2c upgrade). Such an upgrade, or one that names no
 * protocol, is not forwarded: the request goes as plain HTTP/1.1.
 */
static int upgrade_forwardable(const struct http_msg *m)
{
    int protocols = 0;

    for (uint16_t i = 0; i < m->nhdrs; i++) {
        struct core_str t;
        size_t at = 0;

        if (m->hdrs[i].kind != HK_UPGRADE)
            continue;
        /* #protocol, protocol = token [ "/" token ] (RFC 9110 7.8): nothing else passes */
        while (http_list_next(m->hdrs[i].value, &at, &t)) {
            size_t k = 0, v;

            while (k < t.len && http_is_tchar((unsigned char)t.p[k]))
                k++;
            struct core_str name = {t.p, k};

            if (!k || CORE_STR_IEQ(name, "h2c") || CORE_STR_IEQ(name, "h2") ||
                CORE_STR_IEQ(name, "http"))
                return 0;
            if (k < t.len && t.p[k] == '/') {
                for (v = ++k; k < t.len && http_is_tchar((unsigned char)t.p[k]);)
                    k++;
                if (k == v)
                    return 0;
            }
            if (k < t.len)
                return 0;
            protocols++;
        }
    }
    return protocols > 0;
}

/* reg-name bytes: unreserved, sub-delims, pct-encoded (RFC 3986 3.2.2) */
static int reg_name_char(unsigned char ch)
{
    if ((ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z'))
        return 1;
    switch (ch) {
    case '-':
    case '.':
    case '_':
    case '~':
    case '!':
    case '$':
    case '&':
    case '\'':
    case '(':
    case ')':
    case '*':
    case '+':
    case ',':
    case ';':
    case '=':
        return 1;
    default:
        return 0;
    }
}

/*
 * A Host value or absolute-form authority (RFC 9112 3.2, RFC 3986 3.2.2):
 * a non-empty reg-name or IPv4 address, or an IP-literal in brackets, then
 * an optional ":" and digits. "[::1", ":80", "a:b:c" are not. A
 * percent-encoded reg-name is not taken either: no client sends one, and
 * origins that decode it (WHATWG URL: internal%2eexample.com is
 * internal.example.com) would serve a host that the rules did not match.
 */
static int valid_authority(struct core_str a)
{
    size_t i = 0, n = a.len;

    if (!n)
        return 0;
    if (a.p[0] == '[') {
        for (i = 1; i < n && a.p[i] != ']'; i++) {
            unsigned char ch = (unsigned char)a.p[i];

            if (!((ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f') ||
                  ch == ':' || ch == '.'))
                return 0;
        }
        if (i == n || i == 1)
            return 0;
        i++;
    } else {
        while (i < n && reg_name_char((unsigned char)a.p[i]))
            i++;
        if (!i)
            return 0;
    }
    if (i == n)
        return 1;
    if (a.p[i++] != ':')
        return 0;
    for (; i < n; i++)
        if (a.p[i] < '0' || a.p[i] > '9')
            return 0;
    return 1;
}

/* "http://host[:port]/path?q" into its authority and its origin-form rest. */
static int split_absolute(struct core_str t, struct core_str *ret_auth, struct core_str *ret_path)
{
    size_t i, skip;

    if (t.len > 7 && !strncasecmp(t.p, "http://", 7))
        skip = 7;
    else if (t.len > 8 && !strncasecmp(t.p, "https://", 8))
        skip = 8;
    else
        return -1;
    for (i = skip; i < t.len && t.p[i] != '/' && t.p[i] != '?'; i++)
        if (t.p[i] == '@')
            return -1; /* userinfo is deprecated and a known confusion vector */
    *ret_auth = (struct core_str){t.p + skip, i - skip};
    if (!valid_authority(*ret_auth))
        return -1;
    *ret_path = (struct core_str){t.p + i, t.len - i};
    return 0;
}

long http_fwd_request(const struct http_msg *m, const struct http_fwd_policy *pol, char *out,
                      size_t cap, struct http_fwd_req *ret)
{
    const llhttp_t *p = &m->parser;
    struct wbuf b = {out, 0, cap, 0};
    struct http_fwd_req f = {0};
    unsigned nhost = m->count[HK_HOST];
    struct core_str te = http_msg_known(m, HK_TRANSFER_ENCODING);
    struct core_str authority = {0}, path = m->target;

    if (p->http_major != 1)
        return -400;
    f.http10 = p->http_minor == 0;
    if (nhost > 1 || (!f.http10 && nhost == 0))
        return -400;
    if (nhost && !valid_authority(http_msg_known(m, HK_HOST)))
        return -400;
    if (te.p) {
        /* Transfer-Encoding in HTTP/1.0 can't be trusted for framing (RFC 9112 6.1). */
        if (f.http10)
            return -400;
        /* We don't decode transfer codings, so the origin would get what it may not know. */
        if (m->count[HK_TRANSFER_ENCODING] > 1 || !CORE_STR_IEQ(te, "chunked"))
            return -501;
    }
    if (p->method == HTTP_CONNECT)
        return -501; /* no tunnels to arbitrary hosts */
    if (m->target.len > pol->max_uri_bytes)
        return -414;
    /*
     * A fragment is never sent (RFC 9112 3.2) and a backslash is no URI
     * byte (RFC 3986 2): origins cut the path at '#' or take a backslash in
     * the path for a slash, so what they serve would differ from what the
     * proxy (its rules, its log) saw. In the query a backslash is data.
     */
    if (m->target.len) {
        const char *q = memchr(m->target.p, '?', m->target.len);
        size_t plen = q ? (size_t)(q - m->target.p) : m->target.len;

        if (memchr(m->target.p, '#', m->target.len) || memchr(m->target.p, '\\', plen))
            return -400;
    }
    if (m->target.len && m->target.p[0] != '/' &&
        !(m->target.len == 1 && m->target.p[0] == '*' && p->method == HTTP_OPTIONS)) {
        /*
         * absolute-form (RFC 9112 3.2.2): forward in origin form, and the
         * authority replaces any Host the client sent.
         */
        if (split_absolute(m->target, &authority, &path) < 0)
            return -400;
    }
    if (pol->max_body_bytes && p->content_length > pol->max_body_bytes && !(p->flags & F_CHUNKED))
        return -413;
    /* Upgrade in an HTTP/1.0 request is ignored (RFC 9110 7.8) */
    f.upgrade = p->upgrade && m->count[HK_UPGRADE] && !f.http10 && upgrade_forwardable(m);
    f.has_body = (p->flags & F_CHUNKED) || p->content_length > 0;
    f.idempotent = !m->ext_method &&
                   (p->method == HTTP_GET || p->method == HTTP_HEAD || p->method == HTTP_OPTIONS ||
                    p->method == HTTP_PUT || p->method == HTTP_DELETE || p->method == HTTP_TRACE);
    f.keep_alive = (uint8_t)llhttp_should_keep_alive(p);

    wb_put(&b, m->method.p, m->method.len);
    WB_LIT(&b, " ");
    if (!path.len || path.p[0] == '?')
        WB_LIT(&b, "/");
    wb_put(&b, path.p, path.len);
    WB_LIT(&b, " HTTP/1.1\r\n");
    for (uint16_t i = 0; i < m->nhdrs; i++) {
        if (is_hop_by_hop(&m->hdrs[i], f.upgrade))
            continue;
        if (authority.p && m->hdrs[i].kind == HK_HOST) {
            wb_hdr(&b, m->hdrs[i].name, authority);
            continue;
        }
        wb_hdr(&b, m->hdrs[i].name, m->hdrs[i].value);
    }
    if (authority.p) {
        f.host_sent = authority;
    } else if (nhost) {
        f.host_sent = http_msg_known(m, HK_HOST);
    } else {
        const char *h = pol->default_host;
        f.host_sent = (struct core_str){h, strlen(h)};
    }
    if (!nhost)
        wb_hdr(&b, (struct core_str){"Host", 4}, f.host_sent);
    if (f.upgrade)
        WB_LIT(&b, "Connection: upgrade\r\n");
    WB_LIT(&b, "\r\n");
    if (b.overflow)
        return -431;
    *ret = f;
    return (long)b.len;
}

int http_fwd_response_check(const struct http_msg *m, int upgrade_asked)
{
    const llhttp_t *p = &m->parser;
    int status = p->status_code;

    if (p->http_major != 1 || status < 100 || status > 599 || (status == 101 && !upgrade_asked))
        return -1;
    return 0;
}

long http_fwd_response(const struct http_msg *m, const struct http_fwd_resp *o, char *out,
                       size_t cap)
{
    const llhttp_t *p = &m->parser;
    struct wbuf b = {out, 0, cap, 0};
    char status[16];
    int tunnel = p->status_code == 101;
    int edits = o->final && o->rs && o->rv && o->rv->any_resp;
    struct http_rules_plan plan;

    if (edits)
        http_rules_resp_plan(o->rs, o->rv, &plan);

    /* llhttp takes three digits only: 100..999 */
    memcpy(status, "HTTP/1.1 000 ", 13);
    status[9] = (char)('0' + p->status_code / 100);
    status[10] = (char)('0' + p->status_code / 10 % 10);
    status[11] = (char)('0' + p->status_code % 10);
    wb_put(&b, status, 13);
    wb_put(&b, m->reason.p, m->reason.len);
    WB_LIT(&b, "\r\n");
    for (uint16_t i = 0; i < m->nhdrs; i++) {
        if (is_hop_by_hop(&m->hdrs[i], tunnel))
            continue;
        if (o->dechunk && m->hdrs[i].kind == HK_TRANSFER_ENCODING)
            continue;
        if (edits && http_rules_plan_drops(o->rs, &plan, m->hdrs[i].name))
            continue;
        wb_hdr(&b, m->hdrs[i].name, m->hdrs[i].value);
    }
    if (edits && !b.overflow) {
        long n = http_rules_plan_adds(o->rs, o->rv, &plan, o->rr, b.p + b.len, b.cap - b.len);

        if (n < 0)
            b.overflow = 1;
        else
            b.len += (size_t)n;
    }
    if (tunnel)
        WB_LIT(&b, "Connection: upgrade\r\n");
    else if (o->final && !o->keep_alive)
        WB_LIT(&b, "Connection: close\r\n");
    else if (o->final && o->http10)
        WB_LIT(&b, "Connection: keep-alive\r\n");
    WB_LIT(&b, "\r\n");
    return b.overflow ? -1 : (long)b.len;
}

int http_fwd_answer(int status, int keep_alive, int head_only, char *out, size_t cap, int *ret_head)
{
    char body[96];
    int blen = snprintf(body, sizeof(body), "%d %s\n", status, http_fwd_reason(status));
    int n =
        snprintf(out, cap,
                 "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                 "Connection: %s\r\n\r\n%s",
                 status, http_fwd_reason(status), blen, keep_alive ? "keep-alive" : "close", body);

    if (n < 0 || (size_t)n >= cap)
        return -1;
    *ret_head = n - blen;
    /* the answer to HEAD has the head of the answer to GET, and no body (RFC 9110 9.3.2) */
    return head_only ? *ret_head : n;
}

/*
 * The reason phrases of RFC 9110 15 for 200..599, and of RFC 6585 (428,
 * 429, 431) and RFC 7725 (451): every status the proxy or a rule answers
 * with. Others get "Error" (the phrase carries no meaning, RFC 9112 4).
 */
const char *http_fwd_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 203:
        return "Non-Authoritative Information";
    case 204:
        return "No Content";
    case 205:
        return "Reset Content";
    case 206:
        return "Partial Content";
    case 300:
        return "Multiple Choices";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 305:
        return "Use Proxy";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 402:
        return "Payment Required";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 407:
        return "Proxy Authentication Required";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 421:
        return "Misdirected Request";
    case 422:
        return "Unprocessable Content";
    case 426:
        return "Upgrade Required";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 451:
        return "Unavailable For Legal Reasons";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Error";
    }
}
