#!/usr/bin/env python3
"""Reading a checkpoint without restoring it (issue 16): `metamori ls ID
[PATH] [--json]` and `metamori cat ID PATH` show what the tree held at that
checkpoint, byte for byte against a copy taken at checkpoint time, change
nothing in the tree or the store, and fail with one exact error line."""
import json
import os
import subprocess

import mtmtest as T
from mtmtest import Failure


def expect(cond, what):
    if not cond:
        raise Failure(what)


def err_line(args):
    p = T.run_fail(args)
    lines = [l for l in p.stderr.splitlines() if l]
    expect(len(lines) == 1, "metamori %s: expected one error line, got %r" % (" ".join(args), p.stderr))
    return lines[0]


def cat_bytes(root, ckpt, path):
    p = subprocess.run([T.METAMORI, "-C", root, "cat", str(ckpt), path], capture_output=True)
    if p.returncode:
        raise Failure("cat %s %s: %s" % (ckpt, path, p.stderr.decode()))
    return p.stdout


def setup():
    root = T.tempdir("mtm-browse-")
    T.init(root)
    os.makedirs(os.path.join(root, "src", "lib"))
    big = os.urandom(3 << 20)
    T.write_file(os.path.join(root, "src", "big.bin"), big)
    T.write_file(os.path.join(root, "src", "lib", "a.c"), b"int a;\n", mode=0o640)
    T.write_file(os.path.join(root, "notes.txt"), b"v1\n")
    os.symlink("src/big.bin", os.path.join(root, "link"))
    c1 = T.checkpoint(root)
    copy1 = {"src/big.bin": big, "notes.txt": b"v1\n", "src/lib/a.c": b"int a;\n"}
    T.patch_file(os.path.join(root, "src", "big.bin"), 1 << 20, b"Z" * 10000)
    T.write_file(os.path.join(root, "notes.txt"), b"v2 longer\n")
    os.remove(os.path.join(root, "src", "lib", "a.c"))
    c2 = T.checkpoint(root)
    return root, c1, c2, copy1


def test_cat_is_byte_exact():
    root, c1, c2, copy1 = setup()
    for path, data in copy1.items():
        expect(cat_bytes(root, c1, path) == data, "cat %d %s differs from the copy at checkpoint time" % (c1, path))
    with open(os.path.join(root, "src", "big.bin"), "rb") as f:
        expect(cat_bytes(root, c2, "src/big.bin") == f.read(), "cat of the patched file")
    expect(cat_bytes(root, "head", "/notes.txt") == b"v2 longer\n", "cat head, leading /")
    before = T.manifest_full(root)
    state = T.store_state(root)
    cat_bytes(root, c1, "src/big.bin")
    T.assert_same(before, T.manifest_full(root), "tree after cat")
    expect(T.store_state(root) == state, "cat changed the store")


def test_ls_lists_a_directory():
    root, c1, c2, _ = setup()
    out = T.run(["-C", root, "ls", str(c1)]).stdout.splitlines()
    expect([l.split()[-1] if "->" not in l else l.split()[-3] for l in out] == ["link", "notes.txt", "src"],
           "ls names: %r" % out)
    expect(out[0].startswith("l 0777") and out[0].endswith("link -> src/big.bin"), "symlink line: %r" % out[0])
    expect(out[2].startswith("d "), "directory line: %r" % out[2])
    lines = T.run(["-C", root, "ls", str(c1), "src/lib"]).stdout.splitlines()
    expect(len(lines) == 1 and lines[0].startswith("f 0640          7  ") and lines[0].endswith("  a.c"),
           "ls src/lib: %r" % lines)
    expect(T.run(["-C", root, "ls", str(c2), "src/lib"]).stdout == "", "empty directory at c2")
    js = json.loads(T.run(["-C", root, "ls", str(c1), "src", "--json"]).stdout)
    expect([(e["name"], e["kind"], e["path"]) for e in js] ==
           [("big.bin", "f", "src/big.bin"), ("lib", "d", "src/lib")], "ls --json: %r" % js)
    expect(js[0]["size"] == 3 << 20 and js[0]["version"] == c1 and js[0]["mode"] == 0o644, "json fields %r" % js[0])
    one = json.loads(T.run(["-C", root, "ls", str(c1), "notes.txt", "--json"]).stdout)
    expect(len(one) == 1 and one[0]["size"] == 3, "a file is listed alone: %r" % one)


def test_errors():
    root, c1, c2, _ = setup()
    expect(err_line(["-C", root, "cat", str(c2), "src/lib/a.c"]) ==
           "metamori: src/lib/a.c: not in checkpoint %d" % c2, "cat of a removed file")
    expect(err_line(["-C", root, "cat", str(c1), "src"]) == "metamori: src: is a directory in checkpoint %d" % c1,
           "cat of a directory")
    expect(err_line(["-C", root, "cat", str(c1), "link"]) ==
           "metamori: link: not a regular file in checkpoint %d" % c1, "cat of a symlink")
    expect(err_line(["-C", root, "ls", str(c1), "notes.txt/x"]).startswith("metamori: notes.txt/x: "),
           "ls under a file")
    expect(err_line(["-C", root, "ls", str(c1), "../etc"]) ==
           "metamori: ../etc: a path in a checkpoint may not contain '..'", "ls ..")
    expect(err_line(["-C", root, "ls", "9"]) == "metamori: checkpoint 9: no such checkpoint", "ls 9")
    # a path is named as it was given: "/etc/passwd" was "etc/passwd", as if the tree had been looked in for that
    for args, why in ((["cat", str(c2), "/etc/passwd"], "not in checkpoint %d" % c2),
                      (["cat", str(c1), "/src/"], "is a directory in checkpoint %d" % c1),
                      (["cat", str(c1), "/link"], "not a regular file in checkpoint %d" % c1),
                      (["ls", str(c1), "/nope"], "not in checkpoint %d" % c1),
                      (["ls", str(c1), "./nope//x"], "not in checkpoint %d" % c1)):
        expect(err_line(["-C", root] + args) == "metamori: %s: %s" % (args[2], why), "%r" % args)
    expect(err_line(["-C", root, "cat", str(c1)]) == "metamori: cat: usage: metamori cat ID PATH", "cat usage")
    expect(err_line(["-C", root, "ls"]) == "metamori: ls: usage: metamori ls ID [PATH] [--json]", "ls usage")


def test_ls_json_has_every_recorded_attribute():
    """ls --json gives what the checkpoint recorded of each entry, compared
    with the tree as it was: a hard-linked file's count of names, a device's
    number (as root), extended attributes (name and base64 value), FIFOs and
    sockets by kind."""
    import base64
    import socket
    import stat
    root = T.tempdir("mtm-browse-attrs-")
    T.init(root)
    T.write_file(os.path.join(root, "a"), b"linked")
    os.link(os.path.join(root, "a"), os.path.join(root, "b"))
    T.write_file(os.path.join(root, "x"), b"x")
    os.setxattr(os.path.join(root, "x"), "user.bin", b"\x00\xffv")
    os.setxattr(os.path.join(root, "x"), "user.k", b"v")
    os.mkfifo(os.path.join(root, "fifo"))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(os.path.join(root, "sock"))
    dev = os.geteuid() == 0
    if dev:
        os.mknod(os.path.join(root, "null"), 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    c = T.checkpoint(root)
    sock.close()
    js = {e["name"]: e for e in json.loads(T.run(["-C", root, "ls", str(c), "--json"]).stdout)}
    expect((js["a"]["nlink"], js["b"]["nlink"], js["x"]["nlink"]) == (2, 2, 1), "nlink: %r" % js)
    expect(js["x"]["xattrs"] == [{"name": "user.bin", "value": base64.b64encode(b"\x00\xffv").decode()},
                                 {"name": "user.k", "value": base64.b64encode(b"v").decode()}],
           "xattrs: %r" % js["x"])
    expect(js["a"]["xattrs"] == [], "no xattrs: %r" % js["a"])
    expect((js["fifo"]["kind"], js["sock"]["kind"]) == ("p", "s"), "kinds: %r" % js)
    if dev:
        expect(js["null"]["kind"] == "c" and js["null"]["rdev"] == os.makedev(1, 3), "device: %r" % js["null"])
    expect(js["a"]["rdev"] == 0, "rdev of a file: %r" % js["a"])


if __name__ == "__main__":
    T.main([test_cat_is_byte_exact, test_ls_lists_a_directory, test_ls_json_has_every_recorded_attribute, test_errors])
