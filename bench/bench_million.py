#!/usr/bin/env python3
"""bench_million.py: size independence (issue 21, item 4). A tree of --files
files of 4 KiB (default 1,000,000; 1,000 per directory) against a tree of
--small files (default 20,000), in one run:
  tracked   a program under `metamori run` rewrites the same number of files
            (--touch, default 1,000) per interval; `metamori checkpoint` is
            timed from outside: goal, big / small <= 1.2x; one more interval
            after the scan fallback (below) must be tracked too
  memory    the session's peak resident memory (VmHWM of `metamori run`,
            the process that holds the session) through its start (the
            baseline), the tracked checkpoints, one checkpoint that falls
            back to a scan (the program rewrites .metamoriignore: the logs
            cannot say what the new rules leave in) and its exit (ru_maxrss
            at exit, which counts the traced program too): goal < 100 MiB
  status    `metamori status` against `git status` on the same tree, git's
            index fresh (a `git status` run first): goal <= 2x
Every checkpoint of the session is restored (--to, or in place with
--restore-in-place) at the end and compared with the tree as it was when it
was made (the files the intervals touched, and a sample of the others).

usage: bench_million.py --metamori build/metamori [--files 1000000] [--small 20000]
                        [--touch 1000] [--intervals 3] [--no-git] [--work DIR] [--keep]
                        [--reuse] [--restore-in-place] [--only small|big]
"""
import argparse
import hashlib
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

SIZE = 4096
PER_DIR = 1000

# The traced program: one line on stdin names a seed and a count; it
# rewrites that many files (pwrite of 4 KiB each) and answers "ok".
TOUCHER = r"""
import os, random, sys
n = int(sys.argv[1])
for line in sys.stdin:
    if line.strip() == "ignore":  # the next checkpoint scans
        with open(".metamoriignore", "a") as f:
            f.write("# bench_million: the session's checkpoint scans\n")
        print("ok", flush=True)
        continue
    seed, count = map(int, line.split())
    rng = random.Random(seed)
    for i in rng.sample(range(n), count):
        fd = os.open("d%04d/f%07d" % (i // %(per)d, i), os.O_WRONLY)
        os.pwrite(fd, rng.randbytes(%(size)d), 0)
        os.close(fd)
    print("ok", flush=True)
""".replace("%(per)d", str(PER_DIR)).replace("%(size)d", str(SIZE))


def path_of(i):
    return os.path.join("d%04d" % (i // PER_DIR), "f%07d" % i)


def make_tree(root, n, seed, only_missing=False):
    """The tree of n files; only_missing: only the files that are not there
    whole (a tree left by an interrupted run). Returns how many were made."""
    rng = random.Random(seed)
    blob = rng.randbytes(SIZE * 64)
    made = 0
    for i in range(n):
        if i % PER_DIR == 0:
            os.makedirs(os.path.join(root, "d%04d" % (i // PER_DIR)), exist_ok=True)
        path = os.path.join(root, path_of(i))
        if only_missing:
            try:
                if os.stat(path).st_size == SIZE:
                    continue
            except FileNotFoundError:
                pass
        off = (i * 97) % (len(blob) - SIZE)
        with open(path, "wb") as f:
            f.write(blob[off:off + SIZE - 8] + i.to_bytes(8, "little"))
        made += 1
    return made


def digest(root, paths):
    out = {}
    for p in paths:
        with open(os.path.join(root, p), "rb") as f:
            out[p] = hashlib.sha256(f.read()).hexdigest()
    return out


def vm_hwm(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None


def tree_for(a, work, n):
    """The tree of n files: made afresh, or with --reuse the one a previous
    run left behind (its store and git repository removed, so the run starts
    from no checkpoint; the files earlier runs rewrote stay rewritten, which
    changes nothing measured here; a tree an interrupted run left without
    its mark of completion gets the files it lacks)."""
    tree = os.path.join(work, f"t{n}")
    done = os.path.join(work, f"t{n}.complete")
    if a.reuse and os.path.isdir(tree):
        B.log(f"bench: reusing {tree}")
        for sub in (".metamori", ".git"):
            B.rmtree(os.path.join(tree, sub))
        if os.path.exists(os.path.join(tree, ".metamoriignore")):
            os.unlink(os.path.join(tree, ".metamoriignore"))
        if not os.path.exists(done):  # an interrupted run's: the files it lacks made again
            B.log(f"bench: {make_tree(tree, n, seed=n, only_missing=True)} files of {tree} made again")
            open(done, "w").close()
        return tree
    B.rmtree(tree)
    if os.path.exists(done):
        os.unlink(done)
    B.log(f"bench: creating {n} x 4 KiB in {tree}")
    t0 = time.time()
    make_tree(tree, n, seed=n)
    open(done, "w").close()
    B.log(f"bench: created in {time.time() - t0:.0f} s")
    return tree


def measure(a, metamori, work, n, use_git):
    tree = tree_for(a, work, n)
    B.mtm(metamori, "init", tree)
    os.sync()
    r = {"files": n}
    r["initial_s"], _ = B.mtm(metamori, "-C", tree, "checkpoint", "-q")
    # fanotify: inotify needs a watch per file, and at 1,000,000 files that
    # is past fs.inotify.max_user_watches (192,543 here): blind, every
    # checkpoint scans (METAMORI_WATCH=inotify to see it)
    env = dict(os.environ, METAMORI_WATCH=os.environ.get("METAMORI_WATCH", "fanotify"))
    ses = subprocess.Popen([metamori, "-C", tree, "run", "-q", "--", sys.executable, "-c", TOUCHER,
                            str(n)], cwd=tree, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    time.sleep(1.0)
    seen, touched, times, modes = {}, set(), [], []
    sample = random.Random(1).sample(range(n), min(n, 2000))

    def interval(i, msg, lines=(), extra=()):
        """The traced program told lines, then to touch a.touch files; the
        session's pre-copy given time; a checkpoint, and the touched files
        (and a sample of the others) digested for the restores."""
        for line in list(lines) + [f"{i} {a.touch}"]:
            ses.stdin.write(line + "\n")
            ses.stdin.flush()
            if ses.stdout.readline().strip() != "ok":
                raise SystemExit("bench: the traced program did not answer")
        touched.update(random.Random(i).sample(range(n), a.touch))
        time.sleep(1.5)  # the session's pre-copy runs while the program is quiet
        os.sync()
        t, p = B.mtm(metamori, "-C", tree, "checkpoint", "-m", msg)
        seen[int(p.stdout.split()[1])] = digest(tree, [path_of(k) for k in sorted(touched | set(sample))] + list(extra))
        return t, p.stdout

    try:
        for i in range(1, a.intervals + 1):
            t, out = interval(i, f"interval {i}")
            times.append(t)
            modes.append("tracked" if "(tracked, paused" in out else "SCANNED")
        r["hwm_tracked"] = vm_hwm(ses.pid)
        # a checkpoint that falls back to a scan: the whole tree walked
        i = a.intervals + 1
        t, out = interval(i, "scan fallback", lines=("ignore",), extra=(".metamoriignore",))
        if "(scanned, paused" not in out:
            raise SystemExit(f"bench: the checkpoint did not scan: {out!r}")
        r["scan_s"] = t
        r["hwm"] = vm_hwm(ses.pid)
        # one more interval after the scan fallback: tracked unless the
        # watcher lost events while the scan walked the tree (before Z5, at
        # 1,000,000 files, its queue overflowed then: every checkpoint after
        # a scan scanned too)
        t, out = interval(i + 1, "after the scan", extra=(".metamoriignore",))
        r["after_scan"] = (t, "tracked" if "(tracked, paused" in out else "SCANNED")
    finally:
        ses.stdin.close()
        _, status, ru = os.wait4(ses.pid, 0)
        ses.returncode = os.waitstatus_to_exitcode(status)
    r["maxrss_exit"] = ru.ru_maxrss * 1024
    if ses.returncode:
        raise SystemExit(f"bench: metamori run exited {ses.returncode}")
    r["tracked_s"] = times
    r["modes"] = modes
    # in place: each checkpoint restored over the tree (only what differs is
    # rewritten), the newest last, so that the tree ends as it was
    for ck in sorted(seen):  # every checkpoint restored and compared
        dig = seen[ck]
        to = tree if a.restore_in_place else os.path.join(work, f"to{ck}")
        if a.restore_in_place:
            B.mtm(metamori, "-C", tree, "restore", str(ck))
        else:
            B.mtm(metamori, "-C", tree, "restore", str(ck), "--to", to)
        if digest(to, list(dig)) != dig:
            raise SystemExit(f"bench: restore {ck} of {tree}: differs from the tree when it was made")
        if not a.restore_in_place:
            B.rmtree(to)
    r["restored"] = sorted(seen)
    r["status_s"], _ = B.mtm(metamori, "-C", tree, "status", check=False)
    if use_git:
        genv = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b", GIT_COMMITTER_NAME="b",
                    GIT_COMMITTER_EMAIL="b@b")
        subprocess.run(["git", "init", "-q", tree], check=True)
        # no repack in the background after the commit (Z4: a `git gc --auto`
        # of 1,000,000 objects still ran while the statuses were timed)
        subprocess.run(["git", "-C", tree, "config", "gc.auto", "0"], check=True)
        with open(os.path.join(tree, ".git", "info", "exclude"), "a") as f:
            f.write(".metamori/\n")
        subprocess.run(["sh", "-c", "git add -A && git commit -q -m x"], cwd=tree, env=genv, check=True)
        subprocess.run(["git", "status", "-s"], cwd=tree, capture_output=True)  # the index fresh
        with open(os.path.join(tree, ".metamoriignore"), "w") as f:
            f.write(".git/\n")
        B.mtm(metamori, "-C", tree, "checkpoint", "-q")
        subprocess.run(["git", "status", "-s"], cwd=tree, capture_output=True)
        os.sync()
        r["git_status_s"], _ = B.timed(["git", "status", "-s"], cwd=tree)
        os.sync()
        r["status_s"], _ = B.mtm(metamori, "-C", tree, "status", check=False)
    if not a.reuse:
        B.rmtree(tree)
    return r


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--metamori", default=os.path.join(here, "..", "build", "metamori"))
    ap.add_argument("--files", type=int, default=1000000)
    ap.add_argument("--small", type=int, default=20000)
    ap.add_argument("--touch", type=int, default=1000)
    ap.add_argument("--intervals", type=int, default=3)
    ap.add_argument("--no-git", action="store_true")
    ap.add_argument("--work", default=os.path.join(here, "work", "million"))
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--reuse", action="store_true",
                    help="keep the trees in --work and reuse them in the next run with --reuse "
                         "(making 1,000,000 files takes minutes); remove --work by hand afterwards")
    ap.add_argument("--restore-in-place", action="store_true",
                    help="restore each checkpoint over the tree instead of --to a new directory (at "
                         "1,000,000 files a restore --to and the removal of its copy take ~20 minutes each "
                         "under load; in place rewrites only what differs), the newest last")
    ap.add_argument("--only", choices=("small", "big"),
                    help="measure one tree only (to look at one size; no ratios)")
    a = ap.parse_args()
    metamori = os.path.abspath(a.metamori)
    work = os.path.abspath(a.work)
    if not a.reuse:
        B.rmtree(work)
    os.makedirs(work, exist_ok=True)
    use_git = not a.no_git
    load0 = B.loadavg()
    if a.only:
        r = measure(a, metamori, work, a.small if a.only == "small" else a.files, use_git)
        print(r)
        return
    small = measure(a, metamori, work, a.small, use_git)
    big = measure(a, metamori, work, a.files, use_git)
    m = B.machine()
    out = [f"## Size independence: {a.files} vs {a.small} files of 4 KiB, {a.touch} touched per interval",
           "", f"Run {m['date']} on {m['nproc']} CPUs, load average {load0} at the start and {B.loadavg()} at "
           f"the end, watcher {os.environ.get('METAMORI_WATCH', 'fanotify')}. Checkpoints restored "
           f"({'in place' if a.restore_in_place else '--to'}) and compared: "
           f"{small['restored']} (small), {big['restored']} (big).", ""]
    rows = []
    for r in (small, big):
        rows.append([r["files"], B.secs(r["initial_s"]),
                     ", ".join(B.secs(t) + ("" if m == "tracked" else " (scanned)") for t, m in
                               zip(r["tracked_s"], r["modes"])),
                     B.secs(r["scan_s"]), B.secs(r["after_scan"][0]) + ("" if r["after_scan"][1] == "tracked" else " (scanned)"),
                     B.human(r["hwm_tracked"]), B.human(r["hwm"]), B.human(r["maxrss_exit"]),
                     B.secs(r["status_s"]), B.secs(r.get("git_status_s")), B.ratio(r["status_s"], r.get("git_status_s"))])
    out.append(B.table(["files", "initial scan", "tracked ckpts", "scan fallback", "tracked after it", "session peak RSS (tracked)",
                        "(and scan)", "(and exit, with program)", "status", "git status", "status/git"], rows))
    out.append("")
    ratio = B.median(big["tracked_s"]) / B.median(small["tracked_s"])
    all_tracked = all(m == "tracked" for m in small["modes"] + big["modes"])
    g = [["tracked checkpoint, big / small (medians)", f"{ratio:.2f}x", "<= 1.2x",
          B.goal(ratio, "<=", 1.2) if all_tracked else "not tracked (scanned)"]]
    peak = max(big["hwm"], big["maxrss_exit"])
    g.append(["session peak memory (big)", B.human(peak), "< 100 MiB", B.goal(peak, "<=", 100 << 20)])
    if big.get("git_status_s"):
        x = big["status_s"] / big["git_status_s"]
        g.append(["metamori status / git status (big)", f"{x:.2f}x", "<= 2x", B.goal(x, "<=", 2)])
    out.append(B.table(["measure", "value", "goal", ""], g))
    print("\n".join(out))
    if not a.keep and not a.reuse:
        B.rmtree(work)


if __name__ == "__main__":
    main()
