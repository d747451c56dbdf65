#!/bin/sh
# /opt/section/prepare.sh: Section runs it in the module's container before a deployment or a
# scaling event serves traffic (module-build-assets, example-simple). A non-zero exit stops
# the deployment; stderr is the reason, stdout is ignored. Silent and exit 0 when all is well.
#
#   prepare.sh [DIR]     DIR: the config folder (default /opt/proxy_config)
#
# 1. the config is one the proxy starts with: the same check as validate.sh (C8), which
#    passes when there is no proxy.json, or no folder at all (built-in defaults);
# 2. the proxy binary can be executed here: its libraries resolve, and the runtime left
#    NET_BIND_SERVICE in the bounding set (without it the kernel refuses to execute a
#    binary with a file capability, and the container could not start at all).
# It does not start the proxy: io_uring and port 80 are checked by the proxy itself at start.
dir=${1:-/opt/proxy_config}
bin=/usr/local/bin/ringproxy
validate=/opt/section/validate.sh

"$validate" "$dir" || exit 1

if ! out=$("$bin" --version 2>&1); then
    echo "prepare.sh: $bin cannot run here${out:+: $out}" >&2
    # CapBnd bit 10 is CAP_NET_BIND_SERVICE
    bnd=$(sed -n 's/^CapBnd:[[:space:]]*//p' /proc/self/status 2>/dev/null)
    if [ -n "$bnd" ] && [ $(((0x$bnd >> 10) & 1)) -eq 0 ]; then
        echo "prepare.sh: the container's capability bounding set lacks NET_BIND_SERVICE, which" \
            "the binary's file capability needs to be executed (keep it, or add it back)" >&2
    fi
    exit 1
fi
exit 0
