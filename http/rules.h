/*
 * Edge rules on the request path: a request is evaluated against the
 * compiled rules (cfg/rules.h) once its head passed the checks of
 * http/forward.c; the verdict says which rules matched and whether one of
 * them answers. The edits it collects are applied when the heads are
 * written (http_rules_req_head(), http_rules_resp_hdrs()), and rule answers
 * are written by http_rules_answer(). No sockets, no allocation: the
 * proxy's state machine (http/proxy.c) calls these, and
 * tests/http/test_rules.c checks them without starting the binary.
 * Semantics: docs/rules.md.
 */
#ifndef RINGPROXY_HTTP_RULES_H
#define RINGPROXY_HTTP_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "cfg/rules.h"
#include "core/str.h"
#include "http/auth.h"
#include "http/msg.h"
#include "http/ratelimit.h"

/* The request as the client sent it, as the rules see it. */
struct http_rules_req {
    const struct http_msg *m;  /* parsed head (method, target, headers) */
    struct core_str host;      /* Host (or the absolute-form authority) without port */
    struct core_str path;      /* path as sent, without query (origin form) */
    struct core_str query;     /* after '?', without it; absent when no '?' */
    struct core_str npath;     /* normalised path (cfg_path_normalise()) */
    struct core_str client_ip; /* True-Client-IP, else the socket peer, as text */
    uint8_t https;             /* X-Forwarded-Proto is "https" (case-insensitive) */
    /*
     * For rate_limit, set by the caller after http_rules_req_init(): the
     * shared table (NULL: no request is limited) and the time (CLOCK_MONOTONIC µs).
     */
    struct http_ratelimit *rl;
    uint64_t now_us;
    /*
     * For basic_auth, set by the caller: the checks' cache (NULL: none is
     * remembered) and room for the decoded credentials (cred_cap bytes; the
     * Authorization field's length suffices; 0: every basic_auth answers 401).
     */
    struct http_auth *auth;
    char *cred;
    size_t cred_cap;
};

/*
 * Fill r from a checked request head: host from host_sent (as forwarded),
 * path and query from the target (absolute-form reduced to its path),
 * client_ip from True-Client-IP else peer, the normalised path into
 * scratch (cap bytes; the target's length always suffices). Returns 0, or
 * -400 when the path cannot be normalised safely.
 *
 * host: without ":port" ("[::1]:80" is "[::1]") and without one trailing
 * dot ("example.com." names example.com). path: "/" for an absolute-form
 * target without one, as forwarded. OPTIONS *: path and npath are "*", not
 * normalised; no path entry matches it (they all start with '/') and no
 * rewrite applies to it. client_ip: True-Client-IP (OWS trimmed) when the
 * request has a non-empty one, even when it does not parse (then no
 * client_ip list matches), else peer (the socket's address as text, no
 * port). X-Forwarded-For is never read.
 */
int http_rules_req_init(struct http_rules_req *r, const struct http_msg *m,
                        struct core_str host_sent, struct core_str peer, char *scratch, size_t cap);

/*
 * The request's client_ip parsed (cfg_ip_parse()): 0, or -1 when it does
 * not parse (then no client_ip list matches it). Evaluation parses it only
 * when a rule's client_ip matcher is reached: most requests never need it.
 */
int http_rules_req_ip(const struct http_rules_req *r, struct cfg_ip *ret);

/* Rules a verdict can record (CFG_RULES_MAX bits). */
#define HTTP_RULES_WORDS ((CFG_RULES_MAX + 63) / 64)

struct http_rules_verdict {
    uint64_t edits[HTTP_RULES_WORDS]; /* rules that matched and have non-terminal actions */
    int32_t answer;                   /* the rule that answers (terminal), or -1 */
    int32_t last;     /* for the log: the rule that answered or last changed the request, or -1 */
    int32_t map_hit;  /* REDIRECT_MAP answer: the index of the entry in the map */
    uint8_t any_req;  /* some matched rule edits request headers or rewrites */
    uint8_t any_resp; /* some matched rule edits response headers */
    uint32_t retry_after;              /* RATE_LIMIT answer: Retry-After, in seconds */
    uint64_t passed[HTTP_RULES_WORDS]; /* rules whose rate_limit let the request through */
    uint8_t any_passed;                /* passed has a bit set */
    /*
     * A basic_auth whose password must be checked (off the event loop):
     * evaluation stopped at rule `auth` (-1: none), to go on with
     * http_rules_resume() once the check is done. auth_user: the user's
     * index in the rule, or -1 for an unknown user (checked all the same,
     * against auth_hash, for a user's cost, and refused).
     * auth_pass: the password, in r->cred; auth_key: the cache key.
     */
    int32_t auth;
    int32_t auth_user;
    int32_t auth_hash; /* the hash to check against: the user's, or a decoy for an unknown user */
    struct core_str auth_pass;
    uint64_t auth_key[2];
};

/*
 * Evaluate every rule top to bottom: non-terminal actions of matching rules
 * accumulate in v, the first terminal answer ends evaluation. The health
 * check path is exempt from rules whose path list does not name it. A
 * rate_limit takes a token from its key's bucket in r->rl: over the limit
 * it answers (429, v->retry_after), else it is recorded in v->passed and
 * evaluation goes on; a header key the request does not have (or has
 * empty) is not limited.
 */
void http_rules_eval(const struct cfg_rules *rs, const struct http_rules_req *r,
                     struct http_rules_verdict *v);

/*
 * A basic_auth (docs/rules.md): without an Authorization field of the
 * Basic scheme with a known user and its password, or with two such
 * fields, the rule answers 401 (v->answer). With credentials remembered in
 * r->auth's cache, the rule lets the request through (v->passed) and
 * evaluation goes on. Else the password must be checked: every such check
 * takes a token from the client's bucket of the rule's checks
 * (HTTP_RULES_AUTH_BURST at once, one each HTTP_RULES_AUTH_EVERY_S
 * seconds, in r->rl) and over it the rule answers 429 (v->retry_after);
 * within it evaluation stops with v->auth set, for the caller to check
 * the password (http/auth.h) and call http_rules_resume() with the result.
 */
#define HTTP_RULES_AUTH_BURST 10
/* the checks' buckets in r->rl, apart from the rate_limit rules' (rule | this) */
#define HTTP_RULES_AUTH_NS 0x80000000u
#define HTTP_RULES_AUTH_EVERY_S 6

/*
 * Go on after a basic_auth's check (v->auth >= 0): ok lets the request
 * through that rule and evaluates the rules after it (which may stop at
 * another basic_auth); else the rule answers 401. r is the same request,
 * initialised again (its npath may have been overwritten meanwhile).
 */
void http_rules_resume(const struct cfg_rules *rs, const struct http_rules_req *r,
                       struct http_rules_verdict *v, int ok);

/* Is rule i in the verdict's edits? */
static inline int http_rules_applied(const struct http_rules_verdict *v, size_t i)
{
    return (int)((v->edits[i / 64] >> (i % 64)) & 1);
}

/*
 * Expand a template for request r into out (cap bytes). Returns the length,
 * or -1 when it does not fit.
 */
long http_rules_expand(const struct cfg_tpl *t, const struct http_rules_req *r, char *out,
                       size_t cap);

/*
 * Write the request head the origin gets, with the verdict's rewrites and
 * request-header edits applied, into out (cap bytes). fwd_head/fwd_len is
 * the head http_fwd_request() wrote (request line, forwarded fields, final
 * CRLF); it is re-read, never modified. Returns the new length, or -1 when
 * it does not fit (the caller answers 431). Only called when v->any_req.
 */
long http_rules_req_head(const struct cfg_rules *rs, const struct http_rules_verdict *v,
                         const struct http_rules_req *r, const char *fwd_head, size_t fwd_len,
                         char *out, size_t cap);

/* Most distinct header names the edits of one config use (the validator's bound). */
#define HTTP_RULES_MAX_EDIT_NAMES 256

/*
 * The final state of the header edits of one direction, per edited name
 * (an id in cfg_rules.edit_names): reset[id] is 0 when the fields of that
 * name stay, else 1 + the position (rule * CFG_RULES_MAX_EDITS + edit) of
 * the last set or remove, which drops the fields the message has and the
 * values earlier rules set or added. Computed once per response head
 * (http_rules_resp_plan()), then one hash probe per field.
 */
struct http_rules_plan {
    uint32_t n;         /* names covered: min(edit_names.n, HTTP_RULES_MAX_EDIT_NAMES) */
    uint8_t drops;      /* some set or remove: fields must be looked up */
    uint64_t drop_lens; /* bit len % 64 for each dropped name: most fields skip the lookup */
    uint32_t reset[HTTP_RULES_MAX_EDIT_NAMES];
};

/* The response-side plan of a verdict. Only called when v->any_resp. */
void http_rules_resp_plan(const struct cfg_rules *rs, const struct http_rules_verdict *v,
                          struct http_rules_plan *pl);

/* Is a response field named name dropped (removed, or replaced by a set)? */
int http_rules_plan_drops(const struct cfg_rules *rs, const struct http_rules_plan *pl,
                          struct core_str name);

/*
 * Append the fields the plan's sets and adds leave ("Name: value\r\n" each,
 * in rule order) to out (cap bytes). Returns the bytes written, or -1 when
 * they do not fit.
 */
long http_rules_plan_adds(const struct cfg_rules *rs, const struct http_rules_verdict *v,
                          const struct http_rules_plan *pl, const struct http_rules_req *r,
                          char *out, size_t cap);

/*
 * The head of a rule's answer (v->answer) or of an error page: status line,
 * Location (redirects), Retry-After (rate_limit: v->retry_after), Content-Type and Content-Length
 * of body (NULL: none, Content-Length: 0; 204 and 304 get neither), respond.headers, the verdict's
 * response-header edits, Connection: keep-alive or close. The edits apply as to an origin's
 * response: a field they remove or set is dropped (respond.headers, Content-Type, Location alike),
 * their sets and adds are appended. v->answer -1 (the proxy's own answer, an error page): no
 * Location, no respond.headers; status is any 100..599. Written into out (cap bytes); returns its
 * length or -1 when it does not fit. The body, when there is one and the request is not HEAD, is
 * sent after it by the caller straight from the page (it lives as long as the config).
 */
long http_rules_answer_head(const struct cfg_rules *rs, const struct http_rules_verdict *v,
                            const struct http_rules_req *r, int status, const struct cfg_page *body,
                            int keep_alive, char *out, size_t cap);

#endif
