/*
 * Tests for core/buf.c: the provided-buffer ring on a real io_uring (skipped
 * where the kernel refuses io_uring), buffer reference counts, the pools'
 * free lists and the segment queue. Criterion runs each test in its own
 * process.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <liburing.h>

#include "core/buf.h"
#include "tests/support/lsan.h"

#define BGID 7

static struct io_uring ring;
static int have_ring;

/* A real ring, or skip: containers and old kernels may refuse io_uring. */
static void ring_up(void)
{
    int r = io_uring_queue_init(16, &ring, 0);

    if (r == -ENOSYS || r == -EPERM || r == -EACCES)
        cr_skip_test("io_uring refused by the kernel: %s", strerror(-r));
    cr_assert_eq(r, 0, "io_uring_queue_init: %s", strerror(-r));
    have_ring = 1;
}

static void ring_down(void)
{
    if (have_ring)
        io_uring_queue_exit(&ring);
    have_ring = 0;
}

/* A registered buffer ring, or skip where provided-buffer rings are missing (< 5.19). */
static void bufring_up(struct core_bufring *b, uint32_t nbufs, uint32_t bufsz)
{
    int r;

    ring_up();
    r = core_bufring_init(b, &ring, BGID, nbufs, bufsz);
    if (r == -EINVAL || r == -EOPNOTSUPP)
        cr_skip_test("provided-buffer rings unsupported: %s", strerror(-r));
    cr_assert_eq(r, 0, "core_bufring_init: %s", strerror(-r));
}

/* Submit a one-shot recv on fd that picks a buffer from group BGID; returns the CQE. */
static struct io_uring_cqe recv_select(int fd)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    struct io_uring_cqe *cqe, out;

    cr_assert_not_null(sqe);
    io_uring_prep_recv(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    io_uring_sqe_set_data64(sqe, 42);
    cr_assert_eq(io_uring_submit(&ring), 1);
    cr_assert_eq(io_uring_wait_cqe(&ring, &cqe), 0);
    cr_assert_eq(io_uring_cqe_get_data64(cqe), 42);
    out = *cqe;
    io_uring_cqe_seen(&ring, cqe);
    return out;
}

static uint16_t cqe_bid(const struct io_uring_cqe *cqe)
{
    cr_assert(cqe->flags & IORING_CQE_F_BUFFER, "completion carries no buffer (res %d)", cqe->res);
    return (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
}

static void socketpair_up(int sv[2])
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

static void send_str(int fd, const char *s)
{
    cr_assert_eq(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

/* The kernel's view of the ring: the tail we published. */
static uint16_t ring_tail(const struct core_bufring *b)
{
    return __atomic_load_n(&b->br->tail, __ATOMIC_ACQUIRE);
}

Test(core_buf, init_publishes_every_buffer, .fini = ring_down)
{
    struct core_bufring b;

    bufring_up(&b, 8, 64);
    cr_assert_not_null(b.br);
    cr_assert_not_null(b.mem);
    cr_assert_not_null(b.refs);
    cr_assert_eq(b.nbufs, 8);
    cr_assert_eq(b.bufsz, 64);
    cr_assert_eq(b.bgid, BGID);
    cr_assert_eq(b.in_use, 0);
    cr_assert_eq(b.published, 8, "a ring smaller than the window is published whole");
    cr_assert_eq(b.nfree, 0);
    cr_assert_eq(ring_tail(&b), 8);
    for (uint16_t i = 0; i < 8; i++) {
        cr_assert_eq(b.refs[i], 0);
        cr_assert_eq(b.br->bufs[i].bid, i);
        cr_assert_eq(b.br->bufs[i].len, 64);
        cr_assert_eq(b.br->bufs[i].addr, (uint64_t)(uintptr_t)core_buf_ptr(&b, i));
    }
    /* Buffers are bufsz apart and writable end to end. */
    cr_assert_eq(core_buf_ptr(&b, 1) - core_buf_ptr(&b, 0), 64);
    memset(b.mem, 'x', 8 * 64);
    core_bufring_exit(&b, &ring);
    assert_no_leaks();
}

Test(core_buf, exit_zeroes_and_is_idempotent, .fini = ring_down)
{
    struct core_bufring b;

    bufring_up(&b, 4, 32);
    core_bufring_exit(&b, &ring);
    cr_assert_null(b.br);
    cr_assert_null(b.mem);
    cr_assert_null(b.refs);
    cr_assert_eq(b.nbufs, 0);
    /* A second exit of the zeroed ring does nothing. */
    core_bufring_exit(&b, &ring);
    /* The group id is free again: registering it anew works. */
    cr_assert_eq(core_bufring_init(&b, &ring, BGID, 4, 32), 0);
    core_bufring_exit(&b, &ring);
}

/*
 * The smaps entry that holds addr: its range and VmFlags line. 0 when addr
 * lies in no mapping.
 */
static int smaps_of(const void *addr, uintptr_t *lo, uintptr_t *hi, char *flags, size_t cap)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    int in = 0, found = 0;

    cr_assert_not_null(f);
    while (fgets(line, sizeof(line), f)) {
        unsigned long a, b;

        if (sscanf(line, "%lx-%lx ", &a, &b) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = (uintptr_t)addr >= a && (uintptr_t)addr < b;
            if (in) {
                *lo = a;
                *hi = b;
                found = 1;
            }
        } else if (in && strncmp(line, "VmFlags:", 8) == 0) {
            snprintf(flags, cap, "%s", line + 8);
        }
    }
    fclose(f);
    return found;
}

Test(core_buf, whole_huge_pages_are_aligned_and_advised, .fini = ring_down)
{
    struct core_bufring b;
    const size_t huge = (size_t)2 << 20, len = 64 * 65536; /* 4 MiB */
    uintptr_t lo, hi;
    char flags[512] = "";
    char *mem;

    bufring_up(&b, 64, 65536);
    mem = b.mem;
    cr_assert_eq((uintptr_t)mem % huge, 0, "buffers at %p", (void *)mem);
    cr_assert(smaps_of(mem, &lo, &hi, flags, sizeof(flags)));
    /* the advice is there (hg), on any kernel built with THP, on or off */
    if (access("/sys/kernel/mm/transparent_hugepage", F_OK) == 0)
        cr_assert(strstr(flags, " hg"), "VmFlags:%s", flags);
    /* the edges mapped for alignment were given back: no advised memory beside it */
    cr_assert_eq(lo, (uintptr_t)mem);
    cr_assert_eq(hi, (uintptr_t)mem + len);
    /* every buffer is usable, first to last byte */
    memset(mem, 0xab, len);
    core_bufring_exit(&b, &ring);
    cr_assert_not(smaps_of(mem, &lo, &hi, flags, sizeof(flags)), "still mapped after exit");
    cr_assert_not(smaps_of(mem + len - 1, &lo, &hi, flags, sizeof(flags)));
}

Test(core_buf, other_sizes_are_mapped_as_they_are, .fini = ring_down)
{
    struct core_bufring b;
    uintptr_t lo, hi;
    char flags[512] = "";

    bufring_up(&b, 4, 4096);
    cr_assert(smaps_of(b.mem, &lo, &hi, flags, sizeof(flags)));
    cr_assert_null(strstr(flags, " hg"), "VmFlags:%s", flags);
    memset(b.mem, 0xcd, 4 * 4096);
    core_bufring_exit(&b, &ring);
}

Test(core_buf, init_fails_on_duplicate_group, .fini = ring_down)
{
    struct core_bufring a, b;

    bufring_up(&a, 4, 32);
    /* The kernel refuses a second ring with the same group id; b is left zeroed. */
    cr_assert_lt(core_bufring_init(&b, &ring, BGID, 4, 32), 0);
    cr_assert_null(b.br);
    cr_assert_null(b.mem);
    cr_assert_null(b.refs);
    core_bufring_exit(&b, &ring);
    core_bufring_exit(&a, &ring);
}

Test(core_buf, release_returns_id_only_at_zero, .fini = ring_down)
{
    struct core_bufring b;
    uint16_t tail, mask = io_uring_buf_ring_mask(8);

    bufring_up(&b, 8, 64);
    tail = ring_tail(&b);
    core_buf_take(&b, 3);
    cr_assert_eq(b.refs[3], 1);
    cr_assert_eq(b.in_use, 1);
    cr_assert_eq(b.published, 7);
    core_buf_ref(&b, 3);
    core_buf_ref(&b, 3);
    cr_assert_eq(b.refs[3], 3);
    cr_assert_eq(b.in_use, 1, "a reference is not another buffer in use");

    core_buf_release(&b, 3);
    core_buf_release(&b, 3);
    cr_assert_eq(b.refs[3], 1);
    cr_assert_eq(b.in_use, 1);
    cr_assert_eq(b.nfree, 0, "given back before the last reference");

    core_buf_release(&b, 3);
    cr_assert_eq(b.refs[3], 0);
    cr_assert_eq(b.in_use, 0);
    cr_assert_eq(b.nfree, 1);
    cr_assert_eq(b.freemap[0], 1u << 3);
    /* Not visible to the kernel before the flush. */
    cr_assert_eq(ring_tail(&b), tail);

    core_bufring_flush(&b);
    cr_assert_eq(b.nfree, 0);
    cr_assert_eq(b.published, 8);
    cr_assert_eq(ring_tail(&b), (uint16_t)(tail + 1));
    cr_assert_eq(b.br->bufs[tail & mask].bid, 3);
    cr_assert_eq(b.br->bufs[tail & mask].len, 64);
    cr_assert_eq(b.br->bufs[tail & mask].addr, (uint64_t)(uintptr_t)core_buf_ptr(&b, 3));
    core_bufring_exit(&b, &ring);
}

/*
 * The lowest free buffers are published first, whatever the order they came
 * back in: the buffers in use stay at the start of the mapping.
 */
Test(core_buf, lowest_free_buffers_go_out_first, .fini = ring_down)
{
    struct core_bufring b;
    uint16_t tail, mask = io_uring_buf_ring_mask(8);

    bufring_up(&b, 8, 64);
    tail = ring_tail(&b);
    core_buf_take(&b, 5);
    core_buf_take(&b, 1);
    core_buf_take(&b, 6);
    cr_assert_eq(b.in_use, 3);
    core_buf_release(&b, 1);
    core_buf_release(&b, 6);
    core_buf_release(&b, 5);
    cr_assert_eq(b.in_use, 0);
    cr_assert_eq(b.nfree, 3);
    core_bufring_flush(&b);
    cr_assert_eq(ring_tail(&b), (uint16_t)(tail + 3));
    cr_assert_eq(b.br->bufs[(tail + 0) & mask].bid, 1);
    cr_assert_eq(b.br->bufs[(tail + 1) & mask].bid, 5);
    cr_assert_eq(b.br->bufs[(tail + 2) & mask].bid, 6);
    /* Nothing given back: a flush changes nothing. */
    core_bufring_flush(&b);
    cr_assert_eq(ring_tail(&b), (uint16_t)(tail + 3));
    core_bufring_exit(&b, &ring);
}

/*
 * Of a large ring only a window is published; it grows at once to twice what
 * a turn used (the whole ring at most) and shrinks slowly when turns use less.
 */
Test(core_buf, published_window_follows_use, .fini = ring_down)
{
    struct core_bufring b;
    uint32_t n = 4 * CORE_BUF_WINDOW_MIN, w;
    uint16_t tail;

    bufring_up(&b, n, 16);
    cr_assert_eq(b.published, CORE_BUF_WINDOW_MIN);
    cr_assert_eq(b.nfree, n - CORE_BUF_WINDOW_MIN);
    cr_assert_eq(ring_tail(&b), CORE_BUF_WINDOW_MIN);
    /* The lowest buffers go out first: a light load touches little memory. */
    for (uint16_t i = 0; i < CORE_BUF_WINDOW_MIN; i++)
        cr_assert_eq(b.br->bufs[i].bid, i);

    /* A turn that takes 30 buffers: the next publishes up to 60. */
    for (uint16_t i = 0; i < 30; i++)
        core_buf_take(&b, i);
    core_bufring_flush(&b);
    cr_assert_eq(b.window, 60);
    cr_assert_eq(b.published, 60);
    cr_assert_eq(b.published + b.nfree + b.in_use, n, "a buffer got lost");

    /* A turn that drains the ring doubles the window. */
    tail = ring_tail(&b);
    for (uint16_t i = 0; i < 60; i++)
        core_buf_take(&b, b.br->bufs[(uint16_t)(tail - 60 + i) & io_uring_buf_ring_mask(n)].bid);
    cr_assert_eq(b.published, 0);
    core_bufring_flush(&b);
    cr_assert_eq(b.window, 120);
    cr_assert_eq(b.published + b.in_use, n, "no free ones left: everything else is published");
    cr_assert_eq(b.nfree, 0);

    /* Idle turns: the window shrinks toward the minimum, a step at a time. */
    w = b.window;
    core_bufring_flush(&b);
    cr_assert_lt(b.window, w);
    cr_assert_gt(b.window, w / 2, "shrinks slowly");
    for (int i = 0; i < 200; i++)
        core_bufring_flush(&b);
    cr_assert_eq(b.window, CORE_BUF_WINDOW_MIN);
    core_bufring_exit(&b, &ring);
}

Test(core_buf, recv_selects_a_buffer, .fini = ring_down)
{
    struct core_bufring b;
    struct io_uring_cqe cqe;
    int sv[2];
    uint16_t bid;

    bufring_up(&b, 4, 16);
    socketpair_up(sv);
    send_str(sv[1], "hello");
    cqe = recv_select(sv[0]);
    cr_assert_eq(cqe.res, 5, "recv: %s", cqe.res < 0 ? strerror(-cqe.res) : "short");
    bid = cqe_bid(&cqe);
    cr_assert_lt(bid, 4);
    cr_assert_eq(memcmp(core_buf_ptr(&b, bid), "hello", 5), 0);
    core_buf_take(&b, bid);
    core_buf_release(&b, bid);
    core_bufring_exit(&b, &ring);
    (void)close(sv[0]);
    (void)close(sv[1]);
}

/*
 * The kernel sees a given-back buffer only after the flush: with every buffer
 * held, recv fails with ENOBUFS, still fails after the release, and succeeds
 * with the released buffer once flushed.
 */
Test(core_buf, kernel_reuses_buffer_only_after_flush, .fini = ring_down)
{
    struct core_bufring b;
    struct io_uring_cqe cqe;
    int sv[2], held[2];

    bufring_up(&b, 2, 16);
    socketpair_up(sv);
    for (int i = 0; i < 2; i++) {
        char msg[8];

        (void)snprintf(msg, sizeof(msg), "msg%d", i);
        send_str(sv[1], msg);
        cqe = recv_select(sv[0]);
        cr_assert_eq(cqe.res, 4);
        held[i] = cqe_bid(&cqe);
        core_buf_take(&b, (uint16_t)held[i]);
        cr_assert_eq(memcmp(core_buf_ptr(&b, (uint16_t)held[i]), msg, 4), 0);
    }
    cr_assert_neq(held[0], held[1]);
    cr_assert_eq(b.in_use, 2);

    send_str(sv[1], "next");
    cqe = recv_select(sv[0]);
    cr_assert_eq(cqe.res, -ENOBUFS, "every buffer is held, yet recv got %d", cqe.res);

    core_buf_ref(&b, (uint16_t)held[0]);
    core_buf_release(&b, (uint16_t)held[0]);
    cqe = recv_select(sv[0]);
    cr_assert_eq(cqe.res, -ENOBUFS, "a buffer with a reference left went back");

    core_buf_release(&b, (uint16_t)held[0]);
    cqe = recv_select(sv[0]);
    cr_assert_eq(cqe.res, -ENOBUFS, "the kernel saw the buffer before the flush");

    core_bufring_flush(&b);
    cqe = recv_select(sv[0]);
    cr_assert_eq(cqe.res, 4, "recv after flush: %d", cqe.res);
    cr_assert_eq(cqe_bid(&cqe), held[0]);
    cr_assert_eq(memcmp(core_buf_ptr(&b, (uint16_t)held[0]), "next", 4), 0);
    /* The other buffer kept its bytes. */
    cr_assert_eq(memcmp(core_buf_ptr(&b, (uint16_t)held[1]), "msg1", 4), 0);
    core_bufring_exit(&b, &ring);
    (void)close(sv[0]);
    (void)close(sv[1]);
}

/* A multishot recv (what the proxy arms) keeps drawing from the ring as buffers come back. */
Test(core_buf, multishot_recv_draws_returned_buffers, .fini = ring_down)
{
    struct core_bufring b;
    struct io_uring_sqe *sqe;
    struct io_uring_cqe *cqe;
    int sv[2], got = 0;

    bufring_up(&b, 2, 8);
    socketpair_up(sv);
    sqe = io_uring_get_sqe(&ring);
    io_uring_prep_recv_multishot(sqe, sv[0], NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    io_uring_sqe_set_data64(sqe, 9);
    cr_assert_eq(io_uring_submit(&ring), 1);

    /* Six messages through two buffers: works only if each comes back. */
    for (int i = 0; i < 6; i++) {
        char msg[8];
        uint16_t bid;

        (void)snprintf(msg, sizeof(msg), "m%d", i);
        send_str(sv[1], msg);
        cr_assert_eq(io_uring_wait_cqe(&ring, &cqe), 0);
        if (cqe->res == -EINVAL && !got) {
            io_uring_cqe_seen(&ring, cqe);
            cr_skip_test("multishot recv unsupported");
        }
        cr_assert_eq(cqe->res, 2, "message %d: res %d", i, cqe->res);
        cr_assert(cqe->flags & IORING_CQE_F_MORE, "multishot recv ended at message %d", i);
        bid = cqe_bid(cqe);
        io_uring_cqe_seen(&ring, cqe);
        cr_assert_eq(memcmp(core_buf_ptr(&b, bid), msg, 2), 0);
        core_buf_take(&b, bid);
        core_buf_release(&b, bid);
        core_bufring_flush(&b);
        got++;
    }
    cr_assert_eq(b.in_use, 0);
    (void)close(sv[1]);
    /* EOF ends the multishot recv. */
    cr_assert_eq(io_uring_wait_cqe(&ring, &cqe), 0);
    cr_assert_eq(cqe->res, 0);
    io_uring_cqe_seen(&ring, cqe);
    core_bufring_exit(&b, &ring);
    (void)close(sv[0]);
}

/*
 * Pool and segment-queue tests need no kernel: a buffer ring is only memory
 * to core_buf_release(), so build one by hand.
 */
#define FAKE_NBUFS 8
/*
 * After a burst the memory of the buffers it used is given back: the free
 * ones above what the last second's peak needed read as zeros again, the
 * ones in use or published keep their bytes.
 */
Test(core_buf, trim_gives_back_what_the_peak_no_longer_needs, .fini = ring_down)
{
    struct core_bufring b;
    uint32_t n = 4 * CORE_BUF_WINDOW_MIN, used = 3 * CORE_BUF_WINDOW_MIN;
    size_t freed;

    bufring_up(&b, n, 4096);
    cr_assert_eq(b.group, 1, "a ring smaller than a huge page is given back buffer by buffer");
    /* a burst: the kernel fills the lowest `used` buffers, all held at once */
    for (uint16_t bid = 0; bid < used; bid++) {
        if (!b.published)
            core_bufring_flush(&b);
        core_buf_take(&b, bid);
        memset(core_buf_ptr(&b, bid), 'x', 4096);
    }
    core_bufring_flush(&b);
    cr_assert_eq(core_bufring_trim(&b), 0, "in use: nothing to give back");
    for (uint16_t bid = 1; bid < used; bid++)
        core_buf_release(&b, bid);
    for (int i = 0; i < 200; i++)
        core_bufring_flush(&b); /* quiet turns: the window shrinks back */
    /* the first trim after the burst keeps what its peak used; the next gives it back */
    cr_assert_eq(core_bufring_trim(&b), 0);
    freed = core_bufring_trim(&b);
    cr_assert_gt(freed, 0);
    cr_assert_eq(freed % 4096, 0);
    cr_assert_eq(core_buf_ptr(&b, used - 1)[0], 0, "given back: reads as zeros");
    cr_assert_eq(core_buf_ptr(&b, 0)[0], 'x', "still held: keeps its bytes");
    cr_assert_eq(b.in_use, 1);
    cr_assert_eq(core_bufring_trim(&b), 0, "nothing resident left to give back");
    core_buf_release(&b, 0);
    core_bufring_exit(&b, &ring);
}

#define FAKE_BUFSZ 32

static struct core_bufring fake;
static struct core_pool pool;

static void fake_up(void)
{
    fake = (struct core_bufring){.nbufs = FAKE_NBUFS, .bufsz = FAKE_BUFSZ};
    fake.br = calloc(FAKE_NBUFS, sizeof(struct io_uring_buf));
    fake.mem = calloc(FAKE_NBUFS, FAKE_BUFSZ);
    fake.refs = calloc(FAKE_NBUFS, sizeof(*fake.refs));
    fake.freemap = calloc((FAKE_NBUFS + 63) / 64, sizeof(*fake.freemap));
    fake.resident = calloc(FAKE_NBUFS, 1);
    fake.published = FAKE_NBUFS;
    cr_assert(fake.br && fake.mem && fake.refs && fake.freemap && fake.resident);
    core_pool_init(&pool, 128);
}

static void fake_down(void)
{
    core_pool_exit(&pool);
    free(fake.br);
    free(fake.mem);
    free(fake.refs);
    free(fake.freemap);
    free(fake.resident);
    fake = (struct core_bufring){0};
}

static char *fake_fill(uint16_t bid, const char *s)
{
    char *p = core_buf_ptr(&fake, bid);

    memcpy(p, s, strlen(s));
    core_buf_take(&fake, bid);
    return p;
}

/* The queue's bytes, front to back, NUL-terminated in out. */
static size_t segq_text(const struct core_segq *q, char *out, size_t cap)
{
    size_t n = 0;

    for (const struct core_seg *s = q->head; s; s = s->next) {
        cr_assert_leq(n + s->len, cap - 1);
        memcpy(out + n, s->p, s->len);
        n += s->len;
    }
    out[n] = '\0';
    return n;
}

static void assert_segq(const struct core_segq *q, const char *want)
{
    char got[256];
    size_t n = segq_text(q, got, sizeof(got));

    cr_assert_str_eq(got, want);
    cr_assert_eq(q->bytes, n, "bytes %zu but segments hold %zu", q->bytes, n);
    if (!q->head)
        cr_assert_eq(q->tailp, &q->head);
}

Test(core_buf, pool_init_sets_fields)
{
    struct core_pool p;

    memset(&p, 0xa5, sizeof(p));
    core_pool_init(&p, 300);
    cr_assert_null(p.segs.head);
    cr_assert_null(p.blks.head);
    cr_assert_null(p.chunks.head);
    cr_assert_eq(p.blksz, 300);
    cr_assert_eq(p.taken, 0);
    /* each list knows its objects' size (the sanitizer's poisoning covers them whole) */
    cr_assert_eq(p.segs.objsz, sizeof(struct core_seg));
    cr_assert_eq(p.blks.objsz, 16 + 300);
    cr_assert_eq(p.chunks.objsz, 16 + CORE_CHUNK_SIZE);
    cr_assert(!p.segs.n && !p.segs.low && !p.blks.n && !p.blks.low && !p.chunks.n && !p.chunks.low);
    core_pool_exit(&p);
}

Test(core_buf, seg_free_list_reuses_memory, .init = fake_up, .fini = fake_down)
{
    struct core_seg *a = core_seg_new(&pool), *b = core_seg_new(&pool), *c;

    cr_assert(a && b && a != b);
    core_seg_free(&pool, a);
    core_seg_free(&pool, b);
    /* Last freed, first reused; nothing new allocated while the list lasts. */
    c = core_seg_new(&pool);
    cr_assert_eq(c, b);
    c = core_seg_new(&pool);
    cr_assert_eq(c, a);
    cr_assert_null(pool.segs.head);
    core_seg_free(&pool, a);
    core_seg_free(&pool, b);
    /* core_pool_exit frees the listed segments. */
    fake_down();
    assert_no_leaks();
}

Test(core_buf, blk_free_list_reuses_memory, .init = fake_up, .fini = fake_down)
{
    char *a = core_blk_get(&pool), *b;

    cr_assert_not_null(a);
    memset(a, 'x', pool.blksz); /* whole block usable (ASan checks the size) */
    core_blk_put(&pool, a);
    cr_assert_eq(pool.blks.n, 1);
    b = core_blk_get(&pool);
    cr_assert_eq(b, a);
    cr_assert_eq(pool.blks.n, 0);
    memset(b, 'y', pool.blksz);
    core_blk_put(&pool, b);
    fake_down();
    assert_no_leaks();
}

Test(core_buf, blk_put_null_is_noop, .init = fake_up, .fini = fake_down)
{
    core_blk_put(&pool, NULL);
    cr_assert_eq(pool.blks.n, 0);
    cr_assert_null(pool.blks.head);
}

/*
 * However many blocks were in use at once, all of them stay listed when
 * they come back: a worker with more exchanges in flight than a fixed cap
 * used to free and malloc a block per request.
 */
Test(core_buf, blk_free_list_keeps_what_load_used, .init = fake_up, .fini = fake_down)
{
    enum { N = 300 };
    void *blk[N];

    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            blk[i] = core_blk_get(&pool);
            cr_assert_not_null(blk[i]);
        }
        for (int i = 0; i < N; i++)
            core_blk_put(&pool, blk[i]);
        cr_assert_eq(pool.blks.n, N);
        cr_assert_eq(pool.blks.low, 0, "all of them were used since the last trim");
    }
    /* Handed out last in, first out: the hottest first. */
    cr_assert_eq(core_blk_get(&pool), blk[N - 1]);
    cr_assert_eq(core_blk_get(&pool), blk[N - 2]);
    core_blk_put(&pool, blk[N - 2]);
    core_blk_put(&pool, blk[N - 1]);
    fake_down();
    assert_no_leaks();
}

/*
 * A trim frees what the interval since the last one did not use (the
 * low-water mark of the list), the coldest entries first, and keeps what
 * it did: steady load allocates nothing, and memory a lighter load no
 * longer needs goes back.
 */
Test(core_buf, trim_frees_what_the_interval_did_not_use, .init = fake_up, .fini = fake_down)
{
    void *blk[10];

    for (int i = 0; i < 10; i++)
        blk[i] = core_blk_get(&pool);
    for (int i = 0; i < 10; i++)
        core_blk_put(&pool, blk[i]); /* blk[9] is the head, blk[0] the coldest */
    /* The first trim: all ten were in use during the interval. */
    cr_assert_eq(core_pool_trim(&pool), 0);
    cr_assert_eq(pool.blks.n, 10);
    cr_assert_eq(pool.blks.low, 10);
    /* Only four in use at once during this one: six were not needed. */
    for (int i = 0; i < 4; i++)
        cr_assert_eq(core_blk_get(&pool), blk[9 - i]);
    for (int i = 3; i >= 0; i--)
        core_blk_put(&pool, blk[9 - i]);
    cr_assert_eq(pool.blks.low, 6);
    cr_assert_eq(core_pool_trim(&pool), 6 * (16 + pool.blksz));
    cr_assert_eq(pool.blks.n, 4);
    cr_assert_eq(pool.blks.low, 4);
    /* The four kept are the ones the load used, hottest first. */
    {
        void **x = pool.blks.head;

        for (int i = 0; i < 4; i++, x = *x)
            cr_assert_eq((char *)x + 16, (char *)blk[9 - i]);
        cr_assert_null(x);
    }
    /* An interval that used none: all go. */
    cr_assert_eq(core_pool_trim(&pool), 4 * (16 + pool.blksz));
    cr_assert_null(pool.blks.head);
    cr_assert_eq(pool.blks.n, 0);
    cr_assert_eq(core_pool_trim(&pool), 0);
    fake_down();
    assert_no_leaks();
}

/* The same low-water rule for segments and chunks; an empty list is a no-op. */
Test(core_buf, trim_segments_and_chunks, .init = fake_up, .fini = fake_down)
{
    struct core_seg *s[3];
    void *c[2];

    for (int i = 0; i < 3; i++)
        s[i] = core_seg_new(&pool);
    for (int i = 0; i < 2; i++)
        c[i] = core_chunk_get(&pool);
    for (int i = 0; i < 3; i++)
        core_seg_free(&pool, s[i]);
    for (int i = 0; i < 2; i++)
        core_blk_put(&pool, c[i]);
    cr_assert_eq(pool.segs.n, 3);
    cr_assert_eq(pool.chunks.n, 2);
    cr_assert_eq(pool.blks.n, 0, "chunks have their own list");
    cr_assert_eq(core_pool_trim(&pool), 0, "all used in this interval");
    cr_assert_eq(core_seg_new(&pool), s[2]);
    core_seg_free(&pool, s[2]);
    cr_assert_eq(core_pool_trim(&pool), 2 * sizeof(struct core_seg) + 2 * (16 + CORE_CHUNK_SIZE));
    cr_assert_eq(pool.segs.n, 1);
    cr_assert_eq(pool.segs.head, s[2]);
    cr_assert_eq(pool.chunks.n, 0);
    fake_down();
    assert_no_leaks();
}

#ifdef CORE_ASAN
/*
 * Under AddressSanitizer a released block is poisoned while it waits on
 * the free list (all but its link), so a use after the last reference was
 * dropped is reported as a use after free would be; taken again, it is
 * whole.
 */
Test(core_buf, listed_objects_are_poisoned, .init = fake_up, .fini = fake_down)
{
    char *b = core_blk_get(&pool), *k = core_chunk_get(&pool);
    struct core_seg *s = core_seg_new(&pool);

    cr_assert(b && s && k);
    cr_assert_not(__asan_address_is_poisoned(b + pool.blksz - 1));
    core_blk_put(&pool, b);
    core_blk_put(&pool, k);
    core_seg_free(&pool, s);
    cr_assert(__asan_address_is_poisoned(k));
    cr_assert(__asan_address_is_poisoned(k + CORE_CHUNK_SIZE - 1));
    cr_assert(__asan_address_is_poisoned(b));
    cr_assert(__asan_address_is_poisoned(b + pool.blksz - 1));
    cr_assert(__asan_address_is_poisoned(&s->len));
    cr_assert_not(__asan_address_is_poisoned(&s->next), "the link stays readable");
    cr_assert_eq(core_blk_get(&pool), b);
    cr_assert_not(__asan_address_is_poisoned(b));
    cr_assert_not(__asan_address_is_poisoned(b + pool.blksz - 1));
    core_blk_put(&pool, b);
    fake_down();
    assert_no_leaks();
}

/* A reference dropped on a block already back on the free list is reported, not absorbed. */
Test(core_buf, double_put_is_reported, .init = fake_up, .fini = fake_down, .exit_code = 1)
{
    char *b = core_blk_get(&pool);

    core_blk_put(&pool, b);
    core_blk_put(&pool, b); /* AddressSanitizer stops the process here */
    cr_assert_fail("a double put went unnoticed");
}
#endif

Test(core_buf, freelist_drain_frees_everything)
{
    struct core_freelist f = {.objsz = 32};

    for (int i = 0; i < 5; i++)
        core_fl_push(&f, malloc(32));
    cr_assert_eq(f.n, 5);
    cr_assert_eq(f.low, 0);
    core_fl_drain(&f);
    cr_assert_null(f.head);
    cr_assert_eq(f.n, 0);
    cr_assert_null(core_fl_pop(&f));
    assert_no_leaks();
}

Test(core_buf, segq_init_is_empty)
{
    struct core_segq q;

    memset(&q, 0xa5, sizeof(q));
    core_segq_init(&q);
    cr_assert_null(q.head);
    cr_assert_eq(q.tailp, &q.head);
    cr_assert_eq(q.bytes, 0);
}

Test(core_buf, segq_push_takes_references, .init = fake_up, .fini = fake_down)
{
    struct core_segq q;
    char *p1 = fake_fill(1, "abc");
    char *other = core_blk_get(&pool);

    memcpy(other, "xyz", 3);
    core_segq_init(&q);
    cr_assert_eq(q.nring, 0);
    cr_assert_eq(core_segq_push(&q, &pool, &fake, p1, 3, 1), 0);
    cr_assert_eq(fake.refs[1], 2);
    cr_assert_eq(q.nring, 1);
    cr_assert_eq(core_segq_push_blk(&q, &pool, other, 3, other), 0);
    cr_assert_eq(q.nring, 1, "bytes in a block hold no ring buffer");
    core_blk_put(&pool, other); /* the queue's reference keeps it */
    cr_assert_eq(pool.blks.n, 0);
    /* Zero bytes queue nothing and take no reference. */
    cr_assert_eq(core_segq_push(&q, &pool, &fake, p1, 0, 1), 0);
    cr_assert_eq(fake.refs[1], 2);
    assert_segq(&q, "abcxyz");
    cr_assert_eq(q.head->bid, 1);
    cr_assert_eq(q.head->next->bid, -1);
    cr_assert_null(q.head->next->next);
    cr_assert_eq(q.tailp, &q.head->next->next);

    core_buf_release(&fake, 1); /* the receiver's own reference */
    cr_assert_eq(fake.in_use, 1, "the queue still holds buffer 1");
    core_segq_clear(&q, &pool, &fake);
    cr_assert_eq(fake.in_use, 0);
    cr_assert_eq(fake.refs[1], 0);
    cr_assert_eq(fake.nfree, 1);
    cr_assert_eq(pool.blks.n, 1, "the block went back with the segment");
}

Test(core_buf, segq_consume_across_segments, .init = fake_up, .fini = fake_down)
{
    struct core_segq q;
    char *p1 = fake_fill(1, "abc"), *p2 = fake_fill(2, "defg");
    char *hi = core_blk_get(&pool);

    memcpy(hi, "hi", 2);
    core_segq_init(&q);
    cr_assert_eq(core_segq_push(&q, &pool, &fake, p1, 3, 1), 0);
    cr_assert_eq(core_segq_push(&q, &pool, &fake, p2, 4, 2), 0);
    cr_assert_eq(core_segq_push_blk(&q, &pool, hi, 2, hi), 0);
    core_buf_release(&fake, 1);
    core_buf_release(&fake, 2);
    cr_assert_eq(fake.in_use, 2);
    assert_segq(&q, "abcdefghi");

    cr_assert_eq(q.nring, 2);
    core_segq_consume(&q, &pool, &fake, 2); /* inside the first segment */
    assert_segq(&q, "cdefghi");
    cr_assert_eq(q.nring, 2, "a segment partly consumed still holds its buffer");
    cr_assert_eq(q.head->p, p1 + 2);
    cr_assert_eq(fake.refs[1], 1);

    core_segq_consume(&q, &pool, &fake, 2); /* the rest of the first, one of the second */
    assert_segq(&q, "efghi");
    cr_assert_eq(fake.refs[1], 0, "buffer 1 not released when its segment went");
    cr_assert_eq(fake.in_use, 1);
    cr_assert_eq(q.head->p, p2 + 1);

    core_segq_consume(&q, &pool, &fake, 3); /* exactly to a segment boundary */
    assert_segq(&q, "hi");
    cr_assert_eq(q.nring, 0);
    cr_assert_eq(fake.refs[2], 0);
    cr_assert_eq(fake.in_use, 0);
    cr_assert_eq(fake.nfree, 2);

    core_segq_consume(&q, &pool, &fake, 0);
    assert_segq(&q, "hi");
    core_segq_consume(&q, &pool, &fake, 2);
    assert_segq(&q, "");

    /* Emptied queue takes pushes again (tailp was reset). */
    cr_assert_eq(core_segq_push_blk(&q, &pool, hi, 1, hi), 0);
    assert_segq(&q, "h");
    cr_assert_eq(q.tailp, &q.head->next);
    core_segq_clear(&q, &pool, &fake);
    core_blk_put(&pool, hi);
    fake_down();
    assert_no_leaks();
}

Test(core_buf, segq_consume_more_than_queued, .init = fake_up, .fini = fake_down)
{
    struct core_segq q;
    char *p1 = fake_fill(4, "0123456789");

    core_segq_init(&q);
    cr_assert_eq(core_segq_push(&q, &pool, &fake, p1, 10, 4), 0);
    core_buf_release(&fake, 4);
    core_segq_consume(&q, &pool, &fake, 1000);
    assert_segq(&q, "");
    cr_assert_eq(fake.in_use, 0);
    cr_assert_eq(fake.refs[4], 0);
}

Test(core_buf, segq_byte_at_a_time, .init = fake_up, .fini = fake_down)
{
    static const char *const parts[] = {"He", "llo, ", "w", "orld"};
    struct core_segq q;
    const char *want = "Hello, world";
    size_t total = strlen(want);

    core_segq_init(&q);
    for (uint16_t i = 0; i < 4; i++) {
        char *p = fake_fill(i, parts[i]);

        cr_assert_eq(core_segq_push(&q, &pool, &fake, p, strlen(parts[i]), i), 0);
        core_buf_release(&fake, i);
    }
    for (size_t k = 0; k < total; k++) {
        assert_segq(&q, want + k);
        cr_assert_eq(*q.head->p, want[k]);
        core_segq_consume(&q, &pool, &fake, 1);
    }
    assert_segq(&q, "");
    cr_assert_eq(fake.in_use, 0);
    cr_assert_eq(fake.nfree, 4);
}

Test(core_buf, segq_same_buffer_twice, .init = fake_up, .fini = fake_down)
{
    struct core_segq q;
    char *p = fake_fill(6, "headbody");

    /* One received buffer split into two views: the buffer goes back after both. */
    core_segq_init(&q);
    cr_assert_eq(core_segq_push(&q, &pool, &fake, p, 4, 6), 0);
    cr_assert_eq(core_segq_push(&q, &pool, &fake, p + 4, 4, 6), 0);
    core_buf_release(&fake, 6);
    cr_assert_eq(fake.refs[6], 2);
    core_segq_consume(&q, &pool, &fake, 4);
    cr_assert_eq(fake.refs[6], 1);
    cr_assert_eq(fake.in_use, 1);
    cr_assert_eq(fake.nfree, 0);
    core_segq_clear(&q, &pool, &fake);
    cr_assert_eq(fake.refs[6], 0);
    cr_assert_eq(fake.in_use, 0);
    cr_assert_eq(fake.nfree, 1);
}

Test(core_buf, segq_clear_recycles_segments, .init = fake_up, .fini = fake_down)
{
    struct core_segq q;
    char *x = core_blk_get(&pool);

    x[0] = 'x';
    core_segq_init(&q);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(core_segq_push_blk(&q, &pool, x, 1, x), 0);
    core_segq_clear(&q, &pool, &fake);
    assert_segq(&q, "");
    /* All three are on the pool's free list now. */
    {
        int n = 0;

        for (struct core_seg *s = pool.segs.head; s; s = s->next)
            n++;
        cr_assert_eq(n, 3);
    }
    /* The next push takes the last one freed instead of allocating. */
    {
        struct core_seg *top = pool.segs.head;

        cr_assert_eq(core_segq_push_blk(&q, &pool, x, 1, x), 0);
        cr_assert_eq(q.head, top);
        cr_assert_neq(pool.segs.head, top);
    }
    core_segq_clear(&q, &pool, &fake);
    core_blk_put(&pool, x);
    fake_down();
    assert_no_leaks();
}

/*
 * The use-after-free class this ownership closes: the owner of a head block
 * lets go of it while a queue still points into it, and the next user of a
 * block must not get that memory (and write its own bytes into what is
 * about to be sent).
 */
Test(core_buf, blk_outlives_its_owner_while_queued, .init = fake_up, .fini = fake_down)
{
    struct core_segq q;
    char *head = core_blk_get(&pool), *next;

    memcpy(head, "HTTP/1.1 200 OK\r\n", 17);
    core_segq_init(&q);
    cr_assert_eq(core_segq_push_blk(&q, &pool, head, 17, head), 0);
    core_blk_put(&pool, head); /* the owner is done with it: the queue is not */
    next = core_blk_get(&pool);
    cr_assert_neq(next, head, "a block still queued was handed out again");
    memset(next, 'X', pool.blksz);
    assert_segq(&q, "HTTP/1.1 200 OK\r\n");
    core_segq_consume(&q, &pool, &fake, 5);
    assert_segq(&q, "1.1 200 OK\r\n");
    core_segq_clear(&q, &pool, &fake);
    cr_assert_eq(core_blk_get(&pool), head, "the block came back with the last reference");
    core_blk_put(&pool, head);
    core_blk_put(&pool, next);
    fake_down();
    assert_no_leaks();
}

Test(core_buf, segq_truncate_keeps_a_prefix, .init = fake_up, .fini = fake_down)
{
    struct core_segq q;
    char *p1 = fake_fill(1, "abc"), *p2 = fake_fill(2, "defg");
    char *blk = core_blk_get(&pool);

    memcpy(blk, "hij", 3);
    core_segq_init(&q);
    cr_assert_eq(core_segq_push(&q, &pool, &fake, p1, 3, 1), 0);
    cr_assert_eq(core_segq_push_blk(&q, &pool, blk, 3, blk), 0);
    cr_assert_eq(core_segq_push(&q, &pool, &fake, p2, 4, 2), 0);
    core_buf_release(&fake, 1);
    core_buf_release(&fake, 2);
    core_blk_put(&pool, blk);
    core_segq_truncate(&q, &pool, &fake, 100); /* more than queued: nothing */
    assert_segq(&q, "abchijdefg");
    core_segq_truncate(&q, &pool, &fake, 4); /* inside the block's segment */
    assert_segq(&q, "abch");
    cr_assert_eq(fake.refs[2], 0, "the dropped buffer went back");
    cr_assert_eq(q.nring, 1);
    cr_assert_eq(pool.blks.n, 0, "the block is still queued");
    cr_assert_eq(core_segq_push(&q, &pool, &fake, p1, 1, 1), 0);
    assert_segq(&q, "abcha");
    core_segq_truncate(&q, &pool, &fake, 3); /* at a segment boundary */
    assert_segq(&q, "abc");
    cr_assert_eq(pool.blks.n, 1);
    core_segq_truncate(&q, &pool, &fake, 0);
    assert_segq(&q, "");
    cr_assert_eq(fake.in_use, 0);
    cr_assert_eq(q.nring, 0);
}

/*
 * Fairness (#19.1): a queue that waits holds no shared ring buffer. Its bytes
 * move into chunks, consecutive ones together, in order, and the buffers go
 * back to the kernel.
 */
Test(core_buf, segq_compact_frees_ring_buffers, .init = fake_up, .fini = fake_down)
{
    struct core_segq q;
    char *blk = core_blk_get(&pool);
    char want[64];

    memcpy(blk, "HEAD", 4);
    core_segq_init(&q);
    cr_assert_eq(core_segq_push_blk(&q, &pool, blk, 4, blk), 0);
    for (uint16_t i = 0; i < 5; i++) {
        char s[8];

        snprintf(s, sizeof(s), "<%u>", i);
        cr_assert_eq(core_segq_push(&q, &pool, &fake, fake_fill(i, s), 3, i), 0);
        core_buf_release(&fake, i);
    }
    cr_assert_eq(q.nring, 5);
    cr_assert_eq(fake.in_use, 5);
    cr_assert_eq(core_segq_compact(&q, &pool, &fake, 2), 0); /* the first two are being sent */
    assert_segq(&q, "HEAD<0><1><2><3><4>");
    cr_assert_eq(q.nring, 1, "the one segment in flight keeps its buffer");
    cr_assert_eq(fake.in_use, 1);
    cr_assert_not_null(q.head->next->next);
    cr_assert_null(q.head->next->next->next, "<1>..<4> are one chunk segment");
    cr_assert_eq(q.tailp, &q.head->next->next->next);
    cr_assert_eq(core_segq_compact(&q, &pool, &fake, 0), 0);
    assert_segq(&q, "HEAD<0><1><2><3><4>");
    cr_assert_eq(q.nring, 0);
    cr_assert_eq(fake.in_use, 0);
    strcpy(want, "HEAD<0><1><2><3><4>");
    core_segq_consume(&q, &pool, &fake, 8);
    assert_segq(&q, want + 8);
    core_segq_clear(&q, &pool, &fake);
    core_blk_put(&pool, blk);
    fake_down();
    assert_no_leaks();
}

/* A segment larger than what is left of a chunk is split over two. */
Test(core_buf, segq_compact_spans_chunks, .init = fake_up, .fini = fake_down)
{
    struct core_segq q;
    static char p[CORE_CHUNK_SIZE + 1000]; /* stands for buffer 7's memory: fake ones are small */
    size_t n = sizeof(p), total = 0;

    for (size_t i = 0; i < n; i++)
        p[i] = (char)('a' + i % 26);
    core_buf_take(&fake, 7);
    core_segq_init(&q);
    cr_assert_eq(core_segq_push(&q, &pool, &fake, p, 100, 7), 0);
    cr_assert_eq(core_segq_push(&q, &pool, &fake, p + 100, n - 100, 7), 0);
    core_buf_release(&fake, 7);
    cr_assert_eq(core_segq_compact(&q, &pool, &fake, 0), 0);
    cr_assert_eq(fake.in_use, 0);
    cr_assert_eq(q.bytes, n);
    for (struct core_seg *s = q.head; s; s = s->next) {
        for (size_t i = 0; i < s->len; i++)
            cr_assert_eq(s->p[i], (char)('a' + (total + i) % 26), "byte %zu", total + i);
        total += s->len;
        cr_assert_eq(s->bid, -1);
    }
    cr_assert_eq(total, n);
    cr_assert_not_null(q.head->next, "two chunks");
    cr_assert_null(q.head->next->next);
    core_segq_clear(&q, &pool, &fake);
    cr_assert_eq(pool.chunks.n, 2);
    fake_down();
    assert_no_leaks();
}

/*
 * A queue compacted again and again (a peer trickling a byte at a time)
 * fills its last chunk before taking another: memory follows the bytes, not
 * the number of compactions (an attacker's 1-byte writes once cost 16 KiB
 * each). An emptied queue gives its chunk back.
 */
Test(core_buf, segq_compact_fills_the_last_chunk, .init = fake_up, .fini = fake_down)
{
    struct core_segq q;

    core_segq_init(&q);
    for (int i = 0; i < 100; i++) {
        char s[2] = {(char)('a' + i % 26), 0};

        cr_assert_eq(core_segq_push(&q, &pool, &fake, fake_fill(0, s), 1, 0), 0);
        core_buf_release(&fake, 0);
        cr_assert_eq(core_segq_compact(&q, &pool, &fake, 0), 0);
        cr_assert_eq(fake.in_use, 0);
        fake.nfree = 0; /* the fake ring never republishes */
    }
    cr_assert_eq(q.bytes, 100);
    cr_assert_null(q.head->next, "100 bytes compacted one by one are one segment of one chunk");
    cr_assert_eq(q.head->blk, q.fill);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(q.head->p[i], (char)('a' + i % 26));
    core_segq_consume(&q, &pool, &fake, 100);
    cr_assert_null(q.fill);
    cr_assert_eq(pool.chunks.n, 1);
    fake_down();
    assert_no_leaks();
}

#ifdef CORE_FAULT_INJECT
/* Out of memory half-way: nothing lost, nothing doubled. */
Test(core_buf, segq_compact_oom_keeps_bytes, .init = fake_up, .fini = fake_down)
{
    for (uint32_t every = 1; every < 6; every++) {
        struct core_segq q;

        core_segq_init(&q);
        for (uint16_t i = 0; i < 4; i++) {
            char s[8];

            snprintf(s, sizeof(s), "[%u]", i);
            cr_assert_eq(core_segq_push(&q, &pool, &fake, fake_fill(i, s), 3, i), 0);
            core_buf_release(&fake, i);
        }
        pool.fault_every = every;
        pool.fault_count = 0;
        (void)core_segq_compact(&q, &pool, &fake, 0);
        pool.fault_every = 0;
        assert_segq(&q, "[0][1][2][3]");
        cr_assert_eq(fake.in_use, q.nring);
        core_segq_clear(&q, &pool, &fake);
        cr_assert_eq(fake.in_use, 0);
        fake.nfree = 0; /* the fake ring never republishes: start each round full */
    }
}

Test(core_buf, fault_injection_fails_every_nth, .init = fake_up, .fini = fake_down)
{
    struct core_segq q;
    char *x = core_blk_get(&pool);
    int fails = 0;

    core_segq_init(&q);
    pool.fault_every = 3;
    pool.fault_count = 0;
    for (int i = 0; i < 9; i++)
        fails += core_segq_push_blk(&q, &pool, x, 1, x) == -ENOMEM;
    cr_assert_eq(fails, 3);
    cr_assert_eq(q.bytes, 6, "a failed push queues nothing");
    pool.fault_every = 0;
    core_segq_clear(&q, &pool, &fake);
    core_blk_put(&pool, x);
}
#endif

/* A queue moves whole to an empty one, its references and counts with it. */
Test(core_buf, segq_move_takes_everything, .init = fake_up, .fini = fake_down)
{
    struct core_segq a, b;
    void *blk = core_blk_get(&pool);

    cr_assert_not_null(blk);
    core_segq_init(&a);
    core_segq_init(&b);
    core_segq_move(&b, &a); /* empty into empty */
    cr_assert_null(b.head);
    cr_assert_eq(b.tailp, &b.head);
    cr_assert_eq(core_segq_push_blk(&a, &pool, blk, 10, blk), 0);
    cr_assert_eq(core_segq_push(&a, &pool, &fake, fake_fill(0, "abc"), 3, 0), 0);
    core_buf_release(&fake, 0); /* the queue's reference is the last */
    core_segq_move(&b, &a);
    cr_assert_null(a.head);
    cr_assert_eq(a.tailp, &a.head);
    cr_assert_eq(a.bytes + a.nring, 0);
    cr_assert_eq(b.bytes, 13);
    cr_assert_eq(b.nring, 1);
    /* the moved queue appends at its own tail */
    cr_assert_eq(core_segq_push_blk(&b, &pool, (char *)blk + 10, 2, blk), 0);
    cr_assert_eq(b.bytes, 15);
    core_segq_clear(&b, &pool, &fake);
    cr_assert_eq(fake.in_use, 0);
    core_blk_put(&pool, blk);
}

/* Bytes written right behind a queued block segment join it (one send, not two). */
Test(core_buf, segq_tail_grows_in_its_block, .init = fake_up, .fini = fake_down)
{
    struct core_segq q;
    char *blk = core_blk_get(&pool);

    cr_assert_not_null(blk);
    core_segq_init(&q);
    cr_assert_not(core_segq_tail_ends_at(&q, blk), "an empty queue has no tail");
    cr_assert_eq(core_segq_push_blk(&q, &pool, blk, 8, blk), 0);
    cr_assert(core_segq_tail_ends_at(&q, blk + 8));
    cr_assert_not(core_segq_tail_ends_at(&q, blk + 9));
    core_segq_tail_grow(&q, 4);
    cr_assert_eq(q.bytes, 12);
    cr_assert_eq(q.head->len, 12);
    cr_assert(core_segq_tail_ends_at(&q, blk + 12));
    /* a ring buffer's segment never grows: its buffer is the kernel's */
    cr_assert_eq(core_segq_push(&q, &pool, &fake, fake_fill(1, "xy"), 2, 1), 0);
    core_buf_release(&fake, 1);
    cr_assert_not(core_segq_tail_ends_at(&q, core_buf_ptr(&fake, 1) + 2));
    core_segq_clear(&q, &pool, &fake);
    core_blk_put(&pool, blk);
}
