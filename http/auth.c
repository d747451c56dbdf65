/*
 * The password checks of basic_auth (http/auth.h): helper threads running
 * crypt_rn() off the workers' loops, a bounded FIFO queue to them, one
 * inbox per worker for the results, and the shared cache of good checks
 * (set-associative, striped locks, keyed by SipHash-2-4-128).
 */
#include "http/auth.h"

#include <crypt.h>
#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cfg/rules.h"
#include "http/auth_impl.h"

#define WAYS 4         /* entries in a set of the cache */
#define STRIPES 64     /* the cache's locks: set i is under lock i % STRIPES */
#define HELPER_NICE 10 /* the helpers' nice value: the workers win the CPU */
#define NRESULTS (HTTP_AUTH_LATE + 1)

/* ---- SipHash-2-4-128, from the paper (Aumasson, Bernstein, 2012) ---- */

struct sip {
    uint64_t v0, v1, v2, v3;
    uint64_t tail; /* the bytes of an incomplete word, little-endian */
    uint64_t len;  /* bytes fed so far */
};

static inline uint64_t rotl(uint64_t x, int b)
{
    return x << b | x >> (64 - b);
}

static inline void sip_round(struct sip *s)
{
    s->v0 += s->v1;
    s->v1 = rotl(s->v1, 13);
    s->v1 ^= s->v0;
    s->v0 = rotl(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = rotl(s->v3, 16);
    s->v3 ^= s->v2;
    s->v0 += s->v3;
    s->v3 = rotl(s->v3, 21);
    s->v3 ^= s->v0;
    s->v2 += s->v1;
    s->v1 = rotl(s->v1, 17);
    s->v1 ^= s->v2;
    s->v2 = rotl(s->v2, 32);
}

/* c = 2 rounds per message word */
static inline void sip_word(struct sip *s, uint64_t m)
{
    s->v3 ^= m;
    sip_round(s);
    sip_round(s);
    s->v0 ^= m;
}

static void sip_init(struct sip *s, uint64_t k0, uint64_t k1)
{
    s->v0 = k0 ^ UINT64_C(0x736f6d6570736575);
    s->v1 = k1 ^ UINT64_C(0x646f72616e646f6d) ^ 0xee; /* the 128-bit variant */
    s->v2 = k0 ^ UINT64_C(0x6c7967656e657261);
    s->v3 = k1 ^ UINT64_C(0x7465646279746573);
    s->tail = 0;
    s->len = 0;
}

static void sip_update(struct sip *s, const void *p, size_t n)
{
    const unsigned char *b = p;
    unsigned t = (unsigned)(s->len & 7);

    s->len += n;
    if (t) {
        while (t < 8 && n) {
            s->tail |= (uint64_t)*b++ << (8 * t++);
            n--;
        }
        if (t < 8)
            return;
        sip_word(s, s->tail);
        s->tail = 0;
    }
    for (; n >= 8; b += 8, n -= 8) {
        uint64_t w;

        memcpy(&w, b, 8);
        sip_word(s, le64toh(w));
    }
    for (t = 0; t < n; t++)
        s->tail |= (uint64_t)b[t] << (8 * t);
}

static void sip_final(struct sip *s, uint64_t out[2])
{
    /* the last word: the remaining bytes, the length mod 256 in the top byte */
    sip_word(s, s->tail | (s->len & 0xff) << 56);
    /* d = 4 rounds for each half of the output */
    s->v2 ^= 0xee;
    for (int i = 0; i < 4; i++)
        sip_round(s);
    out[0] = s->v0 ^ s->v1 ^ s->v2 ^ s->v3;
    s->v1 ^= 0xdd;
    for (int i = 0; i < 4; i++)
        sip_round(s);
    out[1] = s->v0 ^ s->v1 ^ s->v2 ^ s->v3;
}

static void key_words(const uint8_t key[16], uint64_t *k0, uint64_t *k1)
{
    memcpy(k0, key, 8);
    memcpy(k1, key + 8, 8);
    *k0 = le64toh(*k0);
    *k1 = le64toh(*k1);
}

void http_auth_siphash128v(const uint8_t key[16], const struct iovec *iov, size_t iovcnt,
                           uint64_t out[2])
{
    struct sip s;
    uint64_t k0, k1;

    key_words(key, &k0, &k1);
    sip_init(&s, k0, k1);
    for (size_t i = 0; i < iovcnt; i++)
        sip_update(&s, iov[i].iov_base, iov[i].iov_len);
    sip_final(&s, out);
}

void http_auth_siphash128(const uint8_t key[16], const void *p, size_t n, uint64_t out[2])
{
    struct iovec v = {.iov_base = (void *)p, .iov_len = n};

    http_auth_siphash128v(key, &v, 1, out);
}

/* ---- the shared state ---- */

struct centry {
    uint64_t k0, k1;
    uint64_t at; /* now_us + 1 when put; 0: empty */
};

struct cset {
    struct centry e[WAYS];
};

struct stripe {
    pthread_mutex_t mu;
} __attribute__((aligned(64)));

/*
 * A worker's finished jobs, oldest first. n mirrors the list's length, so
 * that an empty inbox is seen without the lock.
 */
struct inbox {
    pthread_mutex_t mu;
    struct http_auth_job *head, *tail;
    _Atomic unsigned n;
    int evfd; /* -1: none */
    int gone;
} __attribute__((aligned(64)));

struct helper {
    struct http_auth *a;
    pthread_t thread;
    struct crypt_data *cd; /* this helper's; zero between checks */
};

struct http_auth {
    /* the queue to the helpers */
    pthread_mutex_t qmu;
    pthread_cond_t qcv;
    struct http_auth_job *qhead, *qtail;
    unsigned queue_max;
    _Atomic unsigned queued; /* changed under qmu, read without */
    int stop;                /* under qmu */

    struct helper *helpers;
    unsigned nhelpers, started;

    struct inbox *inbox;
    unsigned nworkers;

    _Atomic uint64_t checks[NRESULTS];

    uint64_t k0, k1; /* SipHash's key */

    struct cset *sets;
    size_t nsets; /* a power of two */
    struct stripe *stripes;
};

static uint64_t mono_us(void)
{
    struct timespec ts;

    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* count * size zeroed bytes aligned to a cache line, or NULL. */
static void *zalloc64(size_t count, size_t size)
{
    size_t n;
    void *p;

    if (size && count > SIZE_MAX / size)
        return NULL;
    n = count * size;
    if (posix_memalign(&p, 64, n ? n : 64))
        return NULL;
    memset(p, 0, n);
    return p;
}

static void free_list(struct http_auth_job *j)
{
    while (j) {
        struct http_auth_job *next = j->next;

        http_auth_job_free(j);
        j = next;
    }
}

/* ---- the helpers ---- */

/* Equal strings, in a time that depends on their length only. */
static int same_hash(const char *out, const char *setting)
{
    size_t n = strlen(setting);
    volatile unsigned char d = 0;

    if (strlen(out) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        d |= (unsigned char)(out[i] ^ setting[i]);
    return d == 0;
}

static void check(struct http_auth *a, struct crypt_data *cd, struct http_auth_job *j)
{
    enum http_auth_result r;

    if (mono_us() > j->deadline_us) {
        r = HTTP_AUTH_LATE;
    } else {
        const char *out = crypt_rn(j->pass, j->setting, cd, (int)sizeof(*cd));
        int ok = out && out[0] != '*' && same_hash(out, j->setting);

        r = ok && !j->force_bad ? HTTP_AUTH_OK : HTTP_AUTH_BAD;
        /* crypt_rn's scratch, and its output (a hash of this password when it was wrong) */
        explicit_bzero(cd, sizeof(*cd));
    }
    explicit_bzero(j->pass, j->pass_len);
    j->result = (uint8_t)r;
    atomic_fetch_add_explicit(&a->checks[r], 1, memory_order_relaxed);
}

static void deliver(struct http_auth *a, struct http_auth_job *j)
{
    struct inbox *ib = &a->inbox[j->worker];

    j->next = NULL;
    pthread_mutex_lock(&ib->mu);
    if (ib->gone) {
        pthread_mutex_unlock(&ib->mu);
        http_auth_job_free(j);
        return;
    }
    if (ib->tail)
        ib->tail->next = j;
    else
        ib->head = j;
    ib->tail = j;
    atomic_fetch_add_explicit(&ib->n, 1, memory_order_release);
    /*
     * Written under the lock, so that once http_auth_worker_gone() returns
     * no helper writes to the eventfd (it may be closed and its number
     * reused). An eventfd counter: a failed write loses nothing the worker
     * would not see at its next wake-up.
     */
    if (ib->evfd >= 0) {
        uint64_t one = 1;
        ssize_t w = write(ib->evfd, &one, sizeof(one));

        (void)w;
    }
    pthread_mutex_unlock(&ib->mu);
}

static void *helper_main(void *arg)
{
    struct helper *h = arg;
    struct http_auth *a = h->a;
    int cur;

    /* below the workers; never above where the process already is */
    errno = 0;
    cur = getpriority(PRIO_PROCESS, (id_t)gettid());
    if (errno == 0 && cur < HELPER_NICE)
        (void)setpriority(PRIO_PROCESS, (id_t)gettid(), HELPER_NICE);

    for (;;) {
        struct http_auth_job *j;

        pthread_mutex_lock(&a->qmu);
        while (!a->stop && !a->qhead)
            pthread_cond_wait(&a->qcv, &a->qmu);
        if (a->stop) {
            pthread_mutex_unlock(&a->qmu);
            break;
        }
        j = a->qhead;
        a->qhead = j->next;
        if (!a->qhead)
            a->qtail = NULL;
        atomic_fetch_sub_explicit(&a->queued, 1, memory_order_relaxed);
        pthread_mutex_unlock(&a->qmu);

        check(a, h->cd, j);
        deliver(a, j);
    }
    return NULL;
}

/* ---- life ---- */

struct http_auth *http_auth_new(unsigned nworkers, unsigned threads, unsigned queue_max,
                                size_t cache_entries)
{
    struct http_auth *a = calloc(1, sizeof(*a));
    uint8_t key[16];
    size_t got = 0;
    sigset_t all, old;

    if (!a)
        return NULL;
    if (threads < 1)
        threads = 1;
    a->queue_max = queue_max;
    a->nworkers = nworkers;
    pthread_mutex_init(&a->qmu, NULL);
    pthread_cond_init(&a->qcv, NULL);

    /* the hash's key: a secret of this process */
    while (got < sizeof(key)) {
        ssize_t r = getrandom(key + got, sizeof(key) - got, 0);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            goto fail;
        got += (size_t)r;
    }
    key_words(key, &a->k0, &a->k1);
    explicit_bzero(key, sizeof(key));

    /* the cache: sets of WAYS, a power of two of them, at least cache_entries in all */
    a->nsets = 1;
    while (a->nsets * WAYS < cache_entries && a->nsets < ((size_t)1 << 40))
        a->nsets *= 2;
    a->sets = calloc(a->nsets, sizeof(*a->sets));
    a->stripes = zalloc64(STRIPES, sizeof(*a->stripes));
    a->inbox = zalloc64(nworkers, sizeof(*a->inbox));
    a->helpers = calloc(threads, sizeof(*a->helpers));
    if (!a->sets || !a->stripes || !a->inbox || !a->helpers)
        goto fail;
    for (unsigned i = 0; i < STRIPES; i++) {
        pthread_mutexattr_t ma;

        /* held for a few compares: spin a little before sleeping */
        pthread_mutexattr_init(&ma);
        (void)pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
        pthread_mutex_init(&a->stripes[i].mu, &ma);
        pthread_mutexattr_destroy(&ma);
    }
    for (unsigned i = 0; i < nworkers; i++) {
        pthread_mutex_init(&a->inbox[i].mu, NULL);
        a->inbox[i].evfd = -1;
    }

    a->nhelpers = threads;
    for (unsigned i = 0; i < threads; i++) {
        /* zeroed before its first use, as crypt_rn() asks */
        a->helpers[i].cd = calloc(1, sizeof(struct crypt_data));
        a->helpers[i].a = a;
        if (!a->helpers[i].cd)
            goto fail;
    }
    /* the helpers take no signal: the process's go to the threads that wait for them */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (unsigned i = 0; i < threads; i++) {
        if (pthread_create(&a->helpers[i].thread, NULL, helper_main, &a->helpers[i]))
            break;
        a->started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (a->started < threads)
        goto fail;
    return a;

fail:
    http_auth_free(a);
    return NULL;
}

/* The state of helpers left to the process's exit (http_auth_free()): reachable, not leaked. */
static struct http_auth *auth_abandoned;

void http_auth_free(struct http_auth *a)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->qmu);
    a->stop = 1;
    pthread_cond_broadcast(&a->qcv);
    pthread_mutex_unlock(&a->qmu);
    {
        /*
         * A check cannot be interrupted, and a costly hash takes seconds: the
         * process does not wait for it past HTTP_AUTH_EXIT_WAIT_MS. A helper
         * still checking is left to the exit, with what it uses (kept
         * reachable: it is not a leak).
         */
        struct timespec until;
        int busy = 0;

        (void)clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += (long)HTTP_AUTH_EXIT_WAIT_MS * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        for (unsigned i = 0; i < a->started; i++)
            if (pthread_timedjoin_np(a->helpers[i].thread, NULL, &until) != 0) {
                (void)pthread_detach(a->helpers[i].thread);
                busy = 1;
            }
        if (busy) {
            auth_abandoned = a;
            return;
        }
    }

    free_list(a->qhead);
    pthread_mutex_destroy(&a->qmu);
    pthread_cond_destroy(&a->qcv);
    if (a->helpers) {
        for (unsigned i = 0; i < a->nhelpers; i++) {
            if (a->helpers[i].cd)
                explicit_bzero(a->helpers[i].cd, sizeof(struct crypt_data));
            free(a->helpers[i].cd);
        }
        free(a->helpers);
    }
    if (a->inbox) {
        for (unsigned i = 0; i < a->nworkers; i++) {
            free_list(a->inbox[i].head);
            pthread_mutex_destroy(&a->inbox[i].mu);
        }
        free(a->inbox);
    }
    if (a->stripes) {
        for (unsigned i = 0; i < STRIPES; i++)
            pthread_mutex_destroy(&a->stripes[i].mu);
        free(a->stripes);
    }
    free(a->sets);
    explicit_bzero(a, sizeof(*a));
    free(a);
}

void http_auth_set_wake(struct http_auth *a, unsigned worker, int evfd)
{
    if (worker >= a->nworkers)
        return;
    pthread_mutex_lock(&a->inbox[worker].mu);
    a->inbox[worker].evfd = evfd;
    pthread_mutex_unlock(&a->inbox[worker].mu);
}

/* ---- jobs ---- */

struct http_auth_job *http_auth_job_new(const char *setting, const char *pass, size_t pass_len)
{
    size_t slen = strnlen(setting, CFG_AUTH_MAX_HASH + 1);
    struct http_auth_job *j;

    if (slen > CFG_AUTH_MAX_HASH || pass_len > SIZE_MAX - sizeof(*j) - slen - 2)
        return NULL;
    j = calloc(1, sizeof(*j) + slen + 1 + pass_len + 1);
    if (!j)
        return NULL;
    j->setting = (char *)(j + 1);
    memcpy(j->setting, setting, slen + 1);
    j->pass = j->setting + slen + 1;
    if (pass_len)
        memcpy(j->pass, pass, pass_len);
    j->pass[pass_len] = '\0';
    j->pass_len = pass_len;
    return j;
}

void http_auth_job_free(struct http_auth_job *j)
{
    if (!j)
        return;
    explicit_bzero(j->pass, j->pass_len);
    free(j);
}

int http_auth_submit(struct http_auth *a, struct http_auth_job *j)
{
    if (j->worker >= a->nworkers)
        return -EINVAL; /* no inbox to answer in */
    pthread_mutex_lock(&a->qmu);
    if (atomic_load_explicit(&a->queued, memory_order_relaxed) >= a->queue_max) {
        pthread_mutex_unlock(&a->qmu);
        return -EBUSY;
    }
    j->next = NULL;
    j->result = HTTP_AUTH_PENDING;
    if (a->qtail)
        a->qtail->next = j;
    else
        a->qhead = j;
    a->qtail = j;
    atomic_fetch_add_explicit(&a->queued, 1, memory_order_relaxed);
    pthread_cond_signal(&a->qcv);
    pthread_mutex_unlock(&a->qmu);
    return 0;
}

struct http_auth_job *http_auth_take(struct http_auth *a, unsigned worker)
{
    struct inbox *ib;
    struct http_auth_job *j;

    if (worker >= a->nworkers)
        return NULL;
    ib = &a->inbox[worker];
    if (!atomic_load_explicit(&ib->n, memory_order_acquire))
        return NULL;
    pthread_mutex_lock(&ib->mu);
    j = ib->head;
    ib->head = ib->tail = NULL;
    atomic_store_explicit(&ib->n, 0, memory_order_relaxed);
    pthread_mutex_unlock(&ib->mu);
    return j;
}

void http_auth_worker_gone(struct http_auth *a, unsigned worker)
{
    struct inbox *ib;
    struct http_auth_job *j;

    if (worker >= a->nworkers)
        return;
    ib = &a->inbox[worker];
    pthread_mutex_lock(&ib->mu);
    ib->gone = 1;
    ib->evfd = -1;
    j = ib->head;
    ib->head = ib->tail = NULL;
    atomic_store_explicit(&ib->n, 0, memory_order_relaxed);
    pthread_mutex_unlock(&ib->mu);
    free_list(j);
}

unsigned http_auth_queued(struct http_auth *a)
{
    return atomic_load_explicit(&a->queued, memory_order_relaxed);
}

uint64_t http_auth_checks(struct http_auth *a, enum http_auth_result r)
{
    if ((unsigned)r >= NRESULTS)
        return 0;
    return atomic_load_explicit(&a->checks[r], memory_order_relaxed);
}

/* ---- the cache ---- */

void http_auth_key(const struct http_auth *a, const char *setting, size_t setting_len,
                   const char *cred, size_t cred_len, uint64_t key[2])
{
    static const char zero = 0;
    struct sip s;

    /* the hash, a 0 (never in a hash), the credentials: one message, streamed */
    sip_init(&s, a->k0, a->k1);
    sip_update(&s, setting, setting_len);
    sip_update(&s, &zero, 1);
    sip_update(&s, cred, cred_len);
    sip_final(&s, key);
    explicit_bzero(&s, sizeof(s));
}

/* key's set (from key[0]: the keys are uniform), and its lock. */
static inline struct cset *set_of(struct http_auth *a, const uint64_t key[2], pthread_mutex_t **mu)
{
    size_t i = (size_t)key[0] & (a->nsets - 1);

    *mu = &a->stripes[i % STRIPES].mu;
    return &a->sets[i];
}

int http_auth_cache_has(struct http_auth *a, const uint64_t key[2], uint64_t now_us)
{
    pthread_mutex_t *mu;
    struct cset *s = set_of(a, key, &mu);
    uint64_t now = now_us + 1; /* in the entries' terms */
    int hit = 0;

    pthread_mutex_lock(mu);
    for (int i = 0; i < WAYS; i++) {
        const struct centry *e = &s->e[i];

        if (e->at && e->k0 == key[0] && e->k1 == key[1]) {
            /* a worker's clock a little behind another's: young */
            hit = e->at >= now || now - e->at < HTTP_AUTH_TTL_US;
            break;
        }
    }
    pthread_mutex_unlock(mu);
    return hit;
}

void http_auth_cache_put(struct http_auth *a, const uint64_t key[2], uint64_t now_us)
{
    pthread_mutex_t *mu;
    struct cset *s = set_of(a, key, &mu);
    uint64_t now = now_us + 1;
    struct centry *victim;

    pthread_mutex_lock(mu);
    victim = &s->e[0];
    for (int i = 0; i < WAYS; i++) {
        struct centry *e = &s->e[i];

        if (e->at && e->k0 == key[0] && e->k1 == key[1]) {
            if (now > e->at)
                e->at = now;
            pthread_mutex_unlock(mu);
            return;
        }
        if (e->at < victim->at)
            victim = e; /* an empty entry (0), else the oldest */
    }
    victim->k0 = key[0];
    victim->k1 = key[1];
    victim->at = now;
    pthread_mutex_unlock(mu);
}
