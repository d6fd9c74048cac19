#!/usr/bin/env python3
"""Injected faults and a really full disk (issue 4).

METAMORI_FAULT=OP:N:ERR[:always] fails the Nth OP (write, fsync, rename,
truncate, open, read; for a restore also meta, the owner/mode/time calls,
and clone, FICLONE) of the I/O layer and the SQLite VFS shim with EIO,
ENOSPC, EINTR or a short transfer, once or on every call from the Nth on,
over a checkpoint with changes, an in-place restore and a prune (rlib steps).
Each run must end in one of two ways:

  * success (exit 0): the result is right (the checkpoint restores exactly,
    the tree is the restored checkpoint, prune kept what it must);
  * failure: exit 1 with exactly one `metamori: <what>: <why>` line, and the
    state passes rlib.Checker (verify --data, committed checkpoints restore
    exactly, tree untouched or old-or-new and finished by the next command,
    the rerun completes).

An injected EINTR must be invisible except on fsync, and a short read or
write to a pack or tree file must be completed by the I/O layer. A failed
fsync is never retried: the checkpoint fails and is not recorded.

The full-disk test mounts a small tmpfs (root only; skipped with a message
otherwise) and runs a checkpoint with the free space cut at many points.
"""
import os
import shutil
import subprocess
import tempfile

import mtmtest as T
import rlib

OPS = ["write", "fsync", "rename", "truncate", "open", "read"]
ERRS = ["EIO", "ENOSPC", "EINTR", "short"]
STATS = {"faults": 0, "failed_cleanly": 0, "succeeded": 0, "full_disk_runs": 0, "full_disk_enospc": 0}


def judge(sc, st, root, spec, scratch):
    label = "%s with METAMORI_FAULT=%s" % (" ".join(st.args), spec)
    env = rlib.env_with(METAMORI_FAULT=spec)
    p = rlib.mtm(["-C", root] + st.args, env=env)
    STATS["faults"] += 1
    op, n, err = spec.split(":")[:3]
    chk = rlib.Checker(sc, st, root, label)
    if p.returncode == 0:
        STATS["succeeded"] += 1
        chk.verify()
        if st.kind == "restore":
            T.assert_same(sc.manifests[st.target], rlib.tree_manifest(root), label)
        else:
            T.assert_same(st.tree_before, rlib.tree_manifest(root), label + ": tree changed")
        ids = chk.committed(scratch)
        if st.kind == "checkpoint" and len(ids) != len(st.before) + 1:
            raise T.Failure("%s: succeeded but made no checkpoint (%r)" % (label, ids))
        if st.kind == "prune" and sorted(ids) != sorted(st.after):
            raise T.Failure("%s: prune succeeded but left %r, expected %r" % (label, ids, st.after))
        return
    rlib.one_error_line(p, label)
    STATS["failed_cleanly"] += 1
    if err == "EINTR" and op != "fsync":
        raise T.Failure("%s: an EINTR must be retried, not reported: %s" % (label, p.stderr.strip()))
    if err == "short" and op == "read":
        raise T.Failure("%s: a short read must be completed, not reported: %s" % (label, p.stderr.strip()))
    if st.kind == "checkpoint":
        ids = rlib.checkpoint_ids(root)
        if len(ids) != len(st.before):
            raise T.Failure("%s: the command failed but its checkpoint was recorded (%r)" % (label, ids))
    chk.full(scratch)


def fault_cases(ops, ns, modes, cover):
    """The (op, n, err, mode) cases to inject at one step. cover "all": the
    whole cross product (make torture). cover "err": every (op, err) pair once,
    with the mode and the count rotating through their values, so each value
    of each is still used at every step. cover "op" (make test, the sanitizer
    build, where each command costs ten times as much): every op once, the
    error, mode and count rotating, so every op and every error is still
    injected at every step. cover "op+" (make test, the normal build): those,
    and the pairs with rules of their own, an EINTR on fsync (reported, not
    retried) and a short read (completed, not reported). The other pairs, and
    every count and mode with each, run in make torture (cover "all")."""
    if cover == "all":
        return [(op, n, err, mode) for op in ops for err in ERRS for mode in modes for n in ns]
    out = []
    for a, op in enumerate(ops):
        errs = ERRS if cover == "err" else [ERRS[a % len(ERRS)]]
        if cover == "op+":
            errs += [e for e in SPECIAL.get(op, []) if e not in errs]
        for err in errs:
            j = len(out)
            out.append((op, ns[j % len(ns)], err, modes[(j // len(ns)) % len(modes)]))
    return out


# the (op, error) pairs judged by rules of their own (judge): an EINTR is
# retried except on fsync; a short read is completed
SPECIAL = {"fsync": ["EINTR"], "read": ["short"]}


def fault_matrix(sc, steps, ns, modes, ops=OPS, cover="all"):
    scratch = os.path.join(sc.base, "fault-scratch")
    for i, st in steps:
        before = STATS["faults"]
        for op, n, err, mode in fault_cases(ops, ns, modes, cover):
            root = sc.work("fault-root")
            rlib.copy_root(st.snapshot, root)
            judge(sc, st, root, "%s:%d:%s%s" % (op, n, err, mode), scratch)
        rlib.banner("  step %d %-40s %4d faults" % (i, " ".join(st.args), STATS["faults"] - before))


def pick_steps(sc):
    out, seen = [], set()
    for i, st in enumerate(sc.steps):
        if i > 0 and st.kind not in seen:
            out.append((i, st))
            seen.add(st.kind)
    return out


def test_fault_matrix():
    sc = rlib.Scenario().build()
    try:
        if rlib.TORTURE:
            fault_matrix(sc, [(i, st) for i, st in enumerate(sc.steps) if i > 0], list(range(1, 13)) + [20, 40, 80],
                         ["", ":always"], OPS + ["unlink", "mkdir"])
        else:
            fault_matrix(sc, pick_steps(sc), [1, 3], ["", ":always"], cover="op" if rlib.SANITIZED else "op+")
    finally:
        sc.cleanup()


def test_restore_metadata_faults():
    """The restore's owner, mode and time calls (meta) and its FICLONE
    (clone) go through the I/O layer too: a fault there must fail the
    restore cleanly (or, for a clone, fall back to patching) and leave a
    state the checker accepts, like any other fault."""
    sc = rlib.Scenario().build()
    try:
        steps = [(i, st) for i, st in enumerate(sc.steps) if st.kind == "restore"]
        if not steps:
            raise T.Failure("the scenario has no in-place restore")
        before = dict(STATS)
        ns = list(range(1, 13)) + [20, 40] if rlib.TORTURE else [1, 3]
        fault_matrix(sc, steps if rlib.TORTURE else steps[:1], ns, ["", ":always"], ["meta", "clone"],
                     cover="all" if rlib.TORTURE else "op" if rlib.SANITIZED else "op+")
        failed = STATS["failed_cleanly"] - before["failed_cleanly"]
        if not failed:
            raise T.Failure("no metadata fault failed a restore: the calls bypass the fault points")
        print("  %d metadata and clone faults, %d failed cleanly" % (STATS["faults"] - before["faults"], failed))
    finally:
        sc.cleanup()


def test_reader_faults():
    """Readers under read and open faults: log, diff, status, restore --to and
    verify --data either work (restore --to exactly) or fail with one clean
    line; the store is never changed by a reader's failure."""
    sc = rlib.Scenario().build()
    try:
        root = sc.root
        head = rlib.checkpoint_ids(root)
        to = os.path.join(sc.base, "reader-to")
        n = 0
        for op in ("open", "read"):
            for err in ("EIO", "short", "EINTR"):
                for k in ([1, 2, 4, 8, 16, 32] if not rlib.SANITIZED else [2, 16]):
                    for args in (["log"], ["diff", str(head[0])], ["status"], ["verify", "--data"],
                                 ["restore", str(head[0]), "--to", to]):
                        T.rmtree(to)
                        spec = "%s:%d:%s:always" % (op, k, err)
                        p = rlib.mtm(["-C", root] + args, env=rlib.env_with(METAMORI_FAULT=spec))
                        n += 1
                        STATS["faults"] += 1
                        what = "%s with %s" % (" ".join(args), spec)
                        if p.returncode == 0:
                            if args[0] == "restore":
                                T.assert_same(sc.manifests[head[0]], rlib.tree_manifest(to), what)
                            continue
                        if args[0] == "verify" and p.returncode == 1 and \
                                p.stderr.splitlines()[-1].startswith("metamori: verify: "):
                            pass  # verify lists what it could not read, one line each, then its verdict
                        else:
                            rlib.one_error_line(p, what)
                        if err != "EIO":
                            raise T.Failure("%s: must be retried or completed, not reported: %s" % (what, p.stderr))
        T.rmtree(to)
        rlib.mtm(["-C", root, "verify", "--data"], check=True)
        print("  %d reader runs under faults" % n)
    finally:
        sc.cleanup()


def test_fault_mid_large_file():
    """A pack write or index read failing while a file larger than the read
    buffer (1 MiB) is recorded: the checkpoint must fail, not commit with
    that run missing. (The error used to be overwritten by the next read of
    the file: the checkpoint "succeeded", verified, and restored the run as
    zeros.)"""
    import random
    base = T.tempdir("mtm-fault-big-")
    try:
        root = os.path.join(base, "t")
        os.makedirs(root)
        T.write_file(os.path.join(root, "small"), b"s" * 100)
        T.init(root)
        c1 = T.checkpoint(root)
        m1 = rlib.tree_manifest(root)
        T.write_file(os.path.join(root, "big"), random.Random(4).randbytes(6000000))
        m2 = rlib.tree_manifest(root)
        pristine = os.path.join(base, "pristine")
        rlib.copy_root(root, pristine)
        for spec in ("write:1:ENOSPC", "write:1:EIO", "write:1:ENOSPC:always", "read:20:EIO", "read:40:EIO"):
            rlib.copy_root(pristine, root)
            p = rlib.mtm(["-C", root, "checkpoint", "-q"], env=rlib.env_with(METAMORI_FAULT=spec))
            ids = rlib.checkpoint_ids(root)
            to = os.path.join(base, "to")
            if p.returncode == 0:
                T.restore(root, int(p.stdout), to=to)
                T.assert_same(m2, rlib.tree_manifest(to), "%s: the checkpoint that succeeded" % spec)
                T.rmtree(to)
                continue
            rlib.one_error_line(p, spec)
            if ids != [c1]:
                raise T.Failure("%s: the checkpoint failed but the log shows %r" % (spec, ids))
            rlib.mtm(["-C", root, "verify", "--data"], check=True)
            c = T.checkpoint(root)
            T.restore(root, c, to=to)
            T.assert_same(m2, rlib.tree_manifest(to), "%s: the checkpoint rerun" % spec)
            T.rmtree(to)
    finally:
        T.rmtree(base)


def test_failed_fsync_fails_the_checkpoint():
    """The pack fsync (the first) and every fsync before the commit: exit 1,
    no checkpoint; a failed fsync is never retried into a success."""
    sc = rlib.Scenario().build()
    try:
        st = sc.steps[1]
        root = sc.work("fsync-root")
        failed = []
        for n in range(1, 9):
            rlib.copy_root(st.snapshot, root)
            p = rlib.mtm(["-C", root] + st.args, env=rlib.env_with(METAMORI_FAULT="fsync:%d:EIO" % n))
            ids = rlib.checkpoint_ids(root)
            if p.returncode == 1:
                line = rlib.one_error_line(p, "fsync %d" % n)
                if len(ids) != len(st.before):
                    raise T.Failure("fsync %d failed but the checkpoint was recorded: %s" % (n, line))
                failed.append(n)
            elif p.returncode == 0:
                if len(ids) != len(st.before) + 1:
                    raise T.Failure("fsync %d: success without a checkpoint" % n)
            else:
                raise T.Failure("fsync %d: exit %d: %s" % (n, p.returncode, p.stderr))
            rlib.Checker(sc, st, root, "fsync:%d:EIO" % n).verify()
        if not failed or failed[0] != 1:
            raise T.Failure("a failed pack fsync did not fail the checkpoint (failed at %r)" % failed)
        # the failures are a prefix: once the commit is durable, a later fsync (the WAL
        # checkpoint at close) can no longer undo it
        if failed != list(range(1, len(failed) + 1)):
            raise T.Failure("fsync failures are not a prefix of the run: %r" % failed)
        print("  checkpoint fails on fsync 1..%d (up to the commit), succeeds after" % len(failed))
    finally:
        sc.cleanup()


def test_full_disk():
    if os.geteuid() != 0:
        raise T.Skip("mounting a tmpfs needs root")
    mnt = tempfile.mkdtemp(prefix="mtm-full-")
    size = 4 << 20
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d,mode=0755" % size, "tmpfs", mnt],
                       capture_output=True, text=True)
    if p.returncode != 0:
        os.rmdir(mnt)
        raise T.Skip("cannot mount a tmpfs: %s" % p.stderr.strip())
    outside = tempfile.mkdtemp(prefix="mtm-full-out-")
    try:
        import random
        rng = random.Random(3)
        root = os.path.join(mnt, "t")
        os.makedirs(os.path.join(root, "d"))
        T.write_file(os.path.join(root, "a.bin"), rng.randbytes(300 * 1024))
        T.write_file(os.path.join(root, "d/b.txt"), b"some text\n" * 3000)
        T.init(root)
        c1 = T.checkpoint(root)
        m1 = rlib.tree_manifest(root)
        seed_store = os.path.join(outside, "seed")
        rlib.copy_root(root, seed_store)
        T.write_file(os.path.join(root, "new.bin"), rng.randbytes(700 * 1024))
        m2 = rlib.tree_manifest(root)
        base = os.path.join(outside, "base")
        rlib.copy_root(root, base)
        state = {"enospc": 0, "free0": None}

        def try_with(left):
            """The checkpoint with left bytes free; then the store must verify,
            hold checkpoint 1, and take the checkpoint with space again.
            True if the checkpoint succeeded on the full disk."""
            # the same start each time, then leave `left` bytes free
            T.rmtree(root)
            for name in os.listdir(mnt):
                T.remove(os.path.join(mnt, name))
            rlib.copy_root(base, root)
            sv = os.statvfs(mnt)
            free = sv.f_bavail * sv.f_frsize
            state["free0"] = state["free0"] or free
            if free - left > 0:
                with open(os.path.join(mnt, "filler"), "wb") as f:
                    f.write(b"\0" * (free - left))
            p = rlib.mtm(["-C", root, "checkpoint", "-q"])
            STATS["full_disk_runs"] += 1
            if p.returncode != 0:
                rlib.one_error_line(p, "full disk, %d bytes free" % left)
                state["enospc"] += 1
            T.remove(os.path.join(mnt, "filler"))
            v = rlib.mtm(["-C", root, "verify", "--data"])
            if v.returncode != 0:
                raise T.Failure("full disk (%d free): verify failed: %s%s" % (left, v.stdout, v.stderr))
            dst = os.path.join(outside, "r1")
            T.restore(root, c1, to=dst)
            T.assert_same(m1, rlib.tree_manifest(dst), "full disk (%d free): checkpoint 1" % left)
            T.rmtree(dst)
            ids = rlib.checkpoint_ids(root)
            if p.returncode == 0 and len(ids) != 2:
                raise T.Failure("full disk: checkpoint succeeded but log shows %r" % ids)
            if p.returncode != 0 and len(ids) != 1:
                raise T.Failure("full disk: checkpoint failed but log shows %r" % ids)
            # with space again, the checkpoint completes and is exact
            q = rlib.mtm(["-C", root, "checkpoint", "-q"])
            if q.returncode != 0:
                raise T.Failure("full disk: rerun failed: %s" % q.stderr)
            cid = int(q.stdout.strip())
            T.restore(root, cid, to=dst)
            T.assert_same(m2, rlib.tree_manifest(dst), "full disk: rerun checkpoint")
            T.rmtree(dst)
            return p.returncode == 0

        # every 32 KiB of free space from 0 to 864 KiB (every third in the
        # sanitizer build: each command there costs ten times as much)
        first_ok = None
        for step in range(0, 28, 3 if rlib.SANITIZED else 1):
            if try_with(step * 32 * 1024) and first_ok is None:
                first_ok = step * 32 * 1024
        # then every 4 KiB below the first success: where the commit fits and
        # the fold of the WAL into index.db (which may grow the file) may not
        # (the fold's failed write was lost: the store was damaged, W2l)
        if first_ok is not None:
            for left in range(max(0, first_ok - 32 * 1024), first_ok, 4096 * (4 if rlib.SANITIZED else 1)):
                try_with(left)
        enospc = state["enospc"]
        STATS["full_disk_enospc"] = enospc
        if enospc == 0:
            raise T.Failure("the disk never filled up")
        print("  full disk: %d of %d checkpoints hit ENOSPC at different points; none damaged the store"
              % (enospc, STATS["full_disk_runs"]))
    finally:
        subprocess.run(["umount", mnt])
        os.rmdir(mnt)
        T.rmtree(outside)


def count_ops(root, args, op):
    """How many calls of op (a METAMORI_FAULT name) the command makes."""
    count = os.path.join(os.path.dirname(root), "count-%s" % op)
    if os.path.exists(count):
        os.unlink(count)
    p = rlib.mtm(["-C", root] + args, env=rlib.env_with(METAMORI_IO_COUNT=count, METAMORI_CRASH_OP=op))
    if p.returncode != 0:
        raise T.Failure("metamori %s failed: %s" % (" ".join(args), p.stderr.strip()))
    return int(open(count).read())


def one_dir_store(base):
    """base/t: a store whose one checkpoint holds d0/f."""
    root = os.path.join(base, "t")
    os.makedirs(os.path.join(root, "d0"))
    with open(os.path.join(root, "d0", "f"), "wb") as f:
        f.write(b"x" * 100)
    rlib.mtm(["init", root], check=True)
    rlib.mtm(["-C", root, "checkpoint", "-q"], check=True)
    return root


def test_listing_faults_reach_every_listing():
    """Every directory listing goes through the I/O layer (io_readdir), so a
    failed listing is an error, never a directory that looks emptier than it
    is: the tree walk's (a checkpoint that took a cut listing for deletions
    would drop files from the checkpoint), a restore's preflight and
    to-directory checks, push's pack listing. Counted as read calls; then a
    read fault at each listing read of a checkpoint fails it with one line
    and leaves every file in the next checkpoint."""
    base = T.tempdir("mtm-listing-")
    try:
        root = one_dir_store(base)
        few = count_ops(root, ["status"], "read")
        for i in range(1, 21):
            os.makedirs(os.path.join(root, "d%d" % i))
            with open(os.path.join(root, "d%d" % i, "f"), "wb") as f:
                f.write(b"y" * 100)
        rlib.mtm(["-C", root, "checkpoint", "-q"], check=True)
        many = count_ops(root, ["status"], "read")
        if many - few < 40:
            raise T.Failure("status read %d, then %d with 20 more directories of one file: the walk's "
                            "listings bypass the fault points" % (few, many))
        # a restore to a directory lists it (it must be empty); push lists its packs
        out = os.path.join(base, "out")
        os.makedirs(out)
        to = count_ops(root, ["restore", "head", "--to", out], "read")
        T.rmtree(out)
        os.makedirs(out)
        with open(os.path.join(out, "other"), "wb") as f:
            f.write(b"z")
        p = rlib.mtm(["-C", root, "restore", "head", "--to", out])
        rlib.one_error_line(p, "restore into a non-empty directory")
        os.unlink(os.path.join(out, "other"))
        hit = 0
        for k in range(1, to + 1):
            p = rlib.mtm(["-C", root, "restore", "head", "--to", out],
                         env=rlib.env_with(METAMORI_FAULT="read:%d:EIO" % k))
            if p.returncode != 0:
                rlib.one_error_line(p, "restore --to with read fault %d" % k)
                hit += "%s: listing" % out in p.stderr
            T.rmtree(out)
            os.makedirs(out)
        if not hit:
            raise T.Failure("no read fault of restore --to's %d reads failed its listing of %s: its emptiness "
                            "check does not go through the I/O layer" % (to, out))
        # read faults through a checkpoint's listings: each fails it with one
        # line, nothing committed; the first that does not hit, commits it whole
        os.unlink(os.path.join(root, "d0", "f"))
        failed = 0
        for k in range(1, min(many, 60) + 1, 3):
            p = rlib.mtm(["-C", root, "checkpoint", "-q"], env=rlib.env_with(METAMORI_FAULT="read:%d:EIO" % k))
            if p.returncode == 0:
                break
            rlib.one_error_line(p, "checkpoint with read fault %d" % k)
            failed += 1
        else:
            rlib.mtm(["-C", root, "checkpoint", "-q"], check=True)
        st = rlib.mtm(["-C", root, "status"], check=True)
        if "nothing changed" not in st.stdout:
            raise T.Failure("after the checkpoints with read faults, status shows:\n%s" % st.stdout)
        T.rmtree(out)
        rlib.mtm(["-C", root, "restore", "head", "--to", out], check=True)
        for i in range(1, 21):
            if open(os.path.join(out, "d%d" % i, "f"), "rb").read() != b"y" * 100:
                raise T.Failure("d%d/f is not in the last checkpoint" % i)
        if os.path.exists(os.path.join(out, "d0", "f")):
            raise T.Failure("d0/f, deleted, is in the last checkpoint")
        print("  status reads: %d -> %d with 20 more directories; restore --to: %d of its %d reads "
              "fail its listing; %d checkpoints failed by a read fault" % (few, many, hit, to, failed))
    finally:
        T.rmtree(base)


def test_fault_points_reach_walk_listings_and_session():
    """The tree walk's opens, the store's listings (verify, gc) and the
    session's files go through the I/O layer: fault injection reaches them.
    Counted with METAMORI_CRASH_OP (the count of one kind of call)."""
    base = T.tempdir("mtm-reach-")
    try:
        root = one_dir_store(base)
        # the walk: twenty more directories, twenty more opens
        few = count_ops(root, ["status"], "open")
        for i in range(1, 21):
            os.makedirs(os.path.join(root, "d%d" % i))
        many = count_ops(root, ["status"], "open")
        if many - few < 20:
            raise T.Failure("status opened %d, then %d with 20 more directories: the walk's opens bypass "
                            "the fault points" % (few, many))
        rlib.mtm(["-C", root, "checkpoint", "-q"], check=True)
        # the store's listings: a read fault near the end of verify hits one
        n = count_ops(root, ["verify"], "read")
        hit = []
        for k in range(n, max(0, n - 12), -1):
            p = rlib.mtm(["-C", root, "verify"], env=rlib.env_with(METAMORI_FAULT="read:%d:EIO" % k))
            if p.returncode != 0 and "listing" in p.stderr:
                rlib.one_error_line(p, "verify with read fault %d" % k)
                hit.append(k)
        if not hit:
            raise T.Failure("no read fault of verify's last %d reads hit a listing of the store" % min(n, 12))
        # the session's files: its directory made, its files removed at the end
        made = count_ops(root, ["run", "-q", "--", "true"], "mkdir")
        removed = count_ops(root, ["run", "-q", "--", "true"], "unlink")
        if made < 1 or removed < 2:
            raise T.Failure("a session made %d directories and removed %d files through the I/O layer "
                            "(expected its directory, then ctl and sock)" % (made, removed))
        print("  walk: %d -> %d opens; verify: listing faults at reads %s of %d; session: %d mkdir, %d unlink"
              % (few, many, hit, n, made, removed))
    finally:
        T.rmtree(base)


if __name__ == "__main__":
    try:
        T.main([test_listing_faults_reach_every_listing, test_fault_mid_large_file, test_failed_fsync_fails_the_checkpoint, test_full_disk, test_reader_faults,
                test_restore_metadata_faults, test_fault_points_reach_walk_listings_and_session,
                test_fault_matrix])
    finally:
        print("faults: %(faults)d injected (%(failed_cleanly)d clean failures, %(succeeded)d recovered); "
              "full disk: %(full_disk_enospc)d/%(full_disk_runs)d checkpoints hit ENOSPC" % STATS)
        print("  " + rlib.outcomes())
