#include "net/pick.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void net_pick_sync(struct net_pick *p, const struct net_addrset *set)
{
    struct net_health *h = set->n ? calloc(set->n, sizeof(*h)) : NULL;

    if (set->n && !h) {
        p->set = set;
        return; /* keep the old table; net_pick_health() finds nothing new */
    }
    for (unsigned i = 0; i < set->n; i++) {
        snprintf(h[i].str, sizeof(h[i].str), "%s", set->a[i].str);
        for (unsigned k = 0; k < p->n; k++)
            if (!strcmp(p->health[k].str, h[i].str)) {
                h[i] = p->health[k];
                break;
            }
    }
    free(p->health);
    p->health = h;
    p->n = set->n;
    p->set = p->table = set;
}

void net_pick_free(struct net_pick *p)
{
    free(p->health);
    *p = (struct net_pick){0};
}

static struct net_health *health_of(const struct net_pick *p, const char *str)
{
    for (unsigned i = 0; i < p->n; i++)
        if (!strcmp(p->health[i].str, str))
            return &p->health[i];
    return NULL;
}

const struct net_health *net_pick_health(const struct net_pick *p, const char *str)
{
    return health_of(p, str);
}

void net_pick_failed(struct net_pick *p, const char *str, uint64_t now_ms)
{
    struct net_health *h = health_of(p, str);
    uint32_t shift;

    if (!h)
        return; /* no longer in the set */
    shift = h->fails < 6 ? h->fails : 6;
    h->fails++;
    h->down_until_ms = now_ms + ((uint64_t)NET_PICK_BACKOFF_MS << shift);
    if (h->down_until_ms > now_ms + NET_PICK_BACKOFF_MAX_MS)
        h->down_until_ms = now_ms + NET_PICK_BACKOFF_MAX_MS;
}

void net_pick_ok(struct net_pick *p, const char *str)
{
    struct net_health *h = health_of(p, str);

    if (h) {
        h->fails = 0;
        h->down_until_ms = 0;
    }
}

const struct net_addr *net_pick_next(struct net_pick *p, uint64_t now_ms)
{
    const struct net_addrset *as = p->set;
    const struct net_addr *best = NULL;
    uint64_t best_until = UINT64_MAX;

    if (!as || !as->n)
        return NULL;
    for (unsigned k = 0; k < as->n; k++) {
        unsigned i = (p->rr + k) % as->n;
        /* the table matches the set, unless it could not follow it (out of memory) */
        uint64_t until = p->table == as ? p->health[i].down_until_ms : 0;

        if (until <= now_ms) {
            p->rr += k + 1;
            return &as->a[i];
        }
        if (until < best_until) {
            best_until = until;
            best = &as->a[i];
        }
    }
    p->rr++;
    return best;
}
