/*
 * cfg: the proxy.json schema, its loader and its validator (C8, C9).
 *
 * One library, linked into both `ringproxy` and `ringproxy-validate`, so the
 * proxy and the checker accept and reject exactly the same files. Depends on
 * jansson and libc only; never logs, never writes a file, never touches the
 * network. Problems are returned as "path: message" lines in struct cfg_errs.
 */
#ifndef RINGPROXY_CFG_CFG_H
#define RINGPROXY_CFG_CFG_H

#include <stddef.h>
#include <stdint.h>

#define CFG_FILE_NAME "proxy.json"
#define CFG_DEFAULT_DIR "/opt/proxy_config"

/* Larger files are rejected: a config is a few KiB; this bounds time and memory. */
#define CFG_MAX_FILE_BYTES (1024 * 1024)
/* Most entries in access_log.request_headers and in access_log.response_headers. */
#define CFG_MAX_LOG_HEADERS 32
/* Longest header name accepted in those lists. */
#define CFG_MAX_HEADER_NAME 64

enum cfg_log_format {
    CFG_LOG_JSON = 0,
    CFG_LOG_LTSV,
    /* must stay last */
    CFG_LOG_FORMAT_COUNT
};

enum cfg_log_level {
    CFG_LL_ERROR = 0,
    CFG_LL_WARN,
    CFG_LL_INFO,
    CFG_LL_DEBUG,
    /* must stay last */
    CFG_LL_COUNT
};

/* The I/O engine (docs/design.md, "Engines"). */
enum cfg_engine {
    CFG_ENGINE_AUTO = 0, /* io_uring where the kernel and seccomp allow it, else epoll */
    CFG_ENGINE_IO_URING,
    CFG_ENGINE_EPOLL,
    /* must stay last */
    CFG_ENGINE_COUNT
};

/* Access-log fields a user may list in access_log.fields (order = output order). */
enum cfg_field {
    CFG_F_TIME = 0,
    CFG_F_TIME_TAKEN_MS,
    CFG_F_REQUEST,
    CFG_F_METHOD,
    CFG_F_PATH,
    CFG_F_STATUS,
    CFG_F_BYTES,
    CFG_F_RESPONSE_BODY_BYTES,
    CFG_F_CONTENT_TYPE,
    CFG_F_HOSTNAME,
    CFG_F_REFERRER,
    CFG_F_USERAGENT,
    CFG_F_CLIENT_IP,
    CFG_F_HTTP_X_FORWARDED_PROTO,
    CFG_F_UPSTREAM_ADDR,
    CFG_F_UPSTREAM_STATUS,
    CFG_F_SECTION_IO_ID,
    CFG_F_SECTION_IO_TAG,
    CFG_F_REQUEST_BYTES,  /* bytes received from the client */
    CFG_F_UPSTREAM_BYTES, /* bytes received from the upstream */
    CFG_F_UPSTREAM_CONNECT_MS,
    CFG_F_UPSTREAM_HEADER_MS,
    CFG_F_UPSTREAM_RESPONSE_MS,
    CFG_F_UPSTREAM_REUSED,
    CFG_F_UPSTREAM_ATTEMPTS,
    CFG_F_TERMINATION,
    CFG_F_RULE, /* the edge rule that answered or last changed the request */
    /* must stay last */
    CFG_F_COUNT
};

/* Name of a field as it appears in JSON keys and LTSV labels. */
const char *cfg_field_name(enum cfg_field f);

/* The field called name (len bytes, case-sensitive), or -ENOENT. */
int cfg_field_from_name(const char *name, size_t len);

/* "error", "warn", "info", "debug"; "?" when out of range. */
const char *cfg_log_level_name(enum cfg_log_level l);

/* "auto", "io_uring", "epoll"; "?" when out of range. */
const char *cfg_engine_name(enum cfg_engine e);

/* The engine called name, or -ENOENT. */
int cfg_engine_from_name(const char *name);

/* "json", "ltsv"; "?" when out of range. */
const char *cfg_log_format_name(enum cfg_log_format f);

/*
 * Log field name of an extra header: "http_" (request) or "sent_http_"
 * (response) followed by the header name in lower case with '-' as '_'
 * ("X-Request-Id" -> "http_x_request_id"). Writes it NUL-terminated into buf.
 * Returns its length, or -ENOSPC when cap is too small.
 */
int cfg_header_field_name(const char *header, int response, char *buf, size_t cap);

/* upstream.receive_buffer_bytes when the file does not set it */
#define CFG_UPSTREAM_RCVBUF_DEFAULT 1048576

struct cfg_upstream {
    uint32_t connect_timeout_ms;  /* 5000, -> 502 */
    uint32_t response_timeout_ms; /* 60000, head and between reads, -> 504 */
    uint32_t resolve_interval_ms; /* 5000 */
    uint32_t pool_idle_timeout_ms;
    uint32_t pool_max_idle;              /* idle upstream connections kept per worker */
    uint32_t receive_buffer_bytes;       /* SO_RCVBUF of upstream sockets; 0 = kernel autotuning */
    uint64_t receive_buffer_total_bytes; /* their kernel memory, all together, at most */
};

struct cfg_client {
    uint32_t header_timeout_ms; /* 10000, hard deadline for a request head -> 408 */
    uint32_t idle_timeout_ms;   /* 60000, keep-alive idle close */
    uint32_t max_connections;   /* per worker; 0 = unlimited */
};

struct cfg_limits {
    uint32_t max_header_bytes;      /* whole request head */
    uint32_t max_header_line_bytes; /* one header line -> 431 */
    uint32_t max_uri_bytes;         /* request target -> 414 */
    uint32_t max_headers;           /* header count -> 431 */
    uint64_t max_body_bytes;        /* 0 = unlimited -> 413 */
    uint32_t rate_limit_keys;       /* slots of the shared rate-limit table */
};

struct cfg_access_log {
    enum cfg_log_format format;
    enum cfg_field fields[CFG_F_COUNT]; /* chosen fields, in output order */
    size_t nfields;
    /*
     * Header names as written in proxy.json: RFC 9110 tokens, at most
     * CFG_MAX_LOG_HEADERS of each, no two with the same field name (see
     * cfg_header_field_name()). Match them case-insensitively.
     */
    char **request_headers; /* extra fields "http_<name>" */
    size_t nrequest_headers;
    char **response_headers; /* extra fields "sent_http_<name>" */
    size_t nresponse_headers;
    uint32_t buffer_bytes; /* pending stdout bytes per worker before dropping */
};

struct cfg_admin {
    char listen[64]; /* "ADDR:PORT", loopback only (C2) */
};

struct cfg_rules; /* cfg/rules.h */

/* The whole configuration; immutable once loaded, shared read-only. */
struct cfg {
    uint32_t workers; /* 0 = one per usable CPU (core/cpus.h) */
    uint32_t shutdown_grace_ms;
    enum cfg_log_level log_level;
    enum cfg_engine engine;
    struct cfg_upstream upstream;
    struct cfg_client client;
    struct cfg_limits limits;
    struct cfg_access_log access_log;
    struct cfg_admin admin;
    /*
     * Edge rules, compiled (cfg/rules.h): NULL when the document has none of
     * `lists`, `rules`, `error_pages`. rules_json keeps those keys as
     * written (a JSON object's text) so that cfg_dump() gives them back;
     * NULL when none. Both are owned by the config.
     */
    struct cfg_rules *rules;
    char *rules_json;
};

/* Problems found while loading: "path: message" lines, in file order. */
struct cfg_errs {
    char **lines;
    size_t n;
};

void cfg_errs_free(struct cfg_errs *e);

/*
 * Load DIR/proxy.json. A missing file yields the built-in defaults and 0.
 * Returns 0 and a new config in *ret_cfg, or -EINVAL with every problem in
 * *ret_errs (caller frees it with cfg_errs_free), or another -errno with one
 * line in *ret_errs. *ret_cfg is untouched on failure.
 *
 * dir NULL means CFG_DEFAULT_DIR. ret_cfg may be NULL to only validate;
 * ret_errs may be NULL. *ret_errs is always initialised, so it can always be
 * freed; on -ENOMEM it may hold no line. Opens the file read-only, follows
 * symbolic links, refuses anything but a regular file of at most
 * CFG_MAX_FILE_BYTES. File-system problems name the full path; problems in
 * the content name CFG_FILE_NAME ("proxy.json:3:7: ...") or a JSON pointer.
 */
int cfg_load(const char *dir, struct cfg **ret_cfg, struct cfg_errs *ret_errs);

/*
 * cfg_load() for a reload: a missing DIR/proxy.json (or DIR) is a problem
 * (-ENOENT, one line), never the built-in defaults, which have no rules: a
 * deploy caught between removing the file and writing its successor must
 * not turn every rule off.
 */
int cfg_load_required(const char *dir, struct cfg **ret_cfg, struct cfg_errs *ret_errs);

/*
 * Same as cfg_load for an in-memory document; name is used in syntax errors.
 * The document has no folder: a file named by the edge rules (respond.file,
 * error_pages, redirect_map.file) is a problem saying so.
 */
int cfg_load_buf(const char *buf, size_t len, const char *name, struct cfg **ret_cfg,
                 struct cfg_errs *ret_errs);

/*
 * Same as cfg_load_buf, with the files the edge rules name read from the
 * folder dir (NULL: none, as cfg_load_buf). cfg_load(dir) uses it.
 */
int cfg_load_buf_at(const char *buf, size_t len, const char *name, const char *dir,
                    struct cfg **ret_cfg, struct cfg_errs *ret_errs);

/*
 * Check a config built or changed in memory (command-line flags override
 * proxy.json) against the same rules as cfg_load: ranges, names, loopback
 * admin address (C2), rules between keys. Returns 0, -EINVAL with every
 * problem in *ret_errs (JSON pointers name the keys), or -ENOMEM.
 * *ret_errs is always initialised; ret_errs may be NULL. The edge rules are
 * not checked again (flags cannot change them, and their files are not
 * read again): they were when the config was loaded.
 */
int cfg_validate(const struct cfg *c, struct cfg_errs *ret_errs);

/*
 * The config as an indented proxy.json document holding every key (a loaded
 * file gives it back with its defaults filled in). NULL on OOM; free() it.
 */
char *cfg_dump(const struct cfg *c);

/* A new config holding the built-in defaults; NULL on OOM. */
struct cfg *cfg_new_default(void);

/* NULL-safe. */
void cfg_free(struct cfg *c);

/*
 * Parse "ADDR:PORT" or "[V6]:PORT" into a sockaddr_storage-compatible buffer.
 * Returns 0, or -EINVAL. Used for --listen and --admin too.
 *
 * ADDR is numeric only (dotted-quad IPv4, or IPv6 in brackets, without a
 * zone): no name is resolved, so "localhost:9000" is -EINVAL. PORT is 1 to
 * 65535 in decimal without sign or leading zero. *ret_len receives
 * sizeof(struct sockaddr_in) or sizeof(struct sockaddr_in6). Out-params are
 * untouched on failure.
 */
struct sockaddr_storage;
int cfg_parse_hostport(const char *s, struct sockaddr_storage *ret_sa, unsigned *ret_len);

/*
 * True when the address is 127.0.0.0/8 or ::1 (C2). IPv4-mapped IPv6
 * (::ffff:127.0.0.1) is not: the documented rule stays this simple.
 */
int cfg_addr_is_loopback(const struct sockaddr_storage *sa);

#endif
