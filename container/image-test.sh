#!/usr/bin/env bash
# End-to-end test of the container image (docs/contract.md: C8, C12), runnable where no
# container registry is reachable: only the Debian mirror that apt already uses.
#
#   sudo container/image-test.sh
#
# 1. base image: debootstrap --variant=minbase bookworm from this machine's apt mirror,
#    trimmed like debian:bookworm-slim, imported as docker.io/library/debian:bookworm-slim
#    into a private podman store (the tarball is cached in $RINGPROXY_IT_CACHE);
# 2. podman build of ./Containerfile (chroot isolation, no registry);
# 3. image metadata, file capability, .section-proxy.yaml against the built image,
#    validate.sh and prepare.sh on good/bad configs, and the proxy itself: a request through
#    it to a local origin, the JSON access line on stdout, non-root with only
#    CAP_NET_BIND_SERVICE, port 80 with the runtime's default capabilities and not without
#    the capability, graceful stop on SIGTERM.
# Prints PASS/FAIL per check, then "N passed, N failed"; exits non-zero on any failure.
# Leaves nothing behind but the cached base tarball.
#
# Environment:
#   RINGPROXY_IT_CACHE   cache folder for the base tarball    (/var/tmp/ringproxy-image-test;
#                        rebuilt when older than 30 days or deleted)
#   RINGPROXY_IT_MIRROR  Debian mirror URL                     (read from /etc/apt)
#   RINGPROXY_IT_SRC     build context                         (the repository)
#   RINGPROXY_IT_KEEP=1  keep the podman store and logs for inspection
#   RINGPROXY_IT_DRIVER  podman storage driver                 (overlay, vfs as fallback)
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
src=${RINGPROXY_IT_SRC:-$repo}
cache=${RINGPROXY_IT_CACHE:-/var/tmp/ringproxy-image-test}
base_ref=docker.io/library/debian:bookworm-slim
image=localhost/ringproxy:image-test
proxy_addr=127.0.0.1:80
origin_ip=127.0.0.2
admin_addr=127.0.0.1:9000
seccomp="$repo/container/seccomp.json"
ulimits=(--ulimit nofile=20000:20000 --ulimit nproc=32768:32768)

passed=0
failed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
info() { echo "INFO: $*"; }
step() { echo "---- $* ($(($(date +%s) - t_start)) s)"; }
# check DESCRIPTION COMMAND...: PASS when the command succeeds
check() {
    local d=$1
    shift
    if "$@"; then
        pass "$d"
    else
        fail "$d"
        return 1
    fi
}
quiet() { "$@" >/dev/null 2>&1; }
t_start=$(date +%s)

if [ "$(id -u)" -ne 0 ]; then
    echo "FAIL: run as root (debootstrap, podman with a private store)"
    echo "0 passed, 1 failed"
    exit 1
fi

tmp=$(mktemp -d /var/tmp/ringproxy-it.XXXXXX)
chmod 0755 "$tmp"
mkdir -p "$tmp/tmp"
export TMPDIR="$tmp/tmp"
origin_pid=
run_pid=
cleaned=

PODMAN=(podman --root "$tmp/storage" --runroot "$tmp/run" --tmpdir "$tmp/libpod"
    --cgroup-manager cgroupfs --events-backend file --runtime runc)

# cleanup: stop what we started, remove the store and the temp folder (once)
cleanup() {
    [ -n "$cleaned" ] && return 0
    cleaned=1
    if [ -n "$run_pid" ] && kill -0 "$run_pid" 2>/dev/null; then
        kill "$run_pid" 2>/dev/null
    fi
    if [ -n "$origin_pid" ] && kill -0 "$origin_pid" 2>/dev/null; then
        kill "$origin_pid" 2>/dev/null
        wait "$origin_pid" 2>/dev/null
    fi
    if [ -d "$tmp/storage" ]; then
        timeout 60 "${PODMAN[@]}" rm -a -f -t 0 >/dev/null 2>&1
        # not `podman system reset`: that also prunes the machine's podman networks
        if [ "${RINGPROXY_IT_KEEP:-0}" != 1 ]; then
            timeout 120 "${PODMAN[@]}" rmi -a -f >/dev/null 2>&1
        fi
    fi
    if [ "${RINGPROXY_IT_KEEP:-0}" = 1 ]; then
        info "kept $tmp; inspect with: ${PODMAN[*]} images"
        return 0
    fi
    # anything still mounted below $tmp (overlay layers, shm), deepest first
    local m
    for m in $(awk -v t="$tmp" 'index($2, t) == 1 { print $2 }' /proc/mounts | sort -r); do
        umount -l "$m" 2>/dev/null
    done
    rm -rf "$tmp"
}
trap 'cleanup' EXIT
trap 'echo "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------------------------------
step "tools"
need=()
for p in podman runc debootstrap curl python3 jq libcap2-bin; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    info "installing ${need[*]}"
    if ! { timeout 300 apt-get update -q -o DPkg::Lock::Timeout=120 &&
        DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q \
            -o DPkg::Lock::Timeout=300 "${need[@]}"; } >"$tmp/apt.log" 2>&1; then
        tail -n 20 "$tmp/apt.log"
        fail "apt-get install ${need[*]}"
        echo "$passed passed, $failed failed"
        exit 1
    fi
fi
info "$(podman --version), runc $(runc --version | awk 'NR == 1 { print $3 }'), kernel $(uname -r)"

# storage driver: kernel overlay when it works here, else vfs
driver=${RINGPROXY_IT_DRIVER:-overlay}
if ! timeout 60 "${PODMAN[@]}" --storage-driver "$driver" info >"$tmp/info.log" 2>&1; then
    info "storage driver $driver unusable here ($(tail -n 1 "$tmp/info.log")), using vfs"
    rm -rf "$tmp/storage" "$tmp/run"
    driver=vfs
fi
PODMAN+=(--storage-driver "$driver")

# ---------------------------------------------------------------------------------------
# apt_uri SUITE: the first enabled "deb" source of this machine carrying SUITE
apt_uri() {
    python3 - "$1" <<'EOF'
import glob, re, sys
want = sys.argv[1]
files = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")) \
      + sorted(glob.glob("/etc/apt/sources.list.d/*.sources"))
for f in files:
    try:
        text = open(f, encoding="utf-8").read()
    except OSError:
        continue
    if f.endswith(".sources"):                       # deb822 stanzas
        for stanza in re.split(r"\n[ \t]*\n", text):
            fields, key = {}, None
            for line in stanza.splitlines():
                if line.startswith("#"):
                    continue
                if line[:1] in (" ", "\t") and key:
                    fields[key] += " " + line.strip()
                elif ":" in line:
                    key, val = line.split(":", 1)
                    key = key.strip().lower()
                    fields[key] = val.strip()
            if fields.get("enabled", "yes").lower() == "no":
                continue
            if "deb" in fields.get("types", "").split() and want in fields.get("suites", "").split():
                print(fields["uris"].split()[0].rstrip("/"))
                sys.exit(0)
    else:                                            # one-line format
        for line in text.splitlines():
            m = re.match(r"\s*deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line.split("#", 1)[0])
            if m and m.group(3) == want:
                print(m.group(2).rstrip("/"))
                sys.exit(0)
sys.exit(1)
EOF
}

# build_base TARBALL: debootstrap minbase, trimmed the way the official slim image is
build_base() {
    local out=$1 mirror security updates root="$tmp/rootfs"
    mirror=${RINGPROXY_IT_MIRROR:-$(apt_uri bookworm)} || {
        echo "no apt source for bookworm in /etc/apt; set RINGPROXY_IT_MIRROR"
        return 1
    }
    security=$(apt_uri bookworm-security) || security=
    updates=$(apt_uri bookworm-updates) || updates=
    info "debootstrap --variant=minbase bookworm from $mirror"
    timeout 900 debootstrap --variant=minbase bookworm "$root" "$mirror" \
        >"$tmp/debootstrap.log" 2>&1 || {
        tail -n 20 "$tmp/debootstrap.log"
        return 1
    }
    # the apt sources the image's own apt-get will use: this machine's mirrors
    rm -f "$root/etc/apt/sources.list"
    {
        printf 'Types: deb\nURIs: %s\nSuites: bookworm%s\nComponents: main\n' \
            "$mirror" "${updates:+ bookworm-updates}"
        printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
        if [ -n "$security" ]; then
            printf '\nTypes: deb\nURIs: %s\nSuites: bookworm-security\nComponents: main\n' \
                "$security"
            printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
        fi
    } >"$root/etc/apt/sources.list.d/debian.sources"
    # "slim": no docs, man pages, locales (as the official image's dpkg excludes)
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
EOF
    printf 'Acquire::Languages "none";\n' >"$root/etc/apt/apt.conf.d/docker-no-languages"
    printf 'APT::AutoRemove::SuggestsImportant "false";\n' \
        >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
    find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root"/usr/share/{groff,info,linda,man}/* "$root"/usr/share/lintian/overrides/*
    find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
        "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/tmp/* "$root"/var/tmp/*
    # debootstrap copies these from this machine; the runtime provides its own
    : >"$root/etc/resolv.conf"
    echo localhost >"$root/etc/hostname"
    tar --numeric-owner -C "$root" -cf "$out.part" . && mv "$out.part" "$out"
    rm -rf "$root"
}

step "base image $base_ref"
mkdir -p "$cache"
base_tar="$cache/debian-bookworm-slim-$(dpkg --print-architecture).tar"
# refreshed monthly: the build stage upgrades nothing it does not install
if [ -n "$(find "$base_tar" -mtime +30 2>/dev/null)" ]; then
    info "cached base older than 30 days: rebuilding"
    rm -f "$base_tar"
fi
if [ -s "$base_tar" ]; then
    info "cached base: $base_tar"
else
    if ! build_base "$base_tar"; then
        fail "debootstrap base image"
        echo "$passed passed, $failed failed"
        exit 1
    fi
fi
if timeout 300 "${PODMAN[@]}" import --change 'CMD ["bash"]' "$base_tar" "$base_ref" \
    >"$tmp/import.log" 2>&1; then
    pass "base image imported as $base_ref"
else
    cat "$tmp/import.log"
    fail "podman import of the base image"
    echo "$passed passed, $failed failed"
    exit 1
fi

# ---------------------------------------------------------------------------------------
step "podman build"
# the project() version: the first "version: '...'" that is not meson_version
version=$(grep -oE "(^|[^_[:alnum:]])version:[[:space:]]*'[^']*'" "$src/meson.build" | head -n 1 |
    sed -E "s/.*'([^']*)'/\1/")
if timeout 1500 "${PODMAN[@]}" build --isolation chroot --security-opt seccomp=unconfined \
    --network host --pull=never --build-arg "VERSION=${version:-0.0.0}" --build-arg PGO=require \
    -f "$repo/Containerfile" -t "$image" "$src" >"$tmp/build.log" 2>&1; then
    pass "podman build -f Containerfile (version ${version:-?})"
    # bench/ measures the profile-guided build: the image must be that build
    check "the binary is profile-guided (trained during the build, PGO=require)" \
        grep -q '^pgo-build: built with a profile' "$tmp/build.log"
else
    tail -n 40 "$tmp/build.log"
    fail "podman build -f Containerfile"
    cleanup
    echo "$passed passed, $failed failed"
    exit 1
fi

# ---------------------------------------------------------------------------------------
step "image metadata"
"${PODMAN[@]}" image inspect "$image" >"$tmp/inspect.json"
jqi() { jq -e "$@" "$tmp/inspect.json" >/dev/null; }
check "runs as the non-root user 10001:10001" jqi '.[0].Config.User == "10001:10001"'
check "ENTRYPOINT [\"/usr/local/bin/ringproxy\"] (exec form), no CMD" \
    jqi '.[0].Config.Entrypoint == ["/usr/local/bin/ringproxy"] and ((.[0].Config.Cmd // []) | length == 0)'
check "EXPOSE 80 (and nothing else)" jqi '(.[0].Config.ExposedPorts | keys) == ["80/tcp"]'
check "STOPSIGNAL SIGTERM" jqi '.[0].Config.StopSignal == "SIGTERM" or .[0].Config.StopSignal == "15"'
check "OCI labels title, description, version=$version, source, licenses" jqi --arg v "$version" '
    .[0].Config.Labels as $l
    | ["title", "description", "version", "source", "licenses"]
    | all(. as $k | ($l["org.opencontainers.image." + $k] // "") != "")
      and $l["org.opencontainers.image.version"] == $v'

size=$(jq '.[0].Size' "$tmp/inspect.json")
base_size=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$base_ref")
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
info "runtime image size $(mb "$size") ($size bytes); base $(mb "$base_size");" \
    "ringproxy adds $(mb $((size - base_size)))"
check "runtime image adds at most 15 MB to the base" test $((size - base_size)) -le 15000000

if mnt=$("${PODMAN[@]}" image mount "$image" 2>"$tmp/mount.err"); then
    check "/usr/local/bin/ringproxy carries cap_net_bind_service=ep" \
        bash -c "getcap '$mnt/usr/local/bin/ringproxy' | grep -q 'cap_net_bind_service[=+]ep'"
    check "/opt/section/validate.sh is an executable file" test -f "$mnt/opt/section/validate.sh" -a -x "$mnt/opt/section/validate.sh"
    check "/opt/section/prepare.sh is an executable file, container/prepare.sh" \
        bash -c "[ -x '$mnt/opt/section/prepare.sh' ] && cmp -s '$mnt/opt/section/prepare.sh' '$repo/container/prepare.sh'"
    check "/opt/proxy_config exists and is empty" \
        bash -c "[ -d '$mnt/opt/proxy_config' ] && [ -z \"\$(ls -A '$mnt/opt/proxy_config')\" ]"
    check "no build tools or libcap2-bin in the runtime image" \
        bash -c "! ls '$mnt'/usr/bin/{gcc,cc,meson,ninja} '$mnt'/usr/sbin/setcap >/dev/null 2>&1"
    "${PODMAN[@]}" image unmount "$image" >/dev/null 2>&1
else
    fail "podman image mount: $(cat "$tmp/mount.err")"
fi

# ---------------------------------------------------------------------------------------
step "seccomp profile and module metadata"
check "container/seccomp.json allows io_uring_setup/enter/register, no capability conditions" \
    quiet jq -e '([.syscalls[] | select(.action == "SCMP_ACT_ALLOW") | .names[]] as $a
        | ["io_uring_setup", "io_uring_enter", "io_uring_register"] | all(. as $n | $a | index($n)))
        and ([.syscalls[] | (.includes.caps // []), (.excludes.caps // []) | length] | add == 0)' \
    "$seccomp"
# docs/container.md "How the profile was made": the same program on this machine's default
if [ -f /usr/share/containers/seccomp.json ]; then
    derived=$(jq -S '
      .syscalls |= (
          map(select(((.includes.caps // []) | length) == 0))
        | map(if ((.excludes.caps // []) | length) > 0 then .excludes |= del(.caps) else . end)
        | . + [{
            "names": ["io_uring_enter", "io_uring_register", "io_uring_setup"],
            "action": "SCMP_ACT_ALLOW",
            "args": [],
            "comment": "ringproxy: io_uring, absent from the Docker (>= 25), containerd (>= 2.0) and podman defaults",
            "includes": {},
            "excludes": {}
          }]
      )' /usr/share/containers/seccomp.json)
    cc=$(dpkg-query -W -f '${Version}' golang-github-containers-common 2>/dev/null)
    if [ "$derived" = "$(jq -S . "$seccomp")" ]; then
        info "container/seccomp.json equals its derivation from this machine's podman default ($cc)"
    else
        info "container/seccomp.json differs from its derivation from this machine's podman default ($cc)"
    fi
fi
# .section-proxy.yaml must describe this image: Section's schema, the repository, and the
# built image's ports, entrypoint and labels (the same check as the meson test container_section)
if python3 "$repo/tests/container/check_section.py" "$repo" --image "$tmp/inspect.json" \
    >"$tmp/section.check" 2>&1; then
    pass ".section-proxy.yaml: Section's schema, the Containerfile, the code and this image ($(tail -n 1 "$tmp/section.check"))"
else
    fail ".section-proxy.yaml against Section's schema and this image"
    sed 's/^/    /' "$tmp/section.check" | tail -n 20
fi

# ---------------------------------------------------------------------------------------
step "validate.sh (C8) and prepare.sh"
# configs readable by the image's user (the temp folder itself is private)
mkcfg() {
    mkdir -p "$tmp/$1"
    chmod 0755 "$tmp/$1"
    if [ $# -gt 1 ]; then
        printf '%s\n' "$2" >"$tmp/$1/proxy.json"
        chmod 0644 "$tmp/$1/proxy.json"
    fi
}
mkcfg cfg-good '{"workers": 1, "upstream": {"connect_timeout_ms": 2000}, "access_log": {"format": "json"}}'
mkcfg cfg-bad '{"workers": "many", "upstrem": {"connect_timeout_ms": 2000}}'
mkcfg cfg-syntax '{"workers": 2,,}'
cp -r "$repo/examples/section-app/ringproxy" "$tmp/cfg-example"
chmod -R a+rX "$tmp/cfg-example"

# validate NAME [DIR]: run validate.sh offline on DIR (or the image's own empty folder);
# HOOK=prepare.sh runs that hook instead, EXTRA=(...) adds podman run options
validate() {
    local name=$1 vol=()
    [ $# -gt 1 ] && vol=(-v "$2:/opt/proxy_config:ro")
    timeout 60 "${PODMAN[@]}" run --rm --network none "${ulimits[@]}" "${vol[@]}" "${EXTRA[@]}" \
        --entrypoint "/opt/section/${HOOK:-validate.sh}" "$image" \
        >"$tmp/$name.out" 2>"$tmp/$name.err"
    echo $? >"$tmp/$name.rc"
}
EXTRA=()
# quiet_ok NAME: exit 0, nothing on stdout or stderr
quiet_ok() {
    [ "$(cat "$tmp/$1.rc")" = 0 ] && [ ! -s "$tmp/$1.out" ] && [ ! -s "$tmp/$1.err" ]
}
# loud_fail NAME PATTERN: non-zero, nothing on stdout, every stderr line "path: message",
# and one of them matching PATTERN
loud_fail() {
    [ "$(cat "$tmp/$1.rc")" != 0 ] && [ ! -s "$tmp/$1.out" ] && [ -s "$tmp/$1.err" ] &&
        ! grep -qvE '^[^ ]+: .+' "$tmp/$1.err" && grep -qE "$2" "$tmp/$1.err"
}
show() { sed 's/^/    /' "$tmp/$1.err" | head -n 5; }

validate v-empty
check "no proxy.json: exit 0, no output" quiet_ok v-empty || show v-empty
validate v-good "$tmp/cfg-good"
check "valid proxy.json: exit 0, no output" quiet_ok v-good || show v-good
validate v-example "$tmp/cfg-example"
check "examples/section-app/ringproxy/proxy.json validates" quiet_ok v-example || show v-example
validate v-bad "$tmp/cfg-bad"
check "invalid proxy.json: exit $(cat "$tmp/v-bad.rc"), 'path: message' on stderr, stdout empty" \
    loud_fail v-bad '^/(workers|upstrem)'
show v-bad
validate v-syntax "$tmp/cfg-syntax"
check "syntax error: exit $(cat "$tmp/v-syntax.rc"), 'proxy.json:LINE:COLUMN: ...' on stderr" \
    loud_fail v-syntax '^proxy\.json:[0-9]+:[0-9]+'
show v-syntax

# prepare.sh: the same check, and that the proxy binary can be executed in the container
HOOK=prepare.sh validate p-empty
check "prepare.sh, no proxy.json: exit 0, no output" quiet_ok p-empty || show p-empty
HOOK=prepare.sh validate p-example "$tmp/cfg-example"
check "prepare.sh, the example folder: exit 0, no output" quiet_ok p-example || show p-example
HOOK=prepare.sh validate p-bad "$tmp/cfg-bad"
check "prepare.sh, invalid proxy.json: exit $(cat "$tmp/p-bad.rc"), validate.sh's lines on stderr" \
    loud_fail p-bad '^/(workers|upstrem)'
EXTRA=(--cap-drop all)
HOOK=prepare.sh validate p-nocap
EXTRA=()
check "prepare.sh under --cap-drop all: exit $(cat "$tmp/p-nocap.rc"), names NET_BIND_SERVICE on stderr" \
    bash -c "[ \"\$(cat '$tmp/p-nocap.rc')\" != 0 ] && grep -q 'lacks NET_BIND_SERVICE' '$tmp/p-nocap.err'"
show p-nocap

# ---------------------------------------------------------------------------------------
step "the proxy"
run_flags=(--network host --add-host "next-hop:$origin_ip" "${ulimits[@]}"
    --security-opt "seccomp=$seccomp" --cap-drop all --cap-add net_bind_service --read-only)

out=$(timeout 60 "${PODMAN[@]}" run --rm "${run_flags[@]}" "$image" --version 2>"$tmp/version.err")
check "ringproxy --version (arguments append to the ENTRYPOINT): ${out:-<nothing>}" \
    test -n "$out"

# the addresses must be free on this machine
port_free() {
    python3 -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))' "$1" "$2" 2>/dev/null
}
busy=
for a in "$proxy_addr" "$origin_ip:80" "$admin_addr"; do
    port_free "${a%:*}" "${a##*:}" || busy="$busy $a"
done

# wait_http URL SECONDS: until anything answers on URL
wait_http() {
    local i
    for ((i = 0; i < $2 * 5; i++)); do
        curl -s -o /dev/null --max-time 1 "$1" && return 0
        [ -n "$run_pid" ] && ! kill -0 "$run_pid" 2>/dev/null && return 1
        sleep 0.2
    done
    return 1
}

if [ -n "$busy" ]; then
    fail "addresses in use on this machine:$busy (the proxy tests need them)"
else
    # origin: a static file server on next-hop's address
    mkdir -p "$tmp/www"
    token="ringproxy-image-test-$$-$RANDOM"
    echo "$token" >"$tmp/www/hello.txt"
    python3 -m http.server --bind "$origin_ip" --directory "$tmp/www" 80 \
        >"$tmp/origin.log" 2>&1 &
    origin_pid=$!
    wait_http "http://$origin_ip/hello.txt" 10 || fail "origin on $origin_ip:80 did not start"

    # podman's own default seccomp profile blocks io_uring: the proxy runs all the same, on
    # epoll (engine auto), says so in one warn line, and serves (issue #25)
    cname=ringproxy-it-noseccomp
    "${PODMAN[@]}" run --name "$cname" --network host "${ulimits[@]}" \
        --add-host "next-hop:$origin_ip" "$image" --listen "$proxy_addr" \
        >"$tmp/noseccomp.out" 2>"$tmp/noseccomp.err" &
    run_pid=$!
    if wait_http "http://$proxy_addr/" 20; then
        code=$(curl -sS --max-time 10 -o "$tmp/body-noseccomp" -w '%{http_code}' \
            "http://$proxy_addr/hello.txt" 2>/dev/null)
        check "under podman's default seccomp it serves: GET /hello.txt $code, origin's body" \
            bash -c "[ '$code' = 200 ] && [ \"\$(cat '$tmp/body-noseccomp')\" = '$token' ]"
        # the start line: "ringproxy VERSION, engine NAME: ..."
        engine=$(grep -o ', engine [a-z_]*:' "$tmp/noseccomp.err" | head -n 1 | sed 's/^, //; s/:$//')
        if grep -q 'io_uring_setup' "$tmp/noseccomp.err"; then
            check "io_uring refused there: one warn line, then $engine" \
                bash -c "[ \"\$(grep -c 'using epoll' '$tmp/noseccomp.err')\" = 1 ] && [ '$engine' = 'engine epoll' ]"
        else
            info "this machine's podman default allows io_uring: $engine"
        fi
    else
        fail "under podman's default seccomp the proxy did not serve"
    fi
    timeout 30 "${PODMAN[@]}" rm -f -t 2 "$cname" >/dev/null 2>&1
    wait "$run_pid" 2>/dev/null
    run_pid=
    sed 's/^/    /' "$tmp/noseccomp.err" | head -n 3

    # the documented hardened run: container/seccomp.json, only CAP_NET_BIND_SERVICE,
    # read-only root, config mounted read-only
    cname=ringproxy-it
    "${PODMAN[@]}" run --name "$cname" "${run_flags[@]}" \
        -v "$tmp/cfg-example:/opt/proxy_config:ro" "$image" --listen "$proxy_addr" \
        >"$tmp/proxy.out" 2>"$tmp/proxy.err" &
    run_pid=$!
    if wait_http "http://$proxy_addr/" 20; then
        pass "proxy listening on $proxy_addr (non-root, port 80, container/seccomp.json)"
        id="it-$$-$RANDOM"
        code=$(curl -sS --max-time 10 -o "$tmp/body" -w '%{http_code}' -H 'Host: example.test' \
            -H "section-io-id: $id" -H 'User-Agent: ringproxy-image-test' \
            -H 'X-Forwarded-Proto: https' -H 'True-Client-IP: 192.0.2.7' \
            "http://$proxy_addr/hello.txt" 2>"$tmp/curl.err")
        check "GET /hello.txt through the proxy to next-hop: $code, origin's body" \
            bash -c "[ '$code' = 200 ] && [ \"\$(cat '$tmp/body')\" = '$token' ]"
        code=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://$admin_addr/healthz")
        check "admin GET http://$admin_addr/healthz: $code" test "$code" = 200
        code=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://$admin_addr/metrics")
        check "admin GET http://$admin_addr/metrics: $code" test "$code" = 200

        pid=$("${PODMAN[@]}" inspect --format '{{.State.Pid}}' "$cname" 2>/dev/null)
        uid=$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
        capeff=$(awk '/^CapEff:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
        check "process uid ${uid:-?}, effective capabilities ${capeff:-?} (only NET_BIND_SERVICE)" \
            test "${uid:-x}:${capeff:-x}" = "10001:0000000000000400"

        # graceful stop: podman stop sends the image's STOPSIGNAL, SIGKILL after 10 s
        t0=$(date +%s%N)
        timeout 30 "${PODMAN[@]}" stop -t 10 "$cname" >/dev/null 2>&1
        for ((i = 0; i < 100; i++)); do kill -0 "$run_pid" 2>/dev/null || break; sleep 0.2; done
        wait "$run_pid" 2>/dev/null
        rc=$?
        run_pid=
        ms=$((($(date +%s%N) - t0) / 1000000))
        st=$("${PODMAN[@]}" inspect --format '{{.State.ExitCode}}' "$cname" 2>/dev/null)
        check "SIGTERM (podman stop -t 10): exit code ${st:-?} (podman run $rc) after $ms ms" \
            test "${st:-x}:$rc" = "0:0" -a "$ms" -lt 5000

        # access log: JSON lines on stdout only
        python3 - "$tmp/proxy.out" "$id" >"$tmp/log.check" 2>&1 <<'EOF'
import json, sys
lines = [l for l in open(sys.argv[1], encoding="utf-8", errors="replace").read().splitlines() if l.strip()]
bad = [l for l in lines if not l.lstrip().startswith("{")]
ours = []
for l in lines:
    try:
        o = json.loads(l)
    except ValueError:
        bad.append(l)
        continue
    if isinstance(o, dict) and o.get("section_io_id") == sys.argv[2]:
        ours.append(o)
if bad:
    print("stdout lines that are not JSON:", bad[:3])
if len(ours) != 1:
    print("expected one access line with section_io_id", sys.argv[2], "got", len(ours))
    sys.exit(1)
o = ours[0]
print(json.dumps(o, sort_keys=True))
ok = str(o.get("status")) == "200" and o.get("hostname") == "example.test" \
     and str(o.get("bytes", "-")) not in ("-", "", "0")
want = ["time", "time_taken_ms", "request", "method", "path", "status", "bytes",
        "response_body_bytes", "content_type", "hostname", "referrer", "useragent",
        "client_ip", "http_x_forwarded_proto", "upstream_addr", "upstream_status",
        "section_io_id", "section_io_tag"]
missing = [k for k in want if k not in o]
if missing:
    print("MISSING", " ".join(missing))
sys.exit(0 if ok and not bad else 1)
EOF
        lrc=$?
        check "stdout: the request's JSON access line (status 200, hostname, bytes), only JSON" \
            test "$lrc" = 0
        missing=$(sed -n 's/^MISSING //p' "$tmp/log.check")
        check "access line has every fixed field of docs/contract.md${missing:+ (missing: $missing)}" \
            test -z "$missing"
        sed '/^MISSING /d; s/^/    /' "$tmp/log.check" | cut -c1-400
        check "stderr carries no access line" bash -c "! grep -q -- '$id' '$tmp/proxy.err'"
    else
        fail "proxy did not answer on $proxy_addr within 20 s"
        sed 's/^/    /' "$tmp/proxy.err" | tail -n 10
        kill "$run_pid" 2>/dev/null
    fi
    timeout 30 "${PODMAN[@]}" rm -f -t 0 "$cname" >/dev/null 2>&1
    if [ -n "$run_pid" ]; then wait "$run_pid" 2>/dev/null; run_pid=; fi

    # Port 80 as user 10001 with the runtime's default capabilities: no --cap-* flag, only
    # the seccomp profile. --network host keeps the host's ip_unprivileged_port_start
    # (docs/container.md "Port 80 without extra flags").
    info "this machine's net.ipv4.ip_unprivileged_port_start: $(cat /proc/sys/net/ipv4/ip_unprivileged_port_start 2>/dev/null)"
    cname=ringproxy-it-defcaps
    "${PODMAN[@]}" run --name "$cname" --network host --add-host "next-hop:$origin_ip" "${ulimits[@]}" \
        --security-opt "seccomp=$seccomp" "$image" --listen "$proxy_addr" \
        >"$tmp/defcaps.out" 2>"$tmp/defcaps.err" &
    run_pid=$!
    code=
    if wait_http "http://$proxy_addr/" 20; then
        code=$(curl -s --max-time 10 -o "$tmp/body2" -w '%{http_code}' "http://$proxy_addr/hello.txt")
    fi
    check "the runtime's default capabilities (no --cap-* flag): port 80 as user 10001, GET: ${code:-no answer}" \
        test "$code" = 200 || sed 's/^/    /' "$tmp/defcaps.err" | tail -n 5
    timeout 30 "${PODMAN[@]}" rm -f -t 10 "$cname" >/dev/null 2>&1
    if [ -n "$run_pid" ]; then wait "$run_pid" 2>/dev/null; run_pid=; fi

    # Without NET_BIND_SERVICE in the bounding set the kernel refuses to execute a binary
    # carrying it as a file capability: the container cannot start at all.
    timeout 60 "${PODMAN[@]}" run --rm --network host "${ulimits[@]}" --cap-drop all \
        --security-opt "seccomp=$seccomp" "$image" --version >"$tmp/nocap.out" 2>"$tmp/nocap.err"
    rc=$?
    check "--cap-drop all without net_bind_service: does not start (exit $rc, 'operation not permitted')" \
        bash -c "[ $rc != 0 ] && grep -qi 'operation not permitted' '$tmp/nocap.err'"
    sed 's/^/    /' "$tmp/nocap.err" | head -n 2
    kill "$origin_pid" 2>/dev/null
    wait "$origin_pid" 2>/dev/null
    origin_pid=
fi

# ---------------------------------------------------------------------------------------
step "cleanup"
store=$tmp
cleanup
left=$(ps -eo pid=,args= | grep -F -- "$store" | grep -v grep)
check "nothing left: no process, mount or folder of this run" \
    bash -c "[ -z '$left' ] && ! grep -qF '$store' /proc/mounts && { [ '${RINGPROXY_IT_KEEP:-0}' = 1 ] || [ ! -e '$store' ]; }"
[ -n "$left" ] && echo "$left"

info "runtime image size: $(mb "$size") ($size bytes)"
info "total $(($(date +%s) - t_start)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
