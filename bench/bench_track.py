#!/usr/bin/env python3
"""bench_track.py: tracked checkpoints (`metamori run`) on workload W1 against
the floor and the peers in one run, the pause the application sees, the
interposer's overhead on fio, checkpoint time with many untouched files, and
in-place restore. Prints Markdown tables (docs/BENCHMARKS.md).

The application is bench/track_writer.c (compiled here with cc), started
unmodified as `metamori run -- track_writer ...`. It does each interval of W1
(1% of the 4 KiB blocks of 16 x 64 MiB rewritten at random with pwrite, 1 MiB
appended to log.txt with O_APPEND) when the driver asks, then waits; the driver
runs `metamori checkpoint` from outside (the session makes the checkpoint)
while a thread of the writer pwrites a heartbeat into the tree every ~100 us
and times each call: the longest call is the pause the application saw.

Cache: warm for every contender (`sync` first; the data was just written and
is in the page cache, which is what a tracked checkpoint reads).

Parts (--parts, default all): w1, many, fio, watch, w2git.
  w1    per interval: tracked ckpt, floor (changed bytes written once + fsync),
        cp -a, rsync --link-dest, borg, restic; pause; then in-place restore 3 back
        vs rewriting the differing blocks in place (+fsync)
  many  20,000 vs 2,000 files of 16 KiB, the same 200 files touched per interval:
        tracked ckpt time (should not depend on the untouched files); scan for contrast
  fio   4 KiB random pwrite and 1 MiB sequential write (psync, buffered) on a file
        in the tree, plain vs under `metamori run` (LD_PRELOAD), alternated, medians
  watch the watcher (issue 15): set-up time on 100,000 directories and on
        100,000 files (fanotify, inotify), fio 4 KiB random writes tracked
        with each watcher vs none (--fio-reps 0: set-up times only)
  w2git W2: 20,000 files of 16 KiB, 200 touched per interval: tracked checkpoint
        vs `git add -A && git commit` on a twin tree, alternated

usage: bench_track.py --metamori build/metamori [--scale 0.1] [--intervals 5]
                      [--parts w1,many,fio] [--fio-runtime 3] [--fio-reps 9] [--work DIR] [--keep] [--json FILE]
"""
import argparse
import json
import os
import random
import re
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def have_run(metamori):
    p = subprocess.run([metamori, "run", "--help"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    return p.returncode == 0, (p.stderr or p.stdout).strip()


def build_writer(work):
    exe = os.path.join(work, "track_writer")
    src = os.path.join(HERE, "track_writer.c")
    p = subprocess.run(["cc", "-O2", "-pthread", "-o", exe, src], stderr=subprocess.PIPE, text=True)
    if p.returncode:
        sys.exit(f"bench: cc {src}: {p.stderr.strip()}")
    return exe


class Session:
    """`metamori run -- track_writer ...` and the FIFOs to talk to the writer."""

    def __init__(self, metamori, tree, work, writer, args, tag):
        self.cmd_path = os.path.join(work, f"{tag}.cmd")
        self.resp_path = os.path.join(work, f"{tag}.resp")
        for p in (self.cmd_path, self.resp_path):
            if os.path.exists(p):
                os.unlink(p)
            os.mkfifo(p)
        self.blocks_dir = os.path.join(work, f"{tag}.blocks")
        os.makedirs(self.blocks_dir, exist_ok=True)
        argv = [metamori, "-C", tree, "run", "--", writer, self.cmd_path, self.resp_path,
                tree] + [str(x) for x in args[:4]] + [self.blocks_dir] + [str(x) for x in args[4:]]
        self.errf = open(os.path.join(work, f"{tag}.session.err"), "w+")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.errf,
                                     stderr=self.errf, cwd=tree)
        deadline = time.time() + 30
        while True:
            try:
                self.cmd = os.open(self.cmd_path, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                self.fail("the writer did not start")
            time.sleep(0.01)
        os.set_blocking(self.cmd, True)
        self.resp = os.open(self.resp_path, os.O_RDONLY)
        self.buf = b""

    def fail(self, why):
        self.errf.seek(0)
        out = self.errf.read().strip()
        if self.proc.poll() is None:
            self.proc.kill()
        sys.exit(f"bench: metamori run: {why} (exit {self.proc.poll()})\n{out}")

    def ask(self, line, timeout=600):
        os.write(self.cmd, (line + "\n").encode())
        deadline = time.time() + timeout
        while b"\n" not in self.buf:
            r, _, _ = select.select([self.resp], [], [], 1.0)
            if r:
                chunk = os.read(self.resp, 4096)
                if not chunk:
                    self.fail(f"the writer closed its answers to '{line}'")
                self.buf += chunk
            elif self.proc.poll() is not None or time.time() > deadline:
                self.fail(f"no answer to '{line}'")
        ans, self.buf = self.buf.split(b"\n", 1)
        ans = ans.decode().split()
        if not ans or ans[0] != "ok":
            self.fail(f"'{line}': {' '.join(ans)}")
        return [int(x) for x in ans[1:]]

    def quit(self):
        self.ask("quit")
        os.close(self.cmd)
        os.close(self.resp)
        rc = self.proc.wait(timeout=600)
        self.errf.seek(0)
        out = self.errf.read().strip()
        self.errf.close()
        if rc != 0:
            sys.exit(f"bench: metamori run: exit {rc} (the writer exits 0)\n{out}")
        return out

    def blocks(self, interval):
        with open(os.path.join(self.blocks_dir, str(interval))) as f:
            return {tuple(map(int, line.split())) for line in f if line.strip()}


def cpu_ns(pid):
    """CPU time used so far by process pid, all its threads, including those
    that have ended (the session's pack writers' threads come and go), in
    ns: the process's CPU-time clock (clock_getcpuclockid(3): the kernel's
    sum of the time its threads ran, not skewed by time spent waiting for a
    CPU on a loaded machine)."""
    try:
        return time.clock_gettime_ns(((~pid) << 3) | 2)  # MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)
    except OSError:
        return None


class ApiClient:
    """mtm_checkpoint_at(3) called in this process, through libmetamori.so
    beside the binary: how a long-running program asks a `metamori run`
    session for its own checkpoint, with no process start (W2's `api` row;
    never instead of the `metamori checkpoint` row, which is the goal's)."""

    def __init__(self, metamori):
        import ctypes as C
        self.C = C
        self.lib = C.CDLL(os.path.join(os.path.dirname(metamori), "libmetamori.so"))

        class Opts(C.Structure):
            _fields_ = [("version", C.c_int), ("message", C.c_char_p), ("excludes", C.c_void_p),
                        ("n_excludes", C.c_size_t), ("progress", C.c_void_p), ("progress_arg", C.c_void_p)]

        class Info(C.Structure):  # include/metamori.h's mtm_checkpoint_info
            _fields_ = ([("id", C.c_int64), ("parent", C.c_int64), ("time_ns", C.c_int64), ("message", C.c_void_p)]
                        + [(k, C.c_uint64) for k in ("files_added", "files_changed", "files_removed",
                                                     "bytes_changed", "bytes_stored", "entries", "tree_bytes",
                                                     "pause_ns")]
                        + [("tracked", C.c_int), ("regions", C.c_uint64), ("region_bytes", C.c_uint64),
                           ("region_bytes_changed", C.c_uint64)])
        self.Opts, self.Info = Opts, Info
        self.lib.mtm_checkpoint_at.argtypes = [C.c_char_p, C.POINTER(Opts), C.POINTER(Info)]
        self.lib.mtm_last_error.restype = C.c_char_p
        self.lib.mtm_free.argtypes = [C.c_void_p]

    def checkpoint(self, tree, msg):
        """Returns (seconds, a line as `metamori checkpoint` prints)."""
        o = self.Opts(1, msg.encode(), None, 0, None, None)  # MTM_CHECKPOINT_OPTS_VERSION
        ci = self.Info()
        t0 = time.perf_counter()
        rc = self.lib.mtm_checkpoint_at(tree.encode(), self.C.byref(o), self.C.byref(ci))
        t = time.perf_counter() - t0
        if rc:
            sys.exit(f"bench: mtm_checkpoint_at: {self.lib.mtm_last_error().decode()}")
        self.lib.mtm_free(ci.message)
        how = "tracked" if ci.tracked else "scanned"
        return t, f"checkpoint {ci.id} ({how}, paused {ci.pause_ns / 1e6:.1f} ms)"


def checkpoint(metamori, tree, msg, ses=None, idle=0.0, api=None):
    """A checkpoint from outside; with ses, while the writer's heartbeat runs.
    idle: seconds to leave the session alone afterwards, before any other
    command opens the store, with its CPU time meanwhile in deferred_cpu_s
    (the session copies the index's WAL back once idle for a second; the
    `metamori log` below would otherwise do it when it closes the store).
    api: an ApiClient, to ask through the library instead of the command.
    Returns dict(s, out, pause_app_ns, probe_calls, log entry)."""
    os.sync()
    if ses:
        ses.ask("probe start")
        time.sleep(0.02)
    c0 = cpu_ns(ses.proc.pid) if ses else None
    if api:
        t, text = api.checkpoint(tree, msg)
    else:
        t, p = B.mtm(metamori, "-C", tree, "checkpoint", "-m", msg)
        text = p.stdout.strip()
    c1 = cpu_ns(ses.proc.pid) if ses else None
    r = {"s": t, "out": text, "end": time.time(), "cpu_start_ns": c0, "cpu_end_ns": c1,
         "session_cpu_s": (c1 - c0) / 1e9 if c0 is not None and c1 is not None else None}
    if ses:
        time.sleep(0.02)
        mx, calls, slow = ses.ask("probe stop")
        r.update(pause_app_ns=mx, probe_calls=calls, probe_slow=slow)
        if idle > 0:
            time.sleep(max(0.0, idle - (time.time() - r["end"])))
            c2 = cpu_ns(ses.proc.pid)
            r["deferred_cpu_s"] = (c2 - c1) / 1e9 if c1 is not None and c2 is not None else None
    entry = B.mtm_log(metamori, tree)[-1]
    r["entry"] = entry
    pause = [v for k, v in entry.items() if "pause" in k]
    m = re.search(r"paused ([0-9.]+) ms", r["out"])
    r["pause_session_ns"] = pause[0] if pause else float(m.group(1)) * 1e6 if m else None
    r["tracked"] = "tracked" in r["out"]
    return r


def probe_baseline(ses, seconds=0.3):
    ses.ask("probe start")
    time.sleep(seconds)
    mx, calls, slow = ses.ask("probe stop")
    return mx


# ---------------------------------------------------------------------------

def part_w1(a, metamori, writer, work, res):
    tree = os.path.join(work, "w1")
    w = B.W1(tree, scale=a.scale)
    B.log(f"bench: creating W1: {w.nfiles} x {B.human(w.file_size)} in {tree}")
    w.create()
    B.mtm(metamori, "init", tree)
    peers = B.Peers(os.path.join(work, "peers"), tree, w.names,
                    [p for p in a.peers.split(",") if p])
    os.makedirs(peers.work, exist_ok=True)
    peers.init()
    os.sync()
    t, _ = B.mtm(metamori, "-C", tree, "checkpoint", "-q", "-m", "initial (scan)")
    for pn in peers.which:
        os.sync()
        peers.run(pn)
    peers.next()
    B.log(f"bench: initial scan checkpoint {B.secs(t)}")

    ses = Session(metamori, tree, work, writer,
                  [w.nfiles, w.file_size, w.append, 7], "w1")
    out = {"intervals": [], "initial_scan_s": t}
    out["memcpy_ns"] = None
    first = checkpoint(metamori, tree, "session start", ses)
    out["session_first"] = first
    out["probe_baseline_ns"] = probe_baseline(ses)
    empties = empty_checkpoints(metamori, tree, ses)
    out["empty_s"] = [e["s"] for e in empties]
    out["empty_cpu_s"] = [e["session_cpu_s"] for e in empties]
    B.log(f"bench: first checkpoint in the session {B.secs(first['s'])}: {first['out']}")
    hist = []
    for i in range(1, a.intervals + 1):
        # before the writes: the session writes the changed blocks into the
        # pack while the program runs (the pre-copy and writing ahead), and
        # that is both store growth and CPU the checkpoint did not wait for
        s0 = B.store_bytes(tree)
        cpu0 = cpu_ns(ses.proc.pid)
        changed, nblk = ses.ask("interval")
        blocks = ses.blocks(i)
        hist.append(blocks)
        if out["memcpy_ns"] is None:
            out["memcpy_ns"] = ses.ask(f"memcpy {changed}")[0]
        row = {"interval": i, "changed": changed}
        c = checkpoint(metamori, tree, f"interval {i}", ses, idle=1.5)
        row.update(ckpt=c["s"], out=c["out"], pause_app_ns=c["pause_app_ns"],
                   pause_session_ns=c["pause_session_ns"], probe_calls=c["probe_calls"],
                   store_grew=B.store_bytes(tree) - s0, bytes_stored=c["entry"]["bytes_stored"],
                   recorded=c["entry"]["bytes_changed"], tracked=c["tracked"],
                   session_cpu=c["session_cpu_s"])
        # The floor right after the checkpoint (and its idle time), before the
        # peers, so that both write into the page cache in the same state of
        # memory, as near in time as they can be: on this VM, writing 11 MiB
        # into fresh page-cache pages took anywhere from 2.4 to 66 ms from one
        # moment to the next (docs/BENCHMARKS-ARCHIVE.md, T14).
        os.sync()
        row["floor"] = B.floor_write(os.path.join(work, "floor.bin"), changed)
        row["peers"] = {}
        for pn in peers.which:
            os.sync()
            tp, grew = peers.run(pn)
            row["peers"][pn] = {"s": tp, "grew": grew}
            if pn == "rsync" and peers.missed:
                row["peers"][pn]["missed"] = peers.missed
        peers.next()
        row["deferred_cpu"] = c.get("deferred_cpu_s")
        row["ahead_cpu"] = ((c["cpu_start_ns"] - cpu0) / 1e9 if cpu0 is not None and c.get("cpu_start_ns") is not None
                            else None)
        out["intervals"].append(row)
        B.log(f"bench: interval {i}: changed {B.human(changed)}, tracked ckpt {B.secs(row['ckpt'])}, "
              f"pause {row['pause_app_ns'] / 1e6:.2f} ms, floor {B.secs(row['floor'])}, "
              + ", ".join(f"{k} {B.secs(v['s'])}" + (" (missed changed files)" if v.get("missed") else "")
                          for k, v in row["peers"].items()))
    out["session_output"] = ses.quit()

    # in-place restore three checkpoints back (the session has ended)
    back = min(3, a.intervals)
    head = B.mtm_log(metamori, tree)[-1]["id"]
    target = head - back
    blocks = set()
    for h in hist[-back:]:
        blocks |= h
    os.sync()
    t, p = B.mtm(metamori, "-C", tree, "restore", str(target))
    r = {"target": target, "back": back, "s": t, "out": p.stdout.strip(),
         "differing": len(blocks) * B.BLOCK}
    os.sync()
    r["floor"] = B.floor_rewrite_in_place(tree, w.names, blocks,
                                          extra_files=[os.path.join(tree, "log.txt")])
    out["restore"] = r
    B.log(f"bench: restore {target} in place {B.secs(t)}, floor {B.secs(r['floor'])}")
    if p.stderr.strip():  # METAMORI_DEBUG_RESTORE's phases
        B.log("bench: " + p.stderr.strip())
    out["peer_names"] = peers.which
    res["w1"] = out
    B.rmtree(tree)
    B.rmtree(peers.work)


def make_many(root, n, size=16384, seed=3):
    rng = random.Random(seed)
    data = rng.randbytes(size + 4096)
    for f in range(n):
        d = os.path.join(root, "m", f"d{f // 200:03d}")
        if f % 200 == 0:
            os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{f:06d}"), "wb") as fh:
            off = rng.randrange(4096)
            fh.write(data[off:off + size])


def part_many(a, metamori, writer, work, res):
    """Both trees at once, each under its own session, their checkpoints
    alternating, so both see the same load on a shared machine. The touched
    files are drawn from the first 2,000 files (the same 10 directories) in
    both trees, so the only difference is the 18,000 untouched files."""
    touched = 200
    sizes = (2000, 20000)
    rounds = max(a.intervals, 7)
    st = {}
    for n in sizes:
        tree = os.path.join(work, f"many{n}")
        make_many(tree, n)
        B.mtm(metamori, "init", tree)
        os.sync()
        t, _ = B.mtm(metamori, "-C", tree, "checkpoint", "-q", "-m", "initial (scan)")
        st[n] = {"tree": tree, "initial_scan_s": t, "tracked": [], "recorded": [], "scan": [],
                 "touched": touched}
    for n in sizes:
        st[n]["ses"] = Session(metamori, st[n]["tree"], work, writer, [0, 0, 0, 11, n], f"many{n}")
        st[n]["session_first_s"] = checkpoint(metamori, st[n]["tree"], "session start", st[n]["ses"])["s"]
    for i in range(rounds):
        for n in (sizes if i % 2 == 0 else sizes[::-1]):
            x = st[n]
            x["ses"].ask(f"touch {touched} {sizes[0]}")
            c = checkpoint(metamori, x["tree"], f"touch {i}", x["ses"])
            x["tracked"].append(c["s"])
            x.setdefault("cpu", []).append(c["session_cpu_s"])
            x["recorded"].append(c["entry"]["bytes_changed"])
    for n in sizes:
        st[n].pop("ses").quit()
    # scan mode for contrast: the same kind of touches by the driver, then a scan checkpoint
    for i in range(3):
        for n in (sizes if i % 2 == 0 else sizes[::-1]):
            x = st[n]
            rng = random.Random(n * 100 + i)
            for f in rng.sample(range(sizes[0]), touched):
                p = os.path.join(x["tree"], "m", f"d{f // 200:03d}", f"f{f:06d}")
                fd = os.open(p, os.O_WRONLY)
                os.pwrite(fd, os.urandom(B.BLOCK), rng.randrange(4) * B.BLOCK)
                os.close(fd)
            os.sync()
            ts, _ = B.mtm(metamori, "-C", x["tree"], "checkpoint", "-q", "-m", f"scan {i}")
            x["scan"].append(ts)
    for n in sizes:
        x = st[n]
        B.log(f"bench: {n} files: tracked {', '.join(B.secs(v) for v in x['tracked'])}; "
              f"scan {', '.join(B.secs(v) for v in x['scan'])}")
        B.rmtree(x.pop("tree"))
    res["many"] = st


def part_w2git(a, metamori, writer, work, res):
    """W2 (issues 15, 21): 20,000 files of 16 KiB, 200 of them touched (one
    4 KiB block each) per interval: the tracked checkpoint against `git add -A
    && git commit` on a twin tree touched the same way, alternated, in one
    run; and against the floor (the changed bytes written once, with fsync,
    right after the checkpoint, as W1's). Every tracked checkpoint is
    restored (--to) at the end and compared with the tree as it was made."""
    import shutil
    if not shutil.which("git"):
        B.log("bench: w2git: no git, skipped")
        return
    n, touched = int(20000 * min(1.0, a.scale)) or 20, 200
    true = shutil.which("true")  # (by its path, as the checkpoint's client is started: no PATH search)
    trees = {k: os.path.join(work, f"w2{k}") for k in ("mtm", "git")}
    for t in trees.values():
        make_many(t, n)
    genv = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b", GIT_COMMITTER_NAME="b",
                GIT_COMMITTER_EMAIL="b@b")
    g = trees["git"]
    subprocess.run(["git", "init", "-q", g], check=True, env=genv)
    subprocess.run(["sh", "-c", "git add -A && git commit -q -m initial"], cwd=g, check=True, env=genv)
    B.mtm(metamori, "init", trees["mtm"])
    B.mtm(metamori, "-C", trees["mtm"], "checkpoint", "-q", "-m", "initial (scan)")
    os.sync()
    ses = Session(metamori, trees["mtm"], work, writer, [0, 0, 0, 11, n], "w2")
    checkpoint(metamori, trees["mtm"], "session start", ses)
    out = {"files": n, "touched": touched, "tracked": [], "git": [], "floor": [], "changed": [], "cpu": [],
           "spawn": [], "api": []}
    # the same request from this process through the library (no process
    # start): its own row, after the command's in each interval (a second
    # touch and checkpoint, restored and compared like the others)
    api = ApiClient(metamori) if os.path.exists(os.path.join(os.path.dirname(metamori), "libmetamori.so")) else None
    seen = {}  # checkpoint id -> the tree's digest when it was made
    rounds = max(a.intervals, 5)
    for i in range(rounds):
        for side in (("mtm", "git") if i % 2 == 0 else ("git", "mtm")):
            if side == "mtm":
                changed = ses.ask(f"touch {touched} {n}")[0]
                c = checkpoint(metamori, trees["mtm"], f"w2 {i}", ses)
                out["tracked"].append(c["s"])
                out["cpu"].append(c["session_cpu_s"])
                # the floor right after the checkpoint, as W1's (and before
                # the digest below reads the whole tree)
                os.sync()
                out["floor"].append(B.floor_write(os.path.join(work, "floor.bin"), changed))
                out["changed"].append(changed)
                # what starting any program costs here, timed as the
                # checkpoint's client is (B.timed: the same spawn, pipes and
                # clock): the floor has no process start, the checkpoint does
                out["spawn"].append(B.timed([true])[0])
                seen[c["entry"]["id"]] = tree_digest(trees["mtm"])
                if api:
                    ses.ask(f"touch {touched} {n}")
                    c = checkpoint(metamori, trees["mtm"], f"w2 api {i}", ses, api=api)
                    if not c["tracked"]:
                        sys.exit(f"bench: w2: mtm_checkpoint_at: not tracked: {c['out']}")
                    out["api"].append(c["s"])
                    seen[c["entry"]["id"]] = tree_digest(trees["mtm"])
            else:
                rng = random.Random(1000 + i)
                for f in rng.sample(range(n), touched):
                    p = os.path.join(g, "m", f"d{f // 200:03d}", f"f{f:06d}")
                    fd = os.open(p, os.O_WRONLY)
                    os.pwrite(fd, os.urandom(B.BLOCK), rng.randrange(4) * B.BLOCK)
                    os.close(fd)
                os.sync()
                t0 = time.perf_counter()
                subprocess.run(["sh", "-c", f"git add -A && git commit -q -m w2-{i}"], cwd=g, check=True, env=genv)
                out["git"].append(time.perf_counter() - t0)
    ses.quit()
    # correctness: every tracked checkpoint restored and compared
    for ck, dig in seen.items():
        to = os.path.join(work, f"w2to{ck}")
        B.mtm(metamori, "-C", trees["mtm"], "restore", str(ck), "--to", to)
        if tree_digest(to) != dig:
            sys.exit(f"bench: w2: restore {ck}: differs from the tree when it was made")
        B.rmtree(to)
    out["restored"] = sorted(seen)
    for t in trees.values():
        B.rmtree(t)
    B.log(f"bench: W2 {n} files: tracked {', '.join(B.secs(v) for v in out['tracked'])}; "
          f"floor {', '.join(B.secs(v) for v in out['floor'])}; "
          f"git add+commit {', '.join(B.secs(v) for v in out['git'])}; "
          f"library-asked {', '.join(B.secs(v) for v in out['api'])}; restored and compared {out['restored']}")
    res["w2git"] = out


def tree_digest(root):
    """path -> sha256 of every regular file under root (m/ only: the writer's
    heartbeat.bin changes while a checkpoint is made, by design)."""
    import hashlib
    out = {}
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, "m")):
        for name in filenames:
            p = os.path.join(dirpath, name)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def empty_checkpoints(metamori, tree, ses, n=5):
    """The fixed cost: tracked checkpoints with nothing changed (the client's
    process start, the socket round trip, the barrier, the index commit)."""
    return [checkpoint(metamori, tree, "nothing changed", ses) for _ in range(n)]


def fio_once(tree, job, runtime, outfile, metamori=None):
    cmd = ["fio", "--name=" + job, "--filename=" + os.path.join(tree, "fio.dat"), "--size=64m",
           "--ioengine=psync", "--time_based", f"--runtime={runtime}", "--output-format=json",
           "--output=" + outfile, "--randrepeat=1"]
    cmd += ["--rw=randwrite", "--bs=4k"] if job == "rand4k" else ["--rw=write", "--bs=1m"]
    if metamori:
        cmd = [metamori, "-C", tree, "run", "--"] + cmd
    os.sync()
    B.timed(cmd, cwd=tree)
    with open(outfile) as f:
        j = json.load(f)
    jb = j["jobs"][0]
    wr = jb["write"]
    ios = wr.get("total_ios") or 1
    cpu_ns = (jb["usr_cpu"] + jb["sys_cpu"]) / 100 * jb["job_runtime"] * 1e6
    return {"iops": wr["iops"], "bw": wr["bw_bytes"], "lat_ns": wr.get("clat_ns", {}).get("mean"),
            "cpu_ns_per_op": cpu_ns / ios}


def cpu_ov(runs):
    pl = B.median([r["cpu_ns_per_op"] for r in runs["plain"]])
    tr = B.median([r["cpu_ns_per_op"] for r in runs["tracked"]])
    return f"{pl / 1000:.2f} / {tr / 1000:.2f} us ({(tr - pl) / pl * 100:+.1f}%)"


def paired_ov(runs):
    """The median over repetitions of (plain - tracked) / plain, each
    repetition's two runs back to back: this VM's throughput drifts over
    seconds (single runs of one mode spread by 2x), so a pair shares its
    moment, where a ratio of two medians compares runs minutes apart."""
    return B.median([(p["bw"] - t["bw"]) / p["bw"] * 100 for p, t in zip(runs["plain"], runs["tracked"])])


def call_cost(metamori, tree, work, pairs=5):
    """The interposer's cost per write call, in ns: call_cost.c's 1-byte
    pwrites into the fio file, plainly and under `metamori run`, alternated;
    each run's median round (of 15 rounds of 100,000 calls, after one not
    counted), the difference of the medians over the pairs."""
    exe = os.path.join(work, "call_cost")
    src = os.path.join(HERE, "call_cost.c")
    p = subprocess.run(["cc", "-O2", "-o", exe, src], stderr=subprocess.PIPE, text=True)
    if p.returncode:
        sys.exit(f"bench: cc {src}: {p.stderr.strip()}")
    f = os.path.join(tree, "fio.dat")
    out = {"plain": [], "tracked": []}
    for i in range(pairs):
        for mode in ("plain", "tracked") if i % 2 == 0 else ("tracked", "plain"):
            cmd = [exe, f, "1", "100000", "16"]
            os.sync()  # fio's dirty pages written back first: the calls find clean, cached pages
            if mode == "tracked":
                cmd = [metamori, "-C", tree, "run", "--"] + cmd
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=True, cwd=tree)
            out[mode].append(B.median([float(x) for x in r.stdout.split()[1:]]))
    out["delta_ns"] = B.median(out["tracked"]) - B.median(out["plain"])
    return out


def part_fio(a, metamori, work, res):
    import shutil
    if not shutil.which("fio"):
        B.log("bench: fio not installed: fio part left out (apt-get install fio)")
        return
    tree = os.path.join(work, "fio")
    os.makedirs(tree)
    B.mtm(metamori, "init", tree)
    fio_once(tree, "seq1m", 1, os.path.join(work, "fio-layout.json"))  # lays the file out
    B.mtm(metamori, "-C", tree, "checkpoint", "-q", "-m", "fio file")
    out = {}
    for job in ("rand4k", "seq1m"):
        runs = {"plain": [], "tracked": []}
        for mode in ("plain", "tracked"):  # warm-up, not counted
            fio_once(tree, job, 1, os.path.join(work, "fio-warmup.json"),
                     metamori if mode == "tracked" else None)
        for rep in range(a.fio_reps):
            # ABBA order: a run pays for the writeback the one before left
            # behind, so a fixed order would charge it to one mode only
            for mode in ("plain", "tracked") if rep % 2 == 0 else ("tracked", "plain"):
                r = fio_once(tree, job, a.fio_runtime, os.path.join(work, f"fio-{job}-{mode}-{rep}.json"),
                             metamori if mode == "tracked" else None)
                runs[mode].append(r)
        out[job] = runs
        pl = B.median([r["bw"] for r in runs["plain"]])
        tr = B.median([r["bw"] for r in runs["tracked"]])
        B.log(f"bench: fio {job}: plain {B.human(pl)}/s, tracked {B.human(tr)}/s "
              f"({(pl - tr) / pl * 100:+.1f}% overhead of the medians, {paired_ov(runs):+.1f}% paired)")
    cc = call_cost(metamori, tree, work)
    out["call_cost"] = cc
    B.log(f"bench: interposer cost per write call: {cc['delta_ns']:+.0f} ns "
          f"(plain {B.median(cc['plain']):.0f} ns, tracked {B.median(cc['tracked']):.0f} ns)")
    res["fio"] = out
    B.rmtree(tree)


def watch_setup_ms(metamori, tree, mode):
    """How long `metamori run` took to start its watcher (its debug line)."""
    env = dict(os.environ, METAMORI_WATCH=mode, METAMORI_DEBUG_SESSION="1")
    p = subprocess.run([metamori, "-C", tree, "run", "-q", "--", "true"], capture_output=True, text=True, env=env)
    m = re.search(r"watcher: (\w+), set up in ([0-9.]+) ms", p.stderr)
    if p.returncode or not m:
        sys.exit(f"bench: run with METAMORI_WATCH={mode}: {p.stderr.strip()[-300:]}")
    return m.group(1), float(m.group(2))


def part_watch(a, metamori, work, res):
    """The watcher (issue 15): the time to set it up on a tree of many
    directories, and its cost on fio's 4 KiB random writes (tracked runs
    with the watcher against tracked runs without, METAMORI_WATCH=off)."""
    import shutil
    out = {}
    ndirs = max(10, int(100000 * a.scale))
    tree = os.path.join(work, "dirs")
    os.makedirs(tree)
    for i in range(ndirs):  # 100 per directory, two levels: a source tree's shape
        os.makedirs(os.path.join(tree, "d%03d" % (i // 100 // 100), "e%03d" % (i // 100 % 100), "f%03d" % (i % 100)),
                    exist_ok=True)
    B.mtm(metamori, "init", tree)
    B.mtm(metamori, "-C", tree, "checkpoint", "-q")
    out["dirs"] = sum(len(d) for _, d, _ in os.walk(tree))
    for mode in ("fanotify", "inotify"):
        runs = [watch_setup_ms(metamori, tree, mode) for _ in range(3)]
        out["setup_" + mode] = {"kind": runs[0][0], "ms": B.median([r[1] for r in runs])}
        B.log(f"bench: watcher set up on {out['dirs']} directories: {mode} -> {runs[0][0]}, "
              f"{out['setup_' + mode]['ms']:.1f} ms")
    B.rmtree(tree)
    # inotify watches every regular file too (a link made to it outside the
    # tree is an attribute change of the file only): 100,000 files, 100 per
    # directory
    nfiles = max(10, int(100000 * a.scale))
    tree = os.path.join(work, "files")
    for i in range(nfiles):
        d = os.path.join(tree, "d%03d" % (i // 100 // 100), "e%03d" % (i // 100 % 100))
        if i % 100 == 0:
            os.makedirs(d)
        open(os.path.join(d, "f%03d" % (i % 100)), "wb").close()
    B.mtm(metamori, "init", tree)
    B.mtm(metamori, "-C", tree, "checkpoint", "-q")
    out["files"] = nfiles
    for mode in ("fanotify", "inotify"):
        runs = [watch_setup_ms(metamori, tree, mode) for _ in range(3)]
        out["files_setup_" + mode] = {"kind": runs[0][0], "ms": B.median([r[1] for r in runs])}
        B.log(f"bench: watcher set up on {nfiles} files in {nfiles // 100} directories: {mode} -> {runs[0][0]}, "
              f"{out['files_setup_' + mode]['ms']:.1f} ms")
    B.rmtree(tree)
    if shutil.which("fio") and a.fio_reps:
        tree = os.path.join(work, "fiow")
        os.makedirs(tree)
        B.mtm(metamori, "init", tree)
        fio_once(tree, "seq1m", 1, os.path.join(work, "fiow-layout.json"))
        B.mtm(metamori, "-C", tree, "checkpoint", "-q", "-m", "fio file")
        runs = {"off": [], "fanotify": [], "inotify": []}
        order = list(runs)
        for rep in range(max(1, a.fio_reps // 3)):
            for mode in (order if rep % 2 == 0 else order[::-1]):
                os.environ["METAMORI_WATCH"] = mode
                try:
                    runs[mode].append(fio_once(tree, "rand4k", a.fio_runtime,
                                               os.path.join(work, f"fiow-{mode}-{rep}.json"), metamori))
                finally:
                    del os.environ["METAMORI_WATCH"]
        out["fio"] = runs
        off = B.median([r["bw"] for r in runs["off"]])
        for mode in ("fanotify", "inotify"):
            bw = B.median([r["bw"] for r in runs[mode]])
            B.log(f"bench: fio rand4k tracked, watcher {mode}: {B.human(bw)}/s against {B.human(off)}/s without "
                  f"({(off - bw) / off * 100:+.1f}%)")
        B.rmtree(tree)
    res["watch"] = out


# ---------------------------------------------------------------------------

def fastest_peer(row):
    """The fastest of rsync --link-dest, borg and restic (the issue's peers; cp -a
    is shown but is not a snapshot tool); not an rsync that missed changed files
    (its quick check: Peers.missed)."""
    ts = [v["s"] for k, v in row["peers"].items() if k in ("rsync", "borg", "restic") and not v.get("missed")]
    return min(ts) if ts else None


def report(res):
    m = res["machine"]
    o = []
    o.append("## Tracked mode (`metamori run`)")
    o.append("")
    o.append(f"Run {m['date']} on {m['nproc']} CPUs ({m.get('cpu', '?')}), {m.get('ram', '?')} RAM, "
             f"kernel {m['kernel']}, load average {m.get('load')} at the start and {B.loadavg()} at the end; `df -T`: `{res['df']}`. Cache: warm (`sync` before every "
             "timed contender; the data just written is in the page cache).")
    o.append("")
    if "w1" in res:
        w = res["w1"]
        pn = w["peer_names"]
        o.append(f"### W1 under `metamori run` (scale {res['scale']}), {len(w['intervals'])} intervals")
        o.append("")
        bad = [r for r in w["intervals"] if r["recorded"] < 0.9 * r["changed"]]
        if bad:
            o.append(f"**INVALID: in {len(bad)} of {len(w['intervals'])} intervals the checkpoint recorded "
                     f"fewer bytes than the writer changed (e.g. {B.human(bad[0]['recorded'])} of "
                     f"{B.human(bad[0]['changed'])}): the interposer did not see the writes, so the "
                     "times below are not those of a correct checkpoint.**")
            o.append("")
        o.append(f"First checkpoint of the session (after the initial scan checkpoint, nothing changed): "
                 f"{B.secs(w['session_first']['s'])} (`{w['session_first']['out']}`). "
                 f"Heartbeat pwrite latency with no checkpoint running (max over 0.3 s): "
                 f"{w['probe_baseline_ns'] / 1e6:.2f} ms. One memcpy of the changed bytes: "
                 f"{w['memcpy_ns'] / 1e6:.2f} ms." + (
                     f" A tracked checkpoint with nothing changed (the fixed cost: client start, "
                     f"socket round trip, barrier, index commit), median of "
                     f"{len(w['empty_s'])}: {B.secs(B.median(w['empty_s']))} "
                     f"(session CPU {B.secs(B.median(w['empty_cpu_s']))})." if w.get("empty_s") else ""))
        o.append("")
        hdr = ["int", "changed", "tracked ckpt", "session CPU", "ahead CPU", "deferred CPU", "floor", "ckpt/floor", "pause (app)",
               "pause (session)", "store grew"] + pn + ["fastest of rsync/borg/restic / ckpt"]
        rows = []
        for r in w["intervals"]:
            fastest = fastest_peer(r)
            ps = r["pause_session_ns"]
            rows.append([r["interval"], B.human(r["changed"]), B.secs(r["ckpt"]), B.secs(r.get("session_cpu")),
                         B.secs(r.get("ahead_cpu")), B.secs(r.get("deferred_cpu")), B.secs(r["floor"]),
                         B.ratio(r["ckpt"], r["floor"]), f"{r['pause_app_ns'] / 1e6:.2f} ms",
                         f"{ps / 1e6:.2f} ms" if ps is not None else "-", B.human(r["store_grew"])]
                        + [B.secs(r["peers"][p]["s"]) for p in pn] + [B.ratio(fastest, r["ckpt"])])
        o.append(B.table(hdr, rows))
        o.append("")
        iv = w["intervals"]
        fl = B.median([r["ckpt"] / r["floor"] for r in iv])
        g = [["tracked ckpt / floor", f"{fl:.2f}x", "<= 2x", B.goal(fl, "<=", 2)]]
        if any(fastest_peer(r) for r in iv):
            fp = B.median([fastest_peer(r) / r["ckpt"] for r in iv if fastest_peer(r)])
            g.append(["fastest of rsync/borg/restic / tracked ckpt", f"{fp:.1f}x", ">= 25x",
                      B.goal(fp, ">=", 25)])
            for p in pn:
                # (not an rsync that missed changed files: Peers.missed)
                x = B.median([r["peers"][p]["s"] / r["ckpt"] for r in iv if not r["peers"][p].get("missed")])
                g.append([f"{p} / tracked ckpt", "-" if x is None else f"{x:.1f}x", "", ""])
        pause = B.median([r["pause_app_ns"] for r in iv])
        lim = w["memcpy_ns"] + 1e6
        g.append(["pause seen by the application (median of max)", f"{pause / 1e6:.2f} ms",
                  f"<= memcpy + 1 ms = {lim / 1e6:.2f} ms", B.goal(pause, "<=", lim)])
        gr = B.median([r["store_grew"] / r["changed"] for r in iv])
        g.append(["store growth / changed bytes", f"{gr:.3f}x", "<= 1.1x", B.goal(gr, "<=", 1.1)])
        rs = w["restore"]
        x = rs["s"] / rs["floor"]
        g.append([f"in-place restore {rs['back']} back / floor", f"{x:.2f}x", "<= 3x", B.goal(x, "<=", 3)])
        o.append(B.table(["measure", "value", "goal", ""], g))
        o.append("")
        o.append("\"deferred CPU\": the session's CPU time in the 1.5 s after it answered the checkpoint, "
                 "before any other command opens the store (the index's WAL is copied into the database once "
                 "the session has been idle for a second, off the path the caller waits on); \"session CPU\" "
                 "is the CPU time while the caller waited; \"ahead CPU\": the session's CPU time from the start "
                 "of the interval's writes to the request, while the program ran (the pre-copy reads and hashes "
                 "the changed blocks, and writes them into the pack ahead of the checkpoint). \"store grew\" is "
                 "measured from before the interval's writes, so it includes what was written ahead.")
        o.append("")
        o.append(f"Checkpoint output (interval 1): `{iv[0]['out']}`. In-place restore to checkpoint "
                 f"{rs['target']}: {B.secs(rs['s'])} (`{rs['out']}`); floor: rewrite the "
                 f"{B.human(rs['differing'])} of differing blocks in place and fsync: {B.secs(rs['floor'])}.")
        o.append("")
    if "many" in res:
        mm = res["many"]
        o.append("### Many files: 16 KiB each, the same 200 files touched (one 4 KiB block each) per interval")
        o.append("")
        for n in sorted(mm, key=int):
            x = mm[n]
            if min(x["recorded"]) < x["touched"] * B.BLOCK * 0.5:
                o.append(f"**INVALID ({n} files): a checkpoint recorded {B.human(min(x['recorded']))} where "
                         f"{x['touched']} blocks were rewritten: the interposer did not see the writes.**")
                o.append("")
        rows = []
        for n in sorted(mm, key=int):
            x = mm[n]
            rows.append([n, x["touched"], B.secs(B.median(x["tracked"])), B.secs(B.median(x.get("cpu", []))),
                         B.secs(B.median(x["scan"])),
                         B.secs(x["initial_scan_s"])])
        o.append("Both trees run at once, each under its own session, their checkpoints alternating; "
                 "the touched files are drawn from the first 2,000 files (the same 10 directories) in "
                 "both, so the trees differ only by 18,000 untouched files.")
        o.append("")
        o.append(B.table(["files", "touched", "tracked ckpt (median)", "session CPU per ckpt (median)",
                          "scan ckpt (median)",
                          "initial scan ckpt"], rows))
        ks = sorted(mm, key=int)
        if len(ks) == 2:
            a_, b_ = mm[ks[0]], mm[ks[1]]
            x = B.median(b_["tracked"]) / B.median(a_["tracked"])
            if a_.get("cpu") and B.median(a_["cpu"]):
                o.append("")
                o.append(f"Session CPU per tracked ckpt, {ks[1]} files / {ks[0]} files: "
                         f"{B.median(b_['cpu']) / B.median(a_['cpu']):.2f}x.")
            y = B.median(b_["scan"]) / B.median(a_["scan"])
            o.append("")
            o.append(f"Tracked ckpt {ks[1]} files / {ks[0]} files: {x:.2f}x (goal: ~1x, independent of "
                     f"untouched files: {'met' if x <= 1.25 else 'MISSED'}); scan mode: {y:.2f}x.")
        o.append("")
    if "fio" in res:
        f = res["fio"]
        o.append("### Interposer overhead on fio (psync, buffered, 64 MiB file in the tree)")
        o.append("")
        rows = []
        cc = f.get("call_cost")
        for job, lim in (("rand4k", 5), ("seq1m", 2)):
            if job not in f:
                continue
            pl = B.median([r["bw"] for r in f[job]["plain"]])
            tr = B.median([r["bw"] for r in f[job]["tracked"]])
            ov = (pl - tr) / pl * 100
            po = paired_ov(f[job])
            rows.append([job, B.human(pl) + "/s", B.human(tr) + "/s", f"{ov:+.1f}%", f"{po:+.1f}%", f"<= {lim}%",
                         "met" if po <= lim else "MISSED",
                         " ".join(f"{r['bw'] / 2**20:.0f}" for r in f[job]["plain"]) + " / "
                         + " ".join(f"{r['bw'] / 2**20:.0f}" for r in f[job]["tracked"]),
                         cpu_ov(f[job])])
            if cc:  # the per-call cost against the plain median's time per write
                per_op = 1e9 / B.median([r["iops"] for r in f[job]["plain"]])
                implied = cc["delta_ns"] / per_op * 100
                rows[-1] += [f"{implied:+.2f}% ({'met' if implied <= lim else 'MISSED'})"]
        o.append(B.table(["job", "plain (median)", "under run (median)", "overhead of the medians",
                          "overhead, paired (median)", "goal", "",
                          "each run MiB/s plain / tracked", "CPU per write plain / tracked"]
                         + (["interposer's cost per call / plain time per write"] if cc else []), rows))
        o.append("")
        o.append("Overhead of the medians = (plain - tracked) / plain of the median bandwidths; paired = the "
                 "median over repetitions of each repetition's (plain - tracked) / plain, its two runs back to "
                 "back (ABBA order), which the goal is judged on: runs minutes apart differ by more than the "
                 "goal. CPU per write = fio's usr+sys CPU time / writes.")
        if cc:
            o.append("")
            o.append(f"Interposer's cost per write call (bench/call_cost.c, 1-byte `pwrite`s into the same file, "
                     f"5 runs a side alternated, each run's median of 15 rounds of 100,000 calls): "
                     f"plain {B.median(cc['plain']):.0f} ns, under `metamori run` {B.median(cc['tracked']):.0f} ns, "
                     f"**{cc['delta_ns']:+.0f} ns per call**; the last column divides it by the plain median's time "
                     f"per write. It does not depend on the bytes written, and it is what the interposer adds; "
                     f"fio's throughput on this VM spreads by more than the goals from run to run.")
        o.append("")
    w2 = res.get("w2git")
    if w2:
        tm, gm = B.median(w2["tracked"]), B.median(w2["git"])
        o.append(f"### W2 under `metamori run` against git ({w2['files']} files of 16 KiB, {w2['touched']} touched "
                 f"per interval, {len(w2['tracked'])} intervals)")
        o.append("")
        o.append("| measure | value | goal | |")
        o.append("|---|---|---|---|")
        o.append(f"| tracked checkpoint (median) | {B.secs(tm)} | | |")
        o.append(f"| `git add -A && git commit` (median) | {B.secs(gm)} | | |")
        o.append(f"| git / tracked checkpoint | {B.ratio(gm, tm)} | >= 15x | {B.goal(gm / tm, '>=', 15)} |")
        if w2.get("floor"):
            fl = B.median([t / f for t, f in zip(w2["tracked"], w2["floor"])])
            o.append(f"| floor: the changed bytes ({B.human(B.median(w2['changed']))}) written once + fsync "
                     f"(median) | {B.secs(B.median(w2['floor']))} | | |")
            o.append(f"| tracked checkpoint / floor (median of the intervals' ratios) | {fl:.2f}x | <= 3x | "
                     f"{B.goal(fl, '<=', 3)} |")
            o.append(f"| per interval: tracked / floor | "
                     + ", ".join(f"{B.secs(t)} / {B.secs(f)}" for t, f in zip(w2["tracked"], w2["floor"])) + " | | |")
        if w2.get("spawn") and w2.get("floor"):
            # not the goal's measure (its checkpoint is the command's, start
            # included): what a process start alone weighs against the floor
            sp = B.median(w2["spawn"])
            net = B.median([(t - s) / f for t, s, f in zip(w2["tracked"], w2["spawn"], w2["floor"])])
            o.append(f"| process start: `true`, spawned as the checkpoint's client is (median) | {B.secs(sp)} "
                     f"({B.median([s / f for s, f in zip(w2['spawn'], w2['floor'])]):.2f}x the floor) | | |")
            o.append(f"| (tracked checkpoint - process start) / floor (median of the intervals' ratios) | "
                     f"{net:.2f}x | | |")
        if w2.get("api") and w2.get("floor"):
            # a program asking for its own checkpoint through the library:
            # no process start; not the goal's measure (the command's is)
            o.append(f"| tracked checkpoint asked through the library (`mtm_checkpoint_at` in a running "
                     f"process, no process start; median) | {B.secs(B.median(w2['api']))} | | |")
            o.append(f"| library-asked checkpoint / floor (median of the intervals' ratios) | "
                     f"{B.median([t / f for t, f in zip(w2['api'], w2['floor'])]):.2f}x | | |")
        if w2.get("restored"):
            o.append(f"| checkpoints restored (--to) and compared | {len(w2['restored'])} | all | met |")
        o.append("")
    w = res.get("watch")
    if w:
        o.append("### The watcher (issue 15)")
        o.append("")
        o.append(f"Set up on a tree of {w['dirs']} directories (median of 3 `metamori run -- true`): "
                 f"fanotify {w['setup_fanotify']['ms']:.1f} ms ({w['setup_fanotify']['kind']}), "
                 f"inotify {w['setup_inotify']['ms']:.1f} ms.")
        if "fio" in w:
            off = B.median([r["bw"] for r in w["fio"]["off"]])
            for mode in ("fanotify", "inotify"):
                bw = B.median([r["bw"] for r in w["fio"][mode]])
                o.append(f"- fio 4 KiB random writes, tracked, watcher {mode}: {B.human(bw)}/s against "
                         f"{B.human(off)}/s with METAMORI_WATCH=off ({(off - bw) / off * 100:+.1f}%).")
        o.append("")
    print("\n".join(o))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--metamori", default=os.path.join(HERE, "..", "build", "metamori"))
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--intervals", type=int, default=5)
    ap.add_argument("--parts", default="w1,many,fio,watch,w2git")
    ap.add_argument("--peers", default="cp,rsync,borg,restic")
    ap.add_argument("--fio-runtime", type=int, default=3)
    ap.add_argument("--fio-reps", type=int, default=9)
    ap.add_argument("--work", default=os.path.join(HERE, "work", "track"))
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()
    metamori = os.path.abspath(a.metamori)
    if not os.access(metamori, os.X_OK):
        sys.exit(f"bench: {metamori}: not built (run make)")
    ok, why = have_run(metamori)
    if not ok:
        msg = (f"bench_track: SKIPPED: this metamori has no working 'run' command "
               f"('{metamori} run --help' says: {why}). Tracked mode cannot be measured yet.")
        print(msg)
        print(msg, file=sys.stderr)
        sys.exit(3)
    parts = set(a.parts.split(","))
    work = os.path.abspath(a.work)
    B.rmtree(work)
    os.makedirs(work)
    writer = build_writer(work)
    res = {"machine": B.machine(), "df": B.df_t(work), "scale": a.scale}
    if "w1" in parts:
        part_w1(a, metamori, writer, work, res)
    if "many" in parts:
        part_many(a, metamori, writer, work, res)
    if "fio" in parts:
        part_fio(a, metamori, work, res)
    if "watch" in parts:
        part_watch(a, metamori, work, res)
    if "w2git" in parts:
        part_w2git(a, metamori, writer, work, res)
    report(res)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1, default=str)
    if not a.keep:
        B.rmtree(work)


if __name__ == "__main__":
    main()
