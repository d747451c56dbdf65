/*
 * ringproxy-relay: the benchmark's "floor". A bare io_uring TCP byte relay:
 * one thread, one ring, accept on --listen, connect to --upstream once per
 * client connection, then recv/send both ways until either side closes.
 * No HTTP parsing, no logging, no pooling. Whatever CPU it spends per request
 * is (nearly) the kernel's loopback TCP cost of moving the bytes twice, which
 * is the lower bound any proxy built on the same kernel interface can reach.
 *
 * Usage: ringproxy-relay --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT
 *                        [--bufsize BYTES]
 *
 * liburing 2.3 API only (Debian 12). Bench tool: diagnostics on stderr,
 * nothing on stdout; SIGTERM/SIGINT end the process.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <liburing.h>

enum op_kind { OP_ACCEPT = 1, OP_CONNECT, OP_RECV, OP_SEND, OP_CLOSE };

struct conn;

/* One direction of a relay: bytes read from `from` are written to `to`. */
struct dir {
    struct conn *c;
    int from, to;
    char *buf;
    size_t len, off; /* bytes held, bytes already sent */
    int eof;         /* `from` reached EOF (or failed) */
};

struct conn {
    int cfd, ufd;
    int inflight; /* operations the ring still owns */
    int closing;
    int closes_left;
    struct dir d[2]; /* 0: client -> upstream, 1: upstream -> client */
};

/* user_data encoding: pointer | kind (pointers are 8-aligned). */
#define UD(p, k) ((__u64)(uintptr_t)(p) | (__u64)(k))
#define UD_PTR(u) ((void *)(uintptr_t)((u) & ~(__u64)7))
#define UD_KIND(u) ((int)((u)&7))

static struct io_uring ring;
static struct sockaddr_in upstream_addr;
static size_t bufsize = 65536;
static int listen_fd = -1;
static long live_conns;

static struct io_uring_sqe *get_sqe(void)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    while (!sqe) {
        io_uring_submit(&ring);
        sqe = io_uring_get_sqe(&ring);
    }
    return sqe;
}

static int parse_addr(const char *s, struct sockaddr_in *sa)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof host)
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((unsigned short)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
        return -1;
    return 0;
}

static void arm_accept(void)
{
    struct io_uring_sqe *sqe = get_sqe();
    io_uring_prep_multishot_accept(sqe, listen_fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, UD(NULL, OP_ACCEPT));
}

static void arm_recv(struct dir *d)
{
    struct io_uring_sqe *sqe = get_sqe();
    io_uring_prep_recv(sqe, d->from, d->buf, bufsize, 0);
    io_uring_sqe_set_data64(sqe, UD(d, OP_RECV));
    d->c->inflight++;
}

static void arm_send(struct dir *d)
{
    struct io_uring_sqe *sqe = get_sqe();
    io_uring_prep_send(sqe, d->to, d->buf + d->off, d->len - d->off, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, UD(d, OP_SEND));
    d->c->inflight++;
}

static void conn_free(struct conn *c)
{
    free(c->d[0].buf);
    free(c->d[1].buf);
    free(c);
    live_conns--;
}

/* Start tearing a connection down; it is freed once the ring owns nothing of it. */
static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    /* Make pending recv/send on both sockets complete now. */
    if (c->cfd >= 0)
        shutdown(c->cfd, SHUT_RDWR);
    if (c->ufd >= 0)
        shutdown(c->ufd, SHUT_RDWR);
}

static void maybe_finish(struct conn *c)
{
    if (!c->closing || c->inflight > 0 || c->closes_left > 0)
        return;
    if (c->closes_left == 0) {
        int fds[2] = {c->cfd, c->ufd};
        c->closes_left = -1;
        int n = 0;
        for (int i = 0; i < 2; i++) {
            if (fds[i] < 0)
                continue;
            struct io_uring_sqe *sqe = get_sqe();
            io_uring_prep_close(sqe, fds[i]);
            io_uring_sqe_set_data64(sqe, UD(c, OP_CLOSE));
            n++;
        }
        c->cfd = c->ufd = -1;
        if (n == 0) {
            conn_free(c);
            return;
        }
        c->closes_left = n;
        c->inflight += n;
    }
}

static void on_accept(struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE))
        arm_accept();
    if (cqe->res < 0) {
        if (cqe->res != -EAGAIN && cqe->res != -EINTR && cqe->res != -ECONNABORTED)
            fprintf(stderr, "relay: accept: %s\n", strerror(-cqe->res));
        return;
    }
    int cfd = cqe->res;
    int one = 1;
    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int ufd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct conn *c = calloc(1, sizeof *c);
    if (ufd < 0 || !c) {
        if (ufd >= 0)
            close(ufd);
        free(c);
        close(cfd);
        return;
    }
    setsockopt(ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    live_conns++;
    c->cfd = cfd;
    c->ufd = ufd;
    c->d[0] = (struct dir){.c = c, .from = cfd, .to = ufd};
    c->d[1] = (struct dir){.c = c, .from = ufd, .to = cfd};
    struct io_uring_sqe *sqe = get_sqe();
    io_uring_prep_connect(sqe, ufd, (struct sockaddr *)&upstream_addr, sizeof upstream_addr);
    io_uring_sqe_set_data64(sqe, UD(c, OP_CONNECT));
    c->inflight++;
}

static void on_connect(struct conn *c, int res)
{
    c->inflight--;
    if (res < 0 || c->closing) {
        if (res < 0)
            fprintf(stderr, "relay: connect upstream: %s\n", strerror(-res));
        conn_close(c);
        maybe_finish(c);
        return;
    }
    for (int i = 0; i < 2; i++) {
        c->d[i].buf = malloc(bufsize);
        if (!c->d[i].buf) {
            conn_close(c);
            maybe_finish(c);
            return;
        }
    }
    arm_recv(&c->d[0]);
    arm_recv(&c->d[1]);
}

static void on_recv(struct dir *d, int res)
{
    struct conn *c = d->c;
    c->inflight--;
    if (c->closing) {
        maybe_finish(c);
        return;
    }
    if (res <= 0) {
        /* EOF or error on one side: a byte relay for HTTP keep-alive traffic
         * has nothing left to do once either peer goes away. */
        d->eof = 1;
        conn_close(c);
        maybe_finish(c);
        return;
    }
    d->len = (size_t)res;
    d->off = 0;
    arm_send(d);
}

static void on_send(struct dir *d, int res)
{
    struct conn *c = d->c;
    c->inflight--;
    if (c->closing) {
        maybe_finish(c);
        return;
    }
    if (res < 0) {
        conn_close(c);
        maybe_finish(c);
        return;
    }
    d->off += (size_t)res;
    if (d->off < d->len)
        arm_send(d);
    else
        arm_recv(d);
}

static void usage(void)
{
    fprintf(stderr, "usage: ringproxy-relay --listen ADDR:PORT --upstream ADDR:PORT "
                    "[--bufsize BYTES]\n");
}

int main(int argc, char **argv)
{
    const char *listen_s = NULL, *upstream_s = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--listen") && i + 1 < argc)
            listen_s = argv[++i];
        else if (!strcmp(argv[i], "--upstream") && i + 1 < argc)
            upstream_s = argv[++i];
        else if (!strcmp(argv[i], "--bufsize") && i + 1 < argc)
            bufsize = (size_t)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--help")) {
            usage();
            return 0;
        } else {
            usage();
            return 2;
        }
    }
    struct sockaddr_in la;
    if (!listen_s || !upstream_s || parse_addr(listen_s, &la) ||
        parse_addr(upstream_s, &upstream_addr) || bufsize < 512) {
        usage();
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&la, sizeof la) ||
        listen(listen_fd, 4096)) {
        perror("relay: listen");
        return 1;
    }

    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    int ret = io_uring_queue_init_params(4096, &ring, &p);
    if (ret < 0) { /* older kernel: plain ring */
        memset(&p, 0, sizeof p);
        ret = io_uring_queue_init_params(4096, &ring, &p);
    }
    if (ret < 0) {
        fprintf(stderr, "relay: io_uring_queue_init: %s\n", strerror(-ret));
        return 1;
    }

    arm_accept();
    for (;;) {
        ret = io_uring_submit_and_wait(&ring, 1);
        if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
            fprintf(stderr, "relay: io_uring_submit_and_wait: %s\n", strerror(-ret));
            return 1;
        }
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        io_uring_for_each_cqe (&ring, head, cqe) {
            n++;
            __u64 ud = cqe->user_data;
            switch (UD_KIND(ud)) {
            case OP_ACCEPT:
                on_accept(cqe);
                break;
            case OP_CONNECT:
                on_connect(UD_PTR(ud), cqe->res);
                break;
            case OP_RECV:
                on_recv(UD_PTR(ud), cqe->res);
                break;
            case OP_SEND:
                on_send(UD_PTR(ud), cqe->res);
                break;
            case OP_CLOSE: {
                struct conn *c = UD_PTR(ud);
                c->inflight--;
                if (--c->closes_left == 0)
                    conn_free(c);
                break;
            }
            default:
                break;
            }
        }
        io_uring_cq_advance(&ring, n);
    }
}
