"""benchlib.py: shared pieces of the Metamori benchmarks (bench_scan.py, bench_track.py).

Benchmarks are not tests: they time real commands in ONE run against peers
(cp -a, rsync --link-dest, borg, restic) and against a physical floor, and
print tables of ratios. Nothing here asserts a speed.

Cache state: with --cache cold (the default when we may write
/proc/sys/vm/drop_caches, i.e. as root) every timed contender starts after
`sync` and dropping the page cache, so each one reads its input from the disk.
With --cache warm every contender starts after `sync` only, with the workload
still in the page cache (it was just written). The same state is applied to
every contender of a table; the tables say which was used.
"""
import filecmp
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time

BLOCK = 4096
MiB = 1 << 20
GiB = 1 << 30
LAST_CPU = None  # CPU seconds of the last timed() command


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def human(n):
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def secs(t):
    if t is None:
        return "-"
    if t < 1:
        return f"{t * 1000:.1f} ms"
    return f"{t:.2f} s"


def ratio(a, b):
    if a is None or b is None or b <= 0:
        return "-"
    r = a / b
    return f"{r:.2f}x" if r < 100 else f"{r:.0f}x"


# ---------------------------------------------------------------------------
# cache state

class Cache:
    """warm, cold (every cache of the machine dropped), or evict: only the
    files under self.roots (set by the caller: the benchmark's trees and
    stores) evicted with POSIX_FADV_DONTNEED after a sync. evict reads the
    workload and the index from the disk as cold does, but leaves the
    program, its libraries and everything of other people's cached: on a
    shared machine a global drop makes their warm runs cold (so their
    figures, not only ours, move)."""

    def __init__(self, mode, roots=()):
        self.roots = list(roots)
        if mode == "auto":
            mode = "cold" if self._can_drop() else "warm"
        if mode == "cold" and not self._can_drop():
            sys.exit("bench: --cache cold needs root (writing /proc/sys/vm/drop_caches)")
        self.mode = mode

    @staticmethod
    def _can_drop():
        return os.geteuid() == 0 and os.access("/proc/sys/vm/drop_caches", os.W_OK)

    def prepare(self):
        """Bring the machine to the agreed state before a timed contender."""
        os.sync()
        if self.mode == "cold":
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
        elif self.mode == "evict":
            for root in self.roots:
                for d, _, files in os.walk(root):
                    for f in files:
                        try:
                            fd = os.open(os.path.join(d, f), os.O_RDONLY | os.O_NOFOLLOW)
                        except OSError:
                            continue
                        try:
                            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                        finally:
                            os.close(fd)

    def describe(self):
        if self.mode == "evict":
            return ("evict: `sync` and POSIX_FADV_DONTNEED of the workload's and the store's files before "
                    "every timed contender (the program and the rest of the machine stay cached)")
        if self.mode == "cold":
            return ("cold: `sync` and `echo 3 > /proc/sys/vm/drop_caches` before every timed "
                    "contender; each reads its input from the disk")
        return ("warm: `sync` before every timed contender; the workload is in the page "
                "cache (it was just written), so reads are memory copies")


def timed(cmd, cwd=None, env=None, check=True, capture=True, discard_out=False):
    """Runs cmd (a list); returns (seconds, CompletedProcess). Wall clock,
    process start included (the same for every contender). discard_out:
    its standard output to /dev/null (not kept, not decoded)."""
    global LAST_CPU
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.DEVNULL if discard_out else subprocess.PIPE if capture else None
    p = subprocess.run(cmd, cwd=cwd, env=env, stdout=out,
                       stderr=subprocess.PIPE if capture else None, text=True)
    t = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of the command and its children: on a shared machine the
    # wall clock also counts the time spent waiting for a CPU
    LAST_CPU = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    p.cpu = LAST_CPU
    if check and p.returncode != 0:
        sys.exit(f"bench: {' '.join(map(str, cmd))}: exit {p.returncode}\n{p.stdout}{p.stderr}")
    return t, p


def read_files(files, cwd=None, prefix=(), env=None):
    """The read floor: `cat FILES` with its output to /dev/null, one process
    (as a checkpoint is one process; `sh -c 'cat ...'` was two: S29 in
    BENCHMARKS-ARCHIVE.md). Returns (seconds, CPU seconds)."""
    t, p = timed(list(prefix) + ["cat"] + list(files), cwd=cwd, env=env, discard_out=True)
    return t, p.cpu


def tree_bytes(path):
    """Apparent bytes of every file under path, counting a hard-linked inode once."""
    seen = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for n in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def disk_bytes(path):
    """Allocated bytes (st_blocks) under path, hard links once."""
    seen = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for n in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


def rmtree(path):
    if os.path.lexists(path):
        shutil.rmtree(path, ignore_errors=False)


# ---------------------------------------------------------------------------
# the workload W1

class W1:
    """16 files x 64 MiB of random data (times scale) and a log file; each
    interval rewrites 1% of all 4 KiB blocks, chosen at random, with new random
    data and appends 1 MiB to the log."""

    def __init__(self, root, scale=1.0, nfiles=16, seed=1):
        self.root = root
        self.nfiles = nfiles
        self.file_size = max(BLOCK * 16, int(64 * MiB * scale) // BLOCK * BLOCK)
        self.append = max(BLOCK, int(MiB * scale) // BLOCK * BLOCK) if scale < 1 else MiB
        self.rng = random.Random(seed)
        self.names = [f"f{i:02d}.bin" for i in range(nfiles)] + ["log.txt"]
        self.history = []  # per interval: {"blocks": {(file_index, block)}, "log_size_before": n}

    @property
    def blocks_per_file(self):
        return self.file_size // BLOCK

    @property
    def total_bytes(self):
        return self.nfiles * self.file_size

    def path(self, name):
        return os.path.join(self.root, name)

    def create(self):
        os.makedirs(self.root, exist_ok=True)
        for i in range(self.nfiles):
            with open(self.path(self.names[i]), "wb") as f:
                left = self.file_size
                while left:
                    n = min(left, 8 * MiB)
                    f.write(self.rng.randbytes(n))
                    left -= n
        with open(self.path("log.txt"), "wb") as f:
            f.write(self.rng.randbytes(self.append))

    def interval(self):
        """One interval of changes; returns the bytes changed."""
        nblocks = self.nfiles * self.blocks_per_file
        k = max(1, round(nblocks / 100))
        picks = self.rng.sample(range(nblocks), k)
        blocks = set()
        fds = {}
        try:
            for b in sorted(picks):
                fi, bi = divmod(b, self.blocks_per_file)
                if fi not in fds:
                    fds[fi] = os.open(self.path(self.names[fi]), os.O_WRONLY)
                os.pwrite(fds[fi], self.rng.randbytes(BLOCK), bi * BLOCK)
                blocks.add((fi, bi))
        finally:
            for fd in fds.values():
                os.close(fd)
        log_before = os.path.getsize(self.path("log.txt"))
        with open(self.path("log.txt"), "ab") as f:
            f.write(self.rng.randbytes(self.append))
        self.history.append({"blocks": blocks, "log_size_before": log_before})
        return len(blocks) * BLOCK + self.append

    def changed_files(self):
        """The files the last interval changed (all of them, with W1's sizes)."""
        last = self.history[-1]
        fis = sorted({fi for fi, _ in last["blocks"]})
        return [self.names[fi] for fi in fis] + ["log.txt"]

    def blocks_since(self, n_intervals):
        """Blocks rewritten by the last n intervals (what differs from the
        state n intervals ago, besides the log's tail)."""
        s = set()
        for h in self.history[-n_intervals:]:
            s |= h["blocks"]
        return s

    def hashes(self):
        import hashlib
        out = {}
        for n in self.names:
            h = hashlib.blake2b(digest_size=16)
            with open(self.path(n), "rb") as f:
                while True:
                    b = f.read(8 * MiB)
                    if not b:
                        break
                    h.update(b)
            out[n] = h.hexdigest()
        return out


def verify_w1(metamori, root, nfiles, intervals, work, scale=1.0, seed=1):
    """Every checkpoint of a W1 run restored and compared, untimed, after
    the run: W1 made again from the same seed (the same bytes and the same
    changes) in work, and after the creation and each interval, checkpoint
    1 + interval of root's store restored with --to and compared with it
    byte for byte. Exits on a difference; returns the checkpoints compared."""
    w = W1(os.path.join(work, "replay"), scale=scale, nfiles=nfiles, seed=seed)
    w.create()
    dst = os.path.join(work, "restored")
    for i in range(intervals + 1):
        if i:
            w.interval()
        rmtree(dst)
        timed([metamori, "-C", root, "restore", str(i + 1), "--to", dst])
        filecmp.clear_cache()
        bad = [n for n in w.names if not filecmp.cmp(w.path(n), os.path.join(dst, n), shallow=False)]
        if bad:
            sys.exit(f"bench: checkpoint {i + 1} of {root}: restored {', '.join(bad)} differ from W1's")
        rmtree(dst)
    rmtree(w.root)
    return intervals + 1


# ---------------------------------------------------------------------------
# floors

def floor_write(path, nbytes):
    """The physical floor of a checkpoint: write nbytes once into a new file and
    fsync it (the data is already in memory; no process start). Seconds."""
    buf = os.urandom(min(nbytes, 8 * MiB))
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    left = nbytes
    while left:
        n = min(left, len(buf))
        os.write(fd, buf[:n] if n < len(buf) else buf)
        left -= n
    os.fsync(fd)
    os.close(fd)
    t = time.perf_counter() - t0
    os.unlink(path)
    return t


def floor_rewrite_in_place(root, names, blocks, extra_files=()):
    """The floor of an in-place restore: rewrite the differing 4 KiB blocks at
    their places (with the bytes they already hold, read beforehand, untimed)
    and fsync each file written. blocks: set of (file_index, block). Seconds."""
    byfile = {}
    for fi, bi in sorted(blocks):
        byfile.setdefault(fi, []).append(bi)
    data = {}
    for fi, bis in byfile.items():
        fd = os.open(os.path.join(root, names[fi]), os.O_RDONLY)
        data[fi] = [(bi, os.pread(fd, BLOCK, bi * BLOCK)) for bi in bis]
        os.close(fd)
    os.sync()
    t0 = time.perf_counter()
    for fi, items in data.items():
        fd = os.open(os.path.join(root, names[fi]), os.O_WRONLY)
        for bi, b in items:
            os.pwrite(fd, b, bi * BLOCK)
        os.fsync(fd)
        os.close(fd)
    for p in extra_files:
        fd = os.open(p, os.O_WRONLY)
        os.fsync(fd)
        os.close(fd)
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------
# peers

class Peers:
    """cp -a, rsync --link-dest, borg create, restic backup of the same files,
    each with its repository/snapshots on the same disk as the tree."""

    ALL = ("cp", "rsync", "borg", "restic")

    def __init__(self, work, tree, names, which=ALL):
        self.work = work
        self.tree = tree
        self.names = list(names)
        self.which = [p for p in which if p == "cp" or shutil.which(p)]
        self.missing = [p for p in which if p not in self.which]
        self.n = 0
        self.missed = []  # the files the last rsync left differing from the tree (run)
        self.env = dict(os.environ)
        self.env.update({
            "BORG_BASE_DIR": os.path.join(work, "borg-base"),
            "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
            "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
            "RESTIC_PASSWORD": "bench",
            "RESTIC_CACHE_DIR": os.path.join(work, "restic-cache"),
            "RESTIC_PROGRESS_FPS": "0",
        })
        self.borg_repo = os.path.join(work, "borg")
        self.restic_repo = os.path.join(work, "restic")
        self.snaps = os.path.join(work, "rsync")

    def commands(self):
        """The exact commands, for the report (N = snapshot number)."""
        files = "FILES"
        return {
            "cp": f"cp -a {files} copy/",
            "rsync": "rsync -a --exclude=/.metamori --link-dest=rsync/N-1 tree/ rsync/N/",
            "borg": f"borg create --compression none borg::N {files}   (repo: borg init -e none)",
            "restic": f"restic -r restic backup --compression off -q {files}   "
                      "(repo: restic init --repository-version 2; RESTIC_PASSWORD set)",
        }

    def init(self):
        os.makedirs(self.snaps, exist_ok=True)
        if "borg" in self.which:
            timed(["borg", "init", "-e", "none", self.borg_repo], env=self.env)
        if "restic" in self.which:
            timed(["restic", "-r", self.restic_repo, "init", "--repository-version", "2"],
                  env=self.env)

    def run(self, peer):
        """One snapshot by peer of the tree as it is now; returns (seconds, bytes
        the peer's storage grew by)."""
        n = self.n
        if peer == "cp":
            dst = os.path.join(self.work, "copy")
            rmtree(dst)
            os.makedirs(dst)
            t, _ = timed(["cp", "-a"] + self.names + [dst], cwd=self.tree)
            grew = tree_bytes(dst)
            rmtree(dst)
            return t, grew
        if peer == "rsync":
            dst = os.path.join(self.snaps, str(n))
            prev = os.path.join(self.snaps, str(n - 1))
            cmd = ["rsync", "-a", "--exclude=/.metamori"]
            if os.path.isdir(prev):
                cmd.append("--link-dest=" + prev)
            before = tree_bytes(self.snaps)
            t, _ = timed(cmd + [self.tree + "/", dst + "/"])
            grew = tree_bytes(self.snaps) - before
            # rsync's quick check (size and mtime) passes a file rewritten in
            # place within the same second at the same size: then it copied
            # nothing and its time is not a backup's. Compared after the
            # timing, byte for byte.
            self.missed = [f for f in self.names
                           if not filecmp.cmp(os.path.join(self.tree, f), os.path.join(dst, f),
                                              shallow=False)]
            if os.path.isdir(prev):  # keep only the newest snapshot on disk
                rmtree(prev)
            return t, grew
        if peer == "borg":
            before = tree_bytes(self.borg_repo)
            t, _ = timed(["borg", "create", "--compression", "none",
                          f"{self.borg_repo}::s{n}"] + self.names, cwd=self.tree, env=self.env)
            return t, tree_bytes(self.borg_repo) - before
        if peer == "restic":
            before = tree_bytes(self.restic_repo)
            t, _ = timed(["restic", "-r", self.restic_repo, "backup", "--compression", "off",
                          "-q", "--host", "bench"] + self.names, cwd=self.tree, env=self.env)
            return t, tree_bytes(self.restic_repo) - before
        raise ValueError(peer)

    def next(self):
        self.n += 1


# ---------------------------------------------------------------------------
# metamori

def mtm(metamori, *args, cwd=None, check=True):
    return timed([metamori] + list(args), cwd=cwd, check=check)


def mtm_log(metamori, root):
    _, p = mtm(metamori, "-C", root, "log", "--json")
    return json.loads(p.stdout)


def store_bytes(root):
    """Apparent bytes of the store's packs and index (WAL included)."""
    return tree_bytes(os.path.join(root, ".metamori"))


# ---------------------------------------------------------------------------
# the machine and tables

def machine():
    info = {}
    info["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    info["nproc"] = os.cpu_count()
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["ram"] = human(int(line.split()[1]) * 1024)
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info["kernel"] = os.uname().release
    info["load"] = loadavg()
    return info


def folio_kib(path):
    """Mean size in KiB of the page-cache folios holding path's cached pages
    (/proc/self/pagemap and /proc/kpageflags: root only), or None. Reading a
    file through a mapping costs per folio: a W1 file in 4 KiB folios took
    about twice the CPU of one in 2 MiB folios (BENCHMARKS-ARCHIVE.md S25),
    and which one a file gets as it is written is up to the memory of the
    moment, so two copies of a workload can differ (S27)."""
    import mmap
    import struct
    page = 4096
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        if size < page:
            return None
        mm = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        try:
            real = os.path.realpath(path)
            start = None
            with open("/proc/self/maps") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 6 and parts[5] == real:
                        a, b = (int(x, 16) for x in parts[0].split("-"))
                        if b - a >= size - page:
                            start = a
            if start is None:
                return None
            n = size // page
            for off in range(0, n * page, page):
                mm[off]  # mapped in (a cached page is not read again)
            with open("/proc/self/pagemap", "rb") as pm, open("/proc/kpageflags", "rb") as kf:
                pm.seek(start // page * 8)
                present = heads = 0
                for e in struct.unpack("<%dQ" % n, pm.read(8 * n)):
                    pfn = e & ((1 << 55) - 1)
                    if not e >> 63 or not pfn:
                        continue
                    present += 1
                    kf.seek(pfn * 8)
                    if not struct.unpack("<Q", kf.read(8))[0] & (1 << 16):  # not a tail page
                        heads += 1
        finally:
            mm.close()
    except OSError:
        return None
    finally:
        os.close(fd)
    return 4.0 * present / heads if heads else None


def loadavg():
    """The 1-minute load average: the machine is shared, so say how busy it was."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except OSError:
        return None


def df_t(path):
    p = subprocess.run(["df", "-T", "-h", path], stdout=subprocess.PIPE, text=True)
    lines = p.stdout.strip().splitlines()
    return lines[-1] if lines else "?"


def versions():
    out = {}
    for name, cmd in (("rsync", ["rsync", "--version"]), ("borg", ["borg", "--version"]),
                      ("restic", ["restic", "version"]), ("fio", ["fio", "--version"])):
        if shutil.which(cmd[0]):
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            out[name] = p.stdout.strip().splitlines()[0] if p.stdout.strip() else "?"
    return out


def table(headers, rows):
    """A Markdown table (also readable as plain text)."""
    cols = [list(map(str, headers))] + [[str(c) for c in r] for r in rows]
    w = [max(len(r[i]) for r in cols) for i in range(len(headers))]
    out = []
    for j, r in enumerate(cols):
        out.append("| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(r)) + " |")
        if j == 0:
            out.append("|" + "|".join("-" * (x + 2) for x in w) + "|")
    return "\n".join(out)


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m]) / 2


def goal(value, op, target):
    if value is None:
        return "-"
    ok = value <= target if op == "<=" else value >= target
    return "met" if ok else "MISSED"
