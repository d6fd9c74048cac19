"""Helpers for the damaged-store tests: a small store with a few checkpoints,
kept as a pristine copy that each case damages afresh."""
import os
import random
import sqlite3
import subprocess
import tempfile

import mtmtest as T

BAD_WORDS = ("Sanitizer", "runtime error", "Segmentation", "Aborted", "core dumped")


def mtm(args, env=None):
    return subprocess.run([T.METAMORI] + list(args), capture_output=True, text=True, errors="replace", env=env)


def no_crash(p, what):
    """Exit 0 or 1; a failure is one 'metamori: <what>: <why>' line; no sanitizer report."""
    if p.returncode not in (0, 1):
        raise T.Failure("%s: exit %d (crash?)\n%s" % (what, p.returncode, p.stderr[-2000:]))
    for w in BAD_WORDS:
        if w in p.stderr:
            raise T.Failure("%s: %s in stderr:\n%s" % (what, w, p.stderr[-2000:]))
    if p.returncode == 1:
        lines = [l for l in p.stderr.splitlines() if l.strip()]
        errs = [l for l in lines if l.startswith("metamori: ")]
        if not errs or not lines[-1].startswith("metamori: "):
            raise T.Failure("%s: failed without a 'metamori: ' error line:\n%s" % (what, p.stderr))
    return p


def tree(root):
    m = T.manifest(root)
    return {k: v for k, v in m.items() if not os.path.basename(k).startswith(".metamori-tmp.")}


class Store:
    """base/pristine: a tree and store with 3 checkpoints; manifests kept."""

    def __init__(self, seed=5):
        rng = random.Random(seed)
        self.base = tempfile.mkdtemp(prefix="mtm-damage-")
        self.pristine = os.path.join(self.base, "pristine")
        r = self.pristine
        os.makedirs(os.path.join(r, "sub/deep"))
        T.write_file(os.path.join(r, "a.txt"), b"the quick brown fox\n" * 400)
        T.write_file(os.path.join(r, "b.bin"), rng.randbytes(150 * 1024))
        T.write_file(os.path.join(r, "sub/c.txt"), b"lorem ipsum " * 2000)
        T.write_file(os.path.join(r, "sub/deep/d.bin"), rng.randbytes(20000))
        os.symlink("a.txt", os.path.join(r, "link"))
        T.init(r)
        self.manifests = {}
        self.manifests[T.checkpoint(r)] = tree(r)
        T.patch_file(os.path.join(r, "b.bin"), 4096, rng.randbytes(5000))
        T.write_file(os.path.join(r, "sub/new.txt"), b"new file\n" * 100)
        self.manifests[T.checkpoint(r)] = tree(r)
        T.write_file(os.path.join(r, "a.txt"), b"rewritten\n" * 50)
        os.unlink(os.path.join(r, "sub/deep/d.bin"))
        self.manifests[T.checkpoint(r)] = tree(r)
        self.head_tree = tree(r)

    def copy(self, name):
        dst = os.path.join(self.base, name)
        if os.path.lexists(dst):
            T.rmtree(dst)
        subprocess.run(["cp", "-a", self.pristine, dst], check=True)
        return dst

    def db(self, root):
        c = sqlite3.connect(os.path.join(root, ".metamori", "index.db"))
        c.text_factory = bytes
        return c

    def chunks(self, root):
        c = self.db(root)
        rows = c.execute("SELECT id, pack, off, clen, plen FROM chunk ORDER BY id").fetchall()
        c.close()
        return rows

    def cleanup(self):
        T.rmtree(self.base)


def flip(path, off, mask=0x01):
    with open(path, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ mask]))
