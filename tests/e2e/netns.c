#include "tests/e2e/netns.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/logging.h>

#define EXIT_NS_REFUSED 77
/* No search line: "next-hop" is asked as is. One try, one second. */
#define RESOLV "nameserver 127.0.0.53\noptions ndots:1 attempts:1 timeout:1\n"

void netns_write_file(const char *path, const char *s)
{
    FILE *f = fopen(path, "w");

    cr_assert(f, "%s: %s", path, strerror(errno));
    fputs(s, f);
    cr_assert_eq(fclose(f), 0);
}

struct netns_env NS;

int netns_private_net(void)
{
    struct ifreq ifr = {0};
    int fd;

    if (unshare(CLONE_NEWNET) < 0)
        return 0;
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0);
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
    cr_assert_eq(ioctl(fd, SIOCGIFFLAGS, &ifr), 0, "SIOCGIFFLAGS lo: %s", strerror(errno));
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    cr_assert_eq(ioctl(fd, SIOCSIFFLAGS, &ifr), 0, "SIOCSIFFLAGS lo: %s", strerror(errno));
    close(fd);
    return 1;
}

/* Origins on 127.0.0.2:80 and .3:80, the nameserver when asked, the files. */
void netns_up(const char *hosts, int with_dns)
{
    memset(&NS, 0, sizeof(NS));
    NS.px.out_fd = -1;
    NS.private_net = netns_private_net();
    if (!NS.private_net)
        cr_log_info("no private network namespace (%s): sharing 127.0.0.2-3:80 with the host",
                    strerror(errno));
    NS.o2 = origin_start("127.0.0.2", 80);
    if (!NS.o2)
        cr_skip_test("cannot listen on 127.0.0.2:80: %s", strerror(errno));
    NS.o3 = origin_start("127.0.0.3", 80);
    if (!NS.o3)
        cr_skip_test("cannot listen on 127.0.0.3:80: %s", strerror(errno));
    if (with_dns) {
        const char *a2[] = {"127.0.0.2"};

        NS.dns = dns_start("127.0.0.53", 53, "next-hop");
        if (!NS.dns)
            cr_skip_test("cannot listen on udp 127.0.0.53:53: %s", strerror(errno));
        dns_set_answer(NS.dns, a2, 1, 1);
    }
    snprintf(NS.dir, sizeof(NS.dir), "/tmp/rp-resolve-XXXXXX");
    cr_assert(mkdtemp(NS.dir));
    snprintf(NS.hosts, sizeof(NS.hosts), "%s/hosts", NS.dir);
    snprintf(NS.resolv, sizeof(NS.resolv), "%s/resolv.conf", NS.dir);
    netns_write_file(NS.hosts, hosts);
    netns_write_file(NS.resolv, RESOLV);
}

void netns_proxy_start(const char *json)
{
    struct proxy *p = &NS.px;
    const char *bin = getenv("RINGPROXY");
    char listen[32], admin[32], path[128];
    int status;

    cr_assert(bin, "RINGPROXY is not set");
    snprintf(p->dir, sizeof(p->dir), "%s", NS.dir);
    snprintf(p->out_path, sizeof(p->out_path), "%s/stdout", NS.dir);
    snprintf(p->err_path, sizeof(p->err_path), "%s/stderr", NS.dir);
    snprintf(path, sizeof(path), "%s/proxy.json", NS.dir);
    netns_write_file(path, json);
    p->port = h_free_port();
    p->admin_port = h_free_port();
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", p->port);
    snprintf(admin, sizeof(admin), "127.0.0.1:%u", p->admin_port);

    p->pid = fork();
    cr_assert(p->pid >= 0);
    if (p->pid == 0) {
        const char *argv[16] = {bin,       "--config", NS.dir,      "--listen", listen,
                                "--admin", admin,      "--workers", "1"};

        argv[h_engine_args(argv, 9)] = NULL;
        int out = open(p->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int err = open(p->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

        dup2(out, 1);
        dup2(err, 2);
        /* Private first, or the bind mounts would propagate to the host. */
        if (unshare(CLONE_NEWNS) < 0) {
            dprintf(2, "test: unshare(CLONE_NEWNS): %s\n", strerror(errno));
            _exit(EXIT_NS_REFUSED);
        }
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
            dprintf(2, "test: making / private: %s\n", strerror(errno));
            _exit(EXIT_NS_REFUSED);
        }
        if (mount(NS.hosts, "/etc/hosts", NULL, MS_BIND, NULL) < 0 ||
            mount(NS.resolv, "/etc/resolv.conf", NULL, MS_BIND, NULL) < 0) {
            dprintf(2, "test: bind-mounting over /etc: %s\n", strerror(errno));
            _exit(EXIT_NS_REFUSED);
        }
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        int fd;

        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            char *err = h_slurp(p->err_path);

            p->pid = 0;
            if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_NS_REFUSED)
                cr_skip_test("no private mount namespace: %s", err);
            if (strstr(err, "io_uring is not available"))
                cr_skip_test("the kernel refuses io_uring here");
            cr_assert_fail("ringproxy exited at start-up: %s", err);
        }
        fd = h_connect(p->port);
        if (fd >= 0) {
            close(fd);
            return;
        }
        h_msleep(10);
    }
    cr_assert_fail("ringproxy did not start listening within 5 s");
}

void netns_down(void)
{
    const char *files[] = {"stdout", "stderr", "proxy.json", "hosts", "resolv.conf"};
    char path[128];

    if (NS.px.pid)
        cr_expect_eq(h_proxy_stop(&NS.px), 0, "ringproxy exits 0 on SIGTERM");
    origin_stop(NS.o2);
    origin_stop(NS.o3);
    dns_stop(NS.dns);
    if (!NS.dir[0])
        return;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", NS.dir, files[i]);
        (void)unlink(path);
    }
    (void)rmdir(NS.dir);
}
