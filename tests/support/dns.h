/*
 * A tiny authoritative DNS server over UDP for the resolution tests (C4):
 * one thread, one name. It answers A queries for that name (and for any
 * name whose first label is that name, so search-domain variants match)
 * with a configurable list of addresses, NOERROR without answers for other
 * types of that name (AAAA), NXDOMAIN for every other name. It can be told
 * to answer SERVFAIL or to stop answering, to play a failing nameserver.
 * Replies echo the query's ID, opcode, RD bit and question; no EDNS.
 */
#ifndef RINGPROXY_TESTS_DNS_H
#define RINGPROXY_TESTS_DNS_H

#include <stdint.h>

enum dns_mode {
    DNS_ANSWER = 0, /* answer normally */
    DNS_SERVFAIL,   /* rcode 2 to everything */
    DNS_SILENT,     /* read queries, never reply */
    /* must stay last */
    DNS_MODE_COUNT
};

struct dns_server;

/*
 * Serve name on UDP addr:port (IPv4, numeric). Returns NULL when the socket
 * cannot be bound (errno set) or on OOM. Starts with no address: A queries
 * get NOERROR with an empty answer until dns_set_answer().
 */
struct dns_server *dns_start(const char *addr, unsigned port, const char *name);

/* The A records to answer with (numeric IPv4, up to 8), and their TTL. */
void dns_set_answer(struct dns_server *d, const char *const *addrs, unsigned n, uint32_t ttl);

void dns_set_mode(struct dns_server *d, enum dns_mode m);

/* Queries received so far for the served name (any type, any mode). */
unsigned dns_queries(const struct dns_server *d);

/* Stop the thread and free everything; NULL-safe. */
void dns_stop(struct dns_server *d);

#endif
