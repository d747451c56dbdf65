/*
 * LeakSanitizer for unit tests that prove everything was freed
 * (tests/core/test_buf.c, tests/net/test_resolve.c). Criterion's test
 * processes end without LeakSanitizer's exit check: assert_no_leaks() asks
 * for one. Without AddressSanitizer it does nothing. HAVE_ASAN tells which
 * build this is.
 */
#ifndef RINGPROXY_TESTS_LSAN_H
#define RINGPROXY_TESTS_LSAN_H

#include <stddef.h>

#include <criterion/criterion.h>

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_ASAN 1
#endif
#endif

#ifdef HAVE_ASAN
/* From the ASan runtime (the sanitizer headers, which gcc does not ship). */
size_t __sanitizer_get_current_allocated_bytes(void);
int __lsan_do_recoverable_leak_check(void);

static inline void assert_no_leaks(void)
{
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "LeakSanitizer found leaks (see stderr)");
}
#else
static inline void assert_no_leaks(void)
{
}
#endif

#endif
