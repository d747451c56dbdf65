/*
 * The engine (#25; docs/design.md, "Engines"): where io_uring is refused,
 * as Docker's and containerd's default seccomp profiles refuse it, `auto`
 * (the default) runs on epoll and says so in one warn line; `io_uring`
 * fails as before. The refusal is made here as those profiles make it: a
 * seccomp filter that answers io_uring_setup, io_uring_enter and
 * io_uring_register with EPERM, installed in the test's process (Criterion
 * runs each test in a process of its own) and inherited by the ringproxy it
 * starts.
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "tests/e2e/fixture.h"

#if defined(__x86_64__)
#define NATIVE_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NATIVE_ARCH AUDIT_ARCH_AARCH64
#endif

/* From now on this process and its children get EPERM from the io_uring calls. */
static void refuse_io_uring(void)
{
#ifdef NATIVE_ARCH
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 3, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_enter, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_register, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
    };
    struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};

    cr_assert_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0, "%s", strerror(errno));
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
        cr_skip_test("seccomp: %s", strerror(errno));
    /* the filter works: this process cannot set up a ring now */
    cr_assert_eq(syscall(__NR_io_uring_setup, 2, NULL), -1);
    cr_assert_eq(errno, EPERM);
#else
    cr_skip_test("no seccomp filter for this architecture here");
#endif
}

/* Requests of every kind the workers' operations carry, all answered. */
static void serves(void)
{
    struct h_resp r;
    int fd;

    for (int i = 0; i < 20; i++) {
        cr_assert_eq(h_roundtrip(px.port, "GET /size/100 HTTP/1.1\r\nHost: a\r\n\r\n", &r), 0);
        cr_assert_eq(r.status, 200);
        cr_assert_eq(r.body_len, 100);
        h_resp_free(&r);
    }
    /* a body of several receive buffers, relayed to a client */
    cr_assert_eq(h_roundtrip(px.port, "GET /size/3000000 HTTP/1.1\r\nHost: a\r\n\r\n", &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 3000000);
    cr_assert(origin_body_ok(r.body, r.body_len));
    h_resp_free(&r);
    /* keep-alive, and a request body */
    fd = h_connect(px.port);
    cr_assert(fd >= 0);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(h_status_on(fd, "GET /size/10 HTTP/1.1\r\nHost: a\r\n\r\n"), 200);
        cr_assert_eq(h_status_on(fd, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: "
                                     "5\r\n\r\nhello"),
                     200);
    }
    h_close(fd);
    /* the admin listener, on worker 0's loop */
    cr_assert_eq(h_roundtrip(px.admin_port, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", &r), 0);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    cr_assert_geq(h_metric(px.admin_port, "ringproxy_requests_total{class=\"2xx\"}"), 31);
}

Test(e2e_engine, auto_runs_on_epoll_where_io_uring_is_refused, .fini = fx_down)
{
    const char *args[] = {"--engine", "auto", NULL};

    refuse_io_uring();
    fx_origin_up();
    h_proxy_start(&px, origin_port(origin), "{\"workers\": 2}", args);
    cr_assert_eq(h_count_in(px.err_path, " warn "), 1, "%s", h_slurp(px.err_path));
    cr_assert_eq(h_count_in(px.err_path, "io_uring is not available (io_uring_setup: Operation not "
                                         "permitted): using epoll; allow io_uring"),
                 1, "%s", h_slurp(px.err_path));
    cr_assert(h_wait_in(px.err_path, ", engine epoll: ", 2000), "%s", h_slurp(px.err_path));
    serves();
    cr_assert_eq(h_proxy_stop(&px), 0);
    cr_assert_eq(h_count_in(px.err_path, " error "), 0, "%s", h_slurp(px.err_path));
}

Test(e2e_engine, the_default_is_auto, .fini = fx_down)
{
    refuse_io_uring();
    fx_origin_up();
    /* no --engine of the test's own: only the harness's, when RINGPROXY_ENGINE says one */
    h_proxy_start(&px, origin_port(origin), NULL, NULL);
    cr_assert(h_wait_in(px.err_path, ", engine epoll: ", 2000), "%s", h_slurp(px.err_path));
    serves();
    cr_assert_eq(h_proxy_stop(&px), 0);
}

Test(e2e_engine, io_uring_refused_fails_when_asked_for, .init = fx_origin_up, .fini = fx_down)
{
    char listen[32], admin[32], up[32], path[64];
    const char *args[] = {"--config", "/nonexistent", "--listen",   listen,
                          "--admin",  admin,          "--upstream", up,
                          "--engine", "io_uring",     NULL};
    int status;
    char *err;

    refuse_io_uring();
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", h_free_port());
    snprintf(admin, sizeof(admin), "127.0.0.1:%u", h_free_port());
    snprintf(up, sizeof(up), "127.0.0.1:%u", origin_port(origin));
    snprintf(path, sizeof(path), "/tmp/rp-e2e-engine.%d", (int)getpid());
    status = h_reap(h_spawn(args, path, path), 10000);
    err = h_slurp(path);
    unlink(path);
    cr_assert(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 1, "status %d: %s",
              status, err);
    cr_assert(strstr(err, "ringproxy: io_uring is not available (io_uring_queue_init: Operation "
                          "not permitted): the kernel or the container's seccomp profile blocks "
                          "io_uring_setup"),
              "%s", err);
    cr_assert(!strstr(err, "using epoll"), "%s", err);
    free(err);
}

Test(e2e_engine, the_config_key_and_the_flag, .fini = fx_down)
{
    const char *io[] = {"--engine", "io_uring", NULL};

    /* proxy.json says epoll; without a flag of the test's own the file decides */
    fx_origin_up();
    if (getenv("RINGPROXY_ENGINE") && *getenv("RINGPROXY_ENGINE"))
        cr_skip_test("RINGPROXY_ENGINE passes --engine, which wins over the file");
    h_proxy_start(&px, origin_port(origin), "{\"engine\": \"epoll\"}", NULL);
    cr_assert(h_wait_in(px.err_path, ", engine epoll: ", 2000), "%s", h_slurp(px.err_path));
    cr_assert_eq(h_count_in(px.err_path, " warn "), 0, "%s", h_slurp(px.err_path));
    serves();
    cr_assert_eq(h_proxy_stop(&px), 0);
    /* the command line wins */
    h_proxy_start(&px, origin_port(origin), "{\"engine\": \"epoll\"}", io);
    cr_assert(h_wait_in(px.err_path, ", engine io_uring: ", 2000), "%s", h_slurp(px.err_path));
    serves();
    cr_assert_eq(h_proxy_stop(&px), 0);
}

Test(e2e_engine, a_reload_keeps_the_engine, .fini = fx_down)
{
    const char *ep[] = {"--engine", "epoll", NULL};
    char path[128];
    FILE *f;

    fx_origin_up();
    h_proxy_start(&px, origin_port(origin), "{\"engine\": \"epoll\"}", ep);
    snprintf(path, sizeof(path), "%s/proxy.json", px.dir);
    f = fopen(path, "w");
    cr_assert(f);
    fputs("{\"engine\": \"io_uring\", \"shutdown_grace_ms\": 100}", f);
    fclose(f);
    kill(px.pid, SIGHUP);
    cr_assert(h_wait_in(px.err_path,
                        "reload: engine cannot change while ringproxy runs: keeping epoll "
                        "(restart to apply io_uring)",
                        3000),
              "%s", h_slurp(px.err_path));
    serves();
    cr_assert_eq(h_proxy_stop(&px), 0);
}

Test(e2e_engine, unknown_engines_are_refused, .init = fx_origin_up, .fini = fx_down)
{
    const char *args[] = {"--engine", "kqueue", "--config", "/nonexistent", NULL};
    char path[64];
    int status;
    char *err;

    snprintf(path, sizeof(path), "/tmp/rp-e2e-engine-bad.%d", (int)getpid());
    status = h_reap(h_spawn(args, path, path), 5000);
    err = h_slurp(path);
    unlink(path);
    cr_assert(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 2, "%s", err);
    cr_assert(strstr(err, "--engine: expected auto, io_uring or epoll, got 'kqueue'"), "%s", err);
    free(err);
}
