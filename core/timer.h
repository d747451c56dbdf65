/*
 * Per-worker timers. Every timeout class has one fixed duration (header
 * deadline, keep-alive idle, upstream connect, ...), so arming always appends
 * to the end of that class's queue and each queue stays sorted by deadline
 * by construction: arming, disarming and expiring are O(1), and the loop's
 * wait timeout is the earliest queue head. No per-operation linked timeouts.
 */
#ifndef RINGPROXY_CORE_TIMER_H
#define RINGPROXY_CORE_TIMER_H

#include <stdint.h>

#include "core/list.h"

struct core_timer {
    struct core_list link; /* in its queue while armed */
    uint64_t deadline_ms;
};

struct core_tq {
    struct core_list head; /* armed timers, earliest deadline first */
    uint64_t timeout_ms;
    /*
     * Timers armed before the timeout last changed (a config reload), in
     * deadline order: they keep their deadlines, and pop and next look at
     * both lists' first timers, so neither list needs a sorted insert.
     */
    struct core_list before;
};

void core_tq_init(struct core_tq *q, uint64_t timeout_ms);
/*
 * A new timeout for timers armed from now on (O(n) once, when it changes:
 * the timers armed before are merged into `before`, keeping their deadlines).
 */
void core_tq_set_timeout(struct core_tq *q, uint64_t timeout_ms);
/* (Re)arm t to fire timeout_ms after now. */
void core_timer_arm(struct core_tq *q, struct core_timer *t, uint64_t now_ms);
/* NULL-safe on an unarmed timer. */
void core_timer_disarm(struct core_timer *t);

static inline int core_timer_armed(const struct core_timer *t)
{
    return core_list_linked(&t->link);
}

/* The first timer of q due at now, unlinked; NULL when none is due. */
struct core_timer *core_tq_pop_expired(struct core_tq *q, uint64_t now_ms);
/* The earliest deadline in q, UINT64_MAX when empty. */
uint64_t core_tq_next(const struct core_tq *q);

#endif
