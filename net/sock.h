/*
 * Sockets: listeners (SO_REUSEPORT, one per worker), upstream sockets, and
 * printable addresses.
 */
#ifndef RINGPROXY_NET_SOCK_H
#define RINGPROXY_NET_SOCK_H

#include <stddef.h>
#include <sys/socket.h>

/*
 * A bound, listening TCP socket; returns the fd or -errno. group: with
 * SO_REUSEPORT, one of a group of listeners (one per worker) on the address.
 */
int net_listen(const struct sockaddr_storage *sa, socklen_t len, int backlog, int group);

/*
 * Is the address free? A socket without SO_REUSEPORT is bound (never
 * listening, so no client can connect to it) and closed again: -EADDRINUSE
 * when anything listens there, a SO_REUSEPORT group of another process
 * included (which a group listener would silently join).
 */
int net_listen_free(const struct sockaddr_storage *sa, socklen_t len);

/*
 * A claim on sa among ringproxy processes of this network namespace: an
 * abstract unix socket named after the address, to keep open while the
 * process lives. net_listen_free() then the group's listeners leave a
 * moment in which a second ringproxy started at the same instant would
 * also find the address free and join the group; the claim closes it.
 * Returns the descriptor, -EADDRINUSE when another process holds the
 * claim, or another -errno.
 */
int net_listen_lock(const struct sockaddr_storage *sa);

/*
 * A non-blocking TCP socket of sa's family with TCP_NODELAY; fd or -errno.
 * rcvbuf: SO_RCVBUF before the connect (the kernel doubles it for its
 * bookkeeping, and no longer autotunes the socket); 0 leaves it to the
 * kernel. When net.core.rmem_max would cut rcvbuf down (a small fixed
 * buffer is worse than autotuning), the socket returned has none and
 * *ret_cut is 1.
 */
int net_socket_for(const struct sockaddr_storage *sa, unsigned rcvbuf, int *ret_cut);

/*
 * What SO_RCVBUF = want takes on a fresh socket (halved back): want, or
 * net.core.rmem_max when that is less, or the kernel's minimum when that is
 * more; -errno on failure. A probe, as the sysctl may not be readable
 * (older kernels show it in the initial network namespace only).
 */
int net_rcvbuf_cap(unsigned want);

/* "1.2.3.4:80" or "[::1]:80" into out (NUL-terminated); returns its length. */
size_t net_addr_str(const struct sockaddr_storage *sa, char *out, size_t cap);

/* The address alone ("1.2.3.4", "::1"); returns its length. */
size_t net_ip_str(const struct sockaddr_storage *sa, char *out, size_t cap);

#define NET_ADDRSTRLEN 56

#endif
