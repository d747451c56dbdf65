/*
 * Choosing the upstream address for a new connection (C3, C11): round robin
 * over the resolver's current set, skipping an address that failed a
 * connect lately. Each failure backs the address off for 0.5 s, doubling up
 * to 30 s; a success ends the backoff. When every address is backing off,
 * the one that comes back soonest is tried. One picker per worker, no
 * locks; the caller passes the time, so tests drive it with a fake clock.
 */
#ifndef RINGPROXY_NET_PICK_H
#define RINGPROXY_NET_PICK_H

#include <stdint.h>

#include "net/resolve.h"

#define NET_PICK_BACKOFF_MS 500
#define NET_PICK_BACKOFF_MAX_MS 30000

/* What is known of one address of the current set. */
struct net_health {
    char str[NET_ADDRSTRLEN];
    uint64_t down_until_ms;
    uint32_t fails;
};

struct net_pick {
    const struct net_addrset *set;   /* the current set */
    const struct net_addrset *table; /* the set health[] was built for */
    struct net_health *health;       /* health[i] is table->a[i]'s */
    unsigned n;
    unsigned rr; /* round-robin position */
};

/*
 * Follow a new address set: one entry per address, what was known of the
 * addresses that stay is kept. On out of memory the old table stays (and
 * new addresses are picked without a history). The set must outlive its use
 * here: pass each new one before it is picked from.
 */
void net_pick_sync(struct net_pick *p, const struct net_addrset *set);
void net_pick_free(struct net_pick *p);

/* The next address at now_ms, or NULL when the set is empty. */
const struct net_addr *net_pick_next(struct net_pick *p, uint64_t now_ms);

/* A connect to str failed / succeeded at now_ms (an address no longer in the set is ignored). */
void net_pick_failed(struct net_pick *p, const char *str, uint64_t now_ms);
void net_pick_ok(struct net_pick *p, const char *str);

/* The entry for str, or NULL. */
const struct net_health *net_pick_health(const struct net_pick *p, const char *str);

#endif
