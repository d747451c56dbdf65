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
    if (failed) {
        json_decref(root);
        return NULL;
    }
    return root;
}
