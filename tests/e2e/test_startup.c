/*
 * Start-up (#27; docs/operations.md): a second ringproxy on the same public
 * or admin port fails with one clear line instead of joining the first one's
 * SO_REUSEPORT group and taking part of its traffic unseen.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "tests/e2e/fixture.h"

/* Run a second ringproxy (bounded: 5 s); its exit status, and stderr into err. */
static int second(const char *listen, const char *admin, char *err, size_t cap)
{
    char path[64], up[32];
    const char *args[] = {"--config", "/nonexistent", "--listen", listen,      "--admin",
                          admin,      "--upstream",   up,         "--workers", "1",
                          NULL};
    int status;
    char *s;

    snprintf(path, sizeof(path), "/tmp/rp-e2e-second.%d", (int)getpid());
    snprintf(up, sizeof(up), "127.0.0.1:%u", origin_port(origin));
    status = h_reap(h_spawn(args, path, path), 5000);
    s = h_slurp(path);
    snprintf(err, cap, "%s", s);
    free(s);
    unlink(path);
    return status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Test(e2e_startup, second_instance_on_the_public_port_fails, .init = fx_up_grace, .fini = fx_down)
{
    char listen[32], admin[32], err[4096], want[96];
    struct h_resp r;

    snprintf(listen, sizeof(listen), "127.0.0.1:%u", px.port);
    snprintf(admin, sizeof(admin), "127.0.0.1:%u", h_free_port());
    cr_assert_eq(second(listen, admin, err, sizeof(err)), 1, "a second instance started: %s", err);
    snprintf(want, sizeof(want), "ringproxy: cannot listen on %s: Address already in use\n",
             listen);
    cr_assert(strstr(err, want), "%s", err);
    /* and the first one still has all the traffic */
    for (int i = 0; i < 12; i++) {
        cr_assert_eq(h_roundtrip(px.port, "GET /size/3 HTTP/1.1\r\nHost: a\r\n\r\n", &r), 0);
        cr_assert_eq(r.status, 200);
        h_resp_free(&r);
    }
}

Test(e2e_startup, second_instance_on_the_admin_port_fails, .init = fx_up_grace, .fini = fx_down)
{
    char listen[32], admin[32], err[4096];

    snprintf(listen, sizeof(listen), "127.0.0.1:%u", h_free_port());
    snprintf(admin, sizeof(admin), "127.0.0.1:%u", px.admin_port);
    cr_assert_eq(second(listen, admin, err, sizeof(err)), 1, "a second instance started: %s", err);
    cr_assert(strstr(err, "cannot listen on admin address"), "%s", err);
    cr_assert(strstr(err, "Address already in use"), "%s", err);
}

/* The proxy's stderr once its start-up line is written (bounded: 5 s). */
static char *startup_err(void)
{
    char *err = NULL;

    for (int i = 0; i < 500; i++) {
        free(err);
        err = h_slurp(px.err_path);
        if (err && strstr(err, "] ringproxy ") && strchr(strstr(err, "] ringproxy "), '\n'))
            break;
        h_msleep(10);
    }
    return err;
}

/*
 * #27: the address is claimed among ringproxy processes before the check
 * (net_listen_lock(): an abstract unix socket named after it), so that two
 * started at one instant cannot both find it free and make one group. With
 * the claim held elsewhere, start-up fails as for a busy port.
 */
Test(e2e_startup, a_claimed_address_fails_start_up, .init = fx_origin_up, .fini = fx_down)
{
    struct sockaddr_un u = {.sun_family = AF_UNIX};
    char listen[32], admin[32], err[4096], want[96];
    unsigned port = h_free_port();
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), n;

    snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
    snprintf(admin, sizeof(admin), "127.0.0.1:%u", h_free_port());
    n = snprintf(u.sun_path + 1, sizeof(u.sun_path) - 1, "ringproxy-listen %s", listen);
    cr_assert_geq(fd, 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&u,
                      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n)),
                 0);
    cr_assert_eq(second(listen, admin, err, sizeof(err)), 1, "it started: %s", err);
    snprintf(want, sizeof(want), "ringproxy: cannot listen on %s: Address already in use\n",
             listen);
    cr_assert(strstr(err, want), "%s", err);
    close(fd);
}

/*
 * docs/operations.md, "Stopping": once the process is gone, nothing listens
 * on its port. The ring's accept held the listener, and the kernel tears a
 * ring down after the process has gone: for a moment after exit the port
 * took connections, then reset them (a proxy restarted on the same port had
 * its first clients reset; about one exit in six here before the fix).
 * Connecting right after the exit must be refused, every time.
 */
Test(e2e_startup, an_exited_proxy_no_longer_listens, .init = fx_origin_up, .fini = fx_down)
{
    int took = 0;

    for (int i = 0; i < 30; i++) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        char listen[32], admin[32], up[32];
        /* built-in defaults: a config folder to watch makes the exit slower, hiding it */
        const char *args[] = {"--config", "/nonexistent", "--listen", listen,      "--admin",
                              admin,      "--upstream",   up,         "--workers", "1",
                              NULL};
        unsigned port = h_free_port();
        long end;
        int status, fd = -1;
        pid_t pid;

        snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
        snprintf(admin, sizeof(admin), "127.0.0.1:%u", h_free_port());
        snprintf(up, sizeof(up), "127.0.0.1:%u", origin_port(origin));
        a.sin_port = htons((uint16_t)port);
        pid = h_spawn(args, NULL, NULL);
        /* ready when it accepts (a client that comes and goes) */
        for (end = h_now_ms() + 5000; h_now_ms() < end; h_msleep(5)) {
            fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            cr_assert_geq(fd, 0);
            if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
                break;
            close(fd);
            fd = -1;
        }
        if (fd < 0) {
            h_reap(pid, 0);
            cr_skip_test("ringproxy did not start (no io_uring here?)");
        }
        close(fd);
        kill(pid, SIGTERM);
        /* reaped at once, not within h_reap()'s 10 ms: the window is that short */
        for (end = h_now_ms() + 15000; waitpid(pid, &status, WNOHANG) != pid;) {
            if (h_now_ms() > end) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                cr_assert_fail("the proxy did not stop");
            }
            usleep(100);
        }
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert_geq(fd, 0);
        if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
            took++;
        close(fd);
    }
    cr_assert_eq(took, 0, "%d of 30 exits left a listener that took a connection", took);
}

/* #27.3: the start-up line says which config file was loaded, or that none was. */
Test(e2e_startup, startup_line_names_the_config, .fini = fx_down)
{
    char *err, want[160];

    fx_up_grace();
    err = startup_err();
    snprintf(want, sizeof(want), ", config %s/proxy.json\n", px.dir);
    cr_assert(strstr(err, want), "%s", err);
    free(err);
    cr_assert_eq(h_proxy_stop(&px), 0);
    h_proxy_start(&px, origin_port(origin), NULL, NULL);
    err = startup_err();
    cr_assert(strstr(err, ", config none (no "), "%s", err);
    cr_assert(strstr(err, "/proxy.json: built-in defaults)\n"), "%s", err);
    free(err);
}
