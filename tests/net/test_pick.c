/*
 * net/pick.c: upstream address choice and backoff (docs/operations.md,
 * "Upstream resolution"), driven with a fake clock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "net/pick.h"

/* A set of n addresses 10.0.0.1:80 .. 10.0.0.n:80 (only their names matter here). */
static struct net_addrset *set_of(unsigned n, unsigned first, uint64_t gen)
{
    struct net_addrset *as = calloc(1, sizeof(*as) + n * sizeof(as->a[0]));

    cr_assert(as);
    as->gen = gen;
    as->n = n;
    for (unsigned i = 0; i < n; i++)
        snprintf(as->a[i].str, sizeof(as->a[i].str), "10.0.0.%u:80", first + i);
    return as;
}

static const char *next(struct net_pick *p, uint64_t now)
{
    const struct net_addr *a = net_pick_next(p, now);
    return a ? a->str : "(none)";
}

Test(net_pick, empty_set_has_no_address)
{
    struct net_pick p = {0};
    struct net_addrset *as = set_of(0, 1, 1);

    cr_assert_eq(net_pick_next(&p, 0), NULL, "before any set");
    net_pick_sync(&p, as);
    cr_assert_eq(net_pick_next(&p, 0), NULL);
    net_pick_free(&p);
    free(as);
}

Test(net_pick, round_robin_over_healthy_addresses)
{
    struct net_pick p = {0};
    struct net_addrset *as = set_of(3, 1, 1);

    net_pick_sync(&p, as);
    cr_assert_str_eq(next(&p, 0), "10.0.0.1:80");
    cr_assert_str_eq(next(&p, 0), "10.0.0.2:80");
    cr_assert_str_eq(next(&p, 0), "10.0.0.3:80");
    cr_assert_str_eq(next(&p, 0), "10.0.0.1:80");
    net_pick_free(&p);
    free(as);
}

/* 0.5 s after the first failure, doubling, at most 30 s; a success ends it. */
Test(net_pick, backoff_doubles_up_to_30_s_and_ends_on_success)
{
    struct net_pick p = {0};
    struct net_addrset *as = set_of(2, 1, 1);
    const uint64_t want[] = {500, 1000, 2000, 4000, 8000, 16000, 30000, 30000};
    uint64_t now = 1000000;

    net_pick_sync(&p, as);
    for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        net_pick_failed(&p, "10.0.0.1:80", now);
        cr_assert_eq(net_pick_health(&p, "10.0.0.1:80")->down_until_ms, now + want[i], "failure %u",
                     i + 1);
        /* backing off: only the other one is picked */
        for (int k = 0; k < 4; k++)
            cr_assert_str_eq(next(&p, now + want[i] - 1), "10.0.0.2:80");
        now += want[i];
    }
    net_pick_ok(&p, "10.0.0.1:80");
    cr_assert_eq(net_pick_health(&p, "10.0.0.1:80")->fails, 0);
    cr_assert_eq(net_pick_health(&p, "10.0.0.1:80")->down_until_ms, 0);
    net_pick_failed(&p, "10.0.0.1:80", now);
    cr_assert_eq(net_pick_health(&p, "10.0.0.1:80")->down_until_ms, now + 500, "starts over");
    net_pick_free(&p);
    free(as);
}

Test(net_pick, all_backing_off_picks_the_soonest_back)
{
    struct net_pick p = {0};
    struct net_addrset *as = set_of(3, 1, 1);

    net_pick_sync(&p, as);
    net_pick_failed(&p, "10.0.0.1:80", 100);
    net_pick_failed(&p, "10.0.0.2:80", 0);
    net_pick_failed(&p, "10.0.0.3:80", 200);
    cr_assert_str_eq(next(&p, 300), "10.0.0.2:80");
    cr_assert_str_eq(next(&p, 300), "10.0.0.2:80");
    /* and the one back first once its time is up */
    cr_assert_str_eq(next(&p, 600), "10.0.0.1:80");
    net_pick_free(&p);
    free(as);
}

/* #26.6: with 40 addresses and only the last alive, every dead one backs off (no table limit). */
Test(net_pick, backoff_covers_every_address_of_a_large_set)
{
    struct net_pick p = {0};
    struct net_addrset *as = set_of(40, 1, 1);
    unsigned alive = 0;

    net_pick_sync(&p, as);
    for (int i = 0; i < 40; i++) {
        const char *s = next(&p, 0);
        if (strcmp(s, "10.0.0.40:80"))
            net_pick_failed(&p, s, 0);
    }
    for (int i = 0; i < 48; i++)
        alive += !strcmp(next(&p, 100), "10.0.0.40:80");
    cr_assert_eq(alive, 48, "%u of 48 picks went to the live address", alive);
    net_pick_free(&p);
    free(as);
}

Test(net_pick, a_new_set_keeps_what_is_known_of_addresses_that_stay)
{
    struct net_pick p = {0};
    struct net_addrset *a = set_of(3, 1, 1), *b = set_of(3, 2, 2); /* .2 .3 stay, .4 is new */

    net_pick_sync(&p, a);
    net_pick_failed(&p, "10.0.0.1:80", 0);
    net_pick_failed(&p, "10.0.0.3:80", 0);
    net_pick_sync(&p, b);
    cr_assert_null(net_pick_health(&p, "10.0.0.1:80"), "gone with its set");
    cr_assert_eq(net_pick_health(&p, "10.0.0.3:80")->fails, 1, "kept");
    cr_assert_eq(net_pick_health(&p, "10.0.0.4:80")->fails, 0, "new");
    for (int i = 0; i < 6; i++)
        cr_assert_str_neq(next(&p, 100), "10.0.0.3:80", "still backing off");
    /* a failure of an address no longer in the set changes nothing */
    net_pick_failed(&p, "10.0.0.1:80", 100);
    cr_assert_null(net_pick_health(&p, "10.0.0.1:80"));
    net_pick_free(&p);
    free(a);
    free(b);
}
