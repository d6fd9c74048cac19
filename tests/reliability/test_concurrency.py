#!/usr/bin/env python3
"""Concurrency (issue 4): one writer at a time, readers alongside.

A writer is held mid-checkpoint deterministically (no sleeps): its
METAMORI_IO_TRACE is a FIFO nobody reads, so it blocks in the trace write
right after appending pack data, holding the store's lock, before its commit.
While it is held:
  * every other writer (checkpoint, in-place restore, prune, tag) is refused
    at once with exit 1 and exactly
    "metamori: ROOT: another metamori command is writing this store";
  * readers work and see only committed checkpoints: log, diff, status,
    restore --to (byte-exact), verify --data.
Then the FIFO is drained and the held checkpoint completes and is exact.
A second test holds the lock file with flock(2) like another writer would.
"""
import fcntl
import os
import random
import subprocess
import threading

import mtmtest as T
import rlib

BUSY = "metamori: %s: another metamori command is writing this store"


def make_tree(root, rng):
    os.makedirs(os.path.join(root, "d"))
    for i in range(6):
        T.write_file(os.path.join(root, "d/f%d" % i), rng.randbytes(150 * 1024))
    T.write_file(os.path.join(root, "a.txt"), b"hello\n" * 1000)


def writers(root):
    return [["checkpoint", "-q"], ["restore", "1"], ["prune", "--keep-last", "1"], ["tag", "1", "x"]]


def holds_flock(pid, path):
    """Whether process pid holds a flock on path, read from /proc/locks (a
    probe with flock itself would make the writer fail to get the lock)."""
    ino = os.stat(path).st_ino
    with open("/proc/locks") as f:
        for line in f:
            parts = line.split()
            if "->" in parts:
                continue  # a waiter
            if len(parts) >= 6 and parts[1] == "FLOCK" and parts[4] == str(pid) and \
                    parts[5].split(":")[-1] == str(ino):
                return True
    return False


def check_busy(root, args):
    p = rlib.mtm(["-C", root] + args)
    line = rlib.one_error_line(p, " ".join(args) + " while another writer works")
    if line != BUSY % root:
        raise T.Failure("%s: expected %r, got %r" % (" ".join(args), BUSY % root, line))


def test_writer_held_mid_checkpoint():
    base = T.tempdir("mtm-conc-")
    try:
        rng = random.Random(2)
        root = os.path.realpath(os.path.join(base, "t"))
        make_tree(root, rng)
        T.init(root)
        c1 = T.checkpoint(root)
        m1 = rlib.tree_manifest(root)
        for i in range(6):
            T.patch_file(os.path.join(root, "d/f%d" % i), 8192, rng.randbytes(100 * 1024))
        m2 = rlib.tree_manifest(root)
        fifo = os.path.join(base, "trace.fifo")
        os.mkfifo(fifo)
        rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # so the writer's open does not block
        a = subprocess.Popen([T.METAMORI, "-C", root, "checkpoint", "-q"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=rlib.env_with(METAMORI_IO_TRACE=fifo))
        try:
            # wait (without a clock) until the writer holds the lock (/proc/locks)
            lockp = os.path.join(root, ".metamori", "lock")
            held = False
            while a.poll() is None and not held:
                held = holds_flock(a.pid, lockp)
            if not held:
                raise T.Failure("the traced writer finished before it could be observed (%s)" % a.stderr.read())
            # once it holds the lock it can only go on by filling the pipe, which nobody reads:
            # it blocks before its commit, holding the lock
            for args in writers(root):
                check_busy(root, args)
            if rlib.checkpoint_ids(root) != [c1]:
                raise T.Failure("a reader saw the uncommitted checkpoint: %r" % rlib.checkpoint_ids(root))
            rlib.mtm(["-C", root, "status"], check=True)
            rlib.mtm(["-C", root, "diff", str(c1)], check=True)
            rlib.mtm(["-C", root, "verify", "--data"], check=True)
            to = os.path.join(base, "to")
            rlib.mtm(["-C", root, "restore", str(c1), "--to", to], check=True)
            T.assert_same(m1, rlib.tree_manifest(to), "restore --to during a checkpoint")
            T.rmtree(to)
            if a.poll() is not None:
                raise T.Failure("the held writer finished early")
        finally:
            # drain the FIFO: the writer goes on and finishes
            os.set_blocking(rfd, True)
            drained = []
            t = threading.Thread(target=lambda: drained.append(sum(iter(lambda: len(os.read(rfd, 1 << 16)), 0))))
            t.start()
            out, err = a.communicate()
            t.join()
            os.close(rfd)
        if a.returncode != 0:
            raise T.Failure("the held checkpoint failed: %s" % err)
        c2 = int(out.strip())
        rlib.mtm(["-C", root, "verify", "--data"], check=True)
        to = os.path.join(base, "to2")
        T.restore(root, c2, to=to)
        T.assert_same(m2, rlib.tree_manifest(to), "the held checkpoint")
        print("  held a checkpoint mid-way (%d trace bytes queued); 4 writers refused, 5 readers worked" % drained[0])
    finally:
        T.rmtree(base)


def test_lock_held_by_another_process():
    base = T.tempdir("mtm-conc-")
    try:
        root = os.path.realpath(os.path.join(base, "t"))
        os.makedirs(root)
        T.write_file(os.path.join(root, "f"), b"x" * 5000)
        T.init(root)
        T.checkpoint(root)
        fd = os.open(os.path.join(root, ".metamori", "lock"), os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            for args in writers(root):
                check_busy(root, args)
            rlib.mtm(["-C", root, "log"], check=True)
        finally:
            os.close(fd)
        T.checkpoint(root)  # free again
    finally:
        T.rmtree(base)


def test_racing_writers_never_interleave():
    """Several checkpoints and restores started together: each succeeds or is
    refused with the busy message; afterwards the store verifies and every
    checkpoint made restores exactly to what the tree was (the tree does not
    change during the race)."""
    base = T.tempdir("mtm-conc-")
    try:
        rng = random.Random(5)
        root = os.path.realpath(os.path.join(base, "t"))
        make_tree(root, rng)
        T.init(root)
        c1 = T.checkpoint(root)
        m = rlib.tree_manifest(root)
        procs = [subprocess.Popen([T.METAMORI, "-C", root] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
                 for args in (["checkpoint", "-q"], ["checkpoint", "-q"], ["restore", str(c1)], ["checkpoint", "-q"])]
        ok = refused = 0
        for p in procs:
            out, err = p.communicate()
            if p.returncode == 0:
                ok += 1
            elif err.strip() == BUSY % root:
                refused += 1
            else:
                raise T.Failure("racing writer: exit %d: %s" % (p.returncode, err))
        rlib.mtm(["-C", root, "verify", "--data"], check=True)
        for cid in rlib.checkpoint_ids(root):
            to = os.path.join(base, "to%d" % cid)
            T.restore(root, cid, to=to)
            T.assert_same(m, rlib.tree_manifest(to), "checkpoint %d after the race" % cid)
            T.rmtree(to)
        T.assert_same(m, rlib.tree_manifest(root), "tree after the race")
        print("  %d writers succeeded, %d refused" % (ok, refused))
    finally:
        T.rmtree(base)


def test_files_shortened_while_read():
    """A neighbour shortens and regrows files while checkpoints read them.
    The CLI hashes cached files where they lie in the page cache (mapped
    reads): a page cut off under the mapping raises SIGBUS, which must read
    as the short read pread gives, never kill the command. Every checkpoint
    exits 0; once the neighbour stops, the next checkpoint restores exactly
    and the store verifies."""
    base = T.tempdir("mtm-conc-")
    try:
        rng = random.Random(9)
        root = os.path.realpath(os.path.join(base, "t"))
        os.makedirs(root)
        size = 12 << 20
        data = {n: rng.randbytes(size) for n in ("a.bin", "b.bin")}
        for n, d in data.items():
            T.write_file(os.path.join(root, n), d)
        T.init(root)
        T.checkpoint(root)
        stop = threading.Event()

        def neighbour():
            r = random.Random(10)
            while not stop.is_set():
                for n, d in data.items():
                    p = os.path.join(root, n)
                    with open(p, "r+b") as f:
                        f.truncate(r.randrange(0, size))
                        f.seek(0)
                        f.write(d)  # regrown: cached again, to be mapped again
        th = threading.Thread(target=neighbour)
        th.start()
        try:
            for i in range(25):
                r = subprocess.run([T.METAMORI, "-C", root, "checkpoint", "-q"], capture_output=True, text=True)
                T.expect(r.returncode == 0, "checkpoint %d beside the neighbour: exit %d: %s"
                         % (i, r.returncode, r.stderr.strip()))
        finally:
            stop.set()
            th.join()
        m = rlib.tree_manifest(root)
        last = T.checkpoint(root)
        to = os.path.join(base, "to")
        T.restore(root, last, to=to)
        T.assert_same(m, rlib.tree_manifest(to), "the checkpoint after the neighbour stopped")
        rlib.mtm(["-C", root, "verify", "--data"], check=True)
    finally:
        T.rmtree(base)


if __name__ == "__main__":
    T.main([test_writer_held_mid_checkpoint, test_lock_held_by_another_process, test_racing_writers_never_interleave,
            test_files_shortened_while_read])
