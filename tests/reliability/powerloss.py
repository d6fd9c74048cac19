#!/usr/bin/env python3
"""Power loss (issue 4): replay prefixes of a recorded write/fsync stream,
losing what was not yet durable, and check that nothing committed is lost.

1. A step of the rlib scenario (checkpoint, in-place restore, prune) runs once
   on a copy of its snapshot with METAMORI_IO_TRACE, which records every
   mutating operation of the I/O layer and of the SQLite VFS shim (format in
   src/io/io.h: u8 op, u32 len + path, u32 len + path2, u64 off, u64 len, data).
2. A model of the file system starts from the snapshot: inodes with durable and
   current contents, directories with durable and current entries. Replaying a
   record changes current state; an fsync of a file makes its current contents
   durable; an fsync of a directory makes its current entries durable. So a
   create, rename, unlink or mkdir survives only once its parent directory was
   fsynced.
3. For a prefix of k records, the "power cut" state is materialized into a
   fresh directory: each directory's durable entries (or, in the "random"
   variant, for a random half of the directories, their current entries: a file
   system may have written more than it promised), each file's durable content
   plus none, all, or a random subset of its unsynced writes and truncates (in
   order).
4. rlib.Checker judges the result: verify --data, every committed checkpoint
   restores exactly, the interrupted checkpoint whole or absent, old-or-new
   files for a restore, and the rerun completes. For the full prefix (the
   command had returned) the new checkpoint must be there: a returned commit
   is durable.

make test: about 35 prefixes (the empty one once: its variants are the same
state); METAMORI_TORTURE=1:
more than 1,000.
"""
import os
import random
import stat
import sys

import mtmtest as T
import rlib

STATS = {"prefixes": 0, "records": 0, "steps": 0}


read_trace = T.read_trace  # (op, path, path2, off, len, data)


class Inode:
    __slots__ = ("kind", "durable", "cur", "pending", "target", "meta", "entries", "dur_entries")

    def __init__(self, kind, data=b"", target=None, meta=None):
        self.kind = kind            # 'f', 'd', 'l'
        self.durable = bytes(data)  # files: content as of the last fsync
        self.cur = bytearray(data)
        self.pending = []           # files: ops since the last fsync
        self.target = target
        self.meta = meta            # (mode, uid, gid, atime_ns, mtime_ns) for inodes of the snapshot
        self.entries = {}           # dirs: name -> Inode, now
        self.dur_entries = {}       # dirs: name -> Inode, as of the last fsync


def _apply(buf, op):
    if op[0] == "W":
        off, data = op[1], op[2]
        if len(buf) < off:
            buf.extend(b"\0" * (off - len(buf)))
        buf[off:off + len(data)] = data
    elif op[0] == "T":
        n = op[1]
        if n < len(buf):
            del buf[n:]
        else:
            buf.extend(b"\0" * (n - len(buf)))
    elif op[0] == "P":
        off, n = op[1], op[2]
        end = min(len(buf), off + n)
        if off < end:
            buf[off:end] = b"\0" * (end - off)


class FsModel:
    def __init__(self, snapshot, run_root):
        self.run_root = run_root.rstrip("/")
        self.root = self._load(snapshot)
        self.ignored = 0

    def _load(self, path):
        st = os.lstat(path)
        meta = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_atime_ns, st.st_mtime_ns)
        if stat.S_ISDIR(st.st_mode):
            ino = Inode("d", meta=meta)
            for name in sorted(os.listdir(path)):
                child = os.path.join(path, name)
                cst = os.lstat(child)
                if not (stat.S_ISDIR(cst.st_mode) or stat.S_ISREG(cst.st_mode) or stat.S_ISLNK(cst.st_mode)):
                    continue
                ino.entries[name] = self._load(child)
            ino.dur_entries = dict(ino.entries)
            return ino
        if stat.S_ISLNK(st.st_mode):
            return Inode("l", target=os.readlink(path), meta=meta)
        with open(path, "rb") as f:
            return Inode("f", f.read(), meta=meta)

    def _rel(self, p):
        if p == self.run_root:
            return []
        if not p.startswith(self.run_root + "/"):
            return None
        return [c for c in p[len(self.run_root) + 1:].split("/") if c]

    def _lookup(self, p):
        comps = self._rel(p)
        if comps is None:
            return None
        ino = self.root
        for c in comps:
            if ino.kind != "d" or c not in ino.entries:
                return None
            ino = ino.entries[c]
        return ino

    def _parent(self, p):
        comps = self._rel(p)
        if not comps:
            return None, None
        d = self._lookup(self.run_root + "/" + "/".join(comps[:-1])) if len(comps) > 1 else self.root
        if d is None or d.kind != "d":
            return None, None
        return d, comps[-1]

    def apply(self, rec):
        op, p1, p2, off, ln, data = rec
        if op in "WTP":
            ino = self._lookup(p1)
            if ino is None or ino.kind != "f":
                self.ignored += 1
                return
            o = ("W", off, data) if op == "W" else ("T", ln) if op == "T" else ("P", off, ln)
            _apply(ino.cur, o)
            ino.pending.append(o)
        elif op == "S":
            ino = self._lookup(p1)
            if ino is None:
                self.ignored += 1
                return
            if ino.kind == "d":
                ino.dur_entries = dict(ino.entries)
            elif ino.kind == "f":
                ino.durable = bytes(ino.cur)
                ino.pending = []
        elif op in "CML":
            d, name = self._parent(p1)
            if d is None:
                self.ignored += 1
                return
            if name in d.entries:
                return  # O_CREAT of an existing file
            d.entries[name] = Inode("f") if op == "C" else Inode("d") if op == "M" else Inode("l", target=p2)
        elif op in "UD":
            d, name = self._parent(p1)
            if d is None or name not in d.entries:
                self.ignored += 1
                return
            del d.entries[name]
        elif op == "R":
            d1, n1 = self._parent(p1)
            d2, n2 = self._parent(p2)
            if d1 is None or d2 is None or n1 not in d1.entries:
                self.ignored += 1
                return
            ino = d1.entries.pop(n1)
            d2.entries[n2] = ino

    def materialize(self, dst, variant, rng):
        """Writes the state a power cut now would leave into dst."""
        self._mat(self.root, dst, variant, rng, top=True)

    def _mat(self, ino, path, variant, rng, top=False):
        if ino.kind == "d":
            os.mkdir(path)
            use_cur = variant == "random" and rng.random() < 0.5
            for name, child in sorted((ino.entries if use_cur else ino.dur_entries).items()):
                self._mat(child, os.path.join(path, name), variant, rng)
        elif ino.kind == "l":
            os.symlink(ino.target, path)
        else:
            buf = bytearray(ino.durable)
            if variant == "all":
                buf = bytearray(ino.cur)
            elif variant == "random":
                for o in ino.pending:
                    if rng.random() < 0.5:
                        _apply(buf, o)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, bytes(buf))
            finally:
                os.close(fd)
        if ino.meta and not top:
            mode, uid, gid, at, mt = ino.meta
            os.lchown(path, uid, gid)
            if ino.kind != "l":
                os.chmod(path, mode)
            os.utime(path, ns=(at, mt), follow_symlinks=False)
        elif ino.meta and top:
            os.chmod(path, ino.meta[0])

    def fix_dir_times(self, dst):
        """Directory mtimes of the snapshot, set again after their children were made."""
        def walk(ino, path):
            if ino.kind != "d":
                return
            for name, child in ino.dur_entries.items():
                p = os.path.join(path, name)
                if os.path.isdir(p) and not os.path.islink(p):
                    walk(child, p)
            if ino.meta and path != dst:
                os.utime(path, ns=(ino.meta[3], ino.meta[4]), follow_symlinks=False)
        walk(self.root, dst)


def powerloss_step(sc, i, st, budget, rng):
    run_root = sc.work("pl-run")
    trace = os.path.join(sc.base, "trace")
    if os.path.exists(trace):
        os.unlink(trace)
    rlib.copy_root(st.snapshot, run_root)
    p = rlib.mtm(["-C", run_root] + st.args, env=rlib.env_with(METAMORI_IO_TRACE=trace))
    if p.returncode != 0:
        raise T.Failure("step %d: traced run failed: %s" % (i, p.stderr))
    recs = read_trace(trace)
    n = len(recs)
    if n < 3:
        raise T.Failure("step %d: only %d trace records" % (i, n))
    STATS["steps"] += 1
    STATS["records"] += n
    # prefixes spread over the whole run, always including the empty and the full one
    ks = sorted(set([0, n] + [round(j * n / max(1, budget - 1)) for j in range(budget)]))
    variants = ["none", "all", "random"]
    tried = 0
    model = FsModel(st.snapshot, run_root)
    applied = 0
    scratch = os.path.join(sc.base, "pl-scratch")
    for idx, k in enumerate(ks):
        while applied < k:
            model.apply(recs[applied])
            applied += 1
        # (at k = 0 nothing was written: the three variants are the same state)
        for v in ([variants[idx % 3]] if k != n else variants):
            if tried >= budget + 4:
                break
            root = sc.work("pl-cut")
            model.materialize(root, v, rng)
            model.fix_dir_times(root)
            label = "step %d (%s) power cut after %d/%d records (%s)" % (i, " ".join(st.args), k, n, v)
            chk = rlib.Checker(sc, st, root, label)
            if k == n and st.kind == "checkpoint":
                # the command returned: its checkpoint must survive the power cut
                ids = rlib.checkpoint_ids(root)
                new = [c for c in st.after if c not in st.before]
                if not set(new) <= set(ids):
                    raise T.Failure("%s: checkpoint %s lost after its command returned" % (label, new))
            chk.full(scratch, tree_untouched_unless_restore=(st.kind != "restore"))
            if k == n and st.kind == "restore":
                T.assert_same(sc.manifests[st.target], rlib.tree_manifest(root), label + ": after the returned restore")
            tried += 1
            STATS["prefixes"] += 1
    rlib.banner("  step %d %-40s %4d records, %3d power cuts" % (i, " ".join(st.args), n, tried))


def run(big, seed, budget_per_step):
    sc = rlib.Scenario(big=big, seed=seed).build()
    rng = random.Random(seed * 1000 + 1)
    try:
        for i, st in enumerate(sc.steps):
            if i == 0:
                continue  # the first checkpoint: nothing committed before it to lose
            powerloss_step(sc, i, st, budget_per_step, rng)
    finally:
        sc.cleanup()


def test_powerloss_small():
    run(False, 4, 3 if rlib.SANITIZED else 5)


def test_powerloss_torture():
    """make torture only (not listed otherwise: it is not run, so never 'ok')."""
    run(True, 7, 110)
    run(False, 12, 60)


if __name__ == "__main__":
    try:
        if not rlib.TORTURE:
            print("(1,000+ prefixes with METAMORI_TORTURE=1 / make torture)")
        T.main([test_powerloss_small] + ([test_powerloss_torture] if rlib.TORTURE else []))
    finally:
        print("powerloss: %(prefixes)d power cuts over %(steps)d traced runs (%(records)d records)" % STATS)
        print("  " + rlib.outcomes())
