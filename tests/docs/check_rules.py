#!/usr/bin/env python3
"""Check that docs/rules.md and examples/rules/ say the same thing.

Usage: check_rules.py SOURCE_ROOT [VALIDATE]

- A fenced block right after `<!-- recipe: NAME -->` is, byte for byte,
  examples/rules/NAME/proxy.json; after `<!-- recipe: NAME/FILE -->`, it is
  examples/rules/NAME/FILE.
- Every folder of examples/rules/ is shown as a recipe, and is started by
  tests/e2e/test_rules.c (`start_recipe("NAME"`).
- Every ```json block of the doc is valid JSON.
- Every test named in the doc's brackets ([test: `x`], [tests: `x`, `y`])
  is a Test(e2e_rules, x, ...) in tests/e2e/test_rules.c.
- With VALIDATE (the built ringproxy-validate): it accepts every
  examples/rules/ folder silently, and every complete config of the doc
  (a JSON object of `lists`, `rules`, `error_pages` only) that names no file.

Prints each problem, then "N passed, N failed"; exits 1 when anything failed.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

MARK = re.compile(r"^<!-- recipe: ([a-z0-9-]+)(?:/([^ ]+))? -->\n```[a-z]*\n(.*?)^```$",
                  re.M | re.S)
FENCE = re.compile(r"^```([a-z]*)\n(.*?)^```$", re.M | re.S)
TESTS = re.compile(r"\[tests?: ([^\]]*)\]")
NAME = re.compile(r"`([a-z0-9_]+)`")
CONFIG_KEYS = {"lists", "rules", "error_pages"}


def names_a_file(v):
    if isinstance(v, dict):
        return "file" in v or "error_pages" in v or any(names_a_file(x) for x in v.values())
    if isinstance(v, list):
        return any(names_a_file(x) for x in v)
    return False


def validate(prog, folder):
    """(ok, what it printed) for ringproxy-validate FOLDER."""
    p = subprocess.run([prog, folder], capture_output=True, text=True, timeout=30)
    out = p.stdout + p.stderr
    return p.returncode == 0 and out == "", f"exit {p.returncode}: {out.strip()}"


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    root = sys.argv[1]
    prog = sys.argv[2] if len(sys.argv) == 3 else None
    doc_path = os.path.join(root, "docs", "rules.md")
    ex_root = os.path.join(root, "examples", "rules")
    with open(doc_path, encoding="utf-8") as f:
        doc = f.read()
    with open(os.path.join(root, "tests", "e2e", "test_rules.c"), encoding="utf-8") as f:
        tests_c = f.read()
    passed, failed = 0, []

    def check(ok, what):
        nonlocal passed
        if ok:
            passed += 1
        else:
            failed.append(what)

    shown = set()
    for m in MARK.finditer(doc):
        name, rel, body = m.group(1), m.group(2) or "proxy.json", m.group(3)
        path = os.path.join(ex_root, name, rel)
        if rel == "proxy.json":
            shown.add(name)
        try:
            with open(path, encoding="utf-8") as f:
                want = f.read()
        except OSError as e:
            check(False, f"docs/rules.md: recipe {name}/{rel}: {e}")
            continue
        check(body == want, f"docs/rules.md: recipe {name}/{rel} differs from "
              f"examples/rules/{name}/{rel}")

    folders = sorted(d for d in os.listdir(ex_root) if os.path.isdir(os.path.join(ex_root, d)))
    for name in folders:
        check(name in shown, f"examples/rules/{name}: not shown in docs/rules.md "
              f"(<!-- recipe: {name} --> before its proxy.json)")
        check(f'start_recipe("{name}"' in tests_c,
              f"examples/rules/{name}: no end-to-end test starts it (tests/e2e/test_rules.c)")
        if prog:
            ok, out = validate(prog, os.path.join(ex_root, name))
            check(ok, f"examples/rules/{name}: ringproxy-validate: {out}")

    for i, m in enumerate(FENCE.finditer(doc)):
        if m.group(1) != "json":
            continue
        line = doc[:m.start()].count("\n") + 1
        try:
            v = json.loads(m.group(2))
        except ValueError as e:
            check(False, f"docs/rules.md:{line}: the json block is not JSON: {e}")
            continue
        check(True, "")
        if (prog and isinstance(v, dict) and v and set(v) <= CONFIG_KEYS
                and not names_a_file(v)):
            with tempfile.TemporaryDirectory() as d:
                with open(os.path.join(d, "proxy.json"), "w", encoding="utf-8") as f:
                    f.write(m.group(2))
                ok, out = validate(prog, d)
            check(ok, f"docs/rules.md:{line}: the config is refused: {out}")

    for m in TESTS.finditer(doc):
        for name in NAME.findall(m.group(1)):
            check(re.search(r"Test\(e2e_rules,\s*" + name + r"\s*[,)]", tests_c) is not None,
                  f"docs/rules.md names the test {name}, which tests/e2e/test_rules.c lacks")

    for what in failed:
        print(what)
    print(f"{passed} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
