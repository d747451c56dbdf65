/*
 * End-to-end harness: starts the real ringproxy binary (path in $RINGPROXY)
 * on loopback ports in front of a test origin, and talks to it over real
 * sockets. Every wait is bounded.
 */
#ifndef RINGPROXY_TESTS_HARNESS_H
#define RINGPROXY_TESTS_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

#include "tests/support/origin.h"

struct proxy {
    pid_t pid;
    unsigned port, admin_port;
    char dir[64];      /* config folder (holds proxy.json when given) */
    char out_path[96]; /* the proxy's stdout */
    char err_path[96]; /* the proxy's stderr */
    int out_fd;        /* with h_proxy_start_piped: read end of the proxy's stdout pipe */
};

/* Sleep ms milliseconds; CLOCK_MONOTONIC in milliseconds. */
void h_msleep(int ms);
long h_now_ms(void);

/* A port nobody listens on right now. */
unsigned h_free_port(void);

/*
 * Start ringproxy in front of 127.0.0.1:upstream_port with proxy.json =
 * json (NULL: no file) and extra command-line arguments (NULL-terminated
 * list, may be NULL). Skips the test (cr_skip_test) when the kernel refuses
 * io_uring; fails it when the proxy does not come up.
 */
void h_proxy_start(struct proxy *p, unsigned upstream_port, const char *json,
                   const char *const *args);

/* The same, with stdout a pipe whose read end is p->out_fd (the test decides when to read). */
void h_proxy_start_piped(struct proxy *p, unsigned upstream_port, const char *json,
                         const char *const *args);

/* SIGTERM, wait (bounded), return the exit status (-1 on a signal or timeout). */
int h_proxy_stop(struct proxy *p);

/*
 * $RINGPROXY_ENGINE (auto, io_uring, epoll), when set and not empty, is
 * passed as --engine to every ringproxy the tests start (before their own
 * arguments: a test's own --engine wins). Appends to argv at n; the new n.
 */
int h_engine_args(const char **argv, int n);

/*
 * Run ringproxy ($RINGPROXY) by hand, with args after argv[0] (NULL-terminated),
 * stdout to out_path and stderr to err_path (NULL: /dev/null; the same path
 * for both: one file). Nothing else of the test process is inherited.
 * Returns the pid; the caller waits for it (h_reap).
 */
pid_t h_spawn(const char *const *args, const char *out_path, const char *err_path);

/* Wait up to ms for pid to end: its wait status, or -1 when it did not (then it is killed and
 * reaped). */
int h_reap(pid_t pid, int ms);

/* Read a file into a malloc'd NUL-terminated string (empty when missing). */
char *h_slurp(const char *path);

/* Wait until the proxy's stdout holds n lines (bounded); returns the count. */
int h_wait_log_lines(struct proxy *p, int n);

/* Occurrences of needle in the file at path (e.g. a proxy's err_path) now. */
int h_count_in(const char *path, const char *needle);

/* Wait (bounded: ms) until the file at path holds needle; 1 when it does. */
int h_wait_in(const char *path, const char *needle, int ms);

/* Descriptors pid holds (/proc/<pid>/fd), and used[n] = 1 for each number n < cap (used may be
 * NULL); -1 when it cannot be told. */
int h_fds(pid_t pid, unsigned char *used, size_t cap);
#define h_fd_count(pid) h_fds((pid), NULL, 0)
/* Resident memory of pid (VmRSS), KiB; -1 when it cannot be read. */
long h_rss_kib(pid_t pid);

/* A connected TCP socket to 127.0.0.1:port with 10 s receive/send timeouts; -1 on failure. */
int h_connect(unsigned port);
/* h_connect, with a receive buffer of rcvbuf bytes from the SYN on (a slow reader's window). */
int h_connect_rcvbuf(unsigned port, int rcvbuf);
int h_send(int fd, const char *s, size_t n);
#define h_sends(fd, s) h_send((fd), (s), strlen(s))

struct h_resp {
    int status;
    char head[16384];
    char *body; /* malloc'd */
    size_t body_len;
    int closed; /* the server closed after the response */
    int chunked;
    long content_length; /* -1 absent */
};

/*
 * Read one response (head and body, by its framing; no_body for HEAD).
 * Returns 0, or -1 when the connection ended before a complete response
 * or the wait timed out.
 */
int h_read_response(int fd, struct h_resp *r, int no_body);
void h_resp_free(struct h_resp *r);

/* Read until EOF or timeout_ms; returns bytes read into buf (NUL-terminated). */
size_t h_read_all(int fd, char *buf, size_t cap, int timeout_ms);

/*
 * Append to buf (holding have bytes) until needle (NULL: none) shows, EOF
 * (orderly close or reset: *ret_eof = 1) or timeout_ms; buf stays
 * NUL-terminated. Returns the length.
 */
size_t h_recv_until(int fd, char *buf, size_t cap, size_t have, const char *needle, int timeout_ms,
                    int *ret_eof);

/*
 * Read until EOF (orderly close or reset) or timeout_ms; what the harness's
 * reader had buffered for fd comes first. *ret_eof tells which one ended it.
 */
size_t h_read_to_eof(int fd, char *buf, size_t cap, int timeout_ms, int *ret_eof);

/* Close fd and forget what was buffered for it. */
void h_close(int fd);

/* One request on a fresh connection, response returned; the connection is closed. */
int h_roundtrip(unsigned port, const char *req, struct h_resp *r);

/* One request on a keep-alive connection: the status (negated when the connection closed after it),
 * or -1 when it failed. */
int h_status_on(int fd, const char *req);

/* The value of one sample of the proxy's /metrics ("name" or "name{labels}"); -1 if none. */
long h_metric(unsigned admin_port, const char *sample);

/* Poll one sample until it is want (bounded: ms); returns the last value. */
long h_metric_wait(unsigned admin_port, const char *sample, long want, int ms);

/* Send-Q of the TCP socket from local port lport to remote port rport (/proc/net/tcp); -1 if none.
 */
long h_send_q(unsigned lport, unsigned rport);

/* Value of header name in a response head, copied to out; 0 if found. */
int h_header(const char *head, const char *name, char *out, size_t cap);

/* Bytes made readable for assertion messages (a static buffer: one at a time). */
const char *h_shown(const char *p, size_t n);

/* Replace dir/rel with text at once (written beside it, then renamed), as a deploy does. */
void h_put_file(const char *dir, const char *rel, const char *text);

/*
 * "Authorization: Basic <base64 of cred's n bytes>\r\n" into out (cap
 * bytes; fails the test when it does not fit). Returns out.
 */
const char *h_basic_raw(char *out, size_t cap, const char *cred, size_t n);

/* The same for "user:pass". */
const char *h_basic(char *out, size_t cap, const char *user, const char *pass);

/*
 * A crypt(3) hash of pass made now, the way `mkpasswd -m bcrypt -R cost`
 * makes one (prefix "$2b$"; "$2y$" is htpasswd -B's); malloc'd.
 */
char *h_crypt(const char *prefix, unsigned long cost, const char *pass);

#endif
