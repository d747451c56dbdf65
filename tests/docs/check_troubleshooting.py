#!/usr/bin/env python3
"""Check that docs/troubleshooting.md covers what the code can report.

Usage: check_troubleshooting.py SOURCE_ROOT

Everything is read from the code, not from a list kept here:

- termination values and failure reasons: the two columns of http_terms[]
  in http/stats.c, the one table the access log and the metrics name them
  from (every termination is an enum http_term value, so none can be named
  anywhere else);
- metric names: every `ringproxy_...` name in a string literal of
  http/admin.c (the _bucket/_sum/_count series of a histogram count as the
  histogram).

Each must appear in the doc as a code span: the value itself, or for a
metric its name alone or followed by `{`. Prints each missing item, then
"N passed, N failed"; exits 1 when anything is missing.
"""

import os
import re
import sys

SNAKE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
LITERAL = re.compile(r'"((?:[^"\\\n]|\\.)*)"')
ROW = re.compile(r"\[(HT_\w+)\]\s*=\s*\{\s*(NULL|\"[^\"]*\")\s*,\s*(NULL|\"[^\"]*\")\s*\}")


def strip_comments(src):
    """Blank out C comments, keeping string/char literals and line breaks."""
    out = []
    i, n = 0, len(src)
    while i < n:
        ch = src[i]
        if ch in "\"'":
            j = i + 1
            while j < n and src[j] != ch:
                j += 2 if src[j] == "\\" else 1
            out.append(src[i:j + 1])
            i = j + 1
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", src[i:j]))
            i = j
        elif src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def balanced(src, start, open_ch, close_ch):
    """Index just past the bracket closing the one at src[start]."""
    depth = 0
    i = start
    while i < len(src):
        ch = src[i]
        if ch in "\"'":
            j = i + 1
            while j < len(src) and src[j] != ch:
                j += 2 if src[j] == "\\" else 1
            i = j + 1
            continue
        if ch == open_ch:
            depth += 1
        elif ch == close_ch:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError("unbalanced %s at offset %d" % (open_ch, start))


def literals(text):
    return [m.group(1) for m in LITERAL.finditer(text)]


def term_table(path, problems):
    """Termination values and failure reasons: the columns of http_terms[]."""
    src = strip_comments(open(path, encoding="utf-8").read())
    m = re.search(r"\bhttp_terms\s*\[[^\]]*\]\s*=\s*\{", src)
    if not m:
        problems.append("http/stats.c: http_terms[] not found")
        return {}, {}
    start = m.end() - 1
    table = src[start:balanced(src, start, "{", "}")]
    terms, reasons = {}, {}
    for row in ROW.finditer(table):
        where = "http/stats.c http_terms[%s]" % row.group(1)
        for col, out in ((row.group(2), terms), (row.group(3), reasons)):
            if col == "NULL":
                continue
            value = col.strip('"')
            if SNAKE.match(value):
                out.setdefault(value, where)
            else:
                problems.append("%s: %r is not a snake_case name" % (where, value))
    return terms, reasons


def metric_names(path, problems):
    src = strip_comments(open(path, encoding="utf-8").read())
    names = {}
    histograms = set()
    for lit in literals(src):
        for m in re.finditer(r"# TYPE (ringproxy_\w+) histogram", lit):
            histograms.add(m.group(1))
    for lit in literals(src):
        for m in re.finditer(r"\bringproxy_\w+", lit):
            name = m.group(0)
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if base != name and base in histograms:
                name = base
            names.setdefault(name, "http/admin.c")
    if not names:
        problems.append("http/admin.c: no ringproxy_ metric names found")
    return names


def code_spans(doc):
    doc = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", doc, flags=re.S | re.M)
    return set(m.group(1).strip() for m in re.finditer(r"(?<!`)`([^`\n]+)`(?!`)", doc))


def main():
    if len(sys.argv) != 2:
        sys.stderr.write("usage: %s SOURCE_ROOT\n" % sys.argv[0])
        return 2
    root = sys.argv[1]
    problems = []
    terms, reasons = term_table(os.path.join(root, "http", "stats.c"), problems)
    metrics = metric_names(os.path.join(root, "http", "admin.c"), problems)
    spans = code_spans(open(os.path.join(root, "docs", "troubleshooting.md"),
                            encoding="utf-8").read())
    # an extraction that finds next to nothing is broken, not a pass
    for what, got, least in (("termination values", terms, 10),
                             ("failure reasons", reasons, 3),
                             ("metric names", metrics, 10)):
        if len(got) < least:
            problems.append("only %d %s extracted: extraction broken?" % (len(got), what))

    passed = failed = 0
    for kind, items, ok in (
            ("termination value", terms, lambda v: v in spans),
            ("failure reason", reasons, lambda v: v in spans),
            ("metric", metrics,
             lambda v: v in spans or any(s.startswith(v + "{") for s in spans))):
        for value in sorted(items):
            if ok(value):
                passed += 1
            else:
                failed += 1
                print("MISSING %s `%s` (from %s) in docs/troubleshooting.md"
                      % (kind, value, items[value]))
    for p in problems:
        failed += 1
        print("ERROR " + p)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
