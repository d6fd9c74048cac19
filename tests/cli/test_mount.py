#!/usr/bin/env python3
"""metamori mount (issue 20): every file of several checkpoints, read
through FUSE, is byte-for-byte and in its metadata what `restore --to` gives
and what the tree was when the checkpoint was made; one checkpoint mounted by
id; tags and head as symlinks; the mount is read-only; a checkpoint made
while mounted appears. Every kind of entry a checkpoint holds shows as
`restore --to` makes it: FIFOs, sockets, device nodes (as root), hard links
with their link count, extended attributes (getxattr/listxattr), modes,
owners and times. Skipped (77) only without /dev/fuse."""
import errno
import os
import random
import socket
import stat
import subprocess
import sys
import time

import mtmtest as T
from clilib import expect, ok, raw, store

ODD = b"odd \x1b[1m\xff name"


def unmount(mnt):
    for cmd in (["fusermount3", "-u", mnt], ["umount", mnt], ["umount", "-l", mnt]):
        if subprocess.run(cmd, capture_output=True).returncode == 0:
            return
    raise T.Failure("could not unmount %s" % mnt)


def mounted(mnt):
    with open("/proc/self/mounts") as f:
        return any(l.split()[1] == mnt for l in f)


def build_history(root):
    """Five checkpoints, one a branch; returns {id: manifest at checkpoint time}."""
    rng = random.Random(20)
    os.makedirs(os.path.join(root, "dir", "sub"))
    os.makedirs(os.path.join(root, "empty"))
    T.write_file(os.path.join(root, "dir", "sub", "data.bin"), rng.randbytes(300000))
    T.write_file(os.path.join(root, "small.txt"), b"small\n", mode=0o640)
    T.write_file(os.path.join(root, "empty.txt"), b"")
    T.write_file(os.path.join(root, "run.sh"), b"#!/bin/sh\n", mode=0o755)
    with open(os.path.join(os.fsencode(root), ODD), "wb") as f:
        f.write(b"odd")
    os.symlink("dir/sub/data.bin", os.path.join(root, "link"))
    with open(os.path.join(root, "sparse"), "wb") as f:  # a hole, then data
        f.seek(5 << 20)
        f.write(b"tail")
    want = {}
    want[T.checkpoint(root)] = T.manifest(root)
    T.patch_file(os.path.join(root, "dir", "sub", "data.bin"), 8192 + 17, rng.randbytes(9000))
    T.write_file(os.path.join(root, "small.txt"), b"changed\n", mode=0o600)
    T.remove(os.path.join(root, "empty.txt"))
    want[T.checkpoint(root)] = T.manifest(root)
    T.write_file(os.path.join(root, "dir", "new"), rng.randbytes(70000))
    os.remove(os.path.join(root, "link"))
    os.symlink("small.txt", os.path.join(root, "link"))
    want[T.checkpoint(root)] = T.manifest(root)
    T.restore(root, 1)
    T.write_file(os.path.join(root, "branch.txt"), b"on a branch\n")
    want[T.checkpoint(root)] = T.manifest(root)
    return want


def test_mount_every_checkpoint():
    root = store("mtm-mount-")
    want = build_history(root)
    mnt = T.tempdir("mtm-mnt-")
    ok(["-C", root, "tag", "2", "second"])
    ok(["-C", root, "mount", mnt])
    try:
        expect(mounted(mnt), "not mounted")
        names = sorted(os.listdir(mnt))
        expect(names == sorted([str(i) for i in want] + ["head", "second"]), names)
        expect(os.readlink(os.path.join(mnt, "head")) == "4" and os.readlink(os.path.join(mnt, "second")) == "2",
               "symlinks")
        for cid, manifest in want.items():
            to = os.path.join(T.tempdir("mtm-mount-to-"), "t")
            T.restore(root, cid, to=to)
            restored = T.manifest(to)
            T.assert_same(manifest, restored, "restore --to of %d" % cid)
            T.assert_same(restored, T.manifest(os.path.join(mnt, str(cid))), "checkpoint %d through mount" % cid)
        # read-only: no write, no new file, no removal
        for fn in (lambda: open(os.path.join(mnt, "1", "small.txt"), "wb"),
                   lambda: open(os.path.join(mnt, "1", "brand-new"), "wb"),
                   lambda: os.remove(os.path.join(mnt, "1", "small.txt")),
                   lambda: os.mkdir(os.path.join(mnt, "1", "d"))):
            try:
                fn()
                raise T.Failure("a write through the mount succeeded")
            except OSError as e:
                expect(e.errno == errno.EROFS, "write through the mount: %s" % e)
        # a checkpoint made while mounted appears
        T.write_file(os.path.join(root, "later"), b"later")
        c = T.checkpoint(root)
        T.assert_same(T.manifest(root), T.manifest(os.path.join(mnt, str(c))), "checkpoint made while mounted")
        expect(not os.path.exists(os.path.join(mnt, "99")), "a checkpoint that does not exist")
        # one name a checkpoint: " 1" was checkpoint 1 too (strtoll skips blanks)
        for alias in (" 1", "\t1", "+1", "01"):
            expect(not os.path.exists(os.path.join(mnt, alias)), "%r: another name for checkpoint 1" % alias)
    finally:
        unmount(mnt)
    expect(not mounted(mnt), "still mounted")


def test_mount_one_checkpoint():
    root = store("mtm-mount1-")
    want = build_history(root)
    mnt = T.tempdir("mtm-mnt1-")
    ok(["-C", root, "mount", "2", mnt])
    try:
        T.assert_same(want[2], T.manifest(mnt), "mount 2")
        with open(os.path.join(mnt, "sparse"), "rb") as f:
            f.seek((5 << 20) - 2)
            expect(f.read() == b"\0\0tail", "a read across the hole")
    finally:
        unmount(mnt)
    rc, _, err = raw(["-C", root, "mount", "9", mnt])
    expect(rc == 1 and err == b"metamori: checkpoint 9: no such checkpoint\n", err)
    rc, _, err = raw(["-C", root, "mount"])
    expect(rc == 1 and err == b"metamori: mount: usage: metamori mount [-f] [ID] DIR\n", err)


def full_view(top):
    """Every entry under top: type, mode, owner, mtime, nlink (not for
    directories: a checkpoint does not hold what links them), size and
    bytes of files, target of symlinks, rdev of devices, xattrs."""
    out = {}
    for d, dirs, files in os.walk(top):
        for name in dirs + files:
            p = os.path.join(d, name)
            rel = os.path.relpath(p, top)
            st = os.lstat(p)
            t = stat.S_IFMT(st.st_mode)
            v = [t, stat.S_IMODE(st.st_mode) if t != stat.S_IFLNK else 0, st.st_uid, st.st_gid, st.st_mtime_ns]
            if t != stat.S_IFDIR:
                v.append(st.st_nlink)
            if t == stat.S_IFREG:
                with open(p, "rb") as f:
                    v.append(f.read())
            elif t == stat.S_IFLNK:
                v.append(os.readlink(p))
            elif t in (stat.S_IFCHR, stat.S_IFBLK):
                v.append(st.st_rdev)
            if t in (stat.S_IFREG, stat.S_IFDIR):
                v.append(sorted((a, os.getxattr(p, a)) for a in os.listxattr(p)))
            out[rel] = tuple(v)
    return out


def test_mount_every_kind_of_entry():
    root = store("mtm-mountk-")
    os.makedirs(os.path.join(root, "d", "e"))
    T.write_file(os.path.join(root, "d", "f"), b"linked" * 1000, mode=0o4750)
    os.link(os.path.join(root, "d", "f"), os.path.join(root, "d", "e", "g"))
    os.link(os.path.join(root, "d", "f"), os.path.join(root, "h"))
    os.mkfifo(os.path.join(root, "d", "fifo"), 0o620)
    s = socket.socket(socket.AF_UNIX)
    s.bind(os.path.join(root, "sock"))
    s.close()
    os.setxattr(os.path.join(root, "d", "f"), "user.one", b"1")
    os.setxattr(os.path.join(root, "d", "f"), "user.two", b"\x00\xff two")
    os.setxattr(os.path.join(root, "d"), "user.dir", b"a directory's")
    T.write_file(os.path.join(root, "owned"), b"o", mode=0o604)
    if os.geteuid() == 0:
        os.mknod(os.path.join(root, "null"), 0o640 | stat.S_IFCHR, os.makedev(1, 3))
        os.mknod(os.path.join(root, "loop"), 0o600 | stat.S_IFBLK, os.makedev(7, 200))
        os.chown(os.path.join(root, "owned"), 1234, 5678)
        os.lchown(os.path.join(root, "sock"), 42, 43)
    for i, p in enumerate(["d/e", "d/fifo", "owned", "sock"]):
        os.utime(os.path.join(root, p), ns=(1, 1500000000123456789 + i), follow_symlinks=False)
    os.symlink("d/f", os.path.join(root, "sym"))
    c = T.checkpoint(root)
    to = os.path.join(T.tempdir("mtm-mountk-to-"), "t")
    T.restore(root, c, to=to)
    want = full_view(to)
    expect(want["h"][5] == 3 and stat.S_ISFIFO(want["d/fifo"][0]) and stat.S_ISSOCK(want["sock"][0]),
           "restore --to: %r" % want)
    mnt = T.tempdir("mtm-mntk-")
    ok(["-C", root, "mount", str(c), mnt])
    try:
        got = full_view(mnt)
    finally:
        unmount(mnt)
    for rel in sorted(set(want) | set(got)):
        expect(want.get(rel) == got.get(rel), "%s: restore --to %r, mount %r" % (rel, want.get(rel), got.get(rel)))


if __name__ == "__main__":
    if not os.path.exists("/dev/fuse"):
        print("skip: no /dev/fuse")
        sys.exit(77)
    T.main([test_mount_every_checkpoint, test_mount_one_checkpoint, test_mount_every_kind_of_entry])
