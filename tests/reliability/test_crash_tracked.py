#!/usr/bin/env python3
"""Crash at every point of a tracked session (issue 4, extended to tracking).

`metamori run` runs a job that changes the tree and asks for two checkpoints
(`metamori checkpoint` from inside the job, answered by the session), copying
the tree aside after each one returns. The session process is enumerated with
METAMORI_IO_COUNT and then SIGKILLed before each of its mutating operations
(METAMORI_CRASH_AT, cleared for the job itself). After each kill:

  * `verify --data` passes;
  * the checkpoint made before the session, and every checkpoint whose
    command returned inside the job, restore byte-exactly (manifest of the
    copy taken when it returned);
  * a checkpoint that committed but whose reply was lost is whole: it equals
    the tree as the job left it (the job stops at the failed checkpoint);
  * a scan checkpoint afterwards completes and is exact.
"""
import os
import random
import signal
import subprocess

import mtmtest as T
import rlib

# (the copies leave .metamori out as they read: the session removes its
# logs of processes that ended, such as the job's `metamori checkpoint`,
# after it answers, and `cp -a` of a file removed under it fails the job)
JOB = r"""set -e
M=$1; R=$2; S=$3
echo one >> $R/a; head -c 50000 /dev/urandom > $R/b; mkdir -p $R/d; echo x > $R/d/x
python3 -c "import os; open('$R/e', 'wb').write(os.urandom(40960))"
$M -C $R checkpoint -q -m t1 > $S/id1.tmp; mv $S/id1.tmp $S/id1
mkdir -p $S/c1; tar -C $R --exclude=./.metamori --format=posix -cf - . | tar -C $S/c1 -xpf -
dd if=/dev/urandom of=$R/a bs=4096 count=3 seek=5 conv=notrunc status=none; rm $R/b; echo c > $R/c
ln -s a $R/l
python3 -c "import os; fd = os.open('$R/e', os.O_WRONLY); os.pwrite(fd, os.urandom(12288), 8192)"
sleep 0.3  # time for the session to write e's new blocks ahead (src/session/prewrite.c): kill points there too
$M -C $R checkpoint -q -m t2 > $S/id2.tmp; mv $S/id2.tmp $S/id2
mkdir -p $S/c2; tar -C $R --exclude=./.metamori --format=posix -cf - . | tar -C $S/c2 -xpf -
"""
STATS = {"kill_points": 0}
# in the ASan build the job's own `metamori checkpoint` runs with the (uninstrumented)
# interposer preloaded ahead of the ASan runtime: allowed, as in tests/session
if "verify_asan_link_order" not in os.environ.get("ASAN_OPTIONS", ""):
    os.environ["ASAN_OPTIONS"] = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"), "verify_asan_link_order=0"]))


def run_session(root, side, env):
    os.makedirs(side)
    job = os.path.join(side, "..", "job.sh")
    return subprocess.run([T.METAMORI, "-C", root, "run", "-q", "--", "env", "-u", "METAMORI_CRASH_AT", "-u",
                           "METAMORI_IO_COUNT", "sh", job, T.METAMORI, root, side],
                          capture_output=True, text=True, env=env, timeout=120)


def test_tracked_session_crash_every_point():
    if not os.path.exists(os.path.join(os.path.dirname(T.METAMORI), "libmetamori-preload.so")):
        raise T.Skip("no interposer next to %s" % T.METAMORI)
    base = T.tempdir("mtm-rel-trk-")
    try:
        with open(os.path.join(base, "job.sh"), "w") as f:
            f.write(JOB)
        pristine = os.path.join(base, "pristine")
        os.makedirs(pristine)
        T.write_file(os.path.join(pristine, "a"), random.Random(3).randbytes(200000))
        T.init(pristine)
        c0 = T.checkpoint(pristine)
        m0 = rlib.tree_manifest(pristine)
        root = os.path.join(base, "t")
        side = os.path.join(base, "side")
        scratch = os.path.join(base, "scratch")
        rlib.copy_root(pristine, root)
        count = os.path.join(base, "count")
        p = run_session(root, side, rlib.env_with(METAMORI_IO_COUNT=count))
        if p.returncode != 0:
            raise T.Failure("clean session failed: %s" % p.stderr)
        n = int(open(count).read())
        stride = 1 if rlib.TORTURE else 8 if rlib.SANITIZED else 4
        for k in range(1, n + 1):
            if (k - 1) % stride and k != n:
                continue
            rlib.copy_root(pristine, root)
            T.rmtree(side)
            p = run_session(root, side, rlib.env_with(METAMORI_CRASH_AT=k))
            label = "session killed at op %d/%d" % (k, n)
            if p.returncode == 0:
                continue
            if p.returncode != -signal.SIGKILL:
                raise T.Failure("%s: exit %d: %s" % (label, p.returncode, p.stderr))
            STATS["kill_points"] += 1
            chk = rlib.Checker(None, None, root, label)
            chk.verify()
            want = {c0: m0}
            for i in (1, 2):
                idf = os.path.join(side, "id%d" % i)
                if os.path.exists(idf) and os.path.isdir(os.path.join(side, "c%d" % i)):
                    want[int(open(idf).read())] = rlib.tree_manifest(os.path.join(side, "c%d" % i))
            live = rlib.tree_manifest(root)
            ids = rlib.checkpoint_ids(root)
            lost = set(want) - set(ids)
            if lost:
                raise T.Failure("%s: committed checkpoints lost: %s" % (label, sorted(lost)))
            for cid in ids:
                # one whose reply was lost must be the tree as the job left it
                chk.restores_exactly(cid, want.get(cid, live), scratch)
            q = rlib.mtm(["-C", root, "checkpoint", "-q"])
            if q.returncode != 0:
                raise T.Failure("%s: checkpoint after the crash failed: %s" % (label, q.stderr))
            chk.restores_exactly(int(q.stdout.strip()), live, scratch)
            chk.verify("verify --data after the rerun")
        print("  %d kill points of a tracked session (%d mutating operations)" % (STATS["kill_points"], n))
    finally:
        T.rmtree(base)


if __name__ == "__main__":
    T.main([test_tracked_session_crash_every_point])
