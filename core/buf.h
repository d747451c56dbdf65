/*
 * Per-thread memory: the provided-buffer ring that multishot recv fills,
 * reference-counted so one received buffer can be queued for sending by
 * several segments; free lists of segments (views queued on a socket), of
 * fixed-size blocks for request and response heads, and of chunks, each
 * holding what recent load used (struct core_freelist).
 * Nothing here is thread-safe: each worker owns its own.
 */
#ifndef RINGPROXY_CORE_BUF_H
#define RINGPROXY_CORE_BUF_H

#include <stddef.h>
#include <stdint.h>

#include <liburing.h>

/*
 * Only a window of the free buffers is published to the kernel at a time,
 * the lowest-numbered free ones first: the kernel receives into the same few
 * buffers, still in the cache, rather than cycling through all of them, and
 * the buffers in use stay at the start of the mapping, so the memory the
 * ring holds follows its peak use and the rest can be given back
 * (core_bufring_trim). The window follows how many buffers a loop turn uses.
 */
#define CORE_BUF_WINDOW_MIN 32

struct core_bufring {
    struct io_uring_buf_ring *br;
    char *mem;
    uint16_t *refs;
    uint64_t *freemap; /* bit per buffer: free and not published */
    uint32_t nfree;
    uint32_t nbufs;
    uint32_t bufsz;
    uint32_t published; /* in the ring, not yet picked by the kernel */
    uint32_t window;    /* how many to keep published */
    uint32_t taken;     /* picked by the kernel since the last flush */
    uint32_t in_use;
    uint32_t peak;     /* most in use at once since the last trim */
    uint8_t *resident; /* per buffer: written since it was last given back (core_bufring_trim) */
    uint32_t group;    /* buffers given back together (a huge page's worth, or 1) */
    uint16_t bgid;
};

/*
 * Map and register a ring of nbufs (power of two) buffers of bufsz bytes.
 * ring NULL: map it only (the epoll engine takes its buffers itself).
 */
int core_bufring_init(struct core_bufring *b, struct io_uring *ring, uint16_t bgid, uint32_t nbufs,
                      uint32_t bufsz);
void core_bufring_exit(struct core_bufring *b, struct io_uring *ring);

static inline char *core_buf_ptr(const struct core_bufring *b, uint16_t bid)
{
    return b->mem + (size_t)bid * b->bufsz;
}

/* A completion handed us buffer bid: we hold one reference. */
void core_buf_take(struct core_bufring *b, uint16_t bid);
void core_buf_ref(struct core_bufring *b, uint16_t bid);
/* Drop one reference; the last one gives the buffer back to the kernel. */
void core_buf_release(struct core_bufring *b, uint16_t bid);
/* Top the published window up from the free buffers: once per loop turn. */
void core_bufring_flush(struct core_bufring *b);
/*
 * Give the memory of buffers not needed lately back to the kernel
 * (MADV_DONTNEED): whole groups of buffers not in use (free or published)
 * above the lowest ones the peak use since the last trim needed. Returns
 * the bytes given back.
 */
size_t core_bufring_trim(struct core_bufring *b);

/*
 * A view queued on a socket. Every segment owns a reference to the memory it
 * points into, a received ring buffer (bid >= 0) or a pool block (blk), so
 * nothing it points to can be reused while it is queued, whoever else lets
 * go of that memory first.
 */
struct core_seg {
    struct core_seg *next;
    const char *p;
    uint32_t len;
    int32_t bid; /* >= 0: ring buffer bid holds the bytes; -1: blk does (NULL: static bytes) */
    void *blk;
};

struct core_segq {
    struct core_seg *head;
    struct core_seg **tailp;
    size_t bytes;
    uint32_t nring; /* segments holding a ring buffer */
    void *fill;     /* the chunk core_segq_compact() fills next (a reference), or NULL */
};

/*
 * Bytes that must wait (a client that does not read, pipelined input, a
 * body the origin does not take) are copied out of the shared ring buffers
 * into chunks of this size, owned by the queue that waits (core_segq_compact).
 */
#define CORE_CHUNK_SIZE 16384

/*
 * A free list that follows the load. Objects freed under load stay listed
 * (no cap: a cap made a worker with more exchanges in flight than the cap
 * free and malloc a block per request); core_fl_trim() frees, once per
 * trim interval, what the interval did not need: as many of the coldest
 * entries as the list's low-water mark since the last trim. So steady load
 * allocates nothing, and memory the load no longer uses goes back within
 * two intervals. Entries are objects of objsz bytes whose first member is
 * the link. Under AddressSanitizer a listed object is poisoned past its
 * link, so a use after its last release is reported as if it were freed.
 */
struct core_freelist {
    void *head;
    unsigned n;
    unsigned low; /* the fewest entries listed since the last trim */
    size_t objsz; /* of its objects: what a trim frees, what the sanitizer poisons */
};

#if defined(__SANITIZE_ADDRESS__) /* gcc */
#define CORE_ASAN 1
#elif defined(__has_feature) /* clang */
#if __has_feature(address_sanitizer)
#define CORE_ASAN 1
#endif
#endif
#ifdef CORE_ASAN
#include <sanitizer/asan_interface.h>
#define CORE_FL_POISON(f, o)                                                                       \
    ASAN_POISON_MEMORY_REGION((char *)(o) + sizeof(void *), (f)->objsz - sizeof(void *))
#define CORE_FL_UNPOISON(f, o) ASAN_UNPOISON_MEMORY_REGION((o), (f)->objsz)
#else
#define CORE_FL_POISON(f, o) ((void)(f), (void)(o))
#define CORE_FL_UNPOISON(f, o) ((void)(f), (void)(o))
#endif

static inline void *core_fl_pop(struct core_freelist *f)
{
    void *o = f->head;

    if (!o)
        return NULL;
    f->head = *(void **)o;
    if (--f->n < f->low)
        f->low = f->n;
    CORE_FL_UNPOISON(f, o);
    return o;
}

static inline void core_fl_push(struct core_freelist *f, void *o)
{
    *(void **)o = f->head;
    f->head = o;
    f->n++;
    CORE_FL_POISON(f, o);
}

/* Free the list's low-water mark of its coldest entries (free(3)); the bytes freed. */
size_t core_fl_trim(struct core_freelist *f);
/* Free every entry. */
void core_fl_drain(struct core_freelist *f);

struct core_pool {
    struct core_freelist segs;
    struct core_freelist chunks;
    struct core_freelist blks;
#ifdef CORE_FAULT_INJECT
    uint32_t fault_every; /* test builds: every Nth segment or block allocation fails */
    uint32_t fault_count;
#endif
    uint64_t taken; /* head blocks and chunks handed out, ever */
    size_t blksz;
};

void core_pool_init(struct core_pool *p, size_t blksz);
void core_pool_exit(struct core_pool *p);
/* NULL on OOM. */
struct core_seg *core_seg_new(struct core_pool *p);
void core_seg_free(struct core_pool *p, struct core_seg *s);
/*
 * A block of p->blksz bytes with one reference, the caller's; NULL on OOM.
 * Blocks are reference-counted: each queued segment pointing into one holds
 * a reference too, and the block goes back to the free list with the last.
 */
void *core_blk_get(struct core_pool *p);
void core_blk_ref(void *blk);
/* A chunk of CORE_CHUNK_SIZE bytes, reference-counted like a block (core_blk_put frees it). */
void *core_chunk_get(struct core_pool *p);
/* Drop one reference. NULL-safe. */
void core_blk_put(struct core_pool *p, void *blk);
/* core_fl_trim() each free list; the bytes freed. */
size_t core_pool_trim(struct core_pool *p);

void core_segq_init(struct core_segq *q);
/*
 * Append a view into ring buffer bid, taking a reference to it. -ENOMEM on
 * OOM, and then nothing was queued: the caller must end what it was doing.
 */
__attribute__((warn_unused_result)) int core_segq_push(struct core_segq *q, struct core_pool *p,
                                                       struct core_bufring *b, const char *ptr,
                                                       size_t len, uint16_t bid);
/*
 * Append a view of bytes that segment src views (a ring buffer or a block),
 * taking a reference to whichever holds them. -ENOMEM as above.
 */
__attribute__((warn_unused_result)) int
core_segq_push_view(struct core_segq *q, struct core_pool *p, struct core_bufring *b,
                    const struct core_seg *src, const char *ptr, size_t len);
/* Append a view into pool block blk, taking a reference to it. -ENOMEM as above. */
__attribute__((warn_unused_result)) int core_segq_push_blk(struct core_segq *q, struct core_pool *p,
                                                           const char *ptr, size_t len, void *blk);
/*
 * Append a view of bytes that outlive every queue (the config's pages): no
 * reference is taken. -ENOMEM as above, and then a part may have been queued.
 */
__attribute__((warn_unused_result)) int
core_segq_push_static(struct core_segq *q, struct core_pool *p, const char *ptr, size_t len);
/* Drop n bytes from the front, releasing what they held. */
void core_segq_consume(struct core_segq *q, struct core_pool *p, struct core_bufring *b, size_t n);
/*
 * Copy the bytes of every segment after the first skip ones that view a ring
 * buffer into chunks, and drop the ring buffer references: the queue then
 * holds no shared buffer however long it waits. Consecutive bytes share a
 * chunk. -ENOMEM when a chunk or segment could not be had; what was done
 * stays done and nothing is lost either way.
 */
int core_segq_compact(struct core_segq *q, struct core_pool *p, struct core_bufring *b,
                      unsigned skip);
/* Keep the first keep bytes (at most q->bytes), releasing what the rest held. */
void core_segq_truncate(struct core_segq *q, struct core_pool *p, struct core_bufring *b,
                        size_t keep);
/* Drop everything. */
void core_segq_clear(struct core_segq *q, struct core_pool *p, struct core_bufring *b);
/* Move everything queued in src (and its fill chunk) to dst, which must be empty; src is left
 * empty. */
void core_segq_move(struct core_segq *dst, struct core_segq *src);
/*
 * Does q's last segment view a block and end exactly at end? Then bytes the
 * caller writes at end (inside that block) can join it: core_segq_tail_grow().
 */
int core_segq_tail_ends_at(const struct core_segq *q, const char *end);
void core_segq_tail_grow(struct core_segq *q, size_t n);

#endif
