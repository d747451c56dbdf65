#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "cfg/cfg.h"
#include "cfg/schema.h"

/* Longest shown value ("got ..."), and longest shown unknown key, in characters. */
#define GOT_MAX 64
#define KEY_SHOW_MAX 64
/* Room for a known pointer plus one unknown key shown escaped and truncated. */
#define PTR_MAX 1024

struct load {
    struct cfg *c;
    struct cfg_errs errs;
    size_t errs_cap;
    int oom;
    char ptr[PTR_MAX]; /* JSON pointer of the value being read, as shown */
    size_t plen;
    unsigned char set[CFG_SCHEMA_MAX_KEYS]; /* present in the document */
    unsigned char bad[CFG_SCHEMA_MAX_KEYS]; /* present but rejected */
    const char *dir;                        /* config folder for the rules' files, or NULL */
};

static void errs_push(struct load *x, char *line)
{
    if (!line) {
        x->oom = 1;
        return;
    }
    if (x->errs.n == x->errs_cap) {
        size_t cap = x->errs_cap ? 2 * x->errs_cap : 8;
        char **v = realloc(x->errs.lines, cap * sizeof(*v));

        if (!v) {
            free(line);
            x->oom = 1;
            return;
        }
        x->errs.lines = v;
        x->errs_cap = cap;
    }
    x->errs.lines[x->errs.n++] = line;
}

/* One problem line "where: message". */
static void __attribute__((format(printf, 3, 4)))
err_line(struct load *x, const char *where, const char *fmt, ...)
{
    char *msg = NULL, *line = NULL;
    va_list ap;

    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    if (msg && asprintf(&line, "%s: %s", where, msg) < 0)
        line = NULL;
    free(msg);
    errs_push(x, line);
}

#define err_at(x, ...) err_line((x), (x)->ptr, __VA_ARGS__)

void cfg_show_bytes(const char *s, size_t len, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;

    if (cap == 0)
        return;
    for (size_t i = 0; i < len && n + 5 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];

        if (ch >= 0x20 && ch < 0x7f) {
            out[n++] = (char)ch;
        } else {
            out[n++] = '\\';
            out[n++] = 'x';
            out[n++] = hex[ch >> 4];
            out[n++] = hex[ch & 15];
        }
    }
    out[n] = '\0';
}

/*
 * Copy s for a one-line, ASCII-only message: bytes outside printable ASCII
 * become \xNN, so a file name or a parser message cannot break the line.
 */
static void show_bytes(const char *s, char *out, size_t cap)
{
    cfg_show_bytes(s, strlen(s), out, cap);
}

static size_t put(char *out, size_t n, size_t cap, const char *s)
{
    size_t len = strlen(s);

    if (n + len >= cap)
        return n;
    memcpy(out + n, s, len + 1);
    return n + len;
}

/*
 * Append "/" and an object key to the pointer: RFC 6901 escapes ('~' as ~0,
 * '/' as ~1), then, so that the line stays one ASCII line, characters
 * outside printable ASCII as \uXXXX and '\' as \\. A long key is cut.
 * Returns the new length; ptr_push() returns the previous one for ptr_pop().
 */
size_t cfg_ptr_key(char *ptr, size_t n, size_t cap, const char *key)
{
    size_t shown = 0;
    const unsigned char *p = (const unsigned char *)key;
    char tmp[16];

    n = put(ptr, n, cap, "/");
    while (*p) {
        uint32_t cp = *p;
        int len = 1;

        if (shown == KEY_SHOW_MAX) {
            n = put(ptr, n, cap, "...");
            break;
        }
        /* jansson has checked the UTF-8 already. */
        if (cp >= 0xf0) {
            cp = ((cp & 0x07) << 18) | ((p[1] & 0x3fu) << 12) | ((p[2] & 0x3fu) << 6) |
                 (p[3] & 0x3fu);
            len = 4;
        } else if (cp >= 0xe0) {
            cp = ((cp & 0x0f) << 12) | ((p[1] & 0x3fu) << 6) | (p[2] & 0x3fu);
            len = 3;
        } else if (cp >= 0xc0) {
            cp = ((cp & 0x1f) << 6) | (p[1] & 0x3fu);
            len = 2;
        }
        if (cp == '~')
            n = put(ptr, n, cap, "~0");
        else if (cp == '/')
            n = put(ptr, n, cap, "~1");
        else if (cp == '\\')
            n = put(ptr, n, cap, "\\\\");
        else if (cp >= 0x20 && cp < 0x7f) {
            tmp[0] = (char)cp;
            tmp[1] = '\0';
            n = put(ptr, n, cap, tmp);
        } else if (cp < 0x10000) {
            (void)snprintf(tmp, sizeof(tmp), "\\u%04X", (unsigned)cp);
            n = put(ptr, n, cap, tmp);
        } else {
            cp -= 0x10000;
            (void)snprintf(tmp, sizeof(tmp), "\\u%04X\\u%04X", 0xd800u + (unsigned)(cp >> 10),
                           0xdc00u + (unsigned)(cp & 0x3ff));
            n = put(ptr, n, cap, tmp);
        }
        for (int i = 0; i < len && *p; i++)
            p++;
        shown++;
    }
    return n;
}

static size_t ptr_push(struct load *x, const char *key)
{
    size_t mark = x->plen;

    x->plen = cfg_ptr_key(x->ptr, x->plen, PTR_MAX, key);
    return mark;
}

static size_t ptr_push_index(struct load *x, size_t i)
{
    size_t mark = x->plen;
    char tmp[32];

    (void)snprintf(tmp, sizeof(tmp), "/%zu", i);
    x->plen = put(x->ptr, x->plen, PTR_MAX, tmp);
    return mark;
}

static void ptr_pop(struct load *x, size_t mark)
{
    x->plen = mark;
    x->ptr[mark] = '\0';
}

struct got_buf {
    char *p;
    size_t n, cap;
    int full;
};

static int got_cb(const char *s, size_t len, void *data)
{
    struct got_buf *g = data;

    for (size_t i = 0; i < len; i++) {
        /* JSON_ENSURE_ASCII leaves DEL as is; keep the line printable. */
        const char *piece = s[i] == 0x7f ? "\\u007F" : &s[i];
        size_t plen = s[i] == 0x7f ? 6 : 1;

        if (g->n + plen > g->cap - 1) {
            g->full = 1;
            return -1; /* enough: stop dumping */
        }
        memcpy(g->p + g->n, piece, plen);
        g->n += plen;
    }
    return 0;
}

const char *cfg_got(const json_t *v, char *buf, size_t cap)
{
    struct got_buf g = {buf, 0, cap, 0};

    (void)json_dump_callback(v, got_cb, &g,
                             JSON_COMPACT | JSON_ENCODE_ANY | JSON_ENSURE_ASCII |
                                 JSON_REAL_PRECISION(15));
    if (g.full) {
        /* Cut at the limit, marked; the last bytes may split an escape, "..." says so. */
        g.n = g.n > cap - 4 ? cap - 4 : g.n;
        memcpy(buf + g.n, "...", 3);
        g.n += 3;
    }
    buf[g.n] = '\0';
    return buf;
}

#define GOT(v) cfg_got((v), gotbuf, sizeof(gotbuf))

static size_t key_index(const struct cfg_key *k)
{
    size_t n;
    const struct cfg_key *all = cfg_schema_keys(&n);

    return (size_t)(k - all);
}

static void *member(struct load *x, size_t off)
{
    return (char *)x->c + off;
}

static uint64_t uint_get(const struct cfg *c, const struct cfg_key *k)
{
    const char *m = (const char *)c + k->offset;

    return k->size == sizeof(uint32_t) ? *(const uint32_t *)(const void *)m
                                       : *(const uint64_t *)(const void *)m;
}

/* True when s is an integer written as a string ("5000"). */
static int looks_like_number(const char *s)
{
    if (*s == '-')
        s++;
    if (!*s)
        return 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return 0;
    }
    return 1;
}

static int load_uint(struct load *x, const struct cfg_key *k, const json_t *v)
{
    char gotbuf[GOT_MAX];

    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);

        if (i >= 0 && (uint64_t)i >= k->min && (uint64_t)i <= k->max) {
            void *m = member(x, k->offset);

            if (k->size == sizeof(uint32_t))
                *(uint32_t *)m = (uint32_t)i;
            else
                *(uint64_t *)m = (uint64_t)i;
            return 0;
        }
    }
    err_at(x, "expected an integer from %llu to %llu, got %s%s", (unsigned long long)k->min,
           (unsigned long long)k->max, GOT(v),
           json_is_string(v) && looks_like_number(json_string_value(v))
               ? "; write the number without quotes"
               : "");
    return -1;
}

static int load_enum(struct load *x, const struct cfg_key *k, const json_t *v)
{
    char gotbuf[GOT_MAX], list[256];
    const char *hint = NULL;
    size_t n = 0;

    if (json_is_string(v)) {
        const char *s = json_string_value(v);

        for (size_t i = 0; i < k->nnames; i++) {
            if (strcmp(s, k->names[i]) == 0) {
                *(int *)member(x, k->offset) = (int)i;
                return 0;
            }
        }
        hint = cfg_suggest(s, json_string_length(v), k->names, k->nnames);
    }
    list[0] = '\0';
    for (size_t i = 0; i < k->nnames; i++) {
        n = put(list, n, sizeof(list), i ? ", \"" : "\"");
        n = put(list, n, sizeof(list), k->names[i]);
        n = put(list, n, sizeof(list), "\"");
    }
    if (hint)
        err_at(x, "expected one of %s, got %s; did you mean \"%s\"?", list, GOT(v), hint);
    else
        err_at(x, "expected one of %s, got %s", list, GOT(v));
    return -1;
}

static void unknown_field(struct load *x, const json_t *v)
{
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    const char *names[CFG_F_COUNT];
    char gotbuf[GOT_MAX], list[1024];
    size_t n = 0;
    const char *hint;

    for (int f = 0; f < CFG_F_COUNT; f++)
        names[f] = cfg_field_name((enum cfg_field)f);
    hint = cfg_suggest(s, len, names, CFG_F_COUNT);
    if (hint) {
        err_at(x, "unknown field %s; did you mean \"%s\"?", GOT(v), hint);
    } else if (strncmp(s, "http_", 5) == 0) {
        err_at(x,
               "unknown field %s; to log a request header, list its name in "
               "/access_log/request_headers",
               GOT(v));
    } else if (strncmp(s, "sent_http_", 10) == 0) {
        err_at(x,
               "unknown field %s; to log a response header, list its name in "
               "/access_log/response_headers",
               GOT(v));
    } else {
        list[0] = '\0';
        for (int f = 0; f < CFG_F_COUNT; f++) {
            n = put(list, n, sizeof(list), f ? ", " : "");
            n = put(list, n, sizeof(list), names[f]);
        }
        err_at(x, "unknown field %s; the fields are: %s", GOT(v), list);
    }
}

static int load_fields(struct load *x, const struct cfg_key *k, const json_t *v)
{
    enum cfg_field chosen[CFG_F_COUNT];
    long seen_at[CFG_F_COUNT];
    char gotbuf[GOT_MAX];
    size_t nchosen = 0, i;
    const json_t *e;
    int ok = 1;

    if (!json_is_array(v)) {
        err_at(x, "expected an array of field names, got %s", GOT(v));
        return -1;
    }
    if (json_array_size(v) < k->min) {
        err_at(x, "expected at least %llu field name, got []", (unsigned long long)k->min);
        return -1;
    }
    for (int f = 0; f < CFG_F_COUNT; f++)
        seen_at[f] = -1;
    json_array_foreach(v, i, e)
    {
        size_t mark = ptr_push_index(x, i);
        int f = json_is_string(e) ? cfg_field_from_name(json_string_value(e), json_string_length(e))
                                  : -EINVAL;

        if (!json_is_string(e)) {
            err_at(x, "expected a field name (a string), got %s", GOT(e));
            ok = 0;
        } else if (f < 0) {
            unknown_field(x, e);
            ok = 0;
        } else if (seen_at[f] >= 0) {
            ptr_pop(x, mark);
            (void)ptr_push_index(x, (size_t)seen_at[f]);
            /* Show the earlier entry's pointer in the message. */
            char first[PTR_MAX];
            memcpy(first, x->ptr, x->plen + 1);
            ptr_pop(x, mark);
            (void)ptr_push_index(x, i);
            err_at(x, "duplicate of %s (\"%s\")", first, cfg_field_name((enum cfg_field)f));
            ok = 0;
        } else {
            seen_at[f] = (long)i;
            chosen[nchosen++] = (enum cfg_field)f;
        }
        ptr_pop(x, mark);
    }
    if (!ok)
        return -1;
    memcpy(member(x, k->offset), chosen, nchosen * sizeof(chosen[0]));
    *(size_t *)member(x, k->offset_n) = nchosen;
    return 0;
}

/* RFC 9110 tchar. */
static int is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* Checks one header name; on success writes its log field name into field. */
static int header_ok(struct load *x, const json_t *e, int response, char *field, size_t cap)
{
    char gotbuf[GOT_MAX];
    const char *s;
    size_t len;

    if (!json_is_string(e)) {
        err_at(x, "expected a header name (a string), got %s", GOT(e));
        return 0;
    }
    s = json_string_value(e);
    len = json_string_length(e);
    if (len == 0 || len > CFG_MAX_HEADER_NAME) {
        err_at(x, "expected a header name of 1 to %d characters, got %s", CFG_MAX_HEADER_NAME,
               GOT(e));
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        if (!is_tchar((unsigned char)s[i])) {
            err_at(x, "expected a header name (letters, digits and !#$%%&'*+-.^_`|~), got %s",
                   GOT(e));
            return 0;
        }
    }
    (void)cfg_header_field_name(s, response, field, cap);
    if (cfg_field_from_name(field, strlen(field)) >= 0) {
        err_at(x,
               "%s would be logged as \"%s\", which is a field already; list \"%s\" in "
               "/access_log/fields instead",
               GOT(e), field, field);
        return 0;
    }
    return 1;
}

static int load_headers(struct load *x, const struct cfg_key *k, const json_t *v)
{
    int response = strstr(k->path, "response") != NULL;
    char fields[CFG_MAX_LOG_HEADERS][sizeof("sent_http_") + CFG_MAX_HEADER_NAME];
    size_t at[CFG_MAX_LOG_HEADERS];
    char gotbuf[GOT_MAX];
    size_t nfields = 0, i, n;
    const json_t *e;
    char **names = NULL;
    int ok = 1;

    if (!json_is_array(v)) {
        err_at(x, "expected an array of header names, got %s", GOT(v));
        return -1;
    }
    n = json_array_size(v);
    if (n > k->max) {
        err_at(x, "expected at most %llu header names, got %zu", (unsigned long long)k->max, n);
        ok = 0;
    }
    json_array_foreach(v, i, e)
    {
        size_t mark = ptr_push_index(x, i);
        char field[sizeof(fields[0])];
        size_t dup = nfields;

        if (!header_ok(x, e, response, field, sizeof(field))) {
            ok = 0;
        } else {
            for (size_t j = 0; j < nfields; j++) {
                if (strcmp(fields[j], field) == 0)
                    dup = j;
            }
            if (dup < nfields) {
                /* The pointer of the earlier entry: same array, index at[dup]. */
                char first[PTR_MAX];

                ptr_pop(x, mark);
                (void)ptr_push_index(x, at[dup]);
                memcpy(first, x->ptr, x->plen + 1);
                ptr_pop(x, mark);
                (void)ptr_push_index(x, i);
                err_at(x, "duplicate of %s (both are logged as \"%s\")", first, field);
                ok = 0;
            } else if (nfields < CFG_MAX_LOG_HEADERS) {
                memcpy(fields[nfields], field, sizeof(field));
                at[nfields++] = i;
            }
        }
        ptr_pop(x, mark);
    }
    if (!ok)
        return -1;
    if (n) {
        names = calloc(n, sizeof(*names));
        if (!names)
            goto fail;
        json_array_foreach(v, i, e)
        {
            names[i] = strdup(json_string_value(e));
            if (!names[i])
                goto fail;
        }
    }
    *(char ***)member(x, k->offset) = names;
    *(size_t *)member(x, k->offset_n) = n;
    return 0;
fail:
    for (i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
    x->oom = 1;
    return -1;
}

static int load_listen(struct load *x, const struct cfg_key *k, const json_t *v)
{
    struct sockaddr_storage ss;
    char gotbuf[GOT_MAX];
    unsigned sslen;

    if (!json_is_string(v)) {
        err_at(x, "expected a string \"ADDR:PORT\" such as \"%s\", got %s", k->def_str, GOT(v));
        return -1;
    }
    if (json_string_length(v) >= k->size ||
        cfg_parse_hostport(json_string_value(v), &ss, &sslen) < 0) {
        err_at(x,
               "expected a numeric \"ADDR:PORT\" or \"[IPV6]:PORT\" with PORT from 1 to 65535 "
               "(host names are not resolved), got %s",
               GOT(v));
        return -1;
    }
    if (!cfg_addr_is_loopback(&ss)) {
        err_at(x,
               "must be a loopback address (127.0.0.0/8 or [::1]) per the Section contract (C2), "
               "got %s",
               GOT(v));
        return -1;
    }
    memcpy(member(x, k->offset), json_string_value(v), json_string_length(v) + 1);
    return 0;
}

static void load_object(struct load *x, const json_t *obj, const char *prefix);

/* Reads one known key's value into the config; marks the key bad when rejected. */
static void load_value(struct load *x, const struct cfg_key *k, const json_t *v)
{
    char gotbuf[GOT_MAX];
    int r = 0;

    switch (k->kind) {
    case CFG_K_OBJECT:
        if (json_is_object(v))
            load_object(x, v, k->path);
        else {
            err_at(x, "expected an object, got %s", GOT(v));
            r = -1;
        }
        break;
    case CFG_K_UINT:
        r = load_uint(x, k, v);
        break;
    case CFG_K_ENUM:
        r = load_enum(x, k, v);
        break;
    case CFG_K_FIELDS:
        r = load_fields(x, k, v);
        break;
    case CFG_K_HEADERS:
        r = load_headers(x, k, v);
        break;
    case CFG_K_LISTEN:
        r = load_listen(x, k, v);
        break;
    case CFG_K_IGNORED:
        if (!json_is_string(v)) {
            err_at(x, "expected a string, got %s", GOT(v));
            r = -1;
        }
        break;
    case CFG_K_COUNT:
        break;
    }
    if (r < 0)
        x->bad[key_index(k)] = 1;
}

static void unknown_key(struct load *x, const char *prefix, const char *key)
{
    const char *cand[CFG_SCHEMA_MAX_KEYS];
    const struct cfg_key *all, *elsewhere = NULL, *dotted;
    size_t nall, ncand = 0, n = 0;
    const char *near;
    char where[PTR_MAX], list[512], full[256];

    all = cfg_schema_keys(&nall);
    for (size_t i = 0; i < nall; i++) {
        if (cfg_key_in(&all[i], prefix))
            cand[ncand++] = cfg_key_name(&all[i]);
        else if (!elsewhere && strcmp(cfg_key_name(&all[i]), key) == 0)
            elsewhere = &all[i];
    }
    if (!*prefix) {
        size_t nr;
        const struct cfg_rkey *r = cfg_rules_keys(&nr);

        for (size_t i = 0; i < nr && ncand < CFG_SCHEMA_MAX_KEYS; i++) {
            if (cfg_rules_is_top(r[i].path))
                cand[ncand++] = r[i].path;
        }
    }
    near = cfg_suggest(key, strlen(key), cand, ncand);
    if (*prefix)
        (void)snprintf(full, sizeof(full), "%s.%s", prefix, key);
    else
        (void)snprintf(full, sizeof(full), "%s", key);
    dotted = strchr(key, '.') ? cfg_schema_find(full) : NULL;

    if (near && strcasecmp(near, key) == 0) {
        err_at(x, "unknown key; did you mean \"%s\"?", near);
    } else if (elsewhere || dotted) {
        cfg_key_pointer((elsewhere ? elsewhere : dotted)->path, where, sizeof(where));
        err_at(x, "unknown key here; did you mean %s?%s", where,
               dotted ? " (keys nest as objects)" : "");
    } else if (near) {
        err_at(x, "unknown key; did you mean \"%s\"?", near);
    } else {
        list[0] = '\0';
        for (size_t i = 0; i < ncand; i++) {
            n = put(list, n, sizeof(list), i ? ", \"" : "\"");
            n = put(list, n, sizeof(list), cand[i]);
            n = put(list, n, sizeof(list), "\"");
        }
        err_at(x, "unknown key; expected one of %s", list);
    }
}

/* Reads the keys of one object, in file order; prefix is its dotted path. */
static void load_object(struct load *x, const json_t *obj, const char *prefix)
{
    size_t nall;
    const struct cfg_key *all = cfg_schema_keys(&nall);
    const char *key;
    const json_t *v;

    json_object_foreach((json_t *)obj, key, v)
    {
        size_t mark = ptr_push(x, key);
        const struct cfg_key *k = NULL;

        for (size_t i = 0; i < nall && !k; i++) {
            if (cfg_key_in(&all[i], prefix) && strcmp(cfg_key_name(&all[i]), key) == 0)
                k = &all[i];
        }
        if (k) {
            x->set[key_index(k)] = 1;
            load_value(x, k, v);
        } else if (!*prefix && cfg_rules_is_top(key)) {
            /* Read by load_rules(), once every key is known. */
        } else {
            unknown_key(x, prefix, key);
        }
        ptr_pop(x, mark);
    }
}

/* Rules between keys, after every key was read; skips keys already rejected. */
static void check_rules(struct load *x)
{
    size_t nrules;
    const struct cfg_rule *rules = cfg_schema_rules(&nrules);

    for (size_t i = 0; i < nrules; i++) {
        const struct cfg_key *a = cfg_schema_find(rules[i].a), *b = cfg_schema_find(rules[i].b);
        size_t ia = key_index(a), ib = key_index(b);
        unsigned long long va = uint_get(x->c, a), vb = uint_get(x->c, b);
        char pa[128], pb[128];

        if (x->bad[ia] || x->bad[ib] || va <= vb)
            continue;
        cfg_key_pointer(a->path, pa, sizeof(pa));
        cfg_key_pointer(b->path, pb, sizeof(pb));
        /* Name the key the file sets: the other one may be a default the user never saw. */
        if (x->set[ia])
            err_line(x, pa, "%llu must not exceed %s (%llu%s): %s", va, pb, vb,
                     x->set[ib] ? "" : ", the default", rules[i].why);
        else
            err_line(x, pb, "%llu must not be less than %s (%llu, the default): %s", vb, pa, va,
                     rules[i].why);
    }
}

/* Moves the lines of e to the end of x's. */
static void errs_take(struct load *x, struct cfg_errs *e)
{
    for (size_t i = 0; i < e->n; i++)
        errs_push(x, e->lines[i]);
    free(e->lines);
    *e = (struct cfg_errs){0};
}

/*
 * The edge rules (cfg/rules.c): compiled once every key is read, since
 * `rules` refers to `lists`; their problems follow the others. The keys are
 * kept as written for cfg_dump().
 */
static void load_rules(struct load *x, const json_t *root)
{
    static const char *const top[] = {"lists", "rules", "error_pages"};
    const json_t *v[3];
    struct cfg_errs e = {0};
    json_t *keep;
    int any = 0, r;

    for (size_t i = 0; i < 3; i++) {
        v[i] = json_object_get(root, top[i]);
        any |= v[i] != NULL;
    }
    if (!any)
        return;
    r = cfg_rules_build(v[0], v[1], v[2], x->dir, &x->c->rules, &e);
    errs_take(x, &e);
    if (r == -ENOMEM)
        x->oom = 1;
    if (r < 0)
        return;
    keep = json_object();
    for (size_t i = 0; keep && i < 3; i++) {
        if (v[i] && json_object_set(keep, top[i], (json_t *)v[i]) < 0) {
            json_decref(keep);
            keep = NULL;
        }
    }
    x->c->rules_json = keep ? json_dumps(keep, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(keep);
    if (!x->c->rules_json)
        x->oom = 1;
}

/* Whitespace only (or nothing): jansson would say "unexpected token near end of file". */
static int is_blank(const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (!strchr(" \t\r\n", buf[i]) || buf[i] == '\0')
            return 0;
    }
    return 1;
}

/* Where the first NUL byte is, as line:column (columns count characters, like jansson's). */
static void nul_byte(struct load *x, const char *buf, size_t len, const char *name)
{
    const char *nul = memchr(buf, '\0', len);
    size_t line = 1, col = 1;
    char where[320];

    for (const char *p = buf; p < nul; p++) {
        if (*p == '\n') {
            line++;
            col = 1;
        } else if (((unsigned char)*p & 0xc0) != 0x80) {
            col++;
        }
    }
    (void)snprintf(where, sizeof(where), "%s:%zu:%zu", name, line, col);
    err_line(x, where, "NUL byte (byte offset %zu); a JSON file holds UTF-8 text only",
             (size_t)(nul - buf));
}

static int load_doc(struct load *x, const char *buf, size_t len, const char *name)
{
    char gotbuf[GOT_MAX], text[2 * JSON_ERROR_TEXT_LENGTH], where[320];
    json_error_t je;
    json_t *root;

    if (len > CFG_MAX_FILE_BYTES) {
        err_line(x, name, "larger than 1 MiB (%zu bytes)", len);
        return -EFBIG;
    }
    if (is_blank(buf, len)) {
        err_line(x, name, "empty file; write {} for the built-in defaults, or remove the file");
        return -EINVAL;
    }
    if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0) {
        err_line(x, name, "starts with a UTF-8 byte order mark; save the file without it");
        return -EINVAL;
    }
    if (len >= 2 && (memcmp(buf, "\xff\xfe", 2) == 0 || memcmp(buf, "\xfe\xff", 2) == 0)) {
        err_line(x, name, "encoded as UTF-16; save the file as UTF-8");
        return -EINVAL;
    }
    if (memchr(buf, '\0', len)) {
        /* jansson reads a NUL byte as the end of the input, which misleads. */
        nul_byte(x, buf, len, name);
        return -EINVAL;
    }
    root = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!root) {
        if (json_error_code(&je) == json_error_out_of_memory)
            return -ENOMEM;
        show_bytes(je.text, text, sizeof(text));
        (void)snprintf(where, sizeof(where), "%s:%d:%d", name, je.line, je.column);
        if (json_error_code(&je) == json_error_invalid_utf8)
            err_line(x, where, "invalid UTF-8: %s (byte offset %d)", text, je.position);
        else
            err_line(x, where, "%s", text);
        return -EINVAL;
    }
    if (!json_is_object(root))
        err_line(x, name, "expected an object {...} at the top level, got %s", GOT(root));
    else {
        load_object(x, root, "");
        load_rules(x, root);
    }
    json_decref(root);
    check_rules(x);
    if (x->oom)
        return -ENOMEM;
    return x->errs.n ? -EINVAL : 0;
}

int cfg_load_buf(const char *buf, size_t len, const char *name, struct cfg **ret_cfg,
                 struct cfg_errs *ret_errs)
{
    return cfg_load_buf_at(buf, len, name, NULL, ret_cfg, ret_errs);
}

int cfg_load_buf_at(const char *buf, size_t len, const char *name, const char *dir,
                    struct cfg **ret_cfg, struct cfg_errs *ret_errs)
{
    struct load *x = calloc(1, sizeof(*x));
    char shown[256];
    int r;

    if (ret_errs)
        *ret_errs = (struct cfg_errs){0};
    if (!x)
        return -ENOMEM;
    x->dir = dir;
    show_bytes(name ? name : CFG_FILE_NAME, shown, sizeof(shown));
    x->c = cfg_new_default();
    if (!x->c) {
        r = -ENOMEM;
        goto fail;
    }
    r = load_doc(x, buf ? buf : "", buf ? len : 0, shown);
    if (r < 0)
        goto fail;
    if (ret_cfg)
        *ret_cfg = x->c;
    else
        cfg_free(x->c);
    free(x);
    return 0;
fail:
    cfg_free(x->c);
    if (ret_errs)
        *ret_errs = x->errs;
    else
        cfg_errs_free(&x->errs);
    free(x);
    return r;
}

int cfg_validate(const struct cfg *c, struct cfg_errs *ret_errs)
{
    struct load *x = calloc(1, sizeof(*x));
    json_t *root = NULL;
    int r;

    if (ret_errs)
        *ret_errs = (struct cfg_errs){0};
    if (!c) {
        free(x);
        return -EINVAL;
    }
    if (!x)
        return -ENOMEM;
    /*
     * Check the config as the document it stands for: one set of rules and
     * messages for files, flags and code.
     */
    x->c = cfg_new_default();
    /* load_object() passes over the rule keys: they were checked at load. */
    root = cfg_to_json(c);
    if (!x->c || !root) {
        r = -ENOMEM;
        goto fail;
    }
    load_object(x, root, "");
    check_rules(x);
    r = x->oom ? -ENOMEM : x->errs.n ? -EINVAL : 0;
    if (r < 0)
        goto fail;
    json_decref(root);
    cfg_free(x->c);
    free(x);
    return 0;
fail:
    json_decref(root);
    cfg_free(x->c);
    if (ret_errs)
        *ret_errs = x->errs;
    else
        cfg_errs_free(&x->errs);
    free(x);
    return r;
}

/* One line for a file-system problem; path shown escaped. */
static int file_err(struct cfg_errs *ret_errs, const char *path, int err, const char *what)
{
    struct load x = {0};
    char shown[1024], ebuf[128];

    show_bytes(path, shown, sizeof(shown));
    if (what)
        err_line(&x, shown, "%s", what);
    else
        err_line(&x, shown, "%s", strerror_r(err, ebuf, sizeof(ebuf)));
    if (ret_errs)
        *ret_errs = x.errs;
    else
        cfg_errs_free(&x.errs);
    return -err;
}

static int load_dir(const char *dir, struct cfg **ret_cfg, struct cfg_errs *ret_errs, int required)
{
    char *path = NULL, *buf = NULL;
    struct stat st;
    size_t len = 0, dlen;
    int fd = -1, r;

    if (ret_errs)
        *ret_errs = (struct cfg_errs){0};
    if (!dir)
        dir = CFG_DEFAULT_DIR;
    dlen = strlen(dir);
    while (dlen > 1 && dir[dlen - 1] == '/')
        dlen--;
    if (asprintf(&path, "%.*s%s%s", (int)dlen, dir, dlen == 0 || dir[dlen - 1] == '/' ? "" : "/",
                 CFG_FILE_NAME) < 0)
        return -ENOMEM;
    /* O_NONBLOCK: a FIFO named proxy.json must not hang the validator. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        r = -errno;
        if (r == -ENOENT && lstat(path, &st) == 0) {
            r = file_err(ret_errs, path, EINVAL, "a symbolic link to nothing");
            goto fail;
        }
        if (r == -ENOENT && required) {
            r = file_err(ret_errs, path, ENOENT,
                         "no such file (the running config stays: a reload never falls back to "
                         "the built-in defaults)");
            goto fail;
        }
        if (r == -ENOENT) {
            /* No file: the built-in defaults (C9). */
            struct cfg *c = cfg_new_default();

            free(path);
            if (!c)
                return -ENOMEM;
            if (ret_cfg)
                *ret_cfg = c;
            else
                cfg_free(c);
            return 0;
        }
        r = file_err(ret_errs, path, -r, NULL);
        goto fail;
    }
    if (fstat(fd, &st) < 0) {
        r = file_err(ret_errs, path, errno, NULL);
        goto fail;
    }
    if (S_ISDIR(st.st_mode)) {
        r = file_err(ret_errs, path, EISDIR, "a directory, not a file");
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        r = file_err(ret_errs, path, EINVAL, "not a regular file");
        goto fail;
    }
    if (st.st_size > CFG_MAX_FILE_BYTES) {
        r = file_err(ret_errs, path, EFBIG, "larger than 1 MiB");
        goto fail;
    }
    /* Read to EOF, not st_size: the file may change, and some report size 0. */
    buf = malloc(CFG_MAX_FILE_BYTES + 1);
    if (!buf) {
        r = -ENOMEM;
        goto fail;
    }
    while (len <= CFG_MAX_FILE_BYTES) {
        ssize_t got_n = read(fd, buf + len, CFG_MAX_FILE_BYTES + 1 - len);

        if (got_n < 0 && errno == EINTR)
            continue;
        if (got_n < 0) {
            r = file_err(ret_errs, path, errno, NULL);
            goto fail;
        }
        if (got_n == 0)
            break;
        len += (size_t)got_n;
    }
    if (len > CFG_MAX_FILE_BYTES) {
        r = file_err(ret_errs, path, EFBIG, "larger than 1 MiB");
        goto fail;
    }
    (void)close(fd);
    fd = -1;
    r = cfg_load_buf_at(buf, len, CFG_FILE_NAME, dir, ret_cfg, ret_errs);
    free(buf);
    free(path);
    return r;
fail:
    if (fd >= 0)
        (void)close(fd);
    free(buf);
    free(path);
    return r;
}

int cfg_load(const char *dir, struct cfg **ret_cfg, struct cfg_errs *ret_errs)
{
    return load_dir(dir, ret_cfg, ret_errs, 0);
}

int cfg_load_required(const char *dir, struct cfg **ret_cfg, struct cfg_errs *ret_errs)
{
    return load_dir(dir, ret_cfg, ret_errs, 1);
}
