#!/usr/bin/env python3
"""Writes the committed seed corpus of the fuzz targets (fuzz/corpus/<target>/).

usage: make_corpus.py METAMORI   (the CLI: chunk records are cut from a real pack)
"""
import os
import random
import sqlite3
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def out(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def chunks(metamori):
    rng = random.Random(1)
    t = tempfile.mkdtemp()
    with open(os.path.join(t, "text"), "wb") as f:
        f.write(b"compressible words and more words\n" * 3000)
    with open(os.path.join(t, "rand"), "wb") as f:
        f.write(rng.randbytes(70000))
    with open(os.path.join(t, "small"), "wb") as f:
        f.write(b"x")
    subprocess.run([metamori, "-C", t, "init"], check=True, capture_output=True)
    subprocess.run([metamori, "-C", t, "checkpoint", "-q"], check=True, capture_output=True)
    db = sqlite3.connect(os.path.join(t, ".metamori", "index.db"))
    rows = db.execute("SELECT pack, off, clen, codec, plen FROM chunk ORDER BY codec, plen").fetchall()
    db.close()
    with open(os.path.join(t, ".metamori", "packs", "00000001.pack"), "rb") as f:
        pack = f.read()
    seen = set()
    for pack_id, off, clen, codec, plen in rows:
        key = (codec, plen == 65536, plen < 100)
        if key in seen:
            continue
        seen.add(key)
        rec = pack[off:off + 40 + clen]
        out("chunk", "codec%d-plen%d" % (codec, plen), b"\x00" + rec)
        out("chunk", "codec%d-plen%d-fix" % (codec, plen), b"\x03" + rec)
    rec = pack[rows[0][1]:rows[0][1] + 40 + rows[0][2]]
    out("chunk", "truncated", b"\x00" + rec[:len(rec) // 2])
    out("chunk", "header-only", b"\x01" + rec[:40])
    out("chunk", "empty", b"")
    subprocess.run(["rm", "-rf", t])


def intents():
    for name, data in [("seven", b"7\n"), ("one", b"1"), ("empty", b""), ("letters", b"abc\n"),
                       ("negative", b"-3\n"), ("huge", b"99999999999999999999\n"), ("junk", b"12 junk"),
                       ("zero", b"0\n"), ("long", b"1" * 64)]:
        out("intent", name, data)


def num(v):
    """fuzz_index.c's number: a selector byte < 0xf0 gives sel % 12; else 8 bytes."""
    if 0 <= v < 12:
        return bytes([v])
    return b"\xf0" + struct.pack(">q", v)


def blob(b):
    return bytes([len(b)]) + b


def index_rows():
    ck = lambda i, parent, br: b"\x00" + num(i) + num(parent) + num(br)
    br = lambda i, parent, fork: b"\x01" + num(i) + num(parent) + num(fork)

    def ent(path, branch, ckpt, kind, mode, size, file_id, target=None):
        return (b"\x02" + blob(path) + num(branch) + num(ckpt) + num(kind) + num(mode) + num(0) + num(0)
                + num(size) + num(0) + num(file_id) + (blob(target) if target is not None else b"\xff"))

    blk = lambda f, n, b, c, h, ch, bo: b"\x03" + num(f) + num(n) + num(b) + num(c) + num(h) + num(ch) + num(bo)
    chunk = lambda i, pack, off, clen, plen: (b"\x04" + num(i) + blob(bytes(range(16))) + num(pack) + num(off)
                                              + num(clen) + num(plen) + num(0))
    pack = lambda i, size: b"\x05" + num(i) + num(size) + num(0)
    good = (br(1, 0, 0) + ck(1, 0, 1) + ck(2, 1, 1) + ent(b"a", 1, 1, 1, 420, 5000, 1) + ent(b"d", 1, 1, 2, 493, 0, 0)
            + ent(b"d/l", 1, 2, 3, 511, 0, 0, b"../a") + blk(1, 0, 1, 1, 7, 1, 0) + blk(1, 1, 1, 2, 9, 0, 0)
            + chunk(1, 1, 16, 100, 5000) + pack(1, 4096))
    out("index", "history", good)
    out("index", "branches", good + br(2, 1, 1) + ck(3, 1, 2) + ent(b"a", 2, 3, 0, 0, 0, 0))
    out("index", "dotdot", br(1, 0, 0) + ck(1, 0, 1) + ent(b"../evil", 1, 1, 1, 420, 10, 1))
    out("index", "nul", br(1, 0, 0) + ck(1, 0, 1) + ent(b"a\x00b", 1, 1, 1, 420, 10, 1))
    out("index", "orphan", br(1, 0, 0) + ck(1, 0, 1) + ent(b"x/y", 1, 1, 1, 420, 10, 1))
    out("index", "huge", br(1, 0, 0) + ck(1, 0, 1) + ent(b"h", 1, 1, 1, 420, 1 << 62, 1) + blk(1, 1 << 40, 1, 1, 0, 1, 9))
    out("index", "loop", br(1, 1, 1) + br(2, 3, 1) + ck(1, 1, 1) + ck(2, 2, 2))


def ignores():
    pats = b"# comment\n*.log\n!keep.log\nbuild/\n/anchored\ndocs/**/*.tmp\n[abc]?.o\n\\#hash\n**/cache/**\n"
    paths = b"a.log\nkeep.log\nbuild\nsub/build\nanchored\nx/anchored\ndocs/a/b/c.tmp\nb1.o\n#hash\nq/cache/z\n"
    out("ignore", "gitignore", pats + b"\0" + paths)
    out("ignore", "stars", b"a**b**c**d**e\n*?*?*?*?\n\0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab\n")
    out("ignore", "classes", b"[!a-z]\n[]]\n[\\]\n[a-\n\\\n\0a\n]\nZ\n-\n")
    out("ignore", "empty", b"")


if __name__ == "__main__":
    chunks(sys.argv[1])
    intents()
    index_rows()
    ignores()
