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

/* The longest line the tests below append, unless they say otherwise. */
enum { LMAX = 64 };

/* Append a line the way the worker does: the exact line, copied in. */
static int put(struct log_out *o, const char *s)
{
    return log_out_append(o, s, strlen(s)) == 0;
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

/* A line of n bytes: tag repeated, then '\n'. */
static void mkline(char *l, size_t n, char tag)
{
    memset(l, tag, n - 1);
    l[n - 1] = '\n';
}

Test(log_out, new_free)
{
    struct log_out *o = log_out_new_lines(128, LMAX);
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
    struct log_out *o = log_out_new_lines(128, LMAX);

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
    struct log_out *o = log_out_new_lines(128, LMAX);
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
    struct log_out *o = log_out_new_lines(256, LMAX);

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
    struct log_out *o = log_out_new_lines(256, LMAX);

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

/*
 * Lines that wrap around: the oldest (at the end of the array) come out
 * first, then those at the front, and the room is counted to cap exactly.
 */
Test(log_out, wraparound)
{
    struct log_out *o = log_out_new_lines(100, 30);
    char l[4][31], both[61];
    const char *end, *front;
    size_t n;

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
    /* 40 bytes left at the end of the 130: this one goes there... */
    cr_assert(put(o, l[3]));
    /* ...and this one, with 10 left at the end, to the front. */
    cr_assert(put(o, l[0]));
    cr_assert(put(o, "012345678\n"), "after it, up to cap");
    cr_assert_eq(log_out_pending(o), 100);
    cr_assert_not(put(o, "x\n"), "more than cap");
    cr_assert_eq(log_out_dropped(o), 2);
    /* Oldest first: the end part, then the front part. */
    snprintf(both, sizeof(both), "%s%s", l[2], l[3]);
    n = log_out_peek(o, &end, 4096);
    cr_assert_eq(n, 60);
    cr_assert_arr_eq(end, both, 60);
    log_out_consume(o, n);
    snprintf(both, sizeof(both), "%s%s", l[0], "012345678\n");
    n = log_out_peek(o, &front, 4096);
    cr_assert_eq(n, 40);
    cr_assert_arr_eq(front, both, 40);
    cr_assert_lt(front, end, "wrapped to the front");
    log_out_consume(o, n);
    cr_assert_eq(log_out_pending(o), 0);
    log_out_free(o);
}

/*
 * A line longer than line_max (0 here) goes only where it fits in one
 * piece: never over the pending lines at the end, whatever cap allows.
 */
Test(log_out, overlong_lines_need_room_in_one_piece)
{
    struct log_out *o = log_out_new_lines(100, 0);
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

    /* Within cap by count, but not in one piece between B and A. */
    cr_assert(put(o, l[0]));
    cr_assert(put(o, l[1]));
    cr_assert(put(o, l[2]));
    take(o, 30, l[0]);
    cr_assert(put(o, "0123456789abcdefghi\n")); /* 20, to the front */
    cr_assert_not(put(o, "0123456789abcd\n"), "15: 95 <= cap, but 10 free in one piece");
    cr_assert_eq(log_out_dropped(o), 3);
    cr_assert(put(o, "012345678\n")); /* 10: exactly the room left */
    cr_assert_eq(log_out_pending(o), 90);
    {
        char both[61];

        snprintf(both, sizeof(both), "%s%s", l[1], l[2]);
        take(o, 4096, both);
    }
    take(o, 4096, "0123456789abcdefghi\n012345678\n");
    cr_assert_eq(log_out_pending(o), 0);
    cr_assert_eq(log_out_dropped(o), 3);
    log_out_free(o);
}

Test(log_out, full_buffer_drops_and_counts)
{
    struct log_out *o = log_out_new_lines(64, LMAX);
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

/*
 * A line longer than the free room is dropped and counted, and nothing of
 * it is kept; one longer than the whole array is dropped even when empty.
 */
Test(log_out, line_beyond_free_room_is_dropped)
{
    struct log_out *o = log_out_new_lines(64, 64);
    char big[129], a[31], b[36], c[35];

    mkline(big, sizeof(big), 'z');
    mkline(a, 30, 'a');
    a[30] = '\0';
    mkline(b, 35, 'b');
    mkline(c, 34, 'c');
    c[34] = '\0';
    cr_assert_eq(log_out_append(o, big, 129), -ENOSPC, "more than cap + line_max");
    cr_assert_eq(log_out_pending(o), 0);
    cr_assert_eq(log_out_dropped(o), 1);
    cr_assert_eq(log_out_append(o, a, 30), 0);
    cr_assert_eq(log_out_append(o, b, 35), -ENOSPC, "65 > 64");
    cr_assert_eq(log_out_pending(o), 30);
    cr_assert_eq(log_out_dropped(o), 2);
    cr_assert_eq(log_out_append(o, c, 34), 0, "64: exactly cap");
    cr_assert_eq(log_out_append(o, "\n", 1), -ENOSPC, "full");
    cr_assert_eq(log_out_dropped(o), 3);
    take(o, 30, a);
    take(o, 4096, c);
    cr_assert_eq(log_out_pending(o), 0);
    cr_assert_eq(log_out_append(o, big + 65, 64), 0, "an empty buffer takes line_max");
    cr_assert_eq(log_out_dropped(o), 3);
    log_out_free(o);
}

/* log_out_drop() counts with the lines log_out_append() drops. */
Test(log_out, drop_counts_with_append)
{
    struct log_out *o = log_out_new_lines(4, LMAX);

    log_out_drop(o);
    cr_assert_eq(log_out_dropped(o), 1);
    cr_assert(put(o, "abc\n"));
    cr_assert_not(put(o, "d\n"));
    log_out_drop(o);
    cr_assert_eq(log_out_dropped(o), 3);
    cr_assert_eq(log_out_pending(o), 4);
    log_out_free(o);
}

/*
 * Random traffic against a simple byte-queue model: order and bytes are
 * kept, a line is dropped exactly when the lines pending and it would be
 * more than cap bytes, every chunk is whole lines within max (or one longer
 * line) and lies within the buffer's cap + line_max bytes, and pending
 * never exceeds cap.
 */
Test(log_out, random_against_model)
{
    enum { CAP = 1000, MAXLINE = 120, MODEL = 1 << 20 };
    struct log_out *o = log_out_new_lines(CAP, MAXLINE);
    char *model = malloc(MODEL);
    char l[MAXLINE];
    size_t mhead = 0, mtail = 0;
    const char *base;
    unsigned seed = 12345;
    uint64_t drops = 0;

    /* An empty buffer starts over at the front of its array. */
    cr_assert_eq(log_out_append(o, "\n", 1), 0);
    cr_assert_eq(log_out_peek(o, &base, 4096), 1);
    log_out_consume(o, 1);
    for (int it = 0; it < 200000; it++) {
        int op = rand_r(&seed) % 3;

        if (op < 2) {
            size_t n = 1 + (size_t)rand_r(&seed) % MAXLINE;
            size_t pending = mtail - mhead;
            int r;

            for (size_t i = 0; i + 1 < n; i++)
                l[i] = (char)('a' + (mtail + i) % 26);
            l[n - 1] = '\n';
            r = log_out_append(o, l, n);
            if (pending + n > CAP) {
                cr_assert_eq(r, -ENOSPC, "it %d: pending %zu + %zu", it, pending, n);
                drops++;
                continue;
            }
            cr_assert_eq(r, 0, "it %d: pending %zu + %zu", it, pending, n);
            if (mtail + n > (size_t)MODEL) {
                memmove(model, model + mhead, mtail - mhead);
                mtail -= mhead;
                mhead = 0;
            }
            memcpy(model + mtail, l, n);
            mtail += n;
        } else {
            size_t max = (size_t)rand_r(&seed) % 300;
            const char *p;
            size_t n = log_out_peek(o, &p, max);

            if (n == 0) {
                cr_assert_eq(mhead, mtail);
                continue;
            }
            cr_assert(p >= base && p + n <= base + CAP + MAXLINE);
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
    struct log_out *o = log_out_new_lines(64 * 1024, 1024);
    char p[1024]; /* the worker's scratch line */
    int seq = 0;

    while (seq < LINES || log_out_pending(o) > 0) {
        /* Fill a few lines, then flush a chunk. */
        for (int k = 0; k < 7 && seq < LINES; k++) {
            int len = 1 + (seq * 7919 + w->id) % 900;
            /* "wID SEQ LEN xxxxx\n" */
            int h = snprintf(p, 64, "w%d %d %d ", w->id, seq, len);

            memset(p + h, 'a' + w->id, (size_t)len);
            p[h + len] = '\n';
            /* Full: flush, and try this line again (no line may be lost). */
            if (log_out_append(o, p, (size_t)(h + len + 1)) < 0)
                break;
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

/* Appending nothing keeps nothing and drops nothing. */
Test(log_out, append_empty_is_nothing)
{
    struct log_out *o = log_out_new_lines(64, 64);

    cr_assert_eq(log_out_append(o, "", 0), 0, "nothing to append");
    cr_assert_eq(log_out_pending(o), 0);
    cr_assert(put(o, "a\n"));
    cr_assert_eq(log_out_append(o, "", 0), 0);
    take(o, 4096, "a\n");
    cr_assert_eq(log_out_pending(o), 0);
    cr_assert_eq(log_out_dropped(o), 0);
    log_out_free(o);
}

/* Appends keep to cap, however much room the line_max bytes leave. */
Test(log_out, append_keeps_to_cap)
{
    struct log_out *o = log_out_new_lines(10, 100);

    cr_assert(put(o, "0123456\n"));
    cr_assert_not(put(o, "abc\n")); /* 12 > 10 */
    cr_assert_eq(log_out_dropped(o), 1);
    cr_assert_eq(log_out_pending(o), 8);
    cr_assert(put(o, "a\n")); /* 10 */
    cr_assert_eq(log_out_pending(o), 10);
    cr_assert_eq(log_out_dropped(o), 1);
    cr_assert_not(put(o, "\n"), "full");
    cr_assert_eq(log_out_dropped(o), 2);
    take(o, 4096, "0123456\na\n");
    log_out_free(o);
}

Test(log_out, new_lines_overflow)
{
    cr_assert_null(log_out_new_lines(SIZE_MAX, 1));
    cr_assert_null(log_out_new_lines(1, SIZE_MAX));
    cr_assert_null(log_out_new_lines(SIZE_MAX / 2 + 1, SIZE_MAX / 2 + 1));
}

/* ---- the writer ---------------------------------------------------------- */

/* Lines wait for company up to LOG_OUT_DELAY_MS; draining (urgent) writes at once. */
Test(log_writer, lines_wait_for_company_then_go_in_one_write)
{
    struct log_out *o = log_out_new_lines(4096, LMAX);
    struct log_writer w = {.o = o, .id = 1};
    const char *p;

    cr_assert_eq(log_writer_due(&w, 100), UINT64_MAX, "nothing pending");
    cr_assert(put(o, "a\n"));
    cr_assert_eq(log_writer_next(&w, 100, 0, &p), 0, "waits for company");
    cr_assert_eq(log_writer_due(&w, 100), 100 + LOG_OUT_DELAY_MS);
    cr_assert(put(o, "b\n"));
    cr_assert_eq(log_writer_next(&w, 100 + LOG_OUT_DELAY_MS - 1, 0, &p), 0);
    cr_assert_eq(log_writer_next(&w, 100 + LOG_OUT_DELAY_MS, 0, &p), 4, "both lines, one write");
    cr_assert_arr_eq(p, "a\nb\n", 4);
    cr_assert_eq(log_writer_next(&w, 200, 1, &p), 0, "one write in flight at a time");
    log_writer_done(&w, 4);
    cr_assert_eq(log_out_pending(o), 0);
    cr_assert(put(o, "c\n"));
    cr_assert_eq(log_writer_next(&w, 200, 1, &p), 2, "urgent: no wait");
    log_writer_done(&w, 2);
    log_out_free(o);
}

/* A full run goes at once: LOG_OUT_RUN_MAX bytes alone, PIPE_BUF on a shared pipe. */
Test(log_writer, full_runs_go_at_once_and_are_capped)
{
    struct log_pipe_lock lock = {0};
    struct log_out *o = log_out_new_lines(4 * LOG_OUT_RUN_MAX, LMAX);
    struct log_writer lone = {.o = o, .id = 1}, shared = {.o = o, .lock = &lock, .id = 1};
    char l[LMAX];
    const char *p;
    size_t n;

    mkline(l, sizeof(l), 'x');
    for (int i = 0; i < 2 * LOG_OUT_RUN_MAX / LMAX; i++)
        cr_assert_eq(log_out_append(o, l, sizeof(l)), 0);
    n = log_writer_next(&shared, 0, 0, &p);
    cr_assert(n > PIPE_BUF - 1024 && n <= PIPE_BUF, "%zu", n);
    cr_assert_eq(atomic_load(&lock.inflight), 1);
    log_writer_done(&shared, (long)n);
    cr_assert_eq(atomic_load(&lock.inflight), 0);
    n = log_writer_next(&lone, 0, 0, &p);
    cr_assert(n > LOG_OUT_RUN_MAX - 1024 && n <= LOG_OUT_RUN_MAX, "%zu", n);
    log_writer_done(&lone, (long)n);
    log_out_free(o);
}

/*
 * #26.5: on a shared pipe a line longer than PIPE_BUF goes out while no
 * other writer's write is in flight, and no other writer starts one until
 * all its bytes are out, however many writes the pipe takes.
 */
Test(log_writer, a_long_line_has_the_shared_pipe_to_itself)
{
    enum { LONG = 3 * PIPE_BUF };
    struct log_pipe_lock lock = {0};
    struct log_out *oa = log_out_new_lines(4 * LONG, LONG), *ob = log_out_new_lines(4096, LMAX);
    struct log_writer a = {.o = oa, .lock = &lock, .id = 1}, b = {.o = ob, .lock = &lock, .id = 2};
    char *line = malloc(LONG);
    const char *p;
    size_t n;

    cr_assert(line);
    mkline(line, LONG, 'L');
    cr_assert(put(ob, "short\n"));
    cr_assert_eq(log_writer_next(&b, 0, 1, &p), 6, "b's short write is in flight");
    cr_assert_eq(log_out_append(oa, line, LONG), 0);
    cr_assert_eq(log_writer_next(&a, 0, 1, &p), 0, "a waits for b's write");
    cr_assert_eq(log_writer_due(&a, 0), 1, "and asks again soon");
    cr_assert_eq(atomic_load(&lock.long_holder), 1, "a holds the pipe meanwhile");
    log_writer_done(&b, 6);
    cr_assert(put(ob, "next\n"));
    cr_assert_eq(log_writer_next(&b, 0, 1, &p), 0, "b holds back while a has the pipe");
    n = log_writer_next(&a, 0, 1, &p);
    cr_assert_eq(n, LONG);
    log_writer_done(&a, PIPE_BUF); /* the pipe took part of it */
    cr_assert_eq(log_writer_next(&b, 0, 1, &p), 0, "still a's until the line is out");
    cr_assert_eq(log_writer_next(&a, 0, 1, &p), LONG - PIPE_BUF, "the rest");
    log_writer_done(&a, LONG - PIPE_BUF);
    cr_assert_eq(atomic_load(&lock.long_holder), 0, "released");
    cr_assert_eq(log_writer_next(&b, 0, 1, &p), 5);
    log_writer_done(&b, 5);
    free(line);
    log_out_free(oa);
    log_out_free(ob);
}

/* stdout gone: the lines of the failed write are counted as dropped, and the lock let go. */
Test(log_writer, lines_of_a_failed_write_are_dropped)
{
    enum { LONG = 2 * PIPE_BUF };
    struct log_pipe_lock lock = {0};
    struct log_out *o = log_out_new_lines(4 * LONG, LONG);
    struct log_writer w = {.o = o, .lock = &lock, .id = 1};
    char *line = malloc(LONG);
    const char *p;

    cr_assert(line);
    mkline(line, LONG, 'L');
    cr_assert_eq(log_out_append(o, line, LONG), 0);
    cr_assert_eq(log_writer_next(&w, 0, 1, &p), LONG);
    log_writer_done(&w, -EPIPE);
    cr_assert_eq(log_out_dropped(o), 1);
    cr_assert_eq(log_out_pending(o), 0);
    cr_assert_eq(atomic_load(&lock.long_holder), 0);
    cr_assert(put(o, "a\n"));
    cr_assert(put(o, "b\n"));
    cr_assert_eq(log_writer_next(&w, 0, 1, &p), 4);
    log_writer_done(&w, -EAGAIN); /* a retry: nothing lost */
    cr_assert_eq(log_out_dropped(o), 1);
    cr_assert_eq(log_writer_next(&w, 0, 1, &p), 4);
    log_writer_done(&w, -EBADF);
    cr_assert_eq(log_out_dropped(o), 3);
    free(line);
    log_out_free(o);
}
