/*
 * http/auth.c: password checks by the helper threads (bcrypt, sha512-crypt
 * and yescrypt hashes made here), the bounded queue, deadlines, the
 * workers' inboxes and eventfds, a worker gone, freeing with work left,
 * the cache of good checks (TTL, eviction within a set, a flood, several
 * threads), its keys, and SipHash-2-4-128 against the reference vectors.
 */
#include <crypt.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "cfg/rules.h"
#include "http/auth.h"
#include "http/auth_impl.h"
#include "tests/support/lsan.h"

#define S 1000000ull /* µs */
#define T0 (1000ull * S)
#define FAR (UINT64_MAX / 2) /* a deadline never reached */

static uint64_t mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * S + (uint64_t)ts.tv_nsec / 1000u;
}

/* A complete hash of pass with a fresh salt (count 0: the method's default cost). */
static char *hash_of(const char *prefix, unsigned long count, const char *pass)
{
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    const char *h;
    char *r;

    cr_assert_not_null(cd);
    cr_assert_not_null(crypt_gensalt_rn(prefix, count, NULL, 0, salt, sizeof(salt)), "%s", prefix);
    h = crypt_rn(pass, salt, cd, sizeof(*cd));
    cr_assert(h && h[0] != '*', "%s", prefix);
    r = strdup(h);
    free(cd);
    return r;
}

static struct http_auth *auth(unsigned nworkers, unsigned threads, unsigned queue_max)
{
    struct http_auth *a = http_auth_new(nworkers, threads, queue_max, 64);

    cr_assert_not_null(a);
    return a;
}

static struct http_auth_job *job(const char *setting, const char *pass, unsigned worker,
                                 void *cookie)
{
    struct http_auth_job *j = http_auth_job_new(setting, pass, strlen(pass));

    cr_assert_not_null(j);
    j->worker = worker;
    j->cookie = cookie;
    j->deadline_us = FAR;
    return j;
}

static void submit(struct http_auth *a, struct http_auth_job *j)
{
    cr_assert_eq(http_auth_submit(a, j), 0);
}

static int evfd(void)
{
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

    cr_assert_geq(fd, 0);
    return fd;
}

/* Read fd's counter until it has added up to want (10 s at most): the sum. */
static uint64_t wait_events(int fd, uint64_t want)
{
    uint64_t sum = 0, end = mono_us() + 10 * S;

    while (sum < want && mono_us() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        uint64_t v;

        if (poll(&p, 1, 100) == 1 && read(fd, &v, sizeof(v)) == sizeof(v))
            sum += v;
    }
    return sum;
}

/* Nothing more on fd. */
static int quiet(int fd)
{
    uint64_t v;

    return read(fd, &v, sizeof(v)) < 0 && errno == EAGAIN;
}

/* Wait (10 s at most) until the helpers have taken every queued job. */
static void wait_taken(struct http_auth *a)
{
    uint64_t end = mono_us() + 10 * S;

    while (http_auth_queued(a) && mono_us() < end)
        usleep(200);
    cr_assert_eq(http_auth_queued(a), 0);
}

static size_t count(const struct http_auth_job *j)
{
    size_t n = 0;

    for (; j; j = j->next)
        n++;
    return n;
}

static void free_all(struct http_auth_job *j)
{
    while (j) {
        struct http_auth_job *next = j->next;

        http_auth_job_free(j);
        j = next;
    }
}

static int wiped(const struct http_auth_job *j)
{
    for (size_t i = 0; i < j->pass_len; i++)
        if (j->pass[i])
            return 0;
    return 1;
}

/* ---- checks ---------------------------------------------------------------- */

/* Good, wrong and force_bad with the good password, for each kind of hash the validator allows. */
Test(http_auth, each_scheme, .timeout = 30)
{
    static const struct {
        const char *prefix;
        unsigned long count;
    } kinds[] = {{"$2b$", 4}, {"$2y$", 4}, {"$6$", 1000}, {"$y$", 0}};
    const size_t nk = sizeof(kinds) / sizeof(kinds[0]);
    struct http_auth *a = auth(1, 2, 64);
    int fd = evfd();
    int tags[3 * 4];
    struct http_auth_job *got;

    http_auth_set_wake(a, 0, fd);
    for (size_t k = 0; k < nk; k++) {
        char *h = hash_of(kinds[k].prefix, kinds[k].count, "s3cret pass");
        struct http_auth_job *j;

        submit(a, job(h, "s3cret pass", 0, &tags[3 * k]));
        submit(a, job(h, "s3cret pasS", 0, &tags[3 * k + 1]));
        j = job(h, "s3cret pass", 0, &tags[3 * k + 2]);
        j->force_bad = 1;
        submit(a, j);
        free(h);
    }
    cr_assert_eq(wait_events(fd, 3 * nk), 3 * nk);
    got = http_auth_take(a, 0);
    cr_assert_eq(count(got), 3 * nk);
    for (const struct http_auth_job *j = got; j; j = j->next) {
        size_t i = (size_t)((int *)j->cookie - tags);

        cr_expect_eq(j->result, i % 3 == 0 ? HTTP_AUTH_OK : HTTP_AUTH_BAD, "%s, job %zu",
                     kinds[i / 3].prefix, i % 3);
        cr_expect(wiped(j), "the password is wiped once checked");
        cr_expect_eq(j->pass_len, strlen("s3cret pass"));
    }
    cr_expect_eq(http_auth_checks(a, HTTP_AUTH_OK), nk);
    cr_expect_eq(http_auth_checks(a, HTTP_AUTH_BAD), 2 * nk);
    cr_expect_eq(http_auth_checks(a, HTTP_AUTH_LATE), 0);
    cr_expect_eq(http_auth_checks(a, HTTP_AUTH_PENDING), 0);
    cr_expect_eq(http_auth_checks(a, (enum http_auth_result)99), 0);
    cr_expect_eq(http_auth_queued(a), 0);
    cr_expect_null(http_auth_take(a, 0));
    free_all(got);
    http_auth_free(a);
    close(fd);
    assert_no_leaks();
}

/* Hashes crypt_rn() refuses, a truncated one, and an empty password: BAD, never OK. */
Test(http_auth, broken_hashes_are_bad, .timeout = 30)
{
    char *h = hash_of("$2b$", 4, "pw");
    char *cut = strdup(h);
    const char *settings[] = {"", "*0", "*", "garbage", "$2b$04$", "$9$xx$yy", cut, h};
    const char *passes[] = {"", "pw", "pw", "pw", "pw", "pw", "pw", ""};
    const size_t n = sizeof(settings) / sizeof(settings[0]);
    struct http_auth *a = auth(1, 1, 64);
    int fd = evfd();
    struct http_auth_job *got;

    cut[strlen(cut) - 3] = '\0'; /* the checksum cut short */
    http_auth_set_wake(a, 0, fd);
    for (size_t i = 0; i < n; i++)
        submit(a, job(settings[i], passes[i], 0, NULL));
    cr_assert_eq(wait_events(fd, n), n);
    got = http_auth_take(a, 0);
    cr_assert_eq(count(got), n);
    for (const struct http_auth_job *j = got; j; j = j->next)
        cr_expect_eq(j->result, HTTP_AUTH_BAD, "\"%s\"", j->setting);
    cr_expect_eq(http_auth_checks(a, HTTP_AUTH_BAD), n);
    free_all(got);
    http_auth_free(a);
    close(fd);
    free(cut);
    free(h);
    assert_no_leaks();
}

/* A job still queued at its deadline is not checked. */
Test(http_auth, late, .timeout = 30)
{
    char *h = hash_of("$2b$", 4, "pw");
    struct http_auth *a = auth(1, 1, 64);
    int fd = evfd();
    struct http_auth_job *j, *got;

    http_auth_set_wake(a, 0, fd);
    j = job(h, "pw", 0, NULL);
    j->deadline_us = mono_us() - 1; /* already past */
    submit(a, j);
    j = job(h, "pw", 0, NULL);
    j->deadline_us = mono_us() + 10 * S;
    submit(a, j);
    cr_assert_eq(wait_events(fd, 2), 2);
    got = http_auth_take(a, 0);
    cr_assert_eq(count(got), 2);
    cr_expect_eq(got->result, HTTP_AUTH_LATE);
    cr_expect(wiped(got));
    cr_expect_eq(got->next->result, HTTP_AUTH_OK);
    cr_expect_eq(http_auth_checks(a, HTTP_AUTH_LATE), 1);
    cr_expect_eq(http_auth_checks(a, HTTP_AUTH_OK), 1);
    free_all(got);
    http_auth_free(a);
    close(fd);
    free(h);
    assert_no_leaks();
}

/* The queue holds queue_max jobs (the one being checked is not queued); over it, -EBUSY. */
Test(http_auth, queue_full, .timeout = 30)
{
    char *slow = hash_of("$2b$", 10, "pw"); /* ~50 ms: the helper stays busy */
    char *fast = hash_of("$2b$", 4, "pw");
    struct http_auth *a = auth(1, 1, 2);
    int fd = evfd();
    struct http_auth_job *b, *got;

    http_auth_set_wake(a, 0, fd);
    submit(a, job(slow, "pw", 0, NULL));
    wait_taken(a);
    submit(a, job(fast, "pw", 0, NULL));
    submit(a, job(fast, "pw", 0, NULL));
    cr_expect_eq(http_auth_queued(a), 2);
    b = job(fast, "pw", 0, NULL);
    cr_expect_eq(http_auth_submit(a, b), -EBUSY);
    cr_expect_eq(http_auth_queued(a), 2);
    http_auth_job_free(b); /* still the caller's */
    cr_assert_eq(wait_events(fd, 3), 3);
    got = http_auth_take(a, 0);
    cr_expect_eq(count(got), 3);
    for (const struct http_auth_job *j = got; j; j = j->next)
        cr_expect_eq(j->result, HTTP_AUTH_OK);
    cr_expect_eq(http_auth_queued(a), 0);
    free_all(got);
    /* room again */
    b = job(fast, "pw", 0, NULL);
    cr_expect_eq(http_auth_submit(a, b), 0);
    cr_assert_eq(wait_events(fd, 1), 1);
    free_all(http_auth_take(a, 0));
    http_auth_free(a);
    close(fd);
    free(slow);
    free(fast);
    assert_no_leaks();
}

/* Each worker's results in its own inbox, oldest first, each announced on its eventfd. */
Test(http_auth, inboxes, .timeout = 30)
{
    enum { N = 12 };
    char *h = hash_of("$2b$", 4, "right");
    struct http_auth *a = auth(3, 1, N);
    int fds[3] = {evfd(), evfd(), evfd()};
    int tags[N];
    struct http_auth_job *got[2];

    for (unsigned w = 0; w < 3; w++)
        http_auth_set_wake(a, w, fds[w]);
    cr_expect_null(http_auth_take(a, 0)); /* empty */
    /* workers 0 and 1 in turn, worker 0 twice as often; worker 2 asks nothing */
    for (int i = 0; i < N; i++)
        submit(a, job(h, i % 4 == 1 ? "wrong" : "right", i % 3 == 2 ? 1 : 0, &tags[i]));
    cr_expect_eq(wait_events(fds[0], 8), 8);
    cr_expect_eq(wait_events(fds[1], 4), 4);
    cr_expect(quiet(fds[0]) && quiet(fds[1]) && quiet(fds[2]));
    cr_expect_null(http_auth_take(a, 2));
    cr_expect_null(http_auth_take(a, 3)); /* no such worker */
    for (unsigned w = 0; w < 2; w++) {
        int last = -1;

        got[w] = http_auth_take(a, w);
        cr_expect_eq(count(got[w]), w ? 4u : 8u);
        for (const struct http_auth_job *j = got[w]; j; j = j->next) {
            int i = (int)((int *)j->cookie - tags);

            cr_expect_eq(j->worker, w);
            cr_expect_eq(i % 3 == 2 ? 1u : 0u, w, "job %d in worker %u's inbox", i, w);
            cr_expect_gt(i, last, "oldest first");
            last = i;
            cr_expect_eq(j->result, i % 4 == 1 ? HTTP_AUTH_BAD : HTTP_AUTH_OK, "job %d", i);
        }
        cr_expect_null(http_auth_take(a, w), "taken once");
    }
    free_all(got[0]);
    free_all(got[1]);
    http_auth_free(a);
    for (int w = 0; w < 3; w++)
        close(fds[w]);
    free(h);
    assert_no_leaks();
}

/* Results before worker_gone are freed by it, later ones by the helper; nothing more is announced.
 */
Test(http_auth, worker_gone, .timeout = 30)
{
    char *slow = hash_of("$2b$", 10, "pw");
    char *fast = hash_of("$2b$", 4, "pw");
    struct http_auth *a = auth(2, 1, 16);
    int fd0 = evfd(), fd1 = evfd();

    http_auth_set_wake(a, 0, fd0);
    http_auth_set_wake(a, 1, fd1);
    submit(a, job(fast, "pw", 1, NULL));
    submit(a, job(fast, "bad", 1, NULL));
    cr_assert_eq(wait_events(fd1, 2), 2); /* delivered, not taken */
    submit(a, job(slow, "pw", 1, NULL));
    wait_taken(a);                       /* being checked */
    submit(a, job(fast, "pw", 1, NULL)); /* queued behind it */
    http_auth_worker_gone(a, 1);
    cr_expect_null(http_auth_take(a, 1));
    /* one helper, FIFO: once worker 0's result is in, worker 1's last two were finished */
    submit(a, job(fast, "pw", 0, NULL));
    cr_assert_eq(wait_events(fd0, 1), 1);
    cr_expect_eq(http_auth_checks(a, HTTP_AUTH_OK) + http_auth_checks(a, HTTP_AUTH_BAD), 5);
    cr_expect_null(http_auth_take(a, 1));
    cr_expect(quiet(fd1), "no wake-up for a gone worker");
    free_all(http_auth_take(a, 0));
    /* a job for it submitted afterwards is checked and dropped as well */
    submit(a, job(fast, "pw", 1, NULL));
    submit(a, job(fast, "pw", 0, NULL));
    cr_assert_eq(wait_events(fd0, 1), 1);
    cr_expect_null(http_auth_take(a, 1));
    free_all(http_auth_take(a, 0));
    http_auth_worker_gone(a, 1); /* twice: harmless */
    http_auth_free(a);
    close(fd0);
    close(fd1);
    free(slow);
    free(fast);
    assert_no_leaks();
}

/*
 * Free with a check under way, jobs queued and a result not taken: it
 * waits for the check in progress only, and frees the rest.
 */
Test(http_auth, free_with_work_left, .timeout = 30)
{
    char *slow = hash_of("$2b$", 10, "pw");   /* ~60 ms */
    char *slower = hash_of("$2b$", 12, "pw"); /* ~250 ms */
    struct http_auth *a = auth(2, 1, 64);
    int fd = evfd();
    uint64_t t;

    http_auth_set_wake(a, 0, fd);
    submit(a, job(slow, "pw", 0, NULL));
    cr_assert_eq(wait_events(fd, 1), 1); /* one result left in the inbox */
    submit(a, job(slow, "pw", 0, NULL));
    wait_taken(a);
    for (int i = 0; i < 20; i++)
        submit(a, job(slower, "pw", i % 2, NULL));
    cr_expect_eq(http_auth_queued(a), 20);
    t = mono_us();
    http_auth_free(a);
    /* the check in progress, not the 20 queued (5 s) */
    cr_expect_lt(mono_us() - t, 2500000ull);
    close(fd);
    free(slow);
    free(slower);

    /* nothing ever asked, and none of it: fine too */
    http_auth_free(http_auth_new(4, 3, 8, 1000));
    http_auth_free(NULL);
    assert_no_leaks();
}

/* At least one helper; threads 0 means one. */
Test(http_auth, zero_threads_means_one, .timeout = 30)
{
    char *h = hash_of("$2b$", 4, "pw");
    struct http_auth *a = auth(1, 0, 4);
    int fd = evfd();
    struct http_auth_job *got;

    http_auth_set_wake(a, 0, fd);
    submit(a, job(h, "pw", 0, NULL));
    cr_assert_eq(wait_events(fd, 1), 1);
    got = http_auth_take(a, 0);
    cr_assert_not_null(got);
    cr_expect_eq(got->result, HTTP_AUTH_OK);
    free_all(got);
    http_auth_free(a);
    close(fd);
    free(h);
    assert_no_leaks();
}

/* ---- jobs ------------------------------------------------------------------ */

Test(http_auth, job_new)
{
    char setting[CFG_AUTH_MAX_HASH + 2];
    char pass[255];
    struct http_auth_job *j;

    memset(setting, 'x', sizeof(setting));
    setting[CFG_AUTH_MAX_HASH] = '\0';
    for (size_t i = 0; i < sizeof(pass); i++)
        pass[i] = (char)(i + 1); /* every byte but NUL */
    j = http_auth_job_new(setting, pass, sizeof(pass));
    cr_assert_not_null(j);
    cr_expect_str_eq(j->setting, setting);
    cr_expect_eq(j->pass_len, sizeof(pass));
    cr_expect_eq(memcmp(j->pass, pass, sizeof(pass)), 0);
    cr_expect_eq(j->pass[sizeof(pass)], '\0');
    cr_expect_eq(j->result, HTTP_AUTH_PENDING);
    cr_expect_null(j->next);
    cr_expect_null(j->cookie);
    http_auth_job_free(j);

    setting[CFG_AUTH_MAX_HASH] = 'x';
    setting[CFG_AUTH_MAX_HASH + 1] = '\0';
    cr_expect_null(http_auth_job_new(setting, "pw", 2), "a hash over CFG_AUTH_MAX_HASH");

    j = http_auth_job_new("$2b$04$x", "", 0);
    cr_assert_not_null(j);
    cr_expect_eq(j->pass_len, 0);
    cr_expect_str_eq(j->pass, "");
    http_auth_job_free(j);
    http_auth_job_free(NULL);
    assert_no_leaks();
}

/* ---- the cache ------------------------------------------------------------- */

Test(http_auth, cache_ttl)
{
    struct http_auth *a = http_auth_new(1, 1, 1, 64);
    const uint64_t k[2] = {0x1234, 0x5678}, other[2] = {0x1234, 0x5679}, zero[2] = {0, 0};

    cr_assert_not_null(a);
    cr_expect_not(http_auth_cache_has(a, k, T0));
    http_auth_cache_put(a, k, T0);
    cr_expect(http_auth_cache_has(a, k, T0));
    cr_expect_not(http_auth_cache_has(a, other, T0));
    cr_expect(http_auth_cache_has(a, k, T0 + HTTP_AUTH_TTL_US - 1));
    cr_expect_not(http_auth_cache_has(a, k, T0 + HTTP_AUTH_TTL_US), "expired");
    cr_expect(http_auth_cache_has(a, k, T0 - 10), "a clock a little behind: still young");
    /* a put refreshes */
    http_auth_cache_put(a, k, T0 + HTTP_AUTH_TTL_US);
    cr_expect(http_auth_cache_has(a, k, T0 + 2 * HTTP_AUTH_TTL_US - 1));
    cr_expect_not(http_auth_cache_has(a, k, T0 + 2 * HTTP_AUTH_TTL_US));
    /* an older put does not age it */
    http_auth_cache_put(a, k, T0);
    cr_expect(http_auth_cache_has(a, k, T0 + 2 * HTTP_AUTH_TTL_US - 1));
    /* the all-zero key, and time 0 */
    cr_expect_not(http_auth_cache_has(a, zero, 0));
    cr_expect_not(http_auth_cache_has(a, zero, T0));
    http_auth_cache_put(a, zero, 0);
    cr_expect(http_auth_cache_has(a, zero, 0));
    cr_expect(http_auth_cache_has(a, zero, HTTP_AUTH_TTL_US - 1));
    cr_expect_not(http_auth_cache_has(a, zero, HTTP_AUTH_TTL_US));
    http_auth_free(a);
    assert_no_leaks();
}

/* Keys with the same key[0] share a set (the set is chosen by key[0]): the oldest goes. */
Test(http_auth, cache_evicts_the_oldest_of_a_set)
{
    struct http_auth *a = http_auth_new(1, 1, 1, 4);
    uint64_t k[8][2];

    cr_assert_not_null(a);
    for (int i = 0; i < 8; i++) {
        k[i][0] = 42;
        k[i][1] = (uint64_t)i;
    }
    for (int i = 1; i <= 4; i++)
        http_auth_cache_put(a, k[i], T0 + (uint64_t)i);
    for (int i = 1; i <= 4; i++)
        cr_expect(http_auth_cache_has(a, k[i], T0 + 10), "%d", i);
    http_auth_cache_put(a, k[1], T0 + 10); /* refreshed: now the youngest */
    http_auth_cache_put(a, k[5], T0 + 11); /* 2 goes */
    cr_expect(http_auth_cache_has(a, k[1], T0 + 12));
    cr_expect_not(http_auth_cache_has(a, k[2], T0 + 12));
    cr_expect(http_auth_cache_has(a, k[3], T0 + 12));
    cr_expect(http_auth_cache_has(a, k[4], T0 + 12));
    cr_expect(http_auth_cache_has(a, k[5], T0 + 12));
    http_auth_cache_put(a, k[6], T0 + 13); /* 3 goes */
    cr_expect_not(http_auth_cache_has(a, k[3], T0 + 14));
    cr_expect(http_auth_cache_has(a, k[4], T0 + 14));
    /* an expired entry is the oldest */
    http_auth_cache_put(a, k[4], T0 + 20 + HTTP_AUTH_TTL_US);
    http_auth_cache_put(a, k[5], T0 + 20 + HTTP_AUTH_TTL_US);
    http_auth_cache_put(a, k[6], T0 + 20 + HTTP_AUTH_TTL_US);
    http_auth_cache_put(a, k[7], T0 + 21 + HTTP_AUTH_TTL_US); /* 1 goes */
    cr_expect_not(http_auth_cache_has(a, k[1], T0 + 22));
    for (int i = 4; i <= 7; i++)
        cr_expect(http_auth_cache_has(a, k[i], T0 + 22 + HTTP_AUTH_TTL_US), "%d", i);
    http_auth_free(a);
}

/* A flood of distinct keys: never more remembered than the sets hold (entries rounded up). */
Test(http_auth, cache_flood_is_bounded)
{
    static const size_t sizes[] = {64, 100, 1};
    static const size_t slots[] = {64, 128, 4};

    for (size_t s = 0; s < 3; s++) {
        struct http_auth *a = http_auth_new(1, 1, 1, sizes[s]);
        const uint64_t n = 100000;
        size_t hits = 0, recent = 0;

        cr_assert_not_null(a);
        for (uint64_t i = 0; i < n; i++) {
            const uint64_t k[2] = {i, i * 0x9e3779b97f4a7c15ull};

            http_auth_cache_put(a, k, T0 + i);
        }
        for (uint64_t i = 0; i < n; i++) {
            const uint64_t k[2] = {i, i * 0x9e3779b97f4a7c15ull};

            if (http_auth_cache_has(a, k, T0 + n)) {
                hits++;
                recent += i >= n - slots[s];
            }
        }
        cr_expect_eq(hits, slots[s], "cache of %zu: %zu remembered", sizes[s], hits);
        cr_expect_eq(recent, slots[s], "the newest keys stay");
        http_auth_free(a);
    }
    assert_no_leaks();
}

struct hammer {
    struct http_auth *a;
    unsigned t;
    int disjoint;
    long misses, false_hits, hits;
};

static void *hammer(void *arg)
{
    struct hammer *h = arg;
    uint64_t x = h->t * 0x9e3779b97f4a7c15ull + 1;

    for (uint64_t r = 0; r < 200000; r++) {
        uint64_t now = T0 + r;

        if (h->disjoint) {
            /* this thread's own sets: what it put is there */
            const uint64_t k[2] = {h->t + 4 * (r % 256), r};

            http_auth_cache_put(h->a, k, now);
            h->misses += !http_auth_cache_has(h->a, k, now);
        } else {
            /* every thread on a few sets: (y, 2y) only is put, (y, 2y + 1) never */
            uint64_t y;

            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            y = x % 64;
            const uint64_t k[2] = {y, 2 * y}, never[2] = {y, 2 * y + 1};

            http_auth_cache_put(h->a, k, now);
            h->hits += http_auth_cache_has(h->a, k, now);
            h->false_hits += http_auth_cache_has(h->a, never, now);
        }
    }
    return NULL;
}

Test(http_auth, cache_threads, .timeout = 30)
{
    for (int disjoint = 1; disjoint >= 0; disjoint--) {
        struct http_auth *a = http_auth_new(4, 1, 1, disjoint ? 1024 * 4 : 16);
        pthread_t th[4];
        struct hammer hs[4];

        cr_assert_not_null(a);
        for (unsigned t = 0; t < 4; t++) {
            hs[t] = (struct hammer){.a = a, .t = t, .disjoint = disjoint};
            cr_assert_eq(pthread_create(&th[t], NULL, hammer, &hs[t]), 0);
        }
        for (unsigned t = 0; t < 4; t++) {
            pthread_join(th[t], NULL);
            cr_expect_eq(hs[t].misses, 0, "thread %u lost %ld of its own", t, hs[t].misses);
            cr_expect_eq(hs[t].false_hits, 0, "thread %u: %ld torn entries", t, hs[t].false_hits);
        }
        http_auth_free(a);
    }
    assert_no_leaks();
}

/* ---- keys ------------------------------------------------------------------ */

static void key_of(struct http_auth *a, const char *setting, const char *cred, uint64_t k[2])
{
    http_auth_key(a, setting, strlen(setting), cred, strlen(cred), k);
}

static int same(const uint64_t a[2], const uint64_t b[2])
{
    return a[0] == b[0] && a[1] == b[1];
}

Test(http_auth, keys)
{
    struct http_auth *a = http_auth_new(1, 1, 1, 64), *b = http_auth_new(1, 1, 1, 64);
    char setting[] = "$2b$04$abcdefghijklmnopqrstuuJ1x2y3z4A5B6C7D8E9F0G1H2I3J4K5L";
    char cred[] = "alice:correct horse battery staple";
    char big[5000];
    uint64_t k0[2], k1[2], k2[2];

    cr_assert(a && b);
    key_of(a, setting, cred, k0);
    key_of(a, setting, cred, k1);
    cr_expect(same(k0, k1), "the same inputs, the same key");
    key_of(b, setting, cred, k2);
    cr_expect_not(same(k0, k2), "another process, another key");

    for (size_t i = 0; i < strlen(setting); i++) {
        setting[i] ^= 1;
        key_of(a, setting, cred, k1);
        cr_expect_not(same(k0, k1), "setting byte %zu", i);
        setting[i] ^= 1;
    }
    for (size_t i = 0; i < strlen(cred); i++) {
        cred[i] ^= 0x20;
        key_of(a, setting, cred, k1);
        cr_expect_not(same(k0, k1), "cred byte %zu", i);
        cred[i] ^= 0x20;
    }
    /* where the hash ends and the credentials start counts */
    http_auth_key(a, "ab", 2, "c", 1, k1);
    http_auth_key(a, "a", 1, "bc", 2, k2);
    cr_expect_not(same(k1, k2));
    /* empty, and long credentials (streamed, not copied) */
    http_auth_key(a, "", 0, "", 0, k1);
    http_auth_key(a, "", 0, "", 0, k2);
    cr_expect(same(k1, k2));
    memset(big, 'p', sizeof(big));
    http_auth_key(a, setting, strlen(setting), big, sizeof(big), k1);
    big[sizeof(big) - 1] = 'q';
    http_auth_key(a, setting, strlen(setting), big, sizeof(big), k2);
    cr_expect_not(same(k1, k2));
    http_auth_key(a, setting, strlen(setting), big, sizeof(big) - 1, k1);
    cr_expect_not(same(k1, k2));
    http_auth_free(a);
    http_auth_free(b);
    assert_no_leaks();
}

/*
 * SipHash-2-4-128, the reference vectors (vectors_sip128 of the authors'
 * reference code): key 00..0f, message 00..(n-1) for n = 0..63, the 16
 * output bytes in order.
 */
static const char *const sip128[64] = {
    "a3817f04ba25a8e66df67214c7550293", "da87c1d86b99af44347659119b22fc45",
    "8177228da4a45dc7fca38bdef60affe4", "9c70b60c5267a94e5f33b6b02985ed51",
    "f88164c12d9c8faf7d0f6e7c7bcd5579", "1368875980776f8854527a07690e9627",
    "14eeca338b208613485ea0308fd7a15e", "a1f1ebbed8dbc153c0b84aa61ff08239",
    "3b62a9ba6258f5610f83e264f31497b4", "264499060ad9baabc47f8b02bb6d71ed",
    "00110dc378146956c95447d3f3d0fbba", "0151c568386b6677a2b4dc6f81e5dc18",
    "d626b266905ef35882634df68532c125", "9869e247e9c08b10d029934fc4b952f7",
    "31fcefac66d7de9c7ec7485fe4494902", "5493e99933b0a8117e08ec0f97cfc3d9",
    "6ee2a4ca67b054bbfd3315bf85230577", "473d06e8738db89854c066c47ae47740",
    "a426e5e423bf4885294da481feaef723", "78017731cf65fab074d5208952512eb1",
    "9e25fc833f2290733e9344a5e83839eb", "568e495abe525a218a2214cd3e071d12",
    "4a29b54552d16b9a469c10528eff0aae", "c9d184ddd5a9f5e0cf8ce29a9abf691c",
    "2db479ae78bd50d8882a8a178a6132ad", "8ece5f042d5e447b5051b9eacb8d8f6f",
    "9c0b53b4b3c307e87eaee08678141f66", "abf248af69a6eae4bfd3eb2f129eeb94",
    "0664da1668574b88b935f3027358aef4", "aa4b9dc4bf337de90cd4fd3c467c6ab7",
    "ea5c7f471faf6bde2b1ad7d4686d2287", "2939b0183223fafc1723de4f52c43d35",
    "7c3956ca5eeafc3e363e9d556546eb68", "77c6077146f01c32b6b69d5f4ea9ffcf",
    "37a6986cb8847edf0925f0f1309b54de", "a705f0e69da9a8f907241a2e923c8cc8",
    "3dc47d1f29c448461e9e76ed904f6711", "0d62bf01e6fc0e1a0d3c4751c5d3692b",
    "8c03468bca7c669ee4fd5e084bbee7b5", "528a5bb93baf2c9c4473cce5d0d22bd9",
    "df6a301e95c95dad97ae0cc8c6913bd8", "801189902c857f39e73591285e70b6db",
    "e617346ac9c231bb3650ae34ccca0c5b", "27d93437efb721aa401821dcec5adf89",
    "89237d9ded9c5e78d8b1c9b166cc7342", "4a6d8091bf5e7d651189fa94a250b14c",
    "0e33f96055e7ae893ffc0e3dcf492902", "e61c432b720b19d18ec8d84bdc63151b",
    "f7e5aef549f782cf379055a608269b16", "438d030fd0b7a54fa837f2ad201a6403",
    "a590d3ee4fbf04e3247e0d27f286423f", "5fe2c1a172fe93c4b15cd37caef9f538",
    "2c97325cbd06b36eb2133dd08b3a017c", "92c814227a6bca949ff0659f002ad39e",
    "dce850110bd8328cfbd50841d6911d87", "67f14984c7da791248e32bb5922583da",
    "1938f2cf72d54ee97e94166fa91d2a36", "74481e9646ed49fe0f6224301604698e",
    "57fca5de98a9d6d8006438d0583d8a1d", "9fecde1cefdc1cbed4763674d9575359",
    "e3040c00eb28f15366ca73cbd872e740", "7697009a6a831dfecca91c5993670f7a",
    "5853542321f567a005d547a4f04759bd", "5150d1772f50834a503e069a973fbd7c",
};

static void hex_of(const uint64_t out[2], char hex[33])
{
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", (unsigned)(out[i / 8] >> (8 * (i % 8)) & 0xff));
}

Test(http_auth, siphash128_vectors)
{
    uint8_t key[16], msg[64];
    uint64_t out[2];
    char hex[33];
    size_t bad = 0;

    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    for (int i = 0; i < 64; i++)
        msg[i] = (uint8_t)i;
    http_auth_siphash128(key, msg, 0, out);
    cr_expect_eq(out[0], 0xe6a825ba047f81a3ull);
    cr_expect_eq(out[1], 0x930255c71472f66dull);
    for (size_t n = 0; n < 64; n++) {
        http_auth_siphash128(key, msg, n, out);
        hex_of(out, hex);
        cr_expect_str_eq(hex, sip128[n], "length %zu", n);
        /* streamed in three pieces, split anywhere */
        for (size_t i = 0; i <= n; i++)
            for (size_t j = i; j <= n; j++) {
                const struct iovec v[3] = {{msg, i}, {msg + i, j - i}, {msg + j, n - j}};

                http_auth_siphash128v(key, v, 3, out);
                hex_of(out, hex);
                if (strcmp(hex, sip128[n]))
                    bad++;
            }
    }
    cr_expect_eq(bad, 0, "%zu streamed hashes differ from the vectors", bad);
}
