#!/usr/bin/env python3
"""ab_scan.py: two builds of metamori on the same scan-mode changes, alternated,
for A/B comparisons on a shared (loaded) machine.

Two copies of W1 (benchlib.W1, 4 x 64 MiB by default, the same seed), one per
build. Per interval each copy gets the same changes (1% of its blocks
rewritten, 1 MiB appended to the log), then `cat` of its changed files, then
`metamori checkpoint`; which build goes first alternates from one interval to
the next. Prints the medians of wall and CPU (user + sys) seconds and the
ratios new / old, and `status` of both trees at the end (each must be clean).
Run the same build on both sides to see the noise of the moment.

usage: ab_scan.py OLD NEW [--intervals 20] [--files 4] [--cache warm|cold] [--work DIR]
"""
import argparse
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402


def timed(cmd, env=None):
    """Wall and CPU seconds of cmd (benchlib.timed: exits on a failure)."""
    t, p = B.timed(cmd, env=env)
    return t, p.cpu


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--intervals", type=int, default=20)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--cache", choices=("warm", "cold"), default="warm")
    ap.add_argument("--work", default=os.path.join(here, "work", "ab_scan"))
    a = ap.parse_args()
    cache = B.Cache(a.cache)
    bins = {"old": os.path.abspath(a.old), "new": os.path.abspath(a.new)}
    ws = {}
    for name, m in bins.items():
        d = os.path.join(os.path.abspath(a.work), name)
        B.rmtree(d)
        os.makedirs(d)
        w = B.W1(os.path.join(d, "tree"), nfiles=a.files)
        w.create()
        ws[name] = w
        subprocess.run([m, "init", w.root], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([m, "-C", w.root, "checkpoint", "-q"], check=True, stdout=subprocess.DEVNULL)
    res = {"old": [], "new": []}
    print("load at the start:", B.loadavg())
    for i in range(a.intervals):
        for name in (("old", "new") if i % 2 == 0 else ("new", "old")):
            w = ws[name]
            w.interval()
            files = [w.path(f) for f in w.changed_files()]
            cache.prepare()
            rt, rc = timed(["sh", "-c", 'cat "$@" > /dev/null', "cat"] + files)
            cache.prepare()
            st, sc = timed([bins[name], "-C", w.root, "checkpoint", "-q"])
            res[name].append((rt, rc, st, sc))
    print("load at the end:", B.loadavg())
    med = lambda rows, k: statistics.median(x[k] for x in rows)  # noqa: E731
    for name in ("old", "new"):
        r = res[name]
        print(f"{name}: read {med(r, 0) * 1e3:.1f} ms (CPU {med(r, 1) * 1e3:.1f}), "
              f"checkpoint {med(r, 2) * 1e3:.1f} ms (CPU {med(r, 3) * 1e3:.1f})")
    o, n = res["old"], res["new"]
    print(f"new / old: wall {med(n, 2) / med(o, 2):.3f}, CPU {med(n, 3) / med(o, 3):.3f}")
    for name in ("old", "new"):
        p = subprocess.run([bins[name], "-C", ws[name].root, "status"], capture_output=True, text=True)
        print(f"{name}: status exit {p.returncode}: {p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ''}")
    B.rmtree(os.path.abspath(a.work))


if __name__ == "__main__":
    main()
