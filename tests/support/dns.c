#include "tests/support/dns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define DNS_MAX_ADDRS 8
#define DNS_MSG_MAX 512 /* plain UDP DNS without EDNS (RFC 1035 4.2.1) */

enum {
    QTYPE_A = 1,
    RCODE_OK = 0,
    RCODE_FORMERR = 1,
    RCODE_SERVFAIL = 2,
    RCODE_NXDOMAIN = 3,
    RCODE_NOTIMP = 4,
};

struct dns_server {
    int fd;
    pthread_t thread;
    _Atomic int stop;
    _Atomic int mode;
    _Atomic unsigned queries;
    pthread_mutex_t mu;
    char name[64];
    struct in_addr addrs[DNS_MAX_ADDRS];
    unsigned naddrs;
    uint32_t ttl;
};

static void put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static void put32(unsigned char *p, uint32_t v)
{
    put16(p, v >> 16);
    put16(p + 2, v & 0xffff);
}

static unsigned get16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

/*
 * Build the reply to q (n bytes) into out; returns its length, or 0 to send
 * nothing (not a query, or too short to echo an ID).
 */
static size_t reply(struct dns_server *d, const unsigned char *q, size_t n, unsigned char *out)
{
    size_t off = 12, qend;
    unsigned qtype, rcode = RCODE_OK, an = 0;
    int first = 1, ours = 0;
    size_t len;

    if (n < 12 || (q[2] & 0x80))
        return 0;
    memcpy(out, q, 12);
    /* QR, the query's opcode, AA, the query's RD; RA; counts set below */
    out[2] = (unsigned char)(0x80 | (q[2] & 0x78) | 0x04 | (q[2] & 0x01));
    out[3] = 0x80;
    memset(out + 4, 0, 8);
    if ((q[2] & 0x78) != 0) {
        out[3] |= RCODE_NOTIMP;
        return 12;
    }
    if (get16(q + 4) != 1) {
        out[3] |= RCODE_FORMERR;
        return 12;
    }
    /* QNAME: labels, no compression in a question */
    for (;;) {
        unsigned l;

        if (off >= n)
            goto formerr;
        l = q[off];
        if (l == 0) {
            off++;
            break;
        }
        if (l > 63 || off + 1 + l > n)
            goto formerr;
        if (first)
            ours = l == strlen(d->name) && !strncasecmp((const char *)q + off + 1, d->name, l);
        first = 0;
        off += 1 + l;
    }
    if (off + 4 > n)
        goto formerr;
    qtype = get16(q + off);
    qend = off + 4;
    memcpy(out + 12, q + 12, qend - 12);
    put16(out + 4, 1);
    len = qend;
    if (ours)
        atomic_fetch_add(&d->queries, 1);
    switch (atomic_load(&d->mode)) {
    case DNS_SILENT:
        return 0;
    case DNS_SERVFAIL:
        out[3] |= RCODE_SERVFAIL;
        return len;
    default:
        break;
    }
    if (!ours) {
        rcode = RCODE_NXDOMAIN;
    } else if (qtype == QTYPE_A) {
        pthread_mutex_lock(&d->mu);
        for (unsigned i = 0; i < d->naddrs && len + 16 <= DNS_MSG_MAX; i++, an++) {
            unsigned char *a = out + len;
            put16(a, 0xc00c); /* the name in the question */
            put16(a + 2, QTYPE_A);
            put16(a + 4, 1); /* IN */
            put32(a + 6, d->ttl);
            put16(a + 10, 4);
            memcpy(a + 12, &d->addrs[i], 4);
            len += 16;
        }
        pthread_mutex_unlock(&d->mu);
    }
    /* any other type of our name: NOERROR, no answer (NODATA) */
    out[3] |= (unsigned char)rcode;
    put16(out + 6, an);
    return len;
formerr:
    out[3] |= RCODE_FORMERR;
    return 12;
}

static void *dns_main(void *arg)
{
    struct dns_server *d = arg;
    unsigned char q[DNS_MSG_MAX], out[DNS_MSG_MAX];

    while (!atomic_load(&d->stop)) {
        struct pollfd pfd = {d->fd, POLLIN, 0};
        struct sockaddr_storage peer;
        socklen_t pl = sizeof(peer);
        ssize_t n;
        size_t rl;

        if (poll(&pfd, 1, 50) <= 0)
            continue;
        n = recvfrom(d->fd, q, sizeof(q), 0, (struct sockaddr *)&peer, &pl);
        if (n <= 0)
            continue;
        rl = reply(d, q, (size_t)n, out);
        if (rl)
            (void)sendto(d->fd, out, rl, 0, (struct sockaddr *)&peer, pl);
    }
    return NULL;
}

struct dns_server *dns_start(const char *addr, unsigned port, const char *name)
{
    struct dns_server *d = calloc(1, sizeof(*d));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int e;

    if (!d)
        return NULL;
    d->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (d->fd < 0 || inet_pton(AF_INET, addr, &sa.sin_addr) != 1 || strlen(name) >= 64)
        goto fail;
    if (bind(d->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        goto fail;
    strcpy(d->name, name);
    d->ttl = 1;
    pthread_mutex_init(&d->mu, NULL);
    e = pthread_create(&d->thread, NULL, dns_main, d);
    if (e) {
        errno = e;
        pthread_mutex_destroy(&d->mu);
        goto fail;
    }
    return d;
fail:
    e = errno;
    if (d->fd >= 0)
        (void)close(d->fd);
    free(d);
    errno = e;
    return NULL;
}

void dns_set_answer(struct dns_server *d, const char *const *addrs, unsigned n, uint32_t ttl)
{
    pthread_mutex_lock(&d->mu);
    d->naddrs = 0;
    for (unsigned i = 0; i < n && d->naddrs < DNS_MAX_ADDRS; i++)
        if (inet_pton(AF_INET, addrs[i], &d->addrs[d->naddrs]) == 1)
            d->naddrs++;
    d->ttl = ttl;
    pthread_mutex_unlock(&d->mu);
}

void dns_set_mode(struct dns_server *d, enum dns_mode m)
{
    atomic_store(&d->mode, (int)m);
}

unsigned dns_queries(const struct dns_server *d)
{
    return atomic_load(&d->queries);
}

void dns_stop(struct dns_server *d)
{
    if (!d)
        return;
    atomic_store(&d->stop, 1);
    (void)pthread_join(d->thread, NULL);
    (void)close(d->fd);
    pthread_mutex_destroy(&d->mu);
    free(d);
}
