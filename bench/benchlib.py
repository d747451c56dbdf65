#!/usr/bin/env python3
"""Helpers for bench/run.sh: measuring one run, the idle-connection test and
the report (median table, CSV, chart). Standard library only.

Subcommands:
  ports N                      print N free loopback TCP ports
  wait URL BYTES TIMEOUT_S     wait until GET URL answers 200 with BYTES body bytes
  tree ROOT                    print the PIDs of ROOT and all its descendants
  rss ROOT                     print the VmRSS (KiB) summed over ROOT and its descendants
  run ...                      one wrk run against a target, appended to a CSV
  idle ...                     idle keep-alive connection memory of one target
  report DIR [--headline N]    aggregate DIR/raw.csv etc. into table.md (headline at
                               N clients), table.csv, ratios.csv, the chart and a
                               short summary on stdout
  floor DIR...                 ringproxy ÷ relay pooled over several runs' repetitions
  edgepool DIR...              the edge rules' paired ratios pooled over several runs
  instr ...                    instructions per request from a callgrind dump (--instr)
  edgecheck --target NAME=HOST:PORT...  the edge rules' pre-flight: each rules target
                               answers a set of requests as expected, and alike

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
    "ringproxy", "ringproxy-base", "ringproxy-epoll", "ringproxy-epoll-base", "ringproxy-rules", "ringproxy-ratelimit", "ringproxy-nolog",
    "ringproxy-2w", "nginx", "nginx-rules", "nginx-nolog",
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


def cpu_ticks(pids, user_only=False):
    """utime+stime (+ reaped children's) of the processes, all their threads;
    utime (+ cutime) only with user_only."""
    total = 0
    for p in pids:
        try:
            r = _stat_fields(p)
            total += int(r[11]) + int(r[13]) + (0 if user_only else int(r[12]) + int(r[14]))
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
            c.request("GET", "/" + path, headers=_headers(a.header))
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


def _headers(lines):
    """["Name: value", ...] as a dict for http.client (which then sends no Host of its own
    when one is given)."""
    return dict(tuple(x.strip() for x in h.split(":", 1)) for h in lines or [])


def cmd_tree(a):
    print(" ".join(map(str, tree(a.root))))


def cmd_rss(a):
    print(status_kib(tree(a.root), "VmRSS"))


# --------------------------------------------------------------------------
# one measured run

RAW_FIELDS = ["rep", "target", "conns", "size", "bytes", "requests", "duration_s", "rps",
              "p50_us", "p99_us", "mean_us", "cpu_ticks", "cpu_us_per_req", "user_us_per_req",
              "rss_before_kib", "peak_rss_kib", "rss_after_kib", "settle_s", "origin_accepts",
              "noise_pct", "errors", "resp_bytes_per_req", "syscalls",
              "syscalls_per_req", "note"]


def origin_accepts(url):
    """The origin's accepted-connections counter (nginx stub_status), or None."""
    if not url:
        return None
    hostport, _, path = url[7:].partition("/")
    host, _, port = hostport.rpartition(":")
    try:
        c = http.client.HTTPConnection(host, int(port), timeout=2)
        c.request("GET", "/" + path)
        body = c.getresponse().read().decode("ascii", "replace")
        c.close()
        # "Active connections: N \nserver accepts handled requests\n A H R \n..."
        return int(body.splitlines()[2].split()[0])
    except (OSError, http.client.HTTPException, ValueError, IndexError):
        return None


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
    row.update(rep=a.rep, target=a.target, conns=a.conns, size=a.size, bytes=a.bytes)
    where = f"{a.target:16} {a.conns:>5} x {a.size:<4}"
    if not alive(a.root):
        row["note"] = "target not running"
        _append(a.out, row)
        print(f"  {where}  target not running", file=sys.stderr)
        return 0
    pids = tree(a.root)
    rss0 = status_kib(pids, "VmRSS")
    reset_hwm(pids)
    acc0 = origin_accepts(a.origin_status)
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
    t0, u0 = cpu_ticks(pids), cpu_ticks(pids, user_only=True)
    cmd = ["wrk", "-t", str(a.threads), "-c", str(a.conns), "-d", f"{a.duration}s",
           "--timeout", "5s", "-s", a.script]
    for h in a.header or []:
        cmd += ["-H", h]
    cmd.append(a.url)
    if a.load_cpus:
        cmd = ["taskset", "-c", a.load_cpus] + cmd
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.duration + 30)
        out = p.stdout
    except subprocess.TimeoutExpired:
        out = ""
    t1, u1 = cpu_ticks(pids), cpu_ticks(pids, user_only=True)
    c1 = cpu_stat(pcpus) if pcpus else None
    if perf is not None:
        perf.send_signal(signal.SIGINT)
        try:
            perf.wait(timeout=10)
        except subprocess.TimeoutExpired:
            perf.kill()
            perf.wait()
    hwm = status_kib(pids, "VmHWM")
    acc1 = origin_accepts(a.origin_status)
    rss_after = None
    if a.settle > 0:
        # What is left a moment after the load: does the memory go back?
        time.sleep(a.settle)
        rss_after = status_kib(tree(a.root), "VmRSS")
    w = parse_wrk(out)
    if not w or w["requests"] <= 0:
        row["note"] = "wrk: no completed requests" + ("" if alive(a.root) else "; target died")
        _append(a.out, row)
        print(f"  {where}  {row['note']}", file=sys.stderr)
        return 0
    req = w["requests"]
    dur = w["duration_us"] / 1e6
    errors = int(w["connect"] + w["read"] + w["write"] + w["status"] + w["timeout"])
    ticks = t1 - t0
    row.update(requests=int(req), duration_s=f"{dur:.3f}", rps=f"{req / dur:.1f}",
               p50_us=f"{w['p50_us']:.1f}", p99_us=f"{w['p99_us']:.1f}",
               mean_us=f"{w['mean_us']:.1f}", cpu_ticks=ticks,
               cpu_us_per_req=f"{ticks * 1e6 / CLK_TCK / req:.3f}",
               user_us_per_req=f"{(u1 - u0) * 1e6 / CLK_TCK / req:.3f}",
               rss_before_kib=rss0, peak_rss_kib=hwm, errors=errors,
               resp_bytes_per_req=f"{w['bytes'] / req:.0f}")
    if rss_after is not None:
        row.update(rss_after_kib=rss_after, settle_s=a.settle)
    if acc0 is not None and acc1 is not None:
        row["origin_accepts"] = max(0, acc1 - acc0 - 1)  # less the second status request's own
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
    rss = (f"  rss {rss0 / 1024:.1f}/{hwm / 1024:.1f}"
           + (f"/{rss_after / 1024:.1f}" if rss_after is not None else "") + " MiB")
    print(f"  {where}  {req / dur:8.0f} req/s  p99 {w['p99_us'] / 1000:7.2f} ms"
          f"  cpu {float(row['cpu_us_per_req']):7.2f} us/req{sc}{rss}"
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


def _conns(r):
    """A row's clients; 0 for rows of raw.csv files from before the sweep."""
    try:
        return int(r.get("conns") or 0)
    except ValueError:
        return 0


def _point_key(p):
    return (_size_key(p[1]), p[0])


# Issue #20's goals for CPU per request ÷ the better peer: small bodies, and 1 MiB.
PEER_GOAL_SMALL, PEER_GOAL_1M = 0.70, 0.85


def _peer_goal(size):
    b = _size_key(size)
    return PEER_GOAL_1M if b >= 1024 * 1024 else PEER_GOAL_SMALL if b <= 4096 else None


def _cgoal(size):
    g = _peer_goal(size)
    return f"≤ {g:.2f}" if g is not None else "—"


def _paired(raw, conns, size, target, base="relay"):
    """target's CPU/request ÷ base's (the relay's), one ratio per repetition that measured both."""
    by_rep = {}
    for r in raw:
        if (r["size"] == size and _conns(r) == conns and r["target"] in (target, base)
                and r["requests"] not in ("", "0")):
            by_rep.setdefault(r["rep"], {})[r["target"]] = float(r["cpu_us_per_req"])
    return [v[target] / v[base] for v in by_rep.values() if target in v and v.get(base)]


# Edge rules (ringproxy-rules, nginx-rules): each ratio, its goal (issue #22).
EDGE_RATIOS = [("ringproxy-rules", "ringproxy", 1.05), ("ringproxy-rules", "nginx-rules", 0.70),
               ("nginx-rules", "nginx", None)]
EDGE_FIELDS_CSV = ["conns", "size", "bytes"] + [f"{t}_cpu_us_per_req" for t in
                                                ("ringproxy", "ringproxy-rules", "nginx", "nginx-rules")] + [
    "ringproxy_rules_us", "nginx_rules_us"] + [f"{t}_user_us_per_req" for t in
                                               ("ringproxy", "ringproxy-rules", "nginx", "nginx-rules")] + [
    f"{n}_over_{d}_{k}".replace("-", "_") for n, d, _ in EDGE_RATIOS
    for k in ("of_medians", "paired_median", "paired_min", "paired_max", "reps")] + [
    f"{t}_{k}" for t in ("ringproxy-rules", "nginx-rules") for k in ("p99_ms", "rps")]


def _edge_rows(raw, agg, points):
    """Per point: the rules' targets next to the rule-less ones, and the ratios of EDGE_RATIOS
    (of the medians, and paired: one per repetition that ran both)."""
    rows = []
    for c, s in points:
        cpu = {t: (agg.get((t, c, s)) or {}).get("cpu") for t in ("ringproxy", "ringproxy-rules", "nginx",
                                                                   "nginx-rules")}
        if cpu["ringproxy-rules"] is None and cpu["nginx-rules"] is None:
            continue
        row = {"conns": c, "size": s, "bytes": _size_key(s)}
        row.update({f"{t}_cpu_us_per_req": v for t, v in cpu.items()})
        row.update({f"{t}_user_us_per_req": (agg.get((t, c, s)) or {}).get("user") for t in cpu})
        for t, b, k in (("ringproxy-rules", "ringproxy", "ringproxy_rules_us"),
                        ("nginx-rules", "nginx", "nginx_rules_us")):
            row[k] = cpu[t] - cpu[b] if cpu[t] is not None and cpu[b] is not None else None
        for n, d, _ in EDGE_RATIOS:
            k = f"{n}_over_{d}_".replace("-", "_")
            v = _paired(raw, c, s, n, d)
            row[k + "of_medians"] = _ratio(cpu[n], cpu[d])
            row[k + "paired_median"] = statistics.median(v) if v else None
            row[k + "paired_min"] = min(v) if v else None
            row[k + "paired_max"] = max(v) if v else None
            row[k + "reps"] = len(v)
        for t in ("ringproxy-rules", "nginx-rules"):
            m = agg.get((t, c, s)) or {}
            row[f"{t}_p99_ms"], row[f"{t}_rps"] = m.get("p99"), m.get("rps")
        rows.append(row)
    return rows


def _edge_table(rows, reps):
    out = [f"### Edge rules: the 20 rules of bench/conf/rules/, CPU µs/req (median of {reps} repetitions)\n",
           "| clients | body | ringproxy | ringproxy-rules | rules' cost µs | nginx | nginx-rules | rules' cost µs "
           "| **ringproxy-rules ÷ ringproxy** (≤ 1.05) | paired | **ringproxy-rules ÷ nginx-rules** (≤ 0.70) "
           "| paired | nginx-rules ÷ nginx |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---:|"]

    def paired(r, n, d):
        k = f"{n}_over_{d}_".replace("-", "_")
        if not r[k + "reps"]:
            return "n/a"
        return (f"{_fmt(r[k + 'paired_median'], 3)} ({_fmt(r[k + 'paired_min'], 3)}–"
                f"{_fmt(r[k + 'paired_max'], 3)}, {r[k + 'reps']})")
    for r in rows:
        out.append(f"| {r['conns'] or '—'} | {r['size']} | {_fmt(r['ringproxy_cpu_us_per_req'], 2)} "
                   f"| {_fmt(r['ringproxy-rules_cpu_us_per_req'], 2)} | {_fmt(r['ringproxy_rules_us'], 2)} "
                   f"| {_fmt(r['nginx_cpu_us_per_req'], 2)} | {_fmt(r['nginx-rules_cpu_us_per_req'], 2)} "
                   f"| {_fmt(r['nginx_rules_us'], 2)} "
                   f"| {_fmt(r['ringproxy_rules_over_ringproxy_of_medians'], 3)} | {paired(r, 'ringproxy-rules', 'ringproxy')} "
                   f"| {_fmt(r['ringproxy_rules_over_nginx_rules_of_medians'], 3)} "
                   f"| {paired(r, 'ringproxy-rules', 'nginx-rules')} "
                   f"| {_fmt(r['nginx_rules_over_nginx_of_medians'], 3)} |")
    out.append("\nUser-space share (utime only, µs/req; the rules run in user space, the kernel's work per "
               "request is the same with or without them):\n")
    out.append("| clients | body | ringproxy | ringproxy-rules | rules' cost µs | nginx | nginx-rules | rules' cost µs |")
    out.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        u = [r[f"{t}_user_us_per_req"] for t in ("ringproxy", "ringproxy-rules", "nginx", "nginx-rules")]
        d = [u[1] - u[0] if None not in u[:2] else None, u[3] - u[2] if None not in u[2:] else None]
        out.append(f"| {r['conns'] or '—'} | {r['size']} | {_fmt(u[0], 2)} | {_fmt(u[1], 2)} | {_fmt(d[0], 2)} "
                   f"| {_fmt(u[2], 2)} | {_fmt(u[3], 2)} | {_fmt(d[1], 2)} |")
    out.append("\nrules' cost: CPU µs/req with the rules − without. Ratios of the medians; \"paired\": the "
               "median (range, repetitions) of the ratios taken within each repetition, where the two targets "
               "ran seconds apart. Every target got the same request (meta: request).\n")
    return out


def cmd_floor(a):
    """ringproxy ÷ relay pooled over several result folders: every repetition's
    paired ratio counts once, so runs of different lengths weigh by their
    repetitions."""
    pool = {}
    for d in a.dirs:
        raw = _read_csv(os.path.join(d, "raw.csv"))
        for c, s in {(_conns(r), r["size"]) for r in raw}:
            pool.setdefault((c, s), []).extend(_paired(raw, c, s, "ringproxy"))
    print("| clients | body | ringproxy ÷ relay | middle half | range | repetitions | at or below 1.10 |")
    print("|---:|---:|---:|---|---|---:|---:|")
    for c, s in sorted(pool, key=_point_key):
        v = sorted(pool[(c, s)])
        if not v:
            continue
        n = len(v)
        print(f"| {c or '—'} | {s} | {statistics.median(v):.2f} | {v[n // 4]:.2f}–{v[(3 * n) // 4]:.2f} "
              f"| {v[0]:.2f}–{v[-1]:.2f} | {n} | {sum(1 for x in v if x <= 1.10)} |")
    return 0


def cmd_edgepool(a):
    """The edge rules' paired ratios pooled over several result folders: every
    repetition that ran both targets of a ratio counts once."""
    pool = {}
    for d in a.dirs:
        raw = _read_csv(os.path.join(d, "raw.csv"))
        for c, s in {(_conns(r), r["size"]) for r in raw}:
            for n, den, goal in EDGE_RATIOS:
                pool.setdefault((c, s, n, den, goal), []).extend(_paired(raw, c, s, n, den))
    print("| clients | body | ratio | goal | pooled median | middle half | range | repetitions | at or below the goal |")
    print("|---:|---:|---|---|---:|---|---|---:|---:|")
    for (c, s, n, den, goal) in sorted(pool, key=lambda k: (_point_key(k[:2]), k[2], k[3])):
        v = sorted(pool[(c, s, n, den, goal)])
        if not v:
            continue
        k = len(v)
        print(f"| {c or '—'} | {s} | {n} ÷ {den} | {'≤ %.2f' % goal if goal else '—'} | {statistics.median(v):.3f} "
              f"| {v[k // 4]:.3f}–{v[(3 * k) // 4]:.3f} | {v[0]:.3f}–{v[-1]:.3f} | {k} "
              f"| {sum(1 for x in v if x <= goal) if goal else '—'} |")
    return 0


def _ratio(a, b):
    return a / b if a is not None and b else None


RATIO_FIELDS = [
    "conns", "size", "bytes",
    "ringproxy_cpu_us_per_req", "ringproxy_growth", "growth_base_conns",
    "best_peer_cpu_us_per_req", "cpu_ratio",
    "ringproxy_p99_ms", "best_peer_p99_ms", "p99_ratio",
    "ringproxy_rps", "best_peer_rps", "rps_ratio",
    "floor_cpu_ratio", "floor_paired_median", "floor_paired_min", "floor_paired_max",
    "nginx_growth", "haproxy_growth",
] + [f"{t}_{k}" for t in ("ringproxy", "nginx", "haproxy", "relay")
     for k in ("rss_before_mib", "peak_rss_mib", "rss_after_mib")]

TABLE_FIELDS = ["target", "conns", "size", "bytes", "rps", "p50_ms", "p99_ms", "cpu_us_per_req",
                "growth", "growth_base_conns", "cpu_spread_pct", "syscalls_per_req",
                "origin_conns_per_kreq", "rss_before_mib", "peak_rss_mib", "rss_after_mib",
                "noise_pct", "errors", "runs", "notes"]


def _write_csv(path, rows, fields):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, restval="", extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else (repr(round(v, 4)) if isinstance(v, float) else v))
                        for k, v in r.items()})


def _aggregate(raw, sysc, targets, points):
    agg = {}
    for t in targets:
        for c, s in points:
            rs = [r for r in raw if r["target"] == t and r["size"] == s and _conns(r) == c]
            ok = [r for r in rs if r["requests"] not in ("", "0")]
            ss = [r for r in sysc if r["target"] == t and r["size"] == s and _conns(r) == c]
            if not rs and not ss:
                continue
            cpu = [float(r["cpu_us_per_req"]) for r in ok]
            kib = lambda k: _med(float(r[k]) / 1024 for r in ok if r.get(k) not in ("", None))
            agg[(t, c, s)] = {
                "runs": len(ok), "of": len(rs),
                "rps": _med(r["rps"] for r in ok),
                "p50": _med(float(r["p50_us"]) / 1000 for r in ok),
                "p99": _med(float(r["p99_us"]) / 1000 for r in ok),
                "cpu": _med(cpu),
                "user": _med(r.get("user_us_per_req", "") for r in ok),
                "spread": (100 * (max(cpu) - min(cpu)) / statistics.median(cpu)
                           if len(cpu) > 1 and statistics.median(cpu) > 0 else None),
                "sys": _med(r["syscalls_per_req"] for r in ss),
                "rss0": kib("rss_before_kib"),
                "rss": kib("peak_rss_kib"),
                "rss2": kib("rss_after_kib"),
                "oconn": _med(1000 * float(r["origin_accepts"]) / float(r["requests"])
                              for r in ok if r.get("origin_accepts") not in ("", None)),
                "noise": _med(r.get("noise_pct", "") for r in ok),
                "errors": sum(int(r["errors"] or 0) for r in ok),
                "notes": sorted({r["note"] for r in rs if r["note"]}
                                | {"perf run: " + r["note"] for r in ss if r["note"]}),
                "growth": None,
            }
    # growth: CPU/request ÷ the same target's at the fewest clients measured at that size
    base = {}
    for c, s in points:
        base.setdefault(s, []).append(c)
    for (t, c, s), m in agg.items():
        b = agg.get((t, min(base[s]), s))
        if len(base[s]) > 1 and b and b["cpu"] and m["cpu"] is not None:
            m["growth"] = m["cpu"] / b["cpu"]
    return agg, {s: (min(cs) if len(cs) > 1 else None) for s, cs in base.items()}


def _rss_cell(m):
    if not m or m["rss"] is None:
        return "n/a"
    return f"{_fmt(m['rss0'], 1)} → **{_fmt(m['rss'], 1)}** → {_fmt(m['rss2'], 1)}"


def cmd_report(a):
    d = a.dir
    raw = _read_csv(os.path.join(d, "raw.csv"))
    sysc = _read_csv(os.path.join(d, "syscalls.csv"))
    idle = _read_csv(os.path.join(d, "idle.csv"))
    start = {r["target"]: float(r["rss_kib"]) / 1024 for r in _read_csv(os.path.join(d, "start.csv"))
             if r.get("rss_kib")}
    meta = ""
    if os.path.exists(os.path.join(d, "meta.md")):
        with open(os.path.join(d, "meta.md")) as f:
            meta = f.read()
    targets = [t for t in TARGET_ORDER if any(r["target"] == t for r in raw + sysc)]
    targets += sorted({r["target"] for r in raw} - set(targets))
    points = sorted({(_conns(r), r["size"]) for r in raw + sysc}, key=_point_key)
    agg, base_of = _aggregate(raw, sysc, targets, points)
    reps = max((int(r["rep"]) for r in raw if r["rep"].isdigit()), default=0)
    settle = _med(r.get("settle_s") for r in raw) if raw else None
    after = f"{settle:g} s after" if settle else "after"

    # ---- ringproxy ÷ the better peer, per point (ratios.csv)
    ratio_rows = []
    for c, s in points:
        rp = agg.get(("ringproxy", c, s))
        peers = [agg[(p, c, s)] for p in PEERS if (p, c, s) in agg and agg[(p, c, s)]["cpu"] is not None]
        if not peers and not rp:
            continue
        fl = agg.get(("relay", c, s))
        best_cpu = min(p["cpu"] for p in peers) if peers else None
        best_p99 = min(p["p99"] for p in peers) if peers else None
        best_rps = max(p["rps"] for p in peers) if peers else None
        row = {"conns": c, "size": s, "bytes": _size_key(s), "growth_base_conns": base_of.get(s),
               "ringproxy_cpu_us_per_req": rp and rp["cpu"], "ringproxy_growth": rp and rp["growth"],
               "best_peer_cpu_us_per_req": best_cpu, "cpu_ratio": _ratio(rp and rp["cpu"], best_cpu),
               "ringproxy_p99_ms": rp and rp["p99"], "best_peer_p99_ms": best_p99,
               "p99_ratio": _ratio(rp and rp["p99"], best_p99),
               "ringproxy_rps": rp and rp["rps"], "best_peer_rps": best_rps,
               "rps_ratio": _ratio(rp and rp["rps"], best_rps),
               "floor_cpu_ratio": _ratio(fl and fl["cpu"], best_cpu)}
        on = _paired(raw, c, s, "ringproxy")
        if on:
            row.update(floor_paired_median=statistics.median(on), floor_paired_min=min(on),
                       floor_paired_max=max(on))
        for t in PEERS:
            row[f"{t}_growth"] = (agg.get((t, c, s)) or {}).get("growth")
        for t in ("ringproxy", "nginx", "haproxy", "relay"):
            m = agg.get((t, c, s)) or {}
            row.update({f"{t}_rss_before_mib": m.get("rss0"), f"{t}_peak_rss_mib": m.get("rss"),
                        f"{t}_rss_after_mib": m.get("rss2")})
        ratio_rows.append(row)

    edge_rows = _edge_rows(raw, agg, points)

    out = []
    if meta:
        out.append(meta.rstrip() + "\n")
    if edge_rows:
        out.extend(_edge_table(edge_rows, reps))

    # ---- headline: one concurrency, every target
    conns_seen = sorted({c for c, _ in points if c})
    head_c = min(conns_seen, key=lambda c: (abs(c - a.headline), c)) if conns_seen else 0
    if agg:
        out.append(f"### Headline: {head_c} keep-alive clients (median of {reps} repetitions)\n")
        out.append(f"| target | body | req/s | p99 ms | CPU µs/req | growth | peak RSS MiB "
                   f"| RSS {after}, MiB | errors |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for c, s in points:
            if c != head_c:
                continue
            for t in targets:
                m = agg.get((t, c, s))
                if not m:
                    continue
                out.append(f"| {_tname(t)} | {s} | {_fmt(m['rps'], 0)} | {_fmt(m['p99'], 3)} | {_fmt(m['cpu'], 2)} "
                           f"| {_fmt(m['growth'], 2)} | {_fmt(m['rss'], 1)} | {_fmt(m['rss2'], 1)} | {m['errors']} |")
        bases = sorted({base_of[s] for c, s in points if c == head_c and base_of.get(s)})
        out.append("\ngrowth: CPU µs/req ÷ the same target's at "
                   + (f"{', '.join(map(str, bases))} clients" if bases else "the fewest clients")
                   + " and the same body size.\n")
        hr = [r for r in ratio_rows if r["conns"] == head_c]
        if hr:
            out.append(f"ringproxy ÷ the better of nginx and HAProxy (access logs on) at {head_c} clients:\n")
            out.append("| body | CPU/req ratio | goal | p99 ratio | goal | req/s ratio | ringproxy growth |")
            out.append("|---:|---:|---|---:|---|---:|---:|")
            for r in hr:
                out.append(f"| {r['size']} | {_fmt(r['cpu_ratio'], 2)} | {_cgoal(r['size'])} | {_fmt(r['p99_ratio'], 2)} "
                           f"| ≤ 1.0 | {_fmt(r['rps_ratio'], 2)} | {_fmt(r['ringproxy_growth'], 2)} |")
        out.append("")

    # ---- ringproxy across the sweep
    if ratio_rows:
        out.append("### ringproxy across the sweep, ÷ the better of nginx and HAProxy (access logs on)\n")
        out.append("| clients | body | CPU µs/req | growth | best peer CPU µs/req | CPU/req ratio | goal "
                   "| p99 ms | p99 ratio | req/s | req/s ratio | relay ÷ best peer CPU |")
        out.append("|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
        for r in ratio_rows:
            out.append(f"| {r['conns'] or '—'} | {r['size']} | {_fmt(r['ringproxy_cpu_us_per_req'], 2)} "
                       f"| {_fmt(r['ringproxy_growth'], 2)} | {_fmt(r['best_peer_cpu_us_per_req'], 2)} "
                       f"| {_fmt(r['cpu_ratio'], 2)} | {_cgoal(r['size'])} | {_fmt(r['ringproxy_p99_ms'], 3)} "
                       f"| {_fmt(r['p99_ratio'], 2)} | {_fmt(r['ringproxy_rps'], 0)} | {_fmt(r['rps_ratio'], 2)} "
                       f"| {_fmt(r['floor_cpu_ratio'], 2)} |")
        out.append("\ngrowth: ringproxy's CPU µs/req ÷ its own at the fewest clients of that body size "
                   "(nginx's and HAProxy's are in the table below and in ratios.csv). Ratios: CPU/req and p99 "
                   "÷ the lower of nginx and HAProxy, req/s ÷ the higher (each figure's better peer).\n")

    # ---- memory
    mem_t = [t for t in targets if t != "origin" and any(
        (t, c, s) in agg and agg[(t, c, s)]["rss"] is not None for c, s in points)]
    if mem_t:
        out.append(f"### Memory: RSS of each target's processes, MiB: before the run → **peak** → {after} the load\n")
        out.append("| clients | body | " + " | ".join(_tname(t) for t in mem_t) + " |")
        out.append("|---:|---:|" + "---|" * len(mem_t))
        if start:
            out.append("| — | as started | " + " | ".join(_fmt(start.get(t), 1) for t in mem_t) + " |")
        for c, s in points:
            out.append(f"| {c or '—'} | {s} | " + " | ".join(_rss_cell(agg.get((t, c, s))) for t in mem_t) + " |")
        out.append("\nSummed over the target's processes (nginx: master + worker). \"as started\": right after "
                   "start, before the warm-up. Peak: VmHWM, reset to the current RSS before each run, so it includes "
                   "what earlier runs (and the warm-up at the largest body and the most clients) left resident.\n")

    # ---- everything
    lines = []
    csv_rows = []
    lines.append("| target | clients | body | req/s | p50 ms | p99 ms | CPU µs/req | growth | CPU spread % "
                 "| syscalls/req | origin conns/1k req | RSS before MiB | peak RSS MiB | RSS after MiB "
                 "| noise % | errors | runs |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c, s in points:
        for t in targets:
            m = agg.get((t, c, s))
            if not m:
                continue
            lines.append(
                f"| {_tname(t)} | {c or '—'} | {s} | {_fmt(m['rps'], 0)} | {_fmt(m['p50'], 3)} | {_fmt(m['p99'], 3)} "
                f"| {_fmt(m['cpu'], 2)} | {_fmt(m['growth'], 2)} | {_fmt(m['spread'], 0)} | {_fmt(m['sys'], 2)} "
                f"| {_fmt(m['oconn'], 1)} | {_fmt(m['rss0'], 1)} | {_fmt(m['rss'], 1)} | {_fmt(m['rss2'], 1)} "
                f"| {_fmt(m['noise'], 0)} | {m['errors']} | {m['runs']}/{m['of']}"
                f"{' — ' + '; '.join(m['notes']) if m['notes'] else ''} |")
            csv_rows.append({"target": t, "conns": c, "size": s, "bytes": _size_key(s), "rps": m["rps"],
                             "p50_ms": m["p50"], "p99_ms": m["p99"], "cpu_us_per_req": m["cpu"],
                             "growth": m["growth"], "growth_base_conns": base_of.get(s),
                             "cpu_spread_pct": m["spread"], "syscalls_per_req": m["sys"],
                             "origin_conns_per_kreq": m["oconn"], "rss_before_mib": m["rss0"],
                             "peak_rss_mib": m["rss"], "rss_after_mib": m["rss2"], "noise_pct": m["noise"],
                             "errors": m["errors"], "runs": m["runs"], "notes": "; ".join(m["notes"])})
    if agg:
        out.append("### Every target at every point (median of the repetitions)\n")
        out.extend(lines)
        out.append("\norigin conns/1k req: connections the origin accepted during the run per 1000 requests "
                   "(a proxy whose upstream pool keeps up opens almost none).\n")

    # ---- ringproxy ÷ floor, paired: the two run next to each other in every
    # repetition, so each ratio is taken under the same machine conditions
    floor_lines = []
    for c, s in points:
        on, off = _paired(raw, c, s, "ringproxy"), _paired(raw, c, s, "ringproxy-nolog")
        if not on:
            continue
        row = next((r for r in ratio_rows if r["conns"] == c and r["size"] == s), None)
        peer_goal = _peer_goal(s)
        below = (row and row["floor_cpu_ratio"] is not None and peer_goal is not None
                 and row["floor_cpu_ratio"] > peer_goal)
        goal = ("≤ 1.10 (the peer goal lies below the floor)" if below
                else "— (no peer in this run)" if row is None or row["best_peer_cpu_us_per_req"] is None else "—")
        floor_lines.append(f"| {c or '—'} | {s} | {_fmt(statistics.median(on), 2)} | {_fmt(min(on), 2)}–{_fmt(max(on), 2)} "
                           f"| {len(on)} | {_fmt(statistics.median(off), 2) if off else 'n/a'} | {goal} |")
    if floor_lines:
        out.append("### ringproxy ÷ floor (relay), CPU/req: median of the per-repetition ratios\n")
        out.append("| clients | body | ringproxy ÷ relay | range | repetitions | ringproxy-nolog ÷ relay | goal |")
        out.append("|---:|---:|---:|---|---:|---:|---|")
        out.extend(floor_lines)
        out.append("")

    if any(t.endswith("-nolog") for t in targets):
        out.append("### Access log cost: CPU µs/req with the log on / off (and the difference)\n")
        heads = [t for t in ("ringproxy", "nginx", "haproxy") if t in targets or t + "-nolog" in targets]
        out.append("| clients | body | " + " | ".join(f"{t} on | {t} off | {t} Δ" for t in heads) + " |")
        out.append("|---:|---:|" + "---:|" * (3 * len(heads)))
        for c, s in points:
            cells = []
            for t in heads:
                on = (agg.get((t, c, s)) or {}).get("cpu")
                off = (agg.get((t + "-nolog", c, s)) or {}).get("cpu")
                cells += [_fmt(on, 2), _fmt(off, 2), _fmt(on - off if on is not None and off is not None else None, 2)]
            out.append(f"| {c or '—'} | {s} | " + " | ".join(cells) + " |")
        if "ringproxy-nolog" in targets:
            out.append("\nringproxy-nolog: `--no-access-log` (no line is formatted or written).")
        out.append("")
    if not any(t == "ringproxy" for t, _, _ in agg) and not any(r["target"] == "ringproxy" for r in idle):
        out.append("ringproxy: not measured in this run (see build.log / ringproxy.stderr).\n")
    if idle:
        out.append("### Idle keep-alive connections: bytes of RSS per connection (goal ≤ 2 KiB for ringproxy)\n")
        out.append("| target | connections (answered / connected) | **B per idle keep-alive connection** (after one request each) "
                   "| B per connection, connected only | RSS before → after, MiB | note |")
        out.append("|---|---:|---:|---:|---|---|")
        for r in idle:
            def mib(k):
                return f"{float(r[k]) / 1024:.1f}" if r[k] else "?"
            out.append(f"| {r['target']} | {r['answered'] or 0}/{r['connected'] or 0} "
                       f"| {r['bytes_per_conn_after_request'] or 'n/a'} | {r['bytes_per_conn_connected'] or 'n/a'} "
                       f"| {mib('base_rss_kib')} → {mib('rss_after_request_kib')} | {r['note']} |")
        out.append("")
    text = "\n".join(out).rstrip() + "\n"
    with open(os.path.join(d, "table.md"), "w") as f:
        f.write(text)
    if csv_rows:
        _write_csv(os.path.join(d, "table.csv"), csv_rows, TABLE_FIELDS)
    if ratio_rows:
        _write_csv(os.path.join(d, "ratios.csv"), ratio_rows, RATIO_FIELDS)
    if edge_rows:
        _write_csv(os.path.join(d, "edge.csv"), edge_rows, EDGE_FIELDS_CSV)
    _chart(d, agg, targets, points)
    sys.stdout.write(_summary(d, ratio_rows, agg, idle, reps, after, edge_rows))
    return 0


def _tname(t):
    return t + {"relay": " (floor)", "origin": " (direct)",
                "ringproxy-2w": " (2 workers, one CPU)"}.get(t, "")


def _summary(d, ratio_rows, agg, idle, reps, after, edge_rows=()):
    """A few lines for the terminal; table.md has everything."""
    o = [""]
    if edge_rows:
        o.append(f"edge rules (20), CPU µs/req, median of {reps} repetition(s); ratios: of the medians "
                 "[paired median, range]:")
        for r in edge_rows:
            cells = []
            for n, d_, goal in EDGE_RATIOS:
                k = f"{n}_over_{d_}_".replace("-", "_")
                pr = (f" [{_fmt(r[k + 'paired_median'], 3)}, {_fmt(r[k + 'paired_min'], 3)}–"
                      f"{_fmt(r[k + 'paired_max'], 3)}]" if r[k + "reps"] else "")
                cells.append(f"{n} ÷ {d_} {_fmt(r[k + 'of_medians'], 3)}{pr}"
                             + (f" (≤ {goal:.2f})" if goal else ""))
            o.append(f"{r['conns'] or '—':>7} x {r['size']:<5} ringproxy {_fmt(r['ringproxy_cpu_us_per_req'], 2)}"
                     f" / with rules {_fmt(r['ringproxy-rules_cpu_us_per_req'], 2)}, nginx "
                     f"{_fmt(r['nginx_cpu_us_per_req'], 2)} / with rules {_fmt(r['nginx-rules_cpu_us_per_req'], 2)}")
            o.append("                  " + "; ".join(cells))
    if ratio_rows:
        o.append(f"ringproxy against the better of nginx and HAProxy, median of {reps} repetition(s):")
        o.append(f"{'clients':>7} {'body':>5} {'CPU µs/req':>10} {'growth':>6} {'÷peer':>6} {'p99 ms':>8} {'÷peer':>6}"
                 f" {'req/s':>8} {'÷peer':>6}   peak RSS MiB (ringproxy/nginx/haproxy), {after}")
    for r in ratio_rows:  # none without a load table (--idle)
        rss = "/".join(_fmt(r[f"{t}_peak_rss_mib"], 1) for t in ("ringproxy", "nginx", "haproxy"))
        rss2 = "/".join(_fmt(r[f"{t}_rss_after_mib"], 1) for t in ("ringproxy", "nginx", "haproxy"))
        o.append(f"{r['conns'] or '—':>7} {r['size']:>5} {_fmt(r['ringproxy_cpu_us_per_req'], 2):>10} "
                 f"{_fmt(r['ringproxy_growth'], 2):>6} {_fmt(r['cpu_ratio'], 2):>6} "
                 f"{_fmt(r['ringproxy_p99_ms'], 2):>8} {_fmt(r['p99_ratio'], 2):>6} "
                 f"{_fmt(r['ringproxy_rps'], 0):>8} {_fmt(r['rps_ratio'], 2):>6}   {rss}, {rss2}")
    errs = sum(m["errors"] for m in agg.values())
    if errs:
        o.append(f"errors: {errs} in all (see the table)")
    if idle:
        o.append("idle keep-alive, B per connection: " + ", ".join(
            f"{r['target']} {r['bytes_per_conn_after_request'] or 'n/a'}" for r in idle)
            + f" ({idle[0]['conns']} connections each)")
    o.append(f"table: {os.path.join(d, 'table.md')}")
    return "\n".join(o) + "\n"


def _chart(d, agg, targets, points):
    ts = [t for t in targets if any((t, c, s) in agg and agg[(t, c, s)]["cpu"] is not None for c, s in points)]
    if not ts:
        return
    dat = os.path.join(d, "chart.dat")
    with open(dat, "w") as f:
        for metric in ("cpu", "p99", "rps", "rss"):
            for c, s in points:
                vals = []
                for t in ts:
                    m = agg.get((t, c, s))
                    v = m[metric] if m else None
                    vals.append("?" if v is None else f"{v:.6g}")
                f.write(f"{c}x{s} " + " ".join(vals) + "\n")
            f.write("\n\n")
    plot = lambda idx: ", ".join(
        f"'{dat}' index {idx} using {i + 2}:xtic(1) title '{t}'" for i, t in enumerate(ts))
    gp = os.path.join(d, "chart.gp")
    with open(gp, "w") as f:
        f.write(f"""set terminal pngcairo size 1400,900 font 'sans,10'
set output '{os.path.join(d, "chart.png")}'
set datafile missing '?'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key outside bottom center horizontal maxrows 1 font ',9'
set grid ytics
set multiplot layout 2,2 title 'ringproxy bench: {os.path.basename(os.path.realpath(d))} (median of reps; x: clients x body)'
set logscale y
set title 'CPU per request (µs, lower is better)'
plot {plot(0)}
set title 'p99 latency (ms, lower is better)'
plot {plot(1)}
unset logscale y
set title 'requests/s (higher is better; load core shared)'
plot {plot(2)}
set title 'peak RSS during the run (MiB, summed over each target''s processes)'
plot {plot(3)}
unset multiplot
""")
    try:
        subprocess.run(["gnuplot", gp], check=True, timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except (OSError, subprocess.SubprocessError) as e:
        print(f"chart: gnuplot failed: {e}", file=sys.stderr)


# --------------------------------------------------------------------------
# edge rules pre-flight

# The edge request's fields (run.sh's EDGE_HEADERS); a case may change them.
EDGE_BASE = {"Host": "www.example.com", "X-Forwarded-Proto": "https", "True-Client-IP": "192.0.2.44",
             "User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
             "Accept": "*/*"}
# What rules 1 and 2 add to every answer over https, and remove.
EDGE_SEC = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "SAMEORIGIN",
            "Referrer-Policy": "strict-origin-when-cross-origin",
            "Strict-Transport-Security": "max-age=31536000; includeSubDomains", "X-Powered-By": None}
EDGE_HTTP_SEC = dict(EDGE_SEC, **{"Strict-Transport-Security": None})
# Fields a rule may set, checked on every answer: absent unless a case expects them.
EDGE_FIELDS = list(EDGE_SEC) + ["Location", "Retry-After", "Cache-Control", "X-Robots-Tag",
                                "Access-Control-Allow-Origin", "Access-Control-Allow-Methods",
                                "Access-Control-Max-Age"]
HTML = "text/html; charset=utf-8"
ORIGIN_POWERED_BY = "PHP/8.2.7"  # bench/conf/origin-nginx.conf


def _echo(uri, **kw):
    """The body of the origin's /.bench-echo for what it received."""
    f = {"uri": uri, "host": "www.example.com", "x-site": "www", "x-site-section": "",
         "x-forwarded-host": "www.example.com", "section-origin": "", "x-internal-token": ""}
    f.update({k.replace("_", "-"): v for k, v in kw.items()})
    return "".join(f"{k}={f[k]}\n" for k in ("uri", "host", "x-site", "x-site-section", "x-forwarded-host",
                                             "section-origin", "x-internal-token")).encode()


def _edge_cases(rules_dir, load_path, load_bytes):
    """(name, method, target, fields, status, expected fields, body or None) for each request."""
    with open(os.path.join(rules_dir, "pages", "maintenance.html"), "rb") as f:
        maint = f.read()
    with open(os.path.join(rules_dir, "pages", "404.html"), "rb") as f:
        page404 = f.read()
    moved = []
    with open(os.path.join(rules_dir, "redirects.txt")) as f:
        for line in f:
            if line.strip() and not line.lstrip().startswith("#"):
                moved.append(line.split())
    (m1f, m1t), (m2f, m2t) = moved[1], moved[len(moved) // 2]
    sec, hsec = EDGE_SEC, EDGE_HTTP_SEC
    return [
        ("the load's request: 7 rules apply, proxied with /blog stripped", "GET", load_path, {}, 200,
         dict(sec, **{"Content-Type": "application/octet-stream"}), b"x" * load_bytes),
        ("request fields set and removed, prefix stripped", "GET", "/blog/.bench-echo",
         {"X-Internal-Token": "secret", "X-Site": "client", "section-origin": "client"}, 200, sec,
         _echo("/.bench-echo", x_site_section="blog", section_origin="client")),
        ("query kept through the rewrite", "GET", "/blog/.bench-echo?a=1&b=%20c", {}, 200, sec,
         _echo("/.bench-echo?a=1&b=%20c", x_site_section="blog")),
        ("no rewrite: target as sent", "GET", "/.bench-echo?q=%7e", {}, 200, sec, _echo("/.bench-echo?q=%7e")),
        ("api host: section-origin, CORS", "GET", "/.bench-echo", {"Host": "api.example.com"}, 200,
         dict(sec, **{"Access-Control-Allow-Origin": "https://www.example.com"}),
         _echo("/.bench-echo", host="api.example.com", x_site="", x_forwarded_host="api.example.com",
               section_origin="api")),
        ("preview header", "GET", "/.bench-echo", {"X-Preview": "1"}, 200,
         dict(sec, **{"X-Robots-Tag": "noindex"}), _echo("/.bench-echo", section_origin="preview")),
        ("preview host (subdomains only)", "GET", "/.bench-echo", {"Host": "pr-7.preview.example.com"}, 200,
         dict(sec, **{"X-Robots-Tag": "noindex"}),
         _echo("/.bench-echo", host="pr-7.preview.example.com", x_site="",
               x_forwarded_host="pr-7.preview.example.com")),
        ("not a preview host", "GET", "/.bench-echo", {"Host": "preview.example.com"}, 200, sec,
         _echo("/.bench-echo", host="preview.example.com", x_site="", x_forwarded_host="preview.example.com")),
        ("https redirect", "GET", "/blog/x?y=1", {"X-Forwarded-Proto": "http"}, 301,
         dict(hsec, Location="https://www.example.com/blog/x?y=1"), None),
        ("canonical host", "GET", "/a/b?c", {"Host": "example.com"}, 301,
         dict(sec, Location="https://www.example.com/a/b?c"), None),
        ("method outside the list", "PURGE", "/x", {}, 405, sec, None),
        ("bad bot", "GET", "/", {"User-Agent": "BadBot/1.0"}, 403, sec, None),
        ("admin from outside the office", "GET", "/admin/users", {}, 403, sec, None),
        ("admin, exact path", "GET", "/admin", {}, 403, sec, None),
        ("admin, %61 in the path", "GET", "/%61dmin/users", {}, 403, sec, None),
        ("admin, // in the path", "GET", "//admin/users", {}, 403, sec, None),
        ("admin, %2F in the path", "GET", "/%2Fadmin/y", {}, 403, sec, None),
        ("admin from the office (True-Client-IP)", "GET", "/admin/ok.txt", {"True-Client-IP": "203.0.113.9"},
         200, sec, b"admin\n"),
        ("shop maintenance page", "GET", "/shop/cart", {}, 503,
         dict(sec, **{"Retry-After": "600", "Content-Type": HTML}), maint),
        ("shop maintenance, HEAD", "HEAD", "/shop", {}, 503, dict(sec, **{"Retry-After": "600"}), b""),
        ("redirect map hit", "GET", m1f, {}, 301, dict(sec, Location=m1t), None),
        ("redirect map hit, query kept", "GET", m2f + "?ref=mail", {}, 301, dict(sec, Location=m2t + "?ref=mail"),
         None),
        ("api preflight", "OPTIONS", "/v1/items", {"Host": "api.example.com"}, 204,
         dict(sec, **{"Access-Control-Allow-Origin": "https://www.example.com",
                      "Access-Control-Allow-Methods": "GET, POST, OPTIONS", "Access-Control-Max-Age": "86400"}),
         b""),
        ("static cache", "GET", "/assets/app.js", {}, 200,
         dict(sec, **{"Cache-Control": "public, max-age=31536000, immutable"}), b"app\n"),
        ("the origin's 404: the error page", "GET", "/no-such-page", {}, 404,
         dict(sec, **{"Content-Type": HTML}), page404),
        ("wp probe: 404 with the error page", "GET", "/wp-login.php", {}, 404, dict(sec, **{"Content-Type": HTML}),
         page404),
        ("legacy feed", "GET", "/feed", {}, 301, dict(sec, Location="https://www.example.com/blog/feed.xml"), None),
        ("health check over http: no rule applies", "GET", "/.well-known/section-io/aee-hc/healthz",
         {"X-Forwarded-Proto": "http"}, 200,
         {k: None for k in EDGE_SEC} | {"X-Powered-By": ORIGIN_POWERED_BY}, b"ok\n"),
    ]


def _edge_ask(hostport, method, target, fields):
    host, _, port = hostport.rpartition(":")
    c = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        c.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for k, v in dict(EDGE_BASE, **fields).items():
            c.putheader(k, v)
        c.endheaders()
        r = c.getresponse()
        body = r.read()
        return r.status, r.msg, body
    finally:
        c.close()


def cmd_edgecheck(a):
    """Every rules target answers each case as expected (status, the fields a rule may
    set, the body), and all of them alike. Prints every difference; exit 1 if any."""
    targets = [t.split("=", 1) for t in a.target]
    cases = _edge_cases(a.rules, a.load_path, a.load_bytes)
    bad = 0
    for name, method, target, fields, status, want, body in cases:
        seen = {}
        for t, hp in targets:
            problems = []
            try:
                st, msg, got = _edge_ask(hp, method, target, fields)
            except (OSError, http.client.HTTPException) as e:
                problems.append(f"no answer ({e or type(e).__name__})")
                st, msg, got = None, None, None
            if st is not None:
                if st != status:
                    problems.append(f"status {st}, expected {status}")
                for f in sorted(set(EDGE_FIELDS) | set(want)):
                    exp = want.get(f)
                    vals = msg.get_all(f) or []
                    if exp is None and vals:
                        problems.append(f"{f}: {vals}, expected none")
                    elif exp is not None and vals != [exp]:
                        problems.append(f"{f}: {vals or 'none'}, expected [{exp!r}]")
                srv = msg.get("Server", "")
                if "/" in srv and "healthz" not in target:
                    problems.append(f"Server: {srv!r}: a version (the origin's, or the proxy's own)")
                if body is not None and got != body:
                    problems.append(f"body {got[:60]!r}{'...' if len(got) > 60 else ''} ({len(got)} B), "
                                    f"expected {body[:60]!r} ({len(body)} B)")
                # Content-Type only where a case names it: nginx's own answers (403,
                # 301) have an HTML body of nginx's, ringproxy's a short text one.
                seen[t] = (st, [(f, msg.get_all(f)) for f in EDGE_FIELDS + ["Content-Type"]
                                if f != "Content-Type" or f in want], got if body is not None else None)
            mark = "ok  " if not problems else "FAIL"
            print(f"{mark} {t:16} {method} {target} ({name})" + "".join(f"\n       {p}" for p in problems))
            bad += bool(problems)
        if len(seen) > 1 and len({repr(v) for v in seen.values()}) > 1:
            print(f"DIFF {method} {target}: the targets answer differently:")
            for t, v in seen.items():
                print(f"       {t}: {v[0]} {[(f, x) for f, x in v[1] if x]}"
                      + (f" body {len(v[2])} B" if v[2] is not None else ""))
            bad += 1
    total = len(cases) * len(targets)
    print(f"{total - bad if bad <= total else 0}/{total} answers as expected"
          + (f", {bad} problem(s)" if bad else f" ({len(cases)} requests, targets: "
             + ", ".join(t for t, _ in targets) + ", alike)"))
    return 1 if bad else 0


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
    p.add_argument("timeout", type=float)
    p.add_argument("--header", action="append", help="a request field, 'Name: value'")
    p.set_defaults(f=cmd_wait)
    p = sp.add_parser("tree"); p.add_argument("root", type=int); p.set_defaults(f=cmd_tree)
    p = sp.add_parser("rss"); p.add_argument("root", type=int); p.set_defaults(f=cmd_rss)
    p = sp.add_parser("run")
    for k in ("target", "size", "url", "script", "out"):
        p.add_argument("--" + k, required=True)
    p.add_argument("--load-cpus", default="")
    p.add_argument("--proxy-cpus", default="")
    for k in ("bytes", "rep", "root", "duration", "conns", "threads"):
        p.add_argument("--" + k, type=int, required=True)
    p.add_argument("--perf", action="store_true")
    p.add_argument("--settle", type=float, default=0.0,
                   help="seconds after the load before reading RSS again (0: not read)")
    p.add_argument("--origin-status", default="", help="the origin's stub_status URL")
    p.add_argument("--header", action="append", help="a request field for wrk, 'Name: value'")
    p.set_defaults(f=cmd_run)
    p = sp.add_parser("idle")
    p.add_argument("--target", required=True); p.add_argument("--out", required=True)
    p.add_argument("--path", default="/13")
    for k, dflt in (("root", None), ("port", None), ("conns", 10000), ("batch", 100), ("timeout", 90)):
        p.add_argument("--" + k, type=int, required=dflt is None, default=dflt)
    p.set_defaults(f=cmd_idle)
    p = sp.add_parser("report"); p.add_argument("dir")
    p.add_argument("--headline", type=int, default=512,
                   help="clients of the headline table (the nearest measured if absent)")
    p.set_defaults(f=cmd_report)
    p = sp.add_parser("floor"); p.add_argument("dirs", nargs="+"); p.set_defaults(f=cmd_floor)
    p = sp.add_parser("edgepool"); p.add_argument("dirs", nargs="+"); p.set_defaults(f=cmd_edgepool)
    p = sp.add_parser("edgecheck", help="the edge rules' pre-flight")
    p.add_argument("--target", action="append", required=True, help="NAME=HOST:PORT")
    p.add_argument("--rules", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "conf", "rules"))
    p.add_argument("--load-path", default="/blog/13", help="the load's request target")
    p.add_argument("--load-bytes", type=int, default=13, help="its body size")
    p.set_defaults(f=cmd_edgecheck)
    p = sp.add_parser("instr"); p.add_argument("--target"); p.add_argument("--size")
    p.add_argument("--requests", type=int); p.add_argument("--dump"); p.add_argument("--out")
    p.set_defaults(f=cmd_instr)
    a = ap.parse_args()
    sys.exit(a.f(a) or 0)


if __name__ == "__main__":
    main()
