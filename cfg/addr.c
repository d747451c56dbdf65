#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "cfg/cfg.h"

/* "1".."65535", decimal, no sign, no leading zero: one spelling per port. */
static int parse_port(const char *s, uint16_t *ret_port)
{
    unsigned long v = 0;
    size_t n = strlen(s);

    if (n == 0 || n > 5 || s[0] == '0')
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > 65535)
        return -EINVAL;
    *ret_port = (uint16_t)v;
    return 0;
}

int cfg_parse_hostport(const char *s, struct sockaddr_storage *ret_sa, unsigned *ret_len)
{
    /* The longest IPv6 text (INET6_ADDRSTRLEN) plus brackets. */
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon;
    uint16_t port;
    size_t hlen;

    if (!s)
        return -EINVAL;
    colon = strrchr(s, ':');
    if (!colon || parse_port(colon + 1, &port) < 0)
        return -EINVAL;
    hlen = (size_t)(colon - s);
    if (hlen == 0 || hlen >= sizeof(host))
        return -EINVAL;
    if (s[0] == '[') {
        struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};

        /* inet_pton rejects zone ids ("%eth0") and anything else but an address. */
        if (hlen < 3 || s[hlen - 1] != ']')
            return -EINVAL;
        memcpy(host, s + 1, hlen - 2);
        host[hlen - 2] = '\0';
        if (inet_pton(AF_INET6, host, &sin6.sin6_addr) != 1)
            return -EINVAL;
        memset(ret_sa, 0, sizeof(*ret_sa));
        memcpy(ret_sa, &sin6, sizeof(sin6));
        *ret_len = sizeof(sin6);
        return 0;
    }
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};

    memcpy(host, s, hlen);
    host[hlen] = '\0';
    /* glibc's inet_pton takes dotted quads only: no "127.1", no octal, no hex. */
    if (inet_pton(AF_INET, host, &sin.sin_addr) != 1)
        return -EINVAL;
    memset(ret_sa, 0, sizeof(*ret_sa));
    memcpy(ret_sa, &sin, sizeof(sin));
    *ret_len = sizeof(sin);
    return 0;
}

int cfg_addr_is_loopback(const struct sockaddr_storage *sa)
{
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;

        return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;

        return IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr);
    }
    return 0;
}
