#include "core/buf.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define HUGE_PAGE ((size_t)2 << 20)

/*
 * Anonymous memory for the receive buffers, on 2 MiB boundaries and marked
 * for transparent huge pages: the kernel copies every received byte into it
 * and every sent byte out of it, and with 4 KiB pages a 64 KiB buffer is 16
 * TLB entries. Where THP is off the advice is ignored and the memory works
 * the same. The kernel does not always place a mapping on a 2 MiB
 * boundary: map 2 MiB more and give back the edges.
 */
static void *map_buffers(size_t len)
{
    /* whole huge pages only; any other size is mapped as it is */
    size_t extra = len && len % HUGE_PAGE == 0 ? HUGE_PAGE : 0;
    char *p = mmap(NULL, len + extra, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    char *at;

    if (p == MAP_FAILED)
        return NULL;
    if (!extra)
        return p;
    at = (char *)(((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (at > p)
        (void)munmap(p, (size_t)(at - p));
    (void)munmap(at + len, (size_t)(p + extra - at));
    (void)madvise(at, len, MADV_HUGEPAGE);
    return at;
}

int core_bufring_init(struct core_bufring *b, struct io_uring *ring, uint16_t bgid, uint32_t nbufs,
                      uint32_t bufsz)
{
    struct io_uring_buf_reg reg = {0};
    size_t ringsz = nbufs * sizeof(struct io_uring_buf);
    int r;

    *b = (struct core_bufring){.nbufs = nbufs, .bufsz = bufsz, .bgid = bgid};
    /* liburing 2.3 has no io_uring_setup_buf_ring(): map the ring ourselves. */
    b->br = mmap(NULL, ringsz, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (b->br == MAP_FAILED) {
        b->br = NULL;
        return -errno;
    }
    b->mem = map_buffers((size_t)nbufs * bufsz);
    /* core_bufring_trim()'s unit: a huge page where map_buffers() asked for them */
    b->group = (size_t)nbufs * bufsz % HUGE_PAGE == 0 && HUGE_PAGE % bufsz == 0
                   ? (uint32_t)(HUGE_PAGE / bufsz)
                   : 1;
    if (!b->mem) {
        r = -errno;
        goto fail;
    }
    b->refs = calloc(nbufs, sizeof(*b->refs));
    b->freemap = calloc((nbufs + 63) / 64, sizeof(*b->freemap));
    b->resident = calloc(nbufs, 1);
    if (!b->refs || !b->freemap || !b->resident) {
        r = -ENOMEM;
        goto fail;
    }
    reg.ring_addr = (uintptr_t)b->br;
    reg.ring_entries = nbufs;
    reg.bgid = bgid;
    /* without a ring (the epoll engine) the same ring is read by core/epoll.c */
    r = ring ? io_uring_register_buf_ring(ring, &reg, 0) : 0;
    if (r < 0)
        goto fail;
    io_uring_buf_ring_init(b->br);
    for (uint32_t i = 0; i < nbufs; i++)
        b->freemap[i / 64] |= 1ull << (i % 64);
    b->nfree = nbufs;
    b->window = nbufs < CORE_BUF_WINDOW_MIN ? nbufs : CORE_BUF_WINDOW_MIN;
    core_bufring_flush(b);
    return 0;
fail:
    free(b->refs);
    free(b->freemap);
    free(b->resident);
    if (b->mem)
        (void)munmap(b->mem, (size_t)nbufs * bufsz);
    (void)munmap(b->br, ringsz);
    *b = (struct core_bufring){0};
    return r;
}

void core_bufring_exit(struct core_bufring *b, struct io_uring *ring)
{
    if (!b->br)
        return;
    if (ring)
        (void)io_uring_unregister_buf_ring(ring, b->bgid);
    (void)munmap(b->mem, (size_t)b->nbufs * b->bufsz);
    (void)munmap(b->br, b->nbufs * sizeof(struct io_uring_buf));
    free(b->refs);
    free(b->freemap);
    free(b->resident);
    *b = (struct core_bufring){0};
}

void core_buf_take(struct core_bufring *b, uint16_t bid)
{
    b->refs[bid] = 1;
    b->resident[bid] = 1;
    if (++b->in_use > b->peak)
        b->peak = b->in_use;
    b->published--;
    b->taken++;
}

void core_buf_ref(struct core_bufring *b, uint16_t bid)
{
    b->refs[bid]++;
}

void core_buf_release(struct core_bufring *b, uint16_t bid)
{
    if (--b->refs[bid])
        return;
    b->in_use--;
    b->freemap[bid / 64] |= 1ull << (bid % 64);
    b->nfree++;
}

/* The lowest free buffer, taken off the free map; there must be one. */
static uint16_t lowest_free(struct core_bufring *b)
{
    uint32_t i = 0;

    while (!b->freemap[i])
        i++;
    uint32_t bit = (uint32_t)__builtin_ctzll(b->freemap[i]);
    b->freemap[i] &= b->freemap[i] - 1;
    b->nfree--;
    return (uint16_t)(i * 64 + bit);
}

void core_bufring_flush(struct core_bufring *b)
{
    uint32_t want = 2 * b->taken, n = 0;

    /*
     * Keep about two turns' worth published: grow at once when a turn used
     * more (or drained the ring), shrink slowly when it used less.
     */
    if (!b->published && b->taken)
        want = 2 * b->window;
    if (want < CORE_BUF_WINDOW_MIN)
        want = CORE_BUF_WINDOW_MIN;
    if (want > b->nbufs)
        want = b->nbufs;
    if (want >= b->window)
        b->window = want;
    else
        b->window -= (b->window - want + 15) / 16;
    b->taken = 0;
    while (b->published + n < b->window && b->nfree) {
        uint16_t bid = lowest_free(b);

        io_uring_buf_ring_add(b->br, core_buf_ptr(b, bid), b->bufsz, bid,
                              io_uring_buf_ring_mask(b->nbufs), (int)n);
        n++;
    }
    if (n) {
        io_uring_buf_ring_advance(b->br, (int)n);
        b->published += n;
    }
}

/*
 * Buffers are given back in groups that fill whole pages of the mapping: 2
 * MiB where it is advised for huge pages. A part of a huge page given back
 * would come back at once: khugepaged collapses a range that has any page
 * left into a whole huge page again.
 *
 * Published buffers are given back too (the window stays as large as the
 * peak made it until the kernel uses them): the kernel writes into a
 * provided buffer only while receiving for this ring, which happens in
 * this thread (submission, task work), never while it runs madvise(); a
 * buffer given back reads as zeros, and the receive that uses it next
 * faults its memory in again.
 */
size_t core_bufring_trim(struct core_bufring *b)
{
    uint32_t group = b->group;
    /* the lowest groups are the ones the peak used (and a minimal window): they stay */
    uint32_t from = (b->peak + CORE_BUF_WINDOW_MIN + group - 1) / group * group;
    size_t freed = 0;

    b->peak = b->in_use;
    for (uint32_t g = from; g + group <= b->nbufs; g += group) {
        uint32_t all = 1, any = 0;

        for (uint32_t i = g; i < g + group; i++) {
            all &= !b->refs[i];
            any |= b->resident[i];
        }
        if (!all || !any)
            continue;
        (void)madvise(core_buf_ptr(b, (uint16_t)g), (size_t)group * b->bufsz, MADV_DONTNEED);
        freed += (size_t)group * b->bufsz;
        memset(b->resident + g, 0, group);
    }
    return freed;
}

/*
 * A block's reference count lives in front of it; 16 bytes keep the block
 * itself as aligned as malloc's memory.
 */
struct blk_hdr {
    union {
        uint32_t refs;
        struct blk_hdr *next; /* on the free list */
    };
    uint8_t chunk; /* a chunk, not a head block */
    char pad[3];
    uint32_t used; /* chunks: bytes filled so far; nothing views beyond them */
};
_Static_assert(sizeof(struct blk_hdr) == 16, "block header");

static inline struct blk_hdr *hdr_of(void *blk)
{
    return (struct blk_hdr *)blk - 1;
}

size_t core_fl_trim(struct core_freelist *f)
{
    unsigned n = f->low;
    void **at = &f->head;

    if (!n) {
        f->low = f->n;
        return 0;
    }
    for (unsigned i = f->n - n; i > 0; i--)
        at = (void **)*at;
    for (unsigned i = 0; i < n; i++) {
        void *o = *at;

        *at = *(void **)o;
        CORE_FL_UNPOISON(f, o);
        free(o);
    }
    f->n -= n;
    f->low = f->n;
    return n * f->objsz;
}

void core_fl_drain(struct core_freelist *f)
{
    f->low = f->n;
    (void)core_fl_trim(f);
}

void core_pool_init(struct core_pool *p, size_t blksz)
{
    *p = (struct core_pool){.segs.objsz = sizeof(struct core_seg),
                            .chunks.objsz = sizeof(struct blk_hdr) + CORE_CHUNK_SIZE,
                            .blks.objsz = sizeof(struct blk_hdr) + blksz,
                            .blksz = blksz};
#ifdef CORE_FAULT_INJECT
    {
        const char *e = getenv("RINGPROXY_FAULT_ALLOC_EVERY");
        p->fault_every = e ? (uint32_t)strtoul(e, NULL, 10) : 0;
    }
#endif
}

/* Test builds: does this allocation fail? */
static inline int fault(struct core_pool *p)
{
#ifdef CORE_FAULT_INJECT
    return p->fault_every && ++p->fault_count % p->fault_every == 0;
#else
    (void)p;
    return 0;
#endif
}

void core_pool_exit(struct core_pool *p)
{
    core_fl_drain(&p->segs);
    core_fl_drain(&p->blks);
    core_fl_drain(&p->chunks);
}

struct core_seg *core_seg_new(struct core_pool *p)
{
    struct core_seg *s;

    if (fault(p))
        return NULL;
    if ((s = core_fl_pop(&p->segs)))
        return s;
    return malloc(sizeof(*s));
}

void core_seg_free(struct core_pool *p, struct core_seg *s)
{
    core_fl_push(&p->segs, s);
}

/* Head blocks and chunks: one free list each, the same header (in objsz). */
static void *blk_take(struct core_pool *p, struct core_freelist *f, int chunk)
{
    struct blk_hdr *h;

    if (fault(p))
        return NULL;
    if (!(h = core_fl_pop(f)) && !(h = malloc(f->objsz)))
        return NULL;
    p->taken++;
    h->refs = 1;
    h->chunk = (uint8_t)chunk;
    h->used = 0;
    return h + 1;
}

size_t core_pool_trim(struct core_pool *p)
{
    return core_fl_trim(&p->segs) + core_fl_trim(&p->blks) + core_fl_trim(&p->chunks);
}

void *core_blk_get(struct core_pool *p)
{
    return blk_take(p, &p->blks, 0);
}

void *core_chunk_get(struct core_pool *p)
{
    return blk_take(p, &p->chunks, 1);
}

/*
 * A block's kind, read before its count is touched: refs shares its bytes
 * with the free list's link, which is not poisoned, while the kind is; so
 * under AddressSanitizer a reference taken or dropped on a listed block
 * (a double put) is reported here instead of silently bending the link.
 */
static inline uint8_t blk_kind(const struct blk_hdr *h)
{
    return *(const volatile uint8_t *)&h->chunk;
}

void core_blk_ref(void *blk)
{
    if (blk) {
        (void)blk_kind(hdr_of(blk));
        hdr_of(blk)->refs++;
    }
}

void core_blk_put(struct core_pool *p, void *blk)
{
    struct blk_hdr *h;
    uint8_t chunk;

    if (!blk)
        return;
    h = hdr_of(blk);
    chunk = blk_kind(h);
    if (--h->refs)
        return;
    core_fl_push(chunk ? &p->chunks : &p->blks, h);
}

void core_segq_init(struct core_segq *q)
{
    q->head = NULL;
    q->tailp = &q->head;
    q->bytes = 0;
    q->nring = 0;
    q->fill = NULL;
}

void core_segq_move(struct core_segq *dst, struct core_segq *src)
{
    *dst = *src;
    if (!dst->head)
        dst->tailp = &dst->head;
    core_segq_init(src);
}

int core_segq_tail_ends_at(const struct core_segq *q, const char *end)
{
    const struct core_seg *t;

    if (!q->head)
        return 0;
    t = (const struct core_seg *)((const char *)q->tailp - offsetof(struct core_seg, next));
    return t->bid < 0 && t->blk && t->p + t->len == end;
}

void core_segq_tail_grow(struct core_segq *q, size_t n)
{
    struct core_seg *t = (struct core_seg *)((char *)q->tailp - offsetof(struct core_seg, next));

    t->len += (uint32_t)n;
    q->bytes += n;
}

static void segq_append(struct core_segq *q, struct core_seg *s)
{
    *q->tailp = s;
    q->tailp = &s->next;
    q->bytes += s->len;
}

int core_segq_push(struct core_segq *q, struct core_pool *p, struct core_bufring *b,
                   const char *ptr, size_t len, uint16_t bid)
{
    struct core_seg *s;

    if (!len)
        return 0;
    s = core_seg_new(p);
    if (!s)
        return -ENOMEM;
    *s = (struct core_seg){.p = ptr, .len = (uint32_t)len, .bid = bid};
    core_buf_ref(b, bid);
    q->nring++;
    segq_append(q, s);
    return 0;
}

int core_segq_push_blk(struct core_segq *q, struct core_pool *p, const char *ptr, size_t len,
                       void *blk)
{
    struct core_seg *s;

    if (!len)
        return 0;
    s = core_seg_new(p);
    if (!s)
        return -ENOMEM;
    *s = (struct core_seg){.p = ptr, .len = (uint32_t)len, .bid = -1, .blk = blk};
    core_blk_ref(blk);
    segq_append(q, s);
    return 0;
}

int core_segq_push_static(struct core_segq *q, struct core_pool *p, const char *ptr, size_t len)
{
    while (len) {
        /* a segment's length is 32 bits */
        size_t n = len < UINT32_MAX ? len : UINT32_MAX;
        struct core_seg *s = core_seg_new(p);

        if (!s)
            return -ENOMEM;
        *s = (struct core_seg){.p = ptr, .len = (uint32_t)n, .bid = -1, .blk = NULL};
        segq_append(q, s);
        ptr += n;
        len -= n;
    }
    return 0;
}

int core_segq_push_view(struct core_segq *q, struct core_pool *p, struct core_bufring *b,
                        const struct core_seg *src, const char *ptr, size_t len)
{
    if (src->bid >= 0)
        return core_segq_push(q, p, b, ptr, len, (uint16_t)src->bid);
    return core_segq_push_blk(q, p, ptr, len, src->blk);
}

static void seg_release(struct core_segq *q, struct core_pool *p, struct core_bufring *b,
                        struct core_seg *s)
{
    if (s->bid >= 0) {
        core_buf_release(b, (uint16_t)s->bid);
        q->nring--;
    } else {
        core_blk_put(p, s->blk);
    }
    core_seg_free(p, s);
}

int core_segq_compact(struct core_segq *q, struct core_pool *p, struct core_bufring *b,
                      unsigned skip)
{
    struct core_seg **pp = &q->head, *prev = NULL, *s;
    /* the chunk being filled, and how far: the queue's last one while it has room */
    char *chunk = q->fill;
    size_t used = chunk ? hdr_of(chunk)->used : 0;
    int r = 0;

    for (unsigned i = 0; *pp && i < skip; i++) {
        prev = *pp;
        pp = &prev->next;
    }
    while (q->nring && (s = *pp)) {
        const char *src = s->p;
        size_t left = s->len;

        if (s->bid < 0) {
            prev = s;
            pp = &s->next;
            continue;
        }
        /* s leaves the list; its bytes come back as chunk pieces in its place */
        *pp = s->next;
        if (q->tailp == &s->next)
            q->tailp = pp;
        while (left) {
            size_t k;

            if (!chunk || used == CORE_CHUNK_SIZE) {
                char *n = core_chunk_get(p);

                if (!n) {
                    r = -ENOMEM;
                    break;
                }
                core_blk_put(p, chunk); /* the pieces keep what they need */
                chunk = n;
                used = 0;
                q->fill = chunk;
            }
            k = left < CORE_CHUNK_SIZE - used ? left : CORE_CHUNK_SIZE - used;
            if (prev && prev->bid < 0 && prev->blk == chunk &&
                prev->p + prev->len == chunk + used) {
                prev->len += (uint32_t)k; /* right after the bytes before it */
            } else {
                struct core_seg *n = core_seg_new(p);

                if (!n) {
                    r = -ENOMEM;
                    break;
                }
                *n = (struct core_seg){
                    .next = *pp, .p = chunk + used, .len = (uint32_t)k, .bid = -1, .blk = chunk};
                core_blk_ref(chunk);
                if (q->tailp == pp)
                    q->tailp = &n->next;
                *pp = n;
                prev = n;
                pp = &n->next;
            }
            memcpy(chunk + used, src, k);
            used += k;
            hdr_of(chunk)->used = (uint32_t)used;
            src += k;
            left -= k;
        }
        if (left) {
            /* out of memory: what was not copied stays where it was */
            s->p = src;
            s->len = (uint32_t)left;
            s->next = *pp;
            if (q->tailp == pp)
                q->tailp = &s->next;
            *pp = s;
            break;
        }
        core_buf_release(b, (uint16_t)s->bid);
        q->nring--;
        core_seg_free(p, s);
    }
    return r; /* q->fill keeps the chunk's reference for the next call */
}

void core_segq_truncate(struct core_segq *q, struct core_pool *p, struct core_bufring *b,
                        size_t keep)
{
    struct core_seg **pp = &q->head, *s;
    size_t at = 0;

    if (keep >= q->bytes)
        return;
    while ((s = *pp) && at + s->len <= keep) {
        at += s->len;
        pp = &s->next;
    }
    if (keep > at) {
        s->len = (uint32_t)(keep - at);
        pp = &s->next;
    }
    s = *pp;
    *pp = NULL;
    q->tailp = pp;
    q->bytes = keep;
    while (s) {
        struct core_seg *n = s->next;

        seg_release(q, p, b, s);
        s = n;
    }
    if (!q->head) {
        core_blk_put(p, q->fill);
        q->fill = NULL;
    }
}

void core_segq_consume(struct core_segq *q, struct core_pool *p, struct core_bufring *b, size_t n)
{
    while (n && q->head) {
        struct core_seg *s = q->head;

        if (n < s->len) {
            s->p += n;
            s->len -= (uint32_t)n;
            q->bytes -= n;
            return;
        }
        n -= s->len;
        q->bytes -= s->len;
        q->head = s->next;
        seg_release(q, p, b, s);
    }
    if (!q->head) {
        q->tailp = &q->head;
        core_blk_put(p, q->fill); /* an empty queue holds no memory */
        q->fill = NULL;
    }
}

void core_segq_clear(struct core_segq *q, struct core_pool *p, struct core_bufring *b)
{
    core_segq_consume(q, p, b, q->bytes);
}
