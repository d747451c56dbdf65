/*
 * The password checks of the `basic_auth` rule action (docs/rules.md).
 *
 * A crypt(3) check costs tens of milliseconds (bcrypt, yescrypt): it never
 * runs on a worker's event loop. A worker that needs one parks the request
 * and submits a job; a few helper threads (at a lower priority than the
 * workers) run crypt_rn() and hand each result back to the worker that
 * asked, in that worker's inbox, waking it through its eventfd. The queue
 * is bounded: a full queue refuses the job (the proxy answers 503), and a
 * job that waited past its deadline is not run (HTTP_AUTH_LATE).
 *
 * Good checks are remembered in a cache shared by every worker, so a client
 * that logged in pays once per HTTP_AUTH_TTL_US and per instance: bounded
 * (set-associative, oldest entry evicted), keyed by a keyed 128-bit hash
 * (SipHash, a random key per process) of the stored hash and the
 * credentials, so that neither a password nor anything that could be
 * checked offline is kept, and a changed hash in the config misses. A
 * wrong password is never cached.
 *
 * Ownership: a job belongs to the worker until http_auth_submit() takes
 * it, to the helpers until http_auth_take() returns it, then to the worker
 * again (http_auth_job_free()). The helpers never read `cookie`: a worker
 * whose connection went away while its job ran clears it and drops the
 * result when it comes back.
 */
#ifndef RINGPROXY_HTTP_AUTH_H
#define RINGPROXY_HTTP_AUTH_H

#include <stddef.h>
#include <stdint.h>

struct http_auth;

/* How long a good check is remembered. */
#define HTTP_AUTH_TTL_US (300ull * 1000 * 1000)

enum http_auth_result {
    HTTP_AUTH_PENDING = 0,
    HTTP_AUTH_OK,   /* the password matches the hash */
    HTTP_AUTH_BAD,  /* it does not (or force_bad), or crypt_rn() failed */
    HTTP_AUTH_LATE, /* still queued at its deadline: not checked */
};

struct http_auth_job {
    struct http_auth_job *next; /* in a queue or an inbox; the list http_auth_take() returns */
    unsigned worker;            /* whose inbox the result goes to */
    void *cookie;               /* the worker's (its parked request); the helpers never read it */
    uint64_t deadline_us;       /* CLOCK_MONOTONIC µs */
    uint64_t key[2];            /* the cache key (http_auth_key()), for the worker's use */
    uint8_t force_bad;          /* an unknown user: checked all the same (same cost), then BAD */
    uint8_t result;             /* enum http_auth_result, set by the helper */
    char *setting;              /* the stored hash, NUL-terminated (in the job) */
    char *pass;                 /* pass_len bytes and a NUL (in the job); wiped once checked */
    size_t pass_len;
};

/*
 * Helper threads (threads, at least 1) for nworkers workers, a queue of at
 * most queue_max jobs, a cache of at least cache_entries good checks.
 * NULL when out of memory or a thread cannot start.
 */
struct http_auth *http_auth_new(unsigned nworkers, unsigned threads, unsigned queue_max,
                                size_t cache_entries);

/* How long http_auth_free() waits for a check in progress (a costly hash takes seconds). */
#define HTTP_AUTH_EXIT_WAIT_MS 200

/*
 * Stop and join the helpers, then free every job still queued or
 * undelivered. NULL-safe. Call after the workers have exited (each called
 * http_auth_worker_gone()) and before their eventfds are closed. A helper
 * still checking after HTTP_AUTH_EXIT_WAIT_MS is detached and everything
 * is left as it is, for the process's exit.
 */
void http_auth_free(struct http_auth *a);

/* Results for worker are announced by writing 1 to evfd (an eventfd). Before the workers start. */
void http_auth_set_wake(struct http_auth *a, unsigned worker, int evfd);

/*
 * A job checking pass (pass_len bytes, may hold any byte but NUL: the
 * caller refuses a NUL before) against setting (a crypt(3) hash), in one
 * allocation. NULL when out of memory or when setting is longer than
 * CFG_AUTH_MAX_HASH.
 */
struct http_auth_job *http_auth_job_new(const char *setting, const char *pass, size_t pass_len);

/* Wipe the password and free. NULL-safe. */
void http_auth_job_free(struct http_auth_job *j);

/* Queue j: 0, or -EBUSY when the queue is full (j stays the caller's). */
int http_auth_submit(struct http_auth *a, struct http_auth_job *j);

/* The finished jobs of worker, oldest first, linked by next; NULL when none. Lock-free when none.
 */
struct http_auth_job *http_auth_take(struct http_auth *a, unsigned worker);

/*
 * Worker has exited: its undelivered results are freed now, later ones by
 * the helper that finishes them.
 */
void http_auth_worker_gone(struct http_auth *a, unsigned worker);

/* The cache key for a stored hash and the credentials as sent ("user:pass", decoded). */
void http_auth_key(const struct http_auth *a, const char *setting, size_t setting_len,
                   const char *cred, size_t cred_len, uint64_t key[2]);

/* Is key a good check remembered at now_us (younger than HTTP_AUTH_TTL_US)? */
int http_auth_cache_has(struct http_auth *a, const uint64_t key[2], uint64_t now_us);

/* Remember a good check at now_us (the oldest entry of its set makes room). */
void http_auth_cache_put(struct http_auth *a, const uint64_t key[2], uint64_t now_us);

/* Jobs queued now, and checks run so far by result (for /metrics). */
unsigned http_auth_queued(struct http_auth *a);
uint64_t http_auth_checks(struct http_auth *a, enum http_auth_result r);

#endif
