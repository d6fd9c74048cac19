#!/usr/bin/env python3
"""ab_many.py: two builds of metamori on W2 (bench_many.py: many small files),
scan-mode checkpoints alternated, for A/B comparisons on a shared (noisy)
machine.

Two copies of W2 (bench_many.W2, the same seed), one per build. Per interval
each copy gets the same changes (200 touched, 10 deleted, 5 renamed, 10 new),
then `sync`, then `metamori checkpoint`; which build goes first alternates
from one interval to the next, so that both see the same moments of the
machine. Prints the medians of wall and CPU (user + sys) seconds, the ratio
new / old, the median of the per-interval ratios (each pair ran within a
second of each other), and `status` of both trees at the end (each must be
clean). Run the same build on both sides to see the noise of the moment.

usage: ab_many.py OLD NEW [--intervals 12] [--files 20000] [--work DIR] [--env K=V] [--env-old K=V] [--as-bench]
"""
import argparse
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402
from bench_many import W2  # noqa: E402


def timed(cmd, env=None):
    """Wall and CPU seconds of cmd (benchlib.timed: exits on a failure)."""
    t, p = B.timed(cmd, env=env)
    return t, p.cpu


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--intervals", type=int, default=12)
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--work", default=os.path.join(here, "work", "ab_many"))
    ap.add_argument("--env", action="append", default=[], help="K=V for the new build only")
    ap.add_argument("--env-old", action="append", default=[], help="K=V for the old build only")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--as-bench", action="store_true",
                    help="before each checkpoint, bench_many's stat walk (find) and read of the changed files")
    a = ap.parse_args()
    bins = {"old": os.path.abspath(a.old), "new": os.path.abspath(a.new)}
    envs = {k: dict(os.environ, **dict(kv.split("=", 1) for kv in v)) if v else None
            for k, v in (("old", a.env_old), ("new", a.env))}
    ws = {}
    for name, m in bins.items():
        d = os.path.join(os.path.abspath(a.work), name)
        B.rmtree(d)
        os.makedirs(d)
        w = W2(os.path.join(d, "tree"), a.files)
        w.create()
        ws[name] = w
        subprocess.run([m, "init", w.root], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([m, "-C", w.root, "checkpoint", "-q"], check=True, stdout=subprocess.DEVNULL)
    res = {"old": [], "new": []}
    print("load at the start:", B.loadavg())
    for i in range(a.intervals):
        for name in (("old", "new") if i % 2 == 0 else ("new", "old")):
            w = ws[name]
            changed = w.interval()
            if a.as_bench:
                os.sync()
                subprocess.run(["find", w.root, "(", "-name", ".git", "-o", "-name", ".metamori", ")", "-prune",
                                "-o", "-printf", "%s\n"], check=True, stdout=subprocess.DEVNULL)
                os.sync()
                subprocess.run(["sh", "-c", 'cat "$@" > /dev/null', "cat"] + changed, cwd=w.root, check=True)
            os.sync()
            res[name].append(timed([bins[name], "-C", w.root, "checkpoint", "-q"], envs[name]))
        print(f"interval {i + 1}: old {res['old'][-1][0] * 1e3:.1f} ms, new {res['new'][-1][0] * 1e3:.1f} ms, "
              f"load {B.loadavg()}", flush=True)
    print("load at the end:", B.loadavg())
    med = lambda rows, k: statistics.median(x[k] for x in rows)  # noqa: E731
    for name in ("old", "new"):
        r = res[name]
        print(f"{name}: checkpoint {med(r, 0) * 1e3:.1f} ms (min {min(x[0] for x in r) * 1e3:.1f}, "
              f"CPU {med(r, 1) * 1e3:.1f} ms)")
    o, n = res["old"], res["new"]
    pair = statistics.median(b[0] / a_[0] for a_, b in zip(o, n))
    print(f"new / old: wall {med(n, 0) / med(o, 0):.3f} (median of pairs {pair:.3f}), CPU {med(n, 1) / med(o, 1):.3f}")
    for name in ("old", "new"):
        p = subprocess.run([bins[name], "-C", ws[name].root, "status"], capture_output=True, text=True)
        print(f"{name}: status exit {p.returncode}: {p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ''}")
    if not a.keep:
        B.rmtree(os.path.abspath(a.work))


if __name__ == "__main__":
    main()
