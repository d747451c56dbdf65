/*
 * Edge rules on the request path (http/rules.h): what a request is to the
 * rules, which rules match it, and the heads their actions write. Nothing
 * here allocates: the rules were compiled into hash sets and split
 * templates at load time (cfg/rules.h), and the per-request state is the
 * verdict, a few views and bounded arrays on the stack.
 */
#include "http/rules.h"

#include <string.h>
#include <strings.h>

#include "cfg/cfg.h"
#include "http/forward.h"

/* ---- output ------------------------------------------------------------- */

struct obuf {
    char *p;
    size_t len, cap;
    int overflow;
};

static inline void ob_put(struct obuf *b, const char *s, size_t n)
{
    if (n > b->cap - b->len) {
        b->overflow = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

#define OB_LIT(b, lit) ob_put((b), (lit), sizeof(lit) - 1)

static inline void ob_str(struct obuf *b, struct core_str s)
{
    if (s.len)
        ob_put(b, s.p, s.len);
}

static inline int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static struct core_str trim(struct core_str s)
{
    while (s.len && is_ows(s.p[0])) {
        s.p++;
        s.len--;
    }
    while (s.len && is_ows(s.p[s.len - 1]))
        s.len--;
    return s;
}

/* ---- the request as the rules see it ------------------------------------ */

/*
 * The host without its port: "a.example:8080" is "a.example", "[::1]:80" is
 * "[::1]". One trailing dot goes too ("example.com." names the same host as
 * "example.com"), so that it is no way around a host rule.
 */
static struct core_str host_of(struct core_str h)
{
    size_t i = 0;

    if (h.len && h.p[0] == '[') {
        while (i < h.len && h.p[i] != ']')
            i++;
        if (i < h.len)
            i++; /* keep the ']' */
        h.len = i;
        return h;
    }
    while (i < h.len && h.p[i] != ':')
        i++;
    h.len = i;
    if (h.len > 1 && h.p[h.len - 1] == '.')
        h.len--;
    return h;
}

int http_rules_req_init(struct http_rules_req *r, const struct http_msg *m,
                        struct core_str host_sent, struct core_str peer, char *scratch, size_t cap)
{
    struct core_str t = m->target, tci, xfp;
    size_t i = 0;
    long n;

    *r = (struct http_rules_req){.m = m};
    r->host = host_of(host_sent);

    if (t.len == 1 && t.p[0] == '*') {
        /* OPTIONS *: no path to normalise; no path entry (they all start with '/') matches it */
        r->path = r->npath = (struct core_str){"*", 1};
    } else {
        if (t.len && t.p[0] != '/') {
            /* absolute-form (checked by http_fwd_request): its path part, as forwarded */
            const char *s = memchr(t.p, ':', t.len);

            i = s ? (size_t)(s - t.p) + 3 : t.len;
            while (i < t.len && t.p[i] != '/' && t.p[i] != '?')
                i++;
        }
        r->path.p = t.p + i;
        while (i < t.len && t.p[i] != '?')
            i++;
        r->path.len = (size_t)(t.p + i - r->path.p);
        if (i < t.len)
            r->query = (struct core_str){t.p + i + 1, t.len - i - 1};
        if (!r->path.len)
            r->path = (struct core_str){"/", 1}; /* "http://h?q" goes upstream as "/?q" */
        n = cfg_path_normalise_request(r->path.p, r->path.len, scratch, cap);
        if (n < 0)
            return -400;
        r->npath = (struct core_str){scratch, (size_t)n};
    }

    tci = trim(http_msg_known(m, HK_TRUE_CLIENT_IP));
    r->client_ip = tci.len ? tci : peer;

    xfp = trim(http_msg_known(m, HK_X_FORWARDED_PROTO));
    r->https = (uint8_t)CORE_STR_IEQ(xfp, "https");
    return 0;
}

int http_rules_req_ip(const struct http_rules_req *r, struct cfg_ip *ret)
{
    return r->client_ip.len && cfg_ip_parse(r->client_ip.p, r->client_ip.len, ret) == 0 ? 0 : -1;
}

/* ---- matching ----------------------------------------------------------- */

/*
 * The keys a request is probed with, each hashed once per request (lazily)
 * instead of once per rule and set: the host and its ".suffix"es, the
 * normalised path and its "/prefix/"es, the method. Keys past the arrays'
 * room are hashed at each probe, as cfg_hset_find() does.
 */
#define PROBE_MAX 32

/* A probe with a hash made for a set of that icase; another set hashes for itself. */
static inline long find_h(const struct cfg_hset *s, const char *k, size_t n, uint32_t h, int icase)
{
    return s->icase == icase ? cfg_hset_find_hashed(s, k, n, h) : cfg_hset_find(s, k, n);
}

/*
 * What a request's probes have computed so far. Path hashes come in two
 * kinds, [0] with case and [1] without (guarding rules match paths without
 * case: cfg_rule_kind_guards()), each made on first use.
 */
struct probe {
    const struct http_rules_req *r;
    uint32_t host_h, npath_h[2], method_h;
    uint8_t have_host, have_npath[2], have_method, have_dots, have_slashes[2];
    uint8_t ndots, nslashes;
    uint8_t have_ip, ip_ok; /* client_ip parsed on first use */
    struct cfg_ip ip;
    /* the path's hash fed up to slash[PROBE_MAX - 1], when the room is full */
    uint32_t slash_state[2];
    uint32_t dot[PROBE_MAX], slash[PROBE_MAX];
    uint32_t dot_h[PROBE_MAX], slash_h[2][PROBE_MAX];
};

/* The normalised path's hash, with case (icase 0) or without (1). */
static inline uint32_t npath_hash(struct probe *pr, int icase)
{
    if (!pr->have_npath[icase]) {
        pr->npath_h[icase] = cfg_hset_hash(pr->r->npath.p, pr->r->npath.len, icase);
        pr->have_npath[icase] = 1;
    }
    return pr->npath_h[icase];
}

/* No DNS name is longer (RFC 1035 2.3.4): a longer host has no subdomains to match. */
#define HOST_NAME_MAX_LEN 253

/*
 * Exact host, then ".example.com" for each '.' of "a.example.com": one
 * probe each, for the rightmost PROBE_MAX dots (a wildcard entry names
 * fewer labels). Each suffix is hashed once per request, so a request
 * costs at most PROBE_MAX * 253 bytes of hashing, whatever the rules.
 */
static int host_matches(const struct cfg_match *mt, struct probe *pr)
{
    struct core_str h = pr->r->host;

    if (mt->hosts.n) {
        if (!pr->have_host) {
            pr->host_h = cfg_hset_hash(h.p, h.len, 1);
            pr->have_host = 1;
        }
        if (find_h(&mt->hosts, h.p, h.len, pr->host_h, 1) >= 0)
            return 1;
    }
    if (!mt->host_suffixes.n || h.len > HOST_NAME_MAX_LEN)
        return 0;
    if (!pr->have_dots) {
        for (size_t i = h.len; i-- > 0 && pr->ndots < PROBE_MAX;)
            if (h.p[i] == '.') {
                pr->dot[pr->ndots] = (uint32_t)i;
                pr->dot_h[pr->ndots++] = cfg_hset_hash(h.p + i, h.len - i, 1);
            }
        pr->have_dots = 1;
    }
    for (size_t k = 0; k < pr->ndots; k++) {
        size_t i = pr->dot[k];

        if (find_h(&mt->host_suffixes, h.p + i, h.len - i, pr->dot_h[k], 1) >= 0)
            return 1;
    }
    return 0;
}

/*
 * Exact path, then "/", "/a/", "/a/b/" ... for each '/' of the normalised
 * path. The prefixes' hashes come from one pass over the path (the hash is
 * fed left to right); past PROBE_MAX slashes the pass goes on from where it
 * stopped, so a long path costs each rule one pass, never one per slash.
 */
static int path_matches(const struct cfg_match *mt, struct probe *pr)
{
    struct core_str np = pr->r->npath;
    int ic = mt->paths.icase; /* the same for path_prefixes */

    if (mt->paths.n && cfg_hset_find_hashed(&mt->paths, np.p, np.len, npath_hash(pr, ic)) >= 0)
        return 1;
    if (!mt->path_prefixes.n)
        return 0;
    if (!pr->have_slashes[ic]) {
        uint32_t st = CFG_HSET_SEED;
        size_t from = 0, k = 0;

        for (size_t i = 0; i < np.len && k < PROBE_MAX; i++)
            if (np.p[i] == '/') {
                st = cfg_hset_feed(st, np.p + from, i + 1 - from, ic);
                from = i + 1;
                pr->slash[k] = (uint32_t)i;
                pr->slash_h[ic][k++] = cfg_hset_mix(st);
            }
        pr->nslashes = (uint8_t)k;
        pr->slash_state[ic] = st;
        pr->have_slashes[ic] = 1;
    }
    for (size_t k = 0; k < pr->nslashes; k++)
        if (cfg_hset_find_hashed(&mt->path_prefixes, np.p, pr->slash[k] + 1u, pr->slash_h[ic][k]) >=
            0)
            return 1;
    if (pr->nslashes == PROBE_MAX) {
        uint32_t st = pr->slash_state[ic];
        size_t from = pr->slash[PROBE_MAX - 1] + 1u;

        for (size_t i = from; i < np.len; i++)
            if (np.p[i] == '/') {
                st = cfg_hset_feed(st, np.p + from, i + 1 - from, ic);
                from = i + 1;
                if (cfg_hset_find_hashed(&mt->path_prefixes, np.p, i + 1, cfg_hset_mix(st)) >= 0)
                    return 1;
            }
    }
    return 0;
}

static int method_matches(const struct cfg_match *mt, struct probe *pr)
{
    struct core_str m = pr->r->m->method;

    if (!pr->have_method) {
        pr->method_h = cfg_hset_hash(m.p, m.len, 1);
        pr->have_method = 1;
    }
    /* without case: "ban" is BAN to frameworks that upper-case the method */
    return find_h(&mt->methods, m.p, m.len, pr->method_h, 1) >= 0;
}

static int header_matches(const struct cfg_hdr_match *hm, const struct http_msg *m)
{
    for (uint16_t i = 0; i < m->nhdrs; i++) {
        const struct core_hdr *h = &m->hdrs[i];

        /* as the origin may read it: X_Debug is X-Debug to some */
        if (!core_name_fold_eq(h->name, hm->name, hm->name_len))
            continue;
        if (hm->test != CFG_HT_VALUES)
            return hm->test == CFG_HT_PRESENT;
        struct core_str v = trim(h->value);
        if (cfg_hset_find(&hm->values, v.p ? v.p : "", v.len) >= 0)
            return 1;
    }
    return hm->test == CFG_HT_ABSENT;
}

/* The request's client_ip parsed into pr->ip, on first use: 1, or 0 when it does not parse. */
static int probe_ip(struct probe *pr)
{
    if (!pr->have_ip) {
        pr->ip_ok = http_rules_req_ip(pr->r, &pr->ip) == 0;
        pr->have_ip = 1;
    }
    return pr->ip_ok;
}

static int match(const struct cfg_match *mt, struct probe *pr)
{
    const struct http_rules_req *r = pr->r;
    uint32_t has = mt->has;

    if ((has & CFG_M_SCHEME) && !(mt->schemes & (r->https ? 2 : 1)))
        return 0;
    if ((has & CFG_M_HOST) && !host_matches(mt, pr))
        return 0;
    if ((has & CFG_M_PATH) && !path_matches(mt, pr))
        return 0;
    if ((has & CFG_M_METHOD) && !method_matches(mt, pr))
        return 0;
    if ((has & CFG_M_CLIENT_IP) && !(probe_ip(pr) && cfg_ipset_has(&mt->client_ip, &pr->ip)))
        return 0;
    if (has & CFG_M_HEADER)
        for (size_t i = 0; i < mt->nheaders; i++)
            if (!header_matches(&mt->headers[i], r->m))
                return 0;
    if ((has & CFG_M_NOT) && mt->not &&match(mt->not, pr))
        return 0;
    return 1;
}

/*
 * The field named name (compared as header matchers compare: X_Api_Key is
 * X-Api-Key to some origins, and must not escape a limit keyed on it),
 * trimmed: 0; -1 when there is none or it is empty; -2 when there are two
 * or more (a decoy beside the real key, or an empty one before it, would
 * make a fresh bucket for every request while the origin reads the key).
 */
static int header_value(const struct http_msg *m, const char *name, size_t n, struct core_str *ret)
{
    int found = 0;

    for (uint16_t i = 0; i < m->nhdrs; i++) {
        const struct core_hdr *h = &m->hdrs[i];

        if (!core_name_fold_eq(h->name, name, n))
            continue;
        if (found++)
            return -2;
        *ret = trim(h->value);
    }
    return found && ret->len ? 0 : -1;
}

/* A rate_limit's token: 0 when the request may go on, else the seconds for Retry-After. */
static uint32_t rate_limit(const struct cfg_erule *e, uint32_t i, struct probe *pr)
{
    const struct http_rules_req *r = pr->r;
    struct core_str hv;
    uint64_t key;

    if (!r->rl)
        return 0;
    if (e->rl.key == CFG_RL_CLIENT_IP) {
        if (pr->have_ip)
            key = pr->ip_ok ? http_ratelimit_key_ip(r->rl, i, &pr->ip)
                            : http_ratelimit_key_bytes(r->rl, i, r->client_ip.p, r->client_ip.len);
        else
            key = http_ratelimit_key_client(r->rl, i, r->client_ip.p, r->client_ip.len);
    } else {
        switch (header_value(r->m, e->rl.header, e->rl.header_len, &hv)) {
        case 0:
            break;
        case -2: { /* which one the origin reads is not known: over the limit */
            uint64_t s = (e->rl.interval + CFG_RL_TICKS_PER_S - 1) / CFG_RL_TICKS_PER_S;

            return s < 1 ? 1 : s > UINT32_MAX ? UINT32_MAX : (uint32_t)s;
        }
        default:
            return 0;
        }
        key = http_ratelimit_key_bytes(r->rl, i, hv.p, hv.len);
    }
    return http_ratelimit_take(r->rl, key, r->now_us, e->rl.interval, e->rl.burst);
}

/* ---- basic_auth ---------------------------------------------------------- */

/* RFC 4648 base64, the standard alphabet. */
static int b64_digit(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/*
 * Decode base64 (padding optional, nothing after it) into out (cap bytes).
 * Returns the length, or -1 when it is not base64 or does not fit.
 */
static long b64_decode(const char *p, size_t n, char *out, size_t cap)
{
    uint32_t acc = 0;
    size_t o = 0;
    int bits = 0;

    while (n && p[n - 1] == '=')
        n--;
    if (n % 4 == 1)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int d = b64_digit((unsigned char)p[i]);

        if (d < 0)
            return -1;
        acc = acc << 6 | (uint32_t)d;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap)
                return -1;
            out[o++] = (char)(acc >> bits);
        }
    }
    return (long)o;
}

enum auth_step { AUTH_PASS, AUTH_401, AUTH_429, AUTH_CHECK };

/*
 * A basic_auth rule's step for the request: through (remembered good
 * credentials), 401, 429 (too many checks for this client), or a check to
 * make (v->auth_* filled).
 */
static enum auth_step basic_auth(const struct cfg_erule *e, uint32_t i, struct probe *pr,
                                 struct http_rules_verdict *v)
{
    const struct http_rules_req *r = pr->r;
    const struct cfg_basic_auth *a = &e->auth;
    struct core_str f;
    const char *colon;
    long n, user;
    uint32_t wait;
    uint64_t key;

    /* two fields: which one would the origin believe? Neither is checked */
    if (r->m->count[HK_AUTHORIZATION] != 1 || !a->users.n)
        return AUTH_401;
    f = trim(http_msg_known(r->m, HK_AUTHORIZATION));
    /* auth-scheme is case-insensitive (RFC 9110 11.1), then 1*SP token68 */
    if (f.len < 7 || strncasecmp(f.p, "basic ", 6))
        return AUTH_401;
    f.p += 6;
    f.len -= 6;
    while (f.len && f.p[0] == ' ') {
        f.p++;
        f.len--;
    }
    n = r->cred ? b64_decode(f.p, f.len, r->cred, r->cred_cap) : -1;
    if (n < 0 || !(colon = memchr(r->cred, ':', (size_t)n)) || memchr(r->cred, 0, (size_t)n))
        return AUTH_401;
    user = cfg_hset_find(&a->users, r->cred, (size_t)(colon - r->cred));
    if (user >= 0) {
        const char *h = a->hash[user];

        if (r->auth) {
            http_auth_key(r->auth, h, strlen(h), r->cred, (size_t)n, v->auth_key);
            if (http_auth_cache_has(r->auth, v->auth_key, r->now_us))
                return AUTH_PASS;
        }
    }
    /*
     * A check costs tens of ms of a helper: a client gets so many, known user
     * or not (an IPv6 client is its /64: http_ratelimit_key_ip()).
     */
    if (r->rl) {
        if (probe_ip(pr)) {
            key = http_ratelimit_key_ip(r->rl, i | HTTP_RULES_AUTH_NS, &pr->ip);
        } else {
            key = http_ratelimit_key_bytes(r->rl, i | HTTP_RULES_AUTH_NS, r->client_ip.p,
                                           r->client_ip.len);
        }
        wait = http_ratelimit_take(r->rl, key, r->now_us,
                                   (uint64_t)HTTP_RULES_AUTH_EVERY_S * CFG_RL_TICKS_PER_S,
                                   HTTP_RULES_AUTH_BURST);
        if (wait) {
            v->retry_after = wait;
            return AUTH_429;
        }
    }
    v->auth = (int32_t)i;
    v->auth_user = (int32_t)user;
    v->auth_hash = (int32_t)user;
    if (user < 0) {
        /*
         * An unknown user is checked against the hash of a user chosen by a
         * secret hash of the name: its refusal takes as long as a refusal
         * of some user's, the same each time, so that the time does not
         * tell a name that exists from one that does not.
         */
        uint64_t k[2] = {0, 0};

        if (r->auth)
            http_auth_key(r->auth, "", 0, r->cred, (size_t)(colon - r->cred), k);
        v->auth_hash = (int32_t)(k[0] % a->users.n);
    }
    v->auth_pass = (struct core_str){colon + 1, (size_t)(r->cred + n - colon - 1)};
    return AUTH_CHECK;
}

/* Evaluate rules from `from` on, into v (which holds what the rules before it did). */
static void eval_from(const struct cfg_rules *rs, const struct http_rules_req *r,
                      struct http_rules_verdict *v, size_t from)
{
    struct probe pr;
    /*
     * The platform's health check, exactly as its checker sends it (any
     * query): another spelling that normalises to it is an ordinary request,
     * or the exemption would be a way around every rule.
     */
    int healthz = r->path.len == sizeof(CFG_HEALTHZ_PATH) - 1 &&
                  !memcmp(r->path.p, CFG_HEALTHZ_PATH, sizeof(CFG_HEALTHZ_PATH) - 1);

    pr.r = r;
    pr.have_host = pr.have_method = pr.have_dots = 0;
    pr.have_npath[0] = pr.have_npath[1] = pr.have_slashes[0] = pr.have_slashes[1] = 0;
    pr.ndots = pr.nslashes = 0;
    pr.have_ip = 0;
    for (size_t i = from; i < rs->n && i < CFG_RULES_MAX; i++) {
        const struct cfg_erule *e = &rs->v[i];

        /* the platform's health check: only for rules whose path list names it */
        if (healthz && !(e->match && e->match->names_healthz))
            continue;
        if (e->match && !match(e->match, &pr))
            continue;
        if (e->req_hdrs.n || e->resp_hdrs.n || e->rewrite.kind != CFG_RW_NONE) {
            v->edits[i / 64] |= (uint64_t)1 << (i % 64);
            v->any_req |= e->req_hdrs.n || e->rewrite.kind != CFG_RW_NONE;
            v->any_resp |= e->resp_hdrs.n != 0;
            v->last = (int32_t)i;
        }
        switch (e->kind) {
        case CFG_RK_REDIRECT:
        case CFG_RK_RESPOND:
        case CFG_RK_DENY:
            v->answer = v->last = (int32_t)i;
            return;
        case CFG_RK_REDIRECT_MAP: {
            long k;

            k = find_h(&e->map.from, r->npath.p, r->npath.len, npath_hash(&pr, 0), 0);

            if (k >= 0) {
                v->answer = v->last = (int32_t)i;
                v->map_hit = (int32_t)k;
                return;
            }
            break; /* a miss: evaluation goes on */
        }
        case CFG_RK_RATE_LIMIT: {
            uint32_t wait = rate_limit(e, (uint32_t)i, &pr);

            if (wait) {
                v->answer = v->last = (int32_t)i;
                v->retry_after = wait;
                return;
            }
            v->passed[i / 64] |= (uint64_t)1 << (i % 64);
            v->any_passed = 1;
            break;
        }
        case CFG_RK_BASIC_AUTH:
            switch (basic_auth(e, (uint32_t)i, &pr, v)) {
            case AUTH_PASS:
                v->passed[i / 64] |= (uint64_t)1 << (i % 64);
                v->any_passed = 1;
                break;
            case AUTH_CHECK:
                return; /* http_rules_resume() goes on */
            case AUTH_401:
            case AUTH_429:
                v->answer = v->last = (int32_t)i;
                return;
            }
            break;
        default:
            break;
        }
    }
}

void http_rules_eval(const struct cfg_rules *rs, const struct http_rules_req *r,
                     struct http_rules_verdict *v)
{
    memset(v, 0, sizeof(*v));
    v->answer = v->last = v->map_hit = v->auth = v->auth_user = v->auth_hash = -1;
    if (rs)
        eval_from(rs, r, v, 0);
}

void http_rules_resume(const struct cfg_rules *rs, const struct http_rules_req *r,
                       struct http_rules_verdict *v, int ok)
{
    int32_t i = v->auth;

    if (!rs || i < 0 || (size_t)i >= rs->n)
        return;
    v->auth = v->auth_user = v->auth_hash = -1;
    v->auth_pass = (struct core_str){0};
    if (!ok) {
        v->answer = v->last = i;
        return;
    }
    v->passed[i / 64] |= (uint64_t)1 << (i % 64);
    v->any_passed = 1;
    eval_from(rs, r, v, (size_t)i + 1);
}

/* ---- templates ---------------------------------------------------------- */

static void expand(struct obuf *b, const struct cfg_tpl *t, const struct http_rules_req *r)
{
    for (uint32_t i = 0; i < t->nparts; i++) {
        const struct cfg_tpart *p = &t->parts[i];

        switch (p->var) {
        case CFG_TV_LITERAL:
            ob_put(b, p->lit, p->len);
            break;
        case CFG_TV_SCHEME:
            if (r->https)
                OB_LIT(b, "https");
            else
                OB_LIT(b, "http");
            break;
        case CFG_TV_HOST:
            ob_str(b, r->host);
            break;
        case CFG_TV_PATH:
            ob_str(b, r->path);
            break;
        case CFG_TV_QUERY:
            ob_str(b, r->query);
            break;
        case CFG_TV_URI:
            ob_str(b, r->path);
            if (r->query.p) {
                OB_LIT(b, "?");
                ob_str(b, r->query);
            }
            break;
        case CFG_TV_METHOD:
            if (r->m)
                ob_str(b, r->m->method);
            break;
        case CFG_TV_CLIENT_IP:
            ob_str(b, r->client_ip);
            break;
        default:
            break;
        }
    }
}

long http_rules_expand(const struct cfg_tpl *t, const struct http_rules_req *r, char *out,
                       size_t cap)
{
    struct obuf b = {out, 0, cap, 0};

    expand(&b, t, r);
    return b.overflow ? -1 : (long)b.len;
}

/* ---- header edits ------------------------------------------------------- */

/* The rules of a verdict's edits, in order: for (i = first; i >= 0; i = next(i)). */
static long next_applied(const struct http_rules_verdict *v, size_t from)
{
    for (size_t k = from / 64; k < HTTP_RULES_WORDS; k++) {
        uint64_t bits = v->edits[k];

        if (k == from / 64)
            bits &= ~(uint64_t)0 << (from % 64);
        if (bits)
            return (long)(k * 64 + (size_t)__builtin_ctzll(bits));
    }
    return -1;
}

#define EACH_APPLIED(i, v) for (long i = next_applied((v), 0); i >= 0; i = next_applied((v), i + 1))

/* Where an edit stands among all the edits of one direction, from 1. */
static inline uint32_t edit_pos(long rule, size_t j)
{
    return (uint32_t)rule * CFG_RULES_MAX_EDITS + (uint32_t)j + 1;
}

static const struct cfg_hedits *dir_edits(const struct cfg_erule *e, int resp)
{
    return resp ? &e->resp_hdrs : &e->req_hdrs;
}

/* The final state of every edited name, for one direction: see struct http_rules_plan. */
static void plan_build(const struct cfg_rules *rs, const struct http_rules_verdict *v, int resp,
                       struct http_rules_plan *pl)
{
    pl->n =
        rs->edit_names.n < HTTP_RULES_MAX_EDIT_NAMES ? rs->edit_names.n : HTTP_RULES_MAX_EDIT_NAMES;
    pl->drops = 0;
    pl->drop_lens = 0;
    memset(pl->reset, 0, pl->n * sizeof(pl->reset[0]));
    EACH_APPLIED(i, v)
    {
        const struct cfg_hedits *ed = dir_edits(&rs->v[i], resp);

        for (size_t j = 0; j < ed->n && j < CFG_RULES_MAX_EDITS; j++) {
            const struct cfg_hedit *e = &ed->v[j];

            if (e->op == CFG_HE_ADD || e->name_id >= pl->n)
                continue;
            /* set and remove drop the fields so far, and whatever earlier rules added */
            pl->reset[e->name_id] = edit_pos(i, j);
            pl->drops = 1;
            pl->drop_lens |= (uint64_t)1 << (e->name_len % 64);
        }
    }
}

/*
 * Does the plan drop the field called name? Edited names are kept folded
 * (core_name_fold): a set or remove of X-Client-IP also drops a client's
 * X_Client_IP, which some origins read as the same field.
 */
static int plan_drops(const struct cfg_rules *rs, const struct http_rules_plan *pl,
                      const char *name, size_t len)
{
    char folded[CFG_MAX_HEADER_NAME];
    long id;

    if (!pl->drops || !((pl->drop_lens >> (len % 64)) & 1) || len > sizeof(folded))
        return 0;
    core_name_fold(folded, name, len);
    id = cfg_hset_find(&rs->edit_names, folded, len);
    return id >= 0 && (uint32_t)id < pl->n && pl->reset[id] != 0;
}

/* The fields the plan's sets and adds leave, in rule order. */
static void plan_adds(struct obuf *b, const struct cfg_rules *rs,
                      const struct http_rules_verdict *v, const struct http_rules_plan *pl,
                      int resp, const struct http_rules_req *r)
{
    EACH_APPLIED(i, v)
    {
        const struct cfg_hedits *ed = dir_edits(&rs->v[i], resp);

        for (size_t j = 0; j < ed->n && j < CFG_RULES_MAX_EDITS; j++) {
            const struct cfg_hedit *e = &ed->v[j];

            if (e->op == CFG_HE_REMOVE || e->name_id >= pl->n ||
                edit_pos(i, j) < pl->reset[e->name_id])
                continue; /* a later set or remove of the name undid it */
            ob_put(b, e->name, e->name_len);
            OB_LIT(b, ": ");
            expand(b, &e->value, r);
            OB_LIT(b, "\r\n");
        }
    }
}

void http_rules_resp_plan(const struct cfg_rules *rs, const struct http_rules_verdict *v,
                          struct http_rules_plan *pl)
{
    plan_build(rs, v, 1, pl);
}

int http_rules_plan_drops(const struct cfg_rules *rs, const struct http_rules_plan *pl,
                          struct core_str name)
{
    return plan_drops(rs, pl, name.p, name.len);
}

long http_rules_plan_adds(const struct cfg_rules *rs, const struct http_rules_verdict *v,
                          const struct http_rules_plan *pl, const struct http_rules_req *r,
                          char *out, size_t cap)
{
    struct obuf b = {out, 0, cap, 0};

    plan_adds(&b, rs, v, pl, 1, r);
    return b.overflow ? -1 : (long)b.len;
}

/* ---- the request head --------------------------------------------------- */

/* pchar (RFC 3986 3.3) and '/': what a rewritten path sends as is. */
static const uint8_t path_ok[256] = {
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,  ['g'] = 1, ['h'] = 1,
    ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,  ['o'] = 1, ['p'] = 1,
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1,  ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1,  ['E'] = 1, ['F'] = 1,
    ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1,  ['M'] = 1, ['N'] = 1,
    ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1,  ['U'] = 1, ['V'] = 1,
    ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['0'] = 1, ['1'] = 1,  ['2'] = 1, ['3'] = 1,
    ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,  ['-'] = 1, ['.'] = 1,
    ['_'] = 1, ['~'] = 1, ['!'] = 1, ['$'] = 1, ['&'] = 1, ['\''] = 1, ['('] = 1, [')'] = 1,
    ['*'] = 1, ['+'] = 1, [','] = 1, [';'] = 1, ['='] = 1, [':'] = 1,  ['@'] = 1, ['/'] = 1,
};

/*
 * Compose the verdict's rewrites, in rule order, on the normalised path.
 * The path is built right-aligned at the end of out so that prefixes are
 * prepended and stripped without moving it: [*ret_p, out + cap). lo is the
 * lowest byte it may use. Returns 1 when a rewrite applied, 0 when none
 * did, -1 when it does not fit.
 */
static int rewrite_path(const struct cfg_rules *rs, const struct http_rules_verdict *v,
                        struct core_str np, char *out, size_t cap, size_t lo, const char **ret_p)
{
    char *end = out + cap, *cur = NULL;
    int any = 0;

    if (cap < lo)
        return -1;

    EACH_APPLIED(i, v)
    {
        const struct cfg_rewrite *rw = &rs->v[i].rewrite;
        size_t al = rw->len;

        if (rw->kind == CFG_RW_NONE || !al || rw->arg[0] != '/')
            continue;
        if (!cur) {
            if (np.len > cap - lo)
                return -1;
            cur = end - np.len;
            memcpy(cur, np.p, np.len);
        }
        if (rw->kind != CFG_RW_STRIP_PREFIX)
            any = 1;
        switch (rw->kind) {
        case CFG_RW_STRIP_PREFIX: {
            size_t pl = al > 1 && rw->arg[al - 1] == '/' ? al - 1 : al;
            size_t cl = (size_t)(end - cur);

            /* "/blog" strips "/blog" and "/blog/x", never "/blogs" */
            if (pl <= 1 || cl < pl ||
                (cfg_rule_kind_guards(rs->v[i].kind) ? strncasecmp : strncmp)(cur, rw->arg, pl) ||
                (cl > pl && cur[pl] != '/'))
                break; /* no change: no rewrite, so far */
            any = 1;
            cur += pl;
            if (cur == end)
                *--cur = '/';
            break;
        }
        case CFG_RW_ADD_PREFIX: {
            /* "/v2" and "/v2/" both make "/x" "/v2/x" */
            size_t pl = rw->arg[al - 1] == '/' ? al - 1 : al;

            if (pl > (size_t)(cur - out) - lo)
                return -1;
            cur -= pl;
            memcpy(cur, rw->arg, pl);
            break;
        }
        case CFG_RW_PATH:
            if (al > cap - lo)
                return -1;
            cur = end - al;
            memcpy(cur, rw->arg, al);
            break;
        default:
            break;
        }
    }
    *ret_p = cur;
    return any;
}

long http_rules_req_head(const struct cfg_rules *rs, const struct http_rules_verdict *v,
                         const struct http_rules_req *r, const char *fwd_head, size_t fwd_len,
                         char *out, size_t cap)
{
    struct obuf b = {out, 0, cap, 0};
    struct http_rules_plan pl;
    const char *eol, *sp1, *sp2, *p, *end = fwd_head + fwd_len;
    const char *path = NULL;
    int rewritten = 0;

    eol = memmem(fwd_head, fwd_len, "\r\n", 2);
    if (!eol || fwd_len < 4 || memcmp(end - 4, "\r\n\r\n", 4) != 0)
        return -1;
    sp1 = memchr(fwd_head, ' ', (size_t)(eol - fwd_head));
    sp2 = memrchr(fwd_head, ' ', (size_t)(eol - fwd_head));
    if (!sp1 || sp2 <= sp1)
        return -1;

    /* the request line: a rewrite sends the new path, encoded, and the query as it came */
    if (r->npath.len && r->npath.p[0] == '/') {
        size_t method = (size_t)(sp1 - fwd_head) + 1;

        rewritten = rewrite_path(rs, v, r->npath, out, cap, method, &path);
        if (rewritten < 0)
            return -1;
    }
    if (rewritten) {
        const char *q = memchr(sp1 + 1, '?', (size_t)(sp2 - sp1 - 1));
        size_t plen = (size_t)(out + cap - path), elen = 0;

        for (size_t i = 0; i < plen; i++)
            elen += path_ok[(unsigned char)path[i]] ? 1 : 3;
        /* the encoded path is written left of where it is read from, never over it */
        if ((size_t)(sp1 - fwd_head) + 1 + elen > (size_t)(path - out))
            return -1;
        ob_put(&b, fwd_head, (size_t)(sp1 - fwd_head) + 1);
        for (size_t i = 0; i < plen; i++) {
            unsigned char c = (unsigned char)path[i];

            if (path_ok[c]) {
                b.p[b.len++] = (char)c;
            } else {
                static const char hex[] = "0123456789ABCDEF";

                b.p[b.len++] = '%';
                b.p[b.len++] = hex[c >> 4];
                b.p[b.len++] = hex[c & 15];
            }
        }
        if (q)
            ob_put(&b, q, (size_t)(sp2 - q));
        ob_put(&b, sp2, (size_t)(eol + 2 - sp2));
    } else {
        ob_put(&b, fwd_head, (size_t)(eol + 2 - fwd_head));
    }

    /* the fields: those a set or remove names go, the others stay in their order */
    plan_build(rs, v, 0, &pl);
    for (p = eol + 2; p < end - 2;) {
        /* http_fwd_request wrote each field as "Name: value\r\n": LF ends it */
        const char *lf = memchr(p, '\n', (size_t)(end - p)), *colon;

        if (!lf)
            return -1;
        colon = memchr(p, ':', (size_t)(lf - p));
        if (!colon || !plan_drops(rs, &pl, p, (size_t)(colon - p)))
            ob_put(&b, p, (size_t)(lf + 1 - p));
        p = lf + 1;
    }
    plan_adds(&b, rs, v, &pl, 0, r);
    OB_LIT(&b, "\r\n");
    return b.overflow ? -1 : (long)b.len;
}

/* ---- answers ------------------------------------------------------------ */

static void put_status(struct obuf *b, int status)
{
    char s[4];

    if (status < 100 || status > 999)
        status = 500;
    s[0] = (char)('0' + status / 100);
    s[1] = (char)('0' + status / 10 % 10);
    s[2] = (char)('0' + status % 10);
    s[3] = ' ';
    OB_LIT(b, "HTTP/1.1 ");
    ob_put(b, s, 4);
    const char *reason = http_fwd_reason(status);
    ob_put(b, reason, strlen(reason));
    OB_LIT(b, "\r\n");
}

static void put_uint(struct obuf *b, size_t n)
{
    char d[24];
    size_t i = sizeof(d);

    do {
        d[--i] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    ob_put(b, d + i, sizeof(d) - i);
}

#define DROPS(rs, pl, lit) plan_drops((rs), (pl), (lit), sizeof(lit) - 1)

long http_rules_answer_head(const struct cfg_rules *rs, const struct http_rules_verdict *v,
                            const struct http_rules_req *r, int status, const struct cfg_page *body,
                            int keep_alive, char *out, size_t cap)
{
    struct obuf b = {out, 0, cap, 0};
    const struct cfg_erule *e = NULL;
    struct http_rules_plan pl = {0};
    int edits = rs && v && v->any_resp;

    if (rs && v && v->answer >= 0 && (size_t)v->answer < rs->n)
        e = &rs->v[v->answer];
    if (edits)
        plan_build(rs, v, 1, &pl);

    put_status(&b, status);
    if (e && (e->kind == CFG_RK_REDIRECT || e->kind == CFG_RK_REDIRECT_MAP) &&
        !DROPS(rs, &pl, "Location")) {
        OB_LIT(&b, "Location: ");
        if (e->kind == CFG_RK_REDIRECT) {
            expand(&b, &e->location, r);
        } else if (v->map_hit >= 0 && (uint32_t)v->map_hit < e->map.from.n) {
            uint32_t k = (uint32_t)v->map_hit;

            ob_put(&b, e->map.to[k], e->map.to_len[k]);
            /* the query is kept unless the target has its own */
            if (r->query.len && !e->map.to_has_query[k]) {
                OB_LIT(&b, "?");
                ob_str(&b, r->query);
            }
        }
        OB_LIT(&b, "\r\n");
    }
    /* RFC 9110 8.6: no Content-Length in a 204; a 304's would describe the 200 */
    if (status != 204 && status != 304) {
        if (body && body->content_type && !DROPS(rs, &pl, "Content-Type")) {
            OB_LIT(&b, "Content-Type: ");
            ob_put(&b, body->content_type, strlen(body->content_type));
            OB_LIT(&b, "\r\n");
        }
        OB_LIT(&b, "Content-Length: ");
        put_uint(&b, body ? body->len : 0);
        OB_LIT(&b, "\r\n");
    }
    if (e && (e->kind == CFG_RK_RATE_LIMIT || (e->kind == CFG_RK_BASIC_AUTH && status == 429)) &&
        !DROPS(rs, &pl, "Retry-After")) {
        OB_LIT(&b, "Retry-After: ");
        put_uint(&b, v->retry_after ? v->retry_after : 1);
        OB_LIT(&b, "\r\n");
    }
    if (e && e->kind == CFG_RK_BASIC_AUTH && status == 401 && !DROPS(rs, &pl, "WWW-Authenticate")) {
        OB_LIT(&b, "WWW-Authenticate: Basic realm=\"");
        ob_put(&b, e->auth.realm, e->auth.realm_len);
        OB_LIT(&b, "\", charset=\"UTF-8\"\r\n");
    }
    if (e && e->kind == CFG_RK_RESPOND)
        for (size_t j = 0; j < e->answer_hdrs.n; j++) {
            const struct cfg_hedit *h = &e->answer_hdrs.v[j];

            if (h->op == CFG_HE_REMOVE || plan_drops(rs, &pl, h->name, h->name_len))
                continue;
            ob_put(&b, h->name, h->name_len);
            OB_LIT(&b, ": ");
            expand(&b, &h->value, r);
            OB_LIT(&b, "\r\n");
        }
    if (edits)
        plan_adds(&b, rs, v, &pl, 1, r);
    if (keep_alive)
        OB_LIT(&b, "Connection: keep-alive\r\n\r\n");
    else
        OB_LIT(&b, "Connection: close\r\n\r\n");
    return b.overflow ? -1 : (long)b.len;
}
