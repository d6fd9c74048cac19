#!/usr/bin/env python3
"""`metamori push DIR` / `checkpoint --mirror DIR` (issue 19): an incremental
mirror of the store that is itself a store, recreates a lost store, never
overwrites another store, and survives being killed at every step."""
import os
import re
import shutil
import subprocess

import mtmtest as T


def pack_files(store):
    d = os.path.join(store, "packs")
    return {n: open(os.path.join(d, n), "rb").read() for n in sorted(os.listdir(d))}


def committed_sizes(root):
    import sqlite3
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(root, ".metamori", "index.db"), uri=True)
    try:
        return dict(("%08d.pack" % r[0], r[1]) for r in db.execute("SELECT id, size FROM pack"))
    finally:
        db.close()


def check_mirror(root, mirror):
    """The mirror's packs are the store's committed bytes, and it reads as a store."""
    src = pack_files(os.path.join(root, ".metamori"))
    dst = pack_files(os.path.join(mirror, ".metamori"))
    sizes = committed_sizes(root)
    if sorted(dst) != sorted(sizes):
        raise T.Failure("mirror packs %s, store names %s" % (sorted(dst), sorted(sizes)))
    for name, size in sizes.items():
        if dst[name] != src[name][:size]:
            raise T.Failure("mirror's %s is not the store's committed %d bytes" % (name, size))
    T.run(["-C", mirror, "verify", "--data"])


def test_push_incremental_and_recover_a_lost_store():
    root = T.tempdir()
    T.write_file(os.path.join(root, "big.bin"), os.urandom(3 << 20))
    os.mkdir(os.path.join(root, "d"))
    T.write_file(os.path.join(root, "d/small.txt"), b"one\n")
    T.init(root)
    T.checkpoint(root, "one")
    mirror = os.path.join(T.tempdir(), "m")
    p = T.run(["-C", root, "push", mirror])
    if not p.stdout.startswith("pushed to %s: 3.0 MiB of 1 pack, " % mirror):
        raise T.Failure("first push: %r" % p.stdout)
    check_mirror(root, mirror)
    man1 = T.manifest(root)
    # a small change: the next push copies only the new bytes
    T.patch_file(os.path.join(root, "big.bin"), 8192, b"x" * 100)
    T.write_file(os.path.join(root, "d/small.txt"), b"two\n")
    p = T.run(["-C", root, "checkpoint", "-m", "two", "--mirror", mirror])
    if not p.stdout.startswith("checkpoint 2\n"):
        raise T.Failure("checkpoint --mirror: %r" % p.stdout)
    check_mirror(root, mirror)
    man2 = T.manifest(root)
    p = T.run(["-C", root, "push", mirror])
    if not p.stdout.startswith("pushed to %s: 0 B of 0 packs, " % mirror):
        raise T.Failure("a push with nothing new copied pack bytes: %r" % p.stdout)
    # the mirror is a store: every checkpoint restores from it
    for cid, man in ((1, man1), (2, man2)):
        to = os.path.join(T.tempdir(), "out")
        T.restore(mirror, cid, to=to)
        T.assert_same(man, T.manifest(to), "checkpoint %d from the mirror" % cid)
    # the node's store is lost; the tree holds later junk
    shutil.rmtree(os.path.join(root, ".metamori"))
    T.write_file(os.path.join(root, "big.bin"), b"junk")
    T.run(["-C", mirror, "push", root])
    T.restore(root, 2)
    T.assert_same(man2, T.manifest(root), "a lost store recreated from the mirror")
    T.run(["-C", root, "verify", "--data"])
    T.rmtree(root)
    T.rmtree(os.path.dirname(mirror))


def history_rows(root):
    """Rows of the index's history tables, block and block_log as one, entry
    and entry_log as one."""
    import sqlite3
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(root, ".metamori", "index.db"), uri=True)
    try:
        q = ("SELECT (SELECT count(*) FROM checkpoint), (SELECT count(*) FROM entry) + (SELECT count(*) FROM entry_log), "
             "(SELECT count(*) FROM block) + (SELECT count(*) FROM block_log), (SELECT count(*) FROM chunk), "
             "(SELECT count(*) FROM region)")
        return db.execute(q).fetchone()
    finally:
        db.close()


def test_push_copies_only_new_index_rows():
    root = T.tempdir()
    for i in range(300):
        T.write_file(os.path.join(root, "f%03d.txt" % i), b"file %d\n" % i * 50)
    T.init(root)
    T.checkpoint(root, "one")
    mirror = os.path.join(T.tempdir(), "m")
    p = T.run(["-C", root, "push", mirror])
    if "whole index (a new mirror)" not in p.stdout:
        raise T.Failure("first push: %r" % p.stdout)
    man1 = T.manifest(root)
    ino = os.stat(os.path.join(mirror, ".metamori", "index.db")).st_ino
    # one small file changes: the push adds the new checkpoint's few rows to
    # the mirror's index in place instead of copying its ~300 files' rows
    T.write_file(os.path.join(root, "f007.txt"), b"changed\n")
    T.checkpoint(root, "two")
    p = T.run(["-C", root, "push", mirror])
    want = r"pushed to %s: [0-9.]+ [KM]?i?B of 1 pack, 4 new index rows\n\Z" % re.escape(mirror)
    if not re.match(want, p.stdout):
        raise T.Failure("second push: %r, want %r" % (p.stdout, want))
    if os.stat(os.path.join(mirror, ".metamori", "index.db")).st_ino != ino:
        raise T.Failure("the second push replaced the mirror's index instead of adding rows to it")
    if history_rows(mirror) != history_rows(root):
        raise T.Failure("mirror rows %r, store rows %r" % (history_rows(mirror), history_rows(root)))
    check_mirror(root, mirror)
    man2 = T.manifest(root)
    for cid, man in ((1, man1), (2, man2)):
        to = os.path.join(T.tempdir(), "out")
        T.restore(mirror, cid, to=to)
        T.assert_same(man, T.manifest(to), "checkpoint %d from the incrementally pushed mirror" % cid)
    # prune rewrites history the mirror holds: the push copies the index whole and says why
    T.write_file(os.path.join(root, "f008.txt"), b"changed too\n")
    T.checkpoint(root, "three")
    man3 = T.manifest(root)
    T.run(["-C", root, "prune", "--keep-last", "1"])
    p = T.run(["-C", root, "push", mirror])
    if "whole index (history rewritten since the last push)" not in p.stdout:
        raise T.Failure("push after prune: %r" % p.stdout)
    if history_rows(mirror) != history_rows(root):
        raise T.Failure("after prune: mirror rows %r, store rows %r" % (history_rows(mirror), history_rows(root)))
    check_mirror(root, mirror)
    to = os.path.join(T.tempdir(), "out")
    T.restore(mirror, 3, to=to)
    T.assert_same(man3, T.manifest(to), "checkpoint 3 from the mirror pushed after a prune")
    T.rmtree(root)
    T.rmtree(os.path.dirname(mirror))


def test_push_refuses_a_store_and_bad_arguments():
    root = T.tempdir()
    T.write_file(os.path.join(root, "a"), b"a")
    T.init(root)
    T.checkpoint(root)
    other = T.tempdir()
    T.init(other)
    p = T.run_fail(["-C", root, "push", other])
    want = ("metamori: push: %s/.metamori: a store that is not a mirror (push writes into a new directory or a "
            "mirror)" % other)
    if p.stderr.strip() != want:
        raise T.Failure("push into a store: %r" % p.stderr)
    p = T.run_fail(["-C", root, "push", root])
    if "a store that is not a mirror" not in p.stderr:
        raise T.Failure("push into itself: %r" % p.stderr)
    # into the store itself (it wrote a mirror there, which verify took for damage)
    for d in (os.path.join(root, ".metamori"), os.path.join(root, ".metamori", "packs", "m")):
        p = T.run_fail(["-C", root, "push", d])
        if p.stderr.strip() != "metamori: push: %s: cannot push into the store" % d:
            raise T.Failure("push into the store: %r" % p.stderr)
    if sorted(os.listdir(os.path.join(root, ".metamori"))) != ["index.db", "lock", "packs"]:
        raise T.Failure("push into the store wrote: %r" % os.listdir(os.path.join(root, ".metamori")))
    T.run(["-C", root, "verify"])
    p = T.run_fail(["-C", root, "push"])
    if p.stderr.strip() != "metamori: push: no directory given (see 'metamori push --help')":
        raise T.Failure("push without DIR: %r" % p.stderr)
    p = T.run_fail(["-C", root, "push", "/nonexistent-dir/x"])
    if p.stderr.strip() != "metamori: push: /nonexistent-dir/x: No such file or directory":
        raise T.Failure("push into a missing parent: %r" % p.stderr)
    T.rmtree(root)
    T.rmtree(other)


def test_push_never_overwrites_a_mirrors_own_history():
    """A mirror that took checkpoints of its own (a store recreated from a
    mirror and worked in, or a checkpoint run in the mirror's directory)
    is a store: push refuses it. It was overwritten as a mirror whose
    source had pruned ("history rewritten since the last push"), the
    checkpoints it took lost. A restore --to from a mirror leaves it one."""
    root = T.tempdir()
    T.write_file(os.path.join(root, "a"), b"1")
    T.init(root)
    T.checkpoint(root)
    mirror = os.path.join(T.tempdir(), "m")
    T.run(["-C", root, "push", mirror])
    T.restore(mirror, 1, to=os.path.join(T.tempdir(), "out"))
    T.run(["-C", root, "push", mirror])  # still a mirror
    # the store is lost, recreated from the mirror, and worked in
    shutil.rmtree(os.path.join(root, ".metamori"))
    T.run(["-C", mirror, "push", root])
    T.restore(root, 1)
    T.write_file(os.path.join(root, "a"), b"precious")
    T.checkpoint(root, "precious")
    for src, dst in ((mirror, root), (root, mirror)):
        if dst == mirror:  # the mirror took a checkpoint of its own
            T.write_file(os.path.join(mirror, "m"), b"m")
            T.checkpoint(mirror, "its own")
        p = T.run_fail(["-C", src, "push", dst])
        want = ("metamori: push: %s/.metamori: a store that is not a mirror (push writes into a new directory or a "
                "mirror)" % dst)
        if p.stderr.strip() != want:
            raise T.Failure("push over a mirror's own checkpoint: %r" % p.stderr)
        msgs = [e["message"] for e in T.log_json(dst)]
        if msgs[-1] != ("precious" if dst == root else "its own"):
            raise T.Failure("the checkpoint of %s is gone: %r" % (dst, msgs))
    if open(os.path.join(root, "a"), "rb").read() != b"precious":
        raise T.Failure("the tree changed")
    T.run(["-C", root, "verify", "--data"])
    T.run(["-C", mirror, "verify", "--data"])
    T.rmtree(root)
    T.rmtree(os.path.dirname(mirror))


def killed_at_every_step(prune):
    """A push (rows added, or after prune the index copied whole) killed at
    each step (every few after a prune, to keep the test short)."""
    root = T.tempdir()
    T.write_file(os.path.join(root, "a.bin"), os.urandom(200000))
    T.init(root)
    T.checkpoint(root)
    mirror = os.path.join(T.tempdir(), "m")
    T.run(["-C", root, "push", mirror])
    T.patch_file(os.path.join(root, "a.bin"), 4096, os.urandom(5000))
    T.checkpoint(root)
    if prune:
        T.patch_file(os.path.join(root, "a.bin"), 100000, os.urandom(5000))
        T.checkpoint(root)
        T.run(["-C", root, "prune", "--keep-last", "1"])
    last = 3 if prune else 2
    count = os.path.join(T.tempdir(), "count")
    scratch = os.path.join(T.tempdir(), "m")
    shutil.copytree(mirror, scratch)
    T.run(["-C", root, "push", scratch], env=dict(os.environ, METAMORI_IO_COUNT=count))
    n = int(open(count).read())
    man = T.manifest(root)
    # (under the sanitizers every 8th step of the prune case: its time, not its coverage, grows)
    stride = (8 if os.environ.get("MTM_SANITIZED") else 3) if prune else 1
    for k in range(1, n + 1, stride):
        trial = os.path.join(T.tempdir(), "m")
        shutil.copytree(mirror, trial)
        p = subprocess.run([T.METAMORI, "-C", root, "push", trial], capture_output=True,
                           env=dict(os.environ, METAMORI_CRASH_AT=str(k)))
        if p.returncode != -9:
            raise T.Failure("push not killed at step %d of %d: %d" % (k, n, p.returncode))
        # the previous mirror (or the new one) is whole; the next push completes it
        T.run(["-C", trial, "verify", "--data"])
        T.run(["-C", root, "push", trial])
        check_mirror(root, trial)
        to = os.path.join(T.tempdir(), "out")
        T.restore(trial, last, to=to)
        T.assert_same(man, T.manifest(to), "checkpoint %d from a mirror pushed after a kill at %d" % (last, k))
        T.rmtree(os.path.dirname(trial))
    print("  killed at every %s of %d steps" % ("step" if stride == 1 else "%dth step" % stride, n))
    T.rmtree(root)


def test_push_killed_at_every_step():
    killed_at_every_step(prune=False)


def test_push_after_prune_killed_at_every_step():
    killed_at_every_step(prune=True)


if __name__ == "__main__":
    T.main([test_push_incremental_and_recover_a_lost_store, test_push_copies_only_new_index_rows,
            test_push_refuses_a_store_and_bad_arguments, test_push_never_overwrites_a_mirrors_own_history,
            test_push_killed_at_every_step,
            test_push_after_prune_killed_at_every_step])
