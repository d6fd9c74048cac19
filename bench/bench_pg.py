#!/usr/bin/env python3
"""bench_pg.py: PostgreSQL under `metamori run --every N` against PostgreSQL
alone (issue 21), alternated in one run, and every checkpoint checked.

Two copies of one pgbench database (initdb + `pgbench -i -s SCALE`): A lives
in a tree with a store and runs under `metamori -C A run --every N -- postgres
...`; B runs alone. Each round runs `pgbench -c CLIENTS -j 2 -T SECONDS -n`
against B, then against A (the order alternates between rounds). Reported:
transactions per second of each run, the ratio, and the pause of each
checkpoint as the session reports it (`paused X ms`, with
METAMORI_DEBUG_SESSION's breakdown: logs, collect, record, commit).

Then every checkpoint of A is restored (`restore ID --to`), started as a
PostgreSQL server (crash recovery from the image), and checked:
`pg_amcheck --heapallindexed` over every relation, and pgbench's invariant
sum(abalance) = sum(bbalance) = sum(tbalance) = sum(delta of history).

PostgreSQL refuses to run as root: run as root, the script hands the work
directory to an unprivileged user (--user, default postgres) and runs
itself again as that user (runuser).

usage: bench_pg.py --metamori build/metamori [--rounds 2] [--seconds 30] [--every 5]
                   [--scale 10] [--clients 6] [--user postgres] [--work DIR] [--keep] [--json FILE]
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
    py = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable  # (root's may be private)
    argv = [py, os.path.abspath(__file__)] + sys.argv[1:]
    argv += ["--work", work, "--as-user"]
    env = {k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "TERM")}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    env["HOME"] = work
    os.execvp("runuser", ["runuser", "-u", a.user, "--", "env"] + [f"{k}={v}" for k, v in env.items()] + argv)


def session_lines(text):
    """The session's per-checkpoint lines: [(id, kind, pause ms)], and the debug breakdowns."""
    ck = [(int(m.group(1)), m.group(2), float(m.group(3)))
          for m in re.finditer(r"checkpoint (\d+) \((tracked|scanned)[^,]*, paused ([0-9.]+) ms\)", text)]
    dbg = [m.group(0) for m in re.finditer(r"session: (?:tracked|scanned)[^\n]*begin [^\n]*", text)]
    return ck, dbg


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--metamori", default=os.path.join(here, "..", "build", "metamori"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--every", type=float, default=5)
    ap.add_argument("--scale", type=int, default=10, help="pgbench -i -s (10 = 1M accounts, ~160 MiB)")
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--user", default="postgres", help="the unprivileged user postgres runs as (when run as root)")
    ap.add_argument("--work", default=os.path.join(here, "work", "pg"))
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--as-user", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.metamori = os.path.abspath(a.metamori)
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
    tree_a, tree_b = os.path.join(work, "a"), os.path.join(work, "b")
    os.makedirs(tree_a)
    pa = Pg(bindir, os.path.join(tree_a, "data"), sock, free_port())
    pb = Pg(bindir, os.path.join(tree_b, "data"), sock, free_port())
    res = {"machine": B.machine(), "load_start": B.loadavg(), "rounds": [], "args": vars(a)}

    B.log(f"bench: initdb and pgbench -i -s {a.scale} in {tree_a}")
    pa.initdb()
    with open(os.path.join(pa.data, "postgresql.conf"), "a") as f:
        f.write("unix_socket_directories = ''\nlisten_addresses = ''\n")
    pa.start()
    pa.psql("CREATE DATABASE bench")
    pa.pgbench("-i", "-s", str(a.scale), "-q")
    pa.stop()
    shutil.copytree(tree_a, tree_b, symlinks=True)
    B.mtm(a.metamori, "init", tree_a)
    with open(os.path.join(tree_a, ".metamoriignore"), "w") as f:
        f.write("data.log\n")
    t, _ = B.mtm(a.metamori, "-C", tree_a, "checkpoint", "-q", "-m", "initial")
    res["initial_ckpt_s"] = t
    B.log(f"bench: initial checkpoint {B.secs(t)}")

    env = dict(os.environ, METAMORI_DEBUG_SESSION="phases")
    all_ck, all_dbg = [], []
    for r in range(1, a.rounds + 1):
        row = {"round": r, "load": B.loadavg()}
        order = ["alone", "tracked"] if r % 2 else ["tracked", "alone"]
        for kind in order:
            if kind == "alone":
                pb.start()
                row["alone_tps"] = tps(pb.pgbench("-c", str(a.clients), "-j", "2", "-T", str(a.seconds), "-n"))
                pb.stop()
                continue
            errf = open(os.path.join(work, f"session{r}.err"), "w+")
            sess = subprocess.Popen([a.metamori, "-C", tree_a, "run", "--every", str(a.every), "--",
                                     os.path.join(bindir, "postgres"), "-D", pa.data] + pa.opts(),
                                    cwd=tree_a, env=env, stdout=subprocess.DEVNULL, stderr=errf)
            pa.wait_ready()
            row["tracked_tps"] = tps(pa.pgbench("-c", str(a.clients), "-j", "2", "-T", str(a.seconds), "-n"))
            pa.stop()
            rc = sess.wait(timeout=300)
            errf.seek(0)
            text = errf.read()
            errf.close()
            if rc != 0:
                sys.exit(f"bench: metamori run exited {rc}:\n{text[-3000:]}")
            ck, dbg = session_lines(text)
            # the checkpoint made once postgres has exited ('exit') pauses no one
            msgs = {e["id"]: e["message"] for e in B.mtm_log(a.metamori, tree_a)}
            ck = [(i, k, p, msgs.get(i) == "exit") for i, k, p in ck]
            row["checkpoints"] = ck
            row["debug"] = dbg
            all_ck += ck
            all_dbg += dbg
        row["ratio"] = row["tracked_tps"] / row["alone_tps"]
        res["rounds"].append(row)
        B.log(f"bench: round {r}: alone {row['alone_tps']:.0f} tps, under metamori run {row['tracked_tps']:.0f} tps "
              f"({(1 - row['ratio']) * 100:+.1f}% fewer), {len(row['checkpoints'])} checkpoints, pauses "
              + ", ".join(f"{p:.1f}" + (" (exit)" if x else "") for _, _, p, x in row["checkpoints"]) + " ms")

    # every checkpoint restored, started and checked
    ids = [e["id"] for e in B.mtm_log(a.metamori, tree_a)]
    checked = []
    for ck in ids:
        to = os.path.join(work, f"r{ck}")
        B.mtm(a.metamori, "-C", tree_a, "restore", str(ck), "--to", to)
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
        checked.append({"id": ck, "amcheck_rc": amc.returncode, "sums": vals, "history_rows": int(n), "ok": ok})
        if not ok:
            sys.exit(f"bench: checkpoint {ck}: pg_amcheck rc {amc.returncode} ({amc.stdout[-2000:]}"
                     f"{amc.stderr[-2000:]}), balances {vals}")
        B.rmtree(to)
        B.log(f"bench: checkpoint {ck}: pg_amcheck clean, balances equal ({vals[0]}), {n} history rows")
    res["checked"] = checked
    res["pauses_ms"] = [p for _, _, p, x in all_ck if not x]
    res["debug"] = all_dbg
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


def report(res):
    m, a = res["machine"], res["args"]
    out = [f"## PostgreSQL under `metamori run --every {a['every']:g}` (pgbench -s {a['scale']}, -c {a['clients']}, "
           f"{a['seconds']} s per run, {a['rounds']} rounds alternated)", "",
           f"Run {m['date']} on {m['nproc']} CPUs, kernel {m['kernel']}, load average {res['load_start']} at the "
           f"start and {res['load_end']} at the end. Every checkpoint restored, started and checked "
           f"(pg_amcheck --heapallindexed, pgbench's balance invariant): "
           f"{[c['id'] for c in res['checked'] if c['ok']]}.", ""]
    rows = [[r["round"], f"{r['alone_tps']:.0f}", f"{r['tracked_tps']:.0f}", f"{(1 - r['ratio']) * 100:+.1f}%",
             len(r["checkpoints"]), ", ".join(f"{p:.1f}" + (" (exit)" if x else "") for _, _, p, x in r["checkpoints"]),
             r["load"]]
            for r in res["rounds"]]
    out.append(B.table(["round", "alone tps", "under run tps", "fewer tps", "ckpts", "pauses (ms)", "load"], rows))
    out.append("")
    fewer = B.median([1 - r["ratio"] for r in res["rounds"]]) * 100
    ps = res["pauses_ms"]
    p50, p99 = percentile(ps, 50), percentile(ps, 99)
    g = [["fewer transactions under metamori run (median of rounds)", f"{fewer:+.1f}%", "<= 3%",
          B.goal(fewer, "<=", 3)]]
    if ps:
        g.append(["pause per checkpoint while postgres runs, p50", f"{p50:.1f} ms", "", ""])
        g.append(["pause per checkpoint while postgres runs, p99", f"{p99:.1f} ms", "<= 5 ms", B.goal(p99, "<=", 5)])
    out.append(B.table(["measure", "value", "goal", ""], g))
    if res["debug"]:
        out += ["", "Where the pause goes (METAMORI_DEBUG_SESSION, one line per checkpoint):", "", "```"]
        out += [d[:400] for d in res["debug"]]
        out.append("```")
    print("\n".join(out))


if __name__ == "__main__":
    main()
