#!/usr/bin/env python3
"""Store permissions (issue 4): .metamori and packs/ are 0700 and every file
in the store 0600 whatever the umask (including the intent an interrupted
restore leaves, and SQLite's WAL and shared-memory files while a command
runs); a store writable by group or others, or owned by another user, is
refused with one clear error line."""
import os
import random
import shutil
import stat
import subprocess

import mtmtest as T
import rlib


def store_modes(root):
    out = {}
    base = os.path.join(root, ".metamori")
    for dp, dn, fn in os.walk(base):
        for n in dn + fn:
            p = os.path.join(dp, n)
            out[os.path.relpath(p, base)] = stat.S_IMODE(os.lstat(p).st_mode)
    out["."] = stat.S_IMODE(os.lstat(base).st_mode)
    return out


def check_modes(root, what):
    bad = {}
    for rel, mode in store_modes(root).items():
        p = os.path.join(root, ".metamori", rel)
        want = 0o700 if os.path.isdir(p) else 0o600
        if mode != want:
            bad[rel] = oct(mode)
    if bad:
        raise T.Failure("%s: store modes not 0700/0600: %r" % (what, bad))


def run_with_umask(mask, args):
    return subprocess.run(["sh", "-c", "umask %03o && exec \"$@\"" % mask, "sh", T.METAMORI] + args,
                          capture_output=True, text=True, env=rlib.env_with())


def test_modes_whatever_the_umask():
    for mask in (0o000, 0o022, 0o077, 0o002):
        base = T.tempdir("mtm-perm-")
        try:
            root = os.path.join(base, "t")
            os.makedirs(root)
            T.write_file(os.path.join(root, "f"), random.Random(1).randbytes(100000))
            for args in (["init"], ["checkpoint", "-q"]):
                p = run_with_umask(mask, ["-C", root] + args)
                if p.returncode:
                    raise T.Failure("umask %03o: %s failed: %s" % (mask, args[0], p.stderr))
            check_modes(root, "umask %03o after checkpoint" % mask)
            # a restore killed half-way leaves its intent: 0600 too
            T.write_file(os.path.join(root, "f"), b"changed")
            T.checkpoint(root)
            n = 0
            for k in range(1, 40):
                p = subprocess.run(["sh", "-c", "umask %03o && exec \"$@\"" % mask, "sh", T.METAMORI, "-C", root,
                                    "restore", "1"], capture_output=True, text=True,
                                   env=rlib.env_with(METAMORI_CRASH_AT=k))
                if os.path.exists(os.path.join(root, ".metamori", "intent")):
                    n += 1
                    check_modes(root, "umask %03o, restore killed at %d" % (mask, k))
                    rlib.mtm(["-C", root, "restore", "2"], check=True)
                if p.returncode == 0:
                    rlib.mtm(["-C", root, "restore", "2"], check=True)
            if n == 0:
                raise T.Failure("no kill point left an intent")
            check_modes(root, "umask %03o at the end" % mask)
        finally:
            T.rmtree(base)


def test_wal_and_shm_modes_while_open():
    """The WAL and shm files exist while a command runs: held open with a
    FIFO trace (see test_concurrency), their modes are 0600 too."""
    base = T.tempdir("mtm-perm-")
    try:
        root = os.path.join(base, "t")
        os.makedirs(root)
        T.write_file(os.path.join(root, "f"), random.Random(2).randbytes(300000))
        T.init(root)
        fifo = os.path.join(base, "fifo")
        os.mkfifo(fifo)
        rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        p = subprocess.Popen(["sh", "-c", "umask 000 && exec \"$@\"", "sh", T.METAMORI, "-C", root, "checkpoint", "-q"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=rlib.env_with(METAMORI_IO_TRACE=fifo))
        try:
            wal = os.path.join(root, ".metamori", "index.db-wal")
            while p.poll() is None and not os.path.exists(wal):
                pass
            seen = {}
            for name in ("index.db-wal", "index.db-shm"):
                path = os.path.join(root, ".metamori", name)
                if os.path.exists(path):
                    seen[name] = stat.S_IMODE(os.lstat(path).st_mode)
        finally:
            os.set_blocking(rfd, True)
            import threading
            t = threading.Thread(target=lambda: [None for _ in iter(lambda: os.read(rfd, 1 << 16), b"")])
            t.start()
            p.communicate()
            t.join()
            os.close(rfd)
        if not seen:
            raise T.Failure("the WAL was never seen")
        bad = {k: oct(v) for k, v in seen.items() if v != 0o600}
        if bad:
            raise T.Failure("SQLite files with modes other than 0600: %r" % bad)
    finally:
        T.rmtree(base)


def test_refuses_open_store():
    base = T.tempdir("mtm-perm-")
    try:
        root = os.path.realpath(os.path.join(base, "t"))
        os.makedirs(root)
        T.write_file(os.path.join(root, "f"), b"data")
        T.init(root)
        T.checkpoint(root)
        st = os.path.join(root, ".metamori")
        for mode, shown in ((0o770, "770"), (0o702, "702"), (0o720, "720"), (0o777, "777")):
            os.chmod(st, mode)
            for args in (["log"], ["checkpoint"], ["restore", "1", "--to", os.path.join(base, "x")], ["verify"]):
                p = rlib.mtm(["-C", root] + args)
                line = rlib.one_error_line(p, "mode %o: %s" % (mode, args[0]))
                want = "metamori: %s/.metamori: store is writable by group or others (mode %s)" % (root, shown)
                if line != want:
                    raise T.Failure("expected %r, got %r" % (want, line))
        os.chmod(st, 0o750)  # readable by the group is not a risk to the store
        rlib.mtm(["-C", root, "log"], check=True)
        os.chmod(st, 0o700)
        if os.geteuid() != 0:
            T.skip_part("the other-owner case", "chown needs root")
            return
        os.chown(st, 65534, 65534)
        for args in (["log"], ["checkpoint"], ["verify"]):
            p = rlib.mtm(["-C", root] + args)
            line = rlib.one_error_line(p, "owned by nobody: " + args[0])
            want = "metamori: %s/.metamori: store is owned by uid 65534, not by you" % root
            if line != want:
                raise T.Failure("expected %r, got %r" % (want, line))
        os.chown(st, 0, 0)
        rlib.mtm(["-C", root, "verify", "--data"], check=True)
    finally:
        T.rmtree(base)


def test_unwritable_store_says_why():
    """A store its owner may not write (.metamori mode 0500) refuses a
    checkpoint with the real cause: "Permission denied". It said "Read-only
    file system" whatever the cause was."""
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        T.skip_part("the unwritable store", "root without setpriv cannot test permissions")
        return
    base = T.tempdir("mtm-perm-")
    try:
        root = os.path.realpath(os.path.join(base, "t"))
        os.makedirs(root)
        T.write_file(os.path.join(root, "f"), b"data")
        pre = []
        if os.geteuid() == 0:  # as a normal user: root may write anywhere
            subprocess.run(["chown", "-R", "65534:65534", base], check=True)
            pre = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        as_user = lambda args: subprocess.run(pre + [T.METAMORI, "-C", root] + args, capture_output=True, text=True)
        for args in (["init"], ["checkpoint", "-q"]):
            p = as_user(args)
            if p.returncode:
                raise T.Failure("%s failed: %s" % (args[0], p.stderr))
        T.write_file(os.path.join(root, "f"), b"changed")
        os.chmod(os.path.join(root, ".metamori"), 0o500)
        for args in (["checkpoint"], ["tag", "1", "x"]):
            line = rlib.one_error_line(as_user(args), "unwritable store: " + args[0])
            want = "metamori: %s/.metamori: the store cannot be written: Permission denied" % root
            if line != want:
                raise T.Failure("expected %r, got %r" % (want, line))
        if as_user(["log"]).returncode:
            raise T.Failure("log of an unwritable store failed")
    finally:
        os.chmod(os.path.join(root, ".metamori"), 0o700)
        T.rmtree(base)


if __name__ == "__main__":
    T.main([test_modes_whatever_the_umask, test_wal_and_shm_modes_while_open, test_refuses_open_store,
            test_unwritable_store_says_why])
