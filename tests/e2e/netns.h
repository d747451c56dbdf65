/*
 * The resolution environment (tests/e2e/test_resolve.c, tests/adv/abuse.c):
 * the real libc resolver, with no --upstream, so next-hop:80.
 *
 * netns_up() moves the calling test process into a private network
 * namespace when the kernel allows it (so port 80 and 53 on 127.0.0.x are
 * ours alone, even with tests running in parallel), starts origins on
 * 127.0.0.2:80 and 127.0.0.3:80 and optionally a test nameserver on
 * 127.0.0.53:53 (tests/support/dns.c), and writes a test hosts and
 * resolv.conf. netns_proxy_start() runs ringproxy in a private mount
 * namespace where those two files are bind-mounted over /etc/hosts and
 * /etc/resolv.conf. The real /etc files are never touched. Without root (or
 * CAP_SYS_ADMIN) the tests skip.
 */
#ifndef RINGPROXY_TESTS_NETNS_H
#define RINGPROXY_TESTS_NETNS_H

#include "tests/e2e/harness.h"
#include "tests/support/dns.h"

#define HOSTS_NONE "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"

struct netns_env {
    int private_net; /* 0: the kernel refused a namespace, the host's is shared */
    struct origin *o2, *o3;
    struct dns_server *dns; /* NULL unless asked for */
    char dir[64], hosts[96], resolv[96];
    struct proxy px;
};

/* One environment per test process (Criterion runs each test in its own). */
extern struct netns_env NS;

/*
 * Origins on 127.0.0.2:80 and .3:80; the nameserver when with_dns (serving
 * next-hop, answering 127.0.0.2 with TTL 1 until told otherwise); hosts as
 * /etc/hosts, and a resolv.conf naming that nameserver, one try of a second.
 */
void netns_up(const char *hosts, int with_dns);

/*
 * ringproxy without --upstream (so next-hop:80), one worker, proxy.json =
 * json, in a private mount namespace where NS.hosts and NS.resolv are
 * /etc/hosts and /etc/resolv.conf. Skips when the namespace cannot be made.
 */
void netns_proxy_start(const char *json);

/* Stop the proxy (it must exit 0), the origins and the nameserver; remove the files. */
void netns_down(void);

/* Move the calling process into a network namespace of its own, loopback up; 0 when the kernel
 * refuses. */
int netns_private_net(void);

/* Write s to path, failing the test when it cannot. */
void netns_write_file(const char *path, const char *s);

#endif
