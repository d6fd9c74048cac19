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

usage: bench_pg.py --metamori build/metamori [--rounds 6] [--seconds 30] [--every 5] [--arms alone,every[,run]]
                   [--scale 10] [--clients 6] [--seed 1] [--user postgres] [--work DIR] [--keep] [--json FILE]
"""
import argparse
import glob
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
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
    """(busy, total) jiffies of the whole machine (/proc/stat): how idle it was during a run."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]  # idle + iowait
    return sum(v) - idle, sum(v)


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


def bench_cpu(pg, out, bench_args, sess=None):
    """pgbench's run, with the CPU each side used meanwhile."""
    cpu0, busy0, pg0 = proc_cpu(sess.pid) if sess else 0, cpu_times(), postmaster_cpu(pg)
    ch0 = os.times()
    out["tps"] = tps(pg.pgbench(*bench_args))
    ch1 = os.times()
    time.sleep(0.5)  # (the backends exit and are reaped)
    cpu1, busy1, pg1 = proc_cpu(sess.pid) if sess else 0, cpu_times(), postmaster_cpu(pg)
    out["busy"] = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
    # the CPU the rest of the machine took meanwhile (other users of the
    # shared CPUs): a run it disturbed shows here, whichever arm it was
    own = (ch1.children_user + ch1.children_system) - (ch0.children_user + ch0.children_system)
    own += (pg1 - pg0 if pg0 is not None and pg1 is not None else 0) + (cpu1 - cpu0 if sess and cpu0 is not None and cpu1 is not None else 0)
    out["others_cpu_s"] = max(0.0, (busy1[0] - busy0[0]) / os.sysconf("SC_CLK_TCK") - own)
    out["pgbench_cpu_s"] = (ch1.children_user + ch1.children_system) - (ch0.children_user + ch0.children_system)
    out["postgres_cpu_s"] = pg1 - pg0 if pg0 is not None and pg1 is not None else None
    if sess:
        out["session_cpu_s"] = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None


def sync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.syncfs(fd) if hasattr(os, "syncfs") else subprocess.run(["sync", "-f", path], check=True)
    finally:
        os.close(fd)


ARMS = {"alone": "postgres alone", "every": "under `metamori run --every N`",
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


def one_run(a, bindir, sock, work, template, kind, r, res):
    """One pgbench run on a fresh copy of the initialized database: postgres
    alone, or under `metamori run` (kind "every": --every N; "run": no
    periodic checkpoint). The copy is synced first, so each run starts from
    the same bytes, clean in the page cache."""
    tree = os.path.join(work, f"{kind}{r}")
    shutil.copytree(template, tree, symlinks=True)
    pg = Pg(bindir, os.path.join(tree, "data"), sock, free_port())
    out = {"kind": kind}
    mtm = a.base_metamori if kind == "base" else a.metamori
    if kind != "alone":
        B.mtm(mtm, "init", tree)
        with open(os.path.join(tree, ".metamoriignore"), "w") as f:
            f.write("data.log\n")
        t, _ = B.mtm(mtm, "-C", tree, "checkpoint", "-q", "-m", "initial")
        out["initial_ckpt_s"] = t
    sync_dir(tree)
    time.sleep(1)
    out["load"] = B.loadavg()
    bench_args = ["-c", str(a.clients), "-j", "2", "-T", str(a.seconds), "-n", f"--random-seed={a.seed + r}"]
    if kind == "alone":
        # started as the other arms start it: a child of this script, in its
        # session, so in the scheduler's autogroup pgbench runs in. pg_ctl
        # puts the postmaster in a session of its own, and with autogroup
        # scheduling (kernel.sched_autogroup_enabled) that alone changed how
        # the 2 CPUs were shared between postgres and pgbench: P7 had the
        # arms under `metamori run` 2-9% faster than postgres alone.
        with open(pg.data + ".log", "w") as errf:
            proc = subprocess.Popen([os.path.join(bindir, "postgres"), "-D", pg.data] + pg.opts(), cwd=tree,
                                    stdout=subprocess.DEVNULL, stderr=errf)
            pg.wait_ready()
            bench_cpu(pg, out, bench_args)
            pg.stop()
            proc.wait(timeout=300)
    else:
        fan = kind in ("fan", "fanscan")
        env = dict(os.environ, METAMORI_DEBUG_SESSION="phases", METAMORI_WATCH="fanotify" if fan else "inotify")
        env.pop("METAMORI_DISPATCH", None)
        if kind == "fan":
            env["METAMORI_DISPATCH"] = "1"
        errf = open(os.path.join(work, f"session-{kind}{r}.err"), "w+")
        every = ["--every", str(a.every)] if kind in ("every", "base", "fan", "fanscan") else []
        drop = ["setpriv", "--inh-caps=-all", "--ambient-caps=-all"] if fan else []
        sess = subprocess.Popen([mtm, "-C", tree, "run"] + every + ["--"] + drop + [os.path.join(bindir, "postgres"),
                                "-D", pg.data] + pg.opts(), cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=errf)
        pg.wait_ready()
        bench_cpu(pg, out, bench_args, sess)
        pg.stop()
        rc = sess.wait(timeout=300)
        errf.seek(0)
        text = errf.read()
        errf.close()
        if rc != 0:
            sys.exit(f"bench: metamori run exited {rc}:\n{text[-3000:]}")
        ck, dbg = session_lines(text)
        # the checkpoint made once postgres has exited ('exit') pauses no one
        msgs = {e["id"]: e["message"] for e in B.mtm_log(mtm, tree)}
        out["checkpoints"] = [(i, k, p, msgs.get(i) == "exit") for i, k, p in ck]
        out["debug"] = dbg
    out["_tree"] = (mtm if kind != "alone" else None, tree)  # checked and removed when the round ends (check_run)
    extra = ""
    if kind != "alone":
        extra = (f", session CPU {out['session_cpu_s']:.2f} s, {len(out.get('checkpoints', []))} checkpoints, pauses "
                 + ", ".join(f"{p:.1f}" + (" (exit)" if x else "") for _, _, p, x in out["checkpoints"]) + " ms")
    out["us_per_tx"] = ((out["postgres_cpu_s"] or 0) + (out.get("session_cpu_s") or 0)) / (out["tps"] * a.seconds) * 1e6
    B.log(f"bench: round {r} {kind}: {out['tps']:.0f} tps, CPUs busy {out['busy'] * 100:.0f}%, "
          f"load {out['load']}, postgres CPU {out['postgres_cpu_s']:.1f} s, pgbench CPU {out['pgbench_cpu_s']:.1f} s, "
          f"CPU per transaction (postgres + session) {out['us_per_tx']:.0f} us{extra}")
    return out


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
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--every", type=float, default=5)
    ap.add_argument("--arms", default="alone,every",
                    help="comma-separated: alone, every (run --every N), run (run, no periodic checkpoint), "
                         "base (run --every N of --base-metamori), fan (--every N with fanotify), fanscan "
                         "(fan with syscall user dispatch off)")
    ap.add_argument("--base-metamori", help="another build of metamori, for the arm base")
    ap.add_argument("--scale", type=int, default=10, help="pgbench -i -s (10 = 1M accounts, ~160 MiB)")
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1, help="pgbench --random-seed of round r: SEED + r")
    ap.add_argument("--user", default="postgres", help="the unprivileged user postgres runs as (when run as root)")
    ap.add_argument("--work", default=os.path.join(here, "work", "pg"))
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--as-user", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.metamori = os.path.abspath(a.metamori)
    arms = a.arms.split(",")
    if arms[0] != "alone" or any(k not in ARMS for k in arms) or len(set(arms)) != len(arms) or len(arms) < 2:
        sys.exit("bench: --arms: alone first, then at least one of every, run, base, fan, fanscan")
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
        for kind in order:
            row[kind] = one_run(a, bindir, sock, work, template, kind, r, res)
        for kind in order:
            check_run(bindir, sock, work, row[kind], res)
        for kind in arms[1:]:
            row[kind]["ratio"] = row[kind]["tps"] / row["alone"]["tps"]
        res["rounds"].append(row)
        B.log(f"bench: round {r}: alone {row['alone']['tps']:.0f} tps; "
              + "; ".join(f"{k} {row[k]['tps']:.0f} tps ({(1 - row[k]['ratio']) * 100:+.1f}% fewer)" for k in arms[1:]))

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


def spread(xs):
    xs = sorted(xs)
    return f"{xs[0]:+.1f}% .. {xs[-1]:+.1f}%" if xs else "-"


def report(res):
    m, a, arms = res["machine"], res["args"], res["arms"]
    out = [f"## PostgreSQL under `metamori run --every {a['every']:g}` (pgbench -s {a['scale']}, -c {a['clients']}, "
           f"{a['seconds']} s per run, {a['rounds']} rounds, order turned each round, every run on a fresh copy "
           f"of the same database)", "",
           f"Run {m['date']} on {m['nproc']} CPUs, kernel {m['kernel']}, load average {res['load_start']} at the "
           f"start and {res['load_end']} at the end. Every checkpoint restored, started and checked "
           f"(pg_amcheck --heapallindexed, pgbench's balance invariant): "
           f"{sum(c['ok'] for c in res['checked'])} of {len(res['checked'])}.", ""]
    head = ["round", "order", "uptime", "alone tps", "alone CPU/tx", "others' CPU (s)"]
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
               " / ".join(f"{r[k].get('others_cpu_s', 0):.1f}" for k in arms)]
        for k in arms[1:]:
            x = r[k]
            row += [f"{x['tps']:.0f}", f"{(1 - x['ratio']) * 100:+.1f}%",
                    f"{x['us_per_tx']:.0f} us ({x['session_cpu_s'] / (x['tps'] * a['seconds']) * 1e6:.0f} us)"]
        if "every" in arms:
            ck = r["every"]["checkpoints"]
            row += [len(ck), ", ".join(f"{p:.1f}" + (" (exit)" if x else "") for _, _, p, x in ck)]
        if "base" in arms:
            ck = r["base"]["checkpoints"]
            row += [len(ck), ", ".join(f"{p:.1f}" + (" (exit)" if x else "") for _, _, p, x in ck)]
        rows.append(row)
    out.append(B.table(head, rows))
    out.append("")
    g = []
    for k in arms[1:]:
        fewer = [(1 - r[k]["ratio"]) * 100 for r in res["rounds"]]
        med = B.median(fewer)
        tot = (1 - sum(r[k]["tps"] for r in res["rounds"]) / sum(r["alone"]["tps"] for r in res["rounds"])) * 100
        g.append([f"fewer transactions, {ARMS[k]}: median of rounds (spread; all rounds pooled)",
                  f"{med:+.1f}% ({spread(fewer)}; {tot:+.1f}%)", "<= 3%" if k == "every" else "",
                  B.goal(med, "<=", 3) if k == "every" else ""])
        cpu = [r[k]["us_per_tx"] / r["alone"]["us_per_tx"] for r in res["rounds"]]
        g.append([f"CPU per transaction (postgres + the session), {k} / alone: median (spread)",
                  f"{B.median(cpu):.3f}x ({min(cpu):.3f}x .. {max(cpu):.3f}x)", "", ""])
    if "base" in arms and "every" in arms:
        vs = [r["every"]["tps"] / r["base"]["tps"] for r in res["rounds"]]
        g.append(["transactions, every / base (this build / the other, same round): median (spread)",
                  f"{B.median(vs):.3f}x ({min(vs):.3f}x .. {max(vs):.3f}x)", "", ""])
        sc = [(r["every"]["session_cpu_s"] / (r["every"]["tps"] * a["seconds"])) /
              (r["base"]["session_cpu_s"] / (r["base"]["tps"] * a["seconds"])) for r in res["rounds"]]
        g.append(["session CPU per transaction, every / base: median (spread)",
                  f"{B.median(sc):.3f}x ({min(sc):.3f}x .. {max(sc):.3f}x)", "", ""])
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
