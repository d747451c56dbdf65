#!/usr/bin/env python3
"""Check .section-proxy.yaml against Section's module schema, the image and the code, and
examples/section-app/ against both.

Usage: check_section.py SOURCE_ROOT [VALIDATE] [--image INSPECT_JSON]

The schema is the one Section documents in its module-build-assets repository
(example-simple/section-proxy.md and the examples' .section-proxy.yaml):

- top level: `metadata` and `spec` (required), `hpa` (optional), nothing else;
- metadata: `name` (NAME:VERSION), `image` (registry-qualified), `httpContainer`,
  `configurationMountPath`, `logs.handler`, `logs.http.container`, `logs.http.stream`
  (`stdout` or `stderr`) required; `logs.additional[]` with `name`, `container`, `stream`;
  `memoryContainer` (required with more than one container), `metrics` (`path`, `port`),
  `redeployTriggers` (`opsVariables`, `onAnyModuleFileChanges`) optional;
- spec: a PodSpec subset: `volumes[]` (`name` only) and `containers[]` (at least one) with
  `name` and `resources` required, `volumeMounts` (`name`, `mountPath`), `env` (`name`,
  `value`; no `valueFrom`), `command`, and `readinessProbe` / `livenessProbe` with only
  `initialDelaySeconds` (honoured for the httpContainer only). `resources` has both
  `requests` and `limits`, each with both `cpu` and `memory`. Anything else, such as
  `securityContext`, seccomp profiles or capabilities, is not in the schema.

Against this repository: the name and image tag carry meson.build's version, the container
name is the image's title label, the Containerfile exposes port 80 only and installs
validate.sh and prepare.sh under /opt/section/, the config mount path is the proxy's default
config folder (cfg/cfg.h), the metrics port and path are the admin listener's default
(cfg/schema.c) and what http/admin.c serves, access lines go to stdout and diagnostics to
stderr, and docs/container.md states each resource figure.

examples/section-app/: section.config.json is JSON with a `proxychain` whose ringproxy entry
names this module (`image` = metadata.name) and a folder of the example holding proxy.json,
which the built validator (VALIDATE) accepts silently; an admin.listen there keeps the
metrics port. docs/section.md shows the example's files as they are (a fenced block after
`<!-- file: PATH -->` equals PATH byte for byte) and links nothing outside the repository.

With --image (the output of `podman image inspect`, as container/image-test.sh passes it):
the built image's exposed ports, entrypoint, title and version labels agree too.

Prints each problem, then "N passed, N failed"; exits 1 when anything failed.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

passed = 0
failed = 0


def check(ok, what, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL: {what}" + (f": {detail}" if detail else ""))
    return ok


# ---- a small YAML reader: block mappings and sequences, plain and quoted scalars -------------
# Enough for Section's files (the PyYAML package is not among the build's dependencies); flow
# collections, anchors, tags and multi-line scalars are refused rather than misread.

class YamlError(Exception):
    pass


def _strip_comment(line):
    out, quote = [], None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            break
        out.append(ch)
    return "".join(out).rstrip()


def _scalar(text, where):
    t = text.strip()
    if not t:
        return None
    if t[0] in "'\"":
        if len(t) < 2 or t[-1] != t[0]:
            raise YamlError(f"{where}: unterminated quoted scalar")
        body = t[1:-1]
        return body.replace("''", "'") if t[0] == "'" else body.encode().decode("unicode_escape")
    if t[0] in "[{&*!|>%@`":
        raise YamlError(f"{where}: unsupported YAML here: {t!r}")
    if t in ("true", "True", "TRUE"):
        return True
    if t in ("false", "False", "FALSE"):
        return False
    if t in ("null", "Null", "NULL", "~"):
        return None
    if re.fullmatch(r"[-+]?[0-9]+", t):
        return int(t)
    if re.fullmatch(r"[-+]?([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?", t):
        return float(t)
    return t


def _key_value(text, where):
    m = re.match(r"""^("[^"]*"|'[^']*'|[^'"\s][^:]*?)\s*:(?:\s+(.*)|)$""", text)
    if not m:
        raise YamlError(f"{where}: expected 'key: value', got {text!r}")
    return _scalar(m.group(1), where), m.group(2) or ""


def yaml_load(text, name="yaml"):
    lines = []
    for n, raw in enumerate(text.splitlines(), 1):
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise YamlError(f"{name}:{n}: a tab in the indentation")
        s = _strip_comment(raw)
        if s.strip() in ("", "---"):
            continue
        lines.append((n, len(s) - len(s.lstrip(" ")), s.strip()))
    pos = 0

    def block(indent):
        nonlocal pos
        if pos >= len(lines):
            return None
        n, ind, s = lines[pos]
        if ind != indent:
            raise YamlError(f"{name}:{n}: indentation {ind}, expected {indent}")
        return seq(indent) if s == "-" or s.startswith("- ") else mapping(indent)

    def value_after(rest, indent, n, in_seq_item=False):
        """A value: inline scalar, or a nested block on the following lines."""
        nonlocal pos
        if rest.strip():
            return _scalar(rest, f"{name}:{n}")
        if pos < len(lines) and lines[pos][1] > indent:
            return block(lines[pos][1])
        # a sequence may sit at the same indentation as its key
        if not in_seq_item and pos < len(lines) and lines[pos][1] == indent and \
                (lines[pos][2] == "-" or lines[pos][2].startswith("- ")):
            return seq(indent)
        return None

    def mapping(indent, first=None):
        nonlocal pos
        out = {}
        while pos < len(lines) or first:
            if first:
                n, ind, s = first
                first = None
            else:
                n, ind, s = lines[pos]
                if ind < indent:
                    break
                if ind > indent:
                    raise YamlError(f"{name}:{n}: unexpected indentation")
                if s == "-" or s.startswith("- "):
                    break
                pos += 1
            k, rest = _key_value(s, f"{name}:{n}")
            if k in out:
                raise YamlError(f"{name}:{n}: duplicate key {k!r}")
            out[k] = value_after(rest, ind, n)
        return out

    def seq(indent):
        nonlocal pos
        out = []
        while pos < len(lines):
            n, ind, s = lines[pos]
            if ind < indent or not (s == "-" or s.startswith("- ")):
                break
            if ind > indent:
                raise YamlError(f"{name}:{n}: unexpected indentation")
            pos += 1
            item = s[1:].strip()
            item_indent = ind + 2
            if not item:
                out.append(value_after("", ind, n, in_seq_item=True))
            elif re.match(r"""^("[^"]*"|'[^']*'|[^'"\s][^:]*?)\s*:(\s|$)""", item):
                # a mapping whose first key sits on the dash line
                out.append(mapping(item_indent, first=(n, item_indent, item)))
            else:
                out.append(_scalar(item, f"{name}:{n}"))
        return out

    doc = block(lines[0][1]) if lines else None
    if pos < len(lines):
        raise YamlError(f"{name}:{lines[pos][0]}: unexpected line")
    return doc


# ---- Kubernetes quantities -------------------------------------------------------------------

def cpu_millis(q):
    s = str(q)
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(m?)", s)
    if not m:
        return None
    v = float(m.group(1))
    return v if m.group(2) else v * 1000


MEM_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def mem_bytes(q):
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(|k|M|G|T|Ki|Mi|Gi|Ti)", str(q))
    return float(m.group(1)) * MEM_UNITS[m.group(2)] if m else None


# ---- the schema --------------------------------------------------------------------------------

TOP = {"metadata", "spec", "hpa"}
META = {"name", "image", "httpContainer", "memoryContainer", "configurationMountPath", "logs",
        "metrics", "redeployTriggers"}
META_REQUIRED = {"name", "image", "httpContainer", "configurationMountPath", "logs"}
CONTAINER = {"name", "resources", "volumeMounts", "env", "command", "readinessProbe",
             "livenessProbe"}
# said here so that a failure names what is wrong with it, not only that it is unknown
NOT_IN_SCHEMA = {"securityContext", "seccompProfile", "capabilities", "privileged",
                 "allowPrivilegeEscalation", "runAsUser", "runAsNonRoot", "hostNetwork",
                 "hostPID", "serviceAccountName", "ports", "image", "args", "sysctls",
                 "runtime", "initContainers"}


def keys_within(obj, allowed, where):
    if not check(isinstance(obj, dict), f"{where} is a mapping", type(obj).__name__):
        return False
    extra = set(obj) - set(allowed)
    for k in sorted(extra, key=str):
        why = " (Section's schema has no way to set it)" if k in NOT_IN_SCHEMA else ""
        check(False, f"{where}: key {k!r} is not in Section's schema{why}")
    return not extra


def find_keys(obj, names, path=""):
    """Every path below obj whose key is in names."""
    hits = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = f"{path}.{k}" if path else str(k)
            if k in names:
                hits.append(p)
            hits += find_keys(v, names, p)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            hits += find_keys(v, names, f"{path}[{i}]")
    return hits


def check_schema(doc):
    """Section's documented schema. Returns (metadata, containers) for the checks that follow."""
    if not keys_within(doc, TOP, "top level"):
        if not isinstance(doc, dict):
            return {}, []
    for k in ("metadata", "spec"):
        check(k in doc, f"top level: {k!r} is required")
    for p in find_keys(doc, {"securityContext", "seccompProfile", "capabilities", "privileged",
                             "allowPrivilegeEscalation", "sysctls"}):
        check(False, f"{p}: Section's schema has no security settings")

    meta = doc.get("metadata") or {}
    if keys_within(meta, META, "metadata") or isinstance(meta, dict):
        for k in sorted(META_REQUIRED):
            check(k in meta, f"metadata.{k} is required")
    name = meta.get("name", "")
    check(isinstance(name, str) and re.fullmatch(r"[a-z0-9][a-z0-9._-]*:[A-Za-z0-9][A-Za-z0-9._-]*", name),
          "metadata.name is NAME:VERSION, as an application's proxychain names it", repr(name))
    image = meta.get("image", "")
    first = image.split("/", 1)[0] if isinstance(image, str) else ""
    check(isinstance(image, str) and "/" in image and ("." in first or ":" in first or first == "localhost"),
          "metadata.image is registry-qualified (REGISTRY/PATH:TAG)", repr(image))
    check(isinstance(image, str) and re.search(r":[A-Za-z0-9_][A-Za-z0-9_.-]*$", image.split("/")[-1] if image else ""),
          "metadata.image has a tag", repr(image))
    cmp = meta.get("configurationMountPath")
    check(isinstance(cmp, str) and cmp.startswith("/"), "metadata.configurationMountPath is an absolute path", repr(cmp))

    logs = meta.get("logs") or {}
    if keys_within(logs, {"handler", "http", "additional"}, "metadata.logs"):
        check(isinstance(logs.get("handler"), str) and logs["handler"], "metadata.logs.handler is a label")
        http = logs.get("http") or {}
        if keys_within(http, {"container", "stream"}, "metadata.logs.http"):
            check("container" in http, "metadata.logs.http.container is required")
            check(http.get("stream") in ("stdout", "stderr"), "metadata.logs.http.stream is stdout or stderr",
                  repr(http.get("stream")))
        add = logs.get("additional", [])
        if check(isinstance(add, list), "metadata.logs.additional is a list"):
            for i, a in enumerate(add):
                w = f"metadata.logs.additional[{i}]"
                if keys_within(a, {"name", "container", "stream"}, w):
                    for k in ("name", "container", "stream"):
                        check(k in a, f"{w}.{k} is required")
                    check(a.get("stream") in ("stdout", "stderr"), f"{w}.stream is stdout or stderr")
    metrics = meta.get("metrics")
    if metrics is not None and keys_within(metrics, {"path", "port"}, "metadata.metrics"):
        check(isinstance(metrics.get("path"), str) and metrics["path"].startswith("/"),
              "metadata.metrics.path is a URL path")
        check(isinstance(metrics.get("port"), int) and 0 < metrics["port"] < 65536,
              "metadata.metrics.port is a port number")
    rt = meta.get("redeployTriggers")
    if rt is not None and keys_within(rt, {"opsVariables", "onAnyModuleFileChanges"}, "metadata.redeployTriggers"):
        if "opsVariables" in rt:
            check(isinstance(rt["opsVariables"], list) and all(isinstance(x, str) for x in rt["opsVariables"]),
                  "metadata.redeployTriggers.opsVariables is a list of names")
        if "onAnyModuleFileChanges" in rt:
            check(isinstance(rt["onAnyModuleFileChanges"], bool),
                  "metadata.redeployTriggers.onAnyModuleFileChanges is a boolean")

    spec = doc.get("spec") or {}
    containers = []
    if keys_within(spec, {"volumes", "containers"}, "spec"):
        vols = spec.get("volumes", [])
        volnames = set()
        if check(isinstance(vols, list), "spec.volumes is a list"):
            for i, v in enumerate(vols):
                if keys_within(v, {"name"}, f"spec.volumes[{i}]"):
                    volnames.add(v.get("name"))
        containers = spec.get("containers")
        if not check(isinstance(containers, list) and containers, "spec.containers has at least one container"):
            containers = []
        for i, c in enumerate(containers):
            w = f"spec.containers[{i}]"
            if not keys_within(c, CONTAINER, w):
                if not isinstance(c, dict):
                    continue
            check(isinstance(c.get("name"), str) and c.get("name"), f"{w}.name is required")
            res = c.get("resources")
            if check(isinstance(res, dict), f"{w}.resources is required"):
                keys_within(res, {"requests", "limits"}, f"{w}.resources")
                for part in ("requests", "limits"):
                    r = res.get(part)
                    if check(isinstance(r, dict), f"{w}.resources.{part} is required"):
                        keys_within(r, {"cpu", "memory"}, f"{w}.resources.{part}")
                        for k in ("cpu", "memory"):
                            check(k in r, f"{w}.resources.{part}.{k} is required")
                        check("cpu" not in r or (cpu_millis(r["cpu"]) or 0) > 0,
                              f"{w}.resources.{part}.cpu is a CPU quantity", repr(r.get("cpu")))
                        check("memory" not in r or (mem_bytes(r["memory"]) or 0) > 0,
                              f"{w}.resources.{part}.memory is a memory quantity", repr(r.get("memory")))
                req, lim = res.get("requests") or {}, res.get("limits") or {}
                if cpu_millis(req.get("cpu")) and cpu_millis(lim.get("cpu")):
                    check(cpu_millis(req["cpu"]) <= cpu_millis(lim["cpu"]), f"{w}: cpu request <= limit")
                if mem_bytes(req.get("memory")) and mem_bytes(lim.get("memory")):
                    check(mem_bytes(req["memory"]) <= mem_bytes(lim["memory"]), f"{w}: memory request <= limit")
            for probe in ("readinessProbe", "livenessProbe"):
                if probe in c and keys_within(c[probe], {"initialDelaySeconds"}, f"{w}.{probe}"):
                    d = c[probe].get("initialDelaySeconds")
                    check(isinstance(d, int) and d >= 0, f"{w}.{probe}.initialDelaySeconds is a whole number")
                    check(c.get("name") == meta.get("httpContainer"),
                          f"{w}.{probe}: probes are honoured for the httpContainer only")
            for j, vm in enumerate(c.get("volumeMounts", []) or []):
                if keys_within(vm, {"name", "mountPath"}, f"{w}.volumeMounts[{j}]"):
                    check(vm.get("name") in volnames, f"{w}.volumeMounts[{j}] names a volume of spec.volumes")
            for j, e in enumerate(c.get("env", []) or []):
                keys_within(e, {"name", "value"}, f"{w}.env[{j}]")
            if "command" in c:
                check(isinstance(c["command"], list) and all(isinstance(x, str) for x in c["command"]),
                      f"{w}.command is a list of strings")
    names = [c.get("name") for c in containers if isinstance(c, dict)]
    check(len(names) == len(set(names)), "container names are unique")
    if len(names) > 1:
        check(meta.get("memoryContainer") in names, "metadata.memoryContainer names a container (more than one)")
    check(meta.get("httpContainer") in names, "metadata.httpContainer names a container of spec",
          repr(meta.get("httpContainer")))
    logs = meta.get("logs") or {}
    if isinstance(logs, dict):
        check((logs.get("http") or {}).get("container") in names,
              "metadata.logs.http.container names a container of spec")
        for i, a in enumerate(logs.get("additional", []) or []):
            check(isinstance(a, dict) and a.get("container") in names,
                  f"metadata.logs.additional[{i}].container names a container of spec")

    hpa = doc.get("hpa")
    if hpa is not None and keys_within(hpa, {"apiVersion", "spec"}, "hpa"):
        check(hpa.get("apiVersion") == "autoscaling/v2beta1", "hpa.apiVersion is autoscaling/v2beta1")
        check("scaleTargetRef" not in (hpa.get("spec") or {}), "hpa.spec.scaleTargetRef is Section's to set")
    return meta, [c for c in containers if isinstance(c, dict)]


# ---- this repository ---------------------------------------------------------------------------

def read(root, path):
    with open(os.path.join(root, path), encoding="utf-8") as f:
        return f.read()


def containerfile_facts(text):
    """The runtime stage's instructions: EXPOSE, ENTRYPOINT, LABELs, ARG defaults, COPY targets."""
    joined = re.sub(r"\\\n", " ", text)
    stages = re.split(r"(?m)^FROM\s", joined)
    runtime = stages[-1]
    facts = {"expose": [], "labels": {}, "args": {}, "copies": [], "entrypoint": None,
             "installs": re.findall(r"(/out/\S+)", joined)}
    for line in runtime.splitlines():
        line = line.strip()
        if line.startswith("EXPOSE "):
            facts["expose"] += line.split()[1:]
        elif line.startswith("ENTRYPOINT "):
            facts["entrypoint"] = json.loads(line[len("ENTRYPOINT "):])
        elif line.startswith("LABEL "):
            for k, v in re.findall(r'([\w.-]+)="([^"]*)"', line):
                facts["labels"][k] = v
        elif line.startswith("ARG ") and "=" in line:
            k, v = line[4:].split("=", 1)
            facts["args"][k.strip()] = v.strip()
        elif line.startswith("COPY "):
            facts["copies"].append(line.split()[-2:])
    return facts


def check_repo(root, meta, containers, inspect):
    version = re.search(r"version:\s*'([^']+)'", read(root, "meson.build")).group(1)
    name = meta.get("name", "")
    mod, _, ver = str(name).partition(":")
    check(ver == version, f"metadata.name's version is meson.build's ({version})", repr(name))
    image = str(meta.get("image", ""))
    repo_part, _, tag = image.rpartition(":")
    check(tag == version, f"metadata.image's tag is meson.build's version ({version})", repr(image))
    check(repo_part.rsplit("/", 1)[-1] == mod, "metadata.image's repository is the module's name", repr(image))

    cf = containerfile_facts(read(root, "Containerfile"))
    http = next((c for c in containers if c.get("name") == meta.get("httpContainer")), {})
    title = cf["labels"].get("org.opencontainers.image.title")
    check(http.get("name") == title == mod,
          "the HTTP container's name, the image's title label and the module name agree",
          f"{http.get('name')!r}, {title!r}, {mod!r}")
    check(cf["args"].get("VERSION") == version, "Containerfile ARG VERSION defaults to meson.build's version",
          repr(cf["args"].get("VERSION")))
    check(cf["expose"] == ["80"], "Containerfile EXPOSEs port 80 and nothing else (C1)", repr(cf["expose"]))
    check(cf["entrypoint"] == ["/usr/local/bin/ringproxy"], "Containerfile ENTRYPOINT is the proxy",
          repr(cf["entrypoint"]))
    check(any(p.endswith("/opt/section/validate.sh") for p in cf["installs"]),
          "the image installs /opt/section/validate.sh (C8)")
    check(["container/prepare.sh", "/opt/section/prepare.sh"] in cf["copies"],
          "the image copies container/prepare.sh to /opt/section/prepare.sh")
    prep = os.path.join(root, "container", "prepare.sh")
    check(os.path.isfile(prep) and os.access(prep, os.X_OK) and read(root, "container/prepare.sh").startswith("#!/bin/sh"),
          "container/prepare.sh is an executable /bin/sh script")
    ign = read(root, ".containerignore").splitlines() if os.path.exists(os.path.join(root, ".containerignore")) else []
    check("container" not in ign or "!container/prepare.sh" in ign,
          ".containerignore lets container/prepare.sh into the build context")

    cfg_dir = re.search(r'#define CFG_DEFAULT_DIR "([^"]+)"', read(root, "cfg/cfg.h")).group(1)
    check(meta.get("configurationMountPath") == cfg_dir,
          f"metadata.configurationMountPath is the proxy's default config folder ({cfg_dir}, C9)",
          repr(meta.get("configurationMountPath")))
    check(any(p.rstrip("/").endswith("/out" + cfg_dir) for p in cf["installs"]),
          f"the image has an empty {cfg_dir} to mount over")

    admin = re.search(r'"admin\.listen".*?\.def_str\s*=\s*"([^"]+)"', read(root, "cfg/schema.c"), re.S)
    admin_port = int(admin.group(1).rsplit(":", 1)[1]) if admin else None
    metrics = meta.get("metrics") or {}
    check(metrics.get("port") == admin_port,
          f"metadata.metrics.port is the admin listener's default port ({admin_port})", repr(metrics.get("port")))
    path = metrics.get("path")
    check(isinstance(path, str) and f'"GET {path} ' in read(root, "http/admin.c"),
          "metadata.metrics.path is a path http/admin.c serves", repr(path))

    logs = meta.get("logs") or {}
    check((logs.get("http") or {}).get("stream") == "stdout", "access lines are on stdout (C5)")
    add = logs.get("additional") or []
    check(any(isinstance(a, dict) and a.get("stream") == "stderr" and a.get("container") == http.get("name")
              for a in add), "an additional log of the HTTP container is stderr, the diagnostics (C6)")

    # docs/container.md states each figure (and says how it was measured)
    doc = read(root, "docs/container.md")
    res = http.get("resources") or {}
    for part in ("requests", "limits"):
        for k in ("cpu", "memory"):
            v = str((res.get(part) or {}).get(k))
            check(re.search(r"`" + re.escape(v) + r"`", doc) is not None,
                  f"docs/container.md states resources.{part}.{k} ({v})")

    if inspect:
        cfg = inspect[0].get("Config", {}) if isinstance(inspect, list) and inspect else {}
        check(sorted((cfg.get("ExposedPorts") or {}).keys()) == ["80/tcp"], "the image exposes 80/tcp only")
        check(cfg.get("Entrypoint") == ["/usr/local/bin/ringproxy"], "the image's entrypoint is the proxy")
        labels = cfg.get("Labels") or {}
        check(labels.get("org.opencontainers.image.title") == http.get("name"),
              "the image's title label is the HTTP container's name")
        check(labels.get("org.opencontainers.image.version") == version, "the image's version label is the module's")


def check_example(root, meta, validate):
    ex = os.path.join(root, "examples", "section-app")
    try:
        with open(os.path.join(ex, "section.config.json"), encoding="utf-8") as f:
            conf = json.load(f)
    except (OSError, ValueError) as e:
        check(False, "examples/section-app/section.config.json is JSON", str(e))
        return
    chain = conf.get("proxychain") if isinstance(conf, dict) else None
    if not check(isinstance(chain, list) and chain, "section.config.json has a proxychain list"):
        return
    for i, p in enumerate(chain):
        check(isinstance(p, dict) and isinstance(p.get("name"), str) and isinstance(p.get("image"), str),
              f"proxychain[{i}] has a name and an image")
    ours = [p for p in chain if isinstance(p, dict) and p.get("image") == meta.get("name")]
    if not check(len(ours) == 1, f"exactly one proxychain entry has image {meta.get('name')!r} (metadata.name)"):
        return
    folder = os.path.join(ex, ours[0]["name"])
    pj = os.path.join(folder, "proxy.json")
    check(os.path.isdir(folder), f"the entry's folder examples/section-app/{ours[0]['name']}/ exists")
    if not check(os.path.isfile(pj), f"examples/section-app/{ours[0]['name']}/proxy.json exists"):
        return
    try:
        with open(pj, encoding="utf-8") as f:
            pconf = json.load(f)
    except ValueError as e:
        check(False, "the example's proxy.json is JSON", str(e))
        return
    listen = (pconf.get("admin") or {}).get("listen")
    if listen:
        check(int(listen.rsplit(":", 1)[1]) == (meta.get("metrics") or {}).get("port"),
              "the example's admin.listen keeps the metrics port")
    readme = read(root, "examples/section-app/README.md")
    check("section.config.json" in readme and meta.get("name", "") in readme,
          "examples/section-app/README.md names section.config.json and the module's name:version")
    if validate:
        for d in [folder] + sorted(os.path.join(ex, x) for x in os.listdir(ex)
                                   if os.path.isdir(os.path.join(ex, x)) and os.path.join(ex, x) != folder):
            p = subprocess.run([validate, d], capture_output=True, text=True, timeout=30)
            out = (p.stdout + p.stderr).strip()
            check(p.returncode == 0 and not out, f"{validate} {os.path.relpath(d, root)}: exit 0, silent",
                  f"exit {p.returncode}: {out}")


def check_docs(root):
    path = os.path.join(root, "docs", "section.md")
    if not check(os.path.isfile(path), "docs/section.md exists"):
        return
    doc = read(root, "docs/section.md")
    shown = re.findall(r"^<!-- file: (\S+) -->\n```[a-z]*\n(.*?)^```$", doc, re.M | re.S)
    check(len(shown) >= 2, "docs/section.md shows the module's files (<!-- file: PATH --> blocks)")
    for p, body in shown:
        full = os.path.join(root, p)
        check(os.path.isfile(full) and read(root, p) == body,
              f"docs/section.md shows {p} as it is", "differs" if os.path.isfile(full) else "no such file")
    for m in re.finditer(r"\]\(([^)#]+)", doc):
        target = m.group(1)
        if re.match(r"[a-z]+:", target):
            continue
        resolved = os.path.normpath(os.path.join(root, "docs", target))
        check(resolved.startswith(root + os.sep) and os.path.exists(resolved),
              f"docs/section.md links {target}, inside the repository")


def main():
    args = sys.argv[1:]
    inspect = None
    if "--image" in args:
        i = args.index("--image")
        with open(args[i + 1], encoding="utf-8") as f:
            inspect = json.load(f)
        del args[i:i + 2]
    if len(args) not in (1, 2):
        print(__doc__.strip().splitlines()[3], file=sys.stderr)
        return 2
    root = os.path.abspath(args[0])
    validate = args[1] if len(args) == 2 else None

    text = read(root, ".section-proxy.yaml")
    try:
        doc = yaml_load(text, ".section-proxy.yaml")
    except YamlError as e:
        check(False, "the YAML reader reads .section-proxy.yaml", str(e))
        print(f"{passed} passed, {failed} failed")
        return 1
    try:  # where PyYAML is installed, it must read the same thing
        import yaml  # noqa: F401
        check(yaml.safe_load(text) == doc, "PyYAML reads .section-proxy.yaml the same way")
    except ImportError:
        pass
    meta, containers = check_schema(doc)
    check_repo(root, meta, containers, inspect)
    check_example(root, meta, validate)
    check_docs(root)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
