/* core/cpus: how many workers "one per CPU" means (workers = 0). */
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "core/cpus.h"

Test(core_cpus, cpu_max_lines)
{
    cr_assert_eq(core_cpu_max_cpus("max 100000\n"), 0, "no limit");
    cr_assert_eq(core_cpu_max_cpus("100000 100000\n"), 1);
    cr_assert_eq(core_cpu_max_cpus("150000 100000\n"), 2, "1.5 CPUs round up");
    cr_assert_eq(core_cpu_max_cpus("50000 100000"), 1, "half a CPU is still one worker");
    cr_assert_eq(core_cpu_max_cpus("400000 100000\n"), 4);
    cr_assert_eq(core_cpu_max_cpus(""), 0);
    cr_assert_eq(core_cpu_max_cpus(NULL), 0);
    cr_assert_eq(core_cpu_max_cpus("0 100000\n"), 0, "no quota is no limit");
    cr_assert_eq(core_cpu_max_cpus("100000 0\n"), 0, "no period is unreadable");
    cr_assert_eq(core_cpu_max_cpus("100000\n"), 0);
    cr_assert_eq(core_cpu_max_cpus("x 100000\n"), 0);
    cr_assert_eq(core_cpu_max_cpus("100000 100000x\n"), 0);
}

static char root[64];

static void mkroot(void)
{
    snprintf(root, sizeof(root), "/tmp/ringproxy-cpus.XXXXXX");
    cr_assert_not_null(mkdtemp(root));
}

static void rmroot(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    cr_assert_eq(system(cmd), 0);
}

/* Write root/rel/cpu.max (creating rel) with text. */
static void cpu_max(const char *rel, const char *text)
{
    char path[PATH_MAX];
    FILE *f;

    snprintf(path, sizeof(path), "mkdir -p '%s%s'", root, rel);
    cr_assert_eq(system(path), 0);
    snprintf(path, sizeof(path), "%s%s/cpu.max", root, rel);
    f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

Test(core_cpus, no_cgroup_is_the_affinity, .init = mkroot, .fini = rmroot)
{
    cr_assert_eq(core_cpus_from(8, NULL, root), 8);
    cr_assert_eq(core_cpus_from(0, NULL, root), 1, "never less than one");
    /* cgroup v1 only (no "0::" line): not read */
    cr_assert_eq(core_cpus_from(8, "4:cpu,cpuacct:/a\n1:name=systemd:/a\n", root), 8);
}

Test(core_cpus, quota_caps_the_affinity, .init = mkroot, .fini = rmroot)
{
    cpu_max("/pod/app", "250000 100000\n");
    cr_assert_eq(core_cpus_from(8, "0::/pod/app\n", root), 3);
    cr_assert_eq(core_cpus_from(2, "0::/pod/app\n", root), 2, "the mask is smaller");
}

Test(core_cpus, an_ancestors_quota_applies, .init = mkroot, .fini = rmroot)
{
    cpu_max("/pod", "200000 100000\n");
    cpu_max("/pod/app", "max 100000\n");
    cr_assert_eq(core_cpus_from(16, "0::/pod/app\n", root), 2);
    cpu_max("/pod/app", "100000 100000\n");
    cr_assert_eq(core_cpus_from(16, "0::/pod/app\n", root), 1, "the smallest wins");
}

Test(core_cpus, namespace_root_and_hybrid_lines, .init = mkroot, .fini = rmroot)
{
    /* In a container's cgroup namespace its own cgroup is "/", at the mount point. */
    cpu_max("", "300000 100000\n");
    cr_assert_eq(core_cpus_from(16, "0::/\n", root), 3);
    /* hybrid: v1 lines first, the v2 line last */
    cr_assert_eq(core_cpus_from(16, "4:memory:/x\n1:cpu:/\n0::/\n", root), 3);
    /* "10::/" is no v2 line, nor is "0::/" inside another one */
    cr_assert_eq(core_cpus_from(16, "10::/\n", root), 16);
    cr_assert_eq(core_cpus_from(16, "1:name=x:/a0::/\n", root), 16);
    cr_assert_eq(core_cpus_from(16, "1:name=x:/a0::/\n0::/\n", root), 3);
}

Test(core_cpus, missing_or_broken_files_are_no_limit, .init = mkroot, .fini = rmroot)
{
    cr_assert_eq(core_cpus_from(4, "0::/nowhere\n", root), 4);
    cpu_max("/b", "garbage\n");
    cr_assert_eq(core_cpus_from(4, "0::/b\n", root), 4);
}

/* The process's own affinity mask counts: what `taskset -c 0` or a cpuset allows. */
Test(core_cpus, usable_follows_the_affinity_mask)
{
    cpu_set_t one, all;

    cr_assert_eq(sched_getaffinity(0, sizeof(all), &all), 0);
    CPU_ZERO(&one);
    for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &all)) {
            CPU_SET(i, &one);
            break;
        }
    cr_assert_eq(sched_setaffinity(0, sizeof(one), &one), 0);
    cr_assert_eq(core_cpus_usable(), 1);
    cr_assert_eq(sched_setaffinity(0, sizeof(all), &all), 0);
    cr_assert_geq(core_cpus_usable(), 1);
    cr_assert_leq(core_cpus_usable(), (unsigned)CPU_COUNT(&all));
}
