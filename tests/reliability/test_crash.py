#!/usr/bin/env python3
"""Crash at every point (issue 4).

For each step of a representative scenario (rlib: checkpoints with changes,
an in-place restore, a branch, a prune with pack gc), the step's command is
run once on a copy of its snapshot with METAMORI_IO_COUNT to enumerate its
mutating operations (write, fsync, rename, truncate, unlink, mkdir, through
the I/O layer and the SQLite VFS shim), then once per N with
METAMORI_CRASH_AT=N: SIGKILL just before the Nth. After each kill rlib.Checker
asserts: the tree is untouched (checkpoint, prune) or each file is old or new
(restore); `verify --data` passes; every committed checkpoint restores
byte-exactly; the interrupted checkpoint is whole or absent; the next command
finishes an interrupted restore; rerunning the command completes.

make test: every eighth kill point of each command of the small scenario
(every twelfth in the ASan build, where each command costs ten times as
much), the stride's offset moving on with each command, and each command's
first two and last two (kill_points). METAMORI_TORTURE=1 (make torture):
every kill point of the small scenario, of the big one, and of the small
one with a second seed.

The metadata calls of a restore (owner, mode, times, extended attributes)
are crash points counted apart (METAMORI_CRASH_OP=meta), so that the matrix
above keeps its size: test_crash_before_metadata_calls kills the small
scenario's restore just before them (6 of them, evenly spread, in make
test, 3 in the ASan build; every one in make torture).
"""
import os
import signal
import sys

import mtmtest as T
import rlib

STATS = {"kill_points": 0, "completed_before_n": 0, "mixed_patched": 0, "steps": 0}


def crash_step(sc, i, st):
    root = sc.work("crash-root")
    scratch = os.path.join(sc.base, "crash-scratch")
    count = os.path.join(sc.base, "count")
    rlib.copy_root(st.snapshot, root)
    if os.path.exists(count):
        os.unlink(count)
    p = rlib.mtm(["-C", root] + st.args, env=rlib.env_with(METAMORI_IO_COUNT=count))
    if p.returncode != 0:
        raise T.Failure("step %d (%s): clean run failed: %s" % (i, " ".join(st.args), p.stderr))
    n = int(open(count).read())
    if n < 3:
        raise T.Failure("step %d: only %d mutating operations counted" % (i, n))
    STATS["steps"] += 1
    for k in kill_points(n, i):
        rlib.copy_root(st.snapshot, root)
        p = rlib.mtm(["-C", root] + st.args, env=rlib.env_with(METAMORI_CRASH_AT=k))
        label = "step %d (%s) killed at op %d/%d" % (i, " ".join(st.args), k, n)
        if p.returncode == 0:
            STATS["completed_before_n"] += 1  # fewer operations on this run: nothing to kill
            continue
        if p.returncode != -signal.SIGKILL:
            raise T.Failure("%s: expected SIGKILL, got exit %d: %s" % (label, p.returncode, p.stderr))
        STATS["kill_points"] += 1
        mixed = rlib.Checker(sc, st, root, label).full(scratch)
        STATS["mixed_patched"] += len(mixed)
    rlib.banner("  step %d %-40s %3d kill points" % (i, " ".join(st.args), n))


def kill_points(n, i):
    """The kill points of step i's n: every one in make torture. In make
    test every eighth (every twelfth in the ASan build, where each command
    costs ten times as much), starting at a point that moves on with the
    step (i), so the six commands together land on every position of the
    stride; plus each command's first two and last two, where the store is
    opened and the commit and its cleanup are: the points unlike the runs of
    pack and page writes between them."""
    if rlib.TORTURE:
        return list(range(1, n + 1))
    stride = 12 if rlib.SANITIZED else 8
    return sorted(set(range(1 + i % stride, n + 1, stride)) | {1, 2, n - 1, n} & set(range(1, n + 1)))


def spread(n, most):
    """At most `most` of 1..n, evenly spread, the last included."""
    if n <= most:
        return list(range(1, n + 1))
    return sorted({1 + (n - 1) * i // (most - 1) for i in range(most)})


def test_crash_before_metadata_calls():
    """Killed just before a metadata call, a restore leaves each file old or
    new (its content new and its metadata not yet, for a patched one), and
    `restore --continue` finishes it, metadata included (Checker.full)."""
    sc = rlib.Scenario(big=False, seed=4).build()
    try:
        root = sc.work("crash-root")
        scratch = os.path.join(sc.base, "crash-scratch")
        count = os.path.join(sc.base, "count")
        restores = [(i, st) for i, st in enumerate(sc.steps) if st.kind == "restore"]
        if not restores:
            raise T.Failure("the scenario has no restore")
        for i, st in restores:
            rlib.copy_root(st.snapshot, root)
            if os.path.exists(count):
                os.unlink(count)
            p = rlib.mtm(["-C", root] + st.args, env=rlib.env_with(METAMORI_IO_COUNT=count, METAMORI_CRASH_OP="meta"))
            if p.returncode != 0:
                raise T.Failure("step %d (%s): clean run failed: %s" % (i, " ".join(st.args), p.stderr))
            n = int(open(count).read())
            rlib.copy_root(st.snapshot, root)
            p = rlib.mtm(["-C", root] + st.args, env=rlib.env_with(METAMORI_IO_COUNT=count))
            data = int(open(count).read()) if p.returncode == 0 else -1
            if n < 3 or n == data:
                raise T.Failure("step %d: %d metadata calls counted apart (%d data mutations): the metadata "
                                "calls are not crash points of their own" % (i, n, data))
            most = n if rlib.TORTURE else 3 if rlib.SANITIZED else 6
            killed = 0
            for k in spread(n, most):
                rlib.copy_root(st.snapshot, root)
                p = rlib.mtm(["-C", root] + st.args,
                             env=rlib.env_with(METAMORI_CRASH_AT=k, METAMORI_CRASH_OP="meta"))
                label = "step %d (%s) killed before metadata call %d/%d" % (i, " ".join(st.args), k, n)
                if p.returncode == 0:
                    STATS["completed_before_n"] += 1
                    continue
                if p.returncode != -signal.SIGKILL:
                    raise T.Failure("%s: expected SIGKILL, got exit %d: %s" % (label, p.returncode, p.stderr))
                killed += 1
                STATS["kill_points"] += 1
                STATS["mixed_patched"] += len(rlib.Checker(sc, st, root, label).full(scratch))
            if not killed:
                raise T.Failure("step %d: no run was killed before a metadata call" % i)
            rlib.banner("  step %d %-40s %3d metadata calls, %d killed" % (i, " ".join(st.args), n, killed))
    finally:
        sc.cleanup()


def run_scenario(big, seed):
    sc = rlib.Scenario(big=big, seed=seed).build()
    try:
        for i, st in enumerate(sc.steps):
            crash_step(sc, i, st)
    finally:
        sc.cleanup()


def test_crash_every_point_small():
    run_scenario(False, 4)


def test_crash_every_point_big():
    """make torture only (not listed otherwise: it is not run, so never 'ok')."""
    run_scenario(True, 7)
    run_scenario(False, 11)


if __name__ == "__main__":
    try:
        if not rlib.TORTURE:
            print("(the big scenario runs with METAMORI_TORTURE=1 / make torture)")
        T.main([test_crash_every_point_small, test_crash_before_metadata_calls] +
               ([test_crash_every_point_big] if rlib.TORTURE else []))
    finally:
        print("crash: %(kill_points)d kill points over %(steps)d command runs, "
              "%(completed_before_n)d runs finished before their point, "
              "%(mixed_patched)d large files seen mid-patch (allowed, finished by the next command)" % STATS)
        print("  " + rlib.outcomes())
