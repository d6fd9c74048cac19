#!/usr/bin/env python3
"""w2_phases.py — where a W2 tracked checkpoint's time goes (issue 21).

W2 (20,000 files of 16 KiB in 100 directories) under `metamori run` with
bench/track_writer.c as the traced program; per interval the writer
rewrites one 4 KiB block in each of 200 files, and `metamori checkpoint`
is run from outside, as bench_track.py --parts w2git does (the pre-copy's
passes get --gap seconds first, as bench_track's probe gives them). Prints,
per build given, the medians over the checkpoints (the first --warm
dropped) of: the client's wall time, the session's CPU for it, the floor
(800 KiB written once + fsync, right after), a process start alone (`true`,
spawned as the client is), and the session's phases
(METAMORI_DEBUG_SESSION=phases, METAMORI_DEBUG_CHECKPOINT=1): begin,
before the gate, logs, collect (the pause), record, commit (its parts:
rows, the pack's sync wait, the index COMMIT), when the answer went, and
what followed it. With several builds, rounds alternate between them.

  python3 bench/w2_phases.py --work /tmp/w2p --rounds 3 --checkpoints 10 \\
      A=/path/to/old/metamori B=build/metamori

Each build needs libmetamori-preload.so beside it. The trees stay in
WORK/<name> between rounds (made once). No checkpoint is restored here:
bench_track.py --parts w2git restores and compares every one.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402
import bench_track as T  # noqa: E402

N_FILES, TOUCHED = 20000, 200
TRUE = shutil.which("true")

PHASES = [("begin", r"begin ([0-9.]+) ms"), ("before the gate", r"; ([0-9.]+) ms before the gate"),
          ("logs", r"logs ([0-9.]+) ms"), ("collect", r"collect ([0-9.]+) ms"),
          ("record", r"record ([0-9.]+) ms"), ("commit", r"commit ([0-9.]+) ms \("),
          ("rows", r"checkpoint commit: rows ([0-9.]+) ms"), ("pack sync wait", r"pack sync wait ([0-9.]+) ms"),
          ("index COMMIT", r"index COMMIT ([0-9.]+) ms"), ("pack fsyncs", r"the thread's writes [0-9.]+ ms, fsyncs ([0-9.]+) ms"), ("answered", r"answered ([0-9.]+) ms later"),
          ("answer thread CPU", r"its thread's CPU ([0-9.]+) ms"),
          ("after the answer", r"after the answer: ([0-9.]+) ms")]


def w2_store(metamori, work):
    """WORK/tree: W2 with a store and its first checkpoint, made once (kept
    between rounds and runs: WORK/made says it is whole). Returns the tree."""
    tree = os.path.join(work, "tree")
    if not os.path.exists(os.path.join(work, "made")):
        B.rmtree(work)
        os.makedirs(work)
        T.make_many(tree, N_FILES)
        B.mtm(metamori, "init", tree)
        B.mtm(metamori, "-C", tree, "checkpoint", "-q", "-m", "initial")
        open(os.path.join(work, "made"), "w").close()
    return tree


def run_once(metamori, work, n, gap, idle, probe=False):
    tree = w2_store(metamori, work)
    writer = T.build_writer(work)
    os.environ["METAMORI_DEBUG_SESSION"] = "phases"
    os.environ["METAMORI_DEBUG_CHECKPOINT"] = "1"
    ses = T.Session(metamori, tree, work, writer, [0, 0, 0, 11, N_FILES], "w2")
    os.sync()
    subprocess.run([metamori, "-C", tree, "checkpoint", "-q"], check=True, capture_output=True)
    rows = []
    for i in range(n):
        time.sleep(idle)
        ses.ask(f"touch {TOUCHED} {N_FILES}")
        os.sync()
        if probe:
            ses.ask("probe start")
        time.sleep(gap)
        c0 = T.cpu_ns(ses.proc.pid)
        t0 = time.perf_counter()
        p = subprocess.run([metamori, "-C", tree, "checkpoint", "-m", f"w2 {i}"], capture_output=True, text=True)
        t = time.perf_counter() - t0
        c1 = T.cpu_ns(ses.proc.pid)
        if probe:
            time.sleep(0.02)
            ses.ask("probe stop")
        if p.returncode or "tracked" not in p.stdout:
            ses.quit()
            sys.exit(f"w2_phases: checkpoint {i}: {p.stdout.strip()} {p.stderr.strip()}")
        os.sync()
        floor = B.floor_write(os.path.join(work, "floor.bin"), TOUCHED * 4096) * 1e3
        # a process start alone, timed as the client above is
        t0 = time.perf_counter()
        subprocess.run([TRUE], capture_output=True, text=True)
        rows.append({"ckpt": t * 1e3, "cpu": (c1 - c0) / 1e6, "floor": floor,
                     "spawn": (time.perf_counter() - t0) * 1e3})
    err = ses.quit()
    with open(os.path.join(work, "session.err"), "w") as f:  # the debug lines, to read afterwards
        f.write(err)
    for k in ("METAMORI_DEBUG_SESSION", "METAMORI_DEBUG_CHECKPOINT"):
        del os.environ[k]
    # the phases of the last n checkpoints, in order (the session's first one is not ours)
    per = {name: [float(m) for m in re.findall(rx, err)][-n:] for name, rx in PHASES}
    for name, vals in per.items():
        for r, v in zip(rows, vals if len(vals) == n else []):
            r[name] = v
    return rows


def med(rows, key, warm):
    vals = [r[key] for r in rows[warm:] if key in r]
    return statistics.median(vals) if vals else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--checkpoints", type=int, default=10)
    ap.add_argument("--warm", type=int, default=2, help="checkpoints dropped at the start of each run")
    ap.add_argument("--gap", type=float, default=0.03, help="seconds between the touch and the request")
    ap.add_argument("--idle", type=float, default=0.3, help="seconds before each touch")
    ap.add_argument("--probe", action="store_true",
                    help="the writer's heartbeat (8 bytes every 100 us) runs from before the request to after "
                         "the answer, as in bench_track.py: the program is never quiet, nothing is fsynced ahead")
    ap.add_argument("builds", nargs="+", help="NAME=PATH/TO/metamori")
    a = ap.parse_args()
    builds = [b.split("=", 1) for b in a.builds]
    keys = ["ckpt", "cpu", "floor", "spawn"] + [name for name, _ in PHASES]
    print("build round load | " + " | ".join(keys))
    for r in range(a.rounds):
        for name, path in builds:
            load = os.getloadavg()[0]
            rows = run_once(os.path.abspath(path), os.path.join(a.work, name), a.checkpoints, a.gap, a.idle,
                            a.probe)
            print(f"{name} {r + 1} {load:.1f} | " + " | ".join(f"{med(rows, k, a.warm):.2f}" for k in keys),
                  flush=True)


if __name__ == "__main__":
    main()
