/*
 * ringproxy-pgo-train: the training load of the profile-guided build
 * (bench/pgo-build.sh). It starts the test origin in-process, runs the
 * ringproxy binary it is given in front of it three times (one worker,
 * access log on into a pipe that a thread drains, as the bench drains it;
 * first on built-in defaults, then with edge rules that edit every exchange
 * and answer none of the mix, then on built-in defaults on the epoll engine,
 * whose code would otherwise be compiled as never run), and each time sends a fixed mix of
 * keep-alive requests from 32 client threads: static-file GETs of 13 B to 1 MiB with nginx's
 * response head, curl-like and browser-like request heads, HEAD, a POST with a body, chunked
 * responses, 304s and 404-like answers. Every response is checked; any
 * failure exits 1, so a build that requires training fails loudly. Then it
 * stops the proxy with SIGTERM, which makes it exit normally and write its
 * profile. Bounded: a fixed number of requests, and a deadline.
 *
 * usage: ringproxy-pgo-train RINGPROXY [ROUNDS]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/origin.h"

/* Enough concurrent connections that the loop's batching paths are the trained ones. */
#define CLIENTS 32
#define DEADLINE_S 120
#define IO_TIMEOUT_MS 10000

struct req {
    const char *method;
    const char *path;
    unsigned weight; /* requests per round per client */
    unsigned sent;   /* request body bytes (Content-Length), 0: none */
    long body;       /* expected response body bytes */
    int status;
    int no_body; /* HEAD, 304 */
};

static const char curl_tail[] = "User-Agent: curl/7.88.1\r\nAccept: */*\r\n";
static const char browser_tail[] =
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    "Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate\r\n"
    "Referer: http://www.example.com/index.html\r\nX-Forwarded-Proto: https\r\n"
    "Cookie: session=4f1c2a9e77; theme=dark\r\n";

/* The mix, per round and client; the bench's sizes carry most of the weight. */
static const struct req mix[] = {
    {"GET", "/asset/13", 60, 0, 13, 200, 0},       {"GET", "/asset/4096", 60, 0, 4096, 200, 0},
    {"GET", "/asset/65536", 12, 0, 65536, 200, 0}, {"GET", "/asset/1048576", 1, 0, 1048576, 200, 0},
    {"HEAD", "/asset/4096", 4, 0, 0, 200, 1},      {"GET", "/chunked/20000", 4, 0, 20000, 200, 0},
    {"GET", "/status/304", 4, 0, 0, 304, 1},       {"GET", "/status/404", 4, 0, 0, 404, 0},
    {"POST", "/echo", 4, 1500, 1500, 200, 0},
};

/* What the POSTs send (all the same byte). */
static char req_body[4096];

static unsigned proxy_port;
static atomic_int proxy_pid; /* the watchdog reads it */
static unsigned rounds = 10;
static atomic_uint done_reqs;
static atomic_int failed;
static const char *argv0 = "ringproxy-pgo-train";

static void fail(const char *what, const char *detail)
{
    if (!atomic_exchange(&failed, 1))
        fprintf(stderr, "%s: %s%s%s\n", argv0, what, detail ? ": " : "", detail ? detail : "");
}

static unsigned free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    unsigned port = 0;

    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static int dial(unsigned port)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return -1;
    }
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

/* A client's connection and its receive buffer. */
struct cli {
    int fd;
    size_t len;
    char buf[65536];
};

static int wait_io(int fd, short ev)
{
    struct pollfd p = {.fd = fd, .events = ev};

    return poll(&p, 1, IO_TIMEOUT_MS) == 1 ? 0 : -1;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Read more bytes into c->buf; -1 on EOF, error or timeout. */
static int fill(struct cli *c)
{
    ssize_t r;

    if (c->len == sizeof(c->buf) || wait_io(c->fd, POLLIN) < 0)
        return -1;
    r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    if (r <= 0)
        return -1;
    c->len += (size_t)r;
    return 0;
}

static void consume(struct cli *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* Drop n body bytes, reading as needed. */
static int skip(struct cli *c, unsigned long n)
{
    while (n) {
        size_t k;

        if (!c->len && fill(c) < 0)
            return -1;
        k = c->len < n ? c->len : n;
        consume(c, k);
        n -= k;
    }
    return 0;
}

/* The body of a chunked response; returns its data bytes or -1. */
static long read_chunked(struct cli *c)
{
    long total = 0;

    for (;;) {
        char *eol, *end;
        unsigned long sz;

        while (!(eol = memmem(c->buf, c->len, "\r\n", 2)))
            if (fill(c) < 0)
                return -1;
        sz = strtoul(c->buf, &end, 16);
        if (end == c->buf)
            return -1;
        consume(c, (size_t)(eol + 2 - c->buf));
        if (!sz)
            break;
        if (skip(c, sz) < 0)
            return -1;
        while (c->len < 2)
            if (fill(c) < 0)
                return -1;
        if (memcmp(c->buf, "\r\n", 2))
            return -1;
        consume(c, 2);
        total += (long)sz;
    }
    while (c->len < 2) /* no trailers from the test origin */
        if (fill(c) < 0)
            return -1;
    consume(c, 2);
    return total;
}

/* One request and its response on c; 0 when the answer is what r expects. */
static int exchange(struct cli *c, const struct req *r, int browser)
{
    char head[2048], *end, *cl;
    int n, status;
    long body = -1;
    size_t hl;

    n = snprintf(head, sizeof(head), "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n%s", r->method,
                 r->path, proxy_port, browser ? browser_tail : curl_tail);
    if (r->sent)
        n += snprintf(head + n, sizeof(head) - (size_t)n,
                      "Content-Type: application/octet-stream\r\nContent-Length: %u\r\n", r->sent);
    n += snprintf(head + n, sizeof(head) - (size_t)n, "\r\n");
    if (send_all(c->fd, head, (size_t)n) < 0 || send_all(c->fd, req_body, r->sent) < 0)
        return fail("send", r->path), -1;
    while (!(end = memmem(c->buf, c->len, "\r\n\r\n", 4)))
        if (fill(c) < 0)
            return fail("no response head", r->path), -1;
    hl = (size_t)(end + 4 - c->buf);
    end[2] = '\0';
    if (sscanf(c->buf, "HTTP/1.1 %d ", &status) != 1 || status != r->status)
        return fail("unexpected status line", c->buf), -1;
    if ((cl = strcasestr(c->buf, "\r\nContent-Length:")))
        body = strtol(cl + 17, NULL, 10);
    if (r->no_body) {
        consume(c, hl);
        return 0;
    }
    if (body < 0 && strcasestr(c->buf, "\r\nTransfer-Encoding: chunked")) {
        consume(c, hl);
        body = read_chunked(c);
    } else {
        consume(c, hl);
        if (body < 0 || skip(c, (unsigned long)body) < 0)
            return fail("bad response body", r->path), -1;
    }
    if (body != r->body)
        return fail("wrong body length", r->path), -1;
    return 0;
}

/*
 * A client's connection to the running proxy: a connect that fails for a
 * moment (the machine's ephemeral ports or descriptors taken by another
 * test's flood, beside this one in the test suite) is tried again, for 5 s.
 */
static int dial_client(void)
{
    int fd = -1;

    for (int i = 0; i < 500 && (fd = dial(proxy_port)) < 0 && !atomic_load(&failed); i++)
        usleep(10000);
    return fd;
}

static void *client(void *arg)
{
    struct cli *c = calloc(1, sizeof(*c));
    unsigned id = (unsigned)(uintptr_t)arg;

    if (!c || (c->fd = dial_client()) < 0)
        return fail("cannot connect to the proxy", strerror(errno)), free(c), NULL;
    for (unsigned round = 0; round < rounds && !atomic_load(&failed); round++)
        for (size_t i = 0; i < sizeof(mix) / sizeof(mix[0]); i++)
            for (unsigned k = 0; k < mix[i].weight; k++) {
                if (exchange(c, &mix[i], (id + k) % 4 == 0) < 0)
                    goto out;
                atomic_fetch_add(&done_reqs, 1);
            }
out:
    close(c->fd);
    free(c);
    return NULL;
}

static void *drain(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char b[65536];

    while (read(fd, b, sizeof(b)) > 0)
        ;
    return NULL;
}

static void *watchdog(void *arg)
{
    (void)arg;
    sleep(DEADLINE_S);
    fprintf(stderr, "%s: no end after %d s\n", argv0, DEADLINE_S);
    if (proxy_pid > 0)
        kill(proxy_pid, SIGKILL);
    _exit(1);
}

/*
 * Edge rules as a site would have them (docs/rules.md), none of which
 * answers the mix: security headers and removals on every response, a
 * request header, host, path, method, header and client_ip matchers, a
 * rewrite that does not apply. Written to a temporary config folder.
 */
static const char rules_json[] =
    "{\"lists\": {\"office\": [\"203.0.113.0/24\", \"2001:db8::/32\"]},\n"
    " \"rules\": [\n"
    "  {\"name\": \"hsts\", \"response_headers\": {\"set\": {\"Strict-Transport-Security\": "
    "\"max-age=31536000\", \"X-Content-Type-Options\": \"nosniff\"}, \"remove\": [\"Server\", "
    "\"X-Powered-By\"]}},\n"
    "  {\"name\": \"https\", \"match\": {\"scheme\": [\"http\"], \"host\": [\"www.example.com\"]},"
    " \"redirect\": {\"to\": \"https://{host}{uri}\"}},\n"
    "  {\"name\": \"canonical\", \"match\": {\"host\": [\"example.com\", \"*.example.net\"]},"
    " \"redirect\": {\"to\": \"https://www.example.com{uri}\", \"status\": 308}},\n"
    "  {\"name\": \"admin\", \"match\": {\"path\": [\"/admin\", \"/admin/*\"], \"not\": "
    "{\"client_ip\": [\"@office\"]}}, \"deny\": {}},\n"
    "  {\"name\": \"bots\", \"match\": {\"header\": {\"User-Agent\": [\"BadBot/1.0\"]}},"
    " \"deny\": {\"status\": 403}},\n"
    "  {\"name\": \"shop\", \"match\": {\"path\": [\"/shop/*\"], \"method\": [\"GET\", \"HEAD\"]},"
    " \"respond\": {\"status\": 503, \"body\": \"back soon\\n\"}},\n"
    "  {\"name\": \"blog\", \"match\": {\"path\": [\"/blog/*\"]}, \"rewrite\": {\"strip_prefix\": "
    "\"/blog\"}},\n"
    "  {\"name\": \"site\", \"request_headers\": {\"set\": {\"X-Site\": \"main\"}, \"remove\": "
    "[\"X-Debug\"]}}\n"
    " ]}\n";

static char rules_path[64];

static void rules_cleanup(void)
{
    char f[96];

    snprintf(f, sizeof(f), "%s/proxy.json", rules_path);
    unlink(f);
    rmdir(rules_path);
}

static const char *rules_dir(void)
{
    char f[96];
    FILE *fp;

    snprintf(rules_path, sizeof(rules_path), "/tmp/ringproxy-pgo.XXXXXX");
    if (!mkdtemp(rules_path))
        return NULL;
    atexit(rules_cleanup);
    snprintf(f, sizeof(f), "%s/proxy.json", rules_path);
    if (!(fp = fopen(f, "w")) || fputs(rules_json, fp) < 0 || fclose(fp) != 0)
        return NULL;
    return rules_path;
}

/* One proxy on config folder dir, the mix through it, then SIGTERM. 0, or -1 (said). */
static int run_proxy(const char *bin, const char *dir, const char *engine, const char *listen,
                     const char *upstream, const char *admin)
{
    pthread_t th[CLIENTS], dr;
    int logp[2], st, up;

    if (pipe2(logp, O_CLOEXEC) < 0)
        return fail("pipe", NULL), -1;
    proxy_pid = fork();
    if (proxy_pid < 0)
        return fail("fork", NULL), -1;
    if (proxy_pid == 0) {
        dup2(logp[1], STDOUT_FILENO);
        execl(bin, bin, "--listen", listen, "--upstream", upstream, "--admin", admin, "--workers",
              "1", "--config", dir, "--engine", engine, (char *)NULL);
        perror(bin);
        _exit(127);
    }
    close(logp[1]);
    pthread_create(&dr, NULL, drain, (void *)(intptr_t)logp[0]);

    /* Ready when it accepts; a proxy that cannot start (no io_uring) exits first. */
    for (int i = 0;; i++) {
        if ((up = dial(proxy_port)) >= 0)
            break;
        if (waitpid(proxy_pid, &st, WNOHANG) == proxy_pid || i == 500) {
            fail("the proxy did not start", bin);
            kill(proxy_pid, SIGKILL);
            pthread_join(dr, NULL);
            return -1;
        }
        usleep(10000);
    }
    close(up);

    for (unsigned i = 0; i < CLIENTS; i++)
        pthread_create(&th[i], NULL, client, (void *)(uintptr_t)i);
    for (unsigned i = 0; i < CLIENTS; i++)
        pthread_join(th[i], NULL);

    kill(proxy_pid, SIGTERM);
    if (waitpid(proxy_pid, &st, 0) != proxy_pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail("the proxy did not exit cleanly", NULL);
    proxy_pid = 0;
    pthread_join(dr, NULL);
    return 0;
}

int main(int argc, char **argv)
{
    char listen[32], upstream[32], admin[32];
    pthread_t wd;
    struct origin *o;

    if (argc < 2 || argc > 3 || argv[1][0] == '-') {
        fprintf(stderr, "usage: %s RINGPROXY [ROUNDS]\n", argv0);
        return 2;
    }
    if (argc == 3)
        rounds = (unsigned)strtoul(argv[2], NULL, 10);
    signal(SIGPIPE, SIG_IGN);
    memset(req_body, 'p', sizeof(req_body));
    for (size_t i = 0; i < sizeof(mix) / sizeof(mix[0]); i++)
        if (mix[i].sent > sizeof(req_body))
            return fail("a request body larger than req_body", mix[i].path), 2;
    pthread_create(&wd, NULL, watchdog, NULL);

    if (!(o = origin_start("127.0.0.1", 0)))
        return fail("cannot start the origin", NULL), 1;
    proxy_port = free_port();
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", proxy_port);
    snprintf(upstream, sizeof(upstream), "127.0.0.1:%u", origin_port(o));
    snprintf(admin, sizeof(admin), "127.0.0.1:%u", free_port());
    if (!proxy_port)
        return fail("no port", NULL), 1;

    /*
     * Three times: on built-in defaults, with edge rules on every request
     * (their code is hot too), and on the epoll engine (where io_uring is
     * refused, docs/design.md "Engines"). The first two on the engine auto
     * picks: io_uring, or epoll too where io_uring is refused.
     */
    for (int pass = 0; pass < 3 && !atomic_load(&failed); pass++) {
        const char *dir = pass == 1 ? rules_dir() : "/nonexistent";

        if (!dir)
            return fail("cannot write the rules config", NULL), 1;
        if (run_proxy(argv[1], dir, pass == 2 ? "epoll" : "auto", listen, upstream, admin) < 0)
            return 1;
    }
    origin_stop(o);
    if (atomic_load(&failed))
        return 1;
    fprintf(stderr, "%s: %u requests through %s\n", argv0, atomic_load(&done_reqs), argv[1]);
    return 0;
}
