#!/usr/bin/env python3
"""A program with memory and files (memprog.c), killed with SIGKILL at many
points and recovered with mtm_recover each time, ends with the same tree and
the same output as an uninterrupted run; its memory regions never show in
the tree (status, diff, restore --to), show in log and du, survive prune and
pass verify --data. $MEMPROG is memprog's path."""
import json
import os
import signal
import subprocess

import mtmtest as T
from mtmtest import Failure

MEMPROG = os.environ.get("MEMPROG") or os.path.join(os.path.dirname(T.METAMORI), "tests", "region", "memprog")
STEPS, EVERY = 40, 5


def expect(cond, what):
    if not cond:
        raise Failure(what)


def memprog(root, die=None):
    env = dict(os.environ)
    env.pop("MEMPROG_DIE", None)
    if die:
        env["MEMPROG_DIE"] = die
    return subprocess.run([MEMPROG, root, str(STEPS), str(EVERY)], capture_output=True, text=True, env=env)


def reference():
    root = T.tempdir("mtm-memref-")
    p = memprog(root)
    expect(p.returncode == 0, "uninterrupted run failed: %s" % p.stderr)
    return root, p.stdout.splitlines()[0]


def test_killed_and_recovered():
    ref, ref_out = reference()
    try:
        root = T.tempdir("mtm-memkill-")
        # before, at and after checkpoints, in memory-only, file and checkpoint
        # phases, several times in one history (each kill loses the steps since
        # the last checkpoint, which the next start does again)
        kills = ["1:m", "3:f", "5:m", "5:f", "5:c", "6:f", "9:c", "10:f", "10:c", "11:m", "17:f", "20:c",
                 "23:m", "31:f", "35:c", "40:f"]
        for die in kills:
            p = memprog(root, die)
            expect(p.returncode == -signal.SIGKILL, "%s: expected SIGKILL, got %d: %s" % (die, p.returncode, p.stderr))
        p = memprog(root)
        expect(p.returncode == 0, "final run failed: %s" % p.stderr)
        out = p.stdout.splitlines()
        expect(out[0] == ref_out, "output differs: %r vs %r" % (out[0], ref_out))
        # (it went on from the checkpoint of step 35: the kill at 40:f came before step 40's)
        log = json.loads(T.run(["-C", root, "log", "--json"]).stdout)
        k35 = [c["id"] for c in log if c["message"] == "step 35"]
        expect(out[1] == "recovered from %d" % k35[-1], "recovered from: %r, step 35 is %r" % (out[1], k35))
        T.assert_same(T.manifest(ref, mtimes=False), T.manifest(root, mtimes=False), "tree after kills")
        # the regions are not part of the tree
        st = T.run(["-C", root, "status"]).stdout
        expect("grid" not in st and "state" not in st, "status shows a region: %r" % st)
        log = json.loads(T.run(["-C", root, "log", "--json"]).stdout)
        # each recovery first saved the killed run's half-done files (an
        # in-place restore never discards a tree that differs from its head);
        # those saves change no memory and are never recovered from
        saves = [c for c in log if (c["message"] or "").startswith("saved before restoring")]
        expect(saves and all(c["region_bytes_changed"] == 0 for c in saves), "safety saves: %r" % saves)
        log = [c for c in log if c not in saves]
        expect(all(c["regions"] == 2 and c["region_bytes"] == (4 << 20) + 24 for c in log), "log regions: %r" % log[:2])
        expect(all(0 < c["region_bytes_changed"] <= 3 * EVERY * 4096 + 4096 for c in log[1:]),
               "changed per checkpoint: %r" % [c["region_bytes_changed"] for c in log])
        text = T.run(["-C", root, "log"]).stdout
        expect("memory: 2 regions 4.0 MiB" in text, "log text: %r" % text)
        du = T.run(["-C", root, "du"]).stdout
        expect("of it memory regions" in du, "du: %r" % du)
        T.run(["-C", root, "verify", "--data"])
    finally:
        T.rmtree(ref)


def test_regions_not_in_tree_and_pruned():
    root = T.tempdir("mtm-memprune-")
    p = memprog(root)
    expect(p.returncode == 0, p.stderr)
    n = STEPS // EVERY + 1
    to = T.tempdir("mtm-memto-")
    T.rmtree(to)
    T.restore(root, 3, to=to)
    expect(sorted(os.listdir(to)) == ["data.bin", "journal.txt", "state.txt"], "restore --to: %r" % os.listdir(to))
    d = T.run(["-C", root, "diff", "1", str(n)]).stdout
    expect("grid" not in d and "state\n" not in d and "data.bin" in d, "diff: %r" % d)
    # drop every checkpoint but the newest: its regions still recover exactly
    T.run(["-C", root, "prune", "--keep-last", "1"])
    T.run(["-C", root, "verify", "--data"])
    expect(T.index_value(root, "SELECT count(*) FROM checkpoint") == 1, "pruned")
    # one more step from the pruned store (memprog resumes at STEPS: nothing
    # to do) must print what it printed
    p2 = memprog(root)
    expect(p2.returncode == 0 and p2.stdout.splitlines()[0] == p.stdout.splitlines()[0],
           "after prune: %r vs %r (%s)" % (p2.stdout, p.stdout, p2.stderr))
    # and the pruned-away memory versions left no chunk behind: only the newest
    # version's blocks (4 MiB grid, incompressible-ish) remain, not 9 versions'
    du = json.loads(T.run(["-C", root, "du", "--json"]).stdout)
    expect(du["dead"] == 0 or du["packed"] < 3 * (4 << 20), "du after prune: %r" % du)


if __name__ == "__main__":
    T.main([test_killed_and_recovered, test_regions_not_in_tree_and_pruned])
