#!/usr/bin/env python3
"""One change, one figure (issue 20): status, diff and checkpoint count the
same paths and the same bytes (a file's bytes in blocks that differ, its
last block up to its end; a new file's size); a directory whose mtime moved
because an entry came or went is in none of the three; after prune folds a
checkpoint into its child, log shows the child's changes from its new
parent, not the stale ones."""
import os

import mtmtest as T
from clilib import as_json, expect, ok, store, write


def counts(changes):
    k = {"A": 0, "D": 0, "M": 0, "m": 0, "T": 0}
    for c in changes:
        k[c["kind"]] += 1
    return k["A"], k["M"] + k["m"] + k["T"], k["D"], sum(c["bytes"] for c in changes)


def test_status_diff_checkpoint_agree():
    root = store()
    os.makedirs(os.path.join(root, "d1", "d2"))
    os.makedirs(os.path.join(root, "e"))
    write(root, "d1/big", os.urandom(3 * 4096 + 26))
    write(root, "d1/d2/small", b"s" * 26)
    write(root, "e/gone", b"g" * 100)
    write(root, "same", b"x" * 9000)
    ok(["-C", root, "checkpoint", "-q"])
    with open(os.path.join(root, "d1", "big"), "r+b") as f:  # the last, short block: 26 bytes
        f.seek(3 * 4096)
        f.write(b"Z" * 26)
    write(root, "d1/d2/small", b"t" * 26)    # 26 bytes
    write(root, "d1/d2/new", b"n" * 5000)    # added in a directory (its mtime moves)
    os.remove(os.path.join(root, "e", "gone"))
    os.chmod(os.path.join(root, "same"), 0o600)
    st = as_json(["-C", root, "status", "--json"])
    got = {(c["kind"], c["path"], c["bytes"]) for c in st["changes"]}
    expect(got == {("M", "d1/big", 26), ("M", "d1/d2/small", 26), ("A", "d1/d2/new", 5000),
                   ("D", "e/gone", 0), ("m", "same", 0)}, "status: %r" % sorted(got))
    text = ok(["-C", root, "status"]).decode()
    expect("M d1/big (26 B)\n" in text and "M d1/d2/small (26 B)\n" in text, text)
    ck = as_json(["-C", root, "checkpoint", "--json"])
    want = counts(st["changes"])
    expect((ck["files_added"], ck["files_changed"], ck["files_removed"], ck["bytes_changed"]) == want,
           "checkpoint %r, status %r" % (ck, want))
    d = as_json(["-C", root, "diff", "--json", "1", "2"])
    expect({(c["kind"], c["path"], c["bytes"]) for c in d["changes"]} == got, "diff 1 2: %r" % d)
    text = ok(["-C", root, "diff", "1", "2"]).decode()
    expect("M d1/big (26 B)\n" in text, text)


def test_log_after_prune():
    root = store()
    write(root, "a", b"a" * 10)
    ok(["-C", root, "checkpoint", "-q"])            # 1
    write(root, "b", b"b" * 20)
    ok(["-C", root, "checkpoint", "-q"])            # 2: +b
    write(root, "a", b"A" * 10)
    write(root, "c", b"c" * 30)
    ok(["-C", root, "checkpoint", "-q"])            # 3: ~a +c
    ok(["-C", root, "prune", "--keep-last", "1", "--keep", "1"])  # drops 2: 3 now holds +b ~a +c
    log = {e["id"]: e for e in as_json(["-C", root, "log", "--json"])}
    expect(sorted(log) == [1, 3] and log[3]["parent"] == 1, log)
    d = counts(as_json(["-C", root, "diff", "--json", "1", "3"])["changes"])
    got = (log[3]["files_added"], log[3]["files_changed"], log[3]["files_removed"], log[3]["bytes_changed"])
    expect(got == d == (2, 1, 0, 60), "log after prune: %r, diff 1 3: %r" % (got, d))
    ok(["-C", root, "prune", "--keep-last", "1"])   # drops 1: 3 is a root, everything added
    e = as_json(["-C", root, "log", "--json"])[0]
    expect((e["id"], e["parent"], e["files_added"], e["files_changed"], e["bytes_changed"]) == (3, 0, 3, 0, 60), e)
    text = ok(["-C", root, "log"]).decode()
    expect("+3 ~0 -0" in text, text)


if __name__ == "__main__":
    T.main([test_status_diff_checkpoint_agree, test_log_after_prune])
