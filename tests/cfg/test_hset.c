/* cfg/hset.c: the load-time built set the rules look hosts, paths and redirects up in. */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "cfg/hset.h"

Test(hset, empty_set_finds_nothing)
{
    struct cfg_hset s;

    cfg_hset_init(&s, 0);
    cr_assert_eq(cfg_hset_find(&s, "a", 1), -1);
    cr_assert_eq(cfg_hset_find(&s, "", 0), -1);
    cfg_hset_free(&s);
}

Test(hset, indexes_follow_first_insertion_and_duplicates_keep_theirs)
{
    struct cfg_hset s;
    int dup = -1;

    cfg_hset_init(&s, 0);
    cr_assert_eq(cfg_hset_add(&s, "/a", 2, &dup), 0);
    cr_assert_eq(dup, 0);
    cr_assert_eq(cfg_hset_add(&s, "/b", 2, &dup), 1);
    cr_assert_eq(cfg_hset_add(&s, "/a", 2, &dup), 0);
    cr_assert_eq(dup, 1);
    cr_assert_eq(cfg_hset_add(&s, "", 0, NULL), 2);
    cr_assert_eq(cfg_hset_find(&s, "/b", 2), 1);
    cr_assert_eq(cfg_hset_find(&s, "", 0), 2);
    cr_assert_eq(cfg_hset_find(&s, "/A", 2), -1, "case-sensitive by default");
    cr_assert_eq(cfg_hset_find(&s, "/a/", 3), -1);
    cfg_hset_free(&s);
}

Test(hset, icase_stores_lower_case_and_matches_any_case)
{
    struct cfg_hset s;
    size_t n;
    const char *k;

    cfg_hset_init(&s, 1);
    cr_assert_eq(cfg_hset_add(&s, "Example.COM", 11, NULL), 0);
    cr_assert_eq(cfg_hset_find(&s, "example.com", 11), 0);
    cr_assert_eq(cfg_hset_find(&s, "EXAMPLE.com", 11), 0);
    k = cfg_hset_key(&s, 0, &n);
    cr_assert(n == 11 && !memcmp(k, "example.com", 11));
    cfg_hset_free(&s);
}

Test(hset, hundred_thousand_keys_all_found_misses_missed)
{
    struct cfg_hset s;
    char buf[32];

    cfg_hset_init(&s, 0);
    for (long i = 0; i < 100000; i++) {
        int n = snprintf(buf, sizeof(buf), "/old/page-%ld", i);

        cr_assert_eq(cfg_hset_add(&s, buf, (size_t)n, NULL), i);
    }
    for (long i = 0; i < 100000; i++) {
        int n = snprintf(buf, sizeof(buf), "/old/page-%ld", i);

        cr_assert_eq(cfg_hset_find(&s, buf, (size_t)n), i);
        n = snprintf(buf, sizeof(buf), "/new/page-%ld", i);
        cr_assert_eq(cfg_hset_find(&s, buf, (size_t)n), -1);
    }
    /* bounded memory per entry: slots, three words per key, the key bytes (doubling arena) */
    cr_assert_lt(cfg_hset_bytes(&s) / 100000, 64);
    cfg_hset_free(&s);
    cr_assert_eq(cfg_hset_find(&s, "/old/page-1", 11), -1);
}
