#include "cfg/schema.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cfg/cfg.h"

static const char *const log_level_names[CFG_LL_COUNT] = {
    [CFG_LL_ERROR] = "error",
    [CFG_LL_WARN] = "warn",
    [CFG_LL_INFO] = "info",
    [CFG_LL_DEBUG] = "debug",
};

static const char *const engine_names[CFG_ENGINE_COUNT] = {
    [CFG_ENGINE_AUTO] = "auto",
    [CFG_ENGINE_IO_URING] = "io_uring",
    [CFG_ENGINE_EPOLL] = "epoll",
};

static const char *const log_format_names[CFG_LOG_FORMAT_COUNT] = {
    [CFG_LOG_JSON] = "json",
    [CFG_LOG_LTSV] = "ltsv",
};

/* Enum members are written through an int pointer: both must have its size. */
static_assert(sizeof(enum cfg_log_level) == sizeof(int), "enum size");
static_assert(sizeof(enum cfg_log_format) == sizeof(int), "enum size");
static_assert(sizeof(enum cfg_engine) == sizeof(int), "enum size");

#define MEMBER_SIZE(m) sizeof(((struct cfg *)0)->m)

#define OBJECT(p, d)                                                                               \
    {                                                                                              \
        .path = (p), .kind = CFG_K_OBJECT, .doc = (d)                                              \
    }
#define UINT(p, m, lo, hi, dflt, d)                                                                \
    {                                                                                              \
        .path = (p), .kind = CFG_K_UINT, .min = (lo), .max = (hi), .def = (dflt),                  \
        .offset = offsetof(struct cfg, m), .size = MEMBER_SIZE(m), .doc = (d)                      \
    }
#define ENUM(p, m, list, dflt, d)                                                                  \
    {                                                                                              \
        .path = (p), .kind = CFG_K_ENUM, .def = (dflt), .names = (list),                           \
        .nnames = sizeof(list) / sizeof((list)[0]), .offset = offsetof(struct cfg, m),             \
        .size = MEMBER_SIZE(m), .doc = (d)                                                         \
    }
#define ARRAY(p, k, m, mn, lo, hi, d)                                                              \
    {                                                                                              \
        .path = (p), .kind = (k), .min = (lo), .max = (hi), .offset = offsetof(struct cfg, m),     \
        .size = MEMBER_SIZE(m), .offset_n = offsetof(struct cfg, mn), .doc = (d)                   \
    }

/*
 * Ranges: wide enough for any sane deployment, narrow enough to catch a
 * value written in the wrong unit (seconds for milliseconds, KiB for bytes).
 */
static const struct cfg_key keys[] = {
    {.path = "$schema",
     .kind = CFG_K_IGNORED,
     .doc = "URI of a JSON Schema, for editors; not used by the proxy"},
    UINT("workers", workers, 0, 1024, 0,
         "worker threads, one io_uring each; 0 = one per usable CPU (affinity mask, cgroup v2 CPU "
         "limit)"),
    UINT("shutdown_grace_ms", shutdown_grace_ms, 0, 600000, 10000,
         "after SIGTERM or SIGINT, how long in-flight requests may take to finish"),
    ENUM("log_level", log_level, log_level_names, CFG_LL_INFO,
         "least severe diagnostic written to stderr"),
    ENUM("engine", engine, engine_names, CFG_ENGINE_AUTO,
         "I/O engine: `auto` uses io_uring where the kernel and seccomp allow it, else epoll "
         "with one `warn` line; `io_uring` refuses to start without it; `epoll` always uses "
         "epoll; `--engine` wins; needs a restart"),

    OBJECT("upstream", "the connections to `next-hop:80` (C3, C4, C11)"),
    UINT("upstream.connect_timeout_ms", upstream.connect_timeout_ms, 1, 300000, 5000,
         "TCP connect to the upstream; on expiry the client gets 502"),
    UINT("upstream.response_timeout_ms", upstream.response_timeout_ms, 1, 3600000, 60000,
         "request sent to response head, and between reads of the response; on expiry 504"),
    UINT("upstream.resolve_interval_ms", upstream.resolve_interval_ms, 100, 3600000, 5000,
         "how often `next-hop` is resolved again; the last good answer is kept on failure"),
    UINT("upstream.pool_idle_timeout_ms", upstream.pool_idle_timeout_ms, 1, 3600000, 4000,
         "an idle pooled upstream connection is closed after this; keep it below the "
         "origin's keep-alive timeout (Apache's is 5 s)"),
    UINT("upstream.pool_max_idle", upstream.pool_max_idle, 0, 65536, 4096,
         "idle upstream connections kept per worker at most; the pool holds what recent load "
         "used (the rest close after `pool_idle_timeout_ms`), never more than half the "
         "worker's share of the file-descriptor limit; 0 = no reuse"),
    UINT("upstream.receive_buffer_bytes", upstream.receive_buffer_bytes, 0, 67108864,
         CFG_UPSTREAM_RCVBUF_DEFAULT,
         "receive buffer of an upstream connection (SO_RCVBUF, set before the connect), so "
         "that the origin can send a whole large response without waiting for ringproxy's "
         "window; where `net.core.rmem_max` is lower the kernel's autotuning sizes it instead "
         "(a value other than the default says so in a `warn` line at start and at each "
         "reload); 0 = always the kernel's autotuning; applies to connections opened after a "
         "reload"),
    UINT("upstream.receive_buffer_total_bytes", upstream.receive_buffer_total_bytes, 0,
         CFG_JSON_INT_MAX, 268435456,
         "kernel memory the upstream connections with `receive_buffer_bytes` may fill together, "
         "at most (twice the value each, what a connection whose client reads slowly holds), "
         "shared out among the workers; connections past it are left to the kernel's "
         "autotuning, so that many slow clients cannot make the host's TCP memory run short"),

    OBJECT("client", "the connections from the Section edge"),
    UINT("client.header_timeout_ms", client.header_timeout_ms, 1, 600000, 10000,
         "hard deadline for a complete request head; on expiry 408 and close"),
    UINT("client.idle_timeout_ms", client.idle_timeout_ms, 1, 3600000, 60000,
         "a keep-alive connection with no request for this long is closed"),
    UINT("client.max_connections", client.max_connections, 0, 1048576, 0,
         "open client connections per worker; 0 = bounded only by the file-descriptor limit"),

    OBJECT("limits", "request size limits, and the rate limiter's table"),
    UINT("limits.max_header_bytes", limits.max_header_bytes, 1024, 1048576, 32768,
         "request line and headers together; more gets 431"),
    UINT("limits.max_header_line_bytes", limits.max_header_line_bytes, 256, 1048576, 8192,
         "one header line; longer gets 431"),
    UINT("limits.max_uri_bytes", limits.max_uri_bytes, 256, 1048576, 8192,
         "request target; longer gets 414"),
    UINT("limits.max_headers", limits.max_headers, 1, 10000, 100,
         "number of request headers; more gets 431"),
    UINT("limits.max_body_bytes", limits.max_body_bytes, 0, CFG_JSON_INT_MAX, 0,
         "request body; larger gets 413; 0 = no limit"),
    UINT("limits.rate_limit_keys", limits.rate_limit_keys, 1024, 16777216, 262144,
         "keys the `rate_limit` rules track together, at most (rounded up to a power of two); "
         "16 bytes each, allocated at start when a rule has `rate_limit`; beyond it the key "
         "whose bucket refilled longest ago is forgotten"),

    OBJECT("access_log", "the access log on stdout (C5)"),
    ENUM("access_log.format", access_log.format, log_format_names, CFG_LOG_JSON,
         "one JSON object or one LTSV record per line"),
    ARRAY("access_log.fields", CFG_K_FIELDS, access_log.fields, access_log.nfields, 1, CFG_F_COUNT,
          "fields of a line, in this order; names from the field list below, each at most once"),
    ARRAY("access_log.request_headers", CFG_K_HEADERS, access_log.request_headers,
          access_log.nrequest_headers, 0, CFG_MAX_LOG_HEADERS,
          "request headers to log too, as fields `http_<name>` (lower case, `-` as `_`)"),
    ARRAY("access_log.response_headers", CFG_K_HEADERS, access_log.response_headers,
          access_log.nresponse_headers, 0, CFG_MAX_LOG_HEADERS,
          "response headers to log too, as fields `sent_http_<name>`"),
    UINT("access_log.buffer_bytes", access_log.buffer_bytes, 65536, 1073741824, 1048576,
         "log bytes a worker may hold while stdout is slow; beyond it lines are dropped "
         "and counted"),

    OBJECT("admin", "the loopback listener for `/healthz` and `/metrics` (C2)"),
    {.path = "admin.listen",
     .kind = CFG_K_LISTEN,
     .def_str = "127.0.0.1:9000",
     .offset = offsetof(struct cfg, admin.listen),
     .size = MEMBER_SIZE(admin.listen),
     .doc = "`\"ADDR:PORT\"` or `\"[IPV6]:PORT\"`, numeric, on loopback only: 127.0.0.0/8 or "
            "`[::1]`"},
};

static_assert(sizeof(keys) / sizeof(keys[0]) <= CFG_SCHEMA_MAX_KEYS, "raise CFG_SCHEMA_MAX_KEYS");

static const struct cfg_rule rules[] = {
    {"limits.max_header_line_bytes", "limits.max_header_bytes",
     "a header line is part of the request head"},
    {"limits.max_uri_bytes", "limits.max_header_bytes",
     "the request target is part of the request head"},
};

/* ---- edge rules ---------------------------------------------------------- */

static const uint16_t redirect_statuses[] = {301, 302, 303, 307, 308};

#define RK(p, t, d)                                                                                \
    {                                                                                              \
        .path = (p), .type = (t), .doc = (d)                                                       \
    }
#define RK_PAT(p, t, pat, d)                                                                       \
    {                                                                                              \
        .path = (p), .type = (t), .pattern = (pat), .doc = (d)                                     \
    }
#define RK_MAP(p, v, pat, d)                                                                       \
    {                                                                                              \
        .path = (p), .type = CFG_RT_MAP, .value = (v), .pattern = (pat), .doc = (d)                \
    }
#define RK_REDIRECT_STATUS(p)                                                                      \
    {                                                                                              \
        .path = (p), .type = CFG_RT_STATUS, .statuses = redirect_statuses,                         \
        .nstatuses = sizeof(redirect_statuses) / sizeof(redirect_statuses[0]), .sdef = 301,        \
        .def = "301", .doc = "the redirect's status"                                               \
    }
#define RK_STATUS(p, lo, hi, dflt, dtext, d)                                                       \
    {                                                                                              \
        .path = (p), .type = CFG_RT_STATUS, .smin = (lo), .smax = (hi), .sdef = (dflt),            \
        .def = (dtext), .doc = (d)                                                                 \
    }

/* A bounded integer: the STATUS type's range and default, without a status list. */
#define RK_INT(p, lo, hi, dflt, dtext, d) RK_STATUS(p, lo, hi, dflt, dtext, d)

#define RK_HEADER_NAME "^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$"

/* Header edits: the same keys for requests and responses. */
#define RK_EDITS(p, d)                                                                             \
    RK(p, CFG_RT_OBJECT, d),                                                                       \
        RK_MAP(p ".set", CFG_RT_TEMPLATE, RK_HEADER_NAME,                                          \
               "header name -> value (template): replaces every field of that name"),              \
        RK_MAP(p ".add", CFG_RT_TEMPLATES, RK_HEADER_NAME,                                         \
               "header name -> value or array of values (templates): appended"),                   \
        RK(p ".remove", CFG_RT_NAMES, "header names: every field of each is removed")

static const struct cfg_rkey rule_keys[] = {
    RK_MAP("lists", CFG_RT_STRINGS, "^[A-Za-z0-9_-]{1,64}$",
           "named lists of IPv4 and IPv6 addresses and CIDRs, used as `\"@NAME\"` in "
           "`match.client_ip`; names of 1 to 64 letters, digits, `_`, `-`"),
    RK("rules", CFG_RT_RULES,
       "evaluated top to bottom for every request that passed HTTP validation; at most 1024"),
    RK_PAT("rules[].name", CFG_RT_STRING, "^[A-Za-z0-9_.-]{1,64}$",
           "label in metrics and in the access-log field `rule` (default: the rule's index); "
           "1 to 64 letters, digits, `_`, `.`, `-`; unique"),
    RK("rules[].match", CFG_RT_OBJECT,
       "absent: every request (but the health check); its keys AND together, a list matches "
       "any of its entries"),
    RK_PAT("rules[].match.host", CFG_RT_STRINGS, "^(\\*\\.)?[A-Za-z0-9_.-]+$",
           "exact host or `*.example.com` (subdomains only); case-insensitive, port ignored"),
    RK_PAT("rules[].match.path", CFG_RT_STRINGS, "^/",
           "exact path or prefix `/x/*` (matches `/x/` and below, not `/x`), compared with the "
           "normalised request path; without case in deny, rate_limit and basic_auth rules"),
    RK_PAT("rules[].match.method", CFG_RT_STRINGS, "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$",
           "request methods, compared without case (`\"GET\"`)"),
    RK_PAT("rules[].match.scheme", CFG_RT_STRINGS, "^https?$",
           "`\"https\"` when X-Forwarded-Proto is `https`, else `\"http\"`"),
    RK("rules[].match.client_ip", CFG_RT_STRINGS,
       "addresses, CIDRs and `\"@list\"` names; True-Client-IP, else the socket peer"),
    RK_MAP("rules[].match.header", CFG_RT_HVALUES, RK_HEADER_NAME,
           "header name -> array of exact values (any of them), `true` (present) or `false` "
           "(absent)"),
    RK("rules[].match.not", CFG_RT_MATCH,
       "a match object: matches when it does not; nested at most 4 deep"),
    RK_EDITS("rules[].request_headers",
             "edits of the request sent upstream: `remove`, then `set`, then `add`"),
    RK_EDITS("rules[].response_headers",
             "edits of the response sent to the client: `remove`, then `set`, then `add`"),
    RK("rules[].rewrite", CFG_RT_OBJECT,
       "changes the path sent upstream (the query is kept); exactly one of its keys"),
    RK_PAT("rules[].rewrite.strip_prefix", CFG_RT_STRING, "^/",
           "removed from the start of the path: `/blog` makes `/blog/x` `/x`"),
    RK_PAT("rules[].rewrite.add_prefix", CFG_RT_STRING, "^/",
           "put before the path: `/v2` makes `/x` `/v2/x`"),
    RK_PAT("rules[].rewrite.path", CFG_RT_STRING, "^/", "replaces the path"),
    RK("rules[].redirect", CFG_RT_OBJECT, "answers with a redirect"),
    RK("rules[].redirect.to", CFG_RT_TEMPLATE,
       "Location (template): an absolute `http(s)://` URL or a path starting with `/`; "
       "required"),
    RK_REDIRECT_STATUS("rules[].redirect.status"),
    RK("rules[].redirect_map", CFG_RT_OBJECT,
       "answers with a redirect when the normalised path is in the map; a miss goes on"),
    RK("rules[].redirect_map.file", CFG_RT_FILE,
       "a file in the config folder: one `FROM TO` pair a line, `#` comments; required"),
    RK_REDIRECT_STATUS("rules[].redirect_map.status"),
    RK("rules[].respond", CFG_RT_OBJECT, "answers with a fixed response"),
    RK_STATUS("rules[].respond.status", 200, 599, 200, "200",
              "200 to 599; 204 and 304 have no body"),
    RK("rules[].respond.body", CFG_RT_STRING, "the body as text; or `file`"),
    RK("rules[].respond.file", CFG_RT_FILE,
       "the body from a file in the config folder, at most "
       "1 MiB; or `body`"),
    RK("rules[].respond.content_type", CFG_RT_STRING,
       "Content-Type; default from the file's extension, `text/plain; charset=utf-8` for "
       "`body`"),
    RK_MAP("rules[].respond.headers", CFG_RT_TEMPLATE, RK_HEADER_NAME,
           "header name -> value (template), added to the answer"),
    RK("rules[].deny", CFG_RT_OBJECT,
       "answers with an error status; the body is the error page, if any"),
    RK_STATUS("rules[].deny.status", 400, 599, 403, "403", "400 to 599"),
    RK("rules[].rate_limit", CFG_RT_OBJECT,
       "a token bucket per key, per instance: within the limit evaluation goes on; over it "
       "429 with `Retry-After`; `key` and one of `per_second`, `per_minute` required"),
    RK_PAT("rules[].rate_limit.key", CFG_RT_STRING,
           "^(client_ip|header:[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64})$",
           "`client_ip` (True-Client-IP, else the socket peer; an IPv6 client by its /64) or "
           "`header:NAME` (the field of that name, any separator read as `-`; a request "
           "without it is not limited, one with two such fields is over the limit)"),
    RK_INT("rules[].rate_limit.per_second", 1, CFG_RL_MAX_PER_SECOND, 0, NULL,
           "tokens added per second; or `per_minute`"),
    RK_INT("rules[].rate_limit.per_minute", 1, CFG_RL_MAX_PER_MINUTE, 0, NULL,
           "tokens added per minute; or `per_second`"),
    RK_INT("rules[].rate_limit.burst", 1, CFG_RL_MAX_BURST, 1, "1",
           "the bucket's capacity: requests a key may make at once (nginx's `burst=N "
           "nodelay` is N + 1)"),
    RK("rules[].basic_auth", CFG_RT_OBJECT,
       "HTTP Basic authentication (RFC 7617): a request without valid credentials for one of "
       "`users` gets 401 with `WWW-Authenticate: Basic realm=\"...\"`; with them evaluation "
       "goes on, and `Authorization` goes upstream as received (`request_headers.remove` "
       "strips it); `realm` and `users` required"),
    RK_PAT("rules[].basic_auth.realm", CFG_RT_STRING, "^[ !#-\\[\\]-~]{1,128}$",
           "the name the browser shows when it asks for a password; 1 to 128 printable ASCII "
           "characters, without `\"` and `\\`"),
    RK_MAP("rules[].basic_auth.users", CFG_RT_STRING, "^[^:\\x00-\\x1f\\x7f]{1,255}$",
           "user name -> crypt(3) hash, 1 to 4096 users; names of 1 to 255 bytes without `:` or "
           "control characters, case-sensitive; hashes complete and of `$2b$` or `$2y$` "
           "(bcrypt), `$y$` (yescrypt) or `$6$` (SHA-512-crypt), as made by `mkpasswd -m "
           "bcrypt` (Debian package whois) or `htpasswd -nB USER`; plain text, `$1$`, `$5$`, "
           "`$2a$`, `$apr1$`, `{SHA}` and DES are refused"),
    RK_MAP("error_pages", CFG_RT_FILE, "^([45][0-9][0-9]|[45]xx)$",
           "status (`\"404\"`) or class (`\"5xx\"`) from 400 to 599 -> file in the config "
           "folder, at most 1 MiB: the body of ringproxy's own answers and of upstream "
           "responses with that status; a status overrides its class"),
};

const struct cfg_rkey *cfg_rules_keys(size_t *ret_n)
{
    *ret_n = sizeof(rule_keys) / sizeof(rule_keys[0]);
    return rule_keys;
}

const struct cfg_rkey *cfg_rules_find(const char *path)
{
    for (size_t i = 0; i < sizeof(rule_keys) / sizeof(rule_keys[0]); i++) {
        if (strcmp(rule_keys[i].path, path) == 0)
            return &rule_keys[i];
    }
    return NULL;
}

int cfg_rules_is_top(const char *key)
{
    const struct cfg_rkey *k = cfg_rules_find(key);

    return k && !strchr(k->path, '.') && !strchr(k->path, '[');
}

const struct cfg_key *cfg_schema_keys(size_t *ret_n)
{
    *ret_n = sizeof(keys) / sizeof(keys[0]);
    return keys;
}

const struct cfg_rule *cfg_schema_rules(size_t *ret_n)
{
    *ret_n = sizeof(rules) / sizeof(rules[0]);
    return rules;
}

const struct cfg_key *cfg_schema_find(const char *path)
{
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (strcmp(keys[i].path, path) == 0)
            return &keys[i];
    }
    return NULL;
}

const char *cfg_key_name(const struct cfg_key *k)
{
    const char *dot = strrchr(k->path, '.');

    return dot ? dot + 1 : k->path;
}

int cfg_key_in(const struct cfg_key *k, const char *parent)
{
    const char *name = cfg_key_name(k);
    size_t plen = strlen(parent);

    if (plen == 0)
        return name == k->path;
    return (size_t)(name - k->path) == plen + 1 && strncmp(k->path, parent, plen) == 0;
}

void cfg_key_pointer(const char *path, char *buf, size_t cap)
{
    size_t n = 0;

    if (cap == 0)
        return;
    /* Known keys hold neither '~' nor '/', so no RFC 6901 escaping is needed. */
    if (n + 1 < cap)
        buf[n++] = '/';
    for (const char *p = path; *p && n + 1 < cap; p++)
        buf[n++] = *p == '.' ? '/' : *p;
    buf[n] = '\0';
}

const char *cfg_log_level_name(enum cfg_log_level l)
{
    return (unsigned)l < CFG_LL_COUNT ? log_level_names[l] : "?";
}

const char *cfg_engine_name(enum cfg_engine e)
{
    return (unsigned)e < CFG_ENGINE_COUNT ? engine_names[e] : "?";
}

int cfg_engine_from_name(const char *name)
{
    for (int i = 0; i < CFG_ENGINE_COUNT; i++)
        if (!strcmp(name, engine_names[i]))
            return i;
    return -ENOENT;
}

const char *cfg_log_format_name(enum cfg_log_format f)
{
    return (unsigned)f < CFG_LOG_FORMAT_COUNT ? log_format_names[f] : "?";
}

struct cfg *cfg_new_default(void)
{
    struct cfg *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const struct cfg_key *k = &keys[i];
        char *m = (char *)c + k->offset;

        switch (k->kind) {
        case CFG_K_UINT:
            if (k->size == sizeof(uint32_t))
                *(uint32_t *)(void *)m = (uint32_t)k->def;
            else
                *(uint64_t *)(void *)m = k->def;
            break;
        case CFG_K_ENUM:
            *(int *)(void *)m = (int)k->def;
            break;
        case CFG_K_FIELDS:
            for (int f = 0; f < CFG_F_COUNT; f++)
                ((enum cfg_field *)(void *)m)[f] = (enum cfg_field)f;
            *(size_t *)(void *)((char *)c + k->offset_n) = CFG_F_COUNT;
            break;
        case CFG_K_LISTEN:
            (void)strncpy(m, k->def_str, k->size - 1);
            break;
        case CFG_K_OBJECT:
        case CFG_K_HEADERS: /* calloc: none */
        case CFG_K_IGNORED:
        case CFG_K_COUNT:
            break;
        }
    }
    return c;
}

static void strv_free(char **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void cfg_free(struct cfg *c)
{
    if (!c)
        return;
    strv_free(c->access_log.request_headers, c->access_log.nrequest_headers);
    strv_free(c->access_log.response_headers, c->access_log.nresponse_headers);
    cfg_rules_free(c->rules);
    free(c->rules_json);
    free(c);
}

void cfg_errs_free(struct cfg_errs *e)
{
    if (!e)
        return;
    strv_free(e->lines, e->n);
    e->lines = NULL;
    e->n = 0;
}

static char lower(char ch)
{
    return ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
}

size_t cfg_distance(const char *a, size_t alen, const char *b, size_t blen, size_t limit)
{
    /* Keys are short; anything longer is never a typo of one. */
    enum { MAXLEN = 64 };
    size_t rows[3][MAXLEN + 1];
    size_t *pp = rows[0], *prev = rows[1], *cur = rows[2];

    if (alen > MAXLEN || blen > MAXLEN)
        return limit + 1;
    if ((alen > blen ? alen - blen : blen - alen) > limit)
        return limit + 1;
    for (size_t j = 0; j <= blen; j++)
        prev[j] = j;
    for (size_t i = 1; i <= alen; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= blen; j++) {
            size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
            size_t d = prev[j] + 1;

            if (cur[j - 1] + 1 < d)
                d = cur[j - 1] + 1;
            if (prev[j - 1] + cost < d)
                d = prev[j - 1] + cost;
            if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) &&
                lower(a[i - 2]) == lower(b[j - 1]) && pp[j - 2] + 1 < d)
                d = pp[j - 2] + 1;
            cur[j] = d;
        }
        size_t *t = pp;
        pp = prev;
        prev = cur;
        cur = t;
    }
    return prev[blen] > limit ? limit + 1 : prev[blen];
}

const char *cfg_suggest(const char *s, size_t len, const char *const *cand, size_t n)
{
    /* Up to a third of the letters wrong, at least one, at most three. */
    size_t limit = len <= 3 ? 1 : len / 3 > 3 ? 3 : len / 3;
    const char *best = NULL;
    size_t best_d = limit + 1;

    for (size_t i = 0; i < n; i++) {
        size_t d = cfg_distance(s, len, cand[i], strlen(cand[i]), limit);

        if (d < best_d) {
            best_d = d;
            best = cand[i];
        }
    }
    if (best)
        return best;
    /* A word cut short or extended ("warning" for "warn"): one is the start of the other. */
    for (size_t i = 0; i < n; i++) {
        size_t clen = strlen(cand[i]), shorter = clen < len ? clen : len;

        if (shorter >= 4 && strncasecmp(s, cand[i], shorter) == 0)
            return cand[i];
    }
    return NULL;
}
