#include "core/timer.h"

void core_tq_init(struct core_tq *q, uint64_t timeout_ms)
{
    core_list_init(&q->head);
    core_list_init(&q->before);
    q->timeout_ms = timeout_ms;
}

static struct core_timer *first_of(const struct core_list *l)
{
    return core_list_entry(core_list_first(l), struct core_timer, link);
}

void core_tq_set_timeout(struct core_tq *q, uint64_t timeout_ms)
{
    struct core_list merged;

    if (timeout_ms == q->timeout_ms)
        return;
    q->timeout_ms = timeout_ms;
    /* merge the two sorted lists into `before` */
    core_list_init(&merged);
    for (;;) {
        struct core_timer *a = first_of(&q->before), *b = first_of(&q->head), *t;

        if (!a && !b)
            break;
        t = !b || (a && a->deadline_ms <= b->deadline_ms) ? a : b;
        core_list_del(&t->link);
        core_list_add_tail(&merged, &t->link);
    }
    core_list_splice_tail(&q->before, &merged);
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

/* The queue's earliest timer: the first of one list or the other. */
static struct core_timer *earliest(const struct core_tq *q)
{
    struct core_timer *a = first_of(&q->head), *b = first_of(&q->before);

    return !b || (a && a->deadline_ms <= b->deadline_ms) ? a : b;
}

struct core_timer *core_tq_pop_expired(struct core_tq *q, uint64_t now_ms)
{
    struct core_timer *t = earliest(q);

    if (!t || t->deadline_ms > now_ms)
        return 0;
    core_list_del(&t->link);
    return t;
}

uint64_t core_tq_next(const struct core_tq *q)
{
    struct core_timer *t = earliest(q);

    return t ? t->deadline_ms : UINT64_MAX;
}
