/*
 * http/rules.c and cfg/path.c: edge rules on the request path, without the
 * binary. Each table is requests (as the client sent them) against a rule
 * set, and what the rules make of them: the normalised path, which rule
 * matches, the head the origin gets, the head the client gets. The rule
 * sets are built here the way cfg/rules.c compiles proxy.json (hash sets,
 * split templates, edit name ids), so that each test shows the model it
 * runs on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "cfg/cfg.h"
#include "cfg/rules.h"
#include "http/forward.h"
#include "http/msg.h"
#include "http/rules.h"

#define EACH(c, table)                                                                             \
    for (const __typeof__(table[0]) *c = table; c < table + sizeof(table) / sizeof(table[0]); c++)

/* ---- normalisation (cfg/path.c) ------------------------------------------ */

struct norm_case {
    const char *in;
    const char *want; /* NULL: cannot be normalised safely (400) */
};

static const struct norm_case norm[] = {
    {"/", "/"},
    {"/a/b", "/a/b"},
    {"/A/b", "/A/b"}, /* paths are case-sensitive */
    /* the bypass attempts of issue 22 */
    {"/%61dmin/x", "/admin/x"},
    {"/%61%64%6D%69%6e/x", "/admin/x"},
    {"//admin/x", "/admin/x"},
    {"/x/../admin/y", "/admin/y"},
    {"/admin/./x", "/admin/x"},
    {"/admin%2fx", "/admin/x"},
    {"/admin%2Fx", "/admin/x"},
    {"/admin%2f%2fx", "/admin/x"},
    {"/a/%2e%2e/admin", "/admin"},
    {"/a/.%2e/admin", "/admin"},
    {"/a/%2e/admin", "/a/admin"},
    {"/%252e%252e/", "/%2e%2e/"}, /* decoded once only */
    {"/%2561dmin", "/%61dmin"},
    /* dot segments and slashes (RFC 3986 5.2.4) */
    {"/a/.", "/a/"},
    {"/a/..", "/"},
    {"/a/b/..", "/a/"},
    {"/a/b/c/../../d", "/a/d"},
    {"/.", "/"},
    {"/./", "/"},
    {"/./a", "/a"},
    {"///", "/"},
    {"/a//", "/a/"},
    {"/a/", "/a/"},
    {"/a///b//", "/a/b/"},
    {"/a/./../b", "/b"},
    {"/%2e", "/"},
    {"/a/%2e%2e", "/"},
    {"/...", "/..."},
    {"/.a/..b/a./b..", "/.a/..b/a./b.."},
    {"/a/.../b", "/a/.../b"},
    /* bytes that are not ASCII, and encoded ones that are not special */
    {"/caf\xc3\xa9", "/caf\xc3\xa9"},
    {"/caf%C3%A9", "/caf\xc3\xa9"},
    {"/%ff%80", "/\xff\x80"},
    {"/a%20b", "/a b"},
    {"/a%3fb", "/a?b"},
    {"/a%25", "/a%"},
    {"/%0a", "/\n"},
    /* unsafe: above the root, NUL, broken escapes, not a path */
    {"/..", NULL},
    {"/../a", NULL},
    {"/a/../..", NULL},
    {"/a/../../b", NULL},
    {"/%2e%2e/", NULL},
    {"/%2E%2E/", NULL},
    {"/.%2e", NULL},
    {"/a%2f..%2f..%2fb", NULL},
    {"/%00", NULL},
    {"/a%00b", NULL},
    {"/%0", NULL},
    {"/%", NULL},
    {"/a%", NULL},
    {"/%zz", NULL},
    {"/%g0", NULL},
    {"/%0g", NULL},
    {"/a%2", NULL},
    {"", NULL},
    {"a/b", NULL},
    {"*", NULL},
    {"%2fa", NULL},
};

Test(http_rules, normalise)
{
    EACH(c, norm)
    {
        char out[256];
        size_t n = strlen(c->in);
        long r = cfg_path_normalise(c->in, n, out, n);

        if (!c->want) {
            cr_assert_eq(r, -1, "%s: normalised to %.*s", c->in, (int)(r > 0 ? r : 0), out);
            continue;
        }
        cr_assert(r == (long)strlen(c->want) && !memcmp(out, c->want, (size_t)r),
                  "%s:\ngot  %.*s\nwant %s", c->in, (int)(r > 0 ? r : 0), out, c->want);
    }
}

/* n bytes of room always suffice; less fails, never writes past cap. */
Test(http_rules, normalise_room)
{
    char out[16];

    memset(out, 'Z', sizeof(out));
    cr_assert_eq(cfg_path_normalise("/abcdef", 7, out, 4), -1);
    cr_assert_eq(out[4], 'Z', "nothing past cap");
    cr_assert_eq(cfg_path_normalise("/abcdef", 7, out, 7), 7);
    cr_assert_eq(cfg_path_normalise("/a//b", 5, out, 4), 4, "the result fits");
    cr_assert_eq(cfg_path_normalise("/", 1, out, 0), -1);
}

/* ---- building a rule set as cfg/rules.c compiles it ---------------------- */

static struct cfg_rules rs;
static struct cfg *loaded; /* rs came from the loader: its rules are cfg_free()'s */

static void hedits_release(struct cfg_hedits *ed)
{
    for (size_t j = 0; j < ed->n; j++)
        free(ed->v[j].value.parts);
    free(ed->v);
}

static void match_release(struct cfg_match *m)
{
    if (!m)
        return;
    cfg_hset_free(&m->hosts);
    cfg_hset_free(&m->host_suffixes);
    cfg_hset_free(&m->paths);
    cfg_hset_free(&m->path_prefixes);
    cfg_hset_free(&m->methods);
    free(m->client_ip.v);
    for (size_t i = 0; i < m->nheaders; i++)
        cfg_hset_free(&m->headers[i].values);
    free(m->headers);
    match_release(m->not );
    free(m);
}

/* Free a rule set built here (the strings in it are the tests' literals). */
static void rs_release(void)
{
    if (loaded)
        return;
    for (size_t i = 0; i < rs.n; i++) {
        struct cfg_erule *e = &rs.v[i];

        match_release(e->match);
        hedits_release(&e->req_hdrs);
        hedits_release(&e->resp_hdrs);
        hedits_release(&e->answer_hdrs);
        free(e->location.parts);
        cfg_hset_free(&e->map.from);
        free(e->map.to);
        free(e->map.to_len);
        free(e->map.to_has_query);
    }
    free(rs.v);
    cfg_hset_free(&rs.edit_names);
    memset(&rs, 0, sizeof(rs));
}

TestSuite(http_rules, .fini = rs_release);

static void rs_reset(void)
{
    rs_release();
    cfg_hset_init(&rs.edit_names, 1);
}

static struct cfg_erule *rule(const char *label)
{
    struct cfg_erule *e;

    rs.v = realloc(rs.v, (rs.n + 1) * sizeof(*rs.v));
    cr_assert(rs.v);
    e = &rs.v[rs.n++];
    memset(e, 0, sizeof(*e));
    e->label = (char *)label;
    return e;
}

/* A template split into literal and placeholder parts, as the loader does. */
static struct cfg_tpl tpl(const char *text)
{
    static const char *const names[CFG_TV_COUNT] = {"",      "scheme", "host",   "path",
                                                    "query", "uri",    "method", "client_ip"};
    struct cfg_tpl t = {.parts = calloc(strlen(text) + 1, sizeof(struct cfg_tpart)),
                        .text = (char *)text};
    const char *p = text;

    while (*p) {
        int var = 0;

        if (*p == '{')
            for (int v = 1; v < CFG_TV_COUNT; v++) {
                size_t l = strlen(names[v]);

                if (!strncmp(p + 1, names[v], l) && p[1 + l] == '}') {
                    t.parts[t.nparts++] = (struct cfg_tpart){.var = (uint8_t)v};
                    p += l + 2;
                    var = 1;
                    break;
                }
            }
        if (var)
            continue;
        /* a literal run up to the next '{' (a lone '{' is literal) */
        const char *s = p++;
        while (*p && *p != '{')
            p++;
        t.parts[t.nparts++] =
            (struct cfg_tpart){.var = CFG_TV_LITERAL, .len = (uint32_t)(p - s), .lit = s};
        t.lit_len += (uint32_t)(p - s);
    }
    return t;
}

static void edit(struct cfg_hedits *ed, int op, const char *name, const char *value)
{
    struct cfg_hedit *h;
    char folded[CFG_MAX_HEADER_NAME];
    long id;

    /* kept folded, as cfg/rules.c keeps them */
    cr_assert_leq(strlen(name), sizeof(folded));
    core_name_fold(folded, name, strlen(name));
    id = cfg_hset_add(&rs.edit_names, folded, strlen(name), NULL);

    cr_assert_geq(id, 0);
    ed->v = realloc(ed->v, (ed->n + 1) * sizeof(*ed->v));
    cr_assert(ed->v);
    h = &ed->v[ed->n++];
    *h = (struct cfg_hedit){
        .op = (uint8_t)op, .name_id = (uint32_t)id, .name = (char *)name, .name_len = strlen(name)};
    if (value)
        h->value = tpl(value);
}

static struct cfg_match *mnew(void)
{
    struct cfg_match *m = calloc(1, sizeof(*m));

    cr_assert(m);
    cfg_hset_init(&m->hosts, 1);
    cfg_hset_init(&m->host_suffixes, 1);
    cfg_hset_init(&m->paths, 1);
    cfg_hset_init(&m->path_prefixes, 1);
    cfg_hset_init(&m->methods, 1);
    return m;
}

static struct cfg_match *match_of(struct cfg_erule *e)
{
    if (!e->match)
        e->match = mnew();
    return e->match;
}

/*
 * Paths as written, as the loader builds them for a rule that does not
 * guard (redirects, pages, rewrites, edits: cfg_rule_kind_guards()); mnew()
 * builds them without case, as for deny, rate_limit and basic_auth.
 */
static struct cfg_match *m_exact(struct cfg_match *m)
{
    cr_assert(!m->paths.n && !m->path_prefixes.n);
    cfg_hset_init(&m->paths, 0);
    cfg_hset_init(&m->path_prefixes, 0);
    return m;
}

static void m_host(struct cfg_match *m, const char *h)
{
    m->has |= CFG_M_HOST;
    if (!strncmp(h, "*.", 2))
        cr_assert_geq(cfg_hset_add(&m->host_suffixes, h + 1, strlen(h + 1), NULL), 0);
    else
        cr_assert_geq(cfg_hset_add(&m->hosts, h, strlen(h), NULL), 0);
}

/* "/x" exact, "/x/ *" (written without the space) a prefix; names_healthz as the loader sets it. */
static void m_path(struct cfg_match *m, const char *p)
{
    size_t n = strlen(p);
    char norm_p[256];
    long r;

    m->has |= CFG_M_PATH;
    if (n >= 2 && !strcmp(p + n - 2, "/*")) {
        r = cfg_path_normalise(p, n - 1, norm_p, sizeof(norm_p));
        cr_assert_gt(r, 0);
        cr_assert_geq(cfg_hset_add(&m->path_prefixes, norm_p, (size_t)r, NULL), 0);
        if (r > 1 && !strncmp(CFG_HEALTHZ_PATH, norm_p, (size_t)r))
            m->names_healthz = 1;
    } else {
        r = cfg_path_normalise(p, n, norm_p, sizeof(norm_p));
        cr_assert_gt(r, 0);
        cr_assert_geq(cfg_hset_add(&m->paths, norm_p, (size_t)r, NULL), 0);
        if ((size_t)r == strlen(CFG_HEALTHZ_PATH) && !memcmp(norm_p, CFG_HEALTHZ_PATH, (size_t)r))
            m->names_healthz = 1;
    }
}

static void m_method(struct cfg_match *m, const char *t)
{
    m->has |= CFG_M_METHOD;
    cr_assert_geq(cfg_hset_add(&m->methods, t, strlen(t), NULL), 0);
}

static void m_scheme(struct cfg_match *m, const char *s)
{
    m->has |= CFG_M_SCHEME;
    m->schemes |= !strcmp(s, "https") ? 2 : 1;
}

/* One range [first, last]; add them in ascending order. */
static void m_ip(struct cfg_match *m, const char *first, const char *last)
{
    struct cfg_iprange r;

    m->has |= CFG_M_CLIENT_IP;
    cr_assert_eq(cfg_ip_parse(first, strlen(first), &r.first), 0);
    cr_assert_eq(cfg_ip_parse(last, strlen(last), &r.last), 0);
    m->client_ip.v = realloc(m->client_ip.v, (m->client_ip.n + 1) * sizeof(r));
    m->client_ip.v[m->client_ip.n++] = r;
}

/* values: NULL-terminated; test CFG_HT_PRESENT / CFG_HT_ABSENT take none */
static void m_header(struct cfg_match *m, const char *name, int test, const char *const *values)
{
    struct cfg_hdr_match *h;

    m->has |= CFG_M_HEADER;
    m->headers = realloc(m->headers, (m->nheaders + 1) * sizeof(*m->headers));
    h = &m->headers[m->nheaders++];
    *h = (struct cfg_hdr_match){
        .name = (char *)name, .name_len = strlen(name), .test = (uint8_t)test};
    cfg_hset_init(&h->values, 0);
    for (; values && *values; values++)
        cr_assert_geq(cfg_hset_add(&h->values, *values, strlen(*values), NULL), 0);
}

static void deny(struct cfg_erule *e, int status)
{
    e->kind = CFG_RK_DENY;
    e->status = (uint16_t)status;
}

static void map_add(struct cfg_erule *e, const char *from, const char *to)
{
    long k = cfg_hset_add(&e->map.from, from, strlen(from), NULL);

    cr_assert_geq(k, 0);
    e->kind = CFG_RK_REDIRECT_MAP;
    e->map.to = realloc(e->map.to, (size_t)(k + 1) * sizeof(char *));
    e->map.to_len = realloc(e->map.to_len, (size_t)(k + 1) * sizeof(uint32_t));
    e->map.to_has_query = realloc(e->map.to_has_query, (size_t)(k + 1));
    e->map.to[k] = (char *)to;
    e->map.to_len[k] = (uint32_t)strlen(to);
    e->map.to_has_query[k] = strchr(to, '?') != NULL;
}

/* ---- requests ------------------------------------------------------------ */

static struct http_msg msg;
static struct core_hdr hdrs[64];
static char fwd[4096];
static long fwd_len;
static char scratch[1024];
static struct http_rules_req rq;
static struct http_rules_verdict vd;

static const struct http_fwd_policy pol = {
    .max_uri_bytes = 1000, .max_body_bytes = 0, .default_host = "next-hop"};

/*
 * A request as the proxy takes it: parsed, checked and forwarded
 * (http/forward.c), then seen by the rules with peer as the socket's
 * address. Returns http_rules_req_init()'s result.
 */
static int req(const char *head, const char *peer)
{
    struct http_fwd_req f;

    memset(&msg, 0, sizeof(msg));
    cr_assert_eq(http_msg_head(&msg, HTTP_REQUEST, head, strlen(head), hdrs, 64), 0,
                 "does not parse: %s", head);
    fwd_len = http_fwd_request(&msg, &pol, fwd, sizeof(fwd), &f);
    cr_assert_gt(fwd_len, 0, "refused (%ld): %s", -fwd_len, head);
    return http_rules_req_init(&rq, &msg, f.host_sent, (struct core_str){peer, strlen(peer)},
                               scratch, sizeof(scratch));
}

/* Evaluate rs for a request: the rule that answers, or -1. */
static int answer_of(const char *head, const char *peer)
{
    cr_assert_eq(req(head, peer), 0, "400: %s", head);
    http_rules_eval(&rs, &rq, &vd);
    return vd.answer;
}

#define GET(target, fields) "GET " target " HTTP/1.1\r\nHost: example.com\r\n" fields "\r\n"

static void assert_str(const char *what, const char *got, long n, const char *want)
{
    cr_assert(n == (long)strlen(want) && !memcmp(got, want, (size_t)n), "%s:\ngot  %.*s\nwant %s",
              what, (int)(n > 0 ? n : 0), got, want);
}

Test(http_rules, req_init)
{
    cr_assert_eq(req("GET /a%2Fb//c?x=1&y HTTP/1.1\r\nHost: Ex.COM:8080\r\n\r\n", "10.0.0.1"), 0);
    assert_str("host", rq.host.p, (long)rq.host.len, "Ex.COM");
    assert_str("path", rq.path.p, (long)rq.path.len, "/a%2Fb//c");
    assert_str("query", rq.query.p, (long)rq.query.len, "x=1&y");
    assert_str("npath", rq.npath.p, (long)rq.npath.len, "/a/b/c");
    assert_str("client_ip", rq.client_ip.p, (long)rq.client_ip.len, "10.0.0.1");
    cr_assert(http_rules_req_ip(&rq, &(struct cfg_ip){0}) == 0 && !rq.https);

    cr_assert_eq(req("GET / HTTP/1.1\r\nHost: [::1]:80\r\nX-Forwarded-Proto: HTTPS\r\n\r\n", "::1"),
                 0);
    assert_str("IPv6 host", rq.host.p, (long)rq.host.len, "[::1]");
    cr_assert(!rq.query.p, "no '?': no query");
    cr_assert(rq.https, "X-Forwarded-Proto is compared case-insensitively");

    cr_assert_eq(req("GET http://b.example:81?q HTTP/1.1\r\nHost: a\r\n\r\n", "10.0.0.1"), 0);
    assert_str("absolute-form host", rq.host.p, (long)rq.host.len, "b.example");
    assert_str("absolute-form path", rq.path.p, (long)rq.path.len, "/");
    assert_str("absolute-form query", rq.query.p, (long)rq.query.len, "q");

    cr_assert_eq(req("GET https://b.example/x//y? HTTP/1.1\r\nHost: a\r\n\r\n", "10.0.0.1"), 0);
    assert_str("absolute-form npath", rq.npath.p, (long)rq.npath.len, "/x/y");
    cr_assert(rq.query.p && !rq.query.len, "'?' with nothing after it: an empty query");

    cr_assert_eq(req("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", "10.0.0.1"), 0);
    assert_str("OPTIONS *", rq.npath.p, (long)rq.npath.len, "*");

    cr_assert_eq(req("GET / HTTP/1.1\r\nHost: a.\r\nTrue-Client-IP:  203.0.113.9 \r\n"
                     "X-Forwarded-For: 198.51.100.1\r\n\r\n",
                     "10.0.0.1"),
                 0);
    assert_str("trailing dot", rq.host.p, (long)rq.host.len, "a");
    assert_str("True-Client-IP", rq.client_ip.p, (long)rq.client_ip.len, "203.0.113.9");
    cr_assert(http_rules_req_ip(&rq, &(struct cfg_ip){0}) == 0);

    cr_assert_eq(req("GET / HTTP/1.1\r\nHost: a\r\nTrue-Client-IP: nonsense\r\n\r\n", "10.0.0.1"),
                 0);
    cr_assert(http_rules_req_ip(&rq, &(struct cfg_ip){0}) < 0,
              "an unparseable True-Client-IP matches no client_ip");

    cr_assert_eq(req(GET("/%2e%2e/etc/passwd", ""), "10.0.0.1"), -400);
    cr_assert_eq(req(GET("/a%00", ""), "10.0.0.1"), -400);
    cr_assert_eq(req(GET("/a%zz", ""), "10.0.0.1"), -400);
}

/* ---- matching, one matcher at a time -------------------------------------- */

struct match_case {
    const char *name;
    const char *head;
    const char *peer; /* NULL: 10.0.0.1 */
    int matches;
};

static void check_matches(const struct match_case *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int a = answer_of(c[i].head, c[i].peer ? c[i].peer : "10.0.0.1");

        cr_assert_eq(a == 0, c[i].matches, "%s: %s", c[i].name,
                     c[i].matches ? "does not match" : "matches");
    }
}

#define CHECK_MATCHES(t) check_matches((t), sizeof(t) / sizeof((t)[0]))

Test(http_rules, match_host)
{
    static const struct match_case cases[] = {
        {"exact", GET("/", ""), NULL, 1},
        {"case-insensitive", "GET / HTTP/1.1\r\nHost: EXAMPLE.Com\r\n\r\n", NULL, 1},
        {"port ignored", "GET / HTTP/1.1\r\nHost: example.com:8443\r\n\r\n", NULL, 1},
        {"trailing dot", "GET / HTTP/1.1\r\nHost: example.com.\r\n\r\n", NULL, 1},
        {"a subdomain of an exact host", "GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n", NULL,
         0},
        {"another host", "GET / HTTP/1.1\r\nHost: example.net\r\n\r\n", NULL, 0},
        {"a longer name", "GET / HTTP/1.1\r\nHost: myexample.com\r\n\r\n", NULL, 0},
        {"wildcard: a subdomain", "GET / HTTP/1.1\r\nHost: a.example.org\r\n\r\n", NULL, 1},
        {"wildcard: deeper", "GET / HTTP/1.1\r\nHost: a.b.Example.ORG:80\r\n\r\n", NULL, 1},
        {"wildcard: not the domain itself", "GET / HTTP/1.1\r\nHost: example.org\r\n\r\n", NULL, 0},
        {"wildcard: not a name ending alike", "GET / HTTP/1.1\r\nHost: badexample.org\r\n\r\n",
         NULL, 0},
        {"absolute-form: its authority, not Host",
         "GET http://example.com/ HTTP/1.1\r\nHost: other\r\n\r\n", NULL, 1},
        {"absolute-form: its authority wins over a matching Host",
         "GET http://other/ HTTP/1.1\r\nHost: example.com\r\n\r\n", NULL, 0},
        {"IPv6 literal", "GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n", NULL, 1},
        {"HTTP/1.0 without Host: the default host", "GET / HTTP/1.0\r\n\r\n", NULL, 0},
    };

    rs_reset();
    struct cfg_match *m = match_of(rule("host"));
    m_host(m, "example.com");
    m_host(m, "*.example.org");
    m_host(m, "[2001:db8::1]");
    deny(&rs.v[0], 403);
    CHECK_MATCHES(cases);
}

Test(http_rules, match_path)
{
    static const struct match_case cases[] = {
        {"exact", GET("/admin", ""), NULL, 1},
        {"prefix: the folder", GET("/admin/", ""), NULL, 1},
        {"prefix: inside", GET("/admin/x/y", ""), NULL, 1},
        {"query ignored", GET("/admin?x=1", ""), NULL, 1},
        {"encoded letter", GET("/%61dmin/x", ""), NULL, 1},
        {"encoded exact", GET("/%61dmin", ""), NULL, 1},
        {"double slash", GET("//admin/x", ""), NULL, 1},
        {"encoded slash", GET("/admin%2fx", ""), NULL, 1},
        {"absolute-form", "GET http://example.com/admin/x HTTP/1.1\r\nHost: a\r\n\r\n", NULL, 1},
        {"double-encoded is not decoded twice", GET("/%2561dmin/x", ""), NULL, 0},
        {"any case (Express, ASP.NET and IIS route without it)", GET("/Admin/x", ""), NULL, 1},
        {"any case, exact", GET("/ADMIN", ""), NULL, 1},
        {"any case, encoded", GET("/%41dmin/x", ""), NULL, 1},
        {"a longer segment", GET("/administrator", ""), NULL, 0},
        {"a shorter one", GET("/adm", ""), NULL, 0},
        {"root", GET("/", ""), NULL, 0},
        {"elsewhere", GET("/public/admin", ""), NULL, 0},
        {"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n", NULL, 0},
    };

    rs_reset();
    struct cfg_match *m = match_of(rule("admin"));
    m_path(m, "/admin");
    m_path(m, "/admin/*");
    deny(&rs.v[0], 403);
    CHECK_MATCHES(cases);

    /*
     * Dot segments, raw or encoded, also before a ';' parameter, and an
     * encoded backslash: origins that route on the raw path (Express) or
     * read "%5c" as '/' (IIS) would serve what the rules did not match
     * ("/admin/../public" is /admin's to Express): refused before any rule.
     */
    static const char *const refused[] = {
        "/x/../admin/y", "/admin/./x",       "/./admin",   "/x/%2e%2e/admin", "/admin/.",
        "/admin/..",     "/admin/../public", "/a/.%2e/b",  "/a/%2E/b",        "/..;/admin",
        "/admin/..;x/y", "/.;/admin",        "/admin%5cx", "/admin%5Cx",      "/%2e",
        "/a/.;x",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        char head[256];

        snprintf(head, sizeof(head), "GET %s HTTP/1.1\r\nHost: example.com\r\n\r\n", refused[i]);
        cr_assert_eq(req(head, "10.0.0.1"), -400, "%s", refused[i]);
    }
    static const char *const kept[] = {"/a/.../b", "/.well-known/x", "/a/..b/c",
                                       "/a/b../c", "/a;x/b",         "/%252e%252e/"};
    for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
        char head[256];

        snprintf(head, sizeof(head), "GET %s HTTP/1.1\r\nHost: example.com\r\n\r\n", kept[i]);
        cr_assert_eq(req(head, "10.0.0.1"), 0, "%s", kept[i]);
    }
}

/*
 * Past the first 32 slashes, prefixes are probed from the same running hash
 * (no prefix is hashed anew): a prefix deeper than that still matches, and
 * a long path with thousands of slashes is one pass per rule.
 */
Test(http_rules, match_path_deep_prefixes)
{
    static char deep[512], target[20000], req_deep[600], req_long[20100], req_miss[600];
    size_t n = 0;

    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(deep + n, sizeof(deep) - n, "/d%d", i);
    rs_reset();
    {
        char pat[520];

        snprintf(pat, sizeof(pat), "%s/*", deep);
        m_path(match_of(rule("deep")), pat);
    }
    deny(&rs.v[0], 403);
    snprintf(req_deep, sizeof(req_deep), "GET %s/x HTTP/1.1\r\nHost: a\r\n\r\n", deep);
    cr_assert_eq(answer_of(req_deep, "10.0.0.1"), 0, "a prefix 40 segments deep");
    snprintf(req_miss, sizeof(req_miss), "GET %sx/y HTTP/1.1\r\nHost: a\r\n\r\n", deep);
    cr_assert_eq(answer_of(req_miss, "10.0.0.1"), -1, "its last segment longer");
    n = 0;
    while (n + 2 < 990)
        n += (size_t)snprintf(target + n, sizeof(target) - n, "/a");
    snprintf(req_long, sizeof(req_long), "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", target);
    cr_assert_eq(answer_of(req_long, "10.0.0.1"), -1, "494 slashes, no match");
}

/* Wildcard hosts are probed at the rightmost 32 dots; a host longer than a DNS name has none. */
Test(http_rules, match_host_many_labels)
{
    static char h[400], req[500];
    size_t n = 0;

    rs_reset();
    m_host(match_of(rule("wild")), "*.example.org");
    deny(&rs.v[0], 403);
    for (int i = 0; i < 60; i++)
        n += (size_t)snprintf(h + n, sizeof(h) - n, "a.");
    snprintf(h + n, sizeof(h) - n, "example.org");
    snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", h);
    cr_assert_eq(answer_of(req, "10.0.0.1"), 0, "60 labels under the wildcard");
    n = 0;
    for (int i = 0; i < 130; i++)
        n += (size_t)snprintf(h + n, sizeof(h) - n, "ab.");
    snprintf(h + n, sizeof(h) - n, "example.org");
    snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", h);
    cr_assert_eq(answer_of(req, "10.0.0.1"), -1, "over 253 bytes: no DNS name, no subdomain");
}

Test(http_rules, match_path_everything)
{
    static const struct match_case cases[] = {
        {"root", GET("/", ""), NULL, 1},
        {"any path", GET("/a/b", ""), NULL, 1},
        {"OPTIONS *: no path rule matches it", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", NULL, 0},
    };

    rs_reset();
    m_path(match_of(rule("all")), "/*");
    deny(&rs.v[0], 403);
    CHECK_MATCHES(cases);
}

Test(http_rules, match_method)
{
    static const struct match_case cases[] = {
        {"GET", GET("/", ""), NULL, 1},
        {"POST", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", NULL, 1},
        {"an extension method", "PURGE / HTTP/1.1\r\nHost: a\r\n\r\n", NULL, 1},
        {"HEAD is not GET", "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", NULL, 0},
        {"DELETE", "DELETE / HTTP/1.1\r\nHost: a\r\n\r\n", NULL, 0},
        {"an extension method in another case: BAN to frameworks that upper-case it",
         "ban / HTTP/1.1\r\nHost: a\r\n\r\n", NULL, 1},
        {"and in mixed case", "Ban / HTTP/1.1\r\nHost: a\r\n\r\n", NULL, 1},
    };

    rs_reset();
    struct cfg_match *m = match_of(rule("methods"));
    m_method(m, "GET");
    m_method(m, "POST");
    m_method(m, "PURGE");
    m_method(m, "BAN");
    deny(&rs.v[0], 405);
    CHECK_MATCHES(cases);
}

Test(http_rules, match_scheme)
{
    static const struct match_case cases[] = {
        {"no X-Forwarded-Proto: http", GET("/", ""), NULL, 1},
        {"X-Forwarded-Proto: http", GET("/", "X-Forwarded-Proto: http\r\n"), NULL, 1},
        {"X-Forwarded-Proto: https", GET("/", "X-Forwarded-Proto: https\r\n"), NULL, 0},
        {"X-Forwarded-Proto: HTTPS", GET("/", "X-Forwarded-Proto: HTTPS\r\n"), NULL, 0},
        {"X-Forwarded-Proto: something else", GET("/", "X-Forwarded-Proto: wss\r\n"), NULL, 1},
        {"an absolute-form https target is not what the platform says",
         "GET https://example.com/ HTTP/1.1\r\nHost: a\r\n\r\n", NULL, 1},
    };

    rs_reset();
    m_scheme(match_of(rule("to-https")), "http");
    rs.v[0].kind = CFG_RK_REDIRECT;
    rs.v[0].status = 301;
    rs.v[0].location = tpl("https://{host}{uri}");
    CHECK_MATCHES(cases);
}

Test(http_rules, match_client_ip)
{
    static const struct match_case cases[] = {
        {"peer inside", GET("/", ""), "203.0.113.9", 1},
        {"peer outside", GET("/", ""), "198.51.100.1", 0},
        {"peer at the range's edges", GET("/", ""), "203.0.113.255", 1},
        {"peer just past them", GET("/", ""), "203.0.114.0", 0},
        {"IPv4-mapped peer of a dual-stack socket", GET("/", ""), "::ffff:203.0.113.9", 1},
        {"IPv6 peer", GET("/", ""), "2001:db8::42", 1},
        {"IPv6 peer outside", GET("/", ""), "2001:db9::1", 0},
        {"True-Client-IP inside, peer outside", GET("/", "True-Client-IP: 203.0.113.9\r\n"),
         "10.0.0.1", 1},
        {"True-Client-IP outside wins over a peer inside", GET("/", "True-Client-IP: 10.0.0.1\r\n"),
         "203.0.113.9", 0},
        {"X-Forwarded-For is never read", GET("/", "X-Forwarded-For: 203.0.113.9\r\n"), "10.0.0.1",
         0},
        {"True-Client-IP that is not an address matches nothing",
         GET("/", "True-Client-IP: 203.0.113.9, 10.0.0.1\r\n"), "203.0.113.9", 0},
        {"True-Client-IP IPv6", GET("/", "True-Client-IP: 2001:DB8::1\r\n"), "10.0.0.1", 1},
    };

    rs_reset();
    struct cfg_match *m = match_of(rule("office"));
    m_ip(m, "203.0.113.0", "203.0.113.255");
    m_ip(m, "2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff");
    deny(&rs.v[0], 403);
    CHECK_MATCHES(cases);
}

Test(http_rules, match_header)
{
    static const char *const envs[] = {"staging", "qa", NULL};
    static const struct match_case cases[] = {
        {"a value", GET("/", "X-Env: staging\r\nX-Flag: 1\r\n"), NULL, 1},
        {"another value, the name in another case", GET("/", "x-env: qa\r\nx-flag:\r\n"), NULL, 1},
        {"one of two fields", GET("/", "X-Env: prod\r\nX-Flag: 1\r\nX-Env: qa\r\n"), NULL, 1},
        {"values are case-sensitive", GET("/", "X-Env: QA\r\nX-Flag: 1\r\n"), NULL, 0},
        {"values are exact", GET("/", "X-Env: qa, prod\r\nX-Flag: 1\r\n"), NULL, 0},
        {"absent", GET("/", "X-Flag: 1\r\n"), NULL, 0},
        {"true: absent", GET("/", "X-Env: qa\r\n"), NULL, 0},
        {"false: present", GET("/", "X-Env: qa\r\nX-Flag: 1\r\nX-Debug: 0\r\n"), NULL, 0},
        /* names as origins that read any separator as '-' read them */
        {"another separator", GET("/", "X_Env: qa\r\nX.Flag: 1\r\n"), NULL, 1},
        {"false: present in another spelling", GET("/", "X-Env: qa\r\nX-Flag: 1\r\nX_Debug: 0\r\n"),
         NULL, 0},
        {"a separator is not a letter", GET("/", "XEnv: qa\r\nX-Flag: 1\r\n"), NULL, 0},
    };

    rs_reset();
    struct cfg_match *m = match_of(rule("headers"));
    m_header(m, "X-Env", CFG_HT_VALUES, envs);
    m_header(m, "X-Flag", CFG_HT_PRESENT, NULL);
    m_header(m, "X-Debug", CFG_HT_ABSENT, NULL);
    deny(&rs.v[0], 403);
    CHECK_MATCHES(cases);
}

/* The admin lockdown of the cookbook: /admin and below, unless from the office. */
Test(http_rules, match_not)
{
    static const struct match_case cases[] = {
        {"admin from outside", GET("/admin/x", ""), "198.51.100.1", 1},
        {"admin from the office", GET("/admin/x", ""), "203.0.113.9", 0},
        {"admin, True-Client-IP from the office", GET("/admin", "True-Client-IP: 203.0.113.1\r\n"),
         "198.51.100.1", 0},
        {"admin, X-Forwarded-For of the office", GET("/admin", "X-Forwarded-For: 203.0.113.1\r\n"),
         "198.51.100.1", 1},
        {"admin spelled otherwise, from outside", GET("///%61dmin%2f", ""), "198.51.100.1", 1},
        {"elsewhere from outside", GET("/shop", ""), "198.51.100.1", 0},
        {"admin, a True-Client-IP that does not parse", GET("/admin", "True-Client-IP: x\r\n"),
         "203.0.113.9", 1},
    };

    rs_reset();
    struct cfg_match *m = match_of(rule("admin-lock"));
    m_path(m, "/admin");
    m_path(m, "/admin/*");
    m->has |= CFG_M_NOT;
    m->not = mnew();
    m_ip(m->not, "203.0.113.0", "203.0.113.255");
    deny(&rs.v[0], 403);
    CHECK_MATCHES(cases);
}

/* Keys of one match object AND together. */
Test(http_rules, match_all_keys)
{
    static const struct match_case cases[] = {
        {"all hold",
         "POST /api/x HTTP/1.1\r\nHost: api.example.com\r\nX-Forwarded-Proto: https\r\n"
         "Content-Length: 0\r\n\r\n",
         NULL, 1},
        {"the method does not",
         "GET /api/x HTTP/1.1\r\nHost: api.example.com\r\nX-Forwarded-Proto: https\r\n\r\n", NULL,
         0},
        {"the scheme does not",
         "POST /api/x HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 0\r\n\r\n", NULL, 0},
        {"the host does not",
         "POST /api/x HTTP/1.1\r\nHost: www.example.com\r\nX-Forwarded-Proto: https\r\n"
         "Content-Length: 0\r\n\r\n",
         NULL, 0},
    };

    rs_reset();
    struct cfg_match *m = match_of(rule("api"));
    m_host(m, "api.example.com");
    m_path(m, "/api/*");
    m_method(m, "POST");
    m_scheme(m, "https");
    deny(&rs.v[0], 403);
    CHECK_MATCHES(cases);
}

#define HEALTHZ "/.well-known/section-io/aee-hc/healthz"

Test(http_rules, healthz_exempt)
{
    static const struct match_case unnamed[] = {
        {"the health check", GET(HEALTHZ, ""), NULL, 0},
        {"with a query", GET(HEALTHZ "?t=1", ""), NULL, 0},
        {"spelled otherwise it is an ordinary request",
         GET("//.well-known/section-io//aee-hc/%68ealthz", ""), NULL, 1},
        {"below it is not the health check", GET(HEALTHZ "/x", ""), NULL, 1},
        {"another path", GET("/", ""), NULL, 1},
    };

    /* a maintenance rule: no match, or the catch-all prefix, does not take the health check */
    rs_reset();
    rule("maintenance")->kind = CFG_RK_RESPOND;
    rs.v[0].status = 503;
    CHECK_MATCHES(unnamed);
    rs_reset();
    m_path(match_of(rule("maintenance")), "/*");
    rs.v[0].kind = CFG_RK_RESPOND;
    rs.v[0].status = 503;
    CHECK_MATCHES(unnamed);

    /* its actions are skipped too */
    rs_reset();
    edit(&rule("hsts")->resp_hdrs, CFG_HE_SET, "X-A", "1");
    cr_assert_eq(answer_of(GET(HEALTHZ, ""), "10.0.0.1"), -1);
    cr_assert(!vd.any_resp && !http_rules_applied(&vd, 0) && vd.last == -1);

    /* a rule that names it, exactly or by a prefix other than the catch-all, takes it */
    static const char *const naming[] = {HEALTHZ, "/.well-known/*", "/.well-known/section-io/*"};
    for (size_t i = 0; i < sizeof(naming) / sizeof(naming[0]); i++) {
        rs_reset();
        m_path(match_of(rule("hc")), naming[i]);
        deny(&rs.v[0], 403);
        cr_assert_eq(answer_of(GET(HEALTHZ "?x", ""), "10.0.0.1"), 0, "%s", naming[i]);
    }
}

/* ---- accumulation, order, redirect maps ----------------------------------- */

Test(http_rules, first_terminal_ends_evaluation)
{
    rs_reset();
    edit(&rule("a")->req_hdrs, CFG_HE_SET, "X-A", "1"); /* 0: every request */
    m_path(match_of(rule("deny-x")), "/x");             /* 1 */
    deny(&rs.v[1], 403);
    edit(&rule("b")->resp_hdrs, CFG_HE_ADD, "X-B", "2"); /* 2 */
    rule("respond")->kind = CFG_RK_RESPOND;              /* 3: answers the rest */
    rs.v[3].status = 200;
    edit(&rs.v[3].resp_hdrs, CFG_HE_SET, "X-C", "3");
    rule("never")->kind = CFG_RK_DENY; /* 4 */
    edit(&rs.v[4].req_hdrs, CFG_HE_SET, "X-D", "4");

    cr_assert_eq(answer_of(GET("/x", ""), "10.0.0.1"), 1);
    cr_assert(http_rules_applied(&vd, 0) && !http_rules_applied(&vd, 2));
    cr_assert(vd.any_req && !vd.any_resp);
    cr_assert_eq(vd.last, 1, "the rule that answered");

    cr_assert_eq(answer_of(GET("/y", ""), "10.0.0.1"), 3);
    cr_assert(http_rules_applied(&vd, 0) && http_rules_applied(&vd, 2));
    cr_assert(http_rules_applied(&vd, 3), "the answering rule's own response headers apply");
    cr_assert(!http_rules_applied(&vd, 4), "nothing after the answer");
    cr_assert(vd.any_req && vd.any_resp);
    cr_assert_eq(vd.last, 3);
    cr_assert_eq(vd.map_hit, -1);
}

Test(http_rules, last_is_the_last_change)
{
    rs_reset();
    edit(&rule("a")->req_hdrs, CFG_HE_SET, "X-A", "1");
    m_path(match_of(rule("b")), "/b");
    rs.v[1].rewrite = (struct cfg_rewrite){CFG_RW_ADD_PREFIX, "/v2", 3};
    rule("c"); /* matches, changes nothing */

    cr_assert_eq(answer_of(GET("/a", ""), "10.0.0.1"), -1);
    cr_assert_eq(vd.last, 0);
    cr_assert_eq(answer_of(GET("/b", ""), "10.0.0.1"), -1);
    cr_assert_eq(vd.last, 1);
    cr_assert(vd.any_req && !vd.any_resp);

    rs_reset();
    rule("nothing");
    cr_assert_eq(answer_of(GET("/", ""), "10.0.0.1"), -1);
    cr_assert(vd.last == -1 && !vd.any_req && !vd.any_resp);
    cr_assert_eq(vd.edits[0], 0);
}

/* Rules past the first 64 land in later words of the bit set. */
Test(http_rules, many_rules)
{
    rs_reset();
    for (int i = 0; i < 200; i++) {
        struct cfg_erule *e = rule("r");

        m_path(match_of(e), i % 2 ? "/odd" : "/*");
        edit(&e->req_hdrs, CFG_HE_ADD, "X-N", "1");
    }
    cr_assert_eq(answer_of(GET("/even", ""), "10.0.0.1"), -1);
    for (int i = 0; i < 200; i++)
        cr_assert_eq(http_rules_applied(&vd, (size_t)i), i % 2 == 0, "rule %d", i);
    cr_assert_eq(vd.last, 198);
}

Test(http_rules, redirect_map)
{
    rs_reset();
    struct cfg_erule *e = rule("moved");
    cfg_hset_init(&e->map.from, 0);
    map_add(e, "/old", "/new");
    map_add(e, "/café", "https://other.example/cafe");
    map_add(e, "/q", "/target?src=map");
    e->status = 301;
    edit(&e->resp_hdrs, CFG_HE_SET, "X-Map", "1");
    rule("after")->kind = CFG_RK_DENY;
    rs.v[1].status = 404;

    cr_assert_eq(answer_of(GET("/old", ""), "10.0.0.1"), 0);
    cr_assert_eq(vd.map_hit, 0);
    cr_assert_eq(answer_of(GET("//%6Fld", ""), "10.0.0.1"), 0, "matched normalised");
    cr_assert_eq(answer_of(GET("/OLD", ""), "10.0.0.1"), 1,
                 "keys as written: a map can fix a path's case (/OLD -> /old) without a loop");
    cr_assert_eq(answer_of(GET("/caf%C3%A9?a=1", ""), "10.0.0.1"), 0);
    cr_assert_eq(vd.map_hit, 1);
    cr_assert_eq(answer_of(GET("/old/", ""), "10.0.0.1"), 1, "exact lookup only: a miss goes on");
    cr_assert(http_rules_applied(&vd, 0), "a miss keeps the rule's other actions");
    cr_assert_eq(vd.map_hit, -1);
    cr_assert_eq(vd.last, 1);
}

/* ---- templates ------------------------------------------------------------ */

Test(http_rules, templates)
{
    static const struct {
        const char *tpl, *head, *want;
    } cases[] = {
        {"https://{host}{uri}", "GET /a%20b//c?x=1 HTTP/1.1\r\nHost: Ex.com:8080\r\n\r\n",
         "https://Ex.com/a%20b//c?x=1"},
        {"{scheme}|{host}|{path}|{query}|{uri}|{method}|{client_ip}",
         "PUT /p?q=2 HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\n"
         "True-Client-IP: 2001:db8::1\r\n\r\n",
         "https|h|/p|q=2|/p?q=2|PUT|2001:db8::1"},
        {"{scheme}:{path}:{query}:{uri}", "GET /p HTTP/1.1\r\nHost: h\r\n\r\n", "http:/p::/p"},
        {"{uri}", "GET /p? HTTP/1.1\r\nHost: h\r\n\r\n", "/p?"},
        {"{uri}", "GET http://h?x HTTP/1.1\r\nHost: a\r\n\r\n", "/?x"},
        {"{{host}} { } {nope} {", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", "{h} { } {nope} {"},
        {"", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", ""},
        {"{client_ip}", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", "10.9.8.7"},
    };

    EACH(c, cases)
    {
        struct cfg_tpl t = tpl(c->tpl);
        char out[256];

        cr_assert_eq(req(c->head, "10.9.8.7"), 0);
        assert_str(c->tpl, out, http_rules_expand(&t, &rq, out, sizeof(out)), c->want);
        if (strlen(c->want))
            cr_assert_eq(http_rules_expand(&t, &rq, out, strlen(c->want) - 1), -1,
                         "%s: one byte short", c->tpl);
        free(t.parts);
    }
}

/* ---- the request head the origin gets -------------------------------------- */

struct head_case {
    const char *name;
    const char *in;
    const char *want;
};

static void check_req_heads(const struct head_case *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char out[4096];
        long r;

        cr_assert_eq(answer_of(c[i].in, "10.0.0.1"), -1, "%s", c[i].name);
        if (!vd.any_req) {
            assert_str(c[i].name, fwd, fwd_len, c[i].want);
            continue;
        }
        r = http_rules_req_head(&rs, &vd, &rq, fwd, (size_t)fwd_len, out, sizeof(out));
        assert_str(c[i].name, out, r, c[i].want);
    }
}

#define CHECK_REQ_HEADS(t) check_req_heads((t), sizeof(t) / sizeof((t)[0]))

Test(http_rules, request_header_edits)
{
    static const struct head_case cases[] = {
        {"set replaces every field of the name, remove drops them, add appends",
         "GET /a?q HTTP/1.1\r\nHost: h\r\nX-Set: 1\r\nX-Gone: g\r\nx-set: 2\r\nX-Add: a\r\n"
         "Accept: */*\r\nX-GONE: g\r\n\r\n",
         "GET /a?q HTTP/1.1\r\nHost: h\r\nX-Add: a\r\nAccept: */*\r\nX-Set: s h\r\n"
         "X-Add: 10.0.0.1\r\n\r\n"},
        {"absent fields are set and added all the same", "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
         "GET / HTTP/1.1\r\nHost: h\r\nX-Set: s h\r\nX-Add: 10.0.0.1\r\n\r\n"},
    };

    rs_reset();
    struct cfg_erule *e = rule("edits");
    edit(&e->req_hdrs, CFG_HE_REMOVE, "x-gone", NULL);
    edit(&e->req_hdrs, CFG_HE_SET, "X-Set", "s {host}");
    edit(&e->req_hdrs, CFG_HE_ADD, "X-Add", "{client_ip}");
    CHECK_REQ_HEADS(cases);
}

/* Across rules, in rule order: the last set or remove of a name wins, adds after it stay. */
Test(http_rules, request_header_edits_compose)
{
    static const struct {
        const char *name;
        int op0, op1;
        const char *want;
    } cases[] = {
        {"add then set: the set alone", CFG_HE_ADD, CFG_HE_SET, "X-A: 1\r\n"},
        {"set then add: both", CFG_HE_SET, CFG_HE_ADD, "X-A: 0\r\nX-A: 1\r\n"},
        {"add then remove: none", CFG_HE_ADD, CFG_HE_REMOVE, ""},
        {"remove then add: the add, the original gone", CFG_HE_REMOVE, CFG_HE_ADD, "X-A: 1\r\n"},
        {"add then add: the original and both", CFG_HE_ADD, CFG_HE_ADD,
         "X-A: orig\r\nX-A: 0\r\nX-A: 1\r\n"},
        {"set then set: the later", CFG_HE_SET, CFG_HE_SET, "X-A: 1\r\n"},
    };

    EACH(c, cases)
    {
        char want[256], out[1024];
        const char *in = "GET / HTTP/1.1\r\nHost: h\r\nX-A: orig\r\n\r\n";

        rs_reset();
        edit(&rule("0")->req_hdrs, c->op0, "X-A", c->op0 == CFG_HE_REMOVE ? NULL : "0");
        edit(&rule("1")->req_hdrs, c->op1, c->op1 == CFG_HE_REMOVE ? "x-a" : "X-A",
             c->op1 == CFG_HE_REMOVE ? NULL : "1");
        cr_assert_eq(answer_of(in, "10.0.0.1"), -1);
        snprintf(want, sizeof(want), "GET / HTTP/1.1\r\nHost: h\r\n%s\r\n", c->want);
        assert_str(c->name, out,
                   http_rules_req_head(&rs, &vd, &rq, fwd, (size_t)fwd_len, out, sizeof(out)),
                   want);
    }
}

Test(http_rules, rewrites)
{
    static const struct head_case cases[] = {
        {"strip_prefix, the query kept", GET("/blog/post/1?a=b&c", ""),
         "GET /post/1?a=b&c HTTP/1.1\r\nHost: example.com\r\n\r\n"},
        {"strip_prefix of the whole path: /", GET("/blog", ""),
         "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"},
        {"strip_prefix of the folder", GET("/blog/", ""),
         "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"},
        {"strip_prefix works on the normalised path", GET("//%62log/a//b", ""),
         "GET /a/b HTTP/1.1\r\nHost: example.com\r\n\r\n"},
        {"a rewriting rule matches the path with its case: /BLOG is not /blog", GET("/BLOG/a", ""),
         "GET /BLOG/a HTTP/1.1\r\nHost: example.com\r\n\r\n"},
        {"the result is encoded: bytes outside pchar as %XX",
         GET("/blog/caf%C3%A9%20%3F%23%25%22<>/a:b@c!$&'()*+,;=-._~", ""),
         "GET /caf%C3%A9%20%3F%23%25%22%3C%3E/a:b@c!$&'()*+,;=-._~ HTTP/1.1\r\n"
         "Host: example.com\r\n\r\n"},
        {"an encoded slash is a slash once normalised", GET("/blog/a%2Fb", ""),
         "GET /a/b HTTP/1.1\r\nHost: example.com\r\n\r\n"},
        {"absolute-form: the origin-form target, the authority as Host",
         "GET http://b.example/blog/x?y HTTP/1.1\r\nHost: a\r\n\r\n",
         "GET /x?y HTTP/1.1\r\nHost: b.example\r\n\r\n"},
        {"no rule matched: the target byte for byte", GET("//a//b%7e?x=%41", ""),
         "GET //a//b%7e?x=%41 HTTP/1.1\r\nHost: example.com\r\n\r\n"},
    };

    rs_reset();
    m_path(m_exact(match_of(rule("blog"))), "/blog/*");
    m_path(rs.v[0].match, "/blog");
    rs.v[0].rewrite = (struct cfg_rewrite){CFG_RW_STRIP_PREFIX, "/blog", 5};
    CHECK_REQ_HEADS(cases);
}

Test(http_rules, rewrites_compose)
{
    static const struct head_case add[] = {
        {"add_prefix", GET("/x?q", ""), "GET /v2/x?q HTTP/1.1\r\nHost: example.com\r\n\r\n"},
        {"add_prefix to /", GET("/", ""), "GET /v2/ HTTP/1.1\r\nHost: example.com\r\n\r\n"},
        {"add_prefix, normalised first", GET("//%78", ""),
         "GET /v2/x HTTP/1.1\r\nHost: example.com\r\n\r\n"},
        {"OPTIONS * is never rewritten", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
         "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"},
    };
    static const struct head_case chain[] = {
        {"strip, then add, in rule order", GET("/blog/a?q=1", ""),
         "GET /site/a?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"},
        {"a strip that does not apply, then the add", GET("/shop/a", ""),
         "GET /site/shop/a HTTP/1.1\r\nHost: example.com\r\n\r\n"},
        {"a path replaces what came before, the query kept", GET("/old/x?k=v", ""),
         "GET /new/place?k=v HTTP/1.1\r\nHost: example.com\r\n\r\n"},
        {"a strip that does not apply is no rewrite: the target as it came",
         "GET /blog2/%7e HTTP/1.1\r\nHost: h\r\nX-Only: 1\r\n\r\n",
         "GET /blog2/%7e HTTP/1.1\r\nHost: h\r\nX-Only: 1\r\n\r\n"},
    };

    rs_reset();
    rule("v2")->rewrite = (struct cfg_rewrite){CFG_RW_ADD_PREFIX, "/v2/", 4};
    CHECK_REQ_HEADS(add);

    rs_reset();
    m_path(match_of(rule("strip")), "/blog/*");
    m_path(rs.v[0].match, "/blog2/*");
    rs.v[0].rewrite = (struct cfg_rewrite){CFG_RW_STRIP_PREFIX, "/blog/", 6};
    m_path(match_of(rule("add")), "/blog/*");
    m_path(rs.v[1].match, "/shop/*");
    m_path(rs.v[1].match, "/old/*");
    rs.v[1].rewrite = (struct cfg_rewrite){CFG_RW_ADD_PREFIX, "/site", 5};
    m_path(match_of(rule("replace")), "/old/*");
    rs.v[2].rewrite = (struct cfg_rewrite){CFG_RW_PATH, "/new/place", 10};
    CHECK_REQ_HEADS(chain);
}

Test(http_rules, request_head_room)
{
    char out[1024];
    long n;

    rs_reset();
    rule("long")->rewrite = (struct cfg_rewrite){CFG_RW_ADD_PREFIX, "/prefix", 7};
    edit(&rs.v[0].req_hdrs, CFG_HE_SET, "X-Long", "0123456789012345678901234567890123456789");
    cr_assert_eq(answer_of(GET("/a%20b", "X-Other: 1\r\n"), "10.0.0.1"), -1);
    n = http_rules_req_head(&rs, &vd, &rq, fwd, (size_t)fwd_len, out, sizeof(out));
    cr_assert_gt(n, 0);
    for (long cap = 0; cap < n; cap++)
        cr_assert_eq(http_rules_req_head(&rs, &vd, &rq, fwd, (size_t)fwd_len, out, (size_t)cap), -1,
                     "%ld bytes of %ld", cap, n);
    cr_assert_eq(http_rules_req_head(&rs, &vd, &rq, fwd, (size_t)fwd_len, out, (size_t)n), n);
}

/* ---- the response head the client gets (through http_fwd_response) -------- */

static struct http_msg resp;
static struct core_hdr resp_hdrs[64];

static long fwd_response(const char *head, struct http_fwd_resp o, char *out, size_t cap)
{
    memset(&resp, 0, sizeof(resp));
    cr_assert_eq(http_msg_head(&resp, HTTP_RESPONSE, head, strlen(head), resp_hdrs, 64), 0);
    return http_fwd_response(&resp, &o, out, cap);
}

Test(http_rules, response_header_edits)
{
    static const char origin[] = "HTTP/1.1 200 OK\r\nServer: nginx\r\nX-Powered-By: php\r\n"
                                 "Content-Length: 2\r\nsERVER: again\r\nCache-Control: a\r\n"
                                 "Cache-Control: b\r\nX-Keep: k\r\n\r\n";
    char out[2048];
    long n;

    rs_reset();
    struct cfg_erule *e = rule("hsts");
    edit(&e->resp_hdrs, CFG_HE_REMOVE, "Server", NULL);
    edit(&e->resp_hdrs, CFG_HE_REMOVE, "X-Powered-By", NULL);
    edit(&e->resp_hdrs, CFG_HE_SET, "Strict-Transport-Security", "max-age=31536000");
    edit(&e->resp_hdrs, CFG_HE_SET, "Cache-Control", "no-store");
    edit(&e->resp_hdrs, CFG_HE_ADD, "X-Host", "{host}");
    edit(&rule("other")->req_hdrs, CFG_HE_SET, "X-Req", "1"); /* the other direction */
    cr_assert_eq(answer_of(GET("/", ""), "10.0.0.1"), -1);
    cr_assert(vd.any_resp);

    struct http_fwd_resp o = {.final = 1, .keep_alive = 0, .rs = &rs, .rv = &vd, .rr = &rq};
    n = fwd_response(origin, o, out, sizeof(out));
    assert_str("edited", out, n,
               "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Keep: k\r\n"
               "Strict-Transport-Security: max-age=31536000\r\nCache-Control: no-store\r\n"
               "X-Host: example.com\r\nConnection: close\r\n\r\n");
    for (long cap = 0; cap < n; cap++)
        cr_assert_eq(fwd_response(origin, o, out, (size_t)cap), -1, "%ld of %ld bytes", cap, n);

    /* the plan, field by field: what http_fwd_response() asks */
    {
        struct http_rules_plan pl;

        http_rules_resp_plan(&rs, &vd, &pl);
        cr_assert(http_rules_plan_drops(&rs, &pl, (struct core_str){"server", 6}));
        cr_assert(http_rules_plan_drops(&rs, &pl, (struct core_str){"cache-control", 13}));
        cr_assert(!http_rules_plan_drops(&rs, &pl, (struct core_str){"X-Host", 6}),
                  "an add drops none");
        cr_assert(!http_rules_plan_drops(&rs, &pl, (struct core_str){"X-Req", 5}), "request side");
        cr_assert(!http_rules_plan_drops(&rs, &pl, (struct core_str){"X-Keep", 6}));
        /* every spelling an origin reads as a removed or set name */
        cr_assert(http_rules_plan_drops(&rs, &pl, (struct core_str){"X_Powered_By", 12}));
        cr_assert(http_rules_plan_drops(&rs, &pl, (struct core_str){"x.POWERED~by", 12}));
        cr_assert(http_rules_plan_drops(&rs, &pl, (struct core_str){"Cache_Control", 13}));
        cr_assert(!http_rules_plan_drops(&rs, &pl, (struct core_str){"XPowered-By", 11}));
        assert_str("adds", out, http_rules_plan_adds(&rs, &vd, &pl, &rq, out, sizeof(out)),
                   "Strict-Transport-Security: max-age=31536000\r\nCache-Control: no-store\r\n"
                   "X-Host: example.com\r\n");
    }

    /* an interim response goes as it came; so does everything without a verdict */
    o.final = 0;
    assert_str("interim", out,
               fwd_response("HTTP/1.1 103 Early Hints\r\nServer: x\r\n\r\n", o, out, sizeof(out)),
               "HTTP/1.1 103 Early Hints\r\nServer: x\r\n\r\n");
    o = (struct http_fwd_resp){.final = 1, .keep_alive = 1};
    assert_str("no rules", out,
               fwd_response("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", o, out, sizeof(out)),
               "HTTP/1.1 200 OK\r\nServer: x\r\n\r\n");
}

/* ---- answers ---------------------------------------------------------------- */

struct answer_case {
    const char *name;
    const char *head;
    int keep_alive;
    const char *want;
};

static struct cfg_page page_html = {
    .data = "<p>closed</p>", .len = 13, .content_type = "text/html"};

static void check_answers(const struct answer_case *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char out[2048];
        const struct cfg_erule *e;
        long r;

        cr_assert_geq(answer_of(c[i].head, "10.0.0.1"), 0, "%s: no answer", c[i].name);
        e = &rs.v[vd.answer];
        r = http_rules_answer_head(&rs, &vd, &rq, e->status, e->body, c[i].keep_alive, out,
                                   sizeof(out));
        assert_str(c[i].name, out, r, c[i].want);
        for (long cap = 0; cap < r; cap += 7)
            cr_assert_eq(
                http_rules_answer_head(&rs, &vd, &rq, e->status, e->body, 1, out, (size_t)cap), -1,
                "%s: %ld bytes", c[i].name, cap);
    }
}

#define CHECK_ANSWERS(t) check_answers((t), sizeof(t) / sizeof((t)[0]))

Test(http_rules, answers)
{
    static const struct answer_case cases[] = {
        {"redirect", "GET /r/x?a=1 HTTP/1.1\r\nHost: Ex.com:80\r\n\r\n", 1,
         "HTTP/1.1 308 Permanent Redirect\r\nLocation: https://Ex.com/r/x?a=1\r\n"
         "Content-Length: 0\r\nX-All: yes\r\nConnection: keep-alive\r\n\r\n"},
        {"redirect map: the query kept", GET("/old?a=1", ""), 0,
         "HTTP/1.1 302 Found\r\nLocation: /new?a=1\r\nContent-Length: 0\r\nX-All: yes\r\n"
         "Connection: close\r\n\r\n"},
        {"redirect map: no query", GET("/old", ""), 1,
         "HTTP/1.1 302 Found\r\nLocation: /new\r\nContent-Length: 0\r\nX-All: yes\r\n"
         "Connection: keep-alive\r\n\r\n"},
        {"redirect map: the target's query wins", GET("/q?a=1", ""), 1,
         "HTTP/1.1 302 Found\r\nLocation: https://x.example/t?src=map\r\nContent-Length: 0\r\n"
         "X-All: yes\r\nConnection: keep-alive\r\n\r\n"},
        {"respond with a body, headers and edits", GET("/shop/x", ""), 1,
         "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/html\r\nContent-Length: 13\r\n"
         "Retry-After: 600\r\nX-Path: /shop/x\r\nX-All: yes\r\nX-Shop: closed\r\n"
         "Connection: keep-alive\r\n\r\n"},
        {"respond 204: no length", GET("/ping", ""), 1,
         "HTTP/1.1 204 No Content\r\nX-All: yes\r\nConnection: keep-alive\r\n\r\n"},
        {"respond without a body", GET("/empty", ""), 1,
         "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-All: yes\r\nConnection: keep-alive\r\n\r\n"},
        {"deny", GET("/deny", ""), 1,
         "HTTP/1.1 451 Unavailable For Legal Reasons\r\nContent-Length: 0\r\nX-All: yes\r\n"
         "Connection: keep-alive\r\n\r\n"},
    };

    rs_reset();
    edit(&rule("all")->resp_hdrs, CFG_HE_SET, "X-All", "yes");

    struct cfg_erule *e = rule("redirect");
    m_path(match_of(e), "/r/*");
    e->kind = CFG_RK_REDIRECT;
    e->status = 308;
    e->location = tpl("https://{host}{uri}");

    e = rule("map");
    cfg_hset_init(&e->map.from, 0);
    map_add(e, "/old", "/new");
    map_add(e, "/q", "https://x.example/t?src=map");
    e->status = 302;

    e = rule("shop");
    m_path(match_of(e), "/shop/*");
    e->kind = CFG_RK_RESPOND;
    e->status = 503;
    e->body = &page_html;
    edit(&e->answer_hdrs, CFG_HE_SET, "Retry-After", "600");
    edit(&e->answer_hdrs, CFG_HE_SET, "X-Path", "{path}");
    edit(&e->answer_hdrs, CFG_HE_SET, "X-Shop", "open"); /* replaced by the edit below */
    edit(&e->resp_hdrs, CFG_HE_SET, "X-Shop", "closed");

    e = rule("ping");
    m_path(match_of(e), "/ping");
    e->kind = CFG_RK_RESPOND;
    e->status = 204;

    e = rule("empty");
    m_path(match_of(e), "/empty");
    e->kind = CFG_RK_RESPOND;
    e->status = 200;

    e = rule("deny");
    m_path(match_of(e), "/deny");
    deny(e, 451);
    CHECK_ANSWERS(cases);
}

/* The proxy's own answers (answer -1) with an error page, and the rules' edits. */
Test(http_rules, error_page_answers)
{
    static struct cfg_page oops = {.data = "oops", .len = 4, .content_type = "text/html"};
    char out[1024];
    struct http_rules_verdict none = {.answer = -1, .last = -1, .map_hit = -1};
    struct http_rules_req nreq = {0};

    rs_reset();
    edit(&rule("sec")->resp_hdrs, CFG_HE_SET, "X-Frame-Options", "DENY");
    edit(&rs.v[0].resp_hdrs, CFG_HE_REMOVE, "Content-Type", NULL);
    cr_assert_eq(answer_of(GET("/", ""), "10.0.0.1"), -1);
    assert_str("502 with a page and edits", out,
               http_rules_answer_head(&rs, &vd, &rq, 502, &oops, 0, out, sizeof(out)),
               "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 4\r\nX-Frame-Options: DENY\r\n"
               "Connection: close\r\n\r\n");
    assert_str("400 before the rules ran", out,
               http_rules_answer_head(&rs, &none, &nreq, 400, &oops, 1, out, sizeof(out)),
               "HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\nContent-Length: 4\r\n"
               "Connection: keep-alive\r\n\r\n");
    assert_str("a status without a phrase", out,
               http_rules_answer_head(&rs, &none, &nreq, 599, NULL, 1, out, sizeof(out)),
               "HTTP/1.1 599 Error\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n");
}

Test(http_rules, reason_phrases)
{
    static const int named[] = {200, 201, 202, 203, 204, 205, 206, 300, 301, 302, 303, 304,
                                305, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407, 408,
                                409, 410, 411, 412, 413, 414, 415, 416, 417, 421, 422, 426,
                                428, 429, 431, 451, 500, 501, 502, 503, 504, 505};

    for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++)
        cr_assert_str_neq(http_fwd_reason(named[i]), "Error", "%d", named[i]);
    cr_assert_str_eq(http_fwd_reason(418), "Error");
    cr_assert_str_eq(http_fwd_reason(429), "Too Many Requests");
    cr_assert_str_eq(http_fwd_reason(308), "Permanent Redirect");
}

/* ---- through the loader: proxy.json as users write it (cfg/rules.c) -------- */

static char folder[64];

/* Write a file of the config folder. */
static void folder_file(const char *name, const char *text)
{
    char path[256];
    FILE *f;

    if (!folder[0]) {
        strcpy(folder, "/tmp/test_http_rules.XXXXXX");
        cr_assert(mkdtemp(folder));
    }
    snprintf(path, sizeof(path), "%s/%s", folder, name);
    cr_assert((f = fopen(path, "w")), "%s", path);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
}

/* Load a proxy.json (with the folder's files) and make its rules the ones tested. */
static void load(const char *json)
{
    struct cfg_errs errs;
    int r;

    rs_release();
    r = cfg_load_buf_at(json, strlen(json), "proxy.json", folder[0] ? folder : NULL, &loaded,
                        &errs);

    cr_assert_eq(r, 0, "does not load: %s", r && errs.n ? errs.lines[0] : "");
    cfg_errs_free(&errs);
    cr_assert(loaded->rules);
    rs = *loaded->rules;
}

static void unload(void)
{
    char path[256];
    static const char *const names[] = {"redirects.txt", "maintenance.html"};

    cfg_free(loaded);
    loaded = NULL;
    memset(&rs, 0, sizeof(rs));
    for (size_t i = 0; folder[0] && i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", folder, names[i]);
        (void)unlink(path);
    }
    if (folder[0])
        (void)rmdir(folder);
    folder[0] = '\0';
}

/* The cookbook's configs, one request each way. */
Test(http_rules, cookbook_https_and_canonical_host)
{
    char out[1024];

    load("{\"rules\": ["
         " {\"name\": \"https\", \"match\": {\"scheme\": \"http\"},"
         "  \"redirect\": {\"to\": \"https://{host}{uri}\"}},"
         " {\"name\": \"canonical\", \"match\": {\"host\": [\"example.com\"]},"
         "  \"redirect\": {\"to\": \"https://www.example.com{uri}\", \"status\": 308}}]}");
    cr_assert_eq(answer_of(GET("/a?b", ""), "10.0.0.1"), 0);
    assert_str("https", out,
               http_rules_answer_head(&rs, &vd, &rq, rs.v[0].status, NULL, 1, out, sizeof(out)),
               "HTTP/1.1 301 Moved Permanently\r\nLocation: https://example.com/a?b\r\n"
               "Content-Length: 0\r\nConnection: keep-alive\r\n\r\n");
    cr_assert_eq(answer_of(GET("/a?b", "X-Forwarded-Proto: https\r\n"), "10.0.0.1"), 1,
                 "behind the platform's TLS: no loop");
    assert_str("canonical", out,
               http_rules_answer_head(&rs, &vd, &rq, rs.v[1].status, NULL, 0, out, sizeof(out)),
               "HTTP/1.1 308 Permanent Redirect\r\nLocation: https://www.example.com/a?b\r\n"
               "Content-Length: 0\r\nConnection: close\r\n\r\n");
    cr_assert_eq(answer_of("GET / HTTP/1.1\r\nHost: www.example.com\r\n"
                           "X-Forwarded-Proto: https\r\n\r\n",
                           "10.0.0.1"),
                 -1);
    unload();
}

Test(http_rules, cookbook_admin_lockdown)
{
    static const struct match_case cases[] = {
        {"outside", GET("/admin/users", ""), "198.51.100.1", 1},
        {"outside, spelled otherwise", GET("//%61dmin%2Fusers", ""), "198.51.100.1", 1},
        {"outside, the folder itself", GET("/admin", ""), "198.51.100.1", 1},
        {"office, by True-Client-IP", GET("/admin", "True-Client-IP: 203.0.113.7\r\n"), "10.0.0.1",
         0},
        {"office, IPv6", GET("/admin/", ""), "2001:db8::7", 0},
        {"office, the single address", GET("/admin/", ""), "198.51.100.7", 0},
        {"outside, X-Forwarded-For of the office",
         GET("/admin", "X-Forwarded-For: 203.0.113.7\r\n"), "198.51.100.1", 1},
        {"elsewhere", GET("/administrator", ""), "198.51.100.1", 0},
    };

    load("{\"lists\": {\"office\": [\"203.0.113.0/24\", \"2001:db8::/32\", \"198.51.100.7\"]},"
         " \"rules\": [{\"name\": \"admin-lock\","
         "  \"match\": {\"path\": [\"/admin\", \"/admin/*\"], \"not\": {\"client_ip\": "
         "[\"@office\"]}},"
         "  \"deny\": {\"status\": 403}}]}");
    CHECK_MATCHES(cases);
    unload();
}

Test(http_rules, cookbook_security_headers)
{
    char out[1024];
    static const char origin[] = "HTTP/1.1 200 OK\r\nServer: nginx\r\nX-Powered-By: php\r\n"
                                 "Content-Length: 2\r\n\r\n";

    load("{\"rules\": [{\"name\": \"hsts\", \"response_headers\": {"
         "\"set\": {\"Strict-Transport-Security\": \"max-age=31536000\"},"
         "\"add\": {\"X-Served-For\": \"{client_ip}\"},"
         "\"remove\": [\"Server\", \"X-Powered-By\"]}}]}");
    cr_assert_eq(answer_of(GET("/", ""), "10.0.0.1"), -1);
    struct http_fwd_resp o = {.final = 1, .keep_alive = 1, .rs = &rs, .rv = &vd, .rr = &rq};
    assert_str("edited", out, fwd_response(origin, o, out, sizeof(out)),
               "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
               "Strict-Transport-Security: max-age=31536000\r\nX-Served-For: 10.0.0.1\r\n\r\n");
    unload();
}

Test(http_rules, cookbook_maintenance_keeps_the_health_check)
{
    char out[1024];

    folder_file("maintenance.html", "<h1>Back soon</h1>\n");
    load("{\"rules\": [{\"name\": \"shop-closed\", \"match\": {\"path\": [\"/*\"]},"
         " \"respond\": {\"status\": 503, \"file\": \"maintenance.html\","
         "  \"headers\": {\"Retry-After\": \"600\"}}}]}");
    cr_assert_eq(answer_of(GET("/shop/cart", ""), "10.0.0.1"), 0);
    assert_str(
        "maintenance", out,
        http_rules_answer_head(&rs, &vd, &rq, rs.v[0].status, rs.v[0].body, 1, out, sizeof(out)),
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/html; charset=utf-8\r\n"
        "Content-Length: 19\r\nRetry-After: 600\r\nConnection: keep-alive\r\n\r\n");
    cr_assert_eq(answer_of(GET(HEALTHZ, ""), "10.0.0.1"), -1, "the health check goes through");
    cr_assert_eq(answer_of(GET(HEALTHZ "?probe=1", ""), "10.0.0.1"), -1);
    unload();
}

Test(http_rules, cookbook_blog_rewrite_and_origin_header)
{
    static const struct head_case cases[] = {
        {"blog: prefix stripped, header set", GET("/blog/2024/post?x=1", "X-Site: spoofed\r\n"),
         "GET /2024/post?x=1 HTTP/1.1\r\nHost: example.com\r\nX-Site: blog\r\n"
         "section-origin: blog-origin\r\n\r\n"},
        {"elsewhere: untouched", GET("/shop//x", "X-Site: kept\r\n"),
         "GET /shop//x HTTP/1.1\r\nHost: example.com\r\nX-Site: kept\r\n\r\n"},
    };

    load("{\"rules\": [{\"name\": \"blog\", \"match\": {\"path\": [\"/blog\", \"/blog/*\"]},"
         " \"rewrite\": {\"strip_prefix\": \"/blog\"},"
         " \"request_headers\": {\"set\": {\"X-Site\": \"blog\","
         "  \"section-origin\": \"blog-origin\"}}}]}");
    CHECK_REQ_HEADS(cases);
    unload();
}

Test(http_rules, cookbook_migration_redirects)
{
    char out[1024];

    folder_file("redirects.txt", "# moved in 2024\n"
                                 "/old-page /new-page\n"
                                 "/products/%61ncient https://archive.example.com/p?from=site\n");
    load("{\"rules\": [{\"name\": \"moved\", \"redirect_map\": {\"file\": \"redirects.txt\"}},"
         " {\"name\": \"gone\", \"match\": {\"path\": [\"/products/*\"]}, \"deny\": {\"status\": "
         "410}}]}");
    cr_assert_eq(answer_of(GET("/old-page?utm=1", ""), "10.0.0.1"), 0);
    assert_str("hit, the query kept", out,
               http_rules_answer_head(&rs, &vd, &rq, rs.v[0].status, NULL, 1, out, sizeof(out)),
               "HTTP/1.1 301 Moved Permanently\r\nLocation: /new-page?utm=1\r\n"
               "Content-Length: 0\r\nConnection: keep-alive\r\n\r\n");
    cr_assert_eq(answer_of(GET("/products/ancient?utm=1", ""), "10.0.0.1"), 0,
                 "map keys are normalised too");
    assert_str("hit, the target's query", out,
               http_rules_answer_head(&rs, &vd, &rq, rs.v[0].status, NULL, 1, out, sizeof(out)),
               "HTTP/1.1 301 Moved Permanently\r\n"
               "Location: https://archive.example.com/p?from=site\r\n"
               "Content-Length: 0\r\nConnection: keep-alive\r\n\r\n");
    cr_assert_eq(answer_of(GET("/products/new", ""), "10.0.0.1"), 1, "a miss goes on");
    unload();
}
