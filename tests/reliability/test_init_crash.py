#!/usr/bin/env python3
"""A killed `metamori init` leaves no half-made store (issue 19: the first
epoch of an MPI job creates each tree's store, and a job killed there could
never recover: 'not a metamori index').

`metamori init` is killed (METAMORI_CRASH_AT=N: SIGKILL just before its Nth
mutating operation) at each of its operations. After each kill, either the
store is whole (the kill came after the schema's commit) or there is no
store: commands say so in the usual words, and `metamori init` creates it
(nothing of the tree is touched). A store that lost its index but holds
packs is not taken for an unfinished one: init refuses it and deletes
nothing."""
import os
import signal
import sqlite3

import mtmtest as T
import rlib

NO_STORE = "metamori: %s: no metamori store here or in any parent (run 'metamori init')"
UNFINISHED = "metamori: %s/.metamori: the store's creation did not finish (run 'metamori init')"


def err_line(args):
    p = rlib.mtm(args)
    if p.returncode == 0:
        raise T.Failure("%s succeeded: %s" % (" ".join(args), p.stdout))
    return p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""


def test_init_killed_at_each_operation():
    base = T.tempdir("mtm-initcrash-")
    root = os.path.join(base, "tree")
    count = os.path.join(base, "count")
    os.mkdir(root)
    p = rlib.mtm(["-C", root, "init"], env=rlib.env_with(METAMORI_IO_COUNT=count))
    if p.returncode:
        raise T.Failure("init: %s" % p.stderr)
    n = int(open(count).read())
    if n < 3:
        raise T.Failure("init: only %d mutating operations counted" % n)
    whole = killed = unfinished = 0
    # make test: every 5th operation (every 11th in the ASan build); all of
    # them with METAMORI_TORTURE=1
    stride = 1 if rlib.TORTURE else 11 if rlib.SANITIZED else 5
    for k in range(1, n + 1):
        if (k - 1) % stride and k != n:
            continue
        T.rmtree(root)
        os.mkdir(root)
        T.write_file(os.path.join(root, "data"), b"the tree's own file")
        p = rlib.mtm(["-C", root, "init"], env=rlib.env_with(METAMORI_CRASH_AT=k))
        label = "init killed at op %d/%d" % (k, n)
        if p.returncode == 0:
            continue
        if p.returncode != -signal.SIGKILL:
            raise T.Failure("%s: expected SIGKILL, got exit %d: %s" % (label, p.returncode, p.stderr))
        killed += 1
        log = rlib.mtm(["-C", root, "log"])
        if log.returncode == 0:
            whole += 1  # killed after the commit: the store is whole, and empty
            if log.stdout.strip() != "no checkpoints yet":
                raise T.Failure("%s: a checkpoint in a new store: %r" % (label, log.stdout))
            line = err_line(["-C", root, "init"])
            if line != "metamori: %s/.metamori: a store already exists" % os.path.realpath(root):
                raise T.Failure("%s: init of the whole store: %r" % (label, line))
        else:
            line = log.stderr.strip()
            if line not in (NO_STORE % root, UNFINISHED % os.path.realpath(root)):
                raise T.Failure("%s: log: %r" % (label, line))
            unfinished += line != NO_STORE % root
            p = rlib.mtm(["-C", root, "init"])
            if p.returncode:
                raise T.Failure("%s: init after the kill: %s" % (label, p.stderr))
        T.checkpoint(root)
        T.run(["-C", root, "verify", "--data"])
        with open(os.path.join(root, "data"), "rb") as f:
            if f.read() != b"the tree's own file":
                raise T.Failure("%s: the tree's file changed" % label)
    if not unfinished:
        raise T.Failure("no kill left an unfinished store (%d kills, %d whole)" % (killed, whole))
    print("  %d kill points: %d left the store whole, %d unfinished, %d none" %
          (killed, whole, unfinished, killed - whole - unfinished))
    T.rmtree(base)


def test_store_with_packs_but_no_index_is_not_taken_for_unfinished():
    base = T.tempdir("mtm-initcrash-")
    root = os.path.join(base, "tree")
    os.mkdir(root)
    T.init(root)
    T.write_file(os.path.join(root, "data"), b"x" * 5000)
    T.checkpoint(root)
    meta = os.path.join(root, ".metamori")
    packs = sorted(os.listdir(os.path.join(meta, "packs")))
    for name in ("index.db", "index.db-wal", "index.db-shm"):
        if os.path.exists(os.path.join(meta, name)):
            os.unlink(os.path.join(meta, name))
    line = err_line(["-C", root, "init"])
    if line != "metamori: %s/.metamori: a store already exists" % os.path.realpath(root):
        raise T.Failure("init over a store with packs: %r" % line)
    if sorted(os.listdir(os.path.join(meta, "packs"))) != packs or not packs:
        raise T.Failure("packs changed: %s -> %s" % (packs, os.listdir(os.path.join(meta, "packs"))))
    # an index of another application is not reclaimed either
    T.rmtree(root)
    os.mkdir(root)
    T.init(root)
    db = os.path.join(root, ".metamori", "index.db")
    c = sqlite3.connect(db)
    c.execute("PRAGMA application_id=5")
    c.commit()
    c.close()
    line = err_line(["-C", root, "init"])
    if line != "metamori: %s/.metamori: a store already exists" % os.path.realpath(root):
        raise T.Failure("init over a foreign index: %r" % line)
    T.rmtree(base)


if __name__ == "__main__":
    T.main([test_init_killed_at_each_operation, test_store_with_packs_but_no_index_is_not_taken_for_unfinished])
