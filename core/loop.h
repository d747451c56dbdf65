/*
 * One worker: one io_uring, its provided-buffer ring and memory pools, its
 * clock. The loop submits once per turn and drains completions in a batch;
 * what to do with each completion and each turn belongs to the caller.
 */
#ifndef RINGPROXY_CORE_LOOP_H
#define RINGPROXY_CORE_LOOP_H

#include <stdint.h>
#include <time.h>

#include <liburing.h>

#include "core/buf.h"

/*
 * Every kind of operation a worker's ring carries, the proxy's and the admin
 * listener's: one switch (http/proxy.c, w_cqe()) dispatches them all, and
 * -Wswitch names any kind it misses.
 */
enum core_op_kind {
    OPK_NONE = 0,
    OPK_ACCEPT,       /* a public listener's multishot accept */
    OPK_RECV,         /* a client's or upstream's multishot receive */
    OPK_SEND,         /* a client's or upstream's send */
    OPK_CONNECT,      /* an upstream connect */
    OPK_POLL,         /* waiting for room to send (POLLOUT) */
    OPK_LOGW,         /* the access log's write to stdout */
    OPK_WAKE,         /* the eventfd the main thread wakes workers with */
    OPK_ADMIN_ACCEPT, /* the admin listener */
    OPK_ADMIN_RECV,
    OPK_ADMIN_SEND,
    /* must stay last */
    OPK_COUNT
};

/* Embedded in whatever owns an operation; the SQE's user_data points here. */
struct core_op {
    uint8_t kind; /* enum core_op_kind */
};

/* user_data of operations whose completion nobody needs (cancels). */
#define CORE_UD_IGNORE 0

struct core_thread;
struct core_ep;

/*
 * How the workers do their I/O (docs/design.md, "Engines"): io_uring, or the
 * epoll engine (core/epoll.c), which performs the same operations with
 * non-blocking system calls and completes them through the same handlers.
 * Chosen once for the process, before the first core_thread_init().
 */
enum core_engine {
    CORE_ENGINE_IO_URING = 0,
    CORE_ENGINE_EPOLL,
};

void core_engine_set(enum core_engine e);
enum core_engine core_engine_get(void);
/*
 * Can this process use io_uring? Sets up a small ring, registers with it
 * and submits a NOP through it: 0, or -errno of the first call refused
 * (*ret_what names it).
 */
int core_io_uring_probe(const char **ret_what);

struct core_loop_ops {
    void (*cqe)(struct core_thread *t, struct core_op *op, const struct io_uring_cqe *cqe);
    /* Once per turn after completions: returns ms to wait at most, or < 0 to stop. */
    long (*turn)(struct core_thread *t);
};

struct core_thread {
    struct io_uring ring; /* CORE_ENGINE_IO_URING */
    struct core_ep *ep;   /* CORE_ENGINE_EPOLL */
    struct core_bufring bufs;
    struct core_pool pool;
    uint64_t now_ms; /* CLOCK_MONOTONIC, refreshed each turn */
    uint64_t now_us;
    struct timespec now_rt; /* CLOCK_REALTIME of this turn, once asked for */
    int now_rt_valid;
    int id;
    unsigned ring_flags; /* setup flags the kernel accepted */
    int engine;          /* enum core_engine */
    void *app;           /* the protocol's per-worker state */
};

extern _Thread_local struct core_thread *core_self;

struct core_thread_params {
    unsigned entries;
    uint32_t nbufs;
    uint32_t bufsz;
    size_t blksz;
};

/*
 * Set up t's ring (SINGLE_ISSUER | DEFER_TASKRUN where the kernel has them),
 * or its epoll engine (core_engine_get()), and buffers. Must run on the thread that will drive the
 * loop. Returns 0 or -errno; on failure *ret_what names the step that failed.
 */
int core_thread_init(struct core_thread *t, int id, const struct core_thread_params *p,
                     const char **ret_what);
void core_thread_exit(struct core_thread *t);

/*
 * An SQE, submitting first when the queue is full; never NULL. The caller
 * prepares it with liburing's io_uring_prep_* helpers, whichever the engine.
 */
struct io_uring_sqe *core_sqe(struct core_thread *t);
/* Room for n SQEs without a submission between them (an operation and its linked timeout). */
void core_sqe_room(struct core_thread *t, unsigned n);

void core_clock_update(struct core_thread *t);

/*
 * The wall-clock time of this turn, read at its first use: every request a
 * turn starts gets the same time, as now_us is the same for them.
 */
static inline struct timespec core_realtime(struct core_thread *t)
{
    if (!t->now_rt_valid) {
        (void)clock_gettime(CLOCK_REALTIME, &t->now_rt);
        t->now_rt_valid = 1;
    }
    return t->now_rt;
}

/* Run until ops->turn() returns < 0. Returns 0 or -errno of a ring failure. */
int core_loop_run(struct core_thread *t, const struct core_loop_ops *ops);

#endif
