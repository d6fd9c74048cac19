#!/usr/bin/env python3
"""check_layers.py — fails on an #include that points up a layer, and on
library code that prints.

The library is built in layers that only call down (docs/DESIGN.md, "Layers").
LAYERS below is the one place that order is written: a folder of src/ may
include its own headers and those of folders on lower rows, never those of
its own row's other folders or of a higher row. include/metamori.h (the
public types and error codes) may be included anywhere; src/cli/ may include
nothing else (it builds against the public API only).

Nor may the library call up through the public header: an mtm_* function
defined in src/api/ (it combines layers) is called by no other layer of the
library.

The library never prints (it reports through mtm_set_log_handler): outside
src/cli/, the interposer (src/track/, a program of its own) and the DMTCP
plugin (src/dmtcp/, loaded into a program by DMTCP), no code may
name stdout or stderr or call printf, puts, perror or dprintf.

And no file but src/util/xxh.h includes <xxhash.h> (the SSE2 build of XXH3;
util/xxh.h picks the CPU's widest vector unit at run time).

Usage: check_layers.py [SOURCE_DIR]   (default: the checkout holding this file)
Prints one line per offending include and exits 1; exits 0 when all point down.
"""
import os
import re
import sys

# Lowest first. Folders on one row are peers: neither includes the other.
LAYERS = [
    ["util", "track", "dmtcp"],      # containers, errors; the interposer's wire layout; the DMTCP plugin
    ["io"],                          # every system call on the store and the tree
    ["store"],                       # index, packs, lineage, verify
    ["tree"],                        # walk, ignore, stat cache, block compare
    ["checkpoint", "diff", "prune"], # the one checkpoint engine; diffs; retention
    ["session", "restore"],          # `metamori run`; making a tree what it was
    ["api"],                         # public entry points that combine the rows below
    ["cli", "mpi"],                  # the command line; libmetamori_mpi: include/metamori.h only
]
PUBLIC = ("metamori.h", "metamori_mpi.h")
# Includes that point up today and are being moved, each with its reason;
# reported on every run until the include is gone (then delete the line).
KNOWN = {}
ONLY_PUBLIC = {"cli", "mpi"}

PRINTERS = {"cli", "track", "dmtcp"}  # the DMTCP plugin: its one refusal line is the program's stderr
PRINTS = re.compile(r"\b(stdout|stderr|STDOUT_FILENO|STDERR_FILENO|printf|vprintf|puts|putchar|perror|dprintf|vdprintf)\b")
# comments, string and character literals: blanked before looking for PRINTS
NOT_CODE = re.compile(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
# libxxhash's own header gives the SSE2 build of XXH3: every file that
# hashes takes util/xxh.h, which picks the CPU's widest unit at run time
# (the session's block hashes went without it, a quarter of its CPU)
XXHASH = re.compile(r'^\s*#\s*include\s+<xxhash\.h>', re.M)


def rank_of():
    ranks = {}
    for r, row in enumerate(LAYERS):
        for folder in row:
            ranks[folder] = r
    return ranks


def api_functions(src):
    """Names of the mtm_* functions src/api/ defines."""
    names = set()
    folder = os.path.join(src, "api")
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as f:
            names.update(re.findall(r"^[a-z][\w \*]*?\b(mtm_\w+)\s*\([^;]*$", f.read(), re.M))
    return names


def problems(src, seen):
    ranks = rank_of()
    out = []
    api = api_functions(src)
    calls_api = re.compile(r"\b(" + "|".join(sorted(api)) + r")\s*\(") if api else None
    for folder in sorted(os.listdir(src)):
        path = os.path.join(src, folder)
        if not os.path.isdir(path):
            continue
        if folder not in ranks:
            out.append(f"src/{folder}/: not in LAYERS (tests/layers/check_layers.py): give it a row")
            continue
        for dirpath, _, files in os.walk(path):
            for name in sorted(files):
                if not name.endswith((".c", ".h", ".def")):
                    continue
                file = os.path.join(dirpath, name)
                rel = os.path.relpath(file, os.path.dirname(src))
                with open(file, encoding="utf-8", errors="replace") as f:
                    text = f.read()
                code = NOT_CODE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
                if calls_api and folder not in ("api", "cli") and ranks[folder] < ranks["api"]:
                    for m in calls_api.finditer(code):
                        line = code.count("\n", 0, m.start()) + 1
                        out.append(f"{rel}:{line}: calls {m.group(1)}, which src/api/ defines: a lower layer "
                                   f"calls up (call what it combines, with hooks)")
                if folder not in PRINTERS:
                    code = re.sub(r"format\s*\(\s*printf", "format(", code)  # __attribute__((format(printf, ...)))
                    for m in PRINTS.finditer(code):
                        line = code.count("\n", 0, m.start()) + 1
                        out.append(f"{rel}:{line}: {m.group(1)}: the library never prints "
                                   f"(log_msg, src/util/log.h)")
                for m in XXHASH.finditer(text) if rel != os.path.join("src", "util", "xxh.h") else ():
                    line = text.count("\n", 0, m.start()) + 1
                    out.append(f"{rel}:{line}: includes <xxhash.h>: include \"util/xxh.h\" (XXH3 for the CPU's "
                               f"widest vector unit)")
                for m in INCLUDE.finditer(text):
                    inc = m.group(1)
                    line = text.count("\n", 0, m.start()) + 1
                    if inc in PUBLIC:
                        continue
                    target = inc.split("/", 1)[0] if "/" in inc else None
                    if folder in ONLY_PUBLIC and target != folder:
                        out.append(f"{rel}:{line}: includes \"{inc}\": src/{folder}/ may include only {PUBLIC[0]} "
                                   f"and its own headers")
                    elif target is None:
                        out.append(f"{rel}:{line}: includes \"{inc}\": name headers by their folder")
                    elif target == folder:
                        continue
                    elif target not in ranks:
                        out.append(f"{rel}:{line}: includes \"{inc}\": src/{target}/ is not in LAYERS")
                    elif (rel, inc) in KNOWN:
                        seen.add((rel, inc))
                    elif ranks[target] >= ranks[folder]:
                        how = "a peer" if ranks[target] == ranks[folder] else "a higher layer"
                        out.append(f"{rel}:{line}: includes \"{inc}\": src/{target}/ is {how} "
                                   f"than src/{folder}/ (layers call only down)")
    return out


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    src = os.path.join(os.path.abspath(root), "src")
    seen = set()
    found = problems(src, seen)
    for (rel, inc), why in sorted(KNOWN.items()):
        if (rel, inc) in seen:
            print(f"note: {rel} includes \"{inc}\", known: {why}")
        else:
            print(f"note: KNOWN lists {rel} -> \"{inc}\", which is gone: delete that line")
    for p in found:
        print(p)
    if found:
        print(f"check_layers: {len(found)} problem(s)", file=sys.stderr)
        return 1
    print(f"check_layers: every include under src/ points down ({len(LAYERS)} layers); the library prints nothing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
