#!/usr/bin/env python3
"""bench_many.py: scan-mode checkpoints of a tree of many small files
(workload W2, issue 21), against git and against the floor of a `stat` walk
plus reading the changed files, in one run. Prints a Markdown table.

W2: --files files of 16 KiB (default 20,000) in directories of 200. Per
interval: 200 files touched (one 4 KiB block rewritten), 10 deleted,
5 renamed, 10 new. Per interval, warm cache (`sync` before each):
  stat walk   `find TREE -printf '%s'` (an lstat of every entry), .git and
              .metamori left out
  read        cat of the touched and new files to /dev/null
  scan ckpt   metamori checkpoint
  git         git add -A && git commit -q (the same tree; .metamori excluded;
              gc.autoDetach false: the first commit's `gc --auto` runs in it,
              not in the background beside the intervals)
Every checkpoint is restored (--to) at the end and compared with the tree as
it was when it was made.

usage: bench_many.py --metamori build/metamori [--files 20000] [--intervals 5]
                     [--work DIR] [--keep] [--json FILE]
"""
import argparse
import hashlib
import json
import os
import random
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

SIZE = 16384
PER_DIR = 200


class W2:
    def __init__(self, root, nfiles, seed=5):
        self.root = root
        self.rng = random.Random(seed)
        self.files = []
        self.next = 0
        self.n0 = nfiles

    def _new_name(self):
        i = self.next
        self.next += 1
        return os.path.join(f"d{i // PER_DIR:04d}", f"f{i:06d}.bin")

    def _write(self, rel, data):
        p = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)

    def create(self):
        for _ in range(self.n0):
            rel = self._new_name()
            self._write(rel, self.rng.randbytes(SIZE))
            self.files.append(rel)

    def interval(self):
        """200 touched, 10 deleted, 5 renamed, 10 new; returns the paths to read."""
        pick = self.rng.sample(range(len(self.files)), 225)
        touched = [self.files[i] for i in pick[:200]]
        deleted = [self.files[i] for i in pick[200:210]]
        renamed = [self.files[i] for i in pick[210:215]]
        for rel in touched:
            fd = os.open(os.path.join(self.root, rel), os.O_WRONLY)
            os.pwrite(fd, self.rng.randbytes(B.BLOCK), self.rng.randrange(SIZE // B.BLOCK) * B.BLOCK)
            os.close(fd)
        for rel in deleted:
            os.remove(os.path.join(self.root, rel))
        gone = set(deleted) | set(renamed)
        self.files = [f for f in self.files if f not in gone]
        for rel in renamed:
            to = rel[:-4] + ".moved"
            os.rename(os.path.join(self.root, rel), os.path.join(self.root, to))
            self.files.append(to)
        new = []
        for _ in range(10):
            rel = self._new_name()
            self._write(rel, self.rng.randbytes(SIZE))
            self.files.append(rel)
            new.append(rel)
        return touched + new

    def digest(self, root=None):
        root = root or self.root
        out = {}
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in (".git", ".metamori")]
            for n in filenames:
                p = os.path.join(dirpath, n)
                rel = os.path.relpath(p, root)
                if rel == ".metamoriignore":
                    continue
                with open(p, "rb") as f:
                    out[rel] = hashlib.sha256(f.read()).hexdigest()
        return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--metamori", default=os.path.join(here, "..", "build", "metamori"))
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--intervals", type=int, default=5)
    ap.add_argument("--no-git", action="store_true", help="leave git out")
    ap.add_argument("--work", default=os.path.join(here, "work", "many"))
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()
    metamori = os.path.abspath(a.metamori)
    work = os.path.abspath(a.work)
    B.rmtree(work)
    os.makedirs(work)
    tree = os.path.join(work, "tree")
    w = W2(tree, a.files)
    B.log(f"bench: creating W2: {a.files} x 16 KiB in {tree}")
    w.create()
    with open(os.path.join(tree, ".metamoriignore"), "w") as f:
        f.write(".git/\n")
    B.mtm(metamori, "init", tree)
    use_git = not a.no_git and bool(subprocess.run(["sh", "-c", "command -v git"], capture_output=True).stdout)
    genv = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b", GIT_COMMITTER_NAME="b",
                GIT_COMMITTER_EMAIL="b@b")
    if use_git:
        subprocess.run(["git", "init", "-q", tree], check=True)
        # git's own `gc --auto` (the first commit's 20,000 loose objects are
        # past gc.auto's 6,700) in the foreground, timed as part of the
        # command that sets it off: detached (git's default) it repacked the
        # 320 MiB for 1-2 minutes in the background, all through the
        # intervals, on one of the two CPUs, and every scan, stat walk and
        # git command was timed beside it (W2j, BENCHMARKS-ARCHIVE.md)
        subprocess.run(["git", "-C", tree, "config", "gc.autoDetach", "false"], check=True)
        with open(os.path.join(tree, ".git", "info", "exclude"), "a") as f:
            f.write(".metamori/\n")
    res = {"machine": B.machine(), "files": a.files, "intervals": [], "load_start": B.loadavg()}
    os.sync()
    t, _ = B.mtm(metamori, "-C", tree, "checkpoint", "-q", "-m", "initial")
    res["initial"] = {"scan": t}
    if use_git:
        t, _ = B.timed(["sh", "-c", "git add -A && git commit -q -m initial"], cwd=tree, env=genv)
        res["initial"]["git"] = t
        # git status refreshes the index's stat data (git's own racy rule), as a user's would
        subprocess.run(["git", "status", "-s"], cwd=tree, capture_output=True, env=genv)
    seen = {1: w.digest()}
    for i in range(1, a.intervals + 1):
        changed = w.interval()
        row = {"interval": i}
        os.sync()
        row["stat"], sp = B.timed(["find", tree, "(", "-name", ".git", "-o", "-name", ".metamori", ")",
                                  "-prune", "-o", "-printf", "%s\n"])
        row["stat_cpu"] = sp.cpu
        os.sync()
        row["read"], rp = B.timed(["sh", "-c", 'cat "$@" > /dev/null', "cat"] + changed, cwd=tree)
        row["read_cpu"] = rp.cpu
        os.sync()
        row["scan"], p = B.mtm(metamori, "-C", tree, "checkpoint", "-m", f"interval {i}")
        row["scan_out"] = p.stdout.strip().replace("\n", ";")
        row["scan_cpu"] = p.cpu
        ck = B.mtm_log(metamori, tree)[-1]["id"]
        seen[ck] = w.digest()
        if use_git:
            os.sync()
            row["git"], gp = B.timed(["sh", "-c", f"git add -A && git commit -q -m 'interval {i}'"], cwd=tree, env=genv)
            row["git_cpu"] = gp.cpu
        res["intervals"].append(row)
        B.log(f"bench: interval {i}: stat walk {B.secs(row['stat'])}, read {B.secs(row['read'])}, "
              f"scan {B.secs(row['scan'])}" + (f", git {B.secs(row['git'])}" if use_git else ""))
    # correctness: every checkpoint restored and compared
    for ck, dig in seen.items():
        to = os.path.join(work, f"to{ck}")
        B.mtm(metamori, "-C", tree, "restore", str(ck), "--to", to)
        if w.digest(to) != dig:
            sys.exit(f"bench: restore {ck}: differs from the tree when it was made")
        B.rmtree(to)
    res["restored"] = sorted(seen)
    res["load_end"] = B.loadavg()
    report(res, use_git)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1, default=str)
    if not a.keep:
        B.rmtree(work)


def report(res, use_git):
    m = res["machine"]
    out = [f"## Scan mode, many files (W2: {res['files']} x 16 KiB; 200 touched, 10 deleted, 5 renamed, "
           f"10 new per interval), warm cache", "",
           f"Run {m['date']} on {m['nproc']} CPUs, kernel {m['kernel']}, load average {res['load_start']} at the "
           f"start and {res['load_end']} at the end. Checkpoints restored and compared: {res['restored']}.", ""]
    hdr = ["int", "stat walk", "read changed", "scan ckpt", "scan/(stat+read)"] + (["git", "git/scan"] if use_git else [])
    rows = []
    for r in res["intervals"]:
        row = [r["interval"], B.secs(r["stat"]), B.secs(r["read"]), B.secs(r["scan"]),
               B.ratio(r["scan"], r["stat"] + r["read"])]
        if use_git:
            row += [B.secs(r["git"]), B.ratio(r["git"], r["scan"])]
        rows.append(row)
    out.append(B.table(hdr, rows))
    out.append("")
    ini = res["initial"]
    out.append(f"Initial (all {res['files']} files): scan ckpt {B.secs(ini['scan'])}" +
               (f", git {B.secs(ini['git'])} (its `gc --auto` included)" if use_git else "") + ".")
    out.append("")
    ivs = res["intervals"]
    fl = B.median([r["scan"] / (r["stat"] + r["read"]) for r in ivs])
    g = [["scan ckpt / (stat walk + read changed)", f"{fl:.2f}x", "<= 2x", B.goal(fl, "<=", 2)]]
    if use_git:
        gx = B.median([r["git"] / r["scan"] for r in ivs])
        g.append(["git add -A && commit / scan ckpt", f"{gx:.2f}x", ">= 5x", B.goal(gx, ">=", 5)])
    c = B.median([r["scan_cpu"] / (r["stat_cpu"] + r["read_cpu"]) for r in ivs])
    g.append(["CPU: scan ckpt / (stat walk + read changed)", f"{c:.2f}x", "", ""])
    if use_git:
        c = B.median([r["git_cpu"] / r["scan_cpu"] for r in ivs])
        g.append(["CPU: git / scan ckpt", f"{c:.2f}x", "", ""])
    out.append(B.table(["measure (median)", "value", "goal", ""], g))
    print("\n".join(out))


if __name__ == "__main__":
    main()
