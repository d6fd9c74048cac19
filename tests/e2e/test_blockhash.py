#!/usr/bin/env python3
"""A file version's block hashes kept as one row (format 5, FORMAT.md 3.11):
a scan compares a changed file with that row instead of reading a row of
`block` per 4 KiB block, and never believes a row that does not describe the
parent's version (another branch, a damaged or moved row, a file that shrank
and grew). Every checkpoint is restored and compared with a copy of the tree
taken when it was made. A newer version is kept as its blocks that differ
from the row (format 10, FORMAT.md 3.11.1) while they are few. Also: a
format 4 store is upgraded and keeps every checkpoint."""
import os
import random
import sqlite3
import struct

import mtmtest as T
from mtmtest import Failure, expect

BLOCK = 4096
NBLOCKS = 64  # past BLOCKHASH_MIN_BLOCKS: the file gets a row


def with_store(fn):
    return T.with_store(fn, "mtm-bh-")




def db(root):
    return os.path.join(root, ".metamori", "index.db")


def sql(root, *stmts):
    c = sqlite3.connect(db(root))
    for s in stmts:
        c.execute(s)
    c.commit()
    c.close()


def file_id(root, path):
    return T.index_value(root, "SELECT file_id FROM (SELECT file_id, ckpt FROM entry WHERE path='%s' UNION ALL "
                               "SELECT file_id, ckpt FROM entry_log WHERE path='%s') ORDER BY ckpt DESC LIMIT 1"
                         % (path, path))


def block_data(seed):
    return random.Random(seed).randbytes(BLOCK)


def make_big(root, name="big", seed=1):
    T.write_file(os.path.join(root, name), random.Random(seed).randbytes(NBLOCKS * BLOCK))


def bytes_changed(root, ck):
    return T.index_value(root, "SELECT bytes_changed FROM checkpoint WHERE id=%d" % ck)


@with_store
def test_scan_reads_the_row_not_the_blocks(root):
    """The scan takes the parent's hashes from the file's row: a `block` row
    whose hash is made wrong (standing for what the scan no longer reads) is
    not seen, and only the one rewritten block is stored."""
    h = T.History(root)
    make_big(root)
    c1 = h.checkpoint()
    fid = file_id(root, "big")
    expect(T.index_value(root, "SELECT ver FROM blockhash WHERE file_id=%d" % fid) == c1,
           "a row for the file's version %d" % c1)
    expect(T.index_value(root, "SELECT length(hashes) FROM blockhash WHERE file_id=%d" % fid) == NBLOCKS * 8,
           "one hash per block")
    sql(root, "UPDATE block SET hash = hash + 1 WHERE file_id=%d AND blkno=7" % fid)
    T.patch_file(os.path.join(root, "big"), 30 * BLOCK, block_data(30))
    c2 = h.checkpoint()
    expect(bytes_changed(root, c2) == BLOCK, "one block changed, not %d bytes" % bytes_changed(root, c2))
    expect(T.index_value(root, "SELECT ver FROM blockhash_delta WHERE file_id=%d" % fid) == c2,
           "the version follows (one block: as a delta against the row, FORMAT.md 3.11.1)")
    sql(root, "UPDATE block SET hash = hash - 1 WHERE file_id=%d AND blkno=7" % fid)
    h.check()


@with_store
def test_row_of_another_branch_is_not_used(root):
    """Checkpoint 2 rewrites a block; back at 1, the same bytes are written
    again: the row (describing 2) must not make the scan believe the block
    is already stored, or checkpoint 3 would read 1's bytes there."""
    h = T.History(root)
    make_big(root)
    c1 = h.checkpoint()
    T.patch_file(os.path.join(root, "big"), 5 * BLOCK, block_data(5))
    h.checkpoint()
    T.restore(root, c1)
    T.patch_file(os.path.join(root, "big"), 5 * BLOCK, block_data(5))
    c3 = h.checkpoint()
    expect(T.index_value(root, "SELECT parent FROM checkpoint WHERE id=%d" % c3) == c1, "a branch from 1")
    expect(bytes_changed(root, c3) == BLOCK, "the block stored on the branch")
    h.check()


@with_store
def test_shrink_then_grow(root):
    """Rows past a file's end stay visible (FORMAT.md 3.5): a file that
    shrinks and grows again, with zeros or with its old bytes, is compared
    with what `block` says there, whichever way its hashes are read."""
    h = T.History(root)
    path = os.path.join(root, "big")
    make_big(root)
    old = open(path, "rb").read()
    h.checkpoint()
    os.truncate(path, 20 * BLOCK + 100)
    h.checkpoint()
    os.truncate(path, NBLOCKS * BLOCK)  # zeros where the old bytes were
    h.checkpoint()
    with open(path, "r+b") as f:  # the old bytes again, where rows of them are visible
        f.seek(40 * BLOCK)
        f.write(old[40 * BLOCK:])
    h.checkpoint()
    os.truncate(path, 10 * BLOCK)
    h.checkpoint()
    with open(path, "ab") as f:
        f.write(old[10 * BLOCK:])
    h.checkpoint()
    h.check()


@with_store
def test_damaged_or_moved_row_is_ignored(root):
    """A row whose blob, version or file id does not match its check is
    ignored: the scan reads `block` and records the file right."""
    h = T.History(root)
    make_big(root)
    make_big(root, "big2", seed=2)
    h.checkpoint()
    fid, fid2 = file_id(root, "big"), file_id(root, "big2")
    # a flipped hash in the blob: block 3 would look unchanged when it changed
    c = sqlite3.connect(db(root))
    blob = bytearray(c.execute("SELECT hashes FROM blockhash WHERE file_id=%d" % fid).fetchone()[0])
    data3 = block_data(33)
    c.close()
    # (Python has no XXH3: block 3's entry is made block 4's, then block 4's bytes written into block 3)
    blob[3 * 8:4 * 8] = blob[4 * 8:5 * 8]
    sql(root, "UPDATE blockhash SET hashes=x'%s' WHERE file_id=%d" % (blob.hex(), fid))
    with open(os.path.join(root, "big"), "rb") as f:
        f.seek(4 * BLOCK)
        b4 = f.read(BLOCK)
    T.patch_file(os.path.join(root, "big"), 3 * BLOCK, b4)
    c2 = h.checkpoint()
    expect(bytes_changed(root, c2) == BLOCK, "a damaged row was believed: %d bytes" % bytes_changed(root, c2))
    # a row moved to another file id (big2's hashes under big's id)
    sql(root, "DELETE FROM blockhash WHERE file_id=%d" % fid,
        "UPDATE blockhash SET file_id=%d WHERE file_id=%d" % (fid, fid2))
    T.patch_file(os.path.join(root, "big"), 9 * BLOCK, data3)
    c3 = h.checkpoint()
    expect(bytes_changed(root, c3) == BLOCK, "a moved row was believed: %d bytes" % bytes_changed(root, c3))
    h.check()


@with_store
def test_rename_prune_and_removal(root):
    """A renamed file keeps its history and its row; a removed file's row
    goes; prune leaves no row naming a dropped checkpoint."""
    h = T.History(root)
    make_big(root)
    make_big(root, "gone", seed=3)
    h.checkpoint()
    fid, gid = file_id(root, "big"), file_id(root, "gone")
    os.rename(os.path.join(root, "big"), os.path.join(root, "moved"))
    T.patch_file(os.path.join(root, "moved"), 2 * BLOCK, block_data(2))
    os.remove(os.path.join(root, "gone"))
    c2 = h.checkpoint()
    expect(file_id(root, "moved") == fid, "the rename kept the history")
    expect(bytes_changed(root, c2) == BLOCK, "renamed and patched: one block, not %d" % bytes_changed(root, c2))
    expect(T.index_value(root, "SELECT count(*) FROM blockhash WHERE file_id=%d" % gid) == 0, "removed: row gone")
    for i in range(3):
        T.patch_file(os.path.join(root, "moved"), (10 + i) * BLOCK, block_data(100 + i))
        h.checkpoint()
    expect(delta(root, fid) is not None, "a delta before the prune")
    T.run(["-C", root, "prune", "--keep-last", "1"])
    expect(T.index_value(root, "SELECT count(*) FROM blockhash WHERE ver NOT IN (SELECT id FROM checkpoint)") == 0,
           "rows of dropped checkpoints")
    expect(T.index_value(root, "SELECT count(*) FROM blockhash_delta WHERE ver NOT IN (SELECT id FROM checkpoint)"
                               " OR base NOT IN (SELECT id FROM checkpoint)") == 0, "deltas of dropped checkpoints")
    h.seen = {k: v for k, v in h.seen.items() if k in [e["id"] for e in T.log_json(root)]}
    T.patch_file(os.path.join(root, "moved"), 20 * BLOCK, block_data(20))
    h.checkpoint()
    h.check()


def delta(root, fid):
    """(ver, base, n, [(blkno, hash)]) of fid's blockhash_delta row, or None."""
    c = sqlite3.connect(db(root))
    r = c.execute("SELECT ver, base, n, pairs FROM blockhash_delta WHERE file_id=%d" % fid).fetchone()
    c.close()
    if r is None:
        return None
    p = r[3]
    return r[0], r[1], r[2], [struct.unpack_from("<IQ", p, i) for i in range(0, len(p), 12)]


# pairs a delta may hold for a file of NBLOCKS blocks: 1/8 of its whole row
# (8 bytes a block), 12 bytes a pair (store/blockhash.h)
MOST_PAIRS = NBLOCKS * 8 // 8 // 12


@with_store
def test_delta_until_an_eighth_then_whole_row(root):
    """Each checkpoint that rewrites one more block keeps the new version as
    the blocks that differ from the file's whole row, which stays as it was;
    once they would pass 1/8 of a whole row, the whole row is written again
    and the delta goes. Only the rewritten block is stored each time, so
    the scan read each delta right (a wrong hash would store more, or lose
    a block that every restore below would find)."""
    h = T.History(root)
    make_big(root)
    c1 = h.checkpoint()
    fid = file_id(root, "big")
    whole = T.index_value(root, "SELECT hashes FROM blockhash WHERE file_id=%d" % fid)
    for i in range(1, MOST_PAIRS + 1):
        T.patch_file(os.path.join(root, "big"), (3 * i) * BLOCK, block_data(1000 + i))
        ck = h.checkpoint()
        expect(bytes_changed(root, ck) == BLOCK, "one block stored, not %d bytes" % bytes_changed(root, ck))
        d = delta(root, fid)
        expect(d is not None and d[:3] == (ck, c1, NBLOCKS), "delta of %d against %d: %r" % (ck, c1, d and d[:3]))
        expect([b for b, _ in d[3]] == [3 * j for j in range(1, i + 1)], "the differing blocks: %r" % d[3])
        expect(T.index_value(root, "SELECT hashes FROM blockhash WHERE file_id=%d" % fid) == whole,
               "the whole row is not rewritten")
    T.patch_file(os.path.join(root, "big"), 50 * BLOCK, block_data(2000))
    ck = h.checkpoint()
    expect(bytes_changed(root, ck) == BLOCK, "one block stored, not %d bytes" % bytes_changed(root, ck))
    expect(T.index_value(root, "SELECT ver FROM blockhash WHERE file_id=%d" % fid) == ck, "a whole row again")
    expect(delta(root, fid) is None, "the delta against the old row is gone")
    T.patch_file(os.path.join(root, "big"), 51 * BLOCK, block_data(2001))
    ck2 = h.checkpoint()
    expect(delta(root, fid)[:2] == (ck2, ck), "the next delta is against the new row")
    h.check()


@with_store
def test_grown_file_delta(root):
    """A file grown past its row's blocks: the new blocks are pairs of the
    delta (a block past the row reads as the zero block's, and a zero block
    appended is not a pair)."""
    h = T.History(root)
    path = os.path.join(root, "big")
    make_big(root)
    h.checkpoint()
    fid = file_id(root, "big")
    with open(path, "ab") as f:
        f.write(block_data(70) + bytes(BLOCK))
    ck = h.checkpoint()
    d = delta(root, fid)
    expect(d is not None and d[0] == ck and d[2] == NBLOCKS + 2, "grown by two blocks: %r" % (d and d[:3],))
    expect([b for b, _ in d[3]] == [NBLOCKS], "only the block that is not zeros: %r" % d[3])
    T.patch_file(path, (NBLOCKS + 1) * BLOCK, block_data(71))
    ck = h.checkpoint()
    expect(bytes_changed(root, ck) == BLOCK, "the zero block past the row rewritten: %d bytes" % bytes_changed(root, ck))
    h.check()


@with_store
def test_damaged_or_moved_delta_is_ignored(root):
    """A delta whose pairs, version, base or file id do not match its check
    is ignored (the scan reads `block`): the file is recorded right. Each
    damage below, believed, would make a rewritten block look unchanged."""
    h = T.History(root)
    make_big(root)
    make_big(root, "big2", seed=2)
    h.checkpoint()
    fid, fid2 = file_id(root, "big"), file_id(root, "big2")
    path = os.path.join(root, "big")
    with open(path, "rb") as f:
        f.seek(30 * BLOCK)
        old30 = f.read(BLOCK)
    T.patch_file(path, 30 * BLOCK, block_data(30))
    T.patch_file(os.path.join(root, "big2"), 30 * BLOCK, block_data(31))
    h.checkpoint()
    # big2's delta (its block 30 is data 31) moved to big's id, then data 31
    # written into big's block 30
    sql(root, "DELETE FROM blockhash_delta WHERE file_id=%d" % fid,
        "UPDATE blockhash_delta SET file_id=%d WHERE file_id=%d" % (fid, fid2))
    T.patch_file(path, 30 * BLOCK, block_data(31))
    c3 = h.checkpoint()
    expect(bytes_changed(root, c3) == BLOCK, "a moved delta was believed: %d bytes" % bytes_changed(root, c3))
    # big's delta now holds (30, data 31's hash): made (3, that hash), then
    # data 31 written into block 3 and block 30's first bytes back
    c = sqlite3.connect(db(root))
    pairs = bytearray(c.execute("SELECT pairs FROM blockhash_delta WHERE file_id=%d" % fid).fetchone()[0])
    c.close()
    expect(len(pairs) == 12 and struct.unpack_from("<I", pairs)[0] == 30, "one pair, block 30")
    struct.pack_into("<I", pairs, 0, 3)
    sql(root, "UPDATE blockhash_delta SET pairs=x'%s' WHERE file_id=%d" % (pairs.hex(), fid))
    T.patch_file(path, 3 * BLOCK, block_data(31))
    T.patch_file(path, 30 * BLOCK, old30)
    c4 = h.checkpoint()
    expect(bytes_changed(root, c4) == 2 * BLOCK, "a damaged delta was believed: %d bytes" % bytes_changed(root, c4))
    h.check()


def downgrade_to_4(root):
    # (format 6 kept a scan's entry rows in entry; format 7 the stat cache as nine columns)
    c = sqlite3.connect(db(root))
    T.checkpoint_to_format_8(c)
    T.statcache_to_format_7(c)
    c.commit()
    c.close()
    sql(root, "INSERT INTO entry SELECT * FROM entry_log", "DROP TABLE entry_log", "DROP TABLE blockhash", "ALTER TABLE checkpoint DROP COLUMN tracked",
        "ALTER TABLE checkpoint DROP COLUMN pause_ns", "PRAGMA user_version=4")


@with_store
def test_upgrade_from_format_4(root):
    """A format 4 store (no blockhash table) opens, is upgraded in place,
    keeps every checkpoint, and its next scans fill the table."""
    h = T.History(root)
    make_big(root)
    T.write_file(os.path.join(root, "small"), b"small")
    h.checkpoint()
    T.patch_file(os.path.join(root, "big"), 8 * BLOCK, block_data(8))
    h.checkpoint()
    downgrade_to_4(root)
    T.run(["-C", root, "log"])
    expect(T.index_value(root, "PRAGMA user_version") == 11, "upgraded to format 11 (through 5 .. 10)")
    expect(T.index_value(root, "SELECT count(*) FROM blockhash") == 0, "an empty table")
    h.check()
    T.patch_file(os.path.join(root, "big"), 9 * BLOCK, block_data(9))
    c3 = h.checkpoint()
    expect(T.index_value(root, "SELECT ver FROM blockhash") == c3, "filled by the first scan")
    T.patch_file(os.path.join(root, "big"), 10 * BLOCK, block_data(10))
    h.checkpoint()
    h.check()
    T.run(["-C", root, "verify", "--data"])


if __name__ == "__main__":
    T.main([test_scan_reads_the_row_not_the_blocks, test_row_of_another_branch_is_not_used, test_shrink_then_grow,
            test_damaged_or_moved_row_is_ignored, test_rename_prune_and_removal, test_upgrade_from_format_4,
            test_delta_until_an_eighth_then_whole_row, test_grown_file_delta, test_damaged_or_moved_delta_is_ignored])
