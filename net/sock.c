#include "net/sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/un.h>
#include <unistd.h>

/* A TCP socket bound to sa, not listening; the fd or -errno. */
static int bound(const struct sockaddr_storage *sa, socklen_t len, int group)
{
    int one = 1, fd, r;

    fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        (group && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
        goto fail;
    /* [::]:80 and 0.0.0.0:80 are separate listeners: keep the v6 one v6-only. */
    if (sa->ss_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
        goto fail;
    if (bind(fd, (const struct sockaddr *)sa, len) < 0)
        goto fail;
    return fd;
fail:
    r = -errno;
    (void)close(fd);
    return r;
}

int net_listen(const struct sockaddr_storage *sa, socklen_t len, int backlog, int group)
{
    int fd = bound(sa, len, group), r;

    if (fd < 0 || listen(fd, backlog) == 0)
        return fd;
    r = -errno;
    (void)close(fd);
    return r;
}

/*
 * bind() alone: with SO_REUSEADDR it fails where a socket listens (a
 * SO_REUSEPORT group included, this socket not being of it) or is bound
 * without SO_REUSEADDR, as listen() would. A listen() here would accept,
 * for a moment, connections that close() then resets.
 */
int net_listen_free(const struct sockaddr_storage *sa, socklen_t len)
{
    int fd = bound(sa, len, 0);

    if (fd < 0)
        return fd;
    (void)close(fd);
    return 0;
}

int net_listen_lock(const struct sockaddr_storage *sa)
{
    struct sockaddr_un u = {.sun_family = AF_UNIX};
    char as[NET_ADDRSTRLEN];
    int n, fd, r;

    net_addr_str(sa, as, sizeof(as));
    /* sun_path[0] stays 0: an abstract name, gone with the last descriptor */
    n = snprintf(u.sun_path + 1, sizeof(u.sun_path) - 1, "ringproxy-listen %s", as);
    if (n < 0 || (size_t)n >= sizeof(u.sun_path) - 1)
        return -ENAMETOOLONG;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, (struct sockaddr *)&u,
             (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n)) == 0)
        return fd;
    r = -errno;
    (void)close(fd);
    return r;
}

/* SO_RCVBUF = want; what the kernel took, halved back (it doubles it), or -errno. */
static int rcvbuf_set(int fd, unsigned want)
{
    int v = (int)want, got = 0;
    socklen_t len = sizeof(got);

    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v)) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &len) < 0)
        return -errno;
    return got / 2;
}

static int tcp_socket(int family)
{
    int one = 1, fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -errno;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

int net_socket_for(const struct sockaddr_storage *sa, unsigned rcvbuf, int *ret_cut)
{
    int fd = tcp_socket(sa->ss_family), got;

    *ret_cut = 0;
    if (fd < 0 || !rcvbuf)
        return fd;
    got = rcvbuf_set(fd, rcvbuf);
    if (got >= 0 && (unsigned)got >= rcvbuf)
        return fd;
    /* cut down by net.core.rmem_max, yet no longer autotuned: a fresh socket instead */
    (void)close(fd);
    *ret_cut = 1;
    return tcp_socket(sa->ss_family);
}

int net_rcvbuf_cap(unsigned want)
{
    int fd = tcp_socket(AF_INET), got;

    if (fd < 0)
        fd = tcp_socket(AF_INET6);
    if (fd < 0)
        return fd;
    got = rcvbuf_set(fd, want);
    (void)close(fd);
    return got;
}

size_t net_ip_str(const struct sockaddr_storage *sa, char *out, size_t cap)
{
    const void *a = sa->ss_family == AF_INET6
                        ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                        : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;

    if (!inet_ntop(sa->ss_family, a, out, (socklen_t)cap)) {
        out[0] = '\0';
        return 0;
    }
    for (size_t n = 0;; n++)
        if (!out[n])
            return n;
}

size_t net_addr_str(const struct sockaddr_storage *sa, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    unsigned port;
    int n;

    net_ip_str(sa, ip, sizeof(ip));
    if (sa->ss_family == AF_INET6) {
        port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
        n = snprintf(out, cap, "[%s]:%u", ip, port);
    } else {
        port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
        n = snprintf(out, cap, "%s:%u", ip, port);
    }
    return n < 0 ? 0 : (size_t)n >= cap ? cap - 1 : (size_t)n;
}
