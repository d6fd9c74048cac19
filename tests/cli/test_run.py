#!/usr/bin/env python3
"""metamori run --every (issue 20): when the command exits, a last
checkpoint ("exit") records its final state, byte for byte, even when the
interval never came; --no-final leaves it out. An interval in which nothing
changed records no checkpoint (the program idles: no empty checkpoints);
--keep-empty records one at every tick all the same."""
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


def changed(e):
    return e["files_added"] + e["files_changed"] + e["files_removed"]


def test_idle_intervals_record_nothing():
    root = store("mtm-run-idle-")
    T.write_file(os.path.join(root, "before"), b"b")
    ok(["-C", root, "checkpoint", "-q"])
    # busy, then idle for many ticks, then busy again, then idle until exit
    script = "printf one > a; sleep 2; printf two > b; sleep 1"
    rc, _, err = raw(["-C", root, "run", "-q", "--every", "0.2", "sh", "-c", script], cwd=root, env=env())
    expect(rc == 0, "run: %d %r" % (rc, err))
    want = T.manifest(root)
    log = as_json(["-C", root, "log", "--json"])[1:]
    expect(log and all(changed(e) for e in log), "empty checkpoints while idle: %r" %
           [(e["id"], e["message"], changed(e)) for e in log])
    expect(sum(e["files_added"] for e in log) == 2, "the two files: %r" % log)
    to = os.path.join(T.tempdir("mtm-run-idle-to-"), "t")
    T.restore(root, log[-1]["id"], to=to)
    T.assert_same(want, T.manifest(to), "the last checkpoint")
    # nothing changed at all: no checkpoint, not even at exit
    n = len(as_json(["-C", root, "log", "--json"]))
    rc, _, err = raw(["-C", root, "run", "-q", "--every", "0.2", "sleep", "0.7"], cwd=root, env=env())
    expect(rc == 0 and len(as_json(["-C", root, "log", "--json"])) == n, "idle run made checkpoints: %r" % err)
    # --keep-empty: a checkpoint at every tick and at exit, changed or not
    rc, _, err = raw(["-C", root, "run", "-q", "--every", "0.2", "--keep-empty", "sleep", "1"], cwd=root, env=env())
    expect(rc == 0, "run --keep-empty: %d %r" % (rc, err))
    kept = as_json(["-C", root, "log", "--json"])[n:]
    expect(len(kept) >= 2 and not any(changed(e) for e in kept) and kept[-1]["message"] == "exit",
           "--keep-empty: %r" % [(e["id"], e["message"], changed(e)) for e in kept])
    rc, _, err = raw(["-C", root, "run", "--keep-empty", "true"], cwd=root, env=env())
    expect(rc == 1 and err == b"metamori: run: --keep-empty needs --every\n", err)


def test_log_says_how_each_checkpoint_was_made(again=True):
    """log --json gives each checkpoint's tracked flag and pause as the
    checkpoint itself reported them (they were 0 for every checkpoint, a
    session's too): a plain checkpoint is not tracked and paused nothing; one
    taken in a session is tracked, with the pause it reported. A store made
    before the figures were kept (format 5) says null: unknown, not 0."""
    import sqlite3
    root = store("mtm-run-log-")
    T.write_file(os.path.join(root, "a"), b"a" * 10000)
    ok(["-C", root, "checkpoint", "-q"])
    out = os.path.join(os.path.dirname(root), "ckpt.json")
    script = "printf more >> a; %s -C %s checkpoint --json > %s" % (T.METAMORI, root, out)
    # (not -q: the session says why a checkpoint scanned)
    rc, _, err = raw(["-C", root, "run", "sh", "-c", script], cwd=root, env=env())
    expect(rc == 0, "run: %d %r" % (rc, err))
    import json
    said = json.load(open(out))
    if not said["tracked"] and again and T.overflowed(err):
        print("again: the watcher's queue overflowed (a loaded machine): the checkpoint scanned")
        return test_log_says_how_each_checkpoint_was_made(again=False)
    expect(said["tracked"] is True and said["pause_ns"] > 0, "the session's checkpoint said %r" % said)
    log = as_json(["-C", root, "log", "--json"])
    expect((log[0]["tracked"], log[0]["pause_ns"]) == (False, 0), "plain checkpoint: %r" % log[0])
    expect((log[1]["id"], log[1]["tracked"], log[1]["pause_ns"]) == (said["id"], True, said["pause_ns"]),
           "log says %r, the checkpoint said %r" % (log[1], said))
    # a format 5 store: the two columns did not exist
    db = sqlite3.connect(os.path.join(root, ".metamori", "index.db"))
    db.execute("ALTER TABLE checkpoint DROP COLUMN tracked")
    db.execute("ALTER TABLE checkpoint DROP COLUMN pause_ns")
    T.checkpoint_to_format_8(db)
    T.statcache_to_format_7(db)
    db.execute("INSERT INTO entry SELECT * FROM entry_log")  # (where format 6 kept them)
    db.execute("DROP TABLE entry_log")
    db.execute("PRAGMA user_version=5")
    db.commit()
    db.close()
    log = as_json(["-C", root, "log", "--json"])
    expect([(e["tracked"], e["pause_ns"]) for e in log] == [(None, None)] * 2, "upgraded: %r" % log)
    ok(["-C", root, "checkpoint", "-q"])
    expect((T.log_json(root)[-1]["tracked"], T.log_json(root)[-1]["pause_ns"]) == (False, 0), "after the upgrade")


if __name__ == "__main__":
    T.main([test_final_checkpoint_at_exit, test_idle_intervals_record_nothing, test_log_says_how_each_checkpoint_was_made])
