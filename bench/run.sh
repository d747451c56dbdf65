#!/usr/bin/env bash
# bench/run.sh — ringproxy side by side with nginx and HAProxy (and a bare
# io_uring relay as the kernel's floor), behind/in front of one nginx origin,
# all on loopback. One command; see docs/performance.md for the method.
#
#   bench/run.sh            the sweep (concurrency x body size, memory),
#                           idle-connection memory, chart
#   bench/run.sh --logs     also rows with the access log off for every proxy
#   bench/run.sh --idle     only the idle-connection memory test
#   bench/run.sh --no-idle  only the sweep
#   bench/run.sh --instr    user-space instructions per request of ringproxy
#                           (callgrind; stable where CPU time is noisy)
#
# Edge rules: the targets ringproxy-rules and nginx-rules run the same 20
# rules (bench/conf/rules/, bench/conf/proxy-nginx-rules.conf) on the same
# requests; a pre-flight checks that both answer a set of requests alike
# (status, fields, bodies, what the origin receives) and stops the run if not:
#   BENCH_POINTS="50x13 512x13" BENCH_TARGETS="ringproxy ringproxy-rules nginx nginx-rules" \
#       bench/run.sh --no-idle
#
# The sweep is a list of points, each a number of keep-alive clients and a
# body size: every BENCH_CONNS at every BENCH_SIZES, plus BENCH_MEM_POINT
# (or exactly BENCH_POINTS). Default: 50, 512 and 2048 clients at 13 B and
# 128 clients at 1 MiB (the memory point): 8-9 min in all.
#
# Environment (defaults in brackets):
#   BENCH_CONNS ["50 512 2048"]  wrk keep-alive connections (clients), a list
#   BENCH_SIZES ["13"]       response body sizes (bytes, k = KiB, m = MiB), each
#                            measured at every BENCH_CONNS
#   BENCH_MEM_POINT ["128x1m"]  one more point, CLIENTSxSIZE ("" for none): large
#                            bodies in flight, where peak RSS tells most
#   BENCH_POINTS []          the points exactly, e.g. "50x13 512x4k 128x1m"
#                            (replaces the three above)
#   BENCH_HEADLINE_CONNS [512]  the concurrency of table.md's headline table
#                            (the nearest measured one if it is not in the sweep)
#   BENCH_DURATION [4]       seconds per wrk run
#   BENCH_REPS [3]           repetitions (interleaved); the tables show medians
#   BENCH_SETTLE [2]         seconds after each run's load before its "RSS after"
#                            is read (does the proxy give memory back?)
#   BENCH_THREADS [1]        wrk threads
#   BENCH_TARGETS ["ringproxy nginx haproxy relay origin"]; also ringproxy-2w:
#                            two ringproxy workers sharing the proxy CPU, and
#                            ringproxy-rules, nginx-rules: with the 20 edge rules
#                            ringproxy-ratelimit: one rate_limit rule (bench/conf/ratelimit/)
#                            ringproxy-epoll: ringproxy on its epoll engine (--engine epoll)
#                            ringproxy-base, ringproxy-epoll-base: the same with the binary
#                            BENCH_RINGPROXY_BASE (an A/B of two builds in one run)
#   BENCH_REQUEST [auto]     what wrk sends: plain (GET /SIZE, Host 127.0.0.1:PORT)
#                            or edge (GET /blog/SIZE with Host www.example.com,
#                            X-Forwarded-Proto https, True-Client-IP, User-Agent,
#                            Accept: what the platform forwards); every target
#                            gets the same request. auto: edge when a *-rules
#                            target runs, else plain
#   BENCH_SYSCALL_DURATION [1]  seconds per extra run under `perf stat` counting
#                            syscalls (0: skip); kept apart from the timed runs
#   BENCH_WARMUP [1]         seconds of warm-up per target at the largest body and
#                            at the most clients (0: skip)
#   BENCH_IDLE_CONNS [10000] idle keep-alive connections per proxy (--idle; the
#                            report gives bytes of RSS per idle connection)
#   BENCH_INSTR_DURATION [4] seconds of load per body size under callgrind (--instr)
#   BENCH_INSTR_TARGETS ["ringproxy ringproxy-nolog"]  what --instr measures (also
#                            ringproxy-rules)
#   BENCH_BUILD_DIR [build-bench]  meson build dir (release, LTO, profile-guided
#                            by bench/pgo-build.sh, as the container image is built)
#   BENCH_PGO [auto]         PGO mode of that build: auto, require or off
#   BENCH_RINGPROXY []       use this ringproxy binary instead of building
#   BENCH_RINGPROXY_BASE []  the binary of the *-base targets (e.g. a build of main)
#   BENCH_RINGPROXY_CONFIG [bench/conf/ringproxy.json]  a proxy.json for ringproxy (the
#                            default logs the peers' 18 fields; with BENCH_LOG_STYLE=native:
#                            none, built-in defaults)
#   BENCH_LOG_STYLE [json]   json: nginx and HAProxy log the contract's fields as
#                            JSON lines like ringproxy; native: combined / option httplog
#   BENCH_NGINX_LOG_BUFFER ["buffer=64k flush=1s"]  nginx access_log buffering
#                            ("" = one write per request)
#   BENCH_NGINX_KEEPALIVE [512]  nginx's upstream keepalive (idle connections it
#                            caches; past them a finished one is closed)
#   BENCH_LOAD_CPUS / BENCH_PROXY_CPUS   override the pinning (default: first
#                            allowed CPU for wrk+origin, second for the proxies)
#   BENCH_NICE [0]           nice value for everything the bench starts (e.g. -10
#                            on a busy shared machine; needs root)
#
# File descriptors: the soft limit is raised to the hard one (as root, the hard
# one too if the sweep's most clients need more); nginx's worker_connections,
# HAProxy's maxconn and the origin are sized for the most clients plus their
# upstream connections (and BENCH_IDLE_CONNS).
#
# Results: bench/results/<timestamp>/ (table.md, table.csv, ratios.csv,
# raw.csv, syscalls.csv, idle.csv, start.csv, chart.png, meta.md, logs) and the symlink
# bench/results/latest; a short summary on stdout. Nothing here judges
# timings: it reports them.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench

DO_LOAD=1
DO_IDLE=1
DO_LOGS=0
DO_INSTR=0
for arg in "$@"; do
    case $arg in
    --idle) DO_LOAD=0; DO_IDLE=1 ;;
    --no-idle) DO_IDLE=0 ;;
    --logs) DO_LOGS=1 ;;
    --instr) DO_LOAD=0; DO_IDLE=0; DO_INSTR=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
    esac
done

DURATION=${BENCH_DURATION:-4}
REPS=${BENCH_REPS:-3}
CONNS=${BENCH_CONNS:-50 512 2048}
THREADS=${BENCH_THREADS:-1}
SIZES=${BENCH_SIZES:-13}
MEM_POINT=${BENCH_MEM_POINT-128x1m}
HEADLINE_CONNS=${BENCH_HEADLINE_CONNS:-512}
SETTLE=${BENCH_SETTLE:-2}
TARGETS=${BENCH_TARGETS:-ringproxy nginx haproxy relay origin}
SYSCALL_DURATION=${BENCH_SYSCALL_DURATION:-1}
WARMUP=${BENCH_WARMUP:-1}
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
INSTR_DURATION=${BENCH_INSTR_DURATION:-4}
INSTR_TARGETS=${BENCH_INSTR_TARGETS:-ringproxy ringproxy-nolog}
REQUEST=${BENCH_REQUEST:-auto}
BUILD_DIR=${BENCH_BUILD_DIR:-$ROOT/build-bench}
PGO_MODE=${BENCH_PGO:-auto}
BUILT_AS="given as BENCH_RINGPROXY"
RINGPROXY=${BENCH_RINGPROXY:-}
LOG_STYLE=${BENCH_LOG_STYLE:-json}
NGINX_LOG_BUFFER=${BENCH_NGINX_LOG_BUFFER-buffer=64k flush=1s}
NGINX_KEEPALIVE=${BENCH_NGINX_KEEPALIVE:-512}

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

case $REQUEST in auto | plain | edge) ;; *) die "BENCH_REQUEST must be auto, plain or edge, not '$REQUEST'" ;; esac
# The edge request: what reaches a site's proxy behind the platform (its TLS
# ends before it: X-Forwarded-Proto https, the client in True-Client-IP). For
# the rules' targets it goes through 7 of the 20 rules and is proxied with
# a rewritten target; the other 13 rules are evaluated and do not match.
EDGE_PREFIX=/blog
EDGE_HEADERS=("Host: www.example.com" "X-Forwarded-Proto: https" "True-Client-IP: 192.0.2.44"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
    "Accept: */*")

# ---------------------------------------------------------------- the sweep's points
# POINTS: "CLIENTSxSIZE" in the order they run; ALL_SIZES: each size once.
declare -a POINTS=()
add_point() {
    local p=${1,,} q
    [[ $p =~ ^[1-9][0-9]*x[0-9]+[km]?$ ]] || die "bad point '$1' (CLIENTSxSIZE, e.g. 512x13 or 128x1m)"
    for q in "${POINTS[@]}"; do [[ $q == "$p" ]] && return 0; done
    POINTS+=("$p")
}
if [[ -n ${BENCH_POINTS:-} ]]; then
    for pt in $BENCH_POINTS; do add_point "$pt"; done
else
    for s in $SIZES; do
        for c in $CONNS; do add_point "${c}x$s"; done
    done
    for pt in $MEM_POINT; do add_point "$pt"; done
fi
((${#POINTS[@]})) || die "no point to measure (BENCH_CONNS, BENCH_SIZES, BENCH_POINTS)"
ALL_SIZES=$(printf '%s\n' "${POINTS[@]#*x}" | awk '!seen[$0]++' | paste -sd ' ')
MAX_CONNS=$(printf '%s\n' "${POINTS[@]%%x*}" | sort -n | tail -n 1)
# --instr keeps its own sizes (10 connections each): the four of the old table.
((DO_INSTR)) && ALL_SIZES=${BENCH_SIZES:-13 4k 64k 1m}

# ---------------------------------------------------------------- packages
need_pkgs=()
need() { # need COMMAND-OR-TEST PACKAGE
    if [[ $1 == /* ]]; then [[ -e $1 ]] || need_pkgs+=("$2")
    else command -v "$1" >/dev/null 2>&1 || need_pkgs+=("$2"); fi
}
need nginx nginx-light
need haproxy haproxy
need wrk wrk
need gnuplot gnuplot-nox
need taskset util-linux
need /usr/bin/python3 python3
need perf linux-perf
need valgrind valgrind
need meson meson
need ninja ninja-build
need cc gcc
need pkg-config pkg-config
need /usr/include/liburing.h liburing-dev
need /usr/include/jansson.h libjansson-dev
need /usr/share/llhttp/llhttp.c node-llhttp
need /usr/include/criterion/criterion.h libcriterion-dev
if ((${#need_pkgs[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        die "missing packages (install as root): ${need_pkgs[*]}"
    fi
    log "installing: ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # linux-perf is optional: the syscall column reads n/a without it.
    if ! apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null; then
        rest=()
        for p in "${need_pkgs[@]}"; do [[ $p == linux-perf ]] || rest+=("$p"); done
        ((${#rest[@]} == 0)) || apt-get install -y -qq --no-install-recommends "${rest[@]}" >/dev/null
    fi
fi
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3
LIB=("$PY" "$BENCH/benchlib.py")

# ---------------------------------------------------------------- state, cleanup
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ringproxy-bench.XXXXXX")
chmod 755 "$TMP" # nginx workers run as an unprivileged user and read bodies from here
STAMP=$(date +%Y%m%d-%H%M%S)
RES=$BENCH/results/$STAMP
mkdir -p "$RES"

declare -a STARTED=()      # every PID we started in the background, in order
declare -A ROOTPID=() PORT=()
CURRENT=""

kill_tree() { # kill_tree SIGNAL PID: the PID and its descendants
    local pids
    pids=$("${LIB[@]}" tree "$2" 2>/dev/null) || return 0
    # shellcheck disable=SC2086 # a list of PIDs
    [[ -n $pids ]] && kill "-$1" $pids 2>/dev/null
    return 0
}

cleanup() {
    local rc=$? pid i
    set +e
    trap - EXIT INT TERM
    [[ -n $CURRENT ]] && kill_tree TERM "$CURRENT"
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
        kill_tree TERM "${STARTED[i]}"
    done
    for i in $(seq 1 50); do
        local left=0
        for pid in "${STARTED[@]}" $CURRENT; do
            kill -0 "$pid" 2>/dev/null && left=1
        done
        ((left)) || break
        sleep 0.1
    done
    for pid in "${STARTED[@]}" $CURRENT; do
        kill -0 "$pid" 2>/dev/null && kill_tree KILL "$pid"
    done
    wait 2>/dev/null
    # Keep the diagnostics of every process next to the results.
    for f in "$TMP"/*/stderr "$TMP"/*/error.log; do
        [[ -s $f ]] && cp "$f" "$RES/$(basename "$(dirname "$f")").$(basename "$f")"
    done
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Run a foreground step so that a signal reaches the trap at once.
fgrun() {
    "$@" &
    CURRENT=$!
    local rc=0
    wait "$CURRENT" || rc=$?
    CURRENT=""
    return "$rc"
}

# ---------------------------------------------------------------- CPUs
read -r -a CPUS <<<"$("$PY" -c 'import os; print(" ".join(map(str, sorted(os.sched_getaffinity(0)))))')"
LOAD_CPUS=${BENCH_LOAD_CPUS:-}
PROXY_CPUS=${BENCH_PROXY_CPUS:-}
if [[ -z $LOAD_CPUS && -z $PROXY_CPUS && ${#CPUS[@]} -ge 2 ]]; then
    LOAD_CPUS=${CPUS[0]}
    PROXY_CPUS=${CPUS[1]}
fi
PIN_LOAD=()
PIN_PROXY=()
[[ -n $LOAD_CPUS ]] && PIN_LOAD=(taskset -c "$LOAD_CPUS")
[[ -n $PROXY_CPUS ]] && PIN_PROXY=(taskset -c "$PROXY_CPUS")
if [[ ${BENCH_NICE:-0} != 0 ]]; then
    PIN_LOAD=(nice -n "$BENCH_NICE" "${PIN_LOAD[@]}")
    PIN_PROXY=(nice -n "$BENCH_NICE" "${PIN_PROXY[@]}")
fi

# fds: every process the bench starts inherits the soft limit, raised to the
# hard one. A proxy holds a client and an upstream connection per client in
# flight, so the sweep's most clients need 2 x MAX_CONNS + some; the idle test
# needs IDLE_CONNS (its own client caps itself at the limit and says so).
ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -Sn)
[[ $NOFILE == unlimited ]] && NOFILE=1048576
NEED_FDS=$((2 * MAX_CONNS + 640))
if ((DO_IDLE && IDLE_CONNS + 640 > NEED_FDS)); then NEED_FDS=$((IDLE_CONNS + 640)); fi
if ((NOFILE < NEED_FDS)); then
    # Only root can raise the hard limit (up to fs.nr_open).
    ulimit -n "$NEED_FDS" 2>/dev/null && NOFILE=$NEED_FDS
fi
if ((DO_LOAD && NOFILE < 2 * MAX_CONNS + 640)); then
    die "$MAX_CONNS clients need $((2 * MAX_CONNS + 640)) file descriptors per process, the limit is $NOFILE (raise ulimit -Hn, or lower BENCH_CONNS)"
fi
# Capacities sized to the need, not to the fd limit: nginx allocates and
# touches all its worker_connections at start (~0.5 KiB each, part of its RSS),
# so a limit-sized value would make its RSS a function of the machine's ulimit.
# Client + upstream connections, or the idle test's clients; plus an eighth,
# since nginx closes idle keep-alive connections ("worker_connections are not
# enough, reusing connections") once fewer than a sixteenth are free.
PROXY_CONNS=$((2 * MAX_CONNS > IDLE_CONNS ? 2 * MAX_CONNS : IDLE_CONNS))
PROXY_CONNS=$((PROXY_CONNS + PROXY_CONNS / 8 + 512))
((PROXY_CONNS > NOFILE - 100)) && PROXY_CONNS=$((NOFILE - 100))
# HAProxy's maxconn counts client-side sessions (it adds the server side).
HAPROXY_MAXCONN=$((MAX_CONNS > IDLE_CONNS ? MAX_CONNS + 256 : IDLE_CONNS + 256))
# The origin: the current target's clients plus the pools every proxy keeps.
ORIGIN_CONNS=$((4 * MAX_CONNS + IDLE_CONNS + 1024))
((ORIGIN_CONNS > NOFILE - 100)) && ORIGIN_CONNS=$((NOFILE - 100))

# ---------------------------------------------------------------- build
build() {
    local blog=$RES/build.log
    : >"$blog"
    if [[ -z $RINGPROXY ]]; then
        log "building ringproxy (release, LTO, profile-guided: PGO=$PGO_MODE) in $BUILD_DIR"
        # The checker too, as the image is built: it vets ringproxy-rules' config.
        if PGO=$PGO_MODE PGO_TARGETS="ringproxy ringproxy-validate" "$BENCH/pgo-build.sh" "$BUILD_DIR" \
            >>"$blog" 2>&1 && [[ -x $BUILD_DIR/ringproxy ]]; then
            RINGPROXY=$BUILD_DIR/ringproxy
            BUILT_AS=$(grep '^pgo-build: built' "$blog" | tail -n 1 | sed 's/^pgo-build: //')
        else
            BUILT_AS="did not build"
            log "ringproxy did not build (see $blog); its rows are left out"
        fi
    fi
    VALIDATE=""
    [[ -n $RINGPROXY && -x $(dirname "$RINGPROXY")/checks/ringproxy-validate ]] &&
        VALIDATE=$(dirname "$RINGPROXY")/checks/ringproxy-validate
    # The floor relay is built on its own, the same way whatever the proxy's
    # build (release flags; no profile, its user time is ~0.3 us per request).
    RELAY=$TMP/ringproxy-relay
    # shellcheck disable=SC2046
    cc -O3 -flto -std=gnu17 -D_GNU_SOURCE -o "$RELAY" "$BENCH/relay.c" \
        $(pkg-config --cflags --libs liburing) >>"$blog" 2>&1 ||
        die "cannot build bench/relay.c (see $blog)"
}

# ---------------------------------------------------------------- configs
size_bytes() {
    local s=${1,,}
    case $s in
    *k) echo $((${s%k} * 1024)) ;;
    *m) echo $((${s%m} * 1024 * 1024)) ;;
    *) echo "$s" ;;
    esac
}

# fill TEMPLATE OUT LOG(on|off) KEY=VALUE...: placeholders, #@LOG markers, and
# #@EDGE lines (kept only with the edge request)
fill() {
    local tpl=$1 out=$2 logmode=$3 kv
    shift 3
    local -a sedargs=()
    if ((EDGE)); then sedargs+=(-e 's/ *#@EDGE$//'); else sedargs+=(-e '/#@EDGE$/d'); fi
    for kv in "$@"; do
        sedargs+=(-e "s|@${kv%%=*}@|${kv#*=}|g")
    done
    if [[ $logmode == on ]]; then
        local other=NATIVE
        [[ $LOG_STYLE == native ]] && other=JSON
        sedargs+=(-e '/#@NOLOG$/d' -e "/#@LOG_${other}\$/d" -e 's/ *#@LOG\(_[A-Z]*\)\{0,1\}$//')
    else
        sedargs+=(-e '/#@LOG\(_[A-Z]*\)\{0,1\}$/d' -e 's/ *#@NOLOG$//')
    fi
    sed "${sedargs[@]}" "$tpl" >"$out"
}

mkport() { "${LIB[@]}" ports 1; }

# start NAME STDOUT(pipe|null) CMD...: the proxy pinned to the proxy CPU,
# stdout through a pipe to `cat >/dev/null` (pinned with the load) or to /dev/null.
start() {
    local name=$1 out=$2 dir=$TMP/$1
    shift 2
    mkdir -p "$dir"
    if [[ $out == pipe ]]; then
        mkfifo "$dir/stdout.fifo"
        "${PIN_LOAD[@]}" cat "$dir/stdout.fifo" >/dev/null &
        STARTED+=($!)
        "$@" >"$dir/stdout.fifo" 2>"$dir/stderr" &
    else
        "$@" >/dev/null 2>"$dir/stderr" &
    fi
    STARTED+=($!)
    ROOTPID[$name]=$!
}

# ready NAME: every body size answers 200 with the right length
ready() {
    local name=$1 s
    for s in $ALL_SIZES; do
        "${LIB[@]}" wait "http://127.0.0.1:${PORT[$name]}$REQ_PREFIX/$s" "$(size_bytes "$s")" 15 \
            "${REQ_HDRS[@]}" || return 1
    done
}

nginx_dirs() { mkdir -p "$1"/{client_body,proxy_temp,fastcgi_temp,uwsgi_temp,scgi_temp}; }

start_origin() {
    local dir=$TMP/origin s
    mkdir -p "$dir/www"
    nginx_dirs "$dir"
    for s in $ALL_SIZES; do
        head -c "$(size_bytes "$s")" /dev/zero | tr '\0' 'x' >"$dir/www/$s"
    done
    # The edge request's path: the same files under /blog/ (the rules' targets
    # strip the prefix, the others forward it as sent); the health check.
    if ((EDGE)); then
        ln -s . "$dir/www/blog"
        mkdir -p "$dir/www/.well-known/section-io/aee-hc" "$dir/www/admin" "$dir/www/assets"
        echo ok >"$dir/www/.well-known/section-io/aee-hc/healthz"
        echo admin >"$dir/www/admin/ok.txt"
        echo app >"$dir/www/assets/app.js"
    fi
    PORT[origin]=$(mkport)
    fill "$BENCH/conf/origin-nginx.conf" "$dir/nginx.conf" off DIR="$dir" WWW="$dir/www" \
        PORT="${PORT[origin]}" NOFILE="$NOFILE" WORKER_CONNECTIONS="$ORIGIN_CONNS"
    # The origin shares the load core with wrk; the proxy core is the proxy's alone.
    start origin null "${PIN_LOAD[@]}" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;'
    ready origin || die "origin nginx did not start (see $RES/origin.error.log)"
}

start_target() { # start_target NAME: 0 when it answers
    local name=$1 dir=$TMP/$1 logmode=on outmode=pipe
    [[ $name == origin ]] && return 0 # started first, by start_origin
    [[ $name == *-nolog ]] && logmode=off outmode=null
    mkdir -p "$dir"
    PORT[$name]=$(mkport)
    case $name in
    nginx | nginx-nolog)
        nginx_dirs "$dir"
        fill "$BENCH/conf/proxy-nginx.conf" "$dir/nginx.conf" "$logmode" DIR="$dir" \
            PORT="${PORT[$name]}" ORIGIN_PORT="${PORT[origin]}" NOFILE="$NOFILE" \
            WORKER_CONNECTIONS="$PROXY_CONNS" LOG_BUFFER="$NGINX_LOG_BUFFER" KEEPALIVE="$NGINX_KEEPALIVE"
        start "$name" "$outmode" "${PIN_PROXY[@]}" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;'
        ;;
    nginx-rules)
        # The rules' folder (pages), and redirects.txt as an nginx map file.
        nginx_dirs "$dir"
        cp -r "$BENCH/conf/rules" "$dir/rules"
        awk '!/^[[:space:]]*(#|$)/ { printf "\"%s\" \"%s\";\n", $1, $2 }' \
            "$BENCH/conf/rules/redirects.txt" >"$dir/rules/redirects.map"
        fill "$BENCH/conf/proxy-nginx-rules.conf" "$dir/nginx.conf" "$logmode" DIR="$dir" RULES="$dir/rules" \
            PORT="${PORT[$name]}" ORIGIN_PORT="${PORT[origin]}" NOFILE="$NOFILE" \
            WORKER_CONNECTIONS="$PROXY_CONNS" LOG_BUFFER="$NGINX_LOG_BUFFER" KEEPALIVE="$NGINX_KEEPALIVE"
        start "$name" "$outmode" "${PIN_PROXY[@]}" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;'
        ;;
    haproxy | haproxy-nolog)
        fill "$BENCH/conf/haproxy.cfg" "$dir/haproxy.cfg" "$logmode" DIR="$dir" \
            PORT="${PORT[$name]}" ORIGIN_PORT="${PORT[origin]}" MAXCONN="$HAPROXY_MAXCONN"
        start "$name" "$outmode" "${PIN_PROXY[@]}" haproxy -db -f "$dir/haproxy.cfg"
        ;;
    ringproxy | ringproxy-nolog | ringproxy-2w | ringproxy-rules | ringproxy-ratelimit | ringproxy-epoll | \
        ringproxy-base | ringproxy-epoll-base)
        local bin=$RINGPROXY
        [[ $name == *-base ]] && bin=${BENCH_RINGPROXY_BASE:-}
        [[ -n $bin ]] || return 1
        mkdir -p "$dir/conf"
        local nolog=() workers=1
        # The same 18 JSON fields as nginx's and HAProxy's log formats (the default list has 8 more).
        if [[ $name == ringproxy-rules ]]; then
            # The 20 rules, their pages and redirect map; the same log fields.
            cp -r "$BENCH/conf/rules/." "$dir/conf/"
            if [[ $LOG_STYLE == native ]]; then
                "$PY" -c 'import json, sys; d = json.load(open(sys.argv[1])); d.pop("access_log", None); json.dump(d, open(sys.argv[1], "w"), indent=1)' "$dir/conf/proxy.json"
            fi
            if [[ -x $VALIDATE ]] && ! "$VALIDATE" "$dir/conf" 2>"$dir/validate.txt"; then
                log "ringproxy-validate rejects bench/conf/rules:"
                sed 's/^/    /' "$dir/validate.txt" >&2
                return 1
            fi
        elif [[ $name == ringproxy-ratelimit ]]; then
            # ringproxy.json's log fields and one rate_limit rule on every request, never over it
            cp "$BENCH/conf/ratelimit/proxy.json" "$dir/conf/proxy.json"
        elif [[ -n ${BENCH_RINGPROXY_CONFIG:-} ]]; then
            cp "$BENCH_RINGPROXY_CONFIG" "$dir/conf/proxy.json"
        elif [[ $LOG_STYLE == json ]]; then
            cp "$BENCH/conf/ringproxy.json" "$dir/conf/proxy.json"
        fi
        [[ $name == ringproxy-nolog ]] && nolog=(--no-access-log)
        # Two workers on the one proxy CPU: what more workers than CPUs cost (see "Scaling").
        [[ $name == ringproxy-2w ]] && workers=2
        # The epoll engine, as where io_uring is refused (docs/design.md, "Engines")
        local engine=()
        [[ $name == ringproxy-epoll* ]] && engine=(--engine epoll)
        local under=()
        ((DO_INSTR)) && under=(valgrind -q --tool=callgrind --compress-strings=no --compress-pos=no "--callgrind-out-file=$dir/cg.out")
        start "$name" "$outmode" "${PIN_PROXY[@]}" "${under[@]}" "$bin" --listen "127.0.0.1:${PORT[$name]}" \
            --upstream "127.0.0.1:${PORT[origin]}" --workers "$workers" --admin "127.0.0.1:$(mkport)" \
            --config "$dir/conf" "${nolog[@]}" "${engine[@]}"
        ;;
    relay)
        # A private copy: on a shared machine, someone's `pkill -f ringproxy-relay`
        # must not end our floor mid-run (it happened).
        cp "$RELAY" "$dir/floor-relay"
        start relay null "${PIN_PROXY[@]}" "$dir/floor-relay" --listen "127.0.0.1:${PORT[relay]}" \
            --upstream "127.0.0.1:${PORT[origin]}"
        ;;
    *) log "unknown target $name"; return 1 ;;
    esac
    if ! ready "$name"; then
        log "$name did not answer correctly; its rows are left out (see $RES/$name.stderr)"
        kill_tree TERM "${ROOTPID[$name]}"
        unset "ROOTPID[$name]"
        return 1
    fi
}

measure() { # measure OUT REP CLIENTSxSIZE TARGET DURATION [--perf] [--settle S]
    local out=$1 rep=$2 conns=${3%%x*} size=${3#*x} t=$4 dur=$5 pc=$PROXY_CPUS
    shift 5
    [[ $t == origin ]] && pc="" # the origin shares the load core: no noise figure
    fgrun "${PIN_LOAD[@]}" "${LIB[@]}" run --out "$out" --rep "$rep" --target "$t" --size "$size" \
        --bytes "$(size_bytes "$size")" --root "${ROOTPID[$t]}" \
        --url "http://127.0.0.1:${PORT[$t]}$REQ_PREFIX/$size" "${REQ_HDRS[@]}" --duration "$dur" --conns "$conns" \
        --threads "$THREADS" --script "$BENCH/wrk-report.lua" --load-cpus "$LOAD_CPUS" --proxy-cpus "$pc" \
        --origin-status "http://127.0.0.1:${PORT[origin]}/.bench-status" "$@"
}

versions() {
    local v
    v=$(nginx -v 2>&1 | sed 's/.*version: //')
    echo "nginx ${v}, $(haproxy -v | head -n 1 | awk '{print "HAProxy", $3}'), $(wrk -v 2>&1 | head -n 1 | awk '{print $1, $2}')"
    if [[ -n $RINGPROXY ]]; then
        local tree
        tree="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no commit')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ', work tree modified')"
        # A given binary may come from any tree: say which one the bench is in, not more.
        [[ -n ${BENCH_RINGPROXY:-} ]] && tree="given binary, the bench's tree is at $tree"
        echo "ringproxy: $("$RINGPROXY" --version 2>/dev/null | head -n 1 || echo '?') ($tree)"
        if [[ -n ${BENCH_RINGPROXY_BASE:-} ]]; then
            echo "ringproxy-base, ringproxy-epoll-base: $BENCH_RINGPROXY_BASE"
        fi
    fi
}

# ---------------------------------------------------------------- main
build

ACTIVE=()
read -r -a want <<<"$TARGETS"
if ((DO_LOGS)); then
    for t in ringproxy nginx haproxy; do
        [[ " $TARGETS " == *" $t "* ]] && want+=("$t-nolog")
    done
fi
if ((!DO_LOAD)); then # --idle: the proxies only
    mapfile -t want < <(printf '%s\n' "${want[@]}" | grep -Ev '^(relay|origin)$' || true)
fi
((DO_INSTR)) && read -r -a want <<<"$INSTR_TARGETS"

# The request every target gets (BENCH_REQUEST).
EDGE=0
if [[ $REQUEST == edge ]]; then
    EDGE=1
elif [[ $REQUEST == auto ]]; then
    for t in "${want[@]}"; do [[ $t == *-rules ]] && EDGE=1; done
fi
for t in "${want[@]}"; do
    [[ $t == *-rules ]] && ((!EDGE)) && die "$t needs the edge request (BENCH_REQUEST=edge or auto)"
done
REQ_PREFIX="" REQ_HDRS=() WRK_HDRS=()
if ((EDGE)); then
    REQ_PREFIX=$EDGE_PREFIX
    for h in "${EDGE_HEADERS[@]}"; do REQ_HDRS+=(--header "$h"); WRK_HDRS+=(-H "$h"); done
fi

log "origin: nginx on 127.0.0.1 (cpu ${LOAD_CPUS:-any}); proxies on cpu ${PROXY_CPUS:-any}"
start_origin
for t in "${want[@]}"; do
    if start_target "$t"; then
        ACTIVE+=("$t")
    fi
done
((${#ACTIVE[@]})) || die "no target answered"
log "targets: ${ACTIVE[*]}"
# Pre-flight: the two rule sets answer alike, and as bench/benchlib.py's
# edgecheck expects (status, fields, bodies, what the origin receives).
checkargs=()
for t in ringproxy-rules nginx-rules; do
    [[ -n ${ROOTPID[$t]:-} ]] && checkargs+=(--target "$t=127.0.0.1:${PORT[$t]}")
done
if ((${#checkargs[@]})); then
    s=${ALL_SIZES%% *}
    if ! "${LIB[@]}" edgecheck "${checkargs[@]}" --load-path "$REQ_PREFIX/$s" --load-bytes "$(size_bytes "$s")" \
        >"$RES/edgecheck.txt" 2>&1; then
        cat "$RES/edgecheck.txt" >&2
        die "the rules' targets do not answer as expected (above; $RES/edgecheck.txt)"
    fi
    log "edge rules pre-flight: $(tail -n 1 "$RES/edgecheck.txt")"
fi
for t in ringproxy-rules nginx-rules; do
    [[ " ${want[*]} " == *" $t "* && -z ${ROOTPID[$t]:-} ]] && log "warning: $t is not running: no rules figures for it"
done
# Each target's RSS as started, before any load: the idle level the memory
# table compares with.
sleep 0.5
for t in "${ACTIVE[@]}"; do
    echo "$t,$("${LIB[@]}" rss "${ROOTPID[$t]}")"
done | { echo "target,rss_kib"; cat; } >"$RES/start.csv"

PERF_OK=0
if ((SYSCALL_DURATION > 0)) && command -v perf >/dev/null 2>&1 &&
    perf stat -x, -e raw_syscalls:sys_enter -- true >/dev/null 2>&1; then
    PERF_OK=1
fi

{
    echo "## Run $STAMP"
    echo
    echo "- machine: load average $(cut -d" " -f1-3 /proc/loadavg) at start; $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), kernel $(uname -r), $(sed -n 's/^PRETTY_NAME="\(.*\)"/\1/p' /etc/os-release), net.core.rmem_max $(cat /proc/sys/net/core/rmem_max 2>/dev/null || echo unknown) (ringproxy's upstream receive buffers are 1 MiB only where it is at least that)"
    echo "- $(versions | paste -sd ';' | sed 's/;/; /g')"
    echo "- ringproxy: $RINGPROXY, $BUILT_AS"
    echo "- pinning: wrk + origin + log readers on CPU ${LOAD_CPUS:-(none)}, each proxy on CPU ${PROXY_CPUS:-(none)}; nice ${BENCH_NICE:-0}"
    echo "- points (clients x body): ${POINTS[*]}; wrk -t$THREADS -c<clients> -d${DURATION}s keep-alive; $REPS interleaved repetitions, median shown; warm-up ${WARMUP}s"
    echo "- capacities: fd limit $NOFILE; nginx worker_connections $PROXY_CONNS (preallocated, part of its RSS); HAProxy maxconn $HAPROXY_MAXCONN; origin worker_connections $ORIGIN_CONNS; upstream keep-alive: nginx keepalive $NGINX_KEEPALIVE, HAProxy pool-max-conn -1 (no cap; pool fd ratios 75/90 %), ringproxy upstream.pool_max_idle $([[ -n ${BENCH_RINGPROXY_CONFIG:-} ]] && echo "as in $BENCH_RINGPROXY_CONFIG" || echo "at its default (4096)")"
    echo "- access logs: ${LOG_STYLE} lines on stdout piped to \`cat >/dev/null\` (nginx ${NGINX_LOG_BUFFER:-unbuffered}); *-nolog rows: access log off (ringproxy-nolog: --no-access-log)"
    echo "- ringproxy's proxy.json: ${BENCH_RINGPROXY_CONFIG:-$([[ $LOG_STYLE == json ]] && echo "bench/conf/ringproxy.json (the peers' 18 log fields)" || echo "none (built-in defaults)")}"
    if ((EDGE)); then
        echo "- request (every target): GET $EDGE_PREFIX/<body size> with $(printf '`%s`, ' "${EDGE_HEADERS[@]}" | sed 's/, $//') (BENCH_REQUEST=edge); the origin serves /blog/<size> as /<size> and adds \`X-Powered-By\`"
    else
        echo "- request (every target): GET /<body size>, Host 127.0.0.1:<port> (BENCH_REQUEST=plain)"
    fi
    [[ " ${ACTIVE[*]} " == *-rules\ * ]] && echo "- edge rules: ringproxy-rules bench/conf/rules/ (20 rules, 1,000-entry redirect map), nginx-rules bench/conf/proxy-nginx-rules.conf; pre-flight: $(tail -n 1 "$RES/edgecheck.txt" 2>/dev/null || echo 'n/a')"
    echo "- CPU µs/req: user+sys of the proxy's process tree (/proc/PID/stat) over the run ÷ completed requests; syscalls/req: $(if ((PERF_OK)); then echo "separate ${SYSCALL_DURATION}s run under perf stat -e raw_syscalls:sys_enter"; else echo 'n/a (perf unavailable)'; fi); RSS: VmRSS summed over the tree before each run, its peak (VmHWM summed over the tree, reset before each run) and VmRSS $([[ $SETTLE == 0 ]] && echo "after the load: not read (BENCH_SETTLE=0)" || echo "${SETTLE}s after the load ended"); origin conns/1k req: connections the origin accepted during the run per 1000 requests (stub_status)"
} >"$RES/meta.md"

if ((DO_LOAD)); then
    LOADT=()
    for t in "${ACTIVE[@]}"; do LOADT+=("$t"); done
    if ((WARMUP > 0)); then
        # At the largest body and at the most clients, so that no target meets
        # either for the first time in a measured run.
        big=${POINTS[0]} most=${POINTS[0]}
        for pt in "${POINTS[@]}"; do
            (($(size_bytes "${pt#*x}") > $(size_bytes "${big#*x}"))) && big=$pt
            ((${pt%%x*} > ${most%%x*})) && most=$pt
        done
        warm=("$big")
        [[ $most != "$big" ]] && warm+=("$most")
        log "warm-up: ${warm[*]}"
        for pt in "${warm[@]}"; do
            for t in "${LOADT[@]}"; do
                measure "$TMP/warmup.csv" 0 "$pt" "$t" "$WARMUP" 2>/dev/null
            done
        done
    fi
    n=${#LOADT[@]}
    for ((rep = 1; rep <= REPS; rep++)); do
        log "repetition $rep/$REPS"
        for pi in "${!POINTS[@]}"; do
            for ((k = 0; k < n; k++)); do # rotate the order every time
                t=${LOADT[(k + rep + pi) % n]}
                measure "$RES/raw.csv" "$rep" "${POINTS[pi]}" "$t" "$DURATION" --settle "$SETTLE"
            done
        done
    done
    if ((PERF_OK)); then
        log "syscalls per request (perf stat, ${SYSCALL_DURATION}s runs)"
        for pt in "${POINTS[@]}"; do
            for t in "${LOADT[@]}"; do
                measure "$RES/syscalls.csv" 0 "$pt" "$t" "$SYSCALL_DURATION" --perf
            done
        done
    fi
fi

# restart_target NAME: a fresh process in place of NAME's (its logs kept as NAME.sweep.*)
restart_target() {
    local t=$1 pid=${ROOTPID[$1]} i
    kill_tree TERM "$pid"
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill_tree KILL "$pid"
    wait "$pid" 2>/dev/null || true
    rm -rf "$TMP/$t.sweep"
    mv "$TMP/$t" "$TMP/$t.sweep"
    start_target "$t"
}

if ((DO_IDLE)); then
    log "idle keep-alive connections: $IDLE_CONNS per proxy"
    IDLE_SIZE=$(for s in $ALL_SIZES; do echo "$(size_bytes "$s") $s"; done | sort -n | head -n 1 | cut -d' ' -f2)
    for t in "${ACTIVE[@]}"; do
        [[ $t == relay || $t == origin || $t == *-nolog || $t == *-rules ]] && continue
        # After the sweep a proxy has memory to spare (freed, not returned):
        # new connections would take it and look free. Measure a fresh one.
        if ((DO_LOAD)) && ! restart_target "$t"; then
            log "$t did not restart; no idle figure"
            continue
        fi
        fgrun "${PIN_LOAD[@]}" "${LIB[@]}" idle --target "$t" --root "${ROOTPID[$t]}" \
            --port "${PORT[$t]}" --conns "$IDLE_CONNS" --path "/$IDLE_SIZE" --out "$RES/idle.csv"
    done
fi

# instr TARGET SIZE: callgrind's count between two dumps around one bounded wrk run
instr() {
    local t=$1 size=$2 dir=$TMP/$1 pid=${ROOTPID[$1]} n out
    callgrind_control -d "$pid" >/dev/null
    out=$("${PIN_LOAD[@]}" wrk -t1 -c10 "-d${INSTR_DURATION}s" "${WRK_HDRS[@]}" "http://127.0.0.1:${PORT[$t]}$REQ_PREFIX/$size")
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    callgrind_control -d "$pid" >/dev/null
    local dump
    dump=$(ls -v "$dir"/cg.out.* | tail -n 1)
    "${LIB[@]}" instr --target "$t" --size "$size" --requests "$n" --dump "$dump" --out "$RES/instr.md"
    # The dump itself, for callgrind_annotate (callers, inclusive costs).
    cp "$dump" "$RES/callgrind.$t.$size.out"
    echo "$n" >"$RES/callgrind.$t.$size.requests"
}

if ((DO_INSTR)); then
    command -v callgrind_control >/dev/null || die "valgrind is missing"
    for s in $ALL_SIZES; do
        for t in "${ACTIVE[@]}"; do
            log "instructions per request: $t, $s"
            instr "$t" "$s"
        done
    done
    cat "$RES/instr.md"
    ln -sfn "$STAMP" "$BENCH/results/latest"
    log "results: $RES/instr.md"
    exit 0
fi

"${LIB[@]}" report "$RES" --headline "$HEADLINE_CONNS"
ln -sfn "$STAMP" "$BENCH/results/latest"
log "results: $RES (and bench/results/latest)"
