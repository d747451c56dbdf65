/*
 * The loopback admin listener (C2): GET /healthz and GET /metrics
 * (Prometheus text format), served by worker 0's ring. Small, one request
 * per connection, never on the proxy's request path.
 */
#ifndef RINGPROXY_HTTP_ADMIN_H
#define RINGPROXY_HTTP_ADMIN_H

#include <stdint.h>

#include <liburing.h>

#include "core/loop.h"

struct http_shared;
struct http_admin;

/* Start accepting on fd (owned by the caller). NULL on OOM. */
struct http_admin *http_admin_new(struct core_thread *t, struct http_shared *sh, int fd);
/* NULL-safe; closes the admin's connections. */
void http_admin_free(struct http_admin *a);

/* Once per loop turn: re-arms a paused accept; the time it wants the loop back, or UINT64_MAX. */
uint64_t http_admin_turn(struct http_admin *a);

/* The completion of one of a's operations (kinds OPK_ADMIN_*). */
void http_admin_cqe(struct http_admin *a, struct core_op *op, const struct io_uring_cqe *cqe);

/* Render the metrics text of every worker into buf; returns its length. */
size_t http_admin_metrics(const struct http_shared *sh, char *buf, size_t cap);

#endif
