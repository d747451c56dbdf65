/*
 * Tunnels after a 101 (docs/http.md, "Upgrade"): a half-close on either side
 * is forwarded to the other after every byte sent before it, and the tunnel
 * ends when both sides have closed (#26.1: the client's EOF used to shut the
 * upstream's write side at once, before its queued bytes went out).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "tests/e2e/harness.h"

static struct proxy px;
static int lfd = -1;

#define MIB (1024 * 1024)

struct side {
    int fd;
    size_t got;    /* bytes read until EOF */
    int data_ok;   /* they were the pattern */
    int reverse;   /* origin: send a MiB and half-close first, then read */
    char said[64]; /* origin: what it read after its half-close */
};

static const char req[] = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n"
                          "Upgrade: websocket\r\n\r\n";
static const char resp101[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              "Connection: upgrade\r\n\r\n";

static void pattern(char *p, size_t n, size_t off)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (char)('a' + (off + i) % 23);
}

/* Read until EOF (bounded to 10 s), checking the pattern. */
static size_t drain(int fd, int *ok)
{
    char buf[65536], want[65536];
    size_t got = 0;
    long until = h_now_ms() + 10000;

    *ok = 1;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t n;

        if (poll(&p, 1, (int)(until - h_now_ms())) <= 0)
            return got;
        n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0)
            return got;
        pattern(want, (size_t)n, got);
        *ok &= !memcmp(buf, want, (size_t)n);
        got += (size_t)n;
    }
}

static void send_mib(int fd)
{
    char buf[65536];

    for (size_t off = 0; off < MIB; off += sizeof(buf)) {
        pattern(buf, sizeof(buf), off);
        cr_assert_eq(h_send(fd, buf, sizeof(buf)), 0);
    }
}

/* Read a head (up to CRLFCRLF) byte by byte, so nothing after it is taken. */
static void read_head(int fd, char *out, size_t cap)
{
    size_t n = 0;

    while (n + 1 < cap) {
        struct pollfd p = {.fd = fd, .events = POLLIN};

        if (poll(&p, 1, 5000) <= 0 || recv(fd, out + n, 1, 0) != 1)
            break;
        n++;
        if (n >= 4 && !memcmp(out + n - 4, "\r\n\r\n", 4))
            break;
    }
    out[n] = '\0';
}

static void *origin_main(void *arg)
{
    struct side *s = arg;
    char head[4096];
    int fd = accept(lfd, NULL, NULL);

    s->fd = fd;
    if (fd < 0)
        return NULL;
    read_head(fd, head, sizeof(head));
    (void)send(fd, resp101, sizeof(resp101) - 1, MSG_NOSIGNAL);
    if (s->reverse) {
        char buf[65536];

        for (size_t off = 0; off < MIB; off += sizeof(buf)) {
            pattern(buf, sizeof(buf), off);
            if (send(fd, buf, sizeof(buf), MSG_NOSIGNAL) != (ssize_t)sizeof(buf))
                break;
        }
        struct timeval tv = {10, 0};
        ssize_t k;

        (void)shutdown(fd, SHUT_WR);
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        k = recv(fd, s->said, sizeof(s->said) - 1, MSG_WAITALL); /* up to EOF */
        s->said[k > 0 ? k : 0] = '\0';
    } else {
        char reply[64];
        int n;

        s->got = drain(fd, &s->data_ok);
        n = snprintf(reply, sizeof(reply), "got %zu", s->got);
        (void)send(fd, reply, (size_t)n, MSG_NOSIGNAL);
    }
    (void)close(fd);
    return NULL;
}

static void up(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);

    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(lfd >= 0);
    cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(listen(lfd, 16), 0);
    cr_assert_eq(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
    h_proxy_start(&px, ntohs(sa.sin_port), "{\"shutdown_grace_ms\": 1000}", NULL);
}

static void down(void)
{
    if (lfd >= 0)
        (void)close(lfd);
    lfd = -1;
    if (px.pid)
        cr_expect_eq(h_proxy_stop(&px), 0, "ringproxy exits 0 on SIGTERM");
}

/* The client sends a MiB and shuts its write side at once: all of it arrives, then the reply. */
Test(e2e_tunnel, client_half_close_after_data_is_forwarded, .init = up, .fini = down)
{
    for (int run = 0; run < 5; run++) {
        struct side o = {.fd = -1};
        pthread_t th;
        char head[4096], reply[64] = "";
        int fd = h_connect(px.port);
        size_t n = 0;

        cr_assert(fd >= 0);
        cr_assert_eq(pthread_create(&th, NULL, origin_main, &o), 0);
        cr_assert_eq(h_sends(fd, req), 0);
        read_head(fd, head, sizeof(head));
        cr_assert(!strncmp(head, "HTTP/1.1 101", 12), "run %d: %s", run, head);
        send_mib(fd);
        cr_assert_eq(shutdown(fd, SHUT_WR), 0);
        n = h_read_all(fd, reply, sizeof(reply), 10000);
        pthread_join(th, NULL);
        cr_assert_eq(o.got, MIB, "run %d: the origin got %zu of %d bytes", run, o.got, MIB);
        cr_assert(o.data_ok, "run %d: the origin got the wrong bytes", run);
        cr_assert(n > 0 && !strcmp(reply, "got 1048576"), "run %d: reply \"%s\"", run, reply);
        h_close(fd);
    }
}

/* The origin sends a MiB and shuts its write side: the client gets it all, then may still talk. */
Test(e2e_tunnel, origin_half_close_after_data_is_forwarded, .init = up, .fini = down)
{
    for (int run = 0; run < 5; run++) {
        struct side o = {.fd = -1, .reverse = 1};
        pthread_t th;
        char head[4096];
        int fd = h_connect(px.port), ok;
        size_t got;

        cr_assert(fd >= 0);
        cr_assert_eq(pthread_create(&th, NULL, origin_main, &o), 0);
        cr_assert_eq(h_sends(fd, req), 0);
        read_head(fd, head, sizeof(head));
        cr_assert(!strncmp(head, "HTTP/1.1 101", 12), "run %d: %s", run, head);
        got = drain(fd, &ok);
        cr_assert_eq(got, MIB, "run %d: the client got %zu of %d bytes before EOF", run, got, MIB);
        cr_assert(ok, "run %d: the client got the wrong bytes", run);
        /* the tunnel is half open: the client's side still reaches the origin */
        cr_assert_eq(h_sends(fd, "bye"), 0);
        cr_assert_eq(shutdown(fd, SHUT_WR), 0);
        pthread_join(th, NULL);
        cr_assert_str_eq(o.said, "bye", "run %d", run);
        h_close(fd);
    }
}
