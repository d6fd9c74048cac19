#!/usr/bin/env python3
"""One session per tree: a second `metamori run` on a tree whose session is
alive joins it (issue 19: `mpirun -np 4 metamori run -- prog` starts one per
rank). The joined program's changes are tracked, checkpoints hold every
member's program at the barrier, the session lives until the last member has
ended, and each `metamori run` exits with its own program's status."""
import os
import subprocess
import sys
import time

import mtmtest as T
import sessiontest as S

BUILD = os.path.dirname(os.path.abspath(T.METAMORI))
PRELOAD = os.path.join(BUILD, "libmetamori-preload.so")
ENV = dict(os.environ, METAMORI_PRELOAD=PRELOAD)


def start(root, script):
    return subprocess.Popen([T.METAMORI, "-C", root, "run", "-q", "--", "sh", "-c", script], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_file(path, procs, timeout=30):
    end = time.time() + timeout
    while not os.path.exists(path):
        for p in procs:
            if p.poll() is not None:
                raise T.Failure("a 'metamori run' ended early (%d): %s" % (p.returncode, p.stderr.read().strip()))
        if time.time() > end:
            raise T.Failure("timed out waiting for " + path)
        time.sleep(0.02)


def tracked_checkpoint(root, how="(tracked, paused"):
    """A checkpoint from another shell: must be the session's (tracked),
    and restore exactly what the tree holds now."""
    man = T.manifest(root)
    p = T.run(["-C", root, "checkpoint"])
    if how not in p.stdout:
        raise T.Failure("checkpoint was not the session's tracked one: %r" % p.stdout)
    cid = int(p.stdout.split()[1])
    to = os.path.join(T.tempdir(), "out")
    T.restore(root, cid, to=to)
    T.assert_same(man, T.manifest(to), "checkpoint %d" % cid)


def test_second_run_joins_the_session():
    root = S.new_tree({"a": b"a" * 5000})
    ctl = T.tempdir("mtm-ctl-")
    c = lambda name: os.path.join(ctl, name)
    wait = lambda name: "while [ ! -e '%s' ]; do sleep 0.02; done; " % c(name)
    first = start(root, "echo a1 >> a; touch '%s'; %s" % (c("a_ready"), wait("endA")))
    procs = [first]
    try:
        wait_file(c("a_ready"), procs)
        second = start(root, "echo b1 > b; touch '%s'; %s echo b2 >> b; touch '%s'; %s exit 5"
                       % (c("b_ready"), wait("endB1"), c("b2_done"), wait("endB2")))
        procs.append(second)
        wait_file(c("b_ready"), procs)
        if os.listdir(os.path.join(root, ".metamori", "session")).count("sock") != 1:
            raise T.Failure("a second session was started")
        tracked_checkpoint(root)  # both programs' changes
        # the first program ends: its session lives on for the second
        open(c("endA"), "w").close()
        time.sleep(0.5)
        if first.poll() is not None:
            raise T.Failure("the session ended under a joined program (exit %d)" % first.returncode)
        open(c("endB1"), "w").close()
        wait_file(c("b2_done"), [])
        tracked_checkpoint(root)  # the joined program's change, after the first ended
        open(c("endB2"), "w").close()
        if second.wait(timeout=30) != 5:
            raise T.Failure("joined run: exit %d, wanted its program's 5: %s" % (second.returncode, second.stderr.read()))
        if first.wait(timeout=30) != 0:
            raise T.Failure("session: exit %d: %s" % (first.returncode, first.stderr.read()))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    if os.listdir(os.path.join(root, ".metamori", "session")) != ["lock"]:
        raise T.Failure("session files left: %s" % os.listdir(os.path.join(root, ".metamori", "session")))
    T.rmtree(ctl)
    T.rmtree(root)


def test_runs_started_together_share_one_session():
    # as mpirun starts them: four at once on a fresh tree (no checkpoint yet)
    root = T.tempdir()
    T.init(root)
    ctl = T.tempdir("mtm-ctl-")
    procs = []
    try:
        for r in range(4):
            procs.append(start(root, "echo rank%d > r%d; touch '%s/ready%d'; while [ ! -e '%s/go' ]; do sleep 0.02; "
                                     "done; echo done >> r%d" % (r, r, ctl, r, ctl, r)))
        for r in range(4):
            wait_file(os.path.join(ctl, "ready%d" % r), procs)
        tracked_checkpoint(root, ", paused")  # the session's (it scans: no head yet)
        open(os.path.join(ctl, "go"), "w").close()
        for r, p in enumerate(procs):
            if p.wait(timeout=30) != 0:
                raise T.Failure("run %d: exit %d: %s" % (r, p.returncode, p.stderr.read().strip()))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for r in range(4):
        with open(os.path.join(root, "r%d" % r)) as f:
            if f.read() != "rank%d\ndone\n" % r:
                raise T.Failure("r%d is wrong" % r)
    T.rmtree(ctl)
    T.rmtree(root)


if __name__ == "__main__":
    if not os.path.exists(PRELOAD):
        print("skip: no interposer at %s" % PRELOAD)
        sys.exit(77)
    T.main([test_second_run_joins_the_session, test_runs_started_together_share_one_session])
