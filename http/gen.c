/*
 * Config generations (http/proxy.h): what a reload makes, and how it is
 * told apart from the running one.
 */
#include <stdlib.h>
#include <string.h>

#include "cfg/cfg.h"
#include "cfg/rules.h"
#include "http/proxy.h"
#include "http/stats.h"

struct http_gen *http_gen_new(struct cfg *cfg, uint64_t id, uint64_t hash, unsigned nworkers)
{
    struct http_gen *g = calloc(1, sizeof(*g));

    if (!g)
        return NULL;
    if (cfg->rules && cfg->rules->n) {
        /* a row per worker, each on its own cache lines: workers count without sharing */
        size_t row = cfg->rules->n * HTTP_RULE_SLOTS;

        g->rule_stride = (row + 7) & ~(size_t)7;
        g->rule_hits = aligned_alloc(64, nworkers * g->rule_stride * sizeof(*g->rule_hits));
        if (!g->rule_hits) {
            free(g);
            return NULL;
        }
        memset(g->rule_hits, 0, nworkers * g->rule_stride * sizeof(*g->rule_hits));
    }
    g->cfg = cfg;
    g->id = id;
    g->hash = hash;
    atomic_init(&g->refs, 1);
    return g;
}

void http_gen_free(struct http_gen *g)
{
    if (!g)
        return;
    cfg_free(g->cfg);
    free(g->rule_hits);
    free(g);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;

    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

uint64_t http_gen_hash(const struct cfg *cfg)
{
    uint64_t h = 0xcbf29ce484222325ull;
    char *dump = cfg_dump(cfg);
    const struct cfg_rules *rs = cfg->rules;

    if (dump) {
        h = fnv(h, dump, strlen(dump) + 1);
        free(dump);
    }
    for (size_t i = 0; rs && i < rs->npages; i++) {
        const struct cfg_page *pg = rs->pages[i];

        /* each part with its length: no two different configs run together the same */
        h = fnv(h, &pg->len, sizeof(pg->len));
        h = fnv(h, pg->data, pg->len);
    }
    for (size_t i = 0; rs && i < rs->n; i++) {
        const struct cfg_redirect_map *m = &rs->v[i].map;

        for (uint32_t k = 0; k < m->from.n; k++) {
            size_t n;
            const char *from = cfg_hset_key(&m->from, k, &n);

            h = fnv(h, &n, sizeof(n));
            h = fnv(h, from, n);
            h = fnv(h, &m->to_len[k], sizeof(m->to_len[k]));
            h = fnv(h, m->to[k], m->to_len[k]);
        }
    }
    return h;
}
