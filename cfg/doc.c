/*
 * The schema table rendered for people and tools: the config as JSON,
 * docs/config.md's reference tables, cfg/proxy.schema.json. Tests compare
 * the checked-in files with these, so the documentation cannot drift.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cfg/cfg.h"
#include "cfg/schema.h"

/* Header names as a JSON Schema pattern: RFC 9110 tchar, 1 to CFG_MAX_HEADER_NAME. */
#define HEADER_PATTERN "^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$"
#define LISTEN_PATTERN "^(127\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}|\\[::1\\]):[1-9][0-9]{0,4}$"

static json_t *uint_json(uint64_t v)
{
    /* Only a corrupt config holds more; show it rather than wrap to a negative. */
    return v > INT64_MAX ? json_real((double)v) : json_integer((json_int_t)v);
}

static json_t *value_json(const struct cfg *c, const struct cfg_key *k)
{
    const char *m = (const char *)c + k->offset;
    json_t *a;

    switch (k->kind) {
    case CFG_K_OBJECT:
        return json_object();
    case CFG_K_UINT:
        return uint_json(k->size == sizeof(uint32_t) ? *(const uint32_t *)(const void *)m
                                                     : *(const uint64_t *)(const void *)m);
    case CFG_K_ENUM: {
        int e = *(const int *)(const void *)m;

        return e >= 0 && (size_t)e < k->nnames ? json_string(k->names[e]) : json_integer(e);
    }
    case CFG_K_FIELDS: {
        const enum cfg_field *f = (const enum cfg_field *)(const void *)m;
        size_t n = *(const size_t *)(const void *)((const char *)c + k->offset_n);

        a = json_array();
        for (size_t i = 0; a && i < n; i++) {
            json_t *e = i >= CFG_F_COUNT               ? json_null()
                        : (unsigned)f[i] < CFG_F_COUNT ? json_string(cfg_field_name(f[i]))
                                                       : json_integer(f[i]);

            if (json_array_append_new(a, e) < 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    case CFG_K_HEADERS: {
        char *const *v = *(char *const *const *)(const void *)m;
        size_t n = *(const size_t *)(const void *)((const char *)c + k->offset_n);

        a = json_array();
        for (size_t i = 0; a && i < n; i++) {
            /* json_string() refuses invalid UTF-8: show such a name as null. */
            json_t *e = v && v[i] ? json_string(v[i]) : NULL;

            if (json_array_append_new(a, e ? e : json_null()) < 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    case CFG_K_LISTEN: {
        json_t *s = json_stringn(m, strnlen(m, k->size));

        return s ? s : json_null();
    }
    case CFG_K_IGNORED:
    case CFG_K_COUNT:
        break;
    }
    return NULL;
}

/* The object a dotted path's last key belongs in. */
static json_t *parent_json(json_t *root, const char *path)
{
    char part[128];
    const char *dot;

    while ((dot = strchr(path, '.')) != NULL && root) {
        size_t n = (size_t)(dot - path);

        if (n >= sizeof(part))
            return NULL;
        memcpy(part, path, n);
        part[n] = '\0';
        root = json_object_get(root, part);
        path = dot + 1;
    }
    return root;
}

json_t *cfg_to_json(const struct cfg *c)
{
    size_t n;
    const struct cfg_key *keys = cfg_schema_keys(&n);
    json_t *root = json_object();

    if (!root)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        json_t *parent, *v;

        if (keys[i].kind == CFG_K_IGNORED)
            continue;
        parent = parent_json(root, keys[i].path);
        v = value_json(c, &keys[i]);
        if (!parent || json_object_set_new(parent, cfg_key_name(&keys[i]), v) < 0)
            goto fail;
    }
    if (c->rules_json) {
        /* The edge rules as written: their compiled form does not say everything. */
        json_t *r = json_loads(c->rules_json, 0, NULL);

        if (!r || json_object_update(root, r) < 0) {
            json_decref(r);
            goto fail;
        }
        json_decref(r);
    }
    return root;
fail:
    json_decref(root);
    return NULL;
}

char *cfg_dump(const struct cfg *c)
{
    json_t *j = c ? cfg_to_json(c) : NULL;
    char *s, *out = NULL;

    if (!j)
        return NULL;
    s = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    json_decref(j);
    if (s && asprintf(&out, "%s\n", s) < 0)
        out = NULL;
    free(s);
    return out;
}

char *cfg_schema_example(void)
{
    struct cfg *c = cfg_new_default();
    char *s = c ? cfg_dump(c) : NULL;

    cfg_free(c);
    return s;
}

static const char *type_name(const struct cfg_key *k)
{
    switch (k->kind) {
    case CFG_K_OBJECT:
        return "object";
    case CFG_K_UINT:
        return "integer";
    case CFG_K_ENUM:
    case CFG_K_LISTEN:
    case CFG_K_IGNORED:
        return "string";
    case CFG_K_FIELDS:
        return "array of field names";
    case CFG_K_HEADERS:
        return "array of header names";
    case CFG_K_COUNT:
        break;
    }
    return "?";
}

static void md_row(FILE *f, const struct cfg_key *k)
{
    fprintf(f, "| `%s` | %s | ", k->path, type_name(k));
    switch (k->kind) {
    case CFG_K_OBJECT:
        fprintf(f, " | | ");
        break;
    case CFG_K_UINT:
        fprintf(f, "`%" PRIu64 "` | %" PRIu64 " to %" PRIu64 " | ", k->def, k->min, k->max);
        break;
    case CFG_K_ENUM:
        fprintf(f, "`\"%s\"` | ", k->names[k->def]);
        for (size_t i = 0; i < k->nnames; i++)
            fprintf(f, "%s`\"%s\"`", i ? ", " : "", k->names[i]);
        fprintf(f, " | ");
        break;
    case CFG_K_FIELDS:
        fprintf(f,
                "every field, in the order of the field list | %" PRIu64 " to %" PRIu64
                " distinct field names | ",
                k->min, k->max);
        break;
    case CFG_K_HEADERS:
        fprintf(f, "`[]` | %" PRIu64 " to %" PRIu64 " RFC 9110 tokens of 1 to %d characters | ",
                k->min, k->max, CFG_MAX_HEADER_NAME);
        break;
    case CFG_K_LISTEN:
        fprintf(f, "`\"%s\"` | loopback `ADDR:PORT` | ", k->def_str);
        break;
    case CFG_K_IGNORED:
        fprintf(f, "none | any string | ");
        break;
    case CFG_K_COUNT:
        break;
    }
    fprintf(f, "%s |\n", k->doc);
}

static const char *rtype_name(enum cfg_rtype t)
{
    switch (t) {
    case CFG_RT_OBJECT:
        return "object";
    case CFG_RT_MAP:
        return "object";
    case CFG_RT_RULES:
        return "array of rule objects";
    case CFG_RT_STRING:
        return "string";
    case CFG_RT_STRINGS:
        return "string or array of strings";
    case CFG_RT_TEMPLATE:
        return "template";
    case CFG_RT_TEMPLATES:
        return "template or array of templates";
    case CFG_RT_HVALUES:
        return "array of strings, string, `true` or `false`";
    case CFG_RT_NAMES:
        return "array of header names";
    case CFG_RT_STATUS:
        return "integer";
    case CFG_RT_FILE:
        return "file name";
    case CFG_RT_MATCH:
        return "match object";
    case CFG_RT_UNSUPPORTED:
        return "reserved";
    case CFG_RT_COUNT:
        break;
    }
    return "?";
}

/*
 * A pattern as inline code in a table cell: double backticks, since it may
 * hold one, and '|' escaped, which GitHub reads as a cell border even there.
 */
static void md_code(FILE *f, const char *s)
{
    fputs("`` ", f);
    for (; *s; s++) {
        if (*s == '|')
            fputc('\\', f);
        fputc(*s, f);
    }
    fputs(" ``", f);
}

/* The rules table as docs/config.md's reference; docs/rules.md explains it. */
static void rules_markdown(FILE *f)
{
    size_t n;
    const struct cfg_rkey *k = cfg_rules_keys(&n);

    fprintf(f, "\n### Edge rules (`lists`, `rules`, `error_pages`)\n\n"
               "Absent by default. The model (evaluation order, normalised paths, the health "
               "check, templates) and a cookbook of complete configs are in "
               "[rules.md](rules.md); this is the reference of the keys. Templates may hold "
               "`{scheme}` `{host}` `{path}` `{query}` `{uri}` `{method}` `{client_ip}`. Files "
               "are relative to the config folder.\n\n");
    fprintf(f, "| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n");
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "| `%s` | %s", k[i].path, rtype_name(k[i].type));
        if (k[i].type == CFG_RT_MAP)
            fprintf(f, ": name -> %s", rtype_name(k[i].value));
        fprintf(f, " | %s%s%s | ", k[i].def ? "`" : "", k[i].def ? k[i].def : "",
                k[i].def ? "`" : "");
        if (k[i].type == CFG_RT_STATUS && k[i].statuses) {
            for (size_t j = 0; j < k[i].nstatuses; j++)
                fprintf(f, "%s%u", j ? ", " : "", (unsigned)k[i].statuses[j]);
        } else if (k[i].type == CFG_RT_STATUS) {
            fprintf(f, "%u to %u", (unsigned)k[i].smin, (unsigned)k[i].smax);
        } else if (k[i].pattern) {
            fprintf(f, "%s", k[i].type == CFG_RT_MAP ? "names " : "");
            md_code(f, k[i].pattern);
        }
        fprintf(f, " | %s |\n", k[i].doc);
    }
}

char *cfg_schema_markdown(void)
{
    size_t n, nrules, len = 0;
    const struct cfg_key *keys = cfg_schema_keys(&n);
    const struct cfg_rule *rules = cfg_schema_rules(&nrules);
    char *out = NULL;
    FILE *f = open_memstream(&out, &len);

    if (!f)
        return NULL;
    fprintf(f, "### Keys (schema v%d)\n\n", CFG_SCHEMA_VERSION);
    fprintf(f, "| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n");
    for (size_t i = 0; i < n; i++)
        md_row(f, &keys[i]);
    fprintf(f, "\n### Rules between keys\n\n");
    for (size_t i = 0; i < nrules; i++)
        fprintf(f, "- `%s` must not exceed `%s`: %s.\n", rules[i].a, rules[i].b, rules[i].why);
    rules_markdown(f);
    fprintf(f, "\n### Access-log fields\n\n| field | meaning |\n|---|---|\n");
    for (int i = 0; i < CFG_F_COUNT; i++)
        fprintf(f, "| `%s` | %s |\n", cfg_field_name((enum cfg_field)i),
                cfg_field_doc((enum cfg_field)i));
    if (fclose(f) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* json_object_set_new, remembering a failure instead of checking each call. */
static void set(json_t *o, const char *key, json_t *v, int *failed)
{
    if (!o) {
        json_decref(v);
        *failed = 1;
    } else if (json_object_set_new(o, key, v) < 0) {
        *failed = 1; /* v was released */
    }
}

static json_t *names_json(const char *const *names, size_t n)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < n; i++) {
        if (json_array_append_new(a, json_string(names[i])) < 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *key_schema(const struct cfg_key *k, int *failed)
{
    const char *fields[CFG_F_COUNT];
    json_t *s = json_object(), *items;

    set(s, "description", json_string(k->doc), failed);
    switch (k->kind) {
    case CFG_K_OBJECT:
        set(s, "type", json_string("object"), failed);
        set(s, "additionalProperties", json_false(), failed);
        set(s, "properties", json_object(), failed);
        break;
    case CFG_K_UINT:
        set(s, "type", json_string("integer"), failed);
        set(s, "minimum", uint_json(k->min), failed);
        set(s, "maximum", uint_json(k->max), failed);
        set(s, "default", uint_json(k->def), failed);
        break;
    case CFG_K_ENUM:
        set(s, "type", json_string("string"), failed);
        set(s, "enum", names_json(k->names, k->nnames), failed);
        set(s, "default", json_string(k->names[k->def]), failed);
        break;
    case CFG_K_FIELDS:
        for (int i = 0; i < CFG_F_COUNT; i++)
            fields[i] = cfg_field_name((enum cfg_field)i);
        items = json_object();
        set(items, "type", json_string("string"), failed);
        set(items, "enum", names_json(fields, CFG_F_COUNT), failed);
        set(s, "type", json_string("array"), failed);
        set(s, "items", items, failed);
        set(s, "minItems", uint_json(k->min), failed);
        set(s, "maxItems", uint_json(k->max), failed);
        set(s, "uniqueItems", json_true(), failed);
        set(s, "default", names_json(fields, CFG_F_COUNT), failed);
        break;
    case CFG_K_HEADERS:
        items = json_object();
        set(items, "type", json_string("string"), failed);
        set(items, "pattern", json_string(HEADER_PATTERN), failed);
        set(s, "type", json_string("array"), failed);
        set(s, "items", items, failed);
        set(s, "minItems", uint_json(k->min), failed);
        set(s, "maxItems", uint_json(k->max), failed);
        set(s, "uniqueItems", json_true(), failed);
        set(s, "default", json_array(), failed);
        break;
    case CFG_K_LISTEN:
        set(s, "type", json_string("string"), failed);
        set(s, "pattern", json_string(LISTEN_PATTERN), failed);
        set(s, "default", json_string(k->def_str), failed);
        break;
    case CFG_K_IGNORED:
        set(s, "type", json_string("string"), failed);
        break;
    case CFG_K_COUNT:
        break;
    }
    return s;
}

static json_t *str_schema(const char *pattern, int *failed)
{
    json_t *s = json_object();

    set(s, "type", json_string("string"), failed);
    if (pattern)
        set(s, "pattern", json_string(pattern), failed);
    return s;
}

static json_t *one_or_more(json_t *one, int *failed)
{
    json_t *arr = json_object(), *any = json_array(), *s = json_object();

    set(arr, "type", json_string("array"), failed);
    set(arr, "minItems", json_integer(1), failed);
    set(arr, "items", json_deep_copy(one), failed);
    if (!any || json_array_append_new(any, one) < 0 || json_array_append_new(any, arr) < 0)
        *failed = 1;
    set(s, "anyOf", any, failed);
    return s;
}

/* The JSON Schema of a value of type t (pattern: for strings). */
static json_t *rtype_schema(const struct cfg_rkey *k, enum cfg_rtype t, const char *pattern,
                            int *failed)
{
    json_t *s = NULL, *any;

    switch (t) {
    case CFG_RT_OBJECT:
        s = json_object();
        set(s, "type", json_string("object"), failed);
        set(s, "additionalProperties", json_false(), failed);
        set(s, "properties", json_object(), failed);
        break;
    case CFG_RT_MAP:
        s = json_object();
        set(s, "type", json_string("object"), failed);
        set(s, "propertyNames", str_schema(k->pattern, failed), failed);
        set(s, "additionalProperties", rtype_schema(k, k->value, NULL, failed), failed);
        break;
    case CFG_RT_RULES:
        s = json_object();
        set(s, "type", json_string("array"), failed);
        set(s, "maxItems", json_integer(CFG_RULES_MAX), failed);
        set(s, "items", rtype_schema(k, CFG_RT_OBJECT, NULL, failed), failed);
        break;
    case CFG_RT_STRING:
    case CFG_RT_TEMPLATE:
        s = str_schema(pattern, failed);
        break;
    case CFG_RT_STRINGS:
    case CFG_RT_TEMPLATES:
        s = one_or_more(str_schema(pattern, failed), failed);
        break;
    case CFG_RT_HVALUES:
        s = one_or_more(str_schema(NULL, failed), failed);
        any = json_object_get(s, "anyOf");
        if (!any || json_array_append_new(any, json_pack("{s:s}", "type", "boolean")) < 0)
            *failed = 1;
        break;
    case CFG_RT_NAMES:
        s = json_object();
        set(s, "type", json_string("array"), failed);
        set(s, "items", str_schema(HEADER_PATTERN, failed), failed);
        break;
    case CFG_RT_STATUS:
        s = json_object();
        set(s, "type", json_string("integer"), failed);
        if (k->statuses) {
            json_t *e = json_array();

            for (size_t i = 0; e && i < k->nstatuses; i++) {
                if (json_array_append_new(e, json_integer(k->statuses[i])) < 0)
                    *failed = 1;
            }
            set(s, "enum", e, failed);
        } else {
            set(s, "minimum", json_integer(k->smin), failed);
            set(s, "maximum", json_integer(k->smax), failed);
        }
        if (k->sdef)
            set(s, "default", json_integer(k->sdef), failed);
        break;
    case CFG_RT_FILE:
        s = str_schema("^[^/]", failed);
        set(s, "minLength", json_integer(1), failed);
        break;
    case CFG_RT_MATCH:
        s = json_object();
        set(s, "$ref", json_string("#/$defs/match"), failed);
        break;
    case CFG_RT_UNSUPPORTED:
    case CFG_RT_COUNT:
        break;
    }
    if (!s)
        *failed = 1;
    return s;
}

/*
 * The rules table into the schema's properties; "[]" descends into an
 * array's items. The match object goes into $defs too, for "not".
 */
static void rules_schema(json_t *root, int *failed)
{
    size_t n;
    const struct cfg_rkey *k = cfg_rules_keys(&n);

    for (size_t i = 0; i < n && !*failed; i++) {
        char path[128], *dot, *p;
        json_t *props = json_object_get(root, "properties"), *s;

        if (k[i].type == CFG_RT_UNSUPPORTED)
            continue; /* refused, so not in the schema */
        (void)snprintf(path, sizeof(path), "%s", k[i].path);
        for (p = path; (dot = strchr(p, '.')) != NULL; p = dot + 1) {
            size_t len;
            json_t *node;

            *dot = '\0';
            len = strlen(p);
            if (len > 2 && strcmp(p + len - 2, "[]") == 0) {
                p[len - 2] = '\0';
                node = json_object_get(json_object_get(props, p), "items");
            } else {
                node = json_object_get(props, p);
            }
            props = json_object_get(node, "properties");
        }
        s = rtype_schema(&k[i], k[i].type, k[i].pattern, failed);
        set(s, "description", json_string(k[i].doc), failed);
        set(props, p, s, failed);
    }
    if (!*failed) {
        json_t *rules = json_object_get(json_object_get(root, "properties"), "rules");
        json_t *match = json_object_get(
            json_object_get(json_object_get(rules, "items"), "properties"), "match");
        json_t *defs = json_object();

        set(defs, "match", json_deep_copy(match), failed);
        set(root, "$defs", defs, failed);
    }
}

json_t *cfg_schema_json(void)
{
    size_t n;
    const struct cfg_key *keys = cfg_schema_keys(&n);
    json_t *root = json_object();
    int failed = 0;

    set(root, "$schema", json_string("https://json-schema.org/draft/2020-12/schema"), &failed);
    set(root, "title", json_string("ringproxy proxy.json, schema v1"), &failed);
    set(root, "description",
        json_string("Generated from cfg/schema.c; the cfg library is the authority and also "
                    "checks what a schema cannot express (loopback ranges, rules between keys, "
                    "header names unique once lower-cased)."),
        &failed);
    set(root, "type", json_string("object"), &failed);
    set(root, "additionalProperties", json_false(), &failed);
    set(root, "properties", json_object(), &failed);
    for (size_t i = 0; i < n && !failed; i++) {
        char path[128], *dot;
        json_t *props = json_object_get(root, "properties");

        /* Descend to the properties of the object holding this key. */
        (void)snprintf(path, sizeof(path), "%s", keys[i].path);
        for (char *p = path; (dot = strchr(p, '.')) != NULL; p = dot + 1) {
            *dot = '\0';
            props = json_object_get(json_object_get(props, p), "properties");
        }
        set(props, cfg_key_name(&keys[i]), key_schema(&keys[i], &failed), &failed);
    }
    if (!failed)
        rules_schema(root, &failed);
    if (failed) {
        json_decref(root);
        return NULL;
    }
    return root;
}
