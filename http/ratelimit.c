/*
 * The shared rate-limit table (http/ratelimit.h): GCRA state in
 * set-associative buckets, updated with compare-and-swap.
 */
#include "http/ratelimit.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>

#define WAYS 4
#define TAT_BITS 52
#define TAT_MASK ((UINT64_C(1) << TAT_BITS) - 1)
/*
 * 2^52 ticks of 1/16 µs are 8.9 years. A tat may run ahead of now by
 * burst * interval (at most 100,000 minutes, 2^47 ticks): past this uptime
 * the limiter lets everything through rather than wrap.
 */
#define NOW_MAX (TAT_MASK - (UINT64_C(1) << 48))
#define TICKS_PER_S (UINT64_C(1000000) * HTTP_RL_TICKS_PER_US)
#define TRIES 4

_Static_assert(TICKS_PER_S == CFG_RL_TICKS_PER_S, "the validator's intervals are in these ticks");

/*
 * key: the full hash (0: empty). state: the hash's top 12 bits, then the
 * tat. A slot changes hands by a CAS of its state (to the new key's tag)
 * before its key is stored: a request for the old key that reads the state
 * in between sees another tag and looks again, so it never spends the new
 * key's tokens (but for a 1 in 4096 tag clash in that instant).
 */
struct slot {
    _Atomic uint64_t key;
    _Atomic uint64_t state;
};

struct bucket {
    struct slot s[WAYS];
} __attribute__((aligned(64)));

struct http_ratelimit {
    struct bucket *b;
    size_t nbuckets; /* a power of two */
    size_t bytes;
    uint64_t epoch_us;
    uint64_t seed;
};

struct http_ratelimit *http_ratelimit_new(size_t keys, uint64_t epoch_us)
{
    struct http_ratelimit *rl = calloc(1, sizeof(*rl));
    size_t n = 1;

    if (!rl)
        return NULL;
    while (n * WAYS < keys && n < ((size_t)1 << 40))
        n *= 2;
    rl->nbuckets = n;
    rl->bytes = n * sizeof(struct bucket);
    /* zero pages: memory is taken as buckets are first used, never more than this */
    rl->b = mmap(NULL, rl->bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (rl->b == MAP_FAILED) {
        free(rl);
        return NULL;
    }
    /* times start one second before epoch: 0 stays "empty, long ago" */
    rl->epoch_us = epoch_us > 1000000 ? epoch_us - 1000000 : 0;
    /* a seed, so that keys that share a bucket cannot be chosen from outside */
    if (getrandom(&rl->seed, sizeof(rl->seed), GRND_NONBLOCK) != sizeof(rl->seed)) {
        struct timespec ts;

        (void)clock_gettime(CLOCK_REALTIME, &ts);
        rl->seed = (uint64_t)ts.tv_nsec * UINT64_C(0x9e3779b97f4a7c15) ^ (uint64_t)ts.tv_sec;
    }
    return rl;
}

void http_ratelimit_free(struct http_ratelimit *rl)
{
    if (!rl)
        return;
    (void)munmap(rl->b, rl->bytes);
    free(rl);
}

size_t http_ratelimit_slots(const struct http_ratelimit *rl)
{
    return rl->nbuckets * WAYS;
}

size_t http_ratelimit_bytes(const struct http_ratelimit *rl)
{
    return rl->bytes;
}

/* MurmurHash3's finaliser: every input bit moves every output bit. */
static inline uint64_t fmix(uint64_t h)
{
    h ^= h >> 33;
    h *= UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h *= UINT64_C(0xc4ceb9fe1a85ec53);
    h ^= h >> 33;
    return h;
}

static inline uint64_t nonzero(uint64_t h)
{
    return h ? h : 1; /* 0 marks an empty slot */
}

uint64_t http_ratelimit_key_ip(const struct http_ratelimit *rl, uint32_t rule,
                               const struct cfg_ip *ip)
{
    uint64_t h = fmix(rl->seed ^ ((uint64_t)rule << 32 | 0x1u) ^ ip->hi);
    /* IPv6: the /64, which one host has whole (SLAAC, privacy addresses) */
    uint64_t lo = ip->hi == 0 && ip->lo >> 32 == 0xffff ? ip->lo : 0;

    return nonzero(fmix(h ^ lo));
}

uint64_t http_ratelimit_key_bytes(const struct http_ratelimit *rl, uint32_t rule, const char *s,
                                  size_t n)
{
    uint64_t h = fmix(rl->seed ^ ((uint64_t)rule << 32 | 0x2u) ^ n);

    /* eight bytes at a time; a header value is short */
    while (n >= 8) {
        uint64_t w;

        memcpy(&w, s, 8);
        h = fmix(h ^ w);
        s += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;

        memcpy(&w, s, n);
        h = fmix(h ^ w ^ UINT64_C(0x8000000000000000));
    }
    return nonzero(h);
}

static inline uint64_t tag_of(uint64_t key)
{
    return key >> TAT_BITS;
}

/* "a.b.c.d" as cfg_ip_parse() reads it (no leading zeros), into *ip; -1 for anything else. */
static int ipv4_fast(const char *s, size_t n, struct cfg_ip *ip)
{
    uint32_t a = 0, part = 0;
    int dots = 0, digits = 0;

    for (size_t i = 0; i < n; i++) {
        char c = s[i];

        if (c >= '0' && c <= '9') {
            if (digits && part == 0)
                return -1; /* a leading zero */
            part = part * 10 + (uint32_t)(c - '0');
            if (part > 255 || ++digits > 3)
                return -1;
        } else if (c == '.' && digits && dots < 3) {
            a = a << 8 | part;
            part = 0;
            digits = 0;
            dots++;
        } else {
            return -1;
        }
    }
    if (dots != 3 || !digits)
        return -1;
    ip->hi = 0;
    ip->lo = UINT64_C(0x0000ffff00000000) | (a << 8 | part);
    return 0;
}

uint64_t http_ratelimit_key_client(const struct http_ratelimit *rl, uint32_t rule, const char *s,
                                   size_t n)
{
    struct cfg_ip ip;

    if (ipv4_fast(s, n, &ip) == 0 || cfg_ip_parse(s, n, &ip) == 0)
        return http_ratelimit_key_ip(rl, rule, &ip);
    /* an address that does not parse is still a client: limited by its text */
    return http_ratelimit_key_bytes(rl, rule, s, n);
}

/* Whole seconds, rounded up, at least 1, in ticks. */
static inline uint32_t seconds(uint64_t ticks)
{
    uint64_t s = (ticks + TICKS_PER_S - 1) / TICKS_PER_S;

    return s < 1 ? 1 : s > UINT32_MAX ? UINT32_MAX : (uint32_t)s;
}

uint32_t http_ratelimit_take(struct http_ratelimit *rl, uint64_t key, uint64_t now_us,
                             uint64_t interval, uint32_t burst)
{
    struct bucket *b = &rl->b[key & (rl->nbuckets - 1)];
    uint64_t tag = tag_of(key), now, cap;

    if (now_us <= rl->epoch_us || !interval || !burst)
        return 0;
    now = (now_us - rl->epoch_us) * HTTP_RL_TICKS_PER_US;
    if (now > NOW_MAX)
        return 0;
    cap = interval * burst; /* at most 2^47 (the validator's bounds) */

    for (int t = 0; t < TRIES; t++) {
        struct slot *victim = NULL;
        uint64_t vstate = 0, oldest = UINT64_MAX;

        for (int i = 0; i < WAYS; i++) {
            struct slot *s = &b->s[i];
            uint64_t st = atomic_load_explicit(&s->state, memory_order_acquire);

            if (atomic_load_explicit(&s->key, memory_order_relaxed) == key &&
                st >> TAT_BITS == tag) {
                for (;;) {
                    uint64_t tat = st & TAT_MASK, next = (tat > now ? tat : now) + interval;

                    if (next - now > cap)
                        return seconds(next - cap - now);
                    if (atomic_compare_exchange_weak_explicit(
                            &s->state, &st, tag << TAT_BITS | next, memory_order_acq_rel,
                            memory_order_acquire))
                        return 0;
                    if (st >> TAT_BITS != tag)
                        break; /* the slot went to another key meanwhile: look again */
                }
                goto again;
            }
            if ((st & TAT_MASK) < oldest) {
                oldest = st & TAT_MASK;
                victim = s;
                vstate = st;
            }
        }
        /* a new key: a full bucket, less the request's token */
        if (atomic_compare_exchange_strong_explicit(&victim->state, &vstate,
                                                    tag << TAT_BITS | (now + interval),
                                                    memory_order_acq_rel, memory_order_acquire)) {
            atomic_store_explicit(&victim->key, key, memory_order_release);
            return 0;
        }
    again:;
    }
    /* contended beyond reason on one bucket: let the request through */
    return 0;
}
