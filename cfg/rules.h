/*
 * Edge rules (`lists`, `rules`, `error_pages` in proxy.json), checked and
 * compiled at load time by the cfg library, so that the proxy and
 * ringproxy-validate accept exactly the same rules. Everything a request
 * needs is precomputed here: hash sets for hosts, methods, exact paths,
 * path prefixes and redirect maps (cfg/hset.h), sorted disjoint ranges for
 * addresses, templates split into literal and placeholder parts, response
 * bodies read into memory. http/rules.c evaluates a request against this
 * model without allocating. The model is immutable once built and shared
 * read-only by all workers.
 *
 * The semantics are documented in docs/rules.md.
 */
#ifndef RINGPROXY_CFG_RULES_H
#define RINGPROXY_CFG_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "cfg/hset.h"

/* Bounds checked by the validator. */
#define CFG_RULES_MAX 1024           /* rules[] entries */
#define CFG_RULES_MAX_EDITS 64       /* header edits of one rule, per direction */
#define CFG_RULES_MAX_FILE (1 << 20) /* a respond or error page file */
#define CFG_RULES_MAX_MAP_ENTRIES 1000000
#define CFG_RULES_MAX_MAP_FILE (64u << 20)
#define CFG_RULES_MAX_NOT_DEPTH 4 /* "not" inside "not" ... */

/* The Section health check, exempt from rules that do not name it. */
#define CFG_HEALTHZ_PATH "/.well-known/section-io/aee-hc/healthz"

/* ---- addresses --------------------------------------------------------- */

/*
 * An address as 128 bits, big-endian halves: IPv6 as is, IPv4 as the
 * IPv4-mapped IPv6 address ::ffff:a.b.c.d, so one sorted array holds both
 * families and an IPv4 client on a dual-stack socket matches IPv4 CIDRs.
 */
struct cfg_ip {
    uint64_t hi, lo;
};

/* Inclusive range [first, last]. */
struct cfg_iprange {
    struct cfg_ip first, last;
};

/* Sorted, disjoint, merged ranges. */
struct cfg_ipset {
    struct cfg_iprange *v;
    size_t n;
};

/*
 * Parse a numeric IPv4 or IPv6 address (no zone, no brackets, no port) of n
 * bytes into *ret. 0, or -EINVAL.
 */
int cfg_ip_parse(const char *s, size_t n, struct cfg_ip *ret);

/* Is ip inside one of the set's ranges? O(log n). */
int cfg_ipset_has(const struct cfg_ipset *s, const struct cfg_ip *ip);

/* ---- templates ---------------------------------------------------------- */

enum cfg_tvar {
    CFG_TV_LITERAL = 0,
    CFG_TV_SCHEME,    /* "http" or "https" (X-Forwarded-Proto) */
    CFG_TV_HOST,      /* the request's host without port, as sent */
    CFG_TV_PATH,      /* the path as sent (still percent-encoded), without query */
    CFG_TV_QUERY,     /* the query without '?', empty when none */
    CFG_TV_URI,       /* path and query as sent ("/a?b") */
    CFG_TV_METHOD,    /* the method */
    CFG_TV_CLIENT_IP, /* True-Client-IP, else the socket peer */
    /* must stay last */
    CFG_TV_COUNT
};

/* Placeholder names without braces, indexed by enum cfg_tvar ("" for literal). */
extern const char *const cfg_tvar_names[CFG_TV_COUNT];

struct cfg_tpart {
    uint8_t var;     /* enum cfg_tvar */
    uint32_t len;    /* literal: its length */
    const char *lit; /* literal: its bytes (owned by the template) */
};

/* "https://{host}{uri}" as [lit "https://"][host][uri]. */
struct cfg_tpl {
    struct cfg_tpart *parts;
    uint32_t nparts;
    uint32_t lit_len; /* sum of the literal parts' lengths */
    char *text;       /* the template as written, NUL-terminated */
};

/* ---- matching ----------------------------------------------------------- */

enum cfg_hdr_test {
    CFG_HT_VALUES = 0, /* the field is present with one of the values (exact, case-sensitive) */
    CFG_HT_PRESENT,    /* true */
    CFG_HT_ABSENT,     /* false */
};

struct cfg_hdr_match {
    char *name; /* as written; compared case-insensitively */
    size_t name_len;
    uint8_t test;           /* enum cfg_hdr_test */
    struct cfg_hset values; /* CFG_HT_VALUES: the accepted values */
};

/* Which matchers a match object has (the others match everything). */
enum cfg_mbit {
    CFG_M_HOST = 1 << 0,
    CFG_M_PATH = 1 << 1,
    CFG_M_METHOD = 1 << 2,
    CFG_M_SCHEME = 1 << 3,
    CFG_M_CLIENT_IP = 1 << 4,
    CFG_M_HEADER = 1 << 5,
    CFG_M_NOT = 1 << 6,
};

/* One match object: its keys AND together; a list means any of its entries. */
struct cfg_match {
    uint32_t has;                  /* enum cfg_mbit */
    struct cfg_hset hosts;         /* exact hosts, lower case, no port */
    struct cfg_hset host_suffixes; /* "*.example.com" stored as ".example.com": subdomains only */
    struct cfg_hset paths;         /* exact normalised paths */
    struct cfg_hset path_prefixes; /* a prefix "/x/" followed by "*" is stored as "/x/" */
    uint8_t names_healthz;         /* one of the paths matches CFG_HEALTHZ_PATH */
    struct cfg_hset methods;       /* case-sensitive tokens ("GET") */
    uint8_t schemes;               /* bit 0: http, bit 1: https */
    struct cfg_ipset client_ip;
    struct cfg_hdr_match *headers; /* all must hold */
    size_t nheaders;
    struct cfg_match * not ; /* matches when this does not; NULL when absent */
};

/* ---- actions ------------------------------------------------------------ */

enum cfg_hedit_op {
    CFG_HE_SET = 0, /* replace every field of that name with one */
    CFG_HE_ADD,     /* append one field */
    CFG_HE_REMOVE,  /* remove every field of that name */
};

struct cfg_hedit {
    uint8_t op;       /* enum cfg_hedit_op */
    uint32_t name_id; /* index of the name in cfg_rules.edit_names (folded: core_name_fold) */
    char *name;       /* as written */
    size_t name_len;
    struct cfg_tpl value; /* SET, ADD */
};

struct cfg_hedits {
    struct cfg_hedit *v; /* in the order written: remove, then set, then add */
    size_t n;
};

enum cfg_rewrite_kind {
    CFG_RW_NONE = 0,
    CFG_RW_STRIP_PREFIX, /* "/blog": "/blog/x" -> "/x", "/blog" -> "/" */
    CFG_RW_ADD_PREFIX,   /* "/v2": "/x" -> "/v2/x" */
    CFG_RW_PATH,         /* the path is replaced; the query is kept */
};

struct cfg_rewrite {
    uint8_t kind; /* enum cfg_rewrite_kind */
    char *arg;    /* a normalised path: starts with '/', no dot segments, no "//" */
    size_t len;
};

/* A body the proxy sends: a respond file or text, or an error page. */
struct cfg_page {
    char *data;
    size_t len;
    char *content_type; /* from respond.content_type, else from the file's extension */
    char *file;         /* relative name as written, or NULL for respond.body */
};

enum cfg_rule_kind {
    CFG_RK_NONE = 0,     /* non-terminal actions only */
    CFG_RK_REDIRECT,     /* 301/302/303/307/308 with Location from a template */
    CFG_RK_REDIRECT_MAP, /* a lookup of the normalised path; a miss continues */
    CFG_RK_RESPOND,      /* status, optional body and headers */
    CFG_RK_DENY,         /* status, default 403; the body is the error page or the plain text */
    CFG_RK_RATE_LIMIT,   /* 429 over the limit; within it, evaluation goes on */
    CFG_RK_BASIC_AUTH,   /* 401 without valid credentials; with them, evaluation goes on */
    /* must stay last */
    CFG_RK_COUNT
};

/* "redirect", "redirect_map", "respond", "deny", "rate_limit", "basic_auth" ("" for CFG_RK_NONE).
 */
extern const char *const cfg_rule_kind_names[CFG_RK_COUNT];

/*
 * Rules that guard (deny, rate_limit, basic_auth) match paths without
 * case: many origins route without it (Express, ASP.NET, IIS), and a lock
 * on /admin must hold for /Admin there; matching more is their safe side.
 * The others (redirects, pages, rewrites, header edits) match paths as
 * written, so that a redirect can fix a path's case. docs/rules.md.
 */
static inline int cfg_rule_kind_guards(int kind)
{
    return kind == CFG_RK_DENY || kind == CFG_RK_RATE_LIMIT || kind == CFG_RK_BASIC_AUTH;
}

struct cfg_redirect_map {
    struct cfg_hset from; /* normalised paths */
    char **to;            /* to[i] for from's key i: a path or an absolute URL */
    uint32_t *to_len;
    uint8_t *to_has_query; /* the target has a '?': the request's query is not appended */
    char *file;
};

/* Bounds of rate_limit, checked by the validator (http/ratelimit.h keeps them exact). */
#define CFG_RL_MAX_PER_SECOND 1000000
#define CFG_RL_MAX_PER_MINUTE 60000000
#define CFG_RL_MAX_BURST 100000
#define CFG_RL_TICKS_PER_S 16000000u /* the limiter's clock: 1/16 µs */

enum cfg_rl_key {
    CFG_RL_CLIENT_IP = 0, /* True-Client-IP, else the socket peer */
    CFG_RL_HEADER,        /* "header:NAME": the first field of that name, trimmed */
};

struct cfg_ratelimit {
    uint8_t key;  /* enum cfg_rl_key */
    char *header; /* CFG_RL_HEADER: the name (compared case-insensitively) */
    size_t header_len;
    uint32_t rate; /* tokens per second or per minute, as written */
    uint8_t per_minute;
    uint32_t burst;    /* the bucket's capacity: requests allowed at once */
    uint64_t interval; /* ticks (1/CFG_RL_TICKS_PER_S s) per token, rounded */
};

/* Bounds of basic_auth, checked by the validator. */
#define CFG_AUTH_MAX_USERS 4096
#define CFG_AUTH_MAX_USER 255  /* bytes of a user name */
#define CFG_AUTH_MAX_REALM 128 /* bytes of a realm */
#define CFG_AUTH_MAX_HASH 255  /* bytes of a crypt(3) hash (under CRYPT_OUTPUT_SIZE) */
/* The costliest hashes a check may take (about a second on one core): above, a login stalls. */
#define CFG_AUTH_MAX_BCRYPT_COST 14
#define CFG_AUTH_MAX_SHA512_ROUNDS 1000000

/*
 * basic_auth (RFC 7617): the users and their crypt(3) hashes. A user name is
 * 1..CFG_AUTH_MAX_USER bytes without ':' or control characters (spaces and
 * UTF-8 are allowed), compared exactly (case-sensitive). Every hash was checked by
 * the validator: "$2b$" or "$2y$" bcrypt, "$y$" yescrypt or "$6$"
 * sha512-crypt, complete (settings and checksum) and accepted by
 * crypt_checksalt(); anything else (plain text, "$1$" md5-crypt, DES) is
 * refused.
 */
struct cfg_basic_auth {
    char *realm; /* printable ASCII without '"' and '\\', 1..CFG_AUTH_MAX_REALM bytes */
    size_t realm_len;
    struct cfg_hset users; /* case-sensitive; key i's hash is hash[i] */
    char **hash;           /* users.n of them, NUL-terminated */
};

struct cfg_erule {
    char *label;             /* rules[].name, else the index as a string ("3") */
    struct cfg_match *match; /* NULL: every request (but the health check) */
    struct cfg_hedits req_hdrs, resp_hdrs;
    struct cfg_rewrite rewrite;
    uint8_t kind;                  /* enum cfg_rule_kind */
    uint16_t status;               /* REDIRECT, REDIRECT_MAP, RESPOND, DENY */
    struct cfg_tpl location;       /* REDIRECT */
    struct cfg_redirect_map map;   /* REDIRECT_MAP */
    struct cfg_page *body;         /* RESPOND: NULL for no body */
    struct cfg_hedits answer_hdrs; /* RESPOND: respond.headers (CFG_HE_SET each) */
    struct cfg_ratelimit rl;       /* RATE_LIMIT; status is 429 */
    struct cfg_basic_auth auth;    /* BASIC_AUTH; status is 401 */
};

struct cfg_rules {
    struct cfg_erule *v;
    size_t n;
    /* every header name any edit uses, folded (core_name_fold): cfg_hedit.name_id indexes it */
    struct cfg_hset edit_names;
    /* error_pages: a status's page, else its class's ("5xx"), else NULL */
    struct cfg_page *pages_by_status[600];
    struct cfg_page **pages; /* each loaded page once, for freeing */
    size_t npages;
};

/* The error page for a status (100..599), or NULL. */
static inline const struct cfg_page *cfg_rules_error_page(const struct cfg_rules *rs, int status)
{
    return rs && status >= 100 && status < 600 ? rs->pages_by_status[status] : NULL;
}

/* NULL-safe. */
void cfg_rules_free(struct cfg_rules *rs);

/*
 * Normalise a path for matching (docs/rules.md): percent-encoded octets
 * decoded, dot segments removed, repeated slashes merged. p is the path as
 * sent, without the query (n bytes, starting with '/'). Writes at most cap
 * bytes to out (n bytes always suffice). Returns the length, or -1 when the
 * path cannot be normalised safely: a ".." above the root, an encoded NUL,
 * a '%' not followed by two hex digits, or not starting with '/'. Used for
 * the request at run time and for the paths in rules and redirect maps at
 * load time, so both sides are compared in the same form.
 */
long cfg_path_normalise(const char *p, size_t n, char *out, size_t cap);

/*
 * cfg_path_normalise() for a request's path, which goes to the origin as it
 * came: -1 also for what origins read in another way than the rules would
 * (docs/rules.md, "Normalised paths"): a "." or ".." segment, raw or
 * encoded, also before a ';' parameter ("/..;/"), and an encoded '\'.
 */
long cfg_path_normalise_request(const char *p, size_t n, char *out, size_t cap);

#endif
