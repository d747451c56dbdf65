/*
 * Tests for net/sock.c: listeners (SO_REUSEPORT), upstream sockets, and
 * printable addresses.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "net/sock.h"

static struct sockaddr_storage v4(const char *ip, unsigned port)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    cr_assert_eq(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
    return ss;
}

/*
 * listen(2) as net/sock.c calls it: the C library's, after counting the
 * calls on port watched (the test's own definition is the one the static
 * library links to).
 */
static unsigned watched;
static int watched_listens;

int listen(int fd, int backlog)
{
    static int (*real)(int, int);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "listen");
    if (watched && getsockname(fd, (struct sockaddr *)&ss, &len) == 0 && ss.ss_family == AF_INET &&
        ntohs(((struct sockaddr_in *)&ss)->sin_port) == watched)
        watched_listens++;
    return real(fd, backlog);
}

static struct sockaddr_storage v6(const char *ip, unsigned port)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)port);
    cr_assert_eq(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
    return ss;
}

static unsigned bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    cr_assert_eq(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    return ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                    : ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static int sockopt(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof(v);

    cr_assert_eq(getsockopt(fd, level, name, &v, &len), 0);
    return v;
}

static int is_listening(int fd)
{
    return sockopt(fd, SOL_SOCKET, SO_ACCEPTCONN);
}

Test(net_sock, listen_v4_ephemeral)
{
    struct sockaddr_storage sa = v4("127.0.0.1", 0);
    int fd = net_listen(&sa, sizeof(struct sockaddr_in), 16, 1);

    cr_assert_geq(fd, 0, "net_listen: %s", strerror(-fd));
    cr_assert_neq(bound_port(fd), 0);
    cr_assert(is_listening(fd));
    cr_assert(sockopt(fd, SOL_SOCKET, SO_REUSEPORT));
    cr_assert(sockopt(fd, SOL_SOCKET, SO_REUSEADDR));
    cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    /* Blocking: workers accept through io_uring. */
    cr_assert_not(fcntl(fd, F_GETFL) & O_NONBLOCK);
    (void)close(fd);
}

Test(net_sock, listen_reuseport_twice)
{
    struct sockaddr_storage sa = v4("127.0.0.1", 0);
    int a, b;
    unsigned port;

    a = net_listen(&sa, sizeof(struct sockaddr_in), 16, 1);
    cr_assert_geq(a, 0);
    port = bound_port(a);
    sa = v4("127.0.0.1", port);
    /* One listener per worker on the same port. */
    b = net_listen(&sa, sizeof(struct sockaddr_in), 16, 1);
    cr_assert_geq(b, 0, "second SO_REUSEPORT listener: %s", strerror(-b));
    cr_assert_eq(bound_port(b), port);
    cr_assert(is_listening(b));
    (void)close(a);
    (void)close(b);
}

/*
 * #27.1: a group listener of another process would join the group; the
 * check before it sees the port as taken, and a lone listener is no group.
 */
Test(net_sock, listen_free_sees_a_reuseport_group)
{
    struct sockaddr_storage sa = v4("127.0.0.1", 0);
    int a = net_listen(&sa, sizeof(struct sockaddr_in), 16, 1), b;

    cr_assert_geq(a, 0);
    sa = v4("127.0.0.1", bound_port(a));
    cr_assert_eq(net_listen_free(&sa, sizeof(struct sockaddr_in)), -EADDRINUSE);
    (void)close(a);
    cr_assert_eq(net_listen_free(&sa, sizeof(struct sockaddr_in)), 0, "free once closed");
    b = net_listen(&sa, sizeof(struct sockaddr_in), 16, 0);
    cr_assert_geq(b, 0);
    cr_assert_not(sockopt(b, SOL_SOCKET, SO_REUSEPORT));
    cr_assert_lt(net_listen(&sa, sizeof(struct sockaddr_in), 16, 1), 0,
                 "nothing joins a lone listener");
    (void)close(b);
}

/*
 * C1: the check before start-up binds and never listens. A socket that
 * listened for a moment took the connections of clients that came early
 * (a readiness probe, a load balancer's first request) and reset them
 * when it closed; the release build's training load was one such client.
 */
Test(net_sock, listen_free_never_listens)
{
    struct sockaddr_storage sa = v4("127.0.0.1", 0);
    int a = net_listen(&sa, sizeof(struct sockaddr_in), 16, 0);

    cr_assert_geq(a, 0);
    watched = bound_port(a);
    (void)close(a);
    sa = v4("127.0.0.1", watched);
    cr_assert_eq(net_listen_free(&sa, sizeof(struct sockaddr_in)), 0);
    cr_assert_eq(watched_listens, 0, "net_listen_free called listen()");
    a = net_listen(&sa, sizeof(struct sockaddr_in), 16, 1);
    cr_assert_geq(a, 0);
    cr_assert_eq(watched_listens, 1, "the counting sees net_listen's listen()");
    cr_assert_eq(net_listen_free(&sa, sizeof(struct sockaddr_in)), -EADDRINUSE);
    (void)close(a);
    watched = 0;
}

/*
 * Two ringproxy started at one instant on one address: the first claim
 * holds, the second is refused until the first is given up; other
 * addresses are other claims.
 */
Test(net_sock, listen_lock_is_one_process_per_address)
{
    /* claims are names, not ports: this process's own, apart from a parallel run's */
    unsigned port = 1024 + (unsigned)getpid() % 60000;
    struct sockaddr_storage a = v4("127.0.0.1", port), b = v4("127.0.0.1", port + 1);
    struct sockaddr_storage c = v6("::1", port);
    int fa = net_listen_lock(&a), fb, fc;

    cr_assert_geq(fa, 0, "%s", strerror(-fa));
    cr_assert_eq(net_listen_lock(&a), -EADDRINUSE);
    fb = net_listen_lock(&b);
    cr_assert_geq(fb, 0);
    fc = net_listen_lock(&c);
    cr_assert_geq(fc, 0);
    cr_assert(fcntl(fa, F_GETFD) & FD_CLOEXEC, "not inherited by a child");
    (void)close(fa);
    fa = net_listen_lock(&a);
    cr_assert_geq(fa, 0, "free once closed");
    (void)close(fa);
    (void)close(fb);
    (void)close(fc);
}

Test(net_sock, listen_busy_port_eaddrinuse)
{
    struct sockaddr_storage sa = v4("127.0.0.1", 0);
    socklen_t len = sizeof(struct sockaddr_in);
    int other, fd;

    /* A plain listener that did not opt into SO_REUSEPORT owns the port. */
    other = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(other, 0);
    cr_assert_eq(bind(other, (struct sockaddr *)&sa, len), 0);
    cr_assert_eq(listen(other, 4), 0);
    sa = v4("127.0.0.1", bound_port(other));
    fd = net_listen(&sa, len, 16, 1);
    cr_assert_eq(fd, -EADDRINUSE, "got %d (%s)", fd, fd < 0 ? strerror(-fd) : "an fd");
    (void)close(other);
}

Test(net_sock, listen_bad_family_is_error)
{
    struct sockaddr_storage sa = {0};
    int fd;

    sa.ss_family = AF_UNSPEC;
    fd = net_listen(&sa, sizeof(sa), 16, 1);
    cr_assert_lt(fd, 0);
}

Test(net_sock, listen_v6_only)
{
    struct sockaddr_storage sa = v6("::1", 0);
    int fd = net_listen(&sa, sizeof(struct sockaddr_in6), 16, 1);

    if (fd == -EAFNOSUPPORT || fd == -EADDRNOTAVAIL)
        cr_skip_test("no IPv6 loopback here");
    cr_assert_geq(fd, 0, "net_listen [::1]: %s", strerror(-fd));
    cr_assert(sockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY));
    cr_assert_neq(bound_port(fd), 0);
    (void)close(fd);
}

Test(net_sock, listen_accepts_connections)
{
    struct sockaddr_storage sa = v4("127.0.0.1", 0);
    int fd = net_listen(&sa, sizeof(struct sockaddr_in), 16, 1), c, s;

    cr_assert_geq(fd, 0);
    sa = v4("127.0.0.1", bound_port(fd));
    c = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_eq(connect(c, (struct sockaddr *)&sa, sizeof(struct sockaddr_in)), 0);
    s = accept(fd, NULL, NULL);
    cr_assert_geq(s, 0);
    /* TCP_NODELAY set on the listener is inherited. */
    cr_assert(sockopt(s, IPPROTO_TCP, TCP_NODELAY));
    (void)close(s);
    (void)close(c);
    (void)close(fd);
}

Test(net_sock, socket_for_is_nonblocking_nodelay)
{
    struct sockaddr_storage sa4 = v4("10.0.0.1", 80), sa6 = v6("::1", 80);
    int cut, fd = net_socket_for(&sa4, 0, &cut);

    cr_assert_geq(fd, 0);
    cr_assert(fcntl(fd, F_GETFL) & O_NONBLOCK);
    cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    cr_assert(sockopt(fd, IPPROTO_TCP, TCP_NODELAY));
    cr_assert_eq(sockopt(fd, SOL_SOCKET, SO_DOMAIN), AF_INET);
    cr_assert_eq(sockopt(fd, SOL_SOCKET, SO_TYPE), SOCK_STREAM);
    (void)close(fd);
    fd = net_socket_for(&sa6, 0, &cut);
    if (fd == -EAFNOSUPPORT)
        return;
    cr_assert_geq(fd, 0);
    cr_assert_eq(sockopt(fd, SOL_SOCKET, SO_DOMAIN), AF_INET6);
    (void)close(fd);
}

static unsigned long rmem_max(void)
{
    unsigned long max = 0;
    FILE *f = fopen("/proc/sys/net/core/rmem_max", "re");

    if (!f)
        return 0;
    if (fscanf(f, "%lu", &max) != 1)
        max = 0;
    fclose(f);
    return max;
}

/* Within rmem_max (100000 is below Linux's default, 212992): set, and doubled by the kernel. */
Test(net_sock, socket_for_sets_rcvbuf)
{
    struct sockaddr_storage sa4 = v4("10.0.0.1", 80);
    int cut = -1, fd;

    if (rmem_max() && rmem_max() < 100000)
        cr_skip_test("net.core.rmem_max is below 100000 here");
    fd = net_socket_for(&sa4, 100000, &cut);
    cr_assert_geq(fd, 0);
    cr_assert_eq(cut, 0);
    cr_assert_eq(sockopt(fd, SOL_SOCKET, SO_RCVBUF), 2 * 100000, "the kernel doubles it");
    (void)close(fd);
    fd = net_socket_for(&sa4, 0, &cut);
    cr_assert_geq(fd, 0);
    cr_assert_eq(cut, 0);
    cr_assert_neq(sockopt(fd, SOL_SOCKET, SO_RCVBUF), 2 * 100000);
    (void)close(fd);
}

/* Above rmem_max: not a buffer cut down to it, but a fresh socket the kernel autotunes. */
Test(net_sock, socket_for_above_rmem_max_keeps_autotuning)
{
    struct sockaddr_storage sa4 = v4("10.0.0.1", 80);
    unsigned long max = rmem_max();
    int cut = -1, fd, plain, dflt;

    if (!max || max >= (1u << 30))
        cr_skip_test("net.core.rmem_max is not readable here, or too large to exceed");
    plain = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(plain, 0);
    dflt = sockopt(plain, SOL_SOCKET, SO_RCVBUF);
    (void)close(plain);
    fd = net_socket_for(&sa4, (unsigned)max + 1, &cut);
    cr_assert_geq(fd, 0);
    cr_assert_eq(cut, 1);
    cr_assert_eq(sockopt(fd, SOL_SOCKET, SO_RCVBUF), dflt, "an untouched socket");
    cr_assert(fcntl(fd, F_GETFL) & O_NONBLOCK);
    cr_assert(sockopt(fd, IPPROTO_TCP, TCP_NODELAY));
    (void)close(fd);
}

Test(net_sock, rcvbuf_cap_is_rmem_max)
{
    unsigned long max = rmem_max();

    if (!max || max < 100000)
        cr_skip_test("net.core.rmem_max is not readable here, or below 100000");
    cr_assert_eq(net_rcvbuf_cap(100000), 100000);
    if (max < (1u << 30))
        cr_assert_eq(net_rcvbuf_cap((unsigned)max + 1), (int)max);
    cr_assert_geq(net_rcvbuf_cap(1), 1, "the kernel's minimum is more than asked");
}

Test(net_sock, addr_str_v4)
{
    struct sockaddr_storage sa = v4("127.0.0.1", 8080);
    char out[NET_ADDRSTRLEN];

    cr_assert_eq(net_addr_str(&sa, out, sizeof(out)), strlen("127.0.0.1:8080"));
    cr_assert_str_eq(out, "127.0.0.1:8080");
    sa = v4("255.255.255.255", 65535);
    cr_assert_eq(net_addr_str(&sa, out, sizeof(out)), 21);
    cr_assert_str_eq(out, "255.255.255.255:65535");
    sa = v4("0.0.0.0", 0);
    net_addr_str(&sa, out, sizeof(out));
    cr_assert_str_eq(out, "0.0.0.0:0");
}

Test(net_sock, addr_str_v6_bracketed)
{
    struct sockaddr_storage sa = v6("::1", 80);
    char out[NET_ADDRSTRLEN];

    cr_assert_eq(net_addr_str(&sa, out, sizeof(out)), 8);
    cr_assert_str_eq(out, "[::1]:80");
    sa = v6("2001:db8::a:b", 443);
    net_addr_str(&sa, out, sizeof(out));
    cr_assert_str_eq(out, "[2001:db8::a:b]:443");
    sa = v6("::ffff:192.0.2.1", 80);
    net_addr_str(&sa, out, sizeof(out));
    cr_assert_str_eq(out, "[::ffff:192.0.2.1]:80");
}

Test(net_sock, addr_str_longest_fits)
{
    struct sockaddr_storage sa = v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    char out[NET_ADDRSTRLEN];
    const char *want = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535";

    cr_assert_eq(net_addr_str(&sa, out, sizeof(out)), strlen(want));
    cr_assert_str_eq(out, want);
}

Test(net_sock, addr_str_truncates)
{
    struct sockaddr_storage sa = v4("127.0.0.1", 8080);
    char out[8];

    memset(out, 'x', sizeof(out));
    /* Returns what is in out, NUL-terminated, never more than cap - 1. */
    cr_assert_eq(net_addr_str(&sa, out, sizeof(out)), 7);
    cr_assert_str_eq(out, "127.0.0");
}

Test(net_sock, ip_str)
{
    struct sockaddr_storage sa = v4("192.0.2.33", 80);
    char out[NET_ADDRSTRLEN];

    cr_assert_eq(net_ip_str(&sa, out, sizeof(out)), 10);
    cr_assert_str_eq(out, "192.0.2.33");
    sa = v6("::1", 80);
    cr_assert_eq(net_ip_str(&sa, out, sizeof(out)), 3);
    cr_assert_str_eq(out, "::1");
    sa = v6("fe80::1", 1);
    net_ip_str(&sa, out, sizeof(out));
    cr_assert_str_eq(out, "fe80::1");
}

Test(net_sock, ip_str_too_small_is_empty)
{
    struct sockaddr_storage sa = v4("192.0.2.33", 80);
    char out[6];

    cr_assert_eq(net_ip_str(&sa, out, sizeof(out)), 0);
    cr_assert_str_eq(out, "");
}
