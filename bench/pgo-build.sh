#!/usr/bin/env bash
# Build ringproxy as shipped: release, LTO and profile-guided (gcc
# -fprofile-generate / -fprofile-use through meson's b_pgo). Three steps in
# one build folder: an instrumented build; a training run, bench/pgo-train.c
# (the test origin, this proxy, a fixed mix of keep-alive requests; a few
# seconds); the final build from the profile it wrote. docs/performance.md
# has the figures that justify it.
#
#   bench/pgo-build.sh BUILD_DIR [meson options...]
#
# Environment:
#   PGO=auto     (default) train; if training cannot run (io_uring blocked,
#                as in a container build under the default seccomp profile),
#                say so on stderr and build without a profile
#   PGO=require  training must succeed, or exit 1 (CI's image build)
#   PGO=off      plain release + LTO build
#   PGO_TARGETS  what to compile at the end [ringproxy]
#
# The profile is always made afresh: a profile of older sources would only
# be partly used (gcc drops mismatched functions), so every run deletes it.
set -euo pipefail

[[ $# -ge 1 ]] || {
    echo "usage: bench/pgo-build.sh BUILD_DIR [meson options...]" >&2
    exit 2
}
dir=$1
shift
src=$(cd "$(dirname "$0")/.." && pwd)
mode=${PGO:-auto}
read -r -a targets <<<"${PGO_TARGETS:-ringproxy}"
case $mode in auto | require | off) ;; *)
    echo "pgo-build: PGO must be auto, require or off, not '$mode'" >&2
    exit 2
    ;;
esac

say() { echo "pgo-build: $*" >&2; }
log=$(mktemp)
tlog=$(mktemp)
trap 'rm -f "$log" "$tlog"' EXIT
run() { # a step whose output only matters when it fails
    "$@" >>"$log" 2>&1 || {
        tail -n 30 "$log" >&2
        say "failed: $*"
        exit 1
    }
}

# configure MODE [meson options]: set up the folder, or change an existing one.
# Meson 1.0 keeps base options such as b_lto on "setup --reconfigure";
# configure sets them.
configure() {
    local pgo=$1
    shift
    if [[ -f $dir/meson-private/coredata.dat ]]; then
        run meson setup --reconfigure "$dir" "$src" "$@"
        run meson configure "$dir" -Dbuildtype=release -Db_lto=true -Db_pgo="$pgo"
    else
        run meson setup "$dir" "$src" --buildtype=release -Db_lto=true -Db_pgo="$pgo" "$@"
    fi
}

plain() {
    configure off "$@"
    run meson compile -C "$dir" "${targets[@]}"
    say "built without a profile in $dir"
}

if [[ $mode == off ]]; then
    plain "$@"
    exit 0
fi

configure generate "$@"
find "$dir" -name '*.gcda' -delete
run meson compile -C "$dir" ringproxy ringproxy-pgo-train
say "training"
if ! "$dir/bench/ringproxy-pgo-train" "$dir/ringproxy" 10 >"$tlog" 2>&1; then
    tail -n 5 "$tlog" >&2
    if [[ $mode == require ]]; then
        say "training failed (PGO=require)"
        exit 1
    fi
    say "training could not run; building without a profile"
    find "$dir" -name '*.gcda' -delete
    plain "$@"
    exit 0
fi
tail -n 1 "$tlog" >&2
# Programs that the training does not run (the checker, the relay) have no
# profile for some of their files; gcc says so in warnings, as expected.
configure use "$@"
run meson compile -C "$dir" "${targets[@]}"
say "built with a profile in $dir"
