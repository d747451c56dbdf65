#include "core/timer.h"

void core_tq_init(struct core_tq *q, uint64_t timeout_ms)
{
    core_list_init(&q->head);
    q->timeout_ms = timeout_ms;
}

void core_timer_disarm(struct core_timer *t)
{
    core_list_del(&t->link);
}

/* Every timer of a queue has the same timeout: arming appends, and the queue stays in order. */
void core_timer_arm(struct core_tq *q, struct core_timer *t, uint64_t now_ms)
{
    core_list_del(&t->link);
    t->deadline_ms = now_ms + q->timeout_ms;
    core_list_add_tail(&q->head, &t->link);
}

struct core_timer *core_tq_pop_expired(struct core_tq *q, uint64_t now_ms)
{
    struct core_timer *t = core_list_entry(core_list_first(&q->head), struct core_timer, link);

    if (!t || t->deadline_ms > now_ms)
        return 0;
    core_list_del(&t->link);
    return t;
}

uint64_t core_tq_next(const struct core_tq *q)
{
    struct core_timer *t = core_list_entry(core_list_first(&q->head), struct core_timer, link);

    return t ? t->deadline_ms : UINT64_MAX;
}
