/*
 * Resolution of the upstream name (C4): the libc resolver (getaddrinfo, so
 * nsswitch decides: /etc/hosts first, then /etc/resolv.conf's nameservers)
 * runs on its own thread, never on a worker's loop. Each answer is published
 * as an immutable address set; workers read the current set once per loop
 * turn without locks, and a set is freed only after every worker has moved
 * past it. A failed resolution keeps the last good answer.
 */
#ifndef RINGPROXY_NET_RESOLVE_H
#define RINGPROXY_NET_RESOLVE_H

#include <stdint.h>
#include <sys/socket.h>

#include "net/sock.h"

struct net_addr {
    struct sockaddr_storage sa;
    socklen_t len;
    char str[NET_ADDRSTRLEN];
};

struct net_addrset {
    uint64_t gen;
    unsigned n;
    struct net_addr a[];
};

struct net_resolver;

/* NULL on OOM. host and port are copied. */
struct net_resolver *net_resolver_new(const char *host, const char *port, unsigned interval_ms,
                                      unsigned nworkers);

/*
 * Resolve once on the calling thread (so start-up knows whether the name
 * resolves), then start the thread. Returns 0, or -errno when the thread
 * could not start; an unresolvable name is not an error (the proxy answers
 * 502 until it resolves).
 */
int net_resolver_start(struct net_resolver *r);

/*
 * The current set for this worker's loop turn (may have n == 0). Valid until
 * the same worker calls this again. Lock-free.
 */
const struct net_addrset *net_resolver_get(struct net_resolver *r, unsigned worker);

/* Ask for a fresh resolution soon (after connect failures). */
void net_resolver_kick(struct net_resolver *r);

/* Number of successful changes of the set so far and whether the last try failed. */
void net_resolver_state(struct net_resolver *r, uint64_t *ret_changes, int *ret_failing);

/* Stop the thread and free everything; NULL-safe. */
void net_resolver_free(struct net_resolver *r);

#endif
