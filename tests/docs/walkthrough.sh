#!/usr/bin/env bash
# Runs README.md's "Your first config" block as written, in a scratch
# folder: the build step is left out (the build under test, at $1, is the
# one) and build/ means that folder; the ports are free ones. Checks what
# the text promises: the validator's "config ok", the origin's answer, the
# access-log line with its http_x_request_id field, the metrics line.
set -uo pipefail
build=$(cd "$1" && pwd)
readme=$2/README.md
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

block=$(awk '/^## Your first config/ {s = 1} s && /^```sh/ {b = 1; next} b && /^```/ {exit} b' "$readme")
if [ -z "$block" ]; then
    echo "README.md has no \"Your first config\" block"
    echo "0 passed, 1 failed"
    exit 1
fi
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
ORIGIN_PORT=$(free_port)
ADMIN_PORT=$(free_port)
export PORT ORIGIN_PORT ADMIN_PORT
script=$(printf '%s\n' "$block" | grep -v '^meson ' | sed "s#build/#$build/#g")
cd "$work" || exit 1
# bounded: the block starts two servers and stops them itself
out=$(timeout 30 bash -c "set -m; $script" 2>&1)
fail=0
check() {
    if grep -q -- "$1" <<<"$out"; then
        echo "ok: $2"
    else
        echo "FAILED: $2"
        fail=1
    fi
}
check '^config ok$' "the validator accepts the config"
check '^abcde$' "the origin's answer through the proxy"
check '"http_x_request_id":"first"' "the access-log line with the configured header"
check '^ringproxy_requests_total{class="2xx"} 1$' "the metrics count the request"
if [ $fail -ne 0 ]; then
    printf '%s\n' "---- what the block printed:" "$out"
    echo "0 passed, 1 failed"
    exit 1
fi
echo "1 passed, 0 failed"
