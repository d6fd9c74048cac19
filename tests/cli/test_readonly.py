#!/usr/bin/env python3
"""Reading a store never writes to it (issue 20): on a read-only file system
and on a full disk, log, status, diff, verify (--data), ls, cat, du and
restore --to elsewhere work and leave every byte of .metamori as it was;
commands that write fail with one clear line. Needs a tmpfs of our own
(root): exit 77 when it cannot be mounted."""
import hashlib
import json
import os
import sqlite3
import subprocess
import sys

import mtmtest as T
from clilib import as_json, expect, ok, raw

WRITE_REFUSED = "the store cannot be written"


def sh(args):
    return subprocess.run(args, capture_output=True, text=True)


def store_bytes(root):
    out = {}
    base = os.path.join(root, ".metamori")
    for d, _, fs in os.walk(base):
        for f in fs:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, base)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def readers_work(root, what):
    before = store_bytes(root)
    log = as_json(["-C", root, "log", "--json"])
    expect([e["id"] for e in log] == [1, 2], "%s: log %r" % (what, log))
    expect(b"* 2" in ok(["-C", root, "log"]), what + ": log text")
    st = as_json(["-C", root, "status", "--json"])
    expect([(c["kind"], c["path"]) for c in st["changes"]] == [("M", "a")], "%s: status %r" % (what, st))
    d = as_json(["-C", root, "diff", "--json", "1", "2"])
    expect([(c["kind"], c["path"]) for c in d["changes"]] == [("M", "a"), ("A", "b")], "%s: diff %r" % (what, d))
    v = as_json(["-C", root, "verify", "--data", "--json"])
    expect(v["ok"] and v["checkpoints"] == 2, "%s: verify %r" % (what, v))
    expect(ok(["-C", root, "verify"]).startswith(b"store OK"), what + ": verify")
    expect(ok(["-C", root, "cat", "1", "a"]) == b"one\n", what + ": cat")
    du = as_json(["-C", root, "du", "--json"])
    expect([e["id"] for e in du["checkpoints"]] == [1, 2] and du["plain"] > 10000, "%s: du %r" % (what, du))
    expect(b"logical" in ok(["-C", root, "du"]), what + ": du text")
    to = os.path.join(T.tempdir("mtm-ro-to-"), "t")
    ok(["-C", root, "restore", "1", "--to", to])
    with open(os.path.join(to, "a"), "rb") as f:
        expect(f.read() == b"one\n", what + ": restore --to")
    rc, _, err = raw(["-C", root, "checkpoint"])
    expect(rc == 1 and err.decode().startswith("metamori: ") and err.count(b"\n") == 1, "%s: checkpoint: %r" % (what, err))
    expect(store_bytes(root) == before, what + ": a reader changed the store")


def tree_on_tmpfs(fs):
    """A tmpfs of 8 MiB mounted at fs (exit 77 when it cannot be), with a
    tree of two checkpoints (a: one, two; b added in 2) and a changed
    since: the tree's path."""
    p = sh(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", fs])
    if p.returncode != 0:
        print("skip: cannot mount a tmpfs: %s" % p.stderr.strip())
        sys.exit(77)
    root = os.path.join(fs, "tree")
    os.mkdir(root)
    T.init(root)
    T.write_file(os.path.join(root, "a"), b"one\n")
    T.checkpoint(root)
    T.write_file(os.path.join(root, "a"), b"two\n")
    T.write_file(os.path.join(root, "b"), b"b" * 10000)
    T.checkpoint(root)
    T.write_file(os.path.join(root, "a"), b"three\n")
    return root


def test_read_only_and_full():
    fs = T.tempdir("mtm-ro-fs-")
    root = tree_on_tmpfs(fs)
    try:
        # checkpoint 2's block and entry rows as a session leaves them until
        # its idle merge (killed, it leaves them there): in block_log and
        # entry_log, which du merges first; readers read both tables
        du = as_json(["-C", root, "du", "--json"])
        db = sqlite3.connect(os.path.join(root, ".metamori", "index.db"))
        db.executescript("INSERT INTO block_log SELECT file_id, blkno, branch, ckpt, hash, chunk, boff FROM block"
                         " WHERE ckpt = 2; DELETE FROM block WHERE ckpt = 2;"
                         "INSERT INTO entry_log SELECT * FROM entry WHERE ckpt = 2; DELETE FROM entry WHERE ckpt = 2;")
        db.close()
        expect(T.index_value(root, "SELECT count(*) FROM block_log") > 0, "no rows in block_log")
        expect(T.index_value(root, "SELECT count(*) FROM entry_log") > 0, "no rows in entry_log")
        # a read-only file system
        p = sh(["mount", "-o", "remount,ro", fs])
        expect(p.returncode == 0, "remount ro: %s" % p.stderr)
        readers_work(root, "read-only")
        du_ro = as_json(["-C", root, "du", "--json"])
        expect(du_ro == du, "du of a read-only store with unmerged rows: %r, before: %r" % (du_ro, du))
        rc, _, err = raw(["-C", root, "tag", "1", "x"])
        expect(rc == 1 and err.decode() == "metamori: %s/.metamori: %s: Read-only file system\n"
               % (os.path.realpath(root), WRITE_REFUSED), err)
        # a full disk
        p = sh(["mount", "-o", "remount,rw", fs])
        expect(p.returncode == 0, "remount rw: %s" % p.stderr)
        with open(os.path.join(fs, "filler"), "wb") as f:
            try:
                while True:
                    f.write(b"\0" * (64 << 10))
                    f.flush()
            except OSError:
                pass
        readers_work(root, "full disk")
        rc, _, err = raw(["-C", root, "tag", "1", "x"])
        expect(rc == 1 and err.decode() == "metamori: %s/.metamori: %s: No space left on device\n"
               % (os.path.realpath(root), WRITE_REFUSED), err)
    finally:
        sh(["umount", "-l", fs])


def test_store_at_rest_is_its_index():
    """A store at rest is its index file alone (DESIGN.md: a command folds
    the WAL into index.db when it closes the store): copied without
    SQLite's -wal and -shm files (as a backup that takes them for scratch
    files does) onto read-only media, every reader works and sees every
    checkpoint. With a WAL kept between commands, the copy lost checkpoint
    2, and without -shm SQLite could not read the store at all."""
    fs = T.tempdir("mtm-ro-rest-")
    root = tree_on_tmpfs(fs)
    try:
        wal = os.path.join(root, ".metamori", "index.db-wal")
        expect(not os.path.exists(wal) or os.path.getsize(wal) == 0,
               "a WAL of %d bytes left at rest" % os.path.getsize(wal) if os.path.exists(wal) else "")
        for f in ("index.db-wal", "index.db-shm"):
            if os.path.exists(os.path.join(root, ".metamori", f)):
                os.unlink(os.path.join(root, ".metamori", f))
        p = sh(["mount", "-o", "remount,ro", fs])
        expect(p.returncode == 0, "remount ro: %s" % p.stderr)
        readers_work(root, "read-only, at rest, no -wal or -shm")
    finally:
        sh(["umount", "-l", fs])


def test_older_format_on_read_only_media():
    """A store of an older format on read-only media (a snapshot, a backup
    disk): every reader works, on an upgraded private copy of its index,
    and the store is left byte for byte as it was (nothing half
    upgraded); a writer fails with one line. Writable again, the first
    command upgrades it in place. Failed before: every command, log and
    restore --to included, failed: 'store format 10 must be upgraded, and
    the store cannot be written'."""
    for old, downgrade in ((10, T.checkpoint_to_format_10), (9, T.blockhash_to_format_9)):
        fs = T.tempdir("mtm-ro-old-")
        root = tree_on_tmpfs(fs)
        try:
            db = sqlite3.connect(os.path.join(root, ".metamori", "index.db"))
            downgrade(db)
            db.execute("PRAGMA user_version=%d" % old)
            db.commit()
            db.close()
            p = sh(["mount", "-o", "remount,ro", fs])
            expect(p.returncode == 0, "remount ro: %s" % p.stderr)
            readers_work(root, "format %d, read-only" % old)
            p = sh(["mount", "-o", "remount,rw", fs])
            expect(p.returncode == 0, "remount rw: %s" % p.stderr)
            expect(T.index_value(root, "PRAGMA user_version") == old, "format %d: upgraded on read-only media" % old)
            T.checkpoint(root)
            expect(T.index_value(root, "PRAGMA user_version") > old, "format %d: not upgraded when writable" % old)
        finally:
            sh(["umount", "-l", fs])


if __name__ == "__main__":
    T.main([test_read_only_and_full, test_store_at_rest_is_its_index, test_older_format_on_read_only_media])
