#!/usr/bin/env python3
"""metamori run --every (issue 20): when the command exits, a last
checkpoint ("exit") records its final state, byte for byte, even when the
interval never came; --no-final leaves it out."""
import os

import mtmtest as T
from clilib import as_json, expect, ok, raw, store


def env():
    bindir = os.path.dirname(os.path.abspath(T.METAMORI))
    return dict(os.environ, METAMORI_PRELOAD=os.path.join(bindir, "libmetamori-preload.so"))


def test_final_checkpoint_at_exit():
    root = store("mtm-run-")
    T.write_file(os.path.join(root, "before"), b"b")
    ok(["-C", root, "checkpoint", "-q"])
    script = "printf one > a; mkdir d; head -c 100000 /dev/urandom > d/big; printf two >> a; rm before"
    rc, _, err = raw(["-C", root, "run", "-q", "--every", "3600", "sh", "-c", script], cwd=root, env=env())
    expect(rc == 0, "run: %d %r" % (rc, err))
    want = T.manifest(root)
    log = as_json(["-C", root, "log", "--json"])
    expect([(e["id"], e["message"]) for e in log] == [(1, ""), (2, "exit")], log)
    expect((log[1]["files_added"], log[1]["files_removed"]) == (3, 1), log[1])
    to = os.path.join(T.tempdir("mtm-run-to-"), "t")
    T.restore(root, 2, to=to)
    T.assert_same(want, T.manifest(to), "the final checkpoint")
    expect(ok(["-C", root, "status"]).decode() == "nothing changed since checkpoint 2\n", "status after run")
    # the command's exit status is kept, and --no-final leaves the last state out
    rc, _, _ = raw(["-C", root, "run", "-q", "--every", "3600", "--no-final", "sh", "-c", "printf x > a; exit 3"],
                   cwd=root, env=env())
    expect(rc == 3, "exit status %d" % rc)
    expect([e["id"] for e in as_json(["-C", root, "log", "--json"])] == [1, 2], "--no-final made a checkpoint")
    # without --every: no checkpoint unless asked
    rc, _, _ = raw(["-C", root, "run", "-q", "sh", "-c", "printf y > a"], cwd=root, env=env())
    expect(rc == 0 and len(as_json(["-C", root, "log", "--json"])) == 2, "run without --every")


if __name__ == "__main__":
    T.main([test_final_checkpoint_at_exit])
