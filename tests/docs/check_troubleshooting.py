#!/usr/bin/env python3
"""Check that docs/troubleshooting.md covers what the code can report.

Usage: check_troubleshooting.py SOURCE_ROOT

Everything is read from the code, not from a list kept here:

- termination values: string literals that http/proxy.c passes as the
  termination argument of conn_respond(), conn_abort() and conn_break(),
  assigns to a `termination` field, or reaches through such an argument:
  an array subscript (`term[why]`: every literal of that array's
  initializer) or a call (`reject_reason(...)`: every literal the function
  returns). A termination argument of any other form is reported, so that a
  new way of naming a termination cannot slip past this check;
- failure reasons: the literals of fail_names[] in http/stats.c;
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

TERM_CALLS = ("conn_respond", "conn_abort", "conn_break")
# termination arguments that only pass on a value set elsewhere
PASS_THROUGH = {"why", "NULL", "c->termination"}
SNAKE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
LITERAL = re.compile(r'"((?:[^"\\\n]|\\.)*)"')


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


def split_args(args):
    """Split a call's argument text at top-level commas."""
    parts, depth, cur, i = [], 0, [], 0
    while i < len(args):
        ch = args[i]
        if ch in "\"'":
            j = i + 1
            while j < len(args) and args[j] != ch:
                j += 2 if args[j] == "\\" else 1
            cur.append(args[i:j + 1])
            i = j + 1
            continue
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur).strip())
    return parts


def literals(text):
    return [m.group(1) for m in LITERAL.finditer(text)]


def array_literals(src, name):
    """Literals of the initializer of array `name` (`name[...] = { ... }`)."""
    m = re.search(r"\b%s\s*\[[^\]]*\]\s*=\s*\{" % re.escape(name), src)
    if not m:
        return None
    start = m.end() - 1
    return literals(src[start:balanced(src, start, "{", "}")])


def function_returns(src, name):
    """Literals returned by the definition of function `name`."""
    for m in re.finditer(r"\b%s\s*\(" % re.escape(name), src):
        close = balanced(src, m.end() - 1, "(", ")")
        rest = src[close:].lstrip()
        if not rest.startswith("{"):
            continue  # a call or a prototype
        body_start = close + (len(src[close:]) - len(rest))
        body = src[body_start:balanced(src, body_start, "{", "}")]
        return [m2.group(1) for m2 in re.finditer(r'\breturn\s+"((?:[^"\\]|\\.)*)"', body)]
    return None


def termination_values(path, problems):
    src = strip_comments(open(path, encoding="utf-8").read())
    found = {}

    def add(value, where):
        if SNAKE.match(value):
            found.setdefault(value, where)
        else:
            problems.append("%s: termination %r is not a snake_case name" % (where, value))

    for m in re.finditer(r"\b(%s)\s*\(" % "|".join(TERM_CALLS), src):
        fn = m.group(1)
        line = src.count("\n", 0, m.start()) + 1
        where = "http/proxy.c:%d %s()" % (line, fn)
        close = balanced(src, m.end() - 1, "(", ")")
        args = src[m.end():close - 1]
        if re.search(r"\b(?:void|int|char)\s*\**\s*$", src[:m.start()]):
            continue  # the prototype or the definition, not a call
        arg = split_args(args)[-1]
        lit = re.fullmatch(r'"((?:[^"\\]|\\.)*)"', arg)
        sub = re.fullmatch(r"([A-Za-z_]\w*)\s*\[.*\]", arg, re.S)
        call = re.fullmatch(r"([A-Za-z_]\w*)\s*\(.*\)", arg, re.S)
        if lit:
            add(lit.group(1), where)
        elif arg in PASS_THROUGH:
            pass
        elif sub:
            vals = array_literals(src, sub.group(1))
            if not vals:
                problems.append("%s: no initializer found for %s[]" % (where, sub.group(1)))
            for v in vals or []:
                add(v, "%s via %s[]" % (where, sub.group(1)))
        elif call:
            vals = function_returns(src, call.group(1))
            if not vals:
                problems.append("%s: no literal returns found in %s()" % (where, call.group(1)))
            for v in vals or []:
                add(v, "%s via %s()" % (where, call.group(1)))
        else:
            problems.append("%s: termination argument %r not understood: "
                            "teach check_troubleshooting.py" % (where, arg))

    for m in re.finditer(r"(?:->|\.)termination\s*=(?!=)([^;]*);", src):
        line = src.count("\n", 0, m.start()) + 1
        for v in literals(m.group(1)):
            add(v, "http/proxy.c:%d termination =" % line)
    return found


def fail_reasons(path, problems):
    src = strip_comments(open(path, encoding="utf-8").read())
    vals = array_literals(src, "fail_names")
    if not vals:
        problems.append("http/stats.c: fail_names[] not found")
        return {}
    return {v: "http/stats.c fail_names[]" for v in vals}


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
    terms = termination_values(os.path.join(root, "http", "proxy.c"), problems)
    reasons = fail_reasons(os.path.join(root, "http", "stats.c"), problems)
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
