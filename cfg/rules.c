/*
 * The edge rules (`lists`, `rules`, `error_pages`): checked and compiled
 * into the model of cfg/rules.h. Every problem is reported, as "JSON
 * pointer: message", and the files the rules name (respond bodies, error
 * pages, redirect maps) are read here, once, from the config folder.
 * Which keys exist comes from the rules table in cfg/schema.c.
 */
#include "cfg/rules.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "cfg/cfg.h"
#include "cfg/hset.h"
#include "cfg/schema.h"
#include "core/str.h"

const char *const cfg_tvar_names[CFG_TV_COUNT] = {
    [CFG_TV_LITERAL] = "",      [CFG_TV_SCHEME] = "scheme",       [CFG_TV_HOST] = "host",
    [CFG_TV_PATH] = "path",     [CFG_TV_QUERY] = "query",         [CFG_TV_URI] = "uri",
    [CFG_TV_METHOD] = "method", [CFG_TV_CLIENT_IP] = "client_ip",
};

const char *const cfg_rule_kind_names[CFG_RK_COUNT] = {
    [CFG_RK_NONE] = "",
    [CFG_RK_REDIRECT] = "redirect",
    [CFG_RK_REDIRECT_MAP] = "redirect_map",
    [CFG_RK_RESPOND] = "respond",
    [CFG_RK_DENY] = "deny",
    [CFG_RK_RATE_LIMIT] = "rate_limit",
    [CFG_RK_BASIC_AUTH] = "basic_auth",
};

#define PTR_MAX 1024
#define GOT_MAX 80
#define SHOW_MAX 400
#define NAME_MAX_LEN 64       /* rule names, list names, header names */
#define EDIT_NAMES_MAX 256    /* distinct header names edited in a config */
#define MAP_PROBLEMS_SHOWN 20 /* per redirect-map file */
#define HEADER_NAME_MAX CFG_MAX_HEADER_NAME

/* Fields a rule may not edit: framing and hop-by-hop (RFC 9110 7.6.1, RFC 9112 6). */
static const char *const forbidden_fields[] = {
    "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "Proxy-Connection", "TE",
    "Trailer",        "Upgrade",           "Host",
};

/* The actions that may answer, indexed by enum cfg_rule_kind - 1. */
static const char *const terminal_keys[] = {
    "redirect", "redirect_map", "respond", "deny", "rate_limit", "basic_auth",
};
#define NTERMINAL (sizeof(terminal_keys) / sizeof(terminal_keys[0]))
_Static_assert(NTERMINAL == CFG_RK_COUNT - 1, "a terminal key for each rule kind");

/* The rule kind a key of a rule object makes, or CFG_RK_NONE. */
static int terminal_kind(const char *key)
{
    for (size_t k = 0; k < NTERMINAL; k++)
        if (strcmp(key, terminal_keys[k]) == 0)
            return (int)k + 1;
    return CFG_RK_NONE;
}

/* A named list of `lists`, compiled to ranges (not yet merged). */
struct rlist {
    const char *name;
    struct cfg_iprange *v;
    size_t n;
    int ok;
};

/* A growable byte buffer. */
struct buf {
    char *p;
    size_t n, cap;
};

struct rb {
    struct cfg_errs *errs;
    int oom;
    char ptr[PTR_MAX];
    size_t plen;
    const char *dir;
    char *dir_real; /* realpath of dir, once needed */
    int dir_failed; /* realpath(dir) failed: reported once */
    struct cfg_rules *rs;
    struct rlist *lists;
    size_t nlists;
    const char **list_names; /* for suggestions */
    struct buf scratch;      /* normalised paths */
};

/* ---- small helpers ------------------------------------------------------ */

static int buf_reserve(struct buf *b, size_t more)
{
    if (b->n + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return -ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

static void errs_push(struct rb *b, char *line)
{
    char **v;

    if (!line) {
        b->oom = 1;
        return;
    }
    v = realloc(b->errs->lines, (b->errs->n + 1) * sizeof(*v));
    if (!v) {
        free(line);
        b->oom = 1;
        return;
    }
    b->errs->lines = v;
    v[b->errs->n++] = line;
}

static void __attribute__((format(printf, 3, 0)))
verr_line(struct rb *b, const char *where, const char *fmt, va_list ap)
{
    char *msg = NULL, *line = NULL;

    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    if (msg && asprintf(&line, "%s: %s", *where ? where : "/", msg) < 0)
        line = NULL;
    free(msg);
    errs_push(b, line);
}

/* A problem at the current pointer. */
static void __attribute__((format(printf, 2, 3))) err(struct rb *b, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    verr_line(b, b->ptr, fmt, ap);
    va_end(ap);
}

static size_t push_key(struct rb *b, const char *key)
{
    size_t mark = b->plen;

    b->plen = cfg_ptr_key(b->ptr, b->plen, PTR_MAX, key);
    return mark;
}

static size_t push_index(struct rb *b, size_t i)
{
    size_t mark = b->plen;
    int n = snprintf(b->ptr + b->plen, PTR_MAX - b->plen, "/%zu", i);

    if (n > 0 && b->plen + (size_t)n < PTR_MAX)
        b->plen += (size_t)n;
    else
        b->ptr[b->plen] = '\0';
    return mark;
}

static void pop(struct rb *b, size_t mark)
{
    b->plen = mark;
    b->ptr[mark] = '\0';
}

#define GOT(v) cfg_got((v), gotbuf, sizeof(gotbuf))

/* s (n bytes) quoted for a message, bytes outside printable ASCII as \xNN, cut when long. */
static const char *show(const char *s, size_t n, char *out, size_t cap)
{
    size_t shown = n > 96 ? 96 : n, len;

    /* 96 bytes take at most 4 * 96 characters shown: cap is SHOW_MAX or more. */
    out[0] = '"';
    cfg_show_bytes(s, shown, out + 1, cap - 5);
    len = strlen(out);
    memcpy(out + len, shown < n ? "...\"" : "\"", shown < n ? 5 : 2);
    return out;
}

#define SHOW(s, n) show((s), (n), showbuf, sizeof(showbuf))

static char *dupn(struct rb *b, const char *s, size_t n)
{
    char *d = malloc(n + 1);

    if (!d) {
        b->oom = 1;
        return NULL;
    }
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* RFC 9110 tchar. */
static int is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static int is_name_char(unsigned char ch, const char *extra)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr(extra, ch));
}

static int name_ok(const char *s, size_t n, const char *extra)
{
    if (n < 1 || n > NAME_MAX_LEN)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_name_char((unsigned char)s[i], extra))
            return 0;
    }
    return 1;
}

/* ---- the keys of an object, from the rules table ------------------------- */

/* Last component of a table path. */
static const char *row_name(const char *path)
{
    const char *dot = strrchr(path, '.');

    return dot ? dot + 1 : path;
}

/* True when row path sits directly inside parent. */
static int row_in(const char *path, const char *parent)
{
    size_t plen = strlen(parent);

    return strncmp(path, parent, plen) == 0 && path[plen] == '.' && !strchr(path + plen + 1, '.');
}

/* A key of obj that is not a row inside parent: the message, with a suggestion. */
static void unknown_key(struct rb *b, const char *parent, const char *key)
{
    size_t nrows, ncand = 0, n = 0;
    const struct cfg_rkey *rows = cfg_rules_keys(&nrows);
    const char *cand[64], *near, *deeper = NULL;
    size_t plen = strlen(parent);
    char list[512];

    for (size_t i = 0; i < nrows; i++) {
        const char *p = rows[i].path;

        if (row_in(p, parent) && ncand < 64)
            cand[ncand++] = row_name(p);
        else if (!deeper && strncmp(p, parent, plen) == 0 && p[plen] == '.' &&
                 strcmp(row_name(p), key) == 0)
            deeper = p + plen + 1;
    }
    near = cfg_suggest(key, strlen(key), cand, ncand);
    if (near && strcasecmp(near, key) != 0 && deeper) {
        near = NULL; /* "path" at the rule level: say where it goes instead */
    }
    if (near) {
        err(b, "unknown key; did you mean \"%s\"?", near);
    } else if (deeper) {
        char where[PTR_MAX];
        size_t w = b->plen;

        /* The pointer ends with this key: the object's pointer, then the path inside it. */
        memcpy(where, b->ptr, w);
        while (w > 0 && where[w - 1] != '/')
            w--;
        for (const char *p = deeper; *p && w + 2 < sizeof(where); p++)
            where[w++] = *p == '.' ? '/' : *p;
        where[w] = '\0';
        err(b, "unknown key here; did you mean %s?", where);
    } else {
        list[0] = '\0';
        for (size_t i = 0; i < ncand; i++)
            n += (size_t)snprintf(list + n, n < sizeof(list) ? sizeof(list) - n : 0, "%s\"%s\"",
                                  i ? ", " : "", cand[i]);
        err(b, "unknown key; expected one of %s", list);
    }
}

/*
 * Checks that v is an object whose keys are rows inside parent; reports the
 * others, and refuses the keys reserved for a later version. Returns 0 when
 * v is an object (even with bad keys), -1 when it is not one.
 */
static int object_keys(struct rb *b, const json_t *v, const char *parent, int *ret_unsupported)
{
    char gotbuf[GOT_MAX], path[128];
    const char *key;
    json_t *e;

    if (!json_is_object(v)) {
        err(b, "expected an object, got %s", GOT(v));
        return -1;
    }
    json_object_foreach((json_t *)v, key, e)
    {
        const struct cfg_rkey *row;
        size_t mark = push_key(b, key);

        (void)snprintf(path, sizeof(path), "%s.%s", parent, key);
        row = strlen(key) < 64 ? cfg_rules_find(path) : NULL;
        if (!row) {
            unknown_key(b, parent, key);
        } else if (row->type == CFG_RT_UNSUPPORTED) {
            err(b, "not supported yet");
            if (ret_unsupported)
                *ret_unsupported = 1;
        }
        pop(b, mark);
    }
    return 0;
}

/* ---- strings and lists of strings ---------------------------------------- */

typedef int (*string_fn)(struct rb *b, const char *s, size_t n, void *ctx);

/*
 * A string, or a non-empty array of strings: fn for each, with the pointer
 * on the entry. Returns 0 when every entry is good.
 */
static int each_string(struct rb *b, const json_t *v, string_fn fn, void *ctx)
{
    char gotbuf[GOT_MAX];
    const json_t *e;
    size_t i;
    int ok = 1;

    if (json_is_string(v))
        return fn(b, json_string_value(v), json_string_length(v), ctx);
    if (!json_is_array(v)) {
        err(b, "expected a string or an array of strings, got %s", GOT(v));
        return -1;
    }
    if (json_array_size(v) == 0) {
        err(b, "an empty list matches nothing");
        return -1;
    }
    json_array_foreach(v, i, e)
    {
        size_t mark = push_index(b, i);

        if (!json_is_string(e)) {
            err(b, "expected a string, got %s", GOT(e));
            ok = 0;
        } else if (fn(b, json_string_value(e), json_string_length(e), ctx) < 0) {
            ok = 0;
        }
        pop(b, mark);
    }
    return ok ? 0 : -1;
}

static int hset_add(struct rb *b, struct cfg_hset *s, const char *k, size_t n)
{
    if (cfg_hset_add(s, k, n, NULL) < 0) {
        b->oom = 1;
        return -1;
    }
    return 0;
}

/* ---- header names and values --------------------------------------------- */

static int header_name_ok(struct rb *b, const char *s, size_t n)
{
    char showbuf[SHOW_MAX];
    int ok = n > 0 && n <= HEADER_NAME_MAX;

    for (size_t i = 0; ok && i < n; i++)
        ok = is_tchar((unsigned char)s[i]);
    if (!ok) {
        err(b, "%s is not a header name (1 to %d letters, digits and !#$%%&'*+-.^_`|~)", SHOW(s, n),
            HEADER_NAME_MAX);
        return -1;
    }
    return 0;
}

/*
 * A field rules may not touch; NULL when s may be edited. Names compare as
 * origins that read any separator as '-' read them (core_name_fold_eq):
 * Transfer_Encoding is Transfer-Encoding to them.
 */
static const char *forbidden(const char *s, size_t n)
{
    for (size_t i = 0; i < sizeof(forbidden_fields) / sizeof(forbidden_fields[0]); i++) {
        if (core_name_fold_eq((struct core_str){s, n}, forbidden_fields[i],
                              strlen(forbidden_fields[i])))
            return forbidden_fields[i];
    }
    return NULL;
}

/* Bytes allowed in a header value: visible ASCII, obs-text, SP, HTAB. */
static int value_byte_ok(unsigned char ch)
{
    return ch == '\t' || (ch >= 0x20 && ch != 0x7f);
}

/* ---- templates ----------------------------------------------------------- */

enum tpl_use {
    TPL_HEADER,   /* a header value */
    TPL_LOCATION, /* redirect.to: no whitespace either */
};

/* Length of a placeholder "{word}" at s (n bytes left), or 0 when s is a literal '{'. */
static size_t placeholder_len(const char *s, size_t n)
{
    size_t i = 1;

    while (i < n && is_name_char((unsigned char)s[i], "_"))
        i++;
    return i > 1 && i < n && s[i] == '}' ? i + 1 : 0;
}

static int tvar_of(const char *s, size_t n)
{
    for (int v = 1; v < CFG_TV_COUNT; v++) {
        if (strlen(cfg_tvar_names[v]) == n && memcmp(cfg_tvar_names[v], s, n) == 0)
            return v;
    }
    return -1;
}

static int build_tpl(struct rb *b, const char *s, size_t n, enum tpl_use use, struct cfg_tpl *t)
{
    char showbuf[SHOW_MAX];
    size_t nparts = 0, lit_len = 0, i;
    int ok = 1, in_lit = 0;

    /* First pass: check, and count the parts. */
    for (i = 0; i < n;) {
        size_t pl = s[i] == '{' ? placeholder_len(s + i, n - i) : 0;

        if (pl) {
            if (tvar_of(s + i + 1, pl - 2) < 0) {
                const char *near =
                    cfg_suggest(s + i + 1, pl - 2, cfg_tvar_names + 1, CFG_TV_COUNT - 1);

                if (near)
                    err(b, "unknown placeholder %s; did you mean \"{%s}\"?", SHOW(s + i, pl), near);
                else
                    err(b,
                        "unknown placeholder %s; the placeholders are {scheme}, {host}, {path}, "
                        "{query}, {uri}, {method}, {client_ip}",
                        SHOW(s + i, pl));
                ok = 0;
            }
            nparts++;
            in_lit = 0;
            i += pl;
            continue;
        }
        unsigned char ch = (unsigned char)s[i];
        if (!value_byte_ok(ch) || (use == TPL_LOCATION && (ch == ' ' || ch == '\t'))) {
            err(b, "byte 0x%02x at offset %zu is not allowed in %s", ch, i,
                use == TPL_LOCATION ? "a URL (no spaces or control characters)"
                                    : "a header value (no control characters)");
            ok = 0;
            break;
        }
        if (!in_lit)
            nparts++;
        in_lit = 1;
        lit_len++;
        i++;
    }
    if (!ok)
        return -1;
    t->text = dupn(b, s, n);
    t->parts = calloc(nparts ? nparts : 1, sizeof(*t->parts));
    if (!t->text || !t->parts) {
        b->oom = 1;
        return -1;
    }
    t->lit_len = (uint32_t)lit_len;
    /* Second pass: literal parts point into text. */
    for (i = 0; i < n;) {
        size_t pl = s[i] == '{' ? placeholder_len(s + i, n - i) : 0;
        struct cfg_tpart *p = &t->parts[t->nparts];

        if (pl) {
            p->var = (uint8_t)tvar_of(s + i + 1, pl - 2);
            t->nparts++;
            i += pl;
            continue;
        }
        if (t->nparts == 0 || t->parts[t->nparts - 1].var != CFG_TV_LITERAL) {
            p->var = CFG_TV_LITERAL;
            p->lit = t->text + i;
            p->len = 0;
            t->nparts++;
        }
        t->parts[t->nparts - 1].len++;
        i++;
    }
    return 0;
}

static void tpl_free(struct cfg_tpl *t)
{
    free(t->parts);
    free(t->text);
    *t = (struct cfg_tpl){0};
}

/* ---- files from the config folder ---------------------------------------- */

static const char *content_type_for(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".htm", "text/html; charset=utf-8"},
        {".txt", "text/plain; charset=utf-8"},
        {".json", "application/json"},
        {".css", "text/css"},
        {".js", "text/javascript"},
        {".svg", "image/svg+xml"},
        {".xml", "application/xml"},
    };
    const char *dot = strrchr(name, '.'), *slash = strrchr(name, '/');

    if (dot && (!slash || dot > slash)) {
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
            if (strcasecmp(dot, types[i].ext) == 0)
                return types[i].type;
        }
    }
    return "application/octet-stream";
}

static const char *size_text(size_t max)
{
    return max == CFG_RULES_MAX_FILE ? "1 MiB" : "64 MiB";
}

/*
 * Reads a file named by the rules from the config folder, at most max
 * bytes; problems at the current pointer. Returns 0 with the bytes in
 * *ret_data (NUL-terminated, caller frees) and the real path in *ret_real,
 * or -1.
 */
static int read_config_file(struct rb *b, const char *name, size_t nlen, size_t max,
                            char **ret_data, size_t *ret_len, char **ret_real)
{
    char showbuf[SHOW_MAX], *path = NULL, *real = NULL, *data = NULL, ebuf[128];
    size_t len = 0, dlen;
    struct stat st;
    int fd = -1;

    if (nlen == 0) {
        err(b, "expected a file name, got \"\"");
        return -1;
    }
    if (memchr(name, '\0', nlen)) {
        err(b, "%s is not a file name (a NUL byte)", SHOW(name, nlen));
        return -1;
    }
    if (name[0] == '/') {
        err(b, "%s is an absolute path; name a file inside the config folder", SHOW(name, nlen));
        return -1;
    }
    for (const char *p = name; p < name + nlen;) {
        const char *slash = memchr(p, '/', (size_t)(name + nlen - p));
        size_t clen = slash ? (size_t)(slash - p) : (size_t)(name + nlen - p);

        if (clen == 2 && p[0] == '.' && p[1] == '.') {
            err(b, "%s has a \"..\" component; name a file inside the config folder",
                SHOW(name, nlen));
            return -1;
        }
        p += clen + 1;
    }
    if (!b->dir) {
        err(b,
            "%s: files are read from the config folder, and this document was loaded "
            "without one",
            SHOW(name, nlen));
        return -1;
    }
    if (!b->dir_real && !b->dir_failed) {
        b->dir_real = realpath(b->dir, NULL);
        if (!b->dir_real) {
            b->dir_failed = 1;
            err(b, "the config folder %s: %s", SHOW(b->dir, strlen(b->dir)),
                strerror_r(errno, ebuf, sizeof(ebuf)));
            return -1;
        }
    }
    if (!b->dir_real)
        return -1;
    if (asprintf(&path, "%s/%.*s", b->dir_real, (int)nlen, name) < 0) {
        b->oom = 1;
        return -1;
    }
    real = realpath(path, NULL);
    if (!real) {
        if (errno == ENOENT || errno == ENOTDIR)
            err(b, "%s: no such file in the config folder", SHOW(name, nlen));
        else
            err(b, "%s: %s", SHOW(name, nlen), strerror_r(errno, ebuf, sizeof(ebuf)));
        goto fail;
    }
    dlen = strlen(b->dir_real);
    /* "/" as the folder: every path is inside it. */
    if (!(dlen == 1 || (strncmp(real, b->dir_real, dlen) == 0 && real[dlen] == '/'))) {
        err(b, "%s is a symbolic link leading outside the config folder", SHOW(name, nlen));
        goto fail;
    }
    /* O_NONBLOCK: a FIFO must not hang the validator. */
    fd = open(real, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0 || fstat(fd, &st) < 0) {
        err(b, "%s: %s", SHOW(name, nlen), strerror_r(errno, ebuf, sizeof(ebuf)));
        goto fail;
    }
    if (S_ISDIR(st.st_mode)) {
        err(b, "%s is a directory, not a file", SHOW(name, nlen));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        err(b, "%s is not a regular file", SHOW(name, nlen));
        goto fail;
    }
    if ((unsigned long long)st.st_size > max) {
        err(b, "%s is larger than %s (%lld bytes)", SHOW(name, nlen), size_text(max),
            (long long)st.st_size);
        goto fail;
    }
    data = malloc((size_t)st.st_size + 2);
    if (!data) {
        b->oom = 1;
        goto fail;
    }
    /* Read to EOF, at most one byte past st_size: the file may have grown. */
    for (;;) {
        ssize_t got = read(fd, data + len, (size_t)st.st_size + 1 - len);

        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            err(b, "%s: %s", SHOW(name, nlen), strerror_r(errno, ebuf, sizeof(ebuf)));
            goto fail;
        }
        if (got == 0)
            break;
        len += (size_t)got;
        if (len > (size_t)st.st_size) {
            err(b, "%s changed while it was read", SHOW(name, nlen));
            goto fail;
        }
    }
    data[len] = '\0';
    (void)close(fd);
    free(path);
    *ret_data = data;
    *ret_len = len;
    *ret_real = real;
    return 0;
fail:
    if (fd >= 0)
        (void)close(fd);
    free(data);
    free(real);
    free(path);
    return -1;
}

static struct cfg_page *page_add(struct rb *b, struct cfg_page *pg)
{
    struct cfg_page **v = realloc(b->rs->pages, (b->rs->npages + 1) * sizeof(*v));

    if (!v) {
        b->oom = 1;
        return NULL;
    }
    b->rs->pages = v;
    v[b->rs->npages++] = pg;
    return pg;
}

static void page_free(struct cfg_page *pg)
{
    if (!pg)
        return;
    free(pg->data);
    free(pg->content_type);
    free(pg->file);
    free(pg);
}

/* Real paths of the pages loaded, parallel to rs->pages (NULL for a body). */
struct page_reals {
    char **v;
    size_t n;
};

/*
 * The page of file v (a JSON string at the current pointer), loaded once
 * per real path and content type. NULL on a problem.
 */
static struct cfg_page *file_page(struct rb *b, struct page_reals *pr, const json_t *v,
                                  const char *content_type)
{
    char gotbuf[GOT_MAX], *data = NULL, *real = NULL;
    const char *name;
    size_t len, nlen;
    struct cfg_page *pg;

    if (!json_is_string(v)) {
        err(b, "expected a file name (a string), got %s", GOT(v));
        return NULL;
    }
    name = json_string_value(v);
    nlen = json_string_length(v);
    if (read_config_file(b, name, nlen, CFG_RULES_MAX_FILE, &data, &len, &real) < 0)
        return NULL;
    if (!content_type)
        content_type = content_type_for(name);
    for (size_t i = 0; i < pr->n; i++) {
        struct cfg_page *o = b->rs->pages[i];

        if (pr->v[i] && strcmp(pr->v[i], real) == 0 && strcmp(o->content_type, content_type) == 0) {
            free(data);
            free(real);
            return o;
        }
    }
    pg = calloc(1, sizeof(*pg));
    char **nv = realloc(pr->v, (pr->n + 1) * sizeof(*nv));
    if (nv)
        pr->v = nv;
    if (!pg || !nv) {
        free(pg);
        free(data);
        free(real);
        b->oom = 1;
        return NULL;
    }
    pg->data = data;
    pg->len = len;
    pg->content_type = strdup(content_type);
    pg->file = dupn(b, name, nlen);
    if (!pg->content_type || !pg->file || !page_add(b, pg)) {
        page_free(pg);
        free(real);
        b->oom = 1;
        return NULL;
    }
    pr->v[pr->n++] = real;
    return pg;
}

/* ---- statuses ------------------------------------------------------------ */

/* The status at v for the row at path; -1 on a problem. */
static int status_of(struct rb *b, const json_t *v, const char *path)
{
    const struct cfg_rkey *row = cfg_rules_find(path);
    char gotbuf[GOT_MAX], list[128];
    json_int_t s = json_is_integer(v) ? json_integer_value(v) : -1;
    size_t n = 0;

    if (row->statuses) {
        for (size_t i = 0; i < row->nstatuses; i++) {
            if (s == row->statuses[i])
                return (int)s;
        }
        list[0] = '\0';
        for (size_t i = 0; i < row->nstatuses; i++)
            n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%u", i ? ", " : "",
                                  (unsigned)row->statuses[i]);
        err(b, "expected one of %s, got %s", list, GOT(v));
        return -1;
    }
    if (s >= row->smin && s <= row->smax)
        return (int)s;
    err(b, "expected a status from %u to %u, got %s", (unsigned)row->smin, (unsigned)row->smax,
        GOT(v));
    return -1;
}

/* ---- addresses and lists ------------------------------------------------- */

struct ranges {
    struct cfg_iprange *v;
    size_t n, cap;
};

static int ranges_add(struct rb *b, struct ranges *r, const struct cfg_iprange *a, size_t n)
{
    if (r->n + n > r->cap) {
        size_t cap = r->cap ? r->cap : 8;
        while (cap < r->n + n)
            cap *= 2;
        struct cfg_iprange *v = realloc(r->v, cap * sizeof(*v));
        if (!v) {
            b->oom = 1;
            return -1;
        }
        r->v = v;
        r->cap = cap;
    }
    memcpy(r->v + r->n, a, n * sizeof(*a));
    r->n += n;
    return 0;
}

static int cidr_entry(struct rb *b, const char *s, size_t n, struct ranges *r)
{
    char showbuf[SHOW_MAX], why[160];
    struct cfg_iprange one;

    if (cfg_cidr_parse(s, n, &one, why, sizeof(why)) < 0) {
        if (strcmp(why, "is not an address or CIDR") == 0)
            err(b, "%s is not an address or CIDR", SHOW(s, n));
        else
            err(b, "%s", why);
        return -1;
    }
    return ranges_add(b, r, &one, 1);
}

static int list_entry(struct rb *b, const char *s, size_t n, void *ctx)
{
    char showbuf[SHOW_MAX];

    if (n && s[0] == '@') {
        err(b, "%s: a list cannot refer to another list", SHOW(s, n));
        return -1;
    }
    return cidr_entry(b, s, n, ctx);
}

static void build_lists(struct rb *b, const json_t *lists)
{
    char gotbuf[GOT_MAX], showbuf[SHOW_MAX];
    const char *key;
    json_t *v;
    size_t mark = push_key(b, "lists");

    if (!json_is_object(lists)) {
        err(b, "expected an object (list name -> addresses and CIDRs), got %s", GOT(lists));
        pop(b, mark);
        return;
    }
    b->lists = calloc(json_object_size(lists) + 1, sizeof(*b->lists));
    b->list_names = calloc(json_object_size(lists) + 1, sizeof(*b->list_names));
    if (!b->lists || !b->list_names) {
        b->oom = 1;
        pop(b, mark);
        return;
    }
    json_object_foreach((json_t *)lists, key, v)
    {
        size_t m2 = push_key(b, key);
        struct rlist *l = &b->lists[b->nlists];
        struct ranges r = {0};
        int ok = 1;

        if (!name_ok(key, strlen(key), "_-")) {
            err(b, "%s is not a list name (1 to 64 letters, digits, '_', '-')",
                SHOW(key, strlen(key)));
            ok = 0;
        }
        if (json_is_array(v) && json_array_size(v) == 0) {
            err(b, "an empty list matches nothing");
            ok = 0;
        } else if (each_string(b, v, list_entry, &r) < 0) {
            ok = 0;
        }
        l->name = key;
        l->v = r.v;
        l->n = r.n;
        l->ok = ok;
        b->list_names[b->nlists++] = key;
        pop(b, m2);
    }
    pop(b, mark);
}

static const struct rlist *find_list(struct rb *b, const char *name, size_t n)
{
    for (size_t i = 0; i < b->nlists; i++) {
        if (strlen(b->lists[i].name) == n && memcmp(b->lists[i].name, name, n) == 0)
            return &b->lists[i];
    }
    return NULL;
}

static int client_ip_entry(struct rb *b, const char *s, size_t n, void *ctx)
{
    char showbuf[SHOW_MAX];
    struct ranges *r = ctx;

    if (n && s[0] == '@') {
        const struct rlist *l = find_list(b, s + 1, n - 1);

        if (l)
            return l->ok ? ranges_add(b, r, l->v, l->n) : -1; /* its problems are reported */
        const char *near = cfg_suggest(s + 1, n - 1, b->list_names, b->nlists);
        if (near) {
            /* a list's name is the user's bytes too: shown escaped, like the entry */
            char at[SHOW_MAX], nearbuf[SHOW_MAX];

            snprintf(at, sizeof(at), "@%s", near);
            err(b, "unknown list %s; did you mean %s?", SHOW(s, n),
                show(at, strlen(at), nearbuf, sizeof(nearbuf)));
        } else if (b->nlists)
            err(b, "unknown list %s; the lists are defined in /lists", SHOW(s, n));
        else
            err(b, "unknown list %s; no lists are defined (/lists)", SHOW(s, n));
        return -1;
    }
    return cidr_entry(b, s, n, r);
}

/* ---- match --------------------------------------------------------------- */

static void match_free(struct cfg_match *m)
{
    if (!m)
        return;
    cfg_hset_free(&m->hosts);
    cfg_hset_free(&m->host_suffixes);
    cfg_hset_free(&m->paths);
    cfg_hset_free(&m->path_prefixes);
    cfg_hset_free(&m->methods);
    free(m->client_ip.v);
    for (size_t i = 0; i < m->nheaders; i++) {
        free(m->headers[i].name);
        cfg_hset_free(&m->headers[i].values);
    }
    free(m->headers);
    match_free(m->not );
    free(m);
}

static int host_entry(struct rb *b, const char *s, size_t n, void *ctx)
{
    struct cfg_match *m = ctx;
    char showbuf[SHOW_MAX];
    int suffix = n > 2 && s[0] == '*' && s[1] == '.';
    const char *h = suffix ? s + 1 : s; /* keeps the '.' of "*.": ".example.com" */
    size_t hn = suffix ? n - 1 : n;
    int ok = hn > 0 && hn <= 253;

    for (size_t i = suffix ? 1 : 0; ok && i < hn; i++) {
        if (!is_name_char((unsigned char)h[i], "-._"))
            ok = 0;
    }
    if (ok && (h[hn - 1] == '.' || (!suffix && h[0] == '.')))
        ok = 0;
    if (!ok) {
        if (memchr(s, ':', n))
            err(b, "%s: write the host without a port (the port is ignored)", SHOW(s, n));
        else
            err(b,
                "%s is not a host name (letters, digits, '-', '.'; \"*.example.com\" for its "
                "subdomains)",
                SHOW(s, n));
        return -1;
    }
    return hset_add(b, suffix ? &m->host_suffixes : &m->hosts, h, hn);
}

static int path_entry(struct rb *b, const char *s, size_t n, void *ctx)
{
    struct cfg_match *m = ctx;
    char showbuf[SHOW_MAX];
    int prefix = n >= 2 && s[n - 2] == '/' && s[n - 1] == '*';
    size_t pn = prefix ? n - 1 : n; /* "/x/" followed by '*': "/x/" */
    /* the health check named as the rule's paths compare */
    int (*cmp)(const char *, const char *, size_t) = m->paths.icase ? strncasecmp : strncmp;
    long len;

    if (n == 0 || s[0] != '/') {
        err(b, "%s: a path starts with '/'", SHOW(s, n));
        return -1;
    }
    if (memchr(s, '?', n)) {
        err(b, "%s: a path has no query ('?')", SHOW(s, n));
        return -1;
    }
    if (memchr(s, '*', pn)) {
        err(b, "%s: '*' only ends a prefix, as in \"/x/*\"", SHOW(s, n));
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x21 || s[i] == 0x7f) {
            err(b, "%s: a path has no spaces or control characters", SHOW(s, n));
            return -1;
        }
    }
    if (buf_reserve(&b->scratch, pn + 1) < 0) {
        b->oom = 1;
        return -1;
    }
    len = cfg_path_normalise(s, pn, b->scratch.p, b->scratch.cap);
    if (len < 0) {
        err(b,
            "%s cannot be normalised (a \"..\" above the root, %%00, or a '%%' without two hex "
            "digits)",
            SHOW(s, n));
        return -1;
    }
    if (prefix) {
        size_t hl = sizeof(CFG_HEALTHZ_PATH) - 1;

        /* The prefix "/" covers everything; a rule must name the health check more precisely. */
        if (len > 1 && (size_t)len <= hl && cmp(b->scratch.p, CFG_HEALTHZ_PATH, (size_t)len) == 0)
            m->names_healthz = 1;
    } else if ((size_t)len == sizeof(CFG_HEALTHZ_PATH) - 1 &&
               cmp(b->scratch.p, CFG_HEALTHZ_PATH, (size_t)len) == 0) {
        m->names_healthz = 1;
    }
    return hset_add(b, prefix ? &m->path_prefixes : &m->paths, b->scratch.p, (size_t)len);
}

static int method_entry(struct rb *b, const char *s, size_t n, void *ctx)
{
    static const char *const known[] = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
                                        "CONNECT", "OPTIONS", "TRACE", "PATCH"};
    struct cfg_match *m = ctx;
    char showbuf[SHOW_MAX];
    int ok = n > 0;

    for (size_t i = 0; ok && i < n; i++)
        ok = is_tchar((unsigned char)s[i]);
    if (!ok) {
        err(b, "%s is not a method", SHOW(s, n));
        return -1;
    }
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (strlen(known[i]) == n && strncasecmp(known[i], s, n) == 0 &&
            memcmp(known[i], s, n) != 0) {
            err(b, "%s: methods are case-sensitive; did you mean \"%s\"?", SHOW(s, n), known[i]);
            return -1;
        }
    }
    return hset_add(b, &m->methods, s, n);
}

static int scheme_entry(struct rb *b, const char *s, size_t n, void *ctx)
{
    struct cfg_match *m = ctx;
    char showbuf[SHOW_MAX];

    if (n == 4 && memcmp(s, "http", 4) == 0)
        m->schemes |= 1;
    else if (n == 5 && memcmp(s, "https", 5) == 0)
        m->schemes |= 2;
    else {
        err(b, "expected \"http\" or \"https\", got %s", SHOW(s, n));
        return -1;
    }
    return 0;
}

static int hvalue_entry(struct rb *b, const char *s, size_t n, void *ctx)
{
    struct cfg_hdr_match *h = ctx;
    char showbuf[SHOW_MAX];

    for (size_t i = 0; i < n; i++) {
        if (!value_byte_ok((unsigned char)s[i])) {
            err(b, "%s: a header value has no control characters", SHOW(s, n));
            return -1;
        }
    }
    return hset_add(b, &h->values, s, n);
}

static int build_headers_match(struct rb *b, const json_t *v, struct cfg_match *m)
{
    char gotbuf[GOT_MAX];
    const char *key;
    json_t *e;
    int ok = 1;

    if (!json_is_object(v)) {
        err(b, "expected an object (header name -> values, true or false), got %s", GOT(v));
        return -1;
    }
    if (json_object_size(v) == 0)
        return 0;
    m->headers = calloc(json_object_size(v), sizeof(*m->headers));
    if (!m->headers) {
        b->oom = 1;
        return -1;
    }
    json_object_foreach((json_t *)v, key, e)
    {
        size_t mark = push_key(b, key), klen = strlen(key);
        struct cfg_hdr_match *h = &m->headers[m->nheaders];

        cfg_hset_init(&h->values, 0);
        if (header_name_ok(b, key, klen) < 0) {
            ok = 0;
        } else if (json_is_true(e) || json_is_false(e)) {
            h->test = json_is_true(e) ? CFG_HT_PRESENT : CFG_HT_ABSENT;
        } else if (each_string(b, e, hvalue_entry, h) < 0) {
            ok = 0;
        } else {
            h->test = CFG_HT_VALUES;
        }
        h->name = dupn(b, key, klen);
        h->name_len = klen;
        m->nheaders++;
        pop(b, mark);
    }
    return ok ? 0 : -1;
}

/*
 * A match object at the current pointer; *ret NULL for {} at the top.
 * icase: its paths compare without case (cfg_rule_kind_guards()).
 */
static int build_match(struct rb *b, const json_t *v, int depth, int icase, struct cfg_match **ret)
{
    struct cfg_match *m;
    const char *key;
    json_t *e;
    int ok = 1;

    *ret = NULL;
    if (object_keys(b, v, "rules[].match", NULL) < 0)
        return -1;
    if (json_object_size(v) == 0) {
        if (depth == 0)
            return 0; /* every request, as without "match" */
        err(b, "an empty match inside \"not\" matches no request");
        return -1;
    }
    m = calloc(1, sizeof(*m));
    if (!m) {
        b->oom = 1;
        return -1;
    }
    cfg_hset_init(&m->hosts, 1);
    cfg_hset_init(&m->host_suffixes, 1);
    cfg_hset_init(&m->paths, icase);
    cfg_hset_init(&m->path_prefixes, icase);
    cfg_hset_init(&m->methods, 1);
    json_object_foreach((json_t *)v, key, e)
    {
        size_t mark = push_key(b, key);
        int r = 0;

        if (strcmp(key, "host") == 0) {
            m->has |= CFG_M_HOST;
            r = each_string(b, e, host_entry, m);
        } else if (strcmp(key, "path") == 0) {
            m->has |= CFG_M_PATH;
            r = each_string(b, e, path_entry, m);
        } else if (strcmp(key, "method") == 0) {
            m->has |= CFG_M_METHOD;
            r = each_string(b, e, method_entry, m);
        } else if (strcmp(key, "scheme") == 0) {
            m->has |= CFG_M_SCHEME;
            r = each_string(b, e, scheme_entry, m);
        } else if (strcmp(key, "client_ip") == 0) {
            struct ranges rr = {0};

            m->has |= CFG_M_CLIENT_IP;
            r = each_string(b, e, client_ip_entry, &rr);
            cfg_ipset_build(&m->client_ip, rr.v, rr.n);
        } else if (strcmp(key, "header") == 0) {
            m->has |= CFG_M_HEADER;
            r = build_headers_match(b, e, m);
        } else if (strcmp(key, "not") == 0) {
            m->has |= CFG_M_NOT;
            if (depth >= CFG_RULES_MAX_NOT_DEPTH) {
                err(b, "\"not\" nested more than %d deep", CFG_RULES_MAX_NOT_DEPTH);
                r = -1;
            } else {
                r = build_match(b, e, depth + 1, icase, &m->not );
            }
        }
        if (r < 0)
            ok = 0;
        pop(b, mark);
    }
    *ret = m;
    return ok ? 0 : -1;
}

/* ---- header edits -------------------------------------------------------- */

static int edit_add(struct rb *b, struct cfg_hedits *he, uint8_t op, const char *name, size_t nlen,
                    const json_t *value)
{
    char gotbuf[GOT_MAX], showbuf[SHOW_MAX], folded[HEADER_NAME_MAX];
    struct cfg_hedit *e;
    struct cfg_hedit *v;
    long id;

    if (he->n >= CFG_RULES_MAX_EDITS) {
        err(b, "more than %d header edits in one rule and direction", CFG_RULES_MAX_EDITS);
        return -1;
    }
    if (value && !json_is_string(value)) {
        err(b, "expected a string, got %s", GOT(value));
        return -1;
    }
    /*
     * One id for every spelling an origin reads as this name (X_Client_IP
     * and X-Client-IP): a set or remove drops them all from the message.
     */
    if (nlen > sizeof(folded)) {
        err(b, "%s is not a header name", SHOW(name, nlen));
        return -1;
    }
    core_name_fold(folded, name, nlen);
    id = cfg_hset_add(&b->rs->edit_names, folded, nlen, NULL);
    if (id < 0) {
        b->oom = 1;
        return -1;
    }
    if (id >= EDIT_NAMES_MAX) {
        err(b, "more than %d distinct header names are edited in this config", EDIT_NAMES_MAX);
        return -1;
    }
    v = realloc(he->v, (he->n + 1) * sizeof(*v));
    if (!v) {
        b->oom = 1;
        return -1;
    }
    he->v = v;
    e = &he->v[he->n];
    *e = (struct cfg_hedit){.op = op, .name_id = (uint32_t)id, .name_len = nlen};
    e->name = dupn(b, name, nlen);
    if (!e->name)
        return -1;
    he->n++;
    if (value && build_tpl(b, json_string_value(value), json_string_length(value), TPL_HEADER,
                           &e->value) < 0)
        return -1;
    return 0;
}

/* Checks an edited name: a header name that rules may touch. */
static int edit_name_ok(struct rb *b, const char *name, size_t n, const char *content_type_ptr)
{
    char showbuf[SHOW_MAX];
    const char *f;

    if (header_name_ok(b, name, n) < 0)
        return -1;
    f = forbidden(name, n);
    if (f && strncasecmp(f, name, n) == 0) { /* as written, not another spelling */
        err(b, "%s is a framing or hop-by-hop field; rules cannot edit it", SHOW(name, n));
        return -1;
    }
    if (f) {
        err(b,
            "%s is %s to origins that read any separator as '-' (a framing or hop-by-hop "
            "field); rules cannot edit it",
            SHOW(name, n), f);
        return -1;
    }
    if (content_type_ptr &&
        core_name_fold_eq((struct core_str){name, n}, "Content-Type", sizeof("Content-Type") - 1)) {
        err(b, "set the Content-Type with %s", content_type_ptr);
        return -1;
    }
    return 0;
}

/* A name edited twice in one block (compared as in forbidden()): the first pointer, or NULL. */
struct seen {
    struct cfg_hset names;
    char **where;
    size_t n;
};

static int seen_check(struct rb *b, struct seen *s, const char *name, size_t n)
{
    char showbuf[SHOW_MAX], folded[HEADER_NAME_MAX];
    int dup = 0;
    long i;

    if (n > sizeof(folded)) {
        err(b, "%s is not a header name", SHOW(name, n));
        return -1;
    }
    core_name_fold(folded, name, n); /* X_A and X-A are one name to some origins */
    i = cfg_hset_add(&s->names, folded, n, &dup);

    if (i < 0) {
        b->oom = 1;
        return -1;
    }
    if (dup) {
        err(b, "%s is also edited by %s", SHOW(name, n), s->where[i]);
        return -1;
    }
    char **w = realloc(s->where, ((size_t)i + 1) * sizeof(*w));
    if (!w) {
        b->oom = 1;
        return -1;
    }
    s->where = w;
    w[i] = dupn(b, b->ptr, b->plen);
    s->n = (size_t)i + 1;
    return w[i] ? 0 : -1;
}

static void seen_free(struct seen *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->where[i]);
    free(s->where);
    cfg_hset_free(&s->names);
}

/* request_headers / response_headers: {"remove": [...], "set": {...}, "add": {...}}. */
static int build_edits(struct rb *b, const json_t *v, const char *row, struct cfg_hedits *he)
{
    static const char *const order[] = {"remove", "set", "add"};
    char gotbuf[GOT_MAX];
    struct seen seen = {0};
    int ok = 1;

    if (object_keys(b, v, row, NULL) < 0)
        return -1;
    cfg_hset_init(&seen.names, 1);
    /* Stored in the order they apply: remove, then set, then add. */
    for (size_t o = 0; o < 3; o++) {
        const json_t *part = json_object_get(v, order[o]);
        size_t mark;

        if (!part)
            continue;
        mark = push_key(b, order[o]);
        if (o == 0) {
            const json_t *e;
            size_t i;

            if (!json_is_array(part)) {
                err(b, "expected an array of header names, got %s", GOT(part));
                ok = 0;
            } else {
                json_array_foreach(part, i, e)
                {
                    size_t m2 = push_index(b, i);

                    if (!json_is_string(e)) {
                        err(b, "expected a header name (a string), got %s", GOT(e));
                        ok = 0;
                    } else if (edit_name_ok(b, json_string_value(e), json_string_length(e), NULL) <
                                   0 ||
                               seen_check(b, &seen, json_string_value(e), json_string_length(e)) <
                                   0 ||
                               edit_add(b, he, CFG_HE_REMOVE, json_string_value(e),
                                        json_string_length(e), NULL) < 0) {
                        ok = 0;
                    }
                    pop(b, m2);
                }
            }
        } else if (!json_is_object(part)) {
            err(b, "expected an object (header name -> value), got %s", GOT(part));
            ok = 0;
        } else {
            const char *key;
            json_t *e;

            json_object_foreach((json_t *)part, key, e)
            {
                size_t m2 = push_key(b, key), klen = strlen(key);

                if (edit_name_ok(b, key, klen, NULL) < 0) {
                    ok = 0;
                } else if (o == 1) {
                    if (seen_check(b, &seen, key, klen) < 0 ||
                        edit_add(b, he, CFG_HE_SET, key, klen, e) < 0)
                        ok = 0;
                } else if (json_is_array(e)) {
                    const json_t *ae;
                    size_t i;

                    if (json_array_size(e) == 0) {
                        err(b, "expected a value or a non-empty array of values, got []");
                        ok = 0;
                    }
                    json_array_foreach(e, i, ae)
                    {
                        size_t m3 = push_index(b, i);

                        if (edit_add(b, he, CFG_HE_ADD, key, klen, ae) < 0)
                            ok = 0;
                        pop(b, m3);
                    }
                } else if (edit_add(b, he, CFG_HE_ADD, key, klen, e) < 0) {
                    ok = 0;
                }
                pop(b, m2);
            }
        }
        pop(b, mark);
    }
    seen_free(&seen);
    return ok ? 0 : -1;
}

static void hedits_free(struct cfg_hedits *he)
{
    for (size_t i = 0; i < he->n; i++) {
        free(he->v[i].name);
        tpl_free(&he->v[i].value);
    }
    free(he->v);
    *he = (struct cfg_hedits){0};
}

/* ---- actions ------------------------------------------------------------- */

static int build_rewrite(struct rb *b, const json_t *v, struct cfg_rewrite *rw)
{
    static const char *const keys[] = {"strip_prefix", "add_prefix", "path"};
    char gotbuf[GOT_MAX], showbuf[SHOW_MAX];
    const char *first = NULL, *key;
    json_t *e;
    int ok = 1;

    if (object_keys(b, v, "rules[].rewrite", NULL) < 0)
        return -1;
    json_object_foreach((json_t *)v, key, e)
    {
        int kind = 0;

        for (int k = 0; k < 3; k++) {
            if (strcmp(key, keys[k]) == 0)
                kind = k + 1;
        }
        if (!kind)
            continue;
        if (first) {
            err(b,
                "\"%s\" and \"%s\" both rewrite; a rewrite has exactly one of strip_prefix, "
                "add_prefix, path",
                first, key);
            ok = 0;
            continue;
        }
        first = key;
        size_t mark = push_key(b, key);
        const char *s = json_string_value(e);
        size_t n = json_string_length(e);
        long len;

        if (!json_is_string(e)) {
            err(b, "expected a path (a string), got %s", GOT(e));
            ok = 0;
        } else if (n == 0 || s[0] != '/' || memchr(s, '?', n)) {
            err(b, "%s: expected a path starting with '/', without a query", SHOW(s, n));
            ok = 0;
        } else if (buf_reserve(&b->scratch, n + 1) < 0) {
            b->oom = 1;
            ok = 0;
        } else if ((len = cfg_path_normalise(s, n, b->scratch.p, b->scratch.cap)) < 0) {
            err(b,
                "%s cannot be normalised (a \"..\" above the root, %%00, or a '%%' without two "
                "hex digits)",
                SHOW(s, n));
            ok = 0;
        } else {
            /* Prefixes without their trailing slash: "/blog/" strips like "/blog". */
            if (kind != CFG_RW_PATH && len > 1 && b->scratch.p[len - 1] == '/')
                len--;
            if (kind != CFG_RW_PATH && len == 1) {
                err(b, "\"/\" as a prefix changes nothing");
                ok = 0;
            } else {
                rw->kind = (uint8_t)kind;
                rw->arg = dupn(b, b->scratch.p, (size_t)len);
                rw->len = (size_t)len;
                if (!rw->arg)
                    ok = 0;
            }
        }
        pop(b, mark);
    }
    if (!first && json_object_size(v) == 0) { /* else its unknown keys were reported */
        err(b, "expected one of \"strip_prefix\", \"add_prefix\", \"path\"");
        ok = 0;
    }
    return ok ? 0 : -1;
}

/* The value of key in object v, with a "missing" problem when required and absent. */
static const json_t *member(struct rb *b, const json_t *v, const char *key, const char *what)
{
    const json_t *e = json_object_get(v, key);

    if (!e && what)
        err(b, "missing \"%s\" (%s)", key, what);
    return e;
}

/* A status member: its default when absent. */
static int status_member(struct rb *b, const json_t *v, const char *row_path)
{
    const struct cfg_rkey *row = cfg_rules_find(row_path);
    const json_t *e = json_object_get(v, "status");
    size_t mark;
    int s;

    if (!e)
        return row->sdef;
    mark = push_key(b, "status");
    s = status_of(b, e, row_path);
    pop(b, mark);
    return s;
}

static int starts_with_ci(const char *s, size_t n, const char *prefix)
{
    size_t pn = strlen(prefix);

    return n >= pn && strncasecmp(s, prefix, pn) == 0;
}

static int build_redirect(struct rb *b, const json_t *v, struct cfg_erule *e)
{
    char gotbuf[GOT_MAX], showbuf[SHOW_MAX];
    const json_t *to;
    int ok = 1, s;

    if (object_keys(b, v, "rules[].redirect", NULL) < 0)
        return -1;
    s = status_member(b, v, "rules[].redirect.status");
    if (s < 0)
        ok = 0;
    e->status = (uint16_t)(s < 0 ? 0 : s);
    to = member(b, v, "to", "the Location: an absolute URL or a path");
    if (!to)
        return -1;
    size_t mark = push_key(b, "to");
    const char *t = json_string_value(to);
    size_t n = json_string_length(to);

    if (!json_is_string(to)) {
        err(b, "expected a string, got %s", GOT(to));
        ok = 0;
    } else if (!((n > 8 && starts_with_ci(t, n, "https://")) ||
                 (n > 7 && starts_with_ci(t, n, "http://")) ||
                 (n > 11 && starts_with_ci(t, n, "{scheme}://")) ||
                 (n >= 1 && t[0] == '/' && (n == 1 || t[1] != '/')))) {
        err(b,
            "%s: expected an absolute http:// or https:// URL, or a path starting with a single "
            "'/'",
            SHOW(t, n));
        ok = 0;
    } else if (build_tpl(b, t, n, TPL_LOCATION, &e->location) < 0) {
        ok = 0;
    }
    pop(b, mark);
    return ok ? 0 : -1;
}

/* Problems of one redirect-map file: the first MAP_PROBLEMS_SHOWN, then a count. */
struct map_problems {
    const char *file; /* shown */
    size_t n;
};

static void __attribute__((format(printf, 4, 5)))
map_err(struct rb *b, struct map_problems *mp, size_t line, const char *fmt, ...)
{
    char *msg = NULL;
    va_list ap;

    if (mp->n++ >= MAP_PROBLEMS_SHOWN)
        return;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    if (!msg) {
        b->oom = 1;
        return;
    }
    err(b, "%s:%zu: %s", mp->file, line, msg);
    free(msg);
}

static int to_ok(const char *s, size_t n)
{
    if (!((n > 8 && starts_with_ci(s, n, "https://")) ||
          (n > 7 && starts_with_ci(s, n, "http://")) ||
          (n >= 1 && s[0] == '/' && (n == 1 || s[1] != '/'))))
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];

        if (ch <= 0x20 || ch >= 0x7f)
            return 0;
    }
    return 1;
}

/*
 * Parses a redirect map: one "FROM TO" a line, '#' comments. The targets
 * go into one block (to[0] is its start, see cfg_rules_free()).
 */
static int parse_map(struct rb *b, const char *data, size_t len, struct map_problems *mp,
                     struct cfg_redirect_map *map)
{
    char showbuf[SHOW_MAX], showbuf2[SHOW_MAX];
    struct buf tos = {0};
    uint32_t *to_off = NULL, *lines = NULL;
    size_t cap = 0, nent = 0, lineno = 0;
    int too_many = 0;

    cfg_hset_init(&map->from, 0);
    /* Sized once from the line count and the file's size: no regrowth per entry. */
    for (const char *p = data; (p = memchr(p, '\n', (size_t)(data + len - p))) != NULL; p++)
        cap++;
    cap = cap + 1 < CFG_RULES_MAX_MAP_ENTRIES ? cap + 1 : CFG_RULES_MAX_MAP_ENTRIES;
    to_off = malloc(cap * sizeof(*to_off));
    lines = malloc(cap * sizeof(*lines));
    if (!to_off || !lines || buf_reserve(&tos, len + 1) < 0) {
        free(to_off);
        free(lines);
        free(tos.p);
        b->oom = 1;
        return -1;
    }
    for (const char *p = data, *end = data + len; p < end && !too_many;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *tok[3];
        size_t tlen[3], ntok = 0;

        lineno++;
        if (le > p && le[-1] == '\r')
            le--;
        /* Fields separated by spaces and tabs; a '#' starting a field starts a comment. */
        for (const char *q = p; q < le;) {
            while (q < le && (*q == ' ' || *q == '\t'))
                q++;
            if (q == le || *q == '#')
                break;
            const char *ts = q;
            while (q < le && *q != ' ' && *q != '\t')
                q++;
            if (ntok < 3) {
                tok[ntok] = ts;
                tlen[ntok] = (size_t)(q - ts);
            }
            ntok++;
        }
        p = nl ? nl + 1 : end;
        if (ntok == 0)
            continue;
        if (ntok != 2) {
            if (ntok == 1)
                map_err(b, mp, lineno, "FROM %s without TO", SHOW(tok[0], tlen[0]));
            else
                map_err(b, mp, lineno,
                        "expected FROM TO, got %zu fields (a '#' comment follows "
                        "a space)",
                        ntok);
            continue;
        }
        const char *from = tok[0], *to = tok[1];
        size_t fn = tlen[0], tn = tlen[1];
        int bad = 0;

        for (size_t i = 0; i < fn; i++) {
            if ((unsigned char)from[i] < 0x20 || from[i] == 0x7f)
                bad = 1;
        }
        if (fn == 0 || from[0] != '/' || memchr(from, '?', fn) || bad) {
            map_err(b, mp, lineno,
                    "FROM %s: expected a path starting with '/', without a query or control "
                    "characters",
                    SHOW(from, fn));
            continue;
        }
        if (!to_ok(to, tn)) {
            map_err(b, mp, lineno,
                    "TO %s: expected a path starting with a single '/' or an absolute http:// or "
                    "https:// URL, in ASCII without control characters",
                    show(to, tn, showbuf2, sizeof(showbuf2)));
            continue;
        }
        if (buf_reserve(&b->scratch, fn + 1) < 0) {
            b->oom = 1;
            break;
        }
        long nlen = cfg_path_normalise(from, fn, b->scratch.p, b->scratch.cap);
        if (nlen < 0) {
            map_err(b, mp, lineno,
                    "FROM %s cannot be normalised (a \"..\" above the root, %%00, or a '%%' "
                    "without two hex digits)",
                    SHOW(from, fn));
            continue;
        }
        int dup = 0;
        long id = cfg_hset_add(&map->from, b->scratch.p, (size_t)nlen, &dup);
        if (id < 0) {
            b->oom = 1;
            break;
        }
        if (dup) {
            map_err(b, mp, lineno, "FROM %s is also on line %u%s", SHOW(from, fn), lines[id],
                    (size_t)nlen != fn || memcmp(b->scratch.p, from, fn) != 0 ? " (once normalised)"
                                                                              : "");
            continue;
        }
        if (nent == CFG_RULES_MAX_MAP_ENTRIES) {
            map_err(b, mp, lineno, "more than %d entries", CFG_RULES_MAX_MAP_ENTRIES);
            too_many = 1;
            break;
        }
        if (nent == cap) {
            size_t ncap = cap ? 2 * cap : 1024;
            uint32_t *no = realloc(to_off, ncap * sizeof(*no));
            if (no)
                to_off = no;
            uint32_t *nl2 = no ? realloc(lines, ncap * sizeof(*nl2)) : NULL;
            if (nl2)
                lines = nl2;
            if (!no || !nl2) {
                b->oom = 1;
                break;
            }
            cap = ncap;
        }
        if (buf_reserve(&tos, tn + 1) < 0) {
            b->oom = 1;
            break;
        }
        to_off[nent] = (uint32_t)tos.n;
        lines[nent] = (uint32_t)lineno;
        memcpy(tos.p + tos.n, to, tn);
        tos.p[tos.n + tn] = '\0';
        tos.n += tn + 1;
        nent++;
    }
    if (!b->oom && !mp->n && nent == 0)
        err(b, "%s: no FROM TO pairs", mp->file);
    if (mp->n > MAP_PROBLEMS_SHOWN)
        err(b, "%s: ... and %zu more problems", mp->file, mp->n - MAP_PROBLEMS_SHOWN);
    if (b->oom || mp->n || nent == 0) {
        free(tos.p);
        free(to_off);
        free(lines);
        return -1;
    }
    /* Exact sizes: the model lives as long as the config. */
    char *block = realloc(tos.p, tos.n);
    map->to = malloc(nent * sizeof(*map->to));
    map->to_len = malloc(nent * sizeof(*map->to_len));
    map->to_has_query = malloc(nent);
    if (!block || !map->to || !map->to_len || !map->to_has_query) {
        free(block ? block : tos.p);
        free(to_off);
        free(lines);
        b->oom = 1;
        return -1;
    }
    for (size_t i = 0; i < nent; i++) {
        map->to[i] = block + to_off[i];
        map->to_len[i] = (uint32_t)strlen(map->to[i]);
        map->to_has_query[i] = memchr(map->to[i], '?', map->to_len[i]) != NULL;
    }
    free(to_off);
    free(lines);
    return 0;
}

static int build_redirect_map(struct rb *b, const json_t *v, struct cfg_erule *e)
{
    char gotbuf[GOT_MAX], shown[SHOW_MAX], *data = NULL, *real = NULL;
    const json_t *f;
    size_t len;
    int ok = 1, s;

    if (object_keys(b, v, "rules[].redirect_map", NULL) < 0)
        return -1;
    s = status_member(b, v, "rules[].redirect_map.status");
    if (s < 0)
        ok = 0;
    e->status = (uint16_t)(s < 0 ? 0 : s);
    f = member(b, v, "file", "a file of FROM TO lines in the config folder");
    if (!f)
        return -1;
    size_t mark = push_key(b, "file");
    if (!json_is_string(f)) {
        err(b, "expected a file name (a string), got %s", GOT(f));
        ok = 0;
    } else if (read_config_file(b, json_string_value(f), json_string_length(f),
                                CFG_RULES_MAX_MAP_FILE, &data, &len, &real) < 0) {
        ok = 0;
    } else {
        struct map_problems mp = {shown, 0};

        cfg_show_bytes(json_string_value(f), json_string_length(f), shown, sizeof(shown));
        e->map.file = dupn(b, json_string_value(f), json_string_length(f));
        if (!e->map.file || parse_map(b, data, len, &mp, &e->map) < 0)
            ok = 0;
    }
    free(data);
    free(real);
    pop(b, mark);
    return ok ? 0 : -1;
}

static int build_respond(struct rb *b, const json_t *v, struct cfg_erule *e, struct page_reals *pr)
{
    char gotbuf[GOT_MAX], ctptr[PTR_MAX];
    const json_t *body, *file, *ct, *hdrs;
    const char *ctype = NULL;
    int ok = 1, s;

    if (object_keys(b, v, "rules[].respond", NULL) < 0)
        return -1;
    s = status_member(b, v, "rules[].respond.status");
    if (s < 0)
        ok = 0;
    e->status = (uint16_t)(s < 0 ? 0 : s);
    body = json_object_get(v, "body");
    file = json_object_get(v, "file");
    ct = json_object_get(v, "content_type");
    hdrs = json_object_get(v, "headers");
    if (body && file) {
        err(b, "\"body\" and \"file\" both give the body; use one");
        ok = 0;
    } else if ((body || file) && (s == 204 || s == 304)) {
        err(b, "a %d response has no body; remove \"%s\"", s, body ? "body" : "file");
        ok = 0;
    } else if (ct && !body && !file) {
        err(b, "\"content_type\" without \"body\" or \"file\"");
        ok = 0;
    }
    if (ct) {
        size_t mark = push_key(b, "content_type");
        const char *t = json_string_value(ct);
        size_t n = json_string_length(ct);
        int good = json_is_string(ct) && n > 0;

        for (size_t i = 0; good && i < n; i++)
            good = value_byte_ok((unsigned char)t[i]);
        if (!good) {
            err(b, "expected a media type such as \"text/html; charset=utf-8\", got %s", GOT(ct));
            ok = 0;
        } else {
            ctype = t;
        }
        pop(b, mark);
    }
    if (body && ok) {
        size_t mark = push_key(b, "body");

        if (!json_is_string(body)) {
            err(b, "expected a string, got %s", GOT(body));
            ok = 0;
        } else if (json_string_length(body) > CFG_RULES_MAX_FILE) {
            err(b, "longer than 1 MiB");
            ok = 0;
        } else {
            struct cfg_page *pg = calloc(1, sizeof(*pg));

            if (pg) {
                pg->data = dupn(b, json_string_value(body), json_string_length(body));
                pg->len = json_string_length(body);
                pg->content_type = strdup(ctype ? ctype : "text/plain; charset=utf-8");
            }
            if (!pg || !pg->data || !pg->content_type) {
                page_free(pg);
                b->oom = 1;
                ok = 0;
            } else if (!page_add(b, pg)) {
                page_free(pg);
                ok = 0;
            } else {
                /* Keep pr parallel to the pages: a body has no file. */
                char **nv = realloc(pr->v, (pr->n + 1) * sizeof(*nv));

                if (!nv) {
                    b->oom = 1;
                    ok = 0;
                } else {
                    pr->v = nv;
                    pr->v[pr->n++] = NULL;
                    e->body = pg;
                }
            }
        }
        pop(b, mark);
    }
    if (file && ok) {
        size_t mark = push_key(b, "file");

        e->body = file_page(b, pr, file, ctype);
        if (!e->body)
            ok = 0;
        pop(b, mark);
    }
    if (hdrs) {
        size_t mark = push_key(b, "headers");
        const char *key;
        json_t *hv;

        (void)snprintf(ctptr, sizeof(ctptr), "%.*s/content_type", (int)mark, b->ptr);
        if (!json_is_object(hdrs)) {
            err(b, "expected an object (header name -> value), got %s", GOT(hdrs));
            ok = 0;
        } else {
            struct seen seen = {0};

            cfg_hset_init(&seen.names, 1);
            json_object_foreach((json_t *)hdrs, key, hv)
            {
                size_t m2 = push_key(b, key), klen = strlen(key);

                if (edit_name_ok(b, key, klen, ctptr) < 0 || seen_check(b, &seen, key, klen) < 0 ||
                    edit_add(b, &e->answer_hdrs, CFG_HE_SET, key, klen, hv) < 0)
                    ok = 0;
                pop(b, m2);
            }
            seen_free(&seen);
        }
        pop(b, mark);
    }
    return ok ? 0 : -1;
}

static int build_deny(struct rb *b, const json_t *v, struct cfg_erule *e)
{
    int s;

    if (object_keys(b, v, "rules[].deny", NULL) < 0)
        return -1;
    s = status_member(b, v, "rules[].deny.status");
    e->status = (uint16_t)(s < 0 ? 0 : s);
    return s < 0 ? -1 : 0;
}

/* An integer member of a rate_limit: 0 when absent, -1 on a problem. */
static long rl_int(struct rb *b, const json_t *v, const char *key)
{
    char gotbuf[GOT_MAX], row_path[64];
    const json_t *e = json_object_get(v, key);
    const struct cfg_rkey *row;
    json_int_t n;
    size_t mark;

    if (!e)
        return 0;
    (void)snprintf(row_path, sizeof(row_path), "rules[].rate_limit.%s", key);
    row = cfg_rules_find(row_path);
    n = json_is_integer(e) ? json_integer_value(e) : -1;
    if (n >= (json_int_t)row->smin && n <= (json_int_t)row->smax)
        return (long)n;
    mark = push_key(b, key);
    err(b, "expected an integer from %u to %u, got %s", (unsigned)row->smin, (unsigned)row->smax,
        GOT(e));
    pop(b, mark);
    return -1;
}

static int build_rate_limit(struct rb *b, const json_t *v, struct cfg_erule *e)
{
    char gotbuf[GOT_MAX], showbuf[SHOW_MAX];
    struct cfg_ratelimit *rl = &e->rl;
    const json_t *k;
    long ps, pm, burst;
    int ok = 1;

    e->status = 429;
    if (object_keys(b, v, "rules[].rate_limit", NULL) < 0)
        return -1;
    k = member(b, v, "key", "\"client_ip\" or \"header:NAME\"");
    if (k) {
        size_t mark = push_key(b, "key");
        const char *s = json_string_value(k);
        size_t n = json_string_length(k);

        if (!json_is_string(k)) {
            err(b, "expected \"client_ip\" or \"header:NAME\", got %s", GOT(k));
            ok = 0;
        } else if (n == 9 && memcmp(s, "client_ip", 9) == 0) {
            rl->key = CFG_RL_CLIENT_IP;
        } else if (n >= 7 && strncmp(s, "header:", 7) == 0) {
            if (header_name_ok(b, s + 7, n - 7) < 0) {
                ok = 0;
            } else {
                rl->key = CFG_RL_HEADER;
                rl->header = dupn(b, s + 7, n - 7);
                rl->header_len = n - 7;
                ok = rl->header != NULL;
            }
        } else {
            err(b, "%s is not a key; expected \"client_ip\" or \"header:NAME\"", SHOW(s, n));
            ok = 0;
        }
        pop(b, mark);
    } else {
        ok = 0;
    }
    ps = rl_int(b, v, "per_second");
    pm = rl_int(b, v, "per_minute");
    burst = rl_int(b, v, "burst");
    if (ps < 0 || pm < 0 || burst < 0)
        ok = 0;
    if (json_object_get(v, "per_second") && json_object_get(v, "per_minute")) {
        err(b, "\"per_second\" and \"per_minute\" both given; a rate_limit has one of them");
        ok = 0;
    } else if (!json_object_get(v, "per_second") && !json_object_get(v, "per_minute")) {
        err(b, "missing \"per_second\" or \"per_minute\" (the rate)");
        ok = 0;
    }
    if (!ok)
        return -1;
    rl->per_minute = pm > 0;
    rl->rate = (uint32_t)(pm > 0 ? pm : ps);
    rl->burst = (uint32_t)(burst ? burst : (long)cfg_rules_find("rules[].rate_limit.burst")->sdef);
    /* ticks per token, rounded to the nearest: exact for the rates people write */
    {
        uint64_t per = (uint64_t)CFG_RL_TICKS_PER_S * (rl->per_minute ? 60u : 1u);

        rl->interval = (per + rl->rate / 2) / rl->rate;
    }
    return 0;
}

/* ---- basic_auth ---------------------------------------------------------- */

/* How to make a hash the proxy accepts, for the messages about a refused one. */
#define AUTH_MAKE "make one with mkpasswd -m bcrypt (Debian package whois) or htpasswd -nB USER"
#define AUTH_USE "use bcrypt ($2b$, $2y$), yescrypt ($y$) or SHA-512-crypt ($6$): " AUTH_MAKE

/* The alphabet of crypt(3) salts and checksums: ./0-9A-Za-z. */
static int is_b64(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '/';
}

/* Bytes of s (n of them) from i on that are of ./0-9A-Za-z, up to a '$' or the end. */
static size_t b64_run(const char *s, size_t n, size_t i)
{
    size_t j = i;

    while (j < n && is_b64((unsigned char)s[j]))
        j++;
    return j - i;
}

/* Formats refused by name: a hash starting with prefix is "prefix (what)". */
static const struct {
    const char *prefix, *what;
} auth_refused[] = {
    {"$1$", "MD5-crypt"},
    {"$apr1$", "Apache MD5, htpasswd -m"},
    {"$5$", "SHA-256-crypt"},
    {"$2a$", "bcrypt's old prefix"},
    {"$2x$", "bcrypt with the 8-bit bug"},
    {"$2$", "the original bcrypt"},
    {"$gy$", "GOST yescrypt"},
    {"$7$", "scrypt"},
    {"$sha1$", "SHA-1-crypt"},
    {"$md5", "Sun MD5-crypt"},
    {"$3$", "NT hash"},
    {"$argon2", "Argon2, not in libcrypt"},
    {"$pbkdf2", "PBKDF2, not in libcrypt"},
    {"{SHA}", "unsalted SHA-1, htpasswd -s"},
    {"{SSHA}", "salted SHA-1, LDAP"},
};

/* The reason a bcrypt hash ("$2b$" or "$2y$", n bytes) is incomplete or malformed, or NULL. */
static const char *bcrypt_shape(const char *s, size_t n, char *why, size_t cap)
{
    int cost;

    if (n != 60) {
        (void)snprintf(why, cap,
                       "%zu characters, not 60 (\"$2b$\", the cost, \"$\", 53 of "
                       "./0-9A-Za-z)%s",
                       n, n == 29 ? ": a setting without its checksum" : "");
        return why;
    }
    cost = s[4] >= '0' && s[4] <= '9' && s[5] >= '0' && s[5] <= '9'
               ? (s[4] - '0') * 10 + (s[5] - '0')
               : -1;
    if (cost < 4 || cost > 31 || s[6] != '$')
        return "the cost is two digits from 04 to 31, then \"$\"";
    if (cost > CFG_AUTH_MAX_BCRYPT_COST) {
        /* a check runs on a helper thread: one that takes seconds stalls every login */
        (void)snprintf(why, cap,
                       "cost %d: a check would take seconds (each step doubles it; 12 takes "
                       "about 0.25 s); at most %d",
                       cost, CFG_AUTH_MAX_BCRYPT_COST);
        return why;
    }
    for (size_t i = 7; i < n; i++) {
        if (!is_b64((unsigned char)s[i])) {
            (void)snprintf(why, cap, "character %zu is not one of ./0-9A-Za-z", i + 1);
            return why;
        }
    }
    return NULL;
}

/* The same for SHA-512-crypt: "$6$" ["rounds=N$"] salt "$" and 86 of ./0-9A-Za-z. */
static const char *sha512_shape(const char *s, size_t n, char *why, size_t cap)
{
    size_t i = 3, salt, sum;

    if (n - i >= 7 && memcmp(s + i, "rounds=", 7) == 0) {
        unsigned long long r = 0;
        size_t d = 0;

        for (i += 7; i < n && s[i] >= '0' && s[i] <= '9' && d < 10; i++, d++)
            r = r * 10 + (unsigned)(s[i] - '0');
        if (!d || i >= n || s[i] != '$' || r < 1000 || r > 999999999)
            return "\"rounds=N$\" needs N from 1000 to 999999999";
        if (r > CFG_AUTH_MAX_SHA512_ROUNDS) {
            (void)snprintf(why, cap,
                           "rounds=%llu: a check would take seconds (the default, 5000, takes a "
                           "few ms); at most %d",
                           r, CFG_AUTH_MAX_SHA512_ROUNDS);
            return why;
        }
        i++;
    }
    for (salt = 0; i + salt < n && s[i + salt] != '$'; salt++) {
        unsigned char ch = (unsigned char)s[i + salt];

        if (ch <= 0x20 || ch >= 0x7f || ch == ':')
            return "the salt has a space, ':' or a byte outside printable ASCII";
    }
    if (salt < 1 || salt > 16)
        return "the salt is 1 to 16 characters, then \"$\"";
    i += salt;
    if (i >= n || i + 1 == n)
        return "no checksum after the salt: a setting, not a hash";
    i++;
    sum = b64_run(s, n, i);
    if (sum != n - i || sum != 86) {
        (void)snprintf(why, cap,
                       "the checksum after the salt is 86 of ./0-9A-Za-z, got %zu "
                       "characters",
                       n - i);
        return why;
    }
    return NULL;
}

/* The same for yescrypt: "$y$" params "$" salt "$" and 43 of ./0-9A-Za-z. */
static const char *yescrypt_shape(const char *s, size_t n, char *why, size_t cap)
{
    size_t i = 3, params, salt, sum;

    params = b64_run(s, n, i);
    i += params;
    if (!params || i >= n || s[i] != '$')
        return "the parameters are of ./0-9A-Za-z, then \"$\"";
    i++;
    salt = b64_run(s, n, i);
    i += salt;
    if (!salt || (i < n && s[i] != '$'))
        return "the salt is of ./0-9A-Za-z, then \"$\"";
    if (i >= n || i + 1 == n)
        return "no checksum after the salt: a setting, not a hash";
    i++;
    sum = b64_run(s, n, i);
    if (sum != n - i || sum != 43) {
        (void)snprintf(why, cap,
                       "the checksum after the salt is 43 of ./0-9A-Za-z, got %zu "
                       "characters",
                       n - i);
        return why;
    }
    return NULL;
}

/*
 * A user's hash (the pointer is on the user): one of the accepted formats,
 * complete, and passed by crypt_checksalt(). The hash is never verified
 * here (crypt_rn of a bcrypt costs milliseconds a user; the validator runs
 * at git push), and a value is never shown, but for the "$id$" of an
 * unknown format: it may be a password.
 */
static int hash_ok(struct rb *b, const json_t *h)
{
    char gotbuf[GOT_MAX], showbuf[SHOW_MAX], why[160], too_long[64];
    const char *s = json_string_value(h), *bad = NULL, *method = NULL, *colon;
    size_t n = json_string_length(h), id;

    if (!json_is_string(h)) {
        err(b, "expected a string (a crypt(3) hash), got %s", GOT(h));
        return -1;
    }
    (void)snprintf(too_long, sizeof(too_long), "%zu bytes, more than %d", n, CFG_AUTH_MAX_HASH);
    if (n == 0) {
        err(b, "empty, not a crypt(3) hash; " AUTH_USE);
        return -1;
    }
    if (strchr(" \t\r\n", s[0]) || strchr(" \t\r\n", s[n - 1])) {
        err(b, "the hash has a space or line break at its start or end; give the hash alone");
        return -1;
    }
    colon = memchr(s, ':', n);
    if (colon && colon > s && colon[1] == '$') {
        /* htpasswd -nB prints "USER:HASH" */
        err(b, "looks like an htpasswd line (USER:HASH); give only the hash after the ':'");
        return -1;
    }
    for (size_t i = 0; i < sizeof(auth_refused) / sizeof(auth_refused[0]); i++) {
        if (strncmp(s, auth_refused[i].prefix, strlen(auth_refused[i].prefix)) == 0) {
            err(b, "%s (%s) is not accepted; " AUTH_USE, auth_refused[i].prefix,
                auth_refused[i].what);
            return -1;
        }
    }
    if (strncmp(s, "$2b$", 4) == 0 || strncmp(s, "$2y$", 4) == 0) {
        method = "bcrypt";
        bad = bcrypt_shape(s, n, why, sizeof(why));
    } else if (strncmp(s, "$6$", 3) == 0) {
        method = "SHA-512-crypt";
        bad = n > CFG_AUTH_MAX_HASH ? too_long : sha512_shape(s, n, why, sizeof(why));
    } else if (strncmp(s, "$y$", 3) == 0) {
        method = "yescrypt";
        bad = n > CFG_AUTH_MAX_HASH ? too_long : yescrypt_shape(s, n, why, sizeof(why));
    } else if (n == 13 && b64_run(s, n, 0) == 13) {
        err(b,
            "looks like traditional DES crypt (or plain text), which is not accepted; " AUTH_USE);
        return -1;
    } else if (n == 20 && s[0] == '_' && b64_run(s, n, 1) == 19) {
        err(b, "_ (BSDi extended DES) is not accepted; " AUTH_USE);
        return -1;
    } else if (s[0] == '$' && (id = strspn(s + 1, "abcdefghijklmnopqrstuvwxyz0123456789-")) > 0 &&
               id <= 16 && (s[1 + id] == '$' || s[1 + id] == ',')) {
        err(b, "%s is a hash format ringproxy does not accept; " AUTH_USE, SHOW(s, id + 2));
        return -1;
    } else {
        err(b, "looks like plain text, not a crypt(3) hash; " AUTH_USE);
        return -1;
    }
    if (bad) {
        err(b, "not a valid %s hash: %s; " AUTH_MAKE, method, bad);
        return -1;
    }
    switch (crypt_checksalt(s)) {
    case CRYPT_SALT_OK:
        return 0;
    case CRYPT_SALT_METHOD_DISABLED:
        bad = "its method is disabled in this libcrypt";
        break;
    case CRYPT_SALT_METHOD_LEGACY:
        bad = "it counts the method as legacy, too weak";
        break;
    case CRYPT_SALT_TOO_CHEAP:
        bad = "it counts the cost as too cheap; choose a higher one";
        break;
    default: /* CRYPT_SALT_INVALID */
        bad = "its settings are invalid";
        break;
    }
    err(b, "%s hash refused by libcrypt (crypt_checksalt): %s; " AUTH_MAKE, method, bad);
    return -1;
}

/* A user name (RFC 7617): 1..CFG_AUTH_MAX_USER bytes, no ':', no control characters. */
static int user_ok(const char *s, size_t n)
{
    if (n < 1 || n > CFG_AUTH_MAX_USER)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];

        if (ch == ':' || ch < 0x20 || ch == 0x7f)
            return 0;
    }
    return 1;
}

/* A realm: 1..CFG_AUTH_MAX_REALM bytes of printable ASCII without '"' and '\'. */
static int realm_ok(const char *s, size_t n)
{
    if (n < 1 || n > CFG_AUTH_MAX_REALM)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];

        if (ch < 0x20 || ch > 0x7e || ch == '"' || ch == '\\')
            return 0;
    }
    return 1;
}

static int build_basic_auth(struct rb *b, const json_t *v, struct cfg_erule *e)
{
    char gotbuf[GOT_MAX], showbuf[SHOW_MAX];
    struct cfg_basic_auth *a = &e->auth;
    const json_t *realm, *users;
    int ok = 1;

    e->status = 401;
    cfg_hset_init(&a->users, 0);
    if (object_keys(b, v, "rules[].basic_auth", NULL) < 0)
        return -1;
    realm = member(b, v, "realm", "the name the browser shows when it asks for a password");
    if (realm) {
        size_t mark = push_key(b, "realm");
        const char *s = json_string_value(realm);
        size_t n = json_string_length(realm);

        if (!json_is_string(realm)) {
            err(b, "expected a string, got %s", GOT(realm));
            ok = 0;
        } else if (!realm_ok(s, n)) {
            err(b,
                "%s is not a realm (1 to %d printable ASCII characters, without '\"' and "
                "'\\')",
                SHOW(s, n), CFG_AUTH_MAX_REALM);
            ok = 0;
        } else {
            a->realm = dupn(b, s, n);
            a->realm_len = n;
            ok = a->realm != NULL;
        }
        pop(b, mark);
    } else {
        ok = 0;
    }
    users = member(b, v, "users", "user name -> crypt(3) hash");
    if (users) {
        size_t mark = push_key(b, "users");
        const char *key;
        json_t *h;

        if (!json_is_object(users)) {
            err(b, "expected an object (user name -> crypt(3) hash), got %s", GOT(users));
            ok = 0;
        } else if (json_object_size(users) == 0) {
            err(b, "no users; a basic_auth has at least one (user name -> crypt(3) hash)");
            ok = 0;
        } else if (json_object_size(users) > CFG_AUTH_MAX_USERS) {
            err(b, "more than %d users", CFG_AUTH_MAX_USERS);
            ok = 0;
        } else if (!(a->hash = calloc(json_object_size(users), sizeof(*a->hash)))) {
            b->oom = 1;
            ok = 0;
        } else {
            json_object_foreach((json_t *)users, key, h)
            {
                size_t m2 = push_key(b, key), klen = strlen(key);
                int good = 1;

                if (!user_ok(key, klen)) {
                    err(b,
                        "%s is not a user name (1 to %d bytes, without ':' or control "
                        "characters)",
                        SHOW(key, klen), CFG_AUTH_MAX_USER);
                    good = 0;
                }
                if (hash_ok(b, h) < 0)
                    good = 0;
                if (good && ok) {
                    long id = cfg_hset_add(&a->users, key, klen, NULL);

                    if (id < 0 ||
                        !(a->hash[id] = dupn(b, json_string_value(h), json_string_length(h)))) {
                        b->oom = 1;
                        good = 0;
                    }
                }
                if (!good)
                    ok = 0;
                pop(b, m2);
            }
        }
        pop(b, mark);
    } else {
        ok = 0;
    }
    return ok ? 0 : -1;
}

static void map_free(struct cfg_redirect_map *m)
{
    cfg_hset_free(&m->from);
    if (m->to)
        free(m->to[0]); /* the block holding every target */
    free(m->to);
    free(m->to_len);
    free(m->to_has_query);
    free(m->file);
    *m = (struct cfg_redirect_map){0};
}

static void erule_free(struct cfg_erule *e)
{
    free(e->label);
    match_free(e->match);
    hedits_free(&e->req_hdrs);
    hedits_free(&e->resp_hdrs);
    hedits_free(&e->answer_hdrs);
    free(e->rewrite.arg);
    tpl_free(&e->location);
    map_free(&e->map);
    free(e->rl.header);
    for (uint32_t i = 0; e->auth.hash && i < e->auth.users.n; i++)
        free(e->auth.hash[i]);
    free(e->auth.hash);
    free(e->auth.realm);
    cfg_hset_free(&e->auth.users);
    /* e->body belongs to cfg_rules.pages */
}

static int build_terminal(struct rb *b, int kind, const json_t *v, struct cfg_erule *e,
                          struct page_reals *pr)
{
    size_t mark = push_key(b, terminal_keys[kind - 1]);
    int r = -1;

    e->kind = (uint8_t)kind;
    switch (kind) {
    case CFG_RK_REDIRECT:
        r = build_redirect(b, v, e);
        break;
    case CFG_RK_REDIRECT_MAP:
        r = build_redirect_map(b, v, e);
        break;
    case CFG_RK_RESPOND:
        r = build_respond(b, v, e, pr);
        break;
    case CFG_RK_DENY:
        r = build_deny(b, v, e);
        break;
    case CFG_RK_RATE_LIMIT:
        r = build_rate_limit(b, v, e);
        break;
    case CFG_RK_BASIC_AUTH:
        r = build_basic_auth(b, v, e);
        break;
    }
    pop(b, mark);
    return r;
}

/* ---- rules --------------------------------------------------------------- */

struct names {
    struct cfg_hset set;
    size_t *rule; /* rule index of each name */
};

static int build_rule(struct rb *b, const json_t *v, size_t idx, struct names *names,
                      struct page_reals *pr)
{
    char gotbuf[GOT_MAX], showbuf[SHOW_MAX], label[32];
    struct cfg_erule *e = &b->rs->v[idx];
    const char *key, *term = NULL;
    int ok = 1, unsupported = 0, actions = 0;
    json_t *a;

    if (object_keys(b, v, "rules[]", &unsupported) < 0)
        return -1;
    a = json_object_get(v, "name");
    if (a) {
        size_t mark = push_key(b, "name");
        const char *s = json_string_value(a);
        size_t n = json_string_length(a);

        if (!json_is_string(a)) {
            err(b, "expected a string, got %s", GOT(a));
            ok = 0;
        } else if (!name_ok(s, n, "_.-")) {
            err(b, "%s is not a rule name (1 to 64 letters, digits, '_', '.', '-')", SHOW(s, n));
            ok = 0;
        } else {
            int dup = 0;
            long id = cfg_hset_add(&names->set, s, n, &dup);

            if (id < 0) {
                b->oom = 1;
                ok = 0;
            } else if (dup) {
                err(b, "%s is also the name of /rules/%zu", SHOW(s, n), names->rule[id]);
                ok = 0;
            } else {
                names->rule[id] = idx;
                e->label = dupn(b, s, n);
            }
        }
        pop(b, mark);
    }
    if (!e->label) {
        (void)snprintf(label, sizeof(label), "%zu", idx);
        e->label = dupn(b, label, strlen(label));
        if (!e->label)
            return -1;
    }
    a = json_object_get(v, "match");
    if (a) {
        size_t mark = push_key(b, "match");
        int first = CFG_RK_NONE; /* the terminal action compiled below: the first in the file */
        json_t *e2;

        json_object_foreach((json_t *)v, key, e2)
        {
            if (!first)
                first = terminal_kind(key);
        }
        if (build_match(b, a, 0, cfg_rule_kind_guards(first), &e->match) < 0)
            ok = 0;
        pop(b, mark);
    }
    if ((a = json_object_get(v, "request_headers"))) {
        size_t mark = push_key(b, "request_headers");

        actions++;
        if (build_edits(b, a, "rules[].request_headers", &e->req_hdrs) < 0)
            ok = 0;
        pop(b, mark);
    }
    if ((a = json_object_get(v, "response_headers"))) {
        size_t mark = push_key(b, "response_headers");

        actions++;
        if (build_edits(b, a, "rules[].response_headers", &e->resp_hdrs) < 0)
            ok = 0;
        pop(b, mark);
    }
    if ((a = json_object_get(v, "rewrite"))) {
        size_t mark = push_key(b, "rewrite");

        actions++;
        if (build_rewrite(b, a, &e->rewrite) < 0)
            ok = 0;
        pop(b, mark);
    }
    /* Terminal actions, in file order: the first is compiled, a second is a problem. */
    json_object_foreach((json_t *)v, key, a)
    {
        int kind = terminal_kind(key);

        if (!kind)
            continue;
        actions++;
        if (!term) {
            term = key;
            if (build_terminal(b, kind, a, e, pr) < 0)
                ok = 0;
        } else {
            struct cfg_erule tmp = {0};

            err(b,
                "\"%s\" and \"%s\" both answer; a rule has at most one of redirect, "
                "redirect_map, respond, deny, rate_limit, basic_auth",
                term, key);
            ok = 0;
            (void)build_terminal(b, kind, a, &tmp, pr); /* for its own problems */
            erule_free(&tmp);
        }
    }
    if (!actions && !unsupported) {
        err(b, "no action; a rule has at least one of request_headers, response_headers, "
               "rewrite, redirect, redirect_map, respond, deny, rate_limit, basic_auth");
        ok = 0;
    }
    return ok ? 0 : -1;
}

static void build_rules(struct rb *b, const json_t *rules, struct page_reals *pr)
{
    char gotbuf[GOT_MAX];
    struct names names = {0};
    long catchall = -1;
    const json_t *r;
    size_t i, mark = push_key(b, "rules");

    if (!json_is_array(rules)) {
        err(b, "expected an array of rules, got %s", GOT(rules));
        pop(b, mark);
        return;
    }
    if (json_array_size(rules) > CFG_RULES_MAX) {
        err(b, "more than %d rules", CFG_RULES_MAX);
        pop(b, mark);
        return;
    }
    b->rs->v = calloc(json_array_size(rules) + 1, sizeof(*b->rs->v));
    names.rule = calloc(json_array_size(rules) + 1, sizeof(*names.rule));
    if (!b->rs->v || !names.rule) {
        free(names.rule);
        b->oom = 1;
        pop(b, mark);
        return;
    }
    cfg_hset_init(&names.set, 0);
    json_array_foreach(rules, i, r)
    {
        size_t m2 = push_index(b, i);
        struct cfg_erule *e = &b->rs->v[i];

        b->rs->n = i + 1;
        (void)build_rule(b, r, i, &names, pr);
        if (catchall >= 0 && !(e->match && e->match->names_healthz)) {
            /* The health check is the one path an earlier catch-all leaves to later rules. */
            err(b, "can never run: /rules/%ld has no match and answers every request", catchall);
        }
        const json_t *m = json_is_object(r) ? json_object_get(r, "match") : NULL;

        /* No match, or "match": {}; a redirect_map answers only some paths. */
        if (catchall < 0 && json_is_object(r) &&
            (!m || (json_is_object(m) && !json_object_size(m))) &&
            (e->kind == CFG_RK_REDIRECT || e->kind == CFG_RK_RESPOND || e->kind == CFG_RK_DENY))
            catchall = (long)i;
        pop(b, m2);
    }
    cfg_hset_free(&names.set);
    free(names.rule);
    pop(b, mark);
}

static int class_of(const char *k)
{
    if (strlen(k) == 3 && (k[0] == '4' || k[0] == '5') && k[1] == 'x' && k[2] == 'x')
        return k[0] - '0';
    return -1;
}

static int status_key(const char *k)
{
    if (strlen(k) == 3 && k[0] >= '4' && k[0] <= '5' && k[1] >= '0' && k[1] <= '9' && k[2] >= '0' &&
        k[2] <= '9')
        return (k[0] - '0') * 100 + (k[1] - '0') * 10 + (k[2] - '0');
    return -1;
}

static void build_error_pages(struct rb *b, const json_t *ep, struct page_reals *pr)
{
    char gotbuf[GOT_MAX], showbuf[SHOW_MAX];
    const char *key;
    json_t *v;
    size_t mark = push_key(b, "error_pages");

    if (!json_is_object(ep)) {
        err(b, "expected an object (status or class -> file), got %s", GOT(ep));
        pop(b, mark);
        return;
    }
    /* Classes first, so that a status given on its own overrides its class. */
    for (int pass = 0; pass < 2; pass++) {
        json_object_foreach((json_t *)ep, key, v)
        {
            int cls = class_of(key), st = status_key(key);
            size_t m2;
            struct cfg_page *pg;

            if (pass == 0 && cls < 0 && st < 0) {
                m2 = push_key(b, key);
                err(b, "%s is not a status from \"400\" to \"599\" or a class \"4xx\" or \"5xx\"",
                    SHOW(key, strlen(key)));
                pop(b, m2);
                continue;
            }
            if ((pass == 0) != (cls >= 0) || (cls < 0 && st < 0))
                continue;
            m2 = push_key(b, key);
            pg = file_page(b, pr, v, NULL);
            if (pg && cls >= 0) {
                for (int s = cls * 100; s < cls * 100 + 100; s++)
                    b->rs->pages_by_status[s] = pg;
            } else if (pg) {
                b->rs->pages_by_status[st] = pg;
            }
            pop(b, m2);
        }
    }
    pop(b, mark);
}

void cfg_rules_free(struct cfg_rules *rs)
{
    if (!rs)
        return;
    for (size_t i = 0; i < rs->n; i++)
        erule_free(&rs->v[i]);
    free(rs->v);
    cfg_hset_free(&rs->edit_names);
    for (size_t i = 0; i < rs->npages; i++)
        page_free(rs->pages[i]);
    free(rs->pages);
    free(rs);
}

int cfg_rules_build(const json_t *lists, const json_t *rules, const json_t *error_pages,
                    const char *dir, struct cfg_rules **ret_rules, struct cfg_errs *errs)
{
    struct rb *b = calloc(1, sizeof(*b));
    struct page_reals pr = {0};
    size_t nerrs = errs->n;
    int r;

    if (!b)
        return -ENOMEM;
    b->errs = errs;
    b->dir = dir;
    b->rs = calloc(1, sizeof(*b->rs));
    if (!b->rs) {
        free(b);
        return -ENOMEM;
    }
    cfg_hset_init(&b->rs->edit_names, 1);
    if (lists)
        build_lists(b, lists);
    if (rules)
        build_rules(b, rules, &pr);
    if (error_pages)
        build_error_pages(b, error_pages, &pr);
    r = b->oom ? -ENOMEM : errs->n > nerrs ? -EINVAL : 0;
    if (r == 0)
        *ret_rules = b->rs;
    else
        cfg_rules_free(b->rs);
    for (size_t i = 0; i < pr.n; i++)
        free(pr.v[i]);
    free(pr.v);
    for (size_t i = 0; i < b->nlists; i++)
        free(b->lists[i].v);
    free(b->lists);
    free(b->list_names);
    free(b->dir_real);
    free(b->scratch.p);
    free(b);
    return r;
}
