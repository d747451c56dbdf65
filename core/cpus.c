#include "core/cpus.h"

#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

unsigned core_cpu_max_cpus(const char *cpu_max)
{
    unsigned long long quota, period;
    char *end;

    if (!cpu_max || !strncmp(cpu_max, "max", 3))
        return 0;
    quota = strtoull(cpu_max, &end, 10);
    if (end == cpu_max || *end != ' ')
        return 0;
    cpu_max = end + 1;
    period = strtoull(cpu_max, &end, 10);
    if (end == cpu_max || (*end != '\n' && *end != '\0') || !quota || !period)
        return 0;
    quota = (quota + period - 1) / period;
    return quota > UINT_MAX ? UINT_MAX : (unsigned)quota;
}

/* The first line of a small file, or "" when it cannot be read. */
static void read_line(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "re");

    buf[0] = '\0';
    if (!f)
        return;
    if (!fgets(buf, (int)cap, f))
        buf[0] = '\0';
    fclose(f);
}

unsigned core_cpus_from(unsigned affinity, const char *proc_cgroup, const char *cgroup_mount)
{
    unsigned n = affinity ? affinity : 1, limit = 0;
    char dir[PATH_MAX], path[PATH_MAX + 16], line[128];
    const char *p = proc_cgroup;
    size_t len;

    /* cgroup v2: the "0::/path" line (after v1 lines on a hybrid host). */
    while (p && strncmp(p, "0::/", 4)) {
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    if (!p)
        return n;
    p += 3;
    len = strcspn(p, "\n");
    /* "/" is the mount point itself, as in a container's cgroup namespace. */
    if (len == 1)
        len = 0;
    if (snprintf(dir, sizeof(dir), "%s%.*s", cgroup_mount, (int)len, p) >= (int)sizeof(dir))
        return n;
    /* A limit on any ancestor applies too: the smallest wins. */
    for (;;) {
        unsigned c;

        snprintf(path, sizeof(path), "%s/cpu.max", dir);
        read_line(path, line, sizeof(line));
        c = core_cpu_max_cpus(line);
        if (c && (!limit || c < limit))
            limit = c;
        if (strlen(dir) <= strlen(cgroup_mount))
            break;
        *strrchr(dir, '/') = '\0';
    }
    return limit && limit < n ? limit : n;
}

unsigned core_cpus_usable(void)
{
    cpu_set_t set;
    unsigned affinity = 0;
    char buf[4096];
    size_t got = 0;
    FILE *f;

    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        affinity = (unsigned)CPU_COUNT(&set);
    if (!affinity) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        affinity = n > 0 ? (unsigned)n : 1;
    }
    f = fopen("/proc/self/cgroup", "re");
    if (f) {
        got = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
    }
    buf[got] = '\0';
    return core_cpus_from(affinity, f ? buf : NULL, "/sys/fs/cgroup");
}
