#!/usr/bin/env python3
"""The session's side of tracking, on records written by hand.

The interposer is replaced by fakepreload.Tracer (records exactly as
protocol.h says), so each test chooses the record sequence: tracked
checkpoints must capture exactly what the records name, fall back to a scan
when they must, and every checkpoint must restore to the manifest taken when
it was made.
"""
import os
import random

import mtmtest as T
import sessiontest as S

LIBC = S.libc_path()
PRE = "from fakepreload import Tracer\nt = Tracer()\n"


def rnd(n, seed):
    return random.Random(seed).randbytes(n)


def test_tracked_writes_and_namespace():
    root = S.new_tree({"a": rnd(200000, 1), "b": b"log\n", "c": rnd(50000, 2), "d/x": b"x" * 5000,
                       "d/sub/y": rnd(9000, 3), "f": b"gone soon", "keep": rnd(30000, 4)})
    body = PRE + r'''
t.pwrite("a", 4096 * 3 + 17, b"Z" * 5000)
t.pwrite("a", 199990, b"tail-grows" * 3)
t.append("b", b"line 1\n")
t.truncate("c", 10000)
ck("writes")
t.create("e", b"new file" * 1000)
t.rename("d", "d2")
t.unlink("f")
t.mkdir("g")
t.symlink("../a", "g/link")
t.chmod("a", 0o600)
t.pwrite("c", 30000, b"regrown after a hole")
ck("namespace")
t.pwrite("d2/x", 0, b"Y")
t.rename("e", "e2")
t.truncate("a", 0)
t.pwrite("a", 8192, b"after truncate")
ck("more")
'''
    for env in ({}, {"METAMORI_NO_PRECOPY": "1"}):
        root2 = T.tempdir("mtm-twin-")
        os.rmdir(root2)
        import shutil
        shutil.copytree(root, root2, symlinks=True)
        p, res = S.run_scenario(root2, body, preload=LIBC, env=env)
        if S.modes(res) != ["tracked"] * 3:
            raise T.Failure("%s: expected 3 tracked checkpoints, got %s\n%s" % (env, S.modes(res), p.stderr))
        S.check_restores(root2, res)
        T.rmtree(root2)
    T.rmtree(root)


def test_read_in_place_past_the_capture_budget():
    # nothing may be copied to memory: the barrier holds until the files are read
    root = S.new_tree({"a": rnd(300000, 8), "b": rnd(5000, 9)})
    body = PRE + r'''
t.pwrite("a", 100000, b"Q" * 9000)
t.create("c", b"new" * 3000)
ck("tracked in place")
with open(P("b"), "ab") as f: f.write(b"unrecorded")
from fakepreload import SCAN
t.op(lambda: None, (SCAN, "", 0, 0))
ck("scanned in place")
'''
    p, res = S.run_scenario(root, body, preload=LIBC, env={"METAMORI_CAPTURE_LIMIT": "0"})
    if S.modes(res) != ["tracked", "scanned"]:
        raise T.Failure("expected tracked then scanned, got %s" % S.modes(res))
    S.check_restores(root, res)
    T.rmtree(root)


def test_many_scattered_blocks_read_by_threads():
    root = S.new_tree({"f%d" % i: rnd(256 * 4096, 20 + i) for i in range(4)})
    body = PRE + r'''
import random
rng = random.Random(5)
for step in range(2):
    for i in range(600):
        t.pwrite("f%d" % rng.randrange(4), 4096 * rng.randrange(300) + rng.randrange(4000), b"w%d" % i * 30)
    ck("scattered %d" % step)
'''
    p, res = S.run_scenario(root, body, preload=LIBC, env={"METAMORI_CAPTURE_THREADS": "3"})
    if S.modes(res) != ["tracked", "tracked"]:
        raise T.Failure("expected tracked checkpoints, got %s; the session said:\n%s" % (S.modes(res), p.stderr))
    S.check_restores(root, res)
    T.rmtree(root)


def test_rename_keeps_history():
    # a file renamed without a write keeps its history: nothing new stored
    root = S.new_tree({"big": rnd(1 << 20, 5), "dir/inner": rnd(300000, 6)})
    body = PRE + r'''
t.rename("big", "big2")
t.rename("dir", "dir2")
r = ck("renames")
'''
    p, res = S.run_scenario(root, body, preload=LIBC)
    S.check_restores(root, res)
    log = T.log_json(root)
    last = [c for c in log if c["id"] == res[0]["id"]][0]
    if res[0]["mode"] != "tracked" or last.get("bytes_stored", 0) != 0:
        raise T.Failure("rename stored data or was not tracked: %r, %s" % (last, res[0]["mode"]))
    T.rmtree(root)


def test_replaced_through_another_name():
    # a file removed and another written under a temporary name, then renamed
    # onto its path (or a new one): the freed inode is often reused, and the
    # writes were recorded under the temporary name
    root = S.new_tree({"p": b"P" * 9000, "q": b"Q" * 9000, "keep": b"k"})
    body = PRE + r'''
for i in range(3):
    t.unlink("p")
    t.create("tmp", b"%d" % i * 9000)
    t.rename("tmp", "p")
    t.unlink("q")
    t.create("tmp2", b"%d" % (i + 5) * 9000)
    t.rename("tmp2", "r%d" % i)
    t.create("q", b"Q%d" % i * 3000)
    ck("replaced %d" % i)
'''
    p, res = S.run_scenario(root, body, preload=LIBC)
    S.check_restores(root, res)
    T.rmtree(root)


def test_baseline_dirty_scans_first():
    root = S.new_tree({"a": b"one"})
    T.write_file(os.path.join(root, "a"), b"changed before the session")
    T.write_file(os.path.join(root, "new"), b"also before")
    body = PRE + r'''
ck("first")
t.pwrite("a", 0, b"C")
ck("second")
'''
    p, res = S.run_scenario(root, body, preload=LIBC)
    if S.modes(res) != ["scanned", "tracked"]:
        raise T.Failure("expected scanned then tracked, got %s" % S.modes(res))
    S.check_restores(root, res)
    T.rmtree(root)


def test_no_head_scans_first():
    root = T.tempdir()
    T.write_file(os.path.join(root, "a"), b"x" * 10000)
    T.init(root)
    p, res = S.run_scenario(root, PRE + 'ck("first")\nt.pwrite("a", 1, b"y")\nck("second")\n', preload=LIBC)
    if S.modes(res) != ["scanned", "tracked"]:
        raise T.Failure("expected scanned then tracked, got %s" % S.modes(res))
    S.check_restores(root, res)
    T.rmtree(root)


def test_scan_record_and_overflow():
    root = S.new_tree({"a": b"a" * 10000, "b": b"b" * 10000})
    body = r'''
from fakepreload import Tracer, SCAN
t = Tracer(capacity=4096)
# a change the records do not name, then a SCAN record: the checkpoint scans
with open(P("a"), "r+b") as f: f.write(b"unrecorded")
t.op(lambda: None, (SCAN, "", 0, 0))
ck("scan record")
t.pwrite("b", 0, b"tracked again")
ck("tracked")
# overflow: more records than the log holds
with open(P("b"), "r+b") as f: f.write(b"unrecorded too")
for i in range(400):
    t.pwrite("a", i, b"q")
ck("overflow")
'''
    p, res = S.run_scenario(root, body, preload=LIBC)
    if S.modes(res) != ["scanned", "tracked", "scanned"]:
        raise T.Failure("expected scanned, tracked, scanned; got %s" % S.modes(res))
    S.check_restores(root, res)
    T.rmtree(root)


def test_sticky_whole_and_scan():
    root = S.new_tree({"mm": rnd(64 * 1024, 7), "other": b"o" * 100})
    body = r'''
from fakepreload import Tracer, WHOLE, RELEASE, SCAN
import subprocess, sys
t = Tracer()
# a shared mapping: writes the interposer cannot see, compared every time
t.op(lambda: None, (WHOLE, "mm", 1, 0))
for i in range(3):
    with open(P("mm"), "r+b") as f:
        f.seek(4096 * i + 100); f.write(b"mapped write %d" % i)
    ck("whole %d" % i)
# released: one last compare
with open(P("mm"), "r+b") as f:
    f.seek(9000); f.write(b"before release")
t.op(lambda: None, (RELEASE, "mm", 0, 0))
ck("released")
# a child that cannot be tracked: every checkpoint scans while it lives
child = subprocess.Popen([sys.executable, "-c", """
import sys, time
sys.path.insert(0, %r)
from fakepreload import Tracer, SCAN
t = Tracer()
t.op(lambda: None, (SCAN, "", 1, 0))
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.read()
""" % HERE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
child.stdout.readline()
with open(P("other"), "ab") as f: f.write(b"unrecorded 1")
ck("sticky scan 1")
with open(P("other"), "ab") as f: f.write(b"unrecorded 2")
ck("sticky scan 2")
child.stdin.close(); child.wait()
ck("child gone")
t.pwrite("other", 0, b"T")
ck("tracked")
'''
    p, res = S.run_scenario(root, body, preload=LIBC)
    want = ["tracked", "tracked", "tracked", "tracked", "scanned", "scanned", "scanned", "tracked"]
    if S.modes(res) != want:
        raise T.Failure("expected %s, got %s\n%s" % (want, S.modes(res), p.stderr))
    S.check_restores(root, res)
    T.rmtree(root)


def test_sticky_whole_changes_back_and_forth():
    # a file compared whole at every checkpoint: after the first, only the
    # blocks that differ from the last compare are copied; every kind of
    # change between compares must still be seen
    root = S.new_tree({"mm": rnd(40 * 4096 + 123, 10)})
    body = r'''
from fakepreload import Tracer, WHOLE
t = Tracer()
t.op(lambda: None, (WHOLE, "mm", 1, 0))
orig = open(P("mm"), "rb").read()
def put(off, data):
    with open(P("mm"), "r+b") as f:
        f.seek(off); f.write(data)
ck("first compare")
put(4096, b"X" * 4096)
ck("block 1 changed")
put(4096, orig[4096:8192])
ck("block 1 back")
ck("nothing")
os.truncate(P("mm"), 10 * 4096 + 7)
ck("shrunk")
with open(P("mm"), "ab") as f: f.write(b"Y" * 50000)
ck("grown")
os.truncate(P("mm"), 0)
ck("emptied")
with open(P("mm"), "wb") as f: f.write(orig[:20000])
ck("refilled")
'''
    p, res = S.run_scenario(root, body, preload=LIBC)
    if S.modes(res) != ["tracked"] * 8:
        raise T.Failure("expected tracked checkpoints, got %s; the session said:\n%s" % (S.modes(res), p.stderr))
    S.check_restores(root, res)
    T.rmtree(root)


def test_died_inside_a_call_scans():
    root = S.new_tree({"a": b"a" * 10000})
    body = r'''
import subprocess, sys
code = """
import os, sys
sys.path.insert(0, %r)
from fakepreload import Tracer, O_INFLIGHT
t = Tracer()
t._put(O_INFLIGHT, 1)          # inside a call ...
with open(os.path.join(os.environ["METAMORI_ROOT"], "a"), "r+b") as f:
    f.write(b"half-made change")
os._exit(9)                    # ... and killed before its record
""" % HERE
subprocess.run([sys.executable, "-c", code])
ck("after death")
t = __import__("fakepreload").Tracer()
t.pwrite("a", 0, b"B")
ck("tracked")
'''
    p, res = S.run_scenario(root, body, preload=LIBC)
    if S.modes(res) != ["scanned", "tracked"]:
        raise T.Failure("expected scanned then tracked, got %s:\n%s\n%s" % (S.modes(res), S.said(res), p.stderr))
    S.check_restores(root, res)
    T.rmtree(root)


def test_barrier_waits_for_inflight_call():
    # a call in flight holds the checkpoint; what it did is in the checkpoint
    root = S.new_tree({"a": b"a" * 10000})
    body = PRE + r'''
import subprocess
from fakepreload import WRITE
t.enter()
c = subprocess.Popen([T.METAMORI, "-C", ROOT, "checkpoint", "-q", "-m", "held"], stdout=subprocess.PIPE, text=True)
time.sleep(0.5)
held = c.poll() is None
with open(P("a"), "r+b") as f: f.write(b"made in flight")
t.record(WRITE, "a", 0, 14)
t.leave()
out = c.communicate()[0]
RESULTS.append({"id": int(out), "mode": "tracked", "manifest": T.manifest(ROOT), "msg": "held"})
RESULTS.append({"id": 0, "mode": "held" if held else "not held", "manifest": {}, "msg": ""})
with open(OUT, "w") as f: json.dump(RESULTS, f)
'''
    p, res = S.run_scenario(root, body, preload=LIBC)
    if res[-1]["mode"] != "held":
        raise T.Failure("the checkpoint did not wait for the call in flight")
    S.check_restores(root, res[:-1])
    T.rmtree(root)


def test_changes_outside_excluded_and_store():
    root = S.new_tree({"a": b"a", "build/o": b"obj"})
    body = PRE + r'''
t.pwrite("build/o", 0, b"ignored change")
t.create("build/new", b"ignored too")
t.pwrite("a", 0, b"A")
ck("one")
'''
    p, res = S.run_scenario(root, body, args=["--exclude", "build/"], preload=LIBC)
    res[0]["manifest"] = {k: v for k, v in res[0]["manifest"].items() if not k.startswith("build")}
    # build/ as checkpointed before the session (the base), the rest tracked
    to = T.tempdir("mtm-to-")
    os.rmdir(to)
    T.restore(root, res[0]["id"], to=to)
    got = T.manifest(to)
    if any(k.startswith("build") for k in got):
        raise T.Failure("excluded paths recorded: %s" % sorted(got))
    T.assert_same(res[0]["manifest"], got, "excluded")
    T.rmtree(to)
    T.rmtree(root)


def test_ignore_file_changed_scans():
    root = S.new_tree({"a": b"a", "xa": b"xa", "keep/xb": b"xb"})
    body = PRE + r'''
t.create(".metamoriignore", b"x*\n")
ck("ignore file written")
t.pwrite("a", 0, b"A")
t.pwrite("xa", 0, b"X")
ck("tracked")
'''
    p, res = S.run_scenario(root, body, preload=LIBC)
    if S.modes(res) != ["scanned", "tracked"]:
        raise T.Failure("expected scanned then tracked, got %s" % S.modes(res))
    for r in res:  # what the ignore file leaves out is not in the checkpoints
        r["manifest"] = {k: v for k, v in r["manifest"].items() if not os.path.basename(k).startswith("x")}
    S.check_restores(root, res, in_place=False)
    T.rmtree(root)


if __name__ == "__main__":
    T.main([test_tracked_writes_and_namespace, test_read_in_place_past_the_capture_budget, test_many_scattered_blocks_read_by_threads, test_rename_keeps_history, test_replaced_through_another_name, test_baseline_dirty_scans_first,
            test_no_head_scans_first, test_scan_record_and_overflow, test_sticky_whole_and_scan, test_sticky_whole_changes_back_and_forth,
            test_died_inside_a_call_scans, test_barrier_waits_for_inflight_call,
            test_changes_outside_excluded_and_store, test_ignore_file_changed_scans])
