#include "core/loop.h"

#include <errno.h>
#include <time.h>

#include "core/epoll.h"

_Thread_local struct core_thread *core_self;

static enum core_engine engine;

void core_engine_set(enum core_engine e)
{
    engine = e;
}

enum core_engine core_engine_get(void)
{
    return engine;
}

int core_io_uring_probe(const char **ret_what)
{
    struct io_uring ring;
    struct io_uring_probe *probe;
    struct io_uring_sqe *sqe;
    struct io_uring_cqe *cqe;
    int r;

    r = io_uring_queue_init(2, &ring, 0);
    if (r < 0) {
        *ret_what = "io_uring_setup";
        return r;
    }
    probe = io_uring_get_probe_ring(&ring);
    if (!probe) {
        *ret_what = "io_uring_register";
        io_uring_queue_exit(&ring);
        return -EPERM;
    }
    io_uring_free_probe(probe);
    sqe = io_uring_get_sqe(&ring);
    io_uring_prep_nop(sqe);
    r = io_uring_submit_and_wait(&ring, 1);
    if (r >= 0 && io_uring_peek_cqe(&ring, &cqe) == 0)
        io_uring_cqe_seen(&ring, cqe);
    io_uring_queue_exit(&ring);
    if (r < 0) {
        *ret_what = "io_uring_enter";
        return r;
    }
    return 0;
}

void core_clock_update(struct core_thread *t)
{
    struct timespec ts;

    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    t->now_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    t->now_ms = t->now_us / 1000u;
    t->now_rt_valid = 0;
}

int core_thread_init(struct core_thread *t, int id, const struct core_thread_params *p,
                     const char **ret_what)
{
    struct io_uring_params up = {0};
    int r;

    *t = (struct core_thread){.id = id, .engine = engine};
    if (engine == CORE_ENGINE_EPOLL) {
        r = core_ep_init(t);
        if (r < 0) {
            *ret_what = "epoll_create1";
            return r;
        }
        /* the same buffers, published as for the kernel, taken by core/epoll.c */
        r = core_bufring_init(&t->bufs, NULL, 0, p->nbufs, p->bufsz);
        if (r < 0) {
            *ret_what = "receive buffers";
            core_ep_exit(t);
            return r;
        }
        core_pool_init(&t->pool, p->blksz);
        core_clock_update(t);
        core_self = t;
        return 0;
    }
    up.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
    up.cq_entries = p->entries * 8;
    r = io_uring_queue_init_params(p->entries, &t->ring, &up);
    if (r == -EINVAL) {
        /* Kernels before 6.1 lack DEFER_TASKRUN: run without it. */
        up = (struct io_uring_params){.flags = IORING_SETUP_CQSIZE, .cq_entries = p->entries * 8};
        r = io_uring_queue_init_params(p->entries, &t->ring, &up);
    }
    if (r < 0) {
        *ret_what = "io_uring_queue_init";
        return r;
    }
    t->ring_flags = up.flags;
    /* Saves a file-table lookup on every io_uring_enter; harmless where missing. */
    (void)io_uring_register_ring_fd(&t->ring);
    r = core_bufring_init(&t->bufs, &t->ring, 0, p->nbufs, p->bufsz);
    if (r < 0) {
        *ret_what = "io_uring_register_buf_ring";
        io_uring_queue_exit(&t->ring);
        return r;
    }
    core_pool_init(&t->pool, p->blksz);
    core_clock_update(t);
    core_self = t;
    return 0;
}

void core_thread_exit(struct core_thread *t)
{
    if (t->engine == CORE_ENGINE_EPOLL) {
        core_bufring_exit(&t->bufs, NULL);
        core_pool_exit(&t->pool);
        core_ep_exit(t);
        return;
    }
    core_bufring_exit(&t->bufs, &t->ring);
    core_pool_exit(&t->pool);
    io_uring_queue_exit(&t->ring);
}

struct io_uring_sqe *core_sqe(struct core_thread *t)
{
    struct io_uring_sqe *sqe;

    if (__builtin_expect(t->engine == CORE_ENGINE_EPOLL, 0))
        return core_ep_sqe(t);
    while (!(sqe = io_uring_get_sqe(&t->ring)))
        (void)io_uring_submit(&t->ring);
    return sqe;
}

void core_sqe_room(struct core_thread *t, unsigned n)
{
    if (t->engine == CORE_ENGINE_EPOLL)
        core_ep_room(t, n);
    else if (io_uring_sq_space_left(&t->ring) < n)
        (void)io_uring_submit(&t->ring);
}

/*
 * Under load, wait for a few completions at once rather than waking for each:
 * up to half of what the last turn brought, for at most CORE_BATCH_US. Idle or
 * under light load this is one completion and no added latency.
 */
#define CORE_BATCH_MAX 16
#define CORE_BATCH_US 50

int core_loop_run(struct core_thread *t, const struct core_loop_ops *ops)
{
    unsigned last = 0;

    if (t->engine == CORE_ENGINE_EPOLL)
        return core_ep_run(t, ops);
    for (;;) {
        struct __kernel_timespec ts;
        struct io_uring_cqe *cqe;
        unsigned head, n = 0, want;
        long wait_ms;
        int r;

        wait_ms = ops->turn(t);
        if (wait_ms < 0)
            return 0;
        core_bufring_flush(&t->bufs);
        want = last / 2;
        if (want > CORE_BATCH_MAX)
            want = CORE_BATCH_MAX;
        if (want > 1 && wait_ms > 0) {
            ts.tv_sec = 0;
            ts.tv_nsec = CORE_BATCH_US * 1000L;
        } else {
            want = 1;
            ts.tv_sec = wait_ms / 1000;
            ts.tv_nsec = (wait_ms % 1000) * 1000000L;
        }
        r = io_uring_submit_and_wait_timeout(&t->ring, &cqe, want, &ts, NULL);
        if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY)
            return r;
        core_clock_update(t);
        io_uring_for_each_cqe (&t->ring, head, cqe) {
            struct core_op *op = io_uring_cqe_get_data(cqe);

            n++;
            if (op)
                ops->cqe(t, op, cqe);
        }
        io_uring_cq_advance(&t->ring, n);
        last = n;
    }
}
