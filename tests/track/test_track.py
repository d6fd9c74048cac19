"""The interposer (libmetamori-preload.so) records what each modifying call
changed, exactly as protocol.h says: run real programs under it in a fake
session and read their logs back.

Environment (CMake sets it): METAMORI_PRELOAD (the .so), METAMORI_TRACK_BIN
(the directory of the track_calls* programs), METAMORI_TRACK_STATIC (a static
program, empty when libc.a is missing).
"""
import os
import subprocess
import sys
import time

import mtmtest
from tracklog import BIN, PRELOAD, Session, Log, extents, kinds

STATIC = os.environ.get("METAMORI_TRACK_STATIC", "")
VARIANTS = ["track_calls", "track_calls_nolfs", "track_calls_fortify"]
KB = 1024


Skip = mtmtest.Skip  # exit 77 from a program: the call cannot be tried here


def fresh(files=None, dirs=()):
    """A tree with a fake session; files: {name: size or bytes}."""
    root = os.path.realpath(mtmtest.tempdir("mtm-track-"))
    s = Session(root)
    for d in dirs:
        os.makedirs(os.path.join(root, d), exist_ok=True)
    for name, v in (files or {}).items():
        data = v if isinstance(v, bytes) else b"\x01" * v
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)
    return s, root


def calls(s, cmd, *args, prog="track_calls", check=True, **kw):
    p = s.run([os.path.join(BIN, prog), cmd] + list(args), check=False, **kw)
    if p.returncode == 77:
        raise Skip(p.stdout.strip())
    if check and p.returncode != 0:
        raise AssertionError("%s %s failed (%d): %s%s" % (prog, cmd, p.returncode, p.stdout, p.stderr))
    return p


def eq(what, expected, got):
    if expected != got:
        raise AssertionError("%s: expected %r, got %r" % (what, expected, got))


def core(recs):
    """recs without the sticky WHOLE/RELEASE a shell's redirects make (dash
    points its stdout at the file: stdio could write there unseen)."""
    return [r for r in recs if r[0] not in ("WHOLE", "RELEASE")]


def only(recs, allowed):
    """Every record's path is in allowed (nothing else was recorded)."""
    extra = sorted({p for t, p, a, b in recs if p not in allowed and t != "SCAN"})
    if extra:
        raise AssertionError("unexpected records for %s: %r" % (extra, recs))


# ---------------------------------------------------------------------------
# One call each, in the three builds (LFS names, plain names, fortified).

def per_variant(fn):
    def wrapper():
        for prog in VARIANTS:
            try:
                fn(prog)
            except Skip as e:
                mtmtest.skip_part("%s [%s]" % (fn.__name__, prog), e)
            except AssertionError as e:
                raise AssertionError("[%s] %s" % (prog, e))
    wrapper.__name__ = fn.__name__
    return wrapper


@per_variant
def test_open_creates_and_truncates(prog):
    s, root = fresh()
    calls(s, "open_creat", prog=prog)
    eq("open O_CREAT new", [("NS", "a", 0, 0)], s.records())
    s.reset()
    calls(s, "open_creat", prog=prog)  # exists now: nothing changes
    eq("open O_CREAT existing", [], s.records())
    os.unlink(os.path.join(root, "a"))
    calls(s, "open_excl", prog=prog)
    eq("open O_EXCL", [("NS", "a", 0, 0)], s.records())
    s.reset()
    with open(os.path.join(root, "a"), "wb") as f:
        f.write(b"x" * 5000)
    calls(s, "open_trunc", prog=prog)
    eq("open O_TRUNC", [("TRUNC", "a", 0, 0)], s.records())
    s.reset()
    calls(s, "open_rdonly", prog=prog)
    eq("open O_RDONLY", [], s.records())
    calls(s, "open_var", prog=prog)
    eq("open with variable flags (__open_2 when fortified)", [("TRUNC", "a", 0, 0)], s.records())
    s.reset()
    os.mkdir(os.path.join(root, "d"))
    calls(s, "openat_creat", prog=prog)
    eq("openat O_CREAT", [("NS", "d/b", 0, 0), ("WRITE", "d/b", 0, 10)], s.records())
    s.reset()
    calls(s, "openat_var", prog=prog)
    eq("openat with variable flags", [("TRUNC", "d/b", 0, 0)], s.records())
    s.reset()
    calls(s, "creat", prog=prog)
    eq("creat", [("NS", "c", 0, 0), ("WRITE", "c", 0, 2)], s.records())
    s.reset()
    calls(s, "creat", prog=prog)
    eq("creat existing", [("TRUNC", "c", 0, 0), ("WRITE", "c", 0, 2)], s.records())


@per_variant
def test_writes(prog):
    s, root = fresh({"a": 64 * KB, "src": 64 * KB})
    for cmd, want in [
        ("write", [(5000, 5100)]),
        ("pwrite", [(8192, 8292)]),
        ("writev", [(100, 130)]),
        ("pwritev", [(4096, 4126)]),
        ("pwritev2", [(300, 330), (20000, 20030)]),
        ("copy_file_range", [(4096, 5096), (50000, 50100)]),
        ("sendfile", [(100, 600)]),
        ("splice", [(8192, 8492)]),
    ]:
        s.reset()
        calls(s, cmd, prog=prog)
        recs = s.records()
        eq(cmd, want, extents(recs, "a"))
        only(recs, {"a"})


@per_variant
def test_append(prog):
    s, root = fresh({"a": 1000})
    calls(s, "append", prog=prog)
    eq("O_APPEND writes", [(1000, 1020)], extents(s.records(), "a"))
    s.reset()
    calls(s, "append_setfl", prog=prog)
    eq("F_SETFL O_APPEND write", [(1020, 1027)], extents(s.records(), "a"))
    eq("size", 1027, os.path.getsize(os.path.join(root, "a")))


@per_variant
def test_sizes(prog):
    s, root = fresh({"a": 64 * KB})
    calls(s, "ftruncate", prog=prog)
    eq("ftruncate", [("TRUNC", "a", 123, 0)], s.records())
    s.reset()
    calls(s, "truncate", prog=prog)
    eq("truncate", [("TRUNC", "a", 77, 0)], s.records())
    s.reset()
    calls(s, "posix_fallocate", prog=prog)
    eq("posix_fallocate", [(0, 16384)], extents(s.records(), "a"))
    s.reset()
    try:
        calls(s, "fallocate", prog=prog)
        eq("fallocate + punch hole", [(0, 4096 + 8192)], extents(s.records(), "a"))
    except Skip as e:
        mtmtest.skip_part("fallocate [%s]" % prog, e)


@per_variant
def test_namespace(prog):
    s, root = fresh({"a": 10}, dirs=["d"])
    calls(s, "rename", prog=prog)
    eq("rename", [("NS", "a", 0, 0), ("NS", "b", 0, 0)], s.records())
    os.rename(os.path.join(root, "b"), os.path.join(root, "a"))
    s.reset()
    calls(s, "renameat", prog=prog)
    eq("renameat", [("NS", "a", 0, 0), ("NS", "d/moved", 0, 0)], s.records())
    os.rename(os.path.join(root, "d/moved"), os.path.join(root, "a"))
    s.reset()
    calls(s, "renameat2", prog=prog)
    eq("renameat2", [("NS", "a", 0, 0), ("NS", "b", 0, 0)], s.records())
    os.rename(os.path.join(root, "b"), os.path.join(root, "a"))
    s.reset()
    calls(s, "link", prog=prog)
    recs = s.records()
    eq("link, linkat", [("NS", "l1", 0, 0), ("META", "a", 0, 0), ("NS", "l2", 0, 0), ("META", "a", 0, 0)], recs)
    s.reset()
    calls(s, "symlink", prog=prog)
    eq("symlink, symlinkat", [("NS", "s1", 0, 0), ("NS", "s2", 0, 0)], s.records())
    s.reset()
    calls(s, "mknod", prog=prog)
    eq("mknod, mkfifo", [("NS", "fifo1", 0, 0), ("NS", "fifo2", 0, 0)], s.records())
    s.reset()
    calls(s, "mkdir", prog=prog)
    eq("mkdir, mkdirat", [("NS", "n", 0, 0), ("NS", "n/m", 0, 0)], s.records())
    s.reset()
    calls(s, "unlink", prog=prog)
    eq("unlink", [("NS", "a", 0, 0)], s.records())
    s.reset()
    open(os.path.join(root, "a"), "w").close()
    calls(s, "remove", prog=prog)
    eq("remove", [("NS", "a", 0, 0)], s.records())
    s.reset()
    calls(s, "rmdir", prog=prog)
    eq("rmdir", [("NS", "d", 0, 0)], s.records())
    s.reset()
    os.mkdir(os.path.join(root, "d"))
    open(os.path.join(root, "a"), "w").close()
    calls(s, "unlinkat", prog=prog)
    eq("unlinkat", [("NS", "a", 0, 0), ("NS", "d", 0, 0)], s.records())


@per_variant
def test_metadata(prog):
    s, root = fresh({"a": 10, "src": 10, "c": 10, "d/b": 1}, dirs=["d"])
    calls(s, "chmod", prog=prog)
    eq("chmod, fchmod, fchmodat", [("META", "a", 0, 0), ("META", "src", 0, 0), ("META", "d", 0, 0)], s.records())
    s.reset()
    calls(s, "chown", prog=prog)
    eq("chown, fchown, lchown, fchownat",
       [("META", "a", 0, 0), ("META", "src", 0, 0), ("META", "d", 0, 0), ("META", "d/b", 0, 0)], s.records())
    s.reset()
    calls(s, "utimes", prog=prog)
    eq("utimensat, utime, utimes, lutimes, futimens, futimes",
       [("META", p, 0, 0) for p in ("a", "src", "d", "d/b", "c", "c")], s.records())


@per_variant
def test_stdio(prog):
    s, root = fresh({"a": 100})
    calls(s, "stdio", prog=prog)
    eq("fopen w + fclose", [("NS", "s", 0, 0), ("WHOLE", "s", 1, 0), ("WHOLE", "s", 0, 0), ("RELEASE", "s", 0, 0)],
       s.records())
    s.reset()
    calls(s, "stdio", prog=prog)
    eq("fopen w existing", [("TRUNC", "s", 0, 0), ("WHOLE", "s", 1, 0), ("WHOLE", "s", 0, 0), ("RELEASE", "s", 0, 0)],
       s.records())
    s.reset()
    calls(s, "stdio_append", prog=prog)
    eq("fopen a", [("WHOLE", "a", 1, 0), ("WHOLE", "a", 0, 0), ("RELEASE", "a", 0, 0)], s.records())
    s.reset()
    calls(s, "freopen", prog=prog)
    eq("freopen of stdout", [("NS", "s2", 0, 0), ("WHOLE", "s2", 1, 0)], s.records())
    eq("content", b"to s2\n", open(os.path.join(root, "s2"), "rb").read())
    s.reset()
    calls(s, "dup2_stdout", prog=prog)
    eq("stdout moved into the tree by dup2, then by close + open",
       [("NS", "o1", 0, 0), ("WHOLE", "o1", 1, 0), ("NS", "o2", 0, 0),
        ("WHOLE", "o1", 0, 0), ("RELEASE", "o1", 0, 0), ("WHOLE", "o2", 1, 0)], s.records())
    eq("content", (b"one\n", b"two\n"), (open(os.path.join(root, "o1"), "rb").read(),
                                          open(os.path.join(root, "o2"), "rb").read()))
    s.reset()
    calls(s, "fdopen", prog=prog)
    eq("fdopen r+", [("WHOLE", "a", 1, 0), ("WHOLE", "a", 0, 0), ("RELEASE", "a", 0, 0)], s.records())


@per_variant
def test_mmap(prog):
    s, root = fresh({"a": 100})
    calls(s, "mmap", prog=prog)
    eq("shared writable mmap",
       [("TRUNC", "a", 8192, 0), ("WHOLE", "a", 1, 0), ("WHOLE", "a", 0, 0),  # mmap, msync
        ("WHOLE", "a", 0, 0), ("RELEASE", "a", 0, 0)], s.records())           # munmap
    with open(os.path.join(root, "a"), "rb") as f:
        eq("mapped bytes", b"mapped", f.read()[4096:4102])
    s.reset()
    calls(s, "mremap", prog=prog)
    eq("mremap then munmap of the new range",
       [("TRUNC", "a", 16384, 0), ("WHOLE", "a", 1, 0), ("WHOLE", "a", 0, 0), ("RELEASE", "a", 0, 0)], s.records())
    s.reset()
    calls(s, "mmap_private", prog=prog)
    eq("private mmap", [], s.records())


# ---------------------------------------------------------------------------
# Paths: what is never recorded, relative and symlinked paths.

def test_outside_and_store_not_recorded():
    s, root = fresh()
    out = mtmtest.tempdir("mtm-track-out-")
    os.makedirs(os.path.join(root, ".metamori"), exist_ok=True)
    calls(s, "outside", out)
    eq("records", [], s.records())
    eq("written outside", 100, os.path.getsize(os.path.join(out, "out")))


def test_relative_and_symlinked_paths():
    s, root = fresh({"a": 10}, dirs=["d"])
    calls(s, "relative")
    eq("relative to a chdir", [("WRITE", "a", 0, 10), ("NS", "d/b", 0, 0)], s.records())
    s.reset()
    os.symlink("d", os.path.join(root, "dl"))
    os.unlink(os.path.join(root, "d", "b"))
    calls(s, "symlinked_dir")
    eq("through a symlinked directory",
       [("NS", "d/b", 0, 0), ("WRITE", "d/b", 0, 5), ("META", "d/b", 0, 0), ("NS", "d/b", 0, 0)],
       s.records())


def test_root_given_through_a_symlink():
    s, root = fresh()
    link = root + "-link"
    os.symlink(root, link)
    env = s.env({"METAMORI_ROOT": link, "METAMORI_SESSION": link + "/.metamori/session"})
    s.run(["sh", "-c", 'echo x > f; exec sh -c "echo y >> f"'], env=env)
    logs = s.logs()
    eq("one log, adopted across exec", 1, len(logs))
    # (CODE: the exec'd image says its pid ran other code in this interval)
    eq("records", [("NS", "f", 0, 0), ("WRITE", "f", 0, 2), ("CODE", "", 0, 0), ("WRITE", "f", 2, 2)],
       core(s.records()))
    os.unlink(link)


def test_rename_of_open_file_follows():
    s, root = fresh({"a": 100})
    calls(s, "rename_open")
    eq("records", [("NS", "a", 0, 0), ("NS", "b", 0, 0), ("WRITE", "b", 40, 10)], s.records())


def test_tmpfile_linked():
    s, root = fresh()
    calls(s, "tmpfile")
    eq("O_TMPFILE then linkat", [("NS", "t", 0, 0), ("WRITE", "t", 4096, 10)], s.records())


def test_mkstemp_mkdtemp():
    s, root = fresh()
    p = calls(s, "mkstemp")
    f, d = p.stdout.split()
    eq("records", [("NS", f, 0, 0), ("WRITE", f, 0, 10), ("NS", d, 0, 0)], s.records())


def test_mkostemps_append():
    """mkostemps(t, suffixlen, flags): the fd's flags are the third
    argument; with O_APPEND, a pwrite at 0 is recorded at the end, where
    Linux puts it (the interposer took the suffix's length for the flags)."""
    s, root = fresh()
    p = calls(s, "mkostemps_append")
    f = p.stdout.split()[0]
    eq("records", [("NS", f, 0, 0), ("WRITE", f, 0, 20)], s.records())
    eq("content", 20, os.path.getsize(os.path.join(root, f)))


def test_hard_links_scan():
    """Writing or chmod'ing through one name of a file with several changes
    names the interposer does not know: one SCAN per checkpoint interval."""
    s, root = fresh({"a": 100})
    calls(s, "hardlink")
    eq("records", [("NS", "h", 0, 0), ("META", "a", 0, 0), ("WRITE", "h", 0, 10), ("SCAN", "", 0, 0),
                   ("META", "h", 0, 0), ("NS", "h", 0, 0)], s.records())
    s.reset()
    calls(s, "write")  # a has one name again: no scan
    eq("records", [("WRITE", "a", 5000, 100)], s.records())


def test_dup_family():
    s, root = fresh({"a": 10000})
    calls(s, "dup")
    eq("dup, dup2, F_DUPFD_CLOEXEC", [(0, 1), (4096, 4097), (8192, 8193)], extents(s.records(), "a"))
    only(s.records(), {"a"})


def test_closefrom_keeps_the_log():
    s, root = fresh({"a": 1000})
    calls(s, "closefrom")
    eq("records after closefrom(3) and close(3..63)", [(0, 10), (100, 110)], extents(s.records(), "a"))


def test_inherited_stdout_redirect():
    # a redirect made before exec, by a parent without the interposer
    s, root = fresh()
    with open(os.path.join(root, "out"), "wb") as f:
        subprocess.run([os.path.join(BIN, "track_calls"), "stdout"], stdout=f, env=s.env(), cwd=root, check=True)
    recs = s.records()
    eq("stdout into the tree", [("WHOLE", "out", 1, 0), ("WRITE", "out", 10, 10)], recs)
    eq("content", b"via stdio\nvia write\n", open(os.path.join(root, "out"), "rb").read())


def test_sequential_writes_coalesce():
    s, root = fresh()
    calls(s, "many")
    recs = [r for r in s.records() if r[0] == "WRITE"]
    eq("one record for 1000 sequential writes", [("WRITE", "a", 0, 4096 * 1000)], recs)


def test_log_overflow_flag():
    s, root = fresh()
    cap = 1 << 20  # a test-sized log; records of 32 bytes ("a" padded)
    calls(s, "overflow", str(cap // 32 + 10), env=s.env({"METAMORI_TRACK_LOG_CAPACITY": str(cap)}))
    logs = s.logs()
    eq("logs", 1, len(logs))
    lg = list(logs.values())[0]
    eq("overflow", 1, lg.overflow)
    eq("capacity", cap, lg.capacity)
    eq("full up to the last record that fit", cap, lg.tail)
    eq("file size", 64 + cap, os.path.getsize(lg.path))


def test_sticky_record_lost_to_overflow_is_said_again():
    s, root = fresh()
    cap = 4096
    p = subprocess.Popen([os.path.join(BIN, "track_calls"), "sticky_overflow", str(cap // 32 + 10)], cwd=root,
                         env=s.env({"METAMORI_TRACK_LOG_CAPACITY": str(cap)}),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        eq("full", "full", p.stdout.readline().strip())
        recs = s.barrier()  # what a checkpoint reads, then empties
        eq("overflowed: the stream's sticky record did not fit", False, ("WHOLE", "s", 1, 0) in recs)
        s.set_gate(0)
        p.stdin.write("g")
        p.stdin.flush()
        eq("done", "done", p.stdout.readline().strip())
        recs = s.records()
        eq("said again in the emptied log", [("WHOLE", "s", 1, 0), ("WRITE", "a", 100, 1)], recs)
        p.stdin.close()
        eq("exit", 0, p.wait(timeout=30))
    finally:
        s.set_gate(0)
        if p.poll() is None:
            p.kill()


# ---------------------------------------------------------------------------
# Processes: threads, fork, vfork, exec, spawn, static programs, io_uring.

def test_threads():
    s, root = fresh()
    calls(s, "threads")
    eq("8 threads x 64 blocks", [(0, 8 * 64 * 4096)], extents(s.records(), "a"))
    eq("records", 8 * 64 + 1, len(s.records()))  # NS + one per block


def test_fork_child_has_its_own_log():
    s, root = fresh({"a": 1000})
    p = calls(s, "fork")
    child = int(p.stdout.split()[0])
    logs = s.logs()
    parent = [pid for pid in logs if pid != child]
    eq("two logs", 2, len(logs))
    eq("child's records", [("WRITE", "a", 100, 10), ("NS", "child", 0, 0)], logs[child].recs)
    eq("parent's records", [("WRITE", "a", 0, 10), ("WRITE", "a", 200, 10)], logs[parent[0]].recs)


def test_vfork_exec():
    s, root = fresh({"a": 1000})
    calls(s, "vfork")
    recs = s.records()
    eq("child's shell redirect", {"NS", "WRITE"}, kinds(core(recs), "vf"))
    eq("parent's write", [(300, 310)], extents(recs, "a"))


def test_exec_keeps_the_interposer():
    s, root = fresh()
    calls(s, "exec_env")
    recs = s.records()
    for f in ("e1", "e2", "e3"):
        eq("records of %s (custom env: execve, posix_spawn, execlp after clearenv)" % f,
           [("NS", f, 0, 0), ("WRITE", f, 0, 2)], [r for r in core(recs) if r[1] == f])


def test_exec_dynamic_same_log():
    s, root = fresh({"a": 100})
    p = calls(s, "exec", "/bin/sh", "-c", "echo z > ez")
    pid = int(p.stdout.split()[0])
    logs = s.logs()
    eq("one log, the exec'ing pid's", [pid], list(logs))
    eq("records before and after exec", [("WRITE", "a", 0, 10), ("CODE", "", 0, 0), ("NS", "ez", 0, 0), ("WRITE", "ez", 0, 2)],
       core(logs[pid].recs))
    eq("unlocked once it exited", False, logs[pid].locked())


def test_exec_static():
    if not STATIC:
        raise Skip("no static libc (libc6-dev's libc.a) to link a static program")
    s, root = fresh({"a": 100})
    p = subprocess.Popen([os.path.join(BIN, "track_calls"), "exec", STATIC, "st", "hold"], cwd=root,
                         env=s.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pid = int(p.stdout.readline())
    eq("static program started", "ready", p.stdout.readline().strip())
    logs = s.logs()
    eq("records", [("WRITE", "a", 0, 10), ("SCAN", "", 1, 0)], logs[pid].recs)
    eq("log locked while the static program runs", True, logs[pid].locked())
    p.stdin.close()
    p.wait(timeout=30)
    eq("unlocked once it exited", False, Log(logs[pid].path).locked())
    eq("static wrote", b"static\n", open(os.path.join(root, "st"), "rb").read())


def test_fexecve_static():
    if not STATIC:
        raise Skip("no static libc (libc6-dev's libc.a) to link a static program")
    s, root = fresh()
    p = calls(s, "fexecve", STATIC, "st")
    pid = int(p.stdout.split()[0])
    eq("records", [("SCAN", "", 1, 0)], s.logs()[pid].recs)
    eq("static wrote", b"static\n", open(os.path.join(root, "st"), "rb").read())


def test_spawn_static():
    if not STATIC:
        raise Skip("no static libc (libc6-dev's libc.a) to link a static program")
    s, root = fresh()
    p = calls(s, "spawn_static", STATIC, "st")
    pid = int(p.stdout.split()[0])
    eq("parent's sticky SCAN", [("SCAN", "", 1, 0)], s.logs()[pid].recs)


def test_exec_setuid_scans():
    """The loader ignores LD_PRELOAD in a setuid program: a sticky SCAN."""
    import shutil
    s, root = fresh({"a": 100})
    prog = os.path.join(mtmtest.tempdir("mtm-track-suid-"), "suid-true")
    shutil.copy("/bin/true", prog)
    os.chmod(prog, 0o4755)
    p = calls(s, "exec", prog)
    pid = int(p.stdout.split()[0])
    # (as root the loader keeps LD_PRELOAD: the image that follows says CODE)
    code = [("CODE", "", 0, 0)] if os.geteuid() == 0 else []
    eq("records", [("WRITE", "a", 0, 10), ("SCAN", "", 1, 0)] + code, s.logs()[pid].recs)
    s.reset()
    os.chmod(prog, 0o755)
    p = calls(s, "exec", prog)
    eq("without the bit: no SCAN", [("WRITE", "a", 0, 10), ("CODE", "", 0, 0)], s.records())


def test_io_uring_sticky_scan():
    s, root = fresh()
    calls(s, "io_uring")
    eq("records", [("SCAN", "", 1, 0)], s.records())


def test_liburing_sticky_scan():
    prog = os.environ.get("METAMORI_TRACK_URING", "")
    if not prog:
        raise Skip("built without liburing-dev")
    s, root = fresh()
    p = s.run([prog], check=False)
    if p.returncode == 77:
        raise Skip(p.stdout.strip())
    eq("exit", 0, p.returncode)
    eq("records", [("SCAN", "", 1, 0)], s.records())


# ---------------------------------------------------------------------------
# The barrier, the lock, and staying out of the way.

def test_barrier_holds_and_releases():
    s, root = fresh({"a": 100})
    s.set_gate(1)
    p = subprocess.Popen([os.path.join(BIN, "track_calls"), "wait_write"], cwd=root, env=s.env(),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        eq("opened", "ready", p.stdout.readline().strip())
        p.stdin.write("g")
        p.stdin.flush()
        time.sleep(0.5)
        eq("writer still held", None, p.poll())
        eq("file not written while the gate is closed", b"\x01" * 8, open(os.path.join(root, "a"), "rb").read(8))
        logs = s.logs()
        eq("one log", 1, len(logs))
        lg = list(logs.values())[0]
        eq("no record yet", [], lg.recs)
        eq("not in flight while waiting", 0, lg.inflight)
        s.set_gate(0)
        out, _ = p.communicate(timeout=30)
        eq("writer done", "done", out.strip())
        eq("records", [("WRITE", "a", 0, 8)], s.records())
        eq("in flight after", 0, list(s.logs().values())[0].inflight)
    finally:
        s.set_gate(0)
        if p.poll() is None:
            p.kill()


def test_barrier_under_churn():
    """Threads (sequential and positional writes, an O_APPEND logger) and a
    forked child write while checkpoints come and go: every byte that changed
    between two barriers is in the records read at the second one."""
    s, root = fresh({"a": 1 << 20, "b": 1 << 20})
    names = ("a", "b", "c", "log")

    def snap():
        out = {}
        for n in names:
            try:
                out[n] = open(os.path.join(root, n), "rb").read()
            except FileNotFoundError:
                out[n] = b""
        return out

    def covered(old, new, ext):
        """The first changed byte no extent covers, or None."""
        n = max(len(old), len(new))
        old, new = old.ljust(n, b"\0"), new.ljust(n, b"\0")
        cov = bytearray(n)
        for a, b in ext:
            a, b = min(a, n), min(b, n)
            cov[a:b] = b"\1" * (b - a)
        i = cov.find(0)
        while 0 <= i < n:  # each uncovered run must be unchanged
            j = cov.find(1, i)
            j = n if j < 0 else j
            if old[i:j] != new[i:j]:
                return next(k for k in range(i, j) if old[k] != new[k])
            i = cov.find(0, j)
        return None

    p = subprocess.Popen([os.path.join(BIN, "track_calls"), "churn"], cwd=root, env=s.env())
    prev = snap()
    barriers = 0
    try:
        while True:
            done = p.poll() is not None
            recs = s.barrier()
            cur = snap()
            for n in names:
                ext = extents(recs, n)
                bad = covered(prev[n], cur[n], ext)
                if bad is not None:
                    raise AssertionError("barrier %d: byte %d of %s changed but is not recorded (%d extents)"
                                         % (barriers, bad, n, len(ext)))
            prev = cur
            barriers += 1
            s.set_gate(0)
            if done:
                break
            time.sleep(0.002)
    finally:
        s.set_gate(0)
        if p.poll() is None:
            p.kill()
    eq("churn exit", 0, p.wait())
    eq("log lines", 20000, prev["log"].count(b"\n"))
    eq("shared position: every write kept", 2 * 5000 * 100, len(prev["c"]))
    print("churn: %d barriers while the writers ran" % barriers)


def test_fifo_not_tracked():
    s, root = fresh({"a": 10})
    os.mkfifo(os.path.join(root, "p"))
    p = subprocess.Popen([os.path.join(BIN, "track_calls"), "fifo"], cwd=root, env=s.env(),
                         stdout=subprocess.PIPE, text=True)
    try:
        eq("ready", "ready", p.stdout.readline().strip())
        time.sleep(0.2)  # let it block in write()
        eq("no log while blocked on the FIFO", {}, s.logs())
        fd = os.open(os.path.join(root, "p"), os.O_RDONLY)
        got = 0
        while got < 200000:
            got += len(os.read(fd, 65536))
        os.close(fd)
        eq("exit", 0, p.wait(timeout=30))
        eq("records", [("WRITE", "a", 0, 1)], s.records())
    finally:
        if p.poll() is None:
            p.kill()
    # a shell redirect into the FIFO blocks in open(O_CREAT|O_TRUNC)
    s.reset()
    p = subprocess.Popen(["sh", "-c", "echo hi > p"], cwd=root, env=s.env())
    try:
        time.sleep(0.2)
        eq("not in flight while blocked opening the FIFO", [0] * len(s.logs()),
           [lg.inflight for lg in s.logs().values()])
        with open(os.path.join(root, "p")) as f:
            eq("read", "hi\n", f.read())
        eq("exit", 0, p.wait(timeout=30))
        eq("records", [], s.records())
    finally:
        if p.poll() is None:
            p.kill()


def test_log_locked_while_alive():
    s, root = fresh({"a": 100})
    p = subprocess.Popen([os.path.join(BIN, "track_calls"), "hold"], cwd=root, env=s.env(),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    eq("ready", "ready", p.stdout.readline().strip())
    lg = list(s.logs().values())[0]
    eq("locked while alive", True, lg.locked())
    eq("pid in header", p.pid, lg.pid)
    p.stdin.close()
    p.wait(timeout=30)
    eq("unlocked after exit", False, lg.locked())


def test_inactive_without_session():
    s, root = fresh({"a": 100})
    env = s.env()
    del env["METAMORI_SESSION"]
    calls(s, "write", env=env)
    calls(s, "stdio", env=env)
    eq("no log without METAMORI_SESSION", {}, s.logs())
    env = s.env()
    del env["METAMORI_ROOT"]
    calls(s, "write", env=env)
    eq("no log without METAMORI_ROOT", {}, s.logs())
    # a ctl that is not ours (wrong magic): stand aside
    s.map[0:4] = b"XXXX"
    calls(s, "write")
    eq("no log with a foreign ctl", {}, s.logs())


# ---------------------------------------------------------------------------
# Distro programs (built with _FORTIFY_SOURCE): sh, cp, mv, rm, ...

def sh(s, cmd):
    return s.run(["sh", "-c", cmd])


def test_distro_tools():
    s, root = fresh({"src": 10000, "f": 5000})
    sh(s, "echo x > new")
    eq("sh redirect", [("NS", "new", 0, 0), ("WHOLE", "new", 1, 0), ("WRITE", "new", 0, 2), ("WHOLE", "new", 0, 0),
                       ("RELEASE", "new", 0, 0)], s.records())
    s.reset()
    sh(s, "echo y >> new")
    eq("sh append", [("WRITE", "new", 2, 2)], core(s.records()))
    s.reset()
    s.run(["cp", "src", "dst"])
    recs = s.records()
    eq("cp: created", True, ("NS", "dst", 0, 0) in recs)
    eq("cp: extents", [(0, 10000)], extents(recs, "dst"))
    only(recs, {"dst"})
    s.reset()
    s.run(["mv", "dst", "moved"])
    eq("mv", [("NS", "dst", 0, 0), ("NS", "moved", 0, 0)], s.records())
    s.reset()
    s.run(["rm", "moved"])
    eq("rm", [("NS", "moved", 0, 0)], s.records())
    s.reset()
    s.run(["mkdir", "-p", "x/y"])
    eq("mkdir -p", [("NS", "x", 0, 0), ("NS", "x/y", 0, 0)], [r for r in s.records() if r[0] == "NS"])
    s.reset()
    s.run(["ln", "-s", "f", "lnk"])
    eq("ln -s", [("NS", "lnk", 0, 0)], s.records())
    s.reset()
    s.run(["chmod", "600", "f"])
    eq("chmod", [("META", "f", 0, 0)], s.records())
    s.reset()
    s.run(["touch", "f"])
    eq("touch existing", [("META", "f", 0, 0)], s.records())
    s.reset()
    s.run(["touch", "t2"])
    eq("touch new", {"NS", "META"}, kinds(s.records(), "t2"))
    only(s.records(), {"t2"})
    s.reset()
    s.run(["truncate", "-s", "10", "f"])
    eq("truncate", [("TRUNC", "f", 10, 0)], s.records())
    s.reset()
    s.run(["dd", "if=src", "of=src2", "bs=1k", "count=2", "status=none"])
    s.reset()
    s.run(["dd", "if=src", "of=src2", "bs=1k", "count=2", "seek=1", "conv=notrunc", "status=none"])
    eq("dd conv=notrunc", [(1024, 3072)], extents(s.records(), "src2"))
    only(s.records(), {"src2"})
    s.reset()
    s.run(["rm", "-r", "x"])
    eq("rm -r", [("NS", "x/y", 0, 0), ("NS", "x", 0, 0)], s.records())
    s.reset()
    s.run(["ln", "-s", "f", "l2"])
    s.reset()
    s.run(["chmod", "644", "l2"])  # follows the symlink: f changed, not l2
    eq("chmod through a symlink", [("META", "f", 0, 0)], s.records())
    s.reset()
    s.run(["chmod", "755", "."])
    eq("chmod of the root itself: the empty path", [("META", "", 0, 0)], s.records())
    s.reset()
    s.run(["chmod", "755", root])
    eq("chmod of the root by absolute path", [("META", "", 0, 0)], s.records())


def test_sqlite_wal_mmap():
    """sqlite3 in WAL mode maps its -shm file shared and writable."""
    import shutil
    if not shutil.which("sqlite3"):
        raise Skip("no sqlite3")
    s, root = fresh()
    s.run(["sqlite3", "db", "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);"])
    recs = s.records()
    eq("db written", True, bool(extents(recs, "db") or extents(recs, "db-wal")))
    eq("shm mapped: sticky then released", True,
       ("WHOLE", "db-shm", 1, 0) in recs and ("RELEASE", "db-shm", 0, 0) in recs)


if __name__ == "__main__":
    if not os.path.exists(PRELOAD):
        print("no interposer at %s" % PRELOAD)
        sys.exit(1)
    mtmtest.main([v for k, v in list(globals().items()) if k.startswith("test_")])  # in file order
