#!/usr/bin/env python3
"""read_store.py — an independent reader of Metamori stores, written from
docs/FORMAT.md alone (it shares no code with Metamori). It exists to check that
the document is complete and right: if this script and `metamori restore --to`
disagree, one of them, or the document, is wrong.

    read_store.py ROOT log                 list checkpoints (FORMAT.md 3.2, 3.3)
    read_store.py ROOT ls K                the tree at checkpoint K (4)
    read_store.py ROOT cat K PATH          a file's bytes at K, to stdout (4.3, 5, 6)
    read_store.py ROOT extract K DEST      the whole tree at K into a new DEST

ROOT is the tracked directory (the one holding .metamori). Checks that need
XXH3 (the record check, the chunk checksum, block hashes) use libxxhash
through ctypes, else the xxhsum/xxh128sum commands (Debian package xxhash;
they cannot compute the seeded record check, which is then skipped), else are
skipped with a note on stderr. zstd data is decompressed with libzstd
through ctypes, else the zstd command. Only the Python standard library is
needed otherwise.
"""
import ctypes
import ctypes.util
import os
import shutil
import sqlite3
import stat
import struct
import subprocess
import sys

BLOCK = 4096
CHUNK_MAX_PLAIN = 16 * BLOCK
APPLICATION_ID = 0x4D544D52
FORMAT_VERSION = 11  # root_mode (3.2, format 9) and the root's owner, mtime and attributes (format 11) are given to the extracted root; entry_log (3.4.1, format 7) is read with entry; regions (3.10) are not part of the tree, blockhash and blockhash_delta (3.11, format 10's) and statcache (3.9, its st blob format 8's) are caches, tracked and pause_ns (3.2, format 6) are statistics: this reader ignores them
KIND_NONE, KIND_FILE, KIND_DIR, KIND_SYMLINK = 0, 1, 2, 3
KIND_FIFO, KIND_SOCKET, KIND_CHR, KIND_BLK, KIND_LINK = 4, 5, 6, 7, 8
NODE_TYPE = {KIND_FIFO: stat.S_IFIFO, KIND_SOCKET: stat.S_IFSOCK, KIND_CHR: stat.S_IFCHR, KIND_BLK: stat.S_IFBLK}


class Damaged(Exception):
    pass


# ---------------------------------------------------------------- hashes, zstd

def _load(names):
    for n in names:
        try:
            return ctypes.CDLL(n)
        except OSError:
            continue
    found = ctypes.util.find_library(names[0].split(".so")[0][3:])
    if found:
        try:
            return ctypes.CDLL(found)
        except OSError:
            pass
    return None


class _XXH128(ctypes.Structure):
    _fields_ = [("low64", ctypes.c_uint64), ("high64", ctypes.c_uint64)]


class Hasher:
    """XXH3-64 and canonical XXH3-128, or None when neither library nor tool exists."""

    def __init__(self):
        self.lib = _load(["libxxhash.so.0", "libxxhash.so"])
        if self.lib:
            self.lib.XXH3_64bits.restype = ctypes.c_uint64
            self.lib.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
            self.lib.XXH3_64bits_withSeed.restype = ctypes.c_uint64
            self.lib.XXH3_64bits_withSeed.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64]
            self.lib.XXH3_128bits.restype = _XXH128
            self.lib.XXH3_128bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
            self.how = "libxxhash"
        elif shutil.which("xxhsum") and shutil.which("xxh128sum"):
            self.how = "xxhsum"
        else:
            self.how = None

    def h64(self, data):
        if self.how == "libxxhash":
            return self.lib.XXH3_64bits(data, len(data))
        out = subprocess.run(["xxhsum", "-H3", "-"], input=data, capture_output=True, check=True).stdout
        # xxhsum 0.8 prints "XXH3 (stdin) = <hex>" for -H3; older ones "<hex>  stdin"
        text = out.decode().strip()
        hexpart = text.split("=")[-1].strip() if "=" in text else text.split()[0]
        return int(hexpart, 16)

    def record_check(self, header32, data):
        """FORMAT.md 6: XXH3-64 of the stored data, seeded with XXH3-64 of the
        header's first 32 bytes. xxhsum has no seed option: None without libxxhash."""
        if self.how != "libxxhash":
            return None
        return self.lib.XXH3_64bits_withSeed(data, len(data), self.lib.XXH3_64bits(header32, 32))

    def h128(self, data):
        """Canonical form: high 64 bits big-endian, then low 64 bits big-endian."""
        if self.how == "libxxhash":
            r = self.lib.XXH3_128bits(data, len(data))
            return struct.pack(">QQ", r.high64, r.low64)
        out = subprocess.run(["xxh128sum", "-"], input=data, capture_output=True, check=True).stdout
        return bytes.fromhex(out.decode().split()[0])


class Zstd:
    def __init__(self):
        self.lib = _load(["libzstd.so.1", "libzstd.so"])
        if self.lib:
            self.lib.ZSTD_decompress.restype = ctypes.c_size_t
            self.lib.ZSTD_decompress.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]
            self.lib.ZSTD_isError.restype = ctypes.c_uint
            self.lib.ZSTD_isError.argtypes = [ctypes.c_size_t]

    def decompress(self, data, plen):
        if self.lib:
            buf = ctypes.create_string_buffer(CHUNK_MAX_PLAIN)
            n = self.lib.ZSTD_decompress(buf, CHUNK_MAX_PLAIN, data, len(data))
            if self.lib.ZSTD_isError(n):
                raise Damaged("chunk does not decompress")
            return buf.raw[:n]
        if not shutil.which("zstd"):
            raise SystemExit("read_store: need libzstd.so.1 or the zstd command for compressed chunks")
        p = subprocess.run(["zstd", "-d", "-c", "-q"], input=data, capture_output=True)
        if p.returncode != 0:
            raise Damaged("chunk does not decompress")
        return p.stdout


# ---------------------------------------------------------------- the store

def path_is_safe(p):
    """FORMAT.md 3.4: relative, no empty/./.. component, no NUL, length limits."""
    if not p or len(p) > 4095 or b"\0" in p or p.startswith(b"/"):
        return False
    return all(c not in (b"", b".", b"..") and len(c) <= 255 for c in p.split(b"/"))


def parse_xattrs(blob):
    """FORMAT.md 3.4: u8 name length, name, u32 LE value length, value; sorted."""
    out, off = [], 0
    blob = blob or b""
    while off < len(blob):
        nl = blob[off]
        name = blob[off + 1:off + 1 + nl]
        vl = struct.unpack_from("<I", blob, off + 1 + nl)[0]
        val = blob[off + 5 + nl:off + 5 + nl + vl]
        if nl == 0 or b"\0" in name or len(val) != vl or (out and out[-1][0] >= name):
            raise Damaged("bad extended attributes")
        out.append((name, val))
        off += 5 + nl + vl
    return out


class Store:
    def __init__(self, root):
        self.root = os.path.abspath(root)
        db = os.path.join(self.root, ".metamori", "index.db")
        if not os.path.isfile(db):
            raise SystemExit("read_store: %s: no index.db" % db)
        # read-only; one transaction, so one consistent snapshot (FORMAT.md 2)
        self.db = sqlite3.connect("file:%s?mode=ro" % db, uri=True, isolation_level=None)
        self.db.text_factory = bytes  # paths are raw file-name bytes
        app = self.db.execute("PRAGMA application_id").fetchone()[0]
        ver = self.db.execute("PRAGMA user_version").fetchone()[0]
        if app != APPLICATION_ID:
            raise SystemExit("read_store: not a metamori index (application_id %#x)" % app)
        if ver != FORMAT_VERSION:
            raise SystemExit("read_store: store format %d; this reader knows %d" % (ver, FORMAT_VERSION))
        self.db.execute("BEGIN")
        self.branches = {bid: (parent, fork) for bid, parent, fork in
                         self.db.execute("SELECT id, parent_branch, fork FROM branch")}
        self.packs = dict(self.db.execute("SELECT id, size FROM pack"))
        self.hasher = Hasher()
        self.zstd = Zstd()
        self.unchecked = 0
        if not self.hasher.how:
            print("read_store: no libxxhash or xxhsum: hash checks skipped", file=sys.stderr)

    def meta(self, key):
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def checkpoints(self):
        return self.db.execute("SELECT id, parent, branch, time_ns, message, files_added, files_changed,"
                               " files_removed, bytes_changed, bytes_stored, entries, tree_bytes"
                               " FROM checkpoint ORDER BY id").fetchall()

    # FORMAT.md 4.1
    def lineage(self, k):
        row = self.db.execute("SELECT branch FROM checkpoint WHERE id=?", (k,)).fetchone()
        if not row:
            raise SystemExit("read_store: checkpoint %d: no such checkpoint" % k)
        b, mx, steps = row[0], k, {}
        while b > 0:
            if b in steps or b not in self.branches:
                raise Damaged("branch %d is damaged" % b)
            steps[b] = mx
            parent, fork = self.branches[b]
            if parent >= b:
                raise Damaged("branch %d has a bad parent" % b)
            mx, b = fork, parent
        return steps

    @staticmethod
    def visible(lin, branch, ckpt):
        return branch in lin and ckpt <= lin[branch]

    # FORMAT.md 4.2: for each path, the visible row with the greatest ckpt
    # (3.4.1: rows merged into entry or still in entry_log mean the same)
    def tree(self, k):
        lin = self.lineage(k)
        best = {}
        cols = "path, branch, ckpt, kind, mode, uid, gid, size, mtime_nsec, file_id, target, mtime_s, rdev, xattrs"
        for row in self.db.execute("SELECT %s FROM entry UNION ALL SELECT %s FROM entry_log" % (cols, cols)):
            path, branch, ckpt = row[0], row[1], row[2]
            if self.visible(lin, branch, ckpt) and (path not in best or ckpt > best[path][2]):
                best[path] = row
        out = []
        for path in sorted(best):  # byte order: parents before children
            row = best[path]
            if row[3] == KIND_NONE:
                continue
            if not path_is_safe(path):
                raise Damaged("unsafe path %r" % path)
            if not KIND_FILE <= row[3] <= KIND_LINK or not 0 <= row[8] < 10**9:
                raise Damaged("bad kind or time for %r" % path)
            out.append(dict(path=path, ver=row[2], kind=row[3], mode=row[4], uid=row[5], gid=row[6],
                            size=row[7], mtime_ns=row[11] * 10**9 + row[8], file_id=row[9], target=row[10],
                            rdev=row[12], xattrs=parse_xattrs(row[13])))
        files = {e["path"] for e in out if e["kind"] == KIND_FILE}
        for e in out:  # FORMAT.md 3.4: a hard link names a regular file of the same tree
            if e["kind"] == KIND_LINK and (not path_is_safe(e["target"] or b"") or e["target"] not in files):
                raise Damaged("hard link %r names no file" % e["path"])
        return out, lin

    # FORMAT.md 3.5, 3.5.1 / 4.3: visible block map of one file (rows merged
    # into block or still in block_log mean the same)
    def block_map(self, file_id, lin):
        best = {}
        for blkno, branch, ckpt, h, chunk, boff in self.db.execute(
                "SELECT blkno, branch, ckpt, hash, chunk, boff FROM block WHERE file_id=?1 UNION ALL "
                "SELECT blkno, branch, ckpt, hash, chunk, boff FROM block_log WHERE file_id=?1", (file_id,)):
            if self.visible(lin, branch, ckpt) and (blkno not in best or ckpt > best[blkno][0]):
                best[blkno] = (ckpt, h & 0xFFFFFFFFFFFFFFFF, chunk, boff)
        return best

    # FORMAT.md 3.6, 5, 6
    def chunk(self, chunk_id, cache={}):
        if chunk_id in cache:
            return cache[chunk_id]
        row = self.db.execute("SELECT hash, pack, off, clen, plen, codec FROM chunk WHERE id=?",
                              (chunk_id,)).fetchone()
        if not row:
            raise Damaged("chunk %d is referenced but missing" % chunk_id)
        want_hash, pack, off, clen, plen, codec = row
        if pack not in self.packs or off < 16 or off + 40 + clen > self.packs[pack]:
            raise Damaged("chunk %d lies outside its pack's committed size" % chunk_id)
        name = os.path.join(self.root, ".metamori", "packs", "%08d.pack" % pack)
        with open(name, "rb") as f:
            head = f.read(16)
            if head[:8] != b"MTMPACK1" or struct.unpack("<Q", head[8:16])[0] != pack:
                raise Damaged("%s: bad pack header" % name)
            f.seek(off)
            rec = f.read(40 + clen)
        if len(rec) < 40 + clen:
            raise Damaged("chunk %d is truncated" % chunk_id)
        magic, r_codec, reserved, r_plen, r_clen, r_hash, check = struct.unpack("<4sB3sII16sQ", rec[:40])
        if magic != b"MTMC":
            raise Damaged("chunk %d: bad magic" % chunk_id)
        if r_codec > 1 or not 1 <= r_plen <= CHUNK_MAX_PLAIN or (r_codec == 0 and r_clen != r_plen):
            raise Damaged("chunk %d: impossible header" % chunk_id)
        want_check = self.hasher.record_check(rec[:32], rec[40:40 + r_clen])
        if want_check is not None and want_check != check:
            raise Damaged("chunk %d: record check mismatch" % chunk_id)
        if (r_codec, r_plen, r_clen, r_hash) != (codec, plen, clen, bytes(want_hash)):
            raise Damaged("chunk %d: record does not match the index" % chunk_id)
        data = rec[40:40 + r_clen]
        plain = data if r_codec == 0 else self.zstd.decompress(data, r_plen)
        if len(plain) != r_plen:
            raise Damaged("chunk %d: wrong plain length" % chunk_id)
        if self.hasher.how:
            if self.hasher.h128(plain) != r_hash:
                raise Damaged("chunk %d: checksum mismatch" % chunk_id)
        else:
            self.unchecked += 1
        if len(cache) > 64:
            cache.clear()
        cache[chunk_id] = plain
        return plain

    def file_bytes(self, e, lin):
        """Yields (offset, bytes) of the data blocks of file entry e; the rest is zeros."""
        size = e["size"]
        nblocks = (size + BLOCK - 1) // BLOCK
        bmap = self.block_map(e["file_id"], lin)
        for blkno in sorted(bmap):
            if blkno >= nblocks:
                continue  # stale rows of a longer earlier version
            _, h, chunk, boff = bmap[blkno]
            n = min(BLOCK, size - blkno * BLOCK)
            if chunk == 0:
                data = bytes(n)
            else:
                plain = self.chunk(chunk)
                if not 0 <= boff < 16 or boff * BLOCK >= len(plain):
                    raise Damaged("file %d block %d: outside its chunk" % (e["file_id"], blkno))
                data = plain[boff * BLOCK:(boff + 1) * BLOCK][:n]
                data += bytes(n - len(data))
            if self.hasher.how and self.hasher.h64(data + bytes(BLOCK - len(data))) != h:
                raise Damaged("file %d block %d: hash mismatch" % (e["file_id"], blkno))
            yield blkno * BLOCK, data


# ---------------------------------------------------------------- commands

def cmd_log(st):
    head = st.meta("head")
    print("head %d, format %d" % (head, st.meta("format")))
    for (cid, parent, branch, t, msg, fa, fc, fr, bc, bs, ent, tb) in st.checkpoints():
        print("%c %-4d parent %-4d branch %-3d +%d ~%d -%d  %d entries, %d bytes  %s" % (
            "*" if cid == head else " ", cid, parent, branch, fa, fc, fr, ent, tb,
            msg.decode("utf-8", "replace")))


def cmd_ls(st, k):
    tree, _ = st.tree(k)
    for e in tree:
        kind = {KIND_FILE: "f", KIND_DIR: "d", KIND_SYMLINK: "l", KIND_FIFO: "p", KIND_SOCKET: "s", KIND_CHR: "c",
                KIND_BLK: "b", KIND_LINK: "h"}[e["kind"]]
        extra = (" -> " + e["target"].decode("utf-8", "replace")) if e["kind"] in (KIND_SYMLINK, KIND_LINK) else ""
        print("%s %04o %5d %5d %10d %s%s" % (kind, e["mode"], e["uid"], e["gid"], e["size"],
                                            e["path"].decode("utf-8", "replace"), extra))


def cmd_cat(st, k, path):
    tree, lin = st.tree(k)
    e = next((x for x in tree if x["path"] == os.fsencode(path)), None)
    if not e or e["kind"] != KIND_FILE:
        raise SystemExit("read_store: %s: not a regular file at checkpoint %d" % (path, k))
    out = sys.stdout.buffer
    pos = 0
    for off, data in st.file_bytes(e, lin):
        out.write(bytes(off - pos))
        out.write(data)
        pos = off + len(data)
    out.write(bytes(e["size"] - pos))


def cmd_extract(st, k, dest):
    tree, lin = st.tree(k)
    root = st.db.execute("SELECT root_mode, root_uid, root_gid, root_mtime_s, root_mtime_nsec, root_xattrs"
                         " FROM checkpoint WHERE id=?", (k,)).fetchone()
    os.makedirs(dest, exist_ok=False)
    dest_b = os.fsencode(dest)
    for e in tree:
        full = os.path.join(dest_b, e["path"])
        if e["kind"] == KIND_DIR:
            os.mkdir(full, 0o700)
        elif e["kind"] == KIND_SYMLINK:
            os.symlink(e["target"], full)
        elif e["kind"] == KIND_LINK:
            continue  # once every file is there
        elif e["kind"] in NODE_TYPE:
            os.mknod(full, NODE_TYPE[e["kind"]] | 0o600, e["rdev"])
        else:
            fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                os.ftruncate(fd, e["size"])
                for off, data in st.file_bytes(e, lin):
                    os.pwrite(fd, data, off)
            finally:
                os.close(fd)
    # metadata last, deepest first (creating entries changes a directory's
    # mtime); owner, then attributes (a chown clears capabilities), then mode
    for e in reversed(tree):
        full = os.path.join(dest_b, e["path"])
        if e["kind"] == KIND_LINK:
            continue
        ns = (e["mtime_ns"], e["mtime_ns"])
        if os.geteuid() == 0:
            os.lchown(full, e["uid"], e["gid"])
        for name, val in e["xattrs"]:
            os.setxattr(full, name, val, follow_symlinks=False)
        if e["kind"] != KIND_SYMLINK:
            os.chmod(full, e["mode"])
        os.utime(full, ns=ns, follow_symlinks=False)
    for e in tree:  # other names of hard-linked files, as links to the first
        if e["kind"] == KIND_LINK:
            parent = os.path.dirname(os.path.join(dest_b, e["path"]))
            st = os.lstat(parent)
            os.link(os.path.join(dest_b, e["target"]), os.path.join(dest_b, e["path"]))
            os.utime(parent, ns=(st.st_atime_ns, st.st_mtime_ns))
    root_mode, root_uid, root_gid, mtime_s, mtime_nsec, xattrs = root
    if root_uid is not None:  # (NULL: not recorded, format 10 and before)
        if os.geteuid() == 0:
            os.chown(dest_b, root_uid, root_gid)
        for name, val in parse_xattrs(xattrs):
            os.setxattr(dest_b, name, val)
    if root_mode is not None:  # (NULL: not recorded, format 8 and before)
        os.chmod(dest_b, root_mode)
    if root_uid is not None:
        ns = mtime_s * 10**9 + mtime_nsec
        os.utime(dest_b, ns=(ns, ns))


def main(argv):
    if len(argv) < 3 or argv[2] not in ("log", "ls", "cat", "extract"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    st = Store(argv[1])
    try:
        if argv[2] == "log":
            cmd_log(st)
        elif argv[2] == "ls" and len(argv) == 4:
            cmd_ls(st, int(argv[3]))
        elif argv[2] == "cat" and len(argv) == 5:
            cmd_cat(st, int(argv[3]), argv[4])
        elif argv[2] == "extract" and len(argv) == 5:
            cmd_extract(st, int(argv[3]), argv[4])
        else:
            print(__doc__.split("\n\n")[1], file=sys.stderr)
            return 2
    except Damaged as e:
        print("read_store: damaged: %s" % e, file=sys.stderr)
        return 1
    if st.unchecked:
        print("read_store: %d chunks read without checksum checks" % st.unchecked, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
