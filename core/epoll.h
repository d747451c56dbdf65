/*
 * The epoll engine: the io_uring operations the workers use, performed with
 * non-blocking system calls when epoll says their descriptor is ready, and
 * completed as struct io_uring_cqe values through the same handlers
 * (core/loop.h). Internal to core/: loop.c calls it when the process runs
 * on CORE_ENGINE_EPOLL.
 */
#ifndef RINGPROXY_CORE_EPOLL_H
#define RINGPROXY_CORE_EPOLL_H

#include "core/loop.h"

int core_ep_init(struct core_thread *t);
void core_ep_exit(struct core_thread *t);
struct io_uring_sqe *core_ep_sqe(struct core_thread *t);
void core_ep_room(struct core_thread *t, unsigned n);
int core_ep_run(struct core_thread *t, const struct core_loop_ops *ops);

#endif
