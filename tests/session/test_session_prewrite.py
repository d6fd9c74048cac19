#!/usr/bin/env python3
"""Writing ahead (src/session/prewrite.c): while the program runs, the
session writes the blocks it pre-copied into the newest pack, past its
committed size, and the next checkpoint names the records whose slots it
records from. These tests check that the checkpoint uses them when it may,
never when it may not (a block rewritten since, the pack rewritten by
prune's gc, a failed write), that what nobody uses is counted dead or cut
off, and that every checkpoint restores exactly and verifies."""
import os
import random
import re
import signal
import subprocess
import sys
import time

import mtmtest as T
import sessiontest as S
from test_session_cli import (poker, poker_session, poker_ready, poke_step, session_up, tracked_checkpoint, assert_restore_to,
                              wait_for, checkpoint_may_fail, assert_refused_start, trace_records)


def pack_tail(root):
    """Bytes in the pack files past what the index says they hold: what
    was written ahead and not (yet) committed."""
    d = os.path.join(root, ".metamori", "packs")
    files = sum(os.path.getsize(os.path.join(d, n)) for n in os.listdir(d))
    return files - (T.index_value(root, "SELECT COALESCE(SUM(size), 0) FROM pack") or 0)


def tail_records(root):
    """Bytes past the packs' committed sizes that are not zeros: records
    (the room a session keeps past them is zeros, at most 256 KiB and a
    page)."""
    d = os.path.join(root, ".metamori", "packs")
    n = 0
    for name in os.listdir(d):
        pid = int(name.split(".")[0])
        size = T.index_value(root, "SELECT size FROM pack WHERE id=%d" % pid) or 0
        with open(os.path.join(d, name), "rb") as f:
            f.seek(size)
            tail = f.read()
        if tail.strip(b"\0") or len(tail) > (256 << 10) + 4096:
            n += len(tail)
    return n


def dead(root):
    return T.index_value(root, "SELECT COALESCE(SUM(dead), 0) FROM pack") or 0


def blocks_used(err):
    """The "N blocks used from it" of each tracked checkpoint's debug line."""
    return [int(m) for m in re.findall(r"written ahead(?: \(not used: a failure\))?, (\d+) blocks used from it", err)]


def verify_data(root):
    p = T.run(["-C", root, "verify", "--data"], check=False)
    if p.returncode:
        raise T.Failure("verify --data: %d\n%s%s" % (p.returncode, p.stdout, p.stderr))


# (no watcher: the poker is Python, whose code holds a system call's bytes
# by chance, so with fanotify its writes are compared whole (session/bypass.c)
# and take nothing written ahead; the write-ahead itself is what these test)
DEBUG = dict(os.environ, METAMORI_DEBUG_SESSION="1", METAMORI_WATCH="off")
# The writer trusted under the watcher (syscall user dispatch: the Python
# interpreter's code holds a system call instruction's bytes, and a file an
# untrusted writer wrote is compared whole, never written ahead).
TRUSTED = dict(os.environ, METAMORI_DISPATCH="1")


def test_blocks_written_ahead_are_used():
    """40 scattered blocks and a whole aligned group, written while the
    program runs, are in the pack before the checkpoint is asked for; the
    checkpoint takes all 56 from there, writes nothing dead and leaves no
    tail but the room's zeros (and none once the session ends); the
    checkpoint restores exactly and verifies."""
    rnd = random.Random(5)
    root = S.new_tree({"big": rnd.randbytes(2 << 20)})
    ctl = T.tempdir("mtm-ctl-")
    blocks = sorted(rnd.sample(range(480), 40))
    writes = [[(b * 4096, rnd.randbytes(4096)) for b in blocks] + [(496 * 4096, rnd.randbytes(16 * 4096))]]
    with poker_session(root, ctl, writes, os.path.join(root, "big"), env=DEBUG) as sess:
        T.checkpoint(root, "session start")
        poke_step(ctl, 0)
        wait_for(lambda: pack_tail(root) >= 56 * 4096, "the blocks to be written ahead")
        taken = [tracked_checkpoint(root, "written ahead")]
        tail = tail_records(root)
    err = sess.stderr.read()
    if blocks_used(err)[-1:] != [56]:
        raise T.Failure("the checkpoint did not take the 56 blocks from what was written ahead: %r\n%s"
                        % (blocks_used(err), err[-2000:]))
    if tail or dead(root):
        raise T.Failure("after the checkpoint: %d bytes of tail, %d dead" % (tail, dead(root)))
    if pack_tail(root):
        raise T.Failure("the session left %d bytes past the packs' committed sizes" % pack_tail(root))
    assert_restore_to(root, taken, "blocks written ahead")
    verify_data(root)
    T.rmtree(root)


def test_block_rewritten_after_it_was_written_ahead():
    """Block 5 is written ahead, then rewritten (with block 7) and written
    ahead again: the checkpoint records the newest bytes, and the first
    record (one block and its 40-byte header) is counted dead, exactly."""
    rnd = random.Random(6)
    root = S.new_tree({"f": rnd.randbytes(16 * 4096)})
    ctl = T.tempdir("mtm-ctl-")
    # (random bytes: stored raw, so the records' sizes are known)
    writes = [[(5 * 4096, rnd.randbytes(4096))], [(5 * 4096, rnd.randbytes(4096)), (7 * 4096, rnd.randbytes(4096))]]
    with poker_session(root, ctl, writes, os.path.join(root, "f"), env=DEBUG) as sess:
        T.checkpoint(root, "session start")
        poke_step(ctl, 0)
        wait_for(lambda: pack_tail(root) >= 4096 + 40, "block 5 to be written ahead")
        poke_step(ctl, 1)
        # (block 7 is enough to wait for: if block 5's new bytes were not
        # written ahead, its first record must not be used for them)
        wait_for(lambda: pack_tail(root) >= 2 * 4096 + 80, "block 7 to be written ahead")
        taken = [tracked_checkpoint(root, "rewritten")]
    err = sess.stderr.read()
    assert_restore_to(root, taken, "a block rewritten after it was written ahead")
    if blocks_used(err)[-1:] != [2]:
        raise T.Failure("blocks used from what was written ahead: %r" % blocks_used(err))
    if dead(root) != 4096 + 40:
        raise T.Failure("%d bytes counted dead, not the first record's %d" % (dead(root), 4096 + 40))
    verify_data(root)
    T.rmtree(root)


def test_prune_rewrites_the_pack_written_into():
    """prune's gc rewrites the pack the session is writing ahead into (and
    removes it) between two checkpoints: the records written into the old
    file are not used, and the checkpoint is exact."""
    rnd = random.Random(7)
    root = S.new_tree({"f": rnd.randbytes(64 * 4096)})
    ctl = T.tempdir("mtm-ctl-")
    writes = [[(0, rnd.randbytes(64 * 4096))], [(b * 4096, rnd.randbytes(4096)) for b in range(0, 64, 8)]]
    packs = os.path.join(root, ".metamori", "packs")
    with poker_session(root, ctl, writes, os.path.join(root, "f"), env=DEBUG) as sess:
        T.checkpoint(root, "session start")
        poke_step(ctl, 0)
        taken = [tracked_checkpoint(root, "all rewritten")]
        poke_step(ctl, 1)
        before = sorted(os.listdir(packs))
        wait_for(lambda: pack_tail(root) >= 8 * 4096, "the blocks to be written ahead")
        T.run(["-C", root, "prune", "--keep-last", "1", "--gc-threshold", "0"])
        if set(before) <= set(os.listdir(packs)):
            raise T.Failure("gc did not rewrite the pack written into: %r then %r" % (before, os.listdir(packs)))
        taken.append(tracked_checkpoint(root, "after gc"))
    err = sess.stderr.read()
    if blocks_used(err)[-1:] != [0]:
        raise T.Failure("blocks used from a pack gc had removed: %r" % blocks_used(err))
    assert_restore_to(root, taken[1:], "the pack written into was rewritten")
    verify_data(root)
    T.rmtree(root)


def test_session_killed_after_writing_ahead():
    """The session dies (SIGKILL) with records written ahead: they are an
    unreferenced tail, which the next checkpoint's writer cuts off; that
    checkpoint is exact and the store verifies."""
    rnd = random.Random(8)
    root = S.new_tree({"f": rnd.randbytes(256 * 4096)})
    ctl = T.tempdir("mtm-ctl-")
    writes = [[(b * 4096, rnd.randbytes(4096)) for b in rnd.sample(range(256), 30)]]
    sess = subprocess.Popen([T.METAMORI, "-C", root, "run", "-q", "--"] + poker(ctl, writes, os.path.join(root, "f")),
                            env=TRUSTED, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: session_up(root), "the session")
        poker_ready(ctl)
        T.checkpoint(root, "session start")
        poke_step(ctl, 0)
        wait_for(lambda: pack_tail(root) >= 30 * 4096, "the blocks to be written ahead")
        os.kill(sess.pid, signal.SIGKILL)
        sess.wait(timeout=60)
        man = T.manifest(root)
        ckpt = T.checkpoint(root, "after the kill")
        if pack_tail(root):
            raise T.Failure("%d bytes written ahead by the dead session are still there" % pack_tail(root))
        assert_restore_to(root, [(ckpt, man)], "after a session died having written ahead")
        verify_data(root)
    finally:
        open(os.path.join(ctl, "stop"), "w").close()
        if sess.poll() is None:
            sess.kill()
            sess.wait()
    T.rmtree(root)


def test_session_ends_with_records_written_ahead():
    """Blocks written ahead after the last checkpoint, and the session ends:
    it cuts them off itself (no tail is left for the next writer)."""
    rnd = random.Random(9)
    root = S.new_tree({"f": rnd.randbytes(64 * 4096)})
    ctl = T.tempdir("mtm-ctl-")
    writes = [[(b * 4096, rnd.randbytes(4096)) for b in range(0, 64, 4)]]
    with poker_session(root, ctl, writes, os.path.join(root, "f"), env=TRUSTED):
        # (under the watcher, as the kill test: a checkpoint before Python's
        # start is over leaves its code change (MTM_REC_CODE) in the writes'
        # interval, and they are compared whole, never written ahead)
        poker_ready(ctl)
        T.checkpoint(root, "session start")
        poke_step(ctl, 0)
        wait_for(lambda: pack_tail(root) >= 16 * 4096, "the blocks to be written ahead")
    if pack_tail(root):
        raise T.Failure("the session left %d bytes written ahead past the packs' committed sizes" % pack_tail(root))
    verify_data(root)
    T.rmtree(root)


def pack_ops(recs):
    """The indexes of the writes and syncs of pack files among I/O trace records."""
    return [k for k, r in enumerate(recs) if r[1].endswith(".pack") and r[0] in "WS"]


def synced_ahead(trace, start):
    """Since byte start of the I/O trace, the packs were written, and their
    last operation is a sync."""
    recs = trace_records(trace, start)
    ops = pack_ops(recs)
    return bool(ops) and recs[ops[-1]][0] == "S" and any(recs[k][0] == "W" for k in ops)


def commit_pack_ops(trace, start, mid, end):
    """A checkpoint's pack operations (trace records from byte mid to end)
    before its commit's WAL sync, after checking that the commit is
    durable: from byte start up to that WAL sync, the pack's last operation
    is a sync."""
    recs = trace_records(trace, start)
    from_mid = trace_records(trace, mid)
    ckpt = from_mid[:len(from_mid) - len(trace_records(trace, end))]  # (the checkpoint's records)
    wal = [k for k, r in enumerate(ckpt) if r[0] == "S" and r[1].endswith("/index.db-wal")]
    if not wal:
        raise T.Failure("the checkpoint's commit synced no WAL: %r" % ckpt[:40])
    upto = recs[:len(recs) - len(from_mid) + wal[0]]
    ops = pack_ops(upto)
    if not ops or upto[ops[-1]][0] != "S":
        raise T.Failure("a write to the pack is not synced before the commit: %r" % [upto[k] for k in ops[-5:]])
    return [ckpt[k] for k in pack_ops(ckpt[:wal[0]])]


def checkpoint_after_the_fsync_ahead(root, ctl, trace, msg):
    """In a poker's session: its start, a checkpoint, its step 0 (16
    blocks) written ahead and then fsynced ahead, and a tracked checkpoint
    (msg). Returns the I/O trace's size before step 0, before and after
    that checkpoint, and the checkpoint's (id, manifest)."""
    poker_ready(ctl)
    T.checkpoint(root, "session start")
    start = os.path.getsize(trace)
    poke_step(ctl, 0)
    wait_for(lambda: pack_tail(root) >= 16 * 4096, "the blocks to be written ahead")
    wait_for(lambda: synced_ahead(trace, start), "the fsync ahead of what was written ahead (%s)" % msg)
    mid = os.path.getsize(trace)
    taken = tracked_checkpoint(root, msg)
    return (start, mid, os.path.getsize(trace)), taken


def test_no_pack_fsync_after_the_fsync_ahead():
    """Blocks written ahead, then fsynced ahead once the program is quiet:
    the checkpoint that takes them all appends nothing to the pack and
    makes no fsync of it of its own (the one ahead covers every byte it
    names), and it stays durable: in the I/O trace every write to the pack
    comes before a sync of the pack that comes before the index's WAL sync
    that commits the checkpoint. The checkpoint restores exactly."""
    rnd = random.Random(12)
    root = S.new_tree({"f": rnd.randbytes(64 * 4096)})
    ctl = T.tempdir("mtm-ctl-")
    trace = os.path.join(T.tempdir("mtm-trace-"), "trace")
    writes = [[(b * 4096, rnd.randbytes(4096)) for b in range(0, 64, 4)]]
    # (never idle during the test: no commit of the idle session's between
    # the fsync ahead and the checkpoint's)
    env = dict(DEBUG, METAMORI_TEST_IDLE_MS="600000", METAMORI_IO_TRACE=trace)
    with poker_session(root, ctl, writes, os.path.join(root, "f"), env=env) as sess:
        at, ckpt = checkpoint_after_the_fsync_ahead(root, ctl, trace, "after the fsync ahead")
        taken = [ckpt]
    err = sess.stderr.read()
    if blocks_used(err)[-1:] != [16]:
        raise T.Failure("the checkpoint did not take the 16 blocks from what was written ahead: %r\n%s"
                        % (blocks_used(err), err[-2000:]))
    ops = commit_pack_ops(trace, *at)
    if ops:
        raise T.Failure("the checkpoint wrote or synced the pack after the fsync ahead: %r" % ops)
    assert_restore_to(root, taken, "blocks fsynced ahead")
    verify_data(root)
    T.rmtree(root)


def heartbeat_poker(ctl, writes, path, beat):
    """poker(ctl, [writes], path)'s program with a heartbeat beside it: once
    the step is done, 8 bytes written at offset 0 of beat every ~0.5 ms
    until ctl/stop (as bench_track's W2 probe: the program is not quiet, and
    beat's one partial block is never written ahead)."""
    argv = poker(ctl, [writes], path)
    text = ("import os, runpy, sys, threading, time\n"
            "def beat(ctl, beat):\n"
            "    while not os.path.exists(os.path.join(ctl, 'done0')):\n"
            "        time.sleep(0.001)\n"
            "    fd, n = os.open(beat, os.O_WRONLY), 0\n"
            "    while True:\n"
            "        n += 1\n"
            "        os.pwrite(fd, n.to_bytes(8, 'little'), 0)\n"
            "        time.sleep(0.0005)\n"
            "threading.Thread(target=beat, args=(sys.argv[3], sys.argv[1]), daemon=True).start()\n"
            "sys.argv = sys.argv[2:]  # (poker's: its program, ctl, path)\n"
            "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    prog = os.path.join(ctl, "beat.py")
    with open(prog, "w") as f:
        f.write(text)
    return [argv[0], prog, beat] + argv[1:]


def test_fsync_ahead_while_the_program_beats():
    """16 blocks written ahead, then the program rewrites 8 bytes of a small
    file every ~0.5 ms (not quiet; that file's partial block is never written
    ahead): the session fsyncs what it wrote ahead all the same, once a pass
    finds nothing more to write ahead (its debug line says so: a pass that
    found nothing at all, the program stalled for one, syncs them as
    before), and the checkpoint that takes the 16 blocks makes no early
    fsync of them: the pack's only sync in its commit is the one after its
    own write (the heartbeat's block captured in its pause), so its commit
    has two cache flushes in a row, not three
    (before: no fsync ahead while the program wrote, and the checkpoint's
    early fsync of the 16 blocks, then its own). Durable all the same: up
    to the commit's WAL sync, the pack's last operation is a sync. The
    checkpoint restores exactly."""
    root, trace, at, (ckpt, man), err = beating_checkpoint(13, "hb")
    why = re.findall(r"their fsync begun \(([^)]*)\)", err)
    if "nothing more to write ahead" not in why:
        raise T.Failure("no fsync ahead while the program wrote (fsyncs ahead: %r)\n%s" % (why, err[-2000:]))
    ops = [r[0] for r in commit_pack_ops(trace, *at)]
    if ops.count("S") > 1 or (ops and ops[0] == "S"):
        raise T.Failure("the checkpoint synced the pack before its own write (an early fsync of what was "
                        "written and synced ahead): %r" % ops)
    assert_restores_but_beat(root, ckpt, man, "hb")
    verify_data(root)
    T.rmtree(root)


def beating_checkpoint(seed, beat):
    """A tree of f (64 blocks) and beat (8 bytes); a heartbeat_poker session
    (debug lines, the I/O trace) that rewrites 16 blocks of f, then beats;
    the checkpoint taken once they were written and fsynced ahead (it must
    take the 16 blocks from there). Returns root, the trace,
    checkpoint_after_the_fsync_ahead's offsets and (id, manifest), and the
    session's stderr."""
    rnd = random.Random(seed)
    root = S.new_tree({"f": rnd.randbytes(64 * 4096), beat: bytes(8)})
    ctl = T.tempdir("mtm-ctl-")
    trace = os.path.join(T.tempdir("mtm-trace-"), "trace")
    writes = [(b * 4096, rnd.randbytes(4096)) for b in range(0, 64, 4)]
    env = dict(DEBUG, METAMORI_TEST_IDLE_MS="600000", METAMORI_IO_TRACE=trace, METAMORI_DEBUG_CHECKPOINT="1")
    argv = heartbeat_poker(ctl, writes, os.path.join(root, "f"), os.path.join(root, beat))
    sess = subprocess.Popen([T.METAMORI, "-C", root, "run", "-q", "--"] + argv, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: session_up(root), "the session")
        at, taken = checkpoint_after_the_fsync_ahead(root, ctl, trace, "the heartbeat going on")
    finally:
        open(os.path.join(ctl, "stop"), "w").close()
        S.wait_run(sess)
    err = sess.stderr.read()
    if blocks_used(err)[-1:] != [16]:
        raise T.Failure("the checkpoint did not take the 16 blocks from what was written ahead: %r\n%s"
                        % (blocks_used(err), err[-2000:]))
    T.rmtree(ctl)
    return root, trace, at, taken, err


def assert_restores_but_beat(root, ckpt, man, beat):
    """Checkpoint ckpt restores as man, but beat (changed after it, with
    8 bytes in it)."""
    to = os.path.join(T.tempdir(), "out")
    T.restore(root, ckpt, to=to)
    got = T.manifest(to)
    if got.pop(beat, (None, None, None))[2] != 8:
        raise T.Failure("%s is not 8 bytes in checkpoint %d" % (beat, ckpt))
    man.pop(beat, None)
    T.assert_same(man, got, "checkpoint %d (blocks fsynced ahead, the heartbeat going on)" % ckpt)
    T.rmtree(os.path.dirname(to))


def pack_sizes(trace, start, mid):
    """Each pack file's size at byte mid of the I/O trace, replaying its
    records from byte start on (from its first truncate there: the writer
    ahead cuts the pack to its committed size when it begins)."""
    recs = trace_records(trace, start)
    recs = recs[:len(recs) - len(trace_records(trace, mid))]
    size = {}
    for op, path, off, n in recs:
        if not path.endswith(".pack"):
            continue
        if op == "T":
            size[path] = n
        elif op == "W" and path in size:
            size[path] = max(size[path], off + n)
    return size


def test_the_pause_appends_within_the_pack_file():
    """The heartbeat's block captured in the pause is appended after the 16
    blocks written ahead. It used to go past the pack file's end: the
    commit's fsync of the pack then committed the file system's journal (the
    new size and blocks), a device flush more on the path the caller waits
    on, before the WAL's own (issue 21, W2). The fsync ahead now first gives
    the file room, zeros past the records (durable with them), and the
    checkpoint's writes land within the file's size as of that fsync. The
    room is past the committed size: ignored by readers, cut off when the
    session ends; the checkpoint restores exactly and the store verifies."""
    root, trace, at, (ckpt, man), err = beating_checkpoint(15, "hb")
    sizes = pack_sizes(trace, at[0], at[1])
    writes = [r for r in commit_pack_ops(trace, *at) if r[0] == "W"]
    if not writes:
        raise T.Failure("the checkpoint wrote nothing to the pack (the heartbeat's block?)")
    past = [(p, off, n, sizes.get(p)) for _, p, off, n in writes if sizes.get(p) is None or off + n > sizes[p]]
    if past:
        raise T.Failure("the checkpoint's pack writes past the file's end as synced ahead (path, offset, length, "
                        "size): %r" % past)
    if pack_tail(root):
        raise T.Failure("the session left %d bytes past the packs' committed sizes" % pack_tail(root))
    assert_restores_but_beat(root, ckpt, man, "hb")
    verify_data(root)
    T.rmtree(root)


def test_pack_fsync_begins_after_the_last_file_that_appends():
    """The heartbeat's file sorts first (a_hb, then f): the checkpoint
    appends its captured partial block, then only adopts f's 16 blocks
    written (and fsynced) ahead. The pack's fsync begins once a_hb is
    recorded, while f is (its debug line says so; before, it began in the
    commit, after every row, and the commit waited for it), and the commit
    still makes the one write and then the one fsync of the pack, both
    before its WAL sync. The checkpoint restores exactly."""
    root, trace, at, (ckpt, man), err = beating_checkpoint(14, "a_hb")
    begun = re.findall(r"checkpoint record: the pack's fsync begun after (.*)", err)
    if begun != ["a_hb, file 1 of 2"]:
        raise T.Failure("the pack's fsync did not begin after a_hb's record: %r\n%s" % (begun, err[-2000:]))
    ops = [r[0] for r in commit_pack_ops(trace, *at)]
    if not ops or ops != ["W"] * (len(ops) - 1) + ["S"]:  # (a pwritev: one record a segment)
        raise T.Failure("the commit's pack operations: %r, not its write then one fsync" % ops)
    assert_restores_but_beat(root, ckpt, man, "a_hb")
    verify_data(root)
    T.rmtree(root)


def sweep_faults(kind, seed, runs, take, judge):
    """The session under an injected EIO on its Nth call of kind (write,
    fsync), N from 1 to runs, on a tree of one 1 MiB file whose 40 blocks a
    poker rewrites: the session refuses to start with one line, or take(root,
    n) takes its checkpoints ([(id, manifest)]) while it runs and judge(err,
    n) reads its stderr after (1: the fault hit what the test is after).
    Every checkpoint taken restores exactly. How many runs judge counted."""
    rnd = random.Random(seed)
    hit = 0
    for n in range(1, runs + 1):
        root = S.new_tree({"big": rnd.randbytes(1 << 20)})
        ctl = T.tempdir("mtm-ctl-")
        steps = [[(b * 4096, rnd.randbytes(4096)) for b in rnd.sample(range(256), 40)]]
        env = dict(DEBUG, METAMORI_FAULT="%s:%d:EIO" % (kind, n))
        sess = subprocess.Popen([T.METAMORI, "-C", root, "run", "-q", "--"] + poker(ctl, steps, os.path.join(root, "big")),
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: session_up(root) or sess.poll() is not None, "the session")
        taken = []
        if session_up(root):
            poke_step(ctl, 0)
            time.sleep(0.3)  # passes (and writes ahead, then their fsync) run every 10-20 ms
            taken = take(root, n)
            open(os.path.join(ctl, "stop"), "w").close()
            S.wait_run(sess)
            hit += judge(sess.stderr.read(), n)
        else:
            assert_refused_start(sess, "%s %d" % (kind, n))
        assert_restore_to(root, taken, "%s %d failed" % (kind, n))
        verify_data(root)
        T.rmtree(root)
        T.rmtree(ctl)
    return hit


def test_writing_ahead_fails():
    """An injected EIO on the session's Nth write, N swept: whatever write
    it hits (its start, writing ahead, a checkpoint), the session refuses
    to start with one line, or each checkpoint is exact or fails with one
    line and records nothing, and the next is exact. Some N must hit a
    write ahead, and then nothing written ahead is used."""
    def take(root, n):
        taken = []
        man = T.manifest(root)
        ckpt = checkpoint_may_fail(root, "write %d" % n)
        if ckpt is not None:
            taken.append((ckpt, man))
        man = T.manifest(root)
        out = T.run(["-C", root, "checkpoint"]).stdout  # (scanned after a failed one)
        taken.append((int(out.split()[1]), man))
        return taken

    def judge(err, n):
        if "writing ahead failed" not in err:
            return 0
        if any(blocks_used(err)):
            raise T.Failure("write %d: blocks were used from a failed write ahead: %r" % (n, blocks_used(err)))
        return 1

    # (the session's first writes are its merge of the scan checkpoint's
    # block_log rows, ~10 index pages: the writes ahead come after them)
    hit = sweep_faults("write", 10, 32, take, judge)
    print("  %d of 32 runs failed a write ahead" % hit)
    if not hit:
        raise T.Failure("no injected write failed a write ahead")


def test_fsync_ahead_fails():
    """What was written ahead is fsynced once the program is quiet (the
    checkpoint's own fsync then finds it on the disk). An injected EIO on
    the session's Nth fsync, N swept: the session refuses to start with one
    line, or each checkpoint is exact or fails with one line, and the next
    is exact. Some N must hit the fsync ahead, and then nothing written
    ahead is used."""
    def take(root, n):
        # (an index fsync that failed while idle fails the next
        # checkpoint too, as before the fsync ahead: one of three)
        taken, later = [], None
        for k in range(4):
            man = T.manifest(root)
            ckpt = checkpoint_may_fail(root, "fsync %d, checkpoint %d" % (n, k + 1))
            if ckpt is not None:
                taken.append((ckpt, man))
                later = k if k else None
                if k:
                    break
        if later is None:
            raise T.Failure("fsync %d: no checkpoint succeeded after the first: %r" % (n, taken))
        return taken

    def judge(err, n):
        begun = err.find("their fsync begun")
        if begun < 0 or not re.search(r"writing ahead failed \(.*fsync", err[begun:]):
            return 0
        if any(blocks_used(err)):
            raise T.Failure("fsync %d: blocks were used from a write ahead whose fsync failed: %r" %
                            (n, blocks_used(err)))
        return 1

    hit = sweep_faults("fsync", 11, 12, take, judge)
    print("  %d of 12 runs failed the fsync ahead" % hit)
    if not hit:
        raise T.Failure("no injected fsync failed the fsync ahead")


if __name__ == "__main__":
    T.main([test_blocks_written_ahead_are_used, test_block_rewritten_after_it_was_written_ahead,
            test_prune_rewrites_the_pack_written_into, test_session_killed_after_writing_ahead,
            test_session_ends_with_records_written_ahead, test_no_pack_fsync_after_the_fsync_ahead,
            test_fsync_ahead_while_the_program_beats, test_the_pause_appends_within_the_pack_file,
            test_pack_fsync_begins_after_the_last_file_that_appends,
            test_writing_ahead_fails, test_fsync_ahead_fails])
