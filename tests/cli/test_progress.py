#!/usr/bin/env python3
"""Progress (issue 20): verify --data, checkpoint, restore, status (rehashing
changed files), prune (folding, then rewriting packs), push and du draw a progress
line on stderr when it is a terminal (a pty here), erase it at the end, and
print nothing of it when stderr is not a terminal."""
import os
import pty
import subprocess

import mtmtest as T
from clilib import expect, ok, raw, store


def on_pty(args):
    """stderr of metamori ARGS run with stderr on a pty; (exit status, bytes)."""
    master, slave = pty.openpty()
    p = subprocess.Popen([os.path.abspath(T.METAMORI)] + args, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return p.wait(), out


def test_progress_on_a_terminal_only():
    root = store("mtm-progress-")
    T.write_file(os.path.join(root, "big"), os.urandom(8 << 20))
    rc, err = on_pty(["-C", root, "checkpoint", "-q"])
    expect(rc == 0 and b"checkpoint: " in err and err.endswith(b"\r\x1b[K"), "checkpoint: %r" % err[-200:])
    rc, err = on_pty(["-C", root, "verify", "--data"])
    expect(rc == 0 and b"\rverify: " in err and b"% (" in err and err.endswith(b"\r\x1b[K"),
           "verify --data on a terminal: %r" % err[-200:])
    rc, out, err = raw(["-C", root, "verify", "--data"])
    expect(rc == 0 and err == b"" and out.startswith(b"store OK"), "verify --data to a pipe: %r %r" % (out, err))
    to = os.path.join(T.tempdir("mtm-progress-to-"), "t")
    rc, err = on_pty(["-C", root, "restore", "1", "--to", to])
    expect(rc == 0 and b"restore" in err and err.endswith(b"\r\x1b[K"), "restore: %r" % err[-200:])


def test_status_and_prune():
    root = store("mtm-progress-sp-")
    big = os.path.join(root, "big")
    for i in range(3):
        T.write_file(big, os.urandom(8 << 20))
        rc, out, err = raw(["-C", root, "checkpoint", "-q"])
        expect(rc == 0, "checkpoint: %r" % err)
    with open(big, "r+b") as f:  # one byte changed: the stat cache no longer vouches for the file
        f.seek(4096)
        b = f.read(1)
        f.seek(4096)
        f.write(bytes([b[0] ^ 0xff]))
    rc, err = on_pty(["-C", root, "status"])
    expect(rc == 0 and b"\rstatus: " in err and b"% (" in err and b"of 8.0 MiB)" in err and err.endswith(b"\r\x1b[K"),
           "status on a terminal: %r" % err[-300:])
    rc, out, err = raw(["-C", root, "status"])
    expect(rc == 0 and err == b"" and out == b"M big (4.0 KiB)\n", "status to a pipe: %r %r" % (out, err))
    rc, err = on_pty(["-C", root, "prune", "--keep-last", "1"])
    expect(rc == 0 and b"\rprune: " in err and b"(2 of 2 checkpoints)" in err and b"\rgc: " in err
           and err.endswith(b"\r\x1b[K"), "prune on a terminal: %r" % err[-300:])
    ok(["-C", root, "checkpoint", "-q"])
    ok(["-C", root, "checkpoint", "-q"])
    rc, out, err = raw(["-C", root, "prune", "--keep-last", "1"])
    expect(rc == 0 and err == b"" and out.startswith(b"dropped 2 checkpoints: 3 4\n"), "prune to a pipe: %r %r" % (out, err))


def test_push():
    root = store("mtm-progress-push-")
    T.write_file(os.path.join(root, "big"), os.urandom(8 << 20))
    ok(["-C", root, "checkpoint", "-q"])
    mirror = os.path.join(T.tempdir("mtm-progress-mirror-"), "m")
    rc, err = on_pty(["-C", root, "push", "-q", mirror])
    expect(rc == 0 and b"\rpush: " in err and b"of 8.0 MiB)" in err and err.endswith(b"\r\x1b[K"),
           "push on a terminal: %r" % err[-300:])
    T.write_file(os.path.join(root, "more"), os.urandom(1 << 20))
    ok(["-C", root, "checkpoint", "-q"])
    rc, out, err = raw(["-C", root, "push", mirror])
    expect(rc == 0 and err == b"" and out.startswith(b"pushed "), "push to a pipe: %r %r" % (out, err))


def test_du():
    root = store("mtm-progress-du-")
    for i in range(3):
        T.write_file(os.path.join(root, "f%d" % i), os.urandom(100000))
        ok(["-C", root, "checkpoint", "-q"])
    rc, err = on_pty(["-C", root, "du"])
    expect(rc == 0 and b"\rdu: " in err and b"(3 of 3 checkpoints)" in err and err.endswith(b"\r\x1b[K"),
           "du on a terminal: %r" % err[-300:])
    rc, out, err = raw(["-C", root, "du"])
    expect(rc == 0 and err == b"" and out.startswith(b"id "), "du to a pipe: %r %r" % (out, err))


if __name__ == "__main__":
    T.main([test_progress_on_a_terminal_only, test_status_and_prune, test_push, test_du])
