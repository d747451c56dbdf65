#!/usr/bin/env python3
"""Helpers for bench/run.sh: measuring one run, the idle-connection test and
the report (median table, CSV, chart). Standard library only.

Subcommands:
  ports N                      print N free loopback TCP ports
  wait URL BYTES TIMEOUT_S     wait until GET URL answers 200 with BYTES body bytes
  tree ROOT                    print the PIDs of ROOT and all its descendants
  run ...                      one wrk run against a target, appended to a CSV
  idle ...                     idle keep-alive connection memory of one target
  report DIR                   aggregate DIR/raw.csv etc. into the table + chart
  floor DIR...                 ringproxy ÷ relay pooled over several runs' repetitions
  instr ...                    instructions per request from a callgrind dump (--instr)

Nothing here asserts timings: every figure is reported, never judged.
"""
import argparse
import csv
import errno
import http.client
import os
import resource
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")

# Order and roles of targets in the table.
TARGET_ORDER = [
    "ringproxy", "ringproxy-nolog", "ringproxy-2w",
    "nginx", "nginx-nolog",
    "haproxy", "haproxy-nolog",
    "relay", "origin",
]
PEERS = ["nginx", "haproxy"]  # the "best peer" is the better of these (logs on)


# --------------------------------------------------------------------------
# /proc helpers

def _stat_fields(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read().decode("ascii", "replace")
    rest = data[data.rindex(")") + 2:].split()
    return rest  # rest[0] is field 3 (state)


def tree(root):
    """PIDs of root and its descendants (processes, not threads)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            ppid = int(_stat_fields(d)[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        if not os.path.exists(f"/proc/{p}"):
            continue
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_ticks(pids):
    """utime+stime (+ reaped children's) of the processes, all their threads."""
    total = 0
    for p in pids:
        try:
            r = _stat_fields(p)
            total += int(r[11]) + int(r[12]) + int(r[13]) + int(r[14])
        except (OSError, ValueError, IndexError):
            pass
    return total


def status_kib(pids, key):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def cpu_stat(cpus):
    """(busy, total) ticks of the given CPUs from /proc/stat."""
    busy = total = 0
    want = {f"cpu{c}" for c in cpus}
    with open("/proc/stat") as f:
        for line in f:
            fl = line.split()
            if fl and fl[0] in want:
                v = [int(x) for x in fl[1:9]]  # user nice system idle iowait irq softirq steal
                total += sum(v)
                busy += sum(v) - v[3] - v[4]
    return busy, total


def parse_cpus(spec):
    out = []
    for part in (spec or "").split(","):
        if not part:
            continue
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


def reset_hwm(pids):
    for p in pids:
        try:
            with open(f"/proc/{p}/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
        except OSError:
            pass


def alive(pid):
    try:
        st = _stat_fields(pid)[0]
        return st not in ("Z", "X")
    except (OSError, IndexError):
        return False


def listen_backlog(port):
    """Current accept-queue length of the loopback listener on port, or None."""
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    fl = line.split()
                    if fl[3] != "0A":
                        continue
                    if int(fl[1].rsplit(":", 1)[1], 16) == port:
                        return int(fl[4].split(":")[1], 16)
        except OSError:
            pass
    return None


# --------------------------------------------------------------------------
# small commands

def cmd_ports(a):
    socks, ports = [], []
    for _ in range(a.n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    print(" ".join(map(str, ports)))


def cmd_wait(a):
    url = a.url
    assert url.startswith("http://")
    hostport, _, path = url[7:].partition("/")
    host, _, port = hostport.rpartition(":")
    deadline = time.monotonic() + a.timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection(host, int(port), timeout=2)
            c.request("GET", "/" + path)
            r = c.getresponse()
            body = r.read()
            c.close()
            if r.status == 200 and len(body) == a.bytes:
                return 0
            last = f"status {r.status}, {len(body)} body bytes"
        except (OSError, http.client.HTTPException) as e:
            last = str(e) or type(e).__name__
        time.sleep(0.1)
    print(f"{url}: not ready after {a.timeout}s ({last})", file=sys.stderr)
    return 1


def cmd_tree(a):
    print(" ".join(map(str, tree(a.root))))


# --------------------------------------------------------------------------
# one measured run

RAW_FIELDS = ["rep", "target", "size", "bytes", "requests", "duration_s", "rps",
              "p50_us", "p99_us", "mean_us", "cpu_ticks", "cpu_us_per_req",
              "peak_rss_kib", "noise_pct", "errors", "resp_bytes_per_req", "syscalls",
              "syscalls_per_req", "note"]


def parse_wrk(out):
    for line in out.splitlines():
        if line.startswith("BENCH "):
            kv = dict(x.split("=", 1) for x in line.split()[1:])
            return {k: float(v) for k, v in kv.items()}
    return None


def _wait_perf_attached(perf, limit_s=10.0):
    """Until perf has its counters open (a cold perf on a busy machine can take
    over a second), so that the load never starts before counting does."""
    end = time.monotonic() + limit_s
    while time.monotonic() < end and perf.poll() is None:
        try:
            fds = os.listdir(f"/proc/{perf.pid}/fd")
        except OSError:
            break
        for fd in fds:
            try:
                if "perf_event" in os.readlink(f"/proc/{perf.pid}/fd/{fd}"):
                    time.sleep(0.1)
                    return
            except OSError:
                pass
        time.sleep(0.05)


def parse_perf(path):
    try:
        with open(path) as f:
            for line in f:
                fl = line.strip().split(",")
                if len(fl) >= 3 and "raw_syscalls:sys_enter" in line:
                    try:
                        return int(float(fl[0]))
                    except ValueError:
                        return None
    except OSError:
        pass
    return None


def cmd_run(a):
    row = {k: "" for k in RAW_FIELDS}
    row.update(rep=a.rep, target=a.target, size=a.size, bytes=a.bytes)
    if not alive(a.root):
        row["note"] = "target not running"
        _append(a.out, row)
        print(f"  {a.target:16} {a.size:>5}  target not running", file=sys.stderr)
        return 0
    pids = tree(a.root)
    reset_hwm(pids)
    perf = None
    if a.perf:
        fd, perf_out = tempfile.mkstemp(prefix="perf.", suffix=".txt")
        os.close(fd)
        perf = subprocess.Popen(
            ["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-o", perf_out,
             "-p", ",".join(map(str, pids))],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_perf_attached(perf)
    pcpus = parse_cpus(a.proxy_cpus)
    c0 = cpu_stat(pcpus) if pcpus else None
    t0 = cpu_ticks(pids)
    cmd = ["wrk", "-t", str(a.threads), "-c", str(a.conns), "-d", f"{a.duration}s",
           "--timeout", "5s", "-s", a.script, a.url]
    if a.load_cpus:
        cmd = ["taskset", "-c", a.load_cpus] + cmd
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.duration + 30)
        out = p.stdout
    except subprocess.TimeoutExpired:
        out = ""
    t1 = cpu_ticks(pids)
    c1 = cpu_stat(pcpus) if pcpus else None
    if perf is not None:
        perf.send_signal(signal.SIGINT)
        try:
            perf.wait(timeout=10)
        except subprocess.TimeoutExpired:
            perf.kill()
            perf.wait()
    hwm = status_kib(pids, "VmHWM")
    w = parse_wrk(out)
    if not w or w["requests"] <= 0:
        row["note"] = "wrk: no completed requests" + ("" if alive(a.root) else "; target died")
        _append(a.out, row)
        print(f"  {a.target:16} {a.size:>5}  {row['note']}", file=sys.stderr)
        return 0
    req = w["requests"]
    dur = w["duration_us"] / 1e6
    errors = int(w["connect"] + w["read"] + w["write"] + w["status"] + w["timeout"])
    ticks = t1 - t0
    row.update(requests=int(req), duration_s=f"{dur:.3f}", rps=f"{req / dur:.1f}",
               p50_us=f"{w['p50_us']:.1f}", p99_us=f"{w['p99_us']:.1f}",
               mean_us=f"{w['mean_us']:.1f}", cpu_ticks=ticks,
               cpu_us_per_req=f"{ticks * 1e6 / CLK_TCK / req:.3f}",
               peak_rss_kib=hwm, errors=errors,
               resp_bytes_per_req=f"{w['bytes'] / req:.0f}")
    if c0 and c1 and c1[1] > c0[1]:
        # Share of the proxy's core used by anything but the proxy: noise.
        row["noise_pct"] = f"{max(0.0, 100 * ((c1[0] - c0[0]) - ticks) / (c1[1] - c0[1])):.1f}"
    if w["bytes"] / req < a.bytes:
        row["note"] = "short responses"
    if perf is not None:
        n = parse_perf(perf_out)
        os.unlink(perf_out)
        if n is not None:
            row.update(syscalls=n, syscalls_per_req=f"{n / req:.3f}")
    if not alive(a.root):
        row["note"] = (row["note"] + "; target died").lstrip("; ")
    _append(a.out, row)
    sc = f" sys/req {row['syscalls_per_req']}" if perf is not None else ""
    print(f"  {a.target:16} {a.size:>5}  {req / dur:10.0f} req/s  p99 {w['p99_us'] / 1000:7.2f} ms"
          f"  cpu {float(row['cpu_us_per_req']):7.2f} us/req{sc}"
          f"{'  errors ' + str(errors) if errors else ''}"
          f"{'  ' + row['note'] if row['note'] else ''}", file=sys.stderr)
    return 0


def _append(path, row, fields=RAW_FIELDS):
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        if new:
            w.writeheader()
        w.writerow(row)


# --------------------------------------------------------------------------
# idle keep-alive connections

IDLE_FIELDS = ["target", "conns", "connected", "answered", "base_rss_kib",
               "rss_after_connect_kib", "rss_after_request_kib",
               "bytes_per_conn_connected", "bytes_per_conn_after_request", "seconds", "note"]


def cmd_idle(a):
    t_start = time.monotonic()
    deadline = t_start + a.timeout
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, a.conns + 256) if hard != resource.RLIM_INFINITY else a.conns + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    n = min(a.conns, want - 64)
    row = {k: "" for k in IDLE_FIELDS}
    row.update(target=a.target, conns=n)
    if n < a.conns:
        row["note"] = f"fd limit {hard}: {n} connections"
    if not alive(a.root):
        row["note"] = "target not running"
        _append(a.out, row, IDLE_FIELDS)
        return 0
    time.sleep(0.5)
    base = status_kib(tree(a.root), "VmRSS")
    addr = ("127.0.0.1", a.port)

    # Phase 1: n established connections, no bytes sent.
    sel = selectors.DefaultSelector()
    socks, pending, failed = [], 0, 0
    i = 0
    while (i < n or pending) and time.monotonic() < deadline:
        while i < n and pending < 256:
            s = socket.socket()
            s.setblocking(False)
            rc = s.connect_ex(addr)
            if rc in (0, errno.EINPROGRESS):
                sel.register(s, selectors.EVENT_WRITE)
                pending += 1
            else:
                failed += 1
                s.close()
            i += 1
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            sel.unregister(s)
            pending -= 1
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                socks.append(s)
            else:
                failed += 1
                s.close()
        # Let the proxy keep up with accepting (a full backlog drops SYNs).
        while (listen_backlog(a.port) or 0) > 512 and time.monotonic() < deadline:
            time.sleep(0.01)
    for key in list(sel.get_map().values()):
        sel.unregister(key.fileobj)
        key.fileobj.close()
    # Wait until the proxy has accepted everything, then let it settle.
    while (listen_backlog(a.port) or 0) > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    rss1 = status_kib(tree(a.root), "VmRSS")
    row.update(connected=len(socks), base_rss_kib=base, rss_after_connect_kib=rss1)

    # Phase 2: one request on each, in batches, then all idle in keep-alive.
    req = (f"GET {a.path} HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench-idle\r\n\r\n").encode()
    answered = 0
    alive_socks = []
    for b in range(0, len(socks), a.batch):
        if time.monotonic() > deadline:
            break
        batch = socks[b:b + a.batch]
        bufs = {}
        for s in batch:
            try:
                s.send(req)
                sel.register(s, selectors.EVENT_READ)
                bufs[s] = b""
            except OSError:
                pass
        bdeadline = min(deadline, time.monotonic() + 10)
        while bufs and time.monotonic() < bdeadline:
            for key, _ in sel.select(timeout=0.5):
                s = key.fileobj
                try:
                    chunk = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    sel.unregister(s)
                    del bufs[s]
                    continue
                bufs[s] += chunk
                head, sep, body = bufs[s].partition(b"\r\n\r\n")
                if sep:
                    clen = 0
                    for line in head.split(b"\r\n")[1:]:
                        k, _, v = line.partition(b":")
                        if k.strip().lower() == b"content-length":
                            clen = int(v.strip())
                    if len(body) >= clen:
                        sel.unregister(s)
                        del bufs[s]
                        if head.startswith(b"HTTP/1.1 200"):
                            answered += 1
                            alive_socks.append(s)
        for s in list(bufs):
            sel.unregister(s)
    time.sleep(1.0)
    rss2 = status_kib(tree(a.root), "VmRSS")
    row.update(answered=answered, rss_after_request_kib=rss2)
    if socks:
        row["bytes_per_conn_connected"] = f"{(rss1 - base) * 1024 / len(socks):.0f}"
    if answered:
        row["bytes_per_conn_after_request"] = f"{(rss2 - base) * 1024 / answered:.0f}"
    for s in socks:
        s.close()
    row["seconds"] = f"{time.monotonic() - t_start:.1f}"
    if time.monotonic() > deadline:
        row["note"] = (row["note"] + "; timed out").lstrip("; ")
    _append(a.out, row, IDLE_FIELDS)
    print(f"  {a.target:16} {len(socks)} connected: {row['bytes_per_conn_connected'] or '?'} B/conn;"
          f" {answered} after a request: {row['bytes_per_conn_after_request'] or '?'} B/conn"
          f"  ({row['seconds']} s)", file=sys.stderr)
    # Give the proxy a moment to reap the closed connections.
    time.sleep(0.5)
    return 0


# --------------------------------------------------------------------------
# report

def _read_csv(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _med(vals):
    vals = [float(v) for v in vals if v not in ("", None)]
    return statistics.median(vals) if vals else None


def _fmt(v, nd=1):
    if v is None:
        return "n/a"
    if abs(v) >= 1000 and nd <= 1:
        return f"{v:,.0f}"
    return f"{v:.{nd}f}"


def _size_key(label):
    s = label.lower()
    mult = {"k": 1024, "m": 1024 * 1024}.get(s[-1:], 1)
    return int(s.rstrip("km")) * mult


def _paired(raw, size, target):
    """target's CPU/request ÷ the relay's, one ratio per repetition that measured both."""
    by_rep = {}
    for r in raw:
        if r["size"] == size and r["target"] in (target, "relay") and r["requests"] not in ("", "0"):
            by_rep.setdefault(r["rep"], {})[r["target"]] = float(r["cpu_us_per_req"])
    return [v[target] / v["relay"] for v in by_rep.values() if target in v and v.get("relay")]


def cmd_floor(a):
    """ringproxy ÷ relay pooled over several result folders: every repetition's
    paired ratio counts once, so runs of different lengths weigh by their
    repetitions."""
    pool = {}
    for d in a.dirs:
        raw = _read_csv(os.path.join(d, "raw.csv"))
        for s in {r["size"] for r in raw}:
            pool.setdefault(s, []).extend(_paired(raw, s, "ringproxy"))
    print("| body | ringproxy ÷ relay | middle half | range | repetitions | at or below 1.10 |")
    print("|---:|---:|---|---|---:|---:|")
    for s in sorted(pool, key=_size_key):
        v = sorted(pool[s])
        if not v:
            continue
        n = len(v)
        print(f"| {s} | {statistics.median(v):.2f} | {v[n // 4]:.2f}–{v[(3 * n) // 4]:.2f} "
              f"| {v[0]:.2f}–{v[-1]:.2f} | {n} | {sum(1 for x in v if x <= 1.10)} |")
    return 0


def cmd_report(a):
    d = a.dir
    raw = _read_csv(os.path.join(d, "raw.csv"))
    sysc = _read_csv(os.path.join(d, "syscalls.csv"))
    idle = _read_csv(os.path.join(d, "idle.csv"))
    meta = ""
    if os.path.exists(os.path.join(d, "meta.md")):
        with open(os.path.join(d, "meta.md")) as f:
            meta = f.read()
    targets = [t for t in TARGET_ORDER if any(r["target"] == t for r in raw + sysc)]
    targets += sorted({r["target"] for r in raw} - set(targets))
    sizes = sorted({r["size"] for r in raw + sysc}, key=_size_key)

    agg = {}
    for t in targets:
        for s in sizes:
            rs = [r for r in raw if r["target"] == t and r["size"] == s]
            ok = [r for r in rs if r["requests"] not in ("", "0")]
            ss = [r for r in sysc if r["target"] == t and r["size"] == s]
            if not rs and not ss:
                continue
            cpu = [float(r["cpu_us_per_req"]) for r in ok]
            m = {
                "runs": len(ok), "of": len(rs),
                "rps": _med(r["rps"] for r in ok),
                "p50": _med(float(r["p50_us"]) / 1000 for r in ok),
                "p99": _med(float(r["p99_us"]) / 1000 for r in ok),
                "cpu": _med(cpu),
                "spread": (100 * (max(cpu) - min(cpu)) / statistics.median(cpu)
                           if len(cpu) > 1 and statistics.median(cpu) > 0 else None),
                "sys": _med(r["syscalls_per_req"] for r in ss),
                "rss": _med(float(r["peak_rss_kib"]) / 1024 for r in ok),
                "noise": _med(r.get("noise_pct", "") for r in ok),
                "errors": sum(int(r["errors"] or 0) for r in ok),
                "notes": sorted({r["note"] for r in rs + ss if r["note"]}),
            }
            agg[(t, s)] = m

    lines = []
    lines.append("| target | body | req/s | p50 ms | p99 ms | CPU µs/req | CPU spread % | syscalls/req | peak RSS MiB | noise % | errors | runs |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    csv_rows = []
    for s in sizes:
        for t in targets:
            m = agg.get((t, s))
            if not m:
                continue
            name = t + {"relay": " (floor)", "origin": " (direct)",
                        "ringproxy-2w": " (2 workers, one CPU)"}.get(t, "")
            lines.append(
                f"| {name} | {s} | {_fmt(m['rps'], 0)} | {_fmt(m['p50'], 3)} | {_fmt(m['p99'], 3)} "
                f"| {_fmt(m['cpu'], 2)} | {_fmt(m['spread'], 0)} | {_fmt(m['sys'], 2)} | {_fmt(m['rss'], 1)} "
                f"| {_fmt(m['noise'], 0)} | {m['errors']} | {m['runs']}/{m['of']}{' — ' + '; '.join(m['notes']) if m['notes'] else ''} |")
            csv_rows.append({"target": t, "size": s, "bytes": _size_key(s), "rps": m["rps"],
                             "p50_ms": m["p50"], "p99_ms": m["p99"], "cpu_us_per_req": m["cpu"],
                             "cpu_spread_pct": m["spread"], "syscalls_per_req": m["sys"],
                             "peak_rss_mib": m["rss"], "noise_pct": m["noise"], "errors": m["errors"],
                             "runs": m["runs"], "notes": "; ".join(m["notes"])})

    # ringproxy ÷ best peer
    ratio_lines = []
    ratio_rows = []
    for s in sizes:
        rp = agg.get(("ringproxy", s))
        peers = [agg[(p, s)] for p in PEERS if (p, s) in agg and agg[(p, s)]["cpu"] is not None]
        fl = agg.get(("relay", s))
        if not peers:
            continue
        best_cpu = min(p["cpu"] for p in peers)
        best_p99 = min(p["p99"] for p in peers)
        best_rps = max(p["rps"] for p in peers)
        goal = "≤ 0.8" if _size_key(s) >= 1024 * 1024 else "≤ 0.6" if _size_key(s) <= 4096 else "—"
        if rp and rp["cpu"] is not None:
            r_cpu, r_p99, r_rps = rp["cpu"] / best_cpu, rp["p99"] / best_p99, rp["rps"] / best_rps
        else:
            r_cpu = r_p99 = r_rps = None
        floor = fl["cpu"] / best_cpu if fl and fl["cpu"] is not None else None
        ratio_lines.append(f"| {s} | {_fmt(best_cpu, 2)} | {_fmt(r_cpu, 2)} | {goal} | {_fmt(r_p99, 2)} | ≤ 1.0 "
                           f"| {_fmt(r_rps, 2)} | {_fmt(floor, 2)} |")
        ratio_rows.append({"size": s, "best_peer_cpu_us": best_cpu, "cpu_ratio": r_cpu,
                           "p99_ratio": r_p99, "rps_ratio": r_rps, "floor_cpu_ratio": floor})

    # ringproxy ÷ floor, paired: the two run next to each other in every
    # repetition, so each ratio is taken under the same machine conditions
    floor_lines = []
    for s in sizes:
        on, off = _paired(raw, s, "ringproxy"), _paired(raw, s, "ringproxy-nolog")
        if not on:
            continue
        row = next((r for r in ratio_rows if r["size"] == s), None)
        peer_goal = 0.8 if _size_key(s) >= 1024 * 1024 else 0.6 if _size_key(s) <= 4096 else None
        below = row and row["floor_cpu_ratio"] is not None and peer_goal is not None and row["floor_cpu_ratio"] > peer_goal
        goal = ("≤ 1.10 (the peer goal lies below the floor)" if below
                else "— (no peer in this run)" if row is None else "—")
        floor_lines.append(f"| {s} | {_fmt(statistics.median(on), 2)} | {_fmt(min(on), 2)}–{_fmt(max(on), 2)} | {len(on)} "
                           f"| {_fmt(statistics.median(off), 2) if off else 'n/a'} | {goal} |")
        if row:
            row.update({"floor_paired_median": statistics.median(on), "floor_paired_min": min(on),
                        "floor_paired_max": max(on)})

    out = []
    if meta:
        out.append(meta.rstrip() + "\n")
    if agg:
        out.append("### Per request (median of the repetitions)\n")
        out.extend(lines)
        out.append("")
        out.append("### ringproxy ÷ best peer (better of nginx and HAProxy, access logs on)\n")
        out.append("| body | best peer CPU µs/req | CPU/req ratio | goal | p99 ratio | goal | req/s ratio | floor (relay) ÷ best peer CPU |")
        out.append("|---:|---:|---:|---|---:|---|---:|---:|")
        out.extend(ratio_lines or ["| (no peer measured) | | | | | | | |"])
        if floor_lines:
            out.append("")
            out.append("### ringproxy ÷ floor (relay), CPU/req: median of the per-repetition ratios\n")
            out.append("| body | ringproxy ÷ relay | range | repetitions | ringproxy-nolog ÷ relay | goal |")
            out.append("|---:|---:|---|---:|---:|---|")
            out.extend(floor_lines)
    if any(t.endswith("-nolog") for t in targets):
        out.append("")
        out.append("### Access log cost: CPU µs/req with the log on / off (and the difference)\n")
        heads = [t for t in ("ringproxy", "nginx", "haproxy") if t in targets or t + "-nolog" in targets]
        out.append("| body | " + " | ".join(f"{t} on | {t} off | {t} Δ" for t in heads) + " |")
        out.append("|---:|" + "---:|" * (3 * len(heads)))
        for s in sizes:
            cells = []
            for t in heads:
                on = (agg.get((t, s)) or {}).get("cpu")
                off = (agg.get((t + "-nolog", s)) or {}).get("cpu")
                cells += [_fmt(on, 2), _fmt(off, 2), _fmt(on - off if on is not None and off is not None else None, 2)]
            out.append(f"| {s} | " + " | ".join(cells) + " |")
        if "ringproxy-nolog" in targets:
            out.append("\nringproxy-nolog: `--no-access-log` (no line is formatted or written).")
    if not any(("ringproxy", s) in agg for s in sizes) and not any(r["target"] == "ringproxy" for r in idle):
        out.append("\nringproxy: not measured in this run (see build.log / ringproxy.stderr).")
    if idle:
        out.append("")
        out.append("### Idle keep-alive connections (RSS delta per connection; goal ≤ 2 KiB for ringproxy)\n")
        out.append("| target | connections | B/conn, connected only | B/conn, after one request each | RSS before → after, MiB | note |")
        out.append("|---|---:|---:|---:|---|---|")
        for r in idle:
            def mib(k):
                return f"{float(r[k]) / 1024:.1f}" if r[k] else "?"
            out.append(f"| {r['target']} | {r['answered'] or 0}/{r['connected'] or 0} | {r['bytes_per_conn_connected'] or 'n/a'} "
                       f"| {r['bytes_per_conn_after_request'] or 'n/a'} | {mib('base_rss_kib')} → {mib('rss_after_request_kib')} | {r['note']} |")
    text = "\n".join(out) + "\n"
    with open(os.path.join(d, "table.md"), "w") as f:
        f.write(text)
    for name, rows in (("table.csv", csv_rows), ("ratios.csv", ratio_rows)):
        if rows:
            with open(os.path.join(d, name), "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)),
                                   restval="")
                w.writeheader()
                for r in rows:
                    w.writerow({k: ("" if v is None else (f"{v:.4g}" if isinstance(v, float) else v))
                                for k, v in r.items()})
    _chart(d, agg, targets, sizes)
    sys.stdout.write(text)
    return 0


def _chart(d, agg, targets, sizes):
    ts = [t for t in targets if any((t, s) in agg and agg[(t, s)]["cpu"] is not None for s in sizes)]
    if not ts:
        return
    dat = os.path.join(d, "chart.dat")
    with open(dat, "w") as f:
        for metric in ("cpu", "p99", "rps"):
            for s in sizes:
                vals = []
                for t in ts:
                    m = agg.get((t, s))
                    v = m[metric] if m else None
                    vals.append("?" if v is None else f"{v:.6g}")
                f.write(f"{s} " + " ".join(vals) + "\n")
            f.write("\n\n")
    n = len(ts)
    plot = lambda idx: ", ".join(
        f"'{dat}' index {idx} using {i + 2}:xtic(1) title '{t}'" for i, t in enumerate(ts))
    gp = os.path.join(d, "chart.gp")
    with open(gp, "w") as f:
        f.write(f"""set terminal pngcairo size 1500,560 font 'sans,10'
set output '{os.path.join(d, "chart.png")}'
set datafile missing '?'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key outside bottom center horizontal maxrows 1 font ',9'
set grid ytics
set multiplot layout 1,3 title 'ringproxy bench: {os.path.basename(os.path.realpath(d))} (median of reps)'
set logscale y
set title 'CPU per request (µs, lower is better), by response body size'
plot {plot(0)}
set title 'p99 latency (ms, lower is better)'
plot {plot(1)}
set title 'requests/s (higher is better; load core shared)'
plot {plot(2)}
unset multiplot
""")
    try:
        subprocess.run(["gnuplot", gp], check=True, timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except (OSError, subprocess.SubprocessError) as e:
        print(f"chart: gnuplot failed: {e}", file=sys.stderr)
    _ = n


# --------------------------------------------------------------------------

def cmd_instr(a):
    """Instructions per request from one callgrind dump: total and the top functions.

    The dump is read directly (written with --compress-strings=no
    --compress-pos=no): the self cost of a function is the sum of its cost
    lines, less the lines that follow a calls= line (those are inclusive costs
    of a call). callgrind_annotate 3.19 misreads a dump taken after an
    earlier one, where calls=0 appears.
    """
    total, self_ir, fn, ob, after_call = None, {}, None, "", False
    with open(a.dump) as f:
        for line in f:
            if line.startswith("summary:"):
                total = int(line.split()[1])
            elif line.startswith("ob="):
                ob = os.path.basename(line[3:].strip())
            elif line.startswith("fn="):
                fn = (line[3:].strip(), ob)
            elif line.startswith("calls="):
                after_call = True
            elif line[:1].isdigit() and fn is not None:
                if after_call:
                    after_call = False
                    continue
                parts = line.split()
                if len(parts) >= 2:
                    self_ir[fn] = self_ir.get(fn, 0) + int(parts[1])
    if not total or not a.requests:
        print(f"instr: no count for {a.target} {a.size}", file=sys.stderr)
        return 1
    new = not os.path.exists(a.out)
    with open(a.out, "a") as f:
        if new:
            f.write("## User-space instructions per request (callgrind)\n\n")
        f.write(f"### {a.target}, {a.size} body: {total / a.requests:,.0f} instructions per request "
                f"({a.requests} requests)\n\n| instructions/request | function | object |\n|---:|---|---|\n")
        for (name, obj), ir in sorted(self_ir.items(), key=lambda kv: -kv[1])[:12]:
            f.write(f"| {ir / a.requests:,.0f} | `{name}` | {obj} |\n")
        f.write("\n")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sp = ap.add_subparsers(dest="cmd", required=True)
    p = sp.add_parser("ports"); p.add_argument("n", type=int); p.set_defaults(f=cmd_ports)
    p = sp.add_parser("wait"); p.add_argument("url"); p.add_argument("bytes", type=int)
    p.add_argument("timeout", type=float); p.set_defaults(f=cmd_wait)
    p = sp.add_parser("tree"); p.add_argument("root", type=int); p.set_defaults(f=cmd_tree)
    p = sp.add_parser("run")
    for k in ("target", "size", "url", "script", "out"):
        p.add_argument("--" + k, required=True)
    p.add_argument("--load-cpus", default="")
    p.add_argument("--proxy-cpus", default="")
    for k in ("bytes", "rep", "root", "duration", "conns", "threads"):
        p.add_argument("--" + k, type=int, required=True)
    p.add_argument("--perf", action="store_true")
    p.set_defaults(f=cmd_run)
    p = sp.add_parser("idle")
    p.add_argument("--target", required=True); p.add_argument("--out", required=True)
    p.add_argument("--path", default="/13")
    for k, dflt in (("root", None), ("port", None), ("conns", 10000), ("batch", 100), ("timeout", 90)):
        p.add_argument("--" + k, type=int, required=dflt is None, default=dflt)
    p.set_defaults(f=cmd_idle)
    p = sp.add_parser("report"); p.add_argument("dir"); p.set_defaults(f=cmd_report)
    p = sp.add_parser("floor"); p.add_argument("dirs", nargs="+"); p.set_defaults(f=cmd_floor)
    p = sp.add_parser("instr"); p.add_argument("--target"); p.add_argument("--size")
    p.add_argument("--requests", type=int); p.add_argument("--dump"); p.add_argument("--out")
    p.set_defaults(f=cmd_instr)
    a = ap.parse_args()
    sys.exit(a.f(a) or 0)


if __name__ == "__main__":
    main()
