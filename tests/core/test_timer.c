/*
 * Tests for core/timer.c: fixed-duration timer queues, sorted by arming order.
 */
#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>

#include "core/timer.h"

static struct core_tq q;

static void tq_up(void)
{
    core_tq_init(&q, 100);
}

/* Pop everything due at now into out; returns how many. */
static int pop_all(uint64_t now, struct core_timer **out, int cap)
{
    struct core_timer *t;
    int n = 0;

    while ((t = core_tq_pop_expired(&q, now))) {
        cr_assert_lt(n, cap);
        cr_assert_not(core_timer_armed(t), "a popped timer is still armed");
        out[n++] = t;
    }
    return n;
}

Test(core_timer, init_is_empty, .init = tq_up)
{
    cr_assert_eq(q.timeout_ms, 100);
    cr_assert_eq(core_tq_next(&q), UINT64_MAX);
    cr_assert_null(core_tq_pop_expired(&q, UINT64_MAX));
}

Test(core_timer, arm_sets_deadline, .init = tq_up)
{
    struct core_timer t = {0};

    cr_assert_not(core_timer_armed(&t));
    core_timer_arm(&q, &t, 1000);
    cr_assert(core_timer_armed(&t));
    cr_assert_eq(t.deadline_ms, 1100);
    cr_assert_eq(core_tq_next(&q), 1100);
}

Test(core_timer, pop_expired_only_due, .init = tq_up)
{
    struct core_timer a = {0}, b = {0}, *out[4];

    core_timer_arm(&q, &a, 0);  /* due 100 */
    core_timer_arm(&q, &b, 50); /* due 150 */
    cr_assert_null(core_tq_pop_expired(&q, 99));
    cr_assert(core_timer_armed(&a));
    /* Due exactly at the deadline. */
    cr_assert_eq(pop_all(100, out, 4), 1);
    cr_assert_eq(out[0], &a);
    cr_assert(core_timer_armed(&b));
    cr_assert_eq(core_tq_next(&q), 150);
    cr_assert_null(core_tq_pop_expired(&q, 149));
    cr_assert_eq(pop_all(1000, out, 4), 1);
    cr_assert_eq(out[0], &b);
    cr_assert_eq(core_tq_next(&q), UINT64_MAX);
}

Test(core_timer, fifo_order, .init = tq_up)
{
    struct core_timer t[5], *out[5];

    memset(t, 0, sizeof(t));
    for (int i = 0; i < 5; i++)
        core_timer_arm(&q, &t[i], 10 + (uint64_t)i);
    cr_assert_eq(core_tq_next(&q), 110);
    cr_assert_eq(pop_all(112, out, 5), 3);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(out[i], &t[i]);
    cr_assert_eq(core_tq_next(&q), 113);
    cr_assert_eq(pop_all(UINT64_MAX, out, 5), 2);
    cr_assert_eq(out[0], &t[3]);
    cr_assert_eq(out[1], &t[4]);
}

Test(core_timer, same_deadline_keeps_arming_order, .init = tq_up)
{
    struct core_timer t[3], *out[3];

    memset(t, 0, sizeof(t));
    core_timer_arm(&q, &t[2], 5);
    core_timer_arm(&q, &t[0], 5);
    core_timer_arm(&q, &t[1], 5);
    cr_assert_eq(pop_all(105, out, 3), 3);
    cr_assert_eq(out[0], &t[2]);
    cr_assert_eq(out[1], &t[0]);
    cr_assert_eq(out[2], &t[1]);
}

Test(core_timer, disarm_unlinks, .init = tq_up)
{
    struct core_timer t[3], *out[3];

    memset(t, 0, sizeof(t));
    for (int i = 0; i < 3; i++)
        core_timer_arm(&q, &t[i], (uint64_t)i);
    core_timer_disarm(&t[1]); /* middle */
    cr_assert_not(core_timer_armed(&t[1]));
    cr_assert_null(t[1].link.prev);
    core_timer_disarm(&t[0]); /* head */
    cr_assert_eq(core_tq_next(&q), 102);
    cr_assert_eq(pop_all(UINT64_MAX, out, 3), 1);
    cr_assert_eq(out[0], &t[2]);
    /* Disarm of the last one leaves an empty, usable queue. */
    core_timer_arm(&q, &t[0], 0);
    core_timer_disarm(&t[0]);
    cr_assert_eq(core_tq_next(&q), UINT64_MAX);
    cr_assert_null(core_tq_pop_expired(&q, UINT64_MAX));
    cr_assert(core_list_empty(&q.head));
}

Test(core_timer, disarm_unarmed_is_noop, .init = tq_up)
{
    struct core_timer a = {0}, b = {0};

    core_timer_arm(&q, &a, 0);
    core_timer_disarm(&b);
    core_timer_disarm(&b);
    cr_assert_not(core_timer_armed(&b));
    cr_assert(core_timer_armed(&a));
    cr_assert_eq(q.head.next, &a.link);
    cr_assert_eq(q.head.prev, &a.link);
    /* Twice on a once-armed timer too. */
    core_timer_disarm(&a);
    core_timer_disarm(&a);
    cr_assert_eq(core_tq_next(&q), UINT64_MAX);
}

Test(core_timer, rearm_moves_to_tail, .init = tq_up)
{
    struct core_timer a = {0}, b = {0}, c = {0}, *out[3];

    core_timer_arm(&q, &a, 0);
    core_timer_arm(&q, &b, 0);
    core_timer_arm(&q, &c, 0);
    core_timer_arm(&q, &a, 20); /* re-arm: later deadline, end of the queue */
    cr_assert_eq(a.deadline_ms, 120);
    cr_assert_eq(core_tq_next(&q), 100);
    cr_assert_eq(pop_all(119, out, 3), 2);
    cr_assert_eq(out[0], &b);
    cr_assert_eq(out[1], &c);
    cr_assert_eq(core_tq_next(&q), 120);
    cr_assert_eq(pop_all(120, out, 3), 1);
    cr_assert_eq(out[0], &a);
}

Test(core_timer, rearm_tail_in_place, .init = tq_up)
{
    struct core_timer a = {0}, b = {0}, *out[2];

    core_timer_arm(&q, &a, 0);
    core_timer_arm(&q, &b, 0);
    core_timer_arm(&q, &b, 7); /* already last: stays last, list intact */
    cr_assert_eq(q.head.next, &a.link);
    cr_assert_eq(q.head.prev, &b.link);
    cr_assert_eq(a.link.next, &b.link);
    cr_assert_eq(b.link.prev, &a.link);
    cr_assert_eq(pop_all(UINT64_MAX, out, 2), 2);
    cr_assert_eq(out[0], &a);
    cr_assert_eq(out[1], &b);
}

Test(core_timer, popped_timer_can_rearm, .init = tq_up)
{
    struct core_timer a = {0};

    core_timer_arm(&q, &a, 0);
    cr_assert_eq(core_tq_pop_expired(&q, 100), &a);
    core_timer_arm(&q, &a, 100);
    cr_assert(core_timer_armed(&a));
    cr_assert_eq(core_tq_next(&q), 200);
    cr_assert_eq(core_tq_pop_expired(&q, 200), &a);
}

Test(core_timer, queues_are_independent)
{
    struct core_tq fast, slow;
    struct core_timer a = {0}, b = {0};

    core_tq_init(&fast, 10);
    core_tq_init(&slow, 1000);
    core_timer_arm(&slow, &a, 0);
    core_timer_arm(&fast, &b, 0);
    cr_assert_eq(core_tq_next(&slow), 1000);
    cr_assert_eq(core_tq_next(&fast), 10);
    cr_assert_eq(core_tq_pop_expired(&fast, 10), &b);
    cr_assert_null(core_tq_pop_expired(&slow, 10));
    /* Re-arming on another queue moves it there. */
    core_timer_arm(&fast, &a, 0);
    cr_assert_eq(core_tq_next(&slow), UINT64_MAX);
    cr_assert_eq(core_tq_next(&fast), 10);
}

Test(core_timer, a_new_timeout_keeps_earlier_deadlines_in_order)
{
    struct core_tq tq;
    struct core_timer t[6];
    uint64_t want[] = {40, 105, 130, 200, 1000, 1010};
    struct core_timer *order[] = {&t[3], &t[4], &t[5], &t[2], &t[0], &t[1]};

    memset(t, 0, sizeof(t));
    core_tq_init(&tq, 1000);
    core_timer_arm(&tq, &t[0], 0);  /* 1000 */
    core_timer_arm(&tq, &t[1], 10); /* 1010 */
    /* a reload shortens the timeout: new timers come due before the old ones */
    core_tq_set_timeout(&tq, 100);
    core_timer_arm(&tq, &t[2], 100); /* 200 */
    /* and again, while the old ones wait */
    core_tq_set_timeout(&tq, 30);
    core_timer_arm(&tq, &t[3], 10); /* 40 */
    core_tq_set_timeout(&tq, 5);
    core_timer_arm(&tq, &t[4], 100); /* 105 */
    core_timer_arm(&tq, &t[5], 125); /* 130 */
    for (size_t i = 0; i < 6; i++) {
        cr_assert_eq(core_tq_next(&tq), want[i], "timer %zu", i);
        cr_assert_null(core_tq_pop_expired(&tq, want[i] - 1));
        cr_assert_eq(core_tq_pop_expired(&tq, want[i]), order[i], "timer %zu", i);
    }
    cr_assert_eq(core_tq_next(&tq), UINT64_MAX);
    /* re-arming one armed before moves it to the new timeout */
    core_timer_arm(&tq, &t[0], 0);
    core_tq_set_timeout(&tq, 50);
    core_timer_arm(&tq, &t[0], 0);
    cr_assert_eq(core_tq_next(&tq), 50);
    core_timer_disarm(&t[0]);
    cr_assert_eq(core_tq_next(&tq), UINT64_MAX);
}
