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
#include "cfg/rules.h"

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

/* ---- edge rules: `lists`, `rules`, `error_pages` ------------------------ */

/*
 * The rule keys have a table of their own: their values are lists and
 * nested objects the flat table above cannot describe. The loader's
 * unknown-key checks and suggestions, the rules section of docs/config.md
 * and the rules part of cfg/proxy.schema.json come from it; cfg/rules.c
 * reads the values.
 */
enum cfg_rtype {
    CFG_RT_OBJECT = 0,  /* fixed keys: the rows below it */
    CFG_RT_MAP,         /* keys the user names (header names, list names); values of type value */
    CFG_RT_RULES,       /* the array of rule objects; the rows below it are a rule's keys */
    CFG_RT_STRING,      /* a string (pattern, when set, describes it for the JSON Schema) */
    CFG_RT_STRINGS,     /* a string or a non-empty array of strings */
    CFG_RT_TEMPLATE,    /* a string with {placeholders} */
    CFG_RT_TEMPLATES,   /* a template or an array of them */
    CFG_RT_HVALUES,     /* header match: an array of exact values, a string, true or false */
    CFG_RT_NAMES,       /* an array of header names */
    CFG_RT_STATUS,      /* an integer from statuses[] or from smin to smax (statuses, rates) */
    CFG_RT_FILE,        /* a file name relative to the config folder */
    CFG_RT_MATCH,       /* a match object (the rows below rules[].match), for "not" */
    CFG_RT_UNSUPPORTED, /* a key reserved for a later version: refused */
    /* must stay last */
    CFG_RT_COUNT
};

struct cfg_rkey {
    const char *path; /* dotted, "[]" for the items of the rules array: "rules[].match.host" */
    enum cfg_rtype type;
    enum cfg_rtype value;     /* MAP: the type of each value */
    const char *pattern;      /* MAP: its keys; STRING, STRINGS, FILE: the value (JSON Schema) */
    const uint16_t *statuses; /* STATUS: the allowed ones, or NULL for smin..smax */
    size_t nstatuses;
    uint32_t smin, smax, sdef; /* STATUS: range, default (0: none); also other bounded integers */
    const char *def;           /* default shown in the documentation, or NULL */
    const char *doc;           /* one line, markdown allowed */
};

/* The rule keys' table, in documentation order (an object before the keys inside it). */
const struct cfg_rkey *cfg_rules_keys(size_t *ret_n);

/* The row of a dotted path ("rules[].redirect.to"), or NULL. */
const struct cfg_rkey *cfg_rules_find(const char *path);

/* The top-level keys of the rules table ("lists", "rules", "error_pages"). */
int cfg_rules_is_top(const char *key);

/*
 * Compile the three values (each NULL when absent) into *ret_rules. Files
 * are read from dir (NULL: a file reference is a problem). Problems are
 * appended to errs as "pointer: message". Returns 0, -EINVAL, or -ENOMEM.
 */
int cfg_rules_build(const json_t *lists, const json_t *rules, const json_t *error_pages,
                    const char *dir, struct cfg_rules **ret_rules, struct cfg_errs *errs);

/*
 * Append one object key to a JSON pointer being built in ptr (cap bytes,
 * n used): "/" then the key with RFC 6901 escapes, characters outside
 * printable ASCII as \uXXXX, cut when long. Returns the new length.
 */
size_t cfg_ptr_key(char *ptr, size_t n, size_t cap, const char *key);

/* A value as compact ASCII JSON for messages ("got ..."), cut with "..." when long. */
const char *cfg_got(const json_t *v, char *buf, size_t cap);

/* Bytes as text for a one-line message: outside printable ASCII as \xNN. */
void cfg_show_bytes(const char *s, size_t n, char *out, size_t cap);

/*
 * Parse an address or CIDR ("10.0.0.0/8", "2001:db8::/32", "198.51.100.7")
 * of n bytes into an inclusive range; IPv4 as IPv4-mapped IPv6. On failure,
 * the reason in why: "is not an address or CIDR" (the caller shows the
 * value before it) or "A/N: host bits set; did you mean B/N?".
 */
int cfg_cidr_parse(const char *s, size_t n, struct cfg_iprange *ret, char *why, size_t cap);

/* Sort and merge n ranges in place into a set that owns v (free(set->v)). */
void cfg_ipset_build(struct cfg_ipset *set, struct cfg_iprange *v, size_t n);

#endif
