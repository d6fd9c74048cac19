#!/usr/bin/env python3
"""Randomized model test: seeded random operation sequences on a small tree,
checkpoints between them, restores to random earlier checkpoints in the middle
(so histories branch), and at the end every checkpoint restored, in a random
order, in place and into a fresh directory, and compared with the manifest
(content hash and metadata) taken right after it was made.

The changes come quickly one after another, so files are rewritten within
the same timestamp tick as the checkpoint before them: the racy-stat rule has
to catch those.

MTM_MODEL_SEED (first seed), MTM_MODEL_SEQS (number of sequences), both
printed on failure to replay one sequence. make test runs 15 sequences (8 in
the sanitizer build) to stay within its time; METAMORI_TORTURE=1 (make
torture) runs 1,000.
"""
import os
import random

import mtmtest as T
from mtmtest import Failure

SEED = int(os.environ.get("MTM_MODEL_SEED", "7001"))
# the sanitizer build runs the same cases on fewer seeds (its binary is ~5x slower)
TORTURE = os.environ.get("METAMORI_TORTURE", "") not in ("", "0")
SEQS = int(os.environ.get("MTM_MODEL_SEQS", "1000" if TORTURE else "8" if os.environ.get("MTM_SANITIZED") else "15"))
BLOCK = 4096


class Model:
    def __init__(self, root, rng):
        self.root, self.rng = root, rng

    def p(self, rel):
        return os.path.join(self.root, rel)

    def entries(self, kind=None):
        out = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel_dir = os.path.relpath(dirpath, self.root)
            if rel_dir == ".":
                rel_dir = ""
                dirnames[:] = [d for d in dirnames if d != ".metamori"]
            for name in dirnames + filenames:
                rel = os.path.join(rel_dir, name) if rel_dir else name
                full = self.p(rel)
                k = "l" if os.path.islink(full) else "d" if os.path.isdir(full) else "f"
                if kind is None or k == kind:
                    out.append(rel)
        return sorted(out)

    def dirs(self):
        return [""] + self.entries("d")

    def new_name(self):
        d = self.rng.choice(self.dirs())
        name = self.rng.choice(["a", "b", "c", "d", "e", "x.bin", "y.txt", "z z"]) + str(self.rng.randrange(6))
        return os.path.join(d, name) if d else name

    def size(self):
        return self.rng.choice([0, 1, 100, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 7, 20 * BLOCK + 100,
                                70 * BLOCK])

    # --- operations: each returns False when it does not apply -------------
    def op_create(self):
        rel = self.new_name()
        if os.path.lexists(self.p(rel)):
            return False
        T.write_file(self.p(rel), self.rng.randbytes(self.size()))
        return True

    def op_sparse(self):
        rel = self.new_name()
        if os.path.lexists(self.p(rel)):
            return False
        with open(self.p(rel), "wb") as f:
            f.write(self.rng.randbytes(50))
            f.seek(self.rng.randrange(1, 40) * BLOCK + self.rng.randrange(BLOCK))
            f.write(self.rng.randbytes(self.rng.randrange(1, 2 * BLOCK)))
        return True

    def pick(self, kind):
        e = self.entries(kind)
        return self.rng.choice(e) if e else None

    def op_patch(self):
        rel = self.pick("f")
        if rel is None:
            return False
        size = os.path.getsize(self.p(rel))
        off = self.rng.randrange(size + 1) if size else 0
        T.patch_file(self.p(rel), off, self.rng.randbytes(self.rng.choice([1, 10, BLOCK, 2 * BLOCK + 3])))
        return True

    def op_same_size_rewrite(self):
        """Same size, new bytes, mtime put back: only content hashing sees it."""
        rel = self.pick("f")
        if rel is None:
            return False
        st = os.lstat(self.p(rel))
        if st.st_size == 0:
            return False
        T.patch_file(self.p(rel), self.rng.randrange(st.st_size), b"\xA5")
        os.utime(self.p(rel), ns=(st.st_atime_ns, st.st_mtime_ns))
        return True

    def op_append(self):
        rel = self.pick("f")
        if rel is None:
            return False
        with open(self.p(rel), "ab") as f:
            f.write(self.rng.randbytes(self.rng.choice([1, 500, BLOCK, 5 * BLOCK])))
        return True

    def op_truncate(self):
        rel = self.pick("f")
        if rel is None:
            return False
        size = os.path.getsize(self.p(rel))
        os.truncate(self.p(rel), self.rng.choice([0, size // 2, size + self.rng.randrange(1, 30 * BLOCK)]))
        return True

    def op_remove(self):
        rel = self.pick(None)
        if rel is None:
            return False
        T.remove(self.p(rel))
        return True

    def op_mkdir(self):
        rel = self.new_name()
        if os.path.lexists(self.p(rel)):
            return False
        os.mkdir(self.p(rel))
        return True

    def op_rename(self):
        src = self.pick(None)
        if src is None:
            return False
        dst = self.new_name()
        if os.path.lexists(self.p(dst)) or dst == src or dst.startswith(src + "/"):
            return False
        os.rename(self.p(src), self.p(dst))
        return True

    def op_chmod(self):
        rel = self.pick(self.rng.choice(["f", "d"]))
        if rel is None:
            return False
        mode = self.rng.choice([0o600, 0o644, 0o755, 0o700, 0o640, 0o4755, 0o1777])
        os.chmod(self.p(rel), mode | (0o700 if os.path.isdir(self.p(rel)) else 0))
        return True

    def op_symlink(self):
        rel = self.new_name()
        if os.path.lexists(self.p(rel)) and not os.path.islink(self.p(rel)):
            return False
        if os.path.islink(self.p(rel)):
            os.unlink(self.p(rel))
        os.symlink(self.rng.choice(["a0", "../up", "/abs/t", "d1/x.bin2", "t" * 300]), self.p(rel))
        return True

    def op_utime(self):
        rel = self.pick(None)
        if rel is None:
            return False
        ns = self.rng.choice([0, 1, 10**18 + 7, 1700000000123456789, -5 * 10**17 - 3])
        os.utime(self.p(rel), ns=(ns, ns), follow_symlinks=False)
        return True

    def op_swap_type(self):
        """A file becomes a directory with a child, or a directory a file."""
        rel = self.pick(self.rng.choice(["f", "d"]))
        if rel is None:
            return False
        full = self.p(rel)
        if os.path.isdir(full):
            T.remove(full)
            T.write_file(full, self.rng.randbytes(self.size()))
        else:
            os.unlink(full)
            os.mkdir(full)
            T.write_file(os.path.join(full, "child"), self.rng.randbytes(100))
        return True

    def op_hardlink(self):
        src = self.pick("f")
        dst = self.new_name()
        if src is None or os.path.lexists(self.p(dst)):
            return False
        os.link(self.p(src), self.p(dst))
        return True

    OPS = [(op_create, 6), (op_sparse, 1), (op_patch, 6), (op_same_size_rewrite, 2), (op_append, 3),
           (op_truncate, 2), (op_remove, 2), (op_mkdir, 2), (op_rename, 2), (op_chmod, 2), (op_symlink, 2),
           (op_utime, 2), (op_swap_type, 1), (op_hardlink, 1)]

    def random_ops(self, n):
        fns = [f for f, w in self.OPS for _ in range(w)]
        done = 0
        for _ in range(4 * n):
            if done >= n:
                break
            if self.rng.choice(fns)(self):
                done += 1


def one_sequence(seed):
    rng = random.Random(seed)
    root = T.tempdir("mtm-model-")
    scratch = T.tempdir("mtm-model-to-")
    want = {}
    try:
        T.init(root)
        m = Model(root, rng)
        for step in range(rng.randrange(3, 7)):
            m.random_ops(rng.randrange(1, 12))
            i = T.checkpoint(root)
            want[i] = T.manifest_full(root)
            if len(want) > 1 and rng.random() < 0.3:     # go back, then branch from there
                k = rng.choice(sorted(want))
                T.restore(root, k)
                T.assert_same(want[k], T.manifest_full(root), "seed %d: in-place restore of %d" % (seed, k))
        ids = sorted(want)
        rng.shuffle(ids)
        for n, i in enumerate(ids):
            T.restore(root, i)
            T.assert_same(want[i], T.manifest_full(root), "seed %d: in-place restore of %d" % (seed, i))
            dst = os.path.join(scratch, "to%d" % n)
            T.restore(root, i, to=dst)
            T.assert_same(want[i], T.manifest_full(dst), "seed %d: restore of %d --to" % (seed, i))
        v = T.run(["-C", root, "verify", "--data"], check=False)
        if v.returncode != 0:
            raise Failure("seed %d: verify --data: %s%s" % (seed, v.stdout, v.stderr))
        return len(want)
    finally:
        T.rmtree(root)
        T.rmtree(scratch)


def test_random_histories():
    total = 0
    for s in range(SEED, SEED + SEQS):
        try:
            total += one_sequence(s)
        except Failure as e:
            raise Failure("%s (replay: MTM_MODEL_SEED=%d MTM_MODEL_SEQS=1)" % (e, s))
    print("   %d sequences, %d checkpoints, each restored in place and --to" % (SEQS, total))


if __name__ == "__main__":
    T.main([test_random_histories])
