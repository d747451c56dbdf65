/*
 * Tests for core/epoll.c, the epoll engine, on what its loop promises the
 * handlers beyond the io_uring results they share (those are covered by
 * the e2e and adversarial suites run on both engines): a ready descriptor's
 * completions are delivered, and what their handlers prepare is performed,
 * before the next descriptor is read; so a turn over many readable sockets
 * holds one receive buffer at a time, and answers the first socket without
 * waiting for the last.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <liburing.h>

#include "core/list.h"
#include "core/loop.h"

#define NSOCK 64
#define MSG "0123456789abcdef0123456789abcdef" /* 32 bytes */

static struct core_thread th;
static int th_up;

static const struct core_thread_params params = {
    .entries = 256,
    .nbufs = 128,
    .bufsz = 4096,
    .blksz = 512,
};

struct sock {
    struct core_op recv; /* OPK_RECV */
    struct core_op send; /* OPK_SEND */
    int fd, peer;
    char echo[64];
    int got, sent;
};

struct app {
    struct sock s[NSOCK];
    int events;         /* completions delivered, in order */
    int first_send_at;  /* the event count when the first send completed */
    int recvs_before;   /* receives delivered before the first send completed */
    uint32_t max_inuse; /* buffers in use seen by a receive handler, before it released its own */
    int turns, done;
};

static void thread_up(void)
{
    const char *what = NULL;
    int r;

    core_engine_set(CORE_ENGINE_EPOLL);
    r = core_thread_init(&th, 1, &params, &what);
    cr_assert_eq(r, 0, "core_thread_init (epoll): %s: %s", what ? what : "?", strerror(-r));
    th_up = 1;
}

static void thread_down(void)
{
    if (th_up)
        core_thread_exit(&th);
    th_up = 0;
    core_engine_set(CORE_ENGINE_IO_URING);
}

static void arm_recv(struct sock *s)
{
    struct io_uring_sqe *sqe = core_sqe(&th);

    io_uring_prep_recv_multishot(sqe, s->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = th.bufs.bgid;
    io_uring_sqe_set_data(sqe, &s->recv);
}

static void on_cqe(struct core_thread *t, struct core_op *op, const struct io_uring_cqe *cqe)
{
    struct app *a = t->app;

    a->events++;
    if (op->kind == OPK_RECV) {
        struct sock *s = core_container_of(op, struct sock, recv);
        uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);

        cr_assert(cqe->flags & IORING_CQE_F_BUFFER, "receive without a buffer: %d", cqe->res);
        cr_assert_eq(cqe->res, (int)strlen(MSG));
        core_buf_take(&t->bufs, bid);
        if (t->bufs.in_use > a->max_inuse)
            a->max_inuse = t->bufs.in_use;
        memcpy(s->echo, core_buf_ptr(&t->bufs, bid), (size_t)cqe->res);
        core_buf_release(&t->bufs, bid);
        s->got = 1;
        if (!a->first_send_at)
            a->recvs_before++;
        /* echo it: performed by the engine before the next descriptor is read */
        struct io_uring_sqe *sqe = core_sqe(t);

        io_uring_prep_send(sqe, s->fd, s->echo, (size_t)cqe->res, 0);
        io_uring_sqe_set_data(sqe, &s->send);
    } else if (op->kind == OPK_SEND) {
        struct sock *s = core_container_of(op, struct sock, send);

        cr_assert_eq(cqe->res, (int)strlen(MSG));
        s->sent = 1;
        if (!a->first_send_at)
            a->first_send_at = a->events;
        a->done++;
    }
}

/* The first turn writes to every peer: the next wait finds all the sockets readable at once. */
static long on_turn(struct core_thread *t)
{
    struct app *a = t->app;

    if (a->turns++ == 0)
        for (int i = 0; i < NSOCK; i++)
            cr_assert_eq(write(a->s[i].peer, MSG, strlen(MSG)), (ssize_t)strlen(MSG));
    if (a->done == NSOCK || a->turns > 50)
        return -1;
    return 100;
}

/*
 * 64 sockets readable at once, 32 receive buffers published (the window's
 * least): each receive's handler runs, and its echo is sent, before the
 * next socket is read, and the buffer it gave back is published again; so
 * no receive finds the ring empty (-ENOBUFS would end it), and the first
 * echo completes right after the first receive.
 */
Test(core_epoll, a_descriptor_settles_before_the_next_is_read, .init = thread_up,
     .fini = thread_down)
{
    static struct app a;
    struct core_loop_ops ops = {.cqe = on_cqe, .turn = on_turn};
    int sv[2];

    memset(&a, 0, sizeof(a));
    th.app = &a;
    cr_assert_leq(th.bufs.published, NSOCK / 2, "%u buffers published at the start",
                  th.bufs.published);
    for (int i = 0; i < NSOCK; i++) {
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
        a.s[i] =
            (struct sock){.recv.kind = OPK_RECV, .send.kind = OPK_SEND, .fd = sv[0], .peer = sv[1]};
        arm_recv(&a.s[i]);
    }
    cr_assert_eq(core_loop_run(&th, &ops), 0);
    cr_assert_eq(a.done, NSOCK, "%d of %d echoes sent in %d turns", a.done, NSOCK, a.turns);
    cr_expect_eq(a.recvs_before, 1, "%d receives delivered before the first echo was sent",
                 a.recvs_before);
    cr_expect_eq(a.first_send_at, 2, "the first echo completed as event %d", a.first_send_at);
    cr_expect_leq(a.max_inuse, 1, "%u buffers in use at once", a.max_inuse);
    for (int i = 0; i < NSOCK; i++) {
        char buf[64];

        cr_expect_eq(read(a.s[i].peer, buf, sizeof(buf)), (ssize_t)strlen(MSG), "socket %d", i);
        (void)close(a.s[i].fd);
        (void)close(a.s[i].peer);
    }
}
