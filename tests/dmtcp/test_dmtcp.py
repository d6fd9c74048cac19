#!/usr/bin/env python3
"""DMTCP + Metamori's plugin (issue 18): a program that knows nothing of
checkpoints (dmtprog.c), checkpointed by DMTCP at a known step, killed
later and restarted from the image, ends with files and output identical
to an uninterrupted run: the plugin made a file checkpoint at DMTCP's
barrier, kept its id in the image and restored the tree to it on restart.
Without the plugin (DMTCP alone) the restarted program finds the files of
the later step and ends differently. An image whose file checkpoint failed
is refused on restart. Exits 77 (skipped) when DMTCP is not installed
(`make dmtcp`). Environment: DMTCP_BIN, METAMORI_DMTCP_PLUGIN, DMTPROG."""
import fcntl
import os
import subprocess
import sys
import time

import mtmtest as T
from mtmtest import Failure

DBIN = os.environ.get("DMTCP_BIN", "")
PLUGIN = os.environ.get("METAMORI_DMTCP_PLUGIN", "")
PROG = os.environ.get("DMTPROG", "")
STEPS, PAUSE, DIE = 30, 10, 13


def expect(cond, what):
    if not cond:
        raise Failure(what)


def files(d):
    out = {}
    for name in ("journal.txt", "data.bin", "state.txt", "result.txt"):
        p = os.path.join(d, name)
        out[name] = open(p, "rb").read() if os.path.exists(p) else None
    return out


def reference():
    ref = T.tempdir("mtm-dmtcp-ref-")
    p = subprocess.run([PROG, ref, str(STEPS)], capture_output=True, text=True)
    expect(p.returncode == 0, "reference run: %s" % p.stderr)
    return ref, p.stdout


def checkpoint_then_kill(tree, ctl, ck, plugin=True, env_extra=None):
    """Launches dmtprog under DMTCP; checkpoints it after step PAUSE; it kills itself after DIE."""
    env = dict(os.environ, DMTPROG_CTL=ctl, DMTPROG_PAUSE=str(PAUSE), DMTPROG_DIE=str(DIE),
               METAMORI_DMTCP_TREE=tree, METAMORI_DMTCP_CLI=T.METAMORI)
    env.update(env_extra or {})
    portfile = os.path.join(ctl, "port")
    cmd = [os.path.join(DBIN, "dmtcp_launch"), "--new-coordinator", "-p", "0", "--port-file", portfile,
           "--ckptdir", ck, "--no-gzip"]
    if plugin:
        cmd += ["--with-plugin", PLUGIN]
    p = subprocess.Popen(cmd + [PROG, tree, str(STEPS)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env)
    deadline = time.time() + 60
    while not os.path.exists(os.path.join(ctl, "ready")):
        expect(time.time() < deadline and p.poll() is None, "dmtprog never reached step %d" % PAUSE)
        time.sleep(0.05)
    port = open(portfile).read().strip()
    t0 = time.time()
    c = subprocess.run([os.path.join(DBIN, "dmtcp_command"), "-p", port, "--bcheckpoint"], capture_output=True,
                       text=True, timeout=120)
    took = time.time() - t0
    expect(c.returncode == 0, "dmtcp_command: %s" % c.stderr)
    open(os.path.join(ctl, "go"), "w").close()
    p.communicate(timeout=120)
    expect(p.returncode in (137, -9), "expected the kill after step %d, got %d" % (DIE, p.returncode))
    images = [os.path.join(ck, f) for f in os.listdir(ck) if f.endswith(".dmtcp")]
    expect(len(images) == 1, "images: %r" % images)
    return images[0], took


def restart(image, tree):
    env = dict(os.environ, METAMORI_DMTCP_TREE=tree)
    return subprocess.run([os.path.join(DBIN, "dmtcp_restart"), "--new-coordinator", "-p", "0", image],
                          capture_output=True, text=True, env=env, timeout=120)


def test_restart_from_paired_image():
    ref, ref_out = reference()
    tree, ctl, ck = T.tempdir("mtm-dmtcp-"), T.tempdir("mtm-dmtcp-ctl-"), T.tempdir("mtm-dmtcp-ck-")
    try:
        T.init(tree)
        image, took = checkpoint_then_kill(tree, ctl, ck)
        log = T.log_json(tree)
        expect(len(log) == 1 and log[0]["message"] == "dmtcp image: " + image,
               "one paired checkpoint naming the image: %r" % log)
        with open(os.path.join(tree, "state.txt")) as f:
            expect(f.read() == "%d\n" % DIE, "killed after step %d" % DIE)
        r = restart(image, tree)
        expect(r.returncode == 0, "restart failed (%d): %s" % (r.returncode, r.stderr))
        expect(r.stdout == ref_out, "output %r, uninterrupted %r" % (r.stdout, ref_out))
        expect(files(tree) == files(ref), "files differ from the uninterrupted run")
        print("  paired checkpoint (DMTCP image + file checkpoint) in %.2f s" % took)
    finally:
        for d in (ref, tree, ctl, ck):
            T.rmtree(d)


def test_dmtcp_alone_disagrees():
    """What the plugin fixes: DMTCP alone restarts memory at step PAUSE over files of step DIE."""
    ref, ref_out = reference()
    tree, ctl, ck = T.tempdir("mtm-dmtcp-"), T.tempdir("mtm-dmtcp-ctl-"), T.tempdir("mtm-dmtcp-ck-")
    try:
        image, _ = checkpoint_then_kill(tree, ctl, ck, plugin=False)
        r = restart(image, tree)
        expect(r.returncode == 0, "restart failed: %s" % r.stderr)
        expect(files(tree)["journal.txt"] != files(ref)["journal.txt"],
               "DMTCP alone was expected to leave the journal of the later steps in place")
    finally:
        for d in (ref, tree, ctl, ck):
            T.rmtree(d)


def test_failed_file_checkpoint_fails_the_pair():
    tree, ctl, ck = T.tempdir("mtm-dmtcp-"), T.tempdir("mtm-dmtcp-ctl-"), T.tempdir("mtm-dmtcp-ck-")
    try:
        T.init(tree)
        # another writer holds the store's lock: the file checkpoint fails (busy)
        fd = os.open(os.path.join(tree, ".metamori", "lock"), os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            image, _ = checkpoint_then_kill(tree, ctl, ck)
        finally:
            os.close(fd)
        expect(T.log_json(tree) == [], "no file checkpoint expected")
        r = restart(image, tree)
        expect(r.returncode == 75, "restart of an unpaired image: exit %d, %s" % (r.returncode, r.stderr))
        line = [l for l in r.stderr.splitlines() if l.startswith("metamori: ")]
        expect(line == ["metamori: restart: %s: this image has no file checkpoint (it failed when the image was made)"
                        % tree], "message: %r" % r.stderr)
    finally:
        for d in (tree, ctl, ck):
            T.rmtree(d)


if __name__ == "__main__":
    if not (DBIN and os.access(os.path.join(DBIN, "dmtcp_launch"), os.X_OK) and os.path.exists(PLUGIN)):
        print("skip: DMTCP is not installed (make dmtcp)")
        sys.exit(77)
    T.main([test_restart_from_paired_image, test_dmtcp_alone_disagrees, test_failed_file_checkpoint_fails_the_pair])
