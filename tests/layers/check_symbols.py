#!/usr/bin/env python3
"""check_symbols.py — the libraries expose the public API and nothing else.

Every global symbol defined in libmetamori.a and libmetamori.so must be a
function declared MTM_API in include/metamori.h (all named mtm_*), and every
such function must be there. Internal names (vec_push, db_exec, ...) linked
into a program from the static library would collide with the program's own.

Usage: check_symbols.py SOURCE_DIR LIBMETAMORI.a LIBMETAMORI.so
"""
import re
import subprocess
import sys


def declared(header):
    with open(header, encoding="utf-8") as f:
        text = f.read()
    return set(re.findall(r"^MTM_API\b[^(;]*?\b(mtm_\w+)\s*\(", text, re.M))


def defined_globals(lib, dynamic):
    args = ["nm", "--defined-only", "-g"] + (["-D"] if dynamic else []) + [lib]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3:
            names.add(parts[2])
    return names


def main():
    src, static, shared = sys.argv[1:4]
    api = declared(src + "/include/metamori.h")
    bad = 0
    for lib, dynamic in ((static, False), (shared, True)):
        have = defined_globals(lib, dynamic)
        for name in sorted(have - api):
            why = "not prefixed mtm_" if not name.startswith("mtm_") else "not declared MTM_API in metamori.h"
            print(f"{lib}: global symbol {name}: {why}")
            bad += 1
        for name in sorted(api - have):
            print(f"{lib}: {name} is declared in metamori.h but not defined")
            bad += 1
    if bad:
        print(f"check_symbols: {bad} problem(s)", file=sys.stderr)
        return 1
    print(f"check_symbols: both libraries define exactly the {len(api)} public functions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
