/*
 * Per-worker stdout buffer. Lines are appended whole; the owner of the event
 * loop takes chunks of whole lines and writes them with its own ring, so
 * stdout never blocks the loop. Memory is bounded: a line that does not fit
 * is dropped and counted.
 */
#ifndef RINGPROXY_LOG_OUT_H
#define RINGPROXY_LOG_OUT_H

#include <stddef.h>
#include <stdint.h>

struct log_out;

/* A buffer holding at most cap bytes of pending lines; NULL on OOM. */
struct log_out *log_out_new(size_t cap);

/* NULL-safe. */
void log_out_free(struct log_out *o);

/*
 * Room to format one line of at most max bytes: returns a pointer to write
 * to, or NULL when that much room is not free (the caller then drops the line
 * and calls log_out_drop()).
 */
char *log_out_reserve(struct log_out *o, size_t max);

/* Make the first n bytes written after log_out_reserve() pending. */
void log_out_commit(struct log_out *o, size_t n);

/* Count one dropped line. */
void log_out_drop(struct log_out *o);

/*
 * The next run of pending whole lines, contiguous in memory, at most max
 * bytes long unless a single line is longer (then that one line). Returns
 * its length (0 when nothing is pending) and its start in *ret_p. The bytes
 * stay valid until log_out_consume().
 */
size_t log_out_peek(struct log_out *o, const char **ret_p, size_t max);

/* n bytes from the start were written. */
void log_out_consume(struct log_out *o, size_t n);

size_t log_out_pending(const struct log_out *o);

/* Lines dropped since the buffer was made. */
uint64_t log_out_dropped(const struct log_out *o);

#endif
