/*
 * What the adversarial programs (tests/adv/adv.c, tests/adv/abuse.c) and the
 * hostile origin share: the run's seed, a reproducible generator, a growing
 * buffer, and a look at the proxy process from outside.
 *
 * The seed is $ADV_SEED; when it is not set, the runner picks one at start
 * (a constructor, before Criterion forks a child per test) and sets it, so
 * every test of a run sees the same seed.
 */
#ifndef RINGPROXY_TESTS_ADV_COMMON_H
#define RINGPROXY_TESTS_ADV_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* xorshift64*: choices only need to be reproducible, not good. *s must not be 0. */
uint64_t adv_rnd(uint64_t *s);
/* Uniform in lo .. hi, both included. */
unsigned adv_rnd_in(uint64_t *s, unsigned lo, unsigned hi);

/* A growing byte buffer (len bytes at p); it aborts when memory runs out. */
struct adv_buf {
    char *p;
    size_t len, cap;
};

/* Room for n more bytes: where they go (the caller adds n to len once written). */
char *adv_buf_room(struct adv_buf *b, size_t n);
void adv_buf_add(struct adv_buf *b, const void *s, size_t n);
__attribute__((format(printf, 2, 3))) void adv_buf_fmt(struct adv_buf *b, const char *fmt, ...);

/* The first sanitizer report in a process's stderr text, or NULL. */
const char *adv_sanitizer_report(const char *err);

#endif
