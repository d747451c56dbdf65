#include "core/timer.h"

void core_tq_init(struct core_tq *q, uint64_t timeout_ms)
{
    q->head.prev = q->head.next = &q->head;
    q->timeout_ms = timeout_ms;
}

void core_timer_disarm(struct core_timer *t)
{
    if (!t->next)
        return;
    t->prev->next = t->next;
    t->next->prev = t->prev;
    t->prev = t->next = 0;
}

void core_timer_arm(struct core_tq *q, struct core_timer *t, uint64_t now_ms)
{
    core_timer_disarm(t);
    t->deadline_ms = now_ms + q->timeout_ms;
    t->prev = q->head.prev;
    t->next = &q->head;
    q->head.prev->next = t;
    q->head.prev = t;
}

struct core_timer *core_tq_pop_expired(struct core_tq *q, uint64_t now_ms)
{
    struct core_timer *t = q->head.next;

    if (t == &q->head || t->deadline_ms > now_ms)
        return 0;
    core_timer_disarm(t);
    return t;
}

uint64_t core_tq_next(const struct core_tq *q)
{
    return q->head.next == &q->head ? UINT64_MAX : q->head.next->deadline_ms;
}
