#include "net/resolve.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log/error.h"

/*
 * Connect failures ask for a resolution at once (net_resolver_kick), but at
 * most one every KICK_MIN_MS: a dead origin under load must not turn every
 * failed request into a DNS query.
 */
#define KICK_MIN_MS 1000

struct seen {
    _Atomic uint64_t gen;
    char pad[64 - sizeof(uint64_t)];
};

struct retired {
    struct retired *next;
    struct net_addrset *set;
};

struct net_resolver {
    char *host, *port;
    unsigned interval_ms;
    unsigned nworkers;
    _Atomic(struct net_addrset *) cur;
    struct seen *seen;
    struct retired *retired;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started, stop;
    _Atomic int kicked; /* a resolution was asked for and has not started */
    _Atomic uint64_t changes;
    _Atomic int failing;
    uint64_t next_gen;
};

struct net_resolver *net_resolver_new(const char *host, const char *port, unsigned interval_ms,
                                      unsigned nworkers)
{
    struct net_resolver *r = calloc(1, sizeof(*r));

    if (!r)
        return NULL;
    r->host = strdup(host);
    r->port = strdup(port);
    r->seen = calloc(nworkers ? nworkers : 1, sizeof(*r->seen));
    r->cur = calloc(1, sizeof(struct net_addrset));
    if (!r->host || !r->port || !r->seen || !r->cur) {
        free(r->host);
        free(r->port);
        free(r->seen);
        free(r->cur);
        free(r);
        return NULL;
    }
    r->interval_ms = interval_ms;
    r->nworkers = nworkers;
    r->next_gen = 1;
    (void)pthread_mutex_init(&r->mu, NULL);
    {
        pthread_condattr_t ca;

        (void)pthread_condattr_init(&ca);
        (void)pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        (void)pthread_cond_init(&r->cv, &ca);
        (void)pthread_condattr_destroy(&ca);
    }
    return r;
}

static int addr_cmp(const void *a, const void *b)
{
    return strcmp(((const struct net_addr *)a)->str, ((const struct net_addr *)b)->str);
}

static int set_equal(const struct net_addrset *a, const struct net_addrset *b)
{
    if (a->n != b->n)
        return 0;
    for (unsigned i = 0; i < a->n; i++)
        if (strcmp(a->a[i].str, b->a[i].str))
            return 0;
    return 1;
}

/* "N addresses: a, b, c and M more", whole addresses only, within cap. */
static void set_describe(const struct net_addrset *s, char *out, size_t cap)
{
    size_t off = 0;
    unsigned i;
    int n;

    out[0] = '\0';
    if (s->n > 1) {
        n = snprintf(out, cap, "%u addresses: ", s->n);
        off = n > 0 ? (size_t)n : 0;
    }
    for (i = 0; i < s->n; i++) {
        size_t need = strlen(s->a[i].str) + 2;

        /* room for this one and for " and 9999 more" */
        if (off + need + 16 >= cap)
            break;
        off += (size_t)snprintf(out + off, cap - off, "%s%s", i ? ", " : "", s->a[i].str);
    }
    if (i < s->n)
        (void)snprintf(out + off, cap - off, " and %u more", s->n - i);
}

/* Free retired sets that every worker has moved past. */
static void reclaim(struct net_resolver *r)
{
    uint64_t min = UINT64_MAX;
    struct retired **pp = &r->retired;

    for (unsigned i = 0; i < r->nworkers; i++) {
        uint64_t g = atomic_load_explicit(&r->seen[i].gen, memory_order_acquire);
        if (g < min)
            min = g;
    }
    while (*pp) {
        struct retired *x = *pp;
        if (x->set->gen < min) {
            *pp = x->next;
            free(x->set);
            free(x);
        } else {
            pp = &x->next;
        }
    }
}

static void resolve_once(struct net_resolver *r)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL, *ai;
    struct net_addrset *set, *old;
    struct retired *ret;
    char desc[512];
    unsigned n = 0;
    int e;

    e = getaddrinfo(r->host, r->port, &hints, &res);
    if (e) {
        /* Keep the last good answer; say so once per change of state. */
        if (!atomic_exchange(&r->failing, 1))
            log_event(CFG_LL_WARN, "resolve %s: %s; %s", r->host,
                      e == EAI_SYSTEM ? strerror(errno) : gai_strerror(e),
                      atomic_load(&r->cur)->n
                          ? "keeping the last good answer"
                          : "no address yet: requests get 502 until it resolves");
        return;
    }
    for (ai = res; ai; ai = ai->ai_next)
        n++;
    set = calloc(1, sizeof(*set) + n * sizeof(set->a[0]));
    if (!set) {
        freeaddrinfo(res);
        return;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        struct net_addr *a = &set->a[set->n];
        int dup = 0;

        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            ai->ai_addrlen > sizeof(a->sa))
            continue;
        memcpy(&a->sa, ai->ai_addr, ai->ai_addrlen);
        a->len = ai->ai_addrlen;
        net_addr_str(&a->sa, a->str, sizeof(a->str));
        for (unsigned i = 0; i < set->n; i++)
            dup |= !strcmp(set->a[i].str, a->str);
        if (!dup)
            set->n++;
    }
    freeaddrinfo(res);
    qsort(set->a, set->n, sizeof(set->a[0]), addr_cmp);
    if (atomic_exchange(&r->failing, 0))
        log_event(CFG_LL_INFO, "resolve %s: answering again", r->host);
    old = atomic_load(&r->cur);
    if (set_equal(old, set)) {
        free(set);
        return;
    }
    set->gen = r->next_gen++;
    set_describe(set, desc, sizeof(desc));
    log_event(CFG_LL_INFO, "resolve %s: %s", r->host, set->n ? desc : "no usable address");
    ret = malloc(sizeof(*ret));
    if (!ret) {
        free(set);
        return;
    }
    atomic_store_explicit(&r->cur, set, memory_order_release);
    atomic_fetch_add(&r->changes, 1);
    ret->set = old;
    ret->next = r->retired;
    r->retired = ret;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void *resolver_main(void *arg)
{
    struct net_resolver *r = arg;
    uint64_t last = mono_ms(); /* net_resolver_start() resolved once */

    log_err_set_worker(LOG_ERR_RESOLVER);
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        /* every interval, or on a kick once KICK_MIN_MS have passed since the last */
        for (;;) {
            uint64_t now = mono_ms(), until = last + r->interval_ms;
            struct timespec ts;

            if (r->stop || now >= until)
                break;
            if (atomic_load(&r->kicked)) {
                if (now >= last + KICK_MIN_MS)
                    break;
                if (last + KICK_MIN_MS < until)
                    until = last + KICK_MIN_MS;
            }
            ts.tv_sec = (time_t)(until / 1000);
            ts.tv_nsec = (long)(until % 1000) * 1000000L;
            (void)pthread_cond_timedwait(&r->cv, &r->mu, &ts);
        }
        if (r->stop)
            break;
        atomic_store(&r->kicked, 0);
        last = mono_ms();
        pthread_mutex_unlock(&r->mu);
        resolve_once(r);
        reclaim(r);
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

int net_resolver_start(struct net_resolver *r)
{
    int e;

    resolve_once(r);
    e = pthread_create(&r->thread, NULL, resolver_main, r);
    if (e)
        return -e;
    r->started = 1;
    return 0;
}

const struct net_addrset *net_resolver_get(struct net_resolver *r, unsigned worker)
{
    struct net_addrset *s = atomic_load_explicit(&r->cur, memory_order_acquire);

    atomic_store_explicit(&r->seen[worker].gen, s->gen, memory_order_release);
    return s;
}

void net_resolver_kick(struct net_resolver *r)
{
    /* one pending kick is enough: the rest cost no lock and no wake-up */
    if (atomic_exchange(&r->kicked, 1))
        return;
    pthread_mutex_lock(&r->mu);
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

void net_resolver_state(struct net_resolver *r, uint64_t *ret_changes, int *ret_failing)
{
    *ret_changes = atomic_load(&r->changes);
    *ret_failing = atomic_load(&r->failing);
}

void net_resolver_free(struct net_resolver *r)
{
    if (!r)
        return;
    if (r->started) {
        pthread_mutex_lock(&r->mu);
        r->stop = 1;
        pthread_cond_signal(&r->cv);
        pthread_mutex_unlock(&r->mu);
        (void)pthread_join(r->thread, NULL);
    }
    while (r->retired) {
        struct retired *x = r->retired;
        r->retired = x->next;
        free(x->set);
        free(x);
    }
    free(atomic_load(&r->cur));
    free(r->seen);
    free(r->host);
    free(r->port);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}
