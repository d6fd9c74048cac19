#!/usr/bin/env python3
"""libmetamori_mpi and `metamori run` under mpirun (issue 19), with Open MPI
on this machine: 4 ranks, two simulated nodes = two trees (ranks 0-1 share
tree A, ranks 2-3 tree B; mpi_job.c).

- `mpirun -np 4 metamori run -- job`: one session per tree, every epoch a
  tracked checkpoint (before: 3 of 4 ranks failed to start);
- a job killed with SIGKILL at a random step and recovered ends
  bit-identical to an uninterrupted run, and after the kill every committed
  epoch of every tree holds all its ranks at that epoch's step;
- a failed group (METAMORI_MPI_FAIL_GROUP) leaves no store with the epoch
  committed, and every rank reports the same error;
- a lost local store is recovered from the mirror (METAMORI_MPI_MIRROR).
Exits 77 (skipped) when mpirun or the job is missing."""
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import mtmtest as T

BUILD = os.path.dirname(os.path.abspath(T.METAMORI))
JOB = os.path.join(BUILD, "tests", "mpi", "mpi_job")
PRELOAD = os.path.join(BUILD, "libmetamori-preload.so")
MPIRUN = shutil.which("mpirun")
STEPS = 6
TORTURE = os.environ.get("METAMORI_TORTURE", "") not in ("", "0")
ENV = dict(os.environ, OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_btl="self,vader",
           OMPI_MCA_btl_vader_single_copy_mechanism="none", METAMORI_PRELOAD=PRELOAD,
           ASAN_OPTIONS=":".join(filter(None, [os.environ.get("ASAN_OPTIONS"), "detect_leaks=0",
                                               "verify_asan_link_order=0"])))


def job_argv(args, wrap_run):
    """The job's command line; wrap_run: each rank as `metamori -C TREE run
    -- JOB args` (ranks 0-1 on tree A, 2-3 on tree B), the sessions' lines
    appended to TREE.err beside the tree (the session that a tree's first
    rank starts reports each checkpoint it makes there)."""
    if not wrap_run:
        return [JOB] + list(args)
    script = ('case "$OMPI_COMM_WORLD_RANK" in 0|1) t=%s;; *) t=%s;; esac; '
              'exec "%s" -C "$t" run -- "$@" 2>>"$t.err"' % (args[0], args[1], T.METAMORI))
    return ["sh", "-c", script, "sh", JOB] + list(args)


def session_reports(tree):
    """{checkpoint id: how the session made it ("tracked", "scanned: ...")}
    from the lines of tree's session (job_argv with wrap_run)."""
    out = {}
    with open(tree + ".err") as f:
        for line in f:
            m = re.match(r"metamori: checkpoint (\d+) \(([^,)]*)", line)
            if m:
                out[int(m.group(1))] = m.group(2)
    return out


def mpirun(args, env=None, check=True, wrap_run=False, timeout=120, **kw):
    """mpirun -np 4 JOB args; wrap_run: each rank as `metamori -C TREE run -q -- JOB args`."""
    cmd = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", "4"] + job_argv(args, wrap_run)
    e = dict(ENV)
    e.update(env or {})
    p = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=timeout, **kw)
    if check and p.returncode:
        raise T.Failure("mpirun failed (%d):\n%s%s" % (p.returncode, p.stdout, p.stderr[-3000:]))
    return p


def new_trees():
    base = T.tempdir("mtm-mpi-")
    trees = [os.path.join(base, "nodeA"), os.path.join(base, "nodeB")]
    for t in trees:
        os.mkdir(t)
    return base, trees


def result(trees):
    """The job's files in both trees (not the stores)."""
    return [T.manifest(t, mtimes=False) for t in trees]


def epochs(tree):
    """{epoch: checkpoint id} of the tree's committed epochs ({} when the
    tree has no store: a job killed before its first epoch's commit)."""
    p = subprocess.run([T.METAMORI, "-C", tree, "tag"], capture_output=True, text=True)
    if p.returncode:
        if re.search(r"no metamori store here|the store's creation did not finish", p.stderr):
            return {}
        raise T.Failure("metamori -C %s tag failed (%d): %s" % (tree, p.returncode, p.stderr))
    out = {}
    for line in p.stdout.splitlines():
        m = re.match(r"\s*mpi-e(\d+)\s+(\d+)", line)
        if m:
            out[int(m.group(1))] = int(m.group(2))
    return out


def ranks_steps(tree, cid):
    """The step each rank's files hold at checkpoint cid of tree."""
    to = os.path.join(T.tempdir(), "out")
    T.restore(tree, cid, to=to)
    steps = {}
    for d in sorted(os.listdir(to)):
        with open(os.path.join(to, d, "step")) as f:
            steps[d] = int(f.read())
    T.rmtree(os.path.dirname(to))
    return steps


_reference = {}


def reference():
    """The files of an uninterrupted run (no checkpoints at all)."""
    if "files" not in _reference:
        base, trees = new_trees()
        mpirun(trees + [str(STEPS), "--no-checkpoint"])
        _reference["files"] = result(trees)
        T.rmtree(base)
    return _reference["files"]


def descendants(pid):
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def kill_job_at(trees, args, step, wrap_run=False):
    """Starts the job and SIGKILLs mpirun and every process under it once
    rank 0 has done `step` steps (plus a random few ms)."""
    cmd_env = dict(ENV)
    cmd = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", "4"] + job_argv(args, wrap_run)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cmd_env)
    stepfile = os.path.join(trees[0], "r0", "step")
    end = time.time() + 60
    while time.time() < end and p.poll() is None:
        try:
            with open(stepfile) as f:
                if int(f.read() or 0) >= step:
                    break
        except (OSError, ValueError):
            pass
        time.sleep(0.005)
    time.sleep(random.random() * 0.05)
    if p.poll() is not None:
        raise T.Failure("the job ended before the kill (%d): %s" % (p.returncode, p.stderr.read()[-2000:]))
    procs = descendants(p.pid)
    for q in procs:
        try:
            os.kill(q, signal.SIGSTOP)  # none moves on while the others die
        except ProcessLookupError:
            pass
    for q in procs:
        try:
            os.kill(q, signal.SIGKILL)
        except ProcessLookupError:
            pass
    p.wait()
    p.stdout.close()
    p.stderr.close()


def check_committed_epochs(trees, when="", fresh=True):
    """Every committed epoch of every tree holds all its ranks at one step,
    and an epoch committed in both trees holds the same step in both; the
    newest epoch is in both trees (or one behind: a kill during the commit).
    fresh (a run that was never recovered): each epoch's step is its number.
    After a recovery it need not be: the epoch a kill left committed in one
    tree only keeps its number, and the next epoch is numbered past it."""
    newest, held = [], []
    for t in trees:
        e = epochs(t)
        at = {}
        for epoch, cid in e.items():
            steps = ranks_steps(t, cid)
            if len(set(steps.values())) != 1 or (fresh and set(steps.values()) != {epoch}):
                raise T.Failure("%s%s: epoch %d (checkpoint %d) holds ranks at steps %s; epochs %s"
                                % (when, t, epoch, cid, steps, sorted(e.items())))
            at[epoch] = set(steps.values()).pop()
        held.append(at)
        newest.append(max(e) if e else 0)
    for epoch in set(held[0]) & set(held[1]):
        if held[0][epoch] != held[1][epoch]:
            raise T.Failure("%sepoch %d holds step %d in tree A, %d in tree B"
                            % (when, epoch, held[0][epoch], held[1][epoch]))
    if abs(newest[0] - newest[1]) > 1:
        raise T.Failure("%snewest epochs of the trees: %s" % (when, newest))
    return min(newest)


def test_mpirun_metamori_run_one_session_per_tree():
    base, trees = new_trees()
    for t in trees:
        T.init(t)
    p = mpirun(trees + [str(STEPS)], wrap_run=True)
    if "epoch %d" % STEPS not in p.stdout:
        raise T.Failure("no epoch %d: %r" % (STEPS, p.stdout))
    if result(trees) != reference():
        raise T.Failure("the tracked run's files differ from the reference run's")
    for t in trees:
        e = epochs(t)
        if sorted(e) != list(range(1, STEPS + 1)):
            raise T.Failure("%s: committed epochs %s" % (t, sorted(e)))
        # every epoch was made by the tree's session (the store keeps no
        # trace of how: `log --json` says "tracked": false of any
        # checkpoint); the first scans, for the tree changed before the
        # session's first checkpoint, the others are tracked
        how = session_reports(t)
        made = [how.get(cid) for _, cid in sorted(e.items())]
        if made[1:] != ["tracked"] * (STEPS - 1) or made[0] is None:
            raise T.Failure("%s: the session made the epochs %s: %s" % (t, made, how))
    check_committed_epochs(trees)
    T.rmtree(base)


def test_killed_and_recovered_is_bit_identical():
    seed = int(os.environ.get("METAMORI_MPI_SEED") or random.randrange(1 << 30))
    rnd = random.Random(seed)
    print("  seed %d (METAMORI_MPI_SEED)" % seed)
    # make test: two kills (one in the ASan build); METAMORI_TORTURE=1: twelve
    for trial in range(12 if TORTURE else 1 if os.environ.get("MTM_SANITIZED") else 2):
        base, trees = new_trees()
        wrap = trial % 2 == 0  # under `metamori run` (tracked epochs), or scanned
        if wrap:
            for t in trees:
                T.init(t)
        k = rnd.randint(1, STEPS - 2)
        kill_job_at(trees, [trees[0], trees[1], str(STEPS), "--sleep", "20"], k, wrap_run=wrap)
        when = "seed %d, trial %d, after the kill at step %d: " % (seed, trial, k)
        e = check_committed_epochs(trees, when)
        if e < k - 1:
            raise T.Failure("seed %d: killed after step %d, newest common epoch %d" % (seed, k, e))
        p = mpirun(trees + [str(STEPS), "--recover"])
        m = re.search(r"^recovered (\d+)$", p.stdout, re.M)
        if not m or int(m.group(1)) != e:
            raise T.Failure("seed %d: recovered %r, wanted epoch %d" % (seed, p.stdout, e))
        if result(trees) != reference():
            raise T.Failure("seed %d, trial %d (killed at step %d, epoch %d): the recovered run's files differ"
                            % (seed, trial, k, e))
        check_committed_epochs(trees, "seed %d, trial %d, after the recovery from epoch %d: " % (seed, trial, e),
                               fresh=False)
        print("  trial %d: killed after step %d, recovered epoch %d, %s" % (trial, k, e,
                                                                            "tracked" if wrap else "scanned"))
        T.rmtree(base)


def test_failed_group_commits_nothing():
    base, trees = new_trees()
    mpirun(trees + ["2"])
    before = [epochs(t) for t in trees]
    p = mpirun(trees + ["3", "--recover"], env={"METAMORI_MPI_FAIL_GROUP": "2"}, check=False)
    if p.returncode == 0:
        raise T.Failure("a failed group's job succeeded: %s" % p.stdout)
    lines = sorted(l for l in p.stdout.splitlines() if "checkpoint failed" in l)
    want = ["rank %d: checkpoint failed (epoch 3): -30912: mpi: checkpoint of %s: injected failure "
            "(METAMORI_MPI_FAIL_GROUP=2)" % (r, os.path.realpath(trees[1])) for r in range(4)]
    if lines != want:
        raise T.Failure("errors:\n%s\nwanted:\n%s" % ("\n".join(lines), "\n".join(want)))
    after = [epochs(t) for t in trees]
    if after != before or any(3 in e for e in after):
        raise T.Failure("epochs after a failed group: %s (before %s)" % (after, before))
    # tree A's leader did checkpoint: that checkpoint exists, untagged
    if len(T.log_json(trees[0])) != 3:
        raise T.Failure("tree A's phase-1 checkpoint is missing: %s" % T.log_json(trees[0]))
    # and the job recovers from epoch 2, ending as the reference
    p = mpirun(trees + [str(STEPS), "--recover"])
    if "recovered 2" not in p.stdout or result(trees) != reference():
        raise T.Failure("recovery after the failed epoch: %r" % p.stdout)
    T.rmtree(base)


def test_lost_store_recovered_from_the_mirror():
    base, trees = new_trees()
    mirror = os.path.join(base, "pfs")
    os.mkdir(mirror)
    env = {"METAMORI_MPI_MIRROR": mirror}
    mpirun(trees + ["3"], env=env)
    for leader in (0, 2):
        if not os.path.exists(os.path.join(mirror, "rank%d" % leader, ".metamori", "index.db")):
            raise T.Failure("no mirror for the group of rank %d: %s" % (leader, os.listdir(mirror)))
    # node B is replaced: its store and its files are gone
    shutil.rmtree(trees[1])
    os.mkdir(trees[1])
    p = mpirun(trees + [str(STEPS), "--recover"], env=env)
    if "recovered 3" not in p.stdout:
        raise T.Failure("recovery from the mirror: %r" % p.stdout)
    if result(trees) != reference():
        raise T.Failure("the run recovered from the mirror differs")
    T.run(["-C", trees[1], "verify", "--data"])
    T.rmtree(base)


if __name__ == "__main__":
    if not MPIRUN or not os.path.exists(JOB):
        print("skip: no mpirun or no %s" % JOB)
        sys.exit(77)
    T.main([test_mpirun_metamori_run_one_session_per_tree, test_killed_and_recovered_is_bit_identical,
            test_failed_group_commits_nothing, test_lost_store_recovered_from_the_mirror])
