/*
 * Tests for core/loop.c: thread set-up on a real io_uring (skipped where the
 * kernel refuses it), SQE allocation under a full queue, and the loop itself
 * driven by NOP completions.
 */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <liburing.h>

#include "core/loop.h"

static struct core_thread th;
static int th_up;

static const struct core_thread_params params = {
    .entries = 8,
    .nbufs = 16,
    .bufsz = 256,
    .blksz = 512,
};

static void thread_up(void)
{
    const char *what = NULL;
    int r = core_thread_init(&th, 3, &params, &what);

    if (r == -ENOSYS || r == -EPERM || r == -EACCES)
        cr_skip_test("io_uring refused (%s): %s", what ? what : "?", strerror(-r));
    cr_assert_eq(r, 0, "core_thread_init: %s: %s", what ? what : "?", strerror(-r));
    th_up = 1;
}

static void thread_down(void)
{
    if (th_up)
        core_thread_exit(&th);
    th_up = 0;
}

static uint64_t mono_us(void)
{
    struct timespec ts;

    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

Test(core_loop, thread_init_sets_up_ring, .fini = thread_down)
{
    uint64_t before = mono_us();

    thread_up();
    cr_assert_eq(th.id, 3);
    cr_assert_eq(core_self, &th);
    cr_assert_geq(th.ring.ring_fd, 0);
    cr_assert_geq(th.ring.sq.ring_entries, params.entries);
    cr_assert_geq(th.ring.cq.ring_entries, params.entries * 8, "CQ sized for a burst");
    cr_assert(th.ring_flags & IORING_SETUP_CQSIZE);
    cr_assert_eq(th.bufs.nbufs, params.nbufs);
    cr_assert_eq(th.bufs.bufsz, params.bufsz);
    cr_assert_not_null(th.bufs.br);
    cr_assert_eq(th.pool.blksz, params.blksz);
    cr_assert_eq(th.pool.blks.objsz, 16 + params.blksz);
    cr_assert_geq(th.now_us, before);
    cr_assert_leq(th.now_us, mono_us());
    cr_assert_eq(th.now_ms, th.now_us / 1000);
}

Test(core_loop, clock_update_advances, .init = thread_up, .fini = thread_down)
{
    uint64_t t0 = th.now_us;

    usleep(3000);
    core_clock_update(&th);
    cr_assert_geq(th.now_us, t0 + 3000);
    cr_assert_eq(th.now_ms, th.now_us / 1000);
}

static int64_t ts_us(struct timespec ts)
{
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The access log's request start (C10): one wall-clock reading per turn. */
Test(core_loop, realtime_is_read_once_per_turn, .init = thread_up, .fini = thread_down)
{
    struct timespec before, a, b, c, after;

    clock_gettime(CLOCK_REALTIME, &before);
    core_clock_update(&th);
    a = core_realtime(&th);
    usleep(3000);
    b = core_realtime(&th);
    cr_assert(a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec, "same turn, same time");
    cr_assert_geq(ts_us(a), ts_us(before));
    core_clock_update(&th);
    c = core_realtime(&th);
    clock_gettime(CLOCK_REALTIME, &after);
    cr_assert_geq(ts_us(c), ts_us(a) + 3000, "a new turn reads the clock again");
    cr_assert_leq(ts_us(c), ts_us(after));
}

/* Wait for and count every CQE, checking user_data. */
static unsigned drain_nops(unsigned want)
{
    struct io_uring_cqe *cqe;
    unsigned n = 0;

    while (n < want) {
        int r = io_uring_submit_and_wait(&th.ring, 1);

        cr_assert_geq(r, 0, "submit_and_wait: %s", strerror(-r));
        while (io_uring_peek_cqe(&th.ring, &cqe) == 0) {
            cr_assert_eq(cqe->res, 0);
            cr_assert_eq(io_uring_cqe_get_data64(cqe), 0x5eed + n);
            io_uring_cqe_seen(&th.ring, cqe);
            n++;
        }
    }
    return n;
}

Test(core_loop, sqe_never_null_when_full, .init = thread_up, .fini = thread_down)
{
    unsigned entries = th.ring.sq.ring_entries, total = entries * 3;

    for (unsigned i = 0; i < total; i++) {
        struct io_uring_sqe *sqe;

        if (i == entries)
            cr_assert_eq(io_uring_sq_space_left(&th.ring), 0, "the SQ should be full here");
        sqe = core_sqe(&th);
        cr_assert_not_null(sqe, "core_sqe returned NULL at %u", i);
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data64(sqe, 0x5eed + i);
    }
    /* Every NOP ran, once, in order: nothing was dropped or overwritten. */
    cr_assert_eq(drain_nops(total), total);
}

struct nop_app {
    struct core_op ops[3];
    unsigned seen[3];
    unsigned cqes, turns, ignored_sent;
    long wait_ms;
    uint64_t first_turn_us;
    uint32_t pending_seen;
};

static void nop_cqe(struct core_thread *t, struct core_op *op, const struct io_uring_cqe *cqe)
{
    struct nop_app *a = t->app;
    unsigned i = (unsigned)(op - a->ops);

    cr_assert_lt(i, 3, "cqe() got an op we never submitted");
    cr_assert_eq(op->kind, 10 + i);
    cr_assert_eq(cqe->res, 0);
    a->seen[i]++;
    a->cqes++;
}

static long nop_turn(struct core_thread *t)
{
    struct nop_app *a = t->app;

    a->turns++;
    if (a->turns == 1) {
        a->first_turn_us = t->now_us;
        for (int i = 0; i < 3; i++) {
            struct io_uring_sqe *sqe = core_sqe(t);

            a->ops[i].kind = (uint8_t)(10 + i);
            io_uring_prep_nop(sqe);
            io_uring_sqe_set_data(sqe, &a->ops[i]);
        }
        /* Nobody wants this completion: cqe() must not see it. */
        {
            struct io_uring_sqe *sqe = core_sqe(t);

            io_uring_prep_nop(sqe);
            io_uring_sqe_set_data64(sqe, CORE_UD_IGNORE);
            a->ignored_sent = 1;
        }
        usleep(2000);
        return 1000;
    }
    if (a->cqes >= 3 || a->turns > 50)
        return -1;
    return 1000;
}

Test(core_loop, run_drives_nops_and_stops, .init = thread_up, .fini = thread_down)
{
    struct core_loop_ops ops = {.cqe = nop_cqe, .turn = nop_turn};
    struct nop_app a = {0};
    uint64_t before;
    int r;

    th.app = &a;
    before = th.now_us;
    r = core_loop_run(&th, &ops);
    cr_assert_eq(r, 0);
    cr_assert_eq(a.cqes, 3);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(a.seen[i], 1, "op %d completed %u times", i, a.seen[i]);
    cr_assert_leq(a.turns, 3, "the loop spun: %u turns", a.turns);
    /* The clock moved past the 2 ms the first turn slept. */
    cr_assert_geq(th.now_us, before + 2000);
    cr_assert_geq(th.now_us, a.first_turn_us + 2000);
    cr_assert_eq(io_uring_cq_ready(&th.ring), 0, "completions left unconsumed");
}

static long idle_turn(struct core_thread *t)
{
    struct nop_app *a = t->app;

    return ++a->turns > 3 ? -1 : a->wait_ms;
}

Test(core_loop, idle_turns_wait_and_clock_advances, .init = thread_up, .fini = thread_down)
{
    struct core_loop_ops ops = {.cqe = nop_cqe, .turn = idle_turn};
    struct nop_app a = {.wait_ms = 15};
    uint64_t t0 = mono_us(), before = th.now_us;

    th.app = &a;
    cr_assert_eq(core_loop_run(&th, &ops), 0);
    cr_assert_eq(a.turns, 4);
    cr_assert_eq(a.cqes, 0);
    /* Three waits of 15 ms with nothing to complete: the timeout is honoured. */
    cr_assert_geq(mono_us() - t0, 3 * 15000 - 1000);
    cr_assert_geq(th.now_us, before + 3 * 15000 - 1000);
}

static long stop_turn(struct core_thread *t)
{
    struct nop_app *a = t->app;

    a->turns++;
    return -1;
}

Test(core_loop, stops_at_first_negative_turn, .init = thread_up, .fini = thread_down)
{
    struct core_loop_ops ops = {.cqe = nop_cqe, .turn = stop_turn};
    struct nop_app a = {0};

    th.app = &a;
    cr_assert_eq(core_loop_run(&th, &ops), 0);
    cr_assert_eq(a.turns, 1);
}

static long flush_turn(struct core_thread *t)
{
    struct nop_app *a = t->app;

    a->turns++;
    if (a->turns == 1) {
        core_buf_take(&t->bufs, 2);
        core_buf_release(&t->bufs, 2);
        return 0;
    }
    a->pending_seen = t->bufs.nfree;
    return -1;
}

Test(core_loop, run_flushes_buffers_each_turn, .init = thread_up, .fini = thread_down)
{
    struct core_loop_ops ops = {.cqe = nop_cqe, .turn = flush_turn};
    struct nop_app a = {.pending_seen = 99};
    uint16_t tail = th.bufs.br->tail;

    th.app = &a;
    cr_assert_eq(core_loop_run(&th, &ops), 0);
    cr_assert_eq(a.turns, 2);
    cr_assert_eq(a.pending_seen, 0, "given-back buffer not flushed before waiting");
    cr_assert_eq(th.bufs.br->tail, (uint16_t)(tail + 1));
}
