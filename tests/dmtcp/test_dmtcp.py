#!/usr/bin/env python3
"""DMTCP + Metamori (issue 18): a program that knows nothing of checkpoints
(dmtprog.c), run with `metamori run --dmtcp`, checkpointed with `metamori
checkpoint` (one paired checkpoint: DMTCP's image of its memory, the file
checkpoint made at DMTCP's barrier), killed later and restarted with
`metamori restart`, ends with files and output identical to an
uninterrupted run, and pairs again after the restart. The interposer
survives DMTCP's checkpoint and restart (the session's files are in no
image; logs are named by real pids); a tight pwrite loop is paired 10 times
in a row, each under 5 s; a restart onto a tree that differs from the
image's checkpoint is refused; a failed file checkpoint fails the pair.
DMTCP alone (no plugin) restarts memory over files of a later step.
Exits 77 (skipped) when DMTCP is not installed (`make dmtcp`).
Environment: DMTCP_BIN, METAMORI_DMTCP_PLUGIN, DMTPROG, PWLOOP."""
import fcntl
import os
import re
import subprocess
import sys
import time

import mtmtest as T
from mtmtest import Failure

DBIN = os.environ.get("DMTCP_BIN", "")
PLUGIN = os.environ.get("METAMORI_DMTCP_PLUGIN", "")
PROG = os.environ.get("DMTPROG", "")
PWLOOP = os.environ.get("PWLOOP", "")
STEPS = 30
# (checkpoint after step, killed after step): early, middle, late
KILL_POINTS = [(4, 7), (10, 13), (21, 27)]
AGAIN = STEPS - 1  # the last case pairs again here, after its restart


def expect(cond, what):
    if not cond:
        raise Failure(what)


def env(**extra):
    e = dict(os.environ, METAMORI_DMTCP_BIN=DBIN, METAMORI_DMTCP_PLUGIN=PLUGIN)
    e.update({k: str(v) for k, v in extra.items()})
    return e


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


def wait_for(path, proc, what, timeout=60):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        expect(proc.poll() is None, "%s: the program ended (%s)" % (what, proc.returncode))
        expect(time.time() < deadline, "%s: timed out" % what)
        time.sleep(0.02)


def paired(tree, quiet=True):
    """`metamori checkpoint -q` in a DMTCP session: the paired id and the seconds it took."""
    t0 = time.time()
    p = T.run(["-C", tree, "checkpoint", "-q"], env=env())
    return int(p.stdout.strip()), time.time() - t0


def tags(tree):
    import json
    return {t["name"]: t["id"] for t in json.loads(T.run(["-C", tree, "tag", "--json"]).stdout)}


def images(tree, ckpt):
    d = os.path.join(tree, ".metamori", "dmtcp", str(ckpt))
    return [os.path.join(d, f) for f in os.listdir(d) if f.endswith(".dmtcp")] if os.path.isdir(d) else []


PROCS = []  # killed at the end of each test if still running


def reap():
    """Kills what a failed test left running: the session, the program, DMTCP's coordinator."""
    import signal
    while PROCS:
        p = PROCS.pop()
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.communicate()


def popen(*a, **k):
    p = subprocess.Popen(*a, start_new_session=True, **k)
    PROCS.append(p)
    return p


def start(tree, ctl, pauses, die):
    return popen([T.METAMORI, "-C", tree, "run", "-q", "--dmtcp", "--", PROG, tree, str(STEPS)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env(DMTPROG_CTL=ctl, DMTPROG_PAUSE=",".join(map(str, pauses)), DMTPROG_DIE=die))


def session_logs(tree):
    d = os.path.join(tree, ".metamori", "session")
    return [int(f[4:]) for f in os.listdir(d) if re.fullmatch(r"log\.\d+", f)] if os.path.isdir(d) else []


def test_restart_at_kill_points():
    """Killed (SIGKILL) at several points, restarted from the paired checkpoint: bit-identical."""
    ref, ref_out = reference()
    points = KILL_POINTS[1:2] if os.environ.get("MTM_SANITIZED") else KILL_POINTS
    try:
        for n, (at, die) in enumerate(points):
            tree, ctl = T.tempdir("mtm-dmtcp-"), T.tempdir("mtm-dmtcp-ctl-")
            try:
                T.init(tree)
                # the last case also checkpoints again after its restart
                again = AGAIN if n == len(points) - 1 else None
                p = start(tree, ctl, [at] + ([again] if again else []), die)
                wait_for(os.path.join(ctl, "ready.%d" % at), p, "step %d" % at)
                ckpt, took = paired(tree)
                expect(tags(tree).get("dmtcp-%d" % ckpt) == ckpt, "paired checkpoint %d tagged dmtcp-%d: %r"
                       % (ckpt, ckpt, tags(tree)))
                imgs = images(tree, ckpt)
                expect(len(imgs) == 1, "one image in .metamori/dmtcp/%d: %r" % (ckpt, imgs))
                # the session's ctl and 64 MiB log are not in it (the grid is 4 MiB)
                size = os.path.getsize(imgs[0])
                expect(size < 48 << 20, "image of %d MiB: the session's log is in it" % (size >> 20))
                open(os.path.join(ctl, "go.%d" % at), "w").close()
                p.communicate(timeout=120)
                expect(p.returncode == 128 + 9, "expected the kill after step %d, got %d" % (die, p.returncode))
                with open(os.path.join(tree, "state.txt")) as f:
                    expect(f.read() == "%d\n" % die, "killed after step %d" % die)
                r = popen([T.METAMORI, "-C", tree, "restart"] + ([] if again else ["-q"]), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env())
                if again:
                    wait_for(os.path.join(ctl, "ready.%d" % again), r, "step %d after the restart" % again)
                    # the interposer's log after the restart is named by a live (real) pid
                    logs = session_logs(tree)
                    expect(logs and all(os.path.exists("/proc/%d" % pid) for pid in logs),
                           "logs after the restart name no live process: %r" % logs)
                    ckpt2, _ = paired(tree)
                    expect(ckpt2 > ckpt and tags(tree).get("dmtcp-%d" % ckpt2) == ckpt2,
                           "a paired checkpoint after the restart: %d" % ckpt2)
                    # the restarted program is traced again (not scanned for the rest of its life
                    # as the static mtcp_restart it came out of): the next pair is tracked
                    ckpt3, _ = paired(tree)
                    open(os.path.join(ctl, "go.%d" % again), "w").close()
                out, err = r.communicate(timeout=120)
                expect(r.returncode == 0, "restart failed (%d): %s" % (r.returncode, err))
                if again:
                    said = [l for l in err.splitlines() if l.startswith("metamori: checkpoint %d (" % ckpt3)]
                    expect(len(said) == 1 and said[0].startswith("metamori: checkpoint %d (tracked, " % ckpt3),
                           "the second checkpoint after the restart: %r" % said)
                expect(out == ref_out, "output %r, uninterrupted %r" % (out, ref_out))
                expect(files(tree) == files(ref), "files differ from the uninterrupted run (kill after %d)" % die)
                if again:
                    # the second pair holds the files of step `again`
                    snap = T.tempdir("mtm-dmtcp-snap-")
                    T.restore(tree, ckpt2, to=snap)
                    with open(os.path.join(snap, "state.txt")) as f:
                        expect(f.read() == "%d\n" % again, "checkpoint %d holds step %d" % (ckpt2, again))
                    T.rmtree(snap)
                print("  checkpoint at %d, kill at %d: paired in %.2f s, restart identical" % (at, die, took))
            finally:
                reap()
                T.rmtree(tree)
                T.rmtree(ctl)
    finally:
        T.rmtree(ref)


def test_ten_paired_checkpoints_of_a_pwrite_loop():
    """Each of 10 consecutive paired checkpoints of a tight pwrite loop under 5 s."""
    tree, ctl = T.tempdir("mtm-dmtcp-"), T.tempdir("mtm-dmtcp-ctl-")
    p = None
    try:
        T.init(tree)
        p = popen([T.METAMORI, "-C", tree, "run", "-q", "--dmtcp", "--", PWLOOP, tree, ctl],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
        wait_for(os.path.join(ctl, "ready"), p, "pwloop")
        times, ids = [], []
        for _ in range(10):
            t0 = time.time()
            c = subprocess.run([T.METAMORI, "-C", tree, "checkpoint", "-q"], capture_output=True, text=True,
                               env=env(), timeout=60)
            times.append(time.time() - t0)
            expect(c.returncode == 0, "paired checkpoint %d failed: %s" % (len(ids) + 1, c.stderr))
            ids.append(int(c.stdout))
            expect(times[-1] < 5, "paired checkpoint %d took %.1f s" % (len(ids), times[-1]))
        expect(ids == sorted(set(ids)), "ten new checkpoints: %r" % ids)
        t = tags(tree)
        expect(all(t.get("dmtcp-%d" % i) == i for i in ids), "each tagged: %r" % t)
        # DMTCP's own command pairs too (the plugin makes the file checkpoint)
        port = open(os.path.join(tree, ".metamori", "session", "dmtcp.port")).read().strip()
        c = subprocess.run([os.path.join(DBIN, "dmtcp_command"), "--coord-port", port, "--bcheckpoint"],
                           capture_output=True, text=True, timeout=60)
        expect(c.returncode == 0, "dmtcp_command: %s" % c.stderr)
        deadline = time.time() + 30
        while ("dmtcp-%d" % (ids[-1] + 1)) not in tags(tree):
            last = os.path.join(tree, ".metamori", "dmtcp", "last")
            expect(time.time() < deadline, "dmtcp_command's checkpoint not paired: %r (last: %r)"
                   % (tags(tree), open(last).read() if os.path.exists(last) else None))
            time.sleep(0.1)
        expect(len(images(tree, ids[-1] + 1)) == 1, "its image")
        open(os.path.join(ctl, "stop"), "w").close()
        out, err = p.communicate(timeout=60)
        expect(p.returncode == 0, "pwloop under the session: %d %s" % (p.returncode, err))
        print("  10 paired checkpoints: %s s (load %s)" % (" ".join("%.2f" % x for x in times),
                                                             open("/proc/loadavg").read().split()[0]))
    finally:
        if p and p.poll() is None:
            open(os.path.join(ctl, "stop"), "w").close()
            p.communicate(timeout=60)
        reap()
        T.rmtree(tree)
        T.rmtree(ctl)


def killed_after_pair(tree, ctl, at=5, die=8):
    """A paired checkpoint after step at; the program killed after step die. Returns the id."""
    T.init(tree)
    p = start(tree, ctl, [at], die)
    wait_for(os.path.join(ctl, "ready.%d" % at), p, "step %d" % at)
    ckpt, _ = paired(tree)
    open(os.path.join(ctl, "go.%d" % at), "w").close()
    p.communicate(timeout=120)
    expect(p.returncode == 137, "killed: %d" % p.returncode)
    return ckpt


def test_restart_onto_a_differing_tree_is_refused():
    """dmtcp_restart by hand over files that are not the image's checkpoint: refused, with the list."""
    tree, ctl = T.tempdir("mtm-dmtcp-"), T.tempdir("mtm-dmtcp-ctl-")
    try:
        ckpt = killed_after_pair(tree, ctl)
        r = subprocess.run([os.path.join(DBIN, "dmtcp_restart"), "--new-coordinator", "--coord-port", "0"]
                           + images(tree, ckpt), capture_output=True, text=True, timeout=120)
        expect(r.returncode == 75, "restart over step 8's files: exit %d, %s" % (r.returncode, r.stderr))
        # (DMTCP's own warnings come first)
        head = ("metamori: restart: %s: the tree differs from checkpoint %d, the image's "
                "(metamori restart %d restores it first):\n" % (os.path.realpath(tree), ckpt, ckpt))
        listed = T.run(["-C", tree, "diff", str(ckpt)]).stdout
        expect(T.changes(listed) == {("M", "data.bin"), ("M", "journal.txt"), ("M", "state.txt")},
               "the files of step 8: %r" % listed)
        expect(r.stderr.endswith(head + listed) and r.stderr.count("metamori: ") == 1, "message: %r" % r.stderr)
        # `metamori restart` restores first: the same image then runs to the end
        here = T.tempdir("mtm-dmtcp-cwd-")
        r = T.run(["-C", tree, "restart", "-q", str(ckpt)], env=env(), cwd=here)
        expect(r.stdout.startswith("steps %d " % STEPS), "restarted: %r" % r.stdout)
        expect(os.listdir(here) == [], "restart wrote where it was typed: %r" % os.listdir(here))
        T.rmtree(here)
    finally:
        reap()
        T.rmtree(tree)
        T.rmtree(ctl)


def test_failed_file_checkpoint_fails_the_pair():
    tree, ctl = T.tempdir("mtm-dmtcp-"), T.tempdir("mtm-dmtcp-ctl-")
    p = None
    try:
        T.init(tree)
        p = start(tree, ctl, [5], 8)
        wait_for(os.path.join(ctl, "ready.5"), p, "step 5")
        # the file checkpoint at DMTCP's barrier fails: another writer holds the store
        fd = os.open(os.path.join(tree, ".metamori", "lock"), os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            c = subprocess.run([T.METAMORI, "-C", tree, "checkpoint", "-q"], capture_output=True, text=True,
                               env=env(), timeout=120)
        finally:
            os.close(fd)
        expect(c.returncode == 1, "checkpoint of a failed pair: exit %d (%s)" % (c.returncode, c.stderr))
        prefix = ("metamori: checkpoint: %s: the file checkpoint at DMTCP's barrier failed, so the pair did "
                  "(its image will not restart): " % os.path.realpath(tree))
        expect(c.stderr.startswith(prefix) and c.stderr.count("\n") == 1, "message: %r" % c.stderr)
        expect(not any(k.startswith("dmtcp-") for k in tags(tree)), "no paired checkpoint: %r" % tags(tree))
        open(os.path.join(ctl, "go.5"), "w").close()
        p.communicate(timeout=120)
        r = T.run(["-C", tree, "restart"], check=False, env=env())
        expect(r.returncode == 1 and r.stderr == "metamori: restart: no paired checkpoint (make one with "
               "'metamori checkpoint' under 'metamori run --dmtcp')\n", "restart: %d %r" % (r.returncode, r.stderr))
    finally:
        reap()
        T.rmtree(tree)
        T.rmtree(ctl)


def test_dmtcp_alone_disagrees():
    """What the pairing fixes: DMTCP alone restarts memory at step 10 over files of step 13."""
    ref, ref_out = reference()
    tree, ctl, ck = T.tempdir("mtm-dmtcp-"), T.tempdir("mtm-dmtcp-ctl-"), T.tempdir("mtm-dmtcp-ck-")
    try:
        e = dict(os.environ, DMTPROG_CTL=ctl, DMTPROG_PAUSE="10", DMTPROG_DIE="13")
        portfile = os.path.join(ctl, "port")
        p = popen([os.path.join(DBIN, "dmtcp_launch"), "--new-coordinator", "--coord-port", "0",
                              "--port-file", portfile, "--ckptdir", ck, "--no-gzip", PROG, tree, str(STEPS)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
        wait_for(os.path.join(ctl, "ready.10"), p, "step 10")
        c = subprocess.run([os.path.join(DBIN, "dmtcp_command"), "--coord-port", open(portfile).read().strip(),
                            "--bcheckpoint"], capture_output=True, text=True, timeout=120)
        expect(c.returncode == 0, "dmtcp_command: %s" % c.stderr)
        open(os.path.join(ctl, "go.10"), "w").close()
        p.communicate(timeout=120)
        imgs = [os.path.join(r, f) for r, _, fs in os.walk(ck) for f in fs if f.endswith(".dmtcp")]
        expect(len(imgs) == 1, "images: %r" % imgs)
        r = subprocess.run([os.path.join(DBIN, "dmtcp_restart"), "--new-coordinator", "--coord-port", "0", imgs[0]],
                           capture_output=True, text=True, timeout=120)
        expect(r.returncode == 0, "restart failed: %s" % r.stderr)
        expect(files(tree)["journal.txt"] != files(ref)["journal.txt"],
               "DMTCP alone was expected to leave the journal of the later steps in place")
    finally:
        reap()
        for d in (ref, tree, ctl, ck):
            T.rmtree(d)


if __name__ == "__main__":
    if not (DBIN and os.access(os.path.join(DBIN, "dmtcp_launch"), os.X_OK) and os.path.exists(PLUGIN)):
        print("skip: DMTCP is not installed (make dmtcp)")
        sys.exit(77)
    T.main([test_restart_at_kill_points, test_ten_paired_checkpoints_of_a_pwrite_loop,
            test_restart_onto_a_differing_tree_is_refused, test_failed_file_checkpoint_fails_the_pair,
            test_dmtcp_alone_disagrees])
