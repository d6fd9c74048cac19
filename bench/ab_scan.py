#!/usr/bin/env python3
"""ab_scan.py: two builds of metamori on the same scan-mode changes, alternated,
for A/B comparisons on a shared (loaded) machine.

Two copies of W1 (benchlib.W1, 4 x 64 MiB by default, the same seed), one per
build. Per interval each copy gets the same changes (1% of its blocks
rewritten, 1 MiB appended to the log), then `cat` of its changed files, then
`metamori checkpoint`; which build goes first alternates from one interval to
the next. Prints each interval's times, then the medians of wall and CPU
(user + sys, or with --perf perf stat's task-clock) seconds, the median of the
per-interval ratios new / old ("pairs": what the moment's load moves least),
each side's checkpoint / read-changed, and `status` of both trees at the end
(each must be clean); then every checkpoint of both stores is restored and
compared with W1 made again from its seed (benchlib.verify_w1). Run the same build on both sides (with --env-new to
change one knob, say METAMORI_NO_MAP=1) to see the noise of the moment.

--cross runs each build on the other's tree and store for the second half of
the intervals (both builds must read both stores: the same format). Each copy
keeps its page cache and disk layout for the whole run, and those are not
alike: which folio sizes a file's cache gets as it is written is up to the
memory of the moment (benchlib.folio_kib; S27 in BENCHMARKS-ARCHIVE.md saw one
of four files in ~60-120 KiB folios and its copy in 2 MiB ones), so an A/A
run can show one side a few percent slower all run long (S26: 2-3%, always
the same side within the run). Crossed, each half's pairs have that copy
difference with opposite signs: the halves' medians and their geometric
mean are printed, the mean free of it. Each copy's mean folio size is
printed at the start (as root).

The read floor is `cat` of the changed files, one process, as the checkpoint
is (benchlib.read_files). The CPU is user + sys from getrusage: the
scheduler's own runtime, the same figure as perf stat's task-clock. --perf
takes task-clock instead, but then every wall has perf stat's own start in
it (20-150 ms on this VM, more than a warm read of W1), which pulls both
checkpoint / read and new / old towards 1: S28's "1.32-1.36x" was that
(S29 in BENCHMARKS-ARCHIVE.md). Compare walls without --perf.

--priority runs every timed command of both sides at nice -20 and, as root,
in the real-time I/O class (ionice -c1): on a machine shared with other
people's test loops (2 CPUs, CPU pressure > 90%), the waits for a CPU and for
the disk's queue are then mostly not in the figures. Both sides alike.

--cache evict evicts only the two trees' and stores' files before each timed
command (benchlib.Cache): cold for the workload, without a global
drop_caches that would make every other run on the machine cold too.

usage: ab_scan.py OLD NEW [--intervals 20] [--files 4] [--cache warm|cold|evict]
                  [--env-old K=V] [--env-new K=V] [--perf] [--priority] [--cross] [--no-verify]
                  [--work DIR]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402


def timed(cmd, env=None, perf=False, prefix=(), read=None):
    """Wall and CPU seconds of cmd (benchlib.timed: exits on a failure), or
    with read=FILES of the read floor (benchlib.read_files); CPU from perf
    stat's task-clock with perf (its wall then has perf stat's start too)."""
    if not perf:
        if read is not None:
            return B.read_files(read, prefix=prefix, env=env)
        t, p = B.timed(list(prefix) + cmd, env=env)
        return t, p.cpu
    with tempfile.NamedTemporaryFile("r", suffix=".perf") as out:
        pre = list(prefix) + ["perf", "stat", "-x,", "-e", "task-clock", "-o", out.name]
        if read is not None:
            t, cpu = B.read_files(read, prefix=pre, env=env)
        else:
            t, p = B.timed(pre + cmd, env=env)
            cpu = p.cpu
        ms = [float(line.split(",")[0]) for line in out if "task-clock" in line]
    return t, ms[0] / 1e3 if ms else cpu


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--intervals", type=int, default=20)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--cache", choices=("warm", "cold", "evict"), default="warm")
    ap.add_argument("--env-old", action="append", default=[], metavar="K=V",
                    help="set in the old side's environment (repeatable)")
    ap.add_argument("--env-new", action="append", default=[], metavar="K=V",
                    help="set in the new side's environment (repeatable)")
    ap.add_argument("--perf", action="store_true", help="CPU: perf stat's task-clock (both commands)")
    ap.add_argument("--priority", action="store_true",
                    help="timed commands at nice -20 (and ionice -c1 as root), both sides")
    ap.add_argument("--cross", action="store_true",
                    help="each build on the other's tree and store for the second half of the intervals")
    ap.add_argument("--no-verify", action="store_true",
                    help="skip restoring and comparing every checkpoint at the end (exploration only)")
    ap.add_argument("--work", default=os.path.join(here, "work", "ab_scan"))
    a = ap.parse_args()
    cache = B.Cache(a.cache, roots=[os.path.abspath(a.work)])
    prefix = []
    if a.priority:
        prefix = ["nice", "-n", "-20"] + (["ionice", "-c1", "-n0"] if os.geteuid() == 0 else [])
    bins = {"old": os.path.abspath(a.old), "new": os.path.abspath(a.new)}
    envs = {}
    for name, kvs in (("old", a.env_old), ("new", a.env_new)):
        envs[name] = dict(os.environ)
        for kv in kvs:
            k, v = kv.split("=", 1)
            envs[name][k] = v
    ws = {}
    for name, m in bins.items():
        d = os.path.join(os.path.abspath(a.work), name)
        B.rmtree(d)
        os.makedirs(d)
        w = B.W1(os.path.join(d, "tree"), nfiles=a.files)
        w.create()
        ws[name] = w
        subprocess.run([m, "init", w.root], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([m, "-C", w.root, "checkpoint", "-q"], check=True, stdout=subprocess.DEVNULL,
                       env=envs[name])
    res = {"old": [], "new": []}
    for name in ("old", "new"):
        kib = [B.folio_kib(ws[name].path(f)) for f in ws[name].names]
        if all(k is not None for k in kib):
            print(f"{name}'s copy: mean folio KiB per file: " + ", ".join(f"{k:.0f}" for k in kib))
    print("load at the start:", B.loadavg(), flush=True)
    half = a.intervals // 2 if a.cross else a.intervals
    for i in range(a.intervals):
        line = []
        for name in (("old", "new") if i % 2 == 0 else ("new", "old")):
            # (crossed: the other build's copy, from the second half on)
            w = ws[name] if i < half else ws["new" if name == "old" else "old"]
            w.interval()
            files = [w.path(f) for f in w.changed_files()]
            cache.prepare()
            rt, rc = timed(None, perf=a.perf, prefix=prefix, read=files)
            cache.prepare()
            st, sc = timed([bins[name], "-C", w.root, "checkpoint", "-q"], env=envs[name], perf=a.perf,
                           prefix=prefix)
            res[name].append((rt, rc, st, sc))
            line.append(f"{name} checkpoint {st * 1e3:.1f} ms (CPU {sc * 1e3:.1f}), read {rt * 1e3:.1f} ms")
        print(f"interval {i + 1}: " + "; ".join(line), flush=True)
    print("load at the end:", B.loadavg())
    med = lambda rows, k: statistics.median(x[k] for x in rows)  # noqa: E731
    for name in ("old", "new"):
        r = res[name]
        print(f"{name}: read {med(r, 0) * 1e3:.1f} ms (CPU {med(r, 1) * 1e3:.1f}), "
              f"checkpoint {med(r, 2) * 1e3:.1f} ms (CPU {med(r, 3) * 1e3:.1f}); "
              f"checkpoint / read {statistics.median(x[2] / x[0] for x in r):.2f}"
              + (" (walls with perf stat's own start: not the goal's ratio)" if a.perf else ""))
    o, n = res["old"], res["new"]
    pairs = statistics.median(y[2] / x[2] for x, y in zip(o, n))
    cpu_pairs = statistics.median(y[3] / x[3] for x, y in zip(o, n))
    print(f"new / old: wall {med(n, 2) / med(o, 2):.3f} (pairs {pairs:.3f}), "
          f"CPU {med(n, 3) / med(o, 3):.3f} (pairs {cpu_pairs:.3f})")
    if a.cross and 0 < half < a.intervals:
        def halves(k):
            r = [statistics.median(y[k] / x[k] for x, y in zip(o[lo:hi], n[lo:hi]))
                 for lo, hi in ((0, half), (half, a.intervals))]
            return r[0], r[1], (r[0] * r[1]) ** 0.5
        w1, w2, wg = halves(2)
        c1, c2, cg = halves(3)
        print(f"crossed: pairs, own copies {w1:.3f}, swapped {w2:.3f}, geometric mean {wg:.3f}; "
              f"CPU pairs {c1:.3f}, {c2:.3f}, geometric mean {cg:.3f}")
    for name in ("old", "new"):
        p = subprocess.run([bins[name], "-C", ws[name].root, "status"], capture_output=True, text=True)
        print(f"{name}: status exit {p.returncode}: {p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ''}")
    # every checkpoint of both copies restored and compared (each copy got
    # the same changes, one interval a loop, whichever build made them)
    for name in () if a.no_verify else ("old", "new"):
        n = B.verify_w1(bins[name], ws[name].root, a.files, a.intervals, os.path.abspath(a.work))
        print(f"{name}: {n} checkpoints restored (--to) and compared: all equal")
    B.rmtree(os.path.abspath(a.work))


if __name__ == "__main__":
    main()
