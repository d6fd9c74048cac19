#!/usr/bin/env python3
"""bench_pg.py: PostgreSQL under `metamori run --every N` against PostgreSQL
alone (issue 21), alternated in one run, and every checkpoint checked.

One pgbench database is made once (initdb + `pgbench -i -s SCALE`, a
CHECKPOINT, the server stopped): the template. Every run starts from a fresh
copy of it, synced (so each starts from the same bytes, clean in the page
cache, whatever the runs before it did: no history table grown, no bloat, no
autovacuum or PostgreSQL checkpoint owed), and runs `pgbench -c CLIENTS -j 2
-T SECONDS -n --random-seed=SEED+ROUND` against postgres
  alone:  started by pg_ctl;
  every:  in a tree with a store (`metamori init`, a first checkpoint), under
          `metamori -C TREE run --every N -- postgres ...`;
  run:    the same with no periodic checkpoint (what the interposer and the
          watcher alone cost; --arms alone,every,run).
  fan:    as every, but the session may use fanotify (it has CAP_SYS_ADMIN:
          the writer's pid), postgres started under it through `setpriv` with
          every capability dropped; its log is trusted while syscall user
          dispatch is on in it (docs/TRACKING.md);
  fanscan: fan with dispatch off (METAMORI_DISPATCH unset): postgres's code
          is looked at for system call instructions, as before.
The session of every and run uses inotify (METAMORI_WATCH=inotify), as an
unprivileged session does. With fan or fanscan, the script runs as the user
with CAP_SYS_ADMIN and CAP_DAC_READ_SEARCH (fanotify, open_by_handle_at) as
ambient capabilities (setpriv, in place of runuser),
so postgres alone and the other arms run with it too (postgres never uses
it).
The arms' order turns each round and reverses every other cycle (ABBA), so
none always runs first. Reported per round: transactions per second of each
run and the ratio to alone in the same round, the CPU per transaction
(postgres's, read from the postmaster with its reaped backends, plus the
session's), how busy the machine was, the load; then the median and the
spread of the ratios, the CPU the rest of the machine took during each run
(others' CPU: a disturbed run shows there), and the pause of each checkpoint
as the session reports it (`paused X ms`, with METAMORI_DEBUG_SESSION's breakdown).
The pause's p50 and p99 count the checkpoints logged by the end of pgbench's
run; those logged after (made while postgres shut down, "(stop)", or once it
had exited, "(exit)") are listed but not counted (P21: with --every 1 a
periodic one often fell into the shutdown checkpoint's second of writing).

What the rounds can resolve (P19): the rounds' ratios (arm / alone, each
round a pair run back to back) are given as their geometric mean with a
95% interval (Student's t over the log ratios), and the goal is met only
when the whole interval is at or under 3% fewer, missed when all of it is
above, else not resolved. Beside it, read from counters inside each run: the
session's share of its runs' CPU (session / (postgres + pgbench + session),
the same seconds on the same machine, so no pair is needed), and postgres's
own CPU per transaction against alone's (what the session costs inside
postgres: that needs the pairs). To narrow what moves between the arms:
--warmup S runs pgbench for S seconds on the same server (and session) before
the counted window, in every arm (shared buffers filled, the first
full-page images after the template's CHECKPOINT written, the session's
first periodic checkpoint made); autovacuum is off and PostgreSQL's own
checkpoints are pushed out of every run (PINNED; --pg-defaults leaves them);
each run's steal time and the machine's major faults are shown; and the arm
`again` runs postgres alone a second time (A/A: what the benchmark itself
cannot tell apart). Short rounds, more of them (--seconds 15 --rounds 20),
put a pair's two runs closer together in time; the interval says what the
rounds resolved, whatever their length.

--side-by-side runs each arm at the same time as a run of postgres alone of
its own, each server with its pgbench (half the clients, one thread) and,
for the arm, its session on one CPU of its own (sched_setaffinity), the
CPUs swapped each round. Runs one after the other each meet whatever the
host does then (P26: postgres alone's CPU per transaction moved 683-919 us
between rounds, so the A/A arm's interval spanned 23 points over 6 rounds);
side by side, both runs of a pair meet it in the same seconds. What they
do not share equally is the one disk (the session's checkpoint writes slow
the other server's fsyncs a little, which can only understate what the
session costs) and what else runs on either CPU. The same checks follow.

When the round's runs are done (so that they follow each other, under the
same conditions of the shared machine; the checks take longer than the
runs), every checkpoint of each tree run under `metamori run` is restored
(`restore ID --to`), started as a PostgreSQL server (crash recovery from the
image), and checked: `pg_amcheck --heapallindexed` over every relation, and
pgbench's invariant sum(abalance) = sum(bbalance) = sum(tbalance) = sum(delta
of history). (The first checkpoint, the template's, is checked once.)

PostgreSQL refuses to run as root: run as root, the script hands the work
directory to an unprivileged user (--user, default postgres) and runs
itself again as that user (runuser).

usage: bench_pg.py --metamori build/metamori [--rounds 12] [--seconds 20] [--warmup 5] [--every 5]
                   [--arms alone,every[,run|base|fan|fanscan|again]] [--pg-defaults] [--side-by-side]
                   [--scale 10] [--clients 6] [--seed 1] [--user postgres] [--work DIR] [--keep] [--json FILE]
"""
import argparse
import glob
import json
import math
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402


def pg_bin():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        return None
    return os.path.dirname(found[-1])


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Pg:
    """One PostgreSQL data directory, reached through a unix socket in sock."""

    def __init__(self, bindir, data, sock, port):
        self.bin, self.data, self.sock, self.port = bindir, data, sock, port

    def tool(self, name):
        return os.path.join(self.bin, name)

    def opts(self):
        return ["-k", self.sock, "-p", str(self.port), "-c", "listen_addresses="]

    def initdb(self):
        subprocess.run([self.tool("initdb"), "-D", self.data, "-A", "trust", "-U", "bench", "--no-sync"],
                       check=True, capture_output=True)

    def start(self):
        os.makedirs(self.sock, exist_ok=True)
        subprocess.run([self.tool("pg_ctl"), "start", "-w", "-t", "120", "-D", self.data, "-l",
                        self.data + ".log", "-o", " ".join(self.opts())], check=True, capture_output=True)

    def stop(self):
        subprocess.run([self.tool("pg_ctl"), "stop", "-w", "-t", "120", "-m", "fast", "-D", self.data],
                       check=True, capture_output=True)

    def wait_ready(self, timeout=120):
        t0 = time.time()
        while time.time() - t0 < timeout:
            p = subprocess.run([self.tool("pg_isready"), "-h", self.sock, "-p", str(self.port), "-d", "postgres",
                                "-U", "bench"], capture_output=True)
            if p.returncode == 0:
                return
            time.sleep(0.2)
        raise SystemExit("bench: postgres did not start (%s)" % self.data)

    def psql(self, sql, db="postgres"):
        p = subprocess.run([self.tool("psql"), "-h", self.sock, "-p", str(self.port), "-U", "bench", "-d", db,
                            "-At", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True, capture_output=True, text=True)
        return p.stdout.strip()

    def pgbench(self, *args):
        p = subprocess.run([self.tool("pgbench"), "-h", self.sock, "-p", str(self.port), "-U", "bench"] +
                           list(args) + ["bench"], capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemExit("bench: pgbench failed:\n" + p.stdout + p.stderr)
        return p.stdout


def tps(out):
    m = re.search(r"tps = ([0-9.]+) \((?:without initial connection time|excluding connections establishing)\)", out)
    if not m:
        m = re.search(r"tps = ([0-9.]+)", out)
    return float(m.group(1))


def percentile(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    k = min(len(xs) - 1, max(0, int(round(q / 100 * (len(xs) - 1)))))
    return xs[k]


def as_user(a):
    """Root: hand the work directory to the user and run again as them."""
    try:
        pw = pwd.getpwnam(a.user)
    except KeyError:
        raise SystemExit(f"bench: no user {a.user} to run postgres as (--user)")
    work = os.path.abspath(a.work)
    B.rmtree(work)
    os.makedirs(work)
    os.chown(work, pw.pw_uid, pw.pw_gid)
    if a.json:  # (written by the user at the end: made theirs now, where root may write)
        j = os.path.abspath(a.json)
        open(j, "w").close()
        os.chown(j, pw.pw_uid, pw.pw_gid)
        sys.argv += ["--json", j]
    py = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable  # (root's may be private)
    argv = [py, os.path.abspath(__file__)] + sys.argv[1:]
    argv += ["--work", work, "--as-user"]
    env = {k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "TERM")}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    env["HOME"] = work
    pre = ["runuser", "-u", a.user, "--"]
    if {"fan", "fanscan"} & set(a.arms.split(",")):  # a session that may use fanotify, as the user
        pre = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups",
               "--inh-caps=+sys_admin,+dac_read_search", "--ambient-caps=+sys_admin,+dac_read_search"]
    os.execvp(pre[0], pre + ["env"] + [f"{k}={v}" for k, v in env.items()] + argv)


def session_lines(text):
    """The session's per-checkpoint lines: [(id, kind, pause ms)], and the debug breakdowns."""
    ck = [(int(m.group(1)), m.group(2), float(m.group(3)))
          for m in re.finditer(r"checkpoint (\d+) \((tracked|scanned)[^,]*, paused ([0-9.]+) ms\)", text)]
    dbg = [m.group(0) for m in re.finditer(r"session: (?:tracked|scanned)[^\n]*begin [^\n]*", text)]
    return ck, dbg


def cpu_times():
    """(busy, total, steal) jiffies of the whole machine (/proc/stat): how idle
    it was during a run, and how long the host ran something else on its vCPUs
    (steal: time the guest wanted a CPU and did not get one)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]  # idle + iowait
    return sum(v) - idle, sum(v), v[7] if len(v) > 7 else 0


def majflt():
    """The machine's major page faults so far (/proc/vmstat): pages read back
    from disk as they are touched, as after this VM's DAMON paged out page
    cache left idle (kdamond, action pageout) or reclaim."""
    try:
        with open("/proc/vmstat") as f:
            for line in f:
                if line.startswith("pgmajfault "):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_cpu(pid, children=False):
    """CPU seconds (user + system, every thread) of one live process; with
    children, those of its children it has waited for too."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            v = f.read().rsplit(")", 1)[1].split()
        n = int(v[11]) + int(v[12]) + (int(v[13]) + int(v[14]) if children else 0)
        return n / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None


def postmaster_cpu(pg):
    """The server's CPU so far: the postmaster and every backend it has reaped
    (pgbench's connections have ended when this is read after a run)."""
    try:
        with open(os.path.join(pg.data, "postmaster.pid")) as f:
            pid = int(f.readline())
    except (OSError, ValueError):
        return None
    return proc_cpu(pid, children=True)


def bench_cpu(pg, out, bench_args, sess=None, cpu=None, go=None):
    """pgbench's run, with the CPU each side used meanwhile (go: a barrier
    passed just before pgbench starts, by both arms of a pair)."""
    if go:
        go.wait()
    cpu0, busy0, pg0, mf0 = proc_cpu(sess.pid) if sess else 0, cpu_times(), postmaster_cpu(pg), majflt()
    text, bench_s = pgbench_cpu(pg, bench_args, cpu)
    out["tps"] = tps(text)
    time.sleep(0.5)  # (the backends exit and are reaped)
    cpu1, busy1, pg1 = proc_cpu(sess.pid) if sess else 0, cpu_times(), postmaster_cpu(pg)
    out["busy"] = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
    out["steal_s"] = (busy1[2] - busy0[2]) / os.sysconf("SC_CLK_TCK")
    out["majflt"] = majflt() - mf0
    # the CPU the rest of the machine took meanwhile (other users of the
    # shared CPUs): a run it disturbed shows here, whichever arm it was
    own = bench_s
    own += (pg1 - pg0 if pg0 is not None and pg1 is not None else 0) + (cpu1 - cpu0 if sess and cpu0 is not None and cpu1 is not None else 0)
    out["own_cpu_s"] = own
    out["others_cpu_s"] = max(0.0, (busy1[0] - busy0[0]) / os.sysconf("SC_CLK_TCK") - own)
    out["pgbench_cpu_s"] = bench_s
    out["postgres_cpu_s"] = pg1 - pg0 if pg0 is not None and pg1 is not None else None
    if sess:
        out["session_cpu_s"] = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None


def sync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.syncfs(fd) if hasattr(os, "syncfs") else subprocess.run(["sync", "-f", path], check=True)
    finally:
        os.close(fd)


# What PostgreSQL itself does on a timer or a threshold, pinned so that it
# happens in no run, or the same in every run (bench_pg's rounds, P19):
# autovacuum wakes per autovacuum_naptime (1 min) from the server's start and
# vacuums pgbench_branches and pgbench_tellers (10 and 100 rows, updated by
# every transaction) when it looks: in a run or not, by chance; a PostgreSQL
# checkpoint starts once ~max_wal_size / (1 + checkpoint_completion_target)
# of WAL was written (~530 MiB at the default 1 GB: a 30 s run writes
# 200-500 MiB, full-page images after the template's CHECKPOINT) or after
# checkpoint_timeout. Neither is what the arms differ by. --pg-defaults
# leaves them as PostgreSQL has them.
PINNED = "autovacuum = off\nmax_wal_size = 16GB\ncheckpoint_timeout = 1d\n"

ARMS = {"alone": "postgres alone",
        "again": "postgres alone again (A/A: the benchmark's own noise)", "every": "under `metamori run --every N`",
        "fan": "under `metamori run --every N` with fanotify (syscall user dispatch on)",
        "fanscan": "under `metamori run --every N` with fanotify, dispatch off (the code looked at)",
        "run": "under `metamori run` with no periodic checkpoint (the interposer and watcher only)",
        "base": "under `metamori run --every N` of --base-metamori (another build, for comparison)"}


def check_checkpoints(mtm, bindir, sock, work, tree, skip=()):
    """Every checkpoint of tree restored, started as a server and checked."""
    checked = []
    for ck in [e["id"] for e in B.mtm_log(mtm, tree)]:
        if ck in skip:
            continue
        to = os.path.join(work, f"r{ck}")
        B.mtm(mtm, "-C", tree, "restore", str(ck), "--to", to)
        pr = Pg(bindir, os.path.join(to, "data"), sock, free_port())
        pid = os.path.join(pr.data, "postmaster.pid")
        if os.path.exists(pid):
            os.remove(pid)  # the image's server is gone; this copy is a new one
        pr.start()
        try:
            amc = subprocess.run([pr.tool("pg_amcheck"), "-h", sock, "-p", str(pr.port), "-U", "bench", "-d", "bench",
                                  "--install-missing", "--heapallindexed"], capture_output=True, text=True)
            sums = pr.psql("SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(bbalance) FROM "
                           "pgbench_branches), (SELECT sum(tbalance) FROM pgbench_tellers), "
                           "(SELECT coalesce(sum(delta), 0) FROM pgbench_history)", db="bench")
            n = pr.psql("SELECT count(*) FROM pgbench_history", db="bench")
        finally:
            pr.stop()
        vals = sums.split("|")
        ok = amc.returncode == 0 and len(set(vals)) == 1
        checked.append({"tree": os.path.basename(tree), "id": ck, "amcheck_rc": amc.returncode, "sums": vals,
                        "history_rows": int(n), "ok": ok})
        if not ok:
            sys.exit(f"bench: {tree}: checkpoint {ck}: pg_amcheck rc {amc.returncode} ({amc.stdout[-2000:]}"
                     f"{amc.stderr[-2000:]}), balances {vals}")
        B.rmtree(to)
        B.log(f"bench: {os.path.basename(tree)} checkpoint {ck}: pg_amcheck clean, balances equal ({vals[0]}), "
              f"{n} history rows")
    return checked


def pinned(cpu):
    """A preexec_fn that puts the child on one CPU (None: anywhere)."""
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def pgbench_cpu(pg, args, cpu=None):
    """pgbench's output and its own CPU seconds, from its rusage (reaped
    here with wait4: side by side two run at once, so this script's children
    times would hold both)."""
    with tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen([pg.tool("pgbench"), "-h", pg.sock, "-p", str(pg.port), "-U", "bench"] + list(args)
                             + ["bench"], stdout=subprocess.PIPE, stderr=err, text=True, preexec_fn=pinned(cpu))
        out = p.stdout.read()
        p.stdout.close()
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            err.seek(0)
            raise SystemExit("bench: pgbench failed:\n" + out + err.read())
    return out, ru.ru_utime + ru.ru_stime


class Arm:
    """One arm's run on a fresh copy of the initialized database: postgres
    alone, or under `metamori run` (kind "every": --every N; "run": no
    periodic checkpoint). The copy is synced first, so each run starts from
    the same bytes, clean in the page cache. start, warm, measure, finish:
    one after the other for a run alone (one_run), or two arms' steps at
    once, each on its own CPU, side by side (pair_run)."""

    def __init__(self, a, bindir, sock, work, template, kind, r, cpu=None, clients=None, jobs=2, name=None):
        self.a, self.bindir, self.work, self.kind, self.r, self.cpu = a, bindir, work, kind, r, cpu
        self.tree = os.path.join(work, f"{name or kind}{r}")
        shutil.copytree(template, self.tree, symlinks=True)
        self.pg = Pg(bindir, os.path.join(self.tree, "data"), sock, free_port())
        self.out = out = {"kind": kind}
        if cpu is not None:
            out["cpu"] = cpu
        self.mtm = a.base_metamori if kind == "base" else a.metamori
        self.alone = kind in ("alone", "again")
        if not self.alone:
            B.mtm(self.mtm, "init", self.tree)
            with open(os.path.join(self.tree, ".metamoriignore"), "w") as f:
                f.write("data.log\n")
            t, _ = B.mtm(self.mtm, "-C", self.tree, "checkpoint", "-q", "-m", "initial")
            out["initial_ckpt_s"] = t
        sync_dir(self.tree)
        c = clients or a.clients
        self.bench_args = ["-c", str(c), "-j", str(jobs), "-T", str(a.seconds), "-n", f"--random-seed={a.seed + r}"]
        self.warm_args = ["-c", str(c), "-j", str(jobs), "-T", str(a.warmup), "-n",
                          f"--random-seed={a.seed + 1000 + r}"]

    def start(self):
        pg, out = self.pg, self.out
        out["load"] = B.loadavg()
        if self.alone:
            # started as the other arms start it: a child of this script, in its
            # session, so in the scheduler's autogroup pgbench runs in. pg_ctl
            # puts the postmaster in a session of its own, and with autogroup
            # scheduling (kernel.sched_autogroup_enabled) that alone changed how
            # the 2 CPUs were shared between postgres and pgbench: P7 had the
            # arms under `metamori run` 2-9% faster than postgres alone.
            self.errf = open(pg.data + ".log", "w")
            self.proc = subprocess.Popen([os.path.join(self.bindir, "postgres"), "-D", pg.data] + pg.opts(),
                                         cwd=self.tree, stdout=subprocess.DEVNULL, stderr=self.errf,
                                         preexec_fn=pinned(self.cpu))
            self.sess = None
        else:
            kind = self.kind
            fan = kind in ("fan", "fanscan")
            env = dict(os.environ, METAMORI_DEBUG_SESSION="phases", METAMORI_WATCH="fanotify" if fan else "inotify")
            env.pop("METAMORI_DISPATCH", None)
            if kind == "fan":
                env["METAMORI_DISPATCH"] = "1"
            self.errf = open(os.path.join(self.work, f"session-{kind}{self.r}.err"), "w+")
            every = ["--every", str(self.a.every)] if kind in ("every", "base", "fan", "fanscan") else []
            drop = ["setpriv", "--inh-caps=-all", "--ambient-caps=-all"] if fan else []
            # (side by side, the session is on its arm's CPU with postgres:
            # what it costs comes out of that arm's transactions only)
            self.sess = self.proc = subprocess.Popen(
                [self.mtm, "-C", self.tree, "run"] + every + ["--"] + drop
                + [os.path.join(self.bindir, "postgres"), "-D", pg.data] + pg.opts(), cwd=self.tree, env=env,
                stdout=subprocess.DEVNULL, stderr=self.errf, preexec_fn=pinned(self.cpu))
        pg.wait_ready()

    def warm(self):
        """pgbench for --warmup seconds on the same server (and session), not
        counted: the server's shared buffers filled, the first full-page
        images after the template's CHECKPOINT written, the session's first
        periodic checkpoint (it has no block hashes of its own yet) made in
        every arm's same place before the window counted."""
        if self.a.warmup > 0:
            self.out["warm_tps"] = tps(pgbench_cpu(self.pg, self.warm_args, self.cpu)[0])

    def measure(self, go=None):
        """pgbench's counted run, with the CPU each side used meanwhile
        (go: a barrier both arms side by side pass just before)."""
        bench_cpu(self.pg, self.out, self.bench_args, self.sess, self.cpu, go)

    def finish(self):
        pg, out, kind = self.pg, self.out, self.kind
        if self.alone:
            pg.stop()
            self.proc.wait(timeout=300)
            self.errf.close()
        else:
            errf = self.errf
            # the checkpoints logged from here on were made while postgres shut
            # down (its shutdown checkpoint writes every dirty buffer: ~100 MiB in
            # a second) or after it exited: no transaction waited on them
            # (read through a file of its own: errf's offset is the session's too)
            with open(errf.name) as f:
                before_stop = {int(m.group(1)) for m in re.finditer(r"checkpoint (\d+) \((?:tracked|scanned)", f.read())}
            pg.stop()
            rc = self.sess.wait(timeout=300)
            errf.seek(0)
            text = errf.read()
            errf.close()
            if rc != 0:
                sys.exit(f"bench: metamori run exited {rc}:\n{text[-3000:]}")
            ck, dbg = session_lines(text)
            # the checkpoint made once postgres has exited ('exit') pauses no one
            msgs = {e["id"]: e["message"] for e in B.mtm_log(self.mtm, self.tree)}
            out["checkpoints"] = [(i, k, p, "exit" if msgs.get(i) == "exit" else "" if i in before_stop else "stop")
                                  for i, k, p in ck]
            out["debug"] = dbg
        out["_tree"] = (self.mtm if not self.alone else None, self.tree)  # checked and removed when the round ends (check_run)
        a = self.a
        extra = ""
        if not self.alone:
            extra = (f", session CPU {out['session_cpu_s']:.2f} s, {len(out.get('checkpoints', []))} checkpoints, "
                     "pauses " + ", ".join(f"{p:.1f}" + (f" ({x})" if x else "") for _, _, p, x in out["checkpoints"])
                     + " ms")
        out["us_per_tx"] = ((out["postgres_cpu_s"] or 0) + (out.get("session_cpu_s") or 0)) / (out["tps"] * a.seconds) * 1e6
        # with pgbench's: on a machine the run keeps busy (CPUs 91-99% in P16),
        # transactions per second go as 1 / this
        out["all_us_per_tx"] = out["us_per_tx"] + out["pgbench_cpu_s"] / (out["tps"] * a.seconds) * 1e6
        B.log(f"bench: round {self.r} {kind}" + (f" (CPU {self.cpu})" if self.cpu is not None else "")
              + f": {out['tps']:.0f} tps, CPUs busy {out['busy'] * 100:.0f}%, "
              f"load {out['load']}, postgres CPU {out['postgres_cpu_s']:.1f} s, pgbench CPU {out['pgbench_cpu_s']:.1f} s, "
              f"CPU per transaction (postgres + session) {out['us_per_tx']:.0f} us, steal {out['steal_s']:.1f} s, "
              f"{out['majflt']} major faults"
              + (f", warm-up {out['warm_tps']:.0f} tps" if "warm_tps" in out else "") + extra)
        return out


def one_run(a, bindir, sock, work, template, kind, r, res):
    """One arm's run by itself (the machine's 2 CPUs its own)."""
    arm = Arm(a, bindir, sock, work, template, kind, r)
    time.sleep(1)
    arm.start()
    arm.warm()
    arm.measure()
    return arm.finish()


def both(f, g):
    """f() and g() at once (two threads); the first exception raised again."""
    errs = []

    def run(h):
        try:
            h()
        except BaseException as e:  # (SystemExit too: pgbench or postgres failed)
            errs.append(e)
    ts = [threading.Thread(target=run, args=(h,)) for h in (f, g)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errs:
        raise errs[0]


def pair_run(a, bindir, sock, work, template, kind, r, res):
    """Postgres alone and arm kind at the same time, side by side, each
    server with its pgbench (half the clients, one thread) and, for kind, its
    session on a CPU of its own; the CPUs swap each round. Whatever the
    machine does over time (the host's other guests, this VM's clock speed:
    postgres alone moved 1,921-2,386 tps between P26's rounds, its CPU per
    transaction 683-919 us) falls on both arms in the same seconds, where
    runs one after the other each meet it on their own. What is not shared
    equally: the one disk (the session's checkpoint writes slow alone's
    fsyncs a little too, so this can only understate what the session
    costs) and the other CPU's load. Returns (alone's out, kind's out)."""
    cpus = (0, 1) if r % 2 else (1, 0)
    half = max(1, a.clients // 2)
    arms = [Arm(a, bindir, sock, work, template, k, r, cpu=c, clients=half, jobs=1, name=n)
            for k, c, n in zip(("alone", kind), cpus, (f"alone-{kind}", kind))]
    time.sleep(1)
    both(arms[0].start, arms[1].start)
    both(arms[0].warm, arms[1].warm)
    go = threading.Barrier(2)
    both(lambda: arms[0].measure(go), lambda: arms[1].measure(go))
    # the machine's busy and others' CPU: both arms' own CPU is not "others'"
    for x, y in ((arms[0].out, arms[1].out), (arms[1].out, arms[0].out)):
        x["others_cpu_s"] = max(0.0, x["others_cpu_s"] - y["own_cpu_s"])
    return arms[0].finish(), arms[1].finish()


def alone_of(row, kind):
    """The run of postgres alone that kind's run is compared with: the one
    beside it (--side-by-side), or the round's."""
    return row[kind].get("pair_alone") or row["alone"]


def check_run(bindir, sock, work, out, res):
    """After the round: every checkpoint of a run's tree restored, started
    and checked, then the tree removed. Not right after the run: the checks
    (a restore, a server started and pg_amcheck per checkpoint) take longer
    than the runs, so the arms of a round would run minutes apart, each under
    whatever else the shared machine did then (P13: postgres alone moved
    1,757-2,520 tps between rounds); the runs of a round now follow each
    other, and their ratio compares like with like."""
    mtm, tree = out.pop("_tree")
    if mtm:
        initial = [e["id"] for e in B.mtm_log(mtm, tree) if e["message"] == "initial"]
        # (the initial checkpoint is the template's, the same in every tree: checked once)
        out["checked"] = check_checkpoints(mtm, bindir, sock, work, tree, skip=initial if res["checked_initial"] else ())
        res["checked_initial"] = True
    B.rmtree(tree)
    for f in glob.glob(tree + "*.log"):
        os.remove(f)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--metamori", default=os.path.join(here, "..", "build", "metamori"))
    ap.add_argument("--rounds", type=int, default=12,
                    help="rounds, each one run of every arm back to back (more, shorter ones: each round's runs closer in time)")
    ap.add_argument("--seconds", type=int, default=20, help="the counted window of each run")
    ap.add_argument("--every", type=float, default=5)
    ap.add_argument("--warmup", type=int, default=5,
                    help="seconds of pgbench before each run's counted window, on the same server and session")
    ap.add_argument("--pg-defaults", action="store_true",
                    help="leave autovacuum, max_wal_size and checkpoint_timeout at PostgreSQL's defaults")
    ap.add_argument("--arms", default="alone,every",
                    help="comma-separated: alone, every (run --every N), run (run, no periodic checkpoint), "
                         "again (postgres alone a second time: the A/A noise of the benchmark), "
                         "base (run --every N of --base-metamori), fan (--every N with fanotify), fanscan "
                         "(fan with syscall user dispatch off)")
    ap.add_argument("--base-metamori", help="another build of metamori, for the arm base")
    ap.add_argument("--scale", type=int, default=10, help="pgbench -i -s (10 = 1M accounts, ~160 MiB)")
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1, help="pgbench --random-seed of round r: SEED + r")
    ap.add_argument("--user", default="postgres", help="the unprivileged user postgres runs as (when run as root)")
    ap.add_argument("--work", default=os.path.join(here, "work", "pg"))
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--side-by-side", action="store_true",
                    help="each arm at the same time as its own run of postgres alone, each on one CPU with "
                         "half the clients (the CPUs swapped each round), in place of one after the other")
    ap.add_argument("--json")
    ap.add_argument("--as-user", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.metamori = os.path.abspath(a.metamori)
    arms = a.arms.split(",")
    if arms[0] != "alone" or any(k not in ARMS for k in arms) or len(set(arms)) != len(arms) or len(arms) < 2:
        sys.exit("bench: --arms: alone first, then at least one of every, run, base, fan, fanscan, again")
    if ("base" in arms) != bool(a.base_metamori):
        sys.exit("bench: the arm base and --base-metamori go together")
    if a.base_metamori:
        a.base_metamori = os.path.abspath(a.base_metamori)
    if not os.access(a.metamori, os.X_OK):
        sys.exit(f"bench: {a.metamori}: not built (run make)")
    bindir = pg_bin()
    if not bindir:
        print("bench_pg: SKIPPED: PostgreSQL is not installed (apt-get install postgresql postgresql-contrib)")
        sys.exit(3)
    if os.geteuid() == 0 and not a.as_user:
        as_user(a)
    work = os.path.abspath(a.work)
    if not a.as_user:
        B.rmtree(work)
        os.makedirs(work)
    sock = os.path.join(work, "sock")
    template = os.path.join(work, "template")
    os.makedirs(template)
    pt = Pg(bindir, os.path.join(template, "data"), sock, free_port())
    res = {"machine": B.machine(), "load_start": B.loadavg(), "rounds": [], "args": vars(a), "arms": arms,
           "checked_initial": False}

    B.log(f"bench: initdb and pgbench -i -s {a.scale} in {template}")
    pt.initdb()
    with open(os.path.join(pt.data, "postgresql.conf"), "a") as f:
        f.write("unix_socket_directories = ''\nlisten_addresses = ''\n")
        if not a.pg_defaults:
            f.write(PINNED)
    pt.start()
    pt.psql("CREATE DATABASE bench")
    pt.pgbench("-i", "-s", str(a.scale), "-q")
    pt.psql("CHECKPOINT")
    pt.stop()

    for r in range(1, a.rounds + 1):
        # ABBA: the order turns each round, so neither arm always runs first
        order = arms[(r - 1) % len(arms):] + arms[:(r - 1) % len(arms)]
        if (r - 1) // len(arms) % 2:
            order.reverse()
        row = {"round": r, "order": order, "uptime": open("/proc/loadavg").read().split()[:3]}
        if a.side_by_side:
            # each arm beside its own run of postgres alone (pair_run); the
            # pairs' order turns as the arms' does
            pairs = [k for k in order if k != "alone"]
            done = []
            for kind in pairs:
                alone, row[kind] = pair_run(a, bindir, sock, work, template, kind, r, res)
                row[kind]["pair_alone"] = alone
                row.setdefault("alone", alone)
                done += [alone, row[kind]]
            for out in done:
                check_run(bindir, sock, work, out, res)
        else:
            for kind in order:
                row[kind] = one_run(a, bindir, sock, work, template, kind, r, res)
            for kind in order:
                check_run(bindir, sock, work, row[kind], res)
        for kind in arms[1:]:
            row[kind]["ratio"] = row[kind]["tps"] / alone_of(row, kind)["tps"]
        res["rounds"].append(row)
        B.log(f"bench: round {r}: " + "; ".join(
            f"{k} {row[k]['tps']:.0f} tps against alone {alone_of(row, k)['tps']:.0f} "
            f"({(1 - row[k]['ratio']) * 100:+.1f}% fewer)" for k in arms[1:]))

    res["checked"] = [c for row in res["rounds"] for k in arms[1:] for c in row[k].get("checked", [])]
    res["pauses_ms"] = [p for row in res["rounds"] if "every" in row for _, _, p, x in row["every"]["checkpoints"]
                        if not x]
    if "base" in arms:
        res["base_pauses_ms"] = [p for row in res["rounds"] for _, _, p, x in row["base"]["checkpoints"] if not x]
    for k in ("fan", "fanscan"):
        if k in arms:
            res[k + "_pauses_ms"] = [p for row in res["rounds"] for _, _, p, x in row[k]["checkpoints"] if not x]
    res["debug"] = [f"{k}: {d}" for row in res["rounds"] for k in arms[1:] for d in row[k].get("debug", [])]
    res["load_end"] = B.loadavg()
    report(res)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1, default=str)
    if not a.keep:
        for n in os.listdir(work):  # (the directory itself is root's to remove, when root made it)
            p = os.path.join(work, n)
            B.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.remove(p)
        if not a.as_user:
            os.rmdir(work)


# Student's t, two-sided 95%, by degrees of freedom (1-30; then 2.0, 1.98, 1.96)
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def paired(ratios):
    """The rounds' ratios (arm / alone, same round) as one figure: the
    geometric mean and its 95% confidence interval (Student's t over the
    rounds' log ratios: each round a pair run back to back, so what the
    machine did slowly cancels in the ratio and only what differs within a
    round is left). (mean, low, high), or None under 2 rounds."""
    xs = [math.log(x) for x in ratios if x and x > 0]
    n = len(xs)
    if n < 2:
        return None
    m = sum(xs) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    t = T975[n - 2] if n - 1 <= len(T975) else (2.0 if n <= 61 else 1.98 if n <= 121 else 1.96)
    hw = t * sd / math.sqrt(n)
    return math.exp(m), math.exp(m - hw), math.exp(m + hw)


def fewer_ci(ratios):
    """paired() as "fewer transactions": (mean %, low %, high %)."""
    p = paired(ratios)
    return None if p is None else ((1 - p[0]) * 100, (1 - p[2]) * 100, (1 - p[1]) * 100)


def goal_ci(ci, target):
    """The goal (at most target% fewer) against the interval: met only when
    all of it is at or under the target, missed when all of it is above."""
    if ci is None:
        return "-"
    return "met" if ci[2] <= target else "MISSED" if ci[1] > target else "not resolved"


def spread(xs):
    xs = sorted(xs)
    return f"{xs[0]:+.1f}% .. {xs[-1]:+.1f}%" if xs else "-"


def report(res):
    m, a, arms = res["machine"], res["args"], res["arms"]
    out = [f"## PostgreSQL under `metamori run --every {a['every']:g}` (pgbench -s {a['scale']}, -c {a['clients']}, "
           f"{a['seconds']} s per run" + (f" after {a['warmup']} s of warm-up" if a.get("warmup") else "")
           + f", {a['rounds']} rounds, "
           + ("each arm side by side with its own run of postgres alone, each on one CPU with half the clients, "
              "the CPUs swapped each round" if a.get("side_by_side") else "order turned each round")
           + ", every run on a fresh copy of the same database"
           + ("" if a.get("pg_defaults") else "; autovacuum off, no PostgreSQL checkpoint in a run") + ")", "",
           f"Run {m['date']} on {m['nproc']} CPUs, kernel {m['kernel']}, load average {res['load_start']} at the "
           f"start and {res['load_end']} at the end. Every checkpoint restored, started and checked "
           f"(pg_amcheck --heapallindexed, pgbench's balance invariant): "
           f"{sum(c['ok'] for c in res['checked'])} of {len(res['checked'])}.", ""]
    head = ["round", "order", "uptime", "alone tps", "alone CPU/tx", "others' CPU (s)", "steal (s)", "major faults"]
    for k in arms[1:]:
        head += [f"{k} tps", f"{k}: fewer", f"{k}: CPU/tx (session's)"]
    if "every" in arms:
        head += ["ckpts", "pauses (ms)"]
    if "base" in arms:
        head += ["base ckpts", "base pauses (ms)"]
    rows = []
    for r in res["rounds"]:
        row = [r["round"], " ".join(r["order"]), " ".join(r["uptime"]), f"{r['alone']['tps']:.0f}",
               f"{r['alone']['us_per_tx']:.0f} us",
               " / ".join(f"{r[k].get('others_cpu_s', 0):.1f}" for k in arms),
               " / ".join(f"{r[k].get('steal_s', 0):.1f}" for k in arms),
               " / ".join(str(r[k].get("majflt", 0)) for k in arms)]
        for k in arms[1:]:
            x = r[k]
            own = (f" ({x['session_cpu_s'] / (x['tps'] * a['seconds']) * 1e6:.0f} us)"
                   if x.get("session_cpu_s") is not None else "")
            beside = f" (alone beside it {x['pair_alone']['tps']:.0f})" if "pair_alone" in x else ""
            row += [f"{x['tps']:.0f}{beside}", f"{(1 - x['ratio']) * 100:+.1f}%", f"{x['us_per_tx']:.0f} us{own}"]
        if "every" in arms:
            ck = r["every"]["checkpoints"]
            row += [len(ck), ", ".join(f"{p:.1f}" + (f" ({x})" if x else "") for _, _, p, x in ck)]
        if "base" in arms:
            ck = r["base"]["checkpoints"]
            row += [len(ck), ", ".join(f"{p:.1f}" + (f" ({x})" if x else "") for _, _, p, x in ck)]
        rows.append(row)
    out.append(B.table(head, rows))
    out.append("")
    g = []
    for k in arms[1:]:
        fewer = [(1 - r[k]["ratio"]) * 100 for r in res["rounds"]]
        med = B.median(fewer)
        tot = (1 - sum(r[k]["tps"] for r in res["rounds"]) / sum(alone_of(r, k)["tps"] for r in res["rounds"])) * 100
        ci = fewer_ci([r[k]["ratio"] for r in res["rounds"]])
        g.append([f"fewer transactions, {ARMS[k]}: mean of the rounds' pairs, 95% interval",
                  f"{ci[0]:+.1f}% ({ci[1]:+.1f}% .. {ci[2]:+.1f}%)" if ci else "-",
                  "<= 3%" if k == "every" else "", goal_ci(ci, 3) if k == "every" else ""])
        g.append([f"fewer transactions, {k}: median of rounds (spread; all rounds pooled)",
                  f"{med:+.1f}% ({spread(fewer)}; {tot:+.1f}%)", "", ""])
        if all("warm_tps" in r[k] and "warm_tps" in alone_of(r, k) for r in res["rounds"]):
            # (not counted, shown: the window it leaves out holds the
            # session's first checkpoint, its dearest: no block hashes yet)
            wci = fewer_ci([r[k]["warm_tps"] / alone_of(r, k)["warm_tps"] for r in res["rounds"]])
            g.append([f"fewer transactions in the warm-up ({a['warmup']} s, not counted), {k}: mean of pairs, "
                      f"95% interval", f"{wci[0]:+.1f}% ({wci[1]:+.1f}% .. {wci[2]:+.1f}%)" if wci else "-", "", ""])
        if a.get("side_by_side"):
            # (the two CPUs need not be alike: the arms swap them each round)
            on = [[(1 - r[k]["ratio"]) * 100 for r in res["rounds"] if r[k].get("cpu") == c] for c in (0, 1)]
            if on[0] and on[1]:
                g.append([f"fewer transactions, {k}: median of the rounds it ran on CPU 0 / on CPU 1",
                          f"{B.median(on[0]):+.1f}% ({len(on[0])}) / {B.median(on[1]):+.1f}% ({len(on[1])})", "", ""])
            first = second = None
        else:
            first = [(1 - r[k]["ratio"]) * 100 for r in res["rounds"] if r["order"].index(k) < r["order"].index("alone")]
            second = [(1 - r[k]["ratio"]) * 100 for r in res["rounds"] if r["order"].index(k) > r["order"].index("alone")]
        if first and second:
            g.append([f"fewer transactions, {k}: median of the rounds it ran before alone / after alone",
                      f"{B.median(first):+.1f}% ({len(first)}) / {B.median(second):+.1f}% ({len(second)})", "", ""])
        cpu = [r[k]["us_per_tx"] / alone_of(r, k)["us_per_tx"] for r in res["rounds"]]
        g.append([f"CPU per transaction (postgres + the session), {k} / alone: median (spread)",
                  f"{B.median(cpu):.3f}x ({min(cpu):.3f}x .. {max(cpu):.3f}x)", "", ""])
        # pgbench's CPU in too: on a machine the runs keep busy this is what
        # bounds the rate, and it does not move with what else ran beside
        # the run as the rate does (the CPU is counted, not the wall)
        cci = fewer_ci([alone_of(r, k)["all_us_per_tx"] / r[k]["all_us_per_tx"] for r in res["rounds"]])
        g.append([f"fewer transactions as the CPU per transaction (postgres + session + pgbench) says, {k}: "
                  f"mean of pairs, 95% interval", f"{cci[0]:+.1f}% ({cci[1]:+.1f}% .. {cci[2]:+.1f}%)" if cci else "-",
                  "", ""])
        # The session's own cost, read inside each of its runs: its CPU
        # against all the CPU the run's transactions took (postgres, pgbench
        # and the session), counted over the same seconds on the same
        # machine, so what the machine did then is in both; no pair needed.
        # On a machine the runs keep busy, a session taking a share s of
        # the CPU leaves 1 - s of the transactions, plus whatever it costs
        # inside postgres (the interposer, the watcher's hooks: the line
        # after, which does need the pairs).
        sh = [r[k]["session_cpu_s"] / (r[k]["all_us_per_tx"] * r[k]["tps"] * a["seconds"] / 1e6) * 100
              for r in res["rounds"] if r[k].get("session_cpu_s") is not None]
        if len(sh) >= 2:
            msh = sum(sh) / len(sh)
            hw = T975[min(len(sh) - 2, len(T975) - 1)] * math.sqrt(
                sum((x - msh) ** 2 for x in sh) / (len(sh) - 1)) / math.sqrt(len(sh))
            g.append([f"the session's share of its runs' CPU (session / (postgres + pgbench + session)), {k}: "
                      f"mean, 95% interval (spread)", f"{msh:.2f}% ({msh - hw:.2f}% .. {msh + hw:.2f}%) "
                      f"({min(sh):.2f}% .. {max(sh):.2f}%)", "", ""])
            pci = paired([(r[k]["us_per_tx"] - r[k]["session_cpu_s"] / (r[k]["tps"] * a["seconds"]) * 1e6)
                          / alone_of(r, k)["us_per_tx"] for r in res["rounds"]])
            if pci:
                g.append([f"postgres's own CPU per transaction, {k} / alone: mean of pairs, 95% interval",
                          f"{pci[0]:.3f}x ({pci[1]:.3f}x .. {pci[2]:.3f}x)", "", ""])
    if "base" in arms and "every" in arms:
        vs = [r["every"]["tps"] / r["base"]["tps"] for r in res["rounds"]]
        g.append(["transactions, every / base (this build / the other, same round): median (spread)",
                  f"{B.median(vs):.3f}x ({min(vs):.3f}x .. {max(vs):.3f}x)", "", ""])
        sc = [(r["every"]["session_cpu_s"] / (r["every"]["tps"] * a["seconds"])) /
              (r["base"]["session_cpu_s"] / (r["base"]["tps"] * a["seconds"])) for r in res["rounds"]]
        g.append(["session CPU per transaction, every / base: median (spread)",
                  f"{B.median(sc):.3f}x ({min(sc):.3f}x .. {max(sc):.3f}x)", "", ""])
        sci = paired(sc)
        if sci:
            g.append(["session CPU per transaction, every / base: mean of pairs, 95% interval",
                      f"{sci[0]:.3f}x ({sci[1]:.3f}x .. {sci[2]:.3f}x)", "", ""])
    stops = [p for row in res["rounds"] for k in ("every", "base") if k in row
             for _, _, p, x in row[k]["checkpoints"] if x == "stop"]
    if stops:
        g.append(["pauses of checkpoints made while postgres shut down (every and base; not counted)",
                  ", ".join(f"{p:.1f}" for p in stops) + " ms", "", ""])
    ps = res["pauses_ms"]
    if ps:
        g.append(["pause per checkpoint while postgres runs, p50", f"{percentile(ps, 50):.1f} ms", "", ""])
        p99 = percentile(ps, 99)
        g.append(["pause per checkpoint while postgres runs, p99", f"{p99:.1f} ms", "<= 5 ms", B.goal(p99, "<=", 5)])
    for k in ("fan", "fanscan"):
        if res.get(k + "_pauses_ms"):
            fp = res[k + "_pauses_ms"]
            g.append([f"{k}: pause per checkpoint, p50 / p99", f"{percentile(fp, 50):.1f} / {percentile(fp, 99):.1f} ms",
                      "", ""])
    if res.get("base_pauses_ms"):
        bp = res["base_pauses_ms"]
        g.append(["base: pause per checkpoint, p50 / p99", f"{percentile(bp, 50):.1f} / {percentile(bp, 99):.1f} ms",
                  "", ""])
    out.append(B.table(["measure", "value", "goal", ""], g))
    if res["debug"]:
        out += ["", "Where the pause goes (METAMORI_DEBUG_SESSION, one line per checkpoint):", "", "```"]
        out += res["debug"]
        out.append("```")
    print("\n".join(out))


if __name__ == "__main__":
    main()
