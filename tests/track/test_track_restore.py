"""Every call the interposer wraps, end to end: a checkpoint, then the call
made by a program under `metamori run`, then a tracked checkpoint inside the
session; both checkpoints must restore exactly (in place, one after the
other, and into a new directory).

test_track.py checks the records themselves; this checks that what they say
is enough for the session to capture the change.
"""
import os
import re
import shutil
import subprocess

import mtmtest as T
from tracklog import BIN

# An ASan-built metamori started inside the job has the interposer preloaded
# ahead of the ASan runtime: let it run.
if "verify_asan_link_order" not in os.environ.get("ASAN_OPTIONS", ""):
    os.environ["ASAN_OPTIONS"] = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"), "verify_asan_link_order=0"]))

BASE = {"a": 65536, "src": 65536, "c": 10, "d/b": 1}
NO_A = dict((k, v) for k, v in BASE.items() if k != "a")
EMPTY_D = dict((k, v) for k, v in BASE.items() if k != "d/b")

# subcommand of track_calls -> initial tree (files: sizes; "d" always exists)
CASES = [
    ("open_creat", NO_A), ("open_excl", NO_A), ("open_trunc", BASE), ("open_var", BASE),
    ("openat_var", BASE), ("openat_creat", EMPTY_D), ("creat", BASE), ("write", BASE),
    ("pwrite", BASE), ("writev", BASE), ("pwritev", BASE), ("pwritev2", BASE), ("append", BASE),
    ("append_setfl", BASE), ("ftruncate", BASE), ("truncate", BASE), ("fallocate", BASE),
    ("posix_fallocate", BASE), ("copy_file_range", BASE), ("sendfile", BASE), ("splice", BASE),
    ("rename", BASE), ("renameat", BASE), ("renameat2", BASE), ("rename_open", BASE), ("unlink", BASE),
    ("unlinkat", EMPTY_D), ("remove", BASE), ("mkdir", BASE), ("rmdir", EMPTY_D), ("link", BASE),
    ("symlink", BASE), ("chmod", BASE), ("chown 1 1" if os.getuid() == 0 else "chown", BASE),
    ("utimes", BASE), ("stdio", BASE),
    ("stdio_append", BASE), ("freopen", BASE), ("dup2_stdout", BASE), ("fdopen", BASE), ("mmap", BASE), ("mremap", BASE),
    ("relative", BASE), ("tmpfile", BASE), ("mkstemp", BASE), ("hardlink", BASE), ("dup", BASE),
    ("closefrom", BASE), ("threads", BASE), ("fork", BASE), ("vfork", BASE), ("exec_env", BASE),
    ("many", BASE),
    # distro programs (fortified builds)
    ("sh:echo x > new; echo y >> a", BASE), ("sh:cp src dst", BASE), ("sh:cp -p src d/dst", BASE),
    ("sh:mv a moved", BASE), ("sh:mv d e", BASE), ("sh:rm a", BASE), ("sh:rm -r d", BASE),
    ("sh:mkdir -p x/y", BASE), ("sh:ln -s a lnk", BASE), ("sh:chmod 600 a", BASE),
    ("sh:touch -d @1000000000 a new2", BASE), ("sh:truncate -s 100 a", BASE),
    ("sh:dd if=src of=a bs=1k count=2 seek=3 conv=notrunc status=none", BASE),
    ("sh:sed -i s/x/y/ c", BASE), ("sh:tar cf d/t.tar src c && rm src c && tar xf d/t.tar", BASE),
    ("sh:sqlite3 db 'pragma journal_mode=wal; create table t(x); insert into t values(1)'", BASE),
    ("sh:git init -q g && cd g && echo hi > f && git add f && git -c user.name=t -c user.email=t@t commit -qm m",
     BASE),
]


# Changes through one name of a file with several: the interposer asks for a
# scan (docs/TRACKING.md), and so may the session.
SCANS = {"link", "hardlink"}


def tree(files):
    root = os.path.realpath(T.tempdir("mtm-trackrs-"))
    os.mkdir(os.path.join(root, "d"))
    for name, size in files.items():
        with open(os.path.join(root, name), "wb") as f:
            f.write(bytes((i * 7 + len(name)) & 0xff for i in range(256)) * (size // 256) + b"x" * (size % 256))
    os.symlink("d", os.path.join(root, "dl"))
    return root


def one(cmd, files, again=True):
    root = tree(files)
    try:
        T.init(root)
        before = T.checkpoint(root, "before")
        m0 = T.manifest_full(root)
        if cmd.startswith("sh:"):
            script = '( %s ) && "$1" -C "$2" checkpoint -m after' % cmd[3:]
        else:
            script = '"$0" %s && "$1" -C "$2" checkpoint -m after' % cmd
        p = subprocess.run([T.METAMORI, "-C", root, "run", "--", "sh", "-c", script,
                            os.path.join(BIN, "track_calls"), T.METAMORI, root],
                           cwd=root, capture_output=True, text=True)
        if p.returncode == 77 or p.stdout.startswith("skip"):
            raise T.Skip(p.stdout.strip())
        if p.returncode != 0:
            raise T.Failure("%s: run failed (%d):\n%s%s" % (cmd, p.returncode, p.stdout, p.stderr))
        m = re.search(r"^checkpoint (\d+)", p.stdout, re.M)
        mode = re.search(r"\((tracked|scanned), paused", p.stdout)
        if not m or not mode:
            raise T.Failure("%s: no checkpoint in:\n%s%s" % (cmd, p.stdout, p.stderr))
        if mode.group(1) != "tracked" and cmd not in SCANS and again and T.overflowed(p.stderr):
            print("again: %s: the watcher's queue overflowed (a loaded machine): the checkpoint scanned" % cmd)
            return one(cmd, files, again=False)
        if mode.group(1) != "tracked" and cmd not in SCANS:
            raise T.Failure("%s: the checkpoint was not tracked:\n%s%s" % (cmd, p.stdout, p.stderr))
        after = int(m.group(1))
        m1 = T.manifest_full(root)
        if m1 == m0:
            raise T.Failure("%s changed nothing" % cmd)
        T.restore(root, before)
        T.assert_same(m0, T.manifest_full(root), "%s: restore of the checkpoint before" % cmd)
        T.restore(root, after)
        T.assert_same(m1, T.manifest_full(root), "%s: restore of the tracked checkpoint" % cmd)
        to = T.tempdir("mtm-trackrs-to-")
        os.rmdir(to)
        T.restore(root, after, to=to)
        T.assert_same(m1, T.manifest_full(to), "%s: restore --to of the tracked checkpoint" % cmd)
        T.rmtree(to)
    finally:
        T.rmtree(root)


def make(cmd, files):
    def test():
        one(cmd, files)
    test.__name__ = "test_" + re.sub(r"\W+", "_", cmd.replace("sh:", "sh_"))[:40]
    return test


if __name__ == "__main__":
    if not shutil.which("sh"):
        raise SystemExit("no sh")
    T.main([make(cmd, files) for cmd, files in CASES])
