"""Shared pieces of the reliability tests (issue 4).

A *scenario* is a representative history run against a real store: a tree with
several files, checkpoints, checkpoints with changes, an in-place restore, a
branch and a prune. Scenario.build() runs it once for reference and keeps, for
every step, a snapshot of the whole root (tree + .metamori) taken just before
the step's command, the manifest of every checkpoint taken when it was made,
and the checkpoints each step must leave behind. The crash, power-loss and
fault tests then rerun one step at a time on a copy of its snapshot, break it
(SIGKILL at the Nth mutating operation, a replayed prefix of its writes, an
injected error) and call Checker to judge the result:

  * `verify --data` passes;
  * every checkpoint committed before the step restores (`restore --to`)
    byte-exactly: content hash, type, size, mode, mtime, symlink target,
    compared with the manifest taken at checkpoint time;
  * the interrupted checkpoint exists completely or not at all;
  * an interrupted in-place restore leaves each file old or new, and the next
    command finishes it;
  * rerunning the interrupted command completes.

Environment: METAMORI (the CLI), METAMORI_TORTURE=1 for the big matrices.
"""
import json
import os
import random
import shutil
import stat
import subprocess
import sys
import tempfile

import mtmtest as T

TORTURE = os.environ.get("METAMORI_TORTURE", "") not in ("", "0")


def _sanitized():
    try:
        with open(T.METAMORI, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


# The ASan build is several times slower: make test runs a sparser matrix there
# (the normal build runs every point).
SANITIZED = _sanitized()
TMP_PREFIX = ".metamori-tmp."


def env_with(**kw):
    """os.environ without any METAMORI_* fault knob, plus kw."""
    e = {k: v for k, v in os.environ.items()
         if k not in ("METAMORI_FAULT", "METAMORI_CRASH_AT", "METAMORI_CRASH_OP", "METAMORI_IO_COUNT",
                     "METAMORI_IO_TRACE")}
    e.update({k: str(v) for k, v in kw.items()})
    return e


def mtm(args, env=None, check=False):
    """Runs the CLI; returns CompletedProcess (text)."""
    p = subprocess.run([T.METAMORI] + list(args), capture_output=True, text=True, errors="replace",
                       env=env or env_with())
    if check and p.returncode != 0:
        raise T.Failure("metamori %s failed (%d): %s%s" % (" ".join(args), p.returncode, p.stdout, p.stderr))
    return p


def copy_root(src, dst):
    """cp -a: modes, times, symlinks and owners kept."""
    if os.path.lexists(dst):
        T.rmtree(dst)
    subprocess.run(["cp", "-a", src, dst], check=True)


def checkpoint_ids(root):
    p = mtm(["-C", root, "log", "--json"], env=T.readback_env(env_with()))
    if p.returncode != 0:
        raise T.Failure("log failed (%d): %s" % (p.returncode, p.stderr.strip()))
    return [c["id"] for c in json.loads(p.stdout)]


def tree_manifest(root):
    """The tree's manifest, Metamori's temporary files left out."""
    m = T.manifest(root)
    return {k: v for k, v in m.items() if not os.path.basename(k).startswith(TMP_PREFIX)}


def contents(m):
    """A manifest without modes and times: type, size, hash, symlink target."""
    return {k: (v[0], v[2], v[3]) if v[0] == "f" else v if v[0] == "l" else ("d",) for k, v in m.items()}


def one_error_line(p, what):
    """A failed command: exit 1 and exactly one 'metamori: <what>: <why>' line."""
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    if p.returncode != 1:
        raise T.Failure("%s: expected exit 1, got %d: %s" % (what, p.returncode, p.stderr.strip()))
    if len(lines) != 1 or not lines[0].startswith("metamori: ") or lines[0].count(": ") < 2:
        raise T.Failure("%s: expected one 'metamori: <what>: <why>' line, got %r" % (what, p.stderr))
    return lines[0]


class Step:
    def __init__(self, kind, args, mutate=None):
        self.kind = kind        # 'checkpoint', 'restore' (in place), 'prune'
        self.args = args        # CLI arguments after -C ROOT
        self.mutate = mutate    # fn(root, rng) changing the tree before the command
        self.snapshot = None    # copy of the root just before the command
        self.before = []        # checkpoint ids before the command
        self.after = []         # checkpoint ids after the reference run
        self.tree_before = None
        self.tree_after = None
        self.target = None      # restore: the checkpoint id


def rand_bytes(rng, n, compressible=False):
    if compressible:
        words = [b"alpha ", b"beta ", b"gamma ", b"delta\n", b"epsilon ", b"zeta "]
        out = bytearray()
        while len(out) < n:
            out += rng.choice(words)
        return bytes(out[:n])
    return rng.randbytes(n)


def _w(root, rel, data, mode=None):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    T.write_file(p, data, mode=mode)


def _patch(root, rel, off, data):
    T.patch_file(os.path.join(root, rel), off, data)


def build_small(root, rng):
    _w(root, "a.txt", b"hello metamori\n" * 20)
    _w(root, "b.bin", rng.randbytes(200 * 1024))
    _w(root, "sub/c.txt", rand_bytes(rng, 30000, True), mode=0o640)
    _w(root, "sub/deep/d.bin", rng.randbytes(70 * 1024))
    _w(root, "big.bin", rng.randbytes(1100 * 1024))
    os.makedirs(os.path.join(root, "empty"))
    os.symlink("a.txt", os.path.join(root, "link"))


def change_1(root, rng):
    _patch(root, "b.bin", 8192, rng.randbytes(4096))
    with open(os.path.join(root, "a.txt"), "ab") as f:
        f.write(b"appended line\n")
    _w(root, "sub/new.txt", rand_bytes(rng, 9000, True))
    os.unlink(os.path.join(root, "sub/deep/d.bin"))
    os.chmod(os.path.join(root, "sub/c.txt"), 0o600)
    os.unlink(os.path.join(root, "link"))
    os.symlink("sub/c.txt", os.path.join(root, "link"))
    _patch(root, "big.bin", 500 * 1024, rng.randbytes(8192))


def change_2(root, rng):
    os.rename(os.path.join(root, "sub/new.txt"), os.path.join(root, "sub/renamed.txt"))
    os.truncate(os.path.join(root, "b.bin"), 50000)
    _w(root, "x/y/z.bin", rng.randbytes(40000))
    T.remove(os.path.join(root, "empty"))


def change_3(root, rng):
    _w(root, "e.txt", rand_bytes(rng, 12000, True))
    _patch(root, "big.bin", 4096, rng.randbytes(4096))


def build_big(root, rng):
    build_small(root, rng)
    for i in range(24):
        _w(root, "many/d%d/f%02d.dat" % (i % 4, i), rng.randbytes(rng.randrange(1, 90000)))
    _w(root, "huge.bin", rng.randbytes(3 << 20))


def change_big(root, rng):
    for i in rng.sample(range(24), 6):
        p = "many/d%d/f%02d.dat" % (i % 4, i)
        if os.path.exists(os.path.join(root, p)):
            _patch(root, p, rng.randrange(0, 60000), rng.randbytes(rng.randrange(1, 9000)))
    _patch(root, "huge.bin", rng.randrange(0, 3 << 20), rng.randbytes(70000))
    _w(root, "new%d.txt" % rng.randrange(1000), rand_bytes(rng, 20000, True))


def small_steps():
    return [
        Step("checkpoint", ["checkpoint", "-q", "-m", "first"]),
        Step("checkpoint", ["checkpoint", "-q", "-m", "second"], change_1),
        Step("checkpoint", ["checkpoint", "-q", "-m", "third"], change_2),
        Step("restore", ["restore", "1"]),
        Step("checkpoint", ["checkpoint", "-q", "-m", "branch"], change_3),
        Step("prune", ["prune", "--keep", "1", "--gc-threshold", "0"]),
    ]


def big_steps():
    return [
        Step("checkpoint", ["checkpoint", "-q", "-m", "first"]),
        Step("checkpoint", ["checkpoint", "-q", "-m", "second"], lambda r, g: (change_1(r, g), change_big(r, g))),
        Step("checkpoint", ["checkpoint", "-q", "-m", "third"], lambda r, g: (change_2(r, g), change_big(r, g))),
        Step("checkpoint", ["checkpoint", "-q", "-m", "fourth"], change_big),
        Step("restore", ["restore", "2"]),
        Step("checkpoint", ["checkpoint", "-q", "-m", "branch"], lambda r, g: (change_3(r, g), change_big(r, g))),
        Step("restore", ["restore", "4"]),
        Step("checkpoint", ["checkpoint", "-q", "-m", "fifth"], change_big),
        Step("prune", ["prune", "--keep", "1", "--keep", "5", "--gc-threshold", "0"]),
        Step("restore", ["restore", "1"]),
    ]


class Scenario:
    """Runs the steps once, keeping snapshots and manifests (see module doc)."""

    def __init__(self, big=False, seed=4):
        self.big = big
        self.seed = seed
        self.base = tempfile.mkdtemp(prefix="mtm-rel-")
        self.root = os.path.join(self.base, "ref")
        self.steps = big_steps() if big else small_steps()
        self.manifests = {}   # checkpoint id -> manifest at checkpoint time

    def build(self):
        rng = random.Random(self.seed)
        os.makedirs(self.root)
        (build_big if self.big else build_small)(self.root, rng)
        mtm(["-C", self.root, "init"], check=True)
        for i, st in enumerate(self.steps):
            if st.mutate:
                st.mutate(self.root, rng)
            st.before = checkpoint_ids(self.root)
            st.tree_before = tree_manifest(self.root)
            st.snapshot = os.path.join(self.base, "snap%02d" % i)
            copy_root(self.root, st.snapshot)
            if st.kind == "restore":
                st.target = int(st.args[1])
            mtm(["-C", self.root] + st.args, check=True)
            st.after = checkpoint_ids(self.root)
            st.tree_after = tree_manifest(self.root)
            if st.kind == "checkpoint":
                new = [c for c in st.after if c not in st.before]
                if len(new) != 1:
                    raise T.Failure("reference run: checkpoint made %r" % new)
                self.manifests[new[0]] = st.tree_before
            if st.kind == "restore":
                T.assert_same(self.manifests[st.target], st.tree_after, "reference restore %d" % st.target)
        return self

    def work(self, name):
        """A fresh scratch directory inside the scenario's base."""
        d = os.path.join(self.base, name)
        if os.path.lexists(d):
            T.rmtree(d)
        return d

    def cleanup(self):
        T.rmtree(self.base)


# What the judged states looked like, for the summaries (docs/RELIABILITY.md).
OUTCOMES = {"restore_intent_finished": 0, "restore_untouched_or_done": 0, "checkpoint_whole": 0,
            "checkpoint_absent": 0}


class Checker:
    """Judges the state left by a broken run of step st in root."""

    def __init__(self, sc, st, root, label):
        self.sc, self.st, self.root, self.label = sc, st, root, label
        self.notes = []
        self.saved = {}  # checkpoint id -> the tree a restore saved as it

    def fail(self, msg):
        raise T.Failure("%s: %s" % (self.label, msg))

    def old_or_new(self):
        """In-place restore: every file/symlink equals its old or new version."""
        st = self.st
        old, new = st.tree_before, self.sc.manifests[st.target]
        now = tree_manifest(self.root)
        mixed = []
        for path, v in now.items():
            if v[0] == "d":
                if not ((path in old and old[path][0] == "d") or (path in new and new[path][0] == "d")):
                    self.fail("directory %s is in neither the old nor the new tree" % path)
                continue
            cands = [m[path] for m in (old, new) if path in m]
            if not any(self._same_entry(v, c) for c in cands):
                if v[0] == "f" and any(c[0] == "f" and c[2] >= (1 << 20) for c in cands):
                    mixed.append(path)  # patched in place (FORMAT 8): finished by the next command
                    continue
                self.fail("%s is neither old nor new: %r (old %r, new %r)" % (path, v, old.get(path), new.get(path)))
        return mixed

    @staticmethod
    def _same_entry(v, c):
        if v[0] != c[0]:
            return False
        if v[0] == "f":  # content and size decide old/new; metadata is set through the fd before the rename
            return v[2:4] == c[2:4]
        return v == c

    def verify(self, what="verify --data"):
        p = mtm(["-C", self.root, "verify", "--data"])
        if p.returncode != 0:
            self.fail("%s failed (%d): %s%s" % (what, p.returncode, p.stdout.strip(), p.stderr.strip()))

    def restores_exactly(self, cid, want, scratch):
        if os.path.lexists(scratch):
            T.rmtree(scratch)
        p = mtm(["-C", self.root, "restore", str(cid), "--to", scratch], env=T.readback_env(env_with()))
        if p.returncode != 0:
            self.fail("restore %d --to failed: %s" % (cid, p.stderr.strip()))
        try:
            T.assert_same(want, tree_manifest(scratch), "%s: checkpoint %d" % (self.label, cid))
        finally:
            T.rmtree(scratch)

    def committed(self, scratch, must_exist=None):
        """Every checkpoint that must exist does and restores exactly; an
        extra one is the interrupted checkpoint, and must be complete."""
        st, sc = self.st, self.sc
        ids = checkpoint_ids(self.root)
        must = set(st.before) if must_exist is None else set(must_exist)
        if st.kind == "prune":
            must = set(st.after) if must_exist is None else must
        missing = must - set(ids)
        if missing:
            self.fail("committed checkpoints lost: %s" % sorted(missing))
        for cid in ids:
            if cid in st.before:
                self.restores_exactly(cid, sc.manifests[cid], scratch)
            elif st.kind == "checkpoint":
                # the interrupted checkpoint (or its rerun) made it: it must be whole
                self.restores_exactly(cid, st.tree_before, scratch)
            elif cid in self.saved:
                # a restore's save of a tree that differed from the head (issue
                # 16): it holds exactly the tree the restore found
                self.restores_exactly(cid, self.saved[cid], scratch)
            else:
                self.fail("unexpected checkpoint %d (log: %r)" % (cid, ids))
        return ids

    def full(self, scratch, rerun=True, tree_untouched_unless_restore=True):
        """The whole judgement after a crash or a failed command."""
        st = self.st
        intent = os.path.exists(os.path.join(self.root, ".metamori", "intent"))
        mixed = []
        if st.kind == "restore":
            mixed = self.old_or_new()
        elif tree_untouched_unless_restore:
            T.assert_same(st.tree_before, tree_manifest(self.root), "%s: tree changed by %s" % (self.label, st.kind))
        ids_before_rerun = checkpoint_ids(self.root) if st.kind == "checkpoint" else []
        left = tree_manifest(self.root)
        self.verify()  # the next command works, and never changes the tree (issue 16)
        T.assert_same(left, tree_manifest(self.root), "%s: verify changed the tree" % self.label)
        if st.kind == "checkpoint":
            OUTCOMES["checkpoint_whole" if len(ids_before_rerun) > len(st.before) else "checkpoint_absent"] += 1
        if st.kind == "restore":
            OUTCOMES["restore_intent_finished" if intent else "restore_untouched_or_done"] += 1
            if intent:  # finished on request (the mixed tree is not saved: it is the restore's own)
                p = mtm(["-C", self.root, "restore", "--continue", "--discard"])
                if p.returncode != 0:
                    self.fail("restore --continue failed (%d): %s" % (p.returncode, p.stderr.strip()))
                if os.path.exists(os.path.join(self.root, ".metamori", "intent")):
                    self.fail("restore --continue left the intent")
            now = tree_manifest(self.root)
            new = self.sc.manifests[st.target]
            if intent and now != new:
                T.assert_same(new, now, "%s: restore --continue did not finish the restore" % self.label)
            if not intent and now != new and mixed:
                self.fail("files mixed without an intent: %s" % mixed)
            if not intent and contents(now) not in (contents(st.tree_before), contents(new)):
                # without an intent the restore either had not touched the tree or had finished
                T.assert_same(contents(st.tree_before), contents(now),
                              "%s: tree partly restored but no intent left" % self.label)
        self.committed(scratch)
        if rerun:
            found, ids_before = tree_manifest(self.root), checkpoint_ids(self.root)
            p = mtm(["-C", self.root] + st.args)
            if st.kind == "restore" and p.returncode == 0 and p.stdout.startswith("saved the current tree as checkpoint"):
                # the cut left the tree restored but the head not yet moved:
                # the rerun saves that tree first, as any restore would
                new = [c for c in checkpoint_ids(self.root) if c not in ids_before]
                if len(new) != 1:
                    self.fail("the rerun's save made %r" % new)
                self.saved[new[0]] = found
            if p.returncode != 0:
                self.fail("rerun of %s failed (%d): %s" % (" ".join(st.args), p.returncode, p.stderr.strip()))
            self.verify("verify --data after the rerun")
            if st.kind == "restore":
                T.assert_same(self.sc.manifests[st.target], tree_manifest(self.root), "%s: after rerun" % self.label)
            self.committed(scratch)
        return mixed


def outcomes():
    return ("interrupted checkpoints: %(checkpoint_whole)d whole, %(checkpoint_absent)d absent; "
            "interrupted restores: %(restore_intent_finished)d finished by restore --continue, "
            "%(restore_untouched_or_done)d untouched or done" % OUTCOMES)


def banner(msg):
    print(msg)
    sys.stdout.flush()
