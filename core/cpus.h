/*
 * How many CPUs this process may use, for "one worker per CPU": the CPUs in
 * its affinity mask (taskset, a container's cpuset), capped by a cgroup v2
 * CPU quota (a container's CPU limit) rounded up. A worker more than there
 * are CPUs to run it only shares a CPU with another one: both then batch
 * less per loop turn and switch between each other (docs/performance.md,
 * "Scaling").
 */
#ifndef RINGPROXY_CORE_CPUS_H
#define RINGPROXY_CORE_CPUS_H

/* Always at least 1. */
unsigned core_cpus_usable(void);

/*
 * The same from its parts (tests): affinity CPUs (0: unknown), the text of
 * /proc/self/cgroup and the cgroup v2 mount point. NULL text: no cgroup.
 */
unsigned core_cpus_from(unsigned affinity, const char *proc_cgroup, const char *cgroup_mount);

/* CPUs a cpu.max line ("QUOTA PERIOD") allows, rounded up; 0 for "max" or unreadable text. */
unsigned core_cpu_max_cpus(const char *cpu_max);

#endif
