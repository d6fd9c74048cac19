#!/usr/bin/env python3
"""status (and a scan checkpoint) at any tree size (issue 21, size
independence): its memory does not grow with the tree (it streams the live tree, the checkpoint's entries
and the stat cache in path order instead of loading all three: at 1,000,000
files that took ~550 MiB); and the streamed order is the order every other
command uses (strcmp of the whole path), where a directory's contents do not
follow the directory ("a", "a-b", "a.c", "a/x", "a0"), hard-link groups
included (a group's file is its first name in that order)."""
import os
import subprocess

import mtmtest as T
from clilib import as_json, expect, ok, store, write

MiB = 1 << 20


def peak_rss(args):
    """Runs metamori ARGS; returns its peak resident memory in bytes."""
    p = subprocess.Popen([os.path.abspath(T.METAMORI)] + list(args), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    err = p.stderr.read()
    p.stderr.close()
    p.returncode = os.waitstatus_to_exitcode(status)
    expect(p.returncode == 0, "metamori %r: exit %d: %r" % (args, p.returncode, err))
    return ru.ru_maxrss * 1024


def many_files(root, n, per_dir=100):
    """n files with long names (200 bytes: what a path costs shows sooner)."""
    for i in range(n):
        if i % per_dir == 0:
            os.makedirs(os.path.join(root, "d%04d" % (i // per_dir)))
        with open(os.path.join(root, "d%04d" % (i // per_dir), "f%07d" % i + "x" * 192), "wb") as f:
            f.write(b"%d" % i)


def test_status_memory_does_not_grow_with_the_tree():
    if os.environ.get("MTM_SANITIZED"):
        # ASan's allocator keeps freed memory aside and grows 7 MiB here even
        # without its quarantine: peak RSS says nothing about the code there
        T.skip_part("status memory", "peak RSS is not the program's under ASan")
        return
    sizes = (500, 10000)
    rss = []
    for n in sizes:
        root = store()
        many_files(root, n)
        ok(["-C", root, "checkpoint", "-q"])
        write(root, "d0000/f0000001" + "x" * 192, b"changed")  # one file read and compared
        rss.append(peak_rss(["-C", root, "status"]))
        T.rmtree(root)
    grew = rss[1] - rss[0]
    # loading everything (the tree, the checkpoint's entries, the stat cache)
    # held each path three times over: 2.4 MiB more for 9,500 more files
    # (measured; the first megabytes go into memory status has anyway);
    # streaming holds one directory's 100 names at a time: nothing measurable
    limit = 1 * MiB
    expect(grew < limit, "status: peak RSS %.1f MiB at %d files, %.1f MiB at %d: grew %.1f MiB (limit %.1f)" %
           (rss[0] / MiB, sizes[0], rss[1] / MiB, sizes[1], grew / MiB, limit / MiB))


def peak_rss_exec(args):
    """Peak resident memory of metamori ARGS alone: /usr/bin/time reports
    its child's, which a fork of this (larger) Python process would mask."""
    p = subprocess.run(["/usr/bin/time", "-f", "%M", os.path.abspath(T.METAMORI)] + list(args),
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    expect(p.returncode == 0, "metamori %r: exit %d: %r" % (args, p.returncode, p.stderr))
    return int(p.stderr.strip().splitlines()[-1]) * 1024


def test_checkpoint_memory_does_not_grow_with_the_tree():
    """A scan checkpoint streams the tree as status does (tree/changed.c):
    it holds what may differ, not the walk, the parent's entries and the
    stat cache (~500 MiB at 1,000,000 files). What it records is checked
    by a restore."""
    sized = not os.environ.get("MTM_SANITIZED")
    if sized and not os.path.exists("/usr/bin/time"):
        sized = False
        T.skip_part("checkpoint memory", "no /usr/bin/time (Debian package time)")
    elif not sized:
        T.skip_part("checkpoint memory", "peak RSS is not the program's under ASan")
    sizes = (500, 4000) if sized else (200, 600)
    ckpt, status = [], []
    for n in sizes:
        root = store()
        many_files(root, n)
        ok(["-C", root, "checkpoint", "-q"])
        write(root, "d0000/f0000001" + "x" * 192, b"changed")  # one file read and compared
        os.remove(os.path.join(root, "d0001/f0000100" + "x" * 192))
        write(root, "d0001/new", b"new")
        want = T.manifest(root)
        if sized:
            status.append(peak_rss_exec(["-C", root, "status"]))
            ckpt.append(peak_rss_exec(["-C", root, "checkpoint", "-q"]))
        else:
            ok(["-C", root, "checkpoint", "-q"])
        to = os.path.join(T.tempdir("mtm-ckscale-"), "t")
        T.restore(root, 2, to=to)
        T.assert_same(want, T.manifest(to), "restore of the scan checkpoint (%d files)" % n)
        T.rmtree(root)
    if not sized:
        return
    # status reads the same index pages, streamed: what SQLite's page cache
    # takes (up to the index's size, never past cache_size's 32 MiB) grows
    # the same in both. Beyond it, the checkpoint that loaded the tree grew
    # 3.5-3.8 MiB more than status from 500 to 4,000 files (measured, two
    # runs); streamed, nothing measurable
    grew = (ckpt[1] - ckpt[0]) - (status[1] - status[0])
    limit = 1 * MiB
    expect(grew < limit, "checkpoint: peak RSS %.1f MiB at %d files, %.1f MiB at %d; status %.1f, %.1f: the "
           "checkpoint grew %.1f MiB more than status (limit %.1f)" %
           (ckpt[0] / MiB, sizes[0], ckpt[1] / MiB, sizes[1], status[0] / MiB, status[1] / MiB, grew / MiB,
            limit / MiB))


NAMES = ["a", "a-b", "a.c", "a0", "a/x", "a/y-z", "a/y/q", "a/y.q", "a-b/k", "b", "b/a", "b/a/c", "b/a-c", "b/a c"]


def test_status_in_path_order():
    root = store()
    for n in NAMES:
        if any(m.startswith(n + "/") for m in NAMES):
            os.makedirs(os.path.join(root, n), exist_ok=True)
        else:
            os.makedirs(os.path.dirname(os.path.join(root, n)), exist_ok=True)
            write(root, n, n.encode())
    # a link group whose names' path order is not the walk's order: "a.c"
    # sorts before "a/x", though "a" (a directory) comes first in its parent
    os.remove(os.path.join(root, "a/x"))
    os.link(os.path.join(root, "a.c"), os.path.join(root, "a/x"))
    ok(["-C", root, "checkpoint", "-q"])
    st = as_json(["-C", root, "status", "--json"])
    expect(st["changes"] == [], "status right after a checkpoint: %r" % st["changes"])
    # one change of every kind, on both sides of the tricky boundaries
    write(root, "a0", b"A0 changed")                 # M
    write(root, "a/y-z", b"new content here")        # M
    os.remove(os.path.join(root, "a/y/q"))           # D
    write(root, "a/y.r", b"new")                     # A
    write(root, "a-b/l", b"new")                     # A
    os.chmod(os.path.join(root, "b/a c"), 0o600)     # m
    os.remove(os.path.join(root, "b/a-c"))
    os.mkdir(os.path.join(root, "b/a-c"))            # T
    st = as_json(["-C", root, "status", "--json"])
    got = [(c["kind"], c["path"]) for c in st["changes"]]
    want = [("A", "a-b/l"), ("M", "a/y-z"), ("A", "a/y.r"), ("D", "a/y/q"), ("M", "a0"), ("m", "b/a c"),
            ("T", "b/a-c")]
    expect(got == sorted(want, key=lambda c: c[1].encode()), "status: %r" % got)
    # and the checkpoint that follows records exactly that, and restores
    ok(["-C", root, "checkpoint", "-q"])
    st = as_json(["-C", root, "status", "--json"])
    expect(st["changes"] == [], "status after the second checkpoint: %r" % st["changes"])
    d = as_json(["-C", root, "diff", "--json", "1", "2"])
    expect([(c["kind"], c["path"]) for c in d["changes"]] == got, "diff 1 2: %r, status: %r" % (d["changes"], got))
    to = T.tempdir()
    T.restore(root, 2, to=os.path.join(to, "r"))
    T.assert_same(T.manifest(root), T.manifest(os.path.join(to, "r")), "restore of checkpoint 2")
    a, x = os.stat(os.path.join(to, "r", "a.c")), os.stat(os.path.join(to, "r", "a", "x"))
    expect((a.st_dev, a.st_ino) == (x.st_dev, x.st_ino), "a.c and a/x are no longer one file")


if __name__ == "__main__":
    T.main([test_status_memory_does_not_grow_with_the_tree, test_checkpoint_memory_does_not_grow_with_the_tree,
            test_status_in_path_order])
