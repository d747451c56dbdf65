/*
 * Per-worker stdout buffer: a bip buffer (two regions in one array) rather
 * than a plain byte ring, because the writer hands whole lines to one
 * write() of at most PIPE_BUF bytes: a line split at the wrap point would
 * take two writes, and lines from other workers could land between them.
 * So every line is stored in one piece.
 *
 * Pending data is region A = [a_start, a_end), followed in time by region
 * B = [0, b_end) once writing has wrapped to the front. New lines go after B
 * when B is in use, else after A, else (no room at the end) to the front,
 * which starts B. When A drains, B becomes A. All operations are O(1) except
 * log_out_peek(), which looks for the last '\n' within max bytes, so each
 * byte is scanned about once: O(1) amortised. Only log_out_new_lines()
 * allocates.
 *
 * New lines never land in [a_start, a_end), so a chunk handed to an
 * asynchronous write stays intact until log_out_consume() is called for it.
 *
 * Lines are expected to end with '\n' (log_fmt_line() guarantees it); chunks
 * are cut only after a '\n'. Single-threaded: one per worker, no locks.
 *
 * How much it holds. A line that does not fit at the end of the array goes
 * to the front, and the end's free bytes (w) stay unused until A drains, so
 * an array of cap bytes could refuse a line with up to w + n bytes free. The
 * array is therefore size = cap + line_max bytes, and what decides whether a
 * line of n <= line_max bytes is taken is the count alone: pending + n <=
 * cap (or nothing pending). Then there is always room in one piece:
 * - nothing pending: the array starts over at 0, and n <= size;
 * - B in use: B began with a line of m <= line_max bytes that did not fit
 *   after A, so w < m <= line_max and A has not grown since; the room
 *   between B and A is a_start - b_end = size - w - pending >
 *   cap - pending >= n;
 * - B not in use and no room after A (a_end > size - n): then
 *   a_start = a_end - pending > size - n - pending >= size - cap =
 *   line_max >= n, so the line fits at the front.
 * The checks on room in one piece stay, for lines longer than line_max.
 */
#include "log/out.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct log_out {
    size_t cap;  /* most bytes of lines pending */
    size_t size; /* of buf: cap + line_max */
    size_t a_start;
    size_t a_end;
    size_t b_end; /* 0 when B is not in use */
    uint64_t dropped;
    char buf[];
};

struct log_out *log_out_new_lines(size_t cap, size_t line_max)
{
    struct log_out *o;

    if (line_max > SIZE_MAX - sizeof(*o) || cap > SIZE_MAX - sizeof(*o) - line_max)
        goto fail;
    o = calloc(1, sizeof(*o) + cap + line_max);
    if (!o)
        goto fail;
    o->cap = cap;
    o->size = cap + line_max;
    return o;

fail:
    return NULL;
}

void log_out_free(struct log_out *o)
{
    free(o);
}

/*
 * Where n bytes in one piece can go: their offset, with *ret_in_b set when
 * they start or extend B; SIZE_MAX when there is no such room.
 */
static size_t log_out_place(struct log_out *o, size_t n, int *ret_in_b)
{
    /* Empty: start over at offset 0 so the whole array is one free run. */
    if (o->a_start == o->a_end && o->b_end == 0)
        o->a_start = o->a_end = 0;

    *ret_in_b = 0;
    if (o->b_end > 0) {
        if (o->a_start - o->b_end < n)
            return SIZE_MAX;
        *ret_in_b = 1;
        return o->b_end;
    }
    if (o->size - o->a_end >= n)
        return o->a_end;
    if (o->a_start >= n) {
        *ret_in_b = 1;
        return 0;
    }
    return SIZE_MAX;
}

/* Whether n more bytes of lines may be pending: at most cap, or one line. */
static int log_out_may_take(const struct log_out *o, size_t n)
{
    size_t pending = log_out_pending(o);

    return pending == 0 || (pending <= o->cap && n <= o->cap - pending);
}

int log_out_append(struct log_out *o, const char *line, size_t n)
{
    size_t at;
    int in_b;

    if (n == 0)
        return 0;
    if (!log_out_may_take(o, n) || (at = log_out_place(o, n, &in_b)) == SIZE_MAX) {
        o->dropped++;
        return -ENOSPC;
    }
    memcpy(o->buf + at, line, n);
    if (in_b)
        o->b_end = at + n;
    else
        o->a_end = at + n;
    return 0;
}

void log_out_drop(struct log_out *o)
{
    o->dropped++;
}

size_t log_out_peek(struct log_out *o, const char **ret_p, size_t max)
{
    const char *start = o->buf + o->a_start;
    size_t len = o->a_end - o->a_start;
    const char *nl;

    *ret_p = start;
    if (len <= max)
        return len;
    /* The longest run of whole lines within max... */
    if (max > 0) {
        nl = memrchr(start, '\n', max);
        if (nl)
            return (size_t)(nl - start) + 1;
    }
    /* ...or, when the first line alone is longer, that line. */
    nl = memchr(start + max, '\n', len - max);
    return nl ? (size_t)(nl - start) + 1 : len;
}

void log_out_consume(struct log_out *o, size_t n)
{
    while (n > 0 && (o->a_end > o->a_start || o->b_end > 0)) {
        size_t alen = o->a_end - o->a_start;
        size_t k = n < alen ? n : alen;

        o->a_start += k;
        n -= k;
        if (o->a_start == o->a_end) {
            /* A drained: B, if any, is now the oldest data. */
            o->a_start = 0;
            o->a_end = o->b_end;
            o->b_end = 0;
        }
    }
}

size_t log_out_pending(const struct log_out *o)
{
    return o->a_end - o->a_start + o->b_end;
}

uint64_t log_out_dropped(const struct log_out *o)
{
    return o->dropped;
}

/* ---- the writer ------------------------------------------------------- */

/* May w start a write of n bytes on the shared pipe? 0, or -EAGAIN: wait for another writer. */
static int pipe_begin(struct log_writer *w, size_t n)
{
    struct log_pipe_lock *l = w->lock;
    int holder = atomic_load(&l->long_holder);

    if (holder == w->id)
        return atomic_load(&l->inflight) ? -EAGAIN : 0;
    if (holder)
        return -EAGAIN;
    if (n <= PIPE_BUF) {
        atomic_fetch_add(&l->inflight, 1);
        if (atomic_load(&l->long_holder)) {
            atomic_fetch_sub(&l->inflight, 1);
            return -EAGAIN;
        }
        w->short_inflight = 1;
        return 0;
    }
    if (!atomic_compare_exchange_strong(&l->long_holder, &holder, w->id))
        return -EAGAIN;
    w->long_left = n;
    return atomic_load(&l->inflight) ? -EAGAIN : 0;
}

static void pipe_end(struct log_writer *w, long res)
{
    if (w->short_inflight) {
        w->short_inflight = 0;
        atomic_fetch_sub(&w->lock->inflight, 1);
    }
    if (w->long_left) {
        /* the line is out, or (stdout gone) dropped; a retry keeps the lock */
        if (res > 0)
            w->long_left = (size_t)res < w->long_left ? w->long_left - (size_t)res : 0;
        else if (res != -EAGAIN && res != -EINTR)
            w->long_left = 0;
        if (!w->long_left)
            atomic_store(&w->lock->long_holder, 0);
    }
}

size_t log_writer_next(struct log_writer *w, uint64_t now_ms, int urgent, const char **p)
{
    size_t chunk = w->lock ? PIPE_BUF : LOG_OUT_RUN_MAX, n;

    w->deferred = 0;
    if (w->writing || !log_out_pending(w->o))
        return 0;
    if (!w->since_ms)
        w->since_ms = now_ms;
    n = log_out_peek(w->o, p, chunk);
    if (!n ||
        !(n > chunk - 1024 || now_ms >= w->since_ms + LOG_OUT_DELAY_MS || urgent || w->long_left))
        return 0;
    if (w->lock && pipe_begin(w, n) < 0) {
        w->deferred = 1;
        return 0;
    }
    w->since_ms = 0;
    w->writing = n;
    return n;
}

void log_writer_done(struct log_writer *w, long res)
{
    if (w->lock)
        pipe_end(w, res);
    if (res > 0) {
        log_out_consume(w->o, (size_t)res);
    } else if (res != -EAGAIN && res != -EINTR) {
        /* stdout is gone: the lines of this write can't go anywhere; count each */
        const char *p;
        size_t n = log_out_peek(w->o, &p, w->writing);

        for (size_t i = 0; i < n; i++)
            if (p[i] == '\n')
                log_out_drop(w->o);
        log_out_consume(w->o, w->writing);
    }
    w->writing = 0;
}

uint64_t log_writer_due(const struct log_writer *w, uint64_t now_ms)
{
    if (w->deferred)
        return now_ms + 1;
    return w->since_ms ? w->since_ms + LOG_OUT_DELAY_MS : UINT64_MAX;
}
