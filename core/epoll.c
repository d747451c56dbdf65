/*
 * The epoll engine (docs/design.md, "Engines"): where io_uring is refused
 * (a seccomp profile, io_uring_disabled, an old kernel), a worker runs on
 * one epoll instance instead, and nothing above core/ knows.
 *
 * The worker keeps preparing SQEs with liburing's io_uring_prep_* helpers;
 * core_sqe() hands out entries of an array this engine owns. At the loop's
 * submit point each SQE is performed, or queued on its descriptor until
 * epoll says the descriptor is ready; what completes is queued as a struct
 * io_uring_cqe and delivered to the same handler, never inside another
 * operation's processing: after each step of a ready descriptor (one
 * operation per direction), with what its handlers prepared performed right
 * after (ep_settle()), and at the end of the loop's turn.
 *
 * Exactly the subset of io_uring the workers use is emulated, with the
 * results and flags their handlers rely on:
 *
 * - ACCEPT, multishot: IORING_CQE_F_MORE while armed; an error ends it.
 *   Accepted sockets are made non-blocking (accept4 SOCK_NONBLOCK).
 * - RECV with IOSQE_BUFFER_SELECT, single or multishot: a buffer is taken
 *   from the provided-buffer ring (core/buf.h, published by the worker as
 *   for the kernel; the ring is not registered) in the kernel's order, and
 *   reported with IORING_CQE_F_BUFFER and its id; an empty ring ends the
 *   receive with -ENOBUFS; EOF (0) and errors end it. RECV into a given
 *   buffer (the admin listener) the same without buffers.
 * - SEND, SENDMSG: with MSG_DONTWAIT performed at once (-EAGAIN or a part,
 *   as io_uring reports them); without, when the socket has room.
 * - CONNECT: non-blocking connect, completed from SO_ERROR once writable.
 * - POLL_ADD (POLLOUT, POLLIN): completed with the ready events.
 * - READ (the wake eventfd), WRITE (stdout: a pipe or socket when it has
 *   room, a regular file or terminal at once).
 * - ASYNC_CANCEL by user data: the target completes with -ECANCELED (no
 *   IORING_CQE_F_MORE), the cancel with 0 or -ENOENT.
 * - LINK_TIMEOUT after an IOSQE_IO_LINK operation: the operation is
 *   cancelled (-ECANCELED) at the deadline and the timeout completes with
 *   -ETIME; else the timeout completes with -ECANCELED after it.
 * - NOP.
 *
 * Descriptors are registered once, edge-triggered for input and output,
 * and each keeps "ready" flags per direction: set by an event, cleared by
 * an EAGAIN (or a short read or write, which drained the socket or filled
 * it). An operation is tried when its direction is ready, so a socket with
 * bytes waiting costs no epoll_wait.
 *
 * Descriptor reuse: a socket's state is keyed by its number and starts
 * afresh when this engine accepted it, or when a connect is its first
 * operation (the workers' only other sockets: upstreams; listeners, the
 * eventfd and stdout live as long as the worker). The workers close a
 * socket only once none of its operations is pending (they count them), so
 * no operation of an old socket is left to complete on a new one; the
 * kernel drops a closed descriptor from the epoll set, and each event
 * carries the state's generation, so an event meant for an old socket is
 * never taken for the new one.
 */
#include "core/epoll.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define EP_SQ 1024      /* SQEs prepared between two submissions, as the ring's */
#define EP_EVENTS 256   /* events taken per epoll_wait */
#define EP_BUDGET 16    /* steps per descriptor before the others' turn (see ep_run_fd) */
#define EP_SETTLE 4     /* rounds of delivering and submitting after one step */
#define EP_FD_PAGE 1024 /* descriptor states are allocated in pages: their addresses never move */
#define EP_SLAB 65536   /* operations are allocated in mappings of this size (see op_new) */

enum { EP_RD = 0, EP_WR = 1 };

/* What ep_perform() did with an operation. */
enum { EP_DONE, EP_MORE, EP_AGAIN };

/* How a descriptor is written and waited for. */
enum { FDK_POLL = 0, FDK_FILE = 1 };

struct ep_op {
    struct ep_op *next;          /* the descriptor's queue, or the free list */
    struct ep_op *hnext;         /* the user-data hash chain */
    struct ep_op *tprev, *tnext; /* operations with a link timeout */
    uint64_t ud;
    uint64_t addr;
    uint64_t tmo_ud;      /* the linked timeout's user data */
    uint64_t deadline_ms; /* 0: no linked timeout */
    uint32_t len;
    uint32_t rwflags; /* msg_flags, accept_flags or poll32_events */
    int fd;
    uint8_t opcode;
    uint8_t multishot;
    uint8_t bufsel;
    uint8_t side;
    uint8_t queued;
    uint8_t timed; /* on the timed list */
};

/* A mapping of operations; its first bytes link it to the others. */
struct ep_slab {
    struct ep_slab *next;
    uint64_t pad; /* the operations after it stay 16-byte aligned */
};

struct ep_fd {
    struct ep_op *q[2];
    struct ep_op **qt[2];
    uint32_t gen;
    uint32_t revents; /* the last event's mask */
    uint8_t reg;      /* in the epoll set */
    uint8_t ready[2];
    uint8_t nonblock; /* O_NONBLOCK is known to be set */
    uint8_t kind;     /* FDK_* */
    uint8_t nowait_checked;
    uint8_t runq;
    uint8_t rdhup; /* the peer closed, or an error: EOF waits behind what there is to read */
};

struct core_ep {
    int epfd;
    unsigned sq_n;
    struct io_uring_sqe sq[EP_SQ];
    struct io_uring_cqe *cq;
    size_t cq_n, cq_cap;
    struct ep_fd **pages;
    size_t npages;
    struct ep_op *free_ops;
    struct ep_slab *slabs;
    struct ep_op **hash;
    size_t hmask, hcount;
    struct ep_op *timed;
    int *runq;
    size_t runq_n, runq_cap;
    uint32_t buf_head; /* the kernel's head of the provided-buffer ring, emulated */
    struct epoll_event evs[EP_EVENTS];
};

/* ---- completions -------------------------------------------------------- */

static void post(struct core_ep *ep, uint64_t ud, int32_t res, uint32_t flags)
{
    if (ep->cq_n == ep->cq_cap) {
        size_t cap = ep->cq_cap ? ep->cq_cap * 2 : 1024;
        struct io_uring_cqe *n = realloc(ep->cq, cap * sizeof(*n));

        if (!n)
            abort(); /* a completion lost would leave its owner waiting for ever */
        ep->cq = n;
        ep->cq_cap = cap;
    }
    ep->cq[ep->cq_n++] = (struct io_uring_cqe){.user_data = ud, .res = res, .flags = flags};
}

/* ---- descriptor states ---------------------------------------------------- */

static struct ep_fd *fd_get(struct core_ep *ep, int fd)
{
    size_t pg = (size_t)fd / EP_FD_PAGE;

    if (fd < 0)
        return NULL;
    if (pg >= ep->npages) {
        size_t n = pg + 1;
        struct ep_fd **p = realloc(ep->pages, n * sizeof(*p));

        if (!p)
            return NULL;
        memset(p + ep->npages, 0, (n - ep->npages) * sizeof(*p));
        ep->pages = p;
        ep->npages = n;
    }
    if (!ep->pages[pg]) {
        ep->pages[pg] = calloc(EP_FD_PAGE, sizeof(struct ep_fd));
        if (!ep->pages[pg])
            return NULL;
        for (unsigned i = 0; i < EP_FD_PAGE; i++) {
            ep->pages[pg][i].qt[0] = &ep->pages[pg][i].q[0];
            ep->pages[pg][i].qt[1] = &ep->pages[pg][i].q[1];
        }
    }
    return &ep->pages[pg][(size_t)fd % EP_FD_PAGE];
}

/*
 * fd is a new socket (just accepted, or about to connect): whatever state
 * its number had belongs to a socket that is closed, and had no operation
 * left. Its registration went with the close.
 */
static void fd_fresh(struct ep_fd *f, int ready, int nonblock)
{
    f->gen++;
    f->reg = 0;
    f->ready[EP_RD] = f->ready[EP_WR] = (uint8_t)ready;
    f->nonblock = (uint8_t)nonblock;
    f->kind = FDK_POLL;
    f->nowait_checked = 0;
    f->revents = 0;
    f->rdhup = 0;
}

static int fd_register(struct core_ep *ep, struct ep_fd *f, int fd)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.u64 = (uint32_t)fd | (uint64_t)f->gen << 32};

    if (f->reg)
        return 0;
    if (epoll_ctl(ep->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        if (errno == EEXIST) {
            if (epoll_ctl(ep->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
                return -errno;
        } else if (errno == EPERM) {
            /* a regular file (stdout): always ready, written at once */
            f->kind = FDK_FILE;
            f->ready[EP_RD] = f->ready[EP_WR] = 1;
            return 0;
        } else {
            return -errno;
        }
    }
    f->reg = 1;
    return 0;
}

static int fd_nonblock(struct ep_fd *f, int fd)
{
    int fl;

    if (f->nonblock)
        return 0;
    fl = fcntl(fd, F_GETFL);
    if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0))
        return -errno;
    f->nonblock = 1;
    return 0;
}

static void runq_add(struct core_ep *ep, struct ep_fd *f, int fd)
{
    if (f->runq)
        return;
    if (ep->runq_n == ep->runq_cap) {
        size_t cap = ep->runq_cap ? ep->runq_cap * 2 : 64;
        int *n = realloc(ep->runq, cap * sizeof(*n));

        if (!n)
            return; /* it stays ready: its next event, or operation, runs it */
        ep->runq = n;
        ep->runq_cap = cap;
    }
    ep->runq[ep->runq_n++] = fd;
    f->runq = 1;
}

/* ---- pending operations --------------------------------------------------- */

static size_t hash_of(const struct core_ep *ep, uint64_t ud)
{
    ud ^= ud >> 29;
    ud *= 0xbf58476d1ce4e5b9ull;
    ud ^= ud >> 32;
    return (size_t)ud & ep->hmask;
}

static void hash_grow(struct core_ep *ep)
{
    size_t n = (ep->hmask + 1) * 2;
    struct ep_op **h = calloc(n, sizeof(*h));
    struct ep_op **old = ep->hash;
    size_t oldn = ep->hmask + 1;

    if (!h)
        return; /* longer chains, still correct */
    ep->hash = h;
    ep->hmask = n - 1;
    for (size_t i = 0; i < oldn; i++)
        for (struct ep_op *o = old[i], *nx; o; o = nx) {
            size_t b = hash_of(ep, o->ud);

            nx = o->hnext;
            o->hnext = h[b];
            h[b] = o;
        }
    free(old);
}

static void hash_add(struct core_ep *ep, struct ep_op *o)
{
    size_t b;

    if (ep->hcount > ep->hmask)
        hash_grow(ep);
    b = hash_of(ep, o->ud);
    o->hnext = ep->hash[b];
    ep->hash[b] = o;
    ep->hcount++;
}

static void hash_del(struct core_ep *ep, struct ep_op *o)
{
    for (struct ep_op **pp = &ep->hash[hash_of(ep, o->ud)]; *pp; pp = &(*pp)->hnext)
        if (*pp == o) {
            *pp = o->hnext;
            ep->hcount--;
            return;
        }
}

/*
 * Operations live on a free list once made, as many as the busiest moment
 * needed. They come from mappings of their own, never from the heap: one
 * malloc'd operation per page, kept for ever, had pinned pages the peak's
 * other memory came back to (10 MiB resident after a load of 2048 clients,
 * for 0.9 MiB of operations).
 */
static struct ep_op *op_new(struct core_ep *ep)
{
    struct ep_op *o = ep->free_ops;

    if (!o) {
        struct ep_slab *s =
            mmap(NULL, EP_SLAB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        struct ep_op *ops = (struct ep_op *)(s + 1);
        size_t n = (EP_SLAB - sizeof(*s)) / sizeof(*ops);

        if (s == MAP_FAILED)
            return NULL;
        s->next = ep->slabs;
        ep->slabs = s;
        for (size_t i = n; i-- > 0;) {
            ops[i].next = ep->free_ops;
            ep->free_ops = &ops[i];
        }
        o = ep->free_ops;
    }
    ep->free_ops = o->next;
    memset(o, 0, sizeof(*o));
    return o;
}

static void timed_del(struct core_ep *ep, struct ep_op *o)
{
    if (!o->timed)
        return;
    o->timed = 0;
    if (o->tprev)
        o->tprev->tnext = o->tnext;
    else
        ep->timed = o->tnext;
    if (o->tnext)
        o->tnext->tprev = o->tprev;
    o->tprev = o->tnext = NULL;
}

/*
 * o is over (its last completion was posted, or is posted now with res):
 * off its queue and the hash, its linked timeout completed, back to the
 * free list.
 */
static void op_end(struct core_ep *ep, struct ep_op *o, int post_res, int32_t res)
{
    if (o->queued) {
        struct ep_fd *f = fd_get(ep, o->fd);
        struct ep_op **pp = &f->q[o->side];

        while (*pp != o)
            pp = &(*pp)->next;
        *pp = o->next;
        if (f->qt[o->side] == &o->next)
            f->qt[o->side] = pp;
        hash_del(ep, o);
    }
    if (post_res)
        post(ep, o->ud, res, 0);
    if (o->deadline_ms) {
        timed_del(ep, o);
        /* the operation ended first: its timeout is cancelled (-ETIME when it fired) */
        post(ep, o->tmo_ud, res == -ECANCELED && post_res == 2 ? -ETIME : -ECANCELED, 0);
    }
    o->next = ep->free_ops;
    ep->free_ops = o;
}

/* ---- performing operations ------------------------------------------------ */

/* A buffer published in the provided-buffer ring, taken as the kernel takes them; NULL when empty.
 */
static struct io_uring_buf *buf_peek(struct core_thread *t)
{
    struct core_bufring *b = &t->bufs;
    uint16_t tail = __atomic_load_n(&b->br->tail, __ATOMIC_ACQUIRE);

    if ((uint16_t)t->ep->buf_head == tail)
        return NULL;
    return &b->br->bufs[t->ep->buf_head & (b->nbufs - 1)];
}

static int do_write(struct ep_fd *f, struct ep_op *o)
{
    struct iovec iov = {(void *)(uintptr_t)o->addr, o->len};
    ssize_t n;

    if (f->kind == FDK_FILE) {
        do
            n = write(o->fd, iov.iov_base, iov.iov_len);
        while (n < 0 && errno == EINTR);
        return n < 0 ? -errno : (int)n;
    }
    /* a pipe or a socket: never wait for room here (RWF_NOWAIT: Linux 5.x pipes, sockets) */
    n = pwritev2(o->fd, &iov, 1, -1, RWF_NOWAIT);
    if (n < 0 && errno == EOPNOTSUPP) {
        /* a descriptor that cannot say "no room" (a terminal): written at once, as a file */
        f->kind = FDK_FILE;
        return do_write(f, o);
    }
    return n < 0 ? -errno : (int)n;
}

/*
 * Try o once; its descriptor's direction is ready (or o does not wait).
 * Posts what completes; clears the ready flag when the descriptor said
 * EAGAIN, or was drained or filled.
 */
static int ep_perform(struct core_thread *t, struct ep_fd *f, struct ep_op *o)
{
    struct core_ep *ep = t->ep;
    ssize_t n;

    switch (o->opcode) {
    case IORING_OP_ACCEPT: {
        int nfd = accept4(o->fd, NULL, NULL, (int)o->rwflags | SOCK_NONBLOCK);
        struct ep_fd *nf;

        if (nfd < 0 && errno == EINTR)
            nfd = accept4(o->fd, NULL, NULL, (int)o->rwflags | SOCK_NONBLOCK);
        if (nfd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return EP_AGAIN;
            op_end(ep, o, 1, -errno);
            return EP_DONE;
        }
        nf = fd_get(ep, nfd);
        if (!nf) {
            (void)close(nfd);
            op_end(ep, o, 1, -ENOMEM);
            return EP_DONE;
        }
        /* a client sends first: try its first receive at once */
        fd_fresh(nf, 1, 1);
        if (o->multishot) {
            post(ep, o->ud, nfd, IORING_CQE_F_MORE);
            return EP_MORE;
        }
        op_end(ep, o, 1, nfd);
        return EP_DONE;
    }
    case IORING_OP_RECV: {
        struct io_uring_buf *buf = NULL;
        void *p = (void *)(uintptr_t)o->addr;
        uint32_t len = o->len;

        if (o->bufsel) {
            buf = buf_peek(t);
            if (!buf) {
                /* like the kernel: no buffer ends the receive (multishot too) */
                op_end(ep, o, 1, -ENOBUFS);
                return EP_DONE;
            }
            p = (void *)(uintptr_t)buf->addr;
            len = o->len && o->len < buf->len ? o->len : buf->len;
        }
        n = recv(o->fd, p, len, (int)o->rwflags | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return EP_AGAIN;
            op_end(ep, o, 1, -errno);
            return EP_DONE;
        }
        if (n == 0) {
            op_end(ep, o, 1, 0); /* EOF ends it, multishot too */
            return EP_DONE;
        }
        /*
         * Drained: the next bytes bring an event. Not once the peer closed:
         * that edge came already, and the EOF behind these bytes is still
         * to be read.
         */
        if ((size_t)n < len && !f->rdhup)
            f->ready[EP_RD] = 0;
        if (buf) {
            uint32_t flags = IORING_CQE_F_BUFFER | (uint32_t)buf->bid << IORING_CQE_BUFFER_SHIFT;

            ep->buf_head++;
            if (o->multishot) {
                post(ep, o->ud, (int32_t)n, flags | IORING_CQE_F_MORE);
                return EP_MORE;
            }
            post(ep, o->ud, (int32_t)n, flags);
            op_end(ep, o, 0, 0); /* after: a linked timeout's completion follows the operation's */
            return EP_DONE;
        }
        op_end(ep, o, 1, (int32_t)n);
        return EP_DONE;
    }
    case IORING_OP_READ:
        n = read(o->fd, (void *)(uintptr_t)o->addr, o->len);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return EP_AGAIN;
        op_end(ep, o, 1, n < 0 ? -errno : (int32_t)n);
        return EP_DONE;
    case IORING_OP_SEND:
        n = send(o->fd, (void *)(uintptr_t)o->addr, o->len, (int)o->rwflags | MSG_DONTWAIT);
        goto sent;
    case IORING_OP_SENDMSG:
        n = sendmsg(o->fd, (const struct msghdr *)(uintptr_t)o->addr,
                    (int)o->rwflags | MSG_DONTWAIT);
        if (n >= 0) {
            const struct msghdr *m = (const struct msghdr *)(uintptr_t)o->addr;
            size_t want = 0;

            for (size_t i = 0; i < m->msg_iovlen; i++)
                want += m->msg_iov[i].iov_len;
            if ((size_t)n < want)
                f->ready[EP_WR] = 0;
            op_end(ep, o, 1, (int32_t)n);
            return EP_DONE;
        }
    sent:
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            f->ready[EP_WR] = 0;
            if (o->rwflags & MSG_DONTWAIT) {
                op_end(ep, o, 1, -EAGAIN); /* io_uring's answer to MSG_DONTWAIT */
                return EP_DONE;
            }
            return EP_AGAIN;
        }
        if (n >= 0 && o->opcode == IORING_OP_SEND && (size_t)n < o->len)
            f->ready[EP_WR] = 0; /* full: the room that frees brings an event */
        op_end(ep, o, 1, n < 0 ? -errno : (int32_t)n);
        return EP_DONE;
    case IORING_OP_WRITE: {
        int r = do_write(f, o);

        if (r == -EAGAIN || r == -EINTR)
            return EP_AGAIN;
        if (r >= 0 && (uint32_t)r < o->len)
            f->ready[EP_WR] = 0;
        op_end(ep, o, 1, r);
        return EP_DONE;
    }
    case IORING_OP_CONNECT: {
        int err = 0;
        socklen_t el = sizeof(err);

        if (getsockopt(o->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
            err = errno;
        if (!err && !(f->revents & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return EP_AGAIN; /* not connected yet */
        op_end(ep, o, 1, -err);
        return EP_DONE;
    }
    case IORING_OP_POLL_ADD: {
        uint32_t want = o->rwflags, got = 0;

        if ((want & POLLOUT) && f->ready[EP_WR])
            got |= POLLOUT;
        if ((want & POLLIN) && f->ready[EP_RD])
            got |= POLLIN;
        got |= f->revents & (EPOLLERR | EPOLLHUP);
        if (!got)
            return EP_AGAIN;
        op_end(ep, o, 1, (int32_t)got);
        return EP_DONE;
    }
    default:
        op_end(ep, o, 1, -EINVAL);
        return EP_DONE;
    }
}

/*
 * Perform the first operation waiting on one direction of fd if it is
 * ready; 1 if one was performed (it may have ended, or gone on: a
 * multishot's next receive is the next step's).
 */
static int ep_step(struct core_thread *t, struct ep_fd *f, int side)
{
    struct ep_op *o = f->q[side];

    if (!o || !f->ready[side])
        return 0;
    if (ep_perform(t, f, o) == EP_AGAIN) {
        f->ready[side] = 0;
        return 0;
    }
    return 1;
}

/* fd has operations it could perform now: its turn comes again after the others'. */
static void ep_more(struct core_ep *ep, struct ep_fd *f, int fd)
{
    if ((f->q[EP_RD] && f->ready[EP_RD]) || (f->q[EP_WR] && f->ready[EP_WR]))
        runq_add(ep, f, fd);
}

static void queue_op(struct core_thread *t, struct ep_fd *f, struct ep_op *o)
{
    struct core_ep *ep = t->ep;
    int r;

    if (o->opcode == IORING_OP_ACCEPT || o->opcode == IORING_OP_READ) {
        r = fd_nonblock(f, o->fd);
        if (r < 0) {
            op_end(ep, o, 1, r);
            return;
        }
    }
    r = fd_register(ep, f, o->fd);
    if (r < 0) {
        op_end(ep, o, 1, r);
        return;
    }
    o->next = NULL;
    *f->qt[o->side] = o;
    f->qt[o->side] = &o->next;
    o->queued = 1;
    hash_add(ep, o);
    if (o->deadline_ms) {
        o->tnext = ep->timed;
        if (ep->timed)
            ep->timed->tprev = o;
        ep->timed = o;
        o->timed = 1;
    }
    /* as the kernel tries an operation when it is submitted; once: the rest is fd's next turn */
    if (f->q[o->side] == o) {
        (void)ep_step(t, f, o->side);
        ep_more(ep, f, o->fd);
    }
}

/* ---- submission ----------------------------------------------------------- */

static int ep_cancel(struct core_ep *ep, uint64_t ud)
{
    struct ep_op *o;

    for (o = ep->hash[hash_of(ep, ud)]; o; o = o->hnext)
        if (o->ud == ud) {
            op_end(ep, o, 1, -ECANCELED);
            return 0;
        }
    return -ENOENT;
}

static void ep_issue(struct core_thread *t, const struct io_uring_sqe *sqe,
                     const struct io_uring_sqe *tmo)
{
    struct core_ep *ep = t->ep;
    struct ep_op *o;
    struct ep_fd *f;

    switch (sqe->opcode) {
    case IORING_OP_NOP:
        post(ep, sqe->user_data, 0, 0);
        return;
    case IORING_OP_ASYNC_CANCEL:
        post(ep, sqe->user_data, ep_cancel(ep, sqe->addr), 0);
        return;
    case IORING_OP_ACCEPT:
    case IORING_OP_RECV:
    case IORING_OP_READ:
    case IORING_OP_SEND:
    case IORING_OP_SENDMSG:
    case IORING_OP_WRITE:
    case IORING_OP_CONNECT:
    case IORING_OP_POLL_ADD:
        break;
    default:
        /* not an operation the workers use */
        post(ep, sqe->user_data, -EINVAL, 0);
        return;
    }
    f = fd_get(ep, sqe->fd);
    o = op_new(ep);
    if (!f || !o) {
        if (o) {
            o->next = ep->free_ops;
            ep->free_ops = o;
        }
        post(ep, sqe->user_data, !f ? -EBADF : -ENOMEM, 0);
        return;
    }
    o->ud = sqe->user_data;
    o->addr = sqe->addr;
    o->len = sqe->len;
    o->fd = sqe->fd;
    o->opcode = sqe->opcode;
    o->rwflags = sqe->rw_flags;
    o->bufsel = !!(sqe->flags & IOSQE_BUFFER_SELECT);
    o->side = EP_RD;
    if (tmo) {
        const struct __kernel_timespec *ts = (const void *)(uintptr_t)tmo->addr;
        uint64_t ms = (uint64_t)ts->tv_sec * 1000u + (uint64_t)ts->tv_nsec / 1000000u;

        o->tmo_ud = tmo->user_data;
        o->deadline_ms = t->now_ms + (ms ? ms : 1);
    }
    switch (sqe->opcode) {
    case IORING_OP_ACCEPT:
        o->multishot = !!(sqe->ioprio & IORING_ACCEPT_MULTISHOT);
        break;
    case IORING_OP_RECV:
        o->multishot = !!(sqe->ioprio & IORING_RECV_MULTISHOT);
        break;
    case IORING_OP_SEND:
    case IORING_OP_SENDMSG:
        o->side = EP_WR;
        if (o->rwflags & MSG_DONTWAIT) {
            /* tried once, now: io_uring answers -EAGAIN or a part rather than wait */
            (void)ep_perform(t, f, o);
            return;
        }
        break;
    case IORING_OP_WRITE:
        o->side = EP_WR;
        if (!f->reg && f->kind != FDK_FILE) {
            struct stat sb;

            if (fstat(o->fd, &sb) == 0 && !S_ISFIFO(sb.st_mode) && !S_ISSOCK(sb.st_mode))
                f->kind = FDK_FILE;
        }
        if (f->kind == FDK_FILE) {
            (void)ep_perform(t, f, o);
            return;
        }
        if (!f->nowait_checked) {
            /* a pipe's first write is tried before waiting: it has room until shown otherwise */
            f->nowait_checked = 1;
            f->ready[EP_WR] = 1;
        }
        break;
    case IORING_OP_CONNECT: {
        /* a socket's first operation: its number is a new socket's */
        int r;

        fd_fresh(f, 0, 0);
        o->side = EP_WR;
        r = fd_nonblock(f, o->fd);
        if (r == 0 &&
            connect(o->fd, (const struct sockaddr *)(uintptr_t)o->addr, (socklen_t)sqe->off) < 0)
            r = -errno;
        if (r == 0 || (r != -EINPROGRESS && r != -EAGAIN && r != -EINTR)) {
            f->ready[EP_RD] = f->ready[EP_WR] = r == 0;
            if (r == 0)
                (void)fd_register(ep, f, o->fd);
            op_end(ep, o, 1, r);
            return;
        }
        break;
    }
    case IORING_OP_POLL_ADD:
        o->rwflags = sqe->poll32_events;
        o->side = (o->rwflags & POLLOUT) ? EP_WR : EP_RD;
        break;
    default:
        break;
    }
    queue_op(t, f, o);
}

static void ep_submit(struct core_thread *t)
{
    struct core_ep *ep = t->ep;
    unsigned n = ep->sq_n;

    ep->sq_n = 0;
    for (unsigned i = 0; i < n; i++) {
        const struct io_uring_sqe *sqe = &ep->sq[i], *tmo = NULL;

        if ((sqe->flags & IOSQE_IO_LINK) && i + 1 < n &&
            ep->sq[i + 1].opcode == IORING_OP_LINK_TIMEOUT)
            tmo = &ep->sq[++i];
        ep_issue(t, sqe, tmo);
    }
}

struct io_uring_sqe *core_ep_sqe(struct core_thread *t)
{
    struct core_ep *ep = t->ep;

    if (ep->sq_n == EP_SQ)
        ep_submit(t);
    return &ep->sq[ep->sq_n++];
}

void core_ep_room(struct core_thread *t, unsigned n)
{
    if (EP_SQ - t->ep->sq_n < n)
        ep_submit(t);
}

/* ---- the loop -------------------------------------------------------------- */

static void ep_expire(struct core_thread *t)
{
    struct core_ep *ep = t->ep;

    for (struct ep_op *o = ep->timed, *nx; o; o = nx) {
        nx = o->tnext;
        if (o->deadline_ms <= t->now_ms)
            op_end(ep, o, 2, -ECANCELED);
    }
}

static long ep_timeout(struct core_thread *t, long wait_ms)
{
    struct core_ep *ep = t->ep;

    if (ep->cq_n || ep->runq_n)
        return 0;
    for (struct ep_op *o = ep->timed; o; o = o->tnext) {
        long left = o->deadline_ms > t->now_ms ? (long)(o->deadline_ms - t->now_ms) : 0;

        if (left < wait_ms)
            wait_ms = left;
    }
    return wait_ms;
}

/* Hand what completed so far to the handlers, in order. */
static void ep_deliver(struct core_thread *t, const struct core_loop_ops *ops)
{
    struct core_ep *ep = t->ep;
    size_t n = ep->cq_n;

    for (size_t i = 0; i < n; i++) {
        struct io_uring_cqe c = ep->cq[i]; /* the array may grow under the handler */
        struct core_op *op = (struct core_op *)(uintptr_t)c.user_data;

        if (op)
            ops->cqe(t, op, &c);
    }
    if (ep->cq_n > n) /* those a full SQE array's submission completed meanwhile */
        memmove(ep->cq, ep->cq + n, (ep->cq_n - n) * sizeof(*ep->cq));
    ep->cq_n -= n;
}

/*
 * After a step: deliver its completions, give the buffers the handlers
 * released back to the ring, and perform what the handlers prepared
 * (a request forwarded, a response sent on), and what that completes, a
 * few rounds deep; the rest is performed at the turn's submission. So one
 * descriptor's input goes on its way while its bytes are in the cache,
 * holding one receive buffer at a time, before the next descriptor is
 * read: a turn that reads 512 clients neither keeps 512 buffers nor makes
 * the first ones wait for the last.
 */
static void ep_settle(struct core_thread *t, const struct core_loop_ops *ops)
{
    struct core_ep *ep = t->ep;

    for (int round = 0; round < EP_SETTLE && ep->cq_n; round++) {
        ep_deliver(t, ops);
        core_bufring_flush(&t->bufs);
        ep_submit(t);
    }
}

/*
 * fd's turn: one operation per direction, then what it led to, up to
 * EP_BUDGET times while it stays ready. A handler may close fd meanwhile
 * (only once none of its operations is pending), and its number may be
 * taken by a new socket (a new generation): its turn ends there.
 */
static void ep_run_fd(struct core_thread *t, const struct core_loop_ops *ops, struct ep_fd *f,
                      int fd)
{
    uint32_t gen = f->gen;

    for (unsigned step = 0; step < EP_BUDGET; step++) {
        int did = ep_step(t, f, EP_RD);

        did |= ep_step(t, f, EP_WR);
        if (!did)
            return;
        ep_settle(t, ops);
        if (f->gen != gen)
            return;
    }
    ep_more(t->ep, f, fd);
}

static void ep_events(struct core_thread *t, const struct core_loop_ops *ops, int n)
{
    struct core_ep *ep = t->ep;
    size_t nrun = ep->runq_n;

    for (int i = 0; i < n; i++) {
        uint64_t d = ep->evs[i].data.u64;
        uint32_t e = ep->evs[i].events;
        int fd = (int)(uint32_t)d;
        struct ep_fd *f = fd_get(ep, fd);

        if (!f || !f->reg || f->gen != (uint32_t)(d >> 32))
            continue; /* for a socket that is gone */
        f->revents = e;
        if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            f->rdhup = 1;
        if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            f->ready[EP_RD] = 1;
        if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR))
            f->ready[EP_WR] = 1;
        ep_run_fd(t, ops, f, fd);
    }
    /* descriptors whose budget ran out last time; those that run out now wait for the next */
    for (size_t i = 0; i < nrun; i++) {
        int fd = ep->runq[i];
        struct ep_fd *f = fd_get(ep, fd);

        f->runq = 0;
        ep_run_fd(t, ops, f, fd);
    }
    if (ep->runq_n > nrun)
        memmove(ep->runq, ep->runq + nrun, (ep->runq_n - nrun) * sizeof(*ep->runq));
    ep->runq_n -= nrun;
}

int core_ep_run(struct core_thread *t, const struct core_loop_ops *ops)
{
    struct core_ep *ep = t->ep;

    for (;;) {
        long wait_ms = ops->turn(t);
        int ne;

        if (wait_ms < 0)
            return 0;
        core_bufring_flush(&t->bufs);
        ep_submit(t);
        wait_ms = ep_timeout(t, wait_ms);
        ne = epoll_wait(ep->epfd, ep->evs, EP_EVENTS, wait_ms > 3600000 ? 3600000 : (int)wait_ms);
        if (ne < 0) {
            if (errno != EINTR)
                return -errno;
            ne = 0;
        }
        core_clock_update(t);
        ep_deliver(t, ops); /* what the turn's submission completed */
        ep_events(t, ops, ne);
        if (ep->timed)
            ep_expire(t);
        /*
         * Deliver what is left; a handler's SQEs are performed at the next
         * submission (or when the array fills), and what they complete is
         * delivered in the next turn.
         */
        ep_deliver(t, ops);
    }
}

int core_ep_init(struct core_thread *t)
{
    struct core_ep *ep = calloc(1, sizeof(*ep));

    if (!ep)
        return -ENOMEM;
    ep->hash = calloc(1024, sizeof(*ep->hash));
    ep->hmask = 1023;
    ep->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (ep->epfd < 0 || !ep->hash) {
        int r = ep->epfd < 0 ? -errno : -ENOMEM;

        if (ep->epfd >= 0)
            (void)close(ep->epfd);
        free(ep->hash);
        free(ep);
        return r;
    }
    t->ep = ep;
    return 0;
}

void core_ep_exit(struct core_thread *t)
{
    struct core_ep *ep = t->ep;

    if (!ep)
        return;
    (void)close(ep->epfd);
    for (struct ep_slab *s = ep->slabs, *nx; s; s = nx) {
        nx = s->next;
        (void)munmap(s, EP_SLAB);
    }
    for (size_t i = 0; i < ep->npages; i++)
        free(ep->pages[i]);
    free(ep->pages);
    free(ep->hash);
    free(ep->cq);
    free(ep->runq);
    free(ep);
    t->ep = NULL;
}
