/*
 * The proxy state machine. A client connection (struct http_conn) reads one
 * request at a time; its head is copied into a block, checked, rewritten and
 * queued on an upstream connection (struct http_up) taken from the worker's
 * pool or newly connected. Bodies are never copied: the received buffers are
 * queued on the other socket by reference. Pipelined requests wait in the
 * client's receive queue until the current response has been sent.
 *
 * Every socket (struct http_end) counts its operations in flight and is freed
 * only when that count is zero after a close: shutdown, then free on the
 * last completion.
 */
#include "http/proxy.h"

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#include "core/list.h"
#include "core/loop.h"
#include "core/timer.h"
#include "http/admin.h"
#include "http/forward.h"
#include "http/msg.h"
#include "http/rules.h"
#include "log/error.h"
#include "log/out.h"
#include "net/pick.h"
#include "net/sock.h"

#define HIGH_WATER (128 * 1024) /* bytes queued per direction before reading pauses */
/*
 * Ring buffers a queue may hold before reading pauses, whatever their bytes:
 * each receive takes a whole buffer, so without this a peer sending a byte
 * at a time could pin every buffer of the worker with a few hundred bytes.
 */
#define MAX_RING_SEGS 8
/*
 * When more than half the ring's buffers are held, every SWEEP_MS the queues
 * that wait move their bytes out of them (pressure_sweep).
 */
#define SWEEP_MS 2
/* A queue is stalled, and may be copied out of the ring, once it waited this long. */
#define STALL_MS 10
/*
 * Out of descriptors (EMFILE, ENFILE) or kernel memory, accepting stops for
 * this long instead of failing in a loop; existing connections are served.
 */
#define ACCEPT_PAUSE_MS 100
/* Pipelined input read ahead while a response is under way, at most. */
#define PIPELINE_MAX (16 * 1024)
#define IOV_SEND 16
#define LINGER_MS 2000
/*
 * The end of a head block's output area is kept for ringproxy's own answers
 * (conn_respond): they never overwrite the rewritten request head, which an
 * upstream's queue or send in flight may still be reading.
 */
#define ANSWER_ROOM 8192 /* the edge rules' response headers too (a reload may add rules) */
/*
 * How long an upstream connection stays out of the pool after a response
 * that has no body by its status or request (HEAD, 204, 304): origins that
 * send a body anyway are a known class of bug, and bytes arriving in this
 * time close the connection instead of becoming the next client's response.
 */
#define SETTLE_MS 250
/*
 * Every TRIM_MS memory not needed lately is given back: receive buffers
 * beyond the last second's peak, and the free blocks, chunks, segments and
 * send vectors the last TRIM_MS did not use (struct core_freelist); once a
 * worker took no block for a whole TRIM_MS and freed TRIM_MIN_BYTES or more
 * since it last did, the allocator's free pages (malloc_trim) too.
 */
#define TRIM_MS 1000
#define TRIM_MIN_BYTES (64 * 1024)

enum end_side {
    SIDE_CLIENT = 0,
    SIDE_UP,
    SIDE_ADMIN,
    /* must stay last */
    SIDE_COUNT
};

enum rx_state {
    RX_OFF = 0,
    RX_ON,
    RX_CANCEL,
    /* must stay last */
    RX_COUNT
};

/* Client side. */
enum http_state {
    HST_IDLE = 0, /* keep-alive, waiting for a request */
    HST_HEAD,     /* reading a request head */
    HST_BODY,     /* forwarding the request body */
    HST_WAIT,     /* request complete, response under way */
    HST_AUTH,     /* head read, parked while a basic_auth password is checked (http/auth.h) */
    HST_TUNNEL,   /* after 101: bytes both ways */
    HST_LINGER,   /* response sent, write side shut, draining input until EOF */
    /* must stay last */
    HST_COUNT
};

/* Upstream side. */
enum up_state {
    UPS_CONNECT = 0,
    UPS_HEAD,
    UPS_BODY,
    UPS_DONE,
    UPS_POOL,
    UPS_SETTLE, /* idle after a bodiless response: not reused for SETTLE_MS */
    UPS_TUNNEL,
    /* must stay last */
    UPS_COUNT
};

enum tclass {
    TC_NONE = 0,
    TC_IDLE,
    TC_HEADER,
    TC_SEND, /* the client must take what is queued */
    TC_BODY, /* the client must send its request body */
    TC_LINGER,
    TC_CONNECT,
    TC_RESPONSE,
    TC_POOL,
    TC_SETTLE,
    TC_AUTH, /* a parked request's password check must come back */
    /* must stay last */
    TC_COUNT
};

struct http_worker;

struct http_end {
    struct core_op op_recv, op_send, op_connect, op_poll;
    uint8_t side;
    uint8_t rx;
    uint8_t sending;
    uint8_t closing;
    uint8_t eof;
    uint8_t tclass;
    uint8_t starved;
    uint8_t moved_rx, moved_tx; /* bytes came in / went out since the last conn_sync() */
    uint8_t shut_wr;            /* a tunnel forwarded the other side's half-close here */
    uint8_t polling;            /* the socket took no more: waiting for POLLOUT */
    uint8_t tx_nsegs;           /* segments of the send in flight */
    uint32_t tx_attempt;        /* bytes of the send in flight */
    uint32_t rx_turn;           /* loop turn the receive was last armed in */
    uint64_t tx_wait_ms;        /* since when the send queue waits for the peer (0: it does not) */
    uint64_t rx_wait_ms;        /* since when received bytes wait in the receive queue */
    uint16_t nops;
    int fd;
    struct core_segq rxq, txq;
    struct core_timer timer;
    struct core_list live; /* in the worker's sockets */
    /* in w->starved while waiting for receive buffers, then in w->reap once closed */
    struct core_list wait;
    uint8_t reaping;
    uint64_t tx_total, rx_total;
    struct tx_vec *vec; /* a sendmsg in flight: its vector */
};

/*
 * The vector of a sendmsg in flight, taken from the worker for the time of
 * the send: a socket that sends nothing, or one segment, holds none.
 */
struct tx_vec {
    struct tx_vec *next; /* in the worker's free list */
    struct msghdr msg;
    struct iovec iov[IOV_SEND];
};

struct http_up;

/*
 * A worker's use of a config generation (struct http_gen): the newest one
 * (w->pin) and those that exchanges begun before a reload still run on
 * (w->old_pins). The worker holds one of the generation's refs while it
 * has the pin; users counts without atomics.
 */
struct gen_pin {
    struct http_gen *g;
    const struct cfg_rules *rules; /* g's, or NULL */
    unsigned users;                /* exchanges on it */
    struct gen_pin *next;          /* in w->old_pins */
    _Atomic uint64_t *hits;        /* this worker's row of g->rule_hits */
};

struct http_conn {
    struct http_end e;
    uint8_t state;
    uint8_t keep_alive; /* client connection stays open after this response */
    uint8_t req_done;   /* request message fully read */
    uint8_t resp_done;  /* response fully queued for the client */
    uint8_t resp_begun; /* the final response head was queued (at final_mark) */
    uint8_t upgrade;    /* request asked for an upgrade */
    uint8_t idempotent;
    uint8_t has_body;
    uint8_t attempts;
    uint8_t http10;
    uint8_t decode;            /* client can't take chunked: de-chunk, close-delimit */
    uint8_t discard;           /* an unread request body follows: drop input until close */
    uint8_t abort_after_flush; /* the response broke: send what we have, then close */
    uint8_t logged;
    uint16_t status;
    struct http_up *up;
    struct http_msg *req; /* the request's, in blk (struct conn_xa); NULL without blk */
    struct http_scan scan;
    char *blk;
    uint32_t in_len;  /* head bytes in blk */
    uint32_t out_len; /* rewritten request head bytes */
    struct timespec start_rt;
    uint64_t start_us;
    uint64_t tx_mark, rx_mark; /* e.tx_total / e.rx_total at request start */
    uint64_t final_mark;       /* e.tx_total + txq bytes when the final head was queued */
    struct core_str host_sent; /* the Host the origin got (the log's hostname) */
    uint64_t body_sent_mark;   /* e.tx_total when the response head was queued */
    /* the final response's head, for the log: its fields live in resp_blk (a reference) */
    void *resp_blk;
    const struct core_hdr *resp_hdrs;
    uint16_t nresp_hdrs;
    enum http_term termination;
    /* the final response head, for the log (in the upstream's block) */
    int upstream_status;
    int64_t up_connect_us, up_header_us, up_total_us, up_bytes;
    int up_reused;
    char peer[NET_ADDRSTRLEN];      /* filled on first use */
    struct http_auth_job *auth_job; /* HST_AUTH: the password check under way */
    struct gen_pin *pin;            /* the config generation of the exchange (struct http_gen) */
};

/*
 * What only an exchange needs, kept in its head block (at its start, see
 * struct blk_layout) rather than in struct http_conn: an idle keep-alive connection
 * holds neither.
 */
struct conn_xa {
    struct http_msg req;
    char upstream_addr[NET_ADDRSTRLEN]; /* empty until an upstream is chosen */
    uint8_t ruled;                      /* the edge rules ran: rr and rv hold their verdict */
    struct http_rules_req rr;           /* views into the head; rr.npath only while it is read */
    struct http_rules_verdict rv;
};

static inline struct conn_xa *conn_xa(const struct http_conn *c)
{
    return (struct conn_xa *)c->req;
}

/* A parked request's check runs on without it: its result finds no request and is dropped. */
static inline void auth_detach(struct http_conn *c)
{
    if (c->auth_job) {
        c->auth_job->cookie = NULL;
        c->auth_job = NULL;
    }
}

struct http_up {
    struct http_end e;
    uint8_t state;
    uint8_t reused;
    uint8_t got_bytes;
    uint8_t reusable;
    uint8_t settle;       /* the response had no body by its status or request */
    uint8_t sink;         /* an error page replaced the response: its body is read and dropped */
    uint32_t rcvbuf_cost; /* its share of w->rcvbuf_held: twice its fixed SO_RCVBUF, or 0 */
    struct http_conn *c;
    struct http_msg resp;
    struct http_scan scan;
    char *blk;
    uint32_t in_len;
    uint32_t out_len;
    struct net_addr addr;
    uint64_t addr_gen; /* the address set addr was last found in */
    uint64_t t_connect, t_sent;
    uint64_t tx_mark;           /* e.tx_total when this exchange's request was queued */
    struct core_list pool_link; /* in w->pool while idle */
};

/*
 * A head block, one per exchange and side, from the worker's pool:
 *   [0, hdrs)         struct conn_xa (the client's side; unused on the other)
 *   [hdrs, in)        the parsed fields: struct core_hdr[max_hdrs]
 *   [in, out)         the head as received (in_len bytes; max_header_bytes)
 *   [out, answer)     the head as rewritten (out_len bytes); on the upstream's
 *                     side its interim heads and a small body follow, into
 *                     the answer room, which that side does not use
 *   [answer, size)    ANSWER_ROOM: the proxy's own answer to the client
 *                     (conn_respond), never over a rewritten head still queued
 * What every exchange touches (its state, its fields, the head as it came)
 * lies together at the front: a block is ~2.5 x max_header_bytes, and with
 * the state and fields at its far end a small exchange touched five pages of
 * it instead of three (more cache and TLB misses as concurrency grows, and
 * more resident memory per exchange in flight).
 */
struct blk_layout {
    size_t hdrs, in, out, answer, size;
};

/* Regions start 16-byte aligned, as malloc's memory (the block itself) is. */
static inline size_t align16(size_t n)
{
    return (n + 15) & ~(size_t)15;
}

struct http_worker {
    struct core_thread *t;
    struct http_shared *sh;
    const struct cfg *cfg;
    struct http_stats *st;
    struct http_limits req_limits, resp_limits;
    int lfd[HTTP_MAX_LISTENERS];
    struct core_op op_accept[HTTP_MAX_LISTENERS];
    uint8_t accepting[HTTP_MAX_LISTENERS];
    uint8_t accept_paused; /* out of descriptors (/healthz 503) since the last failed accept */
    uint8_t accept_said;   /* the pause was reported; until an accept succeeds again */
    uint64_t accept_resume_ms;
    struct http_admin *admin;
    struct core_tq tq[TC_COUNT];
    struct core_list live; /* every socket */
    unsigned nclients, nups;
    /*
     * Idle upstreams, most recent first: a request takes the most recent, so
     * the pool holds what recent concurrency used and the rest age out
     * (pool_idle_timeout_ms) at the tail.
     */
    struct core_list pool;
    unsigned npool;
    unsigned pool_cap; /* upstream.pool_max_idle, within the worker's share of descriptors */
    /* net.core.rmem_max cut the upstream SO_RCVBUF: not asked until then */
    uint64_t rcvbuf_retry_ms;
    uint64_t rcvbuf_held;     /* the rcvbuf_cost of the worker's upstream connections */
    struct core_list starved; /* sockets waiting for receive buffers, in the order they ran out */
    struct core_list reap;    /* closed, nothing in flight: freed at the next turn */
    struct core_freelist free_vecs;
    const struct net_addrset *addrs;
    uint64_t addrs_gen;
    struct net_pick pick; /* address choice and backoff (net/pick.h) */
    struct log_out *lo;
    char *log_line;      /* one access-log line is formatted here, then copied to lo */
    size_t log_line_max; /* log_fmt_max_line(): no line is longer */
    struct core_op op_logw;
    struct log_writer lw;       /* when and what goes to stdout (log/out.h) */
    struct http_fwd_policy fwd; /* the request rules' limits (http/forward.h) */
    uint64_t log_dropped_reported;
    uint64_t log_dropped_counted; /* in the metric */
    uint64_t log_report_ms;
    int evfd;
    uint64_t evbuf;
    struct core_op op_wake;
    int draining;
    uint64_t drain_deadline;
    struct blk_layout blk; /* of every head block (blk_layout_init()) */
    uint16_t max_hdrs;
    struct gen_pin *pin;      /* the newest config generation: new requests take it */
    struct gen_pin *old_pins; /* older ones exchanges still run on */
    struct http_auth *auth;   /* basic_auth's helpers, once a generation has them */
    char *rules_path;         /* the normalised path of the request being evaluated */
    char *rules_head;         /* a request head as the rules rewrite it */
    char *rules_cred;         /* basic_auth's decoded credentials */
    size_t rules_cred_cap;
    size_t rules_head_cap;
    uint64_t sweep_ms;   /* next pressure_sweep() */
    uint64_t trim_ms;    /* next memory_trim() */
    uint64_t trim_taken; /* the pool's count of blocks taken at the last trim */
    size_t untrimmed;    /* bytes given to the allocator since the last malloc_trim() */
    uint32_t turn;       /* loop turns so far */
};

static void end_close(struct http_worker *w, struct http_end *e);
static void end_rx_update(struct http_worker *w, struct http_end *e);
static void end_tx_kick(struct http_worker *w, struct http_end *e);
static void conn_process(struct http_worker *w, struct http_conn *c);
static void conn_unpin(struct http_worker *w, struct http_conn *c);
static void conn_check_done(struct http_worker *w, struct http_conn *c);
static void conn_eof(struct http_worker *w, struct http_conn *c);
static void conn_abort(struct http_worker *w, struct http_conn *c, enum http_term why);
static void conn_respond(struct http_worker *w, struct http_conn *c, int status,
                         enum http_term why);
static void up_process(struct http_worker *w, struct http_up *u);
static void up_failed(struct http_worker *w, struct http_up *u, enum http_term why);
static int up_attach(struct http_worker *w, struct http_conn *c, int fresh);

static const char *http_state_str(enum http_state s)
{
    static const char *const n[HST_COUNT] = {"idle", "head",   "body",  "wait",
                                             "auth", "tunnel", "linger"};
    return (unsigned)s < HST_COUNT ? n[s] : "?";
}

/* ---- sockets ---------------------------------------------------------- */

static void end_init(struct http_worker *w, struct http_end *e, uint8_t side, int fd)
{
    e->op_recv.kind = OPK_RECV;
    e->op_send.kind = OPK_SEND;
    e->op_connect.kind = OPK_CONNECT;
    e->op_poll.kind = OPK_POLL;
    e->side = side;
    e->fd = fd;
    core_segq_init(&e->rxq);
    core_segq_init(&e->txq);
    core_list_add_head(&w->live, &e->live);
}

static void end_timer(struct http_worker *w, struct http_end *e, enum tclass tc)
{
    if (tc == TC_NONE) {
        core_timer_disarm(&e->timer);
    } else {
        core_timer_arm(&w->tq[tc], &e->timer, w->t->now_ms);
    }
    e->tclass = (uint8_t)tc;
}

/* Flow control: a queue this full stops the reading that fills it. */
static inline int q_full(const struct core_segq *q)
{
    return q->bytes >= HIGH_WATER || q->nring >= MAX_RING_SEGS;
}

/*
 * Timers follow from state, in one place: each socket has the timer of
 * whoever the exchange is waiting for, and only that one. A client waiting
 * for the origin has none (the upstream's apply: 504, not a silent close); an
 * upstream held back by a slow client has none (the client's send timer
 * applies).
 */
static enum tclass conn_tclass(const struct http_conn *c)
{
    switch (c->state) {
    case HST_IDLE:
    case HST_TUNNEL:
        return TC_IDLE;
    case HST_HEAD:
        return TC_HEADER;
    case HST_LINGER:
        return TC_LINGER;
    case HST_AUTH:
        return TC_AUTH;
    default:
        break;
    }
    if (c->e.txq.bytes || c->e.sending)
        return TC_SEND; /* the client must take what is queued */
    if (c->state == HST_BODY && !c->req_done && c->up && !q_full(&c->up->e.txq))
        return TC_BODY; /* the client must send its body */
    return TC_NONE;
}

static enum tclass up_tclass(const struct http_up *u)
{
    const struct http_conn *c = u->c;

    switch (u->state) {
    case UPS_CONNECT:
        return TC_CONNECT;
    case UPS_POOL:
        return TC_POOL;
    case UPS_SETTLE:
        return TC_SETTLE;
    case UPS_HEAD:
    case UPS_BODY:
        break;
    default:
        return TC_NONE;
    }
    if (u->e.txq.bytes || u->e.sending)
        return TC_RESPONSE; /* the origin must take the request */
    if (!c || !c->req_done || q_full(&c->e.txq))
        return TC_NONE; /* waiting for the client's body, or for the client to read */
    return TC_RESPONSE;
}

/* Deadlines stay where they were set; these move with every byte. */
static int tc_slides(enum tclass tc)
{
    return tc == TC_SEND || tc == TC_BODY || tc == TC_RESPONSE || tc == TC_IDLE;
}

static void end_timer_sync(struct http_worker *w, struct http_end *e, enum tclass tc)
{
    /*
     * A deadline moves only with the bytes it waits for: bytes a client
     * sends do not excuse it from reading what it was sent, nor the reverse.
     */
    int moved = tc == TC_SEND   ? e->moved_tx
                : tc == TC_BODY ? e->moved_rx
                                : e->moved_rx | e->moved_tx;

    e->moved_rx = e->moved_tx = 0;
    if (tc != e->tclass || (moved && tc_slides(tc)))
        end_timer(w, e, tc);
}

/* After an event: do received bytes wait (the other side is full, or they are pipelined)? */
static void end_rx_wait(struct http_worker *w, struct http_end *e)
{
    if (!e->rxq.nring)
        e->rx_wait_ms = 0;
    else if (!e->rx_wait_ms)
        e->rx_wait_ms = w->t->now_ms;
}

/*
 * A tunnel forwards each side's half-close (EOF) to the other once every
 * byte received before it has been sent on, and ends when both sides have
 * closed their write side this way.
 */
static void tunnel_halfclose(struct http_worker *w, struct http_conn *c)
{
    struct http_up *u = c->up;

    if (!u || u->e.closing) {
        conn_abort(w, c, HT_NONE);
        return;
    }
    if (c->e.eof && !c->e.rxq.bytes && !u->e.txq.bytes && !u->e.sending && !u->e.shut_wr) {
        (void)shutdown(u->e.fd, SHUT_WR);
        u->e.shut_wr = 1;
    }
    if (u->e.eof && !u->e.rxq.bytes && !c->e.txq.bytes && !c->e.sending && !c->e.shut_wr) {
        (void)shutdown(c->e.fd, SHUT_WR);
        c->e.shut_wr = 1;
    }
    if (c->e.shut_wr && u->e.shut_wr)
        conn_abort(w, c, HT_NONE); /* logged when it opened */
}

/*
 * After every event on c or its upstream: each socket's timer from its
 * state, each receive armed or paused by the room its queues have.
 */
static void conn_sync(struct http_worker *w, struct http_conn *c)
{
    struct http_up *u;

    if (c->state == HST_TUNNEL && !c->e.closing)
        tunnel_halfclose(w, c);
    u = c->up;

    if (!c->e.closing) {
        end_timer_sync(w, &c->e, conn_tclass(c));
        end_rx_update(w, &c->e);
        end_rx_wait(w, &c->e);
    }
    if (u && !u->e.closing) {
        end_timer_sync(w, &u->e, up_tclass(u));
        end_rx_update(w, &u->e);
        end_rx_wait(w, &u->e);
    }
}

static int end_want_rx(struct http_worker *w, const struct http_end *e)
{
    if (e->closing || e->eof || e->fd < 0 || q_full(&e->rxq))
        return 0;
    if (e->side == SIDE_UP) {
        const struct http_up *u = (const struct http_up *)e;

        /* a client that is behind stops the reading of its response (backpressure) */
        return u->state != UPS_CONNECT && !(u->c && q_full(&u->c->e.txq));
    }
    if (e->side == SIDE_CLIENT) {
        const struct http_conn *c = (const struct http_conn *)e;

        /* pipelined requests are read ahead only a little while a response is under way */
        return (c->state != HST_WAIT && c->state != HST_AUTH) || e->rxq.bytes < PIPELINE_MAX;
    }
    return 1;
}

/*
 * A multishot receive keeps taking buffers for as long as the socket has
 * bytes, within one entry into the kernel: before its completions are seen
 * and the reading paused (HIGH_WATER), a fast origin whose client does not
 * read could fill the whole published window, and dozens of such streams
 * made the worker copy megabytes out of the ring (pressure_sweep) while
 * everyone else waited. So a socket that streams bodies takes one buffer per
 * receive: every upstream, and a client sending a body or tunnelling. An
 * idle or head-reading client keeps its multishot receive (no submission per
 * request).
 */
static int rx_one_buffer(const struct http_end *e)
{
    if (e->side == SIDE_UP)
        return 1;
    if (e->side == SIDE_CLIENT) {
        uint8_t st = ((const struct http_conn *)e)->state;
        return st == HST_BODY || st == HST_TUNNEL;
    }
    return 0;
}

static void end_rx_update(struct http_worker *w, struct http_end *e)
{
    int want = end_want_rx(w, e);
    struct io_uring_sqe *sqe;

    if (want && e->rx == RX_OFF && !e->starved) {
        sqe = core_sqe(w->t);
        if (rx_one_buffer(e))
            io_uring_prep_recv(sqe, e->fd, NULL, 0, 0);
        else
            io_uring_prep_recv_multishot(sqe, e->fd, NULL, 0, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = w->t->bufs.bgid;
        io_uring_sqe_set_data(sqe, &e->op_recv);
        e->rx = RX_ON;
        e->rx_turn = w->turn;
        e->nops++;
    } else if (!want && e->rx == RX_ON) {
        sqe = core_sqe(w->t);
        io_uring_prep_cancel(sqe, &e->op_recv, 0);
        io_uring_sqe_set_data64(sqe, CORE_UD_IGNORE);
        e->rx = RX_CANCEL;
    }
}

static struct tx_vec *vec_get(struct http_worker *w)
{
    struct tx_vec *v = core_fl_pop(&w->free_vecs);

    return v ? v : malloc(sizeof(*v));
}

static void vec_put(struct http_worker *w, struct tx_vec *v)
{
    core_fl_push(&w->free_vecs, v);
}

static void end_tx_kick(struct http_worker *w, struct http_end *e)
{
    struct io_uring_sqe *sqe;
    struct core_seg *s;
    unsigned n = 0;

    if (e->sending || e->polling || e->closing || !e->txq.bytes || e->fd < 0)
        return;
    if (e->side == SIDE_UP && ((struct http_up *)e)->state == UPS_CONNECT)
        return;
    sqe = core_sqe(w->t);
    s = e->txq.head;
    if (s->next)
        e->vec = vec_get(w);
    /*
     * Never a send that waits for room: it would hold the ring buffers it
     * points into for as long as the peer does not read. A full socket
     * answers -EAGAIN (or takes part), and on_send() waits with a poll.
     * Without a vector (out of memory) the segments go one at a time.
     */
    if (!e->vec) {
        io_uring_prep_send(sqe, e->fd, s->p, s->len, MSG_NOSIGNAL | MSG_DONTWAIT);
        e->tx_attempt = s->len;
        n = 1;
    } else {
        e->tx_attempt = 0;
        for (; s && n < IOV_SEND; s = s->next, n++) {
            e->vec->iov[n] = (struct iovec){(void *)s->p, s->len};
            e->tx_attempt += s->len;
        }
        e->vec->msg = (struct msghdr){.msg_iov = e->vec->iov, .msg_iovlen = n};
        io_uring_prep_sendmsg(sqe, e->fd, &e->vec->msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    io_uring_sqe_set_data(sqe, &e->op_send);
    e->tx_nsegs = (uint8_t)n;
    e->sending = 1;
    e->nops++;
}

/* More than half the ring's buffers are held: waiting bytes must leave them. */
static int ring_pressed(const struct http_worker *w)
{
    return w->t->bufs.in_use > w->t->bufs.nbufs / 2;
}

/*
 * e's peer takes no more for now: the send resumes when the socket has
 * room. No send is in flight meanwhile, so nothing pins the queue's ring
 * buffers, and if the peer stays stalled pressure_sweep() gives them back.
 */
static void end_tx_wait(struct http_worker *w, struct http_end *e)
{
    struct io_uring_sqe *sqe;

    if (!e->tx_wait_ms)
        e->tx_wait_ms = w->t->now_ms;
    sqe = core_sqe(w->t);
    io_uring_prep_poll_add(sqe, e->fd, POLLOUT);
    io_uring_sqe_set_data(sqe, &e->op_poll);
    e->polling = 1;
    e->nops++;
}

/*
 * Closed and nothing in flight: free at the start of the next turn, so that
 * no handler up the call stack is left holding a freed pointer.
 */
static void end_reap(struct http_worker *w, struct http_end *e)
{
    if (e->reaping)
        return;
    e->reaping = 1;
    core_list_add_tail(&w->reap, &e->wait);
}

static void end_free(struct http_worker *w, struct http_end *e)
{
    core_list_del(&e->live);
    core_list_del(&e->wait);
    if (e->fd >= 0)
        (void)close(e->fd);
    core_segq_clear(&e->txq, &w->t->pool, &w->t->bufs);
    if (e->side == SIDE_CLIENT) {
        struct http_conn *c = (struct http_conn *)e;
        core_blk_put(&w->t->pool, c->blk);
        core_blk_put(&w->t->pool, c->resp_blk);
        conn_unpin(w, c); /* after the queues: a page of its generation may have been in them */
        w->nclients--;
        STAT_DEC(w->st, clients_active);
    } else {
        struct http_up *u = (struct http_up *)e;
        core_blk_put(&w->t->pool, u->blk);
        w->rcvbuf_held -= u->rcvbuf_cost;
        w->nups--;
        STAT_DEC(w->st, upstreams_active);
    }
    w->untrimmed += e->side == SIDE_CLIENT ? sizeof(struct http_conn) : sizeof(struct http_up);
    free(e);
}

static void starved_remove(struct http_end *e)
{
    if (!e->starved)
        return;
    core_list_del(&e->wait);
    e->starved = 0;
}

/*
 * Close: drop queued data, end what is in flight, free on the last
 * completion. A shutdown() wakes every operation waiting on the socket and
 * each ends by itself: a receive reads EOF, a poll sees POLLHUP, a send
 * never waits (MSG_DONTWAIT). An io_uring cancel by descriptor would search
 * every request in flight, a cost that grows with the connections; only a
 * connect in flight is cancelled (it may not have reached the kernel yet,
 * and a shutdown before it would not stop it).
 */
static void end_close(struct http_worker *w, struct http_end *e)
{
    if (e->closing)
        return;
    e->closing = 1;
    if (e->side == SIDE_CLIENT)
        auth_detach((struct http_conn *)e);
    end_timer(w, e, TC_NONE);
    starved_remove(e);
    core_segq_clear(&e->rxq, &w->t->pool, &w->t->bufs);
    /* a send in flight still reads its segments: end_free() drops them */
    if (!e->sending)
        core_segq_clear(&e->txq, &w->t->pool, &w->t->bufs);
    if (!e->nops) {
        end_reap(w, e);
        return;
    }
    if (e->side == SIDE_UP && ((struct http_up *)e)->state == UPS_CONNECT) {
        struct io_uring_sqe *sqe = core_sqe(w->t);
        io_uring_prep_cancel(sqe, &e->op_connect, 0);
        io_uring_sqe_set_data64(sqe, CORE_UD_IGNORE);
    }
    (void)shutdown(e->fd, SHUT_RDWR);
}

/* ---- upstream pool -------------------------------------------------- */

static void pool_remove(struct http_worker *w, struct http_up *u)
{
    core_list_del(&u->pool_link);
    w->npool--;
    STAT_DEC(w->st, pool_idle);
}

static void pool_insert(struct http_worker *w, struct http_up *u)
{
    u->state = UPS_POOL;
    core_list_add_head(&w->pool, &u->pool_link);
    w->npool++;
    STAT_INC(w->st, pool_idle);
    end_timer(w, &u->e, TC_POOL);
}

static void up_close(struct http_worker *w, struct http_up *u)
{
    if (u->state == UPS_POOL)
        pool_remove(w, u);
    if (u->c && u->c->up == u)
        u->c->up = NULL;
    u->c = NULL;
    end_close(w, &u->e);
}

/* Is u's address still in the resolver's set? Looked up once per set. */
static int addr_current(struct http_worker *w, struct http_up *u)
{
    if (u->addr_gen == w->addrs->gen)
        return 1;
    for (unsigned i = 0; i < w->addrs->n; i++)
        if (!strcmp(w->addrs->a[i].str, u->addr.str)) {
            u->addr_gen = w->addrs->gen;
            return 1;
        }
    return 0;
}

/* Can u serve another request? Bytes or a close since its response say no. */
static int up_poolable(struct http_worker *w, struct http_up *u)
{
    return u->reusable && !u->e.rxq.bytes && !u->e.txq.bytes && !u->e.eof && !u->e.closing &&
           !w->draining && w->npool < w->pool_cap && addr_current(w, u);
}

/*
 * The exchange is over for u: keep it for the next request or close it.
 * An idle socket keeps reading, and any byte or close that comes while no
 * request is outstanding closes it (up_process): such bytes are never taken
 * for the next client's response.
 */
static void up_release(struct http_worker *w, struct http_up *u)
{
    u->c = NULL;
    core_blk_put(&w->t->pool, u->blk);
    u->blk = NULL;
    if (u->state != UPS_DONE || !up_poolable(w, u)) {
        up_close(w, u);
        return;
    }
    if (u->settle) {
        u->state = UPS_SETTLE;
        end_timer(w, &u->e, TC_SETTLE);
    } else {
        pool_insert(w, u);
    }
    end_rx_update(w, &u->e);
}

/*
 * c gives up its upstream before the exchange ends. When nothing of this
 * exchange went over the connection either way, it is as good as it was and
 * goes back to the pool (a stream of requests refused for a bad body must
 * not use up the pool); otherwise it is closed.
 */
static void up_drop(struct http_worker *w, struct http_conn *c)
{
    struct http_up *u = c->up;

    if (!u)
        return;
    c->up = NULL;
    if (u->state == UPS_HEAD && !u->e.sending && u->e.tx_total == u->tx_mark && !u->got_bytes) {
        core_segq_clear(&u->e.txq, &w->t->pool, &w->t->bufs);
        u->state = UPS_DONE;
        u->settle = 0;
        up_release(w, u);
        return;
    }
    up_close(w, u);
}

static void up_connect(struct http_worker *w, struct http_up *u)
{
    struct io_uring_sqe *sqe = core_sqe(w->t);

    io_uring_prep_connect(sqe, u->e.fd, (struct sockaddr *)&u->addr.sa, u->addr.len);
    io_uring_sqe_set_data(sqe, &u->e.op_connect);
    u->e.nops++;
    u->t_connect = w->t->now_us;
    end_timer(w, &u->e, TC_CONNECT);
    STAT_INC(w->st, upstream_connects);
}

/* A new upstream connection; NULL with *ret_err -ENOENT (no address) or the socket's error. */
static struct http_up *up_new(struct http_worker *w, int *ret_err)
{
    const struct net_addr *a = net_pick_next(&w->pick, w->t->now_ms);
    const struct cfg_upstream *cu = &w->cfg->upstream;
    uint32_t rcvbuf = cu->receive_buffer_bytes; /* at most 64 MiB: twice it fits */
    struct http_up *u;
    int fd, cut;

    *ret_err = -ENOENT;
    if (!a)
        return NULL;
    /*
     * upstream.receive_buffer_bytes lets the origin write a large response
     * in a few sends instead of one per window update (at 128 clients x
     * 1 MiB the whole machine's CPU per request fell by a quarter:
     * docs/performance.md). Where net.core.rmem_max is below it the socket
     * keeps the kernel's autotuning, and the next second's connects do not
     * ask again: the sysctl is read where it acts, so changing it needs no
     * restart. A socket whose client reads slowly fills to twice the value
     * (where an autotuned one stays near tcp_rmem's default), so the
     * worker's share of receive_buffer_total_bytes bounds what all of them
     * together may hold; connections past it are autotuned.
     */
    if (w->t->now_ms < w->rcvbuf_retry_ms ||
        w->rcvbuf_held + 2 * (uint64_t)rcvbuf >
            cu->receive_buffer_total_bytes / (w->sh->nworkers ? w->sh->nworkers : 1))
        rcvbuf = 0;
    fd = net_socket_for(&a->sa, rcvbuf, &cut);
    if (cut) {
        w->rcvbuf_retry_ms = w->t->now_ms + 1000;
        rcvbuf = 0;
    }
    if (fd < 0) {
        *ret_err = fd;
        return NULL;
    }
    *ret_err = -ENOMEM;
    u = calloc(1, sizeof(*u));
    if (!u) {
        (void)close(fd);
        return NULL;
    }
    u->addr = *a;
    u->addr_gen = w->addrs->gen;
    u->rcvbuf_cost = 2 * rcvbuf;
    w->rcvbuf_held += u->rcvbuf_cost;
    end_init(w, &u->e, SIDE_UP, fd);
    u->state = UPS_CONNECT;
    w->nups++;
    STAT_INC(w->st, upstreams_active);
    up_connect(w, u);
    return u;
}

/*
 * The receive buffers of all workers together take at most RING_BUDGET, or
 * an eighth of the container's memory limit (cgroup v2 memory.max) when
 * that is less, so that more workers do not mean more memory; a worker has
 * at least RING_MIN_BUFS. Memory is taken as buffers are used and given back
 * when they are no longer needed (memory_trim()).
 */
#ifndef RING_BUFSZ
#define RING_BUFSZ 65536
#endif
#define RING_BUDGET (32u << 20)
#define RING_MIN_BUFS 32
#define RING_MAX_BUFS 4096

static uint64_t cgroup_memory_max(void)
{
    char buf[32] = "";
    FILE *f = fopen("/sys/fs/cgroup/memory.max", "re");

    if (!f)
        return 0;
    if (!fgets(buf, sizeof(buf), f))
        buf[0] = '\0';
    fclose(f);
    return buf[0] >= '0' && buf[0] <= '9' ? strtoull(buf, NULL, 10) : 0; /* "max": none */
}

static uint32_t ring_bufs(unsigned nworkers)
{
    uint64_t budget = RING_BUDGET, limit = cgroup_memory_max();
    uint32_t n = RING_MIN_BUFS;

    if (limit && limit / 8 < budget)
        budget = limit / 8;
    /* the largest power of two (as the ring needs) within the worker's share */
    while (n < RING_MAX_BUFS && (uint64_t)2 * n * RING_BUFSZ * (nworkers ? nworkers : 1) <= budget)
        n *= 2;
    return n;
}

/*
 * Most idle upstream connections a worker keeps: upstream.pool_max_idle, and
 * at most half of the worker's share of the descriptor limit, so that idle
 * connections never keep clients out.
 */
static unsigned pool_cap(const struct cfg *cfg, unsigned nworkers)
{
    struct rlimit rl;
    unsigned cap = cfg->upstream.pool_max_idle;

    if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur != RLIM_INFINITY) {
        rlim_t share = rl.rlim_cur / (nworkers ? nworkers : 1) / 2;
        if (share < cap)
            cap = (unsigned)share;
    }
    return cap;
}

/* Close pooled connections to addresses the resolver no longer returns. */
static void pool_sweep(struct http_worker *w)
{
    struct core_list *n = core_list_first(&w->pool), *next;

    for (; n; n = next) {
        struct http_up *u = core_list_entry(n, struct http_up, pool_link);

        next = core_list_next(&w->pool, n);
        if (!addr_current(w, u))
            up_close(w, u);
    }
}

/* ---- client responses generated here ---------------------------------- */

/* The access log's termination for a request we refused with status. */
static enum http_term reject_reason(int status)
{
    switch (status) {
    case 400:
        return HT_BAD_REQUEST;
    case 501:
        return HT_NOT_IMPLEMENTED;
    case 503:
        return HT_AUTH_BUSY; /* the only refusal with it: a basic_auth check not made in time */
    default:
        return HT_LIMIT_EXCEEDED; /* 413, 414, 431 */
    }
}

/* Forget the final response's head (the log no longer needs it). */
static void conn_drop_resp_head(struct http_worker *w, struct http_conn *c)
{
    core_blk_put(&w->t->pool, c->resp_blk);
    c->resp_blk = NULL;
    c->resp_hdrs = NULL;
    c->nresp_hdrs = 0;
}

/* Nothing of the final response has reached the client's socket yet. */
static int final_unsent(const struct http_conn *c)
{
    return !c->resp_begun || (!c->e.sending && c->e.tx_total <= c->final_mark);
}

/* Send what is queued, then close: conn_send_done() calls conn_abort() once it is out. */
static void conn_abort_after_flush(struct http_worker *w, struct http_conn *c)
{
    c->keep_alive = 0;
    c->abort_after_flush = 1;
    c->state = HST_WAIT;
    end_tx_kick(w, &c->e);
}

/*
 * Part of the final response reached the client and the rest can't come:
 * send what is queued, then close. Never forge an end of body.
 */
static void conn_break(struct http_worker *w, struct http_conn *c, enum http_term why)
{
    up_drop(w, c);
    c->keep_alive = 0;
    if (why)
        c->termination = why;
    if (!c->e.txq.bytes && !c->e.sending) {
        conn_abort(w, c, why);
        return;
    }
    conn_abort_after_flush(w, c);
}

/* The exchange's head block, taken when it has none, with a cleared exchange area. */
static int conn_blk(struct http_worker *w, struct http_conn *c)
{
    if (c->blk)
        return 0;
    if (!(c->blk = core_blk_get(&w->t->pool)))
        return -1;
    c->req = (struct http_msg *)c->blk; /* struct conn_xa */
    memset(c->req, 0, sizeof(struct conn_xa));
    return 0;
}

/* Is the request HEAD? Its answers have the head of GET's and no body (RFC 9110 9.3.2). */
static int conn_head_only(const struct http_conn *c)
{
    return c->req && c->req->method.p && c->req->parser.method == HTTP_HEAD && !c->req->ext_method;
}

/* The client's address as text: True-Client-IP is the rules' and the log's business. */
static struct core_str conn_peer(struct http_conn *c)
{
    if (!c->peer[0]) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);

        /* asked once per connection */
        if (getpeername(c->e.fd, (struct sockaddr *)&ss, &sl) == 0)
            net_ip_str(&ss, c->peer, sizeof(c->peer));
    }
    return (struct core_str){c->peer, strlen(c->peer)};
}

/* The edge rules of c's exchange (its config generation's), or NULL. */
static inline const struct cfg_rules *conn_rules(const struct http_conn *c)
{
    return c->pin ? c->pin->rules : NULL;
}

static const struct http_rules_verdict no_verdict = {
    .answer = -1, .last = -1, .map_hit = -1, .auth = -1, .auth_user = -1, .auth_hash = -1};
static const struct http_rules_req no_rules_req;

/*
 * Write an answer the proxy makes itself (a refusal, a failure, a rule's
 * answer) at out (cap bytes): with edge rules, through http_rules_answer_head()
 * (the error page for the status, a rule's Location, body and headers, the
 * response-header edits), else the plain text answer. A body that lives in
 * the config (a page) is returned in *ret_page, to be queued after the
 * head; a small text body follows the head at out. Returns the bytes
 * written at out, the head's in *ret_head, or -1 when they do not fit.
 */
static long answer_write(struct http_worker *w, struct http_conn *c, int status, int rule,
                         char *out, size_t cap, long *ret_head, const struct cfg_page **ret_page)
{
    const struct conn_xa *x = c->req ? conn_xa(c) : NULL;
    const struct cfg_rules *rs = conn_rules(c);
    const struct cfg_erule *r = rule ? &rs->v[x->rv.answer] : NULL;
    const struct cfg_page *page = NULL;
    struct cfg_page text = {0};
    char tbuf[96];
    int head_only = conn_head_only(c), n_head;
    long n;

    *ret_page = NULL;
    if (!rs) {
        n = http_fwd_answer(status, c->keep_alive, head_only, out, cap, &n_head);
        *ret_head = n_head;
        return n;
    }
    if (!r || r->kind == CFG_RK_DENY)
        page = cfg_rules_error_page(rs, status);
    if (r && r->kind == CFG_RK_RESPOND)
        page = r->body;
    if (!page && (!r || r->kind == CFG_RK_DENY)) {
        /* the plain text answer's body, with the rules' headers */
        int tl = snprintf(tbuf, sizeof(tbuf), "%d %s\n", status, http_fwd_reason(status));

        text = (struct cfg_page){.data = tbuf, .len = (size_t)tl, .content_type = "text/plain"};
        page = &text;
    }
    n = http_rules_answer_head(rs, x && x->ruled ? &x->rv : &no_verdict,
                               x && x->ruled ? &x->rr : &no_rules_req, status, page, c->keep_alive,
                               out, cap);
    if (n < 0 || (page == &text && (size_t)n + text.len > cap)) {
        /*
         * The rules' headers do not fit: the plain answer, which always
         * does. A rule's answer made too long by the request's own values
         * ({uri} in a Location) is not sent without them: 414.
         */
        if (r)
            c->status = (uint16_t)(status = 414);
        n = http_fwd_answer(status, c->keep_alive, head_only, out, cap, &n_head);
        *ret_head = n_head;
        return n;
    }
    *ret_head = n;
    if (page == &text) {
        if (!head_only) {
            memcpy(out + n, text.data, text.len);
            n += (long)text.len;
        }
    } else if (page && !head_only) {
        *ret_page = page;
    }
    return n;
}

/*
 * Answer the current request ourselves: refusals, and every way an exchange
 * can fail (upstream failures, out of memory), and rule answers (rule set:
 * the verdict's answer). While nothing of the final response has reached
 * the client's socket, what was queued of it is taken back and status is
 * sent instead; after that the connection is broken off (conn_break). Local
 * answers end the connection unless the whole request was read.
 */
static void conn_answer(struct http_worker *w, struct http_conn *c, int status, enum http_term why,
                        int rule)
{
    const struct cfg_page *page;
    size_t base, cap;
    long n, n_head;
    char *out;

    if (!final_unsent(c)) {
        conn_break(w, c, why);
        return;
    }
    if (conn_blk(w, c) < 0) {
        conn_abort(w, c, HT_OUT_OF_MEMORY);
        return;
    }
    if (c->resp_begun) {
        /* interim responses queued before it stay */
        core_segq_truncate(&c->e.txq, &w->t->pool, &w->t->bufs, c->final_mark - c->e.tx_total);
        c->resp_begun = c->resp_done = 0;
        c->decode = 0;
        conn_drop_resp_head(w, c);
    }
    if (!c->req_done)
        c->keep_alive = 0;
    up_drop(w, c);
    c->termination = why;
    c->status = (uint16_t)status;
    /*
     * Before any upstream had the request, the rewritten head's room is free
     * too (a rule's Location may be long); after, an upstream's send may
     * still read it: the answer room only.
     */
    base = c->attempts ? w->blk.answer : w->blk.out;
    cap = w->blk.size - base;
    out = c->blk + base;
    n = answer_write(w, c, status, rule, out, cap, &n_head, &page);
    if (n < 0) {
        conn_abort(w, c, HT_OUT_OF_MEMORY);
        return;
    }
    c->final_mark = c->e.tx_total + c->e.txq.bytes;
    c->body_sent_mark = c->final_mark + (uint64_t)n_head;
    if (core_segq_push_blk(&c->e.txq, &w->t->pool, out, (size_t)n, c->blk) < 0 ||
        (page && core_segq_push_static(&c->e.txq, &w->t->pool, page->data, page->len) < 0)) {
        conn_abort(w, c, HT_OUT_OF_MEMORY);
        return;
    }
    c->resp_begun = c->resp_done = 1;
    if (!c->req_done) {
        /* The unread body can't be told from a next request: drop input, then close. */
        core_segq_clear(&c->e.rxq, &w->t->pool, &w->t->bufs);
        c->req_done = 1;
        c->discard = 1;
    }
    c->state = HST_WAIT;
    end_tx_kick(w, &c->e);
    conn_check_done(w, c);
}

static void conn_respond(struct http_worker *w, struct http_conn *c, int status, enum http_term why)
{
    conn_answer(w, c, status, why, 0);
}

/* ---- access log ------------------------------------------------------- */

static void conn_log(struct http_worker *w, struct http_conn *c)
{
    struct log_access_rec r = {0};
    int have_req = c->req && c->req->method.p;
    const char *upstream_addr = c->req ? conn_xa(c)->upstream_addr : "";
    uint64_t dur = w->t->now_us - c->start_us;
    long n;

    if (c->logged)
        return;
    c->logged = 1;

    r.start = c->start_rt;
    r.duration_us = (int64_t)dur;
    if (have_req) {
        r.method = c->req->method;
        r.target = c->req->target;
        r.version = c->http10 ? (struct core_str){"HTTP/1.0", 8} : (struct core_str){"HTTP/1.1", 8};
    }
    if (have_req) {
        r.host = c->host_sent.p ? c->host_sent : http_msg_known(c->req, HK_HOST);
        r.referrer = http_msg_known(c->req, HK_REFERER);
        r.useragent = http_msg_known(c->req, HK_USER_AGENT);
        r.x_forwarded_proto = http_msg_known(c->req, HK_X_FORWARDED_PROTO);
        r.section_io_id = http_msg_known(c->req, HK_SECTION_IO_ID);
        r.section_io_tag = http_msg_known(c->req, HK_SECTION_IO_TAG);
        r.client_ip = http_msg_known(c->req, HK_TRUE_CLIENT_IP);
    }
    if (!r.client_ip.p)
        r.client_ip = conn_peer(c); /* C10: the socket peer when the edge sent no True-Client-IP */
    for (uint16_t i = 0; i < c->nresp_hdrs; i++)
        if (c->resp_hdrs[i].kind == HK_CONTENT_TYPE) {
            r.content_type = c->resp_hdrs[i].value;
            break;
        }
    if (upstream_addr[0])
        r.upstream_addr = (struct core_str){upstream_addr, strlen(upstream_addr)};
    r.status = c->status;
    r.upstream_status = c->upstream_status ? c->upstream_status : -1;
    r.bytes_sent = (int64_t)(c->e.tx_total - c->tx_mark);
    r.response_body_bytes = c->resp_begun && c->e.tx_total > c->body_sent_mark
                                ? (int64_t)(c->e.tx_total - c->body_sent_mark)
                                : 0;
    /* what this request took from the input: pipelined requests behind it wait in rxq */
    r.request_bytes = (int64_t)(c->e.rx_total - c->e.rxq.bytes - c->rx_mark);
    r.upstream_bytes = upstream_addr[0] ? c->up_bytes : -1;
    r.upstream_connect_us = c->up_connect_us;
    r.upstream_header_us = c->up_header_us;
    r.upstream_response_us = c->up_total_us;
    r.upstream_reused = upstream_addr[0] ? c->up_reused : -1;
    r.upstream_attempts = c->attempts;
    r.termination = http_term_str(c->termination);
    if (c->req && conn_xa(c)->ruled && conn_xa(c)->rv.last >= 0)
        r.rule = conn_rules(c)->v[conn_xa(c)->rv.last].label;
    if (have_req) {
        r.req_hdrs = c->req->hdrs;
        r.nreq_hdrs = c->req->nhdrs;
    }
    r.resp_hdrs = c->resp_hdrs;
    r.nresp_hdrs = c->nresp_hdrs;
    STAT_INC(w->st, requests[c->status / 100 <= 5 ? c->status / 100 : 0]);
    http_stats_observe(w->st, dur);
    if (!w->sh->access_log)
        return;
    /* Long values are cut, so the line always fits; lo counts a line it cannot hold. */
    n = log_fmt_line(w->sh->log_fmt, &r, w->log_line, w->log_line_max);
    if (n > 0)
        (void)log_out_append(w->lo, w->log_line, (size_t)n);
    else
        log_out_drop(w->lo);
}

/* ---- config generations ------------------------------------------------- */

/* A pin of g for this worker, holding one of g's refs (the caller took it). NULL: no memory. */
static struct gen_pin *pin_new(struct http_worker *w, struct http_gen *g)
{
    struct gen_pin *p = calloc(1, sizeof(*p));

    if (!p)
        return NULL;
    p->g = g;
    p->rules = g->cfg->rules;
    p->hits = g->rule_hits ? g->rule_hits + (size_t)w->t->id * g->rule_stride : NULL;
    return p;
}

/* An old pin no exchange uses any more: its ref goes back (the main thread frees g). */
static void pin_drop(struct http_worker *w, struct gen_pin *p)
{
    for (struct gen_pin **pp = &w->old_pins; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    atomic_fetch_sub(&p->g->refs, 1);
    free(p);
}

static void conn_unpin(struct http_worker *w, struct http_conn *c)
{
    struct gen_pin *p = c->pin;

    if (!p)
        return;
    c->pin = NULL;
    if (--p->users == 0 && p != w->pin)
        pin_drop(w, p);
}

/* The exchange beginning on c runs on the newest generation, to its end. */
static void conn_pin(struct http_worker *w, struct http_conn *c)
{
    if (c->pin == w->pin)
        return;
    conn_unpin(w, c);
    c->pin = w->pin;
    c->pin->users++;
}

/*
 * What a generation sets for the whole worker: the timeouts of timers armed
 * from now on, the body limit, the pool's size, room for the rules' work.
 * 0, or -ENOMEM (then the worker stays on its generation).
 */
static int gen_apply(struct http_worker *w, struct http_gen *g)
{
    const struct cfg *cfg = g->cfg;

    if (cfg->rules && !w->rules_path) {
        /* both or neither: a worker with one of them would take the other for there */
        char *path = malloc(cfg->limits.max_uri_bytes + 1), *head = malloc(w->rules_head_cap);

        if (!path || !head) {
            free(path);
            free(head);
            return -ENOMEM;
        }
        w->rules_path = path;
        w->rules_head = head;
    }
    if (g->auth && !w->rules_cred) {
        w->rules_cred_cap = cfg->limits.max_header_line_bytes;
        if (!(w->rules_cred = malloc(w->rules_cred_cap)))
            return -ENOMEM;
    }
    if (g->auth)
        w->auth = g->auth;
    w->cfg = cfg;
    w->fwd.max_body_bytes = cfg->limits.max_body_bytes;
    w->pool_cap = pool_cap(cfg, w->sh->nworkers);
    core_tq_set_timeout(&w->tq[TC_IDLE], cfg->client.idle_timeout_ms);
    core_tq_set_timeout(&w->tq[TC_HEADER], cfg->client.header_timeout_ms);
    core_tq_set_timeout(&w->tq[TC_SEND], cfg->client.idle_timeout_ms);
    core_tq_set_timeout(&w->tq[TC_BODY], cfg->client.idle_timeout_ms);
    core_tq_set_timeout(&w->tq[TC_CONNECT], cfg->upstream.connect_timeout_ms);
    core_tq_set_timeout(&w->tq[TC_RESPONSE], cfg->upstream.response_timeout_ms);
    core_tq_set_timeout(&w->tq[TC_POOL], cfg->upstream.pool_idle_timeout_ms);
    return 0;
}

/*
 * Older generations a worker keeps for the exchanges still on them: past
 * GEN_KEEP, the exchanges on the oldest are closed (logged, termination
 * superseded), or a long upload or a tunnel per reload would keep every
 * config ever loaded, its pages included.
 */
#define GEN_KEEP 4

static void gen_cap(struct http_worker *w)
{
    unsigned n = 0, left;
    struct gen_pin *oldest = NULL;

    for (struct gen_pin *p = w->old_pins; p; p = p->next) {
        n++;
        oldest = p;
    }
    if (n <= GEN_KEEP || !oldest)
        return;
    left = oldest->users;
    log_warn("config generation %llu: its last %u requests closed (at most %d older generations "
             "are kept for requests under way)",
             (unsigned long long)oldest->g->id, oldest->users, GEN_KEEP);
    /* the last abort that unpins frees oldest: stop there, never compare with it after */
    for (struct core_list *l = core_list_first(&w->live); l && left;
         l = core_list_next(&w->live, l)) {
        struct http_end *e = core_list_entry(l, struct http_end, live);

        if (e->side == SIDE_CLIENT && !e->closing && ((struct http_conn *)e)->pin == oldest) {
            left--;
            conn_abort(w, (struct http_conn *)e, HT_SUPERSEDED);
        }
    }
}

/*
 * At the start of a turn: move to the newest generation, if there is a newer
 * one. Exchanges under way keep theirs (their pins); the old pin goes when
 * the last of them ends. The generation the worker runs on is published
 * (stats gen) for the main thread, which frees a generation only once every
 * worker has moved past it.
 */
static void gen_sync(struct http_worker *w)
{
    struct http_gen *g = atomic_load_explicit(&w->sh->gen, memory_order_acquire);
    struct gen_pin *p, *old = w->pin;

    if (old && g == old->g)
        return;
    atomic_fetch_add(&g->refs, 1);
    if (!(p = pin_new(w, g)) || gen_apply(w, g) < 0) {
        /* tried again next turn; a worker without a generation cannot run */
        free(p);
        atomic_fetch_sub(&g->refs, 1);
        log_error("config generation %llu: out of memory; requests stay on generation %llu",
                  (unsigned long long)g->id, (unsigned long long)(old ? old->g->id : 0));
        return;
    }
    w->pin = p;
    if (old) {
        if (old->users) {
            old->next = w->old_pins;
            w->old_pins = old;
        } else {
            atomic_fetch_sub(&old->g->refs, 1);
            free(old);
        }
    }
    gen_cap(w);
    atomic_store_explicit(&w->st->gen, g->id, memory_order_release);
}

/* The worker exits: its pins go (the main thread frees every generation after the workers). */
static void gen_release(struct http_worker *w)
{
    while (w->old_pins)
        pin_drop(w, w->old_pins);
    if (w->pin) {
        atomic_fetch_sub(&w->pin->g->refs, 1);
        free(w->pin);
        w->pin = NULL;
    }
}

/* ---- exchange lifecycle --------------------------------------------------- */

static void conn_reset_exchange(struct http_worker *w, struct http_conn *c)
{
    core_blk_put(&w->t->pool, c->blk);
    c->blk = NULL;
    c->req = NULL;
    conn_drop_resp_head(w, c);
    c->body_sent_mark = c->final_mark = 0;
    c->host_sent = (struct core_str){0};
    c->req_done = c->resp_done = c->resp_begun = c->upgrade = c->has_body = 0;
    c->attempts = 0;
    c->status = 0;
    c->termination = HT_NONE;
    c->upstream_status = 0;
    c->up_connect_us = c->up_header_us = c->up_total_us = -1;
    c->up_bytes = 0;
    c->up_reused = 0;
    c->scan = (struct http_scan){0};
    c->in_len = c->out_len = 0;
    c->decode = c->discard = c->abort_after_flush = c->logged = 0;
}

static void conn_linger(struct http_worker *w, struct http_conn *c)
{
    /* Shut the write side and read what is left, so no RST destroys the response. */
    (void)shutdown(c->e.fd, SHUT_WR);
    c->state = HST_LINGER;
    core_segq_clear(&c->e.rxq, &w->t->pool, &w->t->bufs);
    if (c->e.eof) {
        end_close(w, &c->e);
        return;
    }
    end_timer_sync(w, &c->e, TC_LINGER);
    end_rx_update(w, &c->e);
}

/* The response is fully sent: log, release the upstream, next request or close. */
static void conn_finish(struct http_worker *w, struct http_conn *c)
{
    struct http_up *u = c->up;

    conn_log(w, c);
    if (u) {
        c->up = NULL;
        up_release(w, u);
    }
    conn_reset_exchange(w, c);
    conn_unpin(w, c); /* the response is sent: nothing of its generation is queued */
    if (!c->keep_alive || w->draining) {
        conn_linger(w, c);
        return;
    }
    c->state = HST_IDLE;
    /* the next pipelined request, even after the client half-closed */
    if (c->e.rxq.bytes)
        conn_process(w, c);
    if (c->e.eof)
        conn_eof(w, c);
}

static void conn_check_done(struct http_worker *w, struct http_conn *c)
{
    if (c->e.closing || !c->resp_done || c->e.txq.bytes || c->e.sending)
        return;
    if (c->state == HST_TUNNEL || c->state == HST_LINGER)
        return;
    if (!c->req_done) {
        /*
         * The origin answered before the body was read: neither side's
         * connection can tell where the next request would start.
         */
        c->keep_alive = 0;
        if (c->up)
            c->up->reusable = 0;
        c->termination = c->termination ? c->termination : HT_EARLY_RESPONSE;
    }
    conn_finish(w, c);
}

/* Something broke after the response began: close, never forge an end of body. */
static void conn_abort(struct http_worker *w, struct http_conn *c, enum http_term why)
{
    if (c->e.closing)
        return;
    if (!c->termination)
        c->termination = why;
    log_debug("client fd %d: closing in state %s: %s", c->e.fd, http_state_str(c->state),
              c->termination ? http_term_str(c->termination) : "done");
    if (c->state != HST_IDLE && c->state != HST_LINGER &&
        (c->state != HST_HEAD || c->in_len || c->e.rxq.bytes))
        conn_log(w, c);
    up_drop(w, c);
    /*
     * A close() while the client's socket holds unread input (pipelined
     * requests, the rest of a body) answers with a reset, and a reset
     * drops what the socket still had to send: the end of earlier,
     * complete responses that a slow reader has not taken yet. So unless
     * no more input can come (EOF, a broken socket), the client ran out
     * its own timeout, or the worker is exiting, the close lingers: what
     * was handed over goes out, then EOF. A send in flight (it never waits
     * for room) completes first; conn_send_done() comes back here.
     */
    if (c->e.eof || why == HT_CLIENT_TIMEOUT || why == HT_IDLE_TIMEOUT || why == HT_SHUTDOWN ||
        c->state == HST_LINGER) {
        end_close(w, &c->e);
        return;
    }
    auth_detach(c);
    if (c->e.sending) {
        conn_abort_after_flush(w, c);
        return;
    }
    core_segq_clear(&c->e.txq, &w->t->pool, &w->t->bufs); /* the rest of a broken response */
    conn_reset_exchange(w, c);
    conn_unpin(w, c); /* after the queues: a page of its generation may have been in them */
    conn_linger(w, c);
}

/*
 * The client closed its side. What it sent before still counts: a request
 * whose head and body were read gets its response, and so does each
 * complete pipelined request after it; then the connection closes.
 */
static void conn_eof(struct http_worker *w, struct http_conn *c)
{
    if (c->e.closing)
        return;
    switch (c->state) {
    case HST_IDLE:
    case HST_LINGER:
        end_close(w, &c->e);
        break;
    case HST_HEAD:
        conn_abort(w, c, HT_CLIENT_CLOSED);
        break;
    case HST_BODY:
        /* the rest of the body may be queued, waiting for the upstream: conn_body() decides */
        if (!c->req_done && !c->e.rxq.bytes)
            conn_abort(w, c, HT_CLIENT_CLOSED);
        break;
    default:
        /*
         * HST_WAIT: the response goes out, then conn_finish() comes back
         * here. HST_TUNNEL: tunnel_halfclose() forwards it.
         */
        break;
    }
}

/* ---- request side ------------------------------------------------------ */

/*
 * Count a rule's hit for /metrics: its kind of answer, CFG_RK_NONE for its
 * edits, HTTP_RULE_PASSED for a rate_limit that let the request through.
 */
static inline void rule_hit(struct http_conn *c, size_t i, unsigned kind)
{
    _Atomic uint64_t *h = &c->pin->hits[i * HTTP_RULE_SLOTS + kind];

    atomic_store_explicit(h, atomic_load_explicit(h, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* Time a password check may wait for a helper before the request gets 503 (auth_busy). */
#define AUTH_WAIT_MS 5000

/*
 * The request's view for the rules (again after a check: the normalised
 * path lives in the worker's scratch, which other requests used meanwhile).
 */
static int rules_req(struct http_worker *w, struct http_conn *c)
{
    struct http_rules_req *rr = &conn_xa(c)->rr;

    if (http_rules_req_init(rr, c->req, c->host_sent, conn_peer(c), w->rules_path,
                            w->cfg->limits.max_uri_bytes + 1) < 0)
        return -400;
    rr->rl = c->pin->g->ratelimit;
    rr->now_us = w->t->now_us;
    rr->auth = c->pin->g->auth;
    rr->cred = w->rules_cred;
    rr->cred_cap = w->rules_cred_cap;
    return 0;
}

/*
 * Park the request while a helper checks its basic_auth password
 * (http/auth.h): 1, or -503 when the helpers' queue is full.
 */
static int auth_park(struct http_worker *w, struct http_conn *c)
{
    const struct http_rules_verdict *v = &conn_xa(c)->rv;
    const struct cfg_basic_auth *a = &conn_rules(c)->v[v->auth].auth;
    struct http_auth_job *j;

    /* an unknown user costs a check all the same: its time tells nothing */
    j = http_auth_job_new(a->hash[v->auth_hash], v->auth_pass.p, v->auth_pass.len);
    if (!j)
        return -503;
    j->worker = (unsigned)w->t->id;
    j->cookie = c;
    j->deadline_us = w->t->now_us + AUTH_WAIT_MS * 1000ull;
    j->force_bad = v->auth_user < 0;
    j->key[0] = v->auth_key[0];
    j->key[1] = v->auth_key[1];
    if (http_auth_submit(c->pin->g->auth, j) < 0) {
        http_auth_job_free(j);
        return -503;
    }
    c->auth_job = j;
    c->state = HST_AUTH;
    end_timer(w, &c->e, TC_AUTH); /* a second check (another rule) has its own 5 s */
    return 1;
}

/*
 * The verdict is final: count the rules' hits for /metrics, and apply its
 * request-side edits to the head the origin gets. 0, or -status.
 */
static int req_rules_apply(struct http_worker *w, struct http_conn *c)
{
    struct conn_xa *x = conn_xa(c);
    const struct cfg_rules *rs = conn_rules(c);
    long n;

    for (size_t k = 0; k < HTTP_RULES_WORDS; k++)
        for (uint64_t bits = x->rv.edits[k]; bits; bits &= bits - 1)
            rule_hit(c, k * 64 + (size_t)__builtin_ctzll(bits), CFG_RK_NONE);
    for (size_t k = 0; x->rv.any_passed && k < HTTP_RULES_WORDS; k++)
        for (uint64_t bits = x->rv.passed[k]; bits; bits &= bits - 1)
            rule_hit(c, k * 64 + (size_t)__builtin_ctzll(bits), HTTP_RULE_PASSED);
    if (x->rv.answer >= 0) {
        unsigned kind = rs->v[x->rv.answer].kind;

        /* a basic_auth's 429 (too many checks) is counted as a rate_limit's */
        rule_hit(c, (size_t)x->rv.answer,
                 kind == CFG_RK_BASIC_AUTH && x->rv.retry_after ? CFG_RK_RATE_LIMIT : kind);
        return 0;
    }
    if (!x->rv.any_req)
        return 0;
    n = http_rules_req_head(rs, &x->rv, &x->rr, c->blk + w->blk.out, c->out_len, w->rules_head,
                            w->rules_head_cap);
    if (n < 0)
        return -431;
    memcpy(c->blk + w->blk.out, w->rules_head, (size_t)n);
    c->out_len = (uint32_t)n;
    return 0;
}

/*
 * Run the edge rules on a request that passed the checks (http/rules.h):
 * keep the verdict for the answer and the response. 0, 1 (parked for a
 * password check), or -status.
 */
static int req_rules(struct http_worker *w, struct http_conn *c)
{
    struct conn_xa *x = conn_xa(c);

    /* which of two would the rules believe? (C10: the platform sets one of each) */
    if (c->req->count[HK_TRUE_CLIENT_IP] > 1 || c->req->count[HK_X_FORWARDED_PROTO] > 1)
        return -400;
    if (rules_req(w, c) < 0)
        return -400;
    http_rules_eval(conn_rules(c), &x->rr, &x->rv);
    x->ruled = 1;
    if (x->rv.auth >= 0)
        return auth_park(w, c);
    return req_rules_apply(w, c);
}

/* Check the parsed request and write the head the origin gets (http/forward.c). 0 or -status. */
static int req_rewrite(struct http_worker *w, struct http_conn *c)
{
    struct http_fwd_req f;
    long n = http_fwd_request(c->req, &w->fwd, c->blk + w->blk.out, w->blk.answer - w->blk.out, &f);

    if (n < 0)
        return (int)n;
    c->http10 = f.http10;
    c->upgrade = f.upgrade;
    c->has_body = f.has_body;
    c->idempotent = f.idempotent;
    c->keep_alive = f.keep_alive;
    c->host_sent = f.host_sent;
    c->out_len = (uint32_t)n;
    return conn_rules(c) ? req_rules(w, c) : 0;
}

/* The request is read and ruled on: a rule's answer, or on to the origin. */
static void conn_dispatch(struct http_worker *w, struct http_conn *c)
{
    if (conn_xa(c)->ruled && conn_xa(c)->rv.answer >= 0) {
        const struct http_rules_verdict *v = &conn_xa(c)->rv;
        const struct cfg_erule *e = &conn_rules(c)->v[v->answer];

        /* a rule answers: the origin never sees the request */
        if (e->kind == CFG_RK_RATE_LIMIT || e->kind == CFG_RK_BASIC_AUTH)
            /*
             * 429 (Retry-After) or 401 (WWW-Authenticate) with the error
             * page or plain text, as the proxy's own answers
             */
            conn_answer(w, c, v->retry_after ? 429 : e->status,
                        v->retry_after ? HT_RATE_LIMITED : HT_NONE, 0);
        else
            conn_answer(w, c, e->status, HT_NONE, 1);
        return;
    }
    c->state = c->req_done ? HST_WAIT : HST_BODY;
    if (up_attach(w, c, 0) < 0)
        return;
    conn_process(w, c);
    if (c->up)
        end_tx_kick(w, &c->up->e);
}

static void conn_request(struct http_worker *w, struct http_conn *c)
{
    int r;

    r = http_msg_head(c->req, HTTP_REQUEST, c->blk + w->blk.in, c->in_len,
                      (struct core_hdr *)(c->blk + w->blk.hdrs), w->max_hdrs);
    if (r == 0)
        r = req_rewrite(w, c);
    if (r < 0) {
        c->req_done = 0;
        conn_respond(w, c, -r, reject_reason(-r));
        return;
    }
    c->req_done = c->req->complete;
    if (r == 1)
        return; /* parked: auth_done() goes on */
    conn_dispatch(w, c);
}

/* A password check came back for c (parked in HST_AUTH): go on with the rules, or answer. */
static void auth_done(struct http_worker *w, struct http_conn *c, const struct http_auth_job *j)
{
    struct conn_xa *x = conn_xa(c);
    int r;

    if (j->result == HTTP_AUTH_OK)
        http_auth_cache_put(c->pin->g->auth, j->key, w->t->now_us);
    if (j->result == HTTP_AUTH_LATE) {
        r = -503;
    } else if ((r = rules_req(w, c)) == 0) {
        http_rules_resume(conn_rules(c), &x->rr, &x->rv, j->result == HTTP_AUTH_OK);
        r = x->rv.auth >= 0 ? auth_park(w, c) : req_rules_apply(w, c);
    }
    if (r == 1)
        return; /* another basic_auth after it */
    if (r < 0) {
        conn_respond(w, c, -r, reject_reason(-r));
        return;
    }
    conn_dispatch(w, c);
}

/* The helpers' results for this worker: each parked request that is still there goes on. */
static void auth_deliver(struct http_worker *w)
{
    struct http_auth_job *j, *next;

    if (!w->auth)
        return;
    for (j = http_auth_take(w->auth, (unsigned)w->t->id); j; j = next) {
        struct http_conn *c = j->cookie;

        next = j->next;
        if (c && c->auth_job == j && !c->e.closing) {
            c->auth_job = NULL;
            auth_done(w, c, j);
            conn_sync(w, c);
        }
        http_auth_job_free(j);
    }
}

/* Copy head bytes from the receive queue into the block; parse once complete. */
static void conn_head(struct http_worker *w, struct http_conn *c)
{
    struct core_segq *q = &c->e.rxq;

    if (conn_blk(w, c) < 0) {
        conn_abort(w, c, HT_OUT_OF_MEMORY);
        return;
    }
    while (q->head && c->state == HST_HEAD) {
        struct core_seg *s = q->head;
        int done;
        long n = http_scan(&c->scan, &w->req_limits, s->p, s->len, &done);

        if (n < 0) {
            conn_respond(w, c, (int)-n, reject_reason((int)-n));
            return;
        }
        memcpy(c->blk + w->blk.in + c->in_len, s->p, (size_t)n);
        c->in_len += (uint32_t)n;
        core_segq_consume(q, &w->t->pool, &w->t->bufs, (size_t)n);
        if (done) {
            conn_request(w, c);
            return;
        }
    }
}

/* Forward request body bytes to the upstream, up to the end of the message. */
static void conn_body(struct http_worker *w, struct http_conn *c)
{
    struct core_segq *q = &c->e.rxq;
    struct http_up *u = c->up;

    while (q->head && !c->req_done && u && !q_full(&u->e.txq)) {
        struct core_seg *s = q->head;
        size_t used = 0;
        int r = http_msg_body(c->req, s->p, s->len, &used);

        if (r < 0) {
            conn_respond(w, c, 400, HT_BAD_REQUEST_BODY);
            return;
        }
        /* the exchange's config: a reload does not cut an upload under way */
        if (c->pin->g->cfg->limits.max_body_bytes &&
            c->req->data_bytes > c->pin->g->cfg->limits.max_body_bytes) {
            conn_respond(w, c, 413, HT_LIMIT_EXCEEDED);
            return;
        }
        if (core_segq_push_view(&u->e.txq, &w->t->pool, &w->t->bufs, s, s->p, used) < 0) {
            conn_respond(w, c, 502, HT_OUT_OF_MEMORY);
            return;
        }
        core_segq_consume(q, &w->t->pool, &w->t->bufs, used);
        if (r == 1) {
            c->req_done = 1;
            c->state = HST_WAIT;
        }
    }
    if (u)
        end_tx_kick(w, &u->e);
    if (c->e.eof && !c->req_done && !q->head) {
        conn_abort(w, c, HT_CLIENT_CLOSED); /* the body ended short */
        return;
    }
    conn_check_done(w, c);
}

/* Tunnel: move received bytes to the other socket while it has room. 0, or -ENOMEM. */
static int relay(struct http_worker *w, struct http_end *from, struct http_end *to)
{
    struct core_segq *q = &from->rxq;

    while (q->head && !q_full(&to->txq)) {
        struct core_seg *s = q->head;

        if (core_segq_push_view(&to->txq, &w->t->pool, &w->t->bufs, s, s->p, s->len) < 0)
            return -ENOMEM;
        core_segq_consume(q, &w->t->pool, &w->t->bufs, s->len);
    }
    end_tx_kick(w, to);
    return 0;
}

static void conn_process(struct http_worker *w, struct http_conn *c)
{
    if (c->e.closing)
        return;
    switch (c->state) {
    case HST_IDLE:
        if (!c->e.rxq.bytes)
            break;
        c->state = HST_HEAD;
        conn_pin(w, c);
        c->tx_mark = c->e.tx_total + c->e.txq.bytes;
        c->rx_mark = c->e.rx_total - c->e.rxq.bytes;
        c->start_us = w->t->now_us;
        c->start_rt = core_realtime(w->t);
        /* fall through */
    case HST_HEAD:
        conn_head(w, c);
        break;
    case HST_BODY:
        conn_body(w, c);
        break;
    case HST_WAIT:
    case HST_AUTH:
        /* Pipelined requests wait in rxq; a full rxq pauses reading. */
        break;
    case HST_TUNNEL:
        if (c->up && relay(w, &c->e, &c->up->e) < 0)
            conn_abort(w, c, HT_OUT_OF_MEMORY);
        break;
    case HST_LINGER:
        core_segq_clear(&c->e.rxq, &w->t->pool, &w->t->bufs);
        break;
    default:
        break;
    }
}

/* Attach an upstream to c and queue the request head. Returns 0 or -1 (answered). */
/*
 * May u carry the next request? Bytes that arrived after its last response
 * (an origin that sends more than it framed) must have been seen first, and
 * closed it. On io_uring a receive that stayed armed reports all that is
 * in the socket, in order, before any later event; one armed in this loop
 * turn (after a pause for backpressure) has not reported yet: wait a turn.
 * The epoll engine runs a turn's ready sockets in its own order, not in the
 * order their bytes came (a stalled loop that wakes to an origin's stray
 * bytes and a new client's request at once took the request first and gave
 * it that connection): there the socket itself is asked (MSG_PEEK), and a
 * connection with anything to read, or closed, is not used. Bytes an origin
 * sends later than the next request arrives cannot be told from the answer
 * to that request, by any proxy.
 */
static int up_quiet(const struct http_worker *w, const struct http_up *u)
{
    char b;

    if (u->e.rx != RX_ON || u->e.rx_turn == w->turn)
        return 0;
    if (w->t->engine == CORE_ENGINE_EPOLL && (recv(u->e.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) >= 0 ||
                                              (errno != EAGAIN && errno != EWOULDBLOCK)))
        return 0;
    return 1;
}

static int up_attach(struct http_worker *w, struct http_conn *c, int fresh)
{
    struct http_up *u = NULL;

    if (!fresh)
        for (struct core_list *n = core_list_first(&w->pool); n && !u;
             n = core_list_next(&w->pool, n))
            if (up_quiet(w, core_list_entry(n, struct http_up, pool_link)))
                u = core_list_entry(n, struct http_up, pool_link);
    if (u) {
        pool_remove(w, u);
        u->reused = 1;
        STAT_INC(w->st, upstream_reuses);
        c->up_connect_us = -1;
    } else {
        int err;

        u = up_new(w, &err);
        if (!u && err == -ENOENT) {
            STAT_INC(w->st, upstream_failures[HT_UPSTREAM_UNAVAILABLE]);
            net_resolver_kick(w->sh->resolver);
            conn_respond(w, c, 502, HT_UPSTREAM_UNAVAILABLE);
            return -1;
        }
        if (!u) {
            /* out of descriptors or memory here, not a fault of the origin */
            STAT_INC(w->st, upstream_failures[HT_UPSTREAM_NO_SOCKET]);
            log_warn("upstream connection: %s", strerror(-err));
            conn_respond(w, c, 502, HT_UPSTREAM_NO_SOCKET);
            return -1;
        }
        u->reused = 0;
    }
    c->attempts++;
    c->up = u;
    u->c = c;
    u->got_bytes = 0;
    u->reusable = 1;
    u->settle = 0;
    u->sink = 0;
    u->tx_mark = u->e.tx_total;
    u->scan = (struct http_scan){0};
    u->in_len = u->out_len = 0;
    u->resp.nhdrs = 0;
    c->up_reused = u->reused;
    _Static_assert(sizeof(conn_xa(c)->upstream_addr) == sizeof(u->addr.str),
                   "address strings differ");
    memcpy(conn_xa(c)->upstream_addr, u->addr.str, sizeof(u->addr.str));
    u->t_sent = w->t->now_us;
    if (u->state != UPS_CONNECT)
        u->state = UPS_HEAD;
    if (core_segq_push_blk(&u->e.txq, &w->t->pool, c->blk + w->blk.out, c->out_len, c->blk) < 0) {
        conn_respond(w, c, 502, HT_OUT_OF_MEMORY);
        return -1;
    }
    return 0; /* the caller sends, so that body bytes at hand go in the same send */
}

/* ---- response side ----------------------------------------------------- */

/* What on_decoded_body() needs for one http_msg_body() call (through http_msg.ctx). */
struct decode_call {
    struct http_worker *w;
    struct http_conn *c;
    const struct core_seg *seg; /* the segment the decoded pieces are views of */
    int oom;                    /* a piece could not be queued */
};

static void on_decoded_body(void *ctx, const char *p, size_t n)
{
    struct decode_call *d = ctx;
    struct http_worker *w = d->w;

    /* after one piece is lost, none may follow it: the caller ends the exchange */
    if (!d->oom && core_segq_push_view(&d->c->e.txq, &w->t->pool, &w->t->bufs, d->seg, p, n) < 0)
        d->oom = 1;
}

/* Out of memory on the response path: 502 while nothing of it was sent, else break off. */
static void up_oom(struct http_worker *w, struct http_up *u)
{
    struct http_conn *c = u->c;

    up_close(w, u);
    if (c)
        conn_respond(w, c, 502, HT_OUT_OF_MEMORY);
}

/* Write the head the client gets. Returns 0, -1 when it does not fit, or -ENOMEM. */
static int resp_rewrite(struct http_worker *w, struct http_up *u, struct http_conn *c, int final)
{
    size_t base = w->blk.out + u->out_len;
    long n;

    if (final && !c->req_done) {
        /*
         * An early answer: the rest of the request body is read and
         * dropped, or not; either way neither connection can tell where a
         * next request would begin. Say so.
         */
        c->keep_alive = 0;
        u->reusable = 0;
    }
    struct http_fwd_resp o = {.final = (uint8_t) final,
                              .dechunk = c->decode,
                              .keep_alive = c->keep_alive,
                              .http10 = c->http10};
    if (final && conn_xa(c)->ruled && conn_xa(c)->rv.any_resp) {
        o.rs = conn_rules(c);
        o.rv = &conn_xa(c)->rv;
        o.rr = &conn_xa(c)->rr;
    }
    n = http_fwd_response(&u->resp, &o, u->blk + base, w->blk.size - base);
    if (n < 0)
        return -1;
    if (final)
        c->final_mark = c->e.tx_total + c->e.txq.bytes;
    if (core_segq_push_blk(&c->e.txq, &w->t->pool, u->blk + base, (size_t)n, u->blk) < 0)
        return -ENOMEM;
    u->out_len += (uint32_t)n;
    if (final)
        c->resp_begun = 1;
    return 0;
}

/*
 * The origin's final response has a status error_pages names: the client
 * gets the page with that status instead, and the origin's body is read to
 * its end and dropped (u->sink), so that the connection can be reused.
 */
static void up_error_page(struct http_worker *w, struct http_up *u, struct http_conn *c, int status)
{
    size_t base = w->blk.out + u->out_len;
    const struct cfg_page *page;
    long n, n_head;

    if (!c->req_done) {
        c->keep_alive = 0; /* an early answer, as in resp_rewrite() */
        u->reusable = 0;
    }
    n = answer_write(w, c, status, 0, u->blk + base, w->blk.size - base, &n_head, &page);
    if (n < 0) {
        up_failed(w, u, HT_UPSTREAM_BAD_RESPONSE);
        return;
    }
    c->final_mark = c->e.tx_total + c->e.txq.bytes;
    c->body_sent_mark = c->final_mark + (uint64_t)n_head;
    if (core_segq_push_blk(&c->e.txq, &w->t->pool, u->blk + base, (size_t)n, u->blk) < 0 ||
        (page && core_segq_push_static(&c->e.txq, &w->t->pool, page->data, page->len) < 0)) {
        up_oom(w, u);
        return;
    }
    u->out_len += (uint32_t)n;
    c->resp_begun = 1;
    u->sink = 1;
    u->resp.on_body = NULL;
    u->settle = u->resp.no_body || status == 204 || status == 304;
    if (u->resp.complete) {
        u->state = UPS_DONE;
        c->resp_done = 1;
    } else {
        u->state = UPS_BODY;
    }
}

/* A complete response head is in u->blk: relay it. */
static void up_head(struct http_worker *w, struct http_up *u)
{
    struct http_conn *c = u->c;
    llhttp_t *p = &u->resp.parser;
    int r, status;

    u->resp.no_body = c->req->parser.method == HTTP_HEAD;
    r = http_msg_head(&u->resp, HTTP_RESPONSE, u->blk + w->blk.in, u->in_len,
                      (struct core_hdr *)(u->blk + w->blk.hdrs), w->max_hdrs);
    status = p->status_code;
    if (r < 0 || http_fwd_response_check(&u->resp, c->upgrade) < 0) {
        up_failed(w, u, HT_UPSTREAM_BAD_RESPONSE);
        return;
    }
    if (status >= 100 && status < 200 && status != 101) {
        /* Interim (100, 103): relay and wait for the final one; never to HTTP/1.0 (RFC 9110 15.2).
         */
        if (!c->http10 && (r = resp_rewrite(w, u, c, 0)) < 0) {
            if (r == -ENOMEM)
                up_oom(w, u);
            else
                up_failed(w, u, HT_UPSTREAM_BAD_RESPONSE);
            return;
        }
        u->in_len = 0;
        u->scan = (struct http_scan){0};
        end_tx_kick(w, &c->e);
        return;
    }
    c->upstream_status = status;
    c->status = (uint16_t)status;
    c->up_header_us = (int64_t)(w->t->now_us - u->t_sent);
    u->reusable = llhttp_should_keep_alive(p);
    if (u->resp.body == HB_EOF)
        c->keep_alive = 0; /* the body ends when the origin closes: so does ours */
    if (status != 101 && cfg_rules_error_page(conn_rules(c), status)) {
        up_error_page(w, u, c, status);
        return;
    }
    if (!u->resp.complete && (p->flags & F_CHUNKED) && c->http10) {
        c->decode = 1; /* HTTP/1.0 can't read chunked: de-chunk, end by closing */
        c->keep_alive = 0;
        u->resp.on_body = on_decoded_body; /* its ctx: a struct decode_call, per call */
    } else {
        u->resp.on_body = NULL;
    }
    if ((r = resp_rewrite(w, u, c, 1)) < 0) {
        if (r == -ENOMEM)
            up_oom(w, u);
        else
            up_failed(w, u, HT_UPSTREAM_BAD_RESPONSE);
        return;
    }
    c->body_sent_mark = c->e.tx_total + c->e.txq.bytes;
    u->settle = u->resp.no_body || status == 204 || status == 304;
    /* the log reads the head's fields even after u is gone (a failure mid-body) */
    core_blk_ref(u->blk);
    c->resp_blk = u->blk;
    c->resp_hdrs = u->resp.hdrs;
    c->nresp_hdrs = u->resp.nhdrs;
    if (status == 101) {
        /* the tunnel is logged when it ends, with all its bytes */
        u->state = UPS_TUNNEL;
        c->state = HST_TUNNEL;
        c->req_done = 1;
        conn_process(w, c);
    } else if (u->resp.complete) {
        u->state = UPS_DONE;
        c->resp_done = 1;
    } else {
        u->state = UPS_BODY;
    }
    /* up_process() sends once the body bytes at hand are queued too */
}

/*
 * A small body that follows the head it came with is copied behind the
 * rewritten head, so the response goes out in one plain send instead of a
 * two-piece sendmsg. Returns 1 when copied.
 */
static int append_to_head(struct http_worker *w, struct http_up *u, struct http_conn *c,
                          const char *p, size_t n)
{
    char *end = u->blk + w->blk.out + u->out_len;

    if (!n || n > 4096 || c->e.sending || w->blk.size - (w->blk.out + u->out_len) < n ||
        !core_segq_tail_ends_at(&c->e.txq, end))
        return 0;
    memcpy(end, p, n);
    core_segq_tail_grow(&c->e.txq, n);
    u->out_len += (uint32_t)n;
    return 1;
}

static void up_done(struct http_worker *w, struct http_up *u)
{
    struct http_conn *c = u->c;

    u->state = UPS_DONE;
    c->resp_done = 1;
    c->up_total_us = (int64_t)(w->t->now_us - u->t_sent);
    end_tx_kick(w, &c->e);
    conn_check_done(w, c);
}

static void up_process(struct http_worker *w, struct http_up *u)
{
    struct http_conn *c = u->c;
    struct core_segq *q = &u->e.rxq;

    if (u->e.closing)
        return;
    if (!c) {
        /* Idle in the pool: any byte or close makes it unusable. */
        if (q->bytes || u->e.eof)
            up_close(w, u);
        return;
    }
    while (q->head && (u->state == UPS_HEAD || u->state == UPS_BODY) && !q_full(&c->e.txq) &&
           !u->e.closing && !c->e.closing) {
        struct core_seg *s = q->head;

        if (u->state == UPS_HEAD) {
            int done;
            long n;

            if (!u->blk && !(u->blk = core_blk_get(&w->t->pool))) {
                up_oom(w, u);
                return;
            }
            n = http_scan(&u->scan, &w->resp_limits, s->p, s->len, &done);
            if (n < 0) {
                up_failed(w, u, HT_UPSTREAM_BAD_RESPONSE);
                return;
            }
            memcpy(u->blk + w->blk.in + u->in_len, s->p, (size_t)n);
            u->in_len += (uint32_t)n;
            core_segq_consume(q, &w->t->pool, &w->t->bufs, (size_t)n);
            if (done)
                up_head(w, u);
            if (u->e.closing || !u->c)
                return;
            continue;
        }
        {
            size_t used = 0;
            struct decode_call d = {w, c, s, 0};
            int r;

            u->resp.ctx = &d;
            r = http_msg_body(&u->resp, s->p, s->len, &used);
            u->resp.ctx = NULL;
            if (r < 0) {
                up_failed(w, u, HT_UPSTREAM_BAD_RESPONSE);
                return;
            }
            if (!u->sink && (d.oom || (!c->decode && !append_to_head(w, u, c, s->p, used) &&
                                       core_segq_push_view(&c->e.txq, &w->t->pool, &w->t->bufs, s,
                                                           s->p, used) < 0))) {
                up_oom(w, u);
                return;
            }
            core_segq_consume(q, &w->t->pool, &w->t->bufs, used);
            if (r == 1) {
                if (q->bytes)
                    u->reusable = 0; /* bytes after the response: not ours to guess */
                up_done(w, u);
                return;
            }
        }
    }
    if (u->state == UPS_TUNNEL && relay(w, &u->e, &c->e) < 0) {
        conn_abort(w, c, HT_OUT_OF_MEMORY);
        return;
    }
    end_tx_kick(w, &c->e);
    if (u->e.eof && !q->bytes) {
        if (u->state == UPS_BODY && http_msg_eof(&u->resp) == 1) {
            u->reusable = 0;
            up_done(w, u);
        } else if (u->state == UPS_HEAD || u->state == UPS_BODY) {
            up_failed(w, u, HT_UPSTREAM_RESET);
        }
    }
}

/* The upstream failed before or during the response. */
static void up_failed(struct http_worker *w, struct http_up *u, enum http_term why)
{
    struct http_conn *c = u->c;

    STAT_INC(w->st, upstream_failures[why]);
    if (c && (u->state == UPS_DONE || u->sink)) {
        /*
         * The response is whole: an early answer, or an error page while the
         * origin's body was being dropped (what broke is only that body). It
         * goes out as it is; the upstream closes, the client's connection
         * does not have to.
         */
        up_close(w, u);
        c->resp_done = 1;
        conn_check_done(w, c);
        return;
    }
    if (u->state == UPS_CONNECT) {
        net_pick_failed(&w->pick, u->addr.str, w->t->now_ms);
        net_resolver_kick(w->sh->resolver);
    }
    if (!c) {
        up_close(w, u);
        return;
    }
    /*
     * The connection was never made, so nothing was sent: move what is queued
     * to another address, if there is one not tried yet.
     */
    if (u->state == UPS_CONNECT && c->attempts < w->addrs->n && c->attempts < 4) {
        int err;
        struct http_up *n = up_new(w, &err);

        if (n && strcmp(n->addr.str, u->addr.str)) {
            core_segq_move(&n->e.txq, &u->e.txq);
            n->c = c;
            n->reusable = 1;
            c->up = n;
            c->attempts++;
            c->up_reused = 0;
            snprintf(conn_xa(c)->upstream_addr, sizeof(conn_xa(c)->upstream_addr), "%s",
                     n->addr.str);
            u->c = NULL;
            up_close(w, u);
            return;
        }
        if (n)
            up_close(w, n);
    }
    /* A reused connection the origin had closed: retry once where that is safe. */
    if (u->reused && !u->got_bytes &&
        (why == HT_UPSTREAM_RESET || why == HT_UPSTREAM_CONNECT_REFUSED) && c->idempotent &&
        !c->has_body && c->attempts < 2 && !c->resp_begun) {
        up_close(w, u);
        STAT_INC(w->st, upstream_retries);
        if (up_attach(w, c, 1) == 0)
            end_tx_kick(w, &c->up->e);
        return;
    }
    up_close(w, u);
    conn_respond(w, c, why == HT_UPSTREAM_TIMEOUT ? 504 : 502, why);
}

/* ---- completions --------------------------------------------------------- */

/*
 * A failed accept for want of descriptors or memory: stop accepting for
 * ACCEPT_PAUSE_MS (the connections wait in the listen backlog) rather than
 * fail again at once in a loop, keep serving the connections there are, and
 * say so once until an accept succeeds again. /healthz answers 503 while
 * the worker is out of descriptors: until an accept succeeds, or a new
 * descriptor can be had when accepting resumes (accept_probe()).
 */
static void accept_pause(struct http_worker *w, int err)
{
    w->accept_resume_ms = w->t->now_ms + ACCEPT_PAUSE_MS;
    for (int i = 0; i < HTTP_MAX_LISTENERS; i++)
        if (w->lfd[i] >= 0 && w->accepting[i]) {
            struct io_uring_sqe *sqe = core_sqe(w->t);

            io_uring_prep_cancel(sqe, &w->op_accept[i], 0);
            io_uring_sqe_set_data64(sqe, CORE_UD_IGNORE);
        }
    if (!w->accept_paused) {
        w->accept_paused = 1;
        STAT_INC(w->st, accept_paused);
    }
    if (w->accept_said)
        return;
    w->accept_said = 1;
    STAT_INC(w->st, accept_pauses);
    log_warn("accept: %s: new connections wait, %d ms at a time, until descriptors are free "
             "(connections already open are served)",
             strerror(-err), ACCEPT_PAUSE_MS);
}

static void accept_unpaused(struct http_worker *w)
{
    if (!w->accept_paused)
        return;
    w->accept_paused = 0;
    STAT_ADD(w->st, accept_paused, (uint64_t)-1);
}

/*
 * Accepting resumes after a pause: when a descriptor can be had now (an
 * eventfd takes a descriptor and a file, as an accept does), the worker is
 * no longer out of them, whether or not a client is waiting. Without this a
 * pause that ended with an empty backlog kept /healthz at 503 until the
 * next client came, which the health check, on the admin listener, is not.
 */
static void accept_probe(struct http_worker *w)
{
    int fd;

    if (!w->accept_paused)
        return;
    fd = eventfd(0, EFD_CLOEXEC);
    if (fd < 0)
        return;
    (void)close(fd);
    accept_unpaused(w);
}

static void on_accept(struct http_worker *w, int li, const struct io_uring_cqe *cqe)
{
    struct http_conn *c;
    int fd = cqe->res;

    if (!(cqe->flags & IORING_CQE_F_MORE))
        w->accepting[li] = 0;
    if (fd < 0) {
        if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM)
            accept_pause(w, fd);
        else if (fd != -ECANCELED)
            log_warn("accept: %s", strerror(-fd));
        return;
    }
    accept_unpaused(w);
    if (w->accept_said) {
        w->accept_said = 0;
        log_info("accept: accepting again");
    }
    STAT_INC(w->st, clients_accepted);
    if (w->draining ||
        (w->cfg->client.max_connections && w->nclients >= w->cfg->client.max_connections)) {
        STAT_INC(w->st, clients_refused);
        (void)close(fd);
        return;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        (void)close(fd);
        return;
    }
    end_init(w, &c->e, SIDE_CLIENT, fd);
    w->nclients++;
    STAT_INC(w->st, clients_active);
    conn_reset_exchange(w, c);
    c->state = HST_IDLE;
    c->keep_alive = 1;
    conn_sync(w, c);
}

/*
 * What every receive completion does, whichever side: account for the
 * operation, queue the bytes, note EOF or a wait for buffers. 1 when the
 * side's handler is to run (the socket is open); *oom when bytes were lost.
 */
static int end_received(struct http_worker *w, struct http_end *e, const struct io_uring_cqe *cqe,
                        int *oom)
{
    int res = cqe->res;

    *oom = 0;
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
        e->rx = RX_OFF;
        e->nops--;
    }
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);

        core_buf_take(&w->t->bufs, bid);
        if (res > 0 && !e->closing) {
            if (core_segq_push(&e->rxq, &w->t->pool, &w->t->bufs, core_buf_ptr(&w->t->bufs, bid),
                               (size_t)res, bid) < 0) {
                *oom = 1; /* these bytes are lost: the stream can't go on */
            } else {
                e->rx_total += (uint64_t)res;
                e->moved_rx = 1;
            }
        }
        core_buf_release(&w->t->bufs, bid);
    }
    if (res == -ENOBUFS) {
        /* No buffer published: try again once the next turn tops them up. */
        STAT_INC(w->st, recv_buffer_waits);
        if (!e->closing && !e->starved) {
            /* first come, first re-armed: a wait is never passed over */
            e->starved = 1;
            core_list_add_tail(&w->starved, &e->wait);
        }
    } else if (res <= 0 && res != -ECANCELED) {
        e->eof = 1; /* 0 = orderly close; < 0 = reset: both end the input */
    }
    if (e->closing) {
        if (!e->nops)
            end_reap(w, e);
        return 0;
    }
    return 1;
}

static void conn_received(struct http_worker *w, struct http_conn *c, int res, int oom)
{
    if (oom) {
        c->keep_alive = 0;
        if (c->state == HST_BODY || c->state == HST_WAIT)
            conn_respond(w, c, 502, HT_OUT_OF_MEMORY);
        else
            conn_abort(w, c, HT_OUT_OF_MEMORY);
    } else if (res > 0) {
        STAT_ADD(w->st, bytes_in, (uint64_t)res);
        if (c->discard)
            core_segq_clear(&c->e.rxq, &w->t->pool, &w->t->bufs);
        if (c->state != HST_WAIT)
            conn_process(w, c);
    }
    if (c->e.eof)
        conn_eof(w, c);
    conn_sync(w, c);
}

static void up_received(struct http_worker *w, struct http_up *u, int res, int oom)
{
    struct http_conn *c = u->c;

    if (res > 0) {
        u->got_bytes = 1;
        if (c)
            c->up_bytes += res;
    }
    if (oom)
        up_oom(w, u);
    else
        up_process(w, u);
    if (c)
        conn_sync(w, c);
    else if (!u->e.closing)
        end_rx_update(w, &u->e);
}

static void on_recv(struct http_worker *w, struct http_end *e, const struct io_uring_cqe *cqe)
{
    int oom;

    if (!end_received(w, e, cqe, &oom))
        return;
    if (e->side == SIDE_CLIENT)
        conn_received(w, (struct http_conn *)e, cqe->res, oom);
    else
        up_received(w, (struct http_up *)e, cqe->res, oom);
}

/* A send completed with res bytes (or -EAGAIN): next send, or wait for room. */
static void end_sent(struct http_worker *w, struct http_end *e, int res)
{
    if (res > 0) {
        core_segq_consume(&e->txq, &w->t->pool, &w->t->bufs, (size_t)res);
        e->tx_total += (uint64_t)res;
        e->moved_tx = 1;
    }
    if (!e->txq.bytes)
        e->tx_wait_ms = 0;
    if (res < 0 || ((uint32_t)res < e->tx_attempt && e->txq.bytes))
        end_tx_wait(w, e); /* the socket is full */
    else
        end_tx_kick(w, e);
}

/* The socket that was full has room again (or failed: the send will say). */
static void on_poll(struct http_worker *w, struct http_end *e)
{
    struct http_conn *c;

    e->polling = 0;
    e->nops--;
    if (e->closing) {
        if (!e->nops)
            end_reap(w, e);
        return;
    }
    end_tx_kick(w, e);
    c = e->side == SIDE_CLIENT ? (struct http_conn *)e : ((struct http_up *)e)->c;
    if (c)
        conn_sync(w, c);
}

static void conn_send_done(struct http_worker *w, struct http_conn *c, int res)
{
    if (res < 0 && res != -EAGAIN) {
        c->e.eof = 1; /* the connection is gone: nothing more will come either */
        conn_abort(w, c, HT_CLIENT_CLOSED);
        return;
    }
    end_sent(w, &c->e, res);
    STAT_ADD(w->st, bytes_out, (uint64_t)(res > 0 ? res : 0));
    /* room on this side lets the upstream's backlog move */
    if (c->up && !c->up->e.closing)
        up_process(w, c->up);
    if (c->e.closing)
        return;
    if (!c->e.txq.bytes && !c->e.sending && c->abort_after_flush) {
        /* a broken response fully flushed: close, don't pretend it ended */
        conn_abort(w, c, c->termination);
        return;
    }
    conn_check_done(w, c);
    conn_sync(w, c);
}

static void up_send_done(struct http_worker *w, struct http_up *u, int res)
{
    struct http_conn *c = u->c;

    if (res < 0 && res != -EAGAIN) {
        up_failed(w, u, HT_UPSTREAM_RESET);
    } else {
        end_sent(w, &u->e, res);
        /* room upstream lets the client's backlog move */
        if (c && !c->e.closing && (c->state == HST_BODY || c->state == HST_TUNNEL))
            conn_process(w, c);
    }
    if (c)
        conn_sync(w, c);
}

/* A send completed: the socket's bookkeeping, then its side's handler. */
static void on_send(struct http_worker *w, struct http_end *e, const struct io_uring_cqe *cqe)
{
    if (e->vec) {
        vec_put(w, e->vec);
        e->vec = NULL;
    }
    e->sending = 0;
    e->nops--;
    if (e->closing) {
        if (!e->nops)
            end_reap(w, e);
        return;
    }
    if (e->side == SIDE_CLIENT)
        conn_send_done(w, (struct http_conn *)e, cqe->res);
    else
        up_send_done(w, (struct http_up *)e, cqe->res);
}

static void on_connect(struct http_worker *w, struct http_up *u, const struct io_uring_cqe *cqe)
{
    struct http_conn *c = u->c;

    u->e.nops--;
    if (u->e.closing) {
        if (!u->e.nops)
            end_reap(w, &u->e);
        return;
    }
    if (cqe->res < 0) {
        log_warn("connect to upstream %s: %s", u->addr.str, strerror(-cqe->res));
        up_failed(w, u,
                  cqe->res == -ECANCELED ? HT_UPSTREAM_CONNECT_TIMEOUT
                                         : HT_UPSTREAM_CONNECT_REFUSED);
    } else {
        net_pick_ok(&w->pick, u->addr.str);
        if (c)
            c->up_connect_us = (int64_t)(w->t->now_us - u->t_connect);
        u->state = UPS_HEAD;
        u->t_sent = w->t->now_us;
        end_tx_kick(w, &u->e);
    }
    if (c)
        conn_sync(w, c);
    else if (!u->e.closing)
        end_rx_update(w, &u->e);
}

static void on_timer(struct http_worker *w, struct http_end *e, enum tclass tc)
{
    struct http_conn *c;

    e->tclass = TC_NONE;
    if (e->side == SIDE_UP) {
        struct http_up *u = (struct http_up *)e;

        c = u->c;
        if (tc == TC_POOL) {
            up_close(w, u);
        } else if (tc == TC_SETTLE) {
            /* quiet since its bodiless response: fit for the next request */
            if (up_poolable(w, u))
                pool_insert(w, u);
            else
                up_close(w, u);
        } else if (tc == TC_CONNECT) {
            log_warn("connect to upstream %s: timed out", u->addr.str);
            up_failed(w, u, HT_UPSTREAM_CONNECT_TIMEOUT);
        } else {
            up_failed(w, u, HT_UPSTREAM_TIMEOUT);
        }
        if (c)
            conn_sync(w, c);
        return;
    }
    c = (struct http_conn *)e;
    switch (tc) {
    case TC_HEADER:
        c->keep_alive = 0;
        conn_respond(w, c, 408, HT_HEADER_TIMEOUT);
        break;
    case TC_IDLE:
        if (c->state == HST_TUNNEL)
            conn_abort(w, c, HT_IDLE_TIMEOUT);
        else
            end_close(w, e);
        break;
    case TC_LINGER:
        end_close(w, e);
        break;
    case TC_AUTH:
        /* the helpers are behind (a costly hash, a queue): 503 now; the check's result is dropped
         */
        auth_detach(c);
        conn_respond(w, c, 503, HT_AUTH_BUSY);
        break;
    default:
        conn_abort(w, c, HT_CLIENT_TIMEOUT);
        break;
    }
    conn_sync(w, c);
}

/* ---- the worker --------------------------------------------------------- */

static void arm_accept(struct http_worker *w, int li)
{
    struct io_uring_sqe *sqe = core_sqe(w->t);

    io_uring_prep_multishot_accept(sqe, w->lfd[li], NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data(sqe, &w->op_accept[li]);
    w->accepting[li] = 1;
}

static void arm_wake(struct http_worker *w)
{
    struct io_uring_sqe *sqe = core_sqe(w->t);

    io_uring_prep_read(sqe, w->evfd, &w->evbuf, sizeof(w->evbuf), 0);
    io_uring_sqe_set_data(sqe, &w->op_wake);
}

static void drain_begin(struct http_worker *w)
{
    struct http_end *e;

    if (w->draining)
        return;
    w->draining = 1;
    w->drain_deadline = w->t->now_ms + w->cfg->shutdown_grace_ms;
    /*
     * Accepting goes on while draining, and on_accept() closes each new
     * connection at once: a client learns now, not from a reset at exit.
     */
    while (!core_list_empty(&w->pool))
        up_close(w, core_list_entry(core_list_first(&w->pool), struct http_up, pool_link));
    for (struct core_list *n = core_list_first(&w->live), *nx; n; n = nx) {
        nx = core_list_next(&w->live, n);
        e = core_list_entry(n, struct http_end, live);
        if (e->side == SIDE_CLIENT && !e->closing) {
            struct http_conn *c = (struct http_conn *)e;
            c->keep_alive = 0;
            if (c->state == HST_IDLE && !e->rxq.bytes)
                end_close(w, e);
        }
    }
}

/*
 * The ring's buffers are shared by every connection of the worker, and each
 * receive takes a whole one. Bytes that wait (for a client that does not
 * read, behind a slow response, for an origin that does not take a body) may
 * hold them only while there are plenty: past half the ring, each queue that
 * has waited STALL_MS moves its bytes into chunks of its own and its buffers
 * go back, so however many connections stall, the others still find buffers
 * to receive into. Queues that move (fast peers) are never copied. A send in
 * flight keeps the segments it points to.
 */
static void pressure_sweep(struct http_worker *w)
{
    struct core_bufring *b = &w->t->bufs;
    struct http_end *e;

    if (!ring_pressed(w) || w->t->now_ms < w->sweep_ms)
        return;
    w->sweep_ms = w->t->now_ms + SWEEP_MS;
    STAT_INC(w->st, buffer_sweeps);
    for (struct core_list *n = core_list_first(&w->live); n; n = core_list_next(&w->live, n)) {
        e = core_list_entry(n, struct http_end, live);
        if (e->closing)
            continue;
        if (e->rxq.nring && e->rx_wait_ms && w->t->now_ms - e->rx_wait_ms >= STALL_MS)
            (void)core_segq_compact(&e->rxq, &w->t->pool, b, 0);
        if (e->txq.nring && e->tx_wait_ms && w->t->now_ms - e->tx_wait_ms >= STALL_MS)
            (void)core_segq_compact(&e->txq, &w->t->pool, b, e->sending ? e->tx_nsegs : 0);
    }
}

/* Start the access log's next write to stdout, if one is due; report dropped lines. */
static void log_flush(struct http_worker *w)
{
    const char *p;
    size_t n = log_writer_next(&w->lw, w->t->now_ms, w->draining, &p);
    uint64_t dropped;

    if (n) {
        struct io_uring_sqe *sqe = core_sqe(w->t);
        io_uring_prep_write(sqe, STDOUT_FILENO, p, (unsigned)n, (uint64_t)-1);
        io_uring_sqe_set_data(sqe, &w->op_logw);
    }
    dropped = log_out_dropped(w->lo);
    if (dropped != w->log_dropped_counted) {
        /* the metric and stderr count the same thing */
        STAT_ADD(w->st, log_dropped, dropped - w->log_dropped_counted);
        w->log_dropped_counted = dropped;
    }
    if (dropped != w->log_dropped_reported && w->t->now_ms - w->log_report_ms >= 1000) {
        log_warn("access log: %llu lines dropped (stdout too slow)",
                 (unsigned long long)(dropped - w->log_dropped_reported));
        w->log_dropped_reported = dropped;
        w->log_report_ms = w->t->now_ms;
    }
}

static void w_cqe(struct core_thread *t, struct core_op *op, const struct io_uring_cqe *cqe)
{
    struct http_worker *w = t->app;

    switch ((enum core_op_kind)op->kind) {
    case OPK_ACCEPT:
        on_accept(w, op == &w->op_accept[0] ? 0 : 1, cqe);
        break;
    case OPK_RECV:
        on_recv(w, core_container_of(op, struct http_end, op_recv), cqe);
        break;
    case OPK_SEND:
        on_send(w, core_container_of(op, struct http_end, op_send), cqe);
        break;
    case OPK_CONNECT:
        on_connect(w, (struct http_up *)core_container_of(op, struct http_end, op_connect), cqe);
        break;
    case OPK_POLL:
        on_poll(w, core_container_of(op, struct http_end, op_poll));
        break;
    case OPK_LOGW:
        log_writer_done(&w->lw, cqe->res);
        /* the next run at once if one is due: a turn can log more than one run holds */
        if (cqe->res > 0)
            log_flush(w);
        break;
    case OPK_WAKE:
        /* the main thread (stop), or the password checks' helpers (results) */
        auth_deliver(w);
        if (atomic_load(&w->sh->stop))
            drain_begin(w);
        arm_wake(w);
        break;
    case OPK_ADMIN_ACCEPT:
    case OPK_ADMIN_RECV:
    case OPK_ADMIN_SEND:
        http_admin_cqe(w->admin, op, cqe);
        break;
    case OPK_NONE:
    case OPK_COUNT:
        log_error("completion of an unknown operation (kind %u)", op->kind);
        break;
    }
}

/* Give back memory the last TRIM_MS did not need (see TRIM_MS). */
static void memory_trim(struct http_worker *w)
{
    struct core_pool *p = &w->t->pool;
    int quiet = p->taken == w->trim_taken;

    (void)core_bufring_trim(&w->t->bufs);
    w->untrimmed += core_pool_trim(p) + core_fl_trim(&w->free_vecs);
    w->trim_taken = p->taken;
    /*
     * The allocator's free pages go back once a worker took no block for a
     * whole TRIM_MS and has freed enough since the last time: not under
     * load (it walks the heap), and not every second for a lone connect.
     */
    if (quiet && w->untrimmed >= TRIM_MIN_BYTES) {
        w->untrimmed = 0;
#ifndef RINGPROXY_SANITIZED /* not glibc's allocator there: malloc_trim() would crash */
        (void)malloc_trim(0);
#endif
    }
}

static long w_turn(struct core_thread *t)
{
    struct http_worker *w = t->app;
    uint64_t next = UINT64_MAX;

    w->turn++;
    while (!core_list_empty(&w->reap))
        end_free(w, core_list_entry(core_list_first(&w->reap), struct http_end, wait));
    gen_sync(w);
    STAT_INC(w->st, loop_turns);
    atomic_store_explicit(&w->st->last_turn_ms, t->now_ms, memory_order_relaxed);
    w->addrs = net_resolver_get(w->sh->resolver, (unsigned)t->id);
    if (w->addrs->gen != w->addrs_gen) {
        w->addrs_gen = w->addrs->gen;
        net_pick_sync(&w->pick, w->addrs);
        pool_sweep(w);
    }
    for (int tc = TC_NONE + 1; tc < TC_COUNT; tc++) {
        struct core_timer *tm;

        while ((tm = core_tq_pop_expired(&w->tq[tc], t->now_ms)))
            on_timer(w, core_container_of(tm, struct http_end, timer), (enum tclass)tc);
        if (core_tq_next(&w->tq[tc]) < next)
            next = core_tq_next(&w->tq[tc]);
    }
    if (!core_list_empty(&w->starved) && t->bufs.in_use < t->bufs.nbufs) {
        struct core_list waiting;

        /* those that run out again while re-armed wait in w->starved for the next turn */
        core_list_init(&waiting);
        core_list_splice_tail(&waiting, &w->starved);
        while (!core_list_empty(&waiting)) {
            struct http_end *e = core_list_entry(core_list_first(&waiting), struct http_end, wait);

            core_list_del(&e->wait);
            e->starved = 0;
            end_rx_update(w, e);
        }
    }
    pressure_sweep(w);
    if (t->now_ms >= w->trim_ms) {
        memory_trim(w);
        w->trim_ms = t->now_ms + TRIM_MS;
    }
    if (w->trim_ms < next)
        next = w->trim_ms;
    {
        uint64_t at = http_admin_turn(w->admin);

        if (at < next)
            next = at;
    }
    if (t->now_ms >= w->accept_resume_ms)
        accept_probe(w);
    for (int i = 0; i < HTTP_MAX_LISTENERS; i++)
        if (w->lfd[i] >= 0 && !w->accepting[i] && t->now_ms >= w->accept_resume_ms)
            arm_accept(w, i);
    if (t->now_ms < w->accept_resume_ms && w->accept_resume_ms < next)
        next = w->accept_resume_ms;
    log_flush(w);
    if (w->draining) {
        if (t->now_ms >= w->drain_deadline) {
            struct http_end *e;

            /* what did not finish in the grace period is cut off, and logged */
            for (struct core_list *n = core_list_first(&w->live), *nx; n; n = nx) {
                nx = core_list_next(&w->live, n);
                e = core_list_entry(n, struct http_end, live);
                if (!e->closing && e->side == SIDE_CLIENT)
                    conn_abort(w, (struct http_conn *)e, HT_SHUTDOWN);
            }
            for (struct core_list *n = core_list_first(&w->live), *nx; n; n = nx) {
                nx = core_list_next(&w->live, n);
                e = core_list_entry(n, struct http_end, live);
                if (!e->closing)
                    end_close(w, e);
            }
        }
        if (core_list_empty(&w->live) && !log_out_pending(w->lo) && !w->lw.writing)
            return -1;
        if (w->drain_deadline < next)
            next = w->drain_deadline;
        if (t->now_ms > w->drain_deadline + 2000)
            return -1; /* something never completed: give up waiting */
    }
    if (!core_list_empty(&w->starved))
        next = t->now_ms + 1;
    if (log_writer_due(&w->lw, t->now_ms) < next)
        next = log_writer_due(&w->lw, t->now_ms);
    if (next == UINT64_MAX)
        return 1000;
    return next <= t->now_ms ? 0 : (long)(next - t->now_ms);
}

int http_worker_run(struct http_shared *sh, const struct http_worker_params *p,
                    void (*ready)(void *arg, int err, const char *what), void *arg)
{
    /* the settings that size buffers are the same in every generation */
    const struct cfg *cfg = atomic_load(&sh->gen)->cfg;
    struct core_thread t;
    struct core_thread_params tp;
    struct http_worker *w;
    const char *what = "";
    size_t H = cfg->limits.max_header_bytes;
    int r;

    w = calloc(1, sizeof(*w));
    if (!w) {
        ready(arg, -ENOMEM, "calloc");
        return -ENOMEM;
    }
    log_err_set_worker(p->id);
    w->free_vecs.objsz = sizeof(struct tx_vec);
    w->max_hdrs = (uint16_t)(cfg->limits.max_headers + 1);
    w->blk.hdrs = align16(sizeof(struct conn_xa));
    w->blk.in = w->blk.hdrs + align16((size_t)w->max_hdrs * sizeof(struct core_hdr));
    w->blk.out = w->blk.in + align16(H);
    /* a rewritten head: the received one and what may be added (Host, Connection) */
    w->blk.answer = w->blk.out + align16(H + 1024);
    /* room for rules' answers whether or not this generation has rules: a reload may add them */
    w->blk.size = w->blk.answer + ANSWER_ROOM;
    w->rules_head_cap = w->blk.answer - w->blk.out;
    tp = (struct core_thread_params){.entries = 1024,
                                     .nbufs = ring_bufs(sh->nworkers),
                                     .bufsz = RING_BUFSZ,
                                     .blksz = w->blk.size};
    r = core_thread_init(&t, p->id, &tp, &what);
    if (r < 0) {
        free(w);
        ready(arg, r, what);
        return r;
    }
    t.app = w;
    w->t = &t;
    w->sh = sh;
    w->cfg = cfg;
    w->st = &sh->stats[p->id];
    core_list_init(&w->live);
    core_list_init(&w->starved);
    core_list_init(&w->reap);
    core_list_init(&w->pool);
    w->fwd = (struct http_fwd_policy){.max_uri_bytes = cfg->limits.max_uri_bytes,
                                      .max_body_bytes = cfg->limits.max_body_bytes,
                                      .default_host = sh->upstream_host};
    w->req_limits = (struct http_limits){.max_head = cfg->limits.max_header_bytes,
                                         .max_line = cfg->limits.max_header_line_bytes,
                                         .max_first_line = cfg->limits.max_uri_bytes + 64,
                                         .max_lines = cfg->limits.max_headers};
    w->resp_limits = (struct http_limits){.max_head = cfg->limits.max_header_bytes,
                                          .max_line = cfg->limits.max_header_bytes,
                                          .max_first_line = cfg->limits.max_header_line_bytes,
                                          .max_lines = cfg->limits.max_headers};
    w->pool_cap = pool_cap(cfg, sh->nworkers);
    core_tq_init(&w->tq[TC_NONE], 0);
    core_tq_init(&w->tq[TC_IDLE], cfg->client.idle_timeout_ms);
    core_tq_init(&w->tq[TC_HEADER], cfg->client.header_timeout_ms);
    core_tq_init(&w->tq[TC_SEND], cfg->client.idle_timeout_ms);
    core_tq_init(&w->tq[TC_BODY], cfg->client.idle_timeout_ms);
    core_tq_init(&w->tq[TC_LINGER], LINGER_MS);
    core_tq_init(&w->tq[TC_CONNECT], cfg->upstream.connect_timeout_ms);
    core_tq_init(&w->tq[TC_RESPONSE], cfg->upstream.response_timeout_ms);
    core_tq_init(&w->tq[TC_POOL], cfg->upstream.pool_idle_timeout_ms);
    core_tq_init(&w->tq[TC_SETTLE], SETTLE_MS);
    core_tq_init(&w->tq[TC_AUTH], AUTH_WAIT_MS);
    for (int i = 0; i < HTTP_MAX_LISTENERS; i++) {
        w->lfd[i] = p->lfd[i];
        w->op_accept[i].kind = OPK_ACCEPT;
    }
    w->op_logw.kind = OPK_LOGW;
    w->op_wake.kind = OPK_WAKE;
    w->evfd = p->evfd;
    w->log_line_max = log_fmt_max_line(sh->log_fmt);
    w->log_line = malloc(w->log_line_max);
    w->lo = log_out_new_lines(cfg->access_log.buffer_bytes, w->log_line_max);
    w->lw =
        (struct log_writer){.o = w->lo,
                            .lock = sh->stdout_is_pipe && sh->nworkers > 1 ? &sh->log_lock : NULL,
                            .id = p->id + 1};
    w->addrs = net_resolver_get(sh->resolver, (unsigned)p->id);
    w->addrs_gen = w->addrs->gen;
    net_pick_sync(&w->pick, w->addrs);
    if (!w->lo || !w->log_line) {
        r = -ENOMEM;
        what = "log buffer";
        goto fail;
    }
    gen_sync(w);
    if (!w->pin) {
        r = -ENOMEM;
        what = "config generation";
        goto fail;
    }
    if (p->admin_fd >= 0 && !(w->admin = http_admin_new(&t, sh, p->admin_fd))) {
        r = -ENOMEM;
        what = "admin listener";
        goto fail;
    }
    arm_wake(w);
    ready(arg, 0, NULL);
    static const struct core_loop_ops ops = {.cqe = w_cqe, .turn = w_turn};
    r = core_loop_run(&t, &ops);
    if (r < 0)
        log_error("worker %d: io_uring_submit_and_wait: %s", p->id, strerror(-r));
    /*
     * Stop listening now. A close() would not: the ring's accept holds the
     * socket, and the kernel tears a ring down after the process is gone,
     * so the listener took connections for a moment after exit, then reset
     * them (a proxy restarted on the same port had its first clients
     * reset). A shutdown() ends listening at once; connections still in the
     * backlog are reset here, as at any exit, and later ones are refused.
     */
    for (int i = 0; i < HTTP_MAX_LISTENERS; i++)
        if (w->lfd[i] >= 0)
            (void)shutdown(w->lfd[i], SHUT_RDWR);
    if (p->admin_fd >= 0)
        (void)shutdown(p->admin_fd, SHUT_RDWR);
    http_admin_free(w->admin);
    log_out_free(w->lo);
    free(w->log_line);
    free(w->rules_path);
    free(w->rules_head);
    free(w->rules_cred);
    if (w->auth)
        http_auth_worker_gone(w->auth, (unsigned)p->id);
    gen_release(w);
    net_pick_free(&w->pick);
    core_fl_drain(&w->free_vecs);
    core_thread_exit(&t);
    free(w);
    return r;
fail:
    log_out_free(w->lo);
    free(w->log_line);
    free(w->rules_path);
    free(w->rules_head);
    free(w->rules_cred);
    gen_release(w);
    net_pick_free(&w->pick);
    core_thread_exit(&t);
    free(w);
    ready(arg, r, what);
    return r;
}
