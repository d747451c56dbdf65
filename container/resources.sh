#!/usr/bin/env bash
# What ringproxy needs in CPU and memory under the bench's heaviest points, measured the way a
# container limit counts it: the numbers behind spec.containers[].resources in
# .section-proxy.yaml (docs/container.md, "Resources: how each number was chosen").
#
#   sudo container/resources.sh [RINGPROXY]      # default: the newest build*/ringproxy
#
# The proxy runs in a memory cgroup of its own with a memory limit (RES_MEMORY), on one CPU
# (taskset, as a one-CPU limit; the load and the origin get the other CPUs), and it sees the
# limits it would read in a cgroup v2 container (memory.max, cpu.max), which is where it sizes
# its workers and receive buffers from. For each point (clients x body size) wrk runs
# RES_DURATION seconds of keep-alive load through it to a local nginx origin, while the
# cgroup's memory and the kernel memory of the proxy's sockets are sampled every 250 ms.
#
# Per point it prints: requests/s, wrk errors, CPU (cores used, us per request), peak memory
# of the cgroup, peak socket memory (sum of rmem_alloc + wmem_queued + forward alloc of the
# proxy's sockets, from `ss -m`), and memory 2 s after the load. A cgroup v2 limit counts
# socket memory (memory.stat "sock"); a v1 cgroup does not, so there the two peaks are
# added for the total. Exits 1 when the proxy was OOM-killed, a request failed, or the
# total went over RES_MEMORY.
#
# Environment:
#   RES_MEMORY    memory limit the proxy runs under and is checked against  (160M, the
#                 limit .section-proxy.yaml declares)
#   RES_CPUS      CPUs it may use (pinned to this many; its cpu.max)        (1)
#   RES_POINTS    clients x body points                                     (50x13 512x13 2048x13 128x1m)
#   RES_DURATION  seconds of load per point                                 (10)
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
MEM=${RES_MEMORY:-160M}
CPUS=${RES_CPUS:-1}
POINTS=${RES_POINTS:-50x13 512x13 2048x13 128x1m}
DURATION=${RES_DURATION:-10}

die() { echo "resources: $*" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || die "run as root (it makes a memory cgroup and a mount namespace)"

bytes() { # 128M -> 134217728
    local v=${1%[KkMmGg]} u=${1##*[0-9]}
    case $u in
    K | k) echo $((v << 10)) ;;
    M | m) echo $((v << 20)) ;;
    G | g) echo $((v << 30)) ;;
    *) echo "$v" ;;
    esac
}
MEM_BYTES=$(bytes "$MEM")

RINGPROXY=${1:-}
if [ -z "$RINGPROXY" ]; then
    RINGPROXY=$(ls -t "$repo"/build*/ringproxy 2>/dev/null | head -n 1)
fi
[ -x "$RINGPROXY" ] || die "no ringproxy binary (give its path)"

need=()
for p in nginx wrk python3 iproute2 util-linux; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${need[@]}" >/dev/null || die "apt-get install ${need[*]}"
fi

ncpu=$(nproc)
[ "$ncpu" -gt "$CPUS" ] || die "needs more than RES_CPUS=$CPUS CPUs (the load runs on the others)"
proxy_cpus="$((ncpu - CPUS))-$((ncpu - 1))"
load_cpus="0-$((ncpu - CPUS - 1))"

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
tmp=$(mktemp -d /tmp/ringproxy-res.XXXXXX)
chmod 0755 "$tmp"
cg=
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    [ -n "$cg" ] && [ -d "$cg" ] && rmdir "$cg" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

freeport() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# ---- the memory cgroup: v2 where the memory controller is there, else v1 ----------------
if grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
    cgv=2
    self=$(sed -n 's/^0:://p' /proc/self/cgroup)
    parent=/sys/fs/cgroup${self%/}
    # a process may not sit in an inner node of v2: use a sibling of ours when we are in a leaf
    [ -w "$parent/cgroup.subtree_control" ] && grep -qw memory "$parent/cgroup.subtree_control" ||
        parent=$(dirname "$parent")
    cg=$parent/ringproxy-res-$$
    mkdir "$cg" || die "cannot make $cg"
    echo "$MEM_BYTES" >"$cg/memory.max"
    mem_now() { cat "$cg/memory.current"; }
    mem_reset() { :; }
else
    cgv=1
    self=$(sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup)
    cg=/sys/fs/cgroup/memory${self%/}/ringproxy-res-$$
    mkdir "$cg" || die "cannot make $cg (no cgroup v2 memory controller, no v1 memory hierarchy)"
    echo "$MEM_BYTES" >"$cg/memory.limit_in_bytes"
    mem_now() { cat "$cg/memory.usage_in_bytes"; }
fi

# ---- origin: nginx on the load CPUs serving fixed bodies ---------------------------------
oport=$(freeport)
mkdir -p "$tmp/origin/www"
# every point's body, and 13 bytes for the start-up check below
for pt in $POINTS x13; do
    s=${pt#*x}
    [ -e "$tmp/origin/www/$s" ] || head -c "$(bytes "$s")" /dev/zero | tr '\0' x >"$tmp/origin/www/$s"
done
cat >"$tmp/origin/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile 65536;
pid $tmp/origin/nginx.pid;
error_log $tmp/origin/error.log warn;
events { worker_connections 16384; multi_accept on; }
http {
    access_log off; sendfile on; tcp_nopush on; tcp_nodelay on;
    keepalive_requests 1000000000; keepalive_timeout 600s;
    types { } default_type application/octet-stream; etag off;
    client_body_temp_path $tmp/origin/cb; proxy_temp_path $tmp/origin/pt;
    fastcgi_temp_path $tmp/origin/ft; uwsgi_temp_path $tmp/origin/ut; scgi_temp_path $tmp/origin/st;
    server { listen 127.0.0.1:$oport backlog=4096; root $tmp/origin/www; location / { } }
}
EOF
taskset -c "$load_cpus" nginx -p "$tmp/origin" -e "$tmp/origin/error.log" -c "$tmp/origin/nginx.conf" \
    -g 'daemon off;' &
pids+=($!)

# ---- the proxy: in the cgroup, seeing v2 limits, on its CPUs -----------------------------
pport=$(freeport)
aport=$(freeport)
mkdir -p "$tmp/conf"
# the 18 fields of Section's own log format, as the bench logs them
cp "$repo/bench/conf/ringproxy.json" "$tmp/conf/proxy.json"
quota=$((CPUS * 100000))
# In a private mount namespace, a tmpfs over /sys/fs/cgroup holds the two files the proxy
# reads there in a v2 container (its cgroup is "/" in its cgroup namespace). On a v2 host
# the real files say the same; on a v1 host this is the only way it can see them.
cat >"$tmp/start.sh" <<EOF
#!/bin/sh
echo \$\$ >"$cg/cgroup.procs" || exit 1
exec unshare --mount --propagation private sh -c '
    mount -t tmpfs -o size=16k,mode=0755 ringproxy-res /sys/fs/cgroup || exit 1
    echo $MEM_BYTES >/sys/fs/cgroup/memory.max
    echo "$quota 100000" >/sys/fs/cgroup/cpu.max
    exec taskset -c $proxy_cpus "$RINGPROXY" --config "$tmp/conf" --listen 127.0.0.1:$pport \
        --upstream 127.0.0.1:$oport --admin 127.0.0.1:$aport'
EOF
chmod +x "$tmp/start.sh"
# stdout (the access log) into a pipe, read by cat on the load CPUs, as a log driver would
mkfifo "$tmp/log"
taskset -c "$load_cpus" cat "$tmp/log" >/dev/null &
pids+=($!)
"$tmp/start.sh" >"$tmp/log" 2>"$tmp/proxy.err" &
pids+=($!)
rp=$!
for _ in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$pport/13" 2>/dev/null && break
    sleep 0.2
done
curl -s -o /dev/null -f "http://127.0.0.1:$pport/13" || { cat "$tmp/proxy.err" >&2; die "the proxy did not answer"; }

echo "ringproxy: $RINGPROXY ($("$RINGPROXY" --version 2>/dev/null | head -n 1))"
echo "cgroup v$cgv, memory limit $MEM ($MEM_BYTES bytes), CPUs $CPUS (proxy on $proxy_cpus, load on $load_cpus)," \
    "$DURATION s per point, kernel $(uname -r)"
sed -n 's/.*\] \(ringproxy [^:]*: [0-9]* workers*\),.*/\1/p' "$tmp/proxy.err" | head -n 1

taskset -c "$load_cpus" python3 - "$rp" "$cg" "$cgv" "$pport" "$oport" "$DURATION" "$MEM_BYTES" "$load_cpus" "$POINTS" <<'EOF'
import os, re, subprocess, sys, time

rp, cg, cgv, pport, oport, duration, limit, load_cpus, points = sys.argv[1:]
duration, limit, cgv = int(duration), int(limit), int(cgv)
tck = os.sysconf("SC_CLK_TCK")
MiB = 1 << 20

# the proxy is the exec'd child of the start script: find its pid by its listening port
def proxy_pid():
    out = subprocess.run(["ss", "-Htlnp", f"sport = :{pport}"], capture_output=True, text=True).stdout
    m = re.search(r"pid=(\d+)", out)
    return int(m.group(1)) if m else None

pid = proxy_pid()

def cpu_ticks():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])  # utime + stime, every thread

def mem_now():
    p = f"{cg}/memory.current" if cgv == 2 else f"{cg}/memory.usage_in_bytes"
    return int(open(p).read())

def sock_mem():
    """Kernel memory of the proxy's sockets: its accepted clients and its upstream connections."""
    out = subprocess.run(["ss", "-Htmn", "state", "established",
                          f"( sport = :{pport} or dport = :{oport} )"],
                         capture_output=True, text=True).stdout
    total = 0
    for m in re.finditer(r"skmem:\(r(\d+),rb\d+,t\d+,tb\d+,f(\d+),w(\d+)", out):
        total += int(m.group(1)) + int(m.group(2)) + int(m.group(3))
    return total

def peak_reset():
    if cgv == 1:  # v1 keeps the exact peak: reset it per point
        open(f"{cg}/memory.max_usage_in_bytes", "w").write("0")

def peak_read(sampled):
    if cgv == 1:
        return max(sampled, int(open(f"{cg}/memory.max_usage_in_bytes").read()))
    return sampled

def oom_kills():
    p = f"{cg}/memory.events" if cgv == 2 else f"{cg}/memory.oom_control"
    m = re.search(r"oom_kill (\d+)", open(p).read())
    return int(m.group(1)) if m else 0

def size(s):
    return int(s[:-1]) << {"k": 10, "m": 20}[s[-1]] if s[-1] in "km" else int(s)

print(f"as started: {mem_now() / MiB:.1f} MiB in the cgroup")
print(f"{'point':>10} {'req/s':>8} {'errors':>6} {'CPU cores':>9} {'us/req':>7}"
      f" {'cgroup peak MiB':>15} {'sockets peak MiB':>16} {'total MiB':>9} {'after 2 s MiB':>13}")
worst = 0
bad = []
for pt in points.split():
    conns, body = pt.split("x")
    peak_reset()
    c0, t0 = cpu_ticks(), time.monotonic()
    wrk = subprocess.Popen(["taskset", "-c", load_cpus, "wrk", "-t1", f"-c{conns}", f"-d{duration}s",
                            "--timeout", "10s", f"http://127.0.0.1:{pport}/{body}"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = speak = tpeak = 0
    while wrk.poll() is None:
        m, s = mem_now(), sock_mem()
        peak, speak = max(peak, m), max(speak, s)
        # on v2 the cgroup's figure already holds the sockets
        tpeak = max(tpeak, m if cgv == 2 else m + s)
        time.sleep(0.25)
    out = wrk.stdout.read()
    peak = peak_read(peak)
    if cgv == 1:  # the exact cgroup peak plus the sampled socket peak: an upper bound
        tpeak = max(tpeak, peak + speak)
    c1, t1 = cpu_ticks(), time.monotonic()
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    errs = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errs += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errs += int(m.group(1))
    time.sleep(2)
    after = mem_now()
    cores = (c1 - c0) / tck / (t1 - t0)
    us = (c1 - c0) / tck * 1e6 / reqs if reqs else 0
    print(f"{pt:>10} {reqs / (t1 - t0):>8.0f} {errs:>6} {cores:>9.2f} {us:>7.1f}"
          f" {peak / MiB:>15.1f} {speak / MiB:>16.1f} {tpeak / MiB:>9.1f} {after / MiB:>13.1f}",
          flush=True)
    worst = max(worst, tpeak)
    if errs:
        bad.append(f"{pt}: {errs} failed requests")
kills = oom_kills()
if kills:
    bad.append(f"{kills} OOM kill(s) in the cgroup")
if subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode:
    bad.append("the proxy is gone")
print(f"highest total: {worst / MiB:.1f} MiB of the {limit / MiB:.0f} MiB limit ({100 * worst / limit:.0f} %)")
if worst > limit:
    bad.append("the total went over the limit")
for b in bad:
    print("FAIL:", b)
sys.exit(1 if bad else 0)
EOF
rc=$?
echo "proxy stderr:"
sed 's/^/    /' "$tmp/proxy.err" | tail -n 5
exit $rc
