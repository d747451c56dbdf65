#include "tests/adv/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

__attribute__((constructor)) static void seed_init(void)
{
    /* set once in the runner, so that every test's child sees the same seed */
    if (!getenv("ADV_SEED")) {
        struct timespec ts;
        char s[32];

        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(s, sizeof(s), "%llu",
                 100000000ull + ((unsigned long long)ts.tv_sec * 1000003ull ^
                                 (unsigned long long)ts.tv_nsec ^ (unsigned long long)getpid()) %
                                    900000000ull);
        setenv("ADV_SEED", s, 1);
    }
}

uint64_t adv_rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

unsigned adv_rnd_in(uint64_t *s, unsigned lo, unsigned hi)
{
    return lo + (unsigned)(adv_rnd(s) % (uint64_t)(hi - lo + 1));
}

char *adv_buf_room(struct adv_buf *b, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *p;

        while (cap < b->len + n)
            cap *= 2;
        p = realloc(b->p, cap);
        if (!p)
            abort();
        b->p = p;
        b->cap = cap;
    }
    return b->p + b->len;
}

void adv_buf_add(struct adv_buf *b, const void *s, size_t n)
{
    memcpy(adv_buf_room(b, n), s, n);
    b->len += n;
}

void adv_buf_fmt(struct adv_buf *b, const char *fmt, ...)
{
    size_t room = 256;

    for (;;) {
        char *p = adv_buf_room(b, room);
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(p, room, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        room = (size_t)n + 1;
    }
}

const char *adv_sanitizer_report(const char *err)
{
    static const char *const pats[] = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                                       "runtime error:", "SUMMARY: UndefinedBehaviorSanitizer"};

    for (size_t i = 0; i < sizeof(pats) / sizeof(pats[0]); i++) {
        const char *p = strstr(err, pats[i]);
        if (p)
            return p;
    }
    return NULL;
}
