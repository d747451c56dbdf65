/*
 * An intrusive doubly linked list with a sentinel head: an element embeds a
 * struct core_list and is in at most one list through it. Every operation
 * is O(1); an element knows whether it is linked. Used for the worker's
 * sockets, its idle upstream pool, the sockets waiting for receive buffers,
 * those to free, and the timer queues.
 */
#ifndef RINGPROXY_CORE_LIST_H
#define RINGPROXY_CORE_LIST_H

#include <stddef.h>

struct core_list {
    struct core_list *prev, *next; /* NULL in an element that is in no list */
};

#define core_container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))
/* The element holding link n (a struct core_list *), or NULL for NULL. */
#define core_list_entry(n, type, member) ((n) ? core_container_of((n), type, member) : (type *)NULL)

static inline void core_list_init(struct core_list *head)
{
    head->prev = head->next = head;
}

static inline int core_list_empty(const struct core_list *head)
{
    return head->next == head;
}

static inline int core_list_linked(const struct core_list *n)
{
    return n->next != NULL;
}

static inline void core_list_insert_(struct core_list *n, struct core_list *prev,
                                     struct core_list *next)
{
    n->prev = prev;
    n->next = next;
    prev->next = n;
    next->prev = n;
}

static inline void core_list_add_head(struct core_list *head, struct core_list *n)
{
    core_list_insert_(n, head, head->next);
}

static inline void core_list_add_tail(struct core_list *head, struct core_list *n)
{
    core_list_insert_(n, head->prev, head);
}

/* Unlink n from its list; nothing when it is in none. */
static inline void core_list_del(struct core_list *n)
{
    if (!n->next)
        return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = NULL;
}

/* The first element's link, or NULL when the list is empty. */
static inline struct core_list *core_list_first(const struct core_list *head)
{
    return head->next == head ? NULL : head->next;
}

/* The link after n in the list headed by head, or NULL at its end. */
static inline struct core_list *core_list_next(const struct core_list *head,
                                               const struct core_list *n)
{
    return n->next == head ? NULL : n->next;
}

/* Move every element of from to the end of to; from is left empty. */
static inline void core_list_splice_tail(struct core_list *to, struct core_list *from)
{
    if (core_list_empty(from))
        return;
    from->next->prev = to->prev;
    to->prev->next = from->next;
    from->prev->next = to;
    to->prev = from->prev;
    core_list_init(from);
}

#endif
