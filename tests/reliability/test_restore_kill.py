#!/usr/bin/env python3
"""A kill -9 loop of checkpoint / restore / prune with user edits between the
steps (issue 16). Each step is killed at a random point of its I/O (SIGKILL
through METAMORI_CRASH_AT) or left to finish; after each one:

  - 0 edits reverted: a checkpoint, prune or read-only command leaves the
    tree exactly as the user left it; a restore first saved the tree the
    user had (the saved checkpoint, or the head if it was the same), so it
    can be had back byte for byte;
  - 0 checkpoints lost: every checkpoint the model holds exists and restores
    to what the tree was when it was made; a prune drops only what its
    policy lets go;
  - 0 stray temporary files once no restore is pending;
  - the store usable: log and verify succeed after every kill; a pending
    restore is finished (--continue) or put back (--abort) on request.

make test runs a bounded loop (RESTORE_KILL_SECONDS, default 8 s);
make torture runs 1,000 iterations (METAMORI_TORTURE=1).
"""
import json
import os
import random
import sys
import time

import mtmtest as T
import rlib
from rlib import mtm, env_with, tree_manifest, contents

INTENT = os.path.join(".metamori", "intent")
KEEP_LAST = 5


class Fail(T.Failure):
    pass


def temps(root):
    out = []
    for d, dirs, files in os.walk(root):
        out += [os.path.join(d, f) for f in files if f.startswith(rlib.TMP_PREFIX)]
    return out


def log(root):
    p = mtm(["-C", root, "log", "--json"])
    if p.returncode != 0:
        raise Fail("log failed after a kill: %s" % p.stderr.strip())
    return json.loads(p.stdout)


def edit(root, rng):
    """A user's edit: rewrite, create, remove, patch a big file, add a directory."""
    files = sorted(k for k, v in tree_manifest(root).items() if v[0] == "f")
    r = rng.random()
    if r < 0.35 and files:
        T.write_file(os.path.join(root, rng.choice(files)), rng.randbytes(rng.randrange(1, 30000)))
    elif r < 0.55:
        d = rng.choice(["", "src", "src/deep", "docs"])
        p = os.path.join(root, d, "new%d" % rng.randrange(1000))
        os.makedirs(os.path.dirname(p), exist_ok=True)
        T.write_file(p, rng.randbytes(rng.randrange(0, 9000)))
    elif r < 0.7 and len(files) > 3:
        f = rng.choice([f for f in files if f != "big.bin"] or files)
        os.unlink(os.path.join(root, f))
    elif r < 0.9 and "big.bin" in files:
        T.patch_file(os.path.join(root, "big.bin"), rng.randrange(0, 3 << 20) & ~4095, rng.randbytes(4096 * rng.randrange(1, 4)))
    else:
        os.makedirs(os.path.join(root, "docs", "d%d" % rng.randrange(100)), exist_ok=True)


def setup(base, rng):
    root = os.path.join(base, "tree")
    os.makedirs(os.path.join(root, "src", "deep"))
    os.makedirs(os.path.join(root, "docs"))
    T.init(root)
    for i in range(8):
        T.write_file(os.path.join(root, rng.choice(["", "src", "src/deep", "docs"]), "f%d" % i),
                     rng.randbytes(rng.randrange(100, 20000)))
    T.write_file(os.path.join(root, "big.bin"), rng.randbytes(3 << 20))
    c = T.checkpoint(root)
    return root, {c: contents(tree_manifest(root))}


def io_count(root, args):
    cf = os.path.join(os.path.dirname(root), "count")
    scratch = os.path.join(os.path.dirname(root), "count-tree")
    rlib.copy_root(root, scratch)
    mtm(["-C", scratch] + args, env=env_with(METAMORI_IO_COUNT=cf))
    T.rmtree(scratch)
    with open(cf) as f:
        return int(f.read().split()[0])


def restores_to(root, cid, want, scratch, what):
    if os.path.lexists(scratch):
        T.rmtree(scratch)
    p = mtm(["-C", root, "restore", str(cid), "--to", scratch])
    if p.returncode != 0:
        raise Fail("%s: restore %d --to failed: %s" % (what, cid, p.stderr.strip()))
    got = contents(tree_manifest(scratch))
    T.rmtree(scratch)
    if got != want:
        T.assert_same(want, got, "%s: checkpoint %d" % (what, cid))


def run(iterations, seconds, seed):
    rng = random.Random(seed)
    base = T.tempdir("mtm-kill-")
    root, model = setup(base, rng)
    scratch = os.path.join(base, "to")
    # the I/O calls of each kind of step, for the range of its kill points
    edit(root, rng)
    counts = {"checkpoint": io_count(root, ["checkpoint"]), "prune": io_count(root, ["prune", "--keep-last", "1"]),
              "restore": io_count(root, ["restore", str(min(model))])}
    counts["continue"] = counts["abort"] = counts["restore"]
    stats = {"iterations": 0, "kills": 0, "pending": 0, "continued": 0, "aborted": 0, "saves": 0, "replaced": 0}
    t0 = time.time()
    it = 0
    while it < iterations and (not seconds or time.time() - t0 < seconds):
        it += 1
        what = "iteration %d (seed %d)" % (it, seed)
        for _ in range(rng.randrange(0, 3)):
            edit(root, rng)
        before = contents(tree_manifest(root))
        ids_before = [c["id"] for c in log(root)]
        pending = os.path.exists(os.path.join(root, INTENT))
        r = rng.random()
        if pending and r < 0.5:
            kind, args = ("continue", ["restore", "--continue"]) if rng.random() < 0.5 else ("abort", ["restore", "--abort"])
        elif r < 0.4:
            kind, args = "checkpoint", ["checkpoint"]
        elif r < 0.85:
            kind, args = "restore", ["restore", str(rng.choice(ids_before))]
        else:
            kind, args = "prune", ["prune", "--keep-last", str(KEEP_LAST)]
        n = counts[kind]
        crash = rng.randrange(1, int(n * 1.2) + 2) if rng.random() < 0.7 else 0
        env = env_with(METAMORI_CRASH_AT=crash) if crash else env_with()
        p = mtm(["-C", root] + args, env=env)
        killed = p.returncode == -9 or p.returncode == 137
        if p.returncode != 0 and not killed:
            raise Fail("%s: %s failed (%d): %s" % (what, " ".join(args), p.returncode, p.stderr.strip()))
        stats["kills"] += killed
        # the store is usable after every kill
        entries = log(root)
        ids = [c["id"] for c in entries]
        head = [c["id"] for c in entries if c["head"]]
        v = mtm(["-C", root, "verify"] + (["--data"] if it % 25 == 0 else []))
        if v.returncode != 0:
            raise Fail("%s: verify after %s (killed: %s): %s" % (what, kind, killed, v.stderr.strip()))
        now = contents(tree_manifest(root))
        new = [i for i in ids if i not in ids_before]
        # 0 checkpoints lost
        if kind == "prune":
            keep = set(ids_before[-KEEP_LAST:]) | set(head)
            lost = keep - set(ids)
            if lost:
                raise Fail("%s: prune lost %s" % (what, sorted(lost)))
            for gone in set(ids_before) - set(ids):
                model.pop(gone, None)
        else:
            lost = set(ids_before) - set(ids)
            if lost:
                raise Fail("%s: %s lost checkpoints %s" % (what, kind, sorted(lost)))
        if len(new) > 1:
            raise Fail("%s: %s made %d checkpoints" % (what, kind, len(new)))
        for c in new:  # a checkpoint, or the save before a restore: the tree the user had
            model[c] = before
            stats["saves"] += kind != "checkpoint"
        # 0 edits reverted
        if kind in ("checkpoint", "prune") and now != before:
            T.assert_same(before, now, "%s: %s changed the tree" % (what, kind))
        if kind in ("restore", "continue", "abort") and now != before and not new:
            # the tree changed without a save: what the user had is a checkpoint already
            if not any(model.get(i) == before for i in ids):
                raise Fail("%s: %s changed the tree and no checkpoint holds what the user had" % (what, kind))
        if not killed and kind == "restore":
            if now != model[int(args[1])]:
                T.assert_same(model[int(args[1])], now, "%s: restore %s" % (what, args[1]))
        # a pending restore says so; none pending: no temporaries
        pending_now = os.path.exists(os.path.join(root, INTENT))
        stats["pending"] += pending_now and not pending
        if kind == "continue" and not killed:
            stats["continued"] += 1
        if kind == "abort" and not killed:
            stats["aborted"] += 1
        if pending_now:
            s = mtm(["-C", root, "status"])
            if s.returncode != 0 or "was interrupted" not in s.stderr:
                raise Fail("%s: status with a restore pending: %d %s" % (what, s.returncode, s.stderr.strip()))
            if contents(tree_manifest(root)) != now:
                raise Fail("%s: status changed the tree" % what)
        elif temps(root):
            raise Fail("%s: temporary files with no restore pending: %s" % (what, temps(root)))
        # every checkpoint still restores as it was (a sample, all of them now and then)
        check = ids if it % 20 == 0 else rng.sample(ids, min(2, len(ids)))
        for c in check:
            if c in model:
                restores_to(root, c, model[c], scratch, what)
        stats["iterations"] = it
    # finish whatever is pending; then every checkpoint, and no temporaries
    if os.path.exists(os.path.join(root, INTENT)):
        mtm(["-C", root, "restore", "--continue"], check=True)
    if temps(root):
        raise Fail("temporary files left at the end: %s" % temps(root))
    for c in [e["id"] for e in log(root)]:
        if c in model:
            restores_to(root, c, model[c], scratch, "at the end")
    T.rmtree(base)
    return stats


def test_kill_loop():
    if rlib.TORTURE:
        iterations, seconds = 1000, 0
    else:
        iterations, seconds = 100000, float(os.environ.get("RESTORE_KILL_SECONDS", "8" if rlib.SANITIZED else "8"))
    seed = int(os.environ.get("RESTORE_KILL_SEED", "16"))
    st = run(iterations, seconds, seed)
    print("  %(iterations)d iterations, %(kills)d kills, %(pending)d restores left pending, "
          "%(continued)d continued, %(aborted)d aborted, %(saves)d trees saved before a restore; "
          "0 edits reverted, 0 checkpoints lost, 0 stray temporary files" % st)
    if rlib.TORTURE and st["iterations"] < 1000:
        raise Fail("only %d iterations" % st["iterations"])


if __name__ == "__main__":
    T.main([test_kill_loop])
