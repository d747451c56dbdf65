/*
 * ringproxy-validate, installed as /opt/section/validate.sh (C8): checks
 * DIR/proxy.json with the proxy's own cfg library, like `nginx -t`, with
 * the files its edge rules name (redirect maps, pages) read from DIR.
 *
 * Exit 0 and print nothing when the file is valid or absent; exit 1 with
 * one "path: message" line per problem on stderr; exit 2 on a usage error.
 * stdout is used by --help and --version only. Never writes a file, never
 * uses the network.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cfg/cfg.h"

#ifndef RINGPROXY_VERSION
#define RINGPROXY_VERSION "unknown"
#endif

enum check_exit { CHECK_EXIT_OK = 0, CHECK_EXIT_INVALID = 1, CHECK_EXIT_USAGE = 2 };

/* The name we were run as: the platform runs a copy or link named validate.sh. */
static const char *check_prog_name(const char *argv0)
{
    const char *slash;

    if (!argv0 || !*argv0)
        return "ringproxy-validate";
    slash = strrchr(argv0, '/');
    return slash && slash[1] ? slash + 1 : argv0;
}

static int check_help(const char *prog)
{
    printf("usage: %s [DIR]\n"
           "\n"
           "Check DIR/%s (DIR defaults to %s) as ringproxy would read it,\n"
           "with the files its edge rules name (redirect maps, pages) read from DIR.\n"
           "Exit 0 and print nothing when the file is valid, or absent (built-in defaults).\n"
           "Otherwise exit 1 and print one line per problem on stderr:\n"
           "  /json/pointer: message          a problem with a value or key\n"
           "  %s:LINE:COLUMN: message  a syntax error\n"
           "Exit 2 on a usage error.\n"
           "\n"
           "  -h, --help     show this help\n"
           "  -V, --version  show the version\n",
           prog, CFG_FILE_NAME, CFG_DEFAULT_DIR, CFG_FILE_NAME);
    return fflush(stdout) == 0 && !ferror(stdout) ? CHECK_EXIT_OK : CHECK_EXIT_INVALID;
}

static int check_version(const char *prog)
{
    printf("%s (ringproxy) %s\n", prog, RINGPROXY_VERSION);
    return fflush(stdout) == 0 && !ferror(stdout) ? CHECK_EXIT_OK : CHECK_EXIT_INVALID;
}

static int check_usage(const char *prog, const char *why, const char *arg)
{
    fprintf(stderr, "%s: %s%s%s\nusage: %s [DIR]; try %s --help\n", prog, why, arg ? ": " : "",
            arg ? arg : "", prog, prog);
    return CHECK_EXIT_USAGE;
}

int main(int argc, char **argv)
{
    const char *prog = check_prog_name(argc > 0 ? argv[0] : NULL);
    const char *dir = CFG_DEFAULT_DIR;
    struct cfg_errs errs;
    int ndirs = 0, options = 1, r;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (options && strcmp(a, "--") == 0) {
            options = 0;
        } else if (options && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
            return check_help(prog);
        } else if (options && (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0)) {
            return check_version(prog);
        } else if (options && a[0] == '-' && a[1] != '\0') {
            return check_usage(prog, "unknown option", a);
        } else if (ndirs++ > 0) {
            return check_usage(prog, "more than one DIR", a);
        } else if (a[0] == '\0') {
            return check_usage(prog, "DIR is empty", NULL);
        } else {
            dir = a;
        }
    }

    r = cfg_load(dir, NULL, &errs);
    if (r == 0)
        return CHECK_EXIT_OK;
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.lines[i]);
    if (errs.n == 0)
        fprintf(stderr, "%s: cannot check %s/%s: %s\n", prog, dir, CFG_FILE_NAME, strerror(-r));
    cfg_errs_free(&errs);
    return CHECK_EXIT_INVALID;
}
