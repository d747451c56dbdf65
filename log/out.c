/*
 * Per-worker stdout buffer: a bip buffer (two regions in one array) rather
 * than a plain byte ring, because both sides need contiguous memory: the
 * formatter writes a whole line through one pointer, and the writer hands
 * whole lines to one write() without an iovec split at the wrap point.
 *
 * Pending data is region A = [a_start, a_end), followed in time by region
 * B = [0, b_end) once writing has wrapped to the front. New lines go after B
 * when B is in use, else after A, else (no room at the end) to the front,
 * which starts B. When A drains, B becomes A. All operations are O(1) except
 * log_out_peek(), which looks for the last '\n' within max bytes, so each
 * byte is scanned about once: O(1) amortised. Only log_out_new() allocates.
 *
 * New lines never land in [a_start, a_end), so a chunk handed to an
 * asynchronous write stays intact until log_out_consume() is called for it.
 *
 * Lines are expected to end with '\n' (log_fmt_line() guarantees it); chunks
 * are cut only after a '\n'. A log_out_consume() between reserve() and
 * commit() cancels the reservation (the line counts as dropped).
 * Single-threaded: one per worker, no locks.
 */
#include "log/out.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct log_out {
    size_t cap;
    size_t a_start;
    size_t a_end;
    size_t b_end; /* 0 when B is not in use */
    size_t res;   /* offset of the last reservation */
    size_t res_max;
    int res_in_b; /* the last reservation was at the front, starting B */
    uint64_t dropped;
    char buf[];
};

struct log_out *log_out_new(size_t cap)
{
    struct log_out *o;

    if (cap > SIZE_MAX - sizeof(*o))
        goto fail;
    o = calloc(1, sizeof(*o) + cap);
    if (!o)
        goto fail;
    o->cap = cap;
    return o;

fail:
    return NULL;
}

void log_out_free(struct log_out *o)
{
    free(o);
}

char *log_out_reserve(struct log_out *o, size_t max)
{
    o->res_in_b = 0;
    o->res_max = 0;
    /* Empty: start over at offset 0 so the whole array is one free run. */
    if (o->a_start == o->a_end && o->b_end == 0)
        o->a_start = o->a_end = 0;

    if (o->b_end > 0) {
        if (o->a_start - o->b_end < max)
            return NULL;
        o->res = o->b_end;
        o->res_in_b = 1;
    } else if (o->cap - o->a_end >= max) {
        o->res = o->a_end;
    } else if (o->a_start >= max) {
        o->res = 0;
        o->res_in_b = 1;
    } else {
        return NULL;
    }
    o->res_max = max;
    return o->buf + o->res;
}

void log_out_commit(struct log_out *o, size_t n)
{
    /*
     * More than was reserved (or a reservation cancelled by a consume) would
     * commit memory that may be A's or a cut line: drop it instead.
     */
    if (n > o->res_max)
        o->dropped++;
    else if (n > 0 && o->res_in_b)
        o->b_end = o->res + n;
    else if (n > 0)
        o->a_end = o->res + n;
    o->res_max = 0;
    o->res_in_b = 0;
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
    /*
     * reserve() and commit() are meant to be back to back; should a consume
     * come between them, the reservation is cancelled (commit counts the
     * line as dropped) rather than committing over moved regions.
     */
    o->res_max = 0;
    o->res_in_b = 0;
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
