#!/usr/bin/env python3
"""Round trips: every kind of change across checkpoints, then every checkpoint
restored (in place and into a fresh directory) in a seeded random order, many
times, and compared with the manifest taken right after it was made.

Also: idempotent restores, branches (checkpoint after restoring an older id),
status after restore, .metamoriignore / --exclude, diff kinds, log --json
parent links and the head mark in `log`.

Seed: MTM_ROUNDTRIP_SEED (printed on failure).
"""
import os
import random
import stat
import time

import mtmtest as T
from mtmtest import Failure

SEED = int(os.environ.get("MTM_ROUNDTRIP_SEED", "20240917"))
# the sanitizer build restores fewer times (each restore there costs ~10x);
# the normal build runs every round
SANITIZED = bool(os.environ.get("MTM_SANITIZED"))
BLOCK = 4096
MiB = 1 << 20
IS_ROOT = os.geteuid() == 0


def expect(cond, what):
    if not cond:
        raise Failure(what)


class Tree:
    """The tracked tree, with the mutations the stages use (paths relative)."""
    chown_skipped = False

    def __init__(self, root, rng):
        self.root = root
        self.rng = rng

    def p(self, rel):
        return os.path.join(self.root, rel)

    def data(self, n):
        return self.rng.randbytes(n)

    def write(self, rel, n_or_data, mode=None, mtime_ns=None):
        data = self.data(n_or_data) if isinstance(n_or_data, int) else n_or_data
        T.write_file(self.p(rel), data, mode, mtime_ns)

    def patch(self, rel, off, n):
        T.patch_file(self.p(rel), off, self.data(n))

    def append(self, rel, n):
        with open(self.p(rel), "ab") as f:
            f.write(self.data(n))

    def truncate(self, rel, size):
        os.truncate(self.p(rel), size)

    def rm(self, rel):
        T.remove(self.p(rel))

    def mkdir(self, rel, mode=None):
        os.makedirs(self.p(rel), exist_ok=True)
        if mode is not None:
            os.chmod(self.p(rel), mode)

    def symlink(self, rel, target):
        if os.path.lexists(self.p(rel)):
            os.unlink(self.p(rel))
        os.symlink(target, self.p(rel))

    def utime(self, rel, ns):
        os.utime(self.p(rel), ns=(ns, ns), follow_symlinks=False)

    def chmod(self, rel, mode):
        os.chmod(self.p(rel), mode)

    def chown(self, rel, uid, gid):
        if IS_ROOT:
            os.chown(self.p(rel), uid, gid, follow_symlinks=False)
        elif not Tree.chown_skipped:  # the ownership changes are not tried: say so, once
            Tree.chown_skipped = True
            T.skip_part("changes of owner", "chown needs root")

    def link(self, src, dst):
        os.link(self.p(src), self.p(dst))

    def rename(self, a, b):
        os.rename(self.p(a), self.p(b))


# Files that must stay sparse: path -> a rough bound on what a restore may
# allocate (checked after every restore of a checkpoint holding them).
SPARSE = ("sparse.bin", "grow.bin", "holes/tail.bin", "holes/head.bin")


def sparse_limits(root):
    out = {}
    for rel in SPARSE:
        full = os.path.join(root, rel)
        if os.path.isfile(full) and not os.path.islink(full):
            size = os.path.getsize(full)
            alloc = T.allocated(full)
            if size >= MiB:
                # the test itself must have made a sparse file, or the check below proves nothing
                expect(alloc < size // 8, "%s: test setup is not sparse (%d of %d allocated)" % (rel, alloc, size))
                out[rel] = max(256 * 1024, 2 * alloc)
    return out


def check_tree(root, want, what):
    manifest, limits = want
    T.assert_same(manifest, T.manifest_full(root), what)
    for rel, limit in limits.items():
        got = T.allocated(os.path.join(root, rel))
        expect(got <= limit, "%s: %s lost its holes: %d bytes allocated, at most %d expected"
               % (what, rel, got, limit))


# ---------------------------------------------------------------------------
# The stages. Each one changes the tree in ways the previous ones did not.

ODD_NS = [1, 999999999, 1000000001, 1234567890123456789, 4102444800123456789, 1600000000000000007]


def stage1(t):
    """The initial tree: one of everything."""
    t.write("small.txt", 100, mtime_ns=1)
    t.write("mid.bin", 10000, mtime_ns=4102444800123456789)
    t.write("blk.bin", 2 * BLOCK, mtime_ns=999999999)
    t.write("big.bin", 4 * MiB + 123)
    t.write("big2.bin", 2 * MiB)
    t.write("sparse.bin", 1000)
    t.patch("sparse.bin", 5 * MiB, 8000)            # hole in the middle
    t.write("append.log", 3000)
    for name in ("trunc0.bin", "truncmid.bin", "truncblk.bin"):
        t.write(name, 5 * BLOCK + 123)
    t.write("grow.bin", 5000)
    t.write("todir", 5000)                          # becomes a directory
    t.mkdir("fromdir/sub/deeper")                   # becomes a file
    t.mkdir("fromdir/emptysub")
    t.write("fromdir/a", 200)
    t.write("fromdir/sub/b", 300)
    t.write("fromdir/sub/deeper/c", 1)
    t.write("rename_me.txt", 7000)
    t.mkdir("rdir/y")
    t.write("rdir/x", 100)
    t.write("rdir/y/z", 5000)
    t.write("gone.txt", 50)
    t.write("perm600", 10, mode=0o600)
    t.write("perm755", 10, mode=0o755)
    t.write("setuid", 10, mode=0o4755)
    t.write("zero_mode", 10, mode=0o000)
    t.mkdir("pdir700", 0o700)
    t.write("pdir700/f", 10)
    t.mkdir("pdir755", 0o755)
    t.write("pdir755/f", 10)
    t.mkdir("sticky", 0o1777)
    t.mkdir("setgid", 0o2775)
    t.write("setgid/f", 10)
    t.symlink("ln_rel", "small.txt")
    t.symlink("ln_dangling", "does/not/exist")
    t.symlink("ln_to_file", "mid.bin")              # becomes a regular file
    t.write("file_to_ln", 600)                      # becomes a symlink
    t.symlink("ln_dir", "rdir")
    t.symlink("ln_abs", "/etc/passwd")
    t.symlink("ln_up", "../../outside/of/tree")
    t.symlink("ln_long", "x" * 1000)
    t.utime("ln_rel", 1234567890123456789)
    t.mkdir("empty")
    t.mkdir("nested/a/b/c")
    t.write("hl1", 6000)
    t.link("hl1", "hl2")
    t.write("owned", 20)
    t.chown("owned", 1234, 5678)
    t.symlink("owned_ln", "owned")
    t.chown("owned_ln", 4321, 8765)
    # names that sort in awkward places or need quoting
    t.mkdir("a")
    t.write("a/b", 10)
    for name in ("a.b", "a-b", "a0", "sp ace.txt", "\u00fcn\u00efc\u00f6d\u00e9.txt", "new\nline", "-dash",
                 "n" * 200):
        t.write(name, 33)
    t.mkdir("sub")
    t.write("sub/.metamori", 40)                    # only the root's .metamori is the store
    t.mkdir("deep/1/2/3/4/5/6/7/8/9")
    t.write("deep/1/2/3/4/5/6/7/8/9/leaf", 77)
    t.utime("deep/1/2/3", 1000000001)
    t.utime("empty", 1600000000000000007)


def stage2(t):
    t.write("new1.txt", 50, mtime_ns=ODD_NS[3])
    t.mkdir("newdir")
    t.write("newdir/new2.bin", 9000)
    t.rm("gone.txt")
    t.rm("todir")                                   # file -> dir with children
    t.mkdir("todir/sub")
    t.write("todir/child1", 300)
    t.write("todir/sub/child2", 5000)
    t.rm("fromdir")                                 # dir with children -> file
    t.write("fromdir", 7777)
    t.truncate("trunc0.bin", 0)
    t.truncate("truncmid.bin", 2 * BLOCK + 1000)
    t.truncate("truncblk.bin", 3 * BLOCK)
    t.patch("grow.bin", 3 * MiB + 100, 2000)        # growth with a hole
    for blk in (0, 17, 500):                        # a few blocks of a large file
        t.patch("big.bin", blk * BLOCK, BLOCK)
    t.patch("big.bin", 800 * BLOCK - 10, 20)        # straddling a block boundary
    t.append("append.log", 5000)
    t.rename("rename_me.txt", "renamed.txt")
    t.rename("rdir", "rdir2")                       # ln_dir now dangles
    t.chmod("perm600", 0o644)
    t.chmod("perm755", 0o700)
    t.chmod("pdir700", 0o755)
    t.chmod("pdir755", 0o700)
    t.symlink("ln_rel", "mid.bin")
    t.rm("ln_to_file")
    t.write("ln_to_file", 4444)
    t.rm("file_to_ln")
    t.symlink("file_to_ln", "small.txt")
    t.symlink("ln_dangling", "other/missing")
    t.rm("empty")
    t.mkdir("nested/a/b/c/d")
    t.mkdir("nested2/x/y")
    t.patch("hl1", 100, 50)                         # both names change
    t.link("hl1", "hl3")
    t.chown("owned", 0, 0)
    t.chown("perm600", 1000, 1000)
    t.utime("blk.bin", ODD_NS[2])
    t.utime("small.txt", ODD_NS[4])
    t.write("a-b", 4 * BLOCK)
    t.utime("nested/a", ODD_NS[5])


def stage3(t):
    t.rm("todir")                                   # and back: dir -> file
    t.write("todir", 123)
    t.rm("fromdir")                                 # file -> dir, children again
    t.mkdir("fromdir/sub")
    t.write("fromdir/sub/b", 4097)
    t.write("trunc0.bin", 10000)                    # from empty
    t.truncate("truncblk.bin", 0)
    t.truncate("big.bin", 2 * MiB + MiB // 2 + 100)  # large file cut mid-block
    for blk in (3, 4, 200):
        t.patch("big2.bin", blk * BLOCK, BLOCK)
    t.patch("sparse.bin", 2 * MiB, 100)             # data inside the hole
    t.truncate("sparse.bin", 8 * MiB)               # trailing hole
    t.truncate("grow.bin", BLOCK)                   # the far data goes
    t.rename("renamed.txt", "rdir2/renamed.txt")    # moved into a directory
    t.rm("ln_rel")                                  # symlink -> directory
    t.mkdir("ln_rel")
    t.write("ln_rel/inside", 10)
    t.rm("pdir755")                                 # directory -> symlink
    t.symlink("pdir755", "pdir700")
    t.rm("hl2")                                     # break the link
    t.write("hl2", 6000)
    t.mkdir("holes")
    t.write("holes/tail.bin", 10)
    t.truncate("holes/tail.bin", 3 * MiB)
    t.write("holes/head.bin", b"")
    t.patch("holes/head.bin", 4 * MiB, 10)          # a hole from offset 0
    t.write("sub/zeros.bin", bytes(3 * BLOCK))      # written zeros
    t.utime("rdir2", ODD_NS[1])
    t.utime("nested2/x", ODD_NS[0])
    t.chmod("sticky", 0o1755)


def stage5(t):
    """After a pause: the stat cache knows most files; change a few."""
    t.patch("big2.bin", 300 * BLOCK, 3 * BLOCK)
    t.patch("big.bin", 5 * BLOCK + 7, 100)
    t.chmod("mid.bin", 0o640)
    t.utime("append.log", ODD_NS[4])
    t.write("small.txt", 100, mtime_ns=1)           # same size, new content, old mtime
    t.chown("a/b", 7, 8)


def stage6(t):
    """Everything goes."""
    for name in os.listdir(t.root):
        if name != ".metamori":
            t.rm(name)


def stage7(t):
    """A new tree on the old names, with other types."""
    t.mkdir("small.txt")
    t.write("small.txt/inner", 10)
    t.symlink("big.bin", "small.txt")
    t.write("todir", 2 * MiB)
    t.mkdir("hl1")


# ---------------------------------------------------------------------------

def link_groups(root, manifest):
    """The regular files of manifest that share an inode (and how many names
    each inode has): a set of (names, st_nlink)."""
    by_ino = {}
    for rel, e in manifest.items():
        if e[0] == "f":
            st = os.lstat(os.path.join(root, rel))
            by_ino.setdefault(st.st_ino, ([], st.st_nlink))[0].append(rel)
    return {(tuple(sorted(names)), n) for names, n in by_ino.values()}


class Run:
    """A store, its checkpoints' manifests and the expected history."""

    def __init__(self, seed):
        self.root = T.tempdir("mtm-rt-")
        self.scratch = T.tempdir("mtm-rt-to-")
        self.rng = random.Random(seed)
        self.tree = Tree(self.root, self.rng)
        self.want = {}      # id -> (manifest, sparse limits)
        self.groups = {}    # id -> the names of each file, as link_groups gives them
        self.parent = {}    # id -> expected parent
        self.head = 0
        self.n_to = 0
        T.init(self.root)

    def checkpoint(self, msg=None):
        i = T.checkpoint(self.root, msg)
        expect(i not in self.want, "checkpoint id %d reused" % i)
        self.want[i] = (T.manifest_full(self.root), sparse_limits(self.root))
        self.groups[i] = link_groups(self.root, self.want[i][0])
        self.parent[i] = self.head
        self.head = i
        return i

    def restore_in_place(self, i, twice=False):
        out = T.restore(self.root, i).stdout
        self.head = i
        check_tree(self.root, self.want[i], "in-place restore of %d" % i)
        got = link_groups(self.root, self.want[i][0])
        expect(got == self.groups[i], "link groups after in-place restore of %d: %r, expected %r"
               % (i, got, self.groups[i]))
        st = T.status(self.root).strip()
        expect(st == "nothing changed since checkpoint %d" % i,
               "status after restoring %d: %r" % (i, st))
        if twice:
            out = T.restore(self.root, i).stdout
            expect(T.restore_counts(out) == (0, 0, 0),
                   "restoring %d a second time changed something: %s" % (i, out.strip()))
            check_tree(self.root, self.want[i], "second in-place restore of %d" % i)
        return out

    def restore_to(self, i):
        self.n_to += 1
        dst = os.path.join(self.scratch, "to%d" % self.n_to)
        if self.n_to % 2:
            os.mkdir(dst)                           # an existing empty directory
        T.restore(self.root, i, to=dst)
        check_tree(dst, self.want[i], "restore of %d --to a fresh directory" % i)
        # hard links come back as links: the same names share an inode
        got = link_groups(dst, self.want[i][0])
        expect(got == self.groups[i], "link groups after restore --to of %d: %r, expected %r"
               % (i, got, self.groups[i]))
        T.rmtree(dst)

    def cleanup(self):
        T.rmtree(self.root)
        T.rmtree(self.scratch)


def test_roundtrip_every_change():
    r = Run(SEED)
    try:
        t = r.tree
        stage1(t)
        c1 = r.checkpoint("initial")
        stage2(t)
        c2 = r.checkpoint("changes")
        stage3(t)
        c3 = r.checkpoint("swaps back")
        time.sleep(2.2)  # past the racy window: the next scans trust the stat cache
        c4 = r.checkpoint("nothing changed")
        log = {e["id"]: e for e in T.log_json(r.root)}
        expect((log[c4]["files_added"], log[c4]["files_changed"], log[c4]["files_removed"]) == (0, 0, 0),
               "a checkpoint with nothing changed recorded changes: %r" % log[c4])
        T.assert_same(r.want[c3][0], r.want[c4][0], "checkpoints %d and %d" % (c3, c4))
        stage5(t)
        c5 = r.checkpoint("after the pause")
        # restore from a stat-cache-fresh head (diffs through the index, patches big files)
        r.restore_in_place(c1, twice=True)
        r.restore_in_place(c5, twice=True)
        stage6(t)
        c6 = r.checkpoint("empty tree")
        expect(T.manifest_full(r.root) == {}, "stage 6 left entries")
        stage7(t)
        c7 = r.checkpoint("new types on old names")
        ids = [c1, c2, c3, c4, c5, c6, c7]

        # Every checkpoint, in a seeded random order, many times: round 0 in
        # place (each twice: idempotent), round 1 --to, rounds 2-3 mixed.
        rounds = [("in", True), ("to", False), ("mix", False), ("mix", False)][:2 if SANITIZED else 4]
        for mode, twice in rounds:
            order = ids[:]
            r.rng.shuffle(order)
            for i in order:
                m = mode if mode != "mix" else r.rng.choice(("in", "to"))
                if m == "in":
                    r.restore_in_place(i, twice=twice)
                else:
                    r.restore_to(i)

        # Branches: checkpoints made after restoring older ones.
        r.restore_in_place(c2)
        t.write("branch_a.txt", 5000)
        t.patch("big.bin", 10 * BLOCK, BLOCK)
        t.rm("todir")
        c8 = r.checkpoint("branch from 2")
        r.restore_in_place(c3)
        t.append("append.log", 100)
        t.mkdir("branch_b")
        t.write("branch_b/f", 100)
        t.truncate("big2.bin", MiB + 5)
        c9 = r.checkpoint("branch from 3")
        t.rm("branch_b")
        t.write("branch_b", 10)
        c10 = r.checkpoint("continues 9")
        r.restore_in_place(c8)
        t.chmod("branch_a.txt", 0o600)
        t.patch("big.bin", 11 * BLOCK, BLOCK)
        c11 = r.checkpoint("branch from 8")
        ids += [c8, c9, c10, c11]
        for _ in range(1 if SANITIZED else 2):
            order = ids[:]
            r.rng.shuffle(order)
            for i in order:
                if r.rng.random() < 0.6:
                    r.restore_in_place(i)
                else:
                    r.restore_to(i)

        log = T.log_json(r.root)
        got = {e["id"]: e["parent"] for e in log}
        expect(got == r.parent, "log --json parents %r, expected %r" % (got, r.parent))
        heads = [e["id"] for e in log if e["head"]]
        expect(heads == [r.head], "log --json head %r, expected %d" % (heads, r.head))
        v = T.run(["-C", r.root, "verify", "--data"])
        expect("store OK" in v.stdout, "verify --data: %s" % v.stdout)
    except Failure as e:
        raise Failure("%s (MTM_ROUNDTRIP_SEED=%d)" % (e, SEED))
    finally:
        r.cleanup()


def test_ignore_and_exclude():
    """Ignored and excluded paths are not in checkpoints; restores in place leave them alone."""
    root = T.tempdir("mtm-ign-")
    dst = os.path.join(T.tempdir("mtm-ign-to-"), "to")
    try:
        T.init(root)
        T.write_file(os.path.join(root, ".metamoriignore"), b"# comment\n*.o\nbuild/\n/secret.txt\n!keep.o\n")
        T.write_file(os.path.join(root, "main.c"), b"int main;\n")
        T.write_file(os.path.join(root, "main.o"), b"obj1")
        T.write_file(os.path.join(root, "keep.o"), b"kept")
        os.makedirs(os.path.join(root, "sub/build"))
        T.write_file(os.path.join(root, "sub/x.o"), b"obj2")
        T.write_file(os.path.join(root, "sub/build/out"), b"out")
        T.write_file(os.path.join(root, "sub/secret.txt"), b"not anchored: tracked")
        T.write_file(os.path.join(root, "secret.txt"), b"s1")
        T.write_file(os.path.join(root, "scratch.tmp"), b"t1")
        os.mkfifo(os.path.join(root, "fifo"))  # recorded as a FIFO (not in the manifest: one more entry)
        ignored = ("main.o", "sub/x.o", "sub/build", "sub/build/out", "secret.txt", "scratch.tmp")

        def tracked(m):
            return {k: v for k, v in m.items() if k not in ignored}

        c1 = T.checkpoint_args(root, excludes=["*.tmp"])
        m1 = tracked(T.manifest_full(root))
        T.write_file(os.path.join(root, "main.c"), b"int main(void);\n")
        T.write_file(os.path.join(root, "main.o"), b"obj1-v2")
        T.write_file(os.path.join(root, "scratch.tmp"), b"t2")
        T.write_file(os.path.join(root, "new.c"), b"new")
        c2 = T.checkpoint_args(root, excludes=["*.tmp"])
        m2 = tracked(T.manifest_full(root))

        for c in (c1, c2):
            log = {e["id"]: e for e in T.log_json(root)}
            expect(log[c]["entries"] == len(m1 if c == c1 else m2) + 1,
                   "checkpoint %d has %d entries, expected %d (ignored paths recorded?)"
                   % (c, log[c]["entries"], len(m1 if c == c1 else m2) + 1))
        d = T.diff(root, c1, c2)
        expect(d == {("M", "main.c"), ("A", "new.c")}, "diff %d %d: %r" % (c1, c2, d))

        T.restore(root, c1, to=dst)
        T.assert_same(m1, T.manifest_full(dst), "restore --to of an ignoring checkpoint")
        expect(stat.S_ISFIFO(os.lstat(os.path.join(dst, "fifo")).st_mode), "the FIFO was not restored")
        T.rmtree(dst)

        # Change the ignored files, then restore in place: they stay as they are.
        T.write_file(os.path.join(root, "main.o"), b"obj1-v3")
        T.write_file(os.path.join(root, "sub/build/out"), b"out-v2")
        T.write_file(os.path.join(root, "sub/build/more"), b"more")
        T.write_file(os.path.join(root, "secret.txt"), b"s2")
        before = {k: v for k, v in T.manifest_full(root).items() if k in ignored or k == "sub/build/more"}
        T.restore(root, c1, excludes=["*.tmp"])
        now = T.manifest_full(root)
        T.assert_same(m1, tracked({k: v for k, v in now.items() if k != "sub/build/more"}),
                      "in-place restore with ignored files")
        T.assert_same(before, {k: v for k, v in now.items() if k in before}, "ignored files after restore")
        expect(stat.S_ISFIFO(os.lstat(os.path.join(root, "fifo")).st_mode), "the FIFO was removed")
        st = T.run(["-C", root, "status", "--exclude", "*.tmp"]).stdout.strip()
        expect(st == "nothing changed since checkpoint %d" % c1, "status: %r" % st)

        T.restore(root, c2, excludes=["*.tmp"])
        now = T.manifest_full(root)
        T.assert_same(m2, tracked({k: v for k, v in now.items() if k != "sub/build/more"}), "restore of %d" % c2)
        T.assert_same(before, {k: v for k, v in now.items() if k in before}, "ignored files after restore")
    finally:
        T.rmtree(root)
        T.rmtree(os.path.dirname(dst))


def test_restore_exclude_leaves_tracked_path_alone():
    """restore --exclude PAT: a live path matching PAT is left alone even if the checkpoint has it."""
    root = T.tempdir("mtm-rx-")
    try:
        T.init(root)
        T.write_file(os.path.join(root, "keep"), b"v1")
        T.write_file(os.path.join(root, "other"), b"v1")
        c1 = T.checkpoint(root)
        T.write_file(os.path.join(root, "keep"), b"v2 live")
        T.write_file(os.path.join(root, "other"), b"v2")
        T.checkpoint(root)
        live_keep = T.manifest_full(root)["keep"]
        T.restore(root, c1, excludes=["keep"])
        m = T.manifest_full(root)
        with open(os.path.join(root, "other"), "rb") as f:
            expect(f.read() == b"v1", "other was not restored")
        expect(m["keep"] == live_keep, "restore --exclude keep rewrote keep: %r, was %r" % (m["keep"], live_keep))
    finally:
        T.rmtree(root)


def test_diff_kinds():
    """diff A B lists A/D/M/T/m lines as expected, in both directions."""
    root = T.tempdir("mtm-diff-")
    try:
        T.init(root)
        w = lambda rel, data: T.write_file(os.path.join(root, rel), data)
        w("same", b"same")
        w("mod", b"x" * 10000)
        w("meta", b"meta")
        w("touch", b"touch")
        w("gone", b"gone")
        w("f2d", b"file")
        os.makedirs(os.path.join(root, "d2f/inner"))
        w("d2f/inner/x", b"x")
        os.mkdir(os.path.join(root, "dmode"))
        os.symlink("same", os.path.join(root, "link"))
        os.symlink("same", os.path.join(root, "l2f"))
        a = T.checkpoint(root)
        T.patch_file(os.path.join(root, "mod"), 5000, b"y")
        os.chmod(os.path.join(root, "meta"), 0o600)
        os.utime(os.path.join(root, "touch"), ns=(5, 5))
        os.unlink(os.path.join(root, "gone"))
        w("added", b"new")
        os.unlink(os.path.join(root, "f2d"))
        os.mkdir(os.path.join(root, "f2d"))
        w("f2d/child", b"c")
        T.remove(os.path.join(root, "d2f"))
        w("d2f", b"now a file")
        os.chmod(os.path.join(root, "dmode"), 0o700)
        os.unlink(os.path.join(root, "link"))
        os.symlink("mod", os.path.join(root, "link"))
        os.unlink(os.path.join(root, "l2f"))
        w("l2f", b"was a link")
        b = T.checkpoint(root)
        want = {("M", "mod"), ("m", "meta"), ("m", "touch"), ("D", "gone"), ("A", "added"), ("T", "f2d"),
                ("A", "f2d/child"), ("T", "d2f"), ("D", "d2f/inner"), ("D", "d2f/inner/x"), ("m", "dmode"),
                ("M", "link"), ("T", "l2f")}
        got = T.diff(root, a, b)
        T.assert_same(dict.fromkeys(want, 1), dict.fromkeys(got, 1), "diff %d %d" % (a, b))
        flip = {"A": "D", "D": "A"}
        rev = {(flip.get(k, k), p) for k, p in want}
        got = T.diff(root, b, a)
        T.assert_same(dict.fromkeys(rev, 1), dict.fromkeys(got, 1), "diff %d %d" % (b, a))
        expect(T.diff(root, a, a) == set(), "diff of a checkpoint with itself is not empty")
        expect(T.diff(root, b) == set(), "diff against the live tree right after a checkpoint")
        # lines are in path order, and 'M' lines carry a size
        lines = [l for l in T.run(["-C", root, "diff", str(a), str(b)]).stdout.splitlines() if l]
        paths = [l[2:].rsplit(" (", 1)[0] if l[0] == "M" and l.endswith(")") else l[2:] for l in lines]
        expect(paths == sorted(paths, key=lambda s: s.encode()), "diff is not in path order: %r" % lines)
        expect(any(l.startswith("M mod (") for l in lines), "no size on the M line: %r" % lines)
        # status reports the live tree against the head the same way
        T.restore(root, a)
        w("same", b"changed")
        st = T.changes(T.status(root))
        expect(st == {("M", "same")}, "status: %r" % st)
    finally:
        T.rmtree(root)


def test_log_tree():
    """log --json parents form the expected tree; log marks the head with '*'."""
    root = T.tempdir("mtm-log-")
    try:
        T.init(root)
        expect(T.run(["-C", root, "log"]).stdout.strip() == "no checkpoints yet", "log of an empty store")
        expect(T.log_json(root) == [], "log --json of an empty store")
        f = os.path.join(root, "f")
        parents, head = {}, 0

        def ck(content, msg):
            nonlocal head
            T.write_file(f, content)
            i = T.checkpoint(root, msg)
            parents[i] = head
            head = i
            return i

        c1 = ck(b"1", "one")
        c2 = ck(b"2", "two")
        c3 = ck(b"3", "three \"quoted\"\ttab")
        T.restore(root, c1)
        head = c1
        c4 = ck(b"4", "four")
        c5 = ck(b"5", "five")
        T.restore(root, c2)
        head = c2
        c6 = ck(b"6", "six")
        log = T.log_json(root)
        expect([e["id"] for e in log] == sorted(parents), "log --json ids: %r" % [e["id"] for e in log])
        expect({e["id"]: e["parent"] for e in log} == parents, "parents: %r" % log)
        expect({e["id"]: e["message"] for e in log}[c3] == "three \"quoted\"\ttab", "message round trip")
        expect([e["id"] for e in log if e["head"]] == [c6], "head in log --json")
        for e in log:
            for k in ("time_ns", "files_added", "files_changed", "files_removed", "bytes_changed",
                      "bytes_stored", "entries", "tree_bytes"):
                expect(isinstance(e[k], int), "log --json %s is not a number" % k)

        def text_log():
            lines = [l for l in T.run(["-C", root, "log"]).stdout.splitlines() if l.strip()]
            rows = {}
            for l in lines:
                body = l[2:]
                depth = 0
                while body.startswith("| "):
                    depth += 1
                    body = body[2:]
                rows[int(body.split()[0])] = (l[0], depth)
            return rows

        rows = text_log()
        expect(sorted(rows) == sorted(parents), "log lists %r" % sorted(rows))
        expect([i for i, (m, _) in rows.items() if m == "*"] == [c6], "'*' marks %r" % rows)
        expect(all(m in "* " for m, _ in rows.values()), "log marks: %r" % rows)
        # the main line (1, 2, 3) at depth 0; branches (4, 5 from 1; 6 from 2) indented
        expect([i for i, (_, d) in rows.items() if d == 0] == [c1, c2, c3], "main line: %r" % rows)
        expect(all(rows[i][1] == 1 for i in (c4, c5, c6)), "branches not indented: %r" % rows)
        T.restore(root, c3)
        rows = text_log()
        expect([i for i, (m, _) in rows.items() if m == "*"] == [c3], "'*' after restore marks %r" % rows)
        expect([e["id"] for e in T.log_json(root) if e["head"]] == [c3], "head after restore")
    finally:
        T.rmtree(root)


def test_hardlinked_metadata_restore():
    """A metadata-only restore of one name of a hard-linked file must not change the other name."""
    root = T.tempdir("mtm-hl-")
    try:
        T.init(root)
        h1, h2 = os.path.join(root, "h1"), os.path.join(root, "h2")
        T.write_file(h1, b"same", 0o600, 1577836800000000000)
        T.write_file(h2, b"same", 0o644, 1577836800000000000)
        c1 = T.checkpoint(root)
        m1 = T.manifest_full(root)
        os.unlink(h2)
        os.link(h1, h2)
        os.chmod(h1, 0o644)
        c2 = T.checkpoint(root)
        m2 = T.manifest_full(root)
        T.restore(root, c1)
        T.assert_same(m1, T.manifest_full(root), "restore of %d over hard links" % c1)
        T.restore(root, c2)
        T.assert_same(m2, T.manifest_full(root), "restore of %d" % c2)
    finally:
        T.rmtree(root)


def test_setuid_survives_owner_restore():
    """Restoring owner and a set-id mode on an unchanged file keeps the set-id bits."""
    if not IS_ROOT:
        raise T.Skip("needs root to chown")
    root = T.tempdir("mtm-suid-")
    try:
        T.init(root)
        f = os.path.join(root, "tool")
        T.write_file(f, b"#!/bin/sh\n", 0o4755)
        os.makedirs(os.path.join(root, "d"))
        g = os.path.join(root, "d/sgid")
        T.write_file(g, b"x", 0o2755)
        c1 = T.checkpoint(root)
        m1 = T.manifest_full(root)
        for p, mode in ((f, 0o4755), (g, 0o2755)):
            os.chown(p, 1234, 1234)   # clears the set-id bits ...
            os.chmod(p, mode)         # ... so set them again
        T.checkpoint(root)
        T.restore(root, c1)
        T.assert_same(m1, T.manifest_full(root), "restore of %d" % c1)
    finally:
        T.rmtree(root)


def test_pre_epoch_mtime():
    """mtimes before 1970 with a fractional second round-trip (in place and --to)."""
    root = T.tempdir("mtm-epoch-")
    dst = os.path.join(T.tempdir("mtm-epoch-to-"), "to")
    try:
        T.init(root)
        f = os.path.join(root, "old")
        T.write_file(f, b"old", mtime_ns=-315360000123456789)   # 1960, .876543211
        os.mkdir(os.path.join(root, "olddir"))
        os.utime(os.path.join(root, "olddir"), ns=(0, -1))
        c1 = T.checkpoint(root)
        m1 = T.manifest_full(root)
        T.run(["-C", root, "restore", str(c1), "--to", dst])
        T.assert_same(m1, T.manifest_full(dst), "restore --to of pre-1970 mtimes")
        T.write_file(f, b"new", mtime_ns=5)
        T.restore(root, c1)
        T.assert_same(m1, T.manifest_full(root), "in-place restore of pre-1970 mtimes")
    finally:
        T.rmtree(root)
        T.rmtree(os.path.dirname(dst))


def test_failed_restore_leaves_store_usable():
    """A restore that cannot be done (a directory holding ignored files is in the
    way of a file) fails with a message naming the path, and does not leave an
    intent that makes every later writer fail."""
    root = T.tempdir("mtm-stuck-")
    try:
        T.init(root)
        T.write_file(os.path.join(root, ".metamoriignore"), b"*.o\n")
        T.write_file(os.path.join(root, "D"), b"file")
        c1 = T.checkpoint(root)
        os.unlink(os.path.join(root, "D"))
        os.mkdir(os.path.join(root, "D"))
        T.write_file(os.path.join(root, "D/x.o"), b"object")
        T.write_file(os.path.join(root, "D/t"), b"tracked")
        c2 = T.checkpoint(root)
        p = T.run_fail(["-C", root, "restore", str(c1)])
        expect("D" in p.stderr.splitlines()[-1], "the error does not name the path: %r" % p.stderr)
        with open(os.path.join(root, "D/x.o"), "rb") as f:
            expect(f.read() == b"object", "the ignored file was touched")
        p = T.run(["-C", root, "checkpoint", "-q"], check=False)
        expect(p.returncode == 0, "checkpoint after a failed restore: exit %d, %s"
               % (p.returncode, p.stderr.strip()))
        p = T.run(["-C", root, "restore", str(c2)], check=False)
        expect(p.returncode == 0, "restore %d after a failed restore: exit %d, %s"
               % (c2, p.returncode, p.stderr.strip()))
    finally:
        T.rmtree(root)


def test_hot_block_many_versions():
    """A block rewritten in every one of many checkpoints, on two branches:
    every version restores exactly (the map lookup seeks past long version runs)."""
    root = T.tempdir("mtm-hot-")
    dst = T.tempdir("mtm-hot-to-")
    rng = random.Random(SEED + 1)
    want = {}
    try:
        T.init(root)
        f = os.path.join(root, "hot.bin")
        T.write_file(f, rng.randbytes(8 * BLOCK))
        for n in range(45):
            T.patch_file(f, 0, rng.randbytes(100))          # block 0: every time
            T.patch_file(f, rng.randrange(8) * BLOCK, rng.randbytes(10))
            if n == 30:
                T.restore(root, 20)                         # a branch from 20
                T.patch_file(f, 0, rng.randbytes(100))
            i = T.checkpoint(root)
            want[i] = T.manifest_full(root)
        ids = sorted(want)
        rng.shuffle(ids)
        for n, i in enumerate(ids[:8 if SANITIZED else 20]):
            T.restore(root, i)
            T.assert_same(want[i], T.manifest_full(root), "in-place restore of %d" % i)
            to = os.path.join(dst, str(n))
            T.restore(root, i, to=to)
            T.assert_same(want[i], T.manifest_full(to), "restore of %d --to" % i)
    finally:
        T.rmtree(root)
        T.rmtree(dst)


def test_racy_rewrites():
    """A same-size rewrite right after a checkpoint (same timestamp tick as the
    content the checkpoint read) is never missed by the next checkpoint."""
    root = T.tempdir("mtm-racy-")
    rng = random.Random(SEED + 2)
    try:
        T.init(root)
        f = os.path.join(root, "r")
        want = {}
        for _ in range(30):
            T.write_file(f, rng.randbytes(2 * BLOCK))
            i = T.checkpoint(root)
            want[i] = T.manifest_full(root)
        for i in sorted(want, reverse=True)[:10]:
            T.restore(root, i)
            T.assert_same(want[i], T.manifest_full(root), "restore of %d" % i)
    finally:
        T.rmtree(root)


def test_restore_leaves_stat_cache_trusted():
    """An in-place restore waits out the racy window before it records the
    files it wrote, so their stat cache rows are trusted (racy = 0) and the
    next restore or checkpoint does not hash them; a change right after the
    restore is still seen: a rewrite of the same size that puts the restored
    mtime back (only the ctime tells), and a patch of one block."""
    root = T.tempdir("mtm-restore-sc-")
    rng = random.Random(SEED + 9)
    try:
        T.init(root)
        big, small = os.path.join(root, "big.bin"), os.path.join(root, "small")
        T.write_file(big, rng.randbytes(3 * MiB))
        T.write_file(small, rng.randbytes(5000))
        c1 = T.checkpoint(root)
        want1 = T.manifest_full(root)
        T.patch_file(big, 17 * BLOCK, rng.randbytes(3 * BLOCK))
        T.write_file(small, rng.randbytes(5000))
        c2 = T.checkpoint(root)
        want2 = T.manifest_full(root)
        out = T.restore(root, c1).stdout
        expect(T.restore_counts(out) == (1, 1, 0), "restore of %d: %s" % (c1, out))
        T.assert_same(want1, T.manifest_full(root), "restore of %d" % c1)
        for name in ("big.bin", "small"):
            racy = T.statcache_row(root, name)["racy"]
            expect(racy == 0, "%s: the restore left its stat cache row racy" % name)
        # same size, the restored mtime put back: only the ctime differs
        st = os.stat(small)
        T.write_file(small, rng.randbytes(5000), mtime_ns=st.st_mtime_ns)
        T.patch_file(big, 40 * BLOCK, rng.randbytes(100))
        c3 = T.checkpoint(root)
        want3 = T.manifest_full(root)
        entry = {e["id"]: e for e in T.log_json(root)}[c3]
        expect(entry["files_changed"] == 2, "the changes after the restore were missed: %r" % entry)
        for k, want in ((c2, want2), (c1, want1), (c3, want3)):
            T.restore(root, k)
            T.assert_same(want, T.manifest_full(root), "restore of %d" % k)
    finally:
        T.rmtree(root)


def test_restore_across_branches_by_history():
    """In-place restores between checkpoints of two branches, with a stat
    cache that vouches for the live files: the blocks to rewrite come from
    the index's history between the two (no whole-map compare, no read of
    the live file), including a file cut shorter and grown back, and one
    created on one branch only. Every restore is exact."""
    root = T.tempdir("mtm-branchdiff-")
    rng = random.Random(SEED + 3)
    want = {}
    try:
        T.init(root)
        big, grow = os.path.join(root, "big.bin"), os.path.join(root, "grow.bin")

        def ckpt():
            time.sleep(0.12)  # past the 50 ms racy window: the stat cache vouches for the files
            i = T.checkpoint(root)
            want[i] = T.manifest_full(root)
            return i

        def scatter(path, n):
            size = os.path.getsize(path)
            for _ in range(n):
                T.patch_file(path, rng.randrange(size // BLOCK) * BLOCK + rng.randrange(BLOCK // 2), rng.randbytes(600))

        T.write_file(big, rng.randbytes(2 * MiB + 1234))
        T.write_file(grow, rng.randbytes(3 * MiB // 2))
        c1 = ckpt()
        scatter(big, 20)
        os.truncate(grow, MiB + 5000)  # cut: blocks past the end stay in older versions
        c2 = ckpt()
        scatter(big, 20)
        with open(grow, "ab") as f:
            f.write(rng.randbytes(300 * 1024))  # grown back over the cut blocks
        c3 = ckpt()
        T.restore(root, c1)
        scatter(big, 15)
        T.write_file(os.path.join(root, "only-on-branch.bin"), rng.randbytes(MiB + 17))
        c4 = ckpt()  # a branch from c1
        scatter(big, 15)
        scatter(grow, 5)
        c5 = ckpt()
        for i in (c3, c5, c2, c4, c1, c5, c3, c1, c4, c2):
            time.sleep(0.06)
            T.restore(root, i)
            T.assert_same(want[i], T.manifest_full(root), "in-place restore of %d" % i)
    finally:
        T.rmtree(root)


def test_scattered_blocks_share_chunks():
    """Scattered changed blocks of one file are stored 16 to a chunk (FORMAT
    3.6), not a chunk each; a whole file is chunked as before, so identical
    files still share their chunks; every version restores exactly and
    verify --data reads every block back."""
    root = T.tempdir("mtm-group-")
    rng = random.Random(SEED + 4)
    want = {}

    def chunks():
        return T.index_value(root, "SELECT COUNT(*) FROM chunk")

    try:
        T.init(root)
        a = os.path.join(root, "a.bin")
        body = rng.randbytes(MiB + 100)  # 16 full groups and a short 257th block
        T.write_file(a, body)
        want[T.checkpoint(root)] = T.manifest_full(root)
        n0 = chunks()
        expect(n0 == 17, "a 1 MiB + 100 B file: 17 chunks expected, %d found" % n0)
        T.write_file(os.path.join(root, "copy.bin"), body)  # identical: no new chunk
        want[T.checkpoint(root)] = T.manifest_full(root)
        expect(chunks() == n0, "an identical file added %d chunks" % (chunks() - n0))
        for g in range(16):  # one block in each of the 16 full groups, and the short last block
            T.patch_file(a, (g * 16 + rng.randrange(16)) * BLOCK, rng.randbytes(100))
        T.patch_file(a, MiB + 10, b"tail")
        want[T.checkpoint(root)] = T.manifest_full(root)
        got = chunks() - n0
        expect(got == 2, "17 scattered blocks: 2 chunks expected (16, and the short last block), %d found" % got)
        for i in sorted(want, reverse=True) + sorted(want):
            T.restore(root, i)
            T.assert_same(want[i], T.manifest_full(root), "in-place restore of %d" % i)
        T.run(["-C", root, "verify", "--data"])
    finally:
        T.rmtree(root)


if __name__ == "__main__":
    T.main([
        test_scattered_blocks_share_chunks,
        test_restore_across_branches_by_history,
        test_restore_leaves_stat_cache_trusted,
        test_racy_rewrites,
        test_hot_block_many_versions,
        test_roundtrip_every_change,
        test_ignore_and_exclude,
        test_diff_kinds,
        test_log_tree,
        test_restore_exclude_leaves_tracked_path_alone,
        test_hardlinked_metadata_restore,
        test_setuid_survives_owner_restore,
        test_pre_epoch_mtime,
        test_failed_restore_leaves_store_usable,
    ])
