"""Shared pieces of the prune tests (issue 5).

History: a seeded random history of a small tree (files of several sizes
with holes and compressible runs, in-place patches, appends, optional
truncations, deletions, renames, copies, directories, symlinks, mode
changes), checkpointed repeatedly, with branches (an in-place restore of an
older checkpoint followed by more checkpoints). The manifest of the tree is
taken at every checkpoint.

expected_keep(): the documented prune policy, computed independently from
`log --json`, to compare with what prune keeps.

space(): reads index.db directly (docs/FORMAT.md) and works out which chunks
the checkpoints reference, for the "store size after gc" checks.
"""
import json
import math
import os
import random
import re
import sqlite3
import time

import mtmtest as T

TORTURE = os.environ.get("METAMORI_TORTURE", "") not in ("", "0")
# the sanitizer build (each command costs ten times as much) runs fewer cases
SANITIZED = os.environ.get("MTM_SANITIZED", "") not in ("", "0")
BLOCK = 4096


def store_path(root, *parts):
    return os.path.join(root, ".metamori", *parts)


class History:
    def __init__(self, seed, root, truncate=True):
        self.rng = random.Random(seed)
        self.root = root
        self.truncate = truncate
        self.manifests = {}  # checkpoint id -> manifest at checkpoint time
        self.files = []      # live regular files (relative paths)
        self.n = 0           # names handed out
        os.makedirs(root, exist_ok=True)
        T.init(root)

    # -- content -----------------------------------------------------------
    def data(self, size):
        r = self.rng
        out = bytearray()
        while len(out) < size:
            k = r.random()
            n = min(size - len(out), r.choice([100, 4096, 8192, 20000, 65536]))
            if k < 0.5:
                out += r.randbytes(n)
            elif k < 0.75:
                out += bytes([r.randrange(256)]) * n  # compressible
            elif k < 0.9:
                out += bytes(n)  # zeros: holes in the store
            else:
                out += (b"metamori %d " % r.randrange(1000)) * (n // 13 + 1)
        return bytes(out[:size])

    def name(self, ext=""):
        self.n += 1
        return "f%d%s" % (self.n, ext)

    def dirs(self):
        out = [""]
        for dp, dn, fn in os.walk(self.root):
            rel = os.path.relpath(dp, self.root)
            if rel == ".":
                dn[:] = [d for d in dn if d != ".metamori"]
                continue
            out.append(rel)
        return out

    def p(self, rel):
        return os.path.join(self.root, rel)

    def refresh(self):
        self.files = []
        for dp, dn, fn in os.walk(self.root):
            if os.path.relpath(dp, self.root) == ".":
                dn[:] = [d for d in dn if d != ".metamori"]
            for f in fn:
                full = os.path.join(dp, f)
                if not os.path.islink(full):
                    self.files.append(os.path.relpath(full, self.root))
        self.files.sort()

    # -- operations ----------------------------------------------------------
    def new_file(self):
        r = self.rng
        d = r.choice(self.dirs())
        rel = os.path.join(d, self.name()) if d else self.name()
        size = r.choice([0, 10, 4096, 5000, 40000, 70000, 150000, 300000])
        T.write_file(self.p(rel), self.data(size), mode=r.choice([0o644, 0o600, 0o755]))

    def patch(self, rel):
        r = self.rng
        size = os.path.getsize(self.p(rel))
        for _ in range(r.randint(1, 4)):
            if r.random() < 0.7 and size >= BLOCK:
                off = r.randrange(size // BLOCK) * BLOCK
                T.patch_file(self.p(rel), off, self.data(min(BLOCK * r.randint(1, 3), size - off)))
            else:
                off = r.randrange(size + 1)
                T.patch_file(self.p(rel), off, self.data(r.randint(1, 3000)))

    def step(self):
        """One random change to the tree."""
        r = self.rng
        self.refresh()
        k = r.random()
        if not self.files or k < 0.15:
            return self.new_file()
        rel = r.choice(self.files)
        full = self.p(rel)
        if k < 0.5:
            self.patch(rel)
        elif k < 0.6:
            with open(full, "ab") as f:
                f.write(self.data(r.randint(1, 50000)))
        elif k < 0.66 and self.truncate:
            os.truncate(full, r.randrange(os.path.getsize(full) + 1))
        elif k < 0.74:
            os.unlink(full)
        elif k < 0.8:  # rename (same inode: metamori keeps the block history)
            d = r.choice(self.dirs())
            os.rename(full, self.p(os.path.join(d, self.name()) if d else self.name()))
        elif k < 0.85:  # a copy: deduplicated
            with open(full, "rb") as f:
                T.write_file(self.p(self.name(".copy")), f.read())
        elif k < 0.9:
            d = self.p(self.name(".d"))
            os.mkdir(d)
            T.write_file(os.path.join(d, "inner"), self.data(r.choice([100, 9000, 70000])))
        elif k < 0.93:
            ds = [d for d in self.dirs() if d]
            if ds:
                T.rmtree(self.p(r.choice(ds)))
        elif k < 0.96:
            link = self.p(self.name(".lnk"))
            os.symlink(r.choice(["a", "../x", rel]), link)
        else:
            os.chmod(full, r.choice([0o644, 0o600, 0o755, 0o640]))

    def checkpoint(self, steps=None):
        for _ in range(self.rng.randint(1, 4) if steps is None else steps):
            self.step()
        cid = T.checkpoint(self.root)
        self.manifests[cid] = T.manifest(self.root)
        return cid

    def branch_from(self, cid):
        """In-place restore of cid: the next checkpoint starts a branch."""
        T.restore(self.root, cid)
        T.assert_same(self.manifests[cid], T.manifest(self.root), "in-place restore of %d" % cid)

    def grow(self, n, branch_p=0.15):
        """n checkpoints, sometimes branching from an existing one."""
        for _ in range(n):
            ids = ids_in_log(self.root)
            if len(ids) > 2 and self.rng.random() < branch_p:
                self.branch_from(self.rng.choice(ids[:-1]))
            self.checkpoint()


def log(root):
    return T.log_json(root)


def ids_in_log(root):
    return [c["id"] for c in log(root)]


def head_of(root):
    for c in log(root):
        if c["head"]:
            return c["id"]
    return 0


def tags(root):
    out = {}
    for line in T.run(["-C", root, "tag"]).stdout.splitlines():
        name, cid = line.split()
        out[name] = int(cid)
    return out


def expected_keep(root, keep_last=0, hourly=0, daily=0, every_ns=0, keep=()):
    """What the documented policy keeps (README 'prune'), from log --json."""
    cks = log(root)
    ids = [c["id"] for c in cks]
    keepset = set(ids[len(ids) - keep_last:]) if keep_last else set()

    def buckets(count, fn):
        last, seen = None, 0
        for c in reversed(cks):
            if seen >= count:
                break
            b = fn(c["time_ns"])
            if seen == 0 or b != last:
                keepset.add(c["id"])
                last = b
                seen += 1

    buckets(hourly, lambda t: t // 1000000000 // 3600)

    def day(t):
        tm = time.localtime(t // 1000000000)
        return tm.tm_year * 1000 + tm.tm_yday - 1

    buckets(daily, day)
    if every_ns:
        last = None
        for i, c in enumerate(reversed(cks)):
            b = c["time_ns"] // every_ns
            if i == 0 or b != last:
                keepset.add(c["id"])
            last = b
    keepset |= set(keep)
    keepset |= set(tags(root).values())
    keepset.add(head_of(root))
    return keepset & set(ids)


def prune(root, args, env=None):
    """Runs prune; returns (dropped ids, stdout)."""
    out = T.run(["-C", root, "prune"] + list(args), env=env).stdout
    m = re.search(r"(?:would drop|dropped) \d+ checkpoints?: ([\d ]+)", out)
    dropped = [int(x) for x in m.group(1).split()] if m else []
    if "..." in out:
        raise T.Failure("prune listing truncated; test histories must stay under 50 drops")
    return dropped, out


def prune_json(root, args, env=None):
    """Runs prune --json; returns its figures (a dict)."""
    return json.loads(T.run(["-C", root, "prune", "--json"] + list(args), env=env).stdout)


def restore_check(root, manifests, ids, tmp):
    """Every id restores (--to a fresh dir) exactly as its manifest."""
    for cid in ids:
        dst = os.path.join(tmp, "r%d" % cid)
        T.restore(root, cid, to=dst)
        T.assert_same(manifests[cid], T.manifest(dst), "checkpoint %d restored --to" % cid)
        T.rmtree(dst)


EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def store_bytes(root):
    """mtmtest.store_state, where an empty WAL and no WAL are the same bytes
    (SQLite deletes an empty WAL when its last connection closes)."""
    st = T.store_state(root)
    if st.get("index.db-wal") == EMPTY:
        del st["index.db-wal"]
    return st


def verify_data(root):
    p = T.run(["-C", root, "verify", "--data"], check=False)
    if p.returncode != 0 or not p.stdout.startswith("store OK"):
        raise T.Failure("verify --data failed (%d):\n%s%s" % (p.returncode, p.stdout, p.stderr))


# -- reading the index (docs/FORMAT.md sections 3 and 4) ------------------------

def space(root):
    """Returns a dict: pack_bytes (pack files on disk), chunk_bytes (all chunk
    records the index names), visible (records named by a visible block row of
    a visible file at some checkpoint), strict (the same, only blocks inside
    the file's size), dead (pack.dead), packs (files)."""
    con = sqlite3.connect("file:%s?mode=ro" % store_path(root, "index.db"), uri=True)
    con.text_factory = bytes
    try:
        br = {b: (pb, fork) for b, pb, fork in con.execute("SELECT id, parent_branch, fork FROM branch")}
        ck = dict(con.execute("SELECT id, branch FROM checkpoint"))
        entries = {}
        # entry rows are those of entry and entry_log together (FORMAT.md 3.4.1)
        for path, b, c, kind, size, fid in con.execute("SELECT path, branch, ckpt, kind, size, file_id FROM entry UNION ALL "
                                                       "SELECT path, branch, ckpt, kind, size, file_id FROM entry_log"):
            entries.setdefault(path, []).append((c, b, kind, size, fid))
        blocks = {}
        # block rows are those of block and block_log together (FORMAT.md 3.5.1)
        for fid, blk, b, c, chunk in con.execute("SELECT file_id, blkno, branch, ckpt, chunk FROM block UNION ALL "
                                                 "SELECT file_id, blkno, branch, ckpt, chunk FROM block_log"):
            blocks.setdefault(fid, {}).setdefault(blk, []).append((c, b, chunk))
        clen = dict(con.execute("SELECT id, 40 + clen FROM chunk"))
        plen = dict(con.execute("SELECT id, plen FROM chunk"))
        used = {}
        for chunk, boff in con.execute("SELECT chunk, boff FROM block WHERE chunk != 0 UNION "
                                       "SELECT chunk, boff FROM block_log WHERE chunk != 0"):
            used.setdefault(chunk, set()).add(boff)
        dead = con.execute("SELECT COALESCE(SUM(dead), 0) FROM pack").fetchone()[0]
    finally:
        con.close()

    def lineage(k):
        out, b, mx = {}, ck[k], k
        while b > 0:
            out[b] = mx
            mx = br[b][1]
            b = br[b][0]
        return out

    def visible(rows, lin):
        best = None
        for row in rows:
            c, b = row[0], row[1]
            if b in lin and c <= lin[b] and (best is None or c > best[0]):
                best = row
        return best

    vis, strict = set(), set()
    for k in ck:
        lin = lineage(k)
        for path, rows in entries.items():
            e = visible(rows, lin)
            if not e or e[2] != 1:
                continue
            size, fid = e[3], e[4]
            nblk = (size + BLOCK - 1) // BLOCK
            for blk, brows in blocks.get(fid, {}).items():
                r = visible(brows, lin)
                if r and r[2]:
                    vis.add(r[2])
                    if blk < nblk:
                        strict.add(r[2])
    packs = [f for f in os.listdir(store_path(root, "packs"))]
    return {
        "pack_bytes": sum(os.path.getsize(store_path(root, "packs", f)) for f in packs),
        "packs": len(packs),
        "chunk_bytes": sum(clen.values()),
        "visible": sum(clen[c] for c in vis),
        "strict": sum(clen[c] for c in strict),
        "dead": dead,
        # plain bytes of the chunks, and of the blocks in them some row uses
        "plain": sum(plen.values()),
        "used_plain": sum(min(BLOCK, plen[c] - b * BLOCK) for c, bs in used.items() for b in bs),
    }


def statcache_current(root):
    """Paths whose stat cache row names the entry version visible at the head
    (FORMAT 3.9: only those rows let a checkpoint skip the file)."""
    con = sqlite3.connect("file:%s?mode=ro" % store_path(root, "index.db"), uri=True)
    con.text_factory = bytes
    try:
        head = con.execute("SELECT value FROM meta WHERE key = 'head'").fetchone()[0]
        br = {b: (pb, fork) for b, pb, fork in con.execute("SELECT id, parent_branch, fork FROM branch")}
        b, mx, lin = con.execute("SELECT branch FROM checkpoint WHERE id = ?", (head,)).fetchone()[0], head, {}
        while b > 0:
            lin[b] = mx
            mx, b = br[b][1], br[b][0]
        out = set()
        for path, ver in con.execute("SELECT path, ver FROM statcache").fetchall():
            best = None
            for rb, rc in con.execute("SELECT branch, ckpt FROM entry WHERE path = CAST(?1 AS TEXT) UNION ALL "
                                      "SELECT branch, ckpt FROM entry_log WHERE path = CAST(?1 AS TEXT)", (path,)):
                if rb in lin and rc <= lin[rb] and (best is None or rc > best):
                    best = rc
            if best == ver:
                out.add(path)
        return out
    finally:
        con.close()


def chunk_records(root):
    """{chunk id: record size (40 + clen)} from the index."""
    con = sqlite3.connect("file:%s?mode=ro" % store_path(root, "index.db"), uri=True)
    try:
        return dict(con.execute("SELECT id, 40 + clen FROM chunk"))
    finally:
        con.close()


def freed_records(before, root):
    """Bytes and count of the chunk records (sizes as in before) gone since."""
    after = chunk_records(root)
    gone = [c for c in before if c not in after]
    return sum(before[c] for c in gone), len(gone)


def check_space(root, strict=False, slack=0.05, compacted=False):
    """The store holds no chunk that no checkpoint references, and its packs
    are within slack of the referenced records. compacted: gc rewrote every
    pack with any dead byte, so no chunk holds a block no row uses."""
    s = space(root)
    if compacted and s["plain"] != s["used_plain"]:
        raise T.Failure("chunks hold %d plain bytes, rows use %d of them" % (s["plain"], s["used_plain"]))
    if s["chunk_bytes"] != s["visible"]:
        raise T.Failure("index names %d bytes of chunks, but the checkpoints reference only %d"
                        % (s["chunk_bytes"], s["visible"]))
    ref = s["strict"] if strict else s["visible"]
    limit = ref * (1 + slack) + 16 * s["packs"]
    if s["pack_bytes"] > limit:
        raise T.Failure("packs hold %d bytes for %d referenced (%s): more than %.0f%% over"
                        % (s["pack_bytes"], ref, "strict" if strict else "visible", slack * 100))
    return s
