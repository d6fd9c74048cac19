#!/usr/bin/env python3
"""Files compared whole, compared before the gate closes (session/ahead.c).

Under inotify (no writer pid: every file written is compared whole), a
program writes blocks of a big file D one by one while checkpoints are
taken: every checkpoint restored must be exactly a state the program was
in (J names the last write), and the barrier must read only what was
written since the compare ahead, not D again. A write no log explains that
lands after the compare ahead (METAMORI_TEST_AHEAD_WAIT_MS holds the
checkpoint there) must be in the next checkpoint. Such a file is not
pre-copied as well (read twice, and its blocks written ahead into the
store for nothing)."""
import os
import re
import struct
import subprocess
import sys

import mtmtest as T
import sessiontest as S
import test_session_programs as TP

BLOCKS = 2048  # D: 8 MiB
# the writer's sleep every 64 writes (us): slower for a sanitized session
# (inotify's queue must keep up, and the refreshes must catch up with it)
PAUSE_US = 20000 if os.environ.get("MTM_SANITIZED") else 2000


def scatter_check(blocks):
    """The state after exactly J writes (or the one under way: J + 1)."""
    def check(d, r):
        j = struct.unpack("<Q", open(os.path.join(d, "J"), "rb").read(8))[0]
        data = open(os.path.join(d, "D"), "rb").read()
        if len(data) != blocks * 4096:
            raise T.Failure("checkpoint %d: D has %d bytes" % (r["id"], len(data)))
        last = {}
        for n in range(1, j + 1):
            last[(n * 2654435761) % blocks] = n
        under_way = (j + 1) * 2654435761 % blocks
        for b in range(blocks):
            vals = set(struct.unpack("<512Q", data[b * 4096:(b + 1) * 4096]))
            if len(vals) != 1:
                raise T.Failure("checkpoint %d: block %d of D is torn: %s" % (r["id"], b, sorted(vals)[:4]))
            v = vals.pop()
            want = {last.get(b, 0)} | ({j + 1} if b == under_way else set())
            if v not in want:
                raise T.Failure("checkpoint %d: J=%d but block %d of D holds %d (expected %s)" % (
                    r["id"], j, b, v, sorted(want)))
    return check


# The files each tree was made of (tree): a scenario whose session lost
# events is run again on the tree made over
TREES = {}


def tree(files):
    root = S.new_tree(files)
    TREES[root] = files
    return root


def run_once_more(root, body, env):
    """S.run_scenario, and once more on root made over (tree) if the
    session's watcher queue overflowed: the machine's other work made events
    faster than a starved session read them (inotify's queue, 16,384, under
    a load of 10-20), and a checkpoint after it scanned, rightly, where the
    test looks for what a tracked one does. It says so; a second overflow
    is the test's to judge (its checks then fail)."""
    p, res = S.run_scenario(root, body, preload=TP.PRELOAD, env=env)
    if T.overflowed(p.stderr) and root in TREES:
        print("again: the watcher's queue overflowed (a loaded machine): a checkpoint scanned")
        S.renew_tree(root, TREES[root])
        p, res = S.run_scenario(root, body, preload=TP.PRELOAD, env=env)
    return p, res


def scenario(root, body, env, what):
    """TP.scenario, or None (a skipped part) when inotify cannot watch the
    tree: its watches are per user, and another session may hold them all."""
    p, res = run_once_more(root, body, env)
    if "cannot watch every directory of the tree" in p.stderr:
        T.skip_part(what, "inotify's watches are used up (fs.inotify.max_user_watches)")
        T.rmtree(root)
        return None
    if not res or "tracked" not in S.modes(res):
        raise T.Failure("no checkpoint was tracked: %s\n%s" % (S.modes(res), p.stderr[-3000:]))
    return p, res


def debug_lines(stderr):
    return re.findall(r"session: (?:tracked|scanned)[^\n]*: begin [^\n]*", stderr)


def test_scattered_writes_compared_ahead():
    root = tree({})
    body = r'''
sp = subprocess.Popen([%r, "scatter", "%d", "%d"], stdin=subprocess.PIPE, cwd=ROOT)
while not (os.path.exists(P("J")) and os.path.getsize(P("J")) == 8):
    time.sleep(0.01)
for i in range(6):
    time.sleep(0.05)
    ck("scatter %%d" %% i, manifest=False)
sp.stdin.close(); sp.wait()
''' % (TP.progs(), BLOCKS, PAUSE_US)
    got = scenario(root, body, {"METAMORI_WATCH": "inotify", "METAMORI_DEBUG_SESSION": "phases"}, "scattered writes")
    if not got:
        return
    p, res = got
    S.check_restores(root, res, in_place=False, check=scatter_check(BLOCKS))
    lines = debug_lines(p.stderr)
    if len(lines) < len(res):
        raise T.Failure("no debug line per checkpoint:\n%s" % p.stderr[-3000:])
    # the first: D is new (a namespace change), copied whole, read ahead too
    m = re.search(r"compared ahead [0-9.]+ ms: (\d+) files, \d+ KiB read, \d+ blocks read again, (\d+) used\)",
                  lines[0])
    if not m or int(m.group(2)) < 1:
        raise T.Failure("the new file was not read ahead: %s" % lines[0])
    # D was compared whole at the checkpoint before: from the second one on,
    # the compare happens ahead and the barrier reads a part of D, not D
    # again. How much depends on how long the program went on writing
    # between the compare and the gate: ~1/8 of D on a quiet machine, up to
    # ~1/6 under a load of 20 (the compare ahead and the pause's captures
    # slower, the writer not); without the compare ahead it is all of D.
    small = 0
    for line in lines[1:len(res)]:
        m = re.search(r"compared ahead [0-9.]+ ms: (\d+) files, \d+ KiB read, \d+ blocks read again, (\d+) used\); "
                      r"(\d+) KiB read in the barrier", line)
        if not m:
            raise T.Failure("no compare ahead reported: %s" % line)
        if int(m.group(2)) >= 2 and int(m.group(3)) * 1024 < BLOCKS * 4096 // 2:
            small += 1
    if small < 2:
        raise T.Failure("the barrier read most of D again (%d of %d checkpoints read little):\n%s" % (
            small, len(lines) - 1, "\n".join(lines)))
    T.rmtree(root)


def test_files_compared_whole_are_not_precopied():
    """Under inotify every file written is compared whole (ahead): the
    pre-copy's passes must not read its blocks as well, nor write them ahead
    into the store, where no checkpoint uses them (the capture comes from
    the compare's reads): they were read twice, and stored twice."""
    root = tree({"D": b"\0" * (1024 * 4096)})
    body = r'''
fd = os.open(P("D"), os.O_RDWR)
for i in range(4):
    for b in range(i * 128, i * 128 + 256):
        os.pwrite(fd, bytes([i + 1]) * 4096, b * 4096)
    time.sleep(0.3)  # the passes run; the program is quiet: writing ahead would start
    ck("burst %d" % i)
os.close(fd)
'''
    got = scenario(root, body, {"METAMORI_WATCH": "inotify", "METAMORI_DEBUG_SESSION": "1"}, "bursts")
    if not got:
        return
    p, res = got
    S.check_restores(root, res, in_place=False)
    lines = debug_lines(p.stderr)
    if len(lines) < len(res):
        raise T.Failure("no debug line per checkpoint:\n%s" % p.stderr[-3000:])
    written = 4 * 256 * 4  # KiB
    precopied = sum(int(k) for k in re.findall(r"session: pre-copy pass: (\d+) KiB read", p.stderr))
    ahead = sum(int(k) for k in re.findall(r"; (\d+) KiB written ahead", "\n".join(lines)))
    for line in lines:  # every checkpoint compared D ahead
        if not re.search(r"compared ahead [0-9.]+ ms: [1-9]", line):
            raise T.Failure("D was not compared ahead: %s" % line)
    if precopied > written // 8 or ahead > written // 8:
        raise T.Failure("of %d KiB written to a file compared whole, the pre-copy read %d KiB and wrote %d KiB "
                        "ahead:\n%s" % (written, precopied, ahead, "\n".join(lines)))
    T.rmtree(root)


def test_first_compare_holds_only_what_differs():
    """The session's first checkpoint has no block hashes of its own (they
    are kept from its compares): a file compared whole then held every
    block it read (pgbench: ~250 MiB of copies, their slabs zeroed, the
    first checkpoint half the session's CPU in a 30 s run, P14). The
    parent's hashes are in the store (the scan that made it kept them, one
    row per file): only the blocks that differ are held, and the checkpoint
    is still exact."""
    data = b"".join(struct.pack("<512Q", *([b] * 512)) for b in range(1024))  # D: 4 MiB, every block its own
    root = tree({"D": data})
    body = r'''
fd = os.open(P("D"), os.O_RDWR)
for b in range(0, 1024, 128):
    os.pwrite(fd, bytes([7]) * 4096, b * 4096)
os.close(fd)
ck("eight blocks")
'''
    got = scenario(root, body, {"METAMORI_WATCH": "inotify", "METAMORI_DEBUG_SESSION": "1"}, "first compare")
    if not got:
        return
    p, res = got
    S.check_restores(root, res, in_place=False)
    m = re.findall(r"session: D compared ahead: (\d+) blocks differ", p.stderr)
    if not m:
        raise T.Failure("D was not compared ahead:\n%s" % "\n".join(debug_lines(p.stderr)))
    if int(m[0]) != 8:
        raise T.Failure("the first compare of D held %s blocks (8 differ from the parent's)" % m[0])
    T.rmtree(root)


def few_pause_faults(root, body, what):
    """body run under inotify (D compared ahead at each checkpoint): no
    pause but the first (the session's first compare, nothing kept yet)
    may fault in 24 pages or more; what: what faulted in before."""
    got = scenario(root, body, {"METAMORI_WATCH": "inotify", "METAMORI_DEBUG_SESSION": "phases"}, "96 MiB")
    if not got:
        return
    p, res = got
    lines = debug_lines(p.stderr)
    if len(lines) < len(res):
        raise T.Failure("no debug line per checkpoint:\n%s" % p.stderr[-3000:])
    faults = []
    for line in lines[1:len(res)]:
        if not re.search(r"compared ahead [0-9.]+ ms: [1-9]\d* files, \d+ KiB read, \d+ blocks read again, [1-9]", line):
            raise T.Failure("D was not compared ahead: %s" % line)
        m = re.search(r"the pause: .*?(\d+) minor faults", line)
        if not m:
            raise T.Failure("no minor faults reported for the pause: %s" % line)
        faults.append(int(m.group(1)))
    print("  the pauses faulted in %s pages" % faults)
    if not faults or (max(faults) >= 24 and not os.environ.get("MTM_SANITIZED")):
        raise T.Failure("the pauses faulted in %s pages (%s)" % (faults, what))
    T.rmtree(root)


def test_pause_takes_the_compares_hashes_without_a_copy():
    """A file compared ahead hands its block hashes (8 bytes a block of the
    whole file) to the next checkpoint's parent hashes: inside the pause,
    where they were copied into a fresh allocation, page by page faulted in
    (PostgreSQL's 130 MiB table: ~65 faults, 1-3 ms of the pause's CPU on
    this VM, BENCHMARKS-ARCHIVE.md P21). D has 96 MiB: 192 KiB of hashes,
    48 pages, and a few more at each checkpoint (D grows); no pause may
    fault in half as many (the copy did in each). Not under ASan: its
    shadow pages fault in too."""
    root = tree({"D": b"\0" * (96 << 20)})
    body = r'''
fd = os.open(P("D"), os.O_RDWR)
for i in range(12):
    for b in range(i * 7, 24576, 4099):
        os.pwrite(fd, bytes([i + 1]) * 4096, b * 4096)
    # D grows (2 MiB): its hashes are more than the last copy's, which the
    # allocator would otherwise hand back, already faulted in
    os.pwrite(fd, bytes([i + 1]) * (2 << 20), os.fstat(fd).st_size)
    ck("scatter %d" % i, manifest=False)
os.close(fd)
'''
    few_pause_faults(root, body, "D's hashes: 48 and more")


def test_pause_writes_no_fresh_memory_for_many_blocks():
    """A file compared ahead with thousands of blocks that differ: the
    capture's arrays (a pointer, a flag, a run per block here) are made and
    faulted in before the gate closes; inside the pause they were fresh
    allocations, page by page faulted in (PostgreSQL's 130 MiB table, ~8,000
    blocks changed: ~60 faults a pause, 1-2 ms on this VM,
    BENCHMARKS-ARCHIVE.md P25). D: 96 MiB, every other block of its first
    2,048 ... 24,576 rewritten in each interval: up to 12,288 runs of one
    block, ~400 KiB of arrays, more each time than the allocator has had
    back (~100 pages at the last); no pause may fault in a quarter of that.
    Not under ASan: its shadow pages fault in too."""
    root = tree({"D": b"\0" * (96 << 20)})
    body = r'''
fd = os.open(P("D"), os.O_RDWR)
for i, n in enumerate((2048, 4096, 8192, 12288, 16384, 24576)):
    buf = bytes([i + 1]) * 4096
    for b in range(0, n, 2):
        os.pwrite(fd, buf, b * 4096)
    ck("every other block of %d" % n, manifest=False)
os.close(fd)
'''
    few_pause_faults(root, body, "the arrays: up to ~100")


WRITER = r"""
import os, sys, time
u, sig = sys.argv[1], sys.argv[2]
for c in "BCD":
    while not os.path.exists(os.path.join(sig, "go." + c)):
        time.sleep(0.005)
    with open(u, "r+b") as f:
        f.write(c.encode() * 8192)
    open(os.path.join(sig, "done." + c), "w").close()
"""


def test_untraced_write_after_the_compare_is_in_the_next():
    root = S.new_tree({"U": b"A" * 8192})  # (not run again: its writer is outside)
    sig = T.tempdir("mtm-sig-")
    # U is written by a process outside the session (started here, not by
    # the traced program: no interposer), so it is compared whole, and
    # ahead; its write of D lands while checkpoint 'during' waits after its
    # compare ahead: it must be in the checkpoint after
    writer = subprocess.Popen([sys.executable, "-c", WRITER, os.path.join(root, "U"), sig])
    body = r'''
SIG = %r
def write_u(c):
    open(os.path.join(SIG, "go." + c), "w").close()
    while not os.path.exists(os.path.join(SIG, "done." + c)):
        time.sleep(0.005)
write_u("B")
ck("before")
write_u("C")
bg = subprocess.Popen([T.METAMORI, "-C", ROOT, "checkpoint", "-m", "during"], stdout=subprocess.PIPE, text=True)
time.sleep(0.2)
write_u("D")
out = bg.communicate()[0]
m = re.search(r"^checkpoint (\d+)", out, re.M)
RESULTS.append(dict(id=int(m.group(1)), mode="tracked", manifest=None, msg="during"))
ck("after")
''' % sig
    try:
        # (the session waits 400 ms after each compare ahead)
        got = scenario(root, body, {"METAMORI_WATCH": "inotify", "METAMORI_TEST_AHEAD_WAIT_MS": "400"}, "late write")
    finally:
        writer.kill()
        writer.wait()
    if not got:
        T.rmtree(sig)
        return
    p, res = got
    want = {"before": [b"B" * 8192], "during": [b"C" * 8192, b"D" * 8192], "after": [b"D" * 8192]}
    for r in res:
        to = T.tempdir("mtm-to-")
        os.rmdir(to)
        T.restore(root, r["id"], to=to)
        got = open(os.path.join(to, "U"), "rb").read()
        T.rmtree(to)
        if got not in want[r["msg"]]:
            raise T.Failure("checkpoint %d (%s): U holds %r..., expected one of %s" % (
                r["id"], r["msg"], got[:4], [w[:1] for w in want[r["msg"]]]))
    T.rmtree(root)
    T.rmtree(sig)


def test_file_let_go_unwritten_is_not_compared():
    """fanotify: a traced process that opens a file for writing and lets it
    go without writing (a database opened read-write for a read, a log
    opened and left) makes a FAN_CLOSE_WRITE, which the watcher hears so as
    to see writes through a shared mapping (test_outside_mmap_write). The
    process's logs hold every write it made, a shared writable mapping as a
    sticky record: the event says nothing more, and the file is not read
    again (it was compared whole at every checkpoint: all 8 MiB of db). A
    file it wrote through a shared mapping and let go is in the checkpoint."""
    if os.geteuid() != 0:
        T.skip_part("let go unwritten", "fanotify needs root")
        return
    root = tree({"db": os.urandom(8 << 20), "m": b"M" * 8192})
    body = r"""
lg = subprocess.Popen([%r, "letgo"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
def say(what):
    lg.stdin.write(what + "\n"); lg.stdin.flush()
    if lg.stdout.readline() != "ok\n":
        raise SystemExit("progs letgo died")
for i in range(4):
    say("step")
    ck("db opened for writing, read, let go %%d" %% i)
say("map")
ck("m written through a mapping and let go")
lg.stdin.close(); lg.wait()
""" % TP.progs()
    p, res = run_once_more(root, body, {"METAMORI_WATCH": "fanotify", "METAMORI_DEBUG_SESSION": "phases"})
    if not res or set(S.modes(res)) != {"tracked"}:
        raise T.Failure("not every checkpoint was tracked: %s\n%s" % (S.modes(res), p.stderr[-3000:]))
    S.check_restores(root, res, in_place=False)
    lines = debug_lines(p.stderr)
    if len(lines) < len(res):
        raise T.Failure("no debug line per checkpoint:\n%s" % p.stderr[-3000:])
    for line in lines[1:len(res) - 1]:  # (the first: the session's first compare)
        m = re.search(r"compared ahead [0-9.]+ ms: (\d+) files, (\d+) KiB read.*?; (\d+) KiB read in the barrier", line)
        if not m:
            raise T.Failure("no compare reported: %s" % line)
        if int(m.group(2)) + int(m.group(3)) >= 1024:
            raise T.Failure("db, opened for writing and not written, was read again:\n%s" % "\n".join(lines))
    T.rmtree(root)


if __name__ == "__main__":
    if not os.path.exists(TP.PRELOAD):
        T.exit_skipped("no interposer at %s" % TP.PRELOAD)
    T.main([test_scattered_writes_compared_ahead, test_first_compare_holds_only_what_differs,
            test_untraced_write_after_the_compare_is_in_the_next, test_files_compared_whole_are_not_precopied,
            test_pause_takes_the_compares_hashes_without_a_copy, test_pause_writes_no_fresh_memory_for_many_blocks,
            test_file_let_go_unwritten_is_not_compared])
