/*
 * cfg private: the proxy.json schema (v1) as one table. The loader, the
 * validator, the defaults, docs/config.md and cfg/proxy.schema.json all come
 * from it, so they cannot disagree. Not part of the engine's API: used by
 * the cfg sources, the tests and the documentation generator.
 */
#ifndef RINGPROXY_CFG_SCHEMA_H
#define RINGPROXY_CFG_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cfg/cfg.h"

#define CFG_SCHEMA_VERSION 1

/* Rows in the table, at most (the loader keeps per-row flags in arrays). */
#define CFG_SCHEMA_MAX_KEYS 64

/*
 * Largest integer accepted for 64-bit keys: 2^53 - 1, the largest integer
 * every JSON implementation reads exactly (RFC 8259, section 6).
 */
#define CFG_JSON_INT_MAX UINT64_C(9007199254740991)

enum cfg_kind {
    CFG_K_OBJECT = 0, /* a JSON object holding the keys below it */
    CFG_K_UINT,       /* integer in [min, max]; a uint32_t or uint64_t member */
    CFG_K_ENUM,       /* one of names[]; stored as the enum value */
    CFG_K_FIELDS,     /* array of access-log field names, min..max entries */
    CFG_K_HEADERS,    /* array of header names, min..max entries */
    CFG_K_LISTEN,     /* "ADDR:PORT" on loopback (C2) */
    CFG_K_IGNORED,    /* a string the proxy does not use ("$schema") */
    /* must stay last */
    CFG_K_COUNT
};

struct cfg_key {
    const char *path; /* dotted: "upstream.connect_timeout_ms" */
    enum cfg_kind kind;
    uint64_t min, max;        /* UINT: value range; FIELDS, HEADERS: entry count */
    uint64_t def;             /* UINT: default; ENUM: default index */
    const char *def_str;      /* LISTEN: default */
    const char *const *names; /* ENUM: names indexed by enum value */
    size_t nnames;
    size_t offset;   /* of the member in struct cfg; unused for OBJECT, IGNORED */
    size_t size;     /* of that member */
    size_t offset_n; /* FIELDS, HEADERS: the size_t count member */
    const char *doc; /* one line, markdown allowed */
};

/* Two keys where a's value must not exceed b's. */
struct cfg_rule {
    const char *a, *b;
    const char *why; /* completes "A must not exceed B: " */
};

/* The table, in documentation order (an object before the keys inside it). */
const struct cfg_key *cfg_schema_keys(size_t *ret_n);

/* Rules between keys. */
const struct cfg_rule *cfg_schema_rules(size_t *ret_n);

/* The row of a dotted path, or NULL. */
const struct cfg_key *cfg_schema_find(const char *path);

/* Last component of a row's path ("connect_timeout_ms"). */
const char *cfg_key_name(const struct cfg_key *k);

/* True when k sits directly inside the object at dotted path parent ("" = top level). */
int cfg_key_in(const struct cfg_key *k, const char *parent);

/* JSON pointer of a dotted path: "upstream.x" -> "/upstream/x". Writes at most cap bytes. */
void cfg_key_pointer(const char *path, char *buf, size_t cap);

/* Short description of an access-log field, for the documentation. */
const char *cfg_field_doc(enum cfg_field f);

/* Damerau (optimal string alignment) distance, ASCII case-insensitive; capped at limit + 1. */
size_t cfg_distance(const char *a, size_t alen, const char *b, size_t blen, size_t limit);

/*
 * Of the n strings cand[i], the one closest to s when close enough to be a
 * likely typo, else NULL.
 */
const char *cfg_suggest(const char *s, size_t len, const char *const *cand, size_t n);

/* The config as a JSON object holding every key, in table order. NULL on OOM. */
json_t *cfg_to_json(const struct cfg *c);

/* The reference tables of docs/config.md (markdown). NULL on OOM; free() it. */
char *cfg_schema_markdown(void);

/* A complete proxy.json holding every default, indented. NULL on OOM; free() it. */
char *cfg_schema_example(void);

/* The JSON Schema (draft 2020-12) of proxy.json; cfg/proxy.schema.json holds it. */
json_t *cfg_schema_json(void);

#endif
