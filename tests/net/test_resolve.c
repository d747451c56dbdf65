/*
 * Tests for net/resolve.c. Names that must change under the resolver come
 * from a private /etc/hosts: the test process (Criterion forks one per test)
 * enters its own mount namespace, makes every mount private so nothing
 * propagates back, and bind-mounts a temporary file over /etc/hosts. The real
 * file is never written. Where that is not allowed, those tests skip.
 */
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "net/resolve.h"
#include "tests/support/lsan.h"

#define NAME "ringproxy-test.example"

static struct net_resolver *res;

static void res_down(void)
{
    net_resolver_free(res);
    res = NULL;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    (void)nanosleep(&ts, NULL);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;

    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int set_has(const struct net_addrset *s, const char *str)
{
    for (unsigned i = 0; i < s->n; i++)
        if (!strcmp(s->a[i].str, str))
            return 1;
    return 0;
}

static uint64_t changes_of(struct net_resolver *r)
{
    uint64_t c;
    int f;

    net_resolver_state(r, &c, &f);
    return c;
}

static int failing_of(struct net_resolver *r)
{
    uint64_t c;
    int f;

    net_resolver_state(r, &c, &f);
    return f;
}

/* A mount namespace of our own where /etc/hosts can be replaced, or skip. */
static void private_mounts(void)
{
    if (getuid() != 0)
        cr_skip_test("needs root for a private mount namespace");
    if (unshare(CLONE_NEWNS) < 0)
        cr_skip_test("unshare(CLONE_NEWNS): %s", strerror(errno));
    /* Without this a bind mount could propagate to the host's namespace: never go on. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        cr_skip_test("making / private: %s", strerror(errno));
    /*
     * Our hosts files live on a tmpfs only this namespace sees: gone with
     * the process. (They must outlive their mounts: Linux refuses to mount
     * over an unlinked file.)
     */
    if (mount("ringproxy-test", "/tmp", "tmpfs", 0, "size=1m") < 0)
        cr_skip_test("tmpfs on /tmp: %s", strerror(errno));
}

/* Put a file holding content over /etc/hosts (on top of any earlier one). */
static void hosts_push(const char *content)
{
    char path[] = "/tmp/ringproxy-hosts-XXXXXX";
    int fd = mkstemp(path);
    size_t n = strlen(content);

    cr_assert_geq(fd, 0, "mkstemp: %s", strerror(errno));
    cr_assert_eq(write(fd, content, n), (ssize_t)n);
    (void)close(fd);
    cr_assert_eq(mount(path, "/etc/hosts", NULL, MS_BIND, NULL), 0, "bind mount: %s",
                 strerror(errno));
}

/* Uncover the /etc/hosts below the top one. */
static void hosts_pop(void)
{
    cr_assert_eq(umount2("/etc/hosts", MNT_DETACH), 0, "umount: %s", strerror(errno));
}

/* Poll worker's set for up to 2 s until it holds want; returns the set. */
static const struct net_addrset *wait_for(struct net_resolver *r, unsigned worker, const char *want)
{
    uint64_t end = mono_ms() + 2000;
    const struct net_addrset *s;

    for (;;) {
        s = net_resolver_get(r, worker);
        if (set_has(s, want) || mono_ms() > end)
            return s;
        sleep_ms(2);
    }
}

Test(net_resolve, new_and_free_unstarted)
{
    struct net_resolver *r = net_resolver_new("127.0.0.1", "80", 1000, 4);
    const struct net_addrset *s;
    uint64_t changes = 99;
    int failing = 99;

    cr_assert_not_null(r);
    net_resolver_state(r, &changes, &failing);
    cr_assert_eq(changes, 0);
    cr_assert_eq(failing, 0);
    /* Before the first resolution: an empty set, not NULL. */
    s = net_resolver_get(r, 3);
    cr_assert_not_null(s);
    cr_assert_eq(s->n, 0);
    net_resolver_free(r);
    net_resolver_free(NULL);
    assert_no_leaks();
}

Test(net_resolve, numeric_resolves_in_start, .fini = res_down)
{
    const struct net_addrset *s;

    res = net_resolver_new("127.0.0.1", "8080", 60000, 1);
    cr_assert_not_null(res);
    cr_assert_eq(net_resolver_start(res), 0);
    /* No waiting: start resolved on this thread. */
    s = net_resolver_get(res, 0);
    cr_assert_eq(s->n, 1);
    cr_assert_str_eq(s->a[0].str, "127.0.0.1:8080");
    cr_assert_eq(s->a[0].sa.ss_family, AF_INET);
    cr_assert_eq(s->a[0].len, sizeof(struct sockaddr_in));
    cr_assert_geq(s->gen, 1);
    cr_assert_eq(changes_of(res), 1);
    cr_assert_eq(failing_of(res), 0);
    res_down();
    assert_no_leaks();
}

Test(net_resolve, localhost_resolves, .fini = res_down)
{
    const struct net_addrset *s;

    res = net_resolver_new("localhost", "8080", 60000, 2);
    cr_assert_not_null(res);
    cr_assert_eq(net_resolver_start(res), 0);
    s = net_resolver_get(res, 1);
    cr_assert_gt(s->n, 0);
    cr_assert(set_has(s, "127.0.0.1:8080") || set_has(s, "[::1]:8080"));
    for (unsigned i = 0; i < s->n; i++) {
        size_t n = strlen(s->a[i].str);

        cr_assert(n > 5 && !strcmp(s->a[i].str + n - 5, ":8080"), "%s", s->a[i].str);
        /* Sorted and without duplicates. */
        if (i)
            cr_assert_lt(strcmp(s->a[i - 1].str, s->a[i].str), 0);
    }
    /* Both workers see the same set. */
    cr_assert_eq(net_resolver_get(res, 0), s);
}

Test(net_resolve, unresolvable_is_not_an_error, .fini = res_down)
{
    const struct net_addrset *s;

    res = net_resolver_new("nonexistent.invalid", "80", 60000, 1);
    cr_assert_not_null(res);
    cr_assert_eq(net_resolver_start(res), 0);
    s = net_resolver_get(res, 0);
    cr_assert_eq(s->n, 0);
    cr_assert_eq(changes_of(res), 0);
    cr_assert_eq(failing_of(res), 1);
}

Test(net_resolve, hosts_dedup_and_sort, .fini = res_down)
{
    const struct net_addrset *s;

    private_mounts();
    hosts_push("127.0.0.3 " NAME "\n127.0.0.2 " NAME "\n127.0.0.3 " NAME "\n");
    res = net_resolver_new(NAME, "81", 60000, 1);
    cr_assert_eq(net_resolver_start(res), 0);
    s = net_resolver_get(res, 0);
    cr_assert_eq(s->n, 2, "got %u addresses", s->n);
    cr_assert_str_eq(s->a[0].str, "127.0.0.2:81");
    cr_assert_str_eq(s->a[1].str, "127.0.0.3:81");
}

Test(net_resolve, kick_picks_up_change, .fini = res_down)
{
    const struct net_addrset *s;
    uint64_t gen;

    private_mounts();
    hosts_push("127.0.0.11 " NAME "\n");
    /* A long interval: only the kick can explain a change. */
    res = net_resolver_new(NAME, "80", 60000, 1);
    cr_assert_eq(net_resolver_start(res), 0);
    s = net_resolver_get(res, 0);
    cr_assert_eq(s->n, 1);
    cr_assert_str_eq(s->a[0].str, "127.0.0.11:80");
    gen = s->gen;

    hosts_push("127.0.0.12 " NAME "\n");
    sleep_ms(50);
    s = net_resolver_get(res, 0);
    cr_assert_str_eq(s->a[0].str, "127.0.0.11:80", "changed without a kick");
    net_resolver_kick(res);
    s = wait_for(res, 0, "127.0.0.12:80");
    cr_assert_eq(s->n, 1);
    cr_assert_str_eq(s->a[0].str, "127.0.0.12:80", "kick not picked up within 2 s");
    cr_assert_gt(s->gen, gen);
    cr_assert_eq(changes_of(res), 2);
    cr_assert_eq(failing_of(res), 0);
    res_down();
    assert_no_leaks();
}

Test(net_resolve, interval_picks_up_change, .fini = res_down)
{
    const struct net_addrset *s;

    private_mounts();
    hosts_push("127.0.0.21 " NAME "\n");
    res = net_resolver_new(NAME, "80", 20, 1);
    cr_assert_eq(net_resolver_start(res), 0);
    hosts_push("127.0.0.22 " NAME "\n");
    s = wait_for(res, 0, "127.0.0.22:80");
    cr_assert_str_eq(s->a[0].str, "127.0.0.22:80", "periodic resolution missed the change");
}

Test(net_resolve, failure_keeps_last_good, .fini = res_down)
{
    const struct net_addrset *s;
    uint64_t end;

    private_mounts();
    hosts_push("127.0.0.31 " NAME "\n");
    res = net_resolver_new(NAME, "80", 60000, 1);
    cr_assert_eq(net_resolver_start(res), 0);
    cr_assert_eq(net_resolver_get(res, 0)->n, 1);

    /* The name disappears: failing, but workers keep the last answer. */
    hosts_push("127.0.0.1 localhost\n");
    net_resolver_kick(res);
    end = mono_ms() + 2000;
    while (!failing_of(res) && mono_ms() < end)
        sleep_ms(2);
    cr_assert_eq(failing_of(res), 1, "failure not noticed within 2 s");
    s = net_resolver_get(res, 0);
    cr_assert_eq(s->n, 1);
    cr_assert_str_eq(s->a[0].str, "127.0.0.31:80");
    cr_assert_eq(changes_of(res), 1);

    /* Back again, same answer: no longer failing, and not a change. */
    hosts_pop();
    net_resolver_kick(res);
    end = mono_ms() + 2000;
    while (failing_of(res) && mono_ms() < end)
        sleep_ms(2);
    cr_assert_eq(failing_of(res), 0);
    cr_assert_eq(changes_of(res), 1);
}

/* Bytes the allocator has handed out and not had back, across all threads. */
static size_t heap_in_use(void)
{
#ifdef HAVE_ASAN
    return __sanitizer_get_current_allocated_bytes();
#else
    return mallinfo2().uordblks;
#endif
}

/* Flip NAME between two addresses; each flip is one change that worker 0 follows. */
static void flip(int i, const struct net_addrset **prev)
{
    const char *want = i % 2 ? "127.0.0.42:80" : "127.0.0.41:80";
    const struct net_addrset *s;

    if (i % 2)
        hosts_push("127.0.0.42 " NAME "\n");
    else
        hosts_pop();
    net_resolver_kick(res);
    /*
     * The set from the previous get stays valid until the next get: read it
     * (ASan reports a use-after-free if it was reclaimed too early).
     */
    if (*prev)
        cr_assert(set_has(*prev, "127.0.0.41:80") || set_has(*prev, "127.0.0.42:80"));
    s = wait_for(res, 0, want);
    cr_assert(set_has(s, want), "flip %d not seen within 2 s", i);
    *prev = s;
}

Test(net_resolve, old_sets_are_reclaimed, .fini = res_down, .timeout = 30)
{
    const struct net_addrset *prev = NULL;
    size_t before, after, per_set = sizeof(struct net_addrset) + sizeof(struct net_addr);
    const int warm = 10, flips = 60;

    private_mounts();
    hosts_push("127.0.0.41 " NAME "\n");
    res = net_resolver_new(NAME, "80", 10, 1);
    cr_assert_eq(net_resolver_start(res), 0);
    prev = net_resolver_get(res, 0);
    cr_assert_str_eq(prev->a[0].str, "127.0.0.41:80");
    /* Warm up libc's one-time allocations (NSS modules, interface cache). */
    for (int i = 1; i <= warm; i++)
        flip(i, &prev);
    before = heap_in_use();
    for (int i = warm + 1; i <= warm + flips; i++)
        flip(i, &prev);
    /* Let the periodic pass reclaim the last retired set too. */
    sleep_ms(50);
    after = heap_in_use();
    cr_assert_eq(changes_of(res), (uint64_t)(1 + warm + flips));
    /* Without reclamation every flip keeps a set: flips * per_set bytes and more. */
    cr_assert_lt(after, before + (size_t)flips * per_set / 4,
                 "heap grew by %zu bytes over %d changes (a set is >= %zu bytes)",
                 after > before ? after - before : 0, flips, per_set);
    res_down();
    assert_no_leaks();
}

/* A worker that stopped calling get pins its set: it must stay readable. */
Test(net_resolve, lagging_worker_keeps_its_set, .fini = res_down, .timeout = 30)
{
    const struct net_addrset *held, *prev = NULL;
    char first[NET_ADDRSTRLEN];

    private_mounts();
    hosts_push("127.0.0.41 " NAME "\n");
    res = net_resolver_new(NAME, "80", 10, 2);
    cr_assert_eq(net_resolver_start(res), 0);
    held = net_resolver_get(res, 1);
    cr_assert_eq(held->n, 1);
    (void)snprintf(first, sizeof(first), "%s", held->a[0].str);
    for (int i = 1; i <= 8; i++)
        flip(i, &prev);
    /* ASan flags this read if the set worker 1 still holds was freed. */
    cr_assert_eq(held->n, 1);
    cr_assert_str_eq(held->a[0].str, first);
    /* Once worker 1 moves on, the sets go (leaks are checked by ASan at free). */
    cr_assert(set_has(net_resolver_get(res, 1), "127.0.0.41:80"));
    res_down();
    assert_no_leaks();
}
