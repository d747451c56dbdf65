#!/usr/bin/env python3
"""Sum single test results over meson test logs (TAP subtests counted one by one)
and extra 'N passed, N failed' lines; print the closing line."""
import json, re, sys

passed = failed = skipped = 0
for path in sys.argv[1:]:
    if path.endswith('.json'):
        for line in open(path, encoding='utf-8', errors='replace'):
            t = json.loads(line)
            out = t.get('stdout') or ''
            oks = re.findall(r'^(not ok|ok)\b[^\n]*', out, re.M)
            if oks and t.get('protocol', 'tap').lower() == 'tap':
                for m in re.finditer(r'^(not ok|ok)\b([^\n]*)', out, re.M):
                    if '# SKIP' in m.group(2):
                        skipped += 1
                    elif m.group(1) == 'ok':
                        passed += 1
                    else:
                        failed += 1
                if t['result'] not in ('OK', 'SKIP', 'EXPECTEDFAIL') and \
                        not re.search(r'^not ok', out, re.M):
                    failed += 1  # crashed or timed out outside any single test
            elif t['result'] in ('OK', 'EXPECTEDFAIL'):
                passed += 1
            elif t['result'] == 'SKIP':
                skipped += 1
            else:
                failed += 1
    else:
        for line in open(path, encoding='utf-8', errors='replace'):
            m = re.search(r'(\d+) passed, (\d+) failed', line)
            if m:
                passed += int(m.group(1))
                failed += int(m.group(2))
print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
sys.exit(1 if failed else 0)
