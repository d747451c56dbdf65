/* Tests for log/out.c. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "log/out.h"

/* Append a line the way the worker does: reserve, write, commit. */
static int put(struct log_out *o, const char *s)
{
    size_t n = strlen(s);
    char *p = log_out_reserve(o, n);

    if (!p) {
        log_out_drop(o);
        return 0;
    }
    memcpy(p, s, n);
    log_out_commit(o, n);
    return 1;
}

/* Take the next chunk and check it is exactly want. */
static void take(struct log_out *o, size_t max, const char *want)
{
    const char *p = NULL;
    size_t n = log_out_peek(o, &p, max);

    cr_assert_eq(n, strlen(want), "got %zu: %.*s", n, (int)n, p ? p : "");
    cr_assert_arr_eq(p, want, n);
    log_out_consume(o, n);
}

Test(log_out, new_free)
{
    struct log_out *o = log_out_new(128);
    const char *p;

    cr_assert_not_null(o);
    cr_assert_eq(log_out_pending(o), 0);
    cr_assert_eq(log_out_dropped(o), 0);
    cr_assert_eq(log_out_peek(o, &p, 4096), 0);
    log_out_free(o);
    log_out_free(NULL);
}

Test(log_out, append_peek_consume)
{
    struct log_out *o = log_out_new(128);

    cr_assert(put(o, "one\n"));
    cr_assert(put(o, "two\n"));
    cr_assert_eq(log_out_pending(o), 8);
    take(o, 4096, "one\ntwo\n");
    cr_assert_eq(log_out_pending(o), 0);
    cr_assert(put(o, "three\n"));
    take(o, 4096, "three\n");
    log_out_free(o);
}

Test(log_out, partial_consume)
{
    struct log_out *o = log_out_new(128);
    const char *p;
    size_t n;

    put(o, "abcdef\n");
    put(o, "gh\n");
    /* A short write: the rest stays pending, in order. */
    n = log_out_peek(o, &p, 4096);
    cr_assert_eq(n, 10);
    log_out_consume(o, 3);
    cr_assert_eq(log_out_pending(o), 7);
    n = log_out_peek(o, &p, 4096);
    cr_assert_eq(n, 7);
    cr_assert_arr_eq(p, "def\ngh\n", 7);
    log_out_consume(o, 7);
    cr_assert_eq(log_out_pending(o), 0);
    log_out_free(o);
}

Test(log_out, chunks_are_whole_lines_up_to_max)
{
    struct log_out *o = log_out_new(256);

    put(o, "aaaa\n"); /* 5 */
    put(o, "bbbb\n"); /* 10 */
    put(o, "cccc\n"); /* 15 */
    take(o, 12, "aaaa\nbbbb\n");
    take(o, 12, "cccc\n");
    put(o, "dd\n");
    put(o, "ee\n");
    take(o, 6, "dd\nee\n"); /* exactly max */
    log_out_free(o);
}

Test(log_out, overlong_line_alone)
{
    struct log_out *o = log_out_new(256);

    put(o, "0123456789abcdef\n");
    put(o, "x\n");
    take(o, 8, "0123456789abcdef\n");
    take(o, 8, "x\n");
    put(o, "yy\n");
    put(o, "zz\n");
    take(o, 0, "yy\n"); /* max 0: one line at a time */
    take(o, 0, "zz\n");
    log_out_free(o);
}

Test(log_out, wraparound)
{
    struct log_out *o = log_out_new(100);
    char l[4][31];

    for (int i = 0; i < 4; i++) {
        memset(l[i], 'a' + i, 29);
        l[i][29] = '\n';
        l[i][30] = '\0';
    }
    cr_assert(put(o, l[0]));
    cr_assert(put(o, l[1]));
    cr_assert(put(o, l[2])); /* 90 of 100 */
    cr_assert_not(put(o, l[3]));
    cr_assert_eq(log_out_dropped(o), 1);
    take(o, 30, l[0]);
    take(o, 30, l[1]);
    /* 10 bytes left at the end, 60 at the front: this one goes to the front. */
    cr_assert(put(o, l[3]));
    cr_assert(put(o, l[0]));
    cr_assert_eq(log_out_pending(o), 90);
    /* Only 0 bytes left between the front region and the old data. */
    cr_assert_not(put(o, l[1]));
    /* Oldest first: the end part, then the front part. */
    take(o, 4096, l[2]);
    {
        char both[61];

        snprintf(both, sizeof(both), "%s%s", l[3], l[0]);
        take(o, 4096, both);
    }
    cr_assert_eq(log_out_pending(o), 0);
    cr_assert_eq(log_out_dropped(o), 2);
    log_out_free(o);
}

Test(log_out, full_buffer_drops_and_counts)
{
    struct log_out *o = log_out_new(64);
    int kept = 0;

    for (int i = 0; i < 100; i++)
        kept += put(o, "0123456789\n");
    cr_assert_eq(kept, 5);
    cr_assert_eq(log_out_pending(o), 55);
    cr_assert_eq(log_out_dropped(o), 95);
    /* Freed room is usable again. */
    take(o, 11, "0123456789\n");
    cr_assert(put(o, "0123456789\n"));
    cr_assert_eq(log_out_dropped(o), 95);
    log_out_free(o);
}

Test(log_out, reserve_larger_than_cap)
{
    struct log_out *o = log_out_new(64);

    cr_assert_null(log_out_reserve(o, 65));
    cr_assert_not_null(log_out_reserve(o, 64));
    log_out_commit(o, 0);
    cr_assert_eq(log_out_pending(o), 0);
    log_out_free(o);
}

Test(log_out, reserve_more_commit_less)
{
    struct log_out *o = log_out_new(64);
    char *p = log_out_reserve(o, 64);

    memcpy(p, "hi\n", 3);
    log_out_commit(o, 3);
    take(o, 4096, "hi\n");
    log_out_free(o);
}

Test(log_out, commit_beyond_reservation_is_dropped)
{
    struct log_out *o = log_out_new(64);
    char *p = log_out_reserve(o, 4);

    memcpy(p, "abc\n", 4);
    log_out_commit(o, 5);
    cr_assert_eq(log_out_pending(o), 0);
    cr_assert_eq(log_out_dropped(o), 1);
    /* Commit without a reservation. */
    log_out_commit(o, 1);
    cr_assert_eq(log_out_pending(o), 0);
    cr_assert_eq(log_out_dropped(o), 2);
    log_out_free(o);
}

Test(log_out, consume_cancels_reservation)
{
    struct log_out *o = log_out_new(64);
    const char *q;
    char *p;

    put(o, "a\n");
    p = log_out_reserve(o, 8);
    memcpy(p, "b\n", 2);
    log_out_consume(o, log_out_peek(o, &q, 4096));
    log_out_commit(o, 2);
    cr_assert_eq(log_out_pending(o), 0);
    cr_assert_eq(log_out_dropped(o), 1);
    log_out_free(o);
}

/*
 * Random traffic against a simple model: order is kept, every chunk is whole
 * lines within max (or one longer line), reservations stay inside the
 * cap bytes handed out first, and pending never exceeds cap.
 */
Test(log_out, random_against_model)
{
    enum { CAP = 1000, MAXLINE = 120, MODEL = 1 << 20 };
    struct log_out *o = log_out_new(CAP);
    char *model = malloc(MODEL);
    size_t mhead = 0, mtail = 0;
    char *base = log_out_reserve(o, 0);
    unsigned seed = 12345;
    uint64_t drops = 0;

    log_out_commit(o, 0);
    for (int it = 0; it < 200000; it++) {
        int op = rand_r(&seed) % 3;

        if (op < 2) {
            size_t n = 1 + (size_t)rand_r(&seed) % MAXLINE;
            size_t want = (size_t)rand_r(&seed) % 2 ? MAXLINE : n;
            char *p = log_out_reserve(o, want);

            if (!p) {
                log_out_drop(o);
                drops++;
                continue;
            }
            cr_assert(p >= base && p + want <= base + CAP);
            for (size_t i = 0; i + 1 < n; i++)
                p[i] = (char)('a' + (mtail + i) % 26);
            p[n - 1] = '\n';
            if (mtail + n > (size_t)MODEL) {
                memmove(model, model + mhead, mtail - mhead);
                mtail -= mhead;
                mhead = 0;
            }
            memcpy(model + mtail, p, n);
            mtail += n;
            log_out_commit(o, n);
        } else {
            size_t max = (size_t)rand_r(&seed) % 300;
            const char *p;
            size_t n = log_out_peek(o, &p, max);

            if (n == 0) {
                cr_assert_eq(mhead, mtail);
                continue;
            }
            cr_assert(p >= base && p + n <= base + CAP);
            cr_assert_eq(p[n - 1], '\n');
            if (n > max)
                cr_assert_eq(memchr(p, '\n', n), p + n - 1, "only one line beyond max");
            cr_assert_arr_eq(p, model + mhead, n);
            /* Sometimes a short write. */
            if (rand_r(&seed) % 4 == 0)
                n = 1 + (size_t)rand_r(&seed) % n;
            log_out_consume(o, n);
            mhead += n;
        }
        cr_assert_eq(log_out_pending(o), mtail - mhead);
        cr_assert_leq(log_out_pending(o), (size_t)CAP);
    }
    cr_assert_eq(log_out_dropped(o), drops);
    cr_assert_gt(drops, 0);
    free(model);
    log_out_free(o);
}

/*
 * The point of PIPE_BUF chunks: several workers, each with its own buffer,
 * writing to one pipe never interleave within a line.
 */
#define WRITERS 4
#define LINES 3000

struct writer {
    int fd;
    int id;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    struct log_out *o = log_out_new(64 * 1024);
    int seq = 0;

    while (seq < LINES || log_out_pending(o) > 0) {
        /* Fill a few lines, then flush a chunk. */
        for (int k = 0; k < 7 && seq < LINES; k++) {
            char *p = log_out_reserve(o, 1024);
            int len;

            if (!p)
                break;
            len = 1 + (seq * 7919 + w->id) % 900;
            /* "wID SEQ LEN xxxxx\n" */
            int h = snprintf(p, 64, "w%d %d %d ", w->id, seq, len);
            memset(p + h, 'a' + w->id, (size_t)len);
            p[h + len] = '\n';
            log_out_commit(o, (size_t)(h + len + 1));
            seq++;
        }
        const char *c;
        size_t n = log_out_peek(o, &c, PIPE_BUF);

        if (n > 0) {
            ssize_t r = write(w->fd, c, n);

            if (r > 0)
                log_out_consume(o, (size_t)r);
        }
    }
    log_out_free(o);
    return NULL;
}

Test(log_out, pipe_buf_chunks_never_interleave)
{
    struct writer w[WRITERS];
    pthread_t t[WRITERS];
    int fds[2];
    int next[WRITERS] = {0};
    char *all = malloc(32 << 20);
    size_t len = 0, start = 0;
    ssize_t r;

    cr_assert_eq(pipe(fds), 0);
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (struct writer){fds[1], i};
        cr_assert_eq(pthread_create(&t[i], NULL, writer_main, &w[i]), 0);
    }
    for (int done = 0; done < WRITERS;) {
        r = read(fds[0], all + len, 65536);
        cr_assert_gt(r, 0);
        len += (size_t)r;
        /* Check every complete line as it arrives. */
        for (char *nl; (nl = memchr(all + start, '\n', len - start)) != NULL;) {
            int id, seq, l, h;

            *nl = '\0'; /* sscanf() wants a string */
            cr_assert_eq(sscanf(all + start, "w%d %d %d %n", &id, &seq, &l, &h), 3);
            cr_assert(id >= 0 && id < WRITERS);
            cr_assert_eq(seq, next[id], "writer %d out of order", id);
            next[id]++;
            cr_assert_eq((size_t)(nl - (all + start)), (size_t)(h + l), "torn line");
            for (int k = 0; k < l; k++)
                cr_assert_eq(all[start + (size_t)h + (size_t)k], 'a' + id);
            start = (size_t)(nl - all) + 1;
            if (next[id] == LINES)
                done++;
        }
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(start, len);
    close(fds[0]);
    close(fds[1]);
    free(all);
}

/* ---- exact lines: log_out_append() (issue #27.2) -------------------------- */

/* A line of n bytes: tag repeated, then '\n'. */
static void mkline(char *l, size_t n, char tag)
{
    memset(l, tag, n - 1);
    l[n - 1] = '\n';
}

/*
 * The report of #27.2: at the smallest buffer_bytes (65536), lines of about
 * 300 bytes. The buffer holds all the lines that fit in 65536 bytes, to the
 * line, however big the largest possible line (here 70,000 bytes) is.
 */
Test(log_out, min_buffer_holds_its_bytes)
{
    struct log_out *o = log_out_new_lines(65536, 70000);
    char l[300];
    size_t kept = 0;

    cr_assert_not_null(o);
    mkline(l, sizeof(l), 'a');
    for (int i = 0; i < 300; i++)
        kept += log_out_append(o, l, sizeof(l)) == 0;
    cr_assert_eq(kept, 65536 / 300); /* 218 */
    cr_assert_eq(log_out_pending(o), kept * 300);
    cr_assert_eq(log_out_dropped(o), 300 - kept);
    cr_assert_eq(log_out_append(o, l, 136), 0, "the last 136 bytes are usable too");
    cr_assert_eq(log_out_pending(o), 65536);
    cr_assert_eq(log_out_append(o, l, 1), -ENOSPC);
    log_out_free(o);
}

/*
 * Requests one after another with a writer that takes 32 KiB runs, as the
 * proxy does: none is dropped (before, 48 of 50 were at this size).
 */
Test(log_out, min_buffer_sequential_requests_none_dropped)
{
    struct log_out *o = log_out_new_lines(65536, 70000);
    char l[300];

    mkline(l, sizeof(l), 'r');
    for (int i = 0; i < 5000; i++) {
        const char *p;
        size_t n;

        cr_assert_eq(log_out_append(o, l, sizeof(l)), 0, "request %d", i);
        /* a write in flight for a while, then done */
        n = log_out_peek(o, &p, 32 * 1024);
        if (i % 7 == 6)
            log_out_consume(o, n);
    }
    cr_assert_eq(log_out_dropped(o), 0);
    log_out_free(o);
}

/* An empty buffer takes any line up to line_max, even one longer than cap. */
Test(log_out, empty_buffer_takes_longest_line)
{
    struct log_out *o = log_out_new_lines(100, 300);
    char l[251];

    mkline(l, 250, 'x');
    l[250] = '\0';
    cr_assert_eq(log_out_append(o, l, 250), 0);
    cr_assert_eq(log_out_append(o, "\n", 1), -ENOSPC, "more than cap pending: full");
    take(o, 4096, l);
    cr_assert_eq(log_out_append(o, "\n", 1), 0);
    log_out_free(o);
}

/*
 * Random appends of lines up to line_max, some as long as that, and writes
 * of random size, some short: a line is dropped exactly when the lines
 * pending and it would be more than cap bytes (and something is pending),
 * whatever the wrap-around; order and bytes are kept; and the buffer's
 * memory is never written outside cap + line_max bytes (ASan builds).
 */
static void random_append(size_t cap, size_t line_max, unsigned seed)
{
    enum { MODEL = 1 << 22 };
    struct log_out *o = log_out_new_lines(cap, line_max);
    char *model = malloc(MODEL), *l = malloc(line_max);
    size_t mhead = 0, mtail = 0;
    uint64_t drops = 0, taken = 0;

    cr_assert_not_null(o);
    for (int it = 0; it < 200000; it++) {
        /* stdout stalls for 1024 turns out of every 2048 */
        int op = rand_r(&seed) % 5;

        if (op >= 3 && (it >> 10) % 2)
            op = 0;

        if (op < 3) {
            size_t pending = mtail - mhead;
            size_t n = rand_r(&seed) % 16 == 0 ? line_max - (size_t)rand_r(&seed) % 4
                                               : 1 + (size_t)rand_r(&seed) % 400;
            int want_ok, r;

            if (n > line_max)
                n = line_max;
            want_ok = pending == 0 || pending + n <= cap;
            for (size_t i = 0; i + 1 < n; i++)
                l[i] = (char)('a' + (mtail + i) % 26);
            l[n - 1] = '\n';
            r = log_out_append(o, l, n);
            cr_assert_eq(r, want_ok ? 0 : -ENOSPC, "it %d: pending %zu + %zu, cap %zu", it, pending,
                         n, cap);
            if (r < 0) {
                drops++;
                continue;
            }
            taken++;
            if (mtail + n > (size_t)MODEL) {
                memmove(model, model + mhead, mtail - mhead);
                mtail -= mhead;
                mhead = 0;
            }
            memcpy(model + mtail, l, n);
            mtail += n;
        } else {
            size_t max = (size_t)rand_r(&seed) % (op == 3 ? 600 : 40000);
            const char *p;
            size_t n = log_out_peek(o, &p, max);

            if (n == 0) {
                cr_assert_eq(mhead, mtail);
                continue;
            }
            cr_assert_eq(p[n - 1], '\n');
            cr_assert_arr_eq(p, model + mhead, n);
            if (rand_r(&seed) % 4 == 0)
                n = 1 + (size_t)rand_r(&seed) % n;
            log_out_consume(o, n);
            mhead += n;
        }
        cr_assert_eq(log_out_pending(o), mtail - mhead);
    }
    cr_assert_eq(log_out_dropped(o), drops);
    cr_assert_gt(drops, 0);
    cr_assert_gt(taken, 1000);
    free(l);
    free(model);
    log_out_free(o);
}

Test(log_out, append_exact_at_small_capacities)
{
    random_append(65536, 70000, 1);
    random_append(65536, 1000, 2);
    random_append(4096, 4096, 3);
    random_append(1000, 3000, 4);
}

Test(log_out, append_cancels_reservation)
{
    struct log_out *o = log_out_new_lines(64, 64);
    char *p = log_out_reserve(o, 8);

    cr_assert_not_null(p);
    cr_assert_eq(log_out_append(o, "a\n", 2), 0);
    log_out_commit(o, 2);
    cr_assert_eq(log_out_dropped(o), 1);
    take(o, 4096, "a\n");
    cr_assert_eq(log_out_append(o, "", 0), 0, "nothing to append");
    cr_assert_eq(log_out_pending(o), 0);
    log_out_free(o);
}

/* reserve() and commit() keep to cap too. */
Test(log_out, commit_keeps_to_cap)
{
    struct log_out *o = log_out_new_lines(10, 100);
    char *p = log_out_reserve(o, 100);

    cr_assert_not_null(p);
    memcpy(p, "0123456\n", 8);
    log_out_commit(o, 8);
    p = log_out_reserve(o, 100);
    cr_assert_not_null(p);
    memcpy(p, "abc\n", 4);
    log_out_commit(o, 4); /* 12 > 10 */
    cr_assert_eq(log_out_dropped(o), 1);
    cr_assert_eq(log_out_pending(o), 8);
    p = log_out_reserve(o, 100);
    memcpy(p, "a\n", 2);
    log_out_commit(o, 2); /* 10 */
    cr_assert_eq(log_out_pending(o), 10);
    cr_assert_eq(log_out_dropped(o), 1);
    cr_assert_null(log_out_reserve(o, 1), "full");
    take(o, 4096, "0123456\na\n");
    log_out_free(o);
}

Test(log_out, new_lines_overflow)
{
    cr_assert_null(log_out_new_lines(SIZE_MAX, 1));
    cr_assert_null(log_out_new_lines(1, SIZE_MAX));
    cr_assert_null(log_out_new_lines(SIZE_MAX / 2 + 1, SIZE_MAX / 2 + 1));
}
