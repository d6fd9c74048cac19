#!/usr/bin/env python3
"""The command line's contract: exact error lines and exit codes for bad
input, missing, newer, foreign and damaged stores; help for every command;
checkpoint output; the store and the tree unchanged by a failed command."""
import os
import time
import sqlite3

import mtmtest as T
from mtmtest import Failure

COMMANDS = ["init", "checkpoint", "status", "log", "diff", "restore", "ls", "cat", "verify", "prune", "tag", "du"]


def expect(cond, what):
    if not cond:
        raise Failure(what)


def err_line(args, cwd=None):
    """Runs a command that must fail (exit 1, one error line); returns the line."""
    p = T.run_fail(args, cwd=cwd)
    lines = [l for l in p.stderr.splitlines() if l]
    expect(len(lines) == 1, "metamori %s: expected one error line, got %r" % (" ".join(args), p.stderr))
    return lines[0]


def with_store(fn):
    def wrapper():
        root = T.tempdir("mtm-cli-")
        try:
            fn(root)
        finally:
            T.rmtree(root)
    wrapper.__name__ = fn.__name__
    return wrapper


@with_store
def test_no_store(root):
    expect(err_line(["-C", root, "status"]) ==
           "metamori: %s: no metamori store here or in any parent (run 'metamori init')" % root,
           "missing store message")
    expect(err_line(["status"], cwd=root) ==
           "metamori: .: no metamori store here or in any parent (run 'metamori init')", "from the cwd")
    expect(err_line(["-C", root, "checkpoint"]).startswith("metamori: %s: no metamori store" % root), "checkpoint")


@with_store
def test_init_twice(root):
    out = T.init(root).stdout.strip()
    expect(out == "initialized empty metamori store in %s/.metamori" % os.path.realpath(root), out)
    expect(err_line(["-C", root, "init"]) == "metamori: %s/.metamori: a store already exists" % os.path.realpath(root),
           "init twice")
    # a store inside the store's own directory (it was made: verify then found the store damaged)
    real = os.path.realpath(root)
    os.mkdir(os.path.join(root, ".metamori", "sub"))
    for d in (os.path.join(root, ".metamori"), os.path.join(root, ".metamori", "sub")):
        expect(err_line(["init", d]) == "metamori: %s: inside the store %s/.metamori" % (os.path.realpath(d), real),
               "init in the store: " + d)
    os.rmdir(os.path.join(root, ".metamori", "sub"))
    expect(sorted(os.listdir(os.path.join(root, ".metamori"))) == ["index.db", "lock", "packs"],
           "init in the store wrote: %r" % os.listdir(os.path.join(root, ".metamori")))
    T.run(["-C", root, "verify"])


@with_store
def test_unknown_command_option_and_ids(root):
    T.init(root)
    T.write_file(os.path.join(root, "f"), b"hi")
    expect(T.checkpoint(root) == 1, "first checkpoint id")
    before_store, before_tree = T.store_state(root), T.manifest_full(root)
    expect(err_line(["-C", root, "frob"]) == "metamori: frob: unknown command (see 'metamori --help')", "unknown cmd")
    expect(err_line(["--frob"]) == "metamori: --frob: unknown option (see 'metamori --help')", "unknown option")
    expect(err_line(["-C", root, "restore", "9"]) == "metamori: checkpoint 9: no such checkpoint", "restore 9")
    expect(err_line(["-C", root, "restore", "abc"]) == "metamori: abc: no such checkpoint or tag", "restore abc")
    expect(err_line(["-C", root, "diff", "7"]) == "metamori: checkpoint 7: no such checkpoint", "diff 7")
    # an id is digits only: " 1" and "+1" were checkpoint 1 (strtoll skips blanks and takes a sign)
    for bad in (" 1", "+1", "\t1", "1 ", "-1", "0x1"):
        expect(err_line(["-C", root, "cat", bad, "f"]) ==
               "metamori: %s: no such checkpoint or tag" % bad.replace("\t", "\\t"),
               "cat %r" % bad)
    expect(T.run(["-C", root, "cat", "01", "f"]).stdout == "hi", "cat 01 (leading zeros are still the number)")
    expect(err_line(["-C", root, "checkpoint", "--bogus"]) ==
           "metamori: checkpoint: bad option (see 'metamori checkpoint --help')", "bad option")
    expect(T.store_state(root) == before_store, "a failed command changed the store")
    T.assert_same(before_tree, T.manifest_full(root), "a failed command changed the tree")


@with_store
def test_checkpoint_output(root):
    T.init(root)
    T.write_file(os.path.join(root, "f"), b"x" * 5000)
    p = T.run(["-C", root, "checkpoint", "-m", "first"])
    lines = p.stdout.splitlines()
    expect(lines[0] == "checkpoint 1", p.stdout)
    expect(lines[1].startswith("  1 added, 0 changed, 0 removed; 4.9 KiB changed"), p.stdout)
    expect(T.run(["-C", root, "checkpoint", "-q"]).stdout == "2\n", "-q prints only the id")
    log = T.log_json(root)
    expect([(e["id"], e["parent"], e["message"]) for e in log] == [(1, 0, "first"), (2, 1, "")], log)


FORMAT = 11  # the store format this Metamori writes (src/store/store.h)

def downgrade_to_10(db):
    """Turns a format 11 index into what format 10 wrote: the root's mode
    only."""
    c = sqlite3.connect(db)
    T.checkpoint_to_format_10(c)
    c.execute("PRAGMA user_version=10")
    c.commit()
    c.close()


def downgrade_to_9(db):
    """Turns a format 11 index into what format 9 wrote: no blockhash_delta
    (and the root's mode only)."""
    c = sqlite3.connect(db)
    T.blockhash_to_format_9(c)
    c.execute("PRAGMA user_version=9")
    c.commit()
    c.close()


def downgrade_to_8(db):
    """Turns a format 11 index into what format 8 wrote: no root_mode (and no
    blockhash_delta)."""
    c = sqlite3.connect(db)
    T.checkpoint_to_format_8(c)
    c.execute("PRAGMA user_version=8")
    c.commit()
    c.close()


def downgrade_to_7(db):
    """Turns a format 11 index into what format 7 wrote: the stat cache's
    nine stat columns (every row kept)."""
    downgrade_to_8(db)
    c = sqlite3.connect(db)
    T.statcache_to_format_7(c)
    c.execute("PRAGMA user_version=7")
    c.commit()
    c.close()


def downgrade_to_6(db):
    """Turns a format 11 index into what format 6 wrote: no entry_log (its
    rows, if any, where format 6 kept them: in entry)."""
    downgrade_to_7(db)
    c = sqlite3.connect(db)
    c.executescript("INSERT INTO entry SELECT * FROM entry_log; DROP TABLE entry_log; PRAGMA user_version=6;")
    c.commit()
    c.close()


def downgrade_to_3(db):
    """Turns a format 11 index into what format 3 wrote: one signed count of
    nanoseconds for the mtime, no rdev, no xattrs (and no blockhash, format
    5's, nor the checkpoint's tracked and pause_ns, format 6's, nor
    entry_log, format 7's)."""
    downgrade_to_6(db)
    c = sqlite3.connect(db)
    c.executescript("ALTER TABLE checkpoint DROP COLUMN tracked; ALTER TABLE checkpoint DROP COLUMN pause_ns;"
                    "DROP TABLE IF EXISTS blockhash; ALTER TABLE entry RENAME COLUMN mtime_nsec TO mtime_ns;"
                    "UPDATE entry SET mtime_ns = mtime_s * 1000000000 + mtime_ns;"
                    "ALTER TABLE entry DROP COLUMN mtime_s; ALTER TABLE entry DROP COLUMN rdev;"
                    "ALTER TABLE entry DROP COLUMN xattrs; DROP INDEX entry_links; PRAGMA user_version=3;")
    c.commit()
    c.close()


def upgraded(root, downgrade, old):
    """root's index made format old by downgrade, then opened by `log`:
    upgraded in place to FORMAT. Returns a connection to it."""
    db = os.path.join(root, ".metamori", "index.db")
    downgrade(db)
    T.run(["-C", root, "log"])
    c = sqlite3.connect(db)
    expect(c.execute("PRAGMA user_version").fetchone()[0] == FORMAT, "upgraded from format %d" % old)
    return c


@with_store
def test_upgrade_from_format_3(root):
    """A format 3 store keeps every checkpoint, times before 1970 included,
    and records attributes from its first checkpoint on."""
    T.init(root)
    T.write_file(os.path.join(root, "old"), b"old", mtime_ns=-86400 * 10**9 * 365 - 123)
    T.write_file(os.path.join(root, "new"), b"new", mtime_ns=1700000000 * 10**9 + 999999999)
    first = T.manifest_full(root)
    T.checkpoint(root)
    os.setxattr(os.path.join(root, "new"), "user.k", b"v")
    T.write_file(os.path.join(root, "old"), b"changed")
    T.checkpoint(root)
    c = upgraded(root, downgrade_to_3, 3)
    expect(c.execute("SELECT count(*) FROM statcache").fetchone()[0] == 0, "stat cache dropped")
    c.close()
    T.restore(root, 1)
    T.assert_same(first, T.manifest_full(root), "checkpoint 1 of an upgraded store")
    expect(os.listxattr(os.path.join(root, "new")) == [], "format 3 held no attributes")
    os.setxattr(os.path.join(root, "new"), "user.k", b"v")
    ck = T.checkpoint(root)
    os.removexattr(os.path.join(root, "new"), "user.k")
    T.restore(root, ck)
    expect(os.getxattr(os.path.join(root, "new"), "user.k") == b"v", "attributes recorded after the upgrade")


@with_store
def test_upgrade_from_format_6(root):
    """A format 6 store (no entry_log) is upgraded in place by the first
    command that opens it, in one transaction, and keeps every checkpoint;
    a session's checkpoints then put their entry rows in the new table."""
    T.init(root)
    h = T.History(root)
    T.write_file(os.path.join(root, "a"), b"a" * 5000)
    os.mkdir(os.path.join(root, "d"))
    T.write_file(os.path.join(root, "d", "b"), b"b")
    h.checkpoint()
    T.write_file(os.path.join(root, "a"), b"changed")
    os.unlink(os.path.join(root, "d", "b"))
    h.checkpoint()
    c = upgraded(root, downgrade_to_6, 6)
    expect(c.execute("SELECT count(*) FROM entry_log").fetchone()[0] == 0, "entry_log added, empty")
    expect(c.execute("SELECT count(*) FROM sqlite_master WHERE name = 'entry_log_links'").fetchone()[0] == 1,
           "entry_log's link index added")
    c.close()
    h.check()
    T.write_file(os.path.join(root, "d", "c"), b"c")
    h.checkpoint()
    h.check()
    T.run(["-C", root, "verify", "--data"])


@with_store
def test_upgrade_from_format_8(root):
    """A format 8 store (no root_mode) is upgraded in place by the first
    command that opens it; its checkpoints did not record the root's mode,
    so a restore of one leaves the root as it is, and the next checkpoint
    records it."""
    T.init(root)
    T.write_file(os.path.join(root, "a"), b"a")
    os.chmod(root, 0o750)
    T.checkpoint(root)
    c = upgraded(root, downgrade_to_8, 8)
    expect(c.execute("SELECT root_mode FROM checkpoint").fetchall() == [(None,)], "old rows: NULL")
    c.close()
    os.chmod(root, 0o705)
    T.write_file(os.path.join(root, "a"), b"b")
    T.run(["-C", root, "restore", "--discard", "1"])
    expect(os.stat(root).st_mode & 0o7777 == 0o705, "a format 8 checkpoint set the root's mode")
    ck = T.checkpoint(root)
    expect(T.index_value(root, "SELECT root_mode FROM checkpoint WHERE id=%d" % ck) == 0o705, "recorded after")


@with_store
def test_upgrade_from_format_9(root):
    """A format 9 store (whole blockhash rows only) is upgraded in place by
    the first command that opens it: blockhash_delta added, empty; the
    next scan of a big file keeps its version as a delta against the
    format 9 row, and every checkpoint restores."""
    T.init(root)
    h = T.History(root)
    path = os.path.join(root, "big")
    T.write_file(path, bytes(range(256)) * 16 * 64)  # 64 blocks: a blockhash row
    c1 = h.checkpoint()
    c = upgraded(root, downgrade_to_9, 9)
    expect(c.execute("SELECT count(*) FROM blockhash_delta").fetchone()[0] == 0, "blockhash_delta added, empty")
    expect(c.execute("SELECT ver FROM blockhash").fetchall() == [(c1,)], "the format 9 row kept")
    c.close()
    T.patch_file(path, 5 * 4096, b"x" * 4096)
    c2 = h.checkpoint()
    expect(T.index_value(root, "SELECT ver || ' ' || base FROM blockhash_delta") == "%d %d" % (c2, c1),
           "a delta against the format 9 row")
    h.check()


@with_store
def test_upgrade_from_format_10(root):
    """A format 10 store (the root's mode only) is upgraded in place by the
    first command that opens it; its checkpoints did not record the root's
    owner, mtime nor attributes, so status does not compare them and a
    restore of one leaves them as they are (the mode it gives back); the
    next checkpoint records them."""
    T.init(root)
    T.write_file(os.path.join(root, "a"), b"a")
    os.chmod(root, 0o750)
    os.setxattr(root, "user.x", b"1")
    T.checkpoint(root)
    c = upgraded(root, downgrade_to_10, 10)
    expect(c.execute("SELECT root_mode, root_uid, root_gid, root_mtime_s, root_mtime_nsec, root_xattrs"
                     " FROM checkpoint").fetchall() == [(0o750, None, None, None, None, None)], "old rows")
    c.close()
    os.removexattr(root, "user.x")
    expect(T.status(root) == "nothing changed since checkpoint 1\n", "status: %r" % T.status(root))
    os.chmod(root, 0o705)
    T.write_file(os.path.join(root, "a"), b"b")
    T.run(["-C", root, "restore", "--discard", "1"])
    expect(os.stat(root).st_mode & 0o7777 == 0o750, "the mode was recorded")
    expect(os.listxattr(root) == [], "a format 10 checkpoint set the root's attributes")
    os.setxattr(root, "user.y", b"2")
    ck = T.checkpoint(root)
    expect(T.index_value(root, "SELECT root_xattrs FROM checkpoint WHERE id=%d" % ck) is not None, "recorded after")
    # back at checkpoint 1, which did not record the attributes: a restore
    # of ck would remove user.z, which status cannot show: saved first
    T.run(["-C", root, "restore", "1"])
    os.setxattr(root, "user.z", b"3")
    T.restore(root, ck)
    expect(os.listxattr(root) == ["user.y"], "restored: %r" % os.listxattr(root))
    saved = T.log_json(root)[-1]
    expect(saved["message"].startswith("saved before restoring"), "not saved: %r" % saved)
    T.restore(root, saved["id"])
    expect(sorted(os.listxattr(root)) == ["user.y", "user.z"], "the save: %r" % os.listxattr(root))


@with_store
def test_upgrade_from_format_7(root):
    """A format 7 store (the stat cache as nine columns) is upgraded in place
    by the first command that opens it: every row kept, field for field
    (a time before 1970 too), so the cache still vouches for the files it
    did and the next checkpoint reads none of them."""
    T.init(root)
    h = T.History(root)
    T.write_file(os.path.join(root, "a"), b"a" * 5000)
    T.write_file(os.path.join(root, "old"), b"old", mtime_ns=-86400 * 10**9 * 365 - 123)
    os.mkdir(os.path.join(root, "d"))
    for i in range(20):
        T.write_file(os.path.join(root, "d", "f%02d" % i), b"%d" % i)
    h.checkpoint()
    T.write_file(os.path.join(root, "a"), b"changed")
    time.sleep(0.1)  # (past the racy window: every row vouches)
    h.checkpoint()
    db = os.path.join(root, ".metamori", "index.db")
    paths = ["a", "old"] + ["d/f%02d" % i for i in range(20)]
    before = {p: T.statcache_row(root, p) for p in paths}
    expect(all(before.values()), "rows before: %r" % before)
    c = upgraded(root, downgrade_to_7, 7)
    expect([r[1] for r in c.execute("PRAGMA table_info(statcache)")] == ["path", "ver", "st"], "statcache's columns")
    c.close()
    after = {p: T.statcache_row(root, p) for p in paths}
    T.assert_same(before, after, "the stat cache after the upgrade")
    expect(T.statcache_row(root, "old")["mtime_ns"] == -86400 * 10**9 * 365 - 123, "a time before 1970")
    p = T.run(["-C", root, "checkpoint", "-q"], env=dict(os.environ, METAMORI_DEBUG_CHECKPOINT="1"))
    expect("(0 files compared)" in p.stderr, "the checkpoint after the upgrade read files:\n%s" % p.stderr)
    h.check()
    T.write_file(os.path.join(root, "d", "f03"), b"new")
    h.checkpoint()
    h.check()
    T.run(["-C", root, "verify", "--data"])


@with_store
def test_newer_foreign_damaged_index(root):
    T.init(root)
    T.write_file(os.path.join(root, "f"), b"hi")
    T.checkpoint(root)
    db = os.path.join(root, ".metamori", "index.db")
    real = os.path.realpath(root)

    def pragma(sql):
        c = sqlite3.connect(db)
        c.execute(sql)
        c.commit()
        c.close()
    pragma("PRAGMA user_version=%d" % (FORMAT + 1))
    expect(err_line(["-C", root, "log"]) ==
           "metamori: %s/.metamori: store format %d is newer than this metamori (reads %d)"
           % (real, FORMAT + 1, FORMAT), "newer")
    expect(err_line(["-C", root, "checkpoint"]).endswith("is newer than this metamori (reads %d)" % FORMAT),
           "newer ckpt")
    pragma("PRAGMA user_version=%d" % FORMAT)

    def make_format_2():
        # format 2 had no region table and no region statistics per checkpoint
        c = sqlite3.connect(db)
        c.executescript("DROP TABLE region; ALTER TABLE checkpoint DROP COLUMN regions;"
                        " ALTER TABLE checkpoint DROP COLUMN region_bytes;"
                        " ALTER TABLE checkpoint DROP COLUMN region_bytes_changed; PRAGMA user_version=2;")
        c.commit()
        c.close()
    # format 2 is upgraded in place by the first command to open it; every checkpoint stays
    downgrade_to_3(db)
    make_format_2()
    T.run(["-C", root, "log"])
    c = sqlite3.connect(db)
    expect(c.execute("PRAGMA user_version").fetchone()[0] == FORMAT, "upgraded from format 2")
    expect(c.execute("SELECT count(*) FROM region").fetchone()[0] == 0, "region added")
    expect(c.execute("SELECT count(*) FROM checkpoint WHERE regions = 0 AND region_bytes = 0").fetchone()[0] ==
           c.execute("SELECT count(*) FROM checkpoint").fetchone()[0] > 0, "old checkpoints kept, without regions")
    c.close()
    # format 1 (no block_log) goes through every step
    downgrade_to_3(db)
    make_format_2()
    pragma("DROP TABLE block_log")
    pragma("PRAGMA user_version=1")
    T.run(["-C", root, "log"])
    c = sqlite3.connect(db)
    expect(c.execute("PRAGMA user_version").fetchone()[0] == FORMAT, "upgraded from format 1")
    expect(c.execute("SELECT count(*) FROM block_log").fetchone()[0] == 0, "block_log added")
    expect(c.execute("SELECT count(*) FROM region").fetchone()[0] == 0, "region added from 1")
    c.close()
    pragma("PRAGMA application_id=5")
    expect(err_line(["-C", root, "log"]) == "metamori: %s/.metamori/index.db: not a metamori index" % real, "foreign")
    pragma("PRAGMA application_id=1297370450")
    T.run(["-C", root, "log"])
    with open(db, "r+b") as f:
        f.write(b"garbage garbage garbage")
    line = err_line(["-C", root, "log"])
    expect(line == "metamori: %s/.metamori/index.db: not a metamori index (or damaged)" % real, line)
    with open(os.path.join(root, "f"), "rb") as f:
        expect(f.read() == b"hi", "the tree was touched")


@with_store
def test_pack_write_fails_part_way(root):
    """The pack is written by a second thread, a piece (1 MiB) behind the
    checkpoint (src/store/flusher.c): a write that fails there, early or in the
    last piece, still fails the checkpoint with its own error line, records
    nothing and leaves the tree alone; the next checkpoint stores it all."""
    import random
    real = os.path.realpath(root)
    T.init(root)
    T.write_file(os.path.join(root, "small"), b"s" * 100)
    c1 = T.checkpoint(root)
    T.write_file(os.path.join(root, "big"), random.Random(7).randbytes(6 << 20))
    before = T.manifest(root)
    inner = "%s/.metamori/packs: writing pack 1: No space left on device" % real
    seen = set()
    for n in range(1, 8):
        env = dict(os.environ, METAMORI_FAULT="write:%d:ENOSPC" % n)
        p = T.run(["-C", root, "checkpoint", "-q"], check=False, env=env)
        expect(p.returncode != 0, "write %d: no failure" % n)
        line = p.stderr.strip()
        expect(p.returncode == 1 and "\n" not in line, "write %d: %d %r" % (n, p.returncode, p.stderr))
        expect([e["id"] for e in T.log_json(root)] == [c1], "write %d: a checkpoint was recorded" % n)
        T.assert_same(before, T.manifest(root), "the tree after a failed write (%d)" % n)
        if "writing pack" not in line:  # past the pack: the index's commit
            expect(line == "metamori: index: database or disk is full", "write %d: %r" % (n, line))
            break
        # reported at the hand-over of the next piece, inside the file, or
        # by the final wait, after the last one
        expect(line in ("metamori: %s/big: %s" % (real, inner), "metamori: " + inner), "write %d: %r" % (n, line))
        seen.add("in file" if "/big: " in line else "at the end")
    expect({"in file", "at the end"} <= seen, "pack write failures seen only %s" % sorted(seen))
    T.run(["-C", root, "verify", "--data"])
    c2 = T.checkpoint(root)
    to = os.path.join(T.tempdir("mtm-cli-to-"), "t")
    T.restore(root, c2, to=to)
    T.assert_same(before, T.manifest(to), "the checkpoint after the failed ones")
    T.rmtree(os.path.dirname(to))


@with_store
def test_more_block_rows_than_held(root):
    """A checkpoint holds its block rows in memory and inserts them before its
    commit, at most 65,536 at a time (src/store/index.c): a file of 70,000
    blocks goes in across the bound, every row lands, and the restore is
    byte-exact. (The blocks repeat one 64 KiB chunk, but for a few: the
    pack stays small.)"""
    n = 70000
    path = os.path.join(root, "big")
    T.init(root)
    group = b"".join(bytes([i + 1]) * 4096 for i in range(16))
    with open(path, "wb") as f:
        for _ in range(n // 16):
            f.write(group)
        for b in (0, 40000, 65535, 65536, n - 1):
            f.seek(b * 4096)
            f.write(b"%08d" % b * 512)
    c = T.checkpoint(root)
    rows = T.index_value(root, "SELECT (SELECT count(*) FROM block WHERE ckpt=%d) + "
                               "(SELECT count(*) FROM block_log WHERE ckpt=%d)" % (c, c))
    expect(rows == n, "block rows of the checkpoint: %r, not %d" % (rows, n))
    before = T.manifest(root)
    to = os.path.join(T.tempdir("mtm-cli-to-"), "t")
    T.restore(root, c, to=to)
    T.assert_same(before, T.manifest(to), "the file restored from %d block rows" % n)
    T.rmtree(os.path.dirname(to))

def test_dash_c_takes_relative_directories_from_dir():
    """-C DIR runs as if started in DIR: a relative directory given to a
    command is DIR's, not the shell's (before: restore --to, push, init
    and checkpoint --mirror made theirs in the shell's directory)."""
    top = T.tempdir("mtm-cli-c-")
    # (the shell one level deeper than the tree: "../x" names another place from each)
    tree, shell = os.path.join(top, "tree"), os.path.join(top, "deeper", "elsewhere")
    os.mkdir(tree)
    os.makedirs(shell)
    T.write_file(os.path.join(tree, "a"), b"alpha")
    T.run(["-C", tree, "init"], cwd=shell)
    c = int(T.run(["-C", tree, "checkpoint", "-q", "--mirror", "../mirror1"], cwd=shell).stdout)
    T.run(["-C", tree, "restore", str(c), "--to", "../out"], cwd=shell)
    T.run(["-C", tree, "push", "-q", "../mirror2"], cwd=shell)
    os.mkdir(os.path.join(top, "other"))
    os.mkdir(os.path.join(top, "deeper", "other"))
    p = T.run(["-C", tree, "init", "../other"], cwd=shell, check=False)
    for name in ("mirror1", "out", "mirror2", "other/.metamori", "deeper/mirror1", "deeper/out",
                 "deeper/mirror2", "deeper/other/.metamori"):
        want = not name.startswith("deeper")
        expect(os.path.exists(os.path.join(top, name)) == want,
               "-C %s from %s: %s %s%s" % (tree, shell, name, "missing" if want else "made in the shell's directory",
                                          " (init: %s)" % p.stderr.strip() if p.returncode else ""))
    expect(open(os.path.join(top, "out", "a"), "rb").read() == b"alpha", "restore --to ../out: a")
    T.rmtree(top)


def test_help_everywhere():
    p = T.run(["--help"])
    for c in COMMANDS:
        expect(("\n  %s " % c) in p.stdout, "--help does not list %s" % c)
        h = T.run([c, "--help"]).stdout
        expect(h.startswith("usage: metamori %s" % c), "%s --help: %r" % (c, h[:80]))
        expect(T.run(["help", c]).stdout == h, "help %s differs from %s --help" % (c, c))
    v = T.run(["--version"]).stdout
    expect(v.startswith("metamori ") and v.count(".") == 2, "--version: %r" % v)
    p = T.run([], check=False)
    expect(p.returncode == 1 and p.stderr.startswith("usage: metamori"), "no command: %d %r" % (p.returncode, p.stderr))


if __name__ == "__main__":
    T.main([test_no_store, test_init_twice, test_unknown_command_option_and_ids, test_checkpoint_output,
            test_upgrade_from_format_3, test_upgrade_from_format_6, test_upgrade_from_format_7,
            test_upgrade_from_format_8, test_upgrade_from_format_9,
            test_newer_foreign_damaged_index, test_pack_write_fails_part_way, test_more_block_rows_than_held,
            test_dash_c_takes_relative_directories_from_dir, test_help_everywhere])
