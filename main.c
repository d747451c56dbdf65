/*
 * ringproxy: the process, and the one place that wires the modules
 * together. Reads the command line (parse_args) and proxy.json (cfg/), opens
 * the listeners (so a busy port fails start-up with one clear line), starts
 * the resolver (net/) and one worker thread per usable CPU (http/ on core/),
 * then waits for SIGTERM/SIGINT and lets the workers drain.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cfg/cfg.h"
#include "cfg/rules.h"
#include "core/cpus.h"
#include "core/loop.h"
#include "http/proxy.h"
#include "log/access.h"
#include "log/error.h"
#include "net/resolve.h"
#include "net/sock.h"

#define MAX_WORKERS 1024
/* basic_auth: password checks queued at most, good ones remembered (http/auth.h) */
#define AUTH_QUEUE 256
#define AUTH_CACHE 8192

static const char usage[] =
    "usage: ringproxy [options]\n"
    "  --config DIR          read DIR/proxy.json (default /opt/proxy_config); no file = defaults\n"
    "  --listen ADDR:PORT    public listener (default 0.0.0.0:80 and [::]:80)\n"
    "  --upstream HOST:PORT  upstream (default next-hop:80), resolved via /etc/hosts then DNS\n"
    "  --workers N           worker threads, one io_uring each (default: one per usable CPU)\n"
    "  --admin ADDR:PORT     loopback admin listener for /healthz and /metrics (default "
    "127.0.0.1:9000)\n"
    "  --engine E            auto (default: io_uring where allowed, else epoll), io_uring, epoll\n"
    "  --no-access-log       development and benchmarks only: no access log (breaks C5)\n"
    "  --help, --version\n";

struct start {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned ready;
    int err;
    const char *what;
};

struct worker_arg {
    struct http_shared *sh;
    struct http_worker_params p;
    struct start *st;
    pthread_t thread;
};

static void on_ready(void *arg, int err, const char *what)
{
    struct start *st = arg;

    pthread_mutex_lock(&st->mu);
    st->ready++;
    if (err && !st->err) {
        st->err = err;
        st->what = what;
    }
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

static void *worker_main(void *arg)
{
    struct worker_arg *wa = arg;

    (void)http_worker_run(wa->sh, &wa->p, on_ready, wa->st);
    return NULL;
}

static int split_hostport(const char *s, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon = strrchr(s, ':');
    size_t hl;

    if (!colon || !colon[1] || strlen(colon + 1) >= pcap)
        return -EINVAL;
    hl = (size_t)(colon - s);
    if (s[0] == '[' && hl >= 2 && s[hl - 1] == ']') {
        s++;
        hl -= 2;
    }
    if (!hl || hl >= hcap)
        return -EINVAL;
    memcpy(host, s, hl);
    host[hl] = '\0';
    strcpy(port, colon + 1);
    for (const char *q = port; *q; q++)
        if (*q < '0' || *q > '9')
            return -EINVAL;
    return atoi(port) > 0 && atoi(port) < 65536 ? 0 : -EINVAL;
}

static void io_uring_hint(int err, const char *what)
{
    if (err == -ENOSYS || err == -EPERM || err == -EACCES)
        fprintf(stderr,
                "ringproxy: io_uring is not available (%s: %s): the kernel or the container's "
                "seccomp profile blocks io_uring_setup; allow io_uring (docker/podman: "
                "--security-opt seccomp=container/seccomp.json; Kubernetes: a Localhost seccomp "
                "profile, see docs/container.md) and check that /proc/sys/kernel/io_uring_disabled "
                "is 0\n",
                what, strerror(-err));
    else
        fprintf(stderr, "ringproxy: cannot start a worker: %s: %s\n", what, strerror(-err));
}

/*
 * engine auto: io_uring when this process may use it (probed once, before
 * the workers), else epoll with one warn line saying why and how to allow
 * io_uring. Returns the engine's name.
 */
static const char *engine_choose(enum cfg_engine want)
{
    const char *what = "";
    char why[160] = "";
    int r;
    FILE *f;

    if (want == CFG_ENGINE_EPOLL) {
        core_engine_set(CORE_ENGINE_EPOLL);
        return "epoll";
    }
    if (want == CFG_ENGINE_IO_URING)
        return "io_uring"; /* a worker that cannot set its ring up fails start-up (io_uring_hint) */
    r = core_io_uring_probe(&what);
    if (r == 0)
        return "io_uring";
    f = fopen("/proc/sys/kernel/io_uring_disabled", "re");
    if (f) {
        int v = 0;

        if (fscanf(f, "%d", &v) == 1 && v)
            snprintf(why, sizeof(why), "; kernel.io_uring_disabled is %d", v);
        fclose(f);
    }
    log_event(CFG_LL_WARN,
              "io_uring is not available (%s: %s%s): using epoll; allow io_uring (docker/podman: "
              "--security-opt seccomp=container/seccomp.json; Kubernetes: a Localhost seccomp "
              "profile, see docs/container.md; /proc/sys/kernel/io_uring_disabled 0) for better "
              "performance, or set engine to epoll",
              what, strerror(-r), why);
    core_engine_set(CORE_ENGINE_EPOLL);
    return "epoll";
}

/* The command line. */
struct args {
    const char *dir, *listen, *upstream, *admin; /* listen, admin: NULL = default */
    long workers;                                /* -1: from the config */
    int no_access_log;
    int engine; /* enum cfg_engine, -1: from the config */
};

/* Parse argv into a; -1 to go on, else the exit status (after --help, or a usage error). */
static int parse_args(int argc, char **argv, struct args *a)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},   {"listen", required_argument, NULL, 'l'},
        {"upstream", required_argument, NULL, 'u'}, {"workers", required_argument, NULL, 'w'},
        {"admin", required_argument, NULL, 'a'},    {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},        {"no-access-log", no_argument, NULL, 'n'},
        {"engine", required_argument, NULL, 'e'},   {NULL, 0, NULL, 0},
    };
    int opt;

    *a = (struct args){
        .dir = CFG_DEFAULT_DIR, .upstream = "next-hop:80", .workers = -1, .engine = -1};
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            a->dir = optarg;
            break;
        case 'l':
            a->listen = optarg;
            break;
        case 'u':
            a->upstream = optarg;
            break;
        case 'w': {
            char *end;
            a->workers = strtol(optarg, &end, 10);
            if (*end || a->workers < 0 || a->workers > MAX_WORKERS) {
                fprintf(stderr, "ringproxy: --workers: expected an integer from 0 to %d\n",
                        MAX_WORKERS);
                return 2;
            }
            break;
        }
        case 'a':
            a->admin = optarg;
            break;
        case 'n':
            a->no_access_log = 1;
            break;
        case 'e':
            a->engine = cfg_engine_from_name(optarg);
            if (a->engine < 0) {
                fprintf(stderr, "ringproxy: --engine: expected auto, io_uring or epoll, got '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        case 'V':
            puts("ringproxy " RINGPROXY_VERSION);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "ringproxy: unexpected argument '%s'\n%s", argv[optind], usage);
        return 2;
    }
    return -1;
}

/* ---- live reload ---------------------------------------------------------- */

/* Debounce of the config folder's changes: a reload this long after the last one. */
#define RELOAD_QUIET_MS 200
/* ... but no later than this after the first (a folder that never stops changing). */
#define RELOAD_MAX_WAIT_MS 2000
/* Directories under the config folder watched at most (pages/, maps/, ...). */
#define WATCH_MAX_DIRS 64

/* A generation a reload replaced: freed once every worker moved past it and nothing uses it. */
struct retired {
    struct http_gen *g;
    uint64_t next_id; /* the generation that replaced it */
    int main_ref;     /* the main thread still holds its ref */
    struct retired *next;
};

/* What the main thread keeps while ringproxy runs. */
struct run {
    const char *dir;
    struct http_shared *sh;
    struct worker_arg *wa;
    unsigned nworkers;
    struct http_gen *gen; /* the newest */
    struct retired *retired;
    struct http_ratelimit *ratelimit; /* made by the first config that needs it */
    struct http_auth *auth;
    int evfds_ready; /* the workers' eventfds exist: auth's wakes can be set */
    int ifd;         /* inotify on the config folder, or -1 */
    int root_wd;     /* the folder's own watch; -1 while it is gone (watched for again) */
};

static uint64_t mono_ms(void)
{
    struct timespec ts;

    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Make what cfg's rules need and the process has not yet: the rate-limit table, auth's helpers. */
static int run_needs(struct run *m, const struct cfg *cfg)
{
    for (size_t i = 0; cfg->rules && i < cfg->rules->n; i++) {
        unsigned kind = cfg->rules->v[i].kind;

        if (kind == CFG_RK_BASIC_AUTH && !m->auth) {
            /* password checks off the event loops: one helper (two past four workers) */
            m->auth = http_auth_new(m->nworkers, m->nworkers > 4 ? 2 : 1, AUTH_QUEUE, AUTH_CACHE);
            if (!m->auth) {
                log_event(CFG_LL_ERROR, "basic_auth: cannot start its helper thread");
                return -1;
            }
            for (unsigned w = 0; m->evfds_ready && w < m->nworkers; w++)
                http_auth_set_wake(m->auth, w, m->wa[w].p.evfd);
        }
        if ((kind == CFG_RK_RATE_LIMIT || kind == CFG_RK_BASIC_AUTH) && !m->ratelimit) {
            /* one table for every worker: the limits hold per instance */
            m->ratelimit = http_ratelimit_new(cfg->limits.rate_limit_keys, mono_ms() * 1000u);
            if (!m->ratelimit) {
                log_event(CFG_LL_ERROR, "rate_limit: out of memory");
                return -1;
            }
        }
    }
    return 0;
}

/*
 * upstream.receive_buffer_bytes above net.core.rmem_max would be cut down to
 * it and end the kernel's autotuning: the workers leave such sockets to the
 * kernel (http/proxy.c, up_new()), and this says so, at start and at each
 * reload, for a value other than the default (which quietly follows the host).
 */
static void rcvbuf_check(const struct cfg *cfg, const char *when)
{
    uint32_t want = cfg->upstream.receive_buffer_bytes;
    int cap;

    /* cap < 0: no socket to probe with (descriptors exhausted): nothing to say */
    if (!want || want == CFG_UPSTREAM_RCVBUF_DEFAULT || (cap = net_rcvbuf_cap(want)) < 0 ||
        (unsigned)cap >= want)
        return;
    log_event(CFG_LL_WARN,
              "%supstream.receive_buffer_bytes %u is above net.core.rmem_max (%d): upstream "
              "receive buffers are left to the kernel's autotuning (raise net.core.rmem_max to "
              "%u, or set 0)",
              when, want, cap, want);
}

/*
 * Settings that size what the workers allocated at start, or threads and
 * sockets: a reload keeps the running values and says so, once each.
 */
static void keep_fixed(const struct cfg *run, struct cfg *n)
{
/* every line of a reload is seen: reloads are events, not a stream (no rate limit) */
#define FIXED(field, name)                                                                         \
    do {                                                                                           \
        if (n->field != run->field) {                                                              \
            log_event(CFG_LL_WARN,                                                                 \
                      "reload: %s cannot change while ringproxy runs: keeping %llu (restart to "   \
                      "apply %llu)",                                                               \
                      name, (unsigned long long)run->field, (unsigned long long)n->field);         \
            n->field = run->field;                                                                 \
        }                                                                                          \
    } while (0)
    FIXED(workers, "workers");
    FIXED(limits.max_header_bytes, "limits.max_header_bytes");
    FIXED(limits.max_header_line_bytes, "limits.max_header_line_bytes");
    FIXED(limits.max_uri_bytes, "limits.max_uri_bytes");
    FIXED(limits.max_headers, "limits.max_headers");
    FIXED(limits.rate_limit_keys, "limits.rate_limit_keys");
    FIXED(upstream.resolve_interval_ms, "upstream.resolve_interval_ms");
#undef FIXED
    if (n->engine != run->engine) {
        log_event(CFG_LL_WARN,
                  "reload: engine cannot change while ringproxy runs: keeping %s (restart to "
                  "apply %s)",
                  cfg_engine_name(run->engine), cfg_engine_name(n->engine));
        n->engine = run->engine;
    }
    if (strcmp(n->admin.listen, run->admin.listen)) {
        log_event(CFG_LL_WARN,
                  "reload: admin.listen cannot change while ringproxy runs: keeping %s (restart "
                  "to apply %s)",
                  run->admin.listen, n->admin.listen);
        memcpy(n->admin.listen, run->admin.listen, sizeof(n->admin.listen));
    }
    {
        const struct cfg_access_log *a = &run->access_log, *b = &n->access_log;
        int same = a->format == b->format && a->nfields == b->nfields &&
                   !memcmp(a->fields, b->fields, a->nfields * sizeof(a->fields[0])) &&
                   a->nrequest_headers == b->nrequest_headers &&
                   a->nresponse_headers == b->nresponse_headers &&
                   a->buffer_bytes == b->buffer_bytes;

        for (size_t i = 0; same && i < a->nrequest_headers; i++)
            same = !strcmp(a->request_headers[i], b->request_headers[i]);
        for (size_t i = 0; same && i < a->nresponse_headers; i++)
            same = !strcmp(a->response_headers[i], b->response_headers[i]);
        if (!same)
            log_event(CFG_LL_WARN,
                      "reload: access_log cannot change while ringproxy runs: the access log "
                      "keeps its format and fields (restart to apply)");
    }
}

static void wake_workers(const struct run *m)
{
    for (unsigned i = 0; i < m->nworkers; i++) {
        uint64_t one = 1;

        if (write(m->wa[i].p.evfd, &one, sizeof(one)) < 0)
            log_event(CFG_LL_WARN, "waking worker %u: %s", i, strerror(errno));
    }
}

/*
 * Load the config folder again: a valid config that differs becomes the
 * newest generation (new requests run on it; those under way finish on
 * theirs); an invalid one is reported line by line and the running one
 * stays.
 */
static void reload(struct run *m, const char *why)
{
    struct cfg *n = NULL;
    struct cfg_errs errs = {0};
    struct http_gen *g = NULL;
    struct retired *r;
    uint64_t hash;

    if (cfg_load_required(m->dir, &n, &errs) < 0) {
        for (size_t i = 0; i < errs.n; i++)
            log_event(CFG_LL_ERROR, "reload: %s", errs.lines[i]);
        log_event(CFG_LL_ERROR,
                  "reload (%s): invalid configuration in %s/%s: still running generation %llu "
                  "(config %016llx)",
                  why, m->dir, CFG_FILE_NAME, (unsigned long long)m->gen->id,
                  (unsigned long long)m->gen->hash);
        cfg_errs_free(&errs);
        atomic_fetch_add(&m->sh->reloads[HTTP_RELOAD_FAILED], 1);
        return;
    }
    keep_fixed(m->gen->cfg, n);
    hash = http_gen_hash(n);
    if (hash == m->gen->hash) {
        log_event(CFG_LL_INFO, "reload (%s): configuration unchanged (%016llx)", why,
                  (unsigned long long)hash);
        cfg_free(n);
        atomic_fetch_add(&m->sh->reloads[HTTP_RELOAD_UNCHANGED], 1);
        return;
    }
    if (run_needs(m, n) < 0 || !(g = http_gen_new(n, m->gen->id + 1, hash, m->nworkers)) ||
        !(r = calloc(1, sizeof(*r)))) {
        log_event(CFG_LL_ERROR, "reload (%s): out of memory: still running generation %llu", why,
                  (unsigned long long)m->gen->id);
        if (g)
            http_gen_free(g);
        else
            cfg_free(n);
        atomic_fetch_add(&m->sh->reloads[HTTP_RELOAD_FAILED], 1);
        return;
    }
    g->ratelimit = m->ratelimit;
    g->auth = m->auth;
    *r = (struct retired){.g = m->gen, .next_id = g->id, .main_ref = 1, .next = m->retired};
    m->retired = r;
    m->gen = g;
    log_err_init(n->log_level);
    atomic_store_explicit(&m->sh->gen, g, memory_order_release);
    atomic_fetch_add(&m->sh->reloads[HTTP_RELOAD_OK], 1);
    wake_workers(m);
    rcvbuf_check(n, "reload: ");
    log_event(CFG_LL_INFO, "reload (%s): configuration %016llx applied (generation %llu)", why,
              (unsigned long long)hash, (unsigned long long)g->id);
}

/* Free the generations nothing uses any more. */
static void retire_sweep(struct run *m)
{
    uint64_t seen = UINT64_MAX;

    for (unsigned i = 0; i < m->nworkers; i++) {
        uint64_t s = atomic_load_explicit(&m->sh->stats[i].gen, memory_order_acquire);

        if (s < seen)
            seen = s;
    }
    for (struct retired **pp = &m->retired, *r; (r = *pp);) {
        /* every worker runs new requests on a later one: none can take this one again */
        if (r->main_ref && seen >= r->next_id) {
            atomic_fetch_sub(&r->g->refs, 1);
            r->main_ref = 0;
        }
        if (!r->main_ref && atomic_load(&r->g->refs) == 0) {
            *pp = r->next;
            http_gen_free(r->g);
            free(r);
        } else {
            pp = &r->next;
        }
    }
}

/*
 * Watch the config folder and the folders under it (not following
 * symlinks: Kubernetes swaps a "..data" symlink in the folder itself,
 * which is seen there) on fd; folders watched already keep their watch.
 * Called again before each reload, so that a folder made since is watched
 * before the files in it are read. Returns the folder's own watch, or -1
 * when it cannot be watched (it does not exist: the caller tries again).
 */
static int watch_tree(int fd, const char *dir)
{
    const uint32_t mask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE |
                          IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR;
    static char stack[WATCH_MAX_DIRS][PATH_MAX];
    int n = 0, top = 0, root = inotify_add_watch(fd, dir, mask);

    if (root < 0)
        return -1;
    snprintf(stack[top++], PATH_MAX, "%s", dir);
    while (top > 0) {
        char path[PATH_MAX];
        DIR *d;
        struct dirent *de;

        memcpy(path, stack[--top], PATH_MAX);
        if (!(d = opendir(path)))
            continue;
        while ((de = readdir(d))) {
            char sub[PATH_MAX];

            if (de->d_type != DT_DIR || de->d_name[0] == '.')
                continue; /* ".", "..", and Kubernetes' "..2024_..." copies */
            if (snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name) >= (int)sizeof(sub))
                continue;
            if (n >= WATCH_MAX_DIRS) {
                static int said;

                if (!said++)
                    log_event(CFG_LL_WARN,
                              "config folder %s: more than %d folders in it; changes in %s and "
                              "the folders after it are seen at SIGHUP only",
                              dir, WATCH_MAX_DIRS, sub);
                break;
            }
            if (inotify_add_watch(fd, sub, mask) >= 0 && top < WATCH_MAX_DIRS) {
                n++;
                memcpy(stack[top++], sub, PATH_MAX);
            }
        }
        (void)closedir(d);
    }
    return root;
}

/*
 * Until SIGTERM or SIGINT (returned): SIGHUP reloads the config, and so
 * does a change in the config folder, once it has been quiet for
 * RELOAD_QUIET_MS; generations nothing uses any more are freed.
 */
static int main_loop(struct run *m, const sigset_t *sigs)
{
    int sfd = signalfd(-1, sigs, SFD_CLOEXEC);
    uint64_t due = 0, first = 0;

    if (sfd < 0) {
        int sig;

        /* no signalfd: signals only, as sigwait() gives them */
        log_event(CFG_LL_WARN, "signalfd: %s: no reload on folder changes", strerror(errno));
        while (sigwait(sigs, &sig) != 0 || (sig != SIGTERM && sig != SIGINT))
            if (sig == SIGHUP) {
                reload(m, "SIGHUP");
                retire_sweep(m);
            }
        return sig;
    }
    if (m->ifd < 0)
        log_event(CFG_LL_INFO, "config folder %s cannot be watched: reload with SIGHUP", m->dir);
    for (;;) {
        struct pollfd pf[2] = {{.fd = sfd, .events = POLLIN}, {.fd = m->ifd, .events = POLLIN}};
        uint64_t now = mono_ms();
        int timeout = due ? (due > now ? (int)(due - now) : 0) : m->retired ? 250 : -1;

        /* the folder went away (renamed, deleted, replaced): watch for it every second */
        if (m->ifd >= 0 && m->root_wd < 0) {
            if ((m->root_wd = watch_tree(m->ifd, m->dir)) >= 0) {
                log_event(CFG_LL_INFO, "config folder %s: watched again", m->dir);
                due = now; /* whatever it holds now */
                timeout = 0;
            } else if (timeout < 0 || timeout > 1000) {
                timeout = 1000;
            }
        }

        if (poll(pf, m->ifd >= 0 ? 2 : 1, timeout) < 0 && errno != EINTR)
            log_event(CFG_LL_WARN, "poll: %s", strerror(errno));
        if (pf[0].revents & POLLIN) {
            struct signalfd_siginfo si;

            if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                int sig = (int)si.ssi_signo;

                if (sig == SIGTERM || sig == SIGINT) {
                    (void)close(sfd);
                    return sig;
                }
                if (sig == SIGHUP) {
                    if (m->ifd >= 0 && m->root_wd >= 0)
                        (void)watch_tree(m->ifd, m->dir);
                    reload(m, "SIGHUP");
                } else
                    log_event(CFG_LL_INFO,
                              "%s: ignored (SIGHUP reloads, SIGTERM and SIGINT stop ringproxy)",
                              strsignal(sig));
            }
        }
        if (m->ifd >= 0 && (pf[1].revents & POLLIN)) {
            char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
            ssize_t got;

            while ((got = read(m->ifd, buf, sizeof(buf))) > 0)
                for (ssize_t off = 0; off + (ssize_t)sizeof(struct inotify_event) <= got;) {
                    const struct inotify_event *ev = (const struct inotify_event *)(buf + off);

                    if (ev->wd == m->root_wd &&
                        (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF))) {
                        log_event(CFG_LL_WARN,
                                  "config folder %s went away: the running config stays; "
                                  "watching for the folder to come back",
                                  m->dir);
                        (void)inotify_rm_watch(m->ifd, m->root_wd);
                        m->root_wd = -1;
                    }
                    off += (ssize_t)sizeof(*ev) + ev->len;
                }
            now = mono_ms();
            if (!due)
                first = now;
            due = now + RELOAD_QUIET_MS;
            if (due > first + RELOAD_MAX_WAIT_MS)
                due = first + RELOAD_MAX_WAIT_MS;
        }
        if (due && mono_ms() >= due) {
            due = 0;
            /* folders made since are watched before their files are read */
            if (m->ifd >= 0 && m->root_wd >= 0)
                (void)watch_tree(m->ifd, m->dir);
            reload(m, "config folder changed");
        }
        retire_sweep(m);
    }
}

int main(int argc, char **argv)
{
    struct args a;
    const char *dir, *listen_arg, *upstream_arg, *admin_arg, *engine_name;
    char up_host[256], up_port[8], config_desc[600];
    struct sockaddr_storage la[HTTP_MAX_LISTENERS], aa;
    unsigned lalen[HTTP_MAX_LISTENERS], aalen, nla = 0, nworkers;
    struct cfg *cfg = NULL;
    struct cfg_errs errs = {0};
    struct http_shared sh = {0};
    struct worker_arg *wa = NULL;
    struct start st = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, NULL};
    struct stat sb;
    sigset_t sigs;
    struct run m;
    int admin_fd = -1, r, sig, ifd, root_wd;

    r = parse_args(argc, argv, &a);
    if (r >= 0)
        return r;
    dir = a.dir;
    listen_arg = a.listen;
    upstream_arg = a.upstream;
    admin_arg = a.admin;

    {
        struct stat cs;

        snprintf(config_desc, sizeof(config_desc), "%s/%s", dir, CFG_FILE_NAME);
        if (stat(config_desc, &cs) != 0)
            snprintf(config_desc, sizeof(config_desc), "none (no %s/%s: built-in defaults)", dir,
                     CFG_FILE_NAME);
    }
    /* watched before it is read: a change made from now on is seen */
    ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    root_wd = ifd >= 0 ? watch_tree(ifd, dir) : -1;
    r = cfg_load(dir, &cfg, &errs);
    if (r < 0) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.lines[i]);
        fprintf(stderr, "ringproxy: invalid configuration in %s/%s, not starting\n", dir,
                CFG_FILE_NAME);
        cfg_errs_free(&errs);
        return 1;
    }
    log_err_init(cfg->log_level);
    log_err_set_worker(-1);

    if (split_hostport(upstream_arg, up_host, sizeof(up_host), up_port, sizeof(up_port)) < 0) {
        fprintf(stderr, "ringproxy: --upstream: expected HOST:PORT, got '%s'\n", upstream_arg);
        return 2;
    }
    if (listen_arg) {
        if (cfg_parse_hostport(listen_arg, &la[0], &lalen[0]) < 0) {
            fprintf(stderr, "ringproxy: --listen: expected ADDR:PORT or [ADDR]:PORT, got '%s'\n",
                    listen_arg);
            return 2;
        }
        nla = 1;
    } else {
        (void)cfg_parse_hostport("0.0.0.0:80", &la[0], &lalen[0]);
        (void)cfg_parse_hostport("[::]:80", &la[1], &lalen[1]);
        nla = 2;
    }
    if (!admin_arg)
        admin_arg = cfg->admin.listen;
    if (cfg_parse_hostport(admin_arg, &aa, &aalen) < 0) {
        fprintf(stderr, "ringproxy: --admin: expected ADDR:PORT, got '%s'\n", admin_arg);
        return 2;
    }
    if (!cfg_addr_is_loopback(&aa)) {
        fprintf(stderr,
                "ringproxy: --admin: %s is not a loopback address (C2: internal ports "
                "listen on loopback only)\n",
                admin_arg);
        return 2;
    }
    nworkers = a.workers >= 0 ? (unsigned)a.workers : cfg->workers;
    engine_name = engine_choose(a.engine >= 0 ? (enum cfg_engine)a.engine : cfg->engine);
    if (!nworkers)
        nworkers = core_cpus_usable();

    /*
     * Every thread inherits this mask: only the main thread takes signals.
     * TERM and INT drain and stop; HUP, USR1 and USR2, whose default would
     * kill the process mid-request, are taken and only reported.
     */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGUSR1);
    sigaddset(&sigs, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    sh.nworkers = nworkers;
    sh.upstream_host = up_host;
    /* a stream socket (journald) takes writes in part too: as a pipe */
    sh.stdout_is_pipe =
        fstat(STDOUT_FILENO, &sb) == 0 && (S_ISFIFO(sb.st_mode) || S_ISSOCK(sb.st_mode));
    /*
     * Workers write stdout from their own rings at "the current position";
     * on a regular file two of them could write at the same offset. With
     * O_APPEND every write goes to the end.
     */
    if (fstat(STDOUT_FILENO, &sb) == 0 && S_ISREG(sb.st_mode)) {
        int fl = fcntl(STDOUT_FILENO, F_GETFL);
        if (fl >= 0)
            (void)fcntl(STDOUT_FILENO, F_SETFL, fl | O_APPEND);
    }
    sh.log_fmt = log_fmt_new(&cfg->access_log);
    sh.access_log = !a.no_access_log;
    sh.stats = calloc(nworkers, sizeof(*sh.stats));
    sh.resolver = net_resolver_new(up_host, up_port, cfg->upstream.resolve_interval_ms, nworkers);
    wa = calloc(nworkers, sizeof(*wa));
    if (!sh.log_fmt || !sh.stats || !sh.resolver || !wa) {
        fprintf(stderr, "ringproxy: out of memory\n");
        return 1;
    }
    m = (struct run){
        .dir = dir, .sh = &sh, .wa = wa, .nworkers = nworkers, .ifd = ifd, .root_wd = root_wd};
    if (run_needs(&m, cfg) < 0)
        return 1;
    m.gen = http_gen_new(cfg, 1, http_gen_hash(cfg), nworkers);
    if (!m.gen) {
        fprintf(stderr, "ringproxy: out of memory\n");
        return 1;
    }
    m.gen->ratelimit = m.ratelimit;
    m.gen->auth = m.auth;
    atomic_store(&sh.gen, m.gen);

    /*
     * The workers' listeners form a SO_REUSEPORT group, which another
     * process's listeners could join as well (a second ringproxy would take
     * part of the traffic unseen): first claim the address among ringproxy
     * processes (the claim stays open until exit), then make sure nothing
     * listens there. Where the claim cannot be made at all (no unix
     * sockets), the check alone is left.
     */
    for (unsigned k = 0; k < nla; k++) {
        int e = net_listen_lock(&la[k]); /* a descriptor is kept: the claim is held until exit */

        if (e != -EADDRINUSE)
            e = net_listen_free(&la[k], lalen[k]);
        if (e == -EAFNOSUPPORT && !listen_arg && k == 1)
            continue;
        if (e < 0) {
            char as[NET_ADDRSTRLEN];

            net_addr_str(&la[k], as, sizeof(as));
            fprintf(stderr, "ringproxy: cannot listen on %s: %s\n", as, strerror(-e));
            return 1;
        }
    }
    for (unsigned i = 0; i < nworkers; i++) {
        wa[i].sh = &sh;
        wa[i].st = &st;
        wa[i].p.id = (int)i;
        wa[i].p.admin_fd = -1;
        for (unsigned k = 0; k < HTTP_MAX_LISTENERS; k++)
            wa[i].p.lfd[k] = -1;
        for (unsigned k = 0; k < nla; k++) {
            char as[NET_ADDRSTRLEN];
            int fd = net_listen(&la[k], lalen[k], 4096, 1);

            if (fd == -EAFNOSUPPORT && !listen_arg && k == 1)
                continue; /* no IPv6 on this host: 0.0.0.0:80 alone */
            if (fd < 0) {
                net_addr_str(&la[k], as, sizeof(as));
                fprintf(stderr, "ringproxy: cannot listen on %s: %s\n", as, strerror(-fd));
                return 1;
            }
            wa[i].p.lfd[k] = fd;
        }
        wa[i].p.evfd = eventfd(0, EFD_CLOEXEC);
        if (wa[i].p.evfd < 0) {
            fprintf(stderr, "ringproxy: eventfd: %s\n", strerror(errno));
            return 1;
        }
        if (m.auth)
            http_auth_set_wake(m.auth, i, wa[i].p.evfd);
    }
    m.evfds_ready = 1;
    admin_fd = net_listen(&aa, aalen, 64, 0); /* one listener: no group to join */
    if (admin_fd < 0) {
        fprintf(stderr, "ringproxy: cannot listen on admin address %s: %s\n", admin_arg,
                strerror(-admin_fd));
        return 1;
    }
    wa[0].p.admin_fd = admin_fd;

    if (net_resolver_start(sh.resolver) < 0) {
        fprintf(stderr, "ringproxy: cannot start the resolver thread\n");
        return 1;
    }

    for (unsigned i = 0; i < nworkers; i++) {
        r = pthread_create(&wa[i].thread, NULL, worker_main, &wa[i]);
        if (r) {
            fprintf(stderr, "ringproxy: pthread_create: %s\n", strerror(r));
            return 1;
        }
    }
    pthread_mutex_lock(&st.mu);
    while (st.ready < nworkers)
        pthread_cond_wait(&st.cv, &st.mu);
    pthread_mutex_unlock(&st.mu);
    if (st.err) {
        io_uring_hint(st.err, st.what);
        return 1;
    }
    log_info("ringproxy %s, engine %s: %u worker%s, listening on %s, upstream %s, admin %s, "
             "config %s",
             RINGPROXY_VERSION, engine_name, nworkers, nworkers == 1 ? "" : "s",
             listen_arg ? listen_arg : "0.0.0.0:80 [::]:80", upstream_arg, admin_arg, config_desc);
    rcvbuf_check(m.gen->cfg, "");

    sig = main_loop(&m, &sigs);
    log_info("%s: draining (grace %u ms)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
             m.gen->cfg->shutdown_grace_ms);
    atomic_store(&sh.draining, 1);
    atomic_store(&sh.stop, 1);
    for (unsigned i = 0; i < nworkers; i++) {
        uint64_t one = 1;
        if (write(wa[i].p.evfd, &one, sizeof(one)) < 0)
            log_warn("waking worker %u: %s", i, strerror(errno));
    }
    for (unsigned i = 0; i < nworkers; i++)
        (void)pthread_join(wa[i].thread, NULL);
    /* its helpers may still write to the workers' eventfds */
    http_auth_free(m.auth);
    if (m.ifd >= 0)
        (void)close(m.ifd);
    for (unsigned i = 0; i < nworkers; i++) {
        for (unsigned k = 0; k < HTTP_MAX_LISTENERS; k++)
            if (wa[i].p.lfd[k] >= 0)
                (void)close(wa[i].p.lfd[k]);
        (void)close(wa[i].p.evfd);
    }
    (void)close(admin_fd);
    net_resolver_free(sh.resolver);
    log_fmt_free(sh.log_fmt);
    free(sh.stats);
    while (m.retired) {
        struct retired *old = m.retired;

        m.retired = old->next;
        http_gen_free(old->g);
        free(old);
    }
    http_gen_free(m.gen); /* and cfg with it */
    http_ratelimit_free(m.ratelimit);
    free(wa);
    log_info("stopped");
    return 0;
}
