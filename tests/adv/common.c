#include "tests/adv/common.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

__attribute__((constructor)) static void seed_init(void)
{
    /* set once in the runner, so that every test's child sees the same seed */
    if (!getenv("ADV_SEED")) {
        struct timespec ts;
        char s[32];

        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(s, sizeof(s), "%llu",
                 100000000ull + ((unsigned long long)ts.tv_sec * 1000003ull ^
                                 (unsigned long long)ts.tv_nsec ^ (unsigned long long)getpid()) %
                                    900000000ull);
        setenv("ADV_SEED", s, 1);
    }
}

uint64_t adv_rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

unsigned adv_rnd_in(uint64_t *s, unsigned lo, unsigned hi)
{
    return lo + (unsigned)(adv_rnd(s) % (uint64_t)(hi - lo + 1));
}

int adv_fd_count(pid_t pid)
{
    char path[64];
    struct dirent *d;
    DIR *dir;
    int n = 0;

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    dir = opendir(path);
    if (!dir)
        return -1;
    while ((d = readdir(dir)))
        n += d->d_name[0] != '.';
    closedir(dir);
    return n;
}

const char *adv_sanitizer_report(const char *err)
{
    static const char *const pats[] = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                                       "runtime error:", "SUMMARY: UndefinedBehaviorSanitizer"};

    for (size_t i = 0; i < sizeof(pats) / sizeof(pats[0]); i++) {
        const char *p = strstr(err, pats[i]);
        if (p)
            return p;
    }
    return NULL;
}
