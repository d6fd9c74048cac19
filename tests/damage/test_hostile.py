#!/usr/bin/env python3
"""A store that lies (issue 4): hostile index entries written with SQLite
directly — paths with '..', absolute, empty components, '.', embedded NUL;
huge sizes, block numbers, chunk lengths and ids; a symlink entry with a file
"under" it — and symlinks planted in the live tree.

A restore (in place and --to) must refuse cleanly (exit 1, one error line) or
produce exactly the honest part, must never write outside its root, never
follow a symlink it did not create, never allocate without bound, never hang.
Every command on such a store must not crash (the ASan build runs these too).
"""
import os
import subprocess

import dlib
import mtmtest as T

S = None
STATS = {"cases": 0}


def store():
    global S
    if S is None:
        S = dlib.Store(seed=8)
        # the scan checkpoints' block rows wait in block_log (FORMAT.md
        # 3.5.1); du merges them, so that the lies about `block` below reach
        # every row (those about block_log insert their own)
        T.run(["-C", S.pristine, "du"])
        S.outside = os.path.join(S.base, "outside")
        os.makedirs(S.outside)
        T.write_file(os.path.join(S.outside, "keep.txt"), b"outside the root\n")
    return S


def outside_untouched(what):
    s = store()
    names = []
    for dp, dn, fn in os.walk(s.outside):
        names += [os.path.relpath(os.path.join(dp, n), s.outside) for n in dn + fn]
    if sorted(names) != ["keep.txt"]:
        raise T.Failure("%s: a restore wrote outside its root: %r" % (what, names))
    with open(os.path.join(s.outside, "keep.txt"), "rb") as f:
        if f.read() != b"outside the root\n":
            raise T.Failure("%s: a file outside the root changed" % what)
    for bad in ("evil", "evil2"):
        for where in (s.base, os.path.dirname(s.base), "/tmp"):
            if os.path.lexists(os.path.join(where, bad)):
                raise T.Failure("%s: %s/%s was written" % (what, where, bad))


def run(root, args, what, timeout=120):
    try:
        p = subprocess.run([T.METAMORI, "-C", root] + args, capture_output=True, text=True, errors="replace",
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        raise T.Failure("%s: %s did not finish in %ds (unbounded work?)" % (what, " ".join(args), timeout))
    return dlib.no_crash(p, what + ": " + " ".join(args))


def lie(name, sql_fn, expect_refusal=True, ckpt=3, verify_fails=False):
    """Copies the store, lets sql_fn(conn) edit its index, then judges restores of ckpt."""
    s = store()
    root = s.copy("hostile-" + name)
    c = s.db(root)
    sql_fn(c)
    c.commit()
    c.close()
    before = dlib.tree(root)
    for args in (["verify", "--data"], ["log"], ["diff", "1", str(ckpt)], ["du"], ["status"]):
        p = run(root, args, name)
        if args[0] == "verify" and verify_fails and p.returncode != 1:
            raise T.Failure("%s: verify --data did not report the damage: %s" % (name, p.stdout))
    to = os.path.join(s.base, "hostile-to")
    T.rmtree(to)
    p = run(root, ["restore", str(ckpt), "--to", to], name)
    if expect_refusal and p.returncode != 1:
        raise T.Failure("%s: restore --to accepted a hostile index" % name)
    T.rmtree(to)
    outside_untouched(name + " (--to)")
    p = run(root, ["restore", str(ckpt)], name)
    if expect_refusal and p.returncode != 1:
        raise T.Failure("%s: restore in place accepted a hostile index" % name)
    if p.returncode == 1:
        T.assert_same(before, dlib.tree(root), name + ": tree after a refused restore")
    outside_untouched(name + " (in place)")
    STATS["cases"] += 1
    return p


def add_entry(path, kind=1, size=10, file_id=1, target=None, mode=0o644):
    def fn(c):
        c.execute("INSERT INTO entry(path, branch, ckpt, kind, mode, uid, gid, size, mtime_nsec, file_id, target) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                  (path, 1, 3, kind, mode, 0, 0, size, 0, file_id, target))
    return fn


def test_hostile_paths():
    s = store()
    cases = {
        "dotdot": b"../evil",
        "dotdot-deep": b"sub/../../evil",
        "absolute": (s.outside + "/evil").encode(),
        "empty-component": b"sub//evil",
        "dot": b"./evil",
        "trailing-slash": b"sub/evil/",
        "empty": b"",
        "nul": b"sub/x\x00/../../evil",
        "long": b"a" * 300,
        "very-long": b"/".join([b"d"] * 600000),  # past MTM_PATH_MAX (1 MiB; 4096 bytes are fine)
    }
    for name, path in cases.items():
        p = lie(name, add_entry(path), verify_fails=True)
        if "unsafe" not in p.stderr and "damaged" not in p.stderr:
            raise T.Failure("%s: unclear refusal: %s" % (name, p.stderr))
    # the same path stored as TEXT with a NUL inside
    lie("nul-text", lambda c: c.execute("INSERT INTO entry(path, branch, ckpt, kind, mode, uid, gid, size, mtime_nsec, file_id, target) VALUES(CAST(? AS TEXT),1,3,1,420,0,0,10,0,1,NULL)",
                                        (b"x\x00/../evil",)))


def test_huge_numbers():
    lie("size-2^62", add_entry(b"huge", size=1 << 62))
    lie("size-negative", add_entry(b"neg", size=-5))
    lie("mode-huge", add_entry(b"m", mode=1 << 40))
    lie("kind-9", add_entry(b"k", kind=9))
    # the largest size the format allows, with no blocks: a 64 TiB hole; must end (refuse or
    # stay sparse), not write or allocate 64 TiB
    lie("size-max", add_entry(b"sparse", size=1 << 46, file_id=999), expect_refusal=False)
    lie("block-far", lambda c: c.execute("INSERT INTO block VALUES(1, ?, 1, 3, 0, 1, 0)", (1 << 40,)),
        expect_refusal=False)
    lie("boff-huge", lambda c: c.execute("UPDATE block SET boff = 1000000 WHERE chunk != 0"))
    # an in-place restore looks up the blocks written between head and target
    # (block_by_ckpt): a negative block number there is refused before any change
    p = lie("block-negative", lambda c: c.execute("INSERT INTO block VALUES(1, -5, 1, 3, 0, 1, 0)"), ckpt=1,
            expect_refusal=False)
    if p.returncode != 1 or "damaged block number" not in p.stderr:
        raise T.Failure("block-negative: in-place restore: %d %s" % (p.returncode, p.stderr))
    # rows a session has not merged yet (block_log) are read, checked and merged like block's
    p = lie("log-negative", lambda c: c.execute("INSERT INTO block_log VALUES(1, -5, 1, 3, 0, 1, 0)"), ckpt=1,
            expect_refusal=False)
    if p.returncode != 1 or "damaged block number" not in p.stderr:
        raise T.Failure("log-negative: in-place restore: %d %s" % (p.returncode, p.stderr))
    lie("log-missing-chunk", lambda c: c.execute("INSERT INTO block_log VALUES(1, 0, 1, 3, 0, 999999, 0)"),
        verify_fails=True)
    lie("log-boff-huge", lambda c: c.execute("INSERT OR REPLACE INTO block_log SELECT file_id, blkno, branch, 3, hash, chunk,"
                                             " 1000000 FROM block WHERE chunk != 0"), verify_fails=True)
    p = lie("log-dropped", lambda c: c.execute("DROP TABLE block_log"), ckpt=1)
    if "block_log" not in p.stderr:
        raise T.Failure("log-dropped: unclear refusal: %s" % p.stderr)
    lie("chunk-plen", lambda c: c.execute("UPDATE chunk SET plen = 1 << 31"), ckpt=1)
    lie("chunk-clen", lambda c: c.execute("UPDATE chunk SET clen = 1 << 40"), ckpt=1)
    lie("chunk-off", lambda c: c.execute("UPDATE chunk SET off = (1 << 62)"), ckpt=1)
    lie("chunk-pack", lambda c: c.execute("UPDATE chunk SET pack = 123456789"), ckpt=1)
    lie("chunk-hash", lambda c: c.execute("UPDATE chunk SET hash = x'00' WHERE id = (SELECT min(id) FROM chunk)"), ckpt=1)
    lie("branch-huge", lambda c: c.execute("INSERT INTO branch VALUES(1000000000, 1, 3)"), ckpt=1)
    # branch ids have no gaps: a lying id near the old limit cost a 1.6 GB allocation per command
    lie("branch-gap", lambda c: c.execute("INSERT INTO branch VALUES(99999999, 1, 3)"), ckpt=1)
    lie("branch-loop", lambda c: c.execute("UPDATE branch SET parent_branch = 1 WHERE id = 1"), ckpt=1)
    lie("parent-loop", lambda c: c.execute("UPDATE checkpoint SET parent = 3 WHERE id = 3"),
        expect_refusal=False)
    lie("symlink-target-nul", add_entry(b"sl", kind=3, size=0, file_id=0, target=b"a\x00b"))
    lie("symlink-target-empty", add_entry(b"sl", kind=3, size=0, file_id=0, target=b""))


def test_symlink_then_file_under_it():
    """The index says 'lnk' is a symlink to outside and 'lnk/evil' a file: the
    restore must not write through the symlink."""
    s = store()

    def fn(c):
        c.execute("INSERT INTO entry(path, branch, ckpt, kind, mode, uid, gid, size, mtime_nsec, file_id, target) VALUES(?,1,3,3,511,0,0,0,0,0,?)", (b"lnk", s.outside.encode()))
        c.execute("INSERT INTO entry(path, branch, ckpt, kind, mode, uid, gid, size, mtime_nsec, file_id, target) VALUES(?,1,3,1,420,0,0,10,0,1,NULL)", (b"lnk/evil",))
    p = lie("symlink-parent", fn)
    if "has no parent directory" not in p.stderr:
        raise T.Failure("symlink-parent: unclear refusal: %s" % p.stderr)


def test_planted_symlink_in_tree():
    """The live tree's 'sub' is replaced by a symlink to a directory outside;
    restoring a checkpoint where sub/ holds files must not write there."""
    s = store()
    for cid in (1, 2):
        root = s.copy("planted")
        T.rmtree(os.path.join(root, "sub"))
        os.symlink(s.outside, os.path.join(root, "sub"))
        p = run(root, ["restore", str(cid)], "planted symlink")
        outside_untouched("planted symlink, restore %d" % cid)
        if p.returncode == 0:
            T.assert_same(s.manifests[cid], dlib.tree(root), "restore %d over a planted symlink" % cid)
        STATS["cases"] += 1
    # a symlink planted for a file the restore rewrites
    root = s.copy("planted-file")
    os.unlink(os.path.join(root, "a.txt"))
    os.symlink(os.path.join(s.outside, "keep.txt"), os.path.join(root, "a.txt"))
    p = run(root, ["restore", "1"], "planted file symlink")
    outside_untouched("planted file symlink")
    if p.returncode == 0:
        T.assert_same(s.manifests[1], dlib.tree(root), "restore over a planted file symlink")
    STATS["cases"] += 1


def test_restore_to_a_symlinked_parent():
    """--to NEW where NEW's parent is fine but NEW itself is a dangling
    symlink to outside: nothing may be written through it."""
    s = store()
    root = s.copy("to-link")
    link = os.path.join(s.base, "to-link-target")
    os.symlink(os.path.join(s.outside, "made"), link)
    p = run(root, ["restore", "1", "--to", link], "restore --to a dangling symlink")
    if os.path.lexists(os.path.join(s.outside, "made")):
        made = os.listdir(os.path.join(s.outside, "made"))
        T.rmtree(os.path.join(s.outside, "made"))
        raise T.Failure("restore --to followed a dangling symlink and wrote %r outside" % made)
    os.unlink(link)
    STATS["cases"] += 1


if __name__ == "__main__":
    try:
        T.main([test_hostile_paths, test_huge_numbers, test_symlink_then_file_under_it, test_planted_symlink_in_tree,
                test_restore_to_a_symlinked_parent])
    finally:
        print("hostile: %(cases)d lying stores and planted symlinks" % STATS)
        if S:
            S.cleanup()
