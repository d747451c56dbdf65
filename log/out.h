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

#include <stdatomic.h>
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

/* ---- the writer: when and what a worker writes to stdout ---------------- */

/*
 * Several workers on one stdout pipe share this. A write of at most
 * PIPE_BUF bytes is atomic, so lines in such writes never interleave. A
 * longer line cannot be written atomically: its writer takes long_holder,
 * waits until no other write is in flight, and writes the line (in as many
 * writes as the pipe takes) while the others hold theirs back.
 */
struct log_pipe_lock {
    _Atomic int long_holder; /* writer id writing a line longer than PIPE_BUF, or 0 */
    _Atomic int inflight;    /* short writes in flight, all writers */
};

/*
 * One write per many lines, not per line: a pipe write wakes the reader,
 * which costs more than formatting the line. Lines wait at most
 * LOG_OUT_DELAY_MS, or until a full run is ready: at most PIPE_BUF bytes on a
 * shared pipe (atomic), LOG_OUT_RUN_MAX for a lone writer.
 */
#define LOG_OUT_DELAY_MS 4
/*
 * Longest write of a lone worker. Runs of 16 and 32 KiB were 6 points of
 * the 13 B floor ratio cheaper than 64 KiB in two sets each, and 4 KiB runs
 * cost more than they save in reader wake-ups (docs/performance.md, "Where
 * the access log's cost lies").
 */
#define LOG_OUT_RUN_MAX (32 * 1024)

struct log_writer {
    struct log_out *o;
    struct log_pipe_lock *lock; /* NULL: stdout is not a pipe shared with other writers */
    int id;                     /* non-zero, unique among the writers sharing lock */
    size_t writing;             /* bytes of the write in flight, 0 if none */
    size_t long_left;           /* bytes of a long line not yet written, while holding the lock */
    int short_inflight;         /* the write in flight counts in lock->inflight */
    int deferred;               /* another writer has the pipe: try again soon */
    uint64_t since_ms;          /* when the oldest unwritten line came, 0 if none */
};

/*
 * The write to start at now_ms: its length (0: none now) and start in *p.
 * It is then in flight until log_writer_done(). urgent (draining) writes
 * what is pending without waiting for company.
 */
size_t log_writer_next(struct log_writer *w, uint64_t now_ms, int urgent, const char **p);

/*
 * The write in flight completed: res bytes written, or -errno. Lines of a
 * write that failed for good (stdout gone) are counted as dropped.
 */
void log_writer_done(struct log_writer *w, long res);

/* When the writer wants to be asked again (log_writer_next()); UINT64_MAX: not before more lines.
 */
uint64_t log_writer_due(const struct log_writer *w, uint64_t now_ms);

#endif
