#!/usr/bin/env python3
"""Sound checkpoints (issue 15): every change in the tree is in a session's
checkpoint, whoever made it, and a stat cache row never vouches for bytes
nobody read.

Each case runs a traced agent under `metamori run` (the real interposer)
that executes the steps it is sent, while this process (not traced) makes
the outside changes and asks for checkpoints from "another shell". At each
checkpoint the tree is copied (a manifest); every checkpoint must restore
--to exactly that; after the session ends, `status` must show nothing the
last checkpoint missed (the tree is not touched after it)."""
import ctypes
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time

import mtmtest as T

HERE = os.path.dirname(os.path.abspath(__file__))

# the traced side: runs each line it reads as Python, answers "ok" or the error
AGENT = r'''
import os, sys, subprocess, time, socket, array
ROOT = os.environ["METAMORI_ROOT"]
def P(rel):
    return os.path.join(ROOT, rel)
for line in sys.stdin:
    try:
        exec(line.replace("\\n", "\n"))
        print("ok", flush=True)
    except Exception as e:
        print("err %r" % e, flush=True)
'''


class Skip(Exception):
    pass


class Session:
    def __init__(self, files=None, env=None, run_args=("-q",), outside_link=None):
        self.root = T.tempdir("mtm-sound-")
        for rel, data in (files or {}).items():
            os.makedirs(os.path.dirname(self.P(rel)), exist_ok=True)
            T.write_file(self.P(rel), data)
        if outside_link:  # a hard link outside the tree to one inside, made before the session
            os.link(self.P(outside_link[0]), outside_link[1])
        T.init(self.root)
        T.checkpoint(self.root, "base")
        work = T.tempdir("mtm-agent-")
        os.chmod(work, 0o755)
        self.agent = os.path.join(work, "agent.py")
        with open(self.agent, "w") as f:
            f.write(AGENT)
        e = dict(os.environ)
        e.update(env or {})
        self.p = subprocess.Popen([T.METAMORI, "-C", self.root, "run"] + list(run_args) +
                                  ["--", sys.executable, self.agent], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=e)
        self.cks = []
        self.inside("pass")

    def P(self, rel):
        return os.path.join(self.root, rel)

    def inside(self, code):
        """Runs code in the traced agent (one statement list; \\n allowed)."""
        self.p.stdin.write(code.replace("\n", "\\n") + "\n")
        self.p.stdin.flush()
        ans = self.p.stdout.readline()
        if ans.strip() != "ok":
            raise T.Failure("agent: %r (%s)" % (ans, code))

    def ck(self, msg="c"):
        """A checkpoint asked from another shell; the tree copied right after."""
        out = T.run(["-C", self.root, "checkpoint", "-m", msg]).stdout
        self.cks.append((int(out.split()[1]), T.manifest(self.root), msg, out.strip()))
        return out

    def stop(self):
        self.p.stdin.close()
        err = self.p.stderr.read()
        if self.p.wait() != 0:
            raise T.Failure("metamori run failed (%d): %s" % (self.p.returncode, err))
        self.stderr = err

    def verify(self):
        """Every checkpoint restores --to exactly the tree copied at it; the
        session ended, status shows nothing the last checkpoint missed."""
        for ck, man, msg, out in self.cks:
            to = T.tempdir("mtm-to-")
            os.rmdir(to)
            T.restore(self.root, ck, to=to)
            T.assert_same(man, T.manifest(to), "checkpoint %d (%s: %s) restored --to" % (ck, msg, out))
            T.rmtree(to)
        st = T.status(self.root)
        if T.changes(st):
            raise T.Failure("after the session, status shows what checkpoint %d missed:\n%s" % (self.cks[-1][0], st))


def outside_write(path, off, data):
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(data)


def test_issue_example_plain_checkpoint_after_session():
    """The issue's shell example: a write from outside the session while a
    traced program writes the same file. Whatever the session's checkpoint
    holds, status afterwards tells the truth, and the next plain checkpoint
    holds the file as it is."""
    root = T.tempdir("mtm-sound-")
    f = os.path.join(root, "f")
    T.write_file(f, b"A" * 12288)
    T.init(root)
    T.checkpoint(root, "base")
    job = subprocess.Popen([T.METAMORI, "-C", root, "run", "-q", "--", "sh", "-c",
                            "python3 -c 'open(\"f\",\"r+b\").write(b\"CCCC\")'; sleep 1; %s checkpoint -q" % T.METAMORI],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    outside_write(f, 8192, b"BBBB")
    out, err = job.communicate()
    if job.returncode:
        raise T.Failure("run: %s" % err)
    head = T.log_json(root)[0]["id"] if isinstance(T.log_json(root), list) else None
    st = T.status(root)
    to = T.tempdir("mtm-to-")
    os.rmdir(to)
    T.restore(root, "head", to=to)
    truth = open(f, "rb").read() == open(os.path.join(to, "f"), "rb").read()
    if truth and T.changes(st):
        raise T.Failure("status shows a change the checkpoint has: %s" % st)
    if not truth and ("M", "f") not in T.changes(st):
        raise T.Failure("the session's checkpoint misses BBBB and status does not say so (head %s):\n%s" % (head, st))
    T.checkpoint(root, "after")
    to2 = T.tempdir("mtm-to-")
    os.rmdir(to2)
    T.restore(root, "head", to=to2)
    if open(os.path.join(to2, "f"), "rb").read() != open(f, "rb").read():
        raise T.Failure("the plain checkpoint after the session does not hold f as it is")


def test_outside_write_same_file():
    """Mixed: the traced agent and another shell write one file in one interval."""
    s = Session({"f": b"A" * 12288, "g": b"G" * 100})
    s.inside("open(P('f'), 'r+b').write(b'CCCC')")
    outside_write(s.P("f"), 8192, b"BBBB")
    s.ck("mixed")
    s.stop()
    s.verify()


def test_outside_changes_of_every_kind():
    """Created, appended, overwritten, renamed, deleted, chmodded, a new
    directory with files, a symlink: all by a process not in the session."""
    s = Session({"a": b"a" * 5000, "b": b"b" * 100, "c": b"c" * 10, "d": b"d", "sub/e": b"e" * 9000})
    s.inside("open(P('a'), 'ab').write(b'inside')")
    s.ck("first")
    T.write_file(s.P("new"), b"created outside")
    with open(s.P("b"), "ab") as f:
        f.write(b"appended outside")
    outside_write(s.P("sub/e"), 4096, b"X" * 10)
    os.rename(s.P("c"), s.P("c2"))
    os.unlink(s.P("d"))
    os.chmod(s.P("a"), 0o600)
    os.makedirs(s.P("nd/deeper"))
    T.write_file(s.P("nd/deeper/x"), b"x" * 7000)
    os.symlink("a", s.P("ln"))
    s.ck("outside")
    s.stop()
    s.verify()


def test_outside_mmap_write():
    """A process outside the session writes files through shared mappings:
    no write(2), so neither fanotify nor inotify reports a modification
    (the mtime moves). Mapped, written and unmapped between two checkpoints;
    mapped before a checkpoint, written and unmapped after it; written by a
    process that ends with its mapping (never unmapped). What the watcher
    hears of is the file let go (its last reference: the mapping)."""
    import mmap
    s = Session({"f": b"A" * 12288, "g": b"G" * 8192, "h": b"H" * 5000})
    s.ck("first")
    with open(s.P("f"), "r+b") as f:
        m = mmap.mmap(f.fileno(), 0)
    m[4096:4100] = b"MMAP"
    m.close()
    with open(s.P("g"), "r+b") as f:
        held = mmap.mmap(f.fileno(), 0)
    s.ck("f mapped, written, unmapped")
    held[100:104] = b"LATE"
    held.close()
    subprocess.run([sys.executable, "-c", "import mmap, os\n"
                    "fd = os.open(%r, os.O_RDWR); m = mmap.mmap(fd, 0); os.close(fd)\n"
                    "m[4999:5000] = b'E'\nos._exit(0)" % s.P("h")], check=True)
    s.ck("g written through a mapping made before; h by a process that ended")
    s.stop()
    s.verify()


def test_file_moved_in_while_open():
    """A traced process opens a file outside the tree, moves it into the
    tree, and after a checkpoint writes it through that fd (which the
    interposer never took for the tree's) and through a new one opened
    under its name in the tree (which it did)."""
    s = Session({"keep": b"k"})
    outside = T.tempdir("mtm-outside-")
    os.chmod(outside, 0o777)
    src = os.path.join(outside, "x")
    s.inside("fa = os.open(%r, os.O_RDWR | os.O_CREAT, 0o644); os.pwrite(fa, b'A' * 12288, 0)" % src)
    s.inside("os.rename(%r, P('x'))" % src)
    s.ck("moved in")
    s.inside("fb = os.open(P('x'), os.O_RDWR); os.pwrite(fb, b'BBBB', 0); os.pwrite(fa, b'CCCC', 8192)")
    s.ck("written through both fds")
    s.inside("os.close(fa); os.close(fb)")
    s.stop()
    s.verify()


def test_file_moved_in_by_another_process():
    """A traced process opens a file outside the tree; another traced
    process moves it into the tree. After a checkpoint the first writes it
    through its old fd (which its interposer never took for the tree's) and
    through a new one opened under its name in the tree (which it did): the
    watcher hears both writes from a traced pid with a record for the file,
    so only the interposer can say the old fd's bytes (before, they were
    missed)."""
    s = Session({"keep": b"k"})
    outside = T.tempdir("mtm-outside-")
    os.chmod(outside, 0o777)
    src = os.path.join(outside, "x")
    s.inside("fa = os.open(%r, os.O_RDWR | os.O_CREAT, 0o644); os.pwrite(fa, b'A' * 12288, 0)" % src)
    s.inside("subprocess.run([sys.executable, '-c', 'import os, sys; os.rename(sys.argv[1], sys.argv[2])', %r, P('x')],"
             " check=True)" % src)
    s.ck("moved in by another process")
    s.inside("fb = os.open(P('x'), os.O_RDWR); os.pwrite(fb, b'BBBB', 0); os.pwrite(fa, b'CCCC', 8192)")
    s.ck("written through both fds")
    s.inside("os.write(fa, b'DDDD'); os.pwrite(fb, b'EEEE', 4096)")
    s.ck("written through both fds again")
    s.inside("os.close(fa); os.close(fb)")
    s.stop()
    s.verify()


def test_outside_mapping_held_across_checkpoints():
    """A process outside the session maps a file of the tree shared and
    writable, closes its fd, and writes through the mapping while it holds
    it across checkpoints: no write(2), and no event until the mapping goes
    (FAN_CLOSE_WRITE). Each checkpoint must hold what was written before it
    (before, the checkpoints made while it was held missed the writes; a
    second write to a page already dirty moves no mtime either)."""
    import mmap
    s = Session({"g": b"G" * 12288, "h": b"H" * 100})
    s.ck("first")
    with open(s.P("g"), "r+b") as f:
        held = mmap.mmap(f.fileno(), 0)
    held[0:4] = b"ONE!"
    s.ck("written, still mapped")
    held[8:12] = b"TWO!"  # the same page, already dirty
    held[8192:8196] = b"3333"
    s.ck("written again, still mapped")
    s.ck("nothing written, still mapped")
    held[100:104] = b"LAST"
    held.close()
    s.ck("let go")
    s.stop()
    s.verify()


# inotify says neither who opened a file nor how (nor is the session's own
# open told from another's): the gap stays there (docs/SESSION.md)
test_outside_mapping_held_across_checkpoints.watch_kind = "fanotify"


def test_other_user():
    """Changes made by another user (nobody), through setpriv."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        raise Skip("needs root and setpriv")
    s = Session({"f": b"A" * 12288})
    os.chmod(s.root, 0o777)
    os.chmod(s.P("f"), 0o666)
    s.ck("before")
    subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c",
                    "printf ZZZZ | dd of=%s bs=1 seek=4096 conv=notrunc 2>/dev/null; echo new > %s" %
                    (s.P("f"), s.P("byn"))], check=True)
    s.ck("nobody")
    s.stop()
    s.verify()


def test_double_forked_daemon():
    """A daemon started elsewhere (double fork, setsid) writes while the
    session runs."""
    s = Session({"log": b"start\n"})
    subprocess.run(["sh", "-c", "(setsid sh -c 'sleep 0.2; echo daemon >> %s; touch %s' &) " %
                    (s.P("log"), s.P("done"))], check=True)
    for _ in range(100):
        if os.path.exists(s.P("done")):
            break
        time.sleep(0.05)
    s.ck("daemon")
    s.stop()
    s.verify()


def test_static_child_closes_inherited_fds():
    """A static child started inside the session that closes every fd it
    inherited (as DMTCP's mtcp_restart does) keeps the tree distrusted while
    it runs: a checkpoint after its first one must still hold its writes."""
    work = T.tempdir("mtm-static-")
    src = os.path.join(work, "w.c")
    with open(src, "w") as f:
        f.write('#include <stdio.h>\n#include <unistd.h>\n#include <fcntl.h>\n'
                'int main(int c, char **v) { for (int fd = 3; fd < 1024; fd++) close(fd);\n'
                ' close(creat(v[2], 0644));\n'
                ' while (access(v[3], F_OK)) usleep(10000);\n'
                ' int o = open(v[1], O_WRONLY); pwrite(o, "STATIC", 6, 4096); close(o);\n'
                ' close(creat(v[4], 0644)); sleep(2); return 0; }\n')
    exe = os.path.join(work, "w")
    if subprocess.run(["cc", "-static", "-o", exe, src], capture_output=True).returncode:
        raise Skip("no static libc")
    go = os.path.join(work, "go")
    s = Session({"f": b"A" * 12288})
    s.inside("subprocess.Popen([%r, P('f'), P('flag1'), %r, P('flag2')])" % (exe, go))
    wait_file(s.P("flag1"))
    s.ck("static started")
    open(go, "w").close()
    wait_file(s.P("flag2"))
    s.ck("static wrote")
    s.stop()
    s.verify()


def wait_file(path, timeout=10):
    end = time.time() + timeout
    while not os.path.exists(path):
        if time.time() > end:
            raise T.Failure("timed out waiting for " + path)
        time.sleep(0.02)


_GAPS = []


def gaps_exe():
    """tests/session/gaps.c, built once (None: no libaio here)."""
    if not _GAPS:
        exe = os.path.join(T.tempdir("mtm-gaps-"), "gaps")
        p = subprocess.run(["cc", "-O", "-o", exe, os.path.join(HERE, "gaps.c"), "-laio", "-lrt"],
                           capture_output=True, text=True)
        _GAPS.append(exe if p.returncode == 0 else None)
    if not _GAPS[0]:
        raise Skip("gaps.c does not build (libaio-dev missing?)")
    return _GAPS[0]


def gap_test(how):
    def t():
        exe = gaps_exe()
        s = Session({"f": b"A" * 12288})
        s.inside("subprocess.run([%r, %r, P('f')], check=True)" % (exe, how))
        s.ck(how)
        s.stop()
        if open(s.P("f"), "rb").read()[4096:4100] != b"GAP!":
            raise T.Failure("%s: the write did not happen" % how)
        s.verify()
    t.__name__ = "test_gap_" + how
    return t


def alive_gap_test(how):
    def t():
        """A traced process writes one file through libc (recorded) and
        through glibc's syscall(): an fd opened with SYS_openat, a mapping
        made with SYS_mmap; or through an fd open_by_handle_at opened (as
        root); it is alive at the checkpoint. A writer trusted
        there (a C program without system call instructions of its own;
        this one has some) has fanotify's events taken as explained by its
        log, so what syscall() opened or mapped must be in it: the
        interposer alone (METAMORI_WATCH=off) must hold both writes. It
        held the recorded one only: syscall() passed SYS_openat and SYS_mmap
        to the kernel unseen."""
        exe = gaps_exe()
        if how == "handle" and os.geteuid() != 0:
            raise Skip("open_by_handle_at needs root")
        work = T.tempdir("mtm-alive-")
        ready, go = os.path.join(work, "ready"), os.path.join(work, "go")
        s = Session({"f": b"A" * 12288})
        s.inside("subprocess.Popen([%r, %r, P('f'), %r, %r])" % (exe, how, ready, go))
        try:
            wait_file(ready)
            s.ck(how + ", writer alive")
        finally:
            open(go, "w").close()
        s.stop()
        if open(s.P("f"), "rb").read()[:4] + open(s.P("f"), "rb").read()[4096:4100] != b"REC!GAP!":
            raise T.Failure("%s: the writes did not happen" % how)
        s.verify()
    t.__name__ = "test_gap_alive_" + how
    return t


def test_mixed_libc_and_inline_alive():
    """One traced process writes one file through libc (recorded) and an
    inline syscall (seen only by the watcher, with the same pid) in one
    interval, and is still running at the checkpoint: the recorded range
    must not be taken for the only change."""
    exe = gaps_exe()
    work = T.tempdir("mtm-mixed-")
    ready, go = os.path.join(work, "ready"), os.path.join(work, "go")
    s = Session({"f": b"A" * 12288})
    s.inside("subprocess.Popen([%r, 'mixed', P('f'), %r, %r])" % (exe, ready, go))
    try:
        wait_file(ready)
        s.ck("mixed, writer alive")
    finally:
        open(go, "w").close()
    s.stop()
    if open(s.P("f"), "rb").read()[:4] + open(s.P("f"), "rb").read()[4096:4100] != b"REC!GAP!":
        raise T.Failure("mixed: the writes did not happen")
    s.verify()


def dispatch_trust_test(new_code):
    def t():
        """Traced processes alive across checkpoints write one file through
        libc and another with an inline syscall instruction: with syscall
        user dispatch on, the inline write is trapped and recorded, so the
        checkpoint holds both while fanotify's events of those pids are
        taken as explained by their logs (no file compared whole, the
        writers counted as trusted by dispatch); before, their code was
        looked at, the bytes of the instruction found, and both files
        compared whole. Five writers of the same files, as a database's
        backends are: a file written by more than four pids in an interval
        was compared whole too. With new_code, each loads a library just
        before its writes (PostgreSQL loads an extension's, Python a module's
        at first use): its system calls trap as well, so the log is still
        the whole truth (a library loaded made the interval's writes
        compared whole, as if its code had to be looked at)."""
        exe = gaps_exe()
        work = T.tempdir("mtm-later-")
        go, end = os.path.join(work, "go"), os.path.join(work, "end")
        s = Session({"f": b"A" * 12288, "g": b"G" * 12288}, env={"METAMORI_DEBUG_SESSION": "phases"})
        writers = 5
        for i in range(writers):
            s.inside("subprocess.Popen([%r, 'later', P('f'), P('g'), %r, %r, %r, %r]%s)" %
                     (exe, os.path.join(work, "ready%d" % i), go, os.path.join(work, "done%d" % i), end,
                      " + ['dlopen']" if new_code else ""))
        try:
            for i in range(writers):
                wait_file(os.path.join(work, "ready%d" % i))
            s.ck("the writers' first interval")
            open(go, "w").close()
            for i in range(writers):
                wait_file(os.path.join(work, "done%d" % i))
            s.ck("written both ways")
        finally:
            open(end, "w").close()
        s.stop()
        data = open(s.P("f"), "rb").read()[:4] + open(s.P("g"), "rb").read()[4096:4100]
        if data != b"REC!GAP!":
            raise T.Failure("the writes did not happen: %r" % data)
        s.verify()
        lines = [l for l in s.stderr.splitlines() if "compared ahead" in l]
        if len(lines) < 2:
            raise T.Failure("no phases for the checkpoints: %s" % s.stderr)
        m = re.search(r"compared ahead [0-9.]+ ms: (\d+) files.*; (\d+) writers trusted by dispatch", lines[1])
        if not m or m.group(1) != "0" or int(m.group(2)) < writers:
            raise T.Failure("the writers' logs were not trusted (files compared whole, writers trusted): %s" % lines[1])
    t.__name__ = "test_dispatch_trusts_the_logs" + ("_after_new_code" if new_code else "")
    t.watch_kind = "fanotify"
    return t


def hard_link_test(when):
    def t():
        """Writes through a hard link outside the tree to a file inside it, by
        a process outside the session, then inside and outside together (the
        link made before the session, during it, made and removed again
        between two checkpoints, or made to a file renamed in the tree)."""
        link = os.path.join(T.tempdir("mtm-outside-"), "alias")
        files = {"f": b"A" * 12288, "sub/g": b"G" * 9000}
        if when == "before":
            s = Session(files, outside_link=("f", link))
        else:
            s = Session(files)
            s.ck("before the link")
        if when in ("during", "gone"):
            os.link(s.P("f"), link)
        if when == "gone":
            # the link comes and goes between two checkpoints: the file has
            # one name again when the checkpoint looks
            outside_write(link, 4096, b"GONE")
            os.unlink(link)
            s.ck("written through a link that is gone")
            os.link(s.P("f"), link)  # and once more, after a checkpoint
        if when == "moved":
            os.rename(s.P("sub/g"), s.P("sub/h"))
            os.link(s.P("sub/h"), link)
            outside_write(link, 100, b"MOVED")
            s.ck("a renamed file written through its outside link")
            os.rename(s.P("sub"), s.P("sub2"))  # its directory renamed
            outside_write(link, 4096, b"DIRMOVED")
            s.ck("its directory renamed, written through the link")
            os.rename(s.P("sub2/h"), s.P("f"))  # renamed over another file
            outside_write(link, 8000, b"OVER")
            s.ck("renamed over f, written through the link")
            outside_write(link, 0, b"LAST")
            s.inside("open(P('sub2/x'), 'wb').write(b'x')")
            s.ck("written through the link again")
            s.stop()
            s.verify()
            return
        outside_write(link, 4096, b"LINK")
        s.ck("written through the outside link")
        outside_write(link, 8192, b"MORE")
        s.inside("open(P('f'), 'r+b').write(b'INSI')")
        s.ck("inside and through the link")
        s.stop()
        s.verify()
    t.__name__ = "test_hard_link_outside_%s" % when
    return t


def test_dropped_privileges():
    """A step that drops privileges cannot open the session's files: its
    interposer stays out, and its writes must still be in the checkpoint."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        raise Skip("needs root and setpriv")
    s = Session({"f": b"A" * 12288})
    os.chmod(s.root, 0o755)
    os.chmod(s.P("f"), 0o666)
    s.inside("subprocess.run(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', 'sh', '-c', "
             "'printf ZZZZ | dd of=%s bs=1 seek=4096 conv=notrunc 2>/dev/null'], check=True)" % s.P("f"))
    s.ck("dropped")
    s.stop()
    s.verify()


def test_write_racing_the_barrier():
    """Writes from outside (and inside) while checkpoints are taken: once
    they stop, the next checkpoint holds every one of them."""
    import random
    import threading
    s = Session({"f": b"A" * (64 * 4096), "g": b"B" * (64 * 4096)})
    stop = []

    def writer():
        rnd = random.Random(7)
        with open(s.P("f"), "r+b") as f:
            while not stop:
                f.seek(rnd.randrange(64) * 4096 + rnd.randrange(4000))
                f.write(b"%08d" % rnd.randrange(10 ** 8))
                f.flush()
    th = threading.Thread(target=writer)
    th.start()
    try:
        for i in range(6):
            s.inside("fd = os.open(P('g'), os.O_WRONLY); os.pwrite(fd, b'in%d', %d); os.pwrite(fd, b'IN', 8192); "
                     "os.close(fd)" % (i, i * 4096))
            T.run(["-C", s.root, "checkpoint", "-q"])
    finally:
        stop.append(1)
        th.join()
    s.ck("after the writes")
    s.stop()
    s.verify()


def test_precopy_fds_only_for_the_same_file():
    """The pre-copy's passes keep the fd they read a written file through, so
    that the barrier need not look its path up again inside the pause. If
    by the checkpoint the path names another file (renamed over, replaced,
    its directory moved: by the traced program or by another, the file the
    pass opened still linked elsewhere), the checkpoint records the file
    the path names, not the one the pass opened."""
    B = 4096
    names = ["plain", "a", "a2", "b", "d/c", "gone"]
    s = Session({n: n[0].encode() * 3 * B for n in names}, env={"METAMORI_DEBUG_SESSION": "phases"})
    write = "fd = os.open(P('%s'), os.O_WRONLY); os.pwrite(fd, b'%s' * 4096, 4096); os.close(fd)"
    s.ck("first")
    s.inside(write % ("plain", "1"))
    time.sleep(0.3)  # (the passes run every 10-20 ms)
    s.ck("written")
    # moved away inside, another file renamed to its name
    s.inside(write % ("a", "2"))
    time.sleep(0.3)
    s.inside("os.rename(P('a'), P('a.old')); os.rename(P('a2'), P('a'))")
    s.ck("renamed over inside")
    # the same, outside
    s.inside(write % ("b", "3"))
    time.sleep(0.3)
    os.rename(s.P("b"), s.P("b.old"))
    T.write_file(s.P("b"), b"B" * 3 * B)
    s.ck("replaced outside")
    # its directory moved outside, another made in its place
    s.inside(write % ("d/c", "4"))
    time.sleep(0.3)
    os.rename(s.P("d"), s.P("d.old"))
    os.mkdir(s.P("d"))
    T.write_file(s.P("d/c"), b"C" * 3 * B)
    s.ck("directory moved outside")
    # its directory moved inside
    s.inside(write % ("d/c", "5"))
    time.sleep(0.3)
    s.inside("os.rename(P('d'), P('d.older')); os.mkdir(P('d')); open(P('d/c'), 'wb').write(b'Z' * 12288)")
    s.ck("directory moved inside")
    # removed inside after a pass read it: the session does not hold it open
    # (its space) until the checkpoint
    s.inside(write % ("gone", "6"))
    time.sleep(0.3)
    s.inside("os.unlink(P('gone'))")
    time.sleep(0.3)
    held = []
    for fd in os.listdir("/proc/%d/fd" % s.p.pid):
        try:
            held.append(os.readlink("/proc/%d/fd/%s" % (s.p.pid, fd)))
        except OSError:
            pass
    if s.P("gone") + " (deleted)" in held:
        raise T.Failure("the session holds a removed file open: %r" % held)
    s.ck("removed")
    s.stop()
    s.verify()
    used = [int(n) for n in re.findall(r"(\d+) files opened by it", s.stderr)]
    if os.environ.get("METAMORI_WATCH") == "fanotify" and not any(used):
        # (inotify compares every file written whole: no pass copies them)
        raise T.Failure("no checkpoint used a file the pre-copy opened: %r\n%s" % (used, s.stderr))


CHURN = r'''
import os, sys, time
base, end = sys.argv[1], time.time() + float(sys.argv[2])
i = 0
while time.time() < end:
    d = os.path.join(base, "d%d" % (i % 50))
    os.makedirs(d + "/sub", exist_ok=True)
    with open(d + "/sub/f", "w") as f:
        f.write("x")
    os.unlink(d + "/sub/f")
    os.rmdir(d + "/sub")
    os.rmdir(d)
    i += 1
'''


def test_directories_come_and_go_outside():
    """Other programs on the tree's file system make and remove directories
    all the time (other builds): the events in a directory that is being
    removed (ext4 answers ENOMEM for its handle, ESTALE a moment later)
    must not make the session's checkpoints scan. Every checkpoint stays
    tracked, and holds what changed."""
    s = Session({"f": b"A" * 12288}, run_args=())
    churners = [subprocess.Popen([sys.executable, "-c", CHURN, T.tempdir("mtm-churn-"), "4"]) for _ in range(2)]
    outs = []
    try:
        for i in range(8):
            outside_write(s.P("f"), i * 100, b"out%d" % i)
            s.inside("open(P('g%d'), 'wb').write(b'in')" % i)
            outs.append(s.ck("churn %d" % i))
            time.sleep(0.4)
    finally:
        for c in churners:
            c.wait()
    s.stop()
    # (a queue overflow under a heavy load is a real loss: scanning is right)
    scanned = [line for line in s.stderr.splitlines() if "(scanned" in line and "queue overflowed" not in line]
    if scanned or len([o for o in outs if "tracked" in o]) + len(s.stderr.split("queue overflowed")) - 1 != len(outs):
        raise T.Failure("directories removed outside the tree made checkpoints scan: %s\n%s" % (outs, s.stderr))
    s.verify()


test_directories_come_and_go_outside.watch_kind = "fanotify"


def test_directories_removed_outside_keep_the_cache():
    """The fanotify watcher keeps the path of each directory it resolved
    (open_by_handle_at, then the kernel's path of the fd). Every directory
    removed anywhere on the file system used to empty that cache, so under a
    neighbour's builds every event, the tree's own too, was resolved again:
    a storm of open_by_handle_at calls (ESTALE on the dying directories)
    that held checkpoints for 0.1-2.9 s and overflowed the queue. A removed
    directory has no descendants left, so no cached path can go stale by
    it: only a directory moved empties the cache. The session's debug log
    says how often the cache was emptied; here, never."""
    s = Session({"f": b"A" * 12288}, env={"METAMORI_DEBUG_SESSION": "1"}, run_args=())
    churn = subprocess.Popen([sys.executable, "-c", CHURN, T.tempdir("mtm-churn-"), "1.5"])
    try:
        for i in range(3):
            outside_write(s.P("f"), i * 100, b"out%d" % i)
            s.inside("open(P('g%d'), 'wb').write(b'in')" % i)
            s.ck("churn %d" % i)
            time.sleep(0.3)
    finally:
        churn.wait()
    s.stop()
    stats = re.findall(r"session: watcher: (\d+) directory handles resolved, the cache emptied (\d+) times",
                       s.stderr)
    if not stats:
        raise T.Failure("no watcher line in the session's debug log:\n%s" % s.stderr[-2000:])
    resolved, cleared = (int(x) for x in stats[-1])
    print("  %d directory handles resolved, the cache emptied %d times" % (resolved, cleared))
    if cleared:
        raise T.Failure("directories removed outside the tree emptied the watcher's cache %d times "
                        "(%d handles resolved)" % (cleared, resolved))
    s.verify()


test_directories_removed_outside_keep_the_cache.watch_kind = "fanotify"


def test_directories_moved_in_from_outside():
    """A directory the watcher has resolved as outside the tree (an outside
    write in it, and in a directory under it), then moved into the tree, or
    its parent moved in: the writes in it after the move are the tree's,
    and each checkpoint holds them. The removed directories around it (a
    neighbour's churn) must not stand in for the move's emptying of the
    cache."""
    s = Session({"f": b"A" * 4096}, env={"METAMORI_DEBUG_SESSION": "1"}, run_args=())
    out = T.tempdir("mtm-out-")
    churn = subprocess.Popen([sys.executable, "-c", CHURN, T.tempdir("mtm-churn-"), "2"])
    try:
        os.makedirs(os.path.join(out, "x"))
        os.makedirs(os.path.join(out, "y/z"))
        for rel in ("x/a", "y/z/b"):
            T.write_file(os.path.join(out, rel), b"0" * 8192)
        for rel in ("x/a", "y/z/b"):
            outside_write(os.path.join(out, rel), 0, b"outside")  # resolved: outside
        s.inside("open(P('g0'), 'wb').write(b'in')")
        s.ck("before the moves")
        os.rename(os.path.join(out, "x"), s.P("x"))  # the directory itself
        outside_write(s.P("x/a"), 4096, b"moved in x")
        s.ck("x moved in, written")
        os.rename(os.path.join(out, "y"), s.P("y"))  # the parent of one resolved
        outside_write(s.P("y/z/b"), 4096, b"moved in y/z")
        s.ck("y moved in, y/z written")
        outside_write(s.P("x/a"), 100, b"again")
        outside_write(s.P("y/z/b"), 100, b"again")
        s.ck("both written again")
    finally:
        churn.wait()
    s.stop()
    s.verify()


test_directories_moved_in_from_outside.watch_kind = "fanotify"


def test_a_flood_outside_does_not_hold_the_session():
    """A neighbour on the tree's file system making events faster than the
    session judges them (here: the session's reads slowed down) must not
    keep it in its queue: the session's loop read until the queue was
    empty, which a flood never lets it be, so a checkpoint asked for
    waited for the flood to end. Each read now takes what was queued when
    it began; the rest waits for the next one."""
    s = Session({"f": b"A" * 4096}, env={"METAMORI_TEST_DRAIN_READ_US": "5000"}, run_args=())
    flood = subprocess.Popen([sys.executable, "-c", CHURN, T.tempdir("mtm-flood-"), "60"])
    try:
        time.sleep(0.5)
        s.inside("open(P('g'), 'wb').write(b'in')")
        try:
            out = subprocess.run([T.METAMORI, "-C", s.root, "checkpoint", "-m", "flood"], capture_output=True,
                                 text=True, timeout=20).stdout
        except subprocess.TimeoutExpired:
            raise T.Failure("a flood of events outside the tree held the session: no checkpoint in 20 s")
        s.cks.append((int(out.split()[1]), T.manifest(s.root), "flood", out.strip()))
    finally:
        flood.kill()
        flood.wait()
    s.stop()
    s.verify()


test_a_flood_outside_does_not_hold_the_session.watch_kind = "fanotify"


DEEP = r'''
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
for i in range(20):                     # 20 x 250 bytes: past PATH_MAX (4096)
    name = "%02d" % i + "d" * 248
    os.mkdir(name, dir_fd=fd)
    nfd = os.open(name, os.O_RDONLY, dir_fd=fd)
    os.close(fd)
    fd = nfd
end = time.time() + float(sys.argv[2])
i = 0
while time.time() < end:                # events in a directory whose path the kernel cannot print
    w = os.open("f%d" % (i % 5), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=fd)
    os.write(w, b"x"); os.close(w)
    i += 1
    time.sleep(0.002)
'''


def test_a_deep_directory_outside():
    """A neighbour writing in a directory whose path is longer than PATH_MAX
    (the e2e suite's test_long_path makes one, on the same file system):
    the kernel's path of that directory's fd cannot be read
    (ENAMETOOLONG), and the watcher took that for a loss, so the session's
    checkpoints scanned ("the watcher could not resolve a directory (its
    path: File name too long)"). A directory is placed by walking up its
    parents to the tree's root or the file system's top: this one is
    outside, and every checkpoint stays tracked."""
    s = Session({"f": b"A" * 12288}, run_args=())
    top = T.tempdir("mtm-deep-")
    deep = subprocess.Popen([sys.executable, "-c", DEEP, top, "4"])
    outs = []
    try:
        time.sleep(0.5)
        for i in range(4):
            outside_write(s.P("f"), i * 100, b"out%d" % i)
            s.inside("open(P('g%d'), 'wb').write(b'in')" % i)
            outs.append(s.ck("deep %d" % i))
            time.sleep(0.3)
    finally:
        deep.kill()
        deep.wait()
        subprocess.run(["rm", "-rf", top], check=True)  # (T.rmtree cannot: the path is too long)
    s.stop()
    if [o for o in outs if "tracked" not in o]:
        raise T.Failure("events in a deep directory outside the tree made checkpoints scan: %s\n%s" % (outs, s.stderr))
    s.verify()


test_a_deep_directory_outside.watch_kind = "fanotify"


def dir_handle(path):
    """name_to_handle_at(2) of a directory: "TYPE:HEX", as
    METAMORI_TEST_FREEING_HANDLES takes it."""
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(8 + 128)
    struct.pack_into("Ii", buf, 0, 128, 0)
    mount_id = ctypes.c_int()
    if libc.name_to_handle_at(-100, path.encode(), buf, ctypes.byref(mount_id), 0):  # (AT_FDCWD)
        raise OSError(ctypes.get_errno(), "name_to_handle_at", path)
    size, kind = struct.unpack_from("Ii", buf, 0)
    return "%d:%s" % (kind, buf.raw[8:8 + size].hex())


def test_a_directory_freed_at_the_barrier():
    """An event in a directory outside the tree that is removed just before
    a checkpoint: while the kernel reuses the directory's inode number
    (ext4), its handle answers ENOMEM, then ESTALE; measured here with two
    neighbours churning directories, 42 of 20,000 removed directories
    answered ENOMEM for 0.01-3.5 ms. The barrier looked once (~0.3 ms) and
    took what was still held for a loss, so the checkpoint scanned (seen in
    a clean-clone make test: "the watcher could not resolve a directory
    (being freed for too long)"). METAMORI_TEST_FREEING_US and _HANDLES
    make the test's removed directories answer ENOMEM in every drain and
    for that long after the barrier starts to settle: the barrier waits (up
    to 50 ms) and stays tracked; past its bound, the checkpoint scans, and
    holds every change either way."""
    for freeing_us, want in ((5000, "tracked"), (400000, "being freed for too long")):
        top = T.tempdir("mtm-freed-")
        dirs = [os.path.join(top, "d%d" % i) for i in range(2)]
        for d in dirs:
            os.mkdir(d)
        env = {"METAMORI_TEST_FREEING_US": str(freeing_us),
               "METAMORI_TEST_FREEING_HANDLES": ",".join(dir_handle(d) for d in dirs)}
        s = Session({"f": b"A" * 12288}, env=env, run_args=())
        outs = []
        for i, d in enumerate(dirs):
            T.write_file(d + "/f", b"x")
            os.unlink(d + "/f")
            os.rmdir(d)
            outside_write(s.P("f"), i * 100, b"out%d" % i)
            s.inside("open(P('g%d'), 'wb').write(b'in')" % i)
            outs.append(s.ck("freed %d" % i))
        s.stop()
        # (a queue overflow under a heavy load is a real loss: scanning is right)
        scanned = [o for o in s.stderr.splitlines() if "(scanned" in o and "queue overflowed" not in o]
        if scanned if want == "tracked" else want not in s.stderr:
            raise T.Failure("a directory freed %d us after the barrier: want %r: %s\n%s" % (freeing_us, want, outs, s.stderr))
        s.verify()


test_a_directory_freed_at_the_barrier.watch_kind = "fanotify"


def test_an_outside_write_behind_a_long_queue():
    """A write outside the session, completed before the checkpoint was
    asked for, behind a long queue of a neighbour's events (long names:
    each event is its metadata, a file handle and the name). fanotify's
    FIONREAD counts each queued event as its metadata alone (24 bytes), so
    a drain that read that many bytes read a fraction of the queue: the
    write's event was read after the mark (carried to the next checkpoint)
    or after the barrier, and the checkpoint, still "tracked", missed it.
    The session is stopped while the queue fills and the request waits, so
    that nothing is read before the checkpoint begins."""
    s = Session({"f": b"A" * 12288}, run_args=())
    outside = T.tempdir("mtm-queue-")
    ck = None
    os.kill(s.p.pid, signal.SIGSTOP)
    try:
        # ~3,000 events of ~330 bytes (~1 MiB): FIONREAD says ~72 KiB
        for i in range(3000):
            os.close(os.open(os.path.join(outside, "%s%05d" % ("n" * 240, i)), os.O_CREAT | os.O_WRONLY, 0o644))
        outside_write(s.P("f"), 0, b"late")
        man = T.manifest(s.root)
        ck = subprocess.Popen([T.METAMORI, "-C", s.root, "checkpoint", "-m", "behind"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
        time.sleep(0.3)  # (the request waits on the session's socket)
    finally:
        os.kill(s.p.pid, signal.SIGCONT)
    out, err = ck.communicate(timeout=60)
    if ck.returncode != 0:
        raise T.Failure("checkpoint failed (%d): %s" % (ck.returncode, err))
    s.cks.append((int(out.split()[1]), man, "behind", out.strip()))
    s.stop()
    if "tracked" not in out:  # (a queue overflowed by the machine's other work: scanned, sound)
        print("note: %s\n%s" % (out.strip(), s.stderr))
    s.verify()


test_an_outside_write_behind_a_long_queue.watch_kind = "fanotify"


def set_sysctl(name, value):
    path = "/proc/sys/" + name.replace(".", "/")
    old = open(path).read().strip()
    with open(path, "w") as f:
        f.write(str(value))
    return old


def overflow_test(kind):
    def t():
        knob = "fs.%s.max_queued_events" % kind
        if os.geteuid() != 0 or not os.path.exists("/proc/sys/" + knob.replace(".", "/")):
            raise Skip("needs root and " + knob)
        if os.environ.get("METAMORI_WATCH", kind) != kind:
            raise Skip("runs with the %s watcher only" % kind)
        old = set_sysctl(knob, 8)
        try:
            s = Session({"a": b"a"}, env={"METAMORI_WATCH": kind}, run_args=())
        finally:
            set_sysctl(knob, old)  # the queue's bound was taken when the session started
        # "many" watched (a checkpoint: the session has read its event and
        # set a watch), then the session stopped while the queue fills: it
        # overflows whatever the machine's load (a session that reads as
        # fast as the events come never lets 8 pile up)
        os.makedirs(s.P("many"))
        s.ck("many")
        os.kill(s.p.pid, signal.SIGSTOP)
        try:
            for i in range(64):
                T.write_file(s.P("many/f%02d" % i), b"%d" % i)
                outside_write(s.P("a"), 0, b"%d" % i)
            # made while the queue is full: their events are lost too
            os.makedirs(s.P("late/sub"))
            T.write_file(s.P("late/sub/g"), b"g" * 5000)
            link = os.path.join(T.tempdir("mtm-outside-"), "alias")
            os.link(s.P("many/f00"), link)
        finally:
            os.kill(s.p.pid, signal.SIGCONT)
        out = s.ck("overflow")
        # the watches lost with those events are set again: what changes
        # there now is seen by the next (tracked) checkpoint
        outside_write(s.P("late/sub/g"), 100, b"AFTER")
        outside_write(link, 0, b"LINKED")
        s.ck("after the overflow")
        s.stop()
        if "scanned" not in out or "overflowed" not in s.stderr:
            raise T.Failure("a lost event must make the checkpoint scan and say why: %s%s" % (out, s.stderr))
        s.verify()
    t.__name__ = "test_%s_queue_overflow" % kind
    t.watch_kind = kind  # runs with that watcher only (not a skip with the others)
    t.system_wide = True
    return t


def fanotify_queue_len():
    """fs.fanotify.max_queued_events, for the cases that fill the queue (a
    skip where it cannot be read or is too long to fill here)."""
    knob = "/proc/sys/fs/fanotify/max_queued_events"
    if os.geteuid() != 0 or not os.path.exists(knob):
        raise Skip("needs root and fs.fanotify.max_queued_events")
    qmax = int(open(knob).read())
    if qmax > 100000:
        raise Skip("fs.fanotify.max_queued_events is %d: too long a queue to fill here" % qmax)
    return qmax


def burst_outside(outside, n):
    """n files made outside the tree: n events for every fanotify watcher."""
    for i in range(n):
        os.close(os.open(os.path.join(outside, "n%06d" % i), os.O_CREAT | os.O_WRONLY, 0o644))


def burst_past_the_gate(s, gate, outside, qmax):
    """More events than the queue holds (files made in outside) while the
    session waits at the gate; then the gate opened, a write inside and one
    outside the session, a checkpoint (its line), the session stopped."""
    burst_outside(outside, qmax + 4000)
    os.unlink(gate)
    s.inside("open(P('f'), 'r+b').write(b'INSIDE')")
    outside_write(s.P("d/g"), 100, b"OUTSIDE")
    out = s.ck("after the burst")
    s.stop()
    T.rmtree(outside)
    return out


def test_fanotify_reads_while_the_inodes_load():
    """A file changed outside the tree makes the fanotify watcher load the
    tree's inodes (the stat cache: at 1,000,000 files, 0.4-0.9 s). It must read
    its queue on meanwhile: on a busy file system the queue (16,384 events)
    overflowed during the load, and every tracked checkpoint then scanned
    (issue 21, item 4). The load waits here while a gate file exists
    (METAMORI_TEST_INODE_LOAD_GATE) and more events than the queue holds come
    meanwhile: the checkpoint after stays tracked, and holds what changed."""
    # (the queue as it is: a shorter one overflowed here whenever the
    # session waited for a CPU on a loaded machine, load or not)
    qmax = fanotify_queue_len()
    gate = os.path.join(T.tempdir("mtm-gate-"), "gate")
    T.write_file(gate, b"")
    s = Session({"f": b"A" * 12288, "d/g": b"G" * 5000},
                env={"METAMORI_TEST_INODE_LOAD_GATE": gate, "METAMORI_DEBUG_SESSION": "1"}, run_args=())
    outside = T.tempdir("mtm-outside-")
    T.write_file(os.path.join(outside, "trigger"), b"t")  # a file changed outside: the inodes load (and wait)
    time.sleep(0.2)
    out = burst_past_the_gate(s, gate, outside, qmax)  # (while the load waits)
    if "loading the tree's inodes" not in s.stderr:
        raise T.Failure("no file changed outside made the inodes load: the case proves nothing\n%s" % s.stderr)
    if "tracked" not in out or "overflowed" in s.stderr:
        raise T.Failure("the queue overflowed while the inodes loaded, and the checkpoint scanned: %s%s" % (out, s.stderr))
    read = [int(n) for n in re.findall(r"inodes loaded .* (\d+) events read meanwhile", s.stderr)]
    if not read or max(read) < qmax:
        raise T.Failure("the burst came when no load waited (events read meanwhile: %s): the case proves nothing" % read)
    s.verify()


test_fanotify_reads_while_the_inodes_load.watch_kind = "fanotify"
# (its burst of events reaches every fanotify watcher on the file system:
# alone, with the cases that lower a limit)
test_fanotify_reads_while_the_inodes_load.system_wide = True
# (~15 s under ASan, ~4 s in the normal build: the normal build's only)
test_fanotify_reads_while_the_inodes_load.normal_build_only = True


def test_fanotify_reads_while_a_scan_walks():
    """A checkpoint that falls back to a scan walks the whole tree with the
    barrier judged (at 1,000,000 files: 6 s); the watcher must read its
    queue on meanwhile, or a busy file system overflows it and the next
    checkpoint scans too (and the one after, each scan as long). The walk
    waits here while a gate file exists (METAMORI_TEST_SCAN_GATE) and more
    events than the queue holds come meanwhile: the next checkpoint is
    tracked, and holds what changed."""
    qmax = fanotify_queue_len()
    gate = os.path.join(T.tempdir("mtm-gate-"), "gate")
    s = Session({"f": b"A" * 12288, "d/g": b"G" * 5000}, env={"METAMORI_TEST_SCAN_GATE": gate}, run_args=())
    s.inside("open(P('.metamoriignore'), 'a').write('# the next checkpoint scans' + chr(10))")
    T.write_file(gate, b"")
    ck = subprocess.Popen([T.METAMORI, "-C", s.root, "checkpoint", "-m", "scan"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    outside = T.tempdir("mtm-outside-")
    time.sleep(0.3)
    burst_outside(outside, qmax + 4000)  # more events than the queue holds, while the walk waits
    os.unlink(gate)
    out1, err1 = ck.communicate()
    if ck.returncode or "(scanned" not in out1:
        raise T.Failure("the checkpoint after .metamoriignore changed must scan: %s%s" % (out1, err1))
    s.cks.append((int(out1.split()[1]), T.manifest(s.root), "scan", out1.strip()))
    s.inside("open(P('f'), 'r+b').write(b'INSIDE')")
    out = s.ck("after the scan")
    s.stop()
    T.rmtree(outside)
    if "tracked" not in out or "overflowed" in s.stderr:
        raise T.Failure("the queue overflowed while the scan walked, and the next checkpoint scanned: %s%s" %
                        (out, s.stderr))
    s.verify()


test_fanotify_reads_while_a_scan_walks.watch_kind = "fanotify"
test_fanotify_reads_while_a_scan_walks.system_wide = True  # (its burst reaches every watcher)
test_fanotify_reads_while_a_scan_walks.normal_build_only = True


def test_fanotify_reads_while_the_record_waits():
    """A periodic checkpoint's record and commit run on the session's
    low-priority thread while its own thread waits (under pgbench hundreds
    of ms, a big tree's seconds); the watcher must read its queue on
    meanwhile, or a busy file system overflows it (16,384 events, file
    system wide: track_restore and session_cli scanned at load 12-20) and
    the next checkpoint scans. The record (SIGUSR1's checkpoint) waits here
    while a gate file exists (METAMORI_TEST_RECORD_GATE) and more events
    than the queue holds come meanwhile: the checkpoint after is tracked,
    and holds what changed."""
    qmax = fanotify_queue_len()
    gate = os.path.join(T.tempdir("mtm-gate-"), "gate")
    T.write_file(gate, b"")
    s = Session({"f": b"A" * 12288, "d/g": b"G" * 5000},
                env={"METAMORI_TEST_RECORD_GATE": gate, "METAMORI_DEBUG_SESSION": "phases"}, run_args=())
    s.inside("open(P('f'), 'r+b').write(b'FIRST')")
    os.kill(s.p.pid, signal.SIGUSR1)  # (a periodic checkpoint: its record waits at the gate)
    outside = T.tempdir("mtm-outside-")
    time.sleep(0.5)
    out = burst_past_the_gate(s, gate, outside, qmax)  # (while the record waits)
    if "the record waits at METAMORI_TEST_RECORD_GATE" not in s.stderr:
        raise T.Failure("no record waited at the gate: the case proves nothing\n%s" % s.stderr[-3000:])
    if "tracked" not in out or "overflowed" in s.stderr:
        raise T.Failure("the queue overflowed while the record waited, and the checkpoint scanned: %s%s" %
                        (out, s.stderr[-3000:]))
    s.verify()


test_fanotify_reads_while_the_record_waits.watch_kind = "fanotify"
test_fanotify_reads_while_the_record_waits.system_wide = True  # (its burst reaches every watcher)
test_fanotify_reads_while_the_record_waits.normal_build_only = True


def test_mapping_held_when_the_opens_were_lost():
    """The opens are heard in a queue of their own (a third more events on
    a busy file system: in the writes' queue they would overflow it sooner,
    and a checkpoint would scan). When that queue overflows (here, with
    METAMORI_TEST_OPENS_LOST, every open read is taken as lost), the open
    of a file an outsider then maps and holds is not heard: the session
    asks every process outside what it holds instead, and the checkpoints
    made while the mapping is held have its writes, tracked."""
    import mmap
    s = Session({"g": b"G" * 12288, "h": b"H" * 100}, env={"METAMORI_TEST_OPENS_LOST": "1"})
    s.ck("first")
    with open(s.P("g"), "r+b") as f:
        held = mmap.mmap(f.fileno(), 0)
    held[0:4] = b"ONE!"
    outs = [s.ck("written, still mapped, its open lost")]
    held[8:12] = b"TWO!"  # the same page, already dirty
    outs.append(s.ck("written again, still mapped"))
    held.close()
    s.ck("let go")
    s.stop()
    if any("tracked" not in o for o in outs) and not T.overflowed(s.stderr):
        raise T.Failure("the checkpoints did not stay tracked: %s%s" % (outs, s.stderr))
    s.verify()


test_mapping_held_when_the_opens_were_lost.watch_kind = "fanotify"


def test_inotify_watch_limit():
    """fs.inotify.max_user_watches below the tree's directory count: the
    watcher cannot see every directory, so every checkpoint scans and says
    why (and holds what changed where nothing watched)."""
    knob = "fs.inotify.max_user_watches"
    if os.geteuid() != 0 or not os.path.exists("/proc/sys/" + knob.replace(".", "/")):
        raise Skip("needs root and " + knob)
    files = {"d%d/e%d/f" % (i, i): b"x" * 5000 for i in range(12)}
    old = set_sysctl(knob, 2)
    try:  # (per user, for every process: restored as soon as the watches are set up)
        s = Session(files, env={"METAMORI_WATCH": "inotify"}, run_args=())
    finally:
        set_sysctl(knob, old)
    outside_write(s.P("d11/e11/f"), 100, b"UNSEEN")
    s.inside("open(P('d10/e10/f'), 'r+b').write(b'INSIDE')")
    outs = [s.ck("blind 1")]
    outside_write(s.P("d9/e9/f"), 4096, b"AGAIN")
    outs.append(s.ck("blind 2"))
    s.stop()
    if any("scanned" not in o for o in outs) or "max_user_watches" not in s.stderr:
        raise T.Failure("past the watch limit every checkpoint must scan and say why: %s%s" % (outs, s.stderr))
    s.verify()


test_inotify_watch_limit.watch_kind = "inotify"
# These lower a limit of the whole machine for a moment: a session starting
# elsewhere then would lose events too (and scan). ctest runs them alone, as
# session_sound_limits (RUN_SERIAL); SOUND_LIMITS=only / skip picks them.
test_inotify_watch_limit.system_wide = True


def main():
    tests = [test_issue_example_plain_checkpoint_after_session, test_outside_write_same_file,
             test_outside_changes_of_every_kind, test_outside_mmap_write, test_outside_mapping_held_across_checkpoints,
             test_mapping_held_when_the_opens_were_lost, test_file_moved_in_while_open,
             test_file_moved_in_by_another_process, test_other_user, test_double_forked_daemon,
             test_static_child_closes_inherited_fds, test_dropped_privileges, test_write_racing_the_barrier,
             test_precopy_fds_only_for_the_same_file] + \
            [gap_test(h) for h in ("aio", "lio", "sys", "rawsys", "mixed", "procfd", "scm", "pidfd")] + \
            [alive_gap_test(h) for h in ("sysopen", "sysmmap", "handle")] + \
            [test_mixed_libc_and_inline_alive, dispatch_trust_test(False), dispatch_trust_test(True)] + [hard_link_test(w) for w in ("before", "during", "gone", "moved")] + \
            [test_directories_come_and_go_outside, test_directories_removed_outside_keep_the_cache,
             test_directories_moved_in_from_outside,
             test_a_flood_outside_does_not_hold_the_session,
             test_an_outside_write_behind_a_long_queue, test_a_deep_directory_outside,
             test_a_directory_freed_at_the_barrier] + \
            [overflow_test("inotify"), overflow_test("fanotify"), test_inotify_watch_limit,
             test_fanotify_reads_while_the_inodes_load, test_fanotify_reads_while_a_scan_walks,
             test_fanotify_reads_while_the_record_waits]
    only = os.environ.get("SOUND_ONLY")
    limits = os.environ.get("SOUND_LIMITS")
    if limits:
        tests = [t for t in tests if getattr(t, "system_wide", False) == (limits == "only")]
    if os.environ.get("MTM_SANITIZED"):  # (the sanitizer build: fewer runs)
        tests = [t for t in tests if not getattr(t, "normal_build_only", False)]
    # each case with each watcher; the interposer's own wrappers (part 3 of
    # the issue) also alone, without a watcher (METAMORI_WATCH=off)
    modes = [os.environ["METAMORI_WATCH"]] if os.environ.get("METAMORI_WATCH") else ["fanotify", "inotify", "off"]
    if os.environ.get("MTM_SANITIZED") and not os.environ.get("METAMORI_WATCH"):
        # the sanitizer build: fewer runs, for `make test`'s 10 minutes (the
        # normal build runs all three; the interposer's wrappers run under
        # ASan in every mode, the session's watcher code in fanotify's)
        modes = ["fanotify"]
    passed = failed = skipped = 0
    # syscall user dispatch is opt-in (track/dispatch.c): these tests run
    # with it, as test_dispatch_trusts_the_logs and the inline gaps need
    os.environ["METAMORI_DISPATCH"] = "1"
    for mode in modes:
        os.environ["METAMORI_WATCH"] = mode
        for t in tests:
            if only and only not in t.__name__:
                continue
            # (inline system calls too: syscall user dispatch records them;
            # the normal build's)
            if mode == "off" and (not t.__name__.startswith("test_gap_") or t.__name__ == "test_gap_mixed" or
                                  (t.__name__ == "test_gap_rawsys" and os.environ.get("MTM_SANITIZED"))):
                continue
            # one pid writing one file two ways is fanotify's question (inotify
            # compares every file written); the sanitizer build's bypass check
            # runs in test_dispatch_trusts_the_logs
            if t.__name__ in ("test_gap_mixed", "test_mixed_libc_and_inline_alive") and (
                    mode == "inotify" or (os.environ.get("MTM_SANITIZED") and t.__name__ != "test_gap_mixed")):
                continue
            if getattr(t, "watch_kind", mode) != mode:
                continue
            name = "%s (%s)" % (t.__name__, mode)
            t0 = os.times()
            try:
                t()
                passed += 1
                print("ok   %s%s" % (name, T._took(t0)))  # (its time: make test's budget)
            except Skip as e:
                skipped += 1
                print("skip %s: %s" % (name, e))
            except Exception as e:
                failed += 1
                print("FAIL %s: %s" % (name, e))
                T.reap_strays()  # a session the failure left running
            sys.stdout.flush()
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    sys.exit(1 if failed else 77 if skipped else 0)  # a skipped case is a skip, never a pass (mtmtest.main)


if __name__ == "__main__":
    main()
