/*
 * Per-worker stdout buffer. Lines are appended whole; the owner of the event
 * loop takes chunks of whole lines and writes them with its own ring, so
 * stdout never blocks the loop. Memory is bounded: a line that does not fit
 * is dropped and counted.
 *
 * The worker formats a line into its own scratch buffer of
 * log_fmt_max_line() bytes and appends the exact line with
 * log_out_append(), to a buffer made by log_out_new_lines(cap, that size):
 * then cap is the number of bytes of lines it holds, to the byte.
 */
#ifndef RINGPROXY_LOG_OUT_H
#define RINGPROXY_LOG_OUT_H

#include <stddef.h>
#include <stdint.h>

struct log_out;

/*
 * A buffer holding up to cap bytes of pending lines, each at most line_max
 * bytes long; NULL on OOM. It takes cap + line_max bytes of memory, so that
 * the room lost where its lines wrap around never counts against cap: a line
 * is dropped only when the lines pending and it would be more than cap
 * bytes. An empty buffer takes any line of up to line_max bytes, even one
 * longer than cap.
 */
struct log_out *log_out_new_lines(size_t cap, size_t line_max);

/* NULL-safe. */
void log_out_free(struct log_out *o);

/*
 * Copy the line (n bytes, ending with '\n') in: 0, or -ENOSPC when the
 * buffer cannot take it, and the line is then counted as dropped.
 */
int log_out_append(struct log_out *o, const char *line, size_t n);

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

/*
 * Lines dropped since the buffer was made: by log_out_append() and
 * log_out_drop(). The one count of dropped lines.
 */
uint64_t log_out_dropped(const struct log_out *o);

#endif
