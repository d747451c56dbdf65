/*
 * A set of byte strings built once at load time, then looked up in O(1) on
 * the request path: open addressing with linear probing, at most half full,
 * keys packed in one arena. Each key gets the index of its first insertion
 * (0, 1, 2, ...), which callers use to find what goes with it (the target of
 * a redirect, the rule a host belongs to). No allocation after building.
 */
#ifndef RINGPROXY_CFG_HSET_H
#define RINGPROXY_CFG_HSET_H

#include <stddef.h>
#include <stdint.h>

struct cfg_hset {
    uint32_t *slots; /* 0: empty; else key index + 1 */
    uint32_t *hash;  /* per key: its hash, so that a rebuild and most misses skip the compare */
    uint32_t *off;   /* per key: offset in arena */
    uint32_t *len;   /* per key: length */
    char *arena;
    size_t arena_len, arena_cap;
    uint32_t n, cap_keys, mask;
    uint8_t icase; /* ASCII case-insensitive: keys are stored and compared in lower case */
};

/* An empty set; icase makes it ASCII case-insensitive. */
void cfg_hset_init(struct cfg_hset *s, int icase);

/*
 * Add a key. Returns its index (the existing index when it was there
 * already, with *ret_dup set to 1 when ret_dup is not NULL), or -ENOMEM.
 */
long cfg_hset_add(struct cfg_hset *s, const char *k, size_t n, int *ret_dup);

/* The index of key k, or -1. Safe on an empty (initialised or zeroed) set. */
long cfg_hset_find(const struct cfg_hset *s, const char *k, size_t n);

/*
 * The hash a set of that icase uses for k: computed once, a key can be
 * looked up in many sets with cfg_hset_find_hashed() (the request path
 * probes the same host and path in every rule's sets).
 */
uint32_t cfg_hset_hash(const char *k, size_t n, int icase);

/*
 * The same hash, fed in pieces: cfg_hset_hash(k, n) is
 * cfg_hset_mix(cfg_hset_feed(CFG_HSET_SEED, k, n)), and feeding k then more
 * bytes continues it, so every prefix of a key is hashed in one pass.
 */
#define CFG_HSET_SEED 2166136261u

static inline uint32_t cfg_hset_feed(uint32_t h, const char *k, size_t n, int icase)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)k[i];

        h ^= icase && c >= 'A' && c <= 'Z' ? (unsigned char)(c | 0x20) : c;
        h *= 16777619u;
    }
    return h;
}

static inline uint32_t cfg_hset_mix(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x7feb352dU;
    h ^= h >> 15;
    return h;
}

/* cfg_hset_find() with h = cfg_hset_hash(k, n, s->icase). */
long cfg_hset_find_hashed(const struct cfg_hset *s, const char *k, size_t n, uint32_t h);

/* Key i, and its length in *ret_len. */
const char *cfg_hset_key(const struct cfg_hset *s, uint32_t i, size_t *ret_len);

/* Bytes of memory the set holds (for docs/rules.md's per-entry figure). */
size_t cfg_hset_bytes(const struct cfg_hset *s);

/* Free what the set holds; it is then empty and may be reused after cfg_hset_init(). */
void cfg_hset_free(struct cfg_hset *s);

#endif
