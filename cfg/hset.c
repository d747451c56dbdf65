#include "cfg/hset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static inline unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c | 0x20) : c;
}

/* FNV-1a, then a final mix so that linear probing sees well-spread low bits. */
static uint32_t hash(const char *k, size_t n, int icase)
{
    return cfg_hset_mix(cfg_hset_feed(CFG_HSET_SEED, k, n, icase));
}

static int key_eq(const struct cfg_hset *s, uint32_t i, const char *k, size_t n)
{
    const char *a = s->arena + s->off[i];

    if (s->len[i] != n)
        return 0;
    if (!s->icase)
        return memcmp(a, k, n) == 0;
    for (size_t j = 0; j < n; j++)
        if (a[j] != (char)lower((unsigned char)k[j]))
            return 0;
    return 1;
}

void cfg_hset_init(struct cfg_hset *s, int icase)
{
    *s = (struct cfg_hset){.icase = (uint8_t)(icase != 0)};
}

uint32_t cfg_hset_hash(const char *k, size_t n, int icase)
{
    return hash(k, n, icase);
}

long cfg_hset_find(const struct cfg_hset *s, const char *k, size_t n)
{
    return s->n ? cfg_hset_find_hashed(s, k, n, hash(k, n, s->icase)) : -1;
}

long cfg_hset_find_hashed(const struct cfg_hset *s, const char *k, size_t n, uint32_t h)
{
    uint32_t i;

    if (!s->n)
        return -1;
    for (i = h & s->mask;; i = (i + 1) & s->mask) {
        uint32_t e = s->slots[i];

        if (!e)
            return -1;
        if (s->hash[e - 1] == h && key_eq(s, e - 1, k, n))
            return (long)(e - 1);
    }
}

/* Slots for at least twice the keys: probes stay short. */
static int grow_slots(struct cfg_hset *s, uint32_t want)
{
    uint32_t nslots = 16, *slots;

    while (nslots < 2 * want)
        nslots *= 2;
    if (s->slots && nslots <= s->mask + 1)
        return 0;
    slots = calloc(nslots, sizeof(*slots));
    if (!slots)
        return -ENOMEM;
    for (uint32_t k = 0; k < s->n; k++) {
        uint32_t i = s->hash[k] & (nslots - 1);

        while (slots[i])
            i = (i + 1) & (nslots - 1);
        slots[i] = k + 1;
    }
    free(s->slots);
    s->slots = slots;
    s->mask = nslots - 1;
    return 0;
}

static int grow_keys(struct cfg_hset *s)
{
    uint32_t cap = s->cap_keys ? 2 * s->cap_keys : 8;
    uint32_t *h = realloc(s->hash, cap * sizeof(*h));

    if (!h)
        return -ENOMEM;
    s->hash = h;
    h = realloc(s->off, cap * sizeof(*h));
    if (!h)
        return -ENOMEM;
    s->off = h;
    h = realloc(s->len, cap * sizeof(*h));
    if (!h)
        return -ENOMEM;
    s->len = h;
    s->cap_keys = cap;
    return 0;
}

long cfg_hset_add(struct cfg_hset *s, const char *k, size_t n, int *ret_dup)
{
    long found = cfg_hset_find(s, k, n);
    uint32_t h, i;

    if (ret_dup)
        *ret_dup = found >= 0;
    if (found >= 0)
        return found;
    if (n > UINT32_MAX || s->n == UINT32_MAX / 4)
        return -ENOMEM;
    if (s->n == s->cap_keys && grow_keys(s) < 0)
        return -ENOMEM;
    if (grow_slots(s, s->n + 1) < 0)
        return -ENOMEM;
    if (s->arena_len + n > s->arena_cap) {
        size_t cap = s->arena_cap ? 2 * s->arena_cap : 256;
        char *a;

        while (cap < s->arena_len + n)
            cap *= 2;
        if (cap > UINT32_MAX || !(a = realloc(s->arena, cap)))
            return -ENOMEM;
        s->arena = a;
        s->arena_cap = cap;
    }
    for (size_t j = 0; j < n; j++)
        s->arena[s->arena_len + j] = s->icase ? (char)lower((unsigned char)k[j]) : k[j];
    h = hash(k, n, s->icase);
    s->hash[s->n] = h;
    s->off[s->n] = (uint32_t)s->arena_len;
    s->len[s->n] = (uint32_t)n;
    s->arena_len += n;
    for (i = h & s->mask; s->slots[i]; i = (i + 1) & s->mask)
        ;
    s->slots[i] = s->n + 1;
    return (long)s->n++;
}

const char *cfg_hset_key(const struct cfg_hset *s, uint32_t i, size_t *ret_len)
{
    *ret_len = s->len[i];
    return s->arena + s->off[i];
}

size_t cfg_hset_bytes(const struct cfg_hset *s)
{
    return (s->slots ? (size_t)(s->mask + 1) * sizeof(uint32_t) : 0) +
           (size_t)s->cap_keys * 3 * sizeof(uint32_t) + s->arena_cap;
}

void cfg_hset_free(struct cfg_hset *s)
{
    free(s->slots);
    free(s->hash);
    free(s->off);
    free(s->len);
    free(s->arena);
    cfg_hset_init(s, s->icase);
}
