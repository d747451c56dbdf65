/* ringproxy-demo-origin: the test origin as a program, for the quick start and bench/. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/origin.h"

int main(int argc, char **argv)
{
    const char *addr = argc > 1 ? argv[1] : "127.0.0.1";
    unsigned port = argc > 2 ? (unsigned)atoi(argv[2]) : 8080;
    struct origin *o;
    sigset_t s;
    int sig;

    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        puts("usage: ringproxy-demo-origin [ADDR [PORT]]   (default 127.0.0.1 8080)");
        return 0;
    }
    sigemptyset(&s);
    sigaddset(&s, SIGTERM);
    sigaddset(&s, SIGINT);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    signal(SIGPIPE, SIG_IGN);
    o = origin_start(addr, port);
    if (!o) {
        fprintf(stderr, "ringproxy-demo-origin: cannot listen on %s:%u\n", addr, port);
        return 1;
    }
    fprintf(stderr, "demo origin on http://%s:%u/\n", addr, origin_port(o));
    sigwait(&s, &sig);
    origin_stop(o);
    return 0;
}
