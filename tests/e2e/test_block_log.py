#!/usr/bin/env python3
"""A scan checkpoint's block rows kept together (FORMAT.md 3.5.1, issue 21):
up to INDEX_LOG_CKPT_ROWS of them go to block_log, a small table, instead of
one page of the big `block` B-tree per changed block; the log is merged into
`block` by the scan checkpoint that finds more than STORE_LOG_KEEP_ROWS rows
there, by a session as it starts, by prune in its own transaction (a refused
or dry-run prune leaves the store as it was) and by du; an in-place restore
reads it where it is. Every checkpoint is restored and compared
with a copy of the tree taken when it was made."""
import contextlib
import os
import random
import subprocess
import time

import mtmtest as T
from mtmtest import Failure, expect

BLOCK = 4096
KEEP_ROWS = 1 << 13  # STORE_LOG_KEEP_ROWS (src/store/store.h)
LOG_CKPT_ROWS = 4096  # INDEX_LOG_CKPT_ROWS (src/store/index.h)


def with_store(fn):
    return T.with_store(fn, "mtm-blog-")


def rows(root, table, where="1"):
    return T.index_value(root, "SELECT count(*) FROM %s WHERE %s" % (table, where))


@with_store
def test_scattered_changes_touch_no_page_of_block(root):
    """2% of a 32 MiB file's blocks rewritten, scattered: the checkpoint
    writes no page of `block` or its indexes (the code before wrote about
    one per changed block, up to every leaf of the table), and its rows sit
    in a few pages of block_log. It syncs the WAL once, with its commit
    (a new WAL's header was synced first by itself, and the fold at close
    synced the WAL again with nothing new in it)."""
    nblocks = 8192
    path = os.path.join(root, "big")
    rnd = random.Random(21)
    T.write_file(path, rnd.randbytes(nblocks * BLOCK))
    h = T.History(root)
    h.checkpoint()
    changed = sorted(rnd.sample(range(nblocks), nblocks // 50))
    with open(path, "r+b") as f:
        for b in changed:
            f.seek(b * BLOCK)
            f.write(rnd.randbytes(BLOCK))
    trace = os.path.join(T.tempdir("mtm-blog-trace-"), "trace")
    m = T.manifest(root)
    p = T.run(["-C", root, "checkpoint", "-q"], env=dict(os.environ, METAMORI_IO_TRACE=trace))
    ck = int(p.stdout.split()[-1])
    h.seen[ck] = m
    recs = T.read_trace(trace)
    written = T.wal_pages(recs)
    T.rmtree(os.path.dirname(trace))
    # the commit's sync, with the new WAL's header; the fold at close syncs
    # only index.db: the WAL holds nothing written since the commit's sync
    wal_syncs = [op for op, p, _, _, _, _ in recs if op == "S" and p.endswith("/index.db-wal")]
    expect(len(wal_syncs) == 1, "the checkpoint synced the index's WAL %d times, not once (the commit)"
           % len(wal_syncs))
    of_block = written & T.index_pages(root, ["block", "block_by_ckpt", "block_by_chunk"])
    of_log = written & T.index_pages(root, ["block_log"])
    expect(rows(root, "block_log", "ckpt=%d" % ck) == len(changed),
           "block_log holds %d rows of checkpoint %d, not %d" % (rows(root, "block_log", "ckpt=%d" % ck), ck,
                                                                  len(changed)))
    expect(not of_block, "the checkpoint of %d changed blocks wrote %d pages of block and its indexes"
           % (len(changed), len(of_block)))
    expect(0 < len(of_log) <= len(changed) // 50 + 4,
           "the checkpoint's %d rows took %d pages of block_log" % (len(changed), len(of_log)))
    h.check()
    T.restore(root, 1)  # in place: reads the log, leaves it
    T.assert_same(h.seen[1], T.manifest(root), "checkpoint 1 restored in place")
    expect(rows(root, "block_log") == len(changed), "an in-place restore merged block_log")
    T.run(["-C", root, "du"])
    expect(rows(root, "block_log") == 0, "du left block_log rows")
    expect(rows(root, "block", "ckpt=%d" % ck) == len(changed), "the merge lost rows")
    T.restore(root, ck)
    T.assert_same(h.seen[ck], T.manifest(root), "checkpoint %d restored in place" % ck)
    h.check()


@with_store
def test_log_merged_past_its_bound(root):
    """A checkpoint with more than INDEX_LOG_CKPT_ROWS block rows (a first
    one) puts them in block; fewer go to the log, which grows until a scan
    checkpoint finds more than STORE_LOG_KEEP_ROWS rows there and merges it
    first."""
    path = os.path.join(root, "big")
    rnd = random.Random(3)
    T.write_file(path, rnd.randbytes((LOG_CKPT_ROWS + 1) * BLOCK))
    h = T.History(root)
    c = h.checkpoint()
    expect(rows(root, "block", "ckpt=%d" % c) == LOG_CKPT_ROWS + 1 and rows(root, "block_log") == 0,
           "a first checkpoint of %d blocks: %d rows in block, %d in block_log"
           % (LOG_CKPT_ROWS + 1, rows(root, "block", "ckpt=%d" % c), rows(root, "block_log")))
    # rewritten whole, less its last block, until the log passes its bound
    n, logged = 0, 0
    while logged <= KEEP_ROWS:
        with open(path, "r+b") as f:
            f.write(rnd.randbytes(LOG_CKPT_ROWS * BLOCK))
        c = h.checkpoint()
        n += 1
        logged += LOG_CKPT_ROWS
        expect(rows(root, "block_log") == logged, "after %d checkpoints: %d rows in block_log, not %d"
               % (n, rows(root, "block_log"), logged))
    T.patch_file(path, 5 * BLOCK, b"x" * 100)
    c = h.checkpoint()
    expect(rows(root, "block_log") == 1 and rows(root, "block_log", "ckpt=%d" % c) == 1,
           "after the merge: block_log holds %d rows" % rows(root, "block_log"))
    expect(rows(root, "block", "ckpt=%d" % (c - 1)) == LOG_CKPT_ROWS, "the merge lost rows")
    # (16 MiB a restore: every other checkpoint, the first and the last two)
    keep = sorted(h.seen)
    keep = set(keep[:1] + keep[-2:] if os.environ.get("MTM_SANITIZED") else keep[::2] + keep[-2:])
    h.seen = {k: v for k, v in h.seen.items() if k in keep}
    h.check()


def store_bytes(root):
    """T.store_state, where an empty WAL and no WAL are the same bytes."""
    st = T.store_state(root)
    if st.get("index.db-wal") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855":
        del st["index.db-wal"]
    return st


@with_store
def test_prune_merges_in_its_transaction(root):
    """prune merges the log in its own transaction: refused, or a dry run,
    it leaves every byte of the index as it was; done, it keeps what every
    kept checkpoint reads."""
    path = os.path.join(root, "f")
    rnd = random.Random(5)
    T.write_file(path, rnd.randbytes(64 * BLOCK))
    h = T.History(root)
    for i in range(4):
        T.patch_file(path, rnd.randrange(64) * BLOCK, rnd.randbytes(300))
        h.checkpoint()
    expect(rows(root, "block_log") > 0, "no rows in block_log")
    before = store_bytes(root)
    T.run_fail(["-C", root, "prune", "--keep", "99"])
    T.assert_same(before, store_bytes(root), "the store after a refused prune")
    T.run(["-C", root, "prune", "--keep-last", "2", "--dry-run"])
    T.assert_same(before, store_bytes(root), "the store after prune --dry-run")
    T.run(["-C", root, "prune", "--keep-last", "2"])
    expect(rows(root, "block_log") == 0, "prune left rows in block_log")
    for ck in list(h.seen):
        if ck < 3:
            del h.seen[ck]
    h.check()
    T.run(["-C", root, "verify", "--data"])


@contextlib.contextmanager
def never_idle_session(root, kill=False):
    """`metamori run` of a program that waits, on root, up; a session never
    idle (no merge of its own). At the end it is killed (SIGKILL) if kill,
    and its program told to end; the Popen gets stderr_text."""
    env = dict(os.environ, METAMORI_TEST_IDLE_MS="600000")
    flag = os.path.join(T.tempdir("mtm-blog-run-"), "go")
    sock = os.path.join(root, ".metamori", "session", "sock")
    if os.path.lexists(sock):
        os.unlink(sock)  # a killed session's: wait for the new one's
    p = subprocess.Popen([T.METAMORI, "-C", root, "run", "-q", "--", "sh", "-c",
                          "while [ ! -e %s ]; do sleep 0.05; done" % flag],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.time() + 30
        while not os.path.exists(sock) and time.time() < end:
            time.sleep(0.05)
        yield p
    finally:
        if kill:
            p.kill()
        open(flag, "w").close()
        p.stderr_text = p.communicate(timeout=60)[1]
        T.rmtree(os.path.dirname(flag))


@with_store
def test_session_merges_as_it_starts(root):
    """A session takes block_log for empty once it merged it: it merges the
    scan checkpoints' rows as it starts, before any checkpoint of its own,
    and what it then records reads right."""
    path = os.path.join(root, "f")
    rnd = random.Random(9)
    T.write_file(path, rnd.randbytes(64 * BLOCK))
    h = T.History(root)
    h.checkpoint()
    T.patch_file(path, 7 * BLOCK, b"y" * 5000)
    h.checkpoint()
    expect(rows(root, "block_log") > 0, "no rows in block_log")
    with never_idle_session(root) as p:
        left = rows(root, "block_log")
        T.patch_file(path, 40 * BLOCK, b"z" * 3000)
        h.checkpoint()  # asked of the session
    expect(p.returncode == 0, "run: %d %s" % (p.returncode, p.stderr_text))
    expect(left == 0, "a session started with %d rows in block_log" % left)
    h.check()
    T.run(["-C", root, "verify", "--data"])


def killed_session_checkpoints(root, h, rnd, n):
    """n checkpoints asked of a session (its checkpoints put their entry
    and block rows in entry_log and block_log), which is then killed before
    any idle merge: the rows stay in the logs."""
    with never_idle_session(root, kill=True):
        for i in range(n):
            T.patch_file(os.path.join(root, "f"), rnd.randrange(64) * BLOCK, rnd.randbytes(300))
            T.write_file(os.path.join(root, "d", "n%d" % rnd.randrange(1 << 30)), b"new")
            h.checkpoint()  # asked of the session


@with_store
def test_entry_log_merged_by_du_and_prune(root):
    """A session's entry rows wait in entry_log (FORMAT.md 3.4.1); a session
    killed before its idle merge leaves them there. du merges them (its
    queries read entry alone); prune merges them in its own transaction: a
    refused or dry-run prune leaves every byte of the index as it was, a
    done one keeps what every kept checkpoint reads."""
    rnd = random.Random(7)
    T.write_file(os.path.join(root, "f"), rnd.randbytes(64 * BLOCK))
    os.mkdir(os.path.join(root, "d"))
    h = T.History(root)
    h.checkpoint()
    killed_session_checkpoints(root, h, rnd, 2)
    expect(rows(root, "entry_log") >= 4, "entry_log holds %d rows" % rows(root, "entry_log"))
    T.run(["-C", root, "du"])
    expect(rows(root, "entry_log") == 0 and rows(root, "block_log") == 0,
           "du left %d rows in entry_log, %d in block_log" % (rows(root, "entry_log"), rows(root, "block_log")))
    h.check()
    killed_session_checkpoints(root, h, rnd, 3)
    T.run(["-C", root, "log"])  # (a reader: folds the killed session's WAL as it closes, merges nothing)
    expect(rows(root, "entry_log") >= 6, "entry_log holds %d rows" % rows(root, "entry_log"))
    before = store_bytes(root)
    T.run_fail(["-C", root, "prune", "--keep", "99"])
    T.assert_same(before, store_bytes(root), "the store after a refused prune")
    T.run(["-C", root, "prune", "--keep-last", "3", "--dry-run"])
    T.assert_same(before, store_bytes(root), "the store after prune --dry-run")
    h.check()
    T.run(["-C", root, "prune", "--keep-last", "3"])
    expect(rows(root, "entry_log") == 0, "prune left %d rows in entry_log" % rows(root, "entry_log"))
    kept = [e["id"] for e in T.log_json(root)]
    h.seen = {k: v for k, v in h.seen.items() if k in kept}
    h.check()
    T.run(["-C", root, "verify", "--data"])


ENTRY_LOG_SETTLE_ROWS = 1 << 12  # src/store/lock.c


@with_store
def test_entry_log_merged_past_its_bound(root):
    """A session whose checkpoints come with no idle second between them
    merges entry_log into entry in the checkpoint that finds more than
    ENTRY_LOG_SETTLE_ROWS of its rows there: the log's leaves a commit
    dirties grow with it."""
    n = 1100
    d = os.path.join(root, "d")
    os.mkdir(d)
    for i in range(n):
        T.write_file(os.path.join(d, "f%04d" % i), b"0")
    h = T.History(root)
    h.checkpoint()
    logged = 0
    with never_idle_session(root):
        for k in range(1, 6):
            for i in range(n):
                T.write_file(os.path.join(d, "f%04d" % i), b"%d" % k)
            c = h.checkpoint()  # asked of the session: every file's entry row
            logged = n if logged > ENTRY_LOG_SETTLE_ROWS else logged + n
            expect(rows(root, "entry_log") == logged and rows(root, "entry_log", "ckpt=%d" % c) == n,
                   "after %d checkpoints: %d rows in entry_log (%d of the last), not %d"
                   % (k, rows(root, "entry_log"), rows(root, "entry_log", "ckpt=%d" % c), logged))
    expect(rows(root, "entry_log") == 0, "the session ended with rows in entry_log")
    keep = sorted(h.seen)
    h.seen = {k: v for k, v in h.seen.items() if k in keep[:1] + keep[-3:]}  # (before and after the merge)
    h.check()


ENTRY_KEEP_ROWS = 1 << 12  # STORE_ENTRY_LOG_KEEP_ROWS (src/store/store.h)


@with_store
def test_scan_entry_rows_in_the_log(root):
    """A scan checkpoint of few entry rows puts them in entry_log (FORMAT.md
    3.4.1), not one leaf of the big `entry` B-tree per changed path; a
    first checkpoint of more than INDEX_LOG_CKPT_ROWS paths puts them in
    `entry`; the log grows until a scan checkpoint finds more than
    STORE_ENTRY_LOG_KEEP_ROWS rows there and merges it first. Readers
    (status, diff, restore, verify) read both tables; du merges."""
    n, per_dir, batch = 4400, 100, 1000
    rnd = random.Random(11)
    names = ["d%02d/f%04d" % (i // per_dir, i) for i in range(n)]
    for d in range(n // per_dir):
        os.mkdir(os.path.join(root, "d%02d" % d))
    for p in names:
        T.write_file(os.path.join(root, p), rnd.randbytes(64))
    h = T.History(root)
    c = h.checkpoint()
    expect(rows(root, "entry", "ckpt=%d" % c) > LOG_CKPT_ROWS and rows(root, "entry_log") == 0,
           "a first checkpoint of %d files: %d entry rows in entry, %d in entry_log"
           % (n, rows(root, "entry", "ckpt=%d" % c), rows(root, "entry_log")))
    logged, k = 0, 0
    while True:
        k += 1
        touched = rnd.sample(names, batch)
        for p in touched:
            T.write_file(os.path.join(root, p), rnd.randbytes(64))
        gone = names.pop(rnd.randrange(len(names)))
        os.remove(os.path.join(root, gone))
        new = "d%02d/new%d" % (rnd.randrange(n // per_dir), k)
        T.write_file(os.path.join(root, new), b"new")
        names.append(new)
        if logged > ENTRY_KEEP_ROWS:
            break
        trace = os.path.join(T.tempdir("mtm-elog-trace-"), "trace")
        m = T.manifest(root)
        p = T.run(["-C", root, "checkpoint", "-q"], env=dict(os.environ, METAMORI_IO_TRACE=trace))
        c = int(p.stdout.split()[-1])
        h.seen[c] = m
        written = T.wal_pages(T.read_trace(trace))
        T.rmtree(os.path.dirname(trace))
        of_entry = written & T.index_pages(root, ["entry", "entry_by_ckpt", "entry_links"])
        in_log = rows(root, "entry_log", "ckpt=%d" % c)
        expect(in_log >= batch + 2 and not rows(root, "entry", "ckpt=%d" % c),
               "scan checkpoint %d: %d entry rows in entry_log, %d in entry"
               % (c, in_log, rows(root, "entry", "ckpt=%d" % c)))
        expect(not of_entry, "scan checkpoint %d wrote %d pages of entry and its indexes" % (c, len(of_entry)))
        logged += in_log
        expect(rows(root, "entry_log") == logged, "after %d checkpoints: %d rows in entry_log, not %d"
               % (k, rows(root, "entry_log"), logged))
        T.run(["-C", root, "status"])  # (exit 0: nothing changed since)
    # past the bound: this scan merges the log first, then logs its own rows
    c = h.checkpoint()
    expect(rows(root, "entry_log") == rows(root, "entry_log", "ckpt=%d" % c) >= batch + 2,
           "after the merge: entry_log holds %d rows, %d of checkpoint %d"
           % (rows(root, "entry_log"), rows(root, "entry_log", "ckpt=%d" % c), c))
    expect(rows(root, "entry", "ckpt=%d" % (c - 1)) >= batch + 2, "the merge lost rows")
    T.run(["-C", root, "status"])
    out = T.run(["-C", root, "diff", str(c - 1), str(c)]).stdout
    expect(out.strip(), "no difference between checkpoints %d and %d" % (c - 1, c))
    T.run(["-C", root, "verify", "--data"])
    # (a restore of the 4,400 files takes seconds: two of them) c - 1's rows
    # merged into entry, c's in the log
    h.seen = {k: v for k, v in h.seen.items() if k in (c - 1, c)}
    h.check()
    T.run(["-C", root, "du"])
    expect(rows(root, "entry_log") == 0, "du left %d rows in entry_log" % rows(root, "entry_log"))
    expect(rows(root, "entry", "ckpt=%d" % c) >= batch + 2, "du's merge lost rows")


@with_store
def test_entry_and_log_read_in_one_path_order(root):
    """Readers read `entry` and `entry_log` as one stream in path order
    (strcmp: '-' < '/' < '0', so a directory's subtree is not next to the
    directory), each table in its key's order, merged as they go (W2m):
    paths of one table fall between paths of the other, and a path whose
    versions are in both is one entry. With the order wrong, a scan would
    see files as removed and added again."""
    names = ["a-b", "a.c", "a/x", "a/b/z", "a/b-c", "a/b0", "a0", "ab", "b", "c/a-b", "c/a/x", "c/a0"]
    for p in names:
        os.makedirs(os.path.dirname(os.path.join(root, p)), exist_ok=True)
        T.write_file(os.path.join(root, p), p.encode())
    h = T.History(root)
    first = h.checkpoint()
    expect(rows(root, "entry_log") == 0, "a first checkpoint's rows went to entry_log")
    # every other path gets a version in the log; new paths fall between the old
    for p in names[::2]:
        T.write_file(os.path.join(root, p), b"v2 " + p.encode())
    new = ["a/b.1", "a-c", "a/a", "a/b/y", "a00", "c/a.b", "c/a/w"]
    for p in new:
        os.makedirs(os.path.dirname(os.path.join(root, p)), exist_ok=True)
        T.write_file(os.path.join(root, p), p.encode())
    c = h.checkpoint()
    expect(rows(root, "entry_log", "ckpt=%d" % c) >= len(names[::2]) + len(new) and
           not rows(root, "entry", "ckpt=%d" % c),
           "checkpoint %d: %d entry rows in entry_log, %d in entry"
           % (c, rows(root, "entry_log", "ckpt=%d" % c), rows(root, "entry", "ckpt=%d" % c)))
    p = T.run(["-C", root, "status"])
    expect("nothing changed" in p.stdout, "status after checkpoint %d: %s" % (c, p.stdout.strip()))
    out = [l.split()[:2] for l in T.run(["-C", root, "diff", str(first), str(c)]).stdout.splitlines() if l]
    want = sorted([["M", p] for p in names[::2]] + [["A", p] for p in new], key=lambda kp: kp[1].encode())
    expect(out == want, "diff %d %d (in path order): %s" % (first, c, out))
    # a scan of nothing changed finds nothing, and both checkpoints restore
    again = h.checkpoint()
    out = T.run(["-C", root, "diff", str(c), str(again)]).stdout.strip()
    expect(not out, "a checkpoint of the same tree differs: %s" % out)
    h.check()


if __name__ == "__main__":
    # BLOCK_LOG_PART=bounds: the two cases that fill entry_log past its bound
    # (hundreds of commands: ctest's e2e_block_log_bounds, a long suite that
    # the sanitizer build runs in `make torture`, for `make test`'s 10
    # minutes; the normal build runs it in `make test`); =rest: the others;
    # unset: all
    bounds = [test_entry_log_merged_past_its_bound, test_scan_entry_rows_in_the_log]
    rest = [test_scattered_changes_touch_no_page_of_block, test_log_merged_past_its_bound,
            test_prune_merges_in_its_transaction, test_session_merges_as_it_starts,
            test_entry_log_merged_by_du_and_prune, test_entry_and_log_read_in_one_path_order]
    part = os.environ.get("BLOCK_LOG_PART")
    T.main(bounds if part == "bounds" else rest if part == "rest" else rest + bounds)
