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
    tail; the checkpoint restores exactly and verifies."""
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
        tail = pack_tail(root)
    err = sess.stderr.read()
    if blocks_used(err)[-1:] != [56]:
        raise T.Failure("the checkpoint did not take the 56 blocks from what was written ahead: %r\n%s"
                        % (blocks_used(err), err[-2000:]))
    if tail or dead(root):
        raise T.Failure("after the checkpoint: %d bytes of tail, %d dead" % (tail, dead(root)))
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

    def pack_ops(recs):
        return [k for k, r in enumerate(recs) if r[1].endswith(".pack") and r[0] in "WS"]

    def synced_ahead():
        recs = trace_records(trace, start)
        ops = pack_ops(recs)
        return bool(ops) and recs[ops[-1]][0] == "S" and any(recs[k][0] == "W" for k in ops)

    with poker_session(root, ctl, writes, os.path.join(root, "f"), env=env) as sess:
        T.checkpoint(root, "session start")
        start = os.path.getsize(trace)
        poke_step(ctl, 0)
        wait_for(lambda: pack_tail(root) >= 16 * 4096, "the blocks to be written ahead")
        wait_for(synced_ahead, "the fsync ahead of what was written ahead")
        mid = os.path.getsize(trace)
        taken = [tracked_checkpoint(root, "after the fsync ahead")]
        end = os.path.getsize(trace)
    err = sess.stderr.read()
    if blocks_used(err)[-1:] != [16]:
        raise T.Failure("the checkpoint did not take the 16 blocks from what was written ahead: %r\n%s"
                        % (blocks_used(err), err[-2000:]))
    recs = trace_records(trace, start)
    from_mid = trace_records(trace, mid)
    ckpt = from_mid[:len(from_mid) - len(trace_records(trace, end))]  # (the checkpoint's records)
    wal = [k for k, r in enumerate(ckpt) if r[0] == "S" and r[1].endswith("/index.db-wal")]
    if not wal:
        raise T.Failure("the checkpoint's commit synced no WAL: %r" % ckpt[:40])
    if pack_ops(ckpt[:wal[0]]):
        raise T.Failure("the checkpoint wrote or synced the pack after the fsync ahead: %r" %
                        [ckpt[k] for k in pack_ops(ckpt[:wal[0]])])
    # durable: up to the commit's WAL sync, the pack's last operation is a sync
    upto = recs[:len(recs) - len(from_mid) + wal[0]]
    ops = pack_ops(upto)
    if not ops or upto[ops[-1]][0] != "S":
        raise T.Failure("a write to the pack is not synced before the commit: %r" % [upto[k] for k in ops[-5:]])
    assert_restore_to(root, taken, "blocks fsynced ahead")
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
            sess.wait(timeout=60)
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
            test_writing_ahead_fails, test_fsync_ahead_fails])
